//! Failover under load on a `lock.etcd` store: 16 clients on two dlockd servers contend for
//! three resources while the etcd leader is killed with SIGKILL, then a leader is frozen with
//! SIGSTOP, then the cluster loses its quorum and gets it back. Every call is recorded with
//! its invoke and return instants, and the history checker (tests/common/history.rs) judges
//! the whole run: no two holders of a resource at once, and fences growing per resource. Each
//! phase must grant (or, without quorum, answer clean 500s within the store's deadline), so
//! grants resume after each election and once the quorum is back, without restarting dlockd.
//!
//! The same load on a Redis master with a replica and Sentinel is kept as a contrast
//! (`#[ignore]`d; `cargo test --test etcd_failover -- --ignored --nocapture`): its history is
//! judged by the same checker and printed, not asserted clean, since Redis replicates
//! asynchronously and may lose a lock in a failover; and the same run with the replica's link
//! cut a moment before the master dies, which shows a lock granted twice. What they found is
//! in docs/etcd.md.
//!
//! Ground rules: every wait has a deadline and waits for a condition (grants counted, a
//! leader named, a member healthy); the only sleeps are the clients' pacing.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/history.rs"]
mod history;
#[path = "common/recorder.rs"]
mod recorder;
#[path = "common/redis.rs"]
mod redis;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::start;
use etcd::TestEtcd;
use history::{History, Kind, Op, Outcome, Report};
use recorder::{call, wait_until, Conn, Rng};
use redis::{Components, TestRedis, TestSentinel as Sentinel};

/// The store's name and the app id, so the keys are `lock||checkout||res-N`.
const STORE: &str = "etcdlock";
const APP: &str = "checkout";
const SERVERS: usize = 2;
const CLIENTS_PER_SERVER: usize = 8;
const RESOURCES: u64 = 3;
/// The store's `operationTimeout`: short, so that failures are answered fast.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a failing call may take to be answered: a try-lock is a `LeaseGrant` and a
/// `Txn`, each within `operationTimeout`, plus a margin for a loaded machine.
const ANSWER_WITHIN: Duration =
    Duration::from_millis(2 * OPERATION_TIMEOUT.as_millis() as u64 + 1500);
/// The clients' read timeout. A call not answered by then counts as unknown, and the test
/// fails on any: dlockd never goes away here, so an unknown outcome is a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);
/// The grants each phase that has a quorum must see (from calls invoked in it).
const PHASE_GRANTS: usize = 10;
/// How long grants may take to resume after a failure (an election, a member back).
const RESUME_WITHIN: Duration = Duration::from_secs(15);
/// The longest a client holds a lock before unlocking it.
const MAX_HOLD_MS: u64 = 300;

// ---------------------------------------------------------------------------------------------
// The load: clients that record every call, tagged with the phase it was invoked in.

/// One recorded call: the phase current when it was invoked, the server it went to, and the
/// body of an error answer.
struct Rec {
    phase: usize,
    server: usize,
    op: Op,
    error: Option<String>,
}

/// What the clients share with the test: the phase, counts per phase, and when to stop.
struct Load {
    store: String,
    phase: AtomicUsize,
    stop: AtomicBool,
    /// Per phase: grants to calls invoked in it.
    grants: Vec<AtomicUsize>,
    /// Per phase, per resource (`res-N`): the same.
    resource_grants: Vec<Vec<AtomicUsize>>,
    /// Per phase, per client: calls invoked in it and answered.
    answered: Vec<Vec<AtomicUsize>>,
    /// Per phase: when it began (the test entered it).
    began: Mutex<Vec<Instant>>,
}

impl Load {
    fn new(store: &str, phases: usize, clients: usize) -> Arc<Load> {
        Arc::new(Load {
            store: store.to_string(),
            phase: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            grants: (0..phases).map(|_| AtomicUsize::new(0)).collect(),
            resource_grants: (0..phases)
                .map(|_| (0..RESOURCES).map(|_| AtomicUsize::new(0)).collect())
                .collect(),
            answered: (0..phases)
                .map(|_| (0..clients).map(|_| AtomicUsize::new(0)).collect())
                .collect(),
            began: Mutex::new(vec![Instant::now()]),
        })
    }

