//! What goes into and comes out of the transaction coordinator's [`TxnShard::step`]: requests
//! already checked for authorization by their handlers, replies as plain data, and the effects
//! the async shell ([`super::actor`]) carries out and reports back.
//!
//! [`TxnShard::step`]: super::shard::TxnShard::step

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use sluice_records::MarkerType;

use super::records::TxnMetadata;

/// Names a waiting request; the shell maps it to the request's reply channel.
pub type ReplyId = u64;
/// Names an effect in flight; its outcome comes back in an [`Input`] carrying the same id.
pub type OpId = u64;

/// A producer id and epoch.
pub type Producer = (i64, i16);

/// A partition of a transaction: topic and index.
pub type TxnPartition = (String, i32);

/// A request for one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// InitProducerId with a transactional id. `expected`: what a KIP-360 re-init presents.
    InitProducerId {
        timeout_ms: i32,
        expected: Option<Producer>,
        knows_fenced: bool,
    },
    /// AddPartitionsToTxn (and AddOffsetsToTxn, for the group's offsets partition).
    AddPartitions {
        producer: Producer,
        partitions: Vec<TxnPartition>,
        knows_fenced: bool,
    },
    /// EndTxn.
    EndTxn {
        producer: Producer,
        commit: bool,
        knows_fenced: bool,
    },
    /// The check before a transactional write. Granted, the write counts as in flight until
    /// [`Input::WriteDone`]; the transaction cannot end meanwhile.
    BeginWrite {
        producer: Producer,
        knows_fenced: bool,
    },
}

/// The answer to a [`Request`] (or to [`Input::Recover`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// InitProducerId: the producer id and epoch.
    Producer(Result<Producer, ResponseError>),
    /// AddPartitions, EndTxn, Recover.
    Done(Result<(), ResponseError>),
    /// BeginWrite: the partitions of the ongoing transaction.
    Write(Result<BTreeSet<TxnPartition>, ResponseError>),
}

/// One input to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A request for `id`.
    Request(ReplyId, String, Request),
    /// A write granted by [`Request::BeginWrite`] for `id` has completed (or was dropped).
    WriteDone(String),
    /// An [`Effect::Persist`] completed durably (`true`) or failed.
    Persisted(OpId, bool),
    /// An [`Effect::WriteMarkers`] wrote every marker (`true`) or not.
    MarkersWritten(OpId, bool),
    /// An [`Effect::AllocateProducerId`] produced an id, or failed.
    ProducerIdAllocated(OpId, Option<i64>),
    /// Start-up after loading: complete every Prepare, abort every Ongoing (fencing its
    /// producer); answered with `Reply::Done` once every such transaction has been handled.
    Recover(ReplyId),
    /// The periodic pass: timeouts, completions to retry, expired transactional ids.
    Tick,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Reply(ReplyId, Reply),
    /// Append `meta` (a tombstone when `None`) for `id` to `__transaction_state`; durably
    /// (fsync before completion) when `durable`.
    Persist {
        op: OpId,
        id: String,
        meta: Option<TxnMetadata>,
        durable: bool,
    },
    /// Write `marker` for `producer` durably to every partition (and tell the group
    /// coordinator about markers in `__consumer_offsets`).
    WriteMarkers {
        op: OpId,
        producer: Producer,
        marker: MarkerType,
        partitions: Vec<TxnPartition>,
    },
    /// Take the next producer id from the broker's allocator.
    AllocateProducerId {
        op: OpId,
    },
    /// A transaction completed (metrics).
    Completed {
        commit: bool,
    },
    /// A transaction was aborted for running past its timeout (metrics).
    TimedOut,
}
