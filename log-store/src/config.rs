//! Per-partition log configuration, with Kafka's topic-level config names and defaults.

use crate::error::{Error, Result};

/// How record timestamps are chosen (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// `compression.type`: `producer` keeps each batch's codec; any other value makes the log
/// recompress batches that arrive in a different codec, as Kafka does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    /// The batch codec (`attributes & 0x07`) batches must have, or `None` for `producer`.
    pub fn codec(self) -> Option<i16> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Uncompressed => Some(0),
            CompressionType::Gzip => Some(1),
            CompressionType::Snappy => Some(2),
            CompressionType::Lz4 => Some(3),
            CompressionType::Zstd => Some(4),
        }
    }

    fn name(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }
}

/// `cleanup.policy`: delete, compact, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

/// The topic-level configs the log honours. Field names are Kafka's with units last.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `segment.index.bytes`: preallocated size of each index file.
    pub segment_index_bytes: usize,
    /// `index.interval.bytes`
    pub index_interval_bytes: u64,
    /// `retention.ms` (-1: keep forever)
    pub retention_ms: i64,
    /// `retention.bytes` per partition (-1: no limit)
    pub retention_bytes: i64,
    /// `cleanup.policy`
    pub cleanup_policy: CleanupPolicy,
    /// `flush.messages`: fsync after this many messages (Kafka's default: never).
    pub flush_messages: i64,
    /// `flush.ms`: fsync when the oldest unflushed write is this old (Kafka's default: never).
    pub flush_ms: i64,
    /// `max.message.bytes`: largest record batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`
    pub message_timestamp_type: TimestampType,
    /// `delete.retention.ms`: how long tombstones stay after compaction reaches them.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`
    pub max_compaction_lag_ms: i64,
    /// `compression.type`
    pub compression_type: CompressionType,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: false,
            },
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            compression_type: CompressionType::Producer,
        }
    }
}

/// The config names [`LogConfig::set`] understands, in the order DescribeConfigs lists them.
pub const LOG_CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
];

fn parse_i64(name: &'static str, v: &str, min: i64) -> Result<i64> {
    let n: i64 = v.trim().parse().map_err(|_| Error::InvalidConfig {
        name,
        reason: format!("{v:?} is not an integer"),
    })?;
    if n < min {
        return Err(Error::InvalidConfig {
            name,
            reason: format!("{n} is below the minimum {min}"),
        });
    }
    Ok(n)
}

impl LogConfig {
    /// Sets one config by its Kafka name. Unknown names are an error (the broker decides which
    /// names it passes here).
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        match name {
            "segment.bytes" => self.segment_bytes = parse_i64("segment.bytes", value, 14)? as u64,
            "segment.ms" => self.segment_ms = parse_i64("segment.ms", value, 1)?,
            "segment.index.bytes" => {
                self.segment_index_bytes = parse_i64("segment.index.bytes", value, 4)? as usize
            }
            "index.interval.bytes" => {
                self.index_interval_bytes = parse_i64("index.interval.bytes", value, 0)? as u64
            }
            "retention.ms" => self.retention_ms = parse_i64("retention.ms", value, -1)?,
            "retention.bytes" => self.retention_bytes = parse_i64("retention.bytes", value, -1)?,
            "flush.messages" => self.flush_messages = parse_i64("flush.messages", value, 1)?,
            "flush.ms" => self.flush_ms = parse_i64("flush.ms", value, 0)?,
            "max.message.bytes" => {
                self.max_message_bytes = parse_i64("max.message.bytes", value, 0)? as usize
            }
            "delete.retention.ms" => {
                self.delete_retention_ms = parse_i64("delete.retention.ms", value, 0)?
            }
            "min.compaction.lag.ms" => {
                self.min_compaction_lag_ms = parse_i64("min.compaction.lag.ms", value, 0)?
            }
            "max.compaction.lag.ms" => {
                self.max_compaction_lag_ms = parse_i64("max.compaction.lag.ms", value, 1)?
            }
            "min.cleanable.dirty.ratio" => {
                let r: f64 = value.trim().parse().map_err(|_| Error::InvalidConfig {
                    name: "min.cleanable.dirty.ratio",
                    reason: format!("{value:?} is not a number"),
                })?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(Error::InvalidConfig {
                        name: "min.cleanable.dirty.ratio",
                        reason: format!("{r} is not in [0, 1]"),
                    });
                }
                self.min_cleanable_dirty_ratio = r;
            }
            "compression.type" => {
                self.compression_type = match value.trim() {
                    "producer" => CompressionType::Producer,
                    "uncompressed" | "none" => CompressionType::Uncompressed,
                    "gzip" => CompressionType::Gzip,
                    "snappy" => CompressionType::Snappy,
                    "lz4" => CompressionType::Lz4,
                    "zstd" => CompressionType::Zstd,
                    other => {
                        return Err(Error::InvalidConfig {
                            name: "compression.type",
                            reason: format!(
                        "{other:?} is not one of producer, uncompressed, gzip, snappy, lz4, zstd"
                    ),
                        })
                    }
                }
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    other => {
                        return Err(Error::InvalidConfig {
                            name: "message.timestamp.type",
                            reason: format!("{other:?} is not CreateTime or LogAppendTime"),
                        })
                    }
                }
            }
            "cleanup.policy" => {
                let mut p = CleanupPolicy {
                    delete: false,
                    compact: false,
                };
                for part in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match part {
                        "delete" => p.delete = true,
                        "compact" => p.compact = true,
                        other => {
                            return Err(Error::InvalidConfig {
                                name: "cleanup.policy",
                                reason: format!("{other:?} is not delete or compact"),
                            })
                        }
                    }
                }
                self.cleanup_policy = p;
            }
            _ => {
                return Err(Error::InvalidConfig {
                    name: "config",
                    reason: format!("unknown log config {name:?}"),
                })
            }
        }
        Ok(())
    }

    /// The current value of a config by its Kafka name, as DescribeConfigs shows it.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "compression.type" => self.compression_type.name().to_string(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "message.timestamp.type" => match self.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            "cleanup.policy" => match (self.cleanup_policy.delete, self.cleanup_policy.compact) {
                (true, true) => "compact,delete".into(),
                (false, true) => "compact".into(),
                _ => "delete".into(),
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_roundtrips() -> Result<()> {
        let mut c = LogConfig::default();
        for name in LOG_CONFIG_NAMES {
            let v = c.get(name).ok_or(Error::InvalidConfig {
                name: "x",
                reason: name.to_string(),
            })?;
            c.set(name, &v)?;
        }
        assert_eq!(c, LogConfig::default());
        c.set("cleanup.policy", "compact,delete")?;
        assert!(c.cleanup_policy.compact && c.cleanup_policy.delete);
        assert!(c.set("retention.ms", "soon").is_err());
        assert!(c.set("no.such", "1").is_err());
        Ok(())
    }
}
