//! The workloads, one state machine per connection: which request comes next, and whether an
//! answer is what the workload expects. No I/O and no clock: times are nanoseconds passed in.
//!
//! - uncontended: the connection owns a disjoint slice of the resources and cycles
//!   lock(r) → unlock(r) → lock(next r) …, strictly alternating per resource in order, however
//!   many requests are in flight; every lock must be granted and every unlock must succeed.
//! - contended: each lock picks a hot resource by Zipf; a granted lock makes the next request
//!   of the connection the unlock of that resource, so holders release; denials just go on.
//! - churn: lock-only, round-robin over the slice, never unlocking: leases expire in the
//!   server. Checked against the rule that a lease never ends early.
//!
//! Invariants: `next` never blocks and always has a request; `finishing` gives the requests
//! that leave the server as the connection found it (the unlock of a lock already sent, a
//! holder's release), and `None` once there are none left to send.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::wire::{Outcome, UNLOCK_SUCCESS};
use crate::zipf::{Rng, Zipf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Uncontended,
    Contended,
    Churn,
    /// Every connection contends for one resource with `acquire` (run by `client::handoff`).
    Handoff,
    /// Every connection contends for one resource by polling try-lock with a backoff (run by
    /// `client::handoff`).
    Poll,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Uncontended => "uncontended",
            Kind::Contended => "contended",
            Kind::Churn => "churn",
            Kind::Handoff => "handoff",
            Kind::Poll => "poll",
        }
    }

    /// Contention for one resource, run by `client::handoff` rather than by the pipelined
    /// connections and their [`Workload`]s.
    pub fn is_one_resource(self) -> bool {
        matches!(self, Kind::Handoff | Kind::Poll)
    }
}

/// One request, naming its resource by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lock(u64),
    Unlock(u64),
}

/// What an answer means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As expected (or not checked); `granted` counts a lock that was granted.
    Ok { granted: bool },
    /// The server refused the request (non-200, RESP error): always an error.
    Refused,
    /// Not what the workload expects: an error under `--check` only.
    Unexpected,
}

/// The part of the resources `[start, start + len)` a connection owns in uncontended and
/// churn runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub start: u64,
    pub len: u64,
}

impl Slice {
    /// Connection `conn` of `connections` over `resources`: contiguous, disjoint, covering
    /// everything, sizes differing by at most one. Needs `resources >= connections`.
    pub fn of(conn: u32, connections: u32, resources: u64) -> Slice {
        assert!(conn < connections, "connection {conn} of {connections}");
        assert!(
            resources >= u64::from(connections),
            "{resources} resources cannot give {connections} connections one each"
        );
        let bound =
            |c: u32| (u128::from(c) * u128::from(resources) / u128::from(connections)) as u64;
        let start = bound(conn);
        Slice {
            start,
            len: bound(conn + 1) - start,
        }
    }

    fn at(&self, cursor: u64) -> u64 {
        self.start + cursor
    }
}

/// Never granted: the churn check's "no lease known" mark.
const NEVER: u64 = u64::MAX;

#[derive(Debug)]
enum State {
    Uncontended {
        slice: Slice,
        cursor: u64,
        /// The lock of `slice.at(cursor)` was sent; its unlock comes next.
        unlock_next: bool,
    },
    Contended {
        zipf: Arc<Zipf>,
        rng: Rng,
        /// Granted resources whose unlock has not been sent yet, oldest first.
        release: VecDeque<u64>,
    },
    Churn {
        slice: Slice,
        cursor: u64,
        /// Under `--check`: per resource of the slice, when the lock that was last granted
        /// was sent (a lower bound of the grant time), or `NEVER`.
        granted_at_ns: Vec<u64>,
    },
}

#[derive(Debug)]
pub struct Workload {
    state: State,
    check: bool,
    expiry_ns: u64,
}

impl Workload {
    pub fn uncontended(slice: Slice, check: bool) -> Workload {
        Workload {
            state: State::Uncontended {
                slice,
                cursor: 0,
                unlock_next: false,
            },
            check,
            expiry_ns: 0,
        }
    }

