//! Every row of the wire contract, over real TCP against a real server: on both io drivers
//! with the in-memory store, over TCP and over a Unix domain socket, and with both stores on a
//! real Redis (`lock.redis`) and on a real etcd (`lock.etcd`), from component files.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/redis.rs"]
mod redis;

use common::*;

const LOCK: &str = "/v1.0-alpha1/lock/lockstore";
const UNLOCK: &str = "/v1.0-alpha1/unlock/lockstore";

/// Runs `f` against each configuration, with the component type its stores have.
fn each_driver(f: impl Fn(&mut Client, &str)) {
    for driver in DRIVERS {
        let args = [
            "--io-driver",
            driver,
            "--store",
            "lockstore",
            "--store",
            "other",
        ];
        let server = start(&args);
        let mut c = Client::connect(server.local_addr());
        f(&mut c, "lock.in-memory");
        // The same over the Unix domain socket of --unix-domain-socket.
        let (server, socket) = start_unix(&args);
        let mut c = Client::connect_unix(&socket);
        f(&mut c, "lock.in-memory");
        drop(server);
    }
    // The same stores on Redis, keyed by store name so that they stay two namespaces.
    let redis = redis::TestRedis::start();
    let host = format!("127.0.0.1:{}", redis.port);
    let components = redis::Components::new()
        .redis("lockstore", &host, &[("keyPrefix", "name")])
        .redis("other", &host, &[("keyPrefix", "name")]);
    let server = start(&["--resources-path", components.arg()]);
    let mut c = Client::connect(server.local_addr());
    f(&mut c, "lock.redis");
    // The same stores on etcd.
    let etcd = etcd::TestEtcd::start();
    let endpoints = etcd.endpoints();
    let components = redis::Components::new()
        .file(
            "lockstore.yaml",
            &etcd::component("lockstore", &endpoints, &[("keyPrefix", "name")]),
        )
        .file(
            "other.yaml",
            &etcd::component("other", &endpoints, &[("keyPrefix", "name")]),
        );
    let server = start(&["--resources-path", components.arg()]);
    let mut c = Client::connect(server.local_addr());
    f(&mut c, "lock.etcd");
}

