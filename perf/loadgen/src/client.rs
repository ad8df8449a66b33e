//! The I/O side: client threads, their monoio runtimes, and the connections. `--protocol
//! grpc` runs its threads on tokio instead, with tonic's HTTP/2 client: see [`grpc`]; it shares
//! the start-up, the phases, the workloads and the pacing ([`Conn::fill`]) with this module.
//!
//! Streams: TCP or a Unix domain socket (`--target unix:PATH`). Everything from a thread's
//! connections down to the reader and writer is generic over the stream type ([`Dial`]), and
//! the type is picked once per thread, so the request path is the same code over either.
//!
//! Start-up: every thread connects all its connections, then reports to the main thread;
//! only when every connection of every thread is up does the main thread fix the run's start
//! (`epoch`) and let them go, so a server that cannot be reached fails the run before anything
//! is measured, and no thread's connect time leaks into another's measurement.
//!
//! A connection runs two futures joined in one task: the writer encodes requests into one
//! buffer and writes them in one call (closed loop: whenever fewer than `depth` are in flight;
//! open loop: when their slot in the schedule comes), and the reader frames answers in order
//! and matches each with the oldest request in flight. They share the in-flight queue
//! ([`Pipe`]) and wake each other through it. Invariants: at most `depth` requests are in
//! flight; answers are matched in send order; nothing on the request path allocates once
//! buffers have grown; a request is either answered or counted as an error, except that the
//! requests a server never read before closing with `Connection: close` are sent again on a
//! new connection.
//!
//! Timer granularity: monoio's timer wheel has a resolution of one millisecond, so open-loop
//! sends go out at millisecond ticks, unless `--pacer spin` sends each at its own time (see
//! [`crate::pacer`]). A request that falls due while the writer sleeps is timed
//! from when the writer actually woke, so the client's own timer lateness is not charged to the
//! server; a request held back by the server (all `depth` slots waiting for answers) is timed
//! from its intended send time, so coordinated omission is not hidden.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Split,
    Splitable,
};
use monoio::net::{TcpStream, UnixStream};

use crate::cli::{Config, Pacer, Target};
use crate::pacer::Spinner;
use crate::schedule::Schedule;
use crate::tally::{ErrorKind, Tally};
use crate::wire::{self, Protocol, Template};
use crate::workload::{Kind, Op, Slice, Workload};
use crate::zipf::{Rng, Zipf};
use crate::{cpu, http, resp};

mod etcd;
mod grpc;
mod handoff;

/// Per connection. Answers are framed as they arrive, so this only has to hold one answer
/// plus what follows it in the same read; lock answers are about 100 bytes.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;
/// A request in flight that long without any answer on its connection is lost.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// io_uring submission queue entries per thread (monoio's default).
const URING_ENTRIES: u32 = 1024;
const DRIVER_URING: &str = "io_uring";
const DRIVER_LEGACY: &str = "legacy";
/// Mixed with the connection id: runs are repeatable, connections differ.
const SEED: u64 = 0x6c6f_6164_6765_6e21;

/// Connection `id`'s random stream under `--seed` (0, the default, gives the streams the
/// client always had).
fn seed(run_seed: u64, id: u32) -> u64 {
    SEED ^ u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ run_seed.wrapping_mul(0xd6e8_feb8_6659_fd93)
}

/// What every thread reads: the validated command line and what start-up learned.
pub struct Setup {
    pub config: Config,
    pub addr: Addr,
    /// The RESP unlock script's digest (empty over HTTP).
    pub sha: String,
    pub zipf: Arc<Zipf>,
}

/// The run's phases, in nanoseconds from `epoch`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub epoch: Instant,
    pub warmup_end_ns: u64,
    /// `None` with `--requests`: the run ends when every connection's quota is done.
    pub measure_end_ns: Option<u64>,
}

/// The merged result of all threads.
pub struct RunResult {
    pub tally: Tally,
    /// The measured period.
    pub seconds: f64,
    /// The process's CPU time during the measured period.
    pub cpu: Duration,
    /// The I/O driver the client threads run on: `io_uring` or `legacy` (epoll).
    pub driver: &'static str,
}

#[derive(Debug)]
pub enum StartError {
    Resolve(String),
    Connect(String),
    Script(String),
    Pin(usize, String),
    Runtime(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Resolve(why) => write!(f, "cannot resolve the target: {why}"),
            StartError::Connect(why) => write!(f, "cannot connect: {why}"),
            StartError::Script(why) => write!(f, "cannot load the unlock script: {why}"),
            StartError::Pin(cpu, why) => {
                write!(f, "cannot pin a client thread to core {cpu}: {why}")
            }
            StartError::Runtime(why) => write!(f, "cannot start a client thread: {why}"),
        }
    }
}

/// Where the connections go, as start-up resolved `--target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(addr) => write!(f, "{addr}"),
            Addr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Resolves `HOST:PORT` to the first address it names; a Unix socket's path is taken as it
/// is (connecting says whether a server listens there).
pub fn resolve(target: &Target) -> Result<Addr, StartError> {
    use std::net::ToSocketAddrs;
    match target {
        Target::Tcp(host_port) => host_port
            .to_socket_addrs()
            .map_err(|e| StartError::Resolve(format!("{host_port}: {e}")))?
            .next()
            .map(Addr::Tcp)
            .ok_or_else(|| StartError::Resolve(format!("{host_port}: no address"))),
        Target::Unix(path) => Ok(Addr::Unix(path.clone())),
    }
}

/// A byte stream the monoio client speaks HTTP/1.1 or RESP over: TCP or a Unix domain
/// socket. The connection code is generic over it, so that each kind is compiled on its own
/// and the kind is chosen once per thread, never per request.
trait Dial: AsyncReadRent + AsyncWriteRent + Split + Sized + 'static {
    type Addr: Clone + 'static;

    /// Connects, with the stream set up for small latency-bound requests.
    fn dial(addr: &Self::Addr) -> impl Future<Output = std::io::Result<Self>>;
}

impl Dial for TcpStream {
    type Addr = SocketAddr;

    async fn dial(addr: &SocketAddr) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect_addr(*addr).await?;
        // Requests are small and latency-bound: never wait to coalesce them.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

impl Dial for UnixStream {
    type Addr = PathBuf;

