//! The partition registry: every topic and its partitions, by name and by id. It alone creates,
//! deletes and reconfigures topics (CreateTopics, DeleteTopics, CreatePartitions, config
//! changes, auto-creation), keeping the topic metadata files and the registry in agreement,
//! and opens each partition's log (taking it offline with its error when it cannot be opened).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use kafka_protocol::error::ResponseError;
use log_store::{Log, LogConfig, TopicPartition};
use uuid::Uuid;

use super::Partition;
use crate::actors::Actors;
use crate::state::now_ms;
use crate::topic::{effective_config, validate_name, Topic, TopicMeta};

/// An error for one topic in an admin request: Kafka code and message.
pub type TopicError = (ResponseError, String);

/// The most partitions one topic may have.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, String>,
}

pub struct Registry {
    data_dir: PathBuf,
    log_defaults: LogConfig,
    delete_topic_enable: bool,
    topics: RwLock<Topics>,
    /// Where partition actors are spawned.
    actors: Actors,
    /// Serialises topic creation, deletion and config changes so that the metadata files and
    /// the registry always agree.
    admin: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Opens every topic stored under `data_dir` and recovers its partitions. Blocking.
    pub fn open(
        data_dir: PathBuf,
        log_defaults: LogConfig,
        delete_topic_enable: bool,
        actors: Actors,
    ) -> std::io::Result<Arc<Registry>> {
        let registry = Arc::new(Registry {
            data_dir,
            log_defaults,
            delete_topic_enable,
            topics: RwLock::new(Topics::default()),
            actors,
            admin: tokio::sync::Mutex::new(()),
        });
        for meta in TopicMeta::load_all(&registry.data_dir)? {
            let topic = registry.open_topic(meta, false);
            let mut t = registry.topics_write();
            t.by_id.insert(topic.meta.id, topic.meta.name.clone());
            t.by_name.insert(topic.meta.name.clone(), topic);
        }
        Ok(registry)
    }

