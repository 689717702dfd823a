//! One task's exactly-once session: a transactional id of its own, and a commit that writes the
//! task's outputs, its state changes (changelog) and its input offset in one transaction,
//! through the same coordinator, partition actors and group shards that Kafka clients use.
//! Nothing crosses the network.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use crate::group::records::{OffsetValue, OffsetsRecord};
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::state::{now_ms, Broker};
use crate::txn::write::TxnWrite;

pub use super::driver::{Outgoing, Outputs};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0:?}")]
    Kafka(ResponseError),
    #[error("{0}")]
    Other(String),
}

impl From<ResponseError> for SessionError {
    fn from(e: ResponseError) -> Self {
        SessionError::Kafka(e)
    }
}

pub struct Session {
    broker: Arc<Broker>,
    transactional_id: String,
    producer: (i64, i16),
    group: String,
    /// The next sequence number per partition written, as an idempotent producer keeps
    /// them (from 0 for each new epoch): transactional batches need them for the log to track
    /// the transaction.
    sequences: std::collections::HashMap<(String, i32), i32>,
}

/// Transactions of a task time out (and are aborted) after this long without a commit.
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

impl Session {
    /// Registers the transactional id (bumping its epoch: whatever an earlier incarnation of
    /// the task left open is aborted and that incarnation is fenced).
    pub async fn open(
        broker: &Arc<Broker>,
        transactional_id: &str,
        group: &str,
    ) -> Result<Session, SessionError> {
        let txns = broker
            .txns()
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let producer = txns
            .init_producer_id(transactional_id, TRANSACTION_TIMEOUT_MS, None, true)
            .await?;
        Ok(Session {
            broker: Arc::clone(broker),
            transactional_id: transactional_id.to_string(),
            producer,
            group: group.to_string(),
            sequences: Default::default(),
        })
    }

    /// Commits `outputs` and the input positions `offsets` (topic, partition, next offset to
    /// read) atomically.
    pub async fn commit(
        &mut self,
        outputs: &Outputs,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), SessionError> {
        let broker = &self.broker;
        let txns = broker
            .txns()
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let groups = broker
            .groups()
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        groups.ensure_topic().await?;
        let mut partitions: Vec<(String, i32)> = outputs
            .iter()
            .filter(|(_, recs)| !recs.is_empty())
            .map(|(tp, _)| tp.clone())
            .collect();
        partitions.push((
            OFFSETS_TOPIC.to_string(),
            partition_for(&self.group, groups.shard_count()),
        ));
        let id = self.transactional_id.clone();
        txns.add_partitions(&id, self.producer, &partitions, true)
            .await?;
        // One transactional write holds the transaction Ongoing from here until the outputs
        // and the offsets are written: a timeout abort cannot slip a marker in between.
        let write = TxnWrite::begin(txns, &id, self.producer, true).await?;
        // Appends are queued on every partition first (durable: a commit decision must never
        // be durable while its outputs are not, or a power failure between the Prepare record
        // and the markers would lose them), then awaited together with the offsets commit,
        // so their fsyncs and the offsets' run as one round.
        let mut pending = Vec::new();
        for ((topic, p), recs) in outputs {
            if recs.is_empty() {
                continue;
            }
            let partition = broker
                .partition(topic, *p)
                .ok_or_else(|| SessionError::Other(format!("{topic}-{p} does not exist")))?;
            for chunk in chunks(recs) {
                let seq = self.sequences.entry((topic.clone(), *p)).or_insert(0);
                let batch =
                    encode(chunk, Some(self.producer), Some(*seq)).map_err(SessionError::Other)?;
                *seq = seq.wrapping_add(chunk.len() as i32) & i32::MAX;
                let queued = write
                    .submit(&partition, batch, true)
                    .await
                    .map_err(|e| SessionError::Other(e.to_string()))?;
                pending.push(queued);
            }
        }
        let outputs_written = async {
            for p in pending {
                p.wait()
                    .await
                    .map_err(|e| SessionError::Other(e.to_string()))?;
            }
            crate::failpoint::hit("transform.commit.after_outputs");
            Ok::<(), SessionError>(())
        };
        let now = now_ms();
        let records = offsets
            .iter()
            .map(|(topic, partition, offset)| OffsetsRecord::Offset {
                group: self.group.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: Some(OffsetValue {
                    offset: *offset,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: now,
                }),
            })
            .collect();
        let offsets_written =
            crate::txn::offsets::commit_in(broker, &write, &self.group, None, records);
        let (outputs_written, offsets_written) = tokio::join!(outputs_written, offsets_written);
        outputs_written?;
        offsets_written?;
        drop(write);
        crate::failpoint::hit("transform.commit.after_offsets");
        txns.end_txn(&id, self.producer, true, true).await?;
        Ok(())
    }
}

/// Records per written batch are capped at about this many bytes, well under the default
/// `max.message.bytes` (1 MiB) of the topics a transform writes.
const BATCH_BYTES_TARGET: usize = 256 << 10;

