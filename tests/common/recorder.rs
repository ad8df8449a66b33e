//! A client whose failures are values, and the calls it makes recorded as the history checker
//! (`history.rs`) takes them: one keep-alive HTTP/1.1 connection per client, every call's
//! invoke and return instants, and what the client learned ([`Outcome`]). A broken connection,
//! or no answer within the connection's read timeout, is an unknown outcome; an HTTP error
//! answer (a 500 from a store that cannot be reached) is an error outcome, never a grant.
//!
//! A test crate that includes it also declares `mod common;` and
//! `#[path = "common/history.rs"] mod history;`, which it uses.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{self, lock_body, post, unlock_body, Response, LOCKED, NOT_LOCKED};
use crate::history::{Kind, Op, Outcome};

/// The fencing token's header on a granted lock or a renewal answered 0.
pub const FENCE: &str = "Dapr-Lock-Fence";
/// One request on a live server, by default; past it the outcome counts as unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// dlockd's in-memory store when no `--store` or component names another.
pub const DEFAULT_STORE: &str = "lockstore";

/// One keep-alive HTTP/1.1 connection to the lock routes of one store.
pub struct Conn {
    pub stream: TcpStream,
    /// What was read past the last whole answer.
    pub buf: Vec<u8>,
    store: String,
}

impl Conn {
    /// Connects to the routes of [`DEFAULT_STORE`], each request bounded by
    /// [`REQUEST_TIMEOUT`].
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        Conn::connect_to(addr, DEFAULT_STORE, REQUEST_TIMEOUT)
    }

    /// Connects to the routes of store `store`; a request not answered within `timeout`
    /// fails (its outcome is then unknown).
    pub fn connect_to(addr: SocketAddr, store: &str, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            store: store.to_string(),
        })
    }

    /// Connects to a server that is up; failing is the test's failure.
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::connect(addr)
            .unwrap_or_else(|e| panic!("connect to the running dlockd at {addr}: {e}"))
    }

    pub fn post(&mut self, path: &str, body: &str) -> io::Result<Response> {
        self.stream.write_all(post(path, body).as_bytes())?;
        self.read_response()
    }

    pub fn lock(&mut self, resource: &str, owner: &str, expiry_s: i64) -> io::Result<Response> {
        let path = format!("/v1.0-alpha1/lock/{}", self.store);
        self.post(&path, &lock_body(resource, owner, expiry_s))
    }

    pub fn unlock(&mut self, resource: &str, owner: &str) -> io::Result<Response> {
        let path = format!("/v1.0-alpha1/unlock/{}", self.store);
        self.post(&path, &unlock_body(resource, owner))
    }

    /// A renewal: its body is a try-lock's.
    pub fn renew(&mut self, resource: &str, owner: &str, expiry_s: i64) -> io::Result<Response> {
        let path = format!("/v1.0-alpha1/lock/{}/renew", self.store);
        self.post(&path, &lock_body(resource, owner, expiry_s))
    }

    pub fn acquire(
        &mut self,
        resource: &str,
        owner: &str,
        expiry_s: i64,
        wait_ms: i64,
    ) -> io::Result<Response> {
        let path = format!("/v1.0-alpha1/lock/{}/acquire", self.store);
        let body = format!(
            r#"{{"resourceId":"{resource}","lockOwner":"{owner}","expiryInSeconds":{expiry_s},"waitTimeoutMs":{wait_ms}}}"#
        );
        self.post(&path, &body)
    }

    pub fn read_response(&mut self) -> io::Result<Response> {
        let broken = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let head_end = loop {
            if let Some(i) = common::find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| broken("a head that is not ASCII"))?
            .to_string();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.strip_prefix("HTTP/1.1 "))
            .and_then(|l| l.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| broken("a bad status line"))?;
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| broken("a header line without a colon"))?;
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let len = match headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            Some((_, v)) => v.parse().map_err(|_| broken("a bad Content-Length"))?,
            None => 0,
        };
        while self.buf.len() < head_end + len {
            self.fill()?;
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Reads what comes next into `buf`: an error at end of stream or past the read timeout.
    pub fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The fencing token of an answer, if it carries one; a malformed one fails the test.
#[track_caller]
pub fn fence_of(r: &Response) -> Option<u64> {
    r.header(FENCE).map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{FENCE}: {v:?} is not a decimal u64"))
    })
}

