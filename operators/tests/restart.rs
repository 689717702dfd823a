//! Restart determinism: running part of the input, restoring a fresh task from the compacted
//! changelog and running the rest gives exactly the outputs and changelog of an uninterrupted
//! run.

mod common;

use operators::{parse_spec, ChangelogEntry, Output, Record, Side, StageTask, TransformSpec};
use proptest::prelude::*;

const WORDS: &[&str] = &["ant", "bee", "cat", "dog", "eel", "fox"];

struct Case {
    spec: &'static str,
    /// The stateful stage the records are fed to.
    stage: usize,
}

const CASES: &[Case] = &[
    // Tumbling count, emit final (the word count's second stage).
    Case {
        spec: r#"
name: wc
input: { topic: lines, format: text }
steps:
  - flat_map: 'ascii_downcase | [scan("[a-z]+")] | .[]'
  - key_by: '.'
  - window: { tumbling: 10s, grace: 2s }
  - aggregate: count
output: { topic: counts, format: json, emit: final }
"#,
        stage: 1,
    },
    // Hopping sum, every change, late records to a topic.
    Case {
        spec: r#"
name: hop
input: { topic: events, format: json }
steps:
  - key_by: '.w'
  - window: { hopping: { size: 10s, advance: 3s }, grace: 1s, late: late-events }
  - aggregate: { sum: '.n' }
output: { topic: sums, emit: changes }
"#,
        stage: 1,
    },
    // Session average, emitted when sessions close.
    Case {
        spec: r#"
name: sess
input: { topic: events, format: json }
steps:
  - key_by: '.w'
  - window: { session: { gap: 2s }, grace: 1s }
  - aggregate: { avg: '.n' }
output: { topic: sessions, emit: final }
"#,
        stage: 1,
    },
    // Running max, then steps after the aggregate and a route.
    Case {
        spec: r#"
name: runmax
input: { topic: events, format: json }
steps:
  - key_by: '.w'
  - aggregate: { max: '.n' }
  - map: '{word: .key, max: .value}'
route:
  - { when: '.max > 50', topic: high }
  - { when: 'true', topic: low, format: text }
"#,
        stage: 1,
    },
    // Stream-stream join in stage 0.
    Case {
        spec: r#"
name: sj
input: { topic: clicks, format: json }
steps:
  - join: { stream: views, within: 2s, on: '.w', grace: 500ms }
  - map: '{w: .left.w, l: .left.n, r: .right.n}'
output: { topic: joined }
"#,
        stage: 0,
    },
    // Tumbling min by a JSON (non-string) key.
    Case {
        spec: r#"
name: jsonkey
input: { topic: events, format: json }
steps:
  - key_by: '{w: .w, even: (.n % 2 == 0)}'
  - window: { tumbling: 5s }
  - aggregate: { min: '.n' }
output: { topic: mins }
"#,
        stage: 1,
    },
];

/// Records for the stateful stage: what the previous stage would have written (or the
/// stream's raw records for stage 0).
fn records(
    case: &Case,
    spec: &TransformSpec,
    raw: &[(usize, i64, i64, bool)],
) -> Vec<(Side, Record)> {
    raw.iter()
        .enumerate()
        .map(|(i, &(w, dt, n, right))| {
            let word = WORDS[w % WORDS.len()];
            let ts = i as i64 * 500 + dt;
            let value = match spec.name.as_str() {
                "wc" => format!("\"{word}\""),
                _ => format!("{{\"w\":\"{word}\",\"n\":{n}}}"),
            };
            let key = if case.stage > 0 && spec.name == "jsonkey" {
                // As stage 0 would key it: JSON, marked by the header.
                Some(format!("{{\"w\":\"{word}\",\"even\":{}}}", n % 2 == 0))
            } else {
                Some(word.to_string())
            };
            let mut r = common::rec(key.as_deref(), &value, ts, i as i64);
            if spec.name == "jsonkey" {
                r.headers
                    .push((operators::KEY_JSON_HEADER.into(), Some(b"1".to_vec())));
            }
            let side = if spec.name == "sj" && right {
                Side::Right
            } else {
                Side::Left
            };
            (side, r)
        })
        .collect()
}

/// An input of a task: a record, or (with the runtime driving the watermark) a watermark.
enum Event {
    Record(Side, Record),
    Watermark(i64),
}

