//! The one error type of the HTTP layer and the answer that goes with each error.
//!
//! Every error ends the connection: after a framing error the server can no longer tell
//! where the next request starts, so each answer carries `Connection: close`. The words
//! follow Go's net/http (what daprd runs on), except the too-large body, whose answer is the
//! Dapr contract's exact `ERR_BODY_READ` JSON.

use std::fmt;

/// Why a request could not be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request line or a header line is not HTTP/1.x syntax (bad token, stray control
    /// byte, bad line ending, bad request target).
    Malformed,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1 (HTTP/2.0, HTTP/0.9, ...).
    VersionNotSupported,
    /// The head (request line and headers) is longer than `max_header_bytes`.
    HeadTooLarge,
    /// More header lines than [`MAX_HEADERS`](super::limits::MAX_HEADERS).
    TooManyHeaders,
    /// An HTTP/1.1 request without `Host`, or any request with more than one (RFC 9112 §3.2).
    BadHost,
    /// `Content-Length` is not a plain decimal number that fits in 64 bits, or several
    /// `Content-Length` headers disagree.
    BadContentLength,
    /// `Content-Length` and `Transfer-Encoding` together: two framings, a smuggling attempt.
    LengthWithTransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request, which has no such framing.
    TransferEncodingOnHttp10,
    /// A `Transfer-Encoding` other than one `chunked`.
    UnsupportedTransferEncoding,
    /// The chunked body breaks RFC 9112 §7.1 (bad size, missing CRLF, bad trailer).
    BadChunk,
    /// The chunked body spends more bytes on framing (size lines, extensions, trailers)
    /// than the limit allows.
    ChunkFramingTooLarge,
    /// The body is longer than `max_body_bytes`.
    BodyTooLarge,
}

/// Builds a closing answer from literals, so every answer is one static byte string.
/// The `Content-Length` literal is checked against the body by a unit test.
macro_rules! closing_answer {
    ($status:literal, $content_type:literal, $length:literal, $body:literal) => {
        concat!(
            "HTTP/1.1 ",
            $status,
            "\r\nContent-Type: ",
            $content_type,
            "\r\nContent-Length: ",
            $length,
            "\r\nConnection: close\r\n\r\n",
            $body
        )
        .as_bytes()
    };
}

const BAD_REQUEST: &[u8] = closing_answer!(
    "400 Bad Request",
    "text/plain; charset=utf-8",
    "15",
    "400 Bad Request"
);
const HEADERS_TOO_LARGE: &[u8] = closing_answer!(
    "431 Request Header Fields Too Large",
    "text/plain; charset=utf-8",
    "35",
    "431 Request Header Fields Too Large"
);
const NOT_IMPLEMENTED: &[u8] = closing_answer!(
    "501 Not Implemented",
    "text/plain; charset=utf-8",
    "29",
    "Unsupported transfer encoding"
);
const VERSION_NOT_SUPPORTED: &[u8] = closing_answer!(
    "505 HTTP Version Not Supported",
    "text/plain; charset=utf-8",
    "30",
    "505 HTTP Version Not Supported"
);
/// The contract's answer to a body over the limit: daprd's words, and 400, not 413.
const BODY_TOO_LARGE: &[u8] = closing_answer!(
    "400 Bad Request",
    "application/json",
    "87",
    r#"{"errorCode":"ERR_BODY_READ","message":"failed to read request body: stream too large"}"#
);

