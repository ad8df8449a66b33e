//! The fast path for the heads every client sends: `GET` or `POST`, an ASCII target,
//! `HTTP/1.1` or `HTTP/1.0`, header lines of a token name, a colon and a printable ASCII value,
//! every line ended by CRLF. It tokenizes such a head in one pass, mostly eight bytes at a time,
//! and hands the headers to the same [`HeadFacts`] as the httparse path, so what a head means
//! is decided in one place.
//!
//! It only ever accepts or declines: whatever it does not fully understand (another method,
//! a byte outside its sets, a bare LF, a tab in a value, obs-fold, empty lines before the
//! request line, more than [`MAX_HEADERS`] headers, a head not yet complete or over the limit)
//! returns `None`, and httparse decides. For every head it accepts, httparse finds the same
//! end, method, target, version and headers; the unit tests in `fast_head_tests.rs` and the
//! `http_request` fuzz target hold it to that.
//!
//! Measured with callgrind on the whole server (200,000 uncontended requests at depth 16):
//! with this path the fixed-answer ceiling went from 1,985 to 1,381 instructions per
//! request, dlockd from 3,001 to 2,383.

use super::error::HttpError;
use super::head::{BodyFraming, Head, HeadFacts, HeaderName};
use super::limits::{Limits, MAX_HEADERS};
use super::method::{Method, Version};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// A head tokenized by [`parse`]: its parts, with the headers already given to `facts`.
pub(super) struct FastHead<'b> {
    pub method: Method,
    pub target: &'b [u8],
    pub version: Version,
    pub facts: HeadFacts<'b>,
    /// Bytes of the head, final empty line included.
    pub len: usize,
}

impl FastHead<'_> {
    /// Decides the head, as [`HeadFacts::finish`] does; `buf` is the one it was parsed from.
    pub fn finish(self, buf: &[u8], limits: &Limits) -> Result<(Head, BodyFraming), HttpError> {
        self.facts.finish(
            buf,
            self.method,
            self.version,
            self.target,
            self.len,
            limits,
        )
    }
}

/// Tokenizes the head at the front of `buf` if it is complete, within `max_header_bytes`,
/// and of the plain shape; `None` otherwise.
pub(super) fn parse(buf: &[u8], max_header_bytes: usize) -> Option<FastHead<'_>> {
    let buf = buf.get(..max_header_bytes).unwrap_or(buf);
    let (method, mut at) = if buf.starts_with(b"POST ") {
        (Method::Post, 5)
    } else if buf.starts_with(b"GET ") {
        (Method::Get, 4)
    } else {
        return None;
    };
    let target_len = run_len(buf.get(at..)?, target_special)?;
    if target_len == 0 {
        return None;
    }
    let target = buf.get(at..at + target_len)?;
    at += target_len;
    let version = match buf.get(at..at + 11)? {
        b" HTTP/1.1\r\n" => Version::Http11,
        b" HTTP/1.0\r\n" => Version::Http10,
        _ => return None,
    };
    at += 11;

    let mut facts = HeadFacts::default();
    let mut count = 0;
    loop {
        let rest = buf.get(at..)?;
        if rest.starts_with(b"\r\n") {
            return Some(FastHead {
                method,
                target,
                version,
                facts,
                len: at + 2,
            });
        }
        count += 1;
        if count > MAX_HEADERS {
            return None;
        }
        let (name, mut value_at) = match known_name(rest) {
            Some(known) => known,
            None => {
                let name_len = rest.iter().position(|&b| !is_token(b))?;
                if name_len == 0 || rest.get(name_len) != Some(&b':') {
                    return None;
                }
                (HeaderName::of(rest.get(..name_len)?), name_len + 1)
            }
        };
        while let Some(b' ' | b'\t') = rest.get(value_at) {
            value_at += 1;
        }
        let value_rest = rest.get(value_at..)?;
        let value_len = run_len(value_rest, value_special)?;
        if value_rest.get(value_len..value_len + 2)? != b"\r\n" {
            return None;
        }
        let value = value_rest.get(..value_len)?;
        // httparse drops trailing whitespace; only spaces can be here.
        let trimmed = value.len() - value.iter().rev().take_while(|&&b| b == b' ').count();
        facts.named(name, value.get(..trimmed)?);
        at += value_at + value_len + 2;
    }
}

