//! Per-partition state of idempotent producers, as Kafka's `ProducerStateManager`: for each
//! producer id its epoch and the metadata of its last [`BATCHES_RETAINED`] batches, so that a
//! retried batch is acknowledged with its original offsets instead of being written twice, a
//! gap in the sequence numbers is refused, and an older epoch is fenced.
//!
//! The state is rebuilt on open from a snapshot (`<offset>.snapshot`: the state of every batch
//! below `offset`) plus the batch headers after it; records are never decoded. Snapshots are
//! written atomically when a segment rolls, at checkpoints and at close, and go with the
//! segments below the log start (the newest one at or below the first segment stays, so that
//! producers whose last batches retention deleted are not forgotten).
//!
//! **Transactions.** A producer's transactional data batch (attributes `0x10`, not a control
//! batch) starts a transaction at its base offset when none is ongoing; until the producer's
//! end-transaction marker ([`crate::Log::append_marker`]) its non-transactional batches are
//! refused (`INVALID_TXN_STATE`). [`ProducerEntry`] keeps the first offset of the ongoing
//! transaction and the coordinator epoch of the last marker (an older one is fenced); a marker
//! with a newer producer epoch bumps the entry's epoch and forgets its batches, so the new
//! epoch's first batch must have sequence 0. [`ProducerState`] keeps the ongoing transactions
//! ordered by first offset: the first is the last stable offset (LSO), and completing an abort
//! yields the entry of the segment's aborted-transaction index with the LSO right after it
//! (Kafka's `lastStableOffset(completedTxn)`: the earliest other ongoing transaction, else the
//! marker's offset + 1). A producer with an ongoing transaction never expires.
//!
//! Recovery replays the markers after the snapshot too (their control record says commit or
//! abort), so ongoing transactions and the aborted-transaction entries past the snapshot are
//! rebuilt exactly. Snapshot version 2 stores each producer's coordinator epoch and the first
//! offset of its ongoing transaction; version 1 files (written before transactions) still load,
//! as producers without a transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::segment::sync_dir;
use crate::txn_index::AbortedTxn;
use sluice_records::BatchHeader;
use sluice_records::MarkerType;

/// Batches remembered per producer for duplicate detection (Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`; a producer has at most 5 requests in flight).
pub const BATCHES_RETAINED: usize = 5;

/// How long a producer with no append is remembered (Kafka's `producer.id.expiration.ms`
/// default, one day), measured against the batches' max timestamps as Kafka does.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";
const SNAPSHOT_VERSION: i16 = 2;
/// Snapshots written before transactions: no coordinator epoch, no ongoing transaction.
const SNAPSHOT_VERSION_1: i16 = 1;
/// version i16 + crc u32 + count i32.
const SNAPSHOT_HEADER_BYTES: usize = 10;
/// Version 1: producer id, epoch, last timestamp, batch count.
const ENTRY_HEADER_BYTES_V1: usize = 8 + 2 + 8 + 1;
/// Version 2: producer id, epoch, last timestamp, coordinator epoch, current transaction's first
/// offset, batch count.
const ENTRY_HEADER_BYTES: usize = 8 + 2 + 8 + 4 + 8 + 1;
/// first seq, last seq, first offset, last offset, timestamp.
const BATCH_METADATA_BYTES: usize = 4 + 4 + 8 + 8 + 8;

/// Sequence numbers and offsets of one appended batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp.
    pub timestamp: i64,
}

