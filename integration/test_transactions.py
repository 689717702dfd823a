"""Kafka transactions end to end: confluent-kafka (librdkafka) against the real broker.

What is checked, always by the records a consumer actually reads back:

* read_committed sees exactly the committed records (each once, per-partition order kept),
  read_uncommitted sees everything, control markers take one offset each;
* a consume-transform-produce (exactly-once) loop survives repeated SIGKILLs of the broker
  with neither a gap nor a duplicate in its output;
* idempotent producers survive SIGKILLs without duplicates;
* zombie fencing, transaction timeouts, the last stable offset in ListOffsets;
* crash points inside EndTxn (``SLUICE_FAILPOINTS``, debug builds) resolve to the outcome
  Kafka promises: committed once PrepareCommit is durable, aborted before;
* ListTransactions / DescribeTransactions / DescribeProducers (raw protocol, since
  confluent-kafka has no admin call for them) and ``sluice txn list|describe``.

Everything here also holds against Apache Kafka (with
``transaction.abort.timed.out.transaction.cleanup.interval.ms`` small where a test relies on
a timeout). Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

import conftest
from conftest import sluice_bin, wait_until

OP_TIMEOUT = 20.0  # any single client/admin call
CONSUME_TIMEOUT = 60.0  # reading a topic back
OUTCOME_TIMEOUT = 60.0  # a transaction's outcome to become visible after a restart
TXN_CALL_TIMEOUT = 15.0  # init/commit/abort/send_offsets per call
# The broker checks for timed-out transactions this often (Kafka's name; default 10 s there).
CLEANUP_SETS = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"}

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"

FAILPOINTS = [
    # (name, outcome of EndTxn(commit) after a crash there and a restart)
    ("txn.end.before_prepare", "aborted"),
    ("txn.end.after_prepare", "committed"),
    ("txn.end.after_first_marker", "committed"),
    ("txn.end.after_markers", "committed"),
]


# --------------------------------------------------------------------------
# client helpers (all bounded)
# --------------------------------------------------------------------------


def common_conf(broker) -> dict:
    return {
        "bootstrap.servers": broker.bootstrap,
        "broker.address.family": "v4",
        "socket.timeout.ms": 10000,
        "api.version.request.timeout.ms": 10000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    }


def admin_client(broker) -> AdminClient:
    return AdminClient(common_conf(broker))


def create_topic(broker, topic: str, partitions: int):
    admin = admin_client(broker)  # keep a reference: the futures die with the client
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=10, request_timeout=15
    )
    assert fs[topic].result(timeout=OP_TIMEOUT) is None


def txn_producer(broker, txn_id: str, **extra) -> Producer:
    conf = {
        **common_conf(broker),
        "transactional.id": txn_id,
        "linger.ms": 5,
        "retry.backoff.ms": 50,
    }
    conf.update(extra)
    return Producer(conf)


def plain_produce(broker, topic: str, records: list[tuple[int, bytes | None, bytes]], **extra):
    """Non-transactional, acks=all; records are (partition, key, value); all must be delivered."""
    errors = []
    p = Producer({**common_conf(broker), "acks": "all", "linger.ms": 5, **extra})
    for part, key, value in records:
        while True:
            try:
                p.produce(topic, key=key, value=value, partition=part,
                          on_delivery=lambda err, _m: err is not None and errors.append(err))
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(OP_TIMEOUT * 3) == 0, "producer did not flush"
    assert not errors, errors[:5]


def end_offsets(broker, topic: str, partitions: int, isolation: str) -> dict[int, int]:
    """ListOffsets(latest) with the given isolation level: the high watermark for
    read_uncommitted, the last stable offset for read_committed."""
    level = IsolationLevel.READ_COMMITTED if isolation == READ_COMMITTED else IsolationLevel.READ_UNCOMMITTED
    admin = admin_client(broker)
    fs = admin.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)},
        isolation_level=level, request_timeout=OP_TIMEOUT,
    )
    return {tp.partition: f.result(timeout=OP_TIMEOUT).offset for tp, f in fs.items()}


def stable(broker, topic: str, partitions: int) -> bool:
    """No open transaction on any partition: LSO == high watermark everywhere."""
    return end_offsets(broker, topic, partitions, READ_COMMITTED) == end_offsets(broker, topic, partitions, READ_UNCOMMITTED)


def read_all(broker, topic: str, partitions: int, isolation: str,
             timeout: float = CONSUME_TIMEOUT) -> dict[int, list[tuple[int, bytes | None, bytes]]]:
    """Every record of every partition from the beginning to the end offset for this isolation
    level (LSO for read_committed), as {partition: [(offset, key, value), ...]}."""
    ends = end_offsets(broker, topic, partitions, isolation)
    c = Consumer({
        **common_conf(broker),
        "group.id": f"txn-reader-{uuid.uuid4().hex[:8]}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
    })
    rows: dict[int, list] = {p: [] for p in range(partitions)}
    done = {p: False for p in range(partitions)}
    errors = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while not all(done.values()):
            assert time.monotonic() < deadline, (
                f"timed out reading {topic} ({isolation}): ends {ends}, done {done}, "
                f"got {({p: len(r) for p, r in rows.items()})}, errors {errors[-5:]}"
            )
            for m in c.consume(num_messages=1000, timeout=0.3):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[m.partition()]:
                            done[m.partition()] = True
                    else:
                        errors.append(str(err))
                    continue
                rows[m.partition()].append((m.offset(), m.key(), m.value()))
        return rows
    finally:
        c.close()


def values_of(rows: dict[int, list]) -> dict[int, list[str]]:
    return {p: [v.decode() for _o, _k, v in r] for p, r in rows.items()}


def committed_offsets(broker, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (stable ones: a read_committed consumer asks with
    require_stable, so offsets of a still-pending transaction are not reported)."""
    c = Consumer({**common_conf(broker), "group.id": group, "isolation.level": READ_COMMITTED,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=OP_TIMEOUT)
        for tp in tps:
            assert tp.error is None, f"committed offset of {tp}: {tp.error}"
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def txn_call(fn, *args, timeout: float = 60.0):
    """Call a transactional API, retrying while librdkafka says the error is retriable."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn(*args)
        except KafkaException as e:
            if e.args[0].retriable() and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise


def produce_all(p: Producer, topic: str, records: list[tuple[int, str, str]]):
    for part, key, value in records:
        while True:
            try:
                p.produce(topic, key=key.encode(), value=value.encode(), partition=part)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)


def discard_producer(p: Producer | None):
    """Drop a producer that is in an unknown or fatal state without flushing (the app
    gives up on this instance; a new one with the same transactional.id takes over)."""
    if p is None:
        return
    try:
        p.purge(in_queue=True, in_flight=True)
        p.poll(0)  # serve the purged records' reports (may raise the instance's fatal error)
    except Exception:  # noqa: BLE001 - best effort on a dead instance
        pass


# --------------------------------------------------------------------------
# 1. interleaved commit / abort
# --------------------------------------------------------------------------


def test_interleaved_commits_and_aborts_read_committed_vs_uncommitted(broker, unique_topic):
    topic, partitions, txns, per = unique_topic(), 3, 10, 5
    create_topic(broker, topic, partitions)
    p = txn_producer(broker, f"txn-inter-{uuid.uuid4().hex[:8]}")
    txn_call(p.init_transactions, TXN_CALL_TIMEOUT)
    sent: dict[int, list[tuple[int, str, str]]] = {q: [] for q in range(partitions)}  # (txn, key, value)
    for t in range(txns):
        p.begin_transaction()
        recs = [(q, f"k-{t}-{q}-{i}", f"t{t}-p{q}-{i}") for i in range(per) for q in range(partitions)]
        produce_all(p, topic, recs)
        # Deliver everything first: abort_transaction() would otherwise purge unsent records,
        # and this test wants the aborted records in the log.
        assert p.flush(OP_TIMEOUT) == 0
        for q, k, v in recs:
            sent[q].append((t, k, v))
        if t % 2 == 0:
            txn_call(p.commit_transaction, TXN_CALL_TIMEOUT)
        else:
            txn_call(p.abort_transaction, TXN_CALL_TIMEOUT)
    wait_until(lambda: stable(broker, topic, partitions), OP_TIMEOUT, interval=0.5, what="no open transaction")

    hw = end_offsets(broker, topic, partitions, READ_UNCOMMITTED)
    # Each transaction: `per` records then one control marker, which takes an offset.
    assert hw == {q: txns * (per + 1) for q in range(partitions)}, hw
    assert end_offsets(broker, topic, partitions, READ_COMMITTED) == hw

    unc = read_all(broker, topic, partitions, READ_UNCOMMITTED)
    com = read_all(broker, topic, partitions, READ_COMMITTED)
    for q in range(partitions):
        want_all, want_committed = [], []
        for t in range(txns):
            mine = [(k, v) for tt, k, v in sent[q] if tt == t]
            rows = [(t * (per + 1) + i, k.encode(), v.encode()) for i, (k, v) in enumerate(mine)]
            want_all += rows
            if t % 2 == 0:
                want_committed += rows
        assert unc[q] == want_all, f"partition {q}: read_uncommitted {unc[q]}, want {want_all}"
        assert com[q] == want_committed, (
            f"partition {q}: read_committed got {[v for _o, _k, v in com[q]]}, "
            f"want {[v for _o, _k, v in want_committed]}"
        )
    assert sum(len(r) for r in com.values()) == partitions * per * (txns // 2)


def test_two_transactional_producers_interleaved_on_the_same_partitions(broker, unique_topic):
    topic, partitions, per = unique_topic(), 3, 4
    create_topic(broker, topic, partitions)
    a = txn_producer(broker, f"txn-A-{uuid.uuid4().hex[:8]}")
    b = txn_producer(broker, f"txn-B-{uuid.uuid4().hex[:8]}")
    txn_call(a.init_transactions, TXN_CALL_TIMEOUT)
    txn_call(b.init_transactions, TXN_CALL_TIMEOUT)
    # round -> (A's outcome, B's outcome, who ends first)
    plan = [("commit", "abort", "A"), ("abort", "commit", "B"), ("commit", "commit", "B")]
    committed: set[str] = set()
    produced: dict[str, list[tuple[int, str]]] = {}  # (producer, round) tag -> [(partition, value)]
    for r, (oa, ob, first) in enumerate(plan):
        a.begin_transaction()
        b.begin_transaction()
        for i in range(per):
            for q in range(partitions):
                for name, prod in (("A", a), ("B", b)):
                    v = f"{name}-r{r}-p{q}-{i}"
                    produce_all(prod, topic, [(q, f"{name}{i}", v)])
                    produced.setdefault(f"{name}-r{r}", []).append((q, v))
            if i % 2 == 1:  # let both producers' batches interleave in the log
                a.flush(OP_TIMEOUT)
                b.flush(OP_TIMEOUT)
        assert a.flush(OP_TIMEOUT) == 0 and b.flush(OP_TIMEOUT) == 0
        order = [("A", a, oa), ("B", b, ob)]
        if first == "B":
            order.reverse()
        for name, prod, outcome in order:
            if outcome == "commit":
                txn_call(prod.commit_transaction, TXN_CALL_TIMEOUT)
                committed.add(f"{name}-r{r}")
            else:
                txn_call(prod.abort_transaction, TXN_CALL_TIMEOUT)
    wait_until(lambda: stable(broker, topic, partitions), OP_TIMEOUT, interval=0.5, what="no open transaction")

    unc = values_of(read_all(broker, topic, partitions, READ_UNCOMMITTED))
    com = values_of(read_all(broker, topic, partitions, READ_COMMITTED))
    tag = lambda v: v.rsplit("-", 2)[0]  # "A-r0-p1-3" -> "A-r0"
    for q in range(partitions):
        # read_uncommitted: every record once; each producer's records of a round in produce order.
        for t, recs in produced.items():
            mine = [v for part, v in recs if part == q]
            assert [v for v in unc[q] if tag(v) == t] == mine, f"partition {q}, {t}: order or content differs"
        assert len(unc[q]) == len(set(unc[q])) == sum(1 for recs in produced.values() for part, _ in recs if part == q)
        # read_committed: exactly the committed records, in log order.
        assert com[q] == [v for v in unc[q] if tag(v) in committed], (
            f"partition {q}: read_committed {com[q]} is not the committed subsequence of the log"
        )
    assert committed == {"A-r0", "B-r1", "A-r2", "B-r2"}


# --------------------------------------------------------------------------
# 2. consume-transform-produce under broker crashes
# --------------------------------------------------------------------------


class EosApp(threading.Thread):
    """A typical exactly-once app: read_committed consumer (manual assignment, no auto
    commit) -> transform -> transactional producer, input offsets committed in the same
    transaction. Error handling as librdkafka documents it:

    * retriable: call again;
    * txn_requires_abort: abort_transaction, rewind the consumer to the committed offsets;
    * fatal (e.g. fenced after the broker bumped the epoch) or anything else: drop the
      producer, create a new one with the same transactional.id, init_transactions (which
      completes or aborts whatever the old instance left), then rewind.
    """

    BATCH = 50
    GATE_COMMITS = 6  # stop starting transactions while a planned kill is overdue

    def __init__(self, broker, src: str, dst: str, partitions: int, src_ends: dict[int, int],
                 group: str, txn_id: str, kills_planned: int):
        super().__init__(daemon=True, name="eos-app")
        self.broker, self.src, self.dst, self.partitions = broker, src, dst, partitions
        self.src_ends, self.group, self.txn_id, self.kills_planned = src_ends, group, txn_id, kills_planned
        self.lock = threading.Lock()
        self.commits = 0
        self.commits_since_kill = 0
        self.kills_done = 0
        self.aborts = 0  # failed transactions ended with abort_transaction()
        self.failed_txns = 0  # every failed transaction (aborted, or left to a new producer instance)
        self.new_producers = 0
        self.retries = 0
        self.log: list[str] = []
        self.error: str | None = None
        self.stop_requested = threading.Event()
        self.finished = threading.Event()
        self.t0 = time.monotonic()
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None
        self.committed_pos: dict[int, int] = {}

    # -- bookkeeping --------------------------------------------------------
    def note(self, text: str):
        self.log.append(f"{time.monotonic() - self.t0:7.2f}s {text}")

    def kill_done(self):
        with self.lock:
            self.kills_done += 1
            self.commits_since_kill = 0

    def progress(self) -> tuple[int, int]:
        with self.lock:
            return self.commits, self.commits_since_kill

    def run(self):
        try:
            self._run()
        except BaseException:  # noqa: BLE001 - reported by the test
            self.error = traceback.format_exc()
        finally:
            self.finished.set()

    # -- the app ------------------------------------------------------------
    def _run(self):
        self.consumer = Consumer({
            **common_conf(self.broker),
            "group.id": self.group,
            "isolation.level": READ_COMMITTED,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        })
        try:
            self._new_producer()
            self._rewind()
            while not self.stop_requested.is_set():
                if all(self.committed_pos[q] >= self.src_ends[q] for q in range(self.partitions)):
                    self.note("all input committed")
                    break
                self._gate()
                msgs = self._collect()
                if not msgs:
                    continue
                try:
                    self._transaction(msgs)
                except KafkaException as e:
                    self._recover(e.args[0])
        finally:
            if self.producer is not None:
                self.producer.flush(10)
            self.consumer.close()

    def _gate(self):
        while not self.stop_requested.is_set():
            with self.lock:
                closed = self.kills_done < self.kills_planned and self.commits_since_kill >= self.GATE_COMMITS
            if not closed:
                return
            time.sleep(0.02)

    def _collect(self) -> list:
        msgs = []
        deadline = time.monotonic() + 1.0
        while len(msgs) < self.BATCH and time.monotonic() < deadline:
            for m in self.consumer.consume(num_messages=self.BATCH - len(msgs), timeout=0.2):
                if m.error() is not None:
                    self.note(f"consumer: {m.error()}")
                    continue
                msgs.append(m)
        return msgs

    def _transaction(self, msgs: list):
        p = self.producer
        p.begin_transaction()
        pos: dict[int, int] = {}
        for m in msgs:
            n = int(m.value().decode())
            while True:
                try:
                    p.produce(self.dst, key=m.key(), value=f"out-{n}".encode(), partition=m.partition())
                    break
                except BufferError:
                    p.poll(0.05)
            pos[m.partition()] = m.offset() + 1
            p.poll(0)
            time.sleep(0.002)  # spread a transaction over time so that kills land inside one
        offsets = [TopicPartition(self.src, q, o) for q, o in sorted(pos.items())]
        self._retrying(p.send_offsets_to_transaction, offsets, self.consumer.consumer_group_metadata(), TXN_CALL_TIMEOUT)
        self._retrying(p.commit_transaction, TXN_CALL_TIMEOUT)
        self.committed_pos.update(pos)
        with self.lock:
            self.commits += 1
            self.commits_since_kill += 1

    def _retrying(self, fn, *args, timeout: float = 90.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fn(*args)
            except KafkaException as e:
                err = e.args[0]
                if err.retriable() and not err.fatal() and time.monotonic() < deadline:
                    self.retries += 1
                    self.note(f"retriable in {getattr(fn, '__name__', fn)}: {err}")
                    time.sleep(0.2)
                    continue
                raise

    def _recover(self, err: KafkaError):
        self.failed_txns += 1
        self.note(f"transaction failed: {err} (fatal={err.fatal()}, abortable={err.txn_requires_abort()})")
        if err.txn_requires_abort() and not err.fatal():
            try:
                self._retrying(self.producer.abort_transaction, TXN_CALL_TIMEOUT)
                self.aborts += 1
                self.note("aborted")
            except KafkaException as e:
                self.note(f"abort failed: {e.args[0]}; new producer")
                self._new_producer()
        else:
            self._new_producer()
        self._rewind()

    def _new_producer(self):
        discard_producer(self.producer)
        self.producer = None
        deadline = time.monotonic() + 120
        while True:
            # No re-bootstrap: when its only broker dies, librdkafka >= 2.10 otherwise
            # decommissions that broker's handle while the producer's group-coordinator cache
            # still points at it, and the next send_offsets_to_transaction() waits for that
            # dead handle forever, ignoring its timeout (librdkafka #5511, #5456).
            p = txn_producer(self.broker, self.txn_id, **{"transaction.timeout.ms": 60000,
                                                          "metadata.recovery.strategy": "none"})
            try:
                self._retrying(p.init_transactions, TXN_CALL_TIMEOUT)
                self.producer = p
                self.new_producers += 1
                self.note(f"producer #{self.new_producers} initialised")
                return
            except KafkaException as e:
                self.note(f"init_transactions failed: {e.args[0]}")
                discard_producer(p)
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _rewind(self):
        """Seek to the group's committed offsets (the truth once the previous transaction
        has been completed or aborted)."""
        tps = [TopicPartition(self.src, q) for q in range(self.partitions)]
        deadline = time.monotonic() + 90
        while True:
            try:
                got = self.consumer.committed(tps, timeout=TXN_CALL_TIMEOUT)
                if all(tp.error is None for tp in got):
                    break
                self.note(f"committed(): {[str(tp.error) for tp in got if tp.error]}")
            except KafkaException as e:
                self.note(f"committed() failed: {e.args[0]}")
            if time.monotonic() >= deadline:
                raise AssertionError("could not read the committed offsets for 90 s")
            time.sleep(0.2)
        self.committed_pos = {tp.partition: (tp.offset if tp.offset >= 0 else 0) for tp in got}
        self.consumer.assign([TopicPartition(self.src, q, o) for q, o in self.committed_pos.items()])
        self.note(f"rewound to {self.committed_pos}")


def test_consume_transform_produce_exactly_once_across_broker_kills(broker, unique_topic):
    src, dst, partitions, total, kills = unique_topic("in"), unique_topic("out"), 3, 2000, 5
    create_topic(broker, src, partitions)
    create_topic(broker, dst, partitions)
    plain_produce(broker, src, [(n % partitions, f"k{n}".encode(), str(n).encode()) for n in range(total)])
    src_ends = end_offsets(broker, src, partitions, READ_UNCOMMITTED)
    assert sum(src_ends.values()) == total
    group = f"eos-{uuid.uuid4().hex[:8]}"
    app = EosApp(broker, src, dst, partitions, src_ends, group, f"eos-{uuid.uuid4().hex[:8]}", kills)
    rng = random.Random(0xE05)
    done_kills = 0
    app.start()
    try:
        while done_kills < kills:
            wait_until(lambda: app.finished.is_set() or app.progress()[1] >= 3, 120,
                       what=f"3 more committed transactions before kill #{done_kills + 1}")
            if app.finished.is_set():
                break
            time.sleep(rng.uniform(0.0, 0.2))  # land anywhere inside a transaction
            broker.restart(clean=False)
            done_kills += 1
            app.kill_done()
        app.finished.wait(180)
    finally:
        app.stop_requested.set()
        app.join(30)
    summary = (f"kills={done_kills} committed={app.commits} failed={app.failed_txns} "
               f"(abort_transaction: {app.aborts}, left to a new producer: {app.failed_txns - app.aborts}) "
               f"producers={app.new_producers} retries={app.retries}")
    print(f"\nEOS loop: {summary}")
    assert app.error is None, f"app failed ({summary}):\n{app.error}\n" + "\n".join(app.log[-60:])
    assert app.finished.is_set() and not app.is_alive(), "app did not finish:\n" + "\n".join(app.log[-60:])
    assert done_kills == kills, f"only {done_kills} kills happened before the app finished ({summary})"

    wait_until(lambda: stable(broker, dst, partitions), OP_TIMEOUT, interval=0.5,
               what="no open transaction on the output")
    out = values_of(read_all(broker, dst, partitions, READ_COMMITTED))
    for q in range(partitions):
        want = [f"out-{n}" for n in range(total) if n % partitions == q]
        if out[q] != want:
            dups = len(out[q]) - len(set(out[q]))
            missing = sorted(set(want) - set(out[q]), key=lambda v: int(v[4:]))
            raise AssertionError(
                f"output partition {q}: {len(out[q])} records, want {len(want)}; {dups} duplicates, "
                f"{len(missing)} missing (first: {missing[:5]}) [{summary}]\n" + "\n".join(app.log[-60:])
            )
    assert committed_offsets(broker, group, src, partitions) == src_ends
    uncommitted = sum(len(v) for v in values_of(read_all(broker, dst, partitions, READ_UNCOMMITTED)).values())
    print(f"EOS loop: output holds {uncommitted - total} records of aborted transactions (invisible to read_committed)")


# --------------------------------------------------------------------------
# 3. idempotent producer across kills
# --------------------------------------------------------------------------


def test_idempotent_producer_exactly_once_across_broker_kills(broker, unique_topic):
    topic, partitions, total, kills = unique_topic(), 3, 4000, 2
    create_topic(broker, topic, partitions)
    errors: list = []
    delivered = [0]

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[0] += 1

    p = Producer({
        **common_conf(broker),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 20,
        "max.in.flight.requests.per.connection": 5,
        "message.timeout.ms": 120000,
        "request.timeout.ms": 5000,
        "retry.backoff.ms": 50,
    })
    kill_at = {total * (k + 1) // (kills + 1) for k in range(kills)}
    killed = 0
    for n in range(total):
        while True:
            try:
                p.produce(topic, key=f"k{n}".encode(), value=str(n).encode(), partition=n % partitions,
                          on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if n in kill_at:
            # Some acknowledged, more in flight, then SIGKILL.
            deadline = time.monotonic() + 30
            while delivered[0] < n // 2:
                assert time.monotonic() < deadline, "no acknowledgements before the planned kill"
                p.poll(0.05)
            broker.restart(clean=False)
            killed += 1
    assert p.flush(120) == 0, "records neither delivered nor failed"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert killed == kills and delivered[0] == total
    got = values_of(read_all(broker, topic, partitions, READ_UNCOMMITTED))
    for q in range(partitions):
        want = [str(n) for n in range(total) if n % partitions == q]
        assert got[q] == want, (
            f"partition {q}: {len(got[q])} records, want {len(want)}; "
            f"{len(got[q]) - len(set(got[q]))} duplicates, {len(set(want) - set(got[q]))} missing"
        )


# --------------------------------------------------------------------------
# 4. zombie fencing
# --------------------------------------------------------------------------


def test_zombie_producer_is_fenced_by_a_new_instance(broker, unique_topic):
    topic, partitions = unique_topic(), 3
    create_topic(broker, topic, partitions)
    txn_id = f"txn-zombie-{uuid.uuid4().hex[:8]}"
    a = txn_producer(broker, txn_id)
    txn_call(a.init_transactions, TXN_CALL_TIMEOUT)
    a.begin_transaction()
    produce_all(a, topic, [(q, f"a{i}", f"A-{q}-{i}") for i in range(4) for q in range(partitions)])
    assert a.flush(OP_TIMEOUT) == 0  # A's records are in the log

    b = txn_producer(broker, txn_id)
    txn_call(b.init_transactions, TXN_CALL_TIMEOUT)  # fences A, aborts its open transaction

    with pytest.raises(KafkaException) as info:
        a.commit_transaction(TXN_CALL_TIMEOUT)
    err = info.value.args[0]
    assert err.fatal(), f"the zombie's commit must fail fatally (fenced), got {err}"
    with pytest.raises(KafkaException):
        a.begin_transaction()  # a fenced instance can do nothing more

    b.begin_transaction()
    produce_all(b, topic, [(q, f"b{i}", f"B-{q}-{i}") for i in range(4) for q in range(partitions)])
    txn_call(b.commit_transaction, TXN_CALL_TIMEOUT)
    wait_until(lambda: stable(broker, topic, partitions), OP_TIMEOUT, interval=0.5, what="no open transaction")

    com = values_of(read_all(broker, topic, partitions, READ_COMMITTED))
    unc = values_of(read_all(broker, topic, partitions, READ_UNCOMMITTED))
    for q in range(partitions):
        assert com[q] == [f"B-{q}-{i}" for i in range(4)], f"partition {q}: {com[q]}"
        assert [v for v in unc[q] if v.startswith("A-")] == [f"A-{q}-{i}" for i in range(4)], (
            f"partition {q}: the zombie's records should be in the log (aborted): {unc[q]}"
        )


# --------------------------------------------------------------------------
# 5. transaction timeout
# --------------------------------------------------------------------------


def test_stalled_transaction_times_out_and_is_aborted(broker_factory, unique_topic):
    broker = broker_factory(sets=CLEANUP_SETS)
    topic, partitions, txn_timeout_ms = unique_topic(), 2, 5000
    create_topic(broker, topic, partitions)
    stalled = txn_producer(broker, f"txn-stall-{uuid.uuid4().hex[:8]}",
                           **{"transaction.timeout.ms": txn_timeout_ms, "socket.timeout.ms": txn_timeout_ms})
    txn_call(stalled.init_transactions, TXN_CALL_TIMEOUT)
    stalled.begin_transaction()
    produce_all(stalled, topic, [(q, f"s{i}", f"S-{q}-{i}") for i in range(5) for q in range(partitions)])
    assert stalled.flush(OP_TIMEOUT) == 0
    t_stall = time.monotonic()

    other = txn_producer(broker, f"txn-other-{uuid.uuid4().hex[:8]}")
    txn_call(other.init_transactions, TXN_CALL_TIMEOUT)
    other.begin_transaction()
    produce_all(other, topic, [(q, f"o{i}", f"O-{q}-{i}") for i in range(5) for q in range(partitions)])
    txn_call(other.commit_transaction, TXN_CALL_TIMEOUT)

    if time.monotonic() - t_stall < txn_timeout_ms / 1000 - 1.5:
        # The stalled transaction is still open: the LSO is pinned at its first offset (0), so
        # the committed records behind it are not readable yet.
        lso = end_offsets(broker, topic, partitions, READ_COMMITTED)
        assert lso == {q: 0 for q in range(partitions)}, f"LSO must stay at the open transaction's start: {lso}"

    # Within the timeout plus a bounded grace, the broker aborts the stalled transaction.
    wait_until(lambda: stable(broker, topic, partitions), txn_timeout_ms / 1000 + 30, interval=0.5,
               what="the timed-out transaction to be aborted (LSO == high watermark)")
    com = values_of(read_all(broker, topic, partitions, READ_COMMITTED))
    assert com == {q: [f"O-{q}-{i}" for i in range(5)] for q in range(partitions)}, com

    with pytest.raises(KafkaException):
        stalled.commit_transaction(TXN_CALL_TIMEOUT)
    assert values_of(read_all(broker, topic, partitions, READ_COMMITTED)) == com, "stalled records appeared"
    unc = values_of(read_all(broker, topic, partitions, READ_UNCOMMITTED))
    for q in range(partitions):
        assert [v for v in unc[q] if v.startswith("S-")] == [f"S-{q}-{i}" for i in range(5)]


# --------------------------------------------------------------------------
# 6. ListOffsets and fetch by isolation level
# --------------------------------------------------------------------------


def wait_eof(c: Consumer, tp: TopicPartition, offset: int, what: str):
    """Poll until the consumer reports end-of-partition at `offset` (which also means its
    OFFSET_END start position has been resolved). Records must not arrive meanwhile."""
    deadline = time.monotonic() + OP_TIMEOUT
    while True:
        assert time.monotonic() < deadline, f"no end-of-partition at {offset} for {what}"
        m = c.poll(0.2)
        if m is None:
            continue
        err = m.error()
        assert err is not None, f"{what}: unexpected record at {m.offset()}: {m.value()!r}"
        if err.code() == KafkaError._PARTITION_EOF and m.partition() == tp.partition and m.offset() == offset:
            return


def consume_n(c: Consumer, n: int, timeout: float = CONSUME_TIMEOUT) -> list[tuple[int, str]]:
    got: list[tuple[int, str]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += [(m.offset(), m.value().decode()) for m in c.consume(100, 0.2) if m.error() is None]
    return got


def test_last_stable_offset_in_list_offsets_and_fetch(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker, topic, 1)
    tp = TopicPartition(topic, 0)
    plain_produce(broker, topic, [(0, None, f"plain-{i}".encode()) for i in range(5)])

    def end_consumer(isolation: str) -> Consumer:
        c = Consumer({**common_conf(broker), "group.id": f"lso-{uuid.uuid4().hex[:8]}", "isolation.level": isolation,
                      "enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 100})
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        return c

    # Both consumers resolve OFFSET_END (to 5) before the transaction starts.
    rc, ru = end_consumer(READ_COMMITTED), end_consumer(READ_UNCOMMITTED)
    late = None
    p = txn_producer(broker, f"txn-lso-{uuid.uuid4().hex[:8]}")
    try:
        wait_eof(rc, tp, 5, "read_committed consumer at OFFSET_END")
        wait_eof(ru, tp, 5, "read_uncommitted consumer at OFFSET_END")
        txn_call(p.init_transactions, TXN_CALL_TIMEOUT)
        p.begin_transaction()
        produce_all(p, topic, [(0, f"k{i}", f"txn-{i}") for i in range(10)])
        assert p.flush(OP_TIMEOUT) == 0

        # Open transaction: high watermark 15, last stable offset 5.
        assert end_offsets(broker, topic, 1, READ_UNCOMMITTED) == {0: 15}
        assert end_offsets(broker, topic, 1, READ_COMMITTED) == {0: 5}
        # A consumer's own ListOffsets uses its isolation level.
        assert rc.get_watermark_offsets(tp, timeout=OP_TIMEOUT, cached=False)[1] == 5
        assert ru.get_watermark_offsets(tp, timeout=OP_TIMEOUT, cached=False)[1] == 15
        # read_uncommitted reads the open transaction's records, read_committed does not.
        assert consume_n(ru, 10) == [(5 + i, f"txn-{i}") for i in range(10)]
        leaked = consume_n(rc, 1, timeout=2.0)
        assert leaked == [], f"read_committed consumer saw uncommitted records: {leaked}"
        # A read_committed consumer that starts at OFFSET_END now starts at the LSO (5), not 15.
        late = end_consumer(READ_COMMITTED)
        wait_eof(late, tp, 5, "a new read_committed consumer at OFFSET_END during the transaction")

        txn_call(p.commit_transaction, TXN_CALL_TIMEOUT)
        # After the commit both read_committed consumers get the transaction's records.
        for c in (rc, late):
            got = consume_n(c, 10)
            assert got == [(5 + i, f"txn-{i}") for i in range(10)], got
        wait_until(lambda: end_offsets(broker, topic, 1, READ_COMMITTED) == {0: 16}, OP_TIMEOUT, interval=0.5,
                   what="LSO == 16 (10 records + the commit marker) after the commit")
        assert end_offsets(broker, topic, 1, READ_UNCOMMITTED) == {0: 16}
        assert consume_n(ru, 1, timeout=1.0) == [], "a control marker is not a record"
    finally:
        for c in (rc, ru, late):
            if c is not None:
                c.close()


# --------------------------------------------------------------------------
# 7. crash points inside EndTxn
# --------------------------------------------------------------------------


# The app of the failpoint test, in its own process so that it can die with the broker: a
# producer left alive would retry EndTxn after the restart and decide the outcome itself.
FAILPOINT_APP = r"""
import json, sys, time
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

