//! Entry points for fuzz targets and benchmarks. Not a stable API.
//!
//! Each function checks the layer's promises on arbitrary input and panics only when one is
//! broken, which is what a fuzzer looks for.

use std::sync::{Mutex, OnceLock, PoisonError};

use crate::http::Method;

use super::body;
use super::fast_body;
use super::op::{LockOp, OpKind, Operation, Outcome};
use super::response::Response;
use super::{Api, ApiConfig};

/// Which request message a body is decoded as (the crate's own `Operation`, made public for
/// the fuzz targets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    TryLock,
    Unlock,
}

impl BodyKind {
    fn operation(self) -> Operation {
        match self {
            BodyKind::TryLock => Operation::TryLock,
            BodyKind::Unlock => Operation::Unlock,
        }
    }
}

/// The fields a decoder took from a body, copied out of its buffers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockBody {
    pub resource: Vec<u8>,
    pub owner: Vec<u8>,
    /// Always 0 for an unlock.
    pub expiry_s: i32,
}

impl LockBody {
    fn copied(fields: body::LockFields<'_>) -> Self {
        LockBody {
            resource: fields.resource.to_vec(),
            owner: fields.owner.to_vec(),
            expiry_s: fields.expiry_s,
        }
    }
}

/// The body decoder of one worker, for benchmarks and fuzzing.
#[derive(Default)]
pub struct BodyDecoder(body::BodyDecoder);

impl BodyDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes a try-lock body into `(resourceId, lockOwner, expiryInSeconds)`, or `None`
    /// when it is malformed.
    pub fn decode_try_lock<'a>(&'a mut self, body: &'a [u8]) -> Option<(&'a [u8], &'a [u8], i32)> {
        let fields = self.0.decode(Operation::TryLock, body).ok()?;
        Some((fields.resource, fields.owner, fields.expiry_s))
    }

    /// [`decode_try_lock`](Self::decode_try_lock) by the full decoder alone (simd-json and the
    /// protojson rules), never the fast path: what a body the fast path declines costs.
    pub fn decode_full_try_lock<'a>(
        &'a mut self,
        body: &'a [u8],
    ) -> Option<(&'a [u8], &'a [u8], i32)> {
        let fields = self.0.decode_full(Operation::TryLock, body).ok()?;
        Some((fields.resource, fields.owner, fields.expiry_s))
    }

    /// Decodes an unlock body into `(resourceId, lockOwner)`, or `None` when it is malformed.
    pub fn decode_unlock<'a>(&'a mut self, body: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let fields = self.0.decode(Operation::Unlock, body).ok()?;
        Some((fields.resource, fields.owner))
    }

    /// What the server decodes: the fast path, else the full decoder. `None`: malformed.
    pub fn decode(&mut self, kind: BodyKind, body: &[u8]) -> Option<LockBody> {
        let fields = self.0.decode(kind.operation(), body).ok()?;
        Some(LockBody::copied(fields))
    }

    /// The full decoder alone (simd-json and the protojson rules). `None`: malformed.
    pub fn decode_full(&mut self, kind: BodyKind, body: &[u8]) -> Option<LockBody> {
        let fields = self.0.decode_full(kind.operation(), body).ok()?;
        Some(LockBody::copied(fields))
    }
}

/// The fast path alone: `None` when it declines, which is not a verdict on the body.
pub fn decode_fast(kind: BodyKind, body: &[u8]) -> Option<LockBody> {
    let (resource, owner, expiry_s) = fast_body::fields_of(kind.operation(), body)?;
    Some(LockBody {
        resource: resource.to_vec(),
        owner: owner.to_vec(),
        expiry_s,
    })
}

/// Decodes arbitrary bytes as both bodies; see [`decode_body_as`].
pub fn decode_body(data: &[u8]) {
    decode_body_as(BodyKind::TryLock, data);
    decode_body_as(BodyKind::Unlock, data);
}

/// The library's half of the `lock_body` and `unlock_body` fuzz targets: whatever the fast
/// path accepts, the full decoder accepts with the same fields; the server's decoder (fast
/// path first) answers as the full decoder does; decoded strings are UTF-8. Whether the
/// answer is the protojson one is checked against the fuzz crate's reference decoder.
pub fn decode_body_as(kind: BodyKind, data: &[u8]) {
    let mut decoder = BodyDecoder::new();
    let full = decoder.decode_full(kind, data);
    if let Some(fast) = decode_fast(kind, data) {
        assert_eq!(
            full.as_ref(),
            Some(&fast),
            "the full decoder accepts what the fast path accepts, with the same fields"
        );
    }
    assert_eq!(
        decoder.decode(kind, data),
        full,
        "fast path then full decoder"
    );
    if let Some(fields) = &full {
        assert!(std::str::from_utf8(&fields.resource).is_ok());
        assert!(std::str::from_utf8(&fields.owner).is_ok());
        assert!(kind == BodyKind::TryLock || fields.expiry_s == 0);
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
    // its metadata answer for the life of the process, so one per input would leak. A static
    // rather than a thread-local: a thread-local's destructor would drop the Apis at exit and
    // leave their metadata unreachable, which LeakSanitizer reports as a leak.
    static APIS: OnceLock<Mutex<[Api; 2]>> = OnceLock::new();
    let apis = APIS.get_or_init(|| {
        Mutex::new([false, true].map(|with_token| {
            Api::new(ApiConfig {
                stores: vec!["s".to_owned(), "lockstore".to_owned()],
                app_id: "fuzz".to_owned(),
                api_token: with_token.then(|| b"secret".to_vec()),
                max_id_bytes: FUZZ_MAX_ID_BYTES,
                max_expiry_s: None,
                max_wait_ms: 60_000,
                store_types: Vec::new(),
            })
        }))
    });
    let mut apis = apis.lock().unwrap_or_else(PoisonError::into_inner);
    check_outcome(
        &mut apis[usize::from(with_token)],
        method,
        target,
        token,
        body,
    );
}

fn check_outcome(api: &mut Api, method: Method, target: &[u8], token: Option<&[u8]>, body: &[u8]) {
    let store_count = api.stores().len();
    match api.handle(method, target, token, body) {
        Outcome::Respond(response) => check_response(&response),
        Outcome::Lock(op) => check_lock_op(&op, store_count, FUZZ_MAX_ID_BYTES),
    }
}

/// The promises of every answer [`Api::handle`] gives: a real status, and the connection
/// closed exactly after the plain-text `400` that Go's `net/http` closes on.
pub fn check_response(response: &Response) {
    assert!((200..600).contains(&response.status), "{response:?}");
    assert!(
        response.close == (response.status == 400 && response.content_type.starts_with("text/")),
        "{response:?}"
    );
}

/// The promises of every [`LockOp`]: a configured store, ids that are non-empty, within
/// `max_id_bytes` and (the resource) without `||`, and a try-lock of at least one second.
pub fn check_lock_op(op: &LockOp<'_>, store_count: usize, max_id_bytes: usize) {
    assert!(usize::from(op.store.0) < store_count, "{op:?}");
    assert!(
        !op.resource.is_empty() && op.resource.len() <= max_id_bytes,
        "{op:?}"
    );
    // A holder query may leave the owner out.
    assert!(
        (!op.owner.is_empty() || op.kind == OpKind::Holder) && op.owner.len() <= max_id_bytes,
        "{op:?}"
    );
    assert!(!op.resource.windows(2).any(|pair| pair == b"||"), "{op:?}");
    if let OpKind::TryLock { expiry_s } | OpKind::Renew { expiry_s } = op.kind {
        assert!(expiry_s >= 1, "{op:?}");
    }
}
