//! The transaction coordinator as a sans-IO state machine: [`TxnShard::step`] takes the time
//! and one [`Input`] and returns the [`Effect`]s (replies, `__transaction_state` appends,
//! marker writes, producer-id allocations) that the shell in [`super::actor`] carries out.
//!
//! Each transactional id runs at most one operation at a time ([`Op`]): InitProducerId,
//! AddPartitions, EndTxn, or a maintenance goal (complete a Prepare, abort an Ongoing
//! transaction past its timeout, forget an expired id). An operation has at most one effect in
//! flight and advances when its outcome comes back; requests for a busy id wait in its queue,
//! in order. Every state change is appended to `__transaction_state` before it takes effect in
//! memory or is answered.
//!
//! Writes: a granted [`Request::BeginWrite`] counts as in flight until [`Input::WriteDone`].
//! An operation that ends the Ongoing state (EndTxn, a timeout or fencing abort) first waits
//! for the writes in flight to finish, and requests arriving meanwhile (new writes included)
//! queue behind it and then see the transaction ended. So no transactional write can land
//! after its transaction's marker.
//!
//! Completion: a Prepare record is followed by the markers (durably), then by the Complete
//! record, which need not wait for an fsync: lost, it leaves the Prepare record, and the
//! recovery pass writes the same markers again (a repeated marker changes nothing).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kafka_protocol::error::ResponseError;
use sluice_records::MarkerType;

use super::api::{Effect, Input, OpId, Producer, Reply, ReplyId, Request, TxnPartition};
use super::records::{TxnMetadata, TxnState};

/// The configs the state machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
}

/// Kafka answers PRODUCER_FENCED only to versions that know it; older ones get
/// INVALID_PRODUCER_EPOCH.
pub fn fenced(knows_fenced: bool) -> ResponseError {
    if knows_fenced {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

/// What an operation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Goal {
    Init {
        timeout_ms: i32,
    },
    Add {
        partitions: Vec<TxnPartition>,
    },
    End {
        commit: bool,
    },
    /// Complete a transaction found in a Prepare state.
    Settle,
    /// Abort the Ongoing transaction with the epoch bumped (timeout, recovery).
    Abort,
    /// Forget the transactional id (`transactional.id.expiration.ms`).
    Expire,
}

/// An operation in progress on one transactional id.
#[derive(Debug, Clone)]
struct Op {
    goal: Goal,
    reply: Option<ReplyId>,
    /// The effect in flight and what to do with its outcome; `None` while waiting for the
    /// transaction's writes to drain.
    in_flight: Option<Step>,
    /// A producer id allocated for this operation.
    producer_id: Option<i64>,
    /// EndTxn: this operation wrote the decision (Prepare) itself, so a completion that fails
    /// afterwards is answered with success (the decision stands; maintenance retries it).
    decided: bool,
}

/// The next thing an operation does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Wait for the transaction's writes in flight.
    WaitForWrites,
    Step(Step),
    /// Done; answer with the reply, if the operation has one.
    Finish(Option<Reply>),
}

/// One effect of an operation, with what follows its success and its failure.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    kind: StepKind,
    /// On success: `None` continues the operation, `Some` finishes it with that reply.
    on_ok: Option<Reply>,
    /// On failure the operation finishes with this reply.
    on_err: Reply,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StepKind {
    Persist {
        meta: Option<TxnMetadata>,
        durable: bool,
    },
    Markers(MarkerType),
    Allocate,
}

/// One transactional id.
#[derive(Debug, Clone)]
struct Entry {
    meta: TxnMetadata,
    /// Writes granted and not yet done.
    writes: u32,
    /// The markers of the current Prepare state are written (durably).
    markers_written: bool,
    op: Option<Op>,
    /// Requests waiting for `op` to finish.
    queue: VecDeque<(ReplyId, Request)>,
}

impl Entry {
    fn new(meta: TxnMetadata) -> Entry {
        Entry {
            meta,
            writes: 0,
            markers_written: false,
            op: None,
            queue: VecDeque::new(),
        }
    }
}

/// The transaction coordinator's state: every transactional id.
#[derive(Debug)]
pub struct TxnShard {
    config: ShardConfig,
    entries: BTreeMap<String, Entry>,
    /// Effects in flight: which transactional id each belongs to.
    awaiting: BTreeMap<OpId, String>,
    next_op: OpId,
    /// A recovery pass in progress: its reply and the ids it still waits for.
    recovery: Option<(ReplyId, BTreeSet<String>)>,
}

