//! AddPartitionsToTxn (v0-5): v0-3 come from producers (one transaction); v4+ carry a batch of
//! transactions and a `verify_only` flag (Kafka's brokers send those to check a partition is
//! in a transaction before appending). Partitions of unknown topics fail the request:
//! UNKNOWN_TOPIC_OR_PARTITION for them, OPERATION_NOT_ATTEMPTED for the rest, as Kafka.
//!
//! Authorization (Kafka's `handleAddPartitionsToTxnRequest`): v0-3 need WRITE on the
//! transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition) and WRITE on
//! each topic (TOPIC_AUTHORIZATION_FAILED; internal topics are always refused then), failing
//! the transaction as unknown partitions do; v4+ are broker-to-broker and need CLUSTER_ACTION
//! on the cluster (top-level CLUSTER_AUTHORIZATION_FAILED).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName, TransactionalId,
};

use sluice_security::acl::{AclOperation, ResourceType};

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
    // v4+ (from brokers) was authorized as a whole by the caller.
    if ctx.version < 4 && !ctx.authorize_transactional_id(AclOperation::Write, id) {
        return vec![ResponseError::TransactionalIdAuthorizationFailed.code(); parts.len()];
    }
    let Some(txns) = ctx.broker.txns() else {
        return vec![ResponseError::CoordinatorNotAvailable.code(); parts.len()];
    };
    let mut may_write = ctx.authorizer_cache(AclOperation::Write, ResourceType::Topic);
    let internal = |t: &str| {
        ctx.broker.security.authorizer_enabled
            && (t == crate::group::OFFSETS_TOPIC || t == crate::txn::TRANSACTION_STATE_TOPIC)
    };
    let failed: Vec<Option<ResponseError>> = parts
        .iter()
        .map(|(t, p)| {
            if ctx.version < 4 && (internal(t) || !may_write.allows(t)) {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if ctx.broker.partition(t, *p).is_none() {
                Some(ResponseError::UnknownTopicOrPartition)
            } else {
                None
            }
        })
        .collect();
    if failed.iter().any(Option::is_some) {
        return failed
            .iter()
            .map(|f| f.unwrap_or(ResponseError::OperationNotAttempted).code())
            .collect();
    }
    if verify_only {
        return match txns
            .verify_partitions(id, (producer_id, epoch), parts)
            .await
        {
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
        .add_partitions(id, (producer_id, epoch), parts, ctx.version >= 2)
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
        if !ctx.authorize_cluster(AclOperation::ClusterAction) {
            let code = ResponseError::ClusterAuthorizationFailed.code();
            ctx.broker.metrics.error(ctx.api, code);
            return AddPartitionsToTxnResponse::default().with_error_code(code);
        }
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
