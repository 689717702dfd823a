//! One KIP-848 consumer-protocol group (`group.protocol=consumer`): members, the group epoch,
//! the target assignment and each member's reconciliation towards it (no time source, no I/O;
//! the shard glue is `consumer_heartbeat`).
//!
//! Epochs, as Kafka's `GroupMetadataManager`:
//!
//! - the group epoch advances when a member joins or leaves, changes its subscription or
//!   assignor, or a subscribed topic changes; the target assignment is then recomputed by the
//!   server-side assignor and takes the group epoch as its `assignment_epoch`;
//! - a member reaches the assignment epoch (its member epoch) once it holds no partition its
//!   target no longer has. Until then it is told its current assignment minus the partitions
//!   to revoke (`pending_revocation`), and it acknowledges the revocation by heartbeating
//!   without them in its owned partitions;
//! - a member is only given a partition no other member holds, assigned or pending
//!   revocation: so two members never own a partition at once. Partitions still held by
//!   another are handed over at a later heartbeat, once released.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError as E;
use uuid::Uuid;

use super::api::{ConsumerHeartbeatRequest, ConsumerHeartbeatResponse, TopicIdPartitions, NONE};
use super::assignor::{self, Assignment};
use super::config::GroupConfig;

/// Member epoch of a member leaving for good.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving for now: it keeps its assignment until its session
/// ends or its instance id joins again.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    pub subscribed_topics: BTreeSet<String>,
    /// A regex subscription (RE2 syntax, whole topic names), besides the names.
    pub subscribed_regex: Option<String>,
    /// Not stored: the topics `subscribed_regex` matched at the last heartbeat.
    pub regex_topics: BTreeSet<String>,
    /// [`STATIC_LEAVE_EPOCH`] while a static member is away.
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// What the member is told it owns.
    pub assigned: Assignment,
    /// Partitions the member must release before its epoch advances.
    pub pending_revocation: Assignment,
    /// Its part of the group's target assignment.
    pub target: Assignment,
    /// Not stored: a loaded member's session restarts.
    pub session_deadline_ms: i64,
    /// Not stored: when a member that has not released `pending_revocation` is removed.
    pub revocation_deadline_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// The subscribed topics as last seen: name to (id, partition count).
    pub topics: BTreeMap<String, (Uuid, i32)>,
    pub members: BTreeMap<String, ConsumerMember>,
}

/// Why a heartbeat was refused.
pub type Refusal = (E, Option<String>);

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(bs) => ps.difference(bs).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(t.clone(), rest);
        }
    }
    out
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    minus(a, &minus(a, b))
}

fn union_into(into: &mut Assignment, a: &Assignment) {
    for (t, ps) in a {
        into.entry(t.clone())
            .or_default()
            .extend(ps.iter().copied());
    }
}

/// `pattern` matching whole topic names, as Kafka's `Pattern.matcher(topic).matches()`.
pub fn full_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

impl ConsumerMember {
    /// The topics the member subscribes to: by name and by its regex.
    pub fn subscription(&self) -> BTreeSet<String> {
        self.subscribed_topics
            .union(&self.regex_topics)
            .cloned()
            .collect()
    }
}

