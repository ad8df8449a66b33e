//! The checks behind dlockd's fuzz targets, one module per target, each target a one-liner
//! calling the function of the same name here.
//!
//! Each check first runs the library's own half (`dlockd::fuzzing`), then what needs more
//! than the library: a reference to compare with (httparse directly, serde_json with the
//! protojson rules, a `BTreeMap` model of the lease table) and structured inputs built with
//! `arbitrary`. A check panics only when a property is broken, which is what libFuzzer looks
//! for.
//!
//! `tests/fuzz_corpus.rs` at the top of the repository includes this file with `#[path]`, so
//! a stable `cargo test` replays every committed corpus file through exactly these checks.
//! That is why the modules refer to each other with `super::`, never `crate::`.

pub mod body;
pub mod http;
pub mod lease;
pub mod request;
pub mod wire;

/// `http_request`: bytes into the framer, cut into reads the input chooses; the framing
/// agrees with a reference parse built on httparse.
pub fn http_request(data: &[u8]) {
    http::check(data);
}

/// `lock_body`: bytes as a try-lock body; the decoder agrees with the reference decoder.
pub fn lock_body(data: &[u8]) {
    body::check(dlockd::api::fuzzing::BodyKind::TryLock, data);
}

/// `unlock_body`: bytes as an unlock body; the decoder agrees with the reference decoder.
pub fn unlock_body(data: &[u8]) {
    body::check(dlockd::api::fuzzing::BodyKind::Unlock, data);
}

/// `request_to_response`: whole requests through framing, routing, validation and a real
/// lease table; every answer is the contract's.
pub fn request_to_response(data: &[u8]) {
    request::check(data);
}

/// `lease_ops`: operation sequences on the lease table and on a model; every answer agrees.
pub fn lease_ops(data: &[u8]) {
    lease::check(data);
}
