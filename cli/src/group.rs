//! `group list | describe | delete | reset-offsets`, after Kafka's `kafka-consumer-groups.sh`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use clap::{ArgGroup, Args, Subcommand};

use super::ConnectionArgs;
use sluice_clients::{Client, GroupDescription, OffsetSpec};

/// Consumer group administration.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups with their state.
    List(ListArgs),
    /// Show a group's state and members, and per partition its committed offset, the log end
    /// offset and the lag.
    Describe(DescribeArgs),
    /// Delete groups and their committed offsets; a group with members is refused.
    Delete(DeleteArgs),
    /// Set a group's committed offsets; refused while the group has members.
    ///
    /// Without --execute, only prints the offsets it would set (a dry run), as Kafka's tool.
    ResetOffsets(ResetArgs),
}

/// `group list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only groups in this state (Empty, PreparingRebalance, CompletingRebalance, Stable);
    /// repeat for several.
    #[arg(long, value_name = "STATE")]
    pub state: Vec<String>,
    /// Print a JSON array of {"group", "protocol_type", "state"} objects instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `group describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The group id.
    pub group: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `group delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The group ids.
    #[arg(required = true)]
    pub groups: Vec<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `group reset-offsets`.
#[derive(Debug, Args)]
#[command(group = ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"]))]
#[command(group = ArgGroup::new("scope").required(true).args(["topic", "all_topics"]))]
pub struct ResetArgs {
    /// The group id.
    pub group: String,
    /// A topic, or TOPIC:P,P,... for some of its partitions; repeat for several.
    #[arg(long, value_name = "TOPIC[:PARTITIONS]")]
    pub topic: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// The log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// The log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// This offset (kept within the log start and end offsets).
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// The first offset at or after this time: `YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]` (UTC
    /// when no zone is given), or `@MS` since the epoch.
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime)]
    pub to_datetime: Option<i64>,
    /// The committed offset plus N (N may be negative), kept within the log.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// Commit the new offsets (without it, a dry run).
    #[arg(long)]
    pub execute: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS[.sss][Z|±HH:MM]` (UTC without a zone) or `@MS`, to ms since the epoch.
pub fn parse_datetime(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM] or @MS");
    if let Some(ms) = s.strip_prefix('@') {
        return ms.parse::<i64>().ok().filter(|m| *m >= 0).ok_or_else(bad);
    }
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    let num = |v: &str| v.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d.as_slice() else {
        return Err(bad());
    };
    let (y, mo, da) = (num(y)?, num(mo)?, num(da)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return Err(bad());
    }
    let (clock, offset_min) = if let Some(t) = time.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (t, zone) = time.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
        (t, sign * (num(zh)? * 60 + num(zm)?))
    } else {
        (time, 0)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let t: Vec<&str> = hms.split(':').collect();
    let [h, mi, sec] = t.as_slice() else {
        return Err(bad());
    };
    let (h, mi, sec) = (num(h)?, num(mi)?, num(sec)?);
    if h > 23 || mi > 59 || sec > 60 || frac.is_empty() || frac.len() > 3 {
        return Err(bad());
    }
    let millis = num(frac)? * 10i64.pow(3 - frac.len() as u32);
    let days = days_from_civil(y, mo, da);
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + millis)
}

/// One row of `describe`: a partition the group has an offset for or is assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end: Option<i64>,
    member: Option<(String, String, String)>,
}

impl PartitionRow {
    fn lag(&self) -> Option<i64> {
        Some((self.log_end? - self.committed?).max(0))
    }
}

