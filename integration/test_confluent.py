"""End-to-end tests with confluent-kafka (librdkafka) against the real broker.

Consumers use manual assignment only (assign() with explicit offsets, no
commits): the broker may not implement FindCoordinator yet. librdkafka insists
on a group.id for a Consumer and will try to locate the coordinator in the
background; errors from that (not tied to our topic) are tolerated and only
reported if the test fails.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 3
PER_PARTITION = 40  # records per partition per codec
OP_TIMEOUT = 20.0  # seconds, for any single admin/client operation
CONSUME_TIMEOUT = 45.0


# --------------------------------------------------------------------------
# record model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rec:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple  # tuple[tuple[str, bytes | None], ...] in wire order
    timestamp: int


class Clock:
    """Strictly increasing CreateTime timestamps (ms), shared by a test so
    that timestamps increase with produce order within each partition."""

    def __init__(self, start_ms: int | None = None):
        self.next = start_ms if start_ms is not None else int(time.time() * 1000) - 120_000

    def tick(self) -> int:
        t = self.next
        self.next += 1
        return t


def make_records(tag: str, partitions: range, per_partition: int, clock: Clock) -> list[Rec]:
    """Interleaved across partitions (so producer batches span partitions);
    deterministic content that exercises null keys, null/empty values,
    duplicate/null/empty headers, binary bytes and compressible payloads."""
    out = []
    for i in range(per_partition):
        for p in partitions:
            key = None if i % 10 == 3 else f"{tag}-p{p}-k{i:04d}".encode()
            if i % 10 == 7:
                value = None  # tombstone
            elif i % 10 == 5:
                value = b""
            elif i % 4 == 0:
                value = (f"{tag}|p{p}|{i}|" * 200).encode()  # ~4 KB, compressible
            else:
                value = f"{tag}|p{p}|{i}|".encode() + bytes((i * 7 + j) % 256 for j in range(i % 64))
            headers = [("tag", tag.encode()), ("i", str(i).encode())]
            if i % 3 == 0:
                headers += [("dup", b"a"), ("dup", b"b")]
            if i % 5 == 0:
                headers.append(("nullh", None))
            if i % 6 == 0:
                headers.append(("empty", b""))
            if i % 11 == 10:
                headers = []
            out.append(Rec(p, key, value, tuple(headers), clock.tick()))
    return out


def by_partition(recs: list[Rec]) -> dict[int, list[Rec]]:
    d: dict[int, list[Rec]] = {}
    for r in recs:
        d.setdefault(r.partition, []).append(r)
    return d


def expected_rows(recs_in_order: list[Rec], base_offsets: dict[int, int] | None = None) -> dict[int, list[tuple]]:
    """Per partition: [(offset, key, value, headers, (ts_type, ts)), ...]."""
    rows: dict[int, list[tuple]] = {}
    for r in recs_in_order:
        lst = rows.setdefault(r.partition, [])
        off = (base_offsets or {}).get(r.partition, 0) + len(lst)
        lst.append((off, r.key, r.value, r.headers, (TIMESTAMP_CREATE_TIME, r.timestamp)))
    return rows


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
        "reconnect.backoff.max.ms": 1000,
    }


def admin_client(broker) -> AdminClient:
    return AdminClient(common_conf(broker))


def run_bounded(fn, timeout: float, what: str):
    """Run a potentially blocking client call in a thread; fail if it does not
    return within ``timeout`` (the thread is abandoned as a daemon)."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=target, name=f"bounded:{what}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"{what} did not return within {timeout}s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def create_topic(broker, topic: str, partitions: int = PARTITIONS, config: dict | None = None):
    admin = admin_client(broker)
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        request_timeout=15,
    )
    assert set(fs) == {topic}
    assert fs[topic].result(timeout=OP_TIMEOUT) is None
    return admin