impl ConsumerGroup {
    /// Kafka's state names: `Empty`, `Assigning`, `Reconciling`, `Stable`.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.member_epoch != self.assignment_epoch
                || !m.pending_revocation.is_empty()
                || m.assigned != m.target
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscription())
            .collect()
    }

    /// Resolves every member's regex against the broker's topics; `true`: a member's
    /// resolved topics changed.
    fn resolve_regexes(&mut self, all: &BTreeMap<String, (Uuid, i32)>) -> bool {
        let mut changed = false;
        for m in self.members.values_mut() {
            let now: BTreeSet<String> = match m.subscribed_regex.as_deref().map(full_match) {
                Some(Ok(re)) => all.keys().filter(|t| re.is_match(t)).cloned().collect(),
                // Checked by the handler; one stored before a change of syntax matches nothing.
                Some(Err(_)) | None => BTreeSet::new(),
            };
            if now != m.regex_topics {
                m.regex_topics = now;
                changed = true;
            }
        }
        changed
    }

    /// The partitions members other than `member_id` hold (assigned or pending revocation).
    pub fn owned_by_others(&self, member_id: &str) -> Assignment {
        let mut out = Assignment::new();
        for (id, m) in &self.members {
            if id != member_id {
                union_into(&mut out, &m.assigned);
                union_into(&mut out, &m.pending_revocation);
            }
        }
        out
    }

    /// The assignor most members prefer, else the configured default.
    fn assignor(&self, config: &GroupConfig) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map(|(name, _)| name.to_string())
            .or_else(|| config.consumer_assignors.first().cloned())
            .unwrap_or_else(|| "uniform".into())
    }

    /// Recomputes the target assignment if the group epoch moved past it.
    pub fn update_target(&mut self, config: &GroupConfig) {
        if self.group_epoch <= self.assignment_epoch {
            return;
        }
        let subscriptions = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.subscription()))
            .collect();
        let previous = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.target.clone()))
            .collect();
        let counts = self
            .topics
            .iter()
            .map(|(t, (_, n))| (t.clone(), *n))
            .collect();
        let mut target =
            assignor::assign(&self.assignor(config), &subscriptions, &counts, &previous);
        for (id, m) in &mut self.members {
            m.target = target.remove(id).unwrap_or_default();
        }
        self.assignment_epoch = self.group_epoch;
    }

    /// Takes a fresh look at the subscribed topics; `true`: they changed (the caller advances
    /// the group epoch).
    pub fn refresh_topics(&mut self, all: &BTreeMap<String, (Uuid, i32)>) -> bool {
        let now: BTreeMap<String, (Uuid, i32)> = self
            .subscribed_topics()
            .into_iter()
            .filter_map(|t| all.get(&t).map(|v| (t, *v)))
            .collect();
        if now == self.topics {
            return false;
        }
        self.topics = now;
        true
    }

    /// Moves `member_id` towards its target: revocation first, then the new epoch, then
    /// whatever of its target no other member still holds. `owned`: what the member reported.
    pub fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: i64) {
        let others = self.owned_by_others(member_id);
        let epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if m.member_epoch < 0 {
            return;
        }
        if !m.pending_revocation.is_empty() {
            let released = owned.is_some_and(|o| intersect(o, &m.pending_revocation).is_empty());
            if !released {
                return;
            }
            m.pending_revocation.clear();
            m.revocation_deadline_ms = None;
        }
        let revoke = minus(&m.assigned, &m.target);
        if !revoke.is_empty() {
            m.assigned = intersect(&m.assigned, &m.target);
            m.pending_revocation = revoke;
            let timeout = i64::from(m.rebalance_timeout_ms.max(0));
            m.revocation_deadline_ms = Some(now.saturating_add(timeout));
            return;
        }
        if m.member_epoch != epoch {
            m.previous_member_epoch = m.member_epoch;
            m.member_epoch = epoch;
        }
        m.assigned = minus(&m.target, &others);
    }

    /// Removes a member (left, fenced or expired); the others are reassigned.
    pub fn remove_member(&mut self, member_id: &str, config: &GroupConfig) -> bool {
        if self.members.remove(member_id).is_none() {
            return false;
        }
        self.group_epoch += 1;
        self.update_target(config);
        true
    }

    fn by_ids(&self, a: &Assignment) -> TopicIdPartitions {
        a.iter()
            .filter_map(|(t, ps)| {
                let (id, _) = self.topics.get(t)?;
                Some((*id, ps.iter().copied().collect()))
            })
            .collect()
    }

    /// One heartbeat at `now`. `Err`: the refusal to answer.
    pub fn heartbeat(
        &mut self,
        now: i64,
        req: &ConsumerHeartbeatRequest,
        config: &GroupConfig,
    ) -> Result<ConsumerHeartbeatResponse, Refusal> {
        let owned = owned_assignment(req);
        let session_ms = i64::from(config.consumer_session_timeout_ms);
        let member_id = if req.member_id.is_empty() {
            req.new_member_id.clone()
        } else {
            req.member_id.clone()
        };
        let reply = |group: &ConsumerGroup, id: &str, epoch: i32, assignment| {
            let _ = group;
            ConsumerHeartbeatResponse {
                error: NONE,
                error_message: None,
                member_id: Some(id.to_string()),
                member_epoch: epoch,
                heartbeat_interval_ms: config.consumer_heartbeat_interval_ms,
                assignment,
            }
        };
        let mut joined = false;
        match req.member_epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => {
                let Some(m) = self.members.get_mut(&member_id) else {
                    return Err((E::UnknownMemberId, None));
                };
                if req.member_epoch == STATIC_LEAVE_EPOCH && m.instance_id.is_some() {
                    m.member_epoch = STATIC_LEAVE_EPOCH;
                    // The process is gone: what it was revoking is free.
                    m.pending_revocation.clear();
                    m.revocation_deadline_ms = None;
                } else {
                    self.remove_member(&member_id, config);
                }
                return Ok(reply(self, &member_id, req.member_epoch, None));
            }
            0 => joined = self.join(now, &member_id, req, config)?,
            epoch => {
                let Some(m) = self.members.get(&member_id) else {
                    return Err((E::UnknownMemberId, None));
                };
                let lost_response = epoch == m.previous_member_epoch
                    && owned
                        .as_ref()
                        .is_some_and(|o| minus(o, &m.assigned).is_empty());
                if m.member_epoch < 0 || (epoch != m.member_epoch && !lost_response) {
                    return Err((
                        E::FencedMemberEpoch,
                        Some(format!(
                            "member epoch {epoch} is not the current {}",
                            m.member_epoch
                        )),
                    ));
                }
            }
        }
        let Some(m) = self.members.get_mut(&member_id) else {
            return Err((E::UnknownMemberId, None));
        };
        let before = (m.member_epoch, m.assigned.clone());
        m.session_deadline_ms = now.saturating_add(session_ms);
        let mut changed = update_member(m, req) || joined;
        // One advance of the group epoch for everything this heartbeat changed.
        changed |= self.resolve_regexes(&req.topics);
        if self.refresh_topics(&req.topics) || changed {
            self.group_epoch += 1;
        }
        self.update_target(config);
        self.reconcile(&member_id, owned.as_ref(), now);
        let m = &self.members[&member_id];
        let after = (m.member_epoch, m.assigned.clone());
        let send = req.member_epoch == 0
            || before != after
            || owned.as_ref().is_some_and(|o| *o != m.assigned);
        let assignment = send.then(|| self.by_ids(&m.assigned));
        Ok(reply(self, &member_id, m.member_epoch, assignment))
    }

    /// Epoch 0: a new member, a static member back under a new id, or a member starting over.
    /// `true`: a new member (the group epoch must advance).
    fn join(
        &mut self,
        now: i64,
        member_id: &str,
        req: &ConsumerHeartbeatRequest,
        config: &GroupConfig,
    ) -> Result<bool, Refusal> {
        let session_ms = i64::from(config.consumer_session_timeout_ms);
        if let Some(instance) = &req.instance_id {
            let old = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance) && m.member_id != member_id)
                .map(|m| m.member_id.clone());
            if let Some(old_id) = old {
                if self.members[&old_id].member_epoch != STATIC_LEAVE_EPOCH {
                    return Err((
                        E::UnreleasedInstanceId,
                        Some(format!("instance id {instance} is in use")),
                    ));
                }
                // The static member comes back: it takes over its assignment.
                if let Some(mut m) = self.members.remove(&old_id) {
                    m.member_id = member_id.to_string();
                    m.member_epoch = 0;
                    self.members.insert(member_id.to_string(), m);
                }
            }
        }
        if let Some(m) = self.members.get_mut(member_id) {
            // A member starting over (after being fenced) holds nothing now.
            m.assigned.clear();
            m.pending_revocation.clear();
            m.revocation_deadline_ms = None;
            m.member_epoch = 0;
            m.client_id.clone_from(&req.client_id);
            m.client_host.clone_from(&req.client_host);
            m.instance_id.clone_from(&req.instance_id);
            return Ok(false);
        }
        if self.members.len() >= config.max_size {
            return Err((E::GroupMaxSizeReached, None));
        }
        self.members.insert(
            member_id.to_string(),
            ConsumerMember {
                member_id: member_id.to_string(),
                instance_id: req.instance_id.clone(),
                rack_id: req.rack_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                server_assignor: None,
                subscribed_topics: BTreeSet::new(),
                subscribed_regex: None,
                regex_topics: BTreeSet::new(),
                member_epoch: 0,
                previous_member_epoch: 0,
                assigned: Assignment::new(),
                pending_revocation: Assignment::new(),
                target: Assignment::new(),
                session_deadline_ms: now.saturating_add(session_ms),
                revocation_deadline_ms: None,
            },
        );
        Ok(true)
    }
}

