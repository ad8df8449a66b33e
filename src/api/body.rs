//! The lock request bodies, decoded with protojson's rules (what daprd's HTTP handlers apply:
//! `protojson.UnmarshalOptions{DiscardUnknown: true}`).
//!
//! simd-json checks the JSON and builds a tape in reused buffers; [`BodyDecoder::decode`]
//! then walks the top-level object itself, because protojson's rules are not serde's:
//! - Each field has two names, the JSON name and the proto name (`resourceId` and
//!   `resource_id`); using both, or either twice, is malformed, even when a value is `null`.
//! - `null` leaves a field empty. Unknown names (wrong case included) are skipped whatever
//!   their value, so long as the JSON is well formed.
//! - `resourceId`, `lockOwner` and `storeName` take only strings (`storeName` is read, then
//!   the URL's store wins). `expiryInSeconds` takes a number or a string, read as
//!   [`number`] describes; it exists only for try-lock, so an unlock skips it.
//! - A body of 0 bytes is not parsed at all: every field is empty. Anything else must be one
//!   JSON object: whitespace only, `[]`, `null`, truncated JSON or trailing bytes are malformed.
//! - Nesting is limited to protojson's 10 000 levels.
//!
//! Invariants:
//! - No input panics; every rejection is a [`BodyError`].
//! - After the first requests have sized the buffers, decoding allocates nothing.
//! - The decoded strings are copied out of the parse buffer before the tape is recycled,
//!   so the borrow handed back never outlives the data it points to.
//!
//! simd-json cannot represent a few valid numbers (integers beyond 64 bits, floats beyond
//! `f64`), which Go accepts in a skipped field. When it reports a bad number, every number
//! literal of three or more bytes is rewritten in the parse copy as `0.0` padded with spaces
//! and the body is parsed again; a rewritten literal always reads as a float, and the value of
//! every float is taken from the original text, so the answer is the one daprd gives.

use std::fmt;
use std::mem;
use std::ops::Range;

use simd_json::{fill_tape_padded, Buffers, ErrorType, Node, StaticNode, Tape, INPUT_PADDING};

use super::fast_body;
use super::number;
use super::op::Operation;

/// protojson's default recursion limit: the request message takes one level, a skipped
/// value may nest the remaining 9 999.
const MAX_DEPTH: usize = 10_000;
/// The body size the buffers are first sized for; they grow to the largest body seen, which
/// the HTTP layer bounds.
const INITIAL_BODY_BYTES: usize = 512;
/// What a rewritten number literal becomes (then padded with spaces to its old length).
const NUMBER_STAND_IN: &[u8] = b"0.0";

/// The fields of the lock request messages that daprd reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    ResourceId,
    LockOwner,
    StoreName,
    ExpiryInSeconds,
    WaitTimeoutMs,
}

impl Field {
    /// The field a JSON key names, for this operation's message (`UnlockRequest` has no
    /// expiry). Both the JSON name and the proto name match, case-sensitively.
    fn from_key(key: &str, op: Operation) -> Option<Field> {
        match key {
            "resourceId" | "resource_id" => Some(Field::ResourceId),
            "lockOwner" | "lock_owner" => Some(Field::LockOwner),
            "storeName" | "store_name" => Some(Field::StoreName),
            "expiryInSeconds" | "expiry_in_seconds"
                if matches!(
                    op,
                    Operation::TryLock | Operation::Renew | Operation::Acquire
                ) =>
            {
                Some(Field::ExpiryInSeconds)
            }
            "waitTimeoutMs" | "wait_timeout_ms" if op == Operation::Acquire => {
                Some(Field::WaitTimeoutMs)
            }
            _ => None,
        }
    }

    /// The field's JSON name.
    fn json_name(self) -> &'static str {
        match self {
            Field::ResourceId => "resourceId",
            Field::LockOwner => "lockOwner",
            Field::StoreName => "storeName",
            Field::ExpiryInSeconds => "expiryInSeconds",
            Field::WaitTimeoutMs => "waitTimeoutMs",
        }
    }

    /// The field's bit in the set of fields already seen.
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Why a body is malformed. The text is the free-form detail after daprd's
/// `failed deserializing HTTP body: `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Not JSON; the reason names what the parser met.
    Syntax(&'static str),
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A field given twice, under either of its names.
    DuplicateField(Field),
    /// A string field given something other than a string or `null`.
    NotAString(Field),
    /// An `int32` field (`expiryInSeconds`, `waitTimeoutMs`) given something that is not one.
    NotAnInt32(Field),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Syntax(reason) => write!(f, "syntax error: {reason}"),
            BodyError::NotAnObject => f.write_str("the body is not a JSON object"),
            BodyError::DuplicateField(field) => write!(f, "duplicate field {}", field.json_name()),
            BodyError::NotAString(field) => {
                write!(f, "invalid value for string field {}", field.json_name())
            }
            BodyError::NotAnInt32(field) => {
                write!(f, "invalid value for int32 field {}", field.json_name())
            }
        }
    }
}

