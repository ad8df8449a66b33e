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

mod authority;
mod extensions;
mod proto;

pub use extensions::SERVICE as EXTENSIONS_SERVICE;

pub use proto::{
    ErrorInfo, GetMetadataRequest, GetMetadataResponse, ProtoAny, RpcStatus, TryLockRequest,
    TryLockResponse, UnlockRequest, UnlockResponse, ERROR_INFO_TYPE,
};

use super::shared::Shared;
use super::socket::Listener;
use crate::api::{
    lease_error_rejection, store_failure_rejection, Answer, ApiConfig, LockOp, LockValidator,
    RejectCode, Rejection,
};
use crate::lease::Key;
use crate::shard::ShardMap;
use crate::shard::{Mail, RemoteLock};

/// The service's name on the wire.
pub const SERVICE: &str = "dapr.proto.runtime.v1.Dapr";
/// How long a request waits for room in its shard's inbox before it is refused.
const INBOX_WAIT: Duration = Duration::from_secs(2);

/// What the gRPC thread needs: the validation, the routing, the workers' inboxes, and the
/// metadata answer.
struct Front {
    validator: LockValidator,
    router: ShardMap,
    shared: Arc<Shared>,
    metadata: GetMetadataResponse,
}

impl Front {
    /// daprd's token check, made before a method runs (and before an unknown method is
    /// refused): a missing token and a wrong one are both `Unauthenticated`, answered as
    /// daprd answers them (see [`unauthorized`]). `given` is the first `dapr-api-token` value.
    fn authenticate(&self, given: Option<&[u8]>) -> Result<(), Status> {
        if !self.validator.wants_token() {
            return Ok(());
        }
        let Some(given) = given else {
            return Err(unauthorized("missing api token in request metadata"));
        };
        if self.validator.token_ok(Some(given)) {
            Ok(())
        } else {
            Err(unauthorized("authentication error: api token mismatch"))
        }
    }

    /// `GetMetadata`: what the JavaScript SDK asks before its first call and for its health
    /// check.
    fn get_metadata(
        &self,
        request: &Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        self.authenticate(token_of(request.metadata()))?;
        Ok(Response::new(self.metadata.clone()))
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
                failure.op,
                &failure.error.to_string(),
            ))),
            Err(_) => Err(Status::unavailable("dlockd is shutting down")),
        }
    }

    async fn try_lock(
        &self,
        request: Request<TryLockRequest>,
    ) -> Result<Response<TryLockResponse>, Status> {
        self.authenticate(token_of(request.metadata()))?;
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
            Answer::TryLock(Err(cause)) => Err(status_of(lease_error_rejection(
                crate::api::Operation::TryLock,
                cause,
            ))),
            Answer::Unlock(_) | Answer::Renew(_) | Answer::Renewed { .. } | Answer::Holder(_) => {
                Err(Status::internal("another operation's answer to a try-lock"))
            }
        }
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        self.authenticate(token_of(request.metadata()))?;
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

/// The first `dapr-api-token` value of a call's metadata.
fn token_of(metadata: &MetadataMap) -> Option<&[u8]> {
    metadata.get("dapr-api-token").map(|v| v.as_bytes())
}

