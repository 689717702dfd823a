//! Why a batch (or its records) is refused.

/// A batch that is not a valid v2 record batch, or records that contradict their batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than a v2 batch header (61 bytes), or a batch length that overruns the input.
    #[error("truncated batch: {available} bytes available, {needed} needed")]
    Truncated { needed: usize, available: usize },
    /// The batch length field is smaller than a header or larger than the limit.
    #[error("batch length {length} outside [{min}, {max}]")]
    BadLength { length: i64, min: i64, max: i64 },
    /// Magic byte is not 2 (message formats v0/v1 are not accepted).
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    UnsupportedMagic(i8),
    /// CRC-32C over the batch does not match the header.
    #[error("CRC mismatch: header says {expected:#010x}, computed {computed:#010x}")]
    CrcMismatch { expected: u32, computed: u32 },
    /// Record count, offset deltas or record framing are inconsistent.
    #[error("inconsistent batch: {0}")]
    Inconsistent(&'static str),
    /// A record without a key was sent to a compacted topic (maps to `INVALID_RECORD`, with the
    /// batch and record index as Kafka reports them).
    #[error("compacted topic cannot accept records without a key (batch {batch_index}, records {record_indexes:?})")]
    KeylessRecordOnCompactedTopic {
        batch_index: usize,
        /// Every keyless record of the batch, as Kafka lists them in `record_errors`.
        record_indexes: Vec<usize>,
    },
    /// The batch is larger than `max.message.bytes` (maps to `MESSAGE_TOO_LARGE`).
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// The input holds no batch at all.
    #[error("no record batch in input")]
    Empty,
    /// The codec is not one Kafka defines (maps to `UNSUPPORTED_COMPRESSION_TYPE`).
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    /// The records do not decompress, or decompress past the limit.
    #[error("codec {codec}: {reason}")]
    Compression { codec: i16, reason: String },
}
