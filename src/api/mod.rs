//! The Dapr routes: from an already-framed HTTP request to either a complete answer or a
//! validated lock operation for the shards, and from a shard's decision to the exact answer.
//!
//! This layer never touches sockets, threads or the clock. It reproduces what daprd answers,
//! byte for byte (`docs/dapr-lock-contract.md`), in the order daprd's Go stack decides:
//! 1. the request target must parse as Go's `net/http` parses it, or the answer is a plain
//!    `400 Bad Request` that closes the connection (`route.rs`);
//! 2. with an API token configured, every request but `GET /v1.0/healthz` and
//!    `GET /v1.0/healthz/outbound` must carry it (`401`), even on a path that does not exist;
//! 3. routing, after Go's path clean-up, with the store name percent-decoded (`404
//!    ERR_DIRECT_INVOKE` for anything else);
//! 4. the body, decoded with protojson's rules (`body.rs`);
//! 5. validation in daprd's order, with its messages (`error.rs`); at `--log-level debug`, a
//!    refusal an unknown key may explain also names the keys the body carried
//!    (`explain.rs`).
//!
//! What this layer hands to the shards and takes back from them, a [`LockOp`] and an
//! [`Answer`], is in `op.rs`, with the refusals the gRPC face gives ([`Rejection`]).
//!
//! Invariants:
//! - No request bytes make anything here panic: every bad input is an answer.
//! - A [`LockOp`] always has a known store, a non-empty `resource` and `owner` of at most
//!   `max_id_bytes` bytes each, a `resource` without `||`, and for a try-lock an expiry of at
//!   least one second.
//! - The common answers (`{"success":…}`, `{"status":…}`, the health checks, metadata) and the
//!   lock path allocate nothing once the per-worker buffers have grown to the largest request
//!   seen. Error answers allocate their body.
//! - The API token is compared in constant time for a given length, and never logged or
//!   echoed.

mod body;
mod error;
mod explain;
mod fast_body;
#[doc(hidden)]
pub mod fuzzing;
mod json;
mod number;
mod op;
mod response;
mod route;

pub use op::{Answer, Holding, LockOp, OpKind, Operation, Outcome, RejectCode, Rejection};
pub use response::{Response, ResponseBody};

use crate::http::Method;
use crate::lease::{LeaseError, StoreId, UnlockStatus};

use body::{BodyDecoder, LockFields};
use error::ApiError;
use route::{Route, Router};

/// The most lock stores there can be: a [`StoreId`] is a `u16`.
pub const MAX_STORES: usize = u16::MAX as usize + 1;

/// What metadata reports as a store's component type when none is given.
const STORE_TYPE: &str = "lock.in-memory";

/// What the API needs to know, fixed at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiConfig {
    /// The configured lock store names; `StoreId(i)` names `stores[i]`. May be empty, in which
    /// case every lock request answers `ERR_LOCK_STORE_NOT_CONFIGURED`. At most
    /// [`MAX_STORES`]; a name given twice resolves to its first position.
    pub stores: Vec<String>,
    /// The app id metadata reports as `id`.
    pub app_id: String,
    /// `DAPR_API_TOKEN`. `None`, or an empty token (daprd then installs no check), means no
    /// authentication.
    pub api_token: Option<Vec<u8>>,
    /// The longest `resourceId` and `lockOwner` accepted, in bytes.
    pub max_id_bytes: usize,
    /// The longest `expiryInSeconds` accepted (`--max-expiry`); `None`: any positive int32.
    pub max_expiry_s: Option<u32>,
    /// The longest `waitTimeoutMs` an acquire may ask for (`--max-wait`).
    pub max_wait_ms: u32,
    /// Each store's component type for `/v1.0/metadata` (`lock.redis`, ...); a store past the
    /// end of the list is `lock.in-memory`.
    pub store_types: Vec<&'static str>,
}

/// The configured stores, searchable by name.
struct Stores {
    names: Vec<String>,
    /// Each distinct name with its first position, sorted by name.
    by_name: Vec<(Box<[u8]>, StoreId)>,
}

impl Stores {
    fn new(names: Vec<String>) -> Self {
        assert!(
            names.len() <= MAX_STORES,
            "at most {MAX_STORES} lock stores can be configured"
        );
        let mut by_name: Vec<(Box<[u8]>, StoreId)> = names
            .iter()
            .enumerate()
            .map(|(at, name)| {
                let id = u16::try_from(at).expect("the store count is checked above");
                (name.as_bytes().into(), StoreId(id))
            })
            .collect();
        // Sorting by (name, id) puts the first position of a repeated name first, and
        // dedup keeps exactly that one.
        by_name.sort();
        by_name.dedup_by(|later, kept| later.0 == kept.0);
        Stores { names, by_name }
    }

