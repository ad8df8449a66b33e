//! protojson's reading of an `int32` field, transcribed from Go's
//! `google.golang.org/protobuf` (`encoding/protojson` `unmarshalInt` and
//! `internal/encoding/json` `parseNumber`, `parseNumberParts`, `normalizeToIntString`), so
//! that `expiryInSeconds` accepts exactly what daprd accepts.
//!
//! The value comes from the number's text, never from a float: `10`, `10.0`, `1e1` and
//! `100e-1` are all 10, while `10.5`, `1e-1` and `2147483647.0000000001` are not integers and
//! are rejected even where a float would round them to one.
//!
//! Go's quirks are kept on purpose, because a client that works against daprd must work here:
//! - A number given as a JSON string may be followed by anything Go's tokenizer counts as a
//!   delimiter: `"10 20"` and `"10,"` read as 10. Leading or trailing Unicode white space
//!   (`" 10"`, `"10\u00a0"`) is rejected.
//! - In a string, an exponent marker without digits before a delimiter is dropped: `"1e,"`
//!   is 1.
//! - An exponent is applied only while the integer part plus the exponent stays within 20
//!   digits, so `0.0000000000000000000001e22` is rejected although it equals 1.
//!
//! Nothing here panics on any input.

/// The most decimal digits Go builds before parsing (the digits of `u64::MAX`).
const MAX_INT_DIGITS: i64 = 20;

/// Go's `isNotDelim`: the bytes that may not directly follow a literal.
fn is_not_delim(byte: u8) -> bool {
    matches!(byte, b'-' | b'+' | b'.' | b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9')
}

/// Counts the ASCII digits at the start of `bytes`.
fn digit_run(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Go's `parseNumber`: the length of the number at the start of `input`, if one is there and
/// is followed by a delimiter or the end. Lenient in one corner: an exponent marker with no
/// digits is consumed when a delimiter follows it.
pub(crate) fn number_len(input: &[u8]) -> Option<usize> {
    let mut n = 0;
    if input.first() == Some(&b'-') {
        n += 1;
    }
    match input.get(n) {
        Some(b'0') => n += 1,
        Some(b'1'..=b'9') => n += 1 + digit_run(input.get(n + 1..)?),
        _ => return None,
    }
    if let [b'.', b'0'..=b'9', ..] = input.get(n..)? {
        n += 2;
        n += digit_run(input.get(n..)?);
    }
    if let [b'e' | b'E', _, ..] = input.get(n..)? {
        n += 1;
        if let Some(b'+' | b'-') = input.get(n) {
            n += 1;
            if n == input.len() {
                return None;
            }
        }
        n += digit_run(input.get(n..)?);
    }
    match input.get(n) {
        Some(&next) if is_not_delim(next) => None,
        _ => Some(n),
    }
}

/// Go's `numberParts`: the pieces of a number literal, as sub-slices of it.
struct NumberParts<'a> {
    negative: bool,
    /// The integer digits; empty for a leading `0`.
    int_digits: &'a [u8],
    /// The fraction digits without trailing zeros.
    frac_digits: &'a [u8],
    /// The exponent with its sign, if any; may be empty.
    exponent: &'a [u8],
}

/// Go's `parseNumberParts`.
fn number_parts(input: &[u8]) -> Option<NumberParts<'_>> {
    let mut rest = input;
    let negative = rest.first() == Some(&b'-');
    if negative {
        rest = rest.get(1..)?;
    }
    let int_digits: &[u8] = match rest.first()? {
        b'0' => {
            rest = rest.get(1..)?;
            &[]
        }
        b'1'..=b'9' => {
            let len = 1 + digit_run(rest.get(1..)?);
            let (digits, tail) = rest.split_at_checked(len)?;
            rest = tail;
            digits
        }
        _ => return None,
    };
    let mut frac_digits: &[u8] = &[];
    if let [b'.', b'0'..=b'9', ..] = rest {
        let len = 1 + digit_run(rest.get(2..)?);
        frac_digits = rest.get(1..1 + len)?;
        rest = rest.get(1 + len..)?;
    }
    let mut exponent: &[u8] = &[];
    if let [b'e' | b'E', _, ..] = rest {
        rest = rest.get(1..)?;
        let mut len = 0;
        if let Some(b'+' | b'-') = rest.first() {
            len = 1;
            if rest.len() == 1 {
                return None;
            }
        }
        len += digit_run(rest.get(len..)?);
        exponent = rest.get(..len)?;
    }
    let kept = frac_digits.len() - frac_digits.iter().rev().take_while(|&&b| b == b'0').count();
    Some(NumberParts {
        negative,
        int_digits,
        frac_digits: frac_digits.get(..kept)?,
        exponent,
    })
}

