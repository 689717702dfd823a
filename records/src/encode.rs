//! The one record batch encoder: producers (the client library), the broker's own writes
//! (coordinator records, transform outputs) and tests all build v2 batches here.

use crate::compression::compress_body;
use crate::crc::crc32c;
use crate::error::BatchError;
use crate::header::{attributes, BATCH_HEADER_BYTES, CRC_START, LOG_OVERHEAD_BYTES};

/// One record to encode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord<'a> {
    pub key: Option<&'a [u8]>,
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
    /// Milliseconds since the epoch (CreateTime).
    pub timestamp: i64,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// The batch-level fields. Offsets start at 0 and the partition leader epoch is -1: the log
/// assigns both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    /// Attribute bits; the codec bits (`0x07`) choose the compression.
    pub attributes: i16,
    /// -1: none (not idempotent).
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The first record's sequence; -1: none.
    pub base_sequence: i32,
    /// `None`: the first record's timestamp.
    pub base_timestamp: Option<i64>,
}

impl Default for BatchMeta {
    fn default() -> Self {
        BatchMeta {
            attributes: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            base_timestamp: None,
        }
    }
}

impl BatchMeta {
    /// A transactional batch of `producer` (id, epoch) with sequences from `base_sequence`.
    pub fn transactional(producer: (i64, i16), base_sequence: i32) -> Self {
        BatchMeta {
            attributes: attributes::TRANSACTIONAL,
            producer_id: producer.0,
            producer_epoch: producer.1,
            base_sequence,
            base_timestamp: None,
        }
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

/// The records section, uncompressed.
fn encode_records(records: &[NewRecord<'_>], base_timestamp: i64) -> Vec<u8> {
    let size: usize = records
        .iter()
        .map(|r| 16 + r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len))
        .sum();
    let mut body = Vec::with_capacity(size);
    let mut rec = Vec::new();
    for (i, r) in records.iter().enumerate() {
        rec.clear();
        rec.push(0u8); // attributes
        put_varint(&mut rec, r.timestamp.wrapping_sub(base_timestamp));
        put_varint(&mut rec, i as i64);
        put_bytes(&mut rec, r.key);
        put_bytes(&mut rec, r.value);
        put_varint(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut rec, Some(k));
            put_bytes(&mut rec, *v);
        }
        put_varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    body
}

/// Encodes `records` as one v2 batch, compressed as `meta.attributes` says, with a valid
/// CRC-32C. An empty `records` gives a batch of no record (only tests want one).
pub fn encode_batch(records: &[NewRecord<'_>], meta: &BatchMeta) -> Result<Vec<u8>, BatchError> {
    let count = i32::try_from(records.len())
        .map_err(|_| BatchError::Inconsistent("too many records for one batch"))?;
    let base_timestamp = meta
        .base_timestamp
        .or_else(|| records.first().map(|r| r.timestamp))
        .unwrap_or(0);
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(base_timestamp);
    let body = encode_records(records, base_timestamp);
    let codec = meta.attributes & attributes::COMPRESSION_MASK;
    let body = if codec == 0 {
        body
    } else {
        compress_body(codec, &body)?
    };
    let length =
        i32::try_from(BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()).map_err(|_| {
            BatchError::TooLarge {
                size: BATCH_HEADER_BYTES + body.len(),
                max: i32::MAX as usize,
            }
        })?;
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&length.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // CRC, below
    b.extend_from_slice(&meta.attributes.to_be_bytes());
    b.extend_from_slice(&(count - 1).max(0).to_be_bytes()); // last offset delta
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&meta.producer_id.to_be_bytes());
    b.extend_from_slice(&meta.producer_epoch.to_be_bytes());
    b.extend_from_slice(&meta.base_sequence.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::header::validate_produced_batch;
    use crate::record::parse_records;

    /// A valid uncompressed batch of `n` records of `value_len` bytes, timestamps from `ts`.
    pub(crate) fn batch_with(n: usize, value_len: usize, ts: i64) -> Vec<u8> {
        let value = vec![b'v'; value_len];
        let records: Vec<NewRecord<'_>> = (0..n)
            .map(|i| NewRecord {
                key: None,
                value: Some(&value),
                timestamp: ts + i as i64,
                headers: vec![],
            })
            .collect();
        encode_batch(&records, &BatchMeta::default()).unwrap_or_default()
    }

    pub(crate) fn batch_of(n: usize) -> Vec<u8> {
        batch_with(n, 3, 1_000)
    }

    #[test]
    fn every_codec_encodes_a_valid_batch_that_reads_back() -> Result<(), BatchError> {
        let value = vec![b'x'; 300];
        let records = [
            NewRecord {
                key: Some(b"a"),
                value: Some(&value),
                timestamp: 100,
                headers: vec![(b"h", Some(b"1"))],
            },
            NewRecord {
                key: None,
                value: None,
                timestamp: 90,
                headers: vec![],
            },
        ];
        for codec in 0..=4 {
            let meta = BatchMeta {
                attributes: codec | attributes::TRANSACTIONAL,
                ..BatchMeta::transactional((7, 1), 5)
            };
            let b = encode_batch(&records, &meta)?;
            let h = validate_produced_batch(&b)?;
            assert_eq!((h.records_count, h.compression()), (2, codec));
            assert_eq!((h.base_timestamp, h.max_timestamp), (100, 100));
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (7, 1, 5)
            );
            assert!(h.is_transactional());
            let body = crate::compression::records_body(&b, 1 << 20)?;
            let views = parse_records(&body, 2)?;
            assert_eq!(views[1].timestamp_delta, -10);
            assert_eq!(
                &body[views[0].value.clone().unwrap_or_default()],
                &value[..]
            );
        }
        Ok(())
    }
}
