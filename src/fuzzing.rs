//! The library's half of the fuzz targets in `fuzz/`: the properties that need nothing but
//! this crate, beside the code they check, so that unit tests and a stable `cargo test` run
//! them too.
//!
//! The other half, which needs crates the library must not depend on (serde_json for the
//! reference body decoder, `arbitrary` for structured inputs), lives in the fuzz crate's
//! library (`fuzz/src/`), and calls these first. `tests/fuzz_corpus.rs` replays every
//! committed corpus file through both halves.

use crate::api::fuzzing::BodyKind;

/// Arbitrary bytes into the HTTP/1.1 framer, whole and split at every read size: never
/// panics, never reads past its limits, decides the same however the bytes arrive.
pub fn http_request(data: &[u8]) {
    crate::http::fuzzing::fuzz_framer(data);
}

/// Arbitrary bytes as a try-lock body: the decoder never panics, and its fast path agrees
/// with its full decoder.
pub fn lock_body(data: &[u8]) {
    crate::api::fuzzing::decode_body_as(BodyKind::TryLock, data);
}

/// Arbitrary bytes as an unlock body, as [`lock_body`].
pub fn unlock_body(data: &[u8]) {
    crate::api::fuzzing::decode_body_as(BodyKind::Unlock, data);
}

/// Arbitrary bytes as a whole request through routing and validation: every bad input is an
/// answer, and every lock operation that comes out keeps the API's promises.
pub fn request_to_response(data: &[u8]) {
    crate::api::fuzzing::handle(data);
}
