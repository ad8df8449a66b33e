//! The command line: every flag, its default and its bounds, validated once before anything
//! connects. A [`Config`] that comes out of [`parse`] is internally consistent: the run can
//! start without re-checking any of it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::wire::Protocol;
use crate::workload::Kind;
use crate::zipf::MAX_HOT;

pub const HELP: &str = "\
dlockd-loadgen: drive a Dapr lock server (or Redis, nginx, a fixed-response server) with the
same client, workload and connection count, and report throughput and latency.

usage: dlockd-loadgen --target HOST:PORT|unix:PATH [flags]

  --target ADDR           the server (required): HOST:PORT over TCP, or unix:PATH for a Unix
                          domain socket (every protocol; over HTTP the Host header is then
                          localhost); with --protocol etcd, several members comma-separated
                          (h1:2379,h2:2379,h3:2379): connection i goes to the (i mod n)th
  --protocol P            http: the Dapr lock API over HTTP/1.1 (default); resp: Redis, as
                          Dapr's lock.redis; grpc: the Dapr lock API over gRPC (HTTP/2,
                          dapr.proto.runtime.v1.Dapr TryLockAlpha1 / UnlockAlpha1); etcd:
                          etcd's v3 API over gRPC with the calls dlockd's lock.etcd store
                          makes (a lock: LeaseGrant, then a Txn that puts lock||<id> under
                          the lease if the key and its waiter keys are absent, then, refused,
                          LeaseRevoke; an unlock: a Txn that deletes the key if the owner
                          holds it, then LeaseRevoke of its lease)
  --workload W            uncontended | contended | churn | handoff | poll (default
                          uncontended)
                            uncontended: each connection locks and unlocks its own resources
                            contended:   locks on a Zipf-hot set; a holder unlocks next
                            churn:       lock-only with a short expiry; leases expire in the server
                            handoff:     every connection waits for one resource with acquire
                                         (dlockd's /lock/{store}/acquire, http only) and
                                         unlocks it the moment it is granted, then waits again
                            poll:        every connection tries one resource with try-lock;
                                         on a refusal it sleeps --backoff and tries again; a
                                         grant is unlocked at once, then it sleeps --backoff
                                         (or, with --greedy, tries again at once)
                          handoff and poll report the handoff latency (from the release to the
                          next holder's answer), grants per connection and their max/min;
                          they run closed loop at depth 1 on one thread
  --connections N         total connections, spread over the threads (default 64)
  --depth D               requests in flight per connection (default 1): pipelined over
                          HTTP/1.1 and RESP, concurrent streams over gRPC
  --threads T             client threads (default 1)
  --cpus LIST             pin thread i to LIST[i % len], e.g. 0,1 or 2-3 (default: no pinning)
  --duration T            measured time, e.g. 10s, 500ms, 1m (default 10s)
  --warmup T              unmeasured time before it (default 1s)
  --rate R                open loop: R requests/s in total, spread evenly over connections,
                          latency measured from each request's intended send time;
                          0 = closed loop, as fast as answers come (default 0)
  --pacer P               open loop: timer (default: sends go out at the runtime's 1 ms
                          timer ticks, in bursts) or spin (each send at its own time; the
                          client thread spins, so give it a CPU of its own; not with grpc
                          or etcd)
  --requests N            instead of --duration: stop after exactly N measured requests
                          (closed loop; for instruction counts), no warmup unless given
  --resources N           distinct resources for uncontended/churn (default 100000)
  --hot K                 hot resources for contended (default 16)
  --zipf S                Zipf exponent over the hot set (default 1.0)
  --expiry S              expiryInSeconds / EX for locks (default 10; churn default 1)
  --store NAME            lock store in the URL or the gRPC store_name (default lockstore)
  --path-prefix P         default /v1.0-alpha1 (lets it target another Dapr API version;
                          HTTP only)
  --wait-ms MS            handoff: the acquire's waitTimeoutMs (default 30000)
  --backoff MIN-MAX       poll: the sleep after a refusal, uniform in MIN..MAX ms (default
                          50-500)
  --seed N                mixed into every connection's random streams (Zipf picks, open-loop
                          phases, poll backoffs): runs with the same seed repeat (default 0)
  --greedy                poll: after its unlock a connection tries again at once instead of
                          sleeping --backoff first
  --check                 verify every answer is what the workload expects (for dlockd;
                          fixed-answer servers such as nginx answer the same bytes to all)
  --json                  print one JSON object with the results instead of the table
  -h, --help              this text

a Dapr sidecar (daprd, or dlockd in its place) is driven through its HTTP API port
(daprd --dapr-http-port, default 3500) or its HTTP socket (daprd --unix-domain-socket DIR
serves DIR/dapr-<app-id>-http.socket; dlockd -u DIR --app-id ID the same), with --store
naming one of its lock components (the metadata.name of a lock.* component):
  dlockd-loadgen --target 127.0.0.1:3500 --store lockstore --check
  dlockd-loadgen --target unix:/tmp/dapr/dapr-myapp-http.socket --store lockstore --check
  dlockd-loadgen --target 127.0.0.1:50001 --protocol grpc --store lockstore --check

etcd itself, with the transactions dlockd's lock.etcd store sends it (keys lock||<id>):
  dlockd-loadgen --target 127.0.0.1:2379,127.0.0.1:22379 --protocol etcd --check

exit status: 0 done (errors, if any, are in the report); 1 could not start (connect, pin,
runtime); 2 bad command line; 3 --check was given and some answer was wrong or missing.
";

pub const MAX_CONNECTIONS: u32 = 100_000;
pub const MAX_DEPTH: u32 = 4096;
pub const MAX_THREADS: u32 = 1024;
/// Long enough for any soak; short enough that a typo (`10h` for `10s`) is caught.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// daprd decodes expiryInSeconds as an int32.
pub const MAX_EXPIRY_S: u32 = i32::MAX as u32;
/// The longest acquire wait the client asks for (dlockd's own bound is `--max-wait`).
pub const MAX_WAIT_MS: u32 = 3_600_000;
/// The longest poll backoff.
pub const MAX_BACKOFF_MS: u32 = 60_000;
/// The churn check keeps 8 bytes a resource; this bounds it to 800 MB.
pub const MAX_RESOURCES: u64 = 100_000_000;
pub const MAX_NAME_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `--target` as given (the report names it).
    pub target: String,
    /// Where `--target` points: a TCP address to resolve, or a Unix socket's path (the
    /// first of `endpoints`).
    pub endpoint: Target,
    /// Every address of `--target`: one, or with `--protocol etcd` the members of a list
    /// (connection `i` goes to the `i % len`th).
    pub endpoints: Vec<Target>,
    pub protocol: Protocol,
    pub workload: Kind,
    pub connections: u32,
    pub depth: u32,
    pub threads: u32,
    pub cpus: Vec<usize>,
    pub duration: Duration,
    pub warmup: Duration,
    /// Requests/s in total; 0 is closed loop.
    pub rate: u64,
    /// How an open loop waits for each request's send time.
    pub pacer: Pacer,
    /// Stop after this many measured requests instead of after `duration`.
    pub requests: Option<u64>,
    pub resources: u64,
    pub hot: u32,
    pub zipf: f64,
    pub expiry_s: u32,
    pub store: String,
    pub path_prefix: String,
    pub check: bool,
    pub json: bool,
    /// handoff: the acquire's `waitTimeoutMs`.
    pub wait_ms: u32,
    /// poll: the backoff after a refusal, uniform in `[min, max]` ms.
    pub backoff_ms: (u32, u32),
    /// poll: after an unlock, try again at once rather than after a backoff.
    pub greedy: bool,
    pub seed: u64,
}

