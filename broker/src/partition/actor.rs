//! The append actor: serialises a partition's appends and group-commits their fsyncs.
//!
//! Produce handlers send [`AppendJob`]s over a bounded channel; the actor takes every job that
//! is waiting (up to [`MAX_JOBS_PER_ROUND`]), appends them in one `spawn_blocking` call, then, if
//! any job asked for acks=all (or `flush.messages`/`flush.ms` is due), runs one fsync for the
//! whole round outside the log's lock. Jobs that arrive during the fsync form the next round, so
//! a burst of acks=all producers costs one fsync per round, not one per request.

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use log_store::{AppendInfo, AppendOptions, Log, TopicPartition};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{Offsets, Partition, LEADER_EPOCH};
use crate::state::now_ms;

/// Jobs one round may take; bounds the work between two fsyncs.
pub const MAX_JOBS_PER_ROUND: usize = 512;
/// Appends waiting per partition before producers wait for room (back-pressure).
pub const APPEND_QUEUE_DEPTH: usize = 1024;

/// What an append writes.
pub enum AppendData {
    /// A produce request's record batches, stored as received.
    Records(Bytes),
    /// A transaction marker written by the transaction coordinator (Kafka's WriteTxnMarkers).
    Marker {
        producer_id: i64,
        producer_epoch: i16,
        marker: sluice_records::MarkerType,
        coordinator_epoch: i32,
    },
}

/// One append for this partition.
pub struct AppendJob {
    pub data: AppendData,
    /// Wait for fsync before replying (acks=all).
    pub durable: bool,
    pub reply: oneshot::Sender<Result<AppendInfo, log_store::Error>>,
}

/// An append in the partition's queue.
pub struct PendingAppend {
    rx: oneshot::Receiver<Result<AppendInfo, log_store::Error>>,
    tp: TopicPartition,
}

impl PendingAppend {
    pub async fn wait(self) -> Result<AppendInfo, log_store::Error> {
        match self.rx.await {
            Ok(r) => r,
            Err(_) => Err(shutting_down(&self.tp)),
        }
    }
}

/// Runs until every sender of `rx` is gone (the partition was dropped) or `stop` is cancelled;
/// then appends what is already queued (later submissions are refused) and ends.
pub(super) async fn run(
    log: Arc<RwLock<Log>>,
    mut rx: mpsc::Receiver<AppendJob>,
    appended: watch::Sender<Offsets>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            job = rx.recv() => job,
            _ = stop.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_ROUND {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let log = Arc::clone(&log);
        let notify = appended.clone();
        let round = tokio::task::spawn_blocking(move || append_round(&log, jobs, &notify)).await;
        if let Err(e) = round {
            tracing::error!(error = %e, "append round panicked");
        }
    }
}

/// Appends every job, then fsyncs once if any job needs durability, then replies.
fn append_round(log: &RwLock<Log>, jobs: Vec<AppendJob>, appended: &watch::Sender<Offsets>) {
    let now = now_ms();
    let round = {
        let mut w = match log.write() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        let opts = AppendOptions {
            leader_epoch: LEADER_EPOCH,
            now_ms: now,
        };
        let results: Vec<_> = jobs
            .iter()
            .map(|j| match &j.data {
                AppendData::Records(records) => w.append(records, opts),
                AppendData::Marker {
                    producer_id,
                    producer_epoch,
                    marker,
                    coordinator_epoch,
                } => w.append_marker(
                    *producer_id,
                    *producer_epoch,
                    *marker,
                    *coordinator_epoch,
                    opts,
                ),
            })
            .collect();
        let need_sync = jobs
            .iter()
            .zip(&results)
            .any(|(j, r)| j.durable && r.is_ok())
            || w.flush_due(now);
        let offsets = Offsets::of(&w);
        let ticket = if need_sync { w.prepare_flush() } else { None };
        // Published under the lock, so publications follow the log's order.
        appended.send_modify(|o| {
            assert!(
                offsets.log_end_offset >= o.log_end_offset,
                "log end offset went back from {} to {}",
                o.log_end_offset,
                offsets.log_end_offset
            );
            *o = offsets;
        });
        (results, ticket)
    };
    // New data is readable now; fetches waiting for it need not wait for the fsync. Every
    // round signals (a marker moves the last stable offset without always moving the end).
    let (results, ticket) = round;
    let sync_error = match ticket {
        Some(t) => match t.sync() {
            Ok(()) => {
                if let Ok(mut w) = log.write() {
                    w.complete_flush(t.upto());
                }
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "fsync failed; acks=all appends in this round fail");
                Some(e.to_string())
            }
        },
        None => None,
    };
    for (job, result) in jobs.into_iter().zip(results) {
        let result = match (&sync_error, job.durable, result) {
            (Some(reason), true, Ok(_)) => Err(log_store::Error::Offline {
                path: Default::default(),
                reason: format!("fsync failed: {reason}"),
            }),
            (_, _, r) => r,
        };
        let _ = job.reply.send(result);
    }
}

impl Partition {
    /// Queues an append (waiting for room in the queue) and returns the receiver of its result,
    /// so that a request's partitions can all be queued before any is awaited.
    pub async fn submit(
        &self,
        records: Bytes,
        durable: bool,
    ) -> Result<PendingAppend, log_store::Error> {
        self.submit_data(AppendData::Records(records), durable)
            .await
    }

    /// Queues a transaction marker, written durably (the coordinator completes a transaction
    /// only once every marker is on disk).
    pub async fn submit_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: sluice_records::MarkerType,
        coordinator_epoch: i32,
    ) -> Result<PendingAppend, log_store::Error> {
        let data = AppendData::Marker {
            producer_id,
            producer_epoch,
            marker,
            coordinator_epoch,
        };
        self.submit_data(data, true).await
    }

    async fn submit_data(
        &self,
        data: AppendData,
        durable: bool,
    ) -> Result<PendingAppend, log_store::Error> {
        let appends = &self.online_state()?.appends;
        let (reply, rx) = oneshot::channel();
        appends
            .send(AppendJob {
                data,
                durable,
                reply,
            })
            .await
            .map_err(|_| shutting_down(&self.tp))?;
        Ok(PendingAppend {
            rx,
            tp: self.tp.clone(),
        })
    }
}

fn shutting_down(tp: &TopicPartition) -> log_store::Error {
    log_store::Error::Offline {
        path: tp.dir_name().into(),
        reason: "the partition is shutting down".into(),
    }
}
