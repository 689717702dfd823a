//! Public-API tests of the log: append/read, roll, reopen, recovery from corruption, retention.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use log_store::testing::{build_batch, build_keyed_batch, TestRecord};
use log_store::{AppendOptions, Error, Log, LogConfig, OffsetSpec, TopicPartition};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn opts(now_ms: i64) -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms,
    }
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig) -> Result<Log, Error> {
    Log::open(dir, config, 0).map(|(l, _)| l)
}

fn new_log(config: LogConfig) -> Result<(tempfile::TempDir, PathBuf, Log), Error> {
    let parent = tempfile::tempdir().map_err(|e| Error::Io {
        path: "tmp".into(),
        source: e,
    })?;
    let (log, _) = Log::create(parent.path(), &TopicPartition::new("t", 0), config, 0)?;
    let dir = log.dir().to_path_buf();
    Ok((parent, dir, log))
}

/// Reads every batch from `from` to the high watermark, returning (base_offset, bytes) pairs.
fn read_all(log: &Log, from: i64) -> Result<Vec<(i64, Vec<u8>)>, Error> {
    let mut out = Vec::new();
    let mut offset = from;
    for _ in 0..100_000 {
        let r = log.read(offset, 3000, log.high_watermark(), true)?;
        let Some(region) = r.region else { break };
        let bytes = region.to_vec()?;
        let mut at = 0;
        while at < bytes.len() {
            let h = sluice_records::validate_batch(
                &bytes[at..at
                    + (i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap_or_default())
                        as usize
                        + 12)],
            )?;
            out.push((h.base_offset, bytes[at..at + h.total_bytes()].to_vec()));
            offset = h.next_offset();
            at += h.total_bytes();
        }
    }
    Ok(out)
}

/// Strips the log-assigned header fields so a stored batch compares with what was appended.
fn normalise(mut b: Vec<u8>) -> Vec<u8> {
    b[0..8].fill(0);
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b
}

#[test]
fn append_assigns_offsets_and_reads_back_byte_for_byte() -> TestResult {
    let (_p, _dir, mut log) = new_log(small_config())?;
    let mut sent = Vec::new();
    for i in 0..50 {
        let b = build_batch(1 + i % 4, 40 + i as usize, 1000 + i as i64, None);
        let info = log.append(&b, opts(0))?;
        assert_eq!(
            info.base_offset,
            sent.iter()
                .map(|(_, n): &(Vec<u8>, i32)| *n as i64)
                .sum::<i64>()
        );
        sent.push((b, 1 + i % 4));
    }
    let total: usize = sent.iter().map(|(b, _)| b.len()).sum();
    assert!(
        log.segment_count() >= total / 4096,
        "small segment.bytes must roll: {} segments for {total} bytes",
        log.segment_count()
    );
    let got = read_all(&log, 0)?;
    assert_eq!(got.len(), sent.len());
    let mut expect_offset = 0;
    for ((off, bytes), (b, n)) in got.into_iter().zip(&sent) {
        assert_eq!(off, expect_offset);
        assert_eq!(normalise(bytes), *b);
        expect_offset += *n as i64;
    }
    // A read from the middle of a batch starts at that batch.
    let r = log.read(5, 1 << 20, log.high_watermark(), true)?;
    let first = r.region.ok_or("no region")?.to_vec()?;
    let h = sluice_records::BatchHeader::parse(&first)?;
    assert!(h.base_offset <= 5 && h.last_offset() >= 5);
    Ok(())
}

