//! Scheduling help for the tasks of one single-threaded runtime (a worker's).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Lets the other tasks of a worker run before the caller goes on.
///
/// Waking oneself and returning `Pending` is no yield on monoio: a task woken while it runs is
/// put back at the *front* of the run queue and runs again at once, ahead of every other task
/// (its scheduler's `yield_now` is a `push_front`). So a yielding task parks its waker here and
/// wakes the yielder task instead, which a wake puts at the back of the queue; when its turn
/// comes it wakes the parked tasks, which go to the back in turn, behind everything that
/// became runnable meanwhile (the io driver is polled between rounds).
#[derive(Default)]
pub struct Yields {
    /// Wakers of the tasks that yielded since the yielder last ran.
    parked: RefCell<Vec<Waker>>,
    /// The yielder's waker while it waits for a task to yield.
    yielder: RefCell<Option<Waker>>,
}

impl Yields {
    /// Resolves once every task runnable now has had its turn.
    pub fn now(&self) -> YieldNow<'_> {
        YieldNow {
            yields: self,
            parked: false,
        }
    }

    /// The yielder task: wakes the parked tasks each time it runs. Never returns; one per
    /// worker, spawned before anything can yield. Reuses its buffers: no allocation once warm.
    pub async fn run(&self) {
        let mut batch: Vec<Waker> = Vec::new();
        std::future::poll_fn(|cx| {
            std::mem::swap(&mut *self.parked.borrow_mut(), &mut batch);
            for waker in batch.drain(..) {
                waker.wake();
            }
            *self.yielder.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        })
        .await
    }
}

/// Wakes one task of the same thread that waits for news (a worker's wait timer): a
/// notification given while nobody waits is kept for the next wait.
#[derive(Default)]
pub struct Notify {
    notified: std::cell::Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.notified.set(true);
        let waiter = self.waiter.borrow_mut().take();
        if let Some(waker) = waiter {
            waker.wake();
        }
    }

    /// Resolves at the next notification (or at once, for one given since the last wait).
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.notified.replace(false) {
                return Poll::Ready(());
            }
            *self.waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Set once a client has left: the work done for it checks it between steps ([`is_set`]) or
/// waits for it ([`wait`]).
///
/// [`is_set`]: Gone::is_set
/// [`wait`]: Gone::wait
#[derive(Default)]
pub struct Gone {
    set: std::cell::Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl Gone {
    pub fn set(&self) {
        self.set.set(true);
        let waiter = self.waiter.borrow_mut().take();
        if let Some(waker) = waiter {
            waker.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Resolves once it is set.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.get() {
                return Poll::Ready(());
            }
            *self.waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

pub struct YieldNow<'y> {
    yields: &'y Yields,
    parked: bool,
}

impl Future for YieldNow<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.parked {
            return Poll::Ready(());
        }
        self.parked = true;
        self.yields.parked.borrow_mut().push(cx.waker().clone());
        // Taken out before waking: waking never runs a task, but keep no borrow across it.
        let yielder = self.yields.yielder.borrow_mut().take();
        if let Some(waker) = yielder {
            waker.wake();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    // A task that yields lets the tasks queued before it run first. (monoio runs a task that
    // woke itself again at once, so the plain wake-and-pend yield never let them run: a
    // connection whose socket never blocked held its worker, tests/hostile.rs
    // client_that_never_reads_is_bounded on the legacy driver.) Two tasks that keep yielding
    // take turns.
    #[test]
    fn yielding_lets_queued_tasks_run_first() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("legacy runtime");
        rt.block_on(async {
            let yields = Rc::new(Yields::default());
            let yielder = yields.clone();
            monoio::spawn(async move { yielder.run().await });

            let order = Rc::new(RefCell::new(Vec::new()));
            let o = order.clone();
            let other = monoio::spawn(async move { o.borrow_mut().push("other") });
            order.borrow_mut().push("yielding");
            yields.now().await;
            order.borrow_mut().push("resumed");
            other.await;
            assert_eq!(*order.borrow(), ["yielding", "other", "resumed"]);

            // Two tasks that keep yielding take turns.
            order.borrow_mut().clear();
            let o = order.clone();
            let y = yields.clone();
            let b = monoio::spawn(async move {
                for _ in 0..3 {
                    o.borrow_mut().push("b");
                    y.now().await;
                }
            });
            for _ in 0..3 {
                order.borrow_mut().push("a");
                yields.now().await;
            }
            b.await;
            assert_eq!(*order.borrow(), ["a", "b", "a", "b", "a", "b"]);
        });
    }
}
