"""Broker behaviour beyond plain produce/consume, driven by confluent-kafka and raw sockets:
compaction, retention, DeleteRecords, the data-dir lock, /metrics and /health, and hostile
length prefixes inside a request."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import sluice_bin, wait_until

OP_TIMEOUT = 20.0


def admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker, topic: str, partitions: int = 1, config: dict | None = None):
    a = admin(broker)  # keep the client alive until the future resolves
    fs = a.create_topics([NewTopic(topic, partitions, 1, config=config or {})], operation_timeout=OP_TIMEOUT)
    fs[topic].result(timeout=OP_TIMEOUT)


def produce(broker, topic: str, records: list[tuple[bytes | None, bytes | None]], partition: int = 0, per_batch: int = 1):
    """Produces `per_batch` records per request (flushing in between) so that small
    `segment.bytes` roll many segments."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    errors = []
    for i, (k, v) in enumerate(records):
        p.produce(topic, key=k, value=v, partition=partition, on_delivery=lambda e, m: e and errors.append(e))
        if (i + 1) % per_batch == 0:
            assert p.flush(OP_TIMEOUT) == 0
    assert p.flush(OP_TIMEOUT) == 0
    assert not errors, errors


def consume_all(broker, topic: str, partition: int = 0) -> list[tuple[int, bytes | None, bytes | None]]:
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "unused-manual-assign",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT)
        c.assign([TopicPartition(topic, partition, low)])
        out = []
        deadline = time.monotonic() + OP_TIMEOUT
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    break
                raise AssertionError(m.error())
            out.append((m.offset(), m.key(), m.value()))
        return out
    finally:
        c.close()


def test_compaction_keeps_latest_value_per_key(broker_factory, unique_topic):
    broker = broker_factory(sets={"log.cleaner.backoff.ms": "200"})
    topic = unique_topic()
    create(
        broker,
        topic,
        config={
            "cleanup.policy": "compact",
            "segment.bytes": "1024",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "0",
        },
    )
    records = []
    for round_ in range(20):
        for k in range(5):
            records.append((f"k{k}".encode(), f"v{round_}-{k}".encode()))
    records.append((b"k4", None))  # a tombstone
    records += [(f"tail{i}".encode(), b"x" * 200) for i in range(10)]  # roll the tombstone's segment
    produce(broker, topic, records, per_batch=5)
    # The cleaner may run as soon as the records are in (backoff 200 ms), so what was produced,
    # not a read that races it, says what is latest: one producer, in order, from offset 0.
    latest = {}
    for off, (k, v) in enumerate(records):
        latest[k] = (off, v)

    def compacted():
        got = consume_all(broker, topic)
        return got if len(got) < len(records) // 2 else None

    got = wait_until(compacted, timeout=30, interval=0.5, what="the cleaner to compact")
    assert got[-1][0] == len(records) - 1, "the last record is never cleaned away"
    # Every surviving record is the latest for its key, at its original offset.
    for off, k, v in got:
        assert latest[k] == (off, v), (off, k, v)
    keys = {k for _, k, _ in got}
    for k in range(4):
        assert f"k{k}".encode() in keys
    assert "compacted" in broker.stderr_text()


def test_retention_and_delete_records_advance_log_start(broker_factory, unique_topic):
    broker = broker_factory(sets={"log.retention.check.interval.ms": "200"})
    topic = unique_topic()
    create(broker, topic, config={"segment.bytes": "2048"})
    produce(broker, topic, [(None, b"r" * 300) for _ in range(30)])
    a = admin(broker)
    # DeleteRecords through the admin API.
    fut = a.delete_records([TopicPartition(topic, 0, 10)], operation_timeout=OP_TIMEOUT)
    res = list(fut.values())[0].result(timeout=OP_TIMEOUT)
    assert res.low_watermark == 10
    got = consume_all(broker, topic)
    assert got[0][0] == 10 and got[-1][0] == 29
    # retention.bytes: keep about 4 KiB.
    from confluent_kafka.admin import ConfigResource, ConfigEntry, AlterConfigOpType

    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.bytes", "4096", incremental_operation=AlterConfigOpType.SET)
    ])
    for f in a.incremental_alter_configs([res]).values():
        f.result(timeout=OP_TIMEOUT)

    def advanced():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x"})
        try:
            low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=OP_TIMEOUT)
            return low if low > 10 else None
        finally:
            c.close()

    low = wait_until(advanced, timeout=20, interval=0.3, what="retention.bytes to delete old segments")
    assert 10 < low < 30
    # Survives a crash.
    broker.restart(clean=False)
    got = consume_all(broker, topic)
    assert got[0][0] == low and got[-1][0] == 29