impl TxnShard {
    /// The state machine over what `__transaction_state` held at start-up.
    pub fn new(
        config: ShardConfig,
        loaded: impl IntoIterator<Item = (String, TxnMetadata)>,
    ) -> Self {
        TxnShard {
            config,
            entries: loaded
                .into_iter()
                .map(|(id, m)| (id, Entry::new(m)))
                .collect(),
            awaiting: BTreeMap::new(),
            next_op: 0,
            recovery: None,
        }
    }

    /// One transactional id's metadata, unless it is unassigned or dead.
    pub fn describe(&self, id: &str) -> Option<TxnMetadata> {
        let m = &self.entries.get(id)?.meta;
        (m.producer_id >= 0 && m.state != TxnState::Dead).then(|| m.clone())
    }

    /// Every assigned transactional id with its metadata, by id.
    pub fn describe_all(&self) -> Vec<(String, TxnMetadata)> {
        self.entries
            .keys()
            .filter_map(|id| Some((id.clone(), self.describe(id)?)))
            .collect()
    }

    /// AddPartitionsToTxn v4+ `verify_only`: whether each partition is in the producer's
    /// ongoing transaction.
    pub fn verify_partitions(
        &self,
        id: &str,
        producer: Producer,
        partitions: &[TxnPartition],
    ) -> Result<Vec<bool>, ResponseError> {
        let e = self
            .entries
            .get(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        check_producer(&e.meta, producer, true)?;
        Ok(partitions
            .iter()
            .map(|p| e.meta.state == TxnState::Ongoing && e.meta.partitions.contains(p))
            .collect())
    }

    /// Writes in flight for `id` (for tests and invariants).
    pub fn writes_in_flight(&self, id: &str) -> u32 {
        self.entries.get(id).map_or(0, |e| e.writes)
    }

    /// Whether any operation or effect is in progress.
    pub fn is_idle(&self) -> bool {
        self.awaiting.is_empty() && self.entries.values().all(|e| e.op.is_none())
    }

    /// Applies one input at time `now` (ms since the epoch).
    pub fn step(&mut self, now: i64, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Request(reply, id, request) => self.request(now, reply, id, request, &mut out),
            Input::WriteDone(id) => self.write_done(now, &id, &mut out),
            Input::Persisted(op, ok) => self.outcome(now, op, ok.then_some(None), &mut out),
            Input::MarkersWritten(op, ok) => self.outcome(now, op, ok.then_some(None), &mut out),
            Input::ProducerIdAllocated(op, pid) => self.outcome(now, op, pid.map(Some), &mut out),
            Input::Recover(reply) => self.recover(now, reply, &mut out),
            Input::Tick => self.tick(now, &mut out),
        }
        out
    }

    fn request(
        &mut self,
        now: i64,
        reply: ReplyId,
        id: String,
        request: Request,
        out: &mut Vec<Effect>,
    ) {
        if let Request::InitProducerId { timeout_ms, .. } = &request {
            let refused = if id.is_empty() {
                Some(ResponseError::InvalidRequest)
            } else if *timeout_ms <= 0 || *timeout_ms > self.config.max_timeout_ms {
                Some(ResponseError::InvalidTransactionTimeout)
            } else {
                None
            };
            if let Some(e) = refused {
                out.push(Effect::Reply(reply, Reply::Producer(Err(e))));
                return;
            }
            self.entries
                .entry(id.clone())
                .or_insert_with(|| Entry::new(TxnMetadata::unassigned()));
        }
        let Some(entry) = self.entries.get_mut(&id) else {
            out.push(Effect::Reply(
                reply,
                refusal(&request, ResponseError::InvalidProducerIdMapping),
            ));
            return;
        };
        entry.queue.push_back((reply, request));
        self.drain_queue(now, &id, out);
    }

    /// Starts queued requests of `id` until one of them starts an operation.
    fn drain_queue(&mut self, now: i64, id: &str, out: &mut Vec<Effect>) {
        loop {
            let Some(entry) = self.entries.get_mut(id) else {
                return;
            };
            if entry.op.is_some() {
                return;
            }
            let Some((reply, request)) = entry.queue.pop_front() else {
                return;
            };
            match start(entry, reply, request) {
                Started::Answered(r) => out.push(Effect::Reply(reply, r)),
                Started::Op(op) => {
                    entry.op = Some(op);
                    self.advance(now, id, out);
                }
            }
        }
    }

