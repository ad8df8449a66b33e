//! A history of lock, acquire, renew and unlock calls as real clients saw them, and a checker
//! for what a lock service owes its clients: mutual exclusion, growing fencing tokens, and
//! renewals that never bring back a lease that has ended and keep its token.
//!
//! Ground rules:
//! - Every instant is on one monotonic clock, the test process's `std::time::Instant`. An
//!   operation took effect on the server somewhere between its `invoke` and its `ret`; the
//!   checker never assumes more than that. A call whose outcome is unknown (its connection
//!   failed) may take effect later still, or never.
//! - A granted lock (a try-lock, or an acquire) entitles its owner to the resource from its
//!   `ret` (the owner knows it holds it) until the earlier of `invoke + ttl` and the `invoke`
//!   of that owner's next unlock of that resource invoked after the grant returned (the owner
//!   stops using it then, whatever the unlock's outcome). An unlock invoked before the grant
//!   returned does not end it: the server may have applied it before the grant. Clients here
//!   are sequential, so that case does not arise.
//! - Why `invoke + ttl` for an acquire too, although its lease lives `ttl` from the grant and
//!   the grant may come long after the invoke: the grant happened at some instant `g` with
//!   `invoke <= g <= ret`, and all the client can rely on is the least lease that fits, which
//!   ends at `invoke + ttl`. `[ret, invoke + ttl)` lies within the true lease `[g, g + ttl)`
//!   whatever `g` was, so a correct server is never flagged; a window reaching to `ret + ttl`
//!   would not (the next waiter may be granted at `g + ttl`, before `ret + ttl`) and would flag
//!   a correct server whose answer was slow to arrive. The price: an acquire that waited
//!   longer than its ttl entitles nobody, so a stress load keeps its waits well below its ttls.
//! - A renewal answered 0 sets the lease's end (later or earlier: it replaces it) to at least
//!   the renewal's `invoke + ttl`, the server having applied it after the invoke; while the
//!   owner still uses the lease (no unlock invoked yet), the entitlement then ends there
//!   instead. That holds even when the renewal was invoked after the entitlement had lapsed
//!   but before the lease had surely ended: a correct server answers 0 only to a lease live
//!   all along, so the lease covered the gap. A renewal whose outcome is not known (an error
//!   answer, status 3, a failed connection) may have been applied: it can only cut the
//!   entitlement short, to its `invoke + ttl`, never lengthen it. A renewal answered 1 or 2
//!   changes no entitlement (after a crash the server forgets leases, yet keeps refusing
//!   grants until they have surely ended).
//! - Revivals: a lease has surely ended by `ret + ttl` of its grant (or of the renewal
//!   answered 0 that last set its end) plus one [`SERVER_TICK`], and by the `ret` of an unlock
//!   answered 0, 1 or 2, or of a renewal answered 1 or 2 (either says the owner holds nothing
//!   then). A renewal answered 0 invoked at or after that instant brought back a lease that had
//!   ended. Once another lock or acquire of the same owner and resource may have been granted
//!   without the client learning so (its outcome is unknown or an error), or a renewal may yet
//!   take effect (its outcome is unknown), that owner may hold a lease the history cannot
//!   bound, and its later renewals are not judged. A renewal answered 0 by an owner never
//!   granted that resource (and with no such grant in doubt) is a revival too.
//! - A renewal answered 0 keeps the fencing token of the lease it renewed: when both carry
//!   one, they are equal (not judged once another grant of that owner may have come between).
//! - Refused, Error and Unknown locks entitle nobody. Unknown (the connection failed, so the
//!   outcome is not known) is ignored entirely: the server may have granted it, but its owner
//!   never learned so and never relies on it.
//! - Intervals are half-open: two entitlements that touch (one ends at the instant the other
//!   starts) do not overlap. An empty entitlement (the grant returned after `invoke + ttl`)
//!   entitles nobody.
//! - Fences: for two grants A and B of one resource (try-locks or acquires) where A returned
//!   strictly before B was invoked, `fence(A) < fence(B)` whenever both carry one. Concurrent
//!   grants (windows that overlap) are not ordered, so their fences are not compared.
//!
//! The resource string identifies the lock: a history mixing stores must put the store into it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

