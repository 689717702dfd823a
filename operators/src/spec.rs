//! What a transform is: [`TransformSpec`], its steps, and the plan derived from it (topics,
//! stages).
//!
//! A spec comes from YAML ([`crate::parse_spec`]) or from the builder ([`crate::Pipeline`]);
//! both produce a draft that [`validate`] checks as a whole (expressions compile, stateful steps
//! have a key, `emit` fits the windows, ...) and splits into stages. Problems are reported with
//! the line and column of the YAML node at fault; a spec built in code has no positions and its
//! errors name the step instead (`steps[3] (aggregate): ...`).

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use crate::expr::Program;

/// Prefix of every internal topic of a transform.
pub const INTERNAL_TOPIC_PREFIX: &str = "__sluice-transform-";

/// Most windows a hopping window may put one record in (`size / advance`).
pub const MAX_HOPPING_WINDOWS: u64 = 1_000;

/// Longest transform name: its internal topics must stay within Kafka's 249 characters.
pub const MAX_NAME_LEN: usize = 200;

/// A place in the YAML source: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A spec that cannot run, with the place in the YAML source when there is one.
///
/// Displays as `line L, column C: message`, or just the message for specs built in code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pos: Option<Pos>,
    message: String,
}

impl SpecError {
    pub(crate) fn at(pos: Option<Pos>, message: String) -> Self {
        Self { pos, message }
    }

    /// Where in the YAML source, if the spec came from YAML.
    pub fn pos(&self) -> Option<Pos> {
        self.pos
    }

    /// The 1-based line, if the spec came from YAML.
    pub fn line(&self) -> Option<usize> {
        self.pos.map(|p| p.line)
    }

    /// What is wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "line {}, column {}: {}", p.line, p.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SpecError {}

/// How record values are read into expressions and written out.
///
/// - `text`: the value is UTF-8 text, seen as a JSON string (invalid UTF-8 is an error). On
///   output a string is written as its bytes, anything else as JSON.
/// - `json`: the value is one JSON document. On output, the value's JSON.
/// - `bytes`: any bytes, seen as their standard base64 (padded) string, so nothing is lost;
///   `@base64d` decodes them in an expression. On output a string is base64-decoded (not
///   base64 is an error).
///
/// In every format a null record value (a tombstone) is `null`, and `null` is written as a
/// tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Text,
    Json,
    Bytes,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Bytes => "bytes",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            "bytes" => Some(Format::Bytes),
            _ => None,
        }
    }
}

/// When an aggregate emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Emit {
    /// Once per window, when the watermark passes the window's end plus its grace.
    Final,
    /// The updated aggregate after every record.
    Changes,
}

impl Emit {
    pub fn as_str(self) -> &'static str {
        match self {
            Emit::Final => "final",
            Emit::Changes => "changes",
        }
    }
}

/// What happens to a record an expression cannot handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnError {
    /// Drop it (counted in [`crate::TaskMetrics::skipped`]).
    Skip,
    /// Write it to the `errors` topic with the reason.
    DeadLetter,
    /// Fail the task: [`crate::StageTask::process`] returns an error.
    Stop,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Skip => "skip",
            OnError::DeadLetter => "dead_letter",
            OnError::Stop => "stop",
        }
    }
}

/// Stream-table join kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinKind {
    /// Records without a table value are dropped.
    Inner,
    /// Records without a table value are kept, with `"right": null`.
    Left,
}

/// A jq expression, kept as source; it is compiled when the spec is validated and again by each
/// task. Expressions are equal when their sources are (positions are not compared).
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    pos: Option<Pos>,
}

