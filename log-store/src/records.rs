//! Record-level access to a stored batch, for the few features that need it (timestamp lookup,
//! compaction). The append and fetch paths never come here.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use bytes::BytesMut;
use kafka_protocol::compression::{self as codec, Compressor, Decompressor};

use crate::batch::{attributes, BatchHeader, BATCH_HEADER_BYTES};
use crate::error::{BatchError, Error, Result};

/// One record inside a (decompressed) batch body, by ranges into that body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    pub key: Option<Range<usize>>,
    /// `None` for a tombstone.
    pub value: Option<Range<usize>>,
    /// The whole record, length prefix included.
    pub raw: Range<usize>,
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        z |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

fn read_bytes_range(buf: &[u8], pos: &mut usize, end: usize) -> Option<Option<Range<usize>>> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        return Some(None);
    }
    let start = *pos;
    let stop = start.checked_add(len as usize)?;
    if stop > end {
        return None;
    }
    *pos = stop;
    Some(Some(start..stop))
}

fn invalid(reason: &'static str) -> Error {
    Error::InvalidBatch(BatchError::Inconsistent(reason))
}

/// The records section of `batch` (a whole batch), decompressed if needed.
pub fn records_body(batch: &[u8]) -> Result<Cow<'_, [u8]>> {
    let h = BatchHeader::parse(batch)?;
    let body = &batch[BATCH_HEADER_BYTES..];
    if h.compression() == 0 {
        return Ok(Cow::Borrowed(body));
    }
    let mut input = Bytes::copy_from_slice(body);
    let out = match h.compression() {
        1 => codec::Gzip::decompress(&mut input, |b: &mut Bytes| Ok(b.clone())),
        2 => codec::Snappy::decompress(&mut input, |b: &mut Bytes| Ok(b.clone())),
        3 => codec::Lz4::decompress(&mut input, |b: &mut Bytes| Ok(b.clone())),
        4 => codec::Zstd::decompress(&mut input, |b: &mut Bytes| Ok(b.clone())),
        _ => return Err(invalid("unknown compression codec")),
    };
    out.map(|b| Cow::Owned(b.to_vec()))
        .map_err(|_| invalid("records do not decompress"))
}

