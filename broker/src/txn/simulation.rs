//! A seeded randomized simulation of the transaction coordinator's state machine: producers
//! that crash, stall past their timeout and retry; appends, marker writes and producer-id
//! allocations that fail or complete out of order; broker crashes at any step (losing what was
//! not fsynced and every effect in flight), then a restart from the replayed log.
//!
//! Invariants checked while running:
//! - no transactional write lands on a partition after a marker for its transaction;
//! - a commit marker is only written for a transaction whose PrepareCommit is durable;
//! - after every tick, no Ongoing transaction past its timeout is left without an abort.
//!
//! And after a final quiet phase without faults: every Prepare found after any restart has been
//! completed, nothing is Ongoing past its timeout, nothing is in flight.
//!
//! `SLUICE_TXN_SIM_SEEDS` (default 300) seeds of `SLUICE_TXN_SIM_STEPS` (default 3000) steps;
//! a failure prints its seed, rerun one with `SLUICE_TXN_SIM_SEED`.

use std::collections::{BTreeMap, BTreeSet};

use sluice_records::MarkerType;

use super::super::api::{Effect, Input, Producer, Reply, ReplyId, Request, TxnPartition};
use super::super::records::{TxnMetadata, TxnState};
use super::{ShardConfig, TxnShard};

const TXN_TIMEOUT_MS: i32 = 3_000;
const TICK_MS: i64 = 1_000;
const PRODUCERS: usize = 4;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Write(Producer),
    Marker(Producer, MarkerType),
}

/// A write granted by BeginWrite, not yet landed.
#[derive(Debug, Clone)]
struct Ticket {
    producer: Producer,
    partition: TxnPartition,
    /// How many events the partition had when the write was granted.
    events_at_grant: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wants {
    Init,
    Add,
    Work,
    End(bool),
}

struct Client {
    id: String,
    producer: Option<Producer>,
    wants: Wants,
    waiting: Option<ReplyId>,
    tickets: Vec<Ticket>,
    partitions: Vec<TxnPartition>,
}

struct World {
    rng: Rng,
    seed: u64,
    now: i64,
    next_tick: i64,
    shard: TxnShard,
    /// `__transaction_state`: (id, value, durable).
    log: Vec<(String, Option<TxnMetadata>, bool)>,
    partitions: BTreeMap<TxnPartition, Vec<Event>>,
    in_flight: Vec<Effect>,
    next_pid: i64,
    next_reply: ReplyId,
    clients: Vec<Client>,
    recovering: Option<ReplyId>,
    faults: bool,
    /// The transactional id of each request sent.
    sent: BTreeMap<ReplyId, String>,
}

fn all_partitions() -> Vec<TxnPartition> {
    let mut out = Vec::new();
    for t in ["a", "b"] {
        for p in 0..2 {
            out.push((t.to_string(), p));
        }
    }
    out
}

fn config() -> ShardConfig {
    ShardConfig {
        max_timeout_ms: 900_000,
        id_expiration_ms: 20_000,
    }
}

impl World {
    fn new(seed: u64) -> World {
        World {
            rng: Rng(seed),
            seed,
            now: 1_000_000,
            next_tick: 1_000_000 + TICK_MS,
            shard: TxnShard::new(config(), []),
            log: Vec::new(),
            partitions: all_partitions()
                .into_iter()
                .map(|p| (p, Vec::new()))
                .collect(),
            in_flight: Vec::new(),
            next_pid: 1000,
            next_reply: 0,
            clients: (0..PRODUCERS)
                .map(|i| Client {
                    id: format!("txn-{i}"),
                    producer: None,
                    wants: Wants::Init,
                    waiting: None,
                    tickets: Vec::new(),
                    partitions: Vec::new(),
                })
                .collect(),
            recovering: None,
            faults: true,
            sent: BTreeMap::new(),
        }
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("{msg} (SLUICE_TXN_SIM_SEED={})", self.seed)
    }

    fn step(&mut self, input: Input) {
        let tick = input == Input::Tick;
        let effects = self.shard.step(self.now, input);
        for e in effects {
            match e {
                Effect::Reply(to, reply) => self.reply(to, reply),
                Effect::Completed { .. } | Effect::TimedOut => {}
                other => self.in_flight.push(other),
            }
        }
        if tick {
            self.check_no_idle_expired();
        }
    }

    fn check_no_idle_expired(&self) {
        for (id, e) in &self.shard.entries {
            let m = &e.meta;
            let expired = m.state == TxnState::Ongoing
                && self.now.saturating_sub(m.start_ms) > i64::from(m.timeout_ms);
            if expired && e.op.is_none() {
                self.fail(&format!(
                    "{id} is Ongoing past its timeout and nothing aborts it"
                ));
            }
        }
    }

