//! `--protocol grpc`: the same threads, phases, workloads and pacing as the other protocols,
//! with tonic's HTTP/2 client on a tokio current-thread runtime per client thread (pinned as
//! the monoio threads are) instead of monoio. `--protocol etcd` runs on the same connections
//! with etcd's calls instead of the Dapr API's: each request's exchange is an [`Api`]'s, the
//! Dapr API's one unary call ([`Dapr`]) or etcd's calls (`super::etcd`).
//!
//! Each connection is one tonic `Channel`, that is one HTTP/2 connection, opened before the
//! clock starts like every other protocol's. `--depth` is the number of calls in flight on it
//! at once: concurrent HTTP/2 streams, where HTTP/1.1 and RESP pipeline. Which request comes
//! next, when, and whether it is measured is decided by the same [`Conn::fill`] as for the
//! other protocols; a call's latency runs from the same start (closed loop: when it was
//! sent; open loop: its intended send time) to when its answer was decoded, into the same
//! histograms.
//!
//! Ordering: a pipelined stream is answered in order, so an unlock written right behind its
//! lock is decided after it. Concurrent streams are not, so an unlock whose resource has a
//! lock in flight on this connection is held back ("parked") until that lock is answered, and
//! is then sent (closed loop: timed from then, when it is really sent; open loop: still from
//! its intended send time). Parked requests are not in flight: the connection keeps `depth`
//! calls at the server, each of them decidable in any order.
//!
//! Failures: a call answered with a gRPC status (not OK) is refused (a `status` error, as a
//! non-200 over HTTP); a call that got no answer (connection refused, reset or closed, stream
//! reset) is an `io` error, and one with no answer within [`ANSWER_TIMEOUT`] a `timeout`.
//! tonic reconnects a channel by itself; as over HTTP, the connection goes on after a failure
//! only if the server had answered something since the previous one, and otherwise ends
//! (the requests it still had parked count as `io` errors).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use super::etcd::{Etcd, Revokes};
use super::{
    duration_ns, pin, resolve, Addr, Conn, Fill, InFlight, Pace, Plan, Setup, StartError, Thread,
    ANSWER_TIMEOUT, CONNECT_TIMEOUT,
};
use crate::grpc::{
    call_error, try_lock_outcome, unlock_outcome, CallError, TryLockRequest, TryLockResponse,
    UnlockRequest, UnlockResponse, TRY_LOCK_PATH, UNLOCK_PATH,
};
use crate::tally::{ErrorKind, Tally};
use crate::wire::{Outcome, Protocol};
use crate::workload::Op;

/// What the report names as the client's I/O driver for gRPC runs.
pub const DRIVER_TOKIO: &str = "tokio";

/// One client thread: pin, build its tokio runtime, connect, wait for the start, run.
pub(super) fn client_thread(
    setup: Arc<Setup>,
    t: u32,
    ready: Sender<Result<&'static str, StartError>>,
    go: Receiver<Option<Plan>>,
) -> Tally {
    if let Err(e) = pin(&setup.config.cpus, t) {
        let _ = ready.send(Err(e));
        return Tally::new();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(StartError::Runtime(format!("tokio: {e}"))));
            return Tally::new();
        }
    };
    let local = tokio::task::LocalSet::new();
    let channels = match local.block_on(&runtime, connect_all(&setup, t)) {
        Ok(channels) => channels,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Tally::new();
        }
    };
    let _ = ready.send(Ok(DRIVER_TOKIO));
    drop(ready);
    // Outside the runtime: nothing runs on this thread until the start.
    let Ok(Some(plan)) = go.recv() else {
        return Tally::new();
    };
    let thread = Rc::new(Thread {
        setup,
        plan,
        tally: RefCell::new(Tally::new()),
        spinner: None,
    });
    local.block_on(&runtime, async {
        let revokes = Rc::new(Revokes::new(thread.clone()));
        let tasks: Vec<_> = channels
            .into_iter()
            .map(|(id, channel)| {
                let grpc = Grpc::new(channel);
                let thread = thread.clone();
                match thread.setup.config.protocol {
                    Protocol::Etcd => {
                        let etcd = Etcd::new(&thread, id, grpc, revokes.clone());
                        tokio::task::spawn_local(connection(thread, id, etcd))
                    }
                    _ => {
                        let dapr = Dapr::new(&thread, id, grpc);
                        tokio::task::spawn_local(connection(thread, id, dapr))
                    }
                }
            })
            .collect();
        for task in tasks {
            if task.await.is_err() {
                eprintln!("dlockd-loadgen: a gRPC connection failed; its counts are lost");
            }
        }
        // etcd: the leases revoked after their answers, as dlockd revokes them.
        revokes.settle().await;
    });
    thread.tally.take()
}

