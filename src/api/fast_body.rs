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
//!
//! Strings are scanned 16 bytes at a time with SSE2 on x86_64 (the `sse2` module, the one place
//! here with `unsafe`), and eight at a time with integer bit tricks elsewhere (`swar`); the
//! tests hold the first to a byte loop and to the second, and `canonical` to the matcher it
//! replaced.

use super::op::Operation;

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

/// `{"resourceId":"`: the canonical body's first bytes.
const RESOURCE: [u8; 15] = *b"{\"resourceId\":\"";
/// `","lockOwner":"`: from the resource id's closing quote to the owner's first byte.
const OWNER: [u8; 15] = *b"\",\"lockOwner\":\"";
/// `","expiryInSeconds":`: from the owner's closing quote to the expiry's first digit.
const EXPIRY: [u8; 20] = *b"\",\"expiryInSeconds\":";
/// `"}`: the owner's closing quote and the end of an unlock body.
const UNLOCK_END: [u8; 2] = *b"\"}";
/// The shortest canonical body, `{"resourceId":"","lockOwner":""}`. Anything shorter is
/// declined at once, which also gives every string scan a whole last block to load.
const MIN_CANONICAL_BYTES: usize = RESOURCE.len() + OWNER.len() + UNLOCK_END.len();

/// The exact bytes the official SDKs send, in their order and without spaces:
/// `{"resourceId":"…","lockOwner":"…","expiryInSeconds":N}` (or without the expiry for an
/// unlock). Checked as three fixed-size literals around two plain strings and an integer. The
/// resource id it returns has no `|`.
#[inline]
pub(crate) fn canonical(op: Operation, body: &[u8]) -> Option<(&[u8], &[u8], i32)> {
    if body.len() < MIN_CANONICAL_BYTES || !literal_at(body, 0, &RESOURCE) {
        return None;
    }
    // Each string ends at its first stop, which must be its closing quote: the literal that
    // follows it starts with that quote, so checking the literal checks the stop. A resource
    // id with a `|` is left to the other paths, so one taken here needs no check for daprd's
    // `||` separator (see `LockFields::no_pipe`).
    let resource_end = stop_at::<true>(body, RESOURCE.len())?;
    if !literal_at(body, resource_end, &OWNER) {
        return None;
    }
    let owner_at = resource_end + OWNER.len();
    let owner_end = stop_at::<false>(body, owner_at)?;
    let resource = body.get(RESOURCE.len()..resource_end)?;
    let owner = body.get(owner_at..owner_end)?;
    match op {
        Operation::Unlock => (body.get(owner_end..)? == UNLOCK_END).then_some((resource, owner, 0)),
        // dlockd's own routes take the full decoder: they are not on the hot path.
        Operation::Renew | Operation::Acquire | Operation::Holder => None,
        Operation::TryLock => {
            let (&last, before) = body.split_last()?;
            let digits_at = owner_end + EXPIRY.len();
            if last != b'}' || digits_at > before.len() || !literal_at(body, owner_end, &EXPIRY) {
                return None;
            }
            Some((resource, owner, plain_positive_int32(&before[digits_at..])?))
        }
    }
}

/// Whether `literal` (8 bytes or more) is at `at` in `bytes`, compared as 8-byte words, the
/// last one overlapping the one before: LLVM compiles the plain array compare of 15 bytes
/// into loads of 8, 4, 2 and 1 bytes pieced together. Always inlined: LLVM kept the 20-byte
/// compare out of line, which cost `canonical` about 10 instructions a request.
#[inline(always)]
fn literal_at<const N: usize>(bytes: &[u8], at: usize, literal: &[u8; N]) -> bool {
    const { assert!(N >= 8) };
    let word = |b: &[u8; N], i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    // Written so that a caller that knows `bytes` has N bytes or more checks one bound.
    let Some(last_at) = bytes.len().checked_sub(N) else {
        return false;
    };
    if at > last_at {
        return false;
    }
    let Some(found) = bytes[at..].first_chunk::<N>() else {
        return false;
    };
    let mut differ = 0;
    let mut i = 0;
    while i < N {
        let j = i.min(N - 8);
        differ |= word(found, j) ^ word(literal, j);
        i += 8;
    }
    differ == 0
}

