//! Reads of a partition: fetch reads, offsets, ListOffsets lookups, OffsetForLeaderEpoch and
//! the replay of the committed log that coordinators load their state from.
//!
//! Each read takes the log's read lock only to find what to read (a [`FileRegion`] of whole
//! batches); the bytes themselves are read after the lock is released.

use log_store::{AbortedTxn, FileRegion, OffsetSpec};

use super::Partition;

/// What a fetch asks of one partition.
#[derive(Debug, Clone, Copy)]
pub struct ReadSpec {
    pub fetch_offset: i64,
    pub max_bytes: usize,
    /// Return at least one whole batch even when it is larger than `max_bytes` (KIP-74).
    pub min_one_batch: bool,
    /// read_committed: stop at the last stable offset and list the aborted transactions.
    pub read_committed: bool,
}

/// What a fetch read found: the region to send as stored, and the offsets around it.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub region: Option<FileRegion>,
    pub offsets: Offsets,
    /// read_committed: the aborted transactions the region may hold.
    pub aborted: Vec<AbortedTxn>,
}

/// A partition's offsets at one instant (taken under one lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_end_offset: i64,
}

impl Offsets {
    pub(super) fn of(log: &log_store::Log) -> Offsets {
        let o = Offsets {
            log_start_offset: log.log_start_offset(),
            high_watermark: log.high_watermark(),
            last_stable_offset: log.last_stable_offset(),
            log_end_offset: log.log_end_offset(),
        };
        debug_assert!(o.log_start_offset <= o.high_watermark, "{o:?}");
        debug_assert!(o.last_stable_offset <= o.high_watermark, "{o:?}");
        debug_assert!(o.high_watermark <= o.log_end_offset, "{o:?}");
        o
    }
}

/// A run of whole committed batches handed to a replay, with the offset after its last batch.
pub struct Committed<'a> {
    pub bytes: &'a [u8],
    pub next_offset: i64,
}

impl Partition {
    /// The bytes of the partition's segments (summed over them: not for hot paths).
    pub fn size_bytes(&self) -> Result<u64, log_store::Error> {
        Ok(self.read_lock()?.size_bytes())
    }

    /// The partition's offsets.
    pub fn offsets(&self) -> Result<Offsets, log_store::Error> {
        let log = self.read_lock()?;
        Ok(Offsets::of(&log))
    }

    /// Finds the region a fetch returns (the lock is held for the lookup only).
    /// On an error the offsets are still given, for the response.
    pub fn read(&self, spec: ReadSpec) -> Result<ReadResult, (log_store::Error, Option<Offsets>)> {
        let log = self.read_lock().map_err(|e| (e, None))?;
        let offsets = Offsets::of(&log);
        let upper = if spec.read_committed {
            offsets.last_stable_offset
        } else {
            offsets.high_watermark
        };
        let info = log
            .read(spec.fetch_offset, spec.max_bytes, upper, spec.min_one_batch)
            .map_err(|e| (e, Some(offsets)))?;
        let aborted = if spec.read_committed && info.region.is_some() {
            log.aborted_transactions(spec.fetch_offset, upper)
        } else {
            Vec::new()
        };
        Ok(ReadResult {
            region: info.region,
            offsets,
            aborted,
        })
    }

    /// ListOffsets: `(offset, timestamp)` for `spec`; read_committed answers Latest with the
    /// last stable offset and never an offset at or past it.
    pub fn lookup_offset(
        &self,
        spec: OffsetSpec,
        read_committed: bool,
    ) -> Result<Option<(i64, i64)>, log_store::Error> {
        let log = self.read_lock()?;
        if !read_committed {
            return log.lookup_offset(spec);
        }
        let lso = log.last_stable_offset();
        match spec {
            OffsetSpec::Latest => Ok(Some((lso, -1))),
            OffsetSpec::Earliest => log.lookup_offset(spec),
            _ => Ok(log.lookup_offset(spec)?.filter(|(offset, _)| *offset < lso)),
        }
    }

    /// OffsetForLeaderEpoch: `(epoch, end_offset)` for the largest epoch <= `epoch`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, i64)>, log_store::Error> {
        Ok(self.read_lock()?.end_offset_for_epoch(epoch))
    }

    /// Replays the log from its start to the high watermark: calls `f` with each run of whole
    /// batches, in order, read `chunk_bytes` at a time (at least one batch each). Blocking.
    /// Coordinators load their state with it (`__consumer_offsets`, `__transaction_state`).
    pub fn replay<E: From<log_store::Error>>(
        &self,
        chunk_bytes: usize,
        mut f: impl FnMut(Committed<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut offset = self.offsets()?.log_start_offset;
        loop {
            let region = {
                let log = self.read_lock()?;
                let hw = log.high_watermark();
                if offset >= hw {
                    return Ok(());
                }
                log.read(offset, chunk_bytes, hw, true)?.region
            };
            let Some(region) = region else {
                return Ok(());
            };
            let bytes = region.to_vec()?;
            let next = next_offset_after(&bytes)?;
            let Some(next) = next.filter(|n| *n > offset) else {
                return Ok(());
            };
            f(Committed {
                bytes: &bytes,
                next_offset: next,
            })?;
            offset = next;
        }
    }
}

/// The offset after the last whole batch in `bytes` (`None` when there is none).
fn next_offset_after(bytes: &[u8]) -> Result<Option<i64>, log_store::Error> {
    let mut at = 0usize;
    let mut next = None;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let len = sluice_records::declared_batch_bytes(rest, i32::MAX as usize)?;
        if len > rest.len() {
            break;
        }
        next = Some(sluice_records::BatchHeader::parse(rest)?.next_offset());
        at += len;
    }
    Ok(next)
}
