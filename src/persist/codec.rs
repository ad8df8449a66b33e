//! Little-endian fields for the data dir's files, and a reader that refuses to run past the
//! end instead of panicking.

use super::wall::WallMark;

#[derive(Default)]
pub(super) struct Out(pub Vec<u8>);

impl Out {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    pub fn mark(&mut self, m: &WallMark) {
        self.bytes(&m.boot_id);
        self.u64(m.boot_ms);
        self.u64(m.unix_ms);
    }
    /// Appends the CRC-32 of everything written so far.
    pub fn seal(&mut self) {
        let crc = crc32fast::hash(&self.0);
        self.u32(crc);
    }
}

/// Reads fields in order; `None` once the input runs out.
pub(super) struct In<'a> {
    rest: &'a [u8],
}

impl<'a> In<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        In { rest: bytes }
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
    pub fn mark(&mut self) -> Option<WallMark> {
        Some(WallMark {
            boot_id: self.array()?,
            boot_ms: self.u64()?,
            unix_ms: self.u64()?,
        })
    }
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }
}

/// Whether `bytes` ends with the CRC-32 of what comes before it.
pub(super) fn sealed(bytes: &[u8]) -> bool {
    let Some(split) = bytes.len().checked_sub(4) else {
        return false;
    };
    let (body, crc) = bytes.split_at(split);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(crc);
    crc32fast::hash(body) == u32::from_le_bytes(stored)
}
