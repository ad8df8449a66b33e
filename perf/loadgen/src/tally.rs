//! What a run counts and how it is reported.
//!
//! Each client thread keeps its own [`Tally`] (no sharing on the hot path); the main thread
//! merges them at the end. Latencies are recorded in nanoseconds in an HdrHistogram (3
//! significant digits) and reported in microseconds. Only measured requests (sent in the
//! measured period) enter `requests`, `grants` and the histogram; errors are counted over the
//! whole run, warmup and the final release included, since any of them means an answer was
//! not what it should have been.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::handoff::{Ledger, Summary};
use crate::workload::Verdict;

/// Latencies above this are recorded as this (a minute: far beyond any sane answer).
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A connection could not be (re)established.
    Connect,
    /// A request lost to a reset, a close, or a failed write.
    Io,
    /// A request that got no answer within the answer timeout.
    Timeout,
    /// A non-200 answer or a RESP error reply.
    Status,
    /// Bytes that are not an answer (unparsable, chunked, no Content-Length, unsolicited).
    Protocol,
    /// A well-formed answer the workload did not expect (`--check`).
    Check,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Io,
        ErrorKind::Timeout,
        ErrorKind::Status,
        ErrorKind::Protocol,
        ErrorKind::Check,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Io => "io",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status => "status",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Check => "check",
        }
    }

    fn index(self) -> usize {
        match self {
            ErrorKind::Connect => 0,
            ErrorKind::Io => 1,
            ErrorKind::Timeout => 2,
            ErrorKind::Status => 3,
            ErrorKind::Protocol => 4,
            ErrorKind::Check => 5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tally {
    latency_ns: Histogram<u64>,
    pub requests: u64,
    pub grants: u64,
    errors: [u64; ErrorKind::ALL.len()],
    /// When the last measured answer arrived, in ns from the run's start.
    pub last_answer_ns: u64,
    /// Open loop: measured slots never sent because the connection was still behind at the end.
    pub unsent: u64,
    /// The handoff and poll workloads: how the lock passed between the connections.
    pub handoff: Option<Ledger>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
        // 1 ns to a minute at 3 significant digits: about 200 KiB, once per thread.
        let latency_ns = match Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3) {
            Ok(h) => h,
            Err(e) => panic!("fixed histogram bounds are valid: {e}"),
        };
        Tally {
            latency_ns,
            requests: 0,
            grants: 0,
            errors: [0; ErrorKind::ALL.len()],
            last_answer_ns: 0,
            unsent: 0,
            handoff: None,
        }
    }

    /// One measured answer.
    pub fn record(&mut self, latency_ns: u64, answered_ns: u64, granted: bool) {
        self.latency_ns.saturating_record(latency_ns.max(1));
        self.requests += 1;
        self.grants += u64::from(granted);
        self.last_answer_ns = self.last_answer_ns.max(answered_ns);
    }

    /// `count` open-loop requests that were due but never sent, each having waited at least
    /// `waited_ns` by the end of the run: they enter the latency percentiles (as lower
    /// bounds), not the request count.
    pub fn record_unsent(&mut self, waited_ns: u64, count: u64) {
        self.latency_ns.saturating_record_n(waited_ns.max(1), count);
        self.unsent += count;
    }

    /// Counts an answer's verdict: a refusal or an unexpected answer as an error. Says
    /// whether the answer granted a lock.
    pub fn verdict(&mut self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Ok { granted } => granted,
            Verdict::Refused => {
                self.error(ErrorKind::Status, 1);
                false
            }
            Verdict::Unexpected => {
                self.error(ErrorKind::Check, 1);
                false
            }
        }
    }

    pub fn error(&mut self, kind: ErrorKind, count: u64) {
        self.errors[kind.index()] += count;
    }

    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, other: &Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        self.requests += other.requests;
        self.grants += other.grants;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.last_answer_ns = self.last_answer_ns.max(other.last_answer_ns);
        self.unsent += other.unsent;
        if let Some(theirs) = &other.handoff {
            match &mut self.handoff {
                Some(mine) => mine.merge(theirs),
                None => self.handoff = Some(theirs.clone()),
            }
        }
    }

    /// Latency at quantile `q`, in µs.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.latency_ns.is_empty() {
            return 0.0;
        }
        self.latency_ns.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_us(&self) -> f64 {
        self.latency_ns.max() as f64 / 1000.0
    }
}

