//! The gRPC face's state and its checks: the [`Front`] every call goes through (the token,
//! validation, the way to the shard that owns a key), and daprd's answers it builds: the
//! `Unauthenticated` status with its `ErrorInfo`, the `GetMetadata` answer, a validation's
//! rejection as a status.

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::proto::{
    self, ErrorInfo, GetMetadataRequest, GetMetadataResponse, ProtoAny, RpcStatus, TryLockRequest,
    TryLockResponse, UnlockRequest, UnlockResponse, ERROR_INFO_TYPE,
};
use crate::api::{
    lease_error_rejection, store_failure_rejection, Answer, LockOp, LockValidator, RejectCode,
    Rejection,
};
use crate::lease::Key;
use crate::server::shared::Shared;
use crate::shard::{Mail, RemoteLock, ShardMap};

/// How long a request waits for room in its shard's inbox before it is refused.
pub(super) const INBOX_WAIT: Duration = Duration::from_secs(2);

/// What the gRPC thread needs: the validation, the routing, the workers' inboxes, and the
/// metadata answer.
pub(super) struct Front {
    pub(super) validator: LockValidator,
    pub(super) router: ShardMap,
    pub(super) shared: Arc<Shared>,
    pub(super) metadata: GetMetadataResponse,
}

impl Front {
    /// daprd's token check, made before a method runs (and before an unknown method is
    /// refused): a missing token and a wrong one are both `Unauthenticated`, answered as
    /// daprd answers them (see [`unauthorized`]). `given` is the first `dapr-api-token` value.
    pub(super) fn authenticate(&self, given: Option<&[u8]>) -> Result<(), Status> {
        if !self.validator.wants_token() {
            return Ok(());
        }
        let Some(given) = given else {
            return Err(unauthorized("missing api token in request metadata"));
        };
        if self.validator.token_ok(Some(given)) {
            Ok(())
        } else {
            Err(unauthorized("authentication error: api token mismatch"))
        }
    }

    /// `GetMetadata`: what the JavaScript SDK asks before its first call and for its health
    /// check.
    pub(super) fn get_metadata(
        &self,
        request: &Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        self.authenticate(token_of(request.metadata()))?;
        Ok(Response::new(self.metadata.clone()))
    }

    /// Sends `op` to the shard that owns its key and waits for the decision.
    pub(super) async fn decide(&self, op: LockOp<'_>) -> Result<Answer, Status> {
        let shard = self.router.shard_of(op.store, op.resource);
        let (answer, answered) = tokio::sync::oneshot::channel();
        // A batch of one: messages between threads travel in batches.
        let mut mail = vec![Mail::Remote(RemoteLock {
            kind: op.kind,
            store: op.store,
            key: Key::new(op.resource, op.owner),
            answer,
        })];
        let inbox = &self.shared.inboxes[shard.0];
        let deadline = tokio::time::Instant::now() + INBOX_WAIT;
        loop {
            if self.shared.shutting_down() {
                return Err(Status::unavailable("dlockd is shutting down"));
            }
            match inbox.send_requests(mail) {
                Ok(()) => break,
                Err(back) if tokio::time::Instant::now() < deadline => {
                    mail = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(_) => return Err(Status::unavailable("the shard's inbox stayed full")),
            }
        }
        match answered.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(failure)) => Err(status_of(store_failure_rejection(
                failure.op,
                &failure.error.to_string(),
            ))),
            Err(_) => Err(Status::unavailable("dlockd is shutting down")),
        }
    }

    pub(super) async fn try_lock(
        &self,
        request: Request<TryLockRequest>,
    ) -> Result<Response<TryLockResponse>, Status> {
        self.authenticate(token_of(request.metadata()))?;
        let r = request.into_inner();
        let op = self
            .validator
            .try_lock(
                r.store_name.as_bytes(),
                r.resource_id.as_bytes(),
                r.lock_owner.as_bytes(),
                r.expiry_in_seconds,
            )
            .map_err(status_of)?;
        match self.decide(op).await? {
            Answer::TryLock(Ok(success)) => Ok(Response::new(TryLockResponse { success })),
            Answer::Granted { token, .. } | Answer::StoreGranted { token } => {
                let mut response = Response::new(TryLockResponse { success: true });
                response
                    .metadata_mut()
                    .insert("dapr-lock-fence", token.into());
                Ok(response)
            }
            Answer::TryLock(Err(cause)) => Err(status_of(lease_error_rejection(
                crate::api::Operation::TryLock,
                cause,
            ))),
            Answer::Unlock(_)
            | Answer::Renew(_)
            | Answer::Renewed { .. }
            | Answer::StoreRenewed { .. }
            | Answer::Holder(_) => {
                Err(Status::internal("another operation's answer to a try-lock"))
            }
        }
    }

    pub(super) async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        self.authenticate(token_of(request.metadata()))?;
        let r = request.into_inner();
        let op = self
            .validator
            .unlock(
                r.store_name.as_bytes(),
                r.resource_id.as_bytes(),
                r.lock_owner.as_bytes(),
            )
            .map_err(status_of)?;
        match self.decide(op).await? {
            Answer::Unlock(status) => Ok(Response::new(UnlockResponse {
                status: status as i32,
            })),
            _ => Err(Status::internal("a try-lock answer to an unlock")),
        }
    }
}

