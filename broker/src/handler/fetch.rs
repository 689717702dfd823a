//! Fetch (v4-v16): long poll on max_wait_ms/min_bytes (answered as soon as enough data arrives),
//! max_bytes and partition_max_bytes (at least one batch when the response is still empty, as
//! KIP-74 says), KIP-227 fetch sessions, records served as the log stores them.
//!
//! Authorization (Kafka's `handleFetchRequest`): a consumer needs READ on each topic; a
//! follower's fetch (a replica id >= 0) needs CLUSTER_ACTION on the cluster. Refused
//! partitions answer TOPIC_AUTHORIZATION_FAILED at once and do not end the long poll of the
//! others.
//!
//! Quotas (KIP-13, KIP-219), as Kafka's `handleFetchRequest`: a consumer's fetch is capped to
//! what its `consumer_byte_rate` allows over the quota window, its record bytes are recorded
//! on the client's sensor, and over quota the fetch answers at once with the throttle time and
//! no data (the bytes are taken back off the sensor; the client fetches them again after the
//! throttle), then the connection mutes. A full fetch that is throttled opens no session.
//! Followers' fetches are not metered.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use sluice_security::acl::{AclOperation, ResourceType};
use sluice_security::quota::QuotaType;
use uuid::Uuid;

use super::{sb, throttle_time_ms, Ctx};
use crate::error::log_error_code;
use crate::fetch_session::{Forgotten, Sent, SessionError, SessionPartition};
use log_store::FileRegion;
use sluice_protocol::response_frame::external_marker;

use crate::partition::{check_leader_epoch, AppendWatch, Offsets, Partition, ReadResult, ReadSpec};
use crate::state::{now_ms, Broker};

/// Long polls that expire in the same tick of this length are answered together: one wake-up
/// of the runtime for all of them, instead of one each. An expired poll is answered at most
/// this much later than its `max_wait_ms`.
pub(crate) const LONG_POLL_TICK_MS: u64 = 10;

/// When a long poll of `max_wait_ms` expires: rounded up to the next [`LONG_POLL_TICK_MS`]
/// boundary of the runtime's clock (never earlier than asked).
fn long_poll_deadline(max_wait_ms: i32) -> tokio::time::Instant {
    use std::sync::OnceLock;
    static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();
    let now = tokio::time::Instant::now();
    let origin = *ORIGIN.get_or_init(|| now);
    let wait = u64::try_from(max_wait_ms).unwrap_or(0);
    if wait == 0 {
        return now;
    }
    let due = (now - origin).as_millis() as u64 + wait;
    let tick = due.div_ceil(LONG_POLL_TICK_MS) * LONG_POLL_TICK_MS;
    origin + Duration::from_millis(tick)
}

/// One partition to answer for: the session's own record of it (KIP-227), so a fetch lists
/// its partitions in one shape from the request to the response.
type Want = SessionPartition;

/// What was read for one partition.
struct Got {
    error: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    records: Option<Records>,
    /// read_committed: the aborted transactions the returned batches may hold.
    aborted: Vec<log_store::AbortedTxn>,
}

impl Got {
    /// No records, with the partition's offsets when known (-1 otherwise).
    fn empty(offsets: Option<Offsets>) -> Got {
        Got {
            error: 0,
            high_watermark: offsets.map_or(-1, |o| o.high_watermark),
            last_stable_offset: offsets.map_or(-1, |o| o.last_stable_offset),
            log_start_offset: offsets.map_or(-1, |o| o.log_start_offset),
            records: None,
            aborted: Vec::new(),
        }
    }
}

/// A partition's records in a response: bytes read from the log, or (on a plain TCP
/// connection) the file region itself, which the connection sends with `sendfile`.
enum Records {
    Bytes(Bytes),
    Region(FileRegion),
}

impl Records {
    fn len(&self) -> usize {
        match self {
            Records::Bytes(b) => b.len(),
            Records::Region(r) => r.len() as usize,
        }
    }
}

