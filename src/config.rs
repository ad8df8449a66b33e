//! Every knob of the server: its default, its flag, its environment variable, validated once
//! at start. A flag wins over its environment variable; the environment wins over the default.
//!
//! Nothing here reads the process environment or arguments directly: [`Config::parse`] takes
//! them as arguments, so tests drive it with plain lists.

mod values;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use values::{parse_addrs, parse_count, parse_duration, parse_size};

/// Which io driver the workers run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring when the kernel offers it, else the legacy (epoll) driver, said at start.
    Auto,
    /// io_uring or fail.
    Uring,
    /// The legacy (epoll) driver.
    Legacy,
}

/// The validated configuration of one server.
#[derive(Clone, Debug)]
pub struct Config {
    /// The HTTP addresses: one, or every address a host name resolves to. Never empty.
    pub listen: Vec<SocketAddr>,
    pub stores: Vec<String>,
    /// Where each store's leases live, `backends[i]` for `stores[i]`.
    pub backends: Vec<crate::components::Backend>,
    /// What reading `--resources-path` passed over, for the start-up log.
    pub component_notes: Vec<String>,
    pub workers: usize,
    pub app_id: String,
    /// `DAPR_API_TOKEN`; never printed.
    pub api_token: Option<Vec<u8>>,
    pub insecure_bind: bool,
    pub driver: DriverChoice,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub max_id_bytes: usize,
    pub max_connections: usize,
    /// Bound on stored leases for the whole process, split evenly over the shards.
    pub max_leases: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Where the admin listener serves `/metrics` and `/debug/*`; `None` is `off`: no
    /// listener, and the workers count nothing.
    pub metrics_listen: Option<Vec<SocketAddr>>,
    /// Where the gRPC API is served; `None` is `off`.
    pub grpc_listen: Option<Vec<SocketAddr>>,
    /// The most verbose operator log level written on stderr; `None` writes none.
    pub log_level: Option<crate::log::Level>,
    /// Where leases and fencing tokens survive restarts and crashes; `None`: restart safety
    /// off.
    pub data_dir: Option<std::path::PathBuf>,
    /// The longest `expiryInSeconds` a try-lock may ask for; `None`: any positive int32.
    pub max_expiry_s: Option<u32>,
    /// Benchmarking only, set by the `dlockd-ceiling` binary and by no flag: answer every
    /// framed request `{"success":true}` without routing, decoding or locking, to measure the
    /// runtime and HTTP layer alone.
    #[doc(hidden)]
    pub fixed_answer: bool,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// A configuration that cannot run, with the flag it concerns.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    UnknownFlag(String),
    MissingValue(&'static str),
    BadValue {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    InsecureBind(SocketAddr),
    Components(crate::components::ComponentError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag {flag:?} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ConfigError::BadValue { flag, value, why } => {
                write!(f, "invalid value {value:?} for {flag}: {why}")
            }
            ConfigError::Components(e) => write!(f, "component file {e}"),
            ConfigError::InsecureBind(addr) => write!(
                f,
                "refusing to listen on non-loopback address {addr} without DAPR_API_TOKEN; \
                 set a token or pass --insecure-bind"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3500";
/// Dapr's metrics port, on loopback: `/debug/lease` shows lock owners.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";
/// Dapr's gRPC port, on loopback.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:50001";
pub const DEFAULT_STORE: &str = "lockstore";
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_ID_BYTES: usize = 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_LEASES: usize = 10_000_000;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// `--max-expiry` with a data dir: an hour. After a crash, grants wait at most this (plus a
/// second) for the leases of the last run.
pub const DEFAULT_MAX_EXPIRY_S: u32 = 3600;
/// Upper bound on `--workers`: each worker is a pinned thread with its own shard.
pub const MAX_WORKERS: usize = 1024;
/// The most stores a configuration may name, as a literal, so that the refusal can say it.
macro_rules! max_stores {
    () => {
        1024
    };
}

/// Upper bound on the number of configured stores. The API could number more
/// ([`crate::api::MAX_STORES`], as many as a `StoreId` can); this is the limit a configuration
/// is held to, well below it.
pub const MAX_STORES: usize = max_stores!();
const _: () = assert!(MAX_STORES <= crate::api::MAX_STORES);

/// Why more than [`MAX_STORES`] stores are refused.
const TOO_MANY_STORES: &str = concat!("more than ", max_stores!(), " stores");

/// The `--help` text: every knob, its environment variable and its default.
pub const HELP: &str = "\
dlockd: a drop-in server for the Dapr Distributed Lock API (v1.0-alpha1)

USAGE: dlockd [FLAGS]

Each flag can also be set by the environment variable in brackets; a flag wins.

  --listen ADDR            HTTP address, IP:PORT or HOST:PORT (a host name binds every
                           address it resolves to) [DLOCKD_LISTEN] (default 127.0.0.1:3500;
                           127.0.0.1:$DAPR_HTTP_PORT when DAPR_HTTP_PORT is set)
  --store NAME             a lock store name; repeat for more [DLOCKD_STORES, comma-separated]
                           (default: one store named lockstore)
  --workers N              worker threads, one shard each, pinned to cores
                           [DLOCKD_WORKERS] (default: the available cores)
  --app-id ID              the app id reported by /v1.0/metadata [APP_ID] (default empty)
  --insecure-bind          allow a non-loopback --listen without DAPR_API_TOKEN
                           [DLOCKD_INSECURE_BIND=1]
  --io-driver D            auto | uring | legacy [DLOCKD_IO_DRIVER] (default auto: io_uring
                           when the kernel allows it, else epoll, said at start)
  --max-header-bytes N     request line + headers limit [DLOCKD_MAX_HEADER_BYTES] (8KiB)
  --max-body-bytes N       request body limit [DLOCKD_MAX_BODY_BYTES] (64KiB)
  --max-id-bytes N         resourceId and lockOwner length limit [DLOCKD_MAX_ID_BYTES] (1024)
  --max-connections N      open client connections, whole process [DLOCKD_MAX_CONNECTIONS]
                           (10000)
  --max-leases N           stored leases, whole process, split over the shards
                           [DLOCKD_MAX_LEASES] (10000000)
  --header-timeout T       time to receive a request's head [DLOCKD_HEADER_TIMEOUT] (10s)
  --body-timeout T         time to receive a request's body [DLOCKD_BODY_TIMEOUT] (10s)
  --idle-timeout T         keep-alive idle time before closing [DLOCKD_IDLE_TIMEOUT] (120s)
  --shutdown-timeout T     time SIGTERM/SIGINT allow in-flight work to finish
                           [DLOCKD_SHUTDOWN_TIMEOUT] (10s)
  --grpc-listen ADDR       the gRPC API (dapr.proto.runtime.v1.Dapr TryLockAlpha1,
                           UnlockAlpha1, GetMetadata) at IP:PORT or HOST:PORT, or off
                           [DLOCKD_GRPC_LISTEN] (default
                           127.0.0.1:50001; 127.0.0.1:$DAPR_GRPC_PORT when it is set;
                           127.0.0.1:0 when --listen asks for port 0)
  --metrics-listen ADDR    admin address (IP:PORT or HOST:PORT) serving /metrics
                           (Prometheus), /debug/lease and /debug/shards, or off
                           [DLOCKD_METRICS_LISTEN] (default
                           127.0.0.1:9090; 127.0.0.1:0 when --listen asks for port 0)
  --resources-path DIR     read lock stores from the Dapr component files (*.yaml) in DIR:
                           lock.redis and lock.in-memory [DLOCKD_RESOURCES_PATH]; --store
                           adds in-memory stores beside them
  --data-dir DIR           keep leases and fencing tokens across restarts and crashes in DIR
                           [DLOCKD_DATA_DIR] (default none: restart safety off, no tokens)
  --max-expiry S           the longest expiryInSeconds a try-lock may ask for
                           [DLOCKD_MAX_EXPIRY] (default 3600 with --data-dir, else no limit);
                           after a crash, grants wait at most this plus 1s
  --log-level L            off | error | warn | info | debug | trace [RUST_LOG, which may
                           also say dlockd=L] (default info); the API token and lock owners
                           are never logged
  -h, --help               this text
  -V, --version            the version

Sizes take a suffix: 8KiB, 64k, 1MiB, or plain bytes. Times: 500ms, 10s, 2m, or plain seconds.
A host name binds every address it resolves to. An address another process listens on stops
the start (exit 1): no address is ever served by two processes.
DAPR_API_TOKEN, when set, is required in the dapr-api-token header of every request except
GET /v1.0/healthz and GET /v1.0/healthz/outbound.
";

impl Config {
    /// Parses `args` (without the program name) with `env` as the fallback for each flag.
    pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
    where
        I: IntoIterator<Item = String>,
        E: Fn(&str) -> Option<String>,
    {
        let mut flags = Flags::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name.to_string(), Some(value)),
                _ => (arg.clone(), None),
            };
            let mut value = |flag: &'static str| -> Result<String, ConfigError> {
                match inline {
                    Some(v) => Ok(v.to_string()),
                    None => args.next().ok_or(ConfigError::MissingValue(flag)),
                }
            };
            match name.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                "--listen" => flags.listen = Some(value("--listen")?),
                "--store" => flags.stores.push(value("--store")?),
                "--workers" => flags.workers = Some(value("--workers")?),
                "--app-id" => flags.app_id = Some(value("--app-id")?),
                "--insecure-bind" => flags.insecure_bind = true,
                "--io-driver" => flags.driver = Some(value("--io-driver")?),
                "--max-header-bytes" => flags.max_header_bytes = Some(value("--max-header-bytes")?),
                "--max-body-bytes" => flags.max_body_bytes = Some(value("--max-body-bytes")?),
                "--max-id-bytes" => flags.max_id_bytes = Some(value("--max-id-bytes")?),
                "--max-connections" => flags.max_connections = Some(value("--max-connections")?),
                "--max-leases" => flags.max_leases = Some(value("--max-leases")?),
                "--header-timeout" => flags.header_timeout = Some(value("--header-timeout")?),
                "--body-timeout" => flags.body_timeout = Some(value("--body-timeout")?),
                "--idle-timeout" => flags.idle_timeout = Some(value("--idle-timeout")?),
                "--shutdown-timeout" => flags.shutdown_timeout = Some(value("--shutdown-timeout")?),
                "--metrics-listen" => flags.metrics_listen = Some(value("--metrics-listen")?),
                "--grpc-listen" => flags.grpc_listen = Some(value("--grpc-listen")?),
                "--log-level" => flags.log_level = Some(value("--log-level")?),
                "--data-dir" => flags.data_dir = Some(value("--data-dir")?),
                "--resources-path" => flags.resources_path = Some(value("--resources-path")?),
                "--max-expiry" => flags.max_expiry = Some(value("--max-expiry")?),
                _ => return Err(ConfigError::UnknownFlag(arg)),
            }
        }
        flags.resolve(&env).map(|c| Command::Run(Box::new(c)))
    }

