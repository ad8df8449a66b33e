//! One worker: a pinned thread running a single-threaded monoio runtime. It owns shard `id`
//! (its lease table), accepts on the shared listening sockets, serves its connections, answers requests
//! forwarded by other workers, and reclaims expired leases.
//!
//! Everything here is `!Send` and touched by this thread only: the table and the api state
//! sit in `RefCell`s that are never borrowed across an `.await`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};

use super::outbox::Outbox;
use super::pending::{Failure, Pending};
use super::reaper::Reaper;
use super::signal::Signal;
use super::{Driver, Forward, Holder, HolderQuery, Mail, RemoteLock, Reply, Shared, StartError};
use crate::api::{Answer, Api, ApiConfig, OpKind};
use crate::components::Backend;
use crate::lease::{Key, LeaseTable, StoreId};
use crate::metrics::{Limit, WorkerMetrics};
use crate::persist::{Need, Restored};
use crate::shard::{Router, ShardId};
use crate::store::redis::{Deliver, RedisAnswer, RedisClient, RedisOp};

/// How often, at most, a worker looks for expired leases to reclaim when it found none waiting
/// the time before. Expiry itself is decided by comparing deadlines with the clock, so this
/// only bounds how long dead leases use memory.
const RECLAIM_INTERVAL: Duration = Duration::from_millis(100);
/// Steps of reclamation (a lease reclaimed, or moved down a level of the wheel) at a time. A
/// reclaim of a cold lease costs about 240 ns (perf, during a storm of a million leases
/// expiring at once), so a slice is about 0.1 ms.
const RECLAIM_SLICE: usize = 512;
/// The pause between slices while expired leases remain to be reclaimed: the worker's thread
/// sleeps, so that on a core it shares (with a client, say) the others run between slices.
/// At most about a slice a millisecond: a storm of expiries takes longer to reclaim, at about a
/// tenth of a core, and never takes the worker or its core. Expired leases are already dead to
/// every answer; reclaiming only returns their memory.
const RECLAIM_PAUSE: Duration = Duration::from_millis(1);
/// Forwarded requests answered before the mail task lets connections run.
const MAIL_BATCH: usize = 1024;
/// The answer to a connection over `--max-connections`.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 26\r\nConnection: close\r\n\r\n\
too many open connections\n";

pub(super) struct Spec {
    pub id: usize,
    pub core: usize,
    /// This worker's duplicates of the HTTP listening sockets, shared with every worker.
    pub listeners: Vec<std::net::TcpListener>,
    pub driver: Driver,
    pub shared: Arc<Shared>,
    /// Once the worker serves: whether its first connection to each Redis store (in store
    /// order) was made, or why not.
    pub ready: mpsc::Sender<Result<Vec<Result<(), String>>, StartError>>,
    pub exited: mpsc::Sender<usize>,
}

pub(super) fn spawn(spec: Spec) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("dlockd-worker-{}", spec.id))
        .spawn(move || {
            let id = spec.id;
            let exited = spec.exited.clone();
            run(spec);
            let _ = exited.send(id);
        })
        .map(drop)
}

fn run(spec: Spec) {
    // Pinning is best effort: a cpuset that excludes the core still serves, unpinned.
    let _ = monoio::utils::bind_to_cpu_set([spec.core]);
    match spec.driver {
        Driver::IoUring => match super::uring_runtime() {
            Ok(mut rt) => rt.block_on(main(spec)),
            Err(e) => {
                let _ = spec
                    .ready
                    .send(Err(StartError::Runtime(Driver::IoUring, e)));
            }
        },
        Driver::Legacy => {
            match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
            {
                Ok(mut rt) => rt.block_on(main(spec)),
                Err(e) => {
                    let _ = spec.ready.send(Err(StartError::Runtime(Driver::Legacy, e)));
                }
            }
        }
    }
}