/// Opens this thread's connections: `t`, `t + threads`, … as for the other protocols; with
/// several endpoints (etcd's members), connection `id` to the `id % n`th.
async fn connect_all(setup: &Setup, t: u32) -> Result<Vec<(u32, Channel)>, StartError> {
    let config = &setup.config;
    let addrs = if config.endpoints.len() > 1 {
        config
            .endpoints
            .iter()
            .map(resolve)
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![setup.addr.clone()]
    };
    let mut channels = Vec::new();
    for id in (t..config.connections).step_by(config.threads as usize) {
        let addr = &addrs[id as usize % addrs.len()];
        // One address: named as given (a host name, say); several: the member's address.
        let named = || match addrs.len() {
            1 => config.target.clone(),
            _ => addr.to_string(),
        };
        let channel = connect(addr)
            .await
            .map_err(|e| StartError::Connect(format!("{}: {e}", named())))?;
        channels.push((id, channel));
    }
    Ok(channels)
}

/// One HTTP/2 connection (a tonic channel connects exactly one), established before it returns:
/// over TCP, or over a Unix socket (tonic's own connector for `unix:` URIs).
async fn connect(addr: &Addr) -> Result<Channel, String> {
    let endpoint = match addr {
        Addr::Tcp(tcp) => Endpoint::from_shared(format!("http://{tcp}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true),
        Addr::Unix(path) => {
            Endpoint::from_shared(format!("unix:{}", path.display())).map_err(|e| e.to_string())?
        }
    };
    let endpoint = endpoint.connect_timeout(CONNECT_TIMEOUT);
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await;
    match connected {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        }),
        Err(_) => Err("connect timed out".into()),
    }
}

/// A request as tonic sends it.
enum Message {
    Lock(TryLockRequest),
    Unlock(UnlockRequest),
}

/// A finished call.
struct Done {
    sent: InFlight,
    /// The connection's failure count when the call was sent (see [`Health`]).
    generation: u64,
    answer: Result<Outcome, CallError>,
    answered_ns: u64,
}

/// What a connection's requests are on the wire: one request's whole exchange with the
/// server, from the calls it makes to the answer that decides it.
pub(super) trait Api: 'static {
    /// The exchange of `op` (a lock or an unlock of one of `conn`'s resources).
    fn exchange(
        &self,
        conn: &Conn,
        op: Op,
    ) -> impl Future<Output = Result<Outcome, CallError>> + use<Self>;
}

/// Sends one request and waits for its answer, at most [`ANSWER_TIMEOUT`].
async fn call(
    epoch: Instant,
    exchange: impl Future<Output = Result<Outcome, CallError>>,
    sent: InFlight,
    generation: u64,
) -> Done {
    let answer = match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(CallError::Timeout),
    };
    Done {
        sent,
        generation,
        answer,
        answered_ns: duration_ns(epoch.elapsed()),
    }
}

async fn exchange(grpc: &mut Grpc<Channel>, message: Message) -> Result<Outcome, CallError> {
    grpc.ready().await.map_err(|_| CallError::Transport)?;
    match message {
        Message::Lock(m) => grpc
            .unary::<_, TryLockResponse, _>(
                tonic::Request::new(m),
                PathAndQuery::from_static(TRY_LOCK_PATH),
                ProstCodec::default(),
            )
            .await
            .map(|r| try_lock_outcome(r.get_ref()))
            .map_err(|s| call_error(&s)),
        Message::Unlock(m) => grpc
            .unary::<_, UnlockResponse, _>(
                tonic::Request::new(m),
                PathAndQuery::from_static(UNLOCK_PATH),
                ProstCodec::default(),
            )
            .await
            .map(|r| unlock_outcome(r.get_ref()))
            .map_err(|s| call_error(&s)),
    }
}

/// Whether a connection may go on after failures: as over HTTP, it does when the server
/// answered something since the previous failure (tonic reconnects the channel), and ends
/// otherwise. All the calls in flight when a connection breaks fail together; they count as
/// one failure, because only a call sent after a failure was noticed (a later generation)
/// can report a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Health {
    generation: u64,
    answered: bool,
    broken: bool,
}

