//! `txn list | describe`, after Kafka's `kafka-transactions.sh`.

use clap::{Args, Subcommand};

use super::ConnectionArgs;

/// Transaction administration.
#[derive(Debug, Subcommand)]
pub enum TxnCommand {
    /// List transactional ids with their producer id and state.
    List(TxnListArgs),
    /// Show a transactional id's state, producer id and epoch, timeout, and the partitions of
    /// its ongoing transaction.
    Describe(TxnDescribeArgs),
}

/// `txn list`.
#[derive(Debug, Args)]
pub struct TxnListArgs {
    /// Only transactions in this state (Empty, Ongoing, PrepareCommit, PrepareAbort,
    /// CompleteCommit, CompleteAbort); repeat for several.
    #[arg(long, value_name = "STATE")]
    pub state: Vec<String>,
    /// Print a JSON array of {"transactional_id", "producer_id", "state"} objects instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `txn describe`.
#[derive(Debug, Args)]
pub struct TxnDescribeArgs {
    /// The transactional id.
    pub transactional_id: String,
    /// Print one JSON object instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

pub async fn run(cmd: TxnCommand) -> anyhow::Result<()> {
    match cmd {
        TxnCommand::List(args) => {
            let client = args.connection.connect().await?;
            let listed = client.list_transactions(&args.state).await?;
            if args.json {
                let v: Vec<_> = listed
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "transactional_id": t.transactional_id,
                            "producer_id": t.producer_id,
                            "state": t.state,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
                return Ok(());
            }
            let width = listed
                .iter()
                .map(|t| t.transactional_id.len())
                .max()
                .unwrap_or(0)
                .max("TRANSACTIONAL_ID".len());
            println!(
                "{:width$}  {:>12}  STATE",
                "TRANSACTIONAL_ID", "PRODUCER_ID"
            );
            for t in listed {
                println!(
                    "{:width$}  {:>12}  {}",
                    t.transactional_id, t.producer_id, t.state
                );
            }
            Ok(())
        }
        TxnCommand::Describe(args) => {
            let client = args.connection.connect().await?;
            let d = client.describe_transaction(&args.transactional_id).await?;
            let partitions: Vec<String> = d
                .partitions
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect();
            if args.json {
                let v = serde_json::json!({
                    "transactional_id": d.transactional_id,
                    "coordinator": d.coordinator,
                    "state": d.state,
                    "producer_id": d.producer_id,
                    "producer_epoch": d.producer_epoch,
                    "timeout_ms": d.timeout_ms,
                    "start_time_ms": d.start_time_ms,
                    "partitions": partitions,
                });
                println!("{v}");
                return Ok(());
            }
            println!("transactional_id: {}", d.transactional_id);
            println!("coordinator: {}", d.coordinator);
            println!("state: {}", d.state);
            println!("producer_id: {}", d.producer_id);
            println!("producer_epoch: {}", d.producer_epoch);
            println!("timeout_ms: {}", d.timeout_ms);
            println!("start_time_ms: {}", d.start_time_ms);
            println!("partitions: {}", partitions.join(","));
            Ok(())
        }
    }
}
