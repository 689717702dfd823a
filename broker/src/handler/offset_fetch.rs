//! OffsetFetch (v1-9): committed offsets of the named partitions, or of all (topics null,
//! v2+); v8+ asks for several groups at once. A partition with no commit gets offset -1. v9: a
//! member of a consumer-protocol group is checked by member id and epoch (UNKNOWN_MEMBER_ID,
//! STALE_MEMBER_EPOCH), as Kafka's `validateOffsetFetch`. v7+ with `require_stable`: a
//! partition whose offset a transaction is still committing answers UNSTABLE_OFFSET_COMMIT
//! (retriable), so a read_committed consumer never starts from an offset that may be aborted.
//!
//! Authorization (Kafka's `handleOffsetFetchRequestFromCoordinator`): DESCRIBE on the group
//! (GROUP_AUTHORIZATION_FAILED); a named topic the principal may not DESCRIBE answers
//! TOPIC_AUTHORIZATION_FAILED per partition, and such topics are left out of an all-topics
//! answer.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use sluice_security::acl::{AclOperation, ResourceType};

use super::{sb, Ctx};
use crate::group::offsets::TopicOffsets;

/// Per topic, per partition: `(offset, leader_epoch, metadata, error)`.
type Answers = Vec<(String, Vec<(i32, (i64, i32, String, i16))>)>;

/// One group's answer, or its error, with the principal's rights applied.
async fn fetch(
    ctx: &Ctx<'_>,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    member: Option<(String, i32)>,
    require_stable: bool,
) -> Result<Answers, ResponseError> {
    if !ctx.authorize_group(AclOperation::Describe, &group_id) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let mut may_describe = ctx.authorizer_cache(AclOperation::Describe, ResourceType::Topic);
    let (topics, refused) = match topics {
        None => (None, Vec::new()),
        Some(list) => {
            let (allowed, refused): (Vec<_>, Vec<_>) =
                list.into_iter().partition(|(t, _)| may_describe.allows(t));
            (Some(allowed), refused)
        }
    };
    let found = committed(ctx, group_id, topics, member, require_stable).await?;
    let mut out: Answers = found
        .into_iter()
        .filter(|(t, _)| may_describe.allows(t))
        .map(|(t, parts)| (t, parts.into_iter().map(|(p, o)| (p, answer(o))).collect()))
        .collect();
    let code = ResponseError::TopicAuthorizationFailed.code();
    out.extend(refused.into_iter().map(|(t, parts)| {
        let parts = parts
            .into_iter()
            .map(|p| (p, (-1, -1, String::new(), code)))
            .collect();
        (t, parts)
    }));
    Ok(out)
}

/// The group's committed offsets of `topics` (all when `None`).
async fn committed(
    ctx: &Ctx<'_>,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    member: Option<(String, i32)>,
    require_stable: bool,
) -> Result<Vec<TopicOffsets>, ResponseError> {
    let Some(coordinator) = ctx.broker.groups() else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    let id = group_id.clone();
    coordinator
        .query(&group_id, move |shard, _| {
            if let Some((member_id, epoch)) = &member {
                if let Some(e) = shard.check_member_epoch(&id, member_id, *epoch) {
                    return Err(e);
                }
            }
            let mut found = shard.committed(&id, topics.as_deref());
            if require_stable && !shard.pending_txn.is_empty() {
                for (topic, parts) in &mut found {
                    for (p, o) in parts.iter_mut() {
                        if shard.has_pending_txn_offset(&id, topic, *p) {
                            *o = Some(unstable());
                        }
                    }
                }
            }
            Ok(found)
        })
        .await
        .map_err(|_| ResponseError::CoordinatorNotAvailable)?
}

/// Stands for UNSTABLE_OFFSET_COMMIT in a fetched offset (an offset below -1 is never stored).
const UNSTABLE: i64 = i64::MIN;

fn unstable() -> crate::group::records::OffsetValue {
    crate::group::records::OffsetValue {
        offset: UNSTABLE,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: -1,
    }
}

/// `(offset, leader_epoch, metadata, error)` of one fetched partition.
fn answer(o: Option<crate::group::records::OffsetValue>) -> (i64, i32, String, i16) {
    match o {
        Some(o) if o.offset == UNSTABLE => (
            -1,
            -1,
            String::new(),
            ResponseError::UnstableOffsetCommit.code(),
        ),
        Some(o) => (o.offset, o.leader_epoch, o.metadata, 0),
        None => (-1, -1, String::new(), 0),
    }
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        handle_groups(ctx, req).await
    } else {
        handle_single(ctx, req).await
    }
}

/// v8+: several groups per request, each with its own error.
async fn handle_groups(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.version;
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let topics = g.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
        let member = (v >= 9).then(|| {
            let id = g.member_id.map(|m| m.to_string()).unwrap_or_default();
            (id, g.member_epoch)
        });
        groups.push(
            match fetch(
                ctx,
                g.group_id.0.to_string(),
                topics,
                member,
                req.require_stable,
            )
            .await
            {
                Ok(found) => group.with_topics(
                    found
                        .into_iter()
                        .map(|(topic, parts)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(sb(topic)))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, (offset, epoch, meta, error))| {
                                            ctx.broker.metrics.error(ctx.api, error);
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(Some(sb(meta)))
                                                .with_error_code(error)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
                Err(e) => {
                    ctx.broker.metrics.error(ctx.api, e.code());
                    group.with_error_code(e.code())
                }
            },
        );
    }
    OffsetFetchResponse::default().with_groups(groups)
}

/// v1-v7: one group, its error at the top (v2+) or on every partition (v1).
async fn handle_single(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.version;
    let group_id: GroupId = req.group_id;
    let requested: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let require_stable = v >= 7 && req.require_stable;
    let result = fetch(
        ctx,
        group_id.0.to_string(),
        requested.clone(),
        None,
        require_stable,
    )
    .await;
    let (found, error) = match result {
        Ok(found) => (found, 0),
        Err(e) => {
            ctx.broker.metrics.error(ctx.api, e.code());
            // v1 has no top-level error: every partition carries it.
            let per_partition = requested
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| (p, (-1, -1, String::new(), 0)))
                        .collect();
                    (t, parts)
                })
                .collect();
            (if v < 2 { per_partition } else { Vec::new() }, e.code())
        }
    };
    let partition_error = if v < 2 { error } else { 0 };
    let topics = found
        .into_iter()
        .map(|(topic, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(sb(topic)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, (offset, epoch, meta, error))| {
                            ctx.broker.metrics.error(ctx.api, error);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(if v >= 5 { epoch } else { -1 })
                                .with_metadata(Some(sb(meta)))
                                .with_error_code(if error != 0 { error } else { partition_error })
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default()
        .with_topics(topics)
        .with_error_code(if v >= 2 { error } else { 0 })
}