    fn request(&mut self, client: usize, request: Request) {
        let reply = self.next_reply;
        self.next_reply += 1;
        self.clients[client].waiting = Some(reply);
        let id = self.clients[client].id.clone();
        self.sent.insert(reply, id.clone());
        self.step(Input::Request(reply, id, request));
    }

    fn reply(&mut self, to: ReplyId, reply: Reply) {
        if self.recovering == Some(to) {
            self.recovering = None;
            return;
        }
        let sent = self.sent.remove(&to);
        let Some(i) = self.clients.iter().position(|c| c.waiting == Some(to)) else {
            // A client that crashed meanwhile: a write granted to it is dropped at once (the
            // shell drops the write guard it cannot deliver).
            if let (Reply::Write(Ok(_)), Some(id)) = (&reply, sent) {
                self.step(Input::WriteDone(id));
            }
            return;
        };
        self.clients[i].waiting = None;
        match reply {
            Reply::Producer(Ok(p)) => {
                self.clients[i].producer = Some(p);
                self.clients[i].wants = Wants::Add;
            }
            Reply::Done(Ok(())) => {
                self.clients[i].wants = match self.clients[i].wants {
                    Wants::Add => Wants::Work,
                    _ => Wants::Add,
                };
            }
            Reply::Write(Ok(granted)) => {
                let pick = self.rng.below(granted.len() as u64) as usize;
                let partition = granted.iter().nth(pick).cloned();
                let producer = self.clients[i].producer;
                match (partition, producer) {
                    (Some(partition), Some(producer)) => {
                        let events_at_grant = self.partitions[&partition].len();
                        self.clients[i].tickets.push(Ticket {
                            producer,
                            partition,
                            events_at_grant,
                        });
                    }
                    _ => self.fail("a write granted with no partitions or no producer"),
                }
            }
            Reply::Producer(Err(_)) | Reply::Done(Err(_)) | Reply::Write(Err(_)) => {
                // Fenced, not ongoing, concurrent, unavailable: start over with a new epoch.
                self.clients[i].wants = Wants::Init;
            }
        }
    }

    /// One client does the next thing it wants, if it is not waiting.
    fn act(&mut self, i: usize) {
        if self.rng.chance(30) && !self.clients[i].tickets.is_empty() {
            return self.land(i);
        }
        if self.clients[i].waiting.is_some() {
            return;
        }
        let (wants, known) = (self.clients[i].wants.clone(), self.clients[i].producer);
        let producer = known.unwrap_or((-1, -1));
        let request = match wants {
            Wants::Init => Request::InitProducerId {
                timeout_ms: TXN_TIMEOUT_MS,
                expected: known.filter(|_| self.rng.chance(50)),
                knows_fenced: true,
            },
            Wants::Add => {
                let mut parts = all_partitions();
                parts.truncate(1 + (self.rng.next() % 4) as usize);
                self.clients[i].partitions = parts.clone();
                Request::AddPartitions {
                    producer,
                    partitions: parts,
                    knows_fenced: true,
                }
            }
            Wants::Work if self.rng.chance(70) => Request::BeginWrite {
                producer,
                knows_fenced: true,
            },
            Wants::Work => {
                let commit = self.rng.chance(60);
                self.clients[i].wants = Wants::End(commit);
                Request::EndTxn {
                    producer,
                    commit,
                    knows_fenced: true,
                }
            }
            Wants::End(commit) => Request::EndTxn {
                producer,
                commit,
                knows_fenced: true,
            },
        };
        self.request(i, request);
    }

    /// A granted write lands (or is dropped), then reports done.
    fn land(&mut self, i: usize) {
        let at = self.rng.below(self.clients[i].tickets.len() as u64) as usize;
        let t = self.clients[i].tickets.remove(at);
        let events = self
            .partitions
            .get_mut(&t.partition)
            .map(std::mem::take)
            .unwrap_or_default();
        let after_marker = events[t.events_at_grant..].iter().any(
            |e| matches!(e, Event::Marker(p, _) if p.0 == t.producer.0 && p.1 >= t.producer.1),
        );
        if after_marker {
            self.fail(&format!(
                "a write of {:?} lands on {:?} after its marker",
                t.producer, t.partition
            ));
        }
        let mut events = events;
        events.push(Event::Write(t.producer));
        self.partitions.insert(t.partition, events);
        let id = self.clients[i].id.clone();
        self.step(Input::WriteDone(id));
    }

    fn durable_prepare_commit(&self, producer: Producer) -> bool {
        self.log.iter().any(|(_, m, durable)| {
            *durable
                && m.as_ref().is_some_and(|m| {
                    m.state == TxnState::PrepareCommit
                        && (m.producer_id, m.producer_epoch) == producer
                })
        })
    }

