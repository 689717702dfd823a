use clap::Parser;
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: sluice_clients::cli::Command,
}
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_clients::cli::run(Cli::parse().command).await
}
