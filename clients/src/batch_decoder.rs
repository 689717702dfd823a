//! Defensive decoding of fetched record batches (magic v2). Sans-IO.
//!
//! Every count and length read from the wire is checked against the bytes that remain before
//! anything is allocated for it, and decompression stops at a fixed output size, so a hostile
//! or corrupt response costs an error, never an abort. (The general-purpose decoder in
//! `kafka_protocol::records` reserves memory from wire counts and decompresses without a
//! limit, which is why fetches do not use it.)
//!
//! Batch layout, after the 8-byte base offset and 4-byte length: leader epoch (4), magic (1),
//! CRC-32C of everything after it (4), attributes (2), last offset delta (4), base and max
//! timestamps (8 + 8), producer id (8) and epoch (2), base sequence (4), record count (4), then
//! the records, compressed as a whole when the attributes say so.

use std::io::Read;

use bytes::{Buf, Bytes};

use crate::records::ConsumerRecord;

/// Base offset (8) and batch length (4): the part of a batch outside its length.
const BATCH_LOG_OVERHEAD: usize = 12;
/// Bytes from the start of a batch to the end of its header (the record count).
const BATCH_HEADER_BYTES: usize = 61;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORD_COUNT_AT: usize = 57;
const COMPRESSION_MASK: i16 = 0x7;
const TIMESTAMP_TYPE_LOG_APPEND: i16 = 1 << 3;
const CONTROL_FLAG: i16 = 1 << 5;
/// The smallest possible record: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;

/// Most records accepted in one batch.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;
/// Largest decompressed size accepted for one batch.
pub const BATCH_DECOMPRESSED_BYTES_MAX: usize = 128 << 20;
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
    mut data: Bytes,
    partition: i32,
    from_offset: i64,
) -> Result<DecodedRecords, String> {
    let mut out = DecodedRecords::default();
    let mut decompressed_budget = DECOMPRESSED_BYTES_MAX;
    while data.has_remaining() {
        if data.len() < BATCH_LOG_OVERHEAD {
            out.partial_tail = true;
            break;
        }
        let base_offset = data.slice(0..8).get_i64();
        let length = data.slice(8..12).get_i32();
        let length = usize::try_from(length)
            .map_err(|_| format!("batch at offset {base_offset} has negative length {length}"))?;
        if length < BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD {
            return Err(format!(
                "batch at offset {base_offset} has length {length}, less than a batch header"
            ));
        }
        if data.len() < BATCH_LOG_OVERHEAD + length {
            out.partial_tail = true;
            break;
        }
        let batch = data.split_to(BATCH_LOG_OVERHEAD + length);
        let decoded = decode_batch(batch, partition, from_offset, &mut decompressed_budget)
            .map_err(|reason| format!("batch at offset {base_offset}: {reason}"))?;
        out.next_offset = Some(decoded.next_offset);
        out.records.extend(decoded.records);
    }
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
    let magic = batch[MAGIC_AT] as i8;
    if magic != 2 {
        return Err(format!(
            "message format v{magic} is not supported (only v2)"
        ));
    }
    let crc = batch.slice(CRC_AT..CRC_AT + 4).get_u32();
    let actual = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    if crc != actual {
        return Err(format!(
            "CRC mismatch: the batch says {crc:#010x}, its bytes give {actual:#010x}"
        ));
    }
    let base_offset = batch.slice(0..8).get_i64();
    let attributes = batch.slice(ATTRIBUTES_AT..ATTRIBUTES_AT + 2).get_i16();
    let last_offset_delta = batch
        .slice(LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4)
        .get_i32();
    let base_timestamp = batch
        .slice(BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8)
        .get_i64();
    let max_timestamp = batch
        .slice(MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8)
        .get_i64();
    let record_count = batch.slice(RECORD_COUNT_AT..RECORD_COUNT_AT + 4).get_i32();
    if last_offset_delta < 0 {
        return Err(format!("negative last offset delta {last_offset_delta}"));
    }
    let next_offset = base_offset
        .checked_add(i64::from(last_offset_delta) + 1)
        .ok_or_else(|| "offsets overflow".to_string())?;
    // Control batches (transaction markers) and batches wholly before the fetch offset are
    // skipped without being decompressed.
    if attributes & CONTROL_FLAG != 0 || next_offset <= from_offset {
        return Ok(Batch {
            next_offset,
            records: Vec::new(),
        });
    }
    let record_count = usize::try_from(record_count)
        .ok()
        .filter(|n| *n <= BATCH_RECORDS_MAX)
        .ok_or_else(|| format!("record count {record_count} is out of range"))?;
    let body = decompress(
        attributes & COMPRESSION_MASK,
        batch.slice(BATCH_HEADER_BYTES..),
        budget,
    )?;
    if record_count > body.len() / RECORD_BYTES_MIN {
        return Err(format!(
            "{record_count} records cannot fit in {} bytes",
            body.len()
        ));
    }
    let log_append_time = attributes & TIMESTAMP_TYPE_LOG_APPEND != 0;
    let mut reader = Reader(body);
    let mut records = Vec::with_capacity(record_count);
    for i in 0..record_count {
        let record = read_record(&mut reader).map_err(|reason| format!("record {i}: {reason}"))?;
        let offset = base_offset
            .checked_add(i64::from(record.offset_delta))
            .ok_or_else(|| format!("record {i}: offset overflows"))?;
        if offset < from_offset {
            continue;
        }
        let timestamp_ms = if log_append_time {
            max_timestamp
        } else {
            base_timestamp.wrapping_add(record.timestamp_delta)
        };
        records.push(ConsumerRecord {
            partition,
            offset,
            timestamp_ms,
            key: record.key,
            value: record.value,
            headers: record.headers,
        });
    }
    if reader.0.has_remaining() {
        return Err(format!(
            "{} bytes left after the {record_count} records it declares",
            reader.0.remaining()
        ));
    }
    Ok(Batch {
        next_offset,
        records,
    })
}