impl Health {
    fn new() -> Health {
        Health {
            generation: 0,
            answered: false,
            broken: false,
        }
    }

    fn answered(&mut self, generation: u64) {
        if generation == self.generation {
            self.answered = true;
        }
    }

    fn failed(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        if self.answered {
            self.generation += 1;
            self.answered = false;
        } else {
            self.broken = true;
        }
    }
}

/// The Dapr lock API's calls: what one connection needs to build its messages.
struct Dapr {
    grpc: Grpc<Channel>,
    store: String,
    owner: String,
    expiry_s: i32,
}

impl Api for Dapr {
    fn exchange(
        &self,
        conn: &Conn,
        op: Op,
    ) -> impl Future<Output = Result<Outcome, CallError>> + use<> {
        let message = self.message(conn, op);
        let mut grpc = self.grpc.clone();
        async move { exchange(&mut grpc, message).await }
    }
}

impl Dapr {
    fn new(thread: &Thread, id: u32, grpc: Grpc<Channel>) -> Dapr {
        let config = &thread.setup.config;
        Dapr {
            grpc,
            store: config.store.clone(),
            owner: format!("owner-{id}"),
            expiry_s: i32::try_from(config.expiry_s).unwrap_or(i32::MAX),
        }
    }

    fn message(&self, conn: &Conn, op: Op) -> Message {
        let id = conn.resource_id(op);
        let resource_id = String::from_utf8_lossy(&id).into_owned();
        match op {
            Op::Lock(_) => Message::Lock(TryLockRequest {
                store_name: self.store.clone(),
                resource_id,
                lock_owner: self.owner.clone(),
                expiry_in_seconds: self.expiry_s,
            }),
            Op::Unlock(_) => Message::Unlock(UnlockRequest {
                store_name: self.store.clone(),
                resource_id,
                lock_owner: self.owner.clone(),
            }),
        }
    }
}

