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