    /// Enters the next phase, once what ends the last one is done: calls invoked from now on
    /// are tagged with it. Returns its number.
    fn next_phase(&self) -> usize {
        let mut began = self.began.lock().unwrap_or_else(|p| p.into_inner());
        began.push(Instant::now());
        let phase = began.len() - 1;
        self.phase.store(phase, Ordering::SeqCst);
        phase
    }

    fn began(&self, phase: usize) -> Instant {
        self.began.lock().unwrap_or_else(|p| p.into_inner())[phase]
    }

    fn grants(&self, phase: usize) -> usize {
        self.grants[phase].load(Ordering::SeqCst)
    }

    /// Waits until calls invoked in `phase` were granted `n` times.
    #[track_caller]
    fn wait_grants(&self, phase: usize, name: &str, n: usize, within: Duration) {
        wait_until(
            &format!(
                "{n} grants in phase {phase} ({name}); {} so far",
                self.grants(phase)
            ),
            Instant::now() + within,
            || self.grants(phase) >= n,
        );
    }

    /// Waits until every client had `n` calls invoked in `phase` answered.
    #[track_caller]
    fn wait_answers(&self, phase: usize, n: usize, within: Duration) {
        wait_until(
            &format!("every client answered {n} times in phase {phase}"),
            Instant::now() + within,
            || {
                self.answered[phase]
                    .iter()
                    .all(|c| c.load(Ordering::SeqCst) >= n)
            },
        );
    }
}

