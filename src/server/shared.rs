//! What every thread of the server shares: the workers' inboxes, the clock, process-wide
//! counts, restart safety, and the leases handed back and forth at start and stop.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::pending::WaitBudget;
use crate::clock::Clock;
use crate::config::Config;
use crate::lease::StoreId;
use crate::metrics::WorkerMetrics;
use crate::persist::{Persist, Restored};
use crate::shard::{Answered, Inbox, Mail};

/// Requests one worker may have forwarded and not yet seen answered. Bounds the reply queue:
/// every batch of replies holds one at least.
pub(super) const MAX_IN_FLIGHT_PER_WORKER: usize = 4096;
/// Batches of requests that may wait in one worker's inbox.
pub(super) const INBOX_REQUESTS: usize = 16384;

/// What all workers share: each other's inboxes, and process-wide counts.
pub(crate) struct Shared {
    pub(super) config: Config,
    /// Messages travel in batches: see `shard::Outbox`.
    pub(super) inboxes: Box<[Inbox<Mail, Answered>]>,
    pub(super) clock: Clock,
    /// Open client connections, whole process (bounded by `max_connections`).
    pub(super) connections: AtomicUsize,
    pub(super) shutting_down: AtomicBool,
    /// Set first at shutdown: every waiter is answered `{"success":false}`, and no acquire
    /// waits any more (while the workers still serve, so gRPC calls can end before they stop).
    pub(super) closing_waits: AtomicBool,
    /// Connections each worker took on (accepted itself, or was handed): written only by that
    /// worker.
    pub(super) accepted: Box<[AtomicU64]>,
    /// Open connections each worker serves (or is being handed), to spread them evenly.
    pub(super) open: Box<[AtomicUsize]>,
    /// Set once the end of the crash grace has been logged.
    grace_over_said: AtomicBool,
    /// The acquires waiting, whole process, against `--max-waiters`.
    pub(super) waits: Arc<WaitBudget>,
    /// Each worker's counters, written only by that worker.
    pub(super) metrics: Box<[WorkerMetrics]>,
    /// Restart safety, with `--data-dir`.
    pub(super) persist: Option<Persist>,
    /// The leases of a clean stop to put back, per shard; each worker takes its own at start.
    pub(super) restore: Mutex<Vec<Vec<(StoreId, Restored)>>>,
    /// Leases saved for a store no longer configured: kept for the next snapshot until they
    /// end, so that the store's return cannot grant them early.
    pub(super) orphans: Vec<Restored>,
    /// The live leases each worker leaves behind when it stops, for the snapshot.
    pub(super) left: Mutex<Vec<Restored>>,
}

impl Shared {
    /// The state of a server of `config.workers` workers, before any of them runs.
    pub(super) fn new(
        config: Config,
        clock: Clock,
        counting: bool,
        persist: Option<Persist>,
        restore: Vec<Vec<(StoreId, Restored)>>,
        orphans: Vec<Restored>,
    ) -> Shared {
        let workers = config.workers;
        Shared {
            inboxes: (0..workers)
                .map(|_| Inbox::new(INBOX_REQUESTS, MAX_IN_FLIGHT_PER_WORKER))
                .collect(),
            clock,
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            closing_waits: AtomicBool::new(false),
            accepted: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            grace_over_said: AtomicBool::new(false),
            waits: Arc::new(WaitBudget {
                max: config.max_waiters,
                used: AtomicUsize::new(0),
            }),
            metrics: (0..workers).map(|_| WorkerMetrics::new(counting)).collect(),
            persist,
            restore: Mutex::new(restore),
            orphans,
            left: Mutex::new(Vec::new()),
            config,
        }
    }

    pub(super) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub(super) fn begin_shutdown(&self) {
        self.closing_waits.store(true, Ordering::SeqCst);
        if !self.shutting_down.swap(true, Ordering::SeqCst) {
            self.kick_all();
        }
    }

    /// Whether a shutdown has begun (its first step, [`close_waits`](Self::close_waits), at
    /// least).
    pub(super) fn stopping(&self) -> bool {
        self.closing_waits.load(Ordering::Relaxed)
    }

    /// Ends every wait (`{"success":false}`) and lets no acquire wait any more: the first step
    /// of a shutdown.
    pub(super) fn close_waits(&self) {
        if !self.closing_waits.swap(true, Ordering::SeqCst) {
            self.kick_all();
        }
    }

    /// After an unclean stop with `--data-dir`, the milliseconds left before try-locks are
    /// granted again (0 once over); `None` without a data dir.
    pub(super) fn crash_grace_remaining_ms(&self) -> Option<u64> {
        let persist = self.persist.as_ref()?;
        Some(persist.refuse_until_ms.saturating_sub(self.clock.now_ms()))
    }

    /// Says once, at info, that the crash grace is over, when it was one and `now_ms` is past
    /// it. Called by every worker's housekeeping tick: the first to see it says it.
    pub(super) fn say_when_grace_ends(&self, now_ms: u64) {
        let Some(persist) = &self.persist else {
            return;
        };
        if persist.refuse_until_ms == 0 || now_ms < persist.refuse_until_ms {
            return;
        }
        if !self.grace_over_said.swap(true, Ordering::Relaxed) {
            crate::log::write(
                crate::log::Level::Info,
                format_args!(
                    "crash grace over: every lease of the last run has ended; try-locks are \
                     granted again"
                ),
            );
        }
    }

    pub(super) fn kick_all(&self) {
        for inbox in self.inboxes.iter() {
            inbox.kick();
        }
    }

    /// With `--data-dir`, once every worker has stopped: writes the snapshot of the leases the
    /// workers left (and of the orphans), and says so.
    pub(super) fn save_snapshot(&self) {
        let Some(persist) = &self.persist else {
            return;
        };
        let mut leases = std::mem::take(
            &mut *self
                .left
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        leases.extend(self.orphans.iter().cloned());
        match persist.finish(leases) {
            Ok(saved) => crate::log::write(
                crate::log::Level::Info,
                format_args!(
                    "clean stop: {saved} live lease{} saved in {}",
                    if saved == 1 { "" } else { "s" },
                    crate::persist::snapshot::path(persist.dir()).display()
                ),
            ),
            Err(e) => crate::log::write(
                crate::log::Level::Error,
                format_args!(
                    "cannot write the snapshot in {}: {e}; the next start treats this stop as \
                     a crash",
                    persist.dir().display()
                ),
            ),
        }
    }
}
