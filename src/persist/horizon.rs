//! `DIR/horizon`: the promise that survives a crash. It says how far in the future the last
//! acknowledged lease may end, and which fencing tokens have been handed out.
//!
//! The file has two fixed slots of `SLOT` (512) bytes. Each write goes to the slot the other one
//! is not in, whole, then `fdatasync`: a write torn by a crash damages only the slot being
//! written, and the other still holds the previous record. A record names its sequence
//! number; the valid slot with the higher one is current. The file's first record is written
//! under a temporary name and renamed into place, so the name `horizon` never holds a file
//! without a valid record.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::codec::{sealed, In, Out};
use super::wall::WallMark;

const MAGIC: &[u8; 8] = b"dlockd-h";
const VERSION: u32 = 1;
/// Bytes per slot; a record takes 85.
const SLOT: usize = 512;

/// What the last run promised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HorizonRecord {
    /// Counts the runs of this data dir; a snapshot names the run that wrote it.
    pub generation: u64,
    /// When the record was written.
    pub mark: WallMark,
    /// No acknowledged lease lives past `mark` plus this many milliseconds.
    pub horizon_ms: u64,
    /// Every fencing token ever acknowledged is below this.
    pub token_ceiling: u64,
    /// The run of `generation` stopped cleanly, and its snapshot holds every live lease.
    pub clean: bool,
}

/// Why the horizon file cannot be trusted. Then nothing is known about the last run, and the
/// server refuses to start rather than guess.
#[derive(Debug)]
pub enum HorizonError {
    Io(PathBuf, io::Error),
    /// Neither slot holds a valid record; the reasons of both.
    Unreadable(PathBuf, String, String),
}

impl fmt::Display for HorizonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HorizonError::Io(path, e) => write!(f, "cannot use {}: {e}", path.display()),
            HorizonError::Unreadable(path, a, b) => write!(
                f,
                "{} holds no valid record (slot 0: {a}; slot 1: {b}), so when the last run's \
                 leases end is unknown. If it is not a dlockd data dir, point --data-dir \
                 elsewhere; if it is, wait out the longest lease the last run could have granted \
                 (--max-expiry) and remove the directory",
                path.display()
            ),
        }
    }
}

impl std::error::Error for HorizonError {}

/// The open horizon file.
#[derive(Debug)]
pub struct HorizonFile {
    dir: PathBuf,
    path: PathBuf,
    /// `None` until the first record is written.
    file: Option<File>,
    /// The sequence number of the last record written or read.
    seq: u64,
}

