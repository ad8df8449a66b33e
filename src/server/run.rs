//! What the binaries do once configured: start the workers, print the start-up lines, tell the
//! operator what needs saying, wait for SIGINT or SIGTERM, then drain and exit 0.
//!
//! The four start-up lines on stdout, in this order (tests and tools read them):
//! 1. name, version, every HTTP address, workers, io driver, each store with its type, token;
//! 2. the admin listener, or that it is off;
//! 3. restart safety of the in-memory stores (Redis and etcd stores keep their leases there);
//! 4. the gRPC face, or that it is off.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use super::answering::Answering;
use super::handle::Server;
use super::{grpc, start};
use crate::components::Backend;
use crate::config::Config;
use crate::log::{self, Level};
use crate::persist::LastStop;

/// Starts the server, waits for SIGINT or SIGTERM, then drains within `shutdown_timeout`.
pub fn run_until_signal(config: Config, name: &str, answering: Answering) -> ExitCode {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

    log::set_level(config.log_level);
    for note in &config.component_notes {
        log::write(Level::Info, format_args!("{note}"));
    }
    warn_about(&config);
    // Registered before the workers start, so a signal during start-up is not lost.
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: error: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown_timeout = config.shutdown_timeout;
    let server = match start::start(config, answering) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    say_started(&server, name);
    wait_for_stop(&mut signals, shutdown_timeout);
    let open = server.connections();
    if server.shutdown(shutdown_timeout) {
        log::write(
            Level::Info,
            format_args!(
                "stopped: {open} connection{} drained",
                if open == 1 { "" } else { "s" }
            ),
        );
    } else {
        log::write(
            Level::Warn,
            format_args!("shutdown timeout passed with work still in flight; exiting"),
        );
    }
    ExitCode::SUCCESS
}

