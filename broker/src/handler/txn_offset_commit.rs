//! TxnOffsetCommit (v0-4): a transactional producer commits a group's offsets as part of its
//! transaction. The offsets are written to `__consumer_offsets` as a transactional batch of
//! the producer and take effect only when the commit marker follows (aborted: never). v3+
//! carries the consumer's generation and member id, checked as OffsetCommit checks them
//! (KIP-447), so a zombie consumer cannot commit.
//!
//! Authorization (Kafka's `handleTxnOffsetCommitRequest`): WRITE on the transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition), READ on the group
//! (GROUP_AUTHORIZATION_FAILED likewise), then READ on each topic (TOPIC_AUTHORIZATION_FAILED,
//! before its existence is checked).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use sluice_security::acl::{AclOperation, ResourceType};

use super::{sb, Ctx};
use crate::group::records::{OffsetValue, OffsetsRecord};
use crate::state::now_ms;

/// The whole request's outcome: every valid partition shares it.
async fn commit(
    ctx: &Ctx<'_>,
    req: &TxnOffsetCommitRequest,
    records: Vec<OffsetsRecord>,
) -> Result<(), ResponseError> {
    let member =
        (ctx.version >= 3 && req.generation_id >= 0).then(|| crate::txn::offsets::Member {
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
            generation_id: req.generation_id,
        });
    crate::txn::offsets::commit(
        ctx.broker,
        &req.transactional_id.0,
        (req.producer_id.0, req.producer_epoch),
        &req.group_id.0,
        member,
        records,
        ctx.version >= 3,
    )
    .await
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let v = ctx.version;
    let group_id = req.group_id.0.to_string();
    let max_metadata = ctx.broker.config.group.offset_metadata_max_bytes;
    let now = now_ms();
    // Per partition: an error found now, or None (shares the request's outcome).
    let mut slots: Vec<(String, i32, Option<i16>)> = Vec::new();
    let mut records = Vec::new();
    let refused = if !ctx.authorize_transactional_id(AclOperation::Write, &req.transactional_id.0) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.authorize_group(AclOperation::Read, &group_id) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    let mut may_read = ctx.authorizer_cache(AclOperation::Read, ResourceType::Topic);
    for t in &req.topics {
        let topic = t.name.0.to_string();
        for p in &t.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let known = ctx.broker.partition(&topic, p.partition_index).is_some();
            let error = if let Some(e) = refused {
                Some(e.code())
            } else if !may_read.allows(&topic) {
                Some(ResponseError::TopicAuthorizationFailed.code())
            } else if !known {
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
    let outcome = if refused.is_some() {
        0
    } else {
        commit(ctx, &req, records)
            .await
            .err()
            .map_or(0, |e| e.code())
    };
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
