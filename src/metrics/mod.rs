//! What the server counts, and the Prometheus text (format 0.0.4) a scrape reads.
//!
//! Counting costs the hot path a plain load and store: each worker owns one [`WorkerMetrics`]
//! (aligned to its own cache lines, so no two workers' counters share one) and is the only
//! thread that ever writes it, so an increment needs no read-modify-write instruction. The
//! admin thread only reads them, summing over the workers when scraped; a relaxed load of a
//! value written by one other thread sees some recent value, never a torn one.
//!
//! With `--metrics-listen off` nothing can read the counters, so workers do not write them
//! (one predictable branch per count): the difference is the whole cost of counting, which
//! `perf/compare --instructions` shows side by side (`dlockd` against `dlockd-nometrics`).
//!
//! Nothing here does I/O or reads a clock: the connection loop passes the latency it measured
//! with the clock readings it already takes (one per read batch, one before its write).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::Answer;
use crate::http::HttpError;
use crate::lease::{LeaseError, UnlockStatus};

/// How one request ended, by route and outcome: the index of its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum RequestOutcome {
    LockGranted = 0,
    LockRefused,
    LockError,
    UnlockSuccess,
    UnlockDoesNotExist,
    UnlockBelongsToOthers,
    UnlockError,
    RenewSuccess,
    RenewDoesNotExist,
    RenewBelongsToOthers,
    RenewError,
    HolderLocked,
    HolderFree,
    HolderError,
    Other1xx,
    Other2xx,
    Other3xx,
    Other4xx,
    Other5xx,
}

const OUTCOMES: usize = 19;
/// (route, outcome) label values, indexed by [`RequestOutcome`].
const OUTCOME_LABELS: [(&str, &str); OUTCOMES] = [
    ("lock", "granted"),
    ("lock", "refused"),
    ("lock", "error"),
    ("unlock", "success"),
    ("unlock", "lock_does_not_exist"),
    ("unlock", "lock_belongs_to_others"),
    ("unlock", "error"),
    ("renew", "success"),
    ("renew", "lock_does_not_exist"),
    ("renew", "lock_belongs_to_others"),
    ("renew", "error"),
    ("holder", "locked"),
    ("holder", "free"),
    ("holder", "error"),
    ("other", "1xx"),
    ("other", "2xx"),
    ("other", "3xx"),
    ("other", "4xx"),
    ("other", "5xx"),
];

/// The `route` label of `dlockd_requests_total` for a request that the API answered itself,
/// told from its target: the API answers errors of the lock routes too (validation, token,
/// body), and those count as the lock route's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteLabel {
    Lock,
    Unlock,
    Renew,
    Holder,
    Other,
}

impl RouteLabel {
    /// The lock routes' prefixes, as daprd's router matches them (a target Go's path
    /// clean-up would route there by another spelling counts as `Other`).
    pub fn of_target(target: &[u8]) -> RouteLabel {
        if let Some(rest) = target.strip_prefix(b"/v1.0-alpha1/lock/") {
            // dlockd's own routes are a segment after the store's.
            let path = rest.split(|&b| b == b'?').next().unwrap_or_default();
            let last = path
                .iter()
                .rposition(|&b| b == b'/')
                .map(|at| &path[at + 1..]);
            match last {
                Some(b"renew") => RouteLabel::Renew,
                Some(b"holder") => RouteLabel::Holder,
                _ => RouteLabel::Lock,
            }
        } else if target.starts_with(b"/v1.0-alpha1/unlock/") {
            RouteLabel::Unlock
        } else {
            RouteLabel::Other
        }
    }
}