def wait_topic_partitions(admin: AdminClient, topic: str, n: int, timeout: float = OP_TIMEOUT):
    # list_topics() without a topic argument never triggers auto-creation.
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=OP_TIMEOUT)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == n and all(
            p.leader >= 0 for p in t.partitions.values()
        ):
            return md
        last = t
        time.sleep(0.2)
    raise AssertionError(f"topic {topic} did not reach {n} partitions with leaders: {last!r}")


def produce(broker, topic: str, recs: list[Rec], *, codec: str = "none", acks: str = "all",
            extra: dict | None = None) -> list[tuple[int, int]]:
    """Produce ``recs`` in order with one producer; returns [(partition, offset)]
    per record from the delivery reports. Asserts every report is error-free."""
    conf = {
        **common_conf(broker),
        "compression.type": codec,
        "acks": acks,
        "linger.ms": 20,
        "enable.idempotence": False,
        "message.timeout.ms": 30000,
        "request.timeout.ms": 10000,
    }
    conf.update(extra or {})
    p = Producer(conf)
    reports: dict[int, tuple] = {}

    def on_delivery(idx, err, msg):
        reports[idx] = (err, msg.partition(), msg.offset())

    for idx, r in enumerate(recs):
        p.produce(
            topic,
            value=r.value,
            key=r.key,
            partition=r.partition,
            timestamp=r.timestamp,
            headers=list(r.headers) if r.headers else None,
            on_delivery=functools.partial(on_delivery, idx),
        )
        p.poll(0)
    remaining = p.flush(40)
    assert remaining == 0, f"{remaining} messages still undelivered after flush(40) (codec={codec}, acks={acks})"
    assert len(reports) == len(recs), f"{len(recs) - len(reports)} delivery reports missing"
    errors = {i: rep for i, rep in reports.items() if rep[0] is not None}
    assert not errors, f"delivery errors (codec={codec}, acks={acks}): {list(errors.items())[:5]}"
    out = []
    for idx, r in enumerate(recs):
        _, part, off = reports[idx]
        assert part == r.partition
        out.append((part, off))
    return out


def assert_contiguous_offsets(recs: list[Rec], delivered: list[tuple[int, int]], base: dict[int, int]):
    """Delivery-report offsets must be base, base+1, ... per partition, in produce order."""
    nxt = dict(base)
    for r, (p, off) in zip(recs, delivered):
        want = nxt.setdefault(p, 0)
        assert off == want, f"partition {p}: delivery offset {off}, expected {want}"
        nxt[p] = want + 1


def consumer(broker, extra: dict | None = None) -> Consumer:
    conf = {
        **common_conf(broker),
        # Required by confluent-kafka even for assign(); never used for commits.
        "group.id": f"sluice-it-unused-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "error",
        "check.crcs": True,
        "fetch.wait.max.ms": 100,
        "session.timeout.ms": 10000,
    }
    conf.update(extra or {})
    return Consumer(conf)


def close_consumer(c: Consumer):
    run_bounded(c.close, 20, "Consumer.close()")


def consume_rows(broker, topic: str, counts: dict[int, int], *, start=OFFSET_BEGINNING,
                 timeout: float = CONSUME_TIMEOUT, extra: dict | None = None,
                 exact_end: bool = True) -> dict[int, list[tuple]]:
    """assign() every partition in ``counts`` at ``start`` and read until each has
    yielded counts[p] records (bounded). Returns rows like expected_rows.

    exact_end=True: more records than counts[p] is an error (the caller's
    assert_rows_equal sees them); exact_end=False: rows are cut at counts[p]."""
    c = consumer(broker, extra)
    side_errors = []
    try:
        c.assign([TopicPartition(topic, p, start) for p in counts])
        rows: dict[int, list[tuple]] = {p: [] for p in counts}
        deadline = time.monotonic() + timeout
        while any(len(rows[p]) < n for p, n in counts.items()):
            if time.monotonic() >= deadline:
                got = {p: len(v) for p, v in rows.items()}
                raise AssertionError(
                    f"timed out after {timeout}s consuming {topic}: got {got}, want {counts}; "
                    f"other client errors: {side_errors[:10]}"
                )
            for m in c.consume(num_messages=1000, timeout=0.5):
                err = m.error()
                if err is not None:
                    if m.topic() == topic or err.fatal():
                        raise AssertionError(f"consumer error on {m.topic()} [{m.partition()}]: {err}")
                    side_errors.append(str(err))  # e.g. coordinator lookups
                    continue
                assert m.topic() == topic
                p = m.partition()
                assert p in rows, f"record from unassigned partition {p}"
                rows[p].append(
                    (m.offset(), m.key(), m.value(), tuple(m.headers() or ()), m.timestamp())
                )
        if not exact_end:
            return {p: rows[p][:n] for p, n in counts.items()}
        # Nothing beyond what we expected should show up in the meantime.
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error() is None:
                raise AssertionError(
                    f"unexpected extra record {m.topic()} [{m.partition()}] @ {m.offset()}: {m.key()!r}"
                )
        return rows
    finally:
        close_consumer(c)


