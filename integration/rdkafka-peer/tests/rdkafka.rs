//! The `rdkafka` crate (librdkafka 2.x, built from source) against the real
//! `sluice` binary: admin (create/alter/describe/delete topics), keyed
//! produce with headers under every codec librdkafka has, consume back by
//! manual assignment, `offsets_for_times`, watermarks, and the same reads
//! after a clean restart (SIGTERM) and after a crash (SIGKILL).
//!
//! The consumers use manual assignment and no group membership, so the test
//! does not depend on the broker's group coordinator: librdkafka needs a
//! `group.id` for `assign`, so they set one, never commit, and tolerate any
//! coordinator errors librdkafka reports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use sluice_rdkafka_peer::Broker;

const PARTITIONS: i32 = 3;
/// Every `compression.type` librdkafka knows; the build must have all of them.
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const RECORDS_PER_CODEC: usize = 60;
/// Bound on one admin or metadata request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on producing one codec's records, and on consuming everything back.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Altered topic configs, checked with DescribeConfigs before and after restarts.
const ALTERED_CONFIGS: [(&str, &str); 2] = [
    ("retention.ms", "987654321"),
    ("max.message.bytes", "2097152"),
];

/// One record as the test compares it: everything the client sees except the offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp_ms: i64,
}

/// Per partition, `(offset, record)` in offset order.
type Partitions = BTreeMap<i32, Vec<(i64, Record)>>;

/// Prints how long each phase took (visible with `--nocapture` or on failure).
struct Phases {
    start: Instant,
    last: Instant,
}

impl Phases {
    fn new() -> Self {
        let now = Instant::now();
        Phases {
            start: now,
            last: now,
        }
    }

