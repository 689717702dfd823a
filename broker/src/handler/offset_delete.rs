//! OffsetDelete (v0): deletes a group's committed offsets, except of topics its members are
//! subscribed to (GROUP_SUBSCRIBED_TO_TOPIC).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};

use super::group_call::{group_request, mismatched};
use super::{sb, Ctx};
use crate::group::api::{self, Input, Reply};

pub(super) async fn handle(ctx: &Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.to_string();
    let mut slots: Vec<(String, i32, Option<i16>)> = Vec::new();
    let mut sent = Vec::new();
    for t in req.topics {
        let topic = t.name.0.to_string();
        for p in t.partitions {
            if ctx.broker.partition(&topic, p.partition_index).is_none() {
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
