//! The broker's shared state: config, the topic registry, fetch sessions, metrics.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use anyhow::Context;
use kafka_protocol::error::ResponseError;
use log_store::{Log, TopicPartition};
use uuid::Uuid;

use crate::actors::Actors;
use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;
use crate::partition::Partition;
use crate::producer_ids::ProducerIdManager;
use crate::topic::{effective_config, validate_name, Topic, TopicMeta};

/// An error for one topic in an admin request: Kafka code and message.
pub type TopicError = (ResponseError, String);

#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, String>,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    topics: RwLock<Topics>,
    /// Partition append actors and group coordinator shards, joined by [`Broker::shutdown`].
    pub(crate) actors: Actors,
    pub metrics: Metrics,
    pub fetch_sessions: Mutex<FetchSessionCache>,
    /// Serialises topic creation, deletion and config changes so that the metadata files and
    /// the registry always agree.
    admin: tokio::sync::Mutex<()>,
    /// The group coordinator; set once at the end of [`Broker::open`], after the offsets topic
    /// (if any) was loaded.
    groups: OnceLock<GroupCoordinator>,
    /// The transaction coordinator; set at the end of [`Broker::open`], after the groups.
    txns: OnceLock<Arc<crate::txn::TransactionCoordinator>>,
    /// The transform runtime; set by the server's start-up (see `main`).
    transforms: OnceLock<Arc<crate::transform::TransformManager>>,
    /// Idempotent producer ids (InitProducerId), unique across restarts.
    pub producer_ids: ProducerIdManager,
    /// SCRAM credentials, ACLs and the authorizer (`<data-dir>/__security/`).
    pub security: crate::security::Security,
    /// Held until [`Broker::shutdown`] (or the broker's drop): a second broker on this data
    /// dir is refused.
    lock: Mutex<Option<File>>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn read_or_create_cluster_id(data_dir: &Path, node_id: i32) -> anyhow::Result<String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("cluster.id=")) {
            return Ok(id.trim().to_string());
        }
    }
    let id = Uuid::new_v4().simple().to_string();
    let text = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
    log_store::atomic_file::write_atomically(&path, text.as_bytes())?;
    Ok(id)
}