impl HttpError {
    /// The complete response to send before closing the connection (status line, headers
    /// including `Connection: close`, body).
    pub fn response(&self) -> &'static [u8] {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => HEADERS_TOO_LARGE,
            HttpError::UnsupportedTransferEncoding => NOT_IMPLEMENTED,
            HttpError::VersionNotSupported => VERSION_NOT_SUPPORTED,
            HttpError::BodyTooLarge => BODY_TOO_LARGE,
            HttpError::Malformed
            | HttpError::BadHost
            | HttpError::BadContentLength
            | HttpError::LengthWithTransferEncoding
            | HttpError::TransferEncodingOnHttp10
            | HttpError::BadChunk
            | HttpError::ChunkFramingTooLarge => BAD_REQUEST,
        }
    }

    /// The status code of [`HttpError::response`], for logs and counters.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::VersionNotSupported => 505,
            HttpError::BodyTooLarge
            | HttpError::Malformed
            | HttpError::BadHost
            | HttpError::BadContentLength
            | HttpError::LengthWithTransferEncoding
            | HttpError::TransferEncodingOnHttp10
            | HttpError::BadChunk
            | HttpError::ChunkFramingTooLarge => 400,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::Malformed => "malformed HTTP request",
            HttpError::VersionNotSupported => "unsupported protocol version",
            HttpError::HeadTooLarge => "request head too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::BadHost => "missing or repeated Host header",
            HttpError::BadContentLength => "invalid Content-Length",
            HttpError::LengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding present"
            }
            HttpError::TransferEncodingOnHttp10 => "Transfer-Encoding on an HTTP/1.0 request",
            HttpError::UnsupportedTransferEncoding => "unsupported transfer encoding",
            HttpError::BadChunk => "malformed chunked encoding",
            HttpError::ChunkFramingTooLarge => "chunked encoding contains too much non-data",
            HttpError::BodyTooLarge => "request body too large",
        })
    }
}

impl HttpError {
    /// Every framing error, once each.
    pub const ALL: [HttpError; 12] = [
        HttpError::Malformed,
        HttpError::VersionNotSupported,
        HttpError::HeadTooLarge,
        HttpError::TooManyHeaders,
        HttpError::BadHost,
        HttpError::BadContentLength,
        HttpError::LengthWithTransferEncoding,
        HttpError::TransferEncodingOnHttp10,
        HttpError::UnsupportedTransferEncoding,
        HttpError::BadChunk,
        HttpError::ChunkFramingTooLarge,
        HttpError::BodyTooLarge,
    ];
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header fields with lower-case names.
    type Fields = Vec<(String, Vec<u8>)>;

    /// Splits a response into (status, headers, body) with httparse.
    fn parse(bytes: &[u8]) -> (u16, Fields, Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("not a complete response: {other:?}"),
        };
        let fields = resp
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        (resp.code.unwrap_or(0), fields, bytes[n..].to_vec())
    }

    #[test]
    fn every_answer_is_well_formed_closes_and_has_the_right_length() {
        // Protects: each static answer parses as HTTP/1.1, carries `Connection: close`, a
        // Content-Length equal to its body, and the status that `status()` reports.
        for e in HttpError::ALL {
            let bytes = e.response();
            assert!(bytes.starts_with(b"HTTP/1.1 "), "{e:?}");
            let (status, headers, body) = parse(bytes);
            assert_eq!(status, e.status(), "{e:?}");
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            assert_eq!(get("connection"), b"close", "{e:?}");
            assert_eq!(
                get("content-length"),
                body.len().to_string().into_bytes(),
                "{e:?}"
            );
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn body_too_large_is_the_contract_answer() {
        // Protects: the contract's exact ERR_BODY_READ answer (400, JSON), not a 413.
        let (status, headers, body) = parse(HttpError::BodyTooLarge.response());
        assert_eq!(status, 400);
        assert!(headers
            .iter()
            .any(|(n, v)| n == "content-type" && v == b"application/json"));
        assert_eq!(
            body,
            br#"{"errorCode":"ERR_BODY_READ","message":"failed to read request body: stream too large"}"#
        );
    }

    #[test]
    fn answers_match_go_words_and_write_response() {
        // Protects: the plain-text answers use Go's status words and bodies, and are exactly
        // what write_response produces for the same parts (one response format).
        let cases: [(HttpError, u16, &str, &[u8]); 4] = [
            (
                HttpError::Malformed,
                400,
                "text/plain; charset=utf-8",
                b"400 Bad Request",
            ),
            (
                HttpError::HeadTooLarge,
                431,
                "text/plain; charset=utf-8",
                b"431 Request Header Fields Too Large",
            ),
            (
                HttpError::UnsupportedTransferEncoding,
                501,
                "text/plain; charset=utf-8",
                b"Unsupported transfer encoding",
            ),
            (
                HttpError::VersionNotSupported,
                505,
                "text/plain; charset=utf-8",
                b"505 HTTP Version Not Supported",
            ),
        ];
        for (e, status, ct, body) in cases {
            let mut out = Vec::new();
            crate::http::write_response(&mut out, status, ct, body, crate::http::Connection::Close);
            assert_eq!(out, e.response(), "{e:?}");
        }
    }
}
