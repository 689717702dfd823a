//! Append, durable-append, read and recovery benchmarks of [`Log`], each next to a baseline of
//! plain file I/O measured in the same run on the same file system, so that the ratio says what
//! the log costs on top of the system calls it cannot avoid.
//!
//! Every file lives in a temporary directory under `CARGO_TARGET_TMPDIR` (`target/tmp`); the
//! first line the benchmark prints names that directory's file system.
//!
//! - `append/{log,write_all,validate+write_all}/{16KiB,1MiB}`: [`Log::append`] without fsync
//!   against `File::write_all` of the same bytes, and against `write_all` after the checks the
//!   log makes of every batch (CRC-32C over all of it). All start a new file every 64 MiB,
//!   outside the timed part, so the page cache never throttles the writers: what is measured is
//!   the software path into the page cache, not the disk.
//! - `validate/{16KiB,1MiB}`: those checks alone.
//! - `durable_append/{log,write_all}/group{1,16}`: N appends of 16 KiB then one
//!   [`Log::flush`], against N `write_all` then one `fdatasync`.
//! - `read/{log,pread}/{64KiB,1MiB}`: a sequential pass over a 64 MiB log with [`Log::read`]
//!   (fetch `max_bytes` as named) and [`log_store::FileRegion::read_into`], against `pread` of
//!   the same positions and lengths of the same file.
//! - `recovery/open_256MiB_unflushed`: [`Log::open`] of a log whose 256 MiB were never flushed
//!   (page cache warm and clean after the first open), so every byte is read, CRC-checked and
//!   indexed again; the time per GiB is printed. The first open, which also writes the dirty
//!   pages back with `fdatasync`, is printed on its own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use log_store::testing::build_batch;
use log_store::{AppendOptions, Log, LogConfig, TopicPartition};

/// Bytes a sink takes before it starts over with a new file (untimed).
const RESET_BYTES: u64 = 64 << 20;
/// Size of the log the read benchmark reads.
const READ_LOG_BYTES: u64 = 64 << 20;
/// Size of the unflushed tail the recovery benchmark recovers.
const RECOVERY_BYTES: u64 = 256 << 20;
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms: 1_700_000_000_000,
    }
}

fn config() -> LogConfig {
    LogConfig {
        max_message_bytes: 2 * MIB,
        ..LogConfig::default()
    }
}

/// A valid uncompressed batch of about `bytes` bytes and the records it holds.
fn batch_of(bytes: usize) -> (Vec<u8>, i64) {
    let records = (bytes / (4 * KIB)).clamp(4, 256);
    // Each record costs its value plus about 8 bytes of framing; the header is 61 bytes.
    let value_len = (bytes - 61) / records - 8;
    (
        build_batch(records as i32, value_len, 1_700_000_000_000, None),
        records as i64,
    )
}

