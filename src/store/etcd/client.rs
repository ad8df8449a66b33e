//! The etcd thread's side of a `lock.etcd` store: the connections to the members, the calls
//! (each with the `operationTimeout` deadline), and each operation as the calls it makes.
//!
//! Each endpoint has a lazily connected tonic channel, which reconnects when its connection
//! breaks. Calls go to the current endpoint; one that cannot be reached (or has no leader,
//! or does not answer in time) makes the next endpoint current. A call whose repetition is
//! harmless (`LeaseGrant`, a `Txn` that only reads, `LeaseTimeToLive`, `LeaseRevoke`) is tried on the other
//! endpoints within its deadline; a `Txn` is never sent twice. With `tlsCa`, `tlsCert` or
//! `tlsKey` the channels use TLS (rustls), verifying the members for the endpoint's host.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use super::proto::{
    self, AuthenticateRequest, AuthenticateResponse, Compare, DeleteRangeRequest, KeyValue,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RequestOp, ResponseOp, TargetUnion, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest,
    WatchRequestUnion, WatchResponse,
};
use super::work::{Done, Job, Work};
use crate::api::{Answer, Holding, OpKind};
use crate::components::EtcdSettings;
use crate::lease::UnlockStatus;
use crate::store::{StoreError, StoreFailure};

const PUT: &str = "/etcdserverpb.KV/Put";
const TXN: &str = "/etcdserverpb.KV/Txn";
const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
const LEASE_REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
const LEASE_TTL: &str = "/etcdserverpb.Lease/LeaseTimeToLive";
const WATCH: &str = "/etcdserverpb.Watch/Watch";
const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";

/// HTTP/2 pings on an idle connection, so that a member that went silent (no reset) is
/// noticed and the channel reconnects. etcd refuses pings more often than every 5 s.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// The first and the longest pause after a watch that failed, before the next try.
const WATCH_PAUSE_FIRST: Duration = Duration::from_millis(50);
const WATCH_PAUSE_MOST: Duration = Duration::from_secs(1);

/// Whether a call may be sent again, to another endpoint, after a failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Again {
    /// Harmless to repeat.
    Yes,
    /// Sent once only: its effect may have happened even if its answer was lost.
    No,
}

/// What a queued acquire's try found.
enum Turn {
    /// Granted; the key's create revision.
    Granted(u64),
    /// Not yet: the revision the refusal was decided at.
    Wait(i64),
    /// Its place in the queue is gone (its lease ended): it waits no more.
    Gone,
}

/// What a try-lock found.
enum Tried {
    /// Granted; the key's create revision.
    Granted(u64),
    /// Held (or queued for), and whether the holder is the owner who asked.
    Held { by_owner: bool },
}

/// Serves one store's operations until every worker's side of it is gone.
pub(super) async fn serve(settings: EtcdSettings, mut work: mpsc::UnboundedReceiver<Work>) {
    let conn = match Conn::new(settings) {
        Ok(conn) => Arc::new(conn),
        Err(why) => {
            while let Some(w) = work.recv().await {
                refuse(w, &why);
            }
            return;
        }
    };
    let lanes = Lanes::default();
    while let Some(w) = work.recv().await {
        match w {
            Work::Probe(_) => {
                tokio::spawn(run(conn.clone(), w, None));
            }
            Work::Op(job) => lanes.start_or_queue(&conn, job),
        }
    }
}

/// The operations of each key in the order they came: one at a time on a key, so that a
/// connection's pipelined requests (a lock, then its unlock) reach etcd in their order, as
/// on the other stores; operations on different keys run side by side. A waiting acquire
/// holds its key's turn only for its first try.
///
/// A queued operation is still answered within `operationTimeout` of its coming: one whose
/// turn comes later than that fails then, without a call, as its calls would have (what held
/// its key's turn so long was etcd not answering).
#[derive(Clone, Default)]
struct Lanes(Arc<std::sync::Mutex<HashMap<Vec<u8>, Queued>>>);

/// The operations waiting for a key's turn, each with the instant it came.
type Queued = VecDeque<(Instant, Job)>;

impl Lanes {
    /// Runs `job` now if nothing runs on its key, else queues it behind what does.
    fn start_or_queue(&self, conn: &Arc<Conn>, job: Job) {
        let mut lanes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(queued) = lanes.get_mut(&job.key) {
            queued.push_back((Instant::now(), job));
            return;
        }
        lanes.insert(job.key.clone(), VecDeque::new());
        drop(lanes);
        self.start(conn, Instant::now(), job);
    }