    async fn dial(path: &PathBuf) -> std::io::Result<UnixStream> {
        UnixStream::connect(path).await
    }
}

/// `SCRIPT LOAD`s the unlock script once, as `lock.redis` does, and returns its digest.
pub fn load_script(addr: &Addr) -> Result<String, StartError> {
    let connect = |e: std::io::Error| StartError::Connect(format!("{addr}: {e}"));
    match addr {
        Addr::Tcp(tcp) => {
            let stream =
                std::net::TcpStream::connect_timeout(tcp, CONNECT_TIMEOUT).map_err(&connect)?;
            stream
                .set_read_timeout(Some(ANSWER_TIMEOUT))
                .map_err(&connect)?;
            script_load(stream, connect)
        }
        Addr::Unix(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path).map_err(&connect)?;
            stream
                .set_read_timeout(Some(ANSWER_TIMEOUT))
                .map_err(&connect)?;
            script_load(stream, connect)
        }
    }
}

/// `SCRIPT LOAD` on a connected stream; `connect` makes an I/O error a start error.
fn script_load(
    mut stream: impl Read + Write,
    connect: impl Fn(std::io::Error) -> StartError,
) -> Result<String, StartError> {
    stream
        .write_all(&resp::script_load_request())
        .map_err(&connect)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).map_err(&connect)?;
        if n == 0 {
            return Err(StartError::Script(
                "the server closed the connection".into(),
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        match resp::parse(&buf) {
            Ok(Some((resp::Reply::Bulk(Some(sha)), _)))
                if sha.len() == 40 && sha.iter().all(u8::is_ascii_hexdigit) =>
            {
                return Ok(String::from_utf8_lossy(sha).into_owned());
            }
            Ok(Some((resp::Reply::Error(e), _))) => {
                return Err(StartError::Script(String::from_utf8_lossy(e).into_owned()));
            }
            Ok(Some(_)) => return Err(StartError::Script("unexpected reply".into())),
            Ok(None) if buf.len() < READ_BUFFER_BYTES => continue,
            Ok(None) => return Err(StartError::Script("reply too long".into())),
            Err(e) => return Err(StartError::Script(e.to_string())),
        }
    }
}

/// Runs the whole load: starts the threads, waits until every connection is up, runs the
/// phases, and merges what the threads counted.
pub fn run(setup: Arc<Setup>) -> Result<RunResult, StartError> {
    let config = &setup.config;
    let (ready_tx, ready_rx) = mpsc::channel::<Result<&'static str, StartError>>();
    let mut gos = Vec::new();
    let mut threads = Vec::new();
    for t in 0..config.threads {
        let (go_tx, go_rx) = mpsc::channel::<Option<Plan>>();
        let (setup, ready) = (setup.clone(), ready_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || match setup.config.protocol {
                Protocol::Grpc | Protocol::Etcd => grpc::client_thread(setup, t, ready, go_rx),
                Protocol::Http | Protocol::Resp => client_thread(setup, t, ready, go_rx),
            });
        match spawned {
            Ok(handle) => {
                threads.push(handle);
                gos.push(go_tx);
            }
            Err(e) => {
                abort(&gos, threads);
                return Err(StartError::Runtime(e.to_string()));
            }
        }
    }
    drop(ready_tx);

    let mut failure = None;
    let mut driver = DRIVER_URING;
    for _ in 0..config.threads {
        match ready_rx.recv() {
            Ok(Ok(d)) => {
                // One thread on the fallback makes the run a fallback run.
                if d != DRIVER_URING {
                    driver = d;
                }
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert(StartError::Runtime(
                    "a client thread ended during start-up".into(),
                ));
                break;
            }
        }
    }
    if let Some(e) = failure {
        abort(&gos, threads);
        return Err(e);
    }

    let epoch = Instant::now();
    let warmup_end_ns = duration_ns(config.warmup);
    let measure_end_ns = match config.requests {
        Some(_) => None,
        None => Some(warmup_end_ns.saturating_add(duration_ns(config.duration))),
    };
    let plan = Plan {
        epoch,
        warmup_end_ns,
        measure_end_ns,
    };
    for go in &gos {
        let _ = go.send(Some(plan));
    }

    sleep_until(epoch + config.warmup);
    let cpu_start = cpu::process_time().unwrap_or_default();
    let mut cpu_end = None;
    if let Some(end_ns) = measure_end_ns {
        sleep_until(epoch + Duration::from_nanos(end_ns));
        cpu_end = cpu::process_time();
    }
    let mut tally = Tally::new();
    for handle in threads {
        match handle.join() {
            Ok(t) => tally.merge(&t),
            Err(_) => eprintln!("dlockd-loadgen: a client thread failed; its counts are lost"),
        }
    }
    let cpu_end = cpu_end.or_else(cpu::process_time).unwrap_or_default();
    let seconds = match measure_end_ns {
        Some(_) => config.duration.as_secs_f64(),
        None => tally.last_answer_ns.saturating_sub(warmup_end_ns) as f64 / 1e9,
    };
    Ok(RunResult {
        tally,
        seconds,
        cpu: cpu_end.saturating_sub(cpu_start),
        driver,
    })
}

fn abort(gos: &[Sender<Option<Plan>>], threads: Vec<std::thread::JoinHandle<Tally>>) {
    for go in gos {
        let _ = go.send(None);
    }
    for handle in threads {
        let _ = handle.join();
    }
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One client thread: pin, build the runtime (io_uring, else the legacy driver), run.
fn client_thread(
    setup: Arc<Setup>,
    t: u32,
    ready: Sender<Result<&'static str, StartError>>,
    go: Receiver<Option<Plan>>,
) -> Tally {
    if let Err(e) = pin(&setup.config.cpus, t) {
        let _ = ready.send(Err(e));
        return Tally::new();
    }
    match uring_runtime() {
        Ok(mut rt) => rt.block_on(any_work(setup, t, DRIVER_URING, ready, go)),
        Err(uring) => {
            match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
            {
                Ok(mut rt) => {
                    if t == 0 {
                        eprintln!(
                            "dlockd-loadgen: io_uring unavailable ({uring}); using the legacy driver"
                        );
                    }
                    rt.block_on(any_work(setup, t, DRIVER_LEGACY, ready, go))
                }
                Err(e) => {
                    let _ = ready.send(Err(StartError::Runtime(format!(
                        "io_uring: {uring}; legacy: {e}"
                    ))));
                    Tally::new()
                }
            }
        }
    }
}

/// A thread's work: the pipelined connections, or one resource contended for (handoff,
/// poll).
async fn any_work(
    setup: Arc<Setup>,
    t: u32,
    driver: &'static str,
    ready: Sender<Result<&'static str, StartError>>,
    go: Receiver<Option<Plan>>,
) -> Tally {
    if setup.config.workload.is_one_resource() {
        handoff::thread_work(setup, t, driver, ready, go).await
    } else {
        thread_work(setup, t, driver, ready, go).await
    }
}

/// Pins the calling thread, client thread `t`, to its core of `--cpus` (if any).
fn pin(cpus: &[usize], t: u32) -> Result<(), StartError> {
    match cpus.get(t as usize % cpus.len().max(1)) {
        Some(&cpu) => {
            monoio::utils::bind_to_cpu_set([cpu]).map_err(|e| StartError::Pin(cpu, e.to_string()))
        }
        None => Ok(()),
    }
}

/// An io_uring runtime with `IORING_SETUP_COOP_TASKRUN` (completions do not interrupt the
/// thread; the server measured 1.55–1.76× the req/s with it), or without it on kernels older
/// than 5.19 that refuse the flag.
fn uring_runtime(
) -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun();
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(URING_ENTRIES)
        .uring_builder(coop)
        .enable_timer()
        .build()
        .or_else(|_| {
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(URING_ENTRIES)
                .enable_timer()
                .build()
        })
}

/// What one thread shares among its connections.
struct Thread {
    setup: Arc<Setup>,
    plan: Plan,
    tally: RefCell<Tally>,
    /// With `--pacer spin`: wakes the writers at their slots.
    spinner: Option<Spinner>,
}

impl Thread {
    fn now_ns(&self) -> u64 {
        duration_ns(self.plan.epoch.elapsed())
    }

    fn instant(&self, ns: u64) -> monoio::time::Instant {
        monoio::time::Instant::from_std(self.plan.epoch + Duration::from_nanos(ns))
    }
}

/// The pipelined connections of one thread, over TCP or a Unix socket: the one place the
/// kind of stream is matched.
async fn thread_work(
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
    // Nothing else runs on this thread yet, so blocking here holds up no connection.
    let Ok(Some(plan)) = go.recv() else {
        return Tally::new();
    };
    let spin = config.rate > 0 && config.pacer == Pacer::Spin;
    let thread = Rc::new(Thread {
        setup: setup.clone(),
        spinner: spin.then(|| Spinner::new(plan.epoch)),
        plan,
        tally: RefCell::new(Tally::new()),
    });
    if thread.spinner.is_some() {
        // Both never return: they end with the runtime, when every connection is done.
        let t = thread.clone();
        monoio::spawn(async move {
            if let Some(spinner) = &t.spinner {
                spinner.run().await;
            }
        });
        let t = thread.clone();
        monoio::spawn(async move {
            if let Some(spinner) = &t.spinner {
                spinner.bounce().await;
            }
        });
    }
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(id, stream)| monoio::spawn(connection(thread.clone(), id, stream, addr.clone())))
        .collect();
    for task in tasks {
        task.await;
    }
    thread.tally.take()
}

