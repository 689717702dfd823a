//! Transactions through the public API: the last stable offset, end-transaction markers and
//! their fencing, the aborted-transaction index (what a read_committed Fetch gets) across
//! segments, its recovery after a clean close, a crash, a torn tail and a damaged `.txnindex`,
//! and compaction of aborted data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use log_store::testing::{
    build_batch, build_keyed_batch, build_transactional_batch, build_transactional_keyed_batch,
    read_batches, SplitMix64, TestRecord,
};
use log_store::{
    AbortedTxn, AppendInfo, AppendOptions, BatchError, Cleaner, CleanupPolicy, Error, Log,
    LogConfig, ProducerEntry, TopicPartition,
};
use sluice_records::MarkerType;
use sluice_records::{attributes, validate_batch, BatchHeader};
use sluice_records::{parse_records, records_body};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const NOW_MS: i64 = 1_700_000_000_000;

fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms: NOW_MS,
    }
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 256,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

fn compact_config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_cleanable_dirty_ratio: 0.0,
        retention_ms: -1,
        ..small_config()
    }
}

fn new_log(config: LogConfig) -> TestResult<(tempfile::TempDir, PathBuf, Log)> {
    let parent = tempfile::tempdir()?;
    let (log, _) = Log::create(parent.path(), &TopicPartition::new("tx", 0), config, NOW_MS)?;
    let dir = log.dir().to_path_buf();
    Ok((parent, dir, log))
}

fn txn_batch(log: &mut Log, pid: i64, epoch: i16, seq: i32, n: i32) -> Result<AppendInfo, Error> {
    log.append(
        &build_transactional_batch(n, 40, NOW_MS, (pid, epoch, seq)),
        opts(),
    )
}

fn marker(log: &mut Log, pid: i64, epoch: i16, m: MarkerType) -> Result<AppendInfo, Error> {
    log.append_marker(pid, epoch, m, 0, opts())
}

fn all_aborted(log: &Log) -> Vec<AbortedTxn> {
    log.aborted_transactions(log.log_start_offset(), i64::MAX)
}

fn ongoing(log: &Log) -> Vec<(i64, i64)> {
    log.producer_state().ongoing_transactions().collect()
}

fn producers(log: &Log) -> Vec<(i64, ProducerEntry)> {
    let mut v: Vec<(i64, ProducerEntry)> =
        log.producer_state().iter().map(|(p, e)| (p, *e)).collect();
    v.sort_by_key(|(p, _)| *p);
    v
}

fn file_with_suffix(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}"))
}

#[test]
fn the_lso_is_pinned_by_an_ongoing_transaction_until_it_ends() -> TestResult {
    let (_p, _dir, mut log) = new_log(LogConfig::default())?;
    log.append(&build_batch(2, 10, NOW_MS, None), opts())?;
    assert_eq!(log.last_stable_offset(), 2);
    let t1 = txn_batch(&mut log, 1, 0, 0, 3)?; // 2..=4
    assert_eq!((log.last_stable_offset(), log.high_watermark()), (2, 5));
    log.append(&build_batch(2, 10, NOW_MS, None), opts())?; // 5..=6
    let t2 = txn_batch(&mut log, 2, 0, 0, 1)?; // 7
    txn_batch(&mut log, 1, 0, 3, 1)?; // 8: same transaction
    assert_eq!(log.last_stable_offset(), t1.base_offset);
    assert_eq!(ongoing(&log), vec![(1, 2), (2, 7)]);
    // A read_committed fetch stops at the LSO.
    let read = log.read(0, 1 << 20, log.last_stable_offset(), true)?;
    assert_eq!(read.last_stable_offset, 2);
    let region = read.region.ok_or("nothing read")?.to_vec()?;
    assert_eq!(BatchHeader::parse(&region)?.next_offset(), 2);
    assert_eq!(region.len(), BatchHeader::parse(&region)?.total_bytes());

    let commit = marker(&mut log, 1, 0, MarkerType::Commit)?; // 9
    assert_eq!(commit.base_offset, 9);
    assert_eq!(log.last_stable_offset(), t2.base_offset);
    assert!(all_aborted(&log).is_empty(), "a commit is not indexed");
    let abort = marker(&mut log, 2, 0, MarkerType::Abort)?; // 10
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    assert_eq!(
        log.read(0, 1, log.high_watermark(), true)?
            .last_stable_offset,
        11
    );
    assert_eq!(
        log.aborted_transactions(0, 11),
        vec![AbortedTxn {
            producer_id: 2,
            first_offset: 7,
            last_offset: abort.base_offset,
            last_stable_offset: 11
        }]
    );
    assert!(log.aborted_transactions(11, 20).is_empty());
    assert!(log.aborted_transactions(0, 7).is_empty());
    // A marker without a transaction is written (as Kafka does) and indexes nothing.
    let extra = marker(&mut log, 2, 0, MarkerType::Abort)?;
    assert_eq!((extra.base_offset, extra.batches), (11, 1));
    assert_eq!(all_aborted(&log).len(), 1);
    assert_eq!(log.last_stable_offset(), 12);
    let e = log.producer_state().entry(1).copied().ok_or("producer 1")?;
    assert_eq!(
        (
            e.current_txn_first_offset(),
            e.coordinator_epoch(),
            e.last_sequence()
        ),
        (None, 0, 3)
    );
    assert_eq!(log.producer_state().iter().count(), 2);
    Ok(())
}

