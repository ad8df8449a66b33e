//! The values a lease table's answers are made of, which the API layer turns into bytes:
//! which store a lease belongs to, an unlock's status, and why a try-lock could not be
//! answered.

use std::fmt;

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

/// What a renewal did: the lease renewed (its new last live tick, and its token, 0 when
/// fencing is off), or why not (`LockDoesNotExist`, `LockBelongsToOthers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    Renewed { last_live_ms: u64, token: u64 },
    Refused(UnlockStatus),
}

/// Why a lease table could not answer a try-lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseError {
    /// The table holds its configured maximum of leases.
    TableFull { max_leases: usize },
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::TableFull { max_leases } => {
                write!(f, "lease table is full ({max_leases} leases)")
            }
        }
    }
}

impl std::error::Error for LeaseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_full_displays_its_limit() {
        // Protects the text that ends up in the contract's `<cause>` of ERR_TRY_LOCK.
        let error = LeaseError::TableFull { max_leases: 42 };
        assert_eq!(error.to_string(), "lease table is full (42 leases)");
    }
}
