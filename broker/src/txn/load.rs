//! Start-up: the latest state of every transactional id, replayed from `__transaction_state`.

use std::collections::HashMap;

use super::records::{self, TxnMetadata};
use crate::partition::Partition;

/// Replays one `__transaction_state` partition: the latest record per transactional id.
pub(super) fn load(
    partition: &Partition,
) -> Result<HashMap<String, TxnMetadata>, log_store::Error> {
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
