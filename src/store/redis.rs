//! A `lock.redis` store, wire-compatible with daprd's: a try-lock is `SET key owner EX n NX`,
//! an unlock is one Lua script run by `EVALSHA` (loaded once per connection), and keys are
//! built by the contract's `keyPrefix` table, so daprd sidecars and dlockd share locks.
//!
//! Each worker has its own connection to each Redis store, driven by one task
//! ([`RedisClient::run`]): commands of all the worker's connections are pipelined on it in
//! the order they were submitted, and Redis answers in that order, so a FIFO of waiting slots
//! pairs each reply with its request. Answers go back through the worker's `Pending` table,
//! the same seam forwarded requests use, and each connection writes them in its own request
//! order.
//!
//! With Sentinel (`failover: true`), each connection first asks the sentinels for the master
//! and checks its `ROLE`; a `READONLY` answer (the master was demoted) ends the connection, and
//! the next one asks the sentinels again.
//!
//! Failures are answered, never waited out: while the connection is down every request gets
//! `500` at once with the cause; a reply later than [`REPLY_TIMEOUT`] breaks the connection and
//! fails everything in flight on it. The task reconnects with a doubling backoff (up to
//! [`MAX_BACKOFF`]). A Redis store's trouble touches no other store: its requests never wait
//! for anything but its own connection.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split, Splitable};
use monoio::net::TcpStream;
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, RangeFrame};

use super::seam::{Deliver, LocalFuture, RemoteStore, StoreError, StoreFailure, StoreOutcome};
use crate::api::{Answer, Holding, OpKind};
use crate::components::{RedisSettings, Sentinel};
use crate::lease::UnlockStatus;
use crate::shard::SlotId;

/// daprd's unlock script: the key's value is the owner; -1 no such lock, -2 another owner,
/// else the `DEL` count (1).
pub const UNLOCK_SCRIPT: &str = "local v = redis.call(\"get\",KEYS[1]); if v==false then return -1 end; if v~=ARGV[1] then return -2 else return redis.call(\"del\",KEYS[1]) end";

/// dlockd's renewal: the key's value is the owner; -1 no such lock, -2 another owner, else
/// the key lives ARGV[2] more seconds and 0 is answered. Sent by its text (`EVAL`): renewals
/// are rare beside locks and unlocks.
pub const RENEW_SCRIPT: &str = "local v = redis.call(\"get\",KEYS[1]); if v==false then return -1 end; if v~=ARGV[1] then return -2 end; redis.call(\"expire\",KEYS[1],ARGV[2]); return 0";

/// dlockd's holder query: the key's value and its milliseconds left, read together.
pub const HOLDER_SCRIPT: &str =
    "return {redis.call(\"get\",KEYS[1]), redis.call(\"pttl\",KEYS[1])}";

/// How long a connection attempt, with its handshake, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the oldest request in flight may wait for its reply before the connection is
/// taken as broken.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// The first and the longest wait between connection attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Bytes asked of each read.
const READ_CHUNK: usize = 16 * 1024;
/// The most bytes one reply may take before the connection is dropped: replies to these
/// commands are a few bytes; more is a broken or foreign server.
const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// A connection to Redis, plain or TLS.
pub enum Link {
    Plain(TcpStream),
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>),
}

/// A connection ready to serve, with the unlock script's SHA1.
pub type Connected = (Link, Vec<u8>);

/// An unlock's key and owner, kept to run it again by its text.
struct Retry {
    key: Box<[u8]>,
    owner: Box<[u8]>,
}

struct InFlight {
    /// `None` for a command that answers nobody (the script's reload after a `NOSCRIPT`).
    slot: Option<SlotId>,
    op: OpKind,
    /// For the `EVAL` retry after a `NOSCRIPT`.
    retry: Option<Retry>,
    since: Instant,
}

#[derive(Default)]
struct State {
    /// Encoded commands not yet written.
    out: Vec<u8>,
    /// Every request whose reply has not come, in the order its command was queued.
    in_flight: VecDeque<InFlight>,
    /// Connected, authenticated, database selected, script loaded.
    up: bool,
    /// Why the connection is down, for the answers given meanwhile.
    down_because: String,
    /// The unlock script's SHA1 as `SCRIPT LOAD` returned it.
    script_sha: Vec<u8>,
    /// The writer's waker while it waits for commands.
    writer: Option<Waker>,
    /// Reused for building keys.
    key: Vec<u8>,
}

