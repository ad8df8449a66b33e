//! Hostile clients against the real `dlockd` binary over real sockets.
//!
//! Each test plays one hostile behaviour against a fresh server with small limits and short
//! timeouts (`BASE_FLAGS`: 2 workers, 2 KiB heads, 4 KiB bodies, 1 s head and body timeouts),
//! and asserts three things:
//! - the attacking connection gets a clear 4xx (the framer's exact answer) or is closed, as
//!   the case demands;
//! - the server's memory stays bounded: its RSS is back within `RSS_GROWTH_BOUND` (16 MiB) of
//!   where it was once the attack's connections are closed, and for the client that never
//!   reads also while the attack runs (the idle connections' test measures what each one
//!   costs, more finely); its descriptors return to where they were;
//! - a well-behaved client on its own connection, taking and releasing locks at a steady pace,
//!   gets every answer right throughout, with its p99 under max(10 x its p99 before the
//!   attack, 50 ms) and no request over 500 ms.
//!
//! The attacks that exercise how reads, writes and the reaper's shutdowns complete (slow heads
//! and bodies, the client that never reads, half-closes, resets) run on both io drivers; the
//! others run on the default one (io_uring where the kernel allows it).
//!
//! The tests run one at a time (`serial`): each measures latency, and two attacks on two
//! cores would measure each other. Figures are printed with `-- --nocapture`.

mod common;
#[path = "common/hostile_support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{
    assert_json, error_body, lock_body, post, unlock_body, Response, DRIVERS, LOCKED, NOT_LOCKED,
};
use support::*;

const LOCK: &str = "/v1.0-alpha1/lock/lockstore";
const UNLOCK: &str = "/v1.0-alpha1/unlock/lockstore";
/// The framer's plain answers (src/http/error.rs) and the contract's too-large body.
const BAD_REQUEST: &[u8] = b"400 Bad Request";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const HEADERS_TOO_LARGE: &[u8] = b"431 Request Header Fields Too Large";
const BODY_READ: &[u8] =
    br#"{"errorCode":"ERR_BODY_READ","message":"failed to read request body: stream too large"}"#;
const MALFORMED_PREFIX: &str =
    r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"failed deserializing HTTP body: "#;
/// `--max-body-bytes` in `BASE_FLAGS`.
const MAX_BODY: usize = 4096;
/// How often the slow attackers send their next byte.
const SLOW_PACE: Duration = Duration::from_millis(100);

/// The head of a lock request with `Expect: 100-continue` and a body of `len` bytes to come.
fn expect_continue_head(len: usize) -> String {
    format!(
        "POST {LOCK} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\
         Content-Length: {len}\r\n\r\n"
    )
}

fn healthz() -> &'static [u8] {
    b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
}

/// How long the quick attacks repeat their cases, so that the well-behaved client's latency
/// is sampled a few hundred times while they run.
const QUICK_ATTACK: Duration = Duration::from_millis(300);

/// Round numbers for a quick attack: at least three rounds, and until [`QUICK_ATTACK`] has
/// passed since the first.
fn rounds() -> impl Iterator<Item = usize> {
    let start = Instant::now();
    (0..).take_while(move |&round| round < 3 || start.elapsed() < QUICK_ATTACK)
}

/// Sends `bytes` on a fresh connection; the server must answer exactly one `status` with
/// `body` and `Connection: close`, then close the connection.
#[track_caller]
fn refused(addr: SocketAddr, what: &str, bytes: &[u8], status: u16, body: &[u8]) {
    let (got, end) = exchange(addr, bytes);
    let (answers, rest) = parse_all(&got);
    assert_eq!(
        answers.len(),
        1,
        "{what}: want one answer, got {:?}",
        String::from_utf8_lossy(&got)
    );
    let r = &answers[0];
    assert_eq!(
        r.status,
        status,
        "{what}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.body,
        body,
        "{what}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("connection"), Some("close"), "{what}");
    assert!(rest.is_empty(), "{what}: bytes after the answer: {rest:?}");
    assert_ne!(end, End::Open, "{what}: the connection stayed open");
}

/// A connection that sends `burst` at once, then `trickle` one byte per [`SLOW_PACE`].
struct Slow {
    stream: TcpStream,
    burst: Vec<u8>,
    trickle: Vec<u8>,
    trickled: usize,
    /// When the clock of the server's deadline started: the burst written, or else the first
    /// trickled byte.
    started: Option<Instant>,
    closed: Option<Instant>,
    received: Vec<u8>,
}

impl Slow {
    fn new(addr: SocketAddr, burst: &[u8], trickle: &[u8]) -> Slow {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Slow {
            stream,
            burst: burst.to_vec(),
            trickle: trickle.to_vec(),
            trickled: 0,
            started: None,
            closed: None,
            received: Vec::new(),
        }
    }

    /// Reads what has arrived without waiting; notes the close.
    fn poll(&mut self, now: Instant) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = Some(now);
                    return;
                }
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = Some(now);
                    return;
                }
            }
        }
    }
}

