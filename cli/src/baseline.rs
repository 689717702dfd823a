//! `bench baseline`: the physical limits a broker benchmark is compared against, measured on
//! this machine in the same run: loopback TCP throughput, and sequential `write()` (and
//! `write()` + `fdatasync`) to a file on the disk under test.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `bench baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Directory on the disk to measure (the broker's data dir's disk).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// MiB to send over loopback and to write to disk.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub mib: u64,
    /// Bytes per write() call.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub chunk: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

async fn loopback(total: u64, chunk: usize) -> anyhow::Result<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        anyhow::Ok(got)
    });
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let data = vec![0x5au8; chunk];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        s.write_all(&data).await?;
        sent += chunk as u64;
    }
    s.shutdown().await?;
    drop(s);
    let got = reader.await??;
    anyhow::ensure!(got == sent, "loopback reader got {got} of {sent} bytes");
    Ok(started.elapsed())
}

fn disk(dir: &std::path::Path, total: u64, chunk: usize, sync: bool) -> anyhow::Result<Duration> {
    let path = dir.join(format!(".sluice-baseline-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let data = vec![0xa5u8; chunk];
    let started = Instant::now();
    let mut written = 0u64;
    while written < total {
        f.write_all(&data)?;
        written += chunk as u64;
    }
    if sync {
        f.sync_data()?;
    }
    let elapsed = started.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(elapsed)
}

pub(crate) async fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let total = args.mib << 20;
    let chunk = args.chunk.max(1);
    let tcp = loopback(total, chunk).await?;
    let dir = args.dir.clone();
    let (write, write_sync) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        Ok((
            disk(&dir, total, chunk, false)?,
            disk(&dir, total, chunk, true)?,
        ))
    })
    .await??;
    let (tcp_mb, write_mb, sync_mb) = (
        mb_per_s(total, tcp),
        mb_per_s(total, write),
        mb_per_s(total, write_sync),
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "kind": "baseline",
                "bytes": total,
                "chunk": chunk,
                "loopback_tcp_mb_per_sec": tcp_mb,
                "disk_write_mb_per_sec": write_mb,
                "disk_write_fdatasync_mb_per_sec": sync_mb,
                "dir": args.dir.display().to_string(),
            })
        );
    } else {
        println!(
            "baseline: loopback TCP {tcp_mb:.0} MB/s, write() {write_mb:.0} MB/s, write()+fdatasync {sync_mb:.0} MB/s ({} MiB in {chunk}-byte writes, dir {})",
            args.mib,
            args.dir.display()
        );
    }
    Ok(())
}