impl Broker {
    /// Locks the data dir, loads every topic and recovers its partitions. A partition that
    /// cannot be opened is taken offline with its error; the others serve.
    pub fn open(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        let lock_path = dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open lock file {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "data dir {} is in use by another sluice process (lock held on {})",
                dir.display(),
                lock_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
            }
        }
        let cluster_id = read_or_create_cluster_id(&dir, config.node_id)?;
        // Finish deletions that a crash interrupted.
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with("-delete") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let producer_ids = ProducerIdManager::open(&dir)?;
        let security = crate::security::Security::open(&config.security, &dir)?;
        let broker = Arc::new(Broker {
            security,
            producer_ids,
            metrics: Metrics::new(),
            fetch_sessions: Mutex::new(FetchSessionCache::new(
                config.max_incremental_fetch_session_cache_slots,
            )),
            cluster_id,
            topics: RwLock::new(Topics::default()),
            actors: Actors::new(),
            admin: tokio::sync::Mutex::new(()),
            groups: OnceLock::new(),
            txns: OnceLock::new(),
            transforms: OnceLock::new(),
            lock: Mutex::new(Some(lock)),
            config,
        });
        let metas = TopicMeta::load_all(&dir)?;
        for meta in metas {
            let topic = broker.open_topic(meta, false);
            let mut t = broker.topics_write();
            t.by_id.insert(topic.meta.id, topic.meta.name.clone());
            t.by_name.insert(topic.meta.name.clone(), topic);
        }
        let _ = broker.groups.set(GroupCoordinator::open(&broker));
        let _ = broker
            .txns
            .set(Arc::new(crate::txn::TransactionCoordinator::open(&broker)));
        Ok(broker)
    }

    /// The transform runtime, once started.
    pub fn transforms(&self) -> Option<&Arc<crate::transform::TransformManager>> {
        self.transforms.get()
    }

    /// Starts the transform runtime: resumes the stored transforms. Once per broker.
    pub async fn start_transforms(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let m = Arc::new(crate::transform::TransformManager::new(shutdown));
        if self.transforms.set(Arc::clone(&m)).is_ok() {
            m.resume_all(self).await;
        }
    }

    /// The transaction coordinator (set by [`Broker::open`]).
    pub fn txns(&self) -> Option<&Arc<crate::txn::TransactionCoordinator>> {
        self.txns.get()
    }

    /// The group coordinator (set by [`Broker::open`]).
    pub fn groups(&self) -> Option<&GroupCoordinator> {
        self.groups.get()
    }

    fn topics_read(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }
    fn topics_write(&self) -> std::sync::RwLockWriteGuard<'_, Topics> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens (or creates) every partition log of a topic.
    fn open_topic(&self, meta: TopicMeta, create: bool) -> Arc<Topic> {
        let config = match effective_config(&self.config.log_defaults, &meta.configs) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(topic = %meta.name, error = %e, "invalid stored topic config; using broker defaults");
                self.config.log_defaults.clone()
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
        config: &log_store::LogConfig,
        create: bool,
        now: i64,
    ) -> Arc<Partition> {
        let dir = self.config.data_dir.join(tp.dir_name());
        let opened = if create || !dir.exists() {
            Log::create(&self.config.data_dir, &tp, config.clone(), now)
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
        if partitions > 100_000 {
            return Err((
                ResponseError::InvalidPartitions,
                format!("{partitions} partitions is more than this broker allows (100000)"),
            ));
        }
        for k in configs.keys() {
            if !log_store::LOG_CONFIG_NAMES.contains(&k.as_str()) {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("unknown topic config {k:?}"),
                ));
            }
        }
        effective_config(&self.config.log_defaults, &configs)
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
                config: effective_config(&self.config.log_defaults, &meta.configs)
                    .map_err(|e| (ResponseError::InvalidConfig, e))?,
                meta,
                partitions: Vec::new(),
            }));
        }
        let broker = Arc::clone(self);
        let handle = tokio::runtime::Handle::current();
        let topic = tokio::task::spawn_blocking(move || -> Result<Arc<Topic>, TopicError> {
            let _rt = handle.enter();
            meta.save(&broker.config.data_dir).map_err(|e| {
                (
                    ResponseError::KafkaStorageError,
                    format!("cannot persist topic metadata: {e}"),
                )
            })?;
            Ok(broker.open_topic(meta, true))
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
        if !self.config.delete_topic_enable {
            return Err((
                ResponseError::TopicDeletionDisabled,
                "delete.topic.enable is false".into(),
            ));
        }
        let _guard = self.admin.lock().await;
        let topic = self.topic(name).ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name:?} does not exist"),
            )
        })?;
        TopicMeta::remove(&self.config.data_dir, name).map_err(|e| {
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
        let data_dir = self.config.data_dir.clone();
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
        let topic = self.topic(name).ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name:?} does not exist"),
            )
        })?;
        for k in configs.keys() {
            if !log_store::LOG_CONFIG_NAMES.contains(&k.as_str()) {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("unknown topic config {k:?}"),
                ));
            }
        }
        let config = effective_config(&self.config.log_defaults, &configs)
            .map_err(|e| (ResponseError::InvalidConfig, e))?;
        if validate_only {
            return Ok(());
        }
        let meta = TopicMeta {
            configs,
            ..topic.meta.clone()
        };
        meta.save(&self.config.data_dir).map_err(|e| {
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
        let topic = self.topic(name).ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name:?} does not exist"),
            )
        })?;
        let current = topic.meta.partitions;
        if count <= current {
            return Err((
                ResponseError::InvalidPartitions,
                format!("topic currently has {current} partitions, which is higher than or equal to the requested {count}"),
            ));
        }
        if count > 100_000 {
            return Err((
                ResponseError::InvalidPartitions,
                format!("{count} partitions is more than this broker allows (100000)"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let meta = TopicMeta {
            partitions: count,
            ..topic.meta.clone()
        };
        meta.save(&self.config.data_dir).map_err(|e| {
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

    /// Clean shutdown, after the listeners, transforms and background tasks have ended: stops
    /// and joins every partition actor and coordinator shard, flushes and closes every log
    /// (writing the clean-shutdown checkpoints), then releases the data-dir lock.
    pub async fn shutdown(self: &Arc<Self>) {
        self.actors.stop_and_join().await;
        let b = Arc::clone(self);
        if let Err(e) = tokio::task::spawn_blocking(move || b.close_all()).await {
            tracing::error!(error = %e, "closing the logs failed");
        }
        self.release_lock();
    }

    /// What a crash leaves: stops and joins every actor and releases the data-dir lock without
    /// flushing or writing checkpoints. For tests that reopen a data dir as after a kill.
    pub async fn abandon(&self) {
        self.actors.stop_and_join().await;
        self.topics_write().by_name.clear();
        self.release_lock();
    }

    fn release_lock(&self) {
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    /// Flushes and closes every log. Call once the actors are stopped ([`Broker::shutdown`]).
    fn close_all(&self) {
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
