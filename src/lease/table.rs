//! The lease table of one shard: who holds which (store, resource), until when.
//!
//! Layout, chosen so that a grant of a short key allocates nothing and a lease takes about
//! 80 bytes:
//!
//! - `leases`, a slab of 64-byte [`Lease`]s: store, `resource ‖ owner` (inside the lease when
//!   the two take at most `key::INLINE` bytes, else boxed), the last live tick, and a 32-bit hash
//!   of the key.
//! - `by_hash`, [`MAPS`] hashbrown `HashTable`s of slab indices (4 bytes and a control byte
//!   a slot), found by the stored hash and compared by the lease's own bytes, so the key is
//!   stored once and growing a map needs no rehash of any key. There are 64 of them, because a
//!   map grows by moving all it holds in one call: one map of 7 M entries stalled its worker for
//!   a second; each of 64 stalls it 1/64 as long. The top bits of the hash pick the map, with
//!   shares of unequal size ([`MAP_OF`]), so that the maps grow one at a time.
//!   Their arrays come from [`Pages`], which gives an outgrown array back to the kernel at
//!   once.
//! - `wheel`, a [`Wheel`] holding each lease's slab index, due at its first dead tick
//!   (`last_live_ms + 1`), so that expired leases nobody touches again are reclaimed. The
//!   wheel keeps 8 bytes of links a lease; the tick is the lease's own.
//!
//! Invariants (checked by `assert_consistent` in the tests):
//!
//! - Every lease is in exactly one map entry, in the map and under the hash its stored hash
//!   gives, and no two leases have the same (store, resource).
//! - A lease is in the wheel, due at `last_live_ms + 1`, iff that tick exists
//!   (`last_live_ms < u64::MAX`) and it is not young; one that would be due past `u64::MAX`
//!   never expires. A young lease (granted since the table last settled, at most
//!   `YOUNG_LIMIT` of them) has its index on the young list instead, and is filed when the
//!   list fills or the table advances: most leases are unlocked before that, and never cost
//!   the wheel anything.
//! - `leases.len() <= max_leases <= MAX_LEASES_LIMIT`, so every slab index fits a `u32` below
//!   the wheel's reserved ids.
//! - After `advance(now)` with a `now` no smaller than any earlier one, every stored lease is
//!   live at `now`: the wheel ticks are the same 1 ms ticks as `now_ms`.

use std::fmt;

use hashbrown::HashTable;
use slab::Slab;

use super::key::Key;
use super::pages::Pages;
use super::types::{LeaseError, Renewal, StoreId, UnlockStatus};
use super::wheel::{Polled, TimerId, Wheel};

/// The largest `max_leases` a table honours: slab indices travel as `u32`, and the wheel
/// reserves the top two. Memory runs out long before.
pub const MAX_LEASES_LIMIT: usize = u32::MAX as usize - 2;

/// What one [`LeaseTable::advance_at_most`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advanced {
    /// Expired leases it removed.
    pub reclaimed: usize,
    /// Whether it got through everything due: false when the budget ran out first.
    pub finished: bool,
}

/// A live lease as [`LeaseTable::live`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveLease<'a> {
    pub store: StoreId,
    pub resource: &'a [u8],
    pub owner: &'a [u8],
    pub last_live_ms: u64,
    pub token: u64,
}

/// One stored lease, live or expired-not-yet-reclaimed.
#[derive(Debug)]
struct Lease {
    key: Key,
    /// The last tick at which the lease is live (`grant + ttl`, saturating).
    last_live_ms: u64,
    /// The key's hash under the table's seeds, kept to find its map entry without rehashing.
    hash: u32,
    store: StoreId,
    /// Whether the lease is in the wheel; if not and it has a due tick, its index is in the
    /// young list.
    in_wheel: bool,
}

// A lease, and a slab entry holding one (its vacant form hides in the key's tag), fill one
// cache line's worth of bytes.
const _: () = assert!(std::mem::size_of::<Lease>() == 64);

impl Lease {
    fn resource(&self) -> &[u8] {
        self.key.split().0
    }

    fn owner(&self) -> &[u8] {
        self.key.split().1
    }

    fn is_live(&self, now_ms: u64) -> bool {
        now_ms <= self.last_live_ms
    }

    fn is_key(&self, store: StoreId, resource: &[u8]) -> bool {
        self.store == store && self.resource() == resource
    }

    /// The first tick at which the lease is gone; `None` if that is past `u64::MAX`.
    fn due_ms(&self) -> Option<u64> {
        self.last_live_ms.checked_add(1)
    }
}

/// Leases a table reserves room for up front, at most (beyond it, storage grows by
/// doubling): about 1.2 GB of address space.
const PRESIZE_LIMIT: usize = 1 << 24;

/// Grants kept out of the wheel at most before they are filed in it (see `young`).
const YOUNG_LIMIT: usize = 4096;

/// How many maps `by_hash` is split into (a power of two).
const MAPS: usize = 64;

/// How many top bits of a hash pick its map, through [`MAP_OF`].
const MAP_BITS: u32 = 10;

/// The map of `by_hash` a hash lives in.
#[inline]
fn map_of(hash: u32) -> usize {
    usize::from(MAP_OF[(hash >> (u32::BITS - MAP_BITS)) as usize])
}

/// The map each value of a hash's top [`MAP_BITS`] bits picks. Map `i` gets a share of them
/// proportional to 2^(i / 64), so the maps' sizes spread evenly over one doubling: they grow
/// one at a time, at even intervals as the table fills, instead of all 64 within a few
/// hundred grants of each other at every doubling, and the maps' memory per lease stays near
/// its mean instead of stepping between 1.1 and 2.3 slots a lease.
static MAP_OF: [u8; 1 << MAP_BITS] = map_shares();

const fn map_shares() -> [u8; 1 << MAP_BITS] {
    // 2^(1/64): the ratio of one map's share to the one before.
    const STEP: f64 = 1.010_889_286_051_700_5;
    const CELLS: usize = 1 << MAP_BITS;
    let mut out = [0; CELLS];
    let mut map = 0;
    // 2^((map + 1) / 64): where the next map's cells begin, on a scale from 1 to 2.
    let mut next = STEP;
    let mut cell = 0;
    while cell < CELLS {
        // The cell's middle on the same scale.
        let at = 1.0 + (cell as f64 + 0.5) / CELLS as f64;
        while at >= next && map + 1 < MAPS {
            map += 1;
            next *= STEP;
        }
        // `map < MAPS = 64`.
        out[cell] = map as u8;
        cell += 1;
    }
    out
}

