//! dlockd's own routes beside daprd's, over real sockets: renewing a lease
//! (`POST /v1.0-alpha1/lock/{store}/renew`) and asking who holds a lock (`.../holder`). daprd's
//! routes answer as before, and a path daprd does not know still answers daprd's 404.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn renew_body(resource: &str, owner: &str, expiry: i64) -> String {
    format!(r#"{{"resourceId":"{resource}","lockOwner":"{owner}","expiryInSeconds":{expiry}}}"#)
}

fn renew(c: &mut Client, store: &str, resource: &str, owner: &str, expiry: i64) -> Response {
    c.post(
        &format!("/v1.0-alpha1/lock/{store}/renew"),
        &renew_body(resource, owner, expiry),
    )
}

fn holder(c: &mut Client, store: &str, body: &str) -> Response {
    c.post(&format!("/v1.0-alpha1/lock/{store}/holder"), body)
}

/// The holder answer's `remainingMs`.
fn remaining_ms(r: &Response) -> u64 {
    let value: serde_json::Value = serde_json::from_str(r.body_str()).expect("JSON");
    value["remainingMs"].as_u64().expect("remainingMs")
}

const STATUS_0: &str = r#"{"status":0}"#;
const STATUS_1: &str = r#"{"status":1}"#;
const STATUS_2: &str = r#"{"status":2}"#;
const FREE: &str = r#"{"locked":false}"#;

