//! In-broker transforms: the runtime of the `operators` crate, exactly-once.
//!
//! - [`TransformManager`]: deployed transforms, their definitions stored durably in the
//!   internal compacted topic `__sluice_transforms` (key: name, value: `{"spec": <yaml>,
//!   "paused": bool}`, null: deleted) and resumed at start-up; deploy / pause / resume /
//!   delete, used by the admin HTTP API ([`http`]) and so by `sluice transform`.
//! - [`task`]: one task per (stage, partition of the topic the stage reads), committing
//!   outputs, state changes and input offsets in one transaction ([`session`]).
//! - [`reader`]: a read_committed reader of a local partition (no network hop).
//!
//! A deploy validates the spec (the operators crate reports the line and what is wrong),
//! checks that the input, table and stream topics exist, creates the outputs and the internal
//! repartition and changelog topics that are missing (as many partitions as the input), stores
//! the definition, then starts the tasks.
//!
//! A spec's `principal` (such as `User:etl`) is who the transform acts as when the broker's
//! authorizer is enabled: it must be allowed to READ the input, table and stream topics and to
//! WRITE the output, late and errors topics (as a client connecting from the broker's own
//! address, 127.0.0.1). A deploy it fails is refused; a start (at deploy, resume or broker
//! start-up) it fails leaves every task stopped with the reason. Without `principal` the
//! transform acts with the broker's own rights, as an internal client does. Its internal
//! topics, consumer group and transactional ids are the transform's own and need no ACL.

pub mod driver;
pub mod http;
pub mod reader;
pub mod session;
pub mod store;
pub mod task;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use operators::TransformSpec;
use serde::{Deserialize, Serialize};
use sluice_security::acl::{AclOperation, ResourceType};
use tokio_util::sync::CancellationToken;

use crate::state::{now_ms, Broker};
use task::TaskStatus;

