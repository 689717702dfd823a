//! [`StageTask`]: one stage of a transform for one input partition, as a synchronous state
//! machine. The runtime feeds it records ([`StageTask::process`]) and table updates, and
//! writes what it returns: output records and changelog entries, both in the same transaction
//! as the input offsets.
//!
//! Per input record the task
//! 1. decodes the value per the input format (stage 0) or as JSON (repartition topics), reads
//!    the key (a repartition record marks JSON keys with the `__sluice-key-json` header, which
//!    the next stage removes), and takes the event time (`input.time` or the record timestamp);
//! 2. in a stateful stage, advances the partition's watermark (the largest event time seen on
//!    either side, unless the runtime drives it with [`StageTask::advance_watermark`]) and
//!    records it in the changelog when it moves;
//! 3. runs the value through the stage's steps, breadth first (every result of step i before
//!    step i + 1), so a record's outputs come in a fixed order;
//! 4. closes the windows (or expires the join buffers) the watermark has passed, and runs the
//!    results through the remaining steps;
//! 5. writes results to the next stage's repartition topic (key = the new key, value = JSON,
//!    timestamp = event time; the runtime must keep that timestamp, i.e. CreateTime) or to the
//!    outputs.
//!
//! Nothing depends on the wall clock, hash order or anything but the input and restored state,
//! so replaying the same records after [`StageTask::restore`] gives the same outputs and
//! changelog, in the same order. The one input outside the changelog is a stream-table join's
//! table, re-read by the runtime from its compacted topic: a replayed record joins the table
//! as it is when replayed (as in Kafka Streams).
//!
//! Errors: a record (or one of its `flat_map` results) an expression fails on is handled per
//! `on_error`: skipped, written to the errors topic as `{"error", "step", "stage", "record"}`,
//! or returned as [`ProcessError::Stopped`]. A stopped task may have applied part of the record;
//! it refuses further calls and must be rebuilt from the changelog (the runtime aborts the
//! transaction anyway).

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use jaq_json::Val;

use crate::aggregate::{AggKind, RunningAgg, WindowAgg};
use crate::expr::Program;
use crate::join::{Side, StreamJoin};
use crate::spec::{Format, Join, JoinKind, OnError, Pos, Sink, StageOutput, Step, TransformSpec};
use crate::state;
use crate::value::{self, int, object, Key, Origin};

/// Record headers, in order, duplicates allowed (as Kafka has them).
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// The header a repartition record carries when its key is JSON rather than a string.
pub const KEY_JSON_HEADER: &str = "__sluice-key-json";

/// A record read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Headers,
    pub timestamp: i64,
    pub partition: i32,
    pub offset: i64,
}

/// A record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    pub headers: Headers,
    /// The partition, or None for the runtime to choose with Kafka's murmur2 of the key
    /// (round-robin without a key). The task never chooses: it is always None.
    pub partition: Option<i32>,
}

/// A changelog record: key and value (None is a tombstone).
pub type ChangelogEntry = (Vec<u8>, Option<Vec<u8>>);

/// What processing produced: records to write and entries to append to the stage's changelog
/// topic, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub records: Vec<OutRecord>,
    pub changelog: Vec<ChangelogEntry>,
}

impl Output {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.changelog.is_empty()
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.changelog.clear();
    }
}

/// Counters since the task was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// Records given to [`StageTask::process`].
    pub records_in: u64,
    /// Records written (outputs, repartition, late and errors topics).
    pub records_out: u64,
    /// Records too late for their windows or join (sent to `late` or dropped).
    pub late: u64,
    /// Late records dropped (no `late` topic, or a join).
    pub late_dropped: u64,
    /// Records dropped by `on_error: skip`.
    pub skipped: u64,
    /// Records written to the errors topic.
    pub dead_lettered: u64,
    /// Results no `route` branch matched.
    pub unrouted: u64,
}

/// Why a task cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("transform `{name}` has {stages} stage(s); there is no stage {stage}")]
    NoSuchStage {
        name: String,
        stage: usize,
        stages: usize,
    },
    #[error("{0}")]
    Compile(String),
}

