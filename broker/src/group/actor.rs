//! The async shell of one coordinator shard: a task that owns the [`GroupShard`], so that the
//! state machine runs one input at a time with no lock.
//!
//! Handlers send a [`Command`] over a bounded channel. A request gets a [`ReplyId`] mapped to
//! its oneshot; when a step emits `Effect::Reply` for it, the oneshot is resolved and the
//! connection task, which was awaiting it, writes the response (a JoinGroup waits this way
//! for the whole rebalance). `Effect::Persist` records are encoded as one batch and appended
//! with acks=all semantics (fsync before completion) through the partition's own append
//! actor; completions are awaited strictly in order and fed back as `Input::Persisted`.
//! Timers: the task sleeps until [`GroupShard::next_deadline`] and then steps `Input::Tick`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::{mpsc, oneshot};

use super::api::{Effect, Input, PersistId, Reply, ReplyId};
use super::records::encode_batch;
use super::shard::GroupShard;
use crate::partition::internal_topic::InternalTopic;
use crate::state::now_ms;

/// Requests waiting for a shard's task; senders wait for room beyond this.
pub const COMMAND_QUEUE_DEPTH: usize = 1024;

type Query = Box<dyn FnOnce(&GroupShard, i64) + Send>;

/// What a handler asks of a shard.
pub enum Command {
    /// A request; the closure builds its input around the reply id the task chose.
    Request {
        input: Box<dyn FnOnce(ReplyId) -> Input + Send>,
        reply: oneshot::Sender<Reply>,
    },
    /// A read of the shard's state (OffsetFetch, DescribeGroups, ListGroups, metrics).
    Query(Query),
}

/// The handle to one shard's task. Cheap to clone.
#[derive(Clone)]
pub struct ShardHandle {
    pub index: i32,
    tx: mpsc::Sender<Command>,
}

/// The shard is not serving: it failed to load, or the broker is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl ShardHandle {
    /// Starts the task of shard `index` (partition `index` of the offsets topic).
    /// It ends when every handle is dropped or the actors are stopped.
    pub fn spawn(
        index: i32,
        shard: GroupShard,
        offsets: Arc<InternalTopic>,
        actors: &crate::actors::Actors,
    ) -> ShardHandle {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE_DEPTH);
        actors.spawn(run(index, shard, rx, offsets, actors.stop_token()));
        ShardHandle { index, tx }
    }

    /// Steps a request and waits for its reply (for JoinGroup, until the rebalance completes).
    pub async fn request(
        &self,
        input: impl FnOnce(ReplyId) -> Input + Send + 'static,
    ) -> Result<Reply, Unavailable> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Request {
                input: Box::new(input),
                reply,
            })
            .await
            .map_err(|_| Unavailable)?;
        rx.await.map_err(|_| Unavailable)
    }

    /// Runs `f` on the shard's state (and the time) in the shard's task.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&GroupShard, i64) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Query(Box::new(move |shard, now| {
                let _ = tx.send(f(shard, now));
            })))
            .await
            .map_err(|_| Unavailable)?;
        rx.await.map_err(|_| Unavailable)
    }
}

/// Kafka's mapping of a failed offsets-topic append to what group clients are told:
/// retriable COORDINATOR_NOT_AVAILABLE, except a batch too large to store.
pub fn persist_error_code(e: &log_store::Error) -> i16 {
    match e {
        log_store::Error::InvalidBatch(log_store::BatchError::TooLarge { .. }) => {
            ResponseError::InvalidCommitOffsetSize.code()
        }
        _ => ResponseError::CoordinatorNotAvailable.code(),
    }
}

type Completion = Pin<Box<dyn Future<Output = Result<(), i16>> + Send>>;

