//! The lock request body and the whole API step on the hot path.
//!
//! Run with `cargo bench --bench body`. Compares this crate's protojson decoder (simd-json,
//! buffers reused across iterations) with serde_json decoding the same 81-byte body into a
//! derived struct, then measures `Api::handle` for a complete try-lock request.

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
    assert!(decoder.decode_try_lock(BODY).is_some());
    group.bench_function("protojson_simd_json_reused", |b| {
        b.iter(|| {
            let fields = decoder.decode_try_lock(black_box(BODY));
            black_box(
                fields.map(|(resource, owner, expiry_s)| (resource.len(), owner.len(), expiry_s)),
            )
        })
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

fn handle(c: &mut Criterion) {
    let mut api = Api::new(ApiConfig {
        stores: vec!["lockstore".to_owned()],
        app_id: "bench".to_owned(),
        api_token: Some(b"0123456789abcdef0123456789abcdef".to_vec()),
        max_id_bytes: 1024,
        max_expiry_s: None,
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

criterion_group!(benches, decode, handle);
criterion_main!(benches);