/// The header lines most clients send, spelled as they send them, with the name each is:
/// such a line needs no scan of its name and no comparison in any case.
const KNOWN: &[(&[u8], HeaderName)] = &[
    (b"Host:", HeaderName::Host),
    (b"host:", HeaderName::Host),
    (b"Content-Length:", HeaderName::ContentLength),
    (b"content-length:", HeaderName::ContentLength),
    (b"Content-Type:", HeaderName::Other),
    (b"content-type:", HeaderName::Other),
    (b"Connection:", HeaderName::Connection),
    (b"connection:", HeaderName::Connection),
    (b"User-Agent:", HeaderName::Other),
    (b"user-agent:", HeaderName::Other),
    (b"Accept:", HeaderName::Other),
    (b"accept:", HeaderName::Other),
    (b"Accept-Encoding:", HeaderName::Other),
    (b"accept-encoding:", HeaderName::Other),
    (b"dapr-api-token:", HeaderName::DaprApiToken),
];

/// The known header line `line` starts with, as its name and where its value's whitespace
/// starts.
#[inline]
fn known_name(line: &[u8]) -> Option<(HeaderName, usize)> {
    let first = *line.first()?;
    KNOWN
        .iter()
        .filter(|(prefix, _)| prefix[0] == first)
        .find(|(prefix, _)| line.starts_with(prefix))
        .map(|&(prefix, name)| (name, prefix.len()))
}

/// The length of the run of ordinary bytes at the start of `bytes`, as told by `special`
/// (which flags, in bit 7 of each byte, at least the first byte that ends the run and no byte
/// before it), or `None` if the run reaches the end of `bytes`.
#[inline]
fn run_len(bytes: &[u8], special: impl Fn(u64) -> u64) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let flags = special(u64::from_le_bytes(word));
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    let mut word = [b'a'; 8];
    word[..tail.len()].copy_from_slice(tail);
    let flags = special(u64::from_le_bytes(word));
    let i = (flags.trailing_zeros() / 8) as usize;
    (flags != 0 && i < tail.len()).then_some(at + i)
}

/// Flags the bytes that end a target: anything outside `!`..=`~` (a space, a control byte,
/// DEL, non-ASCII). A borrow or carry only starts at a flagged byte and only moves up, so
/// the lowest flag is exact.
#[inline]
fn target_special(x: u64) -> u64 {
    ((x.wrapping_sub(ONES * 0x21) & !x) | x.wrapping_add(ONES) | x) & HIGH
}

/// Flags the bytes that end a header value here: anything outside ` `..=`~` (CR, LF, a tab,
/// another control byte, DEL, non-ASCII). Exact at the lowest flag, as [`target_special`].
#[inline]
fn value_special(x: u64) -> u64 {
    ((x.wrapping_sub(ONES * 0x20) & !x) | x.wrapping_add(ONES) | x) & HIGH
}

/// httparse's header name bytes (RFC 9110 `tchar`).
#[inline]
fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    // Each known line is a valid name and a colon, and is the name the general rule gives.
    #[test]
    fn known_header_lines_name_what_the_general_rule_names() {
        for &(prefix, name) in KNOWN {
            let (colon, bytes) = prefix.split_last().expect("not empty");
            assert_eq!(*colon, b':');
            assert!(bytes.iter().all(|&b| is_token(b)), "{prefix:?}");
            assert_eq!(HeaderName::of(bytes), name, "{prefix:?}");
        }
    }
}
