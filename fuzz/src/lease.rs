//! `lease_ops`: sequences of operations on `dlockd::lease::LeaseTable`, through its public API
//! only, and on a plain model (a `BTreeMap`); every answer must agree, after every step.
//!
//! The model is the contract's lock semantics and nothing more: a lease granted at `g` for
//! `t` ms is live on every tick of `g ..= g + t` (saturating), a try-lock is granted iff no
//! lease is live for the key, an unlock answers by the live lease's owner, and the table is
//! full when `max_leases` leases are live (the table reclaims expired ones before it says
//! so). The model never reclaims, so it also checks that reclaiming never changes an answer.
//!
//! Besides the answers: `len()` never drops below the live leases nor passes `max_leases`;
//! `advance` returns what it removed; after `advance(now)` the wheel holds no more leases
//! than are live at `now` (`scheduled()`), and the table no more than those plus the ones
//! whose first dead tick is `now`; `advance_at_most` removes at most its budget, and once it
//! says it has finished, the same holds as after `advance`.
//!
//! Time only moves forward, by a few ticks, by about a second, by jumps up to 2^42 ms, or
//! exactly onto the last live tick of a lease (or the tick after). It starts at 0, anywhere
//! below 2^42 ms, or within 2^42 ms of `u64::MAX`, where leases' ends saturate.

use std::collections::BTreeMap;

use dlockd::lease::{Advanced, LeaseError, LeaseTable, StoreId, UnlockStatus};

use super::wire::{Reader, Writer};

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
/// The most operations one input runs.
const MAX_OPS: usize = 256;

/// One input: where the clock starts, the table's bound, the operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRun {
    pub start_ms: u64,
    pub max_leases: usize,
    pub ops: Vec<LeaseOp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseOp {
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
}

impl LeaseRun {
    pub fn read(r: &mut Reader<'_>) -> Self {
        let start_ms = match r.below(4) {
            0 => 0,
            1 => r.uint::<6>() & ((1 << 42) - 1),
            2 => (1 << 42) - 3,
            // Where a lease's end saturates: it must then never end.
            _ => u64::MAX - (r.uint::<6>() & ((1 << 42) - 1)),
        };
        let max_leases = 1 + r.below(8);
        let mut ops = Vec::new();
        while !r.is_empty() && ops.len() < MAX_OPS {
            ops.push(LeaseOp::read(r));
        }
        LeaseRun {
            start_ms,
            max_leases,
            ops,
        }
    }

    /// The input that [`LeaseRun::read`] reads back as `self` (the start must be one it
    /// can produce).
    pub fn write(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self.start_ms {
            0 => w.choice(0),
            ms if ms == (1 << 42) - 3 => w.choice(2),
            ms if ms < 1 << 42 => w.choice(1).uint::<6>(ms),
            ms => w.choice(3).uint::<6>(u64::MAX - ms),
        };
        w.choice(self.max_leases - 1);
        for op in &self.ops {
            op.write(&mut w);
        }
        w.out
    }
}

impl<'a> arbitrary::Arbitrary<'a> for LeaseRun {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let data = u.bytes(u.len())?;
        Ok(LeaseRun::read(&mut Reader::new(data)))
    }
}

impl LeaseOp {
    fn read(r: &mut Reader<'_>) -> Self {
        let key = |r: &mut Reader<'_>| (r.below(STORES.into()) as u16, r.below(RESOURCES.len()));
        match r.below(7) {
            0 => {
                let (store, resource) = key(r);
                let owner = r.below(OWNERS.len());
                let ttl_ms = match r.below(5) {
                    0 => r.uint::<1>(),
                    1 => r.uint::<2>(),
                    2 => (1 + r.uint::<1>() % 10) * 1000,
                    3 => (1 + r.uint::<4>() % 2_147_483_647) * 1000,
                    _ => MAX_TTL_MS,
                };
                LeaseOp::TryLock {
                    store,
                    resource,
                    owner,
                    ttl_ms,
                }
            }
            1 => {
                let (store, resource) = key(r);
                let owner = r.below(OWNERS.len());
                LeaseOp::Unlock {
                    store,
                    resource,
                    owner,
                }
            }
            2 => {
                let (store, resource) = key(r);
                LeaseOp::Holder { store, resource }
            }
            3 => LeaseOp::Advance,
            4 => LeaseOp::AdvanceAtMost { budget: r.below(4) },
            5 => {
                let ms = match r.below(3) {
                    0 => r.uint::<1>() % 6,
                    1 => 995 + r.uint::<1>() % 11,
                    _ => {
                        let bits = r.uint::<1>() % 43;
                        r.uint::<6>() & ((1u64 << bits) - 1)
                    }
                };
                LeaseOp::Wait { ms }
            }
            _ => LeaseOp::ToEnd {
                pick: r.below(256),
                after: r.flag(),
            },
        }
    }

