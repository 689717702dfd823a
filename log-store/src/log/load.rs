//! Opening a log: creating its directory, or loading its segments and recovering what a crash
//! left after the recovery point (Kafka's `LogLoader`).

#[allow(unused_imports)]
use super::*;

impl Log {
    /// Creates `parent/<topic>-<partition>` (if needed) and opens the log in it.
    pub fn create(
        parent: &Path,
        tp: &TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(Log, RecoveryReport)> {
        Log::create_in(parent, tp, config, now_ms, Storage::Std)
    }

    pub(crate) fn create_in(
        parent: &Path,
        tp: &TopicPartition,
        config: LogConfig,
        now_ms: i64,
        storage: Storage,
    ) -> Result<(Log, RecoveryReport)> {
        let dir = parent.join(tp.dir_name());
        let existed = dir.exists();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        if !existed {
            sync_dir(parent)?;
        }
        Log::open_in(&dir, config, now_ms, storage)
    }

    /// Opens the log in `dir`, recovering what a crash left behind: segments after the recovery
    /// point are scanned, validated (length, CRC) and cut at the first invalid byte; indexes that
    /// are missing or inconsistent are rebuilt.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<(Log, RecoveryReport)> {
        Log::open_in(dir, config, now_ms, Storage::Std)
    }

