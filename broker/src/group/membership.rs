//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup on a shard, as Kafka's `GroupCoordinator`
//! handles them: validation and generation fencing, KIP-394 member ids, KIP-345 static
//! members, then the shared transitions in `rebalance`.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError as E;

use super::api::{
    HeartbeatRequest, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, Reply, ReplyId,
    SyncRequest, SyncResponse, NONE,
};
use super::classic::{ClassicGroup, GroupState};
use super::config::NEW_MEMBER_JOIN_TIMEOUT_MS;
use super::member::{JoinWaiter, Member};
use super::shard::{GroupShard, Op, Pending, Timer};

impl GroupShard {
    pub(super) fn join(&mut self, now: i64, reply: ReplyId, req: JoinRequest) {
        let fail = |shard: &mut GroupShard, e: E| {
            shard
                .io
                .reply(reply, Reply::Join(JoinResponse::error(&req.member_id, e)));
        };
        if req.group_id.is_empty() {
            return fail(self, E::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(self, E::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return fail(self, E::InconsistentGroupProtocol);
        }
        let unknown = req.member_id.is_empty();
        if !self.groups.contains_key(&req.group_id) {
            if !unknown {
                return fail(self, E::UnknownMemberId);
            }
            self.groups
                .insert(req.group_id.clone(), ClassicGroup::new(&req.group_id, now));
        }
        if let Some(g) = self.groups.get_mut(&req.group_id) {
            match g.consumer.as_deref() {
                Some(c) if !c.members.is_empty() => {
                    return fail(self, E::InconsistentGroupProtocol);
                }
                Some(_) => {
                    // An empty consumer-protocol group becomes a classic group, as in Kafka.
                    g.consumer = None;
                    g.protocol_type = None;
                    let tombstone = super::records::OffsetsRecord::ConsumerGroup {
                        group: req.group_id.clone(),
                        value: None,
                    };
                    self.io.persist(vec![tombstone], Pending::Nothing);
                }
                None => {}
            }
        }
        let created_now = self
            .groups
            .get(&req.group_id)
            .is_some_and(|g| g.generation_id == 0 && g.members.is_empty() && g.offsets.is_empty());
        let Some(mut op) = self.op(&req.group_id, now) else {
            return;
        };
        let refused = if op.g.is(GroupState::Dead) {
            Some(E::CoordinatorNotAvailable)
        } else if !op.g.supports_protocols(&req.protocol_type, &req.protocols) {
            Some(E::InconsistentGroupProtocol)
        } else if unknown
            && req.group_instance_id.is_none()
            && op.g.members.len() + op.g.pending_members.len() >= op.config.max_size
        {
            Some(E::GroupMaxSizeReached)
        } else {
            None
        };
        if let Some(e) = refused {
            if created_now && op.g.pending_members.is_empty() && op.g.is(GroupState::Empty) {
                self.groups.remove(&req.group_id);
            }
            return fail(self, e);
        }
        if unknown {
            op.unknown_member_join(reply, req);
        } else {
            op.known_member_join(reply, req);
        }
        // As Kafka's `checkAndComplete` after every join: the join phase may be complete now.
        op.try_complete_join();
    }

    pub(super) fn sync(&mut self, now: i64, reply: ReplyId, req: SyncRequest) {
        let fail = |shard: &mut GroupShard, e: E| {
            shard.io.reply(reply, Reply::Sync(SyncResponse::error(e)));
        };
        let Some(mut op) = self.op(&req.group_id, now) else {
            return fail(self, E::UnknownMemberId);
        };
        let g = &op.g;
        let refused = if g.is(GroupState::Dead) {
            Some(E::CoordinatorNotAvailable)
        } else if g.is_static_member_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            Some(E::FencedInstanceId)
        } else if !g.members.contains_key(&req.member_id) {
            Some(E::UnknownMemberId)
        } else if req.generation_id != g.generation_id {
            Some(E::IllegalGeneration)
        } else if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| g.protocol_type.as_ref() != Some(t))
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| g.protocol_name.as_ref() != Some(n))
        {
            Some(E::InconsistentGroupProtocol)
        } else {
            match g.state {
                GroupState::Empty => Some(E::UnknownMemberId),
                GroupState::PreparingRebalance => Some(E::RebalanceInProgress),
                _ => None,
            }
        };
        if let Some(e) = refused {
            return fail(self, e);
        }
        let member_id = req.member_id.clone();
        op.g.pending_sync.remove(&member_id);
        op.refresh_session(&member_id);
        if op.g.is(GroupState::Stable) {
            let response = SyncResponse {
                error: NONE,
                protocol_type: op.g.protocol_type.clone(),
                protocol_name: op.g.protocol_name.clone(),
                assignment: op.g.members[&member_id].assignment.clone(),
            };
            op.io.reply(reply, Reply::Sync(response));
            return;
        }
        // CompletingRebalance: wait for the leader's assignment to be stored.
        if let Some(m) = op.g.members.get_mut(&member_id) {
            if let Some(old) = m.awaiting_sync.replace(reply) {
                op.io.reply(
                    old,
                    Reply::Sync(SyncResponse::error(E::RebalanceInProgress)),
                );
            }
        }
        if op.g.is_leader(&member_id) {
            let assignments: BTreeMap<_, _> = req
                .assignments
                .into_iter()
                .filter(|(id, _)| op.g.members.contains_key(id))
                .collect();
            let generation = op.g.generation_id;
            let group = op.g.group_id.clone();
            let stored = assignments.clone();
            op.store_group(
                Some(&stored),
                Pending::Sync {
                    group,
                    generation,
                    assignments,
                },
            );
        }
    }

    pub(super) fn heartbeat(&mut self, now: i64, reply: ReplyId, req: HeartbeatRequest) {
        let code = match self.op(&req.group_id, now) {
            None => E::UnknownMemberId.code(),
            Some(mut op) => {
                let g = &op.g;
                if g.is(GroupState::Dead) {
                    E::CoordinatorNotAvailable.code()
                } else if g
                    .is_static_member_fenced(req.group_instance_id.as_deref(), &req.member_id)
                {
                    E::FencedInstanceId.code()
                } else if !g.members.contains_key(&req.member_id) {
                    E::UnknownMemberId.code()
                } else if req.generation_id != g.generation_id {
                    E::IllegalGeneration.code()
                } else {
                    match g.state {
                        GroupState::Empty | GroupState::Dead => E::UnknownMemberId.code(),
                        GroupState::PreparingRebalance => {
                            op.refresh_session(&req.member_id);
                            E::RebalanceInProgress.code()
                        }
                        GroupState::CompletingRebalance | GroupState::Stable => {
                            op.refresh_session(&req.member_id);
                            NONE
                        }
                    }
                }
            }
        };
        self.io.reply(reply, Reply::Heartbeat(code));
    }

    pub(super) fn leave(&mut self, now: i64, reply: ReplyId, req: LeaveRequest) {
        let Some(mut op) = self.op(&req.group_id, now) else {
            let members = req
                .members
                .into_iter()
                .map(|m| (m, E::UnknownMemberId.code()))
                .collect();
            self.io.reply(
                reply,
                Reply::Leave(LeaveResponse {
                    error: NONE,
                    members,
                }),
            );
            return;
        };
        if op.g.is(GroupState::Dead) {
            op.io.reply(
                reply,
                Reply::Leave(LeaveResponse {
                    error: E::CoordinatorNotAvailable.code(),
                    members: Vec::new(),
                }),
            );
            return;
        }
        let mut results = Vec::with_capacity(req.members.len());
        for lm in req.members {
            let instance = lm.group_instance_id.as_deref();
            let code = if lm.member_id.is_empty() {
                // An admin removing a static member by its instance id (KIP-345).
                match instance
                    .and_then(|i| op.g.static_member(i))
                    .map(str::to_string)
                {
                    Some(id) => {
                        op.remove_member_and_update(&id);
                        NONE
                    }
                    None => E::UnknownMemberId.code(),
                }
            } else if op.g.is_static_member_fenced(instance, &lm.member_id) {
                E::FencedInstanceId.code()
            } else if op.g.pending_members.remove(&lm.member_id).is_some() {
                op.try_complete_join();
                NONE
            } else if !op.g.members.contains_key(&lm.member_id) {
                E::UnknownMemberId.code()
            } else {
                tracing::info!(group = %op.g.group_id, member = %lm.member_id, "member left the group");
                op.remove_member_and_update(&lm.member_id);
                NONE
            };
            results.push((lm, code));
        }
        op.io.reply(
            reply,
            Reply::Leave(LeaveResponse {
                error: NONE,
                members: results,
            }),
        );
    }
}

