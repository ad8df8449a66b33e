//! The gRPC face, `dapr.proto.runtime.v1.Dapr` `TryLockAlpha1` and `UnlockAlpha1`, through a
//! real tonic client against a real server: every try-lock outcome, every unlock status,
//! expiry, races, the same locks as HTTP, every error with daprd's code and the HTTP route's
//! message, the API token, fencing tokens and the methods it does not serve. Bad input on the
//! port (bytes that are not HTTP/2, an HTTP/1.1 request, a preface cut short) never takes the
//! server down.
//! (The official Python SDK drives the working cases too, in tests/sdk_python.rs.)

mod common;
#[path = "common/grpc_client.rs"]
mod grpc_client;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};

use common::*;
use grpc_client::{GrpcClient, CALL_TIMEOUT};

// The messages of `dapr/proto/runtime/v1/dapr.proto`, as the SDKs send them.

/// `dapr.proto.runtime.v1.TryLockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct TryLockRequest {
    #[prost(string, tag = "1")]
    store_name: String,
    #[prost(string, tag = "2")]
    resource_id: String,
    #[prost(string, tag = "3")]
    lock_owner: String,
    #[prost(int32, tag = "4")]
    expiry_in_seconds: i32,
}

/// `dapr.proto.runtime.v1.TryLockResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct TryLockResponse {
    #[prost(bool, tag = "1")]
    success: bool,
}

/// `dapr.proto.runtime.v1.UnlockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct UnlockRequest {
    #[prost(string, tag = "1")]
    store_name: String,
    #[prost(string, tag = "2")]
    resource_id: String,
    #[prost(string, tag = "3")]
    lock_owner: String,
}

