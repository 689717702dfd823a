//! A fixed-entry-size index file mapped into memory (memmap2): the one place in Sluice that uses
//! `unsafe`, because mapping a file is only sound while nobody else truncates it under us.
//!
//! The file is preallocated to its maximum size while it is the active segment's index and
//! trimmed to the bytes its entries use when the segment rolls or the log closes (as Kafka's
//! `AbstractIndex` does). Entries past `entries` are kept zeroed so that a crash leaves a
//! recognisable end: the typed indexes stop at the first entry that breaks monotonicity.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::{Error, Result};

/// A memory-mapped array of `entry_bytes`-sized entries.
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    /// `None` while the file has length zero (an empty mapping is not allowed).
    mmap: Option<MmapMut>,
    entry_bytes: usize,
    /// Entries in use; bytes past `entries * entry_bytes` are zero.
    entries: usize,
    /// Capacity in entries of the current mapping.
    capacity: usize,
}

impl IndexFile {
    /// Opens (creating if missing) and maps the index; `max_bytes > 0` preallocates it for
    /// appends. The entry count starts as the number of whole entries in the file; the caller
    /// validates them and calls [`IndexFile::truncate_entries`].
    pub(crate) fn open(path: &Path, entry_bytes: usize, max_bytes: usize) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
        let mut index = IndexFile {
            path: path.to_path_buf(),
            file,
            mmap: None,
            entry_bytes,
            entries: len / entry_bytes,
            capacity: 0,
        };
        let want = (max_bytes / entry_bytes) * entry_bytes;
        index.resize_to(want.max(index.entries * entry_bytes))?;
        Ok(index)
    }

    fn resize_to(&mut self, bytes: usize) -> Result<()> {
        self.mmap = None;
        self.file
            .set_len(bytes as u64)
            .map_err(|e| Error::io(&self.path, e))?;
        self.capacity = bytes / self.entry_bytes;
        if bytes > 0 {
            // SAFETY: the file is owned by this struct, opened read-write, and only this struct
            // changes its length (always after dropping the mapping, as here). Other processes
            // are kept out of the data directory by the broker's lock file.
            let map =
                unsafe { MmapMut::map_mut(&self.file) }.map_err(|e| Error::io(&self.path, e))?;
            self.mmap = Some(map);
        }
        self.entries = self.entries.min(self.capacity);
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }

    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        assert!(i < self.entries, "index entry {i} of {}", self.entries);
        let at = i * self.entry_bytes;
        match &self.mmap {
            Some(m) => &m[at..at + self.entry_bytes],
            None => unreachable!("entries > 0 implies a mapping"),
        }
    }

    /// Appends one entry; the caller checked [`IndexFile::is_full`].
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        assert_eq!(bytes.len(), self.entry_bytes);
        assert!(
            !self.is_full(),
            "append to a full index {}",
            self.path.display()
        );
        let at = self.entries * self.entry_bytes;
        if let Some(m) = &mut self.mmap {
            m[at..at + self.entry_bytes].copy_from_slice(bytes);
            self.entries += 1;
        }
    }

    /// Zeroes `from..to` of the mapping, writing only up to its last non-zero byte: a write
    /// dirties its page even when it stores a zero, so filling a preallocated (sparse) index
    /// would allocate and write back the whole file, `segment.index.bytes` per index per open.
    fn zero_range(&mut self, from: usize, to: usize) {
        if let Some(m) = &mut self.mmap {
            let to = to.min(m.len());
            if from >= to {
                return;
            }
            if let Some(last) = m[from..to].iter().rposition(|b| *b != 0) {
                m[from..from + last + 1].fill(0);
            }
        }
    }

    /// Keeps the first `n` entries and zeroes the rest of the mapping.
    pub(crate) fn truncate_entries(&mut self, n: usize) {
        let n = n.min(self.capacity);
        // Zero everything we may have written past n, so a stale entry never looks valid.
        let from = n * self.entry_bytes;
        let to = (self.entries.max(n) * self.entry_bytes).max(from);
        self.zero_range(from, to);
        self.entries = n;
    }

    /// Zeroes the whole preallocated area past the entries (used after opening a file whose
    /// tail may hold stale bytes).
    pub(crate) fn zero_tail(&mut self) {
        let from = self.entries * self.entry_bytes;
        self.zero_range(from, usize::MAX);
    }

    /// Writes dirty pages to disk (msync).
    pub(crate) fn flush(&self) -> Result<()> {
        if let Some(m) = &self.mmap {
            m.flush().map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }

    /// Shrinks the file to the bytes its entries use (on roll and close).
    pub(crate) fn trim(&mut self) -> Result<()> {
        self.flush()?;
        self.resize_to(self.entries * self.entry_bytes)?;
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))
    }

    /// Grows the file back to `max_bytes` for appends (when a closed active segment reopens).
    pub(crate) fn grow(&mut self, max_bytes: usize) -> Result<()> {
        let want = (max_bytes / self.entry_bytes) * self.entry_bytes;
        if want > self.capacity * self.entry_bytes {
            self.resize_to(want)?;
        }
        Ok(())
    }
}
