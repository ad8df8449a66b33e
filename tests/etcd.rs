//! The `lock.etcd` store against a real etcd: the documented keys and values, each route's
//! effect in etcd, fencing tokens (create revisions) across resources and dlockd restarts,
//! two dlockd servers sharing locks, acquires that wait on a watch, authentication, an etcd
//! killed, stopped and brought back, a member of a three-member cluster killed, TLS, and the
//! gRPC faces. (Every contract case also runs on etcd in tests/contract.rs.)

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/grpc_client.rs"]
mod grpc_client;
#[path = "common/redis.rs"]
mod redis;

use std::time::{Duration, Instant};

use common::*;
use etcd::TestEtcd;
use redis::Components;

/// The store name and app id the tests use, and so the key head: `lock||checkout||`.
const STORE: &str = "etcdlock";
const APP: &str = "checkout";

fn key(resource: &str) -> String {
    format!("lock||{APP}||{resource}")
}

/// The component files of one `lock.etcd` store on `endpoints` (with `extra` metadata).
fn components(endpoints: &str, extra: &[(&str, &str)]) -> Components {
    Components::new().file(
        &format!("{STORE}.yaml"),
        &etcd::component(STORE, endpoints, extra),
    )
}

/// dlockd with the store of `components` and an in-memory store `mem`.
fn dlockd(components: &Components) -> dlockd::server::Server {
    start(&[
        "--resources-path",
        components.arg(),
        "--store",
        "mem",
        "--app-id",
        APP,
    ])
}

fn route(kind: &str) -> String {
    format!("/v1.0-alpha1/lock/{STORE}/{kind}")
}

fn renew(c: &mut Client, resource: &str, owner: &str, expiry: i64) -> Response {
    c.post(
        &route("renew"),
        &format!(
            r#"{{"resourceId":"{resource}","lockOwner":"{owner}","expiryInSeconds":{expiry}}}"#
        ),
    )
}

