//! Log compaction (`cleanup.policy=compact`, alone or with `delete`), as Kafka's `LogCleaner`:
//! the closed, flushed part of a partition keeps the latest record of each key. Offsets never
//! change; a compacted log has gaps, which reads step over.
//!
//! A pass has three steps, so the partition's lock is held only to plan and to install:
//! 1. [`Cleaner::plan`] under `&Log` picks the range and snapshots its segments (their files are
//!    `Arc<File>`, readable even if retention deletes a segment meanwhile);
//! 2. [`CleanPlan::execute`], without the log, builds the key map over the dirty range and
//!    writes a fsynced `<base>.log.cleaned` for each segment that changes (one output per input,
//!    same base offset);
//! 3. [`Log::install_cleaned`] under `&mut Log` swaps them in oldest first, skipping segments
//!    that retention removed meanwhile, then moves the cleaner checkpoint.
//!
//! [`Log::compact`] does all three.
//!
//! **Range.** The *first dirty offset* is the cleaner checkpoint (`cleaner-offset-checkpoint`:
//! where the last finished pass stopped), at least the log start offset. The *first uncleanable
//! offset* is the base of the first segment that is the active one, or is not wholly fsynced
//! (below the recovery point), or holds offsets at or past the last stable offset (an ongoing
//! transaction is never cleaned, as Kafka bounds the range by the first unstable offset), or is
//! dirty and has a max timestamp newer than `now - min.compaction.lag.ms`. A pass runs when the dirty bytes (closed segments holding
//! offsets at or past the first dirty offset, below the uncleanable one) are at least
//! `min.cleanable.dirty.ratio` of the bytes of all segments below the uncleanable offset, or when
//! a dirty segment's max timestamp is older than `max.compaction.lag.ms` (Kafka looks at the
//! first dirty record instead; a segment's max timestamp is what we keep in memory).
//!
//! Only fsynced data is cleaned (Kafka bounds the range by the active segment only): if a record
//! that superseded an older one could still be lost by a crash, removing the older one would lose
//! the key's latest durable value.
//!
//! **Records.** The key map holds, for each key in the dirty range, the offset of its latest
//! record. Every segment from the log's first to the end of the mapped range is then filtered: a
//! record goes when the map holds a newer offset for its key, and a tombstone (null value) that is
//! its key's latest goes once `delete.retention.ms` has passed since its batch's max timestamp.
//! Kafka measured that from the last-modified time of the segment the tombstone was cleaned in
//! (and since KIP-534 stamps a delete horizon into the batch); we keep batch headers as they
//! are and use the time the batch carries, so the rule is the same on every replica and after
//! any number of rewrites. A producer's CreateTime far in the past makes its tombstones go at
//! the first pass. A batch without a timestamp (-1) keeps its tombstones.
//!
//! **Batches** keep their header (base offset, `last_offset_delta`, timestamps, producer fields,
//! attributes), as Kafka does; a batch that loses records gets the retained records' bytes
//! unchanged, a new record count, the same codec (recompressed) and a new CRC-32C. A batch left
//! empty goes, unless [`CleanerHooks::retain_empty_batch`] keeps it as a header. What happens to
//! a whole batch is [`CleanerHooks::batch_action`]'s decision (by default control batches are
//! kept whole and other batches compacted), overridden for aborted transactions below.
//!
//! **Transactions.** When a pass is planned it collects the aborted transactions that start below
//! the first uncleanable offset (`Log::aborted_transactions`, from the segments' `.txnindex`).
//! A transactional data batch of producer P whose base offset lies in `[first_offset,
//! last_offset]` of one of P's aborted transactions is discarded whole: its keys are not mapped,
//! so an aborted value never shadows a committed one. (The last batch of a producer the log still
//! tracks stays as an empty batch, as Kafka's `RETAIN_EMPTY`, to keep its sequence.) Transaction
//! markers are kept forever: Kafka removes a marker once its transaction's data is gone and
//! `delete.retention.ms` has passed, which needs the delete horizon that this cleaner does not
//! stamp into batches; a marker is one small batch per transaction per partition. Because every
//! marker stays, a cleaned segment keeps its `.txnindex` as it is.
//!
//! **Swap, crash-safe.** For each segment, oldest first: the fsynced `.cleaned` file is renamed
//! `<base>.log.swap` (the directory fsynced: from here opening the log completes the swap), the
//! old segment's files are deleted (its `.txnindex` stays: the cleaned segment has the same
//! markers), the swap file renamed to `.log` (fsynced directory), and the segment reopened with
//! rebuilt indexes. Opening the log deletes `.cleaned` files and completes
//! `.swap` files, so a crash at any step leaves either segment, both valid. Swapping oldest first
//! matters: a tombstone is removed only together with the older values of its key, which lie in
//! earlier segments, so any prefix of a pass is a valid log. A segment left with no batches is
//! deleted instead, except the log's first segment, which stays (empty) so that the log start
//! offset does not move when the log is reopened.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::Log;
use crate::segment::{self, sync_dir, Segment, SegmentSnapshot};
use crate::segment_file::{DataFile, SegmentFile};
use sluice_records::{
    self as batch, attributes, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES,
};
use sluice_records::{self as records, RecordView};

