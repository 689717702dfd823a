//! DescribeTransactions (v0) and ListTransactions (v0-1), from the transaction coordinator.
//! As in Kafka: describing needs DESCRIBE on the transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and shows only the partitions of topics the
//! principal may DESCRIBE; listing shows only the ids it may DESCRIBE.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as Listed;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};

use sluice_security::acl::AclOperation;

use super::{sb, Ctx};
use crate::state::now_ms;
use crate::txn::{TxnMetadata, TxnState};

fn topics(m: &TxnMetadata) -> Vec<TopicData> {
    let mut out: Vec<TopicData> = Vec::new();
    for (t, p) in &m.partitions {
        match out.last_mut() {
            Some(d) if d.topic.0.as_str() == t => d.partitions.push(*p),
            _ => out.push(
                TopicData::default()
                    .with_topic(TopicName(sb(t.clone())))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    out
}

pub(super) async fn describe(
    ctx: &Ctx<'_>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in req.transactional_ids {
        let s = TransactionState::default().with_transactional_id(id.clone());
        let found = match ctx.broker.txns() {
            _ if !ctx.authorize_transactional_id(AclOperation::Describe, &id.0) => {
                Err(ResponseError::TransactionalIdAuthorizationFailed)
            }
            Some(txns) => txns
                .describe(&id.0)
                .await
                .ok_or(ResponseError::TransactionalIdNotFound),
            None => Err(ResponseError::CoordinatorNotAvailable),
        };
        states.push(match found {
            Ok(m) => s
                .with_transaction_state(sb(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(
                    topics(&m)
                        .into_iter()
                        .filter(|t| ctx.authorize_topic(AclOperation::Describe, &t.topic.0))
                        .collect(),
                ),
            Err(e) => {
                ctx.broker.metrics.error(ctx.api, e.code());
                s.with_error_code(e.code())
                    .with_transaction_state(sb(""))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1)
            }
        });
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub(super) async fn list(ctx: &Ctx<'_>, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let Some(txns) = ctx.broker.txns() else {
        let code = ResponseError::CoordinatorNotAvailable.code();
        ctx.broker.metrics.error(ctx.api, code);
        return ListTransactionsResponse::default().with_error_code(code);
    };
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for f in &req.state_filters {
        match TxnState::from_name(f) {
            Some(s) => states.push(s),
            None => unknown.push(f.clone()),
        }
    }
    let now = now_ms();
    // v1: only transactions running longer than this (-1: any).
    let min_duration = if ctx.version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    let listed = txns
        .describe_all()
        .await
        .into_iter()
        .filter(|d| states.is_empty() || states.contains(&d.meta.state))
        .filter(|d| {
            req.producer_id_filters.is_empty()
                || req
                    .producer_id_filters
                    .iter()
                    .any(|p| p.0 == d.meta.producer_id)
        })
        .filter(|d| ctx.authorize_transactional_id(AclOperation::Describe, &d.transactional_id))
        .filter(|d| {
            min_duration < 0
                || (d.meta.start_ms >= 0 && now.saturating_sub(d.meta.start_ms) > min_duration)
        })
        .map(|d| {
            Listed::default()
                .with_transactional_id(TransactionalId(sb(d.transactional_id)))
                .with_producer_id(ProducerId(d.meta.producer_id))
                .with_transaction_state(sb(d.meta.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
