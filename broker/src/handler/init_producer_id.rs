//! InitProducerId (v0-5) for idempotent producers: a new producer id from the broker's
//! persisted block allocator ([`crate::producer_ids`]), epoch 0.
//!
//! A re-init that presents its current producer id and epoch (KIP-360, v3+, sent after an
//! `OUT_OF_ORDER_SEQUENCE_NUMBER` or an expired batch) gets a new producer id with epoch 0, as
//! Kafka's `TransactionCoordinator.handleInitProducerId` answers a producer without a
//! transactional id: the old id's sequence state is simply abandoned. Only a transaction
//! coordinator keeps per-producer state from which an epoch could be bumped safely.
//!
//! Transactions are not built yet. A request with a `transactional.id` is answered with
//! `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`, as transactional Produce requests are: a fatal
//! error in the Java client, librdkafka and kafka-python, so a transactional producer fails at
//! `init_transactions` instead of retrying forever or losing its guarantees. (Clients usually
//! stop earlier: FindCoordinator for a transaction answers `COORDINATOR_NOT_AVAILABLE`.)

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Ctx;

fn response(error: Option<ResponseError>, producer_id: i64, epoch: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let r = if req.transactional_id.is_some() {
        response(
            Some(ResponseError::TransactionalIdAuthorizationFailed),
            -1,
            -1,
        )
    } else {
        let broker = Arc::clone(ctx.broker);
        match tokio::task::spawn_blocking(move || broker.producer_ids.generate()).await {
            Ok(Ok(id)) => response(None, id, 0),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot allocate a producer id");
                response(Some(ResponseError::CoordinatorNotAvailable), -1, -1)
            }
            Err(e) => {
                tracing::error!(error = %e, "producer id allocation panicked");
                response(Some(ResponseError::UnknownServerError), -1, -1)
            }
        }
    };
    ctx.broker.metrics.error(ctx.api, r.error_code);
    r
}