/// The state of one worker, shared by its tasks.
pub(super) struct Worker {
    pub id: ShardId,
    /// Its io driver: the legacy one wants non-blocking sockets.
    pub driver: Driver,
    pub shared: Arc<Shared>,
    pub router: Router,
    pub table: RefCell<LeaseTable>,
    pub api: RefCell<Api>,
    pub pending: Pending,
    pub shutdown: Signal,
    /// The deadlines of this worker's connections.
    pub reaper: Reaper,
    /// Tasks letting the others run; see [`Yields`].
    pub yields: Yields,
    /// Messages for other workers, sent in batches; see [`Outbox`].
    pub outbox: Outbox<Mail, Reply>,
    /// Each store's Redis connection, by `StoreId`; `None` for the stores this table holds.
    pub redis: Vec<Option<Rc<RedisClient>>>,
    /// Whether any store is on Redis: spares the in-memory path the lookup.
    pub has_redis: bool,
    /// With `--data-dir`: grants carry fencing tokens, and try-locks are refused before this
    /// tick (after an unclean stop, until the last run's leases have surely ended).
    pub refuse_until_ms: Option<u64>,
}

impl Worker {
    /// Decides one lock operation on this worker's own shard at `now_ms`, a clock reading
    /// taken after the request was sent: a lease then never ends before its TTL has passed
    /// since the client sent it.
    pub fn execute(
        &self,
        now_ms: u64,
        kind: OpKind,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
    ) -> Answer {
        let mut table = self.table.borrow_mut();
        let answer = match kind {
            OpKind::TryLock { expiry_s } => {
                let ttl_ms = u64::from(expiry_s) * 1000;
                match self.refuse_until_ms {
                    None => Answer::TryLock(table.try_lock(store, resource, owner, ttl_ms, now_ms)),
                    Some(until_ms) if now_ms < until_ms => Answer::TryLock(Ok(false)),
                    Some(_) => {
                        match table.try_lock_fenced(store, resource, owner, ttl_ms, now_ms) {
                            Ok(Some(token)) => Answer::Granted {
                                token,
                                last_live_ms: now_ms.saturating_add(ttl_ms),
                            },
                            Ok(None) => Answer::TryLock(Ok(false)),
                            Err(e) => Answer::TryLock(Err(e)),
                        }
                    }
                }
            }
            OpKind::Unlock => Answer::Unlock(table.unlock(store, resource, owner, now_ms)),
        };
        self.metrics().set_leases(table.len());
        answer
    }

    /// This worker's counters: only this thread writes them.
    #[inline]
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics[self.id.0]
    }

    /// Sends a request to the shard that owns it (with the next batch for it) and returns
    /// its slot. Waits while this worker has its maximum of requests in flight.
    pub async fn forward(&self, to: ShardId, kind: OpKind, store: StoreId, key: Key) -> u32 {
        let slot = self.pending.reserve().await;
        self.outbox.request(
            to.0,
            Mail::Lock(Forward {
                from: self.id.0,
                slot,
                kind,
                store,
                key,
            }),
        );
        slot
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_fired()
    }
}

/// A Redis store's answers reach the connections through the worker's pending slots.
impl Deliver for Worker {
    fn deliver(&self, slot: u32, op: RedisOp, answer: RedisAnswer) {
        match answer {
            RedisAnswer::Locked(granted) => {
                self.pending.complete(slot, Answer::TryLock(Ok(granted)))
            }
            RedisAnswer::Unlocked(status) => self.pending.complete(slot, Answer::Unlock(status)),
            RedisAnswer::Failed(cause) => self.pending.fail(
                slot,
                Failure {
                    try_lock: matches!(op, RedisOp::TryLock { .. }),
                    cause,
                },
            ),
        }
    }
}

