//! `sluice-cli`: the client subcommands of the `sluice` binary, on the `sluice-clients`
//! library: `topic`, `produce`, `consume`, `bench`,
//! `group`, `txn`, `transform`, `acl` and `quota`; [`user`] holds the online SCRAM user commands
//! (`create`, `delete`, `list`) the binary's `user` subcommand calls.
//!
//! Mount [`Command`] in a clap parser (`#[command(flatten)]` or as a variant's subcommand) and
//! hand the parsed value to [`run`].

use std::time::Duration;

use clap::{Args, Subcommand};

use sluice_clients::{Client, ClientConfig, ConnectionConfig};

pub mod acl;
pub mod args;
pub mod baseline;
pub mod bench;
pub mod consume;
pub mod group;
mod latency;
pub mod produce;
mod progress;
pub mod quota;
pub mod template;
pub mod topic;
pub mod transform;
pub mod txn;
pub mod user;

pub use acl::AclCommand;
pub use bench::BenchCommand;
pub use consume::ConsumeArgs;
pub use group::GroupCommand;
pub use produce::ProduceArgs;
pub use quota::QuotaCommand;
pub use topic::TopicCommand;
pub use transform::TransformCommand;
pub use txn::TxnCommand;

/// Client commands: topic administration, producing, consuming and load generation against
/// any Kafka-compatible broker.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe, delete topics and change their configuration.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce records read one per line from a file or stdin.
    ///
    /// Each line (without its line ending) becomes one record's value. With --key-separator
    /// the text before the first separator is the key. Records with a key go to the partition
    /// Kafka's Java client would choose (murmur2 of the key); records without one are spread
    /// round-robin, unless --partition pins them all. A progress bar appears on stderr when
    /// it is a terminal and the input passes 1 MiB.
    Produce(ProduceArgs),
    /// Print records of a topic, one per line.
    ///
    /// Reads every partition (or just --partition) from --from, printing each record with
    /// --format or as JSON. Keeps following new records until --count records were printed,
    /// or, with --exit, until it reaches the end offsets seen at start. Stop with Ctrl-C. A
    /// progress bar appears on stderr when it is a terminal, stdout is not, and at least
    /// 10,000 records are expected (with --exit or --count).
    Consume(ConsumeArgs),
    /// Load generators: produce or consume as fast as possible and report throughput and
    /// produce latency.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Consumer groups: list, describe (members, committed offsets, lag), delete, and reset
    /// committed offsets.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Transactions: list transactional ids and describe one (state, producer, partitions).
    #[command(subcommand)]
    Txn(TxnCommand),
    /// In-broker transforms (through the broker's admin HTTP API): deploy a YAML spec, list,
    /// describe, pause, resume, delete.
    #[command(subcommand)]
    Transform(TransformCommand),
    /// ACLs (the broker's authorizer must be enabled): list, add, remove, as Kafka's
    /// `kafka-acls.sh`.
    #[command(subcommand)]
    Acl(AclCommand),
    /// Client quotas (byte rates of users and client ids): list, set, remove, as Kafka's
    /// `kafka-configs.sh --entity-type users|clients`.
    #[command(subcommand)]
    Quota(QuotaCommand),
}

/// Where and how to connect; every subcommand takes these.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Brokers to bootstrap from: host:port, comma-separated.
    #[arg(
        long,
        short = 'b',
        value_name = "HOST:PORT[,HOST:PORT]",
        default_value = "127.0.0.1:9092",
        env = "SLUICE_BOOTSTRAP"
    )]
    pub bootstrap: String,
    /// How long to wait for each broker response, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
}

impl ConnectionArgs {
    /// Connects a [`Client`] with these settings.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let config = ClientConfig {
            connection: ConnectionConfig {
                client_id: "sluice-cli".to_string(),
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                ..ConnectionConfig::default()
            },
        };
        Ok(Client::connect(&self.bootstrap, config).await?)
    }
}

/// Runs one client command to completion.
pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Topic(cmd) => topic::run(cmd).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Group(cmd) => group::run(cmd).await,
        Command::Txn(cmd) => txn::run(cmd).await,
        Command::Transform(cmd) => transform::run(cmd).await,
        Command::Acl(cmd) => acl::run(cmd).await,
        Command::Quota(cmd) => quota::run(cmd).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    #[command(name = "sluice")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn the_command_tree_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_leaf_takes_bootstrap() -> Result<(), clap::Error> {
        for args in [
            &["topic", "create", "t"][..],
            &["topic", "list"],
            &["topic", "describe", "t"],
            &["topic", "delete", "t"],
            &["topic", "alter-config", "t", "--set", "a=b"],
            &["produce", "t"],
            &["consume", "t"],
            &["bench", "produce", "--topic", "t"],
            &["bench", "consume", "--topic", "t"],
            &["group", "list"],
            &["group", "describe", "g"],
            &["group", "delete", "g"],
            &["txn", "list"],
            &["txn", "describe", "x"],
            &["acl", "list"],
            &[
                "acl",
                "add",
                "--allow",
                "--principal",
                "User:a",
                "--operation",
                "read",
                "--topic",
                "t",
            ],
            &["acl", "remove", "--cluster"],
            &["quota", "list"],
            &[
                "quota",
                "set",
                "--user",
                "a",
                "--producer-byte-rate",
                "1024",
            ],
            &["quota", "remove", "--client-id", "c"],
            &[
                "group",
                "reset-offsets",
                "g",
                "--all-topics",
                "--to-earliest",
            ],
        ] {
            let mut with = args.to_vec();
            with.extend(["--bootstrap", "h:1"]);
            parse(&with)?;
        }
        Ok(())
    }

    #[test]
    fn bad_values_are_clear_errors() {
        for args in [
            &["produce", "t", "--acks", "2"][..],
            &["produce", "t", "--compression", "brotli"],
            &["produce", "t", "--header", "novalue"],
            &["produce", "t", "--batch-size", "0"],
            &["consume", "t", "--from", "yesterday"],
            &["consume", "t", "--from", "@-5"],
            &["consume", "t", "--format", "%x"],
            &["consume", "t", "--json", "--format", "%v"],
            &["topic", "create", "t", "--partitions", "0"],
            &["topic", "create", "t", "--config", "=v"],
            &["topic", "alter-config", "t"],
            &["group", "reset-offsets", "g", "--all-topics"],
            &["group", "reset-offsets", "g", "--to-latest"],
            &[
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-latest",
                "--to-earliest",
            ],
            &[
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-datetime",
                "yesterday",
            ],
            &["group", "delete"],
        ] {
            let error = parse(args).err().map(|e| e.kind());
            assert!(error.is_some(), "{args:?} should be refused");
        }
    }
}
