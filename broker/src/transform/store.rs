//! A task's local state store: a redb file holding the task's changelog entries as of a
//! changelog offset (the checkpoint).
//!
//! The changelog topic stays the source of truth; this file only spares a restart from
//! replaying the whole changelog. After each successful commit the task writes the entries it
//! just committed and the changelog's end offset in one redb transaction, so the file always
//! holds exactly the committed state up to its checkpoint: a crash can only leave it at an
//! older checkpoint (which the restart then replays from), never ahead of the changelog and
//! never half-written. Commits to the file are not fsynced each time (redb's
//! `Durability::None`, which keeps the file consistent at its last durable commit); a durable
//! commit follows every [`DURABLE_INTERVAL`] and when the task stops.
//!
//! The file is a cache: if it cannot be opened or read, or belongs to another incarnation of
//! the changelog topic (a transform deleted and deployed again), it is wiped and the task
//! replays the changelog from its start, as it did before there was a local store.

// redb's own error type is large; it only travels from a redb call to the `StoreError` that
// wraps it as text, once per commit.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, TableDefinition};
use uuid::Uuid;

/// Changelog keys and values, exactly as the changelog holds them.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// `offset`: the changelog offset the entries reflect (replay starts there);
/// `topic_id`: the changelog topic's id; `format`: this file's layout version.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const FORMAT: u64 = 1;

/// How often a commit to the file is made durable (fsynced).
pub const DURABLE_INTERVAL: Duration = Duration::from_secs(5);

/// The directory under the data dir that holds the stores.
pub const DIR: &str = "__transform-state";

/// The directory of a transform's stores (removed when the transform is deleted).
pub fn transform_dir(data_dir: &Path, transform: &str) -> PathBuf {
    data_dir.join(DIR).join(transform)
}

/// Where the store of a task (one stage on one partition) lives.
pub fn path_for(data_dir: &Path, transform: &str, stage: usize, partition: i32) -> PathBuf {
    transform_dir(data_dir, transform).join(format!("{stage}-{partition}.redb"))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state store {path}: {message}")]
    Db { path: PathBuf, message: String },
    #[error("state store {0} is open elsewhere")]
    AlreadyOpen(PathBuf),
}

/// Where the entries in a store stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub topic_id: Uuid,
    /// The next changelog offset to replay.
    pub offset: i64,
}

pub struct LocalStore {
    db: Database,
    path: PathBuf,
    last_durable: Instant,
    /// Commits since the last durable one.
    dirty: bool,
}

impl LocalStore {
    /// Opens (or creates) the store at `path`. A file that redb cannot open is removed and
    /// created anew: it is only a cache of the changelog.
    pub fn open(path: &Path) -> Result<LocalStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::AlreadyOpen(path.to_path_buf()))
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "state store unreadable; replaying the changelog instead");
                std::fs::remove_file(path).map_err(|source| StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Database::create(path).map_err(|e| db_err(path, e))?
            }
        };
        Ok(LocalStore {
            db,
            path: path.to_path_buf(),
            last_durable: Instant::now(),
            dirty: false,
        })
    }

    /// The checkpoint, if the store has one in the current format.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let get = |k: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(meta
                .get(k)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec()))
        };
        let format = get("format")?.and_then(|v| Some(u64::from_be_bytes(v.try_into().ok()?)));
        if format != Some(FORMAT) {
            return Ok(None);
        }
        let offset = get("offset")?.and_then(|v| Some(i64::from_be_bytes(v.try_into().ok()?)));
        let topic_id = get("topic_id")?.and_then(|v| Uuid::from_slice(&v).ok());
        Ok(match (offset, topic_id) {
            (Some(offset), Some(topic_id)) => Some(Checkpoint { topic_id, offset }),
            _ => None,
        })
    }

    /// Calls `f` with every entry, in key order.
    pub fn load(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(ENTRIES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(self.err(e)),
        };
        for item in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            f(k.value(), v.value()).map_err(|message| StoreError::Db {
                path: self.path.clone(),
                message,
            })?;
        }
        Ok(())
    }

    /// Writes `entries` (a `None` value deletes the key) and moves the checkpoint, atomically.
    pub fn apply<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        checkpoint: Checkpoint,
    ) -> Result<(), StoreError> {
        self.write(false, |tx| {
            let mut table = tx.open_table(ENTRIES)?;
            for (k, v) in entries {
                match v {
                    Some(v) => {
                        table.insert(k, v)?;
                    }
                    None => {
                        table.remove(k)?;
                    }
                }
            }
            drop(table);
            put_meta(tx, checkpoint)
        })
    }

    /// Empties the store and sets its checkpoint (a fresh start for `checkpoint.topic_id`).
    pub fn reset(&mut self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.write(true, |tx| {
            tx.delete_table(ENTRIES)?;
            put_meta(tx, checkpoint)
        })
    }

    /// Makes every commit so far durable (when the task stops).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        self.write(true, |_| Ok(()))
    }

    /// Whether commits have waited [`DURABLE_INTERVAL`] for a durable one (an idle task
    /// syncs then, so a crash after it replays nothing).
    pub fn sync_due(&self) -> bool {
        self.dirty && self.last_durable.elapsed() >= DURABLE_INTERVAL
    }

    fn write(
        &mut self,
        force_durable: bool,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let durable = force_durable || self.last_durable.elapsed() >= DURABLE_INTERVAL;
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        if durable {
            self.last_durable = Instant::now();
        }
        self.dirty = !durable;
        Ok(())
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }
}

