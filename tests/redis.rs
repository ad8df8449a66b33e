//! The `lock.redis` store against a real `redis-server`: daprd's key layout both ways, its
//! commands' effects, credentials and databases, and failures: a Redis killed and restarted
//! under load, a Redis that stops answering, an unreachable one, and component files that
//! cannot be used. (Every contract case also runs through Redis in tests/contract.rs.)

mod common;
#[path = "common/redis.rs"]
mod redis;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use redis::{Components, TestRedis, TestSentinel};

/// dlockd with one Redis store `redislock` on `redis` (plus `extra` metadata) and an in-memory
/// store `mem`, under app id `checkout`.
fn dlockd_on(redis: &TestRedis, extra: &[(&str, &str)]) -> (dlockd::server::Server, Components) {
    let host = format!("127.0.0.1:{}", redis.port);
    let components = Components::new().redis("redislock", &host, extra);
    let server = start(&[
        "--resources-path",
        components.arg(),
        "--store",
        "mem",
        "--app-id",
        "checkout",
    ]);
    (server, components)
}

/// daprd's unlock script, as a daprd sidecar would run it.
const DAPRD_UNLOCK: &str = "local v = redis.call(\"get\",KEYS[1]); if v==false then return -1 end; if v~=ARGV[1] then return -2 else return redis.call(\"del\",KEYS[1]) end";

