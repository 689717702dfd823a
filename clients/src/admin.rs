//! Topic administration on [`Client`]: create, delete, list, describe, and topic configs.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Client, PartitionMetadata, TopicMetadata};
use crate::offsets::OffsetSpec;
use crate::Error;

/// ConfigResource type of a topic.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// How long the broker may take to create or delete a topic before answering.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One topic config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config key, e.g. `retention.ms`.
    pub name: String,
    /// Value; `None` when sensitive or unset.
    pub value: Option<String>,
    /// Where the value comes from, e.g. `DYNAMIC_TOPIC_CONFIG` or `DEFAULT_CONFIG`.
    pub source: String,
    /// Whether the value cannot be changed.
    pub read_only: bool,
    /// Whether the value is hidden.
    pub is_sensitive: bool,
}

impl ConfigEntry {
    /// Whether the value is the built-in default rather than set on the topic or broker.
    pub fn is_default(&self) -> bool {
        self.source == "DEFAULT_CONFIG"
    }
}

/// A partition with its offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// What the metadata says about the partition.
    pub metadata: PartitionMetadata,
    /// First offset still in the log.
    pub log_start_offset: Option<i64>,
    /// Offset the next record will get (the high watermark as consumers see it).
    pub log_end_offset: Option<i64>,
}

/// A topic with its partitions, offsets and configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub topic_id: String,
    /// Whether the topic is internal.
    pub is_internal: bool,
    /// Partitions, ordered by index.
    pub partitions: Vec<PartitionDescription>,
    /// Every config the broker reports for the topic.
    pub configs: Vec<ConfigEntry>,
}

