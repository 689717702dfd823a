//! Public-API tests of compaction: what survives a pass, when a pass runs, compressed and control
//! batches, and crashes at each step of the cleaner's swap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use log_store::cleaner::{Cleaner, CleanerConfig};
use log_store::testing::{build_compressed_batch, build_keyed_batch, TestRecord};
use log_store::{AppendOptions, CleanupPolicy, Log, LogConfig, TopicPartition};
use sluice_records::MarkerType;
use sluice_records::{attributes, declared_batch_bytes, validate_batch, BatchHeader};
use sluice_records::{parse_records, records_body};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// (key, value) of one record; `None` value is a tombstone.
type Rec = (Option<Vec<u8>>, Option<Vec<u8>>);

const T0: i64 = 1_700_000_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        segment_index_bytes: 4096,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1_000,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn new_log(c: LogConfig) -> TestResult<(tempfile::TempDir, PathBuf, Log)> {
    let parent = tempfile::tempdir()?;
    let (log, _) = Log::create(parent.path(), &TopicPartition::new("c", 0), c, 0)?;
    let dir = log.dir().to_path_buf();
    Ok((parent, dir, log))
}

fn rec(key: Option<&str>, value: Option<&str>) -> TestRecord {
    TestRecord {
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        timestamp_delta: 0,
    }
}

/// Every record the log has appended, by offset, with its batch's timestamp.
#[derive(Default)]
struct Appended(BTreeMap<i64, (Rec, i64)>);

impl Appended {
    fn append(&mut self, log: &mut Log, recs: &[TestRecord], ts: i64) -> TestResult<i64> {
        self.append_bytes(log, &build_keyed_batch(recs, ts, None, 0), recs, ts)
    }

    fn append_bytes(
        &mut self,
        log: &mut Log,
        batch: &[u8],
        recs: &[TestRecord],
        ts: i64,
    ) -> TestResult<i64> {
        let info = log.append(
            batch,
            AppendOptions {
                leader_epoch: 0,
                now_ms: ts,
            },
        )?;
        for (i, r) in recs.iter().enumerate() {
            self.0.insert(
                info.base_offset + i as i64,
                ((r.key.clone(), r.value.clone()), ts),
            );
        }
        Ok(info.base_offset)
    }

    /// What a pass that mapped everything below `end` at `now_ms` leaves: below `end`, each
    /// key's latest record (a tombstone only while younger than `delete_retention_ms`) and every
    /// keyless record; everything from `end` on.
    fn expected(&self, end: i64, now_ms: i64, delete_retention_ms: i64) -> BTreeMap<i64, Rec> {
        let mut latest: BTreeMap<&[u8], i64> = BTreeMap::new();
        for (o, ((k, _), _)) in self.0.range(..end) {
            if let Some(k) = k {
                latest.insert(k, *o);
            }
        }
        self.0
            .iter()
            .filter(|(o, ((k, v), ts))| {
                if **o >= end {
                    return true;
                }
                let Some(k) = k else { return true };
                latest.get(k.as_slice()) == Some(*o)
                    && !(v.is_none() && now_ms - *ts > delete_retention_ms)
            })
            .map(|(o, (r, _))| (*o, r.clone()))
            .collect()
    }

    fn all(&self) -> BTreeMap<i64, Rec> {
        self.0.iter().map(|(o, (r, _))| (*o, r.clone())).collect()
    }
}

/// Batches as read: each header with its records by offset.
type Batches = Vec<(BatchHeader, Vec<(i64, Rec)>)>;

