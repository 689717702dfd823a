//! A segment's aborted-transaction index (`<base>.txnindex`), as Kafka's `TransactionIndex`: one
//! entry per transaction whose abort marker is in the segment, in marker order. A read_committed
//! Fetch returns the entries that overlap the fetched range so that the consumer can drop the
//! aborted records.
//!
//! On disk each entry is 34 bytes, big-endian, Kafka's format: `version i16 = 0 | producer_id
//! i64 | first_offset i64 | last_offset i64 | last_stable_offset i64`, where `last_offset` is the
//! abort marker's offset and `last_stable_offset` the partition's last stable offset once the
//! transaction completed. Aborts are rare, so the entries are also kept in memory (loaded when
//! the segment is opened); the file is created at the first entry and appended to without an
//! fsync: the log syncs dirty transaction indexes before it writes a producer snapshot, and
//! recovery rebuilds every entry at or past the snapshot it replays from.
//!
//! Loading never trusts the file: a torn trailing entry, a bad version, or an entry whose offsets
//! do not add up (not in the segment, not after the previous entry) ends the index there, with a
//! warning; the file is cut back and the caller rebuilds the segment's entries by replaying the
//! log. Nothing is allocated from a count read in the file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub(crate) const TXN_INDEX_SUFFIX: &str = "txnindex";
/// Bytes of one entry on disk.
pub(crate) const ABORTED_TXN_BYTES: usize = 34;
const ENTRY_VERSION: i16 = 0;

/// One entry of a segment's aborted-transaction index (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The first offset of the transaction.
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
    /// The partition's last stable offset right after the abort.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ABORTED_TXN_BYTES] {
        let mut b = [0u8; ABORTED_TXN_BYTES];
        b[0..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    /// `(version, entry)` of 34 bytes.
    fn decode(b: &[u8; ABORTED_TXN_BYTES]) -> (i16, Self) {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        (
            i16::from_be_bytes([b[0], b[1]]),
            AbortedTxn {
                producer_id: i64_at(2),
                first_offset: i64_at(10),
                last_offset: i64_at(18),
                last_stable_offset: i64_at(26),
            },
        )
    }
}

/// The aborted-transaction index of one segment.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    base_offset: i64,
    /// In marker order (strictly increasing `last_offset`).
    entries: Vec<AbortedTxn>,
    /// Opened at the first append (or when loading found the file).
    file: Option<File>,
    /// Entries written since the last sync.
    unsynced: bool,
}

impl TxnIndex {
    /// Loads `path` if it exists. Returns the index and whether it had to be cut short (the
    /// caller rebuilds the entries past the cut). `create`: a new segment, whose stale file (a
    /// failed roll's) is emptied.
    pub(crate) fn open(path: &Path, base_offset: i64, create: bool) -> Result<(Self, bool)> {
        let mut index = TxnIndex {
            path: path.to_path_buf(),
            base_offset,
            entries: Vec::new(),
            file: None,
            unsynced: false,
        };
        let mut file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((index, false)),
            Err(e) => return Err(Error::io(path, e)),
        };
        if create {
            file.set_len(0).map_err(|e| Error::io(path, e))?;
            index.file = Some(file);
            return Ok((index, false));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        index.file = Some(file);
        let mut valid = 0usize;
        let mut problem = None;
        for chunk in bytes.chunks(ABORTED_TXN_BYTES) {
            let Ok(entry) = <&[u8; ABORTED_TXN_BYTES]>::try_from(chunk) else {
                problem = Some("a partial entry at the end");
                break;
            };
            let (version, t) = AbortedTxn::decode(entry);
            if version != ENTRY_VERSION {
                problem = Some("an entry with an unknown version");
                break;
            }
            if let Some(why) = index.check_next(&t) {
                problem = Some(why);
                break;
            }
            index.entries.push(t);
            valid += ABORTED_TXN_BYTES;
        }
        if let Some(why) = problem {
            tracing::warn!(
                path = %path.display(),
                position = valid,
                bytes = bytes.len() - valid,
                reason = why,
                "cutting a transaction index at an invalid entry; its entries are rebuilt from the log"
            );
            index.cut(valid)?;
        }
        Ok((index, problem.is_some()))
    }