/// Stops the clients when dropped, so that they stop even if an assertion fails first.
struct StopOnDrop(Arc<Load>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

/// One client: try-lock a random resource with a fresh owner and a ttl of 1 to 3 s; granted,
/// hold it 0-300 ms and unlock it (one time in five let it expire instead); refused or
/// failed, pause 10-40 ms. A broken connection (or no answer within [`CLIENT_TIMEOUT`]) is
/// recorded as unknown, and the client connects again.
fn client(id: usize, server: usize, addr: SocketAddr, seed: u64, load: &Load) -> Vec<Rec> {
    let mut rng = Rng(seed);
    let mut recs = Vec::new();
    let mut conn: Option<Conn> = None;
    let mut n = 0;
    while !load.stop.load(Ordering::SeqCst) {
        let Some(c) = conn.as_mut() else {
            match Conn::connect_to(addr, &load.store, CLIENT_TIMEOUT) {
                Ok(c) => conn = Some(c),
                Err(_) => std::thread::sleep(Duration::from_millis(10 + rng.below(10))),
            }
            continue;
        };
        n += 1;
        let owner = format!("c{id}-{n}");
        let r = rng.below(RESOURCES);
        let resource = format!("res-{r}");
        let ttl = Duration::from_secs(1 + rng.below(3));
        let mut one = |c: &mut Conn, kind: Kind| {
            let phase = load.phase.load(Ordering::SeqCst);
            let (op, answer) = call(c, id, &resource, &owner, kind);
            let got = op.outcome;
            if got != Outcome::Unknown {
                load.answered[phase][id].fetch_add(1, Ordering::SeqCst);
            }
            if op.is_grant() {
                load.grants[phase].fetch_add(1, Ordering::SeqCst);
                load.resource_grants[phase][r as usize].fetch_add(1, Ordering::SeqCst);
            }
            let error = answer
                .filter(|r| r.status != 200)
                .map(|r| r.body_str().to_string());
            recs.push(Rec {
                phase,
                server,
                op,
                error,
            });
            got
        };
        match one(c, Kind::Lock { ttl }) {
            Outcome::Granted { .. } => {
                std::thread::sleep(Duration::from_millis(rng.below(MAX_HOLD_MS + 1)));
                if rng.below(5) != 0 && one(c, Kind::Unlock) == Outcome::Unknown {
                    conn = None;
                }
            }
            Outcome::Unknown => conn = None,
            _ => std::thread::sleep(Duration::from_millis(10 + rng.below(31))),
        }
    }
    recs
}

/// Starts `CLIENTS_PER_SERVER` clients on each of `addrs`; client `id` goes to server
/// `id % addrs.len()`.
fn start_clients(addrs: &[SocketAddr], load: &Arc<Load>, seed: u64) -> Vec<JoinHandle<Vec<Rec>>> {
    (0..addrs.len() * CLIENTS_PER_SERVER)
        .map(|id| {
            let load = load.clone();
            let server = id % addrs.len();
            let addr = addrs[server];
            let seed = seed ^ (id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
            std::thread::spawn(move || client(id, server, addr, seed, &load))
        })
        .collect()
}

/// Stops the clients and gathers their calls, and `extra` calls, into one history; the
/// records come back in the history's order.
fn finish(
    load: &Load,
    clients: Vec<JoinHandle<Vec<Rec>>>,
    origin: Instant,
    extra: Vec<Rec>,
) -> (History, Vec<Rec>) {
    load.stop.store(true, Ordering::SeqCst);
    let mut recs: Vec<Rec> = Vec::new();
    for c in clients {
        recs.extend(c.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
    }
    recs.extend(extra);
    let mut history = History::new(origin);
    history.extend(recs.iter().map(|r| r.op.clone()));
    (history, recs)
}

/// A time seed, printed so that a run's choices can be told apart.
fn seed(name: &str) -> u64 {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    println!("{name}: seed {seed}");
    seed
}

/// One line per phase: how long, grants, refusals, errors, unknowns, the slowest answer, and
/// how long after its start its first grant returned.
fn phase_table(load: &Load, names: &[&str], recs: &[Rec], ended: Instant) -> String {
    let mut out = String::new();
    for (p, name) in names.iter().enumerate() {
        let began = load.began(p);
        let until = if p + 1 < names.len() {
            load.began(p + 1)
        } else {
            ended
        };
        let of: Vec<&Rec> = recs.iter().filter(|r| r.phase == p).collect();
        let count = |f: &dyn Fn(&Op) -> bool| of.iter().filter(|r| f(&r.op)).count();
        let grants = count(&|op| op.is_grant());
        let refused = count(&|op| op.outcome == Outcome::Refused);
        let errors = count(&|op| matches!(op.outcome, Outcome::Error(_)));
        let unknown = count(&|op| op.outcome == Outcome::Unknown);
        let slowest = of
            .iter()
            .map(|r| r.op.ret - r.op.invoke)
            .max()
            .unwrap_or_default();
        let first = of
            .iter()
            .filter(|r| r.op.is_grant())
            .map(|r| r.op.ret)
            .min()
            .map_or("none".to_string(), |t| format!("{:?}", t - began));
        out.push_str(&format!(
            "  phase {p} {name:<24} {:>6.1} s: {grants:>4} granted, {refused:>4} refused, \
             {errors:>4} errors, {unknown} unknown; slowest answer {slowest:.1?}, first grant \
             {first} after its start\n",
            (until - began).as_secs_f64()
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// etcd.

/// The phases of the etcd run, in order; each begins once what it names is done.
const ETCD_PHASES: [&str; 7] = [
    "steady",
    "leader killed",
    "killed member back",
    "leader stopped",
    "stopped member resumed",
    "quorum lost",
    "quorum back",
];
const QUORUM_LOST: usize = 5;

/// The component files of the `lock.etcd` store on `endpoints`, with the short deadline.
fn etcd_components(endpoints: &[String]) -> Components {
    let timeout = format!("{}s", OPERATION_TIMEOUT.as_secs());
    Components::new().file(
        &format!("{STORE}.yaml"),
        &etcd::component(
            STORE,
            &endpoints.join(","),
            &[("operationTimeout", &timeout)],
        ),
    )
}

fn dlockd(components: &Components) -> dlockd::server::Server {
    start(&["--resources-path", components.arg(), "--app-id", APP])
}

// The run of issue 24 on etcd. Mutual exclusion and fences growing per resource hold through
// a leader killed, a leader frozen and a quorum lost; grants resume after each election and
// once the quorum is back, without restarting dlockd; without quorum every call is answered a
// clean 500 naming etcd within the store's deadline, and nothing is granted.
#[test]
fn failover_under_load_keeps_locks_exclusive() {
    let run_started = Instant::now();
    let mut etcd = TestEtcd::cluster();
    let endpoints: Vec<String> = (0..3).map(|i| etcd.endpoint(i)).collect();
    // Two dlockd servers on the same three members. In one process, stores with the same
    // settings share one etcd client; listed in another order, each server has its own client,
    // and their calls start on different members (0 and 2).
    let reversed: Vec<String> = endpoints.iter().rev().cloned().collect();
    let files = [etcd_components(&endpoints), etcd_components(&reversed)];
    let servers: Vec<dlockd::server::Server> = files.iter().map(dlockd).collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.local_addr()).collect();

    let seed = seed("etcd failover");
    let origin = Instant::now();
    let load = Load::new(STORE, ETCD_PHASES.len(), SERVERS * CLIENTS_PER_SERVER);
    let clients = start_clients(&addrs, &load, seed);
    let _stop = StopOnDrop(load.clone());
    let mut events = Vec::new();
    let mut note = |what: String| {
        events.push(format!(
            "  {:>8.3} s  {what}",
            origin.elapsed().as_secs_f64()
        ));
    };

    load.wait_grants(0, ETCD_PHASES[0], PHASE_GRANTS, Duration::from_secs(20));

    // The leader dies: the others elect one, and dlockd moves to them.
    let leader = etcd.wait_leader(Duration::from_secs(10));
    etcd.kill(leader);
    note(format!("member {leader} (the leader) killed with SIGKILL"));
    let p = load.next_phase();
    load.wait_grants(p, ETCD_PHASES[p], PHASE_GRANTS, RESUME_WITHIN);

    // It comes back on its data dir and rejoins.
    etcd.restart(leader);
    note(format!(
        "member {leader} restarted on its data dir and healthy"
    ));
    let p = load.next_phase();
    load.wait_grants(p, ETCD_PHASES[p], PHASE_GRANTS, RESUME_WITHIN);

    // The leader freezes: it keeps its sockets and answers nothing.
    let frozen = etcd.wait_leader(Duration::from_secs(10));
    etcd.stop(frozen);
    note(format!("member {frozen} (the leader) stopped with SIGSTOP"));
    let p = load.next_phase();
    load.wait_grants(p, ETCD_PHASES[p], PHASE_GRANTS, RESUME_WITHIN);
    etcd.resume(frozen);
    etcd.wait_healthy();
    note(format!("member {frozen} resumed with SIGCONT and healthy"));
    let p = load.next_phase();
    load.wait_grants(p, ETCD_PHASES[p], PHASE_GRANTS, RESUME_WITHIN);

    // No quorum: one member frozen, the leader killed, one left alone.
    let leader = etcd.wait_leader(Duration::from_secs(10));
    let frozen = (leader + 1) % 3;
    etcd.stop(frozen);
    etcd.kill(leader);
    note(format!(
        "member {frozen} stopped with SIGSTOP and member {leader} (the leader) killed: no quorum"
    ));
    let p = load.next_phase();
    assert_eq!(p, QUORUM_LOST);
    load.wait_answers(p, 2, Duration::from_secs(20));

    // The quorum is back when the frozen member runs again; then the killed one rejoins.
    let quorum_back = Instant::now();
    etcd.resume(frozen);
    note(format!("member {frozen} resumed with SIGCONT: quorum back"));
    let p = load.next_phase();
    etcd.restart(leader);
    note(format!(
        "member {leader} restarted on its data dir and healthy"
    ));
    load.wait_grants(p, ETCD_PHASES[p], PHASE_GRANTS, RESUME_WITHIN);

    let ended = Instant::now();
    let (history, recs) = finish(&load, clients, origin, Vec::new());
    let report = history.check();
    println!(
        "etcd failover: {} calls from {} clients on {SERVERS} dlockd servers, {RESOURCES} \
         resources, operationTimeout {OPERATION_TIMEOUT:?}\n{}",
        history.ops.len(),
        SERVERS * CLIENTS_PER_SERVER,
        events.join("\n")
    );
    println!("{}", phase_table(&load, &ETCD_PHASES, &recs, ended));
    println!("{report}");
    report.assert_clean();
    check_etcd_run(&load, &history, &recs, &report, quorum_back);
    for server in servers {
        assert!(server.shutdown(Duration::from_secs(5)));
    }
    drop(etcd);
    println!(
        "etcd failover: the whole test took {:.1} s",
        run_started.elapsed().as_secs_f64()
    );
}

/// What the etcd run must show beside the checker's rules. `recs[i]` is `history.ops[i]`;
/// `quorum_back`: just before the quorum came back.
fn check_etcd_run(
    load: &Load,
    history: &History,
    recs: &[Rec],
    report: &Report,
    quorum_back: Instant,
) {
    let total = report.total();
    assert_eq!(total.unknowns, 0, "every call is answered\n{report}");
    assert_eq!(
        total.grants_without_fence, 0,
        "every grant carries etcd's fence\n{report}"
    );
    // Every phase with a quorum granted, through both servers.
    for (p, name) in ETCD_PHASES.iter().enumerate() {
        if p == QUORUM_LOST {
            continue;
        }
        let grants = recs
            .iter()
            .filter(|r| r.phase == p && r.op.is_grant())
            .count();
        assert!(
            grants >= PHASE_GRANTS,
            "phase {p} ({name}): {grants} grants"
        );
        for s in 0..SERVERS {
            assert!(
                recs.iter()
                    .any(|r| r.phase == p && r.server == s && r.op.is_grant()),
                "phase {p} ({name}): no grant through server {s}"
            );
        }
    }

    // Without a quorum (calls invoked once it was lost and answered before it came back):
    // nothing granted, only clean 500s naming etcd, each within the store's deadline (plus a
    // margin), from both servers. A call invoked without a quorum and answered once it was
    // back may have been granted.
    let lost: Vec<usize> = (0..recs.len())
        .filter(|&i| recs[i].phase == QUORUM_LOST && recs[i].op.ret < quorum_back)
        .collect();
    for &i in &lost {
        let r = &recs[i];
        assert_eq!(
            r.op.outcome,
            Outcome::Error(500),
            "without a quorum: {}",
            history.describe(i)
        );
        let body = r.error.as_deref().unwrap_or_default();
        let expected = match r.op.kind {
            Kind::Unlock => r#"{"errorCode":"ERR_UNLOCK","message":"failed to release lock: etcd "#,
            _ => r#"{"errorCode":"ERR_TRY_LOCK","message":"failed to try acquiring lock: etcd "#,
        };
        assert!(body.starts_with(expected), "{body}");
        let took = r.op.ret - r.op.invoke;
        assert!(
            took <= ANSWER_WITHIN,
            "answered {took:?} after it was asked, without a quorum: {}",
            history.describe(i)
        );
    }
    for s in 0..SERVERS {
        assert!(
            lost.iter().any(|&i| recs[i].server == s),
            "server {s} answered nothing without a quorum"
        );
    }
    if let Some(&i) = lost.first() {
        println!(
            "without a quorum, {} calls answered 500, for example: {}",
            lost.len(),
            recs[i].error.as_deref().unwrap_or_default()
        );
    }

    // etcd's revision is one counter for every key: a grant invoked in a phase has a fence
    // above every grant that returned before the phase began, whatever the resource.
    for p in 1..ETCD_PHASES.len() {
        let began = load.began(p);
        let before = history
            .ops
            .iter()
            .filter(|op| op.is_grant() && op.ret < began)
            .filter_map(Op::fence)
            .max();
        let after = recs
            .iter()
            .filter(|r| r.phase == p && r.op.is_grant())
            .filter_map(|r| r.op.fence())
            .min();
        if let (Some(before), Some(after)) = (before, after) {
            assert!(
                after > before,
                "phase {p}: fence {after} after {before} granted before it began"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The contrast: the same load on Redis with Sentinel.

const REDIS_STORE: &str = "redislock";

/// A TCP relay from a port of its own to a Redis master, through which everybody reaches it:
/// the replica, Sentinel and dlockd. [`Link::cut`] stops it passing on what the master sends
/// on the replication connections (those on which the replica asked for `PSYNC`), with every
/// connection left open: a partition between master and replica, or a replica that lags,
/// which neither side notices. (The replica must reach the master at the address Sentinel
/// knows, or Sentinel points it back there: so everybody goes through the relay.)
struct Link {
    port: u16,
    cut: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

impl Link {
    fn start(master_port: u16) -> Link {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("a bound port").port();
        listener
            .set_nonblocking(true)
            .expect("a listener that polls");
        let cut = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (cut2, done2) = (cut.clone(), done.clone());
        std::thread::spawn(move || {
            while !done2.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(master) = std::net::TcpStream::connect(("127.0.0.1", master_port)) else {
                    continue; // dropped: the client sees the master gone
                };
                let (Ok(m), Ok(c)) = (master.try_clone(), client.try_clone()) else {
                    continue;
                };
                let replication = Arc::new(AtomicBool::new(false));
                let up = Relay {
                    marks: Some(replication.clone()),
                    cut: None,
                    done: done2.clone(),
                };
                let down = Relay {
                    marks: None,
                    cut: Some((cut2.clone(), replication)),
                    done: done2.clone(),
                };
                up.run(client, master);
                down.run(m, c);
            }
        });
        Link { port, cut, done }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// One direction of a relayed connection.
struct Relay {
    /// Client to master: set once the client asks for `PSYNC` (it is the replica).
    marks: Option<Arc<AtomicBool>>,
    /// Master to client: the link's cut, and whether this connection is the replica's.
    cut: Option<(Arc<AtomicBool>, Arc<AtomicBool>)>,
    /// The link is gone.
    done: Arc<AtomicBool>,
}

impl Relay {
    /// Passes on what `from` sends to `to` until either closes. Once cut, it passes nothing
    /// more and keeps `to` open until the link is dropped.
    fn run(self, mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
        use std::io::{Read, Write};
        std::thread::spawn(move || {
            let mut chunk = [0u8; 16384];
            loop {
                let n = match from.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(marks) = &self.marks {
                    if common::find(&chunk[..n], b"PSYNC").is_some() {
                        marks.store(true, Ordering::SeqCst);
                    }
                }
                let cut = self.cut.as_ref().is_some_and(|(cut, replication)| {
                    cut.load(Ordering::SeqCst) && replication.load(Ordering::SeqCst)
                });
                if cut {
                    while !self.done.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    return;
                }
                if to.write_all(&chunk[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
}

/// A master (reached through a [`Link`]), its replica, Sentinel watching them, and two dlockd
/// servers on a `lock.redis` store that asks Sentinel for the master (`failover: true`).
struct RedisSetup {
    master: TestRedis,
    replica: TestRedis,
    link: Link,
    sentinel: Sentinel,
    servers: Vec<dlockd::server::Server>,
    _files: Components,
}

impl RedisSetup {
    fn start() -> RedisSetup {
        let master = TestRedis::start();
        let link = Link::start(master.port);
        let replica =
            TestRedis::start_with(&["--replicaof", "127.0.0.1", &link.port.to_string()], None);
        wait_until(
            "the replica's link to come up",
            Instant::now() + Duration::from_secs(30),
            || {
                master
                    .cmd(&["INFO", "replication"])
                    .contains("state=online")
            },
        );
        let sentinel = Sentinel::start(link.port);
        let files = Components::new().redis(
            REDIS_STORE,
            &format!("127.0.0.1:{}", sentinel.port),
            &[("failover", "true"), ("sentinelMasterName", "mymaster")],
        );
        let servers = (0..SERVERS)
            .map(|_| start(&["--resources-path", files.arg(), "--app-id", APP]))
            .collect();
        RedisSetup {
            master,
            replica,
            link,
            sentinel,
            servers,
            _files: files,
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.local_addr()).collect()
    }

    /// Kills the master with SIGKILL (the load enters its next phase) and waits until
    /// Sentinel names the replica instead (and the next). Returns that last phase.
    fn fail_over(&mut self, load: &Load) -> usize {
        self.master.kill();
        let killed = Instant::now();
        load.next_phase();
        let promoted = format!("127.0.0.1:{}", self.replica.port);
        wait_until(
            "Sentinel to promote the replica",
            Instant::now() + Duration::from_secs(30),
            || self.sentinel.master().as_deref() == Some(promoted.as_str()),
        );
        println!(
            "redis failover: replica promoted {:?} after the master was killed",
            killed.elapsed()
        );
        load.next_phase()
    }

    fn shutdown(self) {
        for server in self.servers {
            assert!(server.shutdown(Duration::from_secs(5)));
        }
    }
}

/// Prints the Redis run's phases and the checker's report; returns the report.
fn redis_report(load: &Load, phases: &[&str], history: &History, recs: &[Rec]) -> Report {
    let report = history.check();
    println!(
        "redis failover: {} calls from {} clients on {SERVERS} dlockd servers, {RESOURCES} \
         resources",
        history.ops.len(),
        SERVERS * CLIENTS_PER_SERVER
    );
    println!("{}", phase_table(load, phases, recs, Instant::now()));
    println!("{report}");
    println!(
        "redis failover: {} violation(s), {} of mutual exclusion",
        report.violations.len(),
        report.violations_of(history::Rule::MutualExclusion).len()
    );
    report
}

// The same load on a Redis master with one replica and Sentinel: the master is killed with
// SIGKILL, Sentinel promotes the replica, and dlockd follows it. Redis replicates
// asynchronously, so a lock the master granted and had not yet sent to its replica is gone
// after the failover. The checker's report is printed, not asserted clean: this run is the
// contrast to the etcd one, and what it found is in docs/etcd.md.
#[test]
#[ignore = "a contrast, not a check: whether Redis loses a lock in a failover is a matter of \
            timing; run it with `cargo test --test etcd_failover -- --ignored --nocapture`"]
fn redis_sentinel_failover_under_load_for_contrast() {
    const PHASES: [&str; 3] = ["steady", "master killed", "replica promoted"];
    let mut redis = RedisSetup::start();
    let seed = seed("redis failover");
    let origin = Instant::now();
    let load = Load::new(REDIS_STORE, PHASES.len(), SERVERS * CLIENTS_PER_SERVER);
    let clients = start_clients(&redis.addrs(), &load, seed);
    let _stop = StopOnDrop(load.clone());
    load.wait_grants(0, PHASES[0], 3 * PHASE_GRANTS, Duration::from_secs(20));

    let p = redis.fail_over(&load);
    load.wait_grants(p, PHASES[p], 3 * PHASE_GRANTS, Duration::from_secs(20));

    let (history, recs) = finish(&load, clients, origin, Vec::new());
    redis_report(&load, &PHASES, &history, &recs);
    redis.shutdown();
}

const PROBE_CLIENT: usize = 1000;
const PROBE_TTL: Duration = Duration::from_secs(30);

// The same run with the replica's link cut a moment before the master dies (a partition
// between them, or a replica that lags): a lock granted in that moment, and held, is granted
// again by the promoted replica to another client while its first holder still holds it. A
// probe takes that lock (30 s) once the link is cut; the checker finds it granted twice.
#[test]
#[ignore = "a contrast, not a check: Redis double grants after a failover with its \
            replication behind; run it with \
            `cargo test --test etcd_failover -- --ignored --nocapture`"]
fn redis_failover_with_the_replica_behind_grants_a_lock_twice() {
    const PHASES: [&str; 4] = [
        "steady",
        "replica link cut",
        "master killed",
        "replica promoted",
    ];
    let mut redis = RedisSetup::start();
    let seed = seed("redis failover, replica behind");
    let origin = Instant::now();
    let load = Load::new(REDIS_STORE, PHASES.len(), SERVERS * CLIENTS_PER_SERVER);
    let addrs = redis.addrs();
    let clients = start_clients(&addrs, &load, seed);
    let _stop = StopOnDrop(load.clone());
    load.wait_grants(0, PHASES[0], 3 * PHASE_GRANTS, Duration::from_secs(20));

    redis.link.cut();
    let p = load.next_phase();
    // The probe: res-0 for 30 s, tried every 20 ms until granted, then held.
    let mut probe = Conn::connect_to(addrs[0], REDIS_STORE, CLIENT_TIMEOUT).expect("connect");
    let mut extra = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kind = Kind::Lock { ttl: PROBE_TTL };
        let (op, _) = call(&mut probe, PROBE_CLIENT, "res-0", "probe", kind);
        let granted = op.is_grant();
        extra.push(Rec {
            phase: p,
            server: 0,
            op,
            error: None,
        });
        if granted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the probe was never granted res-0"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    load.wait_grants(p, PHASES[p], PHASE_GRANTS, Duration::from_secs(20));

    let p = redis.fail_over(&load);
    load.wait_grants(p, PHASES[p], 3 * PHASE_GRANTS, Duration::from_secs(20));
    // Until the promoted replica has granted the probe's resource to one of the clients.
    wait_until(
        "the promoted replica to grant res-0",
        Instant::now() + Duration::from_secs(20),
        || load.resource_grants[p][0].load(Ordering::SeqCst) > 0,
    );

    let (history, recs) = finish(&load, clients, origin, extra);
    let report = redis_report(&load, &PHASES, &history, &recs);
    let twice = report
        .violations_of(history::Rule::MutualExclusion)
        .iter()
        .filter(|v| {
            [v.first, v.second]
                .iter()
                .any(|&i| history.ops[i].client == PROBE_CLIENT)
        })
        .count();
    println!("redis failover: the probe's lock was granted again {twice} time(s) while held");
    assert!(
        twice > 0,
        "the lock granted while the replica was behind was not granted again\n{report}"
    );
    redis.shutdown();
}
