//! Acquires that wait, on a worker: parking them with the shard that owns their key (this
//! one's, or another's through the inboxes), delivering the ends of waits to the connections
//! that wait, and the worker's one wait timer.
//!
//! The decisions are the shard's (`crate::dispatch`, sans I/O); here they are carried: every
//! shard operation that may end a wait (a park, a release, a try-lock or holder query on a key
//! with waiters, a cancel, the timer) is followed by [`Worker::deliver_waits`]. An end of wait
//! for a connection of this worker goes straight to its pending slot; one for another worker
//! travels as `Mail::WaitOver`. A grant that reaches a slot nobody waits on any more (the
//! connection went while the grant was on its way) is released at once, which hands the lock
//! to the next waiter.

use std::rc::Rc;
use std::time::Duration;

use super::worker::{no_remote, Worker};
use crate::api::{Answer, OpKind, Operation};
use crate::dispatch::{ReplyTo, WaitOver};
use crate::lease::{Key, StoreId};
use crate::metrics::Limit;
use crate::shard::{Forward, Mail, ShardId, SlotId};
use crate::store::{Deliver, RemoteStore};
use crate::store::{StoreError, StoreFailure, StoreOutcome};
use crate::task::Gone;

/// The answer to an acquire that cannot wait: the process has `--max-waiters` waiting.
pub(super) fn too_many_waiters(worker: &Worker) -> StoreFailure {
    worker.metrics().limit(Limit::Waiters, 1);
    StoreFailure {
        op: Operation::Acquire,
        error: StoreError::Refused(format!(
            "too many waiters: {} acquires wait already (--max-waiters)",
            worker.shared.config.max_waiters
        )),
    }
}

impl Worker {
    /// Registers an acquire that waits on the shard `to`: takes a wait slot (`None` when the
    /// process has `--max-waiters` already) and parks it, here or through `to`'s inbox.
    pub fn wait(
        &self,
        now_ms: u64,
        to: ShardId,
        kind: OpKind,
        store: StoreId,
        key: Key,
    ) -> Option<SlotId> {
        let slot = self.pending.reserve_wait()?;
        if to == self.id {
            let reply = ReplyTo {
                shard: self.id,
                slot,
            };
            self.shard
                .borrow_mut()
                .park(now_ms, reply, kind, store, key);
            self.deliver_waits();
        } else {
            self.outbox.request(
                to,
                Mail::Acquire(Forward {
                    from: self.id,
                    slot,
                    kind,
                    store,
                    key,
                }),
            );
        }
        Some(slot)
    }

    /// The connection waiting in `slot` for an acquire parked on shard `owner` went: its
    /// waiter leaves the queue. The slot is freed when its answer comes (at once here).
    pub fn cancel_wait(&self, owner: ShardId, slot: SlotId) {
        let reply = ReplyTo {
            shard: self.id,
            slot,
        };
        if owner == self.id {
            self.shard.borrow_mut().cancel(reply);
            self.deliver_waits();
        } else {
            self.outbox.request(owner, Mail::CancelWait(reply));
        }
    }

    /// Parks an acquire another worker sent here.
    pub fn park_forwarded(&self, now_ms: u64, forward: Forward) {
        let reply = ReplyTo {
            shard: forward.from,
            slot: forward.slot,
        };
        self.shard
            .borrow_mut()
            .park(now_ms, reply, forward.kind, forward.store, forward.key);
        self.deliver_waits();
    }

    /// A waiter of this shard whose connection (on another worker) went.
    pub fn cancel_forwarded(&self, reply: ReplyTo) {
        self.shard.borrow_mut().cancel(reply);
        self.deliver_waits();
    }

    /// Releases a grant nobody waits for: the lease goes, and the next waiter has the lock.
    pub fn release(&self, now_ms: u64, store: StoreId, key: Key) {
        let (resource, owner) = key.split();
        let to = self.shard.borrow().map().shard_of(store, resource);
        if to == self.id {
            self.execute(now_ms, OpKind::Unlock, store, resource, owner);
        } else {
            self.outbox.request(to, Mail::Release { store, key });
        }
    }

    /// Delivers an end of wait to this worker's connection waiting for it.
    pub fn wait_over(&self, now_ms: u64, over: WaitOver) {
        let unwanted = self.pending.complete(over.reply.slot, over.answer);
        if let Some(Answer::TryLock(Ok(true)) | Answer::Granted { .. }) = unwanted {
            self.release(now_ms, over.store, over.key);
        }
    }

    /// Sends every end of wait the shard decided to whoever waits for it, and wakes the wait
    /// timer if something comes due sooner than it sleeps.
    #[cold]
    #[inline(never)]
    pub fn deliver_waits(&self) {
        loop {
            let overs = self.shard.borrow_mut().take_over();
            if overs.is_empty() {
                break;
            }
            let now_ms = self.shared.clock.now_ms();
            for over in overs {
                if over.reply.shard == self.id {
                    // A release here decides more on this shard: the loop delivers it.
                    self.wait_over(now_ms, over);
                } else {
                    self.outbox.request(over.reply.shard, Mail::WaitOver(over));
                }
            }
        }
        let shard = self.shard.borrow();
        self.metrics().set_waiters(shard.waiters());
        if matches!(shard.next_due(), Some(at_ms) if at_ms < self.wait_timer_at.get()) {
            self.wait_timer.notify();
        }
    }
}

