//! The real `dlockd` binary explaining, at `--log-level debug`, a refusal that a misspelt
//! field or an empty body causes: the answer stays daprd's, the log names the unknown keys and
//! never a value.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use common::*;

/// A lock owner the log must never show.
const OWNER: &str = "secret-owner-x";

/// The real binary, killed on drop, with its whole stderr collected.
struct Dlockd {
    child: Child,
    addr: SocketAddr,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Dlockd {
    /// Starts `dlockd --listen 127.0.0.1:0 --metrics-listen off --grpc-listen off <args>`,
    /// with no setting from the environment, and reads the address from its start-up line.
    fn spawn(args: &[&str]) -> Dlockd {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlockd"));
        for (name, _) in std::env::vars() {
            if name.starts_with("DLOCKD_") || name.starts_with("DAPR_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--grpc-listen",
            "off",
            "--workers",
            "1",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn dlockd");
        // Read for the server's whole life, so that a full pipe never blocks it.
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all);
            all
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("start-up line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dlockd did not start: start-up line {line:?}");
        };
        Dlockd {
            child,
            addr,
            stderr: Some(stderr),
        }
    }

    /// Stops the server and returns everything it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().expect("stderr not read yet");
        String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned()
    }
}

impl Drop for Dlockd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The misspelt try-lock: `resourceID` and `expiryInSecond` are unknown to protojson.
fn misspelt_lock() -> String {
    format!(r#"{{"resourceID":"r","lockOwner":"{OWNER}","expiryInSecond":10}}"#)
}

/// Sends the requests both tests send, checking that each answer is daprd's exactly.
fn send_the_requests(addr: SocketAddr) {
    let mut c = Client::connect(addr);
    assert_json(
        &c.post("/v1.0-alpha1/lock/lockstore", &misspelt_lock()),
        400,
        &error_body(
            "ERR_MALFORMED_REQUEST",
            "ExpiryInSeconds is not positive in lock store lockstore",
        ),
    );
    assert_json(
        &c.post("/v1.0-alpha1/unlock/lockstore", ""),
        400,
        &error_body(
            "ERR_MALFORMED_REQUEST",
            "ResourceId is empty in lock store lockstore",
        ),
    );
    // A granted lock and its release explain nothing, and must not log the owner either.
    assert_json(&c.lock("lockstore", "r", OWNER, 10), 200, LOCKED);
    assert_json(&c.unlock("lockstore", "r", OWNER), 200, r#"{"status":0}"#);
}

// Protects the debug line over the real binary: the misspelt try-lock gets daprd's exact
// answer and one debug line naming both unknown keys, the empty unlock one line saying the
// body was empty, and the owner appears nowhere in the log.
#[test]
fn debug_names_the_unknown_fields_and_never_the_owner() {
    let server = Dlockd::spawn(&["--log-level", "debug"]);
    send_the_requests(server.addr);
    let log = server.stop();
    let expected = [
        "dlockd: debug: try-lock on lock store \"lockstore\": the body's unknown fields \
         \"resourceID\", \"expiryInSecond\" were ignored (protojson drops unknown fields); the \
         answer ExpiryInSeconds is not positive may come from a misspelt name",
        "dlockd: debug: unlock on lock store \"lockstore\": the body was empty (0 bytes), so \
         every field was empty; the answer ResourceId is empty comes from that",
    ];
    for line in expected {
        assert_eq!(
            log.lines().filter(|l| *l == line).count(),
            1,
            "{line:?} once in the log:\n{log}"
        );
    }
    assert_eq!(
        log.lines().filter(|l| l.contains("unknown field")).count(),
        1,
        "{log}"
    );
    assert!(!log.contains(OWNER), "the owner is in the log:\n{log}");
}

// Protects the default: at the info level the same requests get the same answers and write
// no explaining line.
#[test]
fn info_writes_no_explaining_line() {
    let server = Dlockd::spawn(&[]);
    send_the_requests(server.addr);
    let log = server.stop();
    assert!(!log.contains("dlockd: debug:"), "{log}");
    assert!(!log.contains("unknown field"), "{log}");
    assert!(!log.contains("the body was empty"), "{log}");
    assert!(!log.contains(OWNER), "{log}");
}