async fn connect<S: Dial>(addr: &S::Addr) -> std::io::Result<S> {
    match monoio::time::timeout(CONNECT_TIMEOUT, S::dial(addr)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

/// One connection for the whole run. When the stream breaks after answering something (nginx
/// closes after `keepalive_requests`; a reset), it reconnects and goes on where it was; a
/// stream that broke before any answer, or sent bytes that are not answers, ends it.
async fn connection<S: Dial>(thread: Rc<Thread>, id: u32, mut stream: S, addr: S::Addr) {
    let mut conn = Conn::new(&thread, id);
    loop {
        let Some((cause, progressed)) = drive(&thread, &mut conn, stream).await else {
            return;
        };
        if cause != Closed::Protocol && progressed {
            match connect::<S>(&addr).await {
                Ok(s) => {
                    stream = s;
                    continue;
                }
                Err(_) => thread.tally.borrow_mut().error(ErrorKind::Connect, 1),
            }
        }
        let lost = conn.replay.len() as u64;
        thread.tally.borrow_mut().error(ErrorKind::Io, lost);
        return;
    }
}

/// How a connection's request stream is paced.
#[derive(Debug)]
enum Pace {
    /// As fast as answers come; `quota` is what is left of `--requests` for this connection.
    Closed { quota: Option<u64> },
    /// On a schedule; `next` is the next slot to send, `ended` once past the measured period.
    Open {
        schedule: Schedule,
        next: u64,
        ended: bool,
    },
}

/// What the writer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Requests were encoded: write them.
    Write,
    /// Nothing is due before this slot (ns).
    WaitSlot(u64),
    /// Only finishing requests are left and they depend on answers still in flight.
    WaitAnswer,
    /// Nothing more to send on this connection.
    Done,
}

/// One request in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    op: Op,
    /// Where its latency is measured from: the write (closed loop) or its slot (open loop).
    start_ns: u64,
    measured: bool,
}

/// A connection's state that outlives reconnections.
struct Conn {
    workload: Workload,
    lock: Template,
    unlock: Template,
    pace: Pace,
    /// The high bits of every resource id this connection sends (see [`namespace`]).
    namespace: u128,
    /// Requests the server never saw because it closed the connection (`Connection: close`)
    /// before them: sent again first on the next connection, timed from their first send.
    replay: VecDeque<InFlight>,
}

impl Conn {
    fn new(thread: &Thread, id: u32) -> Conn {
        let config = &thread.setup.config;
        let owner = format!("owner-{id}");
        let (lock, unlock) = match config.protocol {
            Protocol::Http => (
                http::lock_request(
                    &config.path_prefix,
                    &config.store,
                    config.host(),
                    &owner,
                    config.expiry_s,
                ),
                http::unlock_request(&config.path_prefix, &config.store, config.host(), &owner),
            ),
            Protocol::Resp => (
                resp::set_request(&owner, config.expiry_s),
                resp::evalsha_request(&thread.setup.sha, &owner),
            ),
            // tonic encodes the messages (see `grpc`): the templates carry only the id.
            Protocol::Grpc | Protocol::Etcd => (Template::new(b"", b""), Template::new(b"", b"")),
        };
        let mut rng = Rng::new(seed(config.seed, id));
        let slice = || Slice::of(id, config.connections, config.resources);
        let workload = match config.workload {
            Kind::Uncontended => Workload::uncontended(slice(), config.check),
            Kind::Contended => Workload::contended(
                thread.setup.zipf.clone(),
                rng.next_u64(),
                config.depth as usize,
                config.check,
            ),
            Kind::Churn => Workload::churn(slice(), config.expiry_s, config.check),
            // Never run on these connections (see `any_work`); a plain state for the match.
            Kind::Handoff | Kind::Poll => Workload::uncontended(slice(), config.check),
        };
        let pace = if config.rate > 0 {
            Pace::Open {
                schedule: Schedule::new(config.rate, config.connections, rng.next_f64()),
                next: 0,
                ended: false,
            }
        } else {
            Pace::Closed {
                quota: config.requests.map(|n| quota(n, id, config.connections)),
            }
        };
        Conn {
            workload,
            lock,
            unlock,
            pace,
            namespace: namespace(config.workload),
            replay: VecDeque::new(),
        }
    }

