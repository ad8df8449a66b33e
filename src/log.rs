//! Operator logs on stderr: one line per event, `dlockd: <level>: <message>`.
//!
//! - The level is set once at start (`--log-level`, else `RUST_LOG`, else `info`); events below
//!   it cost one relaxed load.
//! - Errors that can repeat fast (an accept failing while descriptors are exhausted) go through
//!   a [`RateLimit`]: at most [`BURST`] lines per [`WINDOW_MS`], then one line saying how many
//!   were dropped.
//! - Nothing here is told secrets: the API token and lock owners are never passed to a log
//!   call, at any level (the start-up line says only whether a token is required).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Severity, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    /// `error`, `warn`, `info`, `debug` or `trace`, in any case; also `off` (`None` inside
    /// `Some`). `RUST_LOG`-style `dlockd=debug` and lists (`warn,dlockd=debug`) take the
    /// entry for `dlockd`, else the bare level.
    pub fn parse(text: &str) -> Result<Option<Level>, String> {
        let mut bare = None;
        let mut ours = None;
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.split_once('=') {
                Some((target, level)) if target.trim() == "dlockd" => ours = Some(level.trim()),
                Some(_) => {}
                None => bare = Some(entry),
            }
        }
        let Some(word) = ours.or(bare) else {
            return Err(format!("no level in {text:?}"));
        };
        match word.to_ascii_lowercase().as_str() {
            "off" => Ok(None),
            "error" => Ok(Some(Level::Error)),
            "warn" => Ok(Some(Level::Warn)),
            "info" => Ok(Some(Level::Info)),
            "debug" => Ok(Some(Level::Debug)),
            "trace" => Ok(Some(Level::Trace)),
            _ => Err(format!(
                "unknown log level {word:?} (expected off, error, warn, info, debug or trace)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

/// The most verbose level written; 0 is off.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the most verbose level written (`None`: nothing).
pub fn set_level(level: Option<Level>) {
    MAX_LEVEL.store(level.map_or(0, |l| l as u8), Ordering::Relaxed);
}

/// Whether events at `level` are written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Writes one event, if its level is enabled.
pub fn write(level: Level, message: fmt::Arguments<'_>) {
    if enabled(level) {
        eprintln!("dlockd: {}: {message}", level.name());
    }
}

/// Lines a rate-limited event may write per window.
pub const BURST: u64 = 10;
/// The window of a [`RateLimit`], in milliseconds.
pub const WINDOW_MS: u64 = 1000;

/// At most [`BURST`] lines per [`WINDOW_MS`] for one kind of event; time is an argument, so
/// tests drive it. Shared by threads: the counts are atomics, and a race at a window's turn
/// only lets a line more or less through.
#[derive(Debug, Default)]
pub struct RateLimit {
    window_start_ms: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
}

/// What [`RateLimit::admit`] decided for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it; `dropped` events of this kind were not written since the last line.
    Write { dropped: u64 },
    /// Drop it: the window's lines are used up.
    Drop,
}

impl RateLimit {
    pub const fn new() -> Self {
        RateLimit {
            window_start_ms: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Decides one event at `now_ms`.
    pub fn admit(&self, now_ms: u64) -> Admit {
        let start = self.window_start_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(start) >= WINDOW_MS {
            self.window_start_ms.store(now_ms, Ordering::Relaxed);
            self.written.store(0, Ordering::Relaxed);
        }
        if self.written.fetch_add(1, Ordering::Relaxed) < BURST {
            Admit::Write {
                dropped: self.dropped.swap(0, Ordering::Relaxed),
            }
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Admit::Drop
        }
    }

    /// Writes an error through this limit at `now_ms`.
    pub fn error(&self, now_ms: u64, message: fmt::Arguments<'_>) {
        if !enabled(Level::Error) {
            return;
        }
        match self.admit(now_ms) {
            Admit::Write { dropped: 0 } => write(Level::Error, message),
            Admit::Write { dropped } => write(
                Level::Error,
                format_args!("{message} ({dropped} more like it not written)"),
            ),
            Admit::Drop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Protects the accepted spellings, RUST_LOG's target syntax included, and the refusal
    // of anything else.
    #[test]
    fn levels_parse_like_rust_log() {
        assert_eq!(Level::parse("debug"), Ok(Some(Level::Debug)));
        assert_eq!(Level::parse("WARN"), Ok(Some(Level::Warn)));
        assert_eq!(Level::parse("off"), Ok(None));
        assert_eq!(Level::parse("dlockd=trace"), Ok(Some(Level::Trace)));
        assert_eq!(Level::parse("warn,dlockd=debug"), Ok(Some(Level::Debug)));
        assert_eq!(Level::parse("hyper=trace, error"), Ok(Some(Level::Error)));
        assert!(Level::parse("loud").is_err());
        assert!(Level::parse("other=debug").is_err());
        assert!(Level::parse("").is_err());
    }

    // Protects the budget: BURST lines per window, the rest dropped and counted, the count
    // reported with the first line of a later window.
    #[test]
    fn a_rate_limit_writes_a_burst_per_window_and_counts_the_rest() {
        let limit = RateLimit::new();
        for _ in 0..BURST {
            assert_eq!(limit.admit(5), Admit::Write { dropped: 0 });
        }
        for _ in 0..7 {
            assert_eq!(limit.admit(WINDOW_MS - 1), Admit::Drop);
        }
        assert_eq!(limit.admit(WINDOW_MS), Admit::Write { dropped: 7 });
        assert_eq!(limit.admit(WINDOW_MS + 1), Admit::Write { dropped: 0 });
    }
}
