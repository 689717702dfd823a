//! `bench produce` and `bench consume`: load generators reporting throughput and produce
//! latency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use rand::Rng;

use super::latency::{Latencies, LatencySummary};
use super::ConnectionArgs;
use sluice_clients::{Acks, Client, Compression, OffsetSpec, ProduceRecord};

/// Distinct random payloads cycled through, so compressed runs do not just compress one value.
const PAYLOADS: usize = 16;

/// Load generators.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce generated records as fast as the broker accepts them.
    ///
    /// Creates the topic with --partitions if it does not exist. Prints records/s, MB/s
    /// (10^6 bytes of record values) and the latency of each produce request (p50, p99,
    /// p99.9, max).
    Produce(BenchProduceArgs),
    /// Read a topic from the beginning of every partition as fast as possible.
    ///
    /// Prints records/s and MB/s (10^6 bytes of keys and values).
    Consume(BenchConsumeArgs),
    /// Measure this machine's baselines in the same run: loopback TCP throughput and
    /// sequential write() (with and without fdatasync) to --dir.
    Baseline(super::baseline::BaselineArgs),
}

/// `bench produce`.
#[derive(Debug, Args)]
pub struct BenchProduceArgs {
    /// Topic to produce to.
    #[arg(long, short = 't')]
    pub topic: String,
    /// Partitions to create the topic with if it does not exist.
    #[arg(long, short = 'p', value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Records to produce in total.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
    /// Bytes in each record value.
    #[arg(long, short = 's', value_name = "BYTES", default_value_t = 100)]
    pub record_size: usize,
    /// Acknowledgements to wait for: 0 (none; latency is then the time to write the request),
    /// 1 (the leader) or all (every in-sync replica).
    #[arg(long, value_name = "0|1|all", default_value = "all")]
    pub acks: Acks,
    /// Records per produce request (one batch to one partition; partitions take turns).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Compression codec for each batch.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Produce requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Target records per second (0: as fast as possible). Use it to measure latency at a
    /// fraction of peak load: each batch waits for its slot before it is sent.
    #[arg(long, value_name = "RECORDS_PER_SEC", default_value_t = 0)]
    pub rate: u64,
    /// Print the result as one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `bench consume`.
#[derive(Debug, Args)]
pub struct BenchConsumeArgs {
    /// Topic to read.
    #[arg(long, short = 't')]
    pub topic: String,
    /// Records to read [default: everything up to the end offsets at start].
    #[arg(long, short = 'n', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub records: Option<u64>,
    /// Most bytes to fetch per partition per request.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_bytes: i32,
    /// Give up when no record arrives for this long, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub idle_timeout_ms: u64,
    /// Print the result as one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

pub(super) async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(args) => produce(args).await,
        BenchCommand::Consume(args) => consume(args).await,
        BenchCommand::Baseline(args) => super::baseline::run(args).await,
    }
}

/// The outcome of a run, printed as a sentence or JSON.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    kind: &'static str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    requests: u64,
    latency: Option<LatencySummary>,
}

impl Report {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn line(&self) -> String {
        let mut line = format!(
            "{} {} records ({:.1} MB) in {:.2} s: {:.0} records/s, {:.2} MB/s, {} requests",
            self.kind,
            self.records,
            self.bytes as f64 / 1e6,
            self.elapsed.as_secs_f64(),
            self.records_per_sec(),
            self.mb_per_sec(),
            self.requests,
        );
        if let Some(l) = &self.latency {
            line.push_str(&format!(
                "; latency ms p50 {:.2} p99 {:.2} p999 {:.2} max {:.2}",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
            ));
        }
        line
    }

    fn json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "kind": self.kind,
            "records": self.records,
            "bytes": self.bytes,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "requests": self.requests,
            "records_per_sec": self.records_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
        });
        if let (Some(l), Some(map)) = (&self.latency, json.as_object_mut()) {
            map.insert(
                "latency_ms".into(),
                serde_json::json!({"p50": l.p50_ms, "p99": l.p99_ms, "p999": l.p999_ms, "max": l.max_ms, "count": l.count}),
            );
        }
        json
    }

    fn print(&self, json: bool) {
        if json {
            println!("{}", self.json());
        } else {
            println!("{}", self.line());
        }
    }
}

async fn produce(args: BenchProduceArgs) -> anyhow::Result<()> {
    let client = args.connection.connect().await?;
    let partitions = match client.partition_count(&args.topic).await {
        Ok(n) => n,
        Err(sluice_clients::Error::UnknownTopic(_)) => {
            client
                .create_topic(&args.topic, args.partitions, -1, &[])
                .await?;
            client.partition_count(&args.topic).await?
        }
        Err(e) => return Err(e.into()),
    };
    if partitions == 0 {
        bail!("topic {} has no partitions", args.topic);
    }
    let payloads: Arc<Vec<Bytes>> = Arc::new(random_payloads(args.record_size));
    let batches = args.records.div_ceil(u64::from(args.batch_size));
    let next_batch = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, payloads, next_batch) = (client.clone(), payloads.clone(), next_batch.clone());
        let (topic, acks, compression) = (args.topic.clone(), args.acks, args.compression);
        let (total, batch_size) = (args.records, u64::from(args.batch_size));
        let rate = args.rate;
        let start = tokio::time::Instant::now();
        tasks.spawn(async move {
            let mut latencies = Latencies::default();
            let mut bytes = 0u64;
            loop {
                let batch = next_batch.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    break;
                }
                let first = batch * batch_size;
                let count = batch_size.min(total - first);
                let records: Vec<ProduceRecord> = (first..first + count)
                    .map(|i| ProduceRecord {
                        value: Some(payloads[(i % PAYLOADS as u64) as usize].clone()),
                        ..Default::default()
                    })
                    .collect();
                bytes += records
                    .iter()
                    .map(|r| r.value.as_ref().map_or(0, Bytes::len) as u64)
                    .sum::<u64>();
                let partition = (batch % u64::from(partitions)) as i32;
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(first as f64 / rate as f64);
                    tokio::time::sleep_until(due).await;
                }
                let sent = Instant::now();
                client
                    .produce(&topic, partition, &records, acks, compression)
                    .await
                    .with_context(|| format!("producing batch {batch} to {topic}-{partition}"))?;
                latencies.record(sent.elapsed());
            }
            anyhow::Ok((latencies, bytes))
        });
    }
    let mut latencies = Latencies::default();
    let mut bytes = 0;
    while let Some(joined) = tasks.join_next().await {
        let (l, b) = joined.context("producer task failed")??;
        latencies.merge(l);
        bytes += b;
    }
    let latency = latencies.summary();
    let report = Report {
        kind: "produced",
        records: args.records,
        bytes,
        elapsed: started.elapsed(),
        requests: latency.count as u64,
        latency: Some(latency),
    };
    report.print(args.json);
    Ok(())
}

