//! A worker's table of requests whose answers come later: forwarded to other shards, or sent to
//! a remote store such as Redis.
//!
//! Its capacity bounds the requests a worker has in flight, and so the replies that can ever
//! sit in its inbox: that is what makes a reply push never fail (see `shard::Inbox`).
//! A slot is freed only when its reply has arrived, so a slot id is never reused while a
//! reply for it may still come, even when the connection that asked has gone away.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::task::{Poll, Waker};

use slab::Slab;

use crate::api::Answer;
use crate::shard::SlotId;
use crate::store::StoreOutcome;

enum Slot {
    /// Sent; the connection may be parked on it.
    Waiting(Option<Waker>),
    /// The reply arrived before the connection looked.
    Done(StoreOutcome),
    /// The connection went away; drop the reply when it comes.
    Abandoned,
}

pub(crate) struct Pending {
    slots: RefCell<Slab<Slot>>,
    capacity: usize,
    /// Connections waiting for a free slot.
    waiting: RefCell<Vec<Waker>>,
}

impl Pending {
    pub(crate) fn new(capacity: usize) -> Self {
        Pending {
            slots: RefCell::new(Slab::with_capacity(capacity)),
            capacity,
            waiting: RefCell::new(Vec::new()),
        }
    }

    /// Takes a slot, waiting while all are in use.
    pub(crate) async fn reserve(&self) -> SlotId {
        poll_fn(|cx| {
            let mut slots = self.slots.borrow_mut();
            if slots.len() < self.capacity {
                // The slab never holds more than `capacity` (a u32) entries.
                let id = slots.insert(Slot::Waiting(None));
                Poll::Ready(SlotId(id as u32))
            } else {
                self.waiting.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Delivers the decision for `id`.
    pub(crate) fn complete(&self, id: SlotId, answer: Answer) {
        self.finish(id, Ok(answer));
    }

    /// Delivers what a remote store answered for `id`: a decision, or its failure.
    pub(crate) fn finish(&self, id: SlotId, answer: StoreOutcome) {
        let mut slots = self.slots.borrow_mut();
        let id = id.0 as usize;
        match slots.get_mut(id) {
            Some(slot @ Slot::Waiting(_)) => {
                if let Slot::Waiting(Some(waker)) = std::mem::replace(slot, Slot::Done(answer)) {
                    waker.wake();
                }
            }
            Some(Slot::Abandoned) => {
                slots.remove(id);
                drop(slots);
                self.free_one();
            }
            // A reply for a slot that is not waiting is a broken invariant.
            Some(Slot::Done(_)) | None => {
                debug_assert!(false, "reply for slot {id} that is not waiting")
            }
        }
    }

    /// The answer awaited in slot `id`.
    pub(crate) fn answer(&self, id: SlotId) -> AwaitAnswer<'_> {
        AwaitAnswer {
            pending: self,
            id: id.0 as usize,
            taken: false,
        }
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.slots.borrow().len()
    }

    fn free_one(&self) {
        if let Some(waker) = self.waiting.borrow_mut().pop() {
            waker.wake();
        }
    }
}

/// The future of one pending request's answer.
pub(crate) struct AwaitAnswer<'a> {
    pending: &'a Pending,
    id: usize,
    taken: bool,
}

impl Future for AwaitAnswer<'_> {
    type Output = StoreOutcome;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<StoreOutcome> {
        let mut slots = self.pending.slots.borrow_mut();
        match slots.get(self.id) {
            Some(Slot::Done(_)) => {
                let Slot::Done(answer) = slots.remove(self.id) else {
                    unreachable!("the slot was just seen done")
                };
                drop(slots);
                self.taken = true;
                self.pending.free_one();
                Poll::Ready(answer)
            }
            Some(Slot::Waiting(_)) => {
                if let Some(Slot::Waiting(waker)) = slots.get_mut(self.id) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Some(Slot::Abandoned) | None => {
                unreachable!("a reply future outlived its slot")
            }
        }
    }
}

impl Drop for AwaitAnswer<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut slots = self.pending.slots.borrow_mut();
        match slots.get_mut(self.id) {
            Some(Slot::Done(_)) => {
                slots.remove(self.id);
                drop(slots);
                self.pending.free_one();
            }
            Some(slot) => *slot = Slot::Abandoned,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Operation;
    use crate::lease::UnlockStatus;
    use crate::store::{StoreError, StoreFailure};
    use std::pin::pin;
    use std::task::Context;

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        f.poll(&mut cx)
    }

    // A reply reaches its slot whether it arrives before or after the connection looks, and
    // the slot is freed only then.
    #[test]
    fn replies_reach_their_slots() {
        let p = Pending::new(2);
        let a = match poll_once(pin!(p.reserve())) {
            Poll::Ready(id) => id,
            Poll::Pending => panic!("a free slot must be granted"),
        };
        let b = match poll_once(pin!(p.reserve())) {
            Poll::Ready(id) => id,
            Poll::Pending => panic!("a free slot must be granted"),
        };
        assert!(
            poll_once(pin!(p.reserve())).is_pending(),
            "capacity is a bound"
        );
        p.complete(b, Answer::Unlock(UnlockStatus::Success));
        let mut ra = pin!(p.answer(a));
        assert!(poll_once(ra.as_mut()).is_pending());
        p.complete(a, Answer::TryLock(Ok(true)));
        assert_eq!(
            poll_once(ra.as_mut()),
            Poll::Ready(Ok(Answer::TryLock(Ok(true))))
        );
        assert_eq!(
            poll_once(pin!(p.answer(b))),
            Poll::Ready(Ok(Answer::Unlock(UnlockStatus::Success)))
        );
        assert_eq!(p.in_flight(), 0);

        // A failure is delivered whole, and frees its slot the same way.
        let Poll::Ready(c) = poll_once(pin!(p.reserve())) else {
            panic!("a free slot must be granted")
        };
        let failure = StoreFailure {
            op: Operation::TryLock,
            error: StoreError::Refused("down".into()),
        };
        p.finish(c, Err(failure.clone()));
        assert_eq!(poll_once(pin!(p.answer(c))), Poll::Ready(Err(failure)));
        assert_eq!(p.in_flight(), 0);
    }

    // A connection that goes away keeps its slot reserved until the reply comes, so the id
    // is not reused under a reply still on its way.
    #[test]
    fn abandoned_slots_wait_for_their_reply() {
        let p = Pending::new(1);
        let Poll::Ready(id) = poll_once(pin!(p.reserve())) else {
            panic!("a free slot must be granted")
        };
        drop(p.answer(id));
        assert_eq!(p.in_flight(), 1);
        assert!(poll_once(pin!(p.reserve())).is_pending());
        p.complete(id, Answer::TryLock(Ok(false)));
        assert_eq!(p.in_flight(), 0);
        assert!(poll_once(pin!(p.reserve())).is_ready());
    }
}