fn put_meta(tx: &redb::WriteTransaction, c: Checkpoint) -> Result<(), redb::Error> {
    let mut meta = tx.open_table(META)?;
    meta.insert("format", &FORMAT.to_be_bytes()[..])?;
    meta.insert("offset", &c.offset.to_be_bytes()[..])?;
    meta.insert("topic_id", &c.topic_id.as_bytes()[..])?;
    Ok(())
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_path_buf(),
        message: e.into().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(store: &LocalStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        store
            .load(|k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .expect("load");
        out
    }

    #[test]
    fn entries_and_checkpoint_survive_reopen() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "t", 0, 1);
        let id = Uuid::new_v4();
        {
            let mut s = LocalStore::open(&path)?;
            assert_eq!(s.checkpoint()?, None);
            s.apply(
                [(&b"a"[..], Some(&b"1"[..])), (&b"b"[..], Some(&b"2"[..]))],
                Checkpoint {
                    topic_id: id,
                    offset: 3,
                },
            )?;
            s.apply(
                [(&b"a"[..], None), (&b"c"[..], Some(&b"3"[..]))],
                Checkpoint {
                    topic_id: id,
                    offset: 7,
                },
            )?;
            s.sync()?;
        }
        let s = LocalStore::open(&path)?;
        assert_eq!(
            s.checkpoint()?,
            Some(Checkpoint {
                topic_id: id,
                offset: 7
            })
        );
        assert_eq!(
            entries(&s),
            vec![
                (b"b".to_vec(), b"2".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        Ok(())
    }

    #[test]
    fn reset_empties_the_store() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = LocalStore::open(&path_for(dir.path(), "t", 0, 0))?;
        let id = Uuid::new_v4();
        s.apply(
            [(&b"a"[..], Some(&b"1"[..]))],
            Checkpoint {
                topic_id: id,
                offset: 1,
            },
        )?;
        let other = Uuid::new_v4();
        s.reset(Checkpoint {
            topic_id: other,
            offset: 0,
        })?;
        assert!(entries(&s).is_empty());
        assert_eq!(
            s.checkpoint()?,
            Some(Checkpoint {
                topic_id: other,
                offset: 0
            })
        );
        Ok(())
    }

    #[test]
    fn a_garbage_file_is_replaced_not_fatal() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "t", 0, 0);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"this is not a redb file at all, just some bytes").expect("write");
        let s = LocalStore::open(&path)?;
        assert_eq!(s.checkpoint()?, None);
        assert!(entries(&s).is_empty());
        Ok(())
    }

    #[test]
    fn a_second_open_of_a_live_store_is_refused() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "t", 0, 0);
        let _first = LocalStore::open(&path)?;
        assert!(LocalStore::open(&path).is_err());
        Ok(())
    }
}
