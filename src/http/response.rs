//! Writing responses: one status line, the few headers the contract needs, the body.
//!
//! The status line always says `HTTP/1.1`, also to HTTP/1.0 clients, as Go's net/http does
//! (RFC 9110 §6.2: a server sends its own highest version). A response is appended to the
//! caller's buffer with no allocation besides that buffer growing: lengths are formatted on
//! the stack.

use super::method::Version;

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How the connection continues after a response, which decides its `Connection` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 keep-alive: no header (persistence is the HTTP/1.1 default).
    KeepAlive11,
    /// HTTP/1.0 keep-alive: `Connection: keep-alive` (HTTP/1.0 closes by default).
    KeepAlive10,
    /// `Connection: close`: the server closes after this response.
    Close,
}

impl Connection {
    /// The header of an answer to a request of `version`: `close` when the connection closes
    /// after it, else keep-alive as that version spells it.
    pub fn of(version: Version, close: bool) -> Connection {
        match (close, version) {
            (true, _) => Connection::Close,
            (false, Version::Http10) => Connection::KeepAlive10,
            (false, Version::Http11) => Connection::KeepAlive11,
        }
    }
}

/// The reason phrase sent with `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        // Clients read the code, not the phrase (RFC 9112 §4); name the class.
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// Whether a response with this status never has content (RFC 9110 §6.4.1, §15.3.5), and
/// so carries no `Content-Length`.
fn is_bodyless(status: u16) -> bool {
    status == 204 || (100..200).contains(&status)
}

/// Appends one complete response: `HTTP/1.1 <status> <reason>\r\n`, `Content-Type` (omitted
/// if `content_type` is empty), `Content-Length` (always, even 0; but none for 204 and 1xx,
/// whose body must be empty), the connection header, `\r\n`, body.
#[inline]
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    connection: Connection,
) {
    write_response_with(out, status, content_type, body, connection, None);
}

