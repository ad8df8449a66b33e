//! The messages a worker has for the others, sent in batches once its runnable tasks have run.
//!
//! A message crossing cores costs more than its bytes: the queue's slot and indices move
//! between the cores' caches, and a parked receiver must be woken. So the requests a worker
//! forwards and the replies it makes while its tasks run wait here, one batch per receiver,
//! and the sender task, which the first of them puts at the back of the run queue, queues each
//! batch as one message and wakes each receiver once. A batch's vector comes back empty to the
//! worker that drained it, which keeps it for a batch of its own: once warm, sending allocates
//! nothing.

use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};

use super::ids::ShardId;
use super::inbox::Inbox;
use crate::task::Yields;

/// Empty vectors kept for batches, of each kind.
const SPARE_BATCHES: usize = 64;
/// A vector that grew past this many messages is not kept: it was for a burst.
const SPARE_CAPACITY: usize = 256;

pub struct Outbox<Req, Rep> {
    /// The next batch for each worker, by index.
    requests: Box<[RefCell<Vec<Req>>]>,
    replies: Box<[RefCell<Vec<Rep>>]>,
    spare_requests: RefCell<Vec<Vec<Req>>>,
    spare_replies: RefCell<Vec<Vec<Rep>>>,
    /// Whether the sender task is queued to run.
    queued: Cell<bool>,
    /// The sender task's waker while it waits for messages.
    task: RefCell<Option<Waker>>,
}

impl<Req, Rep> Outbox<Req, Rep> {
    pub fn new(workers: usize) -> Self {
        Outbox {
            requests: (0..workers).map(|_| RefCell::new(Vec::new())).collect(),
            replies: (0..workers).map(|_| RefCell::new(Vec::new())).collect(),
            spare_requests: RefCell::new(Vec::new()),
            spare_replies: RefCell::new(Vec::new()),
            queued: Cell::new(false),
            task: RefCell::new(None),
        }
    }

    /// Adds a request to the next batch for worker `to`.
    #[inline]
    pub fn request(&self, to: ShardId, request: Req) {
        self.requests[to.0].borrow_mut().push(request);
        self.queue();
    }

    /// Adds a reply to the next batch for worker `to`.
    #[inline]
    pub fn reply(&self, to: ShardId, reply: Rep) {
        self.replies[to.0].borrow_mut().push(reply);
        self.queue();
    }

    #[inline]
    fn queue(&self) {
        if !self.queued.replace(true) {
            let task = self.task.borrow_mut().take();
            if let Some(task) = task {
                task.wake();
            }
        }
    }

    /// Keeps the vector of a batch of requests this worker drained, for a batch of its own.
    pub fn spare_requests(&self, batch: Vec<Req>) {
        keep_spare(&self.spare_requests, batch);
    }

    /// Keeps the vector of a batch of replies this worker drained.
    pub fn spare_replies(&self, batch: Vec<Rep>) {
        keep_spare(&self.spare_replies, batch);
    }

