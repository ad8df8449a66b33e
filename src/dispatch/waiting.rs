//! Waiters for locks (the `acquire` route), without I/O: one queue a resource, in arrival
//! order, kept by the shard that owns the resource.
//!
//! A waiter is granted only at the head of its queue, and only when the lock is free: right
//! after a release (an unlock), when the holder's lease ends (a recheck due at the tick after
//! its last live one), or, with a data dir, when the refusal after a crash ends. Each queue
//! has at most one recheck due, and each waiter one deadline; the worker's one timer sleeps
//! until the earliest of them ([`Waiting::next_due`]), so a parked waiter costs no CPU.
//!
//! What is decided comes out as [`WaitOver`]s: the answer for a waiter, and where to send it.
//! Exactly one comes out for every waiter parked: granted, refused, timed out, cancelled
//! (its connection went) or closed (shutdown). A cancelled waiter's answer only frees its
//! slot; a grant that reaches a slot nobody waits on any more is released by the worker.
//!
//! Invariant, after every operation: a queue is never empty, and the lock of a queue is held
//! (or refused) with a recheck due, unless its head's grant failed (a full table; the next
//! release, try-lock or recheck moves it).

use std::collections::{BTreeSet, HashMap, VecDeque};

use slab::Slab;

use crate::api::Answer;
use crate::lease::{Key, LeaseTable, StoreId};
use crate::shard::{ShardId, SlotId};

/// Where a waiter's answer goes: the worker whose connection waits, and its slot there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyTo {
    pub shard: ShardId,
    pub slot: SlotId,
}

/// One parked request.
#[derive(Debug)]
pub struct Waiter {
    pub reply: ReplyTo,
    /// `resource ‖ owner`.
    pub key: Key,
    /// The lease's length once granted.
    pub expiry_s: u32,
    /// The tick at which it stops waiting, answered `{"success":false}`.
    pub deadline_ms: u64,
}

/// The end of one wait: its answer and where it goes. `key` is the waiter's own: with a
/// grant, it is what releases the lease if nobody waits for the answer any more.
#[derive(Debug)]
pub struct WaitOver {
    pub reply: ReplyTo,
    pub answer: Answer,
    pub store: StoreId,
    pub key: Key,
}

/// What comes due, in this order within one tick: a lock freed is granted before a waiter's
/// deadline of the same tick ends its wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Recheck(usize),
    Deadline(ReplyTo),
}

struct Queue {
    store: StoreId,
    hash: u64,
    waiters: VecDeque<Waiter>,
    /// The tick of this queue's recheck, if one is due.
    recheck_ms: Option<u64>,
}

/// How one shard grants a lock: the caller's try-lock, with its fencing and refusal.
pub trait Grant {
    /// Tries to grant (store, resource) to `owner` for `ttl_ms` at `now_ms`.
    fn grant(
        &mut self,
        now_ms: u64,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
    ) -> Answer;
    /// The lease table, to see who holds what.
    fn table(&self) -> &LeaseTable;
    /// The tick before which no lock may be granted (the refusal after a crash), if later
    /// than `now_ms`.
    fn refused_until(&self, now_ms: u64) -> Option<u64>;
}

/// A shard's waiters.
#[derive(Default)]
pub struct Waiting {
    queues: Slab<Queue>,
    /// Queue ids by the hash of (store, resource): a bucket holds more than one only on a
    /// collision.
    by_hash: HashMap<u64, Vec<usize>, ahash::RandomState>,
    /// Each parked waiter's queue.
    by_reply: HashMap<ReplyTo, usize, ahash::RandomState>,
    dues: BTreeSet<(u64, Due)>,
    hasher: ahash::RandomState,
    waiters: usize,
    /// After shutdown began: nothing parks any more.
    closed: bool,
}

