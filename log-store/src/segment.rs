//! One segment of a partition's log: the `.log` file of record batches plus its offset and time
//! indexes and its aborted-transaction index (`.txnindex`, see `txn_index`), as Kafka's
//! `LogSegment`.

use std::fs::File;
use std::io::{IoSlice, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::offset_index::{OffsetIndex, OffsetPosition, OFFSET_ENTRY_BYTES};
use crate::segment_file::{DataFile, DataFileReader, SegmentFile, Storage};
use crate::time_index::{TimeIndex, TIME_ENTRY_BYTES};
use crate::txn_index::{AbortedTxn, TxnIndex, TXN_INDEX_SUFFIX};
use sluice_records::{self as batch, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// `00000000000000000042.log` for base offset 42, as Kafka names segment files.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// Sizes the segment needs from the log config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentSizing {
    pub(crate) index_max_bytes: usize,
    pub(crate) index_interval_bytes: u64,
}

/// A batch ready to be written: a patched copy of its header, and where the batch starts in the
/// appended bytes (the rest of it is written from there untouched).
#[derive(Debug)]
pub(crate) struct PreparedBatch {
    pub(crate) header_bytes: [u8; BATCH_HEADER_BYTES],
    pub(crate) at: usize,
    pub(crate) header: BatchHeader,
}

impl PreparedBatch {
    /// The batch's bytes after its header in `records` (the bytes the batch was prepared from).
    fn rest<'a>(&self, records: &'a [u8]) -> &'a [u8] {
        &records[self.at + BATCH_HEADER_BYTES..self.at + self.header.total_bytes()]
    }
}

/// Batches per vectored write: two slices each, well under the usual `IOV_MAX` of 1024, in an
/// array on the stack.
const BATCHES_PER_WRITE: usize = 64;

/// What a full recovery scan of a segment found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentRecovery {
    pub(crate) valid_bytes: u64,
    pub(crate) truncated_bytes: u64,
    pub(crate) batches: u64,
}

/// What the cleaner needs of a closed segment: taken under the log's lock, read without it (the
/// file handle keeps the bytes readable even if retention deletes the segment meanwhile).
#[derive(Debug, Clone)]
pub(crate) struct SegmentSnapshot {
    pub(crate) base_offset: i64,
    pub(crate) next_offset: i64,
    pub(crate) size: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) file: Arc<SegmentFile>,
    pub(crate) log_path: PathBuf,
}

#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    /// Shared with readers: a fetch keeps the file open (even if retention deletes it) while it
    /// reads its region, without holding the log's lock.
    file: Arc<SegmentFile>,
    /// Bytes of valid batches; the file is never longer outside of a failed write.
    size: u64,
    /// One past the last offset stored here (== base_offset while empty).
    next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// Transactions aborted by a marker in this segment.
    txn_index: TxnIndex,
    /// True when opening found the transaction index damaged and cut it: its entries must be
    /// rebuilt by replaying the log from before this segment.
    txn_index_cut: bool,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    bytes_since_last_index_entry: u64,
    /// Wall time of the first append (or of opening), for `segment.ms`.
    rolling_base_ms: i64,
    sizing: SegmentSizing,
}

