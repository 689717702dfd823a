//! A partition's log: an ordered set of segments with one active segment at the end, as Kafka's
//! `UnifiedLog`/`LocalLog`. Single writer (`&mut self`), many readers (`&self`); the broker wraps
//! it in a lock held only for bookkeeping, never across an fsync or a read of record bytes.
//!
//! Transactions: data batches start and continue transactions through the producer state,
//! [`Log::append_marker`] ends them (an abort is indexed in the active segment's `.txnindex`),
//! [`Log::last_stable_offset`] is the first offset of the earliest ongoing transaction (else the
//! high watermark) and [`Log::aborted_transactions`] answers read_committed fetches from the
//! segments' indexes. Clients may not append control batches (Kafka refuses them too): only the
//! log writes markers, so the live state and the state recovery rebuilds always agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use crate::checkpoint::{
    read_cleaner_checkpoint, write_cleaner_checkpoint, PartitionCheckpoint, CLEANER_CHECKPOINT,
    LEADER_EPOCH_CHECKPOINT, PARTITION_CHECKPOINT,
};
use crate::config::{LogConfig, TimestampType};
use crate::error::{Error, Result};
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{self, Checked, ProducerEntry, ProducerState};
use crate::segment::{self, sync_dir, PreparedBatch, Segment, SegmentSizing, SegmentSnapshot};
use crate::segment_file::{DataFile, SegmentFile, Storage};
use crate::txn_index::AbortedTxn;
use sluice_records as records;
use sluice_records::control::{self, ControlRecord, MarkerType};
use sluice_records::{self as batch, BatchHeader, BATCH_HEADER_BYTES};

mod append;
mod flush;
mod load;
mod read;
mod retention;

/// A topic name and partition number; the log directory is `<topic>-<partition>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses `<topic>-<partition>`; `None` for anything else.
    pub fn parse_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if topic.is_empty()
            || partition.is_empty()
            || !partition.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(TopicPartition::new(topic, partition.parse().ok()?))
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// How an append is done.
#[derive(Debug, Clone, Copy)]
pub struct AppendOptions {
    /// Written into each batch's `partition_leader_epoch`.
    pub leader_epoch: i32,
    /// Wall-clock time, for LogAppendTime and `segment.ms`.
    pub now_ms: i64,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp under LogAppendTime, else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub max_timestamp: i64,
    pub batches: usize,
    pub bytes: usize,
}

/// A byte range of a segment file holding whole batches: what a fetch sends as is.
#[derive(Debug, Clone)]
pub struct FileRegion {
    file: Arc<SegmentFile>,
    position: u64,
    len: u64,
    path: Arc<PathBuf>,
}

impl FileRegion {
    pub fn position(&self) -> u64 {
        self.position
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The segment file's descriptor, for `sendfile` from [`FileRegion::position`]; `None`
    /// when the file is not a plain file (fault injection in tests). The descriptor stays
    /// valid, with the region's bytes, while the region lives, even if the segment is deleted.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.file.fd()
    }
    /// Appends the region's bytes to `out` (one `pread`, no decoding).
    pub fn read_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.resize(start + self.len as usize, 0);
        self.file
            .read_exact_at(&mut out[start..], self.position)
            .map_err(|e| Error::io(self.path.as_path(), e))
    }
    /// The region's bytes, in a buffer of exactly their size (one `pread`). `vec![0; n]`
    /// takes zeroed pages from the allocator instead of writing zeros over the buffer first.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = vec![0u8; self.len as usize];
        self.file
            .read_exact_at(&mut v, self.position)
            .map_err(|e| Error::io(self.path.as_path(), e))?;
        Ok(v)
    }
}

/// What a read found.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    /// `None` when there is nothing to return at this offset (yet).
    pub region: Option<FileRegion>,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// The last stable offset ([`Log::last_stable_offset`]) when the read was made.
    pub last_stable_offset: i64,
}

/// Which offset ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    MaxTimestamp,
    /// The first offset whose record timestamp is >= this.
    Timestamp(i64),
}

