//! Crash test with real processes: a child (this test binary run again, see [`crash_child`])
//! appends batches to a log in a loop, acknowledging each on stdout only after `flush()`
//! returned. The parent kills it with SIGKILL at a random point (after a random number of
//! acknowledgements and a random delay: mid-append, mid-fsync, mid-roll, mid-recovery), reopens
//! the log and checks that every acknowledged batch is there byte for byte at its offset (the
//! parent regenerates each batch from the seed and its offset), that the log holds nothing it
//! was not given, and that it takes appends again. `LOG_STORE_CRASH_SEED=<n>` repeats a run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use log_store::testing::{as_produced, read_batches, seeded_batch, SplitMix64};
use log_store::{AppendOptions, Log, LogConfig};
use sluice_records::BatchHeader;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Set in the child's environment: the log directory it appends to.
const CHILD_DIR_ENV: &str = "LOG_STORE_CRASH_CHILD_DIR";
const SEED_ENV: &str = "LOG_STORE_CRASH_SEED";
const CYCLES: usize = 30;
const ACKS_BEFORE_KILL_MAX: u64 = 40;
const KILL_DELAY_MICROS_MAX: u64 = 3_000;
/// How long the parent waits for one acknowledgement before it gives up on the child.
const ACK_TIMEOUT: Duration = Duration::from_secs(20);
const VALUE_BYTES_MAX: usize = 300;

fn config() -> LogConfig {
    LogConfig {
        // Small segments and indexes: kills land in rolls too.
        segment_bytes: 8 * 1024,
        index_interval_bytes: 256,
        segment_index_bytes: 1024,
        ..LogConfig::default()
    }
}

fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms: 0,
    }
}

/// The child: appends, flushes, acknowledges, forever (until killed). A no-op in a normal run.
#[test]
fn crash_child() -> TestResult {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return Ok(());
    };
    let seed: u64 = std::env::var(SEED_ENV)?.parse()?;
    let (mut log, _) = Log::open(Path::new(&dir), config(), 0)?;
    let mut out = std::io::stdout().lock();
    loop {
        let leo = log.log_end_offset();
        let batch = seeded_batch(seed, leo, VALUE_BYTES_MAX);
        let info = log.append(&batch, opts())?;
        log.flush()?;
        let crc = BatchHeader::parse(&batch)?.crc;
        writeln!(
            out,
            "ACK {} {} {crc:08x}",
            info.base_offset, info.last_offset
        )?;
        out.flush()?;
        if info.base_offset % 7 == 0 {
            log.checkpoint()?;
        }
    }
}

/// An acknowledged batch: base offset, last offset, CRC.
type Ack = (i64, i64, u32);

fn parse_ack(line: &str) -> Option<Ack> {
    let rest = &line[line.find("ACK ")? + 4..];
    let mut it = rest.split_whitespace();
    let base = it.next()?.parse().ok()?;
    let last = it.next()?.parse().ok()?;
    let crc = u32::from_str_radix(it.next()?, 16).ok()?;
    Some((base, last, crc))
}

/// Runs the child until it has acknowledged `acks` batches (or exited), waits `delay`, kills
/// it with SIGKILL and returns every acknowledgement it printed.
fn run_child(dir: &Path, seed: u64, acks: u64, delay: Duration) -> TestResult<Vec<Ack>> {
    run_named_child("crash_child", dir, seed, acks, delay)
}

