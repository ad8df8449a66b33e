//! The lock request body and the whole API step on the hot path.
//!
//! Run with `cargo bench --bench body`. Compares this crate's body decoder (buffers reused
//! across iterations) on an 81-byte body of the canonical shape, as the server runs it (the
//! fast path decides it) and by its full simd-json decoder alone, with serde_json decoding
//! the same body into a derived struct; measures the decoder on the bodies the load generator
//! and the Dapr SDKs send (a 36-byte id), then `Api::handle` for a complete try-lock request.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dlockd::api::fuzzing::BodyDecoder;
use dlockd::api::{Api, ApiConfig, Outcome};
use dlockd::http::Method;
use serde::Deserialize;

/// A typical try-lock body: 81 bytes.
const BODY: &[u8] =
    br#"{"resourceId":"order-12345","lockOwner":"worker-7f3a9c1e4b","expiryInSeconds":60}"#;

/// The try-lock body the load generator sends: a 36-byte uuid-like id, as SDKs send.
const SDK_TRY_LOCK: &[u8] = br#"{"resourceId":"00000000-0000-0000-0000-0000000012ab","lockOwner":"owner-7","expiryInSeconds":10}"#;
/// The unlock body the load generator sends.
const SDK_UNLOCK: &[u8] =
    br#"{"resourceId":"00000000-0000-0000-0000-0000000012ab","lockOwner":"owner-7"}"#;

/// The same message as serde would decode it (JSON names only, no protojson rules).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct TryLockBody<'a> {
    #[serde(borrow, default)]
    resource_id: Cow<'a, str>,
    #[serde(borrow, default)]
    lock_owner: Cow<'a, str>,
    #[serde(borrow, default)]
    store_name: Cow<'a, str>,
    #[serde(default)]
    expiry_in_seconds: i32,
}

fn decode(c: &mut Criterion) {
    assert_eq!(BODY.len(), 81);
    let mut group = c.benchmark_group("body_81_bytes");
    group.throughput(Throughput::Bytes(BODY.len() as u64));

    let mut decoder = BodyDecoder::new();
    let fields = |f: Option<(&[u8], &[u8], i32)>| f.map(|(r, o, e)| (r.len(), o.len(), e));
    assert_eq!(fields(decoder.decode_try_lock(BODY)), Some((11, 17, 60)));
    assert_eq!(
        fields(decoder.decode_full_try_lock(BODY)),
        Some((11, 17, 60))
    );
    // What the server runs: this body has the canonical shape, so the fast path decides it.
    group.bench_function("dlockd_fast_path_reused", |b| {
        b.iter(|| black_box(fields(decoder.decode_try_lock(black_box(BODY)))))
    });
    // The full decoder (simd-json's parse and the protojson rules), which decides every body
    // the fast path declines.
    group.bench_function("dlockd_simd_json_reused", |b| {
        b.iter(|| black_box(fields(decoder.decode_full_try_lock(black_box(BODY)))))
    });

    group.bench_function("serde_json_derived", |b| {
        b.iter(|| {
            let parsed: TryLockBody<'_> =
                serde_json::from_slice(black_box(BODY)).expect("the bench body is valid");
            black_box(parsed.resource_id.len() + parsed.lock_owner.len());
            black_box(parsed.expiry_in_seconds)
        })
    });
    group.finish();
}

/// The decoder on the canonical bodies of 36-byte ids (the fast path: `canonical`).
fn decode_sdk_bodies(c: &mut Criterion) {
    let mut group = c.benchmark_group("body_sdk_36_byte_id");
    let mut decoder = BodyDecoder::new();
    assert_eq!(
        decoder
            .decode_try_lock(SDK_TRY_LOCK)
            .map(|f| (f.0.len(), f.1.len(), f.2)),
        Some((36, 7, 10))
    );
    assert_eq!(
        decoder
            .decode_unlock(SDK_UNLOCK)
            .map(|f| (f.0.len(), f.1.len())),
        Some((36, 7))
    );
    group.bench_function("try_lock", |b| {
        b.iter(|| {
            let fields = decoder.decode_try_lock(black_box(SDK_TRY_LOCK));
            black_box(
                fields.map(|(resource, owner, expiry_s)| (resource.len(), owner.len(), expiry_s)),
            )
        })
    });
    group.bench_function("unlock", |b| {
        b.iter(|| {
            let fields = decoder.decode_unlock(black_box(SDK_UNLOCK));
            black_box(fields.map(|(resource, owner)| (resource.len(), owner.len())))
        })
    });
    group.finish();
}

fn handle(c: &mut Criterion) {
    let mut api = Api::new(ApiConfig {
        stores: vec!["lockstore".to_owned()],
        app_id: "bench".to_owned(),
        api_token: Some(b"0123456789abcdef0123456789abcdef".to_vec()),
        max_id_bytes: 1024,
        max_expiry_s: None,
        max_wait_ms: 60_000,
        store_types: Vec::new(),
    });
    let target: &[u8] = b"/v1.0-alpha1/lock/lockstore";
    let token: &[u8] = b"0123456789abcdef0123456789abcdef";
    assert!(matches!(
        api.handle(Method::Post, target, Some(token), BODY),
        Outcome::Lock(_)
    ));
    c.bench_function("api_handle_try_lock", |b| {
        b.iter(|| {
            match api.handle(
                Method::Post,
                black_box(target),
                Some(black_box(token)),
                black_box(BODY),
            ) {
                Outcome::Lock(op) => black_box(op.resource.len()),
                Outcome::Respond(response) => black_box(response.status.into()),
            }
        })
    });
}

criterion_group!(benches, decode, decode_sdk_bodies, handle);
criterion_main!(benches);
