"""End-to-end tests with kafka-python (pure-Python client, 2.x).

kafka-python infers the broker version from the ApiVersions response; it
needs an inferred version >= 2.1 for zstd (e.g. Fetch v10 or Produce v8
advertised). Its consumer uses incremental fetch sessions (KIP-227) by
default, so the long reads here exercise them. No consumer groups:
group_id=None, assign() + seek_to_beginning(), no commits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 3
PER_PARTITION = 30
OP_TIMEOUT = 20.0
CONSUME_TIMEOUT = 45.0
CREATE_TIME = 0  # kafka-python timestamp_type for CreateTime


@dataclass(frozen=True)
class Rec:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple  # tuple[tuple[str, bytes], ...]
    timestamp: int


class Clock:
    def __init__(self):
        self.next = int(time.time() * 1000) - 120_000

    def tick(self) -> int:
        t = self.next
        self.next += 1
        return t


def make_records(tag: str, partitions, per_partition: int, clock: Clock) -> list[Rec]:
    """Like the confluent variant, minus null header values (kafka-python's
    producer only accepts bytes header values)."""
    out = []
    for i in range(per_partition):
        for p in partitions:
            key = None if i % 10 == 3 else f"{tag}-p{p}-k{i:04d}".encode()
            if i % 10 == 7:
                value = None
            elif i % 10 == 5:
                value = b""
            elif i % 4 == 0:
                value = (f"{tag}|p{p}|{i}|" * 250).encode()
            else:
                value = f"{tag}|p{p}|{i}|".encode() + bytes((i * 11 + j) % 256 for j in range(i % 50))
            headers = [("tag", tag.encode()), ("i", str(i).encode())]
            if i % 3 == 0:
                headers += [("dup", b"1"), ("dup", b"2")]
            if i % 6 == 0:
                headers.append(("empty", b""))
            if i % 11 == 10:
                headers = []
            out.append(Rec(p, key, value, tuple(headers), clock.tick()))
    return out


def expected_rows(recs: list[Rec]) -> dict[int, list[tuple]]:
    rows: dict[int, list[tuple]] = {}
    for r in recs:
        lst = rows.setdefault(r.partition, [])
        lst.append((len(lst), r.key, r.value, r.headers, r.timestamp, CREATE_TIME))
    return rows


def admin_client(broker) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=[broker.bootstrap],
        client_id="sluice-it-admin",
        request_timeout_ms=15000,
        api_version_auto_timeout_ms=10000,
    )


def producer(broker, codec: str, acks) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=[broker.bootstrap],
        client_id=f"sluice-it-{codec}",
        compression_type=None if codec == "none" else codec,
        acks=acks,
        linger_ms=10,
        batch_size=32 * 1024,
        enable_idempotence=False,
        request_timeout_ms=10000,
        delivery_timeout_ms=30000,
        max_block_ms=20000,
        api_version_auto_timeout_ms=10000,
    )


def consumer(broker, **extra) -> KafkaConsumer:
    conf = dict(
        bootstrap_servers=[broker.bootstrap],
        client_id="sluice-it-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        check_crcs=True,
        request_timeout_ms=15000,
        fetch_max_wait_ms=100,
        api_version_auto_timeout_ms=10000,
        # Small per-partition budget: many fetch rounds (incremental fetch
        # sessions) and batches bigger than the budget (must still be returned
        # whole, as Kafka does since KIP-74).
        max_partition_fetch_bytes=16 * 1024,
    )
    conf.update(extra)
    return KafkaConsumer(**conf)


def produce(broker, topic, recs: list[Rec], codec: str, acks) -> list[tuple[int, int]]:
    p = producer(broker, codec, acks)
    try:
        futs = [
            p.send(topic, key=r.key, value=r.value, headers=list(r.headers), partition=r.partition,
                   timestamp_ms=r.timestamp)
            for r in recs
        ]
        p.flush(timeout=40)
        out = []
        for r, f in zip(recs, futs):
            md = f.get(timeout=OP_TIMEOUT)  # raises on delivery error
            assert (md.topic, md.partition) == (topic, r.partition)
            out.append((md.partition, md.offset))
        return out
    finally:
        p.close(timeout=10)


def consume_rows(broker, topic: str, counts: dict[int, int], start: int | None = None) -> dict[int, list[tuple]]:
    c = consumer(broker)
    try:
        tps = [TopicPartition(topic, p) for p in counts]
        c.assign(tps)
        if start is None:
            c.seek_to_beginning(*tps)
        else:
            for tp in tps:
                c.seek(tp, start)
        rows: dict[int, list[tuple]] = {p: [] for p in counts}
        deadline = time.monotonic() + CONSUME_TIMEOUT
        polls = 0
        while any(len(rows[p]) < n for p, n in counts.items()):
            polls += 1
            assert time.monotonic() < deadline, (
                f"timed out consuming {topic}: got { {p: len(v) for p, v in rows.items()} }, want {counts}"
            )
            for tp, msgs in c.poll(timeout_ms=500, max_records=1000).items():
                assert tp.topic == topic
                for m in msgs:
                    rows[tp.partition].append(
                        (m.offset, m.key, m.value, tuple(m.headers), m.timestamp, m.timestamp_type)
                    )
        # Nothing beyond what was expected.
        extra = c.poll(timeout_ms=500)
        assert not any(extra.values()), f"unexpected extra records: {extra}"
        return rows
    finally:
        c.close(autocommit=False, timeout_ms=10000)


def assert_rows_equal(got, want):
    assert sorted(got) == sorted(want)
    for p in want:
        for i, (a, b) in enumerate(zip(got[p], want[p])):
            assert a == b, f"partition {p}, position {i}: got {a!r}\n want {b!r}"
        assert len(got[p]) == len(want[p]), f"partition {p}: got {len(got[p])}, want {len(want[p])}"


def create_topic(admin: KafkaAdminClient, topic: str, partitions: int = PARTITIONS, configs=None):
    admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, topic_configs=configs or {})],
        timeout_ms=10000,
    )


def wait_listed(admin, topic, present: bool, timeout=OP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while (topic in admin.list_topics()) != present:
        assert time.monotonic() < deadline, f"{topic} {'never appeared' if present else 'still listed'}"
        time.sleep(0.2)


def describe_topic_configs(admin, topic) -> dict[str, str]:
    responses = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    assert len(responses) == 1
    (res,) = responses[0].to_object()["resources"]
    assert res["error_code"] == 0, res
    assert res["resource_name"] == topic
    return {e["config_names"]: e["config_value"] for e in res["config_entries"]}


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_admin_create_list_describe(broker, unique_topic):
    topic = unique_topic()
    admin = admin_client(broker)
    try:
        create_topic(admin, topic)
        wait_listed(admin, topic, True)
        (t,) = admin.describe_topics([topic])
        assert t["error_code"] == 0
        assert t["topic"] == topic
        assert sorted(p["partition"] for p in t["partitions"]) == list(range(PARTITIONS))
        cluster = admin.describe_cluster()
        assert len(cluster["brokers"]) == 1
        (b,) = cluster["brokers"]
        assert (b["host"], b["port"]) == (broker.host, broker.port)
        assert cluster["controller_id"] == b["node_id"]
        for p in t["partitions"]:
            assert p["error_code"] == 0
            assert p["leader"] == b["node_id"]
            assert list(p["replicas"]) == [b["node_id"]]

        with pytest.raises(TopicAlreadyExistsError):
            create_topic(admin, topic)
    finally:
        admin.close()


@pytest.mark.parametrize("acks", ["all", 1])
def test_produce_consume_every_codec(broker, unique_topic, acks):
    topic = unique_topic()
    admin = admin_client(broker)
    try:
        create_topic(admin, topic)
        wait_listed(admin, topic, True)
    finally:
        admin.close()
    clock = Clock()
    produced: list[Rec] = []
    for codec in CODECS:
        recs = make_records(codec, range(PARTITIONS), PER_PARTITION, clock)
        base = {p: len(v) for p, v in expected_rows(produced).items()}
        delivered = produce(broker, topic, recs, codec, acks)
        nxt = dict(base)
        for (p, off) in delivered:
            want = nxt.setdefault(p, 0)
            assert off == want, f"{codec}: partition {p} delivery offset {off}, expected {want}"
            nxt[p] = want + 1
        produced += recs

    want = expected_rows(produced)
    counts = {p: len(v) for p, v in want.items()}
    assert_rows_equal(consume_rows(broker, topic, counts), want)

    start = 2 * PER_PARTITION + 5  # inside the snappy section
    got = consume_rows(broker, topic, {p: n - start for p, n in counts.items()}, start=start)
    assert_rows_equal(got, {p: rows[start:] for p, rows in want.items()})

    c = consumer(broker)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert c.end_offsets(tps) == {tp: counts[tp.partition] for tp in tps}
    finally:
        c.close(autocommit=False, timeout_ms=10000)


def test_offsets_for_times(broker, unique_topic):
    topic = unique_topic()
    admin = admin_client(broker)
    try:
        create_topic(admin, topic)
        wait_listed(admin, topic, True)
    finally:
        admin.close()
    clock = Clock()
    recs = make_records("oft", range(PARTITIONS), 20, clock)
    produce(broker, topic, recs, "gzip", "all")
    per_part: dict[int, list[Rec]] = {}
    for r in recs:
        per_part.setdefault(r.partition, []).append(r)

    c = consumer(broker)
    try:
        for p, lst in per_part.items():
            tp = TopicPartition(topic, p)
            cases = [
                (lst[0].timestamp, 0),
                (lst[9].timestamp, 9),
                (lst[9].timestamp + 1, 10),  # consecutive records are 3 ms apart
                (lst[-1].timestamp, len(lst) - 1),
            ]
            for ts, off in cases:
                res = c.offsets_for_times({tp: ts})
                assert res[tp] is not None, (p, ts)
                assert (res[tp].offset, res[tp].timestamp) == (off, lst[off].timestamp), (p, ts)
            assert c.offsets_for_times({tp: lst[-1].timestamp + 1}) == {tp: None}
    finally:
        c.close(autocommit=False, timeout_ms=10000)


def test_describe_and_alter_configs(broker, unique_topic):
    topic = unique_topic()
    admin = admin_client(broker)
    try:
        create_topic(admin, topic, configs={"retention.ms": "172800000"})
        wait_listed(admin, topic, True)
        before = describe_topic_configs(admin, topic)
        assert before.get("retention.ms") == "172800000", before

        new_value = "345600000"  # 4 days, large on purpose
        resp = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": new_value})])
        (res,) = resp.to_object()["resources"]
        assert res["error_code"] == 0, res
        assert describe_topic_configs(admin, topic)["retention.ms"] == new_value

        # Filtered describe returns exactly the asked-for key.
        responses = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": None})]
        )
        (res,) = responses[0].to_object()["resources"]
        assert [(e["config_names"], e["config_value"]) for e in res["config_entries"]] == [("retention.ms", new_value)]
    finally:
        admin.close()


def test_delete_topics(broker, unique_topic):
    topic = unique_topic()
    admin = admin_client(broker)
    try:
        create_topic(admin, topic)
        wait_listed(admin, topic, True)
        produce(broker, topic, make_records("d", range(PARTITIONS), 5, Clock()), "zstd", "all")
        resp = admin.delete_topics([topic], timeout_ms=10000)
        assert [(x["topic"], x["error_code"]) for x in resp.to_object()["topic_error_codes"]] == [(topic, 0)]
        wait_listed(admin, topic, False)
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([topic], timeout_ms=10000)
    finally:
        admin.close()


def test_restart_and_sigkill(broker, unique_topic):
    topic = unique_topic()
    admin = admin_client(broker)
    try:
        create_topic(admin, topic)
        wait_listed(admin, topic, True)
    finally:
        admin.close()
    clock = Clock()
    produced: list[Rec] = []
    for codec, clean in (("lz4", True), ("zstd", False)):
        recs = make_records(codec, range(PARTITIONS), 20, clock)
        produce(broker, topic, recs, codec, "all")
        produced += recs
        broker.restart(clean=clean)
        want = expected_rows(produced)
        assert_rows_equal(consume_rows(broker, topic, {p: len(v) for p, v in want.items()}), want)
