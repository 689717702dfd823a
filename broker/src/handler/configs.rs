//! DescribeConfigs (v1-v4), AlterConfigs (v0-v2) and IncrementalAlterConfigs (v0-v1). Topic
//! configs take effect live on every partition.
//!
//! Authorization (Kafka's `ConfigHelper` and `handle*AlterConfigsRequest`): DESCRIBE_CONFIGS
//! (ALTER_CONFIGS to change) on the topic, or on the cluster for broker and broker-logger
//! resources; TOPIC_/CLUSTER_AUTHORIZATION_FAILED per resource otherwise.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use sluice_security::acl::{AclOperation, ResourceType, CLUSTER_NAME};

use super::{sb, Ctx};
use crate::config::broker_synonym;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;

/// The ACL resource a config resource type is authorized on, and the error a refusal gets;
/// `None` for types Kafka has no check for (answered INVALID_REQUEST below).
fn acl_resource(resource_type: i8, name: &str) -> Option<(ResourceType, &str, ResponseError)> {
    match resource_type {
        TOPIC => Some((
            ResourceType::Topic,
            name,
            ResponseError::TopicAuthorizationFailed,
        )),
        BROKER | BROKER_LOGGER => Some((
            ResourceType::Cluster,
            CLUSTER_NAME,
            ResponseError::ClusterAuthorizationFailed,
        )),
        _ => None,
    }
}

/// The refusal of `op` on a config resource, if the principal may not.
fn refused(
    ctx: &Ctx<'_>,
    op: AclOperation,
    resource_type: i8,
    name: &str,
) -> Option<ResponseError> {
    let (acl_type, acl_name, error) = acl_resource(resource_type, name)?;
    if ctx.authorize(op, acl_type, acl_name) {
        None
    } else {
        ctx.broker.metrics.error(ctx.api, error.code());
        Some(error)
    }
}

const REFUSED: &str = "Authorization failed.";

// Config sources, as Kafka numbers them.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// Kafka's config types: BOOLEAN 1, STRING 2, INT 3, LONG 5, DOUBLE 6, LIST 7.
fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => 7,
        "message.timestamp.type" | "compression.type" => 2,
        "min.cleanable.dirty.ratio" => 6,
        "index.interval.bytes" | "max.message.bytes" | "segment.bytes" | "segment.index.bytes" => 3,
        n if n.ends_with(".enable") => 1,
        _ => 5,
    }
}

fn describe_topic(
    ctx: &Ctx<'_>,
    name: &str,
    keys: &Option<Vec<kafka_protocol::protocol::StrBytes>>,
    synonyms: bool,
) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(TOPIC)
        .with_resource_name(sb(name));
    let Some(topic) = ctx.broker.topic(name) else {
        ctx.broker
            .metrics
            .error(ctx.api, ResponseError::UnknownTopicOrPartition.code());
        return result
            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
            .with_error_message(Some(sb(format!("topic {name:?} does not exist"))));
    };
    let defaults = &ctx.broker.config.log_defaults;
    let explicit = &ctx.broker.config.explicit;
    let configs = log_store::LOG_CONFIG_NAMES
        .iter()
        .filter(|n| {
            keys.as_ref()
                .is_none_or(|k| k.iter().any(|k| k.as_str() == **n))
        })
        .map(|n| {
            let broker_key = broker_synonym(n);
            let broker_set = broker_key.is_some_and(|b| explicit.contains_key(b));
            let source = if topic.meta.configs.contains_key(*n) {
                DYNAMIC_TOPIC_CONFIG
            } else if broker_set {
                STATIC_BROKER_CONFIG
            } else {
                DEFAULT_CONFIG
            };
            let mut syn = Vec::new();
            if synonyms {
                if let Some(v) = topic.meta.configs.get(*n) {
                    syn.push(
                        DescribeConfigsSynonym::default()
                            .with_name(sb(*n))
                            .with_value(Some(sb(v.clone())))
                            .with_source(DYNAMIC_TOPIC_CONFIG),
                    );
                }
                if let (Some(b), true) = (broker_key, broker_set) {
                    syn.push(
                        DescribeConfigsSynonym::default()
                            .with_name(sb(b))
                            .with_value(defaults.get(n).map(sb))
                            .with_source(STATIC_BROKER_CONFIG),
                    );
                }
                syn.push(
                    DescribeConfigsSynonym::default()
                        .with_name(sb(broker_key.unwrap_or(n)))
                        .with_value(log_store::LogConfig::default().get(n).map(sb))
                        .with_source(DEFAULT_CONFIG),
                );
            }
            DescribeConfigsResourceResult::default()
                .with_name(sb(*n))
                .with_value(topic.config.get(n).map(sb))
                .with_read_only(false)
                .with_config_source(source)
                .with_is_sensitive(false)
                .with_synonyms(syn)
                .with_config_type(if ctx.version >= 3 { config_type(n) } else { 0 })
        })
        .collect();
    result.with_configs(configs)
}

