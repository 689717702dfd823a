//! An internal topic a coordinator owns (`__consumer_offsets`, `__transaction_state`): created
//! compacted on first use, with the partition count the coordinator was loaded with. It is the
//! coordinator's narrow handle on the partitions it appends to, instead of the whole broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::registry::Registry;
use super::Partition;

pub struct InternalTopic {
    registry: Arc<Registry>,
    name: &'static str,
    partitions: i32,
    segment_bytes: u64,
    /// Serialises the creation.
    create: tokio::sync::Mutex<()>,
}

impl InternalTopic {
    pub fn new(
        registry: Arc<Registry>,
        name: &'static str,
        partitions: i32,
        segment_bytes: u64,
    ) -> InternalTopic {
        InternalTopic {
            registry,
            name,
            partitions,
            segment_bytes,
            create: tokio::sync::Mutex::new(()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its partition count (an existing topic's count, else the configured one).
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Creates the topic unless it exists; the creation's error code otherwise.
    pub async fn ensure(&self) -> Result<(), ResponseError> {
        if self.registry.topic(self.name).is_some() {
            return Ok(());
        }
        let _guard = self.create.lock().await;
        if self.registry.topic(self.name).is_some() {
            return Ok(());
        }
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), self.segment_bytes.to_string()),
        ]);
        match self
            .registry
            .create_topic(self.name, self.partitions, configs, false)
            .await
        {
            Ok(_) => {
                tracing::info!(partitions = self.partitions, "created {}", self.name);
                Ok(())
            }
            Err((ResponseError::TopicAlreadyExists, _)) => Ok(()),
            Err((code, message)) => {
                tracing::error!(error = %message, "cannot create {}", self.name);
                Err(code)
            }
        }
    }

    /// Partition `index`, creating the topic first if needed (first use, or the topic was
    /// deleted under its coordinator).
    pub async fn partition(&self, index: i32) -> Result<Arc<Partition>, ResponseError> {
        if let Some(p) = self.registry.partition(self.name, index) {
            return Ok(p);
        }
        self.ensure().await?;
        self.registry
            .partition(self.name, index)
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }
}
