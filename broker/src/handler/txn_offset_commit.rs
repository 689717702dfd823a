//! TxnOffsetCommit (v0-4): a transactional producer commits a group's offsets as part of its
//! transaction. The offsets are written to `__consumer_offsets` as a transactional batch of
//! the producer and take effect only when the commit marker follows (aborted: never). v3+
//! carries the consumer's generation and member id, checked as OffsetCommit checks them
//! (KIP-447), so a zombie consumer cannot commit.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::{sb, Ctx};
use crate::group::api::{Input, Reply};
use crate::group::records::{encode_batch_as, OffsetValue, OffsetsRecord};
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::state::now_ms;

/// The whole request's outcome: every valid partition shares it.
async fn commit(
    ctx: &Ctx<'_>,
    req: &TxnOffsetCommitRequest,
    records: Vec<OffsetsRecord>,
) -> Result<(), ResponseError> {
    let txns = ctx
        .broker
        .txns()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let groups = ctx
        .broker
        .groups()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let group_id = req.group_id.0.to_string();
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let knows_fenced = ctx.version >= 3;
    let guard = txns
        .begin_write(
            &req.transactional_id.0,
            req.producer_id.0,
            req.producer_epoch,
            knows_fenced,
        )
        .await?;
    let index = partition_for(&group_id, groups.shard_count());
    if !guard.includes(OFFSETS_TOPIC, index) {
        // AddOffsetsToTxn was not called for this group.
        return Err(ResponseError::InvalidTxnState);
    }
    if ctx.version >= 3 && req.generation_id >= 0 {
        let (member, generation) = (req.member_id.to_string(), req.generation_id);
        let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
        let id = group_id.clone();
        let refused = groups
            .query(&group_id, move |shard, _| {
                shard.check_txn_commit_member(&id, &member, instance.as_deref(), generation)
            })
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        if let Some(e) = refused {
            return Err(e);
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    let batch = encode_batch_as(
        &records,
        now_ms(),
        Some((req.producer_id.0, req.producer_epoch)),
    )
    .map_err(|e| {
        tracing::error!(error = %e, "cannot encode transactional offsets");
        ResponseError::UnknownServerError
    })?;
    let partition = ctx
        .broker
        .partition(OFFSETS_TOPIC, index)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let pending = partition
        .submit(batch, true)
        .await
        .map_err(|e| crate::error::log_error(&e))?;
    pending
        .wait()
        .await
        .map_err(|e| crate::error::log_error(&e))?;
    let pid = req.producer_id.0;
    match groups
        .shard(index)
        .map_err(|_| ResponseError::CoordinatorNotAvailable)?
        .request(move |id| Input::TxnOffsets(id, pid, records))
        .await
    {
        Ok(Reply::Done) => Ok(()),
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
    // `guard` is dropped here: the transaction may complete only after the offsets are
    // pending in the shard.
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let v = ctx.version;
    let group_id = req.group_id.0.to_string();
    let max_metadata = ctx.broker.config.group.offset_metadata_max_bytes;
    let now = now_ms();
    // Per partition: an error found now, or None (shares the request's outcome).
    let mut slots: Vec<(String, i32, Option<i16>)> = Vec::new();
    let mut records = Vec::new();
    for t in &req.topics {
        let topic = t.name.0.to_string();
        for p in &t.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let known = ctx.broker.partition(&topic, p.partition_index).is_some();
            let error = if !known {
                Some(ResponseError::UnknownTopicOrPartition.code())
            } else if metadata.len() > max_metadata {
                Some(ResponseError::OffsetMetadataTooLarge.code())
            } else {
                None
            };
            if error.is_none() {
                records.push(OffsetsRecord::Offset {
                    group: group_id.clone(),
                    topic: topic.clone(),
                    partition: p.partition_index,
                    value: Some(OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if v >= 2 { p.committed_leader_epoch } else { -1 },
                        metadata,
                        commit_timestamp_ms: now,
                    }),
                });
            }
            slots.push((topic.clone(), p.partition_index, error));
        }
    }
    let outcome = commit(ctx, &req, records)
        .await
        .err()
        .map_or(0, |e| e.code());
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, error) in slots {
        let code = error.unwrap_or(outcome);
        ctx.broker.metrics.error(ctx.api, code);
        let p = TxnOffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(TopicName(sb(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}
