//! The real `dlockd` binary as a user runs it: --help, bad flags, the start-up line, and a
//! graceful exit 0 on SIGTERM and SIGINT with in-flight work answered.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn dlockd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlockd"));
    cmd.env_remove("DAPR_API_TOKEN")
        .env_remove("DAPR_HTTP_PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the binary on an ephemeral port and returns it with the address from its start-up line.
fn spawn(args: &[&str]) -> (Child, String, std::net::SocketAddr) {
    let mut cmd = dlockd();
    cmd.args(["--listen", "127.0.0.1:0"]).args(args);
    launch(&mut cmd)
}

/// Spawns `cmd` and reads its start-up line and the address in it.
fn launch(cmd: &mut Command) -> (Child, String, std::net::SocketAddr) {
    let mut child = cmd.spawn().expect("spawn dlockd");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("start-up line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("address in the start-up line")
        .parse()
        .expect("socket address");
    (child, line, addr)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "dlockd did not exit in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
}

// --help documents the knobs; a bad flag is refused with exit 2 and a message naming it.
#[test]
fn help_and_bad_flags() {
    let out = dlockd().arg("--help").output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--max-body-bytes") && help.contains("DAPR_API_TOKEN"));

    let out = dlockd().arg("--wrokers").arg("2").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--wrokers"));

    let out = dlockd()
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-bind"));
}

// The start-up line names version, address, workers, driver and stores with their types;
// SIGTERM drains and exits 0 while a connection is open, and the last line says how many
// connections were drained; SIGINT too.
#[test]
fn start_up_line_and_graceful_exit() {
    for sig in ["-TERM", "-INT"] {
        let (mut child, line, addr) = spawn(&["--workers", "2", "--store", "a", "--store", "b"]);
        assert!(line.contains(env!("CARGO_PKG_VERSION")), "{line}");
        assert!(line.contains("2 workers"), "{line}");
        assert!(line.contains("driver"), "{line}");
        assert!(
            line.contains("stores: a (lock.in-memory), b (lock.in-memory), api token off"),
            "{line}"
        );
        let mut c = Client::connect(addr);
        assert_json(&c.lock("a", "r", "o", 30), 200, LOCKED);
        signal(&child, sig);
        let status = wait_exit(&mut child, Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "{sig}");
        assert!(c.is_closed(), "idle connection closed at shutdown");
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "new connections refused"
        );
        let err = stderr_of(&mut child);
        assert_eq!(
            err.lines().last(),
            Some("dlockd: info: stopped: 1 connection drained"),
            "{err}"
        );
    }
}

// README's flags table and --help name the same flags and environment variables.
#[test]
fn readme_flags_table_matches_help() {
    let out = dlockd().arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("## Flags"))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| "))
        .collect();
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .filter(|w| {
                (w.starts_with("--") && w.len() > 2 && *w != "--help" && *w != "--version")
                    || w.starts_with("DLOCKD_")
                    || w.starts_with("DAPR_")
            })
            .map(str::to_string)
            .collect()
    };
    let in_table = names(&table.join("\n"));
    let in_help = names(&help);
    assert!(in_table.len() > 30, "{in_table:?}");
    assert_eq!(in_table, in_help);
}

// More workers than the CPUs the process may run on start, with a warning that names both
// numbers.
#[test]
fn more_workers_than_cpus_warn() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = (cpus + 1).to_string();
    let (mut child, line, _) = spawn(&["--workers", &workers, "--metrics-listen", "off"]);
    assert!(line.contains(&format!("with {workers} workers")), "{line}");
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
    let err = stderr_of(&mut child);
    let plural = if cpus == 1 { "" } else { "s" };
    assert!(
        err.contains(&format!(
            "dlockd: warn: --workers {workers} is more than the {cpus} CPU{plural} this process \
             may run on"
        )),
        "{err}"
    );
    // As many as the CPUs: no warning.
    let (mut child, _, _) = spawn(&["--workers", &cpus.to_string(), "--metrics-listen", "off"]);
    signal(&child, "-TERM");
    wait_exit(&mut child, Duration::from_secs(5));
    let err = stderr_of(&mut child);
    assert!(!err.contains("more than the"), "{err}");
}

