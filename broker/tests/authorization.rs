//! Authorization through the broker's handlers, in process, with `authorizer.enabled=true`
//! and `super.users=User:admin`.
//!
//! The matrix: for each API the clients use, each of {a user without ACLs, a user with literal
//! ACLs, a user with prefixed ACLs, a user whose ALLOW is overridden by a DENY, the super
//! user} gets exactly Kafka's error code. Then ACL persistence across a reopen, the ACL APIs'
//! errors (SECURITY_DISABLED without an authorizer, INVALID_REQUEST), and
//! Describe/AlterUserScramCredentials round trips with their error cases.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice_broker::config::BrokerConfig;
use sluice_broker::state::Broker;
use sluice_security::acl::{AclOperation, AclPermissionType, PatternType, ResourceType};
use sluice_security::scram::ScramMechanism;
use tokio_util::sync::CancellationToken;

mod common;
use common::Caller;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NONE: i16 = 0;
const INVALID_REQUEST: i16 = 42;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const SECURITY_DISABLED: i16 = 54;
const MEMBER_ID_REQUIRED: i16 = 79;
const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

const ADMIN: &str = "User:admin";
/// The topic the data-plane APIs use; prefixed ACLs name `orders-`.
const TOPIC: &str = "orders-1";
/// The group FindCoordinator and JoinGroup use; prefixed ACLs name `group-`.
const GROUP: &str = "group-1";
/// The group the offset APIs use (no member ever joins it).
const OFFSETS_GROUP: &str = "group-offsets";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn caller(
    dir: &std::path::Path,
    authorizer: bool,
) -> Result<Caller, Box<dyn std::error::Error>> {
    common::secured_caller(dir, authorizer, TOPIC, 2).await
}

/// The five kinds of principal of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// A valid user that no ACL names (other users' ACLs exist on the resources).
    NoAcl,
    /// ALLOW ACLs on the literal resource names.
    Literal,
    /// ALLOW ACLs on prefixes of the names (`orders-`, `group-`, `txn-`).
    Prefixed,
    /// Literal ALLOWs plus a prefixed DENY of the first permission: the DENY wins.
    Denied,
    /// `super.users`.
    Super,
}

const CASES: [Case; 5] = [
    Case::NoAcl,
    Case::Literal,
    Case::Prefixed,
    Case::Denied,
    Case::Super,
];

impl Case {
    fn allowed(self) -> bool {
        matches!(self, Case::Literal | Case::Prefixed | Case::Super)
    }

    fn tag(self) -> &'static str {
        match self {
            Case::NoAcl => "none",
            Case::Literal => "literal",
            Case::Prefixed => "prefixed",
            Case::Denied => "denied",
            Case::Super => "super",
        }
    }
}

/// A permission an API needs: an operation on a resource, and the prefix a prefixed ACL uses.
struct Need {
    resource_type: ResourceType,
    name: String,
    prefix: String,
    op: AclOperation,
}

fn need(resource_type: ResourceType, name: &str, op: AclOperation) -> Need {
    let prefix = match resource_type {
        ResourceType::Cluster => "kafka-cluster".to_string(),
        _ => match name.find('-') {
            Some(i) => name[..=i].to_string(),
            None => name.to_string(),
        },
    };
    Need {
        resource_type,
        name: name.to_string(),
        prefix,
        op,
    }
}

fn creation(
    permission: AclPermissionType,
    op: AclOperation,
    principal: &str,
    resource_type: ResourceType,
    pattern: PatternType,
    name: &str,
) -> create_acls_request::AclCreation {
    create_acls_request::AclCreation::default()
        .with_resource_type(resource_type.code())
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern.code())
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(op.code())
        .with_permission_type(permission.code())
}

impl Caller {
    async fn create_acls(
        &self,
        principal: &str,
        creations: Vec<create_acls_request::AclCreation>,
    ) -> Result<Vec<i16>, String> {
        let req = CreateAclsRequest::default().with_creations(creations);
        match self
            .call_as(
                principal,
                ApiKey::CreateAcls,
                3,
                RequestKind::CreateAcls(req),
            )
            .await?
        {
            ResponseKind::CreateAcls(r) => Ok(r.results.iter().map(|r| r.error_code).collect()),
            other => Err(format!("CreateAcls: {other:?}")),
        }
    }

    /// Gives the case's principal (a new one per API and case) what `needs` says; returns it.
    async fn principal_for(&self, api: &str, case: Case, needs: &[Need]) -> Result<String, String> {
        if case == Case::Super {
            return Ok(ADMIN.to_string());
        }
        let principal = format!("User:{api}-{}", case.tag());
        let allow = AclPermissionType::Allow;
        let mut creations = Vec::new();
        for n in needs {
            match case {
                Case::Literal | Case::Denied => creations.push(creation(
                    allow,
                    n.op,
                    &principal,
                    n.resource_type,
                    PatternType::Literal,
                    &n.name,
                )),
                Case::Prefixed => creations.push(creation(
                    allow,
                    n.op,
                    &principal,
                    n.resource_type,
                    PatternType::Prefixed,
                    &n.prefix,
                )),
                Case::NoAcl | Case::Super => {}
            }
        }
        if case == Case::Denied {
            let n = &needs[0];
            creations.push(creation(
                AclPermissionType::Deny,
                n.op,
                &principal,
                n.resource_type,
                PatternType::Prefixed,
                &n.prefix,
            ));
        }
        if case == Case::NoAcl {
            // Someone else's ACL on the resources, so "no ACL found" is not what decides.
            for n in needs {
                creations.push(creation(
                    allow,
                    n.op,
                    "User:somebody-else",
                    n.resource_type,
                    PatternType::Literal,
                    &n.name,
                ));
            }
        }
        let codes = self.create_acls(ADMIN, creations).await?;
        if codes.iter().any(|c| *c != NONE) {
            return Err(format!("CreateAcls as admin: {codes:?}"));
        }
        Ok(principal)
    }