    fn write_done(&mut self, now: i64, id: &str, out: &mut Vec<Effect>) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        assert!(
            entry.writes > 0,
            "a write finished that was never granted ({id})"
        );
        entry.writes -= 1;
        let waiting = entry.op.as_ref().is_some_and(|op| op.in_flight.is_none());
        if entry.writes == 0 && waiting {
            self.advance(now, id, out);
        }
    }

    /// Emits the next effect of `id`'s operation, or finishes it.
    fn advance(&mut self, now: i64, id: &str, out: &mut Vec<Effect>) {
        let action = {
            let Some(entry) = self.entries.get(id) else {
                return;
            };
            let Some(op) = entry.op.as_ref() else {
                return;
            };
            let view = View {
                meta: &entry.meta,
                writes: entry.writes,
                markers_written: entry.markers_written,
            };
            next_action(view, op, now, &self.config)
        };
        match action {
            Action::WaitForWrites => {}
            Action::Finish(reply) => self.finish(now, id, reply, out),
            Action::Step(step) => {
                let Some(entry) = self.entries.get_mut(id) else {
                    return;
                };
                let op_id = self.next_op;
                self.next_op += 1;
                out.push(effect(op_id, id, &entry.meta, &step.kind));
                if let Some(op) = entry.op.as_mut() {
                    op.in_flight = Some(step);
                }
                self.awaiting.insert(op_id, id.to_string());
            }
        }
    }

    /// The outcome of an effect: `None` failed; `Some(pid)` succeeded (with a producer id for
    /// an allocation).
    fn outcome(
        &mut self,
        now: i64,
        op_id: OpId,
        result: Option<Option<i64>>,
        out: &mut Vec<Effect>,
    ) {
        let Some(id) = self.awaiting.remove(&op_id) else {
            return;
        };
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(step) = entry.op.as_mut().and_then(|op| op.in_flight.take()) else {
            return;
        };
        let Some(allocated) = result else {
            return self.finish(now, &id, Some(step.on_err), out);
        };
        match &step.kind {
            StepKind::Persist { meta, .. } => {
                let was_prepare = is_prepare(entry.meta.state);
                let Some(next) = meta.clone() else {
                    // A tombstone: the id is forgotten; requests waiting for it start over.
                    let queued = std::mem::take(&mut entry.queue);
                    self.entries.remove(&id);
                    self.done_recovering(&id, out);
                    for (reply, request) in queued {
                        self.request(now, reply, id.clone(), request, out);
                    }
                    return;
                };
                if was_prepare && !is_prepare(next.state) {
                    out.push(Effect::Completed {
                        commit: entry.meta.state == TxnState::PrepareCommit,
                    });
                }
                if let Some(op) = entry.op.as_mut() {
                    op.decided |= matches!(op.goal, Goal::End { .. }) && is_prepare(next.state);
                }
                entry.meta = next;
                entry.markers_written = false;
            }
            StepKind::Markers(_) => entry.markers_written = true,
            StepKind::Allocate => {
                if let Some(op) = entry.op.as_mut() {
                    op.producer_id = allocated;
                }
            }
        }
        match step.on_ok {
            Some(reply) => self.finish(now, &id, Some(reply), out),
            None => self.advance(now, &id, out),
        }
    }

    fn finish(&mut self, now: i64, id: &str, reply: Option<Reply>, out: &mut Vec<Effect>) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let Some(op) = entry.op.take() else {
            return;
        };
        if let (Some(to), Some(reply)) = (op.reply, reply) {
            out.push(Effect::Reply(to, reply));
        }
        self.done_recovering(id, out);
        self.drain_queue(now, id, out);
    }

    fn done_recovering(&mut self, id: &str, out: &mut Vec<Effect>) {
        if let Some((reply, waiting)) = self.recovery.as_mut() {
            waiting.remove(id);
            if waiting.is_empty() {
                out.push(Effect::Reply(*reply, Reply::Done(Ok(()))));
                self.recovery = None;
            }
        }
    }

    fn recover(&mut self, now: i64, reply: ReplyId, out: &mut Vec<Effect>) {
        let goals: Vec<(String, Goal)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.op.is_none())
            .filter_map(|(id, e)| match e.meta.state {
                s if is_prepare(s) => Some((id.clone(), Goal::Settle)),
                TxnState::Ongoing => Some((id.clone(), Goal::Abort)),
                _ => None,
            })
            .collect();
        if goals.is_empty() {
            out.push(Effect::Reply(reply, Reply::Done(Ok(()))));
            return;
        }
        self.recovery = Some((reply, goals.iter().map(|(id, _)| id.clone()).collect()));
        for (id, goal) in goals {
            self.begin_maintenance(now, &id, goal, out);
        }
    }

    fn tick(&mut self, now: i64, out: &mut Vec<Effect>) {
        let expiration = self.config.id_expiration_ms;
        let goals: Vec<(String, Goal)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.op.is_none() && e.queue.is_empty())
            .filter_map(|(id, e)| {
                let m = &e.meta;
                let goal = match m.state {
                    s if is_prepare(s) => Goal::Settle,
                    TxnState::Ongoing
                        if now.saturating_sub(m.start_ms) > i64::from(m.timeout_ms) =>
                    {
                        Goal::Abort
                    }
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                        if m.producer_id >= 0
                            && now.saturating_sub(m.last_update_ms) > expiration =>
                    {
                        Goal::Expire
                    }
                    _ => return None,
                };
                Some((id.clone(), goal))
            })
            .collect();
        for (id, goal) in goals {
            if goal == Goal::Abort {
                out.push(Effect::TimedOut);
            }
            self.begin_maintenance(now, &id, goal, out);
        }
    }

    fn begin_maintenance(&mut self, now: i64, id: &str, goal: Goal, out: &mut Vec<Effect>) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.op = Some(Op {
                goal,
                reply: None,
                in_flight: None,
                producer_id: None,
                decided: false,
            });
            self.advance(now, id, out);
        }
    }
}

