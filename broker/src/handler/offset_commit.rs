//! OffsetCommit (v2-9): a member's commit is fenced by generation; offsets are stored durably
//! in `__consumer_offsets` (fsync) before the answer. Partitions of unknown topics get
//! UNKNOWN_TOPIC_OR_PARTITION, as in Kafka.
//!
//! Authorization (Kafka's `handleOffsetCommitRequest`): READ on the group (else every
//! partition gets GROUP_AUTHORIZATION_FAILED), then READ on each topic
//! (TOPIC_AUTHORIZATION_FAILED, before its existence is checked).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};

use sluice_security::acl::{AclOperation, ResourceType};

use super::group_call::{group_request, mismatched};
use super::{sb, Ctx};
use crate::group::api::{CommitPartition, CommitRequest, Input, Reply};

pub(super) async fn handle(ctx: &Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let v = ctx.version;
    let group_id = req.group_id.0.to_string();
    // Every partition in request order: its error if known now, else its index in `sent`.
    let mut slots: Vec<(String, i32, Result<usize, i16>)> = Vec::new();
    let mut sent = Vec::new();
    let group_allowed = ctx.authorize_group(AclOperation::Read, &group_id);
    let mut may_read = ctx.authorizer_cache(AclOperation::Read, ResourceType::Topic);
    for t in req.topics {
        let topic = t.name.0.to_string();
        for p in t.partitions {
            let refused = if !group_allowed {
                Some(ResponseError::GroupAuthorizationFailed)
            } else if !may_read.allows(&topic) {
                Some(ResponseError::TopicAuthorizationFailed)
            } else {
                None
            };
            if let Some(e) = refused {
                slots.push((topic.clone(), p.partition_index, Err(e.code())));
                continue;
            }
            if ctx.broker.partition(&topic, p.partition_index).is_none() {
                let code = ResponseError::UnknownTopicOrPartition.code();
                slots.push((topic.clone(), p.partition_index, Err(code)));
                continue;
            }
            slots.push((topic.clone(), p.partition_index, Ok(sent.len())));
            sent.push(CommitPartition {
                topic: topic.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p
                    .committed_metadata
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    let codes: Vec<i16> = if sent.is_empty() {
        Vec::new()
    } else {
        let count = sent.len();
        let commit = CommitRequest {
            group_id: group_id.clone(),
            generation_id: req.generation_id_or_member_epoch,
            member_id: req.member_id.to_string(),
            group_instance_id: if v >= 7 {
                req.group_instance_id.map(|i| i.to_string())
            } else {
                None
            },
            api_version: v,
            partitions: sent,
        };
        match group_request(ctx, &group_id, move |id| Input::Commit(id, commit)).await {
            Ok(Reply::Commit(results)) if results.len() == count => {
                results.into_iter().map(|(_, _, code)| code).collect()
            }
            Ok(_) => vec![mismatched(ctx.api).code(); count],
            Err(e) => vec![e.code(); count],
        }
    };
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, slot) in slots {
        let code = match slot {
            Ok(i) => codes.get(i).copied().unwrap_or(0),
            Err(code) => code,
        };
        ctx.broker.metrics.error(ctx.api, code);
        let p = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(sb(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}
