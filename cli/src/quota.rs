//! `quota list | set | remove`, after Kafka's `kafka-configs.sh --entity-type users|clients`:
//! client quotas (`producer_byte_rate`, `consumer_byte_rate`, ...) of a user, a client id or
//! both, each named or the default, through DescribeClientQuotas and AlterClientQuotas
//! (KIP-546), against any broker.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, ApiKey, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;
use sluice_security::quota_entity::{
    ClientQuotaFilter, QuotaFilterComponent, QuotaMatch, CLIENT_ID, USER,
};
use sluice_security::quota_store::{
    ClientQuotaAlteration, CONSUMER_BYTE_RATE, CONTROLLER_MUTATION_RATE, PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
};

use super::ConnectionArgs;
use sluice_clients::{Client, Error};

/// Client quota administration.
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// List quotas: all, or those of entities with the user and/or client id given (with
    /// --strict, entities with exactly those parts).
    List(QuotaListArgs),
    /// Set quotas of a user, a client id, or a user's client id; other quotas of the entity
    /// are left as they are.
    Set(QuotaSetArgs),
    /// Remove quotas of an entity: the ones named, or all.
    Remove(QuotaRemoveArgs),
}

/// The entity (or, for `list`, the filter): a user and/or a client id, each named or the
/// default (which applies to every user or client id without a quota of its own).
#[derive(Debug, Clone, Default, Args)]
pub struct EntityArgs {
    /// A user: the principal's name without `User:` (`ANONYMOUS` for unauthenticated
    /// clients).
    #[arg(long, value_name = "USER", conflicts_with = "user_default")]
    pub user: Option<String>,
    /// The default user.
    #[arg(long)]
    pub user_default: bool,
    /// A client id.
    #[arg(long, value_name = "CLIENT_ID", conflicts_with = "client_default")]
    pub client_id: Option<String>,
    /// The default client id.
    #[arg(long)]
    pub client_default: bool,
}

impl EntityArgs {
    fn user_part(&self) -> Option<Option<String>> {
        match (&self.user, self.user_default) {
            (Some(u), _) => Some(Some(u.clone())),
            (None, true) => Some(None),
            (None, false) => None,
        }
    }

    fn client_part(&self) -> Option<Option<String>> {
        match (&self.client_id, self.client_default) {
            (Some(c), _) => Some(Some(c.clone())),
            (None, true) => Some(None),
            (None, false) => None,
        }
    }

    /// The entity's `(entity_type, name)` pairs; a `None` name is the default.
    pub fn entity(&self) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let mut out = Vec::new();
        if let Some(u) = self.user_part() {
            out.push((USER.to_string(), u));
        }
        if let Some(c) = self.client_part() {
            out.push((CLIENT_ID.to_string(), c));
        }
        if out.is_empty() {
            bail!("name an entity: --user, --user-default, --client-id and/or --client-default");
        }
        Ok(out)
    }

    /// The filter `list` sends: exact names or defaults.
    pub fn filter(&self, strict: bool) -> ClientQuotaFilter {
        let component = |entity_type: &str, part: Option<String>| QuotaFilterComponent {
            entity_type: entity_type.to_string(),
            matching: part.map_or(QuotaMatch::Default, QuotaMatch::Exact),
        };
        let mut components = Vec::new();
        if let Some(u) = self.user_part() {
            components.push(component(USER, u));
        }
        if let Some(c) = self.client_part() {
            components.push(component(CLIENT_ID, c));
        }
        ClientQuotaFilter { components, strict }
    }
}

