//! The monotonic clock leases are measured on: time since the server started, floored.
//!
//! It reads `CLOCK_MONOTONIC`, the clock `std::time::Instant` reads on Linux, straight from
//! `clock_gettime`. Through `Instant` (`elapsed` and the `Duration` it returns) a reading cost
//! about 40 user-space instructions more, and a connection reads the clock twice a turn: at
//! depth 1 the fixed-answer server went from 3,222 instructions a request to 3,138 (callgrind).
#![allow(unsafe_code)]

/// Nanoseconds on `CLOCK_MONOTONIC`. That clock never goes back.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer, which points to a
    // live, writable, properly aligned `timespec` on this stack frame; it keeps no pointer.
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0;
    // It cannot fail: CLOCK_MONOTONIC exists on every Linux kernel (no EINVAL) and the
    // pointer is valid (no EFAULT). Were it to, any reading made up here could be early, and
    // a lease granted on an early reading would end early; `Instant::now`, which the clock
    // read before, makes the same call and panics too.
    assert!(!failed, "clock_gettime(CLOCK_MONOTONIC) failed");
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The server's clock: its zero is the moment it was made. Copies read the same clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start_ns: u64,
}

impl Clock {
    /// A clock at zero now.
    pub fn start() -> Clock {
        Clock {
            start_ns: monotonic_ns(),
        }
    }

    /// Nanoseconds since the start.
    #[inline]
    fn now_ns(&self) -> u64 {
        monotonic_ns().saturating_sub(self.start_ns)
    }

    /// Milliseconds since the start, floored: the lease table's `now_ms`.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.now_ns() / 1_000_000
    }

    /// Microseconds since the start, floored: one reading gives both the latency measure
    /// and, divided by 1000, exactly what [`Clock::now_ms`] would have read.
    #[inline]
    pub fn now_us(&self) -> u64 {
        self.now_ns() / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    // Protects the conversion: the clock keeps pace with `Instant` (the same source), never
    // goes back, and its two units agree. Exact whatever the scheduler does: the clock
    // started between `early` and `late`, so each reading lies between what those two say.
    #[test]
    fn keeps_pace_with_instant_and_never_goes_back() {
        let early = Instant::now();
        let clock = Clock::start();
        let late = Instant::now();
        let mut last_us = 0;
        while late.elapsed() < Duration::from_millis(30) {
            let least = late.elapsed();
            let us = clock.now_us();
            let most = early.elapsed();
            assert!(us >= last_us, "went back from {last_us} to {us}");
            assert!(least.as_micros() <= u128::from(us), "{us} µs < {least:?}");
            assert!(u128::from(us) <= most.as_micros(), "{us} µs > {most:?}");
            last_us = us;
        }
        let least = late.elapsed();
        let ms = clock.now_ms();
        let most = early.elapsed();
        assert!(least.as_millis() <= u128::from(ms) && u128::from(ms) <= most.as_millis());
    }
}