async fn main(spec: Spec) {
    let Spec {
        id,
        listeners,
        driver,
        shared,
        ready,
        ..
    } = spec;
    // Each socket twice: the runtime's handle says when a connection waits, and the plain
    // one accepts it (see `accept_loop`).
    let listeners = match listeners
        .into_iter()
        .map(|l| Ok((TcpListener::from_std(l.try_clone()?)?, l)))
        .collect::<std::io::Result<Vec<_>>>()
    {
        Ok(listeners) => listeners,
        Err(e) => {
            let _ = ready.send(Err(StartError::Listener(e)));
            return;
        }
    };
    let config = &shared.config;
    let mut table = LeaseTable::new(config.max_leases_per_shard());
    if let Some(persist) = &shared.persist {
        table.enable_fencing(persist.first_token);
        let mine = std::mem::take(
            &mut shared
                .restore
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())[id],
        );
        let now_ms = shared.clock.now_ms();
        for (store, lease) in mine {
            // Only a smaller --max-leases than the last run's can refuse one.
            if let Err(e) = table.restore(
                store,
                &lease.resource,
                &lease.owner,
                lease.last_live_ms,
                lease.token,
                now_ms,
            ) {
                crate::log::write(
                    crate::log::Level::Error,
                    format_args!("a saved lease could not be put back on worker {id}: {e}"),
                );
            }
        }
    }
    let redis: Vec<Option<Rc<RedisClient>>> = config
        .backends
        .iter()
        .zip(&config.stores)
        .map(|(backend, name)| match backend {
            Backend::Redis(settings) => Some(RedisClient::new(
                settings.clone(),
                settings.key_prefix.key_head(&config.app_id, name),
            )),
            Backend::InMemory => None,
        })
        .collect();
    let worker = Rc::new(Worker {
        id: ShardId(id),
        driver,
        has_redis: redis.iter().any(Option::is_some),
        redis,
        router: Router::new(config.workers),
        refuse_until_ms: shared.persist.as_ref().map(|p| p.refuse_until_ms),
        table: RefCell::new(table),
        api: RefCell::new(Api::new(ApiConfig {
            stores: config.stores.clone(),
            app_id: config.app_id.clone(),
            api_token: config.api_token.clone(),
            max_id_bytes: config.max_id_bytes,
            max_expiry_s: config.max_expiry_s,
            store_types: config.backends.iter().map(|b| b.type_name()).collect(),
        })),
        pending: Pending::new(super::MAX_IN_FLIGHT_PER_WORKER),
        shutdown: Signal::default(),
        reaper: Reaper::default(),
        yields: Yields::default(),
        outbox: Outbox::new(config.workers),
        shared: shared.clone(),
    });
    // Each Redis store is tried once before this worker serves, so that its first requests
    // find it connected (or the operator is told it is not).
    let mut first = Vec::new();
    let mut reached = Vec::new();
    for client in worker.redis.iter().flatten() {
        let attempt = client.first_connection().await;
        reached.push(attempt.as_ref().map(drop).map_err(Clone::clone));
        first.push(attempt.ok());
    }
    if ready.send(Ok(reached)).is_err() {
        return;
    }
    drop(ready);

    let yielder = worker.clone();
    monoio::spawn(async move { yielder.yields.run().await });
    let sender = worker.clone();
    monoio::spawn(async move {
        let w = &*sender;
        w.outbox.run(&w.shared.inboxes, &w.yields).await
    });
    for (client, first) in worker.redis.iter().flatten().zip(first) {
        let deliver: Rc<dyn Deliver> = worker.clone();
        monoio::spawn(client.clone().run(deliver, first));
    }
    for (ready, listener) in listeners {
        monoio::spawn(accept_loop(worker.clone(), ready, listener));
    }
    monoio::spawn(housekeeping(worker.clone()));
    mail_loop(worker.clone()).await;
    leave_leases(&worker);
}

/// At a clean stop, once nothing more is granted here: hands this shard's live leases over
/// for the snapshot.
fn leave_leases(worker: &Worker) {
    let shared = &worker.shared;
    if shared.persist.is_none() {
        return;
    }
    let now_ms = shared.clock.now_ms();
    let table = worker.table.borrow();
    let mut left = shared
        .left
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    left.extend(table.live(now_ms).map(|lease| Restored {
        store: shared.config.stores[usize::from(lease.store.0)].clone(),
        resource: lease.resource.to_vec(),
        owner: lease.owner.to_vec(),
        last_live_ms: lease.last_live_ms,
        token: lease.token,
    }));
}

