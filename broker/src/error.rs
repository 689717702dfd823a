//! The one place where storage errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use log_store::{BatchError, Error};

/// Kafka's error code for a log-store error.
pub fn log_error_code(e: &Error) -> i16 {
    let r = match e {
        Error::InvalidBatch(b) => match b {
            BatchError::CrcMismatch { .. }
            | BatchError::Truncated { .. }
            | BatchError::BadLength { .. } => ResponseError::CorruptMessage,
            BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
            // Produce v3+ may only carry magic v2 batches; Kafka answers INVALID_RECORD.
            _ => ResponseError::InvalidRecord,
        },
        Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        Error::InvalidConfig { .. } => ResponseError::InvalidConfig,
        Error::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        Error::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        Error::DuplicateSequence { .. } => ResponseError::DuplicateSequenceNumber,
        Error::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        Error::TransactionCoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
        Error::Corrupted { .. }
        | Error::Offline { .. }
        | Error::Io { .. }
        | Error::NotALogDirectory { .. } => ResponseError::KafkaStorageError,
        _ => ResponseError::UnknownServerError,
    };
    r.code()
}

/// [`log_error_code`] as a [`ResponseError`].
pub fn log_error(e: &Error) -> ResponseError {
    ResponseError::try_from_code(log_error_code(e)).unwrap_or(ResponseError::UnknownServerError)
}

pub const NONE: i16 = 0;

/// Shorthand for a Kafka error code.
pub fn code(e: ResponseError) -> i16 {
    e.code()
}
