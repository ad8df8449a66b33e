//! Entry points for the fuzz targets in `fuzz/`, so each target is one line and the
//! properties live (and are unit-tested) beside the code they check.

/// Arbitrary bytes into the HTTP/1.1 framer, whole and split at every read size: never
/// panics, never reads past its limits, decides the same however the bytes arrive.
pub fn http_request(data: &[u8]) {
    crate::http::fuzzing::fuzz_framer(data);
}

/// Arbitrary bytes as a lock or unlock body: the decoder never panics and agrees with the
/// protojson rules.
pub fn lock_body(data: &[u8]) {
    crate::api::fuzzing::decode_body(data);
}

/// Arbitrary bytes as a whole request through routing and validation.
pub fn request_to_response(data: &[u8]) {
    crate::api::fuzzing::handle(data);
}
