//! The broker's long-lived actors (partition append actors, group coordinator shards): spawned
//! on one tracker so that shutdown can stop them and wait until every one has ended, before the
//! logs close and the data-dir lock is released.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where actors are spawned, and their stop signal.
#[derive(Clone, Default)]
pub struct Actors {
    tracker: TaskTracker,
    /// Cancelled once at shutdown: each actor finishes the work it has queued, then ends.
    stop: CancellationToken,
}

impl Actors {
    pub fn new() -> Actors {
        Actors::default()
    }

    /// Spawns an actor; it must end soon after [`Actors::stop_token`] is cancelled.
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(f);
    }

    /// The signal an actor watches to stop.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops every actor and waits for all of them to end. Idempotent.
    pub async fn stop_and_join(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