/// The server counts whole milliseconds and a lease stays live through its last one, so a
/// lease decided at `t` with `ttl` is live until at most `t + ttl + SERVER_TICK`.
pub const SERVER_TICK: Duration = Duration::from_millis(1);

/// What was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TryLock with its `expiryInSeconds`.
    Lock {
        ttl: Duration,
    },
    /// An acquire with its `expiryInSeconds` and `waitTimeoutMs`: a try-lock that waits for
    /// the lock; its lease lives `ttl` from the grant.
    Acquire {
        ttl: Duration,
        wait: Duration,
    },
    Unlock,
    /// A renewal with its `expiryInSeconds`.
    Renew {
        ttl: Duration,
    },
}

/// What the client learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `200 {"success":true}`, with its `Dapr-Lock-Fence` token if it carried one.
    Granted { fence: Option<u64> },
    /// `200 {"success":false}`.
    Refused,
    /// `200 {"status":N}` to an unlock.
    Unlocked(u8),
    /// `200 {"status":N}` to a renewal, with its `Dapr-Lock-Fence` token if it carried one.
    RenewStatus { status: u8, fence: Option<u64> },
    /// An HTTP error answer, with its status code.
    Error(u16),
    /// The connection failed before a whole answer came: the outcome is not known.
    Unknown,
}

/// One completed call.
#[derive(Debug, Clone)]
pub struct Op {
    pub client: usize,
    pub resource: String,
    pub owner: String,
    pub kind: Kind,
    pub outcome: Outcome,
    /// Just before the request's first byte was written.
    pub invoke: Instant,
    /// Just after the answer's last byte was read (or the failure was seen).
    pub ret: Instant,
}

impl Op {
    /// The fencing token the answer carried: a grant's, or a renewal's.
    pub fn fence(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Granted { fence } | Outcome::RenewStatus { fence, .. } => fence,
            _ => None,
        }
    }

    /// A try-lock or an acquire.
    pub fn is_lock(&self) -> bool {
        matches!(self.kind, Kind::Lock { .. } | Kind::Acquire { .. })
    }

    /// A granted try-lock or acquire.
    pub fn is_grant(&self) -> bool {
        self.is_lock() && matches!(self.outcome, Outcome::Granted { .. })
    }

    /// A renewal answered 0.
    pub fn is_renewed(&self) -> bool {
        matches!(self.kind, Kind::Renew { .. })
            && matches!(self.outcome, Outcome::RenewStatus { status: 0, .. })
    }

    pub fn ttl(&self) -> Option<Duration> {
        match self.kind {
            Kind::Lock { ttl } | Kind::Acquire { ttl, .. } | Kind::Renew { ttl } => Some(ttl),
            Kind::Unlock => None,
        }
    }
}

/// Why an entitlement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The grant's `invoke + ttl`.
    Ttl,
    /// The invoke of the owner's unlock, this op index.
    Unlock(usize),
    /// `invoke + ttl` of this renewal (answered 0, or one that may have been applied).
    Renewal(usize),
}

/// The time a granted lock entitles its owner to the resource: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entitlement {
    pub start: Instant,
    pub end: Instant,
    pub ended_by: End,
}

/// Which rule a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    MutualExclusion,
    FenceOrder,
    /// A renewal answered 0 for a lease that had surely ended (or was never granted).
    RenewalRevives,
    /// A renewal answered 0 with a fencing token other than its lease's.
    RenewalChangesFence,
}

/// A broken rule, naming the two operations (indices into the history) and saying why.
#[derive(Debug, Clone)]
pub struct Violation {
    pub rule: Rule,
    pub resource: String,
    pub first: usize,
    pub second: usize,
    pub description: String,
}