fn bench_dir() -> tempfile::TempDir {
    match tempfile::Builder::new()
        .prefix("append_read-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
    {
        Ok(d) => d,
        Err(e) => panic!("cannot create a directory under CARGO_TARGET_TMPDIR: {e}"),
    }
}

/// The file system type of `path`, from `/proc/self/mounts` (longest mount point prefix).
fn file_system_of(path: &Path) -> String {
    let Ok(canonical) = path.canonicalize() else {
        return "unknown".into();
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut it = line.split_whitespace();
        let (Some(dev), Some(mount), Some(fs)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if canonical.starts_with(mount) && best.as_ref().is_none_or(|(n, _)| mount.len() > *n) {
            best = Some((mount.len(), format!("{fs} ({dev} on {mount})")));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, s)| s)
}

/// Where appended bytes go: the log or a plain file.
trait Sink {
    fn append(&mut self, batch: &[u8]);
    fn sync(&mut self);
    /// Starts over with an empty file (not timed).
    fn reset(&mut self);
}

struct LogSink {
    parent: PathBuf,
    partition: i32,
    log: Option<Log>,
}

impl LogSink {
    fn new(parent: &Path) -> Self {
        let mut s = LogSink {
            parent: parent.to_path_buf(),
            partition: 0,
            log: None,
        };
        s.reset();
        s
    }
}

impl Sink for LogSink {
    fn append(&mut self, batch: &[u8]) {
        if let Some(log) = &mut self.log {
            if let Err(e) = log.append(batch, opts()) {
                panic!("append failed: {e}");
            }
        }
    }
    fn sync(&mut self) {
        if let Some(log) = &mut self.log {
            if let Err(e) = log.flush() {
                panic!("flush failed: {e}");
            }
        }
    }
    fn reset(&mut self) {
        if let Some(log) = self.log.take() {
            if let Err(e) = log.delete() {
                panic!("delete failed: {e}");
            }
        }
        self.partition += 1;
        let tp = TopicPartition::new("bench", self.partition);
        match Log::create(&self.parent, &tp, config(), 0) {
            Ok((log, _)) => self.log = Some(log),
            Err(e) => panic!("create failed: {e}"),
        }
    }
}

struct FileSink {
    path: PathBuf,
    file: File,
    /// Checks each batch (CRC-32C and header) before writing it, as the log must.
    validate: bool,
}

impl FileSink {
    fn new(parent: &Path, validate: bool) -> Self {
        let path = parent.join("baseline.bin");
        let file = create_file(&path);
        FileSink {
            path,
            file,
            validate,
        }
    }
}

fn create_file(path: &Path) -> File {
    match OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => panic!("cannot create {}: {e}", path.display()),
    }
}

impl Sink for FileSink {
    fn append(&mut self, batch: &[u8]) {
        if self.validate {
            if let Err(e) = sluice_records::validate_produced_batch(batch) {
                panic!("invalid batch: {e}");
            }
        }
        if let Err(e) = self.file.write_all(batch) {
            panic!("write failed: {e}");
        }
    }
    fn sync(&mut self) {
        if let Err(e) = self.file.sync_data() {
            panic!("fdatasync failed: {e}");
        }
    }
    fn reset(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        self.file = create_file(&self.path);
    }
}

/// Times `iters` rounds of `group` appends (then a sync when `durable`), leaving out resets.
fn timed_appends(
    sink: &mut dyn Sink,
    batch: &[u8],
    group: usize,
    durable: bool,
    iters: u64,
    written: &mut u64,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut start = Instant::now();
    for _ in 0..iters {
        if *written >= RESET_BYTES {
            total += start.elapsed();
            sink.reset();
            *written = 0;
            start = Instant::now();
        }
        for _ in 0..group {
            sink.append(batch);
        }
        if durable {
            sink.sync();
        }
        *written += (batch.len() * group) as u64;
    }
    total + start.elapsed()
}

fn append(c: &mut Criterion) {
    let dir = bench_dir();
    println!(
        "benchmark files in {} on {}",
        dir.path().display(),
        file_system_of(dir.path())
    );
    let mut g = c.benchmark_group("append");
    for (name, size) in [("16KiB", 16 * KIB), ("1MiB", MIB)] {
        let (batch, _) = batch_of(size);
        g.throughput(Throughput::Bytes(batch.len() as u64));
        let mut log = LogSink::new(dir.path());
        let mut log_written = 0;
        g.bench_function(BenchmarkId::new("log", name), |b| {
            b.iter_custom(|iters| {
                timed_appends(&mut log, &batch, 1, false, iters, &mut log_written)
            })
        });
        drop(log);
        for (baseline, validate) in [("write_all", false), ("validate+write_all", true)] {
            let mut file = FileSink::new(dir.path(), validate);
            let mut file_written = 0;
            g.bench_function(BenchmarkId::new(baseline, name), |b| {
                b.iter_custom(|iters| {
                    timed_appends(&mut file, &batch, 1, false, iters, &mut file_written)
                })
            });
        }
    }
    g.finish();
}

fn validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate");
    for (name, size) in [("16KiB", 16 * KIB), ("1MiB", MIB)] {
        let (batch, _) = batch_of(size);
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| sluice_records::validate_produced_batch(std::hint::black_box(&batch)))
        });
    }
    g.finish();
}