/// The numbers of one run, as printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub target: String,
    pub protocol: &'static str,
    pub workload: &'static str,
    pub connections: u32,
    pub depth: u32,
    pub threads: u32,
    pub rate: u64,
    pub warmup_s: f64,
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub errors: u64,
    pub error_kinds: Vec<(&'static str, u64)>,
    pub grants: u64,
    pub unsent: u64,
    pub client_cpu_ns_per_req: f64,
    pub driver: &'static str,
    /// The handoff and poll workloads' own figures.
    pub handoff: Option<Summary>,
}

impl Report {
    /// `seconds` is the measured period; `cpu_ns` the process's CPU time during it; `driver`
    /// the client's I/O driver.
    pub fn new(
        base: ReportBase,
        tally: &Tally,
        seconds: f64,
        cpu_ns: u64,
        driver: &'static str,
    ) -> Report {
        let per_request = |x: f64| {
            if tally.requests == 0 {
                0.0
            } else {
                x / tally.requests as f64
            }
        };
        Report {
            target: base.target,
            protocol: base.protocol,
            workload: base.workload,
            connections: base.connections,
            depth: base.depth,
            threads: base.threads,
            rate: base.rate,
            warmup_s: base.warmup_s,
            requests: tally.requests,
            seconds,
            rps: if seconds > 0.0 {
                tally.requests as f64 / seconds
            } else {
                0.0
            },
            p50_us: tally.quantile_us(0.5),
            p99_us: tally.quantile_us(0.99),
            p999_us: tally.quantile_us(0.999),
            max_us: tally.max_us(),
            errors: tally.total_errors(),
            error_kinds: ErrorKind::ALL
                .iter()
                .map(|&k| (k.name(), tally.errors(k)))
                .collect(),
            grants: tally.grants,
            unsent: tally.unsent,
            client_cpu_ns_per_req: per_request(cpu_ns as f64),
            driver,
            handoff: tally.handoff.as_ref().map(Ledger::summary),
        }
    }