/// Where the server listens: `--target HOST:PORT` or `--target unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `HOST:PORT`, resolved once at start.
    Tcp(String),
    /// `unix:PATH`: a Unix domain stream socket, such as daprd's
    /// `dapr-<app-id>-http.socket`.
    Unix(PathBuf),
}

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
pub const MAX_UNIX_PATH_BYTES: usize = 107;

impl Config {
    /// The HTTP `Host` header: the target as given over TCP, `localhost` over a Unix socket
    /// (as Dapr's SDKs send it there).
    pub fn host(&self) -> &str {
        match self.endpoint {
            Target::Tcp(_) => &self.target,
            Target::Unix(_) => "localhost",
        }
    }
}

/// How an open loop waits for each request's send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacer {
    /// monoio's timer: sends go out at its 1 ms ticks.
    Timer,
    /// A spinning task: each send at its own time; the thread never sleeps (see `pacer`).
    Spin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    Unknown(String),
    MissingValue(&'static str),
    Invalid {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    MissingTarget,
    Conflict(&'static str),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Unknown(arg) => write!(f, "unknown argument {arg:?} (see --help)"),
            CliError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            CliError::Invalid { flag, value, why } => write!(f, "{flag} {value:?}: {why}"),
            CliError::MissingTarget => {
                f.write_str("--target HOST:PORT or --target unix:PATH is required")
            }
            CliError::Conflict(why) => f.write_str(why),
        }
    }
}

