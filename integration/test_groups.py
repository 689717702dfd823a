"""Consumer groups (classic protocol) end to end: confluent-kafka (librdkafka),
kafka-python and the sluice CLI against the real broker.

Consumers that may be SIGKILLed run in subprocesses (one small script, below)
that print one JSON line per event: assignment changes, each record consumed,
each synchronous commit acknowledged. The checks then are:

* no record is skipped: every produced offset was consumed by someone;
* duplicates only from uncommitted work: a record is consumed again only if no
  commit covering it had been acknowledged before its new reader was assigned
  the partition;
* committed offsets survive a SIGKILL of the broker.

The broker runs with a short ``group.initial.rebalance.delay.ms`` and a low
``group.min.session.timeout.ms`` so that every wait here is a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import _child_preexec, sluice_bin, wait_until

BROKER_SETS = {
    "group.initial.rebalance.delay.ms": "200",
    "group.min.session.timeout.ms": "1000",
}
OP_TIMEOUT = 20.0
SETTLE_TIMEOUT = 40.0

CONSUMER_SCRIPT = r"""
import json, signal, sys
from confluent_kafka import Consumer, KafkaException

conf = json.loads(sys.argv[1])
topic, name = sys.argv[2], sys.argv[3]

def out(**kw):
    kw["c"] = name
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

def on_assign(c, parts):
    out(event="assign", partitions=[p.partition for p in parts])

def on_revoke(c, parts):
    out(event="revoke", partitions=[p.partition for p in parts])

def on_lost(c, parts):
    out(event="revoke", partitions=[p.partition for p in parts], lost=True)

stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
c = Consumer(conf)
c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
out(event="started")
while not stop:
    m = c.poll(0.2)
    if m is None:
        continue
    if m.error():
        out(event="error", error=str(m.error()))
        continue
    out(event="record", p=m.partition(), o=m.offset(), v=m.value().decode())
    try:
        c.commit(message=m, asynchronous=False)
        out(event="committed", p=m.partition(), o=m.offset() + 1)
    except KafkaException as e:
        out(event="commit_failed", p=m.partition(), o=m.offset(), error=str(e))
c.close()
out(event="closed")
"""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def group_conf(broker, group: str, **extra) -> dict:
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 4000,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 30000,
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 2000,
    }
    conf.update(extra)
    return conf


def create_topic(broker, topic: str, partitions: int):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(OP_TIMEOUT)


def produce(broker, topic: str, partitions: int, start: int, count: int, tag: str = "v") -> list[str]:
    """`count` records spread round-robin over the partitions; values are unique."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    values = []
    errors = []
    for i in range(start, start + count):
        v = f"{tag}-{i}"
        values.append(v)
        p.produce(topic, value=v, partition=i % partitions,
                  on_delivery=lambda err, _m: err and errors.append(str(err)))
    assert p.flush(OP_TIMEOUT) == 0, "producer did not flush"
    assert not errors, errors
    return values


class ConsumerProc:
    """One confluent-kafka group consumer in its own process (so it can be
    SIGKILLed), reporting events as JSON lines."""

    def __init__(self, script: str, conf: dict, topic: str, name: str, sink: "Events"):
        self.name = name
        self.sink = sink
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(conf), topic, name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_child_preexec,
        )
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            self.sink.add(e)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class Events:
    """Every event of every consumer, in arrival order, timestamped."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[dict] = []

    def add(self, e: dict):
        with self.lock:
            e["t"] = time.monotonic()
            e["seq"] = len(self.items)
            self.items.append(e)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.items)

    def assignments(self) -> dict[str, set[int]]:
        """Each consumer's current partitions (assign adds, revoke removes)."""
        current: dict[str, set[int]] = defaultdict(set)
        for e in self.snapshot():
            if e["event"] == "assign":
                current[e["c"]] |= set(e["partitions"])
            elif e["event"] == "revoke":
                current[e["c"]] -= set(e["partitions"])
        return current

    def consumed_values(self) -> set[str]:
        return {e["v"] for e in self.snapshot() if e["event"] == "record"}

    def describe(self, last: int = 40) -> str:
        return "\n".join(json.dumps(e) for e in self.snapshot()[-last:])