fn describe_broker(
    ctx: &Ctx<'_>,
    name: &str,
    keys: &Option<Vec<kafka_protocol::protocol::StrBytes>>,
) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(BROKER)
        .with_resource_name(sb(name));
    if !name.is_empty() && name != ctx.broker.config.node_id.to_string() {
        return result
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(sb(format!(
                "this is broker {}, not {name}",
                ctx.broker.config.node_id
            ))));
    }
    let configs = ctx
        .broker
        .config
        .describe()
        .into_iter()
        .filter(|(n, _)| {
            keys.as_ref()
                .is_none_or(|k| k.iter().any(|k| k.as_str() == n))
        })
        .map(|(n, v)| {
            let source = if ctx.broker.config.explicit.contains_key(&n) {
                STATIC_BROKER_CONFIG
            } else {
                DEFAULT_CONFIG
            };
            DescribeConfigsResourceResult::default()
                .with_config_type(if ctx.version >= 3 { config_type(&n) } else { 0 })
                .with_name(sb(n))
                .with_value(Some(sb(v)))
                .with_read_only(true)
                .with_config_source(source)
        })
        .collect();
    result.with_configs(configs)
}

pub(super) fn describe(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let op = AclOperation::DescribeConfigs;
            if let Some(e) = refused(ctx, op, r.resource_type, &r.resource_name) {
                return DescribeConfigsResult::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(REFUSED)));
            }
            match r.resource_type {
                TOPIC => describe_topic(
                    ctx,
                    r.resource_name.as_str(),
                    &r.configuration_keys,
                    req.include_synonyms,
                ),
                BROKER => describe_broker(ctx, r.resource_name.as_str(), &r.configuration_keys),
                other => DescribeConfigsResult::default()
                    .with_resource_type(other)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb(format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Applies new overrides to a topic resource; `Err` is (code, message).
async fn apply(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> (i16, Option<String>) {
    match resource_type {
        TOPIC => match ctx
            .broker
            .set_topic_configs(name, configs, validate_only)
            .await
        {
            Ok(()) => (0, None),
            Err((code, msg)) => {
                ctx.broker.metrics.error(ctx.api, code.code());
                (code.code(), Some(msg))
            }
        },
        BROKER => (
            ResponseError::InvalidRequest.code(),
            Some(
                "broker configs are static in sluice: set them with --config or --set and restart"
                    .into(),
            ),
        ),
        other => (
            ResponseError::InvalidRequest.code(),
            Some(format!("resource type {other} is not supported")),
        ),
    }
}

pub(super) async fn alter(ctx: &Ctx<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        if let Some(e) = refused(
            ctx,
            AclOperation::AlterConfigs,
            r.resource_type,
            &r.resource_name,
        ) {
            responses.push(
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(REFUSED)))
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name),
            );
            continue;
        }
        // AlterConfigs replaces the whole set of overrides.
        let configs = r
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let (code, msg) = apply(
            ctx,
            r.resource_type,
            r.resource_name.as_str(),
            configs,
            req.validate_only,
        )
        .await;
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub(super) async fn incremental_alter(
    ctx: &Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let name = r.resource_name.to_string();
        if let Some(e) = refused(ctx, AclOperation::AlterConfigs, r.resource_type, &name) {
            responses.push(
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(REFUSED)))
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name),
            );
            continue;
        }
        let mut result = Ok(());
        let mut configs = match (r.resource_type, ctx.broker.topic(&name)) {
            (TOPIC, Some(t)) => t.meta.configs.clone(),
            _ => BTreeMap::new(),
        };
        for c in &r.configs {
            let key = c.name.to_string();
            let value = c.value.as_ref().map(|v| v.to_string());
            match (c.config_operation, value) {
                (0, Some(v)) => {
                    configs.insert(key, v);
                }
                (0, None) => result = Err(format!("SET {key} needs a value")),
                (1, _) => {
                    configs.remove(&key);
                }
                (op @ (2 | 3), Some(v)) if config_type(&key) == 7 => {
                    let current = configs
                        .get(&key)
                        .cloned()
                        .or_else(|| ctx.broker.config.log_defaults.get(&key))
                        .unwrap_or_default();
                    let mut items: Vec<String> = current
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if op == 2 {
                            if !items.iter().any(|i| i == item) {
                                items.push(item.to_string());
                            }
                        } else {
                            items.retain(|i| i != item);
                        }
                    }
                    configs.insert(key, items.join(","));
                }
                (2 | 3, _) => {
                    result = Err(format!(
                        "APPEND/SUBTRACT apply to list configs only, not {key}"
                    ))
                }
                (op, _) => result = Err(format!("unknown config operation {op}")),
            }
        }
        let (code, msg) = match result {
            Ok(()) => apply(ctx, r.resource_type, &name, configs, req.validate_only).await,
            Err(m) => (ResponseError::InvalidConfig.code(), Some(m)),
        };
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
