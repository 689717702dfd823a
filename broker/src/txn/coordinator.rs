//! [`TransactionCoordinator`]: the broker's handle on the transaction coordinator, Kafka's
//! `TransactionCoordinator` on one broker. It loads `__transaction_state` at start-up, starts
//! the state machine's task ([`super::shard`], [`super::actor`]) and turns each call into a
//! request to it.
//!
//! Every state change is written durably to `__transaction_state` (partition
//! `abs(java_hash(transactional.id)) % partitions`) before it takes effect or is answered.
//! EndTxn writes `PrepareCommit`/`PrepareAbort` (the decision), then a marker to every partition
//! of the transaction through that partition's append actor (durably), then
//! `CompleteCommit`/`CompleteAbort`. A crash anywhere is recovered at start-up
//! ([`TransactionCoordinator::start`]): a transaction found in a Prepare state is completed, one
//! found Ongoing is aborted with its epoch bumped (the producer that ran it is fenced), as a
//! timed-out transaction is.
//!
//! Unlike Kafka, EndTxn is answered after the markers are written, not after the Prepare
//! record: clients then never see CONCURRENT_TRANSACTIONS from their next transaction, and the
//! answer still comes only once the decision is durable. If a marker cannot be written, EndTxn
//! still succeeds (the decision stands) and the periodic pass retries the completion.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use tokio::sync::{mpsc, oneshot};

use super::actor::{self, Answer, Command};
use super::api::{Producer, Reply, Request, TxnPartition};
use super::records::TxnMetadata;
use super::shard::{ShardConfig, TxnShard};
use super::TRANSACTION_STATE_TOPIC;
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;
use crate::partition::internal_topic::InternalTopic;
use crate::partition::registry::Registry;
use crate::producer_ids::ProducerIdManager;
use crate::state::Broker;

pub use super::actor::TxnWriteGuard;
pub use super::shard::fenced;

/// A transaction as DescribeTransactions and ListTransactions show it.
#[derive(Debug, Clone)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub meta: TxnMetadata,
}

/// What the coordinator's effects need: narrow handles, not the whole broker.
pub(super) struct TxnIo {
    /// `__transaction_state`, created on first use.
    pub(super) state: InternalTopic,
    /// The partitions that get markers.
    pub(super) registry: Arc<Registry>,
    pub(super) producer_ids: Arc<ProducerIdManager>,
    /// Told about markers in `__consumer_offsets` (TxnOffsetCommit's offsets).
    pub(super) groups: Option<Arc<GroupCoordinator>>,
    pub(super) metrics: Arc<Metrics>,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub(super) abort_interval_ms: i64,
}

pub struct TransactionCoordinator {
    io: Arc<TxnIo>,
    tx: mpsc::Sender<Command>,
}

/// The coordinator's task is gone (shutdown): what clients are told.
const UNAVAILABLE: ResponseError = ResponseError::CoordinatorNotAvailable;

impl TransactionCoordinator {
    /// Loads every transactional id from `__transaction_state` if it exists and starts the
    /// coordinator's task. Blocking: call it where blocking is allowed, inside the runtime.
    /// Nothing is recovered or timed out until [`TransactionCoordinator::start`].
    pub fn open(broker: &Arc<Broker>) -> TransactionCoordinator {
        let config = broker.config.txn.clone();
        let topic = broker.topic(TRANSACTION_STATE_TOPIC);
        let partitions = topic
            .as_ref()
            .map_or(config.num_partitions, |t| t.meta.partitions);
        let mut loaded = std::collections::HashMap::new();
        for p in topic.iter().flat_map(|t| t.partitions.iter()) {
            if let Some(reason) = p.offline_reason() {
                tracing::error!(partition = %p.tp, reason, "transaction state partition offline");
                continue;
            }
            match super::load::load(p) {
                Ok(found) => loaded.extend(found),
                Err(e) => {
                    tracing::error!(partition = %p.tp, error = %e, "cannot read transaction state")
                }
            }
        }
        if !loaded.is_empty() {
            tracing::info!(transactional_ids = loaded.len(), "loaded transaction state");
        }
        let shard = TxnShard::new(
            ShardConfig {
                max_timeout_ms: config.max_timeout_ms,
                id_expiration_ms: config.id_expiration_ms,
            },
            loaded,
        );
        let io = Arc::new(TxnIo {
            state: InternalTopic::new(
                Arc::clone(broker.registry()),
                TRANSACTION_STATE_TOPIC,
                partitions,
                config.segment_bytes,
            ),
            registry: Arc::clone(broker.registry()),
            producer_ids: Arc::clone(&broker.producer_ids),
            groups: broker.groups().cloned(),
            metrics: Arc::clone(&broker.metrics),
            abort_interval_ms: config.abort_interval_ms,
        });
        let tx = actor::spawn(shard, Arc::clone(&io), &broker.actors);
        TransactionCoordinator { io, tx }
    }