/// Counts for one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSummary {
    /// Granted try-locks and acquires.
    pub grants: usize,
    /// Of `grants`, those granted to an acquire.
    pub acquire_grants: usize,
    /// Try-locks refused and acquires whose wait ended first.
    pub refusals: usize,
    /// Calls whose outcome is not known.
    pub unknowns: usize,
    pub unlocks: usize,
    /// Renewals answered 0.
    pub renewals: usize,
    /// Renewals answered 1 or 2.
    pub renewals_refused: usize,
    /// HTTP error answers, and renewals answered 3.
    pub errors: usize,
    pub grants_without_fence: usize,
    pub renewals_without_fence: usize,
}

/// The checker's answer.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub resources: BTreeMap<String, ResourceSummary>,
    pub violations: Vec<Violation>,
}

/// How many violations a failure message spells out; the rest are counted.
const VIOLATIONS_SHOWN: usize = 20;

impl Report {
    pub fn total(&self) -> ResourceSummary {
        let mut t = ResourceSummary::default();
        for s in self.resources.values() {
            t.grants += s.grants;
            t.acquire_grants += s.acquire_grants;
            t.refusals += s.refusals;
            t.unknowns += s.unknowns;
            t.unlocks += s.unlocks;
            t.renewals += s.renewals;
            t.renewals_refused += s.renewals_refused;
            t.errors += s.errors;
            t.grants_without_fence += s.grants_without_fence;
            t.renewals_without_fence += s.renewals_without_fence;
        }
        t
    }

    pub fn violations_of(&self, rule: Rule) -> Vec<&Violation> {
        self.violations.iter().filter(|v| v.rule == rule).collect()
    }

    /// Panics with the summary and every violation (up to `VIOLATIONS_SHOWN`) if any.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.violations.is_empty(), "{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "history: {} violation(s)", self.violations.len())?;
        for (resource, s) in &self.resources {
            writeln!(
                f,
                "  {resource:?}: {} granted ({} by acquire, {} without a fence), {} refused, \
                 {} renewed ({} without a fence), {} renewals refused, {} unlocks, {} errors, \
                 {} unknown",
                s.grants,
                s.acquire_grants,
                s.grants_without_fence,
                s.refusals,
                s.renewals,
                s.renewals_without_fence,
                s.renewals_refused,
                s.unlocks,
                s.errors,
                s.unknowns
            )?;
        }
        for v in self.violations.iter().take(VIOLATIONS_SHOWN) {
            writeln!(f, "  - {}", v.description)?;
        }
        if self.violations.len() > VIOLATIONS_SHOWN {
            writeln!(
                f,
                "  ... and {} more",
                self.violations.len() - VIOLATIONS_SHOWN
            )?;
        }
        Ok(())
    }
}

/// Every op of one (resource, owner), sorted by invoke.
type Pairs<'a> = HashMap<(&'a str, &'a str), Vec<usize>>;

/// What following a grant through its owner's later calls found.
struct Followed {
    entitlement: Entitlement,
    /// The renewals it judged (they belong to this grant's lease).
    renewals: Vec<usize>,
    violations: Vec<Violation>,
}

/// The instant by which the owner surely holds no lease, with the op that shows it; `None`
/// while unbounded.
#[derive(Clone, Copy)]
struct Over {
    by: Option<(Instant, usize)>,
    /// A call that may yet take effect: the bound is gone for good.
    lost: bool,
}

impl Over {
    /// The owner holds nothing after `at`, whatever it held before.
    fn at_most(&mut self, at: Instant, op: usize) {
        if !self.lost && self.by.is_none_or(|(t, _)| at < t) {
            self.by = Some((at, op));
        }
    }

    /// The owner's lease now ends by `at`, and by nothing earlier.
    fn set(&mut self, at: Instant, op: usize) {
        if !self.lost {
            self.by = Some((at, op));
        }
    }

    /// The owner's lease may go on until `at`.
    fn at_least(&mut self, at: Instant, op: usize) {
        if let Some((t, _)) = self.by {
            if at > t {
                self.by = Some((at, op));
            }
        }
    }

    fn lose(&mut self) {
        self.lost = true;
        self.by = None;
    }
}

/// A list of completed operations, with the instant that descriptions count from.
#[derive(Debug, Clone)]
pub struct History {
    pub origin: Instant,
    pub ops: Vec<Op>,
}

