//! Committed offsets on a shard: OffsetCommit (with Kafka's generation fencing), OffsetFetch,
//! OffsetDelete, DeleteGroups and the retention of offsets of empty groups
//! (`offsets.retention.minutes`, KIP-211).

use kafka_protocol::error::ResponseError as E;

use super::api::{CommitRequest, OffsetDeleteRequest, OffsetDeleteResponse, Reply, ReplyId, NONE};
use super::classic::{ClassicGroup, GroupState};
use super::records::{OffsetValue, OffsetsRecord};
use super::shard::{GroupShard, Pending};

/// Partitions of one topic with their committed offsets (`None`: none committed).
pub type TopicOffsets = (String, Vec<(i32, Option<OffsetValue>)>);

impl GroupShard {
    pub(super) fn commit(&mut self, now: i64, reply: ReplyId, req: CommitRequest) {
        let all = |code: i16| -> Vec<(String, i32, i16)> {
            req.partitions
                .iter()
                .map(|p| (p.topic.clone(), p.partition, code))
                .collect()
        };
        if req.group_id.is_empty() {
            self.io
                .reply(reply, Reply::Commit(all(E::InvalidGroupId.code())));
            return;
        }
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id < 0 {
                // A simple consumer or an admin tool: the group exists to hold offsets.
                self.groups
                    .insert(req.group_id.clone(), ClassicGroup::new(&req.group_id, now));
            } else {
                let e = if req.api_version >= 9 {
                    E::GroupIdNotFound
                } else {
                    E::IllegalGeneration
                };
                self.io.reply(reply, Reply::Commit(all(e.code())));
                return;
            }
        }
        let Some(mut op) = self.op(&req.group_id, now) else {
            return;
        };
        let as_member =
            req.generation_id >= 0 || !req.member_id.is_empty() || req.group_instance_id.is_some();
        let refused = commit_refusal(op.g, &req, as_member);
        if let Some(e) = refused {
            op.io.reply(reply, Reply::Commit(all(e.code())));
            return;
        }
        if as_member && op.g.members.contains_key(&req.member_id) {
            op.refresh_session(&req.member_id);
        }
        let max = op.config.offset_metadata_max_bytes;
        let mut results = Vec::with_capacity(req.partitions.len());
        let mut records = Vec::new();
        let mut offsets = Vec::new();
        for p in req.partitions {
            if p.metadata.len() > max {
                results.push((p.topic, p.partition, E::OffsetMetadataTooLarge.code()));
                continue;
            }
            let value = OffsetValue {
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata: p.metadata,
                commit_timestamp_ms: now,
            };
            records.push(OffsetsRecord::Offset {
                group: req.group_id.clone(),
                topic: p.topic.clone(),
                partition: p.partition,
                value: Some(value.clone()),
            });
            offsets.push(((p.topic.clone(), p.partition), value));
            results.push((p.topic, p.partition, NONE));
        }
        if records.is_empty() {
            op.io.reply(reply, Reply::Commit(results));
            return;
        }
        op.io.persist(
            records,
            Pending::Commit {
                reply,
                group: req.group_id,
                results,
                offsets,
            },
        );
    }

    /// TxnOffsetCommit v3+ (KIP-447): the consumer's member id and generation are checked as
    /// an OffsetCommit's are, so that a zombie member's transaction cannot commit offsets.
    /// `None`: accepted (also for groups this shard does not know: a transactional producer
    /// may commit for a group that has no members).
    pub fn check_txn_commit_member(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Option<E> {
        let g = self.groups.get(group_id)?;
        if let Some(c) = g.consumer.as_deref() {
            return match c.members.get(member_id) {
                None => Some(E::UnknownMemberId),
                Some(m) if m.member_epoch != generation => Some(E::IllegalGeneration),
                Some(_) => None,
            };
        }
        if g.is(GroupState::Dead) {
            return Some(E::CoordinatorNotAvailable);
        }
        if g.members.is_empty() {
            return None;
        }
        if g.is_static_member_fenced(instance, member_id) {
            Some(E::FencedInstanceId)
        } else if !g.members.contains_key(member_id) {
            Some(E::UnknownMemberId)
        } else if generation != g.generation_id {
            Some(E::IllegalGeneration)
        } else {
            None
        }
    }

    /// The committed offsets of `group_id`: of the requested partitions, or of every
    /// partition when `topics` is `None`.
    pub fn committed(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<TopicOffsets> {
        let group = self
            .groups
            .get(group_id)
            .filter(|g| !g.is(GroupState::Dead));
        match topics {
            Some(topics) => topics
                .iter()
                .map(|(t, parts)| {
                    let got = parts
                        .iter()
                        .map(|p| {
                            let v = group.and_then(|g| g.offsets.get(&(t.clone(), *p)).cloned());
                            (*p, v)
                        })
                        .collect();
                    (t.clone(), got)
                })
                .collect(),
            None => {
                let mut out: Vec<TopicOffsets> = Vec::new();
                for ((t, p), v) in group.iter().flat_map(|g| g.offsets.iter()) {
                    match out.last_mut() {
                        Some((last, parts)) if last == t => parts.push((*p, Some(v.clone()))),
                        _ => out.push((t.clone(), vec![(*p, Some(v.clone()))])),
                    }
                }
                out
            }
        }
    }

    pub(super) fn delete_groups(&mut self, now: i64, reply: ReplyId, ids: Vec<String>) {
        let mut results = Vec::with_capacity(ids.len());
        let mut records = Vec::new();
        let mut deleted = Vec::new();
        for id in ids {
            let code = match self.groups.get_mut(&id) {
                _ if id.is_empty() => E::InvalidGroupId.code(),
                None => E::GroupIdNotFound.code(),
                Some(g) if g.is(GroupState::Dead) => E::GroupIdNotFound.code(),
                Some(g) if !g.is(GroupState::Empty) => E::NonEmptyGroup.code(),
                Some(g) => {
                    records.extend(tombstones(g));
                    g.pending_members.clear();
                    g.transition(GroupState::Dead, now);
                    deleted.push(id.clone());
                    NONE
                }
            };
            results.push((id, code));
        }
        if deleted.is_empty() {
            self.io.reply(reply, Reply::DeleteGroups(results));
            return;
        }
        tracing::info!(groups = ?deleted, "deleting groups");
        self.io.persist(
            records,
            Pending::RemoveGroups {
                groups: deleted,
                reply: Some(reply),
                results,
            },
        );
    }

    pub(super) fn delete_offsets(&mut self, _now: i64, reply: ReplyId, req: OffsetDeleteRequest) {
        let top = |code: i16| {
            Reply::DeleteOffsets(OffsetDeleteResponse {
                error: code,
                partitions: Vec::new(),
            })
        };
        let Some(g) = self.groups.get(&req.group_id) else {
            self.io.reply(reply, top(E::GroupIdNotFound.code()));
            return;
        };
        if g.is(GroupState::Dead) {
            self.io.reply(reply, top(E::GroupIdNotFound.code()));
            return;
        }
        let empty = g.is(GroupState::Empty);
        if !empty && g.protocol_type.as_deref() != Some("consumer") {
            self.io.reply(reply, top(E::NonEmptyGroup.code()));
            return;
        }
        // Unknown subscriptions count as subscribed to everything: never pull offsets from
        // under a live consumer.
        let subscribed = if empty { None } else { g.subscribed_topics() };
        let mut partitions = Vec::with_capacity(req.partitions.len());
        let mut records = Vec::new();
        let mut removed = Vec::new();
        for (topic, partition) in req.partitions {
            let in_use = !empty && subscribed.as_ref().is_none_or(|s| s.contains(&topic));
            if in_use {
                partitions.push((topic, partition, E::GroupSubscribedToTopic.code()));
                continue;
            }
            if g.offsets.contains_key(&(topic.clone(), partition)) {
                records.push(OffsetsRecord::Offset {
                    group: req.group_id.clone(),
                    topic: topic.clone(),
                    partition,
                    value: None,
                });
                removed.push((topic.clone(), partition));
            }
            partitions.push((topic, partition, NONE));
        }
        let response = Reply::DeleteOffsets(OffsetDeleteResponse {
            error: NONE,
            partitions,
        });
        if records.is_empty() {
            self.io.reply(reply, response);
            return;
        }
        self.io.persist(
            records,
            Pending::RemoveOffsets {
                group: req.group_id,
                partitions: removed,
                reply: Some((reply, response)),
            },
        );
    }

    /// KIP-211 retention: the offsets of an empty group expire `offsets.retention.minutes`
    /// after it became empty (or after their commit, if later; for a simple consumer's group,
    /// after their commit); a stable consumer group's offsets of topics it no longer
    /// subscribes to expire after their commit. An empty group left with no offsets is deleted.
    pub(super) fn expire_offsets(&mut self, now: i64) {
        let retention = self.config.offsets_retention_ms;
        let mut dead_records = Vec::new();
        let mut dead = Vec::new();
        let mut expired_total = 0usize;
        for g in self.groups.values_mut() {
            let expired = expired_offsets(g, now, retention);
            expired_total += expired.len();
            let mut records: Vec<OffsetsRecord> = expired
                .iter()
                .map(|(topic, partition)| OffsetsRecord::Offset {
                    group: g.group_id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                })
                .collect();
            let emptied = g.is(GroupState::Empty)
                && g.pending_members.is_empty()
                && g.offsets.len() == expired.len();
            if emptied {
                records.push(OffsetsRecord::Group {
                    group: g.group_id.clone(),
                    value: None,
                });
                if g.consumer.is_some() {
                    records.push(OffsetsRecord::ConsumerGroup {
                        group: g.group_id.clone(),
                        value: None,
                    });
                }
                dead_records.extend(records);
                g.transition(GroupState::Dead, now);
                dead.push(g.group_id.clone());
            } else if !expired.is_empty() {
                // Removed from memory when the tombstones are stored (see the ordering rule).
                self.io.persist(
                    records,
                    Pending::RemoveOffsets {
                        group: g.group_id.clone(),
                        partitions: expired,
                        reply: None,
                    },
                );
            }
        }
        if expired_total > 0 || !dead.is_empty() {
            tracing::info!(
                offsets = expired_total,
                groups = dead.len(),
                "expired offsets and groups"
            );
        }
        if !dead.is_empty() {
            self.io.persist(
                dead_records,
                Pending::RemoveGroups {
                    groups: dead,
                    reply: None,
                    results: Vec::new(),
                },
            );
        }
    }
}

/// The offsets of `g` past retention at `now`.
fn expired_offsets(g: &ClassicGroup, now: i64, retention: i64) -> Vec<(String, i32)> {
    match g.state {
        GroupState::Empty => {
            let since_empty = g.protocol_type.is_some().then_some(g.state_timestamp_ms);
            g.offsets
                .iter()
                .filter(|(_, v)| {
                    let base =
                        since_empty.map_or(v.commit_timestamp_ms, |s| s.max(v.commit_timestamp_ms));
                    now.saturating_sub(base) >= retention
                })
                .map(|(tp, _)| tp.clone())
                .collect()
        }
        GroupState::Stable => match g.subscribed_topics() {
            Some(topics) => g
                .offsets
                .iter()
                .filter(|((t, _), v)| {
                    !topics.contains(t) && now.saturating_sub(v.commit_timestamp_ms) >= retention
                })
                .map(|(tp, _)| tp.clone())
                .collect(),
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Tombstones for a group's metadata and every offset it holds.
fn tombstones(g: &ClassicGroup) -> Vec<OffsetsRecord> {
    let mut out: Vec<OffsetsRecord> = g
        .offsets
        .keys()
        .map(|(topic, partition)| OffsetsRecord::Offset {
            group: g.group_id.clone(),
            topic: topic.clone(),
            partition: *partition,
            value: None,
        })
        .collect();
    out.push(OffsetsRecord::Group {
        group: g.group_id.clone(),
        value: None,
    });
    if g.consumer.is_some() {
        out.push(OffsetsRecord::ConsumerGroup {
            group: g.group_id.clone(),
            value: None,
        });
    }
    out
}

/// Why an OffsetCommit is refused, if it is: the member's epoch fences it in a consumer-protocol
/// group (KIP-848), the member and generation in a classic one (commits without them only for
/// empty groups), and no commit during CompletingRebalance.
fn commit_refusal(g: &ClassicGroup, req: &CommitRequest, as_member: bool) -> Option<E> {
    let instance = req.group_instance_id.as_deref();
    let refused = if let Some(c) = g.consumer.as_deref() {
        // KIP-848: the member epoch fences commits (Kafka's `validateOffsetCommit`).
        if req.generation_id < 0 && c.members.is_empty() {
            None
        } else {
            match c.members.get(&req.member_id) {
                None => Some(E::UnknownMemberId),
                Some(m) if m.member_epoch != req.generation_id => Some(E::StaleMemberEpoch),
                Some(_) => None,
            }
        }
    } else if g.is(GroupState::Dead) {
        Some(E::CoordinatorNotAvailable)
    } else if req.generation_id < 0 && g.is(GroupState::Empty) {
        None
    } else if as_member {
        if g.is_static_member_fenced(instance, &req.member_id) {
            Some(E::FencedInstanceId)
        } else if !g.members.contains_key(&req.member_id) {
            Some(E::UnknownMemberId)
        } else if req.generation_id != g.generation_id {
            Some(E::IllegalGeneration)
        } else {
            None
        }
    } else {
        // Without member id and generation, commits are only for empty groups.
        Some(E::UnknownMemberId)
    };
    refused.or(if g.is(GroupState::CompletingRebalance) {
        Some(E::RebalanceInProgress)
    } else {
        None
    })
}
