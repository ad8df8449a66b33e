//! A worker's inbox: two bounded lock-free queues of batches (requests from other shards, and
//! replies to requests this worker forwarded) and one waker.
//!
//! Messages travel in batches: a queue operation moves the queue's slot and indices between
//! the cores' caches, so a batch pays for that once instead of once a message.
//!
//! Wake-ups cost far more than messages on these machines (a parked monoio thread takes
//! 45–70 µs to wake), so a sender wakes the receiver only when the receiver has said it may
//! park: the receiver sets `parked` before its last look at the queues, and a sender checks
//! `parked` after its push. A SeqCst fence on each side orders the flag against the queue, so
//! either the sender sees `parked` and wakes, or the receiver sees the batch. A busy
//! receiver therefore costs its senders no syscall at all.
//!
//! Requests and replies have separate queues so that replies can never be stuck behind a full
//! request queue: the caller bounds its outstanding requests by the reply capacity (in
//! batches, each of one reply at least), so a reply push never fails and every worker can
//! always drain.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

pub struct Inbox<Req, Rep> {
    requests: ArrayQueue<Vec<Req>>,
    replies: ArrayQueue<Vec<Rep>>,
    /// Requests and replies in the queued batches, for introspection.
    waiting_requests: AtomicUsize,
    waiting_replies: AtomicUsize,
    /// The receiver may be parked: the next sender must wake it.
    parked: AtomicBool,
    /// A wake-up without a message (shutdown, or a state change the receiver must see).
    kicked: AtomicBool,
    waker: AtomicWaker,
}

impl<Req, Rep> Inbox<Req, Rep> {
    /// Room for `request_batches` batches of requests and `reply_batches` of replies.
    pub fn new(request_batches: usize, reply_batches: usize) -> Self {
        Inbox {
            requests: ArrayQueue::new(request_batches.max(1)),
            replies: ArrayQueue::new(reply_batches.max(1)),
            waiting_requests: AtomicUsize::new(0),
            waiting_replies: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// Queues a batch of requests and wakes the receiver; gives the batch back when the queue
    /// is full.
    pub fn send_requests(&self, batch: Vec<Req>) -> Result<(), Vec<Req>> {
        self.push_requests(batch)?;
        self.notify();
        Ok(())
    }

    /// Queues a batch of requests without waking the receiver: the caller must
    /// [`Inbox::notify`] it before it waits for anything. Gives the batch back when full.
    pub fn push_requests(&self, batch: Vec<Req>) -> Result<(), Vec<Req>> {
        push_counted(&self.requests, &self.waiting_requests, batch)
    }

    /// Queues a batch of replies without waking the receiver, as [`Inbox::push_requests`];
    /// a sender that bounds its outstanding requests by the reply capacity never gets it back.
    pub fn push_replies(&self, batch: Vec<Rep>) -> Result<(), Vec<Rep>> {
        push_counted(&self.replies, &self.waiting_replies, batch)
    }

    /// Wakes the receiver even without a message.
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::SeqCst);
        self.notify();
    }

    pub fn try_recv_requests(&self) -> Option<Vec<Req>> {
        let batch = self.requests.pop()?;
        self.waiting_requests
            .fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }

    pub fn try_recv_replies(&self) -> Option<Vec<Rep>> {
        let batch = self.replies.pop()?;
        self.waiting_replies
            .fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }

    /// Requests waiting, for introspection: a count taken while batches move may include
    /// a batch about to be queued.
    pub fn request_depth(&self) -> usize {
        self.waiting_requests.load(Ordering::Relaxed)
    }

    /// Replies waiting, for introspection, as [`Inbox::request_depth`].
    pub fn reply_depth(&self) -> usize {
        self.waiting_replies.load(Ordering::Relaxed)
    }