impl History {
    pub fn new(origin: Instant) -> History {
        History {
            origin,
            ops: Vec::new(),
        }
    }

    pub fn push(&mut self, op: Op) {
        assert!(
            op.ret >= op.invoke,
            "an operation returned before it was invoked: {op:?}"
        );
        let fits = match op.kind {
            Kind::Lock { .. } | Kind::Acquire { .. } => matches!(
                op.outcome,
                Outcome::Granted { .. } | Outcome::Refused | Outcome::Error(_) | Outcome::Unknown
            ),
            Kind::Unlock => matches!(
                op.outcome,
                Outcome::Unlocked(_) | Outcome::Error(_) | Outcome::Unknown
            ),
            Kind::Renew { .. } => matches!(
                op.outcome,
                Outcome::RenewStatus { .. } | Outcome::Error(_) | Outcome::Unknown
            ),
        };
        assert!(fits, "an operation with another kind's outcome: {op:?}");
        self.ops.push(op);
    }

    pub fn extend(&mut self, ops: impl IntoIterator<Item = Op>) {
        for op in ops {
            self.push(op);
        }
    }

    /// `t` as an offset from the origin, e.g. `+1503.201ms`.
    pub fn at(&self, t: Instant) -> String {
        match t.checked_duration_since(self.origin) {
            Some(d) => format!("+{:.3}ms", d.as_secs_f64() * 1e3),
            None => format!(
                "-{:.3}ms",
                self.origin.duration_since(t).as_secs_f64() * 1e3
            ),
        }
    }

    /// One operation in words: index, client, what, who, the window and the outcome.
    pub fn describe(&self, i: usize) -> String {
        let op = &self.ops[i];
        let what = match op.kind {
            Kind::Lock { ttl } => format!("lock ttl {} ms", ttl.as_millis()),
            Kind::Acquire { ttl, wait } => format!(
                "acquire ttl {} ms wait {} ms",
                ttl.as_millis(),
                wait.as_millis()
            ),
            Kind::Unlock => "unlock".to_string(),
            Kind::Renew { ttl } => format!("renew ttl {} ms", ttl.as_millis()),
        };
        let outcome = match op.outcome {
            Outcome::Granted { fence: Some(f) } => format!("granted, fence {f}"),
            Outcome::Granted { fence: None } => "granted, no fence".to_string(),
            Outcome::Refused => "refused".to_string(),
            Outcome::Unlocked(s) => format!("status {s}"),
            Outcome::RenewStatus {
                status,
                fence: Some(f),
            } => format!("status {status}, fence {f}"),
            Outcome::RenewStatus {
                status,
                fence: None,
            } => format!("status {status}"),
            Outcome::Error(code) => format!("HTTP {code}"),
            Outcome::Unknown => "unknown".to_string(),
        };
        format!(
            "op #{i} (client {}, {what} of {:?} by {:?}, invoked {}, returned {}, {outcome})",
            op.client,
            op.resource,
            op.owner,
            self.at(op.invoke),
            self.at(op.ret)
        )
    }

    /// Every call of op `i`'s owner on its resource, one a line, in invoke order: what a
    /// violation's owners did, for its failure message.
    pub fn timeline(&self, i: usize) -> String {
        let op = &self.ops[i];
        let mut same: Vec<usize> = (0..self.ops.len())
            .filter(|&k| self.ops[k].resource == op.resource && self.ops[k].owner == op.owner)
            .collect();
        same.sort_by_key(|&k| (self.ops[k].invoke, k));
        same.iter()
            .map(|&k| format!("    {}\n", self.describe(k)))
            .collect()
    }

