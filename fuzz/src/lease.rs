//! `lease_ops`: sequences of operations on `dlockd::lease::LeaseTable`, through its public API
//! only, and on the library's reference model (`dlockd::lease::model`); every answer must
//! agree, after every step.
//!
//! The model and the checks are the library's, shared with `tests/lease_model.rs`: a lease
//! granted at `g` for `t` ms is live on every tick of `g ..= g + t` (saturating), a try-lock
//! is granted iff no lease is live for the key, an unlock answers by the live lease's owner,
//! the table is full when `max_leases` leases are live, fencing tokens start at the first one
//! configured and grow strictly with every grant, and a restored lease is held through its
//! end with its own token. The model never reclaims, so it also checks that reclaiming never
//! changes an answer. What this file adds is the input format: bytes to a [`LeaseRun`] and
//! back.
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
//!
//! Operations 0 to 6 kept their numbers when fencing and restore (7 to 10) were added: an input
//! whose operation bytes are all below 7, as every one [`LeaseRun::write`] made before, reads
//! as it did. (A larger byte now picks among 11 operations instead of 7.)

use dlockd::lease::model::{self, Offset};
use dlockd::lease::{LeaseError, LeaseTable, Renewal, StoreId, UnlockStatus};

pub use dlockd::lease::model::{Op as LeaseOp, Table, MAX_TTL_MS, OWNERS, RESOURCES, STORES};

use super::wire::{Reader, Writer};

/// The most operations one input runs.
const MAX_OPS: usize = 256;
/// Operations [`read_op`] knows.
const OPS: usize = 12;

/// One input: where the clock starts, the table's bound, the operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRun {
    pub start_ms: u64,
    pub max_leases: usize,
    pub ops: Vec<LeaseOp>,
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
            ops.push(read_op(r));
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
            write_op(op, &mut w);
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

/// A key: store and resource.
fn read_key(r: &mut Reader<'_>) -> (u16, usize) {
    (r.below(STORES.into()) as u16, r.below(RESOURCES.len()))
}

/// A TTL: up to 255 or 65 535 ms, 1 to 10 s, whole seconds up to the longest, the longest.
fn read_ttl(r: &mut Reader<'_>) -> u64 {
    match r.below(5) {
        0 => r.uint::<1>(),
        1 => r.uint::<2>(),
        2 => (1 + r.uint::<1>() % 10) * 1000,
        3 => (1 + r.uint::<4>() % 2_147_483_647) * 1000,
        _ => MAX_TTL_MS,
    }
}

fn write_ttl(w: &mut Writer, ttl_ms: u64) {
    match ttl_ms {
        MAX_TTL_MS => w.choice(4),
        ms if ms < 1 << 16 => w.choice(1).uint::<2>(ms),
        ms => w.choice(3).uint::<4>(ms / 1000 - 1),
    };
}

/// A restored lease's end from now: up to 255 ms ago, up to 65 535 ms ahead, anything below
/// 2^42 ms ahead, or never (saturating past `u64::MAX`).
fn read_end(r: &mut Reader<'_>) -> Offset {
    let (back, by) = match r.below(4) {
        0 => (true, r.uint::<1>()),
        1 => (false, r.uint::<2>()),
        2 => (false, r.uint::<6>() & ((1 << 42) - 1)),
        _ => (false, u64::MAX),
    };
    Offset { back, by }
}

fn write_end(w: &mut Writer, end: Offset) {
    match end {
        Offset { back: true, by } => w.choice(0).uint::<1>(by),
        Offset { by: u64::MAX, .. } => w.choice(3),
        Offset { by, .. } if by < 1 << 16 => w.choice(1).uint::<2>(by),
        Offset { by, .. } => w.choice(2).uint::<6>(by),
    };
}

/// A restored lease's token from the next one: up to 255 below or above it, or anything below
/// 2^40 above it.
fn read_token(r: &mut Reader<'_>) -> Offset {
    match r.below(3) {
        0 => Offset {
            back: true,
            by: r.uint::<1>(),
        },
        1 => Offset {
            back: false,
            by: r.uint::<1>(),
        },
        _ => Offset {
            back: false,
            by: r.uint::<5>(),
        },
    }
}

fn write_token(w: &mut Writer, token: Offset) {
    match token {
        Offset { back: true, by } => w.choice(0).uint::<1>(by),
        Offset { by, .. } if by < 1 << 8 => w.choice(1).uint::<1>(by),
        Offset { by, .. } => w.choice(2).uint::<5>(by),
    };
}