impl Expr {
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            pos: None,
        }
    }

    pub(crate) fn at(source: String, pos: Pos) -> Self {
        Self {
            source,
            pos: Some(pos),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the expression starts in the YAML source.
    pub fn pos(&self) -> Option<Pos> {
        self.pos
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Expr {}

impl From<&str> for Expr {
    fn from(s: &str) -> Self {
        Expr::new(s)
    }
}

/// The topic a transform reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub topic: String,
    pub format: Format,
    /// Event time in ms from the value (`time:`); the record timestamp when absent.
    pub time: Option<Expr>,
}

/// Window shapes, in ms. Windows are aligned to the epoch and include their start, not their end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// `[k*size, (k+1)*size)`: each record in exactly one window.
    Tumbling { size_ms: u64 },
    /// Windows of `size_ms` starting every `advance_ms` (`advance <= size`): each record in
    /// `ceil(size/advance)` windows or so.
    Hopping { size_ms: u64, advance_ms: u64 },
    /// Per key, records closer than `gap_ms` to each other form one window, from the first
    /// record's time to the last one's plus 1 ms.
    Session { gap_ms: u64 },
}

/// A `window` step: groups the following `aggregate` by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub kind: WindowKind,
    /// How long after its end a window still accepts out-of-order records.
    pub grace_ms: u64,
    /// Where records arriving after their windows closed go; dropped (and counted) when None.
    pub late_topic: Option<String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Window {
    pub fn tumbling(size: Duration) -> Self {
        Self::of(WindowKind::Tumbling { size_ms: ms(size) })
    }

    pub fn hopping(size: Duration, advance: Duration) -> Self {
        Self::of(WindowKind::Hopping {
            size_ms: ms(size),
            advance_ms: ms(advance),
        })
    }

    pub fn session(gap: Duration) -> Self {
        Self::of(WindowKind::Session { gap_ms: ms(gap) })
    }

    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = ms(grace);
        self
    }

    pub fn late(mut self, topic: impl Into<String>) -> Self {
        self.late_topic = Some(topic.into());
        self
    }

    fn of(kind: WindowKind) -> Self {
        Self {
            kind,
            grace_ms: 0,
            late_topic: None,
        }
    }
}

/// An `aggregate` step. `sum`/`avg` need numbers; `min`/`max` compare any JSON values with
/// jq's ordering. `null` results of the expression are ignored (not counted by `avg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Sum(Expr),
    Min(Expr),
    Max(Expr),
    Avg(Expr),
}

impl Aggregate {
    pub fn sum(expr: &str) -> Self {
        Aggregate::Sum(Expr::new(expr))
    }

    pub fn min(expr: &str) -> Self {
        Aggregate::Min(Expr::new(expr))
    }

    pub fn max(expr: &str) -> Self {
        Aggregate::Max(Expr::new(expr))
    }

    pub fn avg(expr: &str) -> Self {
        Aggregate::Avg(Expr::new(expr))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum(_) => "sum",
            Aggregate::Min(_) => "min",
            Aggregate::Max(_) => "max",
            Aggregate::Avg(_) => "avg",
        }
    }

    pub fn expr(&self) -> Option<&Expr> {
        match self {
            Aggregate::Count => None,
            Aggregate::Sum(e) | Aggregate::Min(e) | Aggregate::Max(e) | Aggregate::Avg(e) => {
                Some(e)
            }
        }
    }
}

/// A `join` step. The output value is `{"left": <record value>, "right": <other value>}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// With the latest value of a compacted topic whose record key equals `on`'s result
    /// (strings as their bytes, other values as JSON). The table is fed to each task with
    /// [`crate::StageTask::table_update`].
    Table {
        table: String,
        on: Expr,
        kind: JoinKind,
        /// How the table's values are read (`format:`, default json).
        format: Format,
    },
    /// With the records of another stream whose `on` result is equal and whose event time is
    /// at most `within_ms` apart. `on` is evaluated on both sides' values. The runtime feeds
    /// the other stream's partition with the same number as the task's input partition, so
    /// both must be partitioned alike by the `on` key (same key bytes, same partition count);
    /// after a `key_by`, that key should be the `on` key.
    Stream {
        stream: String,
        on: Expr,
        within_ms: u64,
        /// How long out-of-order records are still matched (`grace:`, default 0).
        grace_ms: u64,
        /// How the other stream's values are read (`format:`, default json).
        format: Format,
    },
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The value becomes the expression's (single) result.
    Map(Expr),
    /// Keeps the record when the expression's first result is truthy.
    Filter(Expr),
    /// One record per result of the expression.
    FlatMap(Expr),
    /// The key becomes the expression's (single) result.
    KeyBy(Expr),
    Window(Window),
    Aggregate(Aggregate),
    Join(Join),
}

