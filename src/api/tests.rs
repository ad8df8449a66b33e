//! Tests of the whole layer through [`Api::handle`] and [`answer_response`], table-driven over
//! the contract, plus a differential check of the body decoder against a small reference
//! decoder written on serde_json.

use super::*;

const NO_ROUTE_BODY: &str = r#"{"errorCode":"ERR_DIRECT_INVOKE","message":"failed getting app id either from the URL path or the header dapr-app-id"}"#;
const LOCK_BODY: &str = r#"{"storeName":"lockstore","resourceId":"order-1","lockOwner":"worker-7","expiryInSeconds":60}"#;
const UNLOCK_BODY: &str = r#"{"resourceId":"order-1","lockOwner":"worker-7"}"#;

/// What came out of `handle`: status, content type, body text, close flag.
type Seen = (u16, &'static str, String, bool);

fn api_with(stores: &[&str], token: Option<&str>, max_id_bytes: usize) -> Api {
    Api::new(ApiConfig {
        stores: stores.iter().map(|s| (*s).to_owned()).collect(),
        app_id: "app".to_owned(),
        api_token: token.map(|t| t.as_bytes().to_vec()),
        max_id_bytes,
        max_expiry_s: None,
        max_wait_ms: 60_000,
        store_types: Vec::new(),
    })
}

fn api() -> Api {
    api_with(&["lockstore"], None, 1024)
}

/// The answer's status, content type, body text and close flag; a lock operation is shown as
/// status 0 with its fields in the body.
fn answer(api: &mut Api, method: Method, target: &str, token: Option<&str>, body: &str) -> Seen {
    match api.handle(
        method,
        target.as_bytes(),
        token.map(str::as_bytes),
        body.as_bytes(),
    ) {
        Outcome::Respond(response) => (
            response.status,
            response.content_type,
            String::from_utf8_lossy(response.body()).into_owned(),
            response.close,
        ),
        Outcome::Lock(op) => (
            0,
            "",
            format!(
                "{:?} store={} resource={} owner={}",
                op.kind,
                op.store.0,
                String::from_utf8_lossy(op.resource),
                String::from_utf8_lossy(op.owner)
            ),
            false,
        ),
    }
}

fn error(status: u16, code: &str, message: &str) -> Seen {
    (
        status,
        "application/json",
        format!(r#"{{"errorCode":"{code}","message":"{message}"}}"#),
        false,
    )
}

fn locked(kind: &str, store: u16, resource: &str, owner: &str) -> Seen {
    (
        0,
        "",
        format!("{kind} store={store} resource={resource} owner={owner}"),
        false,
    )
}

fn metadata_of(api: &mut Api) -> serde_json::Value {
    let (status, content_type, body, _) = answer(api, Method::Get, "/v1.0/metadata", None, "");
    assert_eq!((status, content_type), (200, "application/json"));
    serde_json::from_str(&body).expect("metadata is JSON")
}

#[test]
fn routes_answer_like_daprd() {
    // Protects the route table end to end: each route's status, content type and bytes, the
    // 404 fallback for everything else, and the 400-and-close for unparsable targets.
    let no_route = (404, "application/json", NO_ROUTE_BODY.to_owned(), false);
    let health = (204, "", String::new(), false);
    let bad_target = (
        400,
        "text/plain; charset=utf-8",
        "400 Bad Request".to_owned(),
        true,
    );
    let try_lock = locked("TryLock { expiry_s: 60 }", 0, "order-1", "worker-7");
    let unlock = locked("Unlock", 0, "order-1", "worker-7");
    let cases = [
        (Method::Get, "/v1.0/healthz", "", health.clone()),
        (Method::Get, "/v1.0/healthz/outbound", "", health.clone()),
        (Method::Get, "/v1.0/healthz/?x=1", "", health.clone()),
        (
            Method::Get,
            "//v1.0//healthz//outbound/",
            "",
            health.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha1/lock/lockstore",
            LOCK_BODY,
            try_lock.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha1/lock/lockstore/",
            LOCK_BODY,
            try_lock.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha1//lock/./lockstore?x",
            LOCK_BODY,
            try_lock.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha1/unlock/lockstore",
            UNLOCK_BODY,
            unlock.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha1/unlock/lock%73tore",
            UNLOCK_BODY,
            unlock.clone(),
        ),
        (
            Method::Get,
            "/v1.0-alpha1/lock/lockstore",
            LOCK_BODY,
            no_route.clone(),
        ),
        (
            Method::Other,
            "/v1.0-alpha1/unlock/lockstore",
            UNLOCK_BODY,
            no_route.clone(),
        ),
        (Method::Post, "/v1.0/healthz", "", no_route.clone()),
        (Method::Post, "/v1.0/metadata", "", no_route.clone()),
        (
            Method::Get,
            "/v1.0/invoke/app/method/x",
            "",
            no_route.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha/lock/lockstore",
            LOCK_BODY,
            no_route.clone(),
        ),
        (
            Method::Post,
            "/v1.0/lock/lockstore",
            LOCK_BODY,
            no_route.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha1/lock/",
            LOCK_BODY,
            no_route.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha1/lock",
            LOCK_BODY,
            no_route.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha1/lock/a%2Fb/c",
            LOCK_BODY,
            no_route.clone(),
        ),
        (Method::Get, "/", "", no_route.clone()),
        (
            Method::Post,
            "/v1.0-alpha1/lock/%zz",
            LOCK_BODY,
            bad_target.clone(),
        ),
        (Method::Get, "/v1.0/healthz%", "", bad_target.clone()),
        (Method::Get, "v1.0/healthz", "", bad_target.clone()),
    ];
    let mut api = api();
    for (method, target, body, expected) in cases {
        assert_eq!(
            answer(&mut api, method, target, None, body),
            expected,
            "{method:?} {target}"
        );
    }
}

#[test]
fn store_names_are_decoded_and_matched_exactly() {
    // Protects store resolution: percent- and plus-decoding of the URL's name, exact
    // case-sensitive byte comparison, ids by configuration order, and the decoded name in
    // messages.
    let mut api = api_with(
        &[
            "lockstore",
            "my store",
            "a/b",
            "St\u{e9}",
            "a+b",
            "lockstore",
        ],
        None,
        64,
    );
    let cases = [
        (
            "/v1.0-alpha1/lock/lockstore",
            locked("TryLock { expiry_s: 60 }", 0, "order-1", "worker-7"),
        ),
        (
            "/v1.0-alpha1/lock/my%20store",
            locked("TryLock { expiry_s: 60 }", 1, "order-1", "worker-7"),
        ),
        (
            "/v1.0-alpha1/lock/my+store",
            locked("TryLock { expiry_s: 60 }", 1, "order-1", "worker-7"),
        ),
        (
            "/v1.0-alpha1/lock/a%2Fb",
            locked("TryLock { expiry_s: 60 }", 2, "order-1", "worker-7"),
        ),
        (
            "/v1.0-alpha1/lock/St%C3%A9",
            locked("TryLock { expiry_s: 60 }", 3, "order-1", "worker-7"),
        ),
        (
            "/v1.0-alpha1/lock/a%2Bb",
            locked("TryLock { expiry_s: 60 }", 4, "order-1", "worker-7"),
        ),
        (
            "/v1.0-alpha1/lock/LockStore",
            error(
                400,
                "ERR_LOCK_STORE_NOT_FOUND",
                "lock store LockStore not found",
            ),
        ),
        (
            "/v1.0-alpha1/lock/a+b",
            error(400, "ERR_LOCK_STORE_NOT_FOUND", "lock store a b not found"),
        ),
        (
            "/v1.0-alpha1/lock/%3Cx%3E%22%FF",
            error(
                400,
                "ERR_LOCK_STORE_NOT_FOUND",
                r#"lock store \u003cx\u003e\"\ufffd not found"#,
            ),
        ),
    ];
    for (target, expected) in cases {
        assert_eq!(
            answer(&mut api, Method::Post, target, None, LOCK_BODY),
            expected,
            "{target}"
        );
    }
}

#[test]
fn validation_runs_in_daprd_order() {
    // Protects the order of the validation steps and their messages: each row breaks several
    // rules at once and must report the earliest.
    let lock = |store: &str| format!("/v1.0-alpha1/lock/{store}");
    let unlock = |store: &str| format!("/v1.0-alpha1/unlock/{store}");
    let long = "x".repeat(9);
    let cases: Vec<(Vec<&str>, String, String, Seen)> = vec![
        // A malformed body beats every validation step.
        (
            vec![],
            lock("nope"),
            r#"{"resourceId":1}"#.into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "failed deserializing HTTP body: invalid value for string field resourceId",
            ),
        ),
        (
            vec!["s"],
            lock("s"),
            "[]".into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "failed deserializing HTTP body: the body is not a JSON object",
            ),
        ),
        (
            vec!["s"],
            lock("s"),
            " ".into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "failed deserializing HTTP body: syntax error: unexpected end of input",
            ),
        ),
        // 1. Expiry first, even with no store configured and empty ids.
        (
            vec![],
            lock("nope"),
            r#"{"resourceId":"","expiryInSeconds":0}"#.into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "ExpiryInSeconds is not positive in lock store nope",
            ),
        ),
        (
            vec!["s"],
            lock("s"),
            "".into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "ExpiryInSeconds is not positive in lock store s",
            ),
        ),
        (
            vec!["s"],
            lock("s"),
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":-1}"#.into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "ExpiryInSeconds is not positive in lock store s",
            ),
        ),
        (
            vec!["s"],
            lock("s"),
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":null}"#.into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "ExpiryInSeconds is not positive in lock store s",
            ),
        ),
        // 2. No store configured at all.
        (
            vec![],
            lock("nope"),
            r#"{"expiryInSeconds":5}"#.into(),
            error(
                500,
                "ERR_LOCK_STORE_NOT_CONFIGURED",
                "lock store is not configured",
            ),
        ),
        (
            vec![],
            unlock("nope"),
            "".into(),
            error(
                500,
                "ERR_LOCK_STORE_NOT_CONFIGURED",
                "lock store is not configured",
            ),
        ),
        // 3. Empty resource, before the store is looked up.
        (
            vec!["s"],
            lock("nope"),
            r#"{"lockOwner":"","expiryInSeconds":5}"#.into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "ResourceId is empty in lock store nope",
            ),
        ),
        (
            vec!["s"],
            unlock("s"),
            "".into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "ResourceId is empty in lock store s",
            ),
        ),
        // 4. Empty owner.
        (
            vec!["s"],
            lock("nope"),
            format!(r#"{{"resourceId":"{long}","expiryInSeconds":5}}"#),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "LockOwner is empty in lock store nope",
            ),
        ),
        (
            vec!["s"],
            unlock("s"),
            r#"{"resource_id":"r","lock_owner":null}"#.into(),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "LockOwner is empty in lock store s",
            ),
        ),
        // Our length cap, after step 4 and before the store lookup; resource before owner.
        (
            vec!["s"],
            lock("nope"),
            format!(r#"{{"resourceId":"{long}","lockOwner":"{long}","expiryInSeconds":5}}"#),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "ResourceId is longer than 8 bytes in lock store nope",
            ),
        ),
        (
            vec!["s"],
            unlock("nope"),
            format!(r#"{{"resourceId":"r||","lockOwner":"{long}"}}"#),
            error(
                400,
                "ERR_MALFORMED_REQUEST",
                "LockOwner is longer than 8 bytes in lock store nope",
            ),
        ),
        // 5. Unknown store, before the `||` check.
        (
            vec!["s"],
            lock("nope"),
            r#"{"resourceId":"a||b","lockOwner":"o","expiryInSeconds":5}"#.into(),
            error(400, "ERR_LOCK_STORE_NOT_FOUND", "lock store nope not found"),
        ),
        (
            vec!["s"],
            unlock("S"),
            UNLOCK_BODY.into(),
            error(400, "ERR_LOCK_STORE_NOT_FOUND", "lock store S not found"),
        ),
        // 6. `||` in the resource id.
        (
            vec!["s"],
            lock("s"),
            r#"{"resourceId":"a||b","lockOwner":"o","expiryInSeconds":5}"#.into(),
            error(
                500,
                "ERR_TRY_LOCK",
                "failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'",
            ),
        ),
        (
            vec!["s"],
            unlock("s"),
            r#"{"resourceId":"||","lockOwner":"o"}"#.into(),
            error(
                500,
                "ERR_UNLOCK",
                "failed to release lock: input key/keyPrefix '||' can't contain '||'",
            ),
        ),
        // The URL's store wins over the body's.
        (
            vec!["s"],
            lock("s"),
            r#"{"storeName":"other","resourceId":"r","lockOwner":"o","expiryInSeconds":"5"}"#
                .into(),
            locked("TryLock { expiry_s: 5 }", 0, "r", "o"),
        ),
        // Exactly at the cap is fine, and a single `|` is.
        (
            vec!["s"],
            lock("s"),
            r#"{"resourceId":"12345678","lockOwner":"|2345678","expiryInSeconds":2147483647}"#
                .into(),
            locked(
                "TryLock { expiry_s: 2147483647 }",
                0,
                "12345678",
                "|2345678",
            ),
        ),
        (
            vec!["s"],
            unlock("s"),
            r#"{"resourceId":"r|x","lockOwner":"o","expiryInSeconds":-5}"#.into(),
            locked("Unlock", 0, "r|x", "o"),
        ),
    ];
    for (stores, target, body, expected) in cases {
        let mut api = api_with(&stores, None, 8);
        assert_eq!(
            answer(&mut api, Method::Post, &target, None, &body),
            expected,
            "{stores:?} {target} {body}"
        );
    }
}

