//! Deterministic tests of KIP-848 consumer-protocol groups on a shard: scenarios with explicit
//! time, and a seeded randomized simulation of members that join, heartbeat, change their
//! subscription, leave, pause and crash, with appends that complete late. After every step it
//! checks that no partition is held by two members (assigned or pending revocation on the
//! coordinator, owned on the clients), and at the end that every partition has one owner.
//! A failing simulation prints its seed; rerun one with `SLUICE_CONSUMER_SIM_SEED=<seed>`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kafka_protocol::error::ResponseError as E;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::api::*;
use super::assignor::Assignment;
use super::config::GroupConfig;
use super::load::Replay;
use super::records::OffsetsRecord;
use super::shard::GroupShard;

const G: &str = "g";

fn topics() -> BTreeMap<String, (Uuid, i32)> {
    BTreeMap::from([
        ("t".to_string(), (Uuid::from_u128(1), 6)),
        ("u".to_string(), (Uuid::from_u128(2), 3)),
    ])
}

fn name_of(id: Uuid) -> String {
    topics()
        .into_iter()
        .find(|(_, (i, _))| *i == id)
        .map(|(n, _)| n)
        .unwrap_or_default()
}

fn to_names(tps: &TopicIdPartitions) -> Assignment {
    let mut a = Assignment::new();
    for (id, ps) in tps {
        if !ps.is_empty() {
            a.entry(name_of(*id))
                .or_default()
                .extend(ps.iter().copied());
        }
    }
    a
}

fn to_ids(a: &Assignment) -> TopicIdPartitions {
    let t = topics();
    a.iter()
        .map(|(n, ps)| (t[n].0, ps.iter().copied().collect()))
        .collect()
}

fn count(a: &Assignment) -> usize {
    a.values().map(|p| p.len()).sum()
}

fn hb(member: &str, epoch: i32) -> ConsumerHeartbeatRequest {
    ConsumerHeartbeatRequest {
        group_id: G.into(),
        member_id: member.into(),
        member_epoch: epoch,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: if epoch == 0 { 30_000 } else { -1 },
        subscribed_topic_names: (epoch == 0).then(|| vec!["t".to_string()]),
        subscribed_topic_regex: None,
        server_assignor: None,
        owned: (epoch == 0).then(Vec::new),
        new_member_id: format!("new-{member}"),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        topics: topics(),
    }
}

/// A shard driven by hand: the test is the clock and the disk.
struct Harness {
    shard: GroupShard,
    now: i64,
    next_reply: ReplyId,
    replies: BTreeMap<ReplyId, Reply>,
    appends: VecDeque<(PersistId, Vec<OffsetsRecord>)>,
    log: Vec<OffsetsRecord>,
}

impl Harness {
    fn new() -> Self {
        let config = GroupConfig {
            consumer_session_timeout_ms: 10_000,
            ..GroupConfig::default()
        };
        Harness {
            shard: GroupShard::new(config, 0),
            now: 0,
            next_reply: 1,
            replies: BTreeMap::new(),
            appends: VecDeque::new(),
            log: Vec::new(),
        }
    }

    fn step(&mut self, input: Input) {
        for e in self.shard.step(self.now, input) {
            match e {
                Effect::Reply(id, r) => {
                    assert!(self.replies.insert(id, r).is_none(), "reply {id} twice");
                }
                Effect::Persist(id, recs) => self.appends.push_back((id, recs)),
            }
        }
    }

    /// Sends a request; returns its reply id.
    fn send(&mut self, input: impl FnOnce(ReplyId) -> Input) -> ReplyId {
        let id = self.next_reply;
        self.next_reply += 1;
        self.step(input(id));
        id
    }

    fn complete_one(&mut self) -> bool {
        let Some((id, recs)) = self.appends.pop_front() else {
            return false;
        };
        self.log.extend(recs);
        self.step(Input::Persisted(id, Ok(())));
        true
    }

    fn complete_all(&mut self) {
        while self.complete_one() {}
    }

    /// A heartbeat whose appends complete at once; its answer.
    fn heartbeat(&mut self, req: ConsumerHeartbeatRequest) -> ConsumerHeartbeatResponse {
        let id = self.send(|id| Input::ConsumerHeartbeat(id, req));
        self.complete_all();
        match self.replies.remove(&id) {
            Some(Reply::ConsumerHeartbeat(r)) => r,
            other => panic!("no heartbeat answer: {other:?}"),
        }
    }

