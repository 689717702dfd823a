//! Timestamp lookups inside one stored batch (ListOffsets by time, the time index), through
//! the record views of `sluice_records`.

use sluice_records::{
    attributes, parse_records, records_body, BatchHeader, BATCH_DECOMPRESSED_BYTES_MAX,
};

use crate::error::Result;

fn record_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>> {
    let h = BatchHeader::parse(batch)?;
    let body = records_body(batch, BATCH_DECOMPRESSED_BYTES_MAX)?;
    let recs = parse_records(&body, h.records_count)?;
    let log_append = h.attributes & attributes::LOG_APPEND_TIME != 0;
    Ok(recs
        .iter()
        .map(|r| {
            let ts = if log_append {
                h.max_timestamp
            } else {
                h.base_timestamp + r.timestamp_delta
            };
            (h.base_offset + r.offset_delta, ts)
        })
        .collect())
}

/// The first record in `batch` with timestamp >= `ts`: `(offset, timestamp)`.
pub(crate) fn first_offset_at_or_after(batch: &[u8], ts: i64) -> Result<Option<(i64, i64)>> {
    Ok(record_timestamps(batch)?
        .into_iter()
        .find(|(_, t)| *t >= ts))
}

/// The last record in `batch` whose timestamp equals `ts`.
pub(crate) fn last_offset_with_timestamp(batch: &[u8], ts: i64) -> Result<Option<i64>> {
    Ok(record_timestamps(batch)?
        .into_iter()
        .filter(|(_, t)| *t == ts)
        .map(|(o, _)| o)
        .next_back())
}
