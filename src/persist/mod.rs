//! Restart and crash safety (`--data-dir`): no lease that may still be held is granted to
//! someone else after a restart or a crash, and every grant carries a fencing token larger
//! than any handed out before for its resource.
//!
//! Two files in the data dir, and a lock file that keeps a second server out:
//!
//! - [`horizon`]: the promise that survives a crash. Before a grant is acknowledged, the file
//!   durably says that no acknowledged lease ends later than its horizon and that every
//!   acknowledged token is below its ceiling. Both are written ahead of need, in batches, by
//!   one persister thread: a connection asks for more when an answer it is about to write
//!   comes within [`LOOKAHEAD_MS`] of the horizon (or half a [`TOKEN_BLOCK`] of the ceiling),
//!   and the persister moves the horizon to [`LOOKAHEAD_MS`] past the latest deadline asked
//!   for. A steady load thus costs about two `fdatasync` a second and no request waits; an
//!   answer waits only when it is not covered yet (the first grant after an idle second, or
//!   a lease longer than any before).
//! - [`snapshot`]: at a clean stop, after the workers have stopped, every live lease with its
//!   owner, remaining time and token; then the horizon file records the stop as clean.
//!
//! At start ([`recover`]): after a clean stop the snapshot's leases are put back, less the
//! time spent down ([`wall`]). After anything else, nothing is known about the leases but the
//! horizon, so every try-lock is refused (`{"success":false}`) until it has passed: at most
//! [`LOOKAHEAD_MS`] after the end of the last lease acknowledged before the crash. Tokens go
//! on from the ceiling, above every token acknowledged before.

mod codec;
pub mod horizon;
pub mod snapshot;
pub mod wall;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crate::clock::Clock;

use horizon::{HorizonError, HorizonFile, HorizonRecord};
use snapshot::{SavedLease, Snapshot};
use wall::WallMark;

/// How far past the latest deadline asked for the persister moves the horizon, and how close
/// to the horizon an answer comes before more is asked for. It bounds the unavailability
/// after a crash beyond the leases themselves.
pub const LOOKAHEAD_MS: u64 = 1000;
/// Tokens the ceiling is raised by at a time.
pub const TOKEN_BLOCK: u64 = 1 << 20;
/// Added to every remaining time written, for the floor of the clock readings around it.
const MARGIN_MS: u64 = 2;
/// How often the persister looks for work when nobody asks.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// What the answers about to be written promise: the latest last live tick and the highest
/// token among their grants. `Need::default()` promises nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Need {
    pub last_live_ms: u64,
    /// The highest token plus one; 0 for none.
    pub token_end: u64,
}

impl Need {
    #[inline]
    pub fn add(&mut self, last_live_ms: u64, token: u64) {
        self.last_live_ms = self.last_live_ms.max(last_live_ms);
        self.token_end = self.token_end.max(token.saturating_add(1));
    }

    pub fn is_empty(&self) -> bool {
        *self == Need::default()
    }
}

/// What is durably promised, shared by the workers and the persister thread.
#[derive(Debug)]
pub struct Durable {
    /// On the server's clock: no acknowledged lease is live after this tick.
    horizon_ms: AtomicU64,
    /// Every acknowledged token is below this.
    token_ceiling: AtomicU64,
    wanted_ms: AtomicU64,
    wanted_token_end: AtomicU64,
    /// A wake-up of the persister is pending: spares repeated unparks.
    asked: AtomicBool,
    stop: AtomicBool,
    persister: OnceLock<Thread>,
}

impl Durable {
    fn new(horizon_ms: u64, token_ceiling: u64) -> Self {
        Durable {
            horizon_ms: AtomicU64::new(horizon_ms),
            token_ceiling: AtomicU64::new(token_ceiling),
            wanted_ms: AtomicU64::new(0),
            wanted_token_end: AtomicU64::new(0),
            asked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            persister: OnceLock::new(),
        }
    }

