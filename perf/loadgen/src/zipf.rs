//! Randomness for the workloads: a small seeded generator and a Zipf sampler over the hot set.
//!
//! Invariants: the same seed gives the same sequence on every machine (runs are repeatable);
//! a sample is always an index in `0..n`, whatever the floating-point rounding.

/// SplitMix64: one add and two multiplies a draw, good enough statistically for picking keys,
/// and seedable from a connection id so every connection gets its own stream.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform draw in `[0, 1)`: the top 53 bits, so every value is exactly representable.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The largest hot set: the cumulative table costs 8 bytes an entry and is shared by every
/// connection, so a million entries is 8 MiB.
pub const MAX_HOT: u32 = 1_000_000;

/// Zipf(s) over `0..n`: rank `k` is drawn with probability proportional to `1 / (k + 1)^s`
/// (rank 0 the hottest; `s = 0` is uniform). Sampling is a binary search in the cumulative
/// weights, O(log n) and allocation-free.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// `n` in `1..=MAX_HOT` and `s` finite and non-negative; the command line checks both.
    pub fn new(n: u32, s: f64) -> Zipf {
        assert!((1..=MAX_HOT).contains(&n), "hot set size {n} out of range");
        assert!(s.is_finite() && s >= 0.0, "zipf exponent {s} out of range");
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|k| {
                total += 1.0 / f64::from(k + 1).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    pub fn len(&self) -> u32 {
        // Built from a u32 count, so it fits.
        self.cumulative.len() as u32
    }

    pub fn sample(&self, rng: &mut Rng) -> u32 {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let target = rng.next_f64() * total;
        let rank = self.cumulative.partition_point(|&c| c <= target);
        // Rounding can put `target` at the very top; the last rank takes it.
        (rank as u32).min(self.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The generator is deterministic: the same seed replays the same run.
    #[test]
    fn rng_is_deterministic_per_seed() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(7);
        let b: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
        let mut other = Rng::new(8);
        assert_ne!(a[0], other.next_u64());
    }

    // Uniform draws stay in [0, 1) and cover it evenly enough to pick keys.
    #[test]
    fn rng_f64_is_in_unit_interval_and_spread() {
        let mut r = Rng::new(1);
        let mut halves = [0u32; 2];
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            halves[usize::from(x >= 0.5)] += 1;
        }
        assert!(halves[0] > 4_700 && halves[1] > 4_700, "{halves:?}");
    }

    // With s = 1 over 16 ranks, each rank's share matches 1/(k+1) / H(16) within a small
    // tolerance, and the hottest rank is drawn most.
    #[test]
    fn zipf_matches_expected_distribution() {
        let n = 16;
        let zipf = Zipf::new(n, 1.0);
        let mut rng = Rng::new(42);
        let draws = 200_000;
        let mut counts = vec![0u32; n as usize];
        for _ in 0..draws {
            let k = zipf.sample(&mut rng);
            assert!(k < n);
            counts[k as usize] += 1;
        }
        let harmonic: f64 = (1..=n).map(|k| 1.0 / f64::from(k)).sum();
        for (k, &c) in counts.iter().enumerate() {
            let expected = 1.0 / (k as f64 + 1.0) / harmonic;
            let seen = f64::from(c) / f64::from(draws);
            assert!(
                (seen - expected).abs() < 0.01,
                "rank {k}: saw {seen:.4}, expected {expected:.4}"
            );
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[3] && counts[3] > counts[15]);
    }

    // s = 0 is uniform: no rank is favoured.
    #[test]
    fn zipf_zero_exponent_is_uniform() {
        let zipf = Zipf::new(4, 0.0);
        let mut rng = Rng::new(3);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        for c in counts {
            assert!((9_400..10_600).contains(&c), "{counts:?}");
        }
    }

    // A hot set of one always answers rank 0, and a steep exponent still stays in range.
    #[test]
    fn zipf_edges_stay_in_range() {
        let one = Zipf::new(1, 1.0);
        let steep = Zipf::new(1000, 8.0);
        let mut rng = Rng::new(9);
        for _ in 0..1000 {
            assert_eq!(one.sample(&mut rng), 0);
            assert!(steep.sample(&mut rng) < 1000);
        }
    }
}