/// Data to fsync, taken under the log's lock and synced outside it (group commit: every append
/// made before the ticket was taken is covered by one `fdatasync` per segment file).
#[derive(Debug)]
pub struct FlushTicket {
    files: Vec<(Arc<SegmentFile>, PathBuf)>,
    upto: i64,
    /// The log's directory, for errors.
    dir: PathBuf,
    /// The log's `sync_failure`: set here when a sync fails, read by the log.
    sync_failure: Arc<OnceLock<String>>,
}

impl FlushTicket {
    /// The offset everything below which is durable once [`FlushTicket::sync`] returns.
    pub fn upto(&self) -> i64 {
        self.upto
    }
    /// Runs `fdatasync` on each file; call without holding the log's lock.
    ///
    /// A failure takes the log offline: after a failed `fdatasync` Linux may have dropped the
    /// unsynced pages and a later one can succeed without writing them, so nothing appended
    /// since the last successful flush may ever be acknowledged as durable. Reopening the log
    /// recovers from the last checkpoint.
    ///
    /// Tickets of one log should be synced one at a time: `fdatasync` reports a writeback error
    /// once per open file, so of two concurrent syncs of one file only one may see it.
    pub fn sync(&self) -> Result<()> {
        self.check_no_sync_failure()?;
        for (f, p) in &self.files {
            if let Err(e) = f.sync_data() {
                let _ = self.sync_failure.set(format!(
                    "fdatasync of {} failed ({e}); unflushed data may be lost",
                    p.display()
                ));
                return Err(Error::io(p, e));
            }
        }
        // Another ticket's sync may have failed meanwhile, on writeback that covered ours.
        self.check_no_sync_failure()
    }

