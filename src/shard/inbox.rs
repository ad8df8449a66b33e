//! A worker's inbox: two bounded lock-free queues (requests from other shards, and replies
//! to requests this worker forwarded) and one waker.
//!
//! Wake-ups cost far more than messages on these machines (a parked monoio thread takes
//! 45–70 µs to wake), so a sender wakes the receiver only when the receiver has said it may
//! park: the receiver sets `parked` before its last look at the queues, and a sender checks
//! `parked` after its push. A SeqCst fence on each side orders the flag against the queue, so
//! either the sender sees `parked` and wakes, or the receiver sees the message. A busy
//! receiver therefore costs its senders no syscall at all.
//!
//! Requests and replies have separate queues so that replies can never be stuck behind a full
//! request queue: the caller bounds its outstanding requests by the reply capacity, so a
//! reply push never fails and every worker can always drain.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

pub struct Inbox<Req, Rep> {
    requests: ArrayQueue<Req>,
    replies: ArrayQueue<Rep>,
    /// The receiver may be parked: the next sender must wake it.
    parked: AtomicBool,
    /// A wake-up without a message (shutdown, or a state change the receiver must see).
    kicked: AtomicBool,
    waker: AtomicWaker,
}

impl<Req, Rep> Inbox<Req, Rep> {
    pub fn new(request_capacity: usize, reply_capacity: usize) -> Self {
        Inbox {
            requests: ArrayQueue::new(request_capacity.max(1)),
            replies: ArrayQueue::new(reply_capacity.max(1)),
            parked: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// Queues a request; gives it back when the queue is full.
    pub fn send_request(&self, request: Req) -> Result<(), Req> {
        self.requests.push(request)?;
        self.notify();
        Ok(())
    }

    /// Queues a reply; gives it back when the queue is full, which a caller that bounds its
    /// outstanding requests by the reply capacity never sees.
    pub fn send_reply(&self, reply: Rep) -> Result<(), Rep> {
        self.replies.push(reply)?;
        self.notify();
        Ok(())
    }

    /// Wakes the receiver even without a message.
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::SeqCst);
        self.notify();
    }

    pub fn try_recv_request(&self) -> Option<Req> {
        self.requests.pop()
    }

    pub fn try_recv_reply(&self) -> Option<Rep> {
        self.replies.pop()
    }

    /// Requests waiting, for introspection.
    pub fn request_depth(&self) -> usize {
        self.requests.len()
    }

    /// Replies waiting, for introspection.
    pub fn reply_depth(&self) -> usize {
        self.replies.len()
    }

    /// Resolves once a message or a kick is waiting. Only the owning worker may wait.
    pub fn wait(&self) -> Wait<'_, Req, Rep> {
        Wait { inbox: self }
    }

    fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    fn ready(&self) -> bool {
        !self.requests.is_empty()
            || !self.replies.is_empty()
            || self.kicked.swap(false, Ordering::AcqRel)
    }
}

/// The future of [`Inbox::wait`].
pub struct Wait<'a, Req, Rep> {
    inbox: &'a Inbox<Req, Rep>,
}

impl<Req, Rep> Future for Wait<'_, Req, Rep> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inbox = self.inbox;
        if inbox.ready() {
            return Poll::Ready(());
        }
        inbox.waker.register(cx.waker());
        inbox.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if inbox.ready() {
            inbox.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct CountingWaker {
        wakes: AtomicUsize,
        thread: std::thread::Thread,
    }

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            self.thread.unpark();
        }
    }

    fn block_on_wait(inbox: &Inbox<u64, u64>, waker: &Waker) {
        let mut cx = Context::from_waker(waker);
        loop {
            let mut wait = inbox.wait();
            if Pin::new(&mut wait).poll(&mut cx).is_ready() {
                return;
            }
            std::thread::park();
        }
    }

    // Every message sent from other threads arrives exactly once, in order per sender, and
    // the receiver is never left parked with a message waiting (the test would hang).
    #[test]
    fn messages_from_other_threads_all_arrive() {
        const PER_SENDER: u64 = 20_000;
        let inbox = Arc::new(Inbox::<u64, u64>::new(64, 64));
        let senders: Vec<_> = (0..2u64)
            .map(|s| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    for i in 0..PER_SENDER {
                        let mut msg = (s << 32) | i;
                        loop {
                            match if s == 0 {
                                inbox.send_request(msg)
                            } else {
                                inbox.send_reply(msg)
                            } {
                                Ok(()) => break,
                                Err(back) => {
                                    msg = back;
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let waker = Arc::new(CountingWaker {
            wakes: AtomicUsize::new(0),
            thread: std::thread::current(),
        });
        let waker_handle = Waker::from(waker.clone());
        let mut next = [0u64; 2];
        while next.iter().any(|&n| n < PER_SENDER) {
            block_on_wait(&inbox, &waker_handle);
            while let Some(m) = inbox.try_recv_request() {
                assert_eq!(m >> 32, 0);
                assert_eq!(m & 0xffff_ffff, next[0]);
                next[0] += 1;
            }
            while let Some(m) = inbox.try_recv_reply() {
                assert_eq!(m >> 32, 1);
                assert_eq!(m & 0xffff_ffff, next[1]);
                next[1] += 1;
            }
        }
        for s in senders {
            s.join().unwrap();
        }
        // Wake-ups are batched: far fewer than messages.
        let wakes = waker.wakes.load(Ordering::SeqCst);
        assert!(wakes < (2 * PER_SENDER) as usize, "{wakes} wake-ups");
    }

    // A receiver that has not parked is not woken: sends to a busy worker make no wake-up.
    #[test]
    fn no_wake_without_park() {
        let inbox = Inbox::<u32, u32>::new(8, 8);
        let waker = Arc::new(CountingWaker {
            wakes: AtomicUsize::new(0),
            thread: std::thread::current(),
        });
        inbox.waker.register(&Waker::from(waker.clone()));
        for i in 0..8 {
            inbox.send_request(i).unwrap();
        }
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 0);
        assert_eq!(
            inbox.send_request(99),
            Err(99),
            "a full queue gives the message back"
        );
        // Parked and empty: the first send wakes, the second does not.
        while inbox.try_recv_request().is_some() {}
        let w = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&w);
        assert!(Pin::new(&mut inbox.wait()).poll(&mut cx).is_pending());
        inbox.send_reply(1).unwrap();
        inbox.send_reply(2).unwrap();
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 1);
        // A kick wakes a parked receiver without a message, and is seen once.
        while inbox.try_recv_reply().is_some() {}
        assert!(Pin::new(&mut inbox.wait()).poll(&mut cx).is_pending());
        inbox.kick();
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 2);
        assert!(Pin::new(&mut inbox.wait()).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut inbox.wait()).poll(&mut cx).is_pending());
    }
}
