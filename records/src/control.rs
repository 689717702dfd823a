//! Transaction markers: the control batches that end a producer's transaction, as Kafka's
//! `EndTransactionMarker` and `MemoryRecords.withEndTransactionMarker` write them.
//!
//! A marker is a v2 batch with attributes `transactional | control` (0x30), the producer's id and
//! epoch, base sequence -1 and exactly one record:
//!
//! - key: `version i16 = 0 | type i16` (Kafka's `ControlRecordType`: 0 abort, 1 commit);
//! - value: `version i16 = 0 | coordinator_epoch i32` (Kafka's `EndTransactionMarker`).
//!
//! Markers are never compressed. The log writes them (`log_store::Log::append_marker`); clients
//! may not (Kafka refuses control batches in Produce requests). Recovery reads their key back to
//! rebuild the producer state and the aborted-transaction index.

use crate::compression::records_body;
use crate::header::{self as batch, attributes, BATCH_HEADER_BYTES};
use crate::record::parse_records;

/// Kafka's control record type of an end-transaction marker (key: version i16 = 0, type i16:
/// 0 abort, 1 commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerType {
    Abort,
    Commit,
}

impl MarkerType {
    /// The control record type id Kafka writes in the record key.
    pub fn type_id(self) -> i16 {
        match self {
            MarkerType::Abort => 0,
            MarkerType::Commit => 1,
        }
    }

    /// `None` for any other control record type (KRaft's leader change and snapshot markers,
    /// or unknown ones).
    pub fn from_type_id(id: i16) -> Option<Self> {
        match id {
            0 => Some(MarkerType::Abort),
            1 => Some(MarkerType::Commit),
            _ => None,
        }
    }
}

/// Key and value sizes of a marker record.
const KEY_BYTES: usize = 4;
const VALUE_BYTES: usize = 6;
/// The record after its length: attributes, timestamp delta, offset delta, key length, key,
/// value length, value, header count (each varint one byte).
const RECORD_BYTES: usize = 1 + 1 + 1 + 1 + KEY_BYTES + 1 + VALUE_BYTES + 1;
/// The records section: the record's length varint (one byte) and the record.
const RECORD_BODY_BYTES: usize = 1 + RECORD_BYTES;
/// Bytes of a whole marker batch.
pub const MARKER_BATCH_BYTES: usize = BATCH_HEADER_BYTES + RECORD_BODY_BYTES;

