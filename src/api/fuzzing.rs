//! Entry points for fuzz targets and benchmarks. Not a stable API.
//!
//! Each function checks the layer's promises on arbitrary input and panics only when one is
//! broken, which is what a fuzzer looks for.

use crate::http::Method;

use super::body;
use super::fast_body;
use super::{Api, ApiConfig, OpKind, Operation, Outcome};

/// The body decoder of one worker, for benchmarks and fuzzing.
#[derive(Default)]
pub struct BodyDecoder(body::BodyDecoder);

impl BodyDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes a try-lock body into `(resourceId, lockOwner, expiryInSeconds)`, or `None`
    /// when it is malformed.
    pub fn decode_try_lock(&mut self, body: &[u8]) -> Option<(&[u8], &[u8], i32)> {
        let fields = self.0.decode(Operation::TryLock, body).ok()?;
        Some((fields.resource, fields.owner, fields.expiry_s))
    }

    /// Decodes an unlock body into `(resourceId, lockOwner)`, or `None` when it is malformed.
    pub fn decode_unlock(&mut self, body: &[u8]) -> Option<(&[u8], &[u8])> {
        let fields = self.0.decode(Operation::Unlock, body).ok()?;
        Some((fields.resource, fields.owner))
    }
}

/// Decodes arbitrary bytes as both bodies; checks that a decoded body is valid JSON text
/// whose strings are UTF-8, and that whatever the fast path accepts, the full decoder
/// accepts with the same fields.
pub fn decode_body(data: &[u8]) {
    for op in [Operation::TryLock, Operation::Unlock] {
        let mut fast_fields = Vec::new();
        if let Some((resource_len, expiry_s)) = fast_body::decode(op, data, &mut fast_fields) {
            let mut full = body::BodyDecoder::default();
            let fields = full
                .decode_full(op, data)
                .expect("the full decoder accepts what the fast path accepts");
            let (resource, owner) = fast_fields.split_at(resource_len);
            assert_eq!((fields.resource, fields.owner), (resource, owner));
            assert_eq!(fields.expiry_s, expiry_s);
        }
    }
    let mut decoder = BodyDecoder::new();
    if let Some((resource, owner, _)) = decoder.decode_try_lock(data) {
        assert!(std::str::from_utf8(resource).is_ok() && std::str::from_utf8(owner).is_ok());
    }
    if let Some((resource, owner)) = decoder.decode_unlock(data) {
        assert!(std::str::from_utf8(resource).is_ok() && std::str::from_utf8(owner).is_ok());
    }
}

/// The longest id the fuzzed API accepts.
const FUZZ_MAX_ID_BYTES: usize = 64;

/// Runs arbitrary bytes through [`Api::handle`]. The first byte picks the method and whether
/// a token is sent; then come the target, the token and the body, separated by `\n`.
pub fn handle(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let target = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let method = match selector % 3 {
        0 => Method::Get,
        1 => Method::Post,
        _ => Method::Other,
    };
    let with_token = selector & 4 != 0;
    let token = (selector & 8 != 0).then_some(token);
    // One Api per token setting for the whole run, as a worker keeps one: `Api::new` keeps
    // its metadata answer for the life of the process, so one per input would leak.
    thread_local! {
        static APIS: std::cell::RefCell<[Api; 2]> = std::cell::RefCell::new([false, true].map(|with_token| {
            Api::new(ApiConfig {
                stores: vec!["s".to_owned(), "lockstore".to_owned()],
                app_id: "fuzz".to_owned(),
                api_token: with_token.then(|| b"secret".to_vec()),
                max_id_bytes: FUZZ_MAX_ID_BYTES,
            })
        }));
    }
    APIS.with_borrow_mut(|apis| {
        check_outcome(
            &mut apis[usize::from(with_token)],
            method,
            target,
            token,
            body,
        )
    });
}

fn check_outcome(api: &mut Api, method: Method, target: &[u8], token: Option<&[u8]>, body: &[u8]) {
    let store_count = api.stores().len();
    match api.handle(method, target, token, body) {
        Outcome::Respond(response) => {
            assert!((200..600).contains(&response.status));
            assert!(
                response.close
                    == (response.status == 400 && response.content_type.starts_with("text/"))
            );
        }
        Outcome::Lock(op) => {
            assert!(usize::from(op.store.0) < store_count);
            assert!(!op.resource.is_empty() && op.resource.len() <= FUZZ_MAX_ID_BYTES);
            assert!(!op.owner.is_empty() && op.owner.len() <= FUZZ_MAX_ID_BYTES);
            assert!(!op.resource.windows(2).any(|pair| pair == b"||"));
            if let OpKind::TryLock { expiry_s } = op.kind {
                assert!(expiry_s >= 1);
            }
        }
    }
}
