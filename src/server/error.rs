//! Why the server could not start.

use std::fmt;

use super::driver::Driver;
use super::listen::BindError;
use crate::persist::PersistError;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// An address of `--listen`, `--grpc-listen` or `--metrics-listen` could not be bound.
    Bind(BindError),
    /// A worker's runtime refused a listening socket.
    Listener(std::io::Error),
    Runtime(Driver, std::io::Error),
    UringUnavailable,
    Thread(std::io::Error),
    WorkerDied(usize),
    Persist(PersistError),
    /// A lock store that cannot be served: its name and why.
    Store(String, String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(e) => e.fmt(f),
            StartError::Listener(e) => write!(f, "cannot accept on a listening socket: {e}"),
            StartError::Runtime(driver, e) => write!(f, "cannot build the {driver} runtime: {e}"),
            StartError::UringUnavailable => {
                f.write_str("io_uring is not available here (--io-driver uring was asked)")
            }
            StartError::Thread(e) => write!(f, "cannot start a worker thread: {e}"),
            StartError::WorkerDied(i) => write!(f, "worker {i} stopped during start-up"),
            StartError::Persist(e) => e.fmt(f),
            StartError::Store(name, why) => write!(f, "lock store {name}: {why}"),
        }
    }
}

impl std::error::Error for StartError {}
