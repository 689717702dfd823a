//! Integration peer: the `rdkafka` crate (librdkafka) against the real
//! `sluice` binary.
//!
//! Layout: this library is only [`Broker`], a handle on one `sluice serve`
//! process on free loopback ports with a temporary data directory, stopped by
//! PID when dropped. The scenario that drives it with librdkafka lives in
//! `tests/rdkafka.rs`; librdkafka itself is a dev-dependency, so building the
//! workspace does not compile it, testing does.
//!
//! The binary is `$SLUICE_BIN`, or `<workspace>/target/debug/sluice`.
//!
//! ```no_run
//! let mut broker = sluice_rdkafka_peer::Broker::start()?;
//! println!("bootstrap.servers={}", broker.bootstrap());
//! broker.restart_clean()?; // SIGTERM, expect exit 0, start on the same data
//! broker.restart_after_kill()?; // SIGKILL, start on the same data
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};
use tempfile::TempDir;

/// What the broker prints on stderr once it accepts connections.
const READY_MARKER: &str = "sluice ready";
/// Bound on waiting for [`READY_MARKER`] (override: `SLUICE_START_TIMEOUT`, seconds).
const START_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Bound on waiting for exit after SIGTERM or SIGKILL (override: `SLUICE_STOP_TIMEOUT`).
const STOP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(20);
/// How many times a first start picks new ports after losing a port race.
const BIND_ATTEMPTS_MAX: usize = 5;
/// How much of the broker's stderr goes into error messages.
const STDERR_TAIL_BYTES: u64 = 16 * 1024;
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Where the `sluice` binary is: `$SLUICE_BIN`, else `<workspace>/target/debug/sluice`.
pub fn sluice_bin() -> PathBuf {
    match std::env::var_os("SLUICE_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/sluice"),
    }
}