/// The first pause of an acquire that polls a remote store, and the longest: each pause is
/// twice the one before, and jittered down by up to half, so that pollers do not move in step.
pub(super) const POLL_FIRST: Duration = Duration::from_millis(5);
pub(super) const POLL_MOST: Duration = Duration::from_millis(100);

impl Worker {
    /// An acquire on a remote store (Redis), which keeps no waiters: it tries the lock, and
    /// while it is held and the wait lasts, pauses and tries again (see [`POLL_FIRST`]). Not
    /// in arrival order: whichever try comes first after a release wins.
    ///
    /// `gone` is set once the client has left: the polls stop, and a try that was in flight
    /// then and is granted is unlocked at once, so that no lock stays with a client that is
    /// not there to use or release it. The caller keeps awaiting this future after setting
    /// `gone`, for that (it ends once the try in flight, if any, is answered).
    pub async fn poll_remote(
        &self,
        expiry_s: u32,
        wait_ms: u32,
        store: StoreId,
        key: Key,
        gone: &Gone,
    ) -> StoreOutcome {
        let clock = &self.shared.clock;
        let until_ms = clock.now_ms().saturating_add(u64::from(wait_ms));
        let mut pause = POLL_FIRST;
        let mut jitter = Jitter::new(clock.now_us() ^ u64::from(wait_ms));
        let try_lock = OpKind::TryLock { expiry_s };
        loop {
            let outcome = self.ask_remote(try_lock, store, &key).await;
            if gone.is_set() {
                if matches!(
                    outcome,
                    Ok(Answer::TryLock(Ok(true)) | Answer::Granted { .. })
                ) {
                    // Nobody reads this outcome: the unlock's own is of no interest either.
                    let _ = self.ask_remote(OpKind::Unlock, store, &key).await;
                }
                return outcome;
            }
            let left_ms = until_ms.saturating_sub(clock.now_ms());
            // Once the shutdown began, nothing waits: the held lock is answered as held.
            if outcome != Ok(Answer::TryLock(Ok(false))) || left_ms == 0 || self.shared.stopping() {
                return outcome;
            }
            let pause_now = jitter
                .down_to_half(pause)
                .min(Duration::from_millis(left_ms));
            monoio::time::sleep(pause_now).await;
            if gone.is_set() {
                return outcome;
            }
            pause = (pause * 2).min(POLL_MOST);
        }
    }

    /// One operation on a remote store, and its outcome.
    async fn ask_remote(&self, kind: OpKind, store: StoreId, key: &Key) -> StoreOutcome {
        let slot = self.pending.reserve().await;
        let (resource, owner) = key.split();
        match self.remotes.get(usize::from(store.0)) {
            Some(Some(remote)) => remote.submit(self, slot, kind, resource, owner),
            _ => drop(self.deliver(slot, no_remote(kind))),
        }
        self.pending.answer(slot).await
    }
}

impl Worker {
    /// An acquire on a remote store that waits for the lock itself (etcd): submitted whole
    /// under a wait slot (`--max-waiters` bounds them, as the shards' waiters); if this future
    /// is dropped first (the client went), the store is told to stop waiting.
    pub async fn wait_in_remote(
        &self,
        remote: Rc<dyn RemoteStore>,
        kind: OpKind,
        key: Key,
        gone: &Gone,
    ) -> StoreOutcome {
        let Some(slot) = self.pending.reserve_wait() else {
            return Err(too_many_waiters(self));
        };
        let (resource, owner) = key.split();
        remote.submit(self, slot, kind, resource, owner);
        let mut cancel = CancelWait {
            remote: Some(remote),
            slot,
        };
        let outcome = monoio::select! {
            outcome = self.pending.answer(slot) => outcome,
            // The client left: the store stops the wait (the guard's drop), and releases
            // what it grants the slot from then on. Nobody reads this outcome.
            _ = gone.wait() => return Ok(Answer::TryLock(Ok(false))),
        };
        cancel.remote = None;
        outcome
    }
}

/// Tells a remote store to stop the wait in `slot` unless disarmed (`remote` taken) first.
struct CancelWait {
    remote: Option<Rc<dyn RemoteStore>>,
    slot: SlotId,
}

impl Drop for CancelWait {
    fn drop(&mut self) {
        if let Some(remote) = self.remote.take() {
            remote.cancel(self.slot);
        }
    }
}

/// A small xorshift generator: spreads the pauses of pollers apart, nothing more.
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// A duration between half of `d` and `d`.
    fn down_to_half(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let half = d / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(self.0 % nanos)
    }
}

/// The worker's one wait timer: sleeps until the next wait ends or lock frees for a waiter
/// (woken sooner when something sooner is parked), then ends and grants what came due.
pub(super) async fn wait_timer(worker: Rc<Worker>) {
    loop {
        let due = worker.shard.borrow().next_due();
        let now_ms = worker.shared.clock.now_ms();
        match due {
            Some(at_ms) if at_ms <= now_ms => {
                worker.shard.borrow_mut().wake(now_ms);
                worker.wait_timer_at.set(u64::MAX);
                worker.deliver_waits();
                continue;
            }
            Some(at_ms) => {
                worker.wait_timer_at.set(at_ms);
                monoio::select! {
                    _ = monoio::time::sleep(Duration::from_millis(at_ms - now_ms)) => {},
                    _ = worker.wait_timer.wait() => {},
                }
            }
            None => {
                worker.wait_timer_at.set(u64::MAX);
                worker.wait_timer.wait().await;
            }
        }
    }
}
