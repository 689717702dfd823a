//! Heartbeat (v0-4): keeps a member's session; REBALANCE_IN_PROGRESS tells it to rejoin.
//! Needs READ on the group (GROUP_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use sluice_security::acl::AclOperation;

use super::group_call::{group_request, mismatched};
use super::Ctx;
use crate::group::api::{self, Input, Reply};

pub(super) async fn handle(ctx: &Ctx<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = req.group_id.0.to_string();
    if !ctx.authorize_group(AclOperation::Read, &group_id) {
        let e = ResponseError::GroupAuthorizationFailed.code();
        ctx.broker.metrics.error(ctx.api, e);
        return HeartbeatResponse::default().with_error_code(e);
    }
    let hb = api::HeartbeatRequest {
        group_id: group_id.clone(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: if ctx.version >= 3 {
            req.group_instance_id.map(|i| i.to_string())
        } else {
            None
        },
    };
    let code = match group_request(ctx, &group_id, move |id| Input::Heartbeat(id, hb)).await {
        Ok(Reply::Heartbeat(code)) => code,
        Ok(_) => mismatched(ctx.api).code(),
        Err(e) => e.code(),
    };
    ctx.broker.metrics.error(ctx.api, code);
    HeartbeatResponse::default().with_error_code(code)
}