/// The start-up lines on stdout, and what the operator must know once the server runs.
fn say_started(server: &Server, name: &str) {
    use std::io::Write;
    // All four lines in one write, whose failure is ignored: a reader that takes the first
    // line and closes the pipe (as tests do) must not make the rest fail the process.
    let lines = startup_lines(server, name);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(lines.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    for note in server.restart_notes() {
        log::write(Level::Error, format_args!("{note}"));
    }
    if server.metrics_addr().is_some_and(|a| !a.ip().is_loopback()) {
        log::write(
            Level::Warn,
            format_args!(
                "the admin listener is not on loopback, and /debug/lease shows lock owners to \
                 anyone who can reach it"
            ),
        );
    }
}

/// Waits for SIGINT or SIGTERM; a SIGHUP on the way is said and changes nothing.
fn wait_for_stop(signals: &mut signal_hook::iterator::Signals, shutdown_timeout: Duration) {
    use signal_hook::consts::{SIGHUP, SIGINT};
    for signal in signals.forever() {
        let signal = match signal {
            SIGHUP => {
                // Said rather than silently ignored, and not the default action (exit).
                log::write(
                    Level::Info,
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
        log::write(
            Level::Info,
            format_args!("{signal}: draining (up to {shutdown_timeout:?})"),
        );
        return;
    }
}

/// What the configuration allows but the operator should know before the first request.
fn warn_about(config: &Config) {
    if config.stores.is_empty() {
        log::write(
            Level::Warn,
            format_args!(
                "no lock store is configured (the component files of --resources-path hold no \
                 lock store): every lock and unlock answers 500 ERR_LOCK_STORE_NOT_CONFIGURED"
            ),
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if config.workers > cpus {
        log::write(
            Level::Warn,
            format_args!(
                "--workers {} is more than the {cpus} CPU{} this process may run on: workers \
                 are pinned, so some share a CPU and wait for each other",
                config.workers,
                if cpus == 1 { "" } else { "s" }
            ),
        );
    }
}

/// The four start-up lines, each ended by a newline.
fn startup_lines(server: &Server, name: &str) -> String {
    let config = &server.shared.config;
    let mut out = String::with_capacity(512);
    let mut addrs: Vec<String> = server
        .local_addrs()
        .iter()
        .map(|a| format!("http://{a}"))
        .collect();
    let unix = config.unix_sockets.as_ref();
    addrs.extend(unix.map(|u| format!("unix:{}", u.http.display())));
    let driver = match server.driver_fallback() {
        Some(why) => format!("{} driver (io_uring unavailable: {why})", server.driver()),
        None => format!("{} driver", server.driver()),
    };
    let _ = writeln!(
        out,
        "{name} {} listening on {} with {} worker{}, {driver}, stores: {}, api token {}",
        env!("CARGO_PKG_VERSION"),
        addrs.join(" and "),
        server.workers(),
        if server.workers() == 1 { "" } else { "s" },
        store_list(config),
        if config.api_token.is_some() {
            "required"
        } else {
            "off"
        },
    );
    let _ = match server.metrics_addr() {
        Some(addr) => writeln!(
            out,
            "{name} metrics on http://{addr}/metrics, lease introspection on \
             http://{addr}/debug/lease and /debug/shards"
        ),
        None => writeln!(out, "{name} metrics off (--metrics-listen off)"),
    };
    let _ = writeln!(out, "{name} {}", safety(server));
    let grpc_at = match (server.grpc_addr(), unix.and_then(|u| u.grpc.as_ref())) {
        (Some(addr), _) => Some(addr.to_string()),
        (None, Some(path)) => Some(format!("unix:{}", path.display())),
        (None, None) => None,
    };
    let _ = match grpc_at {
        Some(addr) => writeln!(
            out,
            "{name} gRPC on {addr} ({}: TryLockAlpha1, UnlockAlpha1, GetMetadata; {}: \
             RenewLock, AcquireLock, GetLockHolder)",
            grpc::SERVICE,
            grpc::EXTENSIONS_SERVICE
        ),
        None => writeln!(out, "{name} gRPC off (--grpc-listen off)"),
    };
    out
}

/// `lockstore (lock.in-memory), orders (lock.redis 10.0.0.5:6379)`, or `none`.
fn store_list(config: &Config) -> String {
    if config.stores.is_empty() {
        return "none".to_string();
    }
    let described: Vec<String> = config
        .stores
        .iter()
        .zip(&config.backends)
        .map(|(name, backend)| format!("{name} ({})", describe(backend)))
        .collect();
    described.join(", ")
}

/// A store's type, and for Redis where it is.
fn describe(backend: &Backend) -> String {
    match backend {
        Backend::InMemory => backend.type_name().to_string(),
        Backend::Redis(redis) => {
            let tls = if redis.tls { " over TLS" } else { "" };
            match &redis.sentinel {
                None => format!("{} {}{tls}", backend.type_name(), redis.host),
                Some(sentinel) => format!(
                    "{} master {:?} of the sentinels {}{tls}",
                    backend.type_name(),
                    sentinel.master,
                    redis.host
                ),
            }
        }
        Backend::Etcd(etcd) => {
            let tls = if etcd.tls.is_some() { " over TLS" } else { "" };
            format!("{} {}{tls}", backend.type_name(), etcd.endpoints.join(","))
        }
    }
}

/// Line 3: what survives a restart. Only the in-memory stores' leases are the server's to
/// keep; a Redis or etcd store's leases live there whatever happens to the server.
fn safety(server: &Server) -> String {
    let config = &server.shared.config;
    let of = |kind: &str| -> Vec<&str> {
        config
            .stores
            .iter()
            .zip(&config.backends)
            .filter(|(_, b)| b.type_name() == kind)
            .map(|(name, _)| name.as_str())
            .collect()
    };
    let memory = of("lock.in-memory");
    let mut elsewhere = String::new();
    for (kind, place) in [("lock.redis", "Redis"), ("lock.etcd", "etcd")] {
        match of(kind)[..] {
            [] => {}
            [one] => elsewhere.push_str(&format!(
                "; the {kind} store {one} keeps its leases in {place}"
            )),
            ref several => elsewhere.push_str(&format!(
                "; the {kind} stores {} keep their leases in {place}",
                several.join(", ")
            )),
        }
    }
    if memory.is_empty() {
        let why = if elsewhere.is_empty() {
            "no lock store is configured"
        } else {
            "no in-memory store"
        };
        return format!("restart safety: nothing to keep ({why}){elsewhere}");
    }
    let stores = if memory.len() == 1 {
        format!("the in-memory store {}", memory[0])
    } else {
        format!("the in-memory stores {}", memory.join(", "))
    };
    match server.restart_safety() {
        None => format!(
            "restart safety off: no --data-dir, so leases and fencing tokens of {stores} do not \
             survive a restart{elsewhere}"
        ),
        Some((dir, last)) => {
            let how = match last {
                LastStop::Fresh => "fresh data dir".to_string(),
                LastStop::Clean { leases } => format!(
                    "resumed {leases} lease{} from a clean snapshot",
                    if leases == 1 { "" } else { "s" }
                ),
                LastStop::Unclean { refuse_ms } => format!(
                    "the last run did not stop cleanly; refusing grants for {refuse_ms} ms \
                     (until its leases have surely ended)"
                ),
            };
            format!(
                "restart safety on (data dir {}) for {stores}: {how}{elsewhere}",
                dir.display()
            )
        }
    }
}
