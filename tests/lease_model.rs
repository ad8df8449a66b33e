//! Model-based test of the lease table: random sequences of operations run against
//! [`LeaseTable`] and the library's reference model (`dlockd::lease::model`, a plain
//! `BTreeMap`), compared after every step by the same check the `lease_ops` fuzz target runs.
//!
//! The model is the contract's lock semantics and nothing else: a lease granted at `g` with
//! `ttl` is live on every tick of `g ..= g + ttl` (saturating), try-lock grants iff there is no
//! live lease, unlock answers by the live lease's owner; fencing tokens start at the first one
//! configured and grow strictly with every grant; a restored lease is held through its end with
//! its own token. It never reclaims anything, so it also checks that reclamation (the wheel)
//! never changes an answer. Time only moves forward here, in steps of a few ticks, in jumps up
//! to 2^42 ms, and exactly onto the last live tick of a lease or the tick after.
//!
//! The keys here are fewer than the fuzz target's (two stores, four resources, three owners),
//! so that operations meet on the same key often.

use dlockd::lease::model::{self, Offset, Op, MAX_TTL_MS};
use dlockd::lease::{LeaseError, LeaseTable, StoreId};
use proptest::prelude::*;

const STORES: u16 = 2;
const RESOURCES: usize = 4;
const OWNERS: usize = 3;

/// Runs `ops` from `start_ms` on a new table of `max_leases` and the model, checking agreement
/// after every step.
fn run(start_ms: u64, max_leases: usize, ops: &[Op]) -> Result<(), String> {
    model::run(&mut LeaseTable::new(max_leases), start_ms, max_leases, ops)
}

fn ttl_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=3000,
        (1u64..=10).prop_map(|s| s * 1000),
        (1u64..=2_147_483_647).prop_map(|s| s * 1000),
        Just(MAX_TTL_MS),
    ]
}

fn wait_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..=5,
        1 => 995u64..=1005,
        1 => (0u32..=42).prop_flat_map(|bits| 0..=(1u64 << bits)),
    ]
}

/// A restored lease's end from now: passed, soon, far, or never.
fn end() -> impl Strategy<Value = Offset> {
    prop_oneof![
        (0u64..=300).prop_map(|by| Offset { back: true, by }),
        (0u64..=3000).prop_map(|by| Offset { back: false, by }),
        (0u64..(1 << 42)).prop_map(|by| Offset { back: false, by }),
        Just(Offset {
            back: false,
            by: u64::MAX
        }),
    ]
}

/// A restored token from the next one: below it, at it, just above, or far above.
fn token() -> impl Strategy<Value = Offset> {
    prop_oneof![
        (0u64..=600).prop_map(|by| Offset { back: true, by }),
        (0u64..=3).prop_map(|by| Offset { back: false, by }),
        (0u64..(1 << 40)).prop_map(|by| Offset { back: false, by }),
    ]
}

fn first_token() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1), 0u64..(1 << 48)]
}

fn restore() -> impl Strategy<Value = Op> {
    (0..STORES, 0..RESOURCES, 0..OWNERS, end(), token()).prop_map(
        |(store, resource, owner, end, token)| Op::Restore {
            store,
            resource,
            owner,
            end,
            token,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..STORES, 0..RESOURCES, 0..OWNERS, ttl_ms()).prop_map(
            |(store, resource, owner, ttl_ms)| Op::TryLock { store, resource, owner, ttl_ms }
        ),
        2 => (0..STORES, 0..RESOURCES, 0..OWNERS, ttl_ms()).prop_map(
            |(store, resource, owner, ttl_ms)| Op::TryLockFenced { store, resource, owner, ttl_ms }
        ),
        3 => (0..STORES, 0..RESOURCES, 0..OWNERS)
            .prop_map(|(store, resource, owner)| Op::Unlock { store, resource, owner }),
        1 => (0..STORES, 0..RESOURCES).prop_map(|(store, resource)| Op::Holder { store, resource }),
        2 => Just(Op::Advance),
        1 => (0usize..4).prop_map(|budget| Op::AdvanceAtMost { budget }),
        2 => wait_ms().prop_map(|ms| Op::Wait { ms }),
        2 => (0usize..8, any::<bool>()).prop_map(|(pick, after)| Op::ToEnd { pick, after }),
        1 => first_token().prop_map(|first| Op::EnableFencing { first }),
        1 => restore(),
        1 => Just(Op::Live),
        2 => (0..STORES, 0..RESOURCES, 0..OWNERS, ttl_ms()).prop_map(
            |(store, resource, owner, ttl_ms)| Op::Renew { store, resource, owner, ttl_ms }
        ),
    ]
}

