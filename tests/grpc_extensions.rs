//! `dlockd.v1.LockExtensions` (proto/dlockd/v1/lock_extensions.proto) through a real tonic
//! client against a real server: `RenewLock`, `AcquireLock` and `GetLockHolder` answer as their
//! HTTP routes do, on the same locks; errors carry daprd's codes and the HTTP messages; the
//! fencing token comes in `dapr-lock-fence`; a waiting `AcquireLock` that the caller cancels
//! leaves its queue, and one still waiting at shutdown is answered refused.
//! (The shipped .proto drives the same methods from Python, in tests/sdk_python.rs.)

mod common;
#[path = "common/grpc_client.rs"]
mod grpc_client;

use std::time::{Duration, Instant};

use tonic::{Code, Status};

use common::*;
use grpc_client::GrpcClient;

// The messages of proto/dlockd/v1/lock_extensions.proto, written out here as a client would
// generate them.

#[derive(Clone, PartialEq, prost::Message)]
struct RenewLockRequest {
    #[prost(string, tag = "1")]
    store_name: String,
    #[prost(string, tag = "2")]
    resource_id: String,
    #[prost(string, tag = "3")]
    lock_owner: String,
    #[prost(int32, tag = "4")]
    expiry_in_seconds: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RenewLockResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AcquireLockRequest {
    #[prost(string, tag = "1")]
    store_name: String,
    #[prost(string, tag = "2")]
    resource_id: String,
    #[prost(string, tag = "3")]
    lock_owner: String,
    #[prost(int32, tag = "4")]
    expiry_in_seconds: i32,
    #[prost(int32, tag = "5")]
    wait_timeout_ms: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AcquireLockResponse {
    #[prost(bool, tag = "1")]
    success: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetLockHolderRequest {
    #[prost(string, tag = "1")]
    store_name: String,
    #[prost(string, tag = "2")]
    resource_id: String,
    #[prost(string, tag = "3")]
    lock_owner: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetLockHolderResponse {
    #[prost(bool, tag = "1")]
    locked: bool,
    #[prost(bool, tag = "2")]
    owned_by_caller: bool,
    #[prost(int64, tag = "3")]
    remaining_ms: i64,
    #[prost(int32, tag = "4")]
    waiters: i32,
}

const RENEW: &str = "/dlockd.v1.LockExtensions/RenewLock";
const ACQUIRE: &str = "/dlockd.v1.LockExtensions/AcquireLock";
const HOLDER: &str = "/dlockd.v1.LockExtensions/GetLockHolder";

const STORE: &str = "lockstore";

fn renew(
    c: &GrpcClient,
    resource: &str,
    owner: &str,
    expiry_s: i32,
) -> Result<tonic::Response<RenewLockResponse>, Status> {
    let message = RenewLockRequest {
        store_name: STORE.into(),
        resource_id: resource.into(),
        lock_owner: owner.into(),
        expiry_in_seconds: expiry_s,
    };
    c.call(RENEW, message)
}

fn acquire_request(resource: &str, owner: &str, wait_ms: i32) -> AcquireLockRequest {
    AcquireLockRequest {
        store_name: STORE.into(),
        resource_id: resource.into(),
        lock_owner: owner.into(),
        expiry_in_seconds: 30,
        wait_timeout_ms: wait_ms,
    }
}

fn acquire(
    c: &GrpcClient,
    resource: &str,
    owner: &str,
    wait_ms: i32,
) -> Result<tonic::Response<AcquireLockResponse>, Status> {
    c.call(ACQUIRE, acquire_request(resource, owner, wait_ms))
}

fn holder(c: &GrpcClient, resource: &str, owner: &str) -> GetLockHolderResponse {
    let message = GetLockHolderRequest {
        store_name: STORE.into(),
        resource_id: resource.into(),
        lock_owner: owner.into(),
    };
    let answer: tonic::Response<GetLockHolderResponse> =
        c.call(HOLDER, message).expect("a holder answer");
    answer.into_inner()
}

/// Waits until `n` acquires wait on `resource`, as the server counts them.
fn until_waiting(c: &GrpcClient, resource: &str, n: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while holder(c, resource, "").waiters != n {
        assert!(Instant::now() < deadline, "never {n} waiters on {resource}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

// Each method answers as its HTTP route, on the same locks as HTTP and daprd's methods.
#[test]
fn the_methods_answer_as_their_routes() {
    for workers in ["1", "2"] {
        let server = start(&["--workers", workers]);
        let c = GrpcClient::connect(server.grpc_addr().expect("a gRPC address"));
        let mut http = Client::connect(server.local_addr());
        let status = |r: Result<tonic::Response<RenewLockResponse>, Status>| {
            r.expect("a renewal answer").into_inner().status
        };
        assert_eq!(status(renew(&c, "r", "a", 10)), 1, "no such lock");
        assert_json(&http.lock(STORE, "r", "a", 10), 200, LOCKED);
        assert_eq!(status(renew(&c, "r", "b", 10)), 2, "another owner's");
        assert_eq!(status(renew(&c, "r", "a", 600)), 0);
        let held = holder(&c, "r", "a");
        assert!(held.locked && held.owned_by_caller, "{held:?}");
        assert!(held.remaining_ms > 590_000, "{held:?}");
        assert!(!holder(&c, "r", "b").owned_by_caller);
        assert!(!holder(&c, "free", "").locked);
        // An acquire without a wait is a try-lock; the holder asking again is refused at once.
        let got = |r: Result<tonic::Response<AcquireLockResponse>, Status>| {
            r.expect("an acquire answer").into_inner().success
        };
        assert!(!got(acquire(&c, "r", "b", 0)));
        assert!(!got(acquire(&c, "r", "a", 30_000)));
        assert!(got(acquire(&c, "other", "b", 0)));
        assert_json(&http.unlock(STORE, "other", "b"), 200, r#"{"status":0}"#);
        // A wait ends granted the moment the HTTP holder unlocks.
        let waiter = std::thread::spawn({
            let addr = server.grpc_addr().expect("a gRPC address");
            move || {
                let c = GrpcClient::connect(addr);
                acquire(&c, "r", "w", 30_000)
                    .map(|r| r.into_inner().success)
                    .map_err(|s| s.to_string())
            }
        });
        until_waiting(&c, "r", 1);
        assert_json(&http.unlock(STORE, "r", "a"), 200, r#"{"status":0}"#);
        assert_eq!(waiter.join().expect("the waiter's thread"), Ok(true));
        assert!(holder(&c, "r", "w").owned_by_caller);
        // A wait that ends first is refused.
        let started = Instant::now();
        assert!(!got(acquire(&c, "r", "late", 100)));
        assert!(started.elapsed() >= Duration::from_millis(100));
        drop((http, c));
        assert!(server.shutdown(Duration::from_secs(5)));
    }
}

// Errors carry daprd's codes and the HTTP routes' messages.
#[test]
fn errors_carry_the_routes_messages() {
    let server = start(&["--max-wait", "2s"]);
    let c = GrpcClient::connect(server.grpc_addr().expect("a gRPC address"));
    let refused = |r: Result<tonic::Response<AcquireLockResponse>, Status>| {
        let status = r.expect_err("refused");
        (status.code(), status.message().to_string())
    };
    assert_eq!(
        refused(acquire(&c, "r", "a", 2_001)),
        (
            Code::InvalidArgument,
            "WaitTimeoutMs is outside 0 to 2000 (--max-wait) in lock store lockstore".into()
        )
    );
    assert_eq!(
        refused(acquire(&c, "r", "", 10)),
        (
            Code::InvalidArgument,
            "LockOwner is empty in lock store lockstore".into()
        )
    );
    let mut unknown = acquire_request("r", "a", 10);
    unknown.store_name = "nope".into();
    assert_eq!(
        refused(c.call(ACQUIRE, unknown)),
        (Code::InvalidArgument, "lock store nope not found".into())
    );
    let status = renew(&c, "r", "a", 0).expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "ExpiryInSeconds is not positive in lock store lockstore"
    );
    let status = renew(&c, "a||b", "a", 10).expect_err("refused");
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Internal,
            "failed to renew lock: input key/keyPrefix 'a||b' can't contain '||'"
        )
    );
    // A method the service does not have.
    let status = c
        .call::<_, AcquireLockResponse>(
            "/dlockd.v1.LockExtensions/Steal",
            acquire_request("r", "a", 0),
        )
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unimplemented);
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
}

// With DAPR_API_TOKEN set, every method needs the token.
#[test]
fn the_token_is_needed() {
    let server = start_env(&[], &[("DAPR_API_TOKEN", "secret")]);
    let addr = server.grpc_addr().expect("a gRPC address");
    let without = GrpcClient::connect(addr);
    let status = acquire(&without, "r", "a", 0).expect_err("refused");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "Unauthorized")
    );
    let with = GrpcClient::connect(addr).with_token("secret");
    assert!(
        acquire(&with, "r", "a", 0)
            .expect("granted")
            .into_inner()
            .success
    );
    assert!(server.shutdown(Duration::from_secs(5)));
}

// A caller that cancels its waiting AcquireLock leaves the queue and is never granted; the
// next waiter has the lock on the release.
#[test]
fn a_cancelled_acquire_leaves_the_queue() {
    for workers in ["1", "2"] {
        let server = start(&["--workers", workers]);
        let addr = server.grpc_addr().expect("a gRPC address");
        let c = GrpcClient::connect(addr);
        let mut http = Client::connect(server.local_addr());
        assert_json(&http.lock(STORE, "q", "holder", 60), 200, LOCKED);
        // The call is dropped (cancelled) once the server counts it as waiting.
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let caller = std::thread::spawn(move || {
            let client = GrpcClient::connect(addr);
            let mut grpc = tonic::client::Grpc::new(client.channel.clone());
            client.runtime.block_on(async move {
                grpc.ready().await.expect("ready");
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(ACQUIRE);
                let request = tonic::Request::new(acquire_request("q", "gone", 30_000));
                let call = grpc.unary::<_, AcquireLockResponse, _>(
                    request,
                    path,
                    tonic_prost::ProstCodec::default(),
                );
                tokio::select! {
                    answer = call => panic!("answered while it should wait: {answer:?}"),
                    _ = cancelled => {}
                }
            });
        });
        until_waiting(&c, "q", 1);
        cancel.send(()).expect("the caller waits");
        caller.join().expect("the caller's thread");
        until_waiting(&c, "q", 0);
        let next = std::thread::spawn(move || {
            let c = GrpcClient::connect(addr);
            acquire(&c, "q", "next", 30_000)
                .map(|r| r.into_inner().success)
                .map_err(|s| s.to_string())
        });
        until_waiting(&c, "q", 1);
        assert_json(&http.unlock(STORE, "q", "holder"), 200, r#"{"status":0}"#);
        assert_eq!(next.join().expect("the waiter's thread"), Ok(true));
        assert!(holder(&c, "q", "next").owned_by_caller);
        drop((http, c));
        assert!(server.shutdown(Duration::from_secs(5)));
    }
}

// A call still waiting when the server stops is answered refused, before the stop ends.
#[test]
fn shutdown_answers_a_waiting_call() {
    let server = start(&["--workers", "2"]);
    let addr = server.grpc_addr().expect("a gRPC address");
    let c = GrpcClient::connect(addr);
    let mut http = Client::connect(server.local_addr());
    assert_json(&http.lock(STORE, "s", "holder", 60), 200, LOCKED);
    drop(http);
    let waiter = std::thread::spawn(move || {
        let c = GrpcClient::connect(addr);
        acquire(&c, "s", "w", 60_000)
            .map(|r| r.into_inner().success)
            .map_err(|s| s.to_string())
    });
    until_waiting(&c, "s", 1);
    drop(c);
    let started = Instant::now();
    assert!(server.shutdown(Duration::from_secs(10)));
    assert_eq!(waiter.join().expect("the waiter's thread"), Ok(false));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the stop waited for the call: {:?}",
        started.elapsed()
    );
}

// With a data dir, a granted acquire and a renewal carry the lease's fencing token.
#[test]
fn fences_come_in_metadata() {
    let dir = std::env::temp_dir().join(format!("dlockd-grpc-ext-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = start(&["--data-dir", dir.to_str().expect("a UTF-8 temp dir")]);
    let c = GrpcClient::connect(server.grpc_addr().expect("a gRPC address"));
    let fence = |metadata: &tonic::metadata::MetadataMap| -> u64 {
        metadata
            .get("dapr-lock-fence")
            .expect("dapr-lock-fence")
            .to_str()
            .expect("ASCII")
            .parse()
            .expect("a number")
    };
    let granted = acquire(&c, "f", "a", 0).expect("granted");
    assert!(granted.get_ref().success);
    let token = fence(granted.metadata());
    let renewed = renew(&c, "f", "a", 30).expect("renewed");
    assert_eq!(renewed.get_ref().status, 0);
    assert_eq!(
        fence(renewed.metadata()),
        token,
        "a renewal keeps its token"
    );
    let refused = acquire(&c, "f", "b", 0).expect("an answer");
    assert!(!refused.get_ref().success);
    assert!(refused.metadata().get("dapr-lock-fence").is_none());
    drop(c);
    assert!(server.shutdown(Duration::from_secs(5)));
    let _ = std::fs::remove_dir_all(&dir);
}