impl RequestOutcome {
    /// The outcome of a lock operation a shard decided.
    #[inline]
    pub fn of_answer(answer: Answer) -> RequestOutcome {
        match answer {
            Answer::TryLock(Ok(true)) | Answer::Granted { .. } | Answer::StoreGranted { .. } => {
                RequestOutcome::LockGranted
            }
            Answer::TryLock(Ok(false)) => RequestOutcome::LockRefused,
            Answer::TryLock(Err(_)) => RequestOutcome::LockError,
            Answer::Unlock(UnlockStatus::Success) => RequestOutcome::UnlockSuccess,
            Answer::Unlock(UnlockStatus::LockDoesNotExist) => RequestOutcome::UnlockDoesNotExist,
            Answer::Unlock(UnlockStatus::LockBelongsToOthers) => {
                RequestOutcome::UnlockBelongsToOthers
            }
            Answer::Unlock(UnlockStatus::InternalError) => RequestOutcome::UnlockError,
            Answer::Renew(UnlockStatus::Success)
            | Answer::Renewed { .. }
            | Answer::StoreRenewed { .. } => RequestOutcome::RenewSuccess,
            Answer::Renew(UnlockStatus::LockDoesNotExist) => RequestOutcome::RenewDoesNotExist,
            Answer::Renew(UnlockStatus::LockBelongsToOthers) => {
                RequestOutcome::RenewBelongsToOthers
            }
            Answer::Renew(UnlockStatus::InternalError) => RequestOutcome::RenewError,
            Answer::Holder(holding) if holding.locked => RequestOutcome::HolderLocked,
            Answer::Holder(_) => RequestOutcome::HolderFree,
        }
    }

    /// The outcome of a request the API answered without a shard.
    pub fn of_response(route: RouteLabel, status: u16) -> RequestOutcome {
        match route {
            RouteLabel::Lock => RequestOutcome::LockError,
            RouteLabel::Unlock => RequestOutcome::UnlockError,
            RouteLabel::Renew => RequestOutcome::RenewError,
            RouteLabel::Holder => RequestOutcome::HolderError,
            RouteLabel::Other => match status {
                100..=199 => RequestOutcome::Other1xx,
                200..=299 => RequestOutcome::Other2xx,
                300..=399 => RequestOutcome::Other3xx,
                400..=499 => RequestOutcome::Other4xx,
                _ => RequestOutcome::Other5xx,
            },
        }
    }
}

/// A bound that refused work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Limit {
    /// `--max-connections`: a connection answered 503 and closed.
    Connections = 0,
    /// `--max-leases`: a shard's table was full.
    Leases,
    /// `--max-header-bytes` or the header count.
    HeaderSize,
    /// `--max-body-bytes` or the chunked framing allowance.
    BodySize,
    /// `--idle-timeout` between requests.
    IdleTimeout,
    /// `--header-timeout` or `--body-timeout` while a request arrived.
    ReadTimeout,
    /// `--idle-timeout` while a client did not read its answers.
    WriteTimeout,
    /// `--max-waiters`: an acquire could not wait.
    Waiters,
}

const LIMITS: usize = 8;
const LIMIT_LABELS: [&str; LIMITS] = [
    "connections",
    "leases",
    "header_size",
    "body_size",
    "idle_timeout",
    "read_timeout",
    "write_timeout",
    "waiters",
];

const PARSE_ERRORS: usize = HttpError::ALL.len();

/// The label of each framing error, and the index of its counter.
fn parse_error_index(e: HttpError) -> (usize, &'static str) {
    match e {
        HttpError::Malformed => (0, "malformed"),
        HttpError::VersionNotSupported => (1, "version_not_supported"),
        HttpError::HeadTooLarge => (2, "head_too_large"),
        HttpError::TooManyHeaders => (3, "too_many_headers"),
        HttpError::BadHost => (4, "bad_host"),
        HttpError::BadContentLength => (5, "bad_content_length"),
        HttpError::LengthWithTransferEncoding => (6, "length_with_transfer_encoding"),
        HttpError::TransferEncodingOnHttp10 => (7, "transfer_encoding_on_http10"),
        HttpError::UnsupportedTransferEncoding => (8, "unsupported_transfer_encoding"),
        HttpError::BadChunk => (9, "bad_chunk"),
        HttpError::ChunkFramingTooLarge => (10, "chunk_framing_too_large"),
        HttpError::BodyTooLarge => (11, "body_too_large"),
    }
}

