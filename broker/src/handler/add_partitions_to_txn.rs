//! AddPartitionsToTxn (v0-5): v0-3 come from producers (one transaction); v4+ carry a batch of
//! transactions and a `verify_only` flag (Kafka's brokers send those to check a partition is
//! in a transaction before appending). Partitions of unknown topics fail the request:
//! UNKNOWN_TOPIC_OR_PARTITION for them, OPERATION_NOT_ATTEMPTED for the rest, as Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName, TransactionalId,
};

use super::{sb, Ctx};

fn flatten(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect()
}

fn results(
    parts: &[(String, i32)],
    code: impl Fn(usize) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (i, (topic, p)) in parts.iter().enumerate() {
        let r = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(*p)
            .with_partition_error_code(code(i));
        match out.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.results_by_partition.push(r),
            _ => out.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(sb(topic.clone())))
                    .with_results_by_partition(vec![r]),
            ),
        }
    }
    out
}

/// One transaction's partitions: per-partition error codes.
async fn add(
    ctx: &Ctx<'_>,
    id: &str,
    producer_id: i64,
    epoch: i16,
    parts: &[(String, i32)],
    verify_only: bool,
) -> Vec<i16> {
    let Some(txns) = ctx.broker.txns() else {
        return vec![ResponseError::CoordinatorNotAvailable.code(); parts.len()];
    };
    let unknown: Vec<bool> = parts
        .iter()
        .map(|(t, p)| ctx.broker.partition(t, *p).is_none())
        .collect();
    if unknown.iter().any(|u| *u) {
        return unknown
            .iter()
            .map(|u| {
                if *u {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    ResponseError::OperationNotAttempted.code()
                }
            })
            .collect();
    }
    if verify_only {
        return match txns.verify_partitions(id, producer_id, epoch, parts).await {
            Ok(found) => found
                .into_iter()
                .map(|ok| {
                    if ok {
                        0
                    } else {
                        ResponseError::InvalidTxnState.code()
                    }
                })
                .collect(),
            Err(e) => vec![e.code(); parts.len()],
        };
    }
    match txns
        .add_partitions(ctx.broker, id, producer_id, epoch, parts, ctx.version >= 2)
        .await
    {
        Ok(()) => vec![0; parts.len()],
        Err(e) => vec![e.code(); parts.len()],
    }
}

pub(super) async fn handle(
    ctx: &Ctx<'_>,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version >= 4 {
        let mut out = Vec::with_capacity(req.transactions.len());
        for t in req.transactions {
            let parts = flatten(&t.topics);
            let id = t.transactional_id.0.to_string();
            let codes = add(
                ctx,
                &id,
                t.producer_id.0,
                t.producer_epoch,
                &parts,
                t.verify_only,
            )
            .await;
            for c in &codes {
                ctx.broker.metrics.error(ctx.api, *c);
            }
            out.push(
                AddPartitionsToTxnResult::default()
                    .with_transactional_id(TransactionalId(sb(id)))
                    .with_topic_results(results(&parts, |i| codes[i])),
            );
        }
        return AddPartitionsToTxnResponse::default().with_results_by_transaction(out);
    }
    let parts = flatten(&req.v3_and_below_topics);
    let id = req.v3_and_below_transactional_id.0.to_string();
    let codes = add(
        ctx,
        &id,
        req.v3_and_below_producer_id.0,
        req.v3_and_below_producer_epoch,
        &parts,
        false,
    )
    .await;
    for c in &codes {
        ctx.broker.metrics.error(ctx.api, *c);
    }
    AddPartitionsToTxnResponse::default()
        .with_results_by_topic_v3_and_below(results(&parts, |i| codes[i]))
}
