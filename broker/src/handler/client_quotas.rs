//! DescribeClientQuotas and AlterClientQuotas (v0-1, KIP-546) over the client quota store
//! (`<data-dir>/__security/quotas.json`), with the semantics of Kafka's `KafkaApis`:
//!
//! - DESCRIBE_CONFIGS (to describe) or ALTER_CONFIGS (to alter) on the cluster, else
//!   CLUSTER_AUTHORIZATION_FAILED (for the whole describe, or for every altered entity);
//! - INVALID_REQUEST with a message for an entity, a key or a value Kafka refuses (an empty or
//!   repeated entity type, an empty name, an unknown key, a byte rate that is not a positive
//!   integer, a key or an entity repeated in one request);
//! - UNSUPPORTED_VERSION for a filter with an unknown match type or entity type;
//! - `user` and `client-id` entities only (Kafka's `ip` connection-rate quotas are refused).
//!
//! An alteration is written to disk (fsync, off the reactor) before the answer and applies to
//! the next produce or fetch; `validate_only` checks everything and changes nothing.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_response;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use sluice_security::acl::AclOperation;
use sluice_security::quota_entity::{ClientQuotaFilter, QuotaError, QuotaFilterComponent};
use sluice_security::quota_store::ClientQuotaAlteration;

use super::{sb, Ctx};

/// Kafka's message for CLUSTER_AUTHORIZATION_FAILED.
const CLUSTER_AUTHORIZATION_FAILED: &str = "Cluster authorization failed.";

fn error_of(e: &QuotaError) -> ResponseError {
    match e {
        QuotaError::Unsupported(_) => ResponseError::UnsupportedVersion,
        _ => ResponseError::InvalidRequest,
    }
}

pub(super) fn describe(
    ctx: &Ctx<'_>,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let refuse = |e: ResponseError, message: String| {
        ctx.broker.metrics.error(ctx.api, e.code());
        DescribeClientQuotasResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(sb(message)))
            .with_entries(None)
    };
    if !ctx.authorize_cluster(AclOperation::DescribeConfigs) {
        return refuse(
            ResponseError::ClusterAuthorizationFailed,
            CLUSTER_AUTHORIZATION_FAILED.into(),
        );
    }
    let described = req
        .components
        .iter()
        .map(|c| {
            QuotaFilterComponent::from_wire(
                c.entity_type.as_str(),
                c.match_type,
                c._match.as_deref(),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|components| {
            let filter = ClientQuotaFilter {
                components,
                strict: req.strict,
            };
            ctx.broker
                .security
                .quotas
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .describe(&filter)
        });
    let described = match described {
        Ok(d) => d,
        Err(e) => return refuse(error_of(&e), e.to_string()),
    };
    let entries = described
        .into_iter()
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .components()
                        .into_iter()
                        .map(|(entity_type, name)| {
                            EntityData::default()
                                .with_entity_type(sb(entity_type))
                                .with_entity_name(name.map(sb))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .into_iter()
                        .map(|(key, value)| {
                            ValueData::default().with_key(sb(key)).with_value(value)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

pub(super) async fn alter(
    ctx: &Ctx<'_>,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let allowed = ctx.authorize_cluster(AclOperation::AlterConfigs);
    // Each entry's entity, echoed in its result.
    let echoed: Vec<Vec<alter_client_quotas_response::EntityData>> = req
        .entries
        .iter()
        .map(|entry| {
            entry
                .entity
                .iter()
                .map(|e| {
                    alter_client_quotas_response::EntityData::default()
                        .with_entity_type(e.entity_type.clone())
                        .with_entity_name(e.entity_name.clone())
                })
                .collect()
        })
        .collect();
    let results: Result<Vec<Result<(), QuotaError>>, String> = if !allowed {
        Err(CLUSTER_AUTHORIZATION_FAILED.into())
    } else {
        let alterations: Vec<ClientQuotaAlteration> = req
            .entries
            .into_iter()
            .map(|entry| ClientQuotaAlteration {
                entity: entry
                    .entity
                    .into_iter()
                    .map(|e| {
                        (
                            e.entity_type.to_string(),
                            e.entity_name.map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                ops: entry
                    .ops
                    .into_iter()
                    .map(|op| (op.key.to_string(), (!op.remove).then_some(op.value)))
                    .collect(),
            })
            .collect();
        let broker = Arc::clone(ctx.broker);
        let validate_only = req.validate_only;
        let stored = tokio::task::spawn_blocking(move || {
            broker
                .security
                .alter_quotas(&alterations, validate_only)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the quota store task failed: {e}")));
        if let Err(e) = &stored {
            tracing::error!(error = %e, "cannot store client quotas");
        }
        stored
    };
    let entries = echoed
        .into_iter()
        .enumerate()
        .map(|(i, entity)| {
            let (code, message) = match &results {
                Err(why) if !allowed => (
                    ResponseError::ClusterAuthorizationFailed.code(),
                    Some(why.clone()),
                ),
                Err(why) => (ResponseError::UnknownServerError.code(), Some(why.clone())),
                Ok(results) => match results.get(i) {
                    Some(Ok(())) => (0, None),
                    Some(Err(e)) => (error_of(e).code(), Some(e.to_string())),
                    None => (
                        ResponseError::UnknownServerError.code(),
                        Some("no result for this entry".to_string()),
                    ),
                },
            };
            ctx.broker.metrics.error(ctx.api, code);
            alter_client_quotas_response::EntryData::default()
                .with_error_code(code)
                .with_error_message(message.map(sb))
                .with_entity(entity)
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}