/// [`run_child`] for the child test `name`.
fn run_named_child(
    name: &str,
    dir: &Path,
    seed: u64,
    acks: u64,
    delay: Duration,
) -> TestResult<Vec<Ack>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([name, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_DIR_ENV, dir)
        .env(SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    let out_reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut acked = Vec::new();
    let mut early_exit = None;
    while (acked.len() as u64) < acks {
        match rx.recv_timeout(ACK_TIMEOUT) {
            Ok(line) => acked.extend(parse_ack(&line)),
            Err(RecvTimeoutError::Timeout) => {
                early_exit = Some("no acknowledgement within the timeout".to_string());
                break;
            }
            Err(RecvTimeoutError::Disconnected) => {
                early_exit = Some("the child closed its stdout".to_string());
                break;
            }
        }
    }
    std::thread::sleep(delay);
    // SIGKILL, to this child's PID only.
    child.kill()?;
    let status = child.wait()?;
    let _ = out_reader.join();
    acked.extend(rx.try_iter().filter_map(|l| parse_ack(&l)));
    let stderr = err_reader.join().unwrap_or_default();
    if let Some(why) = early_exit {
        return Err(format!("child failed ({why}, {status}): {stderr}").into());
    }
    if status.signal() != Some(9) {
        return Err(format!("the child exited by itself ({status}): {stderr}").into());
    }
    Ok(acked)
}

/// Every acknowledged batch is there as appended; every batch there is one that was appended.
/// Returns the batches there that were never acknowledged (appended, not yet flushed or not yet
/// reported when the kill came): recovery synced them, so they count as acknowledged from now.
fn check(log: &Log, seed: u64, acked: &BTreeMap<i64, (i64, u32)>) -> TestResult<Vec<Ack>> {
    let stored: BTreeMap<i64, Vec<u8>> = read_batches(log)?.into_iter().collect();
    for (base, bytes) in &stored {
        if as_produced(bytes) != seeded_batch(seed, *base, VALUE_BYTES_MAX) {
            return Err(format!("the batch at offset {base} is not the one appended there").into());
        }
    }
    for (base, (last, crc)) in acked {
        let bytes = stored
            .get(base)
            .ok_or_else(|| format!("acknowledged batch {base}..={last} is gone"))?;
        let h = BatchHeader::parse(bytes)?;
        if (h.last_offset(), h.crc) != (*last, *crc) {
            return Err(format!("acknowledged batch {base}..={last} changed").into());
        }
    }
    let last_acked = acked.last_key_value().map_or(0, |(_, (last, _))| last + 1);
    if log.log_end_offset() < last_acked {
        return Err(format!(
            "log end offset {} is below the last acknowledged offset {last_acked}",
            log.log_end_offset()
        )
        .into());
    }
    let mut found = Vec::new();
    for (base, bytes) in &stored {
        if !acked.contains_key(base) {
            let h = BatchHeader::parse(bytes)?;
            found.push((*base, h.last_offset(), h.crc));
        }
    }
    Ok(found)
}

#[test]
fn acknowledged_batches_survive_sigkill() -> TestResult {
    if std::env::var(CHILD_DIR_ENV).is_ok() {
        return Ok(());
    }
    let seed = match std::env::var(SEED_ENV) {
        Ok(s) => s.parse()?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    println!("crash test seed {seed} (repeat with {SEED_ENV}={seed})");
    let started = Instant::now();
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("crash-0");
    std::fs::create_dir(&dir)?;
    let mut rng = SplitMix64::new(seed);
    let mut acked: BTreeMap<i64, (i64, u32)> = BTreeMap::new();
    let mut truncations = 0;
    let mut unacknowledged = 0;
    for cycle in 0..CYCLES {
        let acks = rng.below(ACKS_BEFORE_KILL_MAX + 1);
        let delay = Duration::from_micros(rng.below(KILL_DELAY_MICROS_MAX));
        let new = run_child(&dir, seed, acks, delay)
            .map_err(|e| format!("seed {seed} cycle {cycle}: {e}"))?;
        for (base, last, crc) in new {
            acked.insert(base, (last, crc));
        }
        let (mut log, report) = Log::open(&dir, config(), 0)?;
        if report.truncated_bytes > 0 {
            truncations += 1;
        }
        let found =
            check(&log, seed, &acked).map_err(|e| format!("seed {seed} cycle {cycle}: {e}"))?;
        unacknowledged += found.len();
        for (base, last, crc) in found {
            acked.insert(base, (last, crc));
        }
        // Usable again: an append lands at the end and reads back.
        let leo = log.log_end_offset();
        let batch = seeded_batch(seed, leo, VALUE_BYTES_MAX);
        let info = log.append(&batch, opts())?;
        assert_eq!(info.base_offset, leo);
        log.flush()?;
        acked.insert(leo, (info.last_offset, BatchHeader::parse(&batch)?.crc));
        check(&log, seed, &acked).map_err(|e| format!("seed {seed} cycle {cycle}: {e}"))?;
        if rng.below(2) == 0 {
            log.close()?;
        } else {
            drop(log);
        }
    }
    println!(
        "{CYCLES} kills, {} acknowledged batches, {unacknowledged} found that were in flight, \
         {truncations} recoveries cut a torn batch, {:?}",
        acked.len(),
        started.elapsed()
    );
    Ok(())
}

/// The idempotent producer of [`producer_state_survives_sigkill`]: producer 1, epoch 0, sends
/// batches of 1 to 3 records with consecutive sequences, continuing from the sequence the
/// reopened log remembers, and acknowledges each after `flush()`.
#[test]
fn idempotent_crash_child() -> TestResult {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return Ok(());
    };
    let (mut log, _) = Log::open(Path::new(&dir), config(), 0)?;
    let mut out = std::io::stdout().lock();
    loop {
        let seq = log
            .producer_state()
            .entry(1)
            .and_then(|e| e.last_batch())
            .map_or(0, |b| b.last_seq + 1);
        let info = log.append(&idempotent_batch(seq), opts())?;
        log.flush()?;
        writeln!(out, "ACK {} {} 0", info.base_offset, info.last_offset)?;
        out.flush()?;
        if info.base_offset % 5 == 0 {
            log.checkpoint()?;
        }
    }
}

fn idempotent_batch(seq: i32) -> Vec<u8> {
    log_store::testing::build_batch(1 + seq % 3, 40, 1_700_000_000_000, Some((1, 0, seq)))
}

/// SIGKILL an idempotent producer's log at random points: after each reopen the stored
/// sequences run 0, 1, 2, ... without a gap or a repeat, the rebuilt producer state ends
/// where the log does, and the last batch sent again is acknowledged at its original offsets.
#[test]
fn producer_state_survives_sigkill() -> TestResult {
    if std::env::var(CHILD_DIR_ENV).is_ok() {
        return Ok(());
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    println!("idempotence crash test seed {seed}");
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("idem-0");
    std::fs::create_dir(&dir)?;
    let mut rng = SplitMix64::new(seed);
    let mut acked_end = 0;
    for cycle in 0..10 {
        let acks = rng.below(ACKS_BEFORE_KILL_MAX + 1);
        let delay = Duration::from_micros(rng.below(KILL_DELAY_MICROS_MAX));
        let new = run_named_child("idempotent_crash_child", &dir, seed, acks, delay)
            .map_err(|e| format!("seed {seed} cycle {cycle}: {e}"))?;
        acked_end = new.iter().map(|a| a.1 + 1).fold(acked_end, i64::max);
        let (mut log, _) = Log::open(&dir, config(), 0)?;
        assert!(
            log.log_end_offset() >= acked_end,
            "cycle {cycle}: acknowledged data lost"
        );
        let mut next_seq = 0;
        let mut last = None;
        for (base, bytes) in read_batches(&log)? {
            let h = BatchHeader::parse(&bytes)?;
            assert_eq!(h.base_sequence, next_seq, "cycle {cycle}: batch at {base}");
            next_seq += h.last_offset_delta + 1;
            last = Some((base, h));
        }
        let Some((base, h)) = last else { continue };
        let entry = log
            .producer_state()
            .entry(1)
            .ok_or("producer 1 forgotten")?;
        assert_eq!(entry.last_batch().map(|b| b.last_seq), Some(next_seq - 1));
        let leo = log.log_end_offset();
        let again = log.append(&idempotent_batch(h.base_sequence), opts())?;
        assert_eq!((again.base_offset, again.batches), (base, 0));
        assert_eq!(log.log_end_offset(), leo);
        drop(log);
    }
    Ok(())
}
