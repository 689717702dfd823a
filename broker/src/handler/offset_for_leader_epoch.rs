//! OffsetForLeaderEpoch (v2-v4): the end offset of a leader epoch, for clients' truncation
//! detection (KIP-320). CLUSTER_ACTION on the cluster (a replica) or DESCRIBE on the topic
//! (a consumer) is needed, as in Kafka; TOPIC_AUTHORIZATION_FAILED otherwise.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use sluice_security::acl::AclOperation;

use super::Ctx;
use crate::partition::check_leader_epoch;

pub(super) fn handle(
    ctx: &Ctx<'_>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let replica = ctx.authorize_cluster(AclOperation::ClusterAction);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let allowed = replica || ctx.authorize_topic(AclOperation::Describe, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let code = |e: ResponseError| {
                        ctx.broker.metrics.error(ctx.api, e.code());
                        e.code()
                    };
                    if !allowed {
                        return r.with_error_code(code(ResponseError::TopicAuthorizationFailed));
                    }
                    let Some(partition) = ctx.broker.partition(&name, p.partition) else {
                        return r.with_error_code(code(ResponseError::UnknownTopicOrPartition));
                    };
                    if let Some(e) = check_leader_epoch(p.current_leader_epoch) {
                        return r.with_error_code(code(e));
                    }
                    let Ok(found) = partition.end_offset_for_epoch(p.leader_epoch) else {
                        return r.with_error_code(code(ResponseError::KafkaStorageError));
                    };
                    match found {
                        Some((epoch, end)) => r.with_leader_epoch(epoch).with_end_offset(end),
                        None => r,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
