//! DeleteRecords (v0-v2): advance log start offsets. Each topic needs DELETE
//! (TOPIC_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use sluice_security::acl::AclOperation;

use super::Ctx;
use crate::error::log_error_code;
use crate::state::now_ms;

pub(super) async fn handle(ctx: &Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let broker = std::sync::Arc::clone(ctx.broker);
    let allowed: Vec<bool> = req
        .topics
        .iter()
        .map(|t| ctx.authorize_topic(AclOperation::Delete, &t.name.0))
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
                        let r = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        if !allowed {
                            return r
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                        }
                        let Some(partition) = broker.partition(&name, p.partition_index) else {
                            return r
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        if !partition.is_online() {
                            return r.with_error_code(ResponseError::KafkaStorageError.code());
                        }
                        match partition.delete_records(p.offset, now_ms()) {
                            Ok(low) => r.with_low_watermark(low),
                            Err(e) => r.with_error_code(log_error_code(&e)),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
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
    DeleteRecordsResponse::default().with_topics(topics)
}
