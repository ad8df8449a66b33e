//! Which shard owns a key, and the mailboxes between workers.
//!
//! Worker `i` owns shard `i`. A lock lives in shard `hash(store, resourceId) mod N`, hashed
//! with ahash under a fixed seed so every worker agrees ([`ShardMap`]). A request for another
//! shard travels to its owner through that owner's [`Inbox`], and the answer comes back through
//! the sender's inbox; both leave in batches from the sender's [`Outbox`]. What travels is in
//! [`mail`].

mod ids;
mod inbox;
pub mod mail;
mod map;
mod outbox;

pub use ids::{ShardId, SlotId};
pub use inbox::{Inbox, Wait};
pub use mail::{Accepted, Answered, Forward, Holder, HolderQuery, Mail, RemoteLock};
pub use map::ShardMap;
pub use outbox::Outbox;