def watermarks(broker, topic: str, partitions) -> dict[int, tuple[int, int]]:
    c = consumer(broker)
    try:
        return {
            p: tuple(c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT, cached=False))
            for p in partitions
        }
    finally:
        close_consumer(c)


def assert_rows_equal(got: dict[int, list[tuple]], want: dict[int, list[tuple]]):
    assert sorted(got) == sorted(want)
    for p in want:
        g, w = got[p], want[p]
        for i, (a, b) in enumerate(zip(g, w)):
            assert a == b, f"partition {p}, position {i}: got {a!r}\n want {b!r}"
        assert len(g) == len(w), f"partition {p}: got {len(g)} records, want {len(w)}"


def assert_single_broker_metadata(md, broker):
    assert len(md.brokers) == 1, md.brokers
    (b,) = md.brokers.values()
    assert (b.host, b.port) == (broker.host, broker.port), "advertised address must be the listen address"
    assert md.controller_id == b.id, f"controller_id {md.controller_id} != broker id {b.id}"
    return b.id


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_create_topics_and_metadata(broker, unique_topic):
    topic = unique_topic()
    admin = create_topic(broker, topic, partitions=PARTITIONS)
    md = wait_topic_partitions(admin, topic, PARTITIONS)
    node = assert_single_broker_metadata(md, broker)
    t = md.topics[topic]
    assert sorted(t.partitions) == list(range(PARTITIONS))
    for pid, pm in t.partitions.items():
        assert pm.error is None, (pid, pm.error)
        assert pm.leader == node
        assert list(pm.replicas) == [node]
        assert list(pm.isrs) == [node]

    # Creating it again must fail with TOPIC_ALREADY_EXISTS.
    fs = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                             operation_timeout=10, request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(timeout=OP_TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    # Still exactly 3 partitions, and empty.
    md = wait_topic_partitions(admin, topic, PARTITIONS)
    assert watermarks(broker, topic, range(PARTITIONS)) == {p: (0, 0) for p in range(PARTITIONS)}


def test_auto_create_on_produce_default_one_partition(broker, unique_topic):
    topic = unique_topic()
    clock = Clock()
    recs = make_records("auto", range(1), 5, clock)
    delivered = produce(broker, topic, recs, codec="none", acks="all")
    assert_contiguous_offsets(recs, delivered, {})
    admin = admin_client(broker)
    md = wait_topic_partitions(admin, topic, 1)
    assert sorted(md.topics[topic].partitions) == [0]
    assert_rows_equal(consume_rows(broker, topic, {0: len(recs)}), expected_rows(recs))


@pytest.mark.parametrize("acks", ["all", "1"])
def test_produce_consume_every_codec(broker, unique_topic, acks):
    topic = unique_topic()
    create_topic(broker, topic)
    clock = Clock()
    produced: list[Rec] = []
    base: dict[int, int] = {}
    for codec in CODECS:
        recs = make_records(codec, range(PARTITIONS), PER_PARTITION, clock)
        delivered = produce(broker, topic, recs, codec=codec, acks=acks)
        assert_contiguous_offsets(recs, delivered, base)
        for p in range(PARTITIONS):
            base[p] = base.get(p, 0) + PER_PARTITION
        produced += recs

    want = expected_rows(produced)
    counts = {p: len(v) for p, v in want.items()}
    assert counts == {p: PER_PARTITION * len(CODECS) for p in range(PARTITIONS)}
    assert_rows_equal(consume_rows(broker, topic, counts), want)
    assert watermarks(broker, topic, range(PARTITIONS)) == {p: (0, counts[p]) for p in range(PARTITIONS)}

    # Start in the middle of (compressed) batches: exact suffix from that offset.
    start = PER_PARTITION + 7  # inside the gzip section
    got = consume_rows(broker, topic, {p: counts[p] - start for p in range(PARTITIONS)}, start=start)
    assert_rows_equal(got, {p: rows[start:] for p, rows in want.items()})


def test_acks_zero(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker, topic)
    clock = Clock()
    recs = make_records("acks0", range(PARTITIONS), 20, clock)
    delivered = produce(broker, topic, recs, codec="lz4", acks="0")
    # With acks=0 there is no offset in the delivery report.
    assert {off for _, off in delivered} <= {None, OFFSET_END, -1001}
    want = expected_rows(recs)
    counts = {p: len(v) for p, v in want.items()}

    def all_there():
        return watermarks(broker, topic, range(PARTITIONS)) == {p: (0, n) for p, n in counts.items()}

    deadline = time.monotonic() + 15
    while not all_there():
        assert time.monotonic() < deadline, "acks=0 records did not all become visible within 15s"
        time.sleep(0.3)
    assert_rows_equal(consume_rows(broker, topic, counts), want)


def test_offsets_for_times_and_watermarks(broker, unique_topic):
    topic = unique_topic()
    admin = create_topic(broker, topic)
    clock = Clock()
    recs = []
    for codec in ("none", "zstd", "snappy"):
        batch = make_records(codec, range(PARTITIONS), 15, clock)
        produce(broker, topic, batch, codec=codec, acks="all")
        recs += batch
    per_part = by_partition(recs)

    assert watermarks(broker, topic, range(PARTITIONS)) == {p: (0, len(v)) for p, v in per_part.items()}

    # Timestamps strictly increase by 1 per record produced and records are
    # interleaved over 3 partitions, so inside a partition consecutive records
    # are 3 ms apart: ts(k-1)+1 lies strictly between ts(k-1) and ts(k).
    queries: list[tuple[int, int, int]] = []  # (partition, timestamp, expected offset)
    for p, lst in per_part.items():
        n = len(lst)
        queries += [
            (p, 0, 0),
            (p, lst[0].timestamp, 0),
            (p, lst[1].timestamp - 1, 1),
            (p, lst[17].timestamp, 17),
            (p, lst[17].timestamp - 1, 17),
            (p, lst[17].timestamp + 1, 18),
            (p, lst[n - 1].timestamp, n - 1),
            (p, lst[n - 1].timestamp + 1, OFFSET_END),  # no such record -> -1
        ]
    c = consumer(broker)
    try:
        for p, ts, want in queries:
            (res,) = c.offsets_for_times([TopicPartition(topic, p, ts)], timeout=OP_TIMEOUT)
            assert res.error is None, (p, ts, res.error)
            assert (res.partition, res.offset) == (p, want), f"offsets_for_times(p={p}, ts={ts})"
    finally:
        close_consumer(c)

    # The same through the admin ListOffsets API.
    for p, lst in per_part.items():
        specs = {
            TopicPartition(topic, p): OffsetSpec.earliest(),
        }
        res = admin.list_offsets(specs, request_timeout=15)
        (f,) = res.values()
        assert f.result(timeout=OP_TIMEOUT).offset == 0
        res = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest()}, request_timeout=15)
        (f,) = res.values()
        assert f.result(timeout=OP_TIMEOUT).offset == len(lst)
        res = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.for_timestamp(lst[5].timestamp)},
                                 request_timeout=15)
        (f,) = res.values()
        info = f.result(timeout=OP_TIMEOUT)
        assert (info.offset, info.timestamp) == (5, lst[5].timestamp)


