"""The `sluice` CLI's client commands against the real broker, cross-checked with kcat."""

from __future__ import annotations

import json
import subprocess

from conftest import sluice_bin


def cli(broker, *args: str, input: str | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(
        [str(sluice_bin()), *args, "--bootstrap", broker.bootstrap],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"sluice {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def test_topic_produce_consume_describe_alter_delete(broker, unique_topic, kcat):
    topic = unique_topic()
    cli(broker, "topic", "create", topic, "--partitions", "3", "--config", "retention.ms=3600000")
    assert topic in cli(broker, "topic", "list")
    lines = "".join(f"key{i}:value{i}\n" for i in range(30))
    cli(broker, "produce", topic, "--key-separator", ":", "--header", "src=cli", "--acks", "all", "--compression", "zstd", input=lines)
    out = cli(broker, "consume", topic, "--from", "beginning", "--exit", "--format", "%k=%v %h")
    got = sorted(out.splitlines())
    assert got == sorted(f"key{i}=value{i} src=cli" for i in range(30)), out
    # kcat sees the same records, keyed records on the partitions Kafka's partitioner picks.
    k = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%k %p\n"],
        capture_output=True, text=True, timeout=60,
    )
    placed = dict(line.split() for line in k.stdout.splitlines())
    assert len(placed) == 30
    check = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-P", "-t", topic, "-K:", "-X", "partitioner=murmur2_random"],
        input="key0:again\n", capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stderr
    again = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%k %s %p\n"],
        capture_output=True, text=True, timeout=60,
    )
    part_of_again = [l.split()[2] for l in again.stdout.splitlines() if l.split()[1] == "again"]
    assert part_of_again == [placed["key0"]], "CLI and kcat's murmur2 partitioner must agree"
    desc = json.loads(cli(broker, "topic", "describe", topic, "--json"))
    text = json.dumps(desc)
    assert "retention.ms" in text and "3600000" in text
    cli(broker, "topic", "alter-config", topic, "--set", "retention.ms=7200000")
    assert "7200000" in cli(broker, "topic", "describe", topic)
    cli(broker, "topic", "delete", topic)
    assert topic not in cli(broker, "topic", "list")


def test_bench_produce_and_consume(broker, unique_topic):
    topic = unique_topic()
    out = cli(broker, "bench", "produce", "--topic", topic, "--partitions", "2", "--records", "20000", "--record-size", "100", "--acks", "1", "--json")
    r = json.loads(out.strip().splitlines()[-1])
    assert r["records"] == 20000, r
    out = cli(broker, "bench", "consume", "--topic", topic, "--records", "20000", "--json")
    r = json.loads(out.strip().splitlines()[-1])
    assert r["records"] == 20000, r