fn random_payloads(size: usize) -> Vec<Bytes> {
    let mut rng = rand::thread_rng();
    (0..PAYLOADS)
        .map(|_| {
            (0..size)
                .map(|_| rng.gen_range(b'A'..=b'Z'))
                .collect::<Vec<u8>>()
                .into()
        })
        .collect()
}

async fn consume(args: BenchConsumeArgs) -> anyhow::Result<()> {
    let client = args.connection.connect().await?;
    let meta = client.topic_metadata(&args.topic).await?;
    let partitions: Vec<i32> = meta.partitions.iter().map(|p| p.partition).collect();
    let starts = offsets(&client, &args.topic, &partitions, OffsetSpec::Earliest).await?;
    let ends = offsets(&client, &args.topic, &partitions, OffsetSpec::Latest).await?;
    let available: u64 = partitions
        .iter()
        .map(|p| (ends[p] - starts[p]).max(0) as u64)
        .sum();
    let target = args.records.unwrap_or(available);
    let mut positions = starts;
    let idle_timeout = Duration::from_millis(args.idle_timeout_ms);
    let (mut records, mut bytes, mut requests) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut last_data = Instant::now();
    let mut idle_since = None;
    while records < target {
        if last_data.elapsed() >= idle_timeout {
            eprintln!(
                "No records for {} ms; stopping after {records} of {target}.",
                args.idle_timeout_ms
            );
            // The idle wait is not part of the throughput.
            idle_since = Some(last_data);
            break;
        }
        let wanted: Vec<(i32, i64)> = positions.iter().map(|(p, o)| (*p, *o)).collect();
        let fetched = client
            .fetch_many(
                &args.topic,
                &wanted,
                args.max_bytes,
                Duration::from_millis(100),
            )
            .await?;
        requests += 1;
        for (partition, fetched) in fetched {
            if !fetched.records.is_empty() {
                last_data = Instant::now();
            }
            // Count no further than asked, so --records N reports exactly N.
            let wanted = usize::try_from(target - records).unwrap_or(usize::MAX);
            for r in fetched.records.iter().take(wanted) {
                records += 1;
                bytes += (r.key.as_ref().map_or(0, Bytes::len)
                    + r.value.as_ref().map_or(0, Bytes::len)) as u64;
            }
            positions.insert(partition, fetched.next_offset);
        }
    }
    let elapsed = idle_since
        .unwrap_or_else(Instant::now)
        .duration_since(started);
    let report = Report {
        kind: "consumed",
        records,
        bytes,
        elapsed,
        requests,
        latency: None,
    };
    report.print(args.json);
    Ok(())
}

async fn offsets(
    client: &Client,
    topic: &str,
    partitions: &[i32],
    spec: OffsetSpec,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    client
        .list_offsets_many(topic, partitions, spec)
        .await?
        .into_iter()
        .map(|(p, o)| {
            o.map(|o| (p, o))
                .with_context(|| format!("the broker gave no offset for partition {p}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let latency = LatencySummary {
            count: 10,
            p50_ms: 1.0,
            p99_ms: 2.5,
            p999_ms: 3.0,
            max_ms: 4.0,
        };
        Report {
            kind: "produced",
            records: 1000,
            bytes: 2_000_000,
            elapsed: Duration::from_secs(2),
            requests: 10,
            latency: Some(latency),
        }
    }

    #[test]
    fn one_line_summary() {
        assert_eq!(
            report().line(),
            "produced 1000 records (2.0 MB) in 2.00 s: 500 records/s, 1.00 MB/s, 10 requests; latency ms p50 1.00 p99 2.50 p999 3.00 max 4.00"
        );
    }

    #[test]
    fn json_summary() {
        let json = report().json();
        assert_eq!(json["records_per_sec"], 500.0);
        assert_eq!(json["mb_per_sec"], 1.0);
        assert_eq!(json["latency_ms"]["p99"], 2.5);
        let consumed = Report {
            latency: None,
            kind: "consumed",
            ..report()
        }
        .json();
        assert!(consumed.get("latency_ms").is_none());
    }

    #[test]
    fn payloads_have_the_requested_size() {
        let p = random_payloads(37);
        assert_eq!(p.len(), PAYLOADS);
        assert!(p
            .iter()
            .all(|b| b.len() == 37 && b.iter().all(u8::is_ascii_uppercase)));
    }
}