/// What [`next_action`] reads of an entry.
#[derive(Clone, Copy)]
struct View<'a> {
    meta: &'a TxnMetadata,
    writes: u32,
    markers_written: bool,
}

fn is_prepare(state: TxnState) -> bool {
    matches!(state, TxnState::PrepareCommit | TxnState::PrepareAbort)
}

fn is_settled(state: TxnState) -> bool {
    matches!(
        state,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
    )
}

/// The refusal of `request` with `e`, in its reply's shape.
fn refusal(request: &Request, e: ResponseError) -> Reply {
    match request {
        Request::InitProducerId { .. } => Reply::Producer(Err(e)),
        Request::AddPartitions { .. } | Request::EndTxn { .. } => Reply::Done(Err(e)),
        Request::BeginWrite { .. } => Reply::Write(Err(e)),
    }
}

fn check_producer(
    m: &TxnMetadata,
    producer: Producer,
    knows_fenced: bool,
) -> Result<(), ResponseError> {
    if m.producer_id < 0 || m.producer_id != producer.0 {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != producer.1 {
        return Err(fenced(knows_fenced));
    }
    Ok(())
}

enum Started {
    Answered(Reply),
    Op(Op),
}

/// The checks of a request against the current state of an idle entry: an answer, or the
/// operation that carries it out.
fn start(entry: &mut Entry, reply: ReplyId, request: Request) -> Started {
    let m = &entry.meta;
    let op = |goal| {
        Started::Op(Op {
            goal,
            reply: Some(reply),
            in_flight: None,
            producer_id: None,
            decided: false,
        })
    };
    match request {
        Request::InitProducerId {
            timeout_ms,
            expected,
            knows_fenced,
        } => {
            if let Some((pid, epoch)) = expected.filter(|(pid, _)| *pid >= 0 && m.producer_id >= 0)
            {
                if pid == m.producer_id && epoch == m.last_producer_epoch && is_settled(m.state) {
                    // A retry of the re-init that bumped the epoch: same answer.
                    return Started::Answered(Reply::Producer(Ok((
                        m.producer_id,
                        m.producer_epoch,
                    ))));
                }
                if pid != m.producer_id || epoch != m.producer_epoch {
                    return Started::Answered(Reply::Producer(Err(fenced(knows_fenced))));
                }
            }
            op(Goal::Init { timeout_ms })
        }
        Request::AddPartitions {
            producer,
            partitions,
            knows_fenced,
        } => {
            if let Err(e) = check_producer(m, producer, knows_fenced) {
                return Started::Answered(Reply::Done(Err(e)));
            }
            if matches!(m.state, TxnState::Dead | TxnState::PrepareEpochFence) {
                return Started::Answered(Reply::Done(Err(ResponseError::ConcurrentTransactions)));
            }
            op(Goal::Add { partitions })
        }
        Request::EndTxn {
            producer,
            commit,
            knows_fenced,
        } => {
            if let Err(e) = check_producer(m, producer, knows_fenced) {
                return Started::Answered(Reply::Done(Err(e)));
            }
            let answer = match (m.state, commit) {
                (TxnState::Ongoing, _)
                | (TxnState::PrepareCommit, true)
                | (TxnState::PrepareAbort, false) => return op(Goal::End { commit }),
                // A retry of an EndTxn that completed.
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
                (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => {
                    Err(ResponseError::ConcurrentTransactions)
                }
                _ => Err(ResponseError::InvalidTxnState),
            };
            Started::Answered(Reply::Done(answer))
        }
        Request::BeginWrite {
            producer,
            knows_fenced,
        } => {
            let answer = check_producer(m, producer, knows_fenced).and_then(|()| {
                if m.state == TxnState::Ongoing {
                    Ok(m.partitions.clone())
                } else {
                    Err(ResponseError::InvalidTxnState)
                }
            });
            if answer.is_ok() {
                entry.writes += 1;
            }
            Started::Answered(Reply::Write(answer))
        }
    }
}

/// The effect that carries out `kind` for `id`.
fn effect(op: OpId, id: &str, meta: &TxnMetadata, kind: &StepKind) -> Effect {
    match kind {
        StepKind::Persist {
            meta: next,
            durable,
        } => Effect::Persist {
            op,
            id: id.to_string(),
            meta: next.clone(),
            durable: *durable,
        },
        StepKind::Markers(marker) => Effect::WriteMarkers {
            op,
            producer: (meta.producer_id, meta.producer_epoch),
            marker: *marker,
            partitions: meta.partitions.iter().cloned().collect(),
        },
        StepKind::Allocate => Effect::AllocateProducerId { op },
    }
}

fn persist(meta: TxnMetadata, durable: bool, on_ok: Option<Reply>, on_err: Reply) -> Action {
    Action::Step(Step {
        kind: StepKind::Persist {
            meta: Some(meta),
            durable,
        },
        on_ok,
        on_err,
    })
}

/// The step that moves a Prepare state towards completion (markers, then the Complete
/// record), if the transaction is in one.
fn settle(v: View<'_>, now: i64, on_err: Reply) -> Option<Action> {
    let (marker, done) = match v.meta.state {
        TxnState::PrepareCommit => (MarkerType::Commit, TxnState::CompleteCommit),
        TxnState::PrepareAbort => (MarkerType::Abort, TxnState::CompleteAbort),
        _ => return None,
    };
    if !v.markers_written {
        return Some(Action::Step(Step {
            kind: StepKind::Markers(marker),
            on_ok: None,
            on_err,
        }));
    }
    let mut next = v.meta.clone();
    next.state = done;
    next.partitions.clear();
    next.start_ms = -1;
    next.last_update_ms = now;
    Some(persist(next, false, None, on_err))
}

/// The Ongoing transaction turned into PrepareAbort with the epoch bumped, so that the
/// producer that ran it is fenced.
fn fencing_abort(m: &TxnMetadata, now: i64) -> TxnMetadata {
    let mut next = m.clone();
    if m.producer_epoch < i16::MAX - 1 {
        next.last_producer_epoch = m.producer_epoch;
        next.producer_epoch = m.producer_epoch + 1;
    }
    next.state = TxnState::PrepareAbort;
    next.last_update_ms = now;
    next
}

fn next_action(v: View<'_>, op: &Op, now: i64, config: &ShardConfig) -> Action {
    match &op.goal {
        Goal::Init { timeout_ms } => init_action(v, op, *timeout_ms, now),
        Goal::Add { partitions } => add_action(v, partitions, now),
        Goal::End { commit } => end_action(v, op, *commit, now),
        Goal::Settle => settle(v, now, Reply::Done(Ok(()))).unwrap_or(Action::Finish(None)),
        Goal::Abort => match v.meta.state {
            TxnState::Ongoing if v.writes > 0 => Action::WaitForWrites,
            TxnState::Ongoing => {
                persist(fencing_abort(v.meta, now), true, None, Reply::Done(Ok(())))
            }
            _ => settle(v, now, Reply::Done(Ok(()))).unwrap_or(Action::Finish(None)),
        },
        Goal::Expire => {
            let m = v.meta;
            let expired = is_settled(m.state)
                && m.producer_id >= 0
                && now.saturating_sub(m.last_update_ms) > config.id_expiration_ms;
            if !expired {
                return Action::Finish(None);
            }
            Action::Step(Step {
                kind: StepKind::Persist {
                    meta: None,
                    durable: true,
                },
                on_ok: None,
                on_err: Reply::Done(Ok(())),
            })
        }
    }
}

fn init_action(v: View<'_>, op: &Op, timeout_ms: i32, now: i64) -> Action {
    let m = v.meta;
    let unavailable = Reply::Producer(Err(ResponseError::CoordinatorNotAvailable));
    let concurrent = Reply::Producer(Err(ResponseError::ConcurrentTransactions));
    let allocate = |on_err| {
        Action::Step(Step {
            kind: StepKind::Allocate,
            on_ok: None,
            on_err,
        })
    };
    if m.producer_id < 0 {
        let Some(pid) = op.producer_id else {
            return allocate(unavailable);
        };
        let next = TxnMetadata {
            producer_id: pid,
            producer_epoch: 0,
            timeout_ms,
            last_update_ms: now,
            ..TxnMetadata::unassigned()
        };
        return persist(next, true, Some(Reply::Producer(Ok((pid, 0)))), unavailable);
    }
    match m.state {
        TxnState::Ongoing if v.writes > 0 => return Action::WaitForWrites,
        TxnState::Ongoing => return persist(fencing_abort(m, now), true, None, concurrent),
        _ => {}
    }
    if let Some(a) = settle(v, now, concurrent) {
        return a;
    }
    let mut next = m.clone();
    next.last_producer_epoch = m.producer_epoch;
    if m.producer_epoch >= i16::MAX - 1 {
        // Epochs exhausted: a new producer id starts at epoch 0 (Kafka does the same).
        let Some(pid) = op.producer_id else {
            return allocate(unavailable);
        };
        next.producer_id = pid;
        next.producer_epoch = 0;
        next.last_producer_epoch = -1;
    } else {
        next.producer_epoch = m.producer_epoch + 1;
    }
    next.state = TxnState::Empty;
    next.partitions.clear();
    next.start_ms = -1;
    next.timeout_ms = timeout_ms;
    next.last_update_ms = now;
    let answer = Reply::Producer(Ok((next.producer_id, next.producer_epoch)));
    persist(next, true, Some(answer), unavailable)
}

fn add_action(v: View<'_>, partitions: &[TxnPartition], now: i64) -> Action {
    let m = v.meta;
    let concurrent = Reply::Done(Err(ResponseError::ConcurrentTransactions));
    if let Some(a) = settle(v, now, concurrent) {
        // A completion that failed earlier: finish it first.
        return a;
    }
    let ongoing = m.state == TxnState::Ongoing;
    if ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
        return Action::Finish(Some(Reply::Done(Ok(()))));
    }
    let mut next = m.clone();
    if !ongoing {
        next.partitions.clear();
        next.start_ms = now;
    }
    next.state = TxnState::Ongoing;
    next.partitions.extend(partitions.iter().cloned());
    next.last_update_ms = now;
    let unavailable = Reply::Done(Err(ResponseError::CoordinatorNotAvailable));
    persist(next, true, Some(Reply::Done(Ok(()))), unavailable)
}

fn end_action(v: View<'_>, op: &Op, commit: bool, now: i64) -> Action {
    let m = v.meta;
    match (m.state, commit) {
        (TxnState::Ongoing, _) if v.writes > 0 => Action::WaitForWrites,
        (TxnState::Ongoing, _) => {
            let mut next = m.clone();
            next.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            next.last_update_ms = now;
            let unavailable = Reply::Done(Err(ResponseError::CoordinatorNotAvailable));
            persist(next, true, None, unavailable)
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            // After the decision, a failed completion is still a success for the client: the
            // decision stands and maintenance carries it out.
            let on_err = if op.decided {
                Reply::Done(Ok(()))
            } else {
                Reply::Done(Err(ResponseError::ConcurrentTransactions))
            };
            settle(v, now, on_err).unwrap_or(Action::Finish(Some(Reply::Done(Ok(())))))
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Action::Finish(Some(Reply::Done(Ok(()))))
        }
        _ => Action::Finish(Some(Reply::Done(Err(ResponseError::InvalidTxnState)))),
    }
}

#[cfg(test)]
#[path = "simulation.rs"]
mod simulation;
