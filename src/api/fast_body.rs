//! The fast path for the bodies every Dapr client sends: one flat object whose keys are the
//! request's own fields, whose strings are plain ASCII without escapes, and whose expiry is a
//! plain integer. It decides such a body in one pass over its bytes.
//!
//! It only ever accepts or declines: whatever it does not fully understand (an escape, a
//! non-ASCII byte, an unknown or repeated key, `null`, an expiry in a string, a fraction or
//! exponent, too many digits, any syntax error) returns `None`, and the full protojson decoder
//! in `body` decides. For every body it accepts, the full decoder yields the same fields;
//! the differential tests and the `lock_body` fuzz target hold it to that.
//!
//! Measured with callgrind on the whole server: simd-json's parse plus the tape walk cost
//! about 1,000 instructions for an 81-byte lock body, most of the lock work per request.

use super::Operation;

/// Digits of the longest int32 (2147483648 has 10).
const MAX_INT_DIGITS: usize = 10;

/// Decodes `body` if it has the plain shape, into `(resourceId, lockOwner, expiryInSeconds)`
/// borrowed from the body: a plain string needs no unescaping, so nothing is copied.
#[inline]
pub(crate) fn fields_of(op: Operation, body: &[u8]) -> Option<(&[u8], &[u8], i32)> {
    match canonical(op, body) {
        Some(found) => Some(found),
        None => any_order(op, body),
    }
}

/// The exact bytes the official SDKs send, in their order and without spaces:
/// `{"resourceId":"…","lockOwner":"…","expiryInSeconds":N}` (or without the expiry for an
/// unlock). Checked as three literals around two plain strings and an integer. The resource
/// id it returns has no `|`.
#[inline]
pub(crate) fn canonical(op: Operation, body: &[u8]) -> Option<(&[u8], &[u8], i32)> {
    const RESOURCE: &[u8] = b"{\"resourceId\":\"";
    const OWNER: &[u8] = b"\",\"lockOwner\":\"";
    const EXPIRY: &[u8] = b"\",\"expiryInSeconds\":";
    let rest = body.strip_prefix(RESOURCE)?;
    // A resource id with a `|` is left to the other paths, so one taken here needs no
    // check for daprd's `||` separator (see `LockFields::no_pipe`).
    let resource_len = plain_string_len_with(rest, |x| first_special(x) | pipes(x))?;
    let (resource, rest) = rest.split_at(resource_len);
    let rest = rest.strip_prefix(OWNER)?;
    let owner_len = plain_string_len(rest)?;
    let (owner, rest) = rest.split_at(owner_len);
    match op {
        Operation::Unlock => (rest == b"\"}").then_some((resource, owner, 0)),
        Operation::TryLock => {
            let number = rest.strip_prefix(EXPIRY)?.strip_suffix(b"}")?;
            Some((resource, owner, plain_positive_int32(number)?))
        }
    }
}

/// The whole of `digits` as a JSON integer from 1 to `i32::MAX` written without a sign or a
/// leading zero: what clients send. Anything else (0, negative, too long) is `None`, and
/// the other paths decide it.
#[inline]
fn plain_positive_int32(digits: &[u8]) -> Option<i32> {
    if digits.is_empty() || digits.len() > MAX_INT_DIGITS || digits[0] == b'0' {
        return None;
    }
    let mut value = 0u64;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u64::from(digit);
    }
    i32::try_from(value).ok()
}

