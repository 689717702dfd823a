//! Builders of valid record batches for tests and benchmarks (this crate's, the broker's and
//! the benchmarks'), on `sluice_records`'s encoder. Real clients build the batches that
//! integration tests use.

use sluice_records::{encode_batch, validate_batch, BatchMeta, Batches, NewRecord};

/// Appends `v` as a zig-zag varint (Kafka's record encoding).
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// One record for [`build_keyed_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp_delta: i64,
}

/// An uncompressed v2 batch of `records` with base timestamp `timestamp`; `producer` is
/// `(producer_id, epoch, base_sequence)` or none.
pub fn build_keyed_batch(
    records: &[TestRecord],
    timestamp: i64,
    producer: Option<(i64, i16, i32)>,
    attributes: i16,
) -> Vec<u8> {
    // Test inputs are always encodable; an empty vector would fail the test that uses it.
    build_compressed_batch(records, timestamp, producer, attributes, 0).unwrap_or_default()
}

/// As [`build_keyed_batch`], with the records compressed by `codec` (1 gzip, 2 snappy, 3 lz4,
/// 4 zstd), as a producer with `compression.type` set sends them.
pub fn build_compressed_batch(
    records: &[TestRecord],
    timestamp: i64,
    producer: Option<(i64, i16, i32)>,
    attributes: i16,
    codec: i16,
) -> crate::Result<Vec<u8>> {
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let meta = BatchMeta {
        attributes: (attributes & !sluice_records::attributes::COMPRESSION_MASK) | codec,
        producer_id,
        producer_epoch,
        base_sequence,
        base_timestamp: Some(timestamp),
    };
    let records: Vec<NewRecord<'_>> = records
        .iter()
        .map(|r| NewRecord {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp: timestamp + r.timestamp_delta,
            headers: Vec::new(),
        })
        .collect();
    Ok(encode_batch(&records, &meta)?)
}

/// A valid uncompressed batch of `n` keyless records of `value_len` bytes each.
pub fn build_batch(
    n: i32,
    value_len: usize,
    timestamp: i64,
    producer: Option<(i64, i16, i32)>,
) -> Vec<u8> {
    let recs: Vec<TestRecord> = (0..n)
        .map(|i| TestRecord {
            key: None,
            value: Some(vec![b'a' + (i % 26) as u8; value_len]),
            timestamp_delta: 0,
        })
        .collect();
    build_keyed_batch(&recs, timestamp, producer, 0)
}

/// A transactional batch (attributes `0x10`) of `records` from `producer` = `(producer_id,
/// epoch, base_sequence)`, as a transactional producer sends it.
pub fn build_transactional_keyed_batch(
    records: &[TestRecord],
    timestamp: i64,
    producer: (i64, i16, i32),
) -> Vec<u8> {
    build_keyed_batch(
        records,
        timestamp,
        Some(producer),
        sluice_records::attributes::TRANSACTIONAL,
    )
}

/// A transactional batch of `n` keyless records of `value_len` bytes each from `producer` =
/// `(producer_id, epoch, base_sequence)`.
pub fn build_transactional_batch(
    n: i32,
    value_len: usize,
    timestamp: i64,
    producer: (i64, i16, i32),
) -> Vec<u8> {
    let recs: Vec<TestRecord> = (0..n)
        .map(|i| TestRecord {
            key: None,
            value: Some(vec![b'a' + (i % 26) as u8; value_len]),
            timestamp_delta: 0,
        })
        .collect();
    build_transactional_keyed_batch(&recs, timestamp, producer)
}

/// A small seeded generator (SplitMix64) for tests, benchmarks and fault injection: the same
/// seed gives the same sequence on every platform, with no dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for tests; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// The batch that crash tests append at `base_offset`: its record count (1 to 8), keys, value
/// sizes (up to `value_bytes_max` each) and bytes follow from `seed` and the offset alone, so a
/// checker can regenerate what must be stored at any offset. As appended: base offset 0 and
/// leader epoch -1 until the log assigns them.
pub fn seeded_batch(seed: u64, base_offset: i64, value_bytes_max: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed ^ (base_offset as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let count = 1 + rng.below(8) as usize;
    let records: Vec<TestRecord> = (0..count)
        .map(|i| {
            let key = (rng.below(4) != 0).then(|| rng.next_u64().to_be_bytes().to_vec());
            let len = rng.below(value_bytes_max as u64 + 1) as usize;
            let mut value = Vec::with_capacity(len + 8);
            while value.len() < len {
                value.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            value.truncate(len);
            TestRecord {
                key,
                value: Some(value),
                timestamp_delta: i as i64,
            }
        })
        .collect();
    build_keyed_batch(&records, 1_700_000_000_000 + base_offset, None, 0)
}

/// A stored batch with the fields the log assigns (base offset, leader epoch) put back to what
/// a producer sends, to compare it with what was appended.
pub fn as_produced(stored: &[u8]) -> Vec<u8> {
    let mut b = stored.to_vec();
    if b.len() >= 16 {
        b[0..8].fill(0);
        b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    }
    b
}

/// Every batch `log` returns from its start to its high watermark, as `(base_offset, bytes)`,
/// each checked whole (length, CRC-32C) and in offset order: what a consumer would see.
pub fn read_batches(log: &crate::Log) -> crate::Result<Vec<(i64, Vec<u8>)>> {
    let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
    let hw = log.high_watermark();
    let mut offset = log.log_start_offset();
    while offset < hw {
        let Some(region) = log.read(offset, 1 << 20, hw, true)?.region else {
            break;
        };
        let bytes = region.to_vec()?;
        let mut walk = Batches::new(&bytes, bytes.len());
        for batch in walk.by_ref() {
            let batch = batch?;
            let h = validate_batch(batch.bytes)?;
            if out.last().is_some_and(|(b, _)| *b >= h.base_offset) || h.next_offset() <= offset {
                return Err(crate::Error::Corrupted {
                    path: log.dir().to_path_buf(),
                    position: region.position() + batch.position as u64,
                    reason: format!("batch at {} does not follow offset {offset}", h.base_offset),
                });
            }
            out.push((h.base_offset, batch.bytes.to_vec()));
            offset = h.next_offset();
        }
        if walk.partial_tail() {
            return Err(crate::Error::Corrupted {
                path: log.dir().to_path_buf(),
                position: region.position() + walk.position() as u64,
                reason: "a read ends inside a batch".into(),
            });
        }
    }
    Ok(out)
}
