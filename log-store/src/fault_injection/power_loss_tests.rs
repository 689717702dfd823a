//! Power loss without a page cache: a log runs on [`FaultInjector`] files, appends, flushes
//! (through [`Log::flush`] and through tickets), checkpoints and rolls at random, then loses
//! power; the files keep what was synced plus what a power cut may leave of the rest, and the
//! index files that had not been synced are garbled. Reopened on the real file system, the log
//! must hold every batch acknowledged by a successful flush, byte for byte at its offset, hold
//! nothing it was not given, have cut every file back to whole batches, and take appends again.
//!
//! Each seed runs several power cycles on one directory. `LOG_STORE_FAULT_SEED=<n>` runs seed
//! `n` alone, `LOG_STORE_FAULT_SEEDS=<n>` seeds `0..n`; a failure names its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::checkpoint::PartitionCheckpoint;
use crate::fault_injection::{FaultInjector, PowerCut};
use crate::testing::{as_produced, read_batches, seeded_batch, SplitMix64};
use crate::{AppendOptions, Log, LogConfig, TopicPartition};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const SEEDS: u64 = 24;
const CYCLES_PER_SEED: usize = 6;
const OPS_PER_CYCLE_MAX: u64 = 40;
const VALUE_BYTES_MAX: usize = 160;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 6_000,
        index_interval_bytes: 512,
        // Room for 8 offset entries: full indexes roll segments too.
        segment_index_bytes: 64,
        ..LogConfig::default()
    }
}

fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms: 0,
    }
}

/// `LOG_STORE_FAULT_SEED=<n>`: seed `n` alone; `LOG_STORE_FAULT_SEEDS=<n>`: seeds `0..n`.
fn seeds() -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    match (var("LOG_STORE_FAULT_SEED"), var("LOG_STORE_FAULT_SEEDS")) {
        (Some(seed), _) => vec![seed],
        (None, Some(n)) => (0..n).collect(),
        (None, None) => (0..SEEDS).collect(),
    }
}

