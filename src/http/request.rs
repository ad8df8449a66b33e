//! Framing requests: finding where each request starts and ends in a connection's bytes.
//!
//! A request goes through three stages: the head (request line and headers) is scanned for
//! its end, then parsed once by httparse; the body is then either a `Content-Length` run of
//! bytes or a chunked body decoded as it arrives. Each stage remembers how far it got, so a
//! request fed one byte at a time is scanned once, not once per byte.
//!
//! Invariants:
//! - The decision (the request framed, or the error) depends only on the bytes, never on how
//!   they were split into reads. Every rule below looks at bytes in order and stops at the
//!   first decisive one, so a prefix either decides the same way or asks for more.
//! - The head ends at the first empty line after the request line, exactly where httparse
//!   ends it (a line ends in LF, optionally preceded by CR, as httparse accepts).
//! - A head longer than `max_header_bytes` is refused, complete or not; a body longer than
//!   `max_body_bytes` is refused as soon as its declared length or chunk size says so.
//! - `Partial` is only ever returned while the buffer is shorter than
//!   [`Limits::max_request_bytes`].

use std::mem::MaybeUninit;
use std::ops::Range;

use super::chunked::ChunkDecoder;
use super::error::HttpError;
use super::fast_head;
use super::head::{BodyFraming, Head, HeadFacts};
use super::limits::{Limits, MAX_HEADERS};
use super::method::{Method, Version};

/// What the framer found at the front of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// More bytes needed. `head_complete` is true once the whole head is in; then
    /// `expect_continue` tells whether the client sent `Expect: 100-continue` (HTTP/1.1 only)
    /// so the server can answer `CONTINUE` once before reading the body.
    Partial {
        head_complete: bool,
        expect_continue: bool,
    },
    Complete(Request),
}

/// One framed request; ranges index the buffer given to [`Framer::frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub version: Version,
    /// The request target (path and query) as a range of `buf`. For an absolute-form target
    /// (`http://host/path?q`) this is its path and query (RFC 9112 §3.2.2).
    pub target: Range<usize>,
    /// Whether the connection stays open after the answer: HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`. (Connection header may hold a token list.)
    pub keep_alive: bool,
    /// The value of the `dapr-api-token` header, if present, as a range of `buf`.
    pub api_token: Option<Range<usize>>,
    pub body: Body,
    /// Bytes of `buf` this request occupied (head + body on the wire).
    pub consumed: usize,
}

/// Where a request's body is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// The body is `buf[range]` (Content-Length, possibly empty).
    Buf(Range<usize>),
    /// The body is `framer.chunked_body()`.
    Chunked,
}

/// Frames one request at a time from the front of a connection's read buffer.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    stage: Stage,
    /// The decoded body of the last chunked request; its capacity is reused.
    chunked: Vec<u8>,
}

/// Where the request at the front of the buffer stands.
#[derive(Clone, Debug)]
enum Stage {
    Head(HeadScan),
    /// The head is parsed; the body is the `Content-Length` bytes ending at `end`.
    Sized {
        head: Head,
        end: usize,
    },
    Chunked {
        head: Head,
        decoder: ChunkDecoder,
    },
}

