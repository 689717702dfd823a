//! SyncGroup (v0-5): the leader hands in the assignment; every member's answer waits until
//! it is stored. v5 checks protocol type and name. Needs READ on the group
//! (GROUP_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use sluice_security::acl::AclOperation;

use super::group_call::{group_request, mismatched};
use super::{sb, Ctx};
use crate::group::api::{Input, Reply, SyncRequest, SyncResponse};

pub(super) async fn handle(ctx: &Ctx<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let v = ctx.version;
    let group_id = req.group_id.0.to_string();
    if !ctx.authorize_group(AclOperation::Read, &group_id) {
        let e = ResponseError::GroupAuthorizationFailed.code();
        ctx.broker.metrics.error(ctx.api, e);
        return SyncGroupResponse::default().with_error_code(e);
    }
    let sync = SyncRequest {
        group_id: group_id.clone(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: if v >= 3 {
            req.group_instance_id.map(|i| i.to_string())
        } else {
            None
        },
        protocol_type: if v >= 5 {
            req.protocol_type.map(|t| t.to_string())
        } else {
            None
        },
        protocol_name: if v >= 5 {
            req.protocol_name.map(|n| n.to_string())
        } else {
            None
        },
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let r = match group_request(ctx, &group_id, move |id| Input::Sync(id, sync)).await {
        Ok(Reply::Sync(r)) => r,
        Ok(_) => SyncResponse::error(mismatched(ctx.api)),
        Err(e) => SyncResponse::error(e),
    };
    ctx.broker.metrics.error(ctx.api, r.error);
    let (protocol_type, protocol_name) = if v >= 5 {
        (r.protocol_type.map(sb), r.protocol_name.map(sb))
    } else {
        (None, None)
    };
    SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_protocol_type(protocol_type)
        .with_protocol_name(protocol_name)
        .with_assignment(r.assignment)
}
