//! The gRPC face: `dapr.proto.runtime.v1.Dapr`'s `TryLockAlpha1`, `UnlockAlpha1` and
//! `GetMetadata` on `--grpc-listen`, for the SDKs that take locks over gRPC (JavaScript in gRPC
//! mode, Python, Go, Java, .NET).
//!
//! tonic serves HTTP/2 on a tokio current-thread runtime in a thread of its own, so nothing
//! of it runs on a worker. A request is validated here exactly as the HTTP routes validate it
//! (the same [`LockValidator`]: daprd's order and messages), then sent to the shard that owns
//! its key through that worker's inbox, like a forwarded HTTP request; the worker decides it on
//! its own table (or sends it to its Redis connection) and answers on a oneshot channel. So a
//! lock taken over HTTP is held for gRPC callers and the reverse. `GetMetadata` (what the
//! JavaScript SDK calls before its first call and for its health check) answers as a daprd
//! whose only components are these lock stores. Every other method answers `UNIMPLEMENTED`.
//!
//! Errors are daprd's, byte for byte where daprd's are fixed: with `DAPR_API_TOKEN` set, every
//! method (an unknown one too) first checks the `dapr-api-token` metadata and refuses a call
//! without the right one as daprd does (`Unauthenticated` `Unauthorized`, with a
//! `google.rpc.ErrorInfo` detail naming why); lock errors are statuses with daprd's codes (not
//! configured → `FailedPrecondition`; malformed, empty or unknown → `InvalidArgument`; a store's
//! failure → `Internal`) and the same message text as over HTTP, without details; a request
//! over 4 MiB is `ResourceExhausted` with grpc-go's message. A granted try-lock with
//! `--data-dir` carries its fencing token in the response metadata `dapr-lock-fence`.
//!
//! Here: the services' routing and the listener's thread. `front.rs` holds what every call
//! goes through (the token, validation, the way to a shard) and daprd's answers; `unary.rs`
//! one unary call's decoding, encoding and grpc-go's error text; `extensions.rs` the
//! `dlockd.v1.LockExtensions` service; `authority.rs` what a Unix socket's connections are
//! read through; `proto.rs` the messages.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::{http, Service};
use tonic::{Request, Response, Status};

mod authority;
mod extensions;
mod front;
mod proto;
mod unary;

pub use extensions::SERVICE as EXTENSIONS_SERVICE;

use proto::{
    GetMetadataRequest, GetMetadataResponse, TryLockRequest, TryLockResponse, UnlockRequest,
    UnlockResponse,
};

use super::shared::Shared;
use super::socket::Listener;
use crate::api::{ApiConfig, LockValidator};
use crate::shard::ShardMap;
use front::{metadata_of, Front};
use unary::{unary, BoxFuture};

/// The service's name on the wire.
pub const SERVICE: &str = "dapr.proto.runtime.v1.Dapr";
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
        let path = request.uri().path().to_owned();
        let (service, method) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .unwrap_or_default();
        match (service, method) {
            (SERVICE, "TryLockAlpha1") => Box::pin(unary(front, try_lock_handler, request)),
            (SERVICE, "UnlockAlpha1") => Box::pin(unary(front, unlock_handler, request)),
            (SERVICE, "GetMetadata") => Box::pin(unary(front, get_metadata_handler, request)),
            (extensions::SERVICE, method) if extensions::has(method) => {
                extensions::route(method, front, request)
            }
            _ => {
                // daprd checks the token before it looks for a method.
                let given = request
                    .headers()
                    .get("dapr-api-token")
                    .map(|v| v.as_bytes());
                let refused = match front.authenticate(given) {
                    Err(unauthorized) => unauthorized,
                    Ok(()) => Status::unimplemented(format!("{path} is not served by dlockd")),
                };
                Box::pin(async move { Ok(refused.into_http()) })
            }
        }
    }
}

fn try_lock_handler(
    front: Arc<Front>,
    request: Request<TryLockRequest>,
) -> BoxFuture<Result<Response<TryLockResponse>, Status>> {
    Box::pin(async move { front.try_lock(request).await })
}

fn get_metadata_handler(
    front: Arc<Front>,
    request: Request<GetMetadataRequest>,
) -> BoxFuture<Result<Response<GetMetadataResponse>, Status>> {
    Box::pin(async move { front.get_metadata(&request) })
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
pub(super) fn start(listeners: Vec<Listener>, shared: Arc<Shared>) -> std::io::Result<Grpc> {
    let addrs = listeners
        .iter()
        .filter_map(|l| l.tcp_addr().transpose())
        .collect::<std::io::Result<Vec<_>>>()?;
    let config = &shared.config;
    let front = Arc::new(Front {
        validator: LockValidator::new(ApiConfig {
            stores: config.stores.clone(),
            app_id: config.app_id.clone(),
            api_token: config.api_token.clone(),
            max_id_bytes: config.max_id_bytes,
            max_expiry_s: config.max_expiry_s,
            max_wait_ms: config.max_wait_ms(),
            store_types: Vec::new(),
        }),
        router: ShardMap::new(config.workers),
        metadata: metadata_of(config),
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
    listener: Listener,
    front: Arc<Front>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let name = listener.name();
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let server = tonic::transport::Server::builder();
    let service = DaprService { front };
    let served = match listener {
        Listener::Tcp(l) => match tokio::net::TcpListener::from_std(l) {
            Ok(l) => {
                let incoming =
                    tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
                server
                    .serve_with_incoming_shutdown(service, incoming, stopped)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        },
        Listener::Unix(l) => match tokio::net::UnixListener::from_std(l) {
            Ok(l) => {
                // See `authority.rs`: what gRPC's C core sends as the authority on a socket.
                let incoming = tokio_stream::StreamExt::map(
                    tokio_stream::wrappers::UnixListenerStream::new(l),
                    |accepted| accepted.map(authority::FixAuthority::new),
                );
                server
                    .serve_with_incoming_shutdown(service, incoming, stopped)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        },
    };
    let Err(why) = served else {
        return;
    };
    crate::log::write(
        crate::log::Level::Error,
        format_args!("the gRPC listener on {name} stopped: {why}"),
    );
}