/// Progress of the search for the end of the head.
#[derive(Clone, Debug, Default)]
struct HeadScan {
    /// Where the request line starts, once the empty lines before it are skipped
    /// (RFC 9112 §2.2 lets a server ignore them, and httparse does).
    start: Option<usize>,
    /// The next byte to examine: in the empty lines, or the next LF candidate.
    pos: usize,
    /// Whether the request line was already checked on its own.
    line_checked: bool,
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            stage: Stage::Head(HeadScan::default()),
            chunked: Vec::new(),
        }
    }

    /// Frames the request at the start of `buf`. After `Partial`, the caller reads more bytes
    /// and calls again with the same request's bytes still at the start of `buf` (extended).
    /// After `Complete`, the caller removes `request.consumed` bytes from the front, and the
    /// framer is ready for the next request. After an error the framer is ready too, but the
    /// connection cannot go on: send [`HttpError::response`] and close.
    ///
    /// A `buf` shorter than what an earlier call already examined means the caller did not
    /// keep the request's bytes; the framer then starts this request over.
    #[inline]
    pub fn frame(&mut self, buf: &[u8]) -> Result<Frame, HttpError> {
        if buf.len() < self.resume_point() {
            self.reset();
        }
        let result = self.advance(buf);
        match result {
            Ok(Frame::Partial { .. }) => {}
            Ok(Frame::Complete(_)) => self.stage = Stage::Head(HeadScan::default()),
            // Nothing of a refused request is worth keeping, not even a half-decoded body.
            Err(_) => self.reset(),
        }
        result
    }

    /// The decoded body of the last Complete request whose body was chunked. Read it before
    /// the next call to [`Framer::frame`], which may start decoding another chunked body
    /// into the same buffer.
    pub fn chunked_body(&self) -> &[u8] {
        &self.chunked
    }

    /// Forget any partial state (used when the connection starts over).
    pub fn reset(&mut self) {
        self.stage = Stage::Head(HeadScan::default());
        self.chunked.clear();
    }

    /// The buffer length the current stage has already looked at.
    fn resume_point(&self) -> usize {
        match &self.stage {
            Stage::Head(scan) => scan.pos,
            Stage::Sized { head, .. } => head.len,
            Stage::Chunked { decoder, .. } => decoder.position(),
        }
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Frame, HttpError> {
        loop {
            match &mut self.stage {
                Stage::Head(scan) => {
                    // Usually the whole head came in one read: parse it at once, without the
                    // scan. Only on a request's first call, so a head arriving in pieces still
                    // costs one parse in all.
                    let fast = if scan.is_fresh() {
                        parse_whole_head(buf, &self.limits)
                    } else {
                        None
                    };
                    let parsed = match fast {
                        Some(parsed) => parsed,
                        None => {
                            let max = self.limits.max_header_bytes;
                            let Some(head_len) = scan.advance(buf, max)? else {
                                return Ok(Frame::Partial {
                                    head_complete: false,
                                    expect_continue: false,
                                });
                            };
                            parse_head(buf, head_len, &self.limits)
                        }
                    };
                    let (head, framing) = parsed?;
                    self.stage = match framing {
                        BodyFraming::Length(n) => Stage::Sized {
                            end: head.len.saturating_add(n),
                            head,
                        },
                        BodyFraming::Chunked => {
                            self.chunked.clear();
                            Stage::Chunked {
                                decoder: ChunkDecoder::new(head.len),
                                head,
                            }
                        }
                    };
                }
                Stage::Sized { head, end } => {
                    return Ok(if buf.len() >= *end {
                        Frame::Complete(head.request(Body::Buf(head.len..*end), *end))
                    } else {
                        head.partial()
                    });
                }
                Stage::Chunked { head, decoder } => {
                    let end = decoder.advance(
                        buf,
                        &mut self.chunked,
                        self.limits.max_body_bytes,
                        self.limits.chunk_framing_limit(),
                    )?;
                    return Ok(match end {
                        Some(end) => Frame::Complete(head.request(Body::Chunked, end)),
                        None => head.partial(),
                    });
                }
            }
        }
    }
}

impl Head {
    fn request(&self, body: Body, consumed: usize) -> Request {
        Request {
            method: self.method,
            version: self.version,
            target: self.target.clone(),
            keep_alive: self.keep_alive,
            api_token: self.api_token.clone(),
            body,
            consumed,
        }
    }

    fn partial(&self) -> Frame {
        Frame::Partial {
            head_complete: true,
            expect_continue: self.expect_continue,
        }
    }
}

impl HeadScan {
    /// Whether nothing of this request was looked at yet.
    fn is_fresh(&self) -> bool {
        self.pos == 0 && self.start.is_none() && !self.line_checked
    }