#[test]
fn api_token_is_required_except_for_health() {
    // Protects the token rule: checked before routing (so a 404 path needs it too), after the
    // target parse, with the two GET health paths exempt; the token never appears in an
    // answer.
    let invalid = (
        401,
        "text/plain; charset=utf-8",
        "invalid api token\n".to_owned(),
        false,
    );
    let lock_ok = locked("TryLock { expiry_s: 60 }", 0, "order-1", "worker-7");
    let health = (204, "", String::new(), false);
    let no_route = (404, "application/json", NO_ROUTE_BODY.to_owned(), false);
    let lock = "/v1.0-alpha1/lock/lockstore";
    let cases = [
        (Method::Post, lock, None, invalid.clone()),
        (Method::Post, lock, Some("wrong!"), invalid.clone()),
        (Method::Post, lock, Some("secre"), invalid.clone()),
        (Method::Post, lock, Some("secret "), invalid.clone()),
        (Method::Post, lock, Some(""), invalid.clone()),
        (Method::Post, lock, Some("SECRET"), invalid.clone()),
        (Method::Post, lock, Some("secret"), lock_ok.clone()),
        (
            Method::Post,
            "/v1.0-alpha1//lock/lockstore/",
            None,
            invalid.clone(),
        ),
        (
            Method::Post,
            "/v1.0-alpha1//lock/lockstore/",
            Some("secret"),
            lock_ok.clone(),
        ),
        (Method::Get, "/v1.0/healthz", None, health.clone()),
        (
            Method::Get,
            "/v1.0/healthz/outbound",
            Some("wrong!"),
            health.clone(),
        ),
        (Method::Get, "/v1.0/healthz/", None, health.clone()),
        (Method::Get, "/v1.0//healthz", None, invalid.clone()),
        (
            Method::Get,
            "/v1.0//healthz",
            Some("secret"),
            health.clone(),
        ),
        (Method::Post, "/v1.0/healthz", None, invalid.clone()),
        (Method::Get, "/v1.0/metadata", None, invalid.clone()),
        (Method::Get, "/nope", None, invalid.clone()),
        (Method::Get, "/nope", Some("secret"), no_route.clone()),
        (
            Method::Get,
            "/v1.0/%zz",
            None,
            (
                400,
                "text/plain; charset=utf-8",
                "400 Bad Request".to_owned(),
                true,
            ),
        ),
    ];
    let mut api = api_with(&["lockstore"], Some("secret"), 64);
    for (method, target, token, expected) in cases {
        let got = answer(&mut api, method, target, token, LOCK_BODY);
        assert!(!got.2.contains("secret"), "{method:?} {target}");
        assert_eq!(got, expected, "{method:?} {target} {token:?}");
    }
    // An empty configured token means no authentication, as in daprd.
    let mut open = api_with(&["lockstore"], Some(""), 64);
    assert_eq!(
        answer(&mut open, Method::Post, lock, None, LOCK_BODY),
        lock_ok
    );
}

