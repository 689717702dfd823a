//! The transaction coordinator's broker configs, with Kafka's names and defaults (except
//! `transaction.state.log.num.partitions`: a single broker needs few; Kafka's default is 50).

/// Broker configs of the transaction coordinator and `__transaction_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`: read when the topic is created; an existing
    /// topic keeps its count.
    pub num_partitions: i32,
    /// `transaction.state.log.segment.bytes`
    pub segment_bytes: u64,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask.
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often transactions
    /// past their timeout are aborted (and unfinished completions retried).
    pub abort_interval_ms: i64,
    /// `transactional.id.expiration.ms`: a transactional id with no transaction for this long
    /// is forgotten.
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            num_partitions: 4,
            segment_bytes: 104_857_600,
            max_timeout_ms: 900_000,
            abort_interval_ms: 10_000,
            id_expiration_ms: 604_800_000,
        }
    }
}

/// Every config name [`TxnConfig::set`] understands.
pub const TXN_CONFIG_NAMES: &[&str] = &[
    "transaction.state.log.num.partitions",
    "transaction.state.log.segment.bytes",
    "transaction.max.timeout.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transactional.id.expiration.ms",
];

fn parse_at_least<T>(value: &str, min: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let v = value.trim().parse::<T>().map_err(|e| e.to_string())?;
    if v < min {
        return Err(format!("must be at least {min}"));
    }
    Ok(v)
}

impl TxnConfig {
    /// Sets one config by its Kafka name. `Ok(false)`: not a transaction config. Kafka's
    /// replication-only settings are accepted and ignored on a single broker.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "transaction.state.log.num.partitions" => {
                self.num_partitions = parse_at_least(value, 1)?
            }
            "transaction.state.log.segment.bytes" => {
                self.segment_bytes = parse_at_least(value, 1024)?
            }
            "transaction.max.timeout.ms" => self.max_timeout_ms = parse_at_least(value, 1)?,
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.abort_interval_ms = parse_at_least(value, 1)?
            }
            "transactional.id.expiration.ms" => self.id_expiration_ms = parse_at_least(value, 1)?,
            "transaction.state.log.min.isr" => {
                parse_at_least::<i32>(value, 1)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `(name, value)` of every transaction config, for DescribeConfigs on the broker.
    pub fn describe(&self) -> Vec<(String, String)> {
        vec![
            (
                "transaction.state.log.num.partitions".into(),
                self.num_partitions.to_string(),
            ),
            (
                "transaction.state.log.segment.bytes".into(),
                self.segment_bytes.to_string(),
            ),
            (
                "transaction.max.timeout.ms".into(),
                self.max_timeout_ms.to_string(),
            ),
            (
                "transaction.abort.timed.out.transaction.cleanup.interval.ms".into(),
                self.abort_interval_ms.to_string(),
            ),
            (
                "transactional.id.expiration.ms".into(),
                self.id_expiration_ms.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_settable_and_described() {
        let mut c = TxnConfig::default();
        assert_eq!(c.set("transaction.max.timeout.ms", "60000"), Ok(true));
        assert_eq!(c.max_timeout_ms, 60_000);
        assert!(c.set("transaction.max.timeout.ms", "0").is_err());
        assert!(c.set("transaction.state.log.num.partitions", "x").is_err());
        assert_eq!(c.set("group.max.size", "3"), Ok(false));
        for name in TXN_CONFIG_NAMES {
            assert!(c.describe().iter().any(|(k, _)| k == name), "{name}");
        }
    }
}
