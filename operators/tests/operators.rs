//! Each operator on small inputs with exact expected outputs.

mod common;

use std::time::Duration;

use common::{json, rec, text, Topology};
use operators::{
    parse_spec, Aggregate, Emit, Format, JoinKind, OnError, OutRecord, Output, Pipeline,
    ProcessError, Record, RestoreError, RouteSpec, Side, StageTask, Window, KEY_JSON_HEADER,
};
use serde_json::json as j;

fn spec_of(yaml: &str) -> operators::TransformSpec {
    match parse_spec(yaml) {
        Ok(s) => s,
        Err(e) => panic!("spec does not parse: {e}"),
    }
}

/// Sends JSON values with timestamps to stage 0 of a one-partition topology.
fn send_all(topo: &mut Topology, events: &[(serde_json::Value, i64)]) -> Vec<OutRecord> {
    let mut out = Vec::new();
    for (v, ts) in events {
        out.extend(
            topo.send(0, 0, rec(None, &v.to_string(), *ts, 0))
                .expect("send"),
        );
    }
    out
}

fn values(out: &[OutRecord]) -> Vec<serde_json::Value> {
    out.iter().map(|r| json(&r.value)).collect()
}

#[test]
fn session_windows_merge_and_close() {
    let spec = spec_of(
        r#"
name: sessions
input: { topic: events }
steps:
  - key_by: '.k'
  - window: { session: { gap: 1s }, grace: 1s }
  - aggregate: count
output: { topic: out, emit: final }
"#,
    );
    let mut topo = Topology::new(spec, 1);
    let out = send_all(
        &mut topo,
        &[
            (j!({"k": "a"}), 0),
            (j!({"k": "a"}), 500),
            (j!({"k": "b"}), 300),
            (j!({"k": "a"}), 1_200),
            (j!({"k": "a"}), 5_000),
        ],
    );
    assert_eq!(
        values(&out),
        [
            j!({"key": "b", "window_start": 300, "window_end": 301, "value": 1}),
            j!({"key": "a", "window_start": 0, "window_end": 1_201, "value": 3}),
        ]
    );
    assert_eq!(out[1].timestamp, 1_200);
    // Two sessions that a third record bridges.
    let out = send_all(
        &mut topo,
        &[
            (j!({"k": "m"}), 30_000),
            (j!({"k": "m"}), 31_800),
            (j!({"k": "m"}), 30_900),
            (j!({"k": "z"}), 40_000),
        ],
    );
    assert_eq!(
        values(&out),
        [
            j!({"key": "a", "window_start": 5_000, "window_end": 5_001, "value": 1}),
            j!({"key": "m", "window_start": 30_000, "window_end": 31_801, "value": 3}),
        ]
    );
    // The merged-away session [31800, 31801) was deleted from the changelog.
    let log = &topo.changelogs[&(1, 0)];
    let tombstones = log.iter().filter(|(_, v)| v.is_none()).count();
    assert!(tombstones >= 5, "{tombstones}");
    assert_eq!(topo.tasks[1][0].state_len(), 2); // z's session and the watermark
}