    fn done(&mut self, what: &str) {
        let now = Instant::now();
        eprintln!(
            "[{:>6.1}s] {what} ({:.1}s)",
            (now - self.start).as_secs_f64(),
            (now - self.last).as_secs_f64()
        );
        self.last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_admin_produce_consume_restart() -> Result<()> {
    let mut phases = Phases::new();
    check_codecs_built_in()?;
    let mut broker = Broker::start()?;
    let bootstrap = broker.bootstrap();
    eprintln!("sluice pid {:?} at {bootstrap}", broker.pid());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("rdkafka-peer-{}", &run[..12]);
    let doomed = format!("rdkafka-peer-doomed-{}", &run[..12]);
    phases.done("broker started");

    // Admin: create two topics; `doomed` is deleted before the restarts.
    let admin = admin_client(&bootstrap)?;
    create_topic(&admin, &topic, PARTITIONS).await?;
    create_topic(&admin, &doomed, 1).await?;
    let listed = topic_partitions(&admin)?;
    ensure!(
        listed.get(&topic) == Some(&(PARTITIONS as usize)),
        "metadata after CreateTopics: {topic} has {:?} partitions, want {PARTITIONS}; all: {listed:?}",
        listed.get(&topic)
    );
    phases.done("topics created");

    // Produce under every codec, to every partition; acks=all.
    let base_ts = now_ms() - 3_600_000;
    let mut expected = Partitions::new();
    for (c, codec) in CODECS.iter().enumerate() {
        let produced = produce_codec(&bootstrap, &topic, PARTITIONS, codec, c, base_ts).await?;
        for (partition, records) in produced {
            expected.entry(partition).or_default().extend(records);
        }
        phases.done(&format!(
            "produced {RECORDS_PER_CODEC} records, compression.type={codec}"
        ));
    }
    check_offsets_contiguous(&expected)?;
    let total: usize = expected.values().map(Vec::len).sum();
    ensure!(
        total == CODECS.len() * RECORDS_PER_CODEC,
        "produced {total} records"
    );
    ensure!(
        expected.len() == PARTITIONS as usize,
        "records landed in {} partitions",
        expected.len()
    );

    produce_codec(&bootstrap, &doomed, 1, "lz4", 0, base_ts).await?;

    // Consume back, compare exactly; watermarks; offsets_for_times.
    check_reads(&bootstrap, &topic, &expected, "after produce").await?;
    phases.done("consumed and compared; watermarks; offsets_for_times");

    // Configs: alter (non-incremental AlterConfigs), read back.
    alter_topic_configs(&admin, &topic).await?;
    check_topic_configs(&admin, &topic, "after AlterConfigs").await?;
    phases.done("AlterConfigs + DescribeConfigs");

    // Delete `doomed`; it must leave the metadata.
    delete_topic(&admin, &doomed).await?;
    wait_topic_absent(&admin, &doomed).await?;
    phases.done("DeleteTopics");
    drop(admin);
    broker.assert_alive()?;

    // Clean restart: everything readable, configs kept, deleted topic gone.
    broker.restart_clean()?;
    phases.done(&format!("restarted after SIGTERM, pid {:?}", broker.pid()));
    check_after_restart(
        &bootstrap,
        &topic,
        &doomed,
        &expected,
        "after SIGTERM restart",
    )
    .await?;
    phases.done("everything read back after SIGTERM restart");

    // Crash restart, then appends continue at the old log end offsets.
    broker.restart_after_kill()?;
    phases.done(&format!("restarted after SIGKILL, pid {:?}", broker.pid()));
    check_after_restart(
        &bootstrap,
        &topic,
        &doomed,
        &expected,
        "after SIGKILL restart",
    )
    .await?;
    phases.done("everything read back after SIGKILL restart");
    let appended = produce_codec(
        &bootstrap,
        &topic,
        PARTITIONS,
        "zstd",
        CODECS.len(),
        base_ts,
    )
    .await?;
    for (partition, records) in appended {
        expected.entry(partition).or_default().extend(records);
    }
    check_offsets_contiguous(&expected)?;
    check_reads(
        &bootstrap,
        &topic,
        &expected,
        "appended after SIGKILL restart",
    )
    .await?;
    phases.done("appended after SIGKILL restart, read back");

    broker.assert_alive()?;
    broker.stop()?;
    phases.done("broker stopped (SIGTERM, exit 0)");
    Ok(())
}

/// librdkafka reports its compiled-in features; a build without one of the
/// codecs would fail producer creation in a less obvious way.
fn check_codecs_built_in() -> Result<()> {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()?
        .get("builtin.features")?;
    eprintln!("librdkafka {version}, builtin.features={features}");
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        ensure!(
            features.split(',').any(|f| f == codec),
            "librdkafka was built without {codec} (builtin.features={features})"
        );
    }
    Ok(())
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("ms fit in i64")
}

fn admin_client(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("create AdminClient")
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: i32,
) -> Result<()> {
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin.create_topics([&new], &admin_options()).await?;
    ensure!(results.len() == 1, "CreateTopics returned {results:?}");
    match &results[0] {
        Ok(name) if name == topic => Ok(()),
        other => bail!("CreateTopics {topic}: {other:?}"),
    }
}

async fn delete_topic(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<()> {
    let results = admin.delete_topics(&[topic], &admin_options()).await?;
    match results.as_slice() {
        [Ok(name)] if name == topic => Ok(()),
        other => bail!("DeleteTopics {topic}: {other:?}"),
    }
}

/// All topics and their partition counts (a Metadata request for all
/// topics, which never auto-creates).
fn topic_partitions(admin: &AdminClient<DefaultClientContext>) -> Result<BTreeMap<String, usize>> {
    let metadata = admin.inner().fetch_metadata(None, REQUEST_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect())
}

async fn wait_topic_absent(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<()> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        let listed = topic_partitions(admin)?;
        if !listed.contains_key(topic) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{topic} still in metadata {REQUEST_TIMEOUT:?} after DeleteTopics: {listed:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn alter_topic_configs(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<()> {
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (key, value) in ALTERED_CONFIGS {
        alter = alter.set(key, value);
    }
    let results = admin.alter_configs([&alter], &admin_options()).await?;
    match results.as_slice() {
        [Ok(_)] => Ok(()),
        other => bail!("AlterConfigs {topic}: {other:?}"),
    }
}

async fn check_topic_configs(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    when: &str,
) -> Result<()> {
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options())
        .await?;
    let resource = match results.as_slice() {
        [Ok(resource)] => resource,
        other => bail!("DescribeConfigs {topic} ({when}): {other:?}"),
    };
    for (key, value) in ALTERED_CONFIGS {
        let entry = resource.get(key).ok_or_else(|| {
            anyhow!(
                "DescribeConfigs {topic} ({when}): no {key} in {:?}",
                resource.entries
            )
        })?;
        ensure!(
            entry.value.as_deref() == Some(value) && !entry.is_default,
            "DescribeConfigs {topic} ({when}): {key} = {entry:?}, want {value:?} (not default)"
        );
    }
    Ok(())
}

/// What record `i` of codec number `c` looks like. Mixes null and empty keys
/// and values, a null header value, a large incompressible value and
/// compressible ones. Timestamps increase strictly across the whole run.
fn record_for(codec: &str, c: usize, i: usize, base_ts: i64) -> Record {
    let key = match i % 10 {
        3 => None,
        7 => Some(Vec::new()),
        _ => Some(format!("key-{codec}-{i}").into_bytes()),
    };
    let payload = match i {
        5 => None,
        11 => Some(Vec::new()),
        0 => Some(pseudo_random_bytes(100_000, (c * 1000 + i) as u64)),
        _ => Some(
            format!("{codec} record {i}; ")
                .repeat(1 + i % 13)
                .into_bytes(),
        ),
    };
    let headers = vec![
        ("codec".to_string(), Some(codec.as_bytes().to_vec())),
        ("i".to_string(), Some(i.to_string().into_bytes())),
        ("empty".to_string(), Some(Vec::new())),
        ("null".to_string(), None),
    ];
    let timestamp_ms = base_ts + (c * RECORDS_PER_CODEC + i) as i64;
    Record {
        key,
        payload,
        headers,
        timestamp_ms,
    }
}

/// Deterministic, incompressible bytes (xorshift64).
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Produces [`RECORDS_PER_CODEC`] records with `compression.type=codec`,
/// record `i` to partition `i % partitions`, all in flight at once so they
/// batch. Returns what was acknowledged, per partition, in send order.
async fn produce_codec(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    codec: &str,
    c: usize,
    base_ts: i64,
) -> Result<Partitions> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("compression.type", codec)
        .set("linger.ms", "20")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", PHASE_TIMEOUT.as_millis().to_string())
        .create()
        .with_context(|| format!("create FutureProducer with compression.type={codec}"))?;

    let mut in_flight = Vec::with_capacity(RECORDS_PER_CODEC);
    for i in 0..RECORDS_PER_CODEC {
        let record = record_for(codec, c, i, base_ts);
        let partition = (i % partitions as usize) as i32;
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut future = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .timestamp(record.timestamp_ms)
            .headers(headers);
        if let Some(key) = &record.key {
            future = future.key(key.as_slice());
        }
        if let Some(payload) = &record.payload {
            future = future.payload(payload.as_slice());
        }
        let delivery = producer
            .send_result(future)
            .map_err(|(e, _)| anyhow!("enqueue {codec} record {i}: {e}"))?;
        in_flight.push((partition, record, delivery));
    }

    let mut produced = Partitions::new();
    for (i, (partition, record, delivery)) in in_flight.into_iter().enumerate() {
        let delivered = tokio::time::timeout(PHASE_TIMEOUT, delivery)
            .await
            .with_context(|| {
                format!("{codec} record {i}: no delivery report within {PHASE_TIMEOUT:?}")
            })?
            .map_err(|_| anyhow!("{codec} record {i}: producer dropped the delivery report"))?
            .map_err(|(e, _)| anyhow!("{codec} record {i} to {topic}/{partition}: {e}"))?;
        ensure!(
            delivered.partition == partition,
            "{codec} record {i}: delivered to partition {}, sent to {partition}",
            delivered.partition
        );
        produced
            .entry(partition)
            .or_default()
            .push((delivered.offset, record));
    }
    Ok(produced)
}

/// With no retries, a fresh topic's offsets are 0, 1, 2, ... in send order.
fn check_offsets_contiguous(partitions: &Partitions) -> Result<()> {
    for (partition, records) in partitions {
        for (n, (offset, _)) in records.iter().enumerate() {
            ensure!(
                *offset == n as i64,
                "partition {partition}: record #{n} in send order was acknowledged at offset {offset}"
            );
        }
    }
    Ok(())
}

fn consumer(bootstrap: &str) -> Result<StreamConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Required by librdkafka for assign(); nothing is committed.
        .set(
            "group.id",
            format!("rdkafka-peer-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false")
        .create()
        .context("create StreamConsumer")
}

/// Assigns every partition from the beginning and reads until each partition
/// has as many records as `expected`; then compares exactly, in order.
async fn consume_all(
    bootstrap: &str,
    topic: &str,
    expected: &Partitions,
    when: &str,
) -> Result<StreamConsumer> {
    let consumer = consumer(bootstrap)?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;

    let want: usize = expected.values().map(Vec::len).sum();
    let mut got = Partitions::new();
    let mut got_total = 0;
    let mut tolerated_errors = Vec::new();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while got_total < want {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(next) = tokio::time::timeout(remaining, consumer.recv()).await else {
            let counts: BTreeMap<_, _> = got.iter().map(|(p, r)| (*p, r.len())).collect();
            bail!(
                "{when}: consumed {got_total} of {want} records within {PHASE_TIMEOUT:?} \
                 (per partition {counts:?}); errors seen: {tolerated_errors:?}"
            );
        };
        let message = match next {
            Ok(message) => message,
            Err(e) => {
                // Coordinator trouble (FindCoordinator) would be reported here
                // and does not matter to a manual assignment. Anything that does
                // shows up as missing or wrong records; errors are listed in the
                // timeout message.
                if tolerated_errors.len() < 20 {
                    tolerated_errors.push(e.to_string());
                }
                continue;
            }
        };
        ensure!(
            message.topic() == topic,
            "{when}: message from topic {}",
            message.topic()
        );
        let timestamp_ms = match message.timestamp() {
            Timestamp::CreateTime(ms) => ms,
            other => bail!(
                "{when}: {}/{} timestamp {other:?}, want CreateTime",
                message.partition(),
                message.offset()
            ),
        };
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let record = Record {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms,
        };
        got.entry(message.partition())
            .or_default()
            .push((message.offset(), record));
        got_total += 1;
    }
    if !tolerated_errors.is_empty() {
        eprintln!("{when}: consumer errors tolerated: {tolerated_errors:?}");
    }
    compare(expected, &got, when)?;
    Ok(consumer)
}

fn compare(expected: &Partitions, got: &Partitions, when: &str) -> Result<()> {
    for partition in 0..PARTITIONS {
        let want = expected
            .get(&partition)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let have = got.get(&partition).map(Vec::as_slice).unwrap_or_default();
        if let Some(n) = (0..want.len().min(have.len())).find(|&n| want[n] != have[n]) {
            bail!(
                "{when}: partition {partition} differs at position {n}:\n  want {:?}\n  got  {:?}",
                abbreviate(&want[n]),
                abbreviate(&have[n])
            );
        }
        ensure!(
            want.len() == have.len(),
            "{when}: partition {partition}: want {} records, got {}",
            want.len(),
            have.len()
        );
    }
    Ok(())
}

/// A record for an error message, with long payloads cut short.
fn abbreviate((offset, record): &(i64, Record)) -> String {
    let payload = record.payload.as_ref().map(|p| {
        let shown = String::from_utf8_lossy(&p[..p.len().min(48)]).into_owned();
        format!("{} bytes {shown:?}", p.len())
    });
    format!(
        "offset {offset} key {:?} payload {payload:?} headers {:?} ts {}",
        record
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        record.headers,
        record.timestamp_ms
    )
}

/// Reads everything back and checks watermarks and `offsets_for_times`.
async fn check_reads(
    bootstrap: &str,
    topic: &str,
    expected: &Partitions,
    when: &str,
) -> Result<()> {
    let started = Instant::now();
    let consumer = consume_all(bootstrap, topic, expected, when).await?;
    let consumed = started.elapsed();
    // Stop fetching: a ListOffsets request queues behind the in-flight long-poll
    // Fetch on the same connection (a broker answers one connection in order).
    consumer.unassign()?;

    for (partition, records) in expected {
        let (low, high) = consumer.fetch_watermarks(topic, *partition, REQUEST_TIMEOUT)?;
        ensure!(
            (low, high) == (0, records.len() as i64),
            "{when}: watermarks of {topic}/{partition} = ({low}, {high}), want (0, {})",
            records.len()
        );
    }

    // Timestamps increase strictly within a partition, so the first offset
    // with timestamp >= t is known exactly. Ask for: before everything, each
    // record's own timestamp (some), one past it (the next record), and after
    // everything (no such offset: librdkafka reports Offset::End).
    let mut queries: Vec<(i32, i64, Offset)> = Vec::new();
    for (partition, records) in expected {
        queries.push((*partition, 0, Offset::Offset(records[0].0)));
        for pick in [1, records.len() / 2, records.len() - 1] {
            let (offset, record) = &records[pick];
            queries.push((*partition, record.timestamp_ms, Offset::Offset(*offset)));
            let next = records
                .get(pick + 1)
                .map_or(Offset::End, |(o, _)| Offset::Offset(*o));
            queries.push((*partition, record.timestamp_ms + 1, next));
        }
    }
    // One partition per request: a list may hold each partition once.
    for (partition, timestamp_ms, want) in queries {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(timestamp_ms))?;
        let answer = consumer.offsets_for_times(tpl, REQUEST_TIMEOUT)?;
        let elem = answer
            .find_partition(topic, partition)
            .ok_or_else(|| anyhow!("{when}: offsets_for_times lost {topic}/{partition}"))?;
        elem.error().with_context(|| {
            format!("{when}: offsets_for_times {topic}/{partition} @ {timestamp_ms}")
        })?;
        ensure!(
            elem.offset() == want,
            "{when}: offsets_for_times {topic}/{partition} @ {timestamp_ms} = {:?}, want {want:?}",
            elem.offset()
        );
    }
    eprintln!(
        "  {when}: consumed in {:.1}s, watermarks + offsets_for_times in {:.1}s",
        consumed.as_secs_f64(),
        (started.elapsed() - consumed).as_secs_f64()
    );
    Ok(())
}

async fn check_after_restart(
    bootstrap: &str,
    topic: &str,
    doomed: &str,
    expected: &Partitions,
    when: &str,
) -> Result<()> {
    let admin = admin_client(bootstrap)?;
    let listed = topic_partitions(&admin)?;
    ensure!(
        listed.get(topic) == Some(&(PARTITIONS as usize)),
        "{when}: metadata has {topic} with {:?} partitions, want {PARTITIONS}",
        listed.get(topic)
    );
    ensure!(
        !listed.contains_key(doomed),
        "{when}: deleted topic {doomed} is back: {listed:?}"
    );
    check_topic_configs(&admin, topic, when).await?;
    check_reads(bootstrap, topic, expected, when).await
}
