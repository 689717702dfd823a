//! DeleteTopics (v1-v6): by name, and by topic id from v6.
//!
//! Authorization (Kafka's `handleDeleteTopicsRequest`): DELETE on the topic
//! (TOPIC_AUTHORIZATION_FAILED), checked before its existence; a topic named by id that the
//! principal may not DESCRIBE is refused without its name.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use sluice_security::acl::AclOperation;

use super::{sb, Ctx};

pub(super) async fn handle(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let b = ctx.broker;
    // (name, id) pairs: v0-v5 name only; v6 either.
    let wanted: Vec<(Option<String>, Uuid)> = if ctx.version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => b.topic_by_id(&id).map(|t| t.meta.name.clone()),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(sb(n))))
            .with_topic_id(id);
        let Some(topic_name) = resolved else {
            b.metrics
                .error(ctx.api, ResponseError::UnknownTopicId.code());
            responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        let refused = ResponseError::TopicAuthorizationFailed.code();
        if name.is_none() && !ctx.authorize_topic(AclOperation::Describe, &topic_name) {
            b.metrics.error(ctx.api, refused);
            responses.push(result.with_error_code(refused));
            continue;
        }
        if !ctx.authorize_topic(AclOperation::Delete, &topic_name) {
            b.metrics.error(ctx.api, refused);
            responses.push(
                result
                    .with_name(Some(TopicName(sb(topic_name))))
                    .with_error_code(refused),
            );
            continue;
        }
        match b.delete_topic(&topic_name).await {
            Ok(topic_id) => {
                let r = result.with_name(Some(TopicName(sb(topic_name))));
                responses.push(if ctx.version >= 6 {
                    r.with_topic_id(topic_id)
                } else {
                    r
                });
            }
            Err((code, msg)) => {
                b.metrics.error(ctx.api, code.code());
                let r = result.with_error_code(code.code());
                responses.push(if ctx.version >= 5 {
                    r.with_error_message(Some(sb(msg)))
                } else {
                    r
                });
            }
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
