//! Records as callers see them, and record batch (magic v2) encoding through
//! `sluice_records`'s encoder. Sans-IO. Decoding lives in `batch_decoder`.

use std::collections::HashSet;

use bytes::Bytes;
use sluice_records::{BatchMeta, NewRecord};

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    /// The key; `None` is a null key (partitioned round-robin by the CLI).
    pub key: Option<Bytes>,
    /// The value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers, in order. Keys must be distinct.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the epoch; `None` means "now".
    pub timestamp_ms: Option<i64>,
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Create time or log append time (ms since the epoch), as the topic is configured.
    pub timestamp_ms: i64,
    /// The key, `None` when null.
    pub key: Option<Bytes>,
    /// The value, `None` when null.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Batch compression codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy (Kafka's xerial framing).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec's id in a batch's attributes.
    pub fn codec(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Encodes `records` as one record batch (magic v2, offsets 0..n, no producer id).
pub fn encode_batch(
    records: &[ProduceRecord],
    compression: Compression,
    now_ms: i64,
) -> Result<Bytes, String> {
    if records.is_empty() {
        return Err("cannot encode an empty batch".into());
    }
    let mut encoded = Vec::with_capacity(records.len());
    for record in records {
        let mut seen = HashSet::with_capacity(record.headers.len());
        for (key, _) in &record.headers {
            if !seen.insert(key.as_str()) {
                return Err(format!("header {key:?} appears twice in one record"));
            }
        }
        encoded.push(NewRecord {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            timestamp: record.timestamp_ms.unwrap_or(now_ms),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_deref()))
                .collect(),
        });
    }
    let meta = BatchMeta {
        attributes: compression.codec(),
        ..BatchMeta::default()
    };
    sluice_records::encode_batch(&encoded, &meta)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &'static str) -> ProduceRecord {
        ProduceRecord {
            value: Some(Bytes::from_static(value.as_bytes())),
            ..Default::default()
        }
    }

    fn field<const N: usize>(batch: &[u8], at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&batch[at..at + N]);
        out
    }

    #[test]
    fn many_records_make_one_batch() -> Result<(), String> {
        let records: Vec<_> = (0..100).map(|_| record("v")).collect();
        let batch = encode_batch(&records, Compression::None, 0)?;
        let length = i32::from_be_bytes(field(&batch, 8));
        assert_eq!(batch.len(), 12 + length as usize, "exactly one batch");
        assert_eq!(batch[16], 2, "magic v2");
        assert_eq!(
            i32::from_be_bytes(field(&batch, 23)),
            99,
            "last offset delta"
        );
        assert_eq!(i64::from_be_bytes(field(&batch, 43)), -1, "no producer id");
        assert_eq!(
            i32::from_be_bytes(field(&batch, 53)),
            -1,
            "no base sequence"
        );
        assert_eq!(i32::from_be_bytes(field(&batch, 57)), 100, "record count");
        Ok(())
    }

    #[test]
    fn timestamps_default_to_now() -> Result<(), String> {
        let mut stamped = record("a");
        stamped.timestamp_ms = Some(5);
        let batch = encode_batch(&[stamped, record("b")], Compression::None, 9)?;
        assert_eq!(i64::from_be_bytes(field(&batch, 27)), 5, "base timestamp");
        assert_eq!(i64::from_be_bytes(field(&batch, 35)), 9, "max timestamp");
        Ok(())
    }

    #[test]
    fn duplicate_header_keys_and_empty_batches_are_refused() {
        let mut r = record("v");
        r.headers = vec![("h".into(), None), ("h".into(), None)];
        assert!(encode_batch(&[r], Compression::None, 0).is_err());
        assert!(encode_batch(&[], Compression::None, 0).is_err());
    }
}
