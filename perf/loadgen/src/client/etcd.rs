//! `--protocol etcd`: each lock and unlock as the etcd calls dlockd's `lock.etcd` store makes
//! for it (see `crate::etcd`), on the gRPC connections, workloads and pacing of
//! `client::grpc`. A lock is `LeaseGrant` then `Txn`, one request timed from the first call
//! to the `Txn`'s answer; an unlock is one `Txn`. The `LeaseRevoke` that follows a refused
//! lock or a released unlock is sent after the answer, on the same connection, without
//! holding up the next request (dlockd sends it in the background too): the thread waits for
//! the last of them before it reports. A revoke that fails (other than for a lease that has
//! ended) counts as an error of its kind.
//!
//! Every call carries a `grpc-timeout` of [`CALL_TIMEOUT`], as dlockd's calls carry its
//! `operationTimeout` (5 s by default).

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic::Status;
use tonic_prost::ProstCodec;

use super::grpc::Api;
use super::{Conn, Thread, ANSWER_TIMEOUT};
use crate::etcd::{
    self, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, TxnResponse,
    LEASE_GRANT_PATH, LEASE_REVOKE_PATH, TXN_PATH,
};
use crate::grpc::{call_error, CallError};
use crate::tally::ErrorKind;
use crate::wire::Outcome;
use crate::workload::Op;

/// The deadline each call carries, dlockd's default `operationTimeout`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection's etcd calls.
pub(super) struct Etcd {
    grpc: Grpc<Channel>,
    owner: Rc<[u8]>,
    expiry_s: u32,
    revokes: Rc<Revokes>,
}

impl Etcd {
    pub(super) fn new(thread: &Thread, id: u32, grpc: Grpc<Channel>, revokes: Rc<Revokes>) -> Etcd {
        Etcd {
            grpc,
            owner: format!("owner-{id}").into_bytes().into(),
            expiry_s: thread.setup.config.expiry_s,
            revokes,
        }
    }
}

impl Api for Etcd {
    fn exchange(
        &self,
        conn: &Conn,
        op: Op,
    ) -> impl Future<Output = Result<Outcome, CallError>> + use<> {
        let key = etcd::key(&conn.resource_id(op));
        let grpc = self.grpc.clone();
        let owner = self.owner.clone();
        let revokes = self.revokes.clone();
        let expiry_s = self.expiry_s;
        async move {
            match op {
                Op::Lock(_) => lock(grpc, &key, &owner, expiry_s, &revokes).await,
                Op::Unlock(_) => unlock(grpc, &key, &owner, &revokes).await,
            }
        }
    }
}

/// `LeaseGrant`, then the try-lock `Txn`; the lease of a refused (or failed) one is revoked.
async fn lock(
    mut grpc: Grpc<Channel>,
    key: &[u8],
    owner: &[u8],
    expiry_s: u32,
    revokes: &Rc<Revokes>,
) -> Result<Outcome, CallError> {
    let grant: LeaseGrantResponse = unary(&mut grpc, LEASE_GRANT_PATH, etcd::lease_grant(expiry_s))
        .await
        .map_err(|s| call_error(&s))?;
    let Some(lease) = etcd::granted_lease(&grant) else {
        // dlockd answers a refused lease with a 500: a refusal.
        return Ok(Outcome::Refused);
    };
    let txn = etcd::try_lock_txn(key, owner, lease);
    match unary::<_, TxnResponse>(&mut grpc, TXN_PATH, txn).await {
        Ok(answer) => {
            let outcome = etcd::try_lock_outcome(&answer);
            if outcome != Outcome::Granted {
                revokes.revoke(grpc, lease);
            }
            Ok(outcome)
        }
        Err(status) => {
            // Its put may have happened: the lease's end takes the key along.
            revokes.revoke(grpc, lease);
            Err(call_error(&status))
        }
    }
}

/// The unlock `Txn`; the deleted key's lease is revoked.
async fn unlock(
    mut grpc: Grpc<Channel>,
    key: &[u8],
    owner: &[u8],
    revokes: &Rc<Revokes>,
) -> Result<Outcome, CallError> {
    let answer: TxnResponse = unary(&mut grpc, TXN_PATH, etcd::unlock_txn(key, owner))
        .await
        .map_err(|s| call_error(&s))?;
    let (outcome, lease) = etcd::unlock_outcome(&answer);
    if let Some(lease) = lease {
        revokes.revoke(grpc, lease);
    }
    Ok(outcome)
}