impl Waiting {
    /// No waiter at all: the try-lock and unlock paths look no further.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.waiters == 0
    }

    /// Waiters parked on this shard.
    pub fn len(&self) -> usize {
        self.waiters
    }

    /// Waiters on (store, resource).
    pub fn waiting_on(&self, store: StoreId, resource: &[u8]) -> usize {
        self.find(store, resource)
            .map_or(0, |q| self.queues[q].waiters.len())
    }

    /// The earliest tick at which something comes due.
    pub fn next_due(&self) -> Option<u64> {
        self.dues.first().map(|&(at, _)| at)
    }

    /// Parks `waiter` on `store`, or answers it at once: granted when the lock is free and
    /// nobody waits before it; refused when its owner holds the lock already (leases are not
    /// re-entrant: nobody waits for themselves) or shutdown began.
    pub fn park(
        &mut self,
        shard: &mut impl Grant,
        now_ms: u64,
        store: StoreId,
        waiter: Waiter,
        out: &mut Vec<WaitOver>,
    ) {
        let (resource, owner) = waiter.key.split();
        let holds_it =
            matches!(shard.table().holder(store, resource, now_ms), Some((h, _)) if h == owner);
        if self.closed || holds_it {
            out.push(over(waiter, store, Answer::TryLock(Ok(false))));
            return;
        }
        let q = match self.find(store, resource) {
            Some(q) => q,
            None => {
                let hash = self.hasher.hash_one((store.0, resource));
                let q = self.queues.insert(Queue {
                    store,
                    hash,
                    waiters: VecDeque::new(),
                    recheck_ms: None,
                });
                self.by_hash.entry(hash).or_default().push(q);
                q
            }
        };
        self.dues
            .insert((waiter.deadline_ms, Due::Deadline(waiter.reply)));
        self.by_reply.insert(waiter.reply, q);
        self.queues[q].waiters.push_back(waiter);
        self.waiters += 1;
        self.advance(shard, now_ms, q, out);
    }

    /// Lets the queue of (store, resource), if any, take the lock if it is free: called before
    /// a try-lock (waiters come first) and after an unlock.
    #[inline]
    pub fn serve(
        &mut self,
        shard: &mut impl Grant,
        now_ms: u64,
        store: StoreId,
        resource: &[u8],
        out: &mut Vec<WaitOver>,
    ) {
        if let Some(q) = self.find(store, resource) {
            self.advance(shard, now_ms, q, out);
        }
    }

    /// Ends the waits due by `now_ms` and moves the queues whose recheck came.
    pub fn wake(&mut self, shard: &mut impl Grant, now_ms: u64, out: &mut Vec<WaitOver>) {
        while let Some(&(at, due)) = self.dues.first() {
            if at > now_ms {
                break;
            }
            self.dues.pop_first();
            match due {
                Due::Recheck(q) => {
                    if let Some(queue) = self.queues.get_mut(q) {
                        queue.recheck_ms = None;
                        self.advance(shard, now_ms, q, out);
                    }
                }
                Due::Deadline(reply) => {
                    if let Some(gone) = self.remove(reply) {
                        out.push(gone);
                    }
                }
            }
        }
    }

    /// Takes the waiter answered at `reply` out of its queue, if it is still parked: its
    /// connection went. Its answer (`{"success":false}`) only frees the slot.
    pub fn cancel(&mut self, reply: ReplyTo, out: &mut Vec<WaitOver>) {
        if let Some(gone) = self.remove(reply) {
            out.push(gone);
        }
    }

    /// Shutdown: every waiter is answered `{"success":false}`, and nothing parks any more.
    pub fn close(&mut self, out: &mut Vec<WaitOver>) {
        self.closed = true;
        for queue in self.queues.drain() {
            for waiter in queue.waiters {
                out.push(over(waiter, queue.store, Answer::TryLock(Ok(false))));
            }
        }
        self.by_hash.clear();
        self.by_reply.clear();
        self.dues.clear();
        self.waiters = 0;
    }

    /// Grants queue `q`'s head while the lock is free; otherwise makes sure a recheck is due
    /// when it may be. Removes the queue once empty.
    fn advance(&mut self, shard: &mut impl Grant, now_ms: u64, q: usize, out: &mut Vec<WaitOver>) {
        loop {
            let queue = &self.queues[q];
            let Some(head) = queue.waiters.front() else {
                self.drop_queue(q);
                return;
            };
            let store = queue.store;
            let (resource, _) = head.key.split();
            if let Some(until_ms) = shard.refused_until(now_ms) {
                self.recheck(q, until_ms);
                return;
            }
            if let Some((_, remaining_ms)) = shard.table().holder(store, resource, now_ms) {
                // Free on the tick after its last live one.
                self.recheck(q, now_ms + remaining_ms + 1);
                return;
            }
            let Some(head) = self.queues[q].waiters.pop_front() else {
                return;
            };
            self.unpark(&head);
            let (resource, owner) = head.key.split();
            let ttl_ms = u64::from(head.expiry_s) * 1000;
            let answer = shard.grant(now_ms, store, resource, owner, ttl_ms);
            let granted = matches!(answer, Answer::TryLock(Ok(true)) | Answer::Granted { .. });
            out.push(over(head, store, answer));
            if !granted {
                // A full table: the next release, try-lock or recheck tries again.
                if self.queues[q].waiters.is_empty() {
                    self.drop_queue(q);
                }
                return;
            }
        }
    }

    /// Makes queue `q`'s recheck due at `at_ms`, replacing any other.
    fn recheck(&mut self, q: usize, at_ms: u64) {
        let queue = &mut self.queues[q];
        if queue.recheck_ms == Some(at_ms) {
            return;
        }
        if let Some(old) = queue.recheck_ms.replace(at_ms) {
            self.dues.remove(&(old, Due::Recheck(q)));
        }
        self.dues.insert((at_ms, Due::Recheck(q)));
    }

    /// Forgets a waiter taken out of its queue: its deadline and its reply.
    fn unpark(&mut self, waiter: &Waiter) {
        self.dues
            .remove(&(waiter.deadline_ms, Due::Deadline(waiter.reply)));
        self.by_reply.remove(&waiter.reply);
        self.waiters -= 1;
    }

    /// Takes the waiter of `reply` out of its queue, answered `{"success":false}`.
    fn remove(&mut self, reply: ReplyTo) -> Option<WaitOver> {
        let q = *self.by_reply.get(&reply)?;
        let queue = &mut self.queues[q];
        let at = queue.waiters.iter().position(|w| w.reply == reply)?;
        let store = queue.store;
        let waiter = queue.waiters.remove(at)?;
        self.unpark(&waiter);
        if self.queues[q].waiters.is_empty() {
            self.drop_queue(q);
        }
        Some(over(waiter, store, Answer::TryLock(Ok(false))))
    }

    fn drop_queue(&mut self, q: usize) {
        let queue = self.queues.remove(q);
        if let Some(at) = queue.recheck_ms {
            self.dues.remove(&(at, Due::Recheck(q)));
        }
        if let Some(bucket) = self.by_hash.get_mut(&queue.hash) {
            bucket.retain(|&other| other != q);
            if bucket.is_empty() {
                self.by_hash.remove(&queue.hash);
            }
        }
    }

    fn find(&self, store: StoreId, resource: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one((store.0, resource));
        self.by_hash.get(&hash)?.iter().copied().find(|&q| {
            let queue = &self.queues[q];
            queue.store == store
                && queue
                    .waiters
                    .front()
                    .is_some_and(|w| w.key.split().0 == resource)
        })
    }
}

fn over(waiter: Waiter, store: StoreId, answer: Answer) -> WaitOver {
    WaitOver {
        reply: waiter.reply,
        answer,
        store,
        key: waiter.key,
    }
}