/// Parses the arguments after the program name. Flags take `--flag value` or `--flag=value`.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, CliError> {
    let mut target = None;
    let mut protocol = Protocol::Http;
    let mut workload = Kind::Uncontended;
    let mut connections = 64;
    let mut depth = 1;
    let mut threads = 1;
    let mut cpus = Vec::new();
    let mut duration = None;
    let mut warmup = None;
    let mut rate = 0;
    let mut pacer = Pacer::Timer;
    let mut requests = None;
    let mut resources = 100_000;
    let mut hot = 16;
    let mut zipf = 1.0;
    let mut expiry_s = None;
    let mut store = "lockstore".to_string();
    let mut path_prefix = "/v1.0-alpha1".to_string();
    let mut check = false;
    let mut json = false;
    let mut wait_ms = 30_000;
    let mut backoff_ms = (50, 500);
    let mut greedy = false;
    let mut seed = 0;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let flag: &'static str = match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--check" | "--json" | "--greedy" if inline.is_none() => {
                match name.as_str() {
                    "--check" => check = true,
                    "--json" => json = true,
                    _ => greedy = true,
                }
                continue;
            }
            "--target" => "--target",
            "--protocol" => "--protocol",
            "--workload" => "--workload",
            "--connections" => "--connections",
            "--depth" => "--depth",
            "--threads" => "--threads",
            "--cpus" => "--cpus",
            "--duration" => "--duration",
            "--warmup" => "--warmup",
            "--rate" => "--rate",
            "--pacer" => "--pacer",
            "--requests" => "--requests",
            "--resources" => "--resources",
            "--hot" => "--hot",
            "--zipf" => "--zipf",
            "--expiry" => "--expiry",
            "--store" => "--store",
            "--path-prefix" => "--path-prefix",
            "--wait-ms" => "--wait-ms",
            "--backoff" => "--backoff",
            "--seed" => "--seed",
            _ => return Err(CliError::Unknown(arg)),
        };
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or(CliError::MissingValue(flag))?,
        };
        match flag {
            // Read once the protocol is known: only etcd takes a list.
            "--target" => target = Some(value),
            "--protocol" => {
                protocol = match value.as_str() {
                    "http" => Protocol::Http,
                    "resp" => Protocol::Resp,
                    "grpc" => Protocol::Grpc,
                    "etcd" => Protocol::Etcd,
                    _ => return Err(invalid(flag, &value, "expected http, resp, grpc or etcd")),
                }
            }
            "--workload" => {
                workload = match value.as_str() {
                    "uncontended" => Kind::Uncontended,
                    "contended" => Kind::Contended,
                    "churn" => Kind::Churn,
                    "handoff" => Kind::Handoff,
                    "poll" => Kind::Poll,
                    _ => {
                        return Err(invalid(
                            flag,
                            &value,
                            "expected uncontended, contended, churn, handoff or poll",
                        ))
                    }
                }
            }
            "--connections" => connections = bounded(flag, &value, 1, MAX_CONNECTIONS)?,
            "--depth" => depth = bounded(flag, &value, 1, MAX_DEPTH)?,
            "--threads" => threads = bounded(flag, &value, 1, MAX_THREADS)?,
            "--cpus" => {
                cpus = parse_cpus(&value)
                    .ok_or_else(|| invalid(flag, &value, "expected a list such as 0,1 or 2-5"))?
            }
            "--duration" => duration = Some(parse_duration(flag, &value)?),
            "--warmup" => warmup = Some(parse_duration(flag, &value)?),
            "--rate" => rate = number(flag, &value)?,
            "--pacer" => {
                pacer = match value.as_str() {
                    "timer" => Pacer::Timer,
                    "spin" => Pacer::Spin,
                    _ => return Err(invalid(flag, &value, "expected timer or spin")),
                }
            }
            "--requests" => {
                let n: u64 = number(flag, &value)?;
                if n == 0 {
                    return Err(invalid(flag, &value, "must be at least 1"));
                }
                requests = Some(n);
            }
            "--resources" => {
                resources = number(flag, &value)?;
                if !(1..=MAX_RESOURCES).contains(&resources) {
                    return Err(invalid(flag, &value, "must be 1 to 100000000"));
                }
            }
            "--hot" => hot = bounded(flag, &value, 1, MAX_HOT)?,
            "--zipf" => {
                zipf = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && (0.0..=100.0).contains(s))
                    .ok_or_else(|| invalid(flag, &value, "expected a number from 0 to 100"))?;
            }
            "--expiry" => expiry_s = Some(bounded(flag, &value, 1, MAX_EXPIRY_S)?),
            "--store" => store = parse_name(flag, &value, false)?,
            "--path-prefix" => path_prefix = parse_name(flag, &value, true)?,
            "--wait-ms" => wait_ms = bounded(flag, &value, 1, MAX_WAIT_MS)?,
            "--seed" => seed = number(flag, &value)?,
            "--backoff" => {
                backoff_ms = parse_backoff(&value).ok_or_else(|| {
                    invalid(flag, &value, "expected MIN-MAX in ms, such as 50-500")
                })?
            }
            _ => unreachable!("every flag above is matched"),
        }
    }

    let target = target.ok_or(CliError::MissingTarget)?;
    let endpoints = if protocol == Protocol::Etcd && !target.starts_with("unix:") {
        target
            .split(',')
            .map(parse_target)
            .collect::<Result<Vec<_>, _>>()?
    } else if target.contains(',') && !target.starts_with("unix:") {
        return Err(CliError::Conflict(
            "--target: a comma-separated list of members is for --protocol etcd",
        ));
    } else {
        vec![parse_target(&target)?]
    };
    let endpoint = endpoints[0].clone();
    if requests.is_some() && duration.is_some() {
        return Err(CliError::Conflict(
            "--requests replaces --duration: give one of them",
        ));
    }
    if requests.is_some() && rate > 0 {
        return Err(CliError::Conflict(
            "--requests is closed loop: it cannot be combined with --rate",
        ));
    }
    if pacer == Pacer::Spin && rate == 0 {
        return Err(CliError::Conflict(
            "--pacer spin paces an open loop: it needs --rate",
        ));
    }
    if pacer == Pacer::Spin && matches!(protocol, Protocol::Grpc | Protocol::Etcd) {
        return Err(CliError::Conflict(
            "--pacer spin runs on the monoio client: it cannot be combined with --protocol grpc or etcd",
        ));
    }
    if threads > connections {
        return Err(CliError::Conflict(
            "--threads is larger than --connections: every thread needs a connection",
        ));
    }
    if workload.is_one_resource() {
        one_resource_conflicts(workload, protocol, depth, threads, rate, requests.is_some())?;
    } else if greedy {
        return Err(CliError::Conflict("--greedy is for --workload poll"));
    }
    if !matches!(workload, Kind::Contended | Kind::Handoff | Kind::Poll)
        && resources < u64::from(connections)
    {
        return Err(CliError::Conflict(
            "--resources is smaller than --connections: each connection needs its own resources",
        ));
    }
    let duration = duration.unwrap_or(Duration::from_secs(10));
    if requests.is_none() && duration.is_zero() {
        return Err(invalid("--duration", "0", "must be longer than zero"));
    }
    let warmup = warmup.unwrap_or(if requests.is_some() {
        Duration::ZERO
    } else {
        Duration::from_secs(1)
    });
    let expiry_s = expiry_s.unwrap_or(if workload == Kind::Churn { 1 } else { 10 });

    Ok(Command::Run(Box::new(Config {
        target,
        endpoint,
        endpoints,
        protocol,
        workload,
        connections,
        depth,
        threads,
        cpus,
        duration,
        warmup,
        rate,
        pacer,
        requests,
        resources,
        hot,
        zipf,
        expiry_s,
        store,
        path_prefix,
        check,
        json,
        wait_ms,
        backoff_ms,
        greedy,
        seed,
    })))
}

