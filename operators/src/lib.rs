//! `operators`: Sluice's in-broker stream transforms, sans-IO and synchronous. This crate parses
//! and validates transform specs, compiles them, and runs records through them; the broker's
//! runtime reads the topics, calls [`StageTask::process`], and writes the [`Output`] (records
//! and changelog entries) in one Kafka transaction with the input offsets. No async runtime,
//! files or network here.
//!
//! Layout:
//! - `yaml`: a YAML tree with the line and column of every node, from `saphyr-parser`'s events;
//! - `parse` ([`parse_spec`]) and `builder` ([`Pipeline`]): the two ways to write a spec; both
//!   produce a draft that `spec` validates and plans into stages ([`TransformSpec`],
//!   [`TransformSpec::topics`], [`TransformSpec::stages`]);
//! - `expr`: jq expressions, compiled and run with jaq (deterministic filters only);
//! - `value`: record values per [`Format`], JSON output, keys;
//! - [`StageTask`] (`task`): one stage for one partition, with its operators: `aggregate`
//!   (windows and running aggregates), `join` (stream-stream buffers), stream-table lookups;
//! - `state`: the changelog key layout.
//!
//! # Specs
//!
//! ```yaml
//! name: word-count
//! input: { topic: lines, format: text }   # text | json | bytes; `time: <expr>` for event time
//! steps:
//!   - flat_map: 'ascii_downcase | [scan("[a-z]+")] | .[]'
//!   - key_by: '.'
//!   - window: { tumbling: 10s, grace: 2s }
//!   - aggregate: count
//! output: { topic: word-counts, format: json, emit: final }
//! ```
//!
//! Grammar (every mapping refuses unknown fields; durations are `500ms`, `10s`, `5m`, `1h`,
//! `1d` or plain milliseconds):
//! - `name` (required): also names the internal topics, so it uses topic-name characters;
//! - `input: {topic, format (json), time}`: `time` is a jq expression giving event time in ms
//!   (the record timestamp otherwise);
//! - `steps` (at least one), each a one-key mapping:
//!   - `map: expr` (exactly one result), `filter: expr` (kept when the first result is truthy),
//!     `flat_map: expr` (one record per result), `key_by: expr` (the new key, exactly one
//!     result, not null);
//!   - `window: {tumbling: D | hopping: {size, advance} | session: {gap}, grace: D (0), late:
//!     topic}`, always followed by `aggregate`;
//!   - `aggregate: count | {sum|min|max|avg: expr}`: after a window, per (key, window);
//!     without one, a running aggregate per key (`emit: changes` only);
//!   - `join: {table, on, type: inner|left (inner), format (json)}` and
//!     `join: {stream, within, on, grace (0), format (json)}`;
//! - `output: {topic, format (json), emit}` or a list of them, or `route: [{when, topic,
//!   format, emit}]` (first match wins; unmatched results are counted and dropped). `emit` is
//!   `final` (once per window, when it closes) or `changes` (every update); all outputs agree;
//!   the default is `final` with a window, `changes` without;
//! - `errors: topic`, `on_error: skip | dead_letter | stop` (default `dead_letter` with
//!   `errors`, else `stop`), `commit.interval.ms` (100), `principal` (who the transform acts as under ACLs; the broker checks it).
//!
//! Errors come before anything runs, as `line L, column C: message` ([`SpecError`]): YAML
//! syntax, unknown fields and steps, bad durations, jq that does not compile (jaq's message and
//! the character in the expression), a window or aggregate without a `key_by` before it, a
//! second stateful step without its own `key_by`, `emit: final` without a window, empty steps.
//!
//! YAML is read with `saphyr-parser` (maintained, YAML 1.2, spans on every event) into our own
//! small tree rather than through serde: `serde_yaml` is archived, and the serde forks
//! (`serde_yaml_ng`, `serde_norway`) report a position for syntax errors but give none for a
//! value that deserialized fine and turns out wrong later (a jq expression that does not
//! compile, a step without a key), and they let a duplicate key silently win.
//!
//! Expressions are jq, run by jaq (`jaq-core`, `jaq-std` with its default features, which
//! include regular expressions: `test`, `match`, `scan`, `sub`, `gsub`, `splits`; `jaq-json`
//! with `sync` so values are `Send`). `.` is the record value ([`Format`]: a string for text,
//! parsed JSON for json, the base64 string for bytes, null for a tombstone); `$record` is
//! `{key, value, headers, timestamp, partition, offset}` of the record being processed (key
//! and header values as strings, lossy UTF-8; headers as an object, the last of duplicates
//! wins; `value` decoded as `.` was at the start of the stage; for results emitted when a
//! window closes, the record whose watermark closed it).
//!
//! # Stages and keys
//!
//! A `key_by` followed (before the next `key_by`) by a window, aggregate or stream-stream join
//! ends a stage: the stage writes `OutRecord { topic: __sluice-transform-<name>-repartition-<n>,
//! key, value: JSON, timestamp: event time }` and stage n + 1 reads that topic, partitioned by
//! Kafka's murmur2 of the key, so each key's records meet in one task. A key that is a string is
//! written as its bytes; any other key as its JSON text, marked with the [`KEY_JSON_HEADER`]
//! header so the next stage shows it as JSON again. Stages with state have a changelog topic
//! `__sluice-transform-<name>-changelog-<stage>`. A stream-stream join needs no `key_by` when
//! both streams are already partitioned by its `on` key.
//!
//! # Time
//!
//! Each stateful task keeps a watermark: the largest event time it has seen (both sides of a
//! stream-stream join count). Windows close, and join buffers expire, only when records move
//! it: there is no wall-clock punctuation, so the last windows of a partition that goes quiet
//! stay open until more records come. A repartition topic interleaves the upstream partitions,
//! so `grace` must cover their skew as well as the producers' disorder; or the runtime drives
//! the watermark itself ([`StageTask::set_watermark_from_records`] off, then
//! [`StageTask::advance_watermark`], e.g. with the smallest of the upstream partitions'
//! watermarks), which also lets windows close while records are scarce.
//!
//! # Results
//!
//! A windowed aggregate writes key = the group key and value `{"key": <key>, "window_start":
//! <ms>, "window_end": <ms>, "value": <aggregate>}` with timestamp `window_end - 1` (the last
//! millisecond in the window; a session's `window_end` is its last record's time + 1). A
//! running aggregate writes `{"key": <key>, "value": <aggregate>}` stamped with the record's
//! event time. Joins write `{"left": <value>, "right": <value>}` (a stream-stream match is
//! stamped with the later of the two times). Late records go to the window's `late` topic as
//! JSON of the value that reached the window.
//!
//! # Limits
//!
//! One evaluation may produce at most 1,000,000 values; JSON from outside the transform may nest
//! 128 levels; a hopping window may put a record in [`MAX_HOPPING_WINDOWS`] windows. jaq has no
//! fuel counter, so an expression that loops without producing values keeps its task busy.
//! JSON input is read by jaq's reader, which accepts a superset of JSON (`NaN`, comments,
//! non-string keys).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use operators::{
//!     parse_spec, Aggregate, Emit, Format, Output, Pipeline, Record, Side, StageTask, Window,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let yaml = r#"
//! name: word-count
//! input: { topic: lines, format: text }
//! steps:
//!   - flat_map: 'ascii_downcase | [scan("[a-z]+")] | .[]'
//!   - key_by: '.'
//!   - window: { tumbling: 10s, grace: 2s }
//!   - aggregate: count
//! output: { topic: word-counts, format: json, emit: final }
//! "#;
//! let spec = parse_spec(yaml)?;
//! let built = Pipeline::from_topic("lines", Format::Text)
//!     .name("word-count")
//!     .flat_map(r#"ascii_downcase | [scan("[a-z]+")] | .[]"#)?
//!     .key_by(".")?
//!     .window(Window::tumbling(Duration::from_secs(10)).grace(Duration::from_secs(2)))
//!     .aggregate(Aggregate::Count)
//!     .to("word-counts", Format::Json, Emit::Final)?;
//! assert_eq!(built.stages(), spec.stages());
//! assert_eq!(
//!     spec.topics().repartition,
//!     ["__sluice-transform-word-count-repartition-0"]
//! );
//!
//! // Stage 0 splits lines into words, keyed by word, for the repartition topic.
//! let mut split = StageTask::new(&spec, 0, 0)?;
//! let mut out = Output::new();
//! let line = Record {
//!     key: None,
//!     value: Some(b"To be, or not to be".to_vec()),
//!     headers: vec![],
//!     timestamp: 1_000,
//!     partition: 0,
//!     offset: 0,
//! };
//! split.process(Side::Left, &line, &mut out)?;
//! assert_eq!(out.records.len(), 6);
//! assert_eq!(out.records[0].key.as_deref(), Some(&b"to"[..]));
//!
//! // Stage 1 counts; a window emits once the watermark passes its end plus grace.
//! let mut count = StageTask::new(&spec, 1, 0)?;
//! let mut counts = Output::new();
//! for (offset, r) in out.records.iter().enumerate() {
//!     let rec = Record {
//!         key: r.key.clone(),
//!         value: r.value.clone(),
//!         headers: r.headers.clone(),
//!         timestamp: r.timestamp,
//!         partition: 0,
//!         offset: offset as i64,
//!     };
//!     count.process(Side::Left, &rec, &mut counts)?;
//! }
//! assert!(counts.records.is_empty());
//! let later = Record { key: Some(b"x".to_vec()), value: Some(b"\"x\"".to_vec()),
//!     headers: vec![], timestamp: 12_000, partition: 0, offset: 6 };
//! count.process(Side::Left, &later, &mut counts)?;
//! let first = &counts.records[0];
//! assert_eq!(first.topic, "word-counts");
//! assert_eq!(
//!     first.value.as_deref(),
//!     Some(&br#"{"key":"be","window_start":0,"window_end":10000,"value":2}"#[..])
//! );
//! # Ok(()) }
//! ```

mod aggregate;
mod builder;
mod expr;
mod join;
mod parse;
mod spec;
mod state;
mod task;
mod value;
mod yaml;

pub use crate::builder::Pipeline;
pub use crate::join::Side;
pub use crate::parse::{parse_spec, DEFAULT_COMMIT_INTERVAL_MS};
pub use crate::spec::{
    Aggregate, Emit, Expr, Format, InputSpec, Join, JoinKind, OnError, OutputSpec, Pos, RouteSpec,
    Sink, SpecError, StageOutput, StageSpec, Step, TopicPlan, TransformSpec, Window, WindowKind,
    INTERNAL_TOPIC_PREFIX, MAX_HOPPING_WINDOWS, MAX_NAME_LEN,
};
pub use crate::task::{
    ChangelogEntry, Headers, OutRecord, Output, ProcessError, Record, RestoreError, StageTask,
    TaskError, TaskMetrics, KEY_JSON_HEADER,
};

#[cfg(test)]
mod tests {
    #[test]
    fn tasks_and_specs_cross_threads() {
        fn send<T: Send>() {}
        fn sync<T: Send + Sync>() {}
        send::<crate::StageTask>();
        sync::<crate::TransformSpec>();
        sync::<crate::Output>();
    }
}