/// `recs` cut into runs whose batches stay under [`BATCH_BYTES_TARGET`] (a single larger
/// record still gets a batch of its own).
fn chunks(recs: &[Outgoing]) -> Vec<&[Outgoing]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0usize, 0usize);
    for (i, r) in recs.iter().enumerate() {
        let size = 32
            + r.key.as_ref().map_or(0, Vec::len)
            + r.value.as_ref().map_or(0, Vec::len)
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 8)
                .sum::<usize>();
        if i > start && bytes + size > BATCH_BYTES_TARGET {
            out.push(&recs[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < recs.len() {
        out.push(&recs[start..]);
    }
    out
}

/// One batch of `recs`, transactional for `producer` when given, sequenced from
/// `base_sequence` when given.
fn encode(
    recs: &[Outgoing],
    producer: Option<(i64, i16)>,
    base_sequence: Option<i32>,
) -> Result<Bytes, String> {
    let records: Vec<crate::batch::BrokerRecord> = recs
        .iter()
        .map(|r| crate::batch::BrokerRecord {
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().map(Bytes::from)))
                .collect(),
            timestamp: r.timestamp,
        })
        .collect();
    crate::batch::encode(&records, producer, base_sequence)
}

/// The committed input offset of `group` for a partition (None: nothing committed).
pub async fn committed_offset(
    broker: &Arc<Broker>,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, SessionError> {
    let groups = broker
        .groups()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let (g, t) = (group.to_string(), topic.to_string());
    let found = groups
        .query(group, move |shard, _| {
            if shard.has_pending_txn_offset(&g, &t, partition) {
                return Err(ResponseError::UnstableOffsetCommit);
            }
            let c = shard.committed(&g, Some(&[(t.clone(), vec![partition])]));
            Ok(c.first()
                .and_then(|(_, ps)| ps.first())
                .and_then(|(_, v)| v.as_ref())
                .map(|v| v.offset))
        })
        .await
        .map_err(|_| ResponseError::CoordinatorNotAvailable)??;
    Ok(found)
}

/// At-least-once mode: writes `outputs` as plain batches, durably.
pub async fn write_plain(broker: &Arc<Broker>, outputs: &Outputs) -> Result<(), SessionError> {
    let mut pending = Vec::new();
    for ((topic, p), recs) in outputs {
        if recs.is_empty() {
            continue;
        }
        let partition = broker
            .partition(topic, *p)
            .ok_or_else(|| SessionError::Other(format!("{topic}-{p} does not exist")))?;
        for chunk in chunks(recs) {
            let batch = encode(chunk, None, None).map_err(SessionError::Other)?;
            pending.push(
                partition
                    .submit(batch, true)
                    .await
                    .map_err(|e| SessionError::Other(e.to_string()))?,
            );
        }
    }
    for p in pending {
        p.wait()
            .await
            .map_err(|e| SessionError::Other(e.to_string()))?;
    }
    Ok(())
}

/// At-least-once mode: commits input positions with a plain OffsetCommit of `group`.
pub async fn commit_plain(
    broker: &Arc<Broker>,
    group: &str,
    offsets: &[(String, i32, i64)],
) -> Result<(), SessionError> {
    use crate::group::api::{CommitPartition, CommitRequest, Input, Reply};
    let groups = broker
        .groups()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    groups.ensure_topic().await?;
    let req = CommitRequest {
        group_id: group.to_string(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        api_version: 8,
        partitions: offsets
            .iter()
            .map(|(t, p, o)| CommitPartition {
                topic: t.clone(),
                partition: *p,
                offset: *o,
                leader_epoch: -1,
                metadata: String::new(),
            })
            .collect(),
    };
    match groups
        .request(group, move |id| Input::Commit(id, req))
        .await
    {
        Ok(Reply::Commit(results)) => match results.iter().find(|(_, _, code)| *code != 0) {
            None => Ok(()),
            Some((t, p, code)) => Err(SessionError::Other(format!(
                "offset commit of {t}-{p} failed with error {code}"
            ))),
        },
        _ => Err(ResponseError::CoordinatorNotAvailable.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_cut_into_batches_under_the_limit() {
        let rec = |n: usize| Outgoing {
            key: Some(vec![b'k'; 8]),
            value: Some(vec![b'v'; n]),
            timestamp: 0,
            headers: Vec::new(),
        };
        let recs: Vec<Outgoing> = (0..10_000).map(|_| rec(100)).collect();
        let parts = chunks(&recs);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|c| c.len()).sum::<usize>(), recs.len());
        for c in &parts {
            let batch = encode(c, Some((1, 0)), Some(0)).map_or(usize::MAX, |b| b.len());
            assert!(batch < 1 << 20, "{batch} bytes");
        }
        let big = vec![rec(2 << 20), rec(10)];
        assert_eq!(chunks(&big).len(), 2);
        assert!(chunks(&[]).is_empty());
    }
}
