//! Start-up: rebuilds a shard's groups and committed offsets by replaying its
//! `__consumer_offsets` partition from the log start (the latest record per key wins; a
//! tombstone deletes).

use crate::partition::Partition;
use std::collections::BTreeMap;

use super::classic::ClassicGroup;
use super::records::{decode_entries, Entry, GroupValue, OffsetValue, OffsetsRecord};

/// Bytes read per step of the replay.
const LOAD_READ_BYTES: usize = 4 << 20;

/// What a replay found, before it becomes groups.
#[derive(Debug, Default)]
pub(super) struct Replay {
    metadata: BTreeMap<String, GroupValue>,
    consumer: BTreeMap<String, Box<super::consumer::ConsumerGroup>>,
    offsets: BTreeMap<String, BTreeMap<(String, i32), OffsetValue>>,
    /// TxnOffsetCommit records whose transaction has no marker yet, by producer id: the
    /// transaction coordinator's recovery completes them.
    pub(super) pending_txn: BTreeMap<i64, Vec<OffsetsRecord>>,
    pub(super) records: u64,
    pub(super) bad_records: u64,
}

impl Replay {
    /// Applies one entry in log order: transactional records wait for their marker.
    pub(super) fn apply_entry(&mut self, entry: Entry) {
        match entry {
            Entry::Record {
                producer_id: Some(pid),
                record,
                ..
            } => self.pending_txn.entry(pid).or_default().push(record),
            Entry::Record { record, .. } => self.apply(record),
            Entry::Marker {
                producer_id,
                commit,
            } => {
                let pending = self.pending_txn.remove(&producer_id).unwrap_or_default();
                if commit {
                    for r in pending {
                        self.apply(r);
                    }
                }
            }
        }
    }

    pub(super) fn apply(&mut self, record: OffsetsRecord) {
        self.records += 1;
        match record {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let offsets = self.offsets.entry(group.clone()).or_default();
                match value {
                    Some(v) => {
                        offsets.insert((topic, partition), v);
                    }
                    None => {
                        offsets.remove(&(topic, partition));
                        if offsets.is_empty() {
                            self.offsets.remove(&group);
                        }
                    }
                }
            }
            OffsetsRecord::ConsumerGroup { group, value } => match value {
                Some(v) => {
                    self.consumer.insert(group, v);
                }
                None => {
                    self.consumer.remove(&group);
                }
            },
            OffsetsRecord::Group { group, value } => match value {
                Some(v) => {
                    self.metadata.insert(group, v);
                }
                None => {
                    self.metadata.remove(&group);
                }
            },
        }
    }

    /// The groups: those with metadata, and those that only hold offsets (simple consumers,
    /// or groups whose metadata was deleted).
    pub(super) fn into_groups(
        mut self,
        now_ms: i64,
        session_timeout_ms: i64,
    ) -> BTreeMap<String, ClassicGroup> {
        let mut groups = BTreeMap::new();
        for (id, value) in std::mem::take(&mut self.metadata) {
            groups.insert(id.clone(), ClassicGroup::from_value(&id, value, now_ms));
        }
        for (id, mut c) in std::mem::take(&mut self.consumer) {
            let mut g = ClassicGroup::new(&id, now_ms);
            g.protocol_type = Some("consumer".into());
            if !c.members.is_empty() {
                g.state = super::classic::GroupState::Stable;
            }
            // Sessions restart; members rejoin or expire.
            for m in c.members.values_mut() {
                m.session_deadline_ms = now_ms.saturating_add(session_timeout_ms);
                m.revocation_deadline_ms = None;
            }
            g.consumer = Some(c);
            groups.insert(id, g);
        }
        for (id, offsets) in self.offsets {
            groups
                .entry(id.clone())
                .or_insert_with(|| ClassicGroup::new(&id, now_ms))
                .offsets = offsets;
        }
        groups
    }
}

/// Replays the partition from its start to its high watermark.
pub(super) fn replay(partition: &Partition) -> Result<Replay, log_store::Error> {
    let mut replay = Replay::default();
    partition.replay(LOAD_READ_BYTES, |chunk| {
        let mut bad = 0u64;
        let (entries, _) = decode_entries(chunk.bytes, |at, e| {
            bad += 1;
            tracing::warn!(offset = at, error = %e, "skipping an undecodable offsets-topic record");
        })?;
        replay.bad_records += bad;
        for e in entries {
            replay.apply_entry(e);
        }
        Ok::<(), log_store::Error>(())
    })?;
    Ok(replay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::encode_batch;
    use log_store::{AppendOptions, Log, LogConfig, TopicPartition};

    fn commit(group: &str, partition: i32, offset: Option<i64>) -> OffsetsRecord {
        OffsetsRecord::Offset {
            group: group.into(),
            topic: "t".into(),
            partition,
            value: offset.map(|offset| OffsetValue {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 1,
            }),
        }
    }

    #[tokio::test]
    async fn the_latest_record_per_key_wins() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let tp = TopicPartition::new(super::super::OFFSETS_TOPIC, 0);
        let (mut log, _) = Log::create(dir.path(), &tp, LogConfig::default(), 0)?;
        let opts = AppendOptions {
            leader_epoch: 0,
            now_ms: 0,
        };
        log.append(
            &encode_batch(&[commit("a", 0, Some(5)), commit("a", 1, Some(7))], 0)?,
            opts,
        )?;
        log.append(
            &encode_batch(&[commit("a", 0, Some(9)), commit("b", 0, Some(1))], 0)?,
            opts,
        )?;
        log.append(&encode_batch(&[commit("b", 0, None)], 0)?, opts)?;
        let partition = Partition::online(tp, log, &crate::actors::Actors::new());
        let replay = replay(&partition)?;
        assert_eq!(replay.records, 5);
        let groups = replay.into_groups(100, 45_000);
        assert_eq!(
            groups.keys().collect::<Vec<_>>(),
            vec!["a"],
            "b's only offset was deleted"
        );
        let a = &groups["a"];
        assert_eq!(a.offsets[&("t".to_string(), 0)].offset, 9);
        assert_eq!(a.offsets[&("t".to_string(), 1)].offset, 7);
        Ok(())
    }
}
