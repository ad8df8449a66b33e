//! The debug line that explains a refusal a misspelt or missing field can cause.
//!
//! protojson skips unknown keys, so a body that spells a field wrongly (`resourceID`,
//! `expiryInSecond`) or carries no body at all is refused as if the field were empty:
//! `ExpiryInSeconds is not positive`, `ResourceId is empty` or `LockOwner is empty`. The answer
//! stays daprd's; at `--log-level debug` the log names the keys that were skipped, or says that
//! the body was empty:
//!
//! ```text
//! dlockd: debug: try-lock on lock store "lockstore": the body's unknown fields "expiryInSecond", "resourceID" were ignored (protojson drops unknown fields); the answer ExpiryInSeconds is not positive may come from a misspelt name
//! dlockd: debug: unlock on lock store "lockstore": the body was empty (0 bytes), so every field was empty; the answer ResourceId is empty comes from that
//! ```
//!
//! Invariants:
//! - Only key names are written, never a value: lock owners are credentials.
//! - Every name and the store name are quoted and JSON-escaped with ASCII output only (`\"`,
//!   `\\`, `\n`, `\r`, `\t`, `\uXXXX` for anything else outside printable ASCII), so a line
//!   is one line whatever the client sent, and a look-alike letter shows as its code.
//! - At most [`MAX_NAMES`] distinct names, each cut to [`MAX_NAME_BYTES`]; the rest are counted.
//! - The body is parsed again only here, on a refused request, and only when debug lines are
//!   written: the lock path never pays for it.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::log::{self, Level};

use super::body;
use super::error::ApiError;
use super::op::Operation;
use super::response::Response;

/// The most unknown names one line lists; the others are counted.
pub(super) const MAX_NAMES: usize = 8;
/// The longest part of a name one line shows, in bytes of the decoded name.
pub(super) const MAX_NAME_BYTES: usize = 64;

/// The answer to a lock request that failed validation, after writing the debug line that
/// explains it, if debug lines are written. Out of line and cold: the lock path only pays
/// for a call it does not take.
#[cold]
#[inline(never)]
pub(super) fn refused(op: Operation, body: &[u8], error: ApiError<'_>) -> Response {
    if log::enabled(Level::Debug) {
        if let Some(line) = line(op, body, &error) {
            log::write(Level::Debug, format_args!("{line}"));
        }
    }
    error.response()
}

/// The debug line's message for `error`, or `None` when a field's name cannot explain it or
/// the body holds no unknown key.
pub(super) fn line(op: Operation, body: &[u8], error: &ApiError<'_>) -> Option<String> {
    let (answer, store) = match *error {
        ApiError::ExpiryNotPositive { store } => ("ExpiryInSeconds is not positive", store),
        ApiError::ResourceIdEmpty { store } => ("ResourceId is empty", store),
        ApiError::LockOwnerEmpty { store } => ("LockOwner is empty", store),
        _ => return None,
    };
    let mut line = String::new();
    line.push_str(match op {
        Operation::TryLock => "try-lock",
        Operation::Unlock => "unlock",
        Operation::Renew => "renew",
        Operation::Acquire => "acquire",
        Operation::Holder => "holder",
    });
    line.push_str(" on lock store ");
    push_quoted(&mut line, &String::from_utf8_lossy(store));
    line.push_str(": ");
    if body.is_empty() {
        let _ = write!(
            line,
            "the body was empty (0 bytes), so every field was empty; the answer {answer} comes \
             from that"
        );
        return Some(line);
    }
    let names = UnknownNames::of(op, body);
    let [first, rest @ ..] = names.shown.as_slice() else {
        return None;
    };
    let plural = rest.len() + names.more > 0;
    line.push_str(if plural {
        "the body's unknown fields "
    } else {
        "the body's unknown field "
    });
    line.push_str(first);
    for name in rest {
        line.push_str(", ");
        line.push_str(name);
    }
    if names.more > 0 {
        let _ = write!(line, " and {} more", names.more);
    }
    let _ = write!(
        line,
        " {} ignored (protojson drops unknown fields); the answer {answer} may come from a \
         misspelt name",
        if plural { "were" } else { "was" }
    );
    Some(line)
}