    /// The leases each shard may store.
    pub fn max_leases_per_shard(&self) -> usize {
        self.max_leases.div_ceil(self.workers).max(1)
    }
}

/// Raw flag values before the environment and defaults fill the gaps.
#[derive(Default)]
struct Flags {
    listen: Option<String>,
    stores: Vec<String>,
    workers: Option<String>,
    app_id: Option<String>,
    insecure_bind: bool,
    driver: Option<String>,
    max_header_bytes: Option<String>,
    max_body_bytes: Option<String>,
    max_id_bytes: Option<String>,
    max_connections: Option<String>,
    max_leases: Option<String>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    idle_timeout: Option<String>,
    shutdown_timeout: Option<String>,
    metrics_listen: Option<String>,
    grpc_listen: Option<String>,
    log_level: Option<String>,
    data_dir: Option<String>,
    max_expiry: Option<String>,
    resources_path: Option<String>,
}

impl Flags {
    fn resolve(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let pick = |flag: Option<String>, var: &str| flag.or_else(|| env(var));

        let listen = match pick(self.listen, "DLOCKD_LISTEN") {
            Some(v) => parse_addrs("--listen", &v)?,
            None => match env("DAPR_HTTP_PORT") {
                Some(port) => {
                    let port: u16 = port.trim().parse().map_err(|_| ConfigError::BadValue {
                        flag: "DAPR_HTTP_PORT",
                        value: port.clone(),
                        why: "not a port number",
                    })?;
                    vec![SocketAddr::from(([127, 0, 0, 1], port))]
                }
                None => parse_addrs("--listen", DEFAULT_LISTEN)?,
            },
        };
        let ephemeral = listen.iter().any(|a| a.port() == 0);

        // An ephemeral main port (tests running many servers at once) gets an ephemeral admin
        // port too, unless one is asked for; the start-up output names the bound one.
        let metrics_listen = match pick(self.metrics_listen, "DLOCKD_METRICS_LISTEN") {
            Some(v) if v.trim() == "off" => None,
            Some(v) => Some(parse_addrs("--metrics-listen", &v)?),
            None if ephemeral => Some(vec![SocketAddr::from(([127, 0, 0, 1], 0))]),
            None => Some(parse_addrs("--metrics-listen", DEFAULT_METRICS_LISTEN)?),
        };

        let grpc_listen = match pick(self.grpc_listen, "DLOCKD_GRPC_LISTEN") {
            Some(v) if v.trim() == "off" => None,
            Some(v) => Some(parse_addrs("--grpc-listen", &v)?),
            None => match env("DAPR_GRPC_PORT") {
                Some(port) => {
                    let port: u16 = port.trim().parse().map_err(|_| ConfigError::BadValue {
                        flag: "DAPR_GRPC_PORT",
                        value: port.clone(),
                        why: "not a port number",
                    })?;
                    Some(vec![SocketAddr::from(([127, 0, 0, 1], port))])
                }
                None if ephemeral => Some(vec![SocketAddr::from(([127, 0, 0, 1], 0))]),
                None => Some(parse_addrs("--grpc-listen", DEFAULT_GRPC_LISTEN)?),
            },
        };

        // RUST_LOG is shared with other programs: what does not name a level for dlockd is
        // ignored there, where a bad --log-level is refused.
        let log_level = match self.log_level {
            Some(v) => crate::log::Level::parse(&v).map_err(|_| ConfigError::BadValue {
                flag: "--log-level",
                value: v,
                why: "expected off, error, warn, info, debug or trace",
            })?,
            None => env("RUST_LOG")
                .and_then(|v| crate::log::Level::parse(&v).ok())
                .unwrap_or(Some(crate::log::Level::Info)),
        };

        let app_id = pick(self.app_id, "APP_ID").unwrap_or_default();
        let resources_path = pick(self.resources_path, "DLOCKD_RESOURCES_PATH");
        let mut stores = self.stores;
        if stores.is_empty() {
            if let Some(list) = env("DLOCKD_STORES") {
                stores = list.split(',').map(|s| s.trim().to_string()).collect();
            } else if resources_path.is_none() {
                // With component files, the stores are theirs: daprd adds no default either.
                stores.push(DEFAULT_STORE.to_string());
            }
        }
        let mut backends = vec![crate::components::Backend::InMemory; stores.len()];
        let mut component_notes = Vec::new();
        if let Some(dir) = &resources_path {
            let (components, notes) =
                crate::components::load_dir(std::path::Path::new(dir), &app_id)
                    .map_err(ConfigError::Components)?;
            component_notes = notes;
            for component in components {
                if stores.contains(&component.name) {
                    return Err(ConfigError::Components(crate::components::ComponentError {
                        file: component.file,
                        field: "metadata.name".into(),
                        why: format!("lock store {:?} is also named by --store", component.name),
                    }));
                }
                stores.push(component.name);
                backends.push(component.backend);
            }
        }
        for (i, store) in stores.iter().enumerate() {
            if store.is_empty() {
                return Err(bad("--store", store, "a store name cannot be empty"));
            }
            if stores[..i].contains(store) {
                return Err(bad("--store", store, "the store is named twice"));
            }
        }
        if stores.len() > MAX_STORES {
            return Err(bad("--store", "", TOO_MANY_STORES));
        }

        let data_dir = match pick(self.data_dir, "DLOCKD_DATA_DIR") {
            Some(v) if v.trim().is_empty() => {
                return Err(bad("--data-dir", &v, "a data dir cannot be empty"))
            }
            Some(v) => Some(std::path::PathBuf::from(v)),
            None => None,
        };
        let max_expiry_s = match pick(self.max_expiry, "DLOCKD_MAX_EXPIRY") {
            // At most i32::MAX: it fits a u32.
            Some(v) => Some(parse_count("--max-expiry", &v, 1, i32::MAX as usize)? as u32),
            None => data_dir.as_ref().map(|_| DEFAULT_MAX_EXPIRY_S),
        };

        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = match pick(self.workers, "DLOCKD_WORKERS") {
            Some(v) => parse_count("--workers", &v, 1, MAX_WORKERS)?,
            None => available.min(MAX_WORKERS),
        };

        let driver = match pick(self.driver, "DLOCKD_IO_DRIVER").as_deref() {
            None | Some("auto") => DriverChoice::Auto,
            Some("uring") | Some("io_uring") => DriverChoice::Uring,
            Some("legacy") | Some("epoll") => DriverChoice::Legacy,
            Some(other) => return Err(bad("--io-driver", other, "expected auto, uring or legacy")),
        };

        let api_token = env("DAPR_API_TOKEN")
            .filter(|t| !t.is_empty())
            .map(String::into_bytes);
        let insecure_bind = self.insecure_bind
            || env("DLOCKD_INSECURE_BIND").is_some_and(|v| matches!(v.as_str(), "1" | "true"));
        if let Some(&public) = listen.iter().find(|a| !a.ip().is_loopback()) {
            if api_token.is_none() && !insecure_bind {
                return Err(ConfigError::InsecureBind(public));
            }
        }

        let size = |flag: &'static str, value: Option<String>, var: &str, default, min, max| {
            pick(value, var).map_or(Ok(default), |v| parse_size(flag, &v, min, max))
        };
        let time = |flag: &'static str, value: Option<String>, var: &str, default| {
            pick(value, var).map_or(Ok(default), |v| parse_duration(flag, &v))
        };
        const MIB: usize = 1024 * 1024;
        let config = Config {
            listen,
            stores,
            backends,
            component_notes,
            workers,
            app_id,
            api_token,
            insecure_bind,
            driver,
            max_header_bytes: size(
                "--max-header-bytes",
                self.max_header_bytes,
                "DLOCKD_MAX_HEADER_BYTES",
                DEFAULT_MAX_HEADER_BYTES,
                256,
                MIB,
            )?,
            max_body_bytes: size(
                "--max-body-bytes",
                self.max_body_bytes,
                "DLOCKD_MAX_BODY_BYTES",
                DEFAULT_MAX_BODY_BYTES,
                64,
                64 * MIB,
            )?,
            max_id_bytes: size(
                "--max-id-bytes",
                self.max_id_bytes,
                "DLOCKD_MAX_ID_BYTES",
                DEFAULT_MAX_ID_BYTES,
                1,
                MIB,
            )?,
            max_connections: size(
                "--max-connections",
                self.max_connections,
                "DLOCKD_MAX_CONNECTIONS",
                DEFAULT_MAX_CONNECTIONS,
                1,
                10_000_000,
            )?,
            max_leases: size(
                "--max-leases",
                self.max_leases,
                "DLOCKD_MAX_LEASES",
                DEFAULT_MAX_LEASES,
                1,
                1 << 34,
            )?,
            header_timeout: time(
                "--header-timeout",
                self.header_timeout,
                "DLOCKD_HEADER_TIMEOUT",
                DEFAULT_HEADER_TIMEOUT,
            )?,
            body_timeout: time(
                "--body-timeout",
                self.body_timeout,
                "DLOCKD_BODY_TIMEOUT",
                DEFAULT_BODY_TIMEOUT,
            )?,
            idle_timeout: time(
                "--idle-timeout",
                self.idle_timeout,
                "DLOCKD_IDLE_TIMEOUT",
                DEFAULT_IDLE_TIMEOUT,
            )?,
            shutdown_timeout: time(
                "--shutdown-timeout",
                self.shutdown_timeout,
                "DLOCKD_SHUTDOWN_TIMEOUT",
                DEFAULT_SHUTDOWN_TIMEOUT,
            )?,
            metrics_listen,
            grpc_listen,
            log_level,
            data_dir,
            max_expiry_s,
            fixed_answer: false,
        };
        Ok(config)
    }
}

