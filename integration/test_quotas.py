"""Client quotas end to end: quotas set with `sluice quota set` (AlterClientQuotas), read back
with kafka-python's own DescribeClientQuotas request and with `sluice quota list`, and enforced
on librdkafka (confluent-kafka) producers and consumers by client id.

Neither confluent-kafka nor kafka-python has an AlterClientQuotas call, so quotas are set with
the CLI. Kafka's quota window is 11 one-second samples and a rate is taken over at least 10 s,
so a new client may burst about 10 s worth of its quota before it is throttled; the sizes
below are chosen so that the throttled part dominates.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka.protocol.admin import DescribeClientQuotasRequest

from conftest import sluice_bin

RATE = 100 * 1024  # bytes a second
VALUE = b"q" * 1024
MATCH_EXACT = 0


def cli(broker, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        [str(sluice_bin()), *args, "--bootstrap", broker.bootstrap],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"sluice {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def describe_with_kafka_python(broker, client_id: str):
    """DescribeClientQuotas v0 as kafka-python encodes and decodes it."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="it-quota-describer")
    try:
        request = DescribeClientQuotasRequest[0](
            components=[("client-id", MATCH_EXACT, client_id)], strict=False
        )
        response = admin.send_request(request)
    finally:
        admin.close()
    assert response.error_code == 0, response
    return [
        ([tuple(e) for e in entity], {name: value for name, value in values})
        for entity, values in response.entries
    ]


def produce(broker, topic: str, client_id: str, count: int) -> tuple[float, list[int]]:
    """Produces `count` 1 KiB records as fast as librdkafka goes; returns the seconds it took
    and the throttle times librdkafka reported."""
    throttles: list[int] = []
    errors: list[str] = []
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "client.id": client_id,
            "acks": 1,
            "linger.ms": 5,
            # Many small requests, so the throttle between them shows.
            "batch.size": 64 * 1024,
            "throttle_cb": lambda e: throttles.append(e.throttle_time),
            "error_cb": lambda e: errors.append(str(e)),
        }
    )
    # Connect and learn the partition first, so only producing is timed.
    p.list_topics(topic, timeout=30)

    def delivered(err, _msg):
        if err is not None:
            errors.append(str(err))

    started = time.monotonic()
    for _ in range(count):
        while True:
            try:
                p.produce(topic, VALUE, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(120)
    elapsed = time.monotonic() - started
    assert left == 0, f"{left} records not delivered"
    assert not errors, errors
    return elapsed, throttles


def consume(broker, topic: str, client_id: str, count: int) -> tuple[float, list[int]]:
    throttles: list[int] = []
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "client.id": client_id,
            "group.id": f"it-quota-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "throttle_cb": lambda e: throttles.append(e.throttle_time),
        }
    )
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        started = time.monotonic()
        got = 0
        deadline = started + 120
        while got < count:
            assert time.monotonic() < deadline, f"consumed only {got} of {count}"
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got += 1
        return time.monotonic() - started, throttles
    finally:
        c.close()


def test_producer_quota_holds_its_client_id_near_the_rate(broker, unique_topic):
    topic = unique_topic()
    cli(broker, "topic", "create", topic, "--partitions", "1")
    cli(broker, "quota", "set", "--client-id", "it-slow-producer", "--producer-byte-rate", str(RATE))

    # Described by a third-party decoder and by the CLI.
    assert describe_with_kafka_python(broker, "it-slow-producer") == [
        ([("client-id", "it-slow-producer")], {"producer_byte_rate": float(RATE)})
    ]
    listed = json.loads(cli(broker, "quota", "list", "--client-id", "it-slow-producer", "--json"))
    assert listed == [
        {"entity": {"client-id": "it-slow-producer"}, "quotas": {"producer_byte_rate": float(RATE)}}
    ]
    assert describe_with_kafka_python(broker, "it-fast-producer") == []

    # 2 MiB at 100 KiB/s: about 1 MiB goes through in the first burst (10 s of quota), the
    # rest at the quota, about 10 s.
    count = 2048
    slow, slow_throttles = produce(broker, topic, "it-slow-producer", count)
    fast, fast_throttles = produce(broker, topic, "it-fast-producer", count)
    assert slow >= 7.0, f"a 100 KiB/s producer sent 2 MiB in {slow:.1f} s"
    assert slow <= 40.0, f"throttled far below its quota: {slow:.1f} s"
    assert slow_throttles and max(slow_throttles) > 0, slow_throttles
    assert fast < slow / 2, f"unthrottled {fast:.1f} s vs throttled {slow:.1f} s"
    assert not any(fast_throttles), fast_throttles

    # Removed: the same client id is no longer held back.
    out = cli(broker, "quota", "remove", "--client-id", "it-slow-producer")
    assert "producer_byte_rate" in out
    assert json.loads(cli(broker, "quota", "list", "--json")) == []
    again, again_throttles = produce(broker, topic, "it-slow-producer", 1024)
    assert again < slow / 2, f"{again:.1f} s after the quota was removed"
    assert not any(again_throttles), again_throttles


def test_consumer_quota_holds_its_client_id_near_the_rate(broker, unique_topic):
    topic = unique_topic()
    cli(broker, "topic", "create", topic, "--partitions", "1")
    count = 1536  # 1.5 MiB
    produce(broker, topic, "it-loader", count)
    cli(broker, "quota", "set", "--client-id", "it-slow-consumer", "--consumer-byte-rate", str(RATE))
    assert describe_with_kafka_python(broker, "it-slow-consumer") == [
        ([("client-id", "it-slow-consumer")], {"consumer_byte_rate": float(RATE)})
    ]

    # A fetch is capped to 10 s of quota (1 MiB); the rest waits until the rate allows it.
    slow, slow_throttles = consume(broker, topic, "it-slow-consumer", count)
    fast, fast_throttles = consume(broker, topic, "it-fast-consumer", count)
    assert slow >= 3.0, f"a 100 KiB/s consumer fetched 1.5 MiB in {slow:.1f} s"
    assert slow_throttles and max(slow_throttles) > 0, slow_throttles
    assert fast < slow / 2, f"unthrottled {fast:.1f} s vs throttled {slow:.1f} s"
    assert not any(fast_throttles), fast_throttles