    async fn init(&self, principal: &str, id: Option<&str>) -> Result<(i16, i64, i16), String> {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(id.map(|i| TransactionalId(s(i))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        match self
            .call_as(
                principal,
                ApiKey::InitProducerId,
                4,
                RequestKind::InitProducerId(req),
            )
            .await?
        {
            ResponseKind::InitProducerId(r) => {
                Ok((r.error_code, r.producer_id.0, r.producer_epoch))
            }
            other => Err(format!("InitProducerId: {other:?}")),
        }
    }

    async fn add_partitions(
        &self,
        principal: &str,
        id: &str,
        (pid, epoch): (i64, i16),
        topic: &str,
    ) -> Result<i16, String> {
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(id)))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![0]),
            ]);
        match self
            .call_as(
                principal,
                ApiKey::AddPartitionsToTxn,
                3,
                RequestKind::AddPartitionsToTxn(req),
            )
            .await?
        {
            ResponseKind::AddPartitionsToTxn(r) => {
                Ok(r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code)
            }
            other => Err(format!("AddPartitionsToTxn: {other:?}")),
        }
    }
}

fn produce_request(
    topic: &str,
    transactional_id: Option<&str>,
    records: Vec<u8>,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(transactional_id.map(|i| TransactionalId(s(i))))
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(records))),
            ])])
}

async fn produce(c: &Caller, principal: &str, topic: &str) -> Result<i16, String> {
    let batch = log_store::testing::build_batch(2, 10, 1_700_000_000_000, None);
    match c
        .call_as(
            principal,
            ApiKey::Produce,
            9,
            RequestKind::Produce(produce_request(topic, None, batch)),
        )
        .await?
    {
        ResponseKind::Produce(r) => Ok(r.responses[0].partition_responses[0].error_code),
        other => Err(format!("Produce: {other:?}")),
    }
}

async fn fetch(c: &Caller, principal: &str, topic: &str) -> Result<i16, String> {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    match c
        .call_as(principal, ApiKey::Fetch, 12, RequestKind::Fetch(req))
        .await?
    {
        ResponseKind::Fetch(r) => Ok(r.responses[0].partitions[0].error_code),
        other => Err(format!("Fetch: {other:?}")),
    }
}

async fn list_offsets(c: &Caller, principal: &str, topic: &str) -> Result<i16, String> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    match c
        .call_as(
            principal,
            ApiKey::ListOffsets,
            7,
            RequestKind::ListOffsets(req),
        )
        .await?
    {
        ResponseKind::ListOffsets(r) => Ok(r.topics[0].partitions[0].error_code),
        other => Err(format!("ListOffsets: {other:?}")),
    }
}

async fn metadata(
    c: &Caller,
    principal: &str,
    topics: Option<&[&str]>,
    auto_create: bool,
) -> Result<MetadataResponse, String> {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(s(t))))
                })
                .collect()
        }))
        .with_allow_auto_topic_creation(auto_create)
        .with_include_topic_authorized_operations(true);
    match c
        .call_as(principal, ApiKey::Metadata, 9, RequestKind::Metadata(req))
        .await?
    {
        ResponseKind::Metadata(r) => Ok(r),
        other => Err(format!("Metadata: {other:?}")),
    }
}

async fn create_topic(
    c: &Caller,
    principal: &str,
    topic: &str,
) -> Result<CreateTopicsResponse, String> {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(1)
            .with_replication_factor(1)])
        .with_timeout_ms(5_000)
        .with_validate_only(true);
    match c
        .call_as(
            principal,
            ApiKey::CreateTopics,
            7,
            RequestKind::CreateTopics(req),
        )
        .await?
    {
        ResponseKind::CreateTopics(r) => Ok(r),
        other => Err(format!("CreateTopics: {other:?}")),
    }
}

async fn delete_topic(c: &Caller, principal: &str, topic: &str) -> Result<i16, String> {
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(s(topic))])
        .with_timeout_ms(5_000);
    match c
        .call_as(
            principal,
            ApiKey::DeleteTopics,
            5,
            RequestKind::DeleteTopics(req),
        )
        .await?
    {
        ResponseKind::DeleteTopics(r) => Ok(r.responses[0].error_code),
        other => Err(format!("DeleteTopics: {other:?}")),
    }
}

async fn find_coordinator(
    c: &Caller,
    principal: &str,
    key_type: i8,
    key: &str,
) -> Result<i16, String> {
    let req = FindCoordinatorRequest::default()
        .with_key_type(key_type)
        .with_coordinator_keys(vec![s(key)]);
    match c
        .call_as(
            principal,
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(req),
        )
        .await?
    {
        ResponseKind::FindCoordinator(r) => Ok(r.coordinators[0].error_code),
        other => Err(format!("FindCoordinator: {other:?}")),
    }
}

async fn join_group(c: &Caller, principal: &str, group: &str) -> Result<i16, String> {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"\0\0"))]);
    match c
        .call_as(principal, ApiKey::JoinGroup, 5, RequestKind::JoinGroup(req))
        .await?
    {
        ResponseKind::JoinGroup(r) => Ok(r.error_code),
        other => Err(format!("JoinGroup: {other:?}")),
    }
}

async fn offset_commit(
    c: &Caller,
    principal: &str,
    group: &str,
    topic: &str,
) -> Result<i16, String> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ]);
    match c
        .call_as(
            principal,
            ApiKey::OffsetCommit,
            8,
            RequestKind::OffsetCommit(req),
        )
        .await?
    {
        ResponseKind::OffsetCommit(r) => Ok(r.topics[0].partitions[0].error_code),
        other => Err(format!("OffsetCommit: {other:?}")),
    }
}

/// OffsetFetch v8 of one partition: the group's error, else the partition's.
async fn offset_fetch(
    c: &Caller,
    principal: &str,
    group: &str,
    topic: &str,
) -> Result<i16, String> {
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_indexes(vec![0]),
            ])),
    ]);
    match c
        .call_as(
            principal,
            ApiKey::OffsetFetch,
            8,
            RequestKind::OffsetFetch(req),
        )
        .await?
    {
        ResponseKind::OffsetFetch(r) => {
            let g = &r.groups[0];
            if g.error_code != NONE {
                return Ok(g.error_code);
            }
            Ok(g.topics[0].partitions[0].error_code)
        }
        other => Err(format!("OffsetFetch: {other:?}")),
    }
}

