//! The transaction coordinator: Kafka's exactly-once machinery on one broker.
//!
//! - [`records`]: `__transaction_state` keys and values (Kafka's layout) and [`TxnState`];
//! - [`coordinator`]: [`TransactionCoordinator`]: InitProducerId with a transactional id,
//!   AddPartitionsToTxn, AddOffsetsToTxn, EndTxn's two-phase commit, fencing, timeouts and
//!   recovery at start-up;
//! - [`config`]: the `transaction.*` broker configs.
//!
//! The partitions hold the rest: each log tracks its producers' ongoing transactions, the
//! last stable offset and an aborted-transaction index per segment (`log_store`), which
//! read_committed fetches use. TxnOffsetCommit offsets wait in the group coordinator's shard
//! until the marker reaches `__consumer_offsets` (`group::shard`).

pub mod config;
pub mod coordinator;
pub mod offsets;
pub mod records;
pub mod write;

pub use config::TxnConfig;
pub use coordinator::TransactionCoordinator;
pub use records::{TxnMetadata, TxnState};

/// The internal topic that stores transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// The coordinator epoch written into markers: one broker, never a coordinator change.
pub const COORDINATOR_EPOCH: i32 = 0;
