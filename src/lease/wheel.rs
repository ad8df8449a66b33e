//! A hierarchical timing wheel that tells which leases are due for reclamation.
//!
//! Ground rules, in the manner of tokio's timer wheel (`tokio/src/runtime/time/wheel/`):
//!
//! - The wheel never reads a clock. Time is a `u64` count of 1 ms ticks, passed in.
//! - An entry is a [`TimerId`] (a slab index chosen by the caller) and the tick `when_ms` at
//!   which it becomes due. [`Wheel::poll`] hands back, one by one, every entry whose
//!   `when_ms <= now_ms`, already unlinked; nothing is handed back before its tick.
//! - [`Wheel::remove`] and [`Wheel::insert`] are O(1): every slot is an intrusive
//!   doubly-linked list threaded through `nodes`, a vector of 8-byte links indexed by the
//!   entry's id. The due tick is the caller's to keep (a lease already stores its deadline),
//!   and an entry's list follows from it, so the wheel stores neither.
//! - [`NUM_LEVELS`] levels of [`SLOTS`] slots; a slot of level `L` spans `64^L` ticks, so the
//!   wheel sees [`SPAN_MS`] = 2^42 ticks (139 years) ahead, more than the longest lease
//!   (2^31 - 1 seconds, about 2^41 ms). An entry further away than that sits in the top level,
//!   which is then used as a ring: when its slot comes round too early, the entry is put back.
//! - Each level keeps an `occupied` bitmask, so finding the next slot to process is a rotate
//!   and a trailing-zero count, and a long gap between two polls costs the slots that hold
//!   entries, never one step per tick. A gap wider than the whole wheel re-files every entry
//!   once (O(entries)) instead of turning the top level round many times.
//!
//! - A slot is emptied in steps: when its turn comes, its whole list moves to the `cascading`
//!   list at once, and its entries are re-filed from there one by one, as many at a time as
//!   [`Wheel::poll_within`] is allowed. A million leases granted together sit in one slot
//!   of a high level; re-filing them in one call stalled the worker for tens of milliseconds.
//!
//! Invariants (checked by `assert_consistent` in the tests):
//!
//! - `elapsed_ms` only grows. Every entry due at or before `elapsed_ms` is in the `pending`
//!   list or the `cascading` list; every other entry sits in the `cascading` list or in level
//!   `level_for(elapsed_ms, when_ms)`, slot `slot_for(when_ms, level)`. An entry of the
//!   `cascading` list is due at or after `elapsed_ms`, and the list is empty whenever a slot
//!   is taken up (`process`).
//! - A slot's bit in `occupied` is set iff its list is non-empty.
//! - `len` is the number of linked entries.

/// Slots per level (one `u64` bitmask covers them).
pub const SLOTS: usize = 64;
/// Bits of a tick consumed by one level.
const SLOT_BITS: u32 = 6;
/// Levels of the wheel: `64^7 = 2^42` ticks, which covers any lease of up to 2^31 s.
pub const NUM_LEVELS: usize = 7;
/// How many ticks ahead the wheel can tell apart without turning its top level round.
pub const SPAN_MS: u64 = 1 << (SLOT_BITS as usize * NUM_LEVELS);

/// The end marker of an intrusive list.
const NIL: u32 = u32::MAX;
/// The `prev` of an entry that is in no list; no id may use it either.
const UNLINKED: u32 = u32::MAX - 1;
/// Place of the list of entries that are due (`when_ms <= elapsed_ms`).
const PENDING: usize = NUM_LEVELS * SLOTS;
/// Place of the list of the slot being emptied, whose entries wait to be re-filed.
const CASCADING: usize = PENDING + 1;
/// Number of list heads: every slot of every level, the pending list, the cascading list.
const LISTS: usize = NUM_LEVELS * SLOTS + 2;

/// What [`Wheel::poll_within`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polled {
    /// An entry due by `now_ms`, unlinked.
    Due(TimerId),
    /// Nothing more is due by `now_ms`: the wheel has processed everything up to it.
    Done,
    /// The budget ran out before either: call again to go on.
    Busy,
}