    /// Whether the answers promising `need` may be written now. Asks the persister for more
    /// when `need` comes near what is promised, so that usually nobody waits.
    #[inline]
    pub fn covers(&self, need: Need) -> bool {
        let horizon_ms = self.horizon_ms.load(Ordering::Acquire);
        let ceiling = self.token_ceiling.load(Ordering::Acquire);
        if need.last_live_ms.saturating_add(LOOKAHEAD_MS / 2) > horizon_ms
            || need.token_end.saturating_add(TOKEN_BLOCK / 2) > ceiling
        {
            self.ask(need);
        }
        need.last_live_ms <= horizon_ms && need.token_end <= ceiling
    }

    #[cold]
    fn ask(&self, need: Need) {
        self.wanted_ms
            .fetch_max(need.last_live_ms, Ordering::AcqRel);
        self.wanted_token_end
            .fetch_max(need.token_end, Ordering::AcqRel);
        if !self.asked.swap(true, Ordering::AcqRel) {
            if let Some(thread) = self.persister.get() {
                thread.unpark();
            }
        }
    }

    pub fn horizon_ms(&self) -> u64 {
        self.horizon_ms.load(Ordering::Acquire)
    }

    pub fn token_ceiling(&self) -> u64 {
        self.token_ceiling.load(Ordering::Acquire)
    }
}

/// Why restart safety could not start.
#[derive(Debug)]
pub enum PersistError {
    Dir(PathBuf, io::Error),
    InUse(PathBuf),
    Horizon(HorizonError),
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistError::Dir(dir, e) => {
                write!(f, "cannot use data dir {} (--data-dir): {e}", dir.display())
            }
            PersistError::InUse(dir) => write!(
                f,
                "data dir {} is in use by another dlockd (its lock file is held)",
                dir.display()
            ),
            PersistError::Horizon(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PersistError {}

/// How the last run ended, as found at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastStop {
    /// The data dir was never used.
    Fresh,
    /// A clean stop: this many leases were still live and are held again.
    Clean { leases: usize },
    /// No clean stop: try-locks are refused for this many milliseconds.
    Unclean { refuse_ms: u64 },
}

/// A lease to put back, on this run's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub store: String,
    pub resource: Vec<u8>,
    pub owner: Vec<u8>,
    pub last_live_ms: u64,
    pub token: u64,
}

/// Restart safety at work: the data dir, its lock, the persister.
pub struct Persist {
    dir: PathBuf,
    /// Held (locked) until the clean stop is recorded: a second server on the dir is refused.
    lock: File,
    durable: Arc<Durable>,
    generation: u64,
    clock: Clock,
    persister: Mutex<Option<JoinHandle<HorizonFile>>>,
    /// Try-locks are refused before this tick (after an unclean stop).
    pub refuse_until_ms: u64,
    /// The first token this run hands out.
    pub first_token: u64,
    pub last_stop: LastStop,
    /// What was found on the way that the operator should know (a refused snapshot, say).
    pub notes: Vec<String>,
}

impl fmt::Debug for Persist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Persist")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("last_stop", &self.last_stop)
            .finish()
    }
}

/// Opens the data dir, finds how the last run ended, writes this run's first promise, and
/// starts the persister. `clock` is the server's lease clock. Returns the leases to put back.
pub fn recover(dir: &Path, clock: Clock) -> Result<(Persist, Vec<Restored>), PersistError> {
    let lock = lock_dir(dir)?;
    let (mut file, record) = HorizonFile::open(dir).map_err(PersistError::Horizon)?;
    let mut notes = Vec::new();
    let snapshot = match &record {
        Some(record) if record.clean => read_snapshot(dir, record, &mut notes),
        _ => None,
    };
    let now_mark = WallMark::now();
    let now_ms = clock.now_ms();
    let found = find_last_stop(record.as_ref(), snapshot, now_mark, now_ms);
    let generation = record.map_or(1, |r| r.generation + 1);
    let promise = write_first_promise(&mut file, generation, &found, now_ms)?;
    remove_spent_snapshot(dir, &mut notes);
    let durable = Arc::new(Durable::new(promise.horizon_ms, promise.ceiling));
    let persister = start_persister(&durable, file, generation, clock)
        .map_err(|e| PersistError::Dir(dir.to_path_buf(), e))?;
    Ok((
        Persist {
            dir: dir.to_path_buf(),
            lock,
            durable,
            generation,
            clock,
            persister: Mutex::new(Some(persister)),
            refuse_until_ms: found.refuse_until_ms,
            first_token: found.first_token,
            last_stop: found.last_stop,
            notes,
        },
        found.restored,
    ))
}