/// The decoded fields of one lock request; absent and `null` fields are empty or 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LockFields<'a> {
    pub resource: &'a [u8],
    pub owner: &'a [u8],
    /// Always 0 for an unlock.
    pub expiry_s: i32,
    /// An acquire's `waitTimeoutMs`; 0 for the other routes.
    pub wait_ms: i32,
    /// The resource id is known to hold no `|` (so no `||`): the canonical fast path takes
    /// only such ids. `false` says nothing.
    pub no_pipe: bool,
}

/// One worker's body decoder: its buffers are reused from request to request.
pub(crate) struct BodyDecoder {
    /// The copy of the body that simd-json parses and unescapes in place, plus its padding.
    scratch: Vec<u8>,
    buffers: Buffers,
    /// The tape's allocation between requests; always empty here.
    tape: Tape<'static>,
    /// The decoded `resourceId` followed by the decoded `lockOwner`.
    fields: Vec<u8>,
}

impl Default for BodyDecoder {
    fn default() -> Self {
        BodyDecoder {
            scratch: Vec::with_capacity(INITIAL_BODY_BYTES + INPUT_PADDING),
            buffers: Buffers::with_max_depth(INITIAL_BODY_BYTES, MAX_DEPTH),
            tape: Tape(Vec::with_capacity(INITIAL_BODY_BYTES / 4)),
            fields: Vec::with_capacity(INITIAL_BODY_BYTES),
        }
    }
}

/// What the walk of a tape found; the strings are already in `BodyDecoder::fields`.
struct Walked {
    resource_len: usize,
    expiry_s: i32,
    wait_ms: i32,
}

/// The end of one parse attempt.
enum Attempt {
    Done(Result<Walked, BodyError>),
    /// simd-json met a number it cannot hold; rewriting the literals may help.
    BadNumber,
}

impl BodyDecoder {
    /// Decodes the body of a try-lock or unlock request: the plain shape every client sends
    /// on the fast path, its fields borrowed from the body; anything else with the full
    /// decoder, which unescapes into this decoder's buffer.
    pub(crate) fn decode<'a>(
        &'a mut self,
        op: Operation,
        body: &'a [u8],
    ) -> Result<LockFields<'a>, BodyError> {
        let (resource, owner, expiry_s, no_pipe) = match fast_body::canonical(op, body) {
            Some((resource, owner, expiry_s)) => (resource, owner, expiry_s, true),
            None => match fast_body::any_order(op, body) {
                Some((resource, owner, expiry_s)) => (resource, owner, expiry_s, false),
                None => return self.decode_full(op, body),
            },
        };
        Ok(LockFields {
            resource,
            owner,
            expiry_s,
            wait_ms: 0,
            no_pipe,
        })
    }

    /// Decodes with simd-json and the full protojson rules.
    pub(crate) fn decode_full(
        &mut self,
        op: Operation,
        body: &[u8],
    ) -> Result<LockFields<'_>, BodyError> {
        self.fields.clear();
        if body.is_empty() {
            return Ok(LockFields::default());
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        self.scratch.resize(body.len() + INPUT_PADDING, b' ');

        let mut tape = mem::replace(&mut self.tape, Tape(Vec::new()));
        let mut attempt = self.attempt(&mut tape, op, body);
        if let (Attempt::BadNumber, Some(copy)) = (&attempt, self.scratch.get_mut(..body.len())) {
            // The failed parse may have unescaped strings in place: start again from the body.
            copy.copy_from_slice(body);
            if stand_in_numbers(copy) {
                attempt = self.attempt(&mut tape, op, body);
            }
        }
        self.tape = tape;

        let walked = match attempt {
            Attempt::Done(result) => result?,
            Attempt::BadNumber => {
                return Err(BodyError::Syntax(syntax_reason(&ErrorType::InvalidNumber)))
            }
        };
        let (resource, owner) = self
            .fields
            .split_at_checked(walked.resource_len)
            .unwrap_or_default();
        Ok(LockFields {
            resource,
            owner,
            expiry_s: walked.expiry_s,
            wait_ms: walked.wait_ms,
            no_pipe: false,
        })
    }

    /// Parses the scratch copy once and walks the result. `tape` holds the recycled
    /// allocation on entry and on return.
    fn attempt(&mut self, tape: &mut Tape<'static>, op: Operation, body: &[u8]) -> Attempt {
        let mut parsed = mem::replace(tape, Tape(Vec::new())).reset();
        let outcome = match fill_tape_padded(
            &mut self.scratch,
            body.len(),
            &mut self.buffers,
            &mut parsed,
        ) {
            Ok(()) => Attempt::Done(walk(&parsed.0, op, body, &mut self.fields)),
            Err(error) if *error.error() == ErrorType::InvalidNumber => Attempt::BadNumber,
            Err(error) => Attempt::Done(Err(BodyError::Syntax(syntax_reason(error.error())))),
        };
        *tape = parsed.reset();
        outcome
    }
}

