//! A fixed-entry-size index file mapped into memory (memmap2): the one place in Sluice that uses
//! `unsafe`, because mapping a file is only sound while nobody else truncates it under us.
//!
//! The file is preallocated to its maximum size while it is the active segment's index and
//! trimmed to the bytes its entries use when the segment rolls or the log closes (as Kafka's
//! `AbstractIndex` does). Entries past `entries` are kept zeroed so that a crash leaves a
//! recognisable end: the typed indexes stop at the first entry that breaks monotonicity.
//!
//! Preallocation only sets the length, so the file is sparse: a store through the mapping into
//! a page the file system has not allocated yet must allocate it, and on a full disk that is a
//! SIGBUS, not an error. So entries are only ever stored into *reserved* space, which
//! [`IndexFile::reserve`] first fills with zeros through the file descriptor, where a full disk
//! is an ordinary `ENOSPC`.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Advice, MmapMut};

use crate::error::{Error, Result};

/// Bytes [`IndexFile::reserve`] reserves at a time: 2048 offset index entries.
const RESERVE_CHUNK_BYTES: usize = 16 * 1024;
static ZEROS: [u8; RESERVE_CHUNK_BYTES] = [0; RESERVE_CHUNK_BYTES];

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
    /// Bytes from the start known to be allocated on disk (written through the descriptor or
    /// holding entries), so that stores through the mapping below it cannot fault for space.
    /// At least `entries * entry_bytes`; never more than the mapping.
    reserved_bytes: usize,
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
            reserved_bytes: len - len % entry_bytes,
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
            // Lookups binary-search and appends touch one page at a time: without this the
            // first write into a fresh preallocated (sparse) index faults in a whole readahead
            // window, which cost milliseconds on the first append of every new segment.
            map.advise(Advice::Random)
                .map_err(|e| Error::io(&self.path, e))?;
            self.mmap = Some(map);
        }
        self.entries = self.entries.min(self.capacity);
        self.reserved_bytes = self.reserved_bytes.min(bytes);
        Ok(())
    }

    /// Makes room for `n` more entries (as many as fit) in allocated file space, by writing
    /// zeros past the entries up to the next [`RESERVE_CHUNK_BYTES`] boundary. A full disk
    /// fails here with `ENOSPC`, before anything refers to the entries.
    pub(crate) fn reserve(&mut self, n: usize) -> Result<()> {
        let need = (self.entries + n).min(self.capacity) * self.entry_bytes;
        if need <= self.reserved_bytes {
            return Ok(());
        }
        let end = need
            .next_multiple_of(RESERVE_CHUNK_BYTES)
            .min(self.capacity * self.entry_bytes);
        // Past the entries the mapping holds zeros, so writing zeros there changes no byte.
        let mut at = self.reserved_bytes.max(self.entries * self.entry_bytes);
        while at < end {
            let len = (end - at).min(ZEROS.len());
            self.file
                .write_all_at(&ZEROS[..len], at as u64)
                .map_err(|e| Error::io(&self.path, e))?;
            at += len;
        }
        self.reserved_bytes = end;
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
        assert!(
            at + self.entry_bytes <= self.reserved_bytes,
            "append to unreserved index space in {}",
            self.path.display()
        );
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
        // What lies past the entries may be a hole of a preallocated file (its length is no
        // proof of allocation): reserve it again before storing there.
        self.reserved_bytes = self.reserved_bytes.min(n * self.entry_bytes);
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