/// One worker's connection to one Redis store.
pub struct RedisClient {
    settings: RedisSettings,
    /// With `enableTLS`: how connections are wrapped, or why they cannot be.
    tls: Option<Result<monoio_rustls::TlsConnector, String>>,
    /// The key bytes before the resource id.
    key_head: Vec<u8>,
    state: RefCell<State>,
    /// The connection made before the worker serves, until [`run`](RedisClient::run) takes
    /// it.
    first: RefCell<Option<Connected>>,
}

impl RedisClient {
    pub fn new(settings: RedisSettings, key_head: Vec<u8>) -> Rc<Self> {
        let tls = settings.tls.then(tls_connector);
        Rc::new(RedisClient {
            settings,
            tls,
            key_head,
            state: RefCell::new(State {
                down_because: "not connected yet".into(),
                ..State::default()
            }),
            first: RefCell::new(None),
        })
    }

    /// The key daprd uses for `resource`.
    pub fn key_of(&self, resource: &[u8]) -> Vec<u8> {
        [self.key_head.as_slice(), resource].concat()
    }

    /// Queues one request; its answer is delivered to `slot`, at once if Redis is down.
    fn queue(
        &self,
        deliver: &dyn Deliver,
        slot: SlotId,
        op: OpKind,
        resource: &[u8],
        owner: &[u8],
    ) {
        let mut state = self.state.borrow_mut();
        if !state.up {
            let error = StoreError::Unavailable {
                at: self.at(),
                why: state.down_because.clone(),
            };
            drop(state);
            // A try-lock refused at once grants nothing to undo.
            let _ = deliver.deliver(slot, failed(op, error));
            return;
        }
        let State {
            out,
            in_flight,
            script_sha,
            key,
            writer,
            ..
        } = &mut *state;
        key.clear();
        key.extend_from_slice(&self.key_head);
        key.extend_from_slice(resource);
        let retry = match op {
            // An acquire's waiting is the worker's (it polls); each try is a try-lock.
            OpKind::TryLock { expiry_s } | OpKind::Acquire { expiry_s, .. } => {
                let mut digits = [0u8; 10];
                let expiry = decimal(expiry_s, &mut digits);
                push_command(out, &[b"SET", key, owner, b"EX", expiry, b"NX"]);
                None
            }
            OpKind::Unlock => {
                push_command(out, &[b"EVALSHA", script_sha, b"1", key, owner]);
                Some(Retry {
                    key: key.as_slice().into(),
                    owner: owner.into(),
                })
            }
            OpKind::Renew { expiry_s } => {
                let mut digits = [0u8; 10];
                let expiry = decimal(expiry_s, &mut digits);
                let script = RENEW_SCRIPT.as_bytes();
                push_command(out, &[b"EVAL", script, b"1", key, owner, expiry]);
                None
            }
            OpKind::Holder => {
                push_command(out, &[b"EVAL", HOLDER_SCRIPT.as_bytes(), b"1", key]);
                // The owner the answer is compared with.
                Some(Retry {
                    key: Box::default(),
                    owner: owner.into(),
                })
            }
        };
        in_flight.push_back(InFlight {
            slot: Some(slot),
            op,
            retry,
            since: Instant::now(),
        });
        if let Some(waker) = writer.take() {
            waker.wake();
        }
    }

