//! The operations and outcomes the API hands to the rest of the server: which lock route a
//! request took, a validated [`LockOp`], what a shard decided ([`Answer`]), and how a refused
//! lock request is told over gRPC ([`Rejection`]).

use crate::lease::{LeaseError, StoreId, UnlockStatus};

use super::response::Response;

/// Which of the two lock routes a request took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    TryLock,
    Unlock,
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
}

/// A validated lock operation, borrowing the decoded ids from the `Api`'s buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockOp<'a> {
    pub kind: OpKind,
    pub store: StoreId,
    /// The decoded `resourceId`: non-empty, at most `max_id_bytes`, without `||`.
    pub resource: &'a [u8],
    /// The decoded `lockOwner`: non-empty, at most `max_id_bytes`.
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
}

impl OpKind {
    /// Which route asks for it.
    pub fn operation(self) -> Operation {
        match self {
            OpKind::TryLock { .. } => Operation::TryLock,
            OpKind::Unlock => Operation::Unlock,
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
