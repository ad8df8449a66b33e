//! One shard's lease table and its timing wheel. Pure code: no I/O, no clock.
//!
//! [`LeaseTable`] answers try-lock, unlock and "who holds it" for the leases of one shard; the
//! worker that owns the shard is the only thread that touches it, so there are no locks or
//! atomics inside. [`wheel::Wheel`] only tells the table which leases have expired, so that
//! their memory can be reclaimed.
//!
//! # Time
//!
//! Time is `now_ms`, an argument to every call: the floor of a monotonic clock in
//! milliseconds. Nothing here reads a clock, so tests and models drive the table with virtual
//! time.
//!
//! A lease granted at `now_ms == g` with `ttl_ms == t` is live at every `now_ms` in
//! `g ..= g + t` and gone from `now_ms >= g + t + 1`. Because `now_ms` is a floor, the grant
//! really happened somewhere in `[g, g + 1)`; keeping the lease through tick `g + t` makes sure
//! it never ends before `t` ms have really passed (the contract's promise: a lease never ends
//! early), at the price of ending up to 1 ms late, which only costs liveness.
//!
//! - The last live tick `g + t` is computed with saturating arithmetic: a lease whose end
//!   would pass `u64::MAX` lives for ever rather than wrapping round to an early end. TTLs go
//!   up to `2_147_483_647 * 1000` ms (an int32 of seconds).
//! - Every answer compares the stored last live tick with `now_ms`. The wheel only reclaims
//!   memory, so its granularity never changes an answer: an expired lease that is still
//!   stored answers exactly as an absent one.
//! - `now_ms` never decreases in real use. A smaller value is still answered against the
//!   stored deadlines, never panics and never corrupts the table; reclamation simply waits
//!   until time catches up again.

mod key;
#[doc(hidden)]
pub mod model;
mod pages;
mod table;
mod types;
pub mod wheel;

pub use key::Key;
pub use table::{Advanced, LeaseTable, LiveLease, MAX_LEASES_LIMIT};
pub use types::{LeaseError, Renewal, StoreId, UnlockStatus};
