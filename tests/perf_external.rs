//! `perf/compare --external`: a server compare did not start (here a second dlockd on a Unix
//! socket standing in for a Dapr sidecar) is measured beside dlockd, driven by the same
//! client, and left running. compare builds what it needs itself (dlockd in release and the
//! load generator, `perf/loadgen`); the measured part is one quick round of 2 s per server,
//! colo, depth 1. It needs what perf/compare needs (python3, taskset, CPUs 0 and 1, and the
//! Debian packages it installs when missing): without them the test fails with compare's
//! reason. Those builds take minutes, so the measuring test is `#[ignore]`d in a plain
//! `cargo test` and .ci/run runs it (`cargo test --test perf_external -- --ignored`); the
//! refusal of an unreachable server runs in every `cargo test`, in a second.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// compare's own bound, cargo builds of dlockd (release, fat LTO) and the load generator
/// included on a cold target dir; the measured part takes seconds.
const COMPARE_LIMIT: Duration = Duration::from_secs(40 * 60);
const START_LIMIT: Duration = Duration::from_secs(10);

/// A directory under the temporary directory, removed when dropped; short enough for socket
/// paths.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("perf-ext-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The stand-in sidecar: dlockd serving its HTTP API on `dir`/dapr-sidecar-http.socket, one
/// worker, the admin listener on an ephemeral port. Killed when dropped.
struct StandIn {
    child: Child,
    http_socket: PathBuf,
    metrics_port: u16,
    log: Arc<Mutex<String>>,
}