/// The 64-bit hash a map works with, from the stored 32 bits: hashbrown takes its bucket from
/// the low bits (here the stored hash's low bits, unchanged) and its tag from the top seven,
/// which the odd multiplier draws from all 32.
#[inline]
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One shard's leases. See the module docs of [`lease`](super) for the time semantics.
pub struct LeaseTable {
    leases: Slab<Lease>,
    by_hash: Box<[HashTable<u32, Pages>]>,
    key_hasher: ahash::RandomState,
    wheel: Wheel,
    /// Slab indices of leases granted since the last `settle`, not yet in the wheel. Most
    /// leases are unlocked soon after their grant: filing them only when [`YOUNG_LIMIT`]
    /// grants have piled up, or when the table advances, spares those the wheel's insert and
    /// removal. An index may be stale (its lease gone, or a later one in its slot): `settle`
    /// files only stored leases that are not in the wheel yet.
    young: Vec<u32>,
    max_leases: usize,
    /// Fencing tokens, when on (`enable_fencing`): the token of the lease at each slab index,
    /// and the next one to hand out. Empty and unused when off.
    tokens: Vec<u64>,
    next_token: Option<u64>,
    /// Tests narrow the hashes to force collisions.
    #[cfg(test)]
    hash_mask: u32,
}

impl fmt::Debug for LeaseTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseTable")
            .field("len", &self.leases.len())
            .field("max_leases", &self.max_leases)
            .field("wheel_len", &self.wheel.len())
            .field("wheel_elapsed_ms", &self.wheel.elapsed_ms())
            .finish()
    }
}

impl LeaseTable {
    /// `max_leases` bounds the number of stored leases (live or expired-not-yet-reclaimed).
    /// Values above [`MAX_LEASES_LIMIT`] are taken as that limit.
    pub fn new(max_leases: usize) -> Self {
        // The slab and the wheel's nodes are reserved for the whole bound up front (address
        // space only: pages become resident as leases use them). Grown by doubling instead,
        // each growth copies everything: with mimalloc, the copy at 8 M leases stalled the
        // worker for 1.25 s.
        let reserved = max_leases.min(PRESIZE_LIMIT);
        LeaseTable {
            leases: Slab::with_capacity(reserved),
            by_hash: (0..MAPS).map(|_| HashTable::new_in(Pages)).collect(),
            key_hasher: ahash::RandomState::new(),
            wheel: Wheel::with_capacity(reserved),
            young: Vec::with_capacity(YOUNG_LIMIT),
            max_leases: max_leases.min(MAX_LEASES_LIMIT),
            tokens: Vec::new(),
            next_token: None,
            #[cfg(test)]
            hash_mask: u32::MAX,
        }
    }