impl Step {
    /// The YAML name of the step.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Map(_) => "map",
            Step::Filter(_) => "filter",
            Step::FlatMap(_) => "flat_map",
            Step::KeyBy(_) => "key_by",
            Step::Window(_) => "window",
            Step::Aggregate(_) => "aggregate",
            Step::Join(_) => "join",
        }
    }
}

/// A topic the results are written to (equality ignores the YAML position).
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub topic: String,
    pub format: Format,
    /// As written in the spec; [`TransformSpec::emit`] is the resolved mode.
    pub emit: Option<Emit>,
    pos: Option<Pos>,
    emit_pos: Option<Pos>,
}

impl PartialEq for OutputSpec {
    fn eq(&self, other: &Self) -> bool {
        (&self.topic, self.format, self.emit) == (&other.topic, other.format, other.emit)
    }
}

impl Eq for OutputSpec {}

impl OutputSpec {
    pub fn new(topic: impl Into<String>, format: Format) -> Self {
        Self {
            topic: topic.into(),
            format,
            emit: None,
            pos: None,
            emit_pos: None,
        }
    }

    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = Some(emit);
        self
    }

    pub(crate) fn with_pos(mut self, pos: Pos) -> Self {
        self.pos = Some(pos);
        self
    }

    pub(crate) fn with_emit_pos(mut self, pos: Pos) -> Self {
        self.emit_pos = Some(pos);
        self
    }
}

/// One branch of `route`: records for which `when` is truthy go to `topic` (first match wins).
/// Equality ignores the YAML position.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub when: Expr,
    pub topic: String,
    pub format: Format,
    pub emit: Option<Emit>,
    pos: Option<Pos>,
    emit_pos: Option<Pos>,
}

impl PartialEq for RouteSpec {
    fn eq(&self, other: &Self) -> bool {
        (&self.when, &self.topic, self.format, self.emit)
            == (&other.when, &other.topic, other.format, other.emit)
    }
}

impl Eq for RouteSpec {}

impl RouteSpec {
    pub fn new(when: &str, topic: impl Into<String>, format: Format) -> Self {
        Self {
            when: Expr::new(when),
            topic: topic.into(),
            format,
            emit: None,
            pos: None,
            emit_pos: None,
        }
    }

    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = Some(emit);
        self
    }

    pub(crate) fn with_pos(mut self, pos: Pos) -> Self {
        self.pos = Some(pos);
        self
    }

    pub(crate) fn with_emit_pos(mut self, pos: Pos) -> Self {
        self.emit_pos = Some(pos);
        self
    }
}

/// Where results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Every result to every topic.
    Outputs(Vec<OutputSpec>),
    /// Every result to the first branch that matches (none: dropped, counted as unrouted).
    Route(Vec<RouteSpec>),
}

/// A spec before validation; positions are None for specs built in code.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub(crate) name: String,
    pub(crate) name_pos: Option<Pos>,
    pub(crate) input: InputSpec,
    pub(crate) input_pos: Option<Pos>,
    pub(crate) steps: Vec<(Step, Option<Pos>)>,
    pub(crate) steps_pos: Option<Pos>,
    pub(crate) sink: Sink,
    pub(crate) sink_pos: Option<Pos>,
    pub(crate) errors_topic: Option<String>,
    pub(crate) errors_pos: Option<Pos>,
    pub(crate) on_error: Option<OnError>,
    pub(crate) on_error_pos: Option<Pos>,
    pub(crate) commit_interval_ms: u64,
    pub(crate) commit_pos: Option<Pos>,
    pub(crate) principal: Option<String>,
    pub(crate) exactly_once: bool,
}

