//! Retention: deleting the oldest segments past `retention.ms` / `retention.bytes`,
//! DeleteRecords, and deleting the whole log.

#[allow(unused_imports)]
use super::*;

impl Log {
    pub(super) fn delete_oldest(&mut self, report: &mut RetentionReport) -> Result<()> {
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
    pub(super) fn first_segment_below_log_start(&self) -> bool {
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
}

fn file_mtime_ms(path: &Path) -> Option<i64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}