    /// Writes an operation [`LeaseOp::read`] can produce: ttls of 0 to 65 535 ms, whole
    /// seconds or the longest; waits of 0 to 5 ms, 995 to 1005 ms, or below 2^42 ms.
    fn write(&self, w: &mut Writer) {
        match *self {
            LeaseOp::TryLock {
                store,
                resource,
                owner,
                ttl_ms,
            } => {
                w.choice(0)
                    .choice(store.into())
                    .choice(resource)
                    .choice(owner);
                match ttl_ms {
                    MAX_TTL_MS => w.choice(4),
                    ms if ms < 1 << 16 => w.choice(1).uint::<2>(ms),
                    ms => w.choice(3).uint::<4>(ms / 1000 - 1),
                };
            }
            LeaseOp::Unlock {
                store,
                resource,
                owner,
            } => {
                w.choice(1)
                    .choice(store.into())
                    .choice(resource)
                    .choice(owner);
            }
            LeaseOp::Holder { store, resource } => {
                w.choice(2).choice(store.into()).choice(resource);
            }
            LeaseOp::Advance => {
                w.choice(3);
            }
            LeaseOp::AdvanceAtMost { budget } => {
                w.choice(4).choice(budget);
            }
            LeaseOp::Wait { ms } => {
                match ms {
                    0..=5 => w.choice(5).choice(0).uint::<1>(ms),
                    995..=1005 => w.choice(5).choice(1).uint::<1>(ms - 995),
                    ms => w.choice(5).choice(2).uint::<1>(42).uint::<6>(ms),
                };
            }
            LeaseOp::ToEnd { pick, after } => {
                w.choice(6).choice(pick).flag(after);
            }
        }
    }
}

/// The leases of one store in the model: resource to `(owner, last_live_ms)`.
type StoreLeases = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// The reference lease store: the last live tick of each lease, never reclaimed.
#[derive(Debug, Default)]
pub struct Model {
    leases: BTreeMap<u16, StoreLeases>,
}

impl Model {
    fn live(&self, store: u16, resource: &[u8], now_ms: u64) -> Option<&(Vec<u8>, u64)> {
        self.leases
            .get(&store)?
            .get(resource)
            .filter(|(_, last_live_ms)| now_ms <= *last_live_ms)
    }

    fn all(&self) -> impl Iterator<Item = &(Vec<u8>, u64)> {
        self.leases.values().flat_map(BTreeMap::values)
    }

    pub fn live_count(&self, now_ms: u64) -> usize {
        self.all().filter(|l| now_ms <= l.1).count()
    }

    /// Leases whose first dead tick is `now_ms`.
    pub fn ended_at(&self, now_ms: u64) -> usize {
        self.all()
            .filter(|l| l.1.checked_add(1) == Some(now_ms))
            .count()
    }

    pub fn try_lock(
        &mut self,
        store: u16,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
        max_leases: usize,
    ) -> Result<bool, LeaseError> {
        if self.live(store, resource, now_ms).is_some() {
            return Ok(false);
        }
        if self.live_count(now_ms) >= max_leases {
            return Err(LeaseError::TableFull { max_leases });
        }
        let lease = (owner.to_vec(), now_ms.saturating_add(ttl_ms));
        self.leases
            .entry(store)
            .or_default()
            .insert(resource.to_vec(), lease);
        Ok(true)
    }

    pub fn unlock(
        &mut self,
        store: u16,
        resource: &[u8],
        owner: &[u8],
        now_ms: u64,
    ) -> UnlockStatus {
        match self.live(store, resource, now_ms) {
            None => UnlockStatus::LockDoesNotExist,
            Some((holder, _)) if holder == owner => {
                if let Some(leases) = self.leases.get_mut(&store) {
                    leases.remove(resource);
                }
                UnlockStatus::Success
            }
            Some(_) => UnlockStatus::LockBelongsToOthers,
        }
    }

    /// The live holder and its remaining ticks, as `LeaseTable::holder` answers.
    pub fn holder(&self, store: u16, resource: &[u8], now_ms: u64) -> Option<(&[u8], u64)> {
        self.live(store, resource, now_ms)
            .map(|(owner, last_live_ms)| (owner.as_slice(), last_live_ms - now_ms))
    }

    /// The last live tick of the `pick`-th lease (modulo their number), if any.
    fn last_live_of(&self, pick: usize) -> Option<u64> {
        let count = self.all().count().max(1);
        self.all().nth(pick % count).map(|l| l.1)
    }
}

/// The lease table's public API, so that a planted fault can stand in for the real table in
/// `tests/fuzz_corpus.rs`.
/// (`len` only: the checks compare counts, never ask for emptiness.)
#[allow(clippy::len_without_is_empty)]
pub trait Table {
    fn try_lock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError>;
    fn unlock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        now_ms: u64,
    ) -> UnlockStatus;
    fn advance(&mut self, now_ms: u64) -> usize;
    fn advance_at_most(&mut self, now_ms: u64, budget: usize) -> Advanced;
    fn holder(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Option<(&[u8], u64)>;
    fn len(&self) -> usize;
    fn scheduled(&self) -> usize;
}

