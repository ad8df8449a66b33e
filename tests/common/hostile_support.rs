//! Support for the hostile-client tests (tests/hostile.rs): the real `dlockd` binary in a child
//! process, what /proc says about it (resident and anonymous memory, open descriptors), a
//! well-behaved client that measures its own latency before and during an attack, and
//! raw-socket helpers.
//!
//! Ground rules: every wait has a deadline and waits on an event (a read with a timeout, or a
//! condition polled until it holds); nothing sleeps and assumes something happened meanwhile.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{lock_body, post, unlock_body, Response, LOCKED};

/// Flags every hostile test starts from (later flags win): two workers as on a 2-core
/// machine, small limits and short timeouts so each attack plays out in about a second.
pub const BASE_FLAGS: &[&str] = &[
    "--workers",
    "2",
    "--max-header-bytes",
    "2KiB",
    "--max-body-bytes",
    "4KiB",
    "--header-timeout",
    "1s",
    "--body-timeout",
    "1s",
    "--idle-timeout",
    "5s",
    "--max-connections",
    "512",
];

/// How much the server's resident memory may grow over an attack, measured once the attack's
/// connections are closed (and, for the client that never reads, while it runs). The debug
/// server needs about 29 MiB at rest and grows by at most 2 MiB over the attacks here;
/// buffering an attacker's bytes without bound would pass this within a fraction of a second.
pub const RSS_GROWTH_BOUND: u64 = 16 * 1024 * 1024;
/// The well-behaved client's p99 during an attack must stay under the larger of this many
/// times its p99 before the attack and `LATENCY_FLOOR`: loose enough for a loaded 2-core VM
/// running a debug build, tight enough to catch a worker stuck behind an attacker.
pub const LATENCY_FACTOR: u32 = 10;
pub const LATENCY_FLOOR: Duration = Duration::from_millis(50);
/// No single request of the well-behaved client may take this long during an attack. The
/// attacks' timeouts are 1 s, so a worker wedged until a timeout fires is caught.
pub const LATENCY_MAX: Duration = Duration::from_millis(500);
/// The fewest requests the well-behaved client must complete during an attack for its
/// latency figures to say anything.
pub const MIN_SAMPLES: usize = 20;
/// How long the server may take to close the attack's connections once the test is done with
/// them (an error answer lingers up to 0.5 s; a blocked write up to the idle timeout).
pub const SETTLE: Duration = Duration::from_secs(8);

/// Allocator settings under which the server's anonymous resident memory is what it holds, to
/// the 4 KiB page, whenever it is read. By default its allocator (mimalloc) returns a freed
/// page to the kernel only once it has stayed free for a second, and only when it next looks,
/// while a thread that needs pages meanwhile may take fresh ones; and it asks for transparent
/// huge pages, so its memory is resident in 2 MiB steps, grown by faults and by the kernel's
/// background collapsing. Either way the server's resident memory counts, for an unknown while,
/// memory it no longer holds or never touched. With these, every freed page goes back at once
/// and pages are 4 KiB: what the server allocates and holds is unchanged, only when and in what
/// units the kernel backs it.
pub const ALLOCATOR_FOR_MEASURING: &[(&str, &str)] =
    &[("MIMALLOC_PURGE_DELAY", "0"), ("MIMALLOC_ALLOW_THP", "0")];

/// The hostile tests run one at a time: each measures how one attack affects another client's
/// latency, and two attacks at once on two cores would measure each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The real `dlockd` binary, listening on an ephemeral loopback port. Killed on drop; its
/// output is printed if the test fails.
pub struct Dlockd {
    child: Child,
    pub addr: SocketAddr,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Dlockd {
    /// Starts `dlockd --listen 127.0.0.1:0 <args>` and learns its address from the start-up
    /// line, as tests/binary.rs does.
    pub fn spawn(args: &[&str]) -> Dlockd {
        Dlockd::spawn_with_env(args, &[])
    }

    /// As [`Dlockd::spawn`], with `env` set in the server's environment. The allocator's
    /// settings come only from `env`, never from the tests' own environment.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Dlockd {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlockd"));
        for (name, _) in std::env::vars() {
            if name.starts_with("DLOCKD_")
                || name.starts_with("DAPR_")
                || name.starts_with("MIMALLOC_")
            {
                cmd.env_remove(name);
            }
        }
        cmd.envs(env.iter().copied())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn dlockd");
        let output = Arc::new(Mutex::new(Vec::new()));
        // Both pipes are drained for the server's whole life: a full pipe would block the
        // server on its next log line and look like a wedged server.
        let stderr = child.stderr.take().expect("stderr");
        drain(stderr, output.clone());
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("start-up line");
        drain(stdout, output.clone());
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            let log = output.lock().map(|o| o.clone()).unwrap_or_default();
            panic!(
                "dlockd did not start: start-up line {line:?}, output {:?}",
                String::from_utf8_lossy(&log)
            );
        };
        Dlockd {
            child,
            addr,
            output,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_kib(&["VmRSS"]) * 1024
    }

