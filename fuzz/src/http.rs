//! `http_request`: the HTTP/1.1 framer against a reference parse built on httparse directly,
//! with the chunked coding decoded plainly here.
//!
//! Input: one byte `n` (taken modulo 16), then `n` read sizes of one byte each (a byte `b`
//! reads `b + 1` bytes), then the bytes a client sends. The library's half frames those
//! bytes whole, at fixed read sizes and at the input's read sizes, and checks that all agree
//! (`dlockd::http::fuzzing::check_reads`). This half compares that transcript with the
//! reference, request by request:
//! - a request the framer accepts is one the reference accepts, with the same method,
//!   version, target, keep-alive, API token, body and length on the wire;
//! - where the framer stops (waiting for more, or refusing), the reference finds no complete
//!   request either; and when the framer waits with a complete head, the reference has
//!   parsed that head too, with the same `Expect: 100-continue`.
//!
//! The reference applies the framer's documented rules (`src/http/request.rs`,
//! `src/http/chunked.rs`) in the plainest form: the head is what httparse says, within
//! `max_header_bytes` and 32 header lines; one `Host` for HTTP/1.1, at most one for 1.0;
//! `Content-Length` all digits, repeated only identically, within `max_body_bytes`;
//! `Transfer-Encoding` only as one `chunked`, never with `Content-Length`, never on 1.0; a
//! chunked body in CRLF lines, sizes of 1 to 16 hex digits, the whole decoded body within
//! `max_body_bytes` and its framing within [`Limits::chunk_framing_limit`].

use dlockd::http::fuzzing::{check_reads, End, Framed, Transcript, FUZZ_LIMITS};
use dlockd::http::{Limits, Method, Version, MAX_HEADERS};

/// How many read sizes an input may give.
const MAX_READS: u8 = 16;

/// Splits an input into its read sizes and the bytes to frame.
pub fn split_input(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let count = usize::from(count % MAX_READS).min(rest.len());
    let (reads, payload) = rest.split_at(count);
    (reads.iter().map(|&b| usize::from(b) + 1).collect(), payload)
}

/// Builds an input: read sizes (each 1 to 256, at most 15 of them) and the bytes.
pub fn make_input(reads: &[usize], payload: &[u8]) -> Vec<u8> {
    assert!(reads.len() < usize::from(MAX_READS));
    let mut data = vec![reads.len() as u8];
    data.extend(reads.iter().map(|&n| {
        assert!((1..=256).contains(&n));
        (n - 1) as u8
    }));
    data.extend_from_slice(payload);
    data
}

pub fn check(data: &[u8]) {
    dlockd::fuzzing::http_request(data);
    let (reads, payload) = split_input(data);
    let transcript = check_reads(FUZZ_LIMITS, payload, &reads);
    check_transcript(FUZZ_LIMITS, payload, &transcript);
}

/// What the reference makes of the bytes at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A complete, acceptable request.
    Request(Framed),
    /// No decision yet. `expect_continue` is `Some` once the head is complete and valid.
    Incomplete { expect_continue: Option<bool> },
    /// Not a request the framer may accept.
    Invalid(String),
}

/// Panics unless the framer's transcript of `data` is what the reference says.
pub fn check_transcript(limits: Limits, data: &[u8], transcript: &Transcript) {
    let mut at = 0;
    for (n, framed) in transcript.requests.iter().enumerate() {
        let rest = data.get(at..).unwrap_or_default();
        match reference(limits, rest) {
            Verdict::Request(expected) => assert_eq!(
                framed, &expected,
                "request {n} (at byte {at}) differs from the reference parse"
            ),
            other => panic!(
                "request {n} (at byte {at}) was framed as {framed:?}, but the reference says \
                 {other:?}"
            ),
        }
        at += framed.consumed;
    }
    let rest = data.get(at..).unwrap_or_default();
    let verdict = reference(limits, rest);
    match (&transcript.end, &verdict) {
        (_, Verdict::Request(expected)) => panic!(
            "the framer ended with {:?} at byte {at}, where the reference frames {expected:?}",
            transcript.end
        ),
        (
            End::Partial {
                head_complete: true,
                expect_continue,
            },
            Verdict::Incomplete {
                expect_continue: Some(expected),
            },
        ) => assert_eq!(
            expect_continue, expected,
            "Expect: 100-continue at byte {at}"
        ),
        (End::Partial { head_complete, .. }, _) => assert!(
            !head_complete
                && !matches!(
                    verdict,
                    Verdict::Incomplete {
                        expect_continue: Some(_)
                    }
                ),
            "the framer waits with head_complete {head_complete} at byte {at}, where the \
             reference says {verdict:?}"
        ),
        (End::Error(_), _) => {}
    }
}

