//! Unit tests of the fast path for heads (`fast_head`) against httparse: where the fast
//! path takes a head, the framing decides it exactly as with httparse.

use super::*;
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    max_header_bytes: 8192,
    max_body_bytes: 65536,
};

// The heads real clients send are taken by the fast path and decided as httparse does,
// including the ones the framing refuses.
#[test]
fn client_heads_take_the_fast_path_and_agree_with_httparse() {
    let heads: &[&[u8]] = &[
        b"POST /v1.0-alpha1/lock/lockstore HTTP/1.1\r\nHost: 127.0.0.1:3500\r\nContent-Type: application/json\r\nContent-Length: 95\r\n\r\n",
        b"POST /v1.0-alpha1/unlock/lockstore HTTP/1.1\r\nHost: localhost:3500\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: 48\r\n\r\n{}",
        b"POST /v1.0-alpha1/lock/s?x=1 HTTP/1.1\r\nhost: h\r\ndapr-api-token: secret\r\ncontent-length: 0\r\nconnection: keep-alive, close\r\n\r\n",
        b"GET /v1.0/healthz/outbound HTTP/1.1\r\nHost: h\r\nUser-Agent: node-fetch\r\nAccept-Encoding: gzip,deflate\r\n\r\n",
        b"GET /v1.0/metadata HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET http://h:1/v1.0/metadata HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost:h\r\nX-Empty:\r\nX-Spaces:   \r\nX-Trail: a b  \r\n\r\n",
        // Refused by the framing, the same way on both paths.
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
        b"POST /x HTTP/1.1\r\n\r\n",
        b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n",
    ];
    for head in heads {
        assert!(
            check_fast_head(head, &LIMITS),
            "{}",
            String::from_utf8_lossy(head)
        );
    }
}

// What the fast path does not fully understand it leaves to httparse.
#[test]
fn unusual_heads_are_declined() {
    let heads: &[&[u8]] = &[
        b"PUT /x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\r\nPOST /x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /x HTTP/1.1\nHost: h\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\n\n",
        b"POST /x HTTP/1.1\r\nHost: a\tb\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n",
        b"POST /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost : h\r\n\r\n",
        b"POST /x HTTP/1.1\r\n Host: h\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        b"POST /x HTTP/2.0\r\nHost: h\r\n\r\n",
        b"POST  /x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\n\r",
        b"POST /x HTTP/1.1\r\nHo",
        b"POST /x HTTP/1.1\r\nHost: h\r\nX: \x7f\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
    ];
    for head in heads {
        assert!(
            !check_fast_head(head, &LIMITS),
            "{}",
            String::from_utf8_lossy(head)
        );
    }
    let many: Vec<u8> = [
        &b"GET / HTTP/1.1\r\nHost: h\r\n"[..],
        &b"X: y\r\n".repeat(MAX_HEADERS),
        b"\r\n",
    ]
    .concat();
    assert!(
        !check_fast_head(&many, &LIMITS),
        "more than MAX_HEADERS headers"
    );
    let head = b"POST /x HTTP/1.1\r\nHost: h\r\n\r\n";
    let exact = Limits {
        max_header_bytes: head.len(),
        ..LIMITS
    };
    assert!(check_fast_head(head, &exact), "a head of exactly the limit");
    let under = Limits {
        max_header_bytes: head.len() - 1,
        ..LIMITS
    };
    assert!(!check_fast_head(head, &under), "a head over the limit");
}

// Heads built from the pieces of the grammar, with bytes of every kind mixed in: where
// the fast path answers, httparse answers the same (`check_fast_head` asserts it).
#[test]
fn random_heads_agree_with_httparse() {
    let piece = prop_oneof![
        Just(b"POST ".to_vec()),
        Just(b"GET ".to_vec()),
        Just(b"/v1.0-alpha1/lock/s".to_vec()),
        Just(b" HTTP/1.1\r\n".to_vec()),
        Just(b" HTTP/1.0\r\n".to_vec()),
        Just(b"Host: h\r\n".to_vec()),
        Just(b"Content-Length: 5\r\n".to_vec()),
        Just(b"Content-Length: 05\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Connection: close\r\n".to_vec()),
        Just(b"dapr-api-token: t\r\n".to_vec()),
        Just(b"Expect: 100-continue\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b": ".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..4),
        proptest::collection::vec(
            prop_oneof![
                Just(b' '),
                Just(b'\t'),
                Just(b'\r'),
                Just(b'\n'),
                Just(b':'),
                Just(0x80u8),
                Just(b'a')
            ],
            0..4
        ),
    ];
    let config = ProptestConfig {
        cases: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let taken = std::cell::Cell::new(0u32);
    proptest!(config, |(pieces in proptest::collection::vec(piece, 0..12))| {
        let head = pieces.concat();
        let mut n = u32::from(check_fast_head(&head, &LIMITS));
        // The same head made valid at the front: the usual shape, then the pieces.
        let valid = [&b"POST /x HTTP/1.1\r\nHost: h\r\n"[..], &head, b"\r\n\r\n"].concat();
        n += u32::from(check_fast_head(&valid, &LIMITS));
        taken.set(taken.get() + n);
    });
    // Not vacuous: a good share of the heads went through the fast path.
    assert!(
        taken.get() > 250,
        "only {} heads took the fast path",
        taken.get()
    );
}