/// What handoff and poll cannot be combined with: each connection has one request at a time,
/// all on one thread (the handoff latency pairs one connection's unlock with another's grant
/// on one clock), closed loop; acquire is dlockd's HTTP route.
fn one_resource_conflicts(
    workload: Kind,
    protocol: Protocol,
    depth: u32,
    threads: u32,
    rate: u64,
    counted: bool,
) -> Result<(), CliError> {
    if workload == Kind::Handoff && protocol != Protocol::Http {
        return Err(CliError::Conflict(
            "--workload handoff sends dlockd's acquire: it needs --protocol http",
        ));
    }
    if matches!(protocol, Protocol::Grpc | Protocol::Etcd) {
        return Err(CliError::Conflict(
            "--workload poll runs over http or resp, not grpc or etcd",
        ));
    }
    if depth != 1 || threads != 1 {
        return Err(CliError::Conflict(
            "--workload handoff and poll run at --depth 1 on --threads 1",
        ));
    }
    if rate > 0 || counted {
        return Err(CliError::Conflict(
            "--workload handoff and poll are closed loop over --duration: no --rate or --requests",
        ));
    }
    Ok(())
}

/// `MIN-MAX` in ms, MIN at most MAX, MAX at most [`MAX_BACKOFF_MS`].
fn parse_backoff(value: &str) -> Option<(u32, u32)> {
    let (a, b) = value.split_once('-')?;
    let (a, b) = (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?);
    (a <= b && b <= MAX_BACKOFF_MS).then_some((a, b))
}

