//! The operations and outcomes the API hands to the rest of the server: which lock route a
//! request took, a validated [`LockOp`], what a shard decided ([`Answer`]), and how a refused
//! lock request is told over gRPC ([`Rejection`]).

use crate::lease::{LeaseError, StoreId, UnlockStatus};

use super::response::Response;

/// Which lock route a request took: daprd's two, or one of dlockd's own
/// (`/v1.0-alpha1/lock/{store}/renew`, `.../acquire`, `.../holder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    TryLock,
    Unlock,
    Renew,
    Acquire,
    Holder,
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Send this answer.
    Respond(Response),
    /// Decide this operation on the shard that owns it, then send `answer_response`.
    Lock(LockOp<'a>),
}

/// A lock operation with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `expiry_s >= 1`.
    TryLock {
        expiry_s: u32,
    },
    Unlock,
    /// The owner's live lease to live `expiry_s >= 1` from now.
    Renew {
        expiry_s: u32,
    },
    /// A try-lock that waits up to `wait_ms` for the lock to be free; `wait_ms == 0` is a
    /// try-lock.
    Acquire {
        expiry_s: u32,
        wait_ms: u32,
    },
    /// Who holds the lock; the owner, if given, is only compared.
    Holder,
}

/// A validated lock operation, borrowing the decoded ids from the `Api`'s buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockOp<'a> {
    pub kind: OpKind,
    pub store: StoreId,
    /// The decoded `resourceId`: non-empty, at most `max_id_bytes`, without `||`.
    pub resource: &'a [u8],
    /// The decoded `lockOwner`: at most `max_id_bytes`; non-empty but for a holder query.
    pub owner: &'a [u8],
}

/// What a shard decided (`Send + Copy`: it crosses threads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    TryLock(Result<bool, LeaseError>),
    /// A try-lock granted with a fencing token (`--data-dir`), live through `last_live_ms`.
    /// Its answer may be written only once both are durably promised (`crate::persist`).
    Granted {
        token: u64,
        last_live_ms: u64,
    },
    Unlock(UnlockStatus),
    /// A renewal's status, as an unlock's (`Success` without a data dir).
    Renew(UnlockStatus),
    /// A renewal with a data dir: the lease's token, and its new last live tick, which must
    /// be durably promised before the answer is written, as a grant's.
    Renewed {
        token: u64,
        last_live_ms: u64,
    },
    /// Who holds a lock.
    Holder(Holding),
    /// A try-lock granted by a remote store that fences (`lock.etcd`), with the store's
    /// fencing token. It promises nothing to the data dir: the store keeps it.
    StoreGranted {
        token: u64,
    },
    /// A renewal by a remote store that fences, with the lease's token (as `StoreGranted`).
    StoreRenewed {
        token: u64,
    },
}

/// What a holder query finds: whether a live lease holds the lock, whether the caller's owner
/// holds it, its milliseconds left, and how many wait for it. The owner itself is never
/// told: it is the unlock credential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    pub locked: bool,
    pub owned_by_caller: bool,
    pub remaining_ms: u64,
    pub waiters: u32,
}

impl OpKind {
    /// Which route asks for it.
    pub fn operation(self) -> Operation {
        match self {
            OpKind::TryLock { .. } => Operation::TryLock,
            OpKind::Unlock => Operation::Unlock,
            OpKind::Renew { .. } => Operation::Renew,
            OpKind::Acquire { .. } => Operation::Acquire,
            OpKind::Holder => Operation::Holder,
        }
    }
}

/// The gRPC status of a lock request refused before or by a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectCode {
    FailedPrecondition,
    InvalidArgument,
    Internal,
}

/// A lock request refused: the gRPC code daprd gives and its message (the HTTP text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub message: String,
}
