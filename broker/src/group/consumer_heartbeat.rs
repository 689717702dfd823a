//! ConsumerGroupHeartbeat on a shard: finds or creates the consumer-protocol group (a group id
//! is one type or the other), runs the heartbeat on it ([`super::consumer`]), stores the group
//! when its stored part changed (the answer waits for the append), and keeps its timers.
//!
//! Unlike the classic protocol's stored changes, a consumer group changes memory at once and
//! the heartbeat's answer waits for the append; a failed append is reported to the member,
//! which retries (a later heartbeat stores the group again).

use kafka_protocol::error::ResponseError as E;

use super::api::{ConsumerHeartbeatRequest, ConsumerHeartbeatResponse, Reply, ReplyId};
use super::classic::{ClassicGroup, GroupState};
use super::consumer::ConsumerGroup;
use super::consumer_records::consumer_group_value;
use super::records::OffsetsRecord;
use super::shard::{GroupShard, Pending, Timer};

impl GroupShard {
    pub(super) fn consumer_heartbeat(
        &mut self,
        now: i64,
        reply: ReplyId,
        req: ConsumerHeartbeatRequest,
    ) {
        let refuse = |io: &mut super::shard::Outbox, e: E, msg: Option<String>| {
            io.reply(
                reply,
                Reply::ConsumerHeartbeat(ConsumerHeartbeatResponse::error(e, msg)),
            );
        };
        let group_id = req.group_id.clone();
        let mut records = Vec::new();
        match self.groups.get_mut(&group_id) {
            None if req.member_epoch != 0 => {
                let msg = format!("consumer group {group_id} not found");
                refuse(&mut self.io, E::GroupIdNotFound, Some(msg));
                return;
            }
            None => {
                let mut g = ClassicGroup::new(&group_id, now);
                g.consumer = Some(Box::default());
                g.protocol_type = Some("consumer".into());
                self.groups.insert(group_id.clone(), g);
            }
            Some(g) if g.is(GroupState::Dead) => {
                refuse(&mut self.io, E::CoordinatorNotAvailable, None);
                return;
            }
            Some(g) if g.consumer.is_none() => {
                // An empty classic group becomes a consumer group, as in Kafka.
                if !g.is(GroupState::Empty) || !g.pending_members.is_empty() {
                    let msg = format!("group {group_id} is not a consumer group");
                    refuse(&mut self.io, E::GroupIdNotFound, Some(msg));
                    return;
                }
                if req.member_epoch != 0 {
                    refuse(&mut self.io, E::UnknownMemberId, None);
                    return;
                }
                if g.protocol_type.is_some() {
                    records.push(OffsetsRecord::Group {
                        group: group_id.clone(),
                        value: None,
                    });
                }
                g.consumer = Some(Box::default());
                g.protocol_type = Some("consumer".into());
                g.protocol_name = None;
                g.leader_id = None;
            }
            Some(_) => {}
        }
        let Some(g) = self.groups.get_mut(&group_id) else {
            return;
        };
        let Some(c) = g.consumer.as_deref_mut() else {
            return;
        };
        let before = consumer_group_value(c);
        let result = c.heartbeat(now, &req, &self.config);
        let response = match result {
            Ok(r) => r,
            Err((e, msg)) => ConsumerHeartbeatResponse::error(e, msg),
        };
        self.after_consumer_change(now, &group_id, before, records, reply, response);
    }

    /// After a consumer group changed: its classic-facing state, its timers, and a stored copy
    /// if its stored part changed; then the answer (after the append, if any).
    pub(super) fn after_consumer_change(
        &mut self,
        now: i64,
        group_id: &str,
        before: bytes::Bytes,
        mut records: Vec<OffsetsRecord>,
        reply: ReplyId,
        response: ConsumerHeartbeatResponse,
    ) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(c) = g.consumer.as_deref() else {
            return;
        };
        let after = consumer_group_value(c);
        let state = if c.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        let timers: Vec<(i64, Timer)> = c
            .members
            .values()
            .flat_map(|m| {
                let session = Timer::ConsumerSession {
                    group: group_id.to_string(),
                    member: m.member_id.clone(),
                };
                let revocation = m.revocation_deadline_ms.map(|at| {
                    (
                        at,
                        Timer::ConsumerRevocation {
                            group: group_id.to_string(),
                            member: m.member_id.clone(),
                        },
                    )
                });
                std::iter::once((m.session_deadline_ms, session)).chain(revocation)
            })
            .collect();
        let stored = (after != before || !records.is_empty()).then(|| c.clone());
        if !g.is(state) {
            g.transition(state, now);
        }
        for (at, t) in timers {
            self.io.schedule(at, t);
        }
        match stored {
            Some(c) => {
                records.push(OffsetsRecord::ConsumerGroup {
                    group: group_id.to_string(),
                    value: Some(Box::new(c)),
                });
                self.io
                    .persist(records, Pending::ConsumerReply { reply, response });
            }
            None if reply == NO_REPLY => {}
            None => self.io.reply(reply, Reply::ConsumerHeartbeat(response)),
        }
    }

    /// A session or revocation deadline passed: the member is removed if it still applies.
    pub(super) fn consumer_timer(&mut self, now: i64, group_id: &str, member: &str, session: bool) {
        let config = self.config.clone();
        let Some(c) = self
            .groups
            .get_mut(group_id)
            .and_then(|g| g.consumer.as_deref_mut())
        else {
            return;
        };
        let due = c.members.get(member).is_some_and(|m| {
            if session {
                m.session_deadline_ms <= now
            } else {
                m.revocation_deadline_ms.is_some_and(|d| d <= now)
            }
        });
        if !due {
            return;
        }
        tracing::info!(group = %group_id, member, session, "consumer group member removed");
        let before = consumer_group_value(c);
        c.remove_member(member, &config);
        let response = ConsumerHeartbeatResponse::error(E::UnknownMemberId, None);
        self.after_consumer_change(now, group_id, before, Vec::new(), NO_REPLY, response);
    }

    /// OffsetFetch v9 from a member of a consumer-protocol group: `Some` is the refusal
    /// (Kafka's `validateOffsetFetch`). Requests without a member (admin tools, clients not
    /// in the group) and classic groups pass.
    pub fn check_member_epoch(&self, group_id: &str, member_id: &str, epoch: i32) -> Option<E> {
        let c = self.consumer_group(group_id)?;
        if member_id.is_empty() && epoch < 0 {
            return None;
        }
        match c.members.get(member_id) {
            None => Some(E::UnknownMemberId),
            Some(m) if m.member_epoch != epoch => Some(E::StaleMemberEpoch),
            Some(_) => None,
        }
    }

    pub fn consumer_group(&self, group_id: &str) -> Option<&ConsumerGroup> {
        self.groups.get(group_id)?.consumer.as_deref()
    }
}

/// The reply id of a change no request waits for (a timer's).
pub(super) const NO_REPLY: ReplyId = ReplyId::MAX;
