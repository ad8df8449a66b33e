//! Every knob of the server: its default, its flag, its environment variable, validated once
//! at start. A flag wins over its environment variable; the environment wins over the default.
//!
//! The knobs are one table (`knobs.rs`): the command line parser looks flags up in it, the
//! resolver takes each knob's default and bounds from it, and `--help` is written from it. The
//! few knobs with a rule of their own besides (a Dapr port variable, side listeners that
//! follow an ephemeral `--listen`, `RUST_LOG`, the stores of component files, `--max-expiry`
//! with a data dir, `--insecure-bind`) have it in a named function of the resolver.
//!
//! Nothing here reads the process environment or arguments directly: [`Config::parse`] takes
//! them as arguments, so tests drive it with plain lists.

mod error;
mod knobs;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::components::Backend;
use error::bad;
pub use error::ConfigError;
pub use knobs::{Help, MAX_WORKERS};
use knobs::{Kind, Knob};
pub use values::DriverChoice;
use values::{
    loopback_port, parse_addrs, parse_count, parse_driver, parse_duration, parse_mode, parse_size,
};

/// The validated configuration of one server.
#[derive(Clone, Debug)]
pub struct Config {
    /// The HTTP addresses: one, or every address a host name resolves to. Empty only when
    /// `unix_sockets` serves the HTTP API instead.
    pub listen: Vec<SocketAddr>,
    /// With `--unix-domain-socket`: the sockets that serve the HTTP and gRPC APIs instead of
    /// `listen` and `grpc_listen`.
    pub unix_sockets: Option<UnixSockets>,
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
    /// The longest wait of an acquire (`--max-wait`).
    pub max_wait: Duration,
    /// Acquires waiting at once, whole process (`--max-waiters`).
    pub max_waiters: usize,
}

/// The Unix domain sockets of `--unix-domain-socket DIR`, named as daprd names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixSockets {
    /// `DIR/dapr-<app-id>-http.socket`.
    pub http: PathBuf,
    /// `DIR/dapr-<app-id>-grpc.socket`; `None` with `--grpc-listen off`.
    pub grpc: Option<PathBuf>,
    /// `--unix-socket-mode`: the sockets' permission bits.
    pub mode: u32,
}

/// The longest path a Unix socket address holds (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

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
pub const HELP: Help = Help;

/// The API token's variable, which no flag sets.
const API_TOKEN_VAR: &str = "DAPR_API_TOKEN";

impl Config {
    /// `--max-wait` in milliseconds: a time is at most a week, which fits.
    pub fn max_wait_ms(&self) -> u32 {
        u32::try_from(self.max_wait.as_millis()).unwrap_or(u32::MAX)
    }

    /// Parses `args` (without the program name) with `env` as the fallback for each flag.
    pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
    where
        I: IntoIterator<Item = String>,
        E: Fn(&str) -> Option<String>,
    {
        let mut given = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value)),
                _ => (arg.as_str(), None),
            };
            match name {
                "-h" | "--help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                _ => {}
            }
            let Some(knob) = knobs::find(name) else {
                return Err(ConfigError::UnknownFlag(arg));
            };
            let value = match (knob.kind, inline) {
                (Kind::Switch, _) => String::new(),
                (_, Some(value)) => value.to_string(),
                (_, None) => args.next().ok_or(ConfigError::MissingValue(knob.flag))?,
            };
            given.push((knob, value));
        }
        let resolver = Resolver { given, env: &env };
        resolver.config().map(|c| Command::Run(Box::new(c)))
    }

    /// The leases each shard may store.
    pub fn max_leases_per_shard(&self) -> usize {
        self.max_leases.div_ceil(self.workers).max(1)
    }
}

