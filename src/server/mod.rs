//! The workers' runtime: one pinned thread per shard, each a single-threaded monoio runtime
//! accepting on the process's HTTP sockets, with its shard's lease table and its inbox; and
//! the admin and gRPC threads beside them.
//!
//! Start-up (`start.rs`) binds every listening socket first (HTTP, gRPC, admin;
//! `listen.rs`), so that an address in use stops the start before anything is served, then
//! starts every worker (`thread.rs`) and returns once all of them accept; the returned
//! [`Server`] (`handle.rs`) stops them. The io drivers and the io_uring runtime are in
//! `driver.rs`, and why a start fails ([`StartError`]) in `error.rs`. The binaries' signal
//! handling and start-up lines are in `run.rs`.
//!
//! A worker's state is `worker.rs`; its tasks: accepting (`accept.rs`), one per connection
//! (`conn.rs`), its inbox (`inbound.rs`), housekeeping (`housekeeping.rs`), and acquires that
//! wait (`waits.rs`).

mod accept;
mod admin;
mod answering;
mod conn;
mod driver;
mod durable;
mod error;
mod grpc;
mod handle;
mod housekeeping;
mod inbound;
mod linger;
mod listen;
mod pending;
mod reaper;
mod run;
mod shared;
mod signal;
mod socket;
mod start;
mod thread;
mod unix_listen;
mod waits;
mod worker;

pub use answering::Answering;
pub use driver::Driver;
pub use error::StartError;
pub use handle::Server;
pub use listen::BindError;
pub use run::run_until_signal;

use crate::config::Config;

/// Starts every worker, answering the Dapr lock API, and returns once all of them serve.
pub fn start(config: Config) -> Result<Server, StartError> {
    start::start(config, Answering::Locks)
}

/// [`start`], answering as `answering` says.
pub fn start_answering(config: Config, answering: Answering) -> Result<Server, StartError> {
    start::start(config, answering)
}