/// Passes `found` each top-level key of `body` that names no field of `op`'s message (a key
/// protojson skips), unescaped, in the order written; a repeated key is passed each time.
///
/// For diagnosis only, on a request already refused: it parses the body again into buffers of
/// its own, so it allocates, and the lock path never calls it. A body that is empty or not a
/// well-formed JSON object has no keys to pass.
pub(crate) fn unknown_keys(op: Operation, body: &[u8], found: &mut dyn FnMut(&str)) {
    if body.is_empty() {
        return;
    }
    let mut scratch = Vec::with_capacity(body.len() + INPUT_PADDING);
    scratch.extend_from_slice(body);
    scratch.resize(body.len() + INPUT_PADDING, b' ');
    let mut buffers = Buffers::with_max_depth(body.len(), MAX_DEPTH);
    if visit_unknown_keys(&mut scratch, body.len(), &mut buffers, op, found) {
        return;
    }
    // A number simd-json cannot hold: parse again with the literals rewritten, as
    // `BodyDecoder::decode_full` does (keys are strings, which the rewrite never touches).
    if let Some(copy) = scratch.get_mut(..body.len()) {
        copy.copy_from_slice(body);
        if stand_in_numbers(copy) {
            visit_unknown_keys(&mut scratch, body.len(), &mut buffers, op, found);
        }
    }
}

/// One parse for [`unknown_keys`]; false when simd-json met a number it cannot hold (and
/// nothing was passed to `found`).
fn visit_unknown_keys(
    scratch: &mut [u8],
    len: usize,
    buffers: &mut Buffers,
    op: Operation,
    found: &mut dyn FnMut(&str),
) -> bool {
    let mut tape = Tape(Vec::new());
    if let Err(error) = fill_tape_padded(scratch, len, buffers, &mut tape) {
        return *error.error() != ErrorType::InvalidNumber;
    }
    let nodes = &tape.0;
    let Some(Node::Object { len: entries, .. }) = nodes.first() else {
        return true;
    };
    let mut at = 1;
    for _ in 0..*entries {
        let (Some(Node::String(key)), Some(value)) = (nodes.get(at), nodes.get(at + 1)) else {
            break;
        };
        // The value is skipped whole, whatever it holds: only the keys of the request object
        // are passed, never a value, nor the keys of a nested object.
        at = (at + 1).saturating_add(span(value));
        if Field::from_key(key, op).is_none() {
            found(key);
        }
    }
    true
}

/// A short reason for a simd-json rejection.
fn syntax_reason(error: &ErrorType) -> &'static str {
    match error {
        ErrorType::Eof => "unexpected end of input",
        ErrorType::InvalidUtf8 => "invalid UTF-8",
        ErrorType::InvalidNumber | ErrorType::InvalidExponent => "invalid number",
        ErrorType::InvalidEscape
        | ErrorType::InvalidUnicodeEscape
        | ErrorType::InvalidUnicodeCodepoint => "invalid escape in string",
        ErrorType::UnterminatedString => "unterminated string",
        ErrorType::TrailingData => "unexpected data after the top-level value",
        ErrorType::DepthLimitExceeded => "exceeded max recursion depth",
        _ => "invalid JSON",
    }
}