/// The reference parse of the request at the front of `bytes`.
pub fn reference(limits: Limits, bytes: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(bytes) {
        Err(e) => return Verdict::Invalid(format!("httparse: {e}")),
        // A head not complete in `max_header_bytes` bytes can only end past them.
        Ok(httparse::Status::Partial) if bytes.len() >= limits.max_header_bytes => {
            return Verdict::Invalid("head too large".into())
        }
        Ok(httparse::Status::Partial) => {
            return Verdict::Incomplete {
                expect_continue: None,
            }
        }
        Ok(httparse::Status::Complete(len)) => len,
    };
    if head_len > limits.max_header_bytes {
        return Verdict::Invalid(format!("head of {head_len} bytes"));
    }
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Verdict::Invalid("incomplete request line".into());
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Verdict::Invalid(format!("HTTP/1.{minor}")),
    };

    let named = |name: &str| header_values(req.headers, name);
    let hosts = named("host").len();
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Verdict::Invalid(format!("{hosts} Host headers"));
    }
    let lengths = named("content-length");
    let encodings = named("transfer-encoding");
    let mut close = false;
    let mut keep_alive = false;
    for value in named("connection") {
        for token in value.split(|&b| b == b',') {
            let token = trim_spaces(token);
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    let expect_continue = version == Version::Http11
        && named("expect")
            .iter()
            .any(|value| value.eq_ignore_ascii_case(b"100-continue"));
    let api_token = named("dapr-api-token").first().map(|value| value.to_vec());

    let body_bytes = bytes.get(head_len..).unwrap_or_default();
    let (body, body_wire_len) = if !encodings.is_empty() {
        if version == Version::Http10 {
            return Verdict::Invalid("Transfer-Encoding on HTTP/1.0".into());
        }
        if encodings.len() > 1 || !encodings[0].eq_ignore_ascii_case(b"chunked") {
            return Verdict::Invalid("a coding other than one chunked".into());
        }
        if !lengths.is_empty() {
            return Verdict::Invalid("Content-Length with Transfer-Encoding".into());
        }
        match dechunk(limits, body_bytes) {
            Chunked::Done { body, wire_len } => (body, wire_len),
            Chunked::Incomplete => {
                return Verdict::Incomplete {
                    expect_continue: Some(expect_continue),
                }
            }
            Chunked::Invalid(why) => return Verdict::Invalid(why),
        }
    } else {
        let length = match lengths.first() {
            None => 0,
            Some(first) => {
                if lengths.iter().any(|other| other != first) {
                    return Verdict::Invalid("Content-Length headers disagree".into());
                }
                let Some(length) = std::str::from_utf8(first)
                    .ok()
                    .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|text| text.parse::<u64>().ok())
                else {
                    return Verdict::Invalid("bad Content-Length".into());
                };
                if length > limits.max_body_bytes as u64 {
                    return Verdict::Invalid("body too large".into());
                }
                length as usize
            }
        };
        match body_bytes.get(..length) {
            Some(body) => (body.to_vec(), length),
            None => {
                return Verdict::Incomplete {
                    expect_continue: Some(expect_continue),
                }
            }
        }
    };

    Verdict::Request(Framed {
        method: match method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            _ => Method::Other,
        },
        version,
        target: origin_form(path.as_bytes()).to_vec(),
        keep_alive: !close && (version == Version::Http11 || keep_alive),
        api_token,
        body,
        consumed: head_len + body_wire_len,
    })
}

