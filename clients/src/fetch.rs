//! Fetching on [`Client`]: records from one or more partitions of a topic, one request per
//! leader, decoded into [`ConsumerRecord`]s.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::batch_decoder::{decode_batches, DecodedRecords};
use crate::client::Client;
use crate::connection::Connection;
use crate::records::ConsumerRecord;
use crate::Error;

/// Record data larger than this is decoded on the blocking pool rather than the reactor.
const DECODE_INLINE_BYTES_MAX: usize = 256 << 10;

/// What one fetch returned for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    /// Partition index.
    pub partition: i32,
    /// Data records at or after the requested offset.
    pub records: Vec<ConsumerRecord>,
    /// Where the next fetch should start: past every whole batch returned, control batches
    /// included; the requested offset when nothing was returned.
    pub next_offset: i64,
    /// The partition's high watermark (log end offset as consumers see it).
    pub high_watermark: i64,
    /// The partition's log start offset (-1 if the broker did not say).
    pub log_start_offset: i64,
}

impl Client {
    /// Reads records of `topic`/`partition` from `offset`: at most about `max_bytes` (at least
    /// one batch), waiting up to `max_wait` for data to arrive.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait: Duration,
    ) -> Result<FetchedPartition, Error> {
        let mut fetched = self
            .fetch_many(topic, &[(partition, offset)], max_bytes, max_wait)
            .await?;
        fetched
            .remove(&partition)
            .ok_or_else(|| Error::InvalidResponse {
                addr: String::from("leader"),
                reason: format!("Fetch response lacks {topic}-{partition}"),
            })
    }

    /// [`Client::fetch`] for several `(partition, offset)` pairs of `topic`: one request per
    /// leader, sent concurrently. `max_bytes` bounds each partition and each response.
    pub async fn fetch_many(
        &self,
        topic: &str,
        positions: &[(i32, i64)],
        max_bytes: i32,
        max_wait: Duration,
    ) -> Result<BTreeMap<i32, FetchedPartition>, Error> {
        let response_bytes_max = self.config().connection.response_bytes_max;
        if max_bytes <= 0 || max_bytes as usize > response_bytes_max / 2 {
            return Err(Error::InvalidArgument(format!(
                "fetch size must be between 1 and {} bytes (half the response limit), not {max_bytes}",
                response_bytes_max / 2
            )));
        }
        if let Some((p, o)) = positions.iter().find(|(_, o)| *o < 0) {
            return Err(Error::InvalidArgument(format!(
                "cannot fetch {topic}-{p} from negative offset {o}"
            )));
        }
        self.with_retries(Some(topic), true, move || async move {
            let mut by_leader: HashMap<i32, Vec<(i32, i64)>> = HashMap::new();
            for &(partition, offset) in positions {
                let (leader, _) = self.leader_connection(topic, partition).await?;
                by_leader
                    .entry(leader)
                    .or_default()
                    .push((partition, offset));
            }
            let mut out = BTreeMap::new();
            if by_leader.len() == 1 {
                for (leader, positions) in by_leader {
                    let conn = self.broker_connection(leader).await?;
                    out.extend(
                        fetch_from(conn, topic.to_string(), positions, max_bytes, max_wait).await?,
                    );
                }
                return Ok(out);
            }
            let mut tasks = tokio::task::JoinSet::new();
            for (leader, positions) in by_leader {
                let conn = self.broker_connection(leader).await?;
                tasks.spawn(fetch_from(
                    conn,
                    topic.to_string(),
                    positions,
                    max_bytes,
                    max_wait,
                ));
            }
            while let Some(joined) = tasks.join_next().await {
                let fetched = joined
                    .map_err(|e| Error::InvalidArgument(format!("fetch task failed: {e}")))??;
                out.extend(fetched);
            }
            Ok(out)
        })
        .await
    }
}

/// One Fetch request to one leader, for its `positions` of `topic`.
async fn fetch_from(
    conn: Arc<Connection>,
    topic: String,
    positions: Vec<(i32, i64)>,
    max_bytes: i32,
    max_wait: Duration,
) -> Result<Vec<(i32, FetchedPartition)>, Error> {
    let max_wait_ms = i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX);
    let request = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(
                positions
                    .iter()
                    .map(|&(partition, offset)| {
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(max_bytes)
                    })
                    .collect(),
            )]);
    let response = conn.call(request, max_wait).await?;
    let context = || format!("fetch from {topic}");
    if let Some(e) = Error::from_code(context, response.error_code, None) {
        return Err(e);
    }
    let mut out = Vec::with_capacity(positions.len());
    for data in response
        .responses
        .into_iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions)
    {
        let Some(&(partition, offset)) = positions.iter().find(|(p, _)| *p == data.partition_index)
        else {
            continue;
        };
        let context = || format!("fetch {topic}-{partition} at offset {offset}");
        if let Some(e) = Error::from_code(context, data.error_code, None) {
            return Err(e);
        }
        let decoded = decode(data.records.unwrap_or_default(), partition, offset)
            .await
            .map_err(|reason| Error::InvalidResponse {
                addr: conn.addr().to_string(),
                reason: format!("{topic}-{partition}: {reason}"),
            })?;
        if decoded.next_offset.is_none() && decoded.partial_tail {
            return Err(Error::BatchTooLarge {
                topic: topic.clone(),
                partition,
                offset,
                max_bytes,
            });
        }
        let fetched = FetchedPartition {
            partition,
            records: decoded.records,
            next_offset: decoded.next_offset.map_or(offset, |next| next.max(offset)),
            high_watermark: data.high_watermark,
            log_start_offset: data.log_start_offset,
        };
        out.push((partition, fetched));
    }
    if let Some((missing, _)) = positions
        .iter()
        .find(|(p, _)| !out.iter().any(|(q, _)| q == p))
    {
        return Err(Error::InvalidResponse {
            addr: conn.addr().to_string(),
            reason: format!("Fetch response lacks {topic}-{missing}"),
        });
    }
    Ok(out)
}

async fn decode(data: Bytes, partition: i32, offset: i64) -> Result<DecodedRecords, String> {
    if data.len() <= DECODE_INLINE_BYTES_MAX {
        return decode_batches(data, partition, offset);
    }
    tokio::task::spawn_blocking(move || decode_batches(data, partition, offset))
        .await
        .map_err(|e| format!("decode task failed: {e}"))?
}