#[test]
fn token_comparison_checks_every_byte() {
    // Protects the comparison itself: equal only when every byte and the length match.
    assert!(token_matches(b"secret", Some(b"secret")));
    assert!(!token_matches(b"secret", None));
    assert!(!token_matches(b"secret", Some(b"secreT")));
    assert!(!token_matches(b"secret", Some(b"Secret")));
    assert!(!token_matches(b"secret", Some(b"secret\0")));
    assert!(!token_matches(b"secret", Some(b"")));
}

#[test]
fn metadata_lists_the_stores() {
    // Protects the metadata answer the JS SDK waits for: a non-empty JSON object with daprd's
    // keys, one component per store in order, and Go escaping of every string.
    let mut api = api_with(&["lockstore", "<b&>\"q\"\u{2028}"], None, 64);
    let (_, _, raw, _) = answer(&mut api, Method::Get, "/v1.0/metadata", None, "");
    assert!(
        raw.starts_with(r#"{"id":"app","runtimeVersion":""#),
        "{raw}"
    );
    assert!(
        raw.contains(r#""name":"\u003cb\u0026\u003e\"q\"\u2028""#),
        "{raw}"
    );
    let metadata = metadata_of(&mut api);
    assert_eq!(metadata["id"], "app");
    assert_eq!(metadata["runtimeVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        metadata["extended"],
        serde_json::json!({"daprRuntimeVersion": env!("CARGO_PKG_VERSION")})
    );
    assert_eq!(
        metadata["components"],
        serde_json::json!([
            {"name": "lockstore", "type": "lock.in-memory", "version": "v1"},
            {"name": "<b&>\"q\"\u{2028}", "type": "lock.in-memory", "version": "v1"},
        ])
    );
    let mut empty = api_with(&[], None, 64);
    assert_eq!(metadata_of(&mut empty)["components"], serde_json::json!([]));
    assert_eq!(api.stores(), ["lockstore", "<b&>\"q\"\u{2028}"]);
}

#[test]
fn common_answers_do_not_allocate() {
    // Protects the hot-path rule: health, metadata and every shard answer except the error
    // are static bytes.
    let mut api = api();
    for target in ["/v1.0/healthz", "/v1.0/healthz/outbound", "/v1.0/metadata"] {
        match api.handle(Method::Get, target.as_bytes(), None, b"") {
            Outcome::Respond(Response {
                body: ResponseBody::Static(_),
                ..
            }) => {}
            other => panic!("{target}: {other:?}"),
        }
    }
    let answers = [
        Answer::TryLock(Ok(true)),
        Answer::TryLock(Ok(false)),
        Answer::Unlock(UnlockStatus::Success),
        Answer::Unlock(UnlockStatus::LockDoesNotExist),
        Answer::Unlock(UnlockStatus::LockBelongsToOthers),
        Answer::Unlock(UnlockStatus::InternalError),
    ];
    for answer in answers {
        assert!(
            matches!(answer_response(answer).body, ResponseBody::Static(_)),
            "{answer:?}"
        );
    }
}

#[test]
fn shard_answers_encode_exactly() {
    // Protects the success bytes of the contract and the table-full error.
    let cases = [
        (Answer::TryLock(Ok(true)), 200, r#"{"success":true}"#),
        (Answer::TryLock(Ok(false)), 200, r#"{"success":false}"#),
        (
            Answer::Unlock(UnlockStatus::Success),
            200,
            r#"{"status":0}"#,
        ),
        (
            Answer::Unlock(UnlockStatus::LockDoesNotExist),
            200,
            r#"{"status":1}"#,
        ),
        (
            Answer::Unlock(UnlockStatus::LockBelongsToOthers),
            200,
            r#"{"status":2}"#,
        ),
        (
            Answer::Unlock(UnlockStatus::InternalError),
            200,
            r#"{"status":3}"#,
        ),
        (
            Answer::TryLock(Err(LeaseError::TableFull { max_leases: 123 })),
            500,
            r#"{"errorCode":"ERR_TRY_LOCK","message":"failed to try acquiring lock: lease table is full (123 leases)"}"#,
        ),
    ];
    for (answer, status, body) in cases {
        let response = answer_response(answer);
        assert_eq!(
            (
                response.status,
                response.content_type,
                response.body(),
                response.close
            ),
            (status, "application/json", body.as_bytes(), false),
            "{answer:?}"
        );
    }
}

#[test]
fn lock_ops_carry_decoded_ids() {
    // Protects what reaches the shards: unescaped ids, the chosen store, and buffers that do
    // not leak between requests.
    let mut api = api_with(&["a", "b"], None, 64);
    let body = r#"{"resourceId":"r\u00e9\"","lockOwner":"o\/w","expiryInSeconds":"1e1"}"#;
    assert_eq!(
        api.handle(Method::Post, b"/v1.0-alpha1/lock/b", None, body.as_bytes()),
        Outcome::Lock(LockOp {
            kind: OpKind::TryLock { expiry_s: 10 },
            store: StoreId(1),
            resource: "r\u{e9}\"".as_bytes(),
            owner: b"o/w",
        })
    );
    assert!(matches!(
        api.handle(
            Method::Post,
            b"/v1.0-alpha1/unlock/a",
            None,
            br#"{"resourceId":"x"}"#
        ),
        Outcome::Respond(_)
    ));
    assert_eq!(
        api.handle(
            Method::Post,
            b"/v1.0-alpha1/unlock/a",
            None,
            br#"{"lockOwner":"o","resourceId":"x"}"#
        ),
        Outcome::Lock(LockOp {
            kind: OpKind::Unlock,
            store: StoreId(0),
            resource: b"x",
            owner: b"o",
        })
    );
}

mod differential {
    //! The body decoder against a reference written on serde_json, which implements the
    //! protojson rules in the simplest way that agrees with Go on the bodies used here.

    use std::collections::HashSet;
    use std::fmt;

    use proptest::prelude::*;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

    use super::super::body::BodyDecoder;
    use super::super::Operation;

    /// The entries of a JSON object, in order, duplicates kept.
    struct Entries(Vec<(String, serde_json::Value)>);

    impl<'de> Deserialize<'de> for Entries {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct EntriesVisitor;
            impl<'de> Visitor<'de> for EntriesVisitor {
                type Value = Entries;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                    let mut entries = Vec::new();
                    while let Some(entry) = map.next_entry()? {
                        entries.push(entry);
                    }
                    Ok(Entries(entries))
                }
            }
            deserializer.deserialize_map(EntriesVisitor)
        }
    }

    fn reference_int32(value: &serde_json::Value) -> Option<i32> {
        let number = match value {
            serde_json::Value::Number(number) => number.clone(),
            serde_json::Value::String(text) if text.trim() == text => {
                serde_json::from_str(text).ok()?
            }
            _ => return None,
        };
        if let Some(n) = number.as_i64() {
            return i32::try_from(n).ok();
        }
        if number.is_u64() {
            return None;
        }
        let f = number.as_f64()?;
        (f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX))
            .then_some(f as i32)
    }

    fn reference(op: Operation, body: &[u8]) -> Option<(String, String, i32)> {
        let mut fields = (String::new(), String::new(), 0);
        if body.is_empty() {
            return Some(fields);
        }
        let Entries(entries) = serde_json::from_slice(body).ok()?;
        let mut seen = HashSet::new();
        for (key, value) in entries {
            let field = match key.as_str() {
                "resourceId" | "resource_id" => "resource",
                "lockOwner" | "lock_owner" => "owner",
                "storeName" | "store_name" => "store",
                "expiryInSeconds" | "expiry_in_seconds" if op == Operation::TryLock => "expiry",
                _ => continue,
            };
            if !seen.insert(field) {
                return None;
            }
            if value.is_null() {
                continue;
            }
            match field {
                "resource" => fields.0 = value.as_str()?.to_owned(),
                "owner" => fields.1 = value.as_str()?.to_owned(),
                "store" => {
                    value.as_str()?;
                }
                _ => fields.2 = reference_int32(&value)?,
            }
        }
        Some(fields)
    }

    fn ours(
        decoder: &mut BodyDecoder,
        op: Operation,
        body: &[u8],
    ) -> Option<(String, String, i32)> {
        let fields = decoder.decode(op, body).ok()?;
        Some((
            String::from_utf8(fields.resource.to_vec()).ok()?,
            String::from_utf8(fields.owner.to_vec()).ok()?,
            fields.expiry_s,
        ))
    }

    fn check(decoder: &mut BodyDecoder, body: &[u8]) {
        for op in [Operation::TryLock, Operation::Unlock] {
            assert_eq!(
                ours(decoder, op, body),
                reference(op, body),
                "{op:?} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    const TRICKY_BODIES: &[&str] = &[
        "",
        " ",
        "{}",
        "[]",
        "null",
        "true",
        "0",
        "\"x\"",
        "{",
        "}",
        "{}}",
        "{} {}",
        "{}x",
        "{}\n",
        "\n{}\t",
        "{,}",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":1,}"#,
        r#"{"a":1 "b":2}"#,
        r#"{a:1}"#,
        r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":10}"#,
        r#"{"resource_id":"r","lock_owner":"o","expiry_in_seconds":10,"store_name":"s"}"#,
        r#"{"resourceId":"r","resourceId":"r"}"#,
        r#"{"resourceId":"r","resource_id":"r"}"#,
        r#"{"resourceId":null,"resource_id":"r"}"#,
        r#"{"lockOwner":"o","lock_owner":null}"#,
        r#"{"storeName":null,"store_name":null}"#,
        r#"{"expiryInSeconds":1,"expiry_in_seconds":2}"#,
        r#"{"expiryInSeconds":null,"expiry_in_seconds":null}"#,
        r#"{"resourceId":1}"#,
        r#"{"resourceId":true}"#,
        r#"{"resourceId":[]}"#,
        r#"{"resourceId":{}}"#,
        r#"{"lockOwner":-1.5}"#,
        r#"{"storeName":0}"#,
        r#"{"storeName":false}"#,
        r#"{"expiryInSeconds":10}"#,
        r#"{"expiryInSeconds":"10"}"#,
        r#"{"expiryInSeconds":10.0}"#,
        r#"{"expiryInSeconds":1e1}"#,
        r#"{"expiryInSeconds":1E+1}"#,
        r#"{"expiryInSeconds":"1e1"}"#,
        r#"{"expiryInSeconds":100e-1}"#,
        r#"{"expiryInSeconds":10.5}"#,
        r#"{"expiryInSeconds":"10.5"}"#,
        r#"{"expiryInSeconds":" 10"}"#,
        r#"{"expiryInSeconds":"10 "}"#,
        r#"{"expiryInSeconds":"abc"}"#,
        r#"{"expiryInSeconds":""}"#,
        r#"{"expiryInSeconds":true}"#,
        r#"{"expiryInSeconds":[]}"#,
        r#"{"expiryInSeconds":{}}"#,
        r#"{"expiryInSeconds":-7}"#,
        r#"{"expiryInSeconds":"-7"}"#,
        r#"{"expiryInSeconds":0}"#,
        r#"{"expiryInSeconds":-0}"#,
        r#"{"expiryInSeconds":-0.0}"#,
        r#"{"expiryInSeconds":2147483647}"#,
        r#"{"expiryInSeconds":2147483648}"#,
        r#"{"expiryInSeconds":-2147483648}"#,
        r#"{"expiryInSeconds":-2147483649}"#,
        r#"{"expiryInSeconds":4294967306}"#,
        r#"{"expiryInSeconds":18446744073709551616}"#,
        r#"{"expiryInSeconds":99999999999999999999}"#,
        r#"{"expiryInSeconds":1e-1}"#,
        r#"{"expiryInSeconds":01}"#,
        r#"{"expiryInSeconds":+1}"#,
        r#"{"expiryInSeconds":.5}"#,
        r#"{"expiryInSeconds":1.}"#,
        r#"{"expiryInSeconds":0x10}"#,
        r#"{"expiryInSeconds":NaN}"#,
        r#"{"expiryInSeconds":"NaN"}"#,
        r#"{"ResourceId":"x","RESOURCEID":1,"resourceid":null}"#,
        r#"{"resource\u0049d":"escaped"}"#,
        r#"{"":"","x":{"resourceId":1},"y":[{"lockOwner":[]}]}"#,
        r#"{"resourceId":"\u0000\u001f\"\\\/\b\f\n\r\t"}"#,
        r#"{"resourceId":"\ud83d\ude00"}"#,
        r#"{"resourceId":"\ud83d"}"#,
        r#"{"resourceId":"\ude00"}"#,
        r#"{"resourceId":"\ud83d\u0041"}"#,
        r#"{"resourceId":"\u00"}"#,
        r#"{"resourceId":"\q"}"#,
        "{\"resourceId\":\"tab\there\"}",
        "{\"resourceId\":\"\u{7f}\u{e9}\u{2028}\"}",
        "{\"resourceId\":\"caf\u{e9}\",\"lockOwner\":\"\u{1f600}\"}",
        r#"{"big":123456789012345678901234567890,"resourceId":"r"}"#,
        r#"{"neg":-99999999999999999999,"lockOwner":"o"}"#,
        r#"{"f":1.7976931348623157e308,"expiryInSeconds":3}"#,
        r#"{"deep":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}"#,
        r#"{"a":tru}"#,
        r#"{"a":nul}"#,
        r#"{"a":truex}"#,
        r#"{"a":"unterminated}"#,
        "{\"a\":1}\u{0}",
    ];

    #[test]
    fn decoder_agrees_with_the_reference_on_tricky_bodies() {
        // Protects the decoder's accepted set and field values against an independent
        // implementation of the same rules, on the corner cases of JSON and of protojson.
        let mut decoder = BodyDecoder::default();
        for body in TRICKY_BODIES {
            check(&mut decoder, body.as_bytes());
        }
        check(&mut decoder, b"{\"resourceId\":\"\xff\"}");
        check(&mut decoder, b"{\"resourceId\":\"\xc3\"}");
        check(&mut decoder, b"\xff");
    }

    const KEYS: &[&str] = &[
        "resourceId",
        "resource_id",
        "lockOwner",
        "lock_owner",
        "storeName",
        "store_name",
        "expiryInSeconds",
        "expiry_in_seconds",
        "ResourceId",
        "other",
        "",
    ];

    const VALUES: &[&str] = &[
        r#""r""#,
        r#""""#,
        r#""a\"b\\c\u00e9\n""#,
        "\"\u{e9}t\u{e9}\"",
        r#""\ud83d\ude00""#,
        "null",
        "true",
        "false",
        "0",
        "-0",
        "10",
        "-3",
        "10.0",
        "1e1",
        "1E2",
        "10.5",
        "2147483647",
        "2147483648",
        "-2147483648",
        "99999999999999999999",
        r#""10""#,
        r#""1e1""#,
        r#"" 10""#,
        r#""-4""#,
        r#""abc""#,
        "[]",
        "[1,\"x\",null]",
        "{}",
        r#"{"resourceId":"nested","expiryInSeconds":"bad"}"#,
    ];

    fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
        let entry = (prop::sample::select(KEYS), prop::sample::select(VALUES));
        let tail = prop::sample::select(&["", "", " ", "\n", "x", "}", ",", "{}"][..]);
        (
            prop::collection::vec(entry, 0..6),
            tail,
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(entries, tail, cut, truncate)| {
                let mut body = String::from("{");
                for (at, (key, value)) in entries.iter().enumerate() {
                    if at > 0 {
                        body.push(',');
                    }
                    body.push_str(&format!("{key:?}:{value}"));
                }
                body.push('}');
                body.push_str(tail);
                let mut bytes = body.into_bytes();
                if truncate {
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn decoder_agrees_with_the_reference_on_generated_bodies(body in body_strategy()) {
            // Protects the same agreement on combinations the fixed list does not spell out:
            // duplicates across names, nulls, mixed types, truncation and trailing bytes.
            let mut decoder = BodyDecoder::default();
            check(&mut decoder, &body);
        }
    }
}

mod no_panic {
    use proptest::prelude::*;

    use super::super::fuzzing;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn handle_never_panics_and_keeps_its_promises(data in prop::collection::vec(any::<u8>(), 0..160)) {
            // Protects "bad input is an answer, never a panic" on arbitrary bytes, and the
            // guarantees of every lock operation that comes out.
            fuzzing::handle(&data);
            fuzzing::decode_body(&data);
        }

        #[test]
        fn handle_never_panics_on_near_valid_requests(
            selector in any::<u8>(),
            target in "(/v1\\.0(-alpha1)?)?(/(lock|unlock|healthz|metadata|s|lockstore|%2[fF]|%[0-9a-fA-F]{0,2}|\\+|\\.|\\.\\.|)){0,4}(\\?.*)?",
            body in "\\{(\"(resourceId|lockOwner|expiryInSeconds|x)\":(\"[a-z|]{0,3}\"|-?[0-9]{1,3}(\\.[0-9])?|null|\\[\\]),?){0,4}\\}?",
        ) {
            // Protects the same promises on inputs close enough to real requests to reach the
            // validation and lock paths.
            let mut data = vec![(selector % 85) * 3 + 1];
            data.extend_from_slice(target.as_bytes());
            data.push(b'\n');
            data.extend_from_slice(b"secret\n");
            data.extend_from_slice(body.as_bytes());
            fuzzing::handle(&data);
        }
    }
}

// The word-at-a-time separator check answers as the pairwise scan does, including for pipes
// that straddle two words, bytes one above `|`, and bytes with the top bit set.
#[test]
fn key_separator_check_matches_the_pairwise_scan() {
    use proptest::prelude::*;
    let reference = |bytes: &[u8]| bytes.windows(2).any(|pair| pair == b"||");
    for len in 0..20 {
        for first in 0..len {
            let mut bytes = vec![b'a'; len];
            bytes[first] = b'|';
            assert!(!has_key_separator(&bytes), "one pipe at {first} of {len}");
            if first + 1 < len {
                bytes[first + 1] = b'|';
                assert!(has_key_separator(&bytes), "pipes at {first} of {len}");
                bytes[first + 1] = b'}';
                assert!(
                    !has_key_separator(&bytes),
                    "pipe then 0x7d at {first} of {len}"
                );
            }
        }
    }
    let byte = prop_oneof![
        Just(b'|'),
        Just(b'}'),
        Just(0xfc_u8),
        Just(0x7c_u8 ^ 0x80),
        any::<u8>()
    ];
    let config = ProptestConfig {
        cases: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(bytes in proptest::collection::vec(byte, 0..40))| {
        prop_assert_eq!(has_key_separator(&bytes), reference(&bytes));
    });
}

// With one store, its exact lock and unlock targets skip the route's scan and the store
// search (`OnlyStore`). Every request must be answered as the general path answers it: for
// store names the fast route takes and some it does not, exact targets and near misses,
// both methods, bodies valid and not, with and without the right token.
#[test]
fn the_only_stores_targets_are_answered_as_by_the_general_path() {
    let configs: &[&[&str]] = &[
        &["lockstore"],
        &["s"],
        &["a.b"],
        &["lockstore", "lockstore"],
        &["."],
        &[".."],
        &["a b"],
        &["a%2Fb"],
        &["x", "y"],
        &[],
    ];
    let bodies = [
        LOCK_BODY,
        UNLOCK_BODY,
        r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":0}"#,
        r#"{"resourceId":"a||b","lockOwner":"o","expiryInSeconds":5}"#,
        r#"{"resourceId":"","lockOwner":"o","expiryInSeconds":5}"#,
        "{}",
        "[]",
    ];
    let mut checked_fast = 0;
    for &stores in configs {
        let mut fast = api_with(stores, Some("t"), 1024);
        let mut general = api_with(stores, Some("t"), 1024);
        general.only_store = None;
        let plain = matches!(
            stores,
            ["lockstore"] | ["s"] | ["a.b"] | ["lockstore", "lockstore"]
        );
        assert_eq!(fast.only_store.is_some(), plain, "{stores:?}");
        let mut targets = Vec::new();
        for name in stores.iter().copied().chain(["other"]) {
            for verb in ["lock", "unlock", "LOCK"] {
                targets.push(format!("/v1.0-alpha1/{verb}/{name}"));
                targets.push(format!("/v1.0-alpha1/{verb}/{name}?q=1"));
                targets.push(format!("/v1.0-alpha1/{verb}/{name}x"));
                targets.push(format!("/v1.0-alpha1/{verb}/{name}/"));
            }
        }
        targets.sort();
        targets.dedup();
        for target in &targets {
            for method in [Method::Post, Method::Get] {
                for token in [None, Some("t"), Some("u")] {
                    for body in bodies {
                        let want = answer(&mut general, method, target, token, body);
                        let got = answer(&mut fast, method, target, token, body);
                        assert_eq!(got, want, "{stores:?} {method:?} {target} {token:?} {body}");
                        if plain && method == Method::Post && token == Some("t") {
                            let only = fast.only_store.as_ref().expect("checked above");
                            if only.op_of(target.as_bytes()).is_some() {
                                checked_fast += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    // Four configurations, two exact targets each, every body.
    assert_eq!(checked_fast, 4 * 2 * bodies.len());
}
