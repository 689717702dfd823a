"""Idempotent producers against the real broker, killed with SIGKILL mid-stream.

Each record's value is "<partition>:<n>" with n counting up per partition. Whatever the
producer retried across the crashes, every partition must afterwards hold exactly
0, 1, 2, ... in order: no record lost (every send was acknowledged), none written twice.
Every wait is bounded.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3
OP_TIMEOUT = 20.0
CONSUME_TIMEOUT = 60.0


def common_conf(broker) -> dict:
    return {
        "bootstrap.servers": broker.bootstrap,
        "broker.address.family": "v4",
        "socket.timeout.ms": 10000,
        "api.version.request.timeout.ms": 10000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    }


def create_topic(broker, topic: str, partitions: int = PARTITIONS):
    admin = AdminClient(common_conf(broker))
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                             operation_timeout=10, request_timeout=15)
    assert fs[topic].result(timeout=OP_TIMEOUT) is None


def read_values(broker, topic: str, partitions: int = PARTITIONS) -> dict[int, list[str]]:
    """Every value of every partition, from the start to the high watermark (bounded)."""
    c = Consumer({**common_conf(broker), "group.id": f"idem-check-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        ends = {}
        for p in range(partitions):
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT)
            ends[p] = high
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        values: dict[int, list[str]] = {p: [] for p in range(partitions)}
        offsets: dict[int, int] = {p: 0 for p in range(partitions)}
        deadline = time.monotonic() + CONSUME_TIMEOUT
        while any(offsets[p] < ends[p] for p in range(partitions)):
            assert time.monotonic() < deadline, f"timed out reading {topic}: {offsets} of {ends}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    continue  # partition EOF
                values[m.partition()].append(m.value().decode())
                offsets[m.partition()] = m.offset() + 1
        return values
    finally:
        c.close()


def assert_exactly_once_in_order(values: dict[int, list[str]], sent: dict[int, int]):
    for p, n in sent.items():
        want = [f"{p}:{i}" for i in range(n)]
        got = values[p]
        if got != want:
            dups = len(got) - len(set(got))
            missing = len(set(want) - set(got))
            first_bad = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
            raise AssertionError(
                f"partition {p}: {len(got)} records, want {n}; {dups} duplicates, {missing} missing, "
                f"first difference at {first_bad}: {got[first_bad - 2:first_bad + 3] if first_bad else ''}"
            )


def test_confluent_idempotent_producer_survives_sigkills(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker, topic)
    total = 3000
    kills = 3
    errors: list = []
    delivered = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[0] += 1

    p = Producer({
        **common_conf(broker),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 25,
        "max.in.flight.requests.per.connection": 5,
        "message.timeout.ms": 90000,
        "request.timeout.ms": 5000,
        "retry.backoff.ms": 50,
    })
    sent = {q: 0 for q in range(PARTITIONS)}
    kill_at = {total * (k + 1) // (kills + 1) for k in range(kills)}
    killed = 0
    for i in range(total):
        q = i % PARTITIONS
        while True:
            try:
                p.produce(topic, value=f"{q}:{sent[q]}".encode(), partition=q, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        sent[q] += 1
        p.poll(0)
        if i in kill_at:
            # Some acknowledged, some in flight, then SIGKILL: retries must not duplicate.
            deadline = time.monotonic() + 30
            while delivered[0] < i // 2:
                assert time.monotonic() < deadline, "no acknowledgements before the planned kill"
                p.poll(0.05)
            broker.restart(clean=False)
            killed += 1
    remaining = p.flush(90)
    assert remaining == 0, f"{remaining} records neither delivered nor failed"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert killed == kills
    assert delivered[0] == total
    assert_exactly_once_in_order(read_values(broker, topic), sent)


def test_kafka_python_idempotent_producer_survives_a_sigkill(broker, unique_topic):
    kafka = pytest.importorskip("kafka")
    topic = unique_topic()
    create_topic(broker, topic)
    producer = kafka.KafkaProducer(
        bootstrap_servers=[broker.bootstrap],
        client_id="sluice-it-idempotent",
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        batch_size=4096,
        request_timeout_ms=5000,
        delivery_timeout_ms=60000,
        retry_backoff_ms=100,
        reconnect_backoff_max_ms=500,
        max_block_ms=30000,
        api_version_auto_timeout_ms=10000,
    )
    try:
        sent = {q: 0 for q in range(PARTITIONS)}
        futures = []
        for round_ in range(2):
            for i in range(600):
                q = i % PARTITIONS
                futures.append(producer.send(topic, value=f"{q}:{sent[q]}".encode(), partition=q))
                sent[q] += 1
            if round_ == 0:
                # Let part of the round be acknowledged, then crash with the rest in flight.
                futures[len(futures) // 2].get(timeout=OP_TIMEOUT)
                broker.restart(clean=False)
        producer.flush(timeout=90)
        for f in futures:
            f.get(timeout=OP_TIMEOUT)
    finally:
        producer.close(timeout=10)
    assert_exactly_once_in_order(read_values(broker, topic), sent)
