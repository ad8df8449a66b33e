//! A sub-millisecond pacer for open-loop runs (`--pacer spin`).
//!
//! monoio's timers have a resolution of one millisecond, so with them every send that falls
//! due within a millisecond goes out at the same tick: at 75,000 requests/s that is a burst of
//! 75 every millisecond, and what a server shows under open-loop load is mostly how long it
//! takes to drain the burst. The spinner sends each request at its own time instead, at the
//! price of a client thread that never sleeps while sends are due within [`SPIN_AHEAD_NS`]:
//! give the client a CPU of its own.
//!
//! One [`Spinner`] per client thread: a writer waiting for its slot registers it with
//! [`Spinner::until`]; the spinner task wakes each writer when its slot comes, and between
//! rounds lets every other task of the thread run (a fair yield: see [`Spinner::run`]), so
//! readers and writers are never starved and the io driver is polled each round. With nothing
//! due soon it sleeps on a timer; with nothing registered it parks until a writer registers.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How far ahead of the earliest slot the spinner stops sleeping and spins: more than the
/// timer's resolution, so it never oversleeps a slot.
pub const SPIN_AHEAD_NS: u64 = 2_000_000;

/// Wakes writers at their slots; see the module docs.
pub struct Spinner {
    epoch: Instant,
    /// Writers waiting, with their slots (ns since `epoch`).
    waiting: RefCell<Vec<(u64, Waker)>>,
    /// The writers found due in one round, woken in slot order.
    due: RefCell<Vec<(u64, Waker)>>,
    /// The spinner's waker while it is parked with nothing registered.
    parked: RefCell<Option<Waker>>,
    /// The bouncer's waker while it waits for the spinner to yield.
    bouncer: RefCell<Option<Waker>>,
    /// The spinner's waker while it has yielded to the bouncer.
    yielded: RefCell<Option<Waker>>,
    /// Wake-ups handed out, for the tests.
    woken: Cell<u64>,
}

impl Spinner {
    pub fn new(epoch: Instant) -> Self {
        Spinner {
            epoch,
            waiting: RefCell::new(Vec::new()),
            due: RefCell::new(Vec::new()),
            parked: RefCell::new(None),
            bouncer: RefCell::new(None),
            yielded: RefCell::new(None),
            woken: Cell::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Resolves at `slot_ns` (ns since the epoch), or at once if it has passed. Needs
    /// [`Spinner::run`] and [`Spinner::bounce`] running on the same thread.
    pub fn until(&self, slot_ns: u64) -> Until<'_> {
        Until {
            spinner: self,
            slot_ns,
        }
    }

    /// The spinner task: never returns.
    ///
    /// Its yield is fair where a self-wake is not: monoio runs a task that woke itself again
    /// at once, ahead of every other task. So the spinner parks its waker and wakes the
    /// bouncer, which a wake puts at the back of the run queue; when the bouncer's turn comes
    /// it wakes the spinner, which goes to the back in turn.
    pub async fn run(&self) {
        loop {
            let now = self.now_ns();
            let earliest = self.wake_due(now);
            if earliest == u64::MAX {
                self.park().await;
            } else if earliest - now > SPIN_AHEAD_NS {
                let wake_at = self.epoch + Duration::from_nanos(earliest - SPIN_AHEAD_NS / 2);
                monoio::time::sleep_until(monoio::time::Instant::from_std(wake_at)).await;
            } else {
                self.yield_to_bouncer().await;
            }
        }
    }

    /// Wakes, in slot order, every writer whose slot is at or before `now`; returns the
    /// earliest slot still waiting (`u64::MAX` for none).
    fn wake_due(&self, now: u64) -> u64 {
        let mut earliest = u64::MAX;
        let mut due = self.due.borrow_mut();
        self.waiting.borrow_mut().retain(|(slot, waker)| {
            if *slot <= now {
                due.push((*slot, waker.clone()));
                false
            } else {
                earliest = earliest.min(*slot);
                true
            }
        });
        due.sort_unstable_by_key(|(slot, _)| *slot);
        for (_, waker) in due.drain(..) {
            waker.wake();
            self.woken.set(self.woken.get() + 1);
        }
        earliest
    }

    /// The bouncer task: never returns. See [`Spinner::run`].
    pub async fn bounce(&self) {
        std::future::poll_fn(|cx| {
            if let Some(spinner) = self.yielded.borrow_mut().take() {
                spinner.wake();
            }
            *self.bouncer.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        })
        .await
    }

    /// Waits until a writer registers.
    async fn park(&self) {
        let mut parked = false;
        std::future::poll_fn(|cx| {
            if parked || !self.waiting.borrow().is_empty() {
                return Poll::Ready(());
            }
            parked = true;
            *self.parked.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Lets every task runnable now run once before going on.
    async fn yield_to_bouncer(&self) {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                return Poll::Ready(());
            }
            let Some(bouncer) = self.bouncer.borrow_mut().take() else {
                // The bouncer has not run yet: a plain wake is the best there is.
                cx.waker().wake_by_ref();
                yielded = true;
                return Poll::Pending;
            };
            yielded = true;
            *self.yielded.borrow_mut() = Some(cx.waker().clone());
            bouncer.wake();
            Poll::Pending
        })
        .await
    }
}

/// See [`Spinner::until`].
pub struct Until<'s> {
    spinner: &'s Spinner,
    slot_ns: u64,
}