/// The distinct unknown keys of a body, as the line shows them.
struct UnknownNames {
    /// The first [`MAX_NAMES`], quoted, escaped and cut, in the order written.
    shown: Vec<String>,
    /// How many others there are.
    more: usize,
}

impl UnknownNames {
    fn of(op: Operation, body: &[u8]) -> Self {
        let mut seen: HashSet<String> = HashSet::new();
        let mut names = UnknownNames {
            shown: Vec::new(),
            more: 0,
        };
        body::unknown_keys(op, body, &mut |key| {
            if !seen.insert(key.to_owned()) {
                return;
            }
            if names.shown.len() < MAX_NAMES {
                let mut shown = String::new();
                push_name(&mut shown, key);
                names.shown.push(shown);
            } else {
                names.more += 1;
            }
        });
        names
    }
}

/// Appends a name, quoted and escaped, cut to [`MAX_NAME_BYTES`] at a character boundary; a
/// cut name is followed by `...` and its whole length.
fn push_name(out: &mut String, name: &str) {
    if name.len() <= MAX_NAME_BYTES {
        push_quoted(out, name);
        return;
    }
    let mut end = MAX_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    push_quoted(out, name.get(..end).unwrap_or_default());
    let _ = write!(out, "... ({} bytes)", name.len());
}

