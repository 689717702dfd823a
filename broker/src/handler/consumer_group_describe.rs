//! ConsumerGroupDescribe (v0-1, KIP-848): a consumer-protocol group's epochs, assignor and
//! members with their current and target assignments. A classic group, or none, is
//! GROUP_ID_NOT_FOUND, as in Kafka. Each group needs DESCRIBE (GROUP_AUTHORIZATION_FAILED);
//! its authorized operations (when asked for) are the principal's.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};

use sluice_security::acl::{AclOperation, ResourceType};

use super::{sb, Ctx};
use crate::group::assignor;
use crate::group::consumer::ConsumerGroup;

/// Kafka's `MemberType` of a consumer-protocol member (v1+).
const CONSUMER_MEMBER_TYPE: i8 = 1;

fn assignment(g: &ConsumerGroup, a: &assignor::Assignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                TopicPartitions::default()
                    .with_topic_id(g.topics.get(t).map(|(id, _)| *id).unwrap_or_default())
                    .with_topic_name(TopicName(sb(t.clone())))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

fn describe(v: i16, g: &ConsumerGroup, assignor_name: String) -> DescribedGroup {
    DescribedGroup::default()
        .with_group_state(sb(g.state_name()))
        .with_group_epoch(g.group_epoch)
        .with_assignment_epoch(g.assignment_epoch)
        .with_assignor_name(sb(assignor_name))
        .with_members(
            g.members
                .values()
                .map(|m| {
                    Member::default()
                        .with_member_id(sb(m.member_id.clone()))
                        .with_instance_id(m.instance_id.clone().map(sb))
                        .with_rack_id(m.rack_id.clone().map(sb))
                        .with_member_epoch(m.member_epoch)
                        .with_client_id(sb(m.client_id.clone()))
                        .with_client_host(sb(m.client_host.clone()))
                        .with_subscribed_topic_names(
                            m.subscribed_topics
                                .iter()
                                .map(|t| TopicName(sb(t.clone())))
                                .collect(),
                        )
                        .with_subscribed_topic_regex(m.subscribed_regex.clone().map(sb))
                        .with_assignment(assignment(g, &m.assigned))
                        .with_target_assignment(assignment(g, &m.target))
                        .with_member_type(if v >= 1 { CONSUMER_MEMBER_TYPE } else { -1 })
                })
                .collect(),
        )
}

pub(super) async fn handle(
    ctx: &Ctx<'_>,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let v = ctx.version;
    let default_assignor = ctx
        .broker
        .config
        .group
        .consumer_assignors
        .first()
        .cloned()
        .unwrap_or_else(|| "uniform".into());
    let mut out = Vec::with_capacity(req.group_ids.len());
    for group_id in req.group_ids {
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
        let ops = if req.include_authorized_operations {
            ctx.authorized_operations(ResourceType::Group, &id)
        } else {
            i32::MIN
        };
        let described = DescribedGroup::default()
            .with_group_id(group_id.clone())
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
                    let classic = shard.group(&key).is_some_and(|g| g.consumer.is_none());
                    (classic, shard.consumer_group(&key).cloned())
                })
                .await
                .map_err(|_| ResponseError::CoordinatorNotAvailable)
            }
        };
        let d = match lookup {
            Err(e) => described.with_error_code(e.code()),
            Ok((_, Some(g))) => {
                let name = g
                    .members
                    .values()
                    .find_map(|m| m.server_assignor.clone())
                    .unwrap_or_else(|| default_assignor.clone());
                describe(v, &g, name)
                    .with_group_id(group_id)
                    .with_authorized_operations(ops)
            }
            Ok((classic, None)) => {
                let msg = if classic {
                    format!("Group {id} is not a consumer group.")
                } else {
                    format!("Group {id} not found.")
                };
                described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(msg)))
            }
        };
        ctx.broker.metrics.error(ctx.api, d.error_code);
        out.push(d);
    }
    ConsumerGroupDescribeResponse::default().with_groups(out)
}