/// The flags of a command line and the environment, made into a [`Config`]: for each knob its
/// flag, else its variable, else its default.
struct Resolver<'a> {
    /// Each flag given, in order, with its value (empty for a switch).
    given: Vec<(&'static Knob, String)>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// The lock stores and where each one's leases live.
struct Stores {
    names: Vec<String>,
    backends: Vec<Backend>,
    /// What reading the component files passed over.
    notes: Vec<String>,
}

impl Resolver<'_> {
    fn config(&self) -> Result<Config, ConfigError> {
        let app_id = self.text(&knobs::APP_ID);
        let unix_sockets = self.unix_sockets(&app_id)?;
        let listen = match unix_sockets {
            Some(_) => Vec::new(),
            None => self.listen()?,
        };
        let ephemeral = listen.iter().any(|a| a.port() == 0);
        let metrics_listen = self.addrs(&knobs::METRICS_LISTEN, ephemeral)?;
        let grpc_listen = match unix_sockets {
            Some(_) => None,
            None => self.addrs(&knobs::GRPC_LISTEN, ephemeral)?,
        };
        let log_level = self.log_level()?;
        let stores = self.stores(&app_id)?;
        let data_dir = self.dir(&knobs::DATA_DIR)?;
        let max_expiry_s = self.max_expiry(data_dir.is_some())?;
        let workers = self.workers()?;
        let driver = self.driver(&knobs::IO_DRIVER)?;
        let api_token = (self.env)(API_TOKEN_VAR)
            .filter(|t| !t.is_empty())
            .map(String::into_bytes);
        let insecure_bind = self.switch(&knobs::INSECURE_BIND);
        check_bind(&listen, api_token.is_some(), insecure_bind)?;
        Ok(Config {
            listen,
            unix_sockets,
            stores: stores.names,
            backends: stores.backends,
            component_notes: stores.notes,
            workers,
            app_id,
            api_token,
            insecure_bind,
            driver,
            max_header_bytes: self.size(&knobs::MAX_HEADER_BYTES)?,
            max_body_bytes: self.size(&knobs::MAX_BODY_BYTES)?,
            max_id_bytes: self.size(&knobs::MAX_ID_BYTES)?,
            max_connections: self.size(&knobs::MAX_CONNECTIONS)?,
            max_leases: self.size(&knobs::MAX_LEASES)?,
            header_timeout: self.time(&knobs::HEADER_TIMEOUT)?,
            body_timeout: self.time(&knobs::BODY_TIMEOUT)?,
            idle_timeout: self.time(&knobs::IDLE_TIMEOUT)?,
            shutdown_timeout: self.time(&knobs::SHUTDOWN_TIMEOUT)?,
            metrics_listen,
            grpc_listen,
            log_level,
            data_dir,
            max_expiry_s,
            max_wait: self.time(&knobs::MAX_WAIT)?,
            max_waiters: self.size(&knobs::MAX_WAITERS)?,
        })
    }

    /// The value the command line last gives `knob`.
    fn flag(&self, knob: &Knob) -> Option<&str> {
        self.given
            .iter()
            .rev()
            .find(|(k, _)| k.flag == knob.flag)
            .map(|(_, value)| value.as_str())
    }

    /// The flag's value, else the variable's.
    fn given(&self, knob: &Knob) -> Option<String> {
        self.flag(knob)
            .map(str::to_string)
            .or_else(|| (self.env)(knob.env))
    }

    /// The flag's value, else the variable's, else the table's default.
    fn value(&self, knob: &Knob) -> Option<String> {
        self.given(knob)
            .or_else(|| knob.default.map(str::to_string))
    }

    fn size(&self, knob: &'static Knob) -> Result<usize, ConfigError> {
        let Kind::Size { min, max } = knob.kind else {
            unreachable!("{} is not a size", knob.flag)
        };
        parse_size(knob.flag, &self.value(knob).unwrap_or_default(), min, max)
    }

    /// `None` when neither flag, variable nor table gives a value.
    fn count(&self, knob: &'static Knob) -> Result<Option<usize>, ConfigError> {
        let Kind::Count { min, max } = knob.kind else {
            unreachable!("{} is not a count", knob.flag)
        };
        self.value(knob)
            .map(|v| parse_count(knob.flag, &v, min, max))
            .transpose()
    }

    fn time(&self, knob: &'static Knob) -> Result<Duration, ConfigError> {
        debug_assert_eq!(knob.kind, Kind::Time, "{}", knob.flag);
        parse_duration(knob.flag, &self.value(knob).unwrap_or_default())
    }

    fn text(&self, knob: &'static Knob) -> String {
        debug_assert_eq!(knob.kind, Kind::Text, "{}", knob.flag);
        self.value(knob).unwrap_or_default()
    }

    fn dir(&self, knob: &'static Knob) -> Result<Option<PathBuf>, ConfigError> {
        let Kind::Dir { blank } = knob.kind else {
            unreachable!("{} is not a directory", knob.flag)
        };
        match (self.value(knob), blank) {
            (Some(v), Some(why)) if v.trim().is_empty() => Err(bad(knob.flag, &v, why)),
            (v, _) => Ok(v.map(PathBuf::from)),
        }
    }

    /// On when the flag is given, or its variable says `1` or `true`.
    fn switch(&self, knob: &'static Knob) -> bool {
        debug_assert_eq!(knob.kind, Kind::Switch, "{}", knob.flag);
        self.flag(knob).is_some()
            || (self.env)(knob.env).is_some_and(|v| matches!(v.as_str(), "1" | "true"))
    }

    fn driver(&self, knob: &'static Knob) -> Result<DriverChoice, ConfigError> {
        debug_assert_eq!(knob.kind, Kind::Driver, "{}", knob.flag);
        parse_driver(knob.flag, &self.value(knob).unwrap_or_default())
    }

    /// A listener's addresses, `None` for `off`. Without flag or variable, the knob's port
    /// variable gives a loopback port when it is set, and a side listener follows an
    /// ephemeral `--listen` (tests running many servers at once) to port 0; the start-up
    /// output names the bound one.
    fn addrs(
        &self,
        knob: &'static Knob,
        ephemeral: bool,
    ) -> Result<Option<Vec<SocketAddr>>, ConfigError> {
        let Kind::Addrs {
            off,
            port_var,
            follows_port_0,
        } = knob.kind
        else {
            unreachable!("{} is not an address", knob.flag)
        };
        if let Some(v) = self.given(knob) {
            if off && v.trim() == "off" {
                return Ok(None);
            }
            return parse_addrs(knob.flag, &v).map(Some);
        }
        if let Some((var, port)) = port_var.and_then(|var| Some((var, (self.env)(var)?))) {
            return loopback_port(var, &port).map(Some);
        }
        if follows_port_0 && ephemeral {
            return Ok(Some(vec![SocketAddr::from(([127, 0, 0, 1], 0))]));
        }
        parse_addrs(knob.flag, knob.default.unwrap_or_default()).map(Some)
    }

    /// `--listen`, which cannot be off.
    fn listen(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        let Some(listen) = self.addrs(&knobs::LISTEN, false)? else {
            unreachable!("--listen cannot be off")
        };
        Ok(listen)
    }

    /// `--unix-domain-socket DIR`: the HTTP API on `DIR/dapr-<app-id>-http.socket` and, unless
    /// `--grpc-listen off`, the gRPC API on `DIR/dapr-<app-id>-grpc.socket`, as daprd names
    /// them. They replace the TCP listeners, so a `--listen` or `--grpc-listen` address given
    /// beside them is refused rather than passed over; the Dapr port variables are.
    fn unix_sockets(&self, app_id: &str) -> Result<Option<UnixSockets>, ConfigError> {
        let knob = &knobs::UNIX_DOMAIN_SOCKET;
        // Checked with or without the sockets, as every knob's value is.
        let mode_knob = &knobs::UNIX_SOCKET_MODE;
        let mode = parse_mode(mode_knob.flag, &self.value(mode_knob).unwrap_or_default())?;
        let Some(dir) = self.dir(knob)? else {
            return Ok(None);
        };
        let shown = dir.display().to_string();
        if app_id.is_empty() {
            return Err(bad(
                knob.flag,
                &shown,
                "needs an app id (--app-id or APP_ID): the sockets are named \
                 dapr-<app-id>-http.socket and dapr-<app-id>-grpc.socket",
            ));
        }
        if app_id.contains(['/', '\0']) {
            return Err(bad(
                knobs::APP_ID.flag,
                app_id,
                "names the --unix-domain-socket files, so it cannot hold '/'",
            ));
        }
        if let Some(v) = self.given(&knobs::LISTEN) {
            return Err(bad(
                knobs::LISTEN.flag,
                &v,
                "--unix-domain-socket serves the HTTP API instead: give one of the two",
            ));
        }
        let grpc =
            match self.given(&knobs::GRPC_LISTEN) {
                Some(v) if v.trim() == "off" => false,
                Some(v) => return Err(bad(
                    knobs::GRPC_LISTEN.flag,
                    &v,
                    "--unix-domain-socket serves the gRPC API instead: give one of the two, or \
                     --grpc-listen off",
                )),
                None => true,
            };
        let socket = |face: &str| dir.join(format!("dapr-{app_id}-{face}.socket"));
        let http = socket("http");
        // The gRPC name is the longer by nothing: both are checked as one.
        if http.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(bad(
                knob.flag,
                &shown,
                "the socket paths in this directory are longer than the 107 bytes a Unix \
                 socket address holds",
            ));
        }
        Ok(Some(UnixSockets {
            http,
            grpc: grpc.then(|| socket("grpc")),
            mode,
        }))
    }

    /// `--log-level`, else `RUST_LOG`, else the default. `RUST_LOG` is shared with other
    /// programs: what does not name a level for dlockd is passed over there, where a bad
    /// `--log-level` is refused.
    fn log_level(&self) -> Result<Option<crate::log::Level>, ConfigError> {
        let knob = &knobs::LOG_LEVEL;
        let strict = |v: &str| {
            crate::log::Level::parse(v).map_err(|_| {
                bad(
                    knob.flag,
                    v,
                    "expected off, error, warn, info, debug or trace",
                )
            })
        };
        if let Some(v) = self.flag(knob) {
            return strict(v);
        }
        match (self.env)(knob.env).and_then(|v| crate::log::Level::parse(&v).ok()) {
            Some(level) => Ok(level),
            None => strict(knob.default.unwrap_or_default()),
        }
    }

    /// `--workers`, else the available cores (at most [`MAX_WORKERS`]).
    fn workers(&self) -> Result<usize, ConfigError> {
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(self
            .count(&knobs::WORKERS)?
            .unwrap_or(available.min(MAX_WORKERS)))
    }

    /// `--max-expiry`; its default applies only with a data dir, whose restart after a crash
    /// it bounds.
    fn max_expiry(&self, with_data_dir: bool) -> Result<Option<u32>, ConfigError> {
        let knob = &knobs::MAX_EXPIRY;
        if !with_data_dir && self.given(knob).is_none() {
            return Ok(None);
        }
        match self.count(knob)? {
            Some(s) => u32::try_from(s)
                .map(Some)
                .map_err(|_| bad(knob.flag, &s.to_string(), "out of range")),
            None => Ok(None),
        }
    }

    /// The stores `--store` names, then those of the component files of `--resources-path`.
    fn stores(&self, app_id: &str) -> Result<Stores, ConfigError> {
        let resources = self.dir(&knobs::RESOURCES_PATH)?;
        let mut names = self.store_names(resources.is_none());
        let mut backends = vec![Backend::InMemory; names.len()];
        let mut notes = Vec::new();
        if let Some(dir) = &resources {
            notes = add_components(dir, app_id, &mut names, &mut backends)?;
        }
        check_stores(&names)?;
        Ok(Stores {
            names,
            backends,
            notes,
        })
    }

    /// Every `--store`, else the variable's list, else the default store; with component
    /// files the stores are theirs, and no default is added (daprd adds none either).
    fn store_names(&self, with_default: bool) -> Vec<String> {
        let knob = &knobs::STORE;
        let flags: Vec<String> = self
            .given
            .iter()
            .filter(|(k, _)| k.flag == knob.flag)
            .map(|(_, name)| name.clone())
            .collect();
        if !flags.is_empty() {
            return flags;
        }
        match (self.env)(knob.env) {
            Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
            None if with_default => knob.default.iter().map(|s| s.to_string()).collect(),
            None => Vec::new(),
        }
    }
}

