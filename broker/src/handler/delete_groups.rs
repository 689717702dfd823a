//! DeleteGroups (v0-2): empty groups only (NON_EMPTY_GROUP otherwise); tombstones for the
//! group and its offsets are stored before the answer. Each group needs DELETE
//! (GROUP_AUTHORIZATION_FAILED), as in Kafka.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use kafka_protocol::error::ResponseError;
use sluice_security::acl::AclOperation;

use super::group_call::{group_request, mismatched};
use super::{sb, Ctx};
use crate::group::api::{Input, Reply};

pub(super) async fn handle(ctx: &Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let names: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    // One request per shard.
    let mut by_shard: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let count = ctx.broker.groups().map_or(1, |c| c.shard_count());
    let mut codes: BTreeMap<String, i16> = BTreeMap::new();
    for n in &names {
        if !ctx.authorize_group(AclOperation::Delete, n) {
            codes.insert(n.clone(), ResponseError::GroupAuthorizationFailed.code());
            continue;
        }
        by_shard
            .entry(crate::group::partition_for(n, count))
            .or_default()
            .push(n.clone());
    }
    for (_, ids) in by_shard {
        let Some(first) = ids.first().cloned() else {
            continue;
        };
        let sent = ids.clone();
        match group_request(ctx, &first, move |id| Input::DeleteGroups(id, sent)).await {
            Ok(Reply::DeleteGroups(results)) => codes.extend(results),
            Ok(_) => {
                let e = mismatched(ctx.api);
                codes.extend(ids.into_iter().map(|i| (i, e.code())));
            }
            Err(e) => codes.extend(ids.into_iter().map(|i| (i, e.code()))),
        }
    }
    let results = names
        .into_iter()
        .map(|n| {
            let code = codes.get(&n).copied().unwrap_or(0);
            ctx.broker.metrics.error(ctx.api, code);
            DeletableGroupResult::default()
                .with_group_id(GroupId(sb(n)))
                .with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