/// `quota list`.
#[derive(Debug, Args)]
pub struct QuotaListArgs {
    #[command(flatten)]
    pub entity: EntityArgs,
    /// Only entities with exactly the parts given (`--user alice --strict` leaves out alice's
    /// client ids).
    #[arg(long)]
    pub strict: bool,
    /// Print a JSON array instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `quota set`.
#[derive(Debug, Args)]
#[command(group = ArgGroup::new("entity_part").required(true).multiple(true).args(["user", "user_default", "client_id", "client_default"]))]
#[command(group = ArgGroup::new("quota").required(true).multiple(true).args(["producer_byte_rate", "consumer_byte_rate", "request_percentage", "controller_mutation_rate"]))]
pub struct QuotaSetArgs {
    #[command(flatten)]
    pub entity: EntityArgs,
    /// `producer_byte_rate`: bytes a second the entity may produce.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub producer_byte_rate: Option<u64>,
    /// `consumer_byte_rate`: bytes a second the entity may fetch.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub consumer_byte_rate: Option<u64>,
    /// `request_percentage` (stored, not enforced by Sluice).
    #[arg(long, value_name = "PERCENT")]
    pub request_percentage: Option<f64>,
    /// `controller_mutation_rate` (stored, not enforced by Sluice).
    #[arg(long, value_name = "RATE")]
    pub controller_mutation_rate: Option<f64>,
    /// Only check that the broker would accept the change.
    #[arg(long)]
    pub validate_only: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `quota remove`.
#[derive(Debug, Args)]
#[command(group = ArgGroup::new("entity_part").required(true).multiple(true).args(["user", "user_default", "client_id", "client_default"]))]
pub struct QuotaRemoveArgs {
    #[command(flatten)]
    pub entity: EntityArgs,
    /// Remove `producer_byte_rate`.
    #[arg(long)]
    pub producer_byte_rate: bool,
    /// Remove `consumer_byte_rate`.
    #[arg(long)]
    pub consumer_byte_rate: bool,
    /// Remove `request_percentage`.
    #[arg(long)]
    pub request_percentage: bool,
    /// Remove `controller_mutation_rate`.
    #[arg(long)]
    pub controller_mutation_rate: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// One entity's quotas as the broker describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaEntry {
    /// `(entity_type, name)`; a `None` name is the default.
    pub entity: Vec<(String, Option<String>)>,
    /// `(key, value)`.
    pub values: Vec<(String, f64)>,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The quotas of the entities `filter` matches (DescribeClientQuotas).
pub async fn describe_client_quotas(
    client: &Client,
    filter: &ClientQuotaFilter,
) -> Result<Vec<QuotaEntry>, Error> {
    let conn = client.any_connection().await?;
    conn.version(ApiKey::DescribeClientQuotas)?;
    let components = filter
        .components
        .iter()
        .map(|c| {
            let (match_type, name) = match &c.matching {
                QuotaMatch::Exact(n) => (0, Some(sb(n))),
                QuotaMatch::Default => (1, None),
                QuotaMatch::Any => (2, None),
            };
            ComponentData::default()
                .with_entity_type(sb(&c.entity_type))
                .with_match_type(match_type)
                .with_match(name)
        })
        .collect();
    let request = DescribeClientQuotasRequest::default()
        .with_components(components)
        .with_strict(filter.strict);
    let response = conn.call(request, Duration::ZERO).await?;
    if let Some(e) = Error::from_code(
        || "describe client quotas".into(),
        response.error_code,
        response.error_message.as_deref(),
    ) {
        return Err(e);
    }
    Ok(response
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| QuotaEntry {
            entity: e
                .entity
                .into_iter()
                .map(|d| {
                    (
                        d.entity_type.to_string(),
                        d.entity_name.map(|n| n.to_string()),
                    )
                })
                .collect(),
            values: e
                .values
                .into_iter()
                .map(|v| (v.key.to_string(), v.value))
                .collect(),
        })
        .collect())
}

/// Applies `alterations` (AlterClientQuotas); the first refused entity is the error.
pub async fn alter_client_quotas(
    client: &Client,
    alterations: &[ClientQuotaAlteration],
    validate_only: bool,
) -> Result<(), Error> {
    let conn = client.any_connection().await?;
    conn.version(ApiKey::AlterClientQuotas)?;
    let entries = alterations
        .iter()
        .map(|a| {
            EntryData::default()
                .with_entity(
                    a.entity
                        .iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(sb(t))
                                .with_entity_name(n.as_deref().map(sb))
                        })
                        .collect(),
                )
                .with_ops(
                    a.ops
                        .iter()
                        .map(|(key, value)| {
                            OpData::default()
                                .with_key(sb(key))
                                .with_value(value.unwrap_or(0.0))
                                .with_remove(value.is_none())
                        })
                        .collect(),
                )
        })
        .collect();
    let response = conn
        .call(
            AlterClientQuotasRequest::default()
                .with_entries(entries)
                .with_validate_only(validate_only),
            Duration::ZERO,
        )
        .await?;
    for r in response.entries {
        let entity: Vec<(String, Option<String>)> = r
            .entity
            .iter()
            .map(|d| {
                (
                    d.entity_type.to_string(),
                    d.entity_name.as_ref().map(|n| n.to_string()),
                )
            })
            .collect();
        let context = || format!("alter the quotas of {}", entity_text(&entity));
        if let Some(e) = Error::from_code(context, r.error_code, r.error_message.as_deref()) {
            return Err(e);
        }
    }
    Ok(())
}