fn invalid(flag: &'static str, value: &str, why: &'static str) -> CliError {
    CliError::Invalid {
        flag,
        value: value.to_string(),
        why,
    }
}

fn number<T: std::str::FromStr>(flag: &'static str, value: &str) -> Result<T, CliError> {
    value
        .parse()
        .map_err(|_| invalid(flag, value, "expected a whole number"))
}

fn bounded(flag: &'static str, value: &str, min: u32, max: u32) -> Result<u32, CliError> {
    let n: u64 = number(flag, value)?;
    u32::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| invalid(flag, value, "out of range (see --help for the limits)"))
}

/// `HOST:PORT` (a port is required; the host goes into the Host header as given) or
/// `unix:PATH` (a path that fits a Unix socket address).
fn parse_target(value: &str) -> Result<Target, CliError> {
    if let Some(path) = value.strip_prefix("unix:") {
        if path.is_empty() || path.contains('\0') {
            return Err(invalid("--target", value, "expected unix:PATH with a path"));
        }
        if path.len() > MAX_UNIX_PATH_BYTES {
            return Err(invalid(
                "--target",
                value,
                "a Unix socket path holds at most 107 bytes",
            ));
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let ok = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
        && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(Target::Tcp(value.to_string()))
    } else {
        Err(invalid(
            "--target",
            value,
            "expected HOST:PORT or unix:PATH",
        ))
    }
}

/// Store names and prefixes go into the request line verbatim, so they must be visible ASCII
/// with no space; a prefix starts with `/` (or is empty).
fn parse_name(flag: &'static str, value: &str, prefix: bool) -> Result<String, CliError> {
    let visible = value.len() <= MAX_NAME_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    let shaped = if prefix {
        value.is_empty() || (value.starts_with('/') && !value.ends_with('/'))
    } else {
        !value.is_empty() && !value.contains('/')
    };
    if visible && shaped {
        Ok(value.to_string())
    } else if prefix {
        Err(invalid(
            flag,
            value,
            "expected a path such as /v1.0-alpha1 (visible ASCII, no trailing /)",
        ))
    } else {
        Err(invalid(
            flag,
            value,
            "expected a name of visible ASCII without / ? #",
        ))
    }
}

/// `0,1`, `2-5`, `0,2-3`: core numbers, each below 4096.
fn parse_cpus(value: &str) -> Option<Vec<usize>> {
    const MAX_CPU: usize = 4096;
    let mut cpus = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                if a > b || b >= MAX_CPU {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => {
                let cpu = part.parse::<usize>().ok()?;
                if cpu >= MAX_CPU {
                    return None;
                }
                cpus.push(cpu);
            }
        }
        if cpus.len() > MAX_CPU {
            return None;
        }
    }
    Some(cpus)
}

