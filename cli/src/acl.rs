//! `acl list | add | remove`, after Kafka's `kafka-acls.sh`: ACLs through DescribeAcls,
//! CreateAcls and DeleteAcls, against any broker with an authorizer.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use sluice_security::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
    CLUSTER_NAME, WILDCARD_HOST,
};

use super::ConnectionArgs;
use sluice_clients::{Client, Error};

/// ACL administration.
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// List ACLs: all, or those of a resource and/or a principal.
    ///
    /// Without --pattern-type, a named resource's ACLs are those on exactly that name, of any
    /// pattern type; --pattern-type match lists every ACL that applies to it (the literal
    /// name, `*` and matching prefixes).
    List(AclListArgs),
    /// Add ALLOW or DENY ACLs for a principal: one per operation.
    Add(AclAddArgs),
    /// Remove the ACLs of a resource that match the filters given; prints what was removed.
    Remove(AclRemoveArgs),
}

/// The resource an ACL command is about.
#[derive(Debug, Clone, Args)]
pub struct ResourceArgs {
    /// A topic (or, with --prefixed, a topic name prefix; `*` for every topic).
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
    /// A consumer group (or a prefix; `*` for every group).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// The cluster (`kafka-cluster`).
    #[arg(long)]
    pub cluster: bool,
    /// A transactional id (or a prefix; `*` for every id).
    #[arg(long, value_name = "ID")]
    pub transactional_id: Option<String>,
    /// The name is a prefix: shorthand for --pattern-type prefixed.
    #[arg(long, conflicts_with = "pattern_type")]
    pub prefixed: bool,
    /// How the name matches: literal, prefixed, or for list/remove also any (exact name, any
    /// pattern type) and match (every ACL that applies to the named resource).
    #[arg(long, value_enum, ignore_case = true)]
    pub pattern_type: Option<PatternArg>,
}

/// `--pattern-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PatternArg {
    Literal,
    Prefixed,
    Any,
    Match,
}

impl From<PatternArg> for PatternType {
    fn from(p: PatternArg) -> PatternType {
        match p {
            PatternArg::Literal => PatternType::Literal,
            PatternArg::Prefixed => PatternType::Prefixed,
            PatternArg::Any => PatternType::Any,
            PatternArg::Match => PatternType::Match,
        }
    }
}

/// `--operation`: Kafka's operation names, in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OperationArg {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl From<OperationArg> for AclOperation {
    fn from(o: OperationArg) -> AclOperation {
        match o {
            OperationArg::All => AclOperation::All,
            OperationArg::Read => AclOperation::Read,
            OperationArg::Write => AclOperation::Write,
            OperationArg::Create => AclOperation::Create,
            OperationArg::Delete => AclOperation::Delete,
            OperationArg::Alter => AclOperation::Alter,
            OperationArg::Describe => AclOperation::Describe,
            OperationArg::ClusterAction => AclOperation::ClusterAction,
            OperationArg::DescribeConfigs => AclOperation::DescribeConfigs,
            OperationArg::AlterConfigs => AclOperation::AlterConfigs,
            OperationArg::IdempotentWrite => AclOperation::IdempotentWrite,
        }
    }
}

impl ResourceArgs {
    /// The resource type and name given, if any.
    fn resource(&self) -> Option<(ResourceType, String)> {
        if let Some(t) = &self.topic {
            Some((ResourceType::Topic, t.clone()))
        } else if let Some(g) = &self.group {
            Some((ResourceType::Group, g.clone()))
        } else if let Some(t) = &self.transactional_id {
            Some((ResourceType::TransactionalId, t.clone()))
        } else if self.cluster {
            Some((ResourceType::Cluster, CLUSTER_NAME.to_string()))
        } else {
            None
        }
    }

    fn pattern(&self, default: PatternType) -> PatternType {
        if self.prefixed {
            PatternType::Prefixed
        } else {
            self.pattern_type.map_or(default, PatternType::from)
        }
    }
}

