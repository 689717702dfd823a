//! FindCoordinator (v0-6): this broker coordinates every group (key type 0), creating
//! `__consumer_offsets` on first use, and every transactional id (key type 1), creating
//! `__transaction_state` on first use; v4+ answers a batch of keys. Each key needs DESCRIBE on
//! its group (GROUP_AUTHORIZATION_FAILED) or transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), checked before the coordinator's topic is created.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use sluice_security::acl::AclOperation;

use super::{sb, Ctx};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// `Ok(())`: this broker is the coordinator. `Err`: the error and its message.
async fn lookup(ctx: &Ctx<'_>, key_type: i8) -> Result<(), (ResponseError, String)> {
    match key_type {
        KEY_TYPE_GROUP => {
            let Some(groups) = ctx.broker.groups() else {
                return Err((
                    ResponseError::CoordinatorNotAvailable,
                    "the group coordinator is not running".into(),
                ));
            };
            groups.ensure_topic().await.map_err(|_| {
                (
                    ResponseError::CoordinatorNotAvailable,
                    "the offsets topic could not be created".into(),
                )
            })
        }
        KEY_TYPE_TRANSACTION => {
            let Some(txns) = ctx.broker.txns() else {
                return Err((
                    ResponseError::CoordinatorNotAvailable,
                    "the transaction coordinator is not running".into(),
                ));
            };
            txns.ensure_topic().await.map_err(|_| {
                (
                    ResponseError::CoordinatorNotAvailable,
                    "the transaction state topic could not be created".into(),
                )
            })
        }
        other => Err((
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        )),
    }
}

/// The refusal of `key`, if the principal may not DESCRIBE it.
fn refused(ctx: &Ctx<'_>, key_type: i8, key: &str) -> Option<(ResponseError, String)> {
    let refusal = match key_type {
        KEY_TYPE_GROUP if !ctx.authorize_group(AclOperation::Describe, key) => {
            ResponseError::GroupAuthorizationFailed
        }
        KEY_TYPE_TRANSACTION if !ctx.authorize_transactional_id(AclOperation::Describe, key) => {
            ResponseError::TransactionalIdAuthorizationFailed
        }
        _ => return None,
    };
    ctx.broker.metrics.error(ctx.api, refusal.code());
    Some((refusal, "Authorization failed.".into()))
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let c = &ctx.broker.config;
    let key_type = if ctx.version >= 1 { req.key_type } else { 0 };
    let keys: Vec<_> = if ctx.version >= 4 {
        req.coordinator_keys
    } else {
        vec![req.key]
    };
    let refusals: Vec<_> = keys.iter().map(|k| refused(ctx, key_type, k)).collect();
    let result = if refusals.iter().all(Option::is_some) {
        Ok(())
    } else {
        lookup(ctx, key_type).await
    };
    if let Err((e, _)) = &result {
        ctx.broker.metrics.error(ctx.api, e.code());
    }
    if ctx.version >= 4 {
        let coordinators = keys
            .into_iter()
            .zip(refusals)
            .map(|(key, refusal)| {
                let found = Coordinator::default().with_key(key);
                match refusal.map(Err).unwrap_or_else(|| result.clone()) {
                    Ok(()) => found
                        .with_node_id(BrokerId(c.node_id))
                        .with_host(sb(ctx.listener.advertised_host.clone()))
                        .with_port(ctx.listener.advertised_port as i32),
                    Err((e, message)) => found
                        .with_node_id(BrokerId(-1))
                        .with_host(sb(""))
                        .with_port(-1)
                        .with_error_code(e.code())
                        .with_error_message(Some(sb(message))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let refusal = refusals.into_iter().next().flatten();
    match refusal.map(Err).unwrap_or(result) {
        Ok(()) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(c.node_id))
            .with_host(sb(ctx.listener.advertised_host.clone()))
            .with_port(ctx.listener.advertised_port as i32),
        Err((e, message)) => FindCoordinatorResponse::default()
            .with_error_code(e.code())
            .with_error_message((ctx.version >= 1).then(|| sb(message)))
            .with_node_id(BrokerId(-1))
            .with_host(sb(""))
            .with_port(-1),
    }
}