/// What the log knows of one producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; `batches[..batch_count]` are valid.
    batches: [BatchMetadata; BATCHES_RETAINED],
    batch_count: u8,
    /// Max timestamp of the producer's last batch or marker, for expiration.
    pub last_timestamp: i64,
    /// Coordinator epoch of the producer's last transaction marker, -1 if none.
    coordinator_epoch: i32,
    /// First offset of the producer's ongoing transaction, -1 if none.
    current_txn_first_offset: i64,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        ProducerEntry {
            epoch,
            batches: [BatchMetadata::default(); BATCHES_RETAINED],
            batch_count: 0,
            last_timestamp: -1,
            coordinator_epoch: -1,
            current_txn_first_offset: -1,
        }
    }

    /// First offset of the producer's ongoing transaction.
    pub fn current_txn_first_offset(&self) -> Option<i64> {
        (self.current_txn_first_offset >= 0).then_some(self.current_txn_first_offset)
    }

    /// Coordinator epoch of the producer's last transaction marker, -1 if none.
    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    /// Sequence number of the last record of the producer's last batch, -1 if none.
    pub fn last_sequence(&self) -> i32 {
        self.last_batch().map_or(-1, |b| b.last_seq)
    }

    /// The remembered batches, oldest first.
    pub fn batches(&self) -> &[BatchMetadata] {
        &self.batches[..self.batch_count as usize]
    }

    pub fn last_batch(&self) -> Option<&BatchMetadata> {
        self.batches().last()
    }

    fn push(&mut self, b: BatchMetadata) {
        let n = self.batch_count as usize;
        if n == BATCHES_RETAINED {
            self.batches.copy_within(1.., 0);
            self.batches[BATCHES_RETAINED - 1] = b;
        } else {
            self.batches[n] = b;
            self.batch_count += 1;
        }
        self.last_timestamp = b.timestamp;
    }

    /// Records a batch the log holds (appended, or found by recovery). A batch of an older
    /// epoch changes nothing; a newer epoch forgets the old epoch's batches. A transactional
    /// batch starts a transaction if none is ongoing.
    fn apply(&mut self, h: &BatchHeader) {
        if h.producer_epoch < self.epoch {
            return;
        }
        if h.producer_epoch > self.epoch {
            self.epoch = h.producer_epoch;
            self.batch_count = 0;
        }
        self.push(BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
        });
        if h.is_transactional() && self.current_txn_first_offset < 0 {
            self.current_txn_first_offset = h.base_offset;
        }
    }

    /// Kafka's `ProducerAppendInfo.checkProducerEpoch` + `checkSequence` and the duplicate
    /// check of `UnifiedLog.analyzeAndValidateProducerState`, for a batch a client sends.
    fn check(&self, producer_id: i64, h: &BatchHeader) -> Result<Checked> {
        if h.producer_epoch < self.epoch {
            return Err(Error::InvalidProducerEpoch {
                producer_id,
                epoch: h.producer_epoch,
                current_epoch: self.epoch,
            });
        }
        let last_seq = last_sequence(h);
        if h.producer_epoch > self.epoch {
            // A new epoch restarts the sequence at 0.
            if h.base_sequence != 0 {
                return Err(Error::OutOfOrderSequence {
                    producer_id,
                    epoch: h.producer_epoch,
                    sequence: h.base_sequence,
                    last_sequence: -1,
                });
            }
            return Ok(Checked::Append);
        }
        if let Some(d) = self
            .batches()
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(Checked::Duplicate(*d));
        }
        // An entry without batches in its epoch (a marker bumped the epoch, or created the
        // entry) expects sequence 0, as Kafka's `checkSequence` (in sequence after -1).
        let last_seq = self.last_sequence();
        if !in_sequence(last_seq, h.base_sequence) {
            return Err(Error::OutOfOrderSequence {
                producer_id,
                epoch: h.producer_epoch,
                sequence: h.base_sequence,
                last_sequence: last_seq,
            });
        }
        Ok(Checked::Append)
    }

    /// Kafka's `appendEndTxnMarker` checks: an older producer epoch or coordinator epoch is
    /// fenced.
    fn check_marker(&self, producer_id: i64, epoch: i16, coordinator_epoch: i32) -> Result<()> {
        if epoch < self.epoch {
            return Err(Error::InvalidProducerEpoch {
                producer_id,
                epoch,
                current_epoch: self.epoch,
            });
        }
        if coordinator_epoch < self.coordinator_epoch {
            return Err(Error::TransactionCoordinatorFenced {
                producer_id,
                coordinator_epoch,
                current: self.coordinator_epoch,
            });
        }
        Ok(())
    }
}

/// The sequence number of a batch's last record; sequences wrap from `i32::MAX` to 0.
pub fn last_sequence(h: &BatchHeader) -> i32 {
    increment_sequence(h.base_sequence, h.last_offset_delta)
}

/// Kafka's `DefaultRecordBatch.incrementSequence`.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Kafka's `inSequence`; after no batch (-1) the next sequence is 0.
fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq as i64 == last_seq as i64 + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

/// Whether a batch takes part in producer state: an idempotent producer's data batch.
pub(crate) fn is_tracked(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && h.base_sequence >= 0 && !h.is_control()
}

