//! Stores whose leases live elsewhere than this server's own lease tables: the seam between a
//! worker and a remote store. Two kinds: Redis (`lock.redis`), shared with daprd sidecars, and
//! etcd (`lock.etcd`), dlockd's own.
//!
//! A remote store is a [`RemoteStore`]: a worker hands it an operation with the slot its answer
//! goes to, and the store delivers the outcome through [`Deliver`], later, on the worker's own
//! thread: the decision, or a [`StoreFailure`]. [`open`] builds the store of a component; a new
//! kind of store is one module implementing [`RemoteStore`] and one arm there, and nothing in
//! the connection or worker code changes.

pub mod etcd;
pub mod redis;
mod seam;

pub use seam::{Deliver, LocalFuture, RemoteStore, StoreError, StoreFailure, StoreOutcome};

use std::rc::Rc;

use crate::components::Backend;

/// Whether the store of a component can be served; else why not, for the start-up error.
pub fn check(backend: &Backend) -> Result<(), String> {
    match backend {
        Backend::InMemory | Backend::Redis(_) => Ok(()),
        Backend::Etcd(settings) => etcd::check(settings),
    }
}

/// The remote store of a component, or `None` for one this server's lease tables hold. Each
/// kind of store is one arm.
pub fn open(backend: &Backend, app_id: &str, store: &str) -> Option<Rc<dyn RemoteStore>> {
    match backend {
        Backend::InMemory => None,
        Backend::Redis(settings) => Some(redis::RedisClient::new(
            settings.clone(),
            settings.key_prefix.key_head(app_id, store),
        )),
        Backend::Etcd(settings) => Some(etcd::EtcdStore::new(
            settings,
            settings.key_prefix.key_head(app_id, store),
        )),
    }
}
