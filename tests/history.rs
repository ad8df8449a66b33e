//! The history checker (tests/common/history.rs) on hand-written histories: what it must pass
//! and, with planted violations, what it must catch. The restart tests trust its verdict, so
//! it is shown here to fail when the server would be wrong.

#[path = "common/history.rs"]
mod history;

use std::time::{Duration, Instant};

use history::*;

/// Hand-written histories count milliseconds from one origin.
struct Script {
    origin: Instant,
    history: History,
}

impl Script {
    fn new() -> Script {
        let origin = Instant::now();
        Script {
            origin,
            history: History::new(origin),
        }
    }

    fn t(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    fn op(
        &mut self,
        client: usize,
        resource: &str,
        owner: &str,
        kind: Kind,
        outcome: Outcome,
        window_ms: (u64, u64),
    ) -> usize {
        let op = Op {
            client,
            resource: resource.to_string(),
            owner: owner.to_string(),
            kind,
            outcome,
            invoke: self.t(window_ms.0),
            ret: self.t(window_ms.1),
        };
        self.history.push(op);
        self.history.ops.len() - 1
    }

    /// A granted lock of `ttl_ms` in the window `[invoke, ret]`.
    fn grant(
        &mut self,
        resource: &str,
        owner: &str,
        ttl_ms: u64,
        fence: Option<u64>,
        window_ms: (u64, u64),
    ) -> usize {
        let kind = Kind::Lock {
            ttl: Duration::from_millis(ttl_ms),
        };
        self.op(
            0,
            resource,
            owner,
            kind,
            Outcome::Granted { fence },
            window_ms,
        )
    }

    fn refused(&mut self, resource: &str, owner: &str, window_ms: (u64, u64)) -> usize {
        let kind = Kind::Lock {
            ttl: Duration::from_secs(1),
        };
        self.op(0, resource, owner, kind, Outcome::Refused, window_ms)
    }

    /// An acquire of `ttl_ms` that waited up to `wait_ms`, with its outcome.
    fn acquire(
        &mut self,
        resource: &str,
        owner: &str,
        ttl_ms: u64,
        wait_ms: u64,
        outcome: Outcome,
        window_ms: (u64, u64),
    ) -> usize {
        let kind = Kind::Acquire {
            ttl: Duration::from_millis(ttl_ms),
            wait: Duration::from_millis(wait_ms),
        };
        self.op(0, resource, owner, kind, outcome, window_ms)
    }

    /// A renewal of `ttl_ms` answered `{"status":N}`, with the fence it carried.
    fn renew(
        &mut self,
        resource: &str,
        owner: &str,
        ttl_ms: u64,
        status: u8,
        fence: Option<u64>,
        window_ms: (u64, u64),
    ) -> usize {
        self.renew_with(
            resource,
            owner,
            ttl_ms,
            Outcome::RenewStatus { status, fence },
            window_ms,
        )
    }

    fn renew_with(
        &mut self,
        resource: &str,
        owner: &str,
        ttl_ms: u64,
        outcome: Outcome,
        window_ms: (u64, u64),
    ) -> usize {
        let kind = Kind::Renew {
            ttl: Duration::from_millis(ttl_ms),
        };
        self.op(0, resource, owner, kind, outcome, window_ms)
    }

    fn unlock(&mut self, resource: &str, owner: &str, status: u8, window_ms: (u64, u64)) -> usize {
        self.op(
            0,
            resource,
            owner,
            Kind::Unlock,
            Outcome::Unlocked(status),
            window_ms,
        )
    }
}

// A well-behaved history on two resources (grants, refusals while held, unlocks, an expiry,
// an error, fences growing) passes, and the summary counts each outcome per resource.
#[test]
fn clean_history_passes() {
    let mut s = Script::new();
    s.grant("a", "o1", 1000, Some(1), (0, 2));
    s.refused("a", "o2", (5, 6));
    s.unlock("a", "o1", 0, (100, 101));
    s.grant("a", "o2", 1000, Some(2), (102, 103));
    // o2 never unlocks; its lease expires at 102 + 1000.
    s.refused("a", "o3", (500, 501));
    s.grant("a", "o3", 2000, Some(7), (1110, 1112));
    s.unlock("a", "o3", 0, (1200, 1201));
    s.grant("b", "p1", 1000, Some(1), (10, 12));
    s.op(
        1,
        "b",
        "p2",
        Kind::Lock {
            ttl: Duration::ZERO,
        },
        Outcome::Error(400),
        (20, 21),
    );
    s.unlock("b", "p2", 1, (30, 31));
    s.unlock("b", "p1", 0, (40, 41));
    s.op(1, "b", "p3", Kind::Unlock, Outcome::Unknown, (50, 51));
    let report = s.history.check();
    report.assert_clean();
    let a = &report.resources["a"];
    assert_eq!(
        (a.grants, a.refusals, a.unlocks, a.unknowns),
        (3, 2, 2, 0),
        "{report}"
    );
    let b = &report.resources["b"];
    assert_eq!(
        (b.grants, b.errors, b.unlocks, b.unknowns),
        (1, 1, 2, 1),
        "{report}"
    );
    assert_eq!(report.total().grants, 4);
    assert_eq!(report.total().grants_without_fence, 0);
}

// Two owners holding one resource at once is caught, and the description names both
// operations, both owners and the instants, so a failure explains itself.
#[test]
fn planted_overlap_is_caught() {
    let mut s = Script::new();
    let a = s.grant("r", "alice", 5000, Some(1), (0, 10));
    let b = s.grant("r", "bob", 5000, Some(2), (2000, 2010));
    let report = s.history.check();
    let v = report.violations_of(Rule::MutualExclusion);
    assert_eq!(v.len(), 1, "{report}");
    assert_eq!((v[0].first, v[0].second), (a, b));
    let text = &v[0].description;
    for needle in [
        "\"r\"",
        "alice",
        "bob",
        "op #0",
        "op #1",
        "+10.000ms",
        "+2010.000ms",
        "+5000.000ms",
        "overlap for 2990.000 ms",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from {text}");
    }
    assert!(
        report.violations_of(Rule::FenceOrder).is_empty(),
        "{report}"
    );
    let failure = std::panic::catch_unwind(|| report.assert_clean())
        .expect_err("assert_clean must fail on a violation");
    let message = failure
        .downcast_ref::<String>()
        .expect("assert_clean panics with a formatted message");
    assert!(message.contains("mutual exclusion on \"r\""), "{message}");
}

// An overlap is caught however the grants interleave: a short grant inside a long one, three
// at once, and the same owner granted twice while holding it (the lease is not re-entrant).
#[test]
fn overlaps_inside_and_among_several_are_caught() {
    let mut s = Script::new();
    s.grant("r", "long", 10_000, None, (0, 1));
    s.grant("r", "short", 1000, None, (3000, 3001));
    s.grant("r", "third", 1000, None, (3500, 3501));
    let report = s.history.check();
    // long/short, long/third, short/third.
    assert_eq!(
        report.violations_of(Rule::MutualExclusion).len(),
        3,
        "{report}"
    );

    let mut s = Script::new();
    s.grant("r", "same", 5000, None, (0, 1));
    s.grant("r", "same", 5000, None, (100, 101));
    let report = s.history.check();
    assert_eq!(
        report.violations_of(Rule::MutualExclusion).len(),
        1,
        "{report}"
    );
}

// A fence that does not grow across two ordered grants is caught, whether equal or smaller,
// and also when the larger fence came two grants earlier.
#[test]
fn planted_fence_that_does_not_grow_is_caught() {
    for later in [5, 4] {
        let mut s = Script::new();
        let a = s.grant("r", "o1", 1000, Some(5), (0, 1));
        s.unlock("r", "o1", 0, (10, 11));
        let b = s.grant("r", "o2", 1000, Some(later), (20, 21));
        let report = s.history.check();
        let v = report.violations_of(Rule::FenceOrder);
        assert_eq!(v.len(), 1, "{report}");
        assert_eq!((v[0].first, v[0].second), (a, b));
        let text = &v[0].description;
        for needle in [
            "fence order on \"r\"",
            "o1",
            "o2",
            "fence 5",
            &format!("below {later}"),
            "+1.000ms",
            "+20.000ms",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        assert!(
            report.violations_of(Rule::MutualExclusion).is_empty(),
            "{report}"
        );
    }

    let mut s = Script::new();
    let a = s.grant("r", "o1", 10, Some(10), (0, 1));
    s.grant("r", "o2", 10, Some(11), (20, 21));
    let c = s.grant("r", "o3", 10, Some(6), (40, 41));
    let report = s.history.check();
    let v = report.violations_of(Rule::FenceOrder);
    assert_eq!(v.len(), 1, "{report}");
    assert_eq!(v[0].second, c, "{report}");
    assert_ne!(
        v[0].first, a,
        "the largest earlier fence is named: {report}"
    );
}

// Fences are per resource: a smaller fence on another resource is no violation, and a grant
// without a fence is counted but not compared.
#[test]
fn fences_are_compared_per_resource_and_only_when_present() {
    let mut s = Script::new();
    s.grant("a", "o1", 10, Some(100), (0, 1));
    s.grant("b", "o2", 10, Some(1), (20, 21));
    s.grant("a", "o3", 10, None, (40, 41));
    s.grant("a", "o4", 10, Some(101), (60, 61));
    let report = s.history.check();
    report.assert_clean();
    assert_eq!(report.resources["a"].grants_without_fence, 1);
}

// Entitlements are half-open: one that ends (by ttl, or by an unlock's invoke) at the very
// instant the next begins does not overlap it.
#[test]
fn touching_intervals_pass() {
    let mut s = Script::new();
    s.grant("r", "o1", 1000, Some(1), (0, 10));
    // Returns exactly at o1's invoke + ttl.
    s.grant("r", "o2", 1000, Some(2), (900, 1000));
    // o2 unlocks at 1500; o3's grant returns at that instant.
    s.unlock("r", "o2", 0, (1500, 1502));
    s.grant("r", "o3", 1000, Some(3), (1400, 1500));
    s.history.check().assert_clean();

    // One millisecond more and it is an overlap.
    let mut s = Script::new();
    s.grant("r", "o1", 1000, Some(1), (0, 10));
    s.grant("r", "o2", 1000, Some(2), (900, 999));
    assert_eq!(
        s.history.check().violations_of(Rule::MutualExclusion).len(),
        1
    );
}

// An unlock ends the entitlement at its invoke, early; an unlock invoked before the grant
// returned, or by another owner, does not.
#[test]
fn unlock_ends_the_interval_early() {
    let mut s = Script::new();
    s.grant("r", "o1", 10_000, Some(1), (0, 1));
    let u = s.unlock("r", "o1", 0, (2000, 2001));
    s.grant("r", "o2", 10_000, Some(2), (2000, 2500));
    let report = s.history.check();
    report.assert_clean();
    let e = s.history.entitlement(0).expect("a grant");
    assert_eq!(e.ended_by, End::Unlock(u));
    assert_eq!(e.end, s.t(2000));

    // The same, but the second grant returns before the unlock is invoked.
    let mut s = Script::new();
    s.grant("r", "o1", 10_000, Some(1), (0, 1));
    s.unlock("r", "o1", 0, (2000, 2001));
    s.grant("r", "o2", 10_000, Some(2), (1000, 1500));
    assert_eq!(
        s.history.check().violations_of(Rule::MutualExclusion).len(),
        1
    );

    // Another owner's unlock, and an unlock that overlaps the grant's own window, end nothing.
    let mut s = Script::new();
    s.unlock("r", "o1", 1, (0, 5));
    s.grant("r", "o1", 10_000, Some(1), (1, 10));
    s.unlock("r", "intruder", 2, (100, 101));
    s.grant("r", "o2", 10_000, Some(2), (200, 201));
    let report = s.history.check();
    assert_eq!(
        report.violations_of(Rule::MutualExclusion).len(),
        1,
        "{report}"
    );
    assert_eq!(
        s.history.entitlement(1).expect("a grant").ended_by,
        End::Ttl
    );
}

// A lock whose outcome is unknown entitles nobody: a grant overlapping it passes, and the
// unknown is counted. Refusals and errors entitle nobody either.
#[test]
fn unknown_grant_is_ignored() {
    let mut s = Script::new();
    s.op(
        3,
        "r",
        "lost",
        Kind::Lock {
            ttl: Duration::from_secs(10),
        },
        Outcome::Unknown,
        (0, 1),
    );
    s.refused("r", "o1", (2, 3));
    s.op(
        3,
        "r",
        "bad",
        Kind::Lock {
            ttl: Duration::from_secs(10),
        },
        Outcome::Error(500),
        (4, 5),
    );
    s.grant("r", "o2", 10_000, Some(1), (10, 11));
    let report = s.history.check();
    report.assert_clean();
    assert_eq!(report.resources["r"].unknowns, 1);
    assert_eq!(report.resources["r"].grants, 1);
    assert_eq!(s.history.entitlement(0), None);
}

// Grants whose invoke/return windows overlap are concurrent: the server may have ordered them
// either way, so fences in either order are not flagged, provided they do not hold the
// resource at once.
#[test]
fn concurrent_grants_with_unordered_fences_are_not_flagged() {
    let mut s = Script::new();
    // A: [0, 200], fence 9; B: [100, 300], fence 8. A is unlocked at 250, before B returns.
    s.grant("r", "a", 10_000, Some(9), (0, 200));
    s.unlock("r", "a", 0, (250, 251));
    s.grant("r", "b", 10_000, Some(8), (100, 300));
    s.unlock("r", "b", 0, (400, 401));
    // C returns exactly when B is invoked: not strictly before, so still concurrent, and its
    // larger fence is not compared with B's. (It returned at its expiry: it holds nothing.)
    s.grant("r", "c", 100, Some(20), (0, 100));
    s.history.check().assert_clean();

    // Made sequential (B invoked after A returned), the same fences are a violation.
    let mut s = Script::new();
    s.grant("r", "a", 10_000, Some(9), (0, 200));
    s.unlock("r", "a", 0, (250, 251));
    s.grant("r", "b", 10_000, Some(8), (201, 300));
    let report = s.history.check();
    assert_eq!(report.violations_of(Rule::FenceOrder).len(), 1, "{report}");
}

// A grant that returned after its own invoke + ttl entitles nobody (its interval is empty),
// so a grant to another owner during that window is no overlap.
#[test]
fn a_grant_returned_after_its_expiry_holds_nothing() {
    let mut s = Script::new();
    s.grant("r", "slow", 1000, Some(1), (0, 1500));
    s.grant("r", "next", 1000, Some(2), (1200, 1201));
    s.history.check().assert_clean();
}

fn granted(fence: u64) -> Outcome {
    Outcome::Granted { fence: Some(fence) }
}

/// The rules a report's violations break, in order.
fn rules(report: &Report) -> Vec<Rule> {
    report.violations.iter().map(|v| v.rule).collect()
}

// A well-behaved history with renewals and acquires passes: a lease renewed before it ends
// and handed to a waiter only once its renewed end has passed; a waiter served at a release;
// a renewal that shortens the lease (it replaces the end) before the next waiter gets it; an
// acquire whose wait ended; renewals answered 1 (lapsed, never taken) and 2 (another owner's);
// fences kept by renewals and growing across grants. The summary counts each outcome.
#[test]
fn clean_history_with_renewals_and_acquires_passes() {
    let mut s = Script::new();
    s.grant("a", "o1", 1000, Some(1), (0, 2));
    let renewed = s.renew("a", "o1", 1000, 0, Some(1), (800, 801));
    // o1's lease now ends between 1800 and 1802; o2 waits for it and gets it at 1802.
    let waiter = s.acquire("a", "o2", 1000, 2000, granted(2), (900, 1850));
    // o1's lease has surely ended (1802): its renewal finds nothing.
    s.renew("a", "o1", 1000, 1, None, (1900, 1901));
    s.unlock("a", "o2", 0, (1880, 1881));
    s.acquire("a", "o3", 1000, 0, granted(3), (1890, 1891));
    s.renew("a", "o3", 2000, 0, Some(3), (1950, 1951));
    let shortened = s.renew("a", "o3", 1000, 0, Some(3), (2000, 2001));
    s.renew("a", "intruder", 1000, 2, None, (2100, 2101));
    s.acquire("a", "o5", 1000, 400, Outcome::Refused, (2600, 3000));
    // o3's lease ends by 3002 (2001 + 1000 + a tick); the next waiter gets it then.
    s.acquire("a", "o4", 1000, 1000, granted(4), (2500, 3002));
    s.renew("b", "p1", 1000, 1, None, (10, 11));
    s.grant("b", "p1", 1000, Some(1), (20, 21));
    s.renew_with("b", "p1", 1000, Outcome::Error(500), (100, 101));
    s.renew("b", "p1", 1000, 3, None, (200, 201));
    s.unlock("b", "p1", 0, (300, 301));

    let report = s.history.check();
    report.assert_clean();
    let o1 = s.history.entitlement(0).expect("a grant");
    assert_eq!(
        (o1.start, o1.end, o1.ended_by),
        (s.t(2), s.t(1800), End::Renewal(renewed))
    );
    let o2 = s.history.entitlement(waiter).expect("a grant");
    assert_eq!((o2.start, o2.end), (s.t(1850), s.t(1880)));
    let o3 = s.history.entitlement(5).expect("a grant");
    assert_eq!((o3.end, o3.ended_by), (s.t(3000), End::Renewal(shortened)));
    let a = &report.resources["a"];
    assert_eq!(
        (
            a.grants,
            a.acquire_grants,
            a.refusals,
            a.renewals,
            a.renewals_refused,
            a.unlocks
        ),
        (4, 3, 1, 3, 2, 1),
        "{report}"
    );
    let b = &report.resources["b"];
    assert_eq!(
        (
            b.grants,
            b.renewals,
            b.renewals_refused,
            b.errors,
            b.unlocks
        ),
        (1, 0, 1, 2, 1),
        "{report}"
    );
    assert_eq!(report.total().renewals_without_fence, 0, "{report}");
}

// A renewal answered 0 for a lease that had surely ended is caught: after its ttl ran out
// (the grant's return + ttl + one tick), after the owner's unlock answered 0, after a renewal
// answered 1, and for an owner never granted the resource. The violation names the op that
// shows the lease had ended.
#[test]
fn planted_revival_is_caught() {
    // The ttl ran out: the grant returned at 10, so the lease ended by 10 + 1000 + 1.
    let mut s = Script::new();
    let g = s.grant("r", "o1", 1000, Some(1), (0, 10));
    let r = s.renew("r", "o1", 1000, 0, Some(1), (1011, 1012));
    let report = s.history.check();
    assert_eq!(rules(&report), [Rule::RenewalRevives], "{report}");
    let v = &report.violations[0];
    assert_eq!((v.first, v.second), (g, r));
    for needle in [
        "renewal revives a lease on \"r\"",
        "op #1",
        "o1",
        "surely ended by +1011.000ms",
        "its return + ttl + one tick: op #0",
    ] {
        assert!(
            v.description.contains(needle),
            "{needle:?} missing from {}",
            v.description
        );
    }

    // Released, then renewed.
    let mut s = Script::new();
    s.grant("r", "o1", 10_000, Some(1), (0, 1));
    let u = s.unlock("r", "o1", 0, (100, 101));
    let r = s.renew("r", "o1", 1000, 0, Some(1), (200, 201));
    let report = s.history.check();
    assert_eq!(rules(&report), [Rule::RenewalRevives], "{report}");
    assert_eq!(
        (report.violations[0].first, report.violations[0].second),
        (u, r)
    );

    // Told it was gone, then renewed: the second renewal brought it back.
    let mut s = Script::new();
    s.grant("r", "o1", 10_000, Some(1), (0, 1));
    let gone = s.renew("r", "o1", 1000, 1, None, (100, 101));
    let r = s.renew("r", "o1", 1000, 0, Some(1), (200, 201));
    let report = s.history.check();
    assert_eq!(rules(&report), [Rule::RenewalRevives], "{report}");
    assert_eq!(
        (report.violations[0].first, report.violations[0].second),
        (gone, r)
    );

    // Never granted (its lock was refused): the renewal made a lease up.
    let mut s = Script::new();
    s.refused("r", "stranger", (0, 1));
    let r = s.renew("r", "stranger", 1000, 0, None, (10, 11));
    let report = s.history.check();
    assert_eq!(rules(&report), [Rule::RenewalRevives], "{report}");
    assert_eq!(
        (report.violations[0].first, report.violations[0].second),
        (r, r)
    );
    assert!(
        report.violations[0].description.contains("never granted"),
        "{report}"
    );
}

// What the history cannot prove is no revival: a renewal invoked after the entitlement lapsed
// but before the lease surely ended (the server may have started it late); one after a lock
// of that owner whose outcome is unknown (it may have granted a new lease); one after a
// renewal whose outcome is unknown. A renewal answered 0 in the first case proves the lease
// was live all along, so the entitlement reaches its new end.
#[test]
fn renewals_that_may_be_live_are_not_revivals() {
    let mut s = Script::new();
    s.grant("r", "o1", 1000, Some(1), (0, 10));
    let r = s.renew("r", "o1", 1000, 0, Some(1), (1010, 1011));
    s.history.check().assert_clean();
    let e = s.history.entitlement(0).expect("a grant");
    assert_eq!((e.end, e.ended_by), (s.t(2010), End::Renewal(r)));
    // One millisecond later it is a revival.
    let mut s = Script::new();
    s.grant("r", "o1", 1000, Some(1), (0, 10));
    s.renew("r", "o1", 1000, 0, Some(1), (1011, 1012));
    assert_eq!(rules(&s.history.check()), [Rule::RenewalRevives]);

    let mut s = Script::new();
    s.grant("r", "o1", 1000, Some(1), (0, 1));
    s.unlock("r", "o1", 0, (100, 101));
    let kind = Kind::Lock {
        ttl: Duration::from_secs(1),
    };
    s.op(0, "r", "o1", kind, Outcome::Unknown, (200, 201));
    s.renew("r", "o1", 1000, 0, Some(2), (300, 301));
    s.history.check().assert_clean();

    let mut s = Script::new();
    s.grant("r", "o1", 1000, Some(1), (0, 1));
    s.renew_with("r", "o1", 5000, Outcome::Unknown, (100, 101));
    s.renew("r", "o1", 1000, 0, Some(1), (3000, 3001));
    s.history.check().assert_clean();
    // The unknown renewal may have shortened the lease, never lengthened it: the entitlement
    // keeps its first end, and the late renewal does not extend it.
    let e = s.history.entitlement(0).expect("a grant");
    assert_eq!((e.end, e.ended_by), (s.t(1000), End::Ttl));
    let mut s = Script::new();
    s.grant("r", "o1", 10_000, Some(1), (0, 1));
    let cut = s.renew_with("r", "o1", 1000, Outcome::Unknown, (100, 101));
    let e = s.history.entitlement(0).expect("a grant");
    assert_eq!((e.end, e.ended_by), (s.t(1100), End::Renewal(cut)));
}

// An acquire's grant overlapping a renewed lease is caught: the renewal moved the holder's
// end past the instant the waiter was granted. Without the renewal the same history is clean,
// so it is the renewal that counts; and an acquire granted while a plain try-lock holds is
// caught the same way.
#[test]
fn planted_overlap_between_an_acquire_and_a_renewed_lease_is_caught() {
    let mut s = Script::new();
    let holder = s.grant("r", "o1", 1000, Some(1), (0, 1));
    s.renew("r", "o1", 1000, 0, Some(1), (500, 501));
    // Granted at o1's first end, as if the renewal had not happened.
    let waiter = s.acquire("r", "o2", 1000, 1000, granted(2), (600, 1200));
    let report = s.history.check();
    assert_eq!(rules(&report), [Rule::MutualExclusion], "{report}");
    let v = &report.violations[0];
    assert_eq!((v.first, v.second), (holder, waiter));
    for needle in [
        "acquire ttl 1000 ms wait 1000 ms",
        "holds [+1.000ms, +1500.000ms) (ended by the renewal op #1's invoke + ttl)",
        "holds [+1200.000ms, +1600.000ms)",
        "overlap for 300.000 ms",
    ] {
        assert!(
            v.description.contains(needle),
            "{needle:?} missing from {}",
            v.description
        );
    }

    let mut s = Script::new();
    s.grant("r", "o1", 1000, Some(1), (0, 1));
    s.acquire("r", "o2", 1000, 1000, granted(2), (600, 1200));
    s.history.check().assert_clean();

    let mut s = Script::new();
    s.grant("r", "o1", 5000, Some(1), (0, 1));
    s.acquire("r", "o2", 5000, 100, granted(2), (1000, 1001));
    assert_eq!(rules(&s.history.check()), [Rule::MutualExclusion]);
}

// An acquire's grant entitles its owner from its return to its invoke + ttl, the least lease
// that fits whenever the grant came: a waiter whose answer was slow to arrive and the next
// waiter, granted on the first tick after the lease ended, are not flagged (a window reaching
// to return + ttl would flag this correct server); an acquire answered after its invoke + ttl
// holds nothing. Two waiters granted at once are still caught.
#[test]
fn acquire_entitlement_ends_at_invoke_plus_ttl() {
    let mut s = Script::new();
    // Granted at about 100, answered at 400: the lease ends by 1101.
    let slow = s.acquire("r", "o1", 1000, 5000, granted(1), (0, 400));
    s.acquire("r", "o2", 1000, 5000, granted(2), (50, 1110));
    s.history.check().assert_clean();
    let e = s.history.entitlement(slow).expect("a grant");
    assert_eq!(
        (e.start, e.end, e.ended_by),
        (s.t(400), s.t(1000), End::Ttl)
    );

    let mut s = Script::new();
    s.acquire("r", "patient", 1000, 5000, granted(1), (0, 1500));
    s.grant("r", "other", 1000, Some(2), (1200, 1201));
    s.history.check().assert_clean();

    let mut s = Script::new();
    let a = s.acquire("r", "o1", 1000, 5000, granted(1), (0, 400));
    let b = s.acquire("r", "o2", 1000, 5000, granted(2), (50, 410));
    let report = s.history.check();
    assert_eq!(rules(&report), [Rule::MutualExclusion], "{report}");
    assert_eq!(
        (report.violations[0].first, report.violations[0].second),
        (a, b)
    );
}

// A renewal answered 0 with a fence other than its lease's is caught (a larger one and a
// smaller one), and so is an acquire's grant whose fence does not grow past an earlier
// grant's; a renewal without a fence is not compared.
#[test]
fn planted_renewal_that_changes_the_fence_is_caught() {
    for other in [6, 4] {
        let mut s = Script::new();
        let g = s.grant("r", "o1", 10_000, Some(5), (0, 1));
        s.renew("r", "o1", 10_000, 0, Some(5), (100, 101));
        let r = s.renew("r", "o1", 10_000, 0, Some(other), (200, 201));
        s.renew("r", "o1", 10_000, 0, None, (300, 301));
        let report = s.history.check();
        assert_eq!(rules(&report), [Rule::RenewalChangesFence], "{report}");
        let v = &report.violations[0];
        assert_eq!((v.first, v.second), (g, r));
        for needle in [
            "renewal changes the fence on \"r\"",
            "op #2",
            "op #0",
            &format!("answered fence {other} instead of 5"),
        ] {
            assert!(
                v.description.contains(needle),
                "{needle:?} missing from {}",
                v.description
            );
        }
    }

    // Acquires' fences are ordered as try-locks' are.
    let mut s = Script::new();
    let a = s.grant("r", "o1", 1000, Some(5), (0, 1));
    s.unlock("r", "o1", 0, (10, 11));
    let b = s.acquire("r", "o2", 1000, 100, granted(5), (20, 30));
    let report = s.history.check();
    assert_eq!(rules(&report), [Rule::FenceOrder], "{report}");
    assert_eq!(
        (report.violations[0].first, report.violations[0].second),
        (a, b)
    );
}