fn config_source_name(source: i8) -> String {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG".into(),
        2 => "DYNAMIC_BROKER_CONFIG".into(),
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG".into(),
        4 => "STATIC_BROKER_CONFIG".into(),
        5 => "DEFAULT_CONFIG".into(),
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG".into(),
        other => format!("UNKNOWN({other})"),
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Client {
    /// Creates `name` with `partitions` partitions (-1: the broker's default) of
    /// `replication_factor` replicas (-1: the broker's default) and the given configs.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<(), Error> {
        if partitions == 0 || partitions < -1 {
            return Err(Error::InvalidArgument(format!(
                "partitions must be positive (or -1 for the broker default), not {partitions}"
            )));
        }
        if replication_factor == 0 || replication_factor < -1 {
            return Err(Error::InvalidArgument(format!(
                "replication factor must be positive (or -1 for the broker default), not {replication_factor}"
            )));
        }
        let topic = CreatableTopic::default()
            .with_name(TopicName(str_bytes(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(ADMIN_TIMEOUT.as_millis() as i32);
        let request = &request;
        let context = || format!("create topic {name:?}");
        self.with_retries(None, false, move || async move {
            let conn = self.controller_connection().await?;
            if (partitions == -1 || replication_factor == -1) && conn.version(ApiKey::CreateTopics)? < 4 {
                return Err(Error::InvalidArgument(
                    "this broker needs explicit --partitions and --replication-factor (CreateTopics < v4)".into(),
                ));
            }
            let response = conn.call(request.clone(), ADMIN_TIMEOUT).await?;
            let result = response
                .topics
                .iter()
                .find(|t| t.name.0.as_str() == name)
                .ok_or_else(|| Error::InvalidResponse { addr: conn.addr().to_string(), reason: format!("no result for topic {name:?}") })?;
            match Error::from_code(context, result.error_code, result.error_message.as_deref()) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await?;
        // Let the next lookup see the new topic.
        let _ = self.refresh_metadata(Some(&[name])).await;
        Ok(())
    }

    /// Deletes `name`.
    pub async fn delete_topic(&self, name: &str) -> Result<(), Error> {
        let context = || format!("delete topic {name:?}");
        self.with_retries(None, false, move || async move {
            let conn = self.controller_connection().await?;
            let version = conn.version(ApiKey::DeleteTopics)?;
            let request =
                DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT.as_millis() as i32);
            // v6 names topics in `topics` (name or id); earlier versions in `topic_names`.
            let request = if version >= 6 {
                request.with_topics(vec![
                    DeleteTopicState::default().with_name(Some(TopicName(str_bytes(name))))
                ])
            } else {
                request.with_topic_names(vec![TopicName(str_bytes(name))])
            };
            let response = conn.call(request, ADMIN_TIMEOUT).await?;
            let result = response
                .responses
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
                .ok_or_else(|| Error::InvalidResponse {
                    addr: conn.addr().to_string(),
                    reason: format!("no result for topic {name:?}"),
                })?;
            match Error::from_code(context, result.error_code, result.error_message.as_deref()) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await?;
        let _ = self.refresh_metadata(Some(&[name])).await;
        Ok(())
    }

    /// All topics in the cluster, by name.
    pub async fn list_topics(&self) -> Result<BTreeMap<String, TopicMetadata>, Error> {
        self.refresh_metadata(None).await
    }

    /// Partitions with their leaders and log start/end offsets, and the topic's configs.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, Error> {
        let metadata = self
            .refresh_metadata(Some(&[name]))
            .await?
            .remove(name)
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        // A partition without a leader has no one to ask; its offsets stay unknown.
        let indexes: Vec<i32> = metadata
            .partitions
            .iter()
            .filter(|p| p.leader >= 0)
            .map(|p| p.partition)
            .collect();
        let starts = self
            .list_offsets_many(name, &indexes, OffsetSpec::Earliest)
            .await?;
        let ends = self
            .list_offsets_many(name, &indexes, OffsetSpec::Latest)
            .await?;
        let configs = self.describe_topic_configs(name).await?;
        let partitions = metadata
            .partitions
            .into_iter()
            .map(|p| PartitionDescription {
                log_start_offset: starts.get(&p.partition).copied().flatten(),
                log_end_offset: ends.get(&p.partition).copied().flatten(),
                metadata: p,
            })
            .collect();
        Ok(TopicDescription {
            name: metadata.name,
            topic_id: metadata.topic_id,
            is_internal: metadata.is_internal,
            partitions,
            configs,
        })
    }

    /// Every config of topic `name`, sorted by key.
    pub async fn describe_topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>, Error> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(str_bytes(name))
                .with_configuration_keys(None),
        ]);
        let request = &request;
        let context = || format!("describe configs of topic {name:?}");
        let mut configs = self
            .with_retries(Some(name), true, move || async move {
                let conn = self.any_connection().await?;
                let response = conn.call(request.clone(), Duration::ZERO).await?;
                let result = response
                    .results
                    .into_iter()
                    .find(|r| r.resource_name.as_str() == name)
                    .ok_or_else(|| Error::InvalidResponse {
                        addr: conn.addr().to_string(),
                        reason: format!("no configs for topic {name:?}"),
                    })?;
                if let Some(e) =
                    Error::from_code(context, result.error_code, result.error_message.as_deref())
                {
                    return Err(e);
                }
                Ok(result
                    .configs
                    .into_iter()
                    .map(|c| ConfigEntry {
                        name: c.name.to_string(),
                        value: c.value.map(|v| v.to_string()),
                        source: config_source_name(c.config_source),
                        read_only: c.read_only,
                        is_sensitive: c.is_sensitive,
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(configs)
    }

    /// Sets the `set` configs and removes the `delete` ones (back to their defaults) on topic
    /// `name`, in one IncrementalAlterConfigs request.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<(), Error> {
        if set.is_empty() && delete.is_empty() {
            return Err(Error::InvalidArgument(
                "nothing to change: give at least one config to set or delete".into(),
            ));
        }
        if let Some(key) = delete.iter().find(|k| set.iter().any(|(s, _)| s == *k)) {
            return Err(Error::InvalidArgument(format!(
                "config {key:?} is both set and deleted"
            )));
        }
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(OP_SET)
                    .with_value(Some(str_bytes(v)))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(str_bytes(k))
                .with_config_operation(OP_DELETE)
                .with_value(None)
        }));
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(str_bytes(name))
                .with_configs(configs),
        ]);
        let request = &request;
        let context = || format!("alter configs of topic {name:?}");
        // Setting a config to the same value twice is harmless, so connection failures retry.
        self.with_retries(Some(name), true, move || async move {
            let conn = self.any_connection().await?;
            let response = conn.call(request.clone(), Duration::ZERO).await?;
            let result = response
                .responses
                .iter()
                .find(|r| r.resource_name.as_str() == name)
                .ok_or_else(|| Error::InvalidResponse {
                    addr: conn.addr().to_string(),
                    reason: format!("no result for topic {name:?}"),
                })?;
            match Error::from_code(context, result.error_code, result.error_message.as_deref()) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sources_have_kafka_names() {
        assert_eq!(config_source_name(1), "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(config_source_name(5), "DEFAULT_CONFIG");
        assert_eq!(config_source_name(42), "UNKNOWN(42)");
    }
}