/// The caller's handle on one wheel entry: in the lease table, the lease's slab index.
/// `u32::MAX` and `u32::MAX - 1` are reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u32);

/// One entry's links: 8 bytes, because the entry's due tick lives with the caller (the
/// lease's deadline) and its list follows from that tick and `elapsed_ms` (the invariant).
#[derive(Clone, Copy, Debug)]
struct Node {
    prev: u32,
    next: u32,
}

impl Node {
    const VACANT: Node = Node {
        prev: UNLINKED,
        next: NIL,
    };
}

/// The next slot to process: its level, its index, and the tick at which it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expiration {
    level: usize,
    slot: usize,
    deadline_ms: u64,
}

/// A hierarchical timing wheel over caller-chosen ids. See the module docs.
///
/// The wheel does not store when an entry is due: the caller does (the lease table keeps it
/// in the lease), and hands it in. [`Wheel::remove`] takes the tick the entry was inserted
/// with; [`Wheel::poll`] takes a function from id to that tick, for the entries it re-files.
#[derive(Debug)]
pub struct Wheel {
    /// Links of entry `id` at index `id`; grows to the largest id ever inserted.
    nodes: Vec<Node>,
    /// Head of each list, indexed by place.
    heads: Box<[u32; LISTS]>,
    /// Bit `s` of `occupied[l]` is set iff slot `s` of level `l` is non-empty.
    occupied: [u64; NUM_LEVELS],
    /// Every entry due at or before this tick has been moved to `pending`.
    elapsed_ms: u64,
    len: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Self::new()
    }
}