    /// The id of the store with exactly this name (bytes compared, case-sensitive).
    fn find(&self, name: &[u8]) -> Option<StoreId> {
        // The usual deployment has one store: one comparison, no search.
        if let [(only, id)] = self.by_name.as_slice() {
            return (**only == *name).then_some(*id);
        }
        let at = self
            .by_name
            .binary_search_by(|(candidate, _)| (**candidate).cmp(name))
            .ok()?;
        self.by_name.get(at).map(|(_, id)| *id)
    }
}

/// The API of one worker thread: the configuration plus reusable buffers for routing and body
/// decoding, so that the lock path allocates nothing.
pub struct Api {
    /// The stores, the API token and the validation, shared with the gRPC face.
    checks: LockValidator,
    /// The metadata body, encoded once. Leaked: there is one `Api` per worker, made at start.
    metadata: &'static [u8],
    router: Router,
    body: BodyDecoder,
    /// The exact lock and unlock targets of the only store, if it has a fast route.
    only_store: Option<OnlyStore>,
}

/// With one store whose name the fast route takes, `POST /v1.0-alpha1/lock/<it>` and
/// `.../unlock/<it>` are known in full: a request for exactly one of them needs neither the
/// route's scan of the name nor the store search. `perf/compare --instructions` (callgrind on
/// the whole server): 4,143 -> 4,010 instructions a request at depth 1 and 2,286 -> 2,152 at
/// depth 16 (perf/RESULTS.md, the sections of 10:22 at d2136db and 13:04 at 586a221, with no
/// other change to the request path between them).
struct OnlyStore {
    name: Box<[u8]>,
    lock: Box<[u8]>,
    unlock: Box<[u8]>,
    id: StoreId,
}

impl OnlyStore {
    /// Built only where the general path gives the same answer: the fast route takes both
    /// targets, with the name whole (the search of one store finds its own name).
    fn new(stores: &Stores) -> Option<OnlyStore> {
        let [(name, id)] = stores.by_name.as_slice() else {
            return None;
        };
        let target = |verb: &str| [b"/v1.0-alpha1/", verb.as_bytes(), b"/", name].concat();
        let (lock, unlock) = (target("lock"), target("unlock"));
        for (target, want) in [(&lock, Operation::TryLock), (&unlock, Operation::Unlock)] {
            match route::fast_lock_route(Method::Post, target) {
                Some(Route::Lock { op, store }) if op == want && store == &**name => {}
                _ => return None,
            }
        }
        Some(OnlyStore {
            name: name.clone(),
            lock: lock.into(),
            unlock: unlock.into(),
            id: *id,
        })
    }

    /// The operation `target` is one of the two targets of, if it is.
    #[inline(always)]
    fn op_of(&self, target: &[u8]) -> Option<Operation> {
        if *target == *self.lock {
            Some(Operation::TryLock)
        } else if *target == *self.unlock {
            Some(Operation::Unlock)
        } else {
            None
        }
    }
}

impl Api {
    /// Builds a worker's API and pre-encodes its metadata answer.
    ///
    /// # Panics
    ///
    /// If more than [`MAX_STORES`] stores are configured.
    pub fn new(config: ApiConfig) -> Self {
        let metadata = encode_metadata(&config.app_id, &config.stores, &config.store_types);
        let checks = LockValidator::new(config);
        Api {
            only_store: OnlyStore::new(&checks.stores),
            checks,
            metadata: Box::leak(metadata.into_boxed_slice()),
            router: Router::default(),
            body: BodyDecoder::default(),
        }
    }

    /// The configured store names; `StoreId(i)` names `stores()[i]`.
    pub fn stores(&self) -> &[String] {
        &self.checks.stores.names
    }