    /// The server's anonymous memory, in bytes: resident (RssAnon) or swapped out (VmSwap).
    /// Its heap and its threads' stacks; not the pages of its binary and libraries, which the
    /// kernel reads in from the page cache as code first runs and may drop again under memory
    /// pressure.
    pub fn anon_bytes(&self) -> u64 {
        self.status_kib(&["RssAnon", "VmSwap"]) * 1024
    }

    /// The sum of `fields` (in kB) of /proc/<pid>/status.
    fn status_kib(&self, fields: &[&str]) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status of dlockd");
        fields
            .iter()
            .map(|field| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
            })
            .sum()
    }

    /// The server's open file descriptors: listeners, rings, and one per connection.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/<pid>/fd of dlockd")
            .count()
    }

    /// Panics with the server's exit status and output if it is no longer running.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "dlockd exited during the attack ({status}); output: {}",
                self.output_text()
            );
        }
    }

    pub fn output_text(&self) -> String {
        let log = self.output.lock().map(|o| o.clone()).unwrap_or_default();
        String::from_utf8_lossy(&log).into_owned()
    }
}

impl Drop for Dlockd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("dlockd output:\n{}", self.output_text());
        }
    }
}

fn drain(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut out) = into.lock() {
                // The log is for diagnosis only; keep its head and stay bounded.
                if out.len() < 1 << 20 {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        }
    });
}

/// Polls `check` until it returns `Some`, or panics after `within` saying what was awaited
/// and the last state seen.
#[track_caller]
pub fn wait_for<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A blocking HTTP/1.1 connection that reads whole responses with a deadline.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends `request` and reads one response within `within`.
    pub fn request(&mut self, request: &[u8], within: Duration) -> Result<Response, String> {
        self.stream
            .write_all(request)
            .map_err(|e| format!("write: {e}"))?;
        self.read_response(within)
    }

    /// Reads one response within `within`.
    pub fn read_response(&mut self, within: Duration) -> Result<Response, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((resp, used)) = parse_response(&self.buf)? {
                self.buf.drain(..used);
                return Ok(resp);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no complete response within {within:?}"));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("no complete response within {within:?}"))
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// Parses one response from the front of `buf`: `Ok(None)` if it is not all there yet.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "not an HTTP response ({e}): {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
            ))
        }
    };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let status = parsed.code.unwrap_or(0);
    let len: usize = match headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        Some((_, v)) => v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?,
        None => 0,
    };
    if buf.len() < head_len + len {
        return Ok(None);
    }
    let body = buf[head_len..head_len + len].to_vec();
    Ok(Some((
        Response {
            status,
            headers,
            body,
        },
        head_len + len,
    )))
}

/// Every complete response at the front of `bytes`, and what is left after them.
pub fn parse_all(bytes: &[u8]) -> (Vec<Response>, &[u8]) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Some((resp, used))) = parse_response(&bytes[at..]) {
        out.push(resp);
        at += used;
    }
    (out, &bytes[at..])
}

/// How a connection's reading ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The server closed it (end of stream).
    Eof,
    /// The server reset it.
    Reset,
    /// Still open when the deadline passed.
    Open,
}

/// Reads everything until the server closes the connection or `within` passes.
pub fn read_to_end(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, End) {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, End::Open);
        }
        if stream.set_read_timeout(Some(left)).is_err() {
            return (out, End::Reset);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return (out, End::Eof),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (out, End::Open)
            }
            Err(_) => return (out, End::Reset),
        }
    }
}

/// Connects, sends `bytes` in one write, and reads until the server closes (at most 5 s).
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, End) {
    let mut s = TcpStream::connect(addr).expect("connect to dlockd");
    s.set_nodelay(true).expect("nodelay");
    // A refused request may be refused before all of it is written; what matters is the
    // answer, read below.
    let _ = s.write_all(bytes);
    read_to_end(&mut s, Duration::from_secs(5))
}

/// Makes `close` send a reset instead of a FIN (SO_LINGER with a zero timeout).
#[allow(unsafe_code)]
pub fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor, and a pointer to a `linger` that outlives the call,
    // with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        std::io::Error::last_os_error()
    );
}

