//! JSON string encoding exactly as Go's `encoding/json` writes it, which is what daprd's error
//! bodies and metadata are made of.
//!
//! Invariants:
//! - The output is always valid JSON and valid UTF-8, whatever bytes come in.
//! - Each byte of an invalid UTF-8 sequence becomes one `\ufffd`, as Go's `utf8.DecodeRune`
//!   (which reports every invalid sequence as one bad byte) makes the encoder do. Rust's own
//!   lossy decoding would fold a truncated sequence into a single replacement, so it is not
//!   used here.
//! - `<`, `>` and `&` are escaped (Go's HTML-safe default), as are U+2028 and U+2029; `\b`
//!   and `\f` use their short forms (Go 1.22 and later); every other control character is
//!   `\u00xx` with lower-case hex. Everything else, DEL included, is copied as is.

/// Lower-case hex digits, as Go's encoder writes them.
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as a quoted JSON string, escaped as Go's `encoding/json` does.
pub(crate) fn push_go_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        push_valid(out, chunk.valid());
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

/// Escapes a run of valid UTF-8.
fn push_valid(out: &mut Vec<u8>, text: &str) {
    let mut copied = 0;
    for (at, ch) in text.char_indices() {
        // `Some` for a fixed escape, `None` for a control character written `\u00xx`.
        let escape: Option<&[u8]> = match ch {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\u{8}' => Some(b"\\b"),
            '\u{c}' => Some(b"\\f"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            '<' => Some(b"\\u003c"),
            '>' => Some(b"\\u003e"),
            '&' => Some(b"\\u0026"),
            '\u{2028}' => Some(b"\\u2028"),
            '\u{2029}' => Some(b"\\u2029"),
            c if u32::from(c) < 0x20 => None,
            _ => continue,
        };
        out.extend_from_slice(text.as_bytes().get(copied..at).unwrap_or_default());
        match escape {
            Some(escape) => out.extend_from_slice(escape),
            None => {
                let code = u32::from(ch) as usize;
                out.extend_from_slice(b"\\u00");
                out.push(HEX_LOWER[(code >> 4) & 0xf]);
                out.push(HEX_LOWER[code & 0xf]);
            }
        }
        copied = at + ch.len_utf8();
    }
    out.extend_from_slice(text.as_bytes().get(copied..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        push_go_string(&mut out, bytes);
        String::from_utf8(out).expect("the encoder always writes UTF-8")
    }

    #[test]
    fn escapes_like_go_encoding_json() {
        // Protects byte-for-byte equality with daprd's error bodies: each row is what Go's
        // json.Marshal writes for the same string.
        let cases: &[(&[u8], &str)] = &[
            (b"", r#""""#),
            (b"lockstore", r#""lockstore""#),
            (b"a\"b", r#""a\"b""#),
            (b"a\\b", r#""a\\b""#),
            (b"/", r#""/""#),
            (b"\n\r\t", r#""\n\r\t""#),
            (b"\x08\x0c", r#""\b\f""#),
            (b"\x00\x01\x1f", r#""\u0000\u0001\u001f""#),
            (b"\x1b[0m", r#""\u001b[0m""#),
            (
                b"<a href='x'>&</a>",
                r#""\u003ca href='x'\u003e\u0026\u003c/a\u003e""#,
            ),
            (b"\x7f", "\"\x7f\""),
            ("é😀".as_bytes(), "\"é😀\""),
            ("a\u{2028}b\u{2029}c".as_bytes(), r#""a\u2028b\u2029c""#),
            ("\u{2027}\u{202a}".as_bytes(), "\"\u{2027}\u{202a}\""),
        ];
        for (input, expected) in cases {
            assert_eq!(encode(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn replaces_each_invalid_byte_like_go() {
        // Protects Go's one-`\ufffd`-per-bad-byte rule, which differs from Rust's lossy
        // decoding on truncated sequences.
        let cases: &[(&[u8], &str)] = &[
            (b"\xff", r#""\ufffd""#),
            (b"a\xffb", r#""a\ufffdb""#),
            // A truncated three-byte sequence: two bad bytes, two replacements.
            (b"\xe2\x82A", r#""\ufffd\ufffdA""#),
            // An encoded surrogate is three bad bytes.
            (b"\xed\xa0\x80", r#""\ufffd\ufffd\ufffd""#),
            // A truncated sequence at the very end.
            (b"ok\xf0\x9f\x98", r#""ok\ufffd\ufffd\ufffd""#),
            (b"\x80\x80", r#""\ufffd\ufffd""#),
            (b"<\xc3", r#""\u003c\ufffd""#),
        ];
        for (input, expected) in cases {
            assert_eq!(encode(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn output_parses_back_to_the_same_text() {
        // Protects validity: whatever goes in, the output is JSON that decodes to the input
        // (with invalid bytes replaced).
        let inputs: &[&[u8]] = &[
            b"plain",
            b"\x00\x1f\"\\<>&\x08\x0c\n\r\t",
            "\u{2028}\u{2029}é".as_bytes(),
            b"\xfe\xff",
        ];
        for input in inputs {
            let decoded: String =
                serde_json::from_str(&encode(input)).expect("encoder output is valid JSON");
            let expected: String = input
                .utf8_chunks()
                .flat_map(|c| {
                    c.valid()
                        .chars()
                        .chain(c.invalid().iter().map(|_| '\u{fffd}'))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(decoded, expected);
        }
    }
}
