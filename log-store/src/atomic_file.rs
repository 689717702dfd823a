//! The one atomic file write of the log store and the broker: a crash at any point leaves
//! either the old file or the new one, whole (write a temporary file, fsync it, rename it over
//! the target, fsync the directory).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp: PathBuf = dir.join(tmp_name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_tmp() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state");
        write_atomically(&path, b"one")?;
        write_atomically(&path, b"two")?;
        assert_eq!(std::fs::read(&path)?, b"two");
        assert!(!dir.path().join("state.tmp").exists());
        Ok(())
    }
}