    fn commit(&mut self, member: &str, epoch: i32) -> i16 {
        let req = CommitRequest {
            group_id: G.into(),
            generation_id: epoch,
            member_id: member.into(),
            group_instance_id: None,
            api_version: 9,
            partitions: vec![CommitPartition {
                topic: "t".into(),
                partition: 0,
                offset: 5,
                leader_epoch: -1,
                metadata: String::new(),
            }],
        };
        let id = self.send(|id| Input::Commit(id, req));
        self.complete_all();
        match self.replies.remove(&id) {
            Some(Reply::Commit(r)) => r[0].2,
            other => panic!("no commit answer: {other:?}"),
        }
    }

    /// Server side: no partition held (assigned or pending revocation) by two members.
    fn check_exclusive(&self) {
        let Some(c) = self.shard.consumer_group(G) else {
            return;
        };
        let mut seen = BTreeSet::new();
        for m in c.members.values() {
            for (t, ps) in m.assigned.iter().chain(m.pending_revocation.iter()) {
                for p in ps {
                    assert!(
                        seen.insert((t.clone(), *p)),
                        "{t}/{p} held twice in {:?}",
                        c.members
                    );
                }
            }
        }
    }
}

/// A member that joins and heartbeats until nothing changes; returns (epoch, owned).
fn settle(h: &mut Harness, owned: &mut BTreeMap<String, (i32, Assignment)>) {
    for _ in 0..6 {
        let ids: Vec<String> = owned.keys().cloned().collect();
        for id in ids {
            let (epoch, mine) = owned[&id].clone();
            let mut req = hb(&id, epoch);
            req.owned = Some(to_ids(&mine));
            let r = h.heartbeat(req);
            assert_eq!(r.error, 0, "{id}: {r:?}");
            let entry = owned.get_mut(&id).expect("member");
            entry.0 = r.member_epoch;
            if let Some(a) = r.assignment {
                entry.1 = to_names(&a);
            }
            h.check_exclusive();
        }
    }
}

#[test]
fn a_sole_member_gets_every_partition() {
    let mut h = Harness::new();
    let r = h.heartbeat(hb("a", 0));
    assert_eq!(r.error, 0);
    assert_eq!(r.member_id.as_deref(), Some("a"));
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 5_000);
    let a = to_names(&r.assignment.expect("assignment"));
    assert_eq!(a["t"], (0..6).collect());
    // Nothing changed: no assignment in the answer, same epoch.
    let mut again = hb("a", 1);
    again.owned = Some(to_ids(&a));
    let r = h.heartbeat(again);
    assert_eq!((r.error, r.member_epoch, r.assignment), (0, 1, None));
    let c = h.shard.consumer_group(G).expect("group");
    assert_eq!(
        (c.group_epoch, c.assignment_epoch, c.state_name()),
        (1, 1, "Stable")
    );
}

#[test]
fn a_new_member_gets_partitions_only_once_they_are_revoked() {
    let mut h = Harness::new();
    let a = to_names(&h.heartbeat(hb("a", 0)).assignment.expect("a's assignment"));
    // b joins: its target is half of t, all still held by a.
    let r = h.heartbeat(hb("b", 0));
    assert_eq!(r.member_epoch, 2);
    assert_eq!(
        to_names(&r.assignment.expect("b's assignment")),
        Assignment::new()
    );
    h.check_exclusive();
    // a is told to keep only its half; its epoch stays until it has revoked the rest.
    let mut req = hb("a", 1);
    req.owned = Some(to_ids(&a));
    let r = h.heartbeat(req);
    assert_eq!(r.member_epoch, 1);
    let kept = to_names(&r.assignment.expect("a's smaller assignment"));
    assert_eq!(count(&kept), 3);
    // b heartbeats meanwhile: still nothing, a has not released.
    let mut req = hb("b", 2);
    req.owned = Some(Vec::new());
    assert_eq!(h.heartbeat(req).assignment, None);
    // a acknowledges the revocation and moves to epoch 2.
    let mut req = hb("a", 1);
    req.owned = Some(to_ids(&kept));
    let r = h.heartbeat(req);
    assert_eq!(r.member_epoch, 2);
    // Now b gets the released half.
    let mut req = hb("b", 2);
    req.owned = Some(Vec::new());
    let got = to_names(&h.heartbeat(req).assignment.expect("b's partitions"));
    assert_eq!(count(&got), 3);
    assert!(got["t"].is_disjoint(&kept["t"]));
    h.check_exclusive();
    assert_eq!(
        h.shard.consumer_group(G).map(|c| c.state_name()),
        Some("Stable")
    );
}