    /// Carries out one effect in flight, chosen at random, maybe failing it.
    fn deliver(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let at = self.rng.below(self.in_flight.len() as u64) as usize;
        let effect = self.in_flight.swap_remove(at);
        let faulty = self.faults;
        match effect {
            Effect::Persist {
                op,
                id,
                meta,
                durable,
            } => {
                let ok = !(faulty && self.rng.chance(5));
                if ok {
                    if durable {
                        // An fsync makes everything before it durable too.
                        self.log.iter_mut().for_each(|r| r.2 = true);
                    }
                    self.log.push((id, meta, durable));
                }
                self.step(Input::Persisted(op, ok));
            }
            Effect::WriteMarkers {
                op,
                producer,
                marker,
                partitions,
            } => {
                if marker == MarkerType::Commit && !self.durable_prepare_commit(producer) {
                    self.fail(&format!(
                        "commit markers of {producer:?} without a durable PrepareCommit"
                    ));
                }
                let mut ok = true;
                for p in partitions {
                    if faulty && self.rng.chance(8) {
                        ok = false;
                        continue;
                    }
                    if let Some(events) = self.partitions.get_mut(&p) {
                        events.push(Event::Marker(producer, marker));
                    }
                }
                self.step(Input::MarkersWritten(op, ok));
            }
            Effect::AllocateProducerId { op } => {
                let pid = (!(faulty && self.rng.chance(5))).then(|| {
                    self.next_pid += 1;
                    self.next_pid
                });
                self.step(Input::ProducerIdAllocated(op, pid));
            }
            other => self.fail(&format!("unexpected effect in flight: {other:?}")),
        }
    }

    /// The broker dies: effects in flight and what was not fsynced are lost; it restarts from
    /// the replayed log and recovers.
    fn crash_and_restart(&mut self) {
        self.in_flight.clear();
        while self.log.last().is_some_and(|r| !r.2) {
            self.log.pop();
        }
        let mut loaded = BTreeMap::new();
        for (id, m, _) in &self.log {
            match m {
                Some(m) => loaded.insert(id.clone(), m.clone()),
                None => loaded.remove(id),
            };
        }
        self.shard = TxnShard::new(config(), loaded);
        for c in &mut self.clients {
            // Connections are gone: requests and writes in flight are lost.
            c.waiting = None;
            c.tickets.clear();
            c.wants = Wants::Init;
        }
        let reply = self.next_reply;
        self.next_reply += 1;
        self.recovering = Some(reply);
        self.step(Input::Recover(reply));
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.now += self.rng.below(120) as i64;
            if self.now >= self.next_tick {
                self.next_tick = self.now + TICK_MS;
                self.step(Input::Tick);
            }
            match self.rng.below(100) {
                0..=39 => self.deliver(),
                40..=88 => {
                    let i = self.rng.below(PRODUCERS as u64) as usize;
                    // A stalled client: it does nothing for a while (its transaction may time out).
                    if !self.rng.chance(3) {
                        self.act(i);
                    } else {
                        self.now += self.rng.below(u64::from(TXN_TIMEOUT_MS as u32)) as i64;
                    }
                }
                89..=96 => {
                    // A client process dies; a new one takes its transactional id.
                    let i = self.rng.below(PRODUCERS as u64) as usize;
                    let tickets = std::mem::take(&mut self.clients[i].tickets);
                    let id = self.clients[i].id.clone();
                    for _ in tickets {
                        self.step(Input::WriteDone(id.clone()));
                    }
                    self.clients[i].waiting = None;
                    self.clients[i].producer = None;
                    self.clients[i].wants = Wants::Init;
                }
                _ => {
                    if self.rng.chance(15) {
                        self.crash_and_restart();
                    }
                }
            }
        }
    }