    /// Grants the lease iff no live lease exists for (store, resource). Not re-entrant: the
    /// same owner asking again while it holds a live lease gets `Ok(false)` and the deadline is
    /// NOT extended. An expired lease still stored for that key is replaced.
    /// `Err(TableFull)` only when a new entry would be needed and the table is full, after
    /// reclaiming the leases expired by `now_ms`.
    #[inline]
    pub fn try_lock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        self.grant(store, resource, owner, ttl_ms, now_ms)
            .map(|granted| granted.is_some())
    }

    /// Stamps every grant from now on with a fencing token: `first`, then one more each.
    /// Tokens only grow, so a resource's later holder always has the larger token.
    pub fn enable_fencing(&mut self, first: u64) {
        self.next_token = Some(self.next_token.map_or(first, |next| next.max(first)));
    }

    /// [`try_lock`](Self::try_lock), with the granted lease's fencing token (0 when fencing
    /// is off).
    pub fn try_lock_fenced(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, LeaseError> {
        let Some(index) = self.grant(store, resource, owner, ttl_ms, now_ms)? else {
            return Ok(None);
        };
        Ok(Some(self.stamp(index, None)))
    }

    /// Gives the lease at `index` the next token, or `token` (a restored lease's own).
    fn stamp(&mut self, index: usize, token: Option<u64>) -> u64 {
        let Some(next) = self.next_token else {
            return 0;
        };
        let token = token.unwrap_or(next);
        self.next_token = Some(next.max(token.saturating_add(1)));
        if self.tokens.len() <= index {
            self.tokens.resize(index + 1, 0);
        }
        self.tokens[index] = token;
        token
    }

    /// Puts back a lease saved by an earlier run, live through `last_live_ms`, with its
    /// token. `Ok(false)` if a live lease already holds the key (a saved file never has two).
    pub fn restore(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        last_live_ms: u64,
        token: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        let ttl_ms = last_live_ms.saturating_sub(now_ms);
        let Some(index) = self.grant(store, resource, owner, ttl_ms, now_ms)? else {
            return Ok(false);
        };
        self.leases[index].last_live_ms = last_live_ms.max(now_ms);
        self.stamp(index, Some(token));
        Ok(true)
    }

    /// Every lease live at `now_ms`: store, resource, owner, last live tick and token (0 when
    /// fencing is off). For the snapshot at a clean stop.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = LiveLease<'_>> + '_ {
        self.leases
            .iter()
            .filter(move |(_, lease)| lease.is_live(now_ms))
            .map(|(index, lease)| LiveLease {
                store: lease.store,
                resource: lease.resource(),
                owner: lease.owner(),
                last_live_ms: lease.last_live_ms,
                token: self.tokens.get(index).copied().unwrap_or(0),
            })
    }

    /// The slab index of the lease granted, or `None` if a live one holds the key.
    #[inline]
    fn grant(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Option<usize>, LeaseError> {
        let hash = self.key_hash(store, resource);
        // Saturating: a lease is never shortened, so an end past `u64::MAX` means never.
        let last_live_ms = now_ms.saturating_add(ttl_ms);
        if self.leases.len() >= self.max_leases {
            return self.try_lock_when_full(hash, store, resource, owner, last_live_ms, now_ms);
        }
        // One probe finds the lease or the slot a new one goes in.
        let leases = &self.leases;
        let entry = self.by_hash[map_of(hash)].entry(
            spread(hash),
            |&i| leases[i as usize].is_key(store, resource),
            |&i| spread(leases[i as usize].hash),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(found) => {
                let index = *found.get() as usize;
                Ok(self
                    .take_over(index, owner, last_live_ms, now_ms)
                    .then_some(index))
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let index = self.leases.vacant_key();
                slot.insert(timer_id(index).0);
                self.leases.insert(Lease {
                    key: Key::new(resource, owner),
                    last_live_ms,
                    hash,
                    store,
                    in_wheel: false,
                });
                self.schedule(index);
                Ok(Some(index))
            }
        }
    }

    /// `try_lock` once the table holds `max_leases`: an expired lease of the key is taken
    /// over in place; otherwise expired leases are reclaimed to make room, if there are any.
    #[cold]
    fn try_lock_when_full(
        &mut self,
        hash: u32,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        last_live_ms: u64,
        now_ms: u64,
    ) -> Result<Option<usize>, LeaseError> {
        if let Some(index) = self.find(hash, store, resource) {
            return Ok(self
                .take_over(index, owner, last_live_ms, now_ms)
                .then_some(index));
        }
        self.advance(now_ms);
        if self.leases.len() >= self.max_leases {
            return Err(LeaseError::TableFull {
                max_leases: self.max_leases,
            });
        }
        let index = self.leases.insert(Lease {
            key: Key::new(resource, owner),
            last_live_ms,
            hash,
            store,
            in_wheel: false,
        });
        let leases = &self.leases;
        self.by_hash[map_of(hash)].insert_unique(spread(hash), timer_id(index).0, |&i| {
            spread(leases[i as usize].hash)
        });
        self.schedule(index);
        Ok(Some(index))
    }

    /// The stored lease at `index` asked for by a new owner: refused while live, else handed
    /// over with its new deadline.
    fn take_over(&mut self, index: usize, owner: &[u8], last_live_ms: u64, now_ms: u64) -> bool {
        let lease = &mut self.leases[index];
        if lease.is_live(now_ms) {
            return false;
        }
        if lease.in_wheel {
            lease.in_wheel = false;
            let due_ms = lease.due_ms();
            self.unfile(index, due_ms);
        }
        let lease = &mut self.leases[index];
        lease.key.set_owner(owner);
        lease.last_live_ms = last_live_ms;
        self.schedule(index);
        true
    }

    /// Success if `owner` holds the live lease (it is deleted); LockBelongsToOthers if a live
    /// lease of another owner exists (untouched); LockDoesNotExist if there is no live lease
    /// (an expired one found on the way is reclaimed).
    #[inline]
    pub fn unlock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        now_ms: u64,
    ) -> UnlockStatus {
        let hash = self.key_hash(store, resource);
        let leases = &self.leases;
        let Ok(found) = self.by_hash[map_of(hash)].find_entry(spread(hash), |&i| {
            leases[i as usize].is_key(store, resource)
        }) else {
            return UnlockStatus::LockDoesNotExist;
        };
        let index = *found.get() as usize;
        let lease = &leases[index];
        let status = if !lease.is_live(now_ms) {
            UnlockStatus::LockDoesNotExist
        } else if lease.owner() != owner {
            return UnlockStatus::LockBelongsToOthers;
        } else {
            UnlockStatus::Success
        };
        found.remove();
        self.remove_unmapped(index);
        status
    }

    /// Extends `owner`'s live lease of (store, resource) to live `ttl_ms` from `now_ms` (its
    /// token kept); a lease that has expired is never brought back, even if nobody took it
    /// since (`LockDoesNotExist`), and another owner's is left untouched
    /// (`LockBelongsToOthers`). The new end may be earlier than the old one: a renewal sets
    /// the lease's time left, as a fresh grant would.
    pub fn renew(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Renewal {
        let Some(index) = self.find(self.key_hash(store, resource), store, resource) else {
            return Renewal::Refused(UnlockStatus::LockDoesNotExist);
        };
        let lease = &self.leases[index];
        if !lease.is_live(now_ms) {
            return Renewal::Refused(UnlockStatus::LockDoesNotExist);
        }
        if lease.owner() != owner {
            return Renewal::Refused(UnlockStatus::LockBelongsToOthers);
        }
        let last_live_ms = now_ms.saturating_add(ttl_ms);
        let lease = &mut self.leases[index];
        if lease.in_wheel {
            // Filed at its old end: filed again, at the new one, when the young list settles.
            lease.in_wheel = false;
            let due_ms = lease.due_ms();
            self.unfile(index, due_ms);
            self.leases[index].last_live_ms = last_live_ms;
            self.schedule(index);
        } else if lease.due_ms().is_none() {
            // It never ended, so nothing files it (a young one may also sit on the young
            // list still; filing it twice is filing it once).
            lease.last_live_ms = last_live_ms;
            self.schedule(index);
        } else {
            // Young: the young list files it at whatever end it has then.
            lease.last_live_ms = last_live_ms;
        }
        let token = self.tokens.get(index).copied().unwrap_or(0);
        Renewal::Renewed {
            last_live_ms,
            token: if self.next_token.is_some() { token } else { 0 },
        }
    }

    /// Reclaims the memory of leases that have expired by `now_ms`; returns how many it
    /// removed. Cost: the expired leases plus the wheel slots passed. A `now_ms` smaller than
    /// an earlier one reclaims nothing.
    pub fn advance(&mut self, now_ms: u64) -> usize {
        self.advance_at_most(now_ms, usize::MAX).reclaimed
    }

    /// Like [`advance`](Self::advance), but does at most `budget` steps of work: each lease
    /// reclaimed, and each lease the wheel moves down a level, is one; a lease that the last
    /// of those moves made due is still reclaimed, so a call may take one step more. Call
    /// again, while it says it has not finished, to go on. Lets the worker reclaim a million
    /// leases that expire together in slices, answering requests in between, instead of
    /// stalling for the whole sweep.
    pub fn advance_at_most(&mut self, now_ms: u64, budget: usize) -> Advanced {
        self.settle();
        let mut left = budget;
        let mut reclaimed = 0;
        let finished = loop {
            if left == 0 {
                break false;
            }
            let leases = &self.leases;
            let id = match self
                .wheel
                .poll_within(now_ms, |id| due_in_wheel(leases, id), &mut left)
            {
                Polled::Due(id) => id,
                Polled::Done => break true,
                Polled::Busy => break false,
            };
            let index = id.0 as usize;
            let Some(lease) = self.leases.get_mut(index) else {
                debug_assert!(false, "the wheel handed back {id:?}, which holds no lease");
                continue;
            };
            lease.in_wheel = false;
            // The wheel hands back only leases due by `now_ms` (last live tick < now_ms), but
            // the answer is the deadline's: a live lease is never removed.
            debug_assert!(!lease.is_live(now_ms), "the wheel handed back a live lease");
            if lease.is_live(now_ms) {
                self.file(index);
                continue;
            }
            self.remove(index);
            reclaimed += 1;
            // A due lease is handed back even when re-filing spent the budget: it ends here.
            left = left.saturating_sub(1);
        };
        Advanced {
            reclaimed,
            finished,
        }
    }

    /// The live holder of (store, resource) and its remaining milliseconds (the ticks after
    /// `now_ms` through which it stays live: `ttl_ms` right at the grant, 0 on its last live
    /// tick), if any.
    pub fn holder(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Option<(&[u8], u64)> {
        let index = self.find(self.key_hash(store, resource), store, resource)?;
        let lease = &self.leases[index];
        lease
            .is_live(now_ms)
            .then(|| (lease.owner(), lease.last_live_ms - now_ms))
    }

    /// The fencing token of the live lease of (store, resource), if fencing is on and there is
    /// one.
    pub fn fence(&self, store: StoreId, resource: &[u8], now_ms: u64) -> Option<u64> {
        self.next_token?;
        let index = self.find(self.key_hash(store, resource), store, resource)?;
        let live = self.leases[index].is_live(now_ms);
        live.then(|| self.tokens.get(index).copied()).flatten()
    }

    /// Number of stored entries (live + expired not yet reclaimed).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Number of leases filed in the wheel to be reclaimed. After `advance(now_ms)` that is
    /// every stored lease that can expire, and all of them are live at `now_ms`.
    pub fn scheduled(&self) -> usize {
        self.wheel.len()
    }

    fn key_hash(&self, store: StoreId, resource: &[u8]) -> u32 {
        let hash = (self.key_hasher.hash_one((store.0, resource)) >> 32) as u32;
        #[cfg(test)]
        let hash = hash & self.hash_mask;
        hash
    }

    /// The slab index of the lease for (store, resource), live or not.
    fn find(&self, hash: u32, store: StoreId, resource: &[u8]) -> Option<usize> {
        let leases = &self.leases;
        self.by_hash[map_of(hash)]
            .find(spread(hash), |&i| {
                leases[i as usize].is_key(store, resource)
            })
            .map(|&i| i as usize)
    }

    /// Puts the lease at `index`, just granted and not in the wheel, on the young list.
    fn schedule(&mut self, index: usize) {
        if self.young.len() >= YOUNG_LIMIT {
            self.settle();
        }
        self.young.push(timer_id(index).0);
    }

    /// Files every lease of the young list that is still stored, and not yet in the wheel,
    /// in the wheel. Out of line: once every `YOUNG_LIMIT` grants at most, and inlined it
    /// made every `schedule` save and restore the registers its loop uses.
    #[inline(never)]
    fn settle(&mut self) {
        let mut young = std::mem::take(&mut self.young);
        for index in young.drain(..) {
            self.file(index as usize);
        }
        self.young = young;
    }

    /// Files the lease at `index`, if there is one and it is not in the wheel, at its first
    /// dead tick, if it has one.
    fn file(&mut self, index: usize) {
        let Some(lease) = self.leases.get_mut(index) else {
            return;
        };
        if lease.in_wheel {
            return;
        }
        if let Some(due_ms) = lease.due_ms() {
            lease.in_wheel = true;
            self.wheel.insert(timer_id(index), due_ms);
        }
    }

    /// Deletes the lease at `index` from the slab, its map and the wheel (if still there).
    fn remove(&mut self, index: usize) {
        let hash = self.leases[index].hash;
        let id = timer_id(index).0;
        match self.by_hash[map_of(hash)].find_entry(spread(hash), |&i| i == id) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => debug_assert!(false, "lease {index} is in no map"),
        }
        self.remove_unmapped(index);
    }

    /// Deletes the lease at `index`, already taken out of its map, from the slab and the
    /// wheel (if still there).
    fn remove_unmapped(&mut self, index: usize) {
        let lease = self.leases.remove(index);
        if lease.in_wheel {
            self.unfile(index, lease.due_ms());
        }
    }

    /// Takes the lease at `index`, filed at its first dead tick `due_ms`, out of the wheel.
    /// Out of line: most leases end young, never filed, and inlined it made every removal
    /// save and restore the registers the wheel uses.
    #[inline(never)]
    fn unfile(&mut self, index: usize, due_ms: Option<u64>) {
        if let Some(due_ms) = due_ms {
            self.wheel.remove(timer_id(index), due_ms);
        }
    }

    /// Checks every invariant of the module docs; for tests.
    #[cfg(test)]
    fn assert_consistent(&self) {
        let mut mapped = 0;
        for (map, table) in self.by_hash.iter().enumerate() {
            for &i in table.iter() {
                let lease = &self.leases[i as usize];
                assert_eq!(map_of(lease.hash), map);
                assert_eq!(self.key_hash(lease.store, lease.resource()), lease.hash);
                assert_eq!(
                    self.find(lease.hash, lease.store, lease.resource()),
                    Some(i as usize)
                );
                mapped += 1;
            }
        }
        assert_eq!(mapped, self.leases.len(), "leases in the maps");
        let mut keys = std::collections::HashSet::new();
        let mut scheduled = 0;
        assert!(self.young.len() <= YOUNG_LIMIT);
        for (index, lease) in &self.leases {
            assert!(
                keys.insert((lease.store, lease.resource())),
                "duplicate key"
            );
            assert_eq!(self.wheel.contains(timer_id(index)), lease.in_wheel);
            assert!(!lease.in_wheel || lease.due_ms().is_some());
            if !lease.in_wheel && lease.due_ms().is_some() {
                assert!(
                    self.young.contains(&timer_id(index).0),
                    "lease {index} is neither in the wheel nor young"
                );
            }
            scheduled += usize::from(lease.in_wheel);
        }
        assert_eq!(self.wheel.len(), scheduled);
        assert!(self.leases.len() <= self.max_leases);
        self.wheel
            .assert_consistent(|id| due_in_wheel(&self.leases, id));
    }
}

