//! `DIR/snapshot`: every live lease at a clean stop, with its owner, the milliseconds it had
//! left and its fencing token.
//!
//! Layout (little-endian): magic `dlockd-s`, format version (u32), the file's whole length
//! (u64), the generation of the run that wrote it, the [`WallMark`] of the moment the leases'
//! remaining times were read, the token ceiling, the lease count, the leases (store name,
//! resource and owner, each with a u32 length, remaining ms, token), and last the CRC-32 of
//! everything before it. A file is checked whole (length, then checksum, then every field)
//! before any lease is used: a damaged file is refused, never half-read.
//!
//! Written under a temporary name, synced, renamed into place and the directory synced, so
//! the name `snapshot` only ever holds a whole file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::codec::{sealed, In, Out};
use super::wall::WallMark;

const MAGIC: &[u8; 8] = b"dlockd-s";
const VERSION: u32 = 1;
/// Magic, version, length.
const HEADER: usize = 8 + 4 + 8;
/// The smallest lease entry: empty names and ids, remaining ms, token.
const MIN_ENTRY: usize = 4 + 4 + 4 + 8 + 8;

/// One live lease at the stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedLease {
    pub store: String,
    pub resource: Vec<u8>,
    pub owner: Vec<u8>,
    /// Milliseconds the lease still had at `Snapshot::mark` (it was live through that many
    /// more ticks).
    pub remaining_ms: u64,
    pub token: u64,
}

/// The leases of a clean stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub generation: u64,
    pub mark: WallMark,
    pub token_ceiling: u64,
    pub leases: Vec<SavedLease>,
}