async fn partition_rows(
    client: &Client,
    d: &GroupDescription,
) -> anyhow::Result<Vec<PartitionRow>> {
    let committed = client.committed_offsets(&d.group_id).await?;
    let mut rows: BTreeMap<(String, i32), PartitionRow> = BTreeMap::new();
    for ((topic, partition), offset) in &committed {
        rows.insert(
            (topic.clone(), *partition),
            PartitionRow {
                topic: topic.clone(),
                partition: *partition,
                committed: Some(*offset),
                log_end: None,
                member: None,
            },
        );
    }
    for m in &d.members {
        for (topic, partitions) in &m.assignment {
            for p in partitions {
                let row = rows
                    .entry((topic.clone(), *p))
                    .or_insert_with(|| PartitionRow {
                        topic: topic.clone(),
                        partition: *p,
                        committed: None,
                        log_end: None,
                        member: None,
                    });
                row.member = Some((
                    m.member_id.clone(),
                    m.client_host.clone(),
                    m.client_id.clone(),
                ));
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in rows.keys() {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    for (topic, partitions) in by_topic {
        // A deleted topic has no end offsets; its rows keep "-".
        if let Ok(ends) = client
            .list_offsets_many(&topic, &partitions, OffsetSpec::Latest)
            .await
        {
            for (p, end) in ends {
                if let Some(row) = rows.get_mut(&(topic.clone(), p)) {
                    row.log_end = end;
                }
            }
        }
    }
    Ok(rows.into_values().collect())
}

fn opt(v: Option<i64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

fn describe_text(d: &GroupDescription, rows: &[PartitionRow]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let protocol = if d.protocol.is_empty() {
        String::new()
    } else {
        format!(", assignor {}", d.protocol)
    };
    let _ = writeln!(
        out,
        "Group {} is {} ({} members{protocol}), coordinator {}.",
        d.group_id,
        d.state,
        d.members.len(),
        d.coordinator
    );
    if !d.members.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<50} {:<20} {:<18} {:<20} PARTITIONS",
            "MEMBER-ID", "INSTANCE-ID", "HOST", "CLIENT-ID"
        );
        for m in &d.members {
            let parts: Vec<String> = m
                .assignment
                .iter()
                .map(|(t, ps)| {
                    let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
                    format!("{t}:{}", ps.join(","))
                })
                .collect();
            let _ = writeln!(
                out,
                "{:<50} {:<20} {:<18} {:<20} {}",
                m.member_id,
                m.group_instance_id.as_deref().unwrap_or("-"),
                m.client_host,
                m.client_id,
                if parts.is_empty() {
                    "-".to_string()
                } else {
                    parts.join(" ")
                }
            );
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<30} {:>9} {:>14} {:>14} {:>8}  CONSUMER-ID",
            "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
        );
        for r in rows {
            let _ = writeln!(
                out,
                "{:<30} {:>9} {:>14} {:>14} {:>8}  {}",
                r.topic,
                r.partition,
                opt(r.committed),
                opt(r.log_end),
                opt(r.lag()),
                r.member.as_ref().map_or("-", |(m, _, _)| m.as_str())
            );
        }
    }
    out
}

fn describe_json(d: &GroupDescription, rows: &[PartitionRow]) -> serde_json::Value {
    serde_json::json!({
        "group": d.group_id,
        "state": d.state,
        "protocol_type": d.protocol_type,
        "protocol": d.protocol,
        "coordinator": d.coordinator,
        "members": d.members.iter().map(|m| serde_json::json!({
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "client_id": m.client_id,
            "client_host": m.client_host,
            "assignment": m.assignment,
        })).collect::<Vec<_>>(),
        "partitions": rows.iter().map(|r| serde_json::json!({
            "topic": r.topic,
            "partition": r.partition,
            "committed_offset": r.committed,
            "log_end_offset": r.log_end,
            "lag": r.lag(),
            "member_id": r.member.as_ref().map(|(m, _, _)| m.clone()),
        })).collect::<Vec<_>>(),
    })
}

/// The partitions a reset applies to.
async fn reset_scope(
    client: &Client,
    args: &ResetArgs,
    committed: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<BTreeMap<String, Vec<i32>>> {
    let mut scope: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if args.all_topics {
        for (t, p) in committed.keys() {
            scope.entry(t.clone()).or_default().push(*p);
        }
        return Ok(scope);
    }
    for spec in &args.topic {
        let (topic, parts) = match spec.split_once(':') {
            Some((t, ps)) => {
                let parts = ps
                    .split(',')
                    .map(|p| {
                        p.trim()
                            .parse::<i32>()
                            .map_err(|_| anyhow!("{spec:?}: {p:?} is not a partition"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                (t.to_string(), parts)
            }
            None => {
                let count = client.partition_count(spec).await? as i32;
                (spec.clone(), (0..count).collect())
            }
        };
        scope.entry(topic).or_default().extend(parts);
    }
    Ok(scope)
}

async fn reset_offsets(args: ResetArgs) -> anyhow::Result<()> {
    let client = args.connection.connect().await?;
    let d = client.describe_group(&args.group).await?;
    if d.is_active() {
        bail!(
            "Assignments can only be reset if the group '{}' is inactive, but the current state is {}.",
            args.group,
            d.state
        );
    }
    let committed = client.committed_offsets(&args.group).await?;
    let scope = reset_scope(&client, &args, &committed).await?;
    if scope.is_empty() {
        bail!(
            "no partitions to reset: the group has no committed offsets and no --topic was given"
        );
    }
    let mut plan: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, partitions) in &scope {
        let earliest = client
            .list_offsets_many(topic, partitions, OffsetSpec::Earliest)
            .await?;
        let latest = client
            .list_offsets_many(topic, partitions, OffsetSpec::Latest)
            .await?;
        let at_time = match args.to_datetime {
            Some(ms) => Some(
                client
                    .list_offsets_many(topic, partitions, OffsetSpec::Timestamp(ms))
                    .await?,
            ),
            None => None,
        };
        for p in partitions {
            let lo = earliest.get(p).copied().flatten().unwrap_or(0);
            let hi = latest.get(p).copied().flatten().unwrap_or(lo);
            let target = if args.to_earliest {
                lo
            } else if args.to_latest {
                hi
            } else if let Some(o) = args.to_offset {
                o
            } else if let Some(found) = &at_time {
                found.get(p).copied().flatten().unwrap_or(hi)
            } else if let Some(n) = args.shift_by {
                let current = committed.get(&(topic.clone(), *p)).copied().ok_or_else(|| {
                    anyhow!("cannot shift the offset of {topic}-{p}: the group has no committed offset there")
                })?;
                current.saturating_add(n)
            } else {
                bail!("no reset target given");
            };
            plan.insert((topic.clone(), *p), target.clamp(lo, hi));
        }
    }
    println!(
        "{:<30} {:<30} {:>9} {:>12}",
        "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
    );
    for ((topic, partition), offset) in &plan {
        println!(
            "{:<30} {:<30} {:>9} {:>12}",
            args.group, topic, partition, offset
        );
    }
    if args.execute {
        client.commit_offsets(&args.group, &plan).await?;
        eprintln!(
            "Reset the offsets of {} partitions of group {}.",
            plan.len(),
            args.group
        );
    } else {
        eprintln!("Dry run: nothing was changed. Add --execute to commit these offsets.");
    }
    Ok(())
}

pub(super) async fn run(cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::List(args) => {
            let client = args.connection.connect().await?;
            let groups = client.list_groups(&args.state).await?;
            if args.json {
                let list: Vec<_> = groups
                    .iter()
                    .map(|g| serde_json::json!({"group": g.group_id, "protocol_type": g.protocol_type, "state": g.state}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for g in groups {
                    match g.state {
                        Some(state) => println!("{}\t{}", g.group_id, state),
                        None => println!("{}", g.group_id),
                    }
                }
            }
        }
        GroupCommand::Describe(args) => {
            let client = args.connection.connect().await?;
            let d = client.describe_group(&args.group).await?;
            let rows = partition_rows(&client, &d).await?;
            if d.state == "Dead" && rows.is_empty() {
                bail!("group {:?} does not exist", args.group);
            }
            if args.json {
                println!("{}", describe_json(&d, &rows));
            } else {
                print!("{}", describe_text(&d, &rows));
            }
        }
        GroupCommand::Delete(args) => {
            let client = args.connection.connect().await?;
            for g in &args.groups {
                client.delete_group(g).await?;
                eprintln!("Deleted group {g}.");
            }
        }
        GroupCommand::ResetOffsets(args) => reset_offsets(args).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_as_kafka_writes_them() -> Result<(), String> {
        assert_eq!(parse_datetime("1970-01-01T00:00:00")?, 0);
        assert_eq!(parse_datetime("1970-01-01T00:00:01.5")?, 1_500);
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.000Z")?,
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime("2023-11-15T00:13:20+02:00")?,
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime("2023-11-14T20:13:20-02:00")?,
            1_700_000_000_000
        );
        assert_eq!(parse_datetime("2000-03-01T00:00:00")?, 951_868_800_000);
        assert_eq!(parse_datetime("@42")?, 42);
        for bad in [
            "",
            "2023-11-14",
            "2023-13-01T00:00:00",
            "x",
            "@-1",
            "2023-11-14T25:00:00",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn lag_needs_both_offsets() {
        let mut r = PartitionRow {
            topic: "t".into(),
            partition: 0,
            committed: Some(5),
            log_end: Some(9),
            member: None,
        };
        assert_eq!(r.lag(), Some(4));
        r.committed = None;
        assert_eq!(r.lag(), None);
    }
}