impl Wheel {
    /// An empty wheel at tick 0.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty wheel at tick 0 with room for ids below `capacity` without reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        Wheel {
            nodes: Vec::with_capacity(capacity),
            heads: Box::new([NIL; LISTS]),
            occupied: [0; NUM_LEVELS],
            elapsed_ms: 0,
            len: 0,
        }
    }

    /// Number of entries in the wheel.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tick up to which the wheel has processed its slots.
    pub fn elapsed_ms(&self) -> u64 {
        self.elapsed_ms
    }

    /// Whether `id` is in the wheel.
    pub fn contains(&self, id: TimerId) -> bool {
        self.nodes
            .get(id.0 as usize)
            .is_some_and(|node| node.prev != UNLINKED)
    }

    /// Files `id` to be handed back by [`Wheel::poll`] once `now_ms >= when_ms`. An entry
    /// already due (`when_ms <= elapsed`) goes straight to the pending list. The caller keeps
    /// `when_ms`: it must hand the same tick to `remove` and, through its function, to `poll`.
    ///
    /// # Panics
    /// If `id` is reserved or already in the wheel: both are bugs of the caller, which owns
    /// the ids (slab indices) and must remove an entry before reusing its id.
    pub fn insert(&mut self, id: TimerId, when_ms: u64) {
        assert!(id.0 < UNLINKED, "{id:?} is reserved");
        let index = id.0 as usize;
        if index >= self.nodes.len() {
            self.nodes.resize(index + 1, Node::VACANT);
        }
        assert_eq!(
            self.nodes[index].prev, UNLINKED,
            "{id:?} is already in the wheel"
        );
        self.file(id.0, when_ms);
        self.len += 1;
    }

    /// Takes `id`, inserted due at `when_ms`, out of the wheel. Returns whether it was there.
    pub fn remove(&mut self, id: TimerId, when_ms: u64) -> bool {
        if !self.contains(id) {
            return false;
        }
        self.unlink(id.0, self.place_of(when_ms));
        self.len -= 1;
        true
    }

    /// Hands back one entry with `when_ms <= now_ms`, unlinked, or `None` once there is none
    /// left; the wheel has then processed everything up to `now_ms`. `when_of` gives the tick
    /// each entry was inserted with.
    ///
    /// A `now_ms` below the wheel's elapsed tick (a clock that went back) hands back nothing
    /// and changes nothing.
    pub fn poll(&mut self, now_ms: u64, when_of: impl Fn(TimerId) -> u64) -> Option<TimerId> {
        let mut unbounded = usize::MAX;
        match self.poll_within(now_ms, when_of, &mut unbounded) {
            Polled::Due(id) => Some(id),
            Polled::Done => None,
            Polled::Busy => unreachable!("an unbounded budget never runs out"),
        }
    }

    /// [`poll`](Self::poll), re-filing at most `budget` entries of a slot being emptied
    /// before it answers; each re-filed entry takes one from `budget`. Lets the caller bound
    /// the work of one call, however many entries one slot holds. (A gap between two polls
    /// wider than the whole wheel re-files every entry at once, unbounded: that takes 139
    /// years of ticks.)
    pub fn poll_within(
        &mut self,
        now_ms: u64,
        when_of: impl Fn(TimerId) -> u64,
        budget: &mut usize,
    ) -> Polled {
        if now_ms < self.elapsed_ms {
            return Polled::Done;
        }
        loop {
            let head = self.heads[PENDING];
            if head != NIL {
                self.unlink(head, PENDING);
                self.len -= 1;
                return Polled::Due(TimerId(head));
            }
            let head = self.heads[CASCADING];
            if head != NIL {
                if *budget == 0 {
                    return Polled::Busy;
                }
                *budget -= 1;
                self.unlink(head, CASCADING);
                self.file(head, when_of(TimerId(head)));
                continue;
            }
            if now_ms - self.elapsed_ms >= SPAN_MS {
                // Every slot start within the gap would be visited, some of the top level
                // many times over; re-filing each entry once is cheaper and lands each in
                // the right place (or in `pending`) relative to `now_ms` directly.
                self.refile_all(now_ms, &when_of);
                continue;
            }
            match self.next_expiration() {
                Some(expiration) if expiration.deadline_ms <= now_ms => {
                    self.process(expiration);
                }
                _ => {
                    self.elapsed_ms = now_ms;
                    return Polled::Done;
                }
            }
        }
    }

    /// The earliest slot that holds entries, with the tick at which it starts.
    ///
    /// Levels are looked at from the lowest: every entry of level `L` shares all digits above
    /// `L` with `elapsed_ms`, so it is due before any slot of a higher level starts.
    fn next_expiration(&self) -> Option<Expiration> {
        let (level, occupied) = self
            .occupied
            .iter()
            .copied()
            .enumerate()
            .find(|&(_, occupied)| occupied != 0)?;
        let shift = SLOT_BITS * level as u32;
        let slot_range = 1u64 << shift;
        let level_range = slot_range << SLOT_BITS;
        let now_slot = ((self.elapsed_ms >> shift) & (SLOTS as u64 - 1)) as u32;
        // Search from the slot after `elapsed`'s own: below the top level that slot is always
        // empty (an entry there would be due within `elapsed`'s current slot, so it would sit
        // lower), and at the top level it can only hold entries of a later turn, which must
        // not hide the other slots of this turn.
        let first = (now_slot + 1) & (SLOTS as u32 - 1);
        let slot =
            ((first + occupied.rotate_right(first).trailing_zeros()) & (SLOTS as u32 - 1)) as usize;
        // `level_start + slot * slot_range` stays below the next multiple of `level_range`,
        // so it cannot overflow.
        let level_start = self.elapsed_ms & !(level_range - 1);
        let mut deadline_ms = level_start + slot as u64 * slot_range;
        if deadline_ms <= self.elapsed_ms {
            // Only the top level wraps round: its slot at or behind `elapsed_ms` holds entries
            // of a later turn. Saturating: a slot past `u64::MAX` is processed at `u64::MAX`,
            // where every entry is due anyway.
            debug_assert_eq!(level, NUM_LEVELS - 1, "a lower level holds a past slot");
            deadline_ms = deadline_ms.saturating_add(level_range);
        }
        Some(Expiration {
            level,
            slot,
            deadline_ms,
        })
    }

    /// Takes up one slot: moves the clock to its start, and its whole list to the cascading
    /// list, from which `poll_within` re-files each entry: into `pending` if due, or a lower
    /// level (or, for an entry of a later turn of the top level, back into the top level).
    fn process(&mut self, expiration: Expiration) {
        let place = expiration.level * SLOTS + expiration.slot;
        debug_assert_eq!(self.heads[CASCADING], NIL, "a slot is taken up mid-cascade");
        // The list moves whole: its links stay valid, and its head's `prev` is already NIL.
        self.heads[CASCADING] = std::mem::replace(&mut self.heads[place], NIL);
        self.occupied[expiration.level] &= !(1u64 << expiration.slot);
        debug_assert!(expiration.deadline_ms >= self.elapsed_ms);
        self.elapsed_ms = expiration.deadline_ms;
    }

    /// Re-files every entry of the levels relative to `now_ms`, which becomes the elapsed tick.
    fn refile_all(&mut self, now_ms: u64, when_of: &impl Fn(TimerId) -> u64) {
        debug_assert_eq!(
            self.heads[CASCADING], NIL,
            "re-filing everything mid-cascade"
        );
        self.elapsed_ms = now_ms;
        for level in 0..NUM_LEVELS {
            let mut occupied = std::mem::take(&mut self.occupied[level]);
            while occupied != 0 {
                let slot = occupied.trailing_zeros() as usize;
                occupied &= occupied - 1;
                let mut cursor = std::mem::replace(&mut self.heads[level * SLOTS + slot], NIL);
                while cursor != NIL {
                    let next = self.nodes[cursor as usize].next;
                    self.file(cursor, when_of(TimerId(cursor)));
                    cursor = next;
                }
            }
        }
    }

    /// The list an entry due at `when_ms` belongs to, seen from `elapsed_ms`.
    fn place_of(&self, when_ms: u64) -> usize {
        if when_ms <= self.elapsed_ms {
            PENDING
        } else {
            let level = level_for(self.elapsed_ms, when_ms);
            level * SLOTS + slot_for(when_ms, level)
        }
    }

    /// Pushes `id` (whose list links are stale) onto the list `when_ms` belongs to.
    fn file(&mut self, id: u32, when_ms: u64) {
        let place = self.place_of(when_ms);
        if place < PENDING {
            self.occupied[place / SLOTS] |= 1u64 << (place % SLOTS);
        }
        let head = self.heads[place];
        if head != NIL {
            self.nodes[head as usize].prev = id;
        }
        self.nodes[id as usize] = Node {
            prev: NIL,
            next: head,
        };
        self.heads[place] = id;
    }

    /// Takes a linked `id` out of its list, the one at `place` or the cascading list,
    /// clearing its slot's bit if the list empties. Only the head of a list needs `place`; a
    /// wrong one there is a bug of the caller (a `when_ms` other than the inserted one).
    fn unlink(&mut self, id: u32, place: usize) {
        let Node { prev, next } = self.nodes[id as usize];
        debug_assert_ne!(prev, UNLINKED);
        if prev == NIL {
            // An entry waiting in the cascading list is not where its tick says.
            let place = if self.heads[place] == id {
                place
            } else {
                CASCADING
            };
            debug_assert_eq!(self.heads[place], id, "entry {id} is not at place {place}");
            self.heads[place] = next;
            if next == NIL && place < PENDING {
                self.occupied[place / SLOTS] &= !(1u64 << (place % SLOTS));
            }
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        self.nodes[id as usize] = Node::VACANT;
    }

    /// Checks every invariant of the module docs, with `when_of` giving each linked entry's
    /// tick; for tests.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self, when_of: impl Fn(TimerId) -> u64) {
        let mut linked = 0;
        for place in 0..LISTS {
            let head = self.heads[place];
            if place < PENDING {
                let (level, slot) = (place / SLOTS, place % SLOTS);
                assert_eq!(
                    self.occupied[level] & (1u64 << slot) != 0,
                    head != NIL,
                    "occupied bit of level {level} slot {slot}"
                );
            }
            let mut prev = NIL;
            let mut cursor = head;
            while cursor != NIL {
                let node = self.nodes[cursor as usize];
                let when_ms = when_of(TimerId(cursor));
                assert_eq!(node.prev, prev);
                if place == CASCADING {
                    assert!(
                        when_ms >= self.elapsed_ms,
                        "{cursor} due at {when_ms} waits to cascade from {}",
                        self.elapsed_ms
                    );
                } else {
                    assert_eq!(
                        self.place_of(when_ms),
                        place,
                        "{cursor} due at {when_ms} seen from {}",
                        self.elapsed_ms
                    );
                }
                linked += 1;
                assert!(linked <= self.nodes.len(), "a list loops");
                prev = cursor;
                cursor = node.next;
            }
        }
        let placed = self.nodes.iter().filter(|n| n.prev != UNLINKED).count();
        assert_eq!(linked, placed, "entries reachable from the lists");
        assert_eq!(linked, self.len);
    }
}