def wait_consumed(events: Events, values: list[str], timeout: float = SETTLE_TIMEOUT):
    want = set(values)
    wait_until(lambda: want <= events.consumed_values(), timeout,
               what=f"{len(want)} records consumed; recent events:\n{events.describe()}")


def wait_assigned(events: Events, names: list[str], partitions: int, timeout: float = SETTLE_TIMEOUT):
    """Until the named consumers together own every partition exactly once."""

    def settled():
        a = events.assignments()
        owned = [p for n in names for p in a.get(n, ())]
        return sorted(owned) == list(range(partitions)) and all(a.get(n) for n in names)

    wait_until(settled, timeout, what=f"{names} to share {partitions} partitions; "
               f"assignments {dict(events.assignments())}; recent events:\n{events.describe()}")
    return events.assignments()


def check_delivery(events: Events, expected: dict[int, int]):
    """No record skipped; a record is read again only if no acknowledged commit
    covered it when its new reader was assigned the partition."""
    items = events.snapshot()
    seen: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for e in items:
        if e["event"] == "record":
            seen[(e["p"], e["o"])].append(e)
    for p, end in expected.items():
        missing = [o for o in range(end) if (p, o) not in seen]
        assert not missing, f"partition {p}: offsets never consumed: {missing[:20]}"
    commits = [e for e in items if e["event"] == "committed"]
    assigns = [e for e in items if e["event"] == "assign"]
    for (p, o), reads in seen.items():
        for again in reads[1:]:
            # When did this reader get the partition?
            got = [a for a in assigns if a["c"] == again["c"] and p in a["partitions"] and a["seq"] < again["seq"]]
            if not got:
                continue  # read without a new assignment: never rewinds below its own position
            since = got[-1]["seq"]
            covering = [c for c in commits if c["p"] == p and c["o"] > o and c["seq"] < since]
            assert not covering, (
                f"record {p}/{o} read again by {again['c']} although {covering[0]['c']} had "
                f"committed offset {covering[0]['o']} before {again['c']} was assigned partition {p}"
            )


def committed_offsets(broker, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=OP_TIMEOUT)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def read_new(broker, group: str, topic: str, want: int, timeout: float = 30.0, **extra) -> list[str]:
    """A fresh member of `group` reads from the committed offsets until it has
    `want` records, then a little longer to catch anything extra."""
    c = Consumer(group_conf(broker, group, **extra))
    got = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.value().decode())
                c.commit(message=m, asynchronous=False)
            if len(got) >= want:
                quiet_until = quiet_until or time.monotonic() + 2.0
                if time.monotonic() >= quiet_until:
                    break
        return got
    finally:
        c.close()


