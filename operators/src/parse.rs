//! The YAML spec grammar: [`parse_spec`] decodes the YAML tree field by field, refusing
//! unknown fields at their own line, then hands the draft to [`crate::spec::validate`].

use crate::spec::{
    check_topic, validate, Aggregate, Draft, Emit, Expr, Format, InputSpec, Join, JoinKind,
    OnError, OutputSpec, Pos, RouteSpec, Sink, SpecError, Step, TransformSpec, Window, WindowKind,
};
use crate::yaml::{self, Kind, Node};

/// Default `commit.interval.ms`.
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 100;

const STEPS: &[&str] = &[
    "map",
    "filter",
    "flat_map",
    "key_by",
    "window",
    "aggregate",
    "join",
];

/// Parses and validates a YAML transform spec.
///
/// Errors name the line and column of the node at fault: YAML syntax, unknown fields or steps,
/// bad durations, expressions jaq cannot compile, stateful steps without a key, `emit: final`
/// without a window, ...
pub fn parse_spec(yaml: &str) -> Result<TransformSpec, SpecError> {
    let root = yaml::parse(yaml)?;
    let top = Fields::of(
        &root,
        "the spec",
        &[
            "name",
            "input",
            "steps",
            "output",
            "route",
            "errors",
            "on_error",
            "commit.interval.ms",
            "principal",
            "processing.guarantee",
        ],
    )?;
    let name_node = top.required("name")?;
    let name = string(name_node, "name")?;
    let input_node = top.required("input")?;
    let input = input(input_node)?;
    let steps_node = top.required("steps")?;
    let steps = steps(steps_node)?;

    let (sink, sink_pos) = match (top.get("output"), top.get("route")) {
        (Some(_), Some(route)) => {
            return Err(at(
                route,
                "`route` replaces `output`: give one of them".into(),
            ));
        }
        (Some(o), None) => (Sink::Outputs(outputs(o)?), Some(o.pos)),
        (None, Some(r)) => (Sink::Route(routes(r)?), Some(r.pos)),
        (None, None) => {
            return Err(at(
                &root,
                "the spec needs `output` (or `route`) to say where results go".into(),
            ));
        }
    };
    let errors = top.get("errors");
    let errors_topic = errors.map(|n| topic(n, "errors")).transpose()?;
    let on_error_node = top.get("on_error");
    let on_error = on_error_node.map(on_error).transpose()?;
    let commit = top.get("commit.interval.ms");
    let commit_interval_ms = commit
        .map(|n| duration(n, "commit.interval.ms"))
        .transpose()?
        .unwrap_or(DEFAULT_COMMIT_INTERVAL_MS);
    let principal = top
        .get("principal")
        .map(|n| string(n, "principal"))
        .transpose()?;

    let exactly_once = match top.get("processing.guarantee") {
        None => true,
        Some(n) => match string(n, "processing.guarantee")?.as_str() {
            "exactly_once" | "exactly_once_v2" => true,
            "at_least_once" => false,
            other => {
                return Err(at(
                    n,
                    format!(
                        "`processing.guarantee` is exactly_once or at_least_once, not {other:?}"
                    ),
                ))
            }
        },
    };

    validate(Draft {
        name,
        name_pos: Some(name_node.pos),
        input,
        input_pos: Some(input_node.pos),
        steps,
        steps_pos: Some(steps_node.pos),
        sink,
        sink_pos,
        errors_topic,
        errors_pos: errors.map(|n| n.pos),
        on_error,
        on_error_pos: on_error_node.map(|n| n.pos),
        commit_interval_ms,
        commit_pos: commit.map(|n| n.pos),
        principal,
        exactly_once,
    })
}

fn at(node: &Node, message: String) -> SpecError {
    SpecError::at(Some(node.pos), message)
}

/// The fields of a mapping, checked against the names it may have.
struct Fields<'a> {
    node: &'a Node,
    entries: &'a [(Node, Node)],
    what: &'a str,
}