/// `acl list`.
#[derive(Debug, Args)]
#[command(group = ArgGroup::new("resource").args(["topic", "group", "cluster", "transactional_id"]))]
pub struct AclListArgs {
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// Only ACLs of this principal (`User:alice`).
    #[arg(long, value_name = "TYPE:NAME")]
    pub principal: Option<String>,
    /// Print a JSON array of bindings instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `acl add`.
#[derive(Debug, Args)]
#[command(group = ArgGroup::new("resource").required(true).args(["topic", "group", "cluster", "transactional_id"]))]
#[command(group = ArgGroup::new("permission").required(true).args(["allow", "deny"]))]
pub struct AclAddArgs {
    /// Add ALLOW ACLs.
    #[arg(long)]
    pub allow: bool,
    /// Add DENY ACLs (a DENY wins over any ALLOW).
    #[arg(long)]
    pub deny: bool,
    /// Who (`User:alice`, or `User:*` for everyone).
    #[arg(long, value_name = "TYPE:NAME")]
    pub principal: String,
    /// Operations, comma-separated: read, write, create, delete, alter, describe,
    /// cluster-action, describe-configs, alter-configs, idempotent-write, all.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        required = true,
        ignore_case = true
    )]
    pub operation: Vec<OperationArg>,
    /// The client address the ACLs apply to (`*`: any).
    #[arg(long, default_value = WILDCARD_HOST)]
    pub host: String,
    #[command(flatten)]
    pub resource: ResourceArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `acl remove`.
