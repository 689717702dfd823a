//! A partition: the only code that touches a partition's [`Log`].
//!
//! [`Partition`] owns the log's lock protocol: every read, offset lookup, retention pass and
//! append goes through its methods, which take the lock for bookkeeping only and never across
//! an fsync, an `.await` or the read of record bytes. Handlers and coordinators never see the
//! `RwLock<Log>`.
//!
//! - [`actor`]: the append actor (group commit: one fsync per round of appends).
//! - [`read`]: fetch reads, offset lookups and the replay of a partition's committed log.
//! - [`maintenance`]: retention, scheduled flushes, checkpoints, compaction, clean close.
//! - [`registry`]: every topic's partitions; creates, deletes and reconfigures topics.
//! - [`internal_topic`]: a coordinator's own topic, created on first use: its narrow handle.
//!
//! Each partition has its own append signal ([`Partition::subscribe`]): a long-polling fetch or
//! a transform task waits on the partitions it reads, so an append wakes only them.

pub mod actor;
pub mod internal_topic;
mod maintenance;
mod read;
pub mod registry;
mod signal;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use log_store::{Log, ProducerEntry, TopicPartition};
use tokio::sync::{mpsc, watch};

use crate::actors::Actors;

pub use actor::{AppendData, AppendJob, PendingAppend, APPEND_QUEUE_DEPTH, MAX_JOBS_PER_ROUND};
pub use read::{Committed, Offsets, ReadResult, ReadSpec};
pub use signal::AppendWatch;

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

/// A partition that is online (its log opened) or offline (it could not be recovered).
pub struct Partition {
    pub tp: TopicPartition,
    state: State,
}

enum State {
    Online(Online),
    Offline(String),
}

struct Online {
    /// Held for bookkeeping only: appends, read-region lookups, retention passes.
    /// Never held across an fsync or while record bytes are read.
    log: Arc<RwLock<Log>>,
    /// The append actor's queue; dropping the last sender ends the actor.
    appends: mpsc::Sender<AppendJob>,
    /// The partition's offsets, published by the actor after each append round and by
    /// retention and DeleteRecords when they move the log start. Waiting fetches and transform
    /// tasks of this partition re-check on a change; an idle long poll answers from it without
    /// taking the log's lock.
    appended: watch::Sender<Offsets>,
}

impl Partition {
    /// Wraps an opened log and starts its append actor on `actors`, which the broker stops and
    /// joins at shutdown.
    pub fn online(tp: TopicPartition, log: Log, actors: &Actors) -> Arc<Self> {
        let (appended, _) = watch::channel(Offsets::of(&log));
        let log = Arc::new(RwLock::new(log));
        let (tx, rx) = mpsc::channel(APPEND_QUEUE_DEPTH);
        actors.spawn(actor::run(
            Arc::clone(&log),
            rx,
            appended.clone(),
            actors.stop_token(),
        ));
        Arc::new(Partition {
            tp,
            state: State::Online(Online {
                log,
                appends: tx,
                appended,
            }),
        })
    }

    pub fn offline(tp: TopicPartition, reason: String) -> Arc<Self> {
        Arc::new(Partition {
            tp,
            state: State::Offline(reason),
        })
    }

    /// Why the partition is offline, or `None` when it serves.
    pub fn offline_reason(&self) -> Option<&str> {
        match &self.state {
            State::Online(_) => None,
            State::Offline(reason) => Some(reason),
        }
    }

    pub fn is_online(&self) -> bool {
        self.offline_reason().is_none()
    }

    /// A receiver of the partition's offsets, which change after every append round.
    pub fn subscribe(&self) -> Option<watch::Receiver<Offsets>> {
        match &self.state {
            State::Online(o) => Some(o.appended.subscribe()),
            State::Offline(_) => None,
        }
    }

    /// What DescribeProducers shows: every producer id the log tracks, sorted.
    pub fn producer_states(&self) -> Result<Vec<(i64, ProducerEntry)>, log_store::Error> {
        let log = self.read_lock()?;
        let mut v: Vec<_> = log.producer_state().iter().map(|(p, e)| (p, *e)).collect();
        v.sort_by_key(|(p, _)| *p);
        Ok(v)
    }

    /// DeleteRecords: moves the log start offset up to `offset`; the new low watermark.
    pub fn delete_records(&self, offset: i64, now_ms: i64) -> Result<i64, log_store::Error> {
        let mut log = self.write_lock()?;
        let low = log.delete_records(offset, now_ms)?;
        self.publish(&log);
        Ok(low)
    }

    /// Publishes the log's offsets to the append signal (call with the lock held, so that
    /// publications are in the log's order).
    fn publish(&self, log: &Log) {
        if let State::Online(o) = &self.state {
            let offsets = Offsets::of(log);
            o.appended.send_if_modified(|old| {
                let changed = *old != offsets;
                *old = offsets;
                changed
            });
        }
    }

    /// Applies a topic's new effective config.
    pub fn set_config(&self, config: log_store::LogConfig) {
        if let Ok(mut log) = self.write_lock() {
            log.set_config(config);
        }
    }

    fn online_state(&self) -> Result<&Online, log_store::Error> {
        match &self.state {
            State::Online(o) => Ok(o),
            State::Offline(reason) => Err(log_store::Error::Offline {
                path: self.tp.dir_name().into(),
                reason: reason.clone(),
            }),
        }
    }

    /// The read lock; a poisoned lock is taken as is (the log checks its own invariants).
    fn read_lock(&self) -> Result<RwLockReadGuard<'_, Log>, log_store::Error> {
        let o = self.online_state()?;
        Ok(o.log.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn write_lock(&self) -> Result<RwLockWriteGuard<'_, Log>, log_store::Error> {
        let o = self.online_state()?;
        Ok(o.log.write().unwrap_or_else(|p| p.into_inner()))
    }
}
