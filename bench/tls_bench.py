#!/usr/bin/env python3
"""Produce and consume throughput over TLS (SSL and SASL_SSL listeners) as a ratio to
plaintext, against one `sluice` in the same run.

The broker gets three listeners (PLAINTEXT, SSL, SASL_SSL with SCRAM-SHA-256) and a throw-away
CA made here (trustme). Each round produces `--records` records of `--size` bytes with
confluent-kafka (librdkafka: acks=all, idempotent, lz4 off, linger 5 ms, 1 MiB batches) through
each listener in turn into its own topic, then consumes them back; the order of the listeners
rotates between rounds. Medians over `--rounds` rounds; ratios are TLS / plaintext.

    .venv/bin/python bench/tls_bench.py --sluice target/release/sluice [--records 200000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid

import trustme
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sluice exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("sluice did not start")


def produce(conf: dict, topic: str, records: int, value: bytes) -> float:
    p = Producer({**conf, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                  "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 20})
    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                p.produce(topic, value=value, partition=i % 2)
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    return time.perf_counter() - start


def consume(conf: dict, topic: str, records: int) -> float:
    c = Consumer({**conf, "group.id": f"b-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False,
                  "fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 8 << 20})
    c.assign([TopicPartition(topic, p, 0) for p in range(2)])
    got = 0
    start = time.perf_counter()
    while got < records:
        for m in c.consume(num_messages=10000, timeout=1.0):
            if not m.error():
                got += 1
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="sluice-tls-bench-")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, keystore = os.path.join(work, "ca.pem"), os.path.join(work, "server.pem")
    ca.cert_pem.write_to_path(ca_pem)
    server.private_key_and_cert_chain_pem.write_to_path(keystore)
    data = os.path.join(work, "data")
    ports = {"PLAINTEXT": free_port(), "SSL": free_port(), "SASL_SSL": free_port()}
    subprocess.run([args.sluice, "user", "create", "bench", "--password", "bench-secret",
                    "--mechanism", "SCRAM-SHA-256", "--data-dir", data], check=True,
                   capture_output=True)
    cmd = [args.sluice, "serve", "--data-dir", data, "--admin-listen", "off",
           "--set", "listeners=" + ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
           "--set", f"ssl.keystore.location={keystore}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "log"), "w"))
    try:
        for p in ports.values():
            wait_port(p, proc)
        confs = {
            "PLAINTEXT": {"bootstrap.servers": f"127.0.0.1:{ports['PLAINTEXT']}"},
            "SSL": {"bootstrap.servers": f"127.0.0.1:{ports['SSL']}",
                    "security.protocol": "SSL", "ssl.ca.location": ca_pem},
            "SASL_SSL": {"bootstrap.servers": f"127.0.0.1:{ports['SASL_SSL']}",
                         "security.protocol": "SASL_SSL", "ssl.ca.location": ca_pem,
                         "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "bench",
                         "sasl.password": "bench-secret"},
        }
        admin = AdminClient(confs["PLAINTEXT"])
        value = os.urandom(args.size)
        results = {n: {"produce": [], "consume": []} for n in confs}
        names = list(confs)
        for r in range(args.rounds):
            order = names[r % 3:] + names[:r % 3]
            for name in order:
                topic = f"tls-bench-{name.lower()}-{r}"
                admin.create_topics([NewTopic(topic, 2)])[topic].result(30)
                results[name]["produce"].append(produce(confs[name], topic, args.records, value))
                results[name]["consume"].append(consume(confs[name], topic, args.records))
                print(f"round {r} {name}: produce {results[name]['produce'][-1]:.2f} s, "
                      f"consume {results[name]['consume'][-1]:.2f} s", flush=True)
        mb = args.records * args.size / 1e6
        print(f"\n{args.records:,} records of {args.size} B ({mb:.0f} MB) per run, 2 partitions, "
              f"median of {args.rounds} rounds\n")
        print("| listener | produce MB/s | consume MB/s | produce vs PLAINTEXT | consume vs PLAINTEXT |")
        print("|---|---|---|---|---|")
        base = {k: mb / statistics.median(results["PLAINTEXT"][k]) for k in ("produce", "consume")}
        for name in names:
            rate = {k: mb / statistics.median(results[name][k]) for k in ("produce", "consume")}
            print(f"| {name} | {rate['produce']:.1f} | {rate['consume']:.1f} | "
                  f"{rate['produce'] / base['produce']:.2f} | {rate['consume'] / base['consume']:.2f} |")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