async fn end_txn(
    c: &Caller,
    principal: &str,
    id: &str,
    (pid, epoch): (i64, i16),
) -> Result<i16, String> {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(false);
    match c
        .call_as(principal, ApiKey::EndTxn, 3, RequestKind::EndTxn(req))
        .await?
    {
        ResponseKind::EndTxn(r) => Ok(r.error_code),
        other => Err(format!("EndTxn: {other:?}")),
    }
}

async fn describe_acls(c: &Caller, principal: &str) -> Result<DescribeAclsResponse, String> {
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(ResourceType::Any.code())
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_principal_filter(None)
        .with_pattern_type_filter(PatternType::Any.code())
        .with_operation(AclOperation::Any.code())
        .with_permission_type(AclPermissionType::Any.code());
    match c
        .call_as(
            principal,
            ApiKey::DescribeAcls,
            3,
            RequestKind::DescribeAcls(req),
        )
        .await?
    {
        ResponseKind::DescribeAcls(r) => Ok(r),
        other => Err(format!("DescribeAcls: {other:?}")),
    }
}

/// Checks one matrix cell.
fn expect(api: &str, case: Case, got: i16, allowed: i16, refused: i16) -> Result<(), String> {
    let want = if case.allowed() { allowed } else { refused };
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{api}, {case:?}: error code {got}, expected {want}"
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_matrix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), true).await?;
    use AclOperation::*;
    use ResourceType::{Topic, TransactionalId};

    for case in CASES {
        let p = c
            .principal_for("produce", case, &[need(Topic, TOPIC, Write)])
            .await?;
        expect(
            "Produce",
            case,
            produce(&c, &p, TOPIC).await?,
            NONE,
            TOPIC_AUTHORIZATION_FAILED,
        )?;

        let p = c
            .principal_for("fetch", case, &[need(Topic, TOPIC, Read)])
            .await?;
        expect(
            "Fetch",
            case,
            fetch(&c, &p, TOPIC).await?,
            NONE,
            TOPIC_AUTHORIZATION_FAILED,
        )?;

        let p = c
            .principal_for("list-offsets", case, &[need(Topic, TOPIC, Describe)])
            .await?;
        expect(
            "ListOffsets",
            case,
            list_offsets(&c, &p, TOPIC).await?,
            NONE,
            TOPIC_AUTHORIZATION_FAILED,
        )?;

        let p = c
            .principal_for("metadata", case, &[need(Topic, TOPIC, Describe)])
            .await?;
        let m = metadata(&c, &p, Some(&[TOPIC]), false).await?;
        expect(
            "Metadata",
            case,
            m.topics[0].error_code,
            NONE,
            TOPIC_AUTHORIZATION_FAILED,
        )?;
        if case.allowed() {
            assert_eq!(m.topics[0].partitions.len(), 2);
            // Topic authorized operations: DESCRIBE (and READ/WRITE/... for the super user).
            let ops = m.topics[0].topic_authorized_operations;
            assert_ne!(ops & (1 << Describe.code()), 0, "{case:?}: {ops:b}");
            assert_eq!(
                ops & (1 << Write.code()) != 0,
                case == Case::Super,
                "{case:?}: {ops:b}"
            );
        } else {
            assert!(
                m.topics[0].partitions.is_empty(),
                "nothing about a refused topic"
            );
        }

        // CreateTopics (validate only, so each case can create the same kind of name).
        let new_topic = format!("orders-new-{}", case.tag());
        let p = c
            .principal_for("create-topics", case, &[need(Topic, &new_topic, Create)])
            .await?;
        let r = create_topic(&c, &p, &new_topic).await?;
        expect(
            "CreateTopics",
            case,
            r.topics[0].error_code,
            NONE,
            TOPIC_AUTHORIZATION_FAILED,
        )?;
        if case.allowed() && case != Case::Super {
            // Without DESCRIBE_CONFIGS the created topic's configs are not shown.
            assert_eq!(
                r.topics[0].topic_config_error_code,
                TOPIC_AUTHORIZATION_FAILED
            );
            assert_eq!(r.topics[0].num_partitions, -1);
        }
        if case == Case::Super {
            assert_eq!(r.topics[0].topic_config_error_code, NONE);
            assert_eq!(r.topics[0].num_partitions, 1);
        }

        let doomed = format!("orders-del-{}", case.tag());
        c.broker
            .create_topic(&doomed, 1, Default::default(), false)
            .await
            .map_err(|(_, m)| m)?;
        let p = c
            .principal_for("delete-topics", case, &[need(Topic, &doomed, Delete)])
            .await?;
        expect(
            "DeleteTopics",
            case,
            delete_topic(&c, &p, &doomed).await?,
            NONE,
            TOPIC_AUTHORIZATION_FAILED,
        )?;
        assert_eq!(
            c.broker.topic(&doomed).is_none(),
            case.allowed(),
            "{case:?}"
        );

        // Idempotent producer: IDEMPOTENT_WRITE on the cluster.
        let p = c
            .principal_for(
                "init-idempotent",
                case,
                &[need(
                    ResourceType::Cluster,
                    "kafka-cluster",
                    IdempotentWrite,
                )],
            )
            .await?;
        expect(
            "InitProducerId (idempotent)",
            case,
            c.init(&p, None).await?.0,
            NONE,
            CLUSTER_AUTHORIZATION_FAILED,
        )?;

        // Transactional producer: WRITE on the transactional id.
        let id = format!("txn-init-{}", case.tag());
        let p = c
            .principal_for("init-txn", case, &[need(TransactionalId, &id, Write)])
            .await?;
        expect(
            "InitProducerId (transactional)",
            case,
            c.init(&p, Some(&id)).await?.0,
            NONE,
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        )?;

        // AddPartitionsToTxn: WRITE on the transactional id and on the topic. The admin opens
        // the producer, so every case starts from the same state.
        let id = format!("txn-add-{}", case.tag());
        let (code, pid, epoch) = c.init(ADMIN, Some(&id)).await?;
        assert_eq!(code, NONE);
        let p = c
            .principal_for(
                "add-partitions",
                case,
                &[need(TransactionalId, &id, Write), need(Topic, TOPIC, Write)],
            )
            .await?;
        expect(
            "AddPartitionsToTxn",
            case,
            c.add_partitions(&p, &id, (pid, epoch), TOPIC).await?,
            NONE,
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        )?;

        // EndTxn (abort) of a transaction the admin started: WRITE on the transactional id.
        let id = format!("txn-end-{}", case.tag());
        let (_, pid, epoch) = c.init(ADMIN, Some(&id)).await?;
        assert_eq!(
            c.add_partitions(ADMIN, &id, (pid, epoch), TOPIC).await?,
            NONE
        );
        let p = c
            .principal_for("end-txn", case, &[need(TransactionalId, &id, Write)])
            .await?;
        expect(
            "EndTxn",
            case,
            end_txn(&c, &p, &id, (pid, epoch)).await?,
            NONE,
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        )?;
    }
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_matrix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), true).await?;
    use AclOperation::*;
    use ResourceType::{Group, Topic};

    for case in CASES {
        let p = c
            .principal_for("find-coordinator", case, &[need(Group, GROUP, Describe)])
            .await?;
        expect(
            "FindCoordinator (group)",
            case,
            find_coordinator(&c, &p, 0, GROUP).await?,
            NONE,
            GROUP_AUTHORIZATION_FAILED,
        )?;

        let p = c
            .principal_for("join-group", case, &[need(Group, GROUP, Read)])
            .await?;
        // A v4+ join without a member id is asked to come back with one: allowed.
        expect(
            "JoinGroup",
            case,
            join_group(&c, &p, GROUP).await?,
            MEMBER_ID_REQUIRED,
            GROUP_AUTHORIZATION_FAILED,
        )?;

        let p = c
            .principal_for(
                "offset-commit",
                case,
                &[need(Group, OFFSETS_GROUP, Read), need(Topic, TOPIC, Read)],
            )
            .await?;
        expect(
            "OffsetCommit",
            case,
            offset_commit(&c, &p, OFFSETS_GROUP, TOPIC).await?,
            NONE,
            GROUP_AUTHORIZATION_FAILED,
        )?;

        let p = c
            .principal_for(
                "offset-fetch",
                case,
                &[
                    need(Group, OFFSETS_GROUP, Describe),
                    need(Topic, TOPIC, Describe),
                ],
            )
            .await?;
        expect(
            "OffsetFetch",
            case,
            offset_fetch(&c, &p, OFFSETS_GROUP, TOPIC).await?,
            NONE,
            GROUP_AUTHORIZATION_FAILED,
        )?;
    }

    // The group allowed, the topic not: per-partition TOPIC_AUTHORIZATION_FAILED.
    let p = c
        .principal_for(
            "commit-group-only",
            Case::Literal,
            &[need(Group, OFFSETS_GROUP, Read)],
        )
        .await?;
    assert_eq!(
        offset_commit(&c, &p, OFFSETS_GROUP, TOPIC).await?,
        TOPIC_AUTHORIZATION_FAILED
    );
    let p = c
        .principal_for(
            "fetch-group-only",
            Case::Literal,
            &[need(Group, OFFSETS_GROUP, Describe)],
        )
        .await?;
    assert_eq!(
        offset_fetch(&c, &p, OFFSETS_GROUP, TOPIC).await?,
        TOPIC_AUTHORIZATION_FAILED
    );

    // ListGroups: only groups the principal may describe, unless it may describe the cluster.
    let listed = |principal: String| {
        let c = &c;
        async move {
            match c
                .call_as(
                    &principal,
                    ApiKey::ListGroups,
                    4,
                    RequestKind::ListGroups(ListGroupsRequest::default()),
                )
                .await?
            {
                ResponseKind::ListGroups(r) => Ok::<_, String>(
                    r.groups
                        .iter()
                        .map(|g| g.group_id.0.to_string())
                        .collect::<Vec<_>>(),
                ),
                other => Err(format!("ListGroups: {other:?}")),
            }
        }
    };
    assert!(listed("User:nobody".into()).await?.is_empty());
    let all = listed(ADMIN.into()).await?;
    assert!(all.contains(&OFFSETS_GROUP.to_string()), "{all:?}");
    let p = c
        .principal_for(
            "list-groups",
            Case::Prefixed,
            &[need(Group, GROUP, Describe)],
        )
        .await?;
    assert_eq!(listed(p).await?, all, "group- covers every group");
    let p = c
        .principal_for(
            "list-one-group",
            Case::Literal,
            &[need(Group, OFFSETS_GROUP, Describe)],
        )
        .await?;
    assert_eq!(listed(p).await?, vec![OFFSETS_GROUP.to_string()]);
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_api_matrix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), true).await?;
    use AclOperation::*;
    use ResourceType::Cluster;
    for case in CASES {
        let p = c
            .principal_for(
                "describe-acls",
                case,
                &[need(Cluster, "kafka-cluster", Describe)],
            )
            .await?;
        let r = describe_acls(&c, &p).await?;
        expect(
            "DescribeAcls",
            case,
            r.error_code,
            NONE,
            CLUSTER_AUTHORIZATION_FAILED,
        )?;
        if case.allowed() {
            assert!(!r.resources.is_empty());
        }

        let p = c
            .principal_for(
                "create-acls",
                case,
                &[need(Cluster, "kafka-cluster", Alter)],
            )
            .await?;
        let codes = c
            .create_acls(
                &p,
                vec![creation(
                    AclPermissionType::Allow,
                    Read,
                    "User:zed",
                    ResourceType::Topic,
                    PatternType::Literal,
                    "zed",
                )],
            )
            .await?;
        expect(
            "CreateAcls",
            case,
            codes[0],
            NONE,
            CLUSTER_AUTHORIZATION_FAILED,
        )?;
    }
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finer_points_follow_kafka() -> TestResult {
    use AclOperation::*;
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), true).await?;

    // A transactional produce needs WRITE on its transactional id, whatever the topic allows.
    let p = c
        .principal_for(
            "txn-produce",
            Case::Literal,
            &[need(ResourceType::Topic, TOPIC, Write)],
        )
        .await?;
    let (_, pid, epoch) = c.init(ADMIN, Some("txn-produce")).await?;
    let batch =
        log_store::testing::build_transactional_batch(1, 10, 1_700_000_000_000, (pid, epoch, 0));
    let r = c
        .call_as(
            &p,
            ApiKey::Produce,
            9,
            RequestKind::Produce(produce_request(TOPIC, Some("txn-produce"), batch)),
        )
        .await?;
    let ResponseKind::Produce(r) = r else {
        return Err("not Produce".into());
    };
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );

    // An idempotent producer may also init with WRITE on any topic (KIP-679).
    let p = c
        .principal_for(
            "idempotent-by-topic",
            Case::Prefixed,
            &[need(ResourceType::Topic, TOPIC, Write)],
        )
        .await?;
    assert_eq!(c.init(&p, None).await?.0, NONE);

    // Metadata for all topics lists only the topics the principal may describe.
    let p = c
        .principal_for(
            "metadata-all",
            Case::Literal,
            &[need(ResourceType::Topic, TOPIC, Describe)],
        )
        .await?;
    c.broker
        .create_topic("secret", 1, Default::default(), false)
        .await
        .map_err(|(_, m)| m)?;
    let m = metadata(&c, &p, None, false).await?;
    let names: Vec<String> = m
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    assert_eq!(names, vec![TOPIC.to_string()]);
    // Auto-creation needs CREATE: DESCRIBE alone gets TOPIC_AUTHORIZATION_FAILED.
    let p = c
        .principal_for(
            "auto-create",
            Case::Literal,
            &[need(ResourceType::Topic, "orders-auto", Describe)],
        )
        .await?;
    let m = metadata(&c, &p, Some(&["orders-auto"]), true).await?;
    assert_eq!(m.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    assert!(c.broker.topic("orders-auto").is_none());

    // FindCoordinator for a transactional id: DESCRIBE on it.
    assert_eq!(
        find_coordinator(&c, "User:nobody", 1, "txn-x").await?,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );

    // DescribeCluster: cluster authorized operations are the principal's (0 without
    // DESCRIBE on the cluster).
    let req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let ops = |r: ResponseKind| match r {
        ResponseKind::DescribeCluster(r) => Ok(r.cluster_authorized_operations),
        other => Err(format!("DescribeCluster: {other:?}")),
    };
    let none = ops(c
        .call_as(
            "User:nobody",
            ApiKey::DescribeCluster,
            1,
            RequestKind::DescribeCluster(req.clone()),
        )
        .await?)?;
    assert_eq!(none, 0);
    let all = ops(c
        .call_as(
            ADMIN,
            ApiKey::DescribeCluster,
            1,
            RequestKind::DescribeCluster(req),
        )
        .await?)?;
    assert_ne!(all & (1 << Alter.code()), 0);
    assert_ne!(all & (1 << ClusterAction.code()), 0);

    // CreateAcls refuses bindings Kafka refuses, one by one.
    let codes = c
        .create_acls(
            ADMIN,
            vec![
                creation(
                    AclPermissionType::Allow,
                    Read,
                    "alice",
                    ResourceType::Topic,
                    PatternType::Literal,
                    "t",
                ),
                creation(
                    AclPermissionType::Allow,
                    Read,
                    "User:alice",
                    ResourceType::Topic,
                    PatternType::Match,
                    "t",
                ),
                creation(
                    AclPermissionType::Allow,
                    Read,
                    "User:alice",
                    ResourceType::Cluster,
                    PatternType::Literal,
                    "c",
                ),
                creation(
                    AclPermissionType::Allow,
                    Any,
                    "User:alice",
                    ResourceType::Topic,
                    PatternType::Literal,
                    "t",
                ),
                creation(
                    AclPermissionType::Allow,
                    Read,
                    "User:alice",
                    ResourceType::Topic,
                    PatternType::Literal,
                    "t",
                ),
            ],
        )
        .await?;
    assert_eq!(
        codes,
        vec![
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            NONE
        ]
    );

    // DeleteAcls returns what it removed, and the removal takes effect at once.
    let p = c
        .principal_for(
            "deleted",
            Case::Literal,
            &[need(ResourceType::Topic, TOPIC, Read)],
        )
        .await?;
    assert_eq!(fetch(&c, &p, TOPIC).await?, NONE);
    let req = DeleteAclsRequest::default().with_filters(vec![
        delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(ResourceType::Any.code())
            .with_resource_name_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(PatternType::Any.code())
            .with_principal_filter(Some(s(&p)))
            .with_operation(Any.code())
            .with_permission_type(AclPermissionType::Any.code()),
    ]);
    let ResponseKind::DeleteAcls(r) = c
        .call_as(ADMIN, ApiKey::DeleteAcls, 3, RequestKind::DeleteAcls(req))
        .await?
    else {
        return Err("not DeleteAcls".into());
    };
    assert_eq!(r.filter_results[0].error_code, NONE);
    assert_eq!(r.filter_results[0].matching_acls.len(), 1);
    assert_eq!(
        r.filter_results[0].matching_acls[0].resource_name.as_str(),
        TOPIC
    );
    assert_eq!(fetch(&c, &p, TOPIC).await?, TOPIC_AUTHORIZATION_FAILED);
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_authorizer_everything_is_allowed_and_acl_apis_are_disabled() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), false).await?;
    assert_eq!(produce(&c, "User:nobody", TOPIC).await?, NONE);
    assert_eq!(fetch(&c, "User:nobody", TOPIC).await?, NONE);
    assert_eq!(
        describe_acls(&c, "User:nobody").await?.error_code,
        SECURITY_DISABLED
    );
    let codes = c
        .create_acls(
            ADMIN,
            vec![creation(
                AclPermissionType::Allow,
                AclOperation::Read,
                "User:a",
                ResourceType::Topic,
                PatternType::Literal,
                "t",
            )],
        )
        .await?;
    assert_eq!(codes, vec![SECURITY_DISABLED]);
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_survive_a_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let c = caller(dir.path(), true).await?;
        let p = c
            .principal_for(
                "durable",
                Case::Prefixed,
                &[need(ResourceType::Topic, TOPIC, AclOperation::Read)],
            )
            .await?;
        assert_eq!(fetch(&c, &p, TOPIC).await?, NONE);
        c.broker.shutdown().await;
    }
    let c = caller(dir.path(), true).await?;
    let r = describe_acls(&c, ADMIN).await?;
    assert_eq!(r.error_code, NONE);
    let durable: Vec<_> = r
        .resources
        .iter()
        .filter(|res| res.resource_name.as_str() == "orders-")
        .flat_map(|res| {
            res.acls
                .iter()
                .map(move |a| (res.pattern_type, a.principal.to_string()))
        })
        .collect();
    assert_eq!(
        durable,
        vec![(
            PatternType::Prefixed.code(),
            "User:durable-prefixed".to_string()
        )]
    );
    assert_eq!(fetch(&c, "User:durable-prefixed", TOPIC).await?, NONE);
    assert_eq!(
        fetch(&c, "User:other", TOPIC).await?,
        TOPIC_AUTHORIZATION_FAILED
    );
    c.broker.shutdown().await;
    Ok(())
}

