//! The one transactional write path: Produce, TxnOffsetCommit and the transform runtime all
//! append a transaction's batches through a [`TxnWrite`].
//!
//! A `TxnWrite` holds its transaction's read guard from the checks (producer id and epoch, the
//! transaction Ongoing, the partition added) until it is dropped, after every append it queued
//! has completed. EndTxn and the timeout abort take the write side of the same lock, so a
//! transaction's marker can never be written while one of its batches is still on its way: no
//! transactional write lands after its marker.
//!
//! One write takes the guard once: a writer that needs another check of the same transaction
//! reuses its `TxnWrite` (taking a second read guard could queue behind a waiting EndTxn that
//! waits for the first, a deadlock).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::coordinator::{TransactionCoordinator, TxnWriteGuard};
use crate::partition::{Partition, PendingAppend};

/// An open transactional write of one producer.
pub struct TxnWrite {
    guard: TxnWriteGuard,
    producer: (i64, i16),
}

impl TxnWrite {
    /// Checks that `transactional_id` belongs to `producer` and is Ongoing, and holds it so.
    pub async fn begin(
        txns: &TransactionCoordinator,
        transactional_id: &str,
        producer: (i64, i16),
        knows_fenced: bool,
    ) -> Result<TxnWrite, ResponseError> {
        let guard = txns
            .begin_write(transactional_id, producer, knows_fenced)
            .await?;
        Ok(TxnWrite { guard, producer })
    }

    /// The producer id and epoch the write was opened for.
    pub fn producer(&self) -> (i64, i16) {
        self.producer
    }

    /// Whether the partition was added to the transaction (AddPartitionsToTxn, or
    /// AddOffsetsToTxn for a group's offsets partition).
    pub fn includes(&self, topic: &str, partition: i32) -> bool {
        self.guard.includes(topic, partition)
    }

    /// Queues a batch of this transaction on `partition`: refused with INVALID_TXN_STATE when
    /// the partition is not in the transaction (a write no marker would ever end).
    pub async fn submit(
        &self,
        partition: &Partition,
        records: Bytes,
        durable: bool,
    ) -> Result<PendingAppend, WriteError> {
        if !self.includes(&partition.tp.topic, partition.tp.partition) {
            return Err(WriteError::Refused(ResponseError::InvalidTxnState));
        }
        partition
            .submit(records, durable)
            .await
            .map_err(WriteError::Log)
    }
}

/// Why a transactional batch was not queued.
#[derive(Debug)]
pub enum WriteError {
    /// The transaction refuses it (Kafka's code).
    Refused(ResponseError),
    /// The partition could not take it.
    Log(log_store::Error),
}

impl WriteError {
    /// The code a client gets.
    pub fn code(&self) -> ResponseError {
        match self {
            WriteError::Refused(e) => *e,
            WriteError::Log(e) => crate::error::log_error(e),
        }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Refused(e) => write!(f, "{e:?}"),
            WriteError::Log(e) => write!(f, "{e}"),
        }
    }
}
