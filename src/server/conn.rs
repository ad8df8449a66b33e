//! One client connection: read → frame every complete request → decide or forward each →
//! write all the answers for that read in one write, in request order → read again.
//!
//! The seam for stores: a request decided by this worker's shard is answered at once; one
//! whose answer comes later (another shard today, a remote store such as Redis tomorrow)
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
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::os::fd::AsRawFd;

use super::pending::Reply;
use super::reaper::Phase;
use super::worker::{ConnGuard, Worker};
use crate::api::{answer_response, Answer, OpKind, Outcome, Response};
use crate::http::{self, Body, Connection, Frame, Framer, Limits, Request, Version};
use crate::lease::{Key, StoreId};
use crate::metrics::{RequestOutcome, Route, WorkerMetrics};
use crate::persist::{Durable, Need};
use crate::shard::ShardId;
use crate::store::redis::{RedisClient, RedisOp};
use std::rc::Rc;

/// Free space asked of the read buffer before each read.
const READ_CHUNK: usize = 4096;
/// Buffer capacity an idle connection keeps between requests.
const KEPT_CAPACITY: usize = 4 * READ_CHUNK;
/// After answering a request that closes the connection, unread input is drained this long
/// (and at most `LINGER_BYTES`), so the kernel does not reset the connection and destroy the
/// answer before the client reads it (what Go's net/http does too).
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;
/// Reads a connection may complete in a row without waiting before it lets the worker's other
/// tasks run. On the legacy driver a read of a ready socket completes at once, so a client
/// that keeps its socket full would otherwise hold the worker for as long as it sends
/// (measured: a client that pipelines without reading held a debug build's worker 1.2-1.5 s,
/// until its answers filled the socket; tests/hostile.rs). A read that fills the buffer
/// without waiting yields at once: more bytes are almost surely there. On io_uring every read
/// waits for its completion, so this never yields there.
const READS_PER_TURN: u32 = 8;

/// An answer waiting to be written, in request order.
enum Item<'w> {
    Ready(Response, Connection),
    Remote(Reply<'w>, Connection),
}

/// What one request needs after the api and the local shard have seen it.
enum Decision {
    Ready(Response),
    Forward {
        to: ShardId,
        kind: OpKind,
        store: StoreId,
        key: Key,
    },
    /// For a store on Redis.
    Redis {
        client: Rc<RedisClient>,
        op: RedisOp,
        key: Key,
    },
}