    /// One line of JSON: the keys the comparison scripts read, plus `driver`, and for the
    /// handoff and poll workloads `handoff`.
    pub fn json(&self) -> String {
        let mut v = serde_json::json!({
            "protocol": self.protocol,
            "workload": self.workload,
            "connections": self.connections,
            "depth": self.depth,
            "rate": self.rate,
            "requests": self.requests,
            "seconds": round(self.seconds, 6),
            "rps": round(self.rps, 1),
            "p50_us": round(self.p50_us, 3),
            "p99_us": round(self.p99_us, 3),
            "p999_us": round(self.p999_us, 3),
            "max_us": round(self.max_us, 3),
            "errors": self.errors,
            "grants": self.grants,
            "client_cpu_ns_per_req": round(self.client_cpu_ns_per_req, 1),
            "driver": self.driver,
        });
        if let (Some(h), Some(map)) = (&self.handoff, v.as_object_mut()) {
            let per_s = |n: u64| {
                if self.seconds > 0.0 {
                    round(n as f64 / self.seconds, 1)
                } else {
                    0.0
                }
            };
            map.insert(
                "handoff".into(),
                serde_json::json!({
                    "grants": h.grants,
                    "grants_per_s": per_s(h.grants),
                    "grants_per_connection": h.grants_per_connection,
                    "fairness": h.fairness.map(|f| round(f, 4)),
                    "handoffs": h.handoffs,
                    "handoff_p50_us": round(h.handoff_p50_us, 3),
                    "handoff_p99_us": round(h.handoff_p99_us, 3),
                    "handoff_p999_us": round(h.handoff_p999_us, 3),
                    "handoff_max_us": round(h.handoff_max_us, 3),
                    "wait_p50_us": round(h.wait_p50_us, 3),
                    "wait_p99_us": round(h.wait_p99_us, 3),
                    "wait_max_us": round(h.wait_max_us, 3),
                    "pass_wait_p50_us": round(h.pass_wait_p50_us, 3),
                    "pass_wait_p99_us": round(h.pass_wait_p99_us, 3),
                    "pass_wait_max_us": round(h.pass_wait_max_us, 3),
                    "self_grants": h.self_grants,
                    "unpaired": h.unpaired,
                    "denied": h.denied,
                }),
            );
        }
        v.to_string()
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mode = if self.rate == 0 {
            "closed loop".to_string()
        } else {
            format!("open loop at {} req/s", self.rate)
        };
        let _ = writeln!(
            out,
            "{} {} -> {}: {} connection{} x depth {}, {} thread{} ({}), {}, warmup {:.1} s",
            self.protocol,
            self.workload,
            self.target,
            self.connections,
            plural(u64::from(self.connections)),
            self.depth,
            self.threads,
            plural(u64::from(self.threads)),
            self.driver,
            mode,
            self.warmup_s,
        );
        let _ = writeln!(
            out,
            "  requests    {:>12}  in {:.3} s  = {:.0} req/s",
            self.requests, self.seconds, self.rps
        );
        let _ = writeln!(
            out,
            "  latency us  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            self.p50_us, self.p99_us, self.p999_us, self.max_us
        );
        let _ = writeln!(out, "  grants      {:>12}", self.grants);
        let kinds: Vec<String> = self
            .error_kinds
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        if kinds.is_empty() {
            let _ = writeln!(out, "  errors      {:>12}", self.errors);
        } else {
            let _ = writeln!(
                out,
                "  errors      {:>12}  ({})",
                self.errors,
                kinds.join(", ")
            );
        }
        if self.unsent > 0 {
            let _ = writeln!(
                out,
                "  behind      {:>12}  scheduled requests never sent (in the latencies as lower bounds)",
                self.unsent
            );
        }
        let _ = writeln!(
            out,
            "  client cpu  {:>12.0} ns/request",
            self.client_cpu_ns_per_req
        );
        if let Some(h) = &self.handoff {
            let per_s = if self.seconds > 0.0 {
                h.grants as f64 / self.seconds
            } else {
                0.0
            };
            let fairness = h
                .fairness
                .map_or("inf (a connection had none)".to_string(), |f| {
                    format!("{f:.3}")
                });
            let _ = writeln!(
                out,
                "  handoff us  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} handoffs, {} unpaired)",
                h.handoff_p50_us, h.handoff_p99_us, h.handoff_p999_us, h.handoff_max_us,
                h.handoffs, h.unpaired
            );
            let _ = writeln!(
                out,
                "  wait us     p50 {:.1}  p99 {:.1}  max {:.1}; of the grants to another connection than the last holder: p50 {:.1}  p99 {:.1}  max {:.1}",
                h.wait_p50_us, h.wait_p99_us, h.wait_max_us,
                h.pass_wait_p50_us, h.pass_wait_p99_us, h.pass_wait_max_us
            );
            let _ = writeln!(
                out,
                "  grants      {:>12}  = {per_s:.1}/s; per connection max/min {fairness}; {} to the previous holder; {} denied",
                h.grants, h.self_grants, h.denied
            );
            let _ = writeln!(out, "  per conn    {:?}", h.grants_per_connection);
        }
        out
    }
}

