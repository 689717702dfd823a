//! The Kafka v2 record batch format, in one place: the batch header and its validation
//! ([`header`]), a walk over the whole batches in a byte run ([`Batches`]), record views into a
//! batch body ([`record`]), bounded decompression and compression ([`compression`]),
//! transaction markers ([`control`]), one encoder ([`encode_batch`]) and one CRC-32C
//! ([`crc32c`]). Synchronous and allocation-aware: every length and count read from bytes is
//! checked against what remains before it is used.
//!
//! The log store, the broker (coordinator records, transforms, replays of internal topics) and
//! the client library all read and write batches through this crate.
//!
//! ```
//! use sluice_records::{encode_batch, Batches, BatchMeta, NewRecord};
//!
//! let records = [NewRecord { key: Some(b"k"), value: Some(b"v"), timestamp: 5, headers: vec![] }];
//! let batch = encode_batch(&records, &BatchMeta::default()).unwrap();
//! let mut walked = 0;
//! for b in Batches::new(&batch, 1 << 20) {
//!     let b = b.unwrap();
//!     assert_eq!(b.header.records_count, 1);
//!     walked += 1;
//! }
//! assert_eq!(walked, 1);
//! ```

mod batches;
pub mod compression;
pub mod control;
mod crc;
mod encode;
mod error;
pub mod header;
pub mod record;

pub use batches::{Batch, Batches};
pub use compression::{compress_body, decompress, records_body, BATCH_DECOMPRESSED_BYTES_MAX};
pub use control::{marker_type, ControlRecord, MarkerType, MARKER_BATCH_BYTES};
pub use crc::{crc32c, crc32c_parts};
pub use encode::{encode_batch, BatchMeta, NewRecord};
pub use error::BatchError;
pub use header::{
    attributes, declared_batch_bytes, patch_header, patch_log_append_time, patch_records,
    split_produced_batches, validate_batch, validate_produced_batch, BatchHeader,
    BATCH_HEADER_BYTES, CRC_START, LOG_OVERHEAD_BYTES,
};
pub use record::{parse_records, read_varint, HeaderView, RecordView};