// --- SCRAM credentials -------------------------------------------------------------------

fn upsertion(
    user: &str,
    mechanism: i8,
    iterations: i32,
    password: &str,
) -> alter_user_scram_credentials_request::ScramCredentialUpsertion {
    let salt = format!("salt-of-{user}").into_bytes();
    let salted = match ScramMechanism::from_type_id(mechanism) {
        Some(m) => sluice_cli::user::salted_password(m, password, &salt, iterations.max(1) as u32),
        None => vec![1; 32],
    };
    alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
        .with_name(s(user))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted))
}

fn deletion(
    user: &str,
    mechanism: i8,
) -> alter_user_scram_credentials_request::ScramCredentialDeletion {
    alter_user_scram_credentials_request::ScramCredentialDeletion::default()
        .with_name(s(user))
        .with_mechanism(mechanism)
}

impl Caller {
    /// AlterUserScramCredentials: (user, error code) in the answer's order.
    async fn alter_users(
        &self,
        principal: &str,
        deletions: Vec<alter_user_scram_credentials_request::ScramCredentialDeletion>,
        upsertions: Vec<alter_user_scram_credentials_request::ScramCredentialUpsertion>,
    ) -> Result<Vec<(String, i16)>, String> {
        let req = AlterUserScramCredentialsRequest::default()
            .with_deletions(deletions)
            .with_upsertions(upsertions);
        match self
            .call_as(
                principal,
                ApiKey::AlterUserScramCredentials,
                0,
                RequestKind::AlterUserScramCredentials(req),
            )
            .await?
        {
            ResponseKind::AlterUserScramCredentials(r) => Ok(r
                .results
                .iter()
                .map(|r| (r.user.to_string(), r.error_code))
                .collect()),
            other => Err(format!("AlterUserScramCredentials: {other:?}")),
        }
    }