fn holder(c: &mut Client, resource: &str, owner: &str) -> serde_json::Value {
    let r = c.post(
        &route("holder"),
        &format!(r#"{{"resourceId":"{resource}","lockOwner":"{owner}"}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    serde_json::from_slice(&r.body).expect("a holder answer is JSON")
}

fn send_acquire(c: &mut Client, resource: &str, owner: &str, expiry: i64, wait_ms: i64) {
    c.send(
        post(
            &route("acquire"),
            &format!(
                r#"{{"resourceId":"{resource}","lockOwner":"{owner}","expiryInSeconds":{expiry},"waitTimeoutMs":{wait_ms}}}"#
            ),
        )
        .as_bytes(),
    );
}

/// The fencing token of a granted lock or renewal.
fn fence(r: &Response) -> u64 {
    r.header("dapr-lock-fence")
        .unwrap_or_else(|| panic!("a fence on {} {}", r.status, r.body_str()))
        .parse()
        .expect("a number")
}

/// Waits up to `within` for `check` to hold; false if it never did.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_route_does_what_the_docs_say_in_etcd() {
    // Protects the documented key layout and each route's effect in etcd: the value is the
    // owner, the key lives on a lease, the fence is the create revision (kept by renewals),
    // refusals and unlocks leave no lease behind, and the statuses are unlock's.
    let etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[]);
    let server = dlockd(&files);
    let mut c = Client::connect(server.local_addr());

    let granted = c.lock(STORE, "order-1", "alice", 60);
    assert_json(&granted, 200, LOCKED);
    let token = fence(&granted);
    assert_eq!(etcd.get(&key("order-1")).as_deref(), Some("alice"));
    let (created, lease) = etcd.revisions(&key("order-1")).expect("the key");
    assert_eq!(created, token, "the fence is the key's create revision");
    assert_ne!(lease, 0, "the key lives on a lease");

    // Refused: another owner, and the holder again (not re-entrant). Neither leaves a lease.
    assert_json(&c.lock(STORE, "order-1", "bob", 60), 200, NOT_LOCKED);
    assert_json(&c.lock(STORE, "order-1", "alice", 60), 200, NOT_LOCKED);
    assert!(
        eventually(Duration::from_secs(5), || etcd.leases() == 1),
        "refused try-locks revoke their leases: {} left",
        etcd.leases()
    );

    // Renewal: another owner's is refused; the owner's moves the key to a new lease and keeps
    // the fence; the old lease is revoked.
    assert_json(&renew(&mut c, "order-1", "bob", 60), 200, r#"{"status":2}"#);
    let renewed = renew(&mut c, "order-1", "alice", 120);
    assert_json(&renewed, 200, r#"{"status":0}"#);
    assert_eq!(fence(&renewed), token, "a renewal keeps the fence");
    let (created_after, lease_after) = etcd.revisions(&key("order-1")).expect("the key");
    assert_eq!(created_after, created);
    assert_ne!(lease_after, lease, "renewed onto a new lease");
    assert!(eventually(Duration::from_secs(5), || etcd.leases() == 1));

    // Holder: the time left comes from the lease; the owner is compared, never told.
    let held = holder(&mut c, "order-1", "alice");
    assert_eq!(held["locked"], true);
    assert_eq!(held["ownedByCaller"], true);
    let remaining = held["remainingMs"].as_u64().expect("remainingMs");
    assert!((110_000..=120_000).contains(&remaining), "{remaining}");
    assert_eq!(held["waiters"], 0);
    assert_eq!(holder(&mut c, "order-1", "bob")["ownedByCaller"], false);
    assert_eq!(holder(&mut c, "order-1", "")["ownedByCaller"], false);

    // A second resource has a greater fence: create revisions only grow.
    let other = c.lock(STORE, "order-2", "bob", 60);
    assert_json(&other, 200, LOCKED);
    assert!(fence(&other) > token);

    // Unlock: another owner's is refused and changes nothing; the owner's deletes the key and
    // revokes its lease; then there is no such lock.
    assert_json(&c.unlock(STORE, "order-1", "bob"), 200, r#"{"status":2}"#);
    assert_eq!(etcd.get(&key("order-1")).as_deref(), Some("alice"));
    assert_json(&c.unlock(STORE, "order-1", "alice"), 200, r#"{"status":0}"#);
    assert_eq!(etcd.get(&key("order-1")), None);
    assert_json(&c.unlock(STORE, "order-1", "alice"), 200, r#"{"status":1}"#);
    assert_json(
        &renew(&mut c, "order-1", "alice", 60),
        200,
        r#"{"status":1}"#,
    );
    assert_eq!(
        holder(&mut c, "order-1", "alice"),
        serde_json::json!({"locked": false})
    );
    assert_json(&c.unlock(STORE, "order-2", "bob"), 200, r#"{"status":0}"#);
    assert!(
        eventually(Duration::from_secs(5), || etcd.leases() == 0),
        "unlocks revoke their leases: {} left",
        etcd.leases()
    );

    // A lock granted again is a new key: a greater fence.
    let again = c.lock(STORE, "order-1", "carol", 60);
    assert!(fence(&again) > fence(&other));

    // The in-memory store beside it is untouched by all this.
    assert_json(&c.lock("mem", "order-1", "alice", 60), 200, LOCKED);
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn pipelined_requests_on_one_key_reach_etcd_in_their_order() {
    // Protects the order of a connection's pipelined requests on etcd: a try-lock (two calls
    // to etcd) and the unlock behind it (one call) on the same key, sent in one write, are
    // applied in that order, as on the other stores: every lock is granted and every unlock
    // releases it, and no key is left. Renewals and holder queries of the same key keep their
    // places too.
    let etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[]);
    let server = dlockd(&files);
    let mut c = Client::connect(server.local_addr());
    const ROUNDS: usize = 20;
    let mut burst = String::new();
    for i in 0..ROUNDS {
        let resource = format!("piped-{}", i % 3);
        burst.push_str(&post(
            &format!("/v1.0-alpha1/lock/{STORE}"),
            &lock_body(&resource, "alice", 30),
        ));
        burst.push_str(&post(
            &route("renew"),
            &format!(r#"{{"resourceId":"{resource}","lockOwner":"alice","expiryInSeconds":40}}"#),
        ));
        burst.push_str(&post(
            &format!("/v1.0-alpha1/unlock/{STORE}"),
            &unlock_body(&resource, "alice"),
        ));
    }
    c.send(burst.as_bytes());
    for i in 0..ROUNDS {
        assert_json(&c.read_response(), 200, LOCKED);
        let renewed = c.read_response();
        assert_eq!(renewed.body_str(), r#"{"status":0}"#, "round {i}: renewed");
        assert_json(&c.read_response(), 200, r#"{"status":0}"#);
    }
    for i in 0..3 {
        assert_eq!(etcd.get(&key(&format!("piped-{i}"))), None, "no key left");
    }
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn an_ended_lease_takes_its_lock_and_is_never_renewed() {
    // Protects expiry on etcd: the key goes with its lease (at etcd's minimum TTL at least),
    // after which the lock is free, the old owner's renewal and unlock answer 1, and another
    // owner gets it.
    let etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[]);
    let server = dlockd(&files);
    let mut c = Client::connect(server.local_addr());
    let taken = Instant::now();
    assert_json(&c.lock(STORE, "brief", "alice", 1), 200, LOCKED);
    assert!(
        eventually(Duration::from_secs(10), || etcd
            .get(&key("brief"))
            .is_none()),
        "the key went with its lease"
    );
    assert!(taken.elapsed() >= Duration::from_secs(1), "never early");
    assert_json(&renew(&mut c, "brief", "alice", 30), 200, r#"{"status":1}"#);
    assert_json(&c.unlock(STORE, "brief", "alice"), 200, r#"{"status":1}"#);
    assert_json(&c.lock(STORE, "brief", "bob", 30), 200, LOCKED);
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn two_servers_share_locks_and_fences_grow_across_restarts() {
    // Protects the point of lock.etcd: dlockd servers on one etcd cluster share their locks
    // (one's grant is refused by the other, only the holder's unlock works through either),
    // and fencing tokens keep growing when a dlockd restarts.
    let etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[]);
    let one = dlockd(&files);
    let two = dlockd(&files);
    let mut a = Client::connect(one.local_addr());
    let mut b = Client::connect(two.local_addr());
    let first = a.lock(STORE, "shared", "alice", 60);
    assert_json(&first, 200, LOCKED);
    assert_json(&b.lock(STORE, "shared", "bob", 60), 200, NOT_LOCKED);
    assert_json(&b.unlock(STORE, "shared", "bob"), 200, r#"{"status":2}"#);
    assert_eq!(holder(&mut b, "shared", "alice")["ownedByCaller"], true);
    assert_json(&b.unlock(STORE, "shared", "alice"), 200, r#"{"status":0}"#);
    let second = b.lock(STORE, "shared", "bob", 60);
    assert_json(&second, 200, LOCKED);
    assert!(fence(&second) > fence(&first));
    assert_json(&a.lock(STORE, "shared", "alice", 60), 200, NOT_LOCKED);

    // Server one stops and starts again: the lock is still bob's, and fences go on growing.
    drop(a);
    assert!(one.shutdown(Duration::from_secs(5)));
    let one = dlockd(&files);
    let mut a = Client::connect(one.local_addr());
    assert_json(&a.lock(STORE, "shared", "alice", 60), 200, NOT_LOCKED);
    let third = a.lock(STORE, "after-restart", "alice", 60);
    assert_json(&third, 200, LOCKED);
    assert!(fence(&third) > fence(&second));
    drop((a, b));
    assert!(one.shutdown(Duration::from_secs(5)));
    assert!(two.shutdown(Duration::from_secs(5)));
}

#[test]
fn acquires_wait_on_a_watch() {
    // Protects the acquire route on etcd: a waiter is granted when the holder unlocks (through
    // another dlockd) or when its lease ends, a wait that ends first is refused, the holder
    // never waits for itself, and a waiter whose client left never keeps the lock.
    let etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[]);
    let server = dlockd(&files);
    let other = dlockd(&files);
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock(STORE, "q", "alice", 60), 200, LOCKED);

    // A wait that ends first.
    let asked = Instant::now();
    send_acquire(&mut c, "q", "bob", 30, 300);
    assert_json(&c.read_response(), 200, NOT_LOCKED);
    assert!(asked.elapsed() >= Duration::from_millis(300));

    // The holder asking again is refused at once.
    let asked = Instant::now();
    send_acquire(&mut c, "q", "alice", 30, 20_000);
    assert_json(&c.read_response(), 200, NOT_LOCKED);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );

    // Granted when the holder unlocks through the other server.
    let mut waiter = Client::connect(server.local_addr());
    send_acquire(&mut waiter, "q", "bob", 30, 20_000);
    let mut elsewhere = Client::connect(other.local_addr());
    assert_json(
        &elsewhere.unlock(STORE, "q", "alice"),
        200,
        r#"{"status":0}"#,
    );
    let got = waiter.read_response();
    assert_json(&got, 200, LOCKED);
    assert_eq!(etcd.get(&key("q")).as_deref(), Some("bob"));
    assert_eq!(
        etcd.revisions(&key("q")).map(|(created, _)| created),
        Some(fence(&got))
    );

    // Granted when the holder's lease ends.
    assert_json(&c.lock(STORE, "brief", "alice", 1), 200, LOCKED);
    let asked = Instant::now();
    send_acquire(&mut waiter, "brief", "bob", 30, 20_000);
    assert_json(&waiter.read_response(), 200, LOCKED);
    assert!(asked.elapsed() < Duration::from_secs(15));
    assert_eq!(etcd.get(&key("brief")).as_deref(), Some("bob"));

    // A waiter whose client leaves: the lock, once released, is not kept by it.
    assert_json(&c.lock(STORE, "left", "alice", 60), 200, LOCKED);
    let mut leaving = Client::connect(server.local_addr());
    send_acquire(&mut leaving, "left", "dave", 30, 20_000);
    // Its wait has begun once the try it made is refused; a holder query is answered after it.
    std::thread::sleep(Duration::from_millis(200));
    drop(leaving);
    std::thread::sleep(Duration::from_millis(200));
    assert_json(&c.unlock(STORE, "left", "alice"), 200, r#"{"status":0}"#);
    assert!(
        eventually(Duration::from_secs(5), || etcd.get(&key("left")).is_none()),
        "a waiter that left holds nothing: {:?}",
        etcd.get(&key("left"))
    );
    assert_json(&c.lock(STORE, "left", "erin", 60), 200, LOCKED);

    drop((c, waiter, elsewhere));
    assert!(server.shutdown(Duration::from_secs(5)));
    assert!(other.shutdown(Duration::from_secs(5)));
}

#[test]
fn an_etcd_down_answers_500s_and_service_resumes() {
    // Protects failures: with etcd killed, or stopped, every request to the store is answered
    // 500 with the cause within operationTimeout (the in-memory store answers meanwhile), and
    // once etcd is back, grants resume without restarting dlockd; a lock taken before holds.
    let mut etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[("operationTimeout", "1s")]);
    let server = dlockd(&files);
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock(STORE, "kept", "alice", 60), 200, LOCKED);

    etcd.kill(0);
    let at = etcd.endpoint(0);
    let asked = Instant::now();
    let r = c.lock(STORE, "r", "bob", 30);
    assert_eq!(r.status, 500, "{}", r.body_str());
    let prefix = format!(
        r#"{{"errorCode":"ERR_TRY_LOCK","message":"failed to try acquiring lock: etcd at {at} is unavailable: "#
    );
    assert!(r.body_str().starts_with(&prefix), "{}", r.body_str());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    let r = c.unlock(STORE, "kept", "alice");
    assert_eq!(r.status, 500);
    assert!(
        r.body_str().starts_with(
            r#"{"errorCode":"ERR_UNLOCK","message":"failed to release lock: etcd at "#
        ),
        "{}",
        r.body_str()
    );
    assert_json(&c.lock("mem", "r", "bob", 30), 200, LOCKED);

    etcd.restart(0);
    assert!(
        eventually(Duration::from_secs(10), || c
            .lock(STORE, "r", "bob", 30)
            .status
            == 200),
        "grants resume once etcd is back"
    );
    assert_json(&c.lock(STORE, "kept", "bob", 30), 200, NOT_LOCKED);

    // A member that stops answering: 500 within operationTimeout (1 s), not a hang.
    etcd.signal(0, "-STOP");
    let asked = Instant::now();
    let r = c.lock(STORE, "s", "bob", 30);
    let took = asked.elapsed();
    assert_eq!(r.status, 500, "{}", r.body_str());
    assert!(
        r.body_str().contains("no answer within 1s"),
        "{}",
        r.body_str()
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Other stores do not wait for it.
    let asked = Instant::now();
    assert_json(&c.lock("mem", "s", "bob", 30), 200, LOCKED);
    assert!(asked.elapsed() < Duration::from_millis(500));
    etcd.signal(0, "-CONT");
    assert!(
        eventually(Duration::from_secs(10), || c
            .lock(STORE, "s", "bob", 30)
            .status
            == 200),
        "grants resume once etcd answers again"
    );
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_cluster_member_killed_leaves_locks_exclusive() {
    // Protects failover: on a three-member cluster, with a member killed (the leader or
    // not), dlockd reaches the others, a lock held before is still refused to another owner,
    // and new grants go on with growing fences.
    let mut etcd = TestEtcd::cluster();
    let files = components(&etcd.endpoints(), &[("operationTimeout", "2s")]);
    let server = dlockd(&files);
    let mut c = Client::connect(server.local_addr());
    let before = c.lock(STORE, "held", "alice", 60);
    assert_json(&before, 200, LOCKED);
    for victim in 0..2 {
        etcd.kill(victim);
        let mut after = None;
        assert!(
            eventually(Duration::from_secs(15), || {
                let r = c.lock(STORE, &format!("new-{victim}"), "bob", 60);
                let granted = r.status == 200;
                after = Some(r);
                granted
            }),
            "grants go on without member {victim}: {:?}",
            after.as_ref().map(Response::body_str)
        );
        let after = after.expect("an answer");
        assert_json(&after, 200, LOCKED);
        assert!(fence(&after) > fence(&before));
        assert_json(&c.lock(STORE, "held", "bob", 60), 200, NOT_LOCKED);
        etcd.restart(victim);
    }
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn credentials_are_etcds_users() {
    // Protects username/password: with authentication on in etcd, a store with the user's
    // password takes locks (its token is sent on every call, the watch's too); a wrong
    // password is answered 500 with etcd's refusal.
    let mut etcd = TestEtcd::start();
    etcd.enable_auth("s3cret");
    let good = components(
        &etcd.endpoints(),
        &[("username", "root"), ("password", "s3cret")],
    );
    let server = dlockd(&good);
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock(STORE, "a", "alice", 60), 200, LOCKED);
    assert_eq!(etcd.get(&key("a")).as_deref(), Some("alice"));
    let mut waiter = Client::connect(server.local_addr());
    send_acquire(&mut waiter, "a", "bob", 30, 20_000);
    assert_json(&c.unlock(STORE, "a", "alice"), 200, r#"{"status":0}"#);
    assert_json(&waiter.read_response(), 200, LOCKED);

    let bad = components(
        &etcd.endpoints(),
        &[("username", "root"), ("password", "wrong")],
    );
    let refused = dlockd(&bad);
    let mut d = Client::connect(refused.local_addr());
    let r = d.lock(STORE, "b", "alice", 60);
    assert_eq!(r.status, 500, "{}", r.body_str());
    assert!(
        r.body_str().contains("refused user \\\"root\\\""),
        "{}",
        r.body_str()
    );
    drop((c, waiter, d));
    assert!(server.shutdown(Duration::from_secs(5)));
    assert!(refused.shutdown(Duration::from_secs(5)));
}

#[test]
fn an_unreachable_etcd_is_said_at_start_and_unreadable_tls_files_stop_it() {
    // Protects start-up: an etcd that cannot be reached does not stop the start (its requests
    // get 500s until it can be), and TLS files that cannot be read stop it with an error
    // naming the store, the field and the file.
    let port = redis::free_port();
    let files = components(&format!("127.0.0.1:{port}"), &[("dialTimeout", "200ms")]);
    let server = dlockd(&files);
    let mut c = Client::connect(server.local_addr());
    let r = c.lock(STORE, "r", "alice", 30);
    assert_eq!(r.status, 500);
    assert!(
        r.body_str().contains("Connection refused"),
        "{}",
        r.body_str()
    );
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));

    let not_pem = Components::new().file("ca.pem", "not a certificate");
    let not_pem_path = not_pem.dir.join("ca.pem");
    for (ca, why) in [
        (
            "/nonexistent/ca.pem".to_string(),
            "tlsCa /nonexistent/ca.pem: cannot read it",
        ),
        (
            not_pem_path.to_string_lossy().into_owned(),
            "not a PEM file",
        ),
    ] {
        let tls = components("127.0.0.1:2379", &[("tlsCa", &ca)]);
        let config = match dlockd::config::Config::parse(
            ["--listen", "127.0.0.1:0", "--resources-path", tls.arg()].map(String::from),
            |_| None,
        ) {
            Ok(dlockd::config::Command::Run(config)) => *config,
            other => panic!("a configuration: {other:?}"),
        };
        let Err(refused) = dlockd::server::start(config) else {
            panic!("{ca} is refused")
        };
        let text = refused.to_string();
        assert!(text.starts_with("lock store etcdlock: tlsCa "), "{text}");
        assert!(text.contains(why), "{text}");
    }
}

#[test]
fn tls_with_a_client_certificate() {
    // Protects TLS: a member that serves TLS only and wants client certificates is reached
    // with tlsCa, tlsCert and tlsKey (its certificate verified for the endpoint's address),
    // acquires watch over it too; without the client certificate the handshake is refused and
    // requests get 500s.
    let etcd = TestEtcd::start_tls();
    let (ca, cert, key_file) = (
        etcd.tls_file("ca.crt"),
        etcd.tls_file("client.crt"),
        etcd.tls_file("client.key"),
    );
    let files = components(
        &etcd.endpoints(),
        &[("tlsCa", &ca), ("tlsCert", &cert), ("tlsKey", &key_file)],
    );
    let server = dlockd(&files);
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock(STORE, "t", "alice", 60), 200, LOCKED);
    assert_eq!(etcd.get(&key("t")).as_deref(), Some("alice"));
    let mut waiter = Client::connect(server.local_addr());
    send_acquire(&mut waiter, "t", "bob", 30, 20_000);
    assert_json(&c.unlock(STORE, "t", "alice"), 200, r#"{"status":0}"#);
    assert_json(&waiter.read_response(), 200, LOCKED);

    let without = components(
        &etcd.endpoints(),
        &[("tlsCa", &ca), ("operationTimeout", "2s")],
    );
    let refused = dlockd(&without);
    let mut d = Client::connect(refused.local_addr());
    let r = d.lock(STORE, "u", "alice", 60);
    assert_eq!(r.status, 500, "{}", r.body_str());
    assert_eq!(etcd.get(&key("u")), None);
    drop((c, waiter, d));
    assert!(server.shutdown(Duration::from_secs(5)));
    assert!(refused.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_shutdown_ends_the_waits_on_etcd() {
    // Protects the drain: an acquire waiting on etcd is answered {"success":false} (with
    // Connection: close) when the shutdown begins, and the server stops in time.
    let etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[]);
    let server = dlockd(&files);
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock(STORE, "busy", "alice", 60), 200, LOCKED);
    let mut waiter = Client::connect(server.local_addr());
    send_acquire(&mut waiter, "busy", "bob", 30, 30_000);
    // The wait has begun once its refused try is in etcd's past; give it that moment.
    std::thread::sleep(Duration::from_millis(300));
    drop(c);
    let asked = Instant::now();
    let stopper = std::thread::spawn(move || server.shutdown(Duration::from_secs(10)));
    let r = waiter.read_response();
    assert_json(&r, 200, NOT_LOCKED);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        stopper.join().expect("the shutdown thread"),
        "stopped in time"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(etcd.get(&key("busy")).as_deref(), Some("alice"));
}

/// `dapr.proto.runtime.v1.TryLockRequest`, as a client generates it.
#[derive(Clone, PartialEq, prost::Message)]
struct TryLockRequest {
    #[prost(string, tag = "1")]
    store_name: String,
    #[prost(string, tag = "2")]
    resource_id: String,
    #[prost(string, tag = "3")]
    lock_owner: String,
    #[prost(int32, tag = "4")]
    expiry_in_seconds: i32,
}

/// `dapr.proto.runtime.v1.TryLockResponse`, and `dlockd.v1.AcquireLockResponse` (the same
/// field).
#[derive(Clone, PartialEq, prost::Message)]
struct SuccessResponse {
    #[prost(bool, tag = "1")]
    success: bool,
}

/// `dlockd.v1.AcquireLockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct AcquireLockRequest {
    #[prost(string, tag = "1")]
    store_name: String,
    #[prost(string, tag = "2")]
    resource_id: String,
    #[prost(string, tag = "3")]
    lock_owner: String,
    #[prost(int32, tag = "4")]
    expiry_in_seconds: i32,
    #[prost(int32, tag = "5")]
    wait_timeout_ms: i32,
}

#[test]
fn grpc_callers_get_etcds_fences_and_wait_on_it() {
    // Protects the gRPC faces on an etcd store: TryLockAlpha1 and AcquireLock carry the create
    // revision as dapr-lock-fence, and an AcquireLock waits on etcd until the holder (over
    // HTTP) unlocks.
    let etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[]);
    let server = start(&[
        "--resources-path",
        files.arg(),
        "--app-id",
        APP,
        "--grpc-listen",
        "127.0.0.1:0",
    ]);
    let grpc = grpc_client::GrpcClient::connect(server.grpc_addr().expect("gRPC on"));
    let try_lock = |resource: &str, owner: &str| {
        grpc.call::<_, SuccessResponse>(
            "/dapr.proto.runtime.v1.Dapr/TryLockAlpha1",
            TryLockRequest {
                store_name: STORE.into(),
                resource_id: resource.into(),
                lock_owner: owner.into(),
                expiry_in_seconds: 60,
            },
        )
        .expect("TryLockAlpha1 answers")
    };
    let fence_of = |metadata: &tonic::metadata::MetadataMap| -> Option<u64> {
        metadata.get("dapr-lock-fence")?.to_str().ok()?.parse().ok()
    };
    let granted = try_lock("g", "alice");
    assert!(granted.get_ref().success);
    let created = etcd.revisions(&key("g")).map(|(created, _)| created);
    assert_eq!(fence_of(granted.metadata()), created);
    let refused = try_lock("g", "bob");
    assert!(!refused.get_ref().success);
    assert_eq!(fence_of(refused.metadata()), None);

    let addr = server.local_addr();
    let unlocker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut c = Client::connect(addr);
        assert_json(&c.unlock(STORE, "g", "alice"), 200, r#"{"status":0}"#);
    });
    let asked = Instant::now();
    let acquired = grpc
        .call::<_, SuccessResponse>(
            "/dlockd.v1.LockExtensions/AcquireLock",
            AcquireLockRequest {
                store_name: STORE.into(),
                resource_id: "g".into(),
                lock_owner: "bob".into(),
                expiry_in_seconds: 60,
                wait_timeout_ms: 20_000,
            },
        )
        .expect("AcquireLock answers");
    unlocker.join().expect("the unlock");
    assert!(acquired.get_ref().success);
    assert!(asked.elapsed() >= Duration::from_millis(300));
    let created = etcd.revisions(&key("g")).map(|(created, _)| created);
    assert_eq!(fence_of(acquired.metadata()), created);
    assert_eq!(etcd.get(&key("g")).as_deref(), Some("bob"));
    drop(grpc);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn waiters_are_served_in_arrival_order_across_servers() {
    // Protects the queue: acquires that wait on one lock, through two dlockd servers, are
    // granted in the order they joined it, one release each; the holder query counts them.
    let etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[]);
    let one = dlockd(&files);
    let two = dlockd(&files);
    let mut c = Client::connect(one.local_addr());
    assert_json(&c.lock(STORE, "fifo", "alice", 60), 200, LOCKED);
    let mut waiters = Vec::new();
    for (n, (owner, server)) in [("bob", &one), ("carol", &two), ("dave", &one)]
        .into_iter()
        .enumerate()
    {
        let mut w = Client::connect(server.local_addr());
        send_acquire(&mut w, "fifo", owner, 60, 30_000);
        // The next one is sent only once this one has its place.
        assert!(
            eventually(Duration::from_secs(5), || holder(&mut c, "fifo", "")
                ["waiters"]
                == n + 1),
            "{owner} joins the queue"
        );
        waiters.push((owner, w));
    }
    let mut holder_now = "alice";
    for (n, (owner, mut w)) in waiters.into_iter().enumerate() {
        assert_json(&c.unlock(STORE, "fifo", holder_now), 200, r#"{"status":0}"#);
        assert_json(&w.read_response(), 200, LOCKED);
        assert_eq!(etcd.get(&key("fifo")).as_deref(), Some(owner));
        let held = holder(&mut c, "fifo", owner);
        assert_eq!(held["ownedByCaller"], true);
        assert_eq!(held["waiters"], 2 - n, "the others still wait");
        holder_now = owner;
    }
    drop(c);
    assert!(one.shutdown(Duration::from_secs(5)));
    assert!(two.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_try_lock_never_takes_a_lock_from_its_queue() {
    // Protects the queue's precedence and its cleanup: while a waiter's key is in etcd (here
    // one left by a dlockd that died while waiting), a try-lock of the free lock is refused;
    // the key ends with its lease and the lock can be taken; a wait that runs out leaves the
    // queue.
    let etcd = TestEtcd::start();
    let files = components(&etcd.endpoints(), &[]);
    let server = dlockd(&files);
    let mut c = Client::connect(server.local_addr());
    let granted = etcd.ctl(&["lease", "grant", "60"]).expect("a lease");
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("lease <ID> granted with TTL(60s)")
        .to_string();
    let ghost = format!("{}||waiter||{lease}", key("queued"));
    etcd.ctl(&["put", "--lease", &lease, &ghost, "ghost"])
        .expect("a waiter key");
    assert_json(&c.lock(STORE, "queued", "alice", 60), 200, NOT_LOCKED);
    assert_eq!(
        holder(&mut c, "queued", "alice"),
        serde_json::json!({"locked": false})
    );
    etcd.ctl(&["lease", "revoke", &lease])
        .expect("the lease ends");
    assert_json(&c.lock(STORE, "queued", "alice", 60), 200, LOCKED);

    // A wait that runs out gives its place up.
    send_acquire(&mut c, "queued", "bob", 60, 300);
    assert_json(&c.read_response(), 200, NOT_LOCKED);
    assert!(
        eventually(Duration::from_secs(5), || holder(&mut c, "queued", "")
            ["waiters"]
            == 0),
        "the place is given up"
    );
    assert_json(&c.unlock(STORE, "queued", "alice"), 200, r#"{"status":0}"#);
    assert_json(&c.lock(STORE, "queued", "bob", 60), 200, LOCKED);
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}