// DAPR_HTTP_PORT is honoured when no --listen is given. The gRPC face and the admin listener
// are off: without --listen they would take their default ports, which another process on
// the machine may hold.
#[test]
fn dapr_http_port() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        l.local_addr().expect("addr").port()
    };
    let (mut child, line, _) = launch(
        dlockd()
            .args(["--grpc-listen", "off", "--metrics-listen", "off"])
            .env("DAPR_HTTP_PORT", port.to_string()),
    );
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
}

// A request in flight when SIGTERM arrives is still answered (with Connection: close) while
// new connections are already refused; then the process exits 0.
#[test]
fn in_flight_request_survives_sigterm() {
    let (mut child, _, addr) = spawn(&["--workers", "2"]);
    let mut c = Client::connect(addr);
    let request = post(
        "/v1.0-alpha1/lock/lockstore",
        &lock_body("inflight", "o", 30),
    );
    let (head, rest) = request.split_at(request.len() - 10);
    // A complete request and the start of the next in one write: once the first is
    // answered, the server holds the second half-read.
    c.send(format!("GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n{head}").as_bytes());
    assert_eq!(c.read_response().status, 204);
    signal(&child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().expect("wait").is_none(),
        "exited with a request in flight"
    );
    c.send(rest.as_bytes());
    let r = c.read_response();
    assert_json(&r, 200, LOCKED);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
}

// SIGTERM answers every acquire still waiting `{"success":false}`, with Connection: close,
// before the drain ends; then the process exits 0.
#[test]
fn sigterm_answers_every_waiter() {
    let (mut child, _, addr) = spawn(&["--workers", "2"]);
    let mut admin = Client::connect(addr);
    let mut waiters = Vec::new();
    for i in 0..4 {
        let resource = format!("held-{i}");
        assert_json(
            &admin.lock("lockstore", &resource, "holder", 60),
            200,
            LOCKED,
        );
        let mut c = Client::connect(addr);
        c.send(
            post(
                "/v1.0-alpha1/lock/lockstore/acquire",
                &format!(
                    r#"{{"resourceId":"{resource}","lockOwner":"w","expiryInSeconds":10,"waitTimeoutMs":60000}}"#
                ),
            )
            .as_bytes(),
        );
        waiters.push(c);
        // Parked once the holder query counts it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let held = admin.post(
                "/v1.0-alpha1/lock/lockstore/holder",
                &format!(r#"{{"resourceId":"{resource}"}}"#),
            );
            if held.body_str().ends_with(r#""waiters":1}"#) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never parked: {}",
                held.body_str()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(admin);
    let sent = Instant::now();
    signal(&child, "-TERM");
    for mut c in waiters {
        let r = c.read_response();
        assert_json(&r, 200, NOT_LOCKED);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed());
    }
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "answered at shutdown, not at the wait's end"
    );
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
}

/// Runs `cmd` with io_uring_setup refused by a seccomp filter, as container runtimes do.
#[allow(unsafe_code)]
fn without_io_uring(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // Classic BPF: load the syscall number; if it is io_uring_setup (425 in the unified
    // syscall table), fail it with ENOSYS; allow everything else.
    const SYS_IO_URING_SETUP: u32 = 425;
    const RET_ERRNO_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let filter = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: SYS_IO_URING_SETUP,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: RET_ERRNO_ENOSYS,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        },
    ];
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe; `filter` outlives the call because the closure owns it.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

