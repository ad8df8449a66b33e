//! dlockd: a drop-in server for the Dapr Distributed Lock API.
//!
//! The data flows one way: socket bytes → [`http`] frames a request → [`api`] decodes and
//! validates → [`shard`] routes it → [`lease`] decides → [`api`] encodes the answer →
//! [`http`] writes it. A request never goes back up a layer, and [`lease`] never learns
//! about HTTP.
#![deny(unsafe_code)]

pub mod api;
pub mod clock;
pub mod components;
pub mod config;
pub mod dispatch;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod lease;
pub mod log;
pub mod metrics;
pub mod persist;
pub mod server;
pub mod shard;
pub mod store;
pub mod task;