struct Task {
    index: i32,
    shard: GroupShard,
    /// `__consumer_offsets`: the shard appends to its partition `index`.
    offsets: Arc<InternalTopic>,
    waiting: HashMap<ReplyId, oneshot::Sender<Reply>>,
    next_reply_id: ReplyId,
    /// Appends in flight, in the order they were submitted (and complete).
    appends: VecDeque<(PersistId, Completion)>,
    /// The shard's clock: the wall clock when the task started, advanced by a monotonic
    /// clock, so timers neither stall nor fire early when the wall clock is set back or forth.
    origin: (tokio::time::Instant, i64),
}

async fn run(
    index: i32,
    shard: GroupShard,
    mut rx: mpsc::Receiver<Command>,
    offsets: Arc<InternalTopic>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut task = Task {
        index,
        shard,
        offsets,
        waiting: HashMap::new(),
        next_reply_id: 0,
        appends: VecDeque::new(),
        origin: (tokio::time::Instant::now(), now_ms()),
    };
    loop {
        let sleep = match task.shard.next_deadline() {
            Some(at) => Duration::from_millis((at - task.now()).clamp(0, 3_600_000) as u64),
            None => Duration::from_secs(3600),
        };
        let mut front = task.appends.pop_front();
        tokio::select! {
            _ = stop.cancelled() => break,
            cmd = rx.recv() => {
                if let Some(f) = front.take() {
                    task.appends.push_front(f);
                }
                match cmd {
                    Some(cmd) => task.command(cmd).await,
                    None => break,
                }
            }
            result = next_completion(&mut front) => {
                let id = front.take().map_or(0, |(id, _)| id);
                let effects = task.step(Input::Persisted(id, result));
                task.apply(effects).await;
            }
            _ = tokio::time::sleep(sleep) => {
                if let Some(f) = front.take() {
                    task.appends.push_front(f);
                }
                let effects = task.step(Input::Tick);
                task.apply(effects).await;
            }
        }
    }
    tracing::debug!(shard = index, "group coordinator shard stopped");
}

