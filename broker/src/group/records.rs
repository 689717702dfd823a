//! The records of `__consumer_offsets` (sans-IO): Kafka's key and value layouts, so the log
//! reads like Kafka's own (and Kafka's tools can read ours).
//!
//! All integers are big-endian; a `string` is an int16 length and UTF-8 bytes (-1: null, only
//! where "nullable" is said); `bytes` is an int32 length and the bytes; an array is an int32
//! count and its elements.
//!
//! | key version | key fields                                   | value                  |
//! |-------------|----------------------------------------------|------------------------|
//! | 0, 1        | group string, topic string, partition int32  | offset commit          |
//! | 2           | group string                                 | group metadata         |
//! | 3           | group string                                 | consumer group (KIP-848, Sluice's value; `consumer_records`) |
//!
//! Offset commit value, version 3 (written; versions 0-2 are read too):
//! `offset int64, leader_epoch int32, metadata string, commit_timestamp int64`.
//!
//! Group metadata value, version 3 (written; versions 0-2 are read too):
//! `protocol_type string, generation int32, protocol nullable string, leader nullable string,
//! current_state_timestamp int64, members array of { member_id string, group_instance_id
//! nullable string, client_id string, client_host string, rebalance_timeout int32,
//! session_timeout int32, subscription bytes, assignment bytes }`.
//!
//! A null value is a tombstone: the offset, or the whole group, was deleted. Compaction keeps
//! the latest record per key, so replaying the log from its start rebuilds the state.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Key version 1: an offset commit (version 0 is read too).
pub const OFFSET_KEY_VERSION: i16 = 1;
/// Key version 2: group metadata.
pub const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// A committed offset, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1: unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member in stored group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata, as stored after each completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// One record of the offsets topic, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    /// `None`: tombstone.
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    /// `None`: tombstone.
    Group {
        group: String,
        value: Option<GroupValue>,
    },
    /// A consumer-protocol group, whole. `None`: tombstone.
    ConsumerGroup {
        group: String,
        value: Option<Box<super::consumer::ConsumerGroup>>,
    },
}

/// Why a stored record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("offsets topic record is truncated")]
    Truncated,
    #[error("offsets topic record has unknown {what} version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("offsets topic record has a string that is not UTF-8")]
    NotUtf8,
    #[error("offsets topic record has no key")]
    NoKey,
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Names are bounded by the protocol's int16 string lengths on the way in.
    let len = s.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&s.as_bytes()[..len]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

/// Bounds-checked big-endian reads of stored record keys and values (also used by
/// `consumer_records`).
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl Reader<'_> {
    pub(super) fn need(&self, n: usize) -> Result<(), RecordError> {
        if self.0.remaining() < n {
            Err(RecordError::Truncated)
        } else {
            Ok(())
        }
    }
    pub(super) fn i16(&mut self) -> Result<i16, RecordError> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    pub(super) fn i32(&mut self) -> Result<i32, RecordError> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    pub(super) fn i64(&mut self) -> Result<i64, RecordError> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    pub(super) fn nullable_str(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.need(len)?;
        let s = std::str::from_utf8(&self.0[..len]).map_err(|_| RecordError::NotUtf8)?;
        let s = s.to_string();
        self.0.advance(len);
        Ok(Some(s))
    }
    pub(super) fn str(&mut self) -> Result<String, RecordError> {
        Ok(self.nullable_str()?.unwrap_or_default())
    }
    pub(super) fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        let len = len as usize;
        self.need(len)?;
        let v = Bytes::copy_from_slice(&self.0[..len]);
        self.0.advance(len);
        Ok(v)
    }
}

/// The key of an offset commit record.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + group.len() + topic.len());
    b.put_i16(OFFSET_KEY_VERSION);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

/// The key of a group metadata record.
pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_i16(GROUP_KEY_VERSION);
    put_str(&mut b, group);
    b.freeze()
}

pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::with_capacity(24 + v.metadata.len());
    b.put_i16(OFFSET_VALUE_VERSION);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp_ms);
    b.freeze()
}

pub fn group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation_id);
    put_nullable_str(&mut b, v.protocol_name.as_deref());
    put_nullable_str(&mut b, v.leader_id.as_deref());
    b.put_i64(v.current_state_timestamp_ms);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

