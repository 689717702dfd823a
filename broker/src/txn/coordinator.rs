//! [`TransactionCoordinator`]: transactional ids, their producer ids and epochs, and the
//! two-phase commit of each transaction, as Kafka's `TransactionCoordinator` runs it.
//!
//! Every state change is written durably to `__transaction_state` (partition
//! `abs(java_hash(transactional.id)) % partitions`) before it takes effect in memory or is
//! answered. EndTxn writes `PrepareCommit`/`PrepareAbort` (the decision), then a marker to
//! every partition of the transaction through that partition's append actor (durably), then
//! `CompleteCommit`/`CompleteAbort`. A crash anywhere is recovered at start-up: a transaction
//! found in a Prepare state is completed, one found Ongoing is aborted with its epoch bumped
//! (the producer that ran it is fenced), as a timed-out transaction is.
//!
//! Each transactional id has one `RwLock`: coordinator operations take it for writing, and a
//! transactional Produce (or TxnOffsetCommit) holds it for reading from its check until its
//! append is queued and done. Markers are therefore written only after every write the
//! transaction let in, and nothing of the transaction can land after its marker (a "hanging"
//! transaction, KIP-890's concern): a Produce for a partition that is not in an ongoing
//! transaction of that producer epoch is refused with INVALID_TXN_STATE.
//!
//! Unlike Kafka, EndTxn is answered after the markers are written, not after the Prepare
//! record: clients then never see CONCURRENT_TRANSACTIONS from their next transaction, and
//! the answer still comes only once the decision is durable. If a marker cannot be written,
//! EndTxn still succeeds (the decision stands) and the periodic pass retries the completion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kafka_protocol::error::ResponseError;
use log_store::MarkerType;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use super::records::{self, TxnMetadata, TxnState};
use super::{TxnConfig, COORDINATOR_EPOCH, TRANSACTION_STATE_TOPIC};
use crate::failpoint;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::state::{now_ms, Broker};

type Entry = Arc<RwLock<TxnMetadata>>;

/// A checked transactional write in progress: holds the transaction's read lock.
pub struct TxnWriteGuard {
    meta: OwnedRwLockReadGuard<TxnMetadata>,
}

impl TxnWriteGuard {
    /// Whether `topic`/`partition` is part of the ongoing transaction.
    pub fn includes(&self, topic: &str, partition: i32) -> bool {
        self.meta
            .partitions
            .contains(&(topic.to_string(), partition))
    }
}

/// A transaction as DescribeTransactions and ListTransactions show it.
#[derive(Debug, Clone)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub meta: TxnMetadata,
}