/// The whole of `digits` as a JSON integer from 1 to `i32::MAX` written without a sign or a
/// leading zero: what clients send. Anything else (0, negative, too long) is `None`, and
/// the other paths decide it. Always inlined: LLVM kept it out of line, and the call cost
/// about as much as the two digits clients usually send.
#[inline(always)]
fn plain_positive_int32(digits: &[u8]) -> Option<i32> {
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) || rest.len() >= MAX_INT_DIGITS {
        return None;
    }
    let mut value = u64::from(first - b'0');
    for &byte in rest {
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
    if !matches!(op, Operation::TryLock | Operation::Unlock) {
        return None;
    }
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

#[cfg(target_arch = "x86_64")]
use sse2::stop_at;
#[cfg(not(target_arch = "x86_64"))]
use swar::stop_at;

/// The plain-string scan on x86_64: 16 bytes at a time with SSE2, which every x86_64 CPU has.
/// It flags every byte that stops a string exactly, so the last block of a body may overlap
/// bytes already scanned.
///
/// A block costs 13 instructions (9 SSE2 operations, the mask, the branch). Measured with
/// callgrind on the whole server at depth 16 (try-lock and unlock bodies with 36-byte ids),
/// `canonical` went from 261 instructions a request to 153 with this scan, the word compares
/// of the literals and the closing quotes left to those literals. LLVM does not turn a
/// portable per-byte fold into `pmovmskb` (it emits about 90 instructions a block), hence the
/// intrinsics and their one `unsafe` call.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use core::arch::x86_64::{
        _mm_add_epi8, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8,
        _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x,
    };

    /// The bytes of one block: one SSE2 register.
    const BLOCK: usize = 16;

    // The intrinsics below need SSE2, which is part of the x86_64 baseline: every x86_64
    // target enables it. This fails the build if one ever does not.
    const _: () = assert!(cfg!(target_feature = "sse2"));

    /// The index in `body` of the first byte at or after `start` that stops a plain string: a
    /// quote (the string is plain up to there), or a backslash, a control byte, DEL, a byte
    /// above 0x7f or, when `PIPE`, a `|` (it is not plain). None if there is none.
    #[inline]
    pub(super) fn stop_at<const PIPE: bool>(body: &[u8], start: usize) -> Option<usize> {
        let Some(last_at) = body.len().checked_sub(BLOCK) else {
            return short_stop_at::<PIPE>(body, start);
        };
        let mut at = start;
        while let Some(block) = body.get(at..).and_then(|rest| rest.first_chunk()) {
            let stops = stops::<PIPE>(block);
            if stops != 0 {
                return Some(at + stops.trailing_zeros() as usize);
            }
            at += BLOCK;
        }
        // Fewer than a block's bytes are left from `at`: scan the body's last block and drop
        // the flags of the bytes before `at`, already scanned or before `start`. `at` is past
        // `last_at` and at most the body's length (unless `start` was past it: nothing is left
        // to scan then), so the clamp only ever drops the whole block.
        let skip = (at - last_at).min(BLOCK) as u32;
        let stops = stops::<PIPE>(body.last_chunk()?) >> skip;
        (stops != 0).then(|| at + stops.trailing_zeros() as usize)
    }

    /// [`stop_at`] in a body shorter than a block (only the any-order scanner sees one): one
    /// block, the body padded with a byte that is no stop.
    #[cold]
    fn short_stop_at<const PIPE: bool>(body: &[u8], start: usize) -> Option<usize> {
        let mut block = [b'a'; BLOCK];
        block[..body.len()].copy_from_slice(body);
        let stops = stops::<PIPE>(&block) >> start.min(BLOCK);
        (stops != 0).then(|| start + stops.trailing_zeros() as usize)
    }

    /// The stops of `block`: bit i set when byte i stops a plain string.
    #[inline]
    #[allow(unsafe_code)]
    fn stops<const PIPE: bool>(block: &[u8; BLOCK]) -> u32 {
        // SAFETY: `plain_bytes` is unsafe to call only for its `target_feature(enable =
        // "sse2")`, and SSE2 is enabled on every x86_64 target (asserted at compile time
        // above), so this CPU has it. It reads nothing but the block it is lent.
        !unsafe { plain_bytes::<PIPE>(block) } & 0xffff
    }

    /// Bit i set when byte i of `block` may be inside a plain string.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn plain_bytes<const PIPE: bool>(block: &[u8; BLOCK]) -> u32 {
        let word = u128::from_le_bytes(*block);
        // Two halves rather than an (unsafe) pointer load: LLVM still emits one `movdqu`.
        let x = _mm_set_epi64x((word >> 64) as u64 as i64, word as u64 as i64);
        // 0x20..=0x7e: the byte + 1 is above 0x20 as a signed byte (DEL + 1 is -128, the
        // bytes above 0x7f are negative or wrap to 0).
        let printable = _mm_cmpgt_epi8(_mm_add_epi8(x, _mm_set1_epi8(1)), _mm_set1_epi8(0x20));
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let escape = if PIPE {
            // With bit 5 clear, `\` (0x5c) and `|` (0x7c) both read `\`, and no other byte
            // does.
            _mm_cmpeq_epi8(
                _mm_and_si128(x, _mm_set1_epi8(!0x20)),
                _mm_set1_epi8(b'\\' as i8),
            )
        } else {
            _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8))
        };
        let plain = _mm_andnot_si128(escape, _mm_andnot_si128(quote, printable));
        _mm_movemask_epi8(plain) as u32
    }
}