/// The batches a full read from the log start returns.
fn read_batches(log: &Log) -> TestResult<Batches> {
    let mut out = Vec::new();
    let hw = log.high_watermark();
    let mut offset = log.log_start_offset();
    while offset < hw {
        let r = log.read(offset, 700, hw, true)?;
        let Some(region) = r.region else { break };
        let bytes = region.to_vec()?;
        let mut at = 0;
        while at < bytes.len() {
            let len = declared_batch_bytes(&bytes[at..], bytes.len() - at)?;
            let batch = &bytes[at..at + len];
            let h = validate_batch(batch)?;
            assert!(
                h.last_offset() >= offset,
                "a read returned a batch before its offset"
            );
            let body = records_body(batch, sluice_records::BATCH_DECOMPRESSED_BYTES_MAX)?;
            let views = parse_records(&body, h.records_count)?;
            let recs = views
                .iter()
                .map(|v| {
                    let k = v.key.clone().map(|r| body[r].to_vec());
                    let val = v.value.clone().map(|r| body[r].to_vec());
                    (h.base_offset + v.offset_delta, (k, val))
                })
                .collect();
            out.push((h, recs));
            offset = h.next_offset();
            at += len;
        }
    }
    Ok(out)
}

fn visible(log: &Log) -> TestResult<BTreeMap<i64, Rec>> {
    let start = log.log_start_offset();
    Ok(read_batches(log)?
        .into_iter()
        .flat_map(|(_, r)| r)
        .filter(|(o, _)| *o >= start)
        .collect())
}

/// Writes `rounds` updates of keys `k0..k{keys}` as single-record batches, one timestamp step
/// each, so that several segments roll.
fn fill(log: &mut Log, appended: &mut Appended, rounds: usize, keys: usize, ts: i64) -> TestResult {
    for round in 0..rounds {
        for k in 0..keys {
            let v = format!("value-{round}-{k}-{}", "x".repeat(20));
            appended.append(log, &[rec(Some(&format!("k{k}")), Some(&v))], ts)?;
        }
    }
    Ok(())
}

#[test]
fn latest_value_per_key_survives_and_offsets_are_kept() -> TestResult {
    let (_p, dir, mut log) = new_log(config())?;
    let mut appended = Appended::default();
    fill(&mut log, &mut appended, 8, 5, T0)?;
    // A batch with several keys, some repeated inside it, and a keyless record: appends to a
    // compacted topic refuse keyless records, so this one was written before the topic became
    // compacted (the cleaner must still keep it).
    let compacted = log.config().clone();
    let mut not_yet = compacted.clone();
    not_yet.cleanup_policy.compact = false;
    log.set_config(not_yet);
    appended.append(
        &mut log,
        &[
            rec(Some("k1"), Some("a")),
            rec(None, Some("keyless")),
            rec(Some("k1"), Some("b")),
            rec(Some("k9"), Some("c")),
        ],
        T0,
    )?;
    log.set_config(compacted);
    fill(&mut log, &mut appended, 2, 5, T0)?;
    log.roll(T0)?;
    appended.append(&mut log, &[rec(Some("k0"), Some("in-active"))], T0)?;
    log.flush()?;
    let segments = log.segment_count();
    assert!(segments > 4, "{segments} segments");
    let end = *log.segment_base_offsets().last().ok_or("no segment")?;
    let before = log.size_bytes();

    let report = log.compact(T0 + 10)?.ok_or("no pass")?;
    assert_eq!(report.first_dirty_offset, end);
    assert!(report.complete);
    let expected = appended.expected(end, T0 + 10, 1_000);
    assert_eq!(visible(&log)?, expected);
    assert_eq!(
        report.records_removed as usize,
        appended.0.len() - expected.len()
    );
    assert_eq!(
        before - log.size_bytes(),
        report.bytes_before - report.bytes_after
    );
    // The keyless record and the batch's last record stay; offsets did not move.
    assert!(expected.values().any(|(k, _)| k.is_none()));
    assert_eq!(
        log.log_end_offset(),
        *appended.0.keys().last().ok_or("")? + 1
    );
    // A read in a gap starts at the next batch; batches keep their last_offset_delta.
    for (h, recs) in read_batches(&log)? {
        let last = recs.last().map(|r| r.0).ok_or("empty batch")?;
        assert!(last <= h.last_offset());
        assert_eq!(h.records_count as usize, recs.len());
    }
    // The same after a clean reopen and after a crash (indexes rebuilt or loaded).
    log.close()?;
    let (log, _) = Log::open(&dir, config(), 0)?;
    assert_eq!(visible(&log)?, expected);
    drop(log);
    let (mut log, _) = Log::open(&dir, config(), 0)?;
    assert_eq!(visible(&log)?, expected);
    // Nothing is dirty any more.
    assert!(log.compact(T0 + 20)?.is_none());
    Ok(())
}