    /// `depth` bounds how many grants can wait for their release at once.
    pub fn contended(zipf: Arc<Zipf>, seed: u64, depth: usize, check: bool) -> Workload {
        Workload {
            state: State::Contended {
                zipf,
                rng: Rng::new(seed),
                release: VecDeque::with_capacity(depth),
            },
            check,
            expiry_ns: 0,
        }
    }

    pub fn churn(slice: Slice, expiry_s: u32, check: bool) -> Workload {
        let granted_at_ns = if check {
            // A slice is at most the whole resource range, which the command line bounds.
            vec![NEVER; usize::try_from(slice.len).unwrap_or(0)]
        } else {
            Vec::new()
        };
        Workload {
            state: State::Churn {
                slice,
                cursor: 0,
                granted_at_ns,
            },
            check,
            expiry_ns: u64::from(expiry_s) * 1_000_000_000,
        }
    }

    /// The next request of the measured run.
    pub fn next(&mut self) -> Op {
        match &mut self.state {
            State::Uncontended {
                slice,
                cursor,
                unlock_next,
            } => {
                let r = slice.at(*cursor);
                if *unlock_next {
                    *unlock_next = false;
                    *cursor = (*cursor + 1) % slice.len;
                    Op::Unlock(r)
                } else {
                    *unlock_next = true;
                    Op::Lock(r)
                }
            }
            State::Contended { zipf, rng, release } => match release.pop_front() {
                Some(r) => Op::Unlock(r),
                None => Op::Lock(u64::from(zipf.sample(rng))),
            },
            State::Churn { slice, cursor, .. } => {
                let r = slice.at(*cursor);
                *cursor = (*cursor + 1) % slice.len;
                Op::Lock(r)
            }
        }
    }

    /// After the run: the next request needed to release what this connection holds.
    pub fn finishing(&mut self) -> Option<Op> {
        match &mut self.state {
            State::Uncontended { unlock_next, .. } if *unlock_next => Some(self.next()),
            State::Uncontended { .. } | State::Churn { .. } => None,
            State::Contended { release, .. } => release.pop_front().map(Op::Unlock),
        }
    }

