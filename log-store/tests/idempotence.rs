//! Idempotent producers through the public API: duplicates acknowledged with their original
//! offsets and never written twice, gaps and stale epochs refused, and the producer state
//! rebuilt after a crash (from a snapshot plus the headers after it), after truncation,
//! retention and compaction.

use std::path::{Path, PathBuf};

use log_store::testing::{build_batch, build_keyed_batch, read_batches, TestRecord};
use log_store::{
    AppendInfo, AppendOptions, Cleaner, CleanerConfig, CleanupPolicy, Error, Log, LogConfig,
    TopicPartition,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NOW_MS: i64 = 1_700_000_000_000;

fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms: NOW_MS,
    }
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

fn new_log(config: LogConfig) -> Result<(tempfile::TempDir, PathBuf, Log), Error> {
    let parent = tempfile::tempdir().map_err(|e| Error::Io {
        path: "tmp".into(),
        source: e,
    })?;
    let (log, _) = Log::create(parent.path(), &TopicPartition::new("t", 0), config, NOW_MS)?;
    let dir = log.dir().to_path_buf();
    Ok((parent, dir, log))
}

/// A batch of `n` records from producer `pid` at `epoch` starting at sequence `seq`.
fn batch(pid: i64, epoch: i16, seq: i32, n: i32) -> Vec<u8> {
    build_batch(n, 20, NOW_MS, Some((pid, epoch, seq)))
}

fn send(log: &mut Log, pid: i64, epoch: i16, seq: i32, n: i32) -> Result<AppendInfo, Error> {
    log.append(&batch(pid, epoch, seq, n), opts())
}

#[test]
fn duplicate_of_the_last_five_batches_gets_its_original_offsets() -> TestResult {
    let (_p, _dir, mut log) = new_log(LogConfig::default())?;
    send(&mut log, -1, -1, -1, 2)?; // a non-idempotent batch first
    let mut originals = Vec::new();
    for i in 0..6 {
        originals.push(send(&mut log, 7, 0, i * 3, 3)?);
    }
    let leo = log.log_end_offset();
    let batches = read_batches(&log)?.len();
    // The last five batches: each retry answers with the offsets it was written at.
    for (i, original) in originals.iter().enumerate().skip(1) {
        let again = send(&mut log, 7, 0, i as i32 * 3, 3)?;
        assert_eq!(
            (again.base_offset, again.last_offset),
            (original.base_offset, original.last_offset)
        );
        assert_eq!(again.batches, 0);
    }
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(read_batches(&log)?.len(), batches);
    // The sixth-last is forgotten: neither a duplicate nor in sequence.
    assert!(matches!(
        send(&mut log, 7, 0, 0, 3),
        Err(Error::OutOfOrderSequence { .. })
    ));
    // The sequence goes on.
    assert_eq!(send(&mut log, 7, 0, 18, 1)?.base_offset, leo);
    Ok(())
}

