//! `lock_body` and `unlock_body`: the body decoder (simd-json, its fast path, and the two as
//! the server chains them) against a reference decoder built on serde_json, with the
//! contract's protojson rules written out plainly (`docs/dapr-lock-contract.md`, "Request
//! bodies"). Both must accept the same bodies with the same fields, or both reject.
//!
//! The reference, rule by rule:
//! - 0 bytes: not parsed, every field empty. Anything else must be exactly one JSON object
//!   (RFC 8259, as serde_json reads it), with valid UTF-8, and nested at most 10 000 deep
//!   (protojson's recursion limit, the request object included).
//! - Every `\u` escape in the body must be a whole character: protojson rejects a surrogate
//!   escape that is not half of a pair even inside a skipped value; serde_json only checks
//!   that while it decodes a string, and it does not decode skipped ones.
//! - Members are read in order, with their raw values. A key names a field by its JSON name
//!   or its proto name, case-sensitively; `expiryInSeconds` exists only in a try-lock (and in
//!   dlockd's renew and acquire), `waitTimeoutMs` only in an acquire ([`reference_for`] reads
//!   the bodies of every lock route). Other keys are skipped whatever their (well-formed)
//!   value.
//! - A field named twice, under either name, even with `null`, is malformed.
//! - `null` leaves a field empty. A string field takes only a string.
//! - `expiryInSeconds` (and `waitTimeoutMs`) takes a number or a string holding one, read as
//!   Go's protojson reads
//!   an `int32`: from the text, not a float; an integer in range after the exponent is
//!   applied; at most 20 digits built; a string may not have white space around it, and its
//!   number may be followed by anything Go's tokenizer counts as a delimiter.
//!
//! Where the contract is silent daprd's behaviour decides, except one place where it speaks:
//! Go's tokenizer also takes `1e` and `1e+` (an exponent without digits, before a delimiter)
//! as numbers in the JSON text itself, so daprd reads `{"expiryInSeconds":1e}` as 1. The
//! contract says a body that is not JSON is malformed, and `1e` is not a JSON number, so the
//! reference (and the decoder) reject it. Inside a string (`"1e"`), Go's reading is kept.

use std::cell::RefCell;

use dlockd::api::fuzzing::{decode_fast, BodyDecoder, BodyKind, LockBody};
use dlockd::api::Operation;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// protojson's default recursion limit; the request object is the first level.
pub const MAX_DEPTH: usize = 10_000;

/// Runs the library's checks, then compares every decoder with the reference.
pub fn check(kind: BodyKind, data: &[u8]) {
    match kind {
        BodyKind::TryLock => dlockd::fuzzing::lock_body(data),
        BodyKind::Unlock => dlockd::fuzzing::unlock_body(data),
    }
    let expected = reference(kind, data);
    // One decoder for the whole run, as a worker keeps one: its reused buffers are part of
    // what is checked.
    thread_local! {
        static DECODER: RefCell<BodyDecoder> = RefCell::new(BodyDecoder::new());
    }
    DECODER.with_borrow_mut(|decoder| {
        compare(
            "full decoder",
            data,
            &expected,
            decoder.decode_full(kind, data),
        );
        compare(
            "server decoder",
            data,
            &expected,
            decoder.decode(kind, data),
        );
    });
    if let Some(fast) = decode_fast(kind, data) {
        compare("fast path", data, &expected, Some(fast));
    }
}

/// Panics unless a decoder's answer is the reference's: the same fields, or both malformed.
pub fn compare(
    decoder: &str,
    body: &[u8],
    expected: &Result<LockBody, String>,
    got: Option<LockBody>,
) {
    match (expected, got) {
        (Ok(expected), Some(got)) => assert_eq!(
            &got,
            expected,
            "{decoder} decoded other fields than the reference from {:?}",
            String::from_utf8_lossy(body)
        ),
        (Err(_), None) => {}
        (Ok(expected), None) => panic!(
            "{decoder} refused {:?}, which the reference decodes to {expected:?}",
            String::from_utf8_lossy(body)
        ),
        (Err(why), Some(got)) => panic!(
            "{decoder} decoded {got:?} from {:?}, which the reference refuses: {why}",
            String::from_utf8_lossy(body)
        ),
    }
}