    async fn describe_users(
        &self,
        principal: &str,
        users: Option<&[&str]>,
    ) -> Result<DescribeUserScramCredentialsResponse, String> {
        let req = DescribeUserScramCredentialsRequest::default().with_users(users.map(|us| {
            us.iter()
                .map(|u| {
                    describe_user_scram_credentials_request::UserName::default().with_name(s(u))
                })
                .collect()
        }));
        match self
            .call_as(
                principal,
                ApiKey::DescribeUserScramCredentials,
                0,
                RequestKind::DescribeUserScramCredentials(req),
            )
            .await?
        {
            ResponseKind::DescribeUserScramCredentials(r) => Ok(r),
            other => Err(format!("DescribeUserScramCredentials: {other:?}")),
        }
    }
}

fn owned(v: &[(&str, i16)]) -> Vec<(String, i16)> {
    v.iter().map(|(u, c)| (u.to_string(), *c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_credentials_round_trip() -> TestResult {
    const SHA256: i8 = 1;
    const SHA512: i8 = 2;
    let dir = tempfile::tempdir()?;
    {
        let c = caller(dir.path(), true).await?;
        // Upserts: the broker stores what the salted password implies, so the password works.
        let r = c
            .alter_users(
                ADMIN,
                vec![],
                vec![
                    upsertion("alice", SHA256, 4096, "alice-secret"),
                    upsertion("alice", SHA512, 8192, "alice-secret"),
                    upsertion("bob", SHA512, 4096, "bob-secret"),
                ],
            )
            .await?;
        assert_eq!(r, owned(&[("alice", NONE), ("bob", NONE)]));
        {
            let store = c
                .broker
                .security
                .credentials
                .read()
                .map_err(|e| e.to_string())?;
            assert!(store.verify_plain("alice", "alice-secret"));
            assert!(!store.verify_plain("alice", "bob-secret"));
            assert!(store.verify_plain("bob", "bob-secret"));
        }
        let d = c.describe_users(ADMIN, None).await?;
        assert_eq!(d.error_code, NONE);
        let described: Vec<(String, Vec<(i8, i32)>)> = d
            .results
            .iter()
            .map(|r| {
                (
                    r.user.to_string(),
                    r.credential_infos
                        .iter()
                        .map(|i| (i.mechanism, i.iterations))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            described,
            vec![
                ("alice".to_string(), vec![(SHA256, 4096), (SHA512, 8192)]),
                ("bob".to_string(), vec![(SHA512, 4096)]),
            ]
        );

        // Error cases, each failing only its user.
        let r = c
            .alter_users(
                ADMIN,
                vec![
                    deletion("carol", SHA256),
                    deletion("bob", 9),
                    deletion("", SHA256),
                ],
                vec![
                    upsertion("dave", SHA256, 1000, "x"),
                    upsertion("erin", SHA256, 20_000, "x"),
                    upsertion("frank", SHA256, 4096, "x"),
                    upsertion("frank", SHA256, 4096, "y"),
                    upsertion("gina", 0, 4096, "x"),
                    upsertion("alice", SHA256, 4096, "alice-new"),
                ],
            )
            .await?;
        assert_eq!(
            r,
            owned(&[
                ("carol", RESOURCE_NOT_FOUND),
                ("bob", UNSUPPORTED_SASL_MECHANISM),
                ("", UNACCEPTABLE_CREDENTIAL),
                ("dave", UNACCEPTABLE_CREDENTIAL),
                ("erin", UNACCEPTABLE_CREDENTIAL),
                ("frank", DUPLICATE_RESOURCE),
                ("gina", UNSUPPORTED_SASL_MECHANISM),
                ("alice", NONE),
            ])
        );
        {
            let store = c
                .broker
                .security
                .credentials
                .read()
                .map_err(|e| e.to_string())?;
            assert!(
                store.describe("frank").is_none(),
                "a failed user is unchanged"
            );
            assert!(store.describe("bob").is_some());
            assert!(store
                .get("alice", ScramMechanism::Sha256)
                .is_some_and(|cr| cr.verify_password(ScramMechanism::Sha256, "alice-new")));
        }

        // Describe errors: unknown, empty and repeated names.
        let d = c
            .describe_users(ADMIN, Some(&["alice", "nobody", "", "bob", "bob"]))
            .await?;
        let codes: Vec<(String, i16)> = d
            .results
            .iter()
            .map(|r| (r.user.to_string(), r.error_code))
            .collect();
        assert_eq!(
            codes,
            owned(&[
                ("alice", NONE),
                ("nobody", RESOURCE_NOT_FOUND),
                ("", RESOURCE_NOT_FOUND),
                ("bob", DUPLICATE_RESOURCE),
            ])
        );

        // Deleting the last credential removes the user; deleting it again is not found.
        let r = c
            .alter_users(ADMIN, vec![deletion("bob", SHA512)], vec![])
            .await?;
        assert_eq!(r, owned(&[("bob", NONE)]));
        let r = c
            .alter_users(ADMIN, vec![deletion("bob", SHA512)], vec![])
            .await?;
        assert_eq!(r, owned(&[("bob", RESOURCE_NOT_FOUND)]));

        // DESCRIBE / ALTER on the cluster are needed.
        let d = c.describe_users("User:nobody", None).await?;
        assert_eq!(d.error_code, CLUSTER_AUTHORIZATION_FAILED);
        assert!(d.results.is_empty());
        let r = c
            .alter_users(
                "User:nobody",
                vec![deletion("alice", SHA256)],
                vec![upsertion("zoe", SHA256, 4096, "z")],
            )
            .await?;
        assert_eq!(
            r,
            owned(&[
                ("alice", CLUSTER_AUTHORIZATION_FAILED),
                ("zoe", CLUSTER_AUTHORIZATION_FAILED)
            ])
        );
        let p = c
            .principal_for(
                "scram-admin",
                Case::Literal,
                &[
                    need(ResourceType::Cluster, "kafka-cluster", AclOperation::Alter),
                    need(
                        ResourceType::Cluster,
                        "kafka-cluster",
                        AclOperation::Describe,
                    ),
                ],
            )
            .await?;
        assert_eq!(
            c.describe_users(&p, Some(&["alice"])).await?.results[0].error_code,
            NONE
        );
        let r = c
            .alter_users(
                &p,
                vec![],
                vec![upsertion("zoe", SHA512, 4096, "zoe-secret")],
            )
            .await?;
        assert_eq!(r, owned(&[("zoe", NONE)]));
        c.broker.shutdown().await;
    }
    // The credentials are durable.
    let c = caller(dir.path(), true).await?;
    let d = c.describe_users(ADMIN, None).await?;
    let users: Vec<String> = d.results.iter().map(|r| r.user.to_string()).collect();
    assert_eq!(users, vec!["alice".to_string(), "zoe".to_string()]);
    {
        let store = c
            .broker
            .security
            .credentials
            .read()
            .map_err(|e| e.to_string())?;
        assert!(store.verify_plain("zoe", "zoe-secret"));
        // SHA-512 (still the first password) is what a PLAIN login checks first.
        assert!(store.verify_plain("alice", "alice-secret"));
        assert!(store
            .get("alice", ScramMechanism::Sha256)
            .is_some_and(|cr| cr.verify_password(ScramMechanism::Sha256, "alice-new")));
    }
    c.broker.shutdown().await;
    Ok(())
}

// --- Transforms' principal ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_runs_only_with_its_principals_rights() -> TestResult {
    use AclOperation::{Read, Write};
    use ResourceType::Topic;
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), true).await?;
    c.broker.start_transforms(c.shutdown.clone()).await;
    let transforms = c.broker.transforms().ok_or("no transform runtime")?.clone();
    let spec = |name: &str, principal: &str| {
        format!(
            "name: {name}\ninput: {{ topic: {TOPIC}, format: json }}\n{principal}steps:\n  - map: '.'\noutput: {{ topic: orders-out, format: json }}\n"
        )
    };
    let allow = |op, topic: &str| {
        creation(
            AclPermissionType::Allow,
            op,
            "User:etl",
            Topic,
            PatternType::Literal,
            topic,
        )
    };

    // No ACL: refused, naming what is missing, and nothing is created.
    let refused = transforms
        .deploy(&c.broker, &spec("etl", "principal: User:etl\n"))
        .await
        .err()
        .ok_or("deployed without rights")?
        .to_string();
    assert!(
        refused.contains("User:etl") && refused.contains("READ") && refused.contains(TOPIC),
        "{refused}"
    );
    assert!(c.broker.topic("orders-out").is_none());
    assert_eq!(
        c.create_acls(ADMIN, vec![allow(Read, TOPIC)]).await?,
        vec![NONE]
    );
    let refused = transforms
        .deploy(&c.broker, &spec("etl", "principal: User:etl\n"))
        .await
        .err()
        .ok_or("deployed without WRITE")?
        .to_string();
    assert!(
        refused.contains("WRITE") && refused.contains("orders-out"),
        "{refused}"
    );

    // READ on the input and WRITE on the output: deployed and running.
    assert_eq!(
        c.create_acls(ADMIN, vec![allow(Write, "orders-out")])
            .await?,
        vec![NONE]
    );
    let info = transforms
        .deploy(&c.broker, &spec("etl", "principal: User:etl\n"))
        .await?;
    assert_eq!(info.state, "running");

    // The ACLs change; the next start stops every task with the reason.
    transforms.set_paused(&c.broker, "etl", true).await?;
    let req = DeleteAclsRequest::default().with_filters(vec![
        delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(Topic.code())
            .with_resource_name_filter(Some(s("orders-out")))
            .with_pattern_type_filter(PatternType::Literal.code())
            .with_principal_filter(Some(s("User:etl")))
            .with_host_filter(None)
            .with_operation(AclOperation::Any.code())
            .with_permission_type(AclPermissionType::Any.code()),
    ]);
    c.call_as(ADMIN, ApiKey::DeleteAcls, 3, RequestKind::DeleteAcls(req))
        .await?;
    let info = transforms.set_paused(&c.broker, "etl", false).await?;
    assert_eq!(info.state, "failed");
    assert!(!info.tasks.is_empty());
    for t in &info.tasks {
        let e = t.error.as_deref().unwrap_or_default();
        assert!(
            e.starts_with("stopped:") && e.contains("WRITE topic orders-out"),
            "{e}"
        );
    }

    // Without a principal the transform acts with the broker's rights.
    let info = transforms.deploy(&c.broker, &spec("internal", "")).await?;
    assert_eq!(info.state, "running");
    c.shutdown.cancel();
    transforms.wait_stopped().await;
    c.broker.shutdown().await;
    Ok(())
}

// --- The CLI's client functions against a listening broker --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_acl_and_user_commands_work_against_a_broker() -> TestResult {
    use sluice_cli::acl;
    use sluice_cli::user;
    use sluice_security::acl::{AclBinding, AclBindingFilter};

    let dir = tempfile::tempdir()?;
    let mut config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        admin_listen: None,
        ..BrokerConfig::default()
    };
    config.security.authorizer_enabled = true;
    // The CLI connects over plaintext, as User:ANONYMOUS.
    config.security.super_users = "User:ANONYMOUS".into();
    let broker = tokio::task::block_in_place(|| Broker::open(config))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bound = listener.local_addr()?;
    let info = sluice_broker::server::ListenerInfo {
        name: "PLAINTEXT".into(),
        protocol: sluice_broker::security::config::SecurityProtocol::Plaintext,
        bound,
        advertised_host: "127.0.0.1".into(),
        advertised_port: bound.port(),
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(sluice_broker::server::run(
        Arc::clone(&broker),
        listener,
        Arc::new(info),
        None,
        sluice_broker::server::ConnectionLimits::new(&broker),
        shutdown.clone(),
    ));
    let connection = sluice_cli::ConnectionArgs {
        bootstrap: bound.to_string(),
        request_timeout_ms: 10_000,
    };

    // Users: create (the client salts the password), list, delete.
    user::create(
        &connection,
        "alice",
        "alice-secret",
        &user::parse_mechanisms("all")?,
        4096,
    )
    .await?;
    user::create(
        &connection,
        "bob",
        "bob-secret",
        &[ScramMechanism::Sha256],
        8192,
    )
    .await?;
    assert!(broker
        .security
        .credentials
        .read()
        .map_err(|e| e.to_string())?
        .verify_plain("alice", "alice-secret"));
    let client = connection.connect().await?;
    let users = user::describe_users(&client, None).await?;
    assert_eq!(
        users,
        vec![
            user::UserCredentials {
                user: "alice".into(),
                mechanisms: vec![
                    (ScramMechanism::Sha256, 4096),
                    (ScramMechanism::Sha512, 4096)
                ],
            },
            user::UserCredentials {
                user: "bob".into(),
                mechanisms: vec![(ScramMechanism::Sha256, 8192)],
            },
        ]
    );
    user::list(&connection, false).await?;
    user::delete(&connection, "alice", &[]).await?;
    let left = user::describe_users(&client, None).await?;
    assert_eq!(left.len(), 1);
    let gone = user::delete(&connection, "alice", &[]).await;
    assert!(gone.is_err(), "alice has no credential left");
    assert!(
        user::create(&connection, "x", "p", &[ScramMechanism::Sha256], 100)
            .await
            .is_err()
    );

    // ACLs: add, list, remove.
    let binding = AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: "orders-".into(),
        pattern_type: PatternType::Prefixed,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: AclOperation::Read,
        permission_type: AclPermissionType::Allow,
    };
    acl::create_acls(&client, std::slice::from_ref(&binding)).await?;
    let listed = acl::describe_acls(&client, &AclBindingFilter::any()).await?;
    assert_eq!(listed, vec![binding.clone()]);
    let matching = AclBindingFilter {
        resource_type: ResourceType::Topic,
        resource_name: Some("orders-7".into()),
        pattern_type: PatternType::Match,
        ..AclBindingFilter::any()
    };
    assert_eq!(
        acl::describe_acls(&client, &matching).await?,
        vec![binding.clone()]
    );
    let mut bad = binding.clone();
    bad.principal = "alice".into();
    let refused = acl::create_acls(&client, &[bad])
        .await
        .err()
        .ok_or("accepted")?;
    assert_eq!(refused.code(), Some(INVALID_REQUEST));
    let removed = acl::delete_acls(&client, &[AclBindingFilter::exact(&binding)]).await?;
    assert_eq!(removed, vec![binding]);
    assert!(acl::describe_acls(&client, &AclBindingFilter::any())
        .await?
        .is_empty());

    shutdown.cancel();
    let _ = server.await;
    broker.shutdown().await;
    Ok(())
}
