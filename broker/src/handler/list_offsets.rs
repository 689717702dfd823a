//! ListOffsets (v1-v8): earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), by
//! time. With isolation_level=read_committed (v2+), latest is the last stable offset and no
//! offset at or past it is returned, as Kafka does. Each topic needs DESCRIBE
//! (TOPIC_AUTHORIZATION_FAILED otherwise).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use log_store::OffsetSpec;
use sluice_security::acl::AclOperation;

use super::Ctx;
use crate::error::log_error_code;
use crate::partition::{check_leader_epoch, LEADER_EPOCH};

fn spec(timestamp: i64) -> Option<OffsetSpec> {
    Some(match timestamp {
        -1 => OffsetSpec::Latest,
        -2 | -4 => OffsetSpec::Earliest,
        -3 => OffsetSpec::MaxTimestamp,
        t if t >= 0 => OffsetSpec::Timestamp(t),
        _ => return None,
    })
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let broker = std::sync::Arc::clone(ctx.broker);
    let version = ctx.version;
    let read_committed = version >= 2 && req.isolation_level == 1;
    let allowed: Vec<bool> = req
        .topics
        .iter()
        .map(|t| ctx.authorize_topic(AclOperation::Describe, &t.name.0))
        .collect();
    let topics = tokio::task::spawn_blocking(move || {
        req.topics
            .into_iter()
            .zip(allowed)
            .map(|(t, allowed)| {
                let name = t.name.0.to_string();
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let resp = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(-1);
                        if !allowed {
                            return resp
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                        }
                        let Some(partition) = broker.partition(&name, p.partition_index) else {
                            return resp
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        if let Some(e) = check_leader_epoch(p.current_leader_epoch) {
                            return resp.with_error_code(e.code());
                        }
                        let Some(spec) = spec(p.timestamp) else {
                            return resp.with_error_code(ResponseError::InvalidRequest.code());
                        };
                        if p.timestamp == -3 && version < 7 {
                            return resp.with_error_code(ResponseError::UnsupportedVersion.code());
                        }
                        let found = partition.lookup_offset(spec, read_committed);
                        match found {
                            Ok(Some((offset, ts))) => resp
                                .with_offset(offset)
                                .with_timestamp(ts)
                                .with_leader_epoch(if version >= 4 { LEADER_EPOCH } else { -1 }),
                            Ok(None) => resp,
                            Err(e) => resp.with_error_code(log_error_code(&e)),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for t in &topics {
        for p in &t.partitions {
            ctx.broker.metrics.error(ctx.api, p.error_code);
        }
    }
    ListOffsetsResponse::default().with_topics(topics)
}
