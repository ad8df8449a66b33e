//! A one-shot, worker-local signal ("this worker is shutting down") that any number of tasks
//! can wait on. Each waiter removes its waker when dropped, so a connection that waits on it
//! once per idle period does not grow it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use slab::Slab;

#[derive(Default)]
pub(crate) struct Signal {
    fired: Cell<bool>,
    waiters: RefCell<Slab<std::task::Waker>>,
}

impl Signal {
    pub(crate) fn fire(&self) {
        if self.fired.replace(true) {
            return;
        }
        let wakers: Vec<_> = self.waiters.borrow_mut().drain().collect();
        for waker in wakers {
            waker.wake();
        }
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.get()
    }

    pub(crate) fn wait(&self) -> Wait<'_> {
        Wait {
            signal: self,
            key: None,
        }
    }
}

pub(crate) struct Wait<'a> {
    signal: &'a Signal,
    key: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.fired.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        match self.key {
            Some(key) if waiters.contains(key) => waiters[key] = cx.waker().clone(),
            _ => {
                let key = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut waiters = self.signal.waiters.borrow_mut();
            if waiters.contains(key) {
                waiters.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::Waker;

    // Waiters that go away leave nothing behind, and firing releases every waiter.
    #[test]
    fn waiters_do_not_accumulate() {
        let s = Signal::default();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            let mut w = pin!(s.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(s.waiters.borrow().len(), 0);
        let mut w = pin!(s.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        s.fire();
        assert!(w.as_mut().poll(&mut cx).is_ready());
        assert!(s.is_fired());
    }
}
