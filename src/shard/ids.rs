//! The numbers that name a shard and a worker's pending request.

/// Index of a shard, equal to the index of the worker that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

/// A request a worker awaits an answer for (from another shard, or a remote store): a slot
/// of that worker's table of pending requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub u32);