impl<'a> Fields<'a> {
    fn of(node: &'a Node, what: &'a str, known: &[&str]) -> Result<Self, SpecError> {
        let Kind::Map(entries) = &node.kind else {
            return Err(at(
                node,
                format!("{what} must be a mapping, found {}", node.describe()),
            ));
        };
        for (k, _) in entries {
            let name = k.as_str().unwrap_or_default();
            if !known.contains(&name) {
                return Err(at(
                    k,
                    format!(
                        "unknown field `{name}` in {what}; expected one of: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(Self {
            node,
            entries,
            what,
        })
    }

    fn get(&self, name: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    }

    fn required(&self, name: &str) -> Result<&'a Node, SpecError> {
        self.get(name)
            .ok_or_else(|| at(self.node, format!("{} needs `{name}`", self.what)))
    }
}

fn string(node: &Node, what: &str) -> Result<String, SpecError> {
    match (&node.kind, node.as_str()) {
        (Kind::Scalar { .. }, Some(s)) => Ok(s.to_string()),
        _ => Err(at(
            node,
            format!("`{what}` must be a string, found {}", node.describe()),
        )),
    }
}

fn topic(node: &Node, what: &str) -> Result<String, SpecError> {
    let t = string(node, what)?;
    check_topic(&t).map_err(|m| {
        at(
            node,
            if what == "topic" {
                m
            } else {
                format!("`{what}`: {m}")
            },
        )
    })?;
    Ok(t)
}

fn expr(node: &Node, what: &str) -> Result<Expr, SpecError> {
    Ok(Expr::at(string(node, what)?, node.pos))
}

/// A duration: `500ms`, `10s`, `5m`, `1h`, `1d`, or plain milliseconds.
pub(crate) fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn duration(node: &Node, what: &str) -> Result<u64, SpecError> {
    let s = string(node, what)?;
    parse_duration(&s).ok_or_else(|| {
        at(
            node,
            format!(
                "bad duration `{s}` for `{what}`: use a whole number with ms, s, m, h or d (`500ms`, `10s`, `5m`), or plain milliseconds"
            ),
        )
    })
}

fn format(node: &Node, what: &str) -> Result<Format, SpecError> {
    let s = string(node, what)?;
    Format::parse(&s).ok_or_else(|| {
        at(
            node,
            format!("unknown format `{s}`; expected text, json or bytes"),
        )
    })
}

fn emit(node: &Node) -> Result<Emit, SpecError> {
    match string(node, "emit")?.as_str() {
        "final" => Ok(Emit::Final),
        "changes" => Ok(Emit::Changes),
        other => Err(at(
            node,
            format!("unknown emit `{other}`; expected final (once per window, when it closes) or changes (every update)"),
        )),
    }
}

fn on_error(node: &Node) -> Result<OnError, SpecError> {
    match string(node, "on_error")?.as_str() {
        "skip" => Ok(OnError::Skip),
        "dead_letter" => Ok(OnError::DeadLetter),
        "stop" => Ok(OnError::Stop),
        other => Err(at(
            node,
            format!("unknown on_error `{other}`; expected skip, dead_letter or stop"),
        )),
    }
}

fn input(node: &Node) -> Result<InputSpec, SpecError> {
    let f = Fields::of(node, "`input`", &["topic", "format", "time"])?;
    Ok(InputSpec {
        topic: topic(f.required("topic")?, "topic")?,
        format: f
            .get("format")
            .map(|n| format(n, "format"))
            .transpose()?
            .unwrap_or(Format::Json),
        time: f.get("time").map(|n| expr(n, "time")).transpose()?,
    })
}

fn steps(node: &Node) -> Result<Vec<(Step, Option<Pos>)>, SpecError> {
    let items = match &node.kind {
        Kind::Seq(items) => items,
        _ if node.is_null() => return Ok(Vec::new()),
        _ => {
            return Err(at(
                node,
                format!("`steps` must be a list, found {}", node.describe()),
            ))
        }
    };
    items.iter().map(step).collect()
}

fn step(node: &Node) -> Result<(Step, Option<Pos>), SpecError> {
    let Kind::Map(entries) = &node.kind else {
        return Err(at(
            node,
            format!(
                "a step is a mapping like `- map: '.x'`, found {}",
                node.describe()
            ),
        ));
    };
    let (key, value) = match entries.as_slice() {
        [one] => one,
        [] => return Err(at(node, "empty step".into())),
        [_, (second, _), ..] => {
            return Err(at(
                second,
                format!(
                    "a step has one kind; `{}` starts another step: put `- ` before it",
                    second.as_str().unwrap_or_default()
                ),
            ));
        }
    };
    let name = key.as_str().unwrap_or_default();
    let step = match name {
        "map" => Step::Map(expr(value, name)?),
        "filter" => Step::Filter(expr(value, name)?),
        "flat_map" => Step::FlatMap(expr(value, name)?),
        "key_by" => Step::KeyBy(expr(value, name)?),
        "window" => Step::Window(window(value)?),
        "aggregate" => Step::Aggregate(aggregate(value)?),
        "join" => Step::Join(join(value)?),
        other => {
            return Err(at(
                key,
                format!("unknown step `{other}`; steps are {}", STEPS.join(", ")),
            ));
        }
    };
    Ok((step, Some(key.pos)))
}

fn window(node: &Node) -> Result<Window, SpecError> {
    let f = Fields::of(
        node,
        "`window`",
        &["tumbling", "hopping", "session", "grace", "late"],
    )?;
    let kinds: Vec<(&str, &Node)> = ["tumbling", "hopping", "session"]
        .into_iter()
        .filter_map(|k| f.get(k).map(|n| (k, n)))
        .collect();
    let kind = match kinds.as_slice() {
        [] => {
            return Err(at(
                node,
                "`window` needs one of tumbling: <duration>, hopping: {size, advance}, session: {gap}".into(),
            ));
        }
        [("tumbling", n)] => WindowKind::Tumbling {
            size_ms: duration(n, "tumbling")?,
        },
        [("hopping", n)] => {
            let h = Fields::of(n, "`hopping`", &["size", "advance"])?;
            WindowKind::Hopping {
                size_ms: duration(h.required("size")?, "size")?,
                advance_ms: duration(h.required("advance")?, "advance")?,
            }
        }
        [("session", n)] => {
            let s = Fields::of(n, "`session`", &["gap"])?;
            WindowKind::Session {
                gap_ms: duration(s.required("gap")?, "gap")?,
            }
        }
        [_, (second, n), ..] => {
            return Err(at(
                n,
                format!("a window has one kind; `{second}` is a second one"),
            ));
        }
        [(other, n)] => return Err(at(n, format!("unknown window kind `{other}`"))),
    };
    Ok(Window {
        kind,
        grace_ms: f
            .get("grace")
            .map(|n| duration(n, "grace"))
            .transpose()?
            .unwrap_or(0),
        late_topic: f.get("late").map(|n| topic(n, "late")).transpose()?,
    })
}

fn aggregate(node: &Node) -> Result<Aggregate, SpecError> {
    const HELP: &str =
        "use `count`, or one of sum, min, max, avg with an expression (`sum: '.amount'`)";
    match &node.kind {
        Kind::Scalar { .. } => match node.as_str() {
            Some("count") => Ok(Aggregate::Count),
            Some(other @ ("sum" | "min" | "max" | "avg")) => Err(at(
                node,
                format!("`{other}` needs an expression: `aggregate: {{ {other}: '.field' }}`"),
            )),
            Some(other) => Err(at(node, format!("unknown aggregate `{other}`; {HELP}"))),
            None => Err(at(node, format!("`aggregate` is empty; {HELP}"))),
        },
        Kind::Map(entries) => {
            let [(k, v)] = entries.as_slice() else {
                return Err(at(node, format!("`aggregate` takes one function; {HELP}")));
            };
            let name = k.as_str().unwrap_or_default();
            match name {
                "sum" => Ok(Aggregate::Sum(expr(v, name)?)),
                "min" => Ok(Aggregate::Min(expr(v, name)?)),
                "max" => Ok(Aggregate::Max(expr(v, name)?)),
                "avg" => Ok(Aggregate::Avg(expr(v, name)?)),
                "count" => Err(at(
                    k,
                    "`count` takes no expression: write `aggregate: count`".into(),
                )),
                other => Err(at(k, format!("unknown aggregate `{other}`; {HELP}"))),
            }
        }
        Kind::Seq(_) => Err(at(node, format!("`aggregate` must not be a list; {HELP}"))),
    }
}

fn join(node: &Node) -> Result<Join, SpecError> {
    let Kind::Map(entries) = &node.kind else {
        return Err(at(
            node,
            "`join` needs `table: <topic>` or `stream: <topic>`".into(),
        ));
    };
    let has = |k: &str| entries.iter().any(|(n, _)| n.as_str() == Some(k));
    match (has("table"), has("stream")) {
        (true, true) => Err(at(
            node,
            "a join has either `table` or `stream`, not both".into(),
        )),
        (true, false) => {
            let f = Fields::of(node, "a table `join`", &["table", "on", "type", "format"])?;
            let kind = match f.get("type") {
                None => JoinKind::Inner,
                Some(n) => match string(n, "type")?.as_str() {
                    "inner" => JoinKind::Inner,
                    "left" => JoinKind::Left,
                    other => {
                        return Err(at(
                            n,
                            format!("unknown join type `{other}`; expected inner or left"),
                        ))
                    }
                },
            };
            Ok(Join::Table {
                table: topic(f.required("table")?, "table")?,
                on: expr(f.required("on")?, "on")?,
                kind,
                format: f
                    .get("format")
                    .map(|n| format(n, "format"))
                    .transpose()?
                    .unwrap_or(Format::Json),
            })
        }
        (false, true) => {
            let f = Fields::of(
                node,
                "a stream `join`",
                &["stream", "within", "on", "grace", "format"],
            )?;
            Ok(Join::Stream {
                stream: topic(f.required("stream")?, "stream")?,
                on: expr(f.required("on")?, "on")?,
                within_ms: duration(f.required("within")?, "within")?,
                grace_ms: f
                    .get("grace")
                    .map(|n| duration(n, "grace"))
                    .transpose()?
                    .unwrap_or(0),
                format: f
                    .get("format")
                    .map(|n| format(n, "format"))
                    .transpose()?
                    .unwrap_or(Format::Json),
            })
        }
        (false, false) => Err(at(
            node,
            "`join` needs `table: <topic>` (stream-table) or `stream: <topic>` (stream-stream)"
                .into(),
        )),
    }
}

fn output(node: &Node) -> Result<OutputSpec, SpecError> {
    let f = Fields::of(node, "an output", &["topic", "format", "emit"])?;
    let mut o = OutputSpec::new(
        topic(f.required("topic")?, "topic")?,
        f.get("format")
            .map(|n| format(n, "format"))
            .transpose()?
            .unwrap_or(Format::Json),
    )
    .with_pos(node.pos);
    if let Some(n) = f.get("emit") {
        o = o.emit(emit(n)?).with_emit_pos(n.pos);
    }
    Ok(o)
}

fn outputs(node: &Node) -> Result<Vec<OutputSpec>, SpecError> {
    match &node.kind {
        Kind::Seq(items) => items.iter().map(output).collect(),
        _ => Ok(vec![output(node)?]),
    }
}

fn routes(node: &Node) -> Result<Vec<RouteSpec>, SpecError> {
    let Kind::Seq(items) = &node.kind else {
        return Err(at(
            node,
            format!(
                "`route` must be a list of {{when, topic, format}}, found {}",
                node.describe()
            ),
        ));
    };
    items
        .iter()
        .map(|n| {
            let f = Fields::of(n, "a route", &["when", "topic", "format", "emit"])?;
            let when = expr(f.required("when")?, "when")?;
            let mut r = RouteSpec::new(
                when.source(),
                topic(f.required("topic")?, "topic")?,
                f.get("format")
                    .map(|n| format(n, "format"))
                    .transpose()?
                    .unwrap_or(Format::Json),
            )
            .with_pos(n.pos);
            r.when = when;
            if let Some(e) = f.get("emit") {
                r = r.emit(emit(e)?).with_emit_pos(e.pos);
            }
            Ok(r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("10s"), Some(10_000));
        assert_eq!(parse_duration("5m"), Some(300_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000));
        assert_eq!(parse_duration("250"), Some(250));
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("10 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
