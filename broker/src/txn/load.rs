//! Start-up: the latest state of every transactional id, replayed from `__transaction_state`.

use std::collections::HashMap;

use sluice_records::{Batches, BATCH_DECOMPRESSED_BYTES_MAX};

use super::records::{self, TxnMetadata};
use crate::partition::Partition;

/// Replays one `__transaction_state` partition: the latest record per transactional id.
pub(super) fn load(
    partition: &Partition,
) -> Result<HashMap<String, TxnMetadata>, log_store::Error> {
    let mut out = HashMap::new();
    partition.replay(4 << 20, |chunk| {
        for batch in Batches::new(chunk.bytes, i32::MAX as usize) {
            let batch = batch?;
            let header = sluice_records::validate_batch(batch.bytes)?;
            if !header.is_control() {
                load_batch(batch.bytes, header.records_count, &mut out)?;
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
    let body = sluice_records::records_body(batch, BATCH_DECOMPRESSED_BYTES_MAX)?;
    for r in sluice_records::parse_records(&body, records_count)? {
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