#[derive(Debug, Args)]
#[command(group = ArgGroup::new("resource").required(true).args(["topic", "group", "cluster", "transactional_id"]))]
#[command(group = ArgGroup::new("permission").args(["allow", "deny"]))]
pub struct AclRemoveArgs {
    /// Only ALLOW ACLs.
    #[arg(long)]
    pub allow: bool,
    /// Only DENY ACLs.
    #[arg(long)]
    pub deny: bool,
    /// Only ACLs of this principal.
    #[arg(long, value_name = "TYPE:NAME")]
    pub principal: Option<String>,
    /// Only ACLs for these operations (comma-separated); default: any.
    #[arg(long, value_enum, value_delimiter = ',', ignore_case = true)]
    pub operation: Vec<OperationArg>,
    /// Only ACLs for this host.
    #[arg(long)]
    pub host: Option<String>,
    #[command(flatten)]
    pub resource: ResourceArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The bindings `filter` matches (DescribeAcls).
pub async fn describe_acls(
    client: &Client,
    filter: &AclBindingFilter,
) -> Result<Vec<AclBinding>, Error> {
    let conn = client.any_connection().await?;
    conn.version(ApiKey::DescribeAcls)?;
    let request = DescribeAclsRequest::default()
        .with_resource_type_filter(filter.resource_type.code())
        .with_resource_name_filter(filter.resource_name.as_deref().map(sb))
        .with_pattern_type_filter(filter.pattern_type.code())
        .with_principal_filter(filter.principal.as_deref().map(sb))
        .with_host_filter(filter.host.as_deref().map(sb))
        .with_operation(filter.operation.code())
        .with_permission_type(filter.permission_type.code());
    let response = conn.call(request, Duration::ZERO).await?;
    if let Some(e) = Error::from_code(
        || "describe ACLs".into(),
        response.error_code,
        response.error_message.as_deref(),
    ) {
        return Err(e);
    }
    let mut out = Vec::new();
    for r in response.resources {
        for a in r.acls {
            let parsed = (|| -> Result<AclBinding, sluice_security::acl::AclError> {
                Ok(AclBinding {
                    resource_type: ResourceType::try_from(r.resource_type)?,
                    resource_name: r.resource_name.to_string(),
                    pattern_type: PatternType::try_from(r.pattern_type)?,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: AclOperation::try_from(a.operation)?,
                    permission_type: AclPermissionType::try_from(a.permission_type)?,
                })
            })();
            out.push(parsed.map_err(|e| Error::InvalidArgument(format!("in the ACL list: {e}")))?);
        }
    }
    Ok(out)
}

/// Adds `bindings` (CreateAcls); the first refused binding is the error.
pub async fn create_acls(client: &Client, bindings: &[AclBinding]) -> Result<(), Error> {
    let conn = client.any_connection().await?;
    conn.version(ApiKey::CreateAcls)?;
    let creations = bindings
        .iter()
        .map(|b| {
            AclCreation::default()
                .with_resource_type(b.resource_type.code())
                .with_resource_name(sb(&b.resource_name))
                .with_resource_pattern_type(b.pattern_type.code())
                .with_principal(sb(&b.principal))
                .with_host(sb(&b.host))
                .with_operation(b.operation.code())
                .with_permission_type(b.permission_type.code())
        })
        .collect();
    let response = conn
        .call(
            CreateAclsRequest::default().with_creations(creations),
            Duration::ZERO,
        )
        .await?;
    for (b, r) in bindings.iter().zip(&response.results) {
        let context = || {
            format!(
                "add {} {} for {} on {} {}",
                b.permission_type, b.operation, b.principal, b.resource_type, b.resource_name
            )
        };
        if let Some(e) = Error::from_code(context, r.error_code, r.error_message.as_deref()) {
            return Err(e);
        }
    }
    Ok(())
}

/// Removes the bindings `filters` match (DeleteAcls) and returns them; the first refused
/// filter is the error.
pub async fn delete_acls(
    client: &Client,
    filters: &[AclBindingFilter],
) -> Result<Vec<AclBinding>, Error> {
    let conn = client.any_connection().await?;
    conn.version(ApiKey::DeleteAcls)?;
    let wire = filters
        .iter()
        .map(|f| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(f.resource_type.code())
                .with_resource_name_filter(f.resource_name.as_deref().map(sb))
                .with_pattern_type_filter(f.pattern_type.code())
                .with_principal_filter(f.principal.as_deref().map(sb))
                .with_host_filter(f.host.as_deref().map(sb))
                .with_operation(f.operation.code())
                .with_permission_type(f.permission_type.code())
        })
        .collect();
    let response = conn
        .call(
            DeleteAclsRequest::default().with_filters(wire),
            Duration::ZERO,
        )
        .await?;
    let mut out = Vec::new();
    for r in response.filter_results {
        if let Some(e) = Error::from_code(
            || "remove ACLs".into(),
            r.error_code,
            r.error_message.as_deref(),
        ) {
            return Err(e);
        }
        for m in r.matching_acls {
            let parsed = (|| -> Result<AclBinding, sluice_security::acl::AclError> {
                Ok(AclBinding {
                    resource_type: ResourceType::try_from(m.resource_type)?,
                    resource_name: m.resource_name.to_string(),
                    pattern_type: PatternType::try_from(m.pattern_type)?,
                    principal: m.principal.to_string(),
                    host: m.host.to_string(),
                    operation: AclOperation::try_from(m.operation)?,
                    permission_type: AclPermissionType::try_from(m.permission_type)?,
                })
            })();
            let b =
                parsed.map_err(|e| Error::InvalidArgument(format!("in the removed ACLs: {e}")))?;
            if !out.contains(&b) {
                out.push(b);
            }
        }
    }
    Ok(out)
}

/// One line per binding: resource type, pattern type, name, permission, principal, host,
/// operation.
fn print_table(bindings: &[AclBinding]) {
    for b in bindings {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            b.resource_type,
            b.pattern_type,
            b.resource_name,
            b.permission_type,
            b.principal,
            b.host,
            b.operation
        );
    }
}

fn to_json(bindings: &[AclBinding]) -> serde_json::Value {
    serde_json::Value::Array(
        bindings
            .iter()
            .map(|b| {
                serde_json::json!({
                    "resource_type": b.resource_type.kafka_name(),
                    "pattern_type": b.pattern_type.kafka_name(),
                    "resource_name": b.resource_name,
                    "permission": b.permission_type.kafka_name(),
                    "principal": b.principal,
                    "host": b.host,
                    "operation": b.operation.kafka_name(),
                })
            })
            .collect(),
    )
}