#[test]
fn hopping_windows_count_each_record_in_every_window() {
    let spec = spec_of(
        r#"
name: hop
input: { topic: events }
steps:
  - key_by: '.k'
  - window: { hopping: { size: 10s, advance: 5s } }
  - aggregate: count
output: { topic: out }
"#,
    );
    assert_eq!(spec.emit(), Emit::Final);
    let mut topo = Topology::new(spec, 1);
    let out = send_all(
        &mut topo,
        &[
            (j!({"k": "a"}), 1_000),
            (j!({"k": "a"}), 6_000),
            (j!({"k": "a"}), 12_000),
            (j!({"k": "z"}), 100_000),
        ],
    );
    let got: Vec<(i64, i64, i64)> = values(&out)
        .iter()
        .map(|v| {
            (
                v["window_start"].as_i64().unwrap(),
                v["window_end"].as_i64().unwrap(),
                v["value"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (-5_000, 5_000, 1),
            (0, 10_000, 2),
            (5_000, 15_000, 2),
            (10_000, 20_000, 1)
        ]
    );
}

#[test]
fn sum_min_max_avg_running_aggregates() {
    let inputs = [
        (j!({"k": "x", "n": 3}), 1),
        (j!({"k": "x", "n": 1.5}), 2),
        (j!({"k": "x", "n": -2}), 3),
        (j!({"k": "x", "n": null}), 4),
        (j!({"k": "x", "n": 10}), 5),
    ];
    let run = |agg: &str| -> Vec<serde_json::Value> {
        let spec = spec_of(&format!(
            "name: agg\ninput: {{ topic: events }}\nsteps:\n  - key_by: '.k'\n  - aggregate: {{ {agg}: '.n' }}\noutput: {{ topic: out, emit: changes }}\n"
        ));
        let mut topo = Topology::new(spec, 1);
        values(&send_all(&mut topo, &inputs))
            .into_iter()
            .map(|v| {
                assert_eq!(v["key"], "x");
                v["value"].clone()
            })
            .collect()
    };
    assert_eq!(run("sum"), [j!(3), j!(4.5), j!(2.5), j!(2.5), j!(12.5)]);
    assert_eq!(run("min"), [j!(3), j!(1.5), j!(-2), j!(-2), j!(-2)]);
    assert_eq!(run("max"), [j!(3), j!(3), j!(3), j!(3), j!(10)]);
    let avg = run("avg");
    assert_eq!(avg[0], j!(3.0));
    assert_eq!(avg[1], j!(2.25));
    assert!((avg[2].as_f64().unwrap() - 2.5 / 3.0).abs() < 1e-12);
    assert_eq!(avg[4], j!(3.125));
}

#[test]
fn windowed_sum_emits_final_value_per_window() {
    let spec = spec_of(
        r#"
name: wsum
input: { topic: events, format: json, time: '.at' }
steps:
  - key_by: '.k'
  - window: { tumbling: 1m }
  - aggregate: { sum: '.amount' }
output: { topic: out, emit: final }
"#,
    );
    let mut topo = Topology::new(spec, 1);
    // Record timestamps are ignored: event time comes from `.at`.
    let out = send_all(
        &mut topo,
        &[
            (j!({"k": "a", "at": 1_000, "amount": 5}), 999_999),
            (j!({"k": "a", "at": 59_999, "amount": 7}), 0),
            (j!({"k": "b", "at": 60_000, "amount": 1}), 0),
        ],
    );
    assert_eq!(
        values(&out),
        [j!({"key": "a", "window_start": 0, "window_end": 60_000, "value": 12})]
    );
    assert_eq!(out[0].timestamp, 59_999);
    assert_eq!(out[0].key.as_deref(), Some(&b"a"[..]));
}

#[test]
fn emit_changes_with_windows() {
    let spec = spec_of(
        r#"
name: changes
input: { topic: events }
steps:
  - key_by: '.k'
  - window: { tumbling: 10s }
  - aggregate: count
output: { topic: out, emit: changes }
"#,
    );
    let mut topo = Topology::new(spec, 1);
    let out = send_all(
        &mut topo,
        &[
            (j!({"k": "a"}), 1_000),
            (j!({"k": "a"}), 2_000),
            (j!({"k": "b"}), 3_000),
            (j!({"k": "a"}), 11_000),
        ],
    );
    let got: Vec<(String, i64, i64)> = values(&out)
        .iter()
        .map(|v| {
            (
                v["key"].as_str().unwrap().to_string(),
                v["window_start"].as_i64().unwrap(),
                v["value"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), 0, 1),
            ("a".into(), 0, 2),
            ("b".into(), 0, 1),
            ("a".into(), 10_000, 1)
        ]
    );
    // The closed windows were deleted without being emitted again.
    let log = &topo.changelogs[&(1, 0)];
    assert_eq!(log.iter().filter(|(_, v)| v.is_none()).count(), 2);
}

#[test]
fn late_records_go_to_the_late_topic() {
    let yaml = |late: &str| {
        format!(
            "name: late\ninput: {{ topic: events }}\nsteps:\n  - key_by: '.k'\n  - window: {{ tumbling: 10s, grace: 1s{late} }}\n  - aggregate: count\noutput: {{ topic: out }}\n"
        )
    };
    let mut topo = Topology::new(spec_of(&yaml(", late: late-events")), 1);
    let out = send_all(
        &mut topo,
        &[
            (j!({"k": "a", "i": 1}), 1_000),
            (j!({"k": "a", "i": 2}), 10_500), // window [0, 10s) still open (grace)
            (j!({"k": "a", "i": 3}), 9_000),  // on time, within grace
            (j!({"k": "a", "i": 4}), 11_000), // closes [0, 10s)
            (j!({"k": "a", "i": 5}), 5_000),  // late
        ],
    );
    let topics: Vec<&str> = out.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!(topics, ["out", "late-events"]);
    assert_eq!(json(&out[0].value)["value"], 2);
    assert_eq!(json(&out[1].value), j!({"k": "a", "i": 5}));
    assert_eq!(out[1].key.as_deref(), Some(&b"a"[..]));
    assert_eq!(out[1].timestamp, 5_000);
    assert_eq!(topo.tasks[1][0].metrics().late, 1);
    assert_eq!(topo.tasks[1][0].metrics().late_dropped, 0);

    let mut topo = Topology::new(spec_of(&yaml("")), 1);
    let out = send_all(
        &mut topo,
        &[
            (j!({"k": "a"}), 1_000),
            (j!({"k": "a"}), 20_000),
            (j!({"k": "a"}), 2_000),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(topo.tasks[1][0].metrics().late_dropped, 1);
}

#[test]
fn stream_table_join_inner_and_left() {
    let yaml = |kind: &str| {
        format!(
            "name: enrich\ninput: {{ topic: orders }}\nsteps:\n  - join: {{ table: users, on: '.user'{kind} }}\noutput: {{ topic: enriched }}\n"
        )
    };
    let spec = spec_of(&yaml(""));
    assert_eq!(spec.topics().tables, ["users"]);
    assert_eq!(spec.stages()[0].tables, ["users"]);
    let mut task = StageTask::new(&spec, 0, 0).unwrap();
    task.table_update("users", b"u1", Some(br#"{"name":"Ann"}"#));
    task.table_update("users", b"u2", Some(br#"{"name":"Bob"}"#));
    task.table_update("other", b"u1", Some(b"ignored"));
    assert_eq!(task.table_len(), 2);
    let mut out = Output::new();
    let order =
        |user: &str, off: i64| rec(None, &format!(r#"{{"user":"{user}","n":{off}}}"#), off, off);
    task.process(Side::Left, &order("u1", 0), &mut out).unwrap();
    task.process(Side::Left, &order("u3", 1), &mut out).unwrap(); // no match: dropped
    task.table_update("users", b"u1", Some(br#"{"name":"Ann B."}"#));
    task.process(Side::Left, &order("u1", 2), &mut out).unwrap();
    task.table_update("users", b"u1", None);
    task.process(Side::Left, &order("u1", 3), &mut out).unwrap(); // deleted: dropped
    assert_eq!(
        values(&out.records),
        [
            j!({"left": {"user": "u1", "n": 0}, "right": {"name": "Ann"}}),
            j!({"left": {"user": "u1", "n": 2}, "right": {"name": "Ann B."}}),
        ]
    );
    assert!(out.changelog.is_empty(), "tables are not in the changelog");

    let spec = spec_of(&yaml(", type: left"));
    let mut task = StageTask::new(&spec, 0, 0).unwrap();
    task.table_update("users", b"u1", Some(br#"{"name":"Ann"}"#));
    let mut out = Output::new();
    task.process(Side::Left, &order("u9", 0), &mut out).unwrap();
    task.process(Side::Left, &order("u1", 1), &mut out).unwrap();
    assert_eq!(
        values(&out.records),
        [
            j!({"left": {"user": "u9", "n": 0}, "right": null}),
            j!({"left": {"user": "u1", "n": 1}, "right": {"name": "Ann"}}),
        ]
    );
}

#[test]
fn stream_stream_join_within_and_expiry() {
    let spec = spec_of(
        r#"
name: clicks-views
input: { topic: clicks }
steps:
  - join: { stream: views, within: 1s, on: '.id' }
output: { topic: matched }
"#,
    );
    let stages = spec.stages();
    assert_eq!(stages.len(), 1);
    assert_eq!(stages[0].stream_join.as_deref(), Some("views"));
    assert_eq!(spec.topics().streams, ["views"]);
    let mut task = StageTask::new(&spec, 0, 0).unwrap();
    let mut out = Output::new();
    let ev = |kind: &str, id: i64, ts: i64, off: i64| {
        rec(
            Some(&id.to_string()),
            &format!(r#"{{"id":{id},"{kind}":{ts}}}"#),
            ts,
            off,
        )
    };
    task.process(Side::Left, &ev("click", 1, 1_000, 0), &mut out)
        .unwrap();
    task.process(Side::Right, &ev("view", 1, 1_500, 0), &mut out)
        .unwrap();
    task.process(Side::Right, &ev("view", 2, 1_200, 1), &mut out)
        .unwrap(); // other id
    task.process(Side::Right, &ev("view", 1, 2_500, 2), &mut out)
        .unwrap(); // 1.5 s from the click
    task.process(Side::Left, &ev("click", 1, 2_600, 1), &mut out)
        .unwrap(); // matches the 2.5 s view
    assert_eq!(
        values(&out.records),
        [
            j!({"left": {"id": 1, "click": 1_000}, "right": {"id": 1, "view": 1_500}}),
            j!({"left": {"id": 1, "click": 2_600}, "right": {"id": 1, "view": 2_500}}),
        ]
    );
    assert_eq!(out.records[0].timestamp, 1_500);
    assert_eq!(out.records[1].timestamp, 2_600);
    assert_eq!(out.records[0].key.as_deref(), Some(&b"1"[..]));
    assert_eq!(task.state_len(), 6); // five buffered records and the watermark

    // Time moves on: everything older than watermark - 2*within expires.
    out.clear();
    task.process(Side::Right, &ev("view", 9, 10_000, 3), &mut out)
        .unwrap();
    assert!(out.records.is_empty());
    let tombstones = out.changelog.iter().filter(|(_, v)| v.is_none()).count();
    assert_eq!(tombstones, 5);
    assert_eq!(task.state_len(), 2);
    // A click too old to match anything still buffered is late.
    task.process(Side::Left, &ev("click", 1, 2_000, 2), &mut out)
        .unwrap();
    assert!(out.records.is_empty());
    assert_eq!(task.metrics().late_dropped, 1);
}

#[test]
fn route_filter_and_map() {
    let spec = spec_of(
        r#"
name: router
input: { topic: logs }
steps:
  - filter: '.n > 2'
  - map: '. + {n10: (.n * 10)}'
route:
  - { when: '.level == "error"', topic: errors-out }
  - { when: '.level == "warn"', topic: warns, format: text }
"#,
    );
    assert_eq!(spec.topics().outputs, ["errors-out", "warns"]);
    let mut task = StageTask::new(&spec, 0, 0).unwrap();
    let mut out = Output::new();
    for (i, (level, n)) in [("error", 3), ("warn", 5), ("info", 9), ("error", 1)]
        .iter()
        .enumerate()
    {
        let v = format!(r#"{{"level":"{level}","n":{n}}}"#);
        task.process(Side::Left, &rec(Some("k"), &v, 0, i as i64), &mut out)
            .unwrap();
    }
    let got: Vec<(&str, String)> = out
        .records
        .iter()
        .map(|r| (r.topic.as_str(), text(&r.value)))
        .collect();
    assert_eq!(
        got,
        [
            (
                "errors-out",
                r#"{"level":"error","n":3,"n10":30}"#.to_string()
            ),
            ("warns", r#"{"level":"warn","n":5,"n10":50}"#.to_string()),
        ]
    );
    assert_eq!(out.records[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(task.metrics().unrouted, 1);
    assert!(out.changelog.is_empty());
}

#[test]
fn dead_letter_on_expression_error() {
    let spec = spec_of(
        r#"
name: dlq
input: { topic: in }
steps:
  - map: '.x + 1'
output: { topic: out }
errors: bad-records
"#,
    );
    let mut task = StageTask::new(&spec, 0, 0).unwrap();
    let mut out = Output::new();
    task.process(
        Side::Left,
        &rec(Some("k1"), r#""a string""#, 7, 40),
        &mut out,
    )
    .unwrap();
    task.process(Side::Left, &rec(None, r#"{"x": 1}"#, 8, 41), &mut out)
        .unwrap();
    task.process(Side::Left, &rec(None, "not json", 9, 42), &mut out)
        .unwrap();
    assert_eq!(out.records.len(), 3);
    let dead = &out.records[0];
    assert_eq!(dead.topic, "bad-records");
    assert_eq!(dead.key.as_deref(), Some(&b"k1"[..]));
    let v = json(&dead.value);
    assert!(v["error"].as_str().unwrap().contains("cannot index"), "{v}");
    assert_eq!(v["step"], "steps[0] (map, line 5)");
    assert_eq!(v["stage"], 0);
    assert_eq!(
        v["record"],
        j!({"topic": "in", "partition": 0, "offset": 40, "timestamp": 7, "key": "k1", "value": "\"a string\""})
    );
    assert_eq!(text(&out.records[1].value), "2");
    assert_eq!(out.records[2].topic, "bad-records");
    assert_eq!(json(&out.records[2].value)["step"], "input");
    assert!(json(&out.records[2].value)["error"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    assert_eq!(task.metrics().dead_lettered, 2);
}

#[test]
fn on_error_stop_and_skip() {
    let yaml = |on_error: &str| {
        format!(
            "name: strict\ninput: {{ topic: in }}\nsteps:\n  - key_by: '.id'\n  - aggregate: {{ sum: '.n' }}\noutput: {{ topic: out }}\non_error: {on_error}\n"
        )
    };
    let spec = spec_of(&yaml("stop"));
    assert_eq!(spec.on_error, OnError::Stop);
    let mut task = StageTask::new(&spec, 1, 0).unwrap();
    let mut out = Output::new();
    task.process(
        Side::Left,
        &rec(Some("a"), r#"{"id":"a","n":1}"#, 0, 0),
        &mut out,
    )
    .unwrap();
    let err = task
        .process(
            Side::Left,
            &rec(Some("a"), r#"{"id":"a","n":"x"}"#, 0, 1),
            &mut out,
        )
        .unwrap_err();
    match &err {
        ProcessError::Stopped {
            step,
            reason,
            offset,
            ..
        } => {
            assert_eq!(step, "steps[1] (aggregate, line 5)");
            assert!(reason.contains("sum needs numbers"), "{reason}");
            assert_eq!(*offset, 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("on_error: stop"));
    let again = task.process(
        Side::Left,
        &rec(Some("a"), r#"{"id":"a","n":1}"#, 0, 2),
        &mut out,
    );
    assert_eq!(again, Err(ProcessError::Poisoned));

    // Without errors topic or on_error, the default is stop too.
    let spec =
        spec_of("name: d\ninput: { topic: in }\nsteps:\n  - map: '.x'\noutput: { topic: out }\n");
    assert_eq!(spec.on_error, OnError::Stop);

    let spec = spec_of(&yaml("skip"));
    let mut task = StageTask::new(&spec, 1, 0).unwrap();
    let mut out = Output::new();
    task.process(
        Side::Left,
        &rec(Some("a"), r#"{"id":"a","n":"x"}"#, 0, 0),
        &mut out,
    )
    .unwrap();
    task.process(
        Side::Left,
        &rec(Some("a"), r#"{"id":"a","n":2}"#, 0, 1),
        &mut out,
    )
    .unwrap();
    assert_eq!(task.metrics().skipped, 1);
    assert_eq!(values(&out.records), [j!({"key": "a", "value": 2})]);
}

#[test]
fn record_variable_formats_and_json_keys() {
    let spec = spec_of(
        r#"
name: meta
input: { topic: raw, format: bytes }
steps:
  - map: '{b: ., k: $record.key, off: $record.offset, h: $record.headers.h, text: (@base64d)}'
output:
  - { topic: as-json, format: json }
  - { topic: as-text, format: text }
"#,
    );
    let mut task = StageTask::new(&spec, 0, 3).unwrap();
    let mut out = Output::new();
    let mut r = rec(Some("key"), "hi", 5, 17);
    r.partition = 3;
    r.headers.push(("h".into(), Some(b"hv".to_vec())));
    task.process(Side::Left, &r, &mut out).unwrap();
    let expected = j!({"b": "aGk=", "k": "key", "off": 17, "h": "hv", "text": "hi"});
    assert_eq!(json(&out.records[0].value), expected);
    assert_eq!(json(&out.records[1].value), expected);
    assert_eq!(out.records[0].headers, r.headers);

    // Bytes in, bytes out: unchanged.
    let spec = spec_of(
        "name: copy\ninput: { topic: raw, format: bytes }\nsteps:\n  - map: '.'\noutput: { topic: copy, format: bytes }\n",
    );
    let mut task = StageTask::new(&spec, 0, 0).unwrap();
    let mut out = Output::new();
    let mut r = rec(None, "", 0, 0);
    r.value = Some(vec![0, 159, 146, 150, 255]);
    task.process(Side::Left, &r, &mut out).unwrap();
    assert_eq!(out.records[0].value, r.value);
    // A tombstone stays a tombstone.
    r.value = None;
    task.process(Side::Left, &r, &mut out).unwrap();
    assert_eq!(out.records[1].value, None);

    // A JSON key crosses the repartition marked, and comes out as JSON.
    let spec = spec_of(
        "name: jk\ninput: { topic: e }\nsteps:\n  - key_by: '{id: .id}'\n  - aggregate: count\noutput: { topic: o }\n",
    );
    let mut stage0 = StageTask::new(&spec, 0, 0).unwrap();
    let mut out = Output::new();
    stage0
        .process(Side::Left, &rec(None, r#"{"id": 7}"#, 0, 0), &mut out)
        .unwrap();
    let r = &out.records[0];
    assert_eq!(r.key.as_deref(), Some(&br#"{"id":7}"#[..]));
    assert!(r.headers.iter().any(|(k, _)| k == KEY_JSON_HEADER));
    let mut stage1 = StageTask::new(&spec, 1, 0).unwrap();
    let mut out1 = Output::new();
    let next = Record {
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r.headers.clone(),
        timestamp: r.timestamp,
        partition: 0,
        offset: 0,
    };
    stage1.process(Side::Left, &next, &mut out1).unwrap();
    assert_eq!(values(&out1.records), [j!({"key": {"id": 7}, "value": 1})]);
    assert!(out1.records[0].headers.is_empty());
}

#[test]
fn misuse_is_an_error_value() {
    let spec = spec_of(
        "name: m\ninput: { topic: e }\nsteps:\n  - key_by: '.k'\n  - aggregate: count\noutput: { topic: o }\n",
    );
    assert!(StageTask::new(&spec, 2, 0).is_err());
    let mut t = StageTask::new(&spec, 0, 0).unwrap();
    let mut out = Output::new();
    assert_eq!(
        t.process(Side::Right, &rec(None, "1", 0, 0), &mut out),
        Err(ProcessError::UnexpectedSide { stage: 0 })
    );
    // Stage 0 is stateless: it has no changelog to restore.
    assert!(matches!(
        t.restore(&[0], Some(b"5")),
        Err(RestoreError::UnknownKey { .. })
    ));
    let mut t1 = StageTask::new(&spec, 1, 0).unwrap();
    assert!(matches!(
        t1.restore(&[1, 2, 3], Some(b"{}")),
        Err(RestoreError::UnknownKey { .. })
    ));
    assert!(matches!(
        t1.restore(&[2, b'a'], Some(b"{}")),
        Err(RestoreError::BadEntry { .. })
    ));
    assert!(matches!(
        t1.restore(&[0], Some(b"not a number")),
        Err(RestoreError::BadEntry { .. })
    ));
    assert!(t1.restore(&[9], None).is_err());
    // key_by to null is a record error, not a panic.
    let mut out = Output::new();
    assert!(t
        .process(Side::Left, &rec(None, r#"{"x":1}"#, 0, 0), &mut out)
        .is_err());
}

#[test]
fn builder_matches_yaml_and_reports_errors() {
    let yaml = spec_of(
        r#"
name: orders-by-user
input: { topic: orders, format: json, time: '.ts' }
steps:
  - filter: '.amount > 0'
  - join: { table: users, on: '.user', type: left }
  - key_by: '.left.user'
  - window: { hopping: { size: 1h, advance: 10m }, grace: 30s, late: late-orders }
  - aggregate: { sum: '.left.amount' }
output:
  - { topic: totals, format: json, emit: final }
errors: order-errors
commit.interval.ms: 250
principal: "User:etl"
"#,
    );
    let built = Pipeline::from_topic("orders", Format::Json)
        .name("orders-by-user")
        .time(".ts")
        .unwrap()
        .filter(".amount > 0")
        .unwrap()
        .join_table("users", ".user", JoinKind::Left)
        .unwrap()
        .key_by(".left.user")
        .unwrap()
        .window(
            Window::hopping(Duration::from_secs(3600), Duration::from_secs(600))
                .grace(Duration::from_secs(30))
                .late("late-orders"),
        )
        .aggregate(Aggregate::sum(".left.amount"))
        .errors("order-errors")
        .commit_interval(Duration::from_millis(250))
        .principal("User:etl")
        .to("totals", Format::Json, Emit::Final)
        .unwrap();
    assert_eq!(built.steps(), yaml.steps());
    assert_eq!(built.sink(), yaml.sink());
    assert_eq!(built.stages(), yaml.stages());
    assert_eq!(built.topics(), yaml.topics());
    assert_eq!(built.input, yaml.input);
    assert_eq!(
        (
            built.commit_interval_ms,
            built.on_error,
            built.principal.as_deref()
        ),
        (250, OnError::DeadLetter, Some("User:etl"))
    );
    let topics = yaml.topics();
    assert_eq!(topics.tables, ["users"]);
    assert_eq!(topics.late, ["late-orders"]);
    assert_eq!(topics.errors.as_deref(), Some("order-errors"));
    assert_eq!(
        topics.reads(),
        [
            "orders",
            "users",
            "__sluice-transform-orders-by-user-repartition-0"
        ]
    );
    assert_eq!(
        topics.writes(),
        [
            "totals",
            "late-orders",
            "order-errors",
            "__sluice-transform-orders-by-user-repartition-0",
            "__sluice-transform-orders-by-user-changelog-1"
        ]
    );
    let stages = yaml.stages();
    assert_eq!(stages[0].tables, ["users"]);
    assert_eq!(stages[1].writes, ["late-orders", "totals", "order-errors"]);

    // Errors from the builder name the step.
    let e = Pipeline::from_topic("a", Format::Json)
        .map("[1,2")
        .unwrap_err();
    assert!(e.to_string().starts_with("steps[0] (map): "), "{e}");
    let e = Pipeline::from_topic("a", Format::Json)
        .window(Window::tumbling(Duration::from_secs(1)))
        .aggregate(Aggregate::Count)
        .to("b", Format::Json, Emit::Final)
        .unwrap_err();
    assert_eq!(e.pos(), None);
    assert!(
        e.to_string()
            .contains("steps[0] (window): `window` needs a key"),
        "{e}"
    );
    let e = Pipeline::from_topic("a", Format::Json)
        .key_by(".k")
        .unwrap()
        .aggregate(Aggregate::Count)
        .to("b", Format::Json, Emit::Final)
        .unwrap_err();
    assert!(
        e.to_string().contains("`emit: final` needs a `window`"),
        "{e}"
    );
    let routed = Pipeline::from_topic("a", Format::Json)
        .map(".")
        .unwrap()
        .on_error(OnError::Skip)
        .route(vec![RouteSpec::new(".ok", "good", Format::Json)])
        .unwrap();
    assert_eq!(routed.name, "good");
    assert_eq!(routed.emit(), Emit::Changes);
}

#[test]
fn watermark_driven_by_the_runtime() {
    let spec = spec_of(
        "name: ext\ninput: { topic: e }\nsteps:\n  - key_by: '.k'\n  - window: { tumbling: 10s }\n  - aggregate: count\noutput: { topic: o }\n",
    );
    let mut stage0 = StageTask::new(&spec, 0, 0).unwrap();
    let mut out = Output::new();
    stage0.advance_watermark(1_000, &mut out).unwrap();
    assert!(out.is_empty(), "a stateless stage has no watermark");

    let mut task = StageTask::new(&spec, 1, 0).unwrap();
    task.set_watermark_from_records(false);
    let word = |ts: i64, off: i64| rec(Some("a"), r#"{"k":"a"}"#, ts, off);
    task.process(Side::Left, &word(1_000, 0), &mut out).unwrap();
    task.process(Side::Left, &word(15_000, 1), &mut out)
        .unwrap();
    assert!(out.records.is_empty());
    assert_eq!(task.watermark(), i64::MIN);
    task.advance_watermark(10_000, &mut out).unwrap();
    assert_eq!(
        values(&out.records),
        [j!({"key": "a", "window_start": 0, "window_end": 10_000, "value": 1})]
    );
    assert!(out.changelog.contains(&(vec![0], Some(b"10000".to_vec()))));
    out.clear();
    task.advance_watermark(5_000, &mut out).unwrap(); // never backwards
    assert!(out.is_empty());
    task.process(Side::Left, &word(3_000, 2), &mut out).unwrap(); // its window closed
    assert_eq!(task.metrics().late, 1);
    task.advance_watermark(20_000, &mut out).unwrap();
    assert_eq!(
        values(&out.records),
        [j!({"key": "a", "window_start": 10_000, "window_end": 20_000, "value": 1})]
    );
    assert_eq!(task.state_len(), 1); // the watermark
}

/// A windowed stage hands the next stage a watermark held back by its grace, so a window it
/// closes later (stamped `end - 1`) is never late downstream.
#[test]
fn output_watermark_holds_back_by_the_window_grace() {
    let spec = spec_of(
        "name: hb\ninput: { topic: bids, format: json }\nsteps:\n  - key_by: '.a'\n  - window: { tumbling: 10s, grace: 2s }\n  - aggregate: count\n  - key_by: '.window_start'\noutput: { topic: out }\n",
    );
    let mut task = StageTask::new(&spec, 1, 0).unwrap();
    task.set_watermark_from_records(false);
    assert!(task.is_stateful());
    assert_eq!(task.output_watermark(), None, "no watermark yet");
    let mut out = Output::new();
    task.advance_watermark(25_000, &mut out).unwrap();
    assert_eq!(task.output_watermark(), Some(25_000 - 2_000 - 1));
    // The stateless first stage has no watermark of its own.
    let first = StageTask::new(&spec, 0, 0).unwrap();
    assert!(!first.is_stateful());
    assert_eq!(first.output_watermark(), None);
}
