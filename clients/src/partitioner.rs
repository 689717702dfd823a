//! Choosing a partition for a record the way the Java client's default partitioner does for
//! keyed records (`toPositive(murmur2(key)) % partitions`), so keys land where Kafka clients
//! put them, and round-robin for records without a key.

use std::sync::atomic::{AtomicU32, Ordering};

/// Kafka's murmur2: 32-bit MurmurHash2 with seed `0x9747b28c`, little-endian 4-byte blocks,
/// returned as the Java `int` the reference implementation yields.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java truncates the length to an int; so do we.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among `partitions` (> 0).
pub fn partition_for_key(key: &[u8], partitions: u32) -> i32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    (positive % partitions.max(1)) as i32
}

/// Picks partitions: by key hash when there is a key, in turn when there is not.
#[derive(Debug, Default)]
pub struct Partitioner {
    next: AtomicU32,
}

impl Partitioner {
    /// A partitioner whose round-robin starts at partition 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partition for a record with `key` in a topic of `partitions` partitions.
    pub fn partition(&self, key: Option<&[u8]>, partitions: u32) -> i32 {
        match key {
            Some(key) => partition_for_key(key, partitions),
            None => (self.next.fetch_add(1, Ordering::Relaxed) % partitions.max(1)) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_java_client() {
        // Kafka's own vectors (UtilsTest.testMurmur2 in the Java client).
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), *hash, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn covers_every_tail_length() {
        // One key per remainder length (1, 2, 3, 0) with values published by other
        // Java-compatible implementations.
        let cases: &[(&[u8], i32)] = &[
            (b"1", -1993445489),
            (b"12", 126087238),
            (b"123", -267702483),
            (b"1234", -1614185708),
            (b"12345", -1188365604),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), *hash, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partition_is_the_positive_hash_modulo() {
        // murmur2("21") = -973932308; & 0x7fffffff = 1173551340.
        assert_eq!(partition_for_key(b"21", 3), (1_173_551_340u32 % 3) as i32);
        assert_eq!(partition_for_key(b"anything", 1), 0);
    }

    #[test]
    fn round_robin_without_key() {
        let p = Partitioner::new();
        let picks: Vec<_> = (0..5).map(|_| p.partition(None, 3)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1]);
        assert_eq!(p.partition(Some(b"21"), 3), partition_for_key(b"21", 3));
        assert_eq!(
            p.partition(None, 0),
            0,
            "zero partitions never divides by zero"
        );
    }
}
