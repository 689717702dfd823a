//! The time index of a segment: max timestamp so far -> base offset of the batch that carried it,
//! 12 bytes per entry (i64 timestamp, u32 relative offset), as Kafka's `TimeIndex`.
//!
//! Entries are strictly increasing in timestamp, so every batch before an entry's index point has
//! a max timestamp no greater than the entry's.

use std::path::Path;

use crate::error::Result;
use crate::index_file::IndexFile;

pub(crate) const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimestampOffset {
    pub(crate) timestamp: i64,
    pub(crate) offset: i64,
}

#[derive(Debug)]
pub(crate) struct TimeIndex {
    file: IndexFile,
    base_offset: i64,
}

impl TimeIndex {
    pub(crate) fn open(path: &Path, base_offset: i64, max_bytes: usize) -> Result<Self> {
        Ok(TimeIndex {
            file: IndexFile::open(path, TIME_ENTRY_BYTES, max_bytes)?,
            base_offset,
        })
    }

    pub(crate) fn get(&self, i: usize) -> TimestampOffset {
        let e = self.file.entry(i);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        TimestampOffset {
            timestamp: i64::from_be_bytes(ts),
            offset: self.base_offset + u32::from_be_bytes([e[8], e[9], e[10], e[11]]) as i64,
        }
    }

    pub(crate) fn entries(&self) -> usize {
        self.file.entries()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub(crate) fn last(&self) -> Option<TimestampOffset> {
        self.entries().checked_sub(1).map(|i| self.get(i))
    }

    /// Keeps leading entries strictly increasing in timestamp, non-decreasing in offset, with
    /// offsets below `next_offset`; returns how many were dropped.
    pub(crate) fn sanitize(&mut self, next_offset: i64) -> usize {
        let total = self.entries();
        let mut valid = 0;
        let mut prev: Option<TimestampOffset> = None;
        for i in 0..total {
            let e = self.get(i);
            let ok = e.timestamp > 0
                && e.offset < next_offset
                && prev.is_none_or(|p| e.timestamp > p.timestamp && e.offset >= p.offset);
            if !ok {
                break;
            }
            prev = Some(e);
            valid += 1;
        }
        self.file.truncate_entries(valid);
        self.file.zero_tail();
        total - valid
    }

    /// Appends when `timestamp` is newer than the last entry (and there is room).
    pub(crate) fn maybe_push(&mut self, timestamp: i64, offset: i64) {
        if timestamp <= 0 || self.is_full() || self.last().is_some_and(|l| l.timestamp >= timestamp)
        {
            return;
        }
        let mut e = [0u8; TIME_ENTRY_BYTES];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&((offset - self.base_offset) as u32).to_be_bytes());
        self.file.push(&e);
    }

    /// The last entry with timestamp < `timestamp`: every batch up to its index point is older.
    pub(crate) fn lookup_before(&self, timestamp: i64) -> Option<TimestampOffset> {
        let n = self.entries();
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).timestamp < timestamp {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.get(i))
    }

    pub(crate) fn reset(&mut self) {
        self.file.truncate_entries(0);
    }
    /// Room for `n` more entries that a full disk cannot fault on (see `IndexFile::reserve`).
    pub(crate) fn reserve(&mut self, n: usize) -> Result<()> {
        self.file.reserve(n)
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.file.flush()
    }
    pub(crate) fn trim(&mut self) -> Result<()> {
        self.file.trim()
    }
    pub(crate) fn grow(&mut self, max_bytes: usize) -> Result<()> {
        self.file.grow(max_bytes)
    }
    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }
}