/// The tick the wheel holds the lease at `id` for. Only leases with a due tick are in the
/// wheel; `u64::MAX` stands in for "never" should the wheel ask of another.
fn due_in_wheel(leases: &Slab<Lease>, id: TimerId) -> u64 {
    leases
        .get(id.0 as usize)
        .and_then(Lease::due_ms)
        .unwrap_or(u64::MAX)
}

/// The wheel id of the lease at a slab index; fits because `len <= MAX_LEASES_LIMIT`.
fn timer_id(index: usize) -> TimerId {
    debug_assert!(index < MAX_LEASES_LIMIT);
    TimerId(index as u32)
}

#[cfg(test)]
mod tests {
    use super::super::key::INLINE;
    use super::*;

    #[test]
    fn map_shares_grow_by_one_sixty_fourth_of_a_doubling() {
        let mut shares = [0usize; MAPS];
        for pair in MAP_OF.windows(2) {
            assert!(pair[0] <= pair[1], "each map's cells are one run");
        }
        for &map in MAP_OF.iter() {
            shares[usize::from(map)] += 1;
        }
        // Every map has a share, the last about twice the first, and each share is about
        // 2^(1/64) times the one before: the whole rounded to cells of 1/1024.
        assert_eq!(shares[0], 11);
        assert_eq!(shares[MAPS - 1], 22);
        for (i, &share) in shares.iter().enumerate() {
            let exact = 1024.0 * (2f64.powf((i + 1) as f64 / 64.0) - 2f64.powf(i as f64 / 64.0));
            assert!(
                (share as f64 - exact).abs() <= 1.0,
                "map {i}: {share} cells, {exact}"
            );
        }
    }

