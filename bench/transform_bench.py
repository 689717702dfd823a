#!/usr/bin/env python3
"""Transform benchmarks against the release `sluice`, each with a same-run baseline.

1. map/filter transform vs. the same map/filter done from outside (a confluent-kafka consumer
   + producer in this process, read_committed in, idempotent out) over the same preloaded input;
2. exactly-once vs at-least-once (`processing.guarantee`) for that transform;
3. the issue's word count: input lines per second through both stages.

A transform's time is from deploy until every task's lag is 0 and the output holds what it
must; the broker's CPU time over the same span is read from /proc, so figures are also given per
broker core-second. Usage: bench/transform_bench.py --sluice target/release/sluice [--records N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def admin_call(admin: str, method: str, path: str, body: str | None = None):
    req = urllib.request.Request(f"http://{admin}{path}", method=method,
                                 data=body.encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read()
        return json.loads(text) if text else None


def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-x", "isolation.level": "read_committed"})
    total = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in range(partitions))
    c.close()
    return total


def put(p: Producer, topic: str, value: bytes, partition: int, timestamp: int = 0):
    while True:
        try:
            p.produce(topic, value=value, partition=partition, timestamp=timestamp)
            return
        except BufferError:
            p.poll(0.01)


def preload(bootstrap: str, topic: str, partitions: int, n: int, make):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                  "compression.type": "none", "enable.idempotence": True})
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=make(i), partition=i % partitions)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(120) == 0


def run_transform(bootstrap, admin, pid, spec: str, name: str, done) -> tuple[float, float]:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    admin_call(admin, "POST", "/v1/transforms", spec)
    while True:
        time.sleep(0.05)
        d = admin_call(admin, "GET", f"/v1/transforms/{name}")
        if d["lag"] == 0 and all(t["lag"] == 0 for t in d["tasks"]) and done():
            break
        if time.monotonic() - t0 > 600:
            raise SystemExit(f"{name} did not finish: {d}")
    return time.monotonic() - t0, cpu_seconds(pid) - cpu0


def outside(bootstrap, pid, src, dst, partitions, n) -> tuple[float, float]:
    """The same filter+map from outside: consume read_committed, produce idempotently."""
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"out-{uuid.uuid4().hex[:6]}",
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "fetch.max.bytes": 52428800})
    c.assign([TopicPartition(src, p, 0) for p in range(partitions)])
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                  "enable.idempotence": True})
    seen = 0
    while seen < n:
        for m in c.consume(10000, 0.5):
            if m.error():
                continue
            seen += 1
            v = json.loads(m.value())
            if v["n"] % 2 == 0:
                out = json.dumps({"n": v["n"], "double": v["n"] * 2}).encode()
                while True:
                    try:
                        p.produce(dst, value=out, partition=m.partition())
                        break
                    except BufferError:
                        p.poll(0.01)
        p.poll(0)
    assert p.flush(120) == 0
    c.close()
    return time.monotonic() - t0, cpu_seconds(pid) - cpu0


MAP_FILTER = """name: {name}
input: {{ topic: {src}, format: json }}
steps:
  - filter: '.n % 2 == 0'
  - map: '{{n: .n, double: (.n * 2)}}'
output: {{ topic: {dst}, format: json }}
{extra}"""

WORD_COUNT = """name: {name}
input: {{ topic: {src}, format: text }}
steps:
  - flat_map: 'ascii_downcase | [scan("[a-z]+")] | .[]'
  - key_by: '.'
  - window: {{ tumbling: 10s, grace: 2s }}
  - aggregate: count
output: {{ topic: {dst}, format: json, emit: final }}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=2)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sluice-transform-bench-")
    port, aport = free_port(), free_port()
    bootstrap, admin = f"127.0.0.1:{port}", f"127.0.0.1:{aport}"
    proc = subprocess.Popen([args.sluice, "serve", "--listen", bootstrap, "--admin-listen", admin,
                             "--data-dir", f"{work}/data"], stderr=open(f"{work}/stderr.log", "w"))
    try:
        time.sleep(1.5)
        a = AdminClient({"bootstrap.servers": bootstrap})
        n, parts = args.records, args.partitions
        topics = ["mf-in", "mf-out-eos", "mf-out-alos", "mf-out-outside", "wc-in", "wc-out"]
        for f in a.create_topics([NewTopic(t, parts) for t in topics]).values():
            f.result(30)
        payload = "x" * 60
        preload(bootstrap, "mf-in", parts, n, lambda i: json.dumps({"n": i, "p": payload}).encode())
        rows = []
        t_out, c_out = outside(bootstrap, proc.pid, "mf-in", "mf-out-outside", parts, n)
        rows.append(("map/filter from outside (confluent-kafka consume + produce)", n, t_out, c_out))
        for mode, dst in (("exactly_once", "mf-out-eos"), ("at_least_once", "mf-out-alos")):
            name = f"mf-{mode.replace('_', '-')}"
            spec = MAP_FILTER.format(name=name, src="mf-in", dst=dst,
                                     extra=f"processing.guarantee: {mode}\n")
            t, c = run_transform(bootstrap, admin, proc.pid, spec, name,
                                 lambda: end_offsets(bootstrap, dst, parts) >= n // 2)
            rows.append((f"map/filter transform, {mode}", n, t, c))
        words = "alpha bravo charlie delta echo foxtrot golf hotel".split()
        # Recent event times: time-based retention (7 days) must not delete the input.
        base = int(time.time() * 1000) - 3_600_000
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20})
        for i in range(args.lines):
            line = " ".join(words[(i + k) % len(words)] for k in range(8))
            put(p, "wc-in", line.encode(), i % parts, base + i * 10)
        for q in range(parts):
            put(p, "wc-in", b"--", q, base + args.lines * 10 + 60_000)
        assert p.flush(60) == 0
        t, c = run_transform(bootstrap, admin, proc.pid,
                             WORD_COUNT.format(name="wc", src="wc-in", dst="wc-out"), "wc",
                             lambda: end_offsets(bootstrap, "wc-out", parts) > 0)
        rows.append(("word count (8 words a line), exactly_once", args.lines, t, c))
        print("| run | input records | seconds | records/s | broker CPU s | records per broker CPU s |")
        print("|---|---|---|---|---|---|")
        for what, count, t, c in rows:
            print(f"| {what} | {count:,} | {t:.2f} | {count / t:,.0f} | {c:.2f} | {count / max(c, 1e-9):,.0f} |")
        eos, alos = rows[1][2], rows[2][2]
        print(f"\nmap/filter transform (exactly_once) vs outside: {t_out / eos:.2f}x the records/s; "
              f"exactly_once / at_least_once throughput: {alos / eos:.2f}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