    /// The sender task: each time it runs, queues the waiting batches in the receivers'
    /// inboxes (`inboxes[i]` is worker `i`'s) and wakes each receiver once. A batch of
    /// requests that finds its receiver's inbox full waits for the next run, which comes
    /// after the worker's other tasks have had theirs. Never returns; one per worker, spawned
    /// before anything is sent.
    pub async fn run(&self, inboxes: &[Inbox<Req, Rep>], yields: &Yields) {
        loop {
            std::future::poll_fn(|cx| {
                if self.queued.get() {
                    return Poll::Ready(());
                }
                *self.task.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            self.queued.set(false);
            let mut full = false;
            for (to, inbox) in inboxes.iter().enumerate() {
                let mut sent = false;
                let replies = take_batch(&self.replies[to], &self.spare_replies);
                if !replies.is_empty() {
                    // Cannot fail: the receiver bounds its outstanding requests by its reply
                    // capacity in batches, and a batch holds one reply at least.
                    let queued = inbox.push_replies(replies);
                    assert!(
                        queued.is_ok(),
                        "reply queue overflow: in-flight bound broken"
                    );
                    sent = true;
                }
                let requests = take_batch(&self.requests[to], &self.spare_requests);
                if !requests.is_empty() {
                    match inbox.push_requests(requests) {
                        Ok(()) => sent = true,
                        Err(back) => {
                            // Nothing was added meanwhile: no task ran since the take.
                            *self.requests[to].borrow_mut() = back;
                            full = true;
                        }
                    }
                }
                if sent {
                    inbox.notify();
                }
            }
            if full {
                self.queued.set(true);
                yields.now().await;
            }
        }
    }
}

/// The batch waiting in `slot`, leaving a spare vector (or a new one) in its place.
fn take_batch<T>(slot: &RefCell<Vec<T>>, spares: &RefCell<Vec<Vec<T>>>) -> Vec<T> {
    let mut slot = slot.borrow_mut();
    if slot.is_empty() {
        return Vec::new();
    }
    let spare = spares.borrow_mut().pop().unwrap_or_default();
    std::mem::replace(&mut *slot, spare)
}

fn keep_spare<T>(spares: &RefCell<Vec<Vec<T>>>, mut batch: Vec<T>) {
    batch.clear();
    let mut spares = spares.borrow_mut();
    if spares.len() < SPARE_BATCHES && batch.capacity() <= SPARE_CAPACITY {
        spares.push(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Runs `test` with three workers' inboxes (room for `request_batches` batches of requests
    /// each) and an outbox whose sender task is running, on a runtime of its own.
    fn with_outbox<F, Fut>(request_batches: usize, test: F)
    where
        F: FnOnce(Rc<Yields>, Rc<[Inbox<u32, u32>]>, Rc<Outbox<u32, u32>>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("legacy runtime");
        rt.block_on(async {
            let yields = Rc::new(Yields::default());
            let inboxes: Rc<[Inbox<u32, u32>]> =
                (0..3).map(|_| Inbox::new(request_batches, 16)).collect();
            let outbox = Rc::new(Outbox::new(3));
            let y = yields.clone();
            monoio::spawn(async move { y.run().await });
            let (o, i, y) = (outbox.clone(), inboxes.clone(), yields.clone());
            monoio::spawn(async move { o.run(&i, &y).await });
            // Lets the sender task start and wait for messages.
            yields.now().await;
            test(yields, inboxes, outbox).await;
        });
    }

    // Protects the batching: what the tasks of one turn send a worker leaves as one batch of
    // requests and one of replies, in the order sent, once the other runnable tasks ran.
    #[test]
    fn a_turn_of_messages_leaves_as_one_batch_per_receiver() {
        with_outbox(4, |yields, inboxes, outbox| async move {
            // A task runnable before the first message: it runs before they leave.
            let o = outbox.clone();
            let other = monoio::spawn(async move { o.request(ShardId(1), 12) });
            outbox.request(ShardId(1), 10);
            outbox.request(ShardId(2), 20);
            outbox.reply(ShardId(1), 7);
            outbox.request(ShardId(1), 11);
            assert_eq!(inboxes[1].request_depth(), 0, "sent before the turn ended");
            yields.now().await;
            other.await;
            assert_eq!(inboxes[1].try_recv_requests(), Some(vec![10, 11, 12]));
            assert_eq!(inboxes[1].try_recv_requests(), None);
            assert_eq!(inboxes[1].try_recv_replies(), Some(vec![7]));
            assert_eq!(inboxes[2].try_recv_requests(), Some(vec![20]));
            assert_eq!(inboxes[2].try_recv_replies(), None);
            assert_eq!(inboxes[0].request_depth(), 0);
        });
    }

    // A parked receiver is woken once for a turn's messages, however many there are.
    #[test]
    fn a_parked_receiver_is_woken_once_a_turn() {
        with_outbox(4, |yields, inboxes, outbox| async move {
            let wakes = Arc::new(CountingWaker(AtomicUsize::new(0)));
            let waker = std::task::Waker::from(wakes.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(Pin::new(&mut inboxes[1].wait()).poll(&mut cx).is_pending());
            for i in 0..5 {
                outbox.request(ShardId(1), i);
                outbox.reply(ShardId(1), i);
            }
            yields.now().await;
            assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
            assert_eq!(
                (inboxes[1].request_depth(), inboxes[1].reply_depth()),
                (5, 5)
            );
        });
    }

    // A batch that finds its receiver's inbox full is kept, in order, with what is sent
    // after it, and leaves once there is room: nothing is lost or reordered.
    #[test]
    fn a_full_inbox_delays_a_batch_without_losing_it() {
        with_outbox(1, |yields, inboxes, outbox| async move {
            outbox.request(ShardId(1), 1);
            yields.now().await;
            outbox.request(ShardId(1), 2);
            yields.now().await;
            outbox.request(ShardId(1), 3);
            yields.now().await;
            assert_eq!(inboxes[1].try_recv_requests(), Some(vec![1]));
            assert_eq!(
                inboxes[1].try_recv_requests(),
                None,
                "the inbox holds one batch"
            );
            yields.now().await;
            assert_eq!(inboxes[1].try_recv_requests(), Some(vec![2, 3]));
            yields.now().await;
            assert_eq!(inboxes[1].try_recv_requests(), None);
        });
    }

    // Once warm, batches reuse the vectors of the batches drained: the vector of a batch
    // handed back comes round again.
    #[test]
    fn drained_batches_are_reused() {
        with_outbox(4, |yields, inboxes, outbox| async move {
            outbox.request(ShardId(1), 1);
            yields.now().await;
            let first = inboxes[1].try_recv_requests().expect("a batch");
            let first_at = first.as_ptr();
            outbox.spare_requests(first);
            // This batch takes a new vector; the spare waits in the slot for the next one.
            outbox.request(ShardId(1), 2);
            yields.now().await;
            let second = inboxes[1].try_recv_requests().expect("a batch");
            assert_ne!(second.as_ptr(), first_at);
            outbox.request(ShardId(1), 3);
            yields.now().await;
            let third = inboxes[1].try_recv_requests().expect("a batch");
            assert_eq!(third, vec![3]);
            assert_eq!(third.as_ptr(), first_at);
        });
    }
}