/// One unary call with its `grpc-timeout`.
async fn unary<Q, R>(grpc: &mut Grpc<Channel>, path: &'static str, message: Q) -> Result<R, Status>
where
    Q: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
{
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(Box::new(e)))?;
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    grpc.unary(
        request,
        PathAndQuery::from_static(path),
        ProstCodec::<Q, R>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A thread's revokes still in flight.
pub(super) struct Revokes {
    thread: Rc<Thread>,
    pending: Cell<usize>,
}

impl Revokes {
    pub(super) fn new(thread: Rc<Thread>) -> Revokes {
        Revokes {
            thread,
            pending: Cell::new(0),
        }
    }

    /// Revokes `lease` on `grpc`'s connection, in a task of its own.
    fn revoke(self: &Rc<Self>, mut grpc: Grpc<Channel>, lease: i64) {
        self.pending.set(self.pending.get() + 1);
        let revokes = self.clone();
        tokio::task::spawn_local(async move {
            let request = LeaseRevokeRequest { id: lease };
            let revoked = tokio::time::timeout(
                ANSWER_TIMEOUT,
                unary::<_, LeaseRevokeResponse>(&mut grpc, LEASE_REVOKE_PATH, request),
            )
            .await;
            let failed = match revoked {
                Ok(Ok(_)) => None,
                // A lease that ended already ("requested lease not found") is no failure.
                Ok(Err(status)) if status.message().contains("not found") => None,
                Ok(Err(status)) => Some(match call_error(&status) {
                    CallError::Refused => ErrorKind::Status,
                    CallError::Transport => ErrorKind::Io,
                    CallError::Timeout => ErrorKind::Timeout,
                }),
                Err(_) => Some(ErrorKind::Timeout),
            };
            if let Some(kind) = failed {
                revokes.thread.tally.borrow_mut().error(kind, 1);
            }
            revokes.pending.set(revokes.pending.get() - 1);
        });
    }

    /// Waits until every revoke sent has its answer (each is bounded by [`ANSWER_TIMEOUT`]).
    pub(super) async fn settle(&self) {
        let deadline = Instant::now() + ANSWER_TIMEOUT + Duration::from_secs(1);
        while self.pending.get() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Command};
    use crate::client::{Addr, RunResult, Setup, StartError};
    use crate::etcd::{
        Compare, LeaseGrantRequest, RangeResponse, Request, Response, ResponseHeader, ResponseOp,
        TargetUnion, TxnRequest,
    };
    use crate::tally::Tally;
    use crate::zipf::Zipf;

    use std::collections::{BTreeMap, HashSet};
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use tonic::server::UnaryService;

    type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

    /// A key's value, lease and create revision.
    type Entry = (Vec<u8>, i64, i64);

    /// etcd's semantics for the calls the client makes, in memory: leases, keys attached to
    /// them, revisions, and a Txn's comparisons (a key's or a range's create revision, a
    /// key's value) and operations. One `Cluster` serves every member of a test.
    #[derive(Default)]
    struct Cluster {
        state: Mutex<State>,
        grants: AtomicU64,
        txns: AtomicU64,
        revokes: AtomicU64,
        /// A lease grant answers with this `error` instead of a lease.
        refuse_leases: Option<&'static str>,
    }

    #[derive(Default)]
    struct State {
        keys: BTreeMap<Vec<u8>, Entry>,
        leases: HashSet<i64>,
        next_lease: i64,
        revision: i64,
    }

    impl State {
        fn header(&self) -> Option<ResponseHeader> {
            Some(ResponseHeader {
                revision: self.revision,
            })
        }

        fn holds(&self, c: &Compare) -> bool {
            let found: Vec<&Entry> = if c.range_end.is_empty() {
                self.keys.get(&c.key).into_iter().collect()
            } else {
                self.keys
                    .range(c.key.clone()..c.range_end.clone())
                    .map(|(_, e)| e)
                    .collect()
            };
            match &c.target_union {
                // An absent key (or an empty range) has create revision 0.
                Some(TargetUnion::CreateRevision(r)) if found.is_empty() => *r == 0,
                Some(TargetUnion::CreateRevision(r)) => found.iter().all(|e| e.2 == *r),
                // An absent key has no value to compare.
                Some(TargetUnion::Value(v)) => !found.is_empty() && found.iter().all(|e| e.0 == *v),
                None => false,
            }
        }

        fn apply(&mut self, op: &crate::etcd::RequestOp) -> Result<ResponseOp, Status> {
            let response = match &op.request {
                Some(Request::Range(r)) => Response::Range(RangeResponse {
                    header: self.header(),
                    kvs: self
                        .keys
                        .get(&r.key)
                        .map(|(value, lease, created)| crate::etcd::KeyValue {
                            key: r.key.clone(),
                            create_revision: *created,
                            value: value.clone(),
                            lease: *lease,
                        })
                        .into_iter()
                        .collect(),
                }),
                Some(Request::Put(p)) => {
                    if p.lease != 0 && !self.leases.contains(&p.lease) {
                        return Err(Status::not_found("etcdserver: requested lease not found"));
                    }
                    self.revision += 1;
                    let created = self.keys.get(&p.key).map_or(self.revision, |e| e.2);
                    self.keys
                        .insert(p.key.clone(), (p.value.clone(), p.lease, created));
                    Response::Put(crate::etcd::PutResponse {
                        header: self.header(),
                    })
                }
                Some(Request::DeleteRange(d)) => {
                    let deleted = i64::from(self.keys.remove(&d.key).is_some());
                    self.revision += deleted;
                    Response::DeleteRange(crate::etcd::DeleteRangeResponse {
                        header: self.header(),
                        deleted,
                    })
                }
                None => return Err(Status::invalid_argument("an empty RequestOp")),
            };
            Ok(ResponseOp {
                response: Some(response),
            })
        }
    }

    impl Cluster {
        fn grant(&self, r: LeaseGrantRequest) -> Result<LeaseGrantResponse, Status> {
            self.grants.fetch_add(1, Ordering::Relaxed);
            if r.ttl < 1 {
                return Err(Status::invalid_argument("a TTL below 1"));
            }
            let mut s = self.state.lock().unwrap();
            if let Some(error) = self.refuse_leases {
                return Ok(LeaseGrantResponse {
                    header: s.header(),
                    error: error.into(),
                    ..LeaseGrantResponse::default()
                });
            }
            s.next_lease += 1;
            let id = s.next_lease;
            s.leases.insert(id);
            Ok(LeaseGrantResponse {
                header: s.header(),
                id,
                ttl: r.ttl.max(2),
                error: String::new(),
            })
        }

        fn txn(&self, r: TxnRequest) -> Result<TxnResponse, Status> {
            self.txns.fetch_add(1, Ordering::Relaxed);
            let mut s = self.state.lock().unwrap();
            let succeeded = r.compare.iter().all(|c| s.holds(c));
            let ops = if succeeded { &r.success } else { &r.failure };
            let responses = ops
                .iter()
                .map(|op| s.apply(op))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(TxnResponse {
                header: s.header(),
                succeeded,
                responses,
            })
        }

        fn revoke(&self, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse, Status> {
            self.revokes.fetch_add(1, Ordering::Relaxed);
            let mut s = self.state.lock().unwrap();
            if !s.leases.remove(&r.id) {
                return Err(Status::not_found("etcdserver: requested lease not found"));
            }
            let before = s.keys.len();
            s.keys.retain(|_, e| e.1 != r.id);
            if s.keys.len() < before {
                s.revision += 1;
            }
            Ok(LeaseRevokeResponse { header: s.header() })
        }

        /// (keys, leases) held now.
        fn held(&self) -> (usize, usize) {
            let s = self.state.lock().unwrap();
            (s.keys.len(), s.leases.len())
        }
    }

    /// One method of the cluster as a tonic unary service.
    struct Method<Q, R>(Arc<Cluster>, fn(&Cluster, Q) -> Result<R, Status>);

    impl<Q: Send + 'static, R: Send + 'static> UnaryService<Q> for Method<Q, R> {
        type Response = R;
        type Future = BoxFuture<Result<tonic::Response<R>, Status>>;

        fn call(&mut self, request: tonic::Request<Q>) -> Self::Future {
            let answer = (self.1)(&self.0, request.into_inner()).map(tonic::Response::new);
            Box::pin(async move { answer })
        }
    }

    /// One member: the cluster's methods, and the calls this member served.
    #[derive(Clone)]
    struct Member(Arc<Cluster>, Arc<AtomicU64>);

    impl tower_service::Service<http::Request<tonic::body::Body>> for Member {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            let cluster = self.0.clone();
            self.1.fetch_add(1, Ordering::Relaxed);
            let path = request.uri().path().to_string();
            Box::pin(async move {
                Ok(match path.as_str() {
                    LEASE_GRANT_PATH => serve(Method(cluster, Cluster::grant), request).await,
                    TXN_PATH => serve(Method(cluster, Cluster::txn), request).await,
                    LEASE_REVOKE_PATH => serve(Method(cluster, Cluster::revoke), request).await,
                    _ => Status::unimplemented(format!("{path} is not served")).into_http(),
                })
            })
        }
    }

    async fn serve<Q, R>(
        method: Method<Q, R>,
        request: http::Request<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body>
    where
        Q: prost::Message + Default + Send + 'static,
        R: prost::Message + Send + 'static,
    {
        tonic::server::Grpc::new(ProstCodec::<R, Q>::default())
            .unary(method, request)
            .await
    }

    /// Members of one cluster on loopback ports, each on a thread of its own; stopped when
    /// the test ends (the threads end with the process).
    fn start(cluster: &Arc<Cluster>, members: usize) -> Vec<(Addr, Arc<AtomicU64>)> {
        (0..members)
            .map(|_| {
                let served = Arc::new(AtomicU64::new(0));
                let member = Member(cluster.clone(), served.clone());
                let (bound, addr) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                        bound.send(listener.local_addr().unwrap()).unwrap();
                        let incoming = tonic::transport::server::TcpIncoming::from(listener)
                            .with_nodelay(Some(true));
                        tonic::transport::Server::builder()
                            .serve_with_incoming(member, incoming)
                            .await
                            .unwrap();
                    });
                });
                (Addr::Tcp(addr.recv().unwrap()), served)
            })
            .collect()
    }

    fn run(members: &[(Addr, Arc<AtomicU64>)], args: &[&str]) -> Result<RunResult, StartError> {
        let target = members
            .iter()
            .map(|(a, _)| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut all = vec![
            "--target".to_string(),
            target,
            "--protocol".to_string(),
            "etcd".to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let Ok(Command::Run(config)) = parse(all) else {
            panic!("bad test arguments")
        };
        let zipf = Arc::new(Zipf::new(config.hot, config.zipf));
        crate::client::run(Arc::new(Setup {
            addr: crate::client::resolve(&config.endpoint)?,
            config: *config,
            sha: String::new(),
            zipf,
        }))
    }

    fn errors_by_kind(tally: &Tally) -> Vec<(&'static str, u64)> {
        ErrorKind::ALL
            .iter()
            .map(|&k| (k.name(), tally.errors(k)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    // Uncontended, checked, at depth 1 and 16 over two members: every lock is granted with
    // one LeaseGrant and one Txn, every unlock releases with one Txn and revokes the lease
    // the key had, so the run leaves no key and no lease; every request counts once, and
    // the connections are spread over both members.
    #[test]
    fn uncontended_makes_dlockds_calls() {
        let cluster = Arc::new(Cluster::default());
        let members = start(&cluster, 2);
        for depth in ["1", "16"] {
            let before = (
                cluster.grants.load(Ordering::Relaxed),
                cluster.txns.load(Ordering::Relaxed),
                cluster.revokes.load(Ordering::Relaxed),
            );
            let result = run(
                &members,
                &[
                    "--connections",
                    "4",
                    "--threads",
                    "2",
                    "--depth",
                    depth,
                    "--warmup",
                    "50ms",
                    "--duration",
                    "300ms",
                    "--resources",
                    "1000",
                    "--check",
                ],
            )
            .unwrap();
            let t = &result.tally;
            assert_eq!(
                t.total_errors(),
                0,
                "depth {depth}: {:?}",
                errors_by_kind(t)
            );
            assert!(t.requests > 20, "depth {depth}: {} requests", t.requests);
            assert!(t.grants.abs_diff(t.requests / 2) <= 4 * 16, "depth {depth}");
            assert_eq!(result.driver, super::super::grpc::DRIVER_TOKIO);
            assert_eq!(cluster.held(), (0, 0), "depth {depth}: keys or leases left");
            let grants = cluster.grants.load(Ordering::Relaxed) - before.0;
            let txns = cluster.txns.load(Ordering::Relaxed) - before.1;
            let revokes = cluster.revokes.load(Ordering::Relaxed) - before.2;
            // Locks and unlocks alternate: one grant per lock, one Txn per lock and per
            // unlock, one revoke per unlock (warm-up and finishing requests included).
            assert_eq!(txns, 2 * grants, "depth {depth}");
            assert_eq!(revokes, grants, "depth {depth}");
            assert!(grants >= t.grants);
        }
        for (addr, served) in &members {
            assert!(
                served.load(Ordering::Relaxed) > 100,
                "{addr} served no share"
            );
        }
    }

    // Contended, checked: refused locks revoke their leases at once, holders release, and
    // nothing is left behind.
    #[test]
    fn contended_revokes_refused_leases() {
        let cluster = Arc::new(Cluster::default());
        let members = start(&cluster, 1);
        let result = run(
            &members,
            &[
                "--workload",
                "contended",
                "--connections",
                "4",
                "--depth",
                "2",
                "--hot",
                "8",
                "--warmup",
                "50ms",
                "--duration",
                "300ms",
                "--check",
            ],
        )
        .unwrap();
        let t = &result.tally;
        assert_eq!(t.total_errors(), 0, "{:?}", errors_by_kind(t));
        assert!(
            t.grants > 0 && t.grants < t.requests,
            "{} of {}",
            t.grants,
            t.requests
        );
        assert_eq!(cluster.held(), (0, 0));
        // Every lease was revoked: the refused locks' and the released keys'.
        assert_eq!(
            cluster.revokes.load(Ordering::Relaxed),
            cluster.grants.load(Ordering::Relaxed)
        );
    }

    // A lease etcd refuses in its answer is a refused request (dlockd answers 500): a
    // status error, and no Txn is sent. A cluster nobody serves fails the start.
    #[test]
    fn refusals_and_no_cluster() {
        let cluster = Arc::new(Cluster {
            refuse_leases: Some("etcdserver: too many requests"),
            ..Cluster::default()
        });
        let members = start(&cluster, 1);
        let result = run(
            &members,
            &[
                "--connections",
                "2",
                "--warmup",
                "0s",
                "--duration",
                "200ms",
            ],
        )
        .unwrap();
        let t = &result.tally;
        assert!(t.requests > 0);
        assert_eq!(t.grants, 0);
        // Every lock is refused; the unlocks that follow find no key (1), unchecked.
        assert_eq!(t.errors(ErrorKind::Status), t.total_errors());
        assert!(
            2 * t.total_errors() + 2 >= t.requests,
            "{:?}",
            errors_by_kind(t)
        );
        // No Txn follows a refused lease: the Txns are the unlocks', one per lock but for
        // the pairs the run ended in; no lease to revoke.
        let grants = cluster.grants.load(Ordering::Relaxed);
        let txns = cluster.txns.load(Ordering::Relaxed);
        assert!(
            txns <= grants && grants - txns <= 2,
            "{grants} grants, {txns} Txns"
        );
        assert_eq!(cluster.revokes.load(Ordering::Relaxed), 0);

        let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Addr::Tcp(nobody.local_addr().unwrap());
        drop(nobody);
        let gone = vec![(addr.clone(), Arc::new(AtomicU64::new(0)))];
        match run(&gone, &["--connections", "1", "--duration", "1s"]) {
            Err(StartError::Connect(why)) => assert!(why.contains(&addr.to_string()), "{why}"),
            Err(e) => panic!("expected a connect error, got {e}"),
            Ok(_) => panic!("connected to nobody"),
        }
    }
}
