//! DescribeProducers (v0): the active producers of partitions, from each log's producer
//! state: epoch, last sequence and timestamp, coordinator epoch, and the first offset of the
//! producer's ongoing transaction (-1: none). Each topic needs READ
//! (TOPIC_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use sluice_security::acl::AclOperation;

use super::{sb, Ctx};

fn partition(ctx: &Ctx<'_>, topic: &str, index: i32) -> PartitionResponse {
    let r = PartitionResponse::default().with_partition_index(index);
    let Some(p) = ctx.broker.partition(topic, index) else {
        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    let states = match p.producer_states() {
        Ok(states) => states,
        Err(e) => {
            return r
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_error_message(Some(sb(e.to_string())))
        }
    };
    let producers: Vec<ProducerState> = states
        .into_iter()
        .map(|(pid, e)| {
            ProducerState::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(i32::from(e.epoch))
                .with_last_sequence(e.last_sequence())
                .with_last_timestamp(e.last_timestamp)
                .with_coordinator_epoch(e.coordinator_epoch())
                .with_current_txn_start_offset(e.current_txn_first_offset().unwrap_or(-1))
        })
        .collect();
    r.with_active_producers(producers)
}

pub(super) fn handle(ctx: &Ctx<'_>, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let allowed = ctx.authorize_topic(AclOperation::Read, &t.name.0);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|i| {
                    let r = if allowed {
                        partition(ctx, &t.name.0, *i)
                    } else {
                        PartitionResponse::default()
                            .with_partition_index(*i)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    };
                    ctx.broker.metrics.error(ctx.api, r.error_code);
                    r
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
