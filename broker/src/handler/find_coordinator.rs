//! FindCoordinator (v0-6): this broker coordinates every group (key type 0), creating
//! `__consumer_offsets` on first use, and every transactional id (key type 1), creating
//! `__transaction_state` on first use; v4+ answers a batch of keys.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

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
            groups.ensure_topic(ctx.broker).await.map_err(|_| {
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
            txns.ensure_topic(ctx.broker).await.map_err(|_| {
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

pub(super) async fn handle(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let c = &ctx.broker.config;
    let key_type = if ctx.version >= 1 { req.key_type } else { 0 };
    let result = lookup(ctx, key_type).await;
    if let Err((e, _)) = &result {
        ctx.broker.metrics.error(ctx.api, e.code());
    }
    if ctx.version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let found = Coordinator::default().with_key(key);
                match &result {
                    Ok(()) => found
                        .with_node_id(BrokerId(c.node_id))
                        .with_host(sb(ctx.listener.advertised_host.clone()))
                        .with_port(ctx.listener.advertised_port as i32),
                    Err((e, message)) => found
                        .with_node_id(BrokerId(-1))
                        .with_host(sb(""))
                        .with_port(-1)
                        .with_error_code(e.code())
                        .with_error_message(Some(sb(message.clone()))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match result {
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
