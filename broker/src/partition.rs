//! A partition: its log plus the actor that serialises appends and group-commits fsyncs.
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

/// Jobs one round may take; bounds the work between two fsyncs.
pub const MAX_JOBS_PER_ROUND: usize = 512;
/// Appends waiting per partition before producers wait for room (back-pressure).
pub const APPEND_QUEUE_DEPTH: usize = 1024;

/// The leader epoch every partition has on a single broker.
pub const LEADER_EPOCH: i32 = 0;

/// Kafka's leader-epoch check of a client's `current_leader_epoch` (-1: not checked):
/// newer than ours is UNKNOWN_LEADER_EPOCH, older is FENCED_LEADER_EPOCH.
pub fn check_leader_epoch(requested: i32) -> Option<kafka_protocol::error::ResponseError> {
    use kafka_protocol::error::ResponseError;
    match requested.cmp(&LEADER_EPOCH) {
        std::cmp::Ordering::Greater => Some(ResponseError::UnknownLeaderEpoch),
        std::cmp::Ordering::Less if requested >= 0 => Some(ResponseError::FencedLeaderEpoch),
        _ => None,
    }
}

/// What an append writes.
pub enum AppendData {
    /// A produce request's record batches, stored as received.
    Records(Bytes),
    /// A transaction marker written by the transaction coordinator (Kafka's WriteTxnMarkers).
    Marker {
        producer_id: i64,
        producer_epoch: i16,
        marker: log_store::MarkerType,
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

/// A partition that is online (its log opened) or offline (it could not be recovered).
pub struct Partition {
    pub tp: TopicPartition,
    state: State,
}

enum State {
    Online {
        /// Held for bookkeeping only: appends, read-region lookups, retention passes.
        /// Never held across an fsync or while record bytes are read.
        log: Arc<RwLock<Log>>,
        appends: mpsc::Sender<AppendJob>,
    },
    Offline(String),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Partition {
    /// Wraps an opened log and starts its append actor. `appended` is bumped after each round
    /// so waiting fetches re-check.
    pub fn online(tp: TopicPartition, log: Log, appended: Arc<watch::Sender<u64>>) -> Arc<Self> {
        let log = Arc::new(RwLock::new(log));
        let (tx, rx) = mpsc::channel(APPEND_QUEUE_DEPTH);
        tokio::spawn(run_actor(Arc::clone(&log), rx, appended));
        Arc::new(Partition {
            tp,
            state: State::Online { log, appends: tx },
        })
    }

    pub fn offline(tp: TopicPartition, reason: String) -> Arc<Self> {
        Arc::new(Partition {
            tp,
            state: State::Offline(reason),
        })
    }

    /// The log, or why the partition is offline.
    pub fn log(&self) -> Result<&Arc<RwLock<Log>>, &str> {
        match &self.state {
            State::Online { log, .. } => Ok(log),
            State::Offline(reason) => Err(reason),
        }
    }

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
        marker: log_store::MarkerType,
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
        let State::Online { appends, .. } = &self.state else {
            return Err(self.offline_error());
        };
        let (reply, rx) = oneshot::channel();
        appends
            .send(AppendJob {
                data,
                durable,
                reply,
            })
            .await
            .map_err(|_| self.shutting_down())?;
        Ok(PendingAppend {
            rx,
            tp: self.tp.clone(),
        })
    }

    fn shutting_down(&self) -> log_store::Error {
        log_store::Error::Offline {
            path: self.tp.dir_name().into(),
            reason: "the partition is shutting down".into(),
        }
    }

    fn offline_error(&self) -> log_store::Error {
        match &self.state {
            State::Offline(reason) => log_store::Error::Offline {
                path: self.tp.dir_name().into(),
                reason: reason.clone(),
            },
            State::Online { .. } => unreachable!("only called for offline partitions"),
        }
    }
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
            Err(_) => Err(log_store::Error::Offline {
                path: self.tp.dir_name().into(),
                reason: "the partition is shutting down".into(),
            }),
        }
    }
}

async fn run_actor(
    log: Arc<RwLock<Log>>,
    mut rx: mpsc::Receiver<AppendJob>,
    appended: Arc<watch::Sender<u64>>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_ROUND {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let log = Arc::clone(&log);
        let notify = Arc::clone(&appended);
        let round = tokio::task::spawn_blocking(move || append_round(&log, jobs, &notify)).await;
        if let Err(e) = round {
            tracing::error!(error = %e, "append round panicked");
        }
    }
}

/// Appends every job, then fsyncs once if any job needs durability, then replies.
fn append_round(log: &RwLock<Log>, jobs: Vec<AppendJob>, appended: &watch::Sender<u64>) {
    let now = now_ms();
    let (results, ticket) = {
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
        (results, if need_sync { w.prepare_flush() } else { None })
    };
    // New data is readable now; fetches waiting for it need not wait for the fsync.
    appended.send_modify(|n| *n = n.wrapping_add(1));
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
