//! Model-based property test: random sequences of appends, reads, rolls, flushes, retention,
//! DeleteRecords, compaction, crashes (with the unflushed tail of the last segment cut short) and
//! clean reopens, run against the log and against a `BTreeMap` of the records it must hold.
//!
//! After every step the log's start and end offsets equal the model's, a full read returns
//! whole valid batches with the offsets they were appended with, and the records visible are
//! exactly the model's. Compaction must leave exactly each key's latest record below the end of
//! the range it cleaned (tombstones until `delete.retention.ms`), and a crash must keep
//! everything that was flushed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

use log_store::cleaner::{Cleaner, CleanerConfig};
use log_store::testing::{build_compressed_batch, build_keyed_batch, TestRecord};
use log_store::{AppendOptions, CleanupPolicy, Log, LogConfig, TopicPartition};
use sluice_records::{declared_batch_bytes, validate_batch, BatchHeader, BATCH_HEADER_BYTES};
use sluice_records::{parse_records, records_body};

const T0: i64 = 1_700_000_000_000;
const KEYS: u8 = 6;

#[derive(Debug, Clone)]
struct RecordSpec {
    key: Option<u8>,
    /// `None`: a tombstone.
    value_len: Option<u8>,
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: Vec<RecordSpec>,
        codec: i16,
        ts_step: u16,
    },
    Read {
        at: u32,
        max_bytes: u16,
        min_one_batch: bool,
    },
    Roll,
    Flush,
    Retention {
        bytes: u16,
    },
    DeleteRecords {
        at: u32,
    },
    Compact {
        key_map_entries_max: usize,
    },
    Crash {
        truncate_bytes: Option<u16>,
    },
    Reopen,
}

#[derive(Debug, Clone)]
struct Setup {
    segment_bytes: u64,
    index_interval_bytes: u64,
    segment_index_bytes: usize,
    delete_retention_ms: i64,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(600u64), Just(1_500), Just(4_000)],
        prop_oneof![Just(0u64), Just(100), Just(4_096)],
        prop_oneof![Just(64usize), Just(4_096)],
        prop_oneof![Just(0i64), Just(300), Just(100_000)],
    )
        .prop_map(
            |(segment_bytes, index_interval_bytes, segment_index_bytes, delete_retention_ms)| {
                Setup {
                    segment_bytes,
                    index_interval_bytes,
                    segment_index_bytes,
                    delete_retention_ms,
                }
            },
        )
}

fn record_spec() -> impl Strategy<Value = RecordSpec> {
    (
        prop::option::weighted(0.9, 0..KEYS),
        prop::option::weighted(0.85, 0u8..40),
    )
        .prop_map(|(key, value_len)| RecordSpec { key, value_len })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            prop::collection::vec(record_spec(), 1..6),
            prop_oneof![6 => Just(0i16), 1 => 1i16..=4],
            0u16..300,
        )
            .prop_map(|(records, codec, ts_step)| Op::Append { records, codec, ts_step }),
        3 => (any::<u32>(), 1u16..2_000, prop::bool::weighted(0.8))
            .prop_map(|(at, max_bytes, min_one_batch)| Op::Read { at, max_bytes, min_one_batch }),
        1 => Just(Op::Roll),
        2 => Just(Op::Flush),
        1 => (200u16..4_000).prop_map(|bytes| Op::Retention { bytes }),
        1 => any::<u32>().prop_map(|at| Op::DeleteRecords { at }),
        3 => prop_oneof![Just(1usize), Just(3), Just(1_000)]
            .prop_map(|key_map_entries_max| Op::Compact { key_map_entries_max }),
        1 => prop::option::of(0u16..2_000).prop_map(|truncate_bytes| Op::Crash { truncate_bytes }),
        1 => Just(Op::Reopen),
    ]
}

/// One record: key and value (`None`: tombstone).
type Rec = (Option<Vec<u8>>, Option<Vec<u8>>);

/// What the log must hold.
#[derive(Debug, Default)]
struct Model {
    /// Visible records (at or past the log start offset) with their batch's max timestamp.
    records: BTreeMap<i64, (Rec, i64)>,
    /// Every batch appended and not lost: base offset -> last offset.
    batches: BTreeMap<i64, i64>,
    log_start_offset: i64,
    log_end_offset: i64,
}

impl Model {
    fn drop_below(&mut self, offset: i64) {
        self.log_start_offset = offset;
        self.records = self.records.split_off(&offset);
    }

