//! AddOffsetsToTxn (v0-4): adds the group's `__consumer_offsets` partition to the transaction,
//! so that the group's TxnOffsetCommit offsets are committed or aborted with it. Needs WRITE
//! on the transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), then READ on the group
//! (GROUP_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use sluice_security::acl::AclOperation;

use super::Ctx;
use crate::group::{partition_for, OFFSETS_TOPIC};

async fn add(ctx: &Ctx<'_>, req: &AddOffsetsToTxnRequest) -> Result<(), ResponseError> {
    if !ctx.authorize_transactional_id(AclOperation::Write, &req.transactional_id.0) {
        return Err(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if !ctx.authorize_group(AclOperation::Read, &req.group_id.0) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let txns = ctx
        .broker
        .txns()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let groups = ctx
        .broker
        .groups()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    if req.group_id.0.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    groups.ensure_topic().await?;
    let partition = partition_for(&req.group_id.0, groups.shard_count());
    txns.add_partitions(
        &req.transactional_id.0,
        (req.producer_id.0, req.producer_epoch),
        &[(OFFSETS_TOPIC.to_string(), partition)],
        ctx.version >= 2,
    )
    .await
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let code = add(ctx, &req).await.err().map_or(0, |e| e.code());
    ctx.broker.metrics.error(ctx.api, code);
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