/// The N of a `{"status":N}` answer.
pub fn status_of(body: &str) -> Option<u8> {
    body.strip_prefix(r#"{"status":"#)
        .and_then(|b| b.strip_suffix('}'))
        .and_then(|n| n.parse().ok())
}

/// What a client learned from `r`. Answers outside the contract fail the test at once: only a
/// broken connection is an unknown outcome. Only a grant and a renewal answered 0 carry a
/// fence.
#[track_caller]
pub fn outcome(kind: Kind, r: &io::Result<Response>) -> Outcome {
    let Ok(r) = r else {
        return Outcome::Unknown;
    };
    let fenced = r.status == 200
        && match kind {
            Kind::Lock { .. } | Kind::Acquire { .. } => r.body_str() == LOCKED,
            Kind::Renew { .. } => status_of(r.body_str()) == Some(0),
            Kind::Unlock => false,
        };
    if !fenced {
        assert_eq!(
            r.header(FENCE),
            None,
            "only a grant or a renewal carries a fence: {r:?}"
        );
    }
    if r.status != 200 {
        return Outcome::Error(r.status);
    }
    match (kind, r.body_str()) {
        (Kind::Lock { .. } | Kind::Acquire { .. }, LOCKED) => {
            Outcome::Granted { fence: fence_of(r) }
        }
        (Kind::Lock { .. } | Kind::Acquire { .. }, NOT_LOCKED) => Outcome::Refused,
        (Kind::Lock { .. } | Kind::Acquire { .. }, _) => {
            panic!("a lock answer outside the contract: {r:?}")
        }
        (Kind::Unlock, body) => match status_of(body) {
            Some(n) => Outcome::Unlocked(n),
            None => panic!("an unlock answer outside the contract: {r:?}"),
        },
        (Kind::Renew { .. }, body) => match status_of(body) {
            Some(status) => Outcome::RenewStatus {
                status,
                fence: fence_of(r),
            },
            None => panic!("a renewal answer outside the contract: {r:?}"),
        },
    }
}

/// Performs one call on `conn` and records it; the answer too, when one came.
pub fn call(
    conn: &mut Conn,
    client: usize,
    resource: &str,
    owner: &str,
    kind: Kind,
) -> (Op, Option<Response>) {
    let invoke = Instant::now();
    let r = match kind {
        Kind::Lock { ttl } => conn.lock(resource, owner, ttl.as_secs() as i64),
        Kind::Acquire { ttl, wait } => conn.acquire(
            resource,
            owner,
            ttl.as_secs() as i64,
            wait.as_millis() as i64,
        ),
        Kind::Unlock => conn.unlock(resource, owner),
        Kind::Renew { ttl } => conn.renew(resource, owner, ttl.as_secs() as i64),
    };
    let ret = Instant::now();
    let op = Op {
        client,
        resource: resource.to_string(),
        owner: owner.to_string(),
        kind,
        outcome: outcome(kind, &r),
        invoke,
        ret,
    };
    (op, r.ok())
}

/// Performs one call on `conn` and records it.
pub fn record(conn: &mut Conn, client: usize, resource: &str, owner: &str, kind: Kind) -> Op {
    call(conn, client, resource, owner, kind).0
}

/// Polls `done` every few milliseconds until it holds, or panics naming `what`.
#[track_caller]
pub fn wait_until(what: &str, deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SplitMix64: the clients' choices, reproducible from the printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
