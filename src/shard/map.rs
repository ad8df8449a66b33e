//! Which shard owns a key: [`ShardMap`], the same in every worker.

use crate::lease::StoreId;

use super::ids::ShardId;

/// Maps keys to shards. Every worker holds an equal copy.
#[derive(Clone)]
pub struct ShardMap {
    hasher: ahash::RandomState,
    shards: usize,
}

/// Fixed seeds: every worker must agree on where a key lives. The seeds are not secret;
/// the per-shard tables use random seeds against collision floods.
const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

impl ShardMap {
    pub fn new(shards: usize) -> Self {
        assert!(shards >= 1, "a server has at least one shard");
        ShardMap {
            hasher: ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]),
            shards,
        }
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard that owns (store, resource).
    #[inline]
    pub fn shard_of(&self, store: StoreId, resource: &[u8]) -> ShardId {
        if self.shards == 1 {
            return ShardId(0);
        }
        let hash = self.hasher.hash_one((store.0, resource));
        ShardId((hash % self.shards as u64) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two maps built apart (as two workers build theirs) agree on every key, and keys
    // spread over all shards.
    #[test]
    fn maps_agree_and_spread() {
        let a = ShardMap::new(4);
        let b = ShardMap::new(4);
        let mut seen = [0usize; 4];
        for i in 0..4000u32 {
            let key = format!("resource-{i}");
            let store = StoreId((i % 3) as u16);
            let shard = a.shard_of(store, key.as_bytes());
            assert_eq!(shard, b.shard_of(store, key.as_bytes()));
            seen[shard.0] += 1;
        }
        for count in seen {
            assert!(count > 700, "uneven spread: {seen:?}");
        }
    }

    // The store is part of the key: the same resource in two stores may live apart, and a
    // single shard takes everything.
    #[test]
    fn store_is_part_of_the_key() {
        let r = ShardMap::new(64);
        let differ = (0..100u32)
            .filter(|i| {
                let key = format!("r{i}");
                r.shard_of(StoreId(0), key.as_bytes()) != r.shard_of(StoreId(1), key.as_bytes())
            })
            .count();
        assert!(differ > 50, "store id does not change the shard: {differ}");
        let one = ShardMap::new(1);
        assert_eq!(one.shard_of(StoreId(7), b"x"), ShardId(0));
    }
}