/// What [`Partition::read`] found, when `send`: the region itself with `zero_copy` (the
/// connection can `sendfile` it), else its bytes read outside the log's lock.
fn read_region(
    partition: &Partition,
    read: ReadResult,
    send: bool,
    zero_copy: bool,
) -> Result<Got, (i16, Option<Offsets>)> {
    let records = match read.region {
        Some(region) if send && zero_copy && region.fd().is_some() => Some(Records::Region(region)),
        Some(region) if send => match region.to_vec() {
            Ok(buf) => Some(Records::Bytes(Bytes::from(buf))),
            Err(e) => {
                tracing::error!(partition = %partition.tp, error = %e, "fetch read failed");
                return Err((log_error_code(&e), None));
            }
        },
        _ => None,
    };
    Ok(Got {
        records,
        aborted: read.aborted,
        ..Got::empty(Some(read.offsets))
    })
}

fn top_level_error(code: ResponseError) -> FetchResponse {
    FetchResponse::default().with_error_code(code.code())
}

/// Resolves topic names from ids (v13+) and lists the partitions the request names.
fn requested(ctx: &Ctx<'_>, req: &FetchRequest) -> Vec<Want> {
    let by_id = ctx.version >= 13;
    let mut out = Vec::new();
    for t in &req.topics {
        let (topic, topic_id) = if by_id {
            match ctx.broker.topic_by_id(&t.topic_id) {
                Some(topic) => (topic.meta.name.clone(), t.topic_id),
                None => (String::new(), t.topic_id),
            }
        } else {
            let name = t.topic.0.to_string();
            let id = ctx.broker.topic(&name).map_or(Uuid::nil(), |t| t.meta.id);
            (name, id)
        };
        for p in &t.partitions {
            out.push(Want {
                topic: topic.clone(),
                topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                sent_high_watermark: None,
                sent_log_start_offset: None,
            });
        }
    }
    out
}

/// The answer when no wanted partition has anything to read, from the offsets their append
/// signals last published: no lock, no blocking read (what an idle long poll costs). `None`
/// when any partition may have records or an error to report: then the partitions are read.
fn idle_answer(
    wants: &[Want],
    denied: &[bool],
    seen: &[Option<Offsets>],
    read_committed: bool,
) -> Option<Vec<Got>> {
    wants
        .iter()
        .zip(denied)
        .zip(seen)
        .map(|((w, denied), seen)| {
            if *denied {
                return Some(Got {
                    error: ResponseError::TopicAuthorizationFailed.code(),
                    ..Got::empty(None)
                });
            }
            let o = (*seen)?;
            let upper = if read_committed {
                o.last_stable_offset
            } else {
                o.high_watermark
            };
            let idle = check_leader_epoch(w.current_leader_epoch).is_none()
                && w.fetch_offset == upper
                && w.fetch_offset >= o.log_start_offset;
            idle.then(|| Got::empty(Some(o)))
        })
        .collect()
}

