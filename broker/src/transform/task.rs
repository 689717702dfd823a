//! One task: one stage of one transform on one partition of the topic the stage reads.
//!
//! A task opens its [`Session`] (fencing any earlier incarnation and aborting what it left
//! open), rebuilds its state from its changelog partition (read_committed, so only committed
//! state), finds its committed input offset in the transform's consumer group, and then loops:
//! read committed records from the local log, run them through the operators, and every
//! `commit.interval.ms` commit the outputs, the state changes and the next input offset in one
//! transaction. Any failure drops the task's uncommitted work and starts it over from the last
//! commit: the output of a committed transaction is exactly what the operators produce from
//! the committed state and input, so a crash at any instant changes nothing in the committed
//! output.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use operators::{Output, Side, StageSpec, StageTask, TransformSpec};
use sluice_clients::records::ConsumerRecord;
use tokio_util::sync::CancellationToken;

use super::driver::{parse_watermark, Broadcast, Cadence, Pending, Upstream, RUNTIME_KEY_TAG};
use super::reader::PartitionReader;
use super::session::{commit_plain, committed_offset, write_plain, Session};
use super::store::{self, Checkpoint, LocalStore, StoreError};
use crate::partition::AppendWatch;

pub use super::driver::WATERMARK_HEADER;
use crate::state::{now_ms, Broker};

/// Bytes read from the log per poll.
const POLL_BYTES: usize = 1 << 20;

/// What a task shows in `describe` and `/metrics`.
#[derive(Debug, Default)]
pub struct TaskStatus {
    pub stage: usize,
    pub partition: i32,
    pub input_topic: String,
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub commits: AtomicU64,
    /// The next input offset committed.
    pub committed_offset: AtomicI64,
    /// The input's last stable offset when last read.
    pub input_end: AtomicI64,
    pub state_entries: AtomicU64,
    pub last_commit_ms: AtomicI64,
    pub restarts: AtomicU64,
    /// At the task's last start: state entries read from the local store, and changelog
    /// records replayed after its checkpoint.
    pub restored_entries: AtomicU64,
    pub replayed_records: AtomicU64,
    /// The task has restored its state and read its input at least once: until then its lag
    /// (input end minus committed offset) means nothing.
    pub started: std::sync::atomic::AtomicBool,
    /// Why the task stopped or last failed.
    pub error: Mutex<Option<String>>,
}

impl TaskStatus {
    pub fn lag(&self) -> i64 {
        (self.input_end.load(Ordering::Relaxed) - self.committed_offset.load(Ordering::Relaxed))
            .max(0)
    }

    fn set_error(&self, e: Option<String>) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

/// The consumer group holding a transform's input offsets.
pub fn group_id(transform: &str) -> String {
    format!("__sluice-transform-{transform}")
}

fn transactional_id(transform: &str, stage: usize, partition: i32) -> String {
    format!("__sluice-transform-{transform}-{stage}-{partition}")
}

fn to_record(r: ConsumerRecord) -> operators::Record {
    operators::Record {
        key: r.key.map(|k| k.to_vec()),
        value: r.value.map(|v| v.to_vec()),
        headers: r
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.map(|v| v.to_vec())))
            .collect(),
        timestamp: r.timestamp_ms,
        partition: r.partition,
        offset: r.offset,
    }
}

/// Why a run of the task ended.
enum Ended {
    Cancelled,
    /// The spec's `on_error: stop`: the task stays stopped with this error.
    Stopped(String),
    /// Anything else: retried after a pause.
    Failed(String),
}

/// A task's local store, shared with the blocking threads that read and write it.
type Store = Arc<Mutex<LocalStore>>;

