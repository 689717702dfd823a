//! Request handlers, one file per API, and the table of versions the broker advertises.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use sluice_security::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use sluice_security::quota::QuotaType;
use tokio_util::sync::CancellationToken;

use crate::state::Broker;

mod acls;
mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod api_versions;
mod client_quotas;
mod configs;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_transactions;
mod end_txn;
mod fetch;
mod find_coordinator;
mod group_call;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod scram_credentials;
mod sync_group;
mod txn_offset_commit;

pub use api_versions::unsupported_version_response;

/// The API table, written once: it generates [`SUPPORTED`] (what ApiVersions advertises and the
/// connection's version gate checks), [`api_name`] (metric labels) and `dispatch`.
/// `serve` APIs are answered by `dispatch` with the expression given (`ctx` and `r` in scope);
/// `throttled` ones by [`handle_request`] (their quota sets a throttle); `connection` ones by
/// the connection itself (they change its state).
macro_rules! api_table {
    ($ctx:ident, $r:ident;
     serve { $($key:ident $min:literal ..= $max:literal => $handler:expr,)* }
     throttled { $($tkey:ident $tmin:literal ..= $tmax:literal,)* }
     connection { $($ckey:ident $cmin:literal ..= $cmax:literal,)* }
    ) => {
        /// Every API the broker serves with the versions its handler implements. ApiVersions
        /// advertises exactly this table.
        pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
            $((ApiKey::$tkey, $tmin, $tmax),)*
            $((ApiKey::$key, $min, $max),)*
            $((ApiKey::$ckey, $cmin, $cmax),)*
        ];

        /// The API's Kafka name (a metric label); "Other" for an API not served.
        pub fn api_name(k: ApiKey) -> &'static str {
            match k {
                $(ApiKey::$tkey => stringify!($tkey),)*
                $(ApiKey::$key => stringify!($key),)*
                $(ApiKey::$ckey => stringify!($ckey),)*
                _ => "Other",
            }
        }

        /// The APIs no quota throttles.
        async fn dispatch($ctx: &Ctx<'_>, body: RequestKind) -> Option<ResponseKind> {
            match body {
                $(RequestKind::$key($r) => Some(ResponseKind::$key($handler)),)*
                other => {
                    // The connection checks `supported` before decoding: a table mismatch.
                    tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported API");
                    None
                }
            }
        }
    };
}

api_table! { ctx, r;
    serve {
        ListOffsets 1..=8 => list_offsets::handle(ctx, r).await,
        Metadata 0..=12 => metadata::handle(ctx, r).await,
        ApiVersions 0..=4 => api_versions::handle(ctx, r),
        CreateTopics 2..=7 => create_topics::handle(ctx, r).await,
        DeleteTopics 1..=6 => delete_topics::handle(ctx, r).await,
        DeleteRecords 0..=2 => delete_records::handle(ctx, r).await,
        OffsetForLeaderEpoch 2..=4 => offset_for_leader_epoch::handle(ctx, r),
        DescribeConfigs 1..=4 => configs::describe(ctx, r),
        AlterConfigs 0..=2 => configs::alter(ctx, r).await,
        DescribeLogDirs 1..=4 => describe_log_dirs::handle(ctx, r),
        CreatePartitions 0..=3 => create_partitions::handle(ctx, r).await,
        IncrementalAlterConfigs 0..=1 => configs::incremental_alter(ctx, r).await,
        DescribeCluster 0..=1 => describe_cluster::handle(ctx, r),
        FindCoordinator 0..=6 => find_coordinator::handle(ctx, r).await,
        JoinGroup 0..=9 => join_group::handle(ctx, r).await,
        SyncGroup 0..=5 => sync_group::handle(ctx, r).await,
        Heartbeat 0..=4 => heartbeat::handle(ctx, r).await,
        LeaveGroup 0..=5 => leave_group::handle(ctx, r).await,
        OffsetCommit 2..=9 => offset_commit::handle(ctx, r).await,
        OffsetFetch 1..=9 => offset_fetch::handle(ctx, r).await,
        ListGroups 0..=5 => list_groups::handle(ctx, r).await,
        DescribeGroups 0..=6 => describe_groups::handle(ctx, r).await,
        DeleteGroups 0..=2 => delete_groups::handle(ctx, r).await,
        OffsetDelete 0..=0 => offset_delete::handle(ctx, r).await,
        InitProducerId 0..=5 => init_producer_id::handle(ctx, r).await,
        ConsumerGroupHeartbeat 0..=1 => consumer_group_heartbeat::handle(ctx, r).await,
        ConsumerGroupDescribe 0..=1 => consumer_group_describe::handle(ctx, r).await,
        AddPartitionsToTxn 0..=5 => add_partitions_to_txn::handle(ctx, r).await,
        AddOffsetsToTxn 0..=4 => add_offsets_to_txn::handle(ctx, r).await,
        EndTxn 0..=4 => end_txn::handle(ctx, r).await,
        TxnOffsetCommit 0..=4 => txn_offset_commit::handle(ctx, r).await,
        DescribeProducers 0..=0 => describe_producers::handle(ctx, r),
        DescribeTransactions 0..=0 => describe_transactions::describe(ctx, r).await,
        ListTransactions 0..=1 => describe_transactions::list(ctx, r).await,
        DescribeAcls 1..=3 => acls::describe(ctx, r),
        CreateAcls 1..=3 => acls::create(ctx, r).await,
        DeleteAcls 1..=3 => acls::delete(ctx, r).await,
        DescribeUserScramCredentials 0..=0 => scram_credentials::describe(ctx, r),
        AlterUserScramCredentials 0..=0 => scram_credentials::alter(ctx, r).await,
        DescribeClientQuotas 0..=1 => client_quotas::describe(ctx, r),
        AlterClientQuotas 0..=1 => client_quotas::alter(ctx, r).await,
    }
    throttled {
        Produce 3..=11,
        Fetch 4..=16,
    }
    connection {
        SaslHandshake 0..=1,
        SaslAuthenticate 0..=2,
    }
}

