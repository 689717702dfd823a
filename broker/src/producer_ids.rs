//! Allocation of idempotent producer ids, as Kafka's `ProducerIdManager`: ids are handed out
//! from blocks of [`PRODUCER_ID_BLOCK_SIZE`], and the end of the current block is written to
//! `producer-ids` in the data dir (atomically, fsynced) before any id of the block is handed
//! out. A restart continues after the last reserved block, so no id is ever handed out twice,
//! at the price of skipping the rest of a block.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Ids reserved per write of the block file (Kafka's `ProducerIdManager` block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// The block file's name in the data dir.
pub const PRODUCER_ID_FILE: &str = "producer-ids";

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("cannot persist the producer id block in {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is unreadable: {reason}")]
    Corrupted { path: PathBuf, reason: String },
    #[error("producer ids are exhausted")]
    Exhausted,
}

#[derive(Debug)]
struct Block {
    next: i64,
    /// One past the last reserved id; `next == end`: a new block must be reserved first.
    end: i64,
}

/// Hands out producer ids that are unique across restarts of this broker.
#[derive(Debug)]
pub struct ProducerIdManager {
    dir: PathBuf,
    /// Held while a block is reserved (one file write and fsync per block): short and rare,
    /// and callers run on a blocking thread.
    block: Mutex<Block>,
}

impl ProducerIdManager {
    /// Reads the reserved block end from `data_dir` (0 when the file does not exist yet).
    pub fn open(data_dir: &Path) -> Result<Self, ProducerIdError> {
        let path = data_dir.join(PRODUCER_ID_FILE);
        let start = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).ok_or_else(|| ProducerIdError::Corrupted {
                path: path.clone(),
                reason: format!("unexpected content {text:?}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(ProducerIdError::Io { path, source }),
        };
        Ok(ProducerIdManager {
            dir: data_dir.to_path_buf(),
            block: Mutex::new(Block {
                next: start,
                end: start,
            }),
        })
    }

    /// The next producer id; reserves (and persists) a new block when the current one is used
    /// up. Blocks the calling thread for the fsyncs of that reservation.
    pub fn generate(&self) -> Result<i64, ProducerIdError> {
        let mut b = match self.block.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        if b.next >= b.end {
            let end = b
                .end
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .ok_or(ProducerIdError::Exhausted)?;
            self.persist(end)?;
            b.end = end;
        }
        let id = b.next;
        b.next += 1;
        Ok(id)
    }

    fn persist(&self, block_end: i64) -> Result<(), ProducerIdError> {
        let path = self.dir.join(PRODUCER_ID_FILE);
        let text = format!("version 1\nnext_block_start {block_end}\n");
        log_store::atomic_file::write_atomically(&path, text.as_bytes()).map_err(|source| {
            ProducerIdError::Io {
                path: path.clone(),
                source,
            }
        })
    }
}

fn parse(text: &str) -> Option<i64> {
    let mut lines = text.lines();
    if lines.next()? != "version 1" {
        return None;
    }
    let v: i64 = lines
        .next()?
        .strip_prefix("next_block_start ")?
        .parse()
        .ok()?;
    (v >= 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_after_a_restart() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let m = ProducerIdManager::open(dir.path())?;
        assert_eq!((m.generate()?, m.generate()?), (0, 1));
        drop(m);
        let m = ProducerIdManager::open(dir.path())?;
        assert_eq!(m.generate()?, PRODUCER_ID_BLOCK_SIZE);
        for _ in 1..PRODUCER_ID_BLOCK_SIZE {
            m.generate()?;
        }
        assert_eq!(m.generate()?, 2 * PRODUCER_ID_BLOCK_SIZE);
        drop(m);
        let m = ProducerIdManager::open(dir.path())?;
        assert_eq!(m.generate()?, 3 * PRODUCER_ID_BLOCK_SIZE);
        std::fs::write(dir.path().join(PRODUCER_ID_FILE), "garbage")?;
        assert!(ProducerIdManager::open(dir.path()).is_err());
        Ok(())
    }
}