/// Plays every connection's burst, then trickles one byte per connection per [`SLOW_PACE`]
/// until the server has closed them all or `within` passes.
fn play_slowly(conns: &mut [Slow], within: Duration) {
    let deadline = Instant::now() + within;
    for c in conns.iter_mut() {
        if !c.burst.is_empty() {
            c.stream.write_all(&c.burst).expect("write the burst");
            c.started = Some(Instant::now());
        }
        c.stream.set_nonblocking(true).expect("nonblocking");
    }
    loop {
        let now = Instant::now();
        for c in conns.iter_mut().filter(|c| c.closed.is_none()) {
            c.poll(now);
            if c.closed.is_some() || c.trickled >= c.trickle.len() {
                continue;
            }
            match c.stream.write(&c.trickle[c.trickled..c.trickled + 1]) {
                Ok(_) => {
                    c.trickled += 1;
                    c.started.get_or_insert(now);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => c.closed = Some(now),
            }
        }
        if conns.iter().all(|c| c.closed.is_some()) || now >= deadline {
            return;
        }
        // The attack's own pace, not a wait for the server: every close is observed by a read.
        std::thread::sleep(SLOW_PACE);
    }
}

/// Checks that the server closed each slow connection between `timeout` and `timeout` plus
/// a margin after its clock started, before the trickle could finish, and answered nothing
/// but what `allowed` accepts.
#[track_caller]
fn assert_cut_at(conns: &[Slow], timeout: Duration, what: &str, allowed: impl Fn(&[u8]) -> bool) {
    let earliest = timeout - Duration::from_millis(100);
    let latest = timeout + Duration::from_millis(1500);
    let mut cut_after = Vec::new();
    for (i, c) in conns.iter().enumerate() {
        let started = c.started.expect("the attack started");
        let Some(closed) = c.closed else {
            panic!("{what} {i}: still open after {:?}", started.elapsed());
        };
        let after = closed.duration_since(started);
        assert!(
            after >= earliest && after <= latest,
            "{what} {i}: closed {after:?} after it started; want {earliest:?}..={latest:?}"
        );
        assert!(
            c.trickled < c.trickle.len() || c.trickle.is_empty(),
            "{what} {i}: the server kept reading the whole trickle ({} bytes)",
            c.trickled
        );
        assert!(
            allowed(&c.received),
            "{what} {i}: unexpected answer {:?}",
            String::from_utf8_lossy(&c.received)
        );
        cut_after.push(after);
    }
    eprintln!(
        "{what}: {} connections cut {:?}..{:?} after their clock started",
        conns.len(),
        cut_after.iter().min().copied().unwrap_or_default(),
        cut_after.iter().max().copied().unwrap_or_default()
    );
}

// Slowloris: heads sent one byte per 100 ms (about ten seconds each) on 64 connections at once
// are all cut at --header-timeout (1 s) after their first byte, with no answer; the server
// does not keep their memory, and the well-behaved client is served meanwhile.
// On both io drivers.
#[test]
fn slowloris_heads_are_cut_at_the_header_timeout() {
    let _serial = serial();
    for driver in DRIVERS {
        slowloris_on(driver);
    }
}

fn slowloris_on(driver: &str) {
    let mut scene = Scene::new(
        &format!("slowloris/{driver}"),
        &["--io-driver", driver, "--header-timeout", "1s"],
    );
    let head = post(LOCK, &lock_body("slowloris", "s", 60));
    let mut conns: Vec<Slow> = (0..64)
        .map(|_| Slow::new(scene.server.addr, b"", head.as_bytes()))
        .collect();
    scene.attack(|_| play_slowly(&mut conns, Duration::from_secs(5)));
    // The server sends no answer to a head cut by its timeout (README: "then close").
    assert_cut_at(&conns, Duration::from_secs(1), "slowloris", |got| {
        got.is_empty()
    });
    drop(conns);
    scene.finish();
}

// A body that never finishes: a stalled Content-Length body, one trickled a byte per 100 ms,
// a chunked body that trickles chunks and never sends the last one, and an Expect:
// 100-continue that never sends its body; each is cut at --body-timeout (1 s) after its head
// arrived, with no answer beyond the interim 100.
// On both io drivers.
#[test]
fn bodies_that_never_finish_are_cut_at_the_body_timeout() {
    let _serial = serial();
    for driver in DRIVERS {
        endless_body_on(driver);
    }
}

fn endless_body_on(driver: &str) {
    let mut scene = Scene::new(
        &format!("endless-body/{driver}"),
        &["--io-driver", driver, "--body-timeout", "1s"],
    );
    let addr = scene.server.addr;
    let sized = format!("POST {LOCK} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    let chunked = format!("POST {LOCK} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let expect = expect_continue_head(100);
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(Slow::new(addr, format!("{sized}{{\"res").as_bytes(), b""));
        conns.push(Slow::new(addr, sized.as_bytes(), &[b' '; 999]));
        conns.push(Slow::new(
            addr,
            chunked.as_bytes(),
            "1\r\n \r\n".repeat(200).as_bytes(),
        ));
        conns.push(Slow::new(addr, expect.as_bytes(), b""));
    }
    scene.attack(|_| play_slowly(&mut conns, Duration::from_secs(5)));
    assert_cut_at(&conns, Duration::from_secs(1), "endless body", |got| {
        got.is_empty() || got == CONTINUE
    });
    drop(conns);
    scene.finish();
}

/// What became of one of the idle attacker's connections.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Nothing heard yet.
    Waiting,
    /// Answered 503 and closed.
    Refused,
}

/// The idle attack: connections opened, then held without a byte sent.
const IDLE_ATTACK: usize = 10_000;
/// `--max-connections` against it, the well-behaved client's connection included.
const IDLE_LIMIT: usize = 1_000;

/// What one wave of idle connections found.
struct IdleWave {
    connected_in: Duration,
    held: usize,
    refused: usize,
    /// The server's anonymous memory while it held its limit's worth of them.
    anon_held: u64,
    /// Its anonymous memory once they were all closed again.
    anon_after: u64,
}