/// Upper bounds of the latency buckets, in microseconds (the last bucket, `+Inf`, is
/// implicit). Server-side latency of an in-memory lock is a few microseconds; a forwarded one
/// tens; anything in the milliseconds means queueing.
pub const LATENCY_BOUNDS_US: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// One worker's counters. Written only by that worker; read by the scrape.
#[repr(align(128))]
pub struct WorkerMetrics {
    /// False with `--metrics-listen off`: nothing is counted.
    enabled: bool,
    requests: [AtomicU64; OUTCOMES],
    /// Requests per latency bucket (not cumulative; the scrape accumulates).
    latency: [AtomicU64; BUCKETS],
    latency_sum_us: AtomicU64,
    forwards: AtomicU64,
    expirations: AtomicU64,
    /// Leases this worker's shard stores (a gauge, set after every change).
    leases: AtomicU64,
    /// Acquires parked on this worker's shard (a gauge).
    waiters: AtomicU64,
    limits: [AtomicU64; LIMITS],
    parse_errors: [AtomicU64; PARSE_ERRORS],
}

/// Adds `n` to a counter that only the calling thread writes: a load and a store, no locked
/// instruction.
#[inline(always)]
fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl WorkerMetrics {
    pub fn new(enabled: bool) -> Self {
        WorkerMetrics {
            enabled,
            requests: Default::default(),
            latency: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            forwards: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            leases: AtomicU64::new(0),
            waiters: AtomicU64::new(0),
            limits: Default::default(),
            parse_errors: Default::default(),
        }
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    #[inline]
    pub fn request(&self, outcome: RequestOutcome) {
        if self.enabled {
            add(&self.requests[outcome as usize], 1);
        }
    }

    /// A request decided by a shard: its outcome, and the table-full limit when hit.
    #[inline]
    pub fn answer(&self, answer: Answer) {
        if self.enabled {
            add(
                &self.requests[RequestOutcome::of_answer(answer) as usize],
                1,
            );
            if let Answer::TryLock(Err(LeaseError::TableFull { .. })) = answer {
                add(&self.limits[Limit::Leases as usize], 1);
            }
        }
    }

    /// `requests` requests answered `latency_us` after the read that completed them.
    #[inline]
    pub fn latency(&self, requests: u64, latency_us: u64) {
        if self.enabled {
            let bucket = LATENCY_BOUNDS_US
                .iter()
                .position(|&bound| latency_us <= bound)
                .unwrap_or(BUCKETS - 1);
            add(&self.latency[bucket], requests);
            add(&self.latency_sum_us, latency_us.saturating_mul(requests));
        }
    }

    #[inline]
    pub fn forward(&self) {
        if self.enabled {
            add(&self.forwards, 1);
        }
    }

    pub fn expired(&self, reclaimed: usize) {
        if self.enabled && reclaimed > 0 {
            add(&self.expirations, reclaimed as u64);
        }
    }

    #[inline]
    pub fn set_leases(&self, stored: usize) {
        if self.enabled {
            self.leases.store(stored as u64, Ordering::Relaxed);
        }
    }

    pub fn set_waiters(&self, parked: usize) {
        if self.enabled {
            self.waiters.store(parked as u64, Ordering::Relaxed);
        }
    }

    pub fn limit(&self, limit: Limit, n: u64) {
        if self.enabled && n > 0 {
            add(&self.limits[limit as usize], n);
        }
    }

    /// A request that could not be framed; an oversized one also counts as a limit hit.
    pub fn parse_error(&self, e: HttpError) {
        if self.enabled {
            add(&self.parse_errors[parse_error_index(e).0], 1);
            match e {
                HttpError::HeadTooLarge | HttpError::TooManyHeaders => {
                    add(&self.limits[Limit::HeaderSize as usize], 1)
                }
                HttpError::BodyTooLarge | HttpError::ChunkFramingTooLarge => {
                    add(&self.limits[Limit::BodySize as usize], 1)
                }
                _ => {}
            }
        }
    }

    /// Leases this worker's shard stores, as last published by the worker.
    pub fn leases(&self) -> u64 {
        self.leases.load(Ordering::Relaxed)
    }
}

/// What a scrape sees besides the workers' counters.
pub struct Gauges<'a> {
    pub workers: &'a [WorkerMetrics],
    /// Open client connections, whole process.
    pub connections: u64,
    /// Connections accepted, per worker.
    pub accepted: &'a [u64],
    /// Forwarded requests waiting in each shard's inbox.
    pub inbox_depths: &'a [usize],
    /// After an unclean stop with a data dir, how long try-locks are still refused.
    pub crash_grace_remaining_ms: u64,
}

