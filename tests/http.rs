//! HTTP/1.1 over real sockets: keep-alive, pipelining, chunked bodies, byte-at-a-time
//! delivery, Expect: 100-continue, HTTP/1.0, Connection: close, smuggling refusals, limits
//! and timeouts; on both io drivers.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

const LOCK: &str = "/v1.0-alpha1/lock/lockstore";
const UNLOCK: &str = "/v1.0-alpha1/unlock/lockstore";

fn bad_request(r: &Response) {
    assert_eq!(r.status, 400, "{:?}", r.body_str());
    assert_eq!(r.header("connection"), Some("close"));
}

// Pipelined lock/unlock requests over keys of every shard come back in request order.
#[test]
fn pipelining_answers_in_order_across_shards() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver, "--workers", "2"]);
        let mut c = Client::connect(server.local_addr());
        let mut batch = String::new();
        let mut expected = Vec::new();
        for i in 0..100 {
            let r = format!("pipe-{i}");
            batch += &post(LOCK, &lock_body(&r, "a", 60));
            expected.push(LOCKED.to_string());
            batch += &post(LOCK, &lock_body(&r, "b", 60));
            expected.push(NOT_LOCKED.to_string());
            batch += &post(UNLOCK, &unlock_body(&r, "b"));
            expected.push(r#"{"status":2}"#.to_string());
            if i % 2 == 0 {
                batch += &post(UNLOCK, &unlock_body(&r, "a"));
                expected.push(r#"{"status":0}"#.to_string());
                batch += &post(UNLOCK, &unlock_body(&r, "a"));
                expected.push(r#"{"status":1}"#.to_string());
            }
            batch += "GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n";
            expected.push(String::new());
        }
        c.send(batch.as_bytes());
        for (i, want) in expected.iter().enumerate() {
            let r = c.read_response();
            assert_eq!(r.body_str(), want, "answer {i} on {driver}");
        }
    }
}

// A request delivered one byte at a time is answered as if it came whole.
#[test]
fn byte_at_a_time() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver]);
        let mut c = Client::connect(server.local_addr());
        let req =
            post(LOCK, &lock_body("slow", "a", 60)) + &post(UNLOCK, &unlock_body("slow", "a"));
        for b in req.as_bytes() {
            c.send(std::slice::from_ref(b));
        }
        assert_json(&c.read_response(), 200, LOCKED);
        assert_json(&c.read_response(), 200, r#"{"status":0}"#);
    }
}

// Chunked request bodies, with extensions and trailers, also split across writes.
#[test]
fn chunked_bodies() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver]);
        let mut c = Client::connect(server.local_addr());
        let body = lock_body("chunky", "a", 60);
        let (x, y) = body.split_at(10);
        let req = format!(
            "POST {LOCK} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{x}\r\n{:x}\r\n{y}\r\n0\r\nTrailer: t\r\n\r\n",
            x.len(),
            y.len()
        );
        let (p, q) = req.split_at(req.len() / 2);
        c.send(p.as_bytes());
        std::thread::sleep(Duration::from_millis(20));
        c.send(q.as_bytes());
        assert_json(&c.read_response(), 200, LOCKED);
        assert_json(
            &c.unlock("lockstore", "chunky", "a"),
            200,
            r#"{"status":0}"#,
        );
    }
}

// Expect: 100-continue gets an interim answer before the body is sent.
#[test]
fn expect_continue() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver]);
        let mut c = Client::connect(server.local_addr());
        let body = lock_body("cont", "a", 60);
        c.send(
            format!(
                "POST {LOCK} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let interim = c.read_response();
        assert_eq!(interim.status, 100);
        c.send(body.as_bytes());
        assert_json(&c.read_response(), 200, LOCKED);
    }
}

// HTTP/1.0 closes unless keep-alive is asked; Connection: close closes after the answer.
#[test]
fn connection_management() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver]);
        let body = lock_body("c", "a", 60);
        let mut c = Client::connect(server.local_addr());
        c.send(
            format!(
                "POST {LOCK} HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = c.read_response();
        assert_json(&r, 200, LOCKED);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed());

        let mut c = Client::connect(server.local_addr());
        for _ in 0..2 {
            c.send(b"GET /v1.0/healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            let r = c.read_response();
            assert_eq!(r.status, 204);
            assert_eq!(r.header("connection"), Some("keep-alive"));
        }

        let mut c = Client::connect(server.local_addr());
        c.send(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 204);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(
            c.is_closed(),
            "the pipelined request after close is not answered"
        );
    }
}