impl StandIn {
    fn start(dir: &Path) -> StandIn {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dlockd"))
            .arg("-u")
            .arg(dir)
            .args(["--app-id", "sidecar", "--metrics-listen", "127.0.0.1:0"])
            .args(["--workers", "1"])
            .env_remove("DAPR_API_TOKEN")
            .env_remove("APP_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dlockd");
        let log = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let out_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = lines_tx.send(line.clone());
                out_log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let err_log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            err_log.lock().unwrap().push_str(&text);
        });
        // The first two start-up lines: where the HTTP API listens, and the admin port.
        let mut lines = Vec::new();
        while lines.len() < 2 {
            match lines_rx.recv_timeout(START_LIMIT) {
                Ok(line) => lines.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("dlockd printed no start-up lines: {}", log.lock().unwrap());
                }
            }
        }
        // "dlockd 0.1.0 listening on unix:/tmp/…/dapr-sidecar-http.socket with 1 worker, …"
        let http_socket = lines[0]
            .split("listening on unix:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no Unix socket in the start-up line: {}", lines[0]));
        assert_eq!(http_socket, dir.join("dapr-sidecar-http.socket"));
        // "dlockd metrics on http://127.0.0.1:PORT/metrics, …"
        let metrics_port = lines[1]
            .split("metrics on http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no admin port in the start-up line: {}", lines[1]));
        StandIn {
            child,
            http_socket,
            metrics_port,
            log,
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Try-locks it answered with a grant, from its /metrics.
    fn grants(&self) -> u64 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .expect("connect to the admin port");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("ask for /metrics");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read /metrics");
        text.lines()
            .find_map(|l| {
                l.strip_prefix("dlockd_requests_total{route=\"lock\",outcome=\"granted\"} ")
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no granted try-locks in /metrics:\n{text}"))
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs perf/compare with `args` from the repository's top, its stdout and stderr apart;
/// SIGTERM (compare then stops what it started), then SIGKILL, if it outlives `limit`.
fn compare(args: &[&str], limit: Duration) -> (bool, String, String) {
    let mut child = Command::new("python3")
        .arg(Path::new(ROOT).join("perf/compare"))
        .args(args)
        .current_dir(ROOT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start python3 perf/compare");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = collect(Box::new(child.stdout.take().expect("stdout")));
    let err = collect(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for perf/compare") {
            break status;
        }
        if Instant::now() >= deadline {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            std::thread::sleep(Duration::from_secs(10));
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = child.wait();
            panic!(
                "perf/compare ran over {limit:?}; its output:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// "133.8 k", "1.23 M", "999" as a number.
fn rate(text: &str) -> f64 {
    let text = text.trim();
    let (number, scale) = match text.split_once(' ') {
        Some((n, "k")) => (n, 1e3),
        Some((n, "M")) => (n, 1e6),
        _ => (text, 1.0),
    };
    number
        .parse::<f64>()
        .map(|n| n * scale)
        .unwrap_or_else(|_| panic!("not a rate: {text:?}"))
}

// The stand-in sidecar on a Unix socket, with its PID: it gets a row in the side-by-side
// table with a request rate and server CPU of its own, dlockd is set against it, the section
// says compare did not start it, and it is still running afterwards, having granted the
// client's try-locks.
#[test]
#[ignore = "builds dlockd and the load generator in release first (minutes on 2 cores): \
            .ci/run runs it with --ignored"]
fn an_external_server_is_measured_beside_dlockd_and_left_running() {
    let dir = TempDir::new("ok");
    let mut stand_in = StandIn::start(&dir.0);
    let socket = stand_in.http_socket.display().to_string();
    let external = format!("stand-in=unix:{socket}@{}", stand_in.child.id());
    let started = Instant::now();
    let (ok, out, err) = compare(
        &[
            "--quick",
            "--no-record",
            "--servers",
            "dlockd",
            "--placements",
            "colo",
            "--depths",
            "1",
            "--external",
            &external,
        ],
        COMPARE_LIMIT,
    );
    let log = Arc::clone(&stand_in.log);
    let context = || {
        format!(
            "stdout:\n{out}\nstderr:\n{err}\nstand-in:\n{}",
            log.lock().unwrap()
        )
    };
    assert!(ok, "perf/compare failed\n{}", context());
    eprintln!("perf/compare took {:.0?}", started.elapsed());

    let label = format!("| stand-in (external, unix:{socket}; not started by compare) |");
    let row = out
        .lines()
        .find(|l| l.starts_with(&label))
        .unwrap_or_else(|| panic!("no row for the external server\n{}", context()));
    // | label | req/s (median) | min–max | p50 | p99 | p99.9 | server CPU | client CPU | sleeps |
    let cells: Vec<&str> = row[label.len()..].split('|').map(str::trim).collect();
    assert!(rate(cells[0]) > 0.0, "no request rate: {row}");
    assert_ne!(
        cells[5], "–",
        "its PID was given, so its CPU time is measured: {row}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("| dlockd, 1 worker | ")),
        "no row for dlockd\n{}",
        context()
    );
    assert!(
        out.lines().any(|l| l.starts_with("| dlockd / stand-in | ")),
        "no ratio of dlockd over the external server\n{}",
        context()
    );
    assert!(
        out.contains("compare neither started, stopped nor pinned them"),
        "{}",
        context()
    );
    assert!(
        err.contains("compare neither starts nor stops it"),
        "{}",
        context()
    );

    // Left running, and it really served the client: the warm-up and the measured run
    // granted far more try-locks than the probe's one.
    assert!(
        stand_in.running(),
        "perf/compare stopped the external server\n{}",
        context()
    );
    let grants = stand_in.grants();
    assert!(
        grants > 1_000,
        "the stand-in granted only {grants} try-locks"
    );
    let probe = UnixStream::connect(&stand_in.http_socket);
    assert!(probe.is_ok(), "its socket no longer accepts: {probe:?}");
}

// An address nothing listens on is refused with the reason before anything is built or
// started: compare does not start external servers.
#[test]
fn an_unreachable_external_server_fails_before_the_build() {
    let dir = TempDir::new("none");
    let missing = dir.0.join("dapr-none-http.socket");
    let external = format!("nobody=unix:{}", missing.display());
    let started = Instant::now();
    let (ok, out, err) = compare(
        &[
            "--quick",
            "--no-record",
            "--servers",
            "dlockd",
            "--external",
            &external,
        ],
        Duration::from_secs(120),
    );
    assert!(
        !ok,
        "perf/compare accepted an unreachable server\n{out}\n{err}"
    );
    assert!(
        err.contains(&format!("--external {}: the probe try-lock", &external)),
        "{err}"
    );
    assert!(
        err.contains("compare does not start external servers"),
        "{err}"
    );
    assert!(
        !err.contains("cargo build"),
        "it built before probing: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
