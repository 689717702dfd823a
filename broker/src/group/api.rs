//! What goes into and comes out of a coordinator shard's `step`: requests already decoded and
//! checked by their handlers, replies as plain data (the handler encodes them for the
//! request's version), and the effects the async shell carries out.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::records::OffsetsRecord;

/// Names a waiting request; the shell maps it to the request's reply channel.
pub type ReplyId = u64;
/// Names an append to the offsets topic; its outcome comes back as [`Input::Persisted`].
pub type PersistId = u64;

/// No error.
pub const NONE: i16 = 0;

/// One protocol a member supports, with its metadata (for consumers, the subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty: a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The id to give a new member (`client_id-uuid`); chosen by the caller so that the
    /// state machine stays deterministic.
    pub new_member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+ (KIP-394): a new member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814): a static leader rejoining may be told to skip assignment.
    pub supports_skip_assignment: bool,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: i16,
    /// -1 with an error.
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// The whole group, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub fn error(member_id: impl Into<String>, error: ResponseError) -> Self {
        JoinResponse {
            error: error.code(),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.into(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// SyncGroup v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// From the leader: each member's assignment.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ResponseError) -> Self {
        SyncResponse {
            error: error.code(),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One member leaving: its id (may be empty when an admin removes a static member by its
/// instance id) and instance id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LeaveRequest {
    pub group_id: String,
    pub members: Vec<LeavingMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResponse {
    pub error: i16,
    /// Per member, in request order.
    pub members: Vec<(LeavingMember, i16)>,
}

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    /// -1: not a group member (a simple consumer or an admin tool).
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// OffsetCommit v9+ answers GROUP_ID_NOT_FOUND where older versions get ILLEGAL_GENERATION.
    pub api_version: i16,
    pub partitions: Vec<CommitPartition>,
}

/// Per partition, in request order: `(topic, partition, error)`.
pub type PartitionResults = Vec<(String, i32, i16)>;

#[derive(Debug, Clone)]
pub struct OffsetDeleteRequest {
    pub group_id: String,
    pub partitions: Vec<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteResponse {
    pub error: i16,
    pub partitions: PartitionResults,
}

/// Partitions by topic id, as ConsumerGroupHeartbeat carries them.
pub type TopicIdPartitions = Vec<(uuid::Uuid, Vec<i32>)>;

/// A ConsumerGroupHeartbeat (KIP-848), checked by its handler. `None` fields: unchanged since
/// the member's last heartbeat.
#[derive(Debug, Clone)]
pub struct ConsumerHeartbeatRequest {
    pub group_id: String,
    /// Empty: a new member (v0), which gets `new_member_id`.
    pub member_id: String,
    /// 0: join; -1: leave; -2: a static member leaves for now.
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    /// Some(""): no regex any more.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns now.
    pub owned: Option<TopicIdPartitions>,
    /// The id for a new member without one; chosen by the caller (determinism).
    pub new_member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// The broker's topics now: name to (id, partition count).
    pub topics: std::collections::BTreeMap<String, (uuid::Uuid, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatResponse {
    pub error: i16,
    pub error_message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's whole assignment, when it may have changed.
    pub assignment: Option<TopicIdPartitions>,
}

impl ConsumerHeartbeatResponse {
    pub fn error(error: ResponseError, message: Option<String>) -> Self {
        ConsumerHeartbeatResponse {
            error: error.code(),
            error_message: message,
            member_id: None,
            member_epoch: 0,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

/// An input to [`super::shard::GroupShard::step`].
#[derive(Debug, Clone)]
pub enum Input {
    Join(ReplyId, JoinRequest),
    Sync(ReplyId, SyncRequest),
    Heartbeat(ReplyId, HeartbeatRequest),
    Leave(ReplyId, LeaveRequest),
    Commit(ReplyId, CommitRequest),
    DeleteGroups(ReplyId, Vec<String>),
    DeleteOffsets(ReplyId, OffsetDeleteRequest),
    ConsumerHeartbeat(ReplyId, ConsumerHeartbeatRequest),
    /// An append finished: `Err` carries the Kafka error to report.
    Persisted(PersistId, Result<(), i16>),
    /// TxnOffsetCommit records of this producer's transaction are durable in the shard's
    /// partition: keep them pending until its marker.
    TxnOffsets(ReplyId, i64, Vec<super::records::OffsetsRecord>),
    /// The marker of this producer's transaction is durable (true: commit).
    TxnMarker(ReplyId, i64, bool),
    /// Time passed: fire every timer that is due.
    Tick,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Join(JoinResponse),
    Sync(SyncResponse),
    Heartbeat(i16),
    Leave(LeaveResponse),
    Commit(PartitionResults),
    DeleteGroups(Vec<(String, i16)>),
    DeleteOffsets(OffsetDeleteResponse),
    ConsumerHeartbeat(ConsumerHeartbeatResponse),
    /// A transaction input was applied.
    Done,
}

/// What the shell must do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer a waiting request.
    Reply(ReplyId, Reply),
    /// Append these records to the shard's offsets partition, durably (fsync before the
    /// outcome is reported), then feed back [`Input::Persisted`] with the same id. Appends
    /// must complete in the order they were emitted.
    Persist(PersistId, Vec<OffsetsRecord>),
}
