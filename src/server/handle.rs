//! The handle of a running server: what it serves and where, and its shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::driver::Driver;
use super::shared::Shared;
use super::unix_listen::SocketFile;
use super::{admin, grpc};
use crate::persist::LastStop;

/// A running server.
pub struct Server {
    /// The HTTP addresses, as bound (with the real port when 0 was asked).
    pub(super) addrs: Vec<SocketAddr>,
    pub(super) driver: Driver,
    /// Set when the driver is not the one asked for, with the reason.
    pub(super) fallback: Option<String>,
    pub(super) shared: Arc<Shared>,
    pub(super) exited: mpsc::Receiver<usize>,
    pub(super) running: usize,
    /// The admin listener's thread, unless `--metrics-listen off`.
    pub(super) admin: Option<admin::Admin>,
    /// The gRPC listener's thread, unless `--grpc-listen off`.
    pub(super) grpc: Option<grpc::Grpc>,
    /// With `--unix-domain-socket`, its socket files: removed when the server is dropped,
    /// after the workers and the gRPC thread have stopped (or been told to).
    pub(super) files: Vec<SocketFile>,
}

impl Server {
    /// The (first) address the workers listen on, with the real port when 0 was asked.
    ///
    /// # Panics
    ///
    /// With `--unix-domain-socket`, which serves HTTP on no TCP address: see
    /// [`Server::unix_sockets`].
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every HTTP address served: more than one when `--listen` named a host with several,
    /// none with `--unix-domain-socket`.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// With `--unix-domain-socket`: the socket files of the HTTP and gRPC APIs.
    pub fn unix_sockets(&self) -> Vec<&Path> {
        self.files.iter().map(SocketFile::path).collect()
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Why the legacy driver runs when io_uring was preferred.
    pub fn driver_fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Where `/metrics` and `/debug/*` are served (with the real port when 0 was asked), or
    /// `None` with `--metrics-listen off`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addrs()[0])
    }

    /// Where the gRPC API is served (with the real port when 0 was asked), or `None` with
    /// `--grpc-listen off` or on a Unix socket.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc
            .as_ref()
            .and_then(|g| g.local_addrs().first().copied())
    }

    pub fn workers(&self) -> usize {
        self.shared.inboxes.len()
    }

    /// Connections each worker has taken on so far (accepted, or handed by another worker).
    pub fn accepted_per_worker(&self) -> Vec<u64> {
        self.shared
            .accepted
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// With `--data-dir`: the data dir and how the last run ended.
    pub fn restart_safety(&self) -> Option<(&std::path::Path, LastStop)> {
        self.shared.persist.as_ref().map(|p| (p.dir(), p.last_stop))
    }

    /// What restart safety found at start that the operator should know.
    pub fn restart_notes(&self) -> &[String] {
        self.shared.persist.as_ref().map_or(&[], |p| &p.notes)
    }

    /// Stops accepting, lets in-flight requests finish and closes idle connections; waits up
    /// to `timeout` for every worker to stop. True if all stopped in time.
    pub fn shutdown(mut self, timeout: Duration) -> bool {
        // gRPC first: its calls in flight are answered by the workers, still running. It gets
        // half of the time; the workers the rest.
        let deadline = Instant::now() + timeout;
        // Waiting acquires end first, on every face: a gRPC call waiting for a lock ends
        // before the gRPC listener is stopped.
        self.shared.close_waits();
        if let Some(grpc) = self.grpc.take() {
            grpc.stop(timeout / 2);
        }
        self.shared.begin_shutdown();
        while self.running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.exited.recv_timeout(left) {
                Ok(_) => self.running -= 1,
                Err(_) => return false,
            }
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        self.shared.save_snapshot();
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
    }
}