fn sum(workers: &[WorkerMetrics], f: impl Fn(&WorkerMetrics) -> &AtomicU64) -> u64 {
    workers
        .iter()
        .map(|w| f(w).load(Ordering::Relaxed))
        .fold(0u64, u64::wrapping_add)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Seconds from microseconds, as Prometheus writes them.
fn seconds(us: u64) -> String {
    let s = us as f64 / 1e6;
    format!("{s}")
}

/// Renders every metric in the Prometheus text format 0.0.4.
pub fn render(g: &Gauges<'_>, out: &mut String) {
    let w = g.workers;
    write_requests(out, w);
    write_latency(out, w);
    write_leases(out, w);
    write_waiters(out, w);
    write_lease_counters(out, w);
    write_inbox_depths(out, g.inbox_depths);
    write_connections(out, g);
    write_limit_hits(out, w);
    write_parse_errors(out, w);
    write_build_info(out);
}

/// A family of one unlabelled series: its HELP and TYPE lines, then its value.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// `dlockd_requests_total`: one series per (route, outcome).
fn write_requests(out: &mut String, w: &[WorkerMetrics]) {
    header(
        out,
        "dlockd_requests_total",
        "counter",
        "Requests answered, by route (lock, unlock, renew, holder, other) and outcome.",
    );
    for (i, (route, outcome)) in OUTCOME_LABELS.iter().enumerate() {
        let n = sum(w, |m| &m.requests[i]);
        let _ = writeln!(
            out,
            "dlockd_requests_total{{route=\"{route}\",outcome=\"{outcome}\"}} {n}"
        );
    }
}

/// `dlockd_request_duration_seconds`: the cumulative buckets, `+Inf`, the sum and the count.
fn write_latency(out: &mut String, w: &[WorkerMetrics]) {
    header(
        out,
        "dlockd_request_duration_seconds",
        "histogram",
        "Server-side latency: from the read that completed a request to the write of its answer.",
    );
    let mut cumulative = 0u64;
    for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
        cumulative = cumulative.wrapping_add(sum(w, |m| &m.latency[i]));
        let _ = writeln!(
            out,
            "dlockd_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
            seconds(*bound)
        );
    }
    cumulative = cumulative.wrapping_add(sum(w, |m| &m.latency[BUCKETS - 1]));
    let _ = writeln!(
        out,
        "dlockd_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "dlockd_request_duration_seconds_sum {}",
        seconds(sum(w, |m| &m.latency_sum_us))
    );
    let _ = writeln!(out, "dlockd_request_duration_seconds_count {cumulative}");
}

/// `dlockd_leases`: one series per shard.
fn write_leases(out: &mut String, w: &[WorkerMetrics]) {
    header(
        out,
        "dlockd_leases",
        "gauge",
        "Leases stored per shard: live ones, plus expired ones not yet reclaimed (at most one \
         reclaim tick, 100 ms, old).",
    );
    for (shard, m) in w.iter().enumerate() {
        let _ = writeln!(out, "dlockd_leases{{shard=\"{shard}\"}} {}", m.leases());
    }
}

/// `dlockd_waiters`: one series per shard.
fn write_waiters(out: &mut String, w: &[WorkerMetrics]) {
    header(
        out,
        "dlockd_waiters",
        "gauge",
        "Acquires waiting for a lock, by the shard that owns the lock.",
    );
    for (shard, m) in w.iter().enumerate() {
        let n = m.waiters.load(Ordering::Relaxed);
        let _ = writeln!(out, "dlockd_waiters{{shard=\"{shard}\"}} {n}");
    }
}

/// The whole-process counters of what happened to leases and requests: grants, releases,
/// expirations, forwards.
fn write_lease_counters(out: &mut String, w: &[WorkerMetrics]) {
    single(
        out,
        "dlockd_grants_total",
        "counter",
        "Leases granted (try-locks answered success).",
        sum(w, |m| &m.requests[RequestOutcome::LockGranted as usize]),
    );
    single(
        out,
        "dlockd_releases_total",
        "counter",
        "Leases released by their holder (unlocks answered success).",
        sum(w, |m| &m.requests[RequestOutcome::UnlockSuccess as usize]),
    );
    single(
        out,
        "dlockd_expirations_total",
        "counter",
        "Expired leases reclaimed by the timing wheel.",
        sum(w, |m| &m.expirations),
    );
    single(
        out,
        "dlockd_forwards_total",
        "counter",
        "Requests forwarded to the worker that owns their shard.",
        sum(w, |m| &m.forwards),
    );
}

