//! The group coordinator through the broker's public API: every group API at every version it
//! advertises answers a real request with a response that encodes and decodes at that
//! version; and groups and committed offsets spread over several offsets-topic partitions come
//! back after the broker is reopened without a clean shutdown.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_broker::config::BrokerConfig;
use sluice_broker::handler::SUPPORTED;
use sluice_broker::state::Broker;
use tokio_util::sync::CancellationToken;

mod common;
use common::Caller;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn open(dir: &std::path::Path) -> Result<Arc<Broker>, Box<dyn std::error::Error>> {
    let mut config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        admin_listen: None,
        ..BrokerConfig::default()
    };
    config.set("group.initial.rebalance.delay.ms", "0")?;
    config.set("offsets.topic.num.partitions", "3")?;
    Ok(tokio::task::block_in_place(|| Broker::open(config))?)
}

fn subscription(topic: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    let sub = ConsumerProtocolSubscription::default().with_topics(vec![s(topic)]);
    let _ = sub.encode(&mut b, 1);
    b.freeze()
}

fn join(group: &str, member: &str, instance: Option<&str>) -> RequestKind {
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(subscription("t"))]),
    )
}

/// Forms a one-member group through JoinGroup and SyncGroup at `version`s; returns the
/// member id and generation.
async fn form(
    c: &Caller,
    group: &str,
    join_v: i16,
    instance: Option<&str>,
) -> Result<(String, i32), String> {
    let mut member = String::new();
    let joined = loop {
        let ResponseKind::JoinGroup(r) = c
            .call(ApiKey::JoinGroup, join_v, join(group, &member, instance))
            .await?
        else {
            return Err("not a JoinGroup response".into());
        };
        if r.error_code == 79 {
            member = r.member_id.to_string();
            continue;
        }
        break r;
    };
    assert_eq!(joined.error_code, 0, "JoinGroup v{join_v}: {joined:?}");
    assert_eq!(joined.leader, joined.member_id);
    let member = joined.member_id.to_string();
    let sync_v = join_v.min(5);
    let ResponseKind::SyncGroup(r) = c
        .call(
            ApiKey::SyncGroup,
            sync_v,
            RequestKind::SyncGroup(
                SyncGroupRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_generation_id(joined.generation_id)
                    .with_member_id(s(&member))
                    .with_group_instance_id(if sync_v >= 3 { instance.map(s) } else { None })
                    .with_protocol_type(if sync_v >= 5 {
                        Some(s("consumer"))
                    } else {
                        None
                    })
                    .with_protocol_name(if sync_v >= 5 { Some(s("range")) } else { None })
                    .with_assignments(vec![
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(s(&member))
                            .with_assignment(Bytes::from_static(b"\0\x01\0\0\0\0\0\0\0\0")),
                    ]),
            ),
        )
        .await?
    else {
        return Err("not a SyncGroup response".into());
    };
    assert_eq!(r.error_code, 0, "SyncGroup v{sync_v}");
    assert_eq!(r.assignment.len(), 10);
    Ok((member, joined.generation_id))
}

fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .copied()
        .unwrap_or((api, 0, -1));
    min..=max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_api_answers_every_version() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = Caller {
        broker: open(dir.path())?,
        shutdown: CancellationToken::new(),
        listener: common::test_listener(),
    };
    c.broker
        .create_topic("t", 2, Default::default(), false)
        .await
        .map_err(|(_, m)| m)?;
    for v in versions(ApiKey::FindCoordinator) {
        let req = FindCoordinatorRequest::default()
            .with_key(if v < 4 { s("g") } else { s("") })
            .with_coordinator_keys(if v >= 4 {
                vec![s("g"), s("h")]
            } else {
                Vec::new()
            });
        let ResponseKind::FindCoordinator(r) = c
            .call(
                ApiKey::FindCoordinator,
                v,
                RequestKind::FindCoordinator(req),
            )
            .await?
        else {
            return Err("not FindCoordinator".into());
        };
        if v >= 4 {
            assert_eq!(r.coordinators.len(), 2);
            assert!(r
                .coordinators
                .iter()
                .all(|c| c.error_code == 0 && c.node_id.0 == 1));
        } else {
            assert_eq!((r.error_code, r.node_id.0), (0, 1));
        }
        if v >= 1 {
            let txn = FindCoordinatorRequest::default()
                .with_key(if v < 4 { s("tx") } else { s("") })
                .with_key_type(1)
                .with_coordinator_keys(if v >= 4 { vec![s("tx")] } else { Vec::new() });
            let ResponseKind::FindCoordinator(r) = c
                .call(
                    ApiKey::FindCoordinator,
                    v,
                    RequestKind::FindCoordinator(txn),
                )
                .await?
            else {
                return Err("not FindCoordinator".into());
            };
            let (code, node) = if v >= 4 {
                (r.coordinators[0].error_code, r.coordinators[0].node_id.0)
            } else {
                (r.error_code, r.node_id.0)
            };
            assert_eq!((code, node), (0, 1), "this broker coordinates transactions");
        }
    }
    for v in versions(ApiKey::JoinGroup) {
        let group = format!("join-v{v}");
        let instance = (v >= 5).then_some("static-1");
        let (member, generation) = form(&c, &group, v, instance).await?;
        for hv in versions(ApiKey::Heartbeat) {
            let req = HeartbeatRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id(generation)
                .with_member_id(s(&member))
                .with_group_instance_id(if hv >= 3 { instance.map(s) } else { None });
            let ResponseKind::Heartbeat(r) = c
                .call(ApiKey::Heartbeat, hv, RequestKind::Heartbeat(req))
                .await?
            else {
                return Err("not Heartbeat".into());
            };
            assert_eq!(r.error_code, 0, "Heartbeat v{hv} after JoinGroup v{v}");
        }
        for cv in versions(ApiKey::OffsetCommit) {
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(&member))
                .with_group_instance_id(if cv >= 7 { instance.map(s) } else { None })
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(cv as i64)
                                .with_committed_metadata(Some(s("m"))),
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(9)
                                .with_committed_offset(1),
                        ]),
                ]);
            let ResponseKind::OffsetCommit(r) = c
                .call(ApiKey::OffsetCommit, cv, RequestKind::OffsetCommit(req))
                .await?
            else {
                return Err("not OffsetCommit".into());
            };
            let codes: Vec<i16> = r.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect();
            assert_eq!(
                codes,
                vec![0, 3],
                "OffsetCommit v{cv}: partition 9 does not exist"
            );
        }
        let ResponseKind::DescribeGroups(r) = c
            .call(
                ApiKey::DescribeGroups,
                6,
                RequestKind::DescribeGroups(
                    DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]),
                ),
            )
            .await?
        else {
            return Err("not DescribeGroups".into());
        };
        assert_eq!(r.groups[0].group_state.as_str(), "Stable");
        assert_eq!(r.groups[0].members[0].client_id.as_str(), "tester");
        if v == 9 {
            // The last group stays for the read-only APIs below.
            break;
        }
        let leave = if v >= 3 {
            LeaveGroupRequest::default().with_members(vec![
                leave_group_request::MemberIdentity::default()
                    .with_member_id(s(&member))
                    .with_group_instance_id(instance.map(s)),
            ])
        } else {
            LeaveGroupRequest::default().with_member_id(s(&member))
        }
        .with_group_id(GroupId(s(&group)));
        let lv = v.min(5);
        let ResponseKind::LeaveGroup(r) = c
            .call(ApiKey::LeaveGroup, lv, RequestKind::LeaveGroup(leave))
            .await?
        else {
            return Err("not LeaveGroup".into());
        };
        assert_eq!(r.error_code, 0, "LeaveGroup v{lv}");
        assert!(r.members.iter().all(|m| m.error_code == 0));
    }
    for v in versions(ApiKey::OffsetFetch) {
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("join-v9")))
                    .with_topics(None),
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("nobody")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0]),
                    ])),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("join-v9")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0, 1]),
                ]))
        };
        let ResponseKind::OffsetFetch(r) = c
            .call(ApiKey::OffsetFetch, v, RequestKind::OffsetFetch(req))
            .await?
        else {
            return Err("not OffsetFetch".into());
        };
        let last_commit = *versions(ApiKey::OffsetCommit).end() as i64;
        if v >= 8 {
            assert_eq!(
                r.groups[0].topics[0].partitions[0].committed_offset,
                last_commit
            );
            assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, -1);
        } else {
            let offsets: Vec<i64> = r.topics[0]
                .partitions
                .iter()
                .map(|p| p.committed_offset)
                .collect();
            assert_eq!(offsets, vec![last_commit, -1], "OffsetFetch v{v}");
        }
    }
    for v in versions(ApiKey::ListGroups) {
        let req = ListGroupsRequest::default().with_states_filter(if v >= 4 {
            vec![s("Stable")]
        } else {
            Vec::new()
        });
        let ResponseKind::ListGroups(r) = c
            .call(ApiKey::ListGroups, v, RequestKind::ListGroups(req))
            .await?
        else {
            return Err("not ListGroups".into());
        };
        let ids: Vec<&str> = r.groups.iter().map(|g| g.group_id.0.as_str()).collect();
        assert!(ids.contains(&"join-v9"), "ListGroups v{v}: {ids:?}");
        if v >= 4 {
            assert_eq!(ids, vec!["join-v9"], "only the stable group");
        }
    }
    for v in versions(ApiKey::DescribeGroups) {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(s("join-v9")), GroupId(s("nobody"))])
            .with_include_authorized_operations(v >= 3);
        let ResponseKind::DescribeGroups(r) = c
            .call(ApiKey::DescribeGroups, v, RequestKind::DescribeGroups(req))
            .await?
        else {
            return Err("not DescribeGroups".into());
        };
        assert_eq!(r.groups[0].members.len(), 1);
        assert_eq!(r.groups[1].group_state.as_str(), "Dead");
    }
    for v in versions(ApiKey::OffsetDelete) {
        let req = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("join-v0")))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(0),
                    ]),
            ]);
        let ResponseKind::OffsetDelete(r) = c
            .call(ApiKey::OffsetDelete, v, RequestKind::OffsetDelete(req))
            .await?
        else {
            return Err("not OffsetDelete".into());
        };
        assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    }
    for v in versions(ApiKey::DeleteGroups) {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![
            GroupId(s(&format!("join-v{v}"))),
            GroupId(s("join-v9")),
        ]);
        let ResponseKind::DeleteGroups(r) = c
            .call(ApiKey::DeleteGroups, v, RequestKind::DeleteGroups(req))
            .await?
        else {
            return Err("not DeleteGroups".into());
        };
        let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
        assert_eq!(
            codes,
            vec![0, 68],
            "DeleteGroups v{v}: the stable group is not empty"
        );
    }
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_offsets_come_back_after_a_crash() -> TestResult {
    let dir = tempfile::tempdir()?;
    let groups: Vec<String> = (0..12).map(|i| format!("group-{i}")).collect();
    {
        let c = Caller {
            broker: open(dir.path())?,
            shutdown: CancellationToken::new(),
            listener: common::test_listener(),
        };
        c.broker
            .create_topic("t", 1, Default::default(), false)
            .await
            .map_err(|(_, m)| m)?;
        for (i, g) in groups.iter().enumerate() {
            let (member, generation) = form(&c, g, 9, None).await?;
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(g)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(&member))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(100 + i as i64),
                        ]),
                ]);
            let ResponseKind::OffsetCommit(r) = c
                .call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req))
                .await?
            else {
                return Err("not OffsetCommit".into());
            };
            assert_eq!(r.topics[0].partitions[0].error_code, 0);
        }
        let topic = c
            .broker
            .topic("__consumer_offsets")
            .ok_or("no offsets topic")?;
        assert_eq!(topic.partitions.len(), 3);
        assert!(topic.config.cleanup_policy.compact);
        // No clean shutdown: the actors stop and the logs are left as they are.
        c.broker.abandon().await;
    }
    let c = Caller {
        broker: open(dir.path())?,
        shutdown: CancellationToken::new(),
        listener: common::test_listener(),
    };
    for (i, g) in groups.iter().enumerate() {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(g)))
            .with_topics(None);
        let ResponseKind::OffsetFetch(r) = c
            .call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(req))
            .await?
        else {
            return Err("not OffsetFetch".into());
        };
        assert_eq!(
            r.topics[0].partitions[0].committed_offset,
            100 + i as i64,
            "{g}"
        );
        let ResponseKind::DescribeGroups(d) = c
            .call(
                ApiKey::DescribeGroups,
                5,
                RequestKind::DescribeGroups(
                    DescribeGroupsRequest::default().with_groups(vec![GroupId(s(g))]),
                ),
            )
            .await?
        else {
            return Err("not DescribeGroups".into());
        };
        assert_eq!(
            d.groups[0].group_state.as_str(),
            "Stable",
            "{g} comes back with its member"
        );
        assert_eq!(d.groups[0].members.len(), 1);
    }
    c.broker.shutdown().await;
    Ok(())
}