/// Answers requests forwarded by other workers and delivers replies to this worker's
/// connections. Runs until the whole process has no connection left after shutdown began,
/// because until then another worker may still forward a request here.
async fn mail_loop(worker: Rc<Worker>) {
    let inbox = &worker.shared.inboxes[worker.id.0];
    loop {
        inbox.wait().await;
        let mut served = 0;
        while let Some(mut batch) = inbox.try_recv_requests() {
            // Read after the batch was taken, so after each of its requests was sent.
            let now_ms = worker.shared.clock.now_ms();
            served += batch.len();
            for mail in batch.drain(..) {
                let req = match mail {
                    Mail::Lock(req) => req,
                    Mail::Holder(query) => {
                        answer_holder(&worker, query);
                        continue;
                    }
                    Mail::Remote(req) => {
                        serve_remote(&worker, req);
                        continue;
                    }
                    Mail::Conn(stream) => {
                        take_on(&worker, stream, ConnGuard::new(worker.clone()));
                        continue;
                    }
                };
                let (resource, owner) = req.key.split();
                let answer = worker.execute(now_ms, req.kind, req.store, resource, owner);
                worker.outbox.reply(
                    req.from,
                    Reply {
                        slot: req.slot,
                        answer,
                    },
                );
            }
            worker.outbox.spare_requests(batch);
            if served >= MAIL_BATCH {
                served = 0;
                worker.yields.now().await;
            }
        }
        while let Some(mut batch) = inbox.try_recv_replies() {
            for reply in batch.drain(..) {
                worker.pending.complete(reply.slot, reply.answer);
            }
            worker.outbox.spare_replies(batch);
        }
        if worker.shared.shutting_down.load(Ordering::SeqCst) {
            worker.shutdown.fire();
            if worker.shared.connections.load(Ordering::SeqCst) == 0 {
                return;
            }
        }
    }
}

/// Decides a request from the gRPC thread and answers it on its channel: at once from this
/// shard's table (once the data dir covers a grant), or when its Redis store replies.
fn serve_remote(worker: &Rc<Worker>, req: RemoteLock) {
    let RemoteLock {
        kind,
        store,
        key,
        answer,
    } = req;
    if let Some(Some(client)) = worker.redis.get(usize::from(store.0)) {
        let worker = worker.clone();
        let client = client.clone();
        monoio::spawn(async move {
            let slot = worker.pending.reserve().await;
            let (resource, owner) = key.split();
            let op = match kind {
                OpKind::TryLock { expiry_s } => RedisOp::TryLock { expiry_s },
                OpKind::Unlock => RedisOp::Unlock,
            };
            client.submit(&*worker, slot, op, resource, owner);
            let outcome = worker.pending.reply(slot).await;
            match &outcome {
                Ok(decided) => worker.metrics().answer(*decided),
                Err(failure) => worker.metrics().request(failure.outcome()),
            }
            // The caller may have gone (a cancelled call): nobody to tell.
            let _ = answer.send(outcome);
        });
        return;
    }
    let (resource, owner) = key.split();
    let now_ms = worker.shared.clock.now_ms();
    let decided = worker.execute(now_ms, kind, store, resource, owner);
    worker.metrics().answer(decided);
    if let (
        Answer::Granted {
            token,
            last_live_ms,
        },
        Some(persist),
    ) = (decided, &worker.shared.persist)
    {
        let mut need = Need::default();
        need.add(last_live_ms, token);
        let durable = persist.durable().clone();
        if !durable.covers(need) {
            // Acknowledged only once the data dir covers it, as over HTTP; a disk that stays
            // failed closes the call unanswered.
            monoio::spawn(async move {
                if super::conn::await_durable(&durable, need).await {
                    let _ = answer.send(Ok(decided));
                }
            });
            return;
        }
    }
    let _ = answer.send(Ok(decided));
}

/// Tells the admin thread who holds a lock of this shard. Off the hot path: it allocates the
/// owner's copy.
fn answer_holder(worker: &Worker, query: HolderQuery) {
    let now_ms = worker.shared.clock.now_ms();
    let table = worker.table.borrow();
    let holder = table
        .holder(query.store, &query.resource, now_ms)
        .map(|(owner, remaining_ms)| Holder {
            owner: owner.to_vec(),
            remaining_ms,
            fence: table.fence(query.store, &query.resource, now_ms),
        });
    drop(table);
    // The admin thread may have given up waiting; then nobody wants the answer.
    let _ = query.answer.try_send(holder);
}