    /// Looks for the end of the head in `buf`, from where the last call stopped. Returns the
    /// head's length once its final empty line is in, `None` if more bytes are needed.
    ///
    /// Each rule looks at the bytes in order, and a rule that needs a byte not yet in `buf`
    /// waits for it unless the answer is the same whatever that byte is: that is what makes
    /// the decision independent of how the bytes were split.
    fn advance(&mut self, buf: &[u8], max: usize) -> Result<Option<usize>, HttpError> {
        let start = loop {
            if let Some(start) = self.start {
                break start;
            }
            let i = self.pos;
            // Whatever follows, a head that has not started its request line by `max - 1`
            // ends past `max`.
            if i + 1 >= max {
                return too_large_once_seen(buf, max);
            }
            match buf.get(i) {
                None => return Ok(None),
                Some(b'\n') => self.pos = i + 1,
                Some(b'\r') => match buf.get(i + 1) {
                    None => return Ok(None),
                    Some(b'\n') => self.pos = i + 2,
                    // httparse rejects the lone CR; let the request line check say so.
                    Some(_) => self.start = Some(i),
                },
                Some(_) => self.start = Some(i),
            }
        };

        loop {
            let from = self.pos.max(start);
            let newline = buf
                .get(from..)
                .and_then(|rest| rest.iter().position(|&b| b == b'\n'));
            let Some(offset) = newline else {
                self.pos = buf.len().max(from);
                // Any line end still to come is at or past `buf.len()`.
                if buf.len() >= max {
                    return Err(head_too_large(buf, max));
                }
                return Ok(None);
            };
            let lf = from + offset;
            // The shortest head ending here is LF LF: it ends at `lf + 2`.
            if lf + 2 > max {
                return too_large_once_seen(buf, max);
            }
            if !self.line_checked {
                check_request_line(buf, lf)?;
                self.line_checked = true;
            }
            match buf.get(lf + 1) {
                None => {
                    self.pos = lf;
                    return Ok(None);
                }
                Some(b'\n') => return Ok(Some(lf + 2)),
                Some(b'\r') => {
                    if lf + 3 > max {
                        return Err(head_too_large(buf, max));
                    }
                    match buf.get(lf + 2) {
                        None => {
                            self.pos = lf;
                            return Ok(None);
                        }
                        Some(b'\n') => return Ok(Some(lf + 3)),
                        // A line may not start with a lone CR (httparse: NewLine error).
                        Some(_) => return Err(HttpError::Malformed),
                    }
                }
                Some(_) => self.pos = lf + 1,
            }
        }
    }
}

/// Rejects a bad request line as soon as it is in, rather than when the head ends, so a
/// client speaking something else gets its 400 at once. `lf` ends the line.
fn check_request_line(buf: &[u8], lf: usize) -> Result<(), HttpError> {
    let line = buf.get(..=lf).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; 1];
    match httparse::Request::new(&mut headers).parse(line) {
        // A request line alone is valid so far (Partial); Complete cannot happen before the
        // empty line, and either way the full parse decides.
        Ok(_) => Ok(()),
        Err(e) => Err(parse_error(e, line)),
    }
}

/// The answer for a head that ends past `max` (or never ends within it). A syntax error in
/// the first `max` bytes wins, as it would have been seen first reading line by line.
/// The refusal of a head that cannot fit in `max`, decided only once the first `max` bytes
/// are all in: which error it is (malformed or too large) depends on those bytes, and must
/// not depend on how they were split across reads.
fn too_large_once_seen(buf: &[u8], max: usize) -> Result<Option<usize>, HttpError> {
    if buf.len() < max {
        return Ok(None);
    }
    Err(head_too_large(buf, max))
}

fn head_too_large(buf: &[u8], max: usize) -> HttpError {
    let window = buf.get(..max).unwrap_or(buf);
    let mut slots = header_slots();
    match httparse::Request::new(&mut []).parse_with_uninit_headers(window, &mut slots) {
        Err(e) => parse_error(e, window),
        Ok(_) => HttpError::HeadTooLarge,
    }
}

