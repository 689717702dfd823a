//! Reads a local partition as a read_committed consumer would, without the network: whole
//! batches up to the last stable offset straight from the log, control batches and the
//! records of aborted transactions dropped (Kafka's consumer-side filtering with the partition's
//! aborted-transaction index).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use sluice_clients::records::ConsumerRecord;

use crate::partition::ReadSpec;
use crate::state::Broker;

/// A read position in one partition.
#[derive(Debug, Clone)]
pub struct PartitionReader {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read.
    pub offset: i64,
    /// Producers whose aborted transaction the reader is inside.
    aborted_active: HashSet<i64>,
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct Polled {
    pub records: Vec<ConsumerRecord>,
    /// The last stable offset seen (what "caught up" means).
    pub last_stable_offset: i64,
}

impl PartitionReader {
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        PartitionReader {
            topic: topic.into(),
            partition,
            offset,
            aborted_active: HashSet::new(),
        }
    }

    /// Reads up to `max_bytes` of committed records at the position and moves past them.
    /// Blocking (reads the segment file): call from a blocking thread.
    pub fn poll(&mut self, broker: &Arc<Broker>, max_bytes: usize) -> Result<Polled, String> {
        let partition = broker
            .partition(&self.topic, self.partition)
            .ok_or_else(|| format!("{}-{} does not exist", self.topic, self.partition))?;
        let read = loop {
            let spec = ReadSpec {
                fetch_offset: self.offset,
                max_bytes,
                min_one_batch: true,
                read_committed: true,
            };
            match partition.read(spec) {
                Ok(read) => break read,
                // Retention or DeleteRecords passed us: continue at the log start.
                Err((
                    log_store::Error::OffsetOutOfRange {
                        log_start_offset, ..
                    },
                    _,
                )) if self.offset < log_start_offset => self.offset = log_start_offset,
                Err((e, _)) => return Err(e.to_string()),
            }
        };
        let (region, aborted, lso) = (read.region, read.aborted, read.offsets.last_stable_offset);
        let mut out = Polled {
            records: Vec::new(),
            last_stable_offset: lso,
        };
        let Some(region) = region else {
            return Ok(out);
        };
        let bytes = Bytes::from(region.to_vec().map_err(|e| e.to_string())?);
        let mut aborted = aborted.into_iter().peekable();
        for batch in sluice_records::Batches::new(&bytes, i32::MAX as usize) {
            let batch = batch.map_err(|e| e.to_string())?;
            let h = batch.header;
            let whole = bytes.slice(batch.position..batch.position + batch.bytes.len());
            while let Some(a) = aborted.next_if(|a| a.first_offset <= h.last_offset()) {
                self.aborted_active.insert(a.producer_id);
            }
            let next = h.next_offset();
            if h.is_control() {
                if sluice_records::marker_type(&whole) == Some(sluice_records::MarkerType::Abort) {
                    self.aborted_active.remove(&h.producer_id);
                }
            } else if !(h.is_transactional() && self.aborted_active.contains(&h.producer_id)) {
                let decoded = sluice_clients::batch_decoder::decode_batches(
                    whole,
                    self.partition,
                    self.offset,
                )?;
                out.records.extend(decoded.records);
            }
            self.offset = self.offset.max(next);
        }
        Ok(out)
    }
}
