//! The reference for [`LeaseTable`], and the one check both of its random drivers run: the
//! property test (`tests/lease_model.rs`) and the `lease_ops` fuzz target (`fuzz/src/lease.rs`).
//! Not a stable API.
//!
//! [`Model`] is the contract's lock semantics over a plain `BTreeMap`, and nothing more:
//!
//! - A lease granted at `g` for `t` ms is live on every tick of `g ..= g + t` (saturating: an
//!   end past `u64::MAX` never comes). A try-lock is granted iff no lease is live for the key;
//!   an unlock answers by the live lease's owner; the table is full when `max_leases` leases
//!   are live (the table reclaims expired ones before it says so).
//! - Fencing, once enabled with a first token, stamps every grant of `try_lock_fenced` with
//!   the next token: the first grant gets the first token, each later one the next, so tokens
//!   grow strictly across the whole table; a refused try-lock takes none. Enabling again never
//!   lowers the next token. With fencing off, `try_lock_fenced` grants with token 0 and `fence`
//!   knows of none.
//! - A restored lease (owner, last live tick, token) is held through its last live tick (or
//!   through `now_ms`, if that tick has passed), under the same rules as a grant (refused while
//!   a live lease holds the key, full at `max_leases`). With fencing on it keeps its own token,
//!   and every token handed out after it is larger.
//! - A lease granted by plain `try_lock` has no token, whether fencing is on or not: the table
//!   does not promise what `fence` says of it (it answers from whatever its slot last held).
//!   The server grants only through `try_lock_fenced` once fencing is on, and so does
//!   [`Checker`].
//!
//! The model never reclaims, so comparing its answers with the table's also checks that
//! reclaiming never changes an answer.
//!
//! [`Checker`] runs [`Op`]s on a [`Table`] and on the model and compares every answer, after
//! every step: the holder and fencing token of every key, the bounds on what the table stores
//! (never below the live leases, never above `max_leases`) and on what its wheel holds, and,
//! after a finished `advance`, that no expired lease is left in the wheel.

use std::collections::BTreeMap;
use std::fmt;

use super::table::{Advanced, LeaseTable, LiveLease};
use super::types::{LeaseError, Renewal, StoreId, UnlockStatus};

/// The longest lease the API asks for: an int32 of seconds.
pub const MAX_TTL_MS: u64 = 2_147_483_647 * 1000;
/// Stores the operations use.
pub const STORES: u16 = 3;
/// Resources, some prefixes of others, two of equal length that differ in the last byte.
pub const RESOURCES: [&[u8]; 6] = [
    b"order-1",
    b"order-10",
    b"5f0c2f3e-9a51-4a5b-8d7e-0c1b2a3d4e5f",
    b"5f0c2f3e-9a51-4a5b-8d7e-0c1b2a3d4e50",
    b"",
    b"\xff\x00|",
];
/// Owners: two of the same length (a new owner may reuse the old one's bytes), and others.
pub const OWNERS: [&[u8]; 4] = [
    b"8d1b4c6a-2f3e-4b5c-9d0e-1f2a3b4c5d6e",
    b"8d1b4c6a-2f3e-4b5c-9d0e-1f2a3b4c5d6f",
    b"worker-b",
    b"",
];

/// One stored lease of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Lease {
    owner: Vec<u8>,
    last_live_ms: u64,
    /// `None`: granted by plain `try_lock`, or while fencing was off.
    token: Option<u64>,
}

/// The reference lease table: the last live tick (and token) of each lease, never reclaimed.
#[derive(Clone, Debug)]
pub struct Model {
    /// Store, then resource, to its lease.
    leases: BTreeMap<StoreId, BTreeMap<Vec<u8>, Lease>>,
    max_leases: usize,
    /// The token the next fenced grant gets; `None` while fencing is off.
    next_token: Option<u64>,
}

impl Model {
    pub fn new(max_leases: usize) -> Self {
        Model {
            leases: BTreeMap::new(),
            max_leases,
            next_token: None,
        }
    }