/// Appends `text` as a JSON string written in ASCII only.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &[u8] = b"lockstore";
    /// A lock owner no line may ever show.
    const OWNER: &str = "secret-owner-x";

    fn try_lock_line(body: &str) -> Option<String> {
        line(
            Operation::TryLock,
            body.as_bytes(),
            &ApiError::ExpiryNotPositive { store: STORE },
        )
    }

    /// The unknown keys of a body, as the decoder's re-scan passes them.
    fn keys(op: Operation, body: &str) -> Vec<String> {
        let mut found = Vec::new();
        body::unknown_keys(op, body.as_bytes(), &mut |key| found.push(key.to_owned()));
        found
    }

    // Protects the line's exact form for the common case: misspelt names, listed in the
    // order written, with the answer they explain.
    #[test]
    fn misspelt_names_are_named() {
        let body = format!(r#"{{"resourceID":"r","lockOwner":"{OWNER}","expiryInSecond":10}}"#);
        assert_eq!(
            try_lock_line(&body).as_deref(),
            Some(
                "try-lock on lock store \"lockstore\": the body's unknown fields \
                 \"resourceID\", \"expiryInSecond\" were ignored (protojson drops unknown \
                 fields); the answer ExpiryInSeconds is not positive may come from a misspelt \
                 name"
            )
        );
        let unlock = line(
            Operation::Unlock,
            br#"{"ResourceId":"r","lockOwner":"o"}"#,
            &ApiError::ResourceIdEmpty { store: STORE },
        );
        assert_eq!(
            unlock.as_deref(),
            Some(
                "unlock on lock store \"lockstore\": the body's unknown field \"ResourceId\" \
                 was ignored (protojson drops unknown fields); the answer ResourceId is empty \
                 may come from a misspelt name"
            )
        );
    }

    // Protects the decoder's notion of unknown: wrong case and near misses are unknown, both
    // spellings of a field and escaped spellings of them are not, and an unlock has no
    // expiry field.
    #[test]
    fn unknown_means_what_the_decoder_skips() {
        let body = r#"{"resourceid":1,"resource_id":"r","lock_owner":"o","resource\u0049d2":2,"store_name":"s","expiry_in_seconds":3,"lockowner":null}"#;
        assert_eq!(
            keys(Operation::TryLock, body),
            ["resourceid", "resourceId2", "lockowner"]
        );
        assert_eq!(
            keys(
                Operation::Unlock,
                r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":5}"#
            ),
            ["expiryInSeconds"]
        );
        assert!(keys(Operation::TryLock, r#"{"resource\u0049d":"r"}"#).is_empty());
    }

    // Protects the skipping of values: objects and arrays under unknown keys, however
    // nested, and numbers simd-json cannot hold, never yield their inner keys.
    #[test]
    fn nested_values_are_skipped_whole() {
        let body = r#"{"a":{"resourceID":{"x":[1,{"y":2}]},"z":[]},"b":[{"c":1},[{"d":{}}]],"big":123456789012345678901234567890,"e":{"f":1e400},"lockOwner":"o","g":"{\"h\":1}"}"#;
        assert_eq!(keys(Operation::TryLock, body), ["a", "b", "big", "e", "g"]);
    }

    // Protects the escaping: quotes, backslashes, control characters and non-ASCII letters
    // (a look-alike included) come out as JSON escapes in ASCII, so the line stays one line.
    #[test]
    fn names_are_escaped() {
        let body =
            r#"{"a\"b":1,"c\\d":2,"line\nbreak\u0000":3,"résource":4,"resourceІd":5,"😀":6}"#;
        let line = try_lock_line(body).expect("a line");
        assert!(line.is_ascii(), "{line}");
        assert!(!line.contains('\n'), "{line}");
        for shown in [
            r#""a\"b""#,
            r#""c\\d""#,
            r#""line\nbreak\u0000""#,
            r#""r\u00e9source""#,
            r#""resource\u0406d""#,
            r#""\ud83d\ude00""#,
        ] {
            assert!(line.contains(shown), "{shown} in {line}");
        }
        let store = line_for_store(b"a\nb\xff\"");
        assert!(
            store.starts_with("try-lock on lock store \"a\\nb\\ufffd\\\"\": "),
            "{store}"
        );
    }

    fn line_for_store(store: &[u8]) -> String {
        line(
            Operation::TryLock,
            br#"{"x":1}"#,
            &ApiError::ExpiryNotPositive { store },
        )
        .expect("a line")
    }

    // Protects the bound on a name: a long name is cut at MAX_NAME_BYTES, at a character
    // boundary, and says its length.
    #[test]
    fn a_long_name_is_cut() {
        let long = "k".repeat(1000);
        let line = try_lock_line(&format!(r#"{{"{long}":1}}"#)).expect("a line");
        let shown = format!("\"{}\"... (1000 bytes)", "k".repeat(MAX_NAME_BYTES));
        assert!(line.contains(&shown), "{line}");
        assert!(!line.contains(&"k".repeat(MAX_NAME_BYTES + 1)), "{line}");
        // 63 ASCII bytes then a two-byte letter: the cut falls before the letter.
        let split = format!("{}é{}", "k".repeat(MAX_NAME_BYTES - 1), "k".repeat(10));
        let line = try_lock_line(&format!(r#"{{"{split}":1}}"#)).expect("a line");
        let shown = format!("\"{}\"... (75 bytes)", "k".repeat(MAX_NAME_BYTES - 1));
        assert!(line.contains(&shown), "{line}");
    }

    // Protects the bound on the count: at most MAX_NAMES distinct names, in order, then how
    // many more; a repeated name counts once.
    #[test]
    fn many_names_are_bounded() {
        let members: Vec<String> = (0..20).map(|i| format!(r#""n{i}":{i},"n0":0"#)).collect();
        let line = try_lock_line(&format!("{{{}}}", members.join(","))).expect("a line");
        let listed: Vec<String> = (0..MAX_NAMES).map(|i| format!("\"n{i}\"")).collect();
        assert!(
            line.contains(&format!("{} and 12 more were ignored", listed.join(", "))),
            "{line}"
        );
        assert!(!line.contains("\"n8\""), "{line}");
    }

    // Protects the credential rule: no value ever appears, neither the owner nor a value of
    // an unknown field, whichever answer the line explains.
    #[test]
    fn values_never_appear() {
        let bodies = [
            format!(r#"{{"resourceID":"r","lockOwner":"{OWNER}","expiryInSecond":10}}"#),
            format!(r#"{{"lock_owner":"{OWNER}","x":"{OWNER}-too","y":{{"z":"{OWNER}"}}}}"#),
            format!(r#"{{"LockOwner":"{OWNER}","resourceId":"r","expiryInSeconds":5}}"#),
        ];
        let errors = [
            ApiError::ExpiryNotPositive { store: STORE },
            ApiError::ResourceIdEmpty { store: STORE },
            ApiError::LockOwnerEmpty { store: STORE },
        ];
        for body in &bodies {
            for op in [Operation::TryLock, Operation::Unlock] {
                for error in &errors {
                    let line = line(op, body.as_bytes(), error).expect("a line");
                    assert!(!line.contains(OWNER), "{line}");
                    assert!(!line.contains("\"r\""), "{line}");
                }
            }
        }
    }

    mod generated {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::*;

        /// Keys: the fields' names, near misses, and names that need escapes.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "resourceId",
                    "resource_id",
                    "lockOwner",
                    "lock_owner",
                    "storeName",
                    "expiryInSeconds",
                    "expiry_in_seconds",
                    "resourceID",
                    "ResourceId",
                    "expiryInSecond",
                ])
                .prop_map(str::to_owned),
                "[a-zA-Z_\"\\\\\u{0}-\u{1f}é😀]{0,12}",
            ]
        }

        /// Values of any shape, nested objects and arrays included.
        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[a-z\"{}]{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((key(), inner), 0..4)
                        .prop_map(|entries| Value::Object(entries.into_iter().collect())),
                ]
            })
        }

        /// A JSON object written member by member, so repeated keys stay.
        fn object(members: &[(String, Value)]) -> String {
            let written: Vec<String> = members
                .iter()
                .map(|(key, value)| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(key).expect("a string encodes"),
                        value
                    )
                })
                .collect();
            format!("{{{}}}", written.join(","))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            // Protects the re-scan against the body it reads: exactly the top-level keys
            // that are not the message's fields, in order, whatever the values hold.
            #[test]
            fn the_scan_finds_exactly_the_unknown_top_level_keys(
                members in prop::collection::vec((key(), value()), 0..6),
                unlock in any::<bool>(),
            ) {
                let op = if unlock { Operation::Unlock } else { Operation::TryLock };
                let known: &[&str] = match op {
                    Operation::TryLock => &[
                        "resourceId", "resource_id", "lockOwner", "lock_owner", "storeName",
                        "store_name", "expiryInSeconds", "expiry_in_seconds",
                    ],
                    _ => &[
                        "resourceId", "resource_id", "lockOwner", "lock_owner", "storeName",
                        "store_name",
                    ],
                };
                let expected: Vec<String> = members
                    .iter()
                    .map(|(key, _)| key.clone())
                    .filter(|key| !known.contains(&key.as_str()))
                    .collect();
                prop_assert_eq!(keys(op, &object(&members)), expected);
            }

            // Protects the line's shape on any bytes: no panic, ASCII only, one line, and
            // never more than MAX_NAMES names of MAX_NAME_BYTES each.
            #[test]
            fn any_body_gives_a_bounded_ascii_line(body in prop::collection::vec(any::<u8>(), 0..200)) {
                if let Some(line) = line(
                    Operation::TryLock,
                    &body,
                    &ApiError::ResourceIdEmpty { store: &body },
                ) {
                    prop_assert!(line.is_ascii() && !line.contains(['\n', '\r']), "{}", line);
                    // Quotes, escapes and a count: a generous bound on the names' share.
                    prop_assert!(line.len() <= 200 * 6 + MAX_NAMES * (MAX_NAME_BYTES * 6 + 32) + 300);
                }
            }
        }
    }

    // Protects the empty-body line, and the silence where a name explains nothing: no
    // unknown key, a malformed body, or an answer no field's name causes.
    #[test]
    fn empty_bodies_and_silence() {
        assert_eq!(
            line(
                Operation::Unlock,
                b"",
                &ApiError::ResourceIdEmpty { store: STORE }
            )
            .as_deref(),
            Some(
                "unlock on lock store \"lockstore\": the body was empty (0 bytes), so every \
                 field was empty; the answer ResourceId is empty comes from that"
            )
        );
        assert_eq!(try_lock_line(r#"{"resourceId":"r","lockOwner":"o"}"#), None);
        assert_eq!(try_lock_line("{}"), None);
        assert_eq!(try_lock_line(r#"{"x":1"#), None);
        assert_eq!(try_lock_line("[]"), None);
        let not_a_name = [
            ApiError::StoreNotFound { store: STORE },
            ApiError::StoreNotConfigured,
            ApiError::ExpiryAboveMax {
                store: STORE,
                max_s: 5,
            },
        ];
        for error in &not_a_name {
            assert_eq!(line(Operation::TryLock, br#"{"x":1}"#, error), None);
            assert_eq!(line(Operation::TryLock, b"", error), None);
        }
    }
}
