//! The workers' runtime: one pinned thread per shard, each a single-threaded monoio runtime
//! with its own `SO_REUSEPORT` listener, its shard's lease table, and its inbox.
//!
//! [`start`] binds and starts every worker and returns once all of them listen; the
//! returned [`Server`] stops them. Worker 0 binds first (so port 0 picks one port for all)
//! and decides the io driver; the others follow with the same port and driver. The admin
//! listener (`/metrics`, `/debug/*`) is bound before the workers start and served by a thread
//! of its own once they all listen (`admin.rs`).

mod admin;
mod conn;
mod grpc;
mod outbox;
mod pending;
mod reaper;
mod signal;
mod worker;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use std::sync::Mutex;

use crate::api::{Answer, OpKind};
use crate::clock::Clock;
use crate::config::{Config, DriverChoice};
use crate::lease::{Key, StoreId};
use crate::metrics::WorkerMetrics;
use crate::persist::{LastStop, Persist, PersistError, Restored};
use crate::shard::{Inbox, Router};

/// The io driver the workers run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Legacy,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::IoUring => "io_uring",
            Driver::Legacy => "legacy (epoll)",
        })
    }
}

/// A request forwarded to the shard that owns its key.
pub(crate) struct Forward {
    from: usize,
    slot: u32,
    kind: OpKind,
    store: StoreId,
    /// Inside the message when short: a forward allocates nothing for a UUID.
    key: Key,
}

/// What one worker sends another: a request to decide, or an admin question.
pub(crate) enum Mail {
    Lock(Forward),
    /// From the admin thread: who holds a lock in the receiver's shard.
    Holder(HolderQuery),
    /// From the gRPC thread: a lock request to decide, answered on its own channel.
    Remote(RemoteLock),
}

/// A lock request from the gRPC thread, for the shard that owns its key.
pub(crate) struct RemoteLock {
    kind: OpKind,
    store: StoreId,
    key: Key,
    /// The decision, or a remote store's failure.
    answer: tokio::sync::oneshot::Sender<Result<Answer, pending::Failure>>,
}

/// `/debug/lease`: answered by the shard that owns the key, on its own thread.
pub(crate) struct HolderQuery {
    store: StoreId,
    resource: Box<[u8]>,
    /// Capacity 1, one answer: the worker never blocks on it.
    answer: mpsc::SyncSender<Option<Holder>>,
}

/// A live lease's owner and the milliseconds it stays live.
pub(crate) struct Holder {
    owner: Vec<u8>,
    remaining_ms: u64,
    /// Its fencing token, with `--data-dir`.
    fence: Option<u64>,
}

/// The owner's answer to a [`Forward`].
pub(crate) struct Reply {
    slot: u32,
    answer: Answer,
}

/// Requests one worker may have forwarded and not yet seen answered. Bounds the reply queue:
/// every batch of replies holds one at least.
const MAX_IN_FLIGHT_PER_WORKER: usize = 4096;
/// Batches of requests that may wait in one worker's inbox.
const INBOX_REQUESTS: usize = 16384;

/// What all workers share: each other's inboxes, and process-wide counts.
pub(crate) struct Shared {
    config: Config,
    /// Messages travel in batches: see `outbox::Outbox`.
    inboxes: Box<[Inbox<Mail, Reply>]>,
    clock: Clock,
    /// Open client connections, whole process (bounded by `max_connections`).
    connections: AtomicUsize,
    shutting_down: AtomicBool,
    /// Connections each worker accepted: written only on accept.
    accepted: Box<[AtomicU64]>,
    /// Each worker's counters, written only by that worker.
    metrics: Box<[WorkerMetrics]>,
    /// Restart safety, with `--data-dir`.
    persist: Option<Persist>,
    /// The leases of a clean stop to put back, per shard; each worker takes its own at start.
    restore: Mutex<Vec<Vec<(StoreId, Restored)>>>,
    /// Leases saved for a store no longer configured: kept for the next snapshot until they
    /// end, so that the store's return cannot grant them early.
    orphans: Vec<Restored>,
    /// The live leases each worker leaves behind when it stops, for the snapshot.
    left: Mutex<Vec<Restored>>,
}

impl Shared {
    fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    fn begin_shutdown(&self) {
        if !self.shutting_down.swap(true, Ordering::SeqCst) {
            self.kick_all();
        }
    }