    fn topics_read(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }
    fn topics_write(&self) -> std::sync::RwLockWriteGuard<'_, Topics> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens (or creates) every partition log of a topic.
    fn open_topic(&self, meta: TopicMeta, create: bool) -> Arc<Topic> {
        let config = match effective_config(&self.log_defaults, &meta.configs) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(topic = %meta.name, error = %e, "invalid stored topic config; using broker defaults");
                self.log_defaults.clone()
            }
        };
        let now = now_ms();
        let partitions = (0..meta.partitions)
            .map(|p| {
                self.open_partition(
                    TopicPartition::new(meta.name.clone(), p),
                    &config,
                    create,
                    now,
                )
            })
            .collect();
        Arc::new(Topic {
            meta,
            config,
            partitions,
        })
    }

    fn open_partition(
        &self,
        tp: TopicPartition,
        config: &LogConfig,
        create: bool,
        now: i64,
    ) -> Arc<Partition> {
        let dir = self.data_dir.join(tp.dir_name());
        let opened = if create || !dir.exists() {
            Log::create(&self.data_dir, &tp, config.clone(), now)
        } else {
            Log::open(&dir, config.clone(), now)
        };
        match opened {
            Ok((log, report)) => {
                if report.truncated_bytes > 0 || report.segments_scanned > 0 {
                    tracing::info!(partition = %tp, ?report, "recovered partition");
                }
                Partition::online(tp, log, &self.actors)
            }
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "partition is offline: its log could not be opened");
                Partition::offline(tp, e.to_string())
            }
        }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics_read().by_name.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        let t = self.topics_read();
        t.by_id.get(id).and_then(|n| t.by_name.get(n)).cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.topics_read().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        v
    }

    /// The partition, or UNKNOWN_TOPIC_OR_PARTITION.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let t = self.topic(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p).cloned())
    }

    /// Creates a topic (CreateTopics and auto-creation).
    pub async fn create_topic(
        self: &Arc<Self>,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_name(name).map_err(|e| (ResponseError::InvalidTopicException, e))?;
        if partitions < 1 {
            return Err((
                ResponseError::InvalidPartitions,
                format!("number of partitions must be at least 1, not {partitions}"),
            ));
        }
        if partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err((
                ResponseError::InvalidPartitions,
                format!("{partitions} partitions is more than this broker allows ({MAX_PARTITIONS_PER_TOPIC})"),
            ));
        }
        check_config_names(&configs)?;
        effective_config(&self.log_defaults, &configs)
            .map_err(|e| (ResponseError::InvalidConfig, e))?;
        let _guard = self.admin.lock().await;
        if let Some(t) = self.topic(name) {
            return Err((
                ResponseError::TopicAlreadyExists,
                format!("topic {:?} already exists", t.meta.name),
            ));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(Arc::new(Topic {
                config: effective_config(&self.log_defaults, &meta.configs)
                    .map_err(|e| (ResponseError::InvalidConfig, e))?,
                meta,
                partitions: Vec::new(),
            }));
        }
        let registry = Arc::clone(self);
        let handle = tokio::runtime::Handle::current();
        let topic = tokio::task::spawn_blocking(move || -> Result<Arc<Topic>, TopicError> {
            let _rt = handle.enter();
            meta.save(&registry.data_dir).map_err(|e| {
                (
                    ResponseError::KafkaStorageError,
                    format!("cannot persist topic metadata: {e}"),
                )
            })?;
            Ok(registry.open_topic(meta, true))
        })
        .await
        .map_err(|e| (ResponseError::UnknownServerError, e.to_string()))??;
        let mut t = self.topics_write();
        t.by_id.insert(topic.meta.id, topic.meta.name.clone());
        t.by_name
            .insert(topic.meta.name.clone(), Arc::clone(&topic));
        drop(t);
        tracing::info!(topic = %name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic: its metadata first (atomic), then its partition directories, renamed
    /// out of the way and removed in the background.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        if !self.delete_topic_enable {
            return Err((
                ResponseError::TopicDeletionDisabled,
                "delete.topic.enable is false".into(),
            ));
        }
        let _guard = self.admin.lock().await;
        let topic = self.existing(name)?;
        TopicMeta::remove(&self.data_dir, name).map_err(|e| {
            (
                ResponseError::KafkaStorageError,
                format!("cannot remove topic metadata: {e}"),
            )
        })?;
        {
            let mut t = self.topics_write();
            t.by_name.remove(name);
            t.by_id.remove(&topic.meta.id);
        }
        let data_dir = self.data_dir.clone();
        let id = topic.meta.id;
        let dirs: Vec<_> = topic.partitions.iter().map(|p| p.tp.dir_name()).collect();
        drop(topic);
        // The directories move aside before the admin lock is released: a topic created
        // again under the same name at once must not find them (or have its own new
        // directories renamed away by a late rename). Only the removal runs in the background.
        let mut moved = Vec::new();
        for d in dirs {
            let from = data_dir.join(&d);
            let to = data_dir.join(format!("{d}.{}-delete", id.simple()));
            match std::fs::rename(&from, &to) {
                Ok(()) => moved.push(to),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %from.display(), error = %e, "cannot move a deleted partition aside")
                }
            }
        }
        tokio::task::spawn_blocking(move || {
            for to in moved {
                let _ = std::fs::remove_dir_all(&to);
            }
        });
        tracing::info!(topic = %name, "deleted topic");
        Ok(id)
    }

    /// Replaces a topic's config overrides (AlterConfigs, IncrementalAlterConfigs); applied to
    /// every partition at once.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.admin.lock().await;
        // As Kafka: an unknown topic is reported before anything about its configs.
        let topic = self.existing(name)?;
        check_config_names(&configs)?;
        let config = effective_config(&self.log_defaults, &configs)
            .map_err(|e| (ResponseError::InvalidConfig, e))?;
        if validate_only {
            return Ok(());
        }
        let meta = TopicMeta {
            configs,
            ..topic.meta.clone()
        };
        meta.save(&self.data_dir).map_err(|e| {
            (
                ResponseError::KafkaStorageError,
                format!("cannot persist topic metadata: {e}"),
            )
        })?;
        for p in &topic.partitions {
            p.set_config(config.clone());
        }
        let new = Arc::new(Topic {
            meta,
            config,
            partitions: topic.partitions.clone(),
        });
        self.topics_write().by_name.insert(name.to_string(), new);
        Ok(())
    }

    /// CreatePartitions: grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.admin.lock().await;
        let topic = self.existing(name)?;
        let current = topic.meta.partitions;
        if count <= current {
            return Err((
                ResponseError::InvalidPartitions,
                format!("topic currently has {current} partitions, which is higher than or equal to the requested {count}"),
            ));
        }
        if count > MAX_PARTITIONS_PER_TOPIC {
            return Err((
                ResponseError::InvalidPartitions,
                format!("{count} partitions is more than this broker allows ({MAX_PARTITIONS_PER_TOPIC})"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let meta = TopicMeta {
            partitions: count,
            ..topic.meta.clone()
        };
        meta.save(&self.data_dir).map_err(|e| {
            (
                ResponseError::KafkaStorageError,
                format!("cannot persist topic metadata: {e}"),
            )
        })?;
        let now = now_ms();
        let mut partitions = topic.partitions.clone();
        for p in current..count {
            partitions.push(self.open_partition(
                TopicPartition::new(name, p),
                &topic.config,
                true,
                now,
            ));
        }
        let new = Arc::new(Topic {
            meta,
            config: topic.config.clone(),
            partitions,
        });
        self.topics_write().by_name.insert(name.to_string(), new);
        Ok(())
    }

    /// The topic, or UNKNOWN_TOPIC_OR_PARTITION.
    fn existing(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        self.topic(name).ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name:?} does not exist"),
            )
        })
    }

    /// Forgets every topic without closing its logs (what a crash leaves).
    pub fn clear(&self) {
        self.topics_write().by_name.clear();
    }

    /// Flushes and closes every log. Call once the actors are stopped.
    pub fn close_all(&self) {
        let topics: Vec<_> = self
            .topics_write()
            .by_name
            .drain()
            .map(|(_, t)| t)
            .collect();
        for t in topics {
            for p in &t.partitions {
                p.close();
            }
        }
    }
}

/// Every key must be a topic config Sluice knows (INVALID_CONFIG otherwise).
fn check_config_names(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    match configs
        .keys()
        .find(|k| !log_store::LOG_CONFIG_NAMES.contains(&k.as_str()))
    {
        Some(k) => Err((
            ResponseError::InvalidConfig,
            format!("unknown topic config {k:?}"),
        )),
        None => Ok(()),
    }
}
