//! The data file of a segment (`.log`), reduced to the operations the log makes on it
//! ([`DataFile`]), so that tests can put a file that forgets unsynced writes or runs out of
//! space in the place of the real one.
//!
//! Production opens a plain [`File`]. [`SegmentFile`] is an enum whose only other variant (the
//! fault-injecting file of `crate::fault_injection`) exists under `cfg(test)` or the
//! `fault-injection` feature: a build without them matches on one variant, which compiles to
//! the direct call, so the append and fetch paths cost what they cost on `File`.
//!
//! Index files are not behind this layer: they are mapped into memory (`index_file`), and the
//! log never trusts an index that a crash could have left unsynced (recovery rebuilds it).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What the log does with a segment's data file. Writes go at the file's cursor, which the
/// segment keeps at its end; reads are positional, so readers never move the cursor.
pub(crate) trait DataFile {
    /// Writes some prefix of `bufs` at the cursor and moves the cursor past it.
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Moves the write cursor.
    fn seek_to(&self, position: u64) -> io::Result<()>;
    /// Reads up to `buf.len()` bytes at `position`; 0 at the end of the file.
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize>;
    /// Fills `buf` from `position`, failing with `UnexpectedEof` past the end of the file.
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()>;
    /// `fdatasync`: the data written so far (and the length) survive a power loss.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: as `sync_data`, with every metadata change.
    fn sync_all(&self) -> io::Result<()>;
    /// Cuts (or extends with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length as the file system reports it.
    fn len(&self) -> io::Result<u64>;
}

impl DataFile for File {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut file: &File = self;
        Write::write_vectored(&mut file, bufs)
    }
    fn seek_to(&self, position: u64) -> io::Result<()> {
        let mut file: &File = self;
        Seek::seek(&mut file, SeekFrom::Start(position)).map(|_| ())
    }
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, position)
    }
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, position)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn len(&self) -> io::Result<u64> {
        self.metadata().map(|m| m.len())
    }
}

/// A segment's open data file: a [`File`], or in tests a file that injects faults.
#[derive(Debug)]
pub(crate) enum SegmentFile {
    Std(File),
    #[cfg(any(test, feature = "fault-injection"))]
    Faulty(crate::fault_injection::FaultyFile),
}

/// Calls `$call` on whichever file `$self` holds.
macro_rules! dispatch {
    ($self:ident, $f:ident => $call:expr) => {
        match $self {
            SegmentFile::Std($f) => $call,
            #[cfg(any(test, feature = "fault-injection"))]
            SegmentFile::Faulty($f) => $call,
        }
    };
}

impl SegmentFile {
    /// The plain file's descriptor (for `sendfile`); `None` for a fault-injecting file.
    pub(crate) fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self {
            SegmentFile::Std(f) => Some(f.as_fd()),
            #[cfg(any(test, feature = "fault-injection"))]
            SegmentFile::Faulty(_) => None,
        }
    }
}

impl DataFile for SegmentFile {
    #[inline]
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        dispatch!(self, f => DataFile::write_vectored(f, bufs))
    }
    #[inline]
    fn seek_to(&self, position: u64) -> io::Result<()> {
        dispatch!(self, f => f.seek_to(position))
    }
    #[inline]
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        dispatch!(self, f => DataFile::read_at(f, buf, position))
    }
    #[inline]
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        dispatch!(self, f => DataFile::read_exact_at(f, buf, position))
    }
    #[inline]
    fn sync_data(&self) -> io::Result<()> {
        dispatch!(self, f => DataFile::sync_data(f))
    }
    #[inline]
    fn sync_all(&self) -> io::Result<()> {
        dispatch!(self, f => DataFile::sync_all(f))
    }
    #[inline]
    fn set_len(&self, len: u64) -> io::Result<()> {
        dispatch!(self, f => DataFile::set_len(f, len))
    }
    #[inline]
    fn len(&self) -> io::Result<u64> {
        dispatch!(self, f => DataFile::len(f))
    }
}

/// A reader over a [`DataFile`] from a position, for buffered sequential scans (recovery).
pub(crate) struct DataFileReader<'a> {
    file: &'a SegmentFile,
    position: u64,
}

impl<'a> DataFileReader<'a> {
    pub(crate) fn new(file: &'a SegmentFile, position: u64) -> Self {
        DataFileReader { file, position }
    }
}

impl io::Read for DataFileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

/// Where a log's segment data files come from: the file system, or in tests a fault injector
/// that all of one log's files share.
#[derive(Debug, Clone, Default)]
pub(crate) enum Storage {
    #[default]
    Std,
    #[cfg(any(test, feature = "fault-injection"))]
    Faulty(std::sync::Arc<crate::fault_injection::FaultInjector>),
}

impl Storage {
    /// Opens a segment's data file read-write (creating it when `create`).
    pub(crate) fn open(&self, path: &Path, create: bool) -> io::Result<SegmentFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        match self {
            Storage::Std => Ok(SegmentFile::Std(file)),
            #[cfg(any(test, feature = "fault-injection"))]
            Storage::Faulty(injector) => Ok(SegmentFile::Faulty(
                crate::fault_injection::FaultyFile::new(file, path, injector)?,
            )),
        }
    }
}