/// Compresses a records section with a batch codec (`attributes & 0x07`: 0 none, 1 gzip,
/// 2 snappy, 3 lz4, 4 zstd), as a producer does.
pub fn compress_body(codec: i16, body: &[u8]) -> Result<Vec<u8>> {
    // The codecs take a closure that fills their input buffer; its error type is the codec
    // crate's, so each arm spells the closure out for inference.
    let mut out = Vec::new();
    let done = match codec {
        0 => {
            out.extend_from_slice(body);
            Ok(())
        }
        1 => codec::Gzip::compress(&mut out, |b: &mut BytesMut| {
            b.extend_from_slice(body);
            Ok(())
        }),
        2 => codec::Snappy::compress(&mut out, |b: &mut BytesMut| {
            b.extend_from_slice(body);
            Ok(())
        }),
        3 => codec::Lz4::compress(&mut out, |b: &mut BytesMut| {
            b.extend_from_slice(body);
            Ok(())
        }),
        4 => codec::Zstd::compress(&mut out, |b: &mut BytesMut| {
            b.extend_from_slice(body);
            Ok(())
        }),
        _ => {
            return Err(Error::Compression {
                codec,
                reason: "unknown codec".into(),
            })
        }
    };
    done.map_err(|e| Error::Compression {
        codec,
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Parses `count` records from a decompressed body.
pub fn parse_records(body: &[u8], count: i32) -> Result<Vec<RecordView>> {
    let mut out = Vec::with_capacity(count.clamp(0, 4096) as usize);
    let mut pos = 0usize;
    for _ in 0..count {
        let start = pos;
        let len = read_varint(body, &mut pos).ok_or_else(|| invalid("truncated record length"))?;
        if len < 0 {
            return Err(invalid("negative record length"));
        }
        let end = pos
            .checked_add(len as usize)
            .filter(|e| *e <= body.len())
            .ok_or_else(|| invalid("record runs past the batch"))?;
        let mut p = pos + 1; // attributes
        let ts = read_varint(body, &mut p).ok_or_else(|| invalid("bad timestamp delta"))?;
        let od = read_varint(body, &mut p).ok_or_else(|| invalid("bad offset delta"))?;
        let key = read_bytes_range(body, &mut p, end).ok_or_else(|| invalid("bad key"))?;
        let value = read_bytes_range(body, &mut p, end).ok_or_else(|| invalid("bad value"))?;
        out.push(RecordView {
            offset_delta: od,
            timestamp_delta: ts,
            key,
            value,
            raw: start..end,
        });
        pos = end;
    }
    Ok(out)
}

fn record_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>> {
    let h = BatchHeader::parse(batch)?;
    let body = records_body(batch)?;
    let recs = parse_records(&body, h.records_count)?;
    let log_append = h.attributes & attributes::LOG_APPEND_TIME != 0;
    Ok(recs
        .iter()
        .map(|r| {
            let ts = if log_append {
                h.max_timestamp
            } else {
                h.base_timestamp + r.timestamp_delta
            };
            (h.base_offset + r.offset_delta, ts)
        })
        .collect())
}

/// The first record in `batch` with timestamp >= `ts`: `(offset, timestamp)`.
pub(crate) fn first_offset_at_or_after(batch: &[u8], ts: i64) -> Result<Option<(i64, i64)>> {
    Ok(record_timestamps(batch)?
        .into_iter()
        .find(|(_, t)| *t >= ts))
}

/// The last record in `batch` whose timestamp equals `ts`.
pub(crate) fn last_offset_with_timestamp(batch: &[u8], ts: i64) -> Result<Option<i64>> {
    Ok(record_timestamps(batch)?
        .into_iter()
        .filter(|(_, t)| *t == ts)
        .map(|(o, _)| o)
        .next_back())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build_keyed_batch, TestRecord};

    #[test]
    fn parses_keys_values_and_tombstones() -> Result<()> {
        let recs = vec![
            TestRecord {
                key: Some(b"k1".to_vec()),
                value: Some(b"v1".to_vec()),
                timestamp_delta: 0,
            },
            TestRecord {
                key: Some(b"k2".to_vec()),
                value: None,
                timestamp_delta: 5,
            },
        ];
        let b = build_keyed_batch(&recs, 100, None, 0);
        let body = records_body(&b)?;
        let views = parse_records(&body, 2)?;
        assert_eq!(views.len(), 2);
        assert_eq!(&body[views[0].key.clone().unwrap_or_default()], b"k1");
        assert!(views[1].value.is_none());
        assert_eq!(first_offset_at_or_after(&b, 101)?, Some((1, 105)));
        Ok(())
    }

    #[test]
    fn every_codec_roundtrips() -> Result<()> {
        let recs = vec![TestRecord {
            key: Some(b"key".to_vec()),
            value: Some(vec![b'x'; 300]),
            timestamp_delta: 0,
        }];
        let plain = build_keyed_batch(&recs, 1, None, 0);
        for codec in 0..=4 {
            let b = crate::testing::build_compressed_batch(&recs, 1, None, 0, codec)?;
            crate::batch::validate_batch(&b)?;
            assert_eq!(*records_body(&b)?, plain[BATCH_HEADER_BYTES..]);
        }
        assert!(compress_body(5, b"x").is_err());
        Ok(())
    }

    #[test]
    fn truncated_records_are_an_error_not_a_panic() {
        let recs = vec![TestRecord {
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            timestamp_delta: 0,
        }];
        let b = build_keyed_batch(&recs, 1, None, 0);
        let body = &b[BATCH_HEADER_BYTES..b.len() - 2];
        assert!(parse_records(body, 1).is_err());
        assert!(parse_records(&[0xff; 12], 3).is_err());
    }
}