impl Op<'_> {
    fn new_member(&self, member_id: String, reply: ReplyId, req: &JoinRequest) -> Member {
        Member {
            member_id,
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols.clone(),
            assignment: bytes::Bytes::new(),
            awaiting_join: Some(JoinWaiter {
                reply,
                supports_skip_assignment: req.supports_skip_assignment,
            }),
            awaiting_sync: None,
            session_deadline_ms: 0,
            is_new: true,
            join_seq: 0,
        }
    }

    /// A join without a member id.
    fn unknown_member_join(&mut self, reply: ReplyId, req: JoinRequest) {
        let new_id = req.new_member_id.clone();
        if let Some(instance) = req.group_instance_id.clone() {
            match self.g.static_member(&instance).map(str::to_string) {
                Some(old_id) => {
                    self.update_static_member_and_rebalance(reply, &instance, &old_id, &new_id, req)
                }
                None => self.add_member_and_rebalance(reply, new_id, &req),
            }
        } else if req.require_known_member_id {
            // KIP-394: hand out the id; the member must join again with it.
            let at = self.now.saturating_add(req.session_timeout_ms as i64);
            self.g.pending_members.insert(new_id.clone(), at);
            let group = self.g.group_id.clone();
            self.io.schedule(
                at,
                Timer::PendingMember {
                    group,
                    member: new_id.clone(),
                },
            );
            self.io.reply(
                reply,
                Reply::Join(JoinResponse::error(new_id, E::MemberIdRequired)),
            );
        } else {
            self.add_member_and_rebalance(reply, new_id, &req);
        }
    }

    /// A join with a member id.
    fn known_member_join(&mut self, reply: ReplyId, req: JoinRequest) {
        let id = req.member_id.clone();
        let fail = |op: &mut Op<'_>, e: E| {
            op.io
                .reply(reply, Reply::Join(JoinResponse::error(&req.member_id, e)));
        };
        if self.g.pending_members.remove(&id).is_some() {
            return self.add_member_and_rebalance(reply, id, &req);
        }
        if self
            .g
            .is_static_member_fenced(req.group_instance_id.as_deref(), &id)
        {
            return fail(self, E::FencedInstanceId);
        }
        let Some(member) = self.g.members.get(&id) else {
            return fail(self, E::UnknownMemberId);
        };
        let same = member.matches(&req.protocols);
        match self.g.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(reply, &req),
            GroupState::CompletingRebalance => {
                if same {
                    // It missed its JoinGroup answer: send the current one again.
                    let leader = self.g.is_leader(&id);
                    let response = self.g.join_response(&id, leader, false);
                    self.io.reply(reply, Reply::Join(response));
                } else {
                    self.update_member_and_rebalance(reply, &req);
                }
            }
            GroupState::Stable => {
                if self.g.is_leader(&id) || !same {
                    // The leader rejoins to make the group reassign (it saw metadata change).
                    self.update_member_and_rebalance(reply, &req);
                } else {
                    let response = self.g.join_response(&id, false, false);
                    self.io.reply(reply, Reply::Join(response));
                }
            }
            GroupState::Empty | GroupState::Dead => fail(self, E::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(&mut self, reply: ReplyId, member_id: String, req: &JoinRequest) {
        let member = self.new_member(member_id.clone(), reply, req);
        if self.g.is(GroupState::PreparingRebalance) && self.g.initial_delay.is_some() {
            self.g.new_member_added = true;
        }
        self.g.add(member);
        let at = self.now.saturating_add(NEW_MEMBER_JOIN_TIMEOUT_MS);
        self.set_session_deadline(&member_id, at);
        tracing::debug!(group = %self.g.group_id, member = %member_id, "member joins");
        self.maybe_prepare_rebalance();
    }

    fn update_member_and_rebalance(&mut self, reply: ReplyId, req: &JoinRequest) {
        let Some(m) = self.g.members.get_mut(&req.member_id) else {
            return;
        };
        m.protocols = req.protocols.clone();
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        let waiter = JoinWaiter {
            reply,
            supports_skip_assignment: req.supports_skip_assignment,
        };
        if let Some(old) = m.awaiting_join.replace(waiter) {
            // The same member joined again (a retry on a new connection): the rejoin wins.
            self.io.reply(
                old.reply,
                Reply::Join(JoinResponse::error(&req.member_id, E::RebalanceInProgress)),
            );
        }
        self.maybe_prepare_rebalance();
    }

    /// KIP-345: a static member came back without its member id (a restarted process). It
    /// takes a new id and fences the old one; while the group is Stable and the member's
    /// protocols are unchanged it keeps its assignment without a rebalance.
    fn update_static_member_and_rebalance(
        &mut self,
        reply: ReplyId,
        instance_id: &str,
        old_id: &str,
        new_id: &str,
        req: JoinRequest,
    ) {
        let Some(old_member) = self.g.members.get_mut(old_id) else {
            return;
        };
        let waiting_join = old_member.awaiting_join.take();
        let waiting_sync = old_member.awaiting_sync.take();
        let old = old_member.clone();
        if let Some(w) = waiting_join {
            self.io.reply(
                w.reply,
                Reply::Join(JoinResponse::error(old_id, E::FencedInstanceId)),
            );
        }
        if let Some(r) = waiting_sync {
            self.io
                .reply(r, Reply::Sync(SyncResponse::error(E::FencedInstanceId)));
        }
        self.g.replace_static_member(instance_id, old_id, new_id);
        if let Some(m) = self.g.members.get_mut(new_id) {
            m.protocols = req.protocols.clone();
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            m.awaiting_join = Some(JoinWaiter {
                reply,
                supports_skip_assignment: req.supports_skip_assignment,
            });
        }
        self.refresh_session(new_id);
        tracing::info!(group = %self.g.group_id, instance = instance_id, old = old_id, new = new_id, "static member rejoined");
        match self.g.state {
            GroupState::Stable => {
                let protocol = self.g.protocol_name.clone();
                let unchanged = self.g.select_protocol() == protocol
                    && protocol.as_deref().is_some_and(|p| {
                        old.metadata(p) == self.g.members.get(new_id).and_then(|m| m.metadata(p))
                    });
                if unchanged {
                    let (group, generation) = (self.g.group_id.clone(), self.g.generation_id);
                    self.store_group(
                        None,
                        Pending::StaticRejoin {
                            group,
                            generation,
                            reply,
                            new_id: new_id.to_string(),
                            old_id: old_id.to_string(),
                            instance_id: instance_id.to_string(),
                            old: Box::new(old),
                        },
                    );
                } else {
                    self.prepare_rebalance();
                }
            }
            GroupState::CompletingRebalance => self.prepare_rebalance(),
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => self.maybe_prepare_rebalance(),
        }
    }
}