def cli(broker, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(sluice_bin()), *args, "--bootstrap", broker.bootstrap],
        capture_output=True, text=True, timeout=60,
    )
    if check:
        assert proc.returncode == 0, f"sluice {' '.join(args)} failed:\n{proc.stderr}"
    return proc


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_confluent_group_survives_a_killed_consumer_and_a_killed_broker(broker_factory, unique_topic, tmp_path):
    broker = broker_factory(sets=BROKER_SETS)
    topic, group, partitions = unique_topic(), f"g-{uuid.uuid4().hex[:8]}", 6
    create_topic(broker, topic, partitions)
    first = produce(broker, topic, partitions, 0, 300)
    events = Events()
    procs = [ConsumerProc(CONSUMER_SCRIPT, group_conf(broker, group), topic, f"c{i}", events) for i in range(3)]
    try:
        names = [p.name for p in procs]
        assignment = wait_assigned(events, names, partitions)
        assert all(len(assignment[n]) == 2 for n in names), dict(assignment)
        wait_consumed(events, first)
        # The broker agrees: three members, every partition once.
        d = json.loads(cli(broker, "group", "describe", group, "--json").stdout)
        assert d["state"] == "Stable" and len(d["members"]) == 3, d
        owned = sorted(p for m in d["members"] for p in m["assignment"].get(topic, []))
        assert owned == list(range(partitions)), d

        # One consumer dies without leaving: its partitions move after its session times out.
        victim = procs.pop()
        victim.kill()
        second = produce(broker, topic, partitions, 300, 150)
        wait_assigned(events, [p.name for p in procs], partitions)
        wait_consumed(events, second)

        # The broker dies; acknowledged commits must survive it.
        wait_until(lambda: sum(committed_offsets(broker, group, topic, partitions).values()) == 450,
                   OP_TIMEOUT, what="450 offsets committed before the crash")
        broker.restart(clean=False)
        third = produce(broker, topic, partitions, 450, 150)
        wait_consumed(events, third, timeout=60)
        check_delivery(events, {p: 100 for p in range(partitions)})
        wait_until(lambda: committed_offsets(broker, group, topic, partitions) == {p: 100 for p in range(partitions)},
                   OP_TIMEOUT, what="all offsets committed")
    finally:
        for p in procs:
            p.stop()
    # The group resumes from its committed offsets after another crash: only new records.
    broker.restart(clean=False)
    fourth = produce(broker, topic, partitions, 600, 60)
    assert sorted(read_new(broker, group, topic, 60)) == sorted(fourth)


def test_cooperative_sticky_moves_only_what_it_must(broker_factory, unique_topic):
    broker = broker_factory(sets=BROKER_SETS)
    topic, group, partitions = unique_topic(), f"coop-{uuid.uuid4().hex[:8]}", 6
    create_topic(broker, topic, partitions)
    first = produce(broker, topic, partitions, 0, 120)
    conf = group_conf(broker, group, **{"partition.assignment.strategy": "cooperative-sticky"})
    events = Events()
    a = ConsumerProc(CONSUMER_SCRIPT, conf, topic, "a", events)
    procs = [a]
    try:
        wait_assigned(events, ["a"], partitions)
        wait_consumed(events, first)
        b = ConsumerProc(CONSUMER_SCRIPT, conf, topic, "b", events)
        procs.append(b)
        final = wait_assigned(events, ["a", "b"], partitions)
        assert len(final["a"]) == 3 and len(final["b"]) == 3, dict(final)
        # Incremental: a only ever gave up the partitions b took, and never all of them.
        revoked = set()
        for e in events.snapshot():
            if e["c"] == "a" and e["event"] == "revoke":
                assert not e.get("lost"), e
                revoked |= set(e["partitions"])
        assert revoked == final["b"], (revoked, dict(final))
        second = produce(broker, topic, partitions, 120, 120)
        wait_consumed(events, second)
        check_delivery(events, {p: 40 for p in range(partitions)})
        d = json.loads(cli(broker, "group", "describe", group, "--json").stdout)
        assert d["protocol"] == "cooperative-sticky" and len(d["members"]) == 2, d
    finally:
        for p in procs:
            p.stop()