/// The outcome of the oldest append in flight; never resolves when there is none.
async fn next_completion(front: &mut Option<(PersistId, Completion)>) -> Result<(), i16> {
    match front {
        Some((_, f)) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Task {
    fn now(&self) -> i64 {
        let (instant, wall) = self.origin;
        wall.saturating_add(instant.elapsed().as_millis() as i64)
    }

    fn step(&mut self, input: Input) -> Vec<Effect> {
        let now = self.now();
        self.shard.step(now, input)
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Request { input, reply } => {
                let id = self.next_reply_id;
                self.next_reply_id += 1;
                self.waiting.insert(id, reply);
                let effects = self.step(input(id));
                self.apply(effects).await;
            }
            Command::Query(f) => {
                let now = self.now();
                f(&self.shard, now);
            }
        }
    }

    async fn apply(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Reply(id, reply) => match self.waiting.remove(&id) {
                    // The requester may have gone (connection closed, shutdown): fine.
                    Some(tx) => {
                        let _ = tx.send(reply);
                    }
                    None => tracing::error!(shard = self.index, id, "reply to an unknown request"),
                },
                Effect::Persist(id, records) => {
                    let completion = self.submit(&records).await;
                    self.appends.push_back((id, completion));
                }
            }
        }
    }

    /// Queues the append on the partition's actor (so appends keep their order) and returns
    /// the wait for its durable completion.
    async fn submit(&mut self, records: &[super::records::OffsetsRecord]) -> Completion {
        let failed = |code: i16| -> Completion { Box::pin(async move { Err(code) }) };
        let batch = match encode_batch(records, self.now()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(shard = self.index, error = %e, "cannot encode offsets-topic records");
                return failed(ResponseError::UnknownServerError.code());
            }
        };
        // First use, or the topic was deleted under us: it is created.
        let partition = match self.offsets.partition(self.index).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(shard = self.index, error = ?e, "no offsets-topic partition to append to");
                return failed(ResponseError::CoordinatorNotAvailable.code());
            }
        };
        match partition.submit(batch, true).await {
            Ok(pending) => Box::pin(async move {
                pending.wait().await.map(|_| ()).map_err(|e| {
                    tracing::error!(error = %e, "offsets-topic append failed");
                    persist_error_code(&e)
                })
            }),
            Err(e) => failed(persist_error_code(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::api::{
        CommitPartition, CommitRequest, HeartbeatRequest, JoinRequest, Protocol,
    };
    use crate::group::GroupConfig;

    /// An offsets topic that can never be created: its data dir is replaced by a regular file
    /// once the registry is open.
    fn unwritable_offsets(
        actors: &crate::actors::Actors,
    ) -> Result<(Arc<InternalTopic>, tempfile::TempDir), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        let registry = crate::partition::registry::Registry::open(
            data.clone(),
            log_store::LogConfig::default(),
            true,
            actors.clone(),
        )
        .map_err(|e| e.to_string())?;
        std::fs::remove_dir(&data).map_err(|e| e.to_string())?;
        std::fs::write(&data, b"not a directory").map_err(|e| e.to_string())?;
        let topic = InternalTopic::new(registry, super::super::OFFSETS_TOPIC, 1, 1 << 20);
        Ok((Arc::new(topic), dir))
    }

    fn join(member_id: &str) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: None,
            new_member_id: "m1".into(),
            client_id: "c".into(),
            client_host: "/h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 60_000,
            protocol_type: "consumer".into(),
            protocols: vec![Protocol {
                name: "range".into(),
                metadata: bytes::Bytes::new(),
            }],
            require_known_member_id: false,
            supports_skip_assignment: false,
        }
    }

    fn heartbeat(generation: i32) -> HeartbeatRequest {
        HeartbeatRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: "m1".into(),
            group_instance_id: None,
        }
    }

    /// The task's timers run on tokio's clock: the JoinGroup answer waits for the initial
    /// rebalance delay, and a member that stops heartbeating is gone after its session.
    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_the_task() -> Result<(), String> {
        let shard = GroupShard::new(GroupConfig::default(), now_ms());
        let actors = crate::actors::Actors::new();
        let (offsets, _file) = unwritable_offsets(&actors)?;
        let h = ShardHandle::spawn(0, shard, offsets, &actors);
        let start = tokio::time::Instant::now();
        let joined = match h.request(|id| Input::Join(id, join(""))).await {
            Ok(Reply::Join(r)) => r,
            other => return Err(format!("{other:?}")),
        };
        let waited = start.elapsed();
        assert_eq!((joined.error, joined.generation_id), (0, 1));
        assert!(
            waited >= Duration::from_millis(3_000) && waited < Duration::from_millis(3_100),
            "group.initial.rebalance.delay.ms: {waited:?}"
        );
        let hb = h.request(|id| Input::Heartbeat(id, heartbeat(1))).await;
        assert_eq!(hb, Ok(Reply::Heartbeat(0)));
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        let hb = h.request(|id| Input::Heartbeat(id, heartbeat(1))).await;
        assert_eq!(
            hb,
            Ok(Reply::Heartbeat(25)),
            "UNKNOWN_MEMBER_ID after the session"
        );
        Ok(())
    }

    /// When the offsets topic cannot be created (its data dir is gone) the append fails, and
    /// the commit says so (retriably).
    #[tokio::test(start_paused = true)]
    async fn a_failed_append_is_a_retriable_error() -> Result<(), String> {
        let actors = crate::actors::Actors::new();
        let (offsets, _file) = unwritable_offsets(&actors)?;
        let h = ShardHandle::spawn(
            0,
            GroupShard::new(GroupConfig::default(), 0),
            offsets,
            &actors,
        );
        let commit = CommitRequest {
            group_id: "simple".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            api_version: 8,
            partitions: vec![CommitPartition {
                topic: "t".into(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
            }],
        };
        let r = h.request(|id| Input::Commit(id, commit)).await;
        assert_eq!(r, Ok(Reply::Commit(vec![("t".into(), 0, 15)])));
        let committed = h.query(|s, _| s.committed("simple", None)).await;
        assert_eq!(committed, Ok(Vec::new()));
        Ok(())
    }
}
