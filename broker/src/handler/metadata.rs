//! Metadata (v0-v12), with auto-creation per `auto.create.topics.enable`.
//!
//! Authorization (Kafka's `handleTopicMetadataRequest`): only topics the principal may
//! DESCRIBE are listed; a named topic it may not describe answers TOPIC_AUTHORIZATION_FAILED
//! (without saying whether it exists); auto-creating a topic needs CREATE on the cluster or on
//! the topic. Authorized operations are computed per topic (and for the cluster, v8-v10) when
//! asked for.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use sluice_security::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use uuid::Uuid;

use super::{sb, Ctx};
use crate::partition::LEADER_EPOCH;
use crate::topic::Topic;

/// Kafka's value when authorized operations were not asked for.
pub(crate) const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

fn describe(ctx: &Ctx<'_>, t: &Topic, ops: i32) -> MetadataResponseTopic {
    let v = ctx.version;
    let node = BrokerId(ctx.broker.config.node_id);
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let error = if p.is_online() {
                0
            } else {
                ResponseError::KafkaStorageError.code()
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(i as i32)
                .with_leader_id(node)
                .with_leader_epoch(if v >= 7 { LEADER_EPOCH } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(t.meta.name.clone()))))
        .with_topic_id(if v >= 10 { t.meta.id } else { Uuid::nil() })
        .with_is_internal(v >= 1 && t.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(ops)
}

fn error_topic(version: i16, name: Option<String>, id: Uuid, code: i16) -> MetadataResponseTopic {
    let id = if version >= 10 { id } else { Uuid::nil() };
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(sb(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(i32::MIN)
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let b = ctx.broker;
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted = match req.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.version == 0 => None,
        Some(t) => Some(t),
    };
    let allow_auto_create = ctx.version < 4 || req.allow_auto_topic_creation;
    let include_topic_ops = ctx.version >= 8 && req.include_topic_authorized_operations;
    let ops = |name: &str| {
        if include_topic_ops {
            ctx.authorized_operations(ResourceType::Topic, name)
        } else {
            OPERATIONS_NOT_REQUESTED
        }
    };
    let cluster_ops =
        if (8..=10).contains(&ctx.version) && req.include_cluster_authorized_operations {
            if ctx.authorize_cluster(AclOperation::Describe) {
                ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME)
            } else {
                0
            }
        } else {
            OPERATIONS_NOT_REQUESTED
        };
    let may_describe = |name: &str| ctx.authorize_topic(AclOperation::Describe, name);
    // Auto-creation needs CREATE on the cluster or on the topic (checked only when Kafka would
    // create the topic).
    let may_create = |name: &str| {
        !(allow_auto_create && b.config.auto_create_topics_enable)
            || ctx.authorize_cluster(AclOperation::Create)
            || ctx.authorize_topic(AclOperation::Create, name)
    };
    let refused = |name: Option<String>, id: Uuid| {
        error_topic(
            ctx.version,
            name,
            id,
            ResponseError::TopicAuthorizationFailed.code(),
        )
    };
    let topics = match wanted {
        None => b
            .topics()
            .iter()
            .filter(|t| may_describe(&t.meta.name))
            .map(|t| describe(ctx, t, ops(&t.meta.name)))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                match t.name {
                    Some(name) => {
                        let name = name.0.to_string();
                        if !may_describe(&name) {
                            out.push(refused(Some(name), Uuid::nil()));
                            continue;
                        }
                        match b.topic(&name) {
                            Some(topic) => out.push(describe(ctx, &topic, ops(&name))),
                            None if allow_auto_create && !may_create(&name) => {
                                out.push(refused(Some(name), Uuid::nil()));
                            }
                            // The group coordinator creates its topic with its own configs.
                            None if name == crate::group::OFFSETS_TOPIC && allow_auto_create => {
                                let created = match b.groups() {
                                    Some(g) => {
                                        g.ensure_topic().await.ok().and_then(|_| b.topic(&name))
                                    }
                                    None => None,
                                };
                                match created {
                                    Some(topic) => out.push(describe(ctx, &topic, ops(&name))),
                                    None => out.push(error_topic(
                                        ctx.version,
                                        Some(name),
                                        Uuid::nil(),
                                        ResponseError::LeaderNotAvailable.code(),
                                    )),
                                }
                            }
                            None if allow_auto_create && b.config.auto_create_topics_enable => {
                                match b
                                    .create_topic(
                                        &name,
                                        b.config.num_partitions,
                                        BTreeMap::new(),
                                        false,
                                    )
                                    .await
                                {
                                    Ok(topic) => out.push(describe(ctx, &topic, ops(&name))),
                                    Err((ResponseError::TopicAlreadyExists, _)) => {
                                        match b.topic(&name) {
                                            Some(topic) => {
                                                out.push(describe(ctx, &topic, ops(&name)))
                                            }
                                            None => out.push(error_topic(
                                                ctx.version,
                                                Some(name),
                                                Uuid::nil(),
                                                ResponseError::LeaderNotAvailable.code(),
                                            )),
                                        }
                                    }
                                    Err((code, msg)) => {
                                        tracing::debug!(topic = %name, error = %msg, "auto-create refused");
                                        out.push(error_topic(
                                            ctx.version,
                                            Some(name),
                                            Uuid::nil(),
                                            code.code(),
                                        ))
                                    }
                                }
                            }
                            None => out.push(error_topic(
                                ctx.version,
                                Some(name),
                                Uuid::nil(),
                                ResponseError::UnknownTopicOrPartition.code(),
                            )),
                        }
                    }
                    None => match b.topic_by_id(&t.topic_id) {
                        // Topic ids are not secret: a refusal names the id, not the topic.
                        Some(topic) if !may_describe(&topic.meta.name) => {
                            out.push(refused(None, t.topic_id))
                        }
                        Some(topic) => out.push(describe(ctx, &topic, ops(&topic.meta.name))),
                        None => out.push(error_topic(
                            ctx.version,
                            None,
                            t.topic_id,
                            ResponseError::UnknownTopicId.code(),
                        )),
                    },
                }
            }
            out
        }
    };
    for t in &topics {
        b.metrics.error(ctx.api, t.error_code);
    }
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(b.config.node_id))
            .with_host(sb(ctx.listener.advertised_host.clone()))
            .with_port(ctx.listener.advertised_port as i32)])
        .with_cluster_id(if ctx.version >= 2 {
            Some(sb(b.cluster_id.clone()))
        } else {
            None
        })
        .with_controller_id(BrokerId(if ctx.version >= 1 {
            b.config.node_id
        } else {
            -1
        }))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops)
}