/// Reads every wanted partition (blocking: runs in `spawn_blocking`).
fn read_partitions(
    broker: &Broker,
    wants: &[Want],
    denied: &[bool],
    max_bytes: usize,
    by_id: bool,
    read_committed: bool,
    zero_copy: bool,
) -> (Vec<Got>, usize) {
    let mut total = 0usize;
    let mut out = Vec::with_capacity(wants.len());
    for (w, denied) in wants.iter().zip(denied) {
        let missing = if by_id && w.topic.is_empty() {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let err = |code: i16| Got {
            error: code,
            ..Got::empty(None)
        };
        if *denied {
            out.push(err(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        let Some(partition) = broker.partition(&w.topic, w.partition) else {
            out.push(err(missing.code()));
            continue;
        };
        if let Some(e) = check_leader_epoch(w.current_leader_epoch) {
            out.push(err(e.code()));
            continue;
        }
        let budget = (w.max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
        let spec = ReadSpec {
            fetch_offset: w.fetch_offset,
            max_bytes: budget,
            min_one_batch: total == 0,
            read_committed,
        };
        let got = match partition.read(spec) {
            Ok(read) => read_region(&partition, read, budget > 0 || total == 0, zero_copy),
            Err((e, offsets)) => Err((log_error_code(&e), offsets)),
        };
        match got {
            Ok(got) => {
                total += got.records.as_ref().map_or(0, Records::len);
                out.push(got);
            }
            Err((code, offsets)) => out.push(Got {
                error: code,
                ..Got::empty(offsets)
            }),
        }
    }
    (out, total)
}

/// What bounds one fetch: the bytes it may return, the bytes that end its long poll, when
/// the long poll expires, and its isolation level.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_bytes: usize,
    min_bytes: usize,
    deadline: tokio::time::Instant,
    read_committed: bool,
}

/// The response, the throttle time, and the file regions the response's external record sets
/// (`external_marker(i)`: region `i`) stand for.
pub(super) async fn handle(
    ctx: &Ctx<'_>,
    req: FetchRequest,
) -> (FetchResponse, u64, Vec<FileRegion>) {
    let by_id = ctx.version >= 13;
    let (session_id, incremental, wants) = match open_session(ctx, &req, by_id) {
        Ok(opened) => opened,
        Err(code) => {
            ctx.broker.metrics.error(ctx.api, code.code());
            return (top_level_error(code), 0, Vec::new());
        }
    };
    let follower = if ctx.version >= 15 {
        req.replica_state.replica_id.0 >= 0
    } else {
        req.replica_id.0 >= 0
    };
    let denied = authorize(ctx, &wants, follower, by_id);
    let limits = limits(ctx, &req, follower);
    let wants = Arc::new(wants);
    let got = match wait_for_data(ctx, &wants, denied, limits, by_id).await {
        Ok(got) => got,
        Err(code) => return (top_level_error(code), 0, Vec::new()),
    };
    if !follower {
        if let Some(throttled) = throttle(ctx, &got, session_id, incremental) {
            return throttled;
        }
    }
    let (response, regions) = respond(ctx, &wants, got, session_id, incremental, limits);
    (response, 0, regions)
}

/// KIP-227: opens, updates or checks the request's fetch session (`fetch_session.rs`): the
/// session id, whether it is incremental, and the partitions to answer for.
fn open_session(
    ctx: &Ctx<'_>,
    req: &FetchRequest,
    by_id: bool,
) -> Result<(i32, bool, Vec<Want>), ResponseError> {
    let request_wants = requested(ctx, req);
    let forgotten: Vec<Forgotten> = req
        .forgotten_topics_data
        .iter()
        .map(|f| Forgotten {
            topic: (!by_id).then(|| f.topic.0.to_string()),
            topic_id: if by_id { f.topic_id } else { Uuid::nil() },
            partitions: f.partitions.clone(),
        })
        .collect();
    let opened = ctx
        .broker
        .fetch_sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .open(
            (req.session_id, req.session_epoch),
            ctx.version >= 7,
            request_wants,
            &forgotten,
            now_ms(),
        );
    match opened {
        Ok(o) => Ok((o.id, o.incremental, o.partitions)),
        Err(SessionError::IdNotFound) => Err(ResponseError::FetchSessionIdNotFound),
        Err(SessionError::InvalidEpoch) => Err(ResponseError::InvalidFetchSessionEpoch),
    }
}

/// Which partitions the request may not read (Kafka's `handleFetchRequest`): a consumer needs
/// READ on each topic, a follower CLUSTER_ACTION. Unknown topic ids are answered as such
/// before authorization, as Kafka does.
fn authorize(ctx: &Ctx<'_>, wants: &[Want], follower: bool, by_id: bool) -> Vec<bool> {
    if follower {
        let allowed = ctx.authorize_cluster(AclOperation::ClusterAction);
        return wants.iter().map(|_| !allowed).collect();
    }
    let mut may_read = ctx.authorizer_cache(AclOperation::Read, ResourceType::Topic);
    wants
        .iter()
        .map(|w| {
            let unknown_id = by_id && w.topic.is_empty();
            !unknown_id && !may_read.allows(&w.topic)
        })
        .collect()
}

fn limits(ctx: &Ctx<'_>, req: &FetchRequest, follower: bool) -> Limits {
    // As Kafka: a consumer's fetch is capped to what its quota allows over the window.
    let quota_max_bytes = if follower {
        None
    } else {
        ctx.broker
            .security
            .quota_window_max_bytes(QuotaType::Fetch, ctx.principal, ctx.client_id)
    };
    let max_bytes = (req.max_bytes.max(0) as usize)
        .min(ctx.broker.config.fetch_max_bytes)
        .min(quota_max_bytes.map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX)));
    Limits {
        max_bytes,
        min_bytes: (req.min_bytes.max(0) as usize).min(max_bytes),
        deadline: long_poll_deadline(req.max_wait_ms),
        // isolation_level exists from v4, the oldest version served.
        read_committed: req.isolation_level == 1,
    }
}

/// Reads the partitions, and waits (on their append signals) until `min_bytes` are there, an
/// error comes up, the long poll expires or the broker shuts down. An idle partition is
/// answered from its published offsets, without a read.
async fn wait_for_data(
    ctx: &Ctx<'_>,
    wants: &Arc<Vec<Want>>,
    denied: Vec<bool>,
    limits: Limits,
    by_id: bool,
) -> Result<Vec<Got>, ResponseError> {
    let broker = ctx.broker;
    let all_denied = !denied.is_empty() && denied.iter().all(|d| *d);
    let denied = Arc::new(denied);
    let mut appended = {
        let partitions: Vec<_> = wants
            .iter()
            .map(|w| broker.partition(&w.topic, w.partition))
            .collect();
        AppendWatch::new(partitions.iter().map(Option::as_ref))
    };
    let zero_copy = ctx.zero_copy;
    loop {
        let seen = appended.mark_seen();
        let (got, total) = match idle_answer(wants, &denied, &seen, limits.read_committed) {
            Some(got) => (got, 0),
            None => {
                let (b, w, d) = (Arc::clone(broker), Arc::clone(wants), Arc::clone(&denied));
                let (max_bytes, read_committed) = (limits.max_bytes, limits.read_committed);
                let read = tokio::task::spawn_blocking(move || {
                    read_partitions(&b, &w, &d, max_bytes, by_id, read_committed, zero_copy)
                });
                read.await.map_err(|e| {
                    tracing::error!(error = %e, "fetch read task failed");
                    ResponseError::UnknownServerError
                })?
            }
        };
        let has_error = got
            .iter()
            .zip(denied.iter())
            .any(|(g, d)| g.error != 0 && !d);
        if total >= limits.min_bytes
            || has_error
            || all_denied
            || tokio::time::Instant::now() >= limits.deadline
            || ctx.shutdown.is_cancelled()
        {
            return Ok(got);
        }
        tokio::select! {
            _ = appended.changed() => {}
            _ = tokio::time::sleep_until(limits.deadline) => {}
            _ = ctx.shutdown.cancelled() => {}
        }
    }
}

/// Quotas (KIP-13, KIP-219): records the fetched bytes on the client's sensor; over quota, the
/// throttled answer: no data (so the client cannot run ahead of its quota), the bytes taken
/// back off the sensor, and no new session.
fn throttle(
    ctx: &Ctx<'_>,
    got: &[Got],
    session_id: i32,
    incremental: bool,
) -> Option<(FetchResponse, u64, Vec<FileRegion>)> {
    let bytes: u64 = got
        .iter()
        .map(|g| g.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum();
    let throttle_ms = ctx.record_quota(QuotaType::Fetch, bytes);
    if throttle_ms == 0 {
        return None;
    }
    ctx.unrecord_quota(QuotaType::Fetch, bytes);
    let session_id = if incremental {
        session_id
    } else {
        if session_id != 0 {
            ctx.broker
                .fetch_sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(session_id);
        }
        0
    };
    let response = FetchResponse::default()
        .with_throttle_time_ms(throttle_time_ms(throttle_ms))
        .with_session_id(session_id);
    Some((response, throttle_ms, Vec::new()))
}

/// The response: for an incremental session only the partitions with news (and the session
/// remembers what was sent); record sets read from segment files become external markers
/// standing for their regions.
fn respond(
    ctx: &Ctx<'_>,
    wants: &[Want],
    got: Vec<Got>,
    session_id: i32,
    incremental: bool,
    limits: Limits,
) -> (FetchResponse, Vec<FileRegion>) {
    let by_id = ctx.version >= 13;
    let sent: Vec<Sent> = got
        .iter()
        .map(|g| Sent {
            has_records: g.records.as_ref().is_some_and(|r| r.len() > 0),
            error: g.error != 0,
            high_watermark: g.high_watermark,
            log_start_offset: g.log_start_offset,
        })
        .collect();
    let include = ctx
        .broker
        .fetch_sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record_sent(session_id, incremental, wants, &sent);
    let mut regions = Vec::new();
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for ((w, g), inc) in wants.iter().zip(got).zip(include) {
        if !inc {
            continue;
        }
        ctx.broker.metrics.error(ctx.api, g.error);
        let pd = partition_data(ctx.version, w, g, limits.read_committed, &mut regions);
        let same = responses.last().is_some_and(|t| {
            if by_id {
                t.topic_id == w.topic_id
            } else {
                t.topic.0.as_str() == w.topic
            }
        });
        match responses.last_mut() {
            Some(t) if same => t.partitions.push(pd),
            _ => responses.push(
                if by_id {
                    FetchableTopicResponse::default().with_topic_id(w.topic_id)
                } else {
                    FetchableTopicResponse::default().with_topic(TopicName(sb(w.topic.clone())))
                }
                .with_partitions(vec![pd]),
            ),
        }
    }
    let response = FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(responses);
    (response, regions)
}

/// One partition of the response.
fn partition_data(
    version: i16,
    w: &Want,
    g: Got,
    read_committed: bool,
    regions: &mut Vec<FileRegion>,
) -> PartitionData {
    PartitionData::default()
        .with_partition_index(w.partition)
        .with_error_code(g.error)
        .with_high_watermark(g.high_watermark)
        .with_last_stable_offset(g.last_stable_offset)
        .with_log_start_offset(if version >= 5 { g.log_start_offset } else { -1 })
        .with_aborted_transactions(read_committed.then(|| {
            g.aborted
                .iter()
                .map(|a| {
                    AbortedTransaction::default()
                        .with_producer_id(kafka_protocol::messages::ProducerId(a.producer_id))
                        .with_first_offset(a.first_offset)
                })
                .collect()
        }))
        .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
        // Kafka always sends a (possibly empty) record set, never null; clients reject null.
        .with_records(Some(match g.records {
            None => Bytes::new(),
            Some(Records::Bytes(b)) => b,
            Some(Records::Region(r)) => {
                regions.push(r);
                external_marker(regions.len() - 1)
            }
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(fetch_offset: i64, current_leader_epoch: i32) -> Want {
        Want {
            topic: "t".into(),
            topic_id: Uuid::nil(),
            partition: 0,
            fetch_offset,
            max_bytes: 1 << 20,
            current_leader_epoch,
            sent_high_watermark: None,
            sent_log_start_offset: None,
        }
    }

    fn offsets(log_start_offset: i64, lso: i64, hw: i64) -> Option<Offsets> {
        Some(Offsets {
            log_start_offset,
            high_watermark: hw,
            last_stable_offset: lso,
            log_end_offset: hw,
        })
    }

    /// A long poll answers from the published offsets only when nothing can be read or
    /// reported; any doubt sends it to the log.
    #[test]
    fn idle_answers_only_when_nothing_is_there() {
        let at_end = [want(10, -1)];
        let got = idle_answer(&at_end, &[false], &[offsets(0, 10, 10)], false);
        assert!(got.is_some_and(|g| g[0].error == 0 && g[0].high_watermark == 10));
        // Records below the high watermark, or an unknown partition: read the log.
        assert!(idle_answer(&[want(9, -1)], &[false], &[offsets(0, 10, 10)], false).is_none());
        assert!(idle_answer(&at_end, &[false], &[None], false).is_none());
        // read_committed waits at the last stable offset, read_uncommitted does not.
        assert!(idle_answer(&[want(7, -1)], &[false], &[offsets(0, 7, 10)], true).is_some());
        assert!(idle_answer(&[want(7, -1)], &[false], &[offsets(0, 7, 10)], false).is_none());
        // A leader-epoch error or an offset below the log start is reported by the log path.
        assert!(idle_answer(&[want(10, 3)], &[false], &[offsets(0, 10, 10)], false).is_none());
        assert!(idle_answer(&at_end, &[false], &[offsets(11, 10, 10)], false).is_none());
        // A denied partition answers TOPIC_AUTHORIZATION_FAILED without reading.
        let denied = idle_answer(&at_end, &[true], &[None], false);
        assert!(
            denied.is_some_and(|g| g[0].error == ResponseError::TopicAuthorizationFailed.code())
        );
    }
}
