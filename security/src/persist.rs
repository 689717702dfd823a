//! Durable JSON files for the security stores: written atomically (tmp file, fsync, rename,
//! fsync of the directory), so a crash leaves the old file or the new one, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a store could not be read or written. The broker maps `Io` to `KAFKA_STORAGE_ERROR`
/// or refuses to start; `Corrupted` means the file needs an operator (it is never silently
/// replaced by an empty store).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing, syncing or renaming failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a store this crate wrote.
    #[error("corrupted store {path}: {reason}")]
    Corrupted { path: PathBuf, reason: String },
}

impl StoreError {
    fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn corrupted(path: &Path, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupted {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The bytes of `path`, or `None` if it does not exist (a store never written is empty).
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Parses a store file, or `None` when it is missing. Any parse failure is `Corrupted`.
pub(crate) fn load_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, StoreError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::corrupted(path, e.to_string()))
}

/// Serializes `value` and replaces `path` with it atomically. Creates the parent directory if
/// needed. On Unix the file is readable by its owner only: credential stores hold keys.
pub(crate) fn save_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| StoreError::corrupted(path, format!("cannot serialize: {e}")))?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

/// Replaces `path` with `bytes`: write `<path>.tmp`, fsync it, rename it over `path`, fsync the
/// directory so the rename itself is durable.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    // A tmp file left by a crash may have other permissions; start from nothing.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&tmp, e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| StoreError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
    sync_dir(&dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), StoreError> {
    // Directories cannot be opened for syncing on other platforms; rename is the best we have.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn missing_file_is_none() -> TestResult {
        let dir = tempfile::tempdir()?;
        let v: Option<Vec<u32>> = load_json(&dir.path().join("absent.json"))?;
        assert_eq!(v, None);
        Ok(())
    }

    #[test]
    fn write_then_read_and_no_tmp_left() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nested/dir/store.json");
        save_json(&path, &vec![1u32, 2, 3])?;
        save_json(&path, &vec![4u32])?;
        let v: Option<Vec<u32>> = load_json(&path)?;
        assert_eq!(v, Some(vec![4]));
        let names: Vec<_> = std::fs::read_dir(path.parent().ok_or("no parent")?)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, vec![std::ffi::OsString::from("store.json")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)?.permissions().mode();
            assert_eq!(mode & 0o077, 0, "store readable by others: {mode:o}");
        }
        Ok(())
    }

    #[test]
    fn garbage_is_corrupted() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.json");
        std::fs::write(&path, b"{not json")?;
        let r: Result<Option<Vec<u32>>, _> = load_json(&path);
        assert!(matches!(r, Err(StoreError::Corrupted { .. })), "{r:?}");
        Ok(())
    }

    #[test]
    fn a_stale_tmp_file_is_overwritten() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.json");
        std::fs::write(dir.path().join("store.json.tmp"), b"half a write")?;
        save_json(&path, &vec![7u32])?;
        let v: Option<Vec<u32>> = load_json(&path)?;
        assert_eq!(v, Some(vec![7]));
        Ok(())
    }
}