/// The internal topic holding transform definitions.
pub const DEFINITIONS_TOPIC: &str = "__sluice_transforms";

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("invalid transform spec: {0}")]
    Spec(String),
    #[error("transform {0} does not exist")]
    NotFound(String),
    #[error("transform {0} already exists; delete it first")]
    Exists(String),
    #[error("{0}")]
    Topic(String),
    #[error("cannot store the definition: {0}")]
    Storage(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Definition {
    spec: String,
    paused: bool,
}

struct Deployed {
    yaml: String,
    spec: Arc<TransformSpec>,
    paused: bool,
    cancel: CancellationToken,
    tasks: Vec<Arc<TaskStatus>>,
    deployed_ms: i64,
}

/// A transform as `list` and `describe` show it.
#[derive(Debug, Clone, Serialize)]
pub struct TransformInfo {
    pub name: String,
    pub state: String,
    pub input: String,
    pub outputs: Vec<String>,
    pub stages: usize,
    pub deployed_ms: i64,
    pub records_in: u64,
    pub records_out: u64,
    pub lag: i64,
    pub state_entries: u64,
    pub last_commit_ms: i64,
    pub commits: u64,
    pub tasks: Vec<TaskInfo>,
    pub spec: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    pub stage: usize,
    pub partition: i32,
    pub input_topic: String,
    pub records_in: u64,
    pub records_out: u64,
    pub committed_offset: i64,
    pub lag: i64,
    pub state_entries: u64,
    pub last_commit_ms: i64,
    pub restarts: u64,
    /// At the task's last start: state entries loaded from its local store, and changelog
    /// records replayed after the store's checkpoint.
    pub restored_entries: u64,
    pub replayed_records: u64,
    /// Whether the task has restored its state and read its input (before that, `lag` is 0
    /// without meaning the task is caught up).
    pub started: bool,
    pub error: Option<String>,
}

pub struct TransformManager {
    deployed: Mutex<BTreeMap<String, Deployed>>,
    /// Serialises deploy / delete / pause / resume.
    admin: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
    /// Every task ever started, so shutdown can wait for them before the logs close (a task
    /// reading a log after `close_all` would touch unmapped index pages).
    tasks: tokio_util::task::TaskTracker,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TransformManager {
    pub fn new(shutdown: CancellationToken) -> Self {
        TransformManager {
            deployed: Mutex::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
            shutdown,
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Waits until every task has stopped (after the shutdown token was cancelled).
    pub async fn wait_stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Loads the stored definitions and starts every transform that is not paused.
    pub async fn resume_all(&self, broker: &Arc<Broker>) {
        let defs = match load_definitions(broker) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read transform definitions");
                return;
            }
        };
        let _guard = self.admin.lock().await;
        for (name, def) in defs {
            match operators::parse_spec(&def.spec) {
                Ok(spec) => {
                    let spec = Arc::new(spec);
                    let mut d = Deployed {
                        yaml: def.spec,
                        spec,
                        paused: def.paused,
                        cancel: self.shutdown.child_token(),
                        tasks: Vec::new(),
                        deployed_ms: now_ms(),
                    };
                    if !d.paused {
                        if let Err(e) = start(broker, &self.tasks, &mut d) {
                            tracing::error!(transform = %name, error = %e, "cannot start transform");
                        }
                    }
                    tracing::info!(transform = %name, paused = d.paused, "transform resumed");
                    lock(&self.deployed).insert(name, d);
                }
                Err(e) => {
                    tracing::error!(transform = %name, error = %e, "stored transform no longer parses")
                }
            }
        }
    }

    /// Validates, stores and starts a transform.
    pub async fn deploy(
        &self,
        broker: &Arc<Broker>,
        yaml: &str,
    ) -> Result<TransformInfo, TransformError> {
        let spec = operators::parse_spec(yaml).map_err(|e| TransformError::Spec(e.to_string()))?;
        let _guard = self.admin.lock().await;
        if lock(&self.deployed).contains_key(&spec.name) {
            return Err(TransformError::Exists(spec.name.clone()));
        }
        if let Some(why) = refused(broker, &spec) {
            return Err(TransformError::Topic(why));
        }
        prepare_topics(broker, &spec).await?;
        let def = Definition {
            spec: yaml.to_string(),
            paused: false,
        };
        store_definition(broker, &spec.name, Some(&def)).await?;
        let mut d = Deployed {
            yaml: yaml.to_string(),
            spec: Arc::new(spec),
            paused: false,
            cancel: self.shutdown.child_token(),
            tasks: Vec::new(),
            deployed_ms: now_ms(),
        };
        start(broker, &self.tasks, &mut d)?;
        let name = d.spec.name.clone();
        let info = describe(&name, &d);
        lock(&self.deployed).insert(name, d);
        Ok(info)
    }

    /// Stops a transform and forgets its definition (its topics stay).
    pub async fn delete(&self, broker: &Arc<Broker>, name: &str) -> Result<(), TransformError> {
        let _guard = self.admin.lock().await;
        if !lock(&self.deployed).contains_key(name) {
            return Err(TransformError::NotFound(name.into()));
        }
        store_definition(broker, name, None).await?;
        if let Some(d) = lock(&self.deployed).remove(name) {
            d.cancel.cancel();
        }
        // The local state stores go; the changelog topics (the state's source of truth) stay
        // with the other topics, so a later deploy under the same name resumes from them.
        let dir = store::transform_dir(&broker.config.data_dir, name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(transform = %name, error = %e, "cannot remove the local state stores");
            }
        }
        Ok(())
    }

    /// Pauses (stops the tasks; they resume from the last commit) or resumes a transform.
    pub async fn set_paused(
        &self,
        broker: &Arc<Broker>,
        name: &str,
        paused: bool,
    ) -> Result<TransformInfo, TransformError> {
        let _guard = self.admin.lock().await;
        let yaml = match lock(&self.deployed).get(name) {
            Some(d) => d.yaml.clone(),
            None => return Err(TransformError::NotFound(name.into())),
        };
        store_definition(broker, name, Some(&Definition { spec: yaml, paused })).await?;
        let mut map = lock(&self.deployed);
        let d = map
            .get_mut(name)
            .ok_or_else(|| TransformError::NotFound(name.into()))?;
        if paused && !d.paused {
            d.cancel.cancel();
            d.cancel = self.shutdown.child_token();
        } else if !paused && d.paused {
            d.paused = false;
            start(broker, &self.tasks, d)?;
        }
        d.paused = paused;
        Ok(describe(name, d))
    }

    pub fn list(&self) -> Vec<TransformInfo> {
        lock(&self.deployed)
            .iter()
            .map(|(n, d)| describe(n, d))
            .collect()
    }

    pub fn describe(&self, name: &str) -> Option<TransformInfo> {
        lock(&self.deployed).get(name).map(|d| describe(name, d))
    }
}

fn describe(name: &str, d: &Deployed) -> TransformInfo {
    let tasks: Vec<TaskInfo> = d
        .tasks
        .iter()
        .map(|t| TaskInfo {
            stage: t.stage,
            partition: t.partition,
            input_topic: t.input_topic.clone(),
            records_in: t.records_in.load(Ordering::Relaxed),
            records_out: t.records_out.load(Ordering::Relaxed),
            committed_offset: t.committed_offset.load(Ordering::Relaxed),
            lag: t.lag(),
            state_entries: t.state_entries.load(Ordering::Relaxed),
            last_commit_ms: t.last_commit_ms.load(Ordering::Relaxed),
            restarts: t.restarts.load(Ordering::Relaxed),
            restored_entries: t.restored_entries.load(Ordering::Relaxed),
            replayed_records: t.replayed_records.load(Ordering::Relaxed),
            started: t.started.load(Ordering::Relaxed),
            error: lock(&t.error).clone(),
        })
        .collect();
    let stopped = tasks
        .iter()
        .any(|t| t.error.as_deref().is_some_and(|e| e.starts_with("stopped")));
    let plan = d.spec.topics();
    TransformInfo {
        name: name.to_string(),
        state: if d.paused {
            "paused"
        } else if stopped {
            "failed"
        } else {
            "running"
        }
        .to_string(),
        input: plan.input.clone(),
        outputs: plan.outputs.clone(),
        stages: d.spec.stage_count(),
        deployed_ms: d.deployed_ms,
        records_in: tasks
            .iter()
            .filter(|t| t.stage == 0)
            .map(|t| t.records_in)
            .sum(),
        records_out: tasks.iter().map(|t| t.records_out).sum(),
        lag: tasks.iter().map(|t| t.lag).sum(),
        state_entries: tasks.iter().map(|t| t.state_entries).sum(),
        last_commit_ms: tasks.iter().map(|t| t.last_commit_ms).max().unwrap_or(0),
        commits: d
            .tasks
            .iter()
            .map(|t| t.commits.load(Ordering::Relaxed))
            .sum(),
        tasks,
        spec: d.yaml.clone(),
    }
}

/// Why the spec's `principal` may not run the transform, if it may not: the first topic it
/// may not READ (inputs) or WRITE (outputs). `None` without a principal or an authorizer.
fn refused(broker: &Broker, spec: &TransformSpec) -> Option<String> {
    let principal = spec.principal.as_deref()?;
    let plan = spec.topics();
    let reads = std::iter::once(&plan.input)
        .chain(&plan.tables)
        .chain(&plan.streams)
        .map(|t| (AclOperation::Read, t));
    let writes = plan
        .outputs
        .iter()
        .chain(&plan.late)
        .chain(plan.errors.iter())
        .map(|t| (AclOperation::Write, t));
    let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    reads.chain(writes).find_map(|(op, topic)| {
        (!broker
            .security
            .authorize(principal, host, op, ResourceType::Topic, topic))
        .then(|| format!("principal {principal} is not allowed to {op} topic {topic} (ACLs)"))
    })
}

/// Spawns one task per stage and partition; if the spec's principal is refused, the tasks
/// are created stopped with the reason instead.
fn start(
    broker: &Arc<Broker>,
    tracker: &tokio_util::task::TaskTracker,
    d: &mut Deployed,
) -> Result<(), TransformError> {
    d.tasks.clear();
    let refusal = refused(broker, &d.spec);
    if let Some(why) = &refusal {
        tracing::error!(transform = %d.spec.name, error = %why, "transform not started");
    }
    for stage in d.spec.stages() {
        let count = broker
            .topic(&stage.input_topic)
            .ok_or_else(|| {
                TransformError::Topic(format!("topic {} does not exist", stage.input_topic))
            })?
            .partitions
            .len() as i32;
        for p in 0..count {
            let status = Arc::new(TaskStatus {
                stage: stage.index,
                partition: p,
                input_topic: stage.input_topic.clone(),
                ..TaskStatus::default()
            });
            d.tasks.push(Arc::clone(&status));
            if let Some(why) = &refusal {
                *lock(&status.error) = Some(format!("stopped: {why}"));
                continue;
            }
            tracker.spawn(task::run(
                Arc::clone(broker),
                Arc::clone(&d.spec),
                stage.clone(),
                p,
                status,
                d.cancel.clone(),
            ));
        }
    }
    Ok(())
}

/// Checks the topics a transform reads and creates those it writes.
async fn prepare_topics(broker: &Arc<Broker>, spec: &TransformSpec) -> Result<(), TransformError> {
    let plan = spec.topics();
    let missing = |t: &str| TransformError::Topic(format!("topic {t} does not exist"));
    let input = broker
        .topic(&plan.input)
        .ok_or_else(|| missing(&plan.input))?;
    let partitions = input.partitions.len() as i32;
    for t in plan.tables.iter().chain(&plan.streams) {
        if broker.topic(t).is_none() {
            return Err(missing(t));
        }
    }
    for t in &plan.streams {
        let n = broker.topic(t).map_or(0, |t| t.partitions.len() as i32);
        if n != partitions {
            return Err(TransformError::Topic(format!(
                "stream {t} has {n} partitions, the input {} has {partitions}: a stream-stream join needs co-partitioned inputs",
                plan.input
            )));
        }
    }
    let mut create: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for t in plan
        .outputs
        .iter()
        .chain(&plan.late)
        .chain(plan.errors.iter())
        .chain(&plan.repartition)
    {
        create.push((t.clone(), BTreeMap::new()));
    }
    for t in &plan.changelogs {
        create.push((
            t.clone(),
            BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        ));
    }
    for (t, configs) in create {
        if broker.topic(&t).is_some() {
            continue;
        }
        if let Err((_, m)) = broker.create_topic(&t, partitions, configs, false).await {
            if broker.topic(&t).is_none() {
                return Err(TransformError::Topic(format!(
                    "cannot create topic {t}: {m}"
                )));
            }
        }
    }
    Ok(())
}

async fn store_definition(
    broker: &Arc<Broker>,
    name: &str,
    def: Option<&Definition>,
) -> Result<(), TransformError> {
    if broker.topic(DEFINITIONS_TOPIC).is_none() {
        let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        if let Err((_, m)) = broker
            .create_topic(DEFINITIONS_TOPIC, 1, configs, false)
            .await
        {
            if broker.topic(DEFINITIONS_TOPIC).is_none() {
                return Err(TransformError::Storage(m));
            }
        }
    }
    let value = match def {
        Some(d) => Some(serde_json::to_vec(d).map_err(|e| TransformError::Storage(e.to_string()))?),
        None => None,
    };
    let batch = encode_definition(name, value).map_err(TransformError::Storage)?;
    let partition = broker
        .partition(DEFINITIONS_TOPIC, 0)
        .ok_or_else(|| TransformError::Storage("no definitions partition".into()))?;
    partition
        .submit(batch, true)
        .await
        .map_err(|e| TransformError::Storage(e.to_string()))?
        .wait()
        .await
        .map_err(|e| TransformError::Storage(e.to_string()))?;
    Ok(())
}

fn encode_definition(name: &str, value: Option<Vec<u8>>) -> Result<Bytes, String> {
    let record = crate::batch::BrokerRecord {
        key: Some(Bytes::from(name.as_bytes().to_vec())),
        value: value.map(Bytes::from),
        headers: Vec::new(),
        timestamp: now_ms(),
    };
    crate::batch::encode(std::slice::from_ref(&record), None, None)
}

/// The latest definition per name (blocking read of the definitions partition).
fn load_definitions(broker: &Arc<Broker>) -> Result<BTreeMap<String, Definition>, String> {
    let mut out = BTreeMap::new();
    if broker.topic(DEFINITIONS_TOPIC).is_none() {
        return Ok(out);
    }
    let mut reader = reader::PartitionReader::new(DEFINITIONS_TOPIC, 0, 0);
    loop {
        let polled = tokio::task::block_in_place(|| reader.poll(broker, 4 << 20))?;
        if polled.records.is_empty() {
            break;
        }
        for r in polled.records {
            let Some(key) = r.key else { continue };
            let name = String::from_utf8_lossy(&key).to_string();
            match r.value.map(|v| serde_json::from_slice::<Definition>(&v)) {
                Some(Ok(d)) => {
                    out.insert(name, d);
                }
                Some(Err(e)) => {
                    tracing::warn!(transform = %name, error = %e, "skipping an unreadable transform definition")
                }
                None => {
                    out.remove(&name);
                }
            }
        }
    }
    Ok(out)
}