#[test]
fn tombstones_go_only_after_delete_retention() -> TestResult {
    let (_p, _dir, mut log) = new_log(config())?;
    let mut appended = Appended::default();
    fill(&mut log, &mut appended, 3, 4, T0)?;
    let tomb = appended.append(&mut log, &[rec(Some("k2"), None)], T0 + 100)?;
    fill(&mut log, &mut appended, 1, 1, T0 + 100)?;
    log.roll(T0 + 100)?;
    log.flush()?;
    let end = log.log_end_offset();

    // Within delete.retention.ms: the old values of k2 go, the tombstone stays.
    log.compact(T0 + 100 + 1_000)?.ok_or("no pass")?;
    let v = visible(&log)?;
    assert_eq!(v, appended.expected(end, T0 + 1_100, 1_000));
    assert_eq!(v.get(&tomb), Some(&(Some(b"k2".to_vec()), None)));
    assert!(!v
        .values()
        .any(|(k, val)| k.as_deref() == Some(b"k2") && val.is_some()));

    // More dirty data later: the pass after delete.retention.ms drops the tombstone.
    fill(&mut log, &mut appended, 1, 1, T0 + 5_000)?;
    log.roll(T0 + 5_000)?;
    log.flush()?;
    let end = log.log_end_offset();
    log.compact(T0 + 5_000)?.ok_or("no pass")?;
    let v = visible(&log)?;
    assert_eq!(v, appended.expected(end, T0 + 5_000, 1_000));
    assert!(!v.contains_key(&tomb));
    assert!(!v.values().any(|(k, _)| k.as_deref() == Some(b"k2")));
    Ok(())
}

#[test]
fn dirty_ratio_is_respected_and_the_checkpoint_persists() -> TestResult {
    let mut c = config();
    c.min_cleanable_dirty_ratio = 0.5;
    let (_p, dir, mut log) = new_log(c.clone())?;
    let mut appended = Appended::default();
    // Many keys: most of the log stays after the first pass.
    fill(&mut log, &mut appended, 2, 30, T0)?;
    log.roll(T0)?;
    log.flush()?;
    let report = log.compact(T0)?.ok_or("no first pass")?;
    assert_eq!(report.dirty_ratio, 1.0);
    let clean_end = report.first_dirty_offset;
    let clean_bytes = log.size_bytes();

    // A little dirty data: below the ratio, no pass; the cleaner checkpoint survives a reopen.
    fill(&mut log, &mut appended, 1, 3, T0)?;
    log.roll(T0)?;
    log.flush()?;
    assert!(log.compact(T0)?.is_none());
    log.close()?;
    let (mut log, _) = Log::open(&dir, c.clone(), 0)?;
    assert!(Cleaner::default().plan(&log, T0).is_none());

    // Enough dirty bytes: a pass, from the checkpoint.
    while (log.size_bytes() - clean_bytes) < clean_bytes {
        fill(&mut log, &mut appended, 1, 5, T0)?;
    }
    log.roll(T0)?;
    log.flush()?;
    let plan = Cleaner::default().plan(&log, T0).ok_or("no plan")?;
    assert_eq!(plan.first_dirty_offset(), clean_end);
    assert!(plan.dirty_ratio() >= 0.5, "{}", plan.dirty_ratio());
    let cleaned = plan.execute()?;
    let report = log.install_cleaned(cleaned)?;
    assert_eq!(report.first_dirty_offset, log.log_end_offset());
    assert_eq!(
        visible(&log)?,
        appended.expected(log.log_end_offset(), T0, 1_000)
    );
    // A delete-only policy never compacts.
    let mut d = c;
    d.set("cleanup.policy", "delete")?;
    log.set_config(d);
    fill(&mut log, &mut appended, 3, 5, T0)?;
    log.roll(T0)?;
    log.flush()?;
    assert!(log.compact(T0)?.is_none());
    Ok(())
}

