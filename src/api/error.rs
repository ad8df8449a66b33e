//! The API layer's errors, and the one place that maps each to the contract's status, error
//! code and message.
//!
//! Messages are daprd's, verbatim; `<store>` is the store name as decoded from the URL and may
//! hold any bytes, so messages are built as bytes and JSON-escaped the way Go does.

use std::fmt;

use crate::lease::LeaseError;

use super::body::BodyError;
use super::op::{Operation, RejectCode, Rejection};
use super::response::{self, Response};

/// Everything the API answers with an error, in daprd's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiError<'a> {
    /// A target Go's `net/http` cannot parse; answered before anything else.
    BadTarget,
    /// A missing or wrong `dapr-api-token`.
    InvalidToken,
    /// No such route (or wrong method): daprd's service-invocation fallback.
    NoRoute,
    /// The body is not a protojson lock request.
    Malformed(BodyError),
    /// Try-lock step 1.
    ExpiryNotPositive { store: &'a [u8] },
    /// Try-lock step 1, beside positivity: above `--max-expiry` (not daprd's; it has no cap).
    ExpiryAboveMax { store: &'a [u8], max_s: u32 },
    /// An acquire's wait below 0 or above `--max-wait`.
    WaitOutOfRange { store: &'a [u8], max_ms: u32 },
    /// Step 2: no lock store configured at all.
    StoreNotConfigured,
    /// Step 3.
    ResourceIdEmpty { store: &'a [u8] },
    /// Step 4.
    LockOwnerEmpty { store: &'a [u8] },
    /// After step 4: our own cap on the length of a `resourceId`.
    ResourceIdTooLong { store: &'a [u8], max_bytes: usize },
    /// After step 4: our own cap on the length of a `lockOwner`.
    LockOwnerTooLong { store: &'a [u8], max_bytes: usize },
    /// Step 5.
    StoreNotFound { store: &'a [u8] },
    /// Step 6: daprd builds keys joined by `||`, so a resource id may not contain it.
    KeySeparator { op: Operation, resource: &'a [u8] },
    /// Step 7: the lease table could not answer.
    Store { op: Operation, cause: LeaseError },
    /// Step 7: a remote store (Redis) could not answer, with its cause.
    StoreFailed { op: Operation, cause: &'a str },
}

impl ApiError<'_> {
    /// The contract's answer to this error.
    pub(crate) fn response(&self) -> Response {
        let (status, code) = match self {
            ApiError::BadTarget => return response::BAD_TARGET,
            ApiError::InvalidToken => return response::INVALID_TOKEN,
            ApiError::NoRoute => return response::NO_ROUTE,
            ApiError::Malformed(_)
            | ApiError::ExpiryNotPositive { .. }
            | ApiError::ExpiryAboveMax { .. }
            | ApiError::WaitOutOfRange { .. }
            | ApiError::ResourceIdEmpty { .. }
            | ApiError::LockOwnerEmpty { .. }
            | ApiError::ResourceIdTooLong { .. }
            | ApiError::LockOwnerTooLong { .. } => (400, "ERR_MALFORMED_REQUEST"),
            ApiError::StoreNotConfigured => (500, "ERR_LOCK_STORE_NOT_CONFIGURED"),
            ApiError::StoreNotFound { .. } => (400, "ERR_LOCK_STORE_NOT_FOUND"),
            ApiError::KeySeparator { op, .. }
            | ApiError::Store { op, .. }
            | ApiError::StoreFailed { op, .. } => match op {
                Operation::TryLock | Operation::Acquire => (500, "ERR_TRY_LOCK"),
                Operation::Unlock => (500, "ERR_UNLOCK"),
                // dlockd's own routes, named as daprd names its lock errors.
                Operation::Renew => (500, "ERR_RENEW_LOCK"),
                Operation::Holder => (500, "ERR_LOCK_HOLDER"),
            },
        };
        let mut message = Vec::with_capacity(96);
        self.write_message(&mut message);
        response::error_json(status, code, &message)
    }

    /// The gRPC status daprd gives this error (not configured → FailedPrecondition; malformed
    /// or unknown → InvalidArgument; a store's failure → Internal) and its message, the same
    /// text as over HTTP.
    pub(crate) fn rejection(&self) -> Rejection {
        let status = self.response().status;
        let code = match self {
            ApiError::StoreNotConfigured => RejectCode::FailedPrecondition,
            _ if status == 400 => RejectCode::InvalidArgument,
            _ => RejectCode::Internal,
        };
        let mut message = Vec::with_capacity(96);
        self.write_message(&mut message);
        Rejection {
            code,
            message: String::from_utf8_lossy(&message).into_owned(),
        }
    }

    /// Appends daprd's message for this error.
    fn write_message(&self, out: &mut Vec<u8>) {
        // `format!`-style writes into a Vec<u8> cannot fail.
        use std::io::Write as _;
        let in_store = |out: &mut Vec<u8>, text: &str, store: &[u8]| {
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b" in lock store ");
            out.extend_from_slice(store);
        };
        match self {
            ApiError::BadTarget => out.extend_from_slice(b"400 Bad Request"),
            ApiError::InvalidToken => out.extend_from_slice(b"invalid api token"),
            ApiError::NoRoute => out.extend_from_slice(
                b"failed getting app id either from the URL path or the header dapr-app-id",
            ),
            ApiError::Malformed(detail) => {
                let _ = write!(out, "failed deserializing HTTP body: {detail}");
            }
            ApiError::ExpiryNotPositive { store } => {
                in_store(out, "ExpiryInSeconds is not positive", store)
            }
            ApiError::ExpiryAboveMax { store, max_s } => in_store(
                out,
                &format!("ExpiryInSeconds is above the maximum of {max_s} (--max-expiry)"),
                store,
            ),
            ApiError::WaitOutOfRange { store, max_ms } => in_store(
                out,
                &format!("WaitTimeoutMs is outside 0 to {max_ms} (--max-wait)"),
                store,
            ),
            ApiError::StoreNotConfigured => out.extend_from_slice(b"lock store is not configured"),
            ApiError::ResourceIdEmpty { store } => in_store(out, "ResourceId is empty", store),
            ApiError::LockOwnerEmpty { store } => in_store(out, "LockOwner is empty", store),
            ApiError::ResourceIdTooLong { store, max_bytes } => in_store(
                out,
                &format!("ResourceId is longer than {max_bytes} bytes"),
                store,
            ),
            ApiError::LockOwnerTooLong { store, max_bytes } => in_store(
                out,
                &format!("LockOwner is longer than {max_bytes} bytes"),
                store,
            ),
            ApiError::StoreNotFound { store } => {
                out.extend_from_slice(b"lock store ");
                out.extend_from_slice(store);
                out.extend_from_slice(b" not found");
            }
            ApiError::KeySeparator { op, resource } => {
                out.extend_from_slice(op.failure_prefix().as_bytes());
                out.extend_from_slice(b"input key/keyPrefix '");
                out.extend_from_slice(resource);
                out.extend_from_slice(b"' can't contain '||'");
            }
            ApiError::Store { op, cause } => {
                let _ = write!(out, "{}{cause}", op.failure_prefix());
            }
            ApiError::StoreFailed { op, cause } => {
                let _ = write!(out, "{}{cause}", op.failure_prefix());
            }
        }
    }
}

impl Operation {
    /// How daprd opens the message of a failed store call.
    fn failure_prefix(self) -> &'static str {
        match self {
            Operation::TryLock | Operation::Acquire => "failed to try acquiring lock: ",
            Operation::Unlock => "failed to release lock: ",
            Operation::Renew => "failed to renew lock: ",
            Operation::Holder => "failed to get lock holder: ",
        }
    }
}

impl fmt::Display for ApiError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut message = Vec::new();
        self.write_message(&mut message);
        f.write_str(&String::from_utf8_lossy(&message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_daprd_status_code_and_message() {
        // Protects the error table of the contract: status, errorCode and message for each
        // validation step, byte for byte.
        let store: &[u8] = b"my<store>";
        let cases: &[(ApiError<'_>, u16, &str)] = &[
            (
                ApiError::Malformed(BodyError::NotAnObject),
                400,
                r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"failed deserializing HTTP body: the body is not a JSON object"}"#,
            ),
            (
                ApiError::ExpiryNotPositive { store },
                400,
                r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"ExpiryInSeconds is not positive in lock store my\u003cstore\u003e"}"#,
            ),
            (
                ApiError::ExpiryAboveMax { store, max_s: 10 },
                400,
                r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"ExpiryInSeconds is above the maximum of 10 (--max-expiry) in lock store my\u003cstore\u003e"}"#,
            ),
            (
                ApiError::StoreNotConfigured,
                500,
                r#"{"errorCode":"ERR_LOCK_STORE_NOT_CONFIGURED","message":"lock store is not configured"}"#,
            ),
            (
                ApiError::ResourceIdEmpty { store },
                400,
                r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"ResourceId is empty in lock store my\u003cstore\u003e"}"#,
            ),
            (
                ApiError::LockOwnerEmpty { store },
                400,
                r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"LockOwner is empty in lock store my\u003cstore\u003e"}"#,
            ),
            (
                ApiError::ResourceIdTooLong {
                    store,
                    max_bytes: 64,
                },
                400,
                r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"ResourceId is longer than 64 bytes in lock store my\u003cstore\u003e"}"#,
            ),
            (
                ApiError::LockOwnerTooLong {
                    store,
                    max_bytes: 7,
                },
                400,
                r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"LockOwner is longer than 7 bytes in lock store my\u003cstore\u003e"}"#,
            ),
            (
                ApiError::StoreNotFound { store: b"x\xff\"" },
                400,
                r#"{"errorCode":"ERR_LOCK_STORE_NOT_FOUND","message":"lock store x\ufffd\" not found"}"#,
            ),
            (
                ApiError::KeySeparator {
                    op: Operation::TryLock,
                    resource: b"a||b",
                },
                500,
                r#"{"errorCode":"ERR_TRY_LOCK","message":"failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'"}"#,
            ),
            (
                ApiError::KeySeparator {
                    op: Operation::Unlock,
                    resource: b"||&",
                },
                500,
                r#"{"errorCode":"ERR_UNLOCK","message":"failed to release lock: input key/keyPrefix '||\u0026' can't contain '||'"}"#,
            ),
            (
                ApiError::Store {
                    op: Operation::TryLock,
                    cause: LeaseError::TableFull { max_leases: 1000 },
                },
                500,
                r#"{"errorCode":"ERR_TRY_LOCK","message":"failed to try acquiring lock: lease table is full (1000 leases)"}"#,
            ),
        ];
        for (error, status, body) in cases {
            let response = error.response();
            assert_eq!(response.status, *status, "{error}");
            assert_eq!(response.content_type, "application/json", "{error}");
            assert!(!response.close, "{error}");
            assert_eq!(String::from_utf8_lossy(response.body()), *body, "{error}");
        }
    }

    #[test]
    fn display_matches_the_message() {
        // Protects the log text: Display is the message that goes into the body.
        let error = ApiError::ResourceIdEmpty { store: b"s" };
        assert_eq!(error.to_string(), "ResourceId is empty in lock store s");
        assert_eq!(ApiError::InvalidToken.to_string(), "invalid api token");
        assert_eq!(
            ApiError::InvalidToken.response().body(),
            b"invalid api token\n"
        );
    }
}