/// The partitions a heartbeat says its member owns, by topic name (ids it does not know are
/// left out).
fn owned_assignment(req: &ConsumerHeartbeatRequest) -> Option<Assignment> {
    let by_id: BTreeMap<Uuid, &String> = req
        .topics
        .iter()
        .map(|(name, (id, _))| (*id, name))
        .collect();
    req.owned.as_ref().map(|tps| {
        let mut a = Assignment::new();
        for (id, ps) in tps {
            if let Some(name) = by_id.get(id) {
                a.entry((*name).clone())
                    .or_default()
                    .extend(ps.iter().copied());
            }
        }
        a
    })
}

/// Applies what a heartbeat may change of its member (fields sent as null keep their value);
/// `true` when its subscription or assignor changed (the group epoch must advance).
fn update_member(m: &mut ConsumerMember, req: &ConsumerHeartbeatRequest) -> bool {
    let mut changed = false;
    if req.rebalance_timeout_ms >= 0 {
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    }
    if req.rack_id.is_some() {
        m.rack_id.clone_from(&req.rack_id);
    }
    if let Some(names) = &req.subscribed_topic_names {
        let subs: BTreeSet<String> = names.iter().cloned().collect();
        if subs != m.subscribed_topics {
            m.subscribed_topics = subs;
            changed = true;
        }
    }
    if let Some(re) = &req.subscribed_topic_regex {
        let re = (!re.is_empty()).then(|| re.clone());
        if re != m.subscribed_regex {
            m.subscribed_regex = re;
            changed = true;
        }
    }
    if req.server_assignor.is_some() && req.server_assignor != m.server_assignor {
        m.server_assignor.clone_from(&req.server_assignor);
        changed = true;
    }
    changed
}