#[test]
fn acquire_polls_redis() {
    // Protects the acquire route on a Redis store, which keeps no waiters: a wait ends granted
    // once the holder's key is gone (deleted by a daprd sidecar's unlock script here), refused
    // when its deadline comes first, and a try-lock without a wait.
    let redis = TestRedis::start();
    let (server, _components) = dlockd_on(&redis, &[]);
    let addr = server.local_addr();
    let acquire = |c: &mut Client, resource: &str, owner: &str, wait_ms: i64| {
        c.send(
            post(
                "/v1.0-alpha1/lock/redislock/acquire",
                &format!(
                    r#"{{"resourceId":"{resource}","lockOwner":"{owner}","expiryInSeconds":30,"waitTimeoutMs":{wait_ms}}}"#
                ),
            )
            .as_bytes(),
        )
    };
    let mut c = Client::connect(addr);
    assert_json(&c.lock("redislock", "q", "a", 30), 200, LOCKED);
    let started = Instant::now();
    acquire(&mut c, "q", "b", 150);
    assert_json(&c.read_response(), 200, NOT_LOCKED);
    assert!(started.elapsed() >= Duration::from_millis(150));
    acquire(&mut c, "q", "b", 0);
    assert_json(&c.read_response(), 200, NOT_LOCKED);
    let mut waiter = Client::connect(addr);
    acquire(&mut waiter, "q", "b", 30_000);
    let deleted = redis.cmd(&["EVAL", DAPRD_UNLOCK, "1", "lock||checkout||q", "a"]);
    assert_eq!(deleted, ":1");
    assert_json(&waiter.read_response(), 200, LOCKED);
    assert_eq!(redis.cmd(&["GET", "lock||checkout||q"]), "b");
    drop(c);
    drop(waiter);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_waiter_that_leaves_mid_try_keeps_no_lock() {
    // Protects the unlock of a poll's grant that came after its client left: Redis keeps no
    // waiters, so a lock granted to a try that was in flight when the client went would stay
    // with nobody until it expires. Here the holder's key is deleted and Redis then sleeps
    // 2.5 s (DEBUG SLEEP, pipelined behind the DEL), so that the waiter's next try (at most
    // 100 ms after the DEL) waits in Redis while the waiter's client leaves (1 s after the
    // DEL). When Redis wakes, the try is granted, and dlockd unlocks it at once.
    let redis = TestRedis::start_with(&["--enable-debug-command", "yes"], None);
    let (server, _components) = dlockd_on(&redis, &[]);
    let key = "lock||checkout||m";
    let calls = |command: &str| -> u64 {
        let stats = redis.cmd(&["INFO", "commandstats"]);
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().expect("a count"))
    };
    let mut holder = Client::connect(server.local_addr());
    assert_json(&holder.lock("redislock", "m", "a", 30), 200, LOCKED);
    let mut waiter = Client::connect(server.local_addr());
    waiter.send(
        post(
            "/v1.0-alpha1/lock/redislock/acquire",
            r#"{"resourceId":"m","lockOwner":"b","expiryInSeconds":30,"waitTimeoutMs":20000}"#,
        )
        .as_bytes(),
    );
    // The waiter polls: a try of its own has come after the holder's SET.
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls("set") < 2 {
        assert!(Instant::now() < deadline, "the waiter never tried");
        std::thread::sleep(Duration::from_millis(5));
    }
    let unlocks_before = calls("evalsha") + calls("eval");
    let mut raw = std::net::TcpStream::connect(redis.addr()).expect("connect to redis");
    let pipeline = format!(
        "*2\r\n$3\r\nDEL\r\n${}\r\n{key}\r\n*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$3\r\n2.5\r\n",
        key.len()
    );
    std::io::Write::write_all(&mut raw, pipeline.as_bytes()).expect("send");
    std::thread::sleep(Duration::from_secs(1));
    drop(waiter);
    // Once Redis wakes: the waiter's try was granted and then unlocked by dlockd.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let unlocked = calls("evalsha") + calls("eval") > unlocks_before;
        if unlocked && redis.cmd(&["EXISTS", key]) == ":0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock stayed with the waiter that left: {:?}",
            redis.cmd(&["GET", key])
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_json(&holder.lock("redislock", "m", "c", 30), 200, LOCKED);
    drop(holder);
    drop(raw);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn renew_and_holder_ask_redis() {
    // Protects dlockd's own routes on a Redis store: a renewal sets the key's time to live in
    // Redis when the owner holds it (by dlockd or by a daprd sidecar: the same key), answers
    // 2 for another owner and 1 for no key, and a holder query reads the key's owner and time
    // left from Redis, never telling the owner.
    let redis = TestRedis::start();
    let (server, _components) = dlockd_on(&redis, &[]);
    let mut c = Client::connect(server.local_addr());
    let renew = |c: &mut Client, resource: &str, owner: &str, expiry: i64| {
        c.post(
            "/v1.0-alpha1/lock/redislock/renew",
            &format!(
                r#"{{"resourceId":"{resource}","lockOwner":"{owner}","expiryInSeconds":{expiry}}}"#
            ),
        )
    };
    let holder = |c: &mut Client, body: &str| c.post("/v1.0-alpha1/lock/redislock/holder", body);
    assert_json(&renew(&mut c, "r", "a", 10), 200, r#"{"status":1}"#);
    assert_json(&c.lock("redislock", "r", "a", 10), 200, LOCKED);
    assert_json(&renew(&mut c, "r", "b", 500), 200, r#"{"status":2}"#);
    let ttl = || -> i64 {
        let answer = redis.cmd(&["TTL", "lock||checkout||r"]);
        answer.trim_start_matches(':').parse().expect("a TTL")
    };
    assert!(ttl() <= 10);
    assert_json(&renew(&mut c, "r", "a", 500), 200, r#"{"status":0}"#);
    let ttl = ttl();
    assert!((490..=500).contains(&ttl), "{ttl}");
    assert_eq!(redis.cmd(&["GET", "lock||checkout||r"]), "a");
    // A daprd sidecar's lock, renewed and read through dlockd.
    assert_eq!(
        redis.cmd(&["SET", "lock||checkout||d", "sidecar", "EX", "30", "NX"]),
        "+OK"
    );
    assert_json(&renew(&mut c, "d", "sidecar", 300), 200, r#"{"status":0}"#);
    let mine = holder(&mut c, r#"{"resourceId":"d","lockOwner":"sidecar"}"#);
    assert_eq!(mine.status, 200);
    let body = mine.body_str();
    assert!(
        body.starts_with(r#"{"locked":true,"ownedByCaller":true,"remainingMs":"#),
        "{body}"
    );
    let value: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let left = value["remainingMs"].as_u64().expect("remainingMs");
    assert!((290_000..=300_000).contains(&left), "{left}");
    let theirs = holder(&mut c, r#"{"resourceId":"d"}"#);
    assert!(
        theirs.body_str().contains(r#""ownedByCaller":false"#)
            && !theirs.body_str().contains("sidecar"),
        "{}",
        theirs.body_str()
    );
    assert_json(
        &holder(&mut c, r#"{"resourceId":"none"}"#),
        200,
        r#"{"locked":false}"#,
    );
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn locks_are_shared_with_daprd_sidecars() {
    // Protects interoperability: a lock a daprd sidecar took (its key layout written straight
    // into Redis) is held for dlockd's clients, and one dlockd took is held for daprd: the
    // same key, value and expiry.
    let redis = TestRedis::start();
    let (server, _components) = dlockd_on(&redis, &[]);
    let mut c = Client::connect(server.local_addr());

    // daprd → dlockd: keyPrefix appid (the default) with app id "checkout".
    assert_eq!(
        redis.cmd(&[
            "SET",
            "lock||checkout||order-1",
            "sidecar-a",
            "EX",
            "30",
            "NX"
        ]),
        "+OK"
    );
    assert_json(
        &c.lock("redislock", "order-1", "dlockd-b", 30),
        200,
        NOT_LOCKED,
    );
    assert_json(
        &c.unlock("redislock", "order-1", "dlockd-b"),
        200,
        r#"{"status":2}"#,
    );
    assert_json(
        &c.unlock("redislock", "order-1", "sidecar-a"),
        200,
        r#"{"status":0}"#,
    );
    assert_eq!(redis.cmd(&["EXISTS", "lock||checkout||order-1"]), ":0");

    // dlockd → daprd.
    assert_json(&c.lock("redislock", "order-2", "dlockd-a", 7), 200, LOCKED);
    assert_eq!(redis.cmd(&["GET", "lock||checkout||order-2"]), "dlockd-a");
    let ttl: i64 = redis.cmd(&["TTL", "lock||checkout||order-2"])[1..]
        .parse()
        .expect("a TTL");
    assert!(
        (6..=7).contains(&ttl),
        "SET ... EX 7 gives a TTL of 7, not {ttl}"
    );
    // A sidecar's SET NX is refused, and its unlock script releases only for the owner.
    assert_eq!(
        redis.cmd(&[
            "SET",
            "lock||checkout||order-2",
            "sidecar-a",
            "EX",
            "30",
            "NX"
        ]),
        "$-1"
    );
    let unlock =
        |owner: &str| redis.cmd(&["EVAL", DAPRD_UNLOCK, "1", "lock||checkout||order-2", owner]);
    assert_eq!(unlock("sidecar-a"), ":-2");
    assert_eq!(unlock("dlockd-a"), ":1");
    assert_json(&c.lock("redislock", "order-2", "dlockd-c", 30), 200, LOCKED);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn key_prefixes_follow_daprd() {
    // Protects the contract's key table on a real Redis: each keyPrefix strategy writes the
    // key a daprd sidecar with the same component would.
    let redis = TestRedis::start();
    for (prefix, key) in [
        ("name", "lock||redislock||r"),
        ("none", "lock||r"),
        ("Orders", "lock||orders||r"),
        ("appid", "lock||checkout||r"),
    ] {
        let (server, _components) = dlockd_on(&redis, &[("keyPrefix", prefix)]);
        let mut c = Client::connect(server.local_addr());
        assert_json(&c.lock("redislock", "r", "owner", 30), 200, LOCKED);
        assert_eq!(redis.cmd(&["GET", key]), "owner", "keyPrefix {prefix}");
        assert_json(&c.unlock("redislock", "r", "owner"), 200, r#"{"status":0}"#);
        assert!(server.shutdown(Duration::from_secs(5)));
    }
}

#[test]
fn a_host_name_is_resolved_off_the_worker() {
    // Protects redisHost given as a name: it is resolved (on a thread of its own) and each of
    // its addresses is tried, so `localhost` reaches a Redis bound to 127.0.0.1 even where it
    // resolves to ::1 first.
    let redis = TestRedis::start();
    let components =
        Components::new().redis("redislock", &format!("localhost:{}", redis.port), &[]);
    let server = start(&["--resources-path", components.arg()]);
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock("redislock", "named", "o", 30), 200, LOCKED);
    assert_eq!(redis.cmd(&["GET", "lock||named"]), "o");
    let unknown = Components::new().redis("redislock", "no-such-host.invalid:6379", &[]);
    let server = start(&["--resources-path", unknown.arg()]);
    let mut c = Client::connect(server.local_addr());
    let r = c.lock("redislock", "r", "o", 30);
    assert_eq!(r.status, 500);
    // A resolver that cannot answer at all is cut short by the connect timeout instead.
    assert!(
        r.body_str().contains("cannot resolve no-such-host.invalid")
            || r.body_str().contains("no connection within"),
        "{}",
        r.body_str()
    );
}

#[test]
fn enable_tls_speaks_tls_and_verifies_the_server() {
    // Protects enableTLS: dlockd connects over TLS, verifies the server's certificate against
    // the roots it is given (SSL_CERT_FILE), and locks as over plain TCP; without the CA it
    // refuses the server, with a clear 500.
    let redis = TestRedis::start_tls();
    let ca = redis.tls_ca().expect("a TLS server").to_path_buf();
    let components = Components::new().redis(
        "redislock",
        &format!("localhost:{}", redis.port),
        &[("enableTLS", "true")],
    );
    let spawn = |cert_file: &std::path::Path| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dlockd"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
            .args(["--grpc-listen", "off", "--resources-path", components.arg()])
            .env("SSL_CERT_FILE", cert_file)
            .env_remove("SSL_CERT_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dlockd runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("a start-up line");
        let addr: std::net::SocketAddr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("an address in the start-up line");
        (child, addr)
    };
    let (mut child, addr) = spawn(&ca);
    let mut c = Client::connect(addr);
    assert_json(&c.lock("redislock", "secure", "o", 30), 200, LOCKED);
    assert_eq!(redis.cmd(&["GET", "lock||secure"]), "o");
    assert_json(
        &c.unlock("redislock", "secure", "o"),
        200,
        r#"{"status":0}"#,
    );
    let _ = child.kill();
    let _ = child.wait();

    // A CA that did not sign the server's certificate: refused.
    let other = TestRedis::start_tls();
    let (mut child, addr) = spawn(other.tls_ca().expect("a TLS server"));
    let mut c = Client::connect(addr);
    let r = c.lock("redislock", "secure", "o", 30);
    assert_eq!(r.status, 500, "{}", r.body_str());
    assert!(
        r.body_str().contains("TLS with localhost"),
        "{}",
        r.body_str()
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn credentials_and_database_are_used() {
    // Protects redisPassword and redisDB: dlockd authenticates and writes into the database
    // the component names; a wrong password is a clear 500 naming AUTH.
    let redis = TestRedis::start_with(&["--requirepass", "s3cret"], Some("s3cret"));
    let (server, _components) = dlockd_on(&redis, &[("redisPassword", "s3cret"), ("redisDB", "2")]);
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock("redislock", "r", "owner", 30), 200, LOCKED);
    let in_db2 = "redis.call('SELECT', 2); return redis.call('GET', KEYS[1])";
    assert_eq!(
        redis.cmd(&["EVAL", in_db2, "1", "lock||checkout||r"]),
        "owner"
    );
    assert_eq!(
        redis.cmd(&["GET", "lock||checkout||r"]),
        "$-1",
        "not in db 0"
    );
    assert!(server.shutdown(Duration::from_secs(5)));

    let (server, _components) = dlockd_on(&redis, &[("redisPassword", "wrong")]);
    let mut c = Client::connect(server.local_addr());
    let r = c.lock("redislock", "r", "owner", 30);
    assert_eq!(r.status, 500, "{}", r.body_str());
    assert!(
        r.body_str().contains("ERR_TRY_LOCK") && r.body_str().contains("AUTH refused"),
        "{}",
        r.body_str()
    );
    // The in-memory store beside it is unaffected.
    assert_json(&c.lock("mem", "r", "owner", 30), 200, LOCKED);
}

/// One client's loop: lock and unlock its own resource until `until`; returns (ok, 500s,
/// slowest answer, the 500 bodies seen).
fn churn(
    addr: std::net::SocketAddr,
    resource: String,
    until: Instant,
) -> (u32, u32, Duration, Vec<String>) {
    let mut c = Client::connect(addr);
    let (mut ok, mut failed, mut slowest) = (0, 0, Duration::ZERO);
    let mut bodies = Vec::new();
    while Instant::now() < until {
        for unlock in [false, true] {
            let sent = Instant::now();
            let r = if unlock {
                c.unlock("redislock", &resource, "me")
            } else {
                c.lock("redislock", &resource, "me", 30)
            };
            slowest = slowest.max(sent.elapsed());
            match r.status {
                200 => ok += 1,
                500 => {
                    failed += 1;
                    if bodies.len() < 4 {
                        bodies.push(r.body_str().to_string());
                    }
                }
                other => panic!("unexpected {other}: {}", r.body_str()),
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (ok, failed, slowest, bodies)
}

/// Waits, until `deadline`, for the Redis store to grant `resource` again.
fn granted_again(c: &mut Client, resource: &str, deadline: Instant) {
    loop {
        let r = c.lock("redislock", resource, "me", 30);
        if r.status == 200 {
            assert_json(&r, 200, LOCKED);
            return;
        }
        assert!(Instant::now() < deadline, "not recovered: {}", r.body_str());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_redis_restart_under_load_gives_clear_500s_then_recovers() {
    // Protects the failure path: while Redis is down every request is answered at once with a
    // 500 naming the cause (never a hang), and once it is back dlockd serves again by itself.
    let mut redis = TestRedis::start();
    let (server, _components) = dlockd_on(&redis, &[]);
    let addr = server.local_addr();
    let start = Instant::now();
    let until = start + Duration::from_millis(2500);
    let clients: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || churn(addr, format!("load-{i}"), until)))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    redis.kill();
    std::thread::sleep(Duration::from_millis(700));
    redis.restart();
    let back = Instant::now();
    let mut results = Vec::new();
    for client in clients {
        results.push(client.join().expect("a client thread"));
    }
    let failed: u32 = results.iter().map(|r| r.1).sum();
    let slowest = results.iter().map(|r| r.2).max().unwrap_or_default();
    let bodies: Vec<&String> = results.iter().flat_map(|r| &r.3).collect();
    assert!(failed > 0, "the outage was noticed");
    for body in &bodies {
        assert!(
            (body.contains("ERR_TRY_LOCK") || body.contains("ERR_UNLOCK"))
                && body.contains("redis at 127.0.0.1"),
            "{body}"
        );
    }
    assert!(
        slowest < Duration::from_millis(1500),
        "an answer took {slowest:?} during the outage"
    );
    // Served again without a restart of dlockd: the backoff is at most a second.
    granted_again(
        &mut Client::connect(addr),
        "after",
        back + Duration::from_secs(5),
    );
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_stalled_redis_fails_its_requests_and_spares_other_stores() {
    // Protects bounded waits: a Redis that stops answering (SIGSTOP) fails its in-flight
    // requests after the reply timeout, while the in-memory store on the same worker keeps
    // answering at once; after SIGCONT the Redis store serves again.
    let redis = TestRedis::start();
    let (server, _components) = dlockd_on(&redis, &[]);
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    assert_json(&c.lock("redislock", "r", "me", 30), 200, LOCKED);
    redis.signal("-STOP");
    let stalled = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let sent = Instant::now();
        let r = c.lock("redislock", "s", "me", 30);
        (r, sent.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut other = Client::connect(addr);
    for i in 0..20 {
        let sent = Instant::now();
        assert_json(&other.lock("mem", &format!("m{i}"), "me", 30), 200, LOCKED);
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "the in-memory store waited on Redis: {:?}",
            sent.elapsed()
        );
    }
    let (r, took) = stalled.join().expect("the stalled client");
    assert_eq!(r.status, 500, "{}", r.body_str());
    assert!(r.body_str().contains("no reply within"), "{}", r.body_str());
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "failed after {took:?}"
    );
    redis.signal("-CONT");
    granted_again(&mut c, "t", Instant::now() + Duration::from_secs(5));
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn an_unreachable_redis_is_a_clear_500_at_once() {
    // Protects start-up without Redis: dlockd starts, says why, and answers the store's
    // requests with a 500 naming the refused connection, quickly.
    let port = redis::free_port();
    let components = Components::new().redis("redislock", &format!("127.0.0.1:{port}"), &[]);
    let server = start(&["--resources-path", components.arg()]);
    let mut c = Client::connect(server.local_addr());
    let sent = Instant::now();
    let r = c.unlock("redislock", "r", "me");
    assert!(sent.elapsed() < Duration::from_millis(500));
    assert_eq!(r.status, 500);
    assert!(
        r.body_str().starts_with(
            r#"{"errorCode":"ERR_UNLOCK","message":"failed to release lock: redis at 127.0.0.1:"#
        ) && r.body_str().contains("unavailable"),
        "{}",
        r.body_str()
    );
}

/// A running dlockd binary: its four start-up lines, and its stderr once it is stopped.
struct Started {
    child: std::process::Child,
    lines: Vec<String>,
}

impl Started {
    fn spawn(args: &[&str]) -> Started {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dlockd"))
            .args(["--listen", "127.0.0.1:0", "--grpc-listen", "off"])
            .args(args)
            .env_remove("DAPR_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dlockd runs");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let lines = (0..4)
            .map(|_| {
                let mut line = String::new();
                std::io::BufRead::read_line(&mut out, &mut line).expect("a start-up line");
                line.trim_end().to_string()
            })
            .collect();
        Started { child, lines }
    }

    /// The address after `http://` in start-up line `n`.
    fn addr(&self, n: usize) -> std::net::SocketAddr {
        self.lines[n]
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ' ']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {:?}", self.lines[n]))
    }

    /// SIGTERM, then everything written on stderr.
    fn stop(self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let out = self.child.wait_with_output().expect("dlockd exits");
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// `GET path` on an admin listener: the status and the body.
fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the admin listener accepts");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("the answer");
    let status = text[9..12].parse().expect("a status");
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn the_operator_sees_each_store_with_its_type() {
    // Protects what an operator reads at start with a Redis store beside an in-memory one: the
    // first line names each store with its type and where Redis is; the restart-safety line
    // speaks of the in-memory store and says the Redis one keeps its leases in Redis; one line
    // says Redis was reached by every worker (not one line per worker); and /debug/lease does
    // not answer "not held" for a lock that Redis holds, but names the type and the key.
    let redis = TestRedis::start();
    let host = format!("127.0.0.1:{}", redis.port);
    let components = Components::new().redis("redislock", &host, &[]);
    let server = Started::spawn(&[
        "--resources-path",
        components.arg(),
        "--store",
        "mem",
        "--workers",
        "2",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    assert!(
        server.lines[0].contains(&format!(
            "stores: mem (lock.in-memory), redislock (lock.redis {host}), api token off"
        )),
        "{}",
        server.lines[0]
    );
    assert!(
        server.lines[2].ends_with(
            "leases and fencing tokens of the in-memory store mem do not survive a restart; \
             the lock.redis store redislock keeps its leases in Redis"
        ),
        "{}",
        server.lines[2]
    );
    let mut c = Client::connect(server.addr(0));
    assert_json(&c.lock("redislock", "held", "o", 30), 200, LOCKED);
    let (status, body) = admin_get(
        server.addr(1),
        "/debug/lease?store=redislock&resourceId=held",
    );
    assert_eq!(status, 501, "{body}");
    assert!(
        body.contains(r#""type":"lock.redis","key":"lock||held"}"#) && !body.contains("\"held\":"),
        "{body}"
    );
    assert_eq!(redis.cmd(&["GET", "lock||held"]), "o");
    let err = server.stop();
    let connected: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("connected to redis"))
        .collect();
    assert_eq!(
        connected,
        [format!(
            "dlockd: info: lock store redislock: connected to redis at {host} (each of its 2 \
             workers has a connection)"
        )],
        "{err}"
    );

    // Unreachable at start: one warning for the store, with how many workers could not
    // connect; the server still starts.
    let nowhere = format!("127.0.0.1:{}", redis::free_port());
    let components = Components::new().redis("redislock", &nowhere, &[]);
    let server = Started::spawn(&[
        "--resources-path",
        components.arg(),
        "--workers",
        "2",
        "--metrics-listen",
        "off",
    ]);
    assert!(
        server.lines[2].starts_with(
            "dlockd restart safety: nothing to keep (no in-memory store); the lock.redis store \
             redislock keeps its leases in Redis"
        ),
        "{}",
        server.lines[2]
    );
    let err = server.stop();
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("could not connect"))
        .collect();
    assert_eq!(warned.len(), 1, "{err}");
    assert!(
        warned[0].starts_with(&format!(
            "dlockd: warn: lock store redislock: redis at {nowhere}: "
        )) && warned[0].contains("2 of 2 workers could not connect"),
        "{err}"
    );
}

#[test]
fn component_files_without_a_lock_store_warn_and_answer_not_configured() {
    // Protects the first hour: a resources directory with no lock store starts (as daprd
    // does), says so in a warning and on the start-up lines, and every lock and unlock answers
    // daprd's ERR_LOCK_STORE_NOT_CONFIGURED.
    let dir = Components::new().file(
        "state.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  \
         type: state.redis\n",
    );
    let server = Started::spawn(&["--resources-path", dir.arg(), "--metrics-listen", "off"]);
    assert!(
        server.lines[0].contains("stores: none, api token off"),
        "{}",
        server.lines[0]
    );
    assert_eq!(
        server.lines[2],
        "dlockd restart safety: nothing to keep (no lock store is configured)"
    );
    let mut c = Client::connect(server.addr(0));
    let not_configured =
        r#"{"errorCode":"ERR_LOCK_STORE_NOT_CONFIGURED","message":"lock store is not configured"}"#;
    assert_json(&c.lock("lockstore", "r", "o", 10), 500, not_configured);
    assert_json(&c.unlock("lockstore", "r", "o"), 500, not_configured);
    let err = server.stop();
    assert!(
        err.contains(
            "dlockd: warn: no lock store is configured (the component files of --resources-path \
             hold no lock store): every lock and unlock answers 500 ERR_LOCK_STORE_NOT_CONFIGURED"
        ),
        "{err}"
    );
}

fn dlockd_binary(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dlockd"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("dlockd runs")
}

#[test]
fn components_of_other_types_are_noted_and_skipped() {
    // Protects a resources directory shared with daprd: components dlockd does not serve are
    // named in the log and skipped, and the lock stores beside them are served.
    let dir = Components::new().file(
        "all.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  \
         type: state.redis\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  \
         name: mem\nspec:\n  type: lock.in-memory\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlockd"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .args(["--resources-path", dir.arg()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dlockd runs");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut first,
    )
    .expect("a start-up line");
    let _ = child.kill();
    let out = child.wait_with_output().expect("dlockd exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        first.contains("stores: mem (lock.in-memory), api token off"),
        "{first}"
    );
    assert!(
        err.contains("all.yaml") && err.contains("statestore") && err.contains("skipped"),
        "{err}"
    );
}

#[test]
fn unusable_component_files_stop_the_start() {
    // Protects the operator: a component file dlockd cannot use stops it, naming the file and
    // the field; Redis Cluster is refused as daprd refuses it.
    let broken = Components::new().file(
        "lock.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\nspec:\n  type: \
         lock.redis\n  metadata:\n  - name: redisHost\n    value: h:1\n  - name: redisDB\n    \
         value: two\n",
    );
    let out = dlockd_binary(&["--resources-path", broken.arg()]);
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lock.yaml")
            && err.contains("spec.metadata[1].value")
            && err.contains("redisDB"),
        "{err}"
    );

    let cluster = Components::new().redis("x", "h:1", &[("redisType", "cluster")]);
    let out = dlockd_binary(&["--resources-path", cluster.arg()]);
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Redis Cluster is not supported"), "{err}");
}

#[test]
fn sentinel_failover_moves_to_the_new_master() {
    // Protects failover: with `failover: true` dlockd asks the sentinels for the master, takes
    // locks there, and when the master dies and a replica is promoted, it answers 500s for the
    // while and then serves from the new master, which holds the locks replicated to it.
    let mut master = TestRedis::start();
    let replica = TestRedis::start_with(
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
        None,
    );
    // The replica's link is up (its first sync done) before anything is written: on a busy
    // machine that takes longer than WAIT's bound below.
    let linked = Instant::now() + Duration::from_secs(30);
    while !master
        .cmd(&["INFO", "replication"])
        .contains("state=online")
    {
        assert!(Instant::now() < linked, "the replica never came online");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sentinel = TestSentinel::start(master.port);
    let (server, _components) = {
        let components = Components::new().redis(
            "redislock",
            &format!("127.0.0.1:{}", sentinel.port),
            &[("failover", "true"), ("sentinelMasterName", "mymaster")],
        );
        let server = start(&["--resources-path", components.arg(), "--app-id", "checkout"]);
        (server, components)
    };
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock("redislock", "held", "a", 60), 200, LOCKED);
    assert_eq!(
        master.cmd(&["GET", "lock||checkout||held"]),
        "a",
        "written on the master"
    );
    // Replicated before the master dies.
    assert_eq!(master.cmd(&["WAIT", "1", "5000"]), ":1");

    master.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sentinel.master() != Some(format!("127.0.0.1:{}", replica.port)) {
        assert!(
            Instant::now() < deadline,
            "the sentinel did not promote the replica"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    granted_again(&mut c, "after", Instant::now() + Duration::from_secs(10));
    assert_eq!(
        replica.cmd(&["GET", "lock||checkout||after"]),
        "me",
        "on the new master"
    );
    assert_json(&c.lock("redislock", "held", "b", 60), 200, NOT_LOCKED);
    assert!(server.shutdown(Duration::from_secs(5)));
}