/// A validated transform.
#[derive(Debug, Clone)]
pub struct TransformSpec {
    pub name: String,
    pub input: InputSpec,
    /// How often the runtime commits its transaction (`commit.interval.ms`, default 100).
    pub commit_interval_ms: u64,
    pub errors_topic: Option<String>,
    pub on_error: OnError,
    /// Who the transform acts as, for the runtime's ACL checks (`authorizer.enabled`).
    pub principal: Option<String>,
    /// `processing.guarantee`: `exactly_once` (the default: outputs, state and input offsets
    /// commit in one transaction) or `at_least_once` (outputs written as produced, offsets
    /// committed every interval after them: a crash repeats output; cheaper, and the negative
    /// control of the exactly-once tests), as Kafka Streams names them.
    pub exactly_once: bool,
    steps: Vec<Step>,
    step_pos: Vec<Option<Pos>>,
    sink: Sink,
    emit: Emit,
    stage_steps: Vec<Range<usize>>,
}

/// Every topic a transform touches, each list in spec order without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    pub input: String,
    /// Compacted topics of stream-table joins (read from the start).
    pub tables: Vec<String>,
    /// Other streams of stream-stream joins.
    pub streams: Vec<String>,
    /// Output and route topics.
    pub outputs: Vec<String>,
    pub late: Vec<String>,
    pub errors: Option<String>,
    /// `__sluice-transform-<name>-repartition-<n>`, written by stage n, read by stage n+1.
    pub repartition: Vec<String>,
    /// `__sluice-transform-<name>-changelog-<stage>`, one per stage with state (compacted).
    pub changelogs: Vec<String>,
}

impl TopicPlan {
    /// Topics the transform reads, internal ones included.
    pub fn reads(&self) -> Vec<&str> {
        let mut v = vec![self.input.as_str()];
        v.extend(self.tables.iter().map(String::as_str));
        v.extend(self.streams.iter().map(String::as_str));
        v.extend(self.repartition.iter().map(String::as_str));
        dedup(v)
    }

    /// Topics the transform writes, internal ones included.
    pub fn writes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.outputs.iter().map(String::as_str).collect();
        v.extend(self.late.iter().map(String::as_str));
        v.extend(self.errors.as_deref());
        v.extend(self.repartition.iter().map(String::as_str));
        v.extend(self.changelogs.iter().map(String::as_str));
        dedup(v)
    }
}

fn dedup(v: Vec<&str>) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(v.len());
    for t in v {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn push_unique(v: &mut Vec<String>, t: &str) {
    if !v.iter().any(|x| x == t) {
        v.push(t.to_string());
    }
}

/// Where a stage's results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutput {
    /// To this repartition topic, keyed by the new key, for the next stage.
    Repartition(String),
    /// To the transform's outputs (or route).
    Sink,
}

/// One stage of the pipeline: the steps between two repartitions. Stage 0 reads the input
/// topic; stage k > 0 reads repartition topic k - 1. One [`crate::StageTask`] runs per
/// partition of the topic a stage reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    pub index: usize,
    /// Read as [`crate::Side::Left`].
    pub input_topic: String,
    pub input_format: Format,
    /// The other stream of a stream-stream join in this stage, read as [`crate::Side::Right`]
    /// from the same partition number as `input_topic`.
    pub stream_join: Option<String>,
    /// Tables of stream-table joins in this stage, fed with [`crate::StageTask::table_update`].
    pub tables: Vec<String>,
    pub steps: Vec<Step>,
    pub output: StageOutput,
    /// Where the stage's state changes go; None for stateless stages.
    pub changelog_topic: Option<String>,
    /// Every topic the stage's outputs can name (repartition, outputs, late, errors).
    pub writes: Vec<String>,
}

