//! The rebalance transitions every group request shares, on one group ([`Op`]): preparing a
//! rebalance, completing the join phase, handing out the leader's assignment, and removing
//! members. These follow Kafka's `GroupCoordinator` (`prepareRebalance`, `onCompleteJoin`,
//! `removeMemberAndUpdateGroup`, `InitialDelayedJoin`, pending-sync expiry).

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;

use super::api::{JoinResponse, Reply, ReplyId, SyncResponse, NONE};
use super::classic::{GroupState, InitialDelay};
use super::member::Member;
use super::records::OffsetsRecord;
use super::shard::{Op, Pending, Timer};

impl Op<'_> {
    fn group_id(&self) -> String {
        self.g.group_id.clone()
    }

    /// Restarts a member's session clock.
    pub(super) fn refresh_session(&mut self, member_id: &str) {
        let now = self.now;
        let Some(m) = self.g.members.get_mut(member_id) else {
            return;
        };
        m.session_deadline_ms = now.saturating_add(m.session_timeout_ms as i64);
        let at = m.session_deadline_ms;
        let group = self.group_id();
        self.io.schedule(
            at,
            Timer::Session {
                group,
                member: member_id.to_string(),
            },
        );
    }

    /// Sets a member's session deadline to `at` explicitly (a new member's join timeout).
    pub(super) fn set_session_deadline(&mut self, member_id: &str, at: i64) {
        if let Some(m) = self.g.members.get_mut(member_id) {
            m.session_deadline_ms = at;
            let group = self.group_id();
            self.io.schedule(
                at,
                Timer::Session {
                    group,
                    member: member_id.to_string(),
                },
            );
        }
    }

    fn set_join_deadline(&mut self, at: i64) {
        self.g.join_deadline_ms = Some(at);
        let group = self.group_id();
        self.io.schedule(at, Timer::Join { group });
    }

    /// Starts a rebalance unless one is already being prepared.
    pub(super) fn maybe_prepare_rebalance(&mut self) {
        if matches!(
            self.g.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance();
        }
    }

    /// Moves to PreparingRebalance: members waiting for an assignment are told to rejoin; an
    /// empty group waits `group.initial.rebalance.delay.ms`, any other its rebalance timeout
    /// (or less, once every member has rejoined).
    pub(super) fn prepare_rebalance(&mut self) {
        if self.g.is(GroupState::CompletingRebalance) {
            self.reset_and_propagate_assignment_error(E::RebalanceInProgress.code());
        }
        self.g.pending_sync.clear();
        self.g.pending_sync_deadline_ms = None;
        let was_empty = self.g.is(GroupState::Empty);
        self.g.transition(GroupState::PreparingRebalance, self.now);
        let rebalance_timeout = self.g.rebalance_timeout_ms();
        if was_empty {
            let delay = self.config.initial_rebalance_delay_ms;
            self.g.initial_delay = Some(InitialDelay {
                delay_ms: delay,
                remaining_ms: (rebalance_timeout - delay).max(0),
            });
            self.g.new_member_added = false;
            self.set_join_deadline(self.now.saturating_add(delay));
        } else {
            self.g.initial_delay = None;
            self.set_join_deadline(self.now.saturating_add(rebalance_timeout));
            self.try_complete_join();
        }
        tracing::debug!(group = %self.g.group_id, generation = self.g.generation_id, "preparing rebalance");
    }

    /// Completes the join phase early once every member has rejoined (never during the
    /// initial delay, as Kafka's `InitialDelayedJoin`).
    pub(super) fn try_complete_join(&mut self) {
        if self.g.is(GroupState::PreparingRebalance)
            && self.g.initial_delay.is_none()
            && self.g.has_all_members_joined()
        {
            self.complete_join();
        }
    }

    /// The join deadline passed: extend an initial delay if members kept arriving, else
    /// complete the join with whoever rejoined.
    pub(super) fn on_join_deadline(&mut self) {
        if !self.g.is(GroupState::PreparingRebalance) {
            self.g.join_deadline_ms = None;
            return;
        }
        if let Some(d) = self.g.initial_delay {
            if self.g.new_member_added && d.remaining_ms > 0 {
                self.g.new_member_added = false;
                let delay = self.config.initial_rebalance_delay_ms.min(d.remaining_ms);
                self.g.initial_delay = Some(InitialDelay {
                    delay_ms: delay,
                    remaining_ms: (d.remaining_ms - d.delay_ms).max(0),
                });
                self.set_join_deadline(self.now.saturating_add(delay));
                return;
            }
        }
        self.complete_join();
    }

    /// Kafka's `onCompleteJoin`: dynamic members that did not rejoin leave, the generation
    /// advances, the protocol is chosen and every waiting member gets its JoinGroup answer (the
    /// leader with the member list). Then each member must send SyncGroup within the
    /// rebalance timeout.
    pub(super) fn complete_join(&mut self) {
        self.g.join_deadline_ms = None;
        self.g.initial_delay = None;
        self.g.new_member_added = false;
        let not_rejoined: Vec<String> = self
            .g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in not_rejoined {
            if let Some(m) = self.g.remove(&id) {
                self.answer_removed(m, E::UnknownMemberId);
            }
        }
        if self.g.is(GroupState::Dead) {
            return;
        }
        self.g.generation_id = self.g.generation_id.wrapping_add(1);
        if self.g.members.is_empty() {
            self.g.protocol_name = None;
            self.g.transition(GroupState::Empty, self.now);
            self.store_group(None, Pending::Nothing);
            tracing::info!(group = %self.g.group_id, generation = self.g.generation_id, "group is empty");
            return;
        }
        self.g.protocol_name = self.g.select_protocol();
        self.g.transition(GroupState::CompletingRebalance, self.now);
        let ids: Vec<String> = self
            .g
            .members_in_order()
            .iter()
            .map(|m| m.member_id.clone())
            .collect();
        for id in &ids {
            let leader = self.g.is_leader(id);
            let response = self.g.join_response(id, leader, false);
            if let Some(m) = self.g.members.get_mut(id) {
                m.is_new = false;
                if let Some(w) = m.awaiting_join.take() {
                    self.io.reply(w.reply, Reply::Join(response));
                }
            }
            self.refresh_session(id);
        }
        self.g.pending_sync = ids.into_iter().collect();
        let at = self.now.saturating_add(self.g.rebalance_timeout_ms());
        self.g.pending_sync_deadline_ms = Some(at);
        let (group, generation) = (self.group_id(), self.g.generation_id);
        self.io
            .schedule(at, Timer::PendingSync { group, generation });
        tracing::info!(
            group = %self.g.group_id,
            generation = self.g.generation_id,
            members = self.g.members.len(),
            protocol = self.g.protocol_name.as_deref().unwrap_or_default(),
            "rebalance: join phase complete"
        );
    }

    /// Members that never sent SyncGroup are dropped and the group rebalances.
    pub(super) fn on_pending_sync_deadline(&mut self) {
        self.g.pending_sync_deadline_ms = None;
        if !matches!(
            self.g.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) || self.g.pending_sync.is_empty()
        {
            return;
        }
        let late: Vec<String> = self.g.pending_sync.iter().cloned().collect();
        tracing::info!(group = %self.g.group_id, members = ?late, "members did not sync in time");
        for id in late {
            if let Some(m) = self.g.remove(&id) {
                self.answer_removed(m, E::UnknownMemberId);
            }
        }
        self.prepare_rebalance();
    }

    /// Answers whatever a removed member was waiting for.
    pub(super) fn answer_removed(&mut self, m: Member, error: E) {
        if let Some(w) = m.awaiting_join {
            self.io.reply(
                w.reply,
                Reply::Join(JoinResponse::error(&m.member_id, error)),
            );
        }
        if let Some(r) = m.awaiting_sync {
            self.io.reply(r, Reply::Sync(SyncResponse::error(error)));
        }
    }

    /// Kafka's `removeMemberAndUpdateGroup`: a member left or expired.
    pub(super) fn remove_member_and_update(&mut self, member_id: &str) {
        let Some(m) = self.g.remove(member_id) else {
            return;
        };
        self.answer_removed(m, E::UnknownMemberId);
        match self.g.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance(),
            GroupState::PreparingRebalance => self.try_complete_join(),
        }
    }

    /// Clears the assignments and answers every waiting SyncGroup with `error`.
    pub(super) fn reset_and_propagate_assignment_error(&mut self, error: i16) {
        let mut replies: Vec<ReplyId> = Vec::new();
        for m in self.g.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(r) = m.awaiting_sync.take() {
                replies.push(r);
            }
        }
        for r in replies {
            self.io.reply(
                r,
                Reply::Sync(SyncResponse {
                    error,
                    ..SyncResponse::error(E::RebalanceInProgress)
                }),
            );
        }
    }

    /// Appends the group's metadata (with `assignments` in place of the members' own).
    pub(super) fn store_group(
        &mut self,
        assignments: Option<&BTreeMap<String, Bytes>>,
        then: Pending,
    ) {
        let record = OffsetsRecord::Group {
            group: self.group_id(),
            value: Some(self.g.to_value(assignments)),
        };
        self.io.persist(vec![record], then);
    }

    /// The leader's assignment is stored (or not): hand it to every member waiting in
    /// SyncGroup and become Stable, or make everyone rejoin.
    pub(super) fn on_sync_stored(
        &mut self,
        generation: i32,
        assignments: BTreeMap<String, Bytes>,
        result: Result<(), i16>,
    ) {
        if !(self.g.is(GroupState::CompletingRebalance) && self.g.generation_id == generation) {
            return;
        }
        match result {
            Ok(()) => {
                let (protocol_type, protocol_name) =
                    (self.g.protocol_type.clone(), self.g.protocol_name.clone());
                let mut replies = Vec::new();
                for m in self.g.members.values_mut() {
                    m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                    if let Some(r) = m.awaiting_sync.take() {
                        replies.push((r, m.assignment.clone()));
                    }
                }
                for (r, assignment) in replies {
                    self.io.reply(
                        r,
                        Reply::Sync(SyncResponse {
                            error: NONE,
                            protocol_type: protocol_type.clone(),
                            protocol_name: protocol_name.clone(),
                            assignment,
                        }),
                    );
                }
                self.g.transition(GroupState::Stable, self.now);
                tracing::info!(group = %self.g.group_id, generation, "group is stable");
            }
            Err(code) => {
                self.reset_and_propagate_assignment_error(code);
                self.maybe_prepare_rebalance();
            }
        }
    }

    /// A static member's replacement is stored: answer its JoinGroup with the current
    /// generation (it keeps its assignment), or undo the replacement.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_static_rejoin_stored(
        &mut self,
        generation: i32,
        reply: ReplyId,
        new_id: &str,
        old_id: &str,
        instance_id: &str,
        old: Member,
        result: Result<(), i16>,
    ) {
        let still_waiting = self.g.is(GroupState::Stable)
            && self.g.generation_id == generation
            && self
                .g
                .members
                .get(new_id)
                .and_then(|m| m.awaiting_join)
                .is_some_and(|w| w.reply == reply);
        if !still_waiting {
            // A rebalance began meanwhile; the member takes part in it.
            return;
        }
        match result {
            Ok(()) => {
                let leader = self.g.is_leader(new_id);
                let Some(w) = self
                    .g
                    .members
                    .get_mut(new_id)
                    .and_then(|m| m.awaiting_join.take())
                else {
                    return;
                };
                let response =
                    self.g
                        .join_response(new_id, leader, leader && w.supports_skip_assignment);
                self.io.reply(reply, Reply::Join(response));
            }
            Err(code) => {
                self.g.replace_static_member(instance_id, new_id, old_id);
                if let Some(m) = self.g.members.get_mut(old_id) {
                    m.protocols = old.protocols;
                    m.rebalance_timeout_ms = old.rebalance_timeout_ms;
                    m.session_timeout_ms = old.session_timeout_ms;
                    m.awaiting_join = None;
                }
                let mut response = JoinResponse::error(new_id, E::UnknownServerError);
                response.error = code;
                self.io.reply(reply, Reply::Join(response));
            }
        }
    }
}