    /// Answers a request or turns it into a lock operation.
    ///
    /// `target` is the raw request target (path and optional query), `api_token` the value of
    /// the `dapr-api-token` header if any, `body` the whole (de-chunked) body.
    pub fn handle<'a>(
        &'a mut self,
        method: Method,
        target: &[u8],
        api_token: Option<&[u8]>,
        body: &'a [u8],
    ) -> Outcome<'a> {
        if method == Method::Post {
            if let Some(only) = &self.only_store {
                if let Some(op) = only.op_of(target) {
                    if !self.checks.token_ok(api_token) {
                        return Outcome::Respond(ApiError::InvalidToken.response());
                    }
                    let known = Some(only.id);
                    return lock_op(&mut self.body, &self.checks, op, &only.name, known, body);
                }
            }
        }
        let route = if let Some(route) = route::fast_lock_route(method, target) {
            // A lock route is never exempt from the token.
            if !self.checks.token_ok(api_token) {
                return Outcome::Respond(ApiError::InvalidToken.response());
            }
            route
        } else {
            let Ok(raw_path) = route::parse_target(target) else {
                return Outcome::Respond(ApiError::BadTarget.response());
            };
            if !self.checks.token_ok(api_token) && !self.router.is_token_exempt(method, raw_path) {
                return Outcome::Respond(ApiError::InvalidToken.response());
            }
            self.router.route(method, raw_path)
        };
        let (op, store) = match route {
            Route::Healthz | Route::HealthzOutbound => {
                return Outcome::Respond(response::NO_CONTENT)
            }
            Route::Metadata => return Outcome::Respond(Response::json_static(self.metadata)),
            Route::Unknown => return Outcome::Respond(ApiError::NoRoute.response()),
            Route::Lock { op, store } => (op, store),
        };
        lock_op(&mut self.body, &self.checks, op, store, None, body)
    }
}

/// Decodes and validates the body of a lock route; `known` is the store's id if the route
/// has already found it.
#[inline(always)]
fn lock_op<'a>(
    decoder: &'a mut BodyDecoder,
    checks: &LockValidator,
    op: Operation,
    store: &[u8],
    known: Option<StoreId>,
    body: &'a [u8],
) -> Outcome<'a> {
    let fields = match decoder.decode(op, body) {
        Ok(fields) => fields,
        Err(error) => return Outcome::Respond(ApiError::Malformed(error).response()),
    };
    match validate(op, store, fields, checks, known) {
        Ok((kind, store)) => Outcome::Lock(LockOp {
            kind,
            store,
            resource: fields.resource,
            owner: fields.owner,
        }),
        Err(error) => Outcome::Respond(explain::refused(op, body, error)),
    }
}

/// daprd's validation steps, in its order, plus our length cap after step 4. Inlined: out of
/// line, passing the fields and returning the verdict cost more than the checks.
#[inline(always)]
fn validate<'s>(
    op: Operation,
    store: &'s [u8],
    fields: LockFields<'s>,
    checks: &LockValidator,
    known: Option<StoreId>,
) -> Result<(OpKind, StoreId), ApiError<'s>> {
    let (stores, max_id_bytes) = (&checks.stores, checks.max_id_bytes);
    let kind = match op {
        Operation::TryLock => OpKind::TryLock {
            expiry_s: expiry(store, fields, checks.max_expiry_s)?,
        },
        Operation::Unlock => OpKind::Unlock,
        Operation::Renew => OpKind::Renew {
            expiry_s: expiry(store, fields, checks.max_expiry_s)?,
        },
        Operation::Acquire => {
            let expiry_s = expiry(store, fields, checks.max_expiry_s)?;
            match u32::try_from(fields.wait_ms) {
                Ok(wait_ms) if wait_ms <= checks.max_wait_ms => {
                    OpKind::Acquire { expiry_s, wait_ms }
                }
                _ => {
                    return Err(ApiError::WaitOutOfRange {
                        store,
                        max_ms: checks.max_wait_ms,
                    })
                }
            }
        }
        Operation::Holder => OpKind::Holder,
    };
    if stores.names.is_empty() {
        return Err(ApiError::StoreNotConfigured);
    }
    if fields.resource.is_empty() {
        return Err(ApiError::ResourceIdEmpty { store });
    }
    // A holder query may leave the owner out: it is only compared.
    if fields.owner.is_empty() && op != Operation::Holder {
        return Err(ApiError::LockOwnerEmpty { store });
    }
    if fields.resource.len() > max_id_bytes {
        return Err(ApiError::ResourceIdTooLong {
            store,
            max_bytes: max_id_bytes,
        });
    }
    if fields.owner.len() > max_id_bytes {
        return Err(ApiError::LockOwnerTooLong {
            store,
            max_bytes: max_id_bytes,
        });
    }
    let Some(id) = known.or_else(|| stores.find(store)) else {
        return Err(ApiError::StoreNotFound { store });
    };
    if !fields.no_pipe && has_key_separator(fields.resource) {
        return Err(ApiError::KeySeparator {
            op,
            resource: fields.resource,
        });
    }
    Ok((kind, id))
}