def test_static_member_rejoins_without_a_rebalance(broker_factory, unique_topic):
    broker = broker_factory(sets=BROKER_SETS)
    topic, group, partitions = unique_topic(), f"static-{uuid.uuid4().hex[:8]}", 4
    create_topic(broker, topic, partitions)
    events = Events()

    def start(name: str, instance: str) -> ConsumerProc:
        conf = group_conf(broker, group, **{"group.instance.id": instance, "session.timeout.ms": 15000})
        return ConsumerProc(CONSUMER_SCRIPT, conf, topic, name, events)

    procs = {"a": start("a", "inst-a"), "b": start("b", "inst-b")}
    try:
        before = wait_assigned(events, ["a", "b"], partitions)
        members_before = {m["group_instance_id"]: m["member_id"]
                          for m in json.loads(cli(broker, "group", "describe", group, "--json").stdout)["members"]}
        a_events = len([e for e in events.snapshot() if e["c"] == "a"])
        # b's process dies and comes back with the same group.instance.id before its session ends.
        procs["b"].kill()
        b_lost = before["b"]
        procs["b"] = start("b2", "inst-b")
        # b2 reports under its own name; it must get b's partitions back.
        wait_until(lambda: events.assignments().get("b2") == b_lost, SETTLE_TIMEOUT,
                   what=f"restarted static member to get {b_lost}; events:\n{events.describe()}")
        time.sleep(2.0)  # a would have been told to rejoin by now
        a_after = [e for e in events.snapshot() if e["c"] == "a"][a_events:]
        assert not [e for e in a_after if e["event"] in ("assign", "revoke")], a_after
        d = json.loads(cli(broker, "group", "describe", group, "--json").stdout)
        assert d["state"] == "Stable", d
        members_after = {m["group_instance_id"]: m["member_id"] for m in d["members"]}
        assert members_after["inst-a"] == members_before["inst-a"]
        assert members_after["inst-b"] != members_before["inst-b"], "b rejoined under a new member id"
        values = produce(broker, topic, partitions, 0, 40)
        wait_consumed(events, values)
    finally:
        for p in procs.values():
            p.stop()


def test_kafka_python_subscribe_commit_resume(broker_factory, unique_topic):
    from kafka import KafkaConsumer, KafkaProducer

    broker = broker_factory(sets=BROKER_SETS)
    topic, group, partitions = unique_topic(), f"kp-{uuid.uuid4().hex[:8]}", 4
    create_topic(broker, topic, partitions)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    sent = []
    for i in range(200):
        v = f"kp-{i}"
        producer.send(topic, value=v.encode(), partition=i % partitions)
        sent.append(v)
    producer.flush(OP_TIMEOUT)
    producer.close(OP_TIMEOUT)

    got: dict[str, list[str]] = defaultdict(list)
    owned: dict[str, set[int]] = {}
    stop = threading.Event()
    errors = []

    def run(name: str):
        try:
            c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                              auto_offset_reset="earliest", enable_auto_commit=False,
                              session_timeout_ms=4000, heartbeat_interval_ms=500,
                              request_timeout_ms=10000)
            try:
                while not stop.is_set():
                    batch = c.poll(timeout_ms=200)
                    for records in batch.values():
                        for r in records:
                            got[name].append(r.value.decode())
                    if batch:
                        c.commit()
                    owned[name] = {tp.partition for tp in c.assignment()}
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in ("x", "y")]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: set(sent) <= {v for vs in got.values() for v in vs} and not errors,
                   SETTLE_TIMEOUT, what=f"kafka-python consumers to read everything; errors {errors}")
        wait_until(lambda: len(owned) == 2 and all(owned.values())
                   and sorted(p for s in owned.values() for p in s) == list(range(partitions)),
                   SETTLE_TIMEOUT, what=f"both kafka-python members to share the partitions: {owned}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    wait_until(lambda: committed_offsets(broker, group, topic, partitions) == {p: 50 for p in range(partitions)},
               OP_TIMEOUT, what="kafka-python's commits")

    broker.restart(clean=False)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    more = []
    for i in range(200, 240):
        v = f"kp-{i}"
        producer.send(topic, value=v.encode(), partition=i % partitions)
        more.append(v)
    producer.flush(OP_TIMEOUT)
    producer.close(OP_TIMEOUT)
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=4000, heartbeat_interval_ms=500)
    resumed = []
    try:
        deadline = time.monotonic() + 30
        while len(resumed) < len(more) and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=200).values():
                resumed.extend(r.value.decode() for r in records)
        for records in c.poll(timeout_ms=1000).values():
            resumed.extend(r.value.decode() for r in records)
    finally:
        c.close()
    assert sorted(resumed) == sorted(more), "resumed from the committed offsets after a crash"


