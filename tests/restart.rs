//! Restart safety of the real `dlockd` binary with `--data-dir`: through SIGTERM restarts every
//! acknowledged lease is kept and its time keeps running while the server is down; through
//! kill -9 the new process refuses grants until every lease the dead one acknowledged has
//! ended; fencing tokens only grow, across both; damaged snapshots are refused whole; a data
//! dir serves one process at a time; a grant is answered only once the data dir durably
//! covers it (the persister thread held back under ptrace).
//!
//! Each test starts its own processes (`--listen 127.0.0.1:0`, so its own ports) on its own
//! temporary data dir, removed at the end. Both pipes of every child are drained for its whole
//! life, and stderr is kept for assertions and for the failure message.
//!
//! Ground rules: every wait has a deadline and waits for a condition; the only sleeps are the
//! deliberate downtime of `downtime_counts_against_leases` and the pacing of clients. The one
//! bounded wait that ends without a condition watches for an answer that must not come
//! ([`ABSENCE`]).

mod common;
#[path = "common/history.rs"]
mod history;
#[path = "common/recorder.rs"]
mod recorder;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{error_body, lock_body, post, Response, LOCKED, NOT_LOCKED};
use history::{End, History, Kind, Op, Outcome};
use recorder::{fence_of, record, wait_until, Conn, Rng, FENCE, REQUEST_TIMEOUT};

const LOCK: &str = "/v1.0-alpha1/lock/lockstore";
/// A start, until the three start-up lines are out (a debug build on a loaded 2-core VM).
const START_WITHIN: Duration = Duration::from_secs(10);
/// SIGTERM: drain, write the snapshot, exit 0.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// How late a crash horizon may end beyond its documented bound (`E + 1.2 s`): the probe's
/// pacing, a debug build, two cores shared with the load.
const SLACK: Duration = Duration::from_secs(1);
/// The documented margin of a crash horizon beyond the longest expiry granted.
const CRASH_MARGIN: Duration = Duration::from_millis(1200);
/// Keeps the collected stderr of a child bounded.
const STDERR_LIMIT: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// A temporary data dir and the server process.

/// A data dir path under the system temp dir, unique to this test and process, not created
/// (the server creates it), removed on drop.
struct DataDir {
    path: PathBuf,
}

