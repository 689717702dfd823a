//! Record batches the broker writes itself (coordinator records, transaction and transform
//! outputs, transform definitions): one uncompressed v2 batch, offsets from 0 (the log assigns
//! the real ones), optionally transactional.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One record of a batch the broker writes.
#[derive(Debug, Clone, Default)]
pub struct BrokerRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp: i64,
}

/// Encodes `records` as one batch, transactional for `producer` `(id, epoch)` when given, with
/// sequence numbers from `base_sequence` (None: no sequence, as Kafka writes its coordinator
/// records). A transactional data batch must carry sequences: the log tracks the ongoing
/// transaction (the last stable offset, the aborted-transaction index) of sequenced batches.
pub fn encode(
    records: &[BrokerRecord],
    producer: Option<(i64, i16)>,
    base_sequence: Option<i32>,
) -> Result<Bytes, String> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch unless `offset - sequence` stays the same: this
            // keeps one batch (base sequence -1 without sequences).
            sequence: match base_sequence {
                Some(s) => s.wrapping_add(i as i32),
                None => i as i32 - 1,
            },
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}