/// Adds the lock stores of the component files in `dir` after `names`, and returns what
/// reading them passed over. A component may not take the name of a `--store`.
fn add_components(
    dir: &Path,
    app_id: &str,
    names: &mut Vec<String>,
    backends: &mut Vec<Backend>,
) -> Result<Vec<String>, ConfigError> {
    let (components, notes) =
        crate::components::load_dir(dir, app_id).map_err(ConfigError::Components)?;
    for component in components {
        if names.contains(&component.name) {
            return Err(ConfigError::Components(crate::components::ComponentError {
                file: component.file,
                field: "metadata.name".into(),
                why: format!("lock store {:?} is also named by --store", component.name),
            }));
        }
        names.push(component.name);
        backends.push(component.backend);
    }
    Ok(notes)
}

/// Every store has a name, each name once, and there are at most [`MAX_STORES`].
fn check_stores(names: &[String]) -> Result<(), ConfigError> {
    let flag = knobs::STORE.flag;
    for (i, store) in names.iter().enumerate() {
        if store.is_empty() {
            return Err(bad(flag, store, "a store name cannot be empty"));
        }
        if names[..i].contains(store) {
            return Err(bad(flag, store, "the store is named twice"));
        }
    }
    if names.len() > MAX_STORES {
        return Err(bad(flag, "", TOO_MANY_STORES));
    }
    Ok(())
}