    /// No faults, no clients: everything in flight completes, time passes every timeout.
    fn quiesce(&mut self) {
        self.faults = false;
        for c in &mut self.clients {
            let n = c.tickets.len();
            c.tickets.clear();
            c.waiting = None;
            let id = c.id.clone();
            for _ in 0..n {
                let effects = self.shard.step(self.now, Input::WriteDone(id.clone()));
                self.in_flight.extend(effects.into_iter().filter(|e| {
                    !matches!(
                        e,
                        Effect::Reply(..) | Effect::Completed { .. } | Effect::TimedOut
                    )
                }));
            }
        }
        for _ in 0..20 {
            while !self.in_flight.is_empty() {
                self.deliver();
            }
            self.now += i64::from(TXN_TIMEOUT_MS) + TICK_MS;
            self.step(Input::Tick);
        }
        while !self.in_flight.is_empty() {
            self.deliver();
        }
        if !self.shard.is_idle() {
            self.fail("operations still in progress after the quiet phase");
        }
        if self.recovering.is_some() {
            self.fail("a recovery pass never finished");
        }
        for (id, e) in &self.shard.entries {
            match e.meta.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    self.fail(&format!("{id} is still in {:?}", e.meta.state))
                }
                TxnState::Ongoing => self.fail(&format!("{id} is still Ongoing past its timeout")),
                _ => {}
            }
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_coordinator_keeps_its_invariants_under_faults_and_restarts() {
    let steps = env_u64("SLUICE_TXN_SIM_STEPS", 3_000) as usize;
    let seeds: Vec<u64> = match std::env::var("SLUICE_TXN_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SLUICE_TXN_SIM_SEED is a number")],
        Err(_) => (1..=env_u64("SLUICE_TXN_SIM_SEEDS", 300)).collect(),
    };
    let (mut commits, mut aborts, mut writes) = (0usize, 0usize, 0usize);
    for seed in seeds {
        let mut w = World::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        w.seed = seed;
        w.run(steps);
        w.quiesce();
        for events in w.partitions.values() {
            for e in events {
                match e {
                    Event::Write(_) => writes += 1,
                    Event::Marker(_, MarkerType::Commit) => commits += 1,
                    Event::Marker(_, MarkerType::Abort) => aborts += 1,
                }
            }
        }
    }
    // The simulation must exercise what it checks.
    assert!(
        writes > 1_000 && commits > 100 && aborts > 100,
        "{writes} writes, {commits} commit and {aborts} abort markers"
    );
}

#[test]
fn a_transaction_waits_for_its_writes_before_its_marker() {
    let mut s = TxnShard::new(config(), []);
    let now = 1_000;
    let effects = s.step(
        now,
        Input::Request(
            1,
            "t".into(),
            Request::InitProducerId {
                timeout_ms: 60_000,
                expected: None,
                knows_fenced: true,
            },
        ),
    );
    assert!(
        matches!(effects[..], [Effect::AllocateProducerId { op: 0 }]),
        "{effects:?}"
    );
    let effects = s.step(now, Input::ProducerIdAllocated(0, Some(7)));
    assert!(
        matches!(
            &effects[..],
            [Effect::Persist {
                op: 1,
                durable: true,
                ..
            }]
        ),
        "{effects:?}"
    );
    let effects = s.step(now, Input::Persisted(1, true));
    assert_eq!(effects, vec![Effect::Reply(1, Reply::Producer(Ok((7, 0))))]);
    let part = ("a".to_string(), 0);
    let effects = s.step(
        now,
        Input::Request(
            2,
            "t".into(),
            Request::AddPartitions {
                producer: (7, 0),
                partitions: vec![part.clone()],
                knows_fenced: true,
            },
        ),
    );
    assert!(matches!(&effects[..], [Effect::Persist { op: 2, .. }]));
    s.step(now, Input::Persisted(2, true));
    let effects = s.step(
        now,
        Input::Request(
            3,
            "t".into(),
            Request::BeginWrite {
                producer: (7, 0),
                knows_fenced: true,
            },
        ),
    );
    assert_eq!(
        effects,
        vec![Effect::Reply(
            3,
            Reply::Write(Ok(BTreeSet::from([part.clone()])))
        )]
    );
    // EndTxn waits: nothing is written while the write is in flight.
    let effects = s.step(
        now,
        Input::Request(
            4,
            "t".into(),
            Request::EndTxn {
                producer: (7, 0),
                commit: true,
                knows_fenced: true,
            },
        ),
    );
    assert!(effects.is_empty(), "{effects:?}");
    // A write arriving now queues behind the EndTxn.
    let effects = s.step(
        now,
        Input::Request(
            5,
            "t".into(),
            Request::BeginWrite {
                producer: (7, 0),
                knows_fenced: true,
            },
        ),
    );
    assert!(effects.is_empty(), "{effects:?}");
    let effects = s.step(now, Input::WriteDone("t".into()));
    assert!(
        matches!(&effects[..], [Effect::Persist { op: 3, .. }]),
        "the decision after the write: {effects:?}"
    );
    let effects = s.step(now, Input::Persisted(3, true));
    assert!(
        matches!(
            &effects[..],
            [Effect::WriteMarkers {
                op: 4,
                marker: MarkerType::Commit,
                ..
            }]
        ),
        "{effects:?}"
    );
    let effects = s.step(now, Input::MarkersWritten(4, true));
    assert!(
        matches!(
            &effects[..],
            [Effect::Persist {
                op: 5,
                durable: false,
                ..
            }]
        ),
        "{effects:?}"
    );
    let effects = s.step(now, Input::Persisted(5, true));
    assert_eq!(
        effects,
        vec![
            Effect::Completed { commit: true },
            Effect::Reply(4, Reply::Done(Ok(()))),
            Effect::Reply(
                5,
                Reply::Write(Err(kafka_protocol::error::ResponseError::InvalidTxnState))
            ),
        ]
    );
}