/// The outcome of checking a client's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    Append,
    /// One of the producer's last batches again: acknowledge it with these offsets.
    Duplicate(BatchMetadata),
}

/// A transaction that a marker completed (Kafka's `CompletedTxn`), with the last stable offset
/// right after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    /// The marker's offset.
    pub(crate) last_offset: i64,
    pub(crate) last_stable_offset: i64,
    pub(crate) aborted: bool,
}

impl CompletedTxn {
    /// The aborted-transaction index entry, for an abort.
    pub(crate) fn aborted_txn(&self) -> Option<AbortedTxn> {
        self.aborted.then_some(AbortedTxn {
            producer_id: self.producer_id,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            last_stable_offset: self.last_stable_offset,
        })
    }
}

/// Every tracked producer of one partition.
#[derive(Debug, Default)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Ongoing transactions: first offset -> producer id (one per producer at most).
    ongoing: BTreeMap<i64, i64>,
    /// Offsets of the snapshot files in the log directory.
    snapshots: BTreeSet<i64>,
}

/// Moves a producer's ongoing transaction in `ongoing` from `old` to `new` first offset (-1:
/// none).
fn track_txn(ongoing: &mut BTreeMap<i64, i64>, producer_id: i64, old: i64, new: i64) {
    if old == new {
        return;
    }
    if old >= 0 && ongoing.get(&old) == Some(&producer_id) {
        ongoing.remove(&old);
    }
    if new >= 0 {
        ongoing.insert(new, producer_id);
    }
}