impl DataDir {
    fn new(test: &str) -> DataDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "dlockd-restart-{test}-{}-{nanos}",
            std::process::id()
        ));
        assert!(
            !path.exists(),
            "temp data dir {} already exists",
            path.display()
        );
        DataDir { path }
    }

    fn arg(&self) -> &str {
        self.path
            .to_str()
            .expect("the temp dir path is UTF-8, so it can be passed as a flag")
    }

    fn snapshot(&self) -> PathBuf {
        self.path.join("snapshot")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A `dlockd` child process. Killed on drop; its stderr is printed if the test fails.
struct Dlockd {
    child: Child,
    args: Vec<String>,
    /// Just before the spawn: the server's own start (and its clock) comes later.
    spawned_at: Instant,
    stdout: Receiver<String>,
    /// Stdout lines read so far (the three start-up lines once `start` returns).
    lines: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    addr: Option<SocketAddr>,
}

impl Dlockd {
    /// Spawns `dlockd --listen 127.0.0.1:0 --metrics-listen off <args>` without waiting for
    /// anything; the environment's DLOCKD_* and DAPR_* settings are removed.
    fn spawn(args: &[&str]) -> Dlockd {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlockd"));
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("DLOCKD_") || text.starts_with("DAPR_") || text == "RUST_LOG" {
                cmd.env_remove(&name);
            }
        }
        cmd.args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned_at = Instant::now();
        let mut child = cmd
            .spawn()
            .expect("spawn the dlockd binary that cargo built for this test");
        let stdout = child.stdout.take().expect("dlockd's stdout is piped");
        let stderr = child.stderr.take().expect("dlockd's stderr is piped");
        let (tx, rx) = mpsc::channel();
        // Both pipes are read for the child's whole life: a full pipe would block the server
        // on its next write and look like a wedged server.
        std::thread::spawn(move || {
            for_each_line(stdout, |line| {
                let _ = tx.send(line);
            })
        });
        let collected = Arc::new(Mutex::new(String::new()));
        let sink = collected.clone();
        let stderr_reader = std::thread::spawn(move || {
            for_each_line(stderr, |line| {
                let mut all = sink.lock().unwrap_or_else(|p| p.into_inner());
                if all.len() < STDERR_LIMIT {
                    all.push_str(&line);
                    all.push('\n');
                }
            })
        });
        Dlockd {
            child,
            args: args.iter().map(|s| s.to_string()).collect(),
            spawned_at,
            stdout: rx,
            lines: Vec::new(),
            stderr: collected,
            stderr_reader: Some(stderr_reader),
            addr: None,
        }
    }

    /// Spawns the server and waits for its three start-up lines: the address, metrics, and
    /// restart safety.
    fn start(args: &[&str]) -> Dlockd {
        let mut d = Dlockd::spawn(args);
        let deadline = d.spawned_at + START_WITHIN;
        while d.lines.len() < 3 {
            let left = deadline.saturating_duration_since(Instant::now());
            match d.stdout.recv_timeout(left) {
                Ok(line) => d.lines.push(line),
                Err(e) => d.fail(&format!(
                    "did not print its three start-up lines within {START_WITHIN:?} ({e})"
                )),
            }
        }
        let addr = d.lines[0]
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => d.addr = Some(addr),
            None => d.fail("printed no address in its first line"),
        }
        d
    }

    fn addr(&self) -> SocketAddr {
        self.addr.expect("the server has started")
    }

    /// The third start-up line.
    fn safety_line(&self) -> &str {
        &self.lines[2]
    }

    /// M of `refusing grants for M ms` in the third line.
    fn refusing_for(&self) -> Duration {
        let ms = self
            .safety_line()
            .split("refusing grants for ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|m| m.parse::<u64>().ok());
        match ms {
            Some(ms) => Duration::from_millis(ms),
            None => panic!(
                "no `refusing grants for M ms` in the start-up line {:?}",
                self.safety_line()
            ),
        }
    }

    /// Until this instant every TryLock must be refused: the server computed its horizon
    /// after `spawned_at`, so it ends no earlier than `spawned_at + M`.
    fn surely_refusing_until(&self) -> Instant {
        self.spawned_at + self.refusing_for()
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Kills the child, reads its stderr to the end and panics with it.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let stderr = self.stderr_text();
        // Already said here; the drop need not say it again.
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        panic!(
            "dlockd {:?} {what}; exit {status:?}; stdout so far {:?}; stderr:\n{stderr}",
            self.args, self.lines
        )
    }

    /// kill -9. Returns the instant just before the signal, once the process is gone.
    fn kill9(&mut self) -> Instant {
        let at = Instant::now();
        self.child.kill().expect("SIGKILL the running dlockd");
        self.child.wait().expect("reap the killed dlockd");
        at
    }

    /// SIGTERM, then the exit status, which must come within `STOP_WITHIN`.
    fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill(1) to send SIGTERM");
        assert!(sent.success(), "kill -TERM {} failed", self.child.id());
        self.wait_exit(STOP_WITHIN)
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() >= deadline => {
                    self.fail(&format!("did not exit within {within:?}"))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => self.fail(&format!("could not be waited for: {e}")),
            }
        }
    }

    /// Once the process has exited: all it wrote to stderr.
    fn stderr_to_end(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr_text()
    }

    /// Waits for a stderr line for which `wanted` holds, and returns it.
    fn wait_stderr_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + START_WITHIN;
        loop {
            if let Some(line) = self.stderr_text().lines().find(|l| wanted(l)) {
                return line.to_string();
            }
            if Instant::now() >= deadline {
                self.fail(&format!("wrote no stderr line {what}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Dlockd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let stderr = self.stderr_text();
            if !stderr.is_empty() {
                eprintln!("dlockd {:?} stderr:\n{stderr}", self.args);
            }
        }
    }
}

fn for_each_line(from: impl Read, mut each: impl FnMut(String)) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => each(String::from_utf8_lossy(&line).trim_end().to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The answers the tests expect. The client is recorder.rs's, whose failures are values: a crash
// breaks its connection, and that is an outcome.

/// The answer to a request that must be answered (the server is up and well).
#[track_caller]
fn answered(r: io::Result<Response>, what: &str) -> Response {
    r.unwrap_or_else(|e| panic!("{what}: no answer from the running dlockd: {e}"))
}

/// `200 {"success":true}`; returns its fence, which must be there.
#[track_caller]
fn assert_granted(r: &Response, what: &str) -> u64 {
    assert_eq!(
        (r.status, r.body_str()),
        (200, LOCKED),
        "{what}: not granted"
    );
    fence_of(r).unwrap_or_else(|| panic!("{what}: granted without a {FENCE} header: {r:?}"))
}

/// `200 {"success":false}`, without a fence.
#[track_caller]
fn assert_refused(r: &Response, what: &str) {
    assert_eq!(
        (r.status, r.body_str()),
        (200, NOT_LOCKED),
        "{what}: not refused"
    );
    assert_eq!(r.header(FENCE), None, "{what}: a refusal carries a fence");
}

/// `200 {"status":N}`, without a fence.
#[track_caller]
fn assert_unlock_status(r: &Response, status: u8, what: &str) {
    let expected = format!(r#"{{"status":{status}}}"#);
    assert_eq!(
        (r.status, r.body_str()),
        (200, expected.as_str()),
        "{what}: wrong unlock answer"
    );
    assert_eq!(
        r.header(FENCE),
        None,
        "{what}: an unlock answer carries a fence"
    );
}

// ---------------------------------------------------------------------------------------------
// The crash under load.

/// What the clients were granted by one server generation.
#[derive(Default)]
struct Counts {
    grants: AtomicUsize,
    /// Grants to an acquire.
    acquired: AtomicUsize,
    /// Renewals answered 0.
    renewed: AtomicUsize,
    /// Renewals answered about when their lease had surely ended.
    late: AtomicUsize,
}

impl Counts {
    fn add(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }
}

/// Where the load goes: the server's generation (0 at first, one more after each crash) and
/// its address, `None` while it is down.
struct Load {
    target: Mutex<(usize, Option<SocketAddr>)>,
    stop: AtomicBool,
    /// Per generation.
    counts: Vec<Counts>,
}

impl Load {
    fn new(addr: SocketAddr, generations: usize) -> Arc<Load> {
        Arc::new(Load {
            target: Mutex::new((0, Some(addr))),
            stop: AtomicBool::new(false),
            counts: (0..generations).map(|_| Counts::default()).collect(),
        })
    }

    fn target(&self) -> (usize, Option<SocketAddr>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn aim(&self, generation: usize, addr: Option<SocketAddr>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = (generation, addr);
    }
}

/// Stops the load's clients when dropped, so that they stop even if an assertion fails first.
struct StopOnDrop(Arc<Load>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

const LOAD_CLIENTS: usize = 14;
const LOAD_RESOURCES: u64 = 7;
/// The longest ttl the clients use (they pick 1 or 2 s): E of the crash horizon.
const LOAD_MAX_TTL: Duration = Duration::from_secs(2);
const LOAD_MAX_HOLD_MS: u64 = 300;
const PROBE_CLIENT: usize = 1000;

/// One load client: lock a random resource with a fresh owner; when granted, hold it
/// 0–300 ms and unlock it (one time in five it lets the lease expire instead). A failed
/// request is recorded as unknown and the client reconnects to whatever server is current.
/// Returns its operations, each with the generation of the server it went to.
fn load_client(id: usize, seed: u64, load: &Load) -> Vec<(usize, Op)> {
    let mut rng = Rng(seed);
    let mut ops = Vec::new();
    let mut conn: Option<(usize, Conn)> = None;
    let mut n = 0;
    while !load.stop.load(Ordering::Relaxed) {
        let (generation, addr) = load.target();
        if conn.as_ref().is_none_or(|(g, _)| *g != generation) {
            conn = None;
            let Some(addr) = addr else {
                // Backoff until the new address is known.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            match Conn::connect(addr) {
                Ok(c) => conn = Some((generation, c)),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10 + rng.below(10)));
                    continue;
                }
            }
        }
        let Some((generation, c)) = conn.as_mut() else {
            continue;
        };
        let generation = *generation;
        n += 1;
        let owner = format!("c{id}-{n}");
        let resource = format!("res-{}", rng.below(LOAD_RESOURCES));
        let ttl = Duration::from_secs(1 + rng.below(2));
        let op = record(c, id, &resource, &owner, Kind::Lock { ttl });
        let got = op.outcome;
        ops.push((generation, op));
        match got {
            Outcome::Granted { .. } => {
                Counts::add(&load.counts[generation].grants);
                std::thread::sleep(Duration::from_millis(rng.below(LOAD_MAX_HOLD_MS + 1)));
                if rng.below(5) != 0 {
                    let op = record(c, id, &resource, &owner, Kind::Unlock);
                    let got = op.outcome;
                    ops.push((generation, op));
                    if got == Outcome::Unknown {
                        conn = None;
                    }
                }
            }
            Outcome::Unknown => conn = None,
            _ => std::thread::sleep(Duration::from_millis(5 + rng.below(20))),
        }
    }
    ops
}

// Mutual exclusion and growing fences hold across a kill -9 under load, and the crash costs
// no more than documented: the new process grants nothing until every lease the dead one
// acknowledged has ended, and grants again within E + 1.2 s of the crash (E the longest ttl
// granted), plus slack.
#[test]
fn crash_under_load_keeps_mutual_exclusion() {
    let dir = DataDir::new("crash");
    let args = ["--data-dir", dir.arg(), "--workers", "2"];
    let mut first = Dlockd::start(&args);
    assert!(
        first
            .safety_line()
            .ends_with(" for the in-memory store lockstore: fresh data dir"),
        "{:?}",
        first.safety_line()
    );
    let origin = Instant::now();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    println!("crash_under_load: seed {seed}");
    let load = Load::new(first.addr(), 2);
    let clients: Vec<JoinHandle<Vec<(usize, Op)>>> = (0..LOAD_CLIENTS)
        .map(|id| {
            let load = load.clone();
            let seed = seed ^ (id as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
            std::thread::spawn(move || load_client(id, seed, &load))
        })
        .collect();
    let _stop = StopOnDrop(load.clone());

    wait_until(
        "1.5 s of load with some grants before the crash",
        origin + Duration::from_secs(10),
        || {
            origin.elapsed() >= Duration::from_millis(1500)
                && Counts::get(&load.counts[0].grants) > 0
        },
    );
    let killed_at = first.kill9();
    load.aim(1, None);
    let second = Dlockd::start(&args);
    load.aim(1, Some(second.addr()));
    let restarted_at = Instant::now();
    assert!(
        second
            .safety_line()
            .contains(" lockstore: the last run did not stop cleanly; refusing grants for "),
        "{:?}",
        second.safety_line()
    );

    // The probe: a resource nobody else uses, every 20 ms until granted.
    let bound = LOAD_MAX_TTL + CRASH_MARGIN + SLACK;
    let give_up = killed_at + bound + Duration::from_secs(5);
    let mut probe = Conn::open(second.addr());
    let mut probe_ops = Vec::new();
    let probe_granted_at = loop {
        let kind = Kind::Lock {
            ttl: Duration::from_secs(1),
        };
        let op = record(&mut probe, PROBE_CLIENT, "probe", "prober", kind);
        let (got, ret) = (op.outcome, op.ret);
        probe_ops.push(op);
        match got {
            Outcome::Granted { .. } => break ret,
            Outcome::Refused => {}
            other => panic!("the probe got {other:?} from the restarted server"),
        }
        assert!(
            Instant::now() < give_up,
            "the probe was not granted within {:?} of the crash",
            give_up - killed_at
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // More load after the restart: 3.5 s in all, and at least 0.8 s of it with grants.
    let until = (restarted_at + Duration::from_millis(3500))
        .max(probe_granted_at + Duration::from_millis(800));
    wait_until(
        "load after the restart with some client grants",
        until + Duration::from_secs(5),
        || Instant::now() >= until && Counts::get(&load.counts[1].grants) > 0,
    );
    load.stop.store(true, Ordering::Relaxed);

    let mut history = History::new(origin);
    let mut generation = Vec::new();
    for client in clients {
        let ops = client
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        for (g, op) in ops {
            generation.push(g);
            history.push(op);
        }
    }
    for op in probe_ops {
        generation.push(1);
        history.push(op);
    }

    let report = history.check();
    println!(
        "crash_under_load: kill at {}, restart at {} ({:?} refusing), probe granted at {} \
         ({:?} after the kill)",
        history.at(killed_at),
        history.at(restarted_at),
        second.refusing_for(),
        history.at(probe_granted_at),
        probe_granted_at - killed_at
    );
    report.assert_clean();
    println!("{report}");
    assert_eq!(
        report.total().grants_without_fence,
        0,
        "with a data dir every grant carries a fence\n{report}"
    );

    let grants_in = |g: usize| -> Vec<usize> {
        (0..history.ops.len())
            .filter(|&i| generation[i] == g && history.ops[i].is_grant())
            .collect()
    };
    let before = grants_in(0);
    let after: Vec<usize> = grants_in(1)
        .into_iter()
        .filter(|&i| history.ops[i].client != PROBE_CLIENT)
        .collect();
    assert!(!before.is_empty(), "no grant before the crash\n{report}");
    assert!(
        !after.is_empty(),
        "no client grant after the restart\n{report}"
    );

    // Every lease acknowledged before the crash and not released had ended before the first
    // grant after it.
    let released = |i: usize| match history.entitlement(i).map(|e| e.ended_by) {
        Some(End::Unlock(u)) => history.ops[u].outcome == Outcome::Unlocked(0),
        _ => false,
    };
    let last_lease = before
        .iter()
        .filter(|&&i| !released(i))
        .max_by_key(|&&i| history.ops[i].invoke + history.ops[i].ttl().unwrap_or_default());
    let first_after = grants_in(1)
        .into_iter()
        .min_by_key(|&i| history.ops[i].ret)
        .expect("the probe's grant at least");
    if let Some(&last) = last_lease {
        let op = &history.ops[last];
        let ends = op.invoke + op.ttl().unwrap_or_default();
        assert!(
            history.ops[first_after].ret >= ends,
            "{} was granted before {} had ended (at {})",
            history.describe(first_after),
            history.describe(last),
            history.at(ends)
        );
    }
    // While the server said it refuses, it refused.
    let refusing_until = second.surely_refusing_until();
    for i in grants_in(1) {
        assert!(
            history.ops[i].ret >= refusing_until,
            "{} was granted before the announced horizon {}",
            history.describe(i),
            history.at(refusing_until)
        );
    }
    assert!(
        probe_granted_at - killed_at <= bound,
        "grants resumed {:?} after the crash; the bound is E {LOAD_MAX_TTL:?} + \
         {CRASH_MARGIN:?} + slack {SLACK:?}",
        probe_granted_at - killed_at
    );
}

// ---------------------------------------------------------------------------------------------
// Crashes with renewals and waits in flight.

const RENEW_CLIENTS: usize = 10;
/// Few resources, so that waiters queue behind holders that keep renewing.
const RENEW_RESOURCES: u64 = 3;
/// The ttl of every try-lock and acquire.
const RENEW_GRANT_TTL: Duration = Duration::from_secs(1);
/// The longest ttl a renewal asks for (they ask 1 or 2 s): E of the crash horizon.
const RENEW_MAX_TTL: Duration = Duration::from_secs(2);
/// The longest `waitTimeoutMs`: well below the grant ttl, so that a waiter's entitlement
/// (from its answer to its invoke + ttl) is rarely empty.
const RENEW_MAX_WAIT_MS: u64 = 400;
/// The server runs this many times: killed with SIGKILL between runs.
const RENEW_GENERATIONS: usize = 3;
/// How long each run is loaded once it grants, at least: until it has also granted to an
/// acquire, renewed a lease, and answered a renewal that came about when its lease had ended
/// (which takes a grant in the run's first part: the renewal comes a ttl later).
const RENEW_RUN: Duration = Duration::from_millis(1200);

/// Sleeps for `d`, or less once the load is told to stop.
fn pause(load: &Load, d: Duration) {
    let until = Instant::now() + d;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || load.stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// One client of the renewing load. Each round takes a fresh owner and a random resource,
/// one of the shared ones or the client's own (nobody waits for it, so a lease of it that has
/// expired stays in the table until it is reclaimed, which is when a renewal could bring it
/// back). One time in eight it first renews the lock it does not hold (answered 1 or 2); then
/// it asks with a try-lock or, one time in two, an acquire waiting 0-400 ms. Granted, it
/// renews up to three times, pausing 50-400 ms before each, or one time in five until about
/// when the lease has surely ended (from 20 ms before to 60 ms after its last grant's or
/// renewal's return + ttl), so that some renewals race the expiry and some come for a lease
/// that has just ended; renewals ask 1 or 2 s, so they lengthen and shorten leases. Then it
/// unlocks, or one time in five lets the lease expire. A failed request is recorded as
/// unknown and the client moves on to the current server with a new owner. Returns its
/// operations, each with the generation of the server it went to.
fn renewing_client(id: usize, seed: u64, load: &Load) -> Vec<(usize, Op)> {
    let mut rng = Rng(seed);
    let mut ops = Vec::new();
    let mut conn: Option<(usize, Conn)> = None;
    let mut n = 0;
    let ttl_of = |rng: &mut Rng| Duration::from_secs(1 + rng.below(2));
    while !load.stop.load(Ordering::Relaxed) {
        let (generation, addr) = load.target();
        if conn.as_ref().is_none_or(|(g, _)| *g != generation) {
            conn = None;
            let Some(addr) = addr else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            match Conn::connect(addr) {
                Ok(c) => conn = Some((generation, c)),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10 + rng.below(10)));
                    continue;
                }
            }
        }
        let Some((generation, c)) = conn.as_mut() else {
            continue;
        };
        let generation = *generation;
        let counts = &load.counts[generation];
        n += 1;
        let owner = format!("c{id}-{n}");
        let resource = match rng.below(RENEW_RESOURCES + 1) {
            RENEW_RESOURCES => format!("own-{id}"),
            shared => format!("res-{shared}"),
        };
        // Every call of this round goes through here: its outcome and its return.
        let mut call = |c: &mut Conn, kind: Kind| {
            let op = record(c, id, &resource, &owner, kind);
            let got = (op.outcome, op.ret);
            ops.push((generation, op));
            got
        };
        if rng.below(8) == 0 {
            let kind = Kind::Renew {
                ttl: ttl_of(&mut rng),
            };
            if call(c, kind).0 == Outcome::Unknown {
                conn = None;
                continue;
            }
        }
        let kind = if rng.below(2) == 0 {
            Kind::Lock {
                ttl: RENEW_GRANT_TTL,
            }
        } else {
            Kind::Acquire {
                ttl: RENEW_GRANT_TTL,
                wait: Duration::from_millis(rng.below(RENEW_MAX_WAIT_MS + 1)),
            }
        };
        // The lease as this client knows it: the return of its grant or of its last renewal
        // answered 0, and the ttl it asked for.
        let (mut since, mut ttl) = match call(c, kind) {
            (Outcome::Granted { .. }, ret) => {
                Counts::add(&counts.grants);
                if matches!(kind, Kind::Acquire { .. }) {
                    Counts::add(&counts.acquired);
                }
                (ret, RENEW_GRANT_TTL)
            }
            (Outcome::Unknown, _) => {
                conn = None;
                continue;
            }
            _ => {
                std::thread::sleep(Duration::from_millis(5 + rng.below(20)));
                continue;
            }
        };
        let mut broken = false;
        for _ in 0..rng.below(4) {
            let late = rng.below(5) == 0;
            let hold = if late {
                // From 20 ms before to 60 ms after `since + ttl`, the instant after which the
                // lease has surely ended but may linger in the table until it is reclaimed.
                (since + ttl + Duration::from_millis(rng.below(81)))
                    .checked_sub(Duration::from_millis(20))
                    .map_or(Duration::ZERO, |at| {
                        at.saturating_duration_since(Instant::now())
                    })
            } else {
                Duration::from_millis(50 + rng.below(351))
            };
            pause(load, hold);
            let asked = ttl_of(&mut rng);
            let got = call(c, Kind::Renew { ttl: asked });
            if late && got.0 != Outcome::Unknown {
                Counts::add(&counts.late);
            }
            match got {
                (Outcome::RenewStatus { status: 0, .. }, ret) => {
                    Counts::add(&counts.renewed);
                    (since, ttl) = (ret, asked);
                }
                (Outcome::Unknown, _) => {
                    broken = true;
                    break;
                }
                // Gone, or an error: this lease is over for this client.
                _ => break,
            }
        }
        if broken || (rng.below(5) != 0 && call(c, Kind::Unlock).0 == Outcome::Unknown) {
            conn = None;
        }
    }
    ops
}

/// Try-locks a resource nobody else uses every 20 ms until granted (then unlocks it) on a
/// server just restarted after a crash at `killed_at`; its calls go into `ops`. Returns the
/// grant's return.
fn probe_until_granted(
    server: &Dlockd,
    owner: &str,
    killed_at: Instant,
    ops: &mut Vec<Op>,
) -> Instant {
    let give_up = killed_at + RENEW_MAX_TTL + CRASH_MARGIN + SLACK + Duration::from_secs(5);
    let mut probe = Conn::open(server.addr());
    loop {
        let kind = Kind::Lock {
            ttl: Duration::from_secs(1),
        };
        let op = record(&mut probe, PROBE_CLIENT, "probe", owner, kind);
        let (got, ret) = (op.outcome, op.ret);
        ops.push(op);
        match got {
            Outcome::Granted { .. } => {
                ops.push(record(
                    &mut probe,
                    PROBE_CLIENT,
                    "probe",
                    owner,
                    Kind::Unlock,
                ));
                return ret;
            }
            Outcome::Refused => {}
            other => panic!("the probe got {other:?} from the restarted server"),
        }
        assert!(
            Instant::now() < give_up,
            "the probe was not granted within {:?} of the crash",
            give_up - killed_at
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// Two kill -9 under a load of try-locks, acquires that wait, renewals and unlocks on three
// resources: the history checker finds no two holders at once on any resource (a renewed
// lease counts to its renewed end, across the crash too), no renewal answered 0 for a lease
// that had ended or was lost in a crash, every renewal keeping its lease's fence, and fences
// growing per resource across both crashes. After each crash the new server grants nothing
// (on any resource) before every lease the dead one acknowledged, renewed ends included, has
// ended.
#[test]
fn crash_with_renewals_and_waits_in_flight_keeps_every_rule() {
    let dir = DataDir::new("renew-crash");
    let args = ["--data-dir", dir.arg(), "--workers", "2"];
    let mut server = Dlockd::start(&args);
    let origin = Instant::now();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    println!("crash_with_renewals: seed {seed}");
    let load = Load::new(server.addr(), RENEW_GENERATIONS);
    let clients: Vec<JoinHandle<Vec<(usize, Op)>>> = (0..RENEW_CLIENTS)
        .map(|id| {
            let load = load.clone();
            let seed = seed ^ (id as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
            std::thread::spawn(move || renewing_client(id, seed, &load))
        })
        .collect();
    let _stop = StopOnDrop(load.clone());

    let mut probe_ops: Vec<(usize, Op)> = Vec::new();
    // Per restart: its generation, the kill's instant and until when it surely refused.
    let mut restarts = Vec::new();
    for generation in 0..RENEW_GENERATIONS {
        if generation > 0 {
            let killed_at = server.kill9();
            load.aim(generation, None);
            server = Dlockd::start(&args);
            load.aim(generation, Some(server.addr()));
            assert!(
                server.safety_line().contains(
                    " lockstore: the last run did not stop cleanly; refusing grants for "
                ),
                "{:?}",
                server.safety_line()
            );
            restarts.push((generation, killed_at, server.surely_refusing_until()));
            let mut ops = Vec::new();
            probe_until_granted(
                &server,
                &format!("prober-{generation}"),
                killed_at,
                &mut ops,
            );
            probe_ops.extend(ops.into_iter().map(|op| (generation, op)));
        }
        let counts = &load.counts[generation];
        let since = Instant::now();
        wait_until(
            &format!(
                "run {generation}: a grant, a grant to an acquire, a renewal answered 0 and one \
                 answered about when its lease had ended"
            ),
            since + RENEW_RUN + Duration::from_secs(10),
            || {
                since.elapsed() >= RENEW_RUN
                    && Counts::get(&counts.grants) > 0
                    && Counts::get(&counts.acquired) > 0
                    && Counts::get(&counts.renewed) > 0
                    && Counts::get(&counts.late) > 0
            },
        );
    }
    load.stop.store(true, Ordering::Relaxed);

    let mut history = History::new(origin);
    let mut generation = Vec::new();
    for client in clients {
        let ops = client
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        for (g, op) in ops {
            generation.push(g);
            history.push(op);
        }
    }
    for (g, op) in probe_ops {
        generation.push(g);
        history.push(op);
    }

    let report = history.check();
    for &(g, killed_at, refusing_until) in &restarts {
        println!(
            "crash_with_renewals: kill {g} at {}, refusing until {}",
            history.at(killed_at),
            history.at(refusing_until)
        );
    }
    // What the owners named by the first violations did, before the verdict.
    for v in report.violations.iter().take(3) {
        for i in [v.first, v.second] {
            println!("op #{i}'s owner:\n{}", history.timeline(i));
        }
    }
    report.assert_clean();
    println!("{report}");
    let total = report.total();
    assert_eq!(
        (total.grants_without_fence, total.renewals_without_fence),
        (0, 0),
        "with a data dir every grant and every renewal answered 0 carries a fence\n{report}"
    );

    // After each crash, no grant before every entitlement the dead server acknowledged (and no
    // unlock by its owner ended) was over, and none before the announced horizon.
    let grants_in = |g: usize| -> Vec<usize> {
        (0..history.ops.len())
            .filter(|&i| generation[i] == g && history.ops[i].is_grant())
            .collect()
    };
    for &(g, _, refusing_until) in &restarts {
        let first = grants_in(g)
            .into_iter()
            .min_by_key(|&i| history.ops[i].ret)
            .expect("the probe's grant at least");
        let last = grants_in(g - 1)
            .into_iter()
            .filter_map(|i| history.entitlement(i).map(|e| (i, e)))
            .filter(|(_, e)| !matches!(e.ended_by, End::Unlock(_)))
            .max_by_key(|(_, e)| e.end);
        if let Some((last, e)) = last {
            assert!(
                history.ops[first].ret >= e.end,
                "{} was granted after crash {g} before {} had ended (at {})",
                history.describe(first),
                history.describe(last),
                history.at(e.end)
            );
        }
        assert!(
            history.ops[first].ret >= refusing_until,
            "{} was granted before the announced horizon {}",
            history.describe(first),
            history.at(refusing_until)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Clean restarts.

// A SIGTERM restart keeps every acknowledged lease with its owner (another owner is refused,
// the holder's unlock releases it) and fences keep growing: per resource and for a fresh one.
#[test]
fn clean_restart_keeps_every_lease() {
    const LEASES: usize = 20;
    let dir = DataDir::new("clean");
    let args = ["--data-dir", dir.arg(), "--workers", "2"];
    let mut first = Dlockd::start(&args);
    assert_eq!(
        first.safety_line(),
        format!(
            "dlockd restart safety on (data dir {}) for the in-memory store lockstore: fresh data dir",
            dir.arg()
        )
    );
    assert!(dir.path.is_dir(), "the data dir was not created");
    let mut c = Conn::open(first.addr());
    let mut fences = Vec::new();
    for i in 0..LEASES {
        let r = answered(
            c.lock(&format!("lease-{i}"), &format!("holder-{i}"), 10),
            "lock",
        );
        fences.push(assert_granted(&r, &format!("lease-{i}")));
    }
    drop(c);
    let status = first.terminate();
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0");
    assert!(
        dir.snapshot().is_file(),
        "no snapshot at {}",
        dir.snapshot().display()
    );

    let second = Dlockd::start(&args);
    assert!(
        second.safety_line().ends_with(&format!(
            " lockstore: resumed {LEASES} leases from a clean snapshot"
        )),
        "{:?}",
        second.safety_line()
    );
    let mut c = Conn::open(second.addr());
    // Fences are only ordered per resource within a run; across a restart every new one is
    // above every one handed out before it.
    let highest_before = fences.iter().copied().max().unwrap_or(0);
    for (i, &before) in fences.iter().enumerate() {
        let (resource, holder) = (format!("lease-{i}"), format!("holder-{i}"));
        let r = answered(c.lock(&resource, "thief", 10), "lock");
        assert_refused(
            &r,
            &format!("{resource} by another owner after the restart"),
        );
        let r = answered(c.unlock(&resource, &holder), "unlock");
        assert_unlock_status(
            &r,
            0,
            &format!("{resource} by its holder after the restart"),
        );
        let r = answered(c.lock(&resource, "next", 10), "lock");
        let fence = assert_granted(&r, &format!("{resource} once released"));
        assert!(
            fence > before,
            "{resource}: fence {fence} after the restart, {before} before"
        );
    }
    let r = answered(c.lock("fresh", "newcomer", 10), "lock");
    let fence = assert_granted(&r, "a fresh resource after a clean restart");
    assert!(
        fence > highest_before,
        "a fresh resource's fence {fence} is not above every one before the restart \
         ({highest_before}; all: {fences:?})"
    );
}

// Fences of one resource grow across restarts that change the worker count (so a resource
// moves to another shard), after a clean stop and after a crash alike.
#[test]
fn fences_grow_when_the_worker_count_changes() {
    const RESOURCES: usize = 12;
    let dir = DataDir::new("reshard");
    let mut last = vec![0u64; RESOURCES];
    // Resource k is taken k + 1 times, so the shards' counters drift apart.
    let take_all = |server: &Dlockd, last: &mut [u64], rounds: fn(usize) -> usize| {
        let mut c = Conn::open(server.addr());
        for (k, last) in last.iter_mut().enumerate() {
            for _ in 0..rounds(k) {
                let resource = format!("moved-{k}");
                let r = answered(c.lock(&resource, "o", 1), "lock");
                let fence = assert_granted(&r, &resource);
                assert!(fence > *last, "{resource}: fence {fence} after {last}");
                *last = fence;
                let r = answered(c.unlock(&resource, "o"), "unlock");
                assert_unlock_status(&r, 0, &resource);
            }
        }
    };
    let mut server = Dlockd::start(&["--data-dir", dir.arg(), "--workers", "2"]);
    take_all(&server, &mut last, |k| k + 1);
    assert_eq!(server.terminate().code(), Some(0), "SIGTERM must exit 0");

    let mut server = Dlockd::start(&["--data-dir", dir.arg(), "--workers", "1"]);
    assert!(
        server
            .safety_line()
            .ends_with(" lockstore: resumed 0 leases from a clean snapshot"),
        "{:?}",
        server.safety_line()
    );
    take_all(&server, &mut last, |k| RESOURCES - k);
    server.kill9();

    let server = Dlockd::start(&["--data-dir", dir.arg(), "--workers", "2"]);
    let mut c = Conn::open(server.addr());
    let deadline = Instant::now() + Duration::from_secs(1) + CRASH_MARGIN + SLACK;
    wait_until("grants after the crash", deadline, || {
        let r = answered(c.lock("moved-0", "o", 1), "lock");
        if r.body_str() != LOCKED {
            return false;
        }
        let fence = assert_granted(&r, "moved-0");
        assert!(fence > last[0], "moved-0: fence {fence} after {}", last[0]);
        last[0] = fence;
        assert_unlock_status(&answered(c.unlock("moved-0", "o"), "unlock"), 0, "moved-0");
        true
    });
    take_all(&server, &mut last, |_| 1);
}

// Time spent down counts against a lease: a 3 s lease taken before a SIGTERM restart with
// 1.5 s of downtime ends 3 s after it was granted (never earlier, at most ~1 s later).
#[test]
fn downtime_counts_against_leases() {
    const TTL: Duration = Duration::from_secs(3);
    let dir = DataDir::new("downtime");
    let args = ["--data-dir", dir.arg(), "--workers", "2"];
    let mut first = Dlockd::start(&args);
    let mut c = Conn::open(first.addr());
    let invoke = Instant::now();
    let r = answered(c.lock("short", "holder", TTL.as_secs() as i64), "lock");
    let ret = Instant::now();
    assert_granted(&r, "the lease");
    drop(c);
    assert_eq!(first.terminate().code(), Some(0), "SIGTERM must exit 0");
    // The deliberate downtime.
    std::thread::sleep(Duration::from_millis(1500));
    let second = Dlockd::start(&args);
    assert!(
        second.safety_line().contains(" lockstore: resumed 1 lease"),
        "{:?}",
        second.safety_line()
    );
    let mut c = Conn::open(second.addr());
    let ends = invoke + TTL;
    let due = ret + TTL + SLACK;
    let mut refused_in_time = 0;
    let granted_at = loop {
        let poll_invoke = Instant::now();
        let r = answered(c.lock("short", "poller", 1), "poll");
        let poll_ret = Instant::now();
        if r.body_str() == LOCKED {
            assert_granted(&r, "the poll");
            assert!(
                poll_ret >= ends,
                "granted to another owner {:?} after the lease was asked for, before its \
                 {TTL:?} had run",
                poll_ret - invoke
            );
            break poll_ret;
        }
        assert_refused(&r, "a poll while the lease is held");
        if poll_ret < ends {
            refused_in_time += 1;
        }
        assert!(
            poll_invoke < due,
            "no grant by {:?} after the lease was granted",
            due - ret
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        granted_at <= due,
        "the lease ended {:?} after it was granted; at most {:?}",
        granted_at - ret,
        TTL + SLACK
    );
    assert!(
        refused_in_time > 0,
        "the restart took so long that no poll came before the lease ended: the test proved \
         nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// Damaged snapshots, limits, no data dir, a data dir in use.

// A damaged snapshot (a byte flipped, cut to half, or not a snapshot at all) is refused whole
// with its reason on stderr, and the start counts as after a crash: nothing of the file is
// loaded (no holder's unlock finds its lease) and grants wait for the horizon.
#[test]
fn damaged_snapshots_are_refused() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, &str, Damage); 3] = [
        ("corrupt", "checksum", |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
        }),
        ("truncated", "truncated", |bytes| {
            bytes.truncate(bytes.len() / 2)
        }),
        ("foreign", "not a dlockd snapshot", |bytes| {
            *bytes = b"hello world\n".to_vec()
        }),
    ];
    const LEASES: usize = 8;
    for (name, reason, damage) in damages {
        let dir = DataDir::new(&format!("damaged-{name}"));
        let args = ["--data-dir", dir.arg(), "--workers", "2"];
        let mut first = Dlockd::start(&args);
        let mut c = Conn::open(first.addr());
        for i in 0..LEASES {
            let r = answered(
                c.lock(&format!("kept-{i}"), &format!("holder-{i}"), 30),
                "lock",
            );
            assert_granted(&r, &format!("{name}: kept-{i}"));
        }
        drop(c);
        assert_eq!(first.terminate().code(), Some(0), "{name}: SIGTERM exit");
        let mut bytes = std::fs::read(dir.snapshot()).unwrap_or_else(|e| {
            panic!(
                "{name}: a clean stop must leave {}: {e}",
                dir.snapshot().display()
            )
        });
        assert!(
            bytes.len() >= 2,
            "{name}: a snapshot of {} bytes",
            bytes.len()
        );
        damage(&mut bytes);
        std::fs::write(dir.snapshot(), &bytes).expect("write the damaged snapshot back");

        let mut second = Dlockd::start(&args);
        assert!(
            second
                .safety_line()
                .contains(" lockstore: the last run did not stop cleanly; refusing grants for "),
            "{name}: {:?}",
            second.safety_line()
        );
        let said = second
            .wait_stderr_line(&format!("saying the snapshot is refused ({reason})"), |l| {
                l.contains("snapshot") && l.contains("refused") && l.contains(reason)
            });
        println!("{name}: {said}");
        let refusing_until = second.surely_refusing_until();
        let mut c = Conn::open(second.addr());
        for i in 0..LEASES {
            let r = answered(
                c.unlock(&format!("kept-{i}"), &format!("holder-{i}")),
                "unlock",
            );
            assert_unlock_status(&r, 1, &format!("{name}: kept-{i}, not loaded"));
        }
        let r = answered(c.lock("other", "someone", 1), "lock");
        if Instant::now() < refusing_until {
            assert_refused(&r, &format!("{name}: a lock inside the crash horizon"));
        }
    }
}

/// `GET path` on the admin listener, whose address is in the second start-up line; the body.
fn admin_get(server: &Dlockd, path: &str) -> String {
    let addr: SocketAddr = server.lines[1]
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {:?}", server.lines[1]));
    let mut s = TcpStream::connect(addr).expect("the admin listener accepts");
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("the admin answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body.to_string()
}

/// The number after `name` in `text` (a metric line, or a JSON member).
fn number_after(text: &str, name: &str) -> f64 {
    text.split(name)
        .nth(1)
        .and_then(|rest| {
            rest.trim_start_matches(['"', ':', ' '])
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {name} in {text}"))
}

// After a crash every try-lock answers `{"success":false}` until the last run's leases have
// surely ended, which looks like contention; so the grace is visible: the gauge
// dlockd_crash_grace_remaining_seconds and /debug/shards count it down while it lasts, an info
// line says when it ends, and both read 0 afterwards, when grants resume.
#[test]
fn crash_grace_is_visible() {
    let dir = DataDir::new("grace");
    let args = ["--data-dir", dir.arg(), "--workers", "2"];
    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let mut first = Dlockd::start(&args);
    let mut c = Conn::open(first.addr());
    assert_granted(&answered(c.lock("held", "a", 1), "lock"), "the first lease");
    drop(c);
    first.kill9();

    let mut second = Dlockd::start(&[&args[..], &metrics[..]].concat());
    let refusing_until = second.surely_refusing_until();
    let shards = admin_get(&second, "/debug/shards");
    let gauge = admin_get(&second, "/metrics");
    let mut c = Conn::open(second.addr());
    let r = answered(c.lock("other", "b", 10), "lock");
    if Instant::now() < refusing_until {
        assert_refused(&r, "a try-lock inside the crash grace");
        assert!(
            number_after(&shards, "crashGraceRemainingMs") > 0.0,
            "{shards}"
        );
        assert!(
            number_after(&gauge, "\ndlockd_crash_grace_remaining_seconds ") > 0.0,
            "{gauge}"
        );
    }
    let said = second.wait_stderr_line("saying the crash grace is over", |l| {
        l == "dlockd: info: crash grace over: every lease of the last run has ended; try-locks \
              are granted again"
    });
    println!("{said}");
    assert!(Instant::now() + Duration::from_millis(200) >= refusing_until);
    assert_eq!(
        number_after(
            &admin_get(&second, "/debug/shards"),
            "crashGraceRemainingMs"
        ),
        0.0
    );
    assert_eq!(
        number_after(
            &admin_get(&second, "/metrics"),
            "\ndlockd_crash_grace_remaining_seconds "
        ),
        0.0
    );
    assert_granted(
        &answered(c.lock("other", "b", 10), "lock"),
        "after the grace",
    );
}

// Without a data dir, the start-up line says restart safety is off and no answer carries a
// fencing token.
#[test]
fn no_data_dir_no_fence() {
    let server = Dlockd::start(&["--workers", "2"]);
    assert_eq!(
        server.safety_line(),
        "dlockd restart safety off: no --data-dir, so leases and fencing tokens of the \
         in-memory store lockstore do not survive a restart"
    );
    let mut c = Conn::open(server.addr());
    let r = answered(c.lock("r", "a", 10), "lock");
    assert_eq!((r.status, r.body_str()), (200, LOCKED));
    assert_eq!(r.header(FENCE), None, "no data dir, yet a fence: {r:?}");
    assert_refused(&answered(c.lock("r", "b", 10), "lock"), "another owner");
    assert_unlock_status(&answered(c.unlock("r", "a"), "unlock"), 0, "the holder");
}

// `--max-expiry` caps expiryInSeconds: above it is daprd's malformed-request answer (without a
// fence), at it is granted.
#[test]
fn max_expiry_is_enforced() {
    let dir = DataDir::new("max-expiry");
    let server = Dlockd::start(&["--data-dir", dir.arg(), "--max-expiry", "10"]);
    let mut c = Conn::open(server.addr());
    let r = answered(c.lock("r", "a", 11), "lock");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.body_str(),
        error_body(
            "ERR_MALFORMED_REQUEST",
            "ExpiryInSeconds is above the maximum of 10 (--max-expiry) in lock store lockstore"
        )
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header(FENCE), None, "an error carries a fence: {r:?}");
    assert_granted(&answered(c.lock("r", "a", 10), "lock"), "at the maximum");
}

// One data dir serves one process: a second server on it while the first runs exits non-zero
// saying it is in use, and leaves the first (and its data) untouched.
#[test]
fn data_dir_in_use_is_refused() {
    let dir = DataDir::new("in-use");
    let args = ["--data-dir", dir.arg(), "--workers", "2"];
    let mut first = Dlockd::start(&args);
    let mut c = Conn::open(first.addr());
    let fence = assert_granted(&answered(c.lock("held", "a", 30), "lock"), "held");

    let mut intruder = Dlockd::spawn(&args);
    let status = intruder.wait_exit(START_WITHIN);
    let stderr = intruder.stderr_to_end();
    assert!(
        !status.success(),
        "a second server on a data dir in use started"
    );
    assert!(stderr.contains("in use"), "{status}; stderr:\n{stderr}");

    assert_refused(
        &answered(c.lock("held", "b", 30), "lock"),
        "held, by another",
    );
    drop(c);
    assert_eq!(first.terminate().code(), Some(0), "SIGTERM must exit 0");
    let third = Dlockd::start(&args);
    assert!(
        third.safety_line().contains(" lockstore: resumed 1 lease"),
        "{:?}",
        third.safety_line()
    );
    let mut c = Conn::open(third.addr());
    assert_refused(
        &answered(c.lock("held", "b", 30), "lock"),
        "held, after the restart",
    );
    assert_unlock_status(&answered(c.unlock("held", "a"), "unlock"), 0, "the holder");
    let next = assert_granted(&answered(c.lock("held", "b", 30), "lock"), "released");
    assert!(next > fence, "fence {next} after {fence}");
}

// ---------------------------------------------------------------------------------------------
// The persister held back.

/// The persister's thread name as Linux keeps it (`comm`: the first 15 bytes).
const PERSISTER_COMM: &str = "dlockd-persiste";
/// How long an answer that must not come is waited for. An absence can only be watched for a
/// while: this is hundreds of times what an answer already decided takes to arrive, and well
/// within the 10 s after which an answer waiting for the disk is given up.
const ABSENCE: Duration = Duration::from_secs(1);

/// The persister thread of a running `dlockd`, stopped under ptrace until `release` (or the
/// drop). A ptrace stop holds that one thread, and only it, whatever the privileges of the
/// process: root is held back as surely as anyone, unlike by file modes (which root ignores)
/// or the immutable flag (which needs CAP_LINUX_IMMUTABLE, often absent in containers). The
/// tracer is the test's own thread and the traced process its own child; the kernel refuses
/// this only under `kernel.yama.ptrace_scope = 3` or a seccomp filter denying ptrace, and
/// then the test fails saying so, rather than passing without holding anything.
struct HeldPersister {
    tid: libc::pid_t,
    /// A signal that arrived as the thread stopped, handed back to it at release.
    signal: libc::c_int,
    released: bool,
}

impl HeldPersister {
    /// Stops the persister thread of `dlockd` and returns once it is stopped.
    fn hold(dlockd: &Dlockd) -> HeldPersister {
        let pid = dlockd.child.id();
        let tasks = format!("/proc/{pid}/task");
        let tid = std::fs::read_dir(&tasks)
            .unwrap_or_else(|e| panic!("list the threads in {tasks}: {e}"))
            .filter_map(|task| {
                let task = task.ok()?;
                let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                let tid = task.file_name().to_str()?.parse::<libc::pid_t>().ok()?;
                (comm.trim_end() == PERSISTER_COMM).then_some(tid)
            })
            .next()
            .unwrap_or_else(|| panic!("no thread named {PERSISTER_COMM} in {tasks}"));
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: PTRACE_SEIZE and PTRACE_INTERRUPT read no memory of this process (addr and
        // data are null: no options).
        if unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, null, null) } != 0 {
            panic!(
                "PTRACE_SEIZE of the persister thread {tid} (ptrace is how this test holds the \
                 persister back): {}",
                io::Error::last_os_error()
            );
        }
        let mut held = HeldPersister {
            tid,
            signal: 0,
            released: false,
        };
        // SAFETY: as above.
        if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null) } != 0 {
            panic!(
                "PTRACE_INTERRUPT of the persister thread {tid}: {}",
                io::Error::last_os_error()
            );
        }
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: `status` is a live c_int for waitpid to write.
            let waited = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
            if waited == tid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                panic!("wait for the persister thread {tid} to stop: {e}");
            }
        }
        assert!(
            libc::WIFSTOPPED(status),
            "the persister thread {tid} did not stop: wait status {status:#x}"
        );
        // The interrupt's own stop carries PTRACE_EVENT_STOP; a plain stop is a signal's, to be
        // delivered when the thread goes on.
        if status >> 16 == 0 {
            held.signal = libc::WSTOPSIG(status);
        }
        held
    }

    /// Lets the persister go on.
    fn release(mut self) {
        self.released = true;
        // SAFETY: PTRACE_DETACH reads no memory; data is the signal to deliver, as a number.
        let detached = unsafe {
            libc::ptrace(
                libc::PTRACE_DETACH,
                self.tid,
                std::ptr::null_mut::<libc::c_void>(),
                self.signal as usize as *mut libc::c_void,
            )
        };
        assert_eq!(
            detached,
            0,
            "PTRACE_DETACH of the persister thread {}: {}",
            self.tid,
            io::Error::last_os_error()
        );
    }
}

impl Drop for HeldPersister {
    fn drop(&mut self) {
        if !self.released {
            // SAFETY: as in `release`; a failure (the process is gone) leaves nothing to undo.
            unsafe {
                libc::ptrace(
                    libc::PTRACE_DETACH,
                    self.tid,
                    std::ptr::null_mut::<libc::c_void>(),
                    self.signal as usize as *mut libc::c_void,
                );
            }
        }
    }
}

// A grant's `{"success":true}` leaves the server only once the data dir durably covers it:
// while the persister cannot write, a try-lock whose lease ends past the horizon is decided
// (the lease is held) but not answered, and the horizon file does not change; once the
// persister goes on, the grant arrives, with a fence above the one before.
#[test]
fn no_grant_is_answered_before_it_is_durable() {
    let dir = DataDir::new("held");
    let server = Dlockd::start(&["--data-dir", dir.arg(), "--workers", "1"]);
    let mut c = Conn::open(server.addr());
    // The first promise covers no lease: this grant has the persister write once, and leaves
    // the horizon at most about 2 s ahead.
    let first = assert_granted(&answered(c.lock("first", "a", 1), "lock"), "a first lease");
    let horizon = dir.path.join("horizon");
    let held = HeldPersister::hold(&server);
    let promised = std::fs::read(&horizon).expect("read the horizon file");

    // A 60 s lease ends far past that horizon: only a new promise covers it.
    let mut waiting = Conn::open(server.addr());
    waiting
        .stream
        .write_all(post(LOCK, &lock_body("r", "holder", 60)).as_bytes())
        .expect("send the try-lock");
    // Decided: the lease is held (an unlock by another owner is told it belongs to others).
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    wait_until("the held try-lock to be decided", deadline, || {
        let r = answered(c.unlock("r", "other"), "unlock");
        r.status == 200 && r.body_str() == r#"{"status":2}"#
    });
    // Yet not answered.
    waiting
        .stream
        .set_read_timeout(Some(ABSENCE))
        .expect("set the read timeout");
    match waiting.fill() {
        Ok(()) => panic!(
            "answered while the persister could not write: {:?}",
            String::from_utf8_lossy(&waiting.buf)
        ),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        Err(e) => panic!("the connection waiting for its grant broke: {e}"),
    }
    assert_eq!(
        std::fs::read(&horizon).expect("read the horizon file"),
        promised,
        "the horizon file changed while the persister was held"
    );

    held.release();
    waiting
        .stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .expect("set the read timeout");
    let r = answered(
        waiting.read_response(),
        "the try-lock once the persister goes on",
    );
    let fence = assert_granted(&r, "the try-lock once the persister goes on");
    assert!(fence > first, "fence {fence} after {first}");
    assert_ne!(
        std::fs::read(&horizon).expect("read the horizon file"),
        promised,
        "granted, yet the horizon file did not change"
    );
}
