//! Start-up: bind every address, recover the data dir, start the workers, then the admin and
//! gRPC threads; and the choice of the io driver.
//!
//! Every address is bound first (`listen.rs`), so that one in use stops the start before a
//! data dir is read or a connection accepted. The workers start one after the other, each
//! reporting when it serves (and whether it reached its remote stores); the admin listener and
//! the gRPC face start once all of them run.

use std::net::{SocketAddr, TcpListener};
use std::sync::{mpsc, Arc};

use super::answering::Answering;
use super::driver::{uring_runtime, Driver};
use super::error::StartError;
use super::handle::Server;
use super::shared::Shared;
use super::socket::Listener;
use super::thread::{self, Reached, Spec};
use super::unix_listen::{bind_unix, SocketFile};
use super::{admin, grpc, listen};
use crate::clock::Clock;
use crate::components::Backend;
use crate::config::{Config, DriverChoice};
use crate::lease::StoreId;
use crate::persist::Restored;
use crate::shard::ShardMap;

/// The listening sockets of every face.
struct Listeners {
    http: Vec<Listener>,
    grpc: Option<Vec<Listener>>,
    admin: Option<Vec<TcpListener>>,
    /// The Unix sockets' files, removed when the server stops.
    files: Vec<SocketFile>,
}

/// Starts every worker and returns once all of them serve.
pub(super) fn start(config: Config, answering: Answering) -> Result<Server, StartError> {
    for (name, backend) in config.stores.iter().zip(&config.backends) {
        crate::store::check(backend).map_err(|why| StartError::Store(name.clone(), why))?;
    }
    let mut listeners = bind(&config)?;
    let addrs = listeners
        .http
        .iter()
        .filter_map(|l| l.tcp_addr().transpose())
        .collect::<std::io::Result<Vec<SocketAddr>>>()
        .map_err(StartError::Listener)?;
    let files = std::mem::take(&mut listeners.files);
    let clock = Clock::start();
    let (persist, restored) = match &config.data_dir {
        Some(dir) => {
            let (persist, restored) =
                crate::persist::recover(dir, clock).map_err(StartError::Persist)?;
            (Some(persist), restored)
        }
        None => (None, Vec::new()),
    };
    let (restore, orphans) = place_restored(&config, restored);
    let counting = listeners.admin.is_some();
    let shared = Arc::new(Shared::new(
        config, clock, counting, persist, restore, orphans,
    ));
    let (driver, fallback) = choose_driver(shared.config.driver)?;
    let (exited, reached) = spawn_workers(&shared, &listeners.http, driver, answering)
        .inspect_err(|_| shared.begin_shutdown())?;
    // The workers hold their own duplicates: the socket closes when the last of them stops.
    drop(listeners.http);
    say_remote_reached(&shared.config, &reached);
    let running = reached.len();
    let mut server = Server {
        addrs,
        driver,
        fallback,
        shared: shared.clone(),
        exited,
        running,
        admin: None,
        grpc: None,
        files,
    };
    if let Some(admin) = listeners.admin {
        server.admin = Some(admin::start(admin, shared.clone()).map_err(StartError::Thread)?);
    }
    if let Some(grpc) = listeners.grpc {
        server.grpc = Some(grpc::start(grpc, shared).map_err(StartError::Thread)?);
    }
    Ok(server)
}

/// Binds every address of every face: with `--unix-domain-socket`, its sockets for the HTTP
/// and gRPC APIs instead of their TCP addresses.
fn bind(config: &Config) -> Result<Listeners, StartError> {
    let tcp = |flag, addrs: &[SocketAddr]| {
        listen::bind_all(flag, addrs)
            .map(|bound| bound.into_iter().map(Listener::Tcp).collect::<Vec<_>>())
            .map_err(StartError::Bind)
    };
    let mut files = Vec::new();
    let (http, grpc) = match &config.unix_sockets {
        None => (
            tcp("--listen", &config.listen)?,
            config
                .grpc_listen
                .as_deref()
                .map(|addrs| tcp("--grpc-listen", addrs))
                .transpose()?,
        ),
        Some(unix) => {
            let mut socket = |path| {
                let (listener, file) =
                    bind_unix("--unix-domain-socket", path, unix.mode).map_err(StartError::Bind)?;
                files.push(file);
                Ok::<_, StartError>(vec![Listener::Unix(listener)])
            };
            let http = socket(&unix.http)?;
            (http, unix.grpc.as_deref().map(socket).transpose()?)
        }
    };
    let admin = config
        .metrics_listen
        .as_deref()
        .map(|addrs| listen::bind_all("--metrics-listen", addrs))
        .transpose()
        .map_err(StartError::Bind)?;
    Ok(Listeners {
        http,
        grpc,
        admin,
        files,
    })
}