/// The bindings `acl add` would create.
pub fn bindings_to_add(args: &AclAddArgs) -> anyhow::Result<Vec<AclBinding>> {
    let (resource_type, resource_name) = args.resource.resource().ok_or_else(|| {
        anyhow!("name a resource: --topic, --group, --cluster or --transactional-id")
    })?;
    let pattern_type = args.resource.pattern(PatternType::Literal);
    if !matches!(pattern_type, PatternType::Literal | PatternType::Prefixed) {
        bail!("ACLs are added with a literal or prefixed name, not --pattern-type {pattern_type}");
    }
    let permission_type = if args.deny {
        AclPermissionType::Deny
    } else {
        AclPermissionType::Allow
    };
    let bindings: Vec<AclBinding> = args
        .operation
        .iter()
        .map(|op| AclBinding {
            resource_type,
            resource_name: resource_name.clone(),
            pattern_type,
            principal: args.principal.clone(),
            host: args.host.clone(),
            operation: (*op).into(),
            permission_type,
        })
        .collect();
    for b in &bindings {
        b.validate()?;
    }
    Ok(bindings)
}

/// The filters `acl remove` sends: one per operation (or one for any operation).
pub fn filters_to_remove(args: &AclRemoveArgs) -> anyhow::Result<Vec<AclBindingFilter>> {
    let (resource_type, resource_name) = args.resource.resource().ok_or_else(|| {
        anyhow!("name a resource: --topic, --group, --cluster or --transactional-id")
    })?;
    let permission_type = match (args.allow, args.deny) {
        (true, _) => AclPermissionType::Allow,
        (_, true) => AclPermissionType::Deny,
        _ => AclPermissionType::Any,
    };
    let operations: Vec<AclOperation> = if args.operation.is_empty() {
        vec![AclOperation::Any]
    } else {
        args.operation.iter().map(|o| (*o).into()).collect()
    };
    operations
        .into_iter()
        .map(|operation| {
            let f = AclBindingFilter {
                resource_type,
                resource_name: Some(resource_name.clone()),
                pattern_type: args.resource.pattern(PatternType::Literal),
                principal: args.principal.clone(),
                host: args.host.clone(),
                operation,
                permission_type,
            };
            f.validate()?;
            Ok(f)
        })
        .collect()
}

/// The filter `acl list` sends.
pub fn filter_to_list(args: &AclListArgs) -> AclBindingFilter {
    let (resource_type, resource_name) = match args.resource.resource() {
        Some((t, n)) => (t, Some(n)),
        None => (ResourceType::Any, None),
    };
    AclBindingFilter {
        resource_type,
        resource_name,
        pattern_type: args.resource.pattern(PatternType::Any),
        principal: args.principal.clone(),
        ..AclBindingFilter::any()
    }
}

