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
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::durable::once_durable;
use super::linger::{Drain, LINGER};
use super::pending::AwaitAnswer;
use super::reaper::{Phase, Watch};
use super::worker::{Asked, ConnGuard, Worker};
use crate::api::{answer_response, Answer, OpKind, Outcome, Response};
use crate::dispatch::{note_promise, Decision};
use crate::http::{self, Body, Connection, Frame, Framer, Limits, Request};
use crate::lease::{Key, StoreId};
use crate::metrics::{RequestOutcome, Route, WorkerMetrics};
use crate::persist::Need;

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
                        Route::of_target(target),
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
            Decision::Remote => Asked::Remote,
        };
        Step::Later {
            asked,
            kind: op.kind,
            store: op.store,
            key: Key::new(op.resource, op.owner),
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

/// An answer waiting to be written, in request order.
enum Item<'w> {
    Ready(Response, Connection),
    Later(AwaitAnswer<'w>, Connection),
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
    /// Requests answered, and the clock reading that decided them (in µs).
    answered: u64,
    since_us: Option<u64>,
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

pub(super) async fn serve<R: Respond>(guard: ConnGuard, mut stream: TcpStream) {
    let worker: &Worker = &guard.worker;
    let config = &worker.shared.config;
    let limits = Limits {
        max_header_bytes: config.max_header_bytes,
        max_body_bytes: config.max_body_bytes,
    };
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
        let pass = conn.answer_buffered::<R>().await;
        let Some(now_ms) = conn.write(&mut stream, &watch, &pass).await else {
            return;
        };
        if pass.close {
            linger(&mut stream).await;
            return;
        }
        if conn.buf.is_empty() && worker.shutting_down() {
            return;
        }
        let (phase, deadline_ms) = conn.read_deadline(now_ms);
        watch.arm(phase, deadline_ms);
        let Some(waited) = conn.read(&mut stream, max_buf).await else {
            return;
        };
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
    /// Frames and answers (or asks for the answer of) every complete request in the buffer.
    async fn answer_buffered<R: Respond>(&mut self) -> Pass {
        let mut pass = Pass::default();
        let clock = &self.worker.shared.clock;
        while pass.consumed < self.buf.len() && !pass.close {
            let view = &self.buf[pass.consumed..];
            let req = match self.framer.frame(view) {
                Err(e) => {
                    self.metrics.parse_error(e);
                    self.flush().await;
                    self.out.extend_from_slice(e.response());
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
                    let slot = self.worker.ask(asked, kind, store, key).await;
                    let c = Connection::of(req.version, pass.close);
                    let answer = self.worker.pending.answer(slot);
                    self.items.push(Item::Later(answer, c));
                }
            }
        }
        self.flush().await;
        if pass.want_continue {
            self.out.extend_from_slice(http::CONTINUE);
            self.continue_sent = true;
        }
        self.buf.drain(..pass.consumed);
        pass
    }

    /// Writes the queued answers in order, waiting for those decided elsewhere (and counting
    /// them).
    async fn flush(&mut self) {
        for item in self.items.drain(..) {
            match item {
                Item::Ready(resp, c) => write(&mut self.out, &resp, c),
                Item::Later(answer, c) => match answer.await {
                    Ok(answer) => {
                        self.metrics.answer(answer);
                        note_promise(&mut self.need, answer);
                        write(&mut self.out, &answer_response(answer), c);
                    }
                    Err(failure) => {
                        self.metrics.request(failure.outcome());
                        write(&mut self.out, &failure.response(), c);
                    }
                },
            }
        }
    }

    /// Once the data dir covers what they promise, writes the answers of one pass; returns the
    /// clock reading (ms) taken once they were ready, or `None` when the connection is done.
    async fn write(
        &mut self,
        stream: &mut TcpStream,
        watch: &Watch<'_>,
        pass: &Pass,
    ) -> Option<u64> {
        // One clock reading serves both deadlines below: a blocked write only makes the
        // following read's deadline earlier, never later. It also ends this read's latency.
        let now_us = self.worker.shared.clock.now_us();
        let now_ms = now_us / 1000;
        if let (Some(since_us), true) = (pass.since_us, pass.answered > 0) {
            self.metrics
                .latency(pass.answered, now_us.saturating_sub(since_us));
        }
        if !self.need.is_empty() {
            // A grant is acknowledged only once the data dir durably covers it.
            let durable = self.worker.shared.persist.as_ref().map(|p| p.durable());
            if !once_durable(durable.map(|d| &**d), self.need).await {
                return None;
            }
            self.need = Need::default();
        }
        if !self.out.is_empty() {
            let idle_ms = millis(self.worker.shared.config.idle_timeout);
            watch.arm(Phase::Writing, now_ms.saturating_add(idle_ms));
            let out = std::mem::take(&mut self.out);
            let (written, back) = stream.write_all(out).await;
            self.out = back;
            written.ok()?;
            self.out.clear();
            self.out.shrink_to(KEPT_CAPACITY);
        }
        // A large request grew the buffer; an idle connection keeps only a small one, so
        // memory stays proportional to the work in flight, not to the largest request seen.
        if self.buf.is_empty() {
            self.buf.shrink_to(KEPT_CAPACITY);
        }
        Some(now_ms)
    }

    /// Where this connection stands, and the deadline of its next read from `now_ms`.
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

    /// Reads more into the buffer; whether the read had to wait, or `None` at the end of the
    /// stream, an error, or a deadline or shutdown (the reaper shut the socket).
    async fn read(&mut self, stream: &mut TcpStream, max_buf: usize) -> Option<bool> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK {
            if self.buf.len() >= max_buf {
                // The framer bounds a request below this; a broken bound closes the connection.
                return None;
            }
            let more = READ_CHUNK.max(self.buf.len()).min(max_buf - self.buf.len());
            self.buf.reserve(more);
        }
        let len = self.buf.len();
        let buf = std::mem::take(&mut self.buf);
        let mut read = std::pin::pin!(stream.read(buf.slice_mut(len..)));
        let mut waited = false;
        let result = std::future::poll_fn(|cx| {
            let poll = read.as_mut().poll(cx);
            waited |= poll.is_pending();
            poll
        })
        .await;
        match result {
            (Ok(n), slice) if n > 0 => {
                self.buf = slice.into_inner();
                Some(waited)
            }
            _ => None,
        }
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

/// Half-closes and drains what the client still sends (see `linger.rs`).
async fn linger(stream: &mut TcpStream) {
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
