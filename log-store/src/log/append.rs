//! Appending: client batches (validated, conformed to the topic's config, offsets assigned) and
//! the coordinator's transaction markers; segment rolls.

#[allow(unused_imports)]
use super::*;

impl Log {
    /// Appends record batches as a producer sent them: validated (length, magic, CRC-32C,
    /// `max.message.bytes`), given offsets and the leader epoch in place, and written unchanged
    /// otherwise. Nothing is written unless every batch is valid. Does not fsync: see
    /// [`Log::prepare_flush`].
    pub fn append(&mut self, records: &[u8], opts: AppendOptions) -> Result<AppendInfo> {
        self.check_online()?;
        // Compacted topics refuse keyless records and `compression.type` may ask for another
        // codec: only then are records looked at (and a converted copy written).
        let converted = self.conform(records)?;
        let records = converted.as_deref().unwrap_or(records);
        // Reuse the last append's vector: no allocation per append in the steady state.
        let mut prepared = std::mem::take(&mut self.prepared);
        let mut pending = std::mem::take(&mut self.pending_producers);
        let result = self.append_with(records, opts, &mut prepared, &mut pending, Origin::Client);
        prepared.clear();
        pending.clear();
        self.prepared = prepared;
        self.pending_producers = pending;
        result
    }

    /// Writes an end-transaction marker for `producer_id` as a control batch (Kafka's
    /// `MemoryRecords.withEndTransactionMarker`: magic 2, attributes transactional | control,
    /// the given producer id and epoch, base sequence -1, one record with key `[version 0,
    /// type]` and value `[version 0, coordinator_epoch]`, timestamp `opts.now_ms`), for
    /// WriteTxnMarkers.
    ///
    /// Fenced as Kafka fences it: a producer epoch older than the producer's current one fails
    /// with [`Error::InvalidProducerEpoch`], a coordinator epoch older than the one of the
    /// producer's last marker with [`Error::TransactionCoordinatorFenced`]; nothing is written
    /// then. Otherwise the producer's epoch becomes `producer_epoch` (a newer epoch forgets its
    /// batches, so that epoch's first batch must have sequence 0), its ongoing transaction ends,
    /// and an abort is indexed in the active segment (the transaction's first offset, the
    /// marker's offset, the last stable offset after it). A marker for a producer with no ongoing
    /// transaction is written all the same, as Kafka does, and indexes nothing.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: MarkerType,
        coordinator_epoch: i32,
        opts: AppendOptions,
    ) -> Result<AppendInfo> {
        self.check_online()?;
        if producer_id < 0 {
            return Err(crate::BatchError::Inconsistent(
                "a transaction marker needs a producer id",
            )
            .into());
        }
        self.producer_state
            .check_marker(producer_id, producer_epoch, coordinator_epoch)?;
        let batch = control::end_txn_marker_batch(
            producer_id,
            producer_epoch,
            marker,
            coordinator_epoch,
            opts.now_ms,
        );
        let mut prepared = std::mem::take(&mut self.prepared);
        let mut pending = std::mem::take(&mut self.pending_producers);
        let result = self.append_with(
            &batch,
            opts,
            &mut prepared,
            &mut pending,
            Origin::Coordinator,
        );
        prepared.clear();
        pending.clear();
        self.prepared = prepared;
        self.pending_producers = pending;
        let info = result?;
        let completed = self.producer_state.complete_marker(
            producer_id,
            producer_epoch,
            Some((marker, coordinator_epoch)),
            info.base_offset,
            info.max_timestamp,
        );
        if let Some(t) = completed.and_then(|c| c.aborted_txn()) {
            if let Err(e) = self.active_mut().append_aborted_txn(t) {
                // The marker is in the log but its index entry is not: reopening rebuilds it
                // (the marker is past every producer snapshot).
                self.offline = Some(format!(
                    "cannot index the transaction aborted at offset {}: {e}",
                    t.last_offset
                ));
                return Err(e);
            }
        }
        Ok(info)
    }

    /// Checks and converts batches when the topic's configs need more than the header:
    /// `cleanup.policy=compact` refuses records without a key (Kafka's rule; the cleaner could
    /// never remove them), and a `compression.type` other than `producer` recompresses batches
    /// in another codec. `None`: the input is stored as received.
    pub(super) fn conform(&self, records: &[u8]) -> Result<Option<Vec<u8>>> {
        let compact = self.config.cleanup_policy.compact;
        let target = self.config.compression_type.codec();
        if !compact && target.is_none() {
            return Ok(None);
        }
        let max = self.config.max_message_bytes.max(BATCH_HEADER_BYTES);
        let parts = batch::split_produced_batches(records, max)?;
        let mut out: Option<Vec<u8>> = None;
        for (i, (at, h)) in parts.iter().enumerate() {
            let whole = &records[*at..*at + h.total_bytes()];
            let needs_codec = target.is_some_and(|c| c != h.compression()) && !h.is_control();
            if !compact && !needs_codec {
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(whole);
                }
                continue;
            }
            let body = records::records_body(whole, records::BATCH_DECOMPRESSED_BYTES_MAX)?;
            let views = records::parse_records(&body, h.records_count)?;
            if compact {
                let keyless: Vec<usize> = views
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.key.is_none())
                    .map(|(r, _)| r)
                    .collect();
                if !keyless.is_empty() {
                    return Err(crate::BatchError::KeylessRecordOnCompactedTopic {
                        batch_index: i,
                        record_indexes: keyless,
                    }
                    .into());
                }
            }
            match (needs_codec, target) {
                (true, Some(codec)) => {
                    let o = out.get_or_insert_with(|| records[..*at].to_vec());
                    let payload = records::compress_body(codec, &body)?;
                    let attrs = (h.attributes & !batch::attributes::COMPRESSION_MASK) | codec;
                    let mut header = whole[..BATCH_HEADER_BYTES].to_vec();
                    batch::patch_records(&mut header, attrs, h.records_count, &payload)?;
                    o.extend_from_slice(&header);
                    o.extend_from_slice(&payload);
                }
                _ => {
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(whole);
                    }
                }
            }
        }
        Ok(out)
    }

    pub(super) fn append_with(
        &mut self,
        records: &[u8],
        opts: AppendOptions,
        prepared: &mut Vec<PreparedBatch>,
        pending: &mut Vec<(i64, ProducerEntry)>,
        origin: Origin,
    ) -> Result<AppendInfo> {
        let max = self.config.max_message_bytes.max(BATCH_HEADER_BYTES);
        let log_append = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        let mut max_timestamp = -1i64;
        let mut at = 0;
        prepared.clear();
        // Validate every batch (as `batch::split_produced_batches`) before writing any.
        while at < records.len() {
            let rest = &records[at..];
            let len = batch::declared_batch_bytes(rest, max)?;
            if len > rest.len() {
                return Err(crate::BatchError::Truncated {
                    needed: len,
                    available: rest.len(),
                }
                .into());
            }
            let whole = &rest[..len];
            if batch::validate_produced_batch(whole)?.is_control() && origin == Origin::Client {
                // Kafka's `LogValidator`: only the log writes transaction markers.
                return Err(crate::BatchError::Inconsistent(
                    "clients may not write control batches",
                )
                .into());
            }
            let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
            header_bytes.copy_from_slice(&whole[..BATCH_HEADER_BYTES]);
            batch::patch_header(&mut header_bytes, next, opts.leader_epoch);
            if log_append {
                batch::patch_log_append_time(
                    &mut header_bytes,
                    &whole[BATCH_HEADER_BYTES..],
                    opts.now_ms,
                );
            }
            let header = BatchHeader::parse(&header_bytes)?;
            if producer_state::is_tracked(&header) {
                match self.producer_state.check(&header, pending)? {
                    Checked::Append => self.producer_state.stage(&header, pending),
                    // A retry of a batch already written: acknowledged with its original
                    // offsets, nothing written (Kafka; its produce requests hold one batch).
                    Checked::Duplicate(d) if at == 0 && len == records.len() => {
                        return Ok(AppendInfo {
                            base_offset: d.first_offset,
                            last_offset: d.last_offset,
                            log_append_time_ms: -1,
                            log_start_offset: self.log_start_offset,
                            max_timestamp: d.timestamp,
                            batches: 0,
                            bytes: 0,
                        });
                    }
                    Checked::Duplicate(_) => {
                        return Err(Error::DuplicateSequence {
                            producer_id: header.producer_id,
                            sequence: header.base_sequence,
                        })
                    }
                }
            }
            max_timestamp = max_timestamp.max(header.max_timestamp);
            next = header.next_offset();
            prepared.push(PreparedBatch {
                header_bytes,
                at,
                header,
            });
            at += len;
        }
        if prepared.is_empty() {
            return Err(crate::BatchError::Empty.into());
        }
        let bytes = records.len();
        self.maybe_roll(bytes as u64, next - 1, opts.now_ms)?;
        // Before the data, as Kafka does: if the epoch cannot be recorded nothing is written, and
        // an entry whose append then fails still names the offset the epoch's data starts at.
        if opts.leader_epoch >= 0 {
            self.leader_epochs.assign(opts.leader_epoch, base_offset)?;
        }
        if let Err(e) = self.active_mut().append(records, prepared, opts.now_ms) {
            if let Error::Offline { reason, .. } = &e {
                self.offline = Some(reason.clone());
            }
            return Err(e);
        }
        self.producer_state.commit(pending);
        self.unflushed_messages += next - base_offset;
        self.first_unflushed_ms.get_or_insert(opts.now_ms);
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time_ms: if log_append { opts.now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            max_timestamp,
            batches: prepared.len(),
            bytes,
        })
    }

    pub(super) fn maybe_roll(
        &mut self,
        incoming_bytes: u64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<()> {
        let cfg = &self.config;
        let a = self.active();
        let should = !a.is_empty()
            && (a.size() + incoming_bytes > cfg.segment_bytes
                || now_ms - a.rolling_base_ms() >= cfg.segment_ms
                || a.indexes_full()
                || last_offset - a.base_offset() > u32::MAX as i64);
        if should {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end offset.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        self.check_online()?;
        let base = self.log_end_offset();
        if self.segments.contains_key(&base) {
            return Ok(());
        }
        let seg = Segment::open(
            &self.dir,
            base,
            sizing(&self.config),
            true,
            now_ms,
            &self.storage,
        )?;
        sync_dir(&self.dir)?;
        self.active_mut().seal()?;
        self.segments.insert(base, seg);
        self.active_mut().prepare_for_append()?;
        // Recovery replays the producer state from here on. Without the snapshot it replays
        // from an older one: slower, not wrong.
        if let Err(e) = self.write_producer_snapshot() {
            tracing::warn!(error = %e, dir = %self.dir.display(), "cannot write a producer snapshot");
        }
        Ok(())
    }
}
