//! `topic create | list | describe | delete | alter-config`.

use clap::{Args, Subcommand};

use super::args::key_value;
use super::ConnectionArgs;
use sluice_clients::TopicDescription;

/// Topic administration.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names, one per line.
    List(ListArgs),
    /// Show a topic's partitions (leader, replicas, in-sync replicas, log start and end
    /// offsets) and its configs.
    Describe(DescribeArgs),
    /// Delete a topic and all its data.
    Delete(DeleteArgs),
    /// Set or remove topic configs (IncrementalAlterConfigs).
    ///
    /// Removed configs fall back to the broker's value or the built-in default.
    AlterConfig(AlterConfigArgs),
}

/// `topic create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the topic.
    pub name: String,
    /// Number of partitions [default: the broker's num.partitions].
    #[arg(long, short = 'p', value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: Option<i32>,
    /// Copies of each partition [default: the broker's default.replication.factor].
    #[arg(long, short = 'r', value_name = "N", value_parser = clap::value_parser!(i16).range(1..))]
    pub replication_factor: Option<i16>,
    /// A topic config, e.g. --config retention.ms=86400000; repeat for more.
    #[arg(long, short = 'c', value_name = "KEY=VALUE", value_parser = key_value)]
    pub config: Vec<(String, String)>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `topic list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also list internal topics such as __consumer_offsets.
    #[arg(long)]
    pub internal: bool,
    /// Print a JSON array of {"name", "partitions", "internal"} objects instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `topic describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Name of the topic.
    pub name: String,
    /// Show every config, not only those set on the topic or broker.
    #[arg(long)]
    pub all_configs: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `topic delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Name of the topic.
    pub name: String,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `topic alter-config`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("changes").required(true).multiple(true).args(["set", "delete"]))]
pub struct AlterConfigArgs {
    /// Name of the topic.
    pub name: String,
    /// Set a config, e.g. --set retention.ms=3600000; repeat for more.
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    pub set: Vec<(String, String)>,
    /// Remove a config set on the topic; repeat for more.
    #[arg(long, value_name = "KEY")]
    pub delete: Vec<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

pub(super) async fn run(cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create(args) => {
            let client = args.connection.connect().await?;
            client
                .create_topic(
                    &args.name,
                    args.partitions.unwrap_or(-1),
                    args.replication_factor.unwrap_or(-1),
                    &args.config,
                )
                .await?;
            eprintln!("Created topic {}.", args.name);
        }
        TopicCommand::List(args) => {
            let client = args.connection.connect().await?;
            let topics = client.list_topics().await?;
            let shown = topics.values().filter(|t| args.internal || !t.is_internal);
            if args.json {
                let list: Vec<_> = shown
                    .map(|t| serde_json::json!({"name": t.name, "partitions": t.partitions.len(), "internal": t.is_internal}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for t in shown {
                    println!("{}", t.name);
                }
            }
        }
        TopicCommand::Describe(args) => {
            let client = args.connection.connect().await?;
            let description = client.describe_topic(&args.name).await?;
            if args.json {
                println!("{}", describe_json(&description, args.all_configs));
            } else {
                print!("{}", describe_text(&description, args.all_configs));
            }
        }
        TopicCommand::Delete(args) => {
            let client = args.connection.connect().await?;
            client.delete_topic(&args.name).await?;
            eprintln!("Deleted topic {}.", args.name);
        }
        TopicCommand::AlterConfig(args) => {
            let client = args.connection.connect().await?;
            client
                .alter_topic_config(&args.name, &args.set, &args.delete)
                .await?;
            eprintln!("Updated configs of topic {}.", args.name);
        }
    }
    Ok(())
}

fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn offset(o: Option<i64>) -> String {
    o.map_or_else(|| "-".to_string(), |o| o.to_string())
}

fn describe_text(d: &TopicDescription, all_configs: bool) -> String {
    let replication = d
        .partitions
        .first()
        .map_or(0, |p| p.metadata.replicas.len());
    let mut out = format!(
        "Topic: {}\tTopicId: {}\tPartitions: {}\tReplicationFactor: {}{}\n",
        d.name,
        d.topic_id,
        d.partitions.len(),
        replication,
        if d.is_internal {
            "\tInternal: true"
        } else {
            ""
        }
    );
    let configs: Vec<_> = d
        .configs
        .iter()
        .filter(|c| all_configs || !c.is_default())
        .collect();
    if configs.is_empty() {
        out.push_str("Configs: (none set)\n");
    } else {
        out.push_str("Configs:\n");
        for c in configs {
            let value = if c.is_sensitive {
                "(sensitive)"
            } else {
                c.value.as_deref().unwrap_or("(null)")
            };
            out.push_str(&format!(
                "  {}={}\t[{}{}]\n",
                c.name,
                value,
                c.source,
                if c.read_only { ", read-only" } else { "" }
            ));
        }
    }
    out.push_str("Partition\tLeader\tReplicas\tIsr\tLogStartOffset\tLogEndOffset\n");
    for p in &d.partitions {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            p.metadata.partition,
            if p.metadata.leader < 0 {
                "none".to_string()
            } else {
                p.metadata.leader.to_string()
            },
            ids(&p.metadata.replicas),
            ids(&p.metadata.isr),
            offset(p.log_start_offset),
            offset(p.log_end_offset),
        ));
    }
    out
}

fn describe_json(d: &TopicDescription, all_configs: bool) -> serde_json::Value {
    let configs: serde_json::Map<String, serde_json::Value> = d
        .configs
        .iter()
        .filter(|c| all_configs || !c.is_default())
        .map(|c| {
            let entry = serde_json::json!({
                "value": c.value, "source": c.source, "read_only": c.read_only, "sensitive": c.is_sensitive,
            });
            (c.name.clone(), entry)
        })
        .collect();
    let partitions: Vec<_> = d
        .partitions
        .iter()
        .map(|p| {
            serde_json::json!({
                "partition": p.metadata.partition,
                "leader": p.metadata.leader,
                "leader_epoch": p.metadata.leader_epoch,
                "replicas": p.metadata.replicas,
                "isr": p.metadata.isr,
                "offline_replicas": p.metadata.offline_replicas,
                "log_start_offset": p.log_start_offset,
                "log_end_offset": p.log_end_offset,
            })
        })
        .collect();
    serde_json::json!({
        "name": d.name,
        "topic_id": d.topic_id,
        "internal": d.is_internal,
        "partitions": partitions,
        "configs": configs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_clients::{ConfigEntry, PartitionDescription, PartitionMetadata};

    fn description() -> TopicDescription {
        TopicDescription {
            name: "orders".into(),
            topic_id: "00000000-0000-0000-0000-000000000001".into(),
            is_internal: false,
            partitions: vec![PartitionDescription {
                metadata: PartitionMetadata {
                    partition: 0,
                    leader: 1,
                    leader_epoch: 0,
                    replicas: vec![1, 2],
                    isr: vec![1],
                    offline_replicas: vec![],
                    error_code: 0,
                },
                log_start_offset: Some(0),
                log_end_offset: None,
            }],
            configs: vec![
                ConfigEntry {
                    name: "cleanup.policy".into(),
                    value: Some("delete".into()),
                    source: "DEFAULT_CONFIG".into(),
                    read_only: false,
                    is_sensitive: false,
                },
                ConfigEntry {
                    name: "retention.ms".into(),
                    value: Some("1000".into()),
                    source: "DYNAMIC_TOPIC_CONFIG".into(),
                    read_only: false,
                    is_sensitive: false,
                },
            ],
        }
    }

    #[test]
    fn text_shows_set_configs_and_offsets() {
        let text = describe_text(&description(), false);
        assert!(text.starts_with("Topic: orders\tTopicId: 00000000-0000-0000-0000-000000000001\tPartitions: 1\tReplicationFactor: 2\n"));
        assert!(text.contains("  retention.ms=1000\t[DYNAMIC_TOPIC_CONFIG]\n"));
        assert!(!text.contains("cleanup.policy"));
        assert!(text.ends_with("0\t1\t1,2\t1\t0\t-\n"), "{text}");
        assert!(describe_text(&description(), true).contains("cleanup.policy=delete"));
    }

    #[test]
    fn json_is_complete() {
        let json = describe_json(&description(), true);
        assert_eq!(json["partitions"][0]["replicas"], serde_json::json!([1, 2]));
        assert_eq!(
            json["partitions"][0]["log_end_offset"],
            serde_json::Value::Null
        );
        assert_eq!(json["configs"]["retention.ms"]["value"], "1000");
        assert_eq!(
            json["configs"]["cleanup.policy"]["source"],
            "DEFAULT_CONFIG"
        );
    }
}