/// `user=alice client-id=<default>`.
pub fn entity_text(entity: &[(String, Option<String>)]) -> String {
    entity
        .iter()
        .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A quota value as Kafka's tools print it, without a fraction when it has none.
fn value_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn print_table(entries: &[QuotaEntry]) {
    for e in entries {
        let values = e
            .values
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(*v)))
            .collect::<Vec<_>>()
            .join(" ");
        println!("{}\t{values}", entity_text(&e.entity));
    }
}

fn to_json(entries: &[QuotaEntry]) -> serde_json::Value {
    serde_json::Value::Array(
        entries
            .iter()
            .map(|e| {
                let entity: serde_json::Map<String, serde_json::Value> = e
                    .entity
                    .iter()
                    .map(|(t, n)| {
                        (
                            t.clone(),
                            n.clone().map_or(serde_json::Value::Null, Into::into),
                        )
                    })
                    .collect();
                let quotas: serde_json::Map<String, serde_json::Value> = e
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                    .collect();
                serde_json::json!({ "entity": entity, "quotas": quotas })
            })
            .collect(),
    )
}

/// The alteration `quota set` sends.
pub fn alteration_to_set(args: &QuotaSetArgs) -> anyhow::Result<ClientQuotaAlteration> {
    let mut ops = Vec::new();
    if let Some(v) = args.producer_byte_rate {
        ops.push((PRODUCER_BYTE_RATE.to_string(), Some(v as f64)));
    }
    if let Some(v) = args.consumer_byte_rate {
        ops.push((CONSUMER_BYTE_RATE.to_string(), Some(v as f64)));
    }
    if let Some(v) = args.request_percentage {
        ops.push((REQUEST_PERCENTAGE.to_string(), Some(v)));
    }
    if let Some(v) = args.controller_mutation_rate {
        ops.push((CONTROLLER_MUTATION_RATE.to_string(), Some(v)));
    }
    if ops.is_empty() {
        bail!("give a quota: --producer-byte-rate, --consumer-byte-rate, --request-percentage or --controller-mutation-rate");
    }
    Ok(ClientQuotaAlteration {
        entity: args.entity.entity()?,
        ops,
    })
}

/// The alteration `quota remove` sends: the keys named, or every key.
pub fn alteration_to_remove(args: &QuotaRemoveArgs) -> anyhow::Result<ClientQuotaAlteration> {
    let named = [
        (PRODUCER_BYTE_RATE, args.producer_byte_rate),
        (CONSUMER_BYTE_RATE, args.consumer_byte_rate),
        (REQUEST_PERCENTAGE, args.request_percentage),
        (CONTROLLER_MUTATION_RATE, args.controller_mutation_rate),
    ];
    let any = named.iter().any(|(_, on)| *on);
    let ops = named
        .iter()
        .filter(|(_, on)| *on || !any)
        .map(|(k, _)| (k.to_string(), None))
        .collect();
    Ok(ClientQuotaAlteration {
        entity: args.entity.entity()?,
        ops,
    })
}