/// What a server does at start-up: fencing enabled (or not), then saved leases put back.
fn start_up() -> impl Strategy<Value = Vec<Op>> {
    (
        proptest::option::of(first_token()),
        proptest::collection::vec(restore(), 0..4),
    )
        .prop_map(|(first, restores)| {
            first
                .map(|first| Op::EnableFencing { first })
                .into_iter()
                .chain(restores)
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Regressions live below as named tests, not in a side file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn table_agrees_with_the_model(
        start_ms in prop_oneof![Just(0u64), 0u64..(1 << 41), Just((1u64 << 42) - 3)],
        max_leases in prop_oneof![Just(2usize), Just(3), Just(64)],
        start_up in start_up(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        // Protects every answer of the table (try-lock, unlock, holder, TableFull, fencing
        // tokens, restore, the live list) against the contract's semantics, and the bounds on
        // what advance leaves stored and in the wheel.
        let ops: Vec<Op> = start_up.into_iter().chain(ops).collect();
        run(start_ms, max_leases, &ops).map_err(TestCaseError::fail)?;
    }
}

fn lock(store: u16, resource: usize, owner: usize, ttl_ms: u64) -> Op {
    Op::TryLock {
        store,
        resource,
        owner,
        ttl_ms,
    }
}

fn unlock(store: u16, resource: usize, owner: usize) -> Op {
    Op::Unlock {
        store,
        resource,
        owner,
    }
}

#[test]
fn boundaries_g_plus_t_and_g_plus_t_plus_one() {
    // Protects the floor-clock rule through the public API: live on g + t, gone on g + t + 1,
    // for a small ms TTL, one second, and the longest TTL.
    for ttl_ms in [1, 1000, MAX_TTL_MS] {
        let ops = [
            lock(0, 0, 0, ttl_ms),
            Op::ToEnd {
                pick: 0,
                after: false,
            },
            Op::Advance,
            lock(0, 0, 1, 1000),
            unlock(0, 0, 1),
            Op::ToEnd {
                pick: 0,
                after: true,
            },
            Op::Advance,
            unlock(0, 0, 0),
            lock(0, 0, 1, 1000),
        ];
        if let Err(failure) = run(17, 64, &ops) {
            panic!("ttl {ttl_ms}: {failure}");
        }
    }
}

#[test]
fn table_full_at_max_leases_until_leases_expire() {
    // Protects the bound: TableFull exactly at max_leases, no TableFull for a key already
    // stored, and a full table of expired leases still grants (they are reclaimed first).
    let mut table = LeaseTable::new(2);
    let full = Err(LeaseError::TableFull { max_leases: 2 });
    assert_eq!(table.try_lock(StoreId(0), b"a", b"o", 1000, 0), Ok(true));
    assert_eq!(table.try_lock(StoreId(1), b"a", b"o", 2000, 0), Ok(true));
    assert_eq!(table.try_lock(StoreId(0), b"b", b"o", 1000, 500), full);
    assert_eq!(table.try_lock(StoreId(0), b"a", b"p", 1000, 500), Ok(false));
    assert_eq!(table.try_lock(StoreId(0), b"a", b"p", 1000, 1001), Ok(true));
    assert_eq!(table.try_lock(StoreId(0), b"b", b"o", 1000, 2000), full);
    assert_eq!(table.len(), 2);
    assert_eq!(table.try_lock(StoreId(0), b"b", b"o", 1000, 2002), Ok(true));
    assert_eq!(table.len(), 1, "both expired leases were reclaimed");
    assert_eq!(
        table.holder(StoreId(0), b"b", 2002),
        Some((&b"o"[..], 1000))
    );
}

#[test]
fn regression_a_later_turn_in_the_top_levels_current_slot_hid_the_others() {
    // Found by the wheel's model: with no advance for ~2^42 ms, a lease filed into the top
    // level's current slot (a later turn) was taken as the next slot to process, so a lease
    // of another top-level slot was not reclaimed when it expired.
    let ops = [
        Op::Advance,
        Op::Wait {
            ms: (1 << 42) - 1000,
        },
        lock(0, 0, 0, 2000),
        lock(0, 1, 0, 500),
        Op::ToEnd {
            pick: 1,
            after: true,
        },
        Op::Advance,
        Op::ToEnd {
            pick: 0,
            after: true,
        },
        Op::Advance,
    ];
    if let Err(failure) = run(0, 64, &ops) {
        panic!("{failure}");
    }
}

#[test]
fn restored_leases_hold_their_tokens_and_later_grants_go_above() {
    // Protects start-up through the public API: fencing from its first token, saved leases
    // held by their owners through their ends with their own tokens (one already past its end
    // held through the current tick), and every later grant's token above all of them.
    let restore = |resource, owner, end, token| Op::Restore {
        store: 0,
        resource,
        owner,
        end,
        token,
    };
    let ahead = |by| Offset { back: false, by };
    let back = |by| Offset { back: true, by };
    let fenced = |resource, owner| Op::TryLockFenced {
        store: 1,
        resource,
        owner,
        ttl_ms: 1000,
    };
    let ops = [
        Op::EnableFencing { first: 70 },
        restore(0, 0, ahead(40), back(3)),
        restore(0, 1, ahead(90), ahead(0)),
        restore(1, 1, ahead(2000), ahead(500)),
        restore(2, 2, back(10), ahead(0)),
        Op::Live,
        fenced(0, 0),
        lock(0, 0, 2, 5),
        // The model's second lease in key order: resource 0's, restored through 1040.
        Op::ToEnd {
            pick: 1,
            after: false,
        },
        lock(0, 0, 2, 5),
        Op::Wait { ms: 1 },
        Op::Advance,
        lock(0, 0, 2, 5),
        Op::Live,
    ];
    if let Err(failure) = run(1000, 8, &ops) {
        panic!("{failure}");
    }
}