    /// Resolves once a batch or a kick is waiting. Only the owning worker may wait.
    pub fn wait(&self) -> Wait<'_, Req, Rep> {
        Wait { inbox: self }
    }

    /// Wakes the receiver if it may have parked: one call after several pushes covers them.
    pub fn notify(&self) {
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

/// Queues `batch` in `queue`, counting its messages in `waiting` first: the count is added
/// before the push that lets a receiver pop the batch and subtract it, so it never goes
/// below zero. A full queue gives the batch back, and its count is taken back.
fn push_counted<T>(
    queue: &ArrayQueue<Vec<T>>,
    waiting: &AtomicUsize,
    batch: Vec<T>,
) -> Result<(), Vec<T>> {
    let n = batch.len();
    waiting.fetch_add(n, Ordering::Relaxed);
    queue.push(batch).inspect_err(|_| {
        waiting.fetch_sub(n, Ordering::Relaxed);
    })
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

    // Every message sent from other threads, in batches of 1 to 7, arrives exactly once, in
    // order per sender, and the receiver is never left parked with a batch waiting (the test
    // would hang).
    #[test]
    fn messages_from_other_threads_all_arrive() {
        const PER_SENDER: u64 = 20_000;
        let inbox = Arc::new(Inbox::<u64, u64>::new(16, 16));
        let senders: Vec<_> = (0..2u64)
            .map(|s| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while i < PER_SENDER {
                        let n = (i % 7 + 1).min(PER_SENDER - i);
                        let mut batch: Vec<u64> = (i..i + n).map(|m| (s << 32) | m).collect();
                        loop {
                            let sent = if s == 0 {
                                inbox.send_requests(batch)
                            } else {
                                inbox.push_replies(batch).inspect(|()| inbox.notify())
                            };
                            match sent {
                                Ok(()) => break,
                                Err(back) => {
                                    batch = back;
                                    std::thread::yield_now();
                                }
                            }
                        }
                        i += n;
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
            while let Some(batch) = inbox.try_recv_requests() {
                for m in batch {
                    assert_eq!(m >> 32, 0);
                    assert_eq!(m & 0xffff_ffff, next[0]);
                    next[0] += 1;
                }
            }
            while let Some(batch) = inbox.try_recv_replies() {
                for m in batch {
                    assert_eq!(m >> 32, 1);
                    assert_eq!(m & 0xffff_ffff, next[1]);
                    next[1] += 1;
                }
            }
        }
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!((inbox.request_depth(), inbox.reply_depth()), (0, 0));
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
            inbox.send_requests(vec![i]).unwrap();
        }
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 0);
        assert_eq!(
            inbox.send_requests(vec![99]),
            Err(vec![99]),
            "a full queue gives the batch back"
        );
        // Parked and empty: the first send wakes, the second does not.
        while inbox.try_recv_requests().is_some() {}
        let w = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&w);
        assert!(Pin::new(&mut inbox.wait()).poll(&mut cx).is_pending());
        inbox.send_requests(vec![1]).unwrap();
        inbox.send_requests(vec![2]).unwrap();
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 1);
        // Pushed without a wake-up, a batch wakes the parked receiver at the notify.
        while inbox.try_recv_requests().is_some() {}
        assert!(Pin::new(&mut inbox.wait()).poll(&mut cx).is_pending());
        inbox.push_replies(vec![1, 2]).unwrap();
        inbox.push_replies(vec![3]).unwrap();
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 1);
        inbox.notify();
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 2);
        // A kick wakes a parked receiver without a message, and is seen once.
        while inbox.try_recv_replies().is_some() {}
        assert!(Pin::new(&mut inbox.wait()).poll(&mut cx).is_pending());
        inbox.kick();
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 3);
        assert!(Pin::new(&mut inbox.wait()).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut inbox.wait()).poll(&mut cx).is_pending());
    }

    // The depths count messages, not batches: what the metrics show is requests waiting.
    #[test]
    fn depths_count_messages() {
        let inbox = Inbox::<u8, u8>::new(4, 4);
        inbox.push_requests(vec![1, 2, 3]).unwrap();
        inbox.push_requests(vec![4, 5]).unwrap();
        inbox.push_replies(vec![6]).unwrap();
        assert_eq!((inbox.request_depth(), inbox.reply_depth()), (5, 1));
        assert_eq!(inbox.try_recv_requests(), Some(vec![1, 2, 3]));
        assert_eq!(inbox.request_depth(), 2);
        assert_eq!(inbox.try_recv_replies(), Some(vec![6]));
        assert_eq!(inbox.reply_depth(), 0);
    }
}