/// Why processing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// An expression failed and `on_error` is `stop`.
    #[error("{step}: {reason} (partition {partition}, offset {offset}; on_error: stop)")]
    Stopped {
        step: String,
        reason: String,
        partition: i32,
        offset: i64,
    },
    /// The task stopped earlier; build a new one and restore it from the changelog.
    #[error("the task stopped on an earlier record; rebuild it from its changelog")]
    Poisoned,
    /// A [`Side::Right`] record for a stage without a stream-stream join.
    #[error("stage {stage} has no stream-stream join; it takes no Side::Right records")]
    UnexpectedSide { stage: usize },
}

/// A changelog entry the task does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("changelog key {key:?} belongs to no state of stage {stage}")]
    UnknownKey { key: Vec<u8>, stage: usize },
    #[error("changelog entry {key:?}: {reason}")]
    BadEntry { key: Vec<u8>, reason: String },
}

/// A record inside a stage.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) key: Key,
    pub(crate) value: Val,
    pub(crate) ts: i64,
    pub(crate) headers: Arc<Headers>,
}

enum Op {
    Map(Program),
    Filter(Program),
    FlatMap(Program),
    KeyBy(Program),
    Table {
        table: String,
        on: Program,
        kind: JoinKind,
        format: Format,
    },
    Stream {
        join: StreamJoin,
        on: Program,
    },
    Window {
        agg: WindowAgg,
        kind: AggKind,
        expr: Option<Program>,
    },
    Running {
        agg: RunningAgg,
        kind: AggKind,
        expr: Option<Program>,
    },
}

struct Slot {
    op: Op,
    /// `steps[i] (kind, line L)`, for errors.
    label: String,
}

enum SinkPlan {
    Repartition(String),
    Outputs(Vec<(String, Format)>),
    /// (when, topic, format, label)
    Route(Vec<(Program, String, Format, String)>),
}

/// The record being processed, for `$record` and dead letters.
struct RecCtx<'a> {
    rec: &'a Record,
    topic: Arc<str>,
    key: Val,
    value: Val,
    record_var: OnceCell<Val>,
    /// Items of this record that reached the stream join so far.
    seq: u32,
}

impl RecCtx<'_> {
    /// `$record` for `p` (null when `p` does not use it).
    fn var(&self, p: &Program) -> Val {
        if !p.uses_record {
            return Val::Null;
        }
        self.record_var
            .get_or_init(|| {
                let mut headers = value::object([]);
                for (k, v) in &self.rec.headers {
                    let v = v
                        .as_deref()
                        .map_or(Val::Null, |b| value::string(&String::from_utf8_lossy(b)));
                    headers = match headers {
                        Val::Obj(mut o) => {
                            Arc::make_mut(&mut o).insert(value::string(k), v);
                            Val::Obj(o)
                        }
                        other => other,
                    };
                }
                object([
                    ("key", self.key.clone()),
                    ("value", self.value.clone()),
                    ("headers", headers),
                    ("timestamp", int(self.rec.timestamp)),
                    ("partition", int(i64::from(self.rec.partition))),
                    ("offset", int(self.rec.offset)),
                ])
            })
            .clone()
    }
}

fn label(i: usize, step: &Step, pos: Option<Pos>) -> String {
    match pos {
        Some(p) => format!("steps[{i}] ({}, line {})", step.name(), p.line),
        None => format!("steps[{i}] ({})", step.name()),
    }
}

fn compile(p: &crate::spec::Expr) -> Result<Program, TaskError> {
    Program::compile(p.source()).map_err(TaskError::Compile)
}