pub async fn run(cmd: QuotaCommand) -> anyhow::Result<()> {
    match cmd {
        QuotaCommand::List(args) => {
            let client = args.connection.connect().await?;
            let found = describe_client_quotas(&client, &args.entity.filter(args.strict))
                .await
                .context("cannot list client quotas")?;
            if args.json {
                println!("{}", to_json(&found));
            } else {
                print_table(&found);
            }
        }
        QuotaCommand::Set(args) => {
            let alteration = alteration_to_set(&args)?;
            let client = args.connection.connect().await?;
            alter_client_quotas(
                &client,
                std::slice::from_ref(&alteration),
                args.validate_only,
            )
            .await?;
            let values = alteration
                .ops
                .iter()
                .map(|(k, v)| format!("{k}={}", v.map_or_else(String::new, value_text)))
                .collect::<Vec<_>>()
                .join(" ");
            let verb = if args.validate_only { "valid" } else { "set" };
            println!("{verb}: {}\t{values}", entity_text(&alteration.entity));
        }
        QuotaCommand::Remove(args) => {
            let alteration = alteration_to_remove(&args)?;
            let client = args.connection.connect().await?;
            alter_client_quotas(&client, std::slice::from_ref(&alteration), false).await?;
            let keys = alteration
                .ops
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            println!("removed: {}\t{keys}", entity_text(&alteration.entity));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: QuotaCommand,
    }

    fn parse(args: &[&str]) -> Result<QuotaCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("quota").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn set_builds_the_alteration() -> anyhow::Result<()> {
        let QuotaCommand::Set(args) = parse(&[
            "set",
            "--user",
            "alice",
            "--client-default",
            "--producer-byte-rate",
            "1048576",
            "--consumer-byte-rate",
            "2048",
        ])?
        else {
            bail!("not set");
        };
        let a = alteration_to_set(&args)?;
        assert_eq!(
            a.entity,
            vec![
                (USER.to_string(), Some("alice".to_string())),
                (CLIENT_ID.to_string(), None)
            ]
        );
        assert_eq!(
            a.ops,
            vec![
                (PRODUCER_BYTE_RATE.to_string(), Some(1_048_576.0)),
                (CONSUMER_BYTE_RATE.to_string(), Some(2048.0))
            ]
        );
        let QuotaCommand::Set(args) = parse(&[
            "set",
            "--client-id",
            "c",
            "--request-percentage",
            "12.5",
            "--validate-only",
        ])?
        else {
            bail!("not set");
        };
        assert!(args.validate_only);
        let a = alteration_to_set(&args)?;
        assert_eq!(a.entity, vec![(CLIENT_ID.to_string(), Some("c".into()))]);
        assert_eq!(a.ops, vec![(REQUEST_PERCENTAGE.to_string(), Some(12.5))]);
        Ok(())
    }

    #[test]
    fn remove_names_keys_or_all() -> anyhow::Result<()> {
        let QuotaCommand::Remove(args) =
            parse(&["remove", "--user-default", "--consumer-byte-rate"])?
        else {
            bail!("not remove");
        };
        let a = alteration_to_remove(&args)?;
        assert_eq!(a.entity, vec![(USER.to_string(), None)]);
        assert_eq!(a.ops, vec![(CONSUMER_BYTE_RATE.to_string(), None)]);
        let QuotaCommand::Remove(args) = parse(&["remove", "--user", "a", "--client-id", "c"])?
        else {
            bail!("not remove");
        };
        let a = alteration_to_remove(&args)?;
        assert_eq!(a.ops.len(), 4);
        assert!(a.ops.iter().all(|(_, v)| v.is_none()));
        Ok(())
    }

    #[test]
    fn list_filters() -> anyhow::Result<()> {
        let QuotaCommand::List(args) = parse(&["list"])? else {
            bail!("not list");
        };
        assert_eq!(
            args.entity.filter(args.strict),
            ClientQuotaFilter::default()
        );
        let QuotaCommand::List(args) =
            parse(&["list", "--user", "alice", "--client-default", "--strict"])?
        else {
            bail!("not list");
        };
        let f = args.entity.filter(args.strict);
        assert!(f.strict);
        assert_eq!(
            f.components,
            vec![
                QuotaFilterComponent {
                    entity_type: USER.into(),
                    matching: QuotaMatch::Exact("alice".into())
                },
                QuotaFilterComponent {
                    entity_type: CLIENT_ID.into(),
                    matching: QuotaMatch::Default
                }
            ]
        );
        Ok(())
    }

    #[test]
    fn bad_commands_are_refused() {
        for args in [
            &["set", "--producer-byte-rate", "10"][..],
            &["set", "--user", "a"],
            &[
                "set",
                "--user",
                "a",
                "--user-default",
                "--producer-byte-rate",
                "10",
            ],
            &[
                "set",
                "--client-id",
                "c",
                "--client-default",
                "--producer-byte-rate",
                "10",
            ],
            &["set", "--user", "a", "--producer-byte-rate", "0"],
            &["set", "--user", "a", "--producer-byte-rate", "1.5"],
            &["remove"],
            &["remove", "--producer-byte-rate"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }

    #[test]
    fn printing() {
        assert_eq!(value_text(1_048_576.0), "1048576");
        assert_eq!(value_text(12.5), "12.5");
        let e = vec![
            (USER.to_string(), Some("alice".to_string())),
            (CLIENT_ID.to_string(), None),
        ];
        assert_eq!(entity_text(&e), "user=alice client-id=<default>");
        let json = to_json(&[QuotaEntry {
            entity: e,
            values: vec![(PRODUCER_BYTE_RATE.into(), 10.0)],
        }]);
        assert_eq!(
            json,
            serde_json::json!([{
                "entity": {"user": "alice", "client-id": null},
                "quotas": {"producer_byte_rate": 10.0}
            }])
        );
    }
}