    fn start(&self, conn: &Arc<Conn>, came: Instant, job: Job) {
        let turn = KeyTurn {
            lanes: self.clone(),
            conn: conn.clone(),
            key: job.key.clone(),
        };
        let timeout = conn.settings.operation_timeout;
        if came.elapsed() >= timeout {
            let why = format!(
                "no answer within {timeout:?} (an earlier operation on the same key waited for \
                 etcd)"
            );
            fail(job, conn.unavailable(why));
            drop(turn);
            return;
        }
        tokio::spawn(run(conn.clone(), Work::Op(job), Some(turn)));
    }
}

/// A key's turn: when dropped, the next operation queued on the key starts.
struct KeyTurn {
    lanes: Lanes,
    conn: Arc<Conn>,
    key: Vec<u8>,
}

impl Drop for KeyTurn {
    fn drop(&mut self) {
        let next = {
            let mut lanes = self.lanes.0.lock().unwrap_or_else(|p| p.into_inner());
            let next = lanes.get_mut(&self.key).and_then(VecDeque::pop_front);
            if next.is_none() {
                lanes.remove(&self.key);
            }
            next
        };
        // Outside the runtime (it is shutting down) nothing more starts.
        if let (Some((came, job)), Ok(_)) = (next, tokio::runtime::Handle::try_current()) {
            self.lanes.start(&self.conn, came, job);
        }
    }
}

/// Answers `w` with `why`, for a store whose client could not be made.
fn refuse(w: Work, why: &str) {
    match w {
        Work::Probe(reply) => {
            let _ = reply.send(Err(why.to_string()));
        }
        Work::Op(job) => fail(
            job,
            StoreError::Unavailable {
                at: "etcd".into(),
                why: why.to_string(),
            },
        ),
    }
}

/// Answers `job` with `error`, without a call.
fn fail(job: Job, error: StoreError) {
    if let Some(reply) = job.reply {
        let outcome = Err(StoreFailure {
            op: job.kind.operation(),
            error,
        });
        let _ = reply.send(Done {
            slot: job.slot,
            outcome,
            acquired: None,
        });
    }
}

/// Does one piece of work and answers it; `turn` is its key's, given back when it ends (a
/// waiting acquire gives it back after its first try).
async fn run(conn: Arc<Conn>, w: Work, turn: Option<KeyTurn>) {
    let job = match w {
        Work::Probe(reply) => {
            let _ = reply.send(conn.probe().await.map_err(|e| e.to_string()));
            return;
        }
        Work::Op(job) => job,
    };
    let Job {
        slot,
        kind,
        key,
        owner,
        reply,
        cancel,
    } = job;
    let outcome = match kind {
        OpKind::TryLock { expiry_s }
        | OpKind::Acquire {
            expiry_s,
            wait_ms: 0,
        } => conn.try_lock(&key, &owner, expiry_s).await.map(granted),
        OpKind::Acquire { expiry_s, wait_ms } => {
            conn.acquire(&key, &owner, (expiry_s, wait_ms), cancel, turn)
                .await
        }
        OpKind::Unlock => conn.unlock(&key, &owner).await.map(Answer::Unlock),
        OpKind::Renew { expiry_s } => conn.renew(&key, &owner, expiry_s).await,
        OpKind::Holder => conn.holder(&key, &owner).await.map(Answer::Holder),
    };
    let outcome = outcome.map_err(|error| StoreFailure {
        op: kind.operation(),
        error,
    });
    let Some(reply) = reply else {
        if let Err(failure) = outcome {
            crate::log::write(
                crate::log::Level::Warn,
                format_args!("releasing a grant nobody waits for: {}", failure.error),
            );
        }
        return;
    };
    let acquired = matches!(kind, OpKind::Acquire { wait_ms, .. } if wait_ms > 0);
    // The worker may be gone (the server stopped): nobody to tell.
    let _ = reply.send(Done {
        slot,
        outcome,
        acquired: acquired.then_some((key, owner)),
    });
}

/// A try-lock's answer.
fn granted(tried: Tried) -> Answer {
    match tried {
        Tried::Granted(token) => Answer::StoreGranted { token },
        Tried::Held { .. } => Answer::TryLock(Ok(false)),
    }
}

