//! dlockd: a drop-in server for the Dapr Distributed Lock API.
//!
//! The data flows one way: socket bytes → [`http`] frames a request → [`api`] decodes and
//! validates it into a lock operation → [`dispatch`], the one decision step every face takes
//! (HTTP connections, the gRPC face, the fuzzers), says who decides it: this shard's
//! [`lease`] table, the shard that owns the key (through the [`shard`] mailboxes), or a remote
//! [`store`] → [`api`] encodes the answer → [`http`] writes it. A request never goes back up a
//! layer, [`dispatch`] and [`lease`] do no I/O and take the time as an argument, and [`lease`]
//! never learns about HTTP. [`server`] only carries the decisions out: it frames, asks,
//! awaits in request order and writes.
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