    #[test]
    fn maps_fill_in_proportion_to_their_shares() {
        let mut table = LeaseTable::new(1 << 20);
        for i in 0..100_000u32 {
            let resource = format!("{i:036}");
            assert_eq!(
                table.try_lock(S0, resource.as_bytes(), b"o", 60_000, 0),
                Ok(true)
            );
        }
        // The last map holds about twice as many as the first: their sizes span one doubling,
        // so they do not all grow at once.
        let first = table.by_hash[0].len() as f64;
        let last = table.by_hash[MAPS - 1].len() as f64;
        assert!(
            (1.7..2.3).contains(&(last / first)),
            "first {first}, last {last}"
        );
        table.assert_consistent();
    }

    #[test]
    fn fencing_tokens_grow_with_every_grant() {
        // Protects the fencing promise within a table: each grant, a new lease or one taken
        // over after expiry, gets a larger token than every grant before; refusals get none.
        let s = StoreId(0);
        let mut t = LeaseTable::new(100);
        assert_eq!(t.try_lock_fenced(s, b"r", b"a", 10, 0), Ok(Some(0)));
        t.enable_fencing(500);
        assert_eq!(t.try_lock_fenced(s, b"q", b"a", 10, 0), Ok(Some(500)));
        assert_eq!(t.try_lock_fenced(s, b"q", b"b", 10, 5), Ok(None));
        assert_eq!(t.try_lock_fenced(s, b"q", b"b", 10, 11), Ok(Some(501)));
        assert_eq!(t.unlock(s, b"q", b"b", 12), UnlockStatus::Success);
        assert_eq!(t.try_lock_fenced(s, b"q", b"c", 10, 12), Ok(Some(502)));
        // Raising the start never lowers it.
        t.enable_fencing(10);
        assert_eq!(t.try_lock_fenced(s, b"z", b"c", 10, 12), Ok(Some(503)));
        t.assert_consistent();
    }

    #[test]
    fn restored_leases_hold_with_their_tokens() {
        // Protects a clean restart: a saved lease is held by its owner through its own last
        // live tick with its own token, later grants get larger tokens, and `live` lists
        // exactly the live leases.
        let s = StoreId(1);
        let mut t = LeaseTable::new(100);
        t.enable_fencing(1000);
        assert_eq!(t.restore(s, b"r", b"owner", 50, 7, 10), Ok(true));
        assert_eq!(t.restore(s, b"r", b"other", 60, 8, 10), Ok(false));
        assert_eq!(t.holder(s, b"r", 50), Some((&b"owner"[..], 0)));
        assert_eq!(t.try_lock_fenced(s, b"r", b"x", 5, 50), Ok(None));
        assert_eq!(t.try_lock_fenced(s, b"r", b"x", 5, 51), Ok(Some(1000)));
        assert_eq!(t.restore(s, b"k", b"o", 2000, 4000, 51), Ok(true));
        assert_eq!(t.try_lock_fenced(s, b"m", b"x", 10, 51), Ok(Some(4001)));
        assert_eq!(t.fence(s, b"m", 61), Some(4001));
        assert_eq!(t.fence(s, b"m", 62), None);
        assert_eq!(t.fence(s, b"absent", 0), None);
        let mut live: Vec<_> = t.live(57).map(|l| (l.resource.to_vec(), l.token)).collect();
        live.sort();
        assert_eq!(live, vec![(b"k".to_vec(), 4000), (b"m".to_vec(), 4001)]);
        t.assert_consistent();
    }

    const S0: StoreId = StoreId(0);
    const S1: StoreId = StoreId(1);
    const MAX_TTL_MS: u64 = 2_147_483_647 * 1000;

    // A budget slices the reclamation: each call removes at most that many, and the calls
    // together remove every expired lease and nothing live.
    #[test]
    fn advance_at_most_reclaims_in_slices() {
        let mut table = LeaseTable::new(100);
        for i in 0..10u32 {
            let resource = format!("r{i}");
            assert_eq!(
                table.try_lock(StoreId(0), resource.as_bytes(), b"o", 5, 0),
                Ok(true)
            );
        }
        assert_eq!(table.try_lock(StoreId(0), b"live", b"o", 1000, 0), Ok(true));
        let mut slices = Vec::new();
        loop {
            let step = table.advance_at_most(100, 4);
            table.assert_consistent();
            assert!(step.reclaimed <= 4);
            slices.push(step.reclaimed);
            if step.finished {
                break;
            }
            assert!(slices.len() < 20, "never finishes: {slices:?}");
        }
        assert_eq!(slices.iter().sum::<usize>(), 10, "{slices:?}");
        assert!(slices.len() >= 3, "sliced: {slices:?}");
        assert_eq!(table.len(), 1);
        assert!(table.holder(StoreId(0), b"live", 100).is_some());
        assert_eq!(
            table.advance_at_most(100, 4),
            Advanced {
                reclaimed: 0,
                finished: true
            }
        );
    }