impl Future for Until<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let spinner = self.spinner;
        if spinner.now_ns() >= self.slot_ns {
            return Poll::Ready(());
        }
        // Registered anew at each poll (a writer is polled again only when woken, or when a
        // join polls it spuriously, in which case an old entry only wakes it once more).
        spinner
            .waiting
            .borrow_mut()
            .push((self.slot_ns, cx.waker().clone()));
        let parked = spinner.parked.borrow_mut().take();
        if let Some(waker) = parked {
            waker.wake();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("a legacy runtime")
    }

    // Writers are woken at or after their slots, never before, in slot order, and a task
    // that only makes progress when scheduled keeps running while the spinner spins.
    #[test]
    fn writers_wake_at_their_slots_and_other_tasks_keep_running() {
        runtime().block_on(async {
            let spinner = Rc::new(Spinner::new(Instant::now()));
            let s = spinner.clone();
            monoio::spawn(async move { s.run().await });
            let s = spinner.clone();
            monoio::spawn(async move { s.bounce().await });
            let base = spinner.now_ns();
            let slots: Vec<u64> = (1..=20).map(|i| base + i * 100_000).collect();
            let woke = Rc::new(RefCell::new(Vec::new()));
            let mut writers = Vec::new();
            for &slot in slots.iter().rev() {
                let (s, woke) = (spinner.clone(), woke.clone());
                writers.push(monoio::spawn(async move {
                    s.until(slot).await;
                    woke.borrow_mut().push((slot, s.now_ns()));
                }));
            }
            // A counter that advances only when it gets a turn.
            let turns = Rc::new(Cell::new(0u64));
            let t = turns.clone();
            let counter = monoio::spawn(async move {
                for _ in 0..1000 {
                    t.set(t.get() + 1);
                    monoio::time::sleep(Duration::ZERO).await;
                }
            });
            for w in writers {
                w.await;
            }
            counter.await;
            let woke = woke.borrow();
            assert_eq!(woke.len(), slots.len());
            for (slot, at) in woke.iter() {
                assert!(at >= slot, "woken {} ns early", slot - at);
            }
            let order: Vec<u64> = woke.iter().map(|(slot, _)| *slot).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(order, sorted, "woken out of slot order");
            assert_eq!(turns.get(), 1000);
            assert!(spinner.woken.get() >= slots.len() as u64);
        });
    }

    // A slot already past resolves at once, without the spinner.
    #[test]
    fn a_past_slot_resolves_at_once() {
        runtime().block_on(async {
            let spinner = Spinner::new(Instant::now());
            spinner.until(0).await;
            assert_eq!(spinner.woken.get(), 0);
        });
    }
}
