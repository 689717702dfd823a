//! Records per second through the word count's two stages: stage 0 (split lines into words,
//! key by word) and stage 1 (tumbling 10 s count, emit final), plus both chained as the runtime
//! would run them on one partition.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use operators::{parse_spec, Output, Record, Side, StageTask, TransformSpec};

const SPEC: &str = r#"
name: word-count
input: { topic: lines, format: text }
steps:
  - flat_map: 'ascii_downcase | [scan("[a-z]+")] | .[]'
  - key_by: '.'
  - window: { tumbling: 10s, grace: 2s }
  - aggregate: count
output: { topic: word-counts, format: json, emit: final }
"#;

const WORDS: &[&str] = &[
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "Kafka",
    "stream",
    "broker",
    "offset",
    "topic",
    "partition",
    "window",
    "count",
];

const LINES: usize = 2_000;

/// Lines of 8 words, 10 ms apart.
fn lines() -> Vec<Record> {
    let mut seed: u64 = 42;
    (0..LINES)
        .map(|i| {
            let line: Vec<&str> = (0..8)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    WORDS[(seed >> 33) as usize % WORDS.len()]
                })
                .collect();
            Record {
                key: None,
                value: Some(line.join(" ").into_bytes()),
                headers: vec![],
                timestamp: i as i64 * 10,
                partition: 0,
                offset: i as i64,
            }
        })
        .collect()
}

/// Stage 0's output, as stage 1 reads it.
fn words(spec: &TransformSpec, lines: &[Record]) -> Vec<Record> {
    let mut split = StageTask::new(spec, 0, 0).expect("stage 0");
    let mut out = Output::new();
    for r in lines {
        split.process(Side::Left, r, &mut out).expect("process");
    }
    out.records
        .into_iter()
        .enumerate()
        .map(|(i, r)| Record {
            key: r.key,
            value: r.value,
            headers: r.headers,
            timestamp: r.timestamp,
            partition: 0,
            offset: i as i64,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let spec = parse_spec(SPEC).expect("spec");
    let lines = lines();
    let words = words(&spec, &lines);

    let mut g = c.benchmark_group("wordcount");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("stage0_split_lines", |b| {
        b.iter_batched(
            || StageTask::new(&spec, 0, 0).expect("stage 0"),
            |mut task| {
                let mut out = Output::new();
                for r in &lines {
                    task.process(Side::Left, r, &mut out).expect("process");
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    // The same split without a regular expression: jaq compiles `scan`'s regex on every call.
    let plain = parse_spec(&SPEC.replace(
        r#"ascii_downcase | [scan("[a-z]+")] | .[]"#,
        r#"ascii_downcase | split(" ") | .[]"#,
    ))
    .expect("spec");
    g.bench_function("stage0_split_lines_no_regex", |b| {
        b.iter_batched(
            || StageTask::new(&plain, 0, 0).expect("stage 0"),
            |mut task| {
                let mut out = Output::new();
                for r in &lines {
                    task.process(Side::Left, r, &mut out).expect("process");
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(words.len() as u64));
    g.bench_function("stage1_count_words", |b| {
        b.iter_batched(
            || StageTask::new(&spec, 1, 0).expect("stage 1"),
            |mut task| {
                let mut out = Output::new();
                for r in &words {
                    task.process(Side::Left, r, &mut out).expect("process");
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("both_stages_per_line", |b| {
        b.iter_batched(
            || {
                (
                    StageTask::new(&spec, 0, 0).expect("stage 0"),
                    StageTask::new(&spec, 1, 0).expect("stage 1"),
                )
            },
            |(mut split, mut count)| {
                let mut mid = Output::new();
                let mut out = Output::new();
                let mut offset = 0;
                for r in &lines {
                    mid.clear();
                    split.process(Side::Left, r, &mut mid).expect("process");
                    for w in mid.records.drain(..) {
                        let rec = Record {
                            key: w.key,
                            value: w.value,
                            headers: w.headers,
                            timestamp: w.timestamp,
                            partition: 0,
                            offset,
                        };
                        offset += 1;
                        count.process(Side::Left, &rec, &mut out).expect("process");
                    }
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