    // Leases granted together sit in one slot of a high level of the wheel; when its turn
    // comes, moving them down is sliced by the same budget as reclaiming them, so no call
    // does more than its budget of work however many share the slot.
    #[test]
    fn a_crowded_wheel_slot_cascades_in_slices() {
        const N: usize = 5000;
        let mut table = LeaseTable::new(2 * N);
        for i in 0..N {
            let resource = format!("r{i}");
            // Due at 5001: level 2 of the wheel (slots of 4096 ticks) seen from 0.
            assert_eq!(
                table.try_lock(S0, resource.as_bytes(), b"o", 5000, 0),
                Ok(true)
            );
        }
        assert_eq!(table.advance(0), 0);
        // At 4096 their slot's turn comes: nothing is due, but they all move down a level,
        // 64 at a time.
        let mut calls = 0;
        loop {
            let step = table.advance_at_most(4100, 64);
            table.assert_consistent();
            assert_eq!(step.reclaimed, 0);
            calls += 1;
            if step.finished {
                break;
            }
        }
        assert!(
            calls > N / 64,
            "{calls} calls moved {N} leases 64 at a time"
        );
        // At 5001 they are all due: moved down once more and reclaimed, 64 steps a call.
        let mut reclaimed = 0;
        loop {
            let step = table.advance_at_most(5001, 64);
            assert!(step.reclaimed <= 64);
            reclaimed += step.reclaimed;
            if step.finished {
                break;
            }
        }
        assert_eq!(reclaimed, N);
        assert_eq!(table.len(), 0);
        table.assert_consistent();
    }

    #[test]
    fn grants_once_and_is_not_reentrant() {
        // Protects mutual exclusion and the daprd rule that a second try-lock by the holder
        // fails without extending the lease.
        let mut table = LeaseTable::new(16);
        assert_eq!(table.try_lock(S0, b"r", b"alice", 1000, 10), Ok(true));
        assert_eq!(table.try_lock(S0, b"r", b"bob", 1000, 11), Ok(false));
        assert_eq!(table.try_lock(S0, b"r", b"alice", 5000, 500), Ok(false));
        assert_eq!(table.holder(S0, b"r", 500), Some((&b"alice"[..], 510)));
        assert_eq!(table.holder(S0, b"r", 1010), Some((&b"alice"[..], 0)));
        assert_eq!(table.holder(S0, b"r", 1011), None);
        table.assert_consistent();
    }

    #[test]
    fn a_lease_lives_through_grant_plus_ttl_and_not_one_tick_more() {
        // Protects the floor-clock rule: live on every tick of g..=g+t, gone from g+t+1.
        let mut table = LeaseTable::new(16);
        assert_eq!(table.try_lock(S0, b"r", b"a", 1000, 5), Ok(true));
        assert_eq!(table.holder(S0, b"r", 5), Some((&b"a"[..], 1000)));
        assert_eq!(table.try_lock(S0, b"r", b"b", 1000, 1005), Ok(false));
        assert_eq!(
            table.unlock(S0, b"r", b"b", 1005),
            UnlockStatus::LockBelongsToOthers
        );
        assert_eq!(table.advance(1005), 0);
        assert_eq!(table.len(), 1);
        assert_eq!(
            table.unlock(S0, b"r", b"a", 1006),
            UnlockStatus::LockDoesNotExist
        );
        assert_eq!(table.try_lock(S0, b"r", b"b", 0, 1006), Ok(true));
        // A zero TTL lives for its grant tick only.
        assert_eq!(table.holder(S0, b"r", 1006), Some((&b"b"[..], 0)));
        assert_eq!(table.holder(S0, b"r", 1007), None);
        assert_eq!(table.advance(1007), 1);
        assert!(table.is_empty());
        table.assert_consistent();
    }

    #[test]
    fn unlock_answers_each_status() {
        // Protects the three unlock answers and that only the holder's unlock changes state.
        let mut table = LeaseTable::new(16);
        assert_eq!(
            table.unlock(S0, b"r", b"a", 0),
            UnlockStatus::LockDoesNotExist
        );
        assert_eq!(table.try_lock(S0, b"r", b"a", 100, 0), Ok(true));
        assert_eq!(
            table.unlock(S0, b"r", b"b", 1),
            UnlockStatus::LockBelongsToOthers
        );
        assert_eq!(
            table.unlock(S0, b"r", b"", 1),
            UnlockStatus::LockBelongsToOthers
        );
        assert_eq!(
            table.unlock(S0, b"r", b"aa", 1),
            UnlockStatus::LockBelongsToOthers
        );
        assert_eq!(table.holder(S0, b"r", 1), Some((&b"a"[..], 99)));
        assert_eq!(table.unlock(S0, b"r", b"a", 2), UnlockStatus::Success);
        assert_eq!(
            table.unlock(S0, b"r", b"a", 2),
            UnlockStatus::LockDoesNotExist
        );
        assert!(table.is_empty());
        table.assert_consistent();
    }

    #[test]
    fn stores_and_resources_are_independent_keys() {
        // Protects the key: the same resource in two stores is two locks, and a resource
        // that is a prefix of another (resource ‖ owner share one buffer) is a different key.
        let mut table = LeaseTable::new(16);
        assert_eq!(table.try_lock(S0, b"ab", b"c", 100, 0), Ok(true));
        assert_eq!(table.try_lock(S1, b"ab", b"c", 100, 0), Ok(true));
        assert_eq!(table.try_lock(S0, b"abc", b"", 100, 0), Ok(true));
        assert_eq!(table.try_lock(S0, b"a", b"bc", 100, 0), Ok(true));
        assert_eq!(table.holder(S0, b"ab", 0), Some((&b"c"[..], 100)));
        assert_eq!(table.holder(S0, b"abc", 0), Some((&b""[..], 100)));
        assert_eq!(table.holder(S0, b"a", 0), Some((&b"bc"[..], 100)));
        assert_eq!(table.unlock(S1, b"ab", b"c", 1), UnlockStatus::Success);
        assert_eq!(table.holder(S0, b"ab", 1), Some((&b"c"[..], 99)));
        assert_eq!(table.len(), 3);
        table.assert_consistent();
    }