/// daprd's answer to a call without the right token, as its `ErrorFromHTTPResponseCode` builds
/// it for HTTP status 401: code `Unauthenticated`, message `Unauthorized` (the HTTP status
/// text), and in `grpc-status-details-bin` a `google.rpc.Status` of the same code and message
/// with one `google.rpc.ErrorInfo`: reason `Unauthorized`, domain `dapr.io`, metadata
/// `http.code` = `401` and `http.error_message` = `text`, cut to its first 63 bytes as daprd
/// cuts it (ErrorInfo metadata values are limited to 64 characters).
fn unauthorized(text: &str) -> Status {
    const REASON: &str = "Unauthorized";
    const MAX_TEXT_BYTES: usize = 63;
    let mut cut = text.len().min(MAX_TEXT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let info = ErrorInfo {
        reason: REASON.to_string(),
        domain: "dapr.io".to_string(),
        metadata: [
            ("http.code".to_string(), "401".to_string()),
            ("http.error_message".to_string(), text[..cut].to_string()),
        ]
        .into(),
    };
    let details = RpcStatus {
        code: tonic::Code::Unauthenticated as i32,
        message: REASON.to_string(),
        details: vec![ProtoAny {
            type_url: ERROR_INFO_TYPE.to_string(),
            value: prost::Message::encode_to_vec(&info),
        }],
    };
    Status::with_details(
        tonic::Code::Unauthenticated,
        REASON,
        prost::Message::encode_to_vec(&details).into(),
    )
}

/// The `GetMetadata` answer of a daprd whose only components are these lock stores, with no
/// app channel, actors or workflows: what daprd fills in that case (its runtime version is
/// dlockd's, as over HTTP).
fn metadata_of(config: &crate::config::Config) -> GetMetadataResponse {
    let version = env!("CARGO_PKG_VERSION").to_string();
    GetMetadataResponse {
        id: config.app_id.clone(),
        registered_components: config
            .stores
            .iter()
            .zip(&config.backends)
            .map(|(name, backend)| proto::RegisteredComponents {
                name: name.clone(),
                r#type: backend.type_name().to_string(),
                version: "v1".to_string(),
                // daprd reports capabilities for state stores, pub/sub, bindings and secret
                // stores only.
                capabilities: Vec::new(),
            })
            .collect(),
        extended_metadata: [("daprRuntimeVersion".to_string(), version.clone())].into(),
        app_connection_properties: Some(proto::AppConnectionProperties {
            port: 0,
            protocol: "http".to_string(),
            channel_address: "127.0.0.1".to_string(),
            max_concurrency: 0,
        }),
        runtime_version: version,
        enabled_features: Vec::new(),
        actor_runtime: Some(proto::ActorRuntime {
            runtime_status: proto::ACTOR_RUNTIME_DISABLED,
            placement: "placement: disconnected".to_string(),
        }),
        workflows: Some(proto::MetadataWorkflows {
            connected_workers: 0,
        }),
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
/// A call as tonic hands it over, and its answer.
type HttpRequest = http::Request<tonic::body::Body>;
type Served = Result<http::Response<tonic::body::Body>, Infallible>;

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

/// Serves one call of a unary method: decodes its request, runs `handle`, encodes the answer.
async fn unary<M, R>(
    front: Arc<Front>,
    handle: Handler<M, R>,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, Infallible>
where
    M: prost::Message + Default + Send + 'static,
    R: prost::Message + Send + 'static,
{
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
    let response = grpc.unary(Unary { front, handle }, request).await;
    Ok(as_grpc_go(response))
}

/// A request message over the 4 MiB limit is refused before it is decoded (and so before the
/// token is checked), by tonic with `OutOfRange` `Error, decoded message length too large:
/// found N bytes, the limit is: L bytes`; daprd's grpc-go answers `ResourceExhausted` `grpc:
/// received message larger than max (N vs. L)`. This rewrites the first into the second; every
/// other answer passes unchanged (dlockd itself never answers `OutOfRange`).
fn as_grpc_go(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    if response.headers().get("grpc-status").map(|v| v.as_bytes()) == Some(b"11") {
        if let Some(status) = Status::from_header_map(response.headers()) {
            if let Some((found, limit)) = too_large(status.message()) {
                response = Status::resource_exhausted(format!(
                    "grpc: received message larger than max ({found} vs. {limit})"
                ))
                .into_http();
            }
        }
    }
    escape_as_grpc_go(response.headers_mut());
    response
}

/// An error's `grpc-message` as grpc-go writes it: tonic percent-encodes every byte but the
/// unreserved ones (a space is `%20`), grpc-go only those outside `0x20..=0x7E` and `%` itself
/// (the gRPC spec allows both; a client decodes both to the same text, but an application may
/// read the raw trailer).
fn escape_as_grpc_go(headers: &mut http::HeaderMap) {
    let Some(sent) = headers.get("grpc-message") else {
        return;
    };
    let text = percent_decode(sent.as_bytes());
    let mut escaped = String::with_capacity(text.len());
    for &b in &text {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            escaped.push(char::from(b));
        } else {
            escaped.push_str(&format!("%{b:02X}"));
        }
    }
    if let Ok(value) = http::HeaderValue::from_str(&escaped) {
        headers.insert("grpc-message", value);
    }
}

/// The bytes of a percent-encoded text; a `%` not followed by two hex digits stands for
/// itself.
fn percent_decode(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match (
            text[i],
            text.get(i + 1).copied().and_then(hex),
            text.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits make one byte.
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The sizes in tonic's message for a request over the limit.
fn too_large(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info_of(status: &Status) -> ErrorInfo {
        let details: RpcStatus = prost::Message::decode(status.details()).expect("a Status");
        assert_eq!(details.details.len(), 1);
        assert_eq!(details.details[0].type_url, ERROR_INFO_TYPE);
        prost::Message::decode(details.details[0].value.as_slice()).expect("an ErrorInfo")
    }

    // daprd cuts the text of its ErrorInfo to 63 bytes (`>= 63` keeps the first 63), and never
    // inside a character here.
    #[test]
    fn unauthorized_text_is_cut_as_daprd_cuts_it() {
        let short = "x".repeat(62);
        assert_eq!(
            info_of(&unauthorized(&short)).metadata["http.error_message"],
            short
        );
        let long = "y".repeat(63) + "z";
        assert_eq!(
            info_of(&unauthorized(&long)).metadata["http.error_message"],
            "y".repeat(63)
        );
        let wide = "é".repeat(40);
        let cut = &info_of(&unauthorized(&wide)).metadata["http.error_message"];
        assert_eq!(cut.len(), 62, "{cut}");
        let status = unauthorized("missing api token in request metadata");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), "Unauthorized");
        let info = info_of(&status);
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("Unauthorized", "dapr.io")
        );
        assert_eq!(info.metadata["http.code"], "401");
    }

    // grpc-message is written as grpc-go writes it: printable ASCII as it is, `%` and every
    // other byte (a UTF-8 sequence, a newline) as %XX; tonic's encoding of the same text is
    // read back exactly.
    #[test]
    fn grpc_message_is_escaped_as_grpc_go_escapes_it() {
        for (text, wire) in [
            ("lock store nope not found", "lock store nope not found"),
            ("100% sure", "100%25 sure"),
            ("caf\u{e9}\nx", "caf%C3%A9%0Ax"),
            (
                "failed: input key/keyPrefix 'a||b' can't",
                "failed: input key/keyPrefix 'a||b' can't",
            ),
        ] {
            let mut headers = Status::invalid_argument(text).into_http::<tonic::body::Body>();
            escape_as_grpc_go(headers.headers_mut());
            assert_eq!(headers.headers()["grpc-message"], wire, "{text:?}");
            let back = Status::from_header_map(headers.headers()).expect("a status");
            assert_eq!(back.message(), text);
        }
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
    }

    // tonic's message for a request over the limit is read back into its two sizes; anything
    // else is left alone.
    #[test]
    fn oversize_message_sizes() {
        assert_eq!(
            too_large(
                "Error, decoded message length too large: found 5242901 bytes, the limit is: \
                 4194304 bytes"
            ),
            Some((5_242_901, 4_194_304))
        );
        for other in [
            "",
            "Error, decoded message length too large: found many bytes, the limit is: 4 bytes",
            "lock store x not found",
        ] {
            assert_eq!(too_large(other), None, "{other}");
        }
    }
}