impl ProducerState {
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every tracked producer, in no particular order (DescribeProducers).
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> + '_ {
        self.producers.iter().map(|(pid, e)| (*pid, e))
    }

    /// Ongoing transactions as `(producer_id, first_offset)`, oldest first.
    pub fn ongoing_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(first, pid)| (*pid, *first))
    }

    /// First offset of the earliest ongoing transaction.
    pub fn first_ongoing_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub(crate) fn latest_snapshot_offset(&self) -> Option<i64> {
        self.snapshots.iter().next_back().copied()
    }

    /// Offsets of the snapshot files, oldest first.
    pub fn snapshot_offsets(&self) -> Vec<i64> {
        self.snapshots.iter().copied().collect()
    }

    /// Producer id -> last offset of its last batch: the batches the cleaner must keep.
    pub(crate) fn last_batch_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(pid, e)| e.last_batch().map(|b| (*pid, b.last_offset)))
            .collect()
    }

    /// Checks a client's batch against the state plus the batches of the same append before
    /// it (`pending`).
    pub(crate) fn check(
        &self,
        h: &BatchHeader,
        pending: &[(i64, ProducerEntry)],
    ) -> Result<Checked> {
        let pid = h.producer_id;
        let entry = pending
            .iter()
            .rev()
            .find(|(p, _)| *p == pid)
            .map(|(_, e)| e)
            .or_else(|| self.producers.get(&pid));
        let Some(e) = entry else {
            // Unknown producer (new, or its batches were deleted): as Kafka since KIP-360,
            // any sequence is accepted and tracking starts with it.
            return Ok(Checked::Append);
        };
        let checked = e.check(pid, h)?;
        // Kafka's `appendDataBatch`: after the epoch, sequence and duplicate checks.
        if checked == Checked::Append && e.current_txn_first_offset >= 0 && !h.is_transactional() {
            return Err(Error::InvalidTxnState { producer_id: pid });
        }
        Ok(checked)
    }

    /// Adds an accepted batch (offsets assigned) to `pending`.
    pub(crate) fn stage(&self, h: &BatchHeader, pending: &mut Vec<(i64, ProducerEntry)>) {
        let pid = h.producer_id;
        let i = match pending.iter().position(|(p, _)| *p == pid) {
            Some(i) => i,
            None => {
                let e = self
                    .producers
                    .get(&pid)
                    .copied()
                    .unwrap_or_else(|| ProducerEntry::new(h.producer_epoch));
                pending.push((pid, e));
                pending.len() - 1
            }
        };
        pending[i].1.apply(h);
    }

    /// Makes the staged entries current (after their batches were written).
    pub(crate) fn commit(&mut self, pending: &mut Vec<(i64, ProducerEntry)>) {
        for (pid, e) in pending.drain(..) {
            let new = e.current_txn_first_offset;
            let old = self
                .producers
                .insert(pid, e)
                .map_or(-1, |o| o.current_txn_first_offset);
            track_txn(&mut self.ongoing, pid, old, new);
        }
    }

    /// Records a batch found in the log (recovery): no checks.
    pub(crate) fn replay(&mut self, h: &BatchHeader) {
        if !is_tracked(h) {
            return;
        }
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        let old = e.current_txn_first_offset;
        e.apply(h);
        let new = e.current_txn_first_offset;
        track_txn(&mut self.ongoing, h.producer_id, old, new);
    }

    /// Checks an end-transaction marker before it is written (see [`ProducerEntry`]). A
    /// producer the partition does not know passes.
    pub(crate) fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<()> {
        match self.producers.get(&producer_id) {
            Some(e) => e.check_marker(producer_id, epoch, coordinator_epoch),
            None => Ok(()),
        }
    }

    /// Applies an end-transaction marker the log holds at `offset` (appended after
    /// [`ProducerState::check_marker`], or found by recovery): the producer's epoch becomes
    /// `epoch` if newer (forgetting its batches), its ongoing transaction ends, and the
    /// coordinator epoch is remembered. `marker` is `None` for a control record recovery could
    /// not read: the transaction ends without an abort. Returns the transaction it completed,
    /// if one was ongoing (a marker without a transaction changes neither the LSO nor the
    /// index, as in Kafka).
    pub(crate) fn complete_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        marker: Option<(MarkerType, i32)>,
        offset: i64,
        timestamp: i64,
    ) -> Option<CompletedTxn> {
        let e = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(epoch));
        if epoch > e.epoch {
            e.epoch = epoch;
            e.batch_count = 0;
        }
        let first = e.current_txn_first_offset;
        e.current_txn_first_offset = -1;
        if let Some((_, coordinator_epoch)) = marker {
            e.coordinator_epoch = coordinator_epoch;
        }
        e.last_timestamp = timestamp;
        if first < 0 {
            return None;
        }
        // Kafka's `lastStableOffset(completedTxn)`: the earliest other ongoing transaction.
        let last_stable_offset = self
            .ongoing
            .iter()
            .find(|(_, pid)| **pid != producer_id)
            .map_or(offset + 1, |(f, _)| *f);
        track_txn(&mut self.ongoing, producer_id, first, -1);
        Some(CompletedTxn {
            producer_id,
            first_offset: first,
            last_offset: offset,
            last_stable_offset,
            aborted: matches!(marker, Some((MarkerType::Abort, _))),
        })
    }

    /// Forgets producers silent for [`PRODUCER_ID_EXPIRATION_MS`], except those with an ongoing
    /// transaction. Returns how many.
    pub(crate) fn remove_expired(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset >= 0
                || now_ms.saturating_sub(e.last_timestamp) < PRODUCER_ID_EXPIRATION_MS
        });
        before - self.producers.len()
    }

    /// Lists the snapshot files of `dir`, deletes those past `log_end_offset` (recovery cut
    /// the log below them) and loads the newest readable one at or below `at_most` (deleting
    /// unreadable ones; newer readable ones stay). Returns the state and the offset its batches
    /// end at (`None`: no snapshot).
    pub(crate) fn load(
        dir: &Path,
        log_end_offset: i64,
        at_most: i64,
    ) -> Result<(ProducerState, Option<i64>)> {
        let mut snapshots = BTreeSet::new();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name();
            if let Some(offset) = name.to_str().and_then(parse_snapshot_name) {
                snapshots.insert(offset);
            }
        }
        let mut deleted = false;
        for &o in snapshots.range(log_end_offset + 1..) {
            tracing::warn!(dir = %dir.display(), offset = o, "deleting a producer snapshot past the log end");
            remove_file(&snapshot_path(dir, o))?;
            deleted = true;
        }
        snapshots.retain(|o| *o <= log_end_offset);
        let mut loaded = None;
        let mut candidates: Vec<i64> = snapshots.range(..=at_most).copied().collect();
        while let Some(o) = candidates.pop() {
            let path = snapshot_path(dir, o);
            match read_snapshot(&path) {
                Ok(producers) => {
                    loaded = Some((producers, o));
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "deleting an unreadable producer snapshot");
                    remove_file(&path)?;
                    deleted = true;
                    snapshots.remove(&o);
                }
            }
        }
        if deleted {
            sync_dir(dir)?;
        }
        Ok(match loaded {
            Some(((producers, ongoing), o)) => (
                ProducerState {
                    producers,
                    ongoing,
                    snapshots,
                },
                Some(o),
            ),
            None => (
                ProducerState {
                    producers: HashMap::new(),
                    ongoing: BTreeMap::new(),
                    snapshots,
                },
                None,
            ),
        })
    }

    /// Writes `<offset>.snapshot` atomically (the state of every batch below `offset`) and
    /// deletes older snapshots that are not at a segment base in `keep`.
    pub(crate) fn write_snapshot(
        &mut self,
        dir: &Path,
        offset: i64,
        keep: &dyn Fn(i64) -> bool,
    ) -> Result<()> {
        let mut buf = Vec::with_capacity(
            SNAPSHOT_HEADER_BYTES
                + self.producers.len() * (ENTRY_HEADER_BYTES + 2 * BATCH_METADATA_BYTES),
        );
        buf.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&(self.producers.len() as i32).to_be_bytes());
        let mut pids: Vec<&i64> = self.producers.keys().collect();
        pids.sort_unstable();
        for pid in pids {
            let e = &self.producers[pid];
            buf.extend_from_slice(&pid.to_be_bytes());
            buf.extend_from_slice(&e.epoch.to_be_bytes());
            buf.extend_from_slice(&e.last_timestamp.to_be_bytes());
            buf.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            buf.extend_from_slice(&e.current_txn_first_offset.to_be_bytes());
            buf.push(e.batch_count);
            for b in e.batches() {
                buf.extend_from_slice(&b.first_seq.to_be_bytes());
                buf.extend_from_slice(&b.last_seq.to_be_bytes());
                buf.extend_from_slice(&b.first_offset.to_be_bytes());
                buf.extend_from_slice(&b.last_offset.to_be_bytes());
                buf.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let crc = sluice_records::crc32c(&buf[6..]);
        buf[2..6].copy_from_slice(&crc.to_be_bytes());
        let path = snapshot_path(dir, offset);
        crate::atomic_file::write_atomically(&path, &buf).map_err(|e| Error::io(&path, e))?;
        self.snapshots.insert(offset);
        let stale: Vec<i64> = self
            .snapshots
            .range(..offset)
            .copied()
            .filter(|o| !keep(*o))
            .collect();
        for o in stale {
            remove_file(&snapshot_path(dir, o))?;
            self.snapshots.remove(&o);
        }
        sync_dir(dir)
    }

    /// The log start moved to `first_base` (segments deleted): deletes the snapshots below
    /// it except the newest one at or below it, which still describes producers whose batches
    /// were deleted. The caller syncs the directory.
    pub(crate) fn delete_snapshots_before(&mut self, dir: &Path, first_base: i64) -> Result<()> {
        let keep = self.snapshots.range(..=first_base).next_back().copied();
        let stale: Vec<i64> = self
            .snapshots
            .range(..first_base)
            .copied()
            .filter(|o| Some(*o) != keep)
            .collect();
        for o in stale {
            remove_file(&snapshot_path(dir, o))?;
            self.snapshots.remove(&o);
        }
        Ok(())
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(crate::segment::file_name(offset, SNAPSHOT_SUFFIX))
}

/// `<20 digits>.snapshot` -> offset.
pub(crate) fn parse_snapshot_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".snapshot")?;
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

