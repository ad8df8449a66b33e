//! Shared test support: a real server on an ephemeral loopback port, and a small blocking
//! HTTP/1.1 client over real TCP that reads answers exactly as they come on the wire.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dlockd::config::{Command, Config};
use dlockd::server::Server;

/// Both io drivers, so each behaviour is checked on io_uring and on epoll.
pub const DRIVERS: [&str; 2] = ["uring", "legacy"];

/// Starts a server with `args` (flags as on the command line) on 127.0.0.1:0.
pub fn start(args: &[&str]) -> Server {
    start_env(args, &[])
}

/// Starts a server with `args` and the given environment (nothing else from the real one).
pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut all = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
    if !args.contains(&"--workers") {
        all.extend(["--workers".to_string(), "1".to_string()]);
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let config = match Config::parse(all, lookup) {
        Ok(Command::Run(c)) => *c,
        other => panic!("bad test configuration: {other:?}"),
    };
    dlockd::server::start(config).expect("server starts")
}

/// A directory of its own under the system's temporary one, created empty.
pub fn temp_dir(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dlockd-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// Starts a server with `args` serving its HTTP and gRPC APIs on Unix domain sockets in a
/// directory of its own (`--unix-domain-socket`, app id `test`), with one worker unless
/// `args` says otherwise and its admin listener on an ephemeral port. Returns the server and
/// the HTTP socket's path.
pub fn start_unix(args: &[&str]) -> (Server, PathBuf) {
    let dir = temp_dir("uds");
    let mut all: Vec<String> = [
        "--unix-domain-socket",
        dir.to_str().expect("a UTF-8 temporary path"),
        "--app-id",
        "test",
        "--metrics-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !args.contains(&"--workers") {
        all.extend(["--workers".to_string(), "1".to_string()]);
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let config = match Config::parse(all, |_| None) {
        Ok(Command::Run(c)) => *c,
        other => panic!("bad test configuration: {other:?}"),
    };
    let server = dlockd::server::start(config).expect("server starts");
    (server, dir.join("dapr-test-http.socket"))
}

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
}

/// A client's socket: TCP, or a Unix domain socket (`--unix-domain-socket`).
pub enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.set_nonblocking(on),
            Sock::Unix(s) => s.set_nonblocking(on),
        }
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.set_read_timeout(d),
            Sock::Unix(s) => s.set_read_timeout(d),
        }
    }

    pub fn set_write_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.set_write_timeout(d),
            Sock::Unix(s) => s.set_write_timeout(d),
        }
    }

    pub fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.shutdown(how),
            Sock::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.flush(),
            Sock::Unix(s) => s.flush(),
        }
    }
}

/// A client connection that reads responses one at a time.
pub struct Client {
    pub stream: Sock,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client::over(Sock::Tcp(stream))
    }

    /// A client of the HTTP API on a Unix domain socket.
    pub fn connect_unix(path: &Path) -> Client {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        Client::over(Sock::Unix(stream))
    }

    fn over(stream: Sock) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a POST with a JSON body and reads its answer.
    pub fn post(&mut self, path: &str, body: &str) -> Response {
        self.send(post(path, body).as_bytes());
        self.read_response()
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        self.read_response()
    }

    pub fn lock(&mut self, store: &str, resource: &str, owner: &str, expiry: i64) -> Response {
        self.post(
            &format!("/v1.0-alpha1/lock/{store}"),
            &lock_body(resource, owner, expiry),
        )
    }

    pub fn unlock(&mut self, store: &str, resource: &str, owner: &str) -> Response {
        self.post(
            &format!("/v1.0-alpha1/unlock/{store}"),
            &unlock_body(resource, owner),
        )
    }

    /// Reads one whole response (status line, headers, Content-Length body).
    pub fn read_response(&mut self) -> Response {
        self.try_read_response().expect("a complete response")
    }

    /// Reads one response, or None if the server closed the connection first.
    pub fn try_read_response(&mut self) -> Option<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill() {
                return None;
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .expect("ascii head")
            .to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        assert!(
            status_line.starts_with("HTTP/1.1 "),
            "status line {status_line:?}"
        );
        let status: u16 = status_line[9..12].parse().expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().expect("content-length"));
        while self.buf.len() < head_end + len {
            if !self.fill() {
                return None;
            }
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Some(Response {
            status,
            headers,
            body,
        })
    }

    /// True once the server has closed the connection (reads end of stream or a reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1024];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    fn fill(&mut self) -> bool {
        let mut b = [0u8; 8192];
        match self.stream.read(&mut b) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn lock_body(resource: &str, owner: &str, expiry: i64) -> String {
    format!(r#"{{"resourceId":"{resource}","lockOwner":"{owner}","expiryInSeconds":{expiry}}}"#)
}

pub fn unlock_body(resource: &str, owner: &str) -> String {
    format!(r#"{{"resourceId":"{resource}","lockOwner":"{owner}"}}"#)
}

pub const LOCKED: &str = r#"{"success":true}"#;
pub const NOT_LOCKED: &str = r#"{"success":false}"#;

/// Asserts a JSON answer's status, content type and exact body.
#[track_caller]
pub fn assert_json(r: &Response, status: u16, body: &str) {
    assert_eq!(
        r.status,
        status,
        "body {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body_str(), body);
}

/// The exact error body of the contract.
pub fn error_body(code: &str, message: &str) -> String {
    format!(r#"{{"errorCode":"{code}","message":"{message}"}}"#)
}
