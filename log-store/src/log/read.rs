//! Reading: regions of whole batches for fetches, the last stable offset and aborted
//! transactions for read_committed, ListOffsets lookups and OffsetForLeaderEpoch.

#[allow(unused_imports)]
use super::*;

impl Log {
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
                let off = crate::timestamps::last_offset_with_timestamp(&bytes, ts)?
                    .unwrap_or(h.base_offset);
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
                        if let Some((off, t)) =
                            crate::timestamps::first_offset_at_or_after(&bytes, ts)?
                        {
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
}