#[test]
fn gaps_stale_epochs_and_new_epochs() -> TestResult {
    let (_p, _dir, mut log) = new_log(LogConfig::default())?;
    send(&mut log, 3, 1, 0, 2)?;
    let leo = log.log_end_offset();
    assert!(matches!(
        send(&mut log, 3, 1, 5, 1),
        Err(Error::OutOfOrderSequence {
            sequence: 5,
            last_sequence: 1,
            ..
        })
    ));
    assert!(matches!(
        send(&mut log, 3, 0, 2, 1),
        Err(Error::InvalidProducerEpoch {
            epoch: 0,
            current_epoch: 1,
            ..
        })
    ));
    // A new epoch must start at 0.
    assert!(matches!(
        send(&mut log, 3, 2, 2, 1),
        Err(Error::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), leo, "refused batches write nothing");
    send(&mut log, 3, 2, 0, 1)?;
    // Now the old epoch is fenced.
    assert!(matches!(
        send(&mut log, 3, 1, 2, 1),
        Err(Error::InvalidProducerEpoch { .. })
    ));
    // An unknown producer may start anywhere (Kafka since KIP-360).
    send(&mut log, 4, 0, 40, 1)?;
    assert!(send(&mut log, 4, 0, 41, 1).is_ok());
    Ok(())
}

#[test]
fn sequence_wraps_around_at_i32_max() -> TestResult {
    let (_p, _dir, mut log) = new_log(LogConfig::default())?;
    send(&mut log, 5, 0, i32::MAX - 1, 2)?;
    send(&mut log, 5, 0, 0, 2)?;
    assert_eq!(send(&mut log, 5, 0, i32::MAX - 1, 2)?.base_offset, 0);
    Ok(())
}

#[test]
fn a_duplicate_inside_a_multi_batch_append_is_refused() -> TestResult {
    let (_p, _dir, mut log) = new_log(LogConfig::default())?;
    send(&mut log, 8, 0, 0, 1)?;
    let mut two = batch(8, 0, 1, 1);
    two.extend(batch(8, 0, 0, 1));
    assert!(matches!(
        log.append(&two, opts()),
        Err(Error::DuplicateSequence { .. })
    ));
    // Batches of one producer in one append are checked against each other.
    let mut two = batch(8, 0, 1, 1);
    two.extend(batch(8, 0, 2, 2));
    assert_eq!(log.append(&two, opts())?.last_offset, 3);
    assert_eq!(
        log.producer_state().entry(8).map(|e| e.batches().len()),
        Some(3)
    );
    Ok(())
}

/// Appends `rounds` batches for each of three producers; returns each producer's next sequence.
fn fill(log: &mut Log, rounds: i32) -> Result<[i32; 3], Error> {
    let mut next = [0; 3];
    for _ in 0..rounds {
        for (p, seq) in next.iter_mut().enumerate() {
            send(log, 100 + p as i64, 0, *seq, 2)?;
            *seq += 2;
        }
    }
    Ok(next)
}

fn snapshots(dir: &Path) -> Result<Vec<String>, std::io::Error> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".snapshot"))
        .collect();
    v.sort();
    Ok(v)
}

#[test]
fn state_survives_a_crash_from_a_snapshot_and_the_tail() -> TestResult {
    let (_p, dir, mut log) = new_log(small_config())?;
    let next = fill(&mut log, 20)?;
    assert!(log.segment_count() > 3);
    log.checkpoint()?;
    let at_checkpoint = log.log_end_offset();
    // The tail after the checkpoint's snapshot.
    send(&mut log, 100, 0, next[0], 2)?;
    send(&mut log, 101, 0, next[1], 2)?;
    let before = log.producer_state().entry(100).copied();
    drop(log); // no clean shutdown
    let (mut log, report) = Log::open(&dir, small_config(), NOW_MS)?;
    assert!(!report.clean_shutdown);
    // Only the tail after the newest snapshot is read (a roll may have snapshotted it too).
    let snapshot = report
        .producer_snapshot_offset
        .ok_or("no snapshot loaded")?;
    assert!(snapshot >= at_checkpoint);
    assert_eq!(
        report.producer_batches_replayed as i64,
        (log.log_end_offset() - snapshot) / 2
    );
    assert_eq!(log.producer_state().entry(100).copied(), before);
    // The tail's batch is a duplicate; the next one follows.
    let leo = log.log_end_offset();
    assert_eq!(send(&mut log, 101, 0, next[1], 2)?.base_offset, leo - 2);
    assert_eq!(send(&mut log, 102, 0, next[2], 2)?.base_offset, leo);
    assert!(matches!(
        send(&mut log, 100, 0, next[0] + 4, 2),
        Err(Error::OutOfOrderSequence { .. })
    ));
    // A clean close leaves a snapshot at the end: nothing to replay.
    let leo = log.log_end_offset();
    log.close()?;
    let (log, report) = Log::open(&dir, small_config(), NOW_MS)?;
    assert_eq!(report.producer_snapshot_offset, Some(leo));
    assert_eq!(report.producer_batches_replayed, 0);
    assert_eq!(log.producer_state().len(), 3);
    // One snapshot per segment base at most, plus the last one.
    assert!(snapshots(&dir)?.len() <= log.segment_count() + 1);
    Ok(())
}

#[test]
fn without_snapshots_the_whole_log_is_replayed() -> TestResult {
    let (_p, dir, mut log) = new_log(small_config())?;
    let next = fill(&mut log, 10)?;
    drop(log);
    for s in snapshots(&dir)? {
        std::fs::remove_file(dir.join(s))?;
    }
    let (mut log, report) = Log::open(&dir, small_config(), NOW_MS)?;
    assert_eq!(report.producer_snapshot_offset, None);
    assert_eq!(report.producer_batches_replayed, 30);
    assert_eq!(
        send(&mut log, 100, 0, next[0] - 2, 2)?.base_offset,
        log.log_end_offset() - 6
    );
    Ok(())
}