#[test]
fn min_compaction_lag_and_unflushed_segments_are_not_cleaned() -> TestResult {
    let mut c = config();
    c.min_compaction_lag_ms = 1_000;
    let (_p, _dir, mut log) = new_log(c)?;
    let mut appended = Appended::default();
    fill(&mut log, &mut appended, 5, 4, T0)?;
    log.roll(T0)?;
    let young_base = log.log_end_offset();
    fill(&mut log, &mut appended, 5, 4, T0 + 5_000)?;
    log.roll(T0 + 5_000)?;
    log.flush()?;
    let unflushed_base = log.log_end_offset();
    fill(&mut log, &mut appended, 5, 4, T0 + 9_000)?;
    log.roll(T0 + 9_000)?;

    // At T0 + 5_500 the segments written at T0 + 5_000 are too young: nothing from there on.
    let plan = Cleaner::default().plan(&log, T0 + 5_500).ok_or("no plan")?;
    assert_eq!(plan.first_uncleanable_offset(), young_base);
    drop(plan);
    let report = log.compact(T0 + 5_500)?.ok_or("no pass")?;
    assert_eq!(report.first_dirty_offset, young_base);
    assert_eq!(
        visible(&log)?,
        appended.expected(young_base, T0 + 5_500, 1_000)
    );

    // Later they are old enough, but the segments after the recovery point are not flushed.
    let plan = Cleaner::default()
        .plan(&log, T0 + 99_000)
        .ok_or("no plan")?;
    assert_eq!(plan.first_uncleanable_offset(), unflushed_base);
    drop(plan);
    log.flush()?;
    let plan = Cleaner::default()
        .plan(&log, T0 + 99_000)
        .ok_or("no plan")?;
    assert_eq!(plan.first_uncleanable_offset(), log.log_end_offset());
    Ok(())
}

#[test]
fn compressed_batches_are_recompressed_with_their_codec() -> TestResult {
    let (_p, _dir, mut log) = new_log(config())?;
    let mut appended = Appended::default();
    for round in 0..4 {
        for codec in 1..=4i16 {
            let recs: Vec<TestRecord> = (0..6)
                .map(|i| {
                    let key = format!("c{codec}-{}", i % 3);
                    let value = format!("r{round}-{i}-{}", "z".repeat(40));
                    rec(Some(&key), Some(&value))
                })
                .collect();
            let b = build_compressed_batch(&recs, T0, None, 0, codec)?;
            appended.append_bytes(&mut log, &b, &recs, T0)?;
        }
    }
    log.roll(T0)?;
    log.flush()?;
    let end = log.log_end_offset();
    log.compact(T0)?.ok_or("no pass")?;
    assert_eq!(visible(&log)?, appended.expected(end, T0, 1_000));
    let mut codecs = Vec::new();
    for (h, recs) in read_batches(&log)? {
        assert_eq!(h.records_count as usize, recs.len());
        assert_eq!(h.last_offset_delta, 5, "last_offset_delta is kept");
        codecs.push(h.compression());
    }
    assert_eq!(codecs, vec![1, 2, 3, 4], "one batch per codec survives");
    Ok(())
}

