//! Where a moment lies on clocks that outlive the process, so that the time spent down can be
//! counted against the leases.
//!
//! The server measures leases on the monotonic clock, which starts again with every process.
//! A [`WallMark`] records a moment on the clocks that go on: the boot clock (`/proc/uptime`,
//! which counts time suspended and is never set), tagged with the kernel's boot id, and the
//! wall clock. Between two marks of the same boot the boot clock gives the time passed; across
//! a reboot only the wall clock can, and a wall clock set backwards gives no time passed.
//!
//! Every conversion errs towards more time left, never less: `/proc/uptime` has a 10 ms
//! resolution, so the time passed is taken 10 ms short.

use std::time::{SystemTime, UNIX_EPOCH};

/// The resolution of `/proc/uptime`.
const UPTIME_RESOLUTION_MS: u64 = 10;

/// A moment on the clocks that survive the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallMark {
    /// `/proc/sys/kernel/random/boot_id` as 16 bytes; all zeros when unknown.
    pub boot_id: [u8; 16],
    /// Milliseconds since boot, suspended time included (floor, 10 ms resolution).
    pub boot_ms: u64,
    /// Milliseconds since the Unix epoch on the wall clock.
    pub unix_ms: u64,
}

impl WallMark {
    /// Now.
    pub fn now() -> WallMark {
        WallMark {
            boot_id: boot_id().unwrap_or([0; 16]),
            boot_ms: boot_ms().unwrap_or(0),
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// The milliseconds surely passed from `earlier` to `self`: never more than really passed.
    pub fn passed_since(&self, earlier: &WallMark) -> u64 {
        let same_boot = self.boot_id == earlier.boot_id && self.boot_id != [0; 16];
        if same_boot && self.boot_ms != 0 && earlier.boot_ms != 0 {
            self.boot_ms
                .saturating_sub(earlier.boot_ms)
                .saturating_sub(UPTIME_RESOLUTION_MS)
        } else {
            self.unix_ms.saturating_sub(earlier.unix_ms)
        }
    }
}

/// The kernel's boot id, a UUID that changes with every boot.
fn boot_id() -> Option<[u8; 16]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    parse_uuid(text.trim())
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

/// Milliseconds since boot from `/proc/uptime` (`"12345.67 …"`, in seconds).
fn boot_ms() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    parse_uptime_ms(&text)
}

fn parse_uptime_ms(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    let (whole, fraction) = first.split_once('.').unwrap_or((first, ""));
    let seconds: u64 = whole.parse().ok()?;
    let mut millis = 0u64;
    let mut scale = 100;
    for digit in fraction.bytes().take(3) {
        if !digit.is_ascii_digit() {
            return None;
        }
        millis += u64::from(digit - b'0') * scale;
        scale /= 10;
    }
    seconds.checked_mul(1000)?.checked_add(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_and_uuid_parse() {
        // Protects the readings the time spent down is computed from.
        assert_eq!(parse_uptime_ms("350735.47 1391126.33\n"), Some(350_735_470));
        assert_eq!(parse_uptime_ms("12 3"), Some(12_000));
        assert_eq!(parse_uptime_ms("x.5 3"), None);
        assert_eq!(
            parse_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"),
            Some([
                0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f, 0xa1, 0x65, 0x70, 0x86, 0x77, 0x28,
                0x95, 0x0e
            ])
        );
        assert_eq!(parse_uuid("not-a-uuid"), None);
    }

    #[test]
    fn time_passed_errs_short() {
        // The same boot counts on the boot clock, 10 ms short; another boot on the wall clock;
        // a wall clock set backwards counts nothing. Never more than really passed.
        let a = WallMark {
            boot_id: [1; 16],
            boot_ms: 1_000,
            unix_ms: 50_000,
        };
        let same = WallMark {
            boot_ms: 6_000,
            unix_ms: 10_000, // set backwards: ignored within one boot
            ..a
        };
        assert_eq!(same.passed_since(&a), 4_990);
        let rebooted = WallMark {
            boot_id: [2; 16],
            boot_ms: 100,
            unix_ms: 80_000,
        };
        assert_eq!(rebooted.passed_since(&a), 30_000);
        let backwards = WallMark {
            unix_ms: 40_000,
            ..rebooted
        };
        assert_eq!(backwards.passed_since(&a), 0);
        // Unknown boot ids never count as the same boot.
        let unknown = WallMark {
            boot_id: [0; 16],
            ..a
        };
        assert_eq!(unknown.passed_since(&unknown), 0);
    }

    #[test]
    fn the_machine_gives_a_mark() {
        // This machine has /proc: the boot id and boot clock are read, and time passes.
        let a = WallMark::now();
        assert_ne!(a.boot_id, [0; 16]);
        assert!(a.boot_ms > 0 && a.unix_ms > 0);
        let b = WallMark::now();
        assert!(b.passed_since(&a) < 1_000);
    }
}