/// A non-loopback address needs an API token, or `--insecure-bind` to say it is meant.
fn check_bind(listen: &[SocketAddr], token: bool, insecure: bool) -> Result<(), ConfigError> {
    match listen.iter().find(|a| !a.ip().is_loopback()) {
        Some(&public) if !token && !insecure => Err(ConfigError::InsecureBind(public)),
        _ => Ok(()),
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
        let help = HELP.to_string();
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
            assert!(help.contains(flag), "{flag} is missing from --help");
        }
    }

    // --help is written from the table: each knob has its own entry, which names its
    // environment variable and its default value; no flag or variable is two knobs'.
    #[test]
    fn help_shows_every_knob_with_its_variable() {
        let help = HELP.to_string();
        let lines: Vec<&str> = help.lines().collect();
        for knob in knobs::KNOBS {
            let head = format!("  {} ", knob.usage());
            let at = lines
                .iter()
                .position(|l| l.starts_with(&head))
                .unwrap_or_else(|| panic!("{} has no entry in --help", knob.flag));
            let rest = lines[at + 1..]
                .iter()
                .take_while(|l| l.starts_with("    "))
                .copied();
            let entry: Vec<&str> = std::iter::once(lines[at]).chain(rest).collect();
            let entry = entry.join("\n");
            assert!(
                entry.contains(&format!("[{}", knob.env)),
                "{} does not name {}: {entry}",
                knob.flag,
                knob.env
            );
            if let Some(value) = knob.default.filter(|v| !v.is_empty()) {
                assert!(entry.contains(value), "{}: no default: {entry}", knob.flag);
            }
        }
        for (i, knob) in knobs::KNOBS.iter().enumerate() {
            for earlier in &knobs::KNOBS[..i] {
                assert_ne!(knob.flag, earlier.flag);
                assert_ne!(knob.env, earlier.env);
            }
        }
    }

    /// How a test reads one knob back from a configuration.
    type Look = fn(&Config) -> String;

    /// A knob's test values: what its flag and its variable say, the arguments every case of
    /// it runs with (under which its default applies), and where it shows in a
    /// configuration.
    struct Layers {
        flag: &'static str,
        from_flag: String,
        from_env: String,
        with: &'static [&'static str],
        look: Look,
    }

    fn layers(flag: &'static str, from_flag: &str, from_env: &str, look: Look) -> Layers {
        Layers {
            flag,
            from_flag: from_flag.to_string(),
            from_env: from_env.to_string(),
            with: &[],
            look,
        }
    }

    /// Two directories of component files, each declaring one in-memory lock store.
    struct ComponentDirs {
        root: std::path::PathBuf,
    }

    impl ComponentDirs {
        fn new(tag: &str) -> ComponentDirs {
            let root =
                std::env::temp_dir().join(format!("dlockd-config-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            for name in ["from-flag", "from-env"] {
                let dir = root.join(name);
                std::fs::create_dir_all(&dir).expect("dir");
                let yaml = format!(
                    "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n\
                     spec:\n  type: lock.in-memory\n"
                );
                std::fs::write(dir.join("lock.yaml"), yaml).expect("write");
            }
            ComponentDirs { root }
        }

        fn dir(&self, name: &str) -> String {
            self.root.join(name).display().to_string()
        }
    }

    impl Drop for ComponentDirs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn layer_cases(dirs: &ComponentDirs) -> Vec<Layers> {
        vec![
            layers("--listen", "127.0.0.1:4001", "127.0.0.1:4002", |c| {
                format!("{:?}", c.listen)
            }),
            layers("--store", "x", "a", |c| format!("{:?}", c.stores)),
            layers("--workers", "1022", "1023", |c| c.workers.to_string()),
            layers("--app-id", "x", "y", |c| c.app_id.clone()),
            layers("--insecure-bind", "", "1", |c| c.insecure_bind.to_string()),
            layers("--io-driver", "legacy", "uring", |c| {
                format!("{:?}", c.driver)
            }),
            layers("--max-header-bytes", "16k", "32768", |c| {
                c.max_header_bytes.to_string()
            }),
            layers("--max-body-bytes", "1MiB", "2048", |c| {
                c.max_body_bytes.to_string()
            }),
            layers("--max-id-bytes", "64", "2k", |c| c.max_id_bytes.to_string()),
            layers("--max-connections", "5", "6", |c| {
                c.max_connections.to_string()
            }),
            layers("--max-leases", "1k", "99", |c| c.max_leases.to_string()),
            layers("--header-timeout", "1s", "2m", |c| {
                format!("{:?}", c.header_timeout)
            }),
            layers("--body-timeout", "500ms", "3", |c| {
                format!("{:?}", c.body_timeout)
            }),
            layers("--idle-timeout", "1h", "7s", |c| {
                format!("{:?}", c.idle_timeout)
            }),
            layers("--shutdown-timeout", "2s", "30s", |c| {
                format!("{:?}", c.shutdown_timeout)
            }),
            layers("--grpc-listen", "127.0.0.1:5001", "off", |c| {
                format!("{:?}", c.grpc_listen)
            }),
            Layers {
                with: &["--app-id", "a"],
                ..layers("--unix-domain-socket", "/flag/dir", "/env/dir", |c| {
                    format!("{:?}", c.unix_sockets)
                })
            },
            Layers {
                with: &["-u", "/s", "--app-id", "a"],
                ..layers("--unix-socket-mode", "0600", "0640", |c| {
                    format!("{:?}", c.unix_sockets.as_ref().map(|u| u.mode))
                })
            },
            layers("--metrics-listen", "off", "127.0.0.1:9999", |c| {
                format!("{:?}", c.metrics_listen)
            }),
            layers(
                "--resources-path",
                &dirs.dir("from-flag"),
                &dirs.dir("from-env"),
                |c| format!("{:?}", c.stores),
            ),
            layers("--data-dir", "/flag/dir", "/env/dir", |c| {
                format!("{:?}", c.data_dir)
            }),
            Layers {
                with: &["--data-dir", "dlockd-data"],
                ..layers("--max-expiry", "60", "120", |c| {
                    format!("{:?}", c.max_expiry_s)
                })
            },
            layers("--max-wait", "5s", "2m", |c| format!("{:?}", c.max_wait)),
            layers("--max-waiters", "10", "20", |c| c.max_waiters.to_string()),
            layers("--log-level", "debug", "warn", |c| {
                format!("{:?}", c.log_level)
            }),
        ]
    }

    // For every knob of the table, a flag wins over its variable and the variable over the
    // default: the variable means what the flag would, the flag is not moved by the variable,
    // and the default is what the flag gives with the table's default value. A switch is on
    // by its flag whatever its variable says.
    #[test]
    fn flag_beats_environment_beats_default_for_every_knob() {
        let dirs = ComponentDirs::new("layers");
        let cases = layer_cases(&dirs);
        let covered: Vec<&str> = cases.iter().map(|c| c.flag).collect();
        let table: Vec<&str> = knobs::KNOBS.iter().map(|k| k.flag).collect();
        assert_eq!(covered, table, "each knob of the table has a case");
        for case in &cases {
            let knob = knobs::find(case.flag).expect("a knob");
            let look = |args: &[&str], env: &[(&str, &str)]| {
                let args = [case.with, args].concat();
                match parse(&args, env) {
                    Ok(config) => (case.look)(&config),
                    Err(e) => panic!("{args:?} {env:?}: {e}"),
                }
            };
            if knob.kind == Kind::Switch {
                assert_eq!(look(&[], &[]), "false", "{}", knob.flag);
                assert_eq!(look(&[], &[(knob.env, "1")]), "true", "{}", knob.flag);
                assert_eq!(look(&[], &[(knob.env, "true")]), "true", "{}", knob.flag);
                assert_eq!(look(&[], &[(knob.env, "0")]), "false", "{}", knob.flag);
                assert_eq!(
                    look(&[knob.flag], &[(knob.env, "0")]),
                    "true",
                    "{}",
                    knob.flag
                );
                continue;
            }
            let (from_flag, from_env) = (case.from_flag.as_str(), case.from_env.as_str());
            let default = look(&[], &[]);
            let env = look(&[], &[(knob.env, from_env)]);
            let flag = look(&[knob.flag, from_flag], &[(knob.env, from_env)]);
            assert_ne!(env, default, "{}: the variable is applied", knob.flag);
            assert_ne!(flag, env, "{}: the flag wins", knob.flag);
            assert_eq!(flag, look(&[knob.flag, from_flag], &[]), "{}", knob.flag);
            assert_eq!(env, look(&[knob.flag, from_env], &[]), "{}", knob.flag);
            if let Some(value) = knob.default {
                let by_default = look(&[], &[]);
                assert_eq!(
                    by_default,
                    look(&[knob.flag, value], &[]),
                    "{}: the default",
                    knob.flag
                );
            }
        }
    }

    // The Dapr port variables come after the knob's own variable and before its default,
    // and before the side ports that follow an ephemeral --listen; a bad one is named.
    #[test]
    fn dapr_port_variables_come_after_the_knobs_own() {
        let c = parse(&[], &[("DAPR_GRPC_PORT", "50100")]).unwrap();
        assert_eq!(
            c.grpc_listen,
            Some(vec!["127.0.0.1:50100".parse().unwrap()])
        );
        let c = parse(&["--listen", "127.0.0.1:0"], &[("DAPR_GRPC_PORT", "50100")]).unwrap();
        assert_eq!(
            c.grpc_listen,
            Some(vec!["127.0.0.1:50100".parse().unwrap()])
        );
        let c = parse(
            &[],
            &[
                ("DAPR_GRPC_PORT", "50100"),
                ("DLOCKD_GRPC_LISTEN", "127.0.0.1:1"),
                ("DAPR_HTTP_PORT", "3601"),
                ("DLOCKD_LISTEN", "127.0.0.1:4000"),
            ],
        )
        .unwrap();
        assert_eq!(c.grpc_listen, Some(vec!["127.0.0.1:1".parse().unwrap()]));
        assert_eq!(c.listen, vec!["127.0.0.1:4000".parse().unwrap()]);
        for var in ["DAPR_HTTP_PORT", "DAPR_GRPC_PORT"] {
            let err = parse(&[], &[(var, "http")]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid value \"http\" for {var}: not a port number")
            );
        }
    }

    /// A value each kind refuses, or `None` for a kind that takes any.
    fn refused(kind: Kind) -> Option<&'static str> {
        match kind {
            Kind::Addrs { .. } => Some("nowhere"),
            Kind::Size { .. } => Some("12q"),
            Kind::Count { .. } => Some("twelve"),
            Kind::Time => Some("10 parsecs"),
            Kind::Dir { blank: Some(_) } => Some(" "),
            Kind::Dir { blank: None } => Some("/nonexistent/dlockd-components"),
            Kind::Names => Some(""),
            Kind::Driver => Some("kqueue"),
            Kind::Level => Some("chatty"),
            Kind::Mode => Some("0999"),
            Kind::Text | Kind::Switch => None,
        }
    }

    // A bad value of every kind, from the flag or from its variable, and a number outside a
    // knob's range, are refused with a message naming the flag; a flag without its value is
    // named too. RUST_LOG alone is passed over when it names no level: other programs share it.
    #[test]
    fn a_bad_value_of_each_kind_names_the_flag() {
        let named = |args: &[&str], env: &[(&str, &str)], flag: &str| {
            let msg = match parse(args, env) {
                Ok(_) => panic!("{args:?} {env:?} is accepted"),
                Err(e) => e.to_string(),
            };
            assert!(msg.contains(flag), "{args:?} {env:?}: {msg}");
        };
        for knob in knobs::KNOBS {
            if knob.kind != Kind::Switch {
                named(&[knob.flag], &[], knob.flag);
            }
            if let Kind::Size { min, max } | Kind::Count { min, max } = knob.kind {
                named(&[knob.flag, &(max + 1).to_string()], &[], knob.flag);
                named(&[knob.flag, &(min - 1).to_string()], &[], knob.flag);
            }
            let Some(value) = refused(knob.kind) else {
                continue;
            };
            named(&[knob.flag, value], &[], knob.flag);
            if knob.kind == Kind::Level {
                assert!(parse(&[], &[(knob.env, value)]).is_ok());
            } else {
                named(&[], &[(knob.env, value)], knob.flag);
            }
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

    // --unix-domain-socket (or -u, or its variable) names daprd's two sockets after the app
    // id, with mode 0660 unless told, and takes the place of both TCP listeners; the Dapr
    // port variables are passed over, and gRPC off leaves only the HTTP socket.
    #[test]
    fn unix_domain_sockets_replace_the_api_listeners() {
        let want = UnixSockets {
            http: PathBuf::from("/run/dapr/dapr-orders-http.socket"),
            grpc: Some(PathBuf::from("/run/dapr/dapr-orders-grpc.socket")),
            mode: 0o660,
        };
        for (args, env) in [
            (&["-u", "/run/dapr", "--app-id", "orders"][..], &[][..]),
            (
                &["--unix-domain-socket=/run/dapr/", "--app-id", "orders"][..],
                &[("DAPR_HTTP_PORT", "3600"), ("DAPR_GRPC_PORT", "50009")][..],
            ),
            (
                &[][..],
                &[
                    ("DLOCKD_UNIX_DOMAIN_SOCKET", "/run/dapr"),
                    ("APP_ID", "orders"),
                ][..],
            ),
        ] {
            let c = parse(args, env).unwrap();
            assert_eq!(c.unix_sockets.as_ref(), Some(&want), "{args:?} {env:?}");
            assert!(c.listen.is_empty());
            assert_eq!(c.grpc_listen, None);
            assert!(
                c.metrics_listen.is_some(),
                "the admin listener stays on TCP"
            );
        }
        let c = parse(
            &[
                "-u",
                "/s",
                "--app-id",
                "a",
                "--grpc-listen",
                "off",
                "--unix-socket-mode",
                "600",
            ],
            &[],
        )
        .unwrap();
        let sockets = c.unix_sockets.unwrap();
        assert_eq!(sockets.grpc, None);
        assert_eq!(sockets.mode, 0o600);
        assert!(parse(&[], &[]).unwrap().unix_sockets.is_none());
    }

    // What cannot name or serve the sockets is refused, naming the flag: no app id, an app
    // id with a slash, a TCP listener asked for beside them, a path too long for a socket
    // address, a mode that is not octal or above 0777.
    #[test]
    fn unix_domain_socket_refusals() {
        let refused = |args: &[&str], env: &[(&str, &str)], want: &str| {
            let msg = parse(args, env).expect_err("refused").to_string();
            assert!(msg.contains(want), "{args:?}: {msg}");
        };
        refused(&["-u", "/s"], &[], "--unix-domain-socket: needs an app id");
        refused(&["-u", "/s", "--app-id", "a/b"], &[], "for --app-id");
        refused(
            &["-u", "/s", "--app-id", "a", "--listen", "127.0.0.1:1"],
            &[],
            "for --listen: --unix-domain-socket serves the HTTP API instead",
        );
        refused(
            &["-u", "/s", "--app-id", "a"],
            &[("DLOCKD_GRPC_LISTEN", "127.0.0.1:1")],
            "for --grpc-listen",
        );
        let deep = format!("/{}", "d".repeat(90));
        refused(&["-u", &deep, "--app-id", "app"], &[], "107 bytes");
        refused(&["--unix-socket-mode", "0888"], &[], "octal");
        refused(&["--unix-socket-mode", "1777"], &[], "at most 0777");
    }
}