/// The connections to one store's members, and its authentication token.
struct Conn {
    settings: EtcdSettings,
    /// `etcd at HOST:PORT,...`, as failures name it.
    at: String,
    /// One channel per endpoint, in the order given.
    channels: Vec<Channel>,
    /// The endpoint calls go to first.
    current: AtomicUsize,
    /// With `username`: the token of the last `Authenticate`, made by one call at a time.
    token: tokio::sync::Mutex<Option<MetadataValue<tonic::metadata::Ascii>>>,
}

impl Conn {
    /// The channels of `settings`' endpoints, not yet connected.
    fn new(settings: EtcdSettings) -> Result<Conn, String> {
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let tls = tls_config(&settings)?;
        let mut channels = Vec::with_capacity(settings.endpoints.len());
        for endpoint in &settings.endpoints {
            let mut built = Endpoint::from_shared(format!("{scheme}://{endpoint}"))
                .map_err(|e| format!("endpoint {endpoint}: {e}"))?;
            if let Some(tls) = &tls {
                built = built
                    .tls_config(tls.clone())
                    .map_err(|e| format!("endpoint {endpoint}: TLS: {}", chain(&e)))?;
            }
            let built = built
                .connect_timeout(settings.dial_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(KEEP_ALIVE)
                .keep_alive_timeout(settings.dial_timeout)
                .keep_alive_while_idle(true);
            channels.push(built.connect_lazy());
        }
        Ok(Conn {
            at: format!("etcd at {}", settings.endpoints.join(",")),
            settings,
            channels,
            current: AtomicUsize::new(0),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// Makes the endpoint after `was` current, unless another call did already.
    fn next_endpoint(&self, was: usize) {
        let next = (was + 1) % self.channels.len().max(1);
        let _ = self
            .current
            .compare_exchange(was, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn unavailable(&self, why: String) -> StoreError {
        StoreError::Unavailable {
            at: self.at.clone(),
            why,
        }
    }

    /// One unary call, within `operationTimeout`; on the other endpoints too if `again`.
    async fn call<Q, R>(
        &self,
        path: &'static str,
        message: Q,
        again: Again,
    ) -> Result<R, StoreError>
    where
        Q: prost::Message + Clone + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let timeout = self.settings.operation_timeout;
        let deadline = Instant::now() + timeout;
        let endpoints = self.channels.len();
        let tries = if again == Again::Yes { endpoints } else { 1 };
        let mut refreshed = false;
        let mut stale = false;
        let mut why = format!("no answer within {timeout:?}");
        let mut tried = 0;
        while tried < tries {
            let at = self.current.load(Ordering::Relaxed) % endpoints.max(1);
            let Some(channel) = self.channels.get(at).cloned() else {
                break;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let token = self.token(at, deadline, std::mem::take(&mut stale)).await?;
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(left);
            if let Some(token) = token {
                request.metadata_mut().insert("token", token);
            }
            let attempt = tokio::time::timeout(left, async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(chain(&e)))?;
                grpc.unary(
                    request,
                    PathAndQuery::from_static(path),
                    tonic_prost::ProstCodec::<Q, R>::default(),
                )
                .await
            });
            match attempt.await {
                Ok(Ok(answer)) => return Ok(answer.into_inner()),
                Ok(Err(status)) if status.code() == Code::Unauthenticated && !refreshed => {
                    // The token expired (or etcd restarted): once more with a new one.
                    refreshed = true;
                    stale = true;
                }
                Ok(Err(status)) if endpoint_trouble(&status) => {
                    why = format!("{}: {}", self.endpoint(at), describe_late(&status, timeout));
                    self.next_endpoint(at);
                    tried += 1;
                }
                Ok(Err(status)) => {
                    return Err(StoreError::Refused(format!(
                        "etcd at {} refused it: {}",
                        self.endpoint(at),
                        describe(&status)
                    )))
                }
                Err(_) => {
                    why = format!("{}: no answer within {timeout:?}", self.endpoint(at));
                    self.next_endpoint(at);
                    break;
                }
            }
        }
        Err(self.unavailable(why))
    }

    fn endpoint(&self, at: usize) -> &str {
        self.settings.endpoints.get(at).map_or("?", String::as_str)
    }

    /// The token calls carry with `username`: the last one, or a new one from endpoint `at`
    /// (`fresh`: the last one was refused).
    async fn token(
        &self,
        at: usize,
        deadline: Instant,
        fresh: bool,
    ) -> Result<Option<MetadataValue<tonic::metadata::Ascii>>, StoreError> {
        let Some(auth) = &self.settings.auth else {
            return Ok(None);
        };
        let mut token = self.token.lock().await;
        if fresh {
            *token = None;
        }
        if let Some(known) = token.as_ref() {
            return Ok(Some(known.clone()));
        }
        let Some(channel) = self.channels.get(at).cloned() else {
            return Err(self.unavailable("no endpoint".into()));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let mut request = tonic::Request::new(AuthenticateRequest {
            name: auth.username.clone(),
            password: auth.password.clone(),
        });
        request.set_timeout(left);
        let asked = tokio::time::timeout(left, async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(chain(&e)))?;
            grpc.unary(
                request,
                PathAndQuery::from_static(AUTHENTICATE),
                tonic_prost::ProstCodec::<AuthenticateRequest, AuthenticateResponse>::default(),
            )
            .await
        })
        .await;
        let answer = match asked {
            Ok(Ok(answer)) => answer.into_inner(),
            Ok(Err(status)) if endpoint_trouble(&status) => {
                self.next_endpoint(at);
                return Err(self.unavailable(format!(
                    "{}: {}",
                    self.endpoint(at),
                    describe(&status)
                )));
            }
            Ok(Err(status)) => {
                return Err(StoreError::Refused(format!(
                    "etcd at {} refused user {:?}: {}",
                    self.endpoint(at),
                    auth.username,
                    describe(&status)
                )))
            }
            Err(_) => {
                self.next_endpoint(at);
                return Err(self.unavailable(format!(
                    "{}: no answer to Authenticate within {:?}",
                    self.endpoint(at),
                    self.settings.operation_timeout
                )));
            }
        };
        let value = MetadataValue::try_from(answer.token.as_str())
            .map_err(|_| StoreError::Unexpected("etcd's auth token is not ASCII".into()))?;
        *token = Some(value.clone());
        Ok(Some(value))
    }

    /// The first contact: a lease of 1 s, revoked at once. Its granted TTL is etcd's minimum.
    async fn probe(self: &Arc<Self>) -> Result<Option<String>, StoreError> {
        let lease = self.grant(1).await?;
        self.revoke_later(lease.id);
        Ok((lease.ttl > 1).then(|| {
            format!(
                "etcd's minimum lease TTL is {} s: a shorter expiryInSeconds is raised to it",
                lease.ttl
            )
        }))
    }

    /// A new lease of `ttl_s` (etcd may raise it to its minimum).
    async fn grant(&self, ttl_s: u32) -> Result<LeaseGrantResponse, StoreError> {
        let asked = LeaseGrantRequest {
            ttl: i64::from(ttl_s),
            id: 0,
        };
        let lease: LeaseGrantResponse = self.call(LEASE_GRANT, asked, Again::Yes).await?;
        if !lease.error.is_empty() {
            return Err(StoreError::Refused(format!(
                "etcd refused a lease: {}",
                lease.error
            )));
        }
        if lease.id == 0 {
            return Err(StoreError::Unexpected("etcd granted lease 0".into()));
        }
        Ok(lease)
    }

    /// Revokes `lease` in the background, best effort: if it cannot be, it ends at its TTL.
    fn revoke_later(self: &Arc<Self>, lease: i64) {
        let conn = self.clone();
        tokio::spawn(async move {
            let revoked: Result<LeaseRevokeResponse, _> = conn
                .call(LEASE_REVOKE, LeaseRevokeRequest { id: lease }, Again::Yes)
                .await;
            if let Err(e) = revoked {
                // A lease already ended (etcd says "requested lease not found") is no news.
                if !e.to_string().contains("not found") {
                    crate::log::write(
                        crate::log::Level::Debug,
                        format_args!("lease {lease:x} could not be revoked: {e}"),
                    );
                }
            }
        });
    }

    async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, StoreError> {
        self.call(TXN, txn, Again::No).await
    }

    /// A `Txn` whose success puts the lock key under `lease`: the grant's fence (the
    /// revision it was put at), or the refusal's answer. The lease is revoked unless the key
    /// holds it: on a refusal, and on a failure (the put may have happened: the lease's end
    /// takes the key along).
    async fn granting_txn(
        self: &Arc<Self>,
        lease: i64,
        txn: TxnRequest,
    ) -> Result<Result<u64, TxnResponse>, StoreError> {
        let done = match self.txn(txn).await {
            Ok(done) => done,
            Err(e) => {
                self.revoke_later(lease);
                return Err(e);
            }
        };
        let revision = done.header.as_ref().map_or(0, |h| h.revision);
        if !done.succeeded {
            self.revoke_later(lease);
            return Ok(Err(done));
        }
        match u64::try_from(revision) {
            Ok(token) if token > 0 => Ok(Ok(token)),
            _ => {
                self.revoke_later(lease);
                Err(StoreError::Unexpected(format!(
                    "a granted Txn at revision {revision}"
                )))
            }
        }
    }

    /// `Txn`: if the key is absent, put `owner` under a new lease of `expiry_s`; else read it.
    async fn try_lock(
        self: &Arc<Self>,
        key: &[u8],
        owner: &[u8],
        expiry_s: u32,
    ) -> Result<Tried, StoreError> {
        let lease = self.grant(expiry_s).await?.id;
        let queue = queue_of(key);
        let txn = TxnRequest {
            // Free, and nobody queued for it: a try-lock never takes a lock from its waiters.
            compare: vec![
                compare(key, TargetUnion::CreateRevision(0)),
                Compare {
                    range_end: prefix_end(&queue),
                    ..compare(&queue, TargetUnion::CreateRevision(0))
                },
            ],
            success: vec![put(key, owner, lease, false)],
            failure: vec![range(key)],
        };
        let done = match self.granting_txn(lease, txn).await? {
            Ok(token) => return Ok(Tried::Granted(token)),
            Err(refused) => refused,
        };
        let holder = found(&done.responses);
        Ok(Tried::Held {
            by_owner: holder.is_some_and(|kv| kv.value == owner),
        })
    }

    /// `Txn`: if the value is `owner`, read and delete the key; else read it.
    async fn unlock(
        self: &Arc<Self>,
        key: &[u8],
        owner: &[u8],
    ) -> Result<UnlockStatus, StoreError> {
        let txn = TxnRequest {
            compare: vec![compare(key, TargetUnion::Value(owner.to_vec()))],
            success: vec![range(key), delete(key)],
            failure: vec![range(key)],
        };
        let done = self.txn(txn).await?;
        let holder = found(&done.responses);
        if done.succeeded {
            if let Some(lease) = holder.map(|kv| kv.lease).filter(|&l| l != 0) {
                self.revoke_later(lease);
            }
            return Ok(UnlockStatus::Success);
        }
        Ok(match holder {
            None => UnlockStatus::LockDoesNotExist,
            Some(_) => UnlockStatus::LockBelongsToOthers,
        })
    }

    /// A new lease of `expiry_s`, then `Txn`: if the value is `owner`, put it again under the
    /// new lease; else read the key.
    async fn renew(
        self: &Arc<Self>,
        key: &[u8],
        owner: &[u8],
        expiry_s: u32,
    ) -> Result<Answer, StoreError> {
        let lease = self.grant(expiry_s).await?.id;
        let txn = TxnRequest {
            compare: vec![compare(key, TargetUnion::Value(owner.to_vec()))],
            success: vec![put(key, owner, lease, true)],
            failure: vec![range(key)],
        };
        // On a failure the new lease is left to end by itself: if the put happened after all,
        // the lock lives the time its owner asked for.
        let done = self.txn(txn).await?;
        if !done.succeeded {
            self.revoke_later(lease);
            return Ok(Answer::Renew(match found(&done.responses) {
                None => UnlockStatus::LockDoesNotExist,
                Some(_) => UnlockStatus::LockBelongsToOthers,
            }));
        }
        let before = done.responses.first().and_then(|r| match &r.response {
            Some(proto::Response::Put(put)) => put.prev_kv.as_ref(),
            _ => None,
        });
        let Some(before) = before else {
            return Err(StoreError::Unexpected(
                "a renewing Txn without the key's previous value".into(),
            ));
        };
        if before.lease != 0 && before.lease != lease {
            self.revoke_later(before.lease);
        }
        u64::try_from(before.create_revision)
            .map(|token| Answer::StoreRenewed { token })
            .map_err(|_| StoreError::Unexpected("a negative create revision".into()))
    }

    /// The key and the number of its waiters (one `Txn` of two reads), then the time to live
    /// of the key's lease.
    async fn holder(&self, key: &[u8], owner: &[u8]) -> Result<Holding, StoreError> {
        let queue = queue_of(key);
        let reads = TxnRequest {
            compare: Vec::new(),
            success: vec![
                range(key),
                RequestOp {
                    request: Some(proto::Request::Range(RangeRequest {
                        range_end: prefix_end(&queue),
                        key: queue,
                        count_only: true,
                    })),
                },
            ],
            failure: Vec::new(),
        };
        // Reads only: harmless to repeat.
        let read: TxnResponse = self.call(TXN, reads, Again::Yes).await?;
        let waiters = match read.responses.get(1).and_then(|r| r.response.as_ref()) {
            Some(proto::Response::Range(queued)) => u32::try_from(queued.count).unwrap_or(u32::MAX),
            _ => 0,
        };
        let Some(kv) = found(&read.responses).cloned() else {
            return Ok(Holding::default());
        };
        let remaining_ms = if kv.lease == 0 {
            // Written by hand, without a lease: it never ends.
            u64::MAX
        } else {
            let asked = LeaseTimeToLiveRequest {
                id: kv.lease,
                keys: false,
            };
            let ttl: LeaseTimeToLiveResponse = self.call(LEASE_TTL, asked, Again::Yes).await?;
            match u64::try_from(ttl.ttl) {
                Ok(seconds) => seconds.saturating_mul(1000),
                // The lease ended between the two reads: the key went with it.
                Err(_) => return Ok(Holding::default()),
            }
        };
        Ok(Holding {
            locked: true,
            owned_by_caller: !owner.is_empty() && kv.value == owner,
            remaining_ms,
            waiters,
        })
    }

    /// A try-lock; if the lock is held, a place in its queue (a waiter key on a lease that
    /// outlives the wait), then a try whenever the lock or a waiter's key is deleted, granted
    /// once the lock is free and this waiter is first; for at most `wait_ms`, or until
    /// `cancel`'s sender is dropped. The place is given up however the wait ends.
    async fn acquire(
        self: &Arc<Self>,
        key: &[u8],
        owner: &[u8],
        (expiry_s, wait_ms): (u32, u32),
        cancel: Option<oneshot::Receiver<()>>,
        turn: Option<KeyTurn>,
    ) -> Result<Answer, StoreError> {
        let until = tokio::time::Instant::now() + Duration::from_millis(u64::from(wait_ms));
        let first = self.try_lock(key, owner, expiry_s).await;
        // The first try was made in the key's turn; the wait does not hold it.
        drop(turn);
        match first? {
            Tried::Granted(token) => return Ok(Answer::StoreGranted { token }),
            // Not re-entrant: nobody waits for themselves.
            Tried::Held { by_owner: true, .. } => return Ok(Answer::TryLock(Ok(false))),
            Tried::Held { .. } => {}
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(Answer::TryLock(Ok(false)));
        }
        // The place outlives the wait by a little; if this dlockd dies, the queue moves on
        // when it ends.
        let place_ttl = u32::try_from(left.as_secs().saturating_add(2)).unwrap_or(u32::MAX);
        let ticket = self.grant(place_ttl).await?.id;
        let mine = [queue_of(key), format!("{ticket:016x}").into_bytes()].concat();
        let queued = PutRequest {
            key: mine.clone(),
            value: owner.to_vec(),
            lease: ticket,
            prev_kv: false,
        };
        let put: Result<PutResponse, _> = self.call(PUT, queued, Again::No).await;
        let joined = put.and_then(|put| {
            put.header
                .map(|h| h.revision)
                .filter(|&r| r > 0)
                .ok_or_else(|| StoreError::Unexpected("a Put without a revision".into()))
        });
        let outcome = match joined {
            Ok(place) => {
                self.wait_turn(key, owner, expiry_s, (&mine, place), until, cancel)
                    .await
            }
            Err(e) => Err(e),
        };
        // Its key goes with its lease (a granted turn deleted it already).
        self.revoke_later(ticket);
        outcome
    }

    /// Tries whenever the lock or a waiter's key is deleted, until this waiter's turn comes,
    /// `until`, or the cancel; `place` is its waiter key and that key's create revision.
    async fn wait_turn(
        self: &Arc<Self>,
        key: &[u8],
        owner: &[u8],
        expiry_s: u32,
        place: (&[u8], i64),
        until: tokio::time::Instant,
        cancel: Option<oneshot::Receiver<()>>,
    ) -> Result<Answer, StoreError> {
        let cancelled = async move {
            match cancel {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cancelled);
        let refused = Ok(Answer::TryLock(Ok(false)));
        let mut pause = WATCH_PAUSE_FIRST;
        loop {
            let revision = match self.take_turn(key, owner, expiry_s, place).await? {
                Turn::Granted(token) => return Ok(Answer::StoreGranted { token }),
                Turn::Gone => return refused,
                Turn::Wait(revision) => revision,
            };
            if tokio::time::Instant::now() >= until {
                return refused;
            }
            tokio::select! {
                watched = self.deleted(key, revision.saturating_add(1)) => match watched {
                    Ok(()) => pause = WATCH_PAUSE_FIRST,
                    Err(_) => {
                        // The next try says whether etcd is there; the pause keeps a watch
                        // that keeps failing from turning into polling.
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = tokio::time::sleep_until(until) => {}
                            _ = &mut cancelled => return refused,
                        }
                        pause = (pause * 2).min(WATCH_PAUSE_MOST);
                    }
                },
                _ = tokio::time::sleep_until(until) => return refused,
                _ = &mut cancelled => return refused,
            }
        }
    }

    /// One `Txn`: if the lock is free, this waiter's key is still there, and no waiter's key
    /// is older, put the owner under a new lease and delete the waiter key; else read the
    /// waiter key.
    async fn take_turn(
        self: &Arc<Self>,
        key: &[u8],
        owner: &[u8],
        expiry_s: u32,
        (mine, place): (&[u8], i64),
    ) -> Result<Turn, StoreError> {
        let lease = self.grant(expiry_s).await?.id;
        let queue = queue_of(key);
        let txn = TxnRequest {
            compare: vec![
                compare(key, TargetUnion::CreateRevision(0)),
                compare(mine, TargetUnion::CreateRevision(place)),
                Compare {
                    result: proto::COMPARE_GREATER,
                    range_end: prefix_end(&queue),
                    ..compare(&queue, TargetUnion::CreateRevision(place - 1))
                },
            ],
            success: vec![put(key, owner, lease, false), delete(mine)],
            failure: vec![range(mine)],
        };
        let done = match self.granting_txn(lease, txn).await? {
            Ok(token) => return Ok(Turn::Granted(token)),
            Err(refused) => refused,
        };
        let revision = done.header.as_ref().map_or(0, |h| h.revision);
        Ok(match found(&done.responses) {
            None => Turn::Gone,
            Some(_) => Turn::Wait(revision),
        })
    }

    /// Returns once `key` or one of its waiters' keys is deleted at `from` or later (or a
    /// watch was compacted away: then the caller tries again at once).
    async fn deleted(&self, key: &[u8], from: i64) -> Result<(), StoreError> {
        let queue = queue_of(key);
        let watch = |key: Vec<u8>, range_end: Vec<u8>| WatchRequest {
            request_union: Some(WatchRequestUnion::CreateRequest(WatchCreateRequest {
                key,
                range_end,
                start_revision: from,
                filters: vec![proto::FILTER_NOPUT],
            })),
        };
        let creates = [
            watch(key.to_vec(), Vec::new()),
            watch(queue.clone(), prefix_end(&queue)),
        ];
        // The request stream stays open: etcd ends a watch whose stream the client closed.
        let outbound = tokio_stream::iter(creates).chain(tokio_stream::pending());
        let timeout = self.settings.operation_timeout;
        let at = self.current.load(Ordering::Relaxed) % self.channels.len().max(1);
        let Some(channel) = self.channels.get(at).cloned() else {
            return Err(self.unavailable("no endpoint".into()));
        };
        let deadline = Instant::now() + timeout;
        let token = self.token(at, deadline, false).await?;
        let mut request = tonic::Request::new(outbound);
        if let Some(token) = token {
            request.metadata_mut().insert("token", token);
        }
        let opened = tokio::time::timeout(timeout, async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(chain(&e)))?;
            grpc.streaming(
                request,
                PathAndQuery::from_static(WATCH),
                tonic_prost::ProstCodec::<WatchRequest, WatchResponse>::default(),
            )
            .await
        })
        .await;
        let mut events = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                if endpoint_trouble(&status) {
                    self.next_endpoint(at);
                }
                return Err(self.unavailable(describe(&status)));
            }
            Err(_) => {
                self.next_endpoint(at);
                return Err(self.unavailable(format!("no watch within {timeout:?}")));
            }
        };
        loop {
            match events.message().await {
                Ok(Some(watched)) => {
                    if watched
                        .events
                        .iter()
                        .any(|e| e.r#type == proto::EVENT_DELETE)
                    {
                        return Ok(());
                    }
                    if watched.canceled {
                        return if watched.compact_revision > 0 {
                            Ok(())
                        } else {
                            Err(StoreError::Refused(format!(
                                "etcd ended the watch: {}",
                                watched.cancel_reason
                            )))
                        };
                    }
                }
                Ok(None) => return Err(self.unavailable("the watch ended".into())),
                Err(status) => return Err(self.unavailable(describe(&status))),
            }
        }
    }
}

