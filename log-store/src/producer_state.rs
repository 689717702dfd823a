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
//! Transactions will extend [`ProducerEntry`] with the first offset of the producer's ongoing
//! transaction and [`ProducerState`] with the set of ongoing transactions ordered by first
//! offset (the last stable offset); the snapshot's version field makes room for that.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::batch::BatchHeader;
use crate::error::{Error, Result};
use crate::segment::sync_dir;

/// Batches remembered per producer for duplicate detection (Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`; a producer has at most 5 requests in flight).
pub const BATCHES_RETAINED: usize = 5;

/// How long a producer with no append is remembered (Kafka's `producer.id.expiration.ms`
/// default, one day), measured against the batches' max timestamps as Kafka does.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";
const SNAPSHOT_VERSION: i16 = 1;
/// version i16 + crc u32 + count i32.
const SNAPSHOT_HEADER_BYTES: usize = 10;
/// producer id, epoch, last timestamp, batch count.
const ENTRY_HEADER_BYTES: usize = 8 + 2 + 8 + 1;
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
    /// Max timestamp of the producer's last batch, for expiration.
    pub last_timestamp: i64,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        ProducerEntry {
            epoch,
            batches: [BatchMetadata::default(); BATCHES_RETAINED],
            batch_count: 0,
            last_timestamp: -1,
        }
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
    /// epoch changes nothing; a newer epoch forgets the old epoch's batches.
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
        match self.last_batch() {
            Some(last) if !in_sequence(last.last_seq, h.base_sequence) => {
                Err(Error::OutOfOrderSequence {
                    producer_id,
                    epoch: h.producer_epoch,
                    sequence: h.base_sequence,
                    last_sequence: last.last_seq,
                })
            }
            _ => Ok(Checked::Append),
        }
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

/// Every tracked producer of one partition.
#[derive(Debug, Default)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Offsets of the snapshot files in the log directory.
    snapshots: BTreeSet<i64>,
}

impl ProducerState {
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
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
        match entry {
            // Unknown producer (new, or its batches were deleted): as Kafka since KIP-360,
            // any sequence is accepted and tracking starts with it.
            None => Ok(Checked::Append),
            Some(e) => e.check(pid, h),
        }
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
            self.producers.insert(pid, e);
        }
    }

    /// Records a batch found in the log (recovery): no checks.
    pub(crate) fn replay(&mut self, h: &BatchHeader) {
        if !is_tracked(h) {
            return;
        }
        self.producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch))
            .apply(h);
    }

    /// Forgets producers silent for [`PRODUCER_ID_EXPIRATION_MS`]. Returns how many.
    pub(crate) fn remove_expired(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) < PRODUCER_ID_EXPIRATION_MS);
        before - self.producers.len()
    }

    /// Lists the snapshot files of `dir`, deletes those past `log_end_offset` (recovery cut
    /// the log below them) and loads the newest readable one (deleting unreadable ones).
    /// Returns the state and the offset its batches end at (`None`: no snapshot).
    pub(crate) fn load(dir: &Path, log_end_offset: i64) -> Result<(ProducerState, Option<i64>)> {
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
        while let Some(&o) = snapshots.iter().next_back() {
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
            Some((producers, o)) => (
                ProducerState {
                    producers,
                    snapshots,
                },
                Some(o),
            ),
            None => (
                ProducerState {
                    producers: HashMap::new(),
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
            buf.push(e.batch_count);
            for b in e.batches() {
                buf.extend_from_slice(&b.first_seq.to_be_bytes());
                buf.extend_from_slice(&b.last_seq.to_be_bytes());
                buf.extend_from_slice(&b.first_offset.to_be_bytes());
                buf.extend_from_slice(&b.last_offset.to_be_bytes());
                buf.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&buf[6..]);
        buf[2..6].copy_from_slice(&crc.to_be_bytes());
        let path = snapshot_path(dir, offset);
        let tmp = path.with_extension(format!("{SNAPSHOT_SUFFIX}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&buf).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
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

fn read_snapshot(path: &Path) -> Result<HashMap<i64, ProducerEntry>> {
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
    if version != SNAPSHOT_VERSION {
        return Err(corrupted(0, "unknown producer snapshot version"));
    }
    let crc = r.i32() as u32;
    if crc32c::crc32c(&bytes[6..]) != crc {
        return Err(corrupted(2, "producer snapshot CRC mismatch"));
    }
    let count = r.i32();
    // Each entry takes at least ENTRY_HEADER_BYTES: check before allocating.
    if count < 0 || count as usize > (bytes.len() - SNAPSHOT_HEADER_BYTES) / ENTRY_HEADER_BYTES {
        return Err(corrupted(6, "producer snapshot entry count out of range"));
    }
    let mut producers = HashMap::with_capacity(count as usize);
    for _ in 0..count {
        if r.remaining() < ENTRY_HEADER_BYTES {
            return Err(corrupted(r.at, "producer snapshot truncated"));
        }
        let pid = r.i64();
        let mut e = ProducerEntry::new(r.i16());
        let last_timestamp = r.i64();
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
        producers.insert(pid, e);
    }
    if r.remaining() != 0 {
        return Err(corrupted(r.at, "trailing bytes in producer snapshot"));
    }
    Ok(producers)
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
        let (loaded, at) = ProducerState::load(dir.path(), 6)?;
        assert_eq!(at, Some(6));
        assert_eq!(loaded.entry(7), s.entry(7));
        assert_eq!(loaded.entry(9), s.entry(9));
        let path = snapshot_path(dir.path(), 6);
        let mut bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        let (loaded, at) = ProducerState::load(dir.path(), 6)?;
        assert_eq!((loaded.len(), at), (0, None));
        assert!(!path.exists());
        Ok(())
    }
}
