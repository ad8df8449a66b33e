//! Accepting connections: every worker accepts on the same listening sockets, and the
//! connections are spread over the workers.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpStream, UnixStream};

use super::answering::Answering;
use super::conn;
use super::driver::Driver;
use super::socket::{Ready, Stream};
use super::worker::{ConnGuard, Worker};
use crate::metrics::Limit;
use crate::shard::{Accepted, Mail, ShardId};

/// The answer to a connection over `--max-connections`.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 26\r\nConnection: close\r\n\r\n\
too many open connections\n";

/// Accepted connections beyond the fewest any worker serves that a worker keeps; past that, it
/// hands the next one to the worker with the fewest.
const SPREAD_SLACK: usize = 1;
/// Connections accepted in a row before the accept task lets the others run.
const ACCEPT_BATCH: usize = 64;

/// Accepts connections on one listening socket that every worker shares, and spreads them.
///
/// The kernel wakes whichever workers wait on the socket, and one that is awake may take a
/// whole burst of connections (a client opening 64 at once) before another wakes: measured on
/// 2 workers, bursts of 64 split as unevenly as 13 to 51. So a worker keeps a connection only
/// while it serves at most [`SPREAD_SLACK`] more than the worker with the fewest, and
/// otherwise hands it to that worker through its inbox (the way forwarded requests travel):
/// the split is even within one or two, and a connection is handed at most once, when it
/// opens. The socket is accepted on with a plain non-blocking `accept` once the runtime says a
/// connection waits, so that a connection to hand on is a plain `std` stream.
pub(super) async fn accept_loop(worker: Rc<Worker>, listener: Ready) {
    let max = worker.shared.config.max_connections;
    loop {
        let mut accepted = 0;
        loop {
            match listener.accept() {
                Ok(stream) => {
                    let open = worker.shared.connections.fetch_add(1, Ordering::SeqCst);
                    place(&worker, stream, open >= max);
                    accepted += 1;
                    if accepted == ACCEPT_BATCH {
                        accepted = 0;
                        worker.yields.now().await;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // Interrupted, or a connection reset before it was accepted: the next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of file descriptors: back off a little instead of spinning, and keep
                    // serving.
                    // Rate-limited: with descriptors exhausted this repeats every 10 ms per
                    // worker.
                    static ACCEPT_ERRORS: crate::log::RateLimit = crate::log::RateLimit::new();
                    ACCEPT_ERRORS.error(
                        worker.shared.clock.now_ms(),
                        format_args!("accept failed on worker {}: {e}", worker.id.0),
                    );
                    monoio::time::sleep(Duration::from_millis(10)).await;
                    break;
                }
            }
        }
        let waiting = monoio::select! {
            r = listener.readable() => Some(r),
            _ = worker.shutdown.wait() => None,
        };
        match waiting {
            None => break,
            Some(Ok(())) => {}
            Some(Err(e)) => {
                static POLL_ERRORS: crate::log::RateLimit = crate::log::RateLimit::new();
                POLL_ERRORS.error(
                    worker.shared.clock.now_ms(),
                    format_args!(
                        "waiting for connections failed on worker {}: {e}",
                        worker.id.0
                    ),
                );
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // The socket closes once every worker has dropped its handles: from then on new
    // connections are refused.
}

/// Serves a connection just accepted here, refuses it (`over_limit`), or hands it to the
/// worker that serves the fewest. It is already counted in the process-wide connections.
fn place(worker: &Rc<Worker>, stream: Accepted, over_limit: bool) {
    let shared = &worker.shared;
    let me = worker.id;
    let count = |at: ShardId| {
        shared.open[at.0].fetch_add(1, Ordering::Relaxed);
    };
    if over_limit {
        count(me);
        let guard = ConnGuard::new(worker.clone());
        worker.metrics().limit(Limit::Connections, 1);
        shared.accepted[me.0].fetch_add(1, Ordering::Relaxed);
        match stream {
            Accepted::Tcp(s) => refuse(adopt_tcp(worker, s), guard),
            Accepted::Unix(s) => refuse(adopt_unix(worker, s), guard),
        }
        return;
    }
    let to = least_busy(&shared.open, me);
    // Once shutdown began, the worker handed to may already have stopped: a connection that
    // arrives now is served here (and closed as idle by the drain).
    if to != me && !shared.shutting_down.load(Ordering::SeqCst) {
        count(to);
        worker.outbox.request(to, Mail::Conn(stream));
        return;
    }
    count(me);
    take_on(worker, stream, ConnGuard::new(worker.clone()));
}

/// The worker a new connection should go to: `me` unless `me` serves more than
/// [`SPREAD_SLACK`] connections above the worker that serves the fewest (`open[i]` is what
/// worker `i` serves).
fn least_busy(open: &[AtomicUsize], me: ShardId) -> ShardId {
    if open.len() == 1 {
        return me;
    }
    let mine = open[me.0].load(Ordering::Relaxed);
    let (fewest, least) = open
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .enumerate()
        .min_by_key(|&(_, n)| n)
        .unwrap_or((me.0, mine));
    if mine > least + SPREAD_SLACK {
        ShardId(fewest)
    } else {
        me
    }
}

/// Starts serving a connection on this worker; `guard` counts it until it closes.
pub(super) fn take_on(worker: &Rc<Worker>, stream: Accepted, guard: ConnGuard) {
    worker.shared.accepted[worker.id.0].fetch_add(1, Ordering::Relaxed);
    // The guard uncounts a connection the runtime could not take.
    match stream {
        Accepted::Tcp(s) => {
            if let Some(s) = adopt_tcp(worker, s) {
                let _ = s.set_nodelay(true);
                serve(worker, s, guard);
            }
        }
        Accepted::Unix(s) => {
            if let Some(s) = adopt_unix(worker, s) {
                serve(worker, s, guard);
            }
        }
    }
}

/// Spawns the connection's task. The way it is answered was chosen at start, once for every
/// connection (see [`Answering`]).
fn serve<S: Stream>(worker: &Worker, stream: S, guard: ConnGuard) {
    match worker.answering {
        Answering::Locks => monoio::spawn(conn::serve::<conn::Locks, S>(guard, stream)),
        Answering::FixedAnswer => monoio::spawn(conn::serve::<conn::FixedAnswer, S>(guard, stream)),
    };
}

/// An accepted connection as this worker's runtime takes it: blocking for io_uring (which
/// polls for it), non-blocking for epoll, as the runtime's own accept leaves them. `None` (the
/// connection closed) if the runtime refuses the descriptor.
fn adopt_tcp(worker: &Worker, stream: std::net::TcpStream) -> Option<TcpStream> {
    if worker.driver == Driver::Legacy {
        stream.set_nonblocking(true).ok()?;
    }
    TcpStream::from_std(stream).ok()
}

/// [`adopt_tcp`] for a Unix domain socket.
fn adopt_unix(worker: &Worker, stream: std::os::unix::net::UnixStream) -> Option<UnixStream> {
    if worker.driver == Driver::Legacy {
        stream.set_nonblocking(true).ok()?;
    }
    UnixStream::from_std(stream).ok()
}

/// Answers a connection over `--max-connections` with a 503 and closes it.
fn refuse<S: Stream>(stream: Option<S>, guard: ConnGuard) {
    let Some(mut stream) = stream else {
        return;
    };
    monoio::spawn(async move {
        let write = stream.write_all(TOO_MANY_CONNECTIONS);
        let _ = monoio::time::timeout(Duration::from_secs(1), write).await;
        drop(guard);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(counts: &[usize]) -> Vec<AtomicUsize> {
        counts.iter().map(|&n| AtomicUsize::new(n)).collect()
    }

    // A worker keeps a new connection while it serves at most one more than the least busy
    // worker, and hands it to that worker past that; alone, it keeps everything. A burst that
    // one worker accepts thus ends split evenly.
    #[test]
    fn connections_go_to_the_least_busy_worker_past_the_slack() {
        assert_eq!(least_busy(&open(&[50]), ShardId(0)), ShardId(0));
        assert_eq!(least_busy(&open(&[1, 0]), ShardId(0)), ShardId(0));
        assert_eq!(least_busy(&open(&[2, 0]), ShardId(0)), ShardId(1));
        assert_eq!(least_busy(&open(&[3, 2, 1]), ShardId(0)), ShardId(2));
        assert_eq!(least_busy(&open(&[0, 5]), ShardId(1)), ShardId(0));
        // 64 connections accepted by worker 0 of 2, each placed as `place` places it.
        let counts = open(&[0, 0]);
        for _ in 0..64 {
            let to = least_busy(&counts, ShardId(0));
            counts[to.0].fetch_add(1, Ordering::Relaxed);
        }
        let split: Vec<usize> = counts.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        assert!(split[0].abs_diff(split[1]) <= 2, "{split:?}");
    }
}
