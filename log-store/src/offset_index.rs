//! The sparse offset index of a segment: relative offset -> file position, 8 bytes per entry
//! (two big-endian u32), one entry per `index.interval.bytes` of log, as Kafka's `OffsetIndex`.
//!
//! Each entry names the *base* offset of a batch and the file position where that batch starts,
//! so a lookup lands on a batch boundary at or before the wanted offset.

use std::path::Path;

use crate::error::Result;
use crate::index_file::IndexFile;

pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;

/// One entry: a batch with this base offset starts at this position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetPosition {
    pub(crate) offset: i64,
    pub(crate) position: u64,
}

#[derive(Debug)]
pub(crate) struct OffsetIndex {
    file: IndexFile,
    base_offset: i64,
}

impl OffsetIndex {
    pub(crate) fn open(path: &Path, base_offset: i64, max_bytes: usize) -> Result<Self> {
        Ok(OffsetIndex {
            file: IndexFile::open(path, OFFSET_ENTRY_BYTES, max_bytes)?,
            base_offset,
        })
    }

    fn raw(&self, i: usize) -> (u32, u32) {
        let e = self.file.entry(i);
        (
            u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
        )
    }

    pub(crate) fn get(&self, i: usize) -> OffsetPosition {
        let (rel, pos) = self.raw(i);
        OffsetPosition {
            offset: self.base_offset + rel as i64,
            position: pos as u64,
        }
    }

    pub(crate) fn entries(&self) -> usize {
        self.file.entries()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub(crate) fn last(&self) -> Option<OffsetPosition> {
        self.entries().checked_sub(1).map(|i| self.get(i))
    }

    /// Keeps the leading entries that are strictly increasing in offset and position and point
    /// inside `segment_bytes`; returns how many were dropped.
    pub(crate) fn sanitize(&mut self, segment_bytes: u64) -> usize {
        let total = self.entries();
        let mut valid = 0;
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..total {
            let (rel, pos) = self.raw(i);
            let ok = pos > 0
                && (pos as u64) < segment_bytes
                && prev.is_none_or(|(pr, pp)| rel > pr && pos > pp);
            if !ok {
                break;
            }
            prev = Some((rel, pos));
            valid += 1;
        }
        self.file.truncate_entries(valid);
        self.file.zero_tail();
        total - valid
    }

    pub(crate) fn push(&mut self, offset: i64, position: u64) {
        let rel = (offset - self.base_offset) as u32;
        let mut e = [0u8; OFFSET_ENTRY_BYTES];
        e[..4].copy_from_slice(&rel.to_be_bytes());
        e[4..].copy_from_slice(&(position as u32).to_be_bytes());
        self.file.push(&e);
    }

    /// The last entry with offset <= `offset` (None: start at position 0).
    pub(crate) fn lookup(&self, offset: i64) -> Option<OffsetPosition> {
        let n = self.entries();
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).offset <= offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.get(i))
    }

    /// The last entry with position <= `position`.
    pub(crate) fn lookup_position(&self, position: u64) -> Option<OffsetPosition> {
        let n = self.entries();
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).position <= position {
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