/// The marker batch for `producer_id`, as a producer-side batch (base offset 0, leader epoch -1:
/// the log assigns both), with a valid CRC-32C. Built on the stack.
pub fn end_txn_marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: MarkerType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> [u8; MARKER_BATCH_BYTES] {
    let mut b = [0u8; MARKER_BATCH_BYTES];
    let batch_length = (MARKER_BATCH_BYTES - batch::LOG_OVERHEAD_BYTES) as i32;
    b[8..12].copy_from_slice(&batch_length.to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    let attrs = attributes::TRANSACTIONAL | attributes::CONTROL;
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    b[23..27].copy_from_slice(&0i32.to_be_bytes()); // last offset delta
    b[27..35].copy_from_slice(&timestamp.to_be_bytes());
    b[35..43].copy_from_slice(&timestamp.to_be_bytes());
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // base sequence: none
    b[57..61].copy_from_slice(&1i32.to_be_bytes());
    let r = &mut b[BATCH_HEADER_BYTES..];
    // Zig-zag varints: 16 -> 0x20, 0 -> 0x00, 4 -> 0x08, 6 -> 0x0c.
    r[0] = (RECORD_BYTES * 2) as u8;
    r[1] = 0; // attributes
    r[2] = 0; // timestamp delta
    r[3] = 0; // offset delta
    r[4] = (KEY_BYTES * 2) as u8;
    r[5..7].copy_from_slice(&0i16.to_be_bytes());
    r[7..9].copy_from_slice(&marker.type_id().to_be_bytes());
    r[9] = (VALUE_BYTES * 2) as u8;
    r[10..12].copy_from_slice(&0i16.to_be_bytes());
    r[12..16].copy_from_slice(&coordinator_epoch.to_be_bytes());
    r[16] = 0; // headers
    let crc = crate::crc::crc32c(&b[batch::CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// What a control batch's first record says, as Kafka's `ControlRecordType.parse` and
/// `EndTransactionMarker.deserialize` read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecord {
    /// An end-transaction marker.
    Marker {
        marker: MarkerType,
        coordinator_epoch: i32,
    },
    /// The batch holds no record (Kafka then changes nothing).
    Empty,
    /// Not a readable end-transaction marker: a record that does not parse, a short or
    /// negative-version key or value, or another control type.
    Malformed(&'static str),
}

/// The end-transaction marker a whole control batch holds, when it is a readable one (what a
/// read_committed reader needs to leave an aborted transaction).
pub fn marker_type(batch: &[u8]) -> Option<MarkerType> {
    match parse_control_batch(batch) {
        ControlRecord::Marker { marker, .. } => Some(marker),
        _ => None,
    }
}

/// Reads the control record of a whole control batch (`batch` is the batch's bytes). Never
/// panics on any input.
pub fn parse_control_batch(batch: &[u8]) -> ControlRecord {
    let Ok(h) = batch::BatchHeader::parse(batch) else {
        return ControlRecord::Malformed("truncated batch header");
    };
    if h.records_count <= 0 {
        return ControlRecord::Empty;
    }
    // A marker is never compressed: its body is a few bytes.
    let Ok(body) = records_body(batch, 1 << 10) else {
        return ControlRecord::Malformed("records do not decompress");
    };
    let Ok(views) = parse_records(&body, 1) else {
        return ControlRecord::Malformed("control record does not parse");
    };
    let Some(r) = views.first() else {
        return ControlRecord::Empty;
    };
    let Some(key) = r.key.clone().and_then(|k| body.get(k)) else {
        return ControlRecord::Malformed("control record without a key");
    };
    if key.len() < KEY_BYTES {
        return ControlRecord::Malformed("control record key shorter than 4 bytes");
    }
    let version = i16::from_be_bytes([key[0], key[1]]);
    if version < 0 {
        return ControlRecord::Malformed("negative control record key version");
    }
    let Some(marker) = MarkerType::from_type_id(i16::from_be_bytes([key[2], key[3]])) else {
        return ControlRecord::Malformed("control record is not an end-transaction marker");
    };
    let Some(value) = r.value.clone().and_then(|v| body.get(v)) else {
        return ControlRecord::Malformed("end-transaction marker without a value");
    };
    if value.len() < VALUE_BYTES {
        return ControlRecord::Malformed("end-transaction marker value shorter than 6 bytes");
    }
    if i16::from_be_bytes([value[0], value[1]]) < 0 {
        return ControlRecord::Malformed("negative end-transaction marker value version");
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    ControlRecord::Marker {
        marker,
        coordinator_epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode_batch, BatchMeta, NewRecord};
    use crate::error::BatchError;

    fn control_batch(key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
        let records = [NewRecord {
            key,
            value,
            timestamp: 0,
            headers: vec![],
        }];
        let records = if key.is_none() && value.is_none() {
            &records[..0]
        } else {
            &records[..]
        };
        let meta = BatchMeta {
            attributes: 0x30,
            producer_id: 1,
            producer_epoch: 0,
            ..BatchMeta::default()
        };
        encode_batch(records, &meta).unwrap_or_default()
    }

    #[test]
    fn marker_batches_are_valid_and_read_back() -> Result<(), BatchError> {
        for marker in [MarkerType::Abort, MarkerType::Commit] {
            let b = end_txn_marker_batch(42, 7, marker, 3, 1_234);
            let h = batch::validate_produced_batch(&b)?;
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(h.attributes, 0x30);
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 7, -1)
            );
            assert_eq!((h.base_timestamp, h.max_timestamp), (1_234, 1_234));
            assert_eq!(
                parse_control_batch(&b),
                ControlRecord::Marker {
                    marker,
                    coordinator_epoch: 3
                }
            );
            // The record decodes as Kafka's: key [0, 0, 0, type], value [0, 0, epoch i32].
            let body = records_body(&b, 1 << 10)?;
            let views = parse_records(&body, 1)?;
            let key = views[0].key.clone().unwrap_or_default();
            assert_eq!(&body[key], &[0, 0, 0, marker.type_id() as u8]);
            let value = views[0].value.clone().unwrap_or_default();
            assert_eq!(&body[value], &[0, 0, 0, 0, 0, 3]);
            assert_eq!(views[0].raw.end, body.len());
        }
        Ok(())
    }

    #[test]
    fn malformed_control_records_are_reported_not_panicked_on() {
        let six = [0u8; 6];
        type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
        let cases: [KeyValue<'_>; 6] = [
            (None, Some(&six)),
            (Some(&[0, 0]), Some(&six)),
            (Some(&[0xff, 0xff, 0, 0]), Some(&six)),
            (Some(&[0, 0, 0, 5]), Some(&six)),
            (Some(&[0, 0, 0, 0]), None),
            (Some(&[0, 0, 0, 1]), Some(&[0, 0, 1])),
        ];
        for (key, value) in cases {
            let b = control_batch(key, value);
            assert!(matches!(
                parse_control_batch(&b),
                ControlRecord::Malformed(_)
            ));
        }
        let empty = control_batch(None, None);
        assert_eq!(parse_control_batch(&empty), ControlRecord::Empty);
        let mut b = end_txn_marker_batch(1, 0, MarkerType::Commit, 0, 0).to_vec();
        for cut in 0..b.len() {
            let _ = parse_control_batch(&b[..cut]);
        }
        b[BATCH_HEADER_BYTES] = 0xff;
        assert!(matches!(
            parse_control_batch(&b),
            ControlRecord::Malformed(_)
        ));
    }
}
