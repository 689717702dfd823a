//! Broker configuration with Kafka's config names: defaults, then a TOML file, then `--set`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use log_store::LogConfig;

/// Broker-level configs, each named as Kafka names it.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where clients connect (`listeners`, or `--listen`).
    pub listen: SocketAddr,
    /// `advertised.listeners`: the host and port put in Metadata responses.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// `log.dirs` / `--data-dir`.
    pub data_dir: PathBuf,
    /// Admin HTTP listener (`--admin-listen`), Prometheus `/metrics` and `/health`.
    pub admin_listen: Option<SocketAddr>,
    /// `node.id`
    pub node_id: i32,
    /// `auto.create.topics.enable`
    pub auto_create_topics_enable: bool,
    /// `num.partitions`
    pub num_partitions: i32,
    /// `delete.topic.enable`
    pub delete_topic_enable: bool,
    /// `socket.request.max.bytes`
    pub socket_request_max_bytes: usize,
    /// `max.connections`
    pub max_connections: usize,
    /// `log.retention.check.interval.ms`
    pub log_retention_check_interval_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms`
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// `log.flush.scheduler.interval.ms`
    pub log_flush_scheduler_interval_ms: u64,
    /// `log.cleaner.enable`
    pub log_cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`
    pub log_cleaner_backoff_ms: u64,
    /// `fetch.max.bytes`: cap on a fetch response.
    pub fetch_max_bytes: usize,
    /// `max.incremental.fetch.session.cache.slots`
    pub max_incremental_fetch_session_cache_slots: usize,
    /// Topic defaults from the `log.*` broker configs and `message.max.bytes`.
    pub log_defaults: LogConfig,
    /// The group coordinator's `group.*` and `offsets.*` configs.
    pub group: crate::group::GroupConfig,
    /// The transaction coordinator's `transaction.*` configs.
    pub txn: crate::txn::TxnConfig,
    /// Listeners, TLS, SASL, the authorizer and connection limits.
    pub security: crate::security::config::SecurityConfig,
    /// Every config that was set explicitly (file or `--set`), for DescribeConfigs.
    pub explicit: BTreeMap<String, String>,
}

/// A config error with the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config {0:?} (see `sluice serve --help` for the supported names)")]
    Unknown(String),
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Broker config names and the topic config each maps to (Kafka's synonyms).
pub const LOG_SYNONYMS: &[(&str, &str)] = &[
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("log.index.size.max.bytes", "segment.index.bytes"),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
    ("message.max.bytes", "max.message.bytes"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    (
        "log.cleaner.min.cleanable.ratio",
        "min.cleanable.dirty.ratio",
    ),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    ("compression.type", "compression.type"),
];

/// The broker config that sets a topic config's default, if any.
pub fn broker_synonym(topic_config: &str) -> Option<&'static str> {
    LOG_SYNONYMS
        .iter()
        .find(|(_, t)| *t == topic_config)
        .map(|(b, _)| *b)
}

impl Default for BrokerConfig {
    fn default() -> Self {
        // Kafka's message.max.bytes default.
        let log_defaults = LogConfig {
            max_message_bytes: 1_048_588,
            ..LogConfig::default()
        };
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            data_dir: PathBuf::from("./sluice-data"),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            node_id: 1,
            auto_create_topics_enable: true,
            num_partitions: 1,
            delete_topic_enable: true,
            socket_request_max_bytes: 100 * 1024 * 1024,
            max_connections: 10_000,
            log_retention_check_interval_ms: 300_000,
            log_flush_offset_checkpoint_interval_ms: 60_000,
            log_flush_scheduler_interval_ms: 1_000,
            log_cleaner_enable: true,
            log_cleaner_backoff_ms: 15_000,
            fetch_max_bytes: 55 * 1024 * 1024,
            max_incremental_fetch_session_cache_slots: 1000,
            log_defaults,
            group: crate::group::GroupConfig::default(),
            txn: crate::txn::TxnConfig::default(),
            security: Default::default(),
            explicit: BTreeMap::new(),
        }
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse::<T>().map_err(|e| ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        reason: e.to_string(),
    })
}

/// Parses `PLAINTEXT://host:port` (the first listener).
fn parse_listener(key: &str, value: &str) -> Result<(String, u16), ConfigError> {
    let first = value.split(',').next().unwrap_or_default().trim();
    let addr = first.split_once("://").map_or(first, |(_, a)| a);
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        reason: "expected [PLAINTEXT://]host:port".into(),
    })?;
    Ok((host.trim_matches(['[', ']']).to_string(), parse(key, port)?))
}