// 10 000 idle connections against --max-connections 1000, twice: the server holds at most its
// limit (the well-behaved client's connection included), answers every other one a clear 503
// and closes it, serves every connection it holds, and frees every slot and descriptor once
// they close. Its memory follows the connections it holds and nothing else: holding the idle
// ones costs at most `HELD_COST` each, and once they are closed its memory is back within
// `WAVE_RESIDUE` of where it was before the first wave, after each wave (no memory kept or
// leaked for a held or a refused connection).
//
// Why the measure is the server's: the server is a process of its own (the real binary, a
// child of this one, which runs nothing else meanwhile), and what is read is its anonymous
// memory (heap and stacks, resident or swapped; not code paged in from its binary) with its
// allocator set to give back every page as soon as it is free, in 4 KiB pages
// (`ALLOCATOR_FOR_MEASURING`). With the allocator's defaults, its resident memory read right
// after a wave also counted pages freed less than a second before (they are given back later,
// when the allocator next looks), and moved in 2 MiB steps (transparent huge pages): the
// second wave, taking fresh pages meanwhile, read 8 to 10 MiB above the first in 8 of 28 runs,
// the first wave's memory counted twice, not a leak. With these settings the figures are
// steady: about 3 MiB at rest, 10.4 KiB more per held connection in a debug build (two 4 KiB
// buffers and the connection's state), and 0.4 MiB more after each wave than at rest, the
// same after the second wave as after the first.
#[test]
fn ten_thousand_idle_connections_against_a_lower_limit() {
    // The attacker's sockets, the server's (it inherits the limit), and some to spare.
    const NOFILE: libc::rlim_t = (IDLE_ATTACK + IDLE_LIMIT + 1_000) as libc::rlim_t;
    /// What one held idle connection may cost the server. A 64 KiB buffer kept per connection
    /// adds 64 KiB once written, and 4 KiB even if never written (the allocator writes into
    /// its first page): either exceeds it.
    const HELD_COST: u64 = 12 * 1024;
    /// What may stay with the server after a wave of 10 000 connections, 200 bytes for each:
    /// a 64 KiB buffer leaked per refused connection leaves at least 36 MiB (its first page),
    /// one per held connection at least 4 MiB.
    const WAVE_RESIDUE: u64 = 2 * 1024 * 1024;
    let _serial = serial();
    let soft = raise_nofile(NOFILE);
    if soft < NOFILE {
        eprintln!(
            "SKIPPED ten_thousand_idle_connections_against_a_lower_limit: the RLIMIT_NOFILE \
             hard limit allows only {soft} descriptors, {NOFILE} needed"
        );
        return;
    }
    let limit = IDLE_LIMIT.to_string();
    let mut scene = Scene::with_env(
        "idle-10k",
        &["--max-connections", &limit, "--idle-timeout", "60s"],
        ALLOCATOR_FOR_MEASURING,
    );
    // Refusing 9 000 connections in a burst is real work that each worker interleaves with the
    // well-behaved client's requests, and the attacker's own connect loop competes for the two
    // cores: p99 about 12 ms here when the machine is otherwise idle, 73 ms with two extra busy
    // processes. A wedged worker still shows as seconds.
    scene.allow_latency_floor(Duration::from_millis(150));
    let (anon_before, waves) = scene.attack(|server| {
        let fds_before = server.open_fds();
        let anon_before = server.anon_bytes();
        let waves = [idle_wave(server, fds_before), idle_wave(server, fds_before)];
        (anon_before, waves)
    });
    for (n, w) in waves.iter().enumerate() {
        let held_cost = w.anon_held.saturating_sub(anon_before) / w.held.max(1) as u64;
        eprintln!(
            "idle-10k wave {n}: {IDLE_ATTACK} connected in {:?}; {} held and served, {} refused \
             with 503; anonymous memory {} KiB before, {} KiB while holding them ({} bytes \
             each), {} KiB once closed ({:+} KiB)",
            w.connected_in,
            w.held,
            w.refused,
            anon_before / 1024,
            w.anon_held / 1024,
            held_cost,
            w.anon_after / 1024,
            (w.anon_after as i64 - anon_before as i64) / 1024,
        );
        assert_eq!(
            w.held + w.refused,
            IDLE_ATTACK,
            "wave {n}: every connection accounted for"
        );
        assert!(
            w.held < IDLE_LIMIT,
            "wave {n}: {} idle connections held besides the well-behaved one; the limit is \
             {IDLE_LIMIT}",
            w.held
        );
        assert!(
            w.held >= IDLE_LIMIT * 9 / 10,
            "wave {n}: only {} idle connections held: the server refuses far below its limit",
            w.held
        );
        assert!(
            w.anon_held < anon_before + w.held as u64 * HELD_COST,
            "wave {n}: anonymous memory {} KiB while holding {} idle connections, {} KiB \
             before: {held_cost} bytes each, bound {HELD_COST}",
            w.anon_held / 1024,
            w.held,
            anon_before / 1024
        );
        assert!(
            w.anon_after < anon_before + WAVE_RESIDUE,
            "wave {n}: anonymous memory {} KiB once its connections closed, {} KiB before the \
             first wave (bound +{} KiB)",
            w.anon_after / 1024,
            anon_before / 1024,
            WAVE_RESIDUE / 1024
        );
    }
    scene.finish();
}

