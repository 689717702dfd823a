//! Background log maintenance: retention, `flush.ms`, recovery-point checkpoints, compaction. Each pass
//! takes a partition's lock only for its own bookkeeping; fsyncs run outside it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::partition::Partition;
use crate::state::{now_ms, Broker};

fn each_partition(broker: &Broker, mut f: impl FnMut(&Partition)) {
    for t in broker.topics() {
        for p in &t.partitions {
            f(p);
        }
    }
}

fn retention(broker: &Broker) {
    each_partition(broker, |p| p.enforce_retention(now_ms()));
}

fn flush_due(broker: &Broker) {
    each_partition(broker, |p| p.flush_if_due(now_ms()));
}

fn checkpoint(broker: &Broker) {
    each_partition(broker, Partition::checkpoint);
}

/// One compaction pass per compacted partition that is due.
fn compaction(broker: &Broker) {
    if !broker.config.log_cleaner_enable {
        return;
    }
    let cleaner = log_store::cleaner::Cleaner::new(log_store::cleaner::CleanerConfig::default());
    each_partition(broker, |p| p.compact(&cleaner, now_ms()));
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