/// The level an entry due at `when_ms` belongs to, seen from `elapsed_ms`: the level of the
/// highest 6-bit digit in which the two differ, capped at the top level.
fn level_for(elapsed_ms: u64, when_ms: u64) -> usize {
    const SLOT_MASK: u64 = SLOTS as u64 - 1;
    // The mask keeps digit 0 "different" so that equal ticks still map to level 0.
    let masked = ((elapsed_ms ^ when_ms) | SLOT_MASK).min(SPAN_MS - 1);
    let significant = u64::BITS - 1 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

/// The slot of `level` that an entry due at `when_ms` sits in.
fn slot_for(when_ms: u64, level: usize) -> usize {
    ((when_ms >> (SLOT_BITS * level as u32)) & (SLOTS as u64 - 1)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wheel with its entries' ticks kept beside it, as the lease table keeps them in its
    /// leases: the old self-contained interface, for the tests.
    struct Timed {
        wheel: Wheel,
        whens: std::collections::HashMap<u32, u64>,
    }

    impl Timed {
        fn new() -> Self {
            Timed {
                wheel: Wheel::new(),
                whens: Default::default(),
            }
        }

        fn insert(&mut self, id: TimerId, when_ms: u64) {
            self.wheel.insert(id, when_ms);
            self.whens.insert(id.0, when_ms);
        }

        fn remove(&mut self, id: TimerId) -> bool {
            let Some(when_ms) = self.when_ms(id) else {
                return false;
            };
            assert!(self.wheel.remove(id, when_ms));
            self.whens.remove(&id.0);
            true
        }

        fn when_ms(&self, id: TimerId) -> Option<u64> {
            assert_eq!(self.wheel.contains(id), self.whens.contains_key(&id.0));
            self.whens.get(&id.0).copied()
        }

        fn poll(&mut self, now_ms: u64) -> Option<TimerId> {
            let whens = &self.whens;
            let id = self.wheel.poll(now_ms, |id| whens[&id.0])?;
            self.whens.remove(&id.0);
            Some(id)
        }

        fn poll_within(&mut self, now_ms: u64, budget: &mut usize) -> Polled {
            let whens = &self.whens;
            let polled = self.wheel.poll_within(now_ms, |id| whens[&id.0], budget);
            if let Polled::Due(id) = polled {
                self.whens.remove(&id.0);
            }
            polled
        }

        fn assert_consistent(&self) {
            self.wheel.assert_consistent(|id| self.whens[&id.0]);
        }

        fn len(&self) -> usize {
            self.wheel.len()
        }

        fn is_empty(&self) -> bool {
            self.wheel.is_empty()
        }

        fn elapsed_ms(&self) -> u64 {
            self.wheel.elapsed_ms()
        }
    }

    /// Polls everything due by `now_ms`, checking the invariants after each step.
    fn drain(wheel: &mut Timed, now_ms: u64) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(id) = wheel.poll(now_ms) {
            wheel.assert_consistent();
            out.push(id.0);
        }
        wheel.assert_consistent();
        out.sort_unstable();
        out
    }

    #[test]
    fn level_and_slot_follow_the_highest_differing_digit() {
        // Protects the placement rule every other property rests on.
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(64, 127), 0);
        assert_eq!(level_for(0, 4095), 1);
        assert_eq!(level_for(0, 4096), 2);
        assert_eq!(level_for(0, SPAN_MS - 1), NUM_LEVELS - 1);
        // Beyond the span: capped at the top level.
        assert_eq!(level_for(0, SPAN_MS), NUM_LEVELS - 1);
        assert_eq!(level_for(0, u64::MAX), NUM_LEVELS - 1);
        assert_eq!(slot_for(4096 + 3 * 64 + 5, 0), 5);
        assert_eq!(slot_for(4096 + 3 * 64 + 5, 1), 3);
        assert_eq!(slot_for(4096 + 3 * 64 + 5, 2), 1);
        assert_eq!(slot_for(SPAN_MS + (5 << 36), NUM_LEVELS - 1), 5);
    }

    #[test]
    fn nothing_is_handed_back_before_its_tick_and_everything_at_it() {
        // Protects exactness at 1 ms: an entry comes out at `when_ms`, not a tick earlier.
        let whens = [
            1u64, 2, 63, 64, 65, 100, 4095, 4096, 4097, 262_144, 1_000_000,
        ];
        let mut wheel = Timed::new();
        for (id, &when) in whens.iter().enumerate() {
            wheel.insert(TimerId(id as u32), when);
        }
        wheel.assert_consistent();
        for (id, &when) in whens.iter().enumerate() {
            assert_eq!(
                drain(&mut wheel, when - 1),
                Vec::<u32>::new(),
                "before {when}"
            );
            assert_eq!(drain(&mut wheel, when), vec![id as u32], "at {when}");
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn insert_and_remove_keep_lists_and_bitmasks_exact() {
        // Protects O(1) cancellation from the head, middle and tail of a slot's list.
        let mut wheel = Timed::new();
        for id in 0..5 {
            wheel.insert(TimerId(id), 10);
        }
        wheel.insert(TimerId(5), 5000);
        assert_eq!(wheel.len(), 6);
        assert_eq!(wheel.when_ms(TimerId(5)), Some(5000));
        for id in [2, 4, 0] {
            assert!(wheel.remove(TimerId(id)));
            wheel.assert_consistent();
        }
        assert!(!wheel.remove(TimerId(2)), "removed twice");
        assert!(!wheel.remove(TimerId(99)), "never inserted");
        assert_eq!(wheel.when_ms(TimerId(2)), None);
        assert_eq!(drain(&mut wheel, 10), vec![1, 3]);
        assert!(wheel.remove(TimerId(5)));
        assert!(wheel.is_empty());
        assert_eq!(drain(&mut wheel, u64::MAX), Vec::<u32>::new());
        // A removed id may be inserted again.
        wheel.insert(TimerId(2), u64::MAX);
        assert_eq!(drain(&mut wheel, u64::MAX), vec![2]);
    }

    #[test]
    fn entries_cascade_across_every_level_boundary() {
        // Protects the cascade: an entry due just before, at and just after each 64^k
        // boundary comes out at its exact tick, whatever level it started in.
        for level in 1..=NUM_LEVELS as u32 {
            let boundary = 1u64 << (SLOT_BITS * level);
            let whens = [boundary - 1, boundary, boundary + 1];
            let mut wheel = Timed::new();
            for (id, &when) in whens.iter().enumerate() {
                wheel.insert(TimerId(id as u32), when);
            }
            wheel.assert_consistent();
            // Approach in steps that land on neither side of the boundary exactly.
            assert_eq!(drain(&mut wheel, boundary / 2), Vec::<u32>::new());
            assert_eq!(drain(&mut wheel, boundary - 2), Vec::<u32>::new());
            for (id, &when) in whens.iter().enumerate() {
                assert_eq!(drain(&mut wheel, when), vec![id as u32], "at {when}");
            }
        }
    }

    #[test]
    fn wrap_around_at_64k_boundaries_from_a_non_zero_start() {
        // Protects the slot arithmetic when `elapsed` sits just below a 64^k boundary and the
        // entry is due just after it (where slot indices restart at 0).
        for level in 1..=NUM_LEVELS as u32 {
            let boundary = 3u64 << (SLOT_BITS * level);
            let mut wheel = Timed::new();
            assert_eq!(drain(&mut wheel, boundary - 3), Vec::<u32>::new());
            wheel.insert(TimerId(0), boundary + 2);
            wheel.insert(TimerId(1), boundary - 1);
            wheel.insert(TimerId(2), boundary);
            wheel.assert_consistent();
            assert_eq!(drain(&mut wheel, boundary - 1), vec![1]);
            assert_eq!(drain(&mut wheel, boundary), vec![2]);
            assert_eq!(drain(&mut wheel, boundary + 1), Vec::<u32>::new());
            assert_eq!(drain(&mut wheel, boundary + 2), vec![0]);
        }
    }

    #[test]
    fn an_entry_of_a_later_turn_does_not_hide_the_top_levels_other_slots() {
        // Protects the top level's search order: an entry of a later turn in the slot of
        // `elapsed` itself must not be taken as the next slot, or the entries of the other
        // slots of this turn would be handed back a whole turn late.
        let mut wheel = Timed::new();
        wheel.insert(TimerId(0), SPAN_MS + 3);
        wheel.insert(TimerId(1), 1 << 41);
        // Both polls start in top-level slot 0, the one that holds the later turn.
        assert_eq!(drain(&mut wheel, (1 << 36) - 1), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, 1 << 41), vec![1]);
        assert_eq!(drain(&mut wheel, SPAN_MS + 2), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, SPAN_MS + 3), vec![0]);
    }

    #[test]
    fn top_level_wraps_for_entries_beyond_the_span() {
        // Protects the top level as a ring: an entry more than SPAN_MS away (possible when
        // polls were far apart) is never handed back early, even when its slot comes round.
        let mut wheel = Timed::new();
        assert_eq!(drain(&mut wheel, SPAN_MS - 100), Vec::<u32>::new());
        let far = SPAN_MS - 100 + SPAN_MS + 50;
        wheel.insert(TimerId(7), far);
        wheel.insert(TimerId(8), SPAN_MS + 10);
        wheel.assert_consistent();
        assert_eq!(drain(&mut wheel, SPAN_MS + 10), vec![8]);
        for now in [SPAN_MS + (1 << 36), 2 * SPAN_MS - 100, far - 1] {
            assert_eq!(drain(&mut wheel, now), Vec::<u32>::new(), "at {now}");
        }
        assert_eq!(drain(&mut wheel, far), vec![7]);
    }

    #[test]
    fn big_jumps_hand_back_exactly_the_due_entries() {
        // Protects long gaps between polls, including one wider than the whole wheel.
        let mut wheel = Timed::new();
        let whens = [5u64, 70, 5000, 1 << 30, 1 << 41, (1 << 41) + 1, SPAN_MS + 3];
        for (id, &when) in whens.iter().enumerate() {
            wheel.insert(TimerId(id as u32), when);
        }
        assert_eq!(drain(&mut wheel, 1 << 30), vec![0, 1, 2, 3]);
        assert_eq!(drain(&mut wheel, 1 << 41), vec![4]);
        assert_eq!(drain(&mut wheel, SPAN_MS + 2), vec![5]);
        wheel.insert(TimerId(9), 1 << 60);
        assert_eq!(drain(&mut wheel, (1 << 60) - 1), vec![6]);
        assert_eq!(drain(&mut wheel, u64::MAX), vec![9]);
        assert_eq!(wheel.elapsed_ms(), u64::MAX);
        // At the end of time, new entries are due at once.
        wheel.insert(TimerId(1), u64::MAX);
        assert_eq!(drain(&mut wheel, u64::MAX), vec![1]);
    }

    #[test]
    fn a_clock_that_goes_back_changes_nothing() {
        // Protects against a smaller `now_ms`: no panic, no entry handed back early, and an
        // entry filed in the past comes out at the next poll that does not go back.
        let mut wheel = Timed::new();
        wheel.insert(TimerId(0), 1000);
        assert_eq!(drain(&mut wheel, 500), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, 100), Vec::<u32>::new());
        assert_eq!(wheel.elapsed_ms(), 500);
        wheel.insert(TimerId(1), 200);
        assert_eq!(drain(&mut wheel, 300), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, 500), vec![1]);
        assert_eq!(drain(&mut wheel, 1000), vec![0]);
    }

    #[test]
    fn random_schedules_match_a_sorted_model() {
        // Protects every placement and cascade path at once against a brute-force model, with
        // time moving in steps from 1 tick to far beyond the span.
        use proptest::prelude::*;
        #[derive(Clone, Debug)]
        enum Op {
            Insert(u32, u64),
            Remove(u32),
            Poll(u64),
            /// Polls with a budget of re-filed entries, which may stop mid-cascade.
            PollWithin(u64, usize),
        }
        let delta = prop_oneof![
            0u64..4,
            60u64..70,
            4090u64..4100,
            (0u32..64).prop_map(|bits| 1u64 << bits),
            (0u32..43).prop_flat_map(|bits| 0..=(1u64 << bits)),
        ];
        let op = prop_oneof![
            (0u32..24, delta.clone()).prop_map(|(id, d)| Op::Insert(id, d)),
            (0u32..24).prop_map(Op::Remove),
            delta.clone().prop_map(Op::Poll),
            (delta, 0usize..6).prop_map(|(d, budget)| Op::PollWithin(d, budget)),
        ];
        let config = ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(ops in proptest::collection::vec(op, 1..80))| {
            let mut wheel = Timed::new();
            let mut model = std::collections::BTreeMap::<u32, u64>::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Insert(id, d) => {
                        if let std::collections::btree_map::Entry::Vacant(v) = model.entry(id) {
                            let when = now.saturating_add(d);
                            v.insert(when);
                            wheel.insert(TimerId(id), when);
                        }
                    }
                    Op::Remove(id) => {
                        prop_assert_eq!(wheel.remove(TimerId(id)), model.remove(&id).is_some());
                    }
                    Op::Poll(d) => {
                        now = now.saturating_add(d);
                        let got = drain(&mut wheel, now);
                        let due: Vec<u32> =
                            model.iter().filter(|(_, &w)| w <= now).map(|(&id, _)| id).collect();
                        model.retain(|_, w| *w > now);
                        prop_assert_eq!(got, due);
                    }
                    Op::PollWithin(d, budget) => {
                        now = now.saturating_add(d);
                        let mut budget = budget;
                        loop {
                            let polled = wheel.poll_within(now, &mut budget);
                            wheel.assert_consistent();
                            match polled {
                                Polled::Due(id) => {
                                    let when = model.remove(&id.0);
                                    prop_assert!(when.is_some_and(|w| w <= now), "{:?}", id);
                                }
                                Polled::Done => {
                                    prop_assert!(model.values().all(|&w| w > now));
                                    break;
                                }
                                Polled::Busy => {
                                    prop_assert_eq!(budget, 0);
                                    break;
                                }
                            }
                        }
                    }
                }
                wheel.assert_consistent();
                prop_assert_eq!(wheel.len(), model.len());
            }
        });
    }
}