/// Compares the configured token with the header without stopping at the first difference,
/// so the time taken reveals at most whether the lengths match.
/// Whether `bytes` holds `||`, which daprd refuses in a resource id. Eight bytes at a time:
/// the pairwise scan cost more than the rest of the validation.
fn has_key_separator(bytes: &[u8]) -> bool {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const PIPES: u64 = 0x7c7c_7c7c_7c7c_7c7c;
    // Bit 7 of each byte of the answer is set iff that byte of `word` is `|`, exactly (no
    // borrow crosses bytes, unlike the shorter zero-byte test).
    let pipes = |word: u64| {
        let x = word ^ PIPES;
        !(((x & LOW7) + LOW7) | x | LOW7)
    };
    // Whether the last byte of the previous word was `|`.
    let mut carry = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let flags = pipes(u64::from_le_bytes(word));
        if flags & ((flags << 8) | carry) != 0 {
            return true;
        }
        carry = flags >> 56;
    }
    // The tail, padded with a byte that is not `|`, as one more word.
    let tail = chunks.remainder();
    let mut word = [0u8; 8];
    word[..tail.len()].copy_from_slice(tail);
    let flags = pipes(u64::from_le_bytes(word));
    flags & ((flags << 8) | carry) != 0
}

fn token_matches(expected: &[u8], given: Option<&[u8]>) -> bool {
    let Some(given) = given else {
        return false;
    };
    if given.len() != expected.len() {
        return false;
    }
    // Hiding the header from the optimiser keeps the loop a plain OR over every byte.
    let given = std::hint::black_box(given);
    let difference = expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// The metadata answer: what the JS SDK polls for before it starts, shaped like daprd's.
fn encode_metadata(app_id: &str, stores: &[String], types: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + stores.iter().map(|s| s.len() + 64).sum::<usize>());
    out.extend_from_slice(br#"{"id":"#);
    json::push_go_string(&mut out, app_id.as_bytes());
    out.extend_from_slice(br#","runtimeVersion":"#);
    json::push_go_string(&mut out, env!("CARGO_PKG_VERSION").as_bytes());
    // daprd's extended metadata always holds its runtime version (as GetMetadata's does).
    out.extend_from_slice(br#","extended":{"daprRuntimeVersion":"#);
    json::push_go_string(&mut out, env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(br#"},"components":["#);
    for (at, name) in stores.iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"name":"#);
        json::push_go_string(&mut out, name.as_bytes());
        out.extend_from_slice(br#","type":"#);
        let kind = types.get(at).copied().unwrap_or(STORE_TYPE);
        json::push_go_string(&mut out, kind.as_bytes());
        out.extend_from_slice(br#","version":"v1"}"#);
    }
    out.extend_from_slice(b"]}");
    out
}

/// daprd's first step for a lease's length: `expiryInSeconds` must be positive, and (our own
/// bound) at most `--max-expiry`.
#[inline(always)]
fn expiry<'s>(
    store: &'s [u8],
    fields: LockFields<'s>,
    max_expiry_s: u32,
) -> Result<u32, ApiError<'s>> {
    match u32::try_from(fields.expiry_s) {
        Ok(expiry_s) if expiry_s > max_expiry_s => Err(ApiError::ExpiryAboveMax {
            store,
            max_s: max_expiry_s,
        }),
        Ok(expiry_s) if expiry_s > 0 => Ok(expiry_s),
        _ => Err(ApiError::ExpiryNotPositive { store }),
    }
}

/// The lock API's checks for a caller that is not HTTP (the gRPC face): the same stores, API
/// token and validation, in daprd's order and with its messages.
pub struct LockValidator {
    stores: Stores,
    /// Never empty when present.
    api_token: Option<Box<[u8]>>,
    max_id_bytes: usize,
    max_expiry_s: u32,
    max_wait_ms: u32,
}

impl LockValidator {
    pub fn new(config: ApiConfig) -> Self {
        LockValidator {
            stores: Stores::new(config.stores),
            api_token: config
                .api_token
                .filter(|token| !token.is_empty())
                .map(Vec::into_boxed_slice),
            max_id_bytes: config.max_id_bytes,
            max_expiry_s: config.max_expiry_s.unwrap_or(u32::MAX),
            max_wait_ms: config.max_wait_ms,
        }
    }

    /// Whether a token is configured, and so required.
    pub fn wants_token(&self) -> bool {
        self.api_token.is_some()
    }

    /// Compares the configured token with `given` in constant time for a given length; true
    /// when none is configured.
    pub fn token_ok(&self, given: Option<&[u8]>) -> bool {
        self.api_token
            .as_deref()
            .is_none_or(|expected| token_matches(expected, given))
    }

    /// A try-lock, validated as the HTTP route validates it.
    pub fn try_lock<'a>(
        &self,
        store: &'a [u8],
        resource: &'a [u8],
        owner: &'a [u8],
        expiry_s: i32,
    ) -> Result<LockOp<'a>, Rejection> {
        self.check(Operation::TryLock, store, resource, owner, expiry_s, 0)
    }

    /// An unlock, validated as the HTTP route validates it.
    pub fn unlock<'a>(
        &self,
        store: &'a [u8],
        resource: &'a [u8],
        owner: &'a [u8],
    ) -> Result<LockOp<'a>, Rejection> {
        self.check(Operation::Unlock, store, resource, owner, 0, 0)
    }

    /// Any lock route's request, validated as the HTTP route validates it: `expiry_s` and
    /// `wait_ms` are read only by the routes that take them.
    pub fn check<'a>(
        &self,
        op: Operation,
        store: &'a [u8],
        resource: &'a [u8],
        owner: &'a [u8],
        expiry_s: i32,
        wait_ms: i32,
    ) -> Result<LockOp<'a>, Rejection> {
        let fields = LockFields {
            resource,
            owner,
            expiry_s,
            wait_ms,
            no_pipe: false,
        };
        let (kind, store) = self
            .validate(op, store, fields)
            .map_err(|error| error.rejection())?;
        Ok(LockOp {
            kind,
            store,
            resource,
            owner,
        })
    }

    /// daprd's validation of decoded fields, in its order: the operation and the store's id.
    #[inline]
    fn validate<'s>(
        &self,
        op: Operation,
        store: &'s [u8],
        fields: LockFields<'s>,
    ) -> Result<(OpKind, StoreId), ApiError<'s>> {
        validate(op, store, fields, self, None)
    }
}