impl OffsetsRecord {
    /// The record's key and value (`None`: tombstone).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        match self {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => (
                offset_key(group, topic, *partition),
                value.as_ref().map(offset_value),
            ),
            OffsetsRecord::Group { group, value } => {
                (group_key(group), value.as_ref().map(group_value))
            }
            OffsetsRecord::ConsumerGroup { group, value } => (
                super::consumer_records::consumer_group_key(group),
                value
                    .as_deref()
                    .map(super::consumer_records::consumer_group_value),
            ),
        }
    }

    /// Decodes a stored key and value. `Ok(None)`: a key version this broker does not use
    /// (Kafka's transaction or share records, say), skipped as Kafka skips them.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Self>, RecordError> {
        let mut k = Reader(key);
        let version = k.i16()?;
        match version {
            0 | 1 => {
                let group = k.str()?;
                let topic = k.str()?;
                let partition = k.i32()?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(Some(OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                }))
            }
            2 => {
                let group = k.str()?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(Some(OffsetsRecord::Group { group, value }))
            }
            super::consumer_records::CONSUMER_GROUP_KEY_VERSION => {
                let group = k.str()?;
                let value = value
                    .map(super::consumer_records::decode_consumer_group_value)
                    .transpose()?
                    .map(Box::new);
                Ok(Some(OffsetsRecord::ConsumerGroup { group, value }))
            }
            _ => Ok(None),
        }
    }
}

fn decode_offset_value(v: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut r = Reader(v);
    let version = r.i16()?;
    let offset = r.i64()?;
    let (leader_epoch, metadata, commit_timestamp_ms) = match version {
        0 | 2 => (-1, r.str()?, r.i64()?),
        1 => {
            let m = r.str()?;
            let ts = r.i64()?;
            let _expire_timestamp = r.i64()?;
            (-1, m, ts)
        }
        3 => (r.i32()?, r.str()?, r.i64()?),
        other => {
            return Err(RecordError::UnknownVersion {
                what: "offset commit value",
                version: other,
            })
        }
    };
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

/// Members a stored group may list; a larger count is corruption, not a group.
const STORED_MEMBERS_MAX: i32 = 1 << 20;

fn decode_group_value(v: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader(v);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "group metadata value",
            version,
        });
    }
    let protocol_type = r.str()?;
    let generation_id = r.i32()?;
    let protocol_name = r.nullable_str()?;
    let leader_id = r.nullable_str()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?;
    if !(0..=STORED_MEMBERS_MAX).contains(&count) {
        return Err(RecordError::Truncated);
    }
    let mut members = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let member_id = r.str()?;
        let group_instance_id = if version >= 3 {
            r.nullable_str()?
        } else {
            None
        };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation_id,
        protocol_name,
        leader_id,
        current_state_timestamp_ms,
        members,
    })
}

/// One uncompressed v2 record batch holding `records`, timestamped `now_ms`, for the append
/// path (which assigns offsets).
pub fn encode_batch(records: &[OffsetsRecord], now_ms: i64) -> Result<Bytes, String> {
    encode_batch_as(records, now_ms, None)
}

/// As [`encode_batch`], as part of the transaction of `(producer_id, producer_epoch)` when
/// given (TxnOffsetCommit: a transactional batch, no sequence, as Kafka writes it).
pub fn encode_batch_as(
    records: &[OffsetsRecord],
    now_ms: i64,
    producer: Option<(i64, i16)>,
) -> Result<Bytes, String> {
    let records: Vec<crate::batch::BrokerRecord> = records
        .iter()
        .map(|r| {
            let (key, value) = r.encode();
            crate::batch::BrokerRecord {
                key: Some(key),
                value,
                headers: Vec::new(),
                timestamp: now_ms,
            }
        })
        .collect();
    crate::batch::encode(&records, producer, None)
}

/// One entry of the offsets topic as a replay sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A record; `producer_id` is set when it belongs to a transaction (TxnOffsetCommit), and
    /// takes effect only when that producer's commit marker follows.
    Record {
        offset: i64,
        producer_id: Option<i64>,
        record: OffsetsRecord,
    },
    /// A transaction marker of `producer_id`.
    Marker { producer_id: i64, commit: bool },
}

/// Every entry of the whole batches in `bytes` (as the log stores them), and the offset after
/// the last whole batch (`None`: no whole batch). Undecodable records are reported to `bad`
/// and skipped, so that one damaged record does not lose a whole coordinator.
pub fn decode_entries(
    bytes: &[u8],
    mut bad: impl FnMut(i64, RecordError),
) -> Result<(Vec<Entry>, Option<i64>), log_store::Error> {
    let mut out = Vec::new();
    let mut next_offset = None;
    for batch in sluice_records::Batches::new(bytes, i32::MAX as usize) {
        let batch = batch?.bytes;
        let header = sluice_records::validate_batch(batch)?;
        next_offset = Some(header.next_offset());
        let body =
            sluice_records::records_body(batch, sluice_records::BATCH_DECOMPRESSED_BYTES_MAX)?;
        let records = sluice_records::parse_records(&body, header.records_count)?;
        if header.is_control() {
            // Control record key: version i16, type i16 (0 abort, 1 commit).
            let kind = records
                .first()
                .and_then(|r| r.key.clone())
                .map(|k| &body[k])
                .filter(|k| k.len() >= 4)
                .map(|k| i16::from_be_bytes([k[2], k[3]]));
            match kind {
                Some(t @ (0 | 1)) => out.push(Entry::Marker {
                    producer_id: header.producer_id,
                    commit: t == 1,
                }),
                _ => bad(header.base_offset, RecordError::NoKey),
            }
            continue;
        }
        let producer_id = header.is_transactional().then_some(header.producer_id);
        for r in records {
            let offset = header.base_offset + r.offset_delta;
            let Some(key) = r.key.clone().map(|k| &body[k]) else {
                bad(offset, RecordError::NoKey);
                continue;
            };
            let value = r.value.clone().map(|v| &body[v]);
            match OffsetsRecord::decode(key, value) {
                Ok(Some(record)) => out.push(Entry::Record {
                    offset,
                    producer_id,
                    record,
                }),
                Ok(None) => {}
                Err(e) => bad(offset, e),
            }
        }
    }
    Ok((out, next_offset))
}

