//! InitProducerId (v0-5). Without a transactional id: a new idempotent producer id from the
//! broker's persisted block allocator ([`crate::producer_ids`]), epoch 0; a KIP-360 re-init
//! (v3+, after OUT_OF_ORDER_SEQUENCE_NUMBER or an expired batch) also gets a new id with
//! epoch 0, as Kafka answers a producer without a transactional id.
//!
//! With a transactional id, the transaction coordinator answers: the id's producer id with
//! its epoch bumped, after aborting the previous instance's ongoing transaction (fencing it).
//!
//! Authorization (Kafka's `handleInitProducerIdRequest`): WRITE on the transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); without one, IDEMPOTENT_WRITE on the cluster or
//! WRITE on at least one topic (CLUSTER_AUTHORIZATION_FAILED).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use sluice_security::acl::{AclOperation, ResourceType};

use super::Ctx;

fn response(error: Option<ResponseError>, producer_id: i64, epoch: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
}

fn refused(ctx: &Ctx<'_>, transactional_id: Option<&str>) -> Option<ResponseError> {
    match transactional_id {
        Some(id) => (!ctx.authorize_transactional_id(AclOperation::Write, id))
            .then_some(ResponseError::TransactionalIdAuthorizationFailed),
        None => (!ctx.authorize_cluster(AclOperation::IdempotentWrite)
            && !ctx.authorize_by_resource_type(AclOperation::Write, ResourceType::Topic))
        .then_some(ResponseError::ClusterAuthorizationFailed),
    }
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let transactional_id = req.transactional_id.as_ref().map(|t| t.0.to_string());
    if let Some(e) = refused(ctx, transactional_id.as_deref()) {
        ctx.broker.metrics.error(ctx.api, e.code());
        return response(Some(e), -1, -1);
    }
    let r = match transactional_id {
        Some(id) => match ctx.broker.txns() {
            None => response(Some(ResponseError::CoordinatorNotAvailable), -1, -1),
            Some(txns) => {
                let expected =
                    (ctx.version >= 3).then_some((req.producer_id.0, req.producer_epoch));
                match txns
                    .init_producer_id(&id, req.transaction_timeout_ms, expected, ctx.version >= 4)
                    .await
                {
                    Ok((pid, epoch)) => response(None, pid, epoch),
                    Err(e) => response(Some(e), -1, -1),
                }
            }
        },
        None => {
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
        }
    };
    ctx.broker.metrics.error(ctx.api, r.error_code);
    r
}
