//! The two kinds of socket the APIs are served on: TCP, and Unix domain sockets
//! (`--unix-domain-socket`). A listening socket is a [`Listener`] of either kind; a worker
//! waits on it through its runtime and accepts with a plain non-blocking `accept` (see
//! `accept.rs`); a connection is served by the same code over either kind of [`Stream`],
//! compiled once for each.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net as unix;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::shard::Accepted;

/// A listening socket of either kind.
#[derive(Debug)]
pub(super) enum Listener {
    Tcp(std::net::TcpListener),
    Unix(unix::UnixListener),
}

impl Listener {
    /// Another descriptor of the same socket: each worker accepts on its own.
    pub(super) fn try_clone(&self) -> io::Result<Listener> {
        Ok(match self {
            Listener::Tcp(l) => Listener::Tcp(l.try_clone()?),
            Listener::Unix(l) => Listener::Unix(l.try_clone()?),
        })
    }

    /// The TCP address, with the real port when 0 was asked; `None` for a Unix socket.
    pub(super) fn tcp_addr(&self) -> io::Result<Option<std::net::SocketAddr>> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Some),
            Listener::Unix(_) => Ok(None),
        }
    }

    /// Where the socket listens, for the log: an address, or a socket file's path.
    pub(super) fn name(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "a TCP socket".to_string(), |a| a.to_string()),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_else(|| "a Unix socket".to_string()),
        }
    }

    /// The socket twice: the runtime's handle, which says when a connection waits, beside the
    /// plain one that accepts it.
    pub(super) fn into_ready(self) -> io::Result<Ready> {
        Ok(match self {
            Listener::Tcp(l) => Ready::Tcp(monoio::net::TcpListener::from_std(l.try_clone()?)?, l),
            Listener::Unix(l) => {
                Ready::Unix(monoio::net::UnixListener::from_std(l.try_clone()?)?, l)
            }
        })
    }
}

/// A listening socket as a worker's runtime waits on it, beside the plain socket it accepts
/// on.
pub(super) enum Ready {
    Tcp(monoio::net::TcpListener, std::net::TcpListener),
    Unix(monoio::net::UnixListener, unix::UnixListener),
}

impl Ready {
    /// Accepts a connection without blocking (`WouldBlock` when none waits).
    pub(super) fn accept(&self) -> io::Result<Accepted> {
        Ok(match self {
            Ready::Tcp(_, l) => Accepted::Tcp(l.accept()?.0),
            Ready::Unix(_, l) => Accepted::Unix(l.accept()?.0),
        })
    }

    /// Until a connection waits.
    pub(super) async fn readable(&self) -> io::Result<()> {
        match self {
            Ready::Tcp(l, _) => l.readable(false).await,
            Ready::Unix(l, _) => l.readable(false).await,
        }
    }
}

/// A connection's socket on a worker's runtime, of either kind.
pub(super) trait Stream: AsyncReadRent + AsyncWriteRent + AsRawFd + 'static {
    /// Until the socket has something to read (bytes, end of stream or an error).
    fn readable(&self) -> impl Future<Output = io::Result<()>>;
}

impl Stream for monoio::net::TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        monoio::net::TcpStream::readable(self, false)
    }
}

impl Stream for monoio::net::UnixStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        monoio::net::UnixStream::readable(self, false)
    }
}
