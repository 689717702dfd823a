//! The async shell of the transaction coordinator: one task owns the [`TxnShard`] and steps it
//! one input at a time, with no lock. It carries out the effects concurrently (appends to
//! `__transaction_state`, marker writes, producer-id allocations; each transactional id has at
//! most one in flight) and feeds their outcomes back as inputs. Timers: once started, it steps
//! [`Input::Tick`] every `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
//!
//! A granted write comes back to its requester as a [`TxnWriteGuard`]; dropping the guard
//! sends [`Input::WriteDone`] on an unbounded channel (one message per granted write, so its
//! depth is bounded by the writes in flight). A guard that cannot be delivered (the requester
//! went away) is dropped at once, which reports the write done.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::error::ResponseError;
use sluice_records::MarkerType;
use tokio::sync::{mpsc, oneshot};

use super::api::{Effect, Input, Producer, Reply, ReplyId, Request, TxnPartition};
use super::coordinator::TxnIo;
use super::records::{self, TxnState};
use super::shard::TxnShard;
use super::COORDINATOR_EPOCH;
use crate::failpoint;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::state::now_ms;

/// Requests waiting for the coordinator's task; senders wait for room beyond this.
pub const COMMAND_QUEUE_DEPTH: usize = 1024;

type Query = Box<dyn FnOnce(&TxnShard) + Send>;

/// What the coordinator handle asks of its task.
pub(super) enum Command {
    Request {
        id: String,
        request: Request,
        answer: oneshot::Sender<Answer>,
    },
    /// Completes what a crash left unfinished; answered when done.
    Recover(oneshot::Sender<Answer>),
    /// Starts the periodic pass.
    StartTicking,
    Query(Query),
}

/// A reply as the requester receives it: a granted write comes with its guard.
pub(super) enum Answer {
    Reply(Reply),
    Write(Result<TxnWriteGuard, ResponseError>),
}

/// A transactional write in progress: while it lives, the transaction cannot end (see
/// [`super::write::TxnWrite`]). Dropping it reports the write done.
pub struct TxnWriteGuard {
    id: String,
    partitions: BTreeSet<TxnPartition>,
    done: mpsc::UnboundedSender<String>,
}

impl TxnWriteGuard {
    /// Whether `topic`/`partition` is part of the ongoing transaction.
    pub fn includes(&self, topic: &str, partition: i32) -> bool {
        self.partitions.contains(&(topic.to_string(), partition))
    }
}

impl Drop for TxnWriteGuard {
    fn drop(&mut self) {
        // The task is gone only at shutdown, when nothing waits for this any more.
        let _ = self.done.send(std::mem::take(&mut self.id));
    }
}

type Io = Pin<Box<dyn Future<Output = Input> + Send>>;

struct Task {
    shard: TxnShard,
    io: Arc<TxnIo>,
    waiting: HashMap<ReplyId, (String, oneshot::Sender<Answer>)>,
    next_reply_id: ReplyId,
    /// Effects being carried out.
    in_flight: FuturesUnordered<Io>,
    done_tx: mpsc::UnboundedSender<String>,
    ticking: bool,
}

/// Starts the coordinator's task; it ends when the actors are stopped or every handle is gone.
pub(super) fn spawn(
    shard: TxnShard,
    io: Arc<TxnIo>,
    actors: &crate::actors::Actors,
) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE_DEPTH);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let task = Task {
        shard,
        io,
        waiting: HashMap::new(),
        next_reply_id: 0,
        in_flight: FuturesUnordered::new(),
        done_tx,
        ticking: false,
    };
    actors.spawn(run(task, rx, done_rx, actors.stop_token()));
    tx
}

async fn run(
    mut task: Task,
    mut rx: mpsc::Receiver<Command>,
    mut done_rx: mpsc::UnboundedReceiver<String>,
    stop: tokio_util::sync::CancellationToken,
) {
    let every = Duration::from_millis(task.io.abort_interval_ms.max(1) as u64);
    let mut next_tick = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            cmd = rx.recv() => match cmd {
                Some(cmd) => task.command(cmd),
                None => break,
            },
            Some(id) = done_rx.recv() => task.step(Input::WriteDone(id)),
            Some(input) = task.in_flight.next(), if !task.in_flight.is_empty() => task.step(input),
            _ = tokio::time::sleep_until(next_tick), if task.ticking => {
                next_tick = tokio::time::Instant::now() + every;
                task.step(Input::Tick);
            }
        }
    }
    tracing::debug!("transaction coordinator stopped");
}

