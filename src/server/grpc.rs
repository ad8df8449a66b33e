//! The gRPC face: `dapr.proto.runtime.v1.Dapr`'s `TryLockAlpha1` and `UnlockAlpha1` on
//! `--grpc-listen`, for the SDKs that take locks over gRPC (Python, Go, Java, .NET).
//!
//! tonic serves HTTP/2 on a tokio current-thread runtime in a thread of its own, so nothing
//! of it runs on a worker. A request is validated here exactly as the HTTP routes validate it
//! (the same [`LockValidator`]: daprd's order, messages and the `dapr-api-token` check), then
//! sent to the shard that owns its key through that worker's inbox, like a forwarded HTTP
//! request; the worker decides it on its own table (or sends it to its Redis connection) and
//! answers on a oneshot channel. So a lock taken over HTTP is held for gRPC callers and the
//! reverse. Every other method of the service answers `UNIMPLEMENTED`.
//!
//! Errors are gRPC statuses with daprd's codes (not configured → `FailedPrecondition`;
//! malformed, empty or unknown → `InvalidArgument`; a store's failure → `Internal`) and the
//! same message text as over HTTP. A granted try-lock with `--data-dir` carries its fencing
//! token in the response metadata `dapr-lock-fence`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::{http, Service};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::{Mail, RemoteLock, Shared};
use crate::api::{
    lease_error_rejection, store_failure_rejection, Answer, ApiConfig, LockOp, LockValidator,
    RejectCode, Rejection,
};
use crate::lease::Key;
use crate::shard::Router;

/// The service's name on the wire.
pub const SERVICE: &str = "dapr.proto.runtime.v1.Dapr";
/// How long a request waits for room in its shard's inbox before it is refused.
const INBOX_WAIT: Duration = Duration::from_secs(2);

/// `dapr.proto.runtime.v1.TryLockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TryLockRequest {
    #[prost(string, tag = "1")]
    pub store_name: String,
    #[prost(string, tag = "2")]
    pub resource_id: String,
    #[prost(string, tag = "3")]
    pub lock_owner: String,
    #[prost(int32, tag = "4")]
    pub expiry_in_seconds: i32,
}

/// `dapr.proto.runtime.v1.TryLockResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TryLockResponse {
    #[prost(bool, tag = "1")]
    pub success: bool,
}

/// `dapr.proto.runtime.v1.UnlockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnlockRequest {
    #[prost(string, tag = "1")]
    pub store_name: String,
    #[prost(string, tag = "2")]
    pub resource_id: String,
    #[prost(string, tag = "3")]
    pub lock_owner: String,
}

/// `dapr.proto.runtime.v1.UnlockResponse`; `status` is the `Status` enum (0 success, 1 lock
/// does not exist, 2 belongs to others, 3 internal error), an int32 on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnlockResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// What the gRPC thread needs: the validation, the routing, and the workers' inboxes.
struct Front {
    validator: LockValidator,
    router: Router,
    shared: Arc<Shared>,
}

impl Front {
    /// daprd's token check: a missing token and a wrong one are both `Unauthenticated`.
    fn authenticate(&self, metadata: &MetadataMap) -> Result<(), Status> {
        if !self.validator.wants_token() {
            return Ok(());
        }
        let Some(given) = metadata.get("dapr-api-token") else {
            return Err(Status::unauthenticated(
                "missing api token in request metadata",
            ));
        };
        if self.validator.token_ok(Some(given.as_bytes())) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "authentication error: api token mismatch",
            ))
        }
    }

    /// Sends `op` to the shard that owns its key and waits for the decision.
    async fn decide(&self, op: LockOp<'_>) -> Result<Answer, Status> {
        let shard = self.router.shard_of(op.store, op.resource);
        let (answer, answered) = tokio::sync::oneshot::channel();
        // A batch of one: messages between threads travel in batches.
        let mut mail = vec![Mail::Remote(RemoteLock {
            kind: op.kind,
            store: op.store,
            key: Key::new(op.resource, op.owner),
            answer,
        })];
        let inbox = &self.shared.inboxes[shard.0];
        let deadline = tokio::time::Instant::now() + INBOX_WAIT;
        loop {
            if self.shared.shutting_down() {
                return Err(Status::unavailable("dlockd is shutting down"));
            }
            match inbox.send_requests(mail) {
                Ok(()) => break,
                Err(back) if tokio::time::Instant::now() < deadline => {
                    mail = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(_) => return Err(Status::unavailable("the shard's inbox stayed full")),
            }
        }
        match answered.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(failure)) => Err(status_of(store_failure_rejection(
                failure.try_lock,
                &failure.cause,
            ))),
            Err(_) => Err(Status::unavailable("dlockd is shutting down")),
        }
    }

    async fn try_lock(
        &self,
        request: Request<TryLockRequest>,
    ) -> Result<Response<TryLockResponse>, Status> {
        self.authenticate(request.metadata())?;
        let r = request.into_inner();
        let op = self
            .validator
            .try_lock(
                r.store_name.as_bytes(),
                r.resource_id.as_bytes(),
                r.lock_owner.as_bytes(),
                r.expiry_in_seconds,
            )
            .map_err(status_of)?;
        match self.decide(op).await? {
            Answer::TryLock(Ok(success)) => Ok(Response::new(TryLockResponse { success })),
            Answer::Granted { token, .. } => {
                let mut response = Response::new(TryLockResponse { success: true });
                response
                    .metadata_mut()
                    .insert("dapr-lock-fence", token.into());
                Ok(response)
            }
            Answer::TryLock(Err(cause)) => Err(status_of(lease_error_rejection(cause))),
            Answer::Unlock(_) => Err(Status::internal("an unlock answer to a try-lock")),
        }
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        self.authenticate(request.metadata())?;
        let r = request.into_inner();
        let op = self
            .validator
            .unlock(
                r.store_name.as_bytes(),
                r.resource_id.as_bytes(),
                r.lock_owner.as_bytes(),
            )
            .map_err(status_of)?;
        match self.decide(op).await? {
            Answer::Unlock(status) => Ok(Response::new(UnlockResponse {
                status: status as i32,
            })),
            _ => Err(Status::internal("a try-lock answer to an unlock")),
        }
    }
}