/// The reference decoder: the fields of a body, or why it is malformed.
pub fn reference(kind: BodyKind, body: &[u8]) -> Result<LockBody, String> {
    let op = match kind {
        BodyKind::TryLock => Operation::TryLock,
        BodyKind::Unlock => Operation::Unlock,
    };
    reference_for(op, body).map(|fields| LockBody {
        resource: fields.resource,
        owner: fields.owner,
        expiry_s: fields.expiry_s,
    })
}

/// The fields the reference decoder reads from the body of any lock route; absent and `null`
/// fields are empty or 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub resource: Vec<u8>,
    pub owner: Vec<u8>,
    /// 0 where the route's message has no `expiryInSeconds` (unlock, holder).
    pub expiry_s: i32,
    /// 0 but for an acquire.
    pub wait_ms: i32,
}

/// The reference decoder for the body of `op`'s route: daprd's two messages, and dlockd's own
/// (renew: a try-lock's fields; acquire: those and `waitTimeoutMs`; holder: an unlock's).
pub fn reference_for(op: Operation, body: &[u8]) -> Result<Fields, String> {
    if body.is_empty() {
        return Ok(Fields::default());
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let depth = max_depth(text);
    if depth > MAX_DEPTH {
        return Err(format!("nested {depth} deep"));
    }
    check_unicode_escapes(text)?;
    let members = serde_json::from_str::<Members<'_>>(text).map_err(|e| e.to_string())?;

    let has_expiry = matches!(
        op,
        Operation::TryLock | Operation::Renew | Operation::Acquire
    );
    let mut fields = Fields::default();
    let mut seen = Vec::new();
    for (key, value) in &members.0 {
        let field = match key.as_str() {
            "resourceId" | "resource_id" => "resourceId",
            "lockOwner" | "lock_owner" => "lockOwner",
            "storeName" | "store_name" => "storeName",
            "expiryInSeconds" | "expiry_in_seconds" if has_expiry => "expiryInSeconds",
            "waitTimeoutMs" | "wait_timeout_ms" if op == Operation::Acquire => "waitTimeoutMs",
            _ => continue,
        };
        if seen.contains(&field) {
            return Err(format!("duplicate field {field}"));
        }
        seen.push(field);
        let raw = value.get();
        if raw == "null" {
            continue;
        }
        let int32 = || int32_field(raw).ok_or_else(|| format!("{raw} is no int32"));
        match field {
            "resourceId" => fields.resource = string_field(field, raw)?.into_bytes(),
            "lockOwner" => fields.owner = string_field(field, raw)?.into_bytes(),
            "storeName" => {
                string_field(field, raw)?;
            }
            "expiryInSeconds" => fields.expiry_s = int32()?,
            _ => fields.wait_ms = int32()?,
        }
    }
    Ok(fields)
}

/// The members of the top-level object in document order, duplicates kept, with their
/// values as raw JSON text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

fn string_field(field: &str, raw: &str) -> Result<String, String> {
    if !raw.starts_with('"') {
        return Err(format!("{field} is not a string: {raw}"));
    }
    serde_json::from_str::<String>(raw).map_err(|e| e.to_string())
}

/// An `int32` field's value from its raw JSON text (not `null`).
fn int32_field(raw: &str) -> Option<i32> {
    if raw.starts_with('"') {
        let text = serde_json::from_str::<String>(raw).ok()?;
        // strings.TrimSpace: Unicode white space, as Rust's `trim`.
        if text.trim() != text {
            return None;
        }
        // Go reads the first token of the string; what follows it is never looked at.
        let len = go_number_len(text.as_bytes())?;
        int32_of_number(&text[..len])
    } else if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        int32_of_number(raw)
    } else {
        None
    }
}

