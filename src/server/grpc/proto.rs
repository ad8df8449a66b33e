//! The messages of `dapr.proto.runtime.v1` the gRPC face reads and writes, and the
//! `google.rpc` messages of daprd's error details, written out with prost's derive (field
//! numbers and types as in dapr/proto/runtime/v1/dapr.proto and google/rpc/*.proto).

use std::collections::BTreeMap;

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

/// `dapr.proto.runtime.v1.UnlockResponse`; `status` is the `Status` enum (0 success, 1 lock
/// does not exist, 2 belongs to others, 3 internal error), an int32 on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnlockResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `dapr.proto.runtime.v1.GetMetadataRequest`: empty.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMetadataRequest {}

/// `dapr.proto.runtime.v1.GetMetadataResponse`, the fields a sidecar with only lock stores
/// fills (2, 5, 6, 11 and up stay empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMetadataResponse {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, repeated, tag = "3")]
    pub registered_components: Vec<RegisteredComponents>,
    #[prost(btree_map = "string, string", tag = "4")]
    pub extended_metadata: BTreeMap<String, String>,
    #[prost(message, optional, tag = "7")]
    pub app_connection_properties: Option<AppConnectionProperties>,
    #[prost(string, tag = "8")]
    pub runtime_version: String,
    #[prost(string, repeated, tag = "9")]
    pub enabled_features: Vec<String>,
    #[prost(message, optional, tag = "10")]
    pub actor_runtime: Option<ActorRuntime>,
    #[prost(message, optional, tag = "12")]
    pub workflows: Option<MetadataWorkflows>,
}

/// `dapr.proto.runtime.v1.RegisteredComponents`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisteredComponents {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub r#type: String,
    #[prost(string, tag = "3")]
    pub version: String,
    #[prost(string, repeated, tag = "4")]
    pub capabilities: Vec<String>,
}

/// `dapr.proto.runtime.v1.AppConnectionProperties`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppConnectionProperties {
    #[prost(int32, tag = "1")]
    pub port: i32,
    #[prost(string, tag = "2")]
    pub protocol: String,
    #[prost(string, tag = "3")]
    pub channel_address: String,
    #[prost(int32, tag = "4")]
    pub max_concurrency: i32,
}

/// `dapr.proto.runtime.v1.ActorRuntime`; `runtime_status` is its enum (0 initializing,
/// 1 disabled, 2 running).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ActorRuntime {
    #[prost(int32, tag = "1")]
    pub runtime_status: i32,
    #[prost(string, tag = "4")]
    pub placement: String,
}

/// `ActorRuntime.ActorRuntimeStatus.DISABLED`.
pub const ACTOR_RUNTIME_DISABLED: i32 = 1;

/// `dapr.proto.runtime.v1.MetadataWorkflows`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetadataWorkflows {
    #[prost(int32, tag = "1")]
    pub connected_workers: i32,
}

/// `google.rpc.Status`: what `grpc-status-details-bin` carries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.ErrorInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorInfo {
    #[prost(string, tag = "1")]
    pub reason: String,
    #[prost(string, tag = "2")]
    pub domain: String,
    #[prost(btree_map = "string, string", tag = "3")]
    pub metadata: BTreeMap<String, String>,
}

/// The type URL of [`ErrorInfo`] inside an [`ProtoAny`].
pub const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