// Lock semantics: exclusive, not re-entrant, unlock only by the holder, statuses 0/1/2.
#[test]
fn lock_unlock_semantics() {
    each_driver(|c, _| {
        assert_json(&c.lock("lockstore", "r1", "alice", 60), 200, LOCKED);
        assert_json(&c.lock("lockstore", "r1", "alice", 60), 200, NOT_LOCKED);
        assert_json(&c.lock("lockstore", "r1", "bob", 60), 200, NOT_LOCKED);
        assert_json(&c.unlock("lockstore", "r1", "bob"), 200, r#"{"status":2}"#);
        assert_json(
            &c.unlock("lockstore", "r1", "alice"),
            200,
            r#"{"status":0}"#,
        );
        assert_json(
            &c.unlock("lockstore", "r1", "alice"),
            200,
            r#"{"status":1}"#,
        );
        assert_json(
            &c.unlock("lockstore", "never", "alice"),
            200,
            r#"{"status":1}"#,
        );
        assert_json(&c.lock("lockstore", "r1", "bob", 60), 200, LOCKED);
        // Content-Length is exact and there is no Connection header on HTTP/1.1 keep-alive.
        let r = c.lock("lockstore", "r1", "carol", 60);
        assert_eq!(r.header("content-length"), Some("17"));
        assert_eq!(r.header("connection"), None);
    });
}

// Stores are independent namespaces; store names match exactly.
#[test]
fn stores_are_namespaces() {
    each_driver(|c, _| {
        assert_json(&c.lock("lockstore", "shared", "a", 60), 200, LOCKED);
        assert_json(&c.lock("other", "shared", "b", 60), 200, LOCKED);
        assert_json(&c.unlock("other", "shared", "a"), 200, r#"{"status":2}"#);
        assert_json(
            &c.lock("LockStore", "shared", "a", 60),
            400,
            &error_body("ERR_LOCK_STORE_NOT_FOUND", "lock store LockStore not found"),
        );
        assert_json(
            &c.unlock("nope", "x", "a"),
            400,
            &error_body("ERR_LOCK_STORE_NOT_FOUND", "lock store nope not found"),
        );
    });
}

// Validation runs in daprd's order, with its messages.
#[test]
fn validation_order_and_messages() {
    each_driver(|c, _| {
        let malformed = |m: &str| error_body("ERR_MALFORMED_REQUEST", m);
        // 1. expiry first, even when everything else is wrong too (and the store is unknown).
        assert_json(
            &c.post(
                "/v1.0-alpha1/lock/nope",
                r#"{"resourceId":"","lockOwner":""}"#,
            ),
            400,
            &malformed("ExpiryInSeconds is not positive in lock store nope"),
        );
        assert_json(
            &c.post(
                LOCK,
                r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":-3}"#,
            ),
            400,
            &malformed("ExpiryInSeconds is not positive in lock store lockstore"),
        );
        // 3. then the resource id, 4. then the owner, 5. then the store.
        assert_json(
            &c.post(
                "/v1.0-alpha1/lock/nope",
                r#"{"lockOwner":"","expiryInSeconds":5}"#,
            ),
            400,
            &malformed("ResourceId is empty in lock store nope"),
        );
        assert_json(
            &c.post(
                "/v1.0-alpha1/lock/nope",
                r#"{"resourceId":"r","expiryInSeconds":5}"#,
            ),
            400,
            &malformed("LockOwner is empty in lock store nope"),
        );
        assert_json(
            &c.post("/v1.0-alpha1/unlock/nope", r#"{"resourceId":"r"}"#),
            400,
            &malformed("LockOwner is empty in lock store nope"),
        );
        assert_json(
            &c.post("/v1.0-alpha1/unlock/lockstore", ""),
            400,
            &malformed("ResourceId is empty in lock store lockstore"),
        );
        // 6. `||` in the resource id, with Go's escaping of < > &.
        assert_json(
            &c.lock("lockstore", "a||<b>&", "o", 5),
            500,
            &error_body(
                "ERR_TRY_LOCK",
                r"failed to try acquiring lock: input key/keyPrefix 'a||\u003cb\u003e\u0026' can't contain '||'",
            ),
        );
        assert_json(
            &c.unlock("lockstore", "a||b", "o"),
            500,
            &error_body(
                "ERR_UNLOCK",
                "failed to release lock: input key/keyPrefix 'a||b' can't contain '||'",
            ),
        );
    });
}

// Bodies follow protojson: aliases, null, string numbers; malformed ones get the prefix.
#[test]
fn body_rules() {
    each_driver(|c, _| {
        assert_json(
            &c.post(
                LOCK,
                r#"{"resource_id":"snake","lock_owner":"o","expiry_in_seconds":"10"}"#,
            ),
            200,
            LOCKED,
        );
        assert_json(&c.unlock("lockstore", "snake", "o"), 200, r#"{"status":0}"#);
        for expiry in ["10", "\"10\"", "10.0", "1e1"] {
            let body = format!(
                r#"{{"resourceId":"e","lockOwner":"o","expiryInSeconds":{expiry},"x":[1,{{}}]}}"#
            );
            assert_json(&c.post(LOCK, &body), 200, LOCKED);
            assert_json(&c.unlock("lockstore", "e", "o"), 200, r#"{"status":0}"#);
        }
        for bad in [
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":10.5}"#,
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":" 10"}"#,
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":true}"#,
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":2147483648}"#,
            r#"{"resourceId":1,"lockOwner":"o","expiryInSeconds":10}"#,
            r#"{"resourceId":"r","resource_id":"r","lockOwner":"o","expiryInSeconds":10}"#,
            r#"[]"#,
            r#"null"#,
            r#"{"resourceId":"r""#,
            r#"{} x"#,
            "not json",
        ] {
            let r = c.post(LOCK, bad);
            assert_eq!(r.status, 400, "{bad}");
            assert!(
                r.body_str()
                    .starts_with(r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"failed deserializing HTTP body: "#),
                "{bad}: {}",
                r.body_str()
            );
        }
        // Wrong case is an unknown field, ignored: so the resource id is missing.
        assert_json(
            &c.post(
                LOCK,
                r#"{"ResourceId":"r","lockOwner":"o","expiryInSeconds":5}"#,
            ),
            400,
            &error_body(
                "ERR_MALFORMED_REQUEST",
                "ResourceId is empty in lock store lockstore",
            ),
        );
    });
}

// Unknown routes fall through to daprd's service-invocation 404.
#[test]
fn unknown_routes_are_direct_invoke_404() {
    each_driver(|c, _| {
        let not_found = error_body(
            "ERR_DIRECT_INVOKE",
            "failed getting app id either from the URL path or the header dapr-app-id",
        );
        assert_json(&c.get(LOCK), 404, &not_found);
        assert_json(&c.post("/v1.0-beta1/lock/lockstore", "{}"), 404, &not_found);
        assert_json(&c.post("/v1.0/lock/lockstore", "{}"), 404, &not_found);
        assert_json(&c.post("/v1.0/healthz", ""), 404, &not_found);
        assert_json(&c.get("/"), 404, &not_found);
        c.send(b"DELETE /v1.0-alpha1/lock/lockstore HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_json(&c.read_response(), 404, &not_found);
    });
}

// Health and metadata answers.
#[test]
fn health_and_metadata() {
    each_driver(|c, kind| {
        for path in [
            "/v1.0/healthz",
            "/v1.0/healthz/outbound",
            "/v1.0/healthz?x=1",
        ] {
            let r = c.get(path);
            assert_eq!(r.status, 204, "{path}");
            assert!(r.body.is_empty());
        }
        let r = c.get("/v1.0/metadata");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("metadata is JSON");
        let components = v["components"].as_array().expect("components");
        assert_eq!(components.len(), 2);
        assert_eq!(components[0]["name"], "lockstore");
        assert_eq!(components[0]["type"], kind);
        assert_eq!(components[1]["name"], "other");
        assert!(v["runtimeVersion"].is_string());
    });
}

// Path clean-up and percent-decoding of the store name.
#[test]
fn paths_are_cleaned_and_decoded() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver, "--store", "my store"]);
        let mut c = Client::connect(server.local_addr());
        let body = lock_body("p", "o", 30);
        assert_json(&c.post("/v1.0-alpha1/lock/my%20store/", &body), 200, LOCKED);
        assert_json(
            &c.post("//v1.0-alpha1//lock/my+store?q=1", &body),
            200,
            NOT_LOCKED,
        );
        assert_json(
            &c.post("/v1.0-alpha1/unlock/my%20store", &unlock_body("p", "o")),
            200,
            r#"{"status":0}"#,
        );
        // A bad escape is a plain 400, and the connection closes.
        let r = c.post("/v1.0-alpha1/lock/my%2", &body);
        assert_eq!(r.status, 400);
        assert!(c.is_closed());
    }
}

// The API token: required everywhere but the health checks, compared exactly.
#[test]
fn api_token() {
    for driver in DRIVERS {
        let server = start_env(&["--io-driver", driver], &[("DAPR_API_TOKEN", "s3cret")]);
        let mut c = Client::connect(server.local_addr());
        let body = lock_body("t", "o", 30);
        for request in [
            post(LOCK, &body),
            post(UNLOCK, &unlock_body("t", "o")),
            "GET /v1.0/metadata HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            post(LOCK, &body).replacen("Host:", "dapr-api-token: s3cre\r\nHost:", 1),
            post(LOCK, &body).replacen("Host:", "dapr-api-token: s3cret2\r\nHost:", 1),
        ] {
            c.send(request.as_bytes());
            let r = c.read_response();
            assert_eq!(r.status, 401, "{request}");
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
            assert_eq!(r.body_str(), "invalid api token\n");
        }
        for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
            assert_eq!(c.get(path).status, 204);
        }
        c.send(
            post(LOCK, &body)
                .replacen("Host:", "DAPR-API-TOKEN: s3cret\r\nHost:", 1)
                .as_bytes(),
        );
        assert_json(&c.read_response(), 200, LOCKED);
        // Surrounding spaces are not part of a header value (as Go's Header.Get reads it).
        c.send(
            post(LOCK, &body)
                .replacen("Host:", "dapr-api-token: \t s3cret \t\r\nHost:", 1)
                .as_bytes(),
        );
        assert_json(&c.read_response(), 200, NOT_LOCKED);
    }
}

// Limits answer clearly: the body cap is the contract's ERR_BODY_READ, ids are capped.
#[test]
fn body_and_id_limits() {
    for driver in DRIVERS {
        let server = start(&[
            "--io-driver",
            driver,
            "--max-body-bytes",
            "1k",
            "--max-id-bytes",
            "8",
        ]);
        let mut c = Client::connect(server.local_addr());
        assert_json(
            &c.lock("lockstore", "123456789", "o", 5),
            400,
            &error_body(
                "ERR_MALFORMED_REQUEST",
                "ResourceId is longer than 8 bytes in lock store lockstore",
            ),
        );
        assert_json(&c.lock("lockstore", "12345678", "o", 5), 200, LOCKED);
        let big = format!(
            r#"{{"resourceId":"r","lockOwner":"o","expiryInSeconds":5,"pad":"{}"}}"#,
            "x".repeat(2000)
        );
        let r = c.post(LOCK, &big);
        assert_json(
            &r,
            400,
            r#"{"errorCode":"ERR_BODY_READ","message":"failed to read request body: stream too large"}"#,
        );
        assert!(c.is_closed());
    }
}

// A lease lives its whole expiry (never less) and is then free for anyone; the old owner's
// unlock then answers 1. Real time: the lease must still be held just before 1 s, and gone
// within a bounded wait after.
#[test]
fn leases_expire_after_their_time() {
    let server = start(&[]);
    let mut c = Client::connect(server.local_addr());
    let granted = std::time::Instant::now();
    assert_json(&c.lock("lockstore", "ttl", "a", 1), 200, LOCKED);
    let mut freed_after = None;
    while granted.elapsed() < std::time::Duration::from_secs(5) {
        let r = c.lock("lockstore", "ttl", "b", 30);
        // Taken after the answer, so it is no earlier than the grant to "b".
        let answered = granted.elapsed();
        if r.body_str() == LOCKED {
            freed_after = Some(answered);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let freed_after = freed_after.expect("the lease expired");
    assert!(
        freed_after >= std::time::Duration::from_secs(1),
        "ended early: {freed_after:?}"
    );
    assert_json(&c.unlock("lockstore", "ttl", "a"), 200, r#"{"status":2}"#);
    assert_json(&c.unlock("lockstore", "ttl", "b"), 200, r#"{"status":0}"#);
}

// The lease bound answers the store-failure error instead of growing without limit, and a
// released lease makes room again.
#[test]
fn lease_table_limit() {
    let server = start(&["--max-leases", "2"]);
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock("lockstore", "a", "o", 60), 200, LOCKED);
    assert_json(&c.lock("lockstore", "b", "o", 60), 200, LOCKED);
    assert_json(
        &c.lock("lockstore", "c", "o", 60),
        500,
        &error_body(
            "ERR_TRY_LOCK",
            "failed to try acquiring lock: lease table is full (2 leases)",
        ),
    );
    assert_json(&c.unlock("lockstore", "a", "o"), 200, r#"{"status":0}"#);
    assert_json(&c.lock("lockstore", "c", "o", 60), 200, LOCKED);
}