fn files_with(dir: &Path, suffix: &str) -> TestResult<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(stem) = name.strip_suffix(suffix) {
            if let Ok(base) = stem.parse::<i64>() {
                out.push((base, p.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Overwrites an index file with what an unsynced mapping may leave after a power cut.
fn garble(path: &Path, rng: &mut SplitMix64) -> TestResult {
    let len = std::fs::metadata(path)?.len() as usize;
    let random = |rng: &mut SplitMix64, n: usize| -> Vec<u8> {
        (0..n).map(|_| rng.next_u64() as u8).collect()
    };
    match rng.below(6) {
        0 => {}
        1 => std::fs::write(path, vec![0u8; len])?,
        2 => {
            let bytes = random(rng, len);
            std::fs::write(path, bytes)?;
        }
        3 => {
            let keep = rng.below(len as u64 + 1) as usize;
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(keep as u64)?;
        }
        4 => std::fs::remove_file(path)?,
        _ => {
            let n = rng.below(2 * len as u64 + 13) as usize;
            let bytes = random(rng, n);
            std::fs::write(path, bytes)?;
        }
    }
    Ok(())
}

/// Garbles the indexes a power cut may have left unsynced: those of the segments that recovery
/// scans (from the one holding the checkpointed recovery point). Closed segments below it had
/// their indexes synced when they rolled; of those, some go missing (a rebuild must follow).
fn garble_unsynced_indexes(dir: &Path, rng: &mut SplitMix64) -> TestResult {
    let checkpoint = PartitionCheckpoint::read(dir)?;
    let logs = files_with(dir, ".log")?;
    let first_unsynced = match checkpoint {
        Some(c) if c.clean_shutdown => i64::MAX,
        Some(c) => logs
            .iter()
            .rev()
            .map(|(b, _)| *b)
            .find(|b| *b <= c.recovery_point)
            .unwrap_or(i64::MIN),
        None => i64::MIN,
    };
    for suffix in [".index", ".timeindex"] {
        for (base, path) in files_with(dir, suffix)? {
            if base >= first_unsynced {
                garble(&path, rng)?;
            } else if rng.below(10) == 0 {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

/// What the reopened log must show.
struct Expect {
    seed: u64,
    /// Base offsets of the batches a successful flush acknowledged (or that a reopen found,
    /// which recovery synced).
    acked: BTreeSet<i64>,
    /// Appended since the last successful flush.
    pending: Vec<i64>,
}

impl Expect {
    fn new(seed: u64) -> Self {
        Expect {
            seed,
            acked: BTreeSet::new(),
            pending: Vec::new(),
        }
    }
    fn flushed(&mut self) {
        self.acked.extend(self.pending.drain(..));
    }
}

/// Checks the reopened log against what was acknowledged (all there, byte for byte at its
/// offset), that it holds nothing but what was appended, and that recovery left every data file
/// at exactly its valid bytes. Everything it holds counts as acknowledged from now on.
fn check(log: &Log, expect: &mut Expect) -> TestResult {
    let batches: BTreeMap<i64, Vec<u8>> = read_batches(log)?.into_iter().collect();
    for (base, bytes) in &batches {
        if as_produced(bytes) != seeded_batch(expect.seed, *base, VALUE_BYTES_MAX) {
            return Err(format!("the batch at offset {base} is not the one appended there").into());
        }
    }
    if let Some(lost) = expect.acked.iter().find(|b| !batches.contains_key(b)) {
        return Err(format!(
            "the acknowledged batch at offset {lost} is gone (log end offset {})",
            log.log_end_offset()
        )
        .into());
    }
    let on_disk: u64 = files_with(log.dir(), ".log")?
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    if on_disk != log.size_bytes() {
        return Err(format!(
            "recovery left {on_disk} bytes in .log files for {} bytes of batches",
            log.size_bytes()
        )
        .into());
    }
    expect.acked = batches.into_keys().collect();
    expect.pending.clear();
    Ok(())
}

/// One seed: several power cycles on one log. Returns how many cuts lost unsynced writes.
fn run(seed: u64) -> TestResult<usize> {
    let parent = tempfile::tempdir()?;
    let tp = TopicPartition::new("power", 0);
    let dir = parent.path().join(tp.dir_name());
    std::fs::create_dir(&dir)?;
    let mut rng = SplitMix64::new(seed);
    let mut expect = Expect::new(seed);
    let mut cuts_with_loss = 0;
    for cycle in 0..CYCLES_PER_SEED {
        let faults = FaultInjector::new();
        let (mut log, _) = Log::open_with_faults(&dir, config(), 0, faults.clone())?;
        for _ in 0..rng.below(OPS_PER_CYCLE_MAX + 1) {
            match rng.below(100) {
                0..=59 => {
                    let leo = log.log_end_offset();
                    let info = log.append(&seeded_batch(seed, leo, VALUE_BYTES_MAX), opts())?;
                    assert_eq!(info.base_offset, leo);
                    expect.pending.push(leo);
                }
                60..=79 => {
                    log.flush()?;
                    expect.flushed();
                }
                80..=86 => {
                    // The broker's group commit: ticket under the lock, sync outside it.
                    if let Some(ticket) = log.prepare_flush() {
                        ticket.sync()?;
                        log.complete_flush(ticket.upto());
                        expect.flushed();
                    }
                }
                87..=92 => log.checkpoint()?,
                93..=96 => log.roll(0)?,
                _ => {
                    // A process crash: the disk keeps its unsynced writes for now. Recovery
                    // runs on the same disk and must sync what it keeps, since it reports it
                    // all as flushed (the recovery point becomes the log end offset).
                    drop(log);
                    log = Log::open_with_faults(&dir, config(), 0, faults.clone())?.0;
                    check(&log, &mut expect).map_err(|e| {
                        format!("seed {seed} cycle {cycle}: after a process crash: {e}")
                    })?;
                }
            }
        }
        if faults.unsynced_bytes() > 0 {
            cuts_with_loss += 1;
        }
        if rng.below(8) == 0 {
            // A clean shutdown flushes everything.
            log.close()?;
            expect.flushed();
        } else {
            drop(log);
        }
        let cut = faults.power_cut(rng.next_u64(), None)?;
        garble_unsynced_indexes(&dir, &mut rng)?;
        let (mut log, report) = Log::open(&dir, config(), 0).map_err(|e| {
            format!("seed {seed} cycle {cycle}: reopening after {cut:?} failed: {e}")
        })?;
        check(&log, &mut expect)
            .map_err(|e| format!("seed {seed} cycle {cycle} after {cut:?} ({report:?}): {e}"))?;
        // Usable again: the next append lands at the end, is durable, and reads back.
        let leo = log.log_end_offset();
        let batch = seeded_batch(seed, leo, VALUE_BYTES_MAX);
        assert_eq!(log.append(&batch, opts())?.base_offset, leo);
        log.flush()?;
        expect.acked.insert(leo);
        let (base, bytes) = read_batches(&log)?.pop().ok_or("no batch after append")?;
        assert_eq!((base, as_produced(&bytes)), (leo, batch));
        drop(log);
    }
    Ok(cuts_with_loss)
}

#[test]
fn acknowledged_batches_survive_power_cuts() -> TestResult {
    let mut cuts_with_loss = 0;
    for seed in seeds() {
        let result = std::panic::catch_unwind(|| run(seed));
        match result {
            Ok(Ok(n)) => cuts_with_loss += n,
            Ok(Err(e)) => return Err(e),
            Err(panic) => {
                eprintln!("power loss test failed with seed {seed} (LOG_STORE_FAULT_SEED={seed})");
                std::panic::resume_unwind(panic);
            }
        }
    }
    assert!(cuts_with_loss > 0, "no power cut lost anything");
    Ok(())
}

#[test]
fn each_kind_of_power_cut_keeps_what_was_flushed() -> TestResult {
    for (i, cut) in [
        PowerCut::DropUnsynced,
        PowerCut::TornPrefix,
        PowerCut::ScatteredSectors,
        PowerCut::ZeroedData,
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 1000 + i as u64;
        let parent = tempfile::tempdir()?;
        let dir = parent.path().join("cut-0");
        std::fs::create_dir(&dir)?;
        let faults = FaultInjector::new();
        let (mut log, _) = Log::open_with_faults(&dir, config(), 0, faults.clone())?;
        let mut expect = Expect::new(seed);
        for _ in 0..12 {
            let leo = log.log_end_offset();
            log.append(&seeded_batch(seed, leo, VALUE_BYTES_MAX), opts())?;
            expect.pending.push(leo);
        }
        log.flush()?;
        expect.flushed();
        let acked = expect.acked.clone();
        for _ in 0..12 {
            let leo = log.log_end_offset();
            log.append(&seeded_batch(seed, leo, VALUE_BYTES_MAX), opts())?;
        }
        assert!(faults.unsynced_bytes() > 0);
        drop(log);
        faults.power_cut(seed, Some(cut))?;
        let (log, report) = Log::open(&dir, config(), 0)?;
        check(&log, &mut expect).map_err(|e| format!("{cut:?} ({report:?}): {e}"))?;
        if cut == PowerCut::DropUnsynced {
            assert_eq!(expect.acked, acked, "nothing unsynced survives");
        }
    }
    Ok(())
}

#[test]
fn a_failed_fsync_acknowledges_nothing_more() -> TestResult {
    let seed = 77;
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("fsync-0");
    std::fs::create_dir(&dir)?;
    let faults = FaultInjector::new();
    let (mut log, _) = Log::open_with_faults(&dir, config(), 0, faults.clone())?;
    let append = |log: &mut Log| -> TestResult<i64> {
        let leo = log.log_end_offset();
        log.append(&seeded_batch(seed, leo, VALUE_BYTES_MAX), opts())?;
        Ok(leo)
    };
    let mut expect = Expect::new(seed);
    for _ in 0..5 {
        expect.pending.push(append(&mut log)?);
    }
    log.flush()?;
    expect.flushed();
    let acked = expect.acked.clone();
    let acked_upto = log.log_end_offset();
    for _ in 0..5 {
        append(&mut log)?;
    }
    // The sync fails and Linux drops the dirty pages: a second sync would succeed without
    // writing them. Neither the direct nor the ticket path may report them durable.
    faults.fail_next_syncs(1);
    let ticket = log.prepare_flush().ok_or("nothing to flush")?;
    assert!(ticket.sync().is_err());
    assert!(
        log.is_offline().is_some(),
        "a failed fsync takes the log offline"
    );
    let again = log.prepare_flush().ok_or("nothing to flush")?;
    assert!(again.sync().is_err(), "a later sync must not succeed");
    log.complete_flush(again.upto());
    assert_eq!(log.recovery_point(), acked_upto);
    assert!(log.flush().is_err());
    assert!(append(&mut log).is_err(), "an offline log takes no appends");
    drop(log);
    faults.power_cut(seed, Some(PowerCut::DropUnsynced))?;
    let (mut log, _) = Log::open(&dir, config(), 0)?;
    check(&log, &mut expect)?;
    assert_eq!(expect.acked, acked, "what the failed sync covered is gone");
    append(&mut log)?;
    log.flush()?;
    Ok(())
}
