//! The group coordinator: consumer groups on the classic protocol and their committed
//! offsets, as Apache Kafka's group coordinator keeps them.
//!
//! Groups are spread over the partitions of the internal compacted topic `__consumer_offsets`
//! (`offsets.topic.num.partitions`, created on first use) by Kafka's rule,
//! `abs(java_hash(group_id)) % partitions`. Each partition has one coordinator shard:
//!
//! - [`shard`]: the sans-IO state machine of one shard, `step(now, input) -> effects`, with the
//!   protocol in [`membership`] (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), `rebalance`
//!   (the transitions they share) and [`offsets`] (commits, OffsetDelete, DeleteGroups,
//!   retention); one group's data is a [`classic::ClassicGroup`] of [`member::Member`]s;
//! - [`api`]: the inputs, replies and effects of a step;
//! - [`records`]: the key and value layouts of `__consumer_offsets` (Kafka's);
//! - [`actor`]: the async shell of a shard: it owns the state, turns requests into inputs,
//!   appends records durably through the partition's append actor, resolves each waiting
//!   request's oneshot from the effects, and sends `Tick` when the next timer is due;
//! - [`coordinator`]: [`GroupCoordinator`], held by the broker: routes a group to its shard,
//!   creates the offsets topic, and loads every shard from its partition at start-up;
//! - [`consumer`]: KIP-848 consumer-protocol groups (ConsumerGroupHeartbeat), with the
//!   server-side [`assignor`]s and their stored form in [`consumer_records`];
//! - [`config`]: the `group.*` and `offsets.*` broker configs; [`metrics`]: gauges.
//!
//! A shard step needs no runtime:
//!
//! ```
//! use sluice_broker::group::api::{Effect, HeartbeatRequest, Input, Reply};
//! use sluice_broker::group::shard::GroupShard;
//!
//! let mut shard = GroupShard::new(Default::default(), 0);
//! let hb = HeartbeatRequest {
//!     group_id: "g".into(),
//!     generation_id: 1,
//!     member_id: "m".into(),
//!     group_instance_id: None,
//! };
//! let effects = shard.step(0, Input::Heartbeat(7, hb));
//! // UNKNOWN_MEMBER_ID (25): there is no such group.
//! assert_eq!(effects, vec![Effect::Reply(7, Reply::Heartbeat(25))]);
//! ```

pub mod actor;
pub mod api;
pub mod assignor;
pub mod classic;
pub mod config;
pub mod consumer;
mod consumer_heartbeat;
pub mod consumer_records;
#[cfg(test)]
mod consumer_tests;
pub mod coordinator;
mod load;
pub mod member;
pub mod membership;
pub mod metrics;
pub mod offsets;
mod rebalance;
pub mod records;
pub mod shard;
#[cfg(test)]
mod tests;

pub use config::GroupConfig;
pub use coordinator::GroupCoordinator;

/// The internal topic that stores committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` over UTF-16 code units, which Kafka uses to place groups.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The offsets-topic partition of `group_id`: Kafka's `Utils.abs(groupId.hashCode) % n`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    #[test]
    fn groups_land_where_kafka_puts_them() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        // "my-group".hashCode() in Java.
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("a", 50), 47);
        assert!((0..50).contains(&partition_for("x".repeat(100).as_str(), 50)));
    }
}
