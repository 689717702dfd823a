//! A coordinator shard: every group of one `__consumer_offsets` partition, as a sans-IO state
//! machine. [`GroupShard::step`] takes the time and one input and returns the effects (replies
//! to send, records to append); timers fire on [`Input::Tick`] at [`GroupShard::next_deadline`].
//!
//! The protocol logic lives in `membership` (JoinGroup, SyncGroup, Heartbeat, LeaveGroup),
//! `rebalance` (the transitions they share) and `offsets` (commits, deletions, expiry).
//!
//! Ordering rule: every change that is stored (committed offsets, deleted offsets, deleted
//! groups) is applied to memory when its append completes, and appends complete in the order
//! they were emitted, so memory always matches what replaying the log would give.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;

use super::api::{Effect, Input, PersistId, Reply, ReplyId};
use super::classic::{ClassicGroup, GroupState};
use super::config::GroupConfig;
use super::member::Member;
use super::records::{OffsetValue, OffsetsRecord};

/// Timer entries kept before stale ones are dropped by rebuilding the queue from the groups.
const TIMER_QUEUE_REBUILD_MIN: usize = 65_536;

/// What a timer checks when it fires. Timers are not cancelled: each one re-checks the
/// deadline now stored in the group and does nothing if that has moved on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A member's session.
    Session { group: String, member: String },
    /// A member id handed out with MEMBER_ID_REQUIRED.
    PendingMember { group: String, member: String },
    /// The end of a rebalance's join phase (or of an initial delay).
    Join { group: String },
    /// Members that must send SyncGroup by now.
    PendingSync { group: String, generation: i32 },
    /// The periodic offsets retention check.
    OffsetExpiry,
    /// A consumer-protocol member's session.
    ConsumerSession { group: String, member: String },
    /// A consumer-protocol member that must have released its revoked partitions by now.
    ConsumerRevocation { group: String, member: String },
}

/// What to do when an append completes.
#[derive(Debug, Clone)]
pub(super) enum Pending {
    /// A consumer group is stored: answer its heartbeat (unless `reply` is `NO_REPLY`).
    ConsumerReply {
        reply: ReplyId,
        response: super::api::ConsumerHeartbeatResponse,
    },
    /// Group metadata stored for its own sake (an emptied group).
    Nothing,
    /// Offsets to apply, then the OffsetCommit reply.
    Commit {
        reply: ReplyId,
        group: String,
        results: Vec<(String, i32, i16)>,
        offsets: Vec<((String, i32), OffsetValue)>,
    },
    /// The leader's assignment is stored: hand it out.
    Sync {
        group: String,
        generation: i32,
        assignments: BTreeMap<String, Bytes>,
    },
    /// A static member's new id is stored: answer its JoinGroup without a rebalance.
    StaticRejoin {
        group: String,
        generation: i32,
        reply: ReplyId,
        new_id: String,
        old_id: String,
        instance_id: String,
        old: Box<Member>,
    },
    /// Offsets deleted (OffsetDelete or expiry): remove them, then maybe reply.
    RemoveOffsets {
        group: String,
        partitions: Vec<(String, i32)>,
        reply: Option<(ReplyId, Reply)>,
    },
    /// Groups deleted (DeleteGroups or expiry; already Dead): remove them, then maybe reply.
    RemoveGroups {
        groups: Vec<String>,
        reply: Option<ReplyId>,
        results: Vec<(String, i16)>,
    },
}

/// Everything a step produces besides group state: effects, timers, pending appends. Kept
/// apart from the groups so that protocol code can hold a group and the outbox at once.
#[derive(Debug)]
pub(super) struct Outbox {
    pub(super) effects: Vec<Effect>,
    timers: BinaryHeap<Reverse<(i64, Timer)>>,
    pending: BTreeMap<PersistId, Pending>,
    next_persist_id: PersistId,
}

impl Outbox {
    pub(super) fn reply(&mut self, id: ReplyId, reply: Reply) {
        self.effects.push(Effect::Reply(id, reply));
    }

    pub(super) fn schedule(&mut self, at_ms: i64, timer: Timer) {
        self.timers.push(Reverse((at_ms, timer)));
    }

    /// Emits an append of `records`; `then` runs when it completes.
    pub(super) fn persist(&mut self, records: Vec<OffsetsRecord>, then: Pending) {
        let id = self.next_persist_id;
        self.next_persist_id += 1;
        self.pending.insert(id, then);
        self.effects.push(Effect::Persist(id, records));
    }
}

/// One protocol operation on one group: the group, the outbox, the config and the time.
pub(super) struct Op<'a> {
    pub(super) g: &'a mut ClassicGroup,
    pub(super) io: &'a mut Outbox,
    pub(super) config: &'a GroupConfig,
    pub(super) now: i64,
}

