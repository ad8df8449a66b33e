//! One shard's lease table and its timing wheel. Pure code: no I/O, no clock.

/// Index of a configured lock store (the order of `--store` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId(pub u16);

/// The answer to an unlock, numbered as Dapr's `UnlockResponse.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum UnlockStatus {
    Success = 0,
    LockDoesNotExist = 1,
    LockBelongsToOthers = 2,
    InternalError = 3,
}

/// Why a lease table could not answer a try-lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseError {
    /// The table holds its configured maximum of leases.
    TableFull { max_leases: usize },
}