pub(super) async fn serve(guard: ConnGuard, mut stream: TcpStream) {
    let worker: &Worker = &guard.worker;
    let config = &worker.shared.config;
    let clock = &worker.shared.clock;
    let metrics = worker.metrics();
    let limits = Limits {
        max_header_bytes: config.max_header_bytes,
        max_body_bytes: config.max_body_bytes,
    };
    let idle_ms = millis(config.idle_timeout);
    let header_ms = millis(config.header_timeout);
    let body_ms = millis(config.body_timeout);
    // Dropped before the stream (locals drop before parameters), as the reaper requires.
    let watch = worker.reaper.watch(stream.as_raw_fd());
    // The framer never asks for more than one maximal request.
    let max_buf = limits.max_request_bytes() + READ_CHUNK;
    let mut framer = Framer::new(limits);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut items: Vec<Item<'_>> = Vec::new();
    // When the request at the front of `buf` began to arrive, and when its head completed.
    let mut request_since_ms: Option<u64> = None;
    let mut head_since_ms: Option<u64> = None;
    let mut continue_sent = false;
    let mut reads_in_turn = 0u32;
    // What the answers about to be written promise (grants with fencing tokens), and what
    // promises are durable (`--data-dir` only).
    let mut need = Need::default();
    let durable = worker.shared.persist.as_ref().map(|p| p.durable().clone());

    loop {
        // Frame and decide every complete request in the buffer.
        let mut offset = 0;
        let mut close = false;
        let mut want_continue = false;
        // One clock reading decides every request of this read: all of them were sent before
        // the read completed, so it is late enough for each (see `Worker::execute`). It is
        // also where their latency starts.
        let mut batch_now_us: Option<u64> = None;
        let mut answered = 0u64;
        while offset < buf.len() && !close {
            let view = &buf[offset..];
            match framer.frame(view) {
                Err(e) => {
                    metrics.parse_error(e);
                    flush_items(metrics, &mut items, &mut out, &mut need).await;
                    out.extend_from_slice(e.response());
                    close = true;
                }
                Ok(Frame::Partial {
                    head_complete,
                    expect_continue,
                }) => {
                    if head_complete && head_since_ms.is_none() {
                        head_since_ms = Some(clock.now_ms());
                    }
                    want_continue = head_complete && expect_continue && !continue_sent;
                    break;
                }
                Ok(Frame::Complete(req)) => {
                    let now_us = *batch_now_us.get_or_insert_with(|| clock.now_us());
                    let now_ms = now_us / 1000;
                    answered += 1;
                    let decision = decide(worker, metrics, now_ms, &req, view, &framer, &mut need);
                    let closes = !req.keep_alive || worker.shutting_down();
                    offset += req.consumed;
                    request_since_ms = None;
                    head_since_ms = None;
                    continue_sent = false;
                    match decision {
                        Decision::Ready(resp) => {
                            close = closes || resp.close;
                            let c = connection(req.version, close);
                            if items.is_empty() {
                                write(&mut out, &resp, c);
                            } else {
                                items.push(Item::Ready(resp, c));
                            }
                        }
                        Decision::Forward {
                            to,
                            kind,
                            store,
                            key,
                        } => {
                            close = closes;
                            let slot = worker.forward(to, kind, store, key).await;
                            let c = connection(req.version, close);
                            items.push(Item::Remote(worker.pending.reply(slot), c));
                        }
                        Decision::Redis { client, op, key } => {
                            close = closes;
                            let slot = worker.pending.reserve().await;
                            let (resource, owner) = key.split();
                            client.submit(worker, slot, op, resource, owner);
                            let c = connection(req.version, close);
                            items.push(Item::Remote(worker.pending.reply(slot), c));
                        }
                    }
                }
            }
        }
        flush_items(metrics, &mut items, &mut out, &mut need).await;
        if want_continue {
            out.extend_from_slice(http::CONTINUE);
            continue_sent = true;
        }
        buf.drain(..offset);
        // One clock reading serves both deadlines below: a blocked write only makes the
        // following read's deadline earlier, never later. It also ends this read's latency.
        let now_us = clock.now_us();
        let now_ms = now_us / 1000;
        if let (Some(since_us), true) = (batch_now_us, answered > 0) {
            metrics.latency(answered, now_us.saturating_sub(since_us));
        }
        if !need.is_empty() {
            // A grant is acknowledged only once the data dir durably covers it.
            if let Some(durable) = &durable {
                if !durable.covers(need) && !await_durable(durable, need).await {
                    return;
                }
            }
            need = Need::default();
        }
        if !out.is_empty() {
            watch.arm(Phase::Writing, now_ms.saturating_add(idle_ms));
            let (written, back) = stream.write_all(out).await;
            out = back;
            if written.is_err() {
                return;
            }
            out.clear();
            out.shrink_to(KEPT_CAPACITY);
        }
        if close {
            linger(&mut stream).await;
            return;
        }
        // A large request grew the buffer; an idle connection keeps only a small one, so
        // memory stays proportional to the work in flight, not to the largest request seen.
        if buf.is_empty() {
            if worker.shutting_down() {
                return;
            }
            buf.shrink_to(KEPT_CAPACITY);
        }

        // Read more, within the deadline of where this connection stands.
        let (phase, deadline_ms) = if buf.is_empty() {
            (Phase::Idle, now_ms.saturating_add(idle_ms))
        } else if let Some(t) = head_since_ms {
            (Phase::Reading, t.saturating_add(body_ms))
        } else {
            let since = *request_since_ms.get_or_insert(now_ms);
            (Phase::Reading, since.saturating_add(header_ms))
        };
        watch.arm(phase, deadline_ms);
        if buf.capacity() - buf.len() < READ_CHUNK {
            if buf.len() >= max_buf {
                // The framer bounds a request below this; a broken bound closes the connection.
                return;
            }
            buf.reserve(READ_CHUNK.max(buf.len()).min(max_buf - buf.len()));
        }
        let len = buf.len();
        let (result, waited) = {
            let mut read = std::pin::pin!(stream.read(buf.slice_mut(len..)));
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
            (Ok(n), slice) if n > 0 => buf = slice.into_inner(),
            // End of stream, an error, or the reaper shut the socket (deadline or shutdown).
            _ => return,
        }
        // A read that had to wait let the worker's other tasks run (on io_uring every read
        // does); one that did not, did not.
        if waited {
            reads_in_turn = 0;
        } else {
            reads_in_turn += 1;
            if buf.len() == buf.capacity() || reads_in_turn >= READS_PER_TURN {
                reads_in_turn = 0;
                worker.yields.now().await;
            }
        }
    }
}

