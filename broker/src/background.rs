//! Background log maintenance: retention, `flush.ms`, recovery-point checkpoints, compaction. Each pass
//! takes a partition's lock only for its own bookkeeping; fsyncs run outside it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::{now_ms, Broker};

fn each_log(
    broker: &Broker,
    mut f: impl FnMut(&std::sync::RwLock<log_store::Log>, &log_store::TopicPartition),
) {
    for t in broker.topics() {
        for p in &t.partitions {
            if let Ok(log) = p.log() {
                f(log, &p.tp);
            }
        }
    }
}

fn retention(broker: &Broker) {
    each_log(broker, |log, tp| {
        if let Ok(mut l) = log.write() {
            match l.enforce_retention(now_ms()) {
                Ok(r) if r.segments_deleted > 0 => {
                    tracing::info!(partition = %tp, segments = r.segments_deleted, bytes = r.bytes_deleted, log_start_offset = r.log_start_offset, "retention deleted segments")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(partition = %tp, error = %e, "retention failed"),
            }
        }
    });
}

fn flush_due(broker: &Broker) {
    each_log(broker, |log, tp| {
        let ticket = match log.read() {
            Ok(l) if l.flush_due(now_ms()) => l.prepare_flush(),
            _ => None,
        };
        if let Some(t) = ticket {
            match t.sync() {
                Ok(()) => {
                    if let Ok(mut l) = log.write() {
                        l.complete_flush(t.upto());
                    }
                }
                Err(e) => tracing::error!(partition = %tp, error = %e, "scheduled flush failed"),
            }
        }
    });
}

fn checkpoint(broker: &Broker) {
    each_log(broker, |log, tp| {
        // Flush first so the checkpoint moves recovery forward.
        let ticket = log.read().ok().and_then(|l| l.prepare_flush());
        if let Some(t) = ticket {
            if t.sync().is_ok() {
                if let Ok(mut l) = log.write() {
                    l.complete_flush(t.upto());
                }
            }
        }
        if let Ok(mut l) = log.write() {
            if let Err(e) = l.checkpoint() {
                tracing::error!(partition = %tp, error = %e, "checkpoint failed");
            }
        }
    });
}

/// One compaction pass per compacted partition that is due: planned under the read lock,
/// executed (key map, cleaned segment files) with no lock, installed under the write lock.
fn compaction(broker: &Broker) {
    if !broker.config.log_cleaner_enable {
        return;
    }
    let cleaner = log_store::cleaner::Cleaner::new(log_store::cleaner::CleanerConfig::default());
    each_log(broker, |log, tp| {
        let plan = match log.read() {
            Ok(l) if l.config().cleanup_policy.compact => cleaner.plan(&l, now_ms()),
            _ => None,
        };
        let Some(plan) = plan else { return };
        let cleaned = match plan.execute() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "compaction failed");
                return;
            }
        };
        let installed = match log.write() {
            Ok(mut l) => l.install_cleaned(cleaned),
            Err(_) => return,
        };
        match installed {
            Ok(r) => tracing::info!(
                partition = %tp,
                bytes_before = r.bytes_before,
                bytes_after = r.bytes_after,
                records_removed = r.records_removed,
                "compacted"
            ),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "installing compacted segments failed")
            }
        }
    });
}

async fn every(
    period_ms: u64,
    shutdown: &CancellationToken,
    broker: &Arc<Broker>,
    pass: fn(&Broker),
) {
    let mut tick = tokio::time::interval(Duration::from_millis(period_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let b = Arc::clone(broker);
        let _ = tokio::task::spawn_blocking(move || pass(&b)).await;
    }
}

/// Runs every maintenance loop until shutdown.
pub async fn run(broker: Arc<Broker>, shutdown: CancellationToken) {
    let c = broker.config.clone();
    tokio::join!(
        every(
            c.log_retention_check_interval_ms,
            &shutdown,
            &broker,
            retention
        ),
        every(
            c.log_flush_scheduler_interval_ms,
            &shutdown,
            &broker,
            flush_due
        ),
        every(
            c.log_flush_offset_checkpoint_interval_ms,
            &shutdown,
            &broker,
            checkpoint
        ),
        every(c.log_cleaner_backoff_ms, &shutdown, &broker, compaction),
    );
}
