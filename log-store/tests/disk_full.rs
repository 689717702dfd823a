//! A really full disk: a 1 MiB tmpfs, mounted for the test when it runs as root and `mount`
//! works (skipped with the reason printed otherwise; always unmounted). The log is filled with
//! flushed appends until the file system refuses them, then with smaller ones to the brim. Each
//! refused append must fail with a disk-full error and leave nothing visible; reads must keep
//! working; a reopen on the full disk must either fail with a disk-full error or show exactly
//! the acknowledged batches; and once space is freed the log must reopen with exactly those and
//! take appends again. Index pages are reserved through `write(2)`, so a full disk never turns
//! into a SIGBUS on a mapped index.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use log_store::testing::{as_produced, build_batch, read_batches};
use log_store::{AppendOptions, Log, LogConfig, TopicPartition};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TMPFS_SIZE: &str = "1m";
const BALLAST_BYTES: usize = 128 * 1024;
/// Appends tried at most: 1 MiB cannot take more even of the smallest batches.
const APPENDS_MAX: usize = 20_000;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one, or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned));
        if uid.as_deref() != Some("0") {
            return Err(format!("not running as root (effective uid {uid:?})"));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let plain = Command::new("umount").arg(self.dir.path()).status();
        if !plain.is_ok_and(|s| s.success()) {
            // Something still holds a file open: detach it now, the kernel frees it later.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 192 * 1024,
        index_interval_bytes: 1024,
        segment_index_bytes: 16 * 1024,
        ..LogConfig::default()
    }
}

fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms: 0,
    }
}

fn contents(log: &Log) -> Result<BTreeMap<i64, Vec<u8>>, log_store::Error> {
    Ok(read_batches(log)?
        .into_iter()
        .map(|(b, bytes)| (b, as_produced(&bytes)))
        .collect())
}

fn data_file_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) == Some("log") {
            total += std::fs::metadata(&p)?.len();
        }
    }
    Ok(total)
}

#[test]
fn a_full_tmpfs_refuses_appends_cleanly_and_recovers_when_space_returns() -> TestResult {
    let fs = match Tmpfs::mount(TMPFS_SIZE) {
        Ok(fs) => fs,
        Err(why) => {
            println!("skipped: the disk-full test needs a tmpfs: {why}");
            return Ok(());
        }
    };
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; BALLAST_BYTES])?;
    let tp = TopicPartition::new("full", 0);
    let (mut log, _) = Log::create(fs.path(), &tp, config(), 0)?;
    let dir = log.dir().to_path_buf();
    let mut acked: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    // 16 KiB batches until the first refusal, then 1 KiB ones, then 80-byte ones.
    let sizes = [(16, 1_000), (4, 230), (1, 20)];
    let mut size = 0;
    let mut refusals = 0;
    for i in 0..APPENDS_MAX {
        let (records, value_len) = sizes[size];
        let batch = build_batch(records, value_len, 1_000 + i as i64, None);
        let leo = log.log_end_offset();
        match log.append(&batch, opts()) {
            Ok(info) => {
                assert_eq!(info.base_offset, leo);
                log.flush()?;
                acked.insert(leo, batch);
            }
            Err(e) => {
                assert!(e.is_disk_full(), "not a disk-full error: {e}");
                assert!(
                    log.is_offline().is_none(),
                    "a full disk took the log offline"
                );
                assert_eq!(log.log_end_offset(), leo);
                // Reads keep working and show only what was acknowledged.
                assert_eq!(contents(&log)?, acked);
                assert_eq!(data_file_bytes(&dir)?, log.size_bytes());
                refusals += 1;
                size += 1;
                if size == sizes.len() {
                    break;
                }
            }
        }
    }
    assert_eq!(refusals, sizes.len(), "the tmpfs never filled up");
    assert!(log.segment_count() > 1, "the log rolled on the way");
    println!(
        "full after {} batches, {} bytes in {} segments",
        acked.len(),
        log.size_bytes(),
        log.segment_count()
    );
    // A reopen on the full disk (after a crash): a clean disk-full error, or exactly the batches.
    drop(log);
    match Log::open(&dir, config(), 0) {
        Ok((log, _)) => {
            println!("reopened on the full disk");
            assert_eq!(contents(&log)?, acked);
        }
        Err(e) => {
            println!("reopening on the full disk failed cleanly: {e}");
            assert!(e.is_disk_full(), "reopening a full disk: {e}");
        }
    }
    // Space returns.
    std::fs::remove_file(&ballast)?;
    let (mut log, _) = Log::open(&dir, config(), 0)?;
    assert_eq!(contents(&log)?, acked);
    let leo = log.log_end_offset();
    let batch = build_batch(16, 1_000, 99_999, None);
    assert_eq!(log.append(&batch, opts())?.base_offset, leo);
    log.flush()?;
    acked.insert(leo, batch);
    assert_eq!(contents(&log)?, acked);
    log.close()?;
    Ok(())
}
