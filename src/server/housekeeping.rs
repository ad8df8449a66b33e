//! A worker's housekeeping, every tick: expired leases reclaimed a slice at a time, connections
//! past their deadlines closed, the end of a crash grace said; at shutdown, the idle
//! connections closed at once.

use std::rc::Rc;
use std::time::Duration;

use super::worker::Worker;
use crate::metrics::Limit;

/// How often, at most, a worker looks for expired leases to reclaim when it found none waiting
/// the time before. Expiry itself is decided by comparing deadlines with the clock, so this
/// only bounds how long dead leases use memory.
const RECLAIM_INTERVAL: Duration = Duration::from_millis(100);
/// Steps of reclamation (a lease reclaimed, or moved down a level of the wheel) at a time. A
/// reclaim of a cold lease costs about 240 ns (perf, during a storm of a million leases
/// expiring at once), so a slice is about 0.1 ms.
const RECLAIM_SLICE: usize = 512;
/// The pause between slices while expired leases remain to be reclaimed: the worker's thread
/// sleeps, so that on a core it shares (with a client, say) the others run between slices.
/// At most about a slice a millisecond: a storm of expiries takes longer to reclaim, at about a
/// tenth of a core, and never takes the worker or its core. Expired leases are already dead to
/// every answer; reclaiming only returns their memory.
const RECLAIM_PAUSE: Duration = Duration::from_millis(1);

/// Reclaims expired leases and closes connections past their deadlines, every tick; at
/// shutdown, closes the idle connections at once.
pub(super) async fn housekeeping(worker: Rc<Worker>) {
    let config = &worker.shared.config;
    let shortest = config
        .idle_timeout
        .min(config.header_timeout)
        .min(config.body_timeout);
    // A connection is closed at most a quarter of its timeout late.
    let tick = (shortest / 4).clamp(Duration::from_millis(5), RECLAIM_INTERVAL);
    let mut next_sweep_ms = 0;
    let mut backlog = false;
    loop {
        let pause = if backlog { RECLAIM_PAUSE } else { tick };
        let closing = monoio::select! {
            _ = monoio::time::sleep(pause) => false,
            _ = worker.shutdown.wait() => true,
        };
        let now_ms = worker.shared.clock.now_ms();
        if closing || now_ms >= next_sweep_ms {
            let swept = worker.reaper.sweep(now_ms, closing);
            count_timeouts(&worker, &swept);
            next_sweep_ms = now_ms.saturating_add(tick.as_millis() as u64);
        }
        if closing {
            break;
        }
        worker.shared.say_when_grace_ends(now_ms);
        // One slice a wake-up: a million leases that expire together would otherwise stall
        // this worker, or hold its core for milliseconds at a time.
        let step = worker
            .shard
            .borrow_mut()
            .table_mut()
            .advance_at_most(now_ms, RECLAIM_SLICE);
        backlog = !step.finished;
        if step.reclaimed > 0 {
            worker.metrics().expired(step.reclaimed);
            worker
                .metrics()
                .set_leases(worker.shard.borrow().table().len());
        }
    }
    // Draining: keep enforcing deadlines on the connections still finishing their work.
    loop {
        monoio::time::sleep(tick).await;
        let swept = worker.reaper.sweep(worker.shared.clock.now_ms(), true);
        count_timeouts(&worker, &swept);
    }
}

fn count_timeouts(worker: &Worker, swept: &super::reaper::Swept) {
    let m = worker.metrics();
    m.limit(Limit::IdleTimeout, swept.idle_timeouts);
    m.limit(Limit::ReadTimeout, swept.read_timeouts);
    m.limit(Limit::WriteTimeout, swept.write_timeouts);
}