/// One stage of a transform for one input partition. It owns its state.
pub struct StageTask {
    stage: usize,
    partition: i32,
    input_topic: Arc<str>,
    input_format: Format,
    stream_topic: Arc<str>,
    stream_format: Format,
    time: Option<Program>,
    slots: Vec<Slot>,
    /// Index of the stateful slot, if any.
    stateful: Option<usize>,
    sink: SinkPlan,
    on_error: OnError,
    errors_topic: Option<String>,
    watermark: i64,
    /// Whether record event times move the watermark (else only [`StageTask::advance_watermark`]).
    records_drive_watermark: bool,
    tables: HashMap<String, HashMap<Vec<u8>, Vec<u8>>>,
    metrics: TaskMetrics,
    poisoned: bool,
}

impl std::fmt::Debug for StageTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageTask")
            .field("stage", &self.stage)
            .field("partition", &self.partition)
            .field("input_topic", &self.input_topic)
            .field("watermark", &self.watermark)
            .field("state_len", &self.state_len())
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl StageTask {
    /// The task of stage `stage` (see [`TransformSpec::stages`]) for input partition
    /// `partition`, with empty state.
    pub fn new(spec: &TransformSpec, stage: usize, partition: i32) -> Result<Self, TaskError> {
        let range = spec
            .stage_range(stage)
            .ok_or_else(|| TaskError::NoSuchStage {
                name: spec.name.clone(),
                stage,
                stages: spec.stage_count(),
            })?;
        let plan = spec
            .stages()
            .into_iter()
            .nth(stage)
            .ok_or_else(|| TaskError::NoSuchStage {
                name: spec.name.clone(),
                stage,
                stages: spec.stage_count(),
            })?;
        let steps = spec.steps();
        let mut slots = Vec::new();
        let mut stateful = None;
        let mut stream_format = Format::Json;
        let mut i = range.start;
        while i < range.end {
            let step = &steps[i];
            let lbl = label(i, step, spec.step_pos(i));
            let op = match step {
                Step::Map(e) => Op::Map(compile(e)?),
                Step::Filter(e) => Op::Filter(compile(e)?),
                Step::FlatMap(e) => Op::FlatMap(compile(e)?),
                Step::KeyBy(e) => Op::KeyBy(compile(e)?),
                Step::Join(Join::Table {
                    table,
                    on,
                    kind,
                    format,
                }) => Op::Table {
                    table: table.clone(),
                    on: compile(on)?,
                    kind: *kind,
                    format: *format,
                },
                Step::Join(Join::Stream {
                    on,
                    within_ms,
                    grace_ms,
                    format,
                    ..
                }) => {
                    stream_format = *format;
                    stateful = Some(slots.len());
                    Op::Stream {
                        join: StreamJoin::new(*within_ms, *grace_ms),
                        on: compile(on)?,
                    }
                }
                Step::Window(w) => {
                    // Validation put an aggregate right after every window.
                    let Some(Step::Aggregate(a)) = steps.get(i + 1) else {
                        return Err(TaskError::Compile(format!(
                            "{lbl}: window without aggregate"
                        )));
                    };
                    i += 1;
                    stateful = Some(slots.len());
                    let kind = AggKind::of(a);
                    Op::Window {
                        agg: WindowAgg::new(
                            w.kind,
                            w.grace_ms,
                            w.late_topic.clone(),
                            kind,
                            spec.emit(),
                        ),
                        kind,
                        expr: a.expr().map(compile).transpose()?,
                    }
                }
                Step::Aggregate(a) => {
                    stateful = Some(slots.len());
                    let kind = AggKind::of(a);
                    Op::Running {
                        agg: RunningAgg::new(kind),
                        kind,
                        expr: a.expr().map(compile).transpose()?,
                    }
                }
            };
            slots.push(Slot { op, label: lbl });
            i += 1;
        }
        let sink = match (&plan.output, spec.sink()) {
            (StageOutput::Repartition(t), _) => SinkPlan::Repartition(t.clone()),
            (StageOutput::Sink, Sink::Outputs(outs)) => {
                SinkPlan::Outputs(outs.iter().map(|o| (o.topic.clone(), o.format)).collect())
            }
            (StageOutput::Sink, Sink::Route(routes)) => SinkPlan::Route(
                routes
                    .iter()
                    .enumerate()
                    .map(|(n, r)| {
                        let lbl = match r.when.pos() {
                            Some(p) => format!("route[{n}] (line {})", p.line),
                            None => format!("route[{n}]"),
                        };
                        Ok((compile(&r.when)?, r.topic.clone(), r.format, lbl))
                    })
                    .collect::<Result<_, TaskError>>()?,
            ),
        };
        let time = if stage == 0 {
            spec.input.time.as_ref().map(compile).transpose()?
        } else {
            None
        };
        Ok(Self {
            stage,
            partition,
            input_topic: plan.input_topic.into(),
            input_format: plan.input_format,
            stream_topic: plan.stream_join.unwrap_or_default().into(),
            stream_format,
            time,
            slots,
            stateful,
            sink,
            on_error: spec.on_error,
            errors_topic: spec.errors_topic.clone(),
            watermark: i64::MIN,
            records_drive_watermark: true,
            tables: plan
                .tables
                .into_iter()
                .map(|t| (t, HashMap::new()))
                .collect(),
            metrics: TaskMetrics::default(),
            poisoned: false,
        })
    }

    pub fn stage(&self) -> usize {
        self.stage
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The largest event time seen (`i64::MIN` before any record); only stateful stages keep it.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Whether the stage keeps state (windows, running aggregates, join buffers).
    pub fn is_stateful(&self) -> bool {
        self.stateful.is_some()
    }

    /// The event time below which this stage emits nothing more: its watermark held back by
    /// its windows' grace (and session gap) or its stream join's reach. What a runtime passes
    /// to the next stage as this stage's watermark, so that results emitted later are not late
    /// there. `None` for a stateless stage (its outputs keep their input's times) or before
    /// the first watermark.
    pub fn output_watermark(&self) -> Option<i64> {
        self.stateful?;
        if self.watermark == i64::MIN {
            return None;
        }
        let holdback = self
            .slots
            .iter()
            .map(|s| match &s.op {
                Op::Window { agg, .. } => agg.holdback(),
                Op::Stream { join, .. } => join.holdback(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        Some(self.watermark.saturating_sub(holdback))
    }

    pub fn metrics(&self) -> &TaskMetrics {
        &self.metrics
    }

    /// State entries (windows, running aggregates, buffered join records, and the watermark
    /// once set): what the changelog holds after compaction.
    pub fn state_len(&self) -> usize {
        let ops: usize = self
            .slots
            .iter()
            .map(|s| match &s.op {
                Op::Window { agg, .. } => agg.len(),
                Op::Running { agg, .. } => agg.len(),
                Op::Stream { join, .. } => join.len(),
                _ => 0,
            })
            .sum();
        ops + usize::from(self.stateful.is_some() && self.watermark != i64::MIN)
    }

    /// Keys held for stream-table joins.
    pub fn table_len(&self) -> usize {
        self.tables.values().map(HashMap::len).sum()
    }

    /// Replays one changelog entry of this task (restore after restart). Later entries win;
    /// None deletes.
    pub fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RestoreError> {
        let bad = |reason: String| RestoreError::BadEntry {
            key: key.to_vec(),
            reason,
        };
        let unknown = || RestoreError::UnknownKey {
            key: key.to_vec(),
            stage: self.stage,
        };
        let tag = key.first().copied();
        if tag == Some(state::TAG_WATERMARK) && key == state::WATERMARK_KEY {
            if self.stateful.is_none() {
                return Err(unknown());
            }
            self.watermark = match value {
                None => i64::MIN,
                Some(v) => value::parse_json(v)
                    .ok()
                    .as_ref()
                    .and_then(value::as_i64)
                    .ok_or_else(|| bad("the watermark is not an integer".into()))?,
            };
            return Ok(());
        }
        let Some(slot) = self.stateful.and_then(|i| self.slots.get_mut(i)) else {
            return Err(unknown());
        };
        match (&mut slot.op, tag) {
            (Op::Window { agg, .. }, Some(state::TAG_WINDOW)) => agg.restore(key, value),
            (Op::Running { agg, .. }, Some(state::TAG_RUNNING)) => agg.restore(key, value),
            (Op::Stream { join, .. }, Some(state::TAG_JOIN)) => join.restore(key, value),
            _ => return Err(unknown()),
        }
        .map_err(bad)
    }

    /// A record of the table topic `table` (latest value per key wins; None deletes). Tables this
    /// stage does not join are ignored.
    pub fn table_update(&mut self, table: &str, key: &[u8], value: Option<&[u8]>) {
        if let Some(t) = self.tables.get_mut(table) {
            match value {
                Some(v) => {
                    t.insert(key.to_vec(), v.to_vec());
                }
                None => {
                    t.remove(key);
                }
            }
        }
    }

    /// Processes one record from the stage's input ([`Side::Left`]) or, for a stream-stream
    /// join, from the other stream ([`Side::Right`], same partition number). Outputs and
    /// changelog entries are appended to `out`.
    pub fn process(
        &mut self,
        side: Side,
        rec: &Record,
        out: &mut Output,
    ) -> Result<(), ProcessError> {
        if self.poisoned {
            return Err(ProcessError::Poisoned);
        }
        if side == Side::Right && !matches!(self.stateful_op(), Some(Op::Stream { .. })) {
            return Err(ProcessError::UnexpectedSide { stage: self.stage });
        }
        self.metrics.records_in += 1;
        let result = match side {
            Side::Left => self.process_left(rec, out),
            Side::Right => self.process_right(rec, out),
        };
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Whether record event times move the watermark (the default). A runtime that derives
    /// the watermark itself (say, the smallest of the upstream partitions' watermarks for a
    /// stage reading a repartition topic) turns this off and calls
    /// [`StageTask::advance_watermark`]; lateness is then judged against that watermark.
    /// Determinism then also needs the same `advance_watermark` calls, at the same places among
    /// the records, after a restart.
    pub fn set_watermark_from_records(&mut self, enabled: bool) {
        self.records_drive_watermark = enabled;
    }

    /// Moves the watermark to `ts` if it is later, recording it in the changelog, then closes
    /// the windows (`emit: final` results go through the remaining steps) and expires the join
    /// buffers it passes. Does nothing in a stateless stage. For `$record` and dead letters the
    /// results are attributed to a record without key or value, stamped `ts`, at offset -1.
    pub fn advance_watermark(&mut self, ts: i64, out: &mut Output) -> Result<(), ProcessError> {
        if self.poisoned {
            return Err(ProcessError::Poisoned);
        }
        if self.stateful.is_none() || ts <= self.watermark {
            return Ok(());
        }
        self.advance(ts, out);
        let tick = Record {
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: ts,
            partition: self.partition,
            offset: -1,
        };
        let mut ctx = RecCtx {
            rec: &tick,
            topic: self.input_topic.clone(),
            key: Val::Null,
            value: Val::Null,
            record_var: OnceCell::new(),
            seq: 0,
        };
        let result = self.after_record(&mut ctx, out);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn stateful_op(&self) -> Option<&Op> {
        self.stateful.and_then(|i| self.slots.get(i)).map(|s| &s.op)
    }

    fn process_left(&mut self, rec: &Record, out: &mut Output) -> Result<(), ProcessError> {
        let mut headers = rec.headers.clone();
        let key = if self.stage > 0 && headers.iter().any(|(k, _)| k == KEY_JSON_HEADER) {
            headers.retain(|(k, _)| k != KEY_JSON_HEADER);
            rec.key.as_deref().map(Key::from_json_bytes).transpose()
        } else {
            Ok(Some(Key::raw(rec.key.as_deref())))
        };
        let mut ctx = RecCtx {
            rec,
            topic: self.input_topic.clone(),
            key: Val::Null,
            value: Val::Null,
            record_var: OnceCell::new(),
            seq: 0,
        };
        let key = match key {
            Ok(k) => k.unwrap_or_else(|| Key::raw(None)),
            Err(reason) => return self.fail("input key", reason, &ctx, out),
        };
        ctx.key = key.json.clone();
        let origin = if self.stage == 0 {
            Origin::External
        } else {
            Origin::Internal
        };
        ctx.value = match value::decode(self.input_format, rec.value.as_deref(), origin) {
            Ok(v) => v,
            Err(reason) => return self.fail("input", reason, &ctx, out),
        };
        let ts = match &self.time {
            None => rec.timestamp,
            Some(p) => {
                let t = p
                    .one(ctx.value.clone(), &ctx.var(p), "input `time`")
                    .and_then(|v| {
                        value::as_i64(&v).ok_or_else(|| {
                            format!(
                                "input `time` must be a number of ms, got {}",
                                value::type_name(&v)
                            )
                        })
                    });
                match t {
                    Ok(t) => t,
                    Err(reason) => return self.fail("input `time`", reason, &ctx, out),
                }
            }
        };
        if self.records_drive_watermark {
            self.advance(ts, out);
        }
        let item = Item {
            key,
            value: ctx.value.clone(),
            ts,
            headers: Arc::new(headers),
        };
        self.run(0, vec![item], &mut ctx, out)?;
        self.after_record(&mut ctx, out)
    }

    fn process_right(&mut self, rec: &Record, out: &mut Output) -> Result<(), ProcessError> {
        let Some(i) = self.stateful else {
            return Err(ProcessError::UnexpectedSide { stage: self.stage });
        };
        let lbl = self.slots[i].label.clone();
        let mut ctx = RecCtx {
            rec,
            topic: self.stream_topic.clone(),
            key: Key::raw(rec.key.as_deref()).json,
            value: Val::Null,
            record_var: OnceCell::new(),
            seq: 0,
        };
        ctx.value = match value::decode(self.stream_format, rec.value.as_deref(), Origin::External)
        {
            Ok(v) => v,
            Err(reason) => return self.fail(&lbl, reason, &ctx, out),
        };
        if self.records_drive_watermark {
            self.advance(rec.timestamp, out);
        }
        let item = Item {
            key: Key::raw(rec.key.as_deref()),
            value: ctx.value.clone(),
            ts: rec.timestamp,
            headers: Arc::new(rec.headers.clone()),
        };
        let on = match &self.slots[i].op {
            Op::Stream { on, .. } => on.one(ctx.value.clone(), &ctx.var(on), "join `on`"),
            _ => return Err(ProcessError::UnexpectedSide { stage: self.stage }),
        };
        let on = match on {
            Ok(on) => on,
            Err(reason) => return self.fail(&lbl, reason, &ctx, out),
        };
        let watermark = self.watermark;
        let Self { slots, metrics, .. } = self;
        let joined = match &mut slots[i].op {
            Op::Stream { join, .. } => join.add(
                Side::Right,
                on,
                item,
                rec.offset,
                0,
                watermark,
                out,
                metrics,
            ),
            _ => Vec::new(),
        };
        self.run(i + 1, joined, &mut ctx, out)?;
        self.after_record(&mut ctx, out)
    }

    fn advance(&mut self, ts: i64, out: &mut Output) {
        if self.stateful.is_some() && ts > self.watermark {
            self.watermark = ts;
            out.changelog.push((
                state::WATERMARK_KEY.to_vec(),
                Some(ts.to_string().into_bytes()),
            ));
        }
    }

    /// Closes windows and expires join buffers up to the watermark.
    fn after_record(&mut self, ctx: &mut RecCtx<'_>, out: &mut Output) -> Result<(), ProcessError> {
        let Some(i) = self.stateful else {
            return Ok(());
        };
        let watermark = self.watermark;
        let closed = match &mut self.slots[i].op {
            Op::Window { agg, .. } => agg.close(watermark, out),
            Op::Stream { join, .. } => {
                join.expire(watermark, out);
                Vec::new()
            }
            _ => Vec::new(),
        };
        self.run(i + 1, closed, ctx, out)
    }

    /// Runs `items` through the steps from `start` on, then to the sink.
    fn run(
        &mut self,
        start: usize,
        mut items: Vec<Item>,
        ctx: &mut RecCtx<'_>,
        out: &mut Output,
    ) -> Result<(), ProcessError> {
        for i in start..self.slots.len() {
            if items.is_empty() {
                return Ok(());
            }
            let mut next = Vec::with_capacity(items.len());
            for item in items {
                if let Err(reason) = self.apply(i, item, ctx, out, &mut next) {
                    let lbl = self.slots[i].label.clone();
                    self.fail(&lbl, reason, ctx, out)?;
                }
            }
            items = next;
        }
        for item in items {
            self.sink(item, ctx, out)?;
        }
        Ok(())
    }

    /// Applies step `i` to one item, pushing its results to `next`.
    fn apply(
        &mut self,
        i: usize,
        item: Item,
        ctx: &mut RecCtx<'_>,
        out: &mut Output,
        next: &mut Vec<Item>,
    ) -> Result<(), String> {
        let watermark = self.watermark;
        let Self {
            slots,
            metrics,
            tables,
            ..
        } = self;
        match &mut slots[i].op {
            Op::Map(p) => {
                let value = p.one(item.value.clone(), &ctx.var(p), "map")?;
                next.push(Item { value, ..item });
            }
            Op::Filter(p) => {
                if p.truthy(item.value.clone(), &ctx.var(p))? {
                    next.push(item);
                }
            }
            Op::FlatMap(p) => {
                let values = p.all(item.value.clone(), &ctx.var(p))?;
                next.extend(values.into_iter().map(|value| Item {
                    key: item.key.clone(),
                    value,
                    ts: item.ts,
                    headers: item.headers.clone(),
                }));
            }
            Op::KeyBy(p) => {
                let k = p.one(item.value.clone(), &ctx.var(p), "key_by")?;
                let key = Key::from_val(k).map_err(|e| format!("key_by: {e}"))?;
                next.push(Item { key, ..item });
            }
            Op::Table {
                table,
                on,
                kind,
                format,
            } => {
                let on = on.one(item.value.clone(), &ctx.var(on), "join `on`")?;
                let found = Key::from_val(on).ok().and_then(|k| {
                    tables
                        .get(table.as_str())
                        .and_then(|t| t.get(k.group_bytes()))
                });
                let right = match found {
                    Some(bytes) => Some(
                        value::decode(*format, Some(bytes), Origin::External)
                            .map_err(|e| format!("table `{table}`: {e}"))?,
                    ),
                    None => None,
                };
                if right.is_some() || *kind == JoinKind::Left {
                    let value = object([
                        ("left", item.value.clone()),
                        ("right", right.unwrap_or(Val::Null)),
                    ]);
                    next.push(Item { value, ..item });
                }
            }
            Op::Stream { join, on } => {
                let on = on.one(item.value.clone(), &ctx.var(on), "join `on`")?;
                let seq = ctx.seq;
                ctx.seq = ctx.seq.saturating_add(1);
                next.extend(join.add(
                    Side::Left,
                    on,
                    item,
                    ctx.rec.offset,
                    seq,
                    watermark,
                    out,
                    metrics,
                ));
            }
            Op::Window { agg, kind, expr } => {
                let v = match expr {
                    Some(p) => p.one(item.value.clone(), &ctx.var(p), "aggregate")?,
                    None => Val::Null,
                };
                kind.check(&v)?;
                next.extend(agg.add(item, &v, watermark, out, metrics));
            }
            Op::Running { agg, kind, expr } => {
                let v = match expr {
                    Some(p) => p.one(item.value.clone(), &ctx.var(p), "aggregate")?,
                    None => Val::Null,
                };
                kind.check(&v)?;
                next.push(agg.add(item, &v, out));
            }
        }
        Ok(())
    }

    /// Writes a result to the next stage or the outputs.
    fn sink(&mut self, item: Item, ctx: &RecCtx<'_>, out: &mut Output) -> Result<(), ProcessError> {
        let record = |topic: &str, value: Option<Vec<u8>>, headers: Headers| OutRecord {
            topic: topic.to_string(),
            key: item.key.bytes.clone(),
            value,
            timestamp: item.ts,
            headers,
            partition: None,
        };
        let mut failures: Vec<(String, String)> = Vec::new();
        match &self.sink {
            SinkPlan::Repartition(topic) => {
                let mut headers = item.headers.to_vec();
                if item.key.is_json {
                    headers.push((KEY_JSON_HEADER.to_string(), Some(b"1".to_vec())));
                }
                let value = value::encode(Format::Json, &item.value).unwrap_or(None);
                out.records.push(record(topic, value, headers));
                self.metrics.records_out += 1;
            }
            SinkPlan::Outputs(outs) => {
                for (topic, format) in outs {
                    match value::encode(*format, &item.value) {
                        Ok(value) => {
                            out.records
                                .push(record(topic, value, item.headers.to_vec()));
                            self.metrics.records_out += 1;
                        }
                        Err(reason) => failures.push((format!("output `{topic}`"), reason)),
                    }
                }
            }
            SinkPlan::Route(routes) => {
                let mut routed = false;
                for (when, topic, format, lbl) in routes {
                    match when.truthy(item.value.clone(), &ctx.var(when)) {
                        Ok(false) => continue,
                        Ok(true) => match value::encode(*format, &item.value) {
                            Ok(value) => {
                                out.records
                                    .push(record(topic, value, item.headers.to_vec()));
                                self.metrics.records_out += 1;
                            }
                            Err(reason) => failures.push((format!("{lbl} `{topic}`"), reason)),
                        },
                        Err(reason) => failures.push((lbl.clone(), reason)),
                    }
                    routed = true;
                    break;
                }
                if !routed {
                    self.metrics.unrouted += 1;
                }
            }
        }
        for (lbl, reason) in failures {
            self.fail(&lbl, reason, ctx, out)?;
        }
        Ok(())
    }

    /// Handles a failed record per `on_error`.
    fn fail(
        &mut self,
        step: &str,
        reason: String,
        ctx: &RecCtx<'_>,
        out: &mut Output,
    ) -> Result<(), ProcessError> {
        match (self.on_error, &self.errors_topic) {
            (OnError::Skip, _) => {
                self.metrics.skipped += 1;
                Ok(())
            }
            (OnError::DeadLetter, Some(topic)) => {
                let rec = ctx.rec;
                let mut fields = vec![
                    ("topic", value::string(&ctx.topic)),
                    ("partition", int(i64::from(rec.partition))),
                    ("offset", int(rec.offset)),
                    ("timestamp", int(rec.timestamp)),
                ];
                for (name, b64_name, bytes) in [
                    ("key", "key_base64", rec.key.as_deref()),
                    ("value", "value_base64", rec.value.as_deref()),
                ] {
                    match bytes.map(std::str::from_utf8) {
                        None => fields.push((name, Val::Null)),
                        Some(Ok(s)) => fields.push((name, value::string(s))),
                        Some(Err(_)) => fields.push((
                            b64_name,
                            Val::from(value::b64_encode(bytes.unwrap_or_default())),
                        )),
                    }
                }
                let dead = object([
                    ("error", value::string(&reason)),
                    ("step", value::string(step)),
                    ("stage", int(self.stage as i64)),
                    ("record", object(fields)),
                ]);
                out.records.push(OutRecord {
                    topic: topic.clone(),
                    key: rec.key.clone(),
                    value: Some(value::to_json(&dead)),
                    timestamp: rec.timestamp,
                    headers: rec.headers.clone(),
                    partition: None,
                });
                self.metrics.dead_lettered += 1;
                self.metrics.records_out += 1;
                Ok(())
            }
            _ => Err(ProcessError::Stopped {
                step: step.to_string(),
                reason,
                partition: ctx.rec.partition,
                offset: ctx.rec.offset,
            }),
        }
    }
}
