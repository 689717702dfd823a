//! Record batches the broker writes itself (coordinator records, transaction and transform
//! outputs, transform definitions): one uncompressed v2 batch, offsets from 0 (the log assigns
//! the real ones), optionally transactional.

use bytes::Bytes;
use sluice_records::{encode_batch, BatchMeta, NewRecord};

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
    let meta = match producer {
        Some(p) => BatchMeta::transactional(p, base_sequence.unwrap_or(-1)),
        None => BatchMeta {
            base_sequence: base_sequence.unwrap_or(-1),
            ..BatchMeta::default()
        },
    };
    let records: Vec<NewRecord<'_>> = records
        .iter()
        .map(|r| NewRecord {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp: r.timestamp,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_deref()))
                .collect(),
        })
        .collect();
    encode_batch(&records, &meta)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}
