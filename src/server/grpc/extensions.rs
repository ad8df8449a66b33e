//! `dlockd.v1.LockExtensions` (proto/dlockd/v1/lock_extensions.proto): `RenewLock`,
//! `AcquireLock` and `GetLockHolder`, the HTTP routes `.../renew`, `.../acquire` and
//! `.../holder` over gRPC. Validated by the same [`LockValidator`] as the HTTP routes (daprd's
//! order, messages and status codes) and decided by the shard that owns the key, as the
//! `Dapr` service's lock methods are. An `AcquireLock` whose caller cancels (or goes) leaves
//! its queue.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::front::{status_of, token_of, Front};
use super::unary::{unary, BoxFuture, HttpRequest, Served};
use crate::api::{lease_error_rejection, Answer, Operation};

/// The service's name on the wire.
pub const SERVICE: &str = "dlockd.v1.LockExtensions";

/// `dlockd.v1.RenewLockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RenewLockRequest {
    #[prost(string, tag = "1")]
    pub store_name: String,
    #[prost(string, tag = "2")]
    pub resource_id: String,
    #[prost(string, tag = "3")]
    pub lock_owner: String,
    #[prost(int32, tag = "4")]
    pub expiry_in_seconds: i32,
}

/// `dlockd.v1.RenewLockResponse`; `status` is its `Status` enum, numbered as unlock's.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RenewLockResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `dlockd.v1.AcquireLockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AcquireLockRequest {
    #[prost(string, tag = "1")]
    pub store_name: String,
    #[prost(string, tag = "2")]
    pub resource_id: String,
    #[prost(string, tag = "3")]
    pub lock_owner: String,
    #[prost(int32, tag = "4")]
    pub expiry_in_seconds: i32,
    #[prost(int32, tag = "5")]
    pub wait_timeout_ms: i32,
}

/// `dlockd.v1.AcquireLockResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AcquireLockResponse {
    #[prost(bool, tag = "1")]
    pub success: bool,
}

/// `dlockd.v1.GetLockHolderRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetLockHolderRequest {
    #[prost(string, tag = "1")]
    pub store_name: String,
    #[prost(string, tag = "2")]
    pub resource_id: String,
    #[prost(string, tag = "3")]
    pub lock_owner: String,
}

/// `dlockd.v1.GetLockHolderResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetLockHolderResponse {
    #[prost(bool, tag = "1")]
    pub locked: bool,
    #[prost(bool, tag = "2")]
    pub owned_by_caller: bool,
    #[prost(int64, tag = "3")]
    pub remaining_ms: i64,
    #[prost(int32, tag = "4")]
    pub waiters: i32,
}

impl Front {
    async fn renew_lock(
        &self,
        request: Request<RenewLockRequest>,
    ) -> Result<Response<RenewLockResponse>, Status> {
        self.authenticate(token_of(request.metadata()))?;
        let r = request.into_inner();
        let op = self
            .validator
            .check(
                Operation::Renew,
                r.store_name.as_bytes(),
                r.resource_id.as_bytes(),
                r.lock_owner.as_bytes(),
                r.expiry_in_seconds,
                0,
            )
            .map_err(status_of)?;
        match self.decide(op).await? {
            Answer::Renew(status) => Ok(Response::new(RenewLockResponse {
                status: status as i32,
            })),
            Answer::Renewed { token, .. } | Answer::StoreRenewed { token } => {
                Ok(fenced(RenewLockResponse { status: 0 }, token))
            }
            other => Err(unexpected(Operation::Renew, other)),
        }
    }

    async fn acquire_lock(
        &self,
        request: Request<AcquireLockRequest>,
    ) -> Result<Response<AcquireLockResponse>, Status> {
        self.authenticate(token_of(request.metadata()))?;
        let r = request.into_inner();
        let op = self
            .validator
            .check(
                Operation::Acquire,
                r.store_name.as_bytes(),
                r.resource_id.as_bytes(),
                r.lock_owner.as_bytes(),
                r.expiry_in_seconds,
                r.wait_timeout_ms,
            )
            .map_err(status_of)?;
        match self.decide(op).await? {
            Answer::TryLock(Ok(success)) => Ok(Response::new(AcquireLockResponse { success })),
            Answer::Granted { token, .. } | Answer::StoreGranted { token } => {
                Ok(fenced(AcquireLockResponse { success: true }, token))
            }
            Answer::TryLock(Err(cause)) => {
                Err(status_of(lease_error_rejection(Operation::Acquire, cause)))
            }
            other => Err(unexpected(Operation::Acquire, other)),
        }
    }

    async fn get_lock_holder(
        &self,
        request: Request<GetLockHolderRequest>,
    ) -> Result<Response<GetLockHolderResponse>, Status> {
        self.authenticate(token_of(request.metadata()))?;
        let r = request.into_inner();
        let op = self
            .validator
            .check(
                Operation::Holder,
                r.store_name.as_bytes(),
                r.resource_id.as_bytes(),
                r.lock_owner.as_bytes(),
                0,
                0,
            )
            .map_err(status_of)?;
        match self.decide(op).await? {
            Answer::Holder(h) => Ok(Response::new(GetLockHolderResponse {
                locked: h.locked,
                owned_by_caller: h.owned_by_caller,
                remaining_ms: i64::try_from(h.remaining_ms).unwrap_or(i64::MAX),
                waiters: i32::try_from(h.waiters).unwrap_or(i32::MAX),
            })),
            other => Err(unexpected(Operation::Holder, other)),
        }
    }
}

/// An answer with the lease's fencing token in the response metadata `dapr-lock-fence`.
fn fenced<R>(message: R, token: u64) -> Response<R> {
    let mut response = Response::new(message);
    response
        .metadata_mut()
        .insert("dapr-lock-fence", token.into());
    response
}

/// A decision that does not answer the operation asked: a broken invariant, refused rather
/// than answered wrongly.
fn unexpected(op: Operation, answer: Answer) -> Status {
    Status::internal(format!("{answer:?} is not an answer to {op:?}"))
}

/// The service's methods.
const METHODS: [&str; 3] = ["RenewLock", "AcquireLock", "GetLockHolder"];

/// Whether the service has `method`.
pub(super) fn has(method: &str) -> bool {
    METHODS.contains(&method)
}

/// Serves a call of `method`, one of [`METHODS`].
pub(super) fn route(method: &str, front: Arc<Front>, request: HttpRequest) -> BoxFuture<Served> {
    match method {
        "RenewLock" => Box::pin(unary(front, renew_handler, request)),
        "AcquireLock" => Box::pin(unary(front, acquire_handler, request)),
        _ => Box::pin(unary(front, holder_handler, request)),
    }
}

fn renew_handler(
    front: Arc<Front>,
    request: Request<RenewLockRequest>,
) -> BoxFuture<Result<Response<RenewLockResponse>, Status>> {
    Box::pin(async move { front.renew_lock(request).await })
}

fn acquire_handler(
    front: Arc<Front>,
    request: Request<AcquireLockRequest>,
) -> BoxFuture<Result<Response<AcquireLockResponse>, Status>> {
    Box::pin(async move { front.acquire_lock(request).await })
}

fn holder_handler(
    front: Arc<Front>,
    request: Request<GetLockHolderRequest>,
) -> BoxFuture<Result<Response<GetLockHolderResponse>, Status>> {
    Box::pin(async move { front.get_lock_holder(request).await })
}
