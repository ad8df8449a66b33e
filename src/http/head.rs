//! What a request head means: the facts its headers state, gathered header by header, and
//! the decision they make ([`HeadFacts::finish`]): the [`Head`] the framing goes on with and
//! how its body is framed. Both tokenizers, httparse's and the fast path's, feed the same
//! [`HeadFacts`], so a head means the same whichever tokenized it.

use std::ops::Range;

use super::error::HttpError;
use super::limits::Limits;
use super::method::{Method, Version};

/// What the rest of the framing needs from a parsed head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) method: Method,
    pub(super) version: Version,
    pub(super) target: Range<usize>,
    pub(super) keep_alive: bool,
    pub(super) api_token: Option<Range<usize>>,
    pub(super) expect_continue: bool,
    /// Bytes of the head, including the empty lines before it.
    pub(super) len: usize,
}

/// How the body of a parsed head is framed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BodyFraming {
    Length(usize),
    Chunked,
}

/// What the headers of one head say about framing, the connection and the token, gathered
/// header by header; [`HeadFacts::finish`] decides. The httparse path and the fast path
/// (`fast_head`) both feed it, so a head means the same whichever tokenized it.
#[derive(Default)]
pub(super) struct HeadFacts<'b> {
    content_length: Option<&'b [u8]>,
    /// Two `Content-Length`s that differ.
    lengths_differ: bool,
    transfer_encodings: usize,
    chunked: bool,
    hosts: usize,
    close: bool,
    keep_alive_token: bool,
    expect_continue: bool,
    api_token: Option<&'b [u8]>,
}

/// The header names the framing reads; every other name is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeaderName {
    Host,
    Expect,
    Connection,
    ContentLength,
    DaprApiToken,
    TransferEncoding,
    Other,
}

impl HeaderName {
    /// The name `name` is, in any case.
    pub(super) fn of(name: &[u8]) -> HeaderName {
        // Dispatch on length first: most headers match no name and cost one compare.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => HeaderName::Host,
            6 if name.eq_ignore_ascii_case(b"expect") => HeaderName::Expect,
            10 if name.eq_ignore_ascii_case(b"connection") => HeaderName::Connection,
            14 if name.eq_ignore_ascii_case(b"content-length") => HeaderName::ContentLength,
            14 if name.eq_ignore_ascii_case(b"dapr-api-token") => HeaderName::DaprApiToken,
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => HeaderName::TransferEncoding,
            _ => HeaderName::Other,
        }
    }
}

impl<'b> HeadFacts<'b> {
    /// Takes in one header, in the order of the head.
    pub(super) fn header(&mut self, name: &[u8], value: &'b [u8]) {
        self.named(HeaderName::of(name), value);
    }

    /// Takes in one header whose name is known.
    pub(super) fn named(&mut self, name: HeaderName, value: &'b [u8]) {
        match name {
            HeaderName::Host => self.hosts += 1,
            HeaderName::Expect => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            HeaderName::Connection => {
                for token in value.split(|&b| b == b',') {
                    let token = trim_ows(token);
                    self.close |= token.eq_ignore_ascii_case(b"close");
                    self.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            HeaderName::ContentLength => match self.content_length {
                None => self.content_length = Some(value),
                // Repeats are tolerated only when identical (Go's rule, RFC 9110 §8.6).
                Some(first) => self.lengths_differ |= first != value,
            },
            // The first token counts, as Go's Header.Get returns the first value.
            HeaderName::DaprApiToken => {
                if self.api_token.is_none() {
                    self.api_token = Some(value);
                }
            }
            HeaderName::TransferEncoding => {
                self.transfer_encodings += 1;
                self.chunked = value.eq_ignore_ascii_case(b"chunked");
            }
            HeaderName::Other => {}
        }
    }

    /// Decides the head of `len` bytes at the front of `buf`, whose headers were all taken in.
    /// `target` and the header values are parts of `buf`.
    pub(super) fn finish(
        self,
        buf: &[u8],
        method: Method,
        version: Version,
        target: &[u8],
        len: usize,
        limits: &Limits,
    ) -> Result<(Head, BodyFraming), HttpError> {
        if self.lengths_differ {
            return Err(HttpError::BadContentLength);
        }
        if self.hosts > 1 || (self.hosts == 0 && version == Version::Http11) {
            return Err(HttpError::BadHost);
        }
        let framing = if self.transfer_encodings > 0 {
            if version == Version::Http10 {
                return Err(HttpError::TransferEncodingOnHttp10);
            }
            // Only one `chunked`, like Go and nginx: every other coding, list or repeat is a
            // framing this server cannot read, and guessing is how smuggling starts.
            if self.transfer_encodings > 1 || !self.chunked {
                return Err(HttpError::UnsupportedTransferEncoding);
            }
            if self.content_length.is_some() {
                return Err(HttpError::LengthWithTransferEncoding);
            }
            BodyFraming::Chunked
        } else if let Some(value) = self.content_length {
            let n = parse_content_length(value)?;
            if n > limits.max_body_bytes as u64 {
                return Err(HttpError::BodyTooLarge);
            }
            BodyFraming::Length(usize::try_from(n).map_err(|_| HttpError::BodyTooLarge)?)
        } else {
            // A request with neither has no body (RFC 9112 §6.3, rule 7).
            BodyFraming::Length(0)
        };

        let keep_alive = !self.close
            && match version {
                Version::Http11 => true,
                Version::Http10 => self.keep_alive_token,
            };
        let head = Head {
            method,
            version,
            target: origin_of(range_in(buf, target), target),
            keep_alive,
            api_token: self.api_token.map(|token| range_in(buf, token)),
            expect_continue: self.expect_continue && version == Version::Http11,
            len,
        };
        Ok((head, framing))
    }
}

/// A `Content-Length`: one or more ASCII digits and nothing else (no sign, no spaces, no
/// list), within 64 bits.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() {
        return Err(HttpError::BadContentLength);
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(HttpError::BadContentLength);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::BadContentLength)
    })
}

/// The position of `part`, a subslice of `buf`, as a range of `buf`.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    assert!(
        start <= buf.len() && part.len() <= buf.len() - start,
        "part must lie inside buf"
    );
    start..start + part.len()
}

/// For an absolute-form target, the range of its path and query; else the whole target.
fn origin_of(range: Range<usize>, target: &[u8]) -> Range<usize> {
    let scheme = if starts_with_ignore_case(target, b"http://") {
        7
    } else if starts_with_ignore_case(target, b"https://") {
        8
    } else {
        return range;
    };
    let after = target.get(scheme..).unwrap_or_default();
    let path = after
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(target.len(), |i| scheme + i);
    range.start + path..range.end
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Trims optional whitespace (SP, HTAB) from both ends of a list element.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}