const CLEANED_SUFFIX: &str = "log.cleaned";
const SWAP_SUFFIX: &str = "log.swap";
/// Bytes read from a segment file at a time (more when one batch is larger).
const READ_CHUNK_BYTES: usize = 1 << 20;
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// What the key map spends per entry besides the key bytes: the `Vec` header, the offset and
/// the hash table's slot, rounded up.
const KEY_MAP_ENTRY_OVERHEAD_BYTES: usize = 48;

/// Limits of one cleaner pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Most distinct keys the key map holds (Kafka's `log.cleaner.dedupe.buffer.size`, counted
    /// in entries). A dirty range with more keys is cleaned up to the batch that would overflow
    /// the map; the next pass goes on from there.
    pub key_map_entries_max: usize,
    /// Most bytes the key map holds: key bytes plus 48 per entry. The map stores whole keys (no
    /// hashes, so no collisions to reason about); a pass maps its first batch even when that
    /// alone overflows a limit, so that every pass advances. The map's memory is therefore at
    /// most this plus the keys of one batch.
    pub key_map_bytes_max: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            key_map_entries_max: 1 << 20,
            key_map_bytes_max: 128 << 20,
        }
    }
}

/// What the cleaner does with a whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAction {
    /// Map its keys and drop its superseded records and expired tombstones.
    Compact,
    /// Keep it byte for byte; its keys are not mapped (control batches).
    Retain,
    /// Drop it whole; its keys are not mapped (the cleaner decides this itself for aborted
    /// transactional data).
    Discard,
}

/// The cleaner's decisions about whole batches. The defaults keep control batches whole and drop
/// other batches left empty; whatever the hooks say, a pass discards the batches of aborted
/// transactions (see the module docs).
pub trait CleanerHooks: Send + Sync {
    /// How a batch is treated, both when mapping keys and when filtering.
    fn batch_action(&self, header: &BatchHeader) -> BatchAction {
        if header.is_control() {
            BatchAction::Retain
        } else {
            BatchAction::Compact
        }
    }

    /// Whether a batch that lost all its records stays as an empty batch (its header, with the
    /// same offsets and producer fields): Kafka keeps one for the last batch of a producer that
    /// is still active, to preserve its sequence numbers.
    fn retain_empty_batch(&self, header: &BatchHeader) -> bool {
        header.is_control()
    }
}

/// The hooks of a log without transactions.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultCleanerHooks;

impl CleanerHooks for DefaultCleanerHooks {}

/// Plans and runs compaction passes over logs.
#[derive(Clone)]
pub struct Cleaner {
    config: CleanerConfig,
    hooks: Arc<dyn CleanerHooks>,
}

impl Default for Cleaner {
    fn default() -> Self {
        Cleaner::new(CleanerConfig::default())
    }
}

impl std::fmt::Debug for Cleaner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleaner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Marks a log as being cleaned for as long as a plan or its output lives.
#[derive(Debug)]
struct CleaningGuard(Arc<AtomicBool>);

impl CleaningGuard {
    fn acquire(flag: &Arc<AtomicBool>) -> Option<Self> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| CleaningGuard(Arc::clone(flag)))
    }
}

impl Drop for CleaningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A file the cleaner wrote and has not installed: removed when dropped.
#[derive(Debug)]
struct PendingFile(Option<PathBuf>);