/// The version range served for `api_key`, if any.
pub fn supported(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api_key)
        .map(|(_, a, b)| (*a, *b))
}

/// Context of one request.
pub struct Ctx<'a> {
    pub broker: &'a Arc<Broker>,
    pub version: i16,
    /// Cancelled at shutdown: long polls answer early.
    pub shutdown: &'a CancellationToken,
    pub api: &'static str,
    /// The request header's `client_id` (empty when null).
    pub client_id: &'a str,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// Who the client is (`User:ANONYMOUS` when not authenticated), for the authorizer.
    pub principal: &'a str,
    /// The listener the request came in on (Metadata advertises its address).
    pub listener: &'a crate::server::ListenerInfo,
    /// The connection writes file regions itself (`sendfile` on plain TCP): a Fetch response
    /// may hold them instead of record bytes ([`Handled::regions`]).
    pub zero_copy: bool,
}

/// What handling one request produced.
#[derive(Debug)]
pub struct Handled {
    /// The response; `None`: none is sent (produce acks=0).
    pub response: Option<ResponseKind>,
    /// How long the client is over its quota (also in the response's `throttle_time_ms`): the
    /// connection reads no further request for this long (KIP-219), even when no response is
    /// sent. Zero when not throttled.
    pub throttle_ms: u64,
    /// The file regions a Fetch response's external record sets stand for (only with
    /// [`Ctx::zero_copy`]).
    pub regions: Vec<log_store::FileRegion>,
}

/// Runs the handler for a decoded request. `None`: no response is sent (produce acks=0).
pub async fn handle(ctx: &Ctx<'_>, body: RequestKind) -> Option<ResponseKind> {
    handle_request(ctx, body).await.response
}

/// [`handle`], with the throttle time the connection must apply after the response.
pub async fn handle_request(ctx: &Ctx<'_>, body: RequestKind) -> Handled {
    let (response, throttle_ms) = match body {
        RequestKind::Produce(r) => {
            let (response, throttle_ms) = produce::handle(ctx, r).await;
            (response.map(ResponseKind::Produce), throttle_ms)
        }
        RequestKind::Fetch(r) => {
            let (response, throttle_ms, regions) = fetch::handle(ctx, r).await;
            return Handled {
                response: Some(ResponseKind::Fetch(response)),
                throttle_ms,
                regions,
            };
        }
        other => (dispatch(ctx, other).await, 0),
    };
    Handled {
        response,
        throttle_ms,
        regions: Vec::new(),
    }
}

