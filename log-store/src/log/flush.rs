//! Durability: scheduled flushes, group-commit flush tickets, recovery-point and producer
//! snapshots, and the clean close.

#[allow(unused_imports)]
use super::*;

impl Log {
    /// Writes a producer snapshot at the log end offset, unless the newest one is there.
    pub(super) fn write_producer_snapshot(&mut self) -> Result<()> {
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

    pub(super) fn write_checkpoint(&self, clean_shutdown: bool) -> Result<()> {
        PartitionCheckpoint {
            log_start_offset: self.log_start_offset,
            recovery_point: self.recovery_point,
            clean_shutdown,
        }
        .write(&self.dir)
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
}
