//! `transform deploy | list | describe | pause | resume | delete`: the broker's transforms
//! through its admin HTTP API (`--admin`, default `http://127.0.0.1:9644`).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};

/// Where the broker's admin API listens.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The broker's admin HTTP address.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9644",
        env = "SLUICE_ADMIN"
    )]
    pub admin: String,
    /// The admin API's bearer token (`admin.token`; required when the broker's admin
    /// listener is not on loopback).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

/// In-broker transforms.
#[derive(Debug, Subcommand)]
pub enum TransformCommand {
    /// Validate and install a transform from its YAML spec; it starts at once.
    Deploy {
        /// The spec file (`-` for stdin).
        file: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List transforms with their state, lag and throughput counters.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a transform: state, per-task lag, records in/out, state size, last commit.
    Describe {
        name: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop a transform's tasks; `resume` starts them from the last commit.
    Pause {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Start a paused transform.
    Resume {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop and remove a transform (its topics stay).
    Delete {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// One HTTP call; the broker's JSON answer, or its `error` as the failure.
async fn call(
    token: &Option<String>,
    method: &'static str,
    url: String,
    body: Option<String>,
) -> anyhow::Result<Option<serde_json::Value>> {
    let token = token.clone();
    tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let mut req = agent.request(method, &url);
        if let Some(t) = &token {
            req = req.set("authorization", &format!("Bearer {t}"));
        }
        let result = match body {
            Some(b) => req.set("content-type", "application/yaml").send_string(&b),
            None => req.call(),
        };
        match result {
            Ok(r) if r.status() == 204 => Ok(None),
            Ok(r) => {
                let text = r.into_string().context("reading the answer")?;
                Ok(Some(
                    serde_json::from_str(&text).context("the answer is not JSON")?,
                ))
            }
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or(text);
                bail!("{msg} (HTTP {code})")
            }
            Err(e) => Err(anyhow!("cannot reach the admin API at {url}: {e}")),
        }
    })
    .await?
}

fn base(admin: &AdminArgs) -> String {
    format!("{}/v1/transforms", admin.admin.trim_end_matches('/'))
}

fn field<'a>(v: &'a serde_json::Value, k: &str) -> &'a serde_json::Value {
    v.get(k).unwrap_or(&serde_json::Value::Null)
}

fn print_describe(v: &serde_json::Value) {
    for k in [
        "name",
        "state",
        "input",
        "outputs",
        "stages",
        "records_in",
        "records_out",
        "lag",
        "state_entries",
        "commits",
        "last_commit_ms",
    ] {
        println!("{k}: {}", field(v, k));
    }
    println!("tasks:");
    println!(
        "  STAGE  PARTITION  INPUT  COMMITTED  LAG  IN  OUT  STATE  RESTORED  REPLAYED  RESTARTS  ERROR"
    );
    for t in field(v, "tasks").as_array().into_iter().flatten() {
        println!(
            "  {}  {}  {}  {}  {}  {}  {}  {}  {}  {}  {}  {}",
            field(t, "stage"),
            field(t, "partition"),
            field(t, "input_topic").as_str().unwrap_or(""),
            field(t, "committed_offset"),
            field(t, "lag"),
            field(t, "records_in"),
            field(t, "records_out"),
            field(t, "state_entries"),
            field(t, "restored_entries"),
            field(t, "replayed_records"),
            field(t, "restarts"),
            field(t, "error").as_str().unwrap_or("-"),
        );
    }
}

pub async fn run(cmd: TransformCommand) -> anyhow::Result<()> {
    match cmd {
        TransformCommand::Deploy { file, admin } => {
            let yaml = if file == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the spec from stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let v = call(&admin.admin_token, "POST", base(&admin), Some(yaml)).await?;
            if let Some(v) = v {
                println!("deployed {}", field(&v, "name").as_str().unwrap_or("?"));
            }
        }
        TransformCommand::List { json, admin } => {
            let v = call(&admin.admin_token, "GET", base(&admin), None)
                .await?
                .unwrap_or_default();
            if json {
                println!("{v}");
                return Ok(());
            }
            println!("NAME  STATE  INPUT  OUTPUTS  LAG  RECORDS_IN  RECORDS_OUT");
            for t in v.as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {}  {}  {}  {}  {}",
                    field(t, "name").as_str().unwrap_or(""),
                    field(t, "state").as_str().unwrap_or(""),
                    field(t, "input").as_str().unwrap_or(""),
                    field(t, "outputs"),
                    field(t, "lag"),
                    field(t, "records_in"),
                    field(t, "records_out"),
                );
            }
        }
        TransformCommand::Describe { name, json, admin } => {
            let v = call(
                &admin.admin_token,
                "GET",
                format!("{}/{name}", base(&admin)),
                None,
            )
            .await?
            .unwrap_or_default();
            if json {
                println!("{v}");
            } else {
                print_describe(&v);
            }
        }
        TransformCommand::Pause { name, admin } => {
            call(
                &admin.admin_token,
                "POST",
                format!("{}/{name}/pause", base(&admin)),
                Some(String::new()),
            )
            .await?;
            println!("paused {name}");
        }
        TransformCommand::Resume { name, admin } => {
            call(
                &admin.admin_token,
                "POST",
                format!("{}/{name}/resume", base(&admin)),
                Some(String::new()),
            )
            .await?;
            println!("resumed {name}");
        }
        TransformCommand::Delete { name, admin } => {
            call(
                &admin.admin_token,
                "DELETE",
                format!("{}/{name}", base(&admin)),
                None,
            )
            .await?;
            println!("deleted {name}");
        }
    }
    Ok(())
}