    /// Creates `__transaction_state` unless it exists.
    pub async fn ensure_topic(&self) -> Result<(), ResponseError> {
        self.io.state.ensure().await
    }

    /// Start-up: completes or aborts what a crash left unfinished, then runs the periodic pass
    /// every `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub async fn start(&self) {
        self.recover().await;
        let _ = self.tx.send(Command::StartTicking).await;
    }

    /// Completes every transaction found in a Prepare state and aborts (fencing its producer)
    /// every one found Ongoing; returns once each has been handled.
    pub async fn recover(&self) {
        let (answer, rx) = oneshot::channel();
        if self.tx.send(Command::Recover(answer)).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn ask(&self, id: &str, request: Request) -> Option<Answer> {
        let (answer, rx) = oneshot::channel();
        let cmd = Command::Request {
            id: id.to_string(),
            request,
            answer,
        };
        self.tx.send(cmd).await.ok()?;
        rx.await.ok()
    }

    async fn done(&self, id: &str, request: Request) -> Result<(), ResponseError> {
        match self.ask(id, request).await {
            Some(Answer::Reply(Reply::Done(r))) => r,
            _ => Err(UNAVAILABLE),
        }
    }

    /// InitProducerId with a transactional id: a producer id and a bumped epoch, after
    /// fencing (aborting) the previous producer's ongoing transaction. `expected`: the
    /// producer id and epoch a KIP-360 re-init presents.
    pub async fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<Producer>,
        knows_fenced: bool,
    ) -> Result<Producer, ResponseError> {
        let request = Request::InitProducerId {
            timeout_ms,
            expected,
            knows_fenced,
        };
        match self.ask(id, request).await {
            Some(Answer::Reply(Reply::Producer(r))) => r,
            _ => Err(UNAVAILABLE),
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, which adds the group's offsets partition).
    pub async fn add_partitions(
        &self,
        id: &str,
        producer: Producer,
        partitions: &[TxnPartition],
        knows_fenced: bool,
    ) -> Result<(), ResponseError> {
        let request = Request::AddPartitions {
            producer,
            partitions: partitions.to_vec(),
            knows_fenced,
        };
        self.done(id, request).await
    }

    /// EndTxn: commits or aborts the ongoing transaction.
    pub async fn end_txn(
        &self,
        id: &str,
        producer: Producer,
        commit: bool,
        knows_fenced: bool,
    ) -> Result<(), ResponseError> {
        let request = Request::EndTxn {
            producer,
            commit,
            knows_fenced,
        };
        self.done(id, request).await
    }

    /// The check before a transactional write (Produce, TxnOffsetCommit, transforms): the
    /// producer's transaction is ongoing with this epoch. The guard keeps the transaction from
    /// ending until it is dropped; the caller checks its partitions with
    /// [`TxnWriteGuard::includes`].
    pub async fn begin_write(
        &self,
        id: &str,
        producer: Producer,
        knows_fenced: bool,
    ) -> Result<TxnWriteGuard, ResponseError> {
        let request = Request::BeginWrite {
            producer,
            knows_fenced,
        };
        match self.ask(id, request).await {
            Some(Answer::Write(r)) => r,
            _ => Err(UNAVAILABLE),
        }
    }

    async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&TxnShard) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Query(Box::new(move |shard| {
            let _ = tx.send(f(shard));
        }));
        self.tx.send(cmd).await.ok()?;
        rx.await.ok()
    }

    /// AddPartitionsToTxn v4+ `verify_only`: whether each partition is in the producer's
    /// ongoing transaction.
    pub async fn verify_partitions(
        &self,
        id: &str,
        producer: Producer,
        partitions: &[TxnPartition],
    ) -> Result<Vec<bool>, ResponseError> {
        let (id, partitions) = (id.to_string(), partitions.to_vec());
        self.query(move |s| s.verify_partitions(&id, producer, &partitions))
            .await
            .unwrap_or(Err(UNAVAILABLE))
    }

    /// Every transactional id with its metadata, by id.
    pub async fn describe_all(&self) -> Vec<TxnDescription> {
        let all = self.query(|s| s.describe_all()).await.unwrap_or_default();
        all.into_iter()
            .map(|(transactional_id, meta)| TxnDescription {
                transactional_id,
                meta,
            })
            .collect()
    }

    /// One transactional id's metadata.
    pub async fn describe(&self, id: &str) -> Option<TxnMetadata> {
        let id = id.to_string();
        self.query(move |s| s.describe(&id)).await.flatten()
    }
}
