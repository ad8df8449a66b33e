//! From a raw request target to a route, the way daprd's Go stack gets there.
//!
//! daprd runs on Go's `net/http` and a chi router, so a target goes through three steps, and
//! each is reproduced here:
//! 1. `url.ParseRequestURI`, before any handler: a target that fails it (a bad `%` escape, a
//!    control byte, a relative reference) gets `net/http`'s plain `400 Bad Request` and the
//!    connection is closed ([`parse_target`]). Absolute-form targets
//!    (`http://host/path`) are accepted; their authority is not checked.
//! 2. daprd's clean-path middleware routes on `path.Clean(URL.EscapedPath())`: `//` collapses,
//!    `.` and `..` resolve, the trailing `/` goes. The escaped path is the raw path when Go
//!    deems its escaping valid, or else the decoded path escaped again, so `%2F` stays inside
//!    its segment in the common case ([`Router::route`]).
//! 3. chi matches the segments literally (case-sensitive), and daprd `url.QueryUnescape`s the
//!    `{storeName}` parameter, so `+` and `%20` become a space and `%2F` a `/` inside the name.
//!
//! The API-token exemption is decided on the decoded path with its outer slashes trimmed,
//! exactly as daprd's middleware does ([`Router::is_token_exempt`]).
//!
//! Invariants: nothing here panics on any target, and after the first requests have sized
//! the scratch buffers, routing allocates nothing. The query string is only checked for
//! control bytes, as Go checks the whole target; no route reads it.

use std::ops::Range;

use crate::http::Method;

use super::op::Operation;

/// Why Go's `url.ParseRequestURI` rejects a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetError {
    Empty,
    /// A byte below 0x20, or DEL.
    ControlByte,
    /// A `:` before any scheme letter.
    MissingScheme,
    /// Neither `*`, nor an absolute path, nor an absolute URI.
    NotAbsolute,
    /// A `%` not followed by two hex digits in the path.
    BadEscape,
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Healthz,
    HealthzOutbound,
    Metadata,
    /// A lock operation on the store named by the decoded (possibly non-UTF-8) bytes.
    Lock {
        op: Operation,
        store: &'a [u8],
    },
    /// Anything else: daprd's service-invocation fallback.
    Unknown,
}

/// The bytes a store name may have on the fast route: unreserved bytes, which need no
/// decoding. A table, because the chain of comparisons cost more than the rest of routing.
const PLAIN_STORE_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~');
        b += 1;
    }
    table
};

/// The hot targets, recognised without the general machinery: `POST /v1.0-alpha1/lock/<store>`
/// or `.../unlock/<store>` where the store name is made of bytes that need no decoding and is
/// not `.` or `..`, with an optional query free of control bytes. Anything else is `None` and
/// takes [`parse_target`] and [`Router::route`], which give the same route for these targets.
pub(crate) fn fast_lock_route(method: Method, target: &[u8]) -> Option<Route<'_>> {
    if method != Method::Post {
        return None;
    }
    let rest = target.strip_prefix(b"/v1.0-alpha1/")?;
    let (op, rest) = match rest.strip_prefix(b"lock/") {
        Some(rest) => (Operation::TryLock, rest),
        None => (Operation::Unlock, rest.strip_prefix(b"unlock/")?),
    };
    let plain = rest
        .iter()
        .position(|&b| !PLAIN_STORE_BYTE[usize::from(b)])
        .unwrap_or(rest.len());
    let (store, tail) = rest.split_at_checked(plain)?;
    if matches!(store, b"" | b"." | b"..") {
        return None;
    }
    match tail {
        [] => Some(Route::Lock { op, store }),
        [b'?', query @ ..] if !query.iter().any(|&b| b < 0x20 || b == 0x7f) => {
            Some(Route::Lock { op, store })
        }
        _ => None,
    }
}