/// `dapr.proto.runtime.v1.UnlockResponse`: 0 success, 1 lock does not exist, 2 belongs to
/// others, 3 internal error.
#[derive(Clone, PartialEq, prost::Message)]
struct UnlockResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `dapr.proto.runtime.v1.GetMetadataRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct GetMetadataRequest {}

/// `dapr.proto.runtime.v1.GetMetadataResponse`, the fields daprd fills without an app.
#[derive(Clone, PartialEq, prost::Message)]
struct GetMetadataResponse {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(message, repeated, tag = "3")]
    registered_components: Vec<RegisteredComponents>,
    #[prost(map = "string, string", tag = "4")]
    extended_metadata: std::collections::HashMap<String, String>,
    #[prost(message, optional, tag = "7")]
    app_connection_properties: Option<AppConnectionProperties>,
    #[prost(string, tag = "8")]
    runtime_version: String,
    #[prost(string, repeated, tag = "9")]
    enabled_features: Vec<String>,
    #[prost(message, optional, tag = "10")]
    actor_runtime: Option<ActorRuntime>,
}

/// `dapr.proto.runtime.v1.RegisteredComponents`.
#[derive(Clone, PartialEq, prost::Message)]
struct RegisteredComponents {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    r#type: String,
    #[prost(string, tag = "3")]
    version: String,
    #[prost(string, repeated, tag = "4")]
    capabilities: Vec<String>,
}

/// `dapr.proto.runtime.v1.AppConnectionProperties`.
#[derive(Clone, PartialEq, prost::Message)]
struct AppConnectionProperties {
    #[prost(int32, tag = "1")]
    port: i32,
    #[prost(string, tag = "2")]
    protocol: String,
    #[prost(string, tag = "3")]
    channel_address: String,
    #[prost(int32, tag = "4")]
    max_concurrency: i32,
}

/// `dapr.proto.runtime.v1.ActorRuntime`: status 1 is DISABLED.
#[derive(Clone, PartialEq, prost::Message)]
struct ActorRuntime {
    #[prost(int32, tag = "1")]
    runtime_status: i32,
    #[prost(string, tag = "4")]
    placement: String,
}

/// A `TryLockRequest` as a broken client might encode it: `resource_id` as raw bytes (so it
/// can be invalid UTF-8) and `expiry_in_seconds` with the wrong wire type.
#[derive(Clone, PartialEq, prost::Message)]
struct RawTryLock {
    #[prost(string, tag = "1")]
    store_name: String,
    #[prost(bytes = "vec", tag = "2")]
    resource_id: Vec<u8>,
    #[prost(string, tag = "3")]
    lock_owner: String,
    #[prost(string, optional, tag = "4")]
    expiry_as_text: Option<String>,
}

const TRY_LOCK: &str = "/dapr.proto.runtime.v1.Dapr/TryLockAlpha1";
const UNLOCK: &str = "/dapr.proto.runtime.v1.Dapr/UnlockAlpha1";
const GET_METADATA: &str = "/dapr.proto.runtime.v1.Dapr/GetMetadata";

/// The `Dapr` service's lock methods, on the shared client.
impl GrpcClient {
    /// `TryLockAlpha1`, whole answer.
    fn try_lock_response(
        &self,
        store: &str,
        resource: &str,
        owner: &str,
        expiry_s: i32,
    ) -> Result<tonic::Response<TryLockResponse>, Status> {
        let message = TryLockRequest {
            store_name: store.into(),
            resource_id: resource.into(),
            lock_owner: owner.into(),
            expiry_in_seconds: expiry_s,
        };
        self.call(TRY_LOCK, message)
    }

    /// `TryLockAlpha1`: whether the lock was granted.
    fn try_lock(
        &self,
        store: &str,
        resource: &str,
        owner: &str,
        expiry_s: i32,
    ) -> Result<bool, Refusal> {
        self.try_lock_response(store, resource, owner, expiry_s)
            .map(|r| r.into_inner().success)
            .map_err(Refusal::from)
    }

    /// `TryLockAlpha1` of one lock for every owner at once: concurrent calls on this one
    /// HTTP/2 connection, all sent before any answer is awaited. Whether each was granted.
    fn try_lock_all(&self, store: &str, resource: &str, owners: &[String]) -> Vec<bool> {
        let calls: Vec<_> = owners
            .iter()
            .map(|owner| {
                let message = TryLockRequest {
                    store_name: store.into(),
                    resource_id: resource.into(),
                    lock_owner: owner.clone(),
                    expiry_in_seconds: 60,
                };
                let mut grpc = tonic::client::Grpc::new(self.channel.clone());
                async move {
                    grpc.ready().await.expect("the channel is ready");
                    let path = PathAndQuery::from_static(TRY_LOCK);
                    let answer: tonic::Response<TryLockResponse> = grpc
                        .unary(
                            tonic::Request::new(message),
                            path,
                            tonic_prost::ProstCodec::default(),
                        )
                        .await
                        .expect("a try-lock answer");
                    answer.into_inner().success
                }
            })
            .collect();
        self.runtime.block_on(async {
            let tasks: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
            let mut won = Vec::new();
            for task in tasks {
                let answer = tokio::time::timeout(CALL_TIMEOUT, task)
                    .await
                    .expect("an answer within the call timeout");
                won.push(answer.expect("the call's task finishes"));
            }
            won
        })
    }

    /// `UnlockAlpha1`: the status number.
    fn unlock(&self, store: &str, resource: &str, owner: &str) -> Result<i32, Refusal> {
        let message = UnlockRequest {
            store_name: store.into(),
            resource_id: resource.into(),
            lock_owner: owner.into(),
        };
        self.call::<_, UnlockResponse>(UNLOCK, message)
            .map(|r| r.into_inner().status)
            .map_err(Refusal::from)
    }
}

/// A call's refusal: its gRPC status code and message.
#[derive(Debug, PartialEq)]
struct Refusal {
    code: Code,
    message: String,
}

impl From<Status> for Refusal {
    fn from(status: Status) -> Refusal {
        Refusal {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// Asserts that a call was refused with exactly `code` and `message`.
#[track_caller]
fn assert_status<T: std::fmt::Debug, E: Into<Refusal>>(
    answer: Result<T, E>,
    code: Code,
    message: &str,
) {
    match answer.map_err(Into::into) {
        Ok(value) => panic!("expected {code:?} {message:?}, got the answer {value:?}"),
        Err(refusal) => assert_eq!(
            refusal,
            Refusal {
                code,
                message: message.into()
            }
        ),
    }
}

/// The `errorCode` and `message` of an HTTP error answer.
fn http_error(r: &Response) -> (String, String) {
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON error body");
    let field = |name: &str| {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {body}"))
            .to_string()
    };
    (field("errorCode"), field("message"))
}

/// A directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("dlockd-grpc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a server with `args`, its gRPC face connected.
fn start_grpc(args: &[&str]) -> (dlockd::server::Server, GrpcClient) {
    let server = start(args);
    let grpc = GrpcClient::connect(server.grpc_addr().expect("gRPC is on by default"));
    (server, grpc)
}

/// Closes the client, then asserts the server stops cleanly in time.
fn stop(server: dlockd::server::Server, grpc: GrpcClient) {
    drop(grpc);
    assert!(server.shutdown(Duration::from_secs(5)), "a clean stop");
}

/// Sends `bytes` to `addr`, then reads until the server closes or 2 s pass; returns what came.
fn poke(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("the gRPC port accepts");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn bad_bytes_on_the_grpc_port_hurt_nothing() {
    // Protects "bad input never panics the server": each bad connection is closed (HTTP/2's
    // GOAWAY at most), and the server goes on serving both faces.
    let server = start(&[]);
    let grpc = server.grpc_addr().expect("gRPC is on by default");
    let cases: [&[u8]; 4] = [
        b"\x00\x01\x02garbage that is not a connection preface\r\n\r\n",
        b"POST /dapr.proto.runtime.v1.Dapr/TryLockAlpha1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM",
        &[0xFF; 4096],
    ];
    for bytes in cases {
        let answer = poke(grpc, bytes);
        assert!(
            answer.len() < 64 * 1024,
            "a bounded answer to bad input, not {} bytes",
            answer.len()
        );
    }
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock("lockstore", "after", "o", 10), 200, LOCKED);
    // The gRPC port still accepts an HTTP/2 preface and answers with SETTINGS.
    let answer = poke(
        grpc,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    );
    assert!(
        answer.len() >= 9 && answer[3] == 0x04,
        "a SETTINGS frame first: {answer:?}"
    );
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn grpc_can_be_turned_off() {
    // `--grpc-listen off` binds nothing and says so.
    let server = start(&["--grpc-listen", "off"]);
    assert_eq!(server.grpc_addr(), None);
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn try_lock_grants_refuses_and_is_not_reentrant() {
    // Protects try-lock's outcomes over gRPC: a free lock is granted (without a fence, as
    // there is no data dir), a held one is refused to another owner and to its own owner
    // again (not re-entrant), and refusals leave the holder's lease in place.
    let (server, grpc) = start_grpc(&[]);
    let granted = grpc
        .try_lock_response("lockstore", "r", "alice", 60)
        .expect("a granted try-lock");
    assert!(granted.get_ref().success);
    assert!(
        granted.metadata().get("dapr-lock-fence").is_none(),
        "no fencing token without a data dir"
    );
    assert_eq!(grpc.try_lock("lockstore", "r", "bob", 60), Ok(false));
    assert_eq!(grpc.try_lock("lockstore", "r", "alice", 60), Ok(false));
    assert_eq!(grpc.try_lock("lockstore", "r", "alice", 1), Ok(false));
    // Another resource is another lock.
    assert_eq!(grpc.try_lock("lockstore", "r2", "bob", 60), Ok(true));
    // Alice still holds `r`: her unlock is the one that succeeds.
    assert_eq!(grpc.unlock("lockstore", "r", "bob"), Ok(2));
    assert_eq!(grpc.unlock("lockstore", "r", "alice"), Ok(0));
    assert_eq!(grpc.try_lock("lockstore", "r", "bob", 60), Ok(true));
    stop(server, grpc);
}

#[test]
fn a_lock_in_one_store_is_not_held_in_another() {
    // Protects the store as part of the lock's identity over gRPC: the same resource and
    // owner in two stores are two locks.
    let (server, grpc) = start_grpc(&["--store", "a", "--store", "b"]);
    assert_eq!(grpc.try_lock("a", "r", "alice", 60), Ok(true));
    assert_eq!(grpc.try_lock("b", "r", "bob", 60), Ok(true));
    assert_eq!(grpc.unlock("a", "r", "bob"), Ok(2));
    assert_eq!(grpc.unlock("b", "r", "bob"), Ok(0));
    assert_eq!(grpc.unlock("b", "r", "bob"), Ok(1));
    assert_eq!(grpc.unlock("a", "r", "alice"), Ok(0));
    stop(server, grpc);
}

#[test]
fn unlock_answers_every_status() {
    // Protects UnlockAlpha1's statuses: 0 for the holder, 1 for a lock nobody holds (never
    // taken, or already released), 2 for another owner, and a refused unlock leaves the
    // lease exactly as it was: still held, by the same owner, for both faces.
    let (server, grpc) = start_grpc(&[]);
    let mut http = Client::connect(server.local_addr());
    assert_eq!(grpc.unlock("lockstore", "never", "alice"), Ok(1));
    assert_eq!(grpc.try_lock("lockstore", "r", "alice", 60), Ok(true));
    assert_eq!(grpc.unlock("lockstore", "r", "bob"), Ok(2));
    assert_eq!(grpc.unlock("lockstore", "r", "bob"), Ok(2));
    // Untouched: refused to others on both faces, released only by alice.
    assert_eq!(grpc.try_lock("lockstore", "r", "bob", 60), Ok(false));
    assert_json(&http.lock("lockstore", "r", "carol", 60), 200, NOT_LOCKED);
    assert_json(
        &http.unlock("lockstore", "r", "bob"),
        200,
        r#"{"status":2}"#,
    );
    assert_eq!(grpc.unlock("lockstore", "r", "alice"), Ok(0));
    assert_eq!(grpc.unlock("lockstore", "r", "alice"), Ok(1));
    assert_eq!(grpc.unlock("lockstore", "r", "bob"), Ok(1));
    assert_eq!(grpc.try_lock("lockstore", "r", "bob", 60), Ok(true));
    drop(http);
    stop(server, grpc);
}

/// One lease watched until it ends: how each retry was answered, and when.
struct Watch {
    resource: &'static str,
    /// Who retries the try-lock while the lease runs.
    retrier: &'static str,
    /// When the first retry was granted, from the original grant's send time.
    granted_after: Option<Duration>,
    refusals: Vec<Duration>,
}

#[test]
fn a_lease_expires_on_time_and_refused_retries_do_not_extend_it() {
    // Protects expiry over gRPC: a lease of `expiryInSeconds` 1 is held (refused to its own
    // owner and to others) through the whole second, never ends early, and is gone soon
    // after. Its holder's refused retries ask for 60 s each: had any of them extended the
    // lease (re-entrancy), it would outlive the deadline. An unlock after expiry finds no lock.
    let (server, grpc) = start_grpc(&[]);
    // Taken first, so that it has expired once the two watched leases have.
    assert_eq!(grpc.try_lock("lockstore", "idle", "dave", 1), Ok(true));
    let t0 = Instant::now();
    assert_eq!(grpc.try_lock("lockstore", "own", "alice", 1), Ok(true));
    assert_eq!(grpc.try_lock("lockstore", "other", "carol", 1), Ok(true));
    let mut watches = [
        Watch {
            resource: "own",
            retrier: "alice",
            granted_after: None,
            refusals: Vec::new(),
        },
        Watch {
            resource: "other",
            retrier: "bob",
            granted_after: None,
            refusals: Vec::new(),
        },
    ];
    let lease = Duration::from_secs(1);
    // Generous for a loaded machine, and far below the 60 s an extension would give.
    let deadline = t0 + Duration::from_secs(5);
    while watches.iter().any(|w| w.granted_after.is_none()) {
        assert!(
            Instant::now() < deadline,
            "a 1 s lease still held 5 s after it was granted"
        );
        for w in watches.iter_mut().filter(|w| w.granted_after.is_none()) {
            let granted = grpc
                .try_lock("lockstore", w.resource, w.retrier, 60)
                .expect("a try-lock answer");
            let answered = t0.elapsed();
            if granted {
                w.granted_after = Some(answered);
            } else {
                w.refusals.push(answered);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for w in &watches {
        let granted_after = w.granted_after.expect("granted after expiry");
        // The grant was decided after t0, so its lease runs until at least t0 + 1 s: a
        // retry answered by then must have been refused, and the regrant comes after.
        assert!(
            granted_after >= lease,
            "{}: the lease ended early, granted again {granted_after:?} after t0",
            w.resource
        );
        assert!(
            w.refusals.iter().any(|&at| at >= lease / 2),
            "{}: the lease was seen held in its second half: {:?}",
            w.resource,
            w.refusals
        );
    }
    assert_eq!(grpc.unlock("lockstore", "idle", "dave"), Ok(1));
    assert_eq!(grpc.unlock("lockstore", "other", "carol"), Ok(2));
    assert_eq!(grpc.unlock("lockstore", "other", "bob"), Ok(0));
    assert_eq!(grpc.unlock("lockstore", "own", "alice"), Ok(0));
    stop(server, grpc);
}

#[test]
fn a_race_of_many_owners_over_both_faces_has_one_winner() {
    // Protects mutual exclusion under concurrency: owners on their own gRPC and HTTP
    // connections, released together by a barrier, try the same lock; exactly one wins each
    // round, and only the winner's unlock succeeds. The same for owners whose calls are
    // concurrent streams of one HTTP/2 connection.
    const PER_FACE: usize = 6;
    const ROUNDS: usize = 5;
    let server = start(&["--workers", "2"]);
    let grpc_addr = server.grpc_addr().expect("gRPC is on by default");
    let http_addr = server.local_addr();
    let barrier = Arc::new(Barrier::new(2 * PER_FACE));
    let mut racers = Vec::new();
    for i in 0..2 * PER_FACE {
        let barrier = barrier.clone();
        racers.push(std::thread::spawn(move || {
            let owner = format!("owner-{i}");
            let over_grpc = i % 2 == 0;
            let grpc = over_grpc.then(|| GrpcClient::connect(grpc_addr));
            let mut http = (!over_grpc).then(|| Client::connect(http_addr));
            let mut wins = Vec::new();
            for round in 0..ROUNDS {
                let resource = format!("race-{round}");
                barrier.wait();
                let won = match (&grpc, &mut http) {
                    (Some(grpc), _) => grpc
                        .try_lock("lockstore", &resource, &owner, 60)
                        .expect("a try-lock answer"),
                    (None, Some(http)) => {
                        let r = http.lock("lockstore", &resource, &owner, 60);
                        assert_eq!(r.status, 200, "{}", r.body_str());
                        r.body_str() == LOCKED
                    }
                    (None, None) => unreachable!("every racer has a connection"),
                };
                if won {
                    wins.push((round, owner.clone()));
                }
            }
            wins
        }));
    }
    let mut wins: Vec<(usize, String)> = racers
        .into_iter()
        .flat_map(|t| t.join().expect("a racer finishes"))
        .collect();
    wins.sort();
    let rounds: Vec<usize> = wins.iter().map(|(round, _)| *round).collect();
    assert_eq!(
        rounds,
        (0..ROUNDS).collect::<Vec<_>>(),
        "one winner a round: {wins:?}"
    );
    let grpc = GrpcClient::connect(grpc_addr);
    // Concurrent streams on one connection race as well.
    let owners: Vec<String> = (0..16).map(|i| format!("stream-{i}")).collect();
    for round in 0..ROUNDS {
        let resource = format!("streams-{round}");
        let won = grpc.try_lock_all("lockstore", &resource, &owners);
        let winners: Vec<&String> = owners
            .iter()
            .zip(&won)
            .filter(|w| *w.1)
            .map(|w| w.0)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "one winner among the streams: {winners:?}"
        );
        for owner in owners.iter().filter(|o| *o != winners[0]) {
            assert_eq!(grpc.unlock("lockstore", &resource, owner), Ok(2));
        }
        assert_eq!(grpc.unlock("lockstore", &resource, winners[0]), Ok(0));
    }
    for (round, winner) in &wins {
        let resource = format!("race-{round}");
        for i in 0..2 * PER_FACE {
            let owner = format!("owner-{i}");
            if owner != *winner {
                assert_eq!(grpc.unlock("lockstore", &resource, &owner), Ok(2));
            }
        }
        assert_eq!(grpc.unlock("lockstore", &resource, winner), Ok(0));
    }
    stop(server, grpc);
}

#[test]
fn the_same_lock_is_held_across_http_and_grpc_both_ways() {
    // Protects "the same locks as HTTP": on two workers, for resources spread over both
    // shards, a lock taken over HTTP is held for gRPC callers and released only by its owner,
    // and the reverse.
    let (server, grpc) = start_grpc(&["--workers", "2"]);
    let mut http = Client::connect(server.local_addr());
    for i in 0..16 {
        let r = format!("shared-{i}");
        // HTTP takes it; gRPC sees it held.
        assert_json(&http.lock("lockstore", &r, "h", 60), 200, LOCKED);
        assert_eq!(grpc.try_lock("lockstore", &r, "g", 60), Ok(false));
        assert_eq!(grpc.try_lock("lockstore", &r, "h", 60), Ok(false));
        assert_eq!(grpc.unlock("lockstore", &r, "g"), Ok(2));
        assert_eq!(grpc.unlock("lockstore", &r, "h"), Ok(0));
        assert_json(&http.unlock("lockstore", &r, "h"), 200, r#"{"status":1}"#);
        // gRPC takes it; HTTP sees it held.
        assert_eq!(grpc.try_lock("lockstore", &r, "g", 60), Ok(true));
        assert_json(&http.lock("lockstore", &r, "h", 60), 200, NOT_LOCKED);
        assert_json(&http.lock("lockstore", &r, "g", 60), 200, NOT_LOCKED);
        assert_json(&http.unlock("lockstore", &r, "h"), 200, r#"{"status":2}"#);
        assert_json(&http.unlock("lockstore", &r, "g"), 200, r#"{"status":0}"#);
        assert_eq!(grpc.unlock("lockstore", &r, "g"), Ok(1));
    }
    drop(http);
    stop(server, grpc);
}

/// A lock request and what both faces must refuse it with.
struct Refused {
    try_lock: bool,
    store: &'static str,
    /// The store as it goes in the HTTP route's URL.
    store_in_url: &'static str,
    resource: String,
    owner: String,
    expiry_s: i32,
    code: Code,
    message: String,
}

impl Refused {
    fn lock(store: &'static str, resource: &str, owner: &str, expiry_s: i32) -> Refused {
        Refused {
            try_lock: true,
            store,
            store_in_url: store,
            resource: resource.into(),
            owner: owner.into(),
            expiry_s,
            code: Code::Ok,
            message: String::new(),
        }
    }

    fn unlock(store: &'static str, resource: &str, owner: &str) -> Refused {
        Refused {
            try_lock: false,
            ..Refused::lock(store, resource, owner, 0)
        }
    }

    fn in_url(mut self, store_in_url: &'static str) -> Refused {
        self.store_in_url = store_in_url;
        self
    }

    fn is(mut self, code: Code, message: &str) -> Refused {
        self.code = code;
        self.message = message.into();
        self
    }

    /// Sends it over gRPC and, unless `grpc_only`, over HTTP; asserts both refusals.
    #[track_caller]
    fn check(&self, grpc: &GrpcClient, http: &mut Client, grpc_only: bool) {
        let what = format!(
            "{} store {:?} resource {:?} owner {:?} expiry {}",
            if self.try_lock { "try-lock" } else { "unlock" },
            self.store,
            self.resource,
            self.owner,
            self.expiry_s
        );
        let answer = if self.try_lock {
            grpc.try_lock(self.store, &self.resource, &self.owner, self.expiry_s)
                .map(|b| b.to_string())
        } else {
            grpc.unlock(self.store, &self.resource, &self.owner)
                .map(|s| s.to_string())
        };
        match answer {
            Ok(value) => panic!("{what}: answered {value}, not refused"),
            Err(refusal) => assert_eq!(
                refusal,
                Refusal {
                    code: self.code,
                    message: self.message.clone()
                },
                "{what}"
            ),
        }
        if grpc_only {
            return;
        }
        let r = if self.try_lock {
            let body = format!(
                r#"{{"resourceId":{},"lockOwner":{},"expiryInSeconds":{}}}"#,
                serde_json::Value::from(self.resource.as_str()),
                serde_json::Value::from(self.owner.as_str()),
                self.expiry_s
            );
            http.post(&format!("/v1.0-alpha1/lock/{}", self.store_in_url), &body)
        } else {
            let body = format!(
                r#"{{"resourceId":{},"lockOwner":{}}}"#,
                serde_json::Value::from(self.resource.as_str()),
                serde_json::Value::from(self.owner.as_str()),
            );
            http.post(&format!("/v1.0-alpha1/unlock/{}", self.store_in_url), &body)
        };
        let (error_code, message) = http_error(&r);
        let status = match self.code {
            Code::InvalidArgument => 400,
            _ => 500,
        };
        assert_eq!(r.status, status, "{what} over HTTP: {error_code}");
        assert_eq!(message, self.message, "{what}: the same message over HTTP");
    }
}

#[test]
fn every_invalid_request_is_refused_with_daprd_code_and_the_http_message() {
    // Protects the gRPC face's errors: each validation failure is refused with daprd's gRPC
    // code (malformed, empty or unknown → INVALID_ARGUMENT; `||` → INTERNAL) and, byte for
    // byte, the message the HTTP route gives the same request, in daprd's order of checks;
    // and a refused request leaves no lock behind.
    let (server, grpc) = start_grpc(&[
        "--store",
        "lockstore",
        "--store",
        "other",
        "--max-id-bytes",
        "16",
        "--max-expiry",
        "60",
    ]);
    let mut http = Client::connect(server.local_addr());
    let invalid = Code::InvalidArgument;
    let long = "x".repeat(17);
    let longest = "x".repeat(16);
    let cases = [
        // Expiry, checked first (before the ids and the store).
        Refused::lock("lockstore", "r", "o", 0).is(
            invalid,
            "ExpiryInSeconds is not positive in lock store lockstore",
        ),
        Refused::lock("lockstore", "r", "o", -7).is(
            invalid,
            "ExpiryInSeconds is not positive in lock store lockstore",
        ),
        Refused::lock("lockstore", "r", "o", i32::MIN).is(
            invalid,
            "ExpiryInSeconds is not positive in lock store lockstore",
        ),
        Refused::lock("nope", "", "", 0).is(
            invalid,
            "ExpiryInSeconds is not positive in lock store nope",
        ),
        Refused::lock("lockstore", "r", "o", 61).is(
            invalid,
            "ExpiryInSeconds is above the maximum of 60 (--max-expiry) in lock store lockstore",
        ),
        Refused::lock("lockstore", "r", "o", i32::MAX).is(
            invalid,
            "ExpiryInSeconds is above the maximum of 60 (--max-expiry) in lock store lockstore",
        ),
        // Empty ids, before the store is looked up.
        Refused::lock("lockstore", "", "o", 10)
            .is(invalid, "ResourceId is empty in lock store lockstore"),
        Refused::lock("nope", "", "", 10).is(invalid, "ResourceId is empty in lock store nope"),
        Refused::lock("lockstore", "r", "", 10)
            .is(invalid, "LockOwner is empty in lock store lockstore"),
        Refused::unlock("other", "", "o").is(invalid, "ResourceId is empty in lock store other"),
        Refused::unlock("other", "r", "").is(invalid, "LockOwner is empty in lock store other"),
        // Ids over --max-id-bytes.
        Refused::lock("lockstore", &long, "o", 10).is(
            invalid,
            "ResourceId is longer than 16 bytes in lock store lockstore",
        ),
        Refused::lock("lockstore", "r", &long, 10).is(
            invalid,
            "LockOwner is longer than 16 bytes in lock store lockstore",
        ),
        Refused::unlock("lockstore", &long, "o").is(
            invalid,
            "ResourceId is longer than 16 bytes in lock store lockstore",
        ),
        Refused::unlock("lockstore", "r", &long).is(
            invalid,
            "LockOwner is longer than 16 bytes in lock store lockstore",
        ),
        // Unknown stores, named as given (case-sensitive, any characters).
        Refused::lock("nope", "r", "o", 10).is(invalid, "lock store nope not found"),
        Refused::lock("LockStore", "r", "o", 10).is(invalid, "lock store LockStore not found"),
        Refused::lock("a b<c>", "r", "o", 10)
            .in_url("a%20b%3Cc%3E")
            .is(invalid, "lock store a b<c> not found"),
        Refused::unlock("nope", "r", "o").is(invalid, "lock store nope not found"),
        Refused::lock("nope", &long, "o", 10).is(
            invalid,
            "ResourceId is longer than 16 bytes in lock store nope",
        ),
        // `||` in a resource id: daprd's key separator, refused by the store step.
        Refused::lock("lockstore", "a||b", "o", 10).is(
            Code::Internal,
            "failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'",
        ),
        Refused::lock("lockstore", "||", "o", 10).is(
            Code::Internal,
            "failed to try acquiring lock: input key/keyPrefix '||' can't contain '||'",
        ),
        Refused::unlock("other", "x|||", "o").is(
            Code::Internal,
            "failed to release lock: input key/keyPrefix 'x|||' can't contain '||'",
        ),
        Refused::lock("nope", "a||b", "o", 10).is(invalid, "lock store nope not found"),
    ];
    for case in &cases {
        case.check(&grpc, &mut http, false);
    }
    // An empty store name has no HTTP route (`/v1.0-alpha1/lock/` is not one); over gRPC it
    // is an unknown store, as in daprd.
    Refused::lock("", "r", "o", 10)
        .is(invalid, "lock store  not found")
        .check(&grpc, &mut http, true);
    Refused::unlock("", "r", "o")
        .is(invalid, "lock store  not found")
        .check(&grpc, &mut http, true);
    // Nothing refused was stored: every one of those locks is free, and the limits
    // themselves are allowed.
    assert_eq!(grpc.try_lock("lockstore", "r", "o2", 60), Ok(true));
    assert_eq!(grpc.try_lock("lockstore", &longest, &longest, 1), Ok(true));
    assert_eq!(grpc.try_lock("lockstore", "a|b|c", "o", 10), Ok(true));
    assert_eq!(grpc.unlock("lockstore", "r", "o"), Ok(2));
    drop(http);
    stop(server, grpc);
}

#[test]
fn a_full_lease_table_is_internal() {
    // Protects the store-failure path over gRPC: a try-lock the lease table has no room for
    // is INTERNAL with the HTTP route's message, and the table takes leases again once one
    // is released. Refusals and unlocks need no room.
    let (server, grpc) = start_grpc(&["--max-leases", "1"]);
    let mut http = Client::connect(server.local_addr());
    assert_eq!(grpc.try_lock("lockstore", "first", "o", 60), Ok(true));
    Refused::lock("lockstore", "second", "o", 60)
        .is(
            Code::Internal,
            "failed to try acquiring lock: lease table is full (1 leases)",
        )
        .check(&grpc, &mut http, false);
    assert_eq!(grpc.try_lock("lockstore", "first", "p", 60), Ok(false));
    assert_eq!(grpc.unlock("lockstore", "second", "o"), Ok(1));
    assert_eq!(grpc.unlock("lockstore", "first", "o"), Ok(0));
    assert_eq!(grpc.try_lock("lockstore", "second", "o", 60), Ok(true));
    drop(http);
    stop(server, grpc);
}

#[test]
fn no_store_configured_is_failed_precondition() {
    // Protects daprd's answer when no lock store is configured (a resources path with no
    // component): FAILED_PRECONDITION `lock store is not configured` for both methods,
    // whatever the store name, the same text as HTTP's; only a bad expiry is checked before.
    let empty = TempDir::new("no-store");
    let (server, grpc) = start_grpc(&["--resources-path", empty.arg()]);
    let mut http = Client::connect(server.local_addr());
    let failed = Code::FailedPrecondition;
    let not_configured = "lock store is not configured";
    for case in [
        Refused::lock("lockstore", "r", "o", 10).is(failed, not_configured),
        Refused::lock("lockstore", "", "", 10).is(failed, not_configured),
        Refused::lock("lockstore", "a||b", "o", 10).is(failed, not_configured),
        Refused::unlock("lockstore", "r", "o").is(failed, not_configured),
        Refused::lock("lockstore", "r", "o", 0).is(
            Code::InvalidArgument,
            "ExpiryInSeconds is not positive in lock store lockstore",
        ),
    ] {
        case.check(&grpc, &mut http, false);
    }
    Refused::lock("", "r", "o", 10)
        .is(failed, not_configured)
        .check(&grpc, &mut http, true);
    drop(http);
    stop(server, grpc);
}

/// `google.rpc.Status`, as carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.ErrorInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(map = "string, string", tag = "3")]
    metadata: std::collections::HashMap<String, String>,
}

/// Asserts daprd's answer to a call without the right token, field by field: code
/// UNAUTHENTICATED, message `Unauthorized`, and details holding a `google.rpc.Status` of the
/// same code and message with exactly one `google.rpc.ErrorInfo` (reason `Unauthorized`,
/// domain `dapr.io`, metadata `http.code` = `401` and `http.error_message` = `text`).
#[track_caller]
fn assert_unauthorized<T: std::fmt::Debug>(answer: Result<T, Status>, text: &str) {
    let status = match answer {
        Ok(value) => panic!("expected UNAUTHENTICATED {text:?}, got the answer {value:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "Unauthorized", "{status:?}");
    let details: RpcStatus =
        prost::Message::decode(status.details()).expect("grpc-status-details-bin decodes");
    assert_eq!(details.code, Code::Unauthenticated as i32);
    assert_eq!(details.message, "Unauthorized");
    assert_eq!(details.details.len(), 1, "{details:?}");
    assert_eq!(
        details.details[0].type_url,
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    let info: ErrorInfo =
        prost::Message::decode(details.details[0].value.as_slice()).expect("an ErrorInfo");
    assert_eq!(info.reason, "Unauthorized");
    assert_eq!(info.domain, "dapr.io");
    assert_eq!(info.metadata.len(), 2, "{info:?}");
    assert_eq!(
        info.metadata.get("http.code").map(String::as_str),
        Some("401")
    );
    assert_eq!(
        info.metadata.get("http.error_message").map(String::as_str),
        Some(text)
    );
}

#[test]
fn the_api_token_is_required_on_every_method() {
    // Protects DAPR_API_TOKEN over gRPC, answered as daprd answers it: without the
    // `dapr-api-token` metadata, or with another token, every method (the lock methods,
    // GetMetadata, and methods dlockd does not serve, checked for the token first) is
    // UNAUTHENTICATED `Unauthorized` with daprd's ErrorInfo details, before any validation and
    // without touching a lock; the right token works.
    let server = start_env(&[], &[("DAPR_API_TOKEN", "s3cret")]);
    let addr = server.grpc_addr().expect("gRPC is on by default");
    let missing = "missing api token in request metadata";
    let mismatch = "authentication error: api token mismatch";
    let right = GrpcClient::connect(addr).with_token("s3cret");
    let callers = [
        (GrpcClient::connect(addr), missing),
        (GrpcClient::connect(addr).with_token("wrong"), mismatch),
        (GrpcClient::connect(addr).with_token("s3cre"), mismatch),
        (GrpcClient::connect(addr).with_token("s3cret "), mismatch),
        (GrpcClient::connect(addr).with_token(""), mismatch),
    ];
    assert_eq!(right.try_lock("lockstore", "held", "alice", 60), Ok(true));
    let lock = |store: &str, resource: &str, owner: &str, expiry_s| TryLockRequest {
        store_name: store.into(),
        resource_id: resource.into(),
        lock_owner: owner.into(),
        expiry_in_seconds: expiry_s,
    };
    let unlock = |store: &str, resource: &str, owner: &str| UnlockRequest {
        store_name: store.into(),
        resource_id: resource.into(),
        lock_owner: owner.into(),
    };
    for (grpc, text) in &callers {
        for request in [lock("lockstore", "free", "o", 60), lock("nope", "", "", 0)] {
            assert_unauthorized(grpc.call::<_, TryLockResponse>(TRY_LOCK, request), text);
        }
        for request in [unlock("lockstore", "held", "alice"), unlock("nope", "", "")] {
            assert_unauthorized(grpc.call::<_, UnlockResponse>(UNLOCK, request), text);
        }
        assert_unauthorized(
            grpc.call::<_, GetMetadataResponse>(GET_METADATA, GetMetadataRequest {}),
            text,
        );
        assert_unauthorized(
            grpc.call::<_, TryLockResponse>(
                "/dapr.proto.runtime.v1.Dapr/GetState",
                lock("s", "r", "o", 1),
            ),
            text,
        );
    }
    // Nothing was taken or released by the refused calls.
    assert_eq!(right.try_lock("lockstore", "free", "bob", 60), Ok(true));
    assert_eq!(right.unlock("lockstore", "held", "alice"), Ok(0));
    assert_eq!(right.unlock("lockstore", "free", "bob"), Ok(0));
    assert_eq!(
        right
            .call::<_, GetMetadataResponse>(GET_METADATA, GetMetadataRequest {})
            .map(|r| r.into_inner().registered_components.len())
            .map_err(Refusal::from),
        Ok(1)
    );
    assert_status(
        right.call::<_, TryLockResponse>(
            "/dapr.proto.runtime.v1.Dapr/GetState",
            lock("s", "r", "o", 1),
        ),
        Code::Unimplemented,
        "/dapr.proto.runtime.v1.Dapr/GetState is not served by dlockd",
    );
    drop(callers);
    stop(server, right);
}

#[test]
fn get_metadata_answers_as_a_daprd_with_only_lock_stores() {
    // Protects the JavaScript SDK's start-up and health check, which call GetMetadata: the
    // answer is daprd's for a sidecar with only lock stores and no app: the app id, each store
    // as a registered component (name, type, v1, no capabilities, as HTTP /v1.0/metadata lists
    // them), the runtime version in both places daprd puts it, an HTTP app channel on
    // 127.0.0.1 without a port, actors disabled without placement, no enabled features.
    let (server, grpc) = start_grpc(&["--app-id", "checkout", "--store", "a", "--store", "b c"]);
    let m = grpc
        .call::<_, GetMetadataResponse>(GET_METADATA, GetMetadataRequest {})
        .expect("GetMetadata answers")
        .into_inner();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.id, "checkout");
    assert_eq!(
        m.registered_components,
        [
            RegisteredComponents {
                name: "a".into(),
                r#type: "lock.in-memory".into(),
                version: "v1".into(),
                capabilities: vec![],
            },
            RegisteredComponents {
                name: "b c".into(),
                r#type: "lock.in-memory".into(),
                version: "v1".into(),
                capabilities: vec![],
            },
        ]
    );
    assert_eq!(m.runtime_version, version);
    assert_eq!(
        m.extended_metadata
            .get("daprRuntimeVersion")
            .map(String::as_str),
        Some(version)
    );
    assert_eq!(m.extended_metadata.len(), 1);
    assert_eq!(
        m.app_connection_properties,
        Some(AppConnectionProperties {
            port: 0,
            protocol: "http".into(),
            channel_address: "127.0.0.1".into(),
            max_concurrency: 0,
        })
    );
    assert_eq!(
        m.actor_runtime,
        Some(ActorRuntime {
            runtime_status: 1,
            placement: "placement: disconnected".into(),
        })
    );
    assert!(m.enabled_features.is_empty());
    // The same stores as over HTTP.
    let mut http = Client::connect(server.local_addr());
    let listed = http.get("/v1.0/metadata");
    for c in &m.registered_components {
        let entry = format!(
            r#"{{"name":"{}","type":"{}","version":"{}"}}"#,
            c.name, c.r#type, c.version
        );
        assert!(listed.body_str().contains(&entry), "{}", listed.body_str());
    }
    drop(http);
    stop(server, grpc);
}

#[test]
fn other_methods_are_unimplemented() {
    // Protects "only the lock methods and GetMetadata are served": any other method of the
    // Dapr service, or of another service, is UNIMPLEMENTED naming the path, and the
    // connection goes on.
    let (server, grpc) = start_grpc(&[]);
    let paths = [
        "/dapr.proto.runtime.v1.Dapr/GetState",
        "/dapr.proto.runtime.v1.Dapr/InvokeService",
        "/dapr.proto.runtime.v1.Dapr/TryLockAlpha2",
        "/dapr.proto.runtime.v1.Dapr/trylockalpha1",
        "/dapr.proto.runtime.v1.Dapr/",
        "/dapr.proto.runtime.v1.Dapr2/TryLockAlpha1",
        "/grpc.health.v1.Health/Check",
    ];
    for path in paths {
        let message = TryLockRequest {
            store_name: "lockstore".into(),
            resource_id: "r".into(),
            lock_owner: "o".into(),
            expiry_in_seconds: 10,
        };
        assert_status(
            grpc.call::<_, TryLockResponse>(path, message),
            Code::Unimplemented,
            &format!("{path} is not served by dlockd"),
        );
    }
    // None of them took the lock.
    assert_eq!(grpc.try_lock("lockstore", "r", "p", 10), Ok(true));
    stop(server, grpc);
}

#[test]
fn an_undecodable_request_is_internal_and_harms_nothing() {
    // Protects the decoding of requests: a message that is not a valid TryLockRequest (a
    // string field that is not UTF-8, a field of the wrong wire type) is refused with
    // INTERNAL, as gRPC servers (daprd's grpc-go among them) answer a request they cannot
    // unmarshal, takes no lock, and the connection goes on serving.
    let (server, grpc) = start_grpc(&[]);
    let broken = [
        RawTryLock {
            store_name: "lockstore".into(),
            resource_id: b"r\xff\xfe".to_vec(),
            lock_owner: "o".into(),
            expiry_as_text: None,
        },
        RawTryLock {
            store_name: "lockstore".into(),
            resource_id: b"r".to_vec(),
            lock_owner: "o".into(),
            expiry_as_text: Some("10".into()),
        },
    ];
    for message in broken {
        let answer = grpc.call::<_, TryLockResponse>(TRY_LOCK, message.clone());
        match answer {
            Ok(r) => panic!("{message:?} was answered {:?}", r.get_ref()),
            Err(status) => assert_eq!(status.code(), Code::Internal, "{status:?}"),
        }
    }
    // A message over the 4 MiB limit is refused too (its code is the subject of
    // `an_oversize_request_is_resource_exhausted_as_in_daprd`).
    let huge = "x".repeat(5 << 20);
    assert!(grpc.try_lock("lockstore", &huge, "o", 10).is_err());
    assert_eq!(grpc.try_lock("lockstore", "r", "p", 10), Ok(true));
    stop(server, grpc);
}

#[test]
fn a_grant_with_a_data_dir_carries_its_fence_on_both_faces() {
    // Protects fencing tokens over gRPC: with --data-dir a grant carries `dapr-lock-fence`
    // in its response metadata, a refusal none, and tokens grow across grants whichever
    // face takes the lock.
    let dir = TempDir::new("fence");
    let (server, grpc) = start_grpc(&["--data-dir", dir.arg()]);
    let mut http = Client::connect(server.local_addr());
    let fence_of = |r: &tonic::Response<TryLockResponse>| -> u64 {
        assert!(r.get_ref().success);
        r.metadata()
            .get("dapr-lock-fence")
            .expect("a grant carries a fence")
            .to_str()
            .expect("an ASCII fence")
            .parse()
            .expect("a decimal fence")
    };
    let first = fence_of(
        &grpc
            .try_lock_response("lockstore", "r", "g", 60)
            .expect("a grant"),
    );
    let refused = grpc
        .try_lock_response("lockstore", "r", "h", 60)
        .expect("a refusal");
    assert!(!refused.get_ref().success);
    assert!(refused.metadata().get("dapr-lock-fence").is_none());
    assert_eq!(grpc.unlock("lockstore", "r", "g"), Ok(0));
    let over_http = http.lock("lockstore", "r", "h", 60);
    let second: u64 = over_http
        .header("dapr-lock-fence")
        .expect("an HTTP grant carries a fence")
        .parse()
        .expect("a decimal fence");
    assert!(second > first, "{second} after {first}");
    assert_json(&http.unlock("lockstore", "r", "h"), 200, r#"{"status":0}"#);
    let third = fence_of(
        &grpc
            .try_lock_response("lockstore", "r", "g", 60)
            .expect("a grant"),
    );
    assert!(third > second, "{third} after {second}");
    drop(http);
    stop(server, grpc);
}

#[test]
fn an_oversize_request_is_resource_exhausted_as_in_daprd() {
    // Protects daprd's answer to a request message over the 4 MiB it accepts (grpc-go's
    // default, and daprd's default request size limit): RESOURCE_EXHAUSTED with grpc-go's
    // message naming the declared size and the limit, before the token is checked; exactly
    // 4 MiB is accepted. The server goes on serving.
    let server = start_env(&[], &[("DAPR_API_TOKEN", "s3cret")]);
    let addr = server.grpc_addr().expect("gRPC is on by default");
    let grpc = GrpcClient::connect(addr).with_token("s3cret");
    let huge = "x".repeat(5 << 20);
    let request = |resource: &str| TryLockRequest {
        store_name: "lockstore".into(),
        resource_id: resource.into(),
        lock_owner: "o".into(),
        expiry_in_seconds: 10,
    };
    let size = prost::Message::encoded_len(&request(&huge));
    for caller in [&grpc, &GrpcClient::connect(addr)] {
        assert_status(
            caller.call::<_, TryLockResponse>(TRY_LOCK, request(&huge)),
            Code::ResourceExhausted,
            &format!("grpc: received message larger than max ({size} vs. 4194304)"),
        );
    }
    // A message of exactly 4 MiB passes the size check (and is refused for its long id).
    let at_limit = 4 << 20;
    // The resource field adds its tag (1 byte), its length (a 4-byte varint here) and itself.
    let rest = prost::Message::encoded_len(&request(""));
    let resource = "x".repeat(at_limit - rest - 1 - 4);
    assert_eq!(prost::Message::encoded_len(&request(&resource)), at_limit);
    assert_status(
        grpc.call::<_, TryLockResponse>(TRY_LOCK, request(&resource)),
        Code::InvalidArgument,
        "ResourceId is longer than 1024 bytes in lock store lockstore",
    );
    assert_eq!(grpc.try_lock("lockstore", "r", "p", 10), Ok(true));
    drop(grpc);
    assert!(server.shutdown(Duration::from_secs(5)));
}