pub struct TransactionCoordinator {
    config: TxnConfig,
    /// Partitions of `__transaction_state` (an existing topic's count wins over the config).
    partitions: i32,
    entries: Mutex<HashMap<String, Entry>>,
    /// Serialises creation of `__transaction_state`.
    create: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Kafka answers PRODUCER_FENCED only to versions that know it; older ones get
/// INVALID_PRODUCER_EPOCH.
pub fn fenced(knows_fenced: bool) -> ResponseError {
    if knows_fenced {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

impl TransactionCoordinator {
    /// Loads every transactional id from `__transaction_state` if it exists. Blocking: call
    /// it where blocking is allowed. Transactions left unfinished are completed by
    /// [`TransactionCoordinator::recover`].
    pub fn open(broker: &Arc<Broker>) -> TransactionCoordinator {
        let config = broker.config.txn.clone();
        let topic = broker.topic(TRANSACTION_STATE_TOPIC);
        let partitions = topic
            .as_ref()
            .map_or(config.num_partitions, |t| t.meta.partitions);
        let mut entries = HashMap::new();
        for p in topic.iter().flat_map(|t| t.partitions.iter()) {
            if let Some(reason) = p.offline_reason() {
                tracing::error!(partition = %p.tp, reason, "transaction state partition offline");
                continue;
            }
            match load(p) {
                Ok(found) => {
                    for (id, m) in found {
                        entries.insert(id, Arc::new(RwLock::new(m)));
                    }
                }
                Err(e) => {
                    tracing::error!(partition = %p.tp, error = %e, "cannot read transaction state")
                }
            }
        }
        if !entries.is_empty() {
            tracing::info!(
                transactional_ids = entries.len(),
                "loaded transaction state"
            );
        }
        TransactionCoordinator {
            config,
            partitions,
            entries: Mutex::new(entries),
            create: tokio::sync::Mutex::new(()),
        }
    }

    fn entry(&self, id: &str) -> Option<Entry> {
        lock(&self.entries).get(id).cloned()
    }

    /// Creates `__transaction_state` unless it exists.
    pub async fn ensure_topic(&self, broker: &Arc<Broker>) -> Result<(), ResponseError> {
        if broker.topic(TRANSACTION_STATE_TOPIC).is_some() {
            return Ok(());
        }
        let _guard = self.create.lock().await;
        if broker.topic(TRANSACTION_STATE_TOPIC).is_some() {
            return Ok(());
        }
        let configs = std::collections::BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                self.config.segment_bytes.to_string(),
            ),
        ]);
        match broker
            .create_topic(TRANSACTION_STATE_TOPIC, self.partitions, configs, false)
            .await
        {
            Ok(_) => Ok(()),
            Err(_) if broker.topic(TRANSACTION_STATE_TOPIC).is_some() => Ok(()),
            Err(e) => {
                tracing::error!(error = ?e, "cannot create {TRANSACTION_STATE_TOPIC}");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// Writes `m` (or a tombstone) for `id` durably.
    async fn persist(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        m: Option<&TxnMetadata>,
    ) -> Result<(), ResponseError> {
        self.persist_with(broker, id, m, true).await
    }

    /// Writes `m` (or a tombstone) for `id`; without `durable`, the next durable write to the
    /// same `__transaction_state` partition (or the periodic flush) makes it durable.
    async fn persist_with(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        m: Option<&TxnMetadata>,
        durable: bool,
    ) -> Result<(), ResponseError> {
        self.ensure_topic(broker).await?;
        let index = partition_for(id, self.partitions);
        let Some(partition) = broker.partition(TRANSACTION_STATE_TOPIC, index) else {
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        let batch = records::encode_batch(id, m, now_ms()).map_err(|e| {
            tracing::error!(error = %e, "cannot encode a transaction state record");
            ResponseError::UnknownServerError
        })?;
        let pending = partition.submit(batch, durable).await.map_err(|e| {
            tracing::error!(error = %e, "transaction state append refused");
            ResponseError::CoordinatorNotAvailable
        })?;
        pending.wait().await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "transaction state append failed");
            ResponseError::CoordinatorNotAvailable
        })
    }

    /// Persists `next` and makes it current.
    async fn transition(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        current: &mut TxnMetadata,
        mut next: TxnMetadata,
    ) -> Result<(), ResponseError> {
        next.last_update_ms = now_ms();
        self.persist(broker, id, Some(&next)).await?;
        *current = next;
        Ok(())
    }

    /// InitProducerId with a transactional id: a producer id and a bumped epoch, after
    /// fencing (aborting) the previous producer's ongoing transaction. `expected`: the
    /// producer id and epoch a KIP-360 re-init presents.
    pub async fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        knows_fenced: bool,
    ) -> Result<(i64, i16), ResponseError> {
        if id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        self.ensure_topic(broker).await?;
        let entry = lock(&self.entries)
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(RwLock::new(TxnMetadata::unassigned())))
            .clone();
        let mut m = entry.write().await;
        if m.producer_id < 0 {
            let pid = allocate_producer_id(broker).await?;
            let next = TxnMetadata {
                producer_id: pid,
                producer_epoch: 0,
                timeout_ms,
                ..TxnMetadata::unassigned()
            };
            self.transition(broker, id, &mut m, next).await?;
            return Ok((m.producer_id, m.producer_epoch));
        }
        if let Some((pid, epoch)) = expected.filter(|(pid, _)| *pid >= 0) {
            let settled = matches!(
                m.state,
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            );
            if pid == m.producer_id && epoch == m.last_producer_epoch && settled {
                // A retry of the re-init that bumped the epoch: same answer.
                return Ok((m.producer_id, m.producer_epoch));
            }
            if pid != m.producer_id || epoch != m.producer_epoch {
                return Err(fenced(knows_fenced));
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                self.complete(broker, id, &mut m)
                    .await
                    .map_err(|_| ResponseError::ConcurrentTransactions)?;
            }
            TxnState::Ongoing => {
                self.abort_fencing(broker, id, &mut m)
                    .await
                    .map_err(|_| ResponseError::ConcurrentTransactions)?;
            }
            _ => {}
        }
        let mut next = m.clone();
        next.last_producer_epoch = m.producer_epoch;
        if m.producer_epoch >= i16::MAX - 1 {
            // Epochs exhausted: a new producer id starts at epoch 0 (Kafka does the same).
            next.producer_id = allocate_producer_id(broker).await?;
            next.producer_epoch = 0;
            next.last_producer_epoch = -1;
        } else {
            next.producer_epoch = m.producer_epoch + 1;
        }
        next.state = TxnState::Empty;
        next.partitions.clear();
        next.start_ms = -1;
        next.timeout_ms = timeout_ms;
        self.transition(broker, id, &mut m, next).await?;
        Ok((m.producer_id, m.producer_epoch))
    }

    /// Checks the producer of a request against the current metadata.
    fn check_producer(
        m: &TxnMetadata,
        producer_id: i64,
        epoch: i16,
        knows_fenced: bool,
    ) -> Result<(), ResponseError> {
        if m.producer_id < 0 || m.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != epoch {
            return Err(fenced(knows_fenced));
        }
        Ok(())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, which adds the group's offsets partition).
    pub async fn add_partitions(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        knows_fenced: bool,
    ) -> Result<(), ResponseError> {
        let entry = self
            .entry(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let mut m = entry.write().await;
        Self::check_producer(&m, producer_id, epoch, knows_fenced)?;
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                // A completion that failed earlier: finish it now, or ask to retry.
                self.complete(broker, id, &mut m)
                    .await
                    .map_err(|_| ResponseError::ConcurrentTransactions)?;
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                return Err(ResponseError::ConcurrentTransactions)
            }
            _ => {}
        }
        let ongoing = m.state == TxnState::Ongoing;
        if ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
            return Ok(());
        }
        let mut next = m.clone();
        if !ongoing {
            next.partitions.clear();
            next.start_ms = now_ms();
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        self.transition(broker, id, &mut m, next).await
    }

    /// AddPartitionsToTxn v4+ `verify_only`: whether each partition is in the producer's
    /// ongoing transaction.
    pub async fn verify_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<bool>, ResponseError> {
        let entry = self
            .entry(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let m = entry.read().await;
        Self::check_producer(&m, producer_id, epoch, true)?;
        Ok(partitions
            .iter()
            .map(|p| m.state == TxnState::Ongoing && m.partitions.contains(p))
            .collect())
    }

    /// The check before a transactional write (Produce, TxnOffsetCommit): the producer's
    /// transaction is ongoing with this epoch. The guard keeps the transaction from
    /// completing until it is dropped; the caller checks its partitions with
    /// [`TxnWriteGuard::includes`].
    pub async fn begin_write(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        knows_fenced: bool,
    ) -> Result<TxnWriteGuard, ResponseError> {
        let entry = self
            .entry(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let meta = entry.read_owned().await;
        if meta.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != epoch {
            return Err(fenced(knows_fenced));
        }
        if meta.state != TxnState::Ongoing {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(TxnWriteGuard { meta })
    }

    /// EndTxn: commits or aborts the ongoing transaction.
    pub async fn end_txn(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        knows_fenced: bool,
    ) -> Result<(), ResponseError> {
        let entry = self
            .entry(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let mut m = entry.write().await;
        if m.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != epoch {
            return Err(fenced(knows_fenced));
        }
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {}
            // A retry of an EndTxn that completed.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return self
                    .complete(broker, id, &mut m)
                    .await
                    .map_err(|_| ResponseError::ConcurrentTransactions);
            }
            (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => {
                return Err(ResponseError::ConcurrentTransactions)
            }
            _ => return Err(ResponseError::InvalidTxnState),
        }
        failpoint::hit("txn.end.before_prepare");
        let mut next = m.clone();
        next.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.transition(broker, id, &mut m, next).await?;
        failpoint::hit("txn.end.after_prepare");
        if let Err(e) = self.complete(broker, id, &mut m).await {
            // The decision is durable and will be carried out by the periodic pass.
            tracing::warn!(transactional_id = id, error = ?e, "transaction completion deferred");
        }
        Ok(())
    }

    /// Completes a transaction in a Prepare state: markers, then the Complete record.
    async fn complete(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        m: &mut TxnMetadata,
    ) -> Result<(), ResponseError> {
        let (marker, done) = match m.state {
            TxnState::PrepareCommit => (MarkerType::Commit, TxnState::CompleteCommit),
            TxnState::PrepareAbort => (MarkerType::Abort, TxnState::CompleteAbort),
            _ => return Ok(()),
        };
        write_markers(broker, m, marker).await?;
        failpoint::hit("txn.end.after_markers");
        let mut next = m.clone();
        next.state = done;
        next.partitions.clear();
        next.start_ms = -1;
        next.last_update_ms = now_ms();
        // The markers are durable, so the outcome is: the Complete record need not wait for
        // an fsync. Lost in a power failure, it leaves the Prepare record, and recovery writes
        // the same markers again (a repeated marker changes nothing) before completing.
        self.persist_with(broker, id, Some(&next), false).await?;
        *m = next;
        broker.metrics.txn_completed(marker == MarkerType::Commit);
        Ok(())
    }

    /// Aborts the ongoing transaction with the epoch bumped, so that the producer that ran it
    /// is fenced (timeouts, a new InitProducerId, recovery).
    async fn abort_fencing(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        m: &mut TxnMetadata,
    ) -> Result<(), ResponseError> {
        let mut next = m.clone();
        if m.producer_epoch < i16::MAX - 1 {
            next.last_producer_epoch = m.producer_epoch;
            next.producer_epoch = m.producer_epoch + 1;
        }
        next.state = TxnState::PrepareAbort;
        self.transition(broker, id, m, next).await?;
        self.complete(broker, id, m).await
    }

    /// The periodic pass: aborts transactions past their timeout, retries completions that
    /// failed, forgets transactional ids idle for `transactional.id.expiration.ms`. With
    /// `recovering`, every Ongoing transaction is aborted (start-up after a crash).
    pub async fn maintain(&self, broker: &Arc<Broker>, recovering: bool) {
        let entries: Vec<(String, Entry)> = lock(&self.entries)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        for (id, entry) in entries {
            // Busy transactions are looked at next time.
            let mut m = if recovering {
                entry.write().await
            } else {
                match entry.try_write() {
                    Ok(m) => m,
                    Err(_) => continue,
                }
            };
            let now = now_ms();
            let result = match m.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    tracing::info!(transactional_id = %id, state = m.state.name(), "completing a transaction");
                    self.complete(broker, &id, &mut m).await
                }
                TxnState::Ongoing
                    if recovering || now.saturating_sub(m.start_ms) > i64::from(m.timeout_ms) =>
                {
                    tracing::info!(transactional_id = %id, producer_id = m.producer_id, recovering, "aborting a transaction");
                    broker.metrics.txn_timed_out();
                    self.abort_fencing(broker, &id, &mut m).await
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    if m.producer_id >= 0
                        && now.saturating_sub(m.last_update_ms) > self.config.id_expiration_ms =>
                {
                    match self.persist(broker, &id, None).await {
                        Ok(()) => {
                            m.state = TxnState::Dead;
                            lock(&self.entries).remove(&id);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(transactional_id = %id, error = ?e, "transaction maintenance failed; will retry");
            }
        }
    }

    /// Start-up: completes or aborts what a crash left unfinished, then runs the periodic
    /// pass every `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub async fn run(
        self: Arc<Self>,
        broker: Arc<Broker>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        self.maintain(&broker, true).await;
        let every = std::time::Duration::from_millis(self.config.abort_interval_ms.max(1) as u64);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => self.maintain(&broker, false).await,
            }
        }
    }

    /// Every transactional id with its metadata, by id.
    pub async fn describe_all(&self) -> Vec<TxnDescription> {
        let entries: Vec<(String, Entry)> = lock(&self.entries)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for (id, e) in entries {
            let m = e.read().await.clone();
            if m.producer_id >= 0 && m.state != TxnState::Dead {
                out.push(TxnDescription {
                    transactional_id: id,
                    meta: m,
                });
            }
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// One transactional id's metadata.
    pub async fn describe(&self, id: &str) -> Option<TxnMetadata> {
        let e = self.entry(id)?;
        let m = e.read().await.clone();
        (m.producer_id >= 0 && m.state != TxnState::Dead).then_some(m)
    }
}

async fn allocate_producer_id(broker: &Arc<Broker>) -> Result<i64, ResponseError> {
    let b = Arc::clone(broker);
    match tokio::task::spawn_blocking(move || b.producer_ids.generate()).await {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            Err(ResponseError::CoordinatorNotAvailable)
        }
        Err(e) => {
            tracing::error!(error = %e, "producer id allocation panicked");
            Err(ResponseError::UnknownServerError)
        }
    }
}

/// Writes `marker` to every partition of the transaction, durably, and tells the group
/// coordinator about markers in `__consumer_offsets`. Partitions of deleted topics are
/// skipped (Kafka does the same).
async fn write_markers(
    broker: &Arc<Broker>,
    m: &TxnMetadata,
    marker: MarkerType,
) -> Result<(), ResponseError> {
    let mut pending = Vec::with_capacity(m.partitions.len());
    for (topic, index) in &m.partitions {
        let Some(partition) = broker.partition(topic, *index) else {
            tracing::warn!(
                topic,
                partition = index,
                "no marker for a partition that no longer exists"
            );
            continue;
        };
        let queued = partition
            .submit_marker(m.producer_id, m.producer_epoch, marker, COORDINATOR_EPOCH)
            .await;
        pending.push((topic, *index, queued));
    }
    let mut first = true;
    let mut failed = None;
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
                failed = Some(ResponseError::CoordinatorNotAvailable);
                continue;
            }
        }
        if first {
            failpoint::hit("txn.end.after_first_marker");
            first = false;
        }
        if topic == OFFSETS_TOPIC {
            if let Some(groups) = broker.groups() {
                if let Err(e) = groups
                    .txn_marker(index, m.producer_id, marker == MarkerType::Commit)
                    .await
                {
                    tracing::error!(partition = index, error = ?e, "group coordinator missed a marker");
                }
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Replays one `__transaction_state` partition: the latest record per transactional id.
fn load(partition: &Partition) -> Result<HashMap<String, TxnMetadata>, log_store::Error> {
    let mut out = HashMap::new();
    partition.replay(4 << 20, |chunk| {
        let mut pos = 0usize;
        while pos < chunk.bytes.len() {
            let rest = &chunk.bytes[pos..];
            let len = log_store::batch::declared_batch_bytes(rest, i32::MAX as usize)?;
            if len > rest.len() {
                break;
            }
            let batch = &rest[..len];
            let header = log_store::batch::validate_batch(batch)?;
            pos += len;
            if !header.is_control() {
                load_batch(batch, header.records_count, &mut out)?;
            }
        }
        Ok::<(), log_store::Error>(())
    })?;
    Ok(out)
}

/// Applies the records of one (non-control) batch of `__transaction_state`.
fn load_batch(
    batch: &[u8],
    records_count: i32,
    out: &mut HashMap<String, TxnMetadata>,
) -> Result<(), log_store::Error> {
    let body = log_store::records::records_body(batch)?;
    for r in log_store::records::parse_records(&body, records_count)? {
        let Some(key) = r.key.clone().map(|k| &body[k]) else {
            continue;
        };
        let value = r.value.clone().map(|v| &body[v]);
        match records::decode(key, value) {
            Ok((id, Some(m))) => {
                out.insert(id, m);
            }
            Ok((id, None)) => {
                out.remove(&id);
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping an undecodable transaction state record")
            }
        }
    }
    Ok(())
}