impl Table for LeaseTable {
    fn try_lock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        LeaseTable::try_lock(self, store, resource, owner, ttl_ms, now_ms)
    }
    fn unlock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        now_ms: u64,
    ) -> UnlockStatus {
        LeaseTable::unlock(self, store, resource, owner, now_ms)
    }
    fn advance(&mut self, now_ms: u64) -> usize {
        LeaseTable::advance(self, now_ms)
    }
    fn advance_at_most(&mut self, now_ms: u64, budget: usize) -> Advanced {
        LeaseTable::advance_at_most(self, now_ms, budget)
    }
    fn holder(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Option<(&[u8], u64)> {
        LeaseTable::holder(self, store, resource, now_ms)
    }
    fn len(&self) -> usize {
        LeaseTable::len(self)
    }
    fn scheduled(&self) -> usize {
        LeaseTable::scheduled(self)
    }
}

pub fn check(data: &[u8]) {
    let run = LeaseRun::read(&mut Reader::new(data));
    let mut table = LeaseTable::new(run.max_leases);
    run_against(&run, &mut table);
}

/// Runs `run` on `table` and the model; panics at the first disagreement.
pub fn run_against(run: &LeaseRun, table: &mut dyn Table) {
    let max_leases = run.max_leases;
    let mut model = Model::default();
    let mut now = run.start_ms;
    for (step, op) in run.ops.iter().enumerate() {
        // Only formatted when an assertion fails.
        let at = |what: &str, now: u64| format!("step {step} {op:?} at {now}: {what}");
        match *op {
            LeaseOp::TryLock {
                store,
                resource,
                owner,
                ttl_ms,
            } => {
                let (resource, owner) = (RESOURCES[resource], OWNERS[owner]);
                let expected = model.try_lock(store, resource, owner, ttl_ms, now, max_leases);
                let got = table.try_lock(StoreId(store), resource, owner, ttl_ms, now);
                assert_eq!(got, expected, "{}", at("try_lock", now));
            }
            LeaseOp::Unlock {
                store,
                resource,
                owner,
            } => {
                let (resource, owner) = (RESOURCES[resource], OWNERS[owner]);
                let expected = model.unlock(store, resource, owner, now);
                let got = table.unlock(StoreId(store), resource, owner, now);
                assert_eq!(got, expected, "{}", at("unlock", now));
            }
            LeaseOp::Holder { store, resource } => {
                let resource = RESOURCES[resource];
                let got = table.holder(StoreId(store), resource, now);
                assert_eq!(
                    got,
                    model.holder(store, resource, now),
                    "{}",
                    at("holder", now)
                );
            }
            LeaseOp::Advance => {
                let before = table.len();
                let removed = table.advance(now);
                assert_eq!(
                    before - removed,
                    table.len(),
                    "{}",
                    at("advance's count", now)
                );
                check_reclaimed(&*table, &model, now, &at("after advance", now));
            }
            LeaseOp::AdvanceAtMost { budget } => {
                let before = table.len();
                let step = table.advance_at_most(now, budget);
                let removed = step.reclaimed;
                assert!(removed <= budget, "{}", at("over budget", now));
                assert_eq!(
                    before - removed,
                    table.len(),
                    "{}",
                    at("advance_at_most's count", now)
                );
                if step.finished {
                    check_reclaimed(&*table, &model, now, &at("after advance_at_most", now));
                }
            }
            LeaseOp::Wait { ms } => now = now.saturating_add(ms),
            LeaseOp::ToEnd { pick, after } => {
                if let Some(last_live_ms) = model.last_live_of(pick) {
                    now = now.max(last_live_ms.saturating_add(u64::from(after)));
                }
            }
        }
        for store in 0..STORES {
            for &resource in &RESOURCES {
                assert_eq!(
                    table.holder(StoreId(store), resource, now),
                    model.holder(store, resource, now),
                    "{}",
                    at(&format!("holder({store}, {resource:?})"), now)
                );
            }
        }
        let live = model.live_count(now);
        assert!(
            table.len() >= live,
            "{}",
            at("a live lease is missing", now)
        );
        assert!(
            table.len() <= max_leases,
            "{}",
            at("more leases than max_leases", now)
        );
        assert!(
            table.scheduled() <= table.len(),
            "{}",
            at("the wheel holds unknown leases", now)
        );
    }
}

/// What a finished reclaim at `now_ms` leaves: no expired lease in the wheel, and in the
/// table at most the leases whose first dead tick is `now_ms` besides the live ones.
fn check_reclaimed(table: &dyn Table, model: &Model, now_ms: u64, at: &str) {
    let live = model.live_count(now_ms);
    assert!(
        table.scheduled() <= live,
        "{at}: the wheel holds {} leases, {live} are live",
        table.scheduled()
    );
    assert!(
        table.len() <= live + model.ended_at(now_ms),
        "{at}: the table stores {} leases, {live} are live and {} ended at this tick",
        table.len(),
        model.ended_at(now_ms)
    );
}