/// The TLS settings of `tlsCa`, `tlsCert` and `tlsKey`, or `None` without them: the members'
/// certificates are verified against `tlsCa` (else the platform's roots) for the endpoint's
/// host; `tlsCert` and `tlsKey` are the client's certificate. Files that cannot be read, or
/// hold no PEM, are refused, naming the field and the file.
pub(super) fn tls_config(settings: &EtcdSettings) -> Result<Option<ClientTlsConfig>, String> {
    let Some(files) = &settings.tls else {
        return Ok(None);
    };
    let read = |field: &str, path: &std::path::Path| -> Result<Vec<u8>, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("{field} {}: cannot read it: {e}", path.display()))?;
        if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(format!("{field} {}: not a PEM file", path.display()));
        }
        Ok(pem)
    };
    let mut config = ClientTlsConfig::new();
    config = match &files.ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read("tlsCa", ca)?)),
        None => config.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        let identity = Identity::from_pem(read("tlsCert", cert)?, read("tlsKey", key)?);
        config = config.identity(identity);
    }
    Ok(Some(config))
}

/// The prefix of the keys of the acquires waiting for `key`: `<key>||waiter||`, followed by
/// each waiter's lease. A resource id never holds `||`, so no lock key is among them.
fn queue_of(key: &[u8]) -> Vec<u8> {
    [key, b"||waiter||"].concat()
}

