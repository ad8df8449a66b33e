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
    let mut child = dlockd()
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .spawn()
        .expect("spawn dlockd");
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

// The start-up line names version, address, workers, driver and stores; SIGTERM drains and
// exits 0 while a connection is open; SIGINT too.
#[test]
fn start_up_line_and_graceful_exit() {
    for sig in ["-TERM", "-INT"] {
        let (mut child, line, addr) = spawn(&["--workers", "2", "--store", "a", "--store", "b"]);
        assert!(line.contains(env!("CARGO_PKG_VERSION")), "{line}");
        assert!(line.contains("2 workers"), "{line}");
        assert!(line.contains("driver"), "{line}");
        assert!(line.contains("stores: a, b"), "{line}");
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
    }
}

// DAPR_HTTP_PORT is honoured when no --listen is given.
#[test]
fn dapr_http_port() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        l.local_addr().expect("addr").port()
    };
    let mut child = dlockd()
        .env("DAPR_HTTP_PORT", port.to_string())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("start-up line");
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
    c.send(head.as_bytes());
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
