//! Consumer group administration on [`Client`]: find a group's coordinator, list, describe and
//! delete groups, read and set committed offsets (as Kafka's admin client does: OffsetCommit
//! with generation -1, which a broker accepts only for an empty group).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerProtocolAssignment, DeleteGroupsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::client::{Client, ATTEMPTS_MAX};
use crate::connection::Connection;
use crate::Error;

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const GROUP_ID_NOT_FOUND: i16 = 69;

/// Pause before retrying a coordinator that was not available; doubled each time.
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(200);

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// `consumer` for consumer groups; empty for groups that only hold offsets.
    pub protocol_type: String,
    /// Kafka's state name, when the broker reports it (ListGroups v4+).
    pub state: Option<String>,
}

/// A group member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Its partitions, by topic, when the group is a stable consumer group.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead`.
    pub state: String,
    pub protocol_type: String,
    /// The assignment strategy of a stable group.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
    /// The broker coordinating the group.
    pub coordinator: i32,
}

impl GroupDescription {
    /// Whether the group has members (Kafka refuses to reset offsets then).
    pub fn is_active(&self) -> bool {
        !matches!(self.state.as_str(), "Empty" | "Dead")
    }
}

/// A KIP-848 consumer-protocol group by ConsumerGroupDescribe (`None`: not one).
async fn describe_consumer_group(
    conn: &Connection,
    group: &str,
    coordinator: i32,
) -> Result<Option<GroupDescription>, Error> {
    let request =
        ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(str_bytes(group))]);
    let response = conn.call(request, Duration::ZERO).await?;
    let Some(g) = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
    else {
        return Ok(None);
    };
    if g.error_code == GROUP_ID_NOT_FOUND {
        return Ok(None);
    }
    if let Some(e) = Error::from_code(
        || format!("describe consumer group {group:?}"),
        g.error_code,
        g.error_message.as_deref(),
    ) {
        return Err(e);
    }
    Ok(Some(GroupDescription {
        group_id: group.to_string(),
        state: g.group_state.to_string(),
        protocol_type: "consumer".to_string(),
        protocol: g.assignor_name.to_string(),
        members: g
            .members
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: m
                    .assignment
                    .topic_partitions
                    .into_iter()
                    .map(|tp| (tp.topic_name.0.to_string(), tp.partitions))
                    .collect(),
            })
            .collect(),
        coordinator,
    }))
}