#[test]
fn control_batches_are_kept_whole() -> TestResult {
    let (_p, _dir, mut log) = new_log(config())?;
    let mut appended = Appended::default();
    let pid = Some((7, 0, 0));
    let txn = attributes::TRANSACTIONAL;
    let data = [rec(Some("k"), Some("v1"))];
    appended.append_bytes(&mut log, &build_keyed_batch(&data, T0, pid, txn), &data, T0)?;
    // A commit marker: key (version 0, type 1), as Kafka writes it.
    let opts = AppendOptions {
        leader_epoch: 0,
        now_ms: T0,
    };
    let marker_offset = log
        .append_marker(7, 0, MarkerType::Commit, 0, opts)?
        .base_offset;
    appended.0.insert(
        marker_offset,
        ((Some(vec![0, 0, 0, 1]), Some(vec![0, 0, 0, 0, 0, 0])), T0),
    );
    // A later data record whose key equals the marker's key bytes must not remove it.
    let same_key = [TestRecord {
        key: Some(vec![0, 0, 0, 1]),
        value: Some(b"data".to_vec()),
        timestamp_delta: 0,
    }];
    appended.append(&mut log, &same_key, T0)?;
    appended.append(&mut log, &[rec(Some("k"), Some("v2"))], T0)?;
    log.roll(T0)?;
    log.flush()?;
    log.compact(T0)?.ok_or("no pass")?;
    let batches = read_batches(&log)?;
    let control: Vec<_> = batches.iter().filter(|(h, _)| h.is_control()).collect();
    assert_eq!(control.len(), 1);
    assert_eq!(control[0].0.base_offset, marker_offset);
    assert_eq!(control[0].1.len(), 1);
    let v = visible(&log)?;
    assert!(!v.contains_key(&0), "k=v1 was replaced");
    assert_eq!(v.len(), 3, "the marker, the data with its key, and k=v2");
    Ok(())
}

#[test]
fn a_small_key_map_cleans_in_several_passes() -> TestResult {
    let (_p, _dir, mut log) = new_log(config())?;
    let mut appended = Appended::default();
    fill(&mut log, &mut appended, 6, 12, T0)?;
    log.roll(T0)?;
    log.flush()?;
    let end = log.log_end_offset();
    let cleaner = Cleaner::new(CleanerConfig {
        key_map_entries_max: 5,
        ..CleanerConfig::default()
    });
    let mut passes = 0;
    let mut last_end = 0;
    while let Some(report) = cleaner.clean(&mut log, T0)? {
        passes += 1;
        assert!(report.first_dirty_offset > last_end, "every pass advances");
        last_end = report.first_dirty_offset;
        // Whatever the pass reached is clean, and nothing is lost past it.
        assert_eq!(
            visible(&log)?
                .into_iter()
                .filter(|(o, _)| *o >= last_end)
                .collect::<BTreeMap<_, _>>(),
            appended
                .all()
                .into_iter()
                .filter(|(o, _)| *o >= last_end)
                .collect::<BTreeMap<_, _>>()
        );
        assert!(passes < 100);
    }
    assert!(passes > 3, "{passes} passes");
    assert_eq!(last_end, end);
    // Earlier passes could not see later values; a full pass over new dirty data finishes.
    fill(&mut log, &mut appended, 1, 1, T0)?;
    log.roll(T0)?;
    log.flush()?;
    log.compact(T0)?.ok_or("no pass")?;
    assert_eq!(
        visible(&log)?,
        appended.expected(log.log_end_offset(), T0, 1_000)
    );
    Ok(())
}