fn durable_append(c: &mut Criterion) {
    let dir = bench_dir();
    let mut g = c.benchmark_group("durable_append");
    // One fdatasync costs milliseconds: a few samples of a fixed iteration count.
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    let (batch, _) = batch_of(16 * KIB);
    for group in [1usize, 16] {
        let name = format!("group{group}");
        g.throughput(Throughput::Bytes((batch.len() * group) as u64));
        let mut log = LogSink::new(dir.path());
        let mut log_written = 0;
        g.bench_function(BenchmarkId::new("log", &name), |b| {
            b.iter_custom(|iters| {
                timed_appends(&mut log, &batch, group, true, iters, &mut log_written)
            })
        });
        drop(log);
        let mut file = FileSink::new(dir.path(), false);
        let mut file_written = 0;
        g.bench_function(BenchmarkId::new("write_all", &name), |b| {
            b.iter_custom(|iters| {
                timed_appends(&mut file, &batch, group, true, iters, &mut file_written)
            })
        });
    }
    g.finish();
}

/// A 64 MiB log of 16 KiB batches, flushed, and its segment file opened for the baseline.
struct ReadSetup {
    _dir: tempfile::TempDir,
    log: Log,
    segment: File,
    batch_bytes: u64,
    records_per_batch: i64,
}

impl ReadSetup {
    fn build() -> Self {
        let dir = bench_dir();
        let (batch, records_per_batch) = batch_of(16 * KIB);
        let tp = TopicPartition::new("read", 0);
        let (mut log, _) = match Log::create(dir.path(), &tp, config(), 0) {
            Ok(x) => x,
            Err(e) => panic!("create failed: {e}"),
        };
        while log.size_bytes() < READ_LOG_BYTES {
            if let Err(e) = log.append(&batch, opts()) {
                panic!("append failed: {e}");
            }
        }
        if let Err(e) = log.flush() {
            panic!("flush failed: {e}");
        }
        assert_eq!(log.segment_count(), 1);
        let segment_path = log.dir().join(format!("{:020}.log", 0));
        let segment = match File::open(&segment_path) {
            Ok(f) => f,
            Err(e) => panic!("cannot open {}: {e}", segment_path.display()),
        };
        ReadSetup {
            _dir: dir,
            log,
            segment,
            batch_bytes: batch.len() as u64,
            records_per_batch,
        }
    }

    /// One pass of fetches of `max_bytes` over the whole log, as a consumer would make them;
    /// `regions` collects what each returned.
    fn pass(
        &self,
        max_bytes: usize,
        buf: &mut Vec<u8>,
        mut regions: Option<&mut Vec<(u64, usize)>>,
    ) -> usize {
        let hw = self.log.high_watermark();
        let mut offset = 0;
        while offset < hw {
            let r = match self.log.read(offset, max_bytes, hw, true) {
                Ok(r) => r,
                Err(e) => panic!("read failed: {e}"),
            };
            let Some(region) = r.region else { break };
            buf.clear();
            if let Err(e) = region.read_into(buf) {
                panic!("read_into failed: {e}");
            }
            if let Some(v) = regions.as_deref_mut() {
                v.push((region.position(), region.len() as usize));
            }
            // Uniform batches: the region's length says how many records it holds.
            offset += (region.len() / self.batch_bytes) as i64 * self.records_per_batch;
        }
        buf.len()
    }
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(READ_LOG_BYTES));
    // Built on first use, so that a filter leaving this group out skips building it.
    let mut setup: Option<ReadSetup> = None;
    let mut buf = Vec::with_capacity(2 * MIB);
    for (name, max_bytes) in [("64KiB", 64 * KIB), ("1MiB", MIB)] {
        g.bench_function(BenchmarkId::new("log", name), |b| {
            let s = setup.get_or_insert_with(ReadSetup::build);
            b.iter(|| s.pass(max_bytes, &mut buf, None))
        });
        // The regions one pass of fetches returns, replayed by the baseline.
        let mut regions: Option<Vec<(u64, usize)>> = None;
        g.bench_function(BenchmarkId::new("pread", name), |b| {
            let s = setup.get_or_insert_with(ReadSetup::build);
            let regions = regions.get_or_insert_with(|| {
                let mut v = Vec::new();
                s.pass(max_bytes, &mut buf, Some(&mut v));
                v
            });
            b.iter(|| {
                for &(position, len) in regions.iter() {
                    buf.clear();
                    buf.resize(len, 0);
                    if let Err(e) = s.segment.read_exact_at(&mut buf, position) {
                        panic!("pread failed: {e}");
                    }
                }
                buf.len()
            })
        });
    }
    g.finish();
}

