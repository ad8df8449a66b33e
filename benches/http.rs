//! Benchmarks of the HTTP layer's hot path: framing a Dapr TryLock request as an SDK sends
//! it, alone and 16 pipelined in one buffer, and writing a 16-byte answer.
//!
//! Run: `cargo bench --bench http`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dlockd::http::{write_response, Connection, Frame, Framer, Limits};

const LIMITS: Limits = Limits {
    max_header_bytes: 8 * 1024,
    max_body_bytes: 64 * 1024,
};

/// An 81-byte TryLock body.
const LOCK_BODY: &[u8] =
    br#"{"resourceId":"my-resource-12","lockOwner":"owner-5f1e9a2b","expiryInSeconds":60}"#;

/// The head the JS SDK's HTTP client sends with a TryLock (undici's default headers).
const LOCK_HEAD: &[u8] = b"POST /v1.0-alpha1/lock/lockstore HTTP/1.1\r\n\
host: 127.0.0.1:3500\r\n\
connection: keep-alive\r\n\
content-type: application/json\r\n\
user-agent: dapr-sdk-js/v3.5.2 http/1\r\n\
dapr-api-token: 6d2a1f0c9b8e4d7a\r\n\
accept: */*\r\n\
accept-language: *\r\n\
sec-fetch-mode: cors\r\n\
accept-encoding: gzip, deflate\r\n\
content-length: 81\r\n\
\r\n";

fn lock_request() -> Vec<u8> {
    assert_eq!(LOCK_BODY.len(), 81);
    let mut r = LOCK_HEAD.to_vec();
    r.extend_from_slice(LOCK_BODY);
    r
}

/// Frames every request in `buf`, returning the bytes consumed.
fn frame_all(framer: &mut Framer, buf: &[u8]) -> usize {
    let mut offset = 0;
    while let Ok(Frame::Complete(req)) = framer.frame(&buf[offset..]) {
        offset += req.consumed;
    }
    offset
}

fn framing(c: &mut Criterion) {
    let one = lock_request();
    let pipelined = one.repeat(16);
    let mut framer = Framer::new(LIMITS);
    assert_eq!(frame_all(&mut framer, &one), one.len());
    assert_eq!(frame_all(&mut framer, &pipelined), pipelined.len());

    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lock_request", |b| {
        b.iter(|| frame_all(&mut framer, black_box(&one)))
    });
    group.throughput(Throughput::Elements(16));
    group.bench_function("lock_request_x16_pipelined", |b| {
        b.iter(|| frame_all(&mut framer, black_box(&pipelined)))
    });
    group.finish();
}

fn writing(c: &mut Criterion) {
    let body = br#"{"success":true}"#;
    assert_eq!(body.len(), 16);
    let mut out = Vec::with_capacity(256);
    c.bench_function("write_response_16_bytes", |b| {
        b.iter(|| {
            out.clear();
            write_response(
                &mut out,
                black_box(200),
                "application/json",
                black_box(body),
                Connection::KeepAlive11,
            );
            out.len()
        })
    });
}

criterion_group!(benches, framing, writing);
criterion_main!(benches);
