//! DescribeCluster (v0-v1). As in Kafka, no permission is needed; the cluster's authorized
//! operations (when asked for) are those of the principal, or 0 without DESCRIBE on the
//! cluster.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use sluice_security::acl::{AclOperation, ResourceType, CLUSTER_NAME};

use super::{sb, Ctx};

pub(super) fn handle(ctx: &Ctx<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let c = &ctx.broker.config;
    let ops = if !req.include_cluster_authorized_operations {
        super::metadata::OPERATIONS_NOT_REQUESTED
    } else if ctx.authorize_cluster(AclOperation::Describe) {
        ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    };
    DescribeClusterResponse::default()
        .with_cluster_id(sb(ctx.broker.cluster_id.clone()))
        .with_controller_id(BrokerId(c.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(c.node_id))
            .with_host(sb(ctx.listener.advertised_host.clone()))
            .with_port(ctx.listener.advertised_port as i32)])
        .with_cluster_authorized_operations(ops)
}
