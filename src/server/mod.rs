//! The workers' runtime: one pinned thread per shard, each a single-threaded monoio runtime
//! accepting on the process's HTTP sockets, with its shard's lease table and its inbox; and
//! the admin and gRPC threads beside them.
//!
//! Start-up (`start.rs`) binds every listening socket first (HTTP, gRPC, admin;
//! `listen.rs`), so that an address in use stops the start before anything is served, then
//! starts every worker (`thread.rs`) and returns once all of them accept; the returned
//! [`Server`] stops them. The binaries' signal handling and start-up lines are in `run.rs`.
//!
//! A worker's state is `worker.rs`; its tasks: accepting (`accept.rs`), one per connection
//! (`conn.rs`), its inbox (`inbound.rs`), and housekeeping (`housekeeping.rs`).

mod accept;
mod admin;
mod conn;
mod durable;
mod grpc;
mod housekeeping;
mod inbound;
mod linger;
mod listen;
mod pending;
mod reaper;
mod run;
mod shared;
mod signal;
mod start;
mod thread;
mod worker;

pub use listen::BindError;
pub use run::run_until_signal;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::persist::{LastStop, PersistError};
use shared::Shared;

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

/// How the connections answer what they frame, chosen once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answering {
    /// The Dapr lock API.
    Locks,
    /// Every request `{"success":true}`, without routing, decoding or locking: the runtime and
    /// HTTP layer alone, for the benchmarks' ceiling (`dlockd-ceiling`).
    FixedAnswer,
}

/// Starts every worker, answering the Dapr lock API, and returns once all of them serve.
pub fn start(config: Config) -> Result<Server, StartError> {
    start::start(config, Answering::Locks)
}

/// [`start`], answering as `answering` says.
pub fn start_answering(config: Config, answering: Answering) -> Result<Server, StartError> {
    start::start(config, answering)
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// An address of `--listen`, `--grpc-listen` or `--metrics-listen` could not be bound.
    Bind(listen::BindError),
    /// A worker's runtime refused a listening socket.
    Listener(std::io::Error),
    Runtime(Driver, std::io::Error),
    UringUnavailable,
    Thread(std::io::Error),
    WorkerDied(usize),
    Persist(PersistError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(e) => e.fmt(f),
            StartError::Listener(e) => write!(f, "cannot accept on a listening socket: {e}"),
            StartError::Runtime(driver, e) => write!(f, "cannot build the {driver} runtime: {e}"),
            StartError::UringUnavailable => {
                f.write_str("io_uring is not available here (--io-driver uring was asked)")
            }
            StartError::Thread(e) => write!(f, "cannot start a worker thread: {e}"),
            StartError::WorkerDied(i) => write!(f, "worker {i} stopped during start-up"),
            StartError::Persist(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server.
pub struct Server {
    /// The HTTP addresses, as bound (with the real port when 0 was asked).
    addrs: Vec<SocketAddr>,
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
    /// The (first) address the workers listen on, with the real port when 0 was asked.
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every HTTP address served: more than one when `--listen` named a host with several.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
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
        self.admin.as_ref().map(|a| a.local_addrs()[0])
    }

    /// Where the gRPC API is served (with the real port when 0 was asked), or `None` with
    /// `--grpc-listen off`.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|g| g.local_addrs()[0])
    }

    pub fn workers(&self) -> usize {
        self.shared.inboxes.len()
    }

    /// Connections each worker has taken on so far (accepted, or handed by another worker).
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
        self.shared.save_snapshot();
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
