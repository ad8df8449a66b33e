//! Cross-shard message round trips through `shard::Inbox`, in batches: one thread sends a
//! batch of requests to a busy peer, which answers each into the sender's inbox. Shows the
//! per-message cost once wake-ups are out of the way (the peer never parks here).

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
                while let Some(m) = inboxes[1].try_recv_request() {
                    while inboxes[0].send_reply(m).is_err() {
                        std::hint::spin_loop();
                    }
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
                    for m in 0..batch {
                        let mut msg = m;
                        while let Err(back) = inboxes[1].send_request(msg) {
                            msg = back;
                            std::hint::spin_loop();
                        }
                    }
                    let mut got = 0;
                    while got < batch {
                        if inboxes[0].try_recv_reply().is_some() {
                            got += 1;
                        } else {
                            std::hint::spin_loop();
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
