//! The answers the API sends: status, content type and body bytes, exactly as daprd writes
//! them.
//!
//! Invariants:
//! - Every success answer and every fixed error answer is a `&'static` byte string: the hot
//!   path never allocates a response.
//! - Only the plain-text `400 Bad Request` for a request target Go's `net/http` cannot parse
//!   asks for the connection to be closed, because that is what Go's server does.
//! - Error bodies are `{"errorCode":"…","message":"…"}` with the keys in that order, no
//!   trailing newline, and the message escaped by [`json::push_go_string`].

use super::json;

/// The content type of every JSON answer.
pub(crate) const JSON: &str = "application/json";
/// The content type of the answers Go's `net/http` writes itself.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// One complete answer, ready for the HTTP layer to frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` value; empty means no such header (the 204 answers).
    pub content_type: &'static str,
    /// The body bytes.
    pub body: ResponseBody,
    /// Whether the connection must be closed once this answer is written.
    pub close: bool,
    /// The fencing token of a granted try-lock, sent as the `Dapr-Lock-Fence` header (with
    /// `--data-dir` only).
    pub fence: Option<u64>,
}

/// The bytes of a [`Response`]: pre-encoded for the common answers, built for the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// A body that lives for the whole process: no allocation per request.
    Static(&'static [u8]),
    /// A body built for this one answer (errors only: they are off the hot path).
    Owned(Vec<u8>),
}

impl Response {
    /// The header naming the fencing token, as Go's net/http would write it.
    pub const FENCE_HEADER: &'static str = "Dapr-Lock-Fence";

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        match &self.body {
            ResponseBody::Static(bytes) => bytes,
            ResponseBody::Owned(bytes) => bytes,
        }
    }

    /// A `200 application/json` answer with a pre-encoded body.
    pub(crate) const fn json_static(body: &'static [u8]) -> Self {
        Response {
            status: 200,
            content_type: JSON,
            body: ResponseBody::Static(body),
            close: false,
            fence: None,
        }
    }
}

