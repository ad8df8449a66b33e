//! The decision step, without I/O: what one validated lock operation needs at `now_ms`.
//!
//! Every face comes here with a [`LockOp`] the api layer validated (an HTTP connection
//! directly; the gRPC face through the mail of the shard that owns the key), and so do the
//! fuzz harness and the tests. The step is pure: no sockets, no clock, no threads; `now_ms` is
//! an argument, as in the lease table it drives. What comes out is a [`Decision`]:
//!
//! - [`Decision::Answer`]: decided here, on this shard's table. A grant with a fencing token
//!   (`--data-dir`) may be sent only once the data dir durably covers it: [`note_promise`]
//!   adds what it needs to the batch's [`Need`].
//! - [`Decision::Forward`]: another shard owns the key; its worker decides, and the answer
//!   comes back through the inboxes.
//! - [`Decision::Wait`]: an acquire that must wait, parked with the shard that owns the key
//!   (see [`waiting`]); its answer comes as a [`WaitOver`] when the wait ends.
//! - [`Decision::Remote`]: the store lives elsewhere (Redis); the store decides.
//!
//! The caller only carries these out: it frames, asks, awaits in request order and writes.

mod waiting;

pub use waiting::{ReplyTo, WaitOver, Waiter};

use crate::api::{Answer, Holding, LockOp, OpKind};
use crate::lease::{Key, LeaseTable, Renewal, StoreId, UnlockStatus};
use crate::persist::Need;
use crate::shard::{ShardId, ShardMap};
use waiting::{Grant, Waiting};

/// What to do with one lock operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Decided by this shard: send this answer (once durable, for a fenced grant).
    Answer(Answer),
    /// The shard that owns the key decides it.
    Forward(ShardId),
    /// An acquire not granted at once: it waits with the shard that owns the key.
    Wait(ShardId),
    /// The store's remote store decides it.
    Remote,
}

/// One shard's decision state: its lease table, where keys live, which stores live
/// elsewhere, and (with `--data-dir`) fencing and the refusal after a crash.
pub struct Shard {
    id: ShardId,
    map: ShardMap,
    table: LeaseTable,
    /// By `StoreId`: whether a remote store holds that store's leases.
    remote: Vec<bool>,
    /// Whether any store is remote: spares the in-memory path the lookup.
    any_remote: bool,
    /// With `--data-dir`: grants carry fencing tokens, and try-locks are refused before this
    /// tick (after an unclean stop, until the last run's leases have surely ended).
    refuse_until_ms: Option<u64>,
    waiting: Waiting,
    /// The ends of waits decided by the last operation, for the caller to deliver.
    over: Vec<WaitOver>,
}

