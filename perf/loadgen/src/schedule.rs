//! The open-loop schedule of one connection: when each of its requests is meant to be sent.
//!
//! A run offering `rate` requests/s over `connections` connections gives each connection
//! `rate / connections` requests/s, evenly spaced, starting at its own phase in the first
//! interval (so connections do not fire in lockstep). Times are nanoseconds from the run's
//! start. Slot `k` is computed from `k` directly, never by adding intervals, so rounding never
//! accumulates: slot `k` is `phase + floor(k * connections * 1e9 / rate)`.

const NS_PER_S: u128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    phase_ns: u64,
    /// The interval is the fraction `connections * 1e9 / rate` nanoseconds, kept exact.
    connections: u64,
    rate: u64,
}

impl Schedule {
    /// `rate` > 0 requests/s in total; `phase` in `[0, 1)` is where in the first interval this
    /// connection starts.
    pub fn new(rate: u64, connections: u32, phase: f64) -> Schedule {
        assert!(rate > 0, "an open-loop schedule needs a rate");
        assert!(connections > 0, "an open-loop schedule needs a connection");
        let connections = u64::from(connections);
        let interval_ns = u128::from(connections) * NS_PER_S / u128::from(rate);
        let phase = if (0.0..1.0).contains(&phase) {
            phase
        } else {
            0.0
        };
        let phase_ns = (interval_ns as f64 * phase) as u64;
        Schedule {
            phase_ns,
            connections,
            rate,
        }
    }

    /// The intended send time of request `k` (0-based), saturating far in the future.
    pub fn slot_ns(&self, k: u64) -> u64 {
        let offset =
            u128::from(k) * u128::from(self.connections) * NS_PER_S / u128::from(self.rate);
        u64::try_from(offset)
            .unwrap_or(u64::MAX)
            .saturating_add(self.phase_ns)
    }

    /// How many slots fall strictly before `t_ns`: the smallest `k` with `slot_ns(k) >= t_ns`.
    pub fn slots_before(&self, t_ns: u64) -> u64 {
        if t_ns <= self.phase_ns {
            return 0;
        }
        // slot(k) < t  ⇔  floor(k·c·1e9 / r) < d  ⇔  k·c·1e9 < d·r  ⇔  k < d·r / (c·1e9),
        // so the count is ceil(d·r / (c·1e9)).
        let d = u128::from(t_ns - self.phase_ns);
        let per = u128::from(self.connections) * NS_PER_S;
        let count = (d * u128::from(self.rate)).div_ceil(per);
        u64::try_from(count).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slots are evenly spaced from the phase: 1000 req/s over 4 connections is one request
    // every 4 ms per connection.
    #[test]
    fn slots_are_evenly_spaced_from_the_phase() {
        let s = Schedule::new(1000, 4, 0.5);
        assert_eq!(s.slot_ns(0), 2_000_000);
        assert_eq!(s.slot_ns(1), 6_000_000);
        assert_eq!(s.slot_ns(250), 1_002_000_000);
    }

    // Rounding never accumulates: with an interval that is not a whole number of nanoseconds
    // (3 connections at 7 req/s), slot k stays within a nanosecond of k * exact interval.
    #[test]
    fn no_drift_over_many_slots() {
        let s = Schedule::new(7, 3, 0.0);
        let exact = 3.0e9 / 7.0;
        for k in [1u64, 1_000, 1_000_000, 10_000_000] {
            let want = k as f64 * exact;
            let got = s.slot_ns(k) as f64;
            assert!(
                (got - want).abs() <= 1.0 + want * 1e-15,
                "k={k}: {got} vs {want}"
            );
        }
    }

    // Over all connections the schedule offers the requested rate: 10 s at 10_000 req/s over
    // 64 connections is 100_000 slots, whatever each connection's phase.
    #[test]
    fn all_connections_together_offer_the_rate() {
        let mut total = 0;
        for c in 0..64u32 {
            let s = Schedule::new(10_000, 64, f64::from(c) / 64.0);
            total += s.slots_before(10_000_000_000);
        }
        assert!((99_936..=100_064).contains(&total), "{total}");
    }

    // slots_before is the inverse of slot_ns: exactly the slots earlier than the time.
    #[test]
    fn slots_before_inverts_slot_ns() {
        let s = Schedule::new(7, 3, 0.3);
        for k in 0..200 {
            let t = s.slot_ns(k);
            assert_eq!(s.slots_before(t), k, "at slot {k}");
            assert_eq!(s.slots_before(t + 1), k + 1, "just after slot {k}");
        }
        assert_eq!(s.slots_before(0), 0);
    }

    // A phase outside [0, 1) is treated as 0 rather than pushing the start beyond an interval.
    #[test]
    fn bad_phase_starts_at_zero() {
        assert_eq!(Schedule::new(100, 1, 1.5).slot_ns(0), 0);
        assert_eq!(Schedule::new(100, 1, f64::NAN).slot_ns(0), 0);
    }

    // Far-future slots saturate instead of wrapping around to the past.
    #[test]
    fn far_slots_saturate() {
        let s = Schedule::new(1, 1_000_000, 0.0);
        assert_eq!(s.slot_ns(u64::MAX), u64::MAX);
    }
}