impl PendingFile {
    fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }
    /// The file was renamed: nothing to remove any more.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // Best effort: opening the log deletes leftover `.cleaned` files anyway.
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Cleaner {
    pub fn new(config: CleanerConfig) -> Self {
        Cleaner::with_hooks(config, Arc::new(DefaultCleanerHooks))
    }

    pub fn with_hooks(config: CleanerConfig, hooks: Arc<dyn CleanerHooks>) -> Self {
        Cleaner { config, hooks }
    }

    /// Decides whether `log` needs a pass now and, if so, snapshots what the pass reads. `None`
    /// when the policy is not `compact`, the log is offline, another pass on it is running, or
    /// nothing is cleanable enough yet (see the module docs).
    pub fn plan(&self, log: &Log, now_ms: i64) -> Option<CleanPlan> {
        let cfg = log.config();
        if log.is_offline().is_some() || !cfg.cleanup_policy.compact {
            return None;
        }
        let closed = log.closed_segments();
        let log_start_offset = log.log_start_offset();
        let stored = log.first_dirty_offset();
        // A checkpoint outside the log (the log was truncated or deleted past it): start over.
        let first_dirty_offset = if stored < log_start_offset || stored > log.log_end_offset() {
            log_start_offset
        } else {
            stored
        };
        let mut first_uncleanable_offset = log.active_base_offset();
        let last_stable_offset = log.last_stable_offset();
        for s in &closed {
            let unstable = s.next_offset > last_stable_offset;
            let unflushed = s.next_offset > log.recovery_point();
            let too_new = s.next_offset > first_dirty_offset
                && cfg.min_compaction_lag_ms > 0
                && s.max_timestamp >= 0
                && now_ms.saturating_sub(s.max_timestamp) < cfg.min_compaction_lag_ms;
            if unstable || unflushed || too_new {
                first_uncleanable_offset = s.base_offset;
                break;
            }
        }
        let segments: Vec<SegmentSnapshot> = closed
            .into_iter()
            .filter(|s| s.base_offset < first_uncleanable_offset)
            .collect();
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut overdue = false;
        for s in &segments {
            if s.next_offset > first_dirty_offset {
                dirty_bytes += s.size;
                overdue |= s.max_timestamp >= 0
                    && now_ms.saturating_sub(s.max_timestamp) > cfg.max_compaction_lag_ms;
            } else {
                clean_bytes += s.size;
            }
        }
        if dirty_bytes == 0 {
            return None;
        }
        let dirty_ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes) as f64;
        if dirty_ratio < cfg.min_cleanable_dirty_ratio && !overdue {
            return None;
        }
        let guard = CleaningGuard::acquire(log.cleaning_flag())?;
        let mut aborted: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for t in log.aborted_transactions(log_start_offset, first_uncleanable_offset) {
            aborted
                .entry(t.producer_id)
                .or_default()
                .push((t.first_offset, t.last_offset));
        }
        Some(CleanPlan {
            dir: log.dir().to_path_buf(),
            now_ms,
            delete_retention_ms: cfg.delete_retention_ms,
            first_dirty_offset,
            first_uncleanable_offset,
            dirty_ratio,
            segments,
            config: self.config.clone(),
            hooks: Arc::clone(&self.hooks),
            producer_last_offsets: log.producer_state().last_batch_offsets(),
            aborted,
            guard,
        })
    }

    /// Plans, executes and installs one pass, holding `&mut Log` throughout (tests and tools;
    /// the broker runs [`CleanPlan::execute`] without its partition lock).
    pub fn clean(&self, log: &mut Log, now_ms: i64) -> Result<Option<CleanReport>> {
        let Some(plan) = self.plan(log, now_ms) else {
            return Ok(None);
        };
        let cleaned = plan.execute()?;
        log.install_cleaned(cleaned).map(Some)
    }
}

/// A pass decided under `&Log`: which segments it reads and where it stops. One pass per log
/// at a time ([`Cleaner::plan`] refuses a second while this one or its output lives); the log
/// must not be reopened while a pass is out, since opening deletes `.cleaned` files.
pub struct CleanPlan {
    dir: PathBuf,
    now_ms: i64,
    delete_retention_ms: i64,
    first_dirty_offset: i64,
    first_uncleanable_offset: i64,
    dirty_ratio: f64,
    /// The closed segments below the first uncleanable offset, oldest first.
    segments: Vec<SegmentSnapshot>,
    config: CleanerConfig,
    hooks: Arc<dyn CleanerHooks>,
    /// Producer id -> last offset of its last batch, when planned: that batch stays (as an
    /// empty batch if need be) so that a reopened log still knows the producer's sequence.
    producer_last_offsets: HashMap<i64, i64>,
    /// Producer id -> `(first_offset, last_offset)` of its aborted transactions starting below
    /// the first uncleanable offset, by first offset (a producer's transactions never overlap).
    aborted: HashMap<i64, Vec<(i64, i64)>>,
    guard: CleaningGuard,
}

impl std::fmt::Debug for CleanPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanPlan")
            .field("dir", &self.dir)
            .field("first_dirty_offset", &self.first_dirty_offset)
            .field("first_uncleanable_offset", &self.first_uncleanable_offset)
            .field("dirty_ratio", &self.dirty_ratio)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

/// The latest offset of each key in the mapped range `[first dirty, end)`.
#[derive(Debug, Default)]
struct KeyMap {
    offsets: HashMap<Vec<u8>, i64>,
    bytes: usize,
    /// Offsets below this were mapped (or were clean already).
    end: i64,
}

/// What filtering did to one batch.
enum Filtered {
    /// Nothing removed: the batch is copied as it is.
    Whole,
    /// The batch with `removed` records fewer.
    Rebuilt { bytes: Vec<u8>, removed: u64 },
    /// The batch goes, with its `removed` records.
    Dropped { removed: u64 },
}

