//! `POST /v1.0-alpha1/lock/{store}/acquire` over real sockets: a try-lock that waits for the
//! lock, served in arrival order, handed over by a release or an expiry, ended by its deadline,
//! its client leaving, or shutdown. Each behaviour on both io drivers, with one worker and with
//! two (where a waiter's connection and its lock live on different workers).

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;

const STORE: &str = "lockstore";

fn acquire_body(resource: &str, owner: &str, expiry: i64, wait_ms: i64) -> String {
    format!(
        r#"{{"resourceId":"{resource}","lockOwner":"{owner}","expiryInSeconds":{expiry},"waitTimeoutMs":{wait_ms}}}"#
    )
}

fn acquire_path() -> String {
    format!("/v1.0-alpha1/lock/{STORE}/acquire")
}

/// Sends an acquire on its own connection without reading the answer.
fn send_acquire(addr: std::net::SocketAddr, resource: &str, owner: &str, wait_ms: i64) -> Client {
    let mut c = Client::connect(addr);
    c.send(post(&acquire_path(), &acquire_body(resource, owner, 60, wait_ms)).as_bytes());
    c
}

/// The holder answer for `resource`, as JSON.
fn holder(c: &mut Client, resource: &str, owner: &str) -> serde_json::Value {
    let r = c.post(
        &format!("/v1.0-alpha1/lock/{STORE}/holder"),
        &format!(r#"{{"resourceId":"{resource}","lockOwner":"{owner}"}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    serde_json::from_str(r.body_str()).expect("JSON")
}

/// Waits until `n` acquires wait on `resource` (the server says so; the lock is held).
fn until_waiting(c: &mut Client, resource: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = holder(c, resource, "");
        if held["waiters"].as_u64() == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "never {n} waiters: {held}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Nothing has arrived on `c` yet: its acquire still waits.
#[track_caller]
fn still_waiting(c: &mut Client) {
    c.stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let read = c.stream.read(&mut byte);
    c.stream.set_nonblocking(false).expect("blocking");
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("an answer (or a close) came early: {other:?}"),
    }
}

/// Two resources of the store, one owned by each shard of a 2-worker server (with one worker,
/// both live on it).
fn one_per_shard() -> Vec<String> {
    let map = dlockd::shard::ShardMap::new(2);
    (0..2)
        .map(|shard| {
            (0..)
                .map(|i| format!("res-{i}"))
                .find(|r| map.shard_of(dlockd::lease::StoreId(0), r.as_bytes()).0 == shard)
                .expect("a resource on each shard")
        })
        .collect()
}

// Without a wait (absent or 0) an acquire is a try-lock; a wait out of range or of the wrong
// type is daprd's malformed-request answer naming the field and the limit; the holder asking
// again is refused at once, however long it offers to wait.
#[test]
fn acquire_without_a_wait_is_a_try_lock() {
    let server = start(&["--max-wait", "5s"]);
    let mut c = Client::connect(server.local_addr());
    let path = acquire_path();
    let no_wait = r#"{"resourceId":"r","lockOwner":"a","expiryInSeconds":10}"#;
    assert_json(&c.post(&path, no_wait), 200, LOCKED);
    assert_json(
        &c.post(&path, &acquire_body("r", "b", 10, 0)),
        200,
        NOT_LOCKED,
    );
    let started = Instant::now();
    assert_json(
        &c.post(&path, &acquire_body("r", "a", 10, 5000)),
        200,
        NOT_LOCKED,
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no one waits for themselves"
    );
    let out_of_range = error_body(
        "ERR_MALFORMED_REQUEST",
        "WaitTimeoutMs is outside 0 to 5000 (--max-wait) in lock store lockstore",
    );
    for wait in [-1, 5001, i64::from(i32::MAX)] {
        let r = c.post(&path, &acquire_body("r", "b", 10, wait));
        assert_json(&r, 400, &out_of_range);
    }
    let r = c.post(
        &path,
        r#"{"resourceId":"r","lockOwner":"b","expiryInSeconds":10,"waitTimeoutMs":1.5}"#,
    );
    assert_json(
        &r,
        400,
        &error_body(
            "ERR_MALFORMED_REQUEST",
            "failed deserializing HTTP body: invalid value for int32 field waitTimeoutMs",
        ),
    );
    // The expiry is checked as a try-lock's, first.
    let r = c.post(&path, &acquire_body("r", "b", 0, 10));
    assert_json(
        &r,
        400,
        &error_body(
            "ERR_MALFORMED_REQUEST",
            "ExpiryInSeconds is not positive in lock store lockstore",
        ),
    );
    // daprd's try-lock takes no wait: the field is unknown there, and ignored.
    let r = c.lock(STORE, "other", "a", 10);
    assert_json(&r, 200, LOCKED);
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

// A release grants the lock to the waiter that came first, and to it alone, at once; the
// others wait on, in order, and each release hands it to the next.
#[test]
fn releases_hand_over_in_arrival_order() {
    for driver in DRIVERS {
        for workers in ["1", "2"] {
            let server = start(&["--io-driver", driver, "--workers", workers]);
            let addr = server.local_addr();
            let mut admin = Client::connect(addr);
            for resource in one_per_shard() {
                assert_json(&admin.lock(STORE, &resource, "holder", 60), 200, LOCKED);
                let mut waiters = Vec::new();
                for (i, owner) in ["w0", "w1", "w2"].into_iter().enumerate() {
                    waiters.push((owner, send_acquire(addr, &resource, owner, 30_000)));
                    until_waiting(&mut admin, &resource, i as u64 + 1);
                }
                let mut releaser = "holder";
                for i in 0..waiters.len() {
                    assert_json(
                        &admin.unlock(STORE, &resource, releaser),
                        200,
                        r#"{"status":0}"#,
                    );
                    let (owner, c) = &mut waiters[i];
                    assert_json(&c.read_response(), 200, LOCKED);
                    let held = holder(&mut admin, &resource, owner);
                    assert_eq!(held["ownedByCaller"], true, "{held}");
                    assert_eq!(held["waiters"], (waiters.len() - 1 - i) as u64);
                    for (_, later) in waiters.iter_mut().skip(i + 1) {
                        still_waiting(later);
                    }
                    releaser = waiters[i].0;
                }
                assert_json(
                    &admin.unlock(STORE, &resource, releaser),
                    200,
                    r#"{"status":0}"#,
                );
            }
            drop(admin);
            assert!(server.shutdown(Duration::from_secs(5)));
        }
    }
}

// The holder's lease ending hands the lock over (the waiter's answer comes once the lease has
// ended, long before its own deadline); a wait whose deadline comes first ends refused.
#[test]
fn an_expiry_hands_over_and_a_deadline_ends_the_wait() {
    for workers in ["1", "2"] {
        let server = start(&["--workers", workers]);
        let addr = server.local_addr();
        let mut c = Client::connect(addr);
        assert_json(&c.lock(STORE, "e", "a", 1), 200, LOCKED);
        let leased = Instant::now();
        let mut short = send_acquire(addr, "e", "short", 200);
        let mut long = send_acquire(addr, "e", "long", 30_000);
        assert_json(&short.read_response(), 200, NOT_LOCKED);
        assert!(leased.elapsed() >= Duration::from_millis(200));
        assert_json(&long.read_response(), 200, LOCKED);
        let waited = leased.elapsed();
        assert!(
            waited >= Duration::from_millis(990) && waited < Duration::from_secs(10),
            "granted after {waited:?}"
        );
        assert_eq!(holder(&mut c, "e", "long")["ownedByCaller"], true);
        drop(c);
        assert!(server.shutdown(Duration::from_secs(5)));
    }
}

// A waiter whose client goes leaves the queue and is never granted: the next release goes to
// the waiter behind it.
#[test]
fn a_waiter_that_leaves_is_never_granted() {
    for driver in DRIVERS {
        for workers in ["1", "2"] {
            let server = start(&["--io-driver", driver, "--workers", workers]);
            let addr = server.local_addr();
            let mut admin = Client::connect(addr);
            for resource in one_per_shard() {
                assert_json(&admin.lock(STORE, &resource, "holder", 60), 200, LOCKED);
                let gone = send_acquire(addr, &resource, "gone", 30_000);
                until_waiting(&mut admin, &resource, 1);
                let mut next = send_acquire(addr, &resource, "next", 30_000);
                until_waiting(&mut admin, &resource, 2);
                drop(gone);
                until_waiting(&mut admin, &resource, 1);
                assert_json(
                    &admin.unlock(STORE, &resource, "holder"),
                    200,
                    r#"{"status":0}"#,
                );
                assert_json(&next.read_response(), 200, LOCKED);
                assert_eq!(holder(&mut admin, &resource, "next")["ownedByCaller"], true);
                assert_json(
                    &admin.unlock(STORE, &resource, "next"),
                    200,
                    r#"{"status":0}"#,
                );
            }
            drop(admin);
            assert!(server.shutdown(Duration::from_secs(5)));
        }
    }
}

// Shutdown answers every waiter `{"success":false}` before the drain ends, and closes.
#[test]
fn shutdown_answers_every_waiter() {
    for workers in ["1", "2"] {
        let server = start(&["--workers", workers]);
        let addr = server.local_addr();
        let mut admin = Client::connect(addr);
        let mut waiters = Vec::new();
        for resource in one_per_shard() {
            assert_json(&admin.lock(STORE, &resource, "holder", 60), 200, LOCKED);
            waiters.push(send_acquire(addr, &resource, "w", 60_000));
            until_waiting(&mut admin, &resource, 1);
        }
        drop(admin);
        let stopping = std::thread::spawn(move || server.shutdown(Duration::from_secs(10)));
        for mut c in waiters {
            let r = c.read_response();
            assert_json(&r, 200, NOT_LOCKED);
            assert_eq!(r.header("connection"), Some("close"));
        }
        assert!(stopping.join().expect("shutdown thread"));
    }
}

// `--max-waiters` bounds the waiters of the whole process: over it an acquire fails at once
// with a clear error, and a slot freed is free again.
#[test]
fn max_waiters_bounds_the_process() {
    let server = start(&["--workers", "2", "--max-waiters", "2"]);
    let addr = server.local_addr();
    let mut admin = Client::connect(addr);
    assert_json(&admin.lock(STORE, "a", "holder", 60), 200, LOCKED);
    assert_json(&admin.lock(STORE, "b", "holder", 60), 200, LOCKED);
    let first = send_acquire(addr, "a", "w1", 30_000);
    until_waiting(&mut admin, "a", 1);
    let _second = send_acquire(addr, "b", "w2", 30_000);
    until_waiting(&mut admin, "b", 1);
    let mut over = Client::connect(addr);
    let r = over.post(&acquire_path(), &acquire_body("a", "w3", 60, 30_000));
    assert_json(
        &r,
        500,
        &error_body(
            "ERR_TRY_LOCK",
            "failed to try acquiring lock: too many waiters: 2 acquires wait already \
             (--max-waiters)",
        ),
    );
    // A wait of 0 never waits, so it is never refused for the bound.
    let r = over.post(&acquire_path(), &acquire_body("a", "w3", 60, 0));
    assert_json(&r, 200, NOT_LOCKED);
    drop(first);
    until_waiting(&mut admin, "a", 0);
    let mut again = send_acquire(addr, "a", "w3", 30_000);
    until_waiting(&mut admin, "a", 1);
    assert_json(&admin.unlock(STORE, "a", "holder"), 200, r#"{"status":0}"#);
    assert_json(&again.read_response(), 200, LOCKED);
    drop(admin);
    assert!(server.shutdown(Duration::from_secs(5)));
}
