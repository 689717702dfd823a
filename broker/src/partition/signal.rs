//! Waiting for appends to a set of partitions: what a long-polling fetch and a transform task
//! wait on. Each partition signals only its own waiters, so an append to one partition wakes
//! no fetch that does not read it.

use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::watch;

use super::Partition;

/// The append signals of the partitions a reader reads.
#[derive(Default)]
pub struct AppendWatch {
    signals: Vec<watch::Receiver<i64>>,
}

impl AppendWatch {
    /// Watches every online partition in `partitions`.
    pub fn new<'a>(partitions: impl IntoIterator<Item = &'a Arc<Partition>>) -> AppendWatch {
        AppendWatch {
            signals: partitions
                .into_iter()
                .filter_map(|p| p.subscribe())
                .collect(),
        }
    }

    /// Marks what every partition has appended so far as seen: [`AppendWatch::changed`] then
    /// waits for a later append.
    pub fn mark_seen(&mut self) {
        for s in &mut self.signals {
            s.borrow_and_update();
        }
    }

    /// Resolves once any watched partition has appended since it was last marked seen, or
    /// has gone (deleted or shut down; it is then no longer watched). Never resolves when no
    /// partition is watched. Cancel-safe.
    pub async fn changed(&mut self) {
        let gone = match self.signals.len() {
            0 => return std::future::pending().await,
            1 => self.signals[0].changed().await.is_err().then_some(0),
            _ => {
                let waits = self.signals.iter_mut().map(|s| Box::pin(s.changed()));
                let (result, index, _) = select_all(waits).await;
                result.is_err().then_some(index)
            }
        };
        if let Some(i) = gone {
            self.signals.swap_remove(i);
        }
    }
}