/// A crashed log with 256 MiB that were never flushed, and its checkpoint as the crash left it.
struct RecoverySetup {
    _dir: tempfile::TempDir,
    log_dir: PathBuf,
    crashed_checkpoint: Vec<u8>,
}

impl RecoverySetup {
    fn build() -> Self {
        let dir = bench_dir();
        let (batch, _) = batch_of(16 * KIB);
        let tp = TopicPartition::new("recovery", 0);
        let log_dir = dir.path().join(tp.dir_name());
        {
            let (mut log, _) = match Log::create(dir.path(), &tp, config(), 0) {
                Ok(x) => x,
                Err(e) => panic!("create failed: {e}"),
            };
            while log.size_bytes() < RECOVERY_BYTES {
                if let Err(e) = log.append(&batch, opts()) {
                    panic!("append failed: {e}");
                }
            }
            // Dropped without flush or close: a crash with everything unflushed.
        }
        let checkpoint = log_dir.join("partition.checkpoint");
        let crashed_checkpoint = match std::fs::read(&checkpoint) {
            Ok(b) => b,
            Err(e) => panic!("cannot read {}: {e}", checkpoint.display()),
        };
        let s = RecoverySetup {
            _dir: dir,
            log_dir,
            crashed_checkpoint,
        };
        let (first, scanned) = s.open();
        println!(
            "recovery: first open of {} MiB unflushed (includes writing back the dirty pages): \
             {:.3} s = {:.3} s/GiB",
            scanned >> 20,
            first.as_secs_f64(),
            first.as_secs_f64() / gib(scanned)
        );
        s
    }

    /// Opens the crashed log (recovery rewrites the checkpoint: the crashed one goes back first).
    fn open(&self) -> (Duration, u64) {
        let checkpoint = self.log_dir.join("partition.checkpoint");
        if let Err(e) = std::fs::write(&checkpoint, &self.crashed_checkpoint) {
            panic!("cannot restore the checkpoint: {e}");
        }
        let start = Instant::now();
        let (log, report) = match Log::open(&self.log_dir, config(), 0) {
            Ok(x) => x,
            Err(e) => panic!("open failed: {e}"),
        };
        let took = start.elapsed();
        assert!(!report.clean_shutdown && report.bytes_scanned >= RECOVERY_BYTES);
        drop(log);
        (took, report.bytes_scanned)
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(RECOVERY_BYTES));
    let mut setup: Option<RecoverySetup> = None;
    let mut times = Vec::new();
    g.bench_function("open_256MiB_unflushed", |b| {
        let s = setup.get_or_insert_with(RecoverySetup::build);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (t, _) = s.open();
                times.push(t);
                total += t;
            }
            total
        })
    });
    g.finish();
    times.sort();
    if let Some(median) = times.get(times.len() / 2) {
        println!(
            "recovery: median open over {} runs, warm clean cache: {:.3} s for {} MiB = {:.3} s/GiB",
            times.len(),
            median.as_secs_f64(),
            RECOVERY_BYTES >> 20,
            median.as_secs_f64() / gib(RECOVERY_BYTES)
        );
    }
}

criterion_group!(benches, append, validate, durable_append, read, recovery);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
