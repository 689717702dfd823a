//! CreateTopics (v2-v7): partitions, configs, validate_only.
//!
//! Authorization (Kafka's `handleCreateTopicsRequest`): CREATE on the cluster or on the topic
//! (TOPIC_AUTHORIZATION_FAILED); the created topic's configs, partition count and replication
//! factor are returned only with DESCRIBE_CONFIGS on it (else `topic_config_error_code` is
//! TOPIC_AUTHORIZATION_FAILED).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use sluice_security::acl::AclOperation;

use super::{sb, Ctx};

pub(super) async fn handle(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let b = ctx.broker;
    let cluster_create = ctx.authorize_cluster(AclOperation::Create);
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if !cluster_create && !ctx.authorize_topic(AclOperation::Create, &name) {
            let code = ResponseError::TopicAuthorizationFailed.code();
            b.metrics.error(ctx.api, code);
            results.push(
                result
                    .with_error_code(code)
                    .with_error_message(Some(sb("Authorization failed."))),
            );
            continue;
        }
        let describable = ctx.authorize_topic(AclOperation::DescribeConfigs, &name);
        let partitions = match (t.num_partitions, t.assignments.len()) {
            (-1, 0) => b.config.num_partitions,
            (-1, n) => n as i32,
            (n, 0) => n,
            (_, _) => {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(
                            "both num_partitions and replica assignments were given",
                        ))),
                );
                continue;
            }
        };
        let rf_ok = t.replication_factor == -1 || t.replication_factor == 1;
        let assignments_ok = t
            .assignments
            .iter()
            .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == b.config.node_id);
        if !rf_ok || !assignments_ok {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidReplicationFactor.code())
                    .with_error_message(Some(sb(
                        "a single sluice broker supports replication factor 1 only",
                    ))),
            );
            continue;
        }
        let mut configs = BTreeMap::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        match b
            .create_topic(&name, partitions, configs, req.validate_only)
            .await
        {
            Ok(topic) => {
                let mut r = result;
                if ctx.version >= 7 {
                    r.topic_id = topic.meta.id;
                }
                if ctx.version >= 5 && !describable {
                    r.topic_config_error_code = ResponseError::TopicAuthorizationFailed.code();
                } else if ctx.version >= 5 {
                    r.num_partitions = topic.meta.partitions;
                    r.replication_factor = 1;
                    r.configs = Some(
                        log_store::LOG_CONFIG_NAMES
                            .iter()
                            .filter_map(|n| topic.config.get(n).map(|v| (n, v)))
                            .map(|(n, v)| {
                                CreatableTopicConfigs::default()
                                    .with_name(sb(*n))
                                    .with_value(Some(sb(v)))
                                    .with_config_source(if topic.meta.configs.contains_key(*n) {
                                        1
                                    } else {
                                        5
                                    })
                            })
                            .collect(),
                    );
                }
                results.push(r);
            }
            Err((code, msg)) => {
                b.metrics.error(ctx.api, code.code());
                results.push(
                    result
                        .with_error_code(code.code())
                        .with_error_message(Some(sb(msg))),
                );
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}
