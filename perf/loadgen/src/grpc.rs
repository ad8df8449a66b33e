//! The Dapr lock API over gRPC: `dapr.proto.runtime.v1.Dapr`'s unary `TryLockAlpha1` and
//! `UnlockAlpha1`, as the Python, Go, Java and .NET SDKs call them. The four messages are
//! prost derives of daprd's protobuf definitions (no protoc, no build script); tonic frames
//! them on HTTP/2 (see `client::grpc` for the connections). This module is the pure part:
//! the messages, the method paths, and the protocol-neutral reading of an answer.

use tonic::Status;

use crate::wire::{Outcome, UnlockStatus};

/// The methods of the service every SDK calls, `dapr.proto.runtime.v1.Dapr`.
pub const TRY_LOCK_PATH: &str = "/dapr.proto.runtime.v1.Dapr/TryLockAlpha1";
pub const UNLOCK_PATH: &str = "/dapr.proto.runtime.v1.Dapr/UnlockAlpha1";

/// `dapr.proto.runtime.v1.TryLockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TryLockRequest {
    #[prost(string, tag = "1")]
    pub store_name: String,
    #[prost(string, tag = "2")]
    pub resource_id: String,
    #[prost(string, tag = "3")]
    pub lock_owner: String,
    #[prost(int32, tag = "4")]
    pub expiry_in_seconds: i32,
}

/// `dapr.proto.runtime.v1.TryLockResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TryLockResponse {
    #[prost(bool, tag = "1")]
    pub success: bool,
}

/// `dapr.proto.runtime.v1.UnlockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnlockRequest {
    #[prost(string, tag = "1")]
    pub store_name: String,
    #[prost(string, tag = "2")]
    pub resource_id: String,
    #[prost(string, tag = "3")]
    pub lock_owner: String,
}

/// `dapr.proto.runtime.v1.UnlockResponse`: `status` is the `Status` enum (0 success, 1 lock
/// does not exist, 2 lock belongs to others, 3 internal error), an int32 on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnlockResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// The highest status of daprd's `UnlockResponse.Status` enum (internal error).
const MAX_UNLOCK_STATUS: i32 = 3;

/// `{success}` as an outcome.
pub fn try_lock_outcome(answer: &TryLockResponse) -> Outcome {
    if answer.success {
        Outcome::Granted
    } else {
        Outcome::Denied
    }
}

/// `{status}` as an outcome; a number outside daprd's enum is not an answer we know.
pub fn unlock_outcome(answer: &UnlockResponse) -> Outcome {
    match UnlockStatus::try_from(answer.status) {
        Ok(s) if answer.status <= MAX_UNLOCK_STATUS => Outcome::Unlocked(s),
        _ => Outcome::Unrecognized,
    }
}

/// Why a call brought no answer message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The server answered with a gRPC status other than OK (`INVALID_ARGUMENT`,
    /// `INTERNAL`, `UNAVAILABLE`, …): a refused request, as a non-200 is over HTTP.
    Refused,
    /// The call never got an answer from the server: the connection could not be made, failed,
    /// was reset or closed, or the stream was reset (HTTP/2 `RST_STREAM`, `GOAWAY`).
    Transport,
    /// No answer within the answer timeout.
    Timeout,
}

/// Sorts a failed call: a status the server sent (it carries no error source) is a refusal;
/// one tonic made from a transport or decoding failure (with a source) is not an answer.
pub fn call_error(status: &Status) -> CallError {
    if std::error::Error::source(status).is_some() {
        CallError::Transport
    } else {
        CallError::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    // The messages encode to the bytes daprd's protobuf definitions give (field numbers and
    // wire types), so any Dapr gRPC server reads them.
    #[test]
    fn messages_match_daprs_wire_format() {
        let lock = TryLockRequest {
            store_name: "s".into(),
            resource_id: "r".into(),
            lock_owner: "o".into(),
            expiry_in_seconds: 10,
        };
        assert_eq!(
            lock.encode_to_vec(),
            [0x0a, 1, b's', 0x12, 1, b'r', 0x1a, 1, b'o', 0x20, 10]
        );
        let unlock = UnlockRequest {
            store_name: "s".into(),
            resource_id: "r".into(),
            lock_owner: "o".into(),
        };
        assert_eq!(
            unlock.encode_to_vec(),
            [0x0a, 1, b's', 0x12, 1, b'r', 0x1a, 1, b'o']
        );
        assert_eq!(
            TryLockResponse::decode(&[0x08, 1][..]).unwrap(),
            TryLockResponse { success: true }
        );
        assert_eq!(
            UnlockResponse::decode(&[0x08, 2][..]).unwrap(),
            UnlockResponse { status: 2 }
        );
        // Proto3 leaves defaults out: an empty message is success false / status 0.
        assert_eq!(
            TryLockResponse::decode(&[][..]).unwrap(),
            TryLockResponse { success: false }
        );
        assert_eq!(
            UnlockResponse::decode(&[][..]).unwrap(),
            UnlockResponse { status: 0 }
        );
        assert_eq!(TRY_LOCK_PATH, "/dapr.proto.runtime.v1.Dapr/TryLockAlpha1");
        assert_eq!(UNLOCK_PATH, "/dapr.proto.runtime.v1.Dapr/UnlockAlpha1");
    }

    // Answers read as the HTTP ones do.
    #[test]
    fn answers_map_to_outcomes() {
        assert_eq!(
            try_lock_outcome(&TryLockResponse { success: true }),
            Outcome::Granted
        );
        assert_eq!(
            try_lock_outcome(&TryLockResponse { success: false }),
            Outcome::Denied
        );
        for s in 0..=3 {
            assert_eq!(
                unlock_outcome(&UnlockResponse { status: s }),
                Outcome::Unlocked(s as u8)
            );
        }
        for s in [-1, 4, 256, i32::MAX] {
            assert_eq!(
                unlock_outcome(&UnlockResponse { status: s }),
                Outcome::Unrecognized
            );
        }
    }

    // A status from the server is a refusal; one tonic made from a failure is not an answer.
    #[test]
    fn statuses_are_sorted() {
        assert_eq!(
            call_error(&Status::invalid_argument("lock store nope not found")),
            CallError::Refused
        );
        assert_eq!(
            call_error(&Status::unavailable("shutting down")),
            CallError::Refused
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            call_error(&Status::from_error(Box::new(io))),
            CallError::Transport
        );
    }
}
