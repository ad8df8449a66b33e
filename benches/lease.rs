//! Micro-benchmarks of one shard's lease table and its timing wheel, at the sizes a busy
//! shard holds: 1 M live leases with 36-byte (UUID) resource ids and owners.
//!
//! Run: `cargo bench --bench lease` (`-- <filter>` for one group).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dlockd::lease::wheel::{TimerId, Wheel};
use dlockd::lease::{LeaseTable, StoreId};

const LIVE_LEASES: usize = 1_000_000;
/// A TTL that outlives any benchmark run.
const LONG_TTL_MS: u64 = 3_600_000;
/// Leases reclaimed by one `advance` in the reclamation benchmark.
const EXPIRED_LEASES: usize = 100_000;

/// A 36-byte id in UUID form, distinct for each `n`.
fn uuid(n: u64, salt: u64) -> [u8; 36] {
    let text = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n as u32,
        (n >> 32) as u16,
        salt & 0xfff,
        (n >> 12) & 0xfff,
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
    );
    let mut id = [0u8; 36];
    id.copy_from_slice(text.as_bytes());
    id
}

fn full_table(leases: usize, ttl_ms: u64) -> LeaseTable {
    let mut table = LeaseTable::new(leases * 2);
    for n in 0..leases as u64 {
        let granted = table.try_lock(StoreId(0), &uuid(n, 1), &uuid(n, 2), ttl_ms, 0);
        assert_eq!(granted, Ok(true));
    }
    table
}

fn table_ops(c: &mut Criterion) {
    let mut table = full_table(LIVE_LEASES, LONG_TTL_MS);
    let fresh: Vec<[u8; 36]> = (0..4096).map(|n| uuid(n + (1 << 40), 3)).collect();
    let owner = uuid(7, 4);
    let mut group = c.benchmark_group("lease_table_1M");
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    group.bench_function("try_lock+unlock", |b| {
        b.iter(|| {
            let resource = &fresh[i % fresh.len()];
            i += 1;
            let granted = table.try_lock(StoreId(0), resource, &owner, LONG_TTL_MS, 1);
            let status = table.unlock(StoreId(0), resource, &owner, 1);
            black_box((granted, status))
        })
    });

    let held: Vec<[u8; 36]> = (0..4096).map(|n| uuid(n * 241, 1)).collect();
    let mut i = 0;
    group.bench_function("try_lock_refused", |b| {
        b.iter(|| {
            let resource = &held[i % held.len()];
            i += 1;
            black_box(table.try_lock(StoreId(0), resource, &owner, LONG_TTL_MS, 1))
        })
    });
    group.finish();
}

fn wheel_ops(c: &mut Criterion) {
    let mut wheel = Wheel::with_capacity(LIVE_LEASES + 1);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for id in 0..LIVE_LEASES as u32 {
        // xorshift: deadlines spread over an hour, so every level below it is populated.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        wheel.insert(TimerId(id), 1 + state % LONG_TTL_MS);
    }
    let spare = TimerId(LIVE_LEASES as u32);
    let mut group = c.benchmark_group("wheel_1M");
    group.throughput(Throughput::Elements(1));
    let mut when = 0u64;
    group.bench_function("insert+remove", |b| {
        b.iter(|| {
            when = (when + 7919) % LONG_TTL_MS;
            wheel.insert(spare, 1 + when);
            black_box(wheel.remove(spare, 1 + when))
        })
    });
    group.finish();
}

fn reclaim(c: &mut Criterion) {
    let mut group = c.benchmark_group("advance");
    group.throughput(Throughput::Elements(EXPIRED_LEASES as u64));
    group.sample_size(10);
    // Every lease expired by the time of `advance`, their deadlines spread over 100 s
    // (the cascade through the lower levels is part of the cost).
    group.bench_function("reclaim_100k_expired", |b| {
        b.iter_batched(
            || {
                let mut table = LeaseTable::new(EXPIRED_LEASES);
                for n in 0..EXPIRED_LEASES as u64 {
                    let ttl_ms = n % 100_000;
                    let granted = table.try_lock(StoreId(0), &uuid(n, 1), &uuid(n, 2), ttl_ms, 0);
                    assert_eq!(granted, Ok(true));
                }
                table
            },
            |mut table| {
                let removed = table.advance(100_000);
                assert_eq!(removed, EXPIRED_LEASES);
                table
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, table_ops, wheel_ops, reclaim);
criterion_main!(benches);