/// With `external`, records do not move the watermark; every record whose `right` flag is set
/// (outside the join case) is followed by a watermark 2 s behind it, as a runtime combining
/// upstream partitions would send.
fn events(
    recs: Vec<(Side, Record)>,
    raw: &[(usize, i64, i64, bool)],
    external: bool,
) -> Vec<Event> {
    let mut v = Vec::new();
    for ((side, r), &(_, _, _, flag)) in recs.into_iter().zip(raw) {
        let ts = r.timestamp;
        v.push(Event::Record(side, r));
        if external && flag {
            v.push(Event::Watermark(ts - 2_000));
        }
    }
    v
}

fn run(task: &mut StageTask, events: &[Event]) -> Output {
    let mut out = Output::new();
    for e in events {
        match e {
            Event::Record(side, r) => task.process(*side, r, &mut out).expect("process"),
            Event::Watermark(ts) => task.advance_watermark(*ts, &mut out).expect("watermark"),
        }
    }
    out
}

fn task(spec: &TransformSpec, stage: usize, external: bool) -> StageTask {
    let mut t = StageTask::new(spec, stage, 0).expect("task");
    t.set_watermark_from_records(!external);
    t
}

/// The changelog after compaction: the last entry per key, in log order of those entries.
fn compact(entries: &[ChangelogEntry], keep_tombstones: bool) -> Vec<ChangelogEntry> {
    let mut last = std::collections::HashMap::new();
    for (i, (k, _)) in entries.iter().enumerate() {
        last.insert(k.clone(), i);
    }
    entries
        .iter()
        .enumerate()
        .filter(|(i, (k, v))| last.get(k) == Some(i) && (keep_tombstones || v.is_some()))
        .map(|(_, e)| e.clone())
        .collect()
}

fn check_split(
    case: &Case,
    raw: &[(usize, i64, i64, bool)],
    split: usize,
    keep_tombstones: bool,
    external: bool,
) {
    let spec = parse_spec(case.spec).expect("spec");
    let external = external && spec.name != "sj";
    let evs = events(records(case, &spec, raw), raw, external);
    let split = split.min(evs.len());

    let mut whole = task(&spec, case.stage, external);
    let all = run(&mut whole, &evs);

    let mut first = task(&spec, case.stage, external);
    let a = run(&mut first, &evs[..split]);
    let mut second = task(&spec, case.stage, external);
    for (k, v) in compact(&a.changelog, keep_tombstones) {
        second.restore(&k, v.as_deref()).expect("restore");
    }
    assert_eq!(
        second.state_len(),
        first.state_len(),
        "{}: restored state",
        spec.name
    );
    assert_eq!(second.watermark(), first.watermark());
    let b = run(&mut second, &evs[split..]);

    let mut records = a.records.clone();
    records.extend(b.records.clone());
    assert_eq!(
        records, all.records,
        "{}: outputs differ after a restart at {split}",
        spec.name
    );
    let mut changelog = a.changelog.clone();
    changelog.extend(b.changelog.clone());
    assert_eq!(changelog, all.changelog, "{}: changelog differs", spec.name);
    assert_eq!(second.state_len(), whole.state_len());
}

fn corpus() -> impl Strategy<Value = Vec<(usize, i64, i64, bool)>> {
    prop::collection::vec(
        (0usize..6, -4_000i64..3_000, -100i64..100, any::<bool>()),
        0..80,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn restart_anywhere_gives_the_same_output(
        case in 0usize..CASES.len(),
        raw in corpus(),
        split in 0usize..120,
        keep_tombstones in any::<bool>(),
        external in any::<bool>(),
    ) {
        check_split(&CASES[case], &raw, split, keep_tombstones, external);
    }
}

#[test]
fn every_case_produces_output_and_state() {
    // Guard against a vacuous property: each case emits and keeps state on a fixed corpus.
    let raw: Vec<(usize, i64, i64, bool)> = (0..60)
        .map(|i| {
            (
                i % 4,
                ((i * 1_237) % 3_000) as i64 - 1_500,
                (i * 13 % 90) as i64,
                i % 3 == 0,
            )
        })
        .collect();
    for case in CASES {
        let spec = parse_spec(case.spec).expect("spec");
        for external in [false, true] {
            let evs = events(records(case, &spec, &raw), &raw, external);
            let mut t = task(&spec, case.stage, external && spec.name != "sj");
            let out = run(&mut t, &evs);
            assert!(!out.records.is_empty(), "{} emitted nothing", spec.name);
            assert!(!out.changelog.is_empty(), "{} logged nothing", spec.name);
            for split in [0, 1, 17, 30, 59, 60, 79] {
                check_split(case, &raw, split, split % 2 == 0, external);
            }
        }
    }
}
