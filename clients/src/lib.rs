//! `sluice-clients`: Sluice's async Kafka client library. It talks to any Kafka-compatible
//! broker through the sans-IO codec in `sluice-protocol`; the `sluice` binary's client
//! subcommands (`topic`, `produce`, `consume`, `bench`, ...) live in the `sluice-cli` crate.
//!
//! Layout, one concept per module:
//! - [`connection`]: one TCP connection: ApiVersions negotiation, correlation ids, pipelined
//!   requests, bounded reads, a timeout on every call;
//! - [`versions`]: which API versions this client implements and the negotiation rule (sans-IO);
//! - [`client`]: [`Client`]: bootstrap, metadata, routing to partition leaders, retries;
//! - [`admin`], [`offsets`], [`produce`], [`fetch`], [`group`]: the operations on [`Client`];
//! - [`records`]: the record types and record batch encoding (sans-IO);
//! - [`batch_decoder`]: defensive record batch decoding with bounded decompression (sans-IO);
//! - [`partitioner`]: the Java client's murmur2 key partitioner and round-robin;
//! - [`error`]: the crate's one error type, [`Error`].
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_clients::{Acks, Client, ClientConfig, Compression, OffsetSpec, ProduceRecord};
//!
//! # async fn demo() -> Result<(), sluice_clients::Error> {
//! let client = Client::connect("127.0.0.1:9092", ClientConfig::default()).await?;
//! client.create_topic("orders", 3, 1, &[("retention.ms".into(), "86400000".into())]).await?;
//! let record = ProduceRecord { key: Some("k".into()), value: Some("v".into()), ..Default::default() };
//! let base_offset = client.produce("orders", 0, &[record], Acks::All, Compression::Zstd).await?;
//! let start = client.list_offsets("orders", 0, OffsetSpec::Earliest).await?.unwrap_or(0);
//! let fetched = client.fetch("orders", 0, start, 1 << 20, Duration::from_millis(500)).await?;
//! assert_eq!(Some(fetched.records[0].offset), base_offset);
//! # Ok(())
//! # }
//! ```
//!
//! The partitioner needs no broker:
//!
//! ```
//! use sluice_clients::partitioner::{murmur2, partition_for_key};
//!
//! assert_eq!(murmur2(b"21"), -973932308); // as Kafka's Java client computes it
//! assert_eq!(partition_for_key(b"21", 3), 1173551340 % 3);
//! ```

pub mod admin;
pub mod batch_decoder;
pub mod client;
pub mod connection;
pub mod error;
pub mod fetch;
pub mod group;
pub mod offsets;
pub mod partitioner;
pub mod produce;
pub mod records;
pub mod transactions;
pub mod versions;

pub use admin::{ConfigEntry, PartitionDescription, TopicDescription};
pub use client::{BrokerMetadata, Client, ClientConfig, PartitionMetadata, TopicMetadata};
pub use connection::{Connection, ConnectionConfig};
pub use error::Error;
pub use fetch::FetchedPartition;
pub use group::{GroupDescription, GroupListing, MemberDescription};
pub use offsets::OffsetSpec;
pub use produce::Acks;
pub use records::{Compression, ConsumerRecord, ProduceRecord};
pub use transactions::{TransactionDescription, TransactionListing};
