//! LeaveGroup (v0-5): one member (v0-2) or a batch (v3+, which may name static members by
//! instance id alone). Needs READ on the group (GROUP_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use sluice_security::acl::AclOperation;

use super::group_call::{group_request, mismatched};
use super::{sb, Ctx};
use crate::group::api::{Input, LeaveRequest, LeaveResponse, LeavingMember, Reply, NONE};

pub(super) async fn handle(ctx: &Ctx<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let v = ctx.version;
    let group_id = req.group_id.0.to_string();
    if !ctx.authorize_group(AclOperation::Read, &group_id) {
        let e = ResponseError::GroupAuthorizationFailed.code();
        ctx.broker.metrics.error(ctx.api, e);
        return LeaveGroupResponse::default().with_error_code(e);
    }
    let members = if v >= 3 {
        req.members
            .into_iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|i| i.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let leave = LeaveRequest {
        group_id: group_id.clone(),
        members,
    };
    let r = match group_request(ctx, &group_id, move |id| Input::Leave(id, leave)).await {
        Ok(Reply::Leave(r)) => r,
        Ok(_) => LeaveResponse {
            error: mismatched(ctx.api).code(),
            members: Vec::new(),
        },
        Err(e) => LeaveResponse {
            error: e.code(),
            members: Vec::new(),
        },
    };
    ctx.broker.metrics.error(ctx.api, r.error);
    for (_, code) in &r.members {
        ctx.broker.metrics.error(ctx.api, *code);
    }
    if v < 3 {
        // One member: its error is the response's.
        let error = if r.error != NONE {
            r.error
        } else {
            r.members.first().map_or(NONE, |(_, code)| *code)
        };
        return LeaveGroupResponse::default().with_error_code(error);
    }
    LeaveGroupResponse::default()
        .with_error_code(r.error)
        .with_members(
            r.members
                .into_iter()
                .map(|(m, code)| {
                    MemberResponse::default()
                        .with_member_id(sb(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(sb))
                        .with_error_code(code)
                })
                .collect(),
        )
}
