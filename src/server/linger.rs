//! The lingering close: after an answer that closes the connection, what the client still
//! sends is read and dropped, briefly and boundedly, so that closing with unread input does
//! not make the kernel reset the connection and destroy the answer before the client reads it
//! (what Go's net/http does too). Both the connections and the admin listener close this way.

use std::time::{Duration, Instant};

/// How long a closing connection is drained.
pub(super) const LINGER: Duration = Duration::from_millis(500);

/// What is left of one drain: time and bytes.
pub(super) struct Drain {
    deadline: Instant,
    left_bytes: usize,
}

impl Drain {
    /// A drain of at most `bytes` bytes, for at most `time`.
    pub fn new(time: Duration, bytes: usize) -> Drain {
        Drain {
            deadline: Instant::now() + time,
            left_bytes: bytes,
        }
    }

    /// How long the next read may wait, or `None` once the time or the bytes are spent.
    pub fn time_left(&self) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        (self.left_bytes > 0 && !left.is_zero()).then_some(left)
    }

    /// Counts a read of `n` bytes; false when it ends the drain (the end of the stream).
    pub fn drained(&mut self, n: usize) -> bool {
        self.left_bytes = self.left_bytes.saturating_sub(n);
        n > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A drain ends at the end of the stream, when its bytes are spent, or when its time is.
    #[test]
    fn a_drain_is_bounded_in_bytes_and_time() {
        let mut d = Drain::new(Duration::from_secs(60), 10);
        assert!(d.time_left().is_some());
        assert!(d.drained(4));
        assert!(d.time_left().is_some());
        assert!(d.drained(6));
        assert!(d.time_left().is_none(), "10 bytes spent");
        let mut d = Drain::new(Duration::from_secs(60), 10);
        assert!(!d.drained(0), "the end of the stream");
        assert!(Drain::new(Duration::ZERO, 10).time_left().is_none());
    }
}