/// The partitions of a consumer protocol assignment (`None`: not one).
pub fn decode_assignment(bytes: &Bytes) -> Option<BTreeMap<String, Vec<i32>>> {
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut b, version).ok()?;
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in a.assigned_partitions {
        out.entry(tp.topic.0.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    for parts in out.values_mut() {
        parts.sort_unstable();
    }
    Some(out)
}

impl Client {
    /// Runs `op` on the connection to `group`'s coordinator, finding it first, and again
    /// (bounded) while the broker says the coordinator is not available or has moved.
    async fn with_coordinator<T, F, Fut>(&self, group: &str, mut op: F) -> Result<T, Error>
    where
        F: FnMut(i32, Arc<Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0u32;
        loop {
            let result = match self.find_coordinator(group).await {
                Ok(id) => match self.broker_connection(id).await {
                    Ok(conn) => op(id, conn).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            let retry = matches!(
                result.as_ref().err().and_then(Error::code),
                Some(COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR)
            );
            attempt += 1;
            if !retry || attempt >= ATTEMPTS_MAX * 2 {
                return result;
            }
            tokio::time::sleep(COORDINATOR_BACKOFF.saturating_mul(1 << attempt.min(4))).await;
        }
    }

    /// The id of the broker coordinating `group` (FindCoordinator).
    pub async fn find_coordinator(&self, group: &str) -> Result<i32, Error> {
        self.find_coordinator_of(group, 0, "group").await
    }

    /// FindCoordinator for `key` of `key_type` (0: group, 1: transactional id; `what` names
    /// it in errors).
    pub(crate) async fn find_coordinator_of(
        &self,
        key: &str,
        key_type: i8,
        what: &str,
    ) -> Result<i32, Error> {
        let conn = self.any_connection().await?;
        let version = conn.version(ApiKey::FindCoordinator)?;
        let request = FindCoordinatorRequest::default().with_key_type(key_type);
        let request = if version >= 4 {
            request.with_coordinator_keys(vec![str_bytes(key)])
        } else {
            request.with_key(str_bytes(key))
        };
        let response = conn.call(request, Duration::ZERO).await?;
        let context = || format!("find the coordinator of {what} {key:?}");
        let (code, message, node) = if version >= 4 {
            let c = response
                .coordinators
                .first()
                .ok_or_else(|| Error::InvalidResponse {
                    addr: conn.addr().to_string(),
                    reason: "FindCoordinator answered no coordinator".into(),
                })?;
            (c.error_code, c.error_message.clone(), c.node_id.0)
        } else {
            (
                response.error_code,
                response.error_message.clone(),
                response.node_id.0,
            )
        };
        if let Some(e) = Error::from_code(context, code, message.as_deref()) {
            return Err(e);
        }
        if !self.brokers().iter().any(|b| b.id == node) {
            self.refresh_metadata(Some(&[])).await?;
        }
        Ok(node)
    }

    /// Every group of every broker, sorted by id; `states` filters by state (ListGroups v4+).
    pub async fn list_groups(&self, states: &[String]) -> Result<Vec<GroupListing>, Error> {
        let mut out = Vec::new();
        for broker in self.brokers() {
            let conn = self.broker_connection(broker.id).await?;
            let version = conn.version(ApiKey::ListGroups)?;
            let mut request = ListGroupsRequest::default();
            if version >= 4 {
                request.states_filter = states.iter().map(|s| str_bytes(s)).collect();
            }
            let response = conn.call(request, Duration::ZERO).await?;
            if let Some(e) = Error::from_code(|| "list groups".into(), response.error_code, None) {
                return Err(e);
            }
            for g in response.groups {
                let state = (version >= 4).then(|| g.group_state.to_string());
                if version < 4
                    && !states.is_empty()
                    && !states.iter().any(|s| state.as_deref() == Some(s))
                {
                    continue;
                }
                out.push(GroupListing {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state,
                });
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// State, protocol and members (with their partitions) of `group`.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error> {
        self.with_coordinator(group, |coordinator, conn| async move {
            let request =
                DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]);
            let response = conn.call(request, Duration::ZERO).await?;
            let g = response
                .groups
                .into_iter()
                .find(|g| g.group_id.0.as_str() == group)
                .ok_or_else(|| Error::InvalidResponse {
                    addr: conn.addr().to_string(),
                    reason: format!("no description of group {group:?}"),
                })?;
            // A KIP-848 consumer-protocol group is not one DescribeGroups knows: it answers
            // as for an unknown group, and ConsumerGroupDescribe describes it.
            let unknown = g.error_code == GROUP_ID_NOT_FOUND
                || (g.error_code == 0 && g.group_state.as_str() == "Dead");
            if unknown && conn.version(ApiKey::ConsumerGroupDescribe).is_ok() {
                if let Some(d) = describe_consumer_group(&conn, group, coordinator).await? {
                    return Ok(d);
                }
            }
            // An unknown group is "Dead"; newer brokers say GROUP_ID_NOT_FOUND as well.
            if g.error_code != GROUP_ID_NOT_FOUND {
                if let Some(e) = Error::from_code(
                    || format!("describe group {group:?}"),
                    g.error_code,
                    g.error_message.as_deref(),
                ) {
                    return Err(e);
                }
            }
            let consumer = g.protocol_type.as_str() == "consumer";
            Ok(GroupDescription {
                group_id: group.to_string(),
                state: if g.error_code == GROUP_ID_NOT_FOUND {
                    "Dead".to_string()
                } else {
                    g.group_state.to_string()
                },
                protocol_type: g.protocol_type.to_string(),
                protocol: g.protocol_data.to_string(),
                members: g
                    .members
                    .into_iter()
                    .map(|m| MemberDescription {
                        member_id: m.member_id.to_string(),
                        group_instance_id: m.group_instance_id.map(|i| i.to_string()),
                        client_id: m.client_id.to_string(),
                        client_host: m.client_host.to_string(),
                        assignment: if consumer {
                            decode_assignment(&m.member_assignment).unwrap_or_default()
                        } else {
                            BTreeMap::new()
                        },
                    })
                    .collect(),
                coordinator,
            })
        })
        .await
    }

    /// Every offset `group` has committed, by `(topic, partition)`.
    pub async fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<(String, i32), i64>, Error> {
        self.with_coordinator(group, |_, conn| async move {
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_topics(None);
            let response = conn.call(request, Duration::ZERO).await?;
            if let Some(e) = Error::from_code(
                || format!("fetch the offsets of group {group:?}"),
                response.error_code,
                None,
            ) {
                return Err(e);
            }
            let mut out = BTreeMap::new();
            for t in response.topics {
                for p in t.partitions {
                    if let Some(e) = Error::from_code(
                        || {
                            format!(
                                "fetch the offset of {}-{} for group {group:?}",
                                t.name.0, p.partition_index
                            )
                        },
                        p.error_code,
                        None,
                    ) {
                        return Err(e);
                    }
                    if p.committed_offset >= 0 {
                        out.insert(
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Commits `offsets` for `group` as an admin (generation -1, no member id): the broker
    /// accepts this only while the group has no members.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), Error> {
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            topics.entry(topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(str_bytes(""))),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(str_bytes(""))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let request = &request;
        self.with_coordinator(group, |_, conn| async move {
            let response = conn.call(request.clone(), Duration::ZERO).await?;
            for t in response.topics {
                for p in t.partitions {
                    if let Some(e) = Error::from_code(
                        || {
                            format!(
                                "commit the offset of {}-{} for group {group:?}",
                                t.name.0, p.partition_index
                            )
                        },
                        p.error_code,
                        None,
                    ) {
                        return Err(e);
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Deletes `group` and its offsets; the broker refuses while it has members.
    pub async fn delete_group(&self, group: &str) -> Result<(), Error> {
        self.with_coordinator(group, |_, conn| async move {
            let request =
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(group))]);
            let response = conn.call(request, Duration::ZERO).await?;
            let result = response
                .results
                .iter()
                .find(|r| r.group_id.0.as_str() == group)
                .ok_or_else(|| Error::InvalidResponse {
                    addr: conn.addr().to_string(),
                    reason: format!("no result for group {group:?}"),
                })?;
            match Error::from_code(
                || format!("delete group {group:?}"),
                result.error_code,
                None,
            ) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn consumer_assignments_decode() -> Result<(), String> {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(str_bytes("t")))
                .with_partitions(vec![3, 1]),
        ]);
        let mut b = bytes::BytesMut::new();
        b.put_i16(1);
        a.encode(&mut b, 1).map_err(|e| e.to_string())?;
        let got = decode_assignment(&b.freeze());
        assert_eq!(got, Some(BTreeMap::from([("t".to_string(), vec![1, 3])])));
        assert_eq!(decode_assignment(&Bytes::from_static(&[0])), None);
        assert_eq!(
            decode_assignment(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])),
            None
        );
        Ok(())
    }
}