    fn truncate_to(&mut self, offset: i64) {
        self.records.split_off(&offset);
        self.batches.split_off(&offset);
        self.log_end_offset = offset;
        self.log_start_offset = self.log_start_offset.min(offset);
    }

    fn visible(&self) -> BTreeMap<i64, Rec> {
        self.records
            .iter()
            .map(|(o, (r, _))| (*o, r.clone()))
            .collect()
    }

    /// The records a pass that cleaned everything below `end` at `now_ms` leaves.
    fn compacted(&self, end: i64, now_ms: i64, delete_retention_ms: i64) -> BTreeMap<i64, Rec> {
        let mut latest: BTreeMap<&[u8], i64> = BTreeMap::new();
        for (o, ((k, _), _)) in self.records.range(..end) {
            if let Some(k) = k {
                latest.insert(k, *o);
            }
        }
        self.records
            .iter()
            .filter(|(o, ((k, v), ts))| {
                let Some(k) = k else { return true };
                **o >= end
                    || (latest.get(k.as_slice()) == Some(*o)
                        && !(v.is_none() && now_ms - *ts > delete_retention_ms))
            })
            .map(|(o, (r, _))| (*o, r.clone()))
            .collect()
    }
}

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(fail(format!($($msg)+)));
        }
    };
}

trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T, TestCaseError>;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, TestCaseError> {
        self.map_err(|e| fail(format!("{what}: {e}")))
    }
}

type Batches = Vec<(BatchHeader, Vec<(i64, Rec)>)>;

/// Splits a region into its batches, checking each.
fn parse_region(bytes: &[u8]) -> Result<Batches, TestCaseError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = declared_batch_bytes(&bytes[at..], bytes.len() - at).or_fail("batch length")?;
        ensure!(at + len <= bytes.len(), "a region ends inside a batch");
        let batch = &bytes[at..at + len];
        let h = validate_batch(batch).or_fail("batch")?;
        let body = records_body(batch, sluice_records::BATCH_DECOMPRESSED_BYTES_MAX)
            .or_fail("records body")?;
        let views = parse_records(&body, h.records_count).or_fail("records")?;
        let recs = views
            .iter()
            .map(|v| {
                let k = v.key.clone().map(|r| body[r].to_vec());
                let val = v.value.clone().map(|r| body[r].to_vec());
                (h.base_offset + v.offset_delta, (k, val))
            })
            .collect();
        out.push((h, recs));
        at += len;
    }
    Ok(out)
}

/// Reads the whole log from its start.
fn scan(log: &Log) -> Result<Batches, TestCaseError> {
    let mut out = Vec::new();
    let hw = log.high_watermark();
    let mut offset = log.log_start_offset();
    while offset < hw {
        let r = log.read(offset, 700, hw, true).or_fail("read")?;
        let Some(region) = r.region else { break };
        let batches = parse_region(&region.to_vec().or_fail("region")?)?;
        ensure!(!batches.is_empty(), "an empty region");
        ensure!(
            batches[0].0.last_offset() >= offset,
            "read at {offset} began before it"
        );
        offset = batches[batches.len() - 1].0.next_offset();
        out.extend(batches);
    }
    Ok(out)
}

/// The log against the model: offsets, batches as appended, records visible.
fn check(log: &Log, m: &Model) -> Result<(), TestCaseError> {
    ensure!(
        log.log_start_offset() == m.log_start_offset,
        "log start offset {} != model {}",
        log.log_start_offset(),
        m.log_start_offset
    );
    ensure!(
        log.log_end_offset() == m.log_end_offset,
        "log end offset {} != model {}",
        log.log_end_offset(),
        m.log_end_offset
    );
    let mut seen = BTreeMap::new();
    for (h, recs) in scan(log)? {
        ensure!(
            m.batches.get(&h.base_offset) == Some(&h.last_offset()),
            "batch {}..={} was never appended",
            h.base_offset,
            h.last_offset()
        );
        seen.extend(recs.into_iter().filter(|(o, _)| *o >= m.log_start_offset));
    }
    let want = m.visible();
    if seen != want {
        let missing: Vec<_> = want.keys().filter(|o| !seen.contains_key(o)).collect();
        let extra: Vec<_> = seen.keys().filter(|o| !want.contains_key(o)).collect();
        return Err(fail(format!(
            "records differ: missing {missing:?}, unexpected {extra:?}"
        )));
    }
    Ok(())
}