def test_second_broker_on_same_data_dir_is_refused(broker):
    proc = subprocess.run(
        [str(sluice_bin()), "serve", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", str(broker.data_dir)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode != 0
    assert "in use by another sluice" in proc.stderr, proc.stderr
    broker.assert_alive()


def test_metrics_and_health(broker, unique_topic):
    topic = unique_topic()
    create(broker, topic, partitions=2)
    produce(broker, topic, [(b"k", b"v")] * 7, per_batch=7)
    with urllib.request.urlopen(f"http://{broker.admin}/health", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"http://{broker.admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'sluice_requests_total{api="Produce"}' in text
    assert f'sluice_log_end_offset{{partition="0",topic="{topic}"}} 7' in text
    assert "sluice_request_latency_seconds_bucket" in text
    assert "sluice_network_bytes_in_total" in text


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def test_hostile_array_count_does_not_take_the_broker_down(broker):
    # Metadata v1 with a topics array claiming 2^31-1 entries and no bytes behind it: a decoder
    # that reserves the claimed count would abort the process.
    header = struct.pack(">hhih", 3, 1, 42, 4) + b"evil"
    body = header + struct.pack(">i", 0x7FFFFFFF)
    # Produce v3 with a topic_data count of 2^31-1.
    produce_hdr = struct.pack(">hhih", 0, 3, 43, 4) + b"evil" + struct.pack(">hhi", -1, 1, 1000)
    for payload in (body, produce_hdr + struct.pack(">i", 0x7FFFFFFF)):
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
            s.sendall(_frame(payload))
            s.settimeout(5)
            try:
                data = s.recv(64)
            except (ConnectionResetError, socket.timeout):
                data = b""
            assert data == b"", "a malformed request must close the connection"
        broker.assert_alive()
    # And the broker still serves real clients.
    a = admin(broker)
    md = a.list_topics(timeout=OP_TIMEOUT)
    assert md.brokers


def test_create_partitions_describe_cluster_and_too_large(broker, unique_topic):
    from confluent_kafka.admin import NewPartitions

    topic = unique_topic()
    create(broker, topic, partitions=2, config={"max.message.bytes": "2000"})
    a = admin(broker)
    for f in a.create_partitions([NewPartitions(topic, 5)], operation_timeout=OP_TIMEOUT).values():
        f.result(timeout=OP_TIMEOUT)
    md = a.list_topics(topic, timeout=OP_TIMEOUT)
    assert len(md.topics[topic].partitions) == 5
    # Shrinking is refused with INVALID_PARTITIONS.
    with pytest.raises(Exception) as e:
        for f in a.create_partitions([NewPartitions(topic, 3)], operation_timeout=OP_TIMEOUT).values():
            f.result(timeout=OP_TIMEOUT)
    assert "INVALID_PARTITIONS" in str(e.value)
    cluster = a.describe_cluster(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    assert len(cluster.nodes) == 1 and cluster.controller.id == cluster.nodes[0].id
    assert cluster.cluster_id
    # A batch over the topic's max.message.bytes is refused with MESSAGE_TOO_LARGE.
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "compression.type": "none"})
    errors = []
    p.produce(topic, value=b"x" * 5000, partition=4, on_delivery=lambda e, m: errors.append(e))
    p.flush(OP_TIMEOUT)
    assert errors and errors[0] is not None and errors[0].name() == "MSG_SIZE_TOO_LARGE", errors
    # The partition still takes records under the limit.
    produce(broker, topic, [(None, b"y" * 100)], partition=4)
    assert [v for _, _, v in consume_all(broker, topic, 4)] == [b"y" * 100]


def test_a_thousand_partitions_open_and_survive_a_restart(broker, unique_topic):
    topic = unique_topic()
    create(broker, topic, partitions=1000)
    for p in (0, 499, 999):
        produce(broker, topic, [(b"k", f"p{p}".encode())], partition=p)
    broker.restart(clean=True)
    a = admin(broker)
    md = a.list_topics(topic, timeout=OP_TIMEOUT)
    assert len(md.topics[topic].partitions) == 1000
    for p in (0, 499, 999):
        assert [v for _, _, v in consume_all(broker, topic, p)] == [f"p{p}".encode()]


def test_unrecoverable_partition_goes_offline_and_others_serve(broker, unique_topic):
    topic = unique_topic()
    create(broker, topic, partitions=2)
    produce(broker, topic, [(b"k", b"before")], partition=0)
    produce(broker, topic, [(b"k", b"before")], partition=1)
    broker.stop()
    # Something that is not ours in partition 1's directory: the log refuses to open it.
    (broker.data_dir / f"{topic}-1" / "notes.txt").write_text("not a segment")
    broker.start()
    assert "partition is offline" in broker.stderr_text()
    produce(broker, topic, [(b"k", b"after")], partition=0)
    assert [v for _, _, v in consume_all(broker, topic, 0)] == [b"before", b"after"]
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "retries": 0, "message.timeout.ms": 3000})
    errors = []
    p.produce(topic, value=b"lost?", partition=1, on_delivery=lambda e, m: errors.append(e))
    p.flush(OP_TIMEOUT)
    assert errors and errors[0] is not None, "a produce to an offline partition must fail"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{broker.admin}/health", timeout=5)
    assert e.value.code == 503 and f"{topic}-1" in e.value.read().decode()


def test_compacted_topic_refuses_keyless_records_and_compression_type_applies(broker, unique_topic):
    topic = unique_topic()
    create(broker, topic, config={"cleanup.policy": "compact", "compression.type": "zstd"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0, "retries": 0})
    results = []
    p.produce(topic, key=b"k", value=b"kept", partition=0, on_delivery=lambda e, m: results.append(("keyed", e)))
    p.flush(OP_TIMEOUT)
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda e, m: results.append(("keyless", e)))
    p.flush(OP_TIMEOUT)
    assert results[0] == ("keyed", None)
    assert results[1][0] == "keyless" and results[1][1] is not None
    assert results[1][1].name() == "INVALID_RECORD", results[1][1]
    got = consume_all(broker, topic)
    assert [(k, v) for _, k, v in got] == [(b"k", b"kept")]
    from confluent_kafka.admin import ConfigResource

    a = admin(broker)
    res = list(a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values())[0].result(timeout=OP_TIMEOUT)
    assert res["compression.type"].value == "zstd"