impl CleanPlan {
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty_offset
    }
    pub fn first_uncleanable_offset(&self) -> i64 {
        self.first_uncleanable_offset
    }
    /// Dirty bytes over all bytes below the first uncleanable offset, when planned.
    pub fn dirty_ratio(&self) -> f64 {
        self.dirty_ratio
    }

    /// What the pass does with a whole batch: the hooks' decision, except that the data batches
    /// of aborted transactions are discarded.
    fn batch_action(&self, h: &BatchHeader) -> BatchAction {
        let action = self.hooks.batch_action(h);
        if action == BatchAction::Compact && self.is_aborted(h) {
            BatchAction::Discard
        } else {
            action
        }
    }

    /// Whether `h` is a data batch of one of its producer's aborted transactions.
    fn is_aborted(&self, h: &BatchHeader) -> bool {
        if !h.is_transactional() || h.is_control() {
            return false;
        }
        let Some(txns) = self.aborted.get(&h.producer_id) else {
            return false;
        };
        let i = txns.partition_point(|(first, _)| *first <= h.base_offset);
        i > 0 && txns[i - 1].1 >= h.base_offset
    }

    /// Builds the key map and writes the cleaned segments, without the log. On error nothing
    /// it wrote is left behind.
    pub fn execute(self) -> Result<CleanedSegments> {
        let map = self.build_key_map()?;
        let mut segments = Vec::new();
        for seg in &self.segments {
            if seg.base_offset >= map.end {
                break;
            }
            segments.push(self.clean_segment(seg, &map)?);
        }
        Ok(CleanedSegments {
            now_ms: self.now_ms,
            first_dirty_offset: map.end,
            dirty_ratio: self.dirty_ratio,
            segments,
            guard: self.guard,
        })
    }

    fn build_key_map(&self) -> Result<KeyMap> {
        let mut map = KeyMap {
            end: self.first_uncleanable_offset,
            ..KeyMap::default()
        };
        'segments: for seg in &self.segments {
            if seg.next_offset <= self.first_dirty_offset {
                continue;
            }
            let mut reader = BatchReader::new(seg);
            while let Some((position, bytes)) = reader.next_batch()? {
                let h = BatchHeader::parse(bytes)?;
                if h.last_offset() < self.first_dirty_offset
                    || self.batch_action(&h) != BatchAction::Compact
                {
                    continue;
                }
                let Some((body, views)) = decode_records(bytes, &h, &seg.log_path, position) else {
                    continue;
                };
                let keys = views.iter().filter(|r| r.key.is_some()).count();
                let key_bytes: usize = views
                    .iter()
                    .filter_map(|r| r.key.as_ref())
                    .map(|k| k.len() + KEY_MAP_ENTRY_OVERHEAD_BYTES)
                    .sum();
                let overflows = map.offsets.len() + keys > self.config.key_map_entries_max
                    || map.bytes + key_bytes > self.config.key_map_bytes_max;
                if overflows && !map.offsets.is_empty() {
                    map.end = h.base_offset.max(self.first_dirty_offset);
                    break 'segments;
                }
                for r in &views {
                    let Some(k) = &r.key else { continue };
                    let offset = h.base_offset + r.offset_delta;
                    let key = &body[k.clone()];
                    match map.offsets.get_mut(key) {
                        Some(latest) => *latest = (*latest).max(offset),
                        None => {
                            map.bytes += key.len() + KEY_MAP_ENTRY_OVERHEAD_BYTES;
                            map.offsets.insert(key.to_vec(), offset);
                        }
                    }
                }
            }
        }
        Ok(map)
    }

    /// Filters one segment. Nothing is written while nothing changes; at the first change the
    /// unchanged prefix is copied to the `.cleaned` file and writing goes on from there.
    fn clean_segment(&self, seg: &SegmentSnapshot, map: &KeyMap) -> Result<CleanedSegment> {
        let mut out: Option<CleanedOutput> = None;
        let mut records_removed = 0u64;
        let mut batches_removed = 0u64;
        let mut kept_batches = 0u64;
        let mut reader = BatchReader::new(seg);
        while let Some((position, bytes)) = reader.next_batch()? {
            let h = BatchHeader::parse(bytes)?;
            let filtered = self.filter_batch(bytes, &h, map, seg, position)?;
            if matches!(filtered, Filtered::Whole) {
                kept_batches += 1;
                if let Some(o) = out.as_mut() {
                    o.write(bytes)?;
                }
                continue;
            }
            if out.is_none() {
                out = Some(CleanedOutput::start(&self.dir, seg, position)?);
            }
            let Some(o) = out.as_mut() else {
                unreachable!("output started above")
            };
            match filtered {
                Filtered::Whole => {}
                Filtered::Rebuilt { bytes, removed } => {
                    kept_batches += 1;
                    records_removed += removed;
                    o.write(&bytes)?;
                }
                Filtered::Dropped { removed } => {
                    batches_removed += 1;
                    records_removed += removed;
                }
            }
        }
        let mut cleaned = CleanedSegment {
            base_offset: seg.base_offset,
            source: Arc::clone(&seg.file),
            cleaned: PendingFile(None),
            batches: kept_batches,
            bytes_before: seg.size,
            bytes_after: seg.size,
            records_removed,
            batches_removed,
        };
        if let Some(o) = out {
            let (pending, written) = o.finish()?;
            cleaned.cleaned = pending;
            cleaned.bytes_after = written;
        }
        Ok(cleaned)
    }

    fn filter_batch(
        &self,
        bytes: &[u8],
        h: &BatchHeader,
        map: &KeyMap,
        seg: &SegmentSnapshot,
        position: u64,
    ) -> Result<Filtered> {
        let last_of_producer = h.producer_id >= 0
            && self.producer_last_offsets.get(&h.producer_id) == Some(&h.last_offset());
        match self.batch_action(h) {
            BatchAction::Retain => return Ok(Filtered::Whole),
            BatchAction::Discard if last_of_producer => {
                // Kafka's RETAIN_EMPTY: the header keeps the producer's last sequence.
                if h.records_count == 0 {
                    return Ok(Filtered::Whole);
                }
                return Ok(Filtered::Rebuilt {
                    bytes: rebuild_batch(bytes, h, &[], &[])?,
                    removed: h.records_count.max(0) as u64,
                });
            }
            BatchAction::Discard => {
                return Ok(Filtered::Dropped {
                    removed: h.records_count.max(0) as u64,
                })
            }
            BatchAction::Compact => {}
        }
        let Some((body, views)) = decode_records(bytes, h, &seg.log_path, position) else {
            return Ok(Filtered::Whole);
        };
        let tombstones_expire = h.max_timestamp >= 0
            && self.now_ms.saturating_sub(h.max_timestamp) > self.delete_retention_ms;
        let kept: Vec<Range<usize>> = views
            .iter()
            .filter(|r| {
                keep_record(
                    r,
                    &body,
                    h.base_offset + r.offset_delta,
                    map,
                    tombstones_expire,
                )
            })
            .map(|r| r.raw.clone())
            .collect();
        if kept.len() == views.len() {
            return Ok(Filtered::Whole);
        }
        let removed = (views.len() - kept.len()) as u64;
        if kept.is_empty() && !self.hooks.retain_empty_batch(h) && !last_of_producer {
            return Ok(Filtered::Dropped { removed });
        }
        let bytes = rebuild_batch(bytes, h, &body, &kept)?;
        Ok(Filtered::Rebuilt { bytes, removed })
    }
}

