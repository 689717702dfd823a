//! The Kafka v2 record batch header: parsing and validation without touching the records.
//!
//! Byte layout (all big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! | offset | field                  | size |
//! |--------|------------------------|------|
//! | 0      | base_offset            | 8    |
//! | 8      | batch_length           | 4    |
//! | 12     | partition_leader_epoch | 4    |
//! | 16     | magic (= 2)            | 1    |
//! | 17     | crc (CRC-32C of 21..)  | 4    |
//! | 21     | attributes             | 2    |
//! | 23     | last_offset_delta      | 4    |
//! | 27     | base_timestamp         | 8    |
//! | 35     | max_timestamp          | 8    |
//! | 43     | producer_id            | 8    |
//! | 51     | producer_epoch         | 2    |
//! | 53     | base_sequence          | 4    |
//! | 57     | records_count          | 4    |
//!
//! The CRC does not cover the first 21 bytes, which is why the log can assign the base offset
//! and leader epoch in place without recomputing it.

use crate::crc::{crc32c, crc32c_parts};
use crate::error::BatchError;

/// Size of the fixed v2 batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// `base_offset` + `batch_length`: the prefix that tells how long a batch is.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Where the CRC-covered part of a batch starts.
pub const CRC_START: usize = 21;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORDS_COUNT_AT: usize = 57;

/// Attribute bits, as in Kafka's `RecordBatch`.
pub mod attributes {
    /// Mask of the compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub const COMPRESSION_MASK: i16 = 0x07;
    /// Timestamps are LogAppendTime.
    pub const LOG_APPEND_TIME: i16 = 0x08;
    /// Part of a transaction.
    pub const TRANSACTIONAL: i16 = 0x10;
    /// A control batch (transaction marker).
    pub const CONTROL: i16 = 0x20;
}

/// The decoded fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batch_length` field.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the fixed header from the first 61 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: bytes.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(bytes, 0),
            batch_length: be_i32(bytes, 8),
            partition_leader_epoch: be_i32(bytes, 12),
            magic: bytes[MAGIC_AT] as i8,
            crc: be_i32(bytes, CRC_AT) as u32,
            attributes: be_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            records_count: be_i32(bytes, 57),
        })
    }

    /// Total bytes of the batch including the 12-byte offset/length prefix.
    pub fn total_bytes(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD_BYTES
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset one past the last record: where the next batch starts.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & attributes::TRANSACTIONAL != 0
    }

    pub fn compression(&self) -> i16 {
        self.attributes & attributes::COMPRESSION_MASK
    }
}

/// Reads the declared total size (prefix included) of the batch that starts `bytes`, checking it
/// against `[61, max_batch_bytes]` before anything is allocated or read for it.
pub fn declared_batch_bytes(bytes: &[u8], max_batch_bytes: usize) -> Result<usize, BatchError> {
    if bytes.len() < LOG_OVERHEAD_BYTES {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD_BYTES,
            available: bytes.len(),
        });
    }
    let length = be_i32(bytes, 8) as i64;
    let min = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i64;
    let max = (max_batch_bytes.saturating_sub(LOG_OVERHEAD_BYTES)) as i64;
    if length < min {
        return Err(BatchError::BadLength { length, min, max });
    }
    if length > max {
        return Err(BatchError::TooLarge {
            size: length as usize + LOG_OVERHEAD_BYTES,
            max: max_batch_bytes,
        });
    }
    Ok(length as usize + LOG_OVERHEAD_BYTES)
}

/// Validates one complete batch (`bytes` is exactly the batch): magic, CRC-32C, header
/// consistency. Does not decode any record.
pub fn validate_batch(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if header.magic != 2 {
        return Err(BatchError::UnsupportedMagic(header.magic));
    }
    if header.total_bytes() != bytes.len() {
        return Err(BatchError::Truncated {
            needed: header.total_bytes(),
            available: bytes.len(),
        });
    }
    let computed = crc32c(&bytes[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            computed,
        });
    }
    if header.last_offset_delta < 0 {
        return Err(BatchError::Inconsistent("negative last_offset_delta"));
    }
    if header.records_count < 0 {
        return Err(BatchError::Inconsistent("negative record count"));
    }
    Ok(header)
}

/// Validates a batch as a producer sends it: as [`validate_batch`], plus at least one record and
/// offset deltas `0..count` (a producer never sends gaps).
pub fn validate_produced_batch(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = validate_batch(bytes)?;
    if header.records_count == 0 {
        return Err(BatchError::Inconsistent("batch holds no records"));
    }
    if header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::Inconsistent(
            "last_offset_delta does not match the record count",
        ));
    }
    Ok(header)
}