/// The first `dapr-api-token` value of a call's metadata.
pub(super) fn token_of(metadata: &MetadataMap) -> Option<&[u8]> {
    metadata.get("dapr-api-token").map(|v| v.as_bytes())
}

/// daprd's answer to a call without the right token, as its `ErrorFromHTTPResponseCode` builds
/// it for HTTP status 401: code `Unauthenticated`, message `Unauthorized` (the HTTP status
/// text), and in `grpc-status-details-bin` a `google.rpc.Status` of the same code and message
/// with one `google.rpc.ErrorInfo`: reason `Unauthorized`, domain `dapr.io`, metadata
/// `http.code` = `401` and `http.error_message` = `text`, cut to its first 63 bytes as daprd
/// cuts it (ErrorInfo metadata values are limited to 64 characters).
pub(super) fn unauthorized(text: &str) -> Status {
    const REASON: &str = "Unauthorized";
    const MAX_TEXT_BYTES: usize = 63;
    let mut cut = text.len().min(MAX_TEXT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let info = ErrorInfo {
        reason: REASON.to_string(),
        domain: "dapr.io".to_string(),
        metadata: [
            ("http.code".to_string(), "401".to_string()),
            ("http.error_message".to_string(), text[..cut].to_string()),
        ]
        .into(),
    };
    let details = RpcStatus {
        code: tonic::Code::Unauthenticated as i32,
        message: REASON.to_string(),
        details: vec![ProtoAny {
            type_url: ERROR_INFO_TYPE.to_string(),
            value: prost::Message::encode_to_vec(&info),
        }],
    };
    Status::with_details(
        tonic::Code::Unauthenticated,
        REASON,
        prost::Message::encode_to_vec(&details).into(),
    )
}

/// The `GetMetadata` answer of a daprd whose only components are these lock stores, with no
/// app channel, actors or workflows: what daprd fills in that case (its runtime version is
/// dlockd's, as over HTTP).
pub(super) fn metadata_of(config: &crate::config::Config) -> GetMetadataResponse {
    let version = env!("CARGO_PKG_VERSION").to_string();
    GetMetadataResponse {
        id: config.app_id.clone(),
        registered_components: config
            .stores
            .iter()
            .zip(&config.backends)
            .map(|(name, backend)| proto::RegisteredComponents {
                name: name.clone(),
                r#type: backend.type_name().to_string(),
                version: "v1".to_string(),
                // daprd reports capabilities for state stores, pub/sub, bindings and secret
                // stores only.
                capabilities: Vec::new(),
            })
            .collect(),
        extended_metadata: [("daprRuntimeVersion".to_string(), version.clone())].into(),
        app_connection_properties: Some(proto::AppConnectionProperties {
            port: 0,
            protocol: "http".to_string(),
            channel_address: "127.0.0.1".to_string(),
            max_concurrency: 0,
        }),
        runtime_version: version,
        enabled_features: Vec::new(),
        actor_runtime: Some(proto::ActorRuntime {
            runtime_status: proto::ACTOR_RUNTIME_DISABLED,
            placement: "placement: disconnected".to_string(),
        }),
        workflows: Some(proto::MetadataWorkflows {
            connected_workers: 0,
        }),
    }
}

pub(super) fn status_of(rejection: Rejection) -> Status {
    let code = match rejection.code {
        RejectCode::FailedPrecondition => tonic::Code::FailedPrecondition,
        RejectCode::InvalidArgument => tonic::Code::InvalidArgument,
        RejectCode::Internal => tonic::Code::Internal,
    };
    Status::new(code, rejection.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_of(status: &Status) -> ErrorInfo {
        let details: RpcStatus = prost::Message::decode(status.details()).expect("a Status");
        assert_eq!(details.details.len(), 1);
        assert_eq!(details.details[0].type_url, ERROR_INFO_TYPE);
        prost::Message::decode(details.details[0].value.as_slice()).expect("an ErrorInfo")
    }

    // daprd cuts the text of its ErrorInfo to 63 bytes (`>= 63` keeps the first 63), and never
    // inside a character here.
    #[test]
    fn unauthorized_text_is_cut_as_daprd_cuts_it() {
        let short = "x".repeat(62);
        assert_eq!(
            info_of(&unauthorized(&short)).metadata["http.error_message"],
            short
        );
        let long = "y".repeat(63) + "z";
        assert_eq!(
            info_of(&unauthorized(&long)).metadata["http.error_message"],
            "y".repeat(63)
        );
        let wide = "é".repeat(40);
        let cut = &info_of(&unauthorized(&wide)).metadata["http.error_message"];
        assert_eq!(cut.len(), 62, "{cut}");
        let status = unauthorized("missing api token in request metadata");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), "Unauthorized");
        let info = info_of(&status);
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("Unauthorized", "dapr.io")
        );
        assert_eq!(info.metadata["http.code"], "401");
    }
}
