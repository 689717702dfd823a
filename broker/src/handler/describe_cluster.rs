//! DescribeCluster (v0-v1).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{sb, Ctx};

pub(super) fn handle(ctx: &Ctx<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let c = &ctx.broker.config;
    DescribeClusterResponse::default()
        .with_cluster_id(sb(ctx.broker.cluster_id.clone()))
        .with_controller_id(BrokerId(c.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(c.node_id))
            .with_host(sb(ctx.listener.advertised_host.clone()))
            .with_port(ctx.listener.advertised_port as i32)])
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            super::metadata::CLUSTER_OPERATIONS
        } else {
            super::metadata::OPERATIONS_NOT_REQUESTED
        })
}
