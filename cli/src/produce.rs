//! `produce`: one record per input line, batched per partition.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

use super::args::key_value;
use super::progress::{Progress, Unit, PRODUCE_BYTES_MIN};
use super::ConnectionArgs;
use sluice_clients::partitioner::Partitioner;
use sluice_clients::{Acks, Client, Compression, ProduceRecord};

/// Longest input line accepted.
pub(crate) const LINE_BYTES_MAX: usize = 16 << 20;

/// A partition's batch is sent once its records reach this many bytes, whatever
/// `--batch-size` says, to stay under the broker's default message.max.bytes (1 MiB).
pub(crate) const BATCH_BYTES_MAX: usize = 900 << 10;

/// `produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Send every record to this partition instead of choosing one per record.
    #[arg(long, short = 'p', value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Read records from this file instead of stdin.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value; a line without SEP is an error.
    /// Without this option records have no key.
    #[arg(long, short = 'K', value_name = "SEP", value_parser = non_empty)]
    pub key_separator: Option<String>,
    /// Add this header to every record, e.g. --header source=import; repeat for more.
    #[arg(long, short = 'H', value_name = "KEY=VALUE", value_parser = key_value)]
    pub header: Vec<(String, String)>,
    /// Acknowledgements to wait for: 0 (none), 1 (the leader) or all (every in-sync replica).
    #[arg(long, value_name = "0|1|all", default_value = "all")]
    pub acks: Acks,
    /// Compression codec for each batch.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Most records per partition batch (a batch is also sent once it reaches 900 KiB).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

struct Batch {
    records: Vec<ProduceRecord>,
    bytes: usize,
}

pub(super) async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let headers = headers(&args.header)?;
    let (input, size): (Box<dyn AsyncRead + Unpin + Send>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            let size = file
                .metadata()
                .await
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            (Box::new(file), size)
        }
        None => (Box::new(tokio::io::stdin()), stdin_size()),
    };
    let client = args.connection.connect().await?;
    let partitions = client.partition_count(&args.topic).await?;
    if let Some(p) = args.partition {
        if p as u32 >= partitions {
            bail!(
                "topic {} has {partitions} partitions; there is no partition {p}",
                args.topic
            );
        }
    }
    let mut progress = Progress::new(size, Unit::Bytes, PRODUCE_BYTES_MIN, true);
    let started = Instant::now();
    let mut producer = Producer {
        client: &client,
        args: &args,
        batches: BTreeMap::new(),
        records: 0,
        bytes: 0,
    };
    let partitioner = Partitioner::new();
    let mut reader = BufReader::with_capacity(256 << 10, input);
    let mut line = Vec::new();
    let mut line_number: u64 = 0;
    loop {
        let Some(consumed) = read_line(&mut reader, &mut line, LINE_BYTES_MAX)
            .await
            .context("reading input")?
        else {
            break;
        };
        line_number += 1;
        if consumed > LINE_BYTES_MAX {
            bail!("line {line_number} is longer than {} bytes", LINE_BYTES_MAX);
        }
        progress.inc(consumed as u64);
        let record = parse_line(
            std::mem::take(&mut line),
            args.key_separator.as_deref(),
            &headers,
        )
        .with_context(|| format!("line {line_number}"))?;
        let partition = match args.partition {
            Some(p) => p,
            None => partitioner.partition(record.key.as_deref(), partitions),
        };
        producer.push(partition, record).await?;
    }
    producer.flush_all().await?;
    progress.finish();
    let (records, bytes) = (producer.records, producer.bytes);
    eprintln!(
        "Produced {records} records ({bytes} bytes) to {} in {:.2} s.",
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Per-partition batches being filled.
struct Producer<'a> {
    client: &'a Client,
    args: &'a ProduceArgs,
    batches: BTreeMap<i32, Batch>,
    records: u64,
    bytes: u64,
}

