//! Produce (v3-v11): acks 0/1/all, per-partition errors, batches validated by the log and stored
//! as received. A transactional batch is accepted only for a partition of its producer's
//! ongoing transaction (the check Kafka 3.6+ does with `transaction.partition.verification`).
//!
//! Authorization (Kafka's `handleProduceRequest`): a request with transactional batches needs
//! WRITE on its transactional id (else every partition gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
//! each topic needs WRITE (TOPIC_AUTHORIZATION_FAILED), checked before the topic's existence.
//! Idempotent produce needs nothing more: WRITE on the topic implies it since KIP-679.
//!
//! Quotas (KIP-13, KIP-219): once the request is handled, its record bytes are recorded on the
//! client's `producer_byte_rate` sensor; over quota, the response carries the throttle time
//! and the connection mutes for it (acks=0 included, which gets no response).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

use sluice_security::acl::{AclOperation, ResourceType};
use sluice_security::quota::QuotaType;

use super::Ctx;
use crate::error::log_error_code;
use crate::partition::{Partition, PendingAppend};
use crate::txn::write::{TxnWrite, WriteError};

/// The header of the first batch when it is a transactional data batch (a request carries
/// one batch per partition since Produce v3).
fn transactional_header(records: &[u8]) -> Option<sluice_records::BatchHeader> {
    let h = sluice_records::BatchHeader::parse(records).ok()?;
    (h.is_transactional() && !h.is_control()).then_some(h)
}

enum Slot {
    Done(PartitionProduceResponse),
    Pending(i32, PendingAppend),
}

fn from_result(
    version: i16,
    index: i32,
    r: Result<log_store::AppendInfo, log_store::Error>,
) -> PartitionProduceResponse {
    match r {
        Ok(info) => PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(info.base_offset)
            .with_log_append_time_ms(info.log_append_time_ms)
            .with_log_start_offset(if version >= 5 {
                info.log_start_offset
            } else {
                -1
            }),
        Err(e) => {
            tracing::debug!(error = %e, "produce refused");
            let mut r = error_partition(index, log_error_code(&e));
            if version >= 8 {
                if let log_store::Error::InvalidBatch(
                    log_store::BatchError::KeylessRecordOnCompactedTopic { record_indexes, .. },
                ) = &e
                {
                    // As Kafka: one record error per keyless record, so clients fail exactly
                    // those and retry-fail the rest of the batch.
                    r.record_errors = record_indexes
                        .iter()
                        .map(|i| {
                            kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default()
                                .with_batch_index(*i as i32)
                                .with_batch_index_error_message(Some(super::sb(
                                    "Compacted topic cannot accept message without key.",
                                )))
                        })
                        .collect();
                }
            }
            if version >= 8 && matches!(e, log_store::Error::InvalidBatch(_)) {
                r.error_message = Some(super::sb(e.to_string()));
            }
            r
        }
    }
}

fn error_partition(index: i32, code: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// The response (`None` for acks=0: Kafka sends no response at all) and the throttle time.
pub(super) async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> (Option<ProduceResponse>, u64) {
    // Every batch of the request counts, refused or not, as Kafka counts the whole request.
    let bytes: u64 = req
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum();
    let response = append(ctx, req).await;
    let throttle_ms = ctx.record_quota(QuotaType::Produce, bytes);
    let response = response.map(|r| r.with_throttle_time_ms(super::throttle_time_ms(throttle_ms)));
    (response, throttle_ms)
}

/// Handles the request; `None` for acks=0.
async fn append(ctx: &Ctx<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    let acks = req.acks;
    let transactional_id = req
        .transactional_id
        .as_ref()
        .map(|t| t.0.to_string())
        .filter(|t| !t.is_empty());
    let transactional = req.topic_data.iter().any(|t| {
        t.partition_data.iter().any(|p| {
            p.records
                .as_deref()
                .and_then(transactional_header)
                .is_some()
        })
    });
    // Kafka refuses a transactional batch without a transactional id this way too; without
    // an authorizer such a batch keeps its INVALID_TXN_STATE below.
    let refused = match transactional_id.as_deref() {
        Some(id) => !ctx.authorize_transactional_id(AclOperation::Write, id),
        None => ctx.broker.security.authorizer_enabled,
    };
    if transactional && refused {
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return (acks != 0).then(|| refuse_all(ctx, req, code));
    }
    let mut may_write = ctx.authorizer_cache(AclOperation::Write, ResourceType::Topic);
    let mut appender = Appender {
        ctx,
        durable: acks == -1,
        transactional_id,
        txn: None,
    };
    // Queue every partition's append first, then wait: partitions append concurrently, each
    // on its own actor, and acks=all rounds share fsyncs.
    let mut queued = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let mut slots = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let checked = check_partition(ctx, &name, p.index, acks, may_write.allows(&name));
            slots.push(match (checked, p.records) {
                (Err(code), _) => Slot::Done(error_partition(p.index, code)),
                (Ok(_), None) => Slot::Done(error_partition(
                    p.index,
                    ResponseError::InvalidRecord.code(),
                )),
                (Ok(partition), Some(records)) => {
                    appender.submit(&partition, p.index, records).await
                }
            });
        }
        queued.push((topic.name, slots));
    }
    let topics = wait_all(ctx, queued).await;
    // Every append is done: the transaction may end now.
    drop(appender);
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(topics))
}