fn bad(flag: &'static str, value: &str, why: &'static str) -> ConfigError {
    ConfigError::BadValue {
        flag,
        value: value.to_string(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match Config::parse(args.iter().map(|s| s.to_string()), |k| env.get(k).cloned())? {
            Command::Run(c) => Ok(*c),
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    // The documented defaults are what an empty command line and environment give.
    #[test]
    fn defaults() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:3500".parse().unwrap()]);
        assert_eq!(c.stores, vec!["lockstore".to_string()]);
        assert!(c.workers >= 1);
        assert_eq!(c.max_header_bytes, 8192);
        assert_eq!(c.max_body_bytes, 65536);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.driver, DriverChoice::Auto);
        assert!(c.api_token.is_none());
        assert_eq!(
            c.metrics_listen,
            Some(vec!["127.0.0.1:9090".parse().unwrap()])
        );
    }

    // The admin listener: an address, `off`, its variable, and an ephemeral port by default
    // when the main one is ephemeral.
    // The level comes from --log-level, else RUST_LOG (its dlockd= entry first), else info;
    // a bad one is refused with the flag's name.
    #[test]
    fn log_level() {
        use crate::log::Level;
        assert_eq!(parse(&[], &[]).unwrap().log_level, Some(Level::Info));
        let c = parse(&["--log-level", "debug"], &[("RUST_LOG", "error")]).unwrap();
        assert_eq!(c.log_level, Some(Level::Debug));
        let c = parse(&[], &[("RUST_LOG", "warn,dlockd=trace")]).unwrap();
        assert_eq!(c.log_level, Some(Level::Trace));
        assert_eq!(parse(&["--log-level", "off"], &[]).unwrap().log_level, None);
        assert!(parse(&["--log-level", "chatty"], &[]).is_err());
        // Another program's RUST_LOG leaves the default.
        let c = parse(&[], &[("RUST_LOG", "hyper=trace")]).unwrap();
        assert_eq!(c.log_level, Some(Level::Info));
    }

    #[test]
    fn metrics_listen() {
        let c = parse(&["--metrics-listen", "off"], &[]).unwrap();
        assert_eq!(c.metrics_listen, None);
        let c = parse(&[], &[("DLOCKD_METRICS_LISTEN", "127.0.0.1:9999")]).unwrap();
        assert_eq!(
            c.metrics_listen,
            Some(vec!["127.0.0.1:9999".parse().unwrap()])
        );
        let c = parse(
            &["--metrics-listen=127.0.0.1:1"],
            &[("DLOCKD_METRICS_LISTEN", "off")],
        )
        .unwrap();
        assert_eq!(c.metrics_listen, Some(vec!["127.0.0.1:1".parse().unwrap()]));
        let c = parse(&["--listen", "127.0.0.1:0"], &[]).unwrap();
        assert_eq!(c.metrics_listen, Some(vec!["127.0.0.1:0".parse().unwrap()]));
        let c = parse(&["--listen", "127.0.0.1:0", "--metrics-listen", "off"], &[]).unwrap();
        assert_eq!(c.metrics_listen, None);
        let msg = parse(&["--metrics-listen", "9090"], &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--metrics-listen"), "{msg}");
    }

    // A flag wins over its variable; DAPR_HTTP_PORT applies only without --listen.
    #[test]
    fn flags_beat_environment() {
        let c = parse(&[], &[("DAPR_HTTP_PORT", "3601")]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:3601".parse().unwrap()]);
        let c = parse(
            &["--listen", "127.0.0.1:4000"],
            &[("DAPR_HTTP_PORT", "3601")],
        )
        .unwrap();
        assert_eq!(c.listen[0].port(), 4000);
        let c = parse(&["--workers=3"], &[("DLOCKD_WORKERS", "5")]).unwrap();
        assert_eq!(c.workers, 3);
        let c = parse(&[], &[("DLOCKD_WORKERS", "5")]).unwrap();
        assert_eq!(c.workers, 5);
        let c = parse(&[], &[("DLOCKD_STORES", "a, b")]).unwrap();
        assert_eq!(c.stores, vec!["a".to_string(), "b".to_string()]);
        let c = parse(&["--store", "x", "--store", "y"], &[("DLOCKD_STORES", "a")]).unwrap();
        assert_eq!(c.stores, vec!["x".to_string(), "y".to_string()]);
    }

    // Sizes and times accept their suffixes and refuse nonsense, zero and overflow.
    #[test]
    fn sizes_and_times() {
        let c = parse(
            &[
                "--max-body-bytes",
                "1MiB",
                "--max-header-bytes",
                "16k",
                "--idle-timeout",
                "500ms",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.max_header_bytes, 16 << 10);
        assert_eq!(c.idle_timeout, Duration::from_millis(500));
        assert!(parse(&["--max-body-bytes", "-1"], &[]).is_err());
        assert!(parse(&["--max-body-bytes", "99999999999999999999999"], &[]).is_err());
        assert!(parse(&["--max-body-bytes", "12q"], &[]).is_err());
        assert!(parse(&["--idle-timeout", "0"], &[]).is_err());
        assert!(parse(&["--idle-timeout", "10 parsecs"], &[]).is_err());
        assert!(parse(&["--workers", "0"], &[]).is_err());
    }

    // A public address without a token is refused unless --insecure-bind says so.
    #[test]
    fn insecure_bind_needs_consent() {
        assert_eq!(
            parse(&["--listen", "0.0.0.0:3500"], &[]).unwrap_err(),
            ConfigError::InsecureBind("0.0.0.0:3500".parse().unwrap())
        );
        assert!(parse(&["--listen", "0.0.0.0:3500", "--insecure-bind"], &[]).is_ok());
        assert!(parse(&["--listen", "0.0.0.0:3500"], &[("DAPR_API_TOKEN", "t")]).is_ok());
    }

    // Mistakes are named, not ignored.
    #[test]
    fn errors_name_the_flag() {
        assert_eq!(
            parse(&["--lisen", "x"], &[]).unwrap_err(),
            ConfigError::UnknownFlag("--lisen".into())
        );
        assert_eq!(
            parse(&["--store"], &[]).unwrap_err(),
            ConfigError::MissingValue("--store")
        );
        assert!(parse(&["--store", "a", "--store", "a"], &[]).is_err());
        assert!(parse(&["--io-driver", "kqueue"], &[]).is_err());
        let msg = parse(&["--listen", "nowhere"], &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--listen"), "{msg}");
    }

    // A host name stands for every address it resolves to, each once; `localhost` resolves
    // from the hosts file, so this holds on a machine without a network. A bad shape or a
    // name that does not resolve is refused with the flag's name.
    #[test]
    fn host_names_resolve_to_every_address() {
        let c = parse(
            &["--listen", "localhost:3500", "--grpc-listen", "localhost:0"],
            &[],
        )
        .unwrap();
        assert!(!c.listen.is_empty());
        assert!(c
            .listen
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 3500));
        assert!(
            c.listen.contains(&"127.0.0.1:3500".parse().unwrap()),
            "{:?}",
            c.listen
        );
        for (i, a) in c.listen.iter().enumerate() {
            assert!(!c.listen[..i].contains(a), "{a} twice in {:?}", c.listen);
        }
        let grpc = c.grpc_listen.unwrap();
        assert!(grpc.iter().all(|a| a.ip().is_loopback() && a.port() == 0));
        // An ephemeral port on a name gives ephemeral side ports too.
        let c = parse(&["--listen", "localhost:0"], &[]).unwrap();
        assert_eq!(c.metrics_listen, Some(vec!["127.0.0.1:0".parse().unwrap()]));
        for bad in [
            "localhost",
            ":3500",
            "localhost:http",
            "no-such-host.invalid:3500",
        ] {
            let msg = parse(&["--metrics-listen", bad], &[])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("--metrics-listen"), "{bad}: {msg}");
        }
    }

    // Every flag the parser knows is documented in --help.
    #[test]
    fn help_documents_every_flag() {
        for flag in [
            "--listen",
            "--store",
            "--workers",
            "--app-id",
            "--insecure-bind",
            "--io-driver",
            "--max-header-bytes",
            "--max-body-bytes",
            "--max-id-bytes",
            "--max-connections",
            "--max-leases",
            "--header-timeout",
            "--body-timeout",
            "--idle-timeout",
            "--shutdown-timeout",
            "--metrics-listen",
        ] {
            assert!(HELP.contains(flag), "{flag} is missing from --help");
        }
    }

    // The store limit holds: MAX_STORES stores start, one more is refused with a message
    // that says the limit.
    #[test]
    fn more_than_max_stores_are_refused() {
        let names: Vec<String> = (0..=MAX_STORES).map(|i| format!("s{i}")).collect();
        let at_most = names[..MAX_STORES].join(",");
        let c = parse(&[], &[("DLOCKD_STORES", &at_most)]).unwrap();
        assert_eq!(c.stores.len(), MAX_STORES);
        let over = names.join(",");
        let err = parse(&[], &[("DLOCKD_STORES", &over)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid value \"\" for --store: more than {MAX_STORES} stores")
        );
    }
}