#[test]
fn invalid_batches_are_rejected_and_nothing_is_written() -> TestResult {
    let (_p, _dir, mut log) = new_log(small_config())?;
    let good = build_batch(2, 10, 1, None);
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let mut both = good.clone();
    both.extend_from_slice(&bad);
    assert!(matches!(
        log.append(&both, opts(0)),
        Err(Error::InvalidBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    assert!(matches!(
        log.append(&good[..30], opts(0)),
        Err(Error::InvalidBatch(_))
    ));
    let mut c = small_config();
    c.max_message_bytes = 100;
    log.set_config(c);
    let big = build_batch(1, 200, 1, None);
    assert!(matches!(
        log.append(&big, opts(0)),
        Err(Error::InvalidBatch(log_store::BatchError::TooLarge { .. }))
    ));
    Ok(())
}

#[test]
fn read_respects_max_bytes_upper_bound_and_out_of_range() -> TestResult {
    let (_p, _dir, mut log) = new_log(LogConfig::default())?;
    let b = build_batch(1, 100, 1, None);
    for _ in 0..10 {
        log.append(&b, opts(0))?;
    }
    let r = log.read(0, b.len() * 3 + 10, 100, true)?;
    assert_eq!(r.region.ok_or("none")?.len(), (b.len() * 3) as u64);
    let r = log.read(0, 10, 100, false)?;
    assert!(r.region.is_none());
    let r = log.read(0, 10, 100, true)?;
    assert_eq!(
        r.region.ok_or("none")?.len(),
        b.len() as u64,
        "min one batch"
    );
    let r = log.read(0, 1 << 20, 4, true)?;
    assert_eq!(
        r.region.ok_or("none")?.len(),
        (b.len() * 4) as u64,
        "stops at upper bound"
    );
    assert!(log.read(10, 100, 100, true)?.region.is_none());
    assert!(matches!(
        log.read(11, 100, 100, true),
        Err(Error::OffsetOutOfRange { .. })
    ));
    Ok(())
}

#[test]
fn clean_reopen_keeps_everything() -> TestResult {
    let (_p, dir, mut log) = new_log(small_config())?;
    for i in 0..40 {
        log.append(&build_batch(3, 50, 10 + i, None), opts(0))?;
    }
    let before = read_all(&log, 0)?;
    log.close()?;
    let (log, report) = Log::open(&dir, small_config(), 0)?;
    assert!(report.clean_shutdown);
    assert_eq!(report.segments_scanned, 0, "a clean shutdown scans nothing");
    assert_eq!(log.log_end_offset(), 120);
    assert_eq!(read_all(&log, 0)?, before);
    Ok(())
}

fn last_segment(dir: &Path, suffix: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(suffix))
        .collect();
    v.sort();
    v.pop().ok_or_else(|| "no segment".into())
}

/// A crashed log's parent directory, its directory, and the batches it held.
type Crashed = (tempfile::TempDir, PathBuf, Vec<(i64, Vec<u8>)>);

/// Appends `n` batches of 2 records, flushes, drops without closing (a crash).
fn crashed_log(n: usize) -> Result<Crashed, Box<dyn std::error::Error>> {
    let (p, dir, mut log) = new_log(small_config())?;
    for i in 0..n {
        log.append(&build_batch(2, 30, 100 + i as i64, None), opts(0))?;
    }
    log.flush()?;
    let all = read_all(&log, 0)?;
    drop(log);
    Ok((p, dir, all))
}

#[test]
fn torn_tail_is_truncated_to_the_last_whole_batch() -> TestResult {
    let (_p, dir, all) = crashed_log(30)?;
    let seg = last_segment(&dir, "log")?;
    let len = std::fs::metadata(&seg)?.len();
    OpenOptions::new()
        .write(true)
        .open(&seg)?
        .set_len(len - 7)?;
    let (log, report) = Log::open(&dir, small_config(), 0)?;
    assert!(report.truncated_bytes > 0);
    let (last_off, _) = all[all.len() - 1];
    assert_eq!(
        log.log_end_offset(),
        last_off,
        "the torn batch is gone, the rest stays"
    );
    assert_eq!(read_all(&log, 0)?, all[..all.len() - 1].to_vec());
    Ok(())
}

#[test]
fn flipped_byte_truncates_from_the_corrupt_batch() -> TestResult {
    let (_p, dir, all) = crashed_log(30)?;
    let seg = last_segment(&dir, "log")?;
    let mut bytes = std::fs::read(&seg)?;
    let at = bytes.len() - 5;
    bytes[at] ^= 0xff;
    std::fs::write(&seg, &bytes)?;
    let log = open(&dir, small_config())?;
    assert_eq!(read_all(&log, 0)?, all[..all.len() - 1].to_vec());
    Ok(())
}

#[test]
fn zero_filled_tail_is_recovered() -> TestResult {
    let (_p, dir, all) = crashed_log(30)?;
    let seg = last_segment(&dir, "log")?;
    let mut f = OpenOptions::new().append(true).open(&seg)?;
    f.write_all(&vec![0u8; 8192])?;
    drop(f);
    let log = open(&dir, small_config())?;
    assert_eq!(read_all(&log, 0)?, all);
    Ok(())
}

#[test]
fn garbled_or_missing_indexes_are_rebuilt() -> TestResult {
    let (_p, dir, all) = crashed_log(60)?;
    // Garble every index and delete every time index.
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        match p.extension().and_then(|e| e.to_str()) {
            Some("index") => {
                let len = std::fs::metadata(&p)?.len() as usize;
                std::fs::write(&p, vec![0xab; len.max(64)])?;
            }
            Some("timeindex") => std::fs::remove_file(&p)?,
            _ => {}
        }
    }
    let log = open(&dir, small_config())?;
    assert_eq!(read_all(&log, 0)?, all);
    for (off, _) in &all {
        let r = log.read(*off, 100, log.high_watermark(), true)?;
        let b = r.region.ok_or("none")?.to_vec()?;
        assert_eq!(sluice_records::BatchHeader::parse(&b)?.base_offset, *off);
    }
    assert_eq!(
        log.lookup_offset(OffsetSpec::Timestamp(110))?.map(|x| x.0),
        Some(20)
    );
    Ok(())
}

#[test]
fn unflushed_checkpoint_recovery_scans_only_the_tail() -> TestResult {
    let (_p, dir, mut log) = new_log(small_config())?;
    for i in 0..100 {
        log.append(&build_batch(2, 30, i, None), opts(0))?;
    }
    log.flush()?;
    log.checkpoint()?;
    for i in 0..5 {
        log.append(&build_batch(2, 30, 200 + i, None), opts(0))?;
    }
    let segs = log.segment_count();
    drop(log);
    let (log, report) = Log::open(&dir, small_config(), 0)?;
    assert!(!report.clean_shutdown);
    assert!(
        report.segments_scanned <= 2,
        "scanned {} of {segs}",
        report.segments_scanned
    );
    assert_eq!(log.log_end_offset(), 210);
    Ok(())
}

#[test]
fn foreign_directory_is_refused() -> TestResult {
    let parent = tempfile::tempdir()?;
    let d = parent.path().join("notes");
    std::fs::create_dir(&d)?;
    assert!(matches!(
        open(&d, LogConfig::default()),
        Err(Error::NotALogDirectory { .. })
    ));
    let d = parent.path().join("t-0");
    std::fs::create_dir(&d)?;
    std::fs::write(d.join("passwords.txt"), b"x")?;
    assert!(matches!(
        open(&d, LogConfig::default()),
        Err(Error::NotALogDirectory { .. })
    ));
    Ok(())
}

#[test]
fn retention_by_bytes_and_time_and_delete_records() -> TestResult {
    let mut c = small_config();
    c.retention_bytes = 8192;
    let (_p, dir, mut log) = new_log(c.clone())?;
    for i in 0..100 {
        log.append(&build_batch(2, 60, 1_000 + i, None), opts(0))?;
    }
    let r = log.enforce_retention(2_000)?;
    assert!(r.segments_deleted > 0);
    assert!(log.size_bytes() >= 8192 - 4096 && log.size_bytes() <= 8192 + 4096);
    let start = log.log_start_offset();
    assert!(start > 0);
    assert!(matches!(
        log.read(start - 1, 100, 1000, true),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log, start)?.first().map(|x| x.0), Some(start));
    // Time: everything older than retention.ms goes, including the active segment.
    c.retention_bytes = -1;
    c.retention_ms = 500;
    log.set_config(c.clone());
    log.enforce_retention(1_000_000)?;
    assert_eq!(log.log_start_offset(), log.log_end_offset());
    // DeleteRecords beyond the high watermark is refused; within it advances the start.
    for i in 0..10 {
        log.append(&build_batch(2, 60, 1_000_000 + i, None), opts(0))?;
    }
    let hw = log.high_watermark();
    assert!(log.delete_records(hw + 1, 0).is_err());
    assert_eq!(log.delete_records(hw - 4, 0)?, hw - 4);
    drop(log);
    let log = open(&dir, c)?;
    assert_eq!(
        log.log_start_offset(),
        hw - 4,
        "log start offset survives a crash"
    );
    Ok(())
}

#[test]
fn lookup_by_timestamp_finds_the_first_record_at_or_after() -> TestResult {
    let (_p, _dir, mut log) = new_log(small_config())?;
    for i in 0..50i64 {
        let recs: Vec<TestRecord> = (0..3)
            .map(|j| TestRecord {
                key: None,
                value: Some(vec![1; 20]),
                timestamp_delta: j,
            })
            .collect();
        log.append(&build_keyed_batch(&recs, 10_000 + i * 10, None, 0), opts(0))?;
    }
    assert_eq!(
        log.lookup_offset(OffsetSpec::Timestamp(0))?,
        Some((0, 10_000))
    );
    assert_eq!(
        log.lookup_offset(OffsetSpec::Timestamp(10_101))?,
        Some((31, 10_101))
    );
    assert_eq!(
        log.lookup_offset(OffsetSpec::Timestamp(10_103))?,
        Some((33, 10_110))
    );
    assert_eq!(log.lookup_offset(OffsetSpec::Timestamp(99_999))?, None);
    assert_eq!(
        log.lookup_offset(OffsetSpec::MaxTimestamp)?,
        Some((149, 10_492))
    );
    assert_eq!(log.lookup_offset(OffsetSpec::Latest)?, Some((150, -1)));
    Ok(())
}

#[test]
fn log_append_time_is_stamped_with_a_valid_crc() -> TestResult {
    let mut c = small_config();
    c.set("message.timestamp.type", "LogAppendTime")?;
    let (_p, _dir, mut log) = new_log(c)?;
    let info = log.append(&build_batch(2, 10, 5, None), opts(777))?;
    assert_eq!(info.log_append_time_ms, 777);
    let b = log
        .read(0, 1000, 10, true)?
        .region
        .ok_or("none")?
        .to_vec()?;
    let h = sluice_records::validate_batch(&b)?;
    assert_eq!(h.max_timestamp, 777);
    Ok(())
}

#[test]
fn leader_epochs_answer_offset_for_leader_epoch() -> TestResult {
    let (_p, dir, mut log) = new_log(small_config())?;
    log.append(
        &build_batch(5, 10, 1, None),
        AppendOptions {
            leader_epoch: 0,
            now_ms: 0,
        },
    )?;
    log.append(
        &build_batch(5, 10, 1, None),
        AppendOptions {
            leader_epoch: 3,
            now_ms: 0,
        },
    )?;
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 5)));
    assert_eq!(log.end_offset_for_epoch(2), Some((0, 5)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 10)));
    log.close()?;
    let log = open(&dir, small_config())?;
    assert_eq!(log.end_offset_for_epoch(7), Some((3, 10)));
    Ok(())
}