/// Why a snapshot file was refused.
#[derive(Debug)]
pub enum SnapshotError {
    Io(io::Error),
    Foreign,
    Version(u32),
    Truncated { len: u64, expected: u64 },
    Trailing { len: u64, expected: u64 },
    Checksum,
    Malformed(&'static str),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "cannot read it: {e}"),
            SnapshotError::Foreign => f.write_str("not a dlockd snapshot"),
            SnapshotError::Version(v) => {
                write!(f, "format version {v}, this dlockd reads {VERSION}")
            }
            SnapshotError::Truncated { len, expected } => {
                write!(f, "truncated: {len} bytes of {expected}")
            }
            SnapshotError::Trailing { len, expected } => {
                write!(f, "{len} bytes where {expected} were written")
            }
            SnapshotError::Checksum => f.write_str("checksum mismatch"),
            SnapshotError::Malformed(what) => write!(f, "malformed: {what}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// The snapshot's path in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("snapshot")
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Out::default();
        out.bytes(MAGIC);
        out.u32(VERSION);
        out.u64(0); // the length, filled in below
        out.u64(self.generation);
        out.mark(&self.mark);
        out.u64(self.token_ceiling);
        out.u64(self.leases.len() as u64);
        for lease in &self.leases {
            // Names and ids are far below 4 GiB: ids by --max-id-bytes, names by the command
            // line.
            out.u32(lease.store.len() as u32);
            out.bytes(lease.store.as_bytes());
            out.u32(lease.resource.len() as u32);
            out.bytes(&lease.resource);
            out.u32(lease.owner.len() as u32);
            out.bytes(&lease.owner);
            out.u64(lease.remaining_ms);
            out.u64(lease.token);
        }
        let len = (out.0.len() + 4) as u64;
        out.0[12..20].copy_from_slice(&len.to_le_bytes());
        out.seal();
        out.0
    }

    /// Checks the whole file, then reads it.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::Foreign);
        }
        let mut at = In::new(&bytes[MAGIC.len()..]);
        let len = bytes.len() as u64;
        let (Some(version), Some(expected)) = (at.u32(), at.u64()) else {
            return Err(SnapshotError::Truncated {
                len,
                expected: HEADER as u64,
            });
        };
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        if len < expected {
            return Err(SnapshotError::Truncated { len, expected });
        }
        if len > expected {
            return Err(SnapshotError::Trailing { len, expected });
        }
        if !sealed(bytes) {
            return Err(SnapshotError::Checksum);
        }
        let body = &bytes[HEADER..bytes.len() - 4];
        let mut at = In::new(body);
        let bad = SnapshotError::Malformed;
        let generation = at.u64().ok_or(bad("header"))?;
        let mark = at.mark().ok_or(bad("header"))?;
        let token_ceiling = at.u64().ok_or(bad("header"))?;
        let count = at.u64().ok_or(bad("header"))?;
        if count > (at.remaining() / MIN_ENTRY) as u64 {
            return Err(bad("more leases counted than the file holds"));
        }
        let mut leases = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let entry = (|| {
                let store_len = at.u32()? as usize;
                let store = at.take(store_len)?;
                let resource_len = at.u32()? as usize;
                let resource = at.take(resource_len)?;
                let owner_len = at.u32()? as usize;
                let owner = at.take(owner_len)?;
                Some((store, resource, owner, at.u64()?, at.u64()?))
            })();
            let (store, resource, owner, remaining_ms, token) =
                entry.ok_or(bad("a lease runs past the end"))?;
            let store = std::str::from_utf8(store).map_err(|_| bad("a store name is not UTF-8"))?;
            if token >= token_ceiling {
                return Err(bad("a token at or above the ceiling"));
            }
            leases.push(SavedLease {
                store: store.to_string(),
                resource: resource.to_vec(),
                owner: owner.to_vec(),
                remaining_ms,
                token,
            });
        }
        if at.remaining() != 0 {
            return Err(bad("bytes after the last lease"));
        }
        Ok(Snapshot {
            generation,
            mark,
            token_ceiling,
            leases,
        })
    }

    /// Writes the snapshot durably to `DIR/snapshot`.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let temp = dir.join("snapshot.new");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(&self.encode())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path(dir))?;
        super::horizon::sync_dir(dir)
    }

    /// Reads `DIR/snapshot`: `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Snapshot>, SnapshotError> {
        let mut file = match File::open(path(dir)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SnapshotError::Io(e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(SnapshotError::Io)?;
        Snapshot::decode(&bytes).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            generation: 3,
            mark: WallMark {
                boot_id: [9; 16],
                boot_ms: 42,
                unix_ms: 1_700_000_000_000,
            },
            token_ceiling: 1000,
            leases: vec![
                SavedLease {
                    store: "lockstore".into(),
                    resource: b"order-42".to_vec(),
                    owner: b"worker-a".to_vec(),
                    remaining_ms: 29_000,
                    token: 17,
                },
                SavedLease {
                    store: "other".into(),
                    resource: vec![0xFF, 0, b'|'],
                    owner: vec![b'x'; 300],
                    remaining_ms: 0,
                    token: 999,
                },
            ],
        }
    }

    #[test]
    fn snapshots_round_trip() {
        // Protects a clean restart: every lease comes back as it was written.
        let s = sample();
        assert_eq!(Snapshot::decode(&s.encode()).expect("decodes"), s);
        let empty = Snapshot {
            leases: vec![],
            ..sample()
        };
        assert_eq!(Snapshot::decode(&empty.encode()).expect("decodes"), empty);
    }

    #[test]
    fn every_damage_is_refused() {
        // A damaged file is refused whole, with a reason, never half-read: every truncation,
        // every single flipped bit, foreign bytes and another version.
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            let err = Snapshot::decode(&bytes[..cut]).expect_err("truncated");
            assert!(
                matches!(
                    err,
                    SnapshotError::Truncated { .. } | SnapshotError::Foreign
                ),
                "cut at {cut}: {err}"
            );
        }
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                assert!(
                    Snapshot::decode(&damaged).is_err(),
                    "bit {bit} of byte {at}"
                );
            }
        }
        let err = Snapshot::decode(b"hello world\n").expect_err("foreign");
        assert_eq!(err.to_string(), "not a dlockd snapshot");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Snapshot::decode(&longer),
            Err(SnapshotError::Trailing { .. })
        ));
        let mut other = bytes.clone();
        other[8] = 2;
        assert_eq!(
            Snapshot::decode(&other).expect_err("version").to_string(),
            "format version 2, this dlockd reads 1"
        );
        let mut flipped = bytes;
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x10;
        assert_eq!(
            Snapshot::decode(&flipped).expect_err("crc").to_string(),
            "checksum mismatch"
        );
    }

    #[test]
    fn a_sealed_file_with_a_bad_count_is_still_refused() {
        // The checksum is not the only guard: a count larger than the file is refused before
        // anything is allocated for it.
        let mut s = sample().encode();
        s.truncate(s.len() - 4);
        let count_at = HEADER + 8 + 32 + 8;
        s[count_at..count_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut out = Out(s);
        out.seal();
        let err = Snapshot::decode(&out.0).expect_err("bad count");
        assert!(err.to_string().contains("more leases counted"), "{err}");
    }

    #[test]
    fn files_are_written_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("dlockd-snapshot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        assert!(Snapshot::read(&dir).expect("none").is_none());
        sample().write(&dir).expect("write");
        assert_eq!(Snapshot::read(&dir).expect("read"), Some(sample()));
        assert!(!dir.join("snapshot.new").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