    fn check_no_sync_failure(&self) -> Result<()> {
        match self.sync_failure.get() {
            Some(reason) => Err(Error::Offline {
                path: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// What opening the log had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub clean_shutdown: bool,
    pub segments_scanned: usize,
    pub batches_scanned: u64,
    pub bytes_scanned: u64,
    pub truncated_bytes: u64,
    /// Offset at which invalid data was cut off, if any.
    pub truncated_at_offset: Option<i64>,
    pub segments_deleted: usize,
    pub indexes_rebuilt: usize,
    /// The producer snapshot the producer state was loaded from, if any.
    pub producer_snapshot_offset: Option<i64>,
    /// Batch headers read after that snapshot to rebuild the producer state.
    pub producer_batches_replayed: u64,
    /// Aborted-transaction indexes found damaged, cut, and rebuilt by replaying the log from a
    /// snapshot at or before their segment.
    pub txn_indexes_repaired: usize,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

/// One partition's log.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    topic_partition: TopicPartition,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    /// Everything below is fsynced (data files).
    recovery_point: i64,
    leader_epochs: LeaderEpochCache,
    unflushed_messages: i64,
    /// Wall time of the first append after the last flush, for `flush.ms`.
    first_unflushed_ms: Option<i64>,
    /// Set after a failure that left the files in an unknown state.
    offline: Option<String>,
    /// Set by a [`FlushTicket`] whose sync failed, possibly on another thread without the log's
    /// lock (hence shared and set once): the log is offline from then on.
    sync_failure: Arc<OnceLock<String>>,
    /// Where segment data files are opened (the file system, or a fault injector in tests).
    storage: Storage,
    /// The batches of the append in progress, kept to reuse the allocation.
    prepared: Vec<PreparedBatch>,
    /// The cleaner's checkpoint (`cleaner-offset-checkpoint`): everything below was compacted
    /// by a finished pass. Clamped to the log's range when a pass is planned.
    first_dirty_offset: i64,
    /// True while a cleaner pass planned on this log is running. Set by `Cleaner::plan` under
    /// `&Log` and cleared when the pass's output is installed or dropped, possibly on another
    /// thread, hence atomic: two passes would write the same `.cleaned` files.
    cleaning: Arc<AtomicBool>,
    /// Idempotent producers' epochs and last batches (Kafka's `ProducerStateManager`).
    producer_state: ProducerState,
    /// Producer entries staged by the append in progress, kept to reuse the allocation.
    pending_producers: Vec<(i64, ProducerEntry)>,
}

/// Who writes a batch: a producer, or the log itself (transaction markers, for the transaction
/// coordinator). Only the latter may write control batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Client,
    Coordinator,
}

fn sizing(c: &LogConfig) -> SegmentSizing {
    SegmentSizing {
        index_max_bytes: c.segment_index_bytes,
        index_interval_bytes: c.index_interval_bytes,
    }
}

fn parse_base(stem: &str) -> Option<i64> {
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

impl Log {
    /// The idempotent producers this partition tracks.
    pub fn producer_state(&self) -> &ProducerState {
        &self.producer_state
    }

    fn active(&self) -> &Segment {
        match self.segments.values().next_back() {
            Some(s) => s,
            None => unreachable!("a log always has an active segment"),
        }
    }

    fn active_mut(&mut self) -> &mut Segment {
        match self.segments.values_mut().next_back() {
            Some(s) => s,
            None => unreachable!("a log always has an active segment"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.topic_partition
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    /// Applies new topic configs; they take effect from the next append or background pass.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }
    /// With one replica the high watermark is the log end offset.
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
    /// Bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }
    pub fn latest_epoch(&self) -> Option<i32> {
        self.leader_epochs.latest_epoch()
    }
    pub fn is_offline(&self) -> Option<&str> {
        self.offline
            .as_deref()
            .or_else(|| self.sync_failure.get().map(String::as_str))
    }

    pub(crate) fn check_online(&self) -> Result<()> {
        match self.is_offline() {
            Some(reason) => Err(Error::Offline {
                path: self.dir.clone(),
                reason: reason.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// For the cleaner: snapshots of the closed segments (all but the active one), oldest first.
    pub(crate) fn closed_segments(&self) -> Vec<SegmentSnapshot> {
        let n = self.segments.len();
        self.segments
            .values()
            .take(n.saturating_sub(1))
            .map(Segment::snapshot)
            .collect()
    }

    /// For the cleaner: the segment with this base offset, if it is a closed one.
    pub(crate) fn closed_segment(&self, base: i64) -> Option<&Segment> {
        let active = self.active().base_offset();
        self.segments.get(&base).filter(|_| base != active)
    }

    pub(crate) fn first_segment_base(&self) -> i64 {
        self.segments.keys().next().copied().unwrap_or(0)
    }

    pub(crate) fn active_base_offset(&self) -> i64 {
        self.active().base_offset()
    }

    /// Puts `seg` in place of the segment with this base offset (`None`: removes it) and returns
    /// the old one. The cleaner never touches the active segment.
    pub(crate) fn replace_segment(&mut self, base: i64, seg: Option<Segment>) -> Option<Segment> {
        assert_ne!(
            base,
            self.active().base_offset(),
            "the active segment is never replaced"
        );
        let old = self.segments.remove(&base);
        if let Some(s) = seg {
            assert_eq!(s.base_offset(), base);
            self.segments.insert(base, s);
        }
        old
    }

    pub(crate) fn sizing(&self) -> SegmentSizing {
        sizing(&self.config)
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Takes the log offline after a failure that left its files in an unknown state (the next
    /// open recovers them).
    pub(crate) fn set_offline(&mut self, reason: String) {
        self.offline = Some(reason);
    }

    /// The cleaner's checkpoint as stored (not clamped).
    pub(crate) fn first_dirty_offset(&self) -> i64 {
        self.first_dirty_offset
    }

    /// Persists the cleaner's checkpoint, then remembers it.
    pub(crate) fn set_first_dirty_offset(&mut self, offset: i64) -> Result<()> {
        write_cleaner_checkpoint(&self.dir, offset)?;
        self.first_dirty_offset = offset;
        Ok(())
    }

    pub(crate) fn cleaning_flag(&self) -> &Arc<AtomicBool> {
        &self.cleaning
    }
}