/// Whether a record of a compacted batch stays.
fn keep_record(
    r: &RecordView,
    body: &[u8],
    offset: i64,
    map: &KeyMap,
    tombstones_expire: bool,
) -> bool {
    let Some(key) = &r.key else {
        // Kafka's cleaner drops keyless records (and its produce path rejects them for compacted
        // topics, which is the broker's job here). The log store keeps them: it never removes a
        // record that no newer record replaced.
        return true;
    };
    if map
        .offsets
        .get(&body[key.clone()])
        .is_some_and(|latest| *latest > offset)
    {
        return false;
    }
    // The latest record of its key. A tombstone goes once expired, but only below the mapped
    // range's end: everything older of its key below that end goes in this pass (or went in an
    // earlier one), while past it an older value may still be waiting for its pass.
    !(r.value.is_none() && offset < map.end && tombstones_expire)
}

/// Decompresses and parses a batch's records for the cleaner, checking that the record count and
/// offset deltas agree with the header. A batch that does not (the append path checks headers
/// only) is neither mapped nor filtered: it is kept as it is, so the cleaner never acts on
/// records it cannot place.
fn decode_records<'b>(
    bytes: &'b [u8],
    h: &BatchHeader,
    path: &Path,
    position: u64,
) -> Option<(Cow<'b, [u8]>, Vec<RecordView>)> {
    let warn = |reason: String| {
        tracing::warn!(
            path = %path.display(),
            position,
            %reason,
            "cleaner keeps a batch whose records it cannot read"
        );
    };
    let body = match records::records_body(bytes, records::BATCH_DECOMPRESSED_BYTES_MAX) {
        Ok(b) => b,
        Err(e) => {
            warn(e.to_string());
            return None;
        }
    };
    let views = match records::parse_records(&body, h.records_count) {
        Ok(v) => v,
        Err(e) => {
            warn(e.to_string());
            return None;
        }
    };
    if views.last().map_or(0, |r| r.raw.end) != body.len() {
        warn("bytes after the last record".into());
        return None;
    }
    let mut prev = -1i64;
    for r in &views {
        if r.offset_delta <= prev || r.offset_delta > h.last_offset_delta as i64 {
            warn(format!("offset delta {} out of order", r.offset_delta));
            return None;
        }
        prev = r.offset_delta;
    }
    Some((body, views))
}

/// The batch with only the `kept` records (ranges into `body`, the decompressed records), in
/// the codec it came with; with none kept, an empty uncompressed batch.
fn rebuild_batch(
    original: &[u8],
    h: &BatchHeader,
    body: &[u8],
    kept: &[Range<usize>],
) -> Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(kept.iter().map(|r| r.len()).sum());
    for r in kept {
        raw.extend_from_slice(&body[r.clone()]);
    }
    let (attrs, payload) = if kept.is_empty() {
        (h.attributes & !attributes::COMPRESSION_MASK, Vec::new())
    } else if h.compression() == 0 {
        (h.attributes, raw.clone())
    } else {
        (h.attributes, records::compress_body(h.compression(), &raw)?)
    };
    let count = kept.len() as i32;
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + payload.len());
    out.extend_from_slice(&original[..BATCH_HEADER_BYTES]);
    batch::patch_records(&mut out, attrs, count, &payload)?;
    out.extend_from_slice(&payload);
    // Check the batch as a reader will before it is written (recovery checks it again when the
    // segment is reopened): valid, same offsets, and its records read back as the kept ones.
    let check = batch::validate_batch(&out)?;
    let same_offsets =
        check.base_offset == h.base_offset && check.last_offset_delta == h.last_offset_delta;
    let body_back = records::records_body(&out, records::BATCH_DECOMPRESSED_BYTES_MAX)?;
    if !same_offsets || check.records_count != count || *body_back != *raw {
        return Err(Error::Compression {
            codec: h.compression(),
            reason: "a rewritten batch does not read back as written".into(),
        });
    }
    Ok(out)
}

/// Reads a closed segment's batches with positional reads (the file is shared with fetches),
/// checking each (length, CRC, offsets in order) as recovery would.
struct BatchReader<'a> {
    seg: &'a SegmentSnapshot,
    position: u64,
    next_offset: i64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_at: u64,
}

