//! The bookkeeping of the `handoff` and `poll` workloads, without I/O: every connection
//! contends for one resource, and what is counted is how the lock passes between them.
//!
//! All connections of these workloads run on one client thread, so one [`Ledger`] sees every
//! unlock and every grant on one monotonic clock (nanoseconds from the run's start):
//!
//! - **handoff latency** of a grant: the instant its answer was read by the new holder minus
//!   the instant the previous holder's unlock was sent (taken just before it was written). So
//!   it runs from the release to the next holder's answer, and it includes both the server's
//!   handoff and, when nobody was waiting at that moment (polling), the time until somebody
//!   asked again. A grant with no unlock since the one before (the first one of a run) has no
//!   handoff latency and is counted as `unpaired`.
//! - **wait** of a grant: its answer's instant minus when its connection started asking (the
//!   send of its acquire, or of the first try-lock since its last grant); kept apart for the
//!   grants that **pass** the lock to another connection than the one that held it last,
//!   which are the waits of the connections that had to wait for another one.
//! - **grants per connection** over the measured period, and their max / min (fairness).
//! - **self grants**: grants to the connection that held the lock just before (a poller that
//!   tries again at once after its unlock; with acquire, only when nobody else waited).
//! - **exclusion**: a grant read while another connection holds the lock and has not yet sent
//!   its unlock means two holders at once: [`Ledger::granted`] says so, and the caller counts
//!   it as an error.
//!
//! A grant is measured when its answer arrives inside the measured period.

use hdrhistogram::Histogram;

use crate::tally::MAX_LATENCY_NS;
use crate::zipf::Rng;

#[derive(Debug, Clone)]
pub struct Ledger {
    /// When the last unlock was sent, until a grant pairs with it.
    release_ns: Option<u64>,
    /// The connection that was granted last (it may have released since).
    last_holder: Option<u32>,
    /// The connection that holds the lock now: granted, its unlock not sent yet.
    holding: Option<u32>,
    /// Measured grants, per connection.
    pub grants: Vec<u64>,
    handoff_ns: Histogram<u64>,
    wait_ns: Histogram<u64>,
    /// The waits of the grants that passed the lock to another connection.
    pass_wait_ns: Histogram<u64>,
    pub self_grants: u64,
    pub unpaired: u64,
    /// Measured answers that did not grant: try-lock refusals, acquires whose wait ended.
    pub denied: u64,
}

fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3) {
        Ok(h) => h,
        Err(e) => panic!("fixed histogram bounds are valid: {e}"),
    }
}

impl Ledger {
    pub fn new(connections: u32) -> Ledger {
        Ledger {
            release_ns: None,
            last_holder: None,
            holding: None,
            grants: vec![0; connections as usize],
            handoff_ns: histogram(),
            wait_ns: histogram(),
            pass_wait_ns: histogram(),
            self_grants: 0,
            unpaired: 0,
            denied: 0,
        }
    }

    /// The holder is about to send its unlock, at `at_ns`.
    pub fn released(&mut self, at_ns: u64) {
        self.release_ns = Some(at_ns);
        self.holding = None;
    }

    /// Connection `conn` read a grant at `at_ns`, having asked since `wanted_ns`. Returns
    /// false when another connection still held the lock: mutual exclusion was broken.
    pub fn granted(&mut self, conn: u32, at_ns: u64, wanted_ns: u64, measured: bool) -> bool {
        let exclusive = self.holding.is_none();
        let released = self.release_ns.take();
        if measured {
            if let Some(n) = self.grants.get_mut(conn as usize) {
                *n += 1;
            }
            match released {
                Some(r) => {
                    self.handoff_ns
                        .saturating_record(at_ns.saturating_sub(r).max(1));
                }
                None => self.unpaired += 1,
            }
            let wait = at_ns.saturating_sub(wanted_ns).max(1);
            self.wait_ns.saturating_record(wait);
            if self.last_holder == Some(conn) {
                self.self_grants += 1;
            } else {
                self.pass_wait_ns.saturating_record(wait);
            }
        }
        self.last_holder = Some(conn);
        self.holding = Some(conn);
        exclusive
    }

    pub fn denied(&mut self, measured: bool) {
        self.denied += u64::from(measured);
    }

    /// Adds another thread's counts (the workloads run on one thread; this keeps a merge of
    /// tallies total).
    pub fn merge(&mut self, other: &Ledger) {
        if self.grants.len() < other.grants.len() {
            self.grants.resize(other.grants.len(), 0);
        }
        for (mine, theirs) in self.grants.iter_mut().zip(&other.grants) {
            *mine += theirs;
        }
        let _ = self.handoff_ns.add(&other.handoff_ns);
        let _ = self.wait_ns.add(&other.wait_ns);
        let _ = self.pass_wait_ns.add(&other.pass_wait_ns);
        self.self_grants += other.self_grants;
        self.unpaired += other.unpaired;
        self.denied += other.denied;
    }

    pub fn summary(&self) -> Summary {
        let us = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let max = self.grants.iter().copied().max().unwrap_or(0);
        let min = self.grants.iter().copied().min().unwrap_or(0);
        Summary {
            grants: self.grants.iter().sum(),
            grants_per_connection: self.grants.clone(),
            fairness: (min > 0).then(|| max as f64 / min as f64),
            handoffs: self.handoff_ns.len(),
            handoff_p50_us: us(&self.handoff_ns, 0.5),
            handoff_p99_us: us(&self.handoff_ns, 0.99),
            handoff_p999_us: us(&self.handoff_ns, 0.999),
            handoff_max_us: self.handoff_ns.max() as f64 / 1000.0,
            wait_p50_us: us(&self.wait_ns, 0.5),
            wait_p99_us: us(&self.wait_ns, 0.99),
            wait_max_us: self.wait_ns.max() as f64 / 1000.0,
            pass_wait_p50_us: us(&self.pass_wait_ns, 0.5),
            pass_wait_p99_us: us(&self.pass_wait_ns, 0.99),
            pass_wait_max_us: self.pass_wait_ns.max() as f64 / 1000.0,
            self_grants: self.self_grants,
            unpaired: self.unpaired,
            denied: self.denied,
        }
    }
}