/// Records with their offsets, and the offset after the last whole batch.
pub type Decoded = (Vec<(i64, OffsetsRecord)>, Option<i64>);

/// Every record of the whole batches in `bytes` (as the log stores them), with its offset,
/// and the offset after the last whole batch (`None`: no whole batch), ignoring transactions
/// (control batches are skipped, transactional records are returned like the others).
pub fn decode_batches(
    bytes: &[u8],
    bad: impl FnMut(i64, RecordError),
) -> Result<Decoded, log_store::Error> {
    let (entries, next) = decode_entries(bytes, bad)?;
    let records = entries
        .into_iter()
        .filter_map(|e| match e {
            Entry::Record { offset, record, .. } => Some((offset, record)),
            Entry::Marker { .. } => None,
        })
        .collect();
    Ok((records, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_group() -> GroupValue {
        GroupValue {
            protocol_type: "consumer".into(),
            generation_id: 7,
            protocol_name: Some("range".into()),
            leader_id: Some("m1".into()),
            current_state_timestamp_ms: 1234,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        }
    }

    #[test]
    fn records_round_trip() -> Result<(), RecordError> {
        let recs = vec![
            OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: 0,
                    metadata: "meta".into(),
                    commit_timestamp_ms: 99,
                }),
            },
            OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
            OffsetsRecord::Group {
                group: "g".into(),
                value: Some(sample_group()),
            },
            OffsetsRecord::Group {
                group: "g".into(),
                value: None,
            },
        ];
        for r in recs {
            let (k, v) = r.encode();
            assert_eq!(OffsetsRecord::decode(&k, v.as_deref())?, Some(r));
        }
        Ok(())
    }

    #[test]
    fn kafka_layout_of_an_offset_commit() {
        // Key v1: version, "g", "t", partition 1.
        let k = offset_key("g", "t", 1);
        assert_eq!(&k[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]);
        let v = offset_value(&OffsetValue {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 2,
        });
        assert_eq!(
            &v[..],
            &[0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
        );
    }

    #[test]
    fn older_value_versions_decode() -> Result<(), RecordError> {
        // Offset value v1: offset, metadata, commit ts, expire ts.
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i64(10);
        put_str(&mut b, "m");
        b.put_i64(20);
        b.put_i64(30);
        let v = decode_offset_value(&b)?;
        assert_eq!(
            (v.offset, v.leader_epoch, v.commit_timestamp_ms),
            (10, -1, 20)
        );
        Ok(())
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[0][..],
            &[0, 1, 0, 5, b'a'][..],
            &[0, 2, 0xff, 0x00],
        ] {
            let _ = OffsetsRecord::decode(bytes, Some(&[0, 3, 1]));
            let _ = OffsetsRecord::decode(bytes, None);
        }
        assert_eq!(
            OffsetsRecord::decode(&[0, 9], None),
            Ok(None),
            "unknown key versions are skipped"
        );
        let (k, _) = OffsetsRecord::Group {
            group: "g".into(),
            value: None,
        }
        .encode();
        assert!(OffsetsRecord::decode(&k, Some(&[0, 3, 0, 8, 1])).is_err());
    }

    #[test]
    fn batches_round_trip_through_the_log_parser() -> Result<(), Box<dyn std::error::Error>> {
        let recs = vec![
            OffsetsRecord::Group {
                group: "g".into(),
                value: Some(sample_group()),
            },
            OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                value: None,
            },
        ];
        let batch = encode_batch(&recs, 1000)?;
        sluice_records::validate_batch(&batch)?;
        let mut errors = 0;
        let (got, next) = decode_batches(&batch, |_, _| errors += 1)?;
        assert_eq!((errors, next), (0, Some(2)));
        assert_eq!(got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), recs);
        Ok(())
    }
}
