//! The broker's shared state: config, the partition registry, the coordinators, fetch sessions,
//! metrics, security.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use uuid::Uuid;

use crate::actors::Actors;
use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;
use crate::partition::registry::Registry;
use crate::partition::Partition;
use crate::producer_ids::ProducerIdManager;
use crate::topic::Topic;

pub use crate::partition::registry::TopicError;

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    /// Topics and their partitions; creates and deletes them.
    registry: Arc<Registry>,
    /// Partition append actors and coordinator tasks, joined by [`Broker::shutdown`].
    pub(crate) actors: Actors,
    pub metrics: Arc<Metrics>,
    pub fetch_sessions: Mutex<FetchSessionCache>,
    /// The group coordinator; set once at the end of [`Broker::open`], after the offsets topic
    /// (if any) was loaded.
    groups: OnceLock<Arc<GroupCoordinator>>,
    /// The transaction coordinator; set at the end of [`Broker::open`], after the groups.
    txns: OnceLock<Arc<crate::txn::TransactionCoordinator>>,
    /// The transform runtime; set by the server's start-up (see `main`).
    transforms: OnceLock<Arc<crate::transform::TransformManager>>,
    /// Idempotent producer ids (InitProducerId), unique across restarts.
    pub producer_ids: Arc<ProducerIdManager>,
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
        let actors = Actors::new();
        let security = crate::security::Security::open(&config.security, &dir)?;
        let registry = Registry::open(
            dir.clone(),
            config.log_defaults.clone(),
            config.delete_topic_enable,
            actors.clone(),
        )?;
        let broker = Arc::new(Broker {
            security,
            producer_ids: Arc::new(producer_ids),
            metrics: Arc::new(Metrics::new()),
            fetch_sessions: Mutex::new(FetchSessionCache::new(
                config.max_incremental_fetch_session_cache_slots,
            )),
            cluster_id,
            registry,
            actors,
            groups: OnceLock::new(),
            txns: OnceLock::new(),
            transforms: OnceLock::new(),
            lock: Mutex::new(Some(lock)),
            config,
        });
        let _ = broker.groups.set(Arc::new(GroupCoordinator::open(&broker)));
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
    pub fn groups(&self) -> Option<&Arc<GroupCoordinator>> {
        self.groups.get()
    }

    /// The partition registry (topics, partitions, create and delete).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.registry.topic(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.registry.topic_by_id(id)
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.registry.topics()
    }

    /// The partition, or UNKNOWN_TOPIC_OR_PARTITION.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.registry.partition(topic, partition)
    }

    /// Creates a topic (CreateTopics and auto-creation).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        self.registry
            .create_topic(name, partitions, configs, validate_only)
            .await
    }

    /// Deletes a topic: its metadata first (atomic), then its partition directories.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        self.registry.delete_topic(name).await
    }

    /// Replaces a topic's config overrides (AlterConfigs, IncrementalAlterConfigs).
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        self.registry
            .set_topic_configs(name, configs, validate_only)
            .await
    }

    /// CreatePartitions: grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        self.registry
            .create_partitions(name, count, validate_only)
            .await
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
        self.registry.clear();
        self.release_lock();
    }

    fn release_lock(&self) {
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    /// Flushes and closes every log. Call once the actors are stopped ([`Broker::shutdown`]).
    fn close_all(&self) {
        self.registry.close_all();
    }
}
