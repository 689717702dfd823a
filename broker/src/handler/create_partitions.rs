//! CreatePartitions (v0-v3). Each topic needs ALTER (TOPIC_AUTHORIZATION_FAILED), as in
//! Kafka.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use kafka_protocol::error::ResponseError;
use sluice_security::acl::AclOperation;

use super::{sb, Ctx};

pub(super) async fn handle(
    ctx: &Ctx<'_>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let r = CreatePartitionsTopicResult::default().with_name(t.name);
        if !ctx.authorize_topic(AclOperation::Alter, &name) {
            let code = ResponseError::TopicAuthorizationFailed.code();
            ctx.broker.metrics.error(ctx.api, code);
            results.push(
                r.with_error_code(code)
                    .with_error_message(Some(sb("The topic authorization is failed."))),
            );
            continue;
        }
        results.push(
            match ctx
                .broker
                .create_partitions(&name, t.count, req.validate_only)
                .await
            {
                Ok(()) => r,
                Err((code, msg)) => {
                    ctx.broker.metrics.error(ctx.api, code.code());
                    r.with_error_code(code.code())
                        .with_error_message(Some(sb(msg)))
                }
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}
