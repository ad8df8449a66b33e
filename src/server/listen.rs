//! The listening sockets, bound before anything is served: one socket per address, shared by
//! every thread that accepts on it, and never with `SO_REUSEPORT`.
//!
//! Two lease tables behind one address grant one lock twice, so no other process may ever
//! serve an address dlockd serves. Linux lets a second socket bind a listening address only
//! when both sockets carry `SO_REUSEPORT` (and belong to the same user): a socket without it
//! refuses every later bind on its address, whatever the newcomer sets, and a bind on an
//! address another process listens on fails, whatever that process set. `SO_REUSEADDR` is set,
//! as every server sets it, so that connections of a previous run in `TIME_WAIT` do not hold
//! the port; Linux never lets it join a listening socket. The check is the bind itself, so
//! there is no window between a check and the bind in which another process could join.
//!
//! The workers share each HTTP socket (each accepts on its own duplicate of the descriptor);
//! see `worker::accept_loop` for how connections are spread over them.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Connections the kernel queues for accept on one socket before it refuses more.
pub(super) const BACKLOG: i32 = 4096;

/// A listening address that could not be bound, with the flag that asked for it.
#[derive(Debug)]
pub struct BindError {
    pub flag: &'static str,
    /// The address, or the path of a Unix socket, as the operator wrote it.
    pub addr: String,
    pub error: io::Error,
}

impl BindError {
    fn new(flag: &'static str, addr: SocketAddr, error: io::Error) -> BindError {
        BindError {
            flag,
            addr: addr.to_string(),
            error,
        }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let BindError { flag, addr, error } = self;
        match error.kind() {
            io::ErrorKind::AddrInUse => write!(
                f,
                "{flag} {addr}: address in use (another process listens there)"
            ),
            _ => write!(f, "{flag} {addr}: {error}"),
        }
    }
}

/// Binds every address of one flag: a port of 0 is chosen by the kernel for the first
/// address and then asked for the others, so that a name such as `localhost:0` serves one port
/// on each of its addresses.
pub(super) fn bind_all(
    flag: &'static str,
    addrs: &[SocketAddr],
) -> Result<Vec<TcpListener>, BindError> {
    let mut bound: Vec<TcpListener> = Vec::with_capacity(addrs.len());
    for &asked in addrs {
        let mut addr = asked;
        if let Some(first) = bound.first() {
            if addr.port() == 0 {
                let port = first
                    .local_addr()
                    .map_err(|error| BindError::new(flag, addr, error))?
                    .port();
                addr.set_port(port);
            }
        }
        bound.push(bind(addr).map_err(|error| BindError::new(flag, addr, error))?);
    }
    Ok(bound)
}

/// One listening TCP socket on `addr`, non-blocking (both io drivers and tokio want that).
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    // No second socket joins an address we listen on, whether or not it sets SO_REUSEPORT:
    // the property that keeps two lease tables from sharing one address.
    #[test]
    fn no_socket_joins_a_bound_address() {
        let ours = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = ours.local_addr().expect("addr");
        for reuse_port in [false, true] {
            let other = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
            other.set_reuse_address(true).expect("SO_REUSEADDR");
            other.set_reuse_port(reuse_port).expect("SO_REUSEPORT");
            let err = other.bind(&addr.into()).expect_err("the bind must fail");
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{reuse_port}: {err}");
        }
        // Our own bind on an address someone else listens on fails the same way, even when
        // that someone set SO_REUSEPORT.
        let theirs = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        theirs.set_reuse_port(true).expect("SO_REUSEPORT");
        theirs
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())
            .expect("bind");
        theirs.listen(8).expect("listen");
        let taken = theirs
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet");
        let err = bind(taken).expect_err("taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let err = BindError::new("--listen", taken, err);
        assert_eq!(
            err.to_string(),
            format!("--listen {taken}: address in use (another process listens there)")
        );
    }

    // A port of 0 is chosen once, for every address of the flag.
    #[test]
    fn port_zero_is_one_port_for_every_address() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.2:0".parse().expect("addr"),
        ];
        let bound = bind_all("--listen", &addrs).expect("bind");
        let ports: Vec<u16> = bound
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        assert_ne!(ports[0], 0);
        assert_eq!(ports[0], ports[1]);
    }
}