/// Allocated bytes of the index files in `dir` (sparse files count only what they use).
fn index_disk_bytes(dir: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("index" | "timeindex")
        ) {
            total += std::fs::metadata(&p)?.blocks() * 512;
        }
    }
    Ok(total)
}

#[test]
fn reopening_does_not_inflate_the_indexes_of_closed_segments() -> TestResult {
    let c = LogConfig {
        segment_index_bytes: 1 << 20,
        ..small_config()
    };
    let (_p, dir, mut log) = new_log(c.clone())?;
    for i in 0..60 {
        log.append(&build_batch(3, 100, 10 + i, None), opts(0))?;
    }
    log.close()?;
    let before = index_disk_bytes(&dir)?;
    for _ in 0..2 {
        let (log, _) = Log::open(&dir, c.clone(), 0)?;
        log.close()?;
    }
    let (mut log, _) = Log::open(&dir, c.clone(), 0)?;
    log.append(&build_batch(3, 100, 99, None), opts(0))?;
    drop(log); // a crash: the active segment's preallocated indexes get recovered
    let (log, _) = Log::open(&dir, c.clone(), 0)?;
    log.close()?;
    let after = index_disk_bytes(&dir)?;
    // Zeroing a whole preallocated index on open used to allocate every page of it.
    assert!(
        after <= before + 64 * 1024,
        "index files grew from {before} to {after} bytes on disk"
    );
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if p.extension().and_then(|e| e.to_str()) == Some("index") {
            assert!(
                std::fs::metadata(&p)?.len() < 4096,
                "{p:?} was left preallocated"
            );
        }
    }
    Ok(())
}