/// Walks a tape whose root should be the request object, copying the string fields into
/// `fields`.
fn walk(
    nodes: &[Node<'_>],
    op: Operation,
    body: &[u8],
    fields: &mut Vec<u8>,
) -> Result<Walked, BodyError> {
    // A valid tape always has a key string before every value; anything else would be a
    // simd-json bug, answered as malformed rather than trusted.
    const BAD_TAPE: BodyError = BodyError::Syntax("unexpected parser output");

    let Some(Node::Object { len: entries, .. }) = nodes.first() else {
        return Err(BodyError::NotAnObject);
    };
    let mut at = 1;
    let mut seen = 0u8;
    let mut resource = "";
    let mut owner = "";
    let mut expiry_s = 0;
    let mut wait_ms = 0;
    for _ in 0..*entries {
        let Some(Node::String(key)) = nodes.get(at) else {
            return Err(BAD_TAPE);
        };
        let value_at = at + 1;
        let value = nodes.get(value_at).ok_or(BAD_TAPE)?;
        at = value_at.saturating_add(span(value));
        let Some(field) = Field::from_key(key, op) else {
            continue;
        };
        if seen & field.bit() != 0 {
            return Err(BodyError::DuplicateField(field));
        }
        seen |= field.bit();
        match (field, value) {
            (_, Node::Static(StaticNode::Null)) => {}
            (Field::ResourceId, Node::String(text)) => resource = text,
            (Field::LockOwner, Node::String(text)) => owner = text,
            (Field::StoreName, Node::String(_)) => {}
            (Field::ExpiryInSeconds | Field::WaitTimeoutMs, value) => {
                let n =
                    read_int32(value, nodes, value_at, body).ok_or(BodyError::NotAnInt32(field))?;
                if field == Field::WaitTimeoutMs {
                    wait_ms = n;
                } else {
                    expiry_s = n;
                }
            }
            (field, _) => return Err(BodyError::NotAString(field)),
        }
    }
    fields.extend_from_slice(resource.as_bytes());
    fields.extend_from_slice(owner.as_bytes());
    Ok(Walked {
        resource_len: resource.len(),
        expiry_s,
        wait_ms,
    })
}

/// How many tape nodes a value takes, its own included.
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count.saturating_add(1),
        _ => 1,
    }
}

/// Reads an `int32` value; `value` is `nodes[value_at]`.
fn read_int32(value: &Node<'_>, nodes: &[Node<'_>], value_at: usize, body: &[u8]) -> Option<i32> {
    let read = match value {
        // A plain integer literal: the parser's value is exact.
        Node::Static(StaticNode::I64(n)) => i32::try_from(*n).ok(),
        Node::Static(StaticNode::U64(n)) => i32::try_from(*n).ok(),
        // A fraction or an exponent (or a rewritten literal): read the original text, as Go
        // does, rather than a float that may have rounded.
        Node::Static(StaticNode::F64(_)) => {
            let ordinal = nodes
                .get(..value_at)
                .unwrap_or_default()
                .iter()
                .filter(|n| is_number(n))
                .count();
            nth_number_literal(body, ordinal).and_then(number::int32_from_literal)
        }
        Node::String(text) => number::int32_from_string(text),
        _ => None,
    };
    read
}

fn is_number(node: &Node<'_>) -> bool {
    matches!(
        node,
        Node::Static(StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_))
    )
}

/// Finds the number literals of a JSON text in document order, skipping strings. On valid
/// JSON each run is exactly one literal; on anything else it never reads out of bounds.
#[derive(Default)]
struct NumberScan {
    at: usize,
    in_string: bool,
    escaped: bool,
}

impl NumberScan {
    fn next_run(&mut self, bytes: &[u8]) -> Option<Range<usize>> {
        while let Some(&byte) = bytes.get(self.at) {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
            } else if byte == b'"' {
                self.in_string = true;
            } else if byte == b'-' || byte.is_ascii_digit() {
                let start = self.at;
                let len = bytes
                    .get(start..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                self.at = start + len;
                return Some(start..self.at);
            }
            self.at += 1;
        }
        None
    }
}

