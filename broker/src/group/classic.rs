//! One classic-protocol group: its state, generation, members and committed offsets, and the
//! bookkeeping operations the shard's protocol logic builds on (no time, no I/O).
//!
//! States, as Kafka's `GroupState`:
//!
//! ```text
//!   Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!     ▲                 ▲        │ (no members left)                   │ leader's SyncGroup
//!     └─────────────────┼────────┘                                     ▼ stored
//!                       └───────── member joins, leaves, expires ─── Stable
//!   Dead: deleted, or expired with no offsets left; removed from the shard at once.
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::api::{JoinResponse, JoinedMember, Protocol, NONE};
use super::member::Member;
use super::records::{GroupValue, MemberValue, OffsetValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's name, as DescribeGroups and ListGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    /// The state named `name` (case-insensitive), for ListGroups' state filter.
    pub fn parse(name: &str) -> Option<GroupState> {
        GroupState::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// Kafka's `InitialDelayedJoin`: the first rebalance of an empty group waits
/// `group.initial.rebalance.delay.ms`, again each time a new member arrived meanwhile, until
/// the group's rebalance timeout is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialDelay {
    pub delay_ms: i64,
    pub remaining_ms: i64,
}

#[derive(Debug, Clone)]
pub struct ClassicGroup {
    pub group_id: String,
    pub state: GroupState,
    /// When the group entered its state (the offsets of an empty group expire from here).
    pub state_timestamp_ms: i64,
    pub protocol_type: Option<String>,
    /// The protocol chosen for the current generation.
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// `group.instance.id` to member id, for static members.
    pub static_members: BTreeMap<String, String>,
    /// Members given an id by MEMBER_ID_REQUIRED that have not joined with it yet, with the
    /// deadline by which they must.
    pub pending_members: BTreeMap<String, i64>,
    /// Members of this generation that have not sent SyncGroup yet.
    pub pending_sync: BTreeSet<String>,
    pub pending_sync_deadline_ms: Option<i64>,
    /// When the current rebalance completes even if not every member rejoined.
    pub join_deadline_ms: Option<i64>,
    pub initial_delay: Option<InitialDelay>,
    /// A member joined during the initial delay (the delay is extended).
    pub new_member_added: bool,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// `Some`: a KIP-848 consumer-protocol group (it has no classic members; its state here
    /// is `Stable` with members, `Empty` without, for the checks both kinds share).
    pub consumer: Option<Box<super::consumer::ConsumerGroup>>,
    next_join_seq: u64,
}

impl ClassicGroup {
    pub fn new(group_id: impl Into<String>, now_ms: i64) -> Self {
        ClassicGroup {
            group_id: group_id.into(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            pending_sync_deadline_ms: None,
            join_deadline_ms: None,
            initial_delay: None,
            new_member_added: false,
            offsets: BTreeMap::new(),
            consumer: None,
            next_join_seq: 0,
        }
    }

    pub fn transition(&mut self, to: GroupState, now_ms: i64) {
        self.state = to;
        self.state_timestamp_ms = now_ms;
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// The member id registered for a static member's instance id.
    pub fn static_member(&self, instance_id: &str) -> Option<&str> {
        self.static_members.get(instance_id).map(String::as_str)
    }

    /// KIP-345 fencing: `instance_id` is registered to another member id.
    pub fn is_static_member_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_member(i))
            .is_some_and(|m| m != member_id)
    }

    /// Adds a member; the first member of an empty group sets its protocol type and leads.
    pub fn add(&mut self, mut member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        member.join_seq = self.next_join_seq;
        self.next_join_seq += 1;
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(i) = &member.group_instance_id {
            self.static_members
                .insert(i.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member; the earliest remaining member leads if the leader left.
    pub fn remove(&mut self, member_id: &str) -> Option<Member> {
        let m = self.members.remove(member_id)?;
        if let Some(i) = &m.group_instance_id {
            if self.static_members.get(i).map(String::as_str) == Some(member_id) {
                self.static_members.remove(i);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.first_member_id();
        }
        Some(m)
    }

    fn first_member_id(&self) -> Option<String> {
        self.members
            .values()
            .min_by_key(|m| m.join_seq)
            .map(|m| m.member_id.clone())
    }

    /// KIP-345: a static member rejoining without its member id takes a new one; it keeps its
    /// place, assignment and leadership.
    pub fn replace_static_member(&mut self, instance_id: &str, old_id: &str, new_id: &str) {
        let Some(mut m) = self.members.remove(old_id) else {
            return;
        };
        m.member_id = new_id.to_string();
        self.members.insert(new_id.to_string(), m);
        self.static_members
            .insert(instance_id.to_string(), new_id.to_string());
        if self.is_leader(old_id) {
            self.leader_id = Some(new_id.to_string());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_string());
        }
    }

    /// Members in join order.
    pub fn members_in_order(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.values().collect();
        v.sort_by_key(|m| m.join_seq);
        v
    }

    /// The longest rebalance timeout of the members: how long a rebalance waits for them.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    /// Every member is waiting in a join, and no member id handed out is still unused.
    pub fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Whether a member with this protocol type and protocols may join: any protocol in an
    /// empty group; otherwise the group's type and a protocol every member supports.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.metadata(&p.name).is_some()))
    }

    /// The protocol every member supports that most members prefer (ties: the earliest
    /// member's preference), as Kafka's `selectProtocol`.
    pub fn select_protocol(&self) -> Option<String> {
        let ordered = self.members_in_order();
        let first = ordered.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| ordered.iter().all(|m| m.metadata(name).is_some()))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &ordered {
            if let Some(choice) = m
                .protocols
                .iter()
                .map(|p| p.name.as_str())
                .find(|n| candidates.contains(n))
            {
                *votes.entry(choice).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for c in &candidates {
            let v = votes.get(c).copied().unwrap_or(0);
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((c, v));
            }
        }
        best.map(|(c, _)| c.to_string())
    }

    /// Every member with its metadata for the current protocol, in join order: what the
    /// leader assigns from.
    pub fn member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members_in_order()
            .into_iter()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// The JoinGroup answer of the current generation for `member_id`.
    pub fn join_response(
        &self,
        member_id: &str,
        with_members: bool,
        skip_assignment: bool,
    ) -> JoinResponse {
        JoinResponse {
            error: NONE,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            skip_assignment,
            member_id: member_id.to_string(),
            members: if with_members {
                self.member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    /// Topics the members subscribe to, when every member's subscription decodes as the
    /// consumer protocol's; `None` otherwise (treated as "any topic").
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if let Some(c) = &self.consumer {
            return Some(c.subscribed_topics());
        }
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let mut meta = m.metadata(protocol)?.clone();
            if meta.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]);
            let _ = bytes::Buf::get_i16(&mut meta);
            let sub = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)).ok()?;
            topics.extend(sub.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }

    /// The record stored after a rebalance; `assignments` overrides the members' current
    /// assignments (the leader's, before they are handed out).
    pub fn to_value(&self, assignments: Option<&BTreeMap<String, Bytes>>) -> GroupValue {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members_in_order()
                .into_iter()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(protocol).cloned().unwrap_or_default(),
                    assignment: match assignments {
                        Some(a) => a.get(&m.member_id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }

    /// A group as stored (offsets are loaded separately): Stable with its members, whose
    /// sessions start at `now_ms`, or Empty.
    pub fn from_value(group_id: &str, v: GroupValue, now_ms: i64) -> Self {
        let mut g = ClassicGroup::new(group_id, now_ms);
        g.generation_id = v.generation_id;
        g.protocol_type = Some(v.protocol_type.clone()).filter(|t| !t.is_empty());
        g.protocol_name = v.protocol_name.clone();
        let protocol = v.protocol_name.clone().unwrap_or_default();
        for m in v.members {
            g.add(Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocol_type: v.protocol_type.clone(),
                protocols: vec![Protocol {
                    name: protocol.clone(),
                    metadata: m.subscription,
                }],
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                session_deadline_ms: now_ms.saturating_add(m.session_timeout_ms as i64),
                is_new: false,
                join_seq: 0,
            });
        }
        if let Some(l) = v.leader_id.filter(|l| g.members.contains_key(l)) {
            g.leader_id = Some(l);
        }
        let state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        let since = if v.current_state_timestamp_ms >= 0 {
            v.current_state_timestamp_ms
        } else {
            now_ms
        };
        g.transition(state, since);
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[(&str, &str)]) -> Member {
        Member {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            rebalance_timeout_ms: 1000,
            session_timeout_ms: 1000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|(n, m)| Protocol {
                    name: n.to_string(),
                    metadata: Bytes::copy_from_slice(m.as_bytes()),
                })
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            session_deadline_ms: 0,
            is_new: false,
            join_seq: 0,
        }
    }

    #[test]
    fn protocol_selection_takes_the_most_preferred_common_protocol() {
        let mut g = ClassicGroup::new("g", 0);
        g.add(member("a", &[("range", ""), ("roundrobin", "")]));
        g.add(member("b", &[("roundrobin", ""), ("range", "")]));
        g.add(member("c", &[("roundrobin", ""), ("sticky", "")]));
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
        assert!(g.supports_protocols("consumer", &member("d", &[("roundrobin", "")]).protocols));
        assert!(!g.supports_protocols("consumer", &member("d", &[("range", "")]).protocols));
        assert!(!g.supports_protocols("connect", &member("d", &[("roundrobin", "")]).protocols));
    }

    #[test]
    fn leadership_passes_to_the_earliest_member() {
        let mut g = ClassicGroup::new("g", 0);
        g.add(member("z", &[("range", "")]));
        g.add(member("a", &[("range", "")]));
        g.add(member("m", &[("range", "")]));
        assert!(g.is_leader("z"));
        g.remove("z");
        assert!(g.is_leader("a"), "a joined before m");
    }

    #[test]
    fn stored_groups_round_trip() {
        let mut g = ClassicGroup::new("g", 0);
        let mut m = member("a", &[("range", "sub")]);
        m.group_instance_id = Some("i".into());
        m.assignment = Bytes::from_static(b"asg");
        g.add(m);
        g.generation_id = 3;
        g.protocol_name = Some("range".into());
        g.transition(GroupState::Stable, 5);
        let loaded = ClassicGroup::from_value("g", g.to_value(None), 100);
        assert_eq!(loaded.state, GroupState::Stable);
        assert_eq!(loaded.generation_id, 3);
        assert_eq!(loaded.static_member("i"), Some("a"));
        assert_eq!(loaded.members["a"].assignment, Bytes::from_static(b"asg"));
        assert_eq!(loaded.members["a"].session_deadline_ms, 1100);
        assert_eq!(
            loaded.member_metadata()[0].metadata,
            Bytes::from_static(b"sub")
        );
    }
}