def test_group_admin_apis_cli_and_metrics(broker_factory, unique_topic):
    broker = broker_factory(sets=BROKER_SETS)
    topic, group, partitions = unique_topic(), f"adm-{uuid.uuid4().hex[:8]}", 3
    create_topic(broker, topic, partitions)
    values = produce(broker, topic, partitions, 0, 90)
    c = Consumer(group_conf(broker, group))
    try:
        c.subscribe([topic])
        n = 0
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while n < 45 and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                n += 1
                c.commit(message=m, asynchronous=False)
        assert n == 45
        # While the group has a member: listed as Stable; offsets cannot be reset or deleted.
        assert f"{group}\tStable" in cli(broker, "group", "list").stdout
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        listed = admin.list_consumer_groups().result(OP_TIMEOUT)
        assert group in {g.group_id for g in listed.valid}
        desc = admin.describe_consumer_groups([group])[group].result(OP_TIMEOUT)
        assert len(desc.members) == 1 and str(desc.state).endswith("STABLE"), desc
        refused = cli(broker, "group", "reset-offsets", group, "--all-topics", "--to-earliest", "--execute", check=False)
        assert refused.returncode != 0 and "inactive" in refused.stderr, refused.stderr
        refused = cli(broker, "group", "delete", group, check=False)
        assert refused.returncode != 0 and "NonEmptyGroup" in refused.stderr, refused.stderr
        text = cli(broker, "group", "describe", group).stdout
        assert "LOG-END-OFFSET" in text and "LAG" in text, text
        d = json.loads(cli(broker, "group", "describe", group, "--json").stdout)
        assert sum(r["committed_offset"] or 0 for r in d["partitions"]) == 45, d
        for r in d["partitions"]:
            assert r["log_end_offset"] == 30 and r["member_id"] == desc.members[0].member_id, r
            if r["committed_offset"] is not None:
                assert r["lag"] == 30 - r["committed_offset"], r
        metrics = urllib.request.urlopen(f"http://{broker.admin}/metrics", timeout=10).read().decode()
        assert f'sluice_group_members{{group="{group}"}} 1' in metrics
        assert f'sluice_group_state{{group="{group}",state="Stable"}} 1' in metrics
        lag = [l for l in metrics.splitlines() if l.startswith("sluice_consumer_lag") and group in l]
        assert lag and sum(int(l.rsplit(" ", 1)[1]) for l in lag) <= 45, lag
    finally:
        c.close()
    wait_until(lambda: f"{group}\tEmpty" in cli(broker, "group", "list").stdout, OP_TIMEOUT,
               what="the group to be empty after close")
    # Now the group is empty: reset to the start, check, then delete it.
    plan = cli(broker, "group", "reset-offsets", group, "--topic", topic, "--to-earliest").stdout
    assert "NEW-OFFSET" in plan
    offsets = committed_offsets(broker, group, topic, partitions)
    assert sum(max(o, 0) for o in offsets.values()) == 45, f"a dry run changes nothing: {offsets}"
    cli(broker, "group", "reset-offsets", group, "--topic", topic, "--to-latest", "--execute")
    assert committed_offsets(broker, group, topic, partitions) == {0: 30, 1: 30, 2: 30}
    cli(broker, "group", "reset-offsets", group, "--topic", f"{topic}:1", "--shift-by", "-10", "--execute")
    assert committed_offsets(broker, group, topic, partitions)[1] == 20
    partition_1 = [v for v in values if int(v.split("-")[1]) % 3 == 1]
    assert sorted(read_new(broker, group, topic, 10)) == sorted(partition_1[20:])
    wait_until(lambda: f"{group}\tEmpty" in cli(broker, "group", "list").stdout, OP_TIMEOUT,
               what="the group to be empty again")
    cli(broker, "group", "delete", group)
    assert group not in cli(broker, "group", "list").stdout
    assert committed_offsets(broker, group, topic, partitions) == {p: -1001 for p in range(partitions)}


