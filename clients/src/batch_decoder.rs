//! Defensive decoding of fetched record batches (magic v2), on `sluice_records`. Sans-IO.
//!
//! Every count and length read from the wire is checked against the bytes that remain before
//! anything is allocated for it, and decompression stops at a fixed output size, so a hostile
//! or corrupt response costs an error, never an abort. (The general-purpose decoder in
//! `kafka_protocol::records` reserves memory from wire counts and decompresses without a
//! limit, which is why fetches do not use it.) Record keys, values and header values are
//! slices of the fetched bytes (or of the decompressed body): nothing is copied per record.

use bytes::Bytes;
use sluice_records::{
    attributes, decompress, parse_records, validate_batch, Batches, BATCH_HEADER_BYTES,
};

use crate::records::ConsumerRecord;

/// Most records accepted in one batch.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;
/// Largest decompressed size accepted for one batch.
pub const BATCH_DECOMPRESSED_BYTES_MAX: usize = sluice_records::BATCH_DECOMPRESSED_BYTES_MAX;
/// Largest decompressed size accepted for all batches of one partition in one fetch.
pub const DECOMPRESSED_BYTES_MAX: usize = 512 << 20;

/// The records of a fetched partition, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedRecords {
    /// Data records at or after the fetch offset, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The offset after the last whole batch, control batches included; `None` if no whole
    /// batch was present.
    pub next_offset: Option<i64>,
    /// Whether bytes were left after the last whole batch (a partial batch, which brokers may
    /// send when a fetch fills up).
    pub partial_tail: bool,
}

/// Decodes every whole batch in `data` (the records field of a fetch response), keeping data
/// records with `offset >= from_offset`.
pub fn decode_batches(
    data: Bytes,
    partition: i32,
    from_offset: i64,
) -> Result<DecodedRecords, String> {
    let mut out = DecodedRecords::default();
    let mut decompressed_budget = DECOMPRESSED_BYTES_MAX;
    let mut walk = Batches::new(&data, i32::MAX as usize);
    for batch in walk.by_ref() {
        let batch = batch.map_err(|e| format!("record set: {e}"))?;
        let base_offset = batch.header.base_offset;
        let whole = data.slice(batch.position..batch.position + batch.bytes.len());
        let decoded = decode_batch(whole, partition, from_offset, &mut decompressed_budget)
            .map_err(|reason| format!("batch at offset {base_offset}: {reason}"))?;
        out.next_offset = Some(decoded.next_offset);
        out.records.extend(decoded.records);
    }
    out.partial_tail = walk.partial_tail();
    Ok(out)
}

struct Batch {
    next_offset: i64,
    records: Vec<ConsumerRecord>,
}

