//! Small text checkpoint files written atomically (tmp file, fsync, rename, fsync directory):
//! the partition checkpoint (log start offset and recovery point) and the leader epoch cache.

use std::path::Path;

use crate::error::{Error, Result};

/// `partition.checkpoint`: where recovery starts and where the log starts.
pub(crate) const PARTITION_CHECKPOINT: &str = "partition.checkpoint";
/// `leader-epoch-checkpoint`, as Kafka names it.
pub(crate) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// `cleaner-offset-checkpoint`: the cleaner's first dirty offset. Kafka keeps one such file per
/// log directory with a line per partition; one per partition directory moves and goes with it.
pub(crate) const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// Writes `lines` to `dir/name` so that a crash leaves either the old or the new file.
pub(crate) fn write_atomically(dir: &Path, name: &str, lines: &[String]) -> Result<()> {
    let path = dir.join(name);
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    crate::atomic_file::write_atomically(&path, text.as_bytes()).map_err(|e| Error::io(&path, e))
}

/// Reads `dir/name` as lines; `None` when it does not exist.
pub(crate) fn read_lines(dir: &Path, name: &str) -> Result<Option<Vec<String>>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.lines().map(str::to_owned).collect())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The partition checkpoint's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PartitionCheckpoint {
    pub(crate) log_start_offset: i64,
    /// Everything below this offset is fsynced, and so are the indexes of the segments below it.
    pub(crate) recovery_point: i64,
    /// Written by a clean shutdown: the log ends exactly at `recovery_point`.
    pub(crate) clean_shutdown: bool,
}

impl PartitionCheckpoint {
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        write_atomically(
            dir,
            PARTITION_CHECKPOINT,
            &[
                "version 1".into(),
                format!("log_start_offset {}", self.log_start_offset),
                format!("recovery_point {}", self.recovery_point),
                format!("clean_shutdown {}", self.clean_shutdown),
            ],
        )
    }

    /// Reads the checkpoint; a missing or unreadable one gives `None` (full recovery).
    pub(crate) fn read(dir: &Path) -> Result<Option<Self>> {
        let Some(lines) = read_lines(dir, PARTITION_CHECKPOINT)? else {
            return Ok(None);
        };
        let mut c = PartitionCheckpoint::default();
        let mut seen = 0;
        for l in &lines {
            let mut it = l.split_whitespace();
            match (it.next(), it.next()) {
                (Some("version"), Some("1")) => seen |= 1,
                (Some("log_start_offset"), Some(v)) => {
                    c.log_start_offset = v.parse().unwrap_or(-1);
                    seen |= 2;
                }
                (Some("recovery_point"), Some(v)) => {
                    c.recovery_point = v.parse().unwrap_or(-1);
                    seen |= 4;
                }
                (Some("clean_shutdown"), Some(v)) => c.clean_shutdown = v == "true",
                _ => {}
            }
        }
        if seen != 7 || c.log_start_offset < 0 || c.recovery_point < 0 {
            tracing::warn!(dir = %dir.display(), "unreadable partition checkpoint; recovering the whole log");
            return Ok(None);
        }
        Ok(Some(c))
    }
}

/// Writes the cleaner checkpoint: everything below `first_dirty_offset` has been compacted.
pub(crate) fn write_cleaner_checkpoint(dir: &Path, first_dirty_offset: i64) -> Result<()> {
    write_atomically(
        dir,
        CLEANER_CHECKPOINT,
        &[
            "version 1".into(),
            format!("first_dirty_offset {first_dirty_offset}"),
        ],
    )
}

/// Reads the cleaner checkpoint; `None` when it is missing or unreadable (the next pass then
/// treats the whole log as dirty, which costs work but loses nothing).
pub(crate) fn read_cleaner_checkpoint(dir: &Path) -> Result<Option<i64>> {
    let Some(lines) = read_lines(dir, CLEANER_CHECKPOINT)? else {
        return Ok(None);
    };
    let mut version = false;
    let mut offset = None;
    for l in &lines {
        let mut it = l.split_whitespace();
        match (it.next(), it.next()) {
            (Some("version"), Some("1")) => version = true,
            (Some("first_dirty_offset"), Some(v)) => offset = v.parse::<i64>().ok(),
            _ => {}
        }
    }
    match offset {
        Some(o) if version && o >= 0 => Ok(Some(o)),
        _ => {
            tracing::warn!(dir = %dir.display(), "unreadable cleaner checkpoint; the whole log is dirty");
            Ok(None)
        }
    }
}