pub async fn run(cmd: AclCommand) -> anyhow::Result<()> {
    match cmd {
        AclCommand::List(args) => {
            let client = args.connection.connect().await?;
            let found = describe_acls(&client, &filter_to_list(&args))
                .await
                .context("cannot list ACLs")?;
            if args.json {
                println!("{}", to_json(&found));
            } else {
                print_table(&found);
            }
        }
        AclCommand::Add(args) => {
            let bindings = bindings_to_add(&args)?;
            let client = args.connection.connect().await?;
            create_acls(&client, &bindings).await?;
            println!("added:");
            print_table(&bindings);
        }
        AclCommand::Remove(args) => {
            let filters = filters_to_remove(&args)?;
            let client = args.connection.connect().await?;
            let removed = delete_acls(&client, &filters).await?;
            if removed.is_empty() {
                println!("no ACL matched");
            } else {
                println!("removed:");
                print_table(&removed);
            }
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
        command: AclCommand,
    }

    fn parse(args: &[&str]) -> Result<AclCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("acl").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn add_builds_one_binding_per_operation() -> anyhow::Result<()> {
        let AclCommand::Add(args) = parse(&[
            "add",
            "--allow",
            "--principal",
            "User:alice",
            "--operation",
            "read,Write,cluster-action",
            "--topic",
            "orders-",
            "--prefixed",
        ])?
        else {
            bail!("not add");
        };
        let b = bindings_to_add(&args)?;
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|b| b.pattern_type == PatternType::Prefixed
            && b.resource_type == ResourceType::Topic
            && b.resource_name == "orders-"
            && b.host == "*"
            && b.permission_type == AclPermissionType::Allow));
        assert_eq!(b[2].operation, AclOperation::ClusterAction);

        let AclCommand::Add(args) = parse(&[
            "add",
            "--deny",
            "--principal",
            "User:bob",
            "--operation",
            "all",
            "--cluster",
        ])?
        else {
            bail!("not add");
        };
        let b = bindings_to_add(&args)?;
        assert_eq!(b[0].resource_name, CLUSTER_NAME);
        assert_eq!(b[0].permission_type, AclPermissionType::Deny);
        Ok(())
    }

    #[test]
    fn bad_commands_are_refused() -> anyhow::Result<()> {
        for args in [
            &[
                "add",
                "--principal",
                "User:a",
                "--operation",
                "read",
                "--topic",
                "t",
            ][..],
            &[
                "add",
                "--allow",
                "--deny",
                "--principal",
                "User:a",
                "--operation",
                "read",
                "--topic",
                "t",
            ],
            &[
                "add",
                "--allow",
                "--principal",
                "User:a",
                "--operation",
                "read",
            ],
            &[
                "add",
                "--allow",
                "--principal",
                "User:a",
                "--operation",
                "fly",
                "--topic",
                "t",
            ],
            &[
                "add",
                "--allow",
                "--principal",
                "User:a",
                "--operation",
                "read",
                "--topic",
                "t",
                "--group",
                "g",
            ],
            &["remove", "--principal", "User:a"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
        // Parsed, but not a valid binding.
        let AclCommand::Add(args) = parse(&[
            "add",
            "--allow",
            "--principal",
            "alice",
            "--operation",
            "read",
            "--topic",
            "t",
        ])?
        else {
            bail!("not add");
        };
        assert!(bindings_to_add(&args).is_err(), "a principal needs a type");
        let AclCommand::Add(args) = parse(&[
            "add",
            "--allow",
            "--principal",
            "User:a",
            "--operation",
            "read",
            "--topic",
            "t",
            "--pattern-type",
            "match",
        ])?
        else {
            bail!("not add");
        };
        assert!(bindings_to_add(&args).is_err());
        Ok(())
    }

    #[test]
    fn list_and_remove_filters() -> anyhow::Result<()> {
        let AclCommand::List(args) = parse(&["list"])? else {
            bail!("not list");
        };
        assert_eq!(filter_to_list(&args), AclBindingFilter::any());
        let AclCommand::List(args) = parse(&[
            "list",
            "--group",
            "g",
            "--principal",
            "User:a",
            "--pattern-type",
            "match",
        ])?
        else {
            bail!("not list");
        };
        let f = filter_to_list(&args);
        assert_eq!(f.resource_type, ResourceType::Group);
        assert_eq!(f.pattern_type, PatternType::Match);
        assert_eq!(f.principal.as_deref(), Some("User:a"));

        let AclCommand::Remove(args) = parse(&[
            "remove",
            "--transactional-id",
            "tx",
            "--deny",
            "--operation",
            "write,describe",
        ])?
        else {
            bail!("not remove");
        };
        let f = filters_to_remove(&args)?;
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].permission_type, AclPermissionType::Deny);
        assert_eq!(f[0].pattern_type, PatternType::Literal);
        assert_eq!(f[1].operation, AclOperation::Describe);
        Ok(())
    }
}
