//! Restart safety inside one test process: servers started and stopped cleanly in turn on one
//! data dir (the real binary, kill -9 and histories are in tests/restart.rs).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use common::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("dlockd-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fence(r: &Response) -> u64 {
    r.header("Dapr-Lock-Fence")
        .expect("a grant carries a fence")
        .parse()
        .expect("a decimal fence")
}

fn admin_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("admin connects");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the answer");
    text
}

#[test]
fn a_lease_outlives_a_run_without_its_store() {
    // Protects "never grant a lease that may still be held" when the configuration changes: a
    // lease of a store left out of one run is carried through it, and is still held when the
    // store comes back.
    let dir = TempDir::new("orphan");
    let both = ["--data-dir", dir.arg(), "--store", "a", "--store", "b"];
    let server = start(&both);
    let mut c = Client::connect(server.local_addr());
    let r = c.lock("b", "res", "holder", 60);
    assert_json(&r, 200, r#"{"success":true}"#);
    let first = fence(&r);
    assert!(server.shutdown(Duration::from_secs(5)));

    let only_a = start(&["--data-dir", dir.arg(), "--store", "a"]);
    let mut c = Client::connect(only_a.local_addr());
    assert_json(&c.lock("a", "res", "x", 60), 200, r#"{"success":true}"#);
    assert!(only_a.shutdown(Duration::from_secs(5)));

    let server = start(&both);
    let mut c = Client::connect(server.local_addr());
    assert_json(
        &c.lock("b", "res", "other", 60),
        200,
        r#"{"success":false}"#,
    );
    assert_json(
        &c.lock("a", "res", "other", 60),
        200,
        r#"{"success":false}"#,
    );
    assert_json(&c.unlock("b", "res", "holder"), 200, r#"{"status":0}"#);
    let r = c.lock("b", "res", "other", 60);
    assert_json(&r, 200, r#"{"success":true}"#);
    assert!(fence(&r) > first, "fences grow across runs");
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn debug_lease_shows_the_fence() {
    // Protects the operator's view: /debug/lease names the holder's fencing token with a data
    // dir, and none without.
    let dir = TempDir::new("debug");
    let server = start(&["--data-dir", dir.arg()]);
    let mut c = Client::connect(server.local_addr());
    let token = fence(&c.lock("lockstore", "r", "o", 60));
    let admin = server.metrics_addr().expect("an admin listener");
    let text = admin_get(admin, "/debug/lease?store=lockstore&resourceId=r");
    assert!(
        text.contains(r#""lockOwner":"o","remainingMs":"#)
            && text.ends_with(&format!(r#","fence":{token}}}"#)),
        "{text}"
    );
    assert!(server.shutdown(Duration::from_secs(5)));

    let plain = start(&[]);
    let mut c = Client::connect(plain.local_addr());
    let r = c.lock("lockstore", "r", "o", 60);
    assert_eq!(r.header("Dapr-Lock-Fence"), None);
    let admin = plain.metrics_addr().expect("an admin listener");
    let text = admin_get(admin, "/debug/lease?store=lockstore&resourceId=r");
    assert!(
        text.contains(r#""held":true"#) && !text.contains("fence"),
        "{text}"
    );
}
