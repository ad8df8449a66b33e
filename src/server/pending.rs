//! A worker's table of requests whose answers come later: forwarded to other shards, sent to
//! a remote store such as Redis, or waiting for a lock (an acquire).
//!
//! Its capacity bounds the requests a worker has in flight, and so the replies that can ever
//! sit in its inbox: that is what makes a reply push never fail (see `shard::Inbox`). Waits
//! are not in that bound: their answers travel as requests, which may wait for room, and they
//! have a process-wide bound of their own (`--max-waiters`, a [`WaitBudget`]).
//! A slot is freed only when its reply has arrived, so a slot id is never reused while a
//! reply for it may still come, even when the connection that asked has gone away.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// A slot, and whether it is a wait's (outside the in-flight bound).
struct Entry {
    slot: Slot,
    wait: bool,
}

/// The waiters the whole process may have (`--max-waiters`), shared by the workers.
pub(crate) struct WaitBudget {
    pub max: usize,
    pub used: AtomicUsize,
}

pub(crate) struct Pending {
    slots: RefCell<Slab<Entry>>,
    capacity: usize,
    /// Slots in use that count against `capacity`: all but waits.
    in_flight: Cell<usize>,
    waits: Arc<WaitBudget>,
    /// Connections waiting for a free slot.
    waiting: RefCell<Vec<Waker>>,
}

impl Pending {
    pub(crate) fn new(capacity: usize, waits: Arc<WaitBudget>) -> Self {
        Pending {
            slots: RefCell::new(Slab::with_capacity(capacity)),
            capacity,
            in_flight: Cell::new(0),
            waits,
            waiting: RefCell::new(Vec::new()),
        }
    }

    /// Takes a slot, waiting while all are in use.
    pub(crate) async fn reserve(&self) -> SlotId {
        poll_fn(|cx| {
            if self.in_flight.get() < self.capacity {
                self.in_flight.set(self.in_flight.get() + 1);
                Poll::Ready(self.insert(false))
            } else {
                self.waiting.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Takes a slot for a wait, if the process has fewer than `--max-waiters`.
    pub(crate) fn reserve_wait(&self) -> Option<SlotId> {
        let budget = &self.waits;
        let before = budget.used.fetch_add(1, Ordering::Relaxed);
        if before >= budget.max {
            budget.used.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(self.insert(true))
    }

    fn insert(&self, wait: bool) -> SlotId {
        let id = self.slots.borrow_mut().insert(Entry {
            slot: Slot::Waiting(None),
            wait,
        });
        // Forwards are bounded by `capacity`, waits by `--max-waiters`: both far below 2^32.
        SlotId(id as u32)
    }

    /// Delivers the decision for `id`; gives it back if nobody waits for it any more.
    pub(crate) fn complete(&self, id: SlotId, answer: Answer) -> Option<Answer> {
        match self.finish(id, Ok(answer)) {
            Some(Ok(answer)) => Some(answer),
            _ => None,
        }
    }

    /// Delivers what a remote store answered for `id`: a decision, or its failure. Gives it
    /// back if the connection that asked has gone.
    pub(crate) fn finish(&self, id: SlotId, answer: StoreOutcome) -> Option<StoreOutcome> {
        let mut slots = self.slots.borrow_mut();
        let id = id.0 as usize;
        match slots.get_mut(id).map(|e| &mut e.slot) {
            Some(slot @ Slot::Waiting(_)) => {
                if let Slot::Waiting(Some(waker)) = std::mem::replace(slot, Slot::Done(answer)) {
                    waker.wake();
                }
                None
            }
            Some(Slot::Abandoned) => {
                let entry = slots.remove(id);
                drop(slots);
                self.free(entry.wait);
                Some(answer)
            }
            // A reply for a slot that is not waiting is a broken invariant.
            Some(Slot::Done(_)) | None => {
                debug_assert!(false, "reply for slot {id} that is not waiting");
                None
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

    /// A slot was freed: one more wait may come, or one more request go out.
    fn free(&self, wait: bool) {
        if wait {
            self.waits.used.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.in_flight.set(self.in_flight.get() - 1);
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
        match slots.get(self.id).map(|e| &e.slot) {
            Some(Slot::Done(_)) => {
                let Entry {
                    slot: Slot::Done(answer),
                    wait,
                } = slots.remove(self.id)
                else {
                    unreachable!("the slot was just seen done")
                };
                drop(slots);
                self.taken = true;
                self.pending.free(wait);
                Poll::Ready(answer)
            }
            Some(Slot::Waiting(_)) => {
                if let Some(Slot::Waiting(waker)) = slots.get_mut(self.id).map(|e| &mut e.slot) {
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
            Some(Entry {
                slot: Slot::Done(_),
                wait,
            }) => {
                let wait = *wait;
                slots.remove(self.id);
                drop(slots);
                self.pending.free(wait);
            }
            Some(entry) => entry.slot = Slot::Abandoned,
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

    fn budget(max: usize) -> Arc<WaitBudget> {
        Arc::new(WaitBudget {
            max,
            used: AtomicUsize::new(0),
        })
    }

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        f.poll(&mut cx)
    }

    // A reply reaches its slot whether it arrives before or after the connection looks, and
    // the slot is freed only then.
    #[test]
    fn replies_reach_their_slots() {
        let p = Pending::new(2, budget(0));
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
        let p = Pending::new(1, budget(0));
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

    // Waits take slots outside the in-flight bound, up to the process-wide budget; a wait's
    // slot returns to the budget however it ends, and an answer for a wait whose connection
    // went is given back (a grant there must be released).
    #[test]
    fn waits_have_their_own_bound() {
        let waits = budget(2);
        let p = Pending::new(1, waits.clone());
        let Poll::Ready(forward) = poll_once(pin!(p.reserve())) else {
            panic!("a free slot must be granted")
        };
        let a = p.reserve_wait().expect("within the budget");
        let b = p.reserve_wait().expect("within the budget");
        assert_eq!(p.reserve_wait(), None, "over --max-waiters");
        assert_eq!(waits.used.load(Ordering::Relaxed), 2);
        drop(p.answer(a));
        assert_eq!(
            p.complete(a, Answer::TryLock(Ok(true))),
            Some(Answer::TryLock(Ok(true))),
            "a grant nobody waits for comes back"
        );
        assert_eq!(p.complete(b, Answer::TryLock(Ok(false))), None);
        assert_eq!(
            poll_once(pin!(p.answer(b))),
            Poll::Ready(Ok(Answer::TryLock(Ok(false))))
        );
        assert_eq!(waits.used.load(Ordering::Relaxed), 0);
        assert!(p.reserve_wait().is_some());
        p.complete(forward, Answer::TryLock(Ok(true)));
        assert_eq!(p.in_flight(), 2);
    }
}
