//! The one error type of the log store.

use std::path::PathBuf;

/// Everything that can go wrong in the log store.
///
/// The broker maps each variant to a Kafka `ErrorCode` in one place (its produce and fetch
/// handlers); nothing in this crate knows about the wire protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record batch failed validation (length, magic, CRC or header fields).
    /// Maps to `CORRUPT_MESSAGE` (CRC) or `INVALID_RECORD` (everything else).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),

    /// A requested offset is outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },

    /// Bytes on disk are not what we wrote: reported with the file and byte position.
    #[error("corrupted log data in {path} at byte {position}: {reason}")]
    Corrupted {
        path: PathBuf,
        position: u64,
        reason: String,
    },

    /// The directory does not look like a partition directory this crate created.
    #[error("{path} is not a log directory: {reason}")]
    NotALogDirectory { path: PathBuf, reason: String },

    /// A configuration value is out of its range.
    #[error("invalid log config {name}: {reason}")]
    InvalidConfig { name: &'static str, reason: String },

    /// The log is offline after an unrecoverable storage error; it serves nothing until reopened.
    #[error("log {path} is offline: {reason}")]
    Offline { path: PathBuf, reason: String },

    /// A records section could not be compressed again (the cleaner rewrites compressed batches
    /// with the codec they came with).
    #[error("cannot compress records with codec {codec}: {reason}")]
    Compression { codec: i16, reason: String },

    /// An idempotent producer's batch carries an epoch older than the partition has seen: a
    /// newer instance of the producer took over. Maps to `INVALID_PRODUCER_EPOCH`.
    #[error(
        "producer {producer_id} epoch {epoch} is older than the current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },

    /// An idempotent producer's batch does not follow its last one (a gap, or a new epoch not
    /// starting at 0). Maps to `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {sequence} does not follow {last_sequence}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        last_sequence: i32,
    },

    /// A batch already in the log arrived again inside an append of several batches (a
    /// single-batch append is acknowledged with the original offsets instead). Maps to
    /// `DUPLICATE_SEQUENCE_NUMBER`.
    #[error("producer {producer_id}: batch with sequence {sequence} is a duplicate")]
    DuplicateSequence { producer_id: i64, sequence: i32 },

    /// A producer whose transaction is ongoing sent a batch that is not transactional (Kafka's
    /// `InvalidTxnStateException`). Maps to `INVALID_TXN_STATE`.
    #[error(
        "producer {producer_id} sent a non-transactional batch while its transaction is ongoing"
    )]
    InvalidTxnState { producer_id: i64 },

    /// A transaction marker carries a coordinator epoch older than the last marker written for
    /// its producer: a newer transaction coordinator took over. Maps to
    /// `TRANSACTION_COORDINATOR_FENCED`.
    #[error(
        "transaction marker for producer {producer_id}: coordinator epoch {coordinator_epoch} is older than the current {current}"
    )]
    TransactionCoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },

    /// An operating-system I/O error (ENOSPC, EACCES, EIO, ...), with the file it concerned.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True for errors caused by the disk being full (`ENOSPC`/`EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(source.raw_os_error(), Some(28) | Some(122)),
            _ => false,
        }
    }
}

/// Why a record batch was rejected (the batch format's own error).
pub use sluice_records::BatchError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
