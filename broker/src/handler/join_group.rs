//! JoinGroup (v0-9): the answer waits until the group's join phase completes. v4+ members
//! first get MEMBER_ID_REQUIRED (KIP-394); v5+ static members (KIP-345); v9 skip_assignment
//! (KIP-814). Needs READ on the group (GROUP_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use sluice_security::acl::AclOperation;

use super::group_call::{client_host, group_request, mismatched};
use super::{sb, Ctx};
use crate::group::api::{Input, JoinRequest, JoinResponse, Protocol, Reply};

fn encode(version: i16, r: JoinResponse) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(sb(m.member_id))
                .with_group_instance_id(if version >= 5 {
                    m.group_instance_id.map(sb)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation_id)
        .with_protocol_type(if version >= 7 {
            r.protocol_type.map(sb)
        } else {
            None
        })
        // Not nullable before v7.
        .with_protocol_name(if version >= 7 {
            r.protocol_name.map(sb)
        } else {
            Some(sb(r.protocol_name.unwrap_or_default()))
        })
        .with_leader(sb(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(sb(r.member_id))
        .with_members(members)
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let v = ctx.version;
    let group_id = req.group_id.0.to_string();
    if !ctx.authorize_group(AclOperation::Read, &group_id) {
        let e = ResponseError::GroupAuthorizationFailed;
        ctx.broker.metrics.error(ctx.api, e.code());
        return encode(v, JoinResponse::error(String::new(), e));
    }
    let join = JoinRequest {
        group_id: group_id.clone(),
        member_id: req.member_id.to_string(),
        group_instance_id: if v >= 5 {
            req.group_instance_id.map(|i| i.to_string())
        } else {
            None
        },
        new_member_id: format!("{}-{}", ctx.client_id, uuid::Uuid::new_v4()),
        client_id: ctx.client_id.to_string(),
        client_host: client_host(ctx),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves for both.
        rebalance_timeout_ms: if v >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        require_known_member_id: v >= 4,
        supports_skip_assignment: v >= 9,
    };
    let member_id = join.member_id.clone();
    let response = match group_request(ctx, &group_id, move |id| Input::Join(id, join)).await {
        Ok(Reply::Join(r)) => r,
        Ok(_) => JoinResponse::error(member_id, mismatched(ctx.api)),
        Err(e) => JoinResponse::error(member_id, e),
    };
    if response.error != ResponseError::MemberIdRequired.code() {
        ctx.broker.metrics.error(ctx.api, response.error);
    }
    encode(v, response)
}
