//! DescribeLogDirs (v1-v4): the data dir, its partitions' sizes, and the volume's space.
//! Needs DESCRIBE on the cluster: without it the answer is empty (v3+: with
//! CLUSTER_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use kafka_protocol::error::ResponseError;
use sluice_security::acl::AclOperation;

use super::{sb, Ctx};

pub(super) fn handle(ctx: &Ctx<'_>, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let b = ctx.broker;
    if !ctx.authorize_cluster(AclOperation::Describe) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        b.metrics.error(ctx.api, code);
        return DescribeLogDirsResponse::default().with_error_code(code);
    }
    let wanted = |topic: &str, p: i32| match &req.topics {
        None => true,
        Some(list) => list
            .iter()
            .any(|t| t.topic.0.as_str() == topic && t.partitions.contains(&p)),
    };
    let mut topics = Vec::new();
    for t in b.topics() {
        let partitions: Vec<_> = t
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| wanted(&t.meta.name, *i as i32))
            .filter_map(|(i, p)| {
                let size = p.size_bytes().ok()?;
                Some(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(i as i32)
                        .with_partition_size(size as i64),
                )
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(sb(t.meta.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    let dir =
        std::fs::canonicalize(&b.config.data_dir).unwrap_or_else(|_| b.config.data_dir.clone());
    let (total, usable) = if ctx.version >= 4 {
        (
            fs4::total_space(&dir).map_or(-1, |v| v as i64),
            fs4::available_space(&dir).map_or(-1, |v| v as i64),
        )
    } else {
        (-1, -1)
    };
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(sb(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)])
}
