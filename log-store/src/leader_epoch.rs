//! The leader epoch cache: (epoch, start offset) pairs, as Kafka's `LeaderEpochFileCache`,
//! answering OffsetForLeaderEpoch.

use std::path::{Path, PathBuf};

use crate::checkpoint::{read_lines, write_atomically, LEADER_EPOCH_CHECKPOINT};
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    dir: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let mut entries: Vec<EpochEntry> = Vec::new();
        if let Some(lines) = read_lines(dir, LEADER_EPOCH_CHECKPOINT)? {
            // Format: "0" (version), count, then "epoch start_offset" lines, as Kafka writes it.
            for l in lines.iter().skip(2) {
                let mut it = l.split_whitespace();
                if let (Some(Ok(epoch)), Some(Ok(start_offset))) =
                    (it.next().map(str::parse), it.next().map(str::parse))
                {
                    if entries.last().is_none_or(|p: &EpochEntry| {
                        epoch > p.epoch && start_offset >= p.start_offset
                    }) {
                        entries.push(EpochEntry {
                            epoch,
                            start_offset,
                        });
                    }
                }
            }
        }
        Ok(LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    fn persist(&self) -> Result<()> {
        let mut lines = vec!["0".to_string(), self.entries.len().to_string()];
        lines.extend(
            self.entries
                .iter()
                .map(|e| format!("{} {}", e.epoch, e.start_offset)),
        );
        write_atomically(&self.dir, LEADER_EPOCH_CHECKPOINT, &lines)
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        if epoch < 0 || self.latest_epoch().is_some_and(|l| l >= epoch) {
            return Ok(());
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist()
    }

    /// Drops epochs that start at or after `end_offset` (after truncation).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` and the end offset of that epoch
    /// (the next epoch's start, or `log_end_offset` for the latest). `None` if unknown.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let i = self.entries.iter().rposition(|e| e.epoch <= epoch)?;
        let end = self
            .entries
            .get(i + 1)
            .map_or(log_end_offset, |n| n.start_offset);
        Some((self.entries[i].epoch, end))
    }
}
