//! `consume`: print a topic's records, following new ones.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::io::AsyncWriteExt;

use super::args::StartFrom;
use super::progress::{Progress, Unit, CONSUME_RECORDS_MIN};
use super::template::Template;
use super::ConnectionArgs;
use sluice_clients::{Client, ConsumerRecord, OffsetSpec};

/// `consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Read only this partition [default: all partitions].
    #[arg(long, short = 'p', value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Where to start in each partition: beginning, end, an offset, or @TIMESTAMP_MS (the
    /// first record at or after that time, in ms since the epoch).
    #[arg(long, short = 'o', value_name = "WHERE", default_value = "beginning")]
    pub from: StartFrom,
    /// Stop after printing this many records.
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop at the end offsets the partitions had at start instead of waiting for more.
    #[arg(long, short = 'e')]
    pub exit: bool,
    /// Output template: %k key, %v value, %o offset, %p partition, %t timestamp (ms),
    /// %h headers (k=v,k2=v2), %% a percent sign; escapes \t \n \r \\. A newline follows
    /// each record. Keys and values are printed as raw bytes; null ones as nothing.
    #[arg(
        long,
        short = 'F',
        value_name = "TEMPLATE",
        default_value = "%v",
        conflicts_with = "json"
    )]
    pub format: Template,
    /// Print each record as a JSON object on its own line: partition, offset, timestamp,
    /// key, value, headers. Bytes that are not UTF-8 become U+FFFD.
    #[arg(long)]
    pub json: bool,
    /// Most bytes to fetch per partition per request.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_bytes: i32,
    /// How long the broker may wait for new records before answering, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub max_wait_ms: u32,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

pub(super) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = args.connection.connect().await?;
    let meta = client.topic_metadata(&args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if meta.partitions.iter().any(|m| m.partition == p) => vec![p],
        Some(p) => bail!(
            "topic {} has {} partitions; there is no partition {p}",
            args.topic,
            meta.partitions.len()
        ),
        None => meta.partitions.iter().map(|m| m.partition).collect(),
    };
    let ends = known(
        client
            .list_offsets_many(&args.topic, &partitions, OffsetSpec::Latest)
            .await?,
    )?;
    let mut positions =
        start_positions(&client, &args.topic, &partitions, args.from, &ends).await?;
    if args.exit {
        positions.retain(|p, offset| *offset < ends[p]);
    }
    let total = args.exit.then(|| {
        positions
            .iter()
            .map(|(p, o)| (ends[p] - o).max(0) as u64)
            .sum::<u64>()
    });
    let total = match (total, args.count) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    };
    let mut progress = Progress::new(
        total,
        Unit::Records,
        CONSUME_RECORDS_MIN,
        !std::io::stdout().is_terminal(),
    );
    let mut stdout = tokio::io::stdout();
    let mut out = Vec::with_capacity(64 << 10);
    let mut printed: u64 = 0;
    let max_wait = Duration::from_millis(u64::from(args.max_wait_ms));
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    'consume: while !positions.is_empty() && args.count.is_none_or(|c| printed < c) {
        let wanted: Vec<(i32, i64)> = positions.iter().map(|(p, o)| (*p, *o)).collect();
        let fetched = tokio::select! {
            _ = &mut interrupted => break 'consume,
            fetched = client.fetch_many(&args.topic, &wanted, args.max_bytes, max_wait) => fetched?,
        };
        out.clear();
        let mut count_reached = false;
        for (partition, fetched) in fetched {
            let end = args.exit.then(|| ends[&partition]);
            for record in &fetched.records {
                if end.is_some_and(|end| record.offset >= end) || count_reached {
                    break;
                }
                render(&args, record, &mut out)?;
                printed += 1;
                progress.inc(1);
                count_reached = args.count.is_some_and(|c| printed >= c);
            }
            positions.insert(partition, fetched.next_offset);
            if end.is_some_and(|end| fetched.next_offset >= end) {
                positions.remove(&partition);
            }
        }
        if let Err(e) = write_out(&mut stdout, &out).await {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e).context("writing to stdout");
        }
        if count_reached {
            break;
        }
    }
    progress.finish();
    eprintln!("Consumed {printed} records.");
    Ok(())
}

async fn write_out(stdout: &mut tokio::io::Stdout, out: &[u8]) -> std::io::Result<()> {
    stdout.write_all(out).await?;
    stdout.flush().await
}

fn render(args: &ConsumeArgs, record: &ConsumerRecord, out: &mut Vec<u8>) -> anyhow::Result<()> {
    if args.json {
        serde_json::to_writer(&mut *out, &record_json(record)).context("encoding JSON")?;
    } else {
        args.format.render(record, out);
    }
    out.push(b'\n');
    Ok(())
}

fn lossy(bytes: &Option<bytes::Bytes>) -> serde_json::Value {
    match bytes {
        Some(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
        None => serde_json::Value::Null,
    }
}

fn record_json(record: &ConsumerRecord) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), lossy(v)))
        .collect();
    serde_json::json!({
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "key": lossy(&record.key),
        "value": lossy(&record.value),
        "headers": headers,
    })
}

/// Unwraps offsets that ListOffsets must always give (earliest and latest).
fn known(offsets: BTreeMap<i32, Option<i64>>) -> anyhow::Result<BTreeMap<i32, i64>> {
    offsets
        .into_iter()
        .map(|(p, o)| {
            o.map(|o| (p, o))
                .with_context(|| format!("the broker gave no offset for partition {p}"))
        })
        .collect()
}

async fn start_positions(
    client: &Client,
    topic: &str,
    partitions: &[i32],
    from: StartFrom,
    ends: &BTreeMap<i32, i64>,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    Ok(match from {
        StartFrom::Beginning => known(
            client
                .list_offsets_many(topic, partitions, OffsetSpec::Earliest)
                .await?,
        )?,
        StartFrom::End => ends.clone(),
        StartFrom::Timestamp(ms) => client
            .list_offsets_many(topic, partitions, OffsetSpec::Timestamp(ms))
            .await?
            .into_iter()
            // No record that late: start at the end.
            .map(|(p, o)| (p, o.unwrap_or(ends[&p])))
            .collect(),
        StartFrom::Offset(offset) => {
            let starts = known(
                client
                    .list_offsets_many(topic, partitions, OffsetSpec::Earliest)
                    .await?,
            )?;
            for (p, start) in &starts {
                let end = ends[p];
                if offset < *start || offset > end {
                    bail!("offset {offset} is outside partition {p}'s range {start}..={end}");
                }
            }
            partitions.iter().map(|p| (*p, offset)).collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn json_lines_carry_every_field() {
        let record = ConsumerRecord {
            partition: 1,
            offset: 7,
            timestamp_ms: 5,
            key: None,
            value: Some(Bytes::from_static(b"v\xff")),
            headers: vec![
                ("h".into(), Some(Bytes::from_static(b"x"))),
                ("n".into(), None),
            ],
        };
        let json = record_json(&record);
        assert_eq!(
            json,
            serde_json::json!({"partition": 1, "offset": 7, "timestamp": 5, "key": null, "value": "v\u{fffd}", "headers": {"h": "x", "n": null}})
        );
    }
}