/// The plain-string scan elsewhere, eight bytes at a time with integer bit tricks. On x86_64
/// it is built only for the tests, which hold the SSE2 scan to it.
#[cfg(any(not(target_arch = "x86_64"), test))]
mod swar {
    /// The index in `body` of the closing quote of the plain string that starts at `start`,
    /// or None if it is not plain (see [`plain_string_len`]; with `PIPE`, a `|` also makes
    /// it not plain). It answers as `sse2::stop_at` does wherever the string is plain, and
    /// None where that returns a byte other than a quote.
    #[inline]
    pub(super) fn stop_at<const PIPE: bool>(body: &[u8], start: usize) -> Option<usize> {
        let bytes = body.get(start..)?;
        let len = if PIPE {
            plain_string_len_with(bytes, |x| first_special(x) | pipes(x))
        } else {
            plain_string_len(bytes)
        };
        Some(start + len?)
    }

    /// The length of the plain string at the start of `bytes` (up to its closing quote), or
    /// None if a byte before the quote is a backslash, a control byte, DEL or not ASCII, or
    /// there is no closing quote. Eight bytes at a time: a byte-at-a-time loop cost more than
    /// the whole rest of the decoder.
    #[inline]
    pub(super) fn plain_string_len(bytes: &[u8]) -> Option<usize> {
        plain_string_len_with(bytes, first_special)
    }

