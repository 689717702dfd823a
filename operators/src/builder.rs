//! The Rust builder: [`Pipeline`] assembles the same draft the YAML decoder does, so a spec built
//! in code is validated, planned and run exactly like one parsed from YAML.
//!
//! Steps with an expression compile it at once and fail with `steps[i] (kind): ...`; the rest
//! (keys before stateful steps, `emit` against windows, topic names) is checked by the final
//! [`Pipeline::to`] (or [`Pipeline::to_outputs`], [`Pipeline::route`]).

use std::time::Duration;

use crate::expr::Program;
use crate::parse::DEFAULT_COMMIT_INTERVAL_MS;
use crate::spec::{
    validate, Aggregate, Draft, Emit, Expr, Format, InputSpec, Join, JoinKind, OnError, OutputSpec,
    RouteSpec, Sink, SpecError, Step, TransformSpec, Window,
};

/// A transform under construction.
#[derive(Debug, Clone)]
pub struct Pipeline {
    name: Option<String>,
    input: InputSpec,
    steps: Vec<Step>,
    errors_topic: Option<String>,
    on_error: Option<OnError>,
    commit_interval_ms: u64,
    principal: Option<String>,
    exactly_once: bool,
}

impl Pipeline {
    /// A pipeline reading `topic`, with event time from the record timestamps.
    pub fn from_topic(topic: impl Into<String>, format: Format) -> Self {
        Self {
            name: None,
            input: InputSpec {
                topic: topic.into(),
                format,
                time: None,
            },
            steps: Vec::new(),
            errors_topic: None,
            on_error: None,
            commit_interval_ms: DEFAULT_COMMIT_INTERVAL_MS,
            principal: None,
            exactly_once: true,
        }
    }

    /// The transform's name (its internal topics are named after it). Defaults to the first
    /// output topic.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Event time in ms from the input value (`input.time`).
    pub fn time(mut self, expr: &str) -> Result<Self, SpecError> {
        Program::compile(expr).map_err(|m| {
            SpecError::at(
                None,
                format!("input time expression `{expr}` does not compile: {m}"),
            )
        })?;
        self.input.time = Some(Expr::new(expr));
        Ok(self)
    }

    /// Compiles `expr` for the step about to be added.
    fn check(&self, expr: &str, kind: &str) -> Result<(), SpecError> {
        Program::compile(expr).map(|_| ()).map_err(|m| {
            SpecError::at(
                None,
                format!(
                    "steps[{}] ({kind}): expression `{expr}` does not compile: {m}",
                    self.steps.len()
                ),
            )
        })
    }

    fn with_expr(self, expr: &str, make: fn(Expr) -> Step) -> Result<Self, SpecError> {
        let step = make(Expr::new(expr));
        self.check(expr, step.name())?;
        Ok(self.step(step))
    }

    pub fn map(self, expr: &str) -> Result<Self, SpecError> {
        self.with_expr(expr, Step::Map)
    }

    pub fn filter(self, expr: &str) -> Result<Self, SpecError> {
        self.with_expr(expr, Step::Filter)
    }

    pub fn flat_map(self, expr: &str) -> Result<Self, SpecError> {
        self.with_expr(expr, Step::FlatMap)
    }

    pub fn key_by(self, expr: &str) -> Result<Self, SpecError> {
        self.with_expr(expr, Step::KeyBy)
    }

    pub fn window(self, window: Window) -> Self {
        self.step(Step::Window(window))
    }

    pub fn aggregate(self, aggregate: Aggregate) -> Self {
        self.step(Step::Aggregate(aggregate))
    }

    /// Stream-table join with the compacted topic `table` (json values).
    pub fn join_table(self, table: &str, on: &str, kind: JoinKind) -> Result<Self, SpecError> {
        self.check(on, "join")?;
        Ok(self.step(Step::Join(Join::Table {
            table: table.to_string(),
            on: Expr::new(on),
            kind,
            format: Format::Json,
        })))
    }

    /// Stream-stream join with `stream` (json values, no grace).
    pub fn join_stream(self, stream: &str, on: &str, within: Duration) -> Result<Self, SpecError> {
        self.check(on, "join")?;
        Ok(self.step(Step::Join(Join::Stream {
            stream: stream.to_string(),
            on: Expr::new(on),
            within_ms: u64::try_from(within.as_millis()).unwrap_or(u64::MAX),
            grace_ms: 0,
            format: Format::Json,
        })))
    }

    /// Any step, checked when the pipeline is finished.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    pub fn errors(mut self, topic: impl Into<String>) -> Self {
        self.errors_topic = Some(topic.into());
        self
    }

    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = Some(on_error);
        self
    }

    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// `processing.guarantee`: false for at-least-once.
    pub fn exactly_once(mut self, exactly_once: bool) -> Self {
        self.exactly_once = exactly_once;
        self
    }

    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Finishes the pipeline with one output topic.
    pub fn to(
        self,
        topic: impl Into<String>,
        format: Format,
        emit: Emit,
    ) -> Result<TransformSpec, SpecError> {
        self.finish(Sink::Outputs(vec![
            OutputSpec::new(topic, format).emit(emit)
        ]))
    }

    /// Finishes the pipeline with several output topics (each gets every result).
    pub fn to_outputs(self, outputs: Vec<OutputSpec>) -> Result<TransformSpec, SpecError> {
        self.finish(Sink::Outputs(outputs))
    }

    /// Finishes the pipeline with a route (first matching branch wins).
    pub fn route(self, routes: Vec<RouteSpec>) -> Result<TransformSpec, SpecError> {
        self.finish(Sink::Route(routes))
    }

    fn finish(self, sink: Sink) -> Result<TransformSpec, SpecError> {
        let default_name = match &sink {
            Sink::Outputs(o) => o.first().map(|o| o.topic.clone()),
            Sink::Route(r) => r.first().map(|r| r.topic.clone()),
        };
        validate(Draft {
            name: self.name.or(default_name).unwrap_or_default(),
            name_pos: None,
            input: self.input,
            input_pos: None,
            steps: self.steps.into_iter().map(|s| (s, None)).collect(),
            steps_pos: None,
            sink,
            sink_pos: None,
            errors_topic: self.errors_topic,
            errors_pos: None,
            on_error: self.on_error,
            on_error_pos: None,
            commit_interval_ms: self.commit_interval_ms,
            commit_pos: None,
            principal: self.principal,
            exactly_once: self.exactly_once,
        })
    }
}
