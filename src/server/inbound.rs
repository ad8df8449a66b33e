//! A worker's inbox, served: requests forwarded by other workers (decided on this shard and
//! answered through the outbox), answers to this worker's own forwards (delivered to their
//! pending slots), connections handed over by another worker, and the questions of the gRPC
//! and admin threads.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::accept::take_on;
use super::durable::{covered, once_durable};
use super::worker::{Asked, ConnGuard, Worker};
use tokio::sync::oneshot;

use super::waits::too_many_waiters;
use crate::api::{Answer, LockOp};
use crate::dispatch::{note_promise, Decision};
use crate::persist::Need;
use crate::shard::{Answered, Forward, Holder, HolderQuery, Mail, RemoteLock, ShardId, SlotId};
use crate::store::StoreOutcome;
use crate::task::Gone;

/// Forwarded requests answered before the mail task lets connections run.
const MAIL_BATCH: usize = 1024;

/// Answers requests forwarded by other workers and delivers replies to this worker's
/// connections. Runs until the whole process has no connection left after shutdown began,
/// because until then another worker may still forward a request here.
pub(super) async fn mail_loop(worker: Rc<Worker>) {
    let inbox = &worker.shared.inboxes[worker.id.0];
    loop {
        inbox.wait().await;
        let mut served = 0;
        while let Some(mut batch) = inbox.try_recv_requests() {
            // Read after the batch was taken, so after each of its requests was sent.
            let now_ms = worker.shared.clock.now_ms();
            served += batch.len();
            for mail in batch.drain(..) {
                match mail {
                    Mail::Lock(forward) => answer_forward(&worker, now_ms, forward),
                    Mail::Acquire(forward) => worker.park_forwarded(now_ms, forward),
                    Mail::WaitOver(over) => worker.wait_over(now_ms, over),
                    Mail::CancelWait(reply) => worker.cancel_forwarded(reply),
                    Mail::Release { store, key } => worker.release(now_ms, store, key),
                    Mail::Holder(query) => answer_holder(&worker, query),
                    Mail::Remote(lock) => serve_remote(&worker, lock),
                    Mail::Conn(stream) => {
                        take_on(&worker, stream, ConnGuard::new(worker.clone()));
                    }
                }
            }
            worker.outbox.spare_requests(batch);
            if served >= MAIL_BATCH {
                served = 0;
                worker.yields.now().await;
            }
        }
        while let Some(mut batch) = inbox.try_recv_replies() {
            for reply in batch.drain(..) {
                worker.pending.complete(reply.slot, reply.answer);
            }
            worker.outbox.spare_replies(batch);
        }
        if worker.shared.closing_waits.load(Ordering::SeqCst) && !worker.waits_closed.replace(true)
        {
            // Every waiter is answered before the drain ends; nothing waits from now on.
            worker.shard.borrow_mut().close_waiting();
            worker.deliver_waits();
            for remote in worker.remotes.iter().flatten() {
                remote.end_waits();
            }
        }
        if worker.shared.shutting_down.load(Ordering::SeqCst) {
            worker.shutdown.fire();
            if worker.shared.connections.load(Ordering::SeqCst) == 0 {
                return;
            }
        }
    }
}

/// Decides a request another worker forwarded here and queues its answer back.
#[inline]
fn answer_forward(worker: &Worker, now_ms: u64, forward: Forward) {
    let (resource, owner) = forward.key.split();
    let answer = worker.execute(now_ms, forward.kind, forward.store, resource, owner);
    worker.outbox.reply(
        forward.from,
        Answered {
            slot: forward.slot,
            answer,
        },
    );
}

/// Decides a request from the gRPC thread with the same step an HTTP connection takes, and
/// answers it on its channel: at once (once the data dir covers a grant), or when whoever
/// decides it answers.
fn serve_remote(worker: &Rc<Worker>, lock: RemoteLock) {
    let RemoteLock {
        kind,
        store,
        key,
        mut answer,
    } = lock;
    let (resource, owner) = key.split();
    let op = LockOp {
        kind,
        store,
        resource,
        owner,
    };
    let now_ms = worker.shared.clock.now_ms();
    let asked = match worker.decide(now_ms, &op) {
        Decision::Answer(decided) => {
            worker.metrics().answer(decided);
            send_durable(worker, decided, answer);
            return;
        }
        Decision::Wait(to) => {
            match worker.wait(now_ms, to, kind, store, key) {
                Some(slot) => monoio::spawn(wait_remote(worker.clone(), to, slot, answer)),
                None => {
                    let _ = answer.send(Err(too_many_waiters(worker)));
                    return;
                }
            };
            return;
        }
        Decision::Forward(to) => Asked::Shard(to),
        Decision::Remote => Asked::Remote,
    };
    let worker = worker.clone();
    monoio::spawn(async move {
        // A caller that goes stops an acquire's polls of a remote store, which unlock what a
        // try in flight then is granted.
        let gone = Rc::new(Gone::default());
        let settling = worker.settle(asked, kind, store, key, gone.clone());
        let mut settling = std::pin::pin!(settling);
        let settled = monoio::select! {
            outcome = &mut settling => Some(outcome),
            _ = answer.closed() => None,
        };
        let Some(outcome) = settled else {
            gone.set();
            let _ = settling.await;
            return;
        };
        match &outcome {
            Ok(decided) => worker.metrics().answer(*decided),
            Err(failure) => worker.metrics().request(failure.outcome()),
        }
        let _ = answer.send(outcome);
    });
}

/// Sends a decision to the gRPC thread: at once, or for a grant with a fencing token once the
/// data dir covers it, as over HTTP (a disk that stays failed closes the call unanswered).
fn send_durable(worker: &Worker, decided: Answer, answer: oneshot::Sender<StoreOutcome>) {
    let mut need = Need::default();
    note_promise(&mut need, decided);
    let durable = worker.shared.persist.as_ref().map(|p| p.durable().clone());
    if covered(durable.as_deref(), need) {
        // The caller may have gone (a cancelled call): nobody to tell.
        let _ = answer.send(Ok(decided));
        return;
    }
    monoio::spawn(async move {
        if once_durable(durable.as_deref(), need).await {
            let _ = answer.send(Ok(decided));
        }
    });
}

/// Waits for the end of a gRPC call's wait in `slot` (parked on shard `owner`); a call
/// cancelled meanwhile leaves its queue.
async fn wait_remote(
    worker: Rc<Worker>,
    owner: ShardId,
    slot: SlotId,
    mut answer: oneshot::Sender<StoreOutcome>,
) {
    let waited = monoio::select! {
        outcome = worker.pending.answer(slot) => Some(outcome),
        _ = answer.closed() => None,
    };
    match waited {
        Some(Ok(decided)) => {
            worker.metrics().answer(decided);
            send_durable(&worker, decided, answer);
        }
        Some(Err(failure)) => {
            let _ = answer.send(Err(failure));
        }
        None => worker.cancel_wait(owner, slot),
    }
}

/// Tells the admin thread who holds a lock of this shard. Off the hot path: it allocates the
/// owner's copy.
fn answer_holder(worker: &Worker, query: HolderQuery) {
    let now_ms = worker.shared.clock.now_ms();
    let shard = worker.shard.borrow();
    let table = shard.table();
    let holder = table
        .holder(query.store, &query.resource, now_ms)
        .map(|(owner, remaining_ms)| Holder {
            owner: owner.to_vec(),
            remaining_ms,
            fence: table.fence(query.store, &query.resource, now_ms),
        });
    drop(shard);
    // The admin thread may have given up waiting; then nobody wants the answer.
    let _ = query.answer.try_send(holder);
}
