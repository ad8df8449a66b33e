//! The bounds on one request, which every stage of the framing checks.

/// The most header lines a request may have; one more is a 431 (Go allows more, but a Dapr
/// client sends about ten).
pub const MAX_HEADERS: usize = 32;

/// How many framing bytes a chunked body may spend beyond its decoded size: enough for
/// extensions and trailers of any sane client (Go caps its excess framing at 16 KiB too).
pub const CHUNK_FRAMING_SLACK_BYTES: usize = 16 * 1024;

/// The bounds on one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most bytes the head (request line, headers, final empty line) may occupy.
    pub max_header_bytes: usize,
    /// The most bytes the body may hold (after chunked decoding, if chunked).
    pub max_body_bytes: usize,
}

impl Limits {
    /// The framing bytes (not data) a chunked body must stay below.
    pub fn chunk_framing_limit(&self) -> usize {
        self.max_body_bytes
            .saturating_add(CHUNK_FRAMING_SLACK_BYTES)
    }

    /// The most bytes one request can occupy before the framer decides: a read buffer of
    /// this size never fills up with a request the framer still calls `Partial`.
    pub fn max_request_bytes(&self) -> usize {
        self.max_header_bytes
            .saturating_add(self.max_body_bytes)
            .saturating_add(self.chunk_framing_limit())
    }
}