# --------------------------------------------------------------------------
# KIP-848 consumer protocol (group.protocol=consumer)
# --------------------------------------------------------------------------

CONSUMER_PROTOCOL_SETS = {
    "group.consumer.heartbeat.interval.ms": "500",
    "group.consumer.session.timeout.ms": "6000",
}


def consumer_protocol_conf(broker, group: str, **extra) -> dict:
    # Session and heartbeat timing are the broker's under this protocol.
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "max.poll.interval.ms": 30000,
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 2000,
    }
    conf.update(extra)
    return conf


def test_consumer_protocol_group_moves_partitions_and_survives_a_killed_broker(broker_factory, unique_topic):
    broker = broker_factory(sets={**BROKER_SETS, **CONSUMER_PROTOCOL_SETS})
    topic, group, partitions = unique_topic(), f"kip848-{uuid.uuid4().hex[:8]}", 6
    create_topic(broker, topic, partitions)
    first = produce(broker, topic, partitions, 0, 300)
    events = Events()
    procs = [ConsumerProc(CONSUMER_SCRIPT, consumer_protocol_conf(broker, group), topic, f"c{i}", events)
             for i in range(3)]
    try:
        names = [p.name for p in procs]
        assignment = wait_assigned(events, names, partitions)
        assert all(len(assignment[n]) == 2 for n in names), dict(assignment)
        wait_consumed(events, first)
        # The broker agrees: three members, every partition once.
        d = json.loads(cli(broker, "group", "describe", group, "--json").stdout)
        assert len(d["members"]) == 3, d
        owned = sorted(p for m in d["members"] for p in m["assignment"].get(topic, []))
        assert owned == list(range(partitions)), d

        # One consumer leaves: its partitions move to the others, nothing is skipped.
        leaving = procs.pop()
        leaving.stop()
        second = produce(broker, topic, partitions, 300, 150)
        wait_assigned(events, [p.name for p in procs], partitions)
        wait_consumed(events, second)

        # The broker dies (SIGKILL); the group and its commits come back.
        wait_until(lambda: sum(committed_offsets(broker, group, topic, partitions).values()) == 450,
                   OP_TIMEOUT, what="450 offsets committed before the crash")
        broker.restart(clean=False)
        third = produce(broker, topic, partitions, 450, 150)
        wait_consumed(events, third, timeout=40)
        check_delivery(events, {p: 100 for p in range(partitions)})
        wait_until(lambda: committed_offsets(broker, group, topic, partitions) == {p: 100 for p in range(partitions)},
                   OP_TIMEOUT, what="all offsets committed")
    finally:
        for p in procs:
            p.stop()


def test_consumer_protocol_regex_subscription_and_group_listing(broker_factory, unique_topic):
    broker = broker_factory(sets={**BROKER_SETS, **CONSUMER_PROTOCOL_SETS})
    prefix = unique_topic()
    group = f"kip848re-{uuid.uuid4().hex[:8]}"
    for suffix in ("a", "b"):
        create_topic(broker, f"{prefix}-{suffix}", 2)
    values = produce(broker, f"{prefix}-a", 2, 0, 10, tag="a") + produce(broker, f"{prefix}-b", 2, 0, 10, tag="b")
    c = Consumer(consumer_protocol_conf(broker, group))
    got = []
    try:
        c.subscribe([f"^{prefix}-.*"])
        deadline = time.monotonic() + OP_TIMEOUT
        while len(got) < len(values) and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.value().decode())
        assert sorted(got) == sorted(values)
        listed = json.loads(cli(broker, "group", "list", "--json").stdout)
        assert any(g.get("group") == group or g.get("group_id") == group for g in listed), listed
        d = json.loads(cli(broker, "group", "describe", group, "--json").stdout)
        assert len(d["members"]) == 1, d
        assert sorted(d["members"][0]["assignment"]) == [f"{prefix}-a", f"{prefix}-b"], d
    finally:
        c.close()