    fn live(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Option<&Lease> {
        self.leases
            .get(&store)?
            .get(resource)
            .filter(|lease| now_ms <= lease.last_live_ms)
    }

    /// Every stored lease, in order of store and resource.
    fn all(&self) -> impl Iterator<Item = (StoreId, &[u8], &Lease)> {
        self.leases.iter().flat_map(|(&store, leases)| {
            leases
                .iter()
                .map(move |(resource, lease)| (store, resource.as_slice(), lease))
        })
    }

    /// Leases live at `now_ms`.
    pub fn live_count(&self, now_ms: u64) -> usize {
        self.all()
            .filter(|(_, _, lease)| now_ms <= lease.last_live_ms)
            .count()
    }

    /// Leases whose first dead tick is `now_ms`: those a reclaimer may keep one more tick.
    pub fn ended_at(&self, now_ms: u64) -> usize {
        self.all()
            .filter(|(_, _, lease)| lease.last_live_ms.checked_add(1) == Some(now_ms))
            .count()
    }

    /// The last live tick of the `pick`-th lease ever stored and not unlocked (modulo their
    /// number; in order of store, then resource), if any.
    pub fn last_live_of(&self, pick: usize) -> Option<u64> {
        let count = self.all().count().max(1);
        self.all()
            .nth(pick % count)
            .map(|(_, _, lease)| lease.last_live_ms)
    }

    /// Whether fencing is on.
    pub fn fencing(&self) -> bool {
        self.next_token.is_some()
    }

    /// The token the next fenced grant gets, if fencing is on.
    pub fn next_token(&self) -> Option<u64> {
        self.next_token
    }

    /// Whether a lease live at `now_ms` has no token (granted or restored without one).
    pub fn has_live_without_token(&self, now_ms: u64) -> bool {
        self.all()
            .any(|(_, _, lease)| now_ms <= lease.last_live_ms && lease.token.is_none())
    }

    /// Whether a new lease may go in: refused while one is live, full at `max_leases`.
    fn admit(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Result<bool, LeaseError> {
        if self.live(store, resource, now_ms).is_some() {
            return Ok(false);
        }
        if self.live_count(now_ms) >= self.max_leases {
            return Err(LeaseError::TableFull {
                max_leases: self.max_leases,
            });
        }
        Ok(true)
    }

    fn put(&mut self, store: StoreId, resource: &[u8], lease: Lease) {
        self.leases
            .entry(store)
            .or_default()
            .insert(resource.to_vec(), lease);
    }

    /// As [`LeaseTable::try_lock`]: the lease it grants has no token.
    pub fn try_lock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        let granted = self.admit(store, resource, now_ms)?;
        if granted {
            let lease = Lease {
                owner: owner.to_vec(),
                last_live_ms: now_ms.saturating_add(ttl_ms),
                token: None,
            };
            self.put(store, resource, lease);
        }
        Ok(granted)
    }

    /// As [`LeaseTable::enable_fencing`].
    pub fn enable_fencing(&mut self, first: u64) {
        self.next_token = Some(self.next_token.map_or(first, |next| next.max(first)));
    }

    /// As [`LeaseTable::try_lock_fenced`]: the granted lease takes the next token (0, and
    /// none kept, with fencing off).
    pub fn try_lock_fenced(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, LeaseError> {
        if !self.admit(store, resource, now_ms)? {
            return Ok(None);
        }
        let token = self.next_token;
        if let Some(next) = token {
            self.next_token = Some(next.saturating_add(1));
        }
        let lease = Lease {
            owner: owner.to_vec(),
            last_live_ms: now_ms.saturating_add(ttl_ms),
            token,
        };
        self.put(store, resource, lease);
        Ok(Some(token.unwrap_or(0)))
    }

    /// As [`LeaseTable::restore`]: held through `last_live_ms` (at least through `now_ms`),
    /// with `token` when fencing is on; later tokens are larger.
    pub fn restore(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        last_live_ms: u64,
        token: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        if !self.admit(store, resource, now_ms)? {
            return Ok(false);
        }
        let token = self.next_token.map(|next| {
            self.next_token = Some(next.max(token.saturating_add(1)));
            token
        });
        let lease = Lease {
            owner: owner.to_vec(),
            last_live_ms: last_live_ms.max(now_ms),
            token,
        };
        self.put(store, resource, lease);
        Ok(true)
    }

    /// As [`LeaseTable::unlock`].
    pub fn unlock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        now_ms: u64,
    ) -> UnlockStatus {
        match self.live(store, resource, now_ms) {
            None => UnlockStatus::LockDoesNotExist,
            Some(lease) if lease.owner == owner => {
                if let Some(leases) = self.leases.get_mut(&store) {
                    leases.remove(resource);
                }
                UnlockStatus::Success
            }
            Some(_) => UnlockStatus::LockBelongsToOthers,
        }
    }

    /// As [`LeaseTable::renew`]: the owner's live lease lives `ttl_ms` from `now_ms`, its token
    /// kept; an expired lease stays expired.
    pub fn renew(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Renewal {
        let fencing = self.next_token.is_some();
        let Some(lease) = self
            .leases
            .get_mut(&store)
            .and_then(|leases| leases.get_mut(resource))
            .filter(|lease| now_ms <= lease.last_live_ms)
        else {
            return Renewal::Refused(UnlockStatus::LockDoesNotExist);
        };
        if lease.owner != owner {
            return Renewal::Refused(UnlockStatus::LockBelongsToOthers);
        }
        lease.last_live_ms = now_ms.saturating_add(ttl_ms);
        Renewal::Renewed {
            last_live_ms: lease.last_live_ms,
            token: if fencing { lease.token.unwrap_or(0) } else { 0 },
        }
    }

    /// As [`LeaseTable::holder`]: the live holder and its remaining ticks.
    pub fn holder(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Option<(&[u8], u64)> {
        self.live(store, resource, now_ms)
            .map(|lease| (lease.owner.as_slice(), lease.last_live_ms - now_ms))
    }

    /// As [`LeaseTable::fence`]: the live lease's token, with fencing on.
    pub fn fence(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Option<u64> {
        self.next_token?;
        self.live(store, resource, now_ms)?.token
    }

    /// As [`LeaseTable::live`], in order of store and resource: every live lease as
    /// (store, resource, owner, last live tick, token or 0).
    pub fn live_leases(&self, now_ms: u64) -> Vec<Saved> {
        self.all()
            .filter(|(_, _, lease)| now_ms <= lease.last_live_ms)
            .map(|(store, resource, lease)| Saved {
                store,
                resource: resource.to_vec(),
                owner: lease.owner.clone(),
                last_live_ms: lease.last_live_ms,
                token: lease.token.unwrap_or(0),
            })
            .collect()
    }
}

/// A live lease copied out of a table or the model, as a snapshot saves it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Saved {
    pub store: StoreId,
    pub resource: Vec<u8>,
    pub owner: Vec<u8>,
    pub last_live_ms: u64,
    pub token: u64,
}

impl From<LiveLease<'_>> for Saved {
    fn from(lease: LiveLease<'_>) -> Self {
        Saved {
            store: lease.store,
            resource: lease.resource.to_vec(),
            owner: lease.owner.to_vec(),
            last_live_ms: lease.last_live_ms,
            token: lease.token,
        }
    }
}

/// The lease table's public API, so that a planted fault can stand in for the real table.
/// Each method calls the same method of the [`LeaseTable`] underneath, unless a fault
/// overrides it. (`len` only: the checks compare counts, never ask for emptiness.)
#[allow(clippy::len_without_is_empty)]
pub trait Table {
    /// The real table underneath.
    fn table(&self) -> &LeaseTable;
    fn table_mut(&mut self) -> &mut LeaseTable;

    fn try_lock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        self.table_mut()
            .try_lock(store, resource, owner, ttl_ms, now_ms)
    }
    fn enable_fencing(&mut self, first: u64) {
        self.table_mut().enable_fencing(first);
    }
    fn try_lock_fenced(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, LeaseError> {
        self.table_mut()
            .try_lock_fenced(store, resource, owner, ttl_ms, now_ms)
    }
    fn restore(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        last_live_ms: u64,
        token: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        self.table_mut()
            .restore(store, resource, owner, last_live_ms, token, now_ms)
    }
    fn unlock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        now_ms: u64,
    ) -> UnlockStatus {
        self.table_mut().unlock(store, resource, owner, now_ms)
    }
    fn renew(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Renewal {
        self.table_mut()
            .renew(store, resource, owner, ttl_ms, now_ms)
    }
    fn advance(&mut self, now_ms: u64) -> usize {
        self.table_mut().advance(now_ms)
    }
    fn advance_at_most(&mut self, now_ms: u64, budget: usize) -> Advanced {
        self.table_mut().advance_at_most(now_ms, budget)
    }
    fn holder(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Option<(&[u8], u64)> {
        self.table().holder(store, resource, now_ms)
    }
    fn fence(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Option<u64> {
        self.table().fence(store, resource, now_ms)
    }
    /// [`LeaseTable::live`], sorted.
    fn live(&self, now_ms: u64) -> Vec<Saved> {
        let mut live: Vec<Saved> = self.table().live(now_ms).map(Saved::from).collect();
        live.sort();
        live
    }
    fn len(&self) -> usize {
        self.table().len()
    }
    fn scheduled(&self) -> usize {
        self.table().scheduled()
    }
}

impl Table for LeaseTable {
    fn table(&self) -> &LeaseTable {
        self
    }
    fn table_mut(&mut self) -> &mut LeaseTable {
        self
    }
}

/// A value `by` away from a base, before or after it (saturating): a restored lease's end
/// from the current tick, its token from the next token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset {
    pub back: bool,
    pub by: u64,
}

impl Offset {
    pub fn from(self, base: u64) -> u64 {
        if self.back {
            base.saturating_sub(self.by)
        } else {
            base.saturating_add(self.by)
        }
    }
}

/// One step of a run. Keys and owners are indices into [`RESOURCES`] and [`OWNERS`]; `store`
/// is below [`STORES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A try-lock; once fencing is on, through `try_lock_fenced`, as the server does.
    TryLock {
        store: u16,
        resource: usize,
        owner: usize,
        ttl_ms: u64,
    },
    Unlock {
        store: u16,
        resource: usize,
        owner: usize,
    },
    Holder {
        store: u16,
        resource: usize,
    },
    Advance,
    AdvanceAtMost {
        budget: usize,
    },
    /// The clock moves forward by this much.
    Wait {
        ms: u64,
    },
    /// The clock moves to the last live tick of the `pick`-th lease of the model (or the
    /// tick after it), unless that is in the past.
    ToEnd {
        pick: usize,
        after: bool,
    },
    /// A try-lock through `try_lock_fenced`, fencing on or off.
    TryLockFenced {
        store: u16,
        resource: usize,
        owner: usize,
        ttl_ms: u64,
    },
    /// Fencing is enabled (or its start raised) with this first token. Skipped while a live
    /// lease has no token: the server enables fencing before its first grant.
    EnableFencing {
        first: u64,
    },
    /// A saved lease is put back, its last live tick `end` from now and its token `token`
    /// from the next token (from 0 with fencing off).
    Restore {
        store: u16,
        resource: usize,
        owner: usize,
        end: Offset,
        token: Offset,
    },
    /// The live leases are listed, as for a snapshot.
    Live,
    /// A renewal of the lease by `owner`, to live `ttl_ms` from now.
    Renew {
        store: u16,
        resource: usize,
        owner: usize,
        ttl_ms: u64,
    },
}

/// Returns `Err` with its message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+));
        }
    };
}