    /// [`plain_string_len`] with `special` flagging the bytes that end the run (bit 7 of each
    /// byte; exact at the lowest flag): the closing quote must be the first of them.
    #[inline]
    pub(super) fn plain_string_len_with(
        bytes: &[u8],
        special: impl Fn(u64) -> u64,
    ) -> Option<usize> {
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

    /// Flags the `|` bytes of `x` in bit 7. Like [`first_special`], it may also flag bytes
    /// after the first `|`, never before it, which is all `plain_string_len_with` needs.
    #[inline]
    pub(super) fn pipes(x: u64) -> u64 {
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let y = x ^ (ONES * u64::from(b'|'));
        y.wrapping_sub(ONES) & !y & HIGH
    }

    /// Flags (bit 7 of each byte) the bytes of `x` (little-endian) that are `"`, `\\`, below
    /// 0x20, DEL or above 0x7f. The bit tricks may also flag bytes after the first such byte
    /// (a borrow or carry only starts at a flagged byte), never before it, so the first flag
    /// is exact.
    #[inline]
    pub(super) fn first_special(x: u64) -> u64 {
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
}

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
        let start = self.at;
        self.at = stop_at::<false>(self.bytes, start)?;
        self.expect(b'"')?;
        self.bytes.get(start..self.at - 1)
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
                    assert_eq!(
                        swar::plain_string_len(&bytes),
                        reference(&bytes),
                        "{bytes:?}"
                    );
                    bytes.push(b'"');
                    assert_eq!(
                        swar::plain_string_len(&bytes),
                        reference(&bytes),
                        "{bytes:?}"
                    );
                }
            }
        }
    }

    /// Whether `byte` stops a plain string (`pipe`: a `|` does too), byte by byte.
    fn stops_string(byte: u8, pipe: bool) -> bool {
        !(0x20..0x7f).contains(&byte) || byte == b'"' || byte == b'\\' || (pipe && byte == b'|')
    }

    /// The first stop at or after `start`, byte by byte.
    fn reference_stop_at(body: &[u8], start: usize, pipe: bool) -> Option<usize> {
        (start..body.len()).find(|&i| stops_string(body[i], pipe))
    }

    /// What a stop means to the callers: the string is plain, up to there, only if the
    /// stop is a quote.
    fn closing_quote(body: &[u8], stop: Option<usize>) -> Option<usize> {
        stop.filter(|&i| body[i] == b'"')
    }

    /// Checks every scan on `body` from `start` against the byte loop: the one this build
    /// uses, the SSE2 one (exact stop) and the word-at-a-time one (same closing quote).
    fn check_stop_at(body: &[u8], start: usize) {
        for pipe in [false, true] {
            let expected = reference_stop_at(body, start, pipe);
            let found = if pipe {
                stop_at::<true>(body, start)
            } else {
                stop_at::<false>(body, start)
            };
            let swar = if pipe {
                swar::stop_at::<true>(body, start)
            } else {
                swar::stop_at::<false>(body, start)
            };
            let context = format!("pipe {pipe}, start {start}, {body:?}");
            assert_eq!(
                closing_quote(body, found),
                closing_quote(body, expected),
                "{context}"
            );
            assert_eq!(swar, closing_quote(body, expected), "{context}");
            #[cfg(target_arch = "x86_64")]
            {
                let sse2 = if pipe {
                    sse2::stop_at::<true>(body, start)
                } else {
                    sse2::stop_at::<false>(body, start)
                };
                assert_eq!(sse2, expected, "{context}");
            }
        }
    }

    /// Bytes that stop a string or sit at the edges of the plain range.
    const PROBES: [u8; 12] = [
        b'"', b'\\', b'|', 0x00, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xff, b'a', b'}',
    ];

    // The block scan finds the first stop at every position of a block, across the block
    // boundaries (strings of 15, 16, 17, 31, 32, 33 bytes and around), in the last partial
    // block that overlaps bytes already scanned, in bodies shorter than a block, and from a
    // start past the end; the stop bytes before `start` (the opening quote, a literal) are
    // never taken.
    #[test]
    fn stop_at_matches_a_byte_loop() {
        for len in 0..=50 {
            for start in (0..=len + 1).chain([len + 17, len + 40]) {
                for before in [b'"', 0x00, b'a'] {
                    let mut body = vec![b'a'; len];
                    body[..start.min(len)].fill(before);
                    check_stop_at(&body, start);
                    for at in start..len {
                        for probe in PROBES {
                            let mut body = body.clone();
                            body[at] = probe;
                            check_stop_at(&body, start);
                        }
                    }
                }
            }
        }
    }

    // A second stop after the first changes nothing, in the same block or the next, whatever
    // the two are.
    #[test]
    fn stop_at_takes_the_first_of_two_stops() {
        for len in [15, 16, 17, 31, 32, 33, 48] {
            for start in [0, 1, 15] {
                for first in start..len {
                    for second in first + 1..len {
                        for (a, b) in [(b'"', b'\\'), (b'\\', b'"'), (0x80, b'"'), (b'|', 0x7f)] {
                            let mut body = vec![b'a'; len];
                            body[first] = a;
                            body[second] = b;
                            check_stop_at(&body, start);
                        }
                    }
                }
            }
        }
    }

    /// The canonical matcher as it was before the block scan, kept as the reference: prefix
    /// and suffix compares around the word-at-a-time scan.
    fn canonical_before(op: Operation, body: &[u8]) -> Option<(&[u8], &[u8], i32)> {
        fn positive_int32(digits: &[u8]) -> Option<i32> {
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
        let rest = body.strip_prefix(b"{\"resourceId\":\"")?;
        let resource_len =
            swar::plain_string_len_with(rest, |x| swar::first_special(x) | swar::pipes(x))?;
        let (resource, rest) = rest.split_at(resource_len);
        let rest = rest.strip_prefix(b"\",\"lockOwner\":\"")?;
        let owner_len = swar::plain_string_len(rest)?;
        let (owner, rest) = rest.split_at(owner_len);
        match op {
            Operation::Renew | Operation::Acquire | Operation::Holder => None,
            Operation::Unlock => (rest == b"\"}").then_some((resource, owner, 0)),
            Operation::TryLock => {
                let number = rest
                    .strip_prefix(b"\",\"expiryInSeconds\":")?
                    .strip_suffix(b"}")?;
                Some((resource, owner, positive_int32(number)?))
            }
        }
    }

    fn check_canonical(body: &[u8]) {
        for op in [Operation::TryLock, Operation::Unlock] {
            assert_eq!(
                canonical(op, body),
                canonical_before(op, body),
                "{op:?} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn canonical_body(resource: &[u8], owner: &[u8], expiry: Option<&str>) -> Vec<u8> {
        let mut body = b"{\"resourceId\":\"".to_vec();
        body.extend_from_slice(resource);
        body.extend_from_slice(b"\",\"lockOwner\":\"");
        body.extend_from_slice(owner);
        match expiry {
            Some(expiry) => {
                body.extend_from_slice(b"\",\"expiryInSeconds\":");
                body.extend_from_slice(expiry.as_bytes());
                body.push(b'}');
            }
            None => body.extend_from_slice(b"\"}"),
        }
        body
    }

    const EXPIRIES: [Option<&str>; 12] = [
        None,
        Some("1"),
        Some("10"),
        Some("2147483647"),
        Some("2147483648"),
        Some("99999999999"),
        Some("0"),
        Some("01"),
        Some("-1"),
        Some(""),
        Some("1x"),
        Some("1.5"),
    ];

    // The canonical matcher decides exactly as it did before the block scan: on every
    // length of resource id and owner around the block sizes, with every expiry shape.
    #[test]
    fn canonical_decides_as_before_on_every_length() {
        for resource_len in 0..=50 {
            for owner_len in 0..=34 {
                let resource = vec![b'r'; resource_len];
                let owner = vec![b'o'; owner_len];
                for expiry in EXPIRIES {
                    let body = canonical_body(&resource, &owner, expiry);
                    check_canonical(&body);
                    assert_eq!(
                        canonical(Operation::TryLock, &body).is_some(),
                        expiry.is_some_and(|e| ["1", "10", "2147483647"].contains(&e)),
                    );
                }
            }
        }
    }

    // ... and on every byte of the body replaced by a stop or a plain byte, every truncation
    // and one byte more: near misses in the literals, the strings and the expiry.
    #[test]
    fn canonical_decides_as_before_on_near_misses() {
        let id = b"00000000-0000-0000-0000-0000000012ab";
        for resource_len in [0, 1, 15, 16, 17, 31, 32, 33, 36] {
            for owner_len in [0, 1, 7, 15, 16, 17] {
                for expiry in [None, Some("10"), Some("2147483647")] {
                    let resource = &id.repeat(2)[..resource_len];
                    let body = canonical_body(resource, &b"owner-7".repeat(3)[..owner_len], expiry);
                    for at in 0..body.len() {
                        for probe in PROBES {
                            let mut near = body.clone();
                            near[at] = probe;
                            check_canonical(&near);
                        }
                        check_canonical(&body[..at]);
                    }
                    for extra in PROBES {
                        let mut longer = body.clone();
                        longer.push(extra);
                        check_canonical(&longer);
                    }
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

        // Near-canonical bodies of any bytes: the canonical matcher decides as before.
        #[test]
        fn canonical_decides_as_before_on_any_bytes(
            resource in proptest::collection::vec(
                prop_oneof![8 => b'!'..=b'~', 1 => any::<u8>()], 0..70),
            owner in proptest::collection::vec(
                prop_oneof![8 => b'!'..=b'~', 1 => any::<u8>()], 0..40),
            expiry in proptest::option::of("[0-9]{0,11}"),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut body = canonical_body(&resource, &owner, expiry.as_deref());
            for (at, byte) in edits {
                let at = at.index(body.len());
                body[at] = byte;
            }
            if truncate {
                body.truncate(cut.index(body.len() + 1));
            }
            check_canonical(&body);
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