impl Segment {
    fn paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base, LOG_SUFFIX)),
            dir.join(file_name(base, INDEX_SUFFIX)),
            dir.join(file_name(base, TIME_INDEX_SUFFIX)),
        )
    }

    /// Opens (creating when `create`) the segment with this base offset. Indexes are not trusted
    /// yet: call [`Segment::load`] or [`Segment::recover`]. Only a new segment's indexes are
    /// preallocated; an existing one's grow when it is recovered or becomes the active segment.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        sizing: SegmentSizing,
        create: bool,
        now_ms: i64,
        storage: &Storage,
    ) -> Result<Self> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let file = storage
            .open(&log_path, create)
            .map_err(|e| Error::io(&log_path, e))?;
        let mut size = file.len().map_err(|e| Error::io(&log_path, e))?;
        if create && size > 0 {
            // Left by a roll that failed after creating the file: it holds nothing of the log
            // (it starts at the log end offset), and a new segment starts empty, as in Kafka.
            tracing::warn!(path = %log_path.display(), bytes = size, "emptying a stale segment file");
            file.set_len(0).map_err(|e| Error::io(&log_path, e))?;
            size = 0;
        }
        // Preallocating every closed segment's indexes on open would cost a mapping of
        // `segment.index.bytes` each and leave the files at that length.
        let index_max_bytes = if create { sizing.index_max_bytes } else { 0 };
        let mut offset_index = OffsetIndex::open(&index_path, base_offset, index_max_bytes)?;
        let mut time_index = TimeIndex::open(&time_path, base_offset, index_max_bytes)?;
        let txn_path = dir.join(file_name(base_offset, TXN_INDEX_SUFFIX));
        let (txn_index, txn_index_cut) = TxnIndex::open(&txn_path, base_offset, create)?;
        if create {
            // Stale indexes of such a file would read as entries (a preallocated one as a full
            // index of zeros).
            if offset_index.entries() > 0 {
                offset_index.reset();
            }
            if time_index.entries() > 0 {
                time_index.reset();
            }
        }
        Ok(Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size,
            next_offset: base_offset,
            offset_index,
            time_index,
            txn_index,
            txn_index_cut,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            bytes_since_last_index_entry: 0,
            rolling_base_ms: now_ms,
            sizing,
        })
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub(crate) fn rolling_base_ms(&self) -> i64 {
        self.rolling_base_ms
    }
    pub(crate) fn file(&self) -> &Arc<SegmentFile> {
        &self.file
    }
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub(crate) fn indexes_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    /// The cleaner's view of this segment.
    pub(crate) fn snapshot(&self) -> SegmentSnapshot {
        SegmentSnapshot {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            size: self.size,
            max_timestamp: self.max_timestamp,
            file: Arc::clone(&self.file),
            log_path: self.log_path.clone(),
        }
    }

    fn corrupted(&self, position: u64, reason: impl Into<String>) -> Error {
        Error::Corrupted {
            path: self.log_path.clone(),
            position,
            reason: reason.into(),
        }
    }

    /// Reads the batch header at `position`, checking that the batch lies within the segment.
    pub(crate) fn header_at(&self, position: u64) -> Result<BatchHeader> {
        if position + BATCH_HEADER_BYTES as u64 > self.size {
            return Err(self.corrupted(position, "batch header runs past the end of the segment"));
        }
        let mut buf = [0u8; BATCH_HEADER_BYTES];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(|e| Error::io(&self.log_path, e))?;
        let h = BatchHeader::parse(&buf).map_err(|e| self.corrupted(position, e.to_string()))?;
        if h.batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
            || position + h.total_bytes() as u64 > self.size
            || h.last_offset_delta < 0
        {
            return Err(self.corrupted(position, "batch length or offsets out of range"));
        }
        Ok(h)
    }

    /// Trusts the indexes of a segment that was flushed and checkpointed, after sanity checks,
    /// and walks the batch headers after the last index entry to find the end. Fails with
    /// `Corrupted` when anything does not add up; the caller then runs [`Segment::recover`].
    pub(crate) fn load(&mut self) -> Result<()> {
        self.offset_index.sanitize(self.size);
        let start = match self.offset_index.last() {
            Some(e) => {
                let h = self.header_at(e.position)?;
                if h.base_offset != e.offset {
                    return Err(self.corrupted(
                        e.position,
                        "offset index entry does not match the batch there",
                    ));
                }
                e
            }
            None => OffsetPosition {
                offset: self.base_offset,
                position: 0,
            },
        };
        let mut pos = start.position;
        let mut next = self.base_offset;
        let mut since = 0u64;
        let mut max_ts = -1i64;
        let mut max_ts_off = self.base_offset;
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.base_offset < next || h.base_offset < self.base_offset {
                return Err(self.corrupted(pos, "batch offsets go backwards"));
            }
            if h.max_timestamp > max_ts {
                max_ts = h.max_timestamp;
                max_ts_off = h.base_offset;
            }
            next = h.next_offset();
            since += h.total_bytes() as u64;
            pos += h.total_bytes() as u64;
        }
        self.time_index.sanitize(next.max(self.base_offset + 1));
        self.check_indexes_present()?;
        if let Some(t) = self.time_index.last() {
            if t.timestamp >= max_ts {
                max_ts = t.timestamp;
                max_ts_off = t.offset;
            }
        }
        self.next_offset = next.max(self.base_offset);
        self.bytes_since_last_index_entry = since;
        self.max_timestamp = max_ts;
        self.offset_of_max_timestamp = max_ts_off;
        self.txn_index.truncate_from(self.next_offset)?;
        Ok(())
    }

    /// Fails when an index lost entries that building it must have written (a deleted or zeroed
    /// file): lookups would scan the whole segment, and without its time index the segment's
    /// max timestamp (retention, `min.compaction.lag.ms`) would be wrong. The first offset entry
    /// goes to the first batch that starts at least `index.interval.bytes` (and 1) in, with a
    /// time entry for the batches before it.
    fn check_indexes_present(&self) -> Result<()> {
        if self.size == 0 || self.offset_index.entries() > 0 {
            return self.check_time_index_present();
        }
        if self.sizing.index_max_bytes < OFFSET_ENTRY_BYTES {
            return Ok(());
        }
        let first_entry_at = self.sizing.index_interval_bytes.max(1);
        let mut pos = 0u64;
        while pos < first_entry_at {
            pos += self.header_at(pos)?.total_bytes() as u64;
            if pos >= self.size {
                return Ok(());
            }
        }
        Err(self.corrupted(0, "the offset index has lost its entries"))
    }

    fn check_time_index_present(&self) -> Result<()> {
        if self.offset_index.entries() == 0
            || self.time_index.entries() > 0
            || self.sizing.index_max_bytes < TIME_ENTRY_BYTES
        {
            return Ok(());
        }
        if self.header_at(0)?.max_timestamp > 0 {
            return Err(self.corrupted(0, "the time index has lost its entries"));
        }
        Ok(())
    }

    /// Scans every batch from the start, validating length and CRC-32C, rebuilds both indexes
    /// and truncates the file at the first invalid byte (a torn or zero-filled tail).
    /// `min_offset` is where this segment's batches must start (the previous segment's end).
    pub(crate) fn recover(&mut self, min_offset: i64) -> Result<SegmentRecovery> {
        // Room for a full rebuild; a closed segment is sealed (trimmed) again afterwards.
        self.offset_index.grow(self.sizing.index_max_bytes)?;
        self.time_index.grow(self.sizing.index_max_bytes)?;
        self.offset_index.reset();
        self.time_index.reset();
        let file_len = self.file.len().map_err(|e| Error::io(&self.log_path, e))?;
        let file = Arc::clone(&self.file);
        let mut reader = std::io::BufReader::with_capacity(1 << 20, DataFileReader::new(&file, 0));
        let mut pos = 0u64;
        let mut next = min_offset.max(self.base_offset);
        let mut batch = Vec::new();
        let mut batches = 0u64;
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        let mut first = true;
        loop {
            let remaining = file_len - pos;
            if remaining == 0 {
                break;
            }
            if remaining < BATCH_HEADER_BYTES as u64 {
                break;
            }
            let mut prefix = [0u8; LOG_OVERHEAD_BYTES];
            if reader.read_exact(&mut prefix).is_err() {
                break;
            }
            // Never allocate what a length prefix claims before checking it against the file.
            let Ok(total) = batch::declared_batch_bytes(&prefix, remaining as usize) else {
                break;
            };
            batch.clear();
            batch.extend_from_slice(&prefix);
            batch.resize(total, 0);
            if reader.read_exact(&mut batch[LOG_OVERHEAD_BYTES..]).is_err() {
                break;
            }
            let Ok(h) = batch::validate_batch(&batch) else {
                break;
            };
            if h.base_offset < next && !(first && h.base_offset >= self.base_offset) {
                break;
            }
            first = false;
            self.reserve_index_entries(1)?;
            self.index_batch(&h, pos);
            next = h.next_offset();
            pos += total as u64;
            batches += 1;
        }
        drop(reader);
        let truncated = file_len - pos;
        if truncated > 0 {
            self.file
                .set_len(pos)
                .map_err(|e| Error::io(&self.log_path, e))?;
            self.file
                .sync_all()
                .map_err(|e| Error::io(&self.log_path, e))?;
        }
        self.size = pos;
        self.next_offset = if batches == 0 { self.base_offset } else { next };
        // Entries for markers that were cut off go with them.
        self.txn_index.truncate_from(self.next_offset)?;
        self.seek_end()?;
        Ok(SegmentRecovery {
            valid_bytes: pos,
            truncated_bytes: truncated,
            batches,
        })
    }

    fn seek_end(&mut self) -> Result<()> {
        self.file
            .seek_to(self.size)
            .map_err(|e| Error::io(&self.log_path, e))
    }

    /// Makes the segment writable at its end (after [`Segment::load`]).
    pub(crate) fn prepare_for_append(&mut self) -> Result<()> {
        self.offset_index.grow(self.sizing.index_max_bytes)?;
        self.time_index.grow(self.sizing.index_max_bytes)?;
        let len = self.file.len().map_err(|e| Error::io(&self.log_path, e))?;
        if len != self.size {
            self.file
                .set_len(self.size)
                .map_err(|e| Error::io(&self.log_path, e))?;
        }
        self.seek_end()
    }

    /// Updates the indexes for a batch that starts at `position` (already in the file).
    fn index_batch(&mut self, h: &BatchHeader, position: u64) {
        // Never an entry at position 0: `sanitize` reads (0, 0) as the zeroed end of the index,
        // so with `index.interval.bytes=0` the whole index was thrown away on every load. A
        // lookup without an entry starts at position 0 anyway (Kafka's `>` has the same effect).
        if position > 0 && self.bytes_since_last_index_entry >= self.sizing.index_interval_bytes {
            if !self.offset_index.is_full() {
                self.offset_index.push(h.base_offset, position);
            }
            self.time_index
                .maybe_push(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_last_index_entry = 0;
        }
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
        self.bytes_since_last_index_entry += h.total_bytes() as u64;
    }

    /// Writes the prepared batches (from `records`) at the end with one vectored write; on any
    /// error the file is cut back to where it was so nothing half-written is ever visible.
    pub(crate) fn append(
        &mut self,
        records: &[u8],
        batches: &[PreparedBatch],
        now_ms: i64,
    ) -> Result<()> {
        // Room in the indexes first: an index page the file system cannot back would fault
        // (SIGBUS) when it is first written through the mapping.
        self.reserve_index_entries(batches.len())?;
        if self.is_empty() {
            self.rolling_base_ms = now_ms;
        }
        let start = self.size;
        let total: u64 = batches.iter().map(|b| b.header.total_bytes() as u64).sum();
        if let Err(e) = self.write_all_vectored(records, batches) {
            // Roll back the partial write. If even that fails the caller takes the log offline.
            let rollback = self
                .file
                .set_len(start)
                .and_then(|()| self.file.seek_to(start));
            return Err(match rollback {
                Ok(()) => Error::io(&self.log_path, e),
                Err(r) => Error::Offline {
                    path: self.log_path.clone(),
                    reason: format!("write failed ({e}) and could not be rolled back ({r})"),
                },
            });
        }
        let mut pos = start;
        for b in batches {
            self.index_batch(&b.header, pos);
            pos += b.header.total_bytes() as u64;
            self.next_offset = b.header.next_offset();
        }
        self.size = start + total;
        Ok(())
    }

    /// Makes sure both indexes can take `batches` more entries without a page fault allocating
    /// file space (see [`crate::index_file::IndexFile::reserve`]).
    fn reserve_index_entries(&mut self, batches: usize) -> Result<()> {
        self.offset_index.reserve(batches)?;
        self.time_index.reserve(batches)
    }

    fn write_all_vectored(&self, records: &[u8], batches: &[PreparedBatch]) -> std::io::Result<()> {
        let mut slices = [IoSlice::new(&[]); 2 * BATCHES_PER_WRITE];
        for chunk in batches.chunks(BATCHES_PER_WRITE) {
            for (i, b) in chunk.iter().enumerate() {
                slices[2 * i] = IoSlice::new(&b.header_bytes);
                slices[2 * i + 1] = IoSlice::new(b.rest(records));
            }
            let mut bufs: &mut [IoSlice<'_>] = &mut slices[..2 * chunk.len()];
            while !bufs.is_empty() {
                let n = self.file.write_vectored(bufs)?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        "short write",
                    ));
                }
                IoSlice::advance_slices(&mut bufs, n);
            }
        }
        Ok(())
    }

    /// Position and header of the first batch whose last offset is >= `offset`, if any.
    pub(crate) fn find_batch(
        &self,
        offset: i64,
        size_limit: u64,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let mut pos = self.offset_index.lookup(offset).map_or(0, |e| e.position);
        while pos < size_limit {
            let h = self.header_at(pos)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_bytes() as u64;
        }
        Ok(None)
    }

    /// The largest batch boundary <= `limit` that is >= `from` (a position of a batch start or
    /// the end of one), walking at most one index interval of headers.
    pub(crate) fn boundary_at_or_before(&self, from: u64, limit: u64) -> Result<u64> {
        let mut pos = self
            .offset_index
            .lookup_position(limit)
            .map_or(0, |e| e.position)
            .max(from);
        if pos > limit {
            return Ok(from);
        }
        while pos < self.size {
            let h = self.header_at(pos)?;
            let end = pos + h.total_bytes() as u64;
            if end > limit {
                break;
            }
            pos = end;
        }
        Ok(pos)
    }

    /// Position of the first batch with base offset >= `offset` (the segment size if none).
    pub(crate) fn position_of_offset(&self, offset: i64, size_limit: u64) -> Result<u64> {
        let mut pos = self.offset_index.lookup(offset).map_or(0, |e| e.position);
        while pos < size_limit {
            let h = self.header_at(pos)?;
            if h.base_offset >= offset {
                return Ok(pos);
            }
            pos += h.total_bytes() as u64;
        }
        Ok(size_limit)
    }

    /// The first batch whose max timestamp is >= `timestamp`.
    pub(crate) fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<(u64, BatchHeader)>> {
        let start = match self.time_index.lookup_before(timestamp) {
            Some(t) => self.offset_index.lookup(t.offset).map_or(0, |e| e.position),
            None => 0,
        };
        let mut pos = start;
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.max_timestamp >= timestamp {
                return Ok(Some((pos, h)));
            }
            pos += h.total_bytes() as u64;
        }
        Ok(None)
    }

    /// Reads `len` bytes at `position` (for the cleaner and timestamp lookups).
    pub(crate) fn read_bytes(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(|e| Error::io(&self.log_path, e))?;
        Ok(buf)
    }

    /// Seals the segment when a newer one takes over: a last time-index entry for its max
    /// timestamp, indexes trimmed to size.
    pub(crate) fn seal(&mut self) -> Result<()> {
        self.time_index.reserve(1)?;
        self.time_index
            .maybe_push(self.max_timestamp, self.offset_of_max_timestamp);
        self.offset_index.trim()?;
        self.time_index.trim()
    }

    /// Flushes the indexes' dirty pages (before a recovery point checkpoint covers them).
    pub(crate) fn flush_indexes(&self) -> Result<()> {
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    pub(crate) fn sync_data(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.log_path, e))
    }

    /// Transactions aborted by a marker in this segment, in marker order.
    pub(crate) fn aborted_txns(&self) -> &[AbortedTxn] {
        self.txn_index.entries()
    }

    /// Indexes a transaction whose abort marker this segment holds.
    pub(crate) fn append_aborted_txn(&mut self, t: AbortedTxn) -> Result<()> {
        self.txn_index.append(t)
    }

    /// Drops the aborted-transaction entries whose marker is at or past `offset`.
    pub(crate) fn truncate_txn_index(&mut self, offset: i64) -> Result<usize> {
        self.txn_index.truncate_from(offset)
    }

    /// fsyncs the transaction index if it changed since the last sync.
    pub(crate) fn sync_txn_index(&mut self) -> Result<()> {
        self.txn_index.sync()
    }

    /// Whether opening found the transaction index damaged (and cut it).
    pub(crate) fn txn_index_was_cut(&self) -> bool {
        self.txn_index_cut
    }

    /// Removes the segment's files (the caller syncs the directory).
    pub(crate) fn delete_files(self) -> Result<()> {
        self.remove_files(true)
    }

    /// Removes the segment's data and offset/time indexes but keeps its transaction index: the
    /// cleaner's swap, whose cleaned segment keeps every marker and so the same entries.
    pub(crate) fn delete_files_keeping_txn_index(self) -> Result<()> {
        self.remove_files(false)
    }

    fn remove_files(self, with_txn_index: bool) -> Result<()> {
        let mut paths = vec![
            self.log_path.clone(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ];
        if with_txn_index {
            paths.push(self.txn_index.path().to_path_buf());
        }
        drop(self);
        for p in paths {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&p, e)),
            }
        }
        Ok(())
    }
}

/// fsyncs a directory so that creates, renames and deletes in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