/// Runs [`Op`]s on a table and on the [`Model`], and compares them after every step.
#[derive(Debug)]
pub struct Checker {
    model: Model,
    max_leases: usize,
    now_ms: u64,
    step: usize,
    /// The largest token the table has handed out or been given back with fencing on.
    top_token: Option<u64>,
}

impl Checker {
    /// A run on a table just made with `LeaseTable::new(max_leases)`, from `start_ms`.
    pub fn new(start_ms: u64, max_leases: usize) -> Self {
        Checker {
            model: Model::new(max_leases),
            max_leases,
            now_ms: start_ms,
            step: 0,
            top_token: None,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs `op` on `table` and the model; `Err` says where they first disagree, or which
    /// property the table broke.
    pub fn step(&mut self, table: &mut dyn Table, op: &Op) -> Result<(), String> {
        let step = self.step;
        self.step += 1;
        self.apply(table, op)
            .and_then(|()| self.compare(table))
            .map_err(|what| format!("step {step} {op:?} at {}: {what}", self.now_ms))
    }

    fn apply(&mut self, table: &mut dyn Table, op: &Op) -> Result<(), String> {
        let now = self.now_ms;
        match *op {
            Op::TryLock {
                store,
                resource,
                owner,
                ttl_ms,
            } if !self.model.fencing() => {
                let (store, resource, owner) = (StoreId(store), RESOURCES[resource], OWNERS[owner]);
                let expected = self.model.try_lock(store, resource, owner, ttl_ms, now);
                let got = table.try_lock(store, resource, owner, ttl_ms, now);
                ensure!(
                    got == expected,
                    "try_lock: {got:?}, the model says {expected:?}"
                );
            }
            Op::TryLock {
                store,
                resource,
                owner,
                ttl_ms,
            }
            | Op::TryLockFenced {
                store,
                resource,
                owner,
                ttl_ms,
            } => self.try_lock_fenced(table, store, resource, owner, ttl_ms)?,
            Op::EnableFencing { first } => {
                if !self.model.has_live_without_token(now) {
                    self.model.enable_fencing(first);
                    table.enable_fencing(first);
                }
            }
            Op::Restore {
                store,
                resource,
                owner,
                end,
                token,
            } => self.restore(table, store, resource, owner, end, token)?,
            Op::Unlock {
                store,
                resource,
                owner,
            } => {
                let (store, resource, owner) = (StoreId(store), RESOURCES[resource], OWNERS[owner]);
                let expected = self.model.unlock(store, resource, owner, now);
                let got = table.unlock(store, resource, owner, now);
                ensure!(
                    got == expected,
                    "unlock: {got:?}, the model says {expected:?}"
                );
            }
            Op::Holder { store, resource } => {
                let (store, resource) = (StoreId(store), RESOURCES[resource]);
                let expected = self.model.holder(store, resource, now);
                let got = table.holder(store, resource, now);
                ensure!(
                    got == expected,
                    "holder: {}, the model says {}",
                    Held(got),
                    Held(expected)
                );
            }
            Op::Advance => self.advance(table, None)?,
            Op::AdvanceAtMost { budget } => self.advance(table, Some(budget))?,
            Op::Wait { ms } => self.now_ms = now.saturating_add(ms),
            Op::ToEnd { pick, after } => {
                if let Some(last_live_ms) = self.model.last_live_of(pick) {
                    self.now_ms = now.max(last_live_ms.saturating_add(u64::from(after)));
                }
            }
            Op::Renew {
                store,
                resource,
                owner,
                ttl_ms,
            } => {
                let (store, resource, owner) = (StoreId(store), RESOURCES[resource], OWNERS[owner]);
                let expected = self.model.renew(store, resource, owner, ttl_ms, now);
                let got = table.renew(store, resource, owner, ttl_ms, now);
                ensure!(
                    got == expected,
                    "renew: {got:?}, the model says {expected:?}"
                );
            }
            Op::Live => {
                let expected = self.model.live_leases(now);
                let got = table.live(now);
                ensure!(
                    got == expected,
                    "live: {got:?}, the model says {expected:?}"
                );
            }
        }
        Ok(())
    }

    /// A fenced try-lock: the model's answer, and a granted token above every one before.
    fn try_lock_fenced(
        &mut self,
        table: &mut dyn Table,
        store: u16,
        resource: usize,
        owner: usize,
        ttl_ms: u64,
    ) -> Result<(), String> {
        let now = self.now_ms;
        let (store, resource, owner) = (StoreId(store), RESOURCES[resource], OWNERS[owner]);
        let expected = self
            .model
            .try_lock_fenced(store, resource, owner, ttl_ms, now);
        let got = table.try_lock_fenced(store, resource, owner, ttl_ms, now);
        if let (Ok(Some(token)), true) = (got, self.model.fencing()) {
            if let Some(top) = self.top_token {
                ensure!(
                    token > top,
                    "try_lock_fenced: token {token} does not grow past {top}, the largest \
                     before it"
                );
            }
            self.top_token = Some(token);
        }
        ensure!(
            got == expected,
            "try_lock_fenced: {got:?}, the model says {expected:?}"
        );
        Ok(())
    }

    /// A restore: the model's answer; a restored token counts among those handed out.
    fn restore(
        &mut self,
        table: &mut dyn Table,
        store: u16,
        resource: usize,
        owner: usize,
        end: Offset,
        token: Offset,
    ) -> Result<(), String> {
        let now = self.now_ms;
        let (store, resource, owner) = (StoreId(store), RESOURCES[resource], OWNERS[owner]);
        let last_live_ms = end.from(now);
        let token = token.from(self.model.next_token().unwrap_or(0));
        let expected = self
            .model
            .restore(store, resource, owner, last_live_ms, token, now);
        let got = table.restore(store, resource, owner, last_live_ms, token, now);
        ensure!(
            got == expected,
            "restore (last live {last_live_ms}, token {token}): {got:?}, the model says \
             {expected:?}"
        );
        if got == Ok(true) && self.model.fencing() {
            self.top_token = self.top_token.max(Some(token));
        }
        Ok(())
    }

    /// `advance` (no budget) or `advance_at_most`: the count it reports is what it removed,
    /// within the budget, and once finished nothing expired is left.
    fn advance(&mut self, table: &mut dyn Table, budget: Option<usize>) -> Result<(), String> {
        let now = self.now_ms;
        let before = table.len();
        let (removed, finished, what) = match budget {
            None => (table.advance(now), true, "advance"),
            Some(budget) => {
                let step = table.advance_at_most(now, budget);
                ensure!(
                    step.reclaimed <= budget,
                    "over budget: removed {}",
                    step.reclaimed
                );
                (step.reclaimed, step.finished, "advance_at_most")
            }
        };
        ensure!(
            before - removed == table.len(),
            "{what}'s count: removed {removed} of {before}, {} left",
            table.len()
        );
        if finished {
            self.check_reclaimed(table, &format!("after {what}"))?;
        }
        Ok(())
    }

    /// What every step leaves: every key's holder and token as the model's, and the table's
    /// counts within their bounds.
    fn compare(&self, table: &dyn Table) -> Result<(), String> {
        let now = self.now_ms;
        for store in (0..STORES).map(StoreId) {
            for &resource in &RESOURCES {
                let expected = self.model.holder(store, resource, now);
                let got = table.holder(store, resource, now);
                ensure!(
                    got == expected,
                    "holder({}, \"{}\"): {}, the model says {}",
                    store.0,
                    resource.escape_ascii(),
                    Held(got),
                    Held(expected)
                );
                let expected = self.model.fence(store, resource, now);
                let got = table.fence(store, resource, now);
                ensure!(
                    got == expected,
                    "fence({}, \"{}\"): {got:?}, the model says {expected:?}",
                    store.0,
                    resource.escape_ascii()
                );
            }
        }
        let live = self.model.live_count(now);
        ensure!(
            table.len() >= live,
            "a live lease is missing: {} stored, {live} live",
            table.len()
        );
        ensure!(
            table.len() <= self.max_leases,
            "more leases than max_leases: {}",
            table.len()
        );
        ensure!(
            table.scheduled() <= table.len(),
            "the wheel holds unknown leases: {} of {}",
            table.scheduled(),
            table.len()
        );
        Ok(())
    }

    /// What a finished reclaim leaves: no expired lease in the wheel, and in the table at
    /// most the leases whose first dead tick is now besides the live ones.
    fn check_reclaimed(&self, table: &dyn Table, what: &str) -> Result<(), String> {
        let now = self.now_ms;
        let live = self.model.live_count(now);
        ensure!(
            table.scheduled() <= live,
            "{what}: the wheel holds {} leases, {live} are live",
            table.scheduled()
        );
        let ended = self.model.ended_at(now);
        ensure!(
            table.len() <= live + ended,
            "{what}: the table stores {} leases, {live} are live and {ended} ended at this tick",
            table.len()
        );
        Ok(())
    }
}

/// Runs `ops` from `start_ms` on `table` (new, of `max_leases`) and on the model; `Err` at the
/// first disagreement.
pub fn run(
    table: &mut dyn Table,
    start_ms: u64,
    max_leases: usize,
    ops: &[Op],
) -> Result<(), String> {
    let mut checker = Checker::new(start_ms, max_leases);
    for op in ops {
        checker.step(table, op)?;
    }
    Ok(())
}

/// A holder answer, owner as text, for messages.
struct Held<'a>(Option<(&'a [u8], u64)>);

