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

use crate::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::checkpoint::{
    read_cleaner_checkpoint, write_cleaner_checkpoint, PartitionCheckpoint, CLEANER_CHECKPOINT,
    LEADER_EPOCH_CHECKPOINT, PARTITION_CHECKPOINT,
};
use crate::config::{LogConfig, TimestampType};
use crate::control::{self, ControlRecord, MarkerType};
use crate::error::{Error, Result};
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{self, Checked, ProducerEntry, ProducerState};
use crate::records;
use crate::segment::{self, sync_dir, PreparedBatch, Segment, SegmentSizing, SegmentSnapshot};
use crate::segment_file::{DataFile, SegmentFile, Storage};
use crate::txn_index::AbortedTxn;

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
    /// Creates `parent/<topic>-<partition>` (if needed) and opens the log in it.
    pub fn create(
        parent: &Path,
        tp: &TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(Log, RecoveryReport)> {
        Log::create_in(parent, tp, config, now_ms, Storage::Std)
    }

    pub(crate) fn create_in(
        parent: &Path,
        tp: &TopicPartition,
        config: LogConfig,
        now_ms: i64,
        storage: Storage,
    ) -> Result<(Log, RecoveryReport)> {
        let dir = parent.join(tp.dir_name());
        let existed = dir.exists();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        if !existed {
            sync_dir(parent)?;
        }
        Log::open_in(&dir, config, now_ms, storage)
    }

    /// Opens the log in `dir`, recovering what a crash left behind: segments after the recovery
    /// point are scanned, validated (length, CRC) and cut at the first invalid byte; indexes that
    /// are missing or inconsistent are rebuilt.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<(Log, RecoveryReport)> {
        Log::open_in(dir, config, now_ms, Storage::Std)
    }

    /// [`Log::open`] with every segment data file behind `faults` (tests only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn open_with_faults(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        faults: Arc<crate::fault_injection::FaultInjector>,
    ) -> Result<(Log, RecoveryReport)> {
        Log::open_in(dir, config, now_ms, Storage::Faulty(faults))
    }

    pub(crate) fn open_in(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        storage: Storage,
    ) -> Result<(Log, RecoveryReport)> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let topic_partition =
            TopicPartition::parse_dir_name(name).ok_or_else(|| Error::NotALogDirectory {
                path: dir.to_path_buf(),
                reason: "the name is not <topic>-<partition>".into(),
            })?;
        if !dir.is_dir() {
            return Err(Error::NotALogDirectory {
                path: dir.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        let mut report = RecoveryReport::default();
        let (bases, swapped) = Self::scan_dir(dir)?;
        let checkpoint = PartitionCheckpoint::read(dir)?;
        let clean = checkpoint.is_some_and(|c| c.clean_shutdown);
        report.clean_shutdown = clean;
        let recover_from = match checkpoint {
            Some(c) if c.clean_shutdown => i64::MAX,
            Some(c) => c.recovery_point,
            None => i64::MIN,
        };
        // Segments from the one holding the recovery point onwards are scanned in full.
        let first_unflushed = if recover_from == i64::MAX {
            i64::MAX
        } else {
            bases
                .iter()
                .rev()
                .find(|b| **b <= recover_from)
                .copied()
                .unwrap_or(i64::MIN)
        };
        let sizing = sizing(&config);
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut prev_next: i64 = i64::MIN;
        let mut cut = false;
        let mut recovered = Vec::new();
        for &base in &bases {
            if cut {
                // Everything after a truncation point follows a hole: drop it, as Kafka does.
                let seg = Segment::open(dir, base, sizing, false, now_ms, &storage)?;
                tracing::warn!(path = %seg.log_path().display(), "deleting segment after truncated data");
                seg.delete_files()?;
                report.segments_deleted += 1;
                continue;
            }
            let mut seg = Segment::open(dir, base, sizing, false, now_ms, &storage)?;
            if prev_next > base {
                return Err(Error::Corrupted {
                    path: seg.log_path().to_path_buf(),
                    position: 0,
                    reason: format!(
                        "segment starts at {base}, inside the previous one (ends at {prev_next})"
                    ),
                });
            }
            // A segment that an interrupted cleaner swap just completed has no indexes yet.
            let must_scan = base >= first_unflushed || swapped.contains(&base);
            let loaded = if must_scan {
                Err(None)
            } else {
                seg.load().map_err(Some)
            };
            if let Err(why) = loaded {
                if let Some(e) = why {
                    tracing::warn!(error = %e, "segment failed its consistency check; scanning it");
                }
                let r = seg.recover(prev_next)?;
                report.segments_scanned += 1;
                report.indexes_rebuilt += 1;
                report.batches_scanned += r.batches;
                report.bytes_scanned += r.valid_bytes;
                if r.truncated_bytes > 0 {
                    tracing::warn!(
                        path = %seg.log_path().display(),
                        offset = seg.next_offset(),
                        position = r.valid_bytes,
                        bytes = r.truncated_bytes,
                        "truncated invalid data at the end of the log"
                    );
                    report.truncated_bytes += r.truncated_bytes;
                    report.truncated_at_offset = Some(seg.next_offset());
                    cut = true;
                }
                if r.batches > 0 || r.valid_bytes > 0 {
                    seg.sync_data()?;
                }
                recovered.push(base);
            }
            prev_next = seg.next_offset();
            segments.insert(base, seg);
        }
        // Recovery grew the rebuilt indexes; trim those of closed segments again.
        let last_base = segments.keys().next_back().copied();
        for base in recovered {
            if Some(base) != last_base {
                if let Some(seg) = segments.get_mut(&base) {
                    seg.seal()?;
                }
            }
        }
        let log_start_offset_cp = checkpoint.map(|c| c.log_start_offset);
        let first_base = segments.keys().next().copied();
        let start = match (log_start_offset_cp, first_base) {
            (Some(c), Some(b)) => c.max(b),
            (Some(c), None) => c,
            (None, Some(b)) => b,
            (None, None) => 0,
        };
        if segments.is_empty() {
            let seg = Segment::open(dir, start, sizing, true, now_ms, &storage)?;
            segments.insert(start, seg);
            sync_dir(dir)?;
        }
        let mut log = Log {
            dir: dir.to_path_buf(),
            topic_partition,
            config,
            segments,
            log_start_offset: 0,
            recovery_point: 0,
            leader_epochs: LeaderEpochCache::load(dir)?,
            unflushed_messages: 0,
            first_unflushed_ms: None,
            offline: None,
            sync_failure: Arc::new(OnceLock::new()),
            storage,
            prepared: Vec::new(),
            first_dirty_offset: read_cleaner_checkpoint(dir)?.unwrap_or(0),
            cleaning: Arc::new(AtomicBool::new(false)),
            producer_state: ProducerState::default(),
            pending_producers: Vec::new(),
        };
        let leo = log.log_end_offset();
        log.log_start_offset = start.min(leo);
        log.recovery_point = leo;
        log.active_mut().prepare_for_append()?;
        log.leader_epochs.truncate_from_end(leo)?;
        // A damaged transaction index is rebuilt by replaying from a snapshot at or before its
        // segment (one is kept at each segment base).
        let damaged: Vec<i64> = log
            .segments
            .values()
            .filter(|s| s.txn_index_was_cut())
            .map(Segment::base_offset)
            .collect();
        report.txn_indexes_repaired = damaged.len();
        let replay_at_most = damaged.first().copied().unwrap_or(i64::MAX);
        // Snapshots past the (possibly truncated) log end go; the newest other one plus the
        // headers after it rebuild the producer state and the transaction indexes past it.
        let (state, snapshot) = ProducerState::load(dir, leo, replay_at_most)?;
        log.producer_state = state;
        report.producer_snapshot_offset = snapshot;
        report.producer_batches_replayed =
            log.replay_producer_state(snapshot.unwrap_or(i64::MIN))?;
        // From now on a crash is not a clean shutdown.
        log.write_checkpoint(false)?;
        Ok((log, report))
    }

    /// Lists segment bases, deletes leftovers (tmp files, unfinished cleaner output, orphan
    /// indexes) and completes interrupted cleaner swaps. Returns the bases and, of those, the
    /// segments a swap replaced (their indexes must be rebuilt).
    fn scan_dir(dir: &Path) -> Result<(Vec<i64>, Vec<i64>)> {
        let mut bases = Vec::new();
        let mut swapped = Vec::new();
        let mut others: Vec<(PathBuf, i64)> = Vec::new();
        let mut swaps = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                return Err(Error::NotALogDirectory {
                    path: dir.to_path_buf(),
                    reason: format!("unexpected file {}", path.display()),
                });
            };
            if name == PARTITION_CHECKPOINT
                || name == LEADER_EPOCH_CHECKPOINT
                || name == CLEANER_CHECKPOINT
            {
                continue;
            }
            if name.ends_with(".tmp") || name.ends_with(".cleaned") || name.ends_with(".deleted") {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            let (stem, suffix) = name.split_once('.').unwrap_or((&name, ""));
            let base = parse_base(stem);
            match (base, suffix) {
                (Some(b), "log") => bases.push(b),
                (Some(b), "index" | "timeindex" | "txnindex") => others.push((path, b)),
                (Some(b), "log.swap") => swaps.push((path, b)),
                // Producer state snapshots: `ProducerState::load` reads them.
                (Some(_), producer_state::SNAPSHOT_SUFFIX) => {}
                _ => {
                    return Err(Error::NotALogDirectory {
                        path: dir.to_path_buf(),
                        reason: format!("unexpected file {name}"),
                    })
                }
            }
        }
        for (swap, base) in swaps {
            // The cleaner fsynced the swap file before renaming it to .swap: it is complete and
            // replaces the segment with the same base offset.
            let target = dir.join(segment::file_name(base, segment::LOG_SUFFIX));
            for suffix in [segment::INDEX_SUFFIX, segment::TIME_INDEX_SUFFIX] {
                let p = dir.join(segment::file_name(base, suffix));
                if p.exists() {
                    std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
            std::fs::rename(&swap, &target).map_err(|e| Error::io(&swap, e))?;
            if !bases.contains(&base) {
                bases.push(base);
            }
            swapped.push(base);
        }
        bases.sort_unstable();
        for (path, b) in others {
            if bases.binary_search(&b).is_err() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        sync_dir(dir)?;
        Ok((bases, swapped))
    }

    /// Rebuilds the producer state from the batch headers at and after `from` (data records are
    /// not decoded; a control batch's one record is, to tell commit from abort), and with it the
    /// aborted-transaction index entries of the markers at and after `from`: those on disk are
    /// dropped first, so the indexes end up exactly as the appends left them. Returns how many
    /// headers it read.
    fn replay_producer_state(&mut self, from: i64) -> Result<u64> {
        let mut replayed = 0;
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let Log {
            segments,
            producer_state,
            ..
        } = self;
        for seg in segments.range_mut(first..).map(|(_, s)| s) {
            if seg.next_offset() <= from {
                continue;
            }
            seg.truncate_txn_index(from)?;
            let mut pos = if from > seg.base_offset() {
                seg.position_of_offset(from, seg.size())?
            } else {
                0
            };
            while pos < seg.size() {
                let h = seg.header_at(pos)?;
                if !h.is_control() {
                    producer_state.replay(&h);
                } else if h.producer_id >= 0 {
                    let bytes = seg.read_bytes(pos, h.total_bytes())?;
                    let marker = match control::parse_control_batch(&bytes) {
                        ControlRecord::Marker {
                            marker,
                            coordinator_epoch,
                        } => Some(Some((marker, coordinator_epoch))),
                        // Kafka changes nothing for a control batch without records.
                        ControlRecord::Empty => None,
                        ControlRecord::Malformed(reason) => {
                            tracing::warn!(
                                path = %seg.log_path().display(),
                                offset = h.base_offset,
                                reason,
                                "unreadable transaction marker: ending the producer's transaction without an abort"
                            );
                            Some(None)
                        }
                    };
                    if let Some(marker) = marker {
                        let completed = producer_state.complete_marker(
                            h.producer_id,
                            h.producer_epoch,
                            marker,
                            h.base_offset,
                            h.max_timestamp,
                        );
                        if let Some(t) = completed.and_then(|c| c.aborted_txn()) {
                            seg.append_aborted_txn(t)?;
                        }
                    }
                }
                replayed += 1;
                pos += h.total_bytes() as u64;
            }
        }
        Ok(replayed)
    }

    /// Writes a producer snapshot at the log end offset, unless the newest one is there.
    fn write_producer_snapshot(&mut self) -> Result<()> {
        // A replay from the snapshot does not rebuild the aborted-transaction entries below its
        // offset: make them durable first (aborts are rare; this is a no-op without new ones).
        for seg in self.segments.values_mut() {
            seg.sync_txn_index()?;
        }
        let offset = self.log_end_offset();
        if self.producer_state.latest_snapshot_offset() == Some(offset) {
            return Ok(());
        }
        let segments = &self.segments;
        self.producer_state
            .write_snapshot(&self.dir, offset, &|o| segments.contains_key(&o))
    }

    /// The idempotent producers this partition tracks.
    pub fn producer_state(&self) -> &ProducerState {
        &self.producer_state
    }

    fn write_checkpoint(&self, clean_shutdown: bool) -> Result<()> {
        PartitionCheckpoint {
            log_start_offset: self.log_start_offset,
            recovery_point: self.recovery_point,
            clean_shutdown,
        }
        .write(&self.dir)
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

    /// Appends record batches as a producer sent them: validated (length, magic, CRC-32C,
    /// `max.message.bytes`), given offsets and the leader epoch in place, and written unchanged
    /// otherwise. Nothing is written unless every batch is valid. Does not fsync: see
    /// [`Log::prepare_flush`].
    pub fn append(&mut self, records: &[u8], opts: AppendOptions) -> Result<AppendInfo> {
        self.check_online()?;
        // Compacted topics refuse keyless records and `compression.type` may ask for another
        // codec: only then are records looked at (and a converted copy written).
        let converted = self.conform(records)?;
        let records = converted.as_deref().unwrap_or(records);
        // Reuse the last append's vector: no allocation per append in the steady state.
        let mut prepared = std::mem::take(&mut self.prepared);
        let mut pending = std::mem::take(&mut self.pending_producers);
        let result = self.append_with(records, opts, &mut prepared, &mut pending, Origin::Client);
        prepared.clear();
        pending.clear();
        self.prepared = prepared;
        self.pending_producers = pending;
        result
    }

    /// Writes an end-transaction marker for `producer_id` as a control batch (Kafka's
    /// `MemoryRecords.withEndTransactionMarker`: magic 2, attributes transactional | control,
    /// the given producer id and epoch, base sequence -1, one record with key `[version 0,
    /// type]` and value `[version 0, coordinator_epoch]`, timestamp `opts.now_ms`), for
    /// WriteTxnMarkers.
    ///
    /// Fenced as Kafka fences it: a producer epoch older than the producer's current one fails
    /// with [`Error::InvalidProducerEpoch`], a coordinator epoch older than the one of the
    /// producer's last marker with [`Error::TransactionCoordinatorFenced`]; nothing is written
    /// then. Otherwise the producer's epoch becomes `producer_epoch` (a newer epoch forgets its
    /// batches, so that epoch's first batch must have sequence 0), its ongoing transaction ends,
    /// and an abort is indexed in the active segment (the transaction's first offset, the
    /// marker's offset, the last stable offset after it). A marker for a producer with no ongoing
    /// transaction is written all the same, as Kafka does, and indexes nothing.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: MarkerType,
        coordinator_epoch: i32,
        opts: AppendOptions,
    ) -> Result<AppendInfo> {
        self.check_online()?;
        if producer_id < 0 {
            return Err(crate::BatchError::Inconsistent(
                "a transaction marker needs a producer id",
            )
            .into());
        }
        self.producer_state
            .check_marker(producer_id, producer_epoch, coordinator_epoch)?;
        let batch = control::end_txn_marker_batch(
            producer_id,
            producer_epoch,
            marker,
            coordinator_epoch,
            opts.now_ms,
        );
        let mut prepared = std::mem::take(&mut self.prepared);
        let mut pending = std::mem::take(&mut self.pending_producers);
        let result = self.append_with(
            &batch,
            opts,
            &mut prepared,
            &mut pending,
            Origin::Coordinator,
        );
        prepared.clear();
        pending.clear();
        self.prepared = prepared;
        self.pending_producers = pending;
        let info = result?;
        let completed = self.producer_state.complete_marker(
            producer_id,
            producer_epoch,
            Some((marker, coordinator_epoch)),
            info.base_offset,
            info.max_timestamp,
        );
        if let Some(t) = completed.and_then(|c| c.aborted_txn()) {
            if let Err(e) = self.active_mut().append_aborted_txn(t) {
                // The marker is in the log but its index entry is not: reopening rebuilds it
                // (the marker is past every producer snapshot).
                self.offline = Some(format!(
                    "cannot index the transaction aborted at offset {}: {e}",
                    t.last_offset
                ));
                return Err(e);
            }
        }
        Ok(info)
    }

    /// The last stable offset: the first offset of the earliest ongoing transaction, else the
    /// high watermark (never below the log start offset, as in Kafka once retention deleted
    /// the start of a transaction). What a read_committed consumer may read up to.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.producer_state
            .first_ongoing_offset()
            .map_or(hw, |first| first.min(hw))
            .max(self.log_start_offset)
    }

    /// Aborted transactions that overlap `[from, upper)` (`last_offset >= from` and
    /// `first_offset < upper`), ordered by first offset: the `aborted_transactions` of a
    /// read_committed Fetch. As Kafka's `collectAbortedTransactions`: an entry lives in the
    /// segment of its marker, so the scan starts at the segment holding `from` and stops at the
    /// first entry whose last stable offset is at or past `upper` (every transaction that
    /// completes after it started at or after `upper`).
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let mut out = Vec::new();
        if from >= upper {
            return out;
        }
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        'segments: for seg in self.segments.range(first..).map(|(_, s)| s) {
            for t in seg.aborted_txns() {
                if t.last_offset >= from && t.first_offset < upper {
                    out.push(*t);
                }
                if t.last_stable_offset >= upper {
                    break 'segments;
                }
            }
        }
        out.sort_by_key(|t| t.first_offset);
        out
    }

    /// Checks and converts batches when the topic's configs need more than the header:
    /// `cleanup.policy=compact` refuses records without a key (Kafka's rule; the cleaner could
    /// never remove them), and a `compression.type` other than `producer` recompresses batches
    /// in another codec. `None`: the input is stored as received.
    fn conform(&self, records: &[u8]) -> Result<Option<Vec<u8>>> {
        let compact = self.config.cleanup_policy.compact;
        let target = self.config.compression_type.codec();
        if !compact && target.is_none() {
            return Ok(None);
        }
        let max = self.config.max_message_bytes.max(BATCH_HEADER_BYTES);
        let parts = batch::split_produced_batches(records, max)?;
        let mut out: Option<Vec<u8>> = None;
        for (i, (at, h)) in parts.iter().enumerate() {
            let whole = &records[*at..*at + h.total_bytes()];
            let needs_codec = target.is_some_and(|c| c != h.compression()) && !h.is_control();
            if !compact && !needs_codec {
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(whole);
                }
                continue;
            }
            let body = records::records_body(whole)?;
            let views = records::parse_records(&body, h.records_count)?;
            if compact {
                let keyless: Vec<usize> = views
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.key.is_none())
                    .map(|(r, _)| r)
                    .collect();
                if !keyless.is_empty() {
                    return Err(crate::BatchError::KeylessRecordOnCompactedTopic {
                        batch_index: i,
                        record_indexes: keyless,
                    }
                    .into());
                }
            }
            match (needs_codec, target) {
                (true, Some(codec)) => {
                    let o = out.get_or_insert_with(|| records[..*at].to_vec());
                    let payload = records::compress_body(codec, &body)?;
                    let attrs = (h.attributes & !batch::attributes::COMPRESSION_MASK) | codec;
                    let mut header = whole[..BATCH_HEADER_BYTES].to_vec();
                    batch::patch_records(&mut header, attrs, h.records_count, &payload)?;
                    o.extend_from_slice(&header);
                    o.extend_from_slice(&payload);
                }
                _ => {
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(whole);
                    }
                }
            }
        }
        Ok(out)
    }

    fn append_with(
        &mut self,
        records: &[u8],
        opts: AppendOptions,
        prepared: &mut Vec<PreparedBatch>,
        pending: &mut Vec<(i64, ProducerEntry)>,
        origin: Origin,
    ) -> Result<AppendInfo> {
        let max = self.config.max_message_bytes.max(BATCH_HEADER_BYTES);
        let log_append = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        let mut max_timestamp = -1i64;
        let mut at = 0;
        prepared.clear();
        // Validate every batch (as `batch::split_produced_batches`) before writing any.
        while at < records.len() {
            let rest = &records[at..];
            let len = batch::declared_batch_bytes(rest, max)?;
            if len > rest.len() {
                return Err(crate::BatchError::Truncated {
                    needed: len,
                    available: rest.len(),
                }
                .into());
            }
            let whole = &rest[..len];
            if batch::validate_produced_batch(whole)?.is_control() && origin == Origin::Client {
                // Kafka's `LogValidator`: only the log writes transaction markers.
                return Err(crate::BatchError::Inconsistent(
                    "clients may not write control batches",
                )
                .into());
            }
            let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
            header_bytes.copy_from_slice(&whole[..BATCH_HEADER_BYTES]);
            batch::patch_header(&mut header_bytes, next, opts.leader_epoch);
            if log_append {
                batch::patch_log_append_time(
                    &mut header_bytes,
                    &whole[BATCH_HEADER_BYTES..],
                    opts.now_ms,
                );
            }
            let header = BatchHeader::parse(&header_bytes)?;
            if producer_state::is_tracked(&header) {
                match self.producer_state.check(&header, pending)? {
                    Checked::Append => self.producer_state.stage(&header, pending),
                    // A retry of a batch already written: acknowledged with its original
                    // offsets, nothing written (Kafka; its produce requests hold one batch).
                    Checked::Duplicate(d) if at == 0 && len == records.len() => {
                        return Ok(AppendInfo {
                            base_offset: d.first_offset,
                            last_offset: d.last_offset,
                            log_append_time_ms: -1,
                            log_start_offset: self.log_start_offset,
                            max_timestamp: d.timestamp,
                            batches: 0,
                            bytes: 0,
                        });
                    }
                    Checked::Duplicate(_) => {
                        return Err(Error::DuplicateSequence {
                            producer_id: header.producer_id,
                            sequence: header.base_sequence,
                        })
                    }
                }
            }
            max_timestamp = max_timestamp.max(header.max_timestamp);
            next = header.next_offset();
            prepared.push(PreparedBatch {
                header_bytes,
                at,
                header,
            });
            at += len;
        }
        if prepared.is_empty() {
            return Err(crate::BatchError::Empty.into());
        }
        let bytes = records.len();
        self.maybe_roll(bytes as u64, next - 1, opts.now_ms)?;
        // Before the data, as Kafka does: if the epoch cannot be recorded nothing is written, and
        // an entry whose append then fails still names the offset the epoch's data starts at.
        if opts.leader_epoch >= 0 {
            self.leader_epochs.assign(opts.leader_epoch, base_offset)?;
        }
        if let Err(e) = self.active_mut().append(records, prepared, opts.now_ms) {
            if let Error::Offline { reason, .. } = &e {
                self.offline = Some(reason.clone());
            }
            return Err(e);
        }
        self.producer_state.commit(pending);
        self.unflushed_messages += next - base_offset;
        self.first_unflushed_ms.get_or_insert(opts.now_ms);
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time_ms: if log_append { opts.now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            max_timestamp,
            batches: prepared.len(),
            bytes,
        })
    }

    fn maybe_roll(&mut self, incoming_bytes: u64, last_offset: i64, now_ms: i64) -> Result<()> {
        let cfg = &self.config;
        let a = self.active();
        let should = !a.is_empty()
            && (a.size() + incoming_bytes > cfg.segment_bytes
                || now_ms - a.rolling_base_ms() >= cfg.segment_ms
                || a.indexes_full()
                || last_offset - a.base_offset() > u32::MAX as i64);
        if should {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end offset.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        self.check_online()?;
        let base = self.log_end_offset();
        if self.segments.contains_key(&base) {
            return Ok(());
        }
        let seg = Segment::open(
            &self.dir,
            base,
            sizing(&self.config),
            true,
            now_ms,
            &self.storage,
        )?;
        sync_dir(&self.dir)?;
        self.active_mut().seal()?;
        self.segments.insert(base, seg);
        self.active_mut().prepare_for_append()?;
        // Recovery replays the producer state from here on. Without the snapshot it replays
        // from an older one: slower, not wrong.
        if let Err(e) = self.write_producer_snapshot() {
            tracing::warn!(error = %e, dir = %self.dir.display(), "cannot write a producer snapshot");
        }
        Ok(())
    }

    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes`
    /// (at least one batch when `min_one_batch`), none at or past `upper_bound` (the high
    /// watermark, or the last stable offset for read_committed). Stays within one segment.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one_batch: bool,
    ) -> Result<ReadInfo> {
        self.check_online()?;
        let leo = self.log_end_offset();
        let mut info = ReadInfo {
            region: None,
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark(),
            log_end_offset: leo,
            last_stable_offset: self.last_stable_offset(),
        };
        if offset < self.log_start_offset || offset > leo {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        let upper = upper_bound.min(leo);
        if offset >= upper {
            return Ok(info);
        }
        let from = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut want = offset;
        for seg in self.segments.range(from..).map(|(_, s)| s) {
            if seg.base_offset() >= upper {
                break;
            }
            let Some((pos, first)) = seg.find_batch(want, seg.size())? else {
                want = want.max(seg.next_offset());
                continue;
            };
            if first.base_offset >= upper {
                break;
            }
            let upper_pos = if upper < seg.next_offset() {
                seg.position_of_offset(upper, seg.size())?
            } else {
                seg.size()
            };
            let first_end = pos + first.total_bytes() as u64;
            let end = if first_end > pos + max_bytes as u64 {
                if min_one_batch {
                    first_end
                } else {
                    pos
                }
            } else {
                seg.boundary_at_or_before(first_end, upper_pos.min(pos + max_bytes as u64))?
            };
            if end > pos {
                info.region = Some(FileRegion {
                    file: Arc::clone(seg.file()),
                    position: pos,
                    len: end - pos,
                    path: Arc::new(seg.log_path().to_path_buf()),
                });
            }
            return Ok(info);
        }
        Ok(info)
    }

    /// ListOffsets: `(offset, timestamp)`, or `None` when no record qualifies (a timestamp
    /// newer than every record).
    pub fn lookup_offset(&self, spec: OffsetSpec) -> Result<Option<(i64, i64)>> {
        self.check_online()?;
        match spec {
            OffsetSpec::Earliest => Ok(Some((self.log_start_offset, -1))),
            OffsetSpec::Latest => Ok(Some((self.high_watermark(), -1))),
            OffsetSpec::MaxTimestamp => {
                let mut best: Option<(i64, &Segment)> = None;
                for seg in self.segments.values() {
                    if seg.max_timestamp() >= 0
                        && best.is_none_or(|(t, _)| seg.max_timestamp() >= t)
                    {
                        best = Some((seg.max_timestamp(), seg));
                    }
                }
                let Some((ts, seg)) = best else {
                    return Ok(None);
                };
                let Some((pos, h)) = seg.find_by_timestamp(ts)? else {
                    return Ok(None);
                };
                let bytes = seg.read_bytes(pos, h.total_bytes())?;
                let off = records::last_offset_with_timestamp(&bytes, ts)?.unwrap_or(h.base_offset);
                Ok(Some((off.max(self.log_start_offset), ts)))
            }
            OffsetSpec::Timestamp(ts) => {
                for seg in self.segments.values() {
                    if seg.max_timestamp() < ts {
                        continue;
                    }
                    let mut at = seg.find_by_timestamp(ts)?;
                    while let Some((pos, h)) = at {
                        let bytes = seg.read_bytes(pos, h.total_bytes())?;
                        if let Some((off, t)) = records::first_offset_at_or_after(&bytes, ts)? {
                            if off >= self.log_start_offset {
                                return Ok(Some((off, t)));
                            }
                        }
                        let next = pos + h.total_bytes() as u64;
                        at = if next < seg.size() {
                            let nh = seg.header_at(next)?;
                            Some((next, nh))
                        } else {
                            None
                        };
                    }
                }
                Ok(None)
            }
        }
    }

    /// OffsetForLeaderEpoch: `(epoch, end_offset)` for the largest epoch <= `epoch`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.leader_epochs
            .end_offset_for(epoch, self.log_end_offset())
    }

    /// True when `flush.messages` or `flush.ms` asks for a flush now.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        self.unflushed_messages >= self.config.flush_messages
            || self
                .first_unflushed_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.flush_ms)
    }

    /// Collects what must be fsynced to make everything appended so far durable; `None` if it
    /// already is.
    pub fn prepare_flush(&self) -> Option<FlushTicket> {
        let upto = self.log_end_offset();
        if self.recovery_point >= upto {
            return None;
        }
        let files = self
            .segments
            .values()
            .filter(|s| s.next_offset() > self.recovery_point && !s.is_empty())
            .map(|s| (Arc::clone(s.file()), s.log_path().to_path_buf()))
            .collect();
        Some(FlushTicket {
            files,
            upto,
            dir: self.dir.clone(),
            sync_failure: Arc::clone(&self.sync_failure),
        })
    }

    /// Records that a ticket's sync finished. Ignored once a sync has failed: nothing after
    /// the last good flush becomes durable before the log is reopened.
    pub fn complete_flush(&mut self, upto: i64) {
        if self.sync_failure.get().is_some() {
            return;
        }
        if upto > self.recovery_point {
            self.recovery_point = upto;
        }
        if self.recovery_point >= self.log_end_offset() {
            self.unflushed_messages = 0;
            self.first_unflushed_ms = None;
        }
    }

    /// fsyncs everything appended so far (holding `&mut self`; the broker uses the ticket API).
    pub fn flush(&mut self) -> Result<()> {
        if let Some(t) = self.prepare_flush() {
            t.sync()?;
            self.complete_flush(t.upto());
        }
        Ok(())
    }

    /// Flushes the indexes and writes the recovery point, bounding what the next recovery
    /// scans (Kafka's `log.flush.offset.checkpoint.interval.ms`).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.check_online()?;
        // Sealed segments had their indexes trimmed and synced when they rolled.
        self.active().flush_indexes()?;
        self.write_producer_snapshot()?;
        self.write_checkpoint(false)
    }

    /// Clean shutdown: flush, seal the indexes, write the clean-shutdown checkpoint.
    pub fn close(mut self) -> Result<()> {
        self.close_in_place()
    }

    /// [`Log::close`] for a log behind a lock: afterwards it refuses every operation.
    pub fn close_in_place(&mut self) -> Result<()> {
        self.check_online()?;
        self.flush()?;
        self.active_mut().seal()?;
        self.write_producer_snapshot()?;
        self.write_checkpoint(true)?;
        self.offline = Some("the log is closed".into());
        Ok(())
    }

    fn delete_oldest(&mut self, report: &mut RetentionReport) -> Result<()> {
        let Some((&base, _)) = self.segments.iter().next() else {
            return Ok(());
        };
        let next_base = self.segments.range(base + 1..).next().map(|(b, _)| *b);
        let Some(next_base) = next_base else {
            return Ok(());
        };
        // Persist the new log start before the files go, so a crash in between cannot bring
        // deleted records back.
        self.log_start_offset = self.log_start_offset.max(next_base);
        self.write_checkpoint(false)?;
        if let Some(seg) = self.segments.remove(&base) {
            report.bytes_deleted += seg.size();
            report.segments_deleted += 1;
            seg.delete_files()?;
        }
        self.producer_state
            .delete_snapshots_before(&self.dir, next_base)?;
        Ok(())
    }

    /// True when the first segment holds only offsets below the log start offset: the next
    /// segment starts at or below it (as Kafka decides; a compacted segment's last batch can
    /// end well before the next segment's base).
    fn first_segment_below_log_start(&self) -> bool {
        self.segments
            .keys()
            .nth(1)
            .is_some_and(|next_base| *next_base <= self.log_start_offset)
    }

    /// Deletes closed segments that `retention.ms` / `retention.bytes` (with
    /// `cleanup.policy=delete`) or the log start offset leave behind.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport> {
        self.check_online()?;
        let mut report = RetentionReport::default();
        self.producer_state.remove_expired(now_ms);
        // Segments wholly below the log start offset (DeleteRecords).
        while self.first_segment_below_log_start() {
            self.delete_oldest(&mut report)?;
        }
        if self.config.cleanup_policy.delete {
            if self.config.retention_ms >= 0 {
                // A segment that compaction emptied holds no records: it expires with the first
                // segment after it that does (an empty active segment is never deleted).
                while let Some(first) = self.segments.values().find(|s| !s.is_empty()) {
                    let ts = if first.max_timestamp() >= 0 {
                        first.max_timestamp()
                    } else {
                        file_mtime_ms(first.log_path()).unwrap_or(now_ms)
                    };
                    if now_ms - ts <= self.config.retention_ms {
                        break;
                    }
                    if self.segments.len() == 1 {
                        self.roll(now_ms)?;
                    }
                    self.delete_oldest(&mut report)?;
                }
            }
            if self.config.retention_bytes >= 0 {
                let mut total = self.size_bytes() as i64;
                while self.segments.len() > 1 {
                    let first = self
                        .segments
                        .values()
                        .next()
                        .map(Segment::size)
                        .unwrap_or(0) as i64;
                    if total - first < self.config.retention_bytes {
                        break;
                    }
                    total -= first;
                    self.delete_oldest(&mut report)?;
                }
            }
        }
        if report.segments_deleted > 0 {
            sync_dir(&self.dir)?;
        }
        report.log_start_offset = self.log_start_offset;
        Ok(report)
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1: the high watermark) and drops
    /// the segments wholly below it. Returns the new log start offset.
    pub fn delete_records(&mut self, offset: i64, now_ms: i64) -> Result<i64> {
        self.check_online()?;
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: hw,
            });
        }
        if target > self.log_start_offset {
            self.log_start_offset = target;
            self.write_checkpoint(false)?;
            if target == self.log_end_offset() && !self.active().is_empty() {
                self.roll(now_ms)?;
            }
            let mut report = RetentionReport::default();
            while self.first_segment_below_log_start() {
                self.delete_oldest(&mut report)?;
            }
            sync_dir(&self.dir)?;
        }
        Ok(self.log_start_offset)
    }

    /// Removes the log's directory and everything in it (DeleteTopics).
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
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

fn file_mtime_ms(path: &Path) -> Option<i64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}