#[test]
fn an_index_interval_of_zero_keeps_its_index_across_reopens() -> TestResult {
    let c = LogConfig {
        index_interval_bytes: 0,
        ..small_config()
    };
    let (_p, dir, mut log) = new_log(c.clone())?;
    for i in 0..40 {
        log.append(&build_batch(2, 50, 10 + i, None), opts(0))?;
    }
    let all = read_all(&log, 0)?;
    log.close()?;
    for _ in 0..2 {
        let (log, report) = Log::open(&dir, c.clone(), 0)?;
        // An entry at position 0 used to make the index look zeroed: dropped on every load.
        assert_eq!(report.segments_scanned, 0);
        assert_eq!(read_all(&log, 0)?, all);
        log.close()?;
    }
    Ok(())
}

#[test]
fn a_lost_index_of_a_loaded_segment_is_rebuilt() -> TestResult {
    let (_p, dir, mut log) = new_log(small_config())?;
    for i in 0..60 {
        log.append(&build_batch(2, 60, 10 + i, None), opts(0))?;
    }
    let all = read_all(&log, 0)?;
    log.close()?;
    // A clean shutdown: nothing would be scanned. Lose a closed segment's indexes.
    let first = dir.join(format!("{:020}.index", 0));
    std::fs::remove_file(&first)?;
    std::fs::write(dir.join(format!("{:020}.timeindex", 0)), b"")?;
    let (log, report) = Log::open(&dir, small_config(), 0)?;
    assert_eq!(report.segments_scanned, 1, "the segment is scanned again");
    assert!(std::fs::metadata(&first)?.len() > 0, "its index is rebuilt");
    assert_eq!(read_all(&log, 0)?, all);
    assert_eq!(
        log.lookup_offset(OffsetSpec::Timestamp(11))?.map(|x| x.0),
        Some(2)
    );
    Ok(())
}