/// The text of the `ordinal`-th number literal (from 0) of a JSON text.
fn nth_number_literal(body: &[u8], ordinal: usize) -> Option<&[u8]> {
    let mut scan = NumberScan::default();
    let mut run = scan.next_run(body)?;
    for _ in 0..ordinal {
        run = scan.next_run(body)?;
    }
    body.get(run)
}

/// Rewrites every valid number literal of three bytes or more as [`NUMBER_STAND_IN`]
/// padded with spaces, which keeps the JSON valid, or invalid, exactly as it was. Returns
/// whether anything changed.
fn stand_in_numbers(json: &mut [u8]) -> bool {
    let mut scan = NumberScan::default();
    let mut changed = false;
    while let Some(run) = scan.next_run(json) {
        let Some(literal) = json.get_mut(run) else {
            break;
        };
        if literal.len() >= NUMBER_STAND_IN.len() && number::is_strict_number(literal) {
            let (head, tail) = literal.split_at_mut(NUMBER_STAND_IN.len());
            head.copy_from_slice(NUMBER_STAND_IN);
            tail.fill(b' ');
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoded (resourceId, lockOwner, expiryInSeconds), or the error.
    type Decoded = Result<(String, String, i32), BodyError>;

    fn try_lock(body: &str) -> Decoded {
        decode(Operation::TryLock, body.as_bytes())
    }

    fn decode(op: Operation, body: &[u8]) -> Decoded {
        let mut decoder = BodyDecoder::default();
        let fields = decoder.decode(op, body)?;
        Ok((
            String::from_utf8(fields.resource.to_vec()).expect("decoded strings are UTF-8"),
            String::from_utf8(fields.owner.to_vec()).expect("decoded strings are UTF-8"),
            fields.expiry_s,
        ))
    }

    fn fields(resource: &str, owner: &str, expiry_s: i32) -> Decoded {
        Ok((resource.to_owned(), owner.to_owned(), expiry_s))
    }

    #[test]
    fn accepted_bodies_decode_to_their_fields() {
        // Protects every accepted form of the contract's body table: both names, null as
        // empty, unknown fields ignored, and each accepted spelling of the expiry.
        let cases: &[(&str, Decoded)] = &[
            ("", fields("", "", 0)),
            ("{}", fields("", "", 0)),
            (" \t\r\n{ } \n", fields("", "", 0)),
            (
                r#"{"storeName":"s","resourceId":"r","lockOwner":"o","expiryInSeconds":10}"#,
                fields("r", "o", 10),
            ),
            (
                r#"{"store_name":"s","resource_id":"r","lock_owner":"o","expiry_in_seconds":10}"#,
                fields("r", "o", 10),
            ),
            (
                r#"{"resourceId":"r","lock_owner":"o"}"#,
                fields("r", "o", 0),
            ),
            (r#"{"expiryInSeconds":"10"}"#, fields("", "", 10)),
            (r#"{"expiryInSeconds":10.0}"#, fields("", "", 10)),
            (r#"{"expiryInSeconds":1e1}"#, fields("", "", 10)),
            (r#"{"expiryInSeconds":"1e1"}"#, fields("", "", 10)),
            (r#"{"expiryInSeconds":100e-1}"#, fields("", "", 10)),
            (r#"{"expiryInSeconds":-5}"#, fields("", "", -5)),
            (r#"{"expiryInSeconds":"-5"}"#, fields("", "", -5)),
            (r#"{"expiryInSeconds":-0}"#, fields("", "", 0)),
            (
                r#"{"expiryInSeconds":2147483647}"#,
                fields("", "", i32::MAX),
            ),
            (
                r#"{"expiryInSeconds":-2147483648}"#,
                fields("", "", i32::MIN),
            ),
            (r#"{"expiryInSeconds":null}"#, fields("", "", 0)),
            (
                r#"{"resourceId":null,"lockOwner":null,"storeName":null}"#,
                fields("", "", 0),
            ),
            (r#"{"storeName":"ignored"}"#, fields("", "", 0)),
            (
                r#"{"ResourceId":"wrong case","resourceid":1}"#,
                fields("", "", 0),
            ),
            (
                r#"{"x":[1,{"y":null}],"resourceId":"r","z":{"resourceId":5},"w":true}"#,
                fields("r", "", 0),
            ),
            (r#"{"unknown":1,"unknown":2}"#, fields("", "", 0)),
            (
                r#"{"resourceId":"a\"b\\c\u00e9\ud83d\ude00\n"}"#,
                fields("a\"b\\cé😀\n", "", 0),
            ),
            (
                r#"{"resource\u0049d":"escaped key"}"#,
                fields("escaped key", "", 0),
            ),
            (r#"{"resourceId":"","lockOwner":""}"#, fields("", "", 0)),
            ("{\"resourceId\":\"\u{7f}\"}", fields("\u{7f}", "", 0)),
            // Numbers simd-json cannot hold, in skipped fields, as Go accepts them.
            (
                r#"{"big":123456789012345678901234567890,"resourceId":"r"}"#,
                fields("r", "", 0),
            ),
            (r#"{"huge":1e400,"expiryInSeconds":7}"#, fields("", "", 7)),
            (
                r#"{"neg":-99999999999999999999,"expiryInSeconds":1.5e1}"#,
                fields("", "", 15),
            ),
            (
                r#"{"a":[1e999,"1e999",{"b":-1e999}],"expiryInSeconds":2e0}"#,
                fields("", "", 2),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(try_lock(body), *expected, "body {body}");
        }
    }

    #[test]
    fn rejected_bodies_are_malformed() {
        // Protects every rejected form of the contract's body rules.
        let cases: &[(&[u8], BodyError)] = &[
            (b" ", BodyError::Syntax("unexpected end of input")),
            (b"\n\t", BodyError::Syntax("unexpected end of input")),
            (b"[]", BodyError::NotAnObject),
            (b"null", BodyError::NotAnObject),
            (b"1", BodyError::NotAnObject),
            (b"\"resourceId\"", BodyError::NotAnObject),
            (b"{", BodyError::Syntax("invalid JSON")),
            (br#"{"resourceId":"r""#, BodyError::Syntax("invalid JSON")),
            (br#"{"resourceId":"r"}x"#, BodyError::Syntax("invalid JSON")),
            (
                br#"{"resourceId":"r"}{}"#,
                BodyError::Syntax("invalid JSON"),
            ),
            (br#"{"resourceId":"r",}"#, BodyError::Syntax("invalid JSON")),
            (b"{'resourceId':'r'}", BodyError::Syntax("invalid JSON")),
            (b"not json", BodyError::Syntax("invalid JSON")),
            (b"\xef\xbb\xbf{}", BodyError::Syntax("invalid JSON")),
            (
                b"{\"resourceId\":\"\xff\"}",
                BodyError::Syntax("invalid UTF-8"),
            ),
            (b"{\"x\":\"\xc3\"}", BodyError::Syntax("invalid UTF-8")),
            (
                br#"{"resourceId":"\ud800"}"#,
                BodyError::Syntax("invalid escape in string"),
            ),
            (
                br#"{"resourceId":"\x"}"#,
                BodyError::Syntax("invalid escape in string"),
            ),
            (
                b"{\"resourceId\":\"a\nb\"}",
                BodyError::Syntax("invalid JSON"),
            ),
            (
                br#"{"resourceId":1}"#,
                BodyError::NotAString(Field::ResourceId),
            ),
            (
                br#"{"lockOwner":true}"#,
                BodyError::NotAString(Field::LockOwner),
            ),
            (
                br#"{"storeName":{}}"#,
                BodyError::NotAString(Field::StoreName),
            ),
            (
                br#"{"resource_id":["r"]}"#,
                BodyError::NotAString(Field::ResourceId),
            ),
            (
                br#"{"resourceId":"a","resourceId":"b"}"#,
                BodyError::DuplicateField(Field::ResourceId),
            ),
            (
                br#"{"resourceId":"a","resource_id":"b"}"#,
                BodyError::DuplicateField(Field::ResourceId),
            ),
            (
                br#"{"lockOwner":null,"lock_owner":"o"}"#,
                BodyError::DuplicateField(Field::LockOwner),
            ),
            (
                br#"{"storeName":"a","store_name":null}"#,
                BodyError::DuplicateField(Field::StoreName),
            ),
            (
                br#"{"expiryInSeconds":1,"expiry_in_seconds":1}"#,
                BodyError::DuplicateField(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":10.5}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":" 10"}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":true}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":"abc"}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":""}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":2147483648}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":-2147483649}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":"2147483648"}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":18446744073709551615}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":99999999999999999999}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":1e400}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":1e-400}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":2147483647.0000000001}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":[10]}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":{}}"#,
                BodyError::NotAnInt32(Field::ExpiryInSeconds),
            ),
            (
                br#"{"expiryInSeconds":01}"#,
                BodyError::Syntax("invalid number"),
            ),
            (br#"{"x":1.}"#, BodyError::Syntax("invalid number")),
            (br#"{"x":-}"#, BodyError::Syntax("invalid number")),
        ];
        for (body, expected) in cases {
            assert_eq!(
                decode(Operation::TryLock, body),
                Err(*expected),
                "body {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn unlock_skips_the_expiry() {
        // Protects the message shape: UnlockRequest has no expiryInSeconds, so any value
        // there is an unknown field and is skipped.
        let body = br#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":"abc","expiry_in_seconds":[1]}"#;
        assert_eq!(decode(Operation::Unlock, body), fields("r", "o", 0));
        assert_eq!(
            decode(Operation::Unlock, br#"{"resourceId":1}"#),
            Err(BodyError::NotAString(Field::ResourceId))
        );
    }

    #[test]
    fn nesting_is_limited_like_protojson() {
        // Protects the depth limit: the object plus 9 999 nested arrays parse, one more
        // level does not.
        let nested = |arrays: usize| {
            let mut body = b"{\"x\":".to_vec();
            body.extend(std::iter::repeat_n(b'[', arrays));
            body.extend(std::iter::repeat_n(b']', arrays));
            body.push(b'}');
            body
        };
        assert_eq!(
            decode(Operation::TryLock, &nested(MAX_DEPTH - 1)),
            fields("", "", 0)
        );
        assert_eq!(
            decode(Operation::TryLock, &nested(MAX_DEPTH)),
            Err(BodyError::Syntax("exceeded max recursion depth"))
        );
    }

    #[test]
    fn reused_decoder_forgets_the_previous_body() {
        // Protects buffer reuse: a decoder that just decoded a long body answers a short or
        // failing one exactly as a fresh decoder does.
        let mut decoder = BodyDecoder::default();
        let long = format!(
            r#"{{"resourceId":"{}","lockOwner":"{}","expiryInSeconds":"1e1"}}"#,
            "r".repeat(3000),
            "o".repeat(2000)
        );
        let first = decoder
            .decode(Operation::TryLock, long.as_bytes())
            .expect("valid body");
        assert_eq!(
            (first.resource.len(), first.owner.len(), first.expiry_s),
            (3000, 2000, 10)
        );
        assert_eq!(
            decoder.decode(Operation::TryLock, br#"{"resourceId":1}"#),
            Err(BodyError::NotAString(Field::ResourceId))
        );
        let short = decoder
            .decode(
                Operation::TryLock,
                br#"{"resourceId":"a","lockOwner":"b","expiryInSeconds":2.0}"#,
            )
            .expect("valid body");
        assert_eq!(
            (short.resource, short.owner, short.expiry_s),
            (&b"a"[..], &b"b"[..], 2)
        );
        assert_eq!(
            decoder.decode(Operation::TryLock, b""),
            Ok(LockFields::default())
        );
    }

    #[test]
    fn number_scan_skips_strings() {
        // Protects the link between tape numbers and their text: literals are found in
        // document order, never inside strings, escaped quotes included.
        let body = br#"{"a\"1":"2\\","b":[-3.5e1,4],"c":{"d":"5"},"e":60}"#;
        let literals: Vec<&[u8]> = (0..4).filter_map(|n| nth_number_literal(body, n)).collect();
        assert_eq!(literals, [&b"-3.5e1"[..], b"4", b"60"]);
        assert_eq!(nth_number_literal(body, 3), None);
    }

    #[test]
    fn stand_ins_keep_the_shape_of_the_json() {
        // Protects the rewrite used for numbers simd-json cannot hold: only valid literals of
        // three or more bytes change, strings never do, and the length stays the same.
        let mut json = br#"{"s":"12345","a":[1e400,12,-123,1.5,01234],"b":-0}"#.to_vec();
        assert!(stand_in_numbers(&mut json));
        assert_eq!(
            &json[..],
            &br#"{"s":"12345","a":[0.0  ,12,0.0 ,0.0,01234],"b":-0}"#[..]
        );
        let mut unchanged = br#"{"a":[1,22],"s":"1e400"}"#.to_vec();
        assert!(!stand_in_numbers(&mut unchanged));
    }
}
