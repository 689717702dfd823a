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