/// Raises this process's soft RLIMIT_NOFILE to `want`, or as far as the hard limit allows.
/// Returns the soft limit in force afterwards. Children (the server) inherit it.
#[allow(unsafe_code)]
pub fn raise_nofile(want: libc::rlim_t) -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit write or read one `rlimit` that lives on this frame.
    unsafe {
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim),
            0,
            "getrlimit"
        );
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim),
                0,
                "setrlimit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    lim.rlim_cur
}

/// The `q` quantile (0..=1) of `samples`, which must not be empty.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A well-behaved client: one keep-alive connection taking and releasing locks on resources
/// of both shards at a steady pace, checking every answer and timing every request.
pub struct Good {
    conn: Conn,
    round: u64,
}

/// How long one request of the well-behaved client may take before it counts as lost.
const GOOD_TIMEOUT: Duration = Duration::from_secs(5);
/// Distinct resources the well-behaved client cycles through: enough that its requests hit
/// both workers' shards (half of them are forwarded).
const GOOD_RESOURCES: u64 = 16;

impl Good {
    pub fn connect(addr: SocketAddr) -> Good {
        let conn = Conn::connect(addr).expect("the well-behaved client connects");
        Good { conn, round: 0 }
    }

    /// One request (a lock, or the unlock of the lock just taken) and its checked answer.
    pub fn step(&mut self) -> Result<Duration, String> {
        let resource = format!("good-{}", (self.round / 2) % GOOD_RESOURCES);
        let (request, want) = if self.round.is_multiple_of(2) {
            (
                post(
                    "/v1.0-alpha1/lock/lockstore",
                    &lock_body(&resource, "good", 60),
                ),
                LOCKED,
            )
        } else {
            (
                post(
                    "/v1.0-alpha1/unlock/lockstore",
                    &unlock_body(&resource, "good"),
                ),
                r#"{"status":0}"#,
            )
        };
        let t = Instant::now();
        let r = self
            .conn
            .request(request.as_bytes(), GOOD_TIMEOUT)
            .map_err(|e| format!("well-behaved request {}: {e}", self.round))?;
        let took = t.elapsed();
        if r.status != 200 || r.body != want.as_bytes() {
            return Err(format!(
                "well-behaved request {} on {resource}: got {} {:?}, want 200 {want}",
                self.round,
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        self.round += 1;
        Ok(took)
    }

    /// Checked requests, one per [`PACE`] tick (or at once when the last answer came after
    /// the tick), until `n` are done or `stop` is set; each timed from its send to its answer.
    /// The steady pace spreads the samples evenly over the attack, so a server slow for part
    /// of it shows in the tail rather than hiding between bursts of fast answers.
    pub fn paced(&mut self, n: usize, stop: &AtomicBool) -> Result<Vec<Duration>, String> {
        let mut samples = Vec::new();
        let mut next = Instant::now();
        while samples.len() < n && !stop.load(Ordering::Relaxed) {
            let early = next.saturating_duration_since(Instant::now());
            if !early.is_zero() {
                // The client's own pace; the answer itself is awaited by a read.
                std::thread::sleep(early);
            }
            next = Instant::now() + PACE;
            samples.push(self.step()?);
        }
        Ok(samples)
    }

    /// `n` paced requests and their latencies.
    pub fn sample(&mut self, n: usize) -> Result<Vec<Duration>, String> {
        self.paced(n, &AtomicBool::new(false))
    }
}

/// The well-behaved client's pace: a request per millisecond at most (a debug build answers
/// one in about 150 µs on an idle machine).
pub const PACE: Duration = Duration::from_millis(1);

/// One attack against one server, with the well-behaved client measured around it.
pub struct Scene {
    name: String,
    pub server: Dlockd,
    good: Option<Good>,
    baseline: Vec<Duration>,
    during: Vec<Duration>,
    during_wall: Duration,
    fds_before: usize,
    rss_before: u64,
    rss_bound: u64,
    latency_floor: Duration,
}

impl Scene {
    /// Starts a server with [`BASE_FLAGS`] then `flags`, connects the well-behaved client,
    /// warms it up, and measures its baseline latency and the server's resting descriptors
    /// and memory.
    pub fn new(name: &str, flags: &[&str]) -> Scene {
        Scene::with_env(name, flags, &[])
    }

    /// As [`Scene::new`], with `env` set in the server's environment.
    pub fn with_env(name: &str, flags: &[&str], env: &[(&str, &str)]) -> Scene {
        let args: Vec<&str> = BASE_FLAGS.iter().chain(flags).copied().collect();
        let server = Dlockd::spawn_with_env(&args, env);
        let mut good = Good::connect(server.addr);
        good.sample(50).expect("warm-up of the well-behaved client");
        let baseline = good
            .sample(250)
            .expect("baseline of the well-behaved client");
        Scene {
            name: name.to_string(),
            fds_before: server.open_fds(),
            rss_before: server.rss_bytes(),
            rss_bound: RSS_GROWTH_BOUND,
            latency_floor: LATENCY_FLOOR,
            server,
            good: Some(good),
            baseline,
            during: Vec::new(),
            during_wall: Duration::ZERO,
        }
    }

    pub fn rss_before(&self) -> u64 {
        self.rss_before
    }

    /// Replaces [`RSS_GROWTH_BOUND`] for the check after this attack.
    pub fn allow_rss_growth(&mut self, bound: u64) {
        self.rss_bound = bound;
    }

    /// Replaces [`LATENCY_FLOOR`] for this attack.
    pub fn allow_latency_floor(&mut self, floor: Duration) {
        self.latency_floor = floor;
    }

    /// Runs `attack` while the well-behaved client keeps taking and releasing locks on its
    /// own connection in another thread; returns what `attack` returns.
    pub fn attack<R>(&mut self, attack: impl FnOnce(&Dlockd) -> R) -> R {
        let good = self.good.take().expect("one attack per scene");
        let stop = Arc::new(AtomicBool::new(false));
        let probe: JoinHandle<(Good, Result<Vec<Duration>, String>)> = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut good = good;
                let samples = good.paced(usize::MAX, &stop);
                (good, samples)
            })
        };
        let t = Instant::now();
        let result = attack(&self.server);
        self.during_wall = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (good, samples) = probe.join().expect("the well-behaved client's thread");
        self.during = samples.unwrap_or_else(|e| {
            panic!(
                "[{}] the well-behaved client failed during the attack: {e}",
                self.name
            )
        });
        self.good = Some(good);
        result
    }