/// Producers and their ongoing transactions (first offset -> producer id), as a snapshot holds
/// them.
type SnapshotState = (HashMap<i64, ProducerEntry>, BTreeMap<i64, i64>);

fn read_snapshot(path: &Path) -> Result<SnapshotState> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let corrupted = |position: usize, reason: &str| Error::Corrupted {
        path: path.to_path_buf(),
        position: position as u64,
        reason: reason.to_owned(),
    };
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(corrupted(0, "producer snapshot shorter than its header"));
    }
    let mut r = Reader { b: &bytes, at: 0 };
    let version = r.i16();
    let entry_header_bytes = match version {
        SNAPSHOT_VERSION => ENTRY_HEADER_BYTES,
        SNAPSHOT_VERSION_1 => ENTRY_HEADER_BYTES_V1,
        _ => return Err(corrupted(0, "unknown producer snapshot version")),
    };
    let crc = r.i32() as u32;
    if sluice_records::crc32c(&bytes[6..]) != crc {
        return Err(corrupted(2, "producer snapshot CRC mismatch"));
    }
    let count = r.i32();
    // Each entry takes at least its header: check before allocating.
    if count < 0 || count as usize > (bytes.len() - SNAPSHOT_HEADER_BYTES) / entry_header_bytes {
        return Err(corrupted(6, "producer snapshot entry count out of range"));
    }
    let mut producers = HashMap::with_capacity(count as usize);
    let mut ongoing = BTreeMap::new();
    for _ in 0..count {
        if r.remaining() < entry_header_bytes {
            return Err(corrupted(r.at, "producer snapshot truncated"));
        }
        let pid = r.i64();
        let mut e = ProducerEntry::new(r.i16());
        let last_timestamp = r.i64();
        let (coordinator_epoch, txn_first_offset) = if version == SNAPSHOT_VERSION_1 {
            (-1, -1)
        } else {
            (r.i32(), r.i64())
        };
        if txn_first_offset < -1 || coordinator_epoch < -1 {
            return Err(corrupted(
                r.at,
                "producer snapshot transaction fields out of range",
            ));
        }
        if txn_first_offset >= 0 && ongoing.insert(txn_first_offset, pid).is_some() {
            return Err(corrupted(
                r.at,
                "two ongoing transactions start at the same offset",
            ));
        }
        e.coordinator_epoch = coordinator_epoch;
        e.current_txn_first_offset = txn_first_offset;
        let n = r.u8() as usize;
        if n > BATCHES_RETAINED || r.remaining() < n * BATCH_METADATA_BYTES {
            return Err(corrupted(
                r.at,
                "producer snapshot batch count out of range",
            ));
        }
        for _ in 0..n {
            e.push(BatchMetadata {
                first_seq: r.i32(),
                last_seq: r.i32(),
                first_offset: r.i64(),
                last_offset: r.i64(),
                timestamp: r.i64(),
            });
        }
        e.last_timestamp = last_timestamp;
        if producers.insert(pid, e).is_some() {
            return Err(corrupted(r.at, "a producer appears twice in the snapshot"));
        }
    }
    if r.remaining() != 0 {
        return Err(corrupted(r.at, "trailing bytes in producer snapshot"));
    }
    Ok((producers, ongoing))
}