#[test]
fn compacted_topics_refuse_keyless_records_and_compression_type_recompresses() -> TestResult {
    let mut c = small_config();
    c.set("cleanup.policy", "compact")?;
    let (_p, _dir, mut log) = new_log(c.clone())?;
    let keyed = |k: Option<&[u8]>| TestRecord {
        key: k.map(<[u8]>::to_vec),
        value: Some(b"v".to_vec()),
        timestamp_delta: 0,
    };
    let bad = build_keyed_batch(&[keyed(Some(b"a")), keyed(None)], 1, None, 0);
    match log.append(&bad, opts(0)) {
        Err(Error::InvalidBatch(log_store::BatchError::KeylessRecordOnCompactedTopic {
            batch_index,
            record_indexes,
        })) => {
            assert_eq!((batch_index, record_indexes), (0, vec![1]));
        }
        other => panic!("expected a keyless-record refusal, got {other:?}"),
    }
    assert_eq!(
        log.log_end_offset(),
        0,
        "nothing of a refused batch is written"
    );
    log.append(
        &build_keyed_batch(&[keyed(Some(b"a"))], 1, None, 0),
        opts(0),
    )?;
    // compression.type=gzip: an uncompressed batch is stored gzip-compressed, same records.
    c.set("cleanup.policy", "delete")?;
    c.set("compression.type", "gzip")?;
    log.set_config(c);
    let plain = build_keyed_batch(&[keyed(Some(b"x")), keyed(None)], 5, None, 0);
    let info = log.append(&plain, opts(0))?;
    let stored = log
        .read(info.base_offset, 1 << 20, log.high_watermark(), true)?
        .region
        .ok_or("none")?
        .to_vec()?;
    let h = sluice_records::validate_batch(&stored)?;
    assert_eq!(h.compression(), 1);
    let body = sluice_records::records_body(&stored, sluice_records::BATCH_DECOMPRESSED_BYTES_MAX)?;
    let views = sluice_records::parse_records(&body, h.records_count)?;
    assert_eq!(views.len(), 2);
    assert_eq!(&body[views[0].key.clone().ok_or("key")?], b"x");
    Ok(())
}