    /// After the test closed its attack connections: the server closes its side too (its
    /// descriptors fall back to where they were), its memory is back within
    /// [`RSS_GROWTH_BOUND`], it is still running, and the well-behaved client's latency during
    /// the attack stayed within bounds and it is still served.
    pub fn finish(mut self) {
        let name = self.name.clone();
        let fds_before = self.fds_before;
        let server = &self.server;
        wait_for(
            &format!("[{name}] the server closes the attack's connections"),
            SETTLE,
            || {
                let fds = server.open_fds();
                if fds <= fds_before {
                    Ok(())
                } else {
                    Err(format!(
                        "{fds} open descriptors, {fds_before} before the attack"
                    ))
                }
            },
        );
        let rss_after = self.server.rss_bytes();
        self.server.assert_running();

        let base_p99 = quantile(&self.baseline, 0.99);
        let n = self.during.len();
        assert!(
            n >= MIN_SAMPLES,
            "[{name}] the well-behaved client completed only {n} requests during the {:?} attack",
            self.during_wall
        );
        let p50 = quantile(&self.during, 0.5);
        let p99 = quantile(&self.during, 0.99);
        let max = quantile(&self.during, 1.0);
        let bound = (base_p99 * LATENCY_FACTOR).max(self.latency_floor);
        eprintln!(
            "[{name}] well-behaved latency: baseline p50 {:?} p99 {:?}; during ({n} requests in \
             {:?}) p50 {p50:?} p99 {p99:?} max {max:?}; RSS {} KiB before, {} KiB after \
             ({:+} KiB)",
            quantile(&self.baseline, 0.5),
            base_p99,
            self.during_wall,
            self.rss_before / 1024,
            rss_after / 1024,
            (rss_after as i64 - self.rss_before as i64) / 1024,
        );
        assert!(
            p99 < bound,
            "[{name}] well-behaved p99 during the attack {p99:?} >= {bound:?} (baseline p99 \
             {base_p99:?})"
        );
        assert!(
            max < LATENCY_MAX,
            "[{name}] a well-behaved request took {max:?} during the attack (bound {LATENCY_MAX:?})"
        );
        assert!(
            rss_after < self.rss_before + self.rss_bound,
            "[{name}] RSS grew from {} KiB to {} KiB over the attack (bound +{} KiB)",
            self.rss_before / 1024,
            rss_after / 1024,
            self.rss_bound / 1024
        );
        let mut good = self.good.take().expect("the well-behaved client");
        good.sample(20)
            .unwrap_or_else(|e| panic!("[{name}] after the attack: {e}"));
    }
}

impl From<TcpStream> for Conn {
    fn from(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }
}