/// Returns the raw (still escaped) path of a request target, or why Go rejects it.
pub(crate) fn parse_target(target: &[u8]) -> Result<&[u8], TargetError> {
    if target.is_empty() {
        return Err(TargetError::Empty);
    }
    if target.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(TargetError::ControlByte);
    }
    if target == b"*" {
        return Ok(target);
    }
    let (has_scheme, rest) = split_scheme(target)?;
    // Everything from the first `?` is the query, which no route reads.
    let rest = match rest.iter().position(|&b| b == b'?') {
        Some(query) => rest.get(..query).unwrap_or_default(),
        None => rest,
    };
    let path = if rest.first() == Some(&b'/') {
        if has_scheme && rest.starts_with(b"//") {
            // Absolute form: the authority runs to the next `/`, and the path is what follows.
            let authority = rest.get(2..).unwrap_or_default();
            match authority.iter().position(|&b| b == b'/') {
                Some(slash) => authority.get(slash..).unwrap_or_default(),
                None => b"",
            }
        } else {
            rest
        }
    } else if has_scheme {
        // A rootless path after a scheme is opaque to Go: the URL's path is empty.
        b""
    } else {
        return Err(TargetError::NotAbsolute);
    };
    if !escapes_are_valid(path) {
        return Err(TargetError::BadEscape);
    }
    Ok(path)
}

/// Go's `getScheme`: whether the target starts with `scheme:`, and what follows it.
fn split_scheme(target: &[u8]) -> Result<(bool, &[u8]), TargetError> {
    for (at, &byte) in target.iter().enumerate() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if at > 0 => {}
            b':' if at == 0 => return Err(TargetError::MissingScheme),
            b':' => return Ok((true, target.get(at + 1..).unwrap_or_default())),
            _ => return Ok((false, target)),
        }
    }
    Ok((false, target))
}

/// Whether every `%` is followed by two hex digits.
fn escapes_are_valid(path: &[u8]) -> bool {
    let mut rest = path;
    while let Some(percent) = rest.iter().position(|&b| b == b'%') {
        match rest.get(percent + 1..percent + 3) {
            Some([high, low]) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                rest = rest.get(percent + 3..).unwrap_or_default();
            }
            _ => return false,
        }
    }
    true
}

/// The value of one hex digit (the caller has checked it is one).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// Appends `escaped` with its `%xx` escapes decoded, and `+` as a space when `plus_is_space`
/// (query-component decoding; path decoding keeps `+`). Escapes must have been validated.
fn push_unescaped(out: &mut Vec<u8>, escaped: &[u8], plus_is_space: bool) {
    let mut bytes = escaped.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'%' => match (bytes.next(), bytes.next()) {
                (Some(&high), Some(&low)) => out.push(hex_value(high) << 4 | hex_value(low)),
                // Unreachable after validation; keep what is there rather than panic.
                (high, low) => {
                    out.push(b'%');
                    out.extend(high.into_iter().chain(low));
                }
            },
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(byte),
        }
    }
}

/// Upper-case hex digits, as Go's URL escaping writes them.
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Go's `shouldEscape(byte, encodePath)`.
fn escaped_in_paths(byte: u8) -> bool {
    !matches!(byte,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'-' | b'_' | b'.' | b'~'
        | b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@')
}

/// Go's `validEncoded(path, encodePath)`: whether Go keeps the raw path as the escaped path.
fn is_valid_encoding(path: &[u8]) -> bool {
    path.iter().all(|&b| {
        matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'['
                | b']'
                | b'%'
        ) || !escaped_in_paths(b)
    })
}

/// One worker's routing scratch space.
#[derive(Default)]
pub(crate) struct Router {
    /// The path decoded, then escaped again, when Go would not keep the raw escaping.
    reescaped: Vec<u8>,
    /// The segments of the cleaned path, as ranges of the escaped path.
    segments: Vec<Range<usize>>,
    /// The decoded store name, or the decoded path for the token exemption.
    decoded: Vec<u8>,
}

