//! Group coordinator benchmarks.
//!
//! - `rebalance/*`: a full rebalance of 10 members over 100 partitions through the shard state
//!   machine alone (JoinGroup with MEMBER_ID_REQUIRED, join completion, the leader's SyncGroup
//!   with real consumer-protocol assignments, the store, every SyncGroup answered): forming
//!   the group from nothing, and rebalancing a stable group when its leader rejoins.
//! - `offset_commit/*`: OffsetCommit throughput through the real path below the handler: the
//!   shard's task, record encoding, and a durable (fsync) append to `__consumer_offsets` via
//!   the partition's append actor, with 1 and 64 committers in flight.
//!
//! Run: `CARGO_BUILD_JOBS=1 cargo bench -p sluice-broker --bench group_coordinator`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_broker::config::BrokerConfig;
use sluice_broker::group::api::{
    CommitPartition, CommitRequest, Effect, Input, JoinRequest, Protocol, Reply, SyncRequest,
};
use sluice_broker::group::shard::GroupShard;
use sluice_broker::group::GroupConfig;
use sluice_broker::state::Broker;

const MEMBERS: usize = 10;
const PARTITIONS: i32 = 100;

fn versioned(version: i16, body: impl Encodable) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(version);
    body.encode(&mut b, version).expect("encodable");
    b.freeze()
}

fn subscription() -> Bytes {
    versioned(
        1,
        ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_static_str("t")]),
    )
}

/// Range assignment of `PARTITIONS` over `members`.
fn assignments(members: &[String]) -> Vec<(String, Bytes)> {
    let per = PARTITIONS / members.len() as i32;
    members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let parts: Vec<i32> = (i as i32 * per..(i as i32 + 1) * per).collect();
            let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(parts),
            ]);
            (m.clone(), versioned(1, a))
        })
        .collect()
}

struct Driver {
    shard: GroupShard,
    now: i64,
    next: u64,
    replies: Vec<(u64, Reply)>,
}

impl Driver {
    fn step(&mut self, input: Input) {
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            for e in self.shard.step(self.now, input) {
                match e {
                    Effect::Reply(id, r) => self.replies.push((id, r)),
                    // The store succeeds at once: this measures the state machine only.
                    Effect::Persist(id, _) => pending.push(Input::Persisted(id, Ok(()))),
                }
            }
        }
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn join(&mut self, member_id: &str, new_id: &str) -> u64 {
        let id = self.id();
        self.step(Input::Join(
            id,
            JoinRequest {
                group_id: "bench".into(),
                member_id: member_id.into(),
                group_instance_id: None,
                new_member_id: new_id.into(),
                client_id: "bench".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 45_000,
                rebalance_timeout_ms: 300_000,
                protocol_type: "consumer".into(),
                protocols: vec![Protocol {
                    name: "range".into(),
                    metadata: subscription(),
                }],
                require_known_member_id: true,
                supports_skip_assignment: false,
            },
        ));
        id
    }

    /// Every member syncs, the leader with `assignments`; returns the assignments received.
    fn sync_all(&mut self, generation: i32, members: &[String], leader: &str) -> usize {
        self.replies.clear();
        let plan = assignments(members);
        for m in members {
            let id = self.id();
            self.step(Input::Sync(
                id,
                SyncRequest {
                    group_id: "bench".into(),
                    generation_id: generation,
                    member_id: m.clone(),
                    group_instance_id: None,
                    protocol_type: None,
                    protocol_name: None,
                    assignments: if m == leader {
                        plan.clone()
                    } else {
                        Vec::new()
                    },
                },
            ));
        }
        self.replies
            .iter()
            .filter(
                |(_, r)| matches!(r, Reply::Sync(s) if s.error == 0 && !s.assignment.is_empty()),
            )
            .count()
    }

    /// The generation and leader from the join answers.
    fn joined(&self) -> (i32, String) {
        self.replies
            .iter()
            .find_map(|(_, r)| match r {
                Reply::Join(j) if j.error == 0 => Some((j.generation_id, j.leader.clone())),
                _ => None,
            })
            .unwrap_or((-1, String::new()))
    }
}

fn new_driver() -> Driver {
    let config = GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    };
    Driver {
        shard: GroupShard::new(config, 0),
        now: 0,
        next: 0,
        replies: Vec::new(),
    }
}

/// Forms the group from nothing; returns the driver and the member ids.
fn form() -> (Driver, Vec<String>) {
    let mut d = new_driver();
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("member-{i}")).collect();
    for m in &members {
        d.join("", m); // MEMBER_ID_REQUIRED
    }
    for m in &members {
        d.join(m, "");
    }
    d.step(Input::Tick); // the (zero) initial delay is over
    let (generation, leader) = d.joined();
    let synced = d.sync_all(generation, &members, &leader);
    assert_eq!(synced, MEMBERS);
    (d, members)
}

fn rebalance(c: &mut Criterion) {
    let mut g = c.benchmark_group("rebalance");
    g.bench_function("form_10_members_100_partitions", |b| b.iter(form));
    g.bench_function("rejoin_10_members_100_partitions", |b| {
        b.iter_batched(
            form,
            |(mut d, members)| {
                d.replies.clear();
                for m in &members {
                    d.join(m, "");
                }
                let (generation, leader) = d.joined();
                assert_eq!(d.sync_all(generation, &members, &leader), MEMBERS);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn offset_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        admin_listen: None,
        ..BrokerConfig::default()
    };
    let broker: Arc<Broker> = {
        let _enter = rt.enter();
        Broker::open(config).expect("broker")
    };
    rt.block_on(async {
        if let Some(groups) = broker.groups() {
            groups.ensure_topic().await.expect("offsets topic");
        }
    });
    let mut g = c.benchmark_group("offset_commit");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1));
    for committers in [1usize, 64] {
        g.bench_function(format!("durable_{committers}_in_flight"), |b| {
            b.iter_custom(|iters| {
                let broker = Arc::clone(&broker);
                rt.block_on(async move {
                    let per = (iters as usize).div_ceil(committers);
                    let start = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for task in 0..committers {
                        let broker = Arc::clone(&broker);
                        tasks.spawn(async move {
                            let Some(groups) = broker.groups() else {
                                return;
                            };
                            let group = format!("bench-{task}");
                            for n in 0..per {
                                let req = CommitRequest {
                                    group_id: group.clone(),
                                    generation_id: -1,
                                    member_id: String::new(),
                                    group_instance_id: None,
                                    api_version: 8,
                                    partitions: vec![CommitPartition {
                                        topic: "t".into(),
                                        partition: task as i32,
                                        offset: n as i64,
                                        leader_epoch: -1,
                                        metadata: String::new(),
                                    }],
                                };
                                let reply = groups
                                    .request(&group, move |id| Input::Commit(id, req))
                                    .await;
                                assert!(
                                    matches!(reply, Ok(Reply::Commit(ref r)) if r[0].2 == 0),
                                    "{reply:?}"
                                );
                            }
                        });
                    }
                    while tasks.join_next().await.is_some() {}
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    rt.block_on(broker.shutdown());
}

criterion_group!(benches, rebalance, offset_commit);
criterion_main!(benches);