/// The groups of one offsets-topic partition.
#[derive(Debug)]
pub struct GroupShard {
    pub(super) config: GroupConfig,
    pub(super) groups: BTreeMap<String, ClassicGroup>,
    pub(super) io: Outbox,
    timer_rebuild_at: usize,
    /// Offsets of TxnOffsetCommits whose transaction is not complete, by producer id: they
    /// take effect on the commit marker and are dropped on abort.
    pub pending_txn: std::collections::HashMap<i64, Vec<OffsetsRecord>>,
}

impl GroupShard {
    /// An empty shard; the first offsets retention check is due one interval after `now_ms`.
    pub fn new(config: GroupConfig, now_ms: i64) -> Self {
        GroupShard::with_groups(config, BTreeMap::new(), now_ms)
    }

    /// A shard of loaded groups; each member's session runs from `now_ms`.
    pub fn with_groups(
        config: GroupConfig,
        groups: BTreeMap<String, ClassicGroup>,
        now_ms: i64,
    ) -> Self {
        let mut shard = GroupShard {
            config,
            groups,
            io: Outbox {
                effects: Vec::new(),
                timers: BinaryHeap::new(),
                pending: BTreeMap::new(),
                next_persist_id: 0,
            },
            timer_rebuild_at: TIMER_QUEUE_REBUILD_MIN,
            pending_txn: Default::default(),
        };
        shard.rebuild_timers();
        let first = now_ms.saturating_add(shard.config.offsets_retention_check_interval_ms);
        shard.io.schedule(first, Timer::OffsetExpiry);
        shard
    }

    /// Applies one input at `now_ms` and returns what the shell must do.
    pub fn step(&mut self, now_ms: i64, input: Input) -> Vec<Effect> {
        match input {
            Input::Join(reply, req) => self.join(now_ms, reply, req),
            Input::Sync(reply, req) => self.sync(now_ms, reply, req),
            Input::Heartbeat(reply, req) => self.heartbeat(now_ms, reply, req),
            Input::Leave(reply, req) => self.leave(now_ms, reply, req),
            Input::Commit(reply, req) => self.commit(now_ms, reply, req),
            Input::DeleteGroups(reply, groups) => self.delete_groups(now_ms, reply, groups),
            Input::DeleteOffsets(reply, req) => self.delete_offsets(now_ms, reply, req),
            Input::ConsumerHeartbeat(reply, req) => self.consumer_heartbeat(now_ms, reply, req),
            Input::Persisted(id, result) => self.persisted(now_ms, id, result),
            Input::TxnOffsets(reply, producer_id, records) => {
                self.pending_txn
                    .entry(producer_id)
                    .or_default()
                    .extend(records);
                self.io.reply(reply, Reply::Done);
            }
            Input::TxnMarker(reply, producer_id, commit) => {
                self.complete_txn(now_ms, producer_id, commit);
                self.io.reply(reply, Reply::Done);
            }
            Input::Tick => self.fire_timers(now_ms),
        }
        if self.io.timers.len() > self.timer_rebuild_at {
            self.rebuild_timers();
            self.timer_rebuild_at = TIMER_QUEUE_REBUILD_MIN.max(self.io.timers.len() * 4);
        }
        std::mem::take(&mut self.io.effects)
    }

    /// A transaction marker of `producer_id` is durable in this shard's partition: its
    /// pending offsets take effect (commit) or are dropped (abort), as a replay would do.
    fn complete_txn(&mut self, now: i64, producer_id: i64, commit: bool) {
        let Some(records) = self.pending_txn.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        for r in records {
            if let OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } = r
            {
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| ClassicGroup::new(&group, now));
                match value {
                    Some(v) => {
                        g.offsets.insert((topic, partition), v);
                    }
                    None => {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            }
        }
    }