    fn pair_index(&self) -> Pairs<'_> {
        let mut pairs: Pairs<'_> = HashMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            pairs
                .entry((op.resource.as_str(), op.owner.as_str()))
                .or_default()
                .push(i);
        }
        for list in pairs.values_mut() {
            list.sort_by_key(|&k| (self.ops[k].invoke, k));
        }
        pairs
    }

    /// What op `i` entitles its owner to, if it is a grant (the interval may be empty).
    pub fn entitlement(&self, i: usize) -> Option<Entitlement> {
        self.follow(&self.pair_index(), i).map(|f| f.entitlement)
    }

    /// Follows grant `g` through its owner's later calls on the resource (those invoked at
    /// or after it returned, up to the owner's next known grant there): its entitlement, and
    /// how its renewals fared. See the module's ground rules.
    fn follow(&self, pairs: &Pairs<'_>, g: usize) -> Option<Followed> {
        let grant = &self.ops[g];
        if !grant.is_grant() {
            return None;
        }
        let ttl = grant.ttl()?;
        let list = pairs.get(&(grant.resource.as_str(), grant.owner.as_str()))?;
        let mut end = grant.invoke + ttl;
        let mut ended_by = End::Ttl;
        // No unlock invoked yet: the owner still uses the lease.
        let mut using = true;
        // No other grant of this owner may have come since, nor a renewal take effect later:
        // a renewal answered 0 renews this very lease, and is its only change.
        let mut sure = true;
        let mut over = Over {
            by: Some((grant.ret + ttl + SERVER_TICK, g)),
            lost: false,
        };
        let mut renewals = Vec::new();
        let mut violations = Vec::new();
        // An earlier end, from a call that may have cut the lease short.
        fn cut(at: Instant, by: End, end: &mut Instant, ended_by: &mut End) {
            if at < *end {
                *end = at;
                *ended_by = by;
            }
        }
        let first = list.partition_point(|&k| self.ops[k].invoke < grant.ret);
        for &f in &list[first..] {
            let op = &self.ops[f];
            if f == g {
                continue;
            }
            if op.is_grant() {
                break;
            }
            match (op.kind, op.outcome) {
                (Kind::Lock { .. } | Kind::Acquire { .. }, Outcome::Refused) => {}
                (Kind::Lock { ttl: t } | Kind::Acquire { ttl: t, .. }, Outcome::Error(_)) => {
                    // Answered, so whatever it did was done by its return.
                    sure = false;
                    over.at_least(op.ret + t + SERVER_TICK, f);
                }
                (Kind::Lock { .. } | Kind::Acquire { .. }, _) => {
                    sure = false;
                    over.lose();
                }
                (Kind::Unlock, outcome) => {
                    if using {
                        cut(op.invoke, End::Unlock(f), &mut end, &mut ended_by);
                        using = false;
                    }
                    if let Outcome::Unlocked(0..=2) = outcome {
                        over.at_most(op.ret, f);
                    }
                }
                (Kind::Renew { ttl: t }, Outcome::RenewStatus { status: 0, fence }) => {
                    renewals.push(f);
                    let revived = over.by.filter(|&(t_over, _)| op.invoke >= t_over);
                    if let Some((t_over, shown_by)) = revived {
                        violations.push(self.revival(f, Some(shown_by), t_over));
                    } else if using && sure {
                        end = op.invoke + t;
                        ended_by = End::Renewal(f);
                    } else if using {
                        cut(op.invoke + t, End::Renewal(f), &mut end, &mut ended_by);
                    }
                    if sure {
                        if let (Some(kept), Some(got)) = (grant.fence(), fence) {
                            if kept != got {
                                violations.push(self.fence_change(g, f, kept, got));
                            }
                        }
                    }
                    over.set(op.ret + t + SERVER_TICK, f);
                }
                (Kind::Renew { .. }, Outcome::RenewStatus { status: 1 | 2, .. }) => {
                    renewals.push(f);
                    over.at_most(op.ret, f);
                }
                (Kind::Renew { ttl: t }, Outcome::Unknown) => {
                    renewals.push(f);
                    if using {
                        cut(op.invoke + t, End::Renewal(f), &mut end, &mut ended_by);
                    }
                    sure = false;
                    over.lose();
                }
                (Kind::Renew { ttl: t }, _) => {
                    // Status 3 or an error answer: it may have been applied by its return.
                    renewals.push(f);
                    if using {
                        cut(op.invoke + t, End::Renewal(f), &mut end, &mut ended_by);
                    }
                    over.at_least(op.ret + t + SERVER_TICK, f);
                }
            }
        }
        Some(Followed {
            entitlement: Entitlement {
                start: grant.ret,
                end,
                ended_by,
            },
            renewals,
            violations,
        })
    }

    /// Renewal `r` answered 0 at or after `over`, when the lease had surely ended (as op
    /// `shown_by` shows), or for an owner never granted the resource (`shown_by` is `None`).
    fn revival(&self, r: usize, shown_by: Option<usize>, over: Instant) -> Violation {
        let op = &self.ops[r];
        let why = match shown_by {
            Some(s) => {
                // Either the owner was told it held nothing, or a lease's longest end.
                let how = match (self.ops[s].kind, self.ops[s].outcome) {
                    (Kind::Unlock, _) | (_, Outcome::RenewStatus { status: 1 | 2, .. }) => {
                        "its return"
                    }
                    _ => "its return + ttl + one tick",
                };
                format!(
                    "the lease had surely ended by {} ({how}: {})",
                    self.at(over),
                    self.describe(s)
                )
            }
            None => "that owner was never granted it".to_string(),
        };
        Violation {
            rule: Rule::RenewalRevives,
            resource: op.resource.clone(),
            first: shown_by.unwrap_or(r),
            second: r,
            description: format!(
                "renewal revives a lease on {:?}: {} renewed it, yet {why}",
                op.resource,
                self.describe(r)
            ),
        }
    }

    fn fence_change(&self, g: usize, r: usize, kept: u64, got: u64) -> Violation {
        let resource = self.ops[g].resource.clone();
        Violation {
            description: format!(
                "renewal changes the fence on {resource:?}: {} renewed the lease of {}, yet \
                 answered fence {got} instead of {kept}",
                self.describe(r),
                self.describe(g)
            ),
            rule: Rule::RenewalChangesFence,
            resource,
            first: g,
            second: r,
        }
    }

    fn describe_entitlement(&self, e: &Entitlement) -> String {
        let ended = match e.ended_by {
            End::Ttl => "invoke + ttl".to_string(),
            End::Unlock(u) => format!("the unlock op #{u}"),
            End::Renewal(r) => format!("the renewal op #{r}'s invoke + ttl"),
        };
        format!(
            "holds [{}, {}) (ended by {ended})",
            self.at(e.start),
            self.at(e.end)
        )
    }

    /// Checks every rule and counts what happened, per resource.
    pub fn check(&self) -> Report {
        let mut report = Report::default();
        let pairs = self.pair_index();
        // Per resource: the grants with their entitlements.
        let mut grants: BTreeMap<&str, Vec<(usize, Entitlement)>> = BTreeMap::new();
        let mut judged: HashSet<usize> = HashSet::new();
        for (i, op) in self.ops.iter().enumerate() {
            let s = report.resources.entry(op.resource.clone()).or_default();
            match (op.kind, op.outcome) {
                (_, Outcome::Unknown) => s.unknowns += 1,
                (_, Outcome::Error(_)) => s.errors += 1,
                (Kind::Unlock, _) => s.unlocks += 1,
                (_, Outcome::Refused) => s.refusals += 1,
                (kind, Outcome::Granted { fence }) => {
                    s.grants += 1;
                    if matches!(kind, Kind::Acquire { .. }) {
                        s.acquire_grants += 1;
                    }
                    if fence.is_none() {
                        s.grants_without_fence += 1;
                    }
                    let followed = self
                        .follow(&pairs, i)
                        .expect("a granted lock has an entitlement");
                    judged.extend(followed.renewals);
                    report.violations.extend(followed.violations);
                    grants
                        .entry(op.resource.as_str())
                        .or_default()
                        .push((i, followed.entitlement));
                }
                (_, Outcome::RenewStatus { status: 0, fence }) => {
                    s.renewals += 1;
                    if fence.is_none() {
                        s.renewals_without_fence += 1;
                    }
                }
                (_, Outcome::RenewStatus { status: 1 | 2, .. }) => s.renewals_refused += 1,
                (_, Outcome::RenewStatus { .. }) => s.errors += 1,
                (_, Outcome::Unlocked(_)) => {
                    panic!(
                        "a lock or a renewal with an unlock's outcome: {}",
                        self.describe(i)
                    )
                }
            }
        }
        self.check_orphan_renewals(&pairs, &judged, &mut report.violations);
        for (resource, list) in &grants {
            self.check_exclusion(resource, list, &mut report.violations);
            self.check_fences(resource, list, &mut report.violations);
        }
        report
    }

    /// A renewal answered 0 that follows no grant of its owner is a revival, unless a lock or
    /// acquire of that owner invoked before the renewal returned may have been granted.
    fn check_orphan_renewals(
        &self,
        pairs: &Pairs<'_>,
        judged: &HashSet<usize>,
        out: &mut Vec<Violation>,
    ) {
        for (r, op) in self.ops.iter().enumerate() {
            if !op.is_renewed() || judged.contains(&r) {
                continue;
            }
            let maybe_granted = pairs[&(op.resource.as_str(), op.owner.as_str())]
                .iter()
                .map(|&k| &self.ops[k])
                .any(|other| {
                    other.is_lock() && other.invoke < op.ret && other.outcome != Outcome::Refused
                });
            if !maybe_granted {
                out.push(self.revival(r, None, op.invoke));
            }
        }
    }
    /// No two non-empty entitlements of one resource overlap.
    fn check_exclusion(
        &self,
        resource: &str,
        list: &[(usize, Entitlement)],
        out: &mut Vec<Violation>,
    ) {
        let mut held: Vec<&(usize, Entitlement)> =
            list.iter().filter(|(_, e)| e.start < e.end).collect();
        held.sort_by_key(|(i, e)| (e.start, *i));
        for (k, (a, ea)) in held.iter().enumerate() {
            // Sorted by start: every later one that starts before `a` ends overlaps it.
            for (b, eb) in held[k + 1..].iter().take_while(|(_, eb)| eb.start < ea.end) {
                let overlap = ea.end.min(eb.end).duration_since(eb.start);
                out.push(Violation {
                    rule: Rule::MutualExclusion,
                    resource: resource.to_string(),
                    first: *a,
                    second: *b,
                    description: format!(
                        "mutual exclusion on {resource:?}: {} {} and {} {}; they overlap for \
                         {:.3} ms",
                        self.describe(*a),
                        self.describe_entitlement(ea),
                        self.describe(*b),
                        self.describe_entitlement(eb),
                        overlap.as_secs_f64() * 1e3
                    ),
                });
            }
        }
    }

    /// For grants A, B with A returned before B invoked: fence(A) < fence(B).
    fn check_fences(
        &self,
        resource: &str,
        list: &[(usize, Entitlement)],
        out: &mut Vec<Violation>,
    ) {
        let mut fenced: Vec<(usize, u64)> = list
            .iter()
            .filter_map(|(i, _)| self.ops[*i].fence().map(|f| (*i, f)))
            .collect();
        let mut by_return = fenced.clone();
        by_return.sort_by_key(|(i, _)| (self.ops[*i].ret, *i));
        fenced.sort_by_key(|(i, _)| (self.ops[*i].invoke, *i));
        // Sweep B in invoke order; `highest` is the largest fence among the grants that
        // returned strictly before B's invoke.
        let mut highest: Option<(usize, u64)> = None;
        let mut next = 0;
        for &(b, fb) in &fenced {
            let invoke_b = self.ops[b].invoke;
            while next < by_return.len() && self.ops[by_return[next].0].ret < invoke_b {
                let (a, fa) = by_return[next];
                if highest.is_none_or(|(_, h)| fa > h) {
                    highest = Some((a, fa));
                }
                next += 1;
            }
            if let Some((a, fa)) = highest {
                if fa >= fb {
                    out.push(Violation {
                        rule: Rule::FenceOrder,
                        resource: resource.to_string(),
                        first: a,
                        second: b,
                        description: format!(
                            "fence order on {resource:?}: {} returned before {} was invoked, \
                             yet its fence {fa} is not below {fb}",
                            self.describe(a),
                            self.describe(b)
                        ),
                    });
                }
            }
        }
    }
}