/// The values of the headers with this name (any case), in order.
fn header_values<'b>(headers: &[httparse::Header<'b>], name: &str) -> Vec<&'b [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

/// `bytes` without the spaces and tabs around it.
fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// The path and query of a target: all of it, or for `http://host/p?q` the `/p?q`.
fn origin_form(target: &[u8]) -> &[u8] {
    let lower = target.to_ascii_lowercase();
    let scheme_len = if lower.starts_with(b"http://") {
        7
    } else if lower.starts_with(b"https://") {
        8
    } else {
        return target;
    };
    let after = &target[scheme_len..];
    match after.iter().position(|&b| b == b'/' || b == b'?') {
        Some(start) => &after[start..],
        None => &[],
    }
}

/// A chunked body decoded.
enum Chunked {
    Done { body: Vec<u8>, wire_len: usize },
    Incomplete,
    Invalid(String),
}

/// One CRLF-terminated line starting at `at`: its content and where the next line starts.
enum Line<'a> {
    Complete(&'a [u8], usize),
    Incomplete,
    Invalid,
}

fn line(bytes: &[u8], at: usize) -> Line<'_> {
    let rest = bytes.get(at..).unwrap_or_default();
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'\r' => {
                return match rest.get(i + 1) {
                    None => Line::Incomplete,
                    Some(b'\n') => Line::Complete(&rest[..i], at + i + 2),
                    Some(_) => Line::Invalid,
                }
            }
            b'\n' => return Line::Invalid,
            _ => {}
        }
    }
    Line::Incomplete
}

/// HTAB, SP, visible ASCII and obs-text: what an extension or a trailer may hold.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// The size of a chunk from its size line: 1 to 16 hex digits, optional spaces or tabs,
/// then optionally `;` and an extension.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if !(1..=16).contains(&digits) {
        return None;
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    match rest.split_first() {
        None => {}
        Some((b';', extension)) if extension.iter().all(|&b| is_field_byte(b)) => {}
        Some(_) => return None,
    }
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

fn dechunk(limits: Limits, bytes: &[u8]) -> Chunked {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (size_line, next) = match line(bytes, at) {
            Line::Complete(content, next) => (content, next),
            Line::Incomplete => return Chunked::Incomplete,
            Line::Invalid => return Chunked::Invalid("bad line end in a size line".into()),
        };
        let Some(size) = chunk_size(size_line) else {
            return Chunked::Invalid(format!("bad size line {size_line:?}"));
        };
        if (body.len() as u64).saturating_add(size) > limits.max_body_bytes as u64 {
            return Chunked::Invalid("chunked body too large".into());
        }
        at = next;
        if size == 0 {
            break;
        }
        let end = at + size as usize;
        let Some(data) = bytes.get(at..end) else {
            return Chunked::Incomplete;
        };
        body.extend_from_slice(data);
        match bytes.get(end..end + 2) {
            Some(b"\r\n") => at = end + 2,
            Some(_) => return Chunked::Invalid("chunk data not followed by CRLF".into()),
            None if bytes.get(end).is_some_and(|&b| b != b'\r') => {
                return Chunked::Invalid("chunk data not followed by CR".into())
            }
            None => return Chunked::Incomplete,
        }
    }
    // Trailer lines, then the empty line.
    loop {
        match line(bytes, at) {
            Line::Complete(b"", next) => {
                at = next;
                break;
            }
            Line::Complete(trailer, next) => {
                let starts_well = trailer[0] > b' ' && is_field_byte(trailer[0]);
                if !starts_well || !trailer.iter().all(|&b| is_field_byte(b)) {
                    return Chunked::Invalid(format!("bad trailer {trailer:?}"));
                }
                at = next;
            }
            Line::Incomplete => return Chunked::Incomplete,
            Line::Invalid => return Chunked::Invalid("bad line end in a trailer".into()),
        }
    }
    if at - body.len() >= limits.chunk_framing_limit() {
        return Chunked::Invalid("too much chunk framing".into());
    }
    Chunked::Done { body, wire_len: at }
}