    /// Whether a transaction that is not complete holds an offset of `group_id` for the
    /// partition (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.pending_txn.values().flatten().any(|r| {
            matches!(r, OffsetsRecord::Offset { group, topic: t, partition: p, .. }
                if group == group_id && t == topic && *p == partition)
        })
    }

    /// When the next timer is due; the shell sends [`Input::Tick`] then.
    pub fn next_deadline(&self) -> Option<i64> {
        self.io.timers.peek().map(|Reverse((at, _))| *at)
    }

    pub fn group(&self, group_id: &str) -> Option<&ClassicGroup> {
        self.groups.get(group_id)
    }

    /// Every group, by id.
    pub fn groups(&self) -> impl Iterator<Item = &ClassicGroup> {
        self.groups.values()
    }

    /// Appends emitted but not yet reported.
    pub fn pending_appends(&self) -> usize {
        self.io.pending.len()
    }

    pub(super) fn op(&mut self, group_id: &str, now: i64) -> Option<Op<'_>> {
        let g = self.groups.get_mut(group_id)?;
        Some(Op {
            g,
            io: &mut self.io,
            config: &self.config,
            now,
        })
    }

    /// Replaces the timer queue with one entry per live deadline (drops stale entries).
    fn rebuild_timers(&mut self) {
        let expiry = self
            .io
            .timers
            .iter()
            .filter(|Reverse((_, t))| *t == Timer::OffsetExpiry)
            .map(|Reverse((at, _))| *at)
            .min();
        self.io.timers.clear();
        if let Some(at) = expiry {
            self.io.schedule(at, Timer::OffsetExpiry);
        }
        for g in self.groups.values() {
            let group = g.group_id.clone();
            for m in g.consumer.iter().flat_map(|c| c.members.values()) {
                self.io.schedule(
                    m.session_deadline_ms,
                    Timer::ConsumerSession {
                        group: group.clone(),
                        member: m.member_id.clone(),
                    },
                );
                if let Some(at) = m.revocation_deadline_ms {
                    self.io.schedule(
                        at,
                        Timer::ConsumerRevocation {
                            group: group.clone(),
                            member: m.member_id.clone(),
                        },
                    );
                }
            }
            for m in g.members.values() {
                self.io.timers.push(Reverse((
                    m.session_deadline_ms,
                    Timer::Session {
                        group: group.clone(),
                        member: m.member_id.clone(),
                    },
                )));
            }
            for (member, at) in &g.pending_members {
                self.io.timers.push(Reverse((
                    *at,
                    Timer::PendingMember {
                        group: group.clone(),
                        member: member.clone(),
                    },
                )));
            }
            if let Some(at) = g.join_deadline_ms {
                self.io.schedule(
                    at,
                    Timer::Join {
                        group: group.clone(),
                    },
                );
            }
            if let Some(at) = g.pending_sync_deadline_ms {
                self.io.schedule(
                    at,
                    Timer::PendingSync {
                        group: group.clone(),
                        generation: g.generation_id,
                    },
                );
            }
        }
    }

    fn fire_timers(&mut self, now: i64) {
        while let Some(Reverse((at, _))) = self.io.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.io.timers.pop() else {
                break;
            };
            self.fire(now, timer);
        }
    }

    fn fire(&mut self, now: i64, timer: Timer) {
        match timer {
            Timer::Session { group, member } => {
                if let Some(mut op) = self.op(&group, now) {
                    if op
                        .g
                        .members
                        .get(&member)
                        .is_some_and(|m| m.has_expired(now))
                    {
                        tracing::info!(group = %group, member = %member, "member session expired");
                        op.remove_member_and_update(&member);
                    }
                }
            }
            Timer::PendingMember { group, member } => {
                if let Some(mut op) = self.op(&group, now) {
                    if op.g.pending_members.get(&member).is_some_and(|d| *d <= now) {
                        op.g.pending_members.remove(&member);
                        op.try_complete_join();
                    }
                }
            }
            Timer::Join { group } => {
                if let Some(mut op) = self.op(&group, now) {
                    if op.g.join_deadline_ms.is_some_and(|d| d <= now) {
                        op.on_join_deadline();
                    }
                }
            }
            Timer::PendingSync { group, generation } => {
                if let Some(mut op) = self.op(&group, now) {
                    if op.g.generation_id == generation
                        && op.g.pending_sync_deadline_ms.is_some_and(|d| d <= now)
                    {
                        op.on_pending_sync_deadline();
                    }
                }
            }
            Timer::ConsumerSession { group, member } => {
                self.consumer_timer(now, &group, &member, true);
            }
            Timer::ConsumerRevocation { group, member } => {
                self.consumer_timer(now, &group, &member, false);
            }
            Timer::OffsetExpiry => {
                self.expire_offsets(now);
                let next = now.saturating_add(self.config.offsets_retention_check_interval_ms);
                self.io.schedule(next, Timer::OffsetExpiry);
            }
        }
    }

    /// An append to the offsets topic completed (or failed): what was waiting for it goes on.
    fn persisted(&mut self, now: i64, id: PersistId, result: Result<(), i16>) {
        let Some(pending) = self.io.pending.remove(&id) else {
            tracing::error!(id, "completion of an unknown offsets-topic append");
            return;
        };
        if let Err(code) = result {
            tracing::warn!(id, code, "offsets-topic append failed");
        }
        match pending {
            Pending::Nothing => {}
            Pending::ConsumerReply { reply, response } => {
                self.consumer_stored(reply, response, result)
            }
            Pending::Commit {
                reply,
                group,
                results,
                offsets,
            } => {
                let results = self.commit_stored(&group, results, offsets, result);
                self.io.reply(reply, Reply::Commit(results));
            }
            Pending::Sync {
                group,
                generation,
                assignments,
            } => {
                if let Some(mut op) = self.op(&group, now) {
                    op.on_sync_stored(generation, assignments, result);
                }
            }
            Pending::StaticRejoin {
                group,
                generation,
                reply,
                new_id,
                old_id,
                instance_id,
                old,
            } => {
                if let Some(mut op) = self.op(&group, now) {
                    op.on_static_rejoin_stored(
                        generation,
                        reply,
                        &new_id,
                        &old_id,
                        &instance_id,
                        *old,
                        result,
                    );
                }
            }
            Pending::RemoveOffsets {
                group,
                partitions,
                reply,
            } => self.offsets_removed(&group, &partitions, reply, result),
            Pending::RemoveGroups {
                groups,
                reply,
                results,
            } => self.groups_removed(now, &groups, reply, results, result),
        }
    }

    /// A consumer group is stored: its heartbeat is answered (with the append's error).
    fn consumer_stored(
        &mut self,
        reply: ReplyId,
        response: super::api::ConsumerHeartbeatResponse,
        result: Result<(), i16>,
    ) {
        if reply == super::consumer_heartbeat::NO_REPLY {
            return;
        }
        let response = match result {
            Ok(()) => response,
            Err(code) => super::api::ConsumerHeartbeatResponse {
                error: code,
                ..super::api::ConsumerHeartbeatResponse::error(
                    kafka_protocol::error::ResponseError::CoordinatorNotAvailable,
                    None,
                )
            },
        };
        self.io.reply(reply, Reply::ConsumerHeartbeat(response));
    }

    /// An OffsetCommit is stored: its offsets take effect (unless the group died meanwhile),
    /// or its partitions get the append's error.
    fn commit_stored(
        &mut self,
        group: &str,
        mut results: Vec<(String, i32, i16)>,
        offsets: Vec<((String, i32), OffsetValue)>,
        result: Result<(), i16>,
    ) -> Vec<(String, i32, i16)> {
        if let Err(code) = result {
            for (topic, partition, e) in &mut results {
                let committed = offsets
                    .iter()
                    .any(|((t, p), _)| t == topic && p == partition);
                if *e == super::api::NONE && committed {
                    *e = code;
                }
            }
            return results;
        }
        let Some(g) = self.groups.get_mut(group) else {
            return results;
        };
        if g.is(GroupState::Dead) {
            // The group's tombstones were emitted after this commit: follow them with the
            // commit's own, so a replay loses it too.
            let tombstones = offsets
                .iter()
                .map(|((topic, partition), _)| OffsetsRecord::Offset {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                })
                .collect();
            self.io.persist(tombstones, Pending::Nothing);
        } else {
            for (tp, v) in offsets {
                g.offsets.insert(tp, v);
            }
        }
        results
    }

    /// Offsets deleted (OffsetDelete or expiry) are stored: they go, and the request (if any)
    /// is answered.
    fn offsets_removed(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
        reply: Option<(ReplyId, Reply)>,
        result: Result<(), i16>,
    ) {
        if result.is_ok() {
            if let Some(g) = self.groups.get_mut(group) {
                for tp in partitions {
                    g.offsets.remove(tp);
                }
            }
        }
        let Some((id, reply)) = reply else {
            return;
        };
        let reply = match (reply, result) {
            (Reply::DeleteOffsets(mut r), Err(code)) => {
                for (_, _, e) in &mut r.partitions {
                    if *e == super::api::NONE {
                        *e = code;
                    }
                }
                Reply::DeleteOffsets(r)
            }
            (r, _) => r,
        };
        self.io.reply(id, reply);
    }

    /// Deleted groups' tombstones are stored: the groups go; if the append failed they live on,
    /// empty, and their results get its error.
    fn groups_removed(
        &mut self,
        now: i64,
        groups: &[String],
        reply: Option<ReplyId>,
        mut results: Vec<(String, i16)>,
        result: Result<(), i16>,
    ) {
        for id in groups {
            match result {
                Ok(()) => {
                    self.groups.remove(id);
                }
                Err(_) => {
                    if let Some(g) = self.groups.get_mut(id) {
                        if g.is(GroupState::Dead) {
                            g.transition(GroupState::Empty, now);
                        }
                    }
                }
            }
        }
        if let Err(code) = result {
            for (g, e) in &mut results {
                if *e == super::api::NONE && groups.contains(g) {
                    *e = code;
                }
            }
        }
        if let Some(id) = reply {
            self.io.reply(id, Reply::DeleteGroups(results));
        }
    }
}
