//! One client connection: read → frame every complete request → ask for each one's answer →
//! write all the answers for that read in one write, in request order → read again.
//!
//! The connection only frames, asks, awaits in request order and writes. What a request
//! needs is decided elsewhere, once per connection's kind ([`Respond`]): for the lock API, by
//! the api layer and the decision step (`crate::dispatch`). A request decided by this worker's
//! shard is answered at once; one whose answer comes later (another shard, a remote store)
//! takes a slot in the worker's `Pending` table and its answer is awaited in request order.
//! The in-memory path never touches that machinery.
//!
//! Bounds: the read buffer never holds more than one request at its limits plus what one
//! read brings; the answers of one read are written (and the write awaited) before the next
//! read, so a client that sends and never reads stops being read from once the socket's send
//! buffer is full. A connection whose reads complete without waiting lets the worker's other
//! tasks run after `READS_PER_TURN` of them (or one that fills its buffer), so no client holds
//! a worker to itself. Every wait has a deadline (idle, head, body, and the write itself),
//! kept by the worker's reaper rather than a timer per read.
//!
//! Counting (`crate::metrics`) reuses the clock readings the loop takes anyway: the one that
//! decides a read's requests and the one taken once their answers are ready to be written;
//! their difference is each of those requests' latency, recorded once per read.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::AsyncWriteRentExt;

use super::durable::once_durable;
use super::linger::{Drain, LINGER};
use super::pending::AwaitAnswer;
use super::reaper::Phase;
use super::socket::Stream;
use super::waits::too_many_waiters;
use super::worker::{Asked, ConnGuard, Worker};
use crate::api::{answer_response, Answer, OpKind, Outcome, Response};
use crate::dispatch::{note_promise, Decision};
use crate::http::{self, Body, Connection, Frame, Framer, Limits, Request};
use crate::lease::{Key, StoreId};
use crate::metrics::{RequestOutcome, RouteLabel, WorkerMetrics};
use crate::persist::Need;
use crate::shard::{ShardId, SlotId};
use crate::store::StoreOutcome;
use crate::task::Gone;

/// Free space asked of the read buffer before each read.
const READ_CHUNK: usize = 4096;
/// Buffer capacity an idle connection keeps between requests.
const KEPT_CAPACITY: usize = 4 * READ_CHUNK;
/// The most a closing connection drains (see `linger.rs`).
const LINGER_BYTES: usize = 256 * 1024;
/// Reads a connection may complete in a row without waiting before it lets the worker's other
/// tasks run. On the legacy driver a read of a ready socket completes at once, so a client
/// that keeps its socket full would otherwise hold the worker for as long as it sends
/// (measured: a client that pipelines without reading held a debug build's worker 1.2-1.5 s,
/// until its answers filled the socket; tests/hostile.rs). A read that fills the buffer
/// without waiting yields at once: more bytes are almost surely there. On io_uring every read
/// waits for its completion, so this never yields there.
const READS_PER_TURN: u32 = 8;

/// What one framed request needs.
pub(super) enum Step {
    /// Its answer, now.
    Ready(Response),
    /// Its answer comes later, from whoever decides the operation.
    Later {
        asked: Asked,
        kind: OpKind,
        store: StoreId,
        key: Key,
    },
    /// An acquire that waits, parked on shard `owner`; its answer comes to `slot` by `until_ms`.
    Wait {
        owner: ShardId,
        slot: SlotId,
        until_ms: u64,
    },
    /// An acquire that waits on a remote store, which it polls until `until_ms`.
    Poll {
        kind: OpKind,
        store: StoreId,
        key: Key,
        until_ms: u64,
    },
}

/// How a connection answers what it frames, chosen once at start for every connection (so no
/// request pays for the choice): [`Locks`], the Dapr lock API; or [`FixedAnswer`], for the
/// benchmarks' ceiling.
pub(super) trait Respond {
    /// What `req` (framed from `view`) needs, decided at `now_ms`. Counts its outcome, unless
    /// its answer comes later (counted then), and adds what a grant promises to `need`.
    fn respond(
        worker: &Worker,
        now_ms: u64,
        req: &Request,
        view: &[u8],
        framer: &Framer,
        need: &mut Need,
    ) -> Step;
}

/// The Dapr lock API: the api layer, then the decision step.
pub(super) enum Locks {}