impl HorizonFile {
    /// Opens `DIR/horizon` and reads its current record; `None` for a data dir never used.
    pub fn open(dir: &Path) -> Result<(HorizonFile, Option<HorizonRecord>), HorizonError> {
        let path = dir.join("horizon");
        let io = |e| HorizonError::Io(path.clone(), e);
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => {
                let bytes = {
                    let mut bytes = vec![0u8; 2 * SLOT];
                    let n = read_up_to(&file, &mut bytes).map_err(io)?;
                    bytes.truncate(n);
                    bytes
                };
                let slot = |i: usize| decode(bytes.get(i * SLOT..(i + 1) * SLOT).unwrap_or(&[]));
                let best = match (slot(0), slot(1)) {
                    (Ok(a), Ok(b)) => Ok(if a.0 >= b.0 { a } else { b }),
                    (Ok(a), Err(_)) | (Err(_), Ok(a)) => Ok(a),
                    (Err(a), Err(b)) => Err(HorizonError::Unreadable(path.clone(), a, b)),
                };
                let (seq, record) = best?;
                let file = Some(file);
                let dir = dir.to_path_buf();
                Ok((
                    HorizonFile {
                        dir,
                        path,
                        file,
                        seq,
                    },
                    Some(record),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((
                HorizonFile {
                    dir: dir.to_path_buf(),
                    path,
                    file: None,
                    seq: 0,
                },
                None,
            )),
            Err(e) => Err(io(e)),
        }
    }

    /// Writes `record` durably (into the slot not holding the current one).
    pub fn store(&mut self, record: &HorizonRecord) -> io::Result<()> {
        let seq = self.seq + 1;
        let bytes = encode(seq, record);
        let offset = (seq % 2) * SLOT as u64;
        match &self.file {
            Some(file) => {
                file.write_all_at(&bytes, offset)?;
                file.sync_data()?;
            }
            None => {
                // The first record: made whole under another name, then renamed into place.
                let fresh = self.dir.join("horizon.new");
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&fresh)?;
                file.set_len(2 * SLOT as u64)?;
                file.write_all_at(&bytes, offset)?;
                file.sync_all()?;
                std::fs::rename(&fresh, &self.path)?;
                sync_dir(&self.dir)?;
                self.file = Some(file);
            }
        }
        self.seq = seq;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Makes a rename or a new file in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode(seq: u64, r: &HorizonRecord) -> Vec<u8> {
    let mut out = Out::default();
    out.bytes(MAGIC);
    out.u32(VERSION);
    out.u64(seq);
    out.u64(r.generation);
    out.mark(&r.mark);
    out.u64(r.horizon_ms);
    out.u64(r.token_ceiling);
    out.u8(u8::from(r.clean));
    out.seal();
    debug_assert!(out.0.len() <= SLOT);
    out.0
}

/// One slot: its sequence number and record, or why it holds none.
fn decode(slot: &[u8]) -> Result<(u64, HorizonRecord), String> {
    let mut at = In::new(slot);
    match at.take(MAGIC.len()) {
        Some(magic) if magic == MAGIC => {}
        Some(magic) if magic.iter().all(|&b| b == 0) => return Err("empty".into()),
        _ => return Err("not a dlockd horizon record".into()),
    }
    let version = at.u32().ok_or("truncated")?;
    if version != VERSION {
        return Err(format!(
            "format version {version}, this dlockd reads {VERSION}"
        ));
    }
    let fields = (|| {
        let seq = at.u64()?;
        let record = HorizonRecord {
            generation: at.u64()?,
            mark: at.mark()?,
            horizon_ms: at.u64()?,
            token_ceiling: at.u64()?,
            clean: at.u8()? != 0,
        };
        Some((seq, record))
    })();
    let (seq, record) = fields.ok_or("truncated")?;
    let len = slot.len() - at.remaining() + 4;
    if slot.len() < len || !sealed(&slot[..len]) {
        return Err("checksum mismatch".into());
    }
    Ok((seq, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dlockd-horizon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn record(generation: u64) -> HorizonRecord {
        HorizonRecord {
            generation,
            mark: WallMark {
                boot_id: [7; 16],
                boot_ms: 123,
                unix_ms: 456,
            },
            horizon_ms: 10_000 + generation,
            token_ceiling: 1 << 20,
            clean: generation.is_multiple_of(2),
        }
    }

    #[test]
    fn records_round_trip_and_the_latest_wins() {
        // Protects the crash promise's storage: what was stored last is what is read, across
        // reopenings, whichever slot it went to.
        let d = dir("roundtrip");
        let (mut file, first) = HorizonFile::open(&d).expect("fresh");
        assert_eq!(first, None);
        for g in 1..=5 {
            file.store(&record(g)).expect("store");
            let (_, read) = HorizonFile::open(&d).expect("reopen");
            assert_eq!(read, Some(record(g)));
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn nothing_is_left_before_the_first_record() {
        // A start that stops before its first record leaves no horizon file, so the next start
        // is a fresh one rather than a refusal to start; the first record lands whole.
        let d = dir("first");
        let (mut file, first) = HorizonFile::open(&d).expect("fresh");
        assert_eq!(first, None);
        assert!(!d.join("horizon").exists());
        drop(file);
        let (again, first) = HorizonFile::open(&d).expect("still fresh");
        assert_eq!(first, None);
        file = again;
        file.store(&record(1)).expect("store");
        assert_eq!(
            std::fs::metadata(d.join("horizon")).expect("exists").len(),
            2 * SLOT as u64
        );
        assert!(!d.join("horizon.new").exists());
        let (_, read) = HorizonFile::open(&d).expect("reopen");
        assert_eq!(read, Some(record(1)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_slot_leaves_the_previous_record() {
        // A crash in the middle of a write damages one slot; the other one is read instead.
        let d = dir("torn");
        let (mut file, _) = HorizonFile::open(&d).expect("fresh");
        file.store(&record(1)).expect("store"); // seq 1: slot 1
        file.store(&record(2)).expect("store"); // seq 2: slot 0
        let raw = OpenOptions::new()
            .write(true)
            .open(d.join("horizon"))
            .expect("open");
        raw.write_all_at(&[0xAB; 40], 20).expect("tear slot 0");
        let (_, read) = HorizonFile::open(&d).expect("one slot still valid");
        assert_eq!(read, Some(record(1)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn foreign_and_damaged_files_are_refused() {
        // Nothing half-read: a file with no valid slot stops the start with both reasons.
        let d = dir("foreign");
        std::fs::write(d.join("horizon"), b"hello world\n").expect("write");
        let err = HorizonFile::open(&d).expect_err("foreign");
        let text = err.to_string();
        assert!(text.contains("not a dlockd horizon record"), "{text}");

        let (mut file, _) = {
            std::fs::remove_file(d.join("horizon")).expect("rm");
            HorizonFile::open(&d).expect("fresh")
        };
        file.store(&record(1)).expect("store");
        let raw = OpenOptions::new()
            .write(true)
            .open(d.join("horizon"))
            .expect("open");
        raw.write_all_at(&[0xFF], SLOT as u64 + 30).expect("flip");
        let text = HorizonFile::open(&d).expect_err("damaged").to_string();
        assert!(
            text.contains("checksum mismatch") && text.contains("empty"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