    /// Takes in the answer to `op`, sent at `sent_ns` (no later than the real send time) and
    /// answered at `answered_ns`.
    pub fn on_answer(
        &mut self,
        op: Op,
        outcome: Outcome,
        sent_ns: u64,
        answered_ns: u64,
    ) -> Verdict {
        if outcome == Outcome::Refused {
            return Verdict::Refused;
        }
        let check = self.check;
        let expiry_ns = self.expiry_ns;
        let expected = match (&mut self.state, op, outcome) {
            (_, Op::Lock(_), Outcome::Unrecognized) | (_, Op::Unlock(_), Outcome::Unrecognized) => {
                false
            }
            (State::Uncontended { .. }, Op::Lock(_), o) => o == Outcome::Granted,
            (State::Uncontended { .. } | State::Contended { .. }, Op::Unlock(_), o) => {
                o == Outcome::Unlocked(UNLOCK_SUCCESS)
            }
            (State::Contended { release, .. }, Op::Lock(r), Outcome::Granted) => {
                release.push_back(r);
                true
            }
            (State::Contended { .. }, Op::Lock(_), o) => o == Outcome::Denied,
            (
                State::Churn {
                    slice,
                    granted_at_ns,
                    ..
                },
                Op::Lock(r),
                o,
            ) => match o {
                Outcome::Denied => true,
                Outcome::Granted => {
                    let slot = r
                        .checked_sub(slice.start)
                        .and_then(|i| usize::try_from(i).ok())
                        .and_then(|i| granted_at_ns.get_mut(i));
                    match slot {
                        Some(at) => {
                            // The last grant happened no earlier than its send time, so its
                            // lease lives at least until then + expiry; a grant answered
                            // before that means the old lease ended early.
                            let ended_early =
                                *at != NEVER && answered_ns < at.saturating_add(expiry_ns);
                            *at = sent_ns;
                            !ended_early
                        }
                        None => true,
                    }
                }
                _ => false,
            },
            (State::Churn { .. }, Op::Unlock(_), _) => false,
        };
        let granted = outcome == Outcome::Granted && matches!(op, Op::Lock(_));
        if expected || !check {
            Verdict::Ok { granted }
        } else {
            Verdict::Unexpected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zipf16() -> Arc<Zipf> {
        Arc::new(Zipf::new(16, 1.0))
    }

    // Slices are disjoint, contiguous, cover every resource, and differ by at most one.
    #[test]
    fn slices_partition_the_resources() {
        for (connections, resources) in [(1u32, 1u64), (3, 10), (64, 100_000), (7, 7)] {
            let mut next = 0;
            for c in 0..connections {
                let s = Slice::of(c, connections, resources);
                assert_eq!(s.start, next);
                assert!(s.len >= resources / u64::from(connections));
                assert!(s.len <= resources / u64::from(connections) + 1);
                next += s.len;
            }
            assert_eq!(next, resources);
        }
    }

    // Uncontended strictly alternates lock and unlock of the same resource, walks its slice in
    // order and wraps around.
    #[test]
    fn uncontended_alternates_per_resource() {
        let mut w = Workload::uncontended(Slice { start: 10, len: 3 }, true);
        let ops: Vec<Op> = (0..8).map(|_| w.next()).collect();
        assert_eq!(
            ops,
            [
                Op::Lock(10),
                Op::Unlock(10),
                Op::Lock(11),
                Op::Unlock(11),
                Op::Lock(12),
                Op::Unlock(12),
                Op::Lock(10),
                Op::Unlock(10),
            ]
        );
    }

    // Uncontended expects every lock granted and every unlock released.
    #[test]
    fn uncontended_checks_answers() {
        let mut w = Workload::uncontended(Slice { start: 0, len: 4 }, true);
        assert_eq!(
            w.on_answer(Op::Lock(0), Outcome::Granted, 0, 1),
            Verdict::Ok { granted: true }
        );
        assert_eq!(
            w.on_answer(Op::Unlock(0), Outcome::Unlocked(0), 0, 1),
            Verdict::Ok { granted: false }
        );
        assert_eq!(
            w.on_answer(Op::Lock(1), Outcome::Denied, 0, 1),
            Verdict::Unexpected
        );
        assert_eq!(
            w.on_answer(Op::Unlock(1), Outcome::Unlocked(1), 0, 1),
            Verdict::Unexpected
        );
        assert_eq!(
            w.on_answer(Op::Lock(1), Outcome::Unlocked(0), 0, 1),
            Verdict::Unexpected
        );
        assert_eq!(
            w.on_answer(Op::Lock(1), Outcome::Unrecognized, 0, 1),
            Verdict::Unexpected
        );
        assert_eq!(
            w.on_answer(Op::Lock(1), Outcome::Refused, 0, 1),
            Verdict::Refused
        );
    }

    // Without --check, unexpected answers pass (fixed-response servers) but refusals do not.
    #[test]
    fn unchecked_runs_only_count_refusals() {
        let mut w = Workload::uncontended(Slice { start: 0, len: 4 }, false);
        assert_eq!(
            w.on_answer(Op::Lock(1), Outcome::Unrecognized, 0, 1),
            Verdict::Ok { granted: false }
        );
        assert_eq!(
            w.on_answer(Op::Lock(1), Outcome::Denied, 0, 1),
            Verdict::Ok { granted: false }
        );
        assert_eq!(
            w.on_answer(Op::Lock(1), Outcome::Refused, 0, 1),
            Verdict::Refused
        );
    }

    // Stopping between a lock and its unlock still sends the unlock, and only that.
    #[test]
    fn uncontended_finishes_the_open_pair() {
        let mut w = Workload::uncontended(Slice { start: 5, len: 2 }, true);
        assert_eq!(w.finishing(), None);
        assert_eq!(w.next(), Op::Lock(5));
        assert_eq!(w.finishing(), Some(Op::Unlock(5)));
        assert_eq!(w.finishing(), None);
    }

    // Contended: after a grant, the very next request is the unlock of that resource; denials
    // change nothing; locks stay within the hot set.
    #[test]
    fn contended_unlocks_after_grant() {
        let mut w = Workload::contended(zipf16(), 1, 4, true);
        let Op::Lock(r) = w.next() else {
            panic!("a contended run starts with a lock")
        };
        assert!(r < 16);
        assert_eq!(
            w.on_answer(Op::Lock(r), Outcome::Granted, 0, 1),
            Verdict::Ok { granted: true }
        );
        assert_eq!(w.next(), Op::Unlock(r));
        assert!(matches!(w.next(), Op::Lock(_)));
        assert_eq!(
            w.on_answer(Op::Lock(3), Outcome::Denied, 0, 1),
            Verdict::Ok { granted: false }
        );
        for _ in 0..100 {
            assert!(matches!(w.next(), Op::Lock(k) if k < 16));
        }
    }

    // Grants answered while earlier ones wait are released in the order they were granted,
    // and the end of the run releases whatever is still held.
    #[test]
    fn contended_releases_in_grant_order() {
        let mut w = Workload::contended(zipf16(), 2, 4, true);
        w.on_answer(Op::Lock(4), Outcome::Granted, 0, 1);
        w.on_answer(Op::Lock(9), Outcome::Granted, 0, 1);
        assert_eq!(w.next(), Op::Unlock(4));
        assert_eq!(w.finishing(), Some(Op::Unlock(9)));
        assert_eq!(w.finishing(), None);
    }

    // Contended expects the holder's unlock to succeed and lock answers to be yes or no.
    #[test]
    fn contended_checks_answers() {
        let mut w = Workload::contended(zipf16(), 3, 4, true);
        assert_eq!(
            w.on_answer(Op::Unlock(2), Outcome::Unlocked(0), 0, 1),
            Verdict::Ok { granted: false }
        );
        assert_eq!(
            w.on_answer(Op::Unlock(2), Outcome::Unlocked(2), 0, 1),
            Verdict::Unexpected
        );
        assert_eq!(
            w.on_answer(Op::Lock(2), Outcome::Unlocked(0), 0, 1),
            Verdict::Unexpected
        );
    }

    // Churn only locks, round-robin over its slice, and has nothing to release at the end.
    #[test]
    fn churn_is_lock_only_round_robin() {
        let mut w = Workload::churn(Slice { start: 7, len: 3 }, 1, true);
        let ops: Vec<Op> = (0..5).map(|_| w.next()).collect();
        assert_eq!(
            ops,
            [
                Op::Lock(7),
                Op::Lock(8),
                Op::Lock(9),
                Op::Lock(7),
                Op::Lock(8)
            ]
        );
        assert_eq!(w.finishing(), None);
    }

    // Churn catches a lease that ended early: a second grant of the same resource answered
    // before the first lock's send time plus the expiry. Denials and late grants are fine.
    #[test]
    fn churn_detects_early_expiry() {
        let s = 1_000_000_000;
        let mut w = Workload::churn(Slice { start: 0, len: 2 }, 1, true);
        assert_eq!(
            w.on_answer(Op::Lock(0), Outcome::Granted, 10, 20),
            Verdict::Ok { granted: true }
        );
        assert_eq!(
            w.on_answer(Op::Lock(0), Outcome::Denied, 30, 40),
            Verdict::Ok { granted: false }
        );
        assert_eq!(
            w.on_answer(Op::Lock(0), Outcome::Granted, 50, 10 + s - 1),
            Verdict::Unexpected
        );
        // The early grant still becomes the last known grant, sent at 50.
        assert_eq!(
            w.on_answer(Op::Lock(0), Outcome::Granted, 60, 50 + s),
            Verdict::Ok { granted: true }
        );
        // Another resource is independent.
        assert_eq!(
            w.on_answer(Op::Lock(1), Outcome::Granted, 70, 80),
            Verdict::Ok { granted: true }
        );
        assert_eq!(
            w.on_answer(Op::Unlock(1), Outcome::Unlocked(0), 0, 1),
            Verdict::Unexpected
        );
    }
}