/// Opens [`IDLE_ATTACK`] connections at once and sends nothing; sorts them into refused
/// (a 503, then closed) and held (served when finally asked); closes them all and waits until
/// the server has closed its side too (its descriptors back to `fds_before`).
fn idle_wave(server: &Dlockd, fds_before: usize) -> IdleWave {
    let t = Instant::now();
    let mut socks: Vec<TcpStream> = (0..IDLE_ATTACK)
        .map(|i| {
            TcpStream::connect(server.addr)
                .unwrap_or_else(|e| panic!("idle connection {i} could not connect: {e}"))
        })
        .collect();
    let connected_in = t.elapsed();
    let mut state = vec![Idle::Waiting; IDLE_ATTACK];
    let mut received: Vec<Vec<u8>> = vec![Vec::new(); IDLE_ATTACK];
    for s in &socks {
        s.set_nonblocking(true).expect("nonblocking");
    }
    // Wait (on poll(2)) until no more than the limit's worth is still waiting: every other
    // connection must have been answered and closed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: Vec<usize> = (0..IDLE_ATTACK)
            .filter(|&i| state[i] == Idle::Waiting)
            .collect();
        if waiting.len() < IDLE_LIMIT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} idle connections still unanswered after 20 s; the limit is {IDLE_LIMIT}",
            waiting.len()
        );
        for i in readable(&socks, &waiting, Duration::from_millis(100)) {
            let mut chunk = [0u8; 1024];
            loop {
                match socks[i].read(&mut chunk) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Ok(0) | Err(_) => {
                        check_refusal(i, &received[i]);
                        state[i] = Idle::Refused;
                        break;
                    }
                    Ok(n) => received[i].extend_from_slice(&chunk[..n]),
                }
            }
        }
    }
    let anon_held = server.anon_bytes();
    // Every connection still waiting is one the server holds: each must be served now. (One
    // accepted while a refused one was still counted may be refused late: still a clear 503.)
    let waiting: Vec<usize> = (0..IDLE_ATTACK)
        .filter(|&i| state[i] == Idle::Waiting)
        .collect();
    for &i in &waiting {
        socks[i].set_nonblocking(false).expect("blocking");
        socks[i]
            .write_all(healthz())
            .expect("write on a held connection");
    }
    let mut held = 0;
    for &i in &waiting {
        let mut got = std::mem::take(&mut received[i]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut end = End::Open;
        while parse_response(&got).ok().flatten().is_none() && end == End::Open {
            if Instant::now() >= deadline {
                break;
            }
            let (more, e) = read_some(&mut socks[i], deadline);
            got.extend_from_slice(&more);
            end = e;
        }
        let (answers, _) = parse_all(&got);
        match answers.first().map(|r| r.status) {
            Some(204) => held += 1,
            Some(503) => {
                check_refusal(i, &got);
                state[i] = Idle::Refused;
            }
            _ => panic!(
                "held idle connection {i}: no answer to a health check ({end:?}): {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    let refused = state.iter().filter(|s| **s == Idle::Refused).count();
    drop(socks);
    wait_for("the server closes the idle connections", SETTLE, || {
        let fds = server.open_fds();
        if fds <= fds_before {
            Ok(())
        } else {
            Err(format!("{fds} open descriptors, {fds_before} before"))
        }
    });
    IdleWave {
        connected_in,
        held,
        refused,
        anon_held,
        anon_after: server.anon_bytes(),
    }
}

/// Which of `socks[i]` for `i` in `which` are readable (or closed) within `wait`.
#[allow(unsafe_code)]
fn readable(socks: &[TcpStream], which: &[usize], wait: Duration) -> Vec<usize> {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = which
        .iter()
        .map(|&i| libc::pollfd {
            fd: socks[i].as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs that poll only writes to.
    let n = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            wait.as_millis() as libc::c_int,
        )
    };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    which
        .iter()
        .zip(&fds)
        .filter(|(_, p)| p.revents != 0)
        .map(|(&i, _)| i)
        .collect()
}

/// Reads what arrives before `deadline` (blocking), or notes the close.
fn read_some(s: &mut TcpStream, deadline: Instant) -> (Vec<u8>, End) {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return (Vec::new(), End::Open);
    }
    let _ = s.set_read_timeout(Some(left));
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk) {
        Ok(0) => (Vec::new(), End::Eof),
        Ok(n) => (chunk[..n].to_vec(), End::Open),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
            ) =>
        {
            (Vec::new(), End::Open)
        }
        Err(_) => (Vec::new(), End::Reset),
    }
}

/// A connection over the limit gets exactly the server's 503 and nothing else.
#[track_caller]
fn check_refusal(i: usize, got: &[u8]) {
    let (answers, rest) = parse_all(got);
    let ok = answers.len() == 1
        && answers[0].status == 503
        && answers[0].header("connection") == Some("close")
        && answers[0].body == b"too many open connections\n"
        && rest.is_empty();
    assert!(
        ok,
        "idle connection {i} closed without a clean 503: {:?}",
        String::from_utf8_lossy(got)
    );
}

// A header flood: more header lines than the framer allows, one header far over
// --max-header-bytes, and four connections streaming header lines without end are all
// answered 431 and closed; the endless ones stop being read (each pushes a bounded amount
// against a 256 MiB attempt). A head just within the limits is still served.
#[test]
fn header_floods_get_431_and_stop_being_read() {
    let _serial = serial();
    let mut scene = Scene::new("header-flood", &["--max-header-bytes", "2KiB"]);
    let addr = scene.server.addr;
    let pushed = scene.attack(|_| {
        for round in rounds() {
            let mut many = String::from("GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n");
            for i in 0..100 {
                many += &format!("X-{i}: v\r\n");
            }
            many += "\r\n";
            refused(addr, "100 headers", many.as_bytes(), 431, HEADERS_TOO_LARGE);
            let huge = format!(
                "GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(100 * 1024)
            );
            refused(
                addr,
                "a 100 KiB header",
                huge.as_bytes(),
                431,
                HEADERS_TOO_LARGE,
            );
            // Control: 31 short headers and Host (the framer's 32) within 2 KiB are served.
            let mut fits = String::from("GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n");
            for i in 0..31 {
                fits += &format!("X-{i}: v\r\n");
            }
            fits += "\r\n";
            let mut c = Conn::connect(addr).expect("connect");
            let r = c
                .request(fits.as_bytes(), Duration::from_secs(5))
                .expect("a head within the limits is answered");
            assert_eq!(r.status, 204, "round {round}: a head within the limits");
        }
        let endless: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || endless_head(addr)))
            .collect();
        endless
            .into_iter()
            .map(|t| t.join().expect("endless-head thread"))
            .collect::<Vec<u64>>()
    });
    eprintln!(
        "header-flood: endless heads pushed {pushed:?} bytes before the server stopped reading"
    );
    scene.finish();
}