/// Accepted connections beyond the fewest any worker serves that a worker keeps; past that, it
/// hands the next one to the worker with the fewest.
const SPREAD_SLACK: usize = 1;
/// Connections accepted in a row before the accept task lets the others run.
const ACCEPT_BATCH: usize = 64;

/// Accepts connections on one listening socket that every worker shares, and spreads them.
///
/// The kernel wakes whichever workers wait on the socket, and one that is awake may take a
/// whole burst of connections (a client opening 64 at once) before another wakes: measured on
/// 2 workers, bursts of 64 split as unevenly as 13 to 51. So a worker keeps a connection only
/// while it serves at most [`SPREAD_SLACK`] more than the worker with the fewest, and
/// otherwise hands it to that worker through its inbox (the way forwarded requests travel):
/// the split is even within one or two, and a connection is handed at most once, when it
/// opens. The socket is accepted on with a plain non-blocking `accept` once the runtime says a
/// connection waits, so that a connection to hand on is a plain `std` stream.
async fn accept_loop(worker: Rc<Worker>, ready: TcpListener, listener: std::net::TcpListener) {
    let max = worker.shared.config.max_connections;
    loop {
        let mut accepted = 0;
        loop {
            match listener.accept() {
                Ok((stream, _peer)) => {
                    let open = worker.shared.connections.fetch_add(1, Ordering::SeqCst);
                    place(&worker, stream, open >= max);
                    accepted += 1;
                    if accepted == ACCEPT_BATCH {
                        accepted = 0;
                        worker.yields.now().await;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // Interrupted, or a connection reset before it was accepted: the next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of file descriptors: back off a little instead of spinning, and keep
                    // serving.
                    // Rate-limited: with descriptors exhausted this repeats every 10 ms per
                    // worker.
                    static ACCEPT_ERRORS: crate::log::RateLimit = crate::log::RateLimit::new();
                    ACCEPT_ERRORS.error(
                        worker.shared.clock.now_ms(),
                        format_args!("accept failed on worker {}: {e}", worker.id.0),
                    );
                    monoio::time::sleep(Duration::from_millis(10)).await;
                    break;
                }
            }
        }
        let waiting = monoio::select! {
            r = ready.readable(false) => Some(r),
            _ = worker.shutdown.wait() => None,
        };
        match waiting {
            None => break,
            Some(Ok(())) => {}
            Some(Err(e)) => {
                static POLL_ERRORS: crate::log::RateLimit = crate::log::RateLimit::new();
                POLL_ERRORS.error(
                    worker.shared.clock.now_ms(),
                    format_args!(
                        "waiting for connections failed on worker {}: {e}",
                        worker.id.0
                    ),
                );
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // The socket closes once every worker has dropped its handles: from then on new
    // connections are refused.
}

/// Serves a connection just accepted here, refuses it (`over_limit`), or hands it to the
/// worker that serves the fewest. It is already counted in the process-wide connections.
fn place(worker: &Rc<Worker>, stream: std::net::TcpStream, over_limit: bool) {
    let shared = &worker.shared;
    let me = worker.id.0;
    let guard = |at: usize| {
        shared.open[at].fetch_add(1, Ordering::Relaxed);
    };
    if over_limit {
        guard(me);
        let guard = ConnGuard::new(worker.clone());
        worker.metrics().limit(Limit::Connections, 1);
        shared.accepted[me].fetch_add(1, Ordering::Relaxed);
        if let Some(stream) = adopt(worker, stream) {
            monoio::spawn(refuse(stream, guard));
        }
        return;
    }
    let to = least_busy(&shared.open, me);
    // Once shutdown began, the worker handed to may already have stopped: a connection that
    // arrives now is served here (and closed as idle by the drain).
    if to != me && !shared.shutting_down.load(Ordering::SeqCst) {
        guard(to);
        worker.outbox.request(to, Mail::Conn(stream));
        return;
    }
    guard(me);
    take_on(worker, stream, ConnGuard::new(worker.clone()));
}

/// The worker a new connection should go to: `me` unless `me` serves more than
/// [`SPREAD_SLACK`] connections above the worker that serves the fewest.
fn least_busy(open: &[std::sync::atomic::AtomicUsize], me: usize) -> usize {
    if open.len() == 1 {
        return me;
    }
    let mine = open[me].load(Ordering::Relaxed);
    let (fewest, least) = open
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .enumerate()
        .min_by_key(|&(_, n)| n)
        .unwrap_or((me, mine));
    if mine > least + SPREAD_SLACK {
        fewest
    } else {
        me
    }
}

/// Starts serving a connection on this worker; `guard` counts it until it closes.
fn take_on(worker: &Rc<Worker>, stream: std::net::TcpStream, guard: ConnGuard) {
    worker.shared.accepted[worker.id.0].fetch_add(1, Ordering::Relaxed);
    // The guard uncounts a connection the runtime could not take.
    if let Some(stream) = adopt(worker, stream) {
        let _ = stream.set_nodelay(true);
        monoio::spawn(super::conn::serve(guard, stream));
    }
}

/// An accepted connection as this worker's runtime takes it: blocking for io_uring (which
/// polls for it), non-blocking for epoll, as the runtime's own accept leaves them. `None` (the
/// connection closed) if the runtime refuses the descriptor.
fn adopt(worker: &Worker, stream: std::net::TcpStream) -> Option<TcpStream> {
    if worker.driver == Driver::Legacy {
        stream.set_nonblocking(true).ok()?;
    }
    TcpStream::from_std(stream).ok()
}

async fn refuse(mut stream: TcpStream, _guard: ConnGuard) {
    let write = stream.write_all(TOO_MANY_CONNECTIONS);
    let _ = monoio::time::timeout(Duration::from_secs(1), write).await;
}

/// Reclaims expired leases and closes connections past their deadlines, every tick; at
/// shutdown, closes the idle connections at once.
async fn housekeeping(worker: Rc<Worker>) {
    let config = &worker.shared.config;
    let shortest = config
        .idle_timeout
        .min(config.header_timeout)
        .min(config.body_timeout);
    // A connection is closed at most a quarter of its timeout late.
    let tick = (shortest / 4).clamp(Duration::from_millis(5), RECLAIM_INTERVAL);
    let mut next_sweep_ms = 0;
    let mut backlog = false;
    loop {
        let pause = if backlog { RECLAIM_PAUSE } else { tick };
        let closing = monoio::select! {
            _ = monoio::time::sleep(pause) => false,
            _ = worker.shutdown.wait() => true,
        };
        let now_ms = worker.shared.clock.now_ms();
        if closing || now_ms >= next_sweep_ms {
            let swept = worker.reaper.sweep(now_ms, closing);
            count_timeouts(&worker, &swept);
            next_sweep_ms = now_ms.saturating_add(tick.as_millis() as u64);
        }
        if closing {
            break;
        }
        worker.shared.say_when_grace_ends(now_ms);
        // One slice a wake-up: a million leases that expire together would otherwise stall
        // this worker, or hold its core for milliseconds at a time.
        let step = worker
            .table
            .borrow_mut()
            .advance_at_most(now_ms, RECLAIM_SLICE);
        backlog = !step.finished;
        if step.reclaimed > 0 {
            worker.metrics().expired(step.reclaimed);
            worker.metrics().set_leases(worker.table.borrow().len());
        }
    }
    // Draining: keep enforcing deadlines on the connections still finishing their work.
    loop {
        monoio::time::sleep(tick).await;
        let swept = worker.reaper.sweep(worker.shared.clock.now_ms(), true);
        count_timeouts(&worker, &swept);
    }
}

fn count_timeouts(worker: &Worker, swept: &super::reaper::Swept) {
    let m = worker.metrics();
    m.limit(Limit::IdleTimeout, swept.idle_timeouts);
    m.limit(Limit::ReadTimeout, swept.read_timeouts);
    m.limit(Limit::WriteTimeout, swept.write_timeouts);
}

/// Counts a connection for its whole life against the process-wide `--max-connections`
/// bound. The last connection to close during shutdown lets every worker stop.
pub(super) struct ConnGuard {
    pub worker: Rc<Worker>,
}

impl ConnGuard {
    fn new(worker: Rc<Worker>) -> Self {
        ConnGuard { worker }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let w = &self.worker;
        w.shared.open[w.id.0].fetch_sub(1, Ordering::Relaxed);
        let before = w.shared.connections.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && w.shared.shutting_down.load(Ordering::SeqCst) {
            w.shared.kick_all();
        }
    }
}

/// Lets the other tasks of a worker run before the caller goes on.
///
/// Waking oneself and returning `Pending` is no yield on monoio: a task woken while it runs is
/// put back at the *front* of the run queue and runs again at once, ahead of every other task
/// (its scheduler's `yield_now` is a `push_front`). So a yielding task parks its waker here and
/// wakes the yielder task instead, which a wake puts at the back of the queue; when its turn
/// comes it wakes the parked tasks, which go to the back in turn, behind everything that
/// became runnable meanwhile (the io driver is polled between rounds).
#[derive(Default)]
pub(super) struct Yields {
    /// Wakers of the tasks that yielded since the yielder last ran.
    parked: RefCell<Vec<Waker>>,
    /// The yielder's waker while it waits for a task to yield.
    yielder: RefCell<Option<Waker>>,
}

impl Yields {
    /// Resolves once every task runnable now has had its turn.
    pub fn now(&self) -> YieldNow<'_> {
        YieldNow {
            yields: self,
            parked: false,
        }
    }

    /// The yielder task: wakes the parked tasks each time it runs. Never returns; one per
    /// worker, spawned before anything can yield. Reuses its buffers: no allocation once warm.
    pub async fn run(&self) {
        let mut batch: Vec<Waker> = Vec::new();
        std::future::poll_fn(|cx| {
            std::mem::swap(&mut *self.parked.borrow_mut(), &mut batch);
            for waker in batch.drain(..) {
                waker.wake();
            }
            *self.yielder.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        })
        .await
    }
}

pub(super) struct YieldNow<'y> {
    yields: &'y Yields,
    parked: bool,
}

impl Future for YieldNow<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.parked {
            return Poll::Ready(());
        }
        self.parked = true;
        self.yields.parked.borrow_mut().push(cx.waker().clone());
        // Taken out before waking: waking never runs a task, but keep no borrow across it.
        let yielder = self.yields.yielder.borrow_mut().take();
        if let Some(waker) = yielder {
            waker.wake();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A task that yields lets the tasks queued before it run first. (monoio runs a task that
    // woke itself again at once, so the plain wake-and-pend yield never let them run: a
    // connection whose socket never blocked held its worker, tests/hostile.rs
    // client_that_never_reads_is_bounded on the legacy driver.) Two tasks that keep yielding
    // take turns.
    #[test]
    fn yielding_lets_queued_tasks_run_first() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("legacy runtime");
        rt.block_on(async {
            let yields = Rc::new(Yields::default());
            let yielder = yields.clone();
            monoio::spawn(async move { yielder.run().await });

            let order = Rc::new(RefCell::new(Vec::new()));
            let o = order.clone();
            let other = monoio::spawn(async move { o.borrow_mut().push("other") });
            order.borrow_mut().push("yielding");
            yields.now().await;
            order.borrow_mut().push("resumed");
            other.await;
            assert_eq!(*order.borrow(), ["yielding", "other", "resumed"]);

            // Two tasks that keep yielding take turns.
            order.borrow_mut().clear();
            let o = order.clone();
            let y = yields.clone();
            let b = monoio::spawn(async move {
                for _ in 0..3 {
                    o.borrow_mut().push("b");
                    y.now().await;
                }
            });
            for _ in 0..3 {
                order.borrow_mut().push("a");
                yields.now().await;
            }
            b.await;
            assert_eq!(*order.borrow(), ["a", "b", "a", "b", "a", "b"]);
        });
    }
}
