//! The word count of the spec, end to end through both stages with murmur2 repartitioning,
//! against an oracle that knows nothing of the operators crate.

mod common;

use std::collections::{BTreeMap, HashMap};

use clients::partitioner::partition_for_key;
use common::{json, rec, Topology};
use operators::{parse_spec, StageOutput};

const WORD_COUNT: &str = r#"
name: word-count
input: { topic: lines, format: text }        # text | json | bytes; event time = record timestamp,
                                              # or `time: <expression>` on a json field
steps:
  - flat_map: 'ascii_downcase | [scan("[a-z]+")] | .[]'
  - key_by: '.'
  - window: { tumbling: 10s, grace: 2s }      # tumbling | hopping {size, advance} | session {gap}
  - aggregate: count                          # count | sum | min | max | avg: '<expr>'
output: { topic: word-counts, format: json, emit: final }   # final (on window close) | changes
"#;

const WORDS: &[&str] = &[
    "Kafka", "stream", "LOG", "broker", "offset", "topic", "the", "a", "Sluice", "window", "key",
    "value",
];

/// A deterministic corpus: (line, timestamp), mostly increasing, with out-of-order records
/// some within the 2 s grace and some beyond it.
fn corpus() -> Vec<(String, i64)> {
    let mut state: u64 = 0x5eed;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    (0..400)
        .map(|i| {
            let words = next(6) as usize;
            let mut line = String::new();
            for w in 0..words {
                if w > 0 {
                    line.push_str(if next(3) == 0 { ", " } else { " " });
                }
                line.push_str(WORDS[next(WORDS.len() as u64) as usize]);
            }
            if next(10) == 0 {
                line.push_str(" 42!");
            }
            let jitter = next(9_000) as i64 - 6_000;
            (line, (i as i64) * 450 + jitter + 1_000_000)
        })
        .collect()
}

#[test]
fn word_count_matches_oracle() {
    let spec = parse_spec(WORD_COUNT).expect("the spec parses");
    assert_eq!(spec.name, "word-count");
    let stages = spec.stages();
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].input_topic, "lines");
    assert_eq!(
        stages[0].output,
        StageOutput::Repartition("__sluice-transform-word-count-repartition-0".into())
    );
    assert_eq!(
        stages[1].changelog_topic.as_deref(),
        Some("__sluice-transform-word-count-changelog-1")
    );
    let topics = spec.topics();
    assert_eq!(topics.outputs, ["word-counts"]);
    assert_eq!(
        topics.changelogs,
        ["__sluice-transform-word-count-changelog-1"]
    );

    const INPUT_PARTITIONS: i32 = 3;
    const PARTITIONS: u32 = 4;
    let mut topo = Topology::new(spec, PARTITIONS);
    let corpus = corpus();
    let mut outputs = Vec::new();
    for (i, (line, ts)) in corpus.iter().enumerate() {
        let p = i as i32 % INPUT_PARTITIONS;
        outputs.extend(topo.send(0, p, rec(None, line, *ts, 0)).expect("stage 0"));
    }
    // Close every window: a far-future record in each stage-1 partition.
    for p in 0..PARTITIONS as i32 {
        outputs.extend(
            topo.send(1, p, rec(Some("~flush"), "\"~flush\"", i64::MAX / 2, 0))
                .expect("flush"),
        );
    }

    // Oracle: words in input order, partition by murmur2, per-partition watermark.
    let mut watermark: HashMap<i32, i64> = HashMap::new();
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let mut late = 0;
    for (line, ts) in &corpus {
        let lower = line.to_ascii_lowercase();
        for word in lower
            .split(|c: char| !c.is_ascii_lowercase())
            .filter(|w| !w.is_empty())
        {
            let p = partition_for_key(word.as_bytes(), PARTITIONS);
            let wm = watermark.entry(p).or_insert(i64::MIN);
            *wm = (*wm).max(*ts);
            let start = ts.div_euclid(10_000) * 10_000;
            if start + 10_000 + 2_000 <= *wm {
                late += 1;
                continue;
            }
            *expected.entry((word.to_string(), start)).or_default() += 1;
        }
    }
    assert!(late > 0, "the corpus should have late records");
    assert!(expected.len() > 50);

    let mut got: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for r in &outputs {
        assert_eq!(r.topic, "word-counts");
        assert_eq!(r.partition, None);
        let v = json(&r.value);
        let word = v["key"].as_str().expect("key").to_string();
        assert_eq!(r.key.as_deref(), Some(word.as_bytes()));
        let start = v["window_start"].as_i64().expect("start");
        let end = v["window_end"].as_i64().expect("end");
        assert_eq!(end - start, 10_000);
        assert_eq!(r.timestamp, end - 1);
        let count = v["value"].as_i64().expect("count");
        let previous = got.insert((word.clone(), start), count);
        assert!(previous.is_none(), "({word}, {start}) emitted twice");
    }
    assert_eq!(got, expected);

    let late_counted: u64 = topo.tasks[1].iter().map(|t| t.metrics().late).sum();
    assert_eq!(late_counted, late);
    // Every window closed: only the flush records' windows and the watermarks remain.
    for t in &topo.tasks[1] {
        assert!(t.state_len() <= 2, "{t:?}");
    }
}
