//! Looking up offsets (ListOffsets) on [`Client`]: log start, log end, or the first offset at
//! or after a timestamp.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::Client;
use crate::Error;

/// Which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the next offset to be written; the high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The `timestamp` field ListOffsets expects.
    fn wire_timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

impl Client {
    /// The offset `spec` designates in `topic`/`partition`; `None` only for a timestamp later
    /// than every record.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<Option<i64>, Error> {
        let mut found = self.list_offsets_many(topic, &[partition], spec).await?;
        found
            .remove(&partition)
            .ok_or_else(|| Error::InvalidResponse {
                addr: String::from("leader"),
                reason: format!("no offset for partition {partition} of {topic:?}"),
            })
    }

    /// [`Client::list_offsets`] for several partitions of `topic`, one request per leader.
    pub async fn list_offsets_many(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<i32, Option<i64>>, Error> {
        if let OffsetSpec::Timestamp(ms) = spec {
            if ms < 0 {
                return Err(Error::InvalidArgument(format!(
                    "timestamp must be >= 0 ms, not {ms}"
                )));
            }
        }
        self.with_retries(Some(topic), true, move || async move {
            let mut by_leader: HashMap<i32, Vec<i32>> = HashMap::new();
            for &partition in partitions {
                let (leader, _) = self.leader_connection(topic, partition).await?;
                by_leader.entry(leader).or_default().push(partition);
            }
            let mut found = BTreeMap::new();
            for (leader, partitions) in by_leader {
                let conn = self.broker_connection(leader).await?;
                let request = ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_timestamp(spec.wire_timestamp())
                                })
                                .collect(),
                        )]);
                let response = conn.call(request, Duration::ZERO).await?;
                for t in response
                    .topics
                    .iter()
                    .filter(|t| t.name.0.as_str() == topic)
                {
                    for p in t
                        .partitions
                        .iter()
                        .filter(|p| partitions.contains(&p.partition_index))
                    {
                        let context = || format!("list offsets of {topic}-{}", p.partition_index);
                        if let Some(e) = Error::from_code(context, p.error_code, None) {
                            return Err(e);
                        }
                        found.insert(p.partition_index, Some(p.offset).filter(|o| *o >= 0));
                    }
                }
                if let Some(missing) = partitions.iter().find(|p| !found.contains_key(p)) {
                    return Err(Error::InvalidResponse {
                        addr: conn.addr().to_string(),
                        reason: format!(
                            "ListOffsets response lacks partition {missing} of {topic:?}"
                        ),
                    });
                }
            }
            Ok(found)
        })
        .await
    }
}