impl TransformSpec {
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// The resolved emit mode: as given on the outputs, else `final` when there is a window and
    /// `changes` otherwise.
    pub fn emit(&self) -> Emit {
        self.emit
    }

    pub(crate) fn step_pos(&self, i: usize) -> Option<Pos> {
        self.step_pos.get(i).copied().flatten()
    }

    pub(crate) fn stage_range(&self, stage: usize) -> Option<Range<usize>> {
        self.stage_steps.get(stage).cloned()
    }

    pub fn stage_count(&self) -> usize {
        self.stage_steps.len()
    }

    pub fn repartition_topic(&self, n: usize) -> String {
        format!("{INTERNAL_TOPIC_PREFIX}{}-repartition-{n}", self.name)
    }

    pub fn changelog_topic(&self, stage: usize) -> String {
        format!("{INTERNAL_TOPIC_PREFIX}{}-changelog-{stage}", self.name)
    }

    fn stage_is_stateful(&self, stage: usize) -> bool {
        self.stage_range(stage).is_some_and(|r| {
            self.steps[r].iter().any(|s| {
                matches!(
                    s,
                    Step::Window(_) | Step::Aggregate(_) | Step::Join(Join::Stream { .. })
                )
            })
        })
    }

    fn sink_topics(&self) -> Vec<String> {
        let mut v = Vec::new();
        match &self.sink {
            Sink::Outputs(outs) => outs.iter().for_each(|o| push_unique(&mut v, &o.topic)),
            Sink::Route(routes) => routes.iter().for_each(|r| push_unique(&mut v, &r.topic)),
        }
        v
    }

    /// The topics the transform reads and writes.
    pub fn topics(&self) -> TopicPlan {
        let mut plan = TopicPlan {
            input: self.input.topic.clone(),
            tables: Vec::new(),
            streams: Vec::new(),
            outputs: self.sink_topics(),
            late: Vec::new(),
            errors: self.errors_topic.clone(),
            repartition: (0..self.stage_count().saturating_sub(1))
                .map(|n| self.repartition_topic(n))
                .collect(),
            changelogs: (0..self.stage_count())
                .filter(|&s| self.stage_is_stateful(s))
                .map(|s| self.changelog_topic(s))
                .collect(),
        };
        for step in &self.steps {
            match step {
                Step::Join(Join::Table { table, .. }) => push_unique(&mut plan.tables, table),
                Step::Join(Join::Stream { stream, .. }) => push_unique(&mut plan.streams, stream),
                Step::Window(Window {
                    late_topic: Some(t),
                    ..
                }) => push_unique(&mut plan.late, t),
                _ => {}
            }
        }
        plan
    }

    /// The pipeline split into stages at repartitions.
    pub fn stages(&self) -> Vec<StageSpec> {
        let n = self.stage_count();
        (0..n)
            .filter_map(|i| {
                let range = self.stage_range(i)?;
                let steps: Vec<Step> = self.steps[range].to_vec();
                let (input_topic, input_format) = if i == 0 {
                    (self.input.topic.clone(), self.input.format)
                } else {
                    (self.repartition_topic(i - 1), Format::Json)
                };
                let mut tables = Vec::new();
                let mut stream_join = None;
                let mut writes = Vec::new();
                for s in &steps {
                    match s {
                        Step::Join(Join::Table { table, .. }) => push_unique(&mut tables, table),
                        Step::Join(Join::Stream { stream, .. }) => {
                            stream_join = Some(stream.clone())
                        }
                        Step::Window(Window {
                            late_topic: Some(t),
                            ..
                        }) => push_unique(&mut writes, t),
                        _ => {}
                    }
                }
                let output = if i + 1 < n {
                    let t = self.repartition_topic(i);
                    push_unique(&mut writes, &t);
                    StageOutput::Repartition(t)
                } else {
                    for t in self.sink_topics() {
                        push_unique(&mut writes, &t);
                    }
                    StageOutput::Sink
                };
                if let Some(e) = &self.errors_topic {
                    push_unique(&mut writes, e);
                }
                Some(StageSpec {
                    index: i,
                    input_topic,
                    input_format,
                    stream_join,
                    tables,
                    steps,
                    output,
                    changelog_topic: self.stage_is_stateful(i).then(|| self.changelog_topic(i)),
                    writes,
                })
            })
            .collect()
    }
}

