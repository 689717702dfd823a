//! Offsets committed inside a transaction (TxnOffsetCommit, and the transform runtime): written
//! to the group's `__consumer_offsets` partition as a transactional batch of the producer, then
//! held pending in the group shard until the transaction's marker.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use crate::group::api::{Input, Reply};
use crate::group::records::{encode_batch_as, OffsetsRecord};
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::state::{now_ms, Broker};
use crate::txn::write::TxnWrite;

/// The consumer a TxnOffsetCommit v3+ names (KIP-447), checked against the group.
#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation_id: i32,
}

/// Commits `records` (offsets of `group_id`) in the transaction of `transactional_id`, whose
/// AddOffsetsToTxn must have added the group's offsets partition.
pub async fn commit(
    broker: &Arc<Broker>,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    group_id: &str,
    member: Option<Member>,
    records: Vec<OffsetsRecord>,
    knows_fenced: bool,
) -> Result<(), ResponseError> {
    let txns = broker
        .txns()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let write = TxnWrite::begin(
        txns,
        transactional_id,
        (producer_id, producer_epoch),
        knows_fenced,
    )
    .await?;
    commit_in(broker, &write, group_id, member, records).await
}

/// Commits `records` in the transaction that `write` holds (see [`commit`]).
pub async fn commit_in(
    broker: &Arc<Broker>,
    write: &TxnWrite,
    group_id: &str,
    member: Option<Member>,
    records: Vec<OffsetsRecord>,
) -> Result<(), ResponseError> {
    let groups = broker
        .groups()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let (producer_id, producer_epoch) = write.producer();
    let index = partition_for(group_id, groups.shard_count());
    if !write.includes(OFFSETS_TOPIC, index) {
        // AddOffsetsToTxn was not called for this group.
        return Err(ResponseError::InvalidTxnState);
    }
    if let Some(m) = member {
        let id = group_id.to_string();
        let refused = groups
            .query(group_id, move |shard, _| {
                shard.check_txn_commit_member(
                    &id,
                    &m.member_id,
                    m.instance_id.as_deref(),
                    m.generation_id,
                )
            })
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        if let Some(e) = refused {
            return Err(e);
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    let batch =
        encode_batch_as(&records, now_ms(), Some((producer_id, producer_epoch))).map_err(|e| {
            tracing::error!(error = %e, "cannot encode transactional offsets");
            ResponseError::UnknownServerError
        })?;
    let partition = broker
        .partition(OFFSETS_TOPIC, index)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let pending = write
        .submit(&partition, batch, true)
        .await
        .map_err(|e| e.code())?;
    pending
        .wait()
        .await
        .map_err(|e| crate::error::log_error(&e))?;
    let reply = groups
        .shard(index)
        .map_err(|_| ResponseError::CoordinatorNotAvailable)?
        .request(move |id| Input::TxnOffsets(id, producer_id, records))
        .await;
    // The caller's `write` lives past here: the transaction completes only after the offsets
    // are pending in the shard.
    match reply {
        Ok(Reply::Done) => Ok(()),
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
}