/// What a run of handoff or poll reports besides the usual figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub grants: u64,
    pub grants_per_connection: Vec<u64>,
    /// Max / min of the grants per connection; `None` when a connection had none.
    pub fairness: Option<f64>,
    /// Grants with a handoff latency (paired with the unlock before them).
    pub handoffs: u64,
    pub handoff_p50_us: f64,
    pub handoff_p99_us: f64,
    pub handoff_p999_us: f64,
    pub handoff_max_us: f64,
    pub wait_p50_us: f64,
    pub wait_p99_us: f64,
    pub wait_max_us: f64,
    /// The waits of the grants to another connection than the last holder.
    pub pass_wait_p50_us: f64,
    pub pass_wait_p99_us: f64,
    pub pass_wait_max_us: f64,
    pub self_grants: u64,
    pub unpaired: u64,
    pub denied: u64,
}

/// A poller's sleep: uniform in `[min, max]` ms, at microsecond resolution.
#[derive(Debug, Clone)]
pub struct Backoff {
    rng: Rng,
    min_us: u64,
    span_us: u64,
}

impl Backoff {
    pub fn new(seed: u64, (min_ms, max_ms): (u32, u32)) -> Backoff {
        let (min_us, max_us) = (u64::from(min_ms) * 1000, u64::from(max_ms) * 1000);
        Backoff {
            rng: Rng::new(seed),
            min_us,
            span_us: max_us.saturating_sub(min_us),
        }
    }

    /// The next sleep, in ns.
    pub fn next_ns(&mut self) -> u64 {
        let extra = if self.span_us == 0 {
            0
        } else {
            self.rng.next_u64() % (self.span_us + 1)
        };
        (self.min_us + extra) * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A grant pairs with the unlock sent before it; the first grant has none; self grants,
    // waits and per-connection counts are kept for measured grants only.
    #[test]
    fn grants_pair_with_the_unlock_before_them() {
        let mut l = Ledger::new(3);
        assert!(l.granted(0, 100, 50, false));
        l.released(1_000);
        assert!(l.granted(1, 31_000, 500, true));
        l.released(40_000);
        assert!(l.granted(1, 45_000, 41_000, true));
        l.denied(true);
        l.denied(false);
        let s = l.summary();
        assert_eq!(s.grants, 2);
        assert_eq!(s.grants_per_connection, vec![0, 2, 0]);
        assert_eq!(s.fairness, None);
        assert_eq!(
            (s.handoffs, s.unpaired, s.self_grants, s.denied),
            (2, 0, 1, 1)
        );
        assert!(
            (s.handoff_p50_us - 5.0).abs() < 0.01,
            "{}",
            s.handoff_p50_us
        );
        assert!(
            (s.handoff_max_us - 30.0).abs() < 0.05,
            "{}",
            s.handoff_max_us
        );
        assert!((s.wait_max_us - 30.5).abs() < 0.05, "{}", s.wait_max_us);
        // Only the grant to connection 1 after connection 0 passed the lock.
        assert!(
            (s.pass_wait_max_us - 30.5).abs() < 0.05,
            "{}",
            s.pass_wait_max_us
        );
        assert!((s.wait_p50_us - 4.0).abs() < 0.01, "{}", s.wait_p50_us);
    }

    // A grant without an unlock since the previous grant has no handoff latency; a grant
    // while another connection holds the lock is reported.
    #[test]
    fn unpaired_grants_and_broken_exclusion() {
        let mut l = Ledger::new(2);
        assert!(l.granted(0, 10, 0, true));
        assert!(!l.granted(1, 20, 0, true));
        let s = l.summary();
        assert_eq!((s.handoffs, s.unpaired), (0, 2));
        assert_eq!(s.fairness, Some(1.0));
    }

    // Fairness is max over min of the grants per connection.
    #[test]
    fn fairness_is_max_over_min() {
        let mut l = Ledger::new(2);
        for (conn, at) in [(0, 1), (1, 2), (0, 3), (1, 4), (0, 5)] {
            l.released(at * 10);
            l.granted(conn, at * 10 + 5, 0, true);
        }
        assert_eq!(l.summary().fairness, Some(1.5));
        let mut other = Ledger::new(2);
        other.released(0);
        other.granted(1, 7, 0, true);
        l.merge(&other);
        let s = l.summary();
        assert_eq!(s.grants_per_connection, vec![3, 3]);
        assert_eq!(s.handoffs, 6);
    }

    // Backoffs stay within their bounds, cover them, and a fixed one is fixed.
    #[test]
    fn backoff_is_uniform_within_bounds() {
        let mut b = Backoff::new(7, (50, 500));
        let draws: Vec<u64> = (0..10_000).map(|_| b.next_ns()).collect();
        assert!(draws
            .iter()
            .all(|&d| (50_000_000..=500_000_000).contains(&d)));
        let mean = draws.iter().sum::<u64>() as f64 / draws.len() as f64;
        assert!((mean - 275e6).abs() < 10e6, "{mean}");
        assert!(draws.iter().any(|&d| d < 60_000_000));
        assert!(draws.iter().any(|&d| d > 490_000_000));
        let mut fixed = Backoff::new(1, (5, 5));
        assert_eq!(fixed.next_ns(), 5_000_000);
    }
}