fn decode_batch(
    batch: Bytes,
    partition: i32,
    from_offset: i64,
    budget: &mut usize,
) -> Result<Batch, String> {
    let h = validate_batch(&batch).map_err(|e| e.to_string())?;
    let next_offset = h
        .base_offset
        .checked_add(i64::from(h.last_offset_delta) + 1)
        .ok_or_else(|| "offsets overflow".to_string())?;
    // Control batches (transaction markers) and batches wholly before the fetch offset are
    // skipped without being decompressed.
    if h.is_control() || next_offset <= from_offset {
        return Ok(Batch {
            next_offset,
            records: Vec::new(),
        });
    }
    let record_count = usize::try_from(h.records_count)
        .ok()
        .filter(|n| *n <= BATCH_RECORDS_MAX)
        .ok_or_else(|| format!("record count {} is out of range", h.records_count))?;
    let body = match h.compression() {
        0 => batch.slice(BATCH_HEADER_BYTES..),
        codec => {
            let cap = BATCH_DECOMPRESSED_BYTES_MAX.min(*budget);
            let out =
                decompress(codec, &batch[BATCH_HEADER_BYTES..], cap).map_err(|e| e.to_string())?;
            *budget = budget.saturating_sub(out.len());
            Bytes::from(out)
        }
    };
    let views = parse_records(&body, h.records_count).map_err(|e| e.to_string())?;
    let log_append_time = h.attributes & attributes::LOG_APPEND_TIME != 0;
    let mut records = Vec::with_capacity(record_count);
    for (i, v) in views.iter().enumerate() {
        let offset = h
            .base_offset
            .checked_add(v.offset_delta)
            .ok_or_else(|| format!("record {i}: offset overflows"))?;
        if offset < from_offset {
            continue;
        }
        let timestamp_ms = if log_append_time {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(v.timestamp_delta)
        };
        records.push(ConsumerRecord {
            partition,
            offset,
            timestamp_ms,
            key: v.key.clone().map(|r| body.slice(r)),
            value: v.value.clone().map(|r| body.slice(r)),
            headers: v
                .headers(&body)
                .map(|hv| {
                    let key = String::from_utf8_lossy(&body[hv.key]).into_owned();
                    (key, hv.value.map(|r| body.slice(r)))
                })
                .collect(),
        });
    }
    Ok(Batch {
        next_offset,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode_batch, Compression, ProduceRecord};

    const BATCH_LOG_OVERHEAD: usize = 12;
    const MAGIC_AT: usize = 16;
    const CRC_AT: usize = 17;
    const ATTRIBUTES_AT: usize = 21;
    const LAST_OFFSET_DELTA_AT: usize = 23;
    const MAX_TIMESTAMP_AT: usize = 35;
    const RECORD_COUNT_AT: usize = 57;
    const TIMESTAMP_TYPE_LOG_APPEND: i16 = attributes::LOG_APPEND_TIME;
    const CONTROL_FLAG: i16 = attributes::CONTROL;

    fn record(key: Option<&'static str>, value: &'static str) -> ProduceRecord {
        ProduceRecord {
            key: key.map(|k| Bytes::from_static(k.as_bytes())),
            value: Some(Bytes::from_static(value.as_bytes())),
            headers: vec![
                ("h".into(), Some(Bytes::from_static(b"1"))),
                ("n".into(), None),
            ],
            timestamp_ms: None,
        }
    }

    /// Rewrites the base offset of an encoded batch, as a broker does when appending (the CRC
    /// does not cover it).
    fn at_offset(mut batch: Vec<u8>, base_offset: i64) -> Vec<u8> {
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
        batch
    }

    /// Recomputes the CRC after a test edits the batch.
    fn reseal(mut batch: Vec<u8>) -> Vec<u8> {
        let crc = sluice_records::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn round_trips_through_every_codec() -> Result<(), String> {
        for compression in CODECS {
            let records = vec![
                record(Some("k"), "a"),
                record(None, "b"),
                record(Some(""), "c"),
            ];
            let batch = encode_batch(&records, compression, 1_700_000_000_000)?;
            let decoded = decode_batches(batch, 3, 0)?;
            assert_eq!(decoded.next_offset, Some(3), "{compression:?}");
            assert!(!decoded.partial_tail);
            let got: Vec<_> = decoded
                .records
                .iter()
                .map(|r| (r.offset, r.key.clone(), r.value.clone()))
                .collect();
            let want: Vec<_> = records
                .iter()
                .enumerate()
                .map(|(i, r)| (i as i64, r.key.clone(), r.value.clone()))
                .collect();
            assert_eq!(got, want, "{compression:?}");
            assert_eq!(decoded.records[0].headers, records[0].headers);
            assert_eq!(decoded.records[0].partition, 3);
            assert_eq!(decoded.records[2].timestamp_ms, 1_700_000_000_000);
        }
        Ok(())
    }

    #[test]
    fn large_compressed_batches_round_trip() -> Result<(), String> {
        let value: &'static str = "the same text over and over; ";
        let records: Vec<_> = (0..5000).map(|_| record(None, value)).collect();
        for compression in CODECS {
            let decoded = decode_batches(encode_batch(&records, compression, 0)?, 0, 0)?;
            assert_eq!(decoded.records.len(), 5000, "{compression:?}");
            assert_eq!(decoded.next_offset, Some(5000));
        }
        Ok(())
    }

    #[test]
    fn log_append_time_uses_the_max_timestamp() -> Result<(), String> {
        let mut early = record(None, "a");
        early.timestamp_ms = Some(10);
        let mut late = record(None, "b");
        late.timestamp_ms = Some(20);
        let mut batch = encode_batch(&[early, late], Compression::None, 0)?.to_vec();
        batch[ATTRIBUTES_AT + 1] |= TIMESTAMP_TYPE_LOG_APPEND as u8;
        batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&99i64.to_be_bytes());
        let decoded = decode_batches(Bytes::from(reseal(batch)), 0, 0)?;
        assert_eq!(
            decoded
                .records
                .iter()
                .map(|r| r.timestamp_ms)
                .collect::<Vec<_>>(),
            vec![99, 99]
        );
        Ok(())
    }

    #[test]
    fn stops_at_a_partial_tail_and_skips_earlier_offsets() -> Result<(), String> {
        let first = at_offset(
            encode_batch(
                &[record(None, "a"), record(None, "b")],
                Compression::None,
                0,
            )?
            .to_vec(),
            10,
        );
        let second = at_offset(
            encode_batch(&[record(None, "c")], Compression::None, 0)?.to_vec(),
            12,
        );
        let mut data = first.clone();
        data.extend_from_slice(&second[..second.len() - 3]);
        let decoded = decode_batches(Bytes::from(data), 0, 11)?;
        assert_eq!(
            decoded.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![11]
        );
        assert_eq!(decoded.next_offset, Some(12));
        assert!(decoded.partial_tail);
        let mut data = first;
        data.extend_from_slice(&second[..7]);
        assert!(decode_batches(Bytes::from(data), 0, 0)?.partial_tail);
        Ok(())
    }

    #[test]
    fn control_batches_advance_the_offset_but_yield_nothing() -> Result<(), String> {
        let mut batch = encode_batch(&[record(None, "marker")], Compression::None, 0)?.to_vec();
        batch[ATTRIBUTES_AT + 1] |= CONTROL_FLAG as u8;
        let decoded = decode_batches(Bytes::from(reseal(batch)), 0, 0)?;
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, Some(1));
        Ok(())
    }

    #[test]
    fn bad_batches_are_errors_not_aborts() -> Result<(), String> {
        let good = encode_batch(&[record(None, "a")], Compression::None, 0)?.to_vec();
        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            b
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "huge record count",
                reseal(edit(&|b| {
                    b[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&i32::MAX.to_be_bytes())
                })),
            ),
            (
                "negative record count",
                reseal(edit(&|b| {
                    b[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&(-1i32).to_be_bytes())
                })),
            ),
            (
                "count larger than the records",
                reseal(edit(&|b| b[RECORD_COUNT_AT + 3] = 2)),
            ),
            (
                "negative length",
                edit(&|b| b[8..12].copy_from_slice(&(-5i32).to_be_bytes())),
            ),
            (
                "short length",
                edit(&|b| b[8..12].copy_from_slice(&3i32.to_be_bytes())),
            ),
            ("old magic", edit(&|b| b[MAGIC_AT] = 1)),
            (
                "bad crc",
                edit(&|b| *b.last_mut().unwrap_or(&mut 0) ^= 0xff),
            ),
            (
                "unknown codec",
                reseal(edit(&|b| b[ATTRIBUTES_AT + 1] |= 7)),
            ),
            (
                "gzip flag on plain data",
                reseal(edit(&|b| b[ATTRIBUTES_AT + 1] |= 1)),
            ),
            (
                "snappy flag on plain data",
                reseal(edit(&|b| b[ATTRIBUTES_AT + 1] |= 2)),
            ),
            (
                "lz4 flag on plain data",
                reseal(edit(&|b| b[ATTRIBUTES_AT + 1] |= 3)),
            ),
            (
                "zstd flag on plain data",
                reseal(edit(&|b| b[ATTRIBUTES_AT + 1] |= 4)),
            ),
            (
                "negative last offset delta",
                reseal(edit(&|b| {
                    b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                        .copy_from_slice(&(-2i32).to_be_bytes())
                })),
            ),
        ];
        for (name, data) in cases {
            assert!(decode_batches(Bytes::from(data), 0, 0).is_err(), "{name}");
        }
        Ok(())
    }

    #[test]
    fn hostile_record_fields_are_refused() -> Result<(), String> {
        // A batch whose one record claims 2^30 headers in a few bytes.
        let mut body = vec![];
        let record = [0u8, 0, 0, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x08];
        body.push((record.len() as u8) << 1); // zigzag length
        body.extend_from_slice(&record);
        let mut batch = encode_batch(&[ProduceRecord::default()], Compression::None, 0)?.to_vec();
        batch.truncate(BATCH_HEADER_BYTES);
        batch.extend_from_slice(&body);
        let length = (batch.len() - BATCH_LOG_OVERHEAD) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let error = decode_batches(Bytes::from(reseal(batch)), 0, 0)
            .err()
            .unwrap_or_default();
        assert!(error.contains("header count"), "{error}");
        Ok(())
    }
}
