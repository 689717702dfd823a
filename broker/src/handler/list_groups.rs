//! ListGroups (v0-5): every group of every shard, filtered by state (v4+) and type (v5+:
//! "classic", or "consumer" for KIP-848 groups, which report their own state names). With
//! DESCRIBE on the cluster every group is listed, else only those the principal may DESCRIBE,
//! as in Kafka.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use sluice_security::acl::AclOperation;

use super::{sb, Ctx};
use crate::group::classic::GroupState;

pub(super) async fn handle(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let v = ctx.version;
    let Some(coordinator) = ctx.broker.groups() else {
        return ListGroupsResponse::default()
            .with_error_code(kafka_protocol::error::ResponseError::CoordinatorNotAvailable.code());
    };
    // Unknown state names match no group, as in Kafka.
    let states: Vec<Option<GroupState>> = if v >= 4 {
        req.states_filter
            .iter()
            .map(|s| GroupState::parse(s))
            .collect()
    } else {
        Vec::new()
    };
    let type_ok = |kind: &str| {
        v < 5
            || req.types_filter.is_empty()
            || req
                .types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case(kind))
    };
    let state_filter: Vec<String> = if v >= 4 {
        req.states_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let listed = coordinator
        .query_all(|shard, _| {
            shard
                .groups()
                .filter(|g| !g.is(GroupState::Dead))
                .map(|g| {
                    let kind = g.consumer.as_ref().map(|c| c.state_name());
                    (g.group_id.clone(), g.protocol_type.clone(), g.state, kind)
                })
                .collect::<Vec<_>>()
        })
        .await;
    let all = ctx.authorize_cluster(AclOperation::Describe);
    let mut groups: Vec<ListedGroup> = listed
        .into_iter()
        .flatten()
        .filter(|(id, _, _, _)| all || ctx.authorize_group(AclOperation::Describe, id))
        .filter(|(_, _, state, consumer)| match consumer {
            None => states.is_empty() || states.contains(&Some(*state)),
            Some(name) => {
                state_filter.is_empty() || state_filter.iter().any(|s| s.eq_ignore_ascii_case(name))
            }
        })
        .filter(|(_, _, _, consumer)| {
            type_ok(if consumer.is_some() {
                "consumer"
            } else {
                "classic"
            })
        })
        .map(|(id, protocol_type, state, consumer)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_protocol_type(sb(protocol_type.unwrap_or_default()));
            if v >= 4 {
                g.group_state = sb(consumer.unwrap_or(state.name()));
            }
            if v >= 5 {
                g.group_type = sb(if consumer.is_some() {
                    "consumer"
                } else {
                    "classic"
                });
            }
            g
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_groups(groups)
}