#[test]
fn leaving_moves_partitions_and_stale_epochs_are_fenced() {
    let mut h = Harness::new();
    let mut owned = BTreeMap::new();
    h.heartbeat(hb("a", 0));
    owned.insert("a".to_string(), (1, Assignment::new()));
    h.heartbeat(hb("b", 0));
    owned.insert("b".to_string(), (2, Assignment::new()));
    settle(&mut h, &mut owned);
    assert_eq!(count(&owned["a"].1), 3);
    assert_eq!(count(&owned["b"].1), 3);
    let epoch = owned["b"].0;
    // Fenced: a wrong epoch; unknown: a member the group does not have.
    let r = h.heartbeat(hb("b", epoch + 5));
    assert_eq!(r.error, E::FencedMemberEpoch.code());
    let r = h.heartbeat(hb("zz", 3));
    assert_eq!(r.error, E::UnknownMemberId.code());
    // Commits are fenced by member epoch.
    assert_eq!(h.commit("b", epoch), 0);
    assert_eq!(h.commit("b", epoch - 1), E::StaleMemberEpoch.code());
    assert_eq!(h.commit("zz", 1), E::UnknownMemberId.code());
    assert_eq!(
        h.commit("", -1),
        E::UnknownMemberId.code(),
        "group has members"
    );
    // OffsetFetch v9 likewise; without a member it is an admin read.
    assert_eq!(h.shard.check_member_epoch(G, "b", epoch), None);
    assert_eq!(
        h.shard.check_member_epoch(G, "b", epoch - 1),
        Some(E::StaleMemberEpoch)
    );
    assert_eq!(
        h.shard.check_member_epoch(G, "zz", 1),
        Some(E::UnknownMemberId)
    );
    assert_eq!(h.shard.check_member_epoch(G, "", -1), None);
    // b leaves: a gets everything.
    let r = h.heartbeat(hb("b", -1));
    assert_eq!((r.error, r.member_epoch), (0, -1));
    owned.remove("b");
    settle(&mut h, &mut owned);
    assert_eq!(count(&owned["a"].1), 6);
    let r = h.heartbeat(hb("a", -1));
    assert_eq!(r.error, 0);
    assert_eq!(
        h.shard.consumer_group(G).map(|c| c.state_name()),
        Some("Empty")
    );
    assert_eq!(h.commit("", -1), 0, "an empty group takes admin commits");
}

#[test]
fn a_silent_member_is_removed_after_its_session() {
    let mut h = Harness::new();
    let mut owned = BTreeMap::new();
    h.heartbeat(hb("a", 0));
    owned.insert("a".to_string(), (1, Assignment::new()));
    h.heartbeat(hb("b", 0));
    owned.insert("b".to_string(), (2, Assignment::new()));
    settle(&mut h, &mut owned);
    // a keeps heartbeating, b goes silent.
    owned.remove("b");
    for _ in 0..4 {
        h.now += 3_000;
        h.step(Input::Tick);
        h.complete_all();
        settle(&mut h, &mut owned);
    }
    let c = h.shard.consumer_group(G).expect("group");
    assert_eq!(c.members.keys().collect::<Vec<_>>(), vec!["a"]);
    assert_eq!(count(&owned["a"].1), 6);
    // b comes back: unknown now.
    assert_eq!(h.heartbeat(hb("b", 3)).error, E::UnknownMemberId.code());
}

#[test]
fn a_static_member_keeps_its_partitions_while_away() {
    let mut h = Harness::new();
    let mut join = hb("a", 0);
    join.instance_id = Some("i".into());
    let mine = to_names(&h.heartbeat(join.clone()).assignment.expect("assignment"));
    let mut leave = hb("a", -2);
    leave.instance_id = Some("i".into());
    assert_eq!(h.heartbeat(leave).member_epoch, -2);
    // Another instance joins meanwhile: it gets nothing held by the static member.
    let r = h.heartbeat(hb("b", 0));
    assert_eq!(to_names(&r.assignment.expect("b")), Assignment::new());
    // The static member comes back under a new id and takes its partitions back.
    join.member_id = "a2".into();
    let back = to_names(&h.heartbeat(join.clone()).assignment.expect("back"));
    assert!(count(&back) > 0 && back["t"].is_subset(&mine["t"]));
    h.check_exclusive();
    // The same instance id twice while in use: refused.
    join.member_id = "a3".into();
    assert_eq!(h.heartbeat(join).error, E::UnreleasedInstanceId.code());
}