#[test]
fn emptied_segments_go_except_the_first_and_the_log_start_stays() -> TestResult {
    let (_p, dir, mut log) = new_log(config())?;
    let mut appended = Appended::default();
    fill(&mut log, &mut appended, 12, 3, T0)?;
    let old_segments = log.segment_count();
    // Replace every key at the end: all earlier segments end up empty.
    fill(&mut log, &mut appended, 1, 3, T0)?;
    log.roll(T0)?;
    log.flush()?;
    let report = log.compact(T0)?.ok_or("no pass")?;
    assert!(report.segments_deleted > 0);
    assert_eq!(log.segment_base_offsets()[0], 0, "the first segment stays");
    assert!(log.segment_count() < old_segments);
    assert_eq!(log.log_start_offset(), 0);
    let expected = appended.expected(log.log_end_offset(), T0, 1_000);
    assert_eq!(visible(&log)?, expected);
    // Reads from the start step over the gap.
    let r = log.read(0, 10_000, log.high_watermark(), true)?;
    let first = r.region.ok_or("no region")?.to_vec()?;
    assert_eq!(
        Some(&BatchHeader::parse(&first)?.base_offset),
        expected.keys().next()
    );
    log.enforce_retention(T0)?;
    assert_eq!(log.log_start_offset(), 0);
    log.close()?;
    let (mut log, _) = Log::open(&dir, config(), 0)?;
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(visible(&log)?, expected);
    // With `compact,delete`, the empty first segment does not hold time retention back.
    let mut c = config();
    c.set("cleanup.policy", "compact,delete")?;
    c.retention_ms = 1_000;
    log.set_config(c);
    let r = log.enforce_retention(T0 + 10_000)?;
    assert!(r.segments_deleted >= 2, "{r:?}");
    assert_eq!(log.log_start_offset(), log.log_end_offset());
    Ok(())
}

#[test]
fn a_segment_deleted_during_the_pass_is_skipped() -> TestResult {
    let (_p, _dir, mut log) = new_log(config())?;
    let mut appended = Appended::default();
    fill(&mut log, &mut appended, 8, 4, T0)?;
    log.roll(T0)?;
    log.flush()?;
    let plan = Cleaner::default().plan(&log, T0).ok_or("no plan")?;
    assert!(
        Cleaner::default().plan(&log, T0).is_none(),
        "one pass at a time"
    );
    let cleaned = plan.execute()?;
    let second = log.segment_base_offsets()[1];
    log.delete_records(second, T0)?;
    let report = log.install_cleaned(cleaned)?;
    assert_eq!(report.segments_skipped, 1);
    assert!(report.complete);
    let end = log.log_end_offset();
    let expected: BTreeMap<i64, Rec> = appended
        .expected(end, T0, 1_000)
        .into_iter()
        .filter(|(o, _)| *o >= second)
        .collect();
    assert_eq!(visible(&log)?, expected);
    assert!(Cleaner::default().plan(&log, T0).is_none(), "nothing dirty");
    Ok(())
}

/// Files of a directory with this suffix, sorted.
fn files_with_suffix(dir: &Path, suffix: &str) -> TestResult<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    Ok(v)
}

fn copy_dir(from: &Path, to: &Path) -> TestResult {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let p = e?.path();
        std::fs::copy(&p, to.join(p.file_name().ok_or("no name")?))?;
    }
    Ok(())
}

/// Replaces the `.log.cleaned` suffix.
fn with_suffix(cleaned: &Path, suffix: &str) -> PathBuf {
    let s = cleaned.to_string_lossy();
    PathBuf::from(format!("{}{suffix}", &s[..s.len() - ".log.cleaned".len()]))
}

/// Leaves the files as a crash after step `step` of swapping in the first `swapped` cleaned
/// segments (and step `step` of the next one) would.
fn crash_during_swap(dir: &Path, swapped: usize, step: usize) -> TestResult {
    let cleaned = files_with_suffix(dir, ".log.cleaned")?;
    for (i, c) in cleaned.iter().enumerate() {
        let steps = if i < swapped {
            5
        } else if i == swapped {
            step
        } else {
            0
        };
        // 1: renamed to .swap; 2: old .log deleted; 3: old indexes deleted;
        // 4: .swap renamed to .log; 5: indexes rebuilt (left to the open).
        if steps >= 1 {
            std::fs::rename(c, with_suffix(c, ".log.swap"))?;
        }
        if steps >= 2 {
            std::fs::remove_file(with_suffix(c, ".log"))?;
        }
        if steps >= 3 {
            std::fs::remove_file(with_suffix(c, ".index"))?;
            std::fs::remove_file(with_suffix(c, ".timeindex"))?;
        }
        if steps >= 4 {
            std::fs::rename(with_suffix(c, ".log.swap"), with_suffix(c, ".log"))?;
        }
    }
    Ok(())
}