impl Router {
    /// Routes a request whose raw path came from [`parse_target`].
    pub(crate) fn route<'a>(&'a mut self, method: Method, raw_path: &'a [u8]) -> Route<'a> {
        let escaped: &[u8] = if is_valid_encoding(raw_path) {
            raw_path
        } else {
            self.decoded.clear();
            push_unescaped(&mut self.decoded, raw_path, false);
            self.reescaped.clear();
            for &byte in &self.decoded {
                if escaped_in_paths(byte) {
                    self.reescaped.push(b'%');
                    self.reescaped.push(HEX_UPPER[usize::from(byte >> 4)]);
                    self.reescaped.push(HEX_UPPER[usize::from(byte & 0xf)]);
                } else {
                    self.reescaped.push(byte);
                }
            }
            &self.reescaped
        };
        // `path.Clean` on a rooted path; an unrooted one (`*`, or the empty path of an
        // absolute URI) matches no route.
        if escaped.first() != Some(&b'/') {
            return Route::Unknown;
        }
        clean_segments(escaped, &mut self.segments);
        let segment = |n: usize| self.segments.get(n).and_then(|r| escaped.get(r.clone()));
        let route = match (self.segments.len(), segment(0), segment(1), segment(2)) {
            (2, Some(b"v1.0"), Some(b"healthz"), _) => Route::Healthz,
            (3, Some(b"v1.0"), Some(b"healthz"), Some(b"outbound")) => Route::HealthzOutbound,
            (2, Some(b"v1.0"), Some(b"metadata"), _) => Route::Metadata,
            (3, Some(b"v1.0-alpha1"), Some(b"lock"), Some(store)) => Route::Lock {
                op: Operation::TryLock,
                store,
            },
            (3, Some(b"v1.0-alpha1"), Some(b"unlock"), Some(store)) => Route::Lock {
                op: Operation::Unlock,
                store,
            },
            // dlockd's own routes: a segment after the store's, where daprd has nothing.
            (4, Some(b"v1.0-alpha1"), Some(b"lock"), Some(store)) => match segment(3) {
                Some(b"renew") => Route::Lock {
                    op: Operation::Renew,
                    store,
                },
                Some(b"holder") => Route::Lock {
                    op: Operation::Holder,
                    store,
                },
                Some(b"acquire") => Route::Lock {
                    op: Operation::Acquire,
                    store,
                },
                _ => Route::Unknown,
            },
            _ => Route::Unknown,
        };
        match (method, route) {
            (Method::Get, Route::Healthz | Route::HealthzOutbound | Route::Metadata) => route,
            (Method::Post, Route::Lock { op, store }) => {
                if store.iter().any(|&b| b == b'%' || b == b'+') {
                    self.decoded.clear();
                    push_unescaped(&mut self.decoded, store, true);
                    Route::Lock {
                        op,
                        store: &self.decoded,
                    }
                } else {
                    Route::Lock { op, store }
                }
            }
            _ => Route::Unknown,
        }
    }

    /// Whether daprd lets this request through without an API token: a GET whose decoded
    /// path, outer slashes trimmed, is `v1.0/healthz` or `v1.0/healthz/outbound`. The path is
    /// not cleaned first, so `/v1.0//healthz` needs the token.
    pub(crate) fn is_token_exempt(&mut self, method: Method, raw_path: &[u8]) -> bool {
        if method != Method::Get {
            return false;
        }
        self.decoded.clear();
        push_unescaped(&mut self.decoded, raw_path, false);
        let first = self.decoded.iter().position(|&b| b != b'/');
        let last = self.decoded.iter().rposition(|&b| b != b'/');
        let trimmed = match (first, last) {
            (Some(first), Some(last)) => self.decoded.get(first..=last).unwrap_or_default(),
            _ => b"",
        };
        trimmed == b"v1.0/healthz" || trimmed == b"v1.0/healthz/outbound"
    }
}