/// The end of the range of keys that start with `prefix` (its last byte that is not 0xff,
/// plus one).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the key space.
    vec![0]
}

/// The first key a `Txn`'s first `Range` found.
fn found(responses: &[ResponseOp]) -> Option<&KeyValue> {
    responses.iter().find_map(|r| match &r.response {
        Some(proto::Response::Range(read)) => Some(read.kvs.first()),
        _ => None,
    })?
}

/// `key`'s `target` is equal to its value.
fn compare(key: &[u8], target: TargetUnion) -> Compare {
    let kind = match target {
        TargetUnion::Value(_) => proto::TARGET_VALUE,
        _ => proto::TARGET_CREATE,
    };
    Compare {
        result: proto::COMPARE_EQUAL,
        target: kind,
        key: key.to_vec(),
        target_union: Some(target),
        range_end: Vec::new(),
    }
}

fn put(key: &[u8], owner: &[u8], lease: i64, prev_kv: bool) -> RequestOp {
    RequestOp {
        request: Some(proto::Request::Put(PutRequest {
            key: key.to_vec(),
            value: owner.to_vec(),
            lease,
            prev_kv,
        })),
    }
}

fn range(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(proto::Request::Range(RangeRequest {
            key: key.to_vec(),
            ..RangeRequest::default()
        })),
    }
}

fn delete(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(proto::Request::DeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
        })),
    }
}

/// Whether a failed call says more of the endpoint than of the call: it could not be
/// reached, has no leader, or timed out; another endpoint may do.
fn endpoint_trouble(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

/// [`describe`], but a call that ran out of time says so plainly.
fn describe_late(status: &Status, timeout: Duration) -> String {
    let text = describe(status);
    if status.code() == Code::DeadlineExceeded || text.contains("Timeout expired") {
        format!("no answer within {timeout:?}")
    } else {
        text
    }
}

/// A status's message and the errors under it.
fn describe(status: &Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&more);
        }
        source = e.source();
    }
    if text.is_empty() {
        text = format!("{:?}", status.code());
    }
    text
}

/// An error and the errors under it.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}
