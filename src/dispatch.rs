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
//! - [`Decision::Remote`]: the store lives elsewhere (Redis); the store decides.
//!
//! The caller only carries these out: it frames, asks, awaits in request order and writes.

use crate::api::{Answer, Holding, LockOp, OpKind};
use crate::lease::{LeaseTable, Renewal, StoreId, UnlockStatus};
use crate::persist::Need;
use crate::shard::{ShardId, ShardMap};

/// What to do with one lock operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Decided by this shard: send this answer (once durable, for a fenced grant).
    Answer(Answer),
    /// The shard that owns the key decides it.
    Forward(ShardId),
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
        let owner = self.map.shard_of(op.store, op.resource);
        if owner != self.id {
            return Decision::Forward(owner);
        }
        Decision::Answer(self.execute(now_ms, op.kind, op.store, op.resource, op.owner))
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
        let table = &mut self.table;
        match kind {
            OpKind::TryLock { expiry_s } => {
                let ttl_ms = u64::from(expiry_s) * 1000;
                match self.refuse_until_ms {
                    None => Answer::TryLock(table.try_lock(store, resource, owner, ttl_ms, now_ms)),
                    Some(until_ms) if now_ms < until_ms => Answer::TryLock(Ok(false)),
                    Some(_) => {
                        match table.try_lock_fenced(store, resource, owner, ttl_ms, now_ms) {
                            Ok(Some(token)) => Answer::Granted {
                                token,
                                last_live_ms: now_ms.saturating_add(ttl_ms),
                            },
                            Ok(None) => Answer::TryLock(Ok(false)),
                            Err(e) => Answer::TryLock(Err(e)),
                        }
                    }
                }
            }
            OpKind::Unlock => Answer::Unlock(table.unlock(store, resource, owner, now_ms)),
            OpKind::Renew { expiry_s } => {
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
            OpKind::Holder => Answer::Holder(match table.holder(store, resource, now_ms) {
                None => Holding::default(),
                Some((holder, remaining_ms)) => Holding {
                    locked: true,
                    owned_by_caller: !owner.is_empty() && holder == owner,
                    remaining_ms,
                    waiters: 0,
                },
            }),
        }
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
