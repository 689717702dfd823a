//! Background work on a partition's log: retention, scheduled flushes, recovery-point
//! checkpoints, compaction and the clean close. Blocking: run from `spawn_blocking`. Each pass
//! takes the lock for its own bookkeeping only; fsyncs and the cleaner's copying run outside it.

use log_store::cleaner::Cleaner;

use super::Partition;

impl Partition {
    /// Deletes segments past `retention.ms` / `retention.bytes`.
    pub fn enforce_retention(&self, now_ms: i64) {
        let Ok(mut log) = self.write_lock() else {
            return;
        };
        let result = log.enforce_retention(now_ms);
        self.publish(&log);
        match result {
            Ok(r) if r.segments_deleted > 0 => {
                tracing::info!(partition = %self.tp, segments = r.segments_deleted, bytes = r.bytes_deleted, log_start_offset = r.log_start_offset, "retention deleted segments")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(partition = %self.tp, error = %e, "retention failed"),
        }
    }

    /// Flushes when `flush.messages` / `flush.ms` asks for it.
    pub fn flush_if_due(&self, now_ms: i64) {
        let due = self.read_lock().is_ok_and(|l| l.flush_due(now_ms));
        if due {
            if let Err(e) = self.flush() {
                tracing::error!(partition = %self.tp, error = %e, "scheduled flush failed");
            }
        }
    }

    /// Fsyncs everything appended so far (outside the lock) and moves the recovery point.
    pub fn flush(&self) -> Result<(), log_store::Error> {
        let ticket = self.read_lock()?.prepare_flush();
        if let Some(t) = ticket {
            t.sync()?;
            self.write_lock()?.complete_flush(t.upto());
        }
        Ok(())
    }

    /// Flushes, then writes the recovery-point checkpoint.
    pub fn checkpoint(&self) {
        if self.is_online() {
            let done = self.flush().and_then(|()| self.write_lock()?.checkpoint());
            if let Err(e) = done {
                tracing::error!(partition = %self.tp, error = %e, "checkpoint failed");
            }
        }
    }

    /// One compaction pass when the partition is compacted and due: planned under the read
    /// lock, executed (key map, cleaned segment files) with no lock, installed under the write
    /// lock.
    pub fn compact(&self, cleaner: &Cleaner, now_ms: i64) {
        let plan = match self.read_lock() {
            Ok(l) if l.config().cleanup_policy.compact => cleaner.plan(&l, now_ms),
            _ => None,
        };
        let Some(plan) = plan else { return };
        let cleaned = match plan.execute() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(partition = %self.tp, error = %e, "compaction failed");
                return;
            }
        };
        let installed = match self.write_lock() {
            Ok(mut l) => l.install_cleaned(cleaned),
            Err(_) => return,
        };
        match installed {
            Ok(r) => tracing::info!(
                partition = %self.tp,
                bytes_before = r.bytes_before,
                bytes_after = r.bytes_after,
                records_removed = r.records_removed,
                "compacted"
            ),
            Err(e) => {
                tracing::error!(partition = %self.tp, error = %e, "installing compacted segments failed")
            }
        }
    }

    /// Clean close: flush, then write the clean-shutdown checkpoints. Call after the append
    /// actor has stopped.
    pub fn close(&self) {
        if let Ok(mut log) = self.write_lock() {
            if let Err(e) = log.flush().and_then(|_| log.close_in_place()) {
                tracing::error!(partition = %self.tp, error = %e, "clean close failed");
            }
        }
    }
}