    fn encode(&self, op: Op, out: &mut Vec<u8>) {
        match op {
            Op::Lock(r) => self.lock.encode(self.namespace | u128::from(r), out),
            Op::Unlock(r) => self.unlock.encode(self.namespace | u128::from(r), out),
        }
    }

    /// The resource id `op` names, in this connection's namespace.
    fn resource_id(&self, op: Op) -> [u8; wire::RESOURCE_ID_BYTES] {
        let (Op::Lock(r) | Op::Unlock(r)) = op;
        wire::resource_id(self.namespace | u128::from(r))
    }

    fn request_len(&self) -> usize {
        self.lock.len().max(self.unlock.len())
    }

    /// Encodes up to `room` requests into `out` and queues them in `inflight`. `woke_ns` is
    /// when the writer last woke from sleeping until a slot: a slot that fell due while it
    /// slept is timed from then, not from the slot (the client's timer lateness is not the
    /// server's). A request is measured when
    /// it is sent after the warmup; at the end of an open-loop run, `unsent` receives the
    /// slots of the measured period that were never sent.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        plan: &Plan,
        now_ns: u64,
        woke_ns: u64,
        room: usize,
        out: &mut Vec<u8>,
        inflight: &mut VecDeque<InFlight>,
        unsent: &mut Option<Unsent>,
    ) -> Fill {
        let measured = now_ns >= plan.warmup_end_ns;
        let mut encoded = 0;
        while encoded < room {
            if let Some(again) = self.replay.pop_front() {
                self.encode(again.op, out);
                inflight.push_back(again);
                encoded += 1;
                continue;
            }
            let next = match &mut self.pace {
                Pace::Closed { quota } => {
                    let past_end = plan.measure_end_ns.is_some_and(|end| now_ns >= end);
                    if past_end {
                        None
                    } else if !measured {
                        Some((self.workload.next(), now_ns, false))
                    } else {
                        match quota {
                            Some(0) => None,
                            Some(left) => {
                                *left -= 1;
                                Some((self.workload.next(), now_ns, true))
                            }
                            None => Some((self.workload.next(), now_ns, true)),
                        }
                    }
                }
                Pace::Open {
                    schedule,
                    next,
                    ended,
                } => {
                    let end = plan.measure_end_ns.unwrap_or(u64::MAX);
                    let slot = schedule.slot_ns(*next);
                    if *ended {
                        None
                    } else if slot >= end || now_ns >= end {
                        *ended = true;
                        let to = schedule.slots_before(end);
                        if to > *next {
                            *unsent = Some(Unsent {
                                schedule: *schedule,
                                from: *next,
                                to,
                                end_ns: end,
                            });
                        }
                        None
                    } else if slot > now_ns {
                        return if encoded > 0 {
                            Fill::Write
                        } else {
                            Fill::WaitSlot(slot)
                        };
                    } else {
                        *next += 1;
                        Some((self.workload.next(), slot.max(woke_ns), measured))
                    }
                }
            };
            let (op, start_ns, measured) = match next {
                Some(request) => request,
                None => match self.workload.finishing() {
                    Some(op) => (op, now_ns, false),
                    None if encoded > 0 => return Fill::Write,
                    None if inflight.is_empty() => return Fill::Done,
                    None => return Fill::WaitAnswer,
                },
            };
            self.encode(op, out);
            inflight.push_back(InFlight {
                op,
                start_ns,
                measured,
            });
            encoded += 1;
        }
        Fill::Write
    }
}

/// Each workload names its resources in its own namespace, the id's first group
/// (`00000000-…` uncontended, `00000001-…` contended, `00000002-…` churn, `00000003-…` the
/// one resource of handoff and poll), so the leases one
/// run leaves behind (churn's live on for `--expiry`) never meet another workload's requests.
fn namespace(kind: Kind) -> u128 {
    let tag: u32 = match kind {
        Kind::Uncontended => 0,
        Kind::Contended => 1,
        Kind::Churn => 2,
        Kind::Handoff | Kind::Poll => 3,
    };
    u128::from(tag) << 96
}

/// Slots `from..to` of an open-loop schedule that were due before the end of the measured
/// period (`end_ns`) but never sent, because the server kept the connection behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unsent {
    schedule: Schedule,
    from: u64,
    to: u64,
    end_ns: u64,
}

/// Unsent slots are recorded in at most this many histogram entries per connection, so an
/// overloaded run ends quickly however far behind it is.
const MAX_UNSENT_ENTRIES: u64 = 100_000;

impl Unsent {
    /// Records each slot with the time it had waited by the end of the run: a lower bound of
    /// its latency, so an overloaded server's tail is not hidden by the requests it kept us
    /// from sending. Slots are grouped when there are many, each group at its youngest slot.
    fn record(&self, tally: &mut Tally) {
        let count = self.to.saturating_sub(self.from);
        let step = count.div_ceil(MAX_UNSENT_ENTRIES).max(1);
        let mut k = self.from;
        while k < self.to {
            let n = step.min(self.to - k);
            let youngest = self.schedule.slot_ns(k + n - 1);
            tally.record_unsent(self.end_ns.saturating_sub(youngest), n);
            k += n;
        }
    }
}

/// This connection's share of `--requests`: as even as possible, summing to `n`, and split
/// the way `Slice::of` splits the resources, so that `--requests N --resources N` gives each
/// connection exactly one request per resource of its slice.
fn quota(n: u64, id: u32, connections: u32) -> u64 {
    let bound = |c: u32| (u128::from(c) * u128::from(n) / u128::from(connections)) as u64;
    bound(id + 1) - bound(id)
}

/// Why a connection's stream ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// Reset, end of stream, or a failed write.
    Io,
    /// No answer within `ANSWER_TIMEOUT`.
    Timeout,
    /// Bytes that are not an answer: the stream cannot be trusted any more.
    Protocol,
    /// The server said `Connection: close`: what is still in flight is sent again.
    ByServer,
}