// A renewal answers as an unlock does: 0 renewed by the holder, 2 for another owner (nothing
// changes), 1 for a lock never taken or released; and the renewed lease is the holder's for
// the new expiry, while daprd's answers to lock and unlock are unchanged.
#[test]
fn renew_answers_every_status() {
    for (driver, workers) in DRIVERS.into_iter().flat_map(|d| [(d, "1"), (d, "2")]) {
        let server = start(&["--io-driver", driver, "--workers", workers]);
        let mut c = Client::connect(server.local_addr());
        for i in 0..16 {
            let r = format!("renew-{i}");
            assert_json(&renew(&mut c, "lockstore", &r, "a", 10), 200, STATUS_1);
            assert_json(&c.lock("lockstore", &r, "a", 10), 200, LOCKED);
            assert_json(&renew(&mut c, "lockstore", &r, "b", 10), 200, STATUS_2);
            assert_json(&renew(&mut c, "lockstore", &r, "a", 600), 200, STATUS_0);
            let held = holder(&mut c, "lockstore", &format!(r#"{{"resourceId":"{r}"}}"#));
            assert!(remaining_ms(&held) > 590_000, "{}", held.body_str());
            assert_json(&c.lock("lockstore", &r, "b", 10), 200, NOT_LOCKED);
            assert_json(&c.unlock("lockstore", &r, "a"), 200, STATUS_0);
            assert_json(&renew(&mut c, "lockstore", &r, "a", 10), 200, STATUS_1);
        }
        // The same resource in another store is another lock.
        assert_json(&c.lock("lockstore", "s", "a", 10), 200, LOCKED);
        drop(c);
        assert!(server.shutdown(Duration::from_secs(5)));
    }
}

// A renewed lease outlives its first expiry; an expired lease is never brought back by a
// renewal, even though nobody took it since, and is then free for anyone.
#[test]
fn a_renewal_extends_and_never_revives() {
    let server = start(&[]);
    let mut c = Client::connect(server.local_addr());
    let start = Instant::now();
    assert_json(&c.lock("lockstore", "kept", "a", 1), 200, LOCKED);
    assert_json(&renew(&mut c, "lockstore", "kept", "a", 30), 200, STATUS_0);
    assert_json(&c.lock("lockstore", "lapsed", "a", 1), 200, LOCKED);
    // Past the first expiry of both (a lease ends at most 1 ms after its second).
    let past = Duration::from_millis(1_100);
    std::thread::sleep(past.saturating_sub(start.elapsed()));
    assert_json(&c.lock("lockstore", "kept", "b", 10), 200, NOT_LOCKED);
    assert_json(
        &renew(&mut c, "lockstore", "lapsed", "a", 30),
        200,
        STATUS_1,
    );
    assert_json(&c.lock("lockstore", "lapsed", "b", 10), 200, LOCKED);
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

// Who holds a lock: free, or held with whether the caller owns it, the time left and the
// waiters; the owner itself is never told, and the owner may be left out.
#[test]
fn holder_tells_without_telling_the_owner() {
    let server = start(&["--workers", "2"]);
    let mut c = Client::connect(server.local_addr());
    assert_json(
        &holder(&mut c, "lockstore", r#"{"resourceId":"h"}"#),
        200,
        FREE,
    );
    assert_json(
        &c.lock("lockstore", "h", "secret-owner-42", 20),
        200,
        LOCKED,
    );
    let mine = holder(
        &mut c,
        "lockstore",
        r#"{"resourceId":"h","lockOwner":"secret-owner-42"}"#,
    );
    assert_eq!(mine.status, 200);
    let body = mine.body_str().to_string();
    assert!(
        body.starts_with(r#"{"locked":true,"ownedByCaller":true,"remainingMs":"#)
            && body.ends_with(r#","waiters":0}"#),
        "{body}"
    );
    assert!(remaining_ms(&mine) <= 20_000 && remaining_ms(&mine) > 15_000);
    for other in [
        r#"{"resourceId":"h","lockOwner":"x"}"#,
        r#"{"resourceId":"h"}"#,
    ] {
        let theirs = holder(&mut c, "lockstore", other);
        assert!(
            theirs
                .body_str()
                .starts_with(r#"{"locked":true,"ownedByCaller":false,"#),
            "{}",
            theirs.body_str()
        );
        assert!(!theirs.body_str().contains("secret-owner-42"));
    }
    assert_json(
        &c.unlock("lockstore", "h", "secret-owner-42"),
        200,
        STATUS_0,
    );
    assert_json(
        &holder(&mut c, "lockstore", r#"{"resourceId":"h","lockOwner":"x"}"#),
        200,
        FREE,
    );
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

// The new routes validate as daprd's lock routes do (its order and messages, the expiry for a
// renewal, `--max-expiry`), need the API token, and a path after a store that is none of
// them answers daprd's 404, as do the renewal's path on the unlock route and other methods.
#[test]
fn the_new_routes_validate_as_daprd_does() {
    let server = start(&["--max-expiry", "60"]);
    let mut c = Client::connect(server.local_addr());
    let malformed =
        |message: &str| format!(r#"{{"errorCode":"ERR_MALFORMED_REQUEST","message":"{message}"}}"#);
    let cases = [
        (
            "/v1.0-alpha1/lock/lockstore/renew",
            r#"{"resourceId":"r","lockOwner":"a"}"#,
            400,
            malformed("ExpiryInSeconds is not positive in lock store lockstore"),
        ),
        (
            "/v1.0-alpha1/lock/lockstore/renew",
            &renew_body("r", "a", 61),
            400,
            malformed(
                "ExpiryInSeconds is above the maximum of 60 (--max-expiry) in lock store \
                 lockstore",
            ),
        ),
        (
            "/v1.0-alpha1/lock/lockstore/renew",
            &renew_body("", "a", 5),
            400,
            malformed("ResourceId is empty in lock store lockstore"),
        ),
        (
            "/v1.0-alpha1/lock/lockstore/renew",
            &renew_body("r", "", 5),
            400,
            malformed("LockOwner is empty in lock store lockstore"),
        ),
        (
            "/v1.0-alpha1/lock/nope/renew",
            &renew_body("r", "a", 5),
            400,
            r#"{"errorCode":"ERR_LOCK_STORE_NOT_FOUND","message":"lock store nope not found"}"#
                .to_string(),
        ),
        (
            "/v1.0-alpha1/lock/lockstore/renew",
            &renew_body("a||b", "a", 5),
            500,
            r#"{"errorCode":"ERR_RENEW_LOCK","message":"failed to renew lock: input key/keyPrefix 'a||b' can't contain '||'"}"#
                .to_string(),
        ),
        (
            "/v1.0-alpha1/lock/lockstore/holder",
            r#"{"lockOwner":"a"}"#,
            400,
            malformed("ResourceId is empty in lock store lockstore"),
        ),
        (
            "/v1.0-alpha1/lock/lockstore/holder",
            r#"{"resourceId":"a||b"}"#,
            500,
            r#"{"errorCode":"ERR_LOCK_HOLDER","message":"failed to get lock holder: input key/keyPrefix 'a||b' can't contain '||'"}"#
                .to_string(),
        ),
        (
            "/v1.0-alpha1/lock/lockstore/holder",
            r#"{"resourceId":1}"#,
            400,
            malformed("failed deserializing HTTP body: invalid value for string field resourceId"),
        ),
    ];
    for (path, body, status, answer) in cases {
        let r = c.post(path, body);
        assert_eq!(
            (r.status, r.body_str()),
            (status, answer.as_str()),
            "{path} {body}"
        );
    }
    let direct_invoke = r#"{"errorCode":"ERR_DIRECT_INVOKE","message":"failed getting app id either from the URL path or the header dapr-app-id"}"#;
    for path in [
        "/v1.0-alpha1/lock/lockstore/renewal",
        "/v1.0-alpha1/lock/lockstore/renew/more",
        "/v1.0-alpha1/unlock/lockstore/renew",
        "/v1.0-alpha1/unlock/lockstore/holder",
        "/v1.0/lock/lockstore/renew",
    ] {
        assert_json(&c.post(path, &renew_body("r", "a", 5)), 404, direct_invoke);
    }
    assert_json(
        &c.get("/v1.0-alpha1/lock/lockstore/holder"),
        404,
        direct_invoke,
    );
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));

    let server = start_env(&[], &[("DAPR_API_TOKEN", "t0k")]);
    let mut c = Client::connect(server.local_addr());
    for path in [
        "/v1.0-alpha1/lock/lockstore/renew",
        "/v1.0-alpha1/lock/lockstore/holder",
    ] {
        let r = c.post(path, &renew_body("r", "a", 5));
        assert_eq!(
            (r.status, r.body_str()),
            (401, "invalid api token\n"),
            "{path}"
        );
    }
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

// With a data dir, a renewal keeps the lease's fencing token and repeats it in
// `Dapr-Lock-Fence` on its `0`; a refused renewal carries none.
#[test]
fn a_renewal_repeats_the_fencing_token() {
    let dir = std::env::temp_dir().join(format!(
        "dlockd-extensions-fence-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    let arg = dir.to_str().expect("a UTF-8 temp dir").to_string();
    let server = start(&["--data-dir", &arg]);
    let mut c = Client::connect(server.local_addr());
    let granted = c.lock("lockstore", "f", "a", 10);
    assert_json(&granted, 200, LOCKED);
    let token = granted
        .header("dapr-lock-fence")
        .expect("a fence")
        .to_string();
    let renewed = renew(&mut c, "lockstore", "f", "a", 20);
    assert_json(&renewed, 200, STATUS_0);
    assert_eq!(renewed.header("dapr-lock-fence"), Some(token.as_str()));
    let refused = renew(&mut c, "lockstore", "f", "b", 20);
    assert_json(&refused, 200, STATUS_2);
    assert_eq!(refused.header("dapr-lock-fence"), None);
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
    let _ = std::fs::remove_dir_all(&dir);
}

// The new routes are counted under routes of their own in dlockd_requests_total: each
// renewal status, a holder found or not, and their errors.
#[test]
fn the_new_routes_are_counted() {
    let server = start(&[]);
    let admin = server.metrics_addr().expect("metrics on");
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock("lockstore", "m", "a", 10), 200, LOCKED);
    assert_json(&renew(&mut c, "lockstore", "m", "a", 10), 200, STATUS_0);
    assert_json(&renew(&mut c, "lockstore", "m", "a", 10), 200, STATUS_0);
    assert_json(&renew(&mut c, "lockstore", "m", "b", 10), 200, STATUS_2);
    assert_json(&renew(&mut c, "lockstore", "x", "a", 10), 200, STATUS_1);
    assert_eq!(renew(&mut c, "lockstore", "m", "a", 0).status, 400);
    assert_eq!(
        holder(&mut c, "lockstore", r#"{"resourceId":"m"}"#).status,
        200
    );
    assert_json(
        &holder(&mut c, "lockstore", r#"{"resourceId":"y"}"#),
        200,
        FREE,
    );
    assert_eq!(holder(&mut c, "lockstore", "{").status, 400);
    let mut admin_client = Client::connect(admin);
    let text = admin_client.get("/metrics").body_str().to_string();
    for (line, n) in [
        (
            r#"dlockd_requests_total{route="renew",outcome="success"}"#,
            2,
        ),
        (
            r#"dlockd_requests_total{route="renew",outcome="lock_belongs_to_others"}"#,
            1,
        ),
        (
            r#"dlockd_requests_total{route="renew",outcome="lock_does_not_exist"}"#,
            1,
        ),
        (r#"dlockd_requests_total{route="renew",outcome="error"}"#, 1),
        (
            r#"dlockd_requests_total{route="holder",outcome="locked"}"#,
            1,
        ),
        (r#"dlockd_requests_total{route="holder",outcome="free"}"#, 1),
        (
            r#"dlockd_requests_total{route="holder",outcome="error"}"#,
            1,
        ),
        (
            r#"dlockd_requests_total{route="lock",outcome="granted"}"#,
            1,
        ),
        (r#"dlockd_requests_total{route="lock",outcome="error"}"#, 0),
    ] {
        assert!(
            text.contains(&format!("\n{line} {n}\n")),
            "{line} {n}\n{text}"
        );
    }
    drop(c);
    drop(admin_client);
    assert!(server.shutdown(Duration::from_secs(5)));
}
