//! One server per address: two lease tables behind one address would grant one lock twice. A
//! dlockd started on an address another process listens on (another dlockd, or any listener,
//! with or without `SO_REUSEPORT`) exits 1 before it serves anything, with one line naming the
//! flag and the address; the first process keeps serving, its leases untouched; and no other
//! socket can join an address dlockd serves. Over the real binary.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Socket, Type};

/// The binary with a clean environment, its output piped.
fn dlockd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlockd"));
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("DLOCKD_") || text.starts_with("DAPR_") || text == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running dlockd and the three addresses of its first, second and fourth start-up lines.
struct Running {
    child: Child,
    http: SocketAddr,
    admin: SocketAddr,
    grpc: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts dlockd with 2 workers on ephemeral ports and reads its four start-up lines.
fn first_server() -> Running {
    let mut child = dlockd(&["--listen", "127.0.0.1:0", "--workers", "2"])
        .spawn()
        .expect("spawn dlockd");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        out.read_line(&mut line).expect("a start-up line");
        lines.push(line);
    }
    let addr_in = |line: &str| -> SocketAddr {
        line.split("http://")
            .nth(1)
            .or_else(|| line.split("gRPC on ").nth(1))
            .and_then(|rest| rest.split(['/', ' ']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    };
    Running {
        http: addr_in(&lines[0]),
        admin: addr_in(&lines[1]),
        grpc: addr_in(&lines[3]),
        child,
    }
}

/// Runs dlockd to its end (within 10 s) and returns its exit code, stdout and stderr.
fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = dlockd(args).spawn().expect("spawn dlockd");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dlockd {args:?} kept running on an address in use");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.code(), stdout, stderr)
}

/// Asserts a start refused for `flag` at `addr`: exit 1, nothing on stdout, one line on stderr.
fn assert_refused(args: &[&str], flag: &str, addr: SocketAddr) {
    let (code, stdout, stderr) = run_to_end(args);
    assert_eq!(code, Some(1), "{args:?}: {stderr}");
    assert_eq!(stdout, "", "{args:?} printed start-up lines");
    assert_eq!(
        stderr,
        format!("dlockd: error: {flag} {addr}: address in use (another process listens there)\n"),
        "{args:?}"
    );
}

/// 20 owners race for `resource` on 20 fresh connections at once; returns how many won.
fn race(addr: SocketAddr, resource: &str) -> usize {
    let start = Arc::new(Barrier::new(20));
    let racers: Vec<_> = (0..20)
        .map(|i| {
            let start = start.clone();
            let resource = resource.to_string();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                start.wait();
                c.lock("lockstore", &resource, &format!("owner-{i}"), 60)
                    .body_str()
                    == LOCKED
            })
        })
        .collect();
    racers
        .into_iter()
        .map(|r| r.join().expect("racer"))
        .filter(|&won| won)
        .count()
}

// A second dlockd on each of the first's addresses (HTTP, gRPC, admin) exits 1 at start with
// one line naming the flag and the address, while the first keeps serving with its lease
// untouched; afterwards a race of 20 owners has exactly one winner; and no socket, with or
// without SO_REUSEPORT, can join the first's HTTP address.
#[test]
fn a_second_dlockd_on_a_served_address_exits_1() {
    let first = first_server();
    let mut c = Client::connect(first.http);
    assert_json(&c.lock("lockstore", "kept", "first", 60), 200, LOCKED);

    let http = first.http.to_string();
    let admin = first.admin.to_string();
    let grpc = first.grpc.to_string();
    assert_refused(
        &[
            "--listen",
            &http,
            "--metrics-listen",
            "off",
            "--grpc-listen",
            "off",
        ],
        "--listen",
        first.http,
    );
    // With side ports of its own, and with the default side ports, still refused on --listen.
    assert_refused(
        &[
            "--listen",
            &http,
            "--metrics-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ],
        "--listen",
        first.http,
    );
    assert_refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            &grpc,
            "--metrics-listen",
            "off",
        ],
        "--grpc-listen",
        first.grpc,
    );
    assert_refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &admin,
            "--grpc-listen",
            "off",
        ],
        "--metrics-listen",
        first.admin,
    );

    for reuse_port in [false, true] {
        let other = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        other.set_reuse_address(true).expect("SO_REUSEADDR");
        other.set_reuse_port(reuse_port).expect("SO_REUSEPORT");
        let joined = other.bind(&first.http.into());
        assert!(
            joined.is_err(),
            "a socket with SO_REUSEPORT {reuse_port} joined dlockd's address"
        );
    }

    assert_eq!(race(first.http, "raced"), 1, "one winner of 20 owners");
    assert_json(&c.lock("lockstore", "kept", "other", 60), 200, NOT_LOCKED);
    assert_json(
        &c.unlock("lockstore", "kept", "first"),
        200,
        r#"{"status":0}"#,
    );
}

// Whoever listens first keeps the address: a plain listener, with SO_REUSEPORT or without,
// stops dlockd's start with the same line, on every flag.
#[test]
fn a_plain_listener_on_the_address_stops_the_start() {
    for reuse_port in [false, true] {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket.set_reuse_port(reuse_port).expect("SO_REUSEPORT");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        socket.bind(&any.into()).expect("bind");
        socket.listen(16).expect("listen");
        let listener: TcpListener = socket.into();
        let taken = listener.local_addr().expect("addr");
        let at = taken.to_string();
        assert_refused(
            &[
                "--listen",
                &at,
                "--metrics-listen",
                "off",
                "--grpc-listen",
                "off",
            ],
            "--listen",
            taken,
        );
        assert_refused(
            &[
                "--listen",
                "127.0.0.1:0",
                "--grpc-listen",
                &at,
                "--metrics-listen",
                "off",
            ],
            "--grpc-listen",
            taken,
        );
        assert_refused(
            &[
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                &at,
                "--grpc-listen",
                "off",
            ],
            "--metrics-listen",
            taken,
        );
        // The listener was never joined: a connection to the address reaches it.
        let _client = std::net::TcpStream::connect(taken).expect("connect");
        listener
            .set_nonblocking(false)
            .expect("blocking accept for the check");
        let (_accepted, _) = listener.accept().expect("the plain listener accepts");
    }
}

// A host name binds every address it resolves to, on one port: `localhost` is 127.0.0.1 and,
// where the machine has IPv6 loopback, [::1]; the first start-up line names each, and both
// reach the same lease table.
#[test]
fn a_host_name_binds_every_address_it_resolves_to() {
    let mut child = dlockd(&[
        "--listen",
        "localhost:0",
        "--metrics-listen",
        "off",
        "--grpc-listen",
        "off",
    ])
    .spawn()
    .expect("spawn dlockd");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the first start-up line");
    let addrs: Vec<SocketAddr> = line
        .split("http://")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    let resolved: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs("localhost:0")
        .expect("localhost resolves")
        .collect();
    assert!(
        addrs
            .iter()
            .any(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST),
        "{line}"
    );
    for a in &resolved {
        assert!(
            addrs.iter().any(|b| b.ip() == a.ip()),
            "{a} missing: {line}"
        );
    }
    assert!(addrs.iter().all(|a| a.port() == addrs[0].port()), "{line}");
    let mut clients: Vec<Client> = addrs.iter().map(|&a| Client::connect(a)).collect();
    assert_json(&clients[0].lock("lockstore", "r", "a", 60), 200, LOCKED);
    for c in clients.iter_mut().skip(1) {
        assert_json(&c.lock("lockstore", "r", "b", 60), 200, NOT_LOCKED);
    }
    let _ = child.kill();
    let _ = child.wait();
}