/// One connection for the whole run; see the module docs.
async fn connection(thread: Rc<Thread>, id: u32, api: impl Api) {
    let config = &thread.setup.config;
    let depth = config.depth as usize;
    let mut conn = Conn::new(&thread, id);
    let closed_loop = matches!(conn.pace, Pace::Closed { .. });
    let epoch = thread.plan.epoch;
    let send = |conn: &Conn, sent: InFlight, generation: u64| {
        call(epoch, api.exchange(conn, sent.op), sent, generation)
    };
    let mut calls = FuturesUnordered::new();
    // Resources with a lock in flight (a multiset: contended may lock one twice).
    let mut locks_in_flight: Vec<u64> = Vec::with_capacity(depth);
    let mut parked: VecDeque<InFlight> = VecDeque::with_capacity(depth);
    let mut batch = VecDeque::with_capacity(depth);
    let mut scratch = Vec::new();
    let mut health = Health::new();
    let mut woke_ns = 0;
    loop {
        let mut next_slot = None;
        while !health.broken && calls.len() < depth {
            batch.clear();
            scratch.clear();
            let mut unsent = None;
            let fill = conn.fill(
                &thread.plan,
                thread.now_ns(),
                woke_ns,
                depth - calls.len(),
                &mut scratch,
                &mut batch,
                &mut unsent,
            );
            if let Some(unsent) = unsent {
                unsent.record(&mut thread.tally.borrow_mut());
            }
            for sent in batch.drain(..) {
                match sent.op {
                    Op::Unlock(r) if locks_in_flight.contains(&r) => parked.push_back(sent),
                    op => {
                        if let Op::Lock(r) = op {
                            locks_in_flight.push(r);
                        }
                        calls.push(send(&conn, sent, health.generation));
                    }
                }
            }
            match fill {
                Fill::Write => {}
                Fill::WaitSlot(slot) => {
                    next_slot = Some(slot);
                    break;
                }
                // Nothing to send until an answer comes (the batch passed in is empty, so
                // `fill` says Done even with calls in flight: answers can still bring
                // releases, so the connection ends only once nothing is in flight).
                Fill::WaitAnswer | Fill::Done => break,
            }
        }
        if calls.is_empty() {
            match next_slot {
                Some(slot) if !health.broken => {
                    let at = thread.plan.epoch + Duration::from_nanos(slot);
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    woke_ns = thread.now_ns();
                    continue;
                }
                _ => {
                    // Done, or broken. A parked unlock waits for a call in flight, so only a
                    // broken connection can leave any: they are lost.
                    let lost = parked.len() as u64;
                    thread.tally.borrow_mut().error(ErrorKind::Io, lost);
                    return;
                }
            }
        }
        let done = match next_slot {
            // Open loop with room: sleeping until the next slot (an answer may come first).
            // Slots that fall due meanwhile fell due while the connection slept, and are
            // timed from when it wakes, as the monoio writer's are: the timer's lateness is
            // the client's, not the server's. Held back by depth (`None`), they are timed
            // from their slots.
            Some(slot) => {
                let at = thread.plan.epoch + Duration::from_nanos(slot);
                let done = tokio::select! {
                    biased;
                    done = calls.next() => done,
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => None,
                };
                woke_ns = thread.now_ns();
                done
            }
            None => calls.next().await,
        };
        let Some(done) = done else {
            continue;
        };
        if let Op::Lock(r) = done.sent.op {
            if let Some(i) = locks_in_flight.iter().position(|&l| l == r) {
                locks_in_flight.swap_remove(i);
            }
        }
        {
            let mut tally = thread.tally.borrow_mut();
            let outcome = match done.answer {
                Ok(outcome) => Some(outcome),
                Err(CallError::Refused) => Some(Outcome::Refused),
                Err(CallError::Transport) => {
                    tally.error(ErrorKind::Io, 1);
                    None
                }
                Err(CallError::Timeout) => {
                    tally.error(ErrorKind::Timeout, 1);
                    None
                }
            };
            match outcome {
                Some(outcome) => {
                    health.answered(done.generation);
                    let sent = done.sent;
                    let granted = tally.verdict(conn.workload.on_answer(
                        sent.op,
                        outcome,
                        sent.start_ns,
                        done.answered_ns,
                    ));
                    if sent.measured {
                        tally.record(
                            done.answered_ns.saturating_sub(sent.start_ns),
                            done.answered_ns,
                            granted,
                        );
                    }
                }
                None => health.failed(done.generation),
            }
        }
        // Unlocks whose lock is no longer in flight go now.
        let mut i = 0;
        while i < parked.len() {
            let Some(&waiting) = parked.get(i) else {
                break;
            };
            let Op::Unlock(r) = waiting.op else {
                i += 1;
                continue;
            };
            if locks_in_flight.contains(&r) {
                i += 1;
                continue;
            }
            parked.remove(i);
            if health.broken {
                thread.tally.borrow_mut().error(ErrorKind::Io, 1);
                continue;
            }
            let mut sent = waiting;
            if closed_loop {
                sent.start_ns = thread.now_ns();
            }
            calls.push(send(&conn, sent, health.generation));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Command};
    use crate::client::RunResult;
    use crate::tally::{Report, ReportBase};
    use crate::zipf::Zipf;

    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use tonic::server::UnaryService;
    use tonic::{Request, Response, Status};

    type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

    /// A small Dapr lock service: one store, leases with an expiry, daprd's answers. Each
    /// try-lock waits `lock_delay` before it is decided, so an unlock sent while its lock is
    /// still in flight would overtake it (and be answered "no such lock").
    struct Locks {
        store: String,
        lock_delay: Duration,
        held: Mutex<HashMap<String, (String, Instant)>>,
        calls: AtomicU64,
    }

    impl Locks {
        fn held(&self) -> usize {
            let now = Instant::now();
            let held = self.held.lock().unwrap();
            held.values().filter(|(_, until)| *until > now).count()
        }

        fn store_ok(&self, store: &str) -> Result<(), Status> {
            if store == self.store {
                Ok(())
            } else {
                Err(Status::invalid_argument(format!(
                    "lock store {store} not found"
                )))
            }
        }

        async fn try_lock(&self, r: TryLockRequest) -> Result<TryLockResponse, Status> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.store_ok(&r.store_name)?;
            if !self.lock_delay.is_zero() {
                tokio::time::sleep(self.lock_delay).await;
            }
            let now = Instant::now();
            let mut held = self.held.lock().unwrap();
            if held
                .get(&r.resource_id)
                .is_some_and(|(_, until)| *until > now)
            {
                return Ok(TryLockResponse { success: false });
            }
            let until = now + Duration::from_secs(u64::try_from(r.expiry_in_seconds).unwrap());
            held.insert(r.resource_id, (r.lock_owner, until));
            Ok(TryLockResponse { success: true })
        }

        fn unlock(&self, r: UnlockRequest) -> Result<UnlockResponse, Status> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.store_ok(&r.store_name)?;
            let now = Instant::now();
            let mut held = self.held.lock().unwrap();
            let status = match held.get(&r.resource_id) {
                Some((_, until)) if *until <= now => 1,
                None => 1,
                Some((owner, _)) if *owner != r.lock_owner => 2,
                Some(_) => {
                    held.remove(&r.resource_id);
                    0
                }
            };
            Ok(UnlockResponse { status })
        }
    }

    #[derive(Clone)]
    struct LockService(Arc<Locks>);

    struct TryLockMethod(Arc<Locks>);
    struct UnlockMethod(Arc<Locks>);

    impl UnaryService<TryLockRequest> for TryLockMethod {
        type Response = TryLockResponse;
        type Future = BoxFuture<Result<Response<TryLockResponse>, Status>>;

        fn call(&mut self, request: Request<TryLockRequest>) -> Self::Future {
            let locks = self.0.clone();
            Box::pin(async move {
                locks
                    .try_lock(request.into_inner())
                    .await
                    .map(Response::new)
            })
        }
    }

    impl UnaryService<UnlockRequest> for UnlockMethod {
        type Response = UnlockResponse;
        type Future = BoxFuture<Result<Response<UnlockResponse>, Status>>;

        fn call(&mut self, request: Request<UnlockRequest>) -> Self::Future {
            let answer = self.0.unlock(request.into_inner()).map(Response::new);
            Box::pin(async move { answer })
        }
    }

    impl tower_service::Service<http::Request<tonic::body::Body>> for LockService {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            let locks = self.0.clone();
            let path = request.uri().path().to_string();
            Box::pin(async move {
                Ok(match path.as_str() {
                    TRY_LOCK_PATH => {
                        tonic::server::Grpc::new(ProstCodec::default())
                            .unary(TryLockMethod(locks), request)
                            .await
                    }
                    UNLOCK_PATH => {
                        tonic::server::Grpc::new(ProstCodec::default())
                            .unary(UnlockMethod(locks), request)
                            .await
                    }
                    _ => Status::unimplemented(format!("{path} is not served")).into_http(),
                })
            })
        }
    }

    /// The service on a loopback port or a Unix socket, on a thread of its own; stopped when
    /// dropped.
    struct Server {
        addr: Addr,
        locks: Arc<Locks>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Server {
        fn start(lock_delay: Duration) -> Server {
            Server::start_on(lock_delay, None)
        }

        /// With `unix`, on a Unix socket at that path instead of a loopback port.
        fn start_on(lock_delay: Duration, unix: Option<std::path::PathBuf>) -> Server {
            let locks = Arc::new(Locks {
                store: "lockstore".into(),
                lock_delay,
                held: Mutex::new(HashMap::new()),
                calls: AtomicU64::new(0),
            });
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (bound, addr) = std::sync::mpsc::channel();
            let service = LockService(locks.clone());
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let stop = async {
                        let _ = stopped.await;
                    };
                    let server = tonic::transport::Server::builder();
                    if let Some(path) = unix {
                        let listener = tokio::net::UnixListener::bind(&path).unwrap();
                        bound.send(Addr::Unix(path)).unwrap();
                        let incoming = futures_util::stream::unfold(listener, |l| async move {
                            let accepted = l.accept().await.map(|(stream, _)| stream);
                            Some((accepted, l))
                        });
                        let incoming = Box::pin(incoming);
                        server
                            .serve_with_incoming_shutdown(service, incoming, stop)
                            .await
                            .unwrap();
                        return;
                    }
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    bound
                        .send(Addr::Tcp(listener.local_addr().unwrap()))
                        .unwrap();
                    let incoming = tonic::transport::server::TcpIncoming::from(listener)
                        .with_nodelay(Some(true));
                    server
                        .serve_with_incoming_shutdown(service, incoming, stop)
                        .await
                        .unwrap();
                });
            });
            Server {
                addr: addr.recv().unwrap(),
                locks,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        /// Stops accepting and waits (a little) for the server to finish.
        fn stop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = self.thread.take() {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !thread.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn setup(addr: &Addr, args: &[&str]) -> Arc<Setup> {
        let mut all = vec![
            "--target".to_string(),
            addr.to_string(),
            "--protocol".to_string(),
            "grpc".to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let Ok(Command::Run(config)) = parse(all) else {
            panic!("bad test arguments")
        };
        let zipf = Arc::new(Zipf::new(config.hot, config.zipf));
        Arc::new(Setup {
            config: *config,
            addr: addr.clone(),
            sha: String::new(),
            zipf,
        })
    }

    fn run(addr: &Addr, args: &[&str]) -> RunResult {
        match crate::client::run(setup(addr, args)) {
            Ok(result) => result,
            Err(e) => panic!("the run did not start: {e}"),
        }
    }

    fn errors_by_kind(tally: &Tally) -> Vec<(&'static str, u64)> {
        ErrorKind::ALL
            .iter()
            .map(|&k| (k.name(), tally.errors(k)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    // Uncontended, checked, at depth 1 and 16 on several connections and threads: every lock
    // is granted and every unlock releases, although each try-lock is slow enough for an
    // unlock sent early to overtake it; the run leaves no lease behind, and reports as gRPC.
    #[test]
    fn uncontended_runs_clean_at_depth_1_and_16() {
        let server = Server::start(Duration::from_micros(500));
        for depth in ["1", "16"] {
            let result = run(
                &server.addr,
                &[
                    "--connections",
                    "4",
                    "--threads",
                    "2",
                    "--depth",
                    depth,
                    "--warmup",
                    "100ms",
                    "--duration",
                    "400ms",
                    "--resources",
                    "1000",
                    "--check",
                ],
            );
            let t = &result.tally;
            assert_eq!(
                t.total_errors(),
                0,
                "depth {depth}: {:?}",
                errors_by_kind(t)
            );
            assert!(t.requests > 100, "depth {depth}: {} requests", t.requests);
            // Half of the answers are grants, give or take the pairs open at the edges.
            let pairs = t.requests / 2;
            assert!(
                t.grants.abs_diff(pairs) <= 4 * 16,
                "depth {depth}: {} grants of {} requests",
                t.grants,
                t.requests
            );
            assert_eq!(server.locks.held(), 0, "depth {depth}: leases left behind");
            assert_eq!(result.driver, DRIVER_TOKIO);
            let base = ReportBase {
                target: server.addr.to_string(),
                protocol: "grpc",
                workload: "uncontended",
                connections: 4,
                depth: depth.parse().unwrap(),
                threads: 2,
                rate: 0,
                warmup_s: 0.1,
            };
            let report = Report::new(base, t, result.seconds, 0, result.driver);
            let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
            assert_eq!(json["protocol"], "grpc");
            assert_eq!(json["driver"], "tokio");
            assert!(json["p99_us"].as_f64().unwrap() > 0.0);
        }
        assert!(server.locks.calls.load(Ordering::Relaxed) > 200);
    }

    // --target unix:PATH: the same calls over a Unix socket (a sidecar's
    // dapr-<app-id>-grpc.socket), checked, pipelined as concurrent streams.
    #[test]
    fn over_a_unix_socket() {
        let path = std::env::temp_dir().join(format!("loadgen-grpc-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let server = Server::start_on(Duration::from_micros(200), Some(path.clone()));
        assert_eq!(server.addr, Addr::Unix(path.clone()));
        let result = run(
            &server.addr,
            &[
                "--connections",
                "2",
                "--depth",
                "8",
                "--warmup",
                "50ms",
                "--duration",
                "200ms",
                "--resources",
                "100",
                "--check",
            ],
        );
        let t = &result.tally;
        assert_eq!(t.total_errors(), 0, "{:?}", errors_by_kind(t));
        assert!(t.requests > 50, "{} requests", t.requests);
        assert!(t.grants > 0);
        assert_eq!(server.locks.held(), 0, "leases left behind");
        drop(server);
        let _ = std::fs::remove_file(&path);
    }

    // Deeper concurrency really is concurrent: with each try-lock taking about a millisecond
    // at the server, depth 16 answers many times more requests than depth 1.
    #[test]
    fn depth_is_calls_in_flight() {
        let server = Server::start(Duration::from_millis(2));
        let mut rps = Vec::new();
        for depth in ["1", "16"] {
            let result = run(
                &server.addr,
                &[
                    "--connections",
                    "1",
                    "--depth",
                    depth,
                    "--warmup",
                    "50ms",
                    "--duration",
                    "400ms",
                    "--check",
                ],
            );
            assert_eq!(result.tally.total_errors(), 0);
            rps.push(result.tally.requests as f64 / result.seconds);
        }
        assert!(
            rps[1] > 4.0 * rps[0],
            "depth 1: {} req/s, depth 16: {} req/s",
            rps[0],
            rps[1]
        );
    }

    // Contended and churn, checked: lock answers are yes or no, holders release, a lease is
    // never granted twice before it expires; contended leaves nothing held.
    #[test]
    fn contended_and_churn_run_clean() {
        let server = Server::start(Duration::from_micros(200));
        let contended = run(
            &server.addr,
            &[
                "--workload",
                "contended",
                "--connections",
                "4",
                "--depth",
                "8",
                "--hot",
                "4",
                "--warmup",
                "50ms",
                "--duration",
                "300ms",
                "--check",
            ],
        );
        let t = &contended.tally;
        assert_eq!(t.total_errors(), 0, "{:?}", errors_by_kind(t));
        assert!(t.grants > 0 && t.grants < t.requests);
        assert_eq!(server.locks.held(), 0, "contended left leases behind");

        let churn = run(
            &server.addr,
            &[
                "--workload",
                "churn",
                "--connections",
                "4",
                "--depth",
                "4",
                "--warmup",
                "50ms",
                "--duration",
                "300ms",
                "--check",
            ],
        );
        let t = &churn.tally;
        assert_eq!(t.total_errors(), 0, "{:?}", errors_by_kind(t));
        // 100000 resources: none is locked twice in this short run, so all are granted.
        assert!(t.requests > 0);
        assert_eq!(t.grants, t.requests);
    }

    // Open loop: every slot of the measured period is either sent or counted as unsent (slots
    // that fell due before the end while the connection slept past it: the timer's
    // millisecond, or a busy machine's scheduling delay), so the offered rate is accounted
    // for exactly, and most of it is sent to an idle server.
    #[test]
    fn open_loop_keeps_its_rate() {
        let server = Server::start(Duration::ZERO);
        let result = run(
            &server.addr,
            &[
                "--connections",
                "4",
                "--depth",
                "4",
                "--rate",
                "2000",
                "--warmup",
                "100ms",
                "--duration",
                "1s",
                "--check",
            ],
        );
        let t = &result.tally;
        assert_eq!(t.total_errors(), 0, "{:?}", errors_by_kind(t));
        let offered = (t.requests + t.unsent) as f64 / result.seconds;
        assert!(
            (1990.0..=2010.0).contains(&offered),
            "{offered} req/s offered"
        );
        assert!(t.unsent * 4 <= t.requests, "{} unsent", t.unsent);
        assert_eq!(server.locks.held(), 0);
    }

    // Every gRPC error status is an error, checked or not, and the run still completes.
    #[test]
    fn refused_calls_are_status_errors() {
        let server = Server::start(Duration::ZERO);
        let result = run(
            &server.addr,
            &[
                "--connections",
                "2",
                "--store",
                "nope",
                "--warmup",
                "0s",
                "--duration",
                "200ms",
            ],
        );
        let t = &result.tally;
        assert!(t.requests > 0);
        assert_eq!(t.grants, 0);
        assert_eq!(t.errors(ErrorKind::Status), t.total_errors());
        assert!(t.total_errors() >= t.requests);
    }

    // A server that cannot be reached fails the start; one that goes away mid-run costs
    // io errors, and the run still ends on time.
    #[test]
    fn connection_failures() {
        let mut server = Server::start(Duration::ZERO);
        let addr = server.addr.clone();
        server.stop();
        drop(server);
        match crate::client::run(setup(&addr, &["--connections", "2", "--duration", "1s"])) {
            Err(StartError::Connect(why)) => assert!(why.contains(&addr.to_string()), "{why}"),
            Err(e) => panic!("expected a connect error, got {e}"),
            Ok(_) => panic!("connected to a stopped server"),
        }

        let mut server = Server::start(Duration::ZERO);
        let addr = server.addr.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            server.stop();
        });
        let started = Instant::now();
        let result = run(
            &addr,
            &[
                "--connections",
                "2",
                "--depth",
                "4",
                "--warmup",
                "0s",
                "--duration",
                "1s",
            ],
        );
        stopper.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let t = &result.tally;
        assert!(t.requests > 0);
        assert!(t.errors(ErrorKind::Io) > 0, "{:?}", errors_by_kind(t));
        assert_eq!(t.errors(ErrorKind::Check), 0);
    }
}
