//! Where a store's leases live when it is not this server's own lease table: the seam of
//! `design.md`. Today one such backend, Redis (`lock.redis`), shared with daprd sidecars.

pub mod redis;