/// Runs `f` on the store in a blocking thread.
async fn with_store<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&mut LocalStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Opens the task's local state store, if the stage keeps state. Without one (it cannot be
/// opened) the task still runs correctly: it replays its whole changelog at each start.
async fn open_store(
    broker: &Arc<Broker>,
    spec: &TransformSpec,
    stage: &StageSpec,
    partition: i32,
) -> Option<Store> {
    stage.changelog_topic.as_ref()?;
    let path = store::path_for(&broker.config.data_dir, &spec.name, stage.index, partition);
    let mut opened;
    // A previous incarnation of the task (paused and resumed) may still be closing the file.
    let mut tries = 0;
    loop {
        let p = path.clone();
        opened = tokio::task::spawn_blocking(move || LocalStore::open(&p)).await;
        tries += 1;
        if tries >= 30 || !matches!(&opened, Ok(Err(StoreError::AlreadyOpen(_)))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match opened {
        Ok(Ok(s)) => Some(Arc::new(Mutex::new(s))),
        Ok(Err(e)) => {
            tracing::warn!(transform = %spec.name, stage = stage.index, partition, error = %e, "no local state store; restarts replay the whole changelog");
            None
        }
        Err(e) => {
            tracing::warn!(transform = %spec.name, error = %e, "opening the local state store failed");
            None
        }
    }
}

/// Runs the task until cancelled or stopped by a record error.
pub async fn run(
    broker: Arc<Broker>,
    spec: Arc<TransformSpec>,
    stage: StageSpec,
    partition: i32,
    status: Arc<TaskStatus>,
    cancel: CancellationToken,
) {
    let store = open_store(&broker, &spec, &stage, partition).await;
    let mut backoff = Duration::from_millis(100);
    loop {
        let ended = run_once(
            &broker,
            &spec,
            &stage,
            partition,
            &status,
            &cancel,
            store.as_ref(),
        )
        .await;
        if let (Ended::Cancelled | Ended::Stopped(_), Some(s)) = (&ended, &store) {
            if let Err(e) = with_store(s, |s| s.sync()).await {
                tracing::warn!(transform = %spec.name, error = %e, "cannot sync the local state store");
            }
        }
        match ended {
            Ended::Cancelled => return,
            Ended::Stopped(e) => {
                tracing::error!(transform = %spec.name, stage = stage.index, partition, error = %e, "transform task stopped");
                status.set_error(Some(format!("stopped: {e}")));
                return;
            }
            Ended::Failed(e) => {
                tracing::warn!(transform = %spec.name, stage = stage.index, partition, error = %e, "transform task restarts");
                status.set_error(Some(e));
                status.restarts.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Reads a partition from `offset` to its last stable offset, in blocking chunks.
async fn read_chunk(
    broker: &Arc<Broker>,
    reader: PartitionReader,
) -> Result<(PartitionReader, super::reader::Polled), String> {
    let b = Arc::clone(broker);
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let polled = reader.poll(&b, POLL_BYTES)?;
        Ok((reader, polled))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The changelog topic's id and end offset.
fn changelog_position(
    broker: &Broker,
    changelog: &str,
    partition: i32,
) -> Result<(uuid::Uuid, i64), String> {
    let topic = broker
        .topic(changelog)
        .ok_or_else(|| format!("changelog topic {changelog} does not exist"))?;
    let p = broker
        .partition(changelog, partition)
        .ok_or_else(|| format!("{changelog}-{partition} does not exist"))?;
    let end = p.offsets().map_err(|e| e.to_string())?.log_end_offset;
    Ok((topic.meta.id, end))
}

/// Applies one changelog entry (key, value or tombstone) to the task's state.
fn apply_entry(
    task: &mut StageTask,
    upstream: &mut Upstream,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), String> {
    if key.first() == Some(&RUNTIME_KEY_TAG) {
        if let Some((p, ts)) = value.and_then(parse_watermark) {
            upstream.restore(p, ts);
        }
        return Ok(());
    }
    task.restore(key, value)
        .map_err(|e| format!("cannot restore state: {e}"))
}

/// Rebuilds the task's state: the local store's entries, then the changelog from the store's
/// checkpoint. Returns (entries loaded from the store, changelog records replayed). The
/// replayed tail goes into the store too, so the next start begins after it.
async fn restore(
    broker: &Arc<Broker>,
    changelog: &str,
    partition: i32,
    store: Option<&Store>,
    task: &mut StageTask,
    upstream: &mut Upstream,
) -> Result<(u64, u64), String> {
    let (topic_id, end) = changelog_position(broker, changelog, partition)?;
    let mut from = 0;
    let mut restored = 0u64;
    if let Some(store) = store {
        let checkpoint = with_store(store, |s| s.checkpoint()).await?;
        match checkpoint {
            Some(c) if c.topic_id == topic_id && c.offset <= end => {
                // Loading in a blocking thread would need the task there; the entries are read
                // out first, then applied here.
                let entries = with_store(store, |s| {
                    let mut v = Vec::new();
                    s.load(|k, val| {
                        v.push((k.to_vec(), val.to_vec()));
                        Ok(())
                    })?;
                    Ok(v)
                })
                .await?;
                for (k, v) in &entries {
                    apply_entry(task, upstream, k, Some(v))?;
                }
                restored = entries.len() as u64;
                from = c.offset;
            }
            _ => {
                with_store(store, move |s| {
                    s.reset(Checkpoint {
                        topic_id,
                        offset: 0,
                    })
                })
                .await?;
            }
        }
    }
    let mut reader = PartitionReader::new(changelog.to_string(), partition, from);
    let mut replayed = 0u64;
    let mut tail: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> = Default::default();
    loop {
        let (r, polled) = read_chunk(broker, reader)
            .await
            .map_err(|e| format!("cannot read {changelog}: {e}"))?;
        reader = r;
        for rec in polled.records {
            let Some(k) = rec.key else { continue };
            replayed += 1;
            apply_entry(task, upstream, &k, rec.value.as_deref())?;
            if store.is_some() {
                tail.insert(k.to_vec(), rec.value.map(|v| v.to_vec()));
            }
        }
        if reader.offset >= polled.last_stable_offset {
            break;
        }
    }
    if let Some(store) = store {
        if replayed > 0 || reader.offset != from {
            let offset = reader.offset;
            let tail_entries = tail;
            with_store(store, move |s| {
                s.apply(
                    tail_entries
                        .iter()
                        .map(|(k, v)| (k.as_slice(), v.as_deref())),
                    Checkpoint { topic_id, offset },
                )
            })
            .await?;
        }
    }
    Ok((restored, replayed))
}

/// After a commit: writes the committed entries to the local store, checkpointed at the
/// changelog's end.
async fn checkpoint_store(
    broker: &Arc<Broker>,
    changelog: &str,
    partition: i32,
    store: &Store,
    entries: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Result<(), String> {
    let (topic_id, offset) = changelog_position(broker, changelog, partition)?;
    with_store(store, move |s| {
        s.apply(
            entries.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
            Checkpoint { topic_id, offset },
        )
    })
    .await
}

/// The upstream watermarks a stage after the first combines: one per partition of the
/// previous stage's input, which all write to the repartition topic this stage reads.
fn upstream_for(broker: &Broker, spec: &TransformSpec, stage: &StageSpec) -> Upstream {
    if stage.index == 0 {
        return Upstream::default();
    }
    let prev = spec
        .stages()
        .into_iter()
        .find(|s| s.index + 1 == stage.index);
    Upstream::new(
        prev.and_then(|s| broker.topic(&s.input_topic))
            .map_or(0, |t| t.partitions.len()),
    )
}

/// Readers of every partition of the stage's join tables, from the start.
fn table_readers(broker: &Broker, stage: &StageSpec) -> Vec<(String, PartitionReader)> {
    let mut tables = Vec::new();
    for t in &stage.tables {
        let count = broker.topic(t).map_or(0, |t| t.partitions.len());
        for p in 0..count {
            tables.push((t.clone(), PartitionReader::new(t.clone(), p as i32, 0)));
        }
    }
    tables
}

/// The append signals of every partition the task reads.
fn append_watch(
    broker: &Broker,
    input: &PartitionReader,
    other: Option<&PartitionReader>,
    tables: &[(String, PartitionReader)],
) -> AppendWatch {
    let mut read: Vec<(&str, i32)> = vec![(input.topic.as_str(), input.partition)];
    read.extend(other.map(|o| (o.topic.as_str(), o.partition)));
    read.extend(tables.iter().map(|(t, r)| (t.as_str(), r.partition)));
    let parts: Vec<_> = read
        .into_iter()
        .filter_map(|(t, p)| broker.partition(t, p))
        .collect();
    AppendWatch::new(parts.iter().map(Some))
}

/// A task between its start and the end of a run: its session, operators, readers and
/// what it has produced since its last commit.
struct Running<'a> {
    broker: &'a Arc<Broker>,
    spec: &'a TransformSpec,
    stage: &'a StageSpec,
    partition: i32,
    status: &'a TaskStatus,
    store: Option<&'a Store>,
    group: String,
    session: Session,
    task: StageTask,
    upstream: Upstream,
    /// The watermark this stage passes downstream.
    broadcast: Broadcast,
    /// The repartition topic this stage writes to and its partition count.
    repartition: Option<(String, i32)>,
    /// Tables of stream-table joins: every partition, from the start, kept up to date.
    tables: Vec<(String, PartitionReader)>,
    input: Option<PartitionReader>,
    /// The other stream of a stream-stream join.
    other: Option<PartitionReader>,
    appended: AppendWatch,
    pending: Pending,
    cadence: Cadence,
    last_commit: tokio::time::Instant,
}

async fn run_once(
    broker: &Arc<Broker>,
    spec: &Arc<TransformSpec>,
    stage: &StageSpec,
    partition: i32,
    status: &Arc<TaskStatus>,
    cancel: &CancellationToken,
    store: Option<&Store>,
) -> Ended {
    status.started.store(false, Ordering::Relaxed);
    let mut running = match Running::start(broker, spec, stage, partition, status, store).await {
        Ok(r) => r,
        Err(ended) => return ended,
    };
    loop {
        if cancel.is_cancelled() {
            return Ended::Cancelled;
        }
        let got = match running.round().await {
            Ok(got) => got,
            Err(ended) => return ended,
        };
        if got == 0 {
            running.sync_store_if_due().await;
            let wait = running
                .pending
                .idle_wait(&running.cadence, running.last_commit.elapsed());
            tokio::select! {
                _ = cancel.cancelled() => return Ended::Cancelled,
                _ = running.appended.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl<'a> Running<'a> {
    /// Opens the session (fencing earlier incarnations), restores the state and finds the
    /// committed input offsets.
    async fn start(
        broker: &'a Arc<Broker>,
        spec: &'a TransformSpec,
        stage: &'a StageSpec,
        partition: i32,
        status: &'a TaskStatus,
        store: Option<&'a Store>,
    ) -> Result<Running<'a>, Ended> {
        let group = group_id(&spec.name);
        let id = transactional_id(&spec.name, stage.index, partition);
        let session = Session::open(broker, &id, &group).await.map_err(|e| {
            Ended::Failed(format!("cannot open the task's transaction session: {e}"))
        })?;
        let mut task = StageTask::new(spec, stage.index, partition)
            .map_err(|e| Ended::Stopped(e.to_string()))?;
        if stage.index > 0 {
            task.set_watermark_from_records(false);
        }
        let mut upstream = upstream_for(broker, spec, stage);
        // State: the local store's entries, then the changelog after its checkpoint (committed
        // entries only); the whole changelog when there is no usable checkpoint.
        if let Some(changelog) = &stage.changelog_topic {
            let (restored, replayed) = restore(
                broker,
                changelog,
                partition,
                store,
                &mut task,
                &mut upstream,
            )
            .await
            .map_err(Ended::Failed)?;
            status.restored_entries.store(restored, Ordering::Relaxed);
            status.replayed_records.store(replayed, Ordering::Relaxed);
        }
        upstream.restored();
        let repartition = match &stage.output {
            operators::StageOutput::Repartition(t) => Some((
                t.clone(),
                broker.topic(t).map_or(0, |t| t.partitions.len() as i32),
            )),
            operators::StageOutput::Sink => None,
        };
        let tables = table_readers(broker, stage);
        let committed = |topic: String| {
            let group = group.clone();
            async move {
                committed_offset(broker, &group, &topic, partition)
                    .await
                    .map(|o| o.unwrap_or(0))
                    .map_err(|e| Ended::Failed(format!("cannot read the committed offset: {e}")))
            }
        };
        let start = committed(stage.input_topic.clone()).await?;
        status.committed_offset.store(start, Ordering::Relaxed);
        status
            .state_entries
            .store(task.state_len() as u64, Ordering::Relaxed);
        status.set_error(None);
        let input = PartitionReader::new(stage.input_topic.clone(), partition, start);
        let mut other = None;
        if let Some(topic) = &stage.stream_join {
            let from = committed(topic.clone()).await?;
            other = Some(PartitionReader::new(topic.clone(), partition, from));
        }
        let appended = append_watch(broker, &input, other.as_ref(), &tables);
        let pending = Pending::new(
            partition,
            stage.changelog_topic.clone(),
            spec.exactly_once,
            store.is_some(),
        );
        Ok(Running {
            broker,
            spec,
            stage,
            partition,
            status,
            store,
            group,
            session,
            task,
            upstream,
            broadcast: Broadcast::default(),
            repartition,
            tables,
            input: Some(input),
            other,
            appended,
            pending,
            cadence: Cadence {
                interval: Duration::from_millis(spec.commit_interval_ms.max(1)),
            },
            last_commit: tokio::time::Instant::now(),
        })
    }

    /// One round: tables, then the inputs through the operators, the output routed and (at
    /// least once) written, and a commit if one is due. Returns the records read.
    async fn round(&mut self) -> Result<usize, Ended> {
        let _ = self.appended.mark_seen();
        self.read_tables().await?;
        let mut out = Output::default();
        let mut got = 0usize;
        for side in [Side::Left, Side::Right] {
            got += self.read_side(side, &mut out).await?;
        }
        self.status
            .records_in
            .fetch_add(got as u64, Ordering::Relaxed);
        if let Some((topic, count)) = &self.repartition {
            let stateful = self
                .task
                .is_stateful()
                .then(|| self.task.output_watermark());
            let upstream_applied = (self.stage.index > 0).then(|| self.upstream.applied());
            let marks = self.broadcast.round(
                (topic, *count),
                self.partition,
                stateful,
                upstream_applied,
                &out.records,
            );
            out.records.extend(marks);
        }
        let broker = self.broker;
        let partitions = |t: &str| broker.topic(t).map(|t| t.partitions.len() as u32);
        self.pending
            .route(&mut out, partitions, now_ms())
            .map_err(Ended::Failed)?;
        if let Some((outputs, records)) = self.pending.take_flush() {
            // At-least-once: outputs go out as they are produced; offsets follow each interval.
            write_plain(self.broker, &outputs)
                .await
                .map_err(|e| Ended::Failed(format!("write failed: {e}")))?;
            self.status
                .records_out
                .fetch_add(records as u64, Ordering::Relaxed);
        }
        if self
            .pending
            .commit_due(&self.cadence, self.last_commit.elapsed())
        {
            self.commit().await?;
        }
        Ok(got)
    }

    /// Brings every table partition up to date.
    async fn read_tables(&mut self) -> Result<(), Ended> {
        for (name, reader) in self.tables.iter_mut() {
            loop {
                let r = std::mem::replace(reader, PartitionReader::new(name.clone(), 0, 0));
                let (r, polled) = read_chunk(self.broker, r)
                    .await
                    .map_err(|e| Ended::Failed(format!("cannot read table {name}: {e}")))?;
                *reader = r;
                for rec in &polled.records {
                    if let Some(k) = &rec.key {
                        self.task.table_update(name, k, rec.value.as_deref());
                    }
                }
                if polled.records.is_empty() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Reads one input side and runs its records through the operators. Returns the records
    /// read.
    async fn read_side(&mut self, side: Side, out: &mut Output) -> Result<usize, Ended> {
        let slot = match side {
            Side::Left => &mut self.input,
            Side::Right => &mut self.other,
        };
        let Some(reader) = slot.take() else {
            return Ok(0);
        };
        let before = reader.offset;
        let (reader, polled) = read_chunk(self.broker, reader)
            .await
            .map_err(|e| Ended::Failed(format!("cannot read the input: {e}")))?;
        if side == Side::Left {
            self.status
                .input_end
                .store(polled.last_stable_offset, Ordering::Relaxed);
            self.status.started.store(true, Ordering::Relaxed);
        }
        // Markers and aborted records move the position too: commit it, or the lag would
        // never reach 0.
        if reader.offset > before {
            self.pending.consumed();
        }
        *slot = Some(reader);
        let got = polled.records.len();
        for rec in polled.records {
            self.process(side, rec, out)?;
        }
        Ok(got)
    }

    /// One input record: a watermark from upstream, or a record for the operators.
    fn process(&mut self, side: Side, rec: ConsumerRecord, out: &mut Output) -> Result<(), Ended> {
        self.pending.consumed();
        if self.stage.index > 0 && side == Side::Left {
            let wm = rec
                .headers
                .iter()
                .find(|(k, _)| k == WATERMARK_HEADER)
                .map(|(_, v)| v.as_deref().and_then(parse_watermark));
            if let Some(wm) = wm {
                let (p, ts) =
                    wm.ok_or_else(|| Ended::Failed("malformed watermark record".into()))?;
                let step = self.upstream.observe(p, ts);
                if let Some((key, value)) = step.changelog {
                    out.changelog.push((key, Some(value)));
                }
                if let Some(combined) = step.advance_to {
                    self.task
                        .advance_watermark(combined, out)
                        .map_err(|e| Ended::Stopped(format!("watermark {combined}: {e}")))?;
                }
                return Ok(());
            }
        }
        if self.spec.input.time.is_none() && self.stage.index == 0 && !self.task.is_stateful() {
            self.broadcast.observe_input(rec.timestamp_ms);
        }
        let rec = to_record(rec);
        self.task.process(side, &rec, out).map_err(|e| {
            Ended::Stopped(format!(
                "record {}-{}@{}: {e}",
                self.stage.input_topic, rec.partition, rec.offset
            ))
        })
    }

    /// Commits the input offsets (with the outputs, exactly-once), then the committed state
    /// to the local store.
    async fn commit(&mut self) -> Result<(), Ended> {
        let offsets: Vec<(String, i32, i64)> = [&self.input, &self.other]
            .into_iter()
            .flatten()
            .map(|r| (r.topic.clone(), self.partition, r.offset))
            .collect();
        let result = if self.spec.exactly_once {
            self.session.commit(self.pending.outputs(), &offsets).await
        } else {
            commit_plain(self.broker, &self.group, &offsets).await
        };
        result.map_err(|e| Ended::Failed(format!("commit failed: {e}")))?;
        let committed = self.pending.committed();
        if let (Some(changelog), Some(store)) = (&self.stage.changelog_topic, self.store) {
            // The committed state goes to the local store, checkpointed at the changelog's
            // end: this task is the partition's only writer, so everything below it is
            // committed state the store now holds.
            let stored = checkpoint_store(
                self.broker,
                changelog,
                self.partition,
                store,
                committed.state,
            )
            .await;
            if let Err(e) = stored {
                // The changelog has the state; the next start replays more of it.
                tracing::warn!(transform = %self.spec.name, error = %e, "cannot update the local state store");
            }
        }
        let s = self.status;
        s.commits.fetch_add(1, Ordering::Relaxed);
        s.records_out
            .fetch_add(committed.records as u64, Ordering::Relaxed);
        if let Some(r) = &self.input {
            s.committed_offset.store(r.offset, Ordering::Relaxed);
        }
        s.state_entries
            .store(self.task.state_len() as u64, Ordering::Relaxed);
        s.last_commit_ms.store(now_ms(), Ordering::Relaxed);
        self.last_commit = tokio::time::Instant::now();
        Ok(())
    }

    /// Syncs the local store when its sync interval has passed (an idle task).
    async fn sync_store_if_due(&self) {
        let Some(store) = self.store else {
            return;
        };
        let due = store.lock().unwrap_or_else(|p| p.into_inner()).sync_due();
        if due {
            if let Err(e) = with_store(store, |s| s.sync()).await {
                tracing::warn!(transform = %self.spec.name, error = %e, "cannot sync the local state store");
            }
        }
    }
}
