//! `sluice-broker`: the network server of Sluice. It serves the Kafka wire protocol on top of
//! `log-store`, so that existing Kafka clients work unchanged.
//!
//! Layout:
//! - [`config`]: broker configs with Kafka's names;
//! - [`state`]: the shared [`state::Broker`]: topic registry, fetch sessions, metrics;
//! - [`server`] and [`connection`]: the listeners and one task per connection (frames are
//!   size-checked before they are buffered, requests answered in order);
//! - [`security`]: listeners' protocols, TLS, SASL, principals, credentials and ACLs;
//! - [`users`]: `sluice user` on a stopped broker's data dir;
//! - [`handler`]: one file per Kafka API, and the version table ApiVersions advertises;
//! - [`producer_ids`]: idempotent producer ids, allocated in persisted blocks;
//! - [`partition`]: a partition's log and its append actor (group-committed fsyncs);
//! - [`admin`]: `/metrics` and `/health`; [`background`]: retention, flushes, checkpoints;
//! - [`group`]: the group coordinator (consumer groups, committed offsets in
//!   `__consumer_offsets`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut config = sluice_broker::config::BrokerConfig::default();
//! config.data_dir = "/tmp/sluice-demo".into();
//! let broker = sluice_broker::state::Broker::open(config)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9092").await?;
//! let info = sluice_broker::server::ListenerInfo {
//!     name: "PLAINTEXT".into(),
//!     protocol: sluice_broker::security::config::SecurityProtocol::Plaintext,
//!     bound: listener.local_addr()?,
//!     advertised_host: "127.0.0.1".into(),
//!     advertised_port: 9092,
//! };
//! let limits = sluice_broker::server::ConnectionLimits::new(&broker);
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! sluice_broker::server::run(broker.clone(), listener, info.into(), None, limits, shutdown).await;
//! broker.shutdown().await;
//! # Ok(()) }
//! ```

pub mod actors;
pub mod admin;
pub mod background;
pub mod batch;
pub mod config;
pub mod connection;
pub mod error;
pub mod failpoint;
pub mod fetch_session;
pub mod group;
pub mod handler;
pub mod metrics;
pub mod partition;
pub mod producer_ids;
pub mod security;
pub mod server;
pub mod state;
pub mod topic;
pub mod transform;
pub mod txn;
pub mod users;