impl Respond for Locks {
    #[inline]
    fn respond(
        worker: &Worker,
        now_ms: u64,
        req: &Request,
        view: &[u8],
        framer: &Framer,
        need: &mut Need,
    ) -> Step {
        let metrics = worker.metrics();
        let body = match &req.body {
            Body::Buf(range) => &view[range.clone()],
            Body::Chunked => framer.chunked_body(),
        };
        let target = &view[req.target.clone()];
        let token = req.api_token.as_ref().map(|r| &view[r.clone()]);
        let mut api = worker.api.borrow_mut();
        let op = match api.handle(req.method, target, token, body) {
            Outcome::Respond(resp) => {
                if metrics.enabled() {
                    metrics.request(RequestOutcome::of_response(
                        RouteLabel::of_target(target),
                        resp.status,
                    ));
                }
                return Step::Ready(resp);
            }
            Outcome::Lock(op) => op,
        };
        let asked = match worker.decide(now_ms, &op) {
            Decision::Answer(answer) => {
                metrics.answer(answer);
                note_promise(need, answer);
                return Step::Ready(answer_response(answer));
            }
            Decision::Forward(to) => {
                metrics.forward();
                Asked::Shard(to)
            }
            Decision::Wait(owner) => {
                let key = Key::new(op.resource, op.owner);
                return wait_step(worker, now_ms, owner, op.kind, op.store, key);
            }
            Decision::Remote => {
                if let OpKind::Acquire { wait_ms, .. } = op.kind {
                    if wait_ms > 0 {
                        let until_ms = now_ms.saturating_add(u64::from(wait_ms));
                        return Step::Poll {
                            kind: op.kind,
                            store: op.store,
                            key: Key::new(op.resource, op.owner),
                            until_ms,
                        };
                    }
                }
                Asked::Remote
            }
        };
        Step::Later {
            asked,
            kind: op.kind,
            store: op.store,
            key: Key::new(op.resource, op.owner),
        }
    }
}

/// An acquire that waits: parked with the shard `owner` (or refused, over `--max-waiters`).
#[cold]
#[inline(never)]
fn wait_step(
    worker: &Worker,
    now_ms: u64,
    owner: ShardId,
    kind: OpKind,
    store: StoreId,
    key: Key,
) -> Step {
    let wait_ms = match kind {
        OpKind::Acquire { wait_ms, .. } => u64::from(wait_ms),
        _ => 0,
    };
    match worker.wait(now_ms, owner, kind, store, key) {
        Some(slot) => Step::Wait {
            owner,
            slot,
            until_ms: now_ms.saturating_add(wait_ms),
        },
        None => {
            let failure = too_many_waiters(worker);
            worker.metrics().request(failure.outcome());
            Step::Ready(failure.response())
        }
    }
}

/// Every framed request answered `{"success":true}`, without routing, decoding or locking: the
/// runtime and HTTP layer alone, for the benchmarks.
pub(super) enum FixedAnswer {}

impl Respond for FixedAnswer {
    #[inline]
    fn respond(worker: &Worker, _: u64, _: &Request, _: &[u8], _: &Framer, _: &mut Need) -> Step {
        worker.metrics().request(RequestOutcome::Other2xx);
        Step::Ready(answer_response(Answer::TryLock(Ok(true))))
    }
}

/// How a flush of the queued answers ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flushed {
    Written,
    /// Written, and the connection closes after them (shutdown began while they waited).
    Closing,
    /// The client went while an acquire waited: nothing more is written.
    ClientGone,
}

