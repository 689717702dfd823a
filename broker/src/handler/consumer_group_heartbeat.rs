//! ConsumerGroupHeartbeat (v0-1, KIP-848): joins, keeps and leaves a consumer-protocol group
//! and carries the member's assignment. The request is checked here as Kafka's
//! `throwIfConsumerGroupHeartbeatRequestIsInvalid` does. A regex subscription (RE2 syntax,
//! matching whole topic names) that does not compile gets INVALID_REGULAR_EXPRESSION. Needs
//! READ on the group (GROUP_AUTHORIZATION_FAILED), checked first, as in Kafka.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use sluice_security::acl::AclOperation;

use super::group_call::{client_host, group_request, mismatched};
use super::{sb, Ctx};
use crate::group::api::{ConsumerHeartbeatRequest, ConsumerHeartbeatResponse, Input, Reply};
use crate::group::assignor::ASSIGNORS;
use crate::group::consumer::STATIC_LEAVE_EPOCH;
use crate::group::OFFSETS_TOPIC;

fn invalid(why: &str) -> ConsumerHeartbeatResponse {
    ConsumerHeartbeatResponse::error(ResponseError::InvalidRequest, Some(why.to_string()))
}

/// Kafka's checks of a heartbeat, in its order.
fn validate(v: i16, req: &ConsumerGroupHeartbeatRequest) -> Option<ConsumerHeartbeatResponse> {
    if req.group_id.0.is_empty() {
        return Some(invalid("GroupId can't be empty."));
    }
    if req.instance_id.as_ref().is_some_and(|i| i.is_empty()) {
        return Some(invalid("InstanceId can't be empty."));
    }
    if req.rack_id.as_ref().is_some_and(|r| r.is_empty()) {
        return Some(invalid("RackId can't be empty."));
    }
    if v >= 1 && req.member_id.is_empty() {
        return Some(invalid("MemberId can't be empty."));
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return Some(invalid(
                    "RebalanceTimeoutMs must be provided in first request.",
                ));
            }
            if req.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
                return Some(invalid("TopicPartitions must be empty when (re-)joining."));
            }
            if req.subscribed_topic_names.is_none()
                && req
                    .subscribed_topic_regex
                    .as_ref()
                    .is_none_or(|r| r.is_empty())
            {
                return Some(invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                ));
            }
        }
        e if e > 0 || e == -1 => {
            if req.member_id.is_empty() {
                return Some(invalid("MemberId can't be empty."));
            }
        }
        STATIC_LEAVE_EPOCH => {
            if req.instance_id.is_none() {
                return Some(invalid(
                    "InstanceId can't be null when leaving as a static member.",
                ));
            }
        }
        _ => return Some(invalid("MemberEpoch is invalid.")),
    }
    // An empty regex means none (librdkafka sends one with topic names).
    if let Some(re) = req
        .subscribed_topic_regex
        .as_ref()
        .filter(|r| !r.is_empty())
    {
        if let Err(e) = crate::group::consumer::full_match(re) {
            return Some(ConsumerHeartbeatResponse::error(
                ResponseError::InvalidRegularExpression,
                Some(format!("SubscribedTopicRegex {re} is not valid: {e}")),
            ));
        }
    }
    if let Some(a) = &req.server_assignor {
        if !ASSIGNORS.contains(&a.as_str()) {
            return Some(ConsumerHeartbeatResponse::error(
                ResponseError::UnsupportedAssignor,
                Some(format!("ServerAssignor {a} is not supported.")),
            ));
        }
    }
    None
}

fn encode(r: ConsumerHeartbeatResponse) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(r.error)
        .with_error_message(r.error_message.map(sb))
        .with_member_id(r.member_id.map(sb))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
        .with_assignment(r.assignment.map(|tps| {
            Assignment::default().with_topic_partitions(
                tps.into_iter()
                    .map(|(id, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps)
                    })
                    .collect(),
            )
        }))
}

pub(super) async fn handle(
    ctx: &Ctx<'_>,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    if !ctx.authorize_group(AclOperation::Read, &req.group_id.0) {
        let r = ConsumerHeartbeatResponse::error(ResponseError::GroupAuthorizationFailed, None);
        ctx.broker.metrics.error(ctx.api, r.error);
        return encode(r);
    }
    if let Some(r) = validate(ctx.version, &req) {
        tracing::debug!(error = ?r.error_message, request = ?req, "invalid ConsumerGroupHeartbeat");
        ctx.broker.metrics.error(ctx.api, r.error);
        return encode(r);
    }
    let group_id = req.group_id.0.to_string();
    let topics: BTreeMap<String, (uuid::Uuid, i32)> = ctx
        .broker
        .topics()
        .into_iter()
        .filter(|t| t.meta.name != OFFSETS_TOPIC)
        .map(|t| (t.meta.name.clone(), (t.meta.id, t.meta.partitions)))
        .collect();
    let hb = ConsumerHeartbeatRequest {
        group_id: group_id.clone(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|i| i.to_string()),
        rack_id: req.rack_id.map(|r| r.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.map(|r| r.to_string()),
        server_assignor: req.server_assignor.map(|a| a.to_string()),
        owned: req.topic_partitions.map(|tps| {
            tps.into_iter()
                .map(|tp| (tp.topic_id, tp.partitions))
                .collect()
        }),
        new_member_id: uuid::Uuid::new_v4().to_string(),
        client_id: ctx.client_id.to_string(),
        client_host: client_host(ctx),
        topics,
    };
    let response =
        match group_request(ctx, &group_id, move |id| Input::ConsumerHeartbeat(id, hb)).await {
            Ok(Reply::ConsumerHeartbeat(r)) => r,
            Ok(_) => ConsumerHeartbeatResponse::error(mismatched(ctx.api), None),
            Err(e) => ConsumerHeartbeatResponse::error(e, None),
        };
    ctx.broker.metrics.error(ctx.api, response.error);
    encode(response)
}