impl<'a> BatchReader<'a> {
    fn new(seg: &'a SegmentSnapshot) -> Self {
        BatchReader {
            seg,
            position: 0,
            next_offset: seg.base_offset,
            buf: Vec::new(),
            buf_at: 0,
        }
    }

    fn corrupted(&self, reason: impl Into<String>) -> Error {
        Error::Corrupted {
            path: self.seg.log_path.clone(),
            position: self.position,
            reason: reason.into(),
        }
    }

    /// Makes `buf` hold `[position, position + len)`; the caller checked it is in the segment.
    fn fill(&mut self, position: u64, len: usize) -> Result<()> {
        let end = self.buf_at + self.buf.len() as u64;
        if position >= self.buf_at && position + len as u64 <= end {
            return Ok(());
        }
        let want = len
            .max(READ_CHUNK_BYTES)
            .min((self.seg.size - position) as usize);
        self.buf.resize(want, 0);
        self.buf_at = position;
        self.seg
            .file
            .read_exact_at(&mut self.buf, position)
            .map_err(|e| Error::io(&self.seg.log_path, e))
    }

    /// The next batch and its position, `None` at the end of the segment.
    fn next_batch(&mut self) -> Result<Option<(u64, &[u8])>> {
        let position = self.position;
        if position >= self.seg.size {
            return Ok(None);
        }
        let remaining = self.seg.size - position;
        if remaining < BATCH_HEADER_BYTES as u64 {
            return Err(self.corrupted("a partial batch header at the end of a closed segment"));
        }
        self.fill(position, LOG_OVERHEAD_BYTES)?;
        let at = (position - self.buf_at) as usize;
        let total = batch::declared_batch_bytes(&self.buf[at..], remaining as usize)
            .map_err(|e| self.corrupted(e.to_string()))?;
        self.fill(position, total)?;
        let at = (position - self.buf_at) as usize;
        let h = batch::validate_batch(&self.buf[at..at + total])
            .map_err(|e| self.corrupted(e.to_string()))?;
        if h.base_offset < self.next_offset || h.next_offset() > self.seg.next_offset {
            return Err(self.corrupted("batch offsets out of order"));
        }
        self.next_offset = h.next_offset();
        self.position = position + total as u64;
        Ok(Some((position, &self.buf[at..at + total])))
    }
}

/// A `.cleaned` file being written.
struct CleanedOutput {
    file: BufWriter<File>,
    pending: PendingFile,
    written: u64,
}

impl CleanedOutput {
    /// Creates `<base>.log.cleaned` holding the first `prefix_bytes` of the segment (the batches
    /// before the first change).
    fn start(dir: &Path, seg: &SegmentSnapshot, prefix_bytes: u64) -> Result<Self> {
        let path = dir.join(segment::file_name(seg.base_offset, CLEANED_SUFFIX));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut out = CleanedOutput {
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            pending: PendingFile(Some(path)),
            written: 0,
        };
        let mut chunk = vec![0u8; READ_CHUNK_BYTES.min(prefix_bytes as usize)];
        let mut at = 0u64;
        while at < prefix_bytes {
            let n = chunk.len().min((prefix_bytes - at) as usize);
            seg.file
                .read_exact_at(&mut chunk[..n], at)
                .map_err(|e| Error::io(&seg.log_path, e))?;
            out.write(&chunk[..n])?;
            at += n as u64;
        }
        Ok(out)
    }

