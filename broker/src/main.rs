//! The `sluice` binary: `sluice serve` (the default) runs the broker; `topic`, `produce`,
//! `consume` and `bench` are Kafka clients for any broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sluice_broker::config::BrokerConfig;
use sluice_broker::state::Broker;
use sluice_broker::{admin, background, server};
use tokio_util::sync::CancellationToken;

/// Sluice: a Kafka-compatible broker with built-in stream operators.
///
/// With no subcommand, runs `sluice serve`: the broker on 127.0.0.1:9092 with data in
/// ./sluice-data.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker (the default).
    Serve(ServeArgs),
    /// SCRAM users (PLAIN logins check the same credentials): through a running broker
    /// (`--bootstrap`) or in a stopped broker's data dir (`--data-dir`).
    #[command(subcommand)]
    User(UserCommand),
    /// Client commands: they speak the Kafka protocol to any broker (`--bootstrap`).
    #[command(flatten)]
    Client(sluice_cli::Command),
}

/// Where `sluice user` makes its changes.
#[derive(Args, Debug)]
struct UserTarget {
    /// A running broker (Describe/AlterUserScramCredentials through the Kafka API).
    #[arg(
        long,
        short = 'b',
        value_name = "HOST:PORT",
        conflicts_with = "data_dir"
    )]
    bootstrap: Option<String>,
    /// A stopped broker's data dir (the way to create the first user) [default: ./sluice-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl UserTarget {
    fn online(&self) -> Option<sluice_cli::ConnectionArgs> {
        self.bootstrap.as_ref().map(|b| sluice_cli::ConnectionArgs {
            bootstrap: b.clone(),
            request_timeout_ms: 30_000,
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./sluice-data"))
    }
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user or set its password.
    Create {
        name: String,
        #[arg(long, env = "SLUICE_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// SCRAM-SHA-256, SCRAM-SHA-512, or all.
        #[arg(long, default_value = "all")]
        mechanism: String,
        #[arg(long, default_value_t = sluice_broker::users::DEFAULT_ITERATIONS)]
        iterations: u32,
        #[command(flatten)]
        target: UserTarget,
    },
    /// Delete a user's credentials.
    Delete {
        name: String,
        #[arg(long, default_value = "all")]
        mechanism: String,
        #[command(flatten)]
        target: UserTarget,
    },
    /// List the users and their mechanisms.
    List {
        #[command(flatten)]
        target: UserTarget,
        /// JSON output (online only).
        #[arg(long)]
        json: bool,
    },
}

async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    use sluice_broker::users;
    use sluice_cli::user as online;
    match cmd {
        UserCommand::Create {
            name,
            password,
            mechanism,
            iterations,
            target,
        } => match target.online() {
            Some(c) => {
                let m = online::parse_mechanisms(&mechanism)?;
                online::create(&c, &name, &password, &m, iterations).await
            }
            None => tokio::task::block_in_place(|| {
                users::create(&target.data_dir(), &name, &password, &mechanism, iterations)
            }),
        },
        UserCommand::Delete {
            name,
            mechanism,
            target,
        } => match target.online() {
            Some(c) => {
                let m = online::parse_mechanisms(&mechanism)?;
                online::delete(&c, &name, &m).await
            }
            None => {
                tokio::task::block_in_place(|| users::delete(&target.data_dir(), &name, &mechanism))
            }
        },
        UserCommand::List { target, json } => match target.online() {
            Some(c) => online::list(&c, json).await,
            None => tokio::task::block_in_place(|| users::list(&target.data_dir())),
        },
    }
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// Address for Kafka clients [default: 127.0.0.1:9092]. Port 0 picks a free port; the port
    /// actually bound is advertised unless `advertised.listeners` is set.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
    /// Data directory; created if missing [default: ./sluice-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Admin HTTP address for Prometheus /metrics and /health [default: 127.0.0.1:9644];
    /// `off` disables it.
    #[arg(long, value_name = "HOST:PORT|off")]
    admin_listen: Option<String>,
    /// A TOML file of Kafka broker configs, e.g. `"log.retention.ms" = 3600000`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A Kafka broker config, repeatable; applied after --config. Supported names:
    /// listeners, advertised.listeners, log.dirs, node.id, auto.create.topics.enable,
    /// num.partitions, default.replication.factor (1), delete.topic.enable,
    /// socket.request.max.bytes, max.connections, message.max.bytes, fetch.max.bytes,
    /// log.segment.bytes, log.roll.ms, log.roll.hours, log.index.size.max.bytes,
    /// log.index.interval.bytes, log.retention.ms, log.retention.minutes, log.retention.hours,
    /// log.retention.bytes, log.retention.check.interval.ms, log.cleanup.policy,
    /// log.flush.interval.messages, log.flush.interval.ms, log.flush.scheduler.interval.ms,
    /// log.flush.offset.checkpoint.interval.ms, log.message.timestamp.type, log.cleaner.enable,
    /// log.cleaner.backoff.ms, log.cleaner.delete.retention.ms, log.cleaner.min.cleanable.ratio,
    /// log.cleaner.min.compaction.lag.ms, log.cleaner.max.compaction.lag.ms,
    /// max.incremental.fetch.session.cache.slots, group.initial.rebalance.delay.ms,
    /// group.min.session.timeout.ms, group.max.session.timeout.ms, group.max.size,
    /// offsets.topic.num.partitions, offsets.topic.segment.bytes, offsets.retention.minutes,
    /// offsets.retention.check.interval.ms, offset.metadata.max.bytes.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn build_config(args: &ServeArgs) -> anyhow::Result<BrokerConfig> {
    let mut c = BrokerConfig::default();
    if let Some(path) = &args.config {
        c.load_file(path)?;
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set takes KEY=VALUE, not {kv:?}"))?;
        c.set(k.trim(), v.trim())?;
    }
    if let Some(l) = args.listen {
        // `--listen` moves the first listener (keeping its name and protocol).
        c.listen = l;
        if let Some(first) = c.security.listeners.first_mut() {
            first.host = l.ip().to_string();
            first.port = l.port();
        }
        if !c.explicit.contains_key("advertised.listeners") {
            c.advertised_host = l.ip().to_string();
            c.advertised_port = l.port();
        }
    }
    c.security.validate().map_err(anyhow::Error::msg)?;
    if let Some(d) = &args.data_dir {
        c.data_dir = d.clone();
    }
    match args.admin_listen.as_deref() {
        None => {}
        Some("off") => c.admin_listen = None,
        Some(a) => {
            c.admin_listen = Some(
                a.parse()
                    .with_context(|| format!("--admin-listen: bad address {a:?}"))?,
            )
        }
    }
    Ok(c)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = build_config(&args)?;
    // Every partition keeps a segment file and two index files open per segment, as Kafka
    // does; raise the soft open-files limit to the hard limit so thousands of partitions open.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(nofile = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    // Every listener is bound before the broker opens, so a port conflict fails fast.
    let listeners = bind_listeners(&config).await?;
    let bound = listeners
        .first()
        .map(|(_, i, _)| i.bound)
        .context("no listener")?;
    if let Some((_, first, _)) = listeners.first() {
        config.advertised_host = first.advertised_host.clone();
        config.advertised_port = first.advertised_port;
    }
    if let Some(a) = config.admin_listen {
        if !a.ip().is_loopback() && config.security.admin_token.is_none() {
            anyhow::bail!(
                "the admin listener {a} is not on loopback: set admin.token (clients send it as \
                 `Authorization: Bearer`, `sluice transform --admin-token`), or bind it to 127.0.0.1"
            );
        }
    }
    let admin_listener = match config.admin_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on admin address {a}"))?,
        ),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let broker = tokio::task::block_in_place(|| Broker::open(config))?;
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(l) = admin_listener {
        tasks.spawn(admin::run(Arc::clone(&broker), l, shutdown.clone()));
    }
    tasks.spawn(background::run(Arc::clone(&broker), shutdown.clone()));
    if let Some(txns) = broker.txns() {
        // Completes what a crash left unfinished, then aborts timed-out transactions.
        let txns = Arc::clone(txns);
        tasks.spawn(async move { txns.start().await });
    }
    // Stored transforms resume once the coordinators are up.
    broker.start_transforms(shutdown.clone()).await;
    let limits = server::ConnectionLimits::new(&broker);
    let mut kafka = tokio::task::JoinSet::new();
    let mut described = Vec::new();
    for (l, info, tls) in listeners {
        described.push(format!("{}://{}", info.name, info.bound));
        kafka.spawn(server::run(
            Arc::clone(&broker),
            l,
            Arc::new(info),
            tls,
            Arc::clone(&limits),
            shutdown.clone(),
        ));
    }
    tracing::info!(
        kafka = %bound,
        listeners = %described.join(","),
        admin = %admin_addr.map_or("off".to_string(), |a| a.to_string()),
        data_dir = %broker.config.data_dir.display(),
        topics = broker.topics().len(),
        "sluice ready"
    );
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    shutdown.cancel();
    while kafka.join_next().await.is_some() {}
    while tasks.join_next().await.is_some() {}
    if let Some(t) = broker.transforms() {
        // Their reads must end before the logs close.
        t.wait_stopped().await;
    }
    broker.shutdown().await;
    tracing::info!("clean shutdown complete");
    Ok(())
}