/// Maps an httparse error to ours. A version httparse refuses is a 505 if it is a
/// well-formed `HTTP/x.y` (as Go answers HTTP/2.0 on an HTTP/1 connection), else a 400.
fn parse_error(e: httparse::Error, head: &[u8]) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::Version if is_other_version(head) => HttpError::VersionNotSupported,
        _ => HttpError::Malformed,
    }
}

/// Whether the request line's third part is exactly `HTTP/<digit>.<digit>`.
fn is_other_version(head: &[u8]) -> bool {
    let Some(first) = head.iter().position(|&b| b != b'\r' && b != b'\n') else {
        return false;
    };
    let rest = head.get(first..).unwrap_or_default();
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = rest.get(..line_end).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.nth(2).unwrap_or_default();
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// A fresh array of headers for httparse to fill; left uninitialised, as httparse allows,
/// since zeroing 32 headers costs more than parsing a typical head's.
fn header_slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// The head at the front of `buf` parsed in one go, if it is all there, valid, and within
/// the limit; `None` leaves the decision to the scan. When this answers, the scan would have
/// found the same end (see the module invariants), so the answer is the same.
fn parse_whole_head(buf: &[u8], limits: &Limits) -> Option<Result<(Head, BodyFraming), HttpError>> {
    if let Some(fast) = fast_head::parse(buf, limits.max_header_bytes) {
        return Some(fast.finish(buf, limits));
    }
    parse_whole_head_with_httparse(buf, limits)
}

/// [`parse_whole_head`] without the fast path.
fn parse_whole_head_with_httparse(
    buf: &[u8],
    limits: &Limits,
) -> Option<Result<(Head, BodyFraming), HttpError>> {
    let mut slots = header_slots();
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_header_bytes => {
            Some(interpret_head(buf, &req, len, limits))
        }
        _ => None,
    }
}

/// Checks the fast path against httparse on `buf`: whenever the fast path takes a head,
/// httparse decides it the same. Returns whether the fast path took it. For tests and fuzzing.
pub(super) fn check_fast_head(buf: &[u8], limits: &Limits) -> bool {
    let Some(fast) = fast_head::parse(buf, limits.max_header_bytes) else {
        return false;
    };
    let fast = fast.finish(buf, limits);
    let slow = parse_whole_head_with_httparse(buf, limits);
    assert_eq!(Some(fast), slow, "fast path and httparse differ on {buf:?}");
    true
}

/// Parses the complete head `buf[..len]` and decides how its body is framed.
fn parse_head(buf: &[u8], len: usize, limits: &Limits) -> Result<(Head, BodyFraming), HttpError> {
    let bytes = buf.get(..len).ok_or(HttpError::Malformed)?;
    let mut slots = header_slots();
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(bytes, &mut slots) {
        Ok(httparse::Status::Complete(n)) if n == len => interpret_head(buf, &req, len, limits),
        // The scan and httparse agree on where a head ends (see the module invariants); were
        // they ever to differ, refusing is the safe answer.
        Ok(_) => Err(HttpError::Malformed),
        Err(e) => Err(parse_error(e, bytes)),
    }
}

/// Reads what the framing and the routes need from a head httparse parsed, `len` bytes, and
/// decides how its body is framed.
fn interpret_head(
    buf: &[u8],
    req: &httparse::Request<'_, '_>,
    len: usize,
    limits: &Limits,
) -> Result<(Head, BodyFraming), HttpError> {
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed);
    };
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(HttpError::VersionNotSupported),
    };
    let mut facts = HeadFacts::default();
    for header in req.headers.iter() {
        facts.header(header.name.as_bytes(), header.value);
    }
    facts.finish(buf, method, version, path.as_bytes(), len, limits)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "fast_head_tests.rs"]
mod fast_head_tests;
