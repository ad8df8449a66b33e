//! A history of lock and unlock calls as real clients saw them, and a checker for the two
//! properties a lock service owes its clients: mutual exclusion and growing fencing tokens.
//!
//! Ground rules:
//! - Every instant is on one monotonic clock, the test process's `std::time::Instant`. An
//!   operation took effect on the server somewhere between its `invoke` and its `ret`; the
//!   checker never assumes more than that.
//! - A `Granted` lock entitles its owner to the resource from its `ret` (the owner knows it
//!   holds it) until the earlier of `invoke + ttl` (the server started the lease after the
//!   invoke, so it lasts at least that long) and the `invoke` of that owner's next unlock of
//!   that resource invoked after the grant returned (the owner stops using it then, whatever
//!   the unlock's outcome). An unlock invoked before the grant returned does not end it: the
//!   server may have applied it before the grant. Clients here are sequential, so that case
//!   does not arise.
//! - Refused, Error and Unknown locks entitle nobody. Unknown (the connection failed, so the
//!   outcome is not known) is ignored entirely: the server may have granted it, but its owner
//!   never learned so and never relies on it.
//! - Intervals are half-open: two entitlements that touch (one ends at the instant the other
//!   starts) do not overlap. An empty entitlement (the grant returned after `invoke + ttl`)
//!   entitles nobody.
//! - Fences: for two grants A and B of one resource where A returned strictly before B was
//!   invoked, `fence(A) < fence(B)` whenever both carry one. Concurrent grants (windows that
//!   overlap) are not ordered, so their fences are not compared.
//!
//! The resource string identifies the lock: a history mixing stores must put the store into it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

/// What was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TryLock with its `expiryInSeconds`.
    Lock {
        ttl: Duration,
    },
    Unlock,
}

/// What the client learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `200 {"success":true}`, with its `Dapr-Lock-Fence` token if it carried one.
    Granted { fence: Option<u64> },
    /// `200 {"success":false}`.
    Refused,
    /// `200 {"status":N}`.
    Unlocked(u8),
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
    pub fn fence(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Granted { fence } => fence,
            _ => None,
        }
    }

    pub fn is_grant(&self) -> bool {
        matches!(self.kind, Kind::Lock { .. }) && matches!(self.outcome, Outcome::Granted { .. })
    }

    pub fn ttl(&self) -> Option<Duration> {
        match self.kind {
            Kind::Lock { ttl } => Some(ttl),
            Kind::Unlock => None,
        }
    }
}

/// Why an entitlement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `invoke + ttl`.
    Ttl,
    /// The invoke of the owner's unlock, this op index.
    Unlock(usize),
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
    pub grants: usize,
    pub refusals: usize,
    /// Locks and unlocks whose outcome is not known.
    pub unknowns: usize,
    pub unlocks: usize,
    pub errors: usize,
    pub grants_without_fence: usize,
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
            t.refusals += s.refusals;
            t.unknowns += s.unknowns;
            t.unlocks += s.unlocks;
            t.errors += s.errors;
            t.grants_without_fence += s.grants_without_fence;
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
                "  {resource:?}: {} granted ({} without a fence), {} refused, {} unlocks, \
                 {} errors, {} unknown",
                s.grants, s.grants_without_fence, s.refusals, s.unlocks, s.errors, s.unknowns
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
            Kind::Unlock => "unlock".to_string(),
        };
        let outcome = match op.outcome {
            Outcome::Granted { fence: Some(f) } => format!("granted, fence {f}"),
            Outcome::Granted { fence: None } => "granted, no fence".to_string(),
            Outcome::Refused => "refused".to_string(),
            Outcome::Unlocked(s) => format!("status {s}"),
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

    /// The first unlock of (`resource`, `owner`) invoked at or after `after`.
    fn next_unlock(
        &self,
        unlocks: &HashMap<(&str, &str), Vec<usize>>,
        resource: &str,
        owner: &str,
        after: Instant,
    ) -> Option<usize> {
        let list = unlocks.get(&(resource, owner))?;
        let at = list.partition_point(|&u| self.ops[u].invoke < after);
        list.get(at).copied()
    }

    fn unlock_index(&self) -> HashMap<(&str, &str), Vec<usize>> {
        let mut unlocks: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            if op.kind == Kind::Unlock {
                unlocks
                    .entry((op.resource.as_str(), op.owner.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        for list in unlocks.values_mut() {
            list.sort_by_key(|&u| self.ops[u].invoke);
        }
        unlocks
    }

    /// What op `i` entitles its owner to, if it is a grant (the interval may be empty).
    pub fn entitlement(&self, i: usize) -> Option<Entitlement> {
        self.entitlement_with(&self.unlock_index(), i)
    }

    fn entitlement_with(
        &self,
        unlocks: &HashMap<(&str, &str), Vec<usize>>,
        i: usize,
    ) -> Option<Entitlement> {
        let op = &self.ops[i];
        let ttl = op.ttl()?;
        if !op.is_grant() {
            return None;
        }
        let expiry = op.invoke + ttl;
        let (end, ended_by) = match self.next_unlock(unlocks, &op.resource, &op.owner, op.ret) {
            Some(u) if self.ops[u].invoke < expiry => (self.ops[u].invoke, End::Unlock(u)),
            _ => (expiry, End::Ttl),
        };
        Some(Entitlement {
            start: op.ret,
            end,
            ended_by,
        })
    }

    fn describe_entitlement(&self, e: &Entitlement) -> String {
        let ended = match e.ended_by {
            End::Ttl => "invoke + ttl".to_string(),
            End::Unlock(u) => format!("the unlock op #{u}"),
        };
        format!(
            "holds [{}, {}) (ended by {ended})",
            self.at(e.start),
            self.at(e.end)
        )
    }

    /// Checks both rules and counts what happened, per resource.
    pub fn check(&self) -> Report {
        let mut report = Report::default();
        let unlocks = self.unlock_index();
        // Per resource: the grants with their entitlements.
        let mut grants: BTreeMap<&str, Vec<(usize, Entitlement)>> = BTreeMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            let s = report.resources.entry(op.resource.clone()).or_default();
            match (op.kind, op.outcome) {
                (_, Outcome::Unknown) => s.unknowns += 1,
                (_, Outcome::Error(_)) => s.errors += 1,
                (Kind::Unlock, _) => s.unlocks += 1,
                (Kind::Lock { .. }, Outcome::Refused) => s.refusals += 1,
                (Kind::Lock { .. }, Outcome::Granted { fence }) => {
                    s.grants += 1;
                    if fence.is_none() {
                        s.grants_without_fence += 1;
                    }
                    let e = self
                        .entitlement_with(&unlocks, i)
                        .expect("a granted lock has an entitlement");
                    grants.entry(op.resource.as_str()).or_default().push((i, e));
                }
                (Kind::Lock { .. }, Outcome::Unlocked(_)) => {
                    panic!("a lock with an unlock's outcome: {}", self.describe(i))
                }
            }
        }
        for (resource, list) in &grants {
            self.check_exclusion(resource, list, &mut report.violations);
            self.check_fences(resource, list, &mut report.violations);
        }
        report
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