impl Closed {
    /// The error each request still in flight counts as.
    fn error(self) -> ErrorKind {
        match self {
            Closed::Io | Closed::ByServer => ErrorKind::Io,
            Closed::Timeout => ErrorKind::Timeout,
            Closed::Protocol => ErrorKind::Protocol,
        }
    }
}

/// What the reader and writer of one stream share.
struct Pipe {
    inflight: VecDeque<InFlight>,
    depth: usize,
    /// Answers framed on this stream: progress, and what a waiting writer watches.
    answers: u64,
    writer_done: bool,
    closed: Option<Closed>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Reader,
    Writer,
}

impl Pipe {
    fn new(depth: usize) -> Pipe {
        Pipe {
            inflight: VecDeque::with_capacity(depth),
            depth,
            answers: 0,
            writer_done: false,
            closed: None,
            reader: None,
            writer: None,
        }
    }

    fn wake(&mut self, side: Side) {
        let waker = match side {
            Side::Reader => self.reader.take(),
            Side::Writer => self.writer.take(),
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The first cause wins; both sides are told.
    fn close(&mut self, cause: Closed) {
        self.closed.get_or_insert(cause);
        self.wake(Side::Reader);
        self.wake(Side::Writer);
    }
}

/// Resolves once `ready` holds for the pipe; registers `side`'s waker otherwise.
struct Until<'a, F> {
    pipe: &'a RefCell<Pipe>,
    side: Side,
    ready: F,
}

impl<F: Fn(&Pipe) -> bool> Future for Until<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &*self;
        let mut pipe = this.pipe.borrow_mut();
        if (this.ready)(&pipe) {
            return Poll::Ready(());
        }
        let slot = match this.side {
            Side::Reader => &mut pipe.reader,
            Side::Writer => &mut pipe.writer,
        };
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

fn until<F: Fn(&Pipe) -> bool>(pipe: &RefCell<Pipe>, side: Side, ready: F) -> Until<'_, F> {
    Until { pipe, side, ready }
}

/// Runs one stream until the connection is done (`None`) or breaks (`Some((cause, whether
/// any answer came))`), counting the requests it lost.
async fn drive<S: Dial>(thread: &Thread, conn: &mut Conn, stream: S) -> Option<(Closed, bool)> {
    let (rd, wr) = stream.into_split();
    let depth = thread.setup.config.depth as usize;
    let request_len = conn.request_len();
    let pipe = RefCell::new(Pipe::new(depth));
    let conn = RefCell::new(conn);
    monoio::join!(
        writer(thread, &conn, &pipe, wr, depth * request_len),
        reader(thread, &conn, &pipe, rd)
    );
    let conn = conn.into_inner();
    let mut pipe = pipe.into_inner();
    let cause = pipe.closed?;
    if cause == Closed::ByServer {
        // The server answered up to its closing answer and read nothing after it.
        conn.replay.extend(pipe.inflight.drain(..));
    }
    let lost = pipe.inflight.len() as u64;
    // An unsolicited answer loses no request but is still an error.
    let count = if lost == 0 && cause == Closed::Protocol {
        1
    } else {
        lost
    };
    thread.tally.borrow_mut().error(cause.error(), count);
    Some((cause, pipe.answers > 0))
}

async fn writer<S: Dial>(
    thread: &Thread,
    conn: &RefCell<&mut Conn>,
    pipe: &RefCell<Pipe>,
    mut wr: OwnedWriteHalf<S>,
    capacity: usize,
) {
    let mut buf = Vec::with_capacity(capacity);
    let mut woke_ns = 0;
    loop {
        until(pipe, Side::Writer, |p| {
            p.closed.is_some() || p.inflight.len() < p.depth
        })
        .await;
        let fill = {
            let mut p = pipe.borrow_mut();
            if p.closed.is_some() {
                return;
            }
            let room = p.depth.saturating_sub(p.inflight.len());
            buf.clear();
            let mut unsent = None;
            let fill = conn.borrow_mut().fill(
                &thread.plan,
                thread.now_ns(),
                woke_ns,
                room,
                &mut buf,
                &mut p.inflight,
                &mut unsent,
            );
            if let Some(unsent) = unsent {
                unsent.record(&mut thread.tally.borrow_mut());
            }
            match fill {
                Fill::Write => p.wake(Side::Reader),
                Fill::Done => {
                    p.writer_done = true;
                    p.wake(Side::Reader);
                    return;
                }
                Fill::WaitSlot(_) | Fill::WaitAnswer => {}
            }
            fill
        };
        match fill {
            Fill::Write => {
                let (result, b) = wr.write_all(buf).await;
                buf = b;
                if result.is_err() {
                    pipe.borrow_mut().close(Closed::Io);
                    return;
                }
            }
            Fill::WaitSlot(slot_ns) => {
                match &thread.spinner {
                    Some(spinner) => spinner.until(slot_ns).await,
                    None => monoio::time::sleep_until(thread.instant(slot_ns)).await,
                }
                woke_ns = thread.now_ns();
            }
            Fill::WaitAnswer => {
                let seen = pipe.borrow().answers;
                until(pipe, Side::Writer, |p| {
                    p.closed.is_some() || p.answers != seen
                })
                .await;
            }
            Fill::Done => return,
        }
    }
}

