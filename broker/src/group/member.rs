//! A member of a classic group: its identity, timeouts, protocols, assignment and what it is
//! waiting for.

use bytes::Bytes;

use super::api::{Protocol, ReplyId};

/// A JoinGroup request waiting for the rebalance to complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWaiter {
    pub reply: ReplyId,
    /// The request was JoinGroup v9+ (KIP-814).
    pub supports_skip_assignment: bool,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    /// `group.instance.id` of a static member (KIP-345).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    /// Empty until the leader's assignment is stored.
    pub assignment: Bytes,
    pub awaiting_join: Option<JoinWaiter>,
    /// A SyncGroup request waiting for the leader's assignment.
    pub awaiting_sync: Option<ReplyId>,
    /// When the member expires unless it heartbeats (or waits in a join or sync).
    pub session_deadline_ms: i64,
    /// Joined during the current rebalance and never completed a join: while it waits for
    /// the join it expires after `NEW_MEMBER_JOIN_TIMEOUT_MS`, not never.
    pub is_new: bool,
    /// Join order; the earliest member becomes leader when the leader leaves.
    pub join_seq: u64,
}

impl Member {
    /// The member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| &p.metadata)
    }

    /// Whether `protocols` equal the member's, names, order and metadata.
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// Whether the member has outlived its session at `now_ms`. A member waiting in a join
    /// (except a new one past its join timeout) or a sync is alive: the rebalance and the
    /// pending-sync timers bound those waits.
    pub fn has_expired(&self, now_ms: i64) -> bool {
        if now_ms < self.session_deadline_ms {
            return false;
        }
        if self.awaiting_sync.is_some() {
            return false;
        }
        self.awaiting_join.is_none() || self.is_new
    }
}