    /// The first connection attempt, made before the worker serves so that its first
    /// requests find Redis connected. A failure is left to [`run`](Self::run), which keeps
    /// trying; the caller reports the outcome (once per store, not once per worker).
    async fn first_connection(&self) -> Result<(), String> {
        let why = match monoio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
            Ok(Ok(connected)) => {
                *self.first.borrow_mut() = Some(connected);
                return Ok(());
            }
            Ok(Err(why)) => why,
            Err(_) => format!("no connection within {CONNECT_TIMEOUT:?}"),
        };
        self.state.borrow_mut().down_because = why.clone();
        Err(why)
    }

    /// `redis at HOST`, as failures name it.
    fn at(&self) -> String {
        format!("redis at {}", self.settings.host)
    }

    /// Serves the first connection if there is one, then connects, serves, and reconnects
    /// after every failure, for as long as the worker's runtime runs it.
    async fn serve_forever(self: Rc<Self>, deliver: Rc<dyn Deliver>) {
        let mut first = self.first.borrow_mut().take();
        let mut backoff = MIN_BACKOFF;
        let mut first_served = first.is_some();
        loop {
            let attempt = match first.take() {
                Some(connected) => Ok(Ok(connected)),
                None => monoio::time::timeout(CONNECT_TIMEOUT, self.connect()).await,
            };
            match attempt {
                Ok(Ok((link, sha))) => {
                    backoff = MIN_BACKOFF;
                    {
                        let mut state = self.state.borrow_mut();
                        state.script_sha = sha;
                        state.up = true;
                    }
                    // The first connection is reported at start, once for all the workers;
                    // later ones, each worker's own, here.
                    if !first_served {
                        crate::log::write(
                            crate::log::Level::Info,
                            format_args!("connected to redis at {}", self.settings.host),
                        );
                    }
                    first_served = false;
                    let why = match link {
                        Link::Plain(stream) => self.serve(stream, &*deliver).await,
                        Link::Tls(stream) => self.serve(*stream, &*deliver).await,
                    };
                    crate::log::write(
                        crate::log::Level::Warn,
                        format_args!("redis at {}: {why}; reconnecting", self.settings.host),
                    );
                    self.go_down(why, &*deliver);
                }
                Ok(Err(why)) => self.go_down(why, &*deliver),
                Err(_) => self.go_down(
                    format!("no connection within {CONNECT_TIMEOUT:?}"),
                    &*deliver,
                ),
            }
            monoio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Marks the connection down and fails everything in flight on it.
    fn go_down(&self, why: String, deliver: &dyn Deliver) {
        let lost: Vec<InFlight> = {
            let mut state = self.state.borrow_mut();
            state.up = false;
            state.out.clear();
            state.down_because = why.clone();
            state.in_flight.drain(..).collect()
        };
        for request in lost {
            if let Some(slot) = request.slot {
                let error = StoreError::ConnectionLost {
                    at: self.at(),
                    why: why.clone(),
                };
                let _ = deliver.deliver(slot, failed(request.op, error));
            }
        }
    }

    /// A new connection to the master, authenticated, on its database, with the unlock script
    /// loaded; and the script's SHA1. With Sentinel, the master is asked of the sentinels
    /// first, and must say it is a master.
    async fn connect(&self) -> Result<Connected, String> {
        let master = match &self.settings.sentinel {
            None => self.settings.host.clone(),
            Some(sentinel) => self.ask_sentinels(sentinel).await?,
        };
        let tcp = connect_to(&master).await?;
        let _ = tcp.set_nodelay(true);
        let mut link = match &self.tls {
            None => Link::Plain(tcp),
            Some(Err(why)) => return Err(why.clone()),
            Some(Ok(connector)) => {
                let host = master
                    .rsplit_once(':')
                    .map_or(master.as_str(), |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let name = rustls::pki_types::ServerName::try_from(host)
                    .map_err(|e| format!("{master}: not a name TLS can verify: {e}"))?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {master}: {e}"))?;
                Link::Tls(Box::new(stream))
            }
        };
        let mut hello = Vec::new();
        let mut steps = Vec::new();
        if let Some(password) = &self.settings.password {
            match &self.settings.username {
                Some(user) => {
                    push_command(&mut hello, &[b"AUTH", user.as_bytes(), password.as_bytes()])
                }
                None => push_command(&mut hello, &[b"AUTH", password.as_bytes()]),
            }
            steps.push("AUTH");
        }
        if self.settings.db != 0 {
            let db = self.settings.db.to_string();
            push_command(&mut hello, &[b"SELECT", db.as_bytes()]);
            steps.push("SELECT");
        }
        if self.settings.sentinel.is_some() {
            push_command(&mut hello, &[b"ROLE"]);
            steps.push("ROLE");
        }
        push_command(&mut hello, &[b"SCRIPT", b"LOAD", UNLOCK_SCRIPT.as_bytes()]);
        steps.push("SCRIPT LOAD");
        let replies = match &mut link {
            Link::Plain(stream) => exchange(stream, hello, steps.len()).await?,
            Link::Tls(stream) => exchange(&mut **stream, hello, steps.len()).await?,
        };
        let mut sha = Vec::new();
        for (step, reply) in steps.into_iter().zip(replies) {
            match (step, reply) {
                (_, Reply::Error(e)) => return Err(format!("{step} refused: {e}")),
                ("ROLE", Reply::Array(role)) => {
                    if role.first() != Some(&Reply::Bulk(b"master".to_vec())) {
                        return Err(format!(
                            "the sentinels named {master} as the master, but it is not one (yet)"
                        ));
                    }
                }
                ("SCRIPT LOAD", Reply::Bulk(digest) | Reply::Simple(digest)) => sha = digest,
                ("AUTH" | "SELECT", Reply::Simple(_)) => {}
                (step, other) => return Err(format!("{step}: unexpected reply {other:?}")),
            }
        }
        Ok((link, sha))
    }

    /// The master's address, from the first sentinel that knows it.
    async fn ask_sentinels(&self, sentinel: &Sentinel) -> Result<String, String> {
        let mut failures = Vec::new();
        for addr in self.settings.host.split(',').map(str::trim) {
            match self.ask_sentinel(addr, sentinel).await {
                Ok(master) => return Ok(master),
                Err(why) => failures.push(format!("{addr}: {why}")),
            }
        }
        Err(format!(
            "no sentinel named the master {:?}: {}",
            sentinel.master,
            failures.join("; ")
        ))
    }

    async fn ask_sentinel(&self, addr: &str, sentinel: &Sentinel) -> Result<String, String> {
        let mut stream = connect_to(addr).await?;
        let mut ask = Vec::new();
        let mut expected = 1;
        if let Some(password) = &sentinel.password {
            match &sentinel.username {
                Some(user) => {
                    push_command(&mut ask, &[b"AUTH", user.as_bytes(), password.as_bytes()])
                }
                None => push_command(&mut ask, &[b"AUTH", password.as_bytes()]),
            }
            expected += 1;
        }
        push_command(
            &mut ask,
            &[
                b"SENTINEL",
                b"get-master-addr-by-name",
                sentinel.master.as_bytes(),
            ],
        );
        let mut replies = exchange(&mut stream, ask, expected).await?;
        let answer = replies.pop();
        if let Some(Reply::Error(e)) = replies.pop() {
            return Err(format!("AUTH refused: {e}"));
        }
        match answer {
            Some(Reply::Array(addr)) => match addr.as_slice() {
                [Reply::Bulk(ip), Reply::Bulk(port)] => {
                    let ip = String::from_utf8_lossy(ip);
                    let port = String::from_utf8_lossy(port);
                    Ok(if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    })
                }
                other => Err(format!("unexpected reply {other:?}")),
            },
            Some(Reply::Null) => Err(format!("it does not know a master {:?}", sentinel.master)),
            Some(Reply::Error(e)) => Err(e),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    /// Writes queued commands and reads replies until the connection fails; returns why.
    async fn serve<S>(&self, stream: S, deliver: &dyn Deliver) -> String
    where
        S: Split + AsyncReadRent + AsyncWriteRent,
    {
        let (mut reader, mut writer) = stream.into_split();
        let write = async {
            let mut spare: Vec<u8> = Vec::with_capacity(READ_CHUNK);
            loop {
                std::future::poll_fn(|cx| {
                    let mut state = self.state.borrow_mut();
                    if state.out.is_empty() {
                        state.writer = Some(cx.waker().clone());
                        Poll::Pending
                    } else {
                        std::mem::swap(&mut state.out, &mut spare);
                        Poll::Ready(())
                    }
                })
                .await;
                let (written, back) = writer.write_all(spare).await;
                spare = back;
                spare.clear();
                if let Err(e) = written {
                    return format!("cannot write: {e}");
                }
            }
        };
        let read = async {
            let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
            loop {
                let mut used = 0;
                loop {
                    match decode_range(&buf[used..]) {
                        Ok(Some((frame, n))) => {
                            let reply = owned_reply(&buf[used..], &frame);
                            used += n;
                            if let Err(why) = self.dispatch(reply, deliver) {
                                return why;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return format!("not a Redis reply: {e:?}"),
                    }
                }
                buf.drain(..used);
                if buf.len() > MAX_REPLY_BYTES {
                    return "a reply of more than 1 MiB".to_string();
                }
                let len = buf.len();
                buf.reserve(READ_CHUNK);
                let (result, back) = reader.read(buf.slice_mut(len..)).await;
                buf = back.into_inner();
                match result {
                    Ok(0) => return "the connection was closed".to_string(),
                    Ok(_) => {}
                    Err(e) => return format!("cannot read: {e}"),
                }
            }
        };
        let watchdog = async {
            loop {
                monoio::time::sleep(REPLY_TIMEOUT / 4).await;
                let state = self.state.borrow();
                if let Some(oldest) = state.in_flight.front() {
                    if oldest.since.elapsed() > REPLY_TIMEOUT {
                        return format!("no reply within {REPLY_TIMEOUT:?}");
                    }
                }
            }
        };
        monoio::select! {
            why = write => why,
            why = read => why,
            why = watchdog => why,
        }
    }

    /// Pairs one reply with the oldest request in flight and delivers its answer.
    fn dispatch(&self, reply: Reply, deliver: &dyn Deliver) -> Result<(), String> {
        let mut state = self.state.borrow_mut();
        let Some(request) = state.in_flight.pop_front() else {
            return Err(format!("a reply nobody asked for: {reply:?}"));
        };
        let answer = match (request.op, reply) {
            (OpKind::TryLock { .. } | OpKind::Acquire { .. }, Reply::Simple(ok)) if ok == b"OK" => {
                Ok(Answer::TryLock(Ok(true)))
            }
            (OpKind::TryLock { .. } | OpKind::Acquire { .. }, Reply::Null) => {
                Ok(Answer::TryLock(Ok(false)))
            }
            (OpKind::Unlock, Reply::Integer(n)) => Ok(Answer::Unlock(match n {
                n if n >= 0 => UnlockStatus::Success,
                -1 => UnlockStatus::LockDoesNotExist,
                -2 => UnlockStatus::LockBelongsToOthers,
                _ => UnlockStatus::InternalError,
            })),
            (OpKind::Renew { .. }, Reply::Integer(n)) => Ok(Answer::Renew(match n {
                0 => UnlockStatus::Success,
                -1 => UnlockStatus::LockDoesNotExist,
                -2 => UnlockStatus::LockBelongsToOthers,
                _ => UnlockStatus::InternalError,
            })),
            (OpKind::Holder, Reply::Array(found)) => match holding(&found, request.retry) {
                Some(holding) => Ok(Answer::Holder(holding)),
                None => failed(
                    OpKind::Holder,
                    StoreError::Unexpected(format!("unexpected reply to Holder: {found:?}")),
                ),
            },
            (OpKind::Unlock, Reply::Error(e)) if e.starts_with("NOSCRIPT") => {
                // The script cache was flushed: run this one by its text (the script did not
                // run, so this is no second unlock) and load it again for the next ones.
                if let Some(Retry { key, owner }) = request.retry {
                    push_command(
                        &mut state.out,
                        &[b"EVAL", UNLOCK_SCRIPT.as_bytes(), b"1", &key, &owner],
                    );
                    push_command(
                        &mut state.out,
                        &[b"SCRIPT", b"LOAD", UNLOCK_SCRIPT.as_bytes()],
                    );
                    state.in_flight.push_back(InFlight {
                        slot: request.slot,
                        op: request.op,
                        retry: None,
                        since: Instant::now(),
                    });
                    state.in_flight.push_back(InFlight {
                        slot: None,
                        op: OpKind::Unlock,
                        retry: None,
                        since: Instant::now(),
                    });
                    if let Some(waker) = state.writer.take() {
                        waker.wake();
                    }
                    return Ok(());
                }
                failed(request.op, StoreError::Refused(e))
            }
            (_, Reply::Error(e)) if e.starts_with("READONLY") => {
                // The master became a replica (a failover): this connection is done; the next
                // one asks the sentinels again.
                drop(state);
                if let Some(slot) = request.slot {
                    let failure = failed(request.op, StoreError::Refused(e.clone()));
                    let _ = deliver.deliver(slot, failure);
                }
                return Err(format!("{e}: the server is no longer the master"));
            }
            (_, Reply::Error(e)) => failed(request.op, StoreError::Refused(e)),
            (op, other) => failed(
                op,
                StoreError::Unexpected(format!("unexpected reply to {op:?}: {other:?}")),
            ),
        };
        drop(state);
        if let Some(slot) = request.slot {
            // A grant whose poller went stands until it expires, as any try-lock's.
            let _ = deliver.deliver(slot, answer);
        }
        Ok(())
    }
}

impl RemoteStore for RedisClient {
    fn submit(
        &self,
        deliver: &dyn Deliver,
        slot: SlotId,
        kind: OpKind,
        resource: &[u8],
        owner: &[u8],
    ) {
        self.queue(deliver, slot, kind, resource, owner);
    }

    fn connect_first(&self) -> LocalFuture<'_, Result<Option<String>, String>> {
        Box::pin(async { self.first_connection().await.map(|()| None) })
    }

    fn run(self: Rc<Self>, deliver: Rc<dyn Deliver>) -> LocalFuture<'static, ()> {
        Box::pin(self.serve_forever(deliver))
    }

    fn location(&self) -> &str {
        &self.settings.host
    }
}

/// What the holder script's answer (the key's value, its milliseconds left) says, for the
/// caller's owner in `asked`. A key without an expiry (set by hand) reads as the longest time.
fn holding(found: &[Reply], asked: Option<Retry>) -> Option<Holding> {
    let owner = asked.map(|a| a.owner).unwrap_or_default();
    match found {
        [Reply::Null, Reply::Integer(_)] => Some(Holding::default()),
        [Reply::Bulk(holder), Reply::Integer(pttl)] => Some(match *pttl {
            // Gone between the two reads: free.
            -2 => Holding::default(),
            pttl => Holding {
                locked: true,
                owned_by_caller: !owner.is_empty() && *holder == *owner,
                remaining_ms: u64::try_from(pttl).unwrap_or(u64::MAX),
                waiters: 0,
            },
        }),
        _ => None,
    }
}

/// The failure of `op` for `error`.
fn failed(op: OpKind, error: StoreError) -> StoreOutcome {
    Err(StoreFailure {
        op: op.operation(),
        error,
    })
}

/// The TLS client settings: the platform's roots (and `SSL_CERT_FILE` / `SSL_CERT_DIR` when
/// set), no client certificate. Roots that cannot be read are left out (and said).
fn tls_connector() -> Result<monoio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        crate::log::write(
            crate::log::Level::Warn,
            format_args!("TLS to Redis: a root certificate could not be read: {error}"),
        );
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 || added == 0 {
        crate::log::write(
            crate::log::Level::Warn,
            format_args!("TLS to Redis: {added} root certificates usable, {ignored} not"),
        );
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
    config
        .map(|config| monoio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
        .map_err(|e| format!("TLS to Redis cannot be set up: {e}"))
}

/// A connection to `host` (`name:port` or `ip:port`), trying each address it resolves to.
/// A name is resolved on a thread of its own: the system resolver blocks, and the worker must
/// not (the caller's connect timeout bounds the wait).
async fn connect_to(host: &str) -> Result<TcpStream, String> {
    let addrs = match host.parse::<SocketAddr>() {
        Ok(addr) => vec![addr],
        Err(_) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let name = host.to_string();
            std::thread::Builder::new()
                .name("dlockd-resolve".into())
                .spawn(move || {
                    let _ = tx.send(name.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
                })
                .map_err(|e| format!("cannot resolve {host}: no thread for it: {e}"))?;
            match rx.await {
                Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
                Ok(Ok(_)) => return Err(format!("{host} resolves to no address")),
                Ok(Err(e)) => return Err(format!("cannot resolve {host}: {e}")),
                Err(_) => return Err(format!("cannot resolve {host}: the resolver stopped")),
            }
        }
    };
    let mut failures = Vec::new();
    for addr in addrs {
        match TcpStream::connect_addr(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    Err(format!("cannot connect to {host}: {}", failures.join("; ")))
}

/// Writes `commands` and reads `expected` replies (before the connection serves).
async fn exchange<S: AsyncReadRent + AsyncWriteRent>(
    stream: &mut S,
    commands: Vec<u8>,
    expected: usize,
) -> Result<Vec<Reply>, String> {
    let (written, _) = stream.write_all(commands).await;
    written.map_err(|e| format!("cannot write: {e}"))?;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut replies = Vec::new();
    while replies.len() < expected {
        match decode_range(&buf) {
            Ok(Some((frame, used))) => {
                replies.push(owned_reply(&buf, &frame));
                buf.drain(..used);
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(format!("not a Redis reply: {e:?}")),
        }
        if buf.len() > MAX_REPLY_BYTES {
            return Err("a reply too long for a handshake".into());
        }
        let len = buf.len();
        buf.reserve(READ_CHUNK);
        let (read, back) = stream.read(buf.slice_mut(len..)).await;
        buf = back.into_inner();
        match read {
            Ok(0) => return Err("the connection closed during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read: {e}")),
        }
    }
    Ok(replies)
}

/// `n` in decimal, written into `buf` (a u32 has at most 10 digits).
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// A reply, copied out of the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reply {
    Simple(Vec<u8>),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Reply>),
}

fn owned_reply(buf: &[u8], frame: &RangeFrame) -> Reply {
    let text = |r: &(usize, usize)| buf.get(r.0..r.1).unwrap_or_default().to_vec();
    match frame {
        RangeFrame::SimpleString(r) => Reply::Simple(text(r)),
        RangeFrame::Error(r) => Reply::Error(String::from_utf8_lossy(&text(r)).into_owned()),
        RangeFrame::Integer(n) => Reply::Integer(*n),
        RangeFrame::BulkString(r) => Reply::Bulk(text(r)),
        RangeFrame::Null => Reply::Null,
        RangeFrame::Array(items) => {
            Reply::Array(items.iter().map(|i| owned_reply(buf, i)).collect())
        }
    }
}

/// Commands have at most this many parts (`SET key owner EX n NX`).
const MAX_PARTS: usize = 6;

/// Appends one command (an array of bulk strings) to `out`, with no allocation besides `out`.
fn push_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    debug_assert!(parts.len() <= MAX_PARTS);
    let frames: [BorrowedFrame<'_>; MAX_PARTS] = std::array::from_fn(|i| {
        parts
            .get(i)
            .map_or(BorrowedFrame::Null, |p| BorrowedFrame::BulkString(p))
    });
    let frame = BorrowedFrame::Array(&frames[..parts.len().min(MAX_PARTS)]);
    let at = out.len();
    out.resize(at + frame.encode_len(false), 0);
    // The buffer was sized by the frame's own length: encoding cannot run out of room.
    let written = encode_borrowed(&mut out[at..], &frame, false).unwrap_or(0);
    out.truncate(at + written);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        // Protects the wire form of what is sent to Redis, expiry digits included.
        let mut digits = [0u8; 10];
        assert_eq!(decimal(0, &mut digits), b"0");
        assert_eq!(decimal(u32::MAX, &mut digits), b"4294967295");
        let mut out = Vec::new();
        let expiry = decimal(30, &mut digits);
        push_command(&mut out, &[b"SET", b"k", b"o", b"EX", expiry, b"NX"]);
        push_command(&mut out, &[b"ROLE"]);
        assert_eq!(
            out,
            b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\no\r\n$2\r\nEX\r\n$2\r\n30\r\n$2\r\nNX\r\n\
*1\r\n$4\r\nROLE\r\n"
        );
    }
}