/// Splits `bytes` into the complete batches it holds, validating each as produced.
/// Fails on the first invalid batch; nothing is returned for a partially valid input.
pub fn split_produced_batches(
    bytes: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<(usize, BatchHeader)>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let len = declared_batch_bytes(rest, max_batch_bytes)?;
        if len > rest.len() {
            return Err(BatchError::Truncated {
                needed: len,
                available: rest.len(),
            });
        }
        let header = validate_produced_batch(&rest[..len])?;
        out.push((at, header));
        at += len;
    }
    if out.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(out)
}

/// Writes the log-assigned fields (base offset, leader epoch) into a 61-byte header copy.
pub fn patch_header(header: &mut [u8], base_offset: i64, leader_epoch: i32) {
    header[0..8].copy_from_slice(&base_offset.to_be_bytes());
    header[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Switches a header copy to LogAppendTime with `now_ms` as its max timestamp and returns the
/// new CRC computed over the patched header and the untouched record bytes.
pub fn patch_log_append_time(header: &mut [u8], records: &[u8], now_ms: i64) {
    let attrs = be_i16(header, ATTRIBUTES_AT) | attributes::LOG_APPEND_TIME;
    header[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
    header[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c_parts(&[&header[CRC_START..], records]);
    header[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrites a 61-byte header copy for a new records section (`records`, as stored: compressed
/// when the attributes say so): batch length, attributes, record count, and the CRC over the
/// patched header and `records`. Offsets, timestamps and producer fields stay as they were.
pub fn patch_records(
    header: &mut [u8],
    attributes: i16,
    records_count: i32,
    records: &[u8],
) -> Result<(), BatchError> {
    let length = BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + records.len();
    let length = i32::try_from(length).map_err(|_| BatchError::TooLarge {
        size: length + LOG_OVERHEAD_BYTES,
        max: i32::MAX as usize,
    })?;
    header[8..12].copy_from_slice(&length.to_be_bytes());
    header[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    header[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&records_count.to_be_bytes());
    let crc = crc32c_parts(&[&header[CRC_START..], records]);
    header[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid uncompressed v2 batch of `n` records of `value_len` bytes each.
    pub(crate) fn build_batch(n: i32, value_len: usize, timestamp: i64) -> Vec<u8> {
        crate::encode::tests::batch_with(n as usize, value_len, timestamp)
    }

    #[test]
    fn valid_batch_roundtrips() -> Result<(), BatchError> {
        let b = build_batch(3, 10, 1000);
        let h = validate_produced_batch(&b)?;
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.total_bytes(), b.len());
        Ok(())
    }

    #[test]
    fn crc_flip_is_detected() {
        let mut b = build_batch(3, 10, 1000);
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(
            validate_batch(&b),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut b = build_batch(1, 1, 1);
        b[MAGIC_AT] = 1;
        assert_eq!(validate_batch(&b), Err(BatchError::UnsupportedMagic(1)));
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_reading() {
        let mut b = build_batch(1, 1, 1);
        b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            declared_batch_bytes(&b, 1 << 20),
            Err(BatchError::TooLarge { .. })
        ));
    }

    #[test]
    fn offset_rewrite_keeps_crc_valid() -> Result<(), BatchError> {
        let mut b = build_batch(2, 5, 7);
        patch_header(&mut b[..BATCH_HEADER_BYTES], 12345, 9);
        let h = validate_batch(&b)?;
        assert_eq!(h.base_offset, 12345);
        assert_eq!(h.partition_leader_epoch, 9);
        Ok(())
    }

    #[test]
    fn log_append_time_recomputes_crc() -> Result<(), BatchError> {
        let b = build_batch(2, 5, 7);
        let (head, recs) = b.split_at(BATCH_HEADER_BYTES);
        let mut head = head.to_vec();
        patch_log_append_time(&mut head, recs, 99);
        let mut joined = head;
        joined.extend_from_slice(recs);
        let h = validate_batch(&joined)?;
        assert_eq!(h.max_timestamp, 99);
        assert_ne!(h.attributes & attributes::LOG_APPEND_TIME, 0);
        Ok(())
    }

    #[test]
    fn multiple_batches_split() -> Result<(), BatchError> {
        let mut all = build_batch(2, 5, 7);
        all.extend(build_batch(4, 5, 8));
        let parts = split_produced_batches(&all, 1 << 20)?;
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].1.records_count, 4);
        assert_eq!(split_produced_batches(&[], 1 << 20), Err(BatchError::Empty));
        Ok(())
    }
}