/// The run's settings that a report repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportBase {
    pub target: String,
    pub protocol: &'static str,
    pub workload: &'static str,
    pub connections: u32,
    pub depth: u32,
    pub threads: u32,
    pub rate: u64,
    pub warmup_s: f64,
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Rounds for printing, and keeps JSON valid: a non-finite number becomes 0.
fn round(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ReportBase {
        ReportBase {
            target: "127.0.0.1:1".into(),
            protocol: "http",
            workload: "uncontended",
            connections: 4,
            depth: 2,
            threads: 1,
            rate: 0,
            warmup_s: 1.0,
        }
    }

    // Merging thread tallies adds counts and histograms, and keeps the latest answer time.
    #[test]
    fn merge_adds_everything() {
        let mut a = Tally::new();
        a.record(1_000, 50, true);
        a.error(ErrorKind::Io, 2);
        let mut b = Tally::new();
        b.record(3_000, 90, false);
        b.record(5_000, 70, true);
        b.error(ErrorKind::Check, 1);
        b.unsent = 4;
        a.merge(&b);
        assert_eq!(a.requests, 3);
        assert_eq!(a.grants, 2);
        assert_eq!(a.total_errors(), 3);
        assert_eq!(a.errors(ErrorKind::Check), 1);
        assert_eq!(a.last_answer_ns, 90);
        assert_eq!(a.unsent, 4);
        assert!((a.quantile_us(0.5) - 3.0).abs() < 0.01);
        assert!((a.max_us() - 5.0).abs() < 0.01);
    }

    // Latencies beyond the histogram's range are kept (saturated), not dropped.
    #[test]
    fn huge_latencies_saturate() {
        let mut t = Tally::new();
        t.record(u64::MAX, 1, false);
        assert_eq!(t.requests, 1);
        assert!(t.max_us() >= MAX_LATENCY_NS as f64 / 1000.0 * 0.99);
    }

    // The JSON line has exactly the documented keys, with derived rates computed right.
    #[test]
    fn json_has_the_documented_keys() {
        let mut t = Tally::new();
        for i in 1..=1000 {
            t.record(i * 1000, i, i % 2 == 0);
        }
        t.error(ErrorKind::Status, 1);
        let r = Report::new(base(), &t, 2.0, 5_000_000, "io_uring");
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = vec![
            "protocol",
            "workload",
            "connections",
            "depth",
            "rate",
            "requests",
            "seconds",
            "rps",
            "p50_us",
            "p99_us",
            "p999_us",
            "max_us",
            "errors",
            "grants",
            "client_cpu_ns_per_req",
            "driver",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(v["requests"], 1000);
        assert_eq!(v["rps"], 500.0);
        assert_eq!(v["errors"], 1);
        assert_eq!(v["grants"], 500);
        assert_eq!(v["client_cpu_ns_per_req"], 5000.0);
        let p50 = v["p50_us"].as_f64().unwrap();
        assert!((499.0..=501.0).contains(&p50), "{p50}");
        assert!(!r.json().contains('\n'));
    }

    // A handoff or poll run adds its own object; a connection without grants gives a null
    // fairness, never infinity (which JSON cannot carry).
    #[test]
    fn json_carries_the_handoff_figures() {
        let mut t = Tally::new();
        let mut l = Ledger::new(2);
        l.granted(0, 1_000, 0, true);
        l.released(2_000);
        l.granted(1, 12_000, 1_500, true);
        t.handoff = Some(l);
        let r = Report::new(base(), &t, 2.0, 0, "io_uring");
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        let h = &v["handoff"];
        assert_eq!(h["grants"], 2);
        assert_eq!(h["grants_per_s"], 1.0);
        assert_eq!(h["grants_per_connection"], serde_json::json!([1, 1]));
        assert_eq!(h["fairness"], 1.0);
        assert_eq!(
            (h["handoffs"].clone(), h["unpaired"].clone()),
            (1.into(), 1.into())
        );
        let p99 = h["handoff_p99_us"].as_f64().unwrap();
        assert!((p99 - 10.0).abs() < 0.02, "{p99}");
        assert!(r.table().contains("handoff us"));
        let mut l = Ledger::new(2);
        l.granted(0, 1_000, 0, true);
        t.handoff = Some(l);
        let r = Report::new(base(), &t, 2.0, 0, "io_uring");
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert!(v["handoff"]["fairness"].is_null());
        assert!(r.table().contains("inf"));
    }

    // An empty run reports zeros, never NaN (which would make the JSON invalid).
    #[test]
    fn empty_run_reports_zeros() {
        let r = Report::new(base(), &Tally::new(), 0.0, 0, "legacy");
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["rps"], 0.0);
        assert_eq!(v["p99_us"], 0.0);
        assert_eq!(v["client_cpu_ns_per_req"], 0.0);
        assert!(r.table().contains("errors"));
    }

    // The table names the error kinds that occurred.
    #[test]
    fn table_breaks_errors_down() {
        let mut t = Tally::new();
        t.error(ErrorKind::Timeout, 3);
        let table = Report::new(base(), &t, 1.0, 0, "io_uring").table();
        assert!(table.contains("timeout 3"), "{table}");
        assert!(!table.contains("connect 0"), "{table}");
    }
}