// Requests that could be read two ways are refused and the connection closed.
#[test]
fn smuggling_is_refused() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver]);
        for req in [
            format!("POST {LOCK} HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            format!("POST {LOCK} HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
            format!("POST {LOCK} HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            format!("POST {LOCK} HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"),
            format!("POST {LOCK} HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            format!("POST {LOCK} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n"),
        ] {
            let mut c = Client::connect(server.local_addr());
            c.send(req.as_bytes());
            let r = c.read_response();
            assert!(r.status == 400 || r.status == 501, "{req:?}: {}", r.status);
            assert_eq!(r.header("connection"), Some("close"));
            assert!(c.is_closed(), "{req:?}");
        }
        // The server still serves.
        let mut c = Client::connect(server.local_addr());
        assert_eq!(c.get("/v1.0/healthz").status, 204);
    }
}

// The header limit answers 431 and closes; garbage answers 400 and closes.
#[test]
fn header_limit_and_garbage() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver, "--max-header-bytes", "1k"]);
        let mut c = Client::connect(server.local_addr());
        c.send(
            format!(
                "GET /v1.0/healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(2000)
            )
            .as_bytes(),
        );
        let r = c.read_response();
        assert_eq!(r.status, 431);
        assert!(c.is_closed());

        let mut c = Client::connect(server.local_addr());
        c.send(b"\x00\x01garbage\r\n\r\n");
        bad_request(&c.read_response());
        assert!(c.is_closed());

        // Garbage after a valid request: the valid one is answered, then 400 and close.
        let mut c = Client::connect(server.local_addr());
        c.send(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\nBLAH\x7f /\r\n\r\n");
        assert_eq!(c.read_response().status, 204);
        bad_request(&c.read_response());
        assert!(c.is_closed());
    }
}

// Connections over --max-connections get a clear 503 and are closed; the others work.
#[test]
fn connection_limit() {
    let server = start(&["--max-connections", "4"]);
    let mut held: Vec<Client> = (0..4)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    for c in held.iter_mut() {
        assert_eq!(c.get("/v1.0/healthz").status, 204);
    }
    let mut extra = Client::connect(server.local_addr());
    let r = extra.read_response();
    assert_eq!(r.status, 503);
    assert!(extra.is_closed());
    // The held connections still work, and a slot frees when one closes.
    assert_eq!(held[0].get("/v1.0/healthz").status, 204);
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect(server.local_addr());
        c.send(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response();
        if r.status == 204 {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// An idle keep-alive connection is closed after --idle-timeout; a slow head is cut at
// --header-timeout even if bytes keep trickling in.
#[test]
fn timeouts_close_connections() {
    for driver in DRIVERS {
        let server = start(&[
            "--io-driver",
            driver,
            "--idle-timeout",
            "300ms",
            "--header-timeout",
            "300ms",
        ]);
        let mut idle = Client::connect(server.local_addr());
        assert_eq!(idle.get("/v1.0/healthz").status, 204);
        let t = Instant::now();
        assert!(idle.is_closed());
        assert!(t.elapsed() >= Duration::from_millis(250), "closed early");

        let mut slow = Client::connect(server.local_addr());
        let t = Instant::now();
        let mut closed = false;
        for b in b"GET /v1.0/healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.stream.write_all(std::slice::from_ref(b)).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(closed || slow.is_closed(), "slow head was not cut");
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}

// A body that stops arriving is cut at --body-timeout.
#[test]
fn body_timeout_closes() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver, "--body-timeout", "300ms"]);
        let mut c = Client::connect(server.local_addr());
        c.send(
            format!("POST {LOCK} HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{{\"res")
                .as_bytes(),
        );
        let t = Instant::now();
        assert!(c.is_closed());
        assert!(t.elapsed() >= Duration::from_millis(250), "closed early");
    }
}

// A client that pipelines requests and never reads its answers is not buffered without
// bound: once the answers fill the socket, the server stops reading, so the client's own
// writes stall after a bounded amount; meanwhile another client is served normally.
#[test]
fn client_that_never_reads_is_bounded() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver]);
        let mut greedy = Client::connect(server.local_addr());
        greedy
            .stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .expect("write timeout");
        let request = post(LOCK, &lock_body("greedy", "g", 60));
        let batch = request.repeat(64);
        let mut sent = 0usize;
        let limit = 512 * 1024 * 1024;
        while sent < limit {
            match greedy.stream.write(batch.as_bytes()) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        assert!(
            sent < limit,
            "the server kept reading {sent} bytes without being read from"
        );
        let mut polite = Client::connect(server.local_addr());
        assert_json(&polite.lock("lockstore", "polite", "p", 60), 200, LOCKED);
        // The stalled client's answers are all there, in order, once it reads.
        let first = greedy.read_response();
        assert_json(&first, 200, LOCKED);
        assert_json(&greedy.read_response(), 200, NOT_LOCKED);
    }
}