struct RawRecord {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
}

fn read_record(reader: &mut Reader) -> Result<RawRecord, String> {
    let length = reader.varint()?;
    let length = usize::try_from(length).map_err(|_| format!("negative record length {length}"))?;
    let mut r = Reader(reader.bytes(length)?);
    let _attributes = r.bytes(1)?;
    let timestamp_delta = r.varlong()?;
    let offset_delta = r.varint()?;
    let key = r.nullable_bytes()?;
    let value = r.nullable_bytes()?;
    let header_count = r.varint()?;
    // Each header takes at least two bytes (key length and value length).
    let header_count = usize::try_from(header_count)
        .ok()
        .filter(|n| *n <= r.0.remaining() / 2)
        .ok_or_else(|| {
            format!(
                "header count {header_count} cannot fit in {} bytes",
                r.0.remaining()
            )
        })?;
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let key = r.nullable_bytes()?.ok_or("null header key")?;
        let value = r.nullable_bytes()?;
        headers.push((String::from_utf8_lossy(&key).into_owned(), value));
    }
    if r.0.has_remaining() {
        return Err(format!("{} bytes left after the headers", r.0.remaining()));
    }
    Ok(RawRecord {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

/// Bounds-checked reads of the record format's zigzag varints and length-prefixed bytes.
struct Reader(Bytes);

impl Reader {
    fn bytes(&mut self, n: usize) -> Result<Bytes, String> {
        if n > self.0.remaining() {
            return Err(format!("needs {n} bytes, {} left", self.0.remaining()));
        }
        Ok(self.0.split_to(n))
    }

    fn unsigned(&mut self, bytes_max: u32) -> Result<u64, String> {
        let mut value: u64 = 0;
        for i in 0..bytes_max {
            let Some(&byte) = self.0.first() else {
                return Err("truncated varint".into());
            };
            self.0.advance(1);
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than {bytes_max} bytes"))
    }

    fn varint(&mut self) -> Result<i32, String> {
        let raw = self.unsigned(5)?;
        let raw = u32::try_from(raw).map_err(|_| "varint overflows 32 bits".to_string())?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, String> {
        let raw = self.unsigned(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn nullable_bytes(&mut self) -> Result<Option<Bytes>, String> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < -1 => Err(format!("negative length {n}")),
            n => self.bytes(n as usize).map(Some),
        }
    }
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// Decompresses a batch body, refusing output beyond the per-batch limit or the remaining
/// `budget`, which it then reduces.
fn decompress(codec: i16, data: Bytes, budget: &mut usize) -> Result<Bytes, String> {
    let cap = BATCH_DECOMPRESSED_BYTES_MAX.min(*budget);
    let out = match codec {
        0 => data,
        1 => read_capped(
            flate2::read::MultiGzDecoder::new(data.reader()),
            cap,
            "gzip",
        )?,
        2 => snappy(data, cap)?,
        3 => {
            let decoder = lz4::Decoder::new(data.reader()).map_err(|e| format!("lz4: {e}"))?;
            read_capped(decoder, cap, "lz4")?
        }
        4 => {
            let decoder = zstd::stream::read::Decoder::new(data.reader())
                .map_err(|e| format!("zstd: {e}"))?;
            read_capped(decoder, cap, "zstd")?
        }
        other => return Err(format!("unknown compression codec {other}")),
    };
    if codec != 0 {
        *budget = budget.saturating_sub(out.len());
    }
    Ok(out)
}

fn read_capped(reader: impl Read, cap: usize, codec: &str) -> Result<Bytes, String> {
    let mut out = Vec::new();
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{codec}: {e}"))?;
    if out.len() > cap {
        return Err(format!(
            "{codec} data decompresses to more than {cap} bytes"
        ));
    }
    Ok(out.into())
}

/// Kafka's snappy: xerial framing (a 16-byte header, then blocks each prefixed by its
/// compressed size) or, failing the magic, one raw snappy block.
fn snappy(mut data: Bytes, cap: usize) -> Result<Bytes, String> {
    let mut blocks = Vec::new();
    if data.starts_with(XERIAL_MAGIC) {
        if data.len() < XERIAL_HEADER_BYTES {
            return Err("snappy: truncated xerial header".into());
        }
        data.advance(XERIAL_HEADER_BYTES);
        while data.has_remaining() {
            if data.remaining() < 4 {
                return Err("snappy: truncated block length".into());
            }
            let size = data.get_u32() as usize;
            if size > data.remaining() {
                return Err(format!(
                    "snappy: block of {size} bytes, {} left",
                    data.remaining()
                ));
            }
            blocks.push(data.split_to(size));
        }
    } else {
        blocks.push(data);
    }
    let mut out = Vec::new();
    for block in blocks {
        let len = snap::raw::decompress_len(&block).map_err(|e| format!("snappy: {e}"))?;
        if out.len().saturating_add(len) > cap {
            return Err(format!("snappy data decompresses to more than {cap} bytes"));
        }
        let start = out.len();
        out.resize(start + len, 0);
        let written = snap::raw::Decoder::new()
            .decompress(&block, &mut out[start..])
            .map_err(|e| format!("snappy: {e}"))?;
        out.truncate(start + written);
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode_batch, Compression, ProduceRecord};

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
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
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

    #[test]
    fn snappy_refuses_to_inflate_past_the_cap() {
        // A raw snappy block whose preamble claims 2^32 - 1 bytes.
        let block = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(snappy(block, 1 << 20).is_err());
        let framed = Bytes::from([XERIAL_MAGIC, &[0, 0, 0, 1, 0, 0, 0, 1], &[0, 0, 0, 9]].concat());
        assert!(
            snappy(framed, 1 << 20).is_err(),
            "block longer than the data"
        );
    }

    #[test]
    fn zigzag_varints() {
        let mut r = Reader(Bytes::from_static(&[
            0x00, 0x01, 0x02, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]));
        assert_eq!(r.varint(), Ok(0));
        assert_eq!(r.varint(), Ok(-1));
        assert_eq!(r.varint(), Ok(1));
        assert_eq!(r.varint(), Ok(i32::MAX));
        assert!(r.varint().is_err(), "more than 5 bytes");
        let mut r = Reader(Bytes::from_static(&[0x80]));
        assert!(r.varint().is_err(), "truncated");
    }
}
