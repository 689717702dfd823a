//! The group coordinator's broker configs, with Kafka's names and defaults (except
//! `offsets.topic.num.partitions`: one partition suits a single broker; Kafka's default is 50).

/// Broker configs of the group coordinator and the offsets topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members, extended by each member that joins, up to the rebalance timeout.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members per group.
    pub max_size: usize,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`, one coordinator
    /// shard each. Read when the topic is created; an existing topic keeps its count.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.retention.minutes`, in ms: how long the offsets of an empty group are kept.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`: the largest metadata string an offset commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.assignors`: the server-side assignors of KIP-848 consumer groups, the
    /// first being the default (`uniform`, `range`).
    pub consumer_assignors: Vec<String>,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol member that sends no heartbeat
    /// for this long is removed.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: told to consumer-protocol members.
    pub consumer_heartbeat_interval_ms: i32,
}

/// Kafka's `GroupCoordinator.NewMemberJoinTimeoutMs`: how long a member that has never
/// completed a join may wait in a rebalance before it is dropped.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
            offsets_topic_num_partitions: 1,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            consumer_assignors: vec!["uniform".into(), "range".into()],
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        }
    }
}

/// Every config name [`GroupConfig::set`] understands.
pub const GROUP_CONFIG_NAMES: &[&str] = &[
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "offset.metadata.max.bytes",
    "group.consumer.assignors",
    "group.consumer.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
];

fn parse<T: std::str::FromStr>(value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse::<T>().map_err(|e| e.to_string())
}

fn at_least<T: PartialOrd + std::fmt::Display>(v: T, min: T) -> Result<T, String> {
    if v < min {
        Err(format!("must be at least {min}"))
    } else {
        Ok(v)
    }
}

impl GroupConfig {
    /// Sets one config by its Kafka name. `Ok(false)`: not a group config.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "group.initial.rebalance.delay.ms" => {
                self.initial_rebalance_delay_ms = at_least(parse(value)?, 0)?
            }
            "group.min.session.timeout.ms" => {
                self.min_session_timeout_ms = at_least(parse(value)?, 0)?
            }
            "group.max.session.timeout.ms" => {
                self.max_session_timeout_ms = at_least(parse(value)?, 1)?
            }
            "group.max.size" => self.max_size = at_least(parse(value)?, 1)?,
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions = at_least(parse(value)?, 1)?
            }
            "offsets.topic.segment.bytes" => {
                self.offsets_topic_segment_bytes = at_least(parse(value)?, 1024)?
            }
            "offsets.retention.minutes" => {
                let m: i64 = at_least(parse(value)?, 1)?;
                self.offsets_retention_ms = m.saturating_mul(60_000);
            }
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms = at_least(parse(value)?, 1)?
            }
            "offset.metadata.max.bytes" => {
                self.offset_metadata_max_bytes = at_least(parse(value)?, 0)?
            }
            "group.consumer.assignors" => {
                let names: Vec<String> = value
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                // Kafka also accepts class names; the simple name is what matters here.
                let names: Vec<String> = names
                    .into_iter()
                    .map(|n| match n.rsplit('.').next() {
                        Some(s) if s.ends_with("Assignor") => {
                            s.trim_end_matches("Assignor").to_ascii_lowercase()
                        }
                        _ => n,
                    })
                    .collect();
                if names.is_empty() {
                    return Err("needs at least one assignor".into());
                }
                if let Some(bad) = names
                    .iter()
                    .find(|n| !super::assignor::ASSIGNORS.contains(&n.as_str()))
                {
                    return Err(format!("unknown assignor {bad}"));
                }
                self.consumer_assignors = names;
            }
            "group.consumer.session.timeout.ms" => {
                self.consumer_session_timeout_ms = at_least(parse(value)?, 1)?
            }
            "group.consumer.heartbeat.interval.ms" => {
                self.consumer_heartbeat_interval_ms = at_least(parse(value)?, 1)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `(name, value)` of every group config, for DescribeConfigs on the broker.
    pub fn describe(&self) -> Vec<(String, String)> {
        [
            (
                "group.initial.rebalance.delay.ms",
                self.initial_rebalance_delay_ms.to_string(),
            ),
            (
                "group.min.session.timeout.ms",
                self.min_session_timeout_ms.to_string(),
            ),
            (
                "group.max.session.timeout.ms",
                self.max_session_timeout_ms.to_string(),
            ),
            ("group.max.size", self.max_size.to_string()),
            (
                "offsets.topic.num.partitions",
                self.offsets_topic_num_partitions.to_string(),
            ),
            (
                "offsets.topic.segment.bytes",
                self.offsets_topic_segment_bytes.to_string(),
            ),
            (
                "offsets.retention.minutes",
                (self.offsets_retention_ms / 60_000).to_string(),
            ),
            (
                "offsets.retention.check.interval.ms",
                self.offsets_retention_check_interval_ms.to_string(),
            ),
            (
                "offset.metadata.max.bytes",
                self.offset_metadata_max_bytes.to_string(),
            ),
            (
                "group.consumer.assignors",
                self.consumer_assignors.join(","),
            ),
            (
                "group.consumer.session.timeout.ms",
                self.consumer_session_timeout_ms.to_string(),
            ),
            (
                "group.consumer.heartbeat.interval.ms",
                self.consumer_heartbeat_interval_ms.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_apply() -> Result<(), String> {
        let mut c = GroupConfig::default();
        assert!(c.set("group.initial.rebalance.delay.ms", "0")?);
        assert_eq!(c.initial_rebalance_delay_ms, 0);
        assert!(c.set("offsets.retention.minutes", "2")?);
        assert_eq!(c.offsets_retention_ms, 120_000);
        assert!(!c.set("log.retention.ms", "1")?);
        assert!(c.set("offsets.topic.num.partitions", "0").is_err());
        assert!(c.set("group.max.size", "x").is_err());
        for name in GROUP_CONFIG_NAMES {
            assert!(c.describe().iter().any(|(k, _)| k == name), "{name}");
        }
        Ok(())
    }
}
