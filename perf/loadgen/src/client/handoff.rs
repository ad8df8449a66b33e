//! `--workload handoff` and `--workload poll`: every connection contends for one resource
//! (`00000003-0000-0000-0000-000000000000`), one request at a time, all connections on one
//! client thread so that one [`Ledger`] sees every unlock and every grant on one clock.
//!
//! - handoff: acquire (dlockd's `/lock/{store}/acquire`, `--wait-ms`); once granted, unlock at
//!   once, then acquire again. An acquire whose wait ends without the lock is asked again.
//! - poll: try-lock (HTTP or RESP `SET NX EX`); refused: sleep `--backoff`, try again;
//!   granted: unlock at once, then sleep `--backoff` (`--greedy`: try again at once).
//!
//! The unlock's send instant is taken just before it is written; a grant's, right after the
//! read that completed its answer. A connection stops asking once the measured period is over
//! (a poller's sleep is cut short there), and it always unlocks what it was granted, so the
//! waiters still queued at the end are granted in turn and leave: the server is left clean.
//!
//! Failures end the connection: a broken or closed stream, an answer that cannot be framed,
//! no answer within the acquire's wait plus [`ANSWER_TIMEOUT`], a refusal (non-200, RESP
//! error), or an answer that breaks the lock's contract, which is an error whether or not
//! `--check` was given: a lock or acquire answered with anything but a grant or a denial, an
//! unlock of a held lock that did not succeed, or a grant while another connection held the
//! lock.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpStream, UnixStream};

use super::{
    connect, duration_ns, namespace, seed, Addr, Dial, Plan, Setup, StartError, ANSWER_TIMEOUT,
    READ_BUFFER_BYTES,
};
use crate::handoff::{Backoff, Ledger};
use crate::tally::{ErrorKind, Tally};
use crate::wire::{self, Outcome, Protocol, Template, UNLOCK_SUCCESS};
use crate::workload::Kind;
use crate::{http, resp};

/// What the connections of the thread share.
struct Shared {
    setup: Arc<Setup>,
    plan: Plan,
    tally: RefCell<Tally>,
    ledger: RefCell<Ledger>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        duration_ns(self.plan.epoch.elapsed())
    }

    fn measured(&self, at_ns: u64) -> bool {
        at_ns >= self.plan.warmup_end_ns && self.plan.measure_end_ns.is_none_or(|e| at_ns < e)
    }

    fn over(&self, at_ns: u64) -> bool {
        self.plan.measure_end_ns.is_some_and(|e| at_ns >= e)
    }
}

/// The thread's work: connect every connection, report ready, wait for the start, run them
/// all, and hand back the tally with the ledger in it.
pub(super) async fn thread_work(
    setup: Arc<Setup>,
    t: u32,
    driver: &'static str,
    ready: Sender<Result<&'static str, StartError>>,
    go: Receiver<Option<Plan>>,
) -> Tally {
    match setup.addr.clone() {
        Addr::Tcp(addr) => streams_work::<TcpStream>(setup, addr, t, driver, ready, go).await,
        Addr::Unix(path) => streams_work::<UnixStream>(setup, path, t, driver, ready, go).await,
    }
}