/// `{"success":true}`: the try-lock was granted.
pub(crate) const SUCCESS_TRUE: Response = Response::json_static(br#"{"success":true}"#);
/// `{"success":true}` with the grant's fencing token.
pub(crate) fn success_fenced(token: u64) -> Response {
    Response {
        fence: Some(token),
        ..SUCCESS_TRUE
    }
}
/// `{"status":0}` of a renewal with a data dir: the lease's fencing token repeated.
pub(crate) fn status_success_fenced(token: u64) -> Response {
    Response {
        fence: Some(token),
        ..STATUS_SUCCESS
    }
}

/// A holder query's answer when nobody holds the lock.
pub(crate) fn holder_free() -> Response {
    Response::json_static(br#"{"locked":false}"#)
}

/// A holder query's answer when the lock is held:
/// `{"locked":true,"ownedByCaller":B,"remainingMs":N,"waiters":W}` (never the owner).
pub(crate) fn holder_locked(owned_by_caller: bool, remaining_ms: u64, waiters: u32) -> Response {
    let body = format!(
        r#"{{"locked":true,"ownedByCaller":{owned_by_caller},"remainingMs":{remaining_ms},"waiters":{waiters}}}"#
    );
    Response {
        body: ResponseBody::Owned(body.into_bytes()),
        ..Response::json_static(b"")
    }
}

/// `{"success":false}`: someone holds the lock. daprd always sends the field, never `{}`.
pub(crate) const SUCCESS_FALSE: Response = Response::json_static(br#"{"success":false}"#);
/// The unlock answers, one per Dapr `UnlockResponse.Status`. The status is a JSON number,
/// and `0` is always sent.
pub(crate) const STATUS_SUCCESS: Response = Response::json_static(br#"{"status":0}"#);
pub(crate) const STATUS_LOCK_DOES_NOT_EXIST: Response = Response::json_static(br#"{"status":1}"#);
pub(crate) const STATUS_LOCK_BELONGS_TO_OTHERS: Response =
    Response::json_static(br#"{"status":2}"#);
pub(crate) const STATUS_INTERNAL_ERROR: Response = Response::json_static(br#"{"status":3}"#);

/// The health answers: `204`, no body, no content type.
pub(crate) const NO_CONTENT: Response = Response {
    status: 204,
    content_type: "",
    body: ResponseBody::Static(b""),
    close: false,
    fence: None,
};

/// What Go's `net/http` writes, before any handler runs, for a request target it cannot parse
/// (a bad percent-escape, for one), and then it closes the connection.
pub(crate) const BAD_TARGET: Response = Response {
    status: 400,
    content_type: TEXT,
    body: ResponseBody::Static(b"400 Bad Request"),
    close: true,
    fence: None,
};

/// daprd's answer to a missing or wrong `dapr-api-token` (`http.Error` adds the newline).
pub(crate) const INVALID_TOKEN: Response = Response {
    status: 401,
    content_type: TEXT,
    body: ResponseBody::Static(b"invalid api token\n"),
    close: false,
    fence: None,
};

/// daprd's answer to every other route: it falls through to service invocation, and this
/// server has no app to invoke.
pub(crate) const NO_ROUTE: Response = Response {
    status: 404,
    content_type: JSON,
    body: ResponseBody::Static(
        br#"{"errorCode":"ERR_DIRECT_INVOKE","message":"failed getting app id either from the URL path or the header dapr-app-id"}"#,
    ),
    close: false,
    fence: None,
};

/// Builds a `{"errorCode":…,"message":…}` answer; `message` may hold any bytes.
pub(crate) fn error_json(status: u16, code: &str, message: &[u8]) -> Response {
    let mut body = Vec::with_capacity(32 + code.len() + message.len());
    body.extend_from_slice(br#"{"errorCode":"#);
    json::push_go_string(&mut body, code.as_bytes());
    body.extend_from_slice(br#","message":"#);
    json::push_go_string(&mut body, message);
    body.push(b'}');
    Response {
        status,
        content_type: JSON,
        body: ResponseBody::Owned(body),
        close: false,
        fence: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_go_key_order_and_escaping() {
        // Protects the exact error body shape: two keys in daprd's order, no newline, Go
        // escaping applied to the message.
        let response = error_json(400, "ERR_X", b"bad <store> \"a\"\n");
        assert_eq!(response.status, 400);
        assert_eq!(response.content_type, "application/json");
        assert!(!response.close);
        assert_eq!(
            response.body(),
            br#"{"errorCode":"ERR_X","message":"bad \u003cstore\u003e \"a\"\n"}"#
        );
    }

    #[test]
    fn fixed_answers_are_exact() {
        // Protects the fixed bytes, status codes and content types of the common answers.
        assert_eq!(SUCCESS_TRUE.body(), br#"{"success":true}"#);
        assert_eq!(SUCCESS_FALSE.body(), br#"{"success":false}"#);
        let statuses = [
            STATUS_SUCCESS,
            STATUS_LOCK_DOES_NOT_EXIST,
            STATUS_LOCK_BELONGS_TO_OTHERS,
            STATUS_INTERNAL_ERROR,
        ];
        for (n, response) in statuses.iter().enumerate() {
            assert_eq!(response.body(), format!(r#"{{"status":{n}}}"#).as_bytes());
            assert_eq!((response.status, response.content_type), (200, JSON));
        }
        assert_eq!((NO_CONTENT.status, NO_CONTENT.content_type), (204, ""));
        assert!(NO_CONTENT.body().is_empty());
        assert_eq!(BAD_TARGET.body(), b"400 Bad Request");
        assert_eq!((BAD_TARGET.status, BAD_TARGET.close), (400, true));
        assert_eq!(INVALID_TOKEN.status, 401);
        assert_eq!(INVALID_TOKEN.content_type, "text/plain; charset=utf-8");
        assert_eq!((INVALID_TOKEN.close, NO_ROUTE.close), (false, false));
        assert_eq!(NO_ROUTE.status, 404);
        let parsed: serde_json::Value =
            serde_json::from_slice(NO_ROUTE.body()).expect("the 404 body is JSON");
        assert_eq!(parsed["errorCode"], "ERR_DIRECT_INVOKE");
    }
}