fn status_of(rejection: Rejection) -> Status {
    let code = match rejection.code {
        RejectCode::FailedPrecondition => tonic::Code::FailedPrecondition,
        RejectCode::InvalidArgument => tonic::Code::InvalidArgument,
        RejectCode::Internal => tonic::Code::Internal,
    };
    Status::new(code, rejection.message)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The `Dapr` service: routes the two lock methods, refuses the rest.
#[derive(Clone)]
struct DaprService {
    front: Arc<Front>,
}

impl Service<http::Request<tonic::body::Body>> for DaprService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let front = self.front.clone();
        let path = request.uri().path();
        let method = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(SERVICE))
            .and_then(|p| p.strip_prefix('/'));
        match method {
            Some("TryLockAlpha1") => Box::pin(async move {
                let method = Unary {
                    front,
                    handle: try_lock_handler,
                };
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(method, request).await)
            }),
            Some("UnlockAlpha1") => Box::pin(async move {
                let method = Unary {
                    front,
                    handle: unlock_handler,
                };
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(method, request).await)
            }),
            _ => {
                let what = path.to_string();
                Box::pin(async move {
                    Ok(
                        Status::unimplemented(format!("{what} is not served by dlockd"))
                            .into_http(),
                    )
                })
            }
        }
    }
}

/// A unary method's handler.
type Handler<M, R> = fn(Arc<Front>, Request<M>) -> BoxFuture<Result<Response<R>, Status>>;

/// One unary method: its handler, bound to the front.
struct Unary<M, R> {
    front: Arc<Front>,
    handle: Handler<M, R>,
}

impl<M, R> Service<Request<M>> for Unary<M, R> {
    type Response = Response<R>;
    type Error = Status;
    type Future = BoxFuture<Result<Response<R>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<M>) -> Self::Future {
        (self.handle)(self.front.clone(), request)
    }
}

fn try_lock_handler(
    front: Arc<Front>,
    request: Request<TryLockRequest>,
) -> BoxFuture<Result<Response<TryLockResponse>, Status>> {
    Box::pin(async move { front.try_lock(request).await })
}

fn unlock_handler(
    front: Arc<Front>,
    request: Request<UnlockRequest>,
) -> BoxFuture<Result<Response<UnlockResponse>, Status>> {
    Box::pin(async move { front.unlock(request).await })
}

/// The running gRPC listener: its thread and how to stop it.
pub(super) struct Grpc {
    addrs: Vec<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Grpc {
    pub(super) fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting, lets the calls in flight finish (they need the workers, which are
    /// still running), and waits for the thread, at most `timeout`: a peer that keeps a call
    /// open does not hold the shutdown.
    pub(super) fn stop(mut self, timeout: Duration) {
        self.stop.send_replace(true);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + timeout;
        while !thread.is_finished() {
            if std::time::Instant::now() >= deadline {
                crate::log::write(
                    crate::log::Level::Warn,
                    format_args!("gRPC calls still open after {timeout:?}; not waiting for them"),
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = thread.join();
    }
}

impl Drop for Grpc {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Serves `listeners` on a thread of its own until stopped.
pub(super) fn start(
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<Shared>,
) -> std::io::Result<Grpc> {
    let addrs = listeners
        .iter()
        .map(std::net::TcpListener::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?;
    let config = &shared.config;
    let front = Arc::new(Front {
        validator: LockValidator::new(ApiConfig {
            stores: config.stores.clone(),
            app_id: config.app_id.clone(),
            api_token: config.api_token.clone(),
            max_id_bytes: config.max_id_bytes,
            max_expiry_s: config.max_expiry_s,
            store_types: Vec::new(),
        }),
        router: Router::new(config.workers),
        shared: shared.clone(),
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("dlockd-grpc".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut served = Vec::with_capacity(listeners.len());
                for listener in listeners {
                    served.push(tokio::spawn(serve(
                        listener,
                        front.clone(),
                        stopped.clone(),
                    )));
                }
                for one in served {
                    let _ = one.await;
                }
            })
        })?;
    Ok(Grpc {
        addrs,
        stop,
        thread: Some(thread),
    })
}

/// Serves one listening socket until `stop` turns true.
async fn serve(
    listener: std::net::TcpListener,
    front: Arc<Front>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            crate::log::write(
                crate::log::Level::Error,
                format_args!("gRPC listener on {addr:?}: {e}"),
            );
            return;
        }
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let served = tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(DaprService { front }, incoming, stopped)
        .await;
    if let Err(e) = served {
        crate::log::write(
            crate::log::Level::Error,
            format_args!("gRPC listener on {addr:?} stopped: {e}"),
        );
    }
}
