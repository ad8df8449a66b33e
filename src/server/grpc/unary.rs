//! One unary call as tonic hands it over: decoded, handled, encoded, and its error answers
//! made as grpc-go makes them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::{http, Service};
use tonic::{Request, Response, Status};

use super::front::Front;

pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// A call as tonic hands it over, and its answer.
pub(super) type HttpRequest = http::Request<tonic::body::Body>;
pub(super) type Served = Result<http::Response<tonic::body::Body>, Infallible>;

/// Serves one call of a unary method: decodes its request, runs `handle`, encodes the answer.
pub(super) async fn unary<M, R>(
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
pub(super) fn as_grpc_go(
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
pub(super) fn escape_as_grpc_go(headers: &mut http::HeaderMap) {
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
pub(super) fn percent_decode(text: &[u8]) -> Vec<u8> {
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
pub(super) fn too_large(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

/// A unary method's handler.
pub(super) type Handler<M, R> =
    fn(Arc<Front>, Request<M>) -> BoxFuture<Result<Response<R>, Status>>;

/// One unary method: its handler, bound to the front.
pub(super) struct Unary<M, R> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