/// Go's tokenizer on a number at the start of `text`: its length, if it is one and the byte
/// after it is a delimiter (not one of `-+._`, a letter or a digit). Laxer than JSON in one
/// corner: `e`, `E`, `e+` or `e-` without digits still ends the number.
fn go_number_len(text: &[u8]) -> Option<usize> {
    let digits_from = |at: usize| {
        text.get(at..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };
    let mut at = usize::from(text.first() == Some(&b'-'));
    match text.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at += digits_from(at),
        _ => return None,
    }
    if text.get(at) == Some(&b'.') && text.get(at + 1).is_some_and(u8::is_ascii_digit) {
        at += 1 + digits_from(at + 1);
    }
    if matches!(text.get(at), Some(b'e' | b'E')) && text.len() >= at + 2 {
        at += 1;
        if matches!(text.get(at), Some(b'+' | b'-')) {
            at += 1;
            if at == text.len() {
                return None;
            }
        }
        at += digits_from(at);
    }
    match text.get(at) {
        Some(&b)
            if b == b'-' || b == b'+' || b == b'.' || b == b'_' || b.is_ascii_alphanumeric() =>
        {
            None
        }
        _ => Some(at),
    }
}

/// The `int32` a number token stands for, as protojson decides it: the digits are moved by
/// the exponent into an integer string (at most 20 digits when the exponent is not
/// negative; nothing but zeros may fall off the end), which must then fit an `int32`.
fn int32_of_number(token: &str) -> Option<i32> {
    let (negative, unsigned) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    let mantissa_end = unsigned.find(['e', 'E']).unwrap_or(unsigned.len());
    let (mantissa, exponent) = unsigned.split_at(mantissa_end);
    // parseNumberParts refuses a sign that ends the token (`0e-`, `1E+`), before it looks at
    // the digits: even a zero mantissa is no number then.
    if exponent.len() == 2 && exponent.ends_with(['+', '-']) {
        return None;
    }
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // A leading `0` is not kept as a digit; zeros that end the fraction are dropped.
    let integer = if integer == "0" { "" } else { integer };
    let fraction = fraction.trim_end_matches('0');
    if integer.is_empty() && fraction.is_empty() {
        return Some(0);
    }
    let exponent: i64 = match exponent.get(1..) {
        None | Some("") => 0,
        Some(digits) => {
            let value: i32 = digits.parse().ok()?;
            i64::from(value)
        }
    };
    let digits = if exponent >= 0 {
        let fraction_len = fraction.len() as i64;
        if fraction_len > exponent || integer.len() as i64 + exponent > 20 {
            return None;
        }
        let zeros = "0".repeat(usize::try_from(exponent - fraction_len).ok()?);
        format!("{integer}{fraction}{zeros}")
    } else {
        if !fraction.is_empty() {
            return None;
        }
        let kept = usize::try_from(integer.len() as i64 + exponent).ok()?;
        let (kept, dropped) = integer.split_at(kept);
        if dropped.bytes().any(|b| b != b'0') {
            return None;
        }
        kept.to_owned()
    };
    let sign = if negative { "-" } else { "" };
    format!("{sign}{digits}").parse::<i32>().ok()
}

/// The deepest nesting of objects and arrays, counting the outermost as 1.
fn max_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Every `\u` escape in a string is a character: a high surrogate is followed by `\u` and a
/// low one, and a low surrogate never comes alone.
fn check_unicode_escapes(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    let hex_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let (mut at, mut in_string) = (0, false);
    while let Some(&b) = bytes.get(at) {
        if !in_string {
            in_string = b == b'"';
            at += 1;
            continue;
        }
        match b {
            b'"' => in_string = false,
            b'\\' if bytes.get(at + 1) == Some(&b'u') => {
                // A malformed escape is serde_json's to refuse.
                let Some(unit) = hex_at(at + 2) else {
                    at += 2;
                    continue;
                };
                if (0xdc00..0xe000).contains(&unit) {
                    return Err(format!("lone low surrogate \\u{unit:04x}"));
                }
                if (0xd800..0xdc00).contains(&unit) {
                    let low = (bytes.get(at + 6..at + 8) == Some(b"\\u"))
                        .then(|| hex_at(at + 8))
                        .flatten();
                    if !low.is_some_and(|low| (0xdc00..0xe000).contains(&low)) {
                        return Err(format!("lone high surrogate \\u{unit:04x}"));
                    }
                    at += 12;
                    continue;
                }
                at += 6;
                continue;
            }
            b'\\' => {
                at += 2;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    Ok(())
}