struct Harness {
    _parent: tempfile::TempDir,
    dir: PathBuf,
    config: LogConfig,
    log: Option<Log>,
    model: Model,
    now_ms: i64,
    /// Makes every value unique, so a record cannot pass for another.
    values_written: u64,
}

impl Harness {
    fn new(s: &Setup) -> Result<Self, TestCaseError> {
        let config = LogConfig {
            segment_bytes: s.segment_bytes,
            index_interval_bytes: s.index_interval_bytes,
            segment_index_bytes: s.segment_index_bytes,
            delete_retention_ms: s.delete_retention_ms,
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: true,
            },
            retention_ms: -1,
            min_cleanable_dirty_ratio: 0.0,
            min_compaction_lag_ms: 0,
            ..LogConfig::default()
        };
        let parent = tempfile::tempdir().or_fail("tempdir")?;
        let (log, _) = Log::create(
            parent.path(),
            &TopicPartition::new("m", 0),
            config.clone(),
            T0,
        )
        .or_fail("create")?;
        Ok(Harness {
            dir: log.dir().to_path_buf(),
            _parent: parent,
            config,
            log: Some(log),
            model: Model::default(),
            now_ms: T0,
            values_written: 0,
        })
    }

    fn log(&mut self) -> Result<&mut Log, TestCaseError> {
        self.log.as_mut().ok_or_else(|| fail("no log"))
    }

    fn reopen(&mut self) -> Result<(), TestCaseError> {
        let (log, _) = Log::open(&self.dir, self.config.clone(), self.now_ms).or_fail("open")?;
        self.log = Some(log);
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append {
                records,
                codec,
                ts_step,
            } => self.append(records, *codec, *ts_step),
            Op::Read {
                at,
                max_bytes,
                min_one_batch,
            } => self.read(*at, *max_bytes as usize, *min_one_batch),
            Op::Roll => {
                let now = self.now_ms;
                self.log()?.roll(now).or_fail("roll")
            }
            Op::Flush => {
                let log = self.log()?;
                log.flush().or_fail("flush")?;
                ensure!(
                    log.recovery_point() == log.log_end_offset(),
                    "flush left the recovery point behind"
                );
                Ok(())
            }
            Op::Retention { bytes } => self.retention(*bytes as i64),
            Op::DeleteRecords { at } => {
                let now = self.now_ms;
                let m = &self.model;
                let span = (m.log_end_offset - m.log_start_offset + 1) as u32;
                let target = m.log_start_offset + (at % span) as i64;
                let got = self
                    .log()?
                    .delete_records(target, now)
                    .or_fail("delete records")?;
                ensure!(got == target, "DeleteRecords({target}) gave {got}");
                self.model.drop_below(target);
                Ok(())
            }
            Op::Compact {
                key_map_entries_max,
            } => self.compact(*key_map_entries_max),
            Op::Crash { truncate_bytes } => self.crash(*truncate_bytes),
            Op::Reopen => {
                if let Some(log) = self.log.take() {
                    log.close().or_fail("close")?;
                }
                self.reopen()
            }
        }
    }

    fn append(
        &mut self,
        specs: &[RecordSpec],
        codec: i16,
        ts_step: u16,
    ) -> Result<(), TestCaseError> {
        self.now_ms += ts_step as i64;
        let ts = self.now_ms;
        let mut recs = Vec::with_capacity(specs.len());
        for s in specs {
            self.values_written += 1;
            let value = s.value_len.map(|n| {
                let mut v = format!("{}:", self.values_written).into_bytes();
                v.resize(v.len() + n as usize, b'.');
                v
            });
            recs.push(TestRecord {
                key: s.key.map(|k| format!("key-{k}").into_bytes()),
                value,
                timestamp_delta: 0,
            });
        }
        let batch = if codec == 0 {
            build_keyed_batch(&recs, ts, None, 0)
        } else {
            build_compressed_batch(&recs, ts, None, 0, codec).or_fail("compress")?
        };
        let opts = AppendOptions {
            leader_epoch: 0,
            now_ms: ts,
        };
        let keyless = recs.iter().any(|r| r.key.is_none());
        let log = self.log()?;
        let compacted = log.config().clone();
        if keyless {
            // A compacted log refuses keyless records and writes nothing...
            let end = log.log_end_offset();
            let refused = matches!(
                log.append(&batch, opts),
                Err(log_store::Error::InvalidBatch(
                    log_store::BatchError::KeylessRecordOnCompactedTopic { .. }
                ))
            );
            ensure!(refused, "a keyless record was accepted by a compacted log");
            ensure!(
                log.log_end_offset() == end,
                "a refused append moved the log end"
            );
            // ...so write it as if before the topic became compacted: the cleaner must keep it.
            let mut not_yet = compacted.clone();
            not_yet.cleanup_policy.compact = false;
            log.set_config(not_yet);
        }
        let appended = log.append(&batch, opts);
        log.set_config(compacted);
        let info = appended.or_fail("append")?;
        let m = &mut self.model;
        ensure!(
            info.base_offset == m.log_end_offset,
            "append at {} != log end {}",
            info.base_offset,
            m.log_end_offset
        );
        for (i, r) in recs.into_iter().enumerate() {
            m.records
                .insert(info.base_offset + i as i64, ((r.key, r.value), ts));
        }
        m.batches.insert(info.base_offset, info.last_offset);
        m.log_end_offset = info.last_offset + 1;
        Ok(())
    }

    /// A read at a random offset returns whole batches, starting with the one holding the
    /// offset, exactly the model's records in the range it covers, within `max_bytes`.
    fn read(
        &mut self,
        at: u32,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(), TestCaseError> {
        let log = self.log.as_ref().ok_or_else(|| fail("no log"))?;
        let m = &self.model;
        let span = (m.log_end_offset - m.log_start_offset + 1) as u32;
        let offset = m.log_start_offset + (at % span) as i64;
        let r = log
            .read(offset, max_bytes, log.high_watermark(), min_one_batch)
            .or_fail("read")?;
        let Some(region) = r.region else {
            ensure!(
                !min_one_batch || m.records.range(offset..).next().is_none(),
                "nothing read at {offset} though records follow"
            );
            return Ok(());
        };
        let bytes = region.to_vec().or_fail("region")?;
        let batches = parse_region(&bytes)?;
        ensure!(
            bytes.len() <= max_bytes || (min_one_batch && batches.len() == 1),
            "read of {} bytes for max_bytes {max_bytes}",
            bytes.len()
        );
        let (first, _) = batches.first().ok_or_else(|| fail("empty region"))?;
        let (last, _) = batches.last().ok_or_else(|| fail("empty region"))?;
        ensure!(
            first.last_offset() >= offset,
            "read at {offset} began at {}",
            first.base_offset
        );
        ensure!(
            m.records
                .range(offset..first.base_offset.max(offset))
                .next()
                .is_none(),
            "read at {offset} skipped records before {}",
            first.base_offset
        );
        if let Some((base, last_offset)) = m.batches.range(..=offset).next_back() {
            if *last_offset >= offset && m.records.range(base..=last_offset).next().is_some() {
                ensure!(
                    first.base_offset == *base,
                    "read at {offset} began at {}, not at its batch {base}",
                    first.base_offset
                );
            }
        }
        let mut seen = BTreeMap::new();
        for (h, recs) in &batches {
            ensure!(
                m.batches.get(&h.base_offset) == Some(&h.last_offset()),
                "read a batch {}..={} never appended",
                h.base_offset,
                h.last_offset()
            );
            seen.extend(
                recs.iter()
                    .filter(|(o, _)| *o >= m.log_start_offset)
                    .cloned(),
            );
        }
        let want: BTreeMap<i64, Rec> = m
            .records
            .range(first.base_offset..=last.last_offset())
            .map(|(o, (r, _))| (*o, r.clone()))
            .collect();
        ensure!(seen == want, "read at {offset} returned other records");
        Ok(())
    }

    fn retention(&mut self, bytes: i64) -> Result<(), TestCaseError> {
        let now = self.now_ms;
        let mut config = self.config.clone();
        config.retention_bytes = bytes;
        let restore = self.config.clone();
        let log = self.log()?;
        let bases = log.segment_base_offsets();
        let before = log.log_start_offset();
        log.set_config(config);
        log.enforce_retention(now).or_fail("retention")?;
        log.set_config(restore);
        let after = log.log_start_offset();
        ensure!(
            after == before || (after > before && bases.contains(&after)),
            "retention moved the log start from {before} to {after}, not to a segment base"
        );
        ensure!(
            after == before || log.size_bytes() as i64 >= bytes,
            "retention deleted more than retention.bytes asked"
        );
        self.model.drop_below(after);
        Ok(())
    }

    fn compact(&mut self, key_map_entries_max: usize) -> Result<(), TestCaseError> {
        let now = self.now_ms;
        let delete_retention_ms = self.config.delete_retention_ms;
        let log = self.log()?;
        // Where a pass must stop: the active segment, or the first segment not all fsynced.
        let bases = log.segment_base_offsets();
        let rp = log.recovery_point();
        let mut bound = *bases.last().ok_or_else(|| fail("no segment"))?;
        for w in bases.windows(2) {
            if w[1] > rp {
                bound = w[0];
                break;
            }
        }
        let cleaner = Cleaner::new(CleanerConfig {
            key_map_entries_max,
            ..CleanerConfig::default()
        });
        let Some(report) = cleaner.clean(log, now).or_fail("compact")? else {
            return Ok(());
        };
        ensure!(report.complete, "an undisturbed pass did not complete");
        let end = report.first_dirty_offset;
        ensure!(end <= bound, "cleaned up to {end}, past {bound}");
        ensure!(
            key_map_entries_max < 1_000 || end == bound,
            "a pass with room for every key stopped at {end}, not {bound}"
        );
        let want = self.model.compacted(end, now, delete_retention_ms);
        let removed = self.model.records.len() - want.len();
        ensure!(
            report.records_removed as usize >= removed,
            "the report counts {} records removed, the model {removed}",
            report.records_removed
        );
        self.model.records.retain(|o, _| want.contains_key(o));
        Ok(())
    }

    /// Drops the log without closing it; with `truncate_bytes`, also cuts the last segment
    /// short, but never below what was flushed.
    fn crash(&mut self, truncate_bytes: Option<u16>) -> Result<(), TestCaseError> {
        let log = self.log.take().ok_or_else(|| fail("no log"))?;
        let rp = log.recovery_point();
        let leo = log.log_end_offset();
        let last_base = *log
            .segment_base_offsets()
            .last()
            .ok_or_else(|| fail("no segment"))?;
        drop(log);
        if let Some(n) = truncate_bytes {
            let path = self.dir.join(format!("{last_base:020}.log"));
            truncate_unflushed(&path, rp, n as usize)?;
        }
        self.reopen()?;
        let log = self.log.as_ref().ok_or_else(|| fail("no log"))?;
        let new_leo = log.log_end_offset();
        ensure!(
            new_leo >= rp,
            "a crash lost flushed data: end {new_leo} < recovery point {rp}"
        );
        ensure!(new_leo <= leo, "a crash made the log longer");
        ensure!(
            truncate_bytes.is_some() || new_leo == leo,
            "a crash without lost bytes lost records"
        );
        ensure!(
            new_leo == leo || self.model.batches.contains_key(&new_leo),
            "recovery cut the log at {new_leo}, inside a batch"
        );
        self.model.truncate_to(new_leo);
        Ok(())
    }
}

