//! Connection deadlines without a timer per read.
//!
//! Arming a monoio timeout around every read and write (and a `select!` against shutdown)
//! cost more instructions per request than locking itself (callgrind: the timeout and select
//! futures are moved by value on every read, and each arms and cancels a timer). Instead,
//! each connection writes its current deadline into a worker-local table before it waits,
//! and one reaper task per worker sweeps the table a few times per timeout period. A
//! connection past its deadline has its socket shut down, which completes the pending read
//! (end of stream) or write (error) on either io driver; the connection then closes as on
//! any end of stream. At shutdown, idle connections are shut for reading at once.
//!
//! A waiting reader is shut for reading only: bytes that already arrived are still read and
//! answered, and the answer can still be written. A blocked writer (a client that does not
//! read) is shut both ways, which fails the write.

use std::cell::RefCell;
use std::os::fd::RawFd;

use slab::Slab;

/// What a connection is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Between requests: closed at once when the worker shuts down.
    Idle,
    /// Part of a request has arrived.
    Reading,
    /// Its answers are being written.
    Writing,
    /// An acquire of its waits for a lock: not idle, so shutdown does not close it (waiters
    /// are answered instead); past the deadline it is shut for reading, which ends the wait.
    Waiting,
}

struct Entry {
    fd: RawFd,
    deadline_ms: u64,
    phase: Phase,
    /// Already shut down: do not shut it again.
    reaped: bool,
}

#[derive(Default)]
pub(crate) struct Reaper {
    entries: RefCell<Slab<Entry>>,
}

impl Reaper {
    /// Watches a connection's socket until the returned guard is dropped. The guard must be
    /// dropped before the socket is closed (declare it after the stream).
    pub(crate) fn watch(&self, fd: RawFd) -> Watch<'_> {
        let key = self.entries.borrow_mut().insert(Entry {
            fd,
            deadline_ms: u64::MAX,
            phase: Phase::Idle,
            reaped: false,
        });
        Watch { reaper: self, key }
    }

    /// Shuts down every watched socket past its deadline at `now_ms`, and with `closing`
    /// every idle one. Says how many it shut, and why.
    pub(crate) fn sweep(&self, now_ms: u64, closing: bool) -> Swept {
        let mut swept = Swept::default();
        for (_, e) in self.entries.borrow_mut().iter_mut() {
            let timed_out = now_ms >= e.deadline_ms;
            let expired = timed_out || (closing && e.phase == Phase::Idle);
            if expired && !e.reaped {
                e.reaped = true;
                let how = match e.phase {
                    Phase::Writing => std::net::Shutdown::Both,
                    Phase::Idle | Phase::Reading | Phase::Waiting => std::net::Shutdown::Read,
                };
                shutdown(e.fd, how);
                let count = match (timed_out, e.phase) {
                    (false, _) => &mut swept.closed_idle,
                    (true, Phase::Idle) => &mut swept.idle_timeouts,
                    (true, Phase::Reading | Phase::Waiting) => &mut swept.read_timeouts,
                    (true, Phase::Writing) => &mut swept.write_timeouts,
                };
                *count += 1;
            }
        }
        swept
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}

/// What one sweep shut, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Past the idle timeout between requests.
    pub idle_timeouts: u64,
    /// Past the head or body timeout while a request arrived.
    pub read_timeouts: u64,
    /// Past the write deadline: a client that does not read its answers.
    pub write_timeouts: u64,
    /// Idle at shutdown.
    pub closed_idle: u64,
}

impl Swept {
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.idle_timeouts + self.read_timeouts + self.write_timeouts + self.closed_idle
    }
}

/// A connection's entry in the reaper's table.
pub(crate) struct Watch<'r> {
    reaper: &'r Reaper,
    key: usize,
}

impl Watch<'_> {
    /// Sets what the connection waits for and until when.
    #[inline]
    pub(crate) fn arm(&self, phase: Phase, deadline_ms: u64) {
        if let Some(e) = self.reaper.entries.borrow_mut().get_mut(self.key) {
            e.phase = phase;
            e.deadline_ms = deadline_ms;
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.reaper.entries.borrow_mut().remove(self.key);
    }
}

/// Shuts down a watched socket; errors (a socket the peer already reset) are of no interest.
#[allow(unsafe_code)]
fn shutdown(fd: RawFd, how: std::net::Shutdown) {
    // SAFETY: `fd` is the socket (TCP or Unix) of a connection whose `Watch` is still in the
    // table: the connection task owns the stream for its whole life and drops its `Watch`
    // before the stream (the guard is declared after it), on this same thread, so the
    // descriptor is open and still that socket while `fd` borrows it here; a borrowed
    // descriptor is never closed.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&fd).shutdown(how);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    // Only expired entries are shut, each once; idle ones go at shutdown; a reader is shut
    // for reading (it sees end of stream) while a writer is shut both ways.
    #[test]
    fn sweeps_what_expired() {
        let reaper = Reaper::default();
        let (_client1, server1) = pair();
        let (_client2, server2) = pair();
        let (_client3, server3) = pair();
        let w1 = reaper.watch(server1.as_raw_fd());
        let w2 = reaper.watch(server2.as_raw_fd());
        let w3 = reaper.watch(server3.as_raw_fd());
        w1.arm(Phase::Reading, 100);
        w2.arm(Phase::Idle, 1000);
        w3.arm(Phase::Writing, 5000);
        assert_eq!(reaper.sweep(99, false).total(), 0);
        let swept = reaper.sweep(100, false);
        assert_eq!(swept.total(), 1);
        assert_eq!(swept.read_timeouts, 1, "counted as a read timeout");
        assert_eq!(reaper.sweep(100, false).total(), 0, "shut once");
        let mut b = [0u8; 1];
        assert_eq!((&server1).read(&mut b).expect("eof"), 0);
        assert_eq!(
            reaper.sweep(200, true),
            Swept {
                closed_idle: 1,
                ..Swept::default()
            },
            "idle connections go at shutdown, and that is no timeout"
        );
        assert_eq!((&server2).read(&mut b).expect("eof"), 0);
        assert_eq!(reaper.sweep(5000, true).write_timeouts, 1);
        assert!(
            std::io::Write::write(&mut &server3, b"x").is_err(),
            "writer shut both ways"
        );
        drop(w1);
        assert_eq!(reaper.len(), 2);
    }
}
