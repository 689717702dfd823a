//! What the group APIs' handlers share: reaching a group's coordinator shard, and the answer
//! when it cannot be reached.

use kafka_protocol::error::ResponseError;

use super::Ctx;
use crate::group::api::{Input, Reply, ReplyId};

/// Steps a request on `group_id`'s shard and waits for the reply (a JoinGroup or SyncGroup
/// waits for the rebalance). At shutdown the wait ends with NOT_COORDINATOR, so clients look
/// for the coordinator again rather than wait for the rebalance timeout.
pub(super) async fn group_request(
    ctx: &Ctx<'_>,
    group_id: &str,
    input: impl FnOnce(ReplyId) -> Input + Send + 'static,
) -> Result<Reply, ResponseError> {
    let Some(coordinator) = ctx.broker.groups() else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    tokio::select! {
        r = coordinator.request(group_id, input) => {
            r.map_err(|_| ResponseError::CoordinatorNotAvailable)
        }
        _ = ctx.shutdown.cancelled() => Err(ResponseError::NotCoordinator),
    }
}

/// The shard answered with a reply of another kind: a bug; told to the client as a server
/// error.
pub(super) fn mismatched(api: &str) -> ResponseError {
    tracing::error!(api, "group coordinator answered with the wrong reply kind");
    ResponseError::UnknownServerError
}

/// Kafka's address of a client: `/` and its IP.
pub(super) fn client_host(ctx: &Ctx<'_>) -> String {
    format!("/{}", ctx.peer.ip())
}
