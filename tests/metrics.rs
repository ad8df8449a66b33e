//! The admin listener over real sockets: `/metrics` counters move with the requests made,
//! `/debug/lease` and `/debug/shards` answer from the shards, bad admin requests get 4xx, and
//! `--metrics-listen off` serves nothing.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// One admin exchange: sends `request` whole and reads until the server closes.
fn admin_raw(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let text = admin_raw_text(addr, request);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head[9..12].parse().expect("status");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    (status, content_type, body.to_string())
}

fn admin_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    admin_raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

/// The value of one series (name with its labels) in a scrape.
fn series(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {name} in the scrape:\n{text}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not an integer"))
}

/// The sum of every series of a family whose name is followed by `{` (all label values).
fn family_sum(text: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("an integer value")
        })
        .sum()
}

fn scrape(addr: SocketAddr) -> String {
    let (status, content_type, body) = admin_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    body
}

fn requests(text: &str, route: &str, outcome: &str) -> u64 {
    series(
        text,
        &format!("dlockd_requests_total{{route=\"{route}\",outcome=\"{outcome}\"}}"),
    )
}

// Every counter moves by exactly the requests made, on both drivers and across two shards:
// each lock and unlock outcome, other routes by status class, a parse error, forwards, the
// leases per shard (summing to the leases held), grants and releases, and a histogram whose
// count is the number of requests answered.
#[test]
fn scrape_counts_what_happened() {
    for driver in DRIVERS {
        let server = start(&["--workers", "2", "--io-driver", driver]);
        let admin = server.metrics_addr().expect("metrics are on by default");
        let before = scrape(admin);
        assert_eq!(family_sum(&before, "dlockd_requests_total"), 0);
        assert_eq!(series(&before, "dlockd_request_duration_seconds_count"), 0);

        let mut c = Client::connect(server.local_addr());
        let mut made = 0u64;
        assert_json(&c.lock("lockstore", "r", "alice", 60), 200, LOCKED);
        assert_json(&c.lock("lockstore", "r", "bob", 60), 200, NOT_LOCKED);
        assert_json(&c.unlock("lockstore", "r", "bob"), 200, r#"{"status":2}"#);
        assert_json(&c.unlock("lockstore", "r", "alice"), 200, r#"{"status":0}"#);
        assert_json(&c.unlock("lockstore", "r", "alice"), 200, r#"{"status":1}"#);
        made += 5;
        // A lock route's validation error, and an unknown store, are the route's errors.
        assert_eq!(c.lock("lockstore", "", "alice", 60).status, 400);
        assert_eq!(c.unlock("nostore", "r", "alice").status, 400);
        made += 2;
        assert_eq!(c.get("/v1.0/healthz").status, 204);
        assert_eq!(c.get("/nowhere").status, 404);
        made += 2;
        // Many keys: with two shards, some live on the other worker and are forwarded.
        const HELD: u64 = 40;
        for i in 0..HELD {
            assert_json(&c.lock("lockstore", &format!("k{i}"), "o", 60), 200, LOCKED);
        }
        made += HELD;
        // A request that cannot be framed: a parse error, not a request.
        let mut bad = Client::connect(server.local_addr());
        bad.send(b"NOT HTTP\r\n\r\n");
        assert_eq!(bad.read_response().status, 400);

        let text = scrape(admin);
        assert_eq!(requests(&text, "lock", "granted"), 1 + HELD, "{driver}");
        assert_eq!(requests(&text, "lock", "refused"), 1);
        assert_eq!(requests(&text, "lock", "error"), 1);
        assert_eq!(requests(&text, "unlock", "success"), 1);
        assert_eq!(requests(&text, "unlock", "lock_does_not_exist"), 1);
        assert_eq!(requests(&text, "unlock", "lock_belongs_to_others"), 1);
        assert_eq!(requests(&text, "unlock", "error"), 1);
        assert_eq!(requests(&text, "other", "2xx"), 1);
        assert_eq!(requests(&text, "other", "4xx"), 1);
        assert_eq!(family_sum(&text, "dlockd_requests_total"), made);
        assert_eq!(
            series(&text, "dlockd_request_duration_seconds_count"),
            made,
            "one latency observation per request answered"
        );
        assert_eq!(
            series(&text, "dlockd_request_duration_seconds_bucket{le=\"+Inf\"}"),
            made
        );
        assert_eq!(
            series(&text, "dlockd_parse_errors_total{kind=\"malformed\"}"),
            1
        );
        assert_eq!(family_sum(&text, "dlockd_parse_errors_total"), 1);
        assert_eq!(series(&text, "dlockd_grants_total"), 1 + HELD);
        assert_eq!(series(&text, "dlockd_releases_total"), 1);
        assert_eq!(
            family_sum(&text, "dlockd_leases"),
            HELD,
            "leases per shard sum to the leases held"
        );
        let forwards = series(&text, "dlockd_forwards_total");
        assert!(
            forwards > 0 && forwards < made,
            "some requests forwarded: {forwards}"
        );
        assert!(series(&text, "dlockd_open_connections") >= 1);
        assert_eq!(series(&text, "dlockd_expirations_total"), 0);
        assert!(server.shutdown(Duration::from_secs(5)));
    }
}

// A connection over --max-connections is answered 503 and counted as a limit hit; a full
// lease table too; leases that expire are reclaimed and counted.
#[test]
fn limits_and_expirations_are_counted() {
    let server = start(&["--max-connections", "1", "--max-leases", "1"]);
    let admin = server.metrics_addr().expect("metrics on");
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock("lockstore", "short", "o", 1), 200, LOCKED);
    let r = c.lock("lockstore", "other", "o", 1);
    assert_eq!(r.status, 500, "a full table: {}", r.body_str());
    let mut over = Client::connect(server.local_addr());
    assert_eq!(over.read_response().status, 503);
    let text = scrape(admin);
    assert_eq!(
        series(&text, "dlockd_limit_hits_total{limit=\"connections\"}"),
        1
    );
    assert_eq!(
        series(&text, "dlockd_limit_hits_total{limit=\"leases\"}"),
        1
    );
    assert_eq!(requests(&text, "lock", "error"), 1);

    // The one-second lease expires and the wheel reclaims it within a tick or two.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(admin);
        if series(&text, "dlockd_expirations_total") == 1 {
            assert_eq!(family_sum(&text, "dlockd_leases"), 0);
            break;
        }
        assert!(Instant::now() < deadline, "no expiration counted:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// Leases that expire together, more than one slice of reclamation (512), are all reclaimed
// and counted.
#[test]
fn a_crowd_of_expired_leases_is_reclaimed_in_full() {
    const LEASES: u64 = 3000;
    let server = start(&[]);
    let admin = server.metrics_addr().expect("metrics on");
    let mut c = Client::connect(server.local_addr());
    for i in 0..LEASES {
        assert_json(
            &c.lock("lockstore", &format!("crowd-{i}"), "o", 1),
            200,
            LOCKED,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(admin);
        if series(&text, "dlockd_expirations_total") == LEASES {
            assert_eq!(family_sum(&text, "dlockd_leases"), 0);
            break;
        }
        assert!(Instant::now() < deadline, "not all reclaimed:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// /debug/lease names the holder and its remaining milliseconds, asked of the shard that owns
// the key (either of two), and says nobody holds it after the unlock; /debug/shards shows
// each shard's leases.
#[test]
fn debug_lease_and_shards() {
    let server = start(&["--workers", "2", "--store", "a", "--store", "b c"]);
    let admin = server.metrics_addr().expect("metrics on");
    let mut c = Client::connect(server.local_addr());
    let resources = ["x", "y", "z", "w/1", "v v"];
    for r in resources {
        let body = lock_body(r, "owner \"q\"", 60).replace("owner \"q\"", "owner \\\"q\\\"");
        let resp = c.post("/v1.0-alpha1/lock/a", &body);
        assert_json(&resp, 200, LOCKED);
    }
    let mut shards_seen = std::collections::HashSet::new();
    for r in resources {
        let query = r.replace('/', "%2F").replace(' ', "+");
        let (status, content_type, body) =
            admin_get(admin, &format!("/debug/lease?store=a&resourceId={query}"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["held"], true, "{body}");
        assert_eq!(v["resourceId"], r);
        assert_eq!(v["store"], "a");
        assert_eq!(v["lockOwner"], "owner \"q\"");
        let left = v["remainingMs"].as_u64().expect("remainingMs");
        assert!((50_000..=60_000).contains(&left), "{body}");
        shards_seen.insert(v["shard"].as_u64().expect("shard"));
    }
    assert_eq!(shards_seen.len(), 2, "both shards answered");

    // The same resource in the other store is not held; after the unlock nobody holds it.
    let (_, _, body) = admin_get(admin, "/debug/lease?store=b+c&resourceId=x");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["held"], false, "{body}");
    assert_json(
        &c.unlock("a", "x", "owner \\\"q\\\""),
        200,
        r#"{"status":0}"#,
    );
    let (status, _, body) = admin_get(admin, "/debug/lease?store=a&resourceId=x");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["held"], false, "{body}");
    assert!(v.get("lockOwner").is_none(), "{body}");

    let (status, _, body) = admin_get(admin, "/debug/shards");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let shards = v["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2);
    let leases: u64 = shards
        .iter()
        .map(|s| s["leases"].as_u64().expect("leases"))
        .sum();
    assert_eq!(leases, resources.len() as u64 - 1);
    for s in shards {
        assert_eq!(s["inboxRequests"], 0);
    }
}

// The admin listener answers the health probes as daprd's public port does: 204, no body,
// no content type, with or without an API token (they are exempt on the API too); other
// methods are 405.
#[test]
fn admin_listener_answers_health_probes() {
    let server = start_env(&[], &[("DAPR_API_TOKEN", "secret")]);
    let admin = server.metrics_addr().expect("metrics on");
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let (status, content_type, body) = admin_get(admin, path);
        assert_eq!(
            (status, content_type.as_str(), body.as_str()),
            (204, "", "")
        );
        let raw = admin_raw_text(admin, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(raw, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        let (status, _, _) = admin_raw(admin, &format!("POST {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(status, 405);
    }
}

/// One admin exchange, the answer whole.
fn admin_raw_text(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the admin listener");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the admin answer");
    raw
}

// Bad admin requests: an unknown store is 404 with a JSON error, missing or broken
// parameters 400, unknown paths 404, other methods 405, garbage 400; the listener keeps
// serving after each.
#[test]
fn bad_admin_requests() {
    let server = start(&[]);
    let admin = server.metrics_addr().expect("metrics on");
    let json_error = |(status, content_type, body): (u16, String, String), want: u16| {
        assert_eq!(status, want, "{body}");
        assert_eq!(content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(v["error"].is_string(), "{body}");
    };
    json_error(
        admin_get(admin, "/debug/lease?store=nope&resourceId=r"),
        404,
    );
    json_error(admin_get(admin, "/debug/lease?store=lockstore"), 400);
    json_error(admin_get(admin, "/debug/lease"), 400);
    json_error(
        admin_get(admin, "/debug/lease?store=lockstore&resourceId=%zz"),
        400,
    );
    json_error(
        admin_get(admin, "/debug/lease?store=lockstore&resourceId="),
        400,
    );
    json_error(admin_get(admin, "/v1.0-alpha1/lock/lockstore"), 404);
    json_error(admin_get(admin, "/"), 404);
    json_error(
        admin_raw(admin, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        405,
    );
    json_error(admin_raw(admin, "GARBAGE\r\n\r\n"), 400);
    let huge = format!("GET /metrics?{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    assert_eq!(admin_raw(admin, &huge).0, 431);
    // Still serving.
    assert_eq!(admin_get(admin, "/metrics").0, 200);
    let (status, _, body) = admin_get(admin, "/debug/lease?store=lockstore&resourceId=r");
    assert_eq!(status, 200, "{body}");
}

fn dlockd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlockd"));
    cmd.env_remove("DAPR_API_TOKEN")
        .env_remove("DAPR_HTTP_PORT")
        .env_remove("DLOCKD_METRICS_LISTEN")
        .args(["--listen", "127.0.0.1:0", "--workers", "1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Spawns the binary and returns it with its two start-up lines.
fn launch(args: &[&str]) -> (Child, String, String) {
    let mut child = dlockd(args).spawn().expect("spawn dlockd");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let (mut first, mut second) = (String::new(), String::new());
    out.read_line(&mut first).expect("start-up line");
    out.read_line(&mut second).expect("metrics line");
    (child, first, second)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dlockd did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn address_after(line: &str, marker: &str) -> SocketAddr {
    line.split(marker)
        .nth(1)
        .and_then(|rest| rest.split(['/', ' ', ',']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address after {marker:?} in {line:?}"))
}

// The binary says where metrics are served (the bound port when 0 was asked) and serves
// them there; with `--metrics-listen off` it says so and nothing listens; a taken admin
// address is a start-up error naming it.
#[test]
fn binary_metrics_listener() {
    let (child, first, second) = launch(&["--metrics-listen", "127.0.0.1:0"]);
    assert!(first.contains("listening on http://"), "{first}");
    let admin = address_after(&second, "metrics on http://");
    assert_ne!(admin.port(), 0);
    let text = scrape(admin);
    assert_eq!(family_sum(&text, "dlockd_requests_total"), 0);
    let main = address_after(&first, "http://");
    let mut c = Client::connect(main);
    assert_json(&c.lock("lockstore", "r", "o", 30), 200, LOCKED);
    let text = scrape(admin);
    assert_eq!(requests(&text, "lock", "granted"), 1);

    // The same admin address again: refused at start, naming it.
    let taken = admin.to_string();
    let out = dlockd(&["--metrics-listen", &taken]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&taken) && err.contains("metrics"), "{err}");
    stop(child);

    let (child, _, second) = launch(&["--metrics-listen", "off"]);
    assert!(second.contains("metrics off"), "{second}");
    assert!(!second.contains("http://"), "{second}");
    stop(child);

    // In-process too: no admin address, no listener thread.
    let server = start(&["--metrics-listen", "off"]);
    assert_eq!(server.metrics_addr(), None);
}

// The admin listener stops with the server: its port is free again after shutdown.
#[test]
fn admin_listener_stops_with_the_server() {
    let server = start(&[]);
    let admin = server.metrics_addr().expect("metrics on");
    assert_eq!(admin_get(admin, "/metrics").0, 200);
    assert!(server.shutdown(Duration::from_secs(5)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(admin).is_ok() {
        assert!(Instant::now() < deadline, "admin listener still accepting");
        std::thread::sleep(Duration::from_millis(10));
    }
}