#[test]
fn a_regex_subscription_follows_the_topics() {
    let mut h = Harness::new();
    let mut join = hb("a", 0);
    join.subscribed_topic_names = Some(Vec::new());
    join.subscribed_topic_regex = Some("t|v.*".into());
    let r = h.heartbeat(join);
    let got = to_names(&r.assignment.expect("assignment"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        vec!["t"],
        "u does not match"
    );
    // A matching topic appears: the next heartbeat advances the group and assigns it.
    let mut req = hb("a", r.member_epoch);
    req.owned = Some(to_ids(&got));
    req.topics.insert("v1".into(), (Uuid::from_u128(9), 2));
    let r = h.heartbeat(req);
    assert_eq!(r.member_epoch, 2);
    let c = h.shard.consumer_group(G).expect("group");
    assert_eq!(c.members["a"].target["v1"], BTreeSet::from([0, 1]));
    assert!(c.subscribed_topics().contains("v1"));
}

#[test]
fn classic_and_consumer_groups_do_not_mix() {
    let mut h = Harness::new();
    h.heartbeat(hb("a", 0));
    let join = JoinRequest {
        group_id: G.into(),
        member_id: String::new(),
        group_instance_id: None,
        new_member_id: "m".into(),
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: bytes::Bytes::new(),
        }],
        require_known_member_id: false,
        supports_skip_assignment: false,
    };
    let id = h.send(|id| Input::Join(id, join));
    match h.replies.remove(&id) {
        Some(Reply::Join(r)) => assert_eq!(r.error, E::InconsistentGroupProtocol.code()),
        other => panic!("{other:?}"),
    }
    // A heartbeat to a group that is not a consumer group.
    let mut req = hb("x", 0);
    req.group_id = "missing".into();
    req.member_epoch = 3;
    assert_eq!(h.heartbeat(req).error, E::GroupIdNotFound.code());
}

#[test]
fn the_group_comes_back_from_the_log() {
    let mut h = Harness::new();
    let mut owned = BTreeMap::new();
    h.heartbeat(hb("a", 0));
    owned.insert("a".to_string(), (1, Assignment::new()));
    h.heartbeat(hb("b", 0));
    owned.insert("b".to_string(), (2, Assignment::new()));
    settle(&mut h, &mut owned);
    assert_eq!(h.commit("a", owned["a"].0), 0);
    let mut replay = Replay::default();
    for r in &h.log {
        replay.apply(r.clone());
    }
    let groups = replay.into_groups(h.now, 10_000);
    let back = groups[G].consumer.as_deref().expect("consumer group");
    let live = h.shard.consumer_group(G).expect("group");
    assert_eq!(back.group_epoch, live.group_epoch);
    for (id, m) in &live.members {
        assert_eq!(back.members[id].assigned, m.assigned);
        assert_eq!(back.members[id].member_epoch, m.member_epoch);
    }
    assert_eq!(groups[G].offsets[&("t".to_string(), 0)].offset, 5);
    // The reloaded shard answers the members' next heartbeats as if nothing happened.
    let mut shard = GroupShard::with_groups(GroupConfig::default(), groups, h.now);
    let mut req = hb("a", owned["a"].0);
    req.owned = Some(to_ids(&owned["a"].1));
    let effects = shard.step(h.now, Input::ConsumerHeartbeat(1, req));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Reply(1, Reply::ConsumerHeartbeat(r))] if r.error == 0 && r.assignment.is_none()
    ));
}

/// One simulated consumer.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    epoch: i32,
    owned: Assignment,
    subscription: Vec<String>,
    /// Send the subscription with the next heartbeat.
    subscription_changed: bool,
    /// The reply id of its heartbeat in flight.
    in_flight: Option<ReplyId>,
    /// Not heartbeating until then (a long GC pause, say); still owns its partitions.
    paused_until: i64,
    leaving: bool,
}