impl fmt::Display for Held<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => write!(f, "no holder"),
            Some((owner, remaining_ms)) => {
                write!(f, "\"{}\" for {remaining_ms} ms more", owner.escape_ascii())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: StoreId = StoreId(1);

    #[test]
    fn the_model_fences_and_restores_as_its_docs_say() {
        // Protects the reference itself, against answers worked out by hand: tokens from the
        // first one, none for a refusal, never lowered by enabling again, restored leases held
        // through their ends (a passed end through now) with their tokens, later grants above.
        let mut m = Model::new(4);
        assert_eq!(m.try_lock_fenced(S, b"a", b"o", 10, 0), Ok(Some(0)));
        assert_eq!(m.fence(S, b"a", 0), None);
        assert!(m.has_live_without_token(0));
        assert!(!m.has_live_without_token(11));
        m.enable_fencing(500);
        assert_eq!(m.try_lock_fenced(S, b"q", b"a", 10, 11), Ok(Some(500)));
        assert_eq!(m.try_lock_fenced(S, b"q", b"b", 10, 12), Ok(None));
        assert_eq!(m.try_lock_fenced(S, b"q", b"b", 10, 22), Ok(Some(501)));
        m.enable_fencing(10);
        assert_eq!(m.next_token(), Some(502));
        assert_eq!(m.restore(S, b"r", b"x", 40, 7, 22), Ok(true));
        assert_eq!(m.restore(S, b"r", b"y", 90, 8, 22), Ok(false));
        assert_eq!(m.restore(S, b"s", b"x", 5, 900, 22), Ok(true));
        assert_eq!(m.holder(S, b"r", 40), Some((&b"x"[..], 0)));
        assert_eq!(m.holder(S, b"s", 22), Some((&b"x"[..], 0)));
        assert_eq!(m.fence(S, b"r", 40), Some(7));
        assert_eq!(m.fence(S, b"r", 41), None);
        assert_eq!(m.restore(S, b"t", b"x", 99, 1, 22), Ok(true));
        let full = Err(LeaseError::TableFull { max_leases: 4 });
        assert_eq!(m.try_lock_fenced(S, b"u", b"x", 10, 22), full);
        assert_eq!(m.try_lock_fenced(S, b"u", b"x", 10, 23), Ok(Some(901)));
        let live: Vec<_> = m
            .live_leases(23)
            .into_iter()
            .map(|l| (l.resource, l.token))
            .collect();
        let want = [(b"q", 501), (b"r", 7), (b"t", 1), (b"u", 901)];
        assert_eq!(live, want.map(|(r, t)| (r.to_vec(), t)));
    }
}