def describe_topic_configs(admin: AdminClient, topic: str) -> dict:
    fs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=15)
    (f,) = fs.values()
    return f.result(timeout=OP_TIMEOUT)


def test_describe_and_incremental_alter_configs(broker, unique_topic):
    topic = unique_topic()
    other = unique_topic("other")
    admin = create_topic(broker, topic, config={"retention.ms": "172800000"})
    create_topic(broker, other)

    configs = describe_topic_configs(admin, topic)
    assert "retention.ms" in configs, sorted(configs)
    assert configs["retention.ms"].value == "172800000", "config given at CreateTopics time"
    other_before = describe_topic_configs(admin, other)
    assert "retention.ms" in other_before, sorted(other_before)
    default_retention = other_before["retention.ms"].value
    assert default_retention not in (None, "", "259200000")

    new_value = "259200000"  # 3 days; large on purpose so nothing gets deleted
    fs = admin.incremental_alter_configs(
        [
            ConfigResource(
                ResourceType.TOPIC,
                topic,
                incremental_configs=[
                    ConfigEntry("retention.ms", new_value, incremental_operation=AlterConfigOpType.SET)
                ],
            )
        ],
        request_timeout=15,
    )
    (f,) = fs.values()
    assert f.result(timeout=OP_TIMEOUT) is None

    assert describe_topic_configs(admin, topic)["retention.ms"].value == new_value
    assert describe_topic_configs(admin, other)["retention.ms"].value == default_retention, "other topic changed"

    # Survives a clean restart.
    broker.restart(clean=True)
    admin = admin_client(broker)
    assert describe_topic_configs(admin, topic)["retention.ms"].value == new_value

    # DELETE reverts to the default.
    fs = admin.incremental_alter_configs(
        [
            ConfigResource(
                ResourceType.TOPIC,
                topic,
                incremental_configs=[
                    ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)
                ],
            )
        ],
        request_timeout=15,
    )
    (f,) = fs.values()
    assert f.result(timeout=OP_TIMEOUT) is None
    assert describe_topic_configs(admin, topic)["retention.ms"].value == default_retention


