//! Metadata (v0-v12), with auto-creation per `auto.create.topics.enable`.
//!
//! Authorization (Kafka's `handleTopicMetadataRequest`): only topics the principal may
//! DESCRIBE are listed; a named topic it may not describe answers TOPIC_AUTHORIZATION_FAILED
//! (without saying whether it exists); auto-creating a topic needs CREATE on the cluster or on
//! the topic. Authorized operations are computed per topic (and for the cluster, v8-v10) when
//! asked for.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// What the request asks about each topic.
struct Asked {
    allow_auto_create: bool,
    include_topic_ops: bool,
}

impl Asked {
    /// The topic's authorized operations, when asked for.
    fn ops(&self, ctx: &Ctx<'_>, name: &str) -> i32 {
        if self.include_topic_ops {
            ctx.authorized_operations(ResourceType::Topic, name)
        } else {
            OPERATIONS_NOT_REQUESTED
        }
    }
}

fn refused(ctx: &Ctx<'_>, name: Option<String>, id: Uuid) -> MetadataResponseTopic {
    error_topic(
        ctx.version,
        name,
        id,
        ResponseError::TopicAuthorizationFailed.code(),
    )
}

/// A topic asked for by name: described, auto-created (with CREATE on the cluster or the
/// topic, checked only when Kafka would create it), or an error.
async fn by_name(ctx: &Ctx<'_>, asked: &Asked, name: String) -> MetadataResponseTopic {
    let b = ctx.broker;
    if !ctx.authorize_topic(AclOperation::Describe, &name) {
        return refused(ctx, Some(name), Uuid::nil());
    }
    if let Some(topic) = b.topic(&name) {
        return describe(ctx, &topic, asked.ops(ctx, &name));
    }
    let creates = asked.allow_auto_create && b.config.auto_create_topics_enable;
    let may_create = !creates
        || ctx.authorize_cluster(AclOperation::Create)
        || ctx.authorize_topic(AclOperation::Create, &name);
    if !asked.allow_auto_create {
        return error_topic(
            ctx.version,
            Some(name),
            Uuid::nil(),
            ResponseError::UnknownTopicOrPartition.code(),
        );
    }
    if !may_create {
        return refused(ctx, Some(name), Uuid::nil());
    }
    match auto_create(ctx, &name).await {
        Ok(topic) => describe(ctx, &topic, asked.ops(ctx, &name)),
        Err(code) => error_topic(ctx.version, Some(name), Uuid::nil(), code),
    }
}

/// Creates a missing topic a client asked for: the group coordinator creates its own topic
/// with its own configs; others need `auto.create.topics.enable`.
async fn auto_create(ctx: &Ctx<'_>, name: &str) -> Result<Arc<Topic>, i16> {
    let b = ctx.broker;
    let not_yet = ResponseError::LeaderNotAvailable.code();
    if name == crate::group::OFFSETS_TOPIC {
        let g = b.groups().ok_or(not_yet)?;
        g.ensure_topic().await.map_err(|_| not_yet)?;
        return b.topic(name).ok_or(not_yet);
    }
    if !b.config.auto_create_topics_enable {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    match b
        .create_topic(name, b.config.num_partitions, BTreeMap::new(), false)
        .await
    {
        Ok(topic) => Ok(topic),
        Err((ResponseError::TopicAlreadyExists, _)) => b.topic(name).ok_or(not_yet),
        Err((code, msg)) => {
            tracing::debug!(topic = %name, error = %msg, "auto-create refused");
            Err(code.code())
        }
    }
}

/// A topic asked for by id (v10+). Topic ids are not secret: a refusal names the id, not the
/// topic.
fn by_id(ctx: &Ctx<'_>, asked: &Asked, id: Uuid) -> MetadataResponseTopic {
    match ctx.broker.topic_by_id(&id) {
        Some(topic) if !ctx.authorize_topic(AclOperation::Describe, &topic.meta.name) => {
            refused(ctx, None, id)
        }
        Some(topic) => describe(ctx, &topic, asked.ops(ctx, &topic.meta.name)),
        None => error_topic(ctx.version, None, id, ResponseError::UnknownTopicId.code()),
    }
}

pub(super) async fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let b = ctx.broker;
    let asked = Asked {
        allow_auto_create: ctx.version < 4 || req.allow_auto_topic_creation,
        include_topic_ops: ctx.version >= 8 && req.include_topic_authorized_operations,
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
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted = match req.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.version == 0 => None,
        Some(t) => Some(t),
    };
    let topics = match wanted {
        None => b
            .topics()
            .iter()
            .filter(|t| ctx.authorize_topic(AclOperation::Describe, &t.meta.name))
            .map(|t| describe(ctx, t, asked.ops(ctx, &t.meta.name)))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                out.push(match t.name {
                    Some(name) => by_name(ctx, &asked, name.0.to_string()).await,
                    None => by_id(ctx, &asked, t.topic_id),
                });
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
