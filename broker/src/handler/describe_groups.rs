//! DescribeGroups (v0-6): state, protocol and members; a Stable group's members come with
//! their metadata and assignment, as in Kafka. An unknown group is "Dead" (v6+: with
//! GROUP_ID_NOT_FOUND). Each group needs DESCRIBE (GROUP_AUTHORIZATION_FAILED), as in Kafka;
//! its authorized operations (v3+, when asked for) are the principal's.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use sluice_security::acl::{AclOperation, ResourceType};

use super::{sb, Ctx};
use crate::group::classic::{ClassicGroup, GroupState};

struct Summary {
    state: GroupState,
    protocol_type: String,
    protocol: String,
    /// member id, instance id, client id, client host, metadata, assignment.
    members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

fn summarize(g: &ClassicGroup) -> Summary {
    let stable = g.is(GroupState::Stable);
    let protocol = g.protocol_name.clone().unwrap_or_default();
    Summary {
        state: g.state,
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol: if stable {
            protocol.clone()
        } else {
            String::new()
        },
        members: g
            .members_in_order()
            .into_iter()
            .map(|m| {
                let (meta, asg) = if stable {
                    (
                        m.metadata(&protocol).cloned().unwrap_or_default(),
                        m.assignment.clone(),
                    )
                } else {
                    (Bytes::new(), Bytes::new())
                };
                (
                    m.member_id.clone(),
                    m.group_instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    meta,
                    asg,
                )
            })
            .collect(),
    }
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let v = ctx.version;
    let include_ops = v >= 3 && req.include_authorized_operations;
    let mut out = Vec::with_capacity(req.groups.len());
    for group_id in req.groups {
        let id = group_id.0.to_string();
        if !ctx.authorize_group(AclOperation::Describe, &id) {
            let code = ResponseError::GroupAuthorizationFailed.code();
            ctx.broker.metrics.error(ctx.api, code);
            out.push(
                DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(code)
                    .with_authorized_operations(i32::MIN),
            );
            continue;
        }
        let ops = if include_ops {
            ctx.authorized_operations(ResourceType::Group, &id)
        } else {
            i32::MIN
        };
        let described = DescribedGroup::default()
            .with_group_id(group_id)
            .with_authorized_operations(ops);
        if id.is_empty() {
            out.push(described.with_error_code(ResponseError::InvalidGroupId.code()));
            continue;
        }
        let lookup = match ctx.broker.groups() {
            None => Err(ResponseError::CoordinatorNotAvailable),
            Some(c) => {
                let key = id.clone();
                c.query(&id, move |shard, _| {
                    // A consumer-protocol group is not one DescribeGroups knows (as Kafka).
                    shard
                        .group(&key)
                        .filter(|g| g.consumer.is_none())
                        .map(summarize)
                })
                .await
                .map_err(|_| ResponseError::CoordinatorNotAvailable)
            }
        };
        let d = match lookup {
            Err(e) => described.with_error_code(e.code()),
            Ok(None) => {
                let d = described.with_group_state(sb(GroupState::Dead.name()));
                if v >= 6 {
                    d.with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(sb(format!("Group {id} not found."))))
                } else {
                    d
                }
            }
            Ok(Some(s)) => described
                .with_group_state(sb(s.state.name()))
                .with_protocol_type(sb(s.protocol_type))
                .with_protocol_data(sb(s.protocol))
                .with_members(
                    s.members
                        .into_iter()
                        .map(|(member, instance, client, host, meta, asg)| {
                            DescribedGroupMember::default()
                                .with_member_id(sb(member))
                                .with_group_instance_id(if v >= 4 {
                                    instance.map(sb)
                                } else {
                                    None
                                })
                                .with_client_id(sb(client))
                                .with_client_host(sb(host))
                                .with_member_metadata(meta)
                                .with_member_assignment(asg)
                        })
                        .collect(),
                ),
        };
        ctx.broker.metrics.error(ctx.api, d.error_code);
        out.push(d);
    }
    DescribeGroupsResponse::default().with_groups(out)
}