/// One flat object of the request's own keys in any order, with optional whitespace.
pub(crate) fn any_order(op: Operation, body: &[u8]) -> Option<(&[u8], &[u8], i32)> {
    let mut p = Scan { bytes: body, at: 0 };
    let mut resource: Option<&[u8]> = None;
    let mut owner: Option<&[u8]> = None;
    let mut store: Option<&[u8]> = None;
    let mut expiry: Option<i32> = None;

    p.skip_space();
    p.expect(b'{')?;
    p.skip_space();
    if p.peek()? == b'}' {
        p.at += 1;
    } else {
        loop {
            let key = p.string()?;
            p.skip_space();
            p.expect(b':')?;
            p.skip_space();
            let slot = match key {
                b"resourceId" | b"resource_id" => &mut resource,
                b"lockOwner" | b"lock_owner" => &mut owner,
                b"storeName" | b"store_name" => &mut store,
                b"expiryInSeconds" | b"expiry_in_seconds" if op == Operation::TryLock => {
                    if expiry.is_some() {
                        return None;
                    }
                    expiry = Some(p.int32()?);
                    if !p.next_member()? {
                        break;
                    }
                    continue;
                }
                _ => return None,
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(p.string()?);
            if !p.next_member()? {
                break;
            }
        }
    }
    p.skip_space();
    if p.at != body.len() {
        return None;
    }

    Some((
        resource.unwrap_or_default(),
        owner.unwrap_or_default(),
        expiry.unwrap_or(0),
    ))
}

/// The length of the plain string at the start of `bytes` (up to its closing quote), or None
/// if a byte before the quote is a backslash, a control byte, DEL or not ASCII, or there is
/// no closing quote. Eight bytes at a time: a byte-at-a-time loop cost more than the whole
/// rest of the decoder.
#[inline]
fn plain_string_len(bytes: &[u8]) -> Option<usize> {
    plain_string_len_with(bytes, first_special)
}

/// [`plain_string_len`] with `special` flagging the bytes that end the run (bit 7 of each
/// byte; exact at the lowest flag): the closing quote must be the first of them.
#[inline]
fn plain_string_len_with(bytes: &[u8], special: impl Fn(u64) -> u64) -> Option<usize> {
    let first = |x: u64| {
        let flags = special(x);
        (flags != 0).then(|| (flags.trailing_zeros() / 8) as usize)
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if let Some(i) = first(u64::from_le_bytes(word)) {
            return (chunk[i] == b'"').then_some(at + i);
        }
        at += 8;
    }
    // The tail, padded with a plain byte so one more word check decides it.
    let tail = chunks.remainder();
    let mut word = [b'a'; 8];
    word[..tail.len()].copy_from_slice(tail);
    match first(u64::from_le_bytes(word)) {
        Some(i) if i < tail.len() => (tail[i] == b'"').then_some(at + i),
        _ => None,
    }
}

/// Flags the `|` bytes of `x` in bit 7. Like [`first_special`], it may also flag bytes after
/// the first `|`, never before it, which is all `plain_string_len_with` needs.
#[inline]
fn pipes(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let y = x ^ (ONES * u64::from(b'|'));
    y.wrapping_sub(ONES) & !y & HIGH
}

/// Flags (bit 7 of each byte) the bytes of `x` (little-endian) that are `"`, `\\`, below 0x20,
/// DEL or above 0x7f. The bit tricks may also flag bytes after the first such byte (a borrow or
/// carry only starts at a flagged byte), never before it, so the first flag is exact.
#[inline]
fn first_special(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    ((quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (x.wrapping_sub(ONES * 0x20) & !x)
        | x.wrapping_add(ONES)
        | x)
        & HIGH
}

const ONES: u64 = 0x0101_0101_0101_0101;

struct Scan<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Scan<'b> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    #[inline]
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A string of printable ASCII without escapes; its contents.
    #[inline]
    fn string(&mut self) -> Option<&'b [u8]> {
        self.expect(b'"')?;
        let rest = self.bytes.get(self.at..)?;
        let len = plain_string_len(rest)?;
        self.at += len + 1;
        rest.get(..len)
    }

    /// A plain JSON integer (no fraction, no exponent, no leading zero) within int32.
    #[inline]
    fn int32(&mut self) -> Option<i32> {
        let negative = self.peek()? == b'-';
        if negative {
            self.at += 1;
        }
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        let digits = self.bytes.get(start..self.at)?;
        if digits.is_empty()
            || digits.len() > MAX_INT_DIGITS
            || (digits.len() > 1 && digits[0] == b'0')
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        let magnitude = digits
            .iter()
            .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
        let value = if negative { -magnitude } else { magnitude };
        i32::try_from(value).ok()
    }

    /// After a member: true at `,` (another member follows), false at `}`.
    #[inline]
    fn next_member(&mut self) -> Option<bool> {
        self.skip_space();
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.skip_space();
                Some(true)
            }
            b'}' => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body::BodyDecoder;
    use proptest::prelude::*;

    fn fast(op: Operation, body: &str) -> Option<(String, String, i32)> {
        fields_of(op, body.as_bytes()).map(|(resource, owner, expiry_s)| {
            (
                String::from_utf8_lossy(resource).into_owned(),
                String::from_utf8_lossy(owner).into_owned(),
                expiry_s,
            )
        })
    }

    fn full(op: Operation, body: &str) -> Option<(String, String, i32)> {
        let mut decoder = BodyDecoder::default();
        decoder.decode_full(op, body.as_bytes()).ok().map(|f| {
            (
                String::from_utf8_lossy(f.resource).into_owned(),
                String::from_utf8_lossy(f.owner).into_owned(),
                f.expiry_s,
            )
        })
    }

    // The word-at-a-time scan finds the closing quote and refuses every byte a plain string
    // cannot hold, at every position in the word and past it.
    #[test]
    fn plain_string_len_matches_a_byte_loop() {
        fn reference(bytes: &[u8]) -> Option<usize> {
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'"' {
                    return Some(i);
                }
                if !(0x20..0x7f).contains(&b) || b == b'\\' {
                    return None;
                }
            }
            None
        }
        for len in 0..20 {
            for pos in 0..len {
                for special in [
                    b'"', b'\\', 0x00, 0x1f, 0x7f, 0x80, 0xff, b' ', b'~', b'!', b'#',
                ] {
                    let mut bytes = vec![b'a'; len];
                    bytes[pos] = special;
                    assert_eq!(plain_string_len(&bytes), reference(&bytes), "{bytes:?}");
                    bytes.push(b'"');
                    assert_eq!(plain_string_len(&bytes), reference(&bytes), "{bytes:?}");
                }
            }
        }
    }

    // The bodies clients send take the fast path, with the right fields.
    #[test]
    fn plain_bodies_are_decoded() {
        let t = Operation::TryLock;
        assert_eq!(
            fast(
                t,
                r#"{"resourceId":"r-1","lockOwner":"o","expiryInSeconds":10}"#
            ),
            Some(("r-1".into(), "o".into(), 10))
        );
        assert_eq!(
            fast(t, " {\n \"lock_owner\" : \"o\",\t\"expiry_in_seconds\": -5, \"resource_id\":\"r\", \"storeName\":\"s\" }\r\n"),
            Some(("r".into(), "o".into(), -5))
        );
        assert_eq!(fast(t, "{}"), Some((String::new(), String::new(), 0)));
        assert_eq!(
            fast(Operation::Unlock, r#"{"resourceId":"r","lockOwner":"o"}"#),
            Some(("r".into(), "o".into(), 0))
        );
        assert_eq!(
            fast(t, r#"{"expiryInSeconds":2147483647}"#).map(|f| f.2),
            Some(i32::MAX)
        );
        assert_eq!(
            fast(t, r#"{"expiryInSeconds":-2147483648}"#).map(|f| f.2),
            Some(i32::MIN)
        );
    }

    // A resource id with a `|` anywhere (the word boundaries included) is never taken by the
    // canonical matcher, which is what lets validation skip the `||` check for its ids; the
    // any-order scanner still takes it.
    #[test]
    fn canonical_takes_no_resource_with_a_pipe() {
        for len in 1..20 {
            for at in 0..len {
                let mut resource = vec![b'r'; len];
                resource[at] = b'|';
                let resource = String::from_utf8(resource).expect("ASCII");
                let body = format!(r#"{{"resourceId":"{resource}","lockOwner":"o|"}}"#);
                assert_eq!(
                    canonical(Operation::Unlock, body.as_bytes()),
                    None,
                    "{body}"
                );
                let (found, owner, _) =
                    any_order(Operation::Unlock, body.as_bytes()).expect("plain body");
                assert_eq!((found, owner), (resource.as_bytes(), &b"o|"[..]));
            }
        }
        let owner_pipe = br#"{"resourceId":"r","lockOwner":"o|o"}"#;
        assert!(
            canonical(Operation::Unlock, owner_pipe).is_some(),
            "owners may hold `|`"
        );
    }

    // The canonical matcher and the any-order scanner agree wherever the first accepts, and
    // the canonical matcher refuses near misses it must not take.
    #[test]
    fn canonical_matches_the_general_scanner() {
        for (op, body) in [
            (
                Operation::TryLock,
                r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":7}"#,
            ),
            (
                Operation::TryLock,
                r#"{"resourceId":"","lockOwner":"","expiryInSeconds":2147483647}"#,
            ),
            (Operation::Unlock, r#"{"resourceId":"r","lockOwner":"o"}"#),
        ] {
            assert!(canonical(op, body.as_bytes()).is_some(), "{body}");
            assert_eq!(
                canonical(op, body.as_bytes()),
                any_order(op, body.as_bytes())
            );
        }
        // Expiries that are not a positive int32 in plain digits are left to the scanner,
        // which decides them the same as the full decoder.
        for expiry in ["0", "-7", "2147483648", "07"] {
            let body =
                format!(r#"{{"resourceId":"r","lockOwner":"o","expiryInSeconds":{expiry}}}"#);
            assert_eq!(
                canonical(Operation::TryLock, body.as_bytes()),
                None,
                "{body}"
            );
            assert_eq!(
                fields_of(Operation::TryLock, body.as_bytes()),
                any_order(Operation::TryLock, body.as_bytes()),
                "{body}"
            );
        }
        assert_eq!(
            fields_of(
                Operation::TryLock,
                br#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":-7}"#
            ),
            Some((&b"r"[..], &b"o"[..], -7))
        );
        for (op, body) in [
            (
                Operation::TryLock,
                r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":7}x"#,
            ),
            (
                Operation::TryLock,
                r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":7.5}"#,
            ),
            (
                Operation::TryLock,
                r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":}"#,
            ),
            (Operation::TryLock, r#"{"resourceId":"r","lockOwner":"o"}"#),
            (
                Operation::Unlock,
                r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":7}"#,
            ),
            (Operation::Unlock, r#"{"resourceId":"r\"","lockOwner":"o"}"#),
        ] {
            assert_eq!(canonical(op, body.as_bytes()), None, "{body}");
        }
    }

    // Anything outside the plain shape is left to the full decoder.
    #[test]
    fn everything_else_is_declined() {
        let t = Operation::TryLock;
        for body in [
            r#"{"resourceId":"a\"b","lockOwner":"o"}"#,
            r#"{"resourceId":"é","lockOwner":"o"}"#,
            r#"{"resourceId":null}"#,
            r#"{"resourceId":"r","resourceId":"r"}"#,
            r#"{"resourceId":"r","resource_id":"r"}"#,
            r#"{"expiryInSeconds":10,"expiry_in_seconds":10}"#,
            r#"{"expiryInSeconds":"10"}"#,
            r#"{"expiryInSeconds":10.0}"#,
            r#"{"expiryInSeconds":1e1}"#,
            r#"{"expiryInSeconds":010}"#,
            r#"{"expiryInSeconds":2147483648}"#,
            r#"{"expiryInSeconds":-}"#,
            r#"{"other":1}"#,
            r#"{"ResourceId":"r"}"#,
            r#"{"resourceId":1}"#,
            r#"{"resourceId":"r",}"#,
            r#"{"resourceId":"r"} x"#,
            r#"{"resourceId":"r""#,
            "{\"resourceId\":\"a\tb\"}",
            "[]",
            "",
            "   ",
        ] {
            assert_eq!(fast(t, body), None, "{body}");
        }
        assert_eq!(fast(Operation::Unlock, r#"{"expiryInSeconds":10}"#), None);
    }

    fn plain_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,12}".prop_map(|s| s.replace(['"', '\\'], "")),
            "[a-z0-9-]{1,40}",
            "[ -~]{0,6}",
        ]
    }

    fn member() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("resourceId"),
            Just("resource_id"),
            Just("lockOwner"),
            Just("lock_owner"),
            Just("storeName"),
            Just("expiryInSeconds"),
            Just("expiry_in_seconds"),
            Just("other"),
        ];
        let value = prop_oneof![
            plain_string().prop_map(|s| format!("\"{s}\"")),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<i32>().prop_map(|n| n.to_string()),
            Just("null".to_string()),
            Just("1e1".to_string()),
            Just("-0".to_string()),
        ];
        let space = prop_oneof![Just(""), Just(" "), Just("\n\t")];
        (key, value, space).prop_map(|(k, v, s)| format!("{s}\"{k}\"{s}:{s}{v}{s}"))
    }

    proptest! {
        // Whenever the fast path accepts a body, the full decoder accepts it too with the
        // same fields; and it accepts the canonical shape clients send.
        #[test]
        fn fast_path_agrees_with_the_full_decoder(
            members in proptest::collection::vec(member(), 0..5),
            unlock in any::<bool>(),
        ) {
            let op = if unlock { Operation::Unlock } else { Operation::TryLock };
            let body = format!("{{{}}}", members.join(","));
            if let Some(fields) = fast(op, &body) {
                prop_assert_eq!(Some(fields), full(op, &body), "{}", body);
            }
        }

        #[test]
        fn canonical_bodies_take_the_fast_path(
            resource in "[a-zA-Z0-9-]{1,64}",
            owner in "[a-zA-Z0-9-]{1,64}",
            expiry in 1i32..,
        ) {
            let body = format!(r#"{{"resourceId":"{resource}","lockOwner":"{owner}","expiryInSeconds":{expiry}}}"#);
            prop_assert_eq!(fast(Operation::TryLock, &body), Some((resource, owner, expiry)));
        }
    }
}