    #[test]
    fn an_expired_lease_is_replaced_in_place() {
        // Protects replacement: a new owner of either length takes an expired lease, with a
        // fresh deadline, and the old owner is then "someone else".
        let mut table = LeaseTable::new(1);
        assert_eq!(table.try_lock(S0, b"r", b"old", 10, 0), Ok(true));
        assert_eq!(table.try_lock(S0, b"r", b"new", 10, 11), Ok(true));
        assert_eq!(table.holder(S0, b"r", 11), Some((&b"new"[..], 10)));
        assert_eq!(
            table.unlock(S0, b"r", b"old", 12),
            UnlockStatus::LockBelongsToOthers
        );
        assert_eq!(table.try_lock(S0, b"r", b"longer-owner", 50, 30), Ok(true));
        assert_eq!(table.holder(S0, b"r", 30), Some((&b"longer-owner"[..], 50)));
        assert_eq!(
            table.advance(80),
            0,
            "the old deadline was dropped from the wheel"
        );
        assert_eq!(table.advance(81), 1);
        table.assert_consistent();
    }

    #[test]
    fn table_full_only_when_no_expired_lease_can_be_reclaimed() {
        // Protects the bound: TableFull at max_leases, but expired leases are reclaimed
        // first, so a full table of expired leases still grants.
        let mut table = LeaseTable::new(3);
        for resource in [b"a", b"b", b"c"] {
            assert_eq!(table.try_lock(S0, resource, b"o", 100, 0), Ok(true));
        }
        let full = Err(LeaseError::TableFull { max_leases: 3 });
        assert_eq!(table.try_lock(S0, b"d", b"o", 100, 100), full);
        // Replacing or refusing an existing key needs no new entry.
        assert_eq!(table.try_lock(S0, b"a", b"o", 100, 100), Ok(false));
        assert_eq!(table.len(), 3);
        assert_eq!(table.try_lock(S0, b"d", b"o", 100, 101), Ok(true));
        assert_eq!(table.len(), 1, "all three expired leases were reclaimed");
        let mut empty = LeaseTable::new(0);
        let refused = Err(LeaseError::TableFull { max_leases: 0 });
        assert_eq!(empty.try_lock(S0, b"a", b"o", 1, 0), refused);
        table.assert_consistent();
    }

    #[test]
    fn extreme_ttls_and_times_never_overflow() {
        // Protects saturating arithmetic: the longest TTL near the end of time lives for ever
        // instead of wrapping to an early end, and no arithmetic panics.
        let mut table = LeaseTable::new(8);
        assert_eq!(table.try_lock(S0, b"t", b"a", MAX_TTL_MS, 7), Ok(true));
        assert_eq!(table.holder(S0, b"t", 7), Some((&b"a"[..], MAX_TTL_MS)));
        assert_eq!(table.advance(7 + MAX_TTL_MS), 0);
        assert_eq!(table.advance(8 + MAX_TTL_MS), 1);
        let late = u64::MAX - 10;
        assert_eq!(table.try_lock(S0, b"r", b"a", MAX_TTL_MS, late), Ok(true));
        assert_eq!(table.holder(S0, b"r", u64::MAX), Some((&b"a"[..], 0)));
        assert_eq!(table.advance(u64::MAX), 0);
        assert_eq!(
            table.try_lock(S0, b"r", b"b", MAX_TTL_MS, u64::MAX),
            Ok(false)
        );
        assert_eq!(table.try_lock(S0, b"s", b"a", u64::MAX, 1), Ok(true));
        assert_eq!(table.holder(S0, b"s", 1), Some((&b"a"[..], u64::MAX - 1)));
        assert_eq!(
            table.unlock(S0, b"r", b"a", u64::MAX),
            UnlockStatus::Success
        );
        table.assert_consistent();
    }

    #[test]
    fn a_clock_that_goes_back_answers_by_deadline_and_corrupts_nothing() {
        // Protects against a smaller now_ms: answers still compare deadlines with the given
        // now, advance reclaims nothing, and the next forward advance reclaims everything due.
        let mut table = LeaseTable::new(8);
        assert_eq!(table.try_lock(S0, b"r", b"a", 10, 1000), Ok(true));
        assert_eq!(table.advance(2000), 1);
        assert_eq!(table.try_lock(S0, b"r", b"b", 10, 500), Ok(true));
        assert_eq!(table.holder(S0, b"r", 505), Some((&b"b"[..], 5)));
        assert_eq!(
            table.advance(600),
            0,
            "the clock went back: nothing reclaimed"
        );
        assert_eq!(table.holder(S0, b"r", 505), Some((&b"b"[..], 5)));
        assert_eq!(table.len(), 1);
        table.assert_consistent();
        assert_eq!(table.advance(2000), 1);
        assert!(table.is_empty());
        table.assert_consistent();
    }