/// Creates the data dir if need be and takes its lock file, which stays held while this
/// server may grant: a second server on the dir is refused.
fn lock_dir(dir: &Path) -> Result<File, PersistError> {
    let dir_error = |e| PersistError::Dir(dir.to_path_buf(), e);
    std::fs::create_dir_all(dir).map_err(dir_error)?;
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("lock"))
        .map_err(dir_error)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(PersistError::InUse(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(dir_error(e)),
    }
}

/// The snapshot the clean stop `record` wrote, if it is there and from that run. Any other
/// finding is said in `notes`; an unreadable snapshot is moved aside.
fn read_snapshot(dir: &Path, record: &HorizonRecord, notes: &mut Vec<String>) -> Option<Snapshot> {
    let snapshot_path = snapshot::path(dir);
    match Snapshot::read(dir) {
        Ok(Some(s)) if s.generation == record.generation => Some(s),
        Ok(Some(s)) => {
            notes.push(format!(
                "snapshot {} refused: it is from run {}, the clean stop was run {}",
                snapshot_path.display(),
                s.generation,
                record.generation
            ));
            None
        }
        Ok(None) => {
            notes.push(format!(
                "snapshot {} refused: the last run stopped cleanly but the file is missing",
                snapshot_path.display()
            ));
            None
        }
        Err(e) => {
            let aside = dir.join("snapshot.rejected");
            let moved = match std::fs::rename(&snapshot_path, &aside) {
                Ok(()) => format!("moved to {}", aside.display()),
                Err(e) => format!("could not be moved aside: {e}"),
            };
            notes.push(format!(
                "snapshot {} refused: {e}; {moved}; treating the last stop as a crash",
                snapshot_path.display()
            ));
            None
        }
    }
}

/// How the last run ended, and what this run starts from.
struct Found {
    last_stop: LastStop,
    /// The leases to put back, on this run's clock.
    restored: Vec<Restored>,
    first_token: u64,
    /// Try-locks are refused before this tick (after an unclean stop); 0 otherwise.
    refuse_until_ms: u64,
}

/// Decides how the last run ended from its last horizon `record` and the `snapshot` of its
/// clean stop, if any: a clean stop puts back the leases still live after the time spent
/// down, anything else refuses try-locks through the horizon. `now_mark` and `now_ms` are
/// the same instant on the wall clock and on this run's clock.
fn find_last_stop(
    record: Option<&HorizonRecord>,
    snapshot: Option<Snapshot>,
    now_mark: WallMark,
    now_ms: u64,
) -> Found {
    let (last_stop, restored, first_token) = match (record, snapshot) {
        (None, _) => (LastStop::Fresh, Vec::new(), 1),
        (Some(record), Some(snap)) => {
            let passed = now_mark.passed_since(&snap.mark);
            let restored: Vec<Restored> = snap
                .leases
                .into_iter()
                .filter(|l| l.remaining_ms >= passed)
                .map(|l| Restored {
                    last_live_ms: now_ms.saturating_add(l.remaining_ms - passed),
                    store: l.store,
                    resource: l.resource,
                    owner: l.owner,
                    token: l.token,
                })
                .collect();
            let first = record.token_ceiling.max(snap.token_ceiling).max(1);
            (
                LastStop::Clean {
                    leases: restored.len(),
                },
                restored,
                first,
            )
        }
        (Some(record), None) => {
            let passed = now_mark.passed_since(&record.mark);
            // The horizon's last live tick, plus one: refused through it.
            let refuse_ms = record.horizon_ms.saturating_add(1).saturating_sub(passed);
            (
                LastStop::Unclean { refuse_ms },
                Vec::new(),
                record.token_ceiling.max(1),
            )
        }
    };
    let refuse_until_ms = match last_stop {
        LastStop::Unclean { refuse_ms } => now_ms.saturating_add(refuse_ms),
        _ => 0,
    };
    Found {
        last_stop,
        restored,
        first_token,
        refuse_until_ms,
    }
}