impl BrokerConfig {
    /// Sets one config by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            reason,
        };
        if let Some((_, topic_key)) = LOG_SYNONYMS.iter().find(|(b, _)| *b == key) {
            self.log_defaults
                .set(topic_key, value)
                .map_err(|e| invalid(e.to_string()))?;
        } else {
            match key {
                "listeners" => {
                    self.security.set(key, value).map_err(invalid)?;
                    let (host, port) = parse_listener(key, value)?;
                    let host = if host.is_empty() {
                        "0.0.0.0".to_string()
                    } else {
                        host
                    };
                    self.listen = parse(key, &format!("{host}:{port}"))?;
                    if !self.explicit.contains_key("advertised.listeners") {
                        self.advertised_port = port;
                    }
                }
                "advertised.listeners" => {
                    self.security.set(key, value).map_err(invalid)?;
                    let (host, port) = parse_listener(key, value)?;
                    self.advertised_host = host;
                    self.advertised_port = port;
                }
                "log.dirs" | "log.dir" => {
                    self.data_dir = PathBuf::from(value.split(',').next().unwrap_or(value).trim())
                }
                "node.id" | "broker.id" => self.node_id = parse(key, value)?,
                "auto.create.topics.enable" => self.auto_create_topics_enable = parse(key, value)?,
                "num.partitions" => {
                    self.num_partitions = parse(key, value)?;
                    if self.num_partitions < 1 {
                        return Err(invalid("must be at least 1".into()));
                    }
                }
                "default.replication.factor"
                | "offsets.topic.replication.factor"
                | "transaction.state.log.replication.factor" => {
                    let rf: i32 = parse(key, value)?;
                    if rf != 1 {
                        return Err(invalid(
                            "a single sluice broker supports replication factor 1 only".into(),
                        ));
                    }
                }
                "delete.topic.enable" => self.delete_topic_enable = parse(key, value)?,
                "socket.request.max.bytes" => self.socket_request_max_bytes = parse(key, value)?,
                "max.connections" => self.max_connections = parse(key, value)?,
                "log.retention.check.interval.ms" => {
                    self.log_retention_check_interval_ms = parse(key, value)?
                }
                "log.flush.offset.checkpoint.interval.ms" => {
                    self.log_flush_offset_checkpoint_interval_ms = parse(key, value)?
                }
                "log.flush.scheduler.interval.ms" => {
                    self.log_flush_scheduler_interval_ms = parse(key, value)?
                }
                "log.cleaner.enable" => self.log_cleaner_enable = parse(key, value)?,
                "log.cleaner.backoff.ms" => self.log_cleaner_backoff_ms = parse(key, value)?,
                "fetch.max.bytes" => self.fetch_max_bytes = parse(key, value)?,
                "max.incremental.fetch.session.cache.slots" => {
                    self.max_incremental_fetch_session_cache_slots = parse(key, value)?
                }
                "log.retention.minutes" => {
                    let m: i64 = parse(key, value)?;
                    return self.set("log.retention.ms", &(m.saturating_mul(60_000)).to_string());
                }
                "log.retention.hours" => {
                    let h: i64 = parse(key, value)?;
                    return self.set(
                        "log.retention.ms",
                        &(h.saturating_mul(3_600_000)).to_string(),
                    );
                }
                "log.roll.hours" => {
                    let h: i64 = parse(key, value)?;
                    return self.set("log.roll.ms", &(h.saturating_mul(3_600_000)).to_string());
                }
                _ => match self
                    .group
                    .set(key, value)
                    .and_then(|done| {
                        if done {
                            Ok(true)
                        } else {
                            self.txn.set(key, value)
                        }
                    })
                    .and_then(|done| {
                        if done {
                            Ok(true)
                        } else {
                            self.security.set(key, value)
                        }
                    }) {
                    Ok(true) => {}
                    Ok(false) => return Err(ConfigError::Unknown(key.into())),
                    Err(reason) => return Err(invalid(reason)),
                },
            }
        }
        self.explicit.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// Loads a TOML file of `"kafka.name" = value` pairs (strings, integers, floats, booleans).
    pub fn load_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let file_err = |reason: String| ConfigError::File {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
        for (k, v) in table {
            let value = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(file_err(format!("{k}: unsupported value {other}"))),
            };
            self.set(&k, &value)?;
        }
        Ok(())
    }

    /// The broker-level value of a config name, for DescribeConfigs on the broker resource.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("log.dirs".to_string(), self.data_dir.display().to_string()),
            ("node.id".to_string(), self.node_id.to_string()),
            (
                "auto.create.topics.enable".to_string(),
                self.auto_create_topics_enable.to_string(),
            ),
            (
                "num.partitions".to_string(),
                self.num_partitions.to_string(),
            ),
            ("default.replication.factor".to_string(), "1".to_string()),
            (
                "delete.topic.enable".to_string(),
                self.delete_topic_enable.to_string(),
            ),
            (
                "socket.request.max.bytes".to_string(),
                self.socket_request_max_bytes.to_string(),
            ),
            (
                "max.connections".to_string(),
                self.max_connections.to_string(),
            ),
            (
                "fetch.max.bytes".to_string(),
                self.fetch_max_bytes.to_string(),
            ),
            (
                "log.cleaner.enable".to_string(),
                self.log_cleaner_enable.to_string(),
            ),
        ];
        for (b, t) in LOG_SYNONYMS {
            if let Some(v) = self.log_defaults.get(t) {
                out.push((b.to_string(), v));
            }
        }
        out.extend(self.group.describe());
        out.extend(self.txn.describe());
        out.extend(self.security.describe());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_apply() -> Result<(), ConfigError> {
        let mut c = BrokerConfig::default();
        c.set("log.retention.hours", "2")?;
        assert_eq!(c.log_defaults.retention_ms, 7_200_000);
        c.set("message.max.bytes", "2000")?;
        assert_eq!(c.log_defaults.max_message_bytes, 2000);
        c.set("advertised.listeners", "PLAINTEXT://example:1234")?;
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("example", 1234)
        );
        assert!(matches!(
            c.set("no.such.thing", "1"),
            Err(ConfigError::Unknown(_))
        ));
        assert!(c.set("num.partitions", "zero").is_err());
        assert!(c.set("default.replication.factor", "3").is_err());
        Ok(())
    }
}
