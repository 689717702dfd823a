//! The transaction coordinator: Kafka's exactly-once machinery on one broker.
//!
//! - [`records`]: `__transaction_state` keys and values (Kafka's layout) and [`TxnState`];
//! - [`shard`]: the sans-IO state machine, `step(now, input) -> effects`: InitProducerId with a
//!   transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn's two-phase commit, the
//!   write check, fencing, timeouts and recovery; [`api`] its inputs, replies and effects; a
//!   seeded simulation of it runs in its tests;
//! - [`actor`]: the task that owns the shard and carries out its effects;
//! - [`coordinator`]: [`TransactionCoordinator`], the broker's handle (start-up load, calls);
//! - [`write`]: [`write::TxnWrite`], the one transactional write path (Produce,
//!   TxnOffsetCommit, transforms); [`offsets`]: TxnOffsetCommit;
//! - [`load`]: the replay of `__transaction_state`; [`config`]: the `transaction.*` configs.
//!
//! The partitions hold the rest: each log tracks its producers' ongoing transactions, the
//! last stable offset and an aborted-transaction index per segment (`log_store`), which
//! read_committed fetches use. TxnOffsetCommit offsets wait in the group coordinator's shard
//! until the marker reaches `__consumer_offsets` (`group::shard`).

pub mod actor;
pub mod api;
pub mod config;
pub mod coordinator;
mod load;
pub mod offsets;
pub mod records;
pub mod shard;
pub mod write;

pub use config::TxnConfig;
pub use coordinator::TransactionCoordinator;
pub use records::{TxnMetadata, TxnState};

/// The internal topic that stores transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// The coordinator epoch written into markers: one broker, never a coordinator change.
pub const COORDINATOR_EPOCH: i32 = 0;