def test_delete_topic(broker, unique_topic):
    topic = unique_topic()
    keep = unique_topic("keep")
    admin = create_topic(broker, topic)
    create_topic(broker, keep)
    clock = Clock()
    recs = make_records("del", range(PARTITIONS), 10, clock)
    produce(broker, topic, recs, codec="gzip", acks="all")

    fs = admin.delete_topics([topic], operation_timeout=10, request_timeout=15)
    assert fs[topic].result(timeout=OP_TIMEOUT) is None

    deadline = time.monotonic() + OP_TIMEOUT
    while topic in admin.list_topics(timeout=OP_TIMEOUT).topics:
        assert time.monotonic() < deadline, f"{topic} still listed {OP_TIMEOUT}s after DeleteTopics"
        time.sleep(0.2)
    assert keep in admin.list_topics(timeout=OP_TIMEOUT).topics

    # Deleting it again: UNKNOWN_TOPIC_OR_PART.
    fs = admin.delete_topics([topic], operation_timeout=10, request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(timeout=OP_TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # Recreating the name yields an empty topic: the old data is gone.
    create_topic(broker, topic)
    wait_topic_partitions(admin, topic, PARTITIONS)
    assert watermarks(broker, topic, range(PARTITIONS)) == {p: (0, 0) for p in range(PARTITIONS)}

    # ... also after a restart (deletion is durable).
    broker.restart(clean=True)
    admin = admin_client(broker)
    assert watermarks(broker, topic, range(PARTITIONS)) == {p: (0, 0) for p in range(PARTITIONS)}


def test_restart_clean_then_sigkill_keeps_acked_data(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker, topic)
    clock = Clock()
    produced: list[Rec] = []

    def produce_round(tag, codec):
        base = {p: len(v) for p, v in by_partition(produced).items()}
        recs = make_records(tag, range(PARTITIONS), 25, clock)
        delivered = produce(broker, topic, recs, codec=codec, acks="all")
        assert_contiguous_offsets(recs, delivered, base)
        produced.extend(recs)

    def read_all_and_compare():
        want = expected_rows(produced)
        got = consume_rows(broker, topic, {p: len(v) for p, v in want.items()})
        assert_rows_equal(got, want)
        assert watermarks(broker, topic, range(PARTITIONS)) == {p: (0, len(v)) for p, v in want.items()}

    produce_round("r1", "zstd")
    read_all_and_compare()

    broker.restart(clean=True)
    md = wait_topic_partitions(admin_client(broker), topic, PARTITIONS)
    assert_single_broker_metadata(md, broker)
    read_all_and_compare()

    produce_round("r2", "lz4")
    broker.restart(clean=False)  # SIGKILL right after the acks=all flush
    wait_topic_partitions(admin_client(broker), topic, PARTITIONS)
    read_all_and_compare()

    produce_round("r3", "snappy")  # offsets continue after the crash
    read_all_and_compare()


def test_sigkill_during_produce_acked_records_survive(broker, unique_topic):
    """Kill -9 while a producer is busy: every record acknowledged (acks=all)
    before or after the crash must be at its acknowledged offset, intact."""
    topic = unique_topic()
    create_topic(broker, topic)
    clock = Clock()
    recs = make_records("crash", range(PARTITIONS), 400, clock)
    reports: dict[int, tuple] = {}

    def on_delivery(idx, err, msg):
        reports[idx] = (err, msg.partition(), msg.offset())

    p = Producer(
        {
            **common_conf(broker),
            "compression.type": "gzip",
            "acks": "all",
            "linger.ms": 5,
            "batch.num.messages": 50,
            "enable.idempotence": False,
            "message.timeout.ms": 40000,
            "request.timeout.ms": 5000,
        }
    )
    killed = False
    deadline = time.monotonic() + 60
    for idx, r in enumerate(recs):
        p.produce(topic, value=r.value, key=r.key, partition=r.partition, timestamp=r.timestamp,
                  headers=list(r.headers) if r.headers else None,
                  on_delivery=functools.partial(on_delivery, idx))
        p.poll(0)
        if not killed and idx >= len(recs) // 3:
            # Wait (bounded) for some acks so the crash lands mid-stream.
            while sum(1 for e in reports.values() if e[0] is None) < 100:
                assert time.monotonic() < deadline, "no acks before the planned crash"
                p.poll(0.05)
            broker.kill()
            killed = True
            broker.start(new_ports_on_conflict=False)
    remaining = p.flush(60)
    assert remaining == 0, f"{remaining} messages neither delivered nor failed after flush(60)"
    assert killed

    acked = {idx: (part, off) for idx, (err, part, off) in reports.items() if err is None}
    assert len(acked) >= 100
    counts = {q: 0 for q in range(PARTITIONS)}
    for part, off in acked.values():
        counts[part] = max(counts[part], off + 1)
    # Unacknowledged sends may or may not have landed (and may be duplicated
    # by retries), so only the acknowledged prefix is checked exactly.
    got = consume_rows(broker, topic, {q: n for q, n in counts.items() if n > 0}, exact_end=False)
    for idx, (part, off) in sorted(acked.items()):
        r = recs[idx]
        row = got[part][off]
        assert row[0] == off
        assert row[1:] == (r.key, r.value, r.headers, (TIMESTAMP_CREATE_TIME, r.timestamp)), (
            f"acked record #{idx} at {part}@{off} differs after SIGKILL"
        )
    # No two acks for the same slot.
    assert len(set(acked.values())) == len(acked)