/// `10s`, `500ms`, `250us`, `1m`, `1h`, `2.5s`, or a bare number of seconds.
fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, CliError> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(invalid(
                flag,
                value,
                "expected a duration such as 10s or 500ms",
            ))
        }
    };
    number
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| {
            invalid(
                flag,
                value,
                "expected a duration from 0 to 24h, such as 10s",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, CliError> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(c) => Ok(*c),
            Command::Help => panic!("unexpected help"),
        }
    }

    // Only --target is required; everything else has the documented default.
    #[test]
    fn defaults() {
        let c = run(&["--target", "127.0.0.1:3511"]).unwrap();
        assert_eq!(c.target, "127.0.0.1:3511");
        assert_eq!(c.protocol, Protocol::Http);
        assert_eq!(c.workload, Kind::Uncontended);
        assert_eq!((c.connections, c.depth, c.threads), (64, 1, 1));
        assert!(c.cpus.is_empty());
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(c.warmup, Duration::from_secs(1));
        assert_eq!((c.rate, c.requests), (0, None));
        assert_eq!((c.resources, c.hot, c.zipf), (100_000, 16, 1.0));
        assert_eq!(c.expiry_s, 10);
        assert_eq!(c.store, "lockstore");
        assert_eq!(c.path_prefix, "/v1.0-alpha1");
        assert!(!c.check && !c.json);
        assert_eq!(
            (c.wait_ms, c.backoff_ms, c.greedy),
            (30_000, (50, 500), false)
        );
        assert_eq!(c.seed, 0);
    }

    // handoff and poll take their own flags, and one connection per resource is not needed.
    #[test]
    fn one_resource_workloads() {
        let c = run(&[
            "--target",
            "h:1",
            "--workload",
            "handoff",
            "--connections",
            "8",
            "--resources",
            "1",
            "--wait-ms",
            "20000",
        ])
        .unwrap();
        assert_eq!(
            (c.workload, c.wait_ms, c.connections),
            (Kind::Handoff, 20_000, 8)
        );
        let c = run(&[
            "--target",
            "h:1",
            "--workload=poll",
            "--protocol",
            "resp",
            "--backoff",
            "5-10",
            "--greedy",
            "--seed",
            "3",
        ])
        .unwrap();
        assert_eq!(c.seed, 3);
        assert_eq!(
            (c.workload, c.backoff_ms, c.greedy),
            (Kind::Poll, (5, 10), true)
        );
        assert_eq!(parse_backoff("0-0"), Some((0, 0)));
        assert_eq!(parse_backoff("10-5"), None);
        assert_eq!(parse_backoff("5-60001"), None);
        assert_eq!(parse_backoff("5"), None);
    }

    // Every flag is read, in both spellings.
    #[test]
    fn every_flag_is_read() {
        let c = run(&[
            "--target=h:1",
            "--protocol",
            "resp",
            "--workload=contended",
            "--connections",
            "8",
            "--depth=16",
            "--threads",
            "2",
            "--cpus",
            "0,2-3",
            "--duration",
            "2.5s",
            "--warmup=500ms",
            "--rate",
            "1000",
            "--resources",
            "64",
            "--hot",
            "4",
            "--zipf",
            "0.5",
            "--expiry",
            "30",
            "--store",
            "s1",
            "--path-prefix",
            "/v1.0-beta1",
            "--check",
            "--json",
        ])
        .unwrap();
        assert_eq!(c.target, "h:1");
        assert_eq!(c.protocol, Protocol::Resp);
        assert_eq!(c.workload, Kind::Contended);
        assert_eq!((c.connections, c.depth, c.threads), (8, 16, 2));
        assert_eq!(c.cpus, vec![0, 2, 3]);
        assert_eq!(c.duration, Duration::from_millis(2500));
        assert_eq!(c.warmup, Duration::from_millis(500));
        assert_eq!(c.rate, 1000);
        assert_eq!((c.resources, c.hot, c.zipf), (64, 4, 0.5));
        assert_eq!(c.expiry_s, 30);
        assert_eq!(
            (c.store.as_str(), c.path_prefix.as_str()),
            ("s1", "/v1.0-beta1")
        );
        assert!(c.check && c.json);
    }

    // --protocol grpc is read, with the other flags as for http.
    #[test]
    fn grpc_is_a_protocol() {
        let c = run(&[
            "--target",
            "h:1",
            "--protocol",
            "grpc",
            "--depth",
            "16",
            "--rate",
            "100",
        ])
        .unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!((c.depth, c.rate, c.pacer), (16, 100, Pacer::Timer));
        assert!(HELP.contains("grpc"));
    }

    // --protocol etcd takes one member or a comma-separated list of them, in either order of
    // the flags; the other protocols take one address.
    #[test]
    fn etcd_is_a_protocol_with_several_members() {
        let c = run(&["--target", "127.0.0.1:2379", "--protocol", "etcd"]).unwrap();
        assert_eq!(c.protocol, Protocol::Etcd);
        assert_eq!(c.endpoints, vec![Target::Tcp("127.0.0.1:2379".into())]);
        assert_eq!(c.endpoint, c.endpoints[0]);
        let c = run(&[
            "--protocol=etcd",
            "--target",
            "127.0.0.1:2379,127.0.0.1:22379,localhost:32379",
            "--depth",
            "16",
        ])
        .unwrap();
        assert_eq!(
            c.endpoints,
            vec![
                Target::Tcp("127.0.0.1:2379".into()),
                Target::Tcp("127.0.0.1:22379".into()),
                Target::Tcp("localhost:32379".into()),
            ]
        );
        assert_eq!(c.endpoint, Target::Tcp("127.0.0.1:2379".into()));
        assert_eq!(c.target, "127.0.0.1:2379,127.0.0.1:22379,localhost:32379");
        assert_eq!(c.protocol.name(), "etcd");
        let c = run(&["--target", "h:1", "--protocol", "grpc"]).unwrap();
        assert_eq!(c.endpoints, vec![Target::Tcp("h:1".into())]);
        assert!(HELP.contains("--protocol etcd"));

        for (args, why) in [
            (&["--target", "h:1,h:2"][..], "for --protocol etcd"),
            (
                &["--target", "h:1,h:2", "--protocol", "grpc"][..],
                "for --protocol etcd",
            ),
            (&["--target", "h:1,", "--protocol", "etcd"][..], "HOST:PORT"),
            (
                &["--target", "h:1,nohost", "--protocol", "etcd"][..],
                "HOST:PORT",
            ),
            (
                &[
                    "--target",
                    "h:1",
                    "--protocol",
                    "etcd",
                    "--workload",
                    "poll",
                ][..],
                "not grpc or etcd",
            ),
            (
                &[
                    "--target",
                    "h:1",
                    "--protocol",
                    "etcd",
                    "--rate",
                    "9",
                    "--pacer",
                    "spin",
                ][..],
                "grpc or etcd",
            ),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.to_string().contains(why), "{args:?} gave {e}");
        }
    }

    // Churn defaults to a 1 s expiry; --requests drops the default warmup.
    #[test]
    fn mode_dependent_defaults() {
        let churn = run(&["--target", "h:1", "--workload", "churn"]).unwrap();
        assert_eq!(churn.expiry_s, 1);
        let counted = run(&["--target", "h:1", "--requests", "1000"]).unwrap();
        assert_eq!(counted.requests, Some(1000));
        assert_eq!(counted.warmup, Duration::ZERO);
        let warmed = run(&["--target", "h:1", "--requests", "10", "--warmup", "1s"]).unwrap();
        assert_eq!(warmed.warmup, Duration::from_secs(1));
    }

    // Help wins wherever it appears.
    #[test]
    fn help_is_recognised() {
        assert_eq!(parse(["--help".to_string()]), Ok(Command::Help));
        assert_eq!(
            parse(["--target".into(), "h:1".into(), "-h".into()]),
            Ok(Command::Help)
        );
        assert!(HELP.contains("--path-prefix"));
    }

    // Bad values and inconsistent combinations are refused with a message naming the flag.
    #[test]
    fn refuses_bad_input() {
        let bad: &[&[&str]] = &[
            &[],
            &["--target"],
            &["--target", "nohost"],
            &["--target", "h:0"],
            &["--target", "h:99999"],
            &["--target", "h:1", "--bogus"],
            &["--target", "h:1", "--protocol", "grpc2"],
            &["--target", "h:1", "--protocol", "GRPC"],
            &[
                "--target",
                "h:1",
                "--protocol",
                "grpc",
                "--rate",
                "10",
                "--pacer",
                "spin",
            ],
            &["--target", "h:1", "--workload", "x"],
            &["--target", "h:1", "--connections", "0"],
            &["--target", "h:1", "--connections", "-1"],
            &["--target", "h:1", "--depth", "5000"],
            &["--target", "h:1", "--threads", "2", "--connections", "1"],
            &["--target", "h:1", "--cpus", "1-0"],
            &["--target", "h:1", "--cpus", "a"],
            &["--target", "h:1", "--duration", "10x"],
            &["--target", "h:1", "--duration", "0s"],
            &["--target", "h:1", "--duration", "48h"],
            &["--target", "h:1", "--rate", "1.5"],
            &["--target", "h:1", "--requests", "0"],
            &["--target", "h:1", "--requests", "5", "--duration", "1s"],
            &["--target", "h:1", "--requests", "5", "--rate", "10"],
            &["--target", "h:1", "--resources", "10"],
            &["--target", "h:1", "--hot", "0"],
            &["--target", "h:1", "--zipf", "-1"],
            &["--target", "h:1", "--zipf", "NaN"],
            &["--target", "h:1", "--expiry", "0"],
            &["--target", "h:1", "--expiry", "2147483648"],
            &["--target", "h:1", "--store", "a b"],
            &["--target", "h:1", "--store", "a/b"],
            &["--target", "h:1", "--store", ""],
            &["--target", "h:1", "--path-prefix", "v1"],
            &["--target", "h:1", "--path-prefix", "/v1/"],
            &["--target", "h:1", "--check=yes"],
            &["--target", "h:1", "--greedy"],
            &[
                "--target",
                "h:1",
                "--workload",
                "handoff",
                "--protocol",
                "resp",
            ],
            &[
                "--target",
                "h:1",
                "--workload",
                "poll",
                "--protocol",
                "grpc",
            ],
            &["--target", "h:1", "--workload", "poll", "--depth", "2"],
            &["--target", "h:1", "--workload", "handoff", "--threads", "2"],
            &["--target", "h:1", "--workload", "poll", "--rate", "10"],
            &["--target", "h:1", "--workload", "poll", "--requests", "10"],
            &["--target", "h:1", "--workload", "poll", "--backoff", "9-8"],
            &["--target", "h:1", "--workload", "handoff", "--wait-ms", "0"],
        ];
        for args in bad {
            let got = parse(args.iter().map(|s| s.to_string()));
            assert!(got.is_err(), "{args:?} gave {got:?}");
            assert!(!got.unwrap_err().to_string().is_empty());
        }
    }

    // --target is HOST:PORT over TCP or unix:PATH for a Unix socket (a Dapr sidecar's
    // dapr-<app-id>-http.socket); over a socket the Host header is localhost.
    #[test]
    fn targets_tcp_and_unix() {
        let c = run(&["--target", "127.0.0.1:3500"]).unwrap();
        assert_eq!(c.endpoint, Target::Tcp("127.0.0.1:3500".into()));
        assert_eq!(c.host(), "127.0.0.1:3500");
        let c = run(&["--target", "localhost:3500", "--protocol", "grpc"]).unwrap();
        assert_eq!(c.endpoint, Target::Tcp("localhost:3500".into()));

        let path = "/tmp/dapr/dapr-myapp-http.socket";
        let c = run(&["--target", &format!("unix:{path}")]).unwrap();
        assert_eq!(c.endpoint, Target::Unix(PathBuf::from(path)));
        assert_eq!(c.target, format!("unix:{path}"));
        assert_eq!(c.host(), "localhost");
        // Every protocol, and the --flag=value spelling (the path may hold '=' and ':').
        let c = run(&["--target=unix:rel/a=b:c.sock", "--protocol", "resp"]).unwrap();
        assert_eq!(c.endpoint, Target::Unix(PathBuf::from("rel/a=b:c.sock")));
        let c = run(&["--target", "unix:/s", "--protocol", "grpc"]).unwrap();
        assert_eq!(c.endpoint, Target::Unix(PathBuf::from("/s")));

        // The longest path a socket address holds, and one byte more.
        let longest = format!("/{}", "a".repeat(MAX_UNIX_PATH_BYTES - 1));
        let c = run(&["--target", &format!("unix:{longest}")]).unwrap();
        assert_eq!(c.endpoint, Target::Unix(PathBuf::from(&longest)));
        let too_long = format!("unix:{longest}a");
        let e = run(&["--target", &too_long]).unwrap_err();
        assert!(e.to_string().contains("107 bytes"), "{e}");

        for bad in [
            "unix:",
            "unix:a\0b",
            "unix",
            "h",
            "h:",
            ":1",
            "h:0",
            "h:65536",
            "h :1",
        ] {
            let e = run(&["--target", bad]).unwrap_err();
            assert!(
                matches!(
                    e,
                    CliError::Invalid {
                        flag: "--target",
                        ..
                    }
                ),
                "{bad:?} gave {e:?}"
            );
        }
        let e = run(&[]).unwrap_err();
        assert_eq!(e, CliError::MissingTarget);
        assert!(e.to_string().contains("unix:PATH"));
        // --help says how to reach a Dapr sidecar either way, and with which store.
        assert!(HELP.contains("--target 127.0.0.1:3500 --store lockstore"));
        assert!(HELP.contains("--target unix:/tmp/dapr/dapr-myapp-http.socket"));
    }

    // A contended run needs no per-connection resources, so a small --resources is fine there.
    #[test]
    fn contended_ignores_resources() {
        let c = run(&[
            "--target",
            "h:1",
            "--workload",
            "contended",
            "--resources",
            "1",
        ])
        .unwrap();
        assert_eq!(c.resources, 1);
    }

    // Duration units.
    #[test]
    fn duration_units() {
        let d = |s: &str| parse_duration("--duration", s).unwrap();
        assert_eq!(d("10"), Duration::from_secs(10));
        assert_eq!(d("1m"), Duration::from_secs(60));
        assert_eq!(d("1h"), Duration::from_secs(3600));
        assert_eq!(d("250us"), Duration::from_micros(250));
        assert_eq!(d("0"), Duration::ZERO);
        assert!(parse_duration("--duration", "").is_err());
        assert!(parse_duration("--duration", "s").is_err());
    }
}