// Where io_uring is refused (a seccomp filter here), the server falls back to the epoll
// driver and says so in its start-up line, and serves; `--io-driver uring` fails loudly.
#[test]
fn falls_back_to_epoll_without_io_uring() {
    let mut cmd = dlockd();
    without_io_uring(&mut cmd).args(["--listen", "127.0.0.1:0"]);
    let (mut child, line, addr) = launch(&mut cmd);
    assert!(
        line.contains("legacy (epoll) driver (io_uring unavailable"),
        "{line}"
    );
    let mut c = Client::connect(addr);
    assert_json(&c.lock("lockstore", "r", "o", 30), 200, LOCKED);
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );

    let mut cmd = dlockd();
    let out = without_io_uring(&mut cmd)
        .args(["--listen", "127.0.0.1:0", "--io-driver", "uring"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("io_uring is not available"));
}

// The benchmarks' ceiling binary frames HTTP like dlockd and answers every request
// `{"success":true}`, without locking: a second lock of one resource still "succeeds".
#[test]
fn ceiling_answers_everything_without_locking() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlockd-ceiling"));
    cmd.args(["--listen", "127.0.0.1:0", "--workers", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, _, addr) = launch(&mut cmd);
    let mut c = Client::connect(addr);
    assert_json(&c.lock("lockstore", "r", "a", 30), 200, LOCKED);
    assert_json(&c.lock("lockstore", "r", "b", 30), 200, LOCKED);
    assert_json(&c.get("/anything"), 200, LOCKED);
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
}

/// Reads what is left of a finished child's stderr.
fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        err.read_to_string(&mut text).expect("stderr");
    }
    text
}

// SIGHUP reloads nothing and says so, at info, instead of ending the process; the log level
// filters what is written; and at the most verbose level, after locks, a SIGHUP and a SIGTERM,
// neither the API token nor any lock owner appears in anything the process wrote.
#[test]
fn sighup_says_nothing_reloads_and_logs_hold_no_secrets() {
    const TOKEN: &str = "tok-9f3a-secret";
    const OWNER: &str = "owner-7c1e-private";
    let mut cmd = dlockd();
    cmd.env("DAPR_API_TOKEN", TOKEN)
        .args(["--listen", "127.0.0.1:0", "--log-level", "trace"]);
    let (mut child, line, addr) = launch(&mut cmd);
    assert!(!line.contains(TOKEN), "{line}");
    let mut c = Client::connect(addr);
    let lock = |owner: &str| {
        let body = lock_body("r", owner, 30);
        format!(
            "POST /v1.0-alpha1/lock/lockstore HTTP/1.1\r\nHost: x\r\ndapr-api-token: {TOKEN}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    c.send(lock(OWNER).as_bytes());
    assert_json(&c.read_response(), 200, LOCKED);
    signal(&child, "-HUP");
    // Still serving after SIGHUP: another owner is refused, the lease held.
    c.send(lock("other").as_bytes());
    let refused = c.read_response();
    assert_eq!(refused.status, 200);
    assert_eq!(refused.body_str(), r#"{"success":false}"#);
    // Its line is written before SIGTERM is sent, so the two cannot be taken in either order.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("SIGHUP") {
                let _ = tx.send(None);
            }
            all.push_str(&line);
            all.push('\n');
        }
        let _ = tx.send(Some(all));
    });
    let said = rx.recv_timeout(Duration::from_secs(5));
    assert_eq!(said, Ok(None), "no SIGHUP line");
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
    let err = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("stderr to its end")
        .expect("the whole of stderr");
    assert!(err.contains("info: SIGHUP: nothing is reloadable"), "{err}");
    assert!(err.contains("info: SIGTERM: draining"), "{err}");
    assert!(!err.contains(TOKEN) && !err.contains(OWNER), "{err}");

    // At `error`, the same signals write nothing.
    let (mut child, _, _) = spawn(&["--log-level", "error"]);
    signal(&child, "-HUP");
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
    let err = stderr_of(&mut child);
    assert!(
        !err.contains("SIGHUP") && !err.contains("draining"),
        "{err}"
    );
}