async fn reader<S: Dial>(
    thread: &Thread,
    conn: &RefCell<&mut Conn>,
    pipe: &RefCell<Pipe>,
    mut rd: OwnedReadHalf<S>,
) {
    let protocol = thread.setup.config.protocol;
    let mut buf = Vec::with_capacity(READ_BUFFER_BYTES);
    loop {
        until(pipe, Side::Reader, |p| {
            p.closed.is_some() || p.writer_done || !p.inflight.is_empty()
        })
        .await;
        {
            let p = pipe.borrow();
            if p.closed.is_some() || p.inflight.is_empty() {
                return;
            }
        }
        if buf.len() >= READ_BUFFER_BYTES {
            // One answer larger than the whole buffer.
            pipe.borrow_mut().close(Closed::Protocol);
            return;
        }
        let start = buf.len();
        let (result, slice) =
            match monoio::time::timeout(ANSWER_TIMEOUT, rd.read(buf.slice_mut(start..))).await {
                Ok(read) => read,
                Err(_) => {
                    pipe.borrow_mut().close(Closed::Timeout);
                    return;
                }
            };
        buf = slice.into_inner();
        if !matches!(result, Ok(n) if n > 0) {
            pipe.borrow_mut().close(Closed::Io);
            return;
        }
        let now_ns = thread.now_ns();
        let mut p = pipe.borrow_mut();
        let mut c = conn.borrow_mut();
        let mut tally = thread.tally.borrow_mut();
        let mut used = 0;
        let mut failure = None;
        while let Some(rest) = buf.get(used..).filter(|r| !r.is_empty()) {
            let frame = match wire::parse(protocol, rest) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    failure = Some(Closed::Protocol);
                    break;
                }
            };
            let Some(sent) = p.inflight.pop_front() else {
                failure = Some(Closed::Protocol);
                break;
            };
            used += frame.len;
            p.answers += 1;
            let granted =
                tally.verdict(
                    c.workload
                        .on_answer(sent.op, frame.outcome, sent.start_ns, now_ns),
                );
            if sent.measured {
                tally.record(now_ns.saturating_sub(sent.start_ns), now_ns, granted);
            }
            if frame.close {
                failure = Some(Closed::ByServer);
                break;
            }
        }
        buf.drain(..used.min(buf.len()));
        p.wake(Side::Writer);
        if let Some(cause) = failure {
            p.close(cause);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Command};

    fn setup(args: &[&str]) -> Arc<Setup> {
        let mut all = vec!["--target".to_string(), "127.0.0.1:9".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let Ok(Command::Run(config)) = parse(all) else {
            panic!("bad test arguments")
        };
        let zipf = Arc::new(Zipf::new(config.hot, config.zipf));
        Arc::new(Setup {
            config: *config,
            addr: Addr::Tcp("127.0.0.1:9".parse().unwrap()),
            sha: "0".repeat(40),
            zipf,
        })
    }

    fn thread(setup: Arc<Setup>, warmup_end_ns: u64, measure_end_ns: Option<u64>) -> Thread {
        Thread {
            setup,
            plan: Plan {
                epoch: Instant::now(),
                warmup_end_ns,
                measure_end_ns,
            },
            tally: RefCell::new(Tally::new()),
            spinner: None,
        }
    }

    fn fill(
        conn: &mut Conn,
        plan: &Plan,
        now_ns: u64,
        woke_ns: u64,
        room: usize,
        inflight: &mut VecDeque<InFlight>,
    ) -> (Fill, Option<Unsent>) {
        let mut out = Vec::new();
        let mut unsent = None;
        let f = conn.fill(plan, now_ns, woke_ns, room, &mut out, inflight, &mut unsent);
        (f, unsent)
    }

    // With as many requests as resources, each connection's quota is its slice's length,
    // whatever the remainder: no resource is locked twice and none is left out.
    #[test]
    fn quotas_follow_the_resource_slices() {
        for (n, c) in [(10u64, 3u32), (1_000_003, 64), (7, 7), (100, 1), (65, 64)] {
            for id in 0..c {
                assert_eq!(
                    quota(n, id, c),
                    Slice::of(id, c, n).len,
                    "n {n} c {c} id {id}"
                );
            }
        }
    }

    // --requests is shared out exactly: the quotas sum to N and differ by at most one.
    #[test]
    fn quotas_sum_to_the_request_count() {
        for (n, c) in [(10u64, 3u32), (1, 4), (1_000_003, 64)] {
            let q: Vec<u64> = (0..c).map(|id| quota(n, id, c)).collect();
            assert_eq!(q.iter().sum::<u64>(), n);
            assert!(q.iter().max().unwrap() - q.iter().min().unwrap() <= 1);
        }
    }

    // Closed loop: fills the free slots, measures only after the warmup, and stops measuring
    // exactly when the quota is used up, then sends the unlock that closes the open pair.
    #[test]
    fn closed_loop_fill_respects_warmup_and_quota() {
        let s = setup(&[
            "--connections",
            "1",
            "--depth",
            "4",
            "--requests",
            "3",
            "--warmup",
            "1s",
        ]);
        let t = thread(s, 1_000, None);
        let mut conn = Conn::new(&t, 0);
        let mut inflight = VecDeque::new();
        assert_eq!(
            fill(&mut conn, &t.plan, 500, 0, 2, &mut inflight).0,
            Fill::Write
        );
        assert!(inflight.iter().all(|f| !f.measured && f.start_ns == 500));
        inflight.clear();
        assert_eq!(
            fill(&mut conn, &t.plan, 2_000, 0, 4, &mut inflight).0,
            Fill::Write
        );
        let measured: Vec<bool> = inflight.iter().map(|f| f.measured).collect();
        assert_eq!(measured, [true, true, true, false]);
        assert_eq!(inflight.back().unwrap().op, Op::Unlock(2));
        inflight.clear();
        assert_eq!(
            fill(&mut conn, &t.plan, 3_000, 0, 4, &mut inflight).0,
            Fill::Done
        );
    }

    // Open loop: a request is sent only when its slot has come, is timed from its slot when
    // the connection was behind, and from the wake-up when it came due while the writer slept.
    #[test]
    fn open_loop_follows_the_schedule() {
        // 1000 req/s on one connection: a slot every 1 ms, phase somewhere in the first.
        let s = setup(&[
            "--connections",
            "1",
            "--depth",
            "8",
            "--rate",
            "1000",
            "--warmup",
            "0s",
        ]);
        let t = thread(s, 0, Some(10_000_000));
        let mut conn = Conn::new(&t, 0);
        let Pace::Open { schedule, .. } = conn.pace else {
            panic!("a rate gives an open loop")
        };
        let first = schedule.slot_ns(0);
        let mut inflight = VecDeque::new();
        if first > 0 {
            assert_eq!(
                fill(&mut conn, &t.plan, 0, 0, 8, &mut inflight).0,
                Fill::WaitSlot(first)
            );
        }
        // Behind by three slots: all three go at once, timed from their own slots.
        let now = schedule.slot_ns(2) + 10;
        assert_eq!(
            fill(&mut conn, &t.plan, now, 0, 8, &mut inflight).0,
            Fill::Write
        );
        let starts: Vec<u64> = inflight.iter().map(|f| f.start_ns).collect();
        assert_eq!(starts, [first, schedule.slot_ns(1), schedule.slot_ns(2)]);
        inflight.clear();
        // Woke from the timer 1.4 ms after slot 3, so slots 3 and 4 fell due while the writer
        // slept: both are timed from the wake-up, even when depth holds slot 4 back a little.
        let woke = schedule.slot_ns(3) + 1_400_000;
        assert_eq!(
            fill(&mut conn, &t.plan, woke, woke, 1, &mut inflight).0,
            Fill::Write
        );
        assert_eq!(
            fill(&mut conn, &t.plan, woke + 50_000, woke, 1, &mut inflight).0,
            Fill::Write
        );
        let starts: Vec<u64> = inflight.iter().map(|f| f.start_ns).collect();
        assert_eq!(starts, [woke, woke]);
        inflight.clear();
        // Slot 5 fell due after the wake-up while the connection was held back: timed from
        // its slot, so the server's delay is not hidden.
        let late = schedule.slot_ns(5) + 300_000;
        assert_eq!(
            fill(&mut conn, &t.plan, late, woke, 1, &mut inflight).0,
            Fill::Write
        );
        assert_eq!(inflight[0].start_ns, schedule.slot_ns(5));
    }

    // Open loop: depth bounds what is sent even when more slots are due, and at the end the
    // measured slots never sent are counted instead of silently dropped.
    #[test]
    fn open_loop_counts_unsent_slots() {
        let s = setup(&[
            "--connections",
            "1",
            "--depth",
            "3",
            "--rate",
            "1000",
            "--warmup",
            "0s",
        ]);
        let t = thread(s, 0, Some(10_000_000));
        let mut conn = Conn::new(&t, 0);
        let mut inflight = VecDeque::new();
        let (f, _) = fill(&mut conn, &t.plan, 5_000_000, 0, 3, &mut inflight);
        assert_eq!((f, inflight.len()), (Fill::Write, 3));
        // At the end, 10 slots were due in the measured 10 ms and 3 were sent; the open pair
        // (lock 0, unlock 0, lock 1) still gets its unlock, unmeasured.
        inflight.clear();
        let (f, unsent) = fill(&mut conn, &t.plan, 10_000_000, 0, 3, &mut inflight);
        assert_eq!(f, Fill::Write);
        let unsent = unsent.unwrap();
        assert_eq!((unsent.from, unsent.to, unsent.end_ns), (3, 10, 10_000_000));
        let mut tally = Tally::new();
        unsent.record(&mut tally);
        assert_eq!(tally.unsent, 7);
        assert_eq!(tally.requests, 0);
        // The oldest unsent slot (slot 3) had waited at least until the end.
        let oldest_us = (10_000_000 - unsent.schedule.slot_ns(3)) as f64 / 1000.0;
        assert!(
            (tally.max_us() - oldest_us).abs() <= oldest_us * 0.001,
            "{}",
            tally.max_us()
        );
        assert_eq!(inflight.len(), 1);
        assert_eq!(inflight[0].op, Op::Unlock(1));
        assert!(!inflight[0].measured);
    }

    // Contended: when only releases are left and a lock is still in flight, the writer waits
    // for its answer instead of finishing early.
    #[test]
    fn finishing_waits_for_answers_in_flight() {
        let s = setup(&[
            "--connections",
            "1",
            "--workload",
            "contended",
            "--duration",
            "1s",
        ]);
        let t = thread(s, 0, Some(1_000));
        let mut conn = Conn::new(&t, 0);
        let mut inflight = VecDeque::new();
        assert_eq!(
            fill(&mut conn, &t.plan, 10, 0, 1, &mut inflight).0,
            Fill::Write
        );
        let (f, _) = fill(&mut conn, &t.plan, 2_000, 0, 1, &mut inflight);
        assert_eq!(f, Fill::WaitAnswer);
        let Op::Lock(r) = inflight.pop_front().unwrap().op else {
            panic!("contended starts with a lock")
        };
        conn.workload
            .on_answer(Op::Lock(r), wire::Outcome::Granted, 10, 20);
        assert_eq!(
            fill(&mut conn, &t.plan, 2_000, 0, 1, &mut inflight).0,
            Fill::Write
        );
        assert_eq!(inflight[0].op, Op::Unlock(r));
        inflight.clear();
        assert_eq!(
            fill(&mut conn, &t.plan, 2_000, 0, 1, &mut inflight).0,
            Fill::Done
        );
    }

    // Requests the server never read before closing are sent again first, in order, keeping
    // their original timing, and the workload then carries on where it was.
    #[test]
    fn replayed_requests_go_first() {
        let s = setup(&["--connections", "1", "--depth", "4", "--warmup", "0s"]);
        let t = thread(s, 0, Some(1_000_000));
        let mut conn = Conn::new(&t, 0);
        let mut inflight = VecDeque::new();
        fill(&mut conn, &t.plan, 10, 0, 2, &mut inflight);
        conn.replay.extend(inflight.drain(..));
        assert_eq!(
            fill(&mut conn, &t.plan, 500, 0, 3, &mut inflight).0,
            Fill::Write
        );
        let sent: Vec<(Op, u64)> = inflight.iter().map(|f| (f.op, f.start_ns)).collect();
        assert_eq!(
            sent,
            [(Op::Lock(0), 10), (Op::Unlock(0), 10), (Op::Lock(1), 500)]
        );
        assert!(conn.replay.is_empty());
    }

    /// A small lock server on a Unix socket, a std thread per connection, that speaks the
    /// Dapr lock API over HTTP/1.1 and Dapr's lock.redis commands over RESP with one lease
    /// table: a lock is granted only when its resource is free, an unlock succeeds only for
    /// the holder. It notes every HTTP Host header it is sent.
    mod unix_server {
        use std::collections::HashMap;
        use std::io::{BufRead, BufReader, Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::{Arc, Mutex};

        #[derive(Default)]
        pub struct State {
            pub held: Mutex<HashMap<String, String>>,
            pub hosts: Mutex<Vec<String>>,
        }

        /// A fresh socket path under the temporary directory, short enough for sun_path.
        pub fn socket_path(tag: &str) -> PathBuf {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("loadgen-{tag}-{}-{n}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            path
        }

        pub fn start(path: &Path) -> Arc<State> {
            let listener = UnixListener::bind(path).unwrap();
            let state = Arc::new(State::default());
            let shared = state.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let state = shared.clone();
                    std::thread::spawn(move || serve(stream, &state));
                }
            });
            state
        }

        fn serve(stream: UnixStream, state: &State) {
            let Ok(mut writer) = stream.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            loop {
                let mut first = String::new();
                if reader.read_line(&mut first).unwrap_or(0) == 0 {
                    return;
                }
                let answer = if let Some(n) = first.strip_prefix('*') {
                    let mut args = Vec::new();
                    for _ in 0..n.trim().parse::<usize>().unwrap() {
                        let mut len = String::new();
                        reader.read_line(&mut len).unwrap();
                        let len: usize = len.trim_start_matches('$').trim().parse().unwrap();
                        let mut arg = vec![0; len + 2];
                        reader.read_exact(&mut arg).unwrap();
                        arg.truncate(len);
                        args.push(String::from_utf8(arg).unwrap());
                    }
                    resp(&args, state)
                } else {
                    let path = first.split(' ').nth(1).unwrap_or("").to_string();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header == "\r\n" {
                            break;
                        }
                        let lower = header.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        } else if let Some(v) = lower.strip_prefix("host:") {
                            state.hosts.lock().unwrap().push(v.trim().to_string());
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    http(&path, &String::from_utf8(body).unwrap(), state)
                };
                if writer.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
        }

        fn field<'a>(body: &'a str, name: &str) -> &'a str {
            let key = format!("\"{name}\":\"");
            let from = body.find(&key).map(|i| i + key.len()).unwrap_or(0);
            let to = body[from..].find('"').map_or(from, |i| from + i);
            &body[from..to]
        }

        fn http(path: &str, body: &str, state: &State) -> String {
            let (resource, owner) = (field(body, "resourceId"), field(body, "lockOwner"));
            let mut held = state.held.lock().unwrap();
            let json = if path.contains("/unlock/") {
                match held.get(resource) {
                    Some(o) if o == owner => {
                        held.remove(resource);
                        "{\"status\":0}"
                    }
                    Some(_) => "{\"status\":2}",
                    None => "{\"status\":1}",
                }
            } else if held.contains_key(resource) {
                "{\"success\":false}"
            } else {
                held.insert(resource.to_string(), owner.to_string());
                "{\"success\":true}"
            };
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            )
        }

        fn resp(args: &[String], state: &State) -> String {
            let mut held = state.held.lock().unwrap();
            match args.first().map(|c| c.to_ascii_uppercase()).as_deref() {
                Some("SCRIPT") => format!("$40\r\n{}\r\n", "ab".repeat(20)),
                Some("SET") if !held.contains_key(&args[1]) => {
                    held.insert(args[1].clone(), args[2].clone());
                    "+OK\r\n".into()
                }
                Some("SET") => "$-1\r\n".into(),
                Some("EVALSHA") => match held.get(&args[3]) {
                    Some(o) if *o == args[4] => {
                        held.remove(&args[3]);
                        ":1\r\n".into()
                    }
                    Some(_) => ":-2\r\n".into(),
                    None => ":-1\r\n".into(),
                },
                _ => "-ERR unknown command\r\n".into(),
            }
        }
    }

    /// A whole run through `main`'s path: parse, resolve, load the script (RESP), run.
    fn run_target(target: &str, args: &[&str]) -> Result<RunResult, StartError> {
        let mut all = vec!["--target".to_string(), target.to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let Ok(Command::Run(config)) = parse(all) else {
            panic!("bad test arguments")
        };
        let addr = resolve(&config.endpoint)?;
        let sha = match config.protocol {
            Protocol::Resp => load_script(&addr)?,
            Protocol::Http | Protocol::Grpc | Protocol::Etcd => String::new(),
        };
        let zipf = Arc::new(Zipf::new(config.hot, config.zipf));
        run(Arc::new(Setup {
            config: *config,
            addr,
            sha,
            zipf,
        }))
    }

    // --target unix:PATH: the pipelined client speaks HTTP and RESP over a Unix socket, at
    // depth 1 and pipelined, on several connections and threads, every answer checked (a
    // lock granted only on a free resource, an unlock only by its holder): no error, about
    // one grant per two requests, no lease left, and HTTP's Host header is localhost.
    #[test]
    fn http_and_resp_over_a_unix_socket() {
        for protocol in ["http", "resp"] {
            let path = unix_server::socket_path(protocol);
            let state = unix_server::start(&path);
            let target = format!("unix:{}", path.display());
            for depth in ["1", "8"] {
                let r = run_target(
                    &target,
                    &[
                        "--protocol",
                        protocol,
                        "--connections",
                        "4",
                        "--threads",
                        "2",
                        "--depth",
                        depth,
                        "--warmup",
                        "50ms",
                        "--duration",
                        "150ms",
                        "--resources",
                        "1000",
                        "--check",
                    ],
                )
                .unwrap_or_else(|e| panic!("{protocol} depth {depth}: {e}"));
                let t = &r.tally;
                assert_eq!(t.total_errors(), 0, "{protocol} depth {depth}");
                assert!(t.requests > 100, "{protocol} depth {depth}: {}", t.requests);
                assert!(
                    t.grants.abs_diff(t.requests / 2) <= 4 * 8,
                    "{protocol} depth {depth}: {} grants of {} requests",
                    t.grants,
                    t.requests
                );
                assert!(state.held.lock().unwrap().is_empty(), "leases left behind");
            }
            let hosts = state.hosts.lock().unwrap();
            if protocol == "http" {
                assert!(!hosts.is_empty());
                assert!(hosts.iter().all(|h| h == "localhost"), "{hosts:?}");
            } else {
                assert!(hosts.is_empty());
            }
            let _ = std::fs::remove_file(&path);
        }
    }

    // A Unix socket nobody listens on fails the start with a connect error naming the path,
    // over HTTP (the client threads) and RESP (the script load) alike.
    #[test]
    fn a_unix_socket_without_a_server_fails_the_start() {
        let path = unix_server::socket_path("none");
        let target = format!("unix:{}", path.display());
        for protocol in ["http", "resp"] {
            match run_target(&target, &["--protocol", protocol, "--duration", "1s"]) {
                Err(StartError::Connect(why)) => {
                    assert!(why.contains(&target), "{protocol}: {why}")
                }
                Err(e) => panic!("{protocol}: expected a connect error, got {e}"),
                Ok(_) => panic!("{protocol}: ran against no server"),
            }
        }
    }

    // The requests a connection sends carry its own owner and the configured store.
    #[test]
    fn connections_encode_their_owner() {
        let s = setup(&["--connections", "2", "--store", "st"]);
        let t = thread(s, 0, None);
        let conn = Conn::new(&t, 1);
        let mut out = Vec::new();
        conn.lock.encode(0, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /v1.0-alpha1/lock/st HTTP/1.1\r\n"));
        assert!(text.contains("\"lockOwner\":\"owner-1\""));
        assert!(text.contains("\"resourceId\":\"00000000-0000-0000-0000-000000000000\""));
        // Another workload's ids live in another namespace.
        let s = setup(&["--connections", "2", "--workload", "churn"]);
        let t = thread(s, 0, None);
        let mut out = Vec::new();
        Conn::new(&t, 0).encode(Op::Lock(5), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"resourceId\":\"00000002-0000-0000-0000-000000000005\""));
    }
}