    fn path(&self) -> &Path {
        self.pending.path().unwrap_or(Path::new(""))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(self.pending.path().unwrap_or(Path::new("")), e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs the file; returns it (still pending) and its length.
    fn finish(self) -> Result<(PendingFile, u64)> {
        let path = self.path().to_path_buf();
        let CleanedOutput {
            file,
            pending,
            written,
        } = self;
        let file = file
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len != written {
            return Err(Error::Corrupted {
                path,
                position: len,
                reason: format!("wrote {written} bytes, the file has {len}"),
            });
        }
        Ok((pending, written))
    }
}

/// One segment's outcome of a pass.
#[derive(Debug)]
struct CleanedSegment {
    base_offset: i64,
    /// The segment file the pass read: the swap happens only if the log still has this file.
    source: Arc<SegmentFile>,
    /// The fsynced `.cleaned` file; none when nothing changed.
    cleaned: PendingFile,
    /// Batches in the cleaned file.
    batches: u64,
    bytes_before: u64,
    bytes_after: u64,
    records_removed: u64,
    batches_removed: u64,
}

/// The output of [`CleanPlan::execute`], for [`Log::install_cleaned`]. Dropping it removes the
/// files it holds and ends the pass.
#[derive(Debug)]
pub struct CleanedSegments {
    now_ms: i64,
    /// The new cleaner checkpoint once everything is installed.
    first_dirty_offset: i64,
    dirty_ratio: f64,
    segments: Vec<CleanedSegment>,
    /// Last, so that the files above are gone before another pass can start.
    guard: CleaningGuard,
}

impl CleanedSegments {
    /// Where the next pass starts once this one is installed.
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty_offset
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanReport {
    /// Segments replaced by a cleaned copy.
    pub segments_rewritten: usize,
    /// Segments left with no batches and deleted.
    pub segments_deleted: usize,
    /// Segments read that had nothing to remove.
    pub segments_unchanged: usize,
    /// Segments that retention deleted while the pass ran.
    pub segments_skipped: usize,
    /// Bytes of the segments installed or unchanged, before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    pub batches_removed: u64,
    /// The dirty ratio that started the pass.
    pub dirty_ratio: f64,
    /// The cleaner checkpoint after the pass.
    pub first_dirty_offset: i64,
    /// False when the log changed under the pass in a way it could not follow; what was
    /// installed stays, and the checkpoint does not move.
    pub complete: bool,
}

impl Log {
    /// Compacts the log now if it is due, holding `&mut self` for the whole pass (see
    /// [`Cleaner::plan`] for the version that reads and writes without the lock). `None` when
    /// there was nothing to do.
    pub fn compact(&mut self, now_ms: i64) -> Result<Option<CleanReport>> {
        Cleaner::default().clean(self, now_ms)
    }

    /// Swaps in the segments a pass cleaned, oldest first, and moves the cleaner checkpoint.
    /// Segments that retention deleted meanwhile are skipped. A failure after a swap started
    /// takes the log offline (opening it again completes the swap).
    pub fn install_cleaned(&mut self, cleaned: CleanedSegments) -> Result<CleanReport> {
        self.check_online()?;
        let CleanedSegments {
            now_ms,
            first_dirty_offset,
            dirty_ratio,
            segments,
            guard,
        } = cleaned;
        let mut report = CleanReport {
            dirty_ratio,
            complete: true,
            ..CleanReport::default()
        };
        for mut seg in segments {
            let base = seg.base_offset;
            let current = self.closed_segment(base);
            if !current.is_some_and(|s| Arc::ptr_eq(s.file(), &seg.source)) {
                if current.is_none() && base < self.first_segment_base() {
                    report.segments_skipped += 1;
                    continue;
                }
                tracing::warn!(dir = %self.dir().display(), base, "segment changed under the cleaner; stopping the pass");
                report.complete = false;
                break;
            }
            report.bytes_before += seg.bytes_before;
            report.records_removed += seg.records_removed;
            report.batches_removed += seg.batches_removed;
            if seg.cleaned.path().is_none() {
                report.bytes_after += seg.bytes_before;
                report.segments_unchanged += 1;
                continue;
            }
            report.bytes_after += seg.bytes_after;
            if seg.batches == 0 && base != self.first_segment_base() {
                self.delete_cleaned_segment(base)?;
                report.segments_deleted += 1;
            } else {
                self.swap_in(&mut seg, now_ms)?;
                report.segments_rewritten += 1;
            }
        }
        if report.complete {
            self.set_first_dirty_offset(first_dirty_offset)?;
        }
        report.first_dirty_offset = self.first_dirty_offset();
        drop(guard);
        Ok(report)
    }

    /// Deletes a closed segment that cleaning emptied (reads step over the gap).
    fn delete_cleaned_segment(&mut self, base: i64) -> Result<()> {
        let Some(old) = self.replace_segment(base, None) else {
            return Ok(());
        };
        let done = old.delete_files().and_then(|()| sync_dir(self.dir()));
        if let Err(e) = &done {
            self.set_offline(format!("deleting emptied segment {base} failed: {e}"));
        }
        done
    }

    /// Replaces the segment at `seg.base_offset` with its cleaned file (see the module docs).
    fn swap_in(&mut self, seg: &mut CleanedSegment, now_ms: i64) -> Result<()> {
        let base = seg.base_offset;
        let dir = self.dir().to_path_buf();
        let Some(cleaned_path) = seg.cleaned.path().map(Path::to_path_buf) else {
            return Ok(());
        };
        let swap_path = dir.join(segment::file_name(base, SWAP_SUFFIX));
        std::fs::rename(&cleaned_path, &swap_path).map_err(|e| Error::io(&cleaned_path, e))?;
        seg.cleaned.disarm();
        // Committed: from here a reopen completes the swap, and a failure must stop the log.
        let done = self.complete_swap(&dir, &swap_path, seg, now_ms);
        if let Err(e) = &done {
            self.set_offline(format!("cleaner swap of segment {base} failed: {e}"));
        }
        done
    }

    fn complete_swap(
        &mut self,
        dir: &Path,
        swap_path: &Path,
        seg: &CleanedSegment,
        now_ms: i64,
    ) -> Result<()> {
        let base = seg.base_offset;
        sync_dir(dir)?;
        if let Some(old) = self.replace_segment(base, None) {
            old.delete_files_keeping_txn_index()?;
        }
        let log_path = dir.join(segment::file_name(base, segment::LOG_SUFFIX));
        std::fs::rename(swap_path, &log_path).map_err(|e| Error::io(swap_path, e))?;
        sync_dir(dir)?;
        let mut new = Segment::open(dir, base, self.sizing(), false, now_ms, self.storage())?;
        let r = new.recover(base)?;
        if r.truncated_bytes > 0 || r.batches != seg.batches || new.size() != seg.bytes_after {
            return Err(Error::Corrupted {
                path: log_path,
                position: r.valid_bytes,
                reason: format!(
                    "cleaned segment reads back as {} batches in {} bytes, {} in {} written",
                    r.batches,
                    new.size(),
                    seg.batches,
                    seg.bytes_after
                ),
            });
        }
        new.seal()?;
        self.replace_segment(base, Some(new));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build_compressed_batch, build_keyed_batch, put_varint, TestRecord};

    fn rec(key: Option<&str>, value: Option<&str>) -> TestRecord {
        TestRecord {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            timestamp_delta: 3,
        }
    }

    fn decoded(batch: &[u8]) -> Result<(BatchHeader, Vec<u8>, Vec<RecordView>)> {
        let h = BatchHeader::parse(batch)?;
        let (body, views) = decode_records(batch, &h, Path::new("test"), 0)
            .ok_or(Error::InvalidBatch(crate::BatchError::Empty))?;
        Ok((h, body.into_owned(), views))
    }

    #[test]
    fn rebuilt_batches_keep_their_header_and_codec() -> Result<()> {
        let recs = [
            rec(Some("a"), Some("1")),
            rec(Some("b"), Some("2")),
            rec(Some("a"), None),
            rec(None, Some("3")),
        ];
        for codec in 0..=4 {
            let original = build_compressed_batch(&recs, 500, Some((9, 2, 40)), 0, codec)?;
            let (h, body, views) = decoded(&original)?;
            let kept: Vec<Range<usize>> = [1, 3].iter().map(|i| views[*i].raw.clone()).collect();
            let rebuilt = rebuild_batch(&original, &h, &body, &kept)?;
            let (r, body2, views2) = decoded(&rebuilt)?;
            assert_eq!(r.records_count, 2);
            assert_eq!(
                (
                    r.base_offset,
                    r.last_offset_delta,
                    r.base_timestamp,
                    r.max_timestamp
                ),
                (h.base_offset, 3, 500, h.max_timestamp)
            );
            assert_eq!(
                (
                    r.producer_id,
                    r.producer_epoch,
                    r.base_sequence,
                    r.attributes
                ),
                (9, 2, 40, h.attributes)
            );
            assert_eq!(r.compression(), codec);
            // The retained records' bytes are unchanged, offset deltas included.
            assert_eq!(&body2[views2[0].raw.clone()], &body[views[1].raw.clone()]);
            assert_eq!(views2[1].offset_delta, 3);
            // None kept: an empty uncompressed batch with the same offsets.
            let empty = rebuild_batch(&original, &h, &body, &[])?;
            let e = batch::validate_batch(&empty)?;
            assert_eq!(
                (e.records_count, e.last_offset_delta, e.compression()),
                (0, 3, 0)
            );
        }
        Ok(())
    }

    #[test]
    fn records_are_kept_by_offset_key_and_tombstone_age() -> Result<()> {
        let batch = build_keyed_batch(
            &[
                rec(Some("k"), Some("v")),
                rec(Some("k"), None),
                rec(None, None),
            ],
            0,
            None,
            0,
        );
        let (_, body, views) = decoded(&batch)?;
        let mut map = KeyMap {
            end: 10,
            ..KeyMap::default()
        };
        map.offsets.insert(b"k".to_vec(), 1);
        // Superseded: goes; latest tombstone: stays until it expires; keyless: always stays.
        assert!(!keep_record(&views[0], &body, 0, &map, false));
        assert!(keep_record(&views[1], &body, 1, &map, false));
        assert!(!keep_record(&views[1], &body, 1, &map, true));
        assert!(keep_record(&views[2], &body, 2, &map, true));
        // Past the mapped range an expired tombstone stays: an older value may remain.
        map.end = 1;
        assert!(keep_record(&views[1], &body, 1, &map, true));
        Ok(())
    }

    #[test]
    fn batches_whose_records_disagree_with_the_header_are_not_decoded() {
        // Two records that both claim offset delta 0.
        let mut body = Vec::new();
        for _ in 0..2 {
            let mut r = vec![0u8];
            put_varint(&mut r, 0);
            put_varint(&mut r, 0);
            put_varint(&mut r, 1);
            r.push(b'k');
            put_varint(&mut r, 1);
            r.push(b'v');
            put_varint(&mut r, 0);
            put_varint(&mut body, r.len() as i64);
            body.extend_from_slice(&r);
        }
        let mut b = build_keyed_batch(
            &[rec(Some("k"), Some("v")), rec(Some("k"), Some("v"))],
            0,
            None,
            0,
        );
        b.truncate(BATCH_HEADER_BYTES);
        let _ = batch::patch_records(&mut b, 0, 2, &body);
        b.extend_from_slice(&body);
        let h = batch::validate_batch(&b);
        assert!(h.is_ok());
        if let Ok(h) = h {
            assert!(decode_records(&b, &h, Path::new("test"), 0).is_none());
        }
    }

    #[test]
    fn one_pass_at_a_time() {
        let flag = Arc::new(AtomicBool::new(false));
        let guard = CleaningGuard::acquire(&flag);
        assert!(guard.is_some());
        assert!(CleaningGuard::acquire(&flag).is_none());
        drop(guard);
        assert!(CleaningGuard::acquire(&flag).is_some());
    }
}