impl Shard {
    /// Shard `id` of `shards`, deciding on `table`. `remote[i]` says whether store `i` lives
    /// elsewhere. `refuse_until_ms` is `Some` exactly with a data dir, and then the table must
    /// have fencing enabled.
    pub fn new(
        id: ShardId,
        shards: usize,
        table: LeaseTable,
        remote: Vec<bool>,
        refuse_until_ms: Option<u64>,
    ) -> Shard {
        assert!(id.0 < shards, "shard {} of {shards}", id.0);
        Shard {
            id,
            map: ShardMap::new(shards),
            table,
            any_remote: remote.iter().any(|&r| r),
            remote,
            refuse_until_ms,
            waiting: Waiting::default(),
            over: Vec::new(),
        }
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Where keys live.
    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    pub fn table(&self) -> &LeaseTable {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut LeaseTable {
        &mut self.table
    }

    /// What `op` needs, at `now_ms`: a clock reading taken after the request was sent, so that
    /// a lease never ends before its TTL has passed since the client sent it.
    #[inline(always)]
    pub fn decide(&mut self, now_ms: u64, op: &LockOp<'_>) -> Decision {
        if self.any_remote && self.remote.get(usize::from(op.store.0)) == Some(&true) {
            return Decision::Remote;
        }
        if let OpKind::Acquire { wait_ms, .. } = op.kind {
            if wait_ms > 0 {
                return self.decide_wait(now_ms, op);
            }
        }
        let owner = self.map.shard_of(op.store, op.resource);
        if owner != self.id {
            return Decision::Forward(owner);
        }
        Decision::Answer(self.execute(now_ms, op.kind, op.store, op.resource, op.owner))
    }

    /// [`decide`](Self::decide) for an acquire that may wait: granted at once if it can be;
    /// refused at once when its owner holds the lock (nobody waits for themselves); else it
    /// waits with the shard that owns the key.
    #[cold]
    #[inline(never)]
    fn decide_wait(&mut self, now_ms: u64, op: &LockOp<'_>) -> Decision {
        let owner = self.map.shard_of(op.store, op.resource);
        if owner != self.id {
            return Decision::Wait(owner);
        }
        let answer = self.execute(now_ms, op.kind, op.store, op.resource, op.owner);
        let holds_it = matches!(
            self.table.holder(op.store, op.resource, now_ms),
            Some((h, _)) if h == op.owner
        );
        if answer == Answer::TryLock(Ok(false)) && !holds_it {
            return Decision::Wait(owner);
        }
        Decision::Answer(answer)
    }

    /// Parks an acquire that waits (its own, or one forwarded here), or answers it at once if
    /// the lock is free by now; the answer comes out of [`take_over`](Self::take_over).
    pub fn park(&mut self, now_ms: u64, reply: ReplyTo, kind: OpKind, store: StoreId, key: Key) {
        let (expiry_s, wait_ms) = match kind {
            OpKind::Acquire { expiry_s, wait_ms } => (expiry_s, wait_ms),
            OpKind::TryLock { expiry_s } => (expiry_s, 0),
            // Only acquires wait.
            _ => (0, 0),
        };
        let waiter = Waiter {
            reply,
            key,
            expiry_s,
            deadline_ms: now_ms.saturating_add(u64::from(wait_ms)),
        };
        let (mut granting, waiting, over) = self.split();
        waiting.park(&mut granting, now_ms, store, waiter, over);
    }

    /// Ends the waits due by `now_ms` and grants the locks freed by then.
    pub fn wake(&mut self, now_ms: u64) {
        let (mut granting, waiting, over) = self.split();
        waiting.wake(&mut granting, now_ms, over);
    }

    /// A waiter's connection went: it leaves its queue.
    pub fn cancel(&mut self, reply: ReplyTo) {
        self.waiting.cancel(reply, &mut self.over);
    }

    /// Shutdown: every waiter is answered `{"success":false}`, and no acquire waits any more.
    pub fn close_waiting(&mut self) {
        self.waiting.close(&mut self.over);
    }

    /// When the next wait ends or lock is freed for a waiter, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.waiting.next_due()
    }

    /// Waiters parked on this shard.
    pub fn waiters(&self) -> usize {
        self.waiting.len()
    }

    /// Whether waits ended since the last [`take_over`](Self::take_over).
    #[inline(always)]
    pub fn ended_waits(&self) -> bool {
        !self.over.is_empty()
    }

    /// The waits ended by the operations since the last call, for the caller to deliver.
    pub fn take_over(&mut self) -> Vec<WaitOver> {
        std::mem::take(&mut self.over)
    }

    /// The parts waiting needs, borrowed apart.
    fn split(&mut self) -> (Granting<'_>, &mut Waiting, &mut Vec<WaitOver>) {
        (
            Granting {
                table: &mut self.table,
                refuse_until_ms: self.refuse_until_ms,
            },
            &mut self.waiting,
            &mut self.over,
        )
    }

    /// Lets the waiters of (store, resource), if any, take its lock if it is free.
    #[inline(always)]
    fn serve_waiters(&mut self, now_ms: u64, store: StoreId, resource: &[u8]) {
        if !self.waiting.is_empty() {
            let (mut granting, waiting, over) = self.split();
            waiting.serve(&mut granting, now_ms, store, resource, over);
        }
    }

    /// Decides an operation on this shard's own table at `now_ms` (one this shard owns: its
    /// own, or one forwarded to it).
    #[inline]
    pub fn execute(
        &mut self,
        now_ms: u64,
        kind: OpKind,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
    ) -> Answer {
        match kind {
            // An acquire decided here is a try-lock: it waits only through `park`.
            OpKind::TryLock { expiry_s } | OpKind::Acquire { expiry_s, .. } => {
                // Waiters come first: a free lock goes to the head of its queue.
                self.serve_waiters(now_ms, store, resource);
                let ttl_ms = u64::from(expiry_s) * 1000;
                grant(
                    &mut self.table,
                    self.refuse_until_ms,
                    now_ms,
                    store,
                    resource,
                    owner,
                    ttl_ms,
                )
            }
            OpKind::Unlock => {
                let status = self.table.unlock(store, resource, owner, now_ms);
                if status == UnlockStatus::Success {
                    self.serve_waiters(now_ms, store, resource);
                }
                Answer::Unlock(status)
            }
            OpKind::Renew { expiry_s } => {
                let table = &mut self.table;
                let ttl_ms = u64::from(expiry_s) * 1000;
                match table.renew(store, resource, owner, ttl_ms, now_ms) {
                    // With a data dir the lease keeps its token, and its new end must be
                    // durable before the answer goes.
                    Renewal::Renewed {
                        last_live_ms,
                        token,
                    } if self.refuse_until_ms.is_some() => Answer::Renewed {
                        token,
                        last_live_ms,
                    },
                    Renewal::Renewed { .. } => Answer::Renew(UnlockStatus::Success),
                    Renewal::Refused(status) => Answer::Renew(status),
                }
            }
            OpKind::Holder => {
                self.serve_waiters(now_ms, store, resource);
                let waiters = self.waiting.waiting_on(store, resource);
                Answer::Holder(match self.table.holder(store, resource, now_ms) {
                    // Free: nobody waits (the head has just been granted if anyone did).
                    None => Holding::default(),
                    Some((holder, remaining_ms)) => Holding {
                        locked: true,
                        owned_by_caller: !owner.is_empty() && holder == owner,
                        remaining_ms,
                        waiters: u32::try_from(waiters).unwrap_or(u32::MAX),
                    },
                })
            }
        }
    }
}

/// A shard's try-lock: refused before the end of the refusal after a crash; with a data dir
/// (`refuse_until_ms` is `Some`), a grant carries its fencing token and last live tick.
#[inline(always)]
fn grant(
    table: &mut LeaseTable,
    refuse_until_ms: Option<u64>,
    now_ms: u64,
    store: StoreId,
    resource: &[u8],
    owner: &[u8],
    ttl_ms: u64,
) -> Answer {
    match refuse_until_ms {
        None => Answer::TryLock(table.try_lock(store, resource, owner, ttl_ms, now_ms)),
        Some(until_ms) if now_ms < until_ms => Answer::TryLock(Ok(false)),
        Some(_) => match table.try_lock_fenced(store, resource, owner, ttl_ms, now_ms) {
            Ok(Some(token)) => Answer::Granted {
                token,
                last_live_ms: now_ms.saturating_add(ttl_ms),
            },
            Ok(None) => Answer::TryLock(Ok(false)),
            Err(e) => Answer::TryLock(Err(e)),
        },
    }
}

/// A shard's try-lock, for its waiters.
struct Granting<'a> {
    table: &'a mut LeaseTable,
    refuse_until_ms: Option<u64>,
}