/// Every partition of the request answered with `code`.
fn refuse_all(ctx: &Ctx<'_>, req: ProduceRequest, code: i16) -> ProduceResponse {
    let topics = req
        .topic_data
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    ctx.broker.metrics.error(ctx.api, code);
                    error_partition(p.index, code)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(topics)
}

/// The partition a batch may be appended to, or the error code the partition answers.
fn check_partition(
    ctx: &Ctx<'_>,
    name: &str,
    index: i32,
    acks: i16,
    may_write: bool,
) -> Result<Arc<Partition>, i16> {
    if !may_write {
        return Err(ResponseError::TopicAuthorizationFailed.code());
    }
    if !matches!(acks, -1..=1) {
        return Err(ResponseError::InvalidRequiredAcks.code());
    }
    if name == crate::group::OFFSETS_TOPIC || name == crate::txn::TRANSACTION_STATE_TOPIC {
        // As Kafka: only the coordinators write their internal topics.
        return Err(ResponseError::InvalidTopicException.code());
    }
    ctx.broker
        .partition(name, index)
        .ok_or(ResponseError::UnknownTopicOrPartition.code())
}

/// Queues a request's batches on their partitions. A transactional request holds its
/// transaction's write guard until every append is done (the appender is dropped), so the
/// transaction cannot complete (and write its markers) in between; it is taken once per
/// request, at its first transactional batch.
struct Appender<'a, 'c> {
    ctx: &'a Ctx<'c>,
    durable: bool,
    transactional_id: Option<String>,
    txn: Option<Result<TxnWrite, ResponseError>>,
}

impl Appender<'_, '_> {
    async fn submit(&mut self, partition: &Partition, index: i32, records: Bytes) -> Slot {
        let durable = self.durable;
        let version = self.ctx.version;
        let submitted = match transactional_header(&records) {
            None => partition
                .submit(records, durable)
                .await
                .map_err(WriteError::Log),
            Some(h) => {
                let producer = (h.producer_id, h.producer_epoch);
                match self.txn(producer).await {
                    Ok(w) if w.producer() != producer => {
                        Err(WriteError::Refused(ResponseError::InvalidProducerEpoch))
                    }
                    Ok(w) => w.submit(partition, records, durable).await,
                    Err(e) => Err(WriteError::Refused(e)),
                }
            }
        };
        match submitted {
            Ok(pending) => Slot::Pending(index, pending),
            Err(WriteError::Log(e)) => Slot::Done(from_result(version, index, Err(e))),
            Err(WriteError::Refused(e)) => Slot::Done(error_partition(index, e.code())),
        }
    }

    /// The request's transactional write, opened by its first transactional batch.
    async fn txn(&mut self, producer: (i64, i16)) -> Result<&TxnWrite, ResponseError> {
        if self.txn.is_none() {
            let txns = self.ctx.broker.txns();
            self.txn = Some(match (&self.transactional_id, txns) {
                (None, _) => Err(ResponseError::InvalidTxnState),
                (Some(_), None) => Err(ResponseError::CoordinatorNotAvailable),
                (Some(id), Some(txns)) => TxnWrite::begin(txns, id, producer, false).await,
            });
        }
        match &self.txn {
            Some(Ok(w)) => Ok(w),
            Some(Err(e)) => Err(*e),
            None => Err(ResponseError::UnknownServerError),
        }
    }
}

/// Waits for every queued append and builds the topics of the response.
async fn wait_all(ctx: &Ctx<'_>, queued: Vec<(TopicName, Vec<Slot>)>) -> Vec<TopicProduceResponse> {
    let mut topics = Vec::with_capacity(queued.len());
    for (name, slots) in queued {
        let mut partition_responses = Vec::with_capacity(slots.len());
        for slot in slots {
            let r = match slot {
                Slot::Done(r) => r,
                Slot::Pending(index, pending) => {
                    from_result(ctx.version, index, pending.wait().await)
                }
            };
            ctx.broker.metrics.error(ctx.api, r.error_code);
            partition_responses.push(r);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses),
        );
    }
    topics
}