/// A bound Kafka listener: its socket, what it advertises, and its TLS acceptor.
type BoundListener = (
    tokio::net::TcpListener,
    server::ListenerInfo,
    Option<tokio_rustls::TlsAcceptor>,
);

/// Binds every configured Kafka listener, with the address it advertises: the configured
/// `advertised.listeners` entry, else the bound address (127.0.0.1 for a wildcard bind).
async fn bind_listeners(config: &BrokerConfig) -> anyhow::Result<Vec<BoundListener>> {
    let mut listeners: Vec<BoundListener> = Vec::new();
    for spec in config.security.listeners.clone() {
        let protocol = config
            .security
            .protocol_of(&spec.name)
            .map_err(anyhow::Error::msg)?;
        let host = if spec.host.is_empty() {
            "0.0.0.0"
        } else {
            spec.host.as_str()
        };
        let addr = format!("{host}:{}", spec.port);
        let l = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => tokio::net::TcpListener::bind(SocketAddr::new(ip, spec.port)).await,
            Err(_) => tokio::net::TcpListener::bind(addr.as_str()).await,
        }
        .with_context(|| format!("cannot listen on {} ({addr})", spec.name))?;
        let bound = l.local_addr()?;
        let advertised = config
            .security
            .advertised
            .iter()
            .find(|a| a.name == spec.name);
        let (advertised_host, advertised_port) = match advertised {
            Some(a) => (a.host.clone(), a.port),
            None if listeners.is_empty()
                && config.explicit.contains_key("advertised.listeners") =>
            {
                (config.advertised_host.clone(), config.advertised_port)
            }
            None => {
                let host = if bound.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    bound.ip().to_string()
                };
                (host, bound.port())
            }
        };
        let tls = if protocol.tls() {
            Some(
                sluice_broker::security::tls::acceptor(&config.security.ssl)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("listener {}", spec.name))?,
            )
        } else {
            None
        };
        let info = server::ListenerInfo {
            name: spec.name.clone(),
            protocol,
            bound,
            advertised_host,
            advertised_port,
        };
        listeners.push((l, info, tls));
    }
    Ok(listeners)
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => serve(ServeArgs::default()).await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::User(cmd)) => user(cmd).await,
            Some(Command::Client(cmd)) => sluice_cli::run(cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
