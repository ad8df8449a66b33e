#![allow(dead_code)]
//! A blocking gRPC client for the tests: tonic over one HTTP/2 connection.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// No call may take longer than this; a hung call fails its test instead of hanging it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A blocking gRPC client: one HTTP/2 connection (a tonic channel) driven by a current-thread
/// tokio runtime of its own, with an optional `dapr-api-token` sent on every call.
pub struct GrpcClient {
    pub runtime: tokio::runtime::Runtime,
    pub channel: Channel,
    pub token: Option<String>,
}

impl GrpcClient {
    /// Connects to `addr`; the HTTP/2 connection is up when this returns.
    pub fn connect(addr: SocketAddr) -> GrpcClient {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the client");
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .expect("a valid endpoint")
            .tcp_nodelay(true)
            .connect_timeout(CALL_TIMEOUT);
        let channel = runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, endpoint.connect()).await })
            .expect("the gRPC connection within the timeout")
            .expect("the gRPC port accepts an HTTP/2 connection");
        GrpcClient {
            runtime,
            channel,
            token: None,
        }
    }

    /// Sends `token` as `dapr-api-token` on every call from now on.
    pub fn with_token(mut self, token: &str) -> GrpcClient {
        self.token = Some(token.to_string());
        self
    }

    /// One unary call of `path` with `message`; the whole answer, or its status.
    pub fn call<M, R>(&self, path: &str, message: M) -> Result<tonic::Response<R>, Status>
    where
        M: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let path = PathAndQuery::try_from(path).expect("a valid method path");
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert(
                "dapr-api-token",
                token.parse().expect("a token that is valid metadata"),
            );
        }
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let call = async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))?;
            grpc.unary(request, path, tonic_prost::ProstCodec::default())
                .await
        };
        self.runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await })
            .expect("an answer within the call timeout")
    }
}