/// Streams header lines without end (up to 256 MiB) while reading; returns how many bytes
/// went out before the server stopped reading. Asserts the answer was a 431.
fn endless_head(addr: SocketAddr) -> u64 {
    const ATTEMPT: u64 = 256 << 20;
    const BOUND: u64 = 64 << 20;
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(1)))
        .expect("write timeout");
    let mut reader = s.try_clone().expect("clone");
    let reading = std::thread::spawn(move || read_to_end(&mut reader, Duration::from_secs(10)));
    let line = "X-Flood: ".to_string() + &"f".repeat(100) + "\r\n";
    let chunk = line.repeat(64 * 1024 / line.len());
    let mut pushed = 0u64;
    let _ = s.write_all(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n");
    while pushed < ATTEMPT {
        match s.write(chunk.as_bytes()) {
            Ok(n) => pushed += n as u64,
            Err(_) => break,
        }
    }
    let (got, end) = reading.join().expect("reader thread");
    let (answers, _) = parse_all(&got);
    assert!(
        answers.first().is_some_and(|r| r.status == 431),
        "endless head: want a 431, got {:?} ({end:?})",
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
    assert_ne!(end, End::Open, "endless head: the connection stayed open");
    assert!(
        pushed < BOUND,
        "endless head: the server kept reading ({pushed} bytes pushed)"
    );
    pushed
}

// Huge and negative Content-Length: a length over --max-body-bytes (up to u64::MAX, and with
// the flood of body bytes that would follow) gets the contract's 400 ERR_BODY_READ; one that
// is negative, signed, over 64 bits or not a number gets the framer's 400; all close. A body
// of exactly the limit is still served.
#[test]
fn huge_and_negative_content_lengths_are_refused() {
    let _serial = serial();
    let mut scene = Scene::new("content-length", &[]);
    let addr = scene.server.addr;
    scene.attack(|_| {
        let head =
            |len: &str| format!("POST {LOCK} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
        for round in rounds() {
            for len in ["18446744073709551615", "4097", "1000000000"] {
                let mut req = head(len).into_bytes();
                if len == "1000000000" {
                    req.extend(std::iter::repeat_n(b'{', 1 << 20));
                }
                refused(
                    addr,
                    &format!("Content-Length: {len}"),
                    &req,
                    400,
                    BODY_READ,
                );
            }
            for len in [
                "18446744073709551616",
                "99999999999999999999999999999",
                "-1",
                "-0",
                "+5",
                "5, 5",
                "1e3",
                "0x10",
            ] {
                let req = head(len) + "hello";
                refused(
                    addr,
                    &format!("Content-Length: {len}"),
                    req.as_bytes(),
                    400,
                    BAD_REQUEST,
                );
            }
            // Control: a body of exactly --max-body-bytes (JSON padded with spaces) is served.
            let resource = format!("cl-{round}");
            let mut body = lock_body(&resource, "o", 60);
            body += &" ".repeat(MAX_BODY - body.len());
            let mut c = Conn::connect(addr).expect("connect");
            let r = c
                .request(post(LOCK, &body).as_bytes(), Duration::from_secs(5))
                .expect("a body at the limit is answered");
            assert_json(&r, 200, LOCKED);
        }
    });
    scene.finish();
}

// Chunk sizes that overflow 64 bits (and the ones merely over the limit) are refused as soon
// as their digits say so: 400 ERR_BODY_READ for a size, or chunks adding up, past
// --max-body-bytes; the framer's 400 for more than 16 hex digits (even of a small value), a
// sign, a bad digit, or an endless chunk extension; each connection is closed. A body in
// one-byte chunks is still served.
#[test]
fn overflowing_chunk_sizes_are_refused() {
    let _serial = serial();
    let mut scene = Scene::new("chunk-size", &[]);
    let addr = scene.server.addr;
    scene.attack(|_| {
        let head = format!("POST {LOCK} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        for round in rounds() {
            for size in [
                "ffffffffffffffffff",
                "fffffffffffffffff",
                "10000000000000000",
                "1001",
            ] {
                let req = format!("{head}{size}\r\n");
                refused(
                    addr,
                    &format!("chunk size {size}"),
                    req.as_bytes(),
                    400,
                    BODY_READ,
                );
            }
            let over = format!("{head}fff\r\n{}\r\n2\r\nxx\r\n0\r\n\r\n", " ".repeat(0xfff));
            refused(
                addr,
                "chunks adding up past the limit",
                over.as_bytes(),
                400,
                BODY_READ,
            );
            for size in ["00000000000000000001", "-1", "0x10", " 10", ""] {
                let req = format!("{head}{size}\r\nx\r\n0\r\n\r\n");
                refused(
                    addr,
                    &format!("chunk size {size:?}"),
                    req.as_bytes(),
                    400,
                    BAD_REQUEST,
                );
            }
            let ext = format!("{head}1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(32 * 1024));
            refused(
                addr,
                "an endless chunk extension",
                ext.as_bytes(),
                400,
                BAD_REQUEST,
            );
            // Control: the same kind of body in one-byte chunks is served.
            let body = lock_body(&format!("chunk-{round}"), "o", 60);
            let mut req = head.clone();
            for b in body.chars() {
                req += &format!("1\r\n{b}\r\n");
            }
            req += "0\r\n\r\n";
            let mut c = Conn::connect(addr).expect("connect");
            let r = c
                .request(req.as_bytes(), Duration::from_secs(5))
                .expect("a chunked body is answered");
            assert_json(&r, 200, LOCKED);
        }
    });
    scene.finish();
}

// Bare LF line endings: in a head they are accepted as httparse and Go accept them, and the
// requests are answered correctly on a connection that stays usable; in a chunked body (as Go
// since 1.24.2) and as a bare CR in a head they are a 400 and a close.
#[test]
fn bare_lf_line_endings() {
    let _serial = serial();
    let mut scene = Scene::new("bare-lf", &[]);
    let addr = scene.server.addr;
    scene.attack(|_| {
        for round in rounds() {
            let resource = format!("lf-{round}");
            let lf = |path: &str, body: &str| {
                format!(
                    "POST {path} HTTP/1.1\nHost: x\nContent-Length: {}\n\n{body}",
                    body.len()
                )
            };
            let mut c = Conn::connect(addr).expect("connect");
            let within = Duration::from_secs(5);
            let r = c
                .request(lf(LOCK, &lock_body(&resource, "o", 60)).as_bytes(), within)
                .expect("a bare-LF lock is answered");
            assert_json(&r, 200, LOCKED);
            let r = c
                .request(lf(UNLOCK, &unlock_body(&resource, "o")).as_bytes(), within)
                .expect("a bare-LF unlock is answered");
            assert_json(&r, 200, r#"{"status":0}"#);
            let r = c
                .request(b"GET /v1.0/healthz HTTP/1.1\nHost: x\r\n\n", within)
                .expect("mixed line endings are answered");
            assert_eq!(r.status, 204);

            let chunked =
                format!("POST {LOCK} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
            for (what, tail) in [
                ("a bare LF after a chunk size", "2\n{}\r\n0\r\n\r\n"),
                ("a bare LF after chunk data", "2\r\n{}\n0\r\n\r\n"),
                ("a bare LF ending the last chunk", "2\r\n{}\r\n0\n\n"),
                ("a bare LF ending the chunked body", "2\r\n{}\r\n0\r\n\n"),
            ] {
                refused(
                    addr,
                    what,
                    (chunked.clone() + tail).as_bytes(),
                    400,
                    BAD_REQUEST,
                );
            }
            refused(
                addr,
                "a bare CR in a head",
                b"GET /v1.0/healthz HTTP/1.1\rHost: x\r\n\r\n",
                400,
                BAD_REQUEST,
            );
        }
    });
    scene.finish();
}

/// Checks an error answer: status 400, JSON that parses, `errorCode` and message prefix as
/// given, and the connection kept alive (no `Connection: close`).
#[track_caller]
fn assert_json_error(r: &Response, what: &str, prefix: &str) {
    assert_eq!(
        r.status,
        400,
        "{what}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    assert_ne!(r.header("connection"), Some("close"), "{what}");
    let text = std::str::from_utf8(&r.body)
        .unwrap_or_else(|_| panic!("{what}: the answer is not UTF-8: {:?}", r.body));
    assert!(
        serde_json::from_str::<serde_json::Value>(text).is_ok(),
        "{what}: the answer is not JSON: {text}"
    );
    assert!(text.starts_with(prefix), "{what}: {text}");
}

// NUL and invalid UTF-8: raw in the path they are a framing error (400, close); percent-encoded
// in the store name they are an unknown store (400 ERR_LOCK_STORE_NOT_FOUND, written as valid
// JSON); raw in a JSON string (or a lone surrogate escape) they are malformed (400
// ERR_MALFORMED_REQUEST); these keep the connection usable. An escaped \u0000 is a valid id.
#[test]
fn nul_and_invalid_utf8_in_path_and_json() {
    let _serial = serial();
    let mut scene = Scene::new("nul-utf8", &[]);
    let addr = scene.server.addr;
    scene.attack(|_| {
        let within = Duration::from_secs(5);
        let raw_post = |path: &[u8], body: &[u8]| {
            let mut req = b"POST ".to_vec();
            req.extend_from_slice(path);
            req.extend_from_slice(
                format!(
                    " HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            req.extend_from_slice(body);
            req
        };
        let ok_body = lock_body("r", "o", 60);
        for round in rounds() {
            for (what, path) in [
                ("a raw NUL in the path", &b"/v1.0-alpha1/lock/a\x00b"[..]),
                ("a raw 0xFF in the path", b"/v1.0-alpha1/lock/a\xffb"),
                ("a raw DEL in the path", b"/v1.0-alpha1/lock/a\x7fb"),
            ] {
                refused(
                    addr,
                    what,
                    &raw_post(path, ok_body.as_bytes()),
                    400,
                    BAD_REQUEST,
                );
            }

            let mut c = Conn::connect(addr).expect("connect");
            for (what, path, store) in [
                ("%00 in the store", "/v1.0-alpha1/lock/a%00b", r"a\u0000b"),
                ("%FF in the store", "/v1.0-alpha1/lock/a%FFb", r"a\ufffdb"),
                (
                    "an overlong NUL in the store",
                    "/v1.0-alpha1/lock/%C0%80",
                    r"\ufffd\ufffd",
                ),
            ] {
                let r = c
                    .request(post(path, &ok_body).as_bytes(), within)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_json_error(&r, what, r#"{"errorCode":"ERR_LOCK_STORE_NOT_FOUND""#);
                assert_eq!(
                    r.body,
                    error_body(
                        "ERR_LOCK_STORE_NOT_FOUND",
                        &format!("lock store {store} not found")
                    )
                    .as_bytes(),
                    "{what}"
                );
            }
            let json: [(&str, &[u8]); 5] = [
                (
                    "a raw NUL in resourceId",
                    b"{\"resourceId\":\"a\x00b\",\"lockOwner\":\"o\",\"expiryInSeconds\":9}",
                ),
                (
                    "a raw 0xFF in resourceId",
                    b"{\"resourceId\":\"a\xffb\",\"lockOwner\":\"o\",\"expiryInSeconds\":9}",
                ),
                (
                    "a truncated UTF-8 sequence in lockOwner",
                    b"{\"resourceId\":\"a\",\"lockOwner\":\"\xc3\",\"expiryInSeconds\":9}",
                ),
                (
                    "a raw NUL between fields",
                    b"{\"resourceId\":\"a\",\x00\"lockOwner\":\"o\",\"expiryInSeconds\":9}",
                ),
                (
                    "a lone surrogate escape",
                    br#"{"resourceId":"a\ud800","lockOwner":"o","expiryInSeconds":9}"#,
                ),
            ];
            for (what, body) in json {
                let r = c
                    .request(&raw_post(LOCK.as_bytes(), body), within)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_json_error(&r, what, MALFORMED_PREFIX);
            }

            // An escaped NUL is a valid character of an id: locked, then released.
            let resource = format!(r"nul\u0000{round}");
            let r = c
                .request(
                    post(LOCK, &lock_body(&resource, "o", 60)).as_bytes(),
                    within,
                )
                .expect("an escaped NUL is answered");
            assert_json(&r, 200, LOCKED);
            let r = c
                .request(
                    post(UNLOCK, &unlock_body(&resource, "o")).as_bytes(),
                    within,
                )
                .expect("the unlock is answered");
            assert_json(&r, 200, r#"{"status":0}"#);
        }
    });
    scene.finish();
}

// Pipelined garbage after a valid request: the valid request is answered (and takes effect)
// first, then the garbage gets the framer's 400 and the connection is closed; a valid request
// pipelined after the garbage is neither answered nor executed.
#[test]
fn pipelined_garbage_after_a_valid_request() {
    let _serial = serial();
    let mut scene = Scene::new("pipelined-garbage", &[]);
    let addr = scene.server.addr;
    scene.attack(|_| {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in rounds() {
            // Random bytes behind a NUL, which no request line starts with.
            let mut noise = vec![0u8];
            noise.extend((0..1024).map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            }));
            let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec();
            let bad_length =
                format!("POST {LOCK} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n");
            for (case, (what, garbage)) in [
                ("a bad request line", b"BLAH\x7f /\r\n\r\n".to_vec()),
                ("random bytes", noise),
                ("a TLS ClientHello", tls_hello),
                ("a negative Content-Length", bad_length.into_bytes()),
            ]
            .into_iter()
            .enumerate()
            {
                let resource = format!("garbage-{round}-{case}");
                let mut req = post(LOCK, &lock_body(&resource, "a", 60)).into_bytes();
                req.extend_from_slice(&garbage);
                // Whatever follows the garbage must never run.
                req.extend_from_slice(post(UNLOCK, &unlock_body(&resource, "a")).as_bytes());
                let (got, end) = exchange(addr, &req);
                let (answers, rest) = parse_all(&got);
                assert_eq!(
                    answers.len(),
                    2,
                    "{what}: want the lock's answer and a 400, got {:?}",
                    String::from_utf8_lossy(&got)
                );
                assert_json(&answers[0], 200, LOCKED);
                assert_eq!(answers[1].status, 400, "{what}");
                assert_eq!(answers[1].body, BAD_REQUEST, "{what}");
                assert_eq!(answers[1].header("connection"), Some("close"), "{what}");
                assert!(rest.is_empty(), "{what}: more after the 400: {rest:?}");
                assert_ne!(end, End::Open, "{what}: the connection stayed open");
                // The lock took effect and the unlock behind the garbage did not run: the
                // lock is still held by its owner.
                let mut c = Conn::connect(addr).expect("connect");
                let r = c
                    .request(
                        post(UNLOCK, &unlock_body(&resource, "a")).as_bytes(),
                        Duration::from_secs(5),
                    )
                    .expect("the unlock is answered");
                assert_json(&r, 200, r#"{"status":0}"#);
            }
        }
    });
    scene.finish();
}

/// What one client that never reads managed before the server stopped reading it.
struct Greedy {
    stream: TcpStream,
    pushed: u64,
    stalled: bool,
}

// A client that never reads its answers while it pipelines more: eight such connections each
// try to push 200 MB (lock requests, and small GETs whose 404 answers are larger than the
// requests). The server stops reading each once its answers back up, so every push stalls
// after a bounded amount; its RSS stays within the bound while the attack runs and after;
// the stalled answers are all there, in order, when the client finally reads.
// On both io drivers. On the legacy one this found a worker held 1.2-1.5 s by one such client
// (reads of a ready socket never suspended the connection, and the worker's yield did not
// yield on monoio), during which the well-behaved client got no answer.
#[test]
fn client_that_never_reads_is_bounded() {
    let _serial = serial();
    for driver in DRIVERS {
        never_reads_on(driver);
    }
}

fn never_reads_on(driver: &str) {
    const ATTEMPT: u64 = 200_000_000;
    /// Kernel socket buffers on both sides (autotuned up to tens of MiB here) take the first
    /// bytes; a server that kept reading would take all 200 MB.
    const BOUND: u64 = 100_000_000;
    /// No progress for this long means the server has stopped reading.
    const STALL: Duration = Duration::from_secs(1);
    let mut scene = Scene::new(
        &format!("never-reads/{driver}"),
        &["--io-driver", driver, "--idle-timeout", "10s"],
    );
    let addr = scene.server.addr;
    let rss_before = scene.rss_before();
    let (greedy, peak) = scene.attack(|server| {
        let pushers: Vec<_> = (0..8)
            .map(|k| {
                std::thread::spawn(move || {
                    let request = if k % 2 == 0 {
                        post(LOCK, &lock_body(&format!("greedy-{k}"), "g", 60))
                    } else {
                        "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".to_string()
                    };
                    let batch = request.repeat(64 * 1024 / request.len());
                    let mut stream = TcpStream::connect(addr).expect("connect");
                    stream
                        .set_write_timeout(Some(Duration::from_millis(100)))
                        .expect("write timeout");
                    let mut pushed = 0u64;
                    let mut at = 0usize;
                    let mut progress = Instant::now();
                    let mut stalled = false;
                    while pushed < ATTEMPT {
                        match stream.write(&batch.as_bytes()[at..]) {
                            Ok(n) => {
                                pushed += n as u64;
                                at = (at + n) % batch.len();
                                progress = Instant::now();
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                if progress.elapsed() >= STALL {
                                    stalled = true;
                                    break;
                                }
                            }
                            Err(e) => {
                                panic!("greedy {k}: the write failed after {pushed} bytes: {e}")
                            }
                        }
                    }
                    Greedy {
                        stream,
                        pushed,
                        stalled,
                    }
                })
            })
            .collect();
        // Watch the server's memory for as long as the clients push.
        let mut peak = server.rss_bytes();
        while pushers.iter().any(|p| !p.is_finished()) {
            peak = peak.max(server.rss_bytes());
            std::thread::sleep(Duration::from_millis(10));
        }
        peak = peak.max(server.rss_bytes());
        let greedy: Vec<Greedy> = pushers
            .into_iter()
            .map(|p| p.join().expect("greedy thread"))
            .collect();
        (greedy, peak)
    });
    let pushed: Vec<u64> = greedy.iter().map(|g| g.pushed).collect();
    eprintln!(
        "never-reads: pushed {pushed:?} bytes before stalling; RSS peak {} KiB during the \
         attack ({:+} KiB)",
        peak / 1024,
        (peak as i64 - rss_before as i64) / 1024
    );
    for (k, g) in greedy.iter().enumerate() {
        assert!(
            g.stalled && g.pushed < BOUND,
            "greedy {k}: the server kept reading ({} bytes pushed, stalled: {})",
            g.pushed,
            g.stalled
        );
    }
    assert!(
        peak < rss_before + RSS_GROWTH_BOUND,
        "RSS peaked at {} KiB while clients pushed without reading (before: {} KiB)",
        peak / 1024,
        rss_before / 1024
    );
    // The answers waited, in order: the first lock won, the next ones lost; the GETs got 404.
    for (k, g) in greedy.into_iter().enumerate() {
        let mut c = Conn::from(g.stream);
        let first = c
            .read_response(Duration::from_secs(5))
            .expect("first answer");
        let second = c
            .read_response(Duration::from_secs(5))
            .expect("second answer");
        if k % 2 == 0 {
            assert_json(&first, 200, LOCKED);
            assert_json(&second, 200, NOT_LOCKED);
        } else {
            assert_eq!((first.status, second.status), (404, 404), "greedy {k}");
        }
        // Closing with answers unread resets the connection, which ends the server's write.
    }
    scene.finish();
}

// Half-closed sockets: a client that sends its requests and shuts down its writing side still
// gets every answer, in order, then the server closes; one that half-closes in the middle of
// a request is closed at once, without an answer (well before the 5 s timeouts here).
// On both io drivers.
#[test]
fn half_closed_sockets_get_their_answers_then_close() {
    let _serial = serial();
    for driver in DRIVERS {
        half_closed_on(driver);
    }
}

fn half_closed_on(driver: &str) {
    let mut scene = Scene::new(
        &format!("half-closed/{driver}"),
        &[
            "--io-driver",
            driver,
            "--header-timeout",
            "5s",
            "--body-timeout",
            "5s",
        ],
    );
    let addr = scene.server.addr;
    scene.attack(|_| {
        let half_close = |bytes: &[u8]| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(bytes).expect("write");
            s.shutdown(Shutdown::Write).expect("shutdown(Write)");
            read_to_end(&mut s, Duration::from_secs(2))
        };
        for round in rounds() {
            let resource = format!("half-{round}");
            let lock = post(LOCK, &lock_body(&resource, "a", 60));
            let unlock = post(UNLOCK, &unlock_body(&resource, "a"));

            let (got, end) = half_close(lock.as_bytes());
            let (answers, rest) = parse_all(&got);
            assert_eq!(
                answers.len(),
                1,
                "one request: {:?}",
                String::from_utf8_lossy(&got)
            );
            assert_json(&answers[0], 200, LOCKED);
            assert!(rest.is_empty());
            assert_eq!(end, End::Eof, "closed after the answer");

            let mut three = unlock.clone().into_bytes();
            three.extend_from_slice(unlock.as_bytes());
            three.extend_from_slice(healthz());
            let (got, end) = half_close(&three);
            let (answers, rest) = parse_all(&got);
            assert_eq!(
                answers.len(),
                3,
                "three requests: {:?}",
                String::from_utf8_lossy(&got)
            );
            assert_json(&answers[0], 200, r#"{"status":0}"#);
            assert_json(&answers[1], 200, r#"{"status":1}"#);
            assert_eq!(answers[2].status, 204);
            assert!(rest.is_empty());
            assert_eq!(end, End::Eof, "closed after the answers");

            let (head, body) = lock.split_at(lock.find("\r\n\r\n").expect("head") + 4);
            let partial_head = &head[..head.len() / 2];
            let partial_body = format!("{head}{}", &body[..body.len() / 2]);
            let expect = expect_continue_head(10);
            for (what, bytes, want) in [
                ("half a head", partial_head.as_bytes(), &b""[..]),
                ("a head and half a body", partial_body.as_bytes(), b""),
                ("an Expect: 100-continue head", expect.as_bytes(), CONTINUE),
            ] {
                let (got, end) = half_close(bytes);
                assert_eq!(got, want, "{what}: {:?}", String::from_utf8_lossy(&got));
                assert_eq!(end, End::Eof, "{what}: not closed at the half-close");
            }
        }
    });
    scene.finish();
}

// Resets in the middle of a request (SO_LINGER 0, then close): in a head, in a body, in a
// chunked body, after an interim 100, while the server writes answers to pipelined requests,
// and right after connecting. The server drops every one of them: its descriptors return to
// where they were, and with --max-connections 64 all 63 slots beside the well-behaved client
// are free again and serve at once.
// On both io drivers.
#[test]
fn resets_in_the_middle_of_a_request() {
    let _serial = serial();
    for driver in DRIVERS {
        resets_on(driver);
    }
}

fn resets_on(driver: &str) {
    const LIMIT: usize = 64;
    let limit = LIMIT.to_string();
    let mut scene = Scene::new(
        &format!("resets/{driver}"),
        &["--io-driver", driver, "--max-connections", &limit],
    );
    let addr = scene.server.addr;
    scene.attack(|server| {
        let fds_before = server.open_fds();
        let lock = post(LOCK, &lock_body("reset", "r", 60));
        let split = lock.len() - 20;
        let chunked = format!(
            "POST {LOCK} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"res"
        );
        let expect = expect_continue_head(10);
        let pipelined = lock.repeat(200);
        for i in 0..600 {
            let mut s = TcpStream::connect(addr).expect("connect");
            match i % 6 {
                0 => s.write_all(&lock.as_bytes()[..20]).expect("write"),
                1 => s.write_all(&lock.as_bytes()[..split]).expect("write"),
                2 => s.write_all(chunked.as_bytes()).expect("write"),
                3 => {
                    s.write_all(expect.as_bytes()).expect("write");
                    let mut c = Conn::from(s.try_clone().expect("clone"));
                    let r = c
                        .read_response(Duration::from_secs(5))
                        .expect("the interim 100");
                    assert_eq!(r.status, 100, "connection {i}: want the interim 100");
                }
                4 => {
                    // Reset while the server is writing answers: wait for the first of them.
                    s.write_all(pipelined.as_bytes()).expect("write");
                    let mut first = [0u8; 1];
                    s.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    s.read_exact(&mut first).expect("the first answer starts");
                }
                _ => {}
            }
            set_linger_zero(&s);
            drop(s);
        }
        wait_for("the server drops the reset connections", SETTLE, || {
            let fds = server.open_fds();
            if fds <= fds_before {
                Ok(())
            } else {
                Err(format!("{fds} open descriptors, {fds_before} before"))
            }
        });
        // Every slot is free again: the limit's worth of connections at once, all served.
        let mut conns: Vec<Conn> = (0..LIMIT - 1)
            .map(|_| Conn::connect(addr).expect("connect"))
            .collect();
        for (i, c) in conns.iter_mut().enumerate() {
            let r = c
                .request(healthz(), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("slot {i} after the resets: {e}"));
            assert_eq!(r.status, 204, "slot {i} after the resets: {:?}", r.body);
        }
    });
    scene.finish();
}