impl Producer<'_> {
    async fn push(&mut self, partition: i32, record: ProduceRecord) -> anyhow::Result<()> {
        let size = record_size(&record);
        let batch = self.batches.entry(partition).or_insert_with(|| Batch {
            records: Vec::new(),
            bytes: 0,
        });
        batch.records.push(record);
        batch.bytes += size;
        if batch.records.len() >= self.args.batch_size as usize || batch.bytes >= BATCH_BYTES_MAX {
            self.flush(partition).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, partition: i32) -> anyhow::Result<()> {
        let Some(batch) = self.batches.remove(&partition) else {
            return Ok(());
        };
        if batch.records.is_empty() {
            return Ok(());
        }
        self.client
            .produce(
                &self.args.topic,
                partition,
                &batch.records,
                self.args.acks,
                self.args.compression,
            )
            .await
            .with_context(|| {
                format!(
                    "producing {} records to {}-{partition}",
                    batch.records.len(),
                    self.args.topic
                )
            })?;
        self.records += batch.records.len() as u64;
        self.bytes += batch.bytes as u64;
        Ok(())
    }

    async fn flush_all(&mut self) -> anyhow::Result<()> {
        let partitions: Vec<i32> = self.batches.keys().copied().collect();
        for partition in partitions {
            self.flush(partition).await?;
        }
        Ok(())
    }
}

fn record_size(record: &ProduceRecord) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
        .sum();
    record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + headers
}

fn headers(pairs: &[(String, String)]) -> anyhow::Result<Vec<(String, Option<Bytes>)>> {
    let mut out: Vec<(String, Option<Bytes>)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        if out.iter().any(|(k, _)| k == key) {
            bail!("header {key:?} given twice");
        }
        out.push((key.clone(), Some(Bytes::from(value.clone()))));
    }
    Ok(out)
}

/// Turns one input line (without its line ending) into a record.
fn parse_line(
    line: Vec<u8>,
    key_separator: Option<&str>,
    headers: &[(String, Option<Bytes>)],
) -> anyhow::Result<ProduceRecord> {
    let line = Bytes::from(line);
    let (key, value) = match key_separator {
        None => (None, line),
        Some(sep) => {
            let sep = sep.as_bytes();
            let Some(at) = line.windows(sep.len()).position(|w| w == sep) else {
                bail!(
                    "no key separator {:?} in the line",
                    String::from_utf8_lossy(sep)
                );
            };
            (Some(line.slice(..at)), line.slice(at + sep.len()..))
        }
    };
    Ok(ProduceRecord {
        key,
        value: Some(value),
        headers: headers.to_vec(),
        timestamp_ms: None,
    })
}

/// Reads one line into `line` without its `\n` or `\r\n`. Returns the bytes consumed, `None`
/// at end of input. Stops buffering past `max` bytes (the caller refuses such a line); the
/// returned count is then `max + 1`.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<usize>> {
    line.clear();
    let mut consumed = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let n = chunk.len();
        if line.len() + n > max + 1 {
            reader.consume(n);
            return Ok(Some(max + 1));
        }
        line.extend_from_slice(chunk);
        reader.consume(n);
        consumed += n;
        if done {
            break;
        }
    }
    if consumed == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(Some(consumed))
}

/// Size of stdin when it is a regular file (redirected with `<`), for the progress bar.
fn stdin_size() -> Option<u64> {
    std::fs::metadata("/dev/stdin")
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_lose_their_endings() -> std::io::Result<()> {
        let mut input: &[u8] = b"a\r\nb\n\nlast";
        let mut line = Vec::new();
        let mut got = Vec::new();
        while let Some(n) = read_line(&mut input, &mut line, 100).await? {
            got.push((String::from_utf8_lossy(&line).to_string(), n));
        }
        let want = [("a", 3), ("b", 2), ("", 1), ("last", 4)].map(|(s, n)| (s.to_string(), n));
        assert_eq!(got, want);
        Ok(())
    }

    #[tokio::test]
    async fn long_lines_are_flagged() -> std::io::Result<()> {
        let mut input: &[u8] = b"0123456789\nok\n";
        let mut line = Vec::new();
        assert_eq!(read_line(&mut input, &mut line, 5).await?, Some(6));
        Ok(())
    }

    #[test]
    fn keys_split_at_the_first_separator() -> anyhow::Result<()> {
        let headers = headers(&[("h".into(), "v".into())])?;
        let r = parse_line(b"k1::v::1".to_vec(), Some("::"), &headers)?;
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v::1"[..]));
        assert_eq!(r.headers, headers);
        let r = parse_line(b"::v".to_vec(), Some("::"), &[])?;
        assert_eq!(r.key.as_deref(), Some(&b""[..]));
        assert!(parse_line(b"novalue".to_vec(), Some("\t"), &[]).is_err());
        let r = parse_line(b"plain".to_vec(), None, &[])?;
        assert_eq!((r.key, r.value.as_deref()), (None, Some(&b"plain"[..])));
        Ok(())
    }

    #[test]
    fn duplicate_headers_are_refused() {
        assert!(headers(&[("a".into(), "1".into()), ("a".into(), "2".into())]).is_err());
    }
}
