//! [`GroupCoordinator`]: the broker's handle on every coordinator shard. It routes a group to
//! its shard, creates `__consumer_offsets` on first use, and at start-up loads each shard by
//! replaying its partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::actor::{ShardHandle, Unavailable};
use super::api::{Input, Reply, ReplyId};
use super::shard::GroupShard;
use super::{load, partition_for, OFFSETS_TOPIC};
use crate::partition::internal_topic::InternalTopic;
use crate::state::{now_ms, Broker};

pub struct GroupCoordinator {
    /// One per offsets-topic partition; `Err` holds why that shard could not be loaded.
    shards: Vec<Result<ShardHandle, String>>,
    /// `__consumer_offsets`, created on first use; the shards append through it.
    offsets: Arc<InternalTopic>,
}

impl GroupCoordinator {
    /// Loads every shard from the offsets topic if it exists (its partition count wins over
    /// `offsets.topic.num.partitions`), and starts the shards' tasks. Blocking: call it where
    /// blocking is allowed, inside the runtime.
    pub fn open(broker: &Arc<Broker>) -> GroupCoordinator {
        let config = broker.config.group.clone();
        let now = now_ms();
        let topic = broker.topic(OFFSETS_TOPIC);
        let count = topic
            .as_ref()
            .map_or(config.offsets_topic_num_partitions, |t| t.meta.partitions);
        let offsets = Arc::new(InternalTopic::new(
            Arc::clone(broker.registry()),
            OFFSETS_TOPIC,
            count,
            config.offsets_topic_segment_bytes,
        ));
        let mut shards = Vec::with_capacity(count.max(0) as usize);
        for index in 0..count {
            let groups = match topic
                .as_ref()
                .and_then(|t| t.partitions.get(index as usize))
            {
                None => Ok((BTreeMap::new(), BTreeMap::new())),
                Some(p) => match p.offline_reason() {
                    Some(reason) => Err(format!("offsets partition {index} is offline: {reason}")),
                    None => match load::replay(p) {
                        Ok(mut replay) => {
                            let pending = std::mem::take(&mut replay.pending_txn);
                            if replay.records > 0 {
                                tracing::info!(
                                    shard = index,
                                    records = replay.records,
                                    bad_records = replay.bad_records,
                                    "loaded consumer groups"
                                );
                            }
                            Ok((
                                replay.into_groups(
                                    now,
                                    i64::from(config.consumer_session_timeout_ms),
                                ),
                                pending,
                            ))
                        }
                        Err(e) => Err(format!("cannot read offsets partition {index}: {e}")),
                    },
                },
            };
            shards.push(groups.map(|(groups, pending)| {
                let mut shard = GroupShard::with_groups(config.clone(), groups, now);
                shard.pending_txn = pending.into_iter().collect();
                ShardHandle::spawn(index, shard, Arc::clone(&offsets), &broker.actors)
            }));
            if let Some(Err(e)) = shards.last() {
                tracing::error!(shard = index, error = %e, "group coordinator shard unavailable");
            }
        }
        GroupCoordinator { shards, offsets }
    }

    pub fn shard_count(&self) -> i32 {
        self.shards.len() as i32
    }

    /// The shard of `group_id`.
    pub fn shard_for(&self, group_id: &str) -> Result<&ShardHandle, Unavailable> {
        let index = partition_for(group_id, self.shard_count());
        match self.shards.get(index as usize) {
            Some(Ok(s)) => Ok(s),
            _ => Err(Unavailable),
        }
    }

    /// The shard of offsets-topic partition `index`.
    pub fn shard(&self, index: i32) -> Result<&ShardHandle, Unavailable> {
        match self.shards.get(index as usize) {
            Some(Ok(s)) => Ok(s),
            _ => Err(Unavailable),
        }
    }

    /// A transaction marker of `producer_id` is durable in offsets partition `index`: its
    /// TxnOffsetCommit offsets take effect (commit) or are dropped.
    pub async fn txn_marker(
        &self,
        index: i32,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), Unavailable> {
        self.shard(index)?
            .request(move |id| Input::TxnMarker(id, producer_id, commit))
            .await
            .map(|_| ())
    }

    /// Every shard that is serving.
    pub fn shards(&self) -> impl Iterator<Item = &ShardHandle> {
        self.shards.iter().filter_map(|s| s.as_ref().ok())
    }

    /// Steps a request on `group_id`'s shard and waits for the reply.
    pub async fn request(
        &self,
        group_id: &str,
        input: impl FnOnce(ReplyId) -> Input + Send + 'static,
    ) -> Result<Reply, Unavailable> {
        self.shard_for(group_id)?.request(input).await
    }

    /// Reads `group_id`'s shard.
    pub async fn query<T: Send + 'static>(
        &self,
        group_id: &str,
        f: impl FnOnce(&GroupShard, i64) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        self.shard_for(group_id)?.query(f).await
    }

    /// Reads every serving shard.
    pub async fn query_all<T: Send + 'static>(
        &self,
        f: impl Fn(&GroupShard, i64) -> T + Send + Clone + 'static,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(self.shards.len());
        for s in self.shards() {
            if let Ok(v) = s.query(f.clone()).await {
                out.push(v);
            }
        }
        out
    }

    /// Creates `__consumer_offsets` (compacted, one partition per shard) unless it exists.
    pub async fn ensure_topic(&self) -> Result<(), ResponseError> {
        self.offsets.ensure().await
    }
}