/// How long an answer waits for the data dir to promise its grants before the connection is
/// closed unanswered (the grants then simply expire): the disk has failed for that long.
const DURABLE_WAIT_LIMIT: Duration = Duration::from_secs(10);
/// How often a waiting answer looks again.
const DURABLE_POLL: Duration = Duration::from_millis(1);

/// Waits until `durable` covers `need`; false if it did not within [`DURABLE_WAIT_LIMIT`].
/// Rare: the persister keeps the promise ahead of a steady load.
#[cold]
pub(super) async fn await_durable(durable: &Durable, need: Need) -> bool {
    let deadline = Instant::now() + DURABLE_WAIT_LIMIT;
    while Instant::now() < deadline {
        monoio::time::sleep(DURABLE_POLL).await;
        if durable.covers(need) {
            return true;
        }
    }
    false
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Routes and validates one framed request and, when its key lives here, decides it. Counts
/// its outcome, unless another shard decides it (counted when its answer comes back).
fn decide(
    worker: &Worker,
    metrics: &WorkerMetrics,
    now_ms: u64,
    req: &Request,
    view: &[u8],
    framer: &Framer,
    need: &mut Need,
) -> Decision {
    if worker.shared.config.fixed_answer {
        metrics.request(RequestOutcome::Other2xx);
        return Decision::Ready(answer_response(Answer::TryLock(Ok(true))));
    }
    let body = match &req.body {
        Body::Buf(range) => &view[range.clone()],
        Body::Chunked => framer.chunked_body(),
    };
    let target = &view[req.target.clone()];
    let token = req.api_token.as_ref().map(|r| &view[r.clone()]);
    let mut api = worker.api.borrow_mut();
    match api.handle(req.method, target, token, body) {
        Outcome::Respond(resp) => {
            if metrics.enabled() {
                metrics.request(RequestOutcome::of_response(
                    Route::of_target(target),
                    resp.status,
                ));
            }
            Decision::Ready(resp)
        }
        Outcome::Lock(op) => {
            if worker.has_redis {
                if let Some(Some(client)) = worker.redis.get(usize::from(op.store.0)) {
                    return Decision::Redis {
                        client: client.clone(),
                        op: match op.kind {
                            OpKind::TryLock { expiry_s } => RedisOp::TryLock { expiry_s },
                            OpKind::Unlock => RedisOp::Unlock,
                        },
                        key: Key::new(op.resource, op.owner),
                    };
                }
            }
            let shard = worker.router.shard_of(op.store, op.resource);
            if shard == worker.id {
                let answer = worker.execute(now_ms, op.kind, op.store, op.resource, op.owner);
                metrics.answer(answer);
                note_grant(need, answer);
                Decision::Ready(answer_response(answer))
            } else {
                metrics.forward();
                Decision::Forward {
                    to: shard,
                    kind: op.kind,
                    store: op.store,
                    key: Key::new(op.resource, op.owner),
                }
            }
        }
    }
}

/// Adds a fenced grant's promise to what the answers being written need.
#[inline]
fn note_grant(need: &mut Need, answer: Answer) {
    if let Answer::Granted {
        token,
        last_live_ms,
    } = answer
    {
        need.add(last_live_ms, token);
    }
}

/// Writes the queued answers in order, waiting for forwarded ones (and counting them).
async fn flush_items(
    metrics: &WorkerMetrics,
    items: &mut Vec<Item<'_>>,
    out: &mut Vec<u8>,
    need: &mut Need,
) {
    for item in items.drain(..) {
        match item {
            Item::Ready(resp, c) => write(out, &resp, c),
            Item::Remote(reply, c) => match reply.await {
                Ok(answer) => {
                    metrics.answer(answer);
                    note_grant(need, answer);
                    write(out, &answer_response(answer), c);
                }
                Err(failure) => {
                    metrics.request(failure.outcome());
                    write(out, &failure.response(), c);
                }
            },
        }
    }
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

fn connection(version: Version, close: bool) -> Connection {
    match (close, version) {
        (true, _) => Connection::Close,
        (false, Version::Http10) => Connection::KeepAlive10,
        (false, Version::Http11) => Connection::KeepAlive11,
    }
}

/// Half-closes and drains what the client still sends, briefly, so the answer just written
/// is not destroyed by a reset.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, stream.read(scratch)).await {
            Ok((Ok(n), back)) if n > 0 => {
                drained += n;
                scratch = back;
            }
            _ => return,
        }
    }
}