#[test]
fn a_crash_at_any_step_of_the_swap_leaves_a_valid_log() -> TestResult {
    let (p, dir, mut log) = new_log(config())?;
    let mut appended = Appended::default();
    // Batches of four keys, then a new value for one key of each: every segment loses a
    // little, so the cleaned segments are still large enough to need index entries.
    for b in 0..16 {
        let recs: Vec<TestRecord> = (0..4)
            .map(|i| rec(Some(&format!("b{b}-{i}")), Some(&"v".repeat(30))))
            .collect();
        appended.append(&mut log, &recs, T0)?;
    }
    for b in 0..16 {
        appended.append(&mut log, &[rec(Some(&format!("b{b}-0")), Some("new"))], T0)?;
    }
    log.roll(T0)?;
    fill(&mut log, &mut appended, 1, 2, T0)?;
    log.flush()?;
    log.checkpoint()?;
    let end = *log.segment_base_offsets().last().ok_or("none")?;
    let leo = log.log_end_offset();
    let original = appended.all();
    let compacted = appended.expected(end, T0, 1_000);
    // Run the pass up to its output and "crash": the cleaned files stay, the log is not closed.
    let cleaned = Cleaner::default()
        .plan(&log, T0)
        .ok_or("no plan")?
        .execute()?;
    std::mem::forget(cleaned);
    drop(log);
    let n = files_with_suffix(&dir, ".log.cleaned")?.len();
    assert!(n >= 3, "{n} cleaned files");

    let mut case = 0;
    for swapped in 0..=n {
        for step in 0..=4 {
            if swapped == n && step > 0 {
                continue;
            }
            case += 1;
            let d = p.path().join(format!("case{case}")).join("c-0");
            copy_dir(&dir, &d)?;
            crash_during_swap(&d, swapped, step)?;
            let (mut log, _) = Log::open(&d, config(), 0)?;
            assert_eq!(log.log_end_offset(), leo);
            assert!(files_with_suffix(&d, ".cleaned")?.is_empty());
            assert!(files_with_suffix(&d, ".swap")?.is_empty());
            let v = visible(&log)?;
            // Records present are the ones appended; each key's latest value is there.
            for (o, r) in &v {
                assert_eq!(original.get(o), Some(r), "case {case}: offset {o}");
            }
            for (o, r) in &compacted {
                assert_eq!(v.get(o), Some(r), "case {case}: lost offset {o}");
            }
            // The segments swapped in are clean: a full pass ends at the compacted state.
            log.compact(T0)?;
            assert_eq!(visible(&log)?, compacted, "case {case}");
            // The swapped-in segments got their indexes back (a segment of this size has
            // offset index entries every `index.interval.bytes`).
            for l in files_with_suffix(&d, ".log")? {
                if std::fs::metadata(&l)?.len() > 512 {
                    let index = with_suffix(&l.with_extension("log.cleaned"), ".index");
                    assert!(
                        std::fs::metadata(&index)?.len() > 0,
                        "case {case}: {index:?}"
                    );
                }
            }
            // Every batch is readable at its own offset.
            for (h, _) in read_batches(&log)? {
                let r = log.read(h.base_offset, 1, log.high_watermark(), true)?;
                let b = r.region.ok_or("no region")?.to_vec()?;
                assert_eq!(BatchHeader::parse(&b)?.base_offset, h.base_offset);
            }
        }
    }
    Ok(())
}
