//! Cross-shard message round trips through `shard::Inbox`, in batches: one thread sends a
//! batch of requests to a busy peer, which answers the batch with a batch of replies in the
//! sender's inbox. Shows the per-message cost once wake-ups are out of the way (the peer
//! never parks here).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dlockd::shard::Inbox;

type Pair = [Inbox<u64, u64>; 2];

fn round_trips(c: &mut Criterion) {
    let inboxes: Arc<Pair> = Arc::new([Inbox::new(4096, 4096), Inbox::new(4096, 4096)]);
    let stop = Arc::new(AtomicBool::new(false));
    let peer = {
        let inboxes = inboxes.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                while let Some(batch) = inboxes[1].try_recv_requests() {
                    let mut replies = batch;
                    loop {
                        match inboxes[0].push_replies(replies) {
                            Ok(()) => break,
                            Err(back) => {
                                replies = back;
                                std::hint::spin_loop();
                            }
                        }
                    }
                    inboxes[0].notify();
                }
                std::hint::spin_loop();
            }
        })
    };
    let mut group = c.benchmark_group("inbox_round_trip");
    for batch in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut msgs: Vec<u64> = (0..batch).collect();
                    while let Err(back) = inboxes[1].send_requests(msgs) {
                        msgs = back;
                        std::hint::spin_loop();
                    }
                    let mut got = 0;
                    while got < batch {
                        match inboxes[0].try_recv_replies() {
                            Some(replies) => got += replies.len() as u64,
                            None => std::hint::spin_loop(),
                        }
                    }
                }
                start.elapsed()
            });
        });
    }
    group.finish();
    stop.store(true, Ordering::Relaxed);
    let _ = peer.join();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = round_trips
}
criterion_main!(benches);