/// Go's `strconv.ParseInt(exponent, 10, 32)`: an optional sign, then at least one digit.
fn parse_exponent(exponent: &[u8]) -> Option<i64> {
    let (negative, digits) = match exponent {
        [b'-', digits @ ..] => (true, digits),
        [b'+', digits @ ..] => (false, digits),
        digits => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(i64::from(digit - b'0'))?;
        if value > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let value = if negative { -value } else { value };
    i32::try_from(value).ok().map(i64::from)
}

/// The value of a number literal as Go's `Token.Int(32)` reads it: `None` when the literal is
/// not an integer, or lies outside the `int32` range.
pub(crate) fn int32_from_literal(literal: &[u8]) -> Option<i32> {
    let parts = number_parts(literal)?;
    let int_len = parts.int_digits.len() as i64;
    let frac_len = parts.frac_digits.len() as i64;
    if int_len == 0 && frac_len == 0 {
        return Some(0);
    }
    let exponent = if parts.exponent.is_empty() {
        0
    } else {
        parse_exponent(parts.exponent)?
    };

    // The digits Go would build, as a chain: integer part, shifted fraction, padding zeros.
    let (digits, padding): (&[&[u8]], i64) = if exponent >= 0 {
        if frac_len > exponent || int_len + exponent > MAX_INT_DIGITS {
            return None;
        }
        (&[parts.int_digits, parts.frac_digits], exponent - frac_len)
    } else {
        if frac_len > 0 {
            return None;
        }
        let kept = usize::try_from(int_len + exponent).ok()?;
        let (kept_digits, dropped) = parts.int_digits.split_at_checked(kept)?;
        if dropped.iter().any(|&b| b != b'0') {
            return None;
        }
        // `kept == 0` cannot reach here: integer digits never start with `0`, so a dropped
        // run covering all of them always holds a non-zero digit.
        return accumulate(parts.negative, &[kept_digits], 0);
    };
    accumulate(parts.negative, digits, padding)
}

/// `strconv.ParseInt(sign + digits + "0" * padding, 10, 32)`.
fn accumulate(negative: bool, pieces: &[&[u8]], padding: i64) -> Option<i32> {
    // One past i32::MAX, so that i32::MIN fits while negative.
    const LIMIT: u64 = 1 << 31;
    let mut magnitude: u64 = 0;
    let zeros = std::iter::repeat_n(&b'0', usize::try_from(padding).ok()?);
    for &digit in pieces.iter().flat_map(|piece| piece.iter()).chain(zeros) {
        magnitude = magnitude * 10 + u64::from(digit - b'0');
        if magnitude > LIMIT {
            return None;
        }
    }
    if negative {
        i32::try_from(-(magnitude as i64)).ok()
    } else {
        i32::try_from(magnitude).ok()
    }
}

/// The value of an `int32` given as a JSON string, as protojson's `unmarshalInt` reads it:
/// no surrounding white space, then a number per [`number_len`] at the start.
pub(crate) fn int32_from_string(text: &str) -> Option<i32> {
    // Go's strings.TrimSpace and Rust's trim both use Unicode's White_Space property.
    if text.trim().len() != text.len() {
        return None;
    }
    let bytes = text.as_bytes();
    let len = number_len(bytes)?;
    int32_from_literal(bytes.get(..len)?)
}

/// Whether `literal` is exactly one number as RFC 8259 (and Go's decoder outside strings)
/// spells it.
pub(crate) fn is_strict_number(literal: &[u8]) -> bool {
    let mut n = usize::from(literal.first() == Some(&b'-'));
    match literal.get(n) {
        Some(b'0') => n += 1,
        Some(b'1'..=b'9') => n += 1 + literal.get(n + 1..).map_or(0, digit_run),
        _ => return false,
    }
    if literal.get(n) == Some(&b'.') {
        let digits = literal.get(n + 1..).map_or(0, digit_run);
        if digits == 0 {
            return false;
        }
        n += 1 + digits;
    }
    if let Some(b'e' | b'E') = literal.get(n) {
        n += 1;
        if let Some(b'+' | b'-') = literal.get(n) {
            n += 1;
        }
        let digits = literal.get(n..).map_or(0, digit_run);
        if digits == 0 {
            return false;
        }
        n += digits;
    }
    n == literal.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_like_go_token_int32() {
        // Protects the accepted set of number literals for expiryInSeconds: each row is what
        // Go's protojson does with the same JSON number.
        let cases: &[(&str, Option<i32>)] = &[
            ("10", Some(10)),
            ("0", Some(0)),
            ("-0", Some(0)),
            ("-0.0", Some(0)),
            ("0e5", Some(0)),
            ("10.0", Some(10)),
            ("10.000", Some(10)),
            ("1e1", Some(10)),
            ("1E1", Some(10)),
            ("1e+1", Some(10)),
            ("100e-1", Some(10)),
            ("1.5e1", Some(15)),
            ("0.5e1", Some(5)),
            ("0.05e3", Some(50)),
            ("-5", Some(-5)),
            ("-1.5e1", Some(-15)),
            ("2147483647", Some(i32::MAX)),
            ("2147483647.0", Some(i32::MAX)),
            ("21474836470e-1", Some(i32::MAX)),
            ("-2147483648", Some(i32::MIN)),
            ("1e9", Some(1_000_000_000)),
            ("1e09", Some(1_000_000_000)),
            ("2147483648", None),
            ("-2147483649", None),
            ("1e10", None),
            ("10.5", None),
            ("1e-1", None),
            ("15e-1", None),
            ("0.1", None),
            ("1e-400", None),
            ("1e400", None),
            ("99999999999999999999999", None),
            ("2147483647.0000000001", None),
            // Go builds at most 20 digits, even when the value would be small.
            ("0.0000000000000000000001e22", None),
            ("1e2147483648", None),
            ("", None),
            ("-", None),
            ("abc", None),
        ];
        for (literal, expected) in cases {
            assert_eq!(
                int32_from_literal(literal.as_bytes()),
                *expected,
                "literal {literal:?}"
            );
        }
    }

    #[test]
    fn strings_read_like_go_unmarshal_int() {
        // Protects the accepted set of string-encoded expiryInSeconds values, Go's quirks
        // included: each row is what protojson does with the same JSON string.
        let cases: &[(&str, Option<i32>)] = &[
            ("10", Some(10)),
            ("1e1", Some(10)),
            ("10.0", Some(10)),
            ("-3", Some(-3)),
            ("10 20", Some(10)),
            ("10,", Some(10)),
            ("10}", Some(10)),
            ("1e,", Some(1)),
            ("15e]", Some(15)),
            ("10\u{a0}x", Some(10)),
            (" 10", None),
            ("10 ", None),
            ("\t10", None),
            ("10\u{a0}", None),
            ("\u{3000}10", None),
            ("10.5", None),
            ("1e", None),
            ("1e+", None),
            ("1E-,", None),
            // A zero mantissa does not save a sign that ends the token (fuzzing found the
            // reference decoder taking it as 0).
            ("0e-@", None),
            ("0E+,", None),
            ("0e@", Some(0)),
            ("1.5e}", None),
            ("10x", None),
            ("0x10", None),
            ("01", None),
            ("", None),
            ("abc", None),
            ("true", None),
            ("null", None),
            ("\"10\"", None),
            ("-", None),
            ("+1", None),
            (".5", None),
            ("2147483648", None),
        ];
        for (text, expected) in cases {
            assert_eq!(int32_from_string(text), *expected, "string {text:?}");
        }
    }

    #[test]
    fn number_len_follows_go_parse_number() {
        // Protects the token boundary Go's tokenizer finds, including its lenient exponent.
        let cases: &[(&str, Option<usize>)] = &[
            ("10", Some(2)),
            ("10 20", Some(2)),
            ("-0.5e+3,", Some(7)),
            ("1e,", Some(2)),
            ("1e+,", Some(3)),
            ("1.", None),
            ("1.x", None),
            ("1.5.", None),
            ("00", None),
            ("-", None),
            ("1e+", None),
            ("1_", None),
        ];
        for (input, expected) in cases {
            assert_eq!(number_len(input.as_bytes()), *expected, "input {input:?}");
        }
    }

    #[test]
    fn strict_numbers_follow_rfc_8259() {
        // Protects the grammar used to decide which literals may be rewritten before parsing.
        for good in [
            "0",
            "-0",
            "10",
            "1.5",
            "1e5",
            "1E+5",
            "-1.25e-10",
            "123456789012345678901",
        ] {
            assert!(is_strict_number(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1-", "--1", "1.5.5", "1ee5",
        ] {
            assert!(!is_strict_number(bad.as_bytes()), "{bad}");
        }
    }
}