/// How a store's failure to decide is refused over gRPC: `Internal`, daprd's message.
pub fn store_failure_rejection(op: Operation, cause: &str) -> Rejection {
    ApiError::StoreFailed { op, cause }.rejection()
}

/// How a lease table's failure to decide a try-lock (or an acquire, `op`) is refused over gRPC.
pub fn lease_error_rejection(op: Operation, cause: LeaseError) -> Rejection {
    ApiError::Store { op, cause }.rejection()
}

/// The `500` answer to a try-lock or an unlock (`op`) that a remote store could not
/// decide, naming the cause: daprd's `ERR_TRY_LOCK` / `ERR_UNLOCK`.
pub fn store_failure_response(op: Operation, cause: &str) -> Response {
    ApiError::StoreFailed { op, cause }.response()
}

/// The answer for a shard's decision: the exact success bytes, or for a lease table that could
/// not answer a `500 ERR_TRY_LOCK` naming the cause.
pub fn answer_response(answer: Answer) -> Response {
    match answer {
        Answer::TryLock(Ok(true)) => response::SUCCESS_TRUE,
        Answer::Granted { token, .. } | Answer::StoreGranted { token } => {
            response::success_fenced(token)
        }
        Answer::TryLock(Ok(false)) => response::SUCCESS_FALSE,
        Answer::TryLock(Err(cause)) => ApiError::Store {
            op: Operation::TryLock,
            cause,
        }
        .response(),
        Answer::Unlock(UnlockStatus::Success) => response::STATUS_SUCCESS,
        Answer::Unlock(UnlockStatus::LockDoesNotExist) => response::STATUS_LOCK_DOES_NOT_EXIST,
        Answer::Unlock(UnlockStatus::LockBelongsToOthers) => {
            response::STATUS_LOCK_BELONGS_TO_OTHERS
        }
        Answer::Unlock(UnlockStatus::InternalError) => response::STATUS_INTERNAL_ERROR,
        Answer::Renew(status) => answer_response(Answer::Unlock(status)),
        Answer::Renewed { token, .. } | Answer::StoreRenewed { token } => {
            response::status_success_fenced(token)
        }
        Answer::Holder(h) if !h.locked => response::holder_free(),
        Answer::Holder(h) => response::holder_locked(h.owned_by_caller, h.remaining_ms, h.waiters),
    }
}

#[cfg(test)]
mod tests;