/// What this run first promises, on its clock.
struct Promise {
    horizon_ms: u64,
    ceiling: u64,
}

/// Durably writes this run's first promise, `generation`, which covers the leases put back
/// and the refusal, and a block of tokens from the first one. The record says "not clean".
fn write_first_promise(
    file: &mut HorizonFile,
    generation: u64,
    found: &Found,
    now_ms: u64,
) -> Result<Promise, PersistError> {
    let horizon_ms = found
        .restored
        .iter()
        .map(|l| l.last_live_ms)
        .fold(found.refuse_until_ms, u64::max)
        .max(now_ms);
    let ceiling = found.first_token.saturating_add(TOKEN_BLOCK);
    file.store(&HorizonRecord {
        generation,
        mark: WallMark::now(),
        horizon_ms: horizon_ms.saturating_sub(now_ms) + MARGIN_MS,
        token_ceiling: ceiling,
        clean: false,
    })
    .map_err(|e| PersistError::Horizon(HorizonError::Io(file.path().to_path_buf(), e)))?;
    Ok(Promise {
        horizon_ms,
        ceiling,
    })
}

/// Once the first promise says "not clean", the snapshot is spent: removed so nobody
/// mistakes it. A failure is said in `notes`.
fn remove_spent_snapshot(dir: &Path, notes: &mut Vec<String>) {
    let snapshot_path = snapshot::path(dir);
    match std::fs::remove_file(&snapshot_path) {
        Ok(()) => {
            let _ = horizon::sync_dir(dir);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => notes.push(format!(
            "could not remove the spent snapshot {}: {e}",
            snapshot_path.display()
        )),
    }
}

/// Starts the persister thread on `file`, and lets `durable` wake it.
fn start_persister(
    durable: &Arc<Durable>,
    file: HorizonFile,
    generation: u64,
    clock: Clock,
) -> io::Result<JoinHandle<HorizonFile>> {
    let shared = durable.clone();
    let persister = std::thread::Builder::new()
        .name("dlockd-persister".into())
        .spawn(move || persist_loop(&shared, file, generation, clock))?;
    let _ = durable.persister.set(persister.thread().clone());
    Ok(persister)
}

/// The persister: moves the promise ahead of what connections ask for, one durable write at
/// a time. Returns the file when told to stop.
fn persist_loop(
    durable: &Durable,
    mut file: HorizonFile,
    generation: u64,
    clock: Clock,
) -> HorizonFile {
    // Failed writes are retried at this pace and said at most once a second.
    static WRITE_ERRORS: crate::log::RateLimit = crate::log::RateLimit::new();
    loop {
        if durable.stop.load(Ordering::Acquire) {
            return file;
        }
        std::thread::park_timeout(IDLE_TICK);
        durable.asked.store(false, Ordering::Release);
        let horizon_ms = durable.horizon_ms.load(Ordering::Acquire);
        let ceiling = durable.token_ceiling.load(Ordering::Acquire);
        let wanted_ms = durable.wanted_ms.load(Ordering::Acquire);
        let wanted_token_end = durable.wanted_token_end.load(Ordering::Acquire);
        let next_horizon_ms = if wanted_ms.saturating_add(LOOKAHEAD_MS / 2) > horizon_ms {
            wanted_ms.saturating_add(LOOKAHEAD_MS)
        } else {
            horizon_ms
        };
        let next_ceiling = if wanted_token_end.saturating_add(TOKEN_BLOCK / 2) > ceiling {
            wanted_token_end.saturating_add(TOKEN_BLOCK)
        } else {
            ceiling
        };
        if (next_horizon_ms, next_ceiling) == (horizon_ms, ceiling) {
            continue;
        }
        let now_ms = clock.now_ms();
        let record = HorizonRecord {
            generation,
            mark: WallMark::now(),
            horizon_ms: next_horizon_ms.saturating_sub(now_ms) + MARGIN_MS,
            token_ceiling: next_ceiling,
            clean: false,
        };
        match file.store(&record) {
            Ok(()) => {
                durable.horizon_ms.store(next_horizon_ms, Ordering::Release);
                durable.token_ceiling.store(next_ceiling, Ordering::Release);
            }
            Err(e) => {
                WRITE_ERRORS.error(
                    now_ms,
                    format_args!(
                        "cannot write {}: {e}; grants wait until it can be written",
                        file.path().display()
                    ),
                );
                std::thread::sleep(IDLE_TICK);
            }
        }
    }
}

impl Persist {
    pub fn durable(&self) -> &Arc<Durable> {
        &self.durable
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The clean stop, once no worker grants any more: writes `leases` (each live through its
    /// tick on this run's clock, with its token) as the snapshot, then marks the stop clean.
    /// Returns how many leases were saved.
    pub fn finish(&self, leases: Vec<Restored>) -> io::Result<usize> {
        let handle = self
            .persister
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(handle) = handle else {
            return Err(io::Error::other("the clean stop was already recorded"));
        };
        self.durable.stop.store(true, Ordering::Release);
        handle.thread().unpark();
        let mut file = handle
            .join()
            .map_err(|_| io::Error::other("the persister thread panicked"))?;
        let now_ms = self.clock.now_ms();
        let mark = WallMark::now();
        let ceiling = self.durable.token_ceiling();
        let saved: Vec<SavedLease> = leases
            .into_iter()
            .filter(|l| l.last_live_ms >= now_ms)
            .map(|l| SavedLease {
                remaining_ms: l.last_live_ms - now_ms + MARGIN_MS,
                store: l.store,
                resource: l.resource,
                owner: l.owner,
                token: l.token,
            })
            .collect();
        let count = saved.len();
        Snapshot {
            generation: self.generation,
            mark,
            token_ceiling: ceiling,
            leases: saved,
        }
        .write(&self.dir)?;
        file.store(&HorizonRecord {
            generation: self.generation,
            mark,
            horizon_ms: self.durable.horizon_ms().saturating_sub(now_ms) + MARGIN_MS,
            token_ceiling: ceiling,
            clean: true,
        })?;
        // Nothing is granted any more: the next server may take the dir.
        self.lock.unlock()?;
        Ok(count)
    }
}

impl Drop for Persist {
    fn drop(&mut self) {
        self.durable.stop.store(true, Ordering::Release);
        if let Some(thread) = self.durable.persister.get() {
            thread.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_only_what_is_durably_promised() {
        // Protects "a grant is answered only once the data dir covers it": a need whose last
        // live tick is past the saved horizon, or whose token is not below the saved ceiling,
        // is not covered; one within both is, up to and including the bounds.
        let durable = Durable::new(10_000, 100);
        let need = |last_live_ms, token_end| Need {
            last_live_ms,
            token_end,
        };
        assert!(durable.covers(Need::default()), "an empty need");
        assert!(durable.covers(need(1, 1)), "far within both");
        assert!(durable.covers(need(10_000, 100)), "at both bounds");
        assert!(
            !durable.covers(need(10_001, 1)),
            "a deadline one tick past the horizon"
        );
        assert!(
            !durable.covers(need(1, 101)),
            "a token at the ceiling (token_end one past it)"
        );
        assert!(!durable.covers(need(u64::MAX, u64::MAX)), "both far beyond");
        // What was refused is asked for, so the persister moves the promise to meet it.
        assert_eq!(durable.wanted_ms.load(Ordering::Acquire), u64::MAX);
        assert_eq!(durable.wanted_token_end.load(Ordering::Acquire), u64::MAX);

        // Once the persister has saved a further promise, the same needs are covered.
        durable.horizon_ms.store(20_000, Ordering::Release);
        durable.token_ceiling.store(200, Ordering::Release);
        assert!(durable.covers(need(10_001, 1)));
        assert!(durable.covers(need(1, 101)));
        assert!(durable.covers(need(20_000, 200)));
        assert!(!durable.covers(need(20_001, 200)));
        assert!(!durable.covers(need(20_000, 201)));
    }
}