/// Each saved lease goes to the shard that owns it under this run's worker count; a lease of a
/// store no longer configured is an orphan.
fn place_restored(
    config: &Config,
    restored: Vec<Restored>,
) -> (Vec<Vec<(StoreId, Restored)>>, Vec<Restored>) {
    let map = ShardMap::new(config.workers);
    let mut restore: Vec<Vec<(StoreId, Restored)>> =
        (0..config.workers).map(|_| Vec::new()).collect();
    let mut orphans = Vec::new();
    for lease in restored {
        match config.stores.iter().position(|s| *s == lease.store) {
            // The store count is bounded by MAX_STORES, which fits a u16.
            Some(at) => {
                let store = StoreId(at as u16);
                restore[map.shard_of(store, &lease.resource).0].push((store, lease));
            }
            None => orphans.push(lease),
        }
    }
    (restore, orphans)
}

/// What the running workers report: their exits, and each one's first connection to each
/// remote store.
type Started = (mpsc::Receiver<usize>, Vec<Vec<Reached>>);

/// Starts the workers one after the other, each once the one before serves.
fn spawn_workers(
    shared: &Arc<Shared>,
    http: &[Listener],
    driver: Driver,
    answering: Answering,
) -> Result<Started, StartError> {
    let (exit_tx, exited) = mpsc::channel();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut reached = Vec::with_capacity(shared.config.workers);
    for id in 0..shared.config.workers {
        let (ready_tx, ready_rx) = mpsc::channel();
        let listeners = http
            .iter()
            .map(Listener::try_clone)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(StartError::Listener)?;
        thread::spawn(Spec {
            id,
            core: id % cores,
            listeners,
            driver,
            answering,
            shared: shared.clone(),
            ready: ready_tx,
            exited: exit_tx.clone(),
        })
        .map_err(StartError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(first)) => reached.push(first),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StartError::WorkerDied(id)),
        }
    }
    Ok((exited, reached))
}

/// Says, once per remote store, whether every worker's first connection to it was made
/// (`reached[worker][i]` for the store's place `i` among the remote stores), with what the
/// store noted.
fn say_remote_reached(config: &Config, reached: &[Vec<Reached>]) {
    let remote = config
        .stores
        .iter()
        .zip(&config.backends)
        .filter(|(_, backend)| !matches!(backend, Backend::InMemory));
    let workers = reached.len();
    for (i, (name, backend)) in remote.enumerate() {
        let outcomes = reached.iter().filter_map(|w| w.get(i));
        let failures: Vec<&String> = outcomes.clone().filter_map(|r| r.as_ref().err()).collect();
        let note = outcomes
            .filter_map(|r| r.as_ref().ok().and_then(Option::as_deref))
            .next()
            .map_or(String::new(), |note| format!("; {note}"));
        let each = if workers == 1 {
            "its worker".to_string()
        } else {
            format!("each of its {workers} workers")
        };
        let (what, at, reached_it) = match backend {
            Backend::Redis(settings) => (
                "Redis",
                format!("redis at {}", settings.host),
                format!("({each} has a connection)"),
            ),
            Backend::Etcd(settings) => (
                "etcd",
                format!("etcd at {}", settings.endpoints.join(",")),
                "(one client for the process, on a thread of its own)".to_string(),
            ),
            Backend::InMemory => continue,
        };
        match failures.first() {
            None => crate::log::write(
                crate::log::Level::Info,
                format_args!("lock store {name}: connected to {at} {reached_it}{note}"),
            ),
            Some(why) => crate::log::write(
                crate::log::Level::Warn,
                format_args!(
                    "lock store {name}: {at}: {why}; {} of {workers} worker{} could \
                     not connect, and the store's lock requests on them fail until {what} can \
                     be reached (they keep trying)",
                    failures.len(),
                    if workers == 1 { "" } else { "s" },
                ),
            ),
        }
    }
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