/// Big-endian reads; callers check the length first.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[self.at..self.at + N]);
        self.at += N;
        a
    }
    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        let b = crate::testing::build_batch(count, 1, 1_000, Some((pid, epoch, seq)));
        let mut h = BatchHeader::parse(&b).expect("a valid header");
        h.base_offset = base_offset;
        h
    }

    fn txn_header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        let b = crate::testing::build_transactional_batch(count, 1, 1_000, (pid, epoch, seq));
        let mut h = BatchHeader::parse(&b).expect("a valid header");
        h.base_offset = base_offset;
        h
    }

    fn append(s: &mut ProducerState, h: &BatchHeader) -> Result<Checked> {
        let c = s.check(h, &[])?;
        if c == Checked::Append {
            let mut p = Vec::new();
            s.stage(h, &mut p);
            s.commit(&mut p);
        }
        Ok(c)
    }

    #[test]
    fn sequences_wrap_at_i32_max() -> Result<()> {
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 3), 8);
        let mut s = ProducerState::default();
        append(&mut s, &header(1, 0, i32::MAX - 1, 2, 0))?;
        assert_eq!(append(&mut s, &header(1, 0, 0, 1, 2))?, Checked::Append);
        Ok(())
    }

    #[test]
    fn only_the_last_five_batches_are_duplicates() -> Result<()> {
        let mut s = ProducerState::default();
        for i in 0..7 {
            append(&mut s, &header(1, 0, i * 2, 2, i as i64 * 2))?;
        }
        assert!(
            matches!(append(&mut s, &header(1, 0, 4, 2, 99))?, Checked::Duplicate(d) if d.first_offset == 4)
        );
        // Evicted: not a duplicate any more, and not in sequence either.
        assert!(matches!(
            append(&mut s, &header(1, 0, 2, 2, 99)),
            Err(Error::OutOfOrderSequence { .. })
        ));
        Ok(())
    }

    #[test]
    fn snapshot_roundtrips_and_refuses_corruption() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let mut s = ProducerState::default();
        for i in 0..3 {
            append(&mut s, &header(7, 2, i, 1, i as i64))?;
        }
        append(&mut s, &header(9, 0, 0, 3, 3))?;
        s.write_snapshot(dir.path(), 6, &|_| false)?;
        let (loaded, at) = ProducerState::load(dir.path(), 6, i64::MAX)?;
        assert_eq!(at, Some(6));
        assert_eq!(loaded.entry(7), s.entry(7));
        assert_eq!(loaded.entry(9), s.entry(9));
        let path = snapshot_path(dir.path(), 6);
        let mut bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        let (loaded, at) = ProducerState::load(dir.path(), 6, i64::MAX)?;
        assert_eq!((loaded.len(), at), (0, None));
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn transactions_track_the_lso_and_complete_with_kafkas_lso() -> Result<()> {
        let mut s = ProducerState::default();
        append(&mut s, &txn_header(1, 0, 0, 2, 10))?;
        append(&mut s, &txn_header(2, 0, 0, 1, 12))?;
        append(&mut s, &txn_header(1, 0, 2, 1, 13))?;
        assert_eq!(s.first_ongoing_offset(), Some(10));
        assert_eq!(
            s.ongoing_transactions().collect::<Vec<_>>(),
            vec![(1, 10), (2, 12)]
        );
        assert_eq!(
            s.entry(1).and_then(|e| e.current_txn_first_offset()),
            Some(10)
        );
        // Producer 1 aborts: the LSO after it is producer 2's first offset.
        let done = s.complete_marker(1, 0, Some((MarkerType::Abort, 4)), 14, 1_000);
        assert_eq!(
            done.and_then(|c| c.aborted_txn()),
            Some(AbortedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 14,
                last_stable_offset: 12
            })
        );
        assert_eq!(s.entry(1).map(|e| e.coordinator_epoch()), Some(4));
        // Producer 2 commits: no index entry, LSO after it is the marker + 1.
        let done = s.complete_marker(2, 0, Some((MarkerType::Commit, 4)), 15, 1_000);
        assert_eq!(
            done.map(|c| (c.aborted, c.last_stable_offset)),
            Some((false, 16))
        );
        assert_eq!(s.first_ongoing_offset(), None);
        // No transaction: nothing completed, but the epoch and coordinator epoch still move.
        assert_eq!(
            s.complete_marker(3, 5, Some((MarkerType::Abort, 9)), 16, 1),
            None
        );
        assert_eq!(
            s.entry(3).map(|e| (e.epoch, e.coordinator_epoch())),
            Some((5, 9))
        );
        Ok(())
    }

    #[test]
    fn markers_are_fenced_and_bump_the_epoch() -> Result<()> {
        let mut s = ProducerState::default();
        append(&mut s, &txn_header(1, 3, 0, 1, 0))?;
        s.complete_marker(1, 3, Some((MarkerType::Commit, 5)), 1, 1_000);
        assert!(matches!(
            s.check_marker(1, 2, 5),
            Err(Error::InvalidProducerEpoch {
                epoch: 2,
                current_epoch: 3,
                ..
            })
        ));
        assert!(matches!(
            s.check_marker(1, 3, 4),
            Err(Error::TransactionCoordinatorFenced {
                coordinator_epoch: 4,
                current: 5,
                ..
            })
        ));
        s.check_marker(1, 4, 5)?;
        s.check_marker(99, 0, 0)?;
        // A newer epoch forgets the batches: the next batch must start at 0.
        s.complete_marker(1, 4, Some((MarkerType::Abort, 5)), 2, 1_000);
        assert_eq!(
            s.entry(1).map(|e| (e.epoch, e.last_sequence())),
            Some((4, -1))
        );
        assert!(matches!(
            append(&mut s, &header(1, 3, 1, 1, 3)),
            Err(Error::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            append(&mut s, &header(1, 4, 1, 1, 3)),
            Err(Error::OutOfOrderSequence {
                sequence: 1,
                last_sequence: -1,
                ..
            })
        ));
        assert_eq!(append(&mut s, &header(1, 4, 0, 1, 3))?, Checked::Append);
        Ok(())
    }

    #[test]
    fn a_non_transactional_batch_during_a_transaction_is_refused() -> Result<()> {
        let mut s = ProducerState::default();
        // Within one append: the staged entry carries the transaction.
        let mut pending = Vec::new();
        let t = txn_header(1, 0, 0, 1, 0);
        assert_eq!(s.check(&t, &pending)?, Checked::Append);
        s.stage(&t, &mut pending);
        let plain = header(1, 0, 1, 1, 1);
        assert!(matches!(
            s.check(&plain, &pending),
            Err(Error::InvalidTxnState { producer_id: 1 })
        ));
        s.commit(&mut pending);
        assert_eq!(s.first_ongoing_offset(), Some(0));
        assert!(matches!(
            append(&mut s, &plain),
            Err(Error::InvalidTxnState { .. })
        ));
        // A retry of the transactional batch is still a duplicate.
        assert!(matches!(append(&mut s, &t)?, Checked::Duplicate(_)));
        s.complete_marker(1, 0, Some((MarkerType::Commit, 0)), 1, 1_000);
        assert_eq!(append(&mut s, &header(1, 0, 1, 1, 2))?, Checked::Append);
        Ok(())
    }

    #[test]
    fn producers_with_an_ongoing_transaction_never_expire() -> Result<()> {
        let mut s = ProducerState::default();
        append(&mut s, &txn_header(1, 0, 0, 1, 0))?;
        append(&mut s, &header(2, 0, 0, 1, 1))?;
        assert_eq!(s.remove_expired(1_000 + 2 * PRODUCER_ID_EXPIRATION_MS), 1);
        assert!(s.entry(1).is_some() && s.entry(2).is_none());
        Ok(())
    }

    #[test]
    fn snapshot_v2_keeps_transactions_and_v1_still_loads() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let mut s = ProducerState::default();
        append(&mut s, &txn_header(1, 2, 0, 2, 0))?;
        s.complete_marker(1, 2, Some((MarkerType::Abort, 7)), 2, 1_000);
        append(&mut s, &txn_header(1, 2, 2, 1, 3))?;
        append(&mut s, &txn_header(2, 0, 0, 1, 4))?;
        append(&mut s, &header(3, 0, 0, 1, 5))?;
        s.write_snapshot(dir.path(), 6, &|_| false)?;
        let (loaded, at) = ProducerState::load(dir.path(), 6, i64::MAX)?;
        assert_eq!(at, Some(6));
        for pid in 1..=3 {
            assert_eq!(loaded.entry(pid), s.entry(pid));
        }
        assert_eq!(loaded.entry(1).map(|e| e.coordinator_epoch()), Some(7));
        assert_eq!(
            loaded.ongoing_transactions().collect::<Vec<_>>(),
            vec![(1, 3), (2, 4)]
        );
        // A snapshot too new for the bound is not loaded, and stays.
        let (older, at) = ProducerState::load(dir.path(), 6, 5)?;
        assert_eq!((older.len(), at), (0, None));
        assert_eq!(older.snapshot_offsets(), vec![6]);

        // Version 1, as written before transactions: producer 9, epoch 1, one batch.
        let mut v1 = Vec::new();
        v1.extend_from_slice(&1i16.to_be_bytes());
        v1.extend_from_slice(&0u32.to_be_bytes());
        v1.extend_from_slice(&1i32.to_be_bytes());
        v1.extend_from_slice(&9i64.to_be_bytes());
        v1.extend_from_slice(&1i16.to_be_bytes());
        v1.extend_from_slice(&1_234i64.to_be_bytes());
        v1.push(1);
        for v in [0i32, 4] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        for v in [10i64, 14, 1_234] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        let crc = sluice_records::crc32c(&v1[6..]);
        v1[2..6].copy_from_slice(&crc.to_be_bytes());
        let path = snapshot_path(dir.path(), 20);
        std::fs::write(&path, &v1).map_err(|e| Error::io(&path, e))?;
        let (loaded, at) = ProducerState::load(dir.path(), 20, i64::MAX)?;
        assert_eq!(at, Some(20));
        let e = loaded
            .entry(9)
            .copied()
            .ok_or(Error::InvalidBatch(crate::BatchError::Empty))?;
        assert_eq!(
            (e.epoch, e.last_sequence(), e.last_timestamp),
            (1, 4, 1_234)
        );
        assert_eq!(e.current_txn_first_offset(), None);
        assert_eq!(e.coordinator_epoch(), -1);
        assert_eq!(loaded.first_ongoing_offset(), None);
        Ok(())
    }
}
