//! HTTP/1.1 request framing and response writing. Knows nothing about locks.
//!
//! [`Framer`] cuts one request at a time off the front of a connection's read buffer; the
//! bytes may arrive in any pieces, down to one at a time. [`write_response`] appends one
//! answer to an output buffer. Nothing here does I/O: the server reads and writes, this layer
//! only decides.
//!
//! Invariants:
//! - No input makes the framer panic; every malformed or oversized request is an
//!   [`HttpError`] whose [`HttpError::response`] is the complete answer to send before closing.
//! - The framer is bounded: it never answers `Partial` once the buffer holds
//!   [`Limits::max_request_bytes`] bytes, so a read buffer of that size always suffices.
//! - Framing is incremental and linear: each call resumes where the last one stopped, so
//!   feeding a request one byte at a time costs about as much as feeding it whole, and the
//!   decision never depends on how the bytes were split.
//! - Framing is smuggling-safe: one reading of the length (RFC 9112 §6), with every ambiguity
//!   (two different `Content-Length`s, `Content-Length` with `Transfer-Encoding`, an encoding
//!   other than `chunked`) rejected and the connection closed.

mod chunked;
mod error;
mod fast_head;
#[doc(hidden)]
pub mod fuzzing;
mod head;
mod limits;
mod method;
mod request;
mod response;

pub use error::HttpError;
pub use limits::{Limits, CHUNK_FRAMING_SLACK_BYTES, MAX_HEADERS};
pub use method::{Method, Version};
pub use request::{Body, Frame, Framer, Request};
pub use response::{reason, write_response, write_response_with, Connection, CONTINUE};