conf, group, src, dst, partitions, end = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]

def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

meta = Consumer({"bootstrap.servers": conf["bootstrap.servers"], "group.id": group, "enable.auto.commit": False})
p = Producer(conf)
p.init_transactions(30)
p.begin_transaction()
for i in range(5):
    for q in range(partitions):
        p.produce(dst, key=f"k{i}", value=f"out-{q}-{i}", partition=q)
assert p.flush(30) == 0
p.send_offsets_to_transaction([TopicPartition(src, q, 10) for q in range(partitions)], meta.consumer_group_metadata(), 30)
out(event="ending")
try:
    (p.commit_transaction if end == "commit" else p.abort_transaction)(10)
    out(event="ended")
except KafkaException as e:
    out(event="end_failed", error=str(e.args[0]))
time.sleep(600)  # until the test kills this process
"""


@pytest.mark.parametrize(
    "failpoint,end,outcome",
    [(name, "commit", outcome) for name, outcome in FAILPOINTS] + [(name, "abort", "aborted") for name, _ in FAILPOINTS],
    ids=[f"commit-{n.rsplit('.', 1)[1]}" for n, _ in FAILPOINTS] + [f"abort-{n.rsplit('.', 1)[1]}" for n, _ in FAILPOINTS],
)
def test_crash_inside_end_txn_resolves_on_restart(broker_factory, unique_topic, monkeypatch, tmp_path,
                                                  failpoint, end, outcome):
    # The failpoint reaches the broker through the environment it inherits (conftest copies
    # os.environ at each start); it is removed again before the restart.
    monkeypatch.setenv("SLUICE_FAILPOINTS", failpoint)
    broker = broker_factory()
    monkeypatch.delenv("SLUICE_FAILPOINTS")
    src, dst, partitions = unique_topic("in"), unique_topic("out"), 3
    create_topic(broker, src, partitions)
    create_topic(broker, dst, partitions)
    plain_produce(broker, src, [(q, None, f"in-{q}-{i}".encode()) for i in range(10) for q in range(partitions)])
    group = f"fp-{uuid.uuid4().hex[:8]}"
    txn_id = f"txn-fp-{uuid.uuid4().hex[:8]}"
    conf = {**common_conf(broker), "transactional.id": txn_id, "linger.ms": 5,
            # Apache Kafka does not abort an Ongoing transaction on restart, only once it times
            # out: keep that short so that this test means the same there.
            "transaction.timeout.ms": 10000}

    app_out, app_err = tmp_path / "app.out", tmp_path / "app.err"
    with open(app_out, "wb") as fo, open(app_err, "wb") as fe:
        app = subprocess.Popen(
            [sys.executable, "-c", FAILPOINT_APP, json.dumps(conf), group, src, dst, str(partitions), end],
            stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, preexec_fn=conftest._child_preexec,
        )
    try:
        deadline = time.monotonic() + 60
        while broker.proc.poll() is None and app.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        app_log = lambda: f"app stdout:\n{app_out.read_text()}\napp stderr:\n{app_err.read_text()[-4000:]}"
        if broker.proc.poll() is None:
            pytest.fail(f"the broker did not die at {failpoint} (app exit {app.poll()}):\n{app_log()}")
        assert '"ending"' in app_out.read_text(), f"the app had not reached EndTxn:\n{app_log()}"
    finally:
        if app.poll() is None:
            os.kill(app.pid, signal.SIGKILL)  # the app dies too, before the broker comes back
        app.wait(timeout=30)
    rc = broker.proc.wait(timeout=30)
    conftest._LIVE_PROCS.pop(broker.proc.pid, None)
    assert rc == -signal.SIGABRT, f"broker exit status {rc}, expected SIGABRT from the failpoint"
    assert f"failpoint {failpoint} hit" in broker.stderr_text(), "no failpoint line on the broker's stderr"
    assert '"ended"' not in app_out.read_text(), "EndTxn must not have been answered"

    broker.start(new_ports_on_conflict=False)

    # The records were acknowledged before EndTxn: they are in the log either way.
    want = {q: [f"out-{q}-{i}" for i in range(5)] for q in range(partitions)}
    assert values_of(read_all(broker, dst, partitions, READ_UNCOMMITTED)) == want
    if outcome == "committed":
        wait_until(lambda: values_of(read_all(broker, dst, partitions, READ_COMMITTED, timeout=10)) == want,
                   OUTCOME_TIMEOUT, interval=0.5, what="the transaction's records to become visible to read_committed")
    wait_until(lambda: stable(broker, dst, partitions), OUTCOME_TIMEOUT, interval=0.5,
               what="the transaction to be completed (LSO == high watermark)")
    com = values_of(read_all(broker, dst, partitions, READ_COMMITTED))
    group_offsets = committed_offsets(broker, group, src, partitions)
    if outcome == "committed":
        assert com == want, f"{failpoint}/{end}: expected COMMITTED, read_committed has {com}"
        assert group_offsets == {q: 10 for q in range(partitions)}, group_offsets
    else:
        assert com == {q: [] for q in range(partitions)}, f"{failpoint}/{end}: expected ABORTED, read_committed has {com}"
        assert all(o < 0 for o in group_offsets.values()), f"offsets of an aborted transaction were committed: {group_offsets}"

    # A new instance with the same transactional.id carries on.
    p2 = txn_producer(broker, txn_id)
    txn_call(p2.init_transactions, TXN_CALL_TIMEOUT)
    p2.begin_transaction()
    produce_all(p2, dst, [(q, "after", f"after-{q}") for q in range(partitions)])
    txn_call(p2.commit_transaction, TXN_CALL_TIMEOUT)
    wait_until(lambda: stable(broker, dst, partitions), OP_TIMEOUT, interval=0.5, what="no open transaction")
    com = values_of(read_all(broker, dst, partitions, READ_COMMITTED))
    assert com == {q: (want[q] if outcome == "committed" else []) + [f"after-{q}"] for q in range(partitions)}, com


# --------------------------------------------------------------------------
# 8. ListTransactions / DescribeTransactions / DescribeProducers and the CLI
# --------------------------------------------------------------------------

API_DESCRIBE_PRODUCERS = 61
API_DESCRIBE_TRANSACTIONS = 65
API_LIST_TRANSACTIONS = 66


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data), f"response truncated at {self.pos}+{n} of {len(self.data)}"
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self) -> int:
        shift = n = 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            assert shift < 35, "uvarint too long"

    def cstr(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def carray(self, item) -> list:
        n = self.uvarint()
        return [] if n == 0 else [item(self) for _ in range(n - 1)]

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _cstr(s: str) -> bytes:
    b = s.encode()
    return _uvarint(len(b) + 1) + b


def _carray(items: list[bytes]) -> bytes:
    return _uvarint(len(items) + 1) + b"".join(items)


def raw_request(broker, api_key: int, body: bytes, version: int = 0) -> _Reader:
    """One flexible request (header v2), one response (header v1); bounded."""
    corr = random.randint(1, 1 << 30)
    client_id = b"sluice-it-txn"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id + b"\x00"
    payload = header + body
    with socket.create_connection((broker.host, broker.port), timeout=10) as s:
        s.settimeout(10)
        s.sendall(struct.pack(">i", len(payload)) + payload)

        def recv(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                assert chunk, f"connection closed by the broker (api {api_key} v{version})"
                buf += chunk
            return buf

        size = struct.unpack(">i", recv(4))[0]
        assert 0 < size < 16 << 20, size
        r = _Reader(recv(size))
    assert r.i32() == corr
    r.tags()
    return r


def list_transactions_raw(broker) -> dict[str, tuple[int, str]]:
    r = raw_request(broker, API_LIST_TRANSACTIONS, _carray([]) + _carray([]) + b"\x00")
    r.i32()  # throttle
    assert r.i16() == 0, "ListTransactions error"
    r.carray(lambda x: x.cstr())  # unknown state filters

    def state(x: _Reader):
        out = (x.cstr(), x.i64(), x.cstr())
        x.tags()
        return out

    states = r.carray(state)
    r.tags()
    return {tid: (pid, st) for tid, pid, st in states}


def describe_transactions_raw(broker, txn_id: str) -> dict:
    r = raw_request(broker, API_DESCRIBE_TRANSACTIONS, _carray([_cstr(txn_id)]) + b"\x00")
    r.i32()

    def topic(x: _Reader):
        out = (x.cstr(), x.carray(lambda y: y.i32()))
        x.tags()
        return out

    def state(x: _Reader):
        d = {"error_code": x.i16(), "transactional_id": x.cstr(), "state": x.cstr(), "timeout_ms": x.i32(),
             "start_time_ms": x.i64(), "producer_id": x.i64(), "producer_epoch": x.i16(),
             "topics": {t: sorted(ps) for t, ps in x.carray(topic)}}
        x.tags()
        return d

    states = r.carray(state)
    r.tags()
    assert len(states) == 1 and states[0]["transactional_id"] == txn_id, states
    return states[0]


def describe_producers_raw(broker, topic: str, partitions: list[int]) -> dict[int, list[dict]]:
    body = _carray([_cstr(topic) + _carray([struct.pack(">i", q) for q in partitions]) + b"\x00"]) + b"\x00"
    r = raw_request(broker, API_DESCRIBE_PRODUCERS, body)
    r.i32()

    def producer(x: _Reader):
        d = {"producer_id": x.i64(), "producer_epoch": x.i32(), "last_sequence": x.i32(), "last_timestamp": x.i64(),
             "coordinator_epoch": x.i32(), "current_txn_start_offset": x.i64()}
        x.tags()
        return d

    def partition(x: _Reader):
        q, err, msg = x.i32(), x.i16(), x.cstr()
        assert err == 0, f"DescribeProducers partition {q}: error {err} {msg}"
        prods = x.carray(producer)
        x.tags()
        return q, prods

    def topic_(x: _Reader):
        name, parts = x.cstr(), x.carray(partition)
        x.tags()
        return name, parts

    topics = r.carray(topic_)
    r.tags()
    assert [t for t, _ in topics] == [topic], topics
    return dict(topics[0][1])


def cli(broker, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run([str(sluice_bin()), *args, "--bootstrap", broker.bootstrap],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"sluice {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def cli_txn_list(broker) -> dict[str, tuple[int, str]]:
    """`sluice txn list`: a TRANSACTIONAL_ID PRODUCER_ID STATE table."""
    out = cli(broker, "txn", "list")
    lines = [l for l in out.splitlines() if l.strip()]
    assert lines and lines[0].split()[:3] == ["TRANSACTIONAL_ID", "PRODUCER_ID", "STATE"], out
    rows = {}
    for line in lines[1:]:
        cols = line.split()
        rows[cols[0]] = (int(cols[1]), cols[2])
    return rows


def cli_txn_describe(broker, txn_id: str) -> dict[str, str]:
    out = cli(broker, "txn", "describe", txn_id)
    d = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            d[k.strip()] = v.strip()
    for key in ("state", "producer_id", "producer_epoch", "timeout_ms", "partitions"):
        assert key in d, f"`sluice txn describe` lacks {key!r}:\n{out}"
    return d


def partitions_in(text: str, topic: str) -> set[int]:
    """Partition numbers mentioned after each occurrence of `topic` in `text`, whatever the
    format (`t-0, t-2`, `t:0,t:2`, `t[0, 2]`, `t 0 2`)."""
    found: set[int] = set()
    for chunk in text.split(topic)[1:]:
        found |= {int(n) for n in re.findall(r"\d+", chunk)}
    return found


def test_list_and_describe_transactions_and_producers(broker, unique_topic):
    topic, partitions, timeout_ms = unique_topic(), 3, 45000
    create_topic(broker, topic, partitions)
    plain_produce(broker, topic, [(q, None, b"plain") for q in range(partitions) for _ in range(4)])
    txn_id = f"txn-desc-{uuid.uuid4().hex[:8]}"
    p = txn_producer(broker, txn_id, **{"transaction.timeout.ms": timeout_ms})
    txn_call(p.init_transactions, TXN_CALL_TIMEOUT)
    t_begin_ms = int(time.time() * 1000)
    p.begin_transaction()
    produce_all(p, topic, [(q, "k", f"v{q}") for q in (0, 2)])  # partition 1 stays out
    assert p.flush(OP_TIMEOUT) == 0

    # -- ongoing -----------------------------------------------------------
    listed = list_transactions_raw(broker)
    assert txn_id in listed and listed[txn_id][1] == "Ongoing", listed
    pid = listed[txn_id][0]
    assert pid >= 0
    d = describe_transactions_raw(broker, txn_id)
    assert d["error_code"] == 0 and d["state"] == "Ongoing", d
    assert d["producer_id"] == pid and d["producer_epoch"] >= 0 and d["timeout_ms"] == timeout_ms, d
    assert d["topics"] == {topic: [0, 2]}, d
    assert t_begin_ms - 60_000 <= d["start_time_ms"] <= int(time.time() * 1000) + 5_000, d
    prods = describe_producers_raw(broker, topic, [0, 1, 2])
    for q in (0, 2):
        mine = [x for x in prods[q] if x["producer_id"] == pid]
        assert len(mine) == 1 and mine[0]["current_txn_start_offset"] == 4, prods[q]
        assert mine[0]["producer_epoch"] == d["producer_epoch"], (mine, d)
    assert not [x for x in prods[1] if x["producer_id"] == pid], prods[1]

    rows = cli_txn_list(broker)
    assert rows.get(txn_id) == (pid, "Ongoing"), rows
    desc = cli_txn_describe(broker, txn_id)
    assert desc["state"] == "Ongoing" and int(desc["producer_id"]) == pid, desc
    assert int(desc["producer_epoch"]) == d["producer_epoch"] and int(desc["timeout_ms"]) == timeout_ms, desc
    assert partitions_in(desc["partitions"], topic) == {0, 2}, desc

    # -- committed ---------------------------------------------------------
    txn_call(p.commit_transaction, TXN_CALL_TIMEOUT)
    wait_until(lambda: describe_transactions_raw(broker, txn_id)["state"] == "CompleteCommit", OP_TIMEOUT,
               what="DescribeTransactions to report CompleteCommit")
    d = describe_transactions_raw(broker, txn_id)
    assert d["producer_id"] == pid and d["topics"] == {}, d
    assert list_transactions_raw(broker)[txn_id] == (pid, "CompleteCommit")
    prods = describe_producers_raw(broker, topic, [0, 2])
    for q in (0, 2):
        mine = [x for x in prods[q] if x["producer_id"] == pid]
        assert len(mine) == 1 and mine[0]["current_txn_start_offset"] == -1, prods[q]
    assert cli_txn_list(broker).get(txn_id) == (pid, "CompleteCommit")
    desc = cli_txn_describe(broker, txn_id)
    assert desc["state"] == "CompleteCommit" and int(desc["producer_id"]) == pid, desc
    assert partitions_in(desc["partitions"], topic) == set(), desc


def test_admin_client_transaction_apis_if_available(broker, unique_topic):
    """confluent-kafka's own calls for these APIs, once a release has them (2.16 does not)."""
    admin = admin_client(broker)
    missing = [n for n in ("list_transactions", "describe_transactions", "describe_producers") if not hasattr(admin, n)]
    if missing:
        pytest.skip(f"confluent-kafka {__import__('confluent_kafka').__version__} has no AdminClient.{', '.join(missing)}"
                    " (covered by the raw-protocol test)")
    topic = unique_topic()
    create_topic(broker, topic, 2)
    txn_id = f"txn-adm-{uuid.uuid4().hex[:8]}"
    p = txn_producer(broker, txn_id)
    txn_call(p.init_transactions, TXN_CALL_TIMEOUT)
    p.begin_transaction()
    produce_all(p, topic, [(0, "k", "v")])
    assert p.flush(OP_TIMEOUT) == 0
    listed = admin.list_transactions().result(OP_TIMEOUT)
    assert txn_id in repr(listed), listed
    described = admin.describe_transactions([txn_id])
    assert "Ongoing" in repr(described[txn_id].result(OP_TIMEOUT) if isinstance(described, dict) else described)
    txn_call(p.commit_transaction, TXN_CALL_TIMEOUT)