fn simulate(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut h = Harness::new();
    let mut clients: Vec<Client> = Vec::new();
    let mut next_id = 0u32;
    for step in 0..600 {
        let settle_phase = step >= 450;
        // Events.
        if !settle_phase {
            match rng.gen_range(0..100) {
                0..=5 if clients.len() < 5 => {
                    next_id += 1;
                    let subscription = if rng.gen_bool(0.5) {
                        vec!["t".to_string()]
                    } else {
                        vec!["t".to_string(), "u".to_string()]
                    };
                    clients.push(Client {
                        member_id: format!("m{next_id}"),
                        epoch: 0,
                        owned: Assignment::new(),
                        subscription,
                        subscription_changed: true,
                        in_flight: None,
                        paused_until: 0,
                        leaving: false,
                    });
                }
                6..=7 if !clients.is_empty() => {
                    let i = rng.gen_range(0..clients.len());
                    clients[i].leaving = true;
                }
                8 if !clients.is_empty() => {
                    // Crash: the process and what it owned are gone.
                    let i = rng.gen_range(0..clients.len());
                    clients.remove(i);
                }
                9..=10 if !clients.is_empty() => {
                    let i = rng.gen_range(0..clients.len());
                    let pause = rng.gen_range(1_000..15_000);
                    clients[i].paused_until = h.now + pause;
                }
                11..=12 if !clients.is_empty() => {
                    let i = rng.gen_range(0..clients.len());
                    let c = &mut clients[i];
                    c.subscription = if c.subscription.len() == 1 {
                        vec!["t".to_string(), "u".to_string()]
                    } else {
                        vec!["t".to_string()]
                    };
                    c.subscription_changed = true;
                }
                _ => {}
            }
        }
        // Time.
        h.now += rng.gen_range(0..800);
        h.step(Input::Tick);
        // Heartbeats.
        for c in clients.iter_mut() {
            if c.in_flight.is_some() || c.paused_until > h.now || rng.gen_bool(0.3) {
                continue;
            }
            let epoch = if c.leaving { -1 } else { c.epoch };
            let mut req = hb(&c.member_id, epoch);
            req.rebalance_timeout_ms = if epoch == 0 { 30_000 } else { -1 };
            req.subscribed_topic_names =
                (epoch == 0 || c.subscription_changed).then(|| c.subscription.clone());
            req.owned = Some(to_ids(&c.owned));
            c.subscription_changed = false;
            let id = h.next_reply;
            h.next_reply += 1;
            h.step(Input::ConsumerHeartbeat(id, req));
            c.in_flight = Some(id);
        }
        // The disk, sometimes late.
        while !h.appends.is_empty() && (settle_phase || rng.gen_bool(0.7)) {
            h.complete_one();
        }
        // Answers.
        let mut gone = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            let Some(id) = c.in_flight else { continue };
            let Some(reply) = h.replies.remove(&id) else {
                continue;
            };
            c.in_flight = None;
            let Reply::ConsumerHeartbeat(r) = reply else {
                panic!("seed {seed}: wrong reply {reply:?}");
            };
            if c.leaving {
                gone.push(i);
                continue;
            }
            if r.error == E::FencedMemberEpoch.code() || r.error == E::UnknownMemberId.code() {
                // Lose everything and join again (a new id if unknown).
                c.owned.clear();
                c.epoch = 0;
                if r.error == E::UnknownMemberId.code() {
                    next_id += 1;
                    c.member_id = format!("m{next_id}");
                }
                continue;
            }
            assert_eq!(r.error, 0, "seed {seed}: {r:?}");
            c.epoch = r.member_epoch;
            if let Some(a) = r.assignment {
                c.owned = to_names(&a);
            }
        }
        for i in gone.into_iter().rev() {
            clients.remove(i);
        }
        h.check_exclusive();
        // Clients the coordinator still has never own a partition at once.
        let members: BTreeSet<String> = h
            .shard
            .consumer_group(G)
            .map(|g| g.members.keys().cloned().collect())
            .unwrap_or_default();
        let mut seen = BTreeMap::new();
        for c in clients.iter().filter(|c| members.contains(&c.member_id)) {
            for (t, ps) in &c.owned {
                for p in ps {
                    if let Some(other) = seen.insert((t.clone(), *p), c.member_id.clone()) {
                        panic!("seed {seed}: {t}/{p} owned by {other} and {}", c.member_id);
                    }
                }
            }
        }
    }
    // Settled: every partition of a subscribed topic has exactly one owner among live clients.
    if clients.is_empty() {
        return;
    }
    let subscribed: BTreeSet<String> = clients
        .iter()
        .flat_map(|c| c.subscription.iter().cloned())
        .collect();
    let mut want = BTreeSet::new();
    for (t, (_, n)) in topics() {
        if subscribed.contains(&t) {
            want.extend((0..n).map(|p| (t.clone(), p)));
        }
    }
    let got: BTreeSet<(String, i32)> = clients
        .iter()
        .flat_map(|c| {
            c.owned
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        })
        .collect();
    assert_eq!(got, want, "seed {seed}: settled assignment {clients:?}");
}

#[test]
fn randomized_simulation_never_gives_a_partition_to_two_members() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_CONSUMER_SIM_SEED") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => (0..150).collect(),
    };
    for seed in seeds {
        let result = std::panic::catch_unwind(|| simulate(seed));
        if let Err(e) = result {
            eprintln!(
                "consumer group simulation failed with seed {seed} \
                 (rerun: SLUICE_CONSUMER_SIM_SEED={seed})"
            );
            std::panic::resume_unwind(e);
        }
    }
}