/// [`write_response`] with one more header whose value is a number (`name: value`), after
/// `Content-Length`.
pub fn write_response_with(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    connection: Connection,
    numeric_header: Option<(&str, u64)>,
) {
    let bodyless = is_bodyless(status);
    debug_assert!(
        !bodyless || body.is_empty(),
        "a {status} response has no body"
    );
    debug_assert!(
        !content_type.bytes().any(|b| b == b'\r' || b == b'\n'),
        "content type must be one header line"
    );
    let reason = reason(status);
    // Fixed text is under 100 bytes; reserving once keeps this to at most one growth.
    out.reserve(100 + reason.len() + content_type.len() + body.len());

    // The status lines this server sends are written whole (one copy instead of four).
    match status {
        200 => out.extend_from_slice(b"HTTP/1.1 200 OK\r\n"),
        204 => out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n"),
        400 => out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n"),
        _ => {
            out.extend_from_slice(b"HTTP/1.1 ");
            push_decimal(out, u64::from(status));
            out.push(b' ');
            out.extend_from_slice(reason.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if content_type == "application/json" {
        out.extend_from_slice(b"Content-Type: application/json\r\n");
    } else if !content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !bodyless {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    if let Some((name, value)) = numeric_header {
        debug_assert!(
            !name.bytes().any(|b| b == b'\r' || b == b'\n' || b == b':'),
            "a header name is one token"
        );
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        push_decimal(out, value);
        out.extend_from_slice(b"\r\n");
    }
    match connection {
        Connection::KeepAlive11 => {}
        Connection::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Connection::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if !bodyless {
        out.extend_from_slice(body);
    }
}

/// The decimal digits of a `u64`: at most 20.
const U64_DIGITS: usize = 20;

/// Appends `n` in decimal, formatted on the stack.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    // The lengths of the common answers: two or three digits, without a division loop.
    if (10..1000).contains(&n) {
        let (h, t, u) = (n / 100, n / 10 % 10, n % 10);
        if h == 0 {
            out.extend_from_slice(&[b'0' + t as u8, b'0' + u as u8]);
        } else {
            out.extend_from_slice(&[b'0' + h as u8, b'0' + t as u8, b'0' + u as u8]);
        }
        return;
    }
    let mut digits = [0u8; U64_DIGITS];
    let mut start = U64_DIGITS;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, ct: &str, body: &[u8], c: Connection) -> Vec<u8> {
        let mut out = Vec::new();
        write_response(&mut out, status, ct, body, c);
        out
    }

    #[test]
    fn a_numeric_header_goes_after_the_length() {
        // Protects the fencing token's wire form: one header line after Content-Length and
        // before the connection header, any u64 in full.
        let mut out = Vec::new();
        write_response_with(
            &mut out,
            200,
            "application/json",
            b"{}",
            Connection::Close,
            Some(("Dapr-Lock-Fence", u64::MAX)),
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
Dapr-Lock-Fence: 18446744073709551615\r\nConnection: close\r\n\r\n{}"
        );
    }

    #[test]
    fn exact_bytes_for_each_connection_mode() {
        // Protects: the exact wire bytes, header order and connection header of each mode.
        let table: [(Connection, &[u8]); 3] = [
            (
                Connection::KeepAlive11,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"success\":true}",
            ),
            (
                Connection::KeepAlive10,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\nConnection: keep-alive\r\n\r\n{\"success\":true}",
            ),
            (
                Connection::Close,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"success\":true}",
            ),
        ];
        for (c, expected) in table {
            let got = response(200, "application/json", br#"{"success":true}"#, c);
            assert_eq!(got, expected, "{c:?}");
        }
    }

    #[test]
    fn no_content_has_no_length_and_no_body() {
        // Protects: 204 carries no Content-Length (RFC 9110 §8.6) in every connection mode.
        let table: [(Connection, &[u8]); 3] = [
            (Connection::KeepAlive11, b"HTTP/1.1 204 No Content\r\n\r\n"),
            (
                Connection::KeepAlive10,
                b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n",
            ),
            (
                Connection::Close,
                b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
            ),
        ];
        for (c, expected) in table {
            assert_eq!(response(204, "", b"", c), expected, "{c:?}");
        }
    }

    #[test]
    fn empty_body_still_has_a_zero_length() {
        // Protects: a non-204 response with an empty body says `Content-Length: 0`, so a
        // keep-alive client does not wait for a body; an empty content type is omitted.
        assert_eq!(
            response(200, "", b"", Connection::KeepAlive11),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn appends_after_existing_bytes() {
        // Protects: pipelined answers go one after another into the same buffer.
        let mut out = b"previous".to_vec();
        write_response(
            &mut out,
            401,
            "text/plain; charset=utf-8",
            b"invalid api token\n",
            Connection::KeepAlive11,
        );
        assert_eq!(
            out,
            b"previousHTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 18\r\n\r\ninvalid api token\n".to_vec()
        );
    }

    #[test]
    fn lengths_and_codes_are_formatted_in_decimal() {
        // Protects: the stack formatter for zero, one digit, carries, and the extremes.
        for n in [0u64, 7, 10, 99, 100, 65_535, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        let big = vec![b'x'; 123_456];
        let got = response(200, "", &big, Connection::KeepAlive11);
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 123456\r\n\r\nx"));
        assert_eq!(got.len(), 43 + 123_456);
    }

    #[test]
    fn reason_phrases() {
        // Protects: the phrases of the statuses this server sends, and a phrase for any other.
        let table = [
            (200, "OK"),
            (204, "No Content"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (404, "Not Found"),
            (408, "Request Timeout"),
            (413, "Request Entity Too Large"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
            (299, "Success"),
            (418, "Client Error"),
            (599, "Server Error"),
        ];
        for (status, phrase) in table {
            assert_eq!(reason(status), phrase, "{status}");
        }
        assert_eq!(
            response(503, "", b"", Connection::Close),
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn continue_is_a_bare_interim_response() {
        // Protects: the 100 Continue bytes have no headers, so no client mistakes them for
        // the final answer.
        assert_eq!(CONTINUE, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    // The digit shortcut and the status-line table write what the general code writes.
    #[test]
    fn shortcuts_match_the_general_encoding() {
        for n in (0..2000u64).chain([9_999, 10_000, 65_536, u64::MAX]) {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes(), "{n}");
        }
        for status in [200u16, 204, 400, 401, 404, 431, 500, 503, 299] {
            let mut out = Vec::new();
            let body: &[u8] = if status == 204 { b"" } else { b"x" };
            write_response(
                &mut out,
                status,
                "application/json",
                body,
                Connection::KeepAlive11,
            );
            let line = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            assert!(out.starts_with(line.as_bytes()), "{status}");
        }
    }
}