/// Label for a step in messages without a YAML position.
fn step_label(i: usize, step: &Step) -> String {
    format!("steps[{i}] ({})", step.name())
}

fn err(pos: Option<Pos>, label: &str, message: String) -> SpecError {
    if pos.is_some() || label.is_empty() {
        SpecError::at(pos, message)
    } else {
        SpecError::at(None, format!("{label}: {message}"))
    }
}

/// Checks a Kafka topic name.
pub(crate) fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("topic name is empty".into());
    }
    if topic == "." || topic == ".." {
        return Err(format!("`{topic}` is not a valid topic name"));
    }
    if topic.len() > 249 {
        return Err(format!(
            "topic name is {} characters long; Kafka allows 249",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic `{topic}` contains `{c}`; topic names use letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

fn check_expr(
    expr: &Expr,
    fallback: Option<Pos>,
    label: &str,
    what: &str,
) -> Result<(), SpecError> {
    Program::compile(expr.source()).map(|_| ()).map_err(|m| {
        err(
            expr.pos().or(fallback),
            label,
            format!(
                "{what} expression `{}` does not compile: {m}",
                expr.source()
            ),
        )
    })
}

/// Validates a draft and plans its stages.
pub(crate) fn validate(d: Draft) -> Result<TransformSpec, SpecError> {
    // Name.
    if d.name.is_empty() {
        return Err(err(
            d.name_pos,
            "name",
            "the transform name is empty".into(),
        ));
    }
    if d.name.len() > MAX_NAME_LEN {
        return Err(err(
            d.name_pos,
            "name",
            format!("the transform name is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    check_topic(&d.name).map_err(|m| {
        err(
            d.name_pos,
            "name",
            format!("the transform name must be usable in topic names: {m}"),
        )
    })?;

    // Input.
    check_topic(&d.input.topic).map_err(|m| err(d.input_pos, "input", m))?;
    if let Some(t) = &d.input.time {
        check_expr(t, d.input_pos, "input", "`time`")?;
    }

    // Steps.
    if d.steps.is_empty() {
        return Err(err(
            d.steps_pos,
            "steps",
            "`steps` is empty: a transform needs at least one step (`map: '.'` copies records)"
                .into(),
        ));
    }
    for (i, (step, pos)) in d.steps.iter().enumerate() {
        let label = step_label(i, step);
        match step {
            Step::Map(e) | Step::Filter(e) | Step::FlatMap(e) | Step::KeyBy(e) => {
                check_expr(e, *pos, &label, &format!("`{}`", step.name()))?
            }
            Step::Window(w) => {
                let positive = |v: u64, what: &str| {
                    if v == 0 {
                        Err(err(*pos, &label, format!("window {what} must be positive")))
                    } else {
                        Ok(())
                    }
                };
                match w.kind {
                    WindowKind::Tumbling { size_ms } => positive(size_ms, "size")?,
                    WindowKind::Hopping {
                        size_ms,
                        advance_ms,
                    } => {
                        positive(size_ms, "size")?;
                        positive(advance_ms, "advance")?;
                        let per_record = size_ms.div_ceil(advance_ms.max(1));
                        if per_record > MAX_HOPPING_WINDOWS {
                            return Err(err(
                                *pos,
                                &label,
                                format!(
                                    "hopping window puts each record in {per_record} windows (size / advance); at most {MAX_HOPPING_WINDOWS} are allowed"
                                ),
                            ));
                        }
                        if advance_ms > size_ms {
                            return Err(err(
                                *pos,
                                &label,
                                format!(
                                    "hopping window advance ({advance_ms} ms) is larger than its size ({size_ms} ms): records between windows would be lost"
                                ),
                            ));
                        }
                    }
                    WindowKind::Session { gap_ms } => positive(gap_ms, "gap")?,
                }
                if let Some(t) = &w.late_topic {
                    check_topic(t).map_err(|m| err(*pos, &label, format!("`late`: {m}")))?;
                }
            }
            Step::Aggregate(a) => {
                if let Some(e) = a.expr() {
                    check_expr(e, *pos, &label, &format!("`{}`", a.name()))?;
                }
            }
            Step::Join(j) => {
                let (topic, on) = match j {
                    Join::Table { table, on, .. } => (table, on),
                    Join::Stream { stream, on, .. } => (stream, on),
                };
                check_topic(topic).map_err(|m| err(*pos, &label, m))?;
                check_expr(on, *pos, &label, "join `on`")?;
            }
        }
    }

    // Stages: cut before a stateful step that follows a key_by.
    let mut stage_steps = Vec::new();
    let mut start = 0usize;
    let mut keyed = false;
    let mut stateful_in_stage: Option<usize> = None;
    let mut has_window = false;
    let mut i = 0usize;
    while i < d.steps.len() {
        let (step, pos) = &d.steps[i];
        let label = step_label(i, step);
        let line_of = |j: usize| {
            d.steps[j]
                .1
                .map_or_else(|| format!("steps[{j}]"), |p| format!("line {}", p.line))
        };
        let stateful = match step {
            Step::KeyBy(_) => {
                keyed = true;
                false
            }
            Step::Window(_) => {
                if !matches!(d.steps.get(i + 1), Some((Step::Aggregate(_), _))) {
                    return Err(err(
                        *pos,
                        &label,
                        "`window` must be followed by an `aggregate` step".into(),
                    ));
                }
                has_window = true;
                true
            }
            Step::Aggregate(_) | Step::Join(Join::Stream { .. }) => true,
            _ => false,
        };
        if stateful {
            if keyed {
                if i > start {
                    stage_steps.push(start..i);
                    start = i;
                }
                keyed = false;
            } else if let Some(prev) = stateful_in_stage {
                return Err(err(
                    *pos,
                    &label,
                    format!(
                        "`{}` needs its own key: add a `key_by` step between it and the stateful step at {}",
                        step.name(),
                        line_of(prev)
                    ),
                ));
            } else if !matches!(step, Step::Join(_)) {
                return Err(err(
                    *pos,
                    &label,
                    format!(
                        "`{}` needs a key: add a `key_by` step before it",
                        if matches!(step, Step::Window(_)) {
                            "window"
                        } else {
                            "aggregate"
                        }
                    ),
                ));
            }
            stateful_in_stage = Some(i);
            if matches!(step, Step::Window(_)) {
                // The aggregate belongs to the window.
                i += 1;
            }
        }
        i += 1;
    }
    stage_steps.push(start..d.steps.len());

    // Outputs.
    let mut emits: Vec<(Emit, Option<Pos>)> = Vec::new();
    match &d.sink {
        Sink::Outputs(outs) => {
            if outs.is_empty() {
                return Err(err(d.sink_pos, "output", "`output` lists no topics".into()));
            }
            for o in outs {
                let pos = o.pos.or(d.sink_pos);
                check_topic(&o.topic).map_err(|m| err(pos, "output", m))?;
                if let Some(e) = o.emit {
                    emits.push((e, o.emit_pos.or(pos)));
                }
            }
        }
        Sink::Route(routes) => {
            if routes.is_empty() {
                return Err(err(d.sink_pos, "route", "`route` lists no branches".into()));
            }
            for r in routes {
                let pos = r.pos.or(d.sink_pos);
                check_topic(&r.topic).map_err(|m| err(pos, "route", m))?;
                check_expr(&r.when, pos, "route", "`when`")?;
                if let Some(e) = r.emit {
                    emits.push((e, r.emit_pos.or(pos)));
                }
            }
        }
    }
    let sink_topics: Vec<(&str, Option<Pos>)> = match &d.sink {
        Sink::Outputs(outs) => outs
            .iter()
            .map(|o| (o.topic.as_str(), o.pos.or(d.sink_pos)))
            .collect(),
        Sink::Route(rs) => rs
            .iter()
            .map(|r| (r.topic.as_str(), r.pos.or(d.sink_pos)))
            .collect(),
    };
    for (t, pos) in &sink_topics {
        if *t == d.input.topic {
            return Err(err(
                *pos,
                "output",
                format!("output topic `{t}` is the input topic: the transform would read its own results"),
            ));
        }
        if t.starts_with(INTERNAL_TOPIC_PREFIX) {
            return Err(err(
                *pos,
                "output",
                format!("topics starting with `{INTERNAL_TOPIC_PREFIX}` are internal"),
            ));
        }
    }
    if let Some(((first, first_pos), rest)) = emits.split_first() {
        if let Some((_, pos)) = rest.iter().find(|(e, _)| e != first) {
            let at = first_pos.map_or_else(String::new, |p| format!(" (line {})", p.line));
            return Err(err(
                *pos,
                "output",
                format!(
                    "all outputs must use the same `emit`; the first one{at} says `{}`",
                    first.as_str()
                ),
            ));
        }
    }
    // A running aggregate is an aggregate not right after a window.
    let running = d.steps.iter().enumerate().find_map(|(i, (s, _))| {
        (matches!(s, Step::Aggregate(_))
            && !matches!(
                i.checked_sub(1).map(|j| &d.steps[j].0),
                Some(Step::Window(_))
            ))
        .then_some(i)
    });
    let emit = match emits.first() {
        Some((e, pos)) => {
            if *e == Emit::Final && !has_window {
                return Err(err(
                    *pos,
                    "output",
                    "`emit: final` needs a `window` step: only windows close; use `emit: changes`"
                        .into(),
                ));
            }
            if *e == Emit::Final {
                if let Some(i) = running {
                    let (step, pos) = &d.steps[i];
                    return Err(err(
                        *pos,
                        &step_label(i, step),
                        "an `aggregate` without a `window` is a running aggregate that emits every change; it cannot be used with `emit: final`".into(),
                    ));
                }
            }
            *e
        }
        None if has_window && running.is_none() => Emit::Final,
        None => Emit::Changes,
    };

    // Errors.
    if let Some(t) = &d.errors_topic {
        check_topic(t).map_err(|m| err(d.errors_pos, "errors", m))?;
        if *t == d.input.topic {
            return Err(err(
                d.errors_pos,
                "errors",
                "the errors topic is the input topic".into(),
            ));
        }
    }
    let on_error = match (d.on_error, &d.errors_topic) {
        (Some(OnError::DeadLetter), None) => {
            return Err(err(
                d.on_error_pos,
                "on_error",
                "`on_error: dead_letter` needs an `errors: <topic>` to write to".into(),
            ));
        }
        (Some(o), _) => o,
        (None, Some(_)) => OnError::DeadLetter,
        (None, None) => OnError::Stop,
    };
    if d.commit_interval_ms == 0 {
        return Err(err(
            d.commit_pos,
            "commit.interval.ms",
            "`commit.interval.ms` must be positive".into(),
        ));
    }

    let (steps, step_pos) = d.steps.into_iter().unzip();
    Ok(TransformSpec {
        name: d.name,
        input: d.input,
        commit_interval_ms: d.commit_interval_ms,
        errors_topic: d.errors_topic,
        on_error,
        principal: d.principal,
        exactly_once: d.exactly_once,
        steps,
        step_pos,
        sink: d.sink,
        emit,
        stage_steps,
    })
}