/// `dlockd_inbox_depth`: one series per shard.
fn write_inbox_depths(out: &mut String, inbox_depths: &[usize]) {
    header(
        out,
        "dlockd_inbox_depth",
        "gauge",
        "Forwarded requests waiting in each shard's inbox.",
    );
    for (shard, depth) in inbox_depths.iter().enumerate() {
        let _ = writeln!(out, "dlockd_inbox_depth{{shard=\"{shard}\"}} {depth}");
    }
}

/// What the server, not the workers' counters, knows: the open connections, the grace after
/// an unclean stop, and the connections each worker took on.
fn write_connections(out: &mut String, g: &Gauges<'_>) {
    single(
        out,
        "dlockd_open_connections",
        "gauge",
        "Open client connections (the admin listener's are not counted).",
        g.connections,
    );
    single(
        out,
        "dlockd_crash_grace_remaining_seconds",
        "gauge",
        "After an unclean stop with --data-dir: seconds before try-locks are granted again \
         (every try-lock answers {\"success\":false} until then); 0 otherwise.",
        format_args!(
            "{}.{:03}",
            g.crash_grace_remaining_ms / 1000,
            g.crash_grace_remaining_ms % 1000
        ),
    );
    header(
        out,
        "dlockd_connections_accepted_total",
        "counter",
        "Client connections each worker took on, accepted or handed over by another worker \
         to even out the load (including those refused at the limit).",
    );
    for (worker, n) in g.accepted.iter().enumerate() {
        let _ = writeln!(
            out,
            "dlockd_connections_accepted_total{{worker=\"{worker}\"}} {n}"
        );
    }
}

/// `dlockd_limit_hits_total`: one series per limit.
fn write_limit_hits(out: &mut String, w: &[WorkerMetrics]) {
    header(
        out,
        "dlockd_limit_hits_total",
        "counter",
        "Work refused or connections closed by a configured bound, by limit.",
    );
    for (i, limit) in LIMIT_LABELS.iter().enumerate() {
        let n = sum(w, |m| &m.limits[i]);
        let _ = writeln!(out, "dlockd_limit_hits_total{{limit=\"{limit}\"}} {n}");
    }
}

/// `dlockd_parse_errors_total`: one series per framing error.
fn write_parse_errors(out: &mut String, w: &[WorkerMetrics]) {
    header(
        out,
        "dlockd_parse_errors_total",
        "counter",
        "Requests that could not be framed as HTTP/1.1, by kind (each closed its connection).",
    );
    for e in HttpError::ALL {
        let (i, kind) = parse_error_index(e);
        let n = sum(w, |m| &m.parse_errors[i]);
        let _ = writeln!(out, "dlockd_parse_errors_total{{kind=\"{kind}\"}} {n}");
    }
}