/// The authorization checks handlers make, with Kafka's semantics (`AuthHelper` in Kafka's
/// `KafkaApis`). With `authorizer.enabled=false` every check passes, so handlers behave as
/// they did before the authorizer existed.
impl Ctx<'_> {
    /// Whether the request's principal, from its address, may do `op` on the resource.
    pub(crate) fn authorize(
        &self,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.broker
            .security
            .authorize(self.principal, self.peer.ip(), op, resource_type, name)
    }

    /// `op` on the CLUSTER resource.
    pub(crate) fn authorize_cluster(&self, op: AclOperation) -> bool {
        self.authorize(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// `op` on a topic.
    pub(crate) fn authorize_topic(&self, op: AclOperation, topic: &str) -> bool {
        self.authorize(op, ResourceType::Topic, topic)
    }

    /// `op` on a consumer group.
    pub(crate) fn authorize_group(&self, op: AclOperation, group: &str) -> bool {
        self.authorize(op, ResourceType::Group, group)
    }

    /// `op` on a transactional id.
    pub(crate) fn authorize_transactional_id(&self, op: AclOperation, id: &str) -> bool {
        self.authorize(op, ResourceType::TransactionalId, id)
    }

    /// Records `bytes` on the request's client quota of `quota_type` and returns the throttle
    /// time: 0 within the quota or without one.
    pub(crate) fn record_quota(&self, quota_type: QuotaType, bytes: u64) -> u64 {
        let security = &self.broker.security;
        let now_ms = security.quota_now_ms();
        security.record_quota(quota_type, self.principal, self.client_id, bytes, now_ms)
    }

    /// Takes back a [`Ctx::record_quota`] whose bytes are not sent.
    pub(crate) fn unrecord_quota(&self, quota_type: QuotaType, bytes: u64) {
        let security = &self.broker.security;
        let now_ms = security.quota_now_ms();
        security.unrecord_quota(quota_type, self.principal, self.client_id, bytes, now_ms);
    }

    /// One check per distinct name, as Kafka's `filterByAuthorized`: for requests that name a
    /// topic once per partition.
    pub(crate) fn authorizer_cache(
        &self,
        op: AclOperation,
        resource_type: ResourceType,
    ) -> AuthorizerCache<'_, '_> {
        AuthorizerCache {
            ctx: self,
            op,
            resource_type,
            seen: HashMap::new(),
        }
    }

    /// Kafka's `authorizedOperations`: the bit field (`1 << code`) of the operations the
    /// principal may do on the resource, out of those its type supports.
    pub(crate) fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        sluice_security::authorizer::supported_operations(resource_type)
            .iter()
            .filter(|op| self.authorize(**op, resource_type, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// Kafka's `authorizeByResourceType`: whether the principal may do `op` on at least one
    /// resource of the type. Super users (and `allow.everyone.if.no.acl.found` when no ACL
    /// applies) may; otherwise an ALLOW for `op` (or ALL) on `*`, or on a literal name or a
    /// prefix that no DENY of the principal covers.
    pub(crate) fn authorize_by_resource_type(
        &self,
        op: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        let security = &self.broker.security;
        if !security.authorizer_enabled {
            return true;
        }
        // As Kafka: a made-up name, so super users pass whatever DENY ACLs exist.
        if self.authorize(op, resource_type, "hardcode") {
            return true;
        }
        security
            .authorizer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .authorize_by_resource_type(self.principal, self.peer.ip(), op, resource_type)
    }
}

/// Remembers one authorization decision per resource name (see [`Ctx::authorizer_cache`]).
pub(crate) struct AuthorizerCache<'c, 'a> {
    ctx: &'c Ctx<'a>,
    op: AclOperation,
    resource_type: ResourceType,
    seen: HashMap<String, bool>,
}

impl AuthorizerCache<'_, '_> {
    /// Whether the principal may do the operation on `name`.
    pub(crate) fn allows(&mut self, name: &str) -> bool {
        if let Some(allowed) = self.seen.get(name) {
            return *allowed;
        }
        let allowed = self.ctx.authorize(self.op, self.resource_type, name);
        self.seen.insert(name.to_string(), allowed);
        allowed
    }
}

/// A throttle time for a response's `throttle_time_ms`.
pub(crate) fn throttle_time_ms(ms: u64) -> i32 {
    i32::try_from(ms).unwrap_or(i32::MAX)
}

/// `StrBytes` from a `String`.
pub(crate) fn sb(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}
