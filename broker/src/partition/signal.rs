//! Waiting for appends to a set of partitions: what a long-polling fetch and a transform task
//! wait on. Each partition signals only its own waiters, so an append to one partition wakes
//! no fetch that does not read it. The signal carries the partition's [`Offsets`], so a waiter
//! can tell that there is nothing new to read without taking the log's lock.

use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::watch;

use super::{Offsets, Partition};

/// The append signals of the partitions a reader reads, one slot per partition given.
#[derive(Default)]
pub struct AppendWatch {
    /// `None`: the partition is missing, offline or gone.
    signals: Vec<Option<watch::Receiver<Offsets>>>,
}

impl AppendWatch {
    /// Watches `partitions`, keeping their order (a missing or offline one has an empty slot).
    pub fn new<'a>(partitions: impl IntoIterator<Item = Option<&'a Arc<Partition>>>) -> Self {
        AppendWatch {
            signals: partitions
                .into_iter()
                .map(|p| p.and_then(|p| p.subscribe()))
                .collect(),
        }
    }

    /// Marks what every partition has published so far as seen ([`AppendWatch::changed`] then
    /// waits for a later change) and returns those offsets, slot by slot.
    pub fn mark_seen(&mut self) -> Vec<Option<Offsets>> {
        self.signals
            .iter_mut()
            .map(|s| s.as_mut().map(|s| *s.borrow_and_update()))
            .collect()
    }

    /// Resolves once any watched partition has published since it was last marked seen, or
    /// has gone (deleted or shut down; its slot is then emptied). Never resolves when no
    /// partition is watched. Cancel-safe.
    pub async fn changed(&mut self) {
        let mut live: Vec<(usize, &mut watch::Receiver<Offsets>)> = self
            .signals
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|s| (i, s)))
            .collect();
        let gone = match live.len() {
            0 => return std::future::pending().await,
            1 => {
                let (i, s) = &mut live[0];
                s.changed().await.is_err().then_some(*i)
            }
            _ => {
                let slots: Vec<usize> = live.iter().map(|(i, _)| *i).collect();
                let waits = live.iter_mut().map(|(_, s)| Box::pin(s.changed()));
                let (result, index, _) = select_all(waits).await;
                result.is_err().then(|| slots[index])
            }
        };
        if let Some(i) = gone {
            self.signals[i] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::Actors;
    use crate::batch::{encode, BrokerRecord};
    use log_store::{Log, LogConfig, TopicPartition};
    use std::time::Duration;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn open(dir: &std::path::Path, actors: &Actors, p: i32) -> Result<Arc<Partition>, String> {
        let tp = TopicPartition::new("t", p);
        let (log, _) = Log::create(dir, &tp, LogConfig::default(), 0).map_err(|e| e.to_string())?;
        Ok(Partition::online(tp, log, actors))
    }

    async fn append_one(p: &Partition) -> TestResult {
        let record = BrokerRecord {
            value: Some(bytes::Bytes::from_static(b"v")),
            ..Default::default()
        };
        p.submit(encode(&[record], None, None)?, false)
            .await?
            .wait()
            .await?;
        Ok(())
    }

    /// An append wakes the waiters of its own partition, with the new offsets, and no one else.
    #[tokio::test]
    async fn an_append_wakes_only_its_partitions_waiters() -> TestResult {
        let dir = tempfile::tempdir()?;
        let actors = Actors::new();
        let (a, b, other) = (
            open(dir.path(), &actors, 0)?,
            open(dir.path(), &actors, 1)?,
            open(dir.path(), &actors, 2)?,
        );
        let mut watch = AppendWatch::new([Some(&a), None, Some(&b)]);
        let seen = watch.mark_seen();
        assert_eq!(seen.len(), 3);
        assert!(seen[1].is_none(), "a missing partition has an empty slot");
        append_one(&other).await?;
        let woke = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
        assert!(
            woke.is_err(),
            "an unwatched partition's append woke the watch"
        );
        append_one(&b).await?;
        tokio::time::timeout(Duration::from_secs(5), watch.changed()).await?;
        let seen = watch.mark_seen();
        assert_eq!(seen[0].map(|o| o.log_end_offset), Some(0));
        assert_eq!(seen[2].map(|o| o.high_watermark), Some(1));
        actors.stop_and_join().await;
        Ok(())
    }
}
