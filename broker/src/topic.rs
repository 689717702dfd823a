//! Topics: name, id, partitions and config overrides, persisted as one JSON file per topic in
//! `<data-dir>/.topics/` (written atomically), as the metadata Kafka keeps in its controller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log_store::LogConfig;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::partition::Partition;

pub const TOPICS_DIR: &str = ".topics";

/// What is persisted of a topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Topic-level config overrides (Kafka names).
    pub configs: BTreeMap<String, String>,
}

/// A live topic. Replaced as a whole (copy on write) when its metadata changes.
pub struct Topic {
    pub meta: TopicMeta,
    pub config: LogConfig,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn is_internal(&self) -> bool {
        self.meta.name.starts_with("__")
    }
}

/// Kafka's topic name rules: 1-249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1 to 249 characters, not {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be \".\" or \"..\"".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains the illegal character {c:?}; use [a-zA-Z0-9._-]"
        ));
    }
    Ok(())
}

/// The effective log config: broker defaults overridden by the topic's configs.
pub fn effective_config(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut c = defaults.clone();
    for (k, v) in overrides {
        c.set(k, v).map_err(|e| e.to_string())?;
    }
    Ok(c)
}

fn meta_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(TOPICS_DIR).join(format!("{name}.json"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl TopicMeta {
    /// Writes the metadata atomically (tmp, fsync, rename, fsync dir).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let dir = data_dir.join(TOPICS_DIR);
        std::fs::create_dir_all(&dir)?;
        let path = meta_path(data_dir, &self.name);
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        log_store::atomic_file::write_atomically(&path, &json)
    }

    pub fn remove(data_dir: &Path, name: &str) -> std::io::Result<()> {
        std::fs::remove_file(meta_path(data_dir, name))?;
        sync_dir(&data_dir.join(TOPICS_DIR))
    }

    /// Every topic's metadata; unreadable files are reported and skipped.
    pub fn load_all(data_dir: &Path) -> std::io::Result<Vec<TopicMeta>> {
        let dir = data_dir.join(TOPICS_DIR);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<TopicMeta>(&b).map_err(|e| e.to_string()))
            {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "unreadable topic metadata; topic skipped")
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        assert!(validate_name("orders.v1_x-2").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"x".repeat(250)).is_err());
    }
}