#[test]
fn truncation_drops_state_past_the_log_end() -> TestResult {
    let (_p, dir, mut log) = new_log(LogConfig::default())?;
    send(&mut log, 9, 0, 0, 2)?;
    log.flush()?;
    log.roll(NOW_MS)?; // snapshot at 2, kept as a segment base
    send(&mut log, 9, 0, 2, 2)?;
    log.checkpoint()?; // snapshot at 4
    drop(log);
    // A torn tail: the last batch is cut.
    let seg = dir.join(format!("{:020}.log", 2));
    let len = std::fs::metadata(&seg)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)?
        .set_len(len - 10)?;
    let (mut log, report) = Log::open(&dir, LogConfig::default(), NOW_MS)?;
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(report.producer_snapshot_offset, Some(2));
    assert_eq!(snapshots(&dir)?, vec![format!("{:020}.snapshot", 2)]);
    // The cut batch is not a duplicate: the retry is written.
    let info = send(&mut log, 9, 0, 2, 2)?;
    assert_eq!((info.base_offset, info.batches), (2, 1));
    Ok(())
}

#[test]
fn retention_keeps_the_state_of_active_producers() -> TestResult {
    let config = LogConfig {
        retention_bytes: 2048,
        ..small_config()
    };
    let (_p, dir, mut log) = new_log(config.clone())?;
    // Producer 1 writes once, then only others write until its batch is deleted.
    let first = send(&mut log, 1, 0, 0, 2)?;
    fill(&mut log, 20)?;
    let report = log.enforce_retention(NOW_MS)?;
    assert!(report.segments_deleted > 0);
    assert!(log.log_start_offset() > first.last_offset);
    drop(log);
    let (mut log, _) = Log::open(&dir, config, NOW_MS)?;
    let e = log
        .producer_state()
        .entry(1)
        .copied()
        .ok_or("producer 1 forgotten")?;
    assert_eq!(e.last_batch().map(|b| b.last_seq), Some(1));
    assert!(matches!(
        send(&mut log, 1, 0, 5, 1),
        Err(Error::OutOfOrderSequence { .. })
    ));
    send(&mut log, 1, 0, 2, 1)?;
    Ok(())
}

#[test]
fn the_cleaner_keeps_the_last_batch_of_each_producer() -> TestResult {
    let config = LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_cleanable_dirty_ratio: 0.0,
        ..small_config()
    };
    let (_p, dir, mut log) = new_log(config.clone())?;
    let rec = |k: &str| TestRecord {
        key: Some(k.as_bytes().to_vec()),
        value: Some(vec![b'v'; 30]),
        timestamp_delta: 0,
    };
    // Producer 1's only batch is superseded by later records with its key.
    let p1 = log.append(
        &build_keyed_batch(&[rec("k")], NOW_MS, Some((1, 0, 0)), 0),
        opts(),
    )?;
    for i in 0..60 {
        log.append(
            &build_keyed_batch(&[rec("k")], NOW_MS, Some((2, 0, i)), 0),
            opts(),
        )?;
    }
    log.roll(NOW_MS)?;
    log.flush()?;
    let report = Cleaner::new(CleanerConfig::default()).clean(&mut log, NOW_MS)?;
    assert!(report.is_some());
    let kept: Vec<i64> = read_batches(&log)?.iter().map(|(b, _)| *b).collect();
    assert!(
        kept.contains(&p1.base_offset),
        "producer 1's last batch is kept"
    );
    drop(log);
    for s in snapshots(&dir)? {
        std::fs::remove_file(dir.join(s))?;
    }
    let (mut log, _) = Log::open(&dir, config, NOW_MS)?;
    // The producer's retry of its batch (keyed: the topic is compacted) is still a duplicate.
    let retry = log.append(
        &build_keyed_batch(&[rec("k")], NOW_MS, Some((1, 0, 0)), 0),
        opts(),
    )?;
    assert_eq!(retry.base_offset, p1.base_offset);
    Ok(())
}
