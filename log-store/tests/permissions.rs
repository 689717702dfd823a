//! Files the log cannot write and files that are gone: a read-only segment file or directory
//! gives an I/O error naming the file (no panic, nothing lost, all fine again once writable);
//! a segment whose `.log` is missing while its indexes remain opens without it, its orphaned
//! indexes removed.
//!
//! Root ignores permission bits, so as root "read-only" is the immutable attribute
//! (`chattr +i`); a test that can make nothing read-only says so and skips.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use log_store::testing::{as_produced, build_batch, read_batches};
use log_store::{AppendOptions, Error, Log, LogConfig, TopicPartition};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
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

fn contents(log: &Log) -> Result<BTreeMap<i64, Vec<u8>>, Error> {
    Ok(read_batches(log)?
        .into_iter()
        .map(|(b, bytes)| (b, as_produced(&bytes)))
        .collect())
}

/// A log in a fresh directory with `n` batches of about 300 bytes (several segments), closed.
fn closed_log(n: usize) -> Result<(tempfile::TempDir, PathBuf, Vec<i64>), Error> {
    let parent = tempfile::tempdir().map_err(|e| Error::Io {
        path: "tmp".into(),
        source: e,
    })?;
    let (mut log, _) = Log::create(parent.path(), &TopicPartition::new("perm", 0), config(), 0)?;
    for i in 0..n {
        log.append(&build_batch(2, 140, 1_000 + i as i64, None), opts())?;
    }
    let dir = log.dir().to_path_buf();
    let bases = log.segment_base_offsets();
    log.close()?;
    Ok((parent, dir, bases))
}

fn segment_file(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}"))
}

/// Makes a file or directory read-only for as long as it lives.
struct ReadOnly {
    path: PathBuf,
    mode: u32,
    immutable: bool,
}

impl ReadOnly {
    /// Permission bits first; the immutable attribute where they do not bind (root). `Err` says
    /// why neither works here.
    fn new(path: &Path) -> Result<ReadOnly, String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let mode = meta.permissions().mode();
        let mut guard = ReadOnly {
            path: path.to_path_buf(),
            mode,
            immutable: false,
        };
        let read_only = if meta.is_dir() { 0o555 } else { 0o444 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(read_only))
            .map_err(|e| e.to_string())?;
        if !writable(path) {
            return Ok(guard);
        }
        let out = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .output()
            .map_err(|e| format!("permission bits do not bind (root?) and chattr fails: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "permission bits do not bind (root?) and chattr +i fails: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        guard.immutable = true;
        if writable(path) {
            return Err("neither permission bits nor chattr +i make it read-only".into());
        }
        Ok(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(&self.path).status();
        }
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(self.mode));
    }
}

/// Whether this process can write the file, or create a file in the directory.
fn writable(path: &Path) -> bool {
    if path.is_dir() {
        let probe = path.join(".probe");
        let ok = std::fs::write(&probe, b"x").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    } else {
        std::fs::OpenOptions::new().write(true).open(path).is_ok()
    }
}

fn assert_permission_error(e: &Error, dir: &Path) {
    match e {
        Error::Io { path, source } => {
            assert_eq!(source.kind(), ErrorKind::PermissionDenied, "{e}");
            assert!(path.starts_with(dir), "the error names {}", path.display());
            assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        }
        other => panic!("expected a permission error, got {other}"),
    }
}

#[test]
fn a_read_only_segment_file_is_a_clear_error() -> TestResult {
    let (_parent, dir, bases) = closed_log(30)?;
    assert!(bases.len() >= 3);
    let before = contents(&Log::open(&dir, config(), 0)?.0)?;
    let target = segment_file(&dir, bases[1], "log");
    let guard = match ReadOnly::new(&target) {
        Ok(g) => g,
        Err(why) => {
            println!("skipped: cannot make a file read-only: {why}");
            return Ok(());
        }
    };
    let err = Log::open(&dir, config(), 0)
        .err()
        .ok_or("a log with a read-only segment opened for writing")?;
    assert_permission_error(&err, &dir);
    assert!(matches!(&err, Error::Io { path, .. } if *path == target));
    drop(guard);
    let (log, _) = Log::open(&dir, config(), 0)?;
    assert_eq!(contents(&log)?, before, "nothing was lost");
    Ok(())
}

