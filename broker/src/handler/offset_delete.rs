//! OffsetDelete (v0): deletes a group's committed offsets, except of topics its members are
//! subscribed to (GROUP_SUBSCRIBED_TO_TOPIC). Needs DELETE on the group
//! (GROUP_AUTHORIZATION_FAILED) and READ on each topic (TOPIC_AUTHORIZATION_FAILED), as in
//! Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};

use sluice_security::acl::{AclOperation, ResourceType};

use super::group_call::{group_request, mismatched};
use super::{sb, Ctx};
use crate::group::api::{self, Input, Reply};

pub(super) async fn handle(ctx: &Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.to_string();
    if !ctx.authorize_group(AclOperation::Delete, &group_id) {
        let e = ResponseError::GroupAuthorizationFailed.code();
        ctx.broker.metrics.error(ctx.api, e);
        return OffsetDeleteResponse::default().with_error_code(e);
    }
    let mut may_read = ctx.authorizer_cache(AclOperation::Read, ResourceType::Topic);
    let mut slots: Vec<(String, i32, Option<i16>)> = Vec::new();
    let mut sent = Vec::new();
    for t in req.topics {
        let topic = t.name.0.to_string();
        for p in t.partitions {
            if !may_read.allows(&topic) {
                let code = ResponseError::TopicAuthorizationFailed.code();
                slots.push((topic.clone(), p.partition_index, Some(code)));
            } else if ctx.broker.partition(&topic, p.partition_index).is_none() {
                let code = ResponseError::UnknownTopicOrPartition.code();
                slots.push((topic.clone(), p.partition_index, Some(code)));
            } else {
                slots.push((topic.clone(), p.partition_index, None));
                sent.push((topic.clone(), p.partition_index));
            }
        }
    }
    let request = api::OffsetDeleteRequest {
        group_id: group_id.clone(),
        partitions: sent,
    };
    let r = match group_request(ctx, &group_id, move |id| Input::DeleteOffsets(id, request)).await {
        Ok(Reply::DeleteOffsets(r)) => r,
        Ok(_) => api::OffsetDeleteResponse {
            error: mismatched(ctx.api).code(),
            partitions: Vec::new(),
        },
        Err(e) => api::OffsetDeleteResponse {
            error: e.code(),
            partitions: Vec::new(),
        },
    };
    ctx.broker.metrics.error(ctx.api, r.error);
    if r.error != 0 {
        return OffsetDeleteResponse::default().with_error_code(r.error);
    }
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (topic, partition, known) in slots {
        let code = known.unwrap_or_else(|| {
            r.partitions
                .iter()
                .find(|(t, p, _)| *t == topic && *p == partition)
                .map_or(0, |(_, _, c)| *c)
        });
        ctx.broker.metrics.error(ctx.api, code);
        let p = OffsetDeleteResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(TopicName(sb(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