/// An answer waiting to be written, in request order.
enum Item<'w> {
    Ready(Response, Connection),
    /// Decided elsewhere, not yet asked: asked once the pass's framing is done (taken then).
    Ask(Option<Ask>, Connection),
    /// Asked; its answer awaited.
    Later(AwaitAnswer<'w>, Connection),
    /// An acquire waiting on shard `.1` in slot `.2`; its answer awaited while the client is
    /// there.
    Wait(AwaitAnswer<'w>, ShardId, SlotId, Connection),
    /// An acquire polling a remote store, while the client is there; the flag tells the polls
    /// when it has left.
    Poll(Polling<'w>, Rc<Gone>, Connection),
}

/// An acquire's polls of a remote store (`Worker::settle`).
type Polling<'w> = std::pin::Pin<Box<dyn Future<Output = StoreOutcome> + 'w>>;

/// An operation to ask of whoever decides it.
struct Ask {
    asked: Asked,
    kind: OpKind,
    store: StoreId,
    key: Key,
}

/// What one pass over the read buffer found.
#[derive(Default)]
struct Pass {
    /// Bytes of the buffer framed (and answered).
    consumed: usize,
    /// The connection closes after these answers.
    close: bool,
    /// A head asked for `100 Continue` and has not had it.
    want_continue: bool,
    /// The framing error that ends the connection, answered after the answers before it.
    error: Option<http::HttpError>,
    /// Some answers come from elsewhere and are not asked yet.
    asks: bool,
    /// Requests answered, and the clock reading that decided them (in µs).
    answered: u64,
    since_us: Option<u64>,
    /// The latest tick by which an acquire of this pass stops waiting.
    wait_until_ms: Option<u64>,
}

/// A connection's state between reads.
struct Conn<'w> {
    worker: &'w Worker,
    metrics: &'w WorkerMetrics,
    framer: Framer,
    buf: Vec<u8>,
    out: Vec<u8>,
    items: Vec<Item<'w>>,
    /// When the request at the front of `buf` began to arrive, and when its head completed.
    request_since_ms: Option<u64>,
    head_since_ms: Option<u64>,
    continue_sent: bool,
    /// What the answers about to be written promise (grants with fencing tokens).
    need: Need,
}

/// Serves one connection until it closes. One async function holds the whole loop, and its
/// steps are plain functions: on the hot path (one read, its requests answered here, one
/// write) nothing is a future of its own but the socket's read and write. It is longer than
/// the rest of the file's functions on purpose: split into async methods, each a future of
/// its own, the loop cost the fixed-answer ceiling 3,401 instructions a request at depth 1
/// against 3,128 in one piece (callgrind, 1 worker, 64 connections).
pub(super) async fn serve<R: Respond, S: Stream>(guard: ConnGuard, mut stream: S) {
    let worker: &Worker = &guard.worker;
    let config = &worker.shared.config;
    let limits = Limits {
        max_header_bytes: config.max_header_bytes,
        max_body_bytes: config.max_body_bytes,
    };
    let idle_ms = millis(config.idle_timeout);
    // Dropped before the stream (locals drop before parameters), as the reaper requires.
    let watch = worker.reaper.watch(stream.as_raw_fd());
    let mut conn = Conn {
        worker,
        metrics: worker.metrics(),
        framer: Framer::new(limits),
        buf: Vec::with_capacity(READ_CHUNK),
        out: Vec::with_capacity(READ_CHUNK),
        items: Vec::new(),
        request_since_ms: None,
        head_since_ms: None,
        continue_sent: false,
        need: Need::default(),
    };
    // The framer never asks for more than one maximal request.
    let max_buf = limits.max_request_bytes() + READ_CHUNK;
    let mut reads_in_turn = 0u32;
    loop {
        let pass = conn.frame_buffered::<R>();
        if pass.asks {
            conn.ask_all().await;
        }
        if let Some(until_ms) = pass.wait_until_ms {
            // Not idle while a wait lasts (shutdown answers waiters, it does not cut them);
            // an answer that has not come well after the wait's end closes the connection.
            watch.arm(Phase::Waiting, until_ms.saturating_add(idle_ms));
        }
        let mut close = pass.close;
        if !conn.items.is_empty() {
            match conn.flush(&stream).await {
                Flushed::Written => {}
                Flushed::Closing => close = true,
                Flushed::ClientGone => return,
            }
        }
        conn.end_pass(&pass);
        // One clock reading serves both deadlines below: a blocked write only makes the
        // following read's deadline earlier, never later. It also ends this read's latency.
        let now_ms = conn.answered_at(&pass);
        // A grant is acknowledged only once the data dir durably covers it.
        if !conn.need.is_empty() {
            let durable = worker.shared.persist.as_ref().map(|p| &**p.durable());
            if !once_durable(durable, conn.need).await {
                return;
            }
            conn.need = Need::default();
        }
        if !conn.out.is_empty() {
            watch.arm(Phase::Writing, now_ms.saturating_add(idle_ms));
            let (written, back) = stream.write_all(std::mem::take(&mut conn.out)).await;
            conn.out = back;
            if written.is_err() {
                return;
            }
            conn.out.clear();
            conn.out.shrink_to(KEPT_CAPACITY);
        }
        if close {
            linger(&mut stream).await;
            return;
        }
        if conn.buf.is_empty() {
            if worker.shutting_down() {
                return;
            }
            // A large request grew the buffer; an idle connection keeps only a small one, so
            // memory stays proportional to the work in flight, not to the largest request.
            conn.buf.shrink_to(KEPT_CAPACITY);
        }

        // Read more, within the deadline of where this connection stands.
        let (phase, deadline_ms) = conn.read_deadline(now_ms);
        watch.arm(phase, deadline_ms);
        if !conn.make_room(max_buf) {
            return;
        }
        let len = conn.buf.len();
        let (result, waited) = {
            let mut read =
                std::pin::pin!(stream.read(std::mem::take(&mut conn.buf).slice_mut(len..)));
            let mut waited = false;
            let result = std::future::poll_fn(|cx| {
                let poll = read.as_mut().poll(cx);
                waited |= poll.is_pending();
                poll
            })
            .await;
            (result, waited)
        };
        match result {
            (Ok(n), slice) if n > 0 => conn.buf = slice.into_inner(),
            // End of stream, an error, or the reaper shut the socket (deadline or shutdown).
            _ => return,
        }
        // A read that had to wait let the worker's other tasks run (on io_uring every read
        // does); one that did not, did not.
        if waited {
            reads_in_turn = 0;
        } else {
            reads_in_turn += 1;
            if conn.buf.len() == conn.buf.capacity() || reads_in_turn >= READS_PER_TURN {
                reads_in_turn = 0;
                worker.yields.now().await;
            }
        }
    }
}

impl<'w> Conn<'w> {
    /// Frames every complete request in the buffer and answers those decided here; those
    /// decided elsewhere are queued to be asked, in request order.
    #[inline]
    fn frame_buffered<R: Respond>(&mut self) -> Pass {
        let mut pass = Pass::default();
        let clock = &self.worker.shared.clock;
        while pass.consumed < self.buf.len() && !pass.close {
            let view = &self.buf[pass.consumed..];
            let req = match self.framer.frame(view) {
                Err(e) => {
                    self.metrics.parse_error(e);
                    pass.error = Some(e);
                    pass.close = true;
                    break;
                }
                Ok(Frame::Partial {
                    head_complete,
                    expect_continue,
                }) => {
                    if head_complete && self.head_since_ms.is_none() {
                        self.head_since_ms = Some(clock.now_ms());
                    }
                    pass.want_continue = head_complete && expect_continue && !self.continue_sent;
                    break;
                }
                Ok(Frame::Complete(req)) => req,
            };
            // One clock reading decides every request of this read: all of them were sent
            // before the read completed, so it is late enough for each (see
            // `crate::dispatch`). It is also where their latency starts.
            let now_us = *pass.since_us.get_or_insert_with(|| clock.now_us());
            pass.answered += 1;
            let step = R::respond(
                self.worker,
                now_us / 1000,
                &req,
                view,
                &self.framer,
                &mut self.need,
            );
            let closes = !req.keep_alive || self.worker.shutting_down();
            pass.consumed += req.consumed;
            self.request_since_ms = None;
            self.head_since_ms = None;
            self.continue_sent = false;
            match step {
                Step::Ready(resp) => {
                    pass.close = closes || resp.close;
                    let c = Connection::of(req.version, pass.close);
                    if self.items.is_empty() {
                        write(&mut self.out, &resp, c);
                    } else {
                        self.items.push(Item::Ready(resp, c));
                    }
                }
                Step::Later {
                    asked,
                    kind,
                    store,
                    key,
                } => {
                    pass.close = closes;
                    pass.asks = true;
                    let c = Connection::of(req.version, pass.close);
                    let ask = Ask {
                        asked,
                        kind,
                        store,
                        key,
                    };
                    self.items.push(Item::Ask(Some(ask), c));
                }
                Step::Wait {
                    owner,
                    slot,
                    until_ms,
                } => {
                    pass.close = closes;
                    pass.wait_until_ms = pass.wait_until_ms.max(Some(until_ms));
                    let c = Connection::of(req.version, pass.close);
                    let answer = self.worker.pending.answer(slot);
                    self.items.push(Item::Wait(answer, owner, slot, c));
                }
                Step::Poll {
                    kind,
                    store,
                    key,
                    until_ms,
                } => {
                    pass.close = closes;
                    pass.wait_until_ms = pass.wait_until_ms.max(Some(until_ms));
                    let c = Connection::of(req.version, pass.close);
                    let gone = Rc::new(Gone::default());
                    let polls = self
                        .worker
                        .settle(Asked::Remote, kind, store, key, gone.clone());
                    self.items.push(Item::Poll(Box::pin(polls), gone, c));
                }
            }
        }
        pass
    }

    /// Asks, in request order, for the answers decided elsewhere (before any is awaited, so
    /// that they are decided together).
    async fn ask_all(&mut self) {
        for item in self.items.iter_mut() {
            if let Item::Ask(ask, c) = item {
                if let Some(Ask {
                    asked,
                    kind,
                    store,
                    key,
                }) = ask.take()
                {
                    let slot = self.worker.ask(asked, kind, store, key).await;
                    *item = Item::Later(self.worker.pending.answer(slot), *c);
                }
            }
        }
    }

    /// Writes the queued answers in order, waiting for those decided elsewhere (and counting
    /// them). If the client goes while an acquire waits, every wait still queued is cancelled
    /// and nothing is written. A wait that ends once shutdown began closes the connection
    /// after its answer, which says so.
    async fn flush<S: Stream>(&mut self, stream: &S) -> Flushed {
        let mut flushed = Flushed::Written;
        let mut items = std::mem::take(&mut self.items).into_iter();
        while let Some(item) = items.next() {
            let (outcome, mut c) = match item {
                Item::Ready(resp, c) => {
                    write(&mut self.out, &resp, c);
                    continue;
                }
                Item::Later(answer, c) => (answer.await, c),
                Item::Wait(answer, owner, slot, c) => match unless_gone(answer, stream).await {
                    Some(outcome) => (outcome, c),
                    None => {
                        self.worker.cancel_wait(owner, slot);
                        self.abandon(items).await;
                        return Flushed::ClientGone;
                    }
                },
                Item::Poll(mut polls, gone, c) => match unless_gone(polls.as_mut(), stream).await {
                    Some(outcome) => (outcome, c),
                    None => {
                        gone.set();
                        let _ = polls.await;
                        self.abandon(items).await;
                        return Flushed::ClientGone;
                    }
                },
                // `ask_all` asked every one.
                Item::Ask(..) => continue,
            };
            if flushed == Flushed::Closing || self.worker.shared.stopping() {
                // This answer and the ones after it say the connection closes.
                flushed = Flushed::Closing;
                c = Connection::Close;
            }
            match outcome {
                Ok(answer) => {
                    self.metrics.answer(answer);
                    note_promise(&mut self.need, answer);
                    write(&mut self.out, &answer_response(answer), c);
                }
                Err(failure) => {
                    self.metrics.request(failure.outcome());
                    write(&mut self.out, &failure.response(), c);
                }
            }
        }
        flushed
    }

    /// The client went: the waits among `items` leave their queues, and their polls of a
    /// remote store stop (each awaited until the try it has in flight is answered).
    async fn abandon(&self, items: impl Iterator<Item = Item<'w>>) {
        for item in items {
            match item {
                Item::Wait(_, owner, slot, _) => self.worker.cancel_wait(owner, slot),
                // Told, a poll stops and unlocks what a try in flight is granted.
                Item::Poll(polls, gone, _) => {
                    gone.set();
                    let _ = polls.await;
                }
                Item::Ready(..) | Item::Ask(..) | Item::Later(..) => {}
            }
        }
    }

    /// After the answers of a pass: the framing error's answer, a `100 Continue`, and the
    /// buffer's framed bytes dropped.
    #[inline]
    fn end_pass(&mut self, pass: &Pass) {
        if let Some(e) = pass.error {
            self.out.extend_from_slice(e.response());
        }
        if pass.want_continue {
            self.out.extend_from_slice(http::CONTINUE);
            self.continue_sent = true;
        }
        self.buf.drain(..pass.consumed);
    }

    /// The clock reading (ms) once a pass's answers are ready, which ends their latency.
    #[inline]
    fn answered_at(&self, pass: &Pass) -> u64 {
        let now_us = self.worker.shared.clock.now_us();
        if let (Some(since_us), true) = (pass.since_us, pass.answered > 0) {
            self.metrics
                .latency(pass.answered, now_us.saturating_sub(since_us));
        }
        now_us / 1000
    }

    /// Where this connection stands, and the deadline of its next read from `now_ms`.
    #[inline]
    fn read_deadline(&mut self, now_ms: u64) -> (Phase, u64) {
        let config = &self.worker.shared.config;
        if self.buf.is_empty() {
            (
                Phase::Idle,
                now_ms.saturating_add(millis(config.idle_timeout)),
            )
        } else if let Some(t) = self.head_since_ms {
            (
                Phase::Reading,
                t.saturating_add(millis(config.body_timeout)),
            )
        } else {
            let since = *self.request_since_ms.get_or_insert(now_ms);
            (
                Phase::Reading,
                since.saturating_add(millis(config.header_timeout)),
            )
        }
    }

    /// Room for the next read; false if the buffer already holds more than any request may
    /// (the framer bounds a request below that; a broken bound closes the connection).
    #[inline]
    fn make_room(&mut self, max_buf: usize) -> bool {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK {
            if self.buf.len() >= max_buf {
                return false;
            }
            let more = READ_CHUNK.max(self.buf.len()).min(max_buf - self.buf.len());
            self.buf.reserve(more);
        }
        true
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[inline]
fn write(out: &mut Vec<u8>, resp: &Response, c: Connection) {
    http::write_response_with(
        out,
        resp.status,
        resp.content_type,
        resp.body(),
        c,
        resp.fence.map(|token| (Response::FENCE_HEADER, token)),
    );
}

/// A wait's answer, or `None` if the client went first (end of stream or a reset; also the
/// reaper's shut once the wait is long overdue). Bytes the client sends meanwhile (the next
/// request, pipelined) are left for the next read, and the watch ends: the answer is awaited
/// alone from then on.
async fn unless_gone<F, S>(answer: F, stream: &S) -> Option<StoreOutcome>
where
    F: Future<Output = StoreOutcome>,
    S: Stream,
{
    let mut answer = std::pin::pin!(answer);
    let gone = async {
        loop {
            if stream.readable().await.is_err() {
                return true;
            }
            match peek(stream) {
                Peeked::Gone => return true,
                Peeked::Data => return false,
                Peeked::Nothing => {}
            }
        }
    };
    let mut gone = std::pin::pin!(gone);
    let mut watching = true;
    std::future::poll_fn(|cx| {
        // The answer first: one that came is written even if the client left meanwhile.
        if let std::task::Poll::Ready(outcome) = answer.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(outcome));
        }
        if watching {
            if let std::task::Poll::Ready(went) = gone.as_mut().poll(cx) {
                if went {
                    return std::task::Poll::Ready(None);
                }
                watching = false;
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// What a look at a socket's receive queue found.
enum Peeked {
    /// End of stream, or an error: the client is gone.
    Gone,
    /// Bytes to read.
    Data,
    /// Nothing yet (a readiness that was not).
    Nothing,
}

/// Looks at the socket's receive queue without taking anything from it, and without blocking
/// (on io_uring the socket is in blocking mode).
#[allow(unsafe_code)]
fn peek<S: AsRawFd>(stream: &S) -> Peeked {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    // SAFETY: the descriptor is `stream`'s, open for as long as `stream` is borrowed, which
    // outlives `fd` (dropped at the end of this function, without closing anything).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let socket = socket2::SockRef::from(&fd);
    match socket.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(0) => Peeked::Gone,
        Ok(_) => Peeked::Data,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Peeked::Nothing,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Peeked::Nothing,
        Err(_) => Peeked::Gone,
    }
}

/// Half-closes and drains what the client still sends (see `linger.rs`).
async fn linger<S: Stream>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let mut drain = Drain::new(LINGER, LINGER_BYTES);
    let mut scratch = vec![0u8; READ_CHUNK];
    while let Some(left) = drain.time_left() {
        match monoio::time::timeout(left, stream.read(scratch)).await {
            Ok((Ok(n), back)) if drain.drained(n) => scratch = back,
            _ => return,
        }
    }
}
