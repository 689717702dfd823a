//! Builders of valid record batches for tests and benchmarks (this crate's, the broker's and
//! the benchmarks'). Real clients build the batches that integration tests use.

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
    let mut body = Vec::new();
    let mut max_ts = timestamp;
    for (i, r) in records.iter().enumerate() {
        let mut rec = Vec::new();
        rec.push(0u8);
        put_varint(&mut rec, r.timestamp_delta);
        put_varint(&mut rec, i as i64);
        match &r.key {
            Some(k) => {
                put_varint(&mut rec, k.len() as i64);
                rec.extend_from_slice(k);
            }
            None => put_varint(&mut rec, -1),
        }
        match &r.value {
            Some(v) => {
                put_varint(&mut rec, v.len() as i64);
                rec.extend_from_slice(v);
            }
            None => put_varint(&mut rec, -1),
        }
        put_varint(&mut rec, 0);
        put_varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
        max_ts = max_ts.max(timestamp + r.timestamp_delta);
    }
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let n = records.len() as i32;
    let mut b = Vec::with_capacity(61 + body.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(n - 1).max(0).to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
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
    let plain = build_keyed_batch(records, timestamp, producer, attributes);
    let (head, body) = plain.split_at(crate::batch::BATCH_HEADER_BYTES);
    let compressed = crate::records::compress_body(codec, body)?;
    let mut out = head.to_vec();
    let attrs = (attributes & !crate::batch::attributes::COMPRESSION_MASK) | codec;
    crate::batch::patch_records(&mut out, attrs, records.len() as i32, &compressed)?;
    out.extend_from_slice(&compressed);
    Ok(out)
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
        crate::batch::attributes::TRANSACTIONAL,
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
        let mut at = 0;
        while at < bytes.len() {
            let len = crate::batch::declared_batch_bytes(&bytes[at..], bytes.len() - at)?;
            let h = crate::batch::validate_batch(&bytes[at..at + len])?;
            if out.last().is_some_and(|(b, _)| *b >= h.base_offset) || h.next_offset() <= offset {
                return Err(crate::Error::Corrupted {
                    path: log.dir().to_path_buf(),
                    position: region.position() + at as u64,
                    reason: format!("batch at {} does not follow offset {offset}", h.base_offset),
                });
            }
            out.push((h.base_offset, bytes[at..at + len].to_vec()));
            offset = h.next_offset();
            at += len;
        }
    }
    Ok(out)
}