fn read_op(r: &mut Reader<'_>) -> LeaseOp {
    let choice = r.below(OPS);
    match choice {
        0 | 7 => {
            let fenced = choice == 7;
            let (store, resource) = read_key(r);
            let owner = r.below(OWNERS.len());
            let ttl_ms = read_ttl(r);
            if fenced {
                LeaseOp::TryLockFenced {
                    store,
                    resource,
                    owner,
                    ttl_ms,
                }
            } else {
                LeaseOp::TryLock {
                    store,
                    resource,
                    owner,
                    ttl_ms,
                }
            }
        }
        1 => {
            let (store, resource) = read_key(r);
            let owner = r.below(OWNERS.len());
            LeaseOp::Unlock {
                store,
                resource,
                owner,
            }
        }
        2 => {
            let (store, resource) = read_key(r);
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
        6 => LeaseOp::ToEnd {
            pick: r.below(256),
            after: r.flag(),
        },
        8 => {
            let first = match r.below(3) {
                0 => 0,
                1 => 1 + r.uint::<1>(),
                _ => r.uint::<6>(),
            };
            LeaseOp::EnableFencing { first }
        }
        9 => {
            let (store, resource) = read_key(r);
            let owner = r.below(OWNERS.len());
            let end = read_end(r);
            let token = read_token(r);
            LeaseOp::Restore {
                store,
                resource,
                owner,
                end,
                token,
            }
        }
        10 => LeaseOp::Live,
        _ => {
            let (store, resource) = read_key(r);
            let owner = r.below(OWNERS.len());
            let ttl_ms = read_ttl(r);
            LeaseOp::Renew {
                store,
                resource,
                owner,
                ttl_ms,
            }
        }
    }
}

/// Writes an operation [`read_op`] can produce: ttls of 0 to 65 535 ms, whole seconds or the
/// longest; waits of 0 to 5 ms, 995 to 1005 ms, or below 2^42 ms; first tokens below 2^48;
/// restores as [`read_end`] and [`read_token`] read them.
fn write_op(op: &LeaseOp, w: &mut Writer) {
    match *op {
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
            write_ttl(w, ttl_ms);
        }
        LeaseOp::TryLockFenced {
            store,
            resource,
            owner,
            ttl_ms,
        } => {
            w.choice(7)
                .choice(store.into())
                .choice(resource)
                .choice(owner);
            write_ttl(w, ttl_ms);
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
        LeaseOp::EnableFencing { first } => {
            match first {
                0 => w.choice(8).choice(0),
                1..=256 => w.choice(8).choice(1).uint::<1>(first - 1),
                first => w.choice(8).choice(2).uint::<6>(first),
            };
        }
        LeaseOp::Restore {
            store,
            resource,
            owner,
            end,
            token,
        } => {
            w.choice(9)
                .choice(store.into())
                .choice(resource)
                .choice(owner);
            write_end(w, end);
            write_token(w, token);
        }
        LeaseOp::Live => {
            w.choice(10);
        }
        LeaseOp::Renew {
            store,
            resource,
            owner,
            ttl_ms,
        } => {
            w.choice(11)
                .choice(store.into())
                .choice(resource)
                .choice(owner);
            write_ttl(w, ttl_ms);
        }
    }
}

/// The library's model as `request_to_response` drives it (`request.rs`): stores by number,
/// and the table's bound with each try-lock.
#[derive(Debug, Default)]
pub struct Model {
    /// Made at the first try-lock, with its bound.
    inner: Option<model::Model>,
}

impl Model {
    pub fn live_count(&self, now_ms: u64) -> usize {
        self.inner.as_ref().map_or(0, |m| m.live_count(now_ms))
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
        self.inner
            .get_or_insert_with(|| model::Model::new(max_leases))
            .try_lock(StoreId(store), resource, owner, ttl_ms, now_ms)
    }

    pub fn unlock(
        &mut self,
        store: u16,
        resource: &[u8],
        owner: &[u8],
        now_ms: u64,
    ) -> UnlockStatus {
        match &mut self.inner {
            Some(m) => m.unlock(StoreId(store), resource, owner, now_ms),
            None => UnlockStatus::LockDoesNotExist,
        }
    }

    pub fn renew(
        &mut self,
        store: u16,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Renewal {
        match &mut self.inner {
            Some(m) => m.renew(StoreId(store), resource, owner, ttl_ms, now_ms),
            None => Renewal::Refused(UnlockStatus::LockDoesNotExist),
        }
    }

    pub fn holder(&self, store: u16, resource: &[u8], now_ms: u64) -> Option<(&[u8], u64)> {
        self.inner
            .as_ref()?
            .holder(StoreId(store), resource, now_ms)
    }
}

pub fn check(data: &[u8]) {
    let run = LeaseRun::read(&mut Reader::new(data));
    let mut table = LeaseTable::new(run.max_leases);
    run_against(&run, &mut table);
}

/// Runs `run` on `table` and the model; panics at the first disagreement.
pub fn run_against(run: &LeaseRun, table: &mut dyn Table) {
    if let Err(failure) = model::run(table, run.start_ms, run.max_leases, &run.ops) {
        panic!("{failure}");
    }
}