    /// Why `t` cannot follow the current entries, if it cannot.
    fn check_next(&self, t: &AbortedTxn) -> Option<&'static str> {
        if t.producer_id < 0 || t.first_offset < 0 || t.first_offset > t.last_offset {
            return Some("an entry with inconsistent offsets");
        }
        if t.last_offset < self.base_offset {
            return Some("an entry whose marker is before the segment");
        }
        if t.last_stable_offset < 0 || t.last_stable_offset > t.last_offset.saturating_add(1) {
            return Some("an entry with an impossible last stable offset");
        }
        if self
            .entries
            .last()
            .is_some_and(|p| p.last_offset >= t.last_offset)
        {
            return Some("entries out of order");
        }
        None
    }

    fn cut(&mut self, len: usize) -> Result<()> {
        if let Some(f) = &self.file {
            f.set_len(len as u64)
                .map_err(|e| Error::io(&self.path, e))?;
            self.unsynced = true;
        }
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// Appends an entry (in memory and to the file, without fsync).
    pub(crate) fn append(&mut self, t: AbortedTxn) -> Result<()> {
        if let Some(why) = self.check_next(&t) {
            return Err(Error::Corrupted {
                path: self.path.clone(),
                position: (self.entries.len() * ABORTED_TXN_BYTES) as u64,
                reason: format!("aborted transaction {t:?} cannot be indexed: {why}"),
            });
        }
        if self.file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&self.path)
                .map_err(|e| Error::io(&self.path, e))?;
            self.file = Some(f);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&t.encode())
                .map_err(|e| Error::io(&self.path, e))?;
        }
        self.entries.push(t);
        self.unsynced = true;
        Ok(())
    }

    /// Drops the entries whose marker is at or past `offset` (Kafka's `truncateTo`).
    pub(crate) fn truncate_from(&mut self, offset: i64) -> Result<usize> {
        let keep = self.entries.partition_point(|t| t.last_offset < offset);
        let dropped = self.entries.len() - keep;
        if dropped > 0 {
            self.entries.truncate(keep);
            self.cut(keep * ABORTED_TXN_BYTES)?;
        }
        Ok(dropped)
    }

    /// fsyncs the file if entries were written or cut since the last sync.
    pub(crate) fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            if let Some(f) = &self.file {
                f.sync_data().map_err(|e| Error::io(&self.path, e))?;
            }
            self.unsynced = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SplitMix64;

    fn txn(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    fn tmp() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| Error::io("tmp", e))
    }

    #[test]
    fn entries_roundtrip_in_kafkas_format() -> Result<()> {
        let dir = tmp()?;
        let path = dir.path().join("00000000000000000010.txnindex");
        let (mut index, cut) = TxnIndex::open(&path, 10, false)?;
        assert!(!cut && !path.exists(), "created at the first entry");
        index.append(txn(3, 5, 12))?;
        index.append(txn(4, 11, 15))?;
        assert!(
            index.append(txn(5, 1, 15)).is_err(),
            "markers only move forward"
        );
        index.sync()?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        assert_eq!(bytes.len(), 2 * ABORTED_TXN_BYTES);
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &3i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &13i64.to_be_bytes());
        let (loaded, cut) = TxnIndex::open(&path, 10, false)?;
        assert!(!cut);
        assert_eq!(loaded.entries(), index.entries());
        let (mut loaded, _) = TxnIndex::open(&path, 10, false)?;
        assert_eq!(loaded.truncate_from(15)?, 1);
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        assert_eq!(len, ABORTED_TXN_BYTES as u64);
        // A new segment at this base empties a stale file.
        let (fresh, _) = TxnIndex::open(&path, 10, true)?;
        assert!(fresh.entries().is_empty());
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        assert_eq!(len, 0);
        Ok(())
    }

    #[test]
    fn torn_and_corrupt_files_are_cut_never_panicked_on() -> Result<()> {
        let dir = tmp()?;
        let path = dir.path().join("x.txnindex");
        let good = [txn(1, 0, 3), txn(2, 2, 6)];
        let mut clean = Vec::new();
        for t in &good {
            clean.extend_from_slice(&t.encode());
        }
        let write = |b: &[u8]| std::fs::write(&path, b).map_err(|e| Error::io(&path, e));
        // A torn trailing entry.
        let mut torn = clean.clone();
        torn.extend_from_slice(&txn(3, 7, 9).encode()[..20]);
        write(&torn)?;
        let (i, cut) = TxnIndex::open(&path, 0, false)?;
        assert!(cut);
        assert_eq!(i.entries(), &good);
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        assert_eq!(len, clean.len() as u64);
        // A bad version in the second entry.
        let mut bad = clean.clone();
        bad[ABORTED_TXN_BYTES + 1] = 9;
        write(&bad)?;
        let (i, cut) = TxnIndex::open(&path, 0, false)?;
        assert!(cut);
        assert_eq!(i.entries(), &good[..1]);
        // Random bytes of every length.
        let mut rng = SplitMix64::new(7);
        for n in 0..300 {
            let mut b = clean.clone();
            b.extend((0..n).map(|_| rng.next_u64() as u8));
            write(&b)?;
            let (i, _) = TxnIndex::open(&path, 0, false)?;
            assert!(i.entries().len() >= 2 && i.entries()[..2] == good);
            let r: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            write(&r)?;
            TxnIndex::open(&path, 0, false)?;
        }
        Ok(())
    }
}
