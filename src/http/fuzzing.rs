//! Fuzz entry points for the framer, shared by the unit tests and the cargo-fuzz targets so a
//! stable `cargo test` replays what the fuzzer checks.
//!
//! [`check_splits`] runs one byte string through a framer as a connection would (reads of a
//! given size, framed requests removed from the front) and asserts the framer's promises:
//! no panic, the same requests and the same ending whatever the read size, ranges inside the
//! buffer, progress on every request, and never `Partial` at [`Limits::max_request_bytes`].
//! [`check_reads`] does the same with read sizes chosen by the caller (the fuzz target takes
//! them from its input), so the cuts land wherever the fuzzer finds something.
//!
//! What a framed request must contain (method, target, headers, body) is checked against a
//! reference parse in the fuzz crate (`fuzz/src/http.rs`), which needs nothing but these
//! transcripts.

use super::error::HttpError;
use super::limits::Limits;
use super::method::{Method, Version};
use super::request::{Body, Frame, Framer};

/// Small limits, so that fuzz inputs reach them.
pub const FUZZ_LIMITS: Limits = Limits {
    max_header_bytes: 256,
    max_body_bytes: 64,
};

/// One framed request, with its bytes copied out of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Framed {
    pub method: Method,
    pub version: Version,
    pub target: Vec<u8>,
    pub keep_alive: bool,
    pub api_token: Option<Vec<u8>>,
    pub body: Vec<u8>,
    pub consumed: usize,
}

/// How a connection's bytes ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// All bytes were used; the framer waits for more.
    Partial {
        head_complete: bool,
        expect_continue: bool,
    },
    Error(HttpError),
}

/// Everything a connection made of its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript {
    pub requests: Vec<Framed>,
    pub end: End,
}

/// Frames `data` with reads of `step` bytes (0: all at once), removing each framed request
/// from the front of the buffer as the server does.
pub fn transcript(limits: Limits, data: &[u8], step: usize) -> Transcript {
    let step = if step == 0 { data.len().max(1) } else { step };
    transcript_reads(limits, data, &[step])
}

/// Frames `data` with reads of the given sizes, used in turn and over again (a size of 0
/// counts as 1; no sizes at all means one read of everything), removing each framed request
/// from the front of the buffer as the server does.
pub fn transcript_reads(limits: Limits, data: &[u8], reads: &[usize]) -> Transcript {
    let mut framer = Framer::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut requests = Vec::new();
    let mut next_read = reads.iter().map(|&n| n.max(1)).cycle();
    loop {
        match framer.frame(&buf) {
            Err(e) => {
                return Transcript {
                    requests,
                    end: End::Error(e),
                }
            }
            Ok(Frame::Partial {
                head_complete,
                expect_continue,
            }) => {
                assert!(
                    buf.len() < limits.max_request_bytes(),
                    "Partial with {} bytes buffered",
                    buf.len()
                );
                assert!(head_complete || !expect_continue);
                if fed == data.len() {
                    return Transcript {
                        requests,
                        end: End::Partial {
                            head_complete,
                            expect_continue,
                        },
                    };
                }
                let step = next_read.next().unwrap_or(data.len());
                let next = fed.saturating_add(step).min(data.len());
                buf.extend_from_slice(&data[fed..next]);
                fed = next;
            }
            Ok(Frame::Complete(req)) => {
                assert!(req.consumed > 0 && req.consumed <= buf.len());
                assert!(
                    req.consumed <= limits.max_request_bytes(),
                    "a request of {} bytes framed",
                    req.consumed
                );
                let inside = |r: &std::ops::Range<usize>| {
                    assert!(r.start <= r.end && r.end <= req.consumed, "{r:?}");
                    buf[r.clone()].to_vec()
                };
                let body = match &req.body {
                    Body::Buf(r) => inside(r),
                    Body::Chunked => framer.chunked_body().to_vec(),
                };
                assert!(body.len() <= limits.max_body_bytes);
                requests.push(Framed {
                    method: req.method,
                    version: req.version,
                    target: inside(&req.target),
                    keep_alive: req.keep_alive,
                    api_token: req.api_token.as_ref().map(inside),
                    body,
                    consumed: req.consumed,
                });
                buf.drain(..req.consumed);
            }
        }
    }
}

/// Asserts that `data` frames the same with every read size tried: whole, one byte at a
/// time, and a few sizes that cut lines and chunks in different places.
pub fn check_splits(limits: Limits, data: &[u8]) -> Transcript {
    // Wherever the fast head path answers, httparse answers the same.
    super::request::check_fast_head(data, &limits);
    let whole = transcript(limits, data, 0);
    for step in [1, 2, 3, 7, 64] {
        assert_eq!(transcript(limits, data, step), whole, "read size {step}");
    }
    whole
}

/// [`check_splits`], and the same transcript again with the caller's read sizes.
pub fn check_reads(limits: Limits, data: &[u8], reads: &[usize]) -> Transcript {
    let whole = check_splits(limits, data);
    if !reads.is_empty() {
        assert_eq!(
            transcript_reads(limits, data, reads),
            whole,
            "read sizes {reads:?}"
        );
    }
    whole
}

/// The library's half of the `http_request` fuzz target: any bytes, small limits.
pub fn fuzz_framer(data: &[u8]) {
    check_splits(FUZZ_LIMITS, data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_read_sizes_cut_where_asked() {
        // Protects the read schedule the fuzz target relies on: sizes are used in turn and
        // over again, 0 counts as 1, and every schedule frames the same pipeline.
        let data = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        let whole = check_reads(FUZZ_LIMITS, data, &[0, 5, 1, 40]);
        assert_eq!(whole.requests.len(), 2);
        assert_eq!(whole.requests[1].body, b"abc");
        assert_eq!(transcript_reads(FUZZ_LIMITS, data, &[]), whole);
        assert_eq!(transcript_reads(FUZZ_LIMITS, data, &[3, 1000]), whole);
    }
}