    #[test]
    fn colliding_hashes_share_a_map_without_mixing_keys() {
        // Protects the lookups by stored hash: with every key under one hash, insert, find
        // and removal of the first, a middle and the last key keep each key's own answer.
        let mut table = LeaseTable::new(16);
        table.hash_mask = 0;
        for (i, resource) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            assert_eq!(
                table.try_lock(S0, *resource, b"o", 10 * (i as u64 + 1), 0),
                Ok(true)
            );
        }
        table.assert_consistent();
        assert_eq!(table.by_hash[0].len(), 4);
        assert_eq!(table.unlock(S0, b"b", b"o", 1), UnlockStatus::Success);
        assert_eq!(table.unlock(S0, b"d", b"o", 1), UnlockStatus::Success);
        table.assert_consistent();
        assert_eq!(table.holder(S0, b"a", 1), Some((&b"o"[..], 9)));
        assert_eq!(table.holder(S0, b"c", 1), Some((&b"o"[..], 29)));
        assert_eq!(table.advance(11), 1);
        assert_eq!(table.holder(S0, b"c", 11), Some((&b"o"[..], 19)));
        assert_eq!(table.unlock(S0, b"c", b"o", 11), UnlockStatus::Success);
        assert!(table.by_hash.iter().all(|map| map.is_empty()));
        table.assert_consistent();
    }

    #[test]
    fn young_leases_are_filed_when_the_list_fills_or_the_table_advances() {
        // Protects the young list: grants stay out of the wheel until YOUNG_LIMIT of them
        // pile up, those unlocked meanwhile never enter it, and advancing files the rest.
        let mut table = LeaseTable::new(4 * YOUNG_LIMIT);
        let key = |n: usize| format!("r{n}").into_bytes();
        for n in 0..YOUNG_LIMIT {
            assert_eq!(table.try_lock(S0, &key(n), b"o", 10, 0), Ok(true));
        }
        assert_eq!(table.scheduled(), 0);
        for n in (0..YOUNG_LIMIT).step_by(2) {
            assert_eq!(table.unlock(S0, &key(n), b"o", 0), UnlockStatus::Success);
        }
        table.assert_consistent();
        // The next grant finds the list full: the half still held is filed, and so is the
        // new lease, which took the slot of the last unlocked one, still named on the list.
        assert_eq!(table.try_lock(S0, &key(YOUNG_LIMIT), b"o", 10, 0), Ok(true));
        assert_eq!(table.scheduled(), YOUNG_LIMIT / 2 + 1);
        table.assert_consistent();
        // Advancing files whatever is still young, and reclaims all of them once expired.
        assert_eq!(
            table.try_lock(S0, &key(YOUNG_LIMIT + 1), b"o", 10, 0),
            Ok(true)
        );
        assert_eq!(table.scheduled(), YOUNG_LIMIT / 2 + 1);
        assert_eq!(table.advance(5), 0);
        assert_eq!(table.scheduled(), YOUNG_LIMIT / 2 + 2);
        table.assert_consistent();
        assert_eq!(table.advance(11), YOUNG_LIMIT / 2 + 2);
        assert!(table.is_empty());
        table.assert_consistent();
    }

    #[test]
    fn keys_inside_the_lease_and_boxed_answer_alike() {
        // Protects both forms of the key at their boundary, and the change of form when an
        // expired lease passes to an owner of another length.
        let resource = [b'r'; 36];
        let fits = [b'a'; INLINE - 36];
        let spills = [b'b'; INLINE - 35];
        let mut table = LeaseTable::new(8);
        for (n, owner) in [&fits[..], &spills[..], b"c", &[b'd'; 1000]]
            .into_iter()
            .enumerate()
        {
            let now = 10 * n as u64;
            assert_eq!(table.try_lock(S0, &resource, owner, 5, now), Ok(true));
            assert_eq!(table.holder(S0, &resource, now), Some((owner, 5)));
            assert_eq!(
                table.unlock(S0, &resource, b"x", now),
                UnlockStatus::LockBelongsToOthers
            );
            table.assert_consistent();
        }
        assert_eq!(table.len(), 1);
        let long_resource = [b'q'; 300];
        assert_eq!(table.try_lock(S1, &long_resource, b"o", 5, 30), Ok(true));
        assert_eq!(table.holder(S1, &long_resource, 30), Some((&b"o"[..], 5)));
        assert_eq!(table.holder(S1, &long_resource[..299], 30), None);
        assert_eq!(
            table.unlock(S1, &long_resource, b"o", 31),
            UnlockStatus::Success
        );
        table.assert_consistent();
    }

    #[test]
    fn random_operations_keep_every_invariant() {
        // Protects the internal invariants (chains, wheel placement, counts) under random
        // operations with colliding hashes, a tiny capacity and a clock that also goes back.
        use proptest::prelude::*;
        #[derive(Clone, Debug)]
        enum Op {
            Lock(u16, u8, u8, u64),
            Unlock(u16, u8, u8),
            Advance,
            Time(i64),
        }
        let op = prop_oneof![
            (
                0u16..2,
                0u8..4,
                0u8..3,
                prop_oneof![0u64..5, Just(MAX_TTL_MS), Just(u64::MAX)]
            )
                .prop_map(|(s, r, o, t)| Op::Lock(s, r, o, t)),
            (0u16..2, 0u8..4, 0u8..3).prop_map(|(s, r, o)| Op::Unlock(s, r, o)),
            Just(Op::Advance),
            prop_oneof![-5i64..6, Just(1i64 << 42), Just(-(1i64 << 42))].prop_map(Op::Time),
        ];
        let config = ProptestConfig {
            cases: 128,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(ops in proptest::collection::vec(op, 1..60), mask in 0u32..4)| {
            let mut table = LeaseTable::new(5);
            table.hash_mask = mask;
            let mut now = 1u64 << 43;
            // The long owner does not fit inside a lease with any resource: its keys are
            // boxed, and handing an expired lease between owners changes the key's form.
            let owners: [&[u8]; 3] = [b"x", b"yy", &[b'z'; INLINE]];
            for op in ops {
                match op {
                    Op::Lock(s, r, o, ttl) => {
                        let resource = [r];
                        let held = table.holder(StoreId(s), &resource, now).is_some();
                        let got = table.try_lock(StoreId(s), &resource, owners[o as usize], ttl, now);
                        if held {
                            prop_assert_eq!(got, Ok(false));
                        }
                        if got == Ok(true) {
                            let expected = (owners[o as usize], ttl.min(u64::MAX - now));
                            prop_assert_eq!(table.holder(StoreId(s), &resource, now), Some(expected));
                        }
                    }
                    Op::Unlock(s, r, o) => {
                        let resource = [r];
                        let before = table.holder(StoreId(s), &resource, now).map(|(h, _)| h.to_vec());
                        let got = table.unlock(StoreId(s), &resource, owners[o as usize], now);
                        let expected = match before {
                            None => UnlockStatus::LockDoesNotExist,
                            Some(h) if h == owners[o as usize] => UnlockStatus::Success,
                            Some(_) => UnlockStatus::LockBelongsToOthers,
                        };
                        prop_assert_eq!(got, expected);
                    }
                    Op::Advance => {
                        let before = table.len();
                        let forward = now >= table.wheel.elapsed_ms();
                        let removed = table.advance(now);
                        prop_assert_eq!(before - removed, table.len());
                        if forward {
                            // The wheel ticks are the clock's: nothing expired stays stored.
                            for (_, lease) in &table.leases {
                                prop_assert!(lease.is_live(now));
                            }
                        }
                    }
                    Op::Time(delta) => now = now.saturating_add_signed(delta),
                }
                table.assert_consistent();
            }
        });
    }
}