async fn streams_work<S: Dial>(
    setup: Arc<Setup>,
    addr: S::Addr,
    t: u32,
    driver: &'static str,
    ready: Sender<Result<&'static str, StartError>>,
    go: Receiver<Option<Plan>>,
) -> Tally {
    let config = &setup.config;
    let mut streams = Vec::new();
    for id in (t..config.connections).step_by(config.threads as usize) {
        match connect::<S>(&addr).await {
            Ok(stream) => streams.push((id, stream)),
            Err(e) => {
                let _ = ready.send(Err(StartError::Connect(format!("{}: {e}", config.target))));
                return Tally::new();
            }
        }
    }
    let _ = ready.send(Ok(driver));
    drop(ready);
    let Ok(Some(plan)) = go.recv() else {
        return Tally::new();
    };
    let shared = Rc::new(Shared {
        setup: setup.clone(),
        plan,
        tally: RefCell::new(Tally::new()),
        ledger: RefCell::new(Ledger::new(config.connections)),
    });
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(id, stream)| {
            let shared = shared.clone();
            monoio::spawn(async move {
                let mut client = Client::new(&shared, id, stream);
                if let Err(kind) = client.run(&shared).await {
                    shared.tally.borrow_mut().error(kind, 1);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
    let mut tally = shared.tally.replace(Tally::new());
    tally.handoff = Some(shared.ledger.replace(Ledger::new(0)));
    tally
}

/// One connection.
struct Client<S> {
    id: u32,
    stream: S,
    /// The acquire (handoff) or try-lock (poll).
    take: Template,
    unlock: Template,
    resource: u128,
    out: Vec<u8>,
    buf: Vec<u8>,
    backoff: Backoff,
}

impl<S: Dial> Client<S> {
    fn new(shared: &Shared, id: u32, stream: S) -> Client<S> {
        let config = &shared.setup.config;
        let owner = format!("owner-{id}");
        let (prefix, store, host) = (&config.path_prefix, &config.store, config.host());
        let (take, unlock) = match (config.workload, config.protocol) {
            (Kind::Handoff, _) => (
                http::acquire_request(prefix, store, host, &owner, config.expiry_s, config.wait_ms),
                http::unlock_request(prefix, store, host, &owner),
            ),
            (_, Protocol::Resp) => (
                resp::set_request(&owner, config.expiry_s),
                resp::evalsha_request(&shared.setup.sha, &owner),
            ),
            _ => (
                http::lock_request(prefix, store, host, &owner, config.expiry_s),
                http::unlock_request(prefix, store, host, &owner),
            ),
        };
        Client {
            id,
            stream,
            out: Vec::with_capacity(take.len().max(unlock.len())),
            take,
            unlock,
            resource: namespace(config.workload),
            buf: Vec::with_capacity(READ_BUFFER_BYTES),
            backoff: Backoff::new(seed(config.seed, id), config.backoff_ms),
        }
    }

    async fn run(&mut self, shared: &Shared) -> Result<(), ErrorKind> {
        let config = &shared.setup.config;
        let handoff = config.workload == Kind::Handoff;
        let take_timeout = if handoff {
            Duration::from_millis(u64::from(config.wait_ms)) + ANSWER_TIMEOUT
        } else {
            ANSWER_TIMEOUT
        };
        // When this connection started asking for the lock it has not been granted yet.
        let mut wanted: Option<u64> = None;
        loop {
            let now = shared.now_ns();
            if shared.over(now) {
                return Ok(());
            }
            let wanted_ns = *wanted.get_or_insert(now);
            let (outcome, at) = self.exchange(shared, true, take_timeout).await?;
            match outcome {
                Outcome::Granted => {
                    wanted = None;
                    let exclusive = shared.ledger.borrow_mut().granted(
                        self.id,
                        at,
                        wanted_ns,
                        shared.measured(at),
                    );
                    if !exclusive {
                        shared.tally.borrow_mut().error(ErrorKind::Check, 1);
                    }
                    let (outcome, _) = self.exchange(shared, false, ANSWER_TIMEOUT).await?;
                    if outcome != Outcome::Unlocked(UNLOCK_SUCCESS) {
                        return Err(ErrorKind::Check);
                    }
                    if !handoff && !config.greedy {
                        self.sleep(shared).await;
                    }
                }
                Outcome::Denied => {
                    shared.ledger.borrow_mut().denied(shared.measured(at));
                    if !handoff {
                        self.sleep(shared).await;
                    }
                }
                Outcome::Refused => return Err(ErrorKind::Status),
                Outcome::Unlocked(_) | Outcome::Unrecognized => return Err(ErrorKind::Check),
            }
        }
    }

    /// Sleeps one backoff, or until the end of the measured period if that comes first.
    async fn sleep(&mut self, shared: &Shared) {
        let now = shared.now_ns();
        let mut wake = now.saturating_add(self.backoff.next_ns());
        if let Some(end) = shared.plan.measure_end_ns {
            wake = wake.min(end);
        }
        let at = shared.plan.epoch + Duration::from_nanos(wake);
        monoio::time::sleep_until(monoio::time::Instant::from_std(at)).await;
    }

    /// Sends the take (`take`) or the unlock and reads its answer: (what it said, when it was
    /// read). An unlock's send instant goes to the ledger as the release. A measured request
    /// enters the latency histogram.
    async fn exchange(
        &mut self,
        shared: &Shared,
        take: bool,
        timeout: Duration,
    ) -> Result<(Outcome, u64), ErrorKind> {
        self.out.clear();
        let template = if take { &self.take } else { &self.unlock };
        template.encode(self.resource, &mut self.out);
        let sent = shared.now_ns();
        if !take {
            shared.ledger.borrow_mut().released(sent);
        }
        let (written, out) = self.stream.write_all(std::mem::take(&mut self.out)).await;
        self.out = out;
        if written.is_err() {
            return Err(ErrorKind::Io);
        }
        let protocol = shared.setup.config.protocol;
        loop {
            match wire::parse(protocol, &self.buf) {
                Ok(Some(frame)) => {
                    let at = shared.now_ns();
                    self.buf.drain(..frame.len.min(self.buf.len()));
                    if !self.buf.is_empty() {
                        // An answer nobody asked for.
                        return Err(ErrorKind::Protocol);
                    }
                    if frame.close {
                        return Err(ErrorKind::Io);
                    }
                    let granted = frame.outcome == Outcome::Granted;
                    if shared.measured(sent) {
                        shared
                            .tally
                            .borrow_mut()
                            .record(at.saturating_sub(sent), at, granted);
                    }
                    return Ok((frame.outcome, at));
                }
                Ok(None) => {}
                Err(_) => return Err(ErrorKind::Protocol),
            }
            if self.buf.len() >= READ_BUFFER_BYTES {
                return Err(ErrorKind::Protocol);
            }
            let start = self.buf.len();
            let buf = std::mem::take(&mut self.buf);
            let read = monoio::time::timeout(timeout, self.stream.read(buf.slice_mut(start..)));
            let (result, slice) = match read.await {
                Ok(read) => read,
                Err(_) => return Err(ErrorKind::Timeout),
            };
            self.buf = slice.into_inner();
            if !matches!(result, Ok(n) if n > 0) {
                return Err(ErrorKind::Io);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a small in-process lock server on std threads: one resource, try-lock, unlock
    //! and acquire with a FIFO queue of waiters, as dlockd answers them.

    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    use super::super::{run, RunResult, Setup};
    use crate::cli::{parse, Command};
    use crate::tally::ErrorKind;
    use crate::zipf::Zipf;

    #[derive(Default)]
    struct Lock {
        holder: Option<String>,
        /// Waiting acquires: (owner, their connection's writer).
        queue: VecDeque<(String, TcpStream)>,
    }

    fn answer(stream: &mut TcpStream, body: &str) {
        // One write: a second, small one would wait for the first's ACK (Nagle).
        let bytes = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(bytes.as_bytes());
    }

    fn field<'a>(body: &'a str, name: &str) -> &'a str {
        let key = format!("\"{name}\":\"");
        let from = body.find(&key).map(|i| i + key.len()).unwrap_or(0);
        let to = body[from..].find('"').map_or(from, |i| from + i);
        &body[from..to]
    }

    fn serve(stream: TcpStream, lock: Arc<Mutex<Lock>>) {
        let _ = stream.set_nodelay(true);
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                if header == "\r\n" {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let owner = field(&body, "lockOwner").to_string();
            let mut l = lock.lock().unwrap();
            if path.ends_with("/acquire") {
                if l.holder.is_none() && l.queue.is_empty() {
                    l.holder = Some(owner);
                    answer(&mut writer, "{\"success\":true}");
                } else {
                    l.queue.push_back((owner, writer.try_clone().unwrap()));
                }
            } else if path.contains("/unlock/") {
                if l.holder.as_deref() == Some(owner.as_str()) {
                    l.holder = None;
                    answer(&mut writer, "{\"status\":0}");
                    if let Some((next, mut w)) = l.queue.pop_front() {
                        l.holder = Some(next);
                        answer(&mut w, "{\"success\":true}");
                    }
                } else {
                    answer(&mut writer, "{\"status\":2}");
                }
            } else if l.holder.is_none() && l.queue.is_empty() {
                l.holder = Some(owner);
                answer(&mut writer, "{\"success\":true}");
            } else {
                answer(&mut writer, "{\"success\":false}");
            }
        }
    }

    fn server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lock = Arc::new(Mutex::new(Lock::default()));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let lock = lock.clone();
                std::thread::spawn(move || serve(stream, lock));
            }
        });
        addr
    }

    fn run_against(addr: std::net::SocketAddr, args: &[&str]) -> RunResult {
        let mut all = vec!["--target".to_string(), addr.to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let Ok(Command::Run(config)) = parse(all) else {
            panic!("bad test arguments")
        };
        let zipf = Arc::new(Zipf::new(config.hot, config.zipf));
        run(Arc::new(Setup {
            config: *config,
            addr: super::super::Addr::Tcp(addr),
            sha: String::new(),
            zipf,
        }))
        .unwrap()
    }

    fn errors(r: &RunResult) -> Vec<(&'static str, u64)> {
        ErrorKind::ALL
            .iter()
            .map(|&k| (k.name(), r.tally.errors(k)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    // Handoff: every connection is granted in turn (the queue is FIFO), every grant but the
    // first is paired with the unlock before it, nobody is granted twice in a row, and the
    // server is left with no holder and no waiter.
    #[test]
    fn handoff_passes_the_lock_round() {
        let addr = server();
        let r = run_against(
            addr,
            &[
                "--workload",
                "handoff",
                "--connections",
                "4",
                "--duration",
                "300ms",
                "--warmup",
                "50ms",
            ],
        );
        assert_eq!(errors(&r), []);
        let s = r.tally.handoff.as_ref().unwrap().summary();
        assert!(s.grants > 40, "{s:?}");
        assert!(s.grants_per_connection.iter().all(|&n| n > 0), "{s:?}");
        assert!(s.fairness.unwrap() <= 1.2, "{s:?}");
        assert_eq!(s.unpaired, 0, "{s:?}");
        assert_eq!(s.handoffs, s.grants);
        assert!(s.self_grants * 10 < s.grants, "{s:?}");
        assert!(s.handoff_p50_us > 0.0 && s.handoff_p50_us <= s.handoff_max_us);
        assert_eq!(s.denied, 0);
        assert!(
            r.tally.requests >= 2 * s.grants - 8,
            "{} {s:?}",
            r.tally.requests
        );
    }

    // Poll: refusals sleep the backoff; a grant is unlocked at once; with a long backoff the
    // handoff latency is of the order of the backoff, and greedy pollers mostly re-take the
    // lock they just released.
    #[test]
    fn poll_backs_off_and_greedy_retakes() {
        let addr = server();
        let args = |greedy: bool| {
            let mut a = vec![
                "--workload",
                "poll",
                "--connections",
                "3",
                "--duration",
                "400ms",
                "--warmup",
                "0s",
                "--backoff",
                "20-40",
            ];
            if greedy {
                a.push("--greedy");
            }
            a
        };
        let r = run_against(addr, &args(false));
        assert_eq!(errors(&r), []);
        let s = r.tally.handoff.as_ref().unwrap().summary();
        assert!(s.grants >= 10, "{s:?}");
        assert!(s.handoff_p50_us >= 1_000.0, "{s:?}");
        assert!(s.wait_max_us <= 400_000.0, "{s:?}");
        let r = run_against(addr, &args(true));
        assert_eq!(errors(&r), []);
        let g = r.tally.handoff.as_ref().unwrap().summary();
        assert!(g.grants > s.grants, "{g:?}");
        assert!(g.self_grants * 2 > g.grants, "{g:?}");
    }
}