fn env_seconds(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(default)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// One `sluice serve` process. Restarts keep the data directory and ports.
pub struct Broker {
    binary: PathBuf,
    /// Owns the data directory and the stderr log; removed on drop.
    dir: TempDir,
    port: u16,
    admin_port: u16,
    sets: Vec<(String, String)>,
    /// The running process, if any. Stopped by PID (SIGTERM, then SIGKILL) on drop.
    child: Option<Child>,
    starts: usize,
}

impl Broker {
    /// Starts a broker with default settings.
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a broker with `--set key=value` for each pair.
    pub fn start_with(sets: &[(&str, &str)]) -> Result<Self> {
        let binary = sluice_bin();
        if !binary.is_file() {
            bail!(
                "sluice binary not found at {} (set SLUICE_BIN, or run `cargo build --bin sluice` first)",
                binary.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("sluice-rdkafka-peer-")
            .tempdir()
            .context("create temp dir")?;
        fs::create_dir_all(dir.path().join("data"))?;
        let mut broker = Broker {
            binary,
            dir,
            port: 0,
            admin_port: 0,
            sets: sets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            starts: 0,
        };
        for attempt in 1..=BIND_ATTEMPTS_MAX {
            broker.port = free_port()?;
            broker.admin_port = free_port()?;
            if broker.admin_port == broker.port {
                continue;
            }
            match broker.spawn_and_wait()? {
                Started::Ready => return Ok(broker),
                Started::AddrInUse if attempt < BIND_ATTEMPTS_MAX => continue,
                Started::AddrInUse => break,
            }
        }
        bail!(
            "sluice could not bind after {BIND_ATTEMPTS_MAX} attempts; stderr:\n{}",
            broker.stderr_tail()
        )
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("sluice-stderr.log")
    }

    /// The PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, require exit status 0 within the stop bound, start again on
    /// the same data directory and ports.
    pub fn restart_clean(&mut self) -> Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// SIGKILL (a crash), then start again on the same data directory and ports.
    pub fn restart_after_kill(&mut self) -> Result<()> {
        self.kill()?;
        self.start_again()
    }

    fn start_again(&mut self) -> Result<()> {
        match self.spawn_and_wait()? {
            Started::Ready => Ok(()),
            Started::AddrInUse => bail!(
                "sluice restart: port {} or {} still in use; stderr:\n{}",
                self.port,
                self.admin_port,
                self.stderr_tail()
            ),
        }
    }

    /// SIGTERM by PID; the broker must exit with status 0 within the stop bound.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(status) = child.try_wait()? {
            bail!(
                "sluice had already exited ({status}) before SIGTERM; stderr:\n{}",
                self.stderr_tail()
            );
        }
        self.marker("SIGTERM");
        signal(&child, Signal::TERM)?;
        let timeout = env_seconds("SLUICE_STOP_TIMEOUT", STOP_TIMEOUT_DEFAULT);
        match wait_bounded(&mut child, timeout)? {
            Some(status) => {
                self.marker(&format!("exited: {status}"));
                if !status.success() {
                    bail!(
                        "sluice exited with {status} after SIGTERM, expected 0; stderr:\n{}",
                        self.stderr_tail()
                    );
                }
                Ok(())
            }
            None => {
                signal(&child, Signal::KILL)?;
                let _ = wait_bounded(&mut child, timeout);
                bail!(
                    "sluice did not exit within {timeout:?} of SIGTERM (SIGKILLed it); stderr:\n{}",
                    self.stderr_tail()
                )
            }
        }
    }

    /// SIGKILL by PID and reap it.
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("kill: sluice is not running");
        };
        self.marker("SIGKILL");
        signal(&child, Signal::KILL)?;
        let timeout = env_seconds("SLUICE_STOP_TIMEOUT", STOP_TIMEOUT_DEFAULT);
        if wait_bounded(&mut child, timeout)?.is_none() {
            bail!(
                "sluice (pid {}) still alive {timeout:?} after SIGKILL",
                child.id()
            );
        }
        Ok(())
    }

    /// Fails if the broker process has exited.
    pub fn assert_alive(&mut self) -> Result<()> {
        match self.child.as_mut() {
            None => bail!("sluice is not running"),
            Some(child) => match child.try_wait()? {
                None => Ok(()),
                Some(status) => bail!(
                    "sluice exited unexpectedly ({status}); stderr:\n{}",
                    self.stderr_tail()
                ),
            },
        }
    }

    /// The last 16 KiB of the broker's stderr (all starts).
    pub fn stderr_tail(&self) -> String {
        let Ok(mut file) = File::open(self.stderr_path()) else {
            return "<no stderr captured>".into();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let from = len.saturating_sub(STDERR_TAIL_BYTES);
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut buf).is_err() {
            return "<stderr unreadable>".into();
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        if from > 0 {
            format!("...[truncated]...\n{text}")
        } else {
            text
        }
    }

    fn marker(&self, text: &str) {
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
        {
            let _ = writeln!(f, "\n===== [rdkafka-peer] {text} =====");
        }
    }

    fn spawn_and_wait(&mut self) -> Result<Started> {
        assert!(self.child.is_none(), "spawn while a broker is running");
        self.starts += 1;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", self.admin_port));
        for (k, v) in &self.sets {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        self.marker(&format!("start #{}: {cmd:?}", self.starts));
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())?;
        let offset = stderr.metadata()?.len();
        let stderr_path = self.stderr_path();
        let child = cmd
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        let child = self.child.insert(child);

        let timeout = env_seconds("SLUICE_START_TIMEOUT", START_TIMEOUT_DEFAULT);
        let deadline = Instant::now() + timeout;
        let mut port_ok = false;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                let since = read_from(&stderr_path, offset);
                let lower = since.to_lowercase();
                if lower.contains("address already in use") || lower.contains("addrinuse") {
                    return Ok(Started::AddrInUse);
                }
                bail!(
                    "sluice exited during startup ({status}); stderr:\n{}",
                    self.stderr_tail()
                );
            }
            if !port_ok {
                port_ok = TcpStream::connect_timeout(
                    &(Ipv4Addr::LOCALHOST, self.port).into(),
                    Duration::from_millis(500),
                )
                .is_ok();
            }
            if port_ok && read_from(&stderr_path, offset).contains(READY_MARKER) {
                return Ok(Started::Ready);
            }
            if Instant::now() >= deadline {
                let state = if port_ok {
                    "port accepts but no `sluice ready` on stderr"
                } else {
                    "port never accepted"
                };
                let _ = signal(child, Signal::KILL);
                let _ = wait_bounded(child, STOP_TIMEOUT_DEFAULT);
                self.child = None;
                bail!(
                    "sluice not ready within {timeout:?} ({state}); stderr:\n{}",
                    self.stderr_tail()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- sluice stderr ({}) ----\n{}",
                self.stderr_path().display(),
                self.stderr_tail()
            );
        }
        if let Some(child) = self.child.as_mut() {
            // Bounded: SIGTERM, then SIGKILL; never leave a broker behind.
            if signal(child, Signal::TERM).is_ok()
                && matches!(wait_bounded(child, STOP_TIMEOUT_DEFAULT), Ok(Some(_)))
            {
                return;
            }
            let _ = signal(child, Signal::KILL);
            let _ = wait_bounded(child, STOP_TIMEOUT_DEFAULT);
        }
    }
}

enum Started {
    Ready,
    AddrInUse,
}

fn signal(child: &Child, sig: Signal) -> Result<()> {
    let pid = Pid::from_child(child);
    kill_process(pid, sig).with_context(|| format!("kill({}, {sig:?})", child.id()))
}

fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
