//! `log-store`: Sluice's durable commit log, one [`Log`] per partition, with no network code and
//! no async runtime. The broker and the transform engine append to and read from it.
//!
//! Layout, following Kafka's storage module:
//! - [`batch`]: the v2 record batch header, validated without decoding records;
//! - `segment`: a `.log` file with its mmap'd `.index` (offset -> position) and `.timeindex`
//!   (timestamp -> offset), rolled on `segment.bytes`/`segment.ms`; the `.log` file is reached
//!   through `segment_file`, which tests swap for the fault-injecting files of
//!   `fault_injection` (power cuts that keep only synced data, `ENOSPC`, failing `fsync`;
//!   `cfg(test)` or the `fault-injection` feature);
//! - [`Log`]: a partition directory `<topic>-<partition>/` of segments: append, read (file
//!   regions served as stored), ListOffsets lookups, flush (group commit via [`FlushTicket`]),
//!   recovery after a crash, retention and DeleteRecords;
//! - [`producer_state`]: idempotent producers' epochs and last sequence numbers per partition
//!   (duplicates acknowledged with their original offsets, gaps and old epochs refused) and
//!   their ongoing transactions (the last stable offset), rebuilt on open from a
//!   `<offset>.snapshot` plus the batches after it;
//! - transactions: end-transaction markers ([`Log::append_marker`], `control`), each segment's
//!   aborted-transaction index (`<base>.txnindex`, `txn_index`), the last stable offset and the
//!   aborted transactions a read_committed Fetch returns ([`Log::aborted_transactions`]);
//! - [`cleaner`]: compaction (`cleanup.policy=compact`): plan under `&Log`, clean without the
//!   log, install under `&mut Log` ([`Log::compact`] does all three), with a crash-safe swap
//!   of each cleaned segment and a per-partition `cleaner-offset-checkpoint`; it stops before
//!   the last stable offset and drops aborted transactions' records;
//! - [`LogConfig`]: Kafka's topic-level config names.
//!
//! ```
//! use log_store::{AppendOptions, Log, LogConfig, TopicPartition};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let parent = tempfile::tempdir()?;
//! let tp = TopicPartition::new("orders", 0);
//! let (mut log, _report) = Log::create(parent.path(), &tp, LogConfig::default(), 0)?;
//! let batch = log_store::testing::build_batch(3, 10, 1_700_000_000_000, None);
//! let info = log.append(&batch, AppendOptions { leader_epoch: 0, now_ms: 0 })?;
//! assert_eq!((info.base_offset, info.last_offset), (0, 2));
//! log.flush()?; // fdatasync: durable now
//! let read = log.read(1, 1 << 20, log.high_watermark(), true)?;
//! assert_eq!(read.region.map(|r| r.len()), Some(batch.len() as u64));
//! log.close()?;
//! # Ok(()) }
//! ```

pub mod atomic_file;
mod checkpoint;
pub mod cleaner;
mod config;
mod error;
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault_injection;
mod index_file;
mod leader_epoch;
mod log;
mod offset_index;
pub mod producer_state;
mod segment;
mod segment_file;
#[doc(hidden)]
pub mod testing;
mod time_index;
mod timestamps;
mod txn_index;

pub use crate::cleaner::{CleanReport, Cleaner, CleanerConfig};
pub use crate::config::{
    CleanupPolicy, CompressionType, LogConfig, TimestampType, LOG_CONFIG_NAMES,
};
pub use crate::error::{BatchError, Error, Result};
pub use crate::leader_epoch::EpochEntry;
pub use crate::log::{
    AppendInfo, AppendOptions, FileRegion, FlushTicket, Log, OffsetSpec, ReadInfo, RecoveryReport,
    RetentionReport, TopicPartition,
};
pub use crate::producer_state::{BatchMetadata, ProducerEntry, ProducerState};
pub use crate::txn_index::AbortedTxn;