    fn kick_all(&self) {
        for inbox in self.inboxes.iter() {
            inbox.kick();
        }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Bind(SocketAddr, std::io::Error),
    Runtime(Driver, std::io::Error),
    UringUnavailable,
    Thread(std::io::Error),
    WorkerDied(usize),
    MetricsBind(SocketAddr, std::io::Error),
    GrpcBind(SocketAddr, std::io::Error),
    Persist(PersistError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Runtime(driver, e) => write!(f, "cannot build the {driver} runtime: {e}"),
            StartError::UringUnavailable => {
                f.write_str("io_uring is not available here (--io-driver uring was asked)")
            }
            StartError::Thread(e) => write!(f, "cannot start a worker thread: {e}"),
            StartError::WorkerDied(i) => write!(f, "worker {i} stopped during start-up"),
            StartError::Persist(e) => e.fmt(f),
            StartError::GrpcBind(addr, e) => write!(
                f,
                "cannot serve gRPC on {addr} (--grpc-listen; `off` disables it): {e}"
            ),
            StartError::MetricsBind(addr, e) => write!(
                f,
                "cannot serve metrics on {addr} (--metrics-listen; `off` disables it): {e}"
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    driver: Driver,
    /// Set when the driver is not the one asked for, with the reason.
    fallback: Option<String>,
    shared: Arc<Shared>,
    exited: mpsc::Receiver<usize>,
    running: usize,
    /// The admin listener's thread, unless `--metrics-listen off`.
    admin: Option<admin::Admin>,
    /// The gRPC listener's thread, unless `--grpc-listen off`.
    grpc: Option<grpc::Grpc>,
}

impl Server {
    /// The address the workers listen on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Why the legacy driver runs when io_uring was preferred.
    pub fn driver_fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Where `/metrics` and `/debug/*` are served (with the real port when 0 was asked), or
    /// `None` with `--metrics-listen off`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// Where the gRPC API is served (with the real port when 0 was asked), or `None` with
    /// `--grpc-listen off`.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|g| g.local_addr())
    }

    pub fn workers(&self) -> usize {
        self.shared.inboxes.len()
    }

    /// Connections each worker has accepted so far.
    pub fn accepted_per_worker(&self) -> Vec<u64> {
        self.shared
            .accepted
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// With `--data-dir`: the data dir and how the last run ended.
    pub fn restart_safety(&self) -> Option<(&std::path::Path, LastStop)> {
        self.shared.persist.as_ref().map(|p| (p.dir(), p.last_stop))
    }

    /// What restart safety found at start that the operator should know.
    pub fn restart_notes(&self) -> &[String] {
        self.shared.persist.as_ref().map_or(&[], |p| &p.notes)
    }

    /// Stops accepting, lets in-flight requests finish and closes idle connections; waits up
    /// to `timeout` for every worker to stop. True if all stopped in time.
    pub fn shutdown(mut self, timeout: Duration) -> bool {
        // gRPC first: its calls in flight are answered by the workers, still running. It gets
        // half of the time; the workers the rest.
        let deadline = Instant::now() + timeout;
        if let Some(grpc) = self.grpc.take() {
            grpc.stop(timeout / 2);
        }
        self.shared.begin_shutdown();
        while self.running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.exited.recv_timeout(left) {
                Ok(_) => self.running -= 1,
                Err(_) => return false,
            }
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        if let Some(persist) = &self.shared.persist {
            let mut leases = std::mem::take(
                &mut *self
                    .shared
                    .left
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            leases.extend(self.shared.orphans.iter().cloned());
            match persist.finish(leases) {
                Ok(saved) => crate::log::write(
                    crate::log::Level::Info,
                    format_args!(
                        "clean stop: {saved} live lease{} saved in {}",
                        if saved == 1 { "" } else { "s" },
                        crate::persist::snapshot::path(persist.dir()).display()
                    ),
                ),
                Err(e) => crate::log::write(
                    crate::log::Level::Error,
                    format_args!(
                        "cannot write the snapshot in {}: {e}; the next start treats this \
                         stop as a crash",
                        persist.dir().display()
                    ),
                ),
            }
        }
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
    }
}

/// Starts every worker and returns once all of them listen.
pub fn start(config: Config) -> Result<Server, StartError> {
    let workers = config.workers;
    // Bound first: a taken admin port fails the start before any worker runs.
    let admin_listener = match config.metrics_listen {
        Some(addr) => {
            Some(std::net::TcpListener::bind(addr).map_err(|e| StartError::MetricsBind(addr, e))?)
        }
        None => None,
    };
    let grpc_listener = match config.grpc_listen {
        Some(addr) => {
            Some(std::net::TcpListener::bind(addr).map_err(|e| StartError::GrpcBind(addr, e))?)
        }
        None => None,
    };
    let counting = admin_listener.is_some();
    let clock = Clock::start();
    let (persist, restored) = match &config.data_dir {
        Some(dir) => {
            let (persist, restored) =
                crate::persist::recover(dir, clock).map_err(StartError::Persist)?;
            (Some(persist), restored)
        }
        None => (None, Vec::new()),
    };
    // Each saved lease goes to the shard that owns it under this run's worker count.
    let router = Router::new(workers);
    let mut restore: Vec<Vec<(StoreId, Restored)>> = (0..workers).map(|_| Vec::new()).collect();
    let mut orphans = Vec::new();
    for lease in restored {
        match config.stores.iter().position(|s| *s == lease.store) {
            // The store count is bounded by MAX_STORES, which fits a u16.
            Some(at) => {
                let store = StoreId(at as u16);
                restore[router.shard_of(store, &lease.resource).0].push((store, lease));
            }
            None => orphans.push(lease),
        }
    }
    let shared = Arc::new(Shared {
        inboxes: (0..workers)
            .map(|_| Inbox::new(INBOX_REQUESTS, MAX_IN_FLIGHT_PER_WORKER))
            .collect(),
        clock,
        connections: AtomicUsize::new(0),
        shutting_down: AtomicBool::new(false),
        accepted: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        metrics: (0..workers).map(|_| WorkerMetrics::new(counting)).collect(),
        persist,
        restore: Mutex::new(restore),
        orphans,
        left: Mutex::new(Vec::new()),
        config,
    });
    let (exit_tx, exited) = mpsc::channel();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let (driver, fallback) = choose_driver(shared.config.driver)?;
    let mut addr = shared.config.listen;
    let mut running = 0;
    for id in 0..workers {
        let (ready_tx, ready_rx) = mpsc::channel();
        let spawn = worker::spawn(worker::Spec {
            id,
            core: id % cores,
            addr,
            driver,
            shared: shared.clone(),
            ready: ready_tx,
            exited: exit_tx.clone(),
        });
        if let Err(e) = spawn {
            shared.begin_shutdown();
            return Err(StartError::Thread(e));
        }
        running += 1;
        match ready_rx.recv() {
            Ok(Ok(bound)) => addr = bound,
            Ok(Err(e)) => {
                shared.begin_shutdown();
                return Err(e);
            }
            Err(_) => {
                shared.begin_shutdown();
                return Err(StartError::WorkerDied(id));
            }
        }
    }
    let admin = match admin_listener {
        Some(listener) => match admin::start(listener, shared.clone()) {
            Ok(admin) => Some(admin),
            Err(e) => {
                shared.begin_shutdown();
                return Err(StartError::Thread(e));
            }
        },
        None => None,
    };
    let grpc = match grpc_listener {
        Some(listener) => match grpc::start(listener, shared.clone()) {
            Ok(grpc) => Some(grpc),
            Err(e) => {
                shared.begin_shutdown();
                return Err(StartError::Thread(e));
            }
        },
        None => None,
    };
    Ok(Server {
        addr,
        driver,
        fallback,
        shared,
        exited,
        running,
        admin,
        grpc,
    })
}

/// Picks the driver: io_uring when asked or when `auto` finds it working, else legacy. The
/// probe builds a real ring, because monoio's fusion driver does not fall back when building
/// the ring fails (seccomp, `io_uring_disabled`, old kernels).
fn choose_driver(choice: DriverChoice) -> Result<(Driver, Option<String>), StartError> {
    let probe = || -> Result<(), String> {
        if std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_some() {
            return Err("MONOIO_FORCE_LEGACY_DRIVER is set".to_string());
        }
        if !monoio::utils::detect_uring() {
            return Err("the kernel refuses io_uring or lacks an operation it needs".to_string());
        }
        // In a thread of its own: a ring's teardown may leave task work that interrupts the
        // syscalls of the thread that built it.
        std::thread::scope(|s| s.spawn(|| uring_runtime().map(drop)).join())
            .map_err(|_| "building a ring panicked".to_string())?
            .map_err(|e| format!("building a ring failed: {e}"))
    };
    match choice {
        DriverChoice::Legacy => Ok((Driver::Legacy, None)),
        DriverChoice::Uring => match probe() {
            Ok(()) => Ok((Driver::IoUring, None)),
            Err(_) => Err(StartError::UringUnavailable),
        },
        DriverChoice::Auto => match probe() {
            Ok(()) => Ok((Driver::IoUring, None)),
            Err(why) => Ok((Driver::Legacy, Some(why))),
        },
    }
}

/// Builds an io_uring runtime with `IORING_SETUP_COOP_TASKRUN` (completions are not signalled
/// by interrupting the thread; measured at 1.55–1.76× the req/s with client and server on
/// separate cores), or without it on kernels older than 5.19 that refuse the flag.
fn uring_runtime(
) -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun();
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .uring_builder(coop)
        .enable_timer()
        .build()
        .or_else(|_| {
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .build()
        })
}

/// What the binaries do once configured: start the workers, print the start-up line (name,
/// version, address, workers, io driver, stores, token), wait for SIGINT or SIGTERM, then
/// drain within `shutdown_timeout` and exit 0.
pub fn run_until_signal(config: Config, name: &str) -> std::process::ExitCode {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use std::io::Write;

    crate::log::set_level(config.log_level);
    for note in &config.component_notes {
        crate::log::write(crate::log::Level::Info, format_args!("{note}"));
    }
    // Registered before the workers start, so a signal during start-up is not lost.
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: cannot handle signals: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let shutdown_timeout = config.shutdown_timeout;
    let stores = config.stores.join(", ");
    let token = if config.api_token.is_some() {
        "required"
    } else {
        "off"
    };
    let server = match start(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let driver = match server.driver_fallback() {
        Some(why) => format!("{} driver (io_uring unavailable: {why})", server.driver()),
        None => format!("{} driver", server.driver()),
    };
    // Both lines in one write, whose failure is ignored: a reader that takes the first line
    // and closes the pipe (as tests do) must not make the second one fail the process.
    let admin = match server.metrics_addr() {
        Some(addr) => format!(
            "{name} metrics on http://{addr}/metrics, lease introspection on \
             http://{addr}/debug/lease and /debug/shards"
        ),
        None => format!("{name} metrics off (--metrics-listen off)"),
    };
    let safety = match server.restart_safety() {
        None => format!(
            "{name} restart safety off: no --data-dir, so leases and fencing tokens do not \
             survive a restart"
        ),
        Some((dir, last)) => {
            let how = match last {
                LastStop::Fresh => "fresh data dir".to_string(),
                LastStop::Clean { leases } => format!(
                    "resumed {leases} lease{} from a clean snapshot",
                    if leases == 1 { "" } else { "s" }
                ),
                LastStop::Unclean { refuse_ms } => {
                    format!("the last run did not stop cleanly; refusing grants for {refuse_ms} ms")
                }
            };
            format!(
                "{name} restart safety on (data dir {}): {how}",
                dir.display()
            )
        }
    };
    for note in server.restart_notes() {
        crate::log::write(crate::log::Level::Error, format_args!("{note}"));
    }
    let grpc = match server.grpc_addr() {
        Some(addr) => format!(
            "{name} gRPC on {addr} ({}: TryLockAlpha1, UnlockAlpha1)",
            grpc::SERVICE
        ),
        None => format!("{name} gRPC off (--grpc-listen off)"),
    };
    let lines = format!(
        "{name} {} listening on http://{} with {} worker{}, {}, stores: {}, api token {}\n{admin}\n{safety}\n{grpc}\n",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        server.workers(),
        if server.workers() == 1 { "" } else { "s" },
        driver,
        stores,
        token,
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(lines.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    if server.metrics_addr().is_some_and(|a| !a.ip().is_loopback()) {
        crate::log::write(
            crate::log::Level::Warn,
            format_args!(
                "the admin listener is not on loopback, and /debug/lease shows lock owners to \
                 anyone who can reach it"
            ),
        );
    }

    for signal in signals.forever() {
        let signal = match signal {
            SIGHUP => {
                // Said rather than silently ignored, and not the default action (exit).
                crate::log::write(
                    crate::log::Level::Info,
                    format_args!(
                        "SIGHUP: nothing is reloadable; every setting is read once at start, \
                         so a change needs a restart"
                    ),
                );
                continue;
            }
            SIGINT => "SIGINT",
            _ => "SIGTERM",
        };
        crate::log::write(
            crate::log::Level::Info,
            format_args!("{signal}: draining (up to {shutdown_timeout:?})"),
        );
        break;
    }
    if !server.shutdown(shutdown_timeout) {
        crate::log::write(
            crate::log::Level::Warn,
            format_args!("shutdown timeout passed with work still in flight; exiting"),
        );
    }
    std::process::ExitCode::SUCCESS
}
