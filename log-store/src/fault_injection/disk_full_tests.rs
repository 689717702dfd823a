//! A full disk through the fault layer: a write budget after which segment writes fail with
//! `ENOSPC`, the write that crosses it landing in part. The append must fail with a disk-full
//! error, leave nothing of itself visible (reads, file lengths, a reopen), keep reads working,
//! and succeed once space returns. Every cut point of a multi-batch append is tried.

use std::collections::BTreeMap;

use crate::fault_injection::FaultInjector;
use crate::testing::{as_produced, read_batches, seeded_batch};
use crate::{AppendOptions, Log, LogConfig, TopicPartition};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SEED: u64 = 4242;
const VALUE_BYTES_MAX: usize = 120;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 3_000,
        index_interval_bytes: 256,
        segment_index_bytes: 256,
        ..LogConfig::default()
    }
}

fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms: 0,
    }
}

/// The log's batches by base offset, as appended (log-assigned fields reset).
fn contents(log: &Log) -> Result<BTreeMap<i64, Vec<u8>>, crate::Error> {
    Ok(read_batches(log)?
        .into_iter()
        .map(|(b, bytes)| (b, as_produced(&bytes)))
        .collect())
}

fn data_file_bytes(log: &Log) -> std::io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(log.dir())? {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) == Some("log") {
            total += std::fs::metadata(&p)?.len();
        }
    }
    Ok(total)
}

/// Three batches in one append (a produce request with several batches for one partition).
fn three_batches(leo: i64) -> (Vec<u8>, Vec<(i64, Vec<u8>)>) {
    let mut records = Vec::new();
    let mut batches = Vec::new();
    let mut base = leo;
    for _ in 0..3 {
        let b = seeded_batch(SEED, base, VALUE_BYTES_MAX);
        let h = sluice_records::BatchHeader::parse(&b).map(|h| h.last_offset_delta as i64 + 1);
        records.extend_from_slice(&b);
        batches.push((base, b));
        base += h.unwrap_or(1);
    }
    (records, batches)
}

#[test]
fn enospc_at_every_cut_point_leaves_nothing_half_written() -> TestResult {
    let parent = tempfile::tempdir()?;
    let tp = TopicPartition::new("full", 0);
    let faults = FaultInjector::new();
    let (mut log, _) = Log::create_in(
        parent.path(),
        &tp,
        config(),
        0,
        crate::segment_file::Storage::Faulty(faults.clone()),
    )?;
    let dir = log.dir().to_path_buf();
    let mut expected: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    let mut cut_points = 0;
    for round in 0..40 {
        let leo = log.log_end_offset();
        let (records, batches) = three_batches(leo);
        // Space for a prefix of this append only: every round cuts at another byte.
        let budget = (round * 37) % records.len();
        faults.set_write_budget_bytes(Some(budget as u64));
        let before = faults.enospc_errors();
        let err = log
            .append(&records, opts())
            .err()
            .ok_or("an append past the write budget succeeded")?;
        assert!(err.is_disk_full(), "round {round}: {err}");
        assert!(faults.enospc_errors() > before);
        cut_points += 1;
        // Nothing of it is visible, in memory or on disk, and reads keep working.
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(contents(&log)?, expected, "round {round}");
        assert_eq!(data_file_bytes(&log)?, log.size_bytes(), "round {round}");
        // Space returns: the same append now succeeds at the same offset.
        faults.set_write_budget_bytes(None);
        let info = log.append(&records, opts())?;
        assert_eq!((info.base_offset, info.batches), (leo, 3));
        expected.extend(batches);
        if round % 3 == 0 {
            log.flush()?;
        }
    }
    assert_eq!(contents(&log)?, expected);
    assert!(log.segment_count() > 3, "the appends rolled segments too");
    // A reopen (after a crash, on the real file system) shows exactly the appended batches.
    drop(log);
    let (log, report) = Log::open(&dir, config(), 0)?;
    assert_eq!(
        report.truncated_bytes, 0,
        "no partial batch was left behind"
    );
    assert_eq!(contents(&log)?, expected);
    assert_eq!(cut_points, 40);
    Ok(())
}

#[test]
fn a_disk_that_stays_full_keeps_serving_reads() -> TestResult {
    let parent = tempfile::tempdir()?;
    let tp = TopicPartition::new("full", 1);
    let faults = FaultInjector::new();
    let (mut log, _) = Log::create_in(
        parent.path(),
        &tp,
        config(),
        0,
        crate::segment_file::Storage::Faulty(faults.clone()),
    )?;
    let mut expected = BTreeMap::new();
    for _ in 0..10 {
        let leo = log.log_end_offset();
        let b = seeded_batch(SEED, leo, VALUE_BYTES_MAX);
        log.append(&b, opts())?;
        expected.insert(leo, b);
    }
    log.flush()?;
    faults.set_write_budget_bytes(Some(0));
    for _ in 0..5 {
        let leo = log.log_end_offset();
        let err = log
            .append(&seeded_batch(SEED, leo, VALUE_BYTES_MAX), opts())
            .err()
            .ok_or("append on a full disk succeeded")?;
        assert!(err.is_disk_full(), "{err}");
        assert!(
            log.is_offline().is_none(),
            "a full disk is not a broken log"
        );
        assert_eq!(contents(&log)?, expected);
        // A flush with nothing new to sync still succeeds.
        log.flush()?;
    }
    faults.set_write_budget_bytes(None);
    let leo = log.log_end_offset();
    log.append(&seeded_batch(SEED, leo, VALUE_BYTES_MAX), opts())?;
    log.flush()?;
    assert_eq!(contents(&log)?.len(), expected.len() + 1);
    Ok(())
}
