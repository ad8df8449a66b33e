//! One worker's state, shared by its tasks: its shard (the lease table and the decision
//! step), its API state, its table of pending requests, its outbox, its remote stores.
//!
//! Everything here is `!Send` and touched by this thread only: the shard and the api state sit
//! in `RefCell`s that are never borrowed across an `.await`. The tasks that use it live in
//! their own files: `thread.rs` builds it and spawns them; `accept.rs`, `conn.rs`,
//! `inbound.rs` and `housekeeping.rs` are those tasks.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::answering::Answering;
use super::driver::Driver;
use super::pending::Pending;
use super::reaper::Reaper;
use super::shared::Shared;
use super::signal::Signal;
use crate::api::{Answer, Api, LockOp, OpKind};
use crate::dispatch::{Decision, Shard};
use crate::lease::{Key, StoreId};
use crate::metrics::WorkerMetrics;
use crate::shard::{Answered, Forward, Mail, Outbox, ShardId, SlotId};
use crate::store::{Deliver, RemoteStore, StoreError, StoreFailure, StoreOutcome};
use crate::task::{Gone, Notify, Yields};

/// Who decides an operation this worker does not decide itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Asked {
    /// The worker that owns the key's shard.
    Shard(ShardId),
    /// The store's remote store.
    Remote,
}

/// The state of one worker, shared by its tasks.
pub(super) struct Worker {
    pub id: ShardId,
    /// Its io driver: the legacy one wants non-blocking sockets.
    pub driver: Driver,
    /// How its connections answer, chosen at start.
    pub answering: Answering,
    pub shared: Arc<Shared>,
    /// This worker's shard: its lease table and the decision step.
    pub shard: RefCell<Shard>,
    pub api: RefCell<Api>,
    pub pending: Pending,
    pub shutdown: Signal,
    /// The deadlines of this worker's connections.
    pub reaper: Reaper,
    /// Tasks letting the others run; see [`Yields`].
    pub yields: Yields,
    /// Messages for other workers, sent in batches; see [`Outbox`].
    pub outbox: Outbox<Mail, Answered>,
    /// Each store's remote store, by `StoreId`; `None` for the stores the shards hold.
    pub remotes: Vec<Option<Rc<dyn RemoteStore>>>,
    /// Wakes the wait timer (`waits.rs`) when something comes due before `wait_timer_at`,
    /// the tick it sleeps until (`u64::MAX`: no sleep armed).
    pub wait_timer: Notify,
    pub wait_timer_at: Cell<u64>,
    /// This shard's waits were ended for the shutdown.
    pub waits_closed: Cell<bool>,
}

impl Worker {
    /// The decision step for `op` at `now_ms` (see `crate::dispatch`), a clock reading taken
    /// after the request was sent.
    #[inline(always)]
    pub fn decide(&self, now_ms: u64, op: &LockOp<'_>) -> Decision {
        let mut shard = self.shard.borrow_mut();
        let decided = shard.decide(now_ms, op);
        if let Decision::Answer(_) = decided {
            self.metrics().set_leases(shard.table().len());
            // A release or try-lock here may have ended waits (an acquire that waits delivers
            // them as it parks).
            if shard.ended_waits() {
                drop(shard);
                self.deliver_waits();
            }
        }
        decided
    }

    /// Decides an operation forwarded to this worker's shard, at `now_ms`.
    pub fn execute(
        &self,
        now_ms: u64,
        kind: OpKind,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
    ) -> Answer {
        let mut shard = self.shard.borrow_mut();
        let answer = shard.execute(now_ms, kind, store, resource, owner);
        self.metrics().set_leases(shard.table().len());
        let ended_waits = shard.ended_waits();
        drop(shard);
        if ended_waits {
            self.deliver_waits();
        }
        answer
    }

    /// This worker's counters: only this thread writes them.
    #[inline]
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics[self.id.0]
    }

    /// Sends an operation to whoever decides it (with the next batch for another shard, or
    /// to the store) and returns the slot its answer comes to. Waits while this worker has its
    /// maximum of requests in flight.
    pub async fn ask(&self, asked: Asked, kind: OpKind, store: StoreId, key: Key) -> SlotId {
        let slot = self.pending.reserve().await;
        match asked {
            Asked::Shard(to) => self.outbox.request(
                to,
                Mail::Lock(Forward {
                    from: self.id,
                    slot,
                    kind,
                    store,
                    key,
                }),
            ),
            Asked::Remote => {
                let (resource, owner) = key.split();
                match self.remotes.get(usize::from(store.0)) {
                    Some(Some(remote)) => remote.submit(self, slot, kind, resource, owner),
                    // The decision step says remote only for a store that has one.
                    _ => drop(self.deliver(slot, no_remote(kind))),
                }
            }
        }
        slot
    }

    /// The answer of an operation someone else decides: [`ask`](Self::ask), then the wait.
    /// An acquire that may wait on a remote store waits there if the store can, else polls
    /// it (see `waits.rs`). `gone` is set when its client has left: a wait in the store ends
    /// then, and polls stop, after which the future is still awaited to its end.
    pub async fn settle(
        &self,
        asked: Asked,
        mut kind: OpKind,
        store: StoreId,
        key: Key,
        gone: Rc<Gone>,
    ) -> StoreOutcome {
        if let (Asked::Remote, OpKind::Acquire { expiry_s, wait_ms }) = (asked, kind) {
            if wait_ms > 0 && self.shared.stopping() {
                // Once the shutdown began, nothing waits: an acquire is a try-lock.
                kind = OpKind::Acquire {
                    expiry_s,
                    wait_ms: 0,
                };
            } else if wait_ms > 0 {
                return match self.remotes.get(usize::from(store.0)) {
                    Some(Some(remote)) if remote.waits() => {
                        self.wait_in_remote(remote.clone(), kind, key, &gone).await
                    }
                    _ => self.poll_remote(expiry_s, wait_ms, store, key, &gone).await,
                };
            }
        }
        let slot = self.ask(asked, kind, store, key).await;
        self.pending.answer(slot).await
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_fired()
    }
}

/// A remote store's outcomes reach the connections through the worker's pending slots.
impl Deliver for Worker {
    fn deliver(&self, slot: SlotId, outcome: StoreOutcome) -> Option<StoreOutcome> {
        self.pending.finish(slot, outcome)
    }
}

/// The failure of an operation sent to a store that has no remote store here.
pub(super) fn no_remote(kind: OpKind) -> StoreOutcome {
    Err(StoreFailure {
        op: kind.operation(),
        error: StoreError::Unavailable {
            at: "the store".into(),
            why: "not open on this worker".into(),
        },
    })
}

/// Counts a connection for its whole life against the process-wide `--max-connections`
/// bound, and against its worker's share. The last connection to close during shutdown lets
/// every worker stop.
pub(super) struct ConnGuard {
    pub worker: Rc<Worker>,
}

impl ConnGuard {
    pub fn new(worker: Rc<Worker>) -> Self {
        ConnGuard { worker }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let w = &self.worker;
        w.shared.open[w.id.0].fetch_sub(1, Ordering::Relaxed);
        let before = w.shared.connections.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && w.shared.shutting_down.load(Ordering::SeqCst) {
            w.shared.kick_all();
        }
    }
}