impl Grant for Granting<'_> {
    fn grant(
        &mut self,
        now_ms: u64,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
    ) -> Answer {
        grant(
            self.table,
            self.refuse_until_ms,
            now_ms,
            store,
            resource,
            owner,
            ttl_ms,
        )
    }

    fn table(&self) -> &LeaseTable {
        self.table
    }

    fn refused_until(&self, now_ms: u64) -> Option<u64> {
        self.refuse_until_ms.filter(|&until_ms| now_ms < until_ms)
    }
}

/// Adds what a fenced grant promises (its last live tick and its token) to `need`: the answer
/// is sent only once the data dir durably covers it. Other answers promise nothing.
#[inline]
pub fn note_promise(need: &mut Need, answer: Answer) {
    if let Answer::Granted {
        token,
        last_live_ms,
    }
    | Answer::Renewed {
        token,
        last_live_ms,
    } = answer
    {
        need.add(last_live_ms, token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::UnlockStatus;

    fn op<'a>(kind: OpKind, store: u16, resource: &'a [u8], owner: &'a [u8]) -> LockOp<'a> {
        LockOp {
            kind,
            store: StoreId(store),
            resource,
            owner,
        }
    }

    const LOCK: OpKind = OpKind::TryLock { expiry_s: 10 };

    // A key this shard owns is decided here on its table; one another shard owns is forwarded
    // to that shard (never decided here, which would grant it twice); one of a remote store
    // goes to the store, whoever owns its key.
    #[test]
    fn each_operation_goes_where_its_key_lives() {
        let mut shards: Vec<Shard> = (0..2)
            .map(|i| Shard::new(ShardId(i), 2, LeaseTable::new(64), vec![false, true], None))
            .collect();
        for i in 0..40u32 {
            let resource = format!("r{i}");
            let owner = shards[0].map().shard_of(StoreId(0), resource.as_bytes());
            for shard in shards.iter_mut() {
                let lock = op(LOCK, 0, resource.as_bytes(), b"o");
                let decided = shard.decide(1000, &lock);
                if shard.id() == owner {
                    assert_eq!(decided, Decision::Answer(Answer::TryLock(Ok(true))));
                } else {
                    assert_eq!(decided, Decision::Forward(owner));
                }
                let remote = op(LOCK, 1, resource.as_bytes(), b"o");
                assert_eq!(shard.decide(1000, &remote), Decision::Remote);
            }
        }
        let held: usize = shards.iter().map(|s| s.table().len()).sum();
        assert_eq!(held, 40, "each lease once, on its owner");
    }

    // With a data dir, try-locks before the refusal's end are refused without touching the
    // table; after it, grants carry growing tokens and promise their end; unlocks work as
    // always.
    #[test]
    fn fenced_grants_and_the_refusal_after_a_crash() {
        let mut table = LeaseTable::new(64);
        table.enable_fencing(7);
        let mut shard = Shard::new(ShardId(0), 1, table, vec![false], Some(5000));
        let lock = op(LOCK, 0, b"r", b"o");
        assert_eq!(
            shard.decide(4999, &lock),
            Decision::Answer(Answer::TryLock(Ok(false)))
        );
        assert_eq!(shard.table().len(), 0);
        let Decision::Answer(first) = shard.decide(5000, &lock) else {
            panic!("decided here")
        };
        assert_eq!(
            first,
            Answer::Granted {
                token: 7,
                last_live_ms: 15_000
            }
        );
        let mut need = Need::default();
        note_promise(&mut need, first);
        assert!(!need.is_empty());
        let mut none = Need::default();
        note_promise(&mut none, Answer::TryLock(Ok(true)));
        assert!(none.is_empty());
        let unlock = op(OpKind::Unlock, 0, b"r", b"o");
        assert_eq!(
            shard.decide(6000, &unlock),
            Decision::Answer(Answer::Unlock(UnlockStatus::Success))
        );
        let Decision::Answer(Answer::Granted { token, .. }) = shard.decide(6000, &lock) else {
            panic!("granted again")
        };
        assert!(token > 7);
    }
}

#[cfg(test)]
mod wait_tests {
    use super::*;
    use crate::shard::SlotId;

    const S: StoreId = StoreId(0);

    fn shard() -> Shard {
        Shard::new(ShardId(0), 1, LeaseTable::new(64), vec![false], None)
    }

    fn reply(slot: u32) -> ReplyTo {
        ReplyTo {
            shard: ShardId(slot as usize % 2),
            slot: SlotId(slot),
        }
    }

    fn acquire(expiry_s: u32, wait_ms: u32) -> OpKind {
        OpKind::Acquire { expiry_s, wait_ms }
    }

    fn try_lock(shard: &mut Shard, now_ms: u64, resource: &str, owner: &str) -> Answer {
        let kind = OpKind::TryLock { expiry_s: 10 };
        shard.execute(now_ms, kind, S, resource.as_bytes(), owner.as_bytes())
    }

    fn unlock(shard: &mut Shard, now_ms: u64, resource: &str, owner: &str) -> Answer {
        shard.execute(
            now_ms,
            OpKind::Unlock,
            S,
            resource.as_bytes(),
            owner.as_bytes(),
        )
    }

    fn park(shard: &mut Shard, now_ms: u64, slot: u32, resource: &str, owner: &str, wait_ms: u32) {
        let key = Key::new(resource.as_bytes(), owner.as_bytes());
        shard.park(now_ms, reply(slot), acquire(10, wait_ms), S, key);
    }

    /// The ends of waits since the last look: (slot, answer, owner).
    fn ended(shard: &mut Shard) -> Vec<(u32, Answer, String)> {
        shard
            .take_over()
            .into_iter()
            .map(|o| {
                let owner = String::from_utf8_lossy(o.key.split().1).into_owned();
                (o.reply.slot.0, o.answer, owner)
            })
            .collect()
    }

    const YES: Answer = Answer::TryLock(Ok(true));
    const NO: Answer = Answer::TryLock(Ok(false));

    fn holder(shard: &mut Shard, now_ms: u64, resource: &str) -> Holding {
        match shard.execute(now_ms, OpKind::Holder, S, resource.as_bytes(), b"") {
            Answer::Holder(h) => h,
            other => panic!("{other:?}"),
        }
    }

    // An acquire on a free lock is a try-lock; on a held one it waits; its owner asking again
    // is refused at once (nobody waits for themselves); without a wait it never waits.
    #[test]
    fn who_waits() {
        let mut s = shard();
        let op = |owner: &'static [u8], wait_ms| LockOp {
            kind: acquire(10, wait_ms),
            store: S,
            resource: b"r",
            owner,
        };
        assert_eq!(s.decide(0, &op(b"a", 1000)), Decision::Answer(YES));
        assert_eq!(s.decide(0, &op(b"a", 1000)), Decision::Answer(NO));
        assert_eq!(s.decide(0, &op(b"b", 0)), Decision::Answer(NO));
        assert_eq!(s.decide(0, &op(b"b", 1000)), Decision::Wait(ShardId(0)));
        // Another shard's key waits there, or (without a wait) is forwarded.
        let mut two: Vec<Shard> = (0..2)
            .map(|i| Shard::new(ShardId(i), 2, LeaseTable::new(64), vec![false], None))
            .collect();
        let resource = (0..)
            .map(|i| format!("r{i}"))
            .find(|r| two[0].map().shard_of(S, r.as_bytes()) == ShardId(1))
            .expect("some key lives on shard 1");
        let far = |wait_ms| LockOp {
            kind: acquire(10, wait_ms),
            store: S,
            resource: resource.as_bytes(),
            owner: b"a",
        };
        assert_eq!(two[0].decide(0, &far(5)), Decision::Wait(ShardId(1)));
        assert_eq!(two[0].decide(0, &far(0)), Decision::Forward(ShardId(1)));
    }

    // Waiters are granted in arrival order, one per release, each the moment the lock is
    // released; a try-lock never jumps the queue; the holder query counts them.
    #[test]
    fn releases_hand_over_in_arrival_order() {
        let mut s = shard();
        assert_eq!(try_lock(&mut s, 0, "r", "a"), YES);
        for (slot, owner) in [(1, "b"), (2, "c"), (3, "d")] {
            park(&mut s, 1, slot, "r", owner, 60_000);
        }
        assert!(ended(&mut s).is_empty());
        assert_eq!(holder(&mut s, 2, "r").waiters, 3);
        assert_eq!(
            unlock(&mut s, 5, "r", "a"),
            Answer::Unlock(UnlockStatus::Success)
        );
        assert_eq!(ended(&mut s), [(1, YES, "b".to_owned())]);
        // The lock is b's now: a newcomer's try-lock fails, and the next waits on.
        assert_eq!(try_lock(&mut s, 6, "r", "z"), NO);
        assert_eq!(
            unlock(&mut s, 7, "r", "b"),
            Answer::Unlock(UnlockStatus::Success)
        );
        assert_eq!(ended(&mut s), [(2, YES, "c".to_owned())]);
        assert_eq!(holder(&mut s, 8, "r").waiters, 1);
        // A failed unlock hands nothing over.
        assert_eq!(
            unlock(&mut s, 9, "r", "z"),
            Answer::Unlock(UnlockStatus::LockBelongsToOthers)
        );
        assert!(ended(&mut s).is_empty());
        assert_eq!(
            unlock(&mut s, 10, "r", "c"),
            Answer::Unlock(UnlockStatus::Success)
        );
        assert_eq!(ended(&mut s), [(3, YES, "d".to_owned())]);
        assert_eq!(s.waiters(), 0);
        assert_eq!(s.next_due(), None, "nothing left to come due");
    }

    // An expiry hands over on the first tick the lease is no longer live, and not before;
    // waits end at their deadline, refused, and a lease end of the same tick goes first.
    #[test]
    fn expiries_hand_over_and_deadlines_end_waits() {
        let mut s = shard();
        // a holds r through tick 10_000 (10 s from tick 0, both ends counted).
        assert_eq!(try_lock(&mut s, 0, "r", "a"), YES);
        park(&mut s, 0, 1, "r", "b", 10_001);
        park(&mut s, 0, 2, "r", "c", 5_000);
        assert_eq!(s.next_due(), Some(5_000));
        s.wake(4_999);
        assert!(ended(&mut s).is_empty());
        s.wake(5_000);
        assert_eq!(ended(&mut s), [(2, NO, "c".to_owned())]);
        assert_eq!(s.next_due(), Some(10_001));
        s.wake(10_000);
        assert!(ended(&mut s).is_empty(), "a's lease is live through 10_000");
        // b's deadline and the first tick after a's lease are both 10_001: the lock is b's.
        s.wake(10_001);
        assert_eq!(ended(&mut s), [(1, YES, "b".to_owned())]);
        assert_eq!(s.next_due(), None);
    }

    // A try-lock that finds the lock expired but a queue waiting grants the head first, so
    // a waiter never loses its turn to a poller between the expiry and the timer.
    #[test]
    fn a_try_lock_finds_the_queue_first() {
        let mut s = shard();
        assert_eq!(try_lock(&mut s, 0, "r", "a"), YES);
        park(&mut s, 0, 1, "r", "b", 60_000);
        assert_eq!(try_lock(&mut s, 10_001, "r", "z"), NO);
        assert_eq!(ended(&mut s), [(1, YES, "b".to_owned())]);
    }

    // A renewal moves the lease's end: the waiters wait for the new one.
    #[test]
    fn a_renewal_keeps_the_waiters_waiting() {
        let mut s = shard();
        assert_eq!(try_lock(&mut s, 0, "r", "a"), YES);
        park(&mut s, 0, 1, "r", "b", 60_000);
        let renew = OpKind::Renew { expiry_s: 30 };
        assert_eq!(
            s.execute(5_000, renew, S, b"r", b"a"),
            Answer::Renew(UnlockStatus::Success)
        );
        s.wake(10_001);
        assert!(ended(&mut s).is_empty(), "renewed through 35_000");
        assert_eq!(s.next_due(), Some(35_001));
        s.wake(35_000);
        assert!(ended(&mut s).is_empty());
        s.wake(35_001);
        assert_eq!(ended(&mut s), [(1, YES, "b".to_owned())]);
    }

    // A cancelled waiter leaves its queue (answered only to free its slot) and is never
    // granted; the others keep their order. A cancel that finds nothing does nothing.
    #[test]
    fn cancelled_waiters_are_never_granted() {
        let mut s = shard();
        assert_eq!(try_lock(&mut s, 0, "r", "a"), YES);
        park(&mut s, 0, 1, "r", "b", 60_000);
        park(&mut s, 0, 2, "r", "c", 60_000);
        s.cancel(reply(1));
        assert_eq!(ended(&mut s), [(1, NO, "b".to_owned())]);
        s.cancel(reply(1));
        assert!(ended(&mut s).is_empty());
        assert_eq!(
            unlock(&mut s, 1, "r", "a"),
            Answer::Unlock(UnlockStatus::Success)
        );
        assert_eq!(ended(&mut s), [(2, YES, "c".to_owned())]);
        assert_eq!(s.waiters(), 0);
    }

    // Shutdown answers every waiter `false`, and nothing waits after it.
    #[test]
    fn closing_answers_every_waiter() {
        let mut s = shard();
        assert_eq!(try_lock(&mut s, 0, "r", "a"), YES);
        assert_eq!(try_lock(&mut s, 0, "q", "a"), YES);
        park(&mut s, 0, 1, "r", "b", 60_000);
        park(&mut s, 0, 2, "q", "c", 60_000);
        s.close_waiting();
        let mut closed = ended(&mut s);
        closed.sort_by_key(|e| e.0);
        assert_eq!(closed, [(1, NO, "b".to_owned()), (2, NO, "c".to_owned())]);
        assert_eq!(s.next_due(), None);
        park(&mut s, 1, 3, "r", "d", 60_000);
        assert_eq!(ended(&mut s), [(3, NO, "d".to_owned())]);
        assert_eq!(s.waiters(), 0);
    }

    // A waiter parked while the lock went free meanwhile is granted at once; the holder
    // parking on its own lock is refused.
    #[test]
    fn parking_on_a_free_lock_grants_it() {
        let mut s = shard();
        park(&mut s, 0, 1, "r", "a", 1_000);
        assert_eq!(ended(&mut s), [(1, YES, "a".to_owned())]);
        park(&mut s, 0, 2, "r", "a", 1_000);
        assert_eq!(ended(&mut s), [(2, NO, "a".to_owned())]);
        assert_eq!(s.waiters(), 0);
    }

    // With a data dir, a waiter is granted with a fencing token, and after a crash not
    // before the refusal ends: then at once.
    #[test]
    fn fenced_waiters_wait_out_the_refusal() {
        let mut table = LeaseTable::new(64);
        table.enable_fencing(1);
        let mut s = Shard::new(ShardId(0), 1, table, vec![false], Some(3_000));
        park(&mut s, 0, 1, "r", "a", 60_000);
        assert!(ended(&mut s).is_empty());
        assert_eq!(s.next_due(), Some(3_000));
        s.wake(3_000);
        let got = ended(&mut s);
        assert!(
            matches!(
                got[..],
                [(
                    1,
                    Answer::Granted {
                        token: 1,
                        last_live_ms: 13_000
                    },
                    _
                )]
            ),
            "{got:?}"
        );
    }
}