/// `dlockd_build_info`: the running version, as a label.
fn write_build_info(out: &mut String) {
    header(
        out,
        "dlockd_build_info",
        "gauge",
        "Always 1; the labels name the running version.",
    );
    let _ = writeln!(
        out,
        "dlockd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(workers: &[WorkerMetrics]) -> String {
        let mut out = String::new();
        render(
            &Gauges {
                workers,
                connections: 3,
                accepted: &[5, 6],
                inbox_depths: &[0, 1],
                crash_grace_remaining_ms: 12_345,
            },
            &mut out,
        );
        out
    }

    fn value(text: &str, series: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .expect("an integer")
    }

    // Counts from every worker are summed; buckets are cumulative and end in the count; the
    // counter names end in _total and every family has HELP and TYPE.
    #[test]
    fn scrape_sums_workers_and_accumulates_buckets() {
        let w = [WorkerMetrics::new(true), WorkerMetrics::new(true)];
        w[0].answer(Answer::TryLock(Ok(true)));
        w[1].answer(Answer::TryLock(Ok(true)));
        w[1].answer(Answer::TryLock(Err(LeaseError::TableFull {
            max_leases: 1,
        })));
        w[0].request(RequestOutcome::of_response(RouteLabel::Other, 404));
        w[0].latency(2, 7);
        w[1].latency(1, 30);
        w[1].latency(1, 99_000_000);
        w[0].parse_error(HttpError::BodyTooLarge);
        w[1].set_leases(4);
        w[0].set_waiters(3);
        let text = scrape(&w);
        assert_eq!(
            value(
                &text,
                "dlockd_requests_total{route=\"lock\",outcome=\"granted\"}"
            ),
            2
        );
        assert_eq!(
            value(
                &text,
                "dlockd_requests_total{route=\"lock\",outcome=\"error\"}"
            ),
            1
        );
        assert_eq!(
            value(
                &text,
                "dlockd_requests_total{route=\"other\",outcome=\"4xx\"}"
            ),
            1
        );
        assert_eq!(value(&text, "dlockd_limit_hits_total{limit=\"leases\"}"), 1);
        assert_eq!(
            value(&text, "dlockd_limit_hits_total{limit=\"body_size\"}"),
            1
        );
        assert_eq!(
            value(&text, "dlockd_parse_errors_total{kind=\"body_too_large\"}"),
            1
        );
        assert_eq!(
            value(
                &text,
                "dlockd_request_duration_seconds_bucket{le=\"0.00001\"}"
            ),
            2
        );
        assert_eq!(
            value(
                &text,
                "dlockd_request_duration_seconds_bucket{le=\"0.00005\"}"
            ),
            3
        );
        assert_eq!(
            value(&text, "dlockd_request_duration_seconds_bucket{le=\"10\"}"),
            3
        );
        assert_eq!(
            value(&text, "dlockd_request_duration_seconds_bucket{le=\"+Inf\"}"),
            4
        );
        assert_eq!(value(&text, "dlockd_request_duration_seconds_count"), 4);
        assert_eq!(value(&text, "dlockd_leases{shard=\"1\"}"), 4);
        assert_eq!(value(&text, "dlockd_waiters{shard=\"0\"}"), 3);
        assert_eq!(value(&text, "dlockd_waiters{shard=\"1\"}"), 0);
        assert_eq!(value(&text, "dlockd_grants_total"), 2);
        assert_eq!(value(&text, "dlockd_open_connections"), 3);
        assert!(
            text.contains("\ndlockd_crash_grace_remaining_seconds 12.345\n"),
            "{text}"
        );
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
    }

    // The whole text a scrape reads, byte for byte, for a fixed set of counters that differ
    // from series to series: every family's HELP and TYPE lines, its series in order, and the
    // formatting of every value (seconds, the grace period's millisecond decimals) stay as
    // they are, so a refactor of the writer cannot change a byte unnoticed.
    #[test]
    fn scrape_text_is_pinned() {
        let w = [WorkerMetrics::new(true), WorkerMetrics::new(true)];
        let outcomes = [
            RequestOutcome::LockGranted,
            RequestOutcome::LockRefused,
            RequestOutcome::LockError,
            RequestOutcome::UnlockSuccess,
            RequestOutcome::UnlockDoesNotExist,
            RequestOutcome::UnlockBelongsToOthers,
            RequestOutcome::UnlockError,
            RequestOutcome::Other1xx,
            RequestOutcome::Other2xx,
            RequestOutcome::Other3xx,
            RequestOutcome::Other4xx,
            RequestOutcome::Other5xx,
            RequestOutcome::RenewSuccess,
            RequestOutcome::RenewDoesNotExist,
            RequestOutcome::RenewBelongsToOthers,
            RequestOutcome::RenewError,
            RequestOutcome::HolderLocked,
            RequestOutcome::HolderFree,
            RequestOutcome::HolderError,
        ];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            for _ in 0..=i {
                w[i % 2].request(outcome);
            }
        }
        w[0].latency(1, 10);
        w[0].latency(2, 11);
        w[1].latency(3, 2_500);
        w[1].latency(1, 20_000_000);
        w[0].forward();
        w[0].forward();
        w[1].forward();
        w[0].expired(5);
        w[0].set_leases(7);
        w[1].set_leases(11);
        w[1].set_waiters(2);
        let limits = [
            Limit::Connections,
            Limit::Leases,
            Limit::HeaderSize,
            Limit::BodySize,
            Limit::IdleTimeout,
            Limit::ReadTimeout,
            Limit::WriteTimeout,
            Limit::Waiters,
        ];
        for (i, limit) in limits.into_iter().enumerate() {
            w[1].limit(limit, 10 * (i as u64 + 1));
        }
        for (i, e) in HttpError::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                w[i % 2].parse_error(e);
            }
        }
        let mut text = String::new();
        render(
            &Gauges {
                workers: &w,
                connections: 3,
                accepted: &[5, 6],
                inbox_depths: &[0, 2],
                crash_grace_remaining_ms: 1_005,
            },
            &mut text,
        );
        let expected = concat!(
            r#"# HELP dlockd_requests_total Requests answered, by route (lock, unlock, renew, holder, other) and outcome.
# TYPE dlockd_requests_total counter
dlockd_requests_total{route="lock",outcome="granted"} 1
dlockd_requests_total{route="lock",outcome="refused"} 2
dlockd_requests_total{route="lock",outcome="error"} 3
dlockd_requests_total{route="unlock",outcome="success"} 4
dlockd_requests_total{route="unlock",outcome="lock_does_not_exist"} 5
dlockd_requests_total{route="unlock",outcome="lock_belongs_to_others"} 6
dlockd_requests_total{route="unlock",outcome="error"} 7
dlockd_requests_total{route="renew",outcome="success"} 13
dlockd_requests_total{route="renew",outcome="lock_does_not_exist"} 14
dlockd_requests_total{route="renew",outcome="lock_belongs_to_others"} 15
dlockd_requests_total{route="renew",outcome="error"} 16
dlockd_requests_total{route="holder",outcome="locked"} 17
dlockd_requests_total{route="holder",outcome="free"} 18
dlockd_requests_total{route="holder",outcome="error"} 19
dlockd_requests_total{route="other",outcome="1xx"} 8
dlockd_requests_total{route="other",outcome="2xx"} 9
dlockd_requests_total{route="other",outcome="3xx"} 10
dlockd_requests_total{route="other",outcome="4xx"} 11
dlockd_requests_total{route="other",outcome="5xx"} 12
# HELP dlockd_request_duration_seconds Server-side latency: from the read that completed a request to the write of its answer.
# TYPE dlockd_request_duration_seconds histogram
dlockd_request_duration_seconds_bucket{le="0.00001"} 1
dlockd_request_duration_seconds_bucket{le="0.000025"} 3
dlockd_request_duration_seconds_bucket{le="0.00005"} 3
dlockd_request_duration_seconds_bucket{le="0.0001"} 3
dlockd_request_duration_seconds_bucket{le="0.00025"} 3
dlockd_request_duration_seconds_bucket{le="0.0005"} 3
dlockd_request_duration_seconds_bucket{le="0.001"} 3
dlockd_request_duration_seconds_bucket{le="0.0025"} 6
dlockd_request_duration_seconds_bucket{le="0.005"} 6
dlockd_request_duration_seconds_bucket{le="0.01"} 6
dlockd_request_duration_seconds_bucket{le="0.025"} 6
dlockd_request_duration_seconds_bucket{le="0.05"} 6
dlockd_request_duration_seconds_bucket{le="0.1"} 6
dlockd_request_duration_seconds_bucket{le="0.25"} 6
dlockd_request_duration_seconds_bucket{le="0.5"} 6
dlockd_request_duration_seconds_bucket{le="1"} 6
dlockd_request_duration_seconds_bucket{le="2.5"} 6
dlockd_request_duration_seconds_bucket{le="5"} 6
dlockd_request_duration_seconds_bucket{le="10"} 6
dlockd_request_duration_seconds_bucket{le="+Inf"} 7
dlockd_request_duration_seconds_sum 20.007532
dlockd_request_duration_seconds_count 7
# HELP dlockd_leases Leases stored per shard: live ones, plus expired ones not yet reclaimed (at most one reclaim tick, 100 ms, old).
# TYPE dlockd_leases gauge
dlockd_leases{shard="0"} 7
dlockd_leases{shard="1"} 11
# HELP dlockd_waiters Acquires waiting for a lock, by the shard that owns the lock.
# TYPE dlockd_waiters gauge
dlockd_waiters{shard="0"} 0
dlockd_waiters{shard="1"} 2
# HELP dlockd_grants_total Leases granted (try-locks answered success).
# TYPE dlockd_grants_total counter
dlockd_grants_total 1
# HELP dlockd_releases_total Leases released by their holder (unlocks answered success).
# TYPE dlockd_releases_total counter
dlockd_releases_total 4
# HELP dlockd_expirations_total Expired leases reclaimed by the timing wheel.
# TYPE dlockd_expirations_total counter
dlockd_expirations_total 5
# HELP dlockd_forwards_total Requests forwarded to the worker that owns their shard.
# TYPE dlockd_forwards_total counter
dlockd_forwards_total 3
# HELP dlockd_inbox_depth Forwarded requests waiting in each shard's inbox.
# TYPE dlockd_inbox_depth gauge
dlockd_inbox_depth{shard="0"} 0
dlockd_inbox_depth{shard="1"} 2
# HELP dlockd_open_connections Open client connections (the admin listener's are not counted).
# TYPE dlockd_open_connections gauge
dlockd_open_connections 3
# HELP dlockd_crash_grace_remaining_seconds After an unclean stop with --data-dir: seconds before try-locks are granted again (every try-lock answers {"success":false} until then); 0 otherwise.
# TYPE dlockd_crash_grace_remaining_seconds gauge
dlockd_crash_grace_remaining_seconds 1.005
# HELP dlockd_connections_accepted_total Client connections each worker took on, accepted or handed over by another worker to even out the load (including those refused at the limit).
# TYPE dlockd_connections_accepted_total counter
dlockd_connections_accepted_total{worker="0"} 5
dlockd_connections_accepted_total{worker="1"} 6
# HELP dlockd_limit_hits_total Work refused or connections closed by a configured bound, by limit.
# TYPE dlockd_limit_hits_total counter
dlockd_limit_hits_total{limit="connections"} 10
dlockd_limit_hits_total{limit="leases"} 20
dlockd_limit_hits_total{limit="header_size"} 37
dlockd_limit_hits_total{limit="body_size"} 63
dlockd_limit_hits_total{limit="idle_timeout"} 50
dlockd_limit_hits_total{limit="read_timeout"} 60
dlockd_limit_hits_total{limit="write_timeout"} 70
dlockd_limit_hits_total{limit="waiters"} 80
# HELP dlockd_parse_errors_total Requests that could not be framed as HTTP/1.1, by kind (each closed its connection).
# TYPE dlockd_parse_errors_total counter
dlockd_parse_errors_total{kind="malformed"} 1
dlockd_parse_errors_total{kind="version_not_supported"} 2
dlockd_parse_errors_total{kind="head_too_large"} 3
dlockd_parse_errors_total{kind="too_many_headers"} 4
dlockd_parse_errors_total{kind="bad_host"} 5
dlockd_parse_errors_total{kind="bad_content_length"} 6
dlockd_parse_errors_total{kind="length_with_transfer_encoding"} 7
dlockd_parse_errors_total{kind="transfer_encoding_on_http10"} 8
dlockd_parse_errors_total{kind="unsupported_transfer_encoding"} 9
dlockd_parse_errors_total{kind="bad_chunk"} 10
dlockd_parse_errors_total{kind="chunk_framing_too_large"} 11
dlockd_parse_errors_total{kind="body_too_large"} 12
# HELP dlockd_build_info Always 1; the labels name the running version.
# TYPE dlockd_build_info gauge
dlockd_build_info{version=""#,
            env!("CARGO_PKG_VERSION"),
            "\"} 1\n"
        );
        assert_eq!(text, expected);
    }

    // With metrics off nothing is counted.
    #[test]
    fn disabled_counts_nothing() {
        let w = [WorkerMetrics::new(false)];
        w[0].answer(Answer::TryLock(Ok(true)));
        w[0].latency(1, 5);
        w[0].set_leases(9);
        let text = scrape(&w);
        assert_eq!(
            value(
                &text,
                "dlockd_requests_total{route=\"lock\",outcome=\"granted\"}"
            ),
            0
        );
        assert_eq!(value(&text, "dlockd_request_duration_seconds_count"), 0);
        assert_eq!(value(&text, "dlockd_leases{shard=\"0\"}"), 0);
    }

    // A worker's counters never share a cache line with its neighbour's.
    #[test]
    fn workers_own_their_cache_lines() {
        assert_eq!(std::mem::align_of::<WorkerMetrics>(), 128);
        assert_eq!(std::mem::size_of::<WorkerMetrics>() % 128, 0);
    }
}