#[test]
fn a_read_only_directory_is_a_clear_error() -> TestResult {
    let (_parent, dir, _) = closed_log(10)?;
    let (mut log, _) = Log::open(&dir, config(), 0)?;
    let before = contents(&log)?;
    let leo = log.log_end_offset();
    let guard = match ReadOnly::new(&dir) {
        Ok(g) => g,
        Err(why) => {
            println!("skipped: cannot make a directory read-only: {why}");
            return Ok(());
        }
    };
    // A roll has to create files: refused, with the file named.
    let err = log.roll(0).err().ok_or("rolled in a read-only directory")?;
    assert_permission_error(&err, &dir);
    let big = build_batch(10, 190, 5_000, None);
    let err = log
        .append(&big, opts())
        .err()
        .ok_or("rolled in a read-only directory")?;
    assert_permission_error(&err, &dir);
    let err = log
        .checkpoint()
        .err()
        .ok_or("checkpointed in a read-only directory")?;
    assert_permission_error(&err, &dir);
    // Nothing changed, reads work, the log is not broken.
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(contents(&log)?, before);
    assert!(log.is_offline().is_none());
    drop(log);
    let err = Log::open(&dir, config(), 0)
        .err()
        .ok_or("opened a log in a read-only directory")?;
    assert_permission_error(&err, &dir);
    drop(guard);
    let (mut log, _) = Log::open(&dir, config(), 0)?;
    assert_eq!(contents(&log)?, before);
    assert_eq!(log.append(&big, opts())?.base_offset, leo);
    log.close()?;
    Ok(())
}

#[test]
fn a_missing_log_file_leaves_its_indexes_orphaned_and_cleaned_up() -> TestResult {
    for victim in ["last", "middle", "only"] {
        let (_parent, dir, bases) = closed_log(if victim == "only" { 3 } else { 30 })?;
        let all = contents(&Log::open(&dir, config(), 0)?.0)?;
        let base = match victim {
            "last" => bases[bases.len() - 1],
            "middle" => bases[bases.len() / 2],
            _ => {
                assert_eq!(bases.len(), 1);
                bases[0]
            }
        };
        let next_base = bases
            .iter()
            .copied()
            .find(|b| *b > base)
            .unwrap_or(i64::MAX);
        std::fs::remove_file(segment_file(&dir, base, "log"))?;
        assert!(segment_file(&dir, base, "index").exists());
        let (mut log, _) = Log::open(&dir, config(), 0)
            .map_err(|e| format!("{victim} segment's .log missing: {e}"))?;
        for suffix in ["index", "timeindex"] {
            let orphan = segment_file(&dir, base, suffix);
            // The only segment is created again, empty, with fresh indexes.
            if victim != "only" {
                assert!(!orphan.exists(), "{} was left behind", orphan.display());
            }
        }
        let expected: BTreeMap<i64, Vec<u8>> = all
            .iter()
            .filter(|(b, _)| **b < base || **b >= next_base)
            .map(|(b, v)| (*b, v.clone()))
            .collect();
        assert_eq!(contents(&log)?, expected, "{victim}");
        // Appends go on at the end of what is left.
        let leo = log.log_end_offset();
        let batch = build_batch(2, 140, 9_000, None);
        assert_eq!(log.append(&batch, opts())?.base_offset, leo);
        assert_eq!(
            contents(&log)?.get(&leo).map(Vec::as_slice),
            Some(batch.as_slice())
        );
        log.close()?;
    }
    Ok(())
}