/// Go's `path.Clean` on a rooted path, giving the ranges of the surviving segments: empty
/// and `.` segments vanish, `..` removes the segment before it (never above the root).
fn clean_segments(path: &[u8], segments: &mut Vec<Range<usize>>) {
    segments.clear();
    let mut start = 0;
    while start <= path.len() {
        let end = path
            .get(start..)
            .and_then(|rest| rest.iter().position(|&b| b == b'/'))
            .map_or(path.len(), |slash| start + slash);
        match path.get(start..end) {
            None | Some(b"" | b".") => {}
            Some(b"..") => {
                segments.pop();
            }
            Some(_) => segments.push(start..end),
        }
        start = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(method: Method, target: &str) -> Result<Route<'static>, TargetError> {
        let raw = parse_target(target.as_bytes())?;
        let mut router = Router::default();
        Ok(match router.route(method, raw) {
            Route::Lock { op, store } => Route::Lock {
                op,
                store: Vec::leak(store.to_vec()),
            },
            Route::Healthz => Route::Healthz,
            Route::HealthzOutbound => Route::HealthzOutbound,
            Route::Metadata => Route::Metadata,
            Route::Unknown => Route::Unknown,
        })
    }

    fn lock(store: &'static str) -> Result<Route<'static>, TargetError> {
        Ok(Route::Lock {
            op: Operation::TryLock,
            store: store.as_bytes(),
        })
    }

    #[test]
    fn routes_match_the_contract_table() {
        // Protects the route table: only the five routes exist, each with its one method.
        use Method::{Get, Other, Post};
        let cases: &[(Method, &str, Result<Route<'static>, TargetError>)] = &[
            (Post, "/v1.0-alpha1/lock/store", lock("store")),
            (
                Post,
                "/v1.0-alpha1/unlock/store",
                Ok(Route::Lock {
                    op: Operation::Unlock,
                    store: b"store",
                }),
            ),
            (Get, "/v1.0/healthz", Ok(Route::Healthz)),
            (Get, "/v1.0/healthz/outbound", Ok(Route::HealthzOutbound)),
            (Get, "/v1.0/metadata", Ok(Route::Metadata)),
            (Get, "/v1.0-alpha1/lock/store", Ok(Route::Unknown)),
            (Other, "/v1.0-alpha1/lock/store", Ok(Route::Unknown)),
            (Post, "/v1.0/healthz", Ok(Route::Unknown)),
            (Other, "/v1.0/metadata", Ok(Route::Unknown)),
            (Post, "/v1.0-alpha/lock/store", Ok(Route::Unknown)),
            (Post, "/v1.0-beta1/lock/store", Ok(Route::Unknown)),
            (Post, "/v1.0/lock/store", Ok(Route::Unknown)),
            (Post, "/V1.0-alpha1/lock/store", Ok(Route::Unknown)),
            (Post, "/v1.0-alpha1/Lock/store", Ok(Route::Unknown)),
            (Post, "/v1.0-alpha1/lock", Ok(Route::Unknown)),
            (Post, "/v1.0-alpha1/lock/", Ok(Route::Unknown)),
            (Post, "/v1.0-alpha1/lock/a/b", Ok(Route::Unknown)),
            (Get, "/v1.0/healthz/other", Ok(Route::Unknown)),
            (Get, "/", Ok(Route::Unknown)),
            (Get, "*", Ok(Route::Unknown)),
        ];
        for (method, target, expected) in cases {
            assert_eq!(route_of(*method, target), *expected, "{method:?} {target}");
        }
    }

    #[test]
    fn paths_are_cleaned_like_go_path_clean() {
        // Protects daprd's clean-path middleware: `//`, `.`, `..` and trailing slashes.
        let cases: &[(&str, Result<Route<'static>, TargetError>)] = &[
            ("/v1.0-alpha1/lock/store/", lock("store")),
            ("//v1.0-alpha1//lock///store//", lock("store")),
            ("/v1.0-alpha1/./lock/store/.", lock("store")),
            ("/x/../v1.0-alpha1/lock/store", lock("store")),
            ("/../../v1.0-alpha1/lock/store", lock("store")),
            ("/v1.0-alpha1/lock/other/../store", lock("store")),
            ("/v1.0-alpha1/lock/store/..", Ok(Route::Unknown)),
            ("/v1.0-alpha1/lock/store?x=1", lock("store")),
            ("/v1.0-alpha1/lock/store?", lock("store")),
            ("/v1.0-alpha1/lock/st?ore", lock("st")),
            ("/v1.0-alpha1/lock/store?bad=%zz", lock("store")),
        ];
        for (target, expected) in cases {
            assert_eq!(route_of(Method::Post, target), *expected, "{target}");
        }
    }

    #[test]
    fn store_names_are_query_unescaped() {
        // Protects the store-name decoding: `%xx` and `+`, any byte, `%2F` kept inside the
        // name, and no decoding of the fixed segments.
        let cases: &[(&str, Result<Route<'static>, TargetError>)] = &[
            ("/v1.0-alpha1/lock/my%20store", lock("my store")),
            ("/v1.0-alpha1/lock/my+store", lock("my store")),
            ("/v1.0-alpha1/lock/a%2Bb", lock("a+b")),
            ("/v1.0-alpha1/lock/a%2fb", lock("a/b")),
            ("/v1.0-alpha1/lock/a%2F..%2Fb", lock("a/../b")),
            ("/v1.0-alpha1/lock/%2E", lock(".")),
            ("/v1.0-alpha1/lock/100%25", lock("100%")),
            ("/v1.0-alpha1/lock/%C3%A9t%C3%A9", lock("été")),
            (
                "/v1.0-alpha1/lock/St0re-_.~!$&'()*,;=:@",
                lock("St0re-_.~!$&'()*,;=:@"),
            ),
            ("/v1.0-alpha1/%6Cock/store", Ok(Route::Unknown)),
            ("/v1.0-alpha1%2Flock/store", Ok(Route::Unknown)),
        ];
        for (target, expected) in cases {
            assert_eq!(route_of(Method::Post, target), *expected, "{target}");
        }
        // A byte that is not UTF-8 is kept as is.
        assert_eq!(
            route_of(Method::Post, "/v1.0-alpha1/lock/a%FFb"),
            Ok(Route::Lock {
                op: Operation::TryLock,
                store: b"a\xffb"
            })
        );
    }

    #[test]
    fn paths_go_would_escape_again_are_routed_on_the_reescaped_form() {
        // Protects Go's EscapedPath: when the raw path holds a byte Go does not keep as is,
        // routing uses the decoded path escaped again, so an encoded `/` splits the segment
        // and an encoded `+` turns into a space like a literal one.
        let cases: &[(&str, Result<Route<'static>, TargetError>)] = &[
            ("/v1.0-alpha1/lock/a\"b", lock("a\"b")),
            ("/v1.0-alpha1/lock/a{b}", lock("a{b}")),
            ("/v1.0-alpha1/lock/x%2Fy{", Ok(Route::Unknown)),
            ("/v1.0-alpha1/lock/a%2Bb{", lock("a b{")),
            ("/v1.0-alpha1/lock/%7B%22", lock("{\"")),
            ("/v1.0-alpha1/%6Cock/store|", lock("store|")),
            ("/v1.0-alpha1/lock/%2E%2E/v1.0|", Ok(Route::Unknown)),
        ];
        for (target, expected) in cases {
            assert_eq!(route_of(Method::Post, target), *expected, "{target}");
        }
        let raw = parse_target("/v1.0-alpha1/lock/\u{e9}".as_bytes()).expect("valid target");
        assert_eq!(
            Router::default().route(Method::Post, raw),
            Route::Lock {
                op: Operation::TryLock,
                store: "\u{e9}".as_bytes()
            }
        );
    }

    #[test]
    fn targets_go_cannot_parse_are_rejected() {
        // Protects the 400-and-close cases: what Go's url.ParseRequestURI refuses.
        let cases: &[(&[u8], TargetError)] = &[
            (b"", TargetError::Empty),
            (b"/v1.0-alpha1/lock/%zz", TargetError::BadEscape),
            (b"/v1.0-alpha1/lock/%2", TargetError::BadEscape),
            (b"/v1.0-alpha1/lock/a%", TargetError::BadEscape),
            (b"/v1.0/healthz%", TargetError::BadEscape),
            (b"/v1.0/%g0healthz", TargetError::BadEscape),
            (b"/a\x01b", TargetError::ControlByte),
            (b"/a\x7fb", TargetError::ControlByte),
            (b"/a\tb", TargetError::ControlByte),
            (b"v1.0/healthz", TargetError::NotAbsolute),
            (b"1http://x/", TargetError::NotAbsolute),
            (b"?x", TargetError::NotAbsolute),
            (b":/v1.0/healthz", TargetError::MissingScheme),
            (b"http://host/v1.0/%zz", TargetError::BadEscape),
        ];
        for (target, expected) in cases {
            assert_eq!(
                parse_target(target),
                Err(*expected),
                "{:?}",
                String::from_utf8_lossy(target)
            );
        }
    }

    #[test]
    fn absolute_form_routes_on_its_path() {
        // Protects absolute-form targets: Go routes them on the path after the authority.
        let cases: &[(Method, &str, Result<Route<'static>, TargetError>)] = &[
            (
                Method::Get,
                "http://localhost:3500/v1.0/healthz",
                Ok(Route::Healthz),
            ),
            (Method::Post, "HTTP://h/v1.0-alpha1/lock/s?q", lock("s")),
            (Method::Get, "http://localhost:3500", Ok(Route::Unknown)),
            (Method::Get, "mailto:x@y", Ok(Route::Unknown)),
            (Method::Get, "a:/v1.0/healthz", Ok(Route::Healthz)),
        ];
        for (method, target, expected) in cases {
            assert_eq!(route_of(*method, target), *expected, "{target}");
        }
    }

    #[test]
    fn fast_path_agrees_with_the_general_path() {
        // Protects the shortcut for the hot targets: whenever it answers, the general path
        // gives the same route, and it declines everything it does not fully understand.
        let targets = [
            "/v1.0-alpha1/lock/lockstore",
            "/v1.0-alpha1/unlock/lockstore",
            "/v1.0-alpha1/lock/a.b-c_d~9",
            "/v1.0-alpha1/lock/...",
            "/v1.0-alpha1/lock/s?x=1&y=%zz",
            "/v1.0-alpha1/lock/s?",
            "/v1.0-alpha1/lock/s?a\x01b",
            "/v1.0-alpha1/lock/.",
            "/v1.0-alpha1/lock/..",
            "/v1.0-alpha1/lock/",
            "/v1.0-alpha1/lock/s/",
            "/v1.0-alpha1/lock/s%20t",
            "/v1.0-alpha1/lock/s+t",
            "/v1.0-alpha1/lock/s/../t",
            "/v1.0-alpha1/lock/s\"",
            "/v1.0-alpha1/lock/s#x",
            "/v1.0-alpha1/lockx/s",
            "/v1.0-alpha1/unlock",
            "//v1.0-alpha1/lock/s",
        ];
        let mut router = Router::default();
        let mut answered = 0;
        for target in targets {
            for method in [Method::Post, Method::Get] {
                let Some(fast) = fast_lock_route(method, target.as_bytes()) else {
                    continue;
                };
                answered += 1;
                let raw = parse_target(target.as_bytes()).expect("fast targets parse");
                assert_eq!(router.route(method, raw), fast, "{target}");
            }
        }
        assert_eq!(answered, 6);
        for declined in [
            "/v1.0-alpha1/lock/s?a\x01b",
            "/v1.0-alpha1/lock/.",
            "/v1.0-alpha1/lock/s/",
        ] {
            assert_eq!(
                fast_lock_route(Method::Post, declined.as_bytes()),
                None,
                "{declined}"
            );
        }
    }

    #[test]
    fn token_exemption_follows_daprd_middleware() {
        // Protects the exempt set: only GET on the two health paths, judged on the decoded,
        // uncleaned path with outer slashes trimmed.
        let cases: &[(Method, &str, bool)] = &[
            (Method::Get, "/v1.0/healthz", true),
            (Method::Get, "/v1.0/healthz/outbound", true),
            (Method::Get, "/v1.0/healthz/", true),
            (Method::Get, "//v1.0/healthz//", true),
            (Method::Get, "/v1.0/healthz?x=1", true),
            (Method::Get, "/v1.0/%68ealthz", true),
            (Method::Get, "http://h/v1.0/healthz", true),
            (Method::Post, "/v1.0/healthz", false),
            (Method::Other, "/v1.0/healthz", false),
            (Method::Get, "/v1.0//healthz", false),
            (Method::Get, "/v1.0/./healthz", false),
            (Method::Get, "/v1.0/metadata", false),
            (Method::Get, "/v1.0/healthzz", false),
            (Method::Get, "/", false),
            (Method::Get, "*", false),
        ];
        let mut router = Router::default();
        for (method, target, expected) in cases {
            let raw = parse_target(target.as_bytes()).expect("valid target");
            assert_eq!(
                router.is_token_exempt(*method, raw),
                *expected,
                "{method:?} {target}"
            );
        }
    }
}