impl Task {
    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Request {
                id,
                request,
                answer,
            } => {
                let reply = self.reply_id(id.clone(), answer);
                self.step(Input::Request(reply, id, request));
            }
            Command::Recover(answer) => {
                let reply = self.reply_id(String::new(), answer);
                self.step(Input::Recover(reply));
            }
            Command::StartTicking => self.ticking = true,
            Command::Query(f) => f(&self.shard),
        }
    }

    fn reply_id(&mut self, id: String, answer: oneshot::Sender<Answer>) -> ReplyId {
        let reply = self.next_reply_id;
        self.next_reply_id += 1;
        self.waiting.insert(reply, (id, answer));
        reply
    }

    fn step(&mut self, input: Input) {
        for effect in self.shard.step(now_ms(), input) {
            self.apply(effect);
        }
    }

    fn apply(&mut self, effect: Effect) {
        let io = Arc::clone(&self.io);
        match effect {
            Effect::Reply(to, reply) => self.deliver(to, reply),
            Effect::Completed { commit } => io.metrics.txn_completed(commit),
            Effect::TimedOut => io.metrics.txn_timed_out(),
            Effect::Persist {
                op,
                id,
                meta,
                durable,
            } => self.in_flight.push(Box::pin(async move {
                let ok = persist(&io, &id, meta.as_ref(), durable).await;
                Input::Persisted(op, ok)
            })),
            Effect::WriteMarkers {
                op,
                producer,
                marker,
                partitions,
            } => self.in_flight.push(Box::pin(async move {
                let ok = write_markers(&io, producer, marker, &partitions).await;
                Input::MarkersWritten(op, ok)
            })),
            Effect::AllocateProducerId { op } => self.in_flight.push(Box::pin(async move {
                Input::ProducerIdAllocated(op, allocate_producer_id(&io).await)
            })),
        }
    }

    fn deliver(&mut self, to: ReplyId, reply: Reply) {
        let Some((id, answer)) = self.waiting.remove(&to) else {
            tracing::error!(
                reply = to,
                "transaction coordinator reply to an unknown request"
            );
            return;
        };
        let answer_with = match reply {
            Reply::Write(granted) => Answer::Write(granted.map(|partitions| TxnWriteGuard {
                id,
                partitions,
                done: self.done_tx.clone(),
            })),
            other => Answer::Reply(other),
        };
        // The requester may have gone (connection closed): an undelivered guard is dropped
        // here, which reports its write done.
        let _ = answer.send(answer_with);
    }
}

/// Appends `meta` (or a tombstone) for `id` to its `__transaction_state` partition.
async fn persist(io: &TxnIo, id: &str, meta: Option<&records::TxnMetadata>, durable: bool) -> bool {
    let deciding =
        meta.is_some_and(|m| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort));
    if deciding {
        failpoint::hit("txn.end.before_prepare");
    }
    let partition = match io
        .state
        .partition(partition_for(id, io.state.partitions()))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = ?e, "no transaction state partition to append to");
            return false;
        }
    };
    let batch = match records::encode_batch(id, meta, now_ms()) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a transaction state record");
            return false;
        }
    };
    let result = match partition.submit(batch, durable).await {
        Ok(pending) => pending.wait().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            if deciding {
                failpoint::hit("txn.end.after_prepare");
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "transaction state append failed");
            false
        }
    }
}

async fn allocate_producer_id(io: &TxnIo) -> Option<i64> {
    let ids = Arc::clone(&io.producer_ids);
    match tokio::task::spawn_blocking(move || ids.generate()).await {
        Ok(Ok(id)) => Some(id),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "producer id allocation panicked");
            None
        }
    }
}

/// Writes `marker` to every partition of the transaction, durably, and tells the group
/// coordinator about markers in `__consumer_offsets`. Partitions of deleted topics are
/// skipped (Kafka does the same). `true` when every marker is written.
async fn write_markers(
    io: &TxnIo,
    producer: Producer,
    marker: MarkerType,
    partitions: &[TxnPartition],
) -> bool {
    let mut pending = Vec::with_capacity(partitions.len());
    for (topic, index) in partitions {
        let Some(partition) = io.registry.partition(topic, *index) else {
            tracing::warn!(
                topic,
                partition = index,
                "no marker for a partition that no longer exists"
            );
            continue;
        };
        let queued = partition
            .submit_marker(producer.0, producer.1, marker, COORDINATOR_EPOCH)
            .await;
        pending.push((topic, *index, queued));
    }
    let mut first = true;
    let mut all = true;
    for (topic, index, queued) in pending {
        let result = match queued {
            Ok(p) => p.wait().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {}
            Err(
                e @ (log_store::Error::InvalidProducerEpoch { .. }
                | log_store::Error::TransactionCoordinatorFenced { .. }),
            ) => {
                // The partition knows a newer epoch: this transaction's data there is
                // already fenced off. Nothing to write.
                tracing::warn!(topic, partition = index, error = %e, "marker not written");
            }
            Err(e) => {
                tracing::error!(topic, partition = index, error = %e, "cannot write a transaction marker");
                all = false;
                continue;
            }
        }
        if first {
            failpoint::hit("txn.end.after_first_marker");
            first = false;
        }
        if topic == OFFSETS_TOPIC {
            if let Some(groups) = &io.groups {
                if let Err(e) = groups
                    .txn_marker(index, producer.0, marker == MarkerType::Commit)
                    .await
                {
                    tracing::error!(partition = index, error = ?e, "group coordinator missed a marker");
                }
            }
        }
    }
    if all {
        failpoint::hit("txn.end.after_markers");
    }
    all
}