#[test]
fn markers_are_written_as_kafka_writes_them() -> TestResult {
    let config = LogConfig {
        message_timestamp_type: log_store::TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let (_p, _dir, mut log) = new_log(config)?;
    txn_batch(&mut log, 77, 3, 0, 1)?;
    log.append_marker(
        77,
        3,
        MarkerType::Abort,
        12,
        AppendOptions {
            leader_epoch: 4,
            now_ms: 5_000,
        },
    )?;
    let batches = read_batches(&log)?;
    let (_, bytes) = batches.last().ok_or("no marker")?;
    let h = validate_batch(bytes)?;
    assert!(h.is_control() && h.is_transactional());
    assert_eq!(
        (
            h.base_offset,
            h.partition_leader_epoch,
            h.producer_id,
            h.producer_epoch
        ),
        (1, 4, 77, 3)
    );
    assert_eq!(
        (h.base_sequence, h.records_count, h.last_offset_delta),
        (-1, 1, 0)
    );
    assert_eq!(h.max_timestamp, 5_000);
    let body = records_body(bytes, sluice_records::BATCH_DECOMPRESSED_BYTES_MAX)?;
    let recs = parse_records(&body, 1)?;
    let key = recs[0].key.clone().ok_or("no key")?;
    let value = recs[0].value.clone().ok_or("no value")?;
    assert_eq!(&body[key], &[0, 0, 0, 0]);
    assert_eq!(&body[value], &[0, 0, 0, 0, 0, 12]);
    Ok(())
}

#[test]
fn markers_are_fenced_and_an_epoch_bump_restarts_the_sequence() -> TestResult {
    let (_p, _dir, mut log) = new_log(LogConfig::default())?;
    txn_batch(&mut log, 5, 1, 0, 2)?;
    let leo = log.log_end_offset();
    assert!(matches!(
        log.append_marker(5, 0, MarkerType::Commit, 3, opts()),
        Err(Error::InvalidProducerEpoch {
            producer_id: 5,
            epoch: 0,
            current_epoch: 1
        })
    ));
    assert_eq!(log.log_end_offset(), leo, "a fenced marker writes nothing");
    log.append_marker(5, 1, MarkerType::Commit, 3, opts())?;
    txn_batch(&mut log, 5, 1, 2, 1)?;
    assert!(matches!(
        log.append_marker(5, 1, MarkerType::Abort, 2, opts()),
        Err(Error::TransactionCoordinatorFenced {
            producer_id: 5,
            coordinator_epoch: 2,
            current: 3
        })
    ));
    assert!(log
        .producer_state()
        .entry(5)
        .and_then(|e| e.current_txn_first_offset())
        .is_some());
    // The coordinator aborts with a bumped epoch (InitProducerId during a transaction).
    log.append_marker(5, 2, MarkerType::Abort, 3, opts())?;
    assert_eq!(all_aborted(&log).len(), 1);
    let leo = log.log_end_offset();
    assert!(matches!(
        txn_batch(&mut log, 5, 1, 3, 1),
        Err(Error::InvalidProducerEpoch {
            epoch: 1,
            current_epoch: 2,
            ..
        })
    ));
    assert!(matches!(
        txn_batch(&mut log, 5, 2, 3, 1),
        Err(Error::OutOfOrderSequence {
            sequence: 3,
            last_sequence: -1,
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(txn_batch(&mut log, 5, 2, 0, 1)?.base_offset, leo);
    // A marker for a producer the partition never saw is written.
    log.append_marker(999, 0, MarkerType::Commit, 0, opts())?;
    assert_eq!(
        log.producer_state()
            .entry(999)
            .map(|e| (e.epoch, e.last_sequence())),
        Some((0, -1))
    );
    assert!(log
        .append_marker(-1, 0, MarkerType::Commit, 0, opts())
        .is_err());
    Ok(())
}

#[test]
fn a_non_transactional_batch_during_a_transaction_is_refused() -> TestResult {
    let (_p, _dir, mut log) = new_log(LogConfig::default())?;
    txn_batch(&mut log, 3, 0, 0, 2)?;
    let leo = log.log_end_offset();
    let plain = build_batch(1, 10, NOW_MS, Some((3, 0, 2)));
    assert!(matches!(
        log.append(&plain, opts()),
        Err(Error::InvalidTxnState { producer_id: 3 })
    ));
    // Also inside one append, against the batch staged before it.
    let mut two = build_transactional_batch(1, 10, NOW_MS, (4, 0, 0));
    two.extend(build_batch(1, 10, NOW_MS, Some((4, 0, 1))));
    assert!(matches!(
        log.append(&two, opts()),
        Err(Error::InvalidTxnState { producer_id: 4 })
    ));
    assert_eq!(log.log_end_offset(), leo);
    assert!(log.producer_state().entry(4).is_none());
    marker(&mut log, 3, 0, MarkerType::Commit)?;
    assert_eq!(log.append(&plain, opts())?.base_offset, leo + 1);
    Ok(())
}

#[test]
fn clients_cannot_append_control_batches() -> TestResult {
    let (_p, _dir, mut log) = new_log(LogConfig::default())?;
    let rec = TestRecord {
        key: Some(vec![0, 0, 0, 1]),
        value: Some(vec![0, 0, 0, 0, 0, 0]),
        timestamp_delta: 0,
    };
    let control = build_keyed_batch(
        &[rec],
        NOW_MS,
        Some((1, 0, -1)),
        attributes::TRANSACTIONAL | attributes::CONTROL,
    );
    assert!(matches!(
        log.append(&control, opts()),
        Err(Error::InvalidBatch(BatchError::Inconsistent(_)))
    ));
    assert_eq!(log.log_end_offset(), 0);
    Ok(())
}

/// What the log holds, for the model: batches and markers in offset order.
#[derive(Debug, Clone, Copy)]
enum Event {
    Data { pid: i64, base: i64, txn: bool },
    Marker { pid: i64, offset: i64, abort: bool },
}

/// The LSO, aborted transactions and ongoing `(pid, first)` the events below `leo` make, by
/// Kafka's rules.
fn expected(events: &[Event], leo: i64) -> (i64, Vec<AbortedTxn>, Vec<(i64, i64)>) {
    let mut ongoing: BTreeMap<i64, i64> = BTreeMap::new();
    let mut current: BTreeMap<i64, i64> = BTreeMap::new();
    let mut aborted = Vec::new();
    for e in events {
        match *e {
            Event::Data { pid, base, txn } if base < leo && txn && !current.contains_key(&pid) => {
                current.insert(pid, base);
                ongoing.insert(base, pid);
            }
            Event::Marker { pid, offset, abort } if offset < leo => {
                if let Some(first) = current.remove(&pid) {
                    ongoing.remove(&first);
                    let lso = ongoing.keys().next().copied().unwrap_or(offset + 1);
                    if abort {
                        aborted.push(AbortedTxn {
                            producer_id: pid,
                            first_offset: first,
                            last_offset: offset,
                            last_stable_offset: lso,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    let lso = ongoing.keys().next().copied().unwrap_or(leo).min(leo);
    aborted.sort_by_key(|t| t.first_offset);
    let ongoing = ongoing.iter().map(|(f, p)| (*p, *f)).collect();
    (lso, aborted, ongoing)
}

struct Producer {
    pid: i64,
    seq: i32,
    in_txn: bool,
}

/// Three transactional producers and a plain one, interleaved at random.
fn interleaved(log: &mut Log, seed: u64, steps: usize) -> TestResult<(Vec<Event>, Vec<Producer>)> {
    let mut rng = SplitMix64::new(seed);
    let mut events = Vec::new();
    let mut ps: Vec<Producer> = (0..3)
        .map(|i| Producer {
            pid: 10 + i,
            seq: 0,
            in_txn: false,
        })
        .collect();
    for _ in 0..steps {
        let i = rng.below(4) as usize;
        if i == 3 {
            let info = log.append(
                &build_batch(1 + rng.below(2) as i32, 30, NOW_MS, None),
                opts(),
            )?;
            events.push(Event::Data {
                pid: -1,
                base: info.base_offset,
                txn: false,
            });
            continue;
        }
        let p = &mut ps[i];
        let r = rng.below(10);
        if p.in_txn && r < 4 {
            let abort = r < 2;
            let m = if abort {
                MarkerType::Abort
            } else {
                MarkerType::Commit
            };
            let info = marker(log, p.pid, 0, m)?;
            events.push(Event::Marker {
                pid: p.pid,
                offset: info.base_offset,
                abort,
            });
            p.in_txn = false;
        } else {
            let n = 1 + rng.below(3) as i32;
            let info = txn_batch(log, p.pid, 0, p.seq, n)?;
            events.push(Event::Data {
                pid: p.pid,
                base: info.base_offset,
                txn: true,
            });
            p.seq += n;
            p.in_txn = true;
        }
    }
    Ok((events, ps))
}

/// Compares the log's LSO, ongoing transactions and `aborted_transactions` over many ranges with
/// the model's.
fn check_against_model(log: &Log, events: &[Event]) -> TestResult {
    let leo = log.log_end_offset();
    let (lso, aborted, ongoing_txns) = expected(events, leo);
    assert_eq!(log.last_stable_offset(), lso);
    assert_eq!(ongoing(log), ongoing_txns);
    assert_eq!(all_aborted(log), aborted);
    for from in (0..=leo).step_by(3) {
        for upper in (from + 1..=leo + 1).step_by(5) {
            let want: Vec<AbortedTxn> = aborted
                .iter()
                .filter(|t| t.last_offset >= from && t.first_offset < upper)
                .copied()
                .collect();
            assert_eq!(
                log.aborted_transactions(from, upper),
                want,
                "[{from}, {upper})"
            );
        }
    }
    Ok(())
}

#[test]
fn aborted_transactions_of_interleaved_producers_across_segments() -> TestResult {
    let (_p, dir, mut log) = new_log(small_config())?;
    let (events, _) = interleaved(&mut log, 42, 160)?;
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    let (_, aborted, _) = expected(&events, log.log_end_offset());
    assert!(aborted.len() >= 5, "{} aborts", aborted.len());
    // Entries whose marker is in another segment than their first offset exist.
    let bases = log.segment_base_offsets();
    let segment_of = |o: i64| bases.iter().rposition(|b| *b <= o);
    assert!(aborted
        .iter()
        .any(|t| segment_of(t.first_offset) != segment_of(t.last_offset)));
    check_against_model(&log, &events)?;
    // Each entry is in its marker's segment's .txnindex, 34 bytes each.
    for base in &bases {
        let next = bases
            .iter()
            .find(|b| *b > base)
            .copied()
            .unwrap_or(i64::MAX);
        let n = aborted
            .iter()
            .filter(|t| t.last_offset >= *base && t.last_offset < next)
            .count();
        let path = file_with_suffix(&dir, *base, "txnindex");
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, 34 * n as u64, "{}", path.display());
    }
    Ok(())
}

#[test]
fn transactions_survive_a_clean_close_a_crash_and_a_torn_tail() -> TestResult {
    let config = small_config();
    let (_p, dir, mut log) = new_log(config.clone())?;
    let (mut events, mut ps) = interleaved(&mut log, 7, 120)?;
    // At least one transaction stays open across the restarts.
    if !ps[0].in_txn {
        let info = txn_batch(&mut log, ps[0].pid, 0, ps[0].seq, 1)?;
        events.push(Event::Data {
            pid: ps[0].pid,
            base: info.base_offset,
            txn: true,
        });
        ps[0].seq += 1;
        ps[0].in_txn = true;
    }
    check_against_model(&log, &events)?;
    let before = producers(&log);

    // Clean close: everything comes from the snapshot at the log end.
    log.close()?;
    let (mut log, report) = Log::open(&dir, config.clone(), NOW_MS)?;
    assert!(report.clean_shutdown);
    assert_eq!(report.producer_batches_replayed, 0);
    check_against_model(&log, &events)?;
    assert_eq!(producers(&log), before);

    // A crash after an abort past the last snapshot, with that segment's .txnindex lost: the
    // replay rebuilds it.
    log.roll(NOW_MS)?;
    let p = &mut ps[1];
    let info = txn_batch(&mut log, p.pid, 0, p.seq, 2)?;
    p.seq += 2;
    events.push(Event::Data {
        pid: p.pid,
        base: info.base_offset,
        txn: true,
    });
    let abort = marker(&mut log, p.pid, 0, MarkerType::Abort)?;
    p.in_txn = false;
    events.push(Event::Marker {
        pid: p.pid,
        offset: abort.base_offset,
        abort: true,
    });
    let last_base = *log.segment_base_offsets().last().ok_or("no segment")?;
    assert!(abort.base_offset >= last_base);
    let before = producers(&log);
    check_against_model(&log, &events)?;
    drop(log);
    std::fs::remove_file(file_with_suffix(&dir, last_base, "txnindex"))?;
    let (log, report) = Log::open(&dir, config.clone(), NOW_MS)?;
    assert!(!report.clean_shutdown);
    assert!(report.producer_batches_replayed >= 2);
    check_against_model(&log, &events)?;
    assert_eq!(producers(&log), before);
    assert_eq!(
        std::fs::metadata(file_with_suffix(&dir, last_base, "txnindex"))?.len(),
        34
    );

    // Another crash, and the abort marker (the last batch) torn: it is cut off, its entry
    // goes and its transaction is ongoing again.
    drop(log);
    let seg = file_with_suffix(&dir, last_base, "log");
    let len = std::fs::metadata(&seg)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)?
        .set_len(len - 10)?;
    let (mut log, report) = Log::open(&dir, config.clone(), NOW_MS)?;
    assert_eq!(report.truncated_at_offset, Some(abort.base_offset));
    assert_eq!(log.log_end_offset(), abort.base_offset);
    check_against_model(&log, &events)?;
    assert!(ongoing(&log).iter().any(|(pid, _)| *pid == ps[1].pid));
    assert_eq!(
        std::fs::metadata(file_with_suffix(&dir, last_base, "txnindex"))?.len(),
        0
    );
    // The coordinator retries the marker.
    marker(&mut log, ps[1].pid, 0, MarkerType::Abort)?;
    check_against_model(&log, &events)?;
    let before = producers(&log);
    log.close()?;
    let (log, _) = Log::open(&dir, config, NOW_MS)?;
    check_against_model(&log, &events)?;
    assert_eq!(producers(&log), before);
    Ok(())
}

#[test]
fn without_snapshots_the_whole_log_rebuilds_the_same_transactions() -> TestResult {
    let config = small_config();
    let (_p, dir, mut log) = new_log(config.clone())?;
    let (events, _) = interleaved(&mut log, 99, 100)?;
    let before = producers(&log);
    drop(log);
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".snapshot") || name.ends_with(".txnindex") {
            std::fs::remove_file(&path)?;
        }
    }
    let (log, report) = Log::open(&dir, config, NOW_MS)?;
    assert_eq!(report.producer_snapshot_offset, None);
    check_against_model(&log, &events)?;
    assert_eq!(producers(&log), before);
    Ok(())
}

#[test]
fn a_damaged_txn_index_is_cut_and_rebuilt_on_open() -> TestResult {
    let config = small_config();
    let (_p, dir, mut log) = new_log(config.clone())?;
    let (events, _) = interleaved(&mut log, 3, 160)?;
    log.close()?;
    let mut with_entries: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "txnindex") {
            let bytes = std::fs::read(&path)?;
            if !bytes.is_empty() {
                with_entries.push((path, bytes));
            }
        }
    }
    with_entries.sort();
    assert!(with_entries.len() >= 3, "{} indexes", with_entries.len());
    let mut rng = SplitMix64::new(11);
    // Random trailing bytes on one index, a bad version on another's first entry.
    let (trailing, original) = &with_entries[1];
    let mut bytes = original.clone();
    bytes.extend((0..21).map(|_| rng.next_u64() as u8));
    std::fs::write(trailing, &bytes)?;
    let (versioned, original_v) = &with_entries[with_entries.len() - 1];
    let mut bytes = original_v.clone();
    bytes[1] = 7;
    std::fs::write(versioned, &bytes)?;
    // An index without a segment is an orphan, removed like the others.
    let orphan = file_with_suffix(&dir, 999_999, "txnindex");
    std::fs::write(&orphan, [0u8; 34])?;

    let (log, report) = Log::open(&dir, config.clone(), NOW_MS)?;
    assert_eq!(report.txn_indexes_repaired, 2);
    check_against_model(&log, &events)?;
    assert_eq!(&std::fs::read(trailing)?, original);
    assert_eq!(&std::fs::read(versioned)?, original_v);
    assert!(!orphan.exists());
    drop(log);
    // Garbage only, in every index: still no panic, still rebuilt.
    for (path, _) in &with_entries {
        let junk: Vec<u8> = (0..100).map(|_| rng.next_u64() as u8).collect();
        std::fs::write(path, junk)?;
    }
    let (log, report) = Log::open(&dir, config, NOW_MS)?;
    assert!(report.txn_indexes_repaired >= 1);
    check_against_model(&log, &events)?;
    Ok(())
}

#[test]
fn deleted_segments_take_their_txn_index_along() -> TestResult {
    let (_p, dir, mut log) = new_log(small_config())?;
    let (_, _) = interleaved(&mut log, 5, 120)?;
    // End every transaction so that DeleteRecords can go anywhere.
    for pid in 10..13 {
        marker(&mut log, pid, 0, MarkerType::Commit)?;
    }
    let indexed: Vec<i64> = log
        .segment_base_offsets()
        .into_iter()
        .filter(|b| file_with_suffix(&dir, *b, "txnindex").exists())
        .collect();
    assert!(!indexed.is_empty());
    let hw = log.high_watermark();
    log.delete_records(hw, NOW_MS)?;
    for b in indexed {
        assert!(!file_with_suffix(&dir, b, "txnindex").exists());
    }
    assert!(all_aborted(&log).is_empty());
    assert_eq!(log.last_stable_offset(), hw);
    Ok(())
}

fn rec(key: &str, value: &str) -> TestRecord {
    TestRecord {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        timestamp_delta: 0,
    }
}

/// Records by offset: (key, value, batch is control).
type Visible = BTreeMap<i64, (Vec<u8>, Vec<u8>, bool)>;

/// Every record a full read returns.
fn visible(log: &Log) -> TestResult<Visible> {
    let mut out = BTreeMap::new();
    for (_, bytes) in read_batches(log)? {
        let h = validate_batch(&bytes)?;
        let body = records_body(&bytes, sluice_records::BATCH_DECOMPRESSED_BYTES_MAX)?;
        for r in parse_records(&body, h.records_count)? {
            let k = r.key.map(|k| body[k].to_vec()).unwrap_or_default();
            let v = r.value.map(|v| body[v].to_vec()).unwrap_or_default();
            out.insert(h.base_offset + r.offset_delta, (k, v, h.is_control()));
        }
    }
    Ok(out)
}

fn latest_value(v: &Visible, key: &str) -> Option<Vec<u8>> {
    v.values()
        .filter(|(k, _, control)| !control && k == key.as_bytes())
        .map(|(_, v, _)| v.clone())
        .next_back()
}

#[test]
fn compaction_drops_aborted_records_without_letting_them_shadow() -> TestResult {
    let config = compact_config();
    let (_p, dir, mut log) = new_log(config.clone())?;
    let keyed = |log: &mut Log, recs: &[TestRecord], p: (i64, i16, i32)| {
        log.append(&build_transactional_keyed_batch(recs, NOW_MS, p), opts())
    };
    keyed(&mut log, &[rec("k", "committed")], (1, 0, 0))?;
    marker(&mut log, 1, 0, MarkerType::Commit)?;
    let aborted_at = keyed(
        &mut log,
        &[rec("k", "aborted"), rec("j", "aborted")],
        (2, 0, 0),
    )?;
    // Another producer's committed transaction interleaved with the aborted one.
    keyed(&mut log, &[rec("m", "committed")], (3, 0, 0))?;
    let last_aborted = keyed(&mut log, &[rec("k", "aborted-again")], (2, 0, 2))?;
    marker(&mut log, 3, 0, MarkerType::Commit)?;
    marker(&mut log, 2, 0, MarkerType::Abort)?;
    // Producer 2 goes on: its aborted batches are no longer its last.
    keyed(&mut log, &[rec("z", "1")], (2, 0, 3))?;
    marker(&mut log, 2, 0, MarkerType::Commit)?;
    for i in 0..30 {
        log.append(
            &build_keyed_batch(
                &[rec(&format!("f{}", i % 5), "filler-value")],
                NOW_MS,
                None,
                0,
            ),
            opts(),
        )?;
    }
    log.roll(NOW_MS)?;
    log.flush()?;
    let aborted_before = all_aborted(&log);
    assert_eq!(aborted_before.len(), 1);
    assert_eq!(aborted_before[0].first_offset, aborted_at.base_offset);
    let report = Cleaner::default()
        .clean(&mut log, NOW_MS)?
        .ok_or("no pass")?;
    assert!(report.batches_removed >= 2);
    let v = visible(&log)?;
    assert_eq!(latest_value(&v, "k"), Some(b"committed".to_vec()));
    assert_eq!(latest_value(&v, "j"), None);
    assert_eq!(latest_value(&v, "m"), Some(b"committed".to_vec()));
    assert!(!v.contains_key(&aborted_at.base_offset));
    assert!(!v.contains_key(&last_aborted.base_offset));
    assert_eq!(v.values().filter(|(_, _, c)| *c).count(), 4, "markers stay");
    // The index (kept through the swap) and the LSO are unchanged, and so after a reopen.
    assert_eq!(all_aborted(&log), aborted_before);
    log.close()?;
    let (mut log, _) = Log::open(&dir, config, NOW_MS)?;
    assert_eq!(all_aborted(&log), aborted_before);
    assert_eq!(visible(&log)?, v);
    // A second pass changes nothing more for these keys.
    log.append(
        &build_keyed_batch(&[rec("f0", "x")], NOW_MS, None, 0),
        opts(),
    )?;
    log.roll(NOW_MS)?;
    log.flush()?;
    Cleaner::default().clean(&mut log, NOW_MS)?;
    assert_eq!(
        latest_value(&visible(&log)?, "k"),
        Some(b"committed".to_vec())
    );
    Ok(())
}

#[test]
fn the_last_batch_of_a_producer_stays_as_an_empty_batch_when_aborted() -> TestResult {
    let (_p, _dir, mut log) = new_log(compact_config())?;
    let info = log.append(
        &build_transactional_keyed_batch(&[rec("k", "aborted")], NOW_MS, (4, 0, 0)),
        opts(),
    )?;
    marker(&mut log, 4, 0, MarkerType::Abort)?;
    for i in 0..30 {
        log.append(
            &build_keyed_batch(
                &[rec(&format!("f{}", i % 5), "filler-value")],
                NOW_MS,
                None,
                0,
            ),
            opts(),
        )?;
    }
    log.roll(NOW_MS)?;
    log.flush()?;
    Cleaner::default()
        .clean(&mut log, NOW_MS)?
        .ok_or("no pass")?;
    let kept = read_batches(&log)?
        .into_iter()
        .find(|(b, _)| *b == info.base_offset)
        .ok_or("the producer's last batch was dropped")?;
    let h = validate_batch(&kept.1)?;
    assert_eq!((h.records_count, h.producer_id, h.base_sequence), (0, 4, 0));
    assert!(h.is_transactional());
    assert_eq!(latest_value(&visible(&log)?, "k"), None);
    Ok(())
}

#[test]
fn the_cleaner_never_passes_an_ongoing_transaction() -> TestResult {
    let (_p, _dir, mut log) = new_log(compact_config())?;
    let plain = |log: &mut Log, i: usize| {
        log.append(
            &build_keyed_batch(
                &[rec(&format!("k{}", i % 4), &format!("v{i}"))],
                NOW_MS,
                None,
                0,
            ),
            opts(),
        )
    };
    for i in 0..40 {
        plain(&mut log, i)?;
    }
    let txn = log.append(
        &build_transactional_keyed_batch(&[rec("k0", "in-txn")], NOW_MS, (8, 0, 0)),
        opts(),
    )?;
    for i in 40..80 {
        plain(&mut log, i)?;
    }
    log.roll(NOW_MS)?;
    log.flush()?;
    assert_eq!(log.last_stable_offset(), txn.base_offset);
    let txn_segment = log
        .segment_base_offsets()
        .into_iter()
        .rfind(|b| *b <= txn.base_offset)
        .ok_or("no segment")?;
    assert!(txn_segment > 0);
    let plan = Cleaner::default().plan(&log, NOW_MS).ok_or("no plan")?;
    assert_eq!(plan.first_uncleanable_offset(), txn_segment);
    drop(plan);
    let tail_before: Vec<(i64, Vec<u8>)> = read_batches(&log)?
        .into_iter()
        .filter(|(b, _)| *b >= txn_segment)
        .collect();
    let report = Cleaner::default()
        .clean(&mut log, NOW_MS)?
        .ok_or("no pass")?;
    assert!(report.records_removed > 0);
    assert!(report.first_dirty_offset <= txn_segment);
    let tail_after: Vec<(i64, Vec<u8>)> = read_batches(&log)?
        .into_iter()
        .filter(|(b, _)| *b >= txn_segment)
        .collect();
    assert_eq!(
        tail_after, tail_before,
        "nothing at or past the LSO's segment changed"
    );
    // Once committed, the rest is cleanable.
    marker(&mut log, 8, 0, MarkerType::Commit)?;
    log.roll(NOW_MS)?;
    log.flush()?;
    let report = Cleaner::default()
        .clean(&mut log, NOW_MS)?
        .ok_or("no pass")?;
    assert!(report.first_dirty_offset > txn.base_offset);
    let v = visible(&log)?;
    assert_eq!(latest_value(&v, "k0"), Some(b"v76".to_vec()));
    assert!(
        !v.values().any(|(_, val, _)| val == b"in-txn"),
        "superseded once committed"
    );
    Ok(())
}