    /// [`Log::open`] with every segment data file behind `faults` (tests only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn open_with_faults(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        faults: Arc<crate::fault_injection::FaultInjector>,
    ) -> Result<(Log, RecoveryReport)> {
        Log::open_in(dir, config, now_ms, Storage::Faulty(faults))
    }

    pub(crate) fn open_in(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        storage: Storage,
    ) -> Result<(Log, RecoveryReport)> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let topic_partition =
            TopicPartition::parse_dir_name(name).ok_or_else(|| Error::NotALogDirectory {
                path: dir.to_path_buf(),
                reason: "the name is not <topic>-<partition>".into(),
            })?;
        if !dir.is_dir() {
            return Err(Error::NotALogDirectory {
                path: dir.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        let mut report = RecoveryReport::default();
        let (bases, swapped) = Self::scan_dir(dir)?;
        let checkpoint = PartitionCheckpoint::read(dir)?;
        report.clean_shutdown = checkpoint.is_some_and(|c| c.clean_shutdown);
        let opening = Opening {
            dir,
            sizing: sizing(&config),
            now_ms,
            storage: &storage,
        };
        let mut segments = opening.load_segments(
            &bases,
            &swapped,
            first_unflushed(checkpoint, &bases),
            &mut report,
        )?;
        let first_base = segments.keys().next().copied();
        let start = match (checkpoint.map(|c| c.log_start_offset), first_base) {
            (Some(c), Some(b)) => c.max(b),
            (Some(c), None) => c,
            (None, Some(b)) => b,
            (None, None) => 0,
        };
        if segments.is_empty() {
            let seg = Segment::open(dir, start, opening.sizing, true, now_ms, &storage)?;
            segments.insert(start, seg);
            sync_dir(dir)?;
        }
        let mut log = Log {
            dir: dir.to_path_buf(),
            topic_partition,
            config,
            segments,
            log_start_offset: 0,
            recovery_point: 0,
            leader_epochs: LeaderEpochCache::load(dir)?,
            unflushed_messages: 0,
            first_unflushed_ms: None,
            offline: None,
            sync_failure: Arc::new(OnceLock::new()),
            storage,
            prepared: Vec::new(),
            first_dirty_offset: read_cleaner_checkpoint(dir)?.unwrap_or(0),
            cleaning: Arc::new(AtomicBool::new(false)),
            producer_state: ProducerState::default(),
            pending_producers: Vec::new(),
        };
        let leo = log.log_end_offset();
        log.log_start_offset = start.min(leo);
        log.recovery_point = leo;
        log.active_mut().prepare_for_append()?;
        log.leader_epochs.truncate_from_end(leo)?;
        log.restore_producers(leo, &mut report)?;
        // From now on a crash is not a clean shutdown.
        log.write_checkpoint(false)?;
        Ok((log, report))
    }

    /// Rebuilds the producer state: the newest snapshot at or before the (possibly truncated)
    /// log end, then the batch headers after it, which also rebuild damaged transaction
    /// indexes (replayed from a snapshot at or before their segment; one is kept at each
    /// segment base). Snapshots past the log end go.
    fn restore_producers(&mut self, leo: i64, report: &mut RecoveryReport) -> Result<()> {
        let damaged: Vec<i64> = self
            .segments
            .values()
            .filter(|s| s.txn_index_was_cut())
            .map(Segment::base_offset)
            .collect();
        report.txn_indexes_repaired = damaged.len();
        let replay_at_most = damaged.first().copied().unwrap_or(i64::MAX);
        let (state, snapshot) = ProducerState::load(&self.dir, leo, replay_at_most)?;
        self.producer_state = state;
        report.producer_snapshot_offset = snapshot;
        report.producer_batches_replayed =
            self.replay_producer_state(snapshot.unwrap_or(i64::MIN))?;
        Ok(())
    }

    /// Lists segment bases, deletes leftovers (tmp files, unfinished cleaner output, orphan
    /// indexes) and completes interrupted cleaner swaps. Returns the bases and, of those, the
    /// segments a swap replaced (their indexes must be rebuilt).
    pub(super) fn scan_dir(dir: &Path) -> Result<(Vec<i64>, Vec<i64>)> {
        let mut bases = Vec::new();
        let mut swapped = Vec::new();
        let mut others: Vec<(PathBuf, i64)> = Vec::new();
        let mut swaps = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                return Err(Error::NotALogDirectory {
                    path: dir.to_path_buf(),
                    reason: format!("unexpected file {}", path.display()),
                });
            };
            if name == PARTITION_CHECKPOINT
                || name == LEADER_EPOCH_CHECKPOINT
                || name == CLEANER_CHECKPOINT
            {
                continue;
            }
            if name.ends_with(".tmp") || name.ends_with(".cleaned") || name.ends_with(".deleted") {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            let (stem, suffix) = name.split_once('.').unwrap_or((&name, ""));
            let base = parse_base(stem);
            match (base, suffix) {
                (Some(b), "log") => bases.push(b),
                (Some(b), "index" | "timeindex" | "txnindex") => others.push((path, b)),
                (Some(b), "log.swap") => swaps.push((path, b)),
                // Producer state snapshots: `ProducerState::load` reads them.
                (Some(_), producer_state::SNAPSHOT_SUFFIX) => {}
                _ => {
                    return Err(Error::NotALogDirectory {
                        path: dir.to_path_buf(),
                        reason: format!("unexpected file {name}"),
                    })
                }
            }
        }
        for (swap, base) in swaps {
            // The cleaner fsynced the swap file before renaming it to .swap: it is complete and
            // replaces the segment with the same base offset.
            let target = dir.join(segment::file_name(base, segment::LOG_SUFFIX));
            for suffix in [segment::INDEX_SUFFIX, segment::TIME_INDEX_SUFFIX] {
                let p = dir.join(segment::file_name(base, suffix));
                if p.exists() {
                    std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
            std::fs::rename(&swap, &target).map_err(|e| Error::io(&swap, e))?;
            if !bases.contains(&base) {
                bases.push(base);
            }
            swapped.push(base);
        }
        bases.sort_unstable();
        for (path, b) in others {
            if bases.binary_search(&b).is_err() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        sync_dir(dir)?;
        Ok((bases, swapped))
    }

    /// Rebuilds the producer state from the batch headers at and after `from` (data records are
    /// not decoded; a control batch's one record is, to tell commit from abort), and with it the
    /// aborted-transaction index entries of the markers at and after `from`: those on disk are
    /// dropped first, so the indexes end up exactly as the appends left them. Returns how many
    /// headers it read.
    pub(super) fn replay_producer_state(&mut self, from: i64) -> Result<u64> {
        let mut replayed = 0;
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let Log {
            segments,
            producer_state,
            ..
        } = self;
        for seg in segments.range_mut(first..).map(|(_, s)| s) {
            if seg.next_offset() <= from {
                continue;
            }
            seg.truncate_txn_index(from)?;
            let mut pos = if from > seg.base_offset() {
                seg.position_of_offset(from, seg.size())?
            } else {
                0
            };
            while pos < seg.size() {
                let h = seg.header_at(pos)?;
                if !h.is_control() {
                    producer_state.replay(&h);
                } else if h.producer_id >= 0 {
                    let bytes = seg.read_bytes(pos, h.total_bytes())?;
                    let marker = match control::parse_control_batch(&bytes) {
                        ControlRecord::Marker {
                            marker,
                            coordinator_epoch,
                        } => Some(Some((marker, coordinator_epoch))),
                        // Kafka changes nothing for a control batch without records.
                        ControlRecord::Empty => None,
                        ControlRecord::Malformed(reason) => {
                            tracing::warn!(
                                path = %seg.log_path().display(),
                                offset = h.base_offset,
                                reason,
                                "unreadable transaction marker: ending the producer's transaction without an abort"
                            );
                            Some(None)
                        }
                    };
                    if let Some(marker) = marker {
                        let completed = producer_state.complete_marker(
                            h.producer_id,
                            h.producer_epoch,
                            marker,
                            h.base_offset,
                            h.max_timestamp,
                        );
                        if let Some(t) = completed.and_then(|c| c.aborted_txn()) {
                            seg.append_aborted_txn(t)?;
                        }
                    }
                }
                replayed += 1;
                pos += h.total_bytes() as u64;
            }
        }
        Ok(replayed)
    }
}

/// The base of the first segment recovery must scan in full: the one holding the recovery
/// point (none after a clean shutdown; all without a checkpoint).
fn first_unflushed(checkpoint: Option<PartitionCheckpoint>, bases: &[i64]) -> i64 {
    let recover_from = match checkpoint {
        Some(c) if c.clean_shutdown => return i64::MAX,
        Some(c) => c.recovery_point,
        None => i64::MIN,
    };
    bases
        .iter()
        .rev()
        .find(|b| **b <= recover_from)
        .copied()
        .unwrap_or(i64::MIN)
}

/// What opening a log's segments needs.
struct Opening<'a> {
    dir: &'a Path,
    sizing: SegmentSizing,
    now_ms: i64,
    storage: &'a Storage,
}

impl Opening<'_> {
    /// Opens every segment: loads those before `first_unflushed` (checking their indexes),
    /// scans the others (and any that fails its check) to the last valid batch, and drops
    /// everything after a truncation point, as Kafka does.
    fn load_segments(
        &self,
        bases: &[i64],
        swapped: &[i64],
        first_unflushed: i64,
        report: &mut RecoveryReport,
    ) -> Result<BTreeMap<i64, Segment>> {
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut prev_next: i64 = i64::MIN;
        let mut cut = false;
        let mut recovered = Vec::new();
        for &base in bases {
            let mut seg = Segment::open(
                self.dir,
                base,
                self.sizing,
                false,
                self.now_ms,
                self.storage,
            )?;
            if cut {
                // Everything after a truncation point follows a hole.
                tracing::warn!(path = %seg.log_path().display(), "deleting segment after truncated data");
                seg.delete_files()?;
                report.segments_deleted += 1;
                continue;
            }
            if prev_next > base {
                return Err(Error::Corrupted {
                    path: seg.log_path().to_path_buf(),
                    position: 0,
                    reason: format!(
                        "segment starts at {base}, inside the previous one (ends at {prev_next})"
                    ),
                });
            }
            // A segment that an interrupted cleaner swap just completed has no indexes yet.
            let must_scan = base >= first_unflushed || swapped.contains(&base);
            let loaded = if must_scan {
                Err(None)
            } else {
                seg.load().map_err(Some)
            };
            if let Err(why) = loaded {
                if let Some(e) = why {
                    tracing::warn!(error = %e, "segment failed its consistency check; scanning it");
                }
                cut = scan_segment(&mut seg, prev_next, report)?;
                recovered.push(base);
            }
            prev_next = seg.next_offset();
            segments.insert(base, seg);
        }
        // Recovery grew the rebuilt indexes; trim those of closed segments again.
        let last_base = segments.keys().next_back().copied();
        for base in recovered {
            if Some(base) != last_base {
                if let Some(seg) = segments.get_mut(&base) {
                    seg.seal()?;
                }
            }
        }
        Ok(segments)
    }
}

/// Scans one segment to its last valid batch, rebuilding its indexes; `true` when invalid data
/// was cut off its end (what follows must go).
fn scan_segment(seg: &mut Segment, prev_next: i64, report: &mut RecoveryReport) -> Result<bool> {
    let r = seg.recover(prev_next)?;
    report.segments_scanned += 1;
    report.indexes_rebuilt += 1;
    report.batches_scanned += r.batches;
    report.bytes_scanned += r.valid_bytes;
    let cut = r.truncated_bytes > 0;
    if cut {
        tracing::warn!(
            path = %seg.log_path().display(),
            offset = seg.next_offset(),
            position = r.valid_bytes,
            bytes = r.truncated_bytes,
            "truncated invalid data at the end of the log"
        );
        report.truncated_bytes += r.truncated_bytes;
        report.truncated_at_offset = Some(seg.next_offset());
    }
    if r.batches > 0 || r.valid_bytes > 0 {
        seg.sync_data()?;
    }
    Ok(cut)
}