/// Cuts up to `n` bytes off the end of `path`, keeping every batch below `recovery_point`.
fn truncate_unflushed(path: &Path, recovery_point: i64, n: usize) -> Result<(), TestCaseError> {
    let bytes = std::fs::read(path).or_fail("read segment")?;
    let mut durable = 0;
    let mut at = 0;
    while at + BATCH_HEADER_BYTES <= bytes.len() {
        let h = BatchHeader::parse(&bytes[at..]).or_fail("header")?;
        let end = at + h.total_bytes();
        if end > bytes.len() || h.next_offset() > recovery_point {
            break;
        }
        durable = end;
        at = end;
    }
    let len = bytes.len().saturating_sub(n).max(durable);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .or_fail("open segment")?;
    f.set_len(len as u64).or_fail("truncate")
}

fn run(setup: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(setup)?;
    for (i, op) in ops.iter().enumerate() {
        h.step(op)
            .map_err(|e| fail(format!("step {i} {op:?}: {e}")))?;
        let log = h.log.as_ref().ok_or_else(|| fail("no log"))?;
        check(log, &h.model).map_err(|e| fail(format!("after step {i} {op:?}: {e}")))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        // Relative to the crate (cargo runs tests there), next to the other crates' files.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_model(setup in setup(), ops in prop::collection::vec(op(), 1..120)) {
        run(&setup, &ops)?;
    }
}
