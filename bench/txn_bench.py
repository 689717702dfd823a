#!/usr/bin/env python3
"""Transactional produce throughput against idempotent produce, same broker, same run.

    .venv/bin/python bench/txn_bench.py --sluice target/release/sluice [--records 2000000]

Starts the given `sluice` on a free loopback port with a scratch data dir, then, with
confluent-kafka (librdkafka) in this process, for each partition count:

  (a) idempotent producer (enable.idempotence, acks=all), no transactions;
  (b) transactional producer, commit_transaction() every --commit-interval-ms (100 ms, like
      Kafka Streams' exactly-once default), then begin the next transaction;

each producing --records records of --record-size bytes to a fresh topic, --repeat times,
alternating (a, b, b, a, a, b, ...). Every run is checked: the log grew by exactly the records
(plus one control marker per partition and commit for (b)), and nothing is left open (last
stable offset == high watermark). Prints a Markdown table (medians; ratio txn / idempotent,
target >= 0.9) and writes it to --out. The broker is stopped with SIGTERM by PID.

Run by scripts/bench-txn.sh, which builds the release binary first.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import confluent_kafka
from confluent_kafka import IsolationLevel, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from benchlib import free_port, proc_cpu_s


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Broker:
    def __init__(self, sluice: str, work: Path):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        data = work / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        self.log_path = work / "bench-txn-broker.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sluice, "serve", "--listen", self.bootstrap, "--admin-listen", "off", "--data-dir", str(data)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                if "ready" in self.log_path.read_text():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"broker not ready within 60 s; see {self.log_path}")

    def cpu(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()


class Bench:
    def __init__(self, broker: Broker, a):
        self.broker, self.a = broker, a
        self.admin = AdminClient({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4"})
        self.payload = bytes((i * 31 + 7) % 251 for i in range(a.record_size))
        self.dr_errors: list[str] = []

    def conf(self) -> dict:
        return {
            "bootstrap.servers": self.broker.bootstrap,
            "broker.address.family": "v4",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.a.linger_ms,
            "compression.type": "none",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.timeout.ms": 60_000,  # <= transaction.timeout.ms (60 s)
            "delivery.report.only.error": True,
            "on_delivery": lambda err, _m: self.dr_errors.append(str(err)),
        }

    def create(self, partitions: int) -> str:
        topic = f"txn-bench-p{partitions}-{uuid.uuid4().hex[:8]}"
        self.admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
        return topic

    def ends(self, topic: str, partitions: int, level: IsolationLevel) -> dict[int, int]:
        fs = self.admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)},
                                     isolation_level=level, request_timeout=30)
        return {tp.partition: f.result(30).offset for tp, f in fs.items()}

    def run(self, mode: str, partitions: int, n: int) -> dict:
        topic = self.create(partitions)
        p = Producer(self.conf() if mode == "idempotent" else {**self.conf(), "transactional.id": f"bench-{uuid.uuid4().hex}"})
        txn = mode == "transactional"
        # Outside the timed section: metadata, connection, producer id (one record, plus its
        # transaction's marker for the transactional producer).
        if txn:
            p.init_transactions(30)
            p.begin_transaction()
        p.produce(topic, self.payload, partition=0)
        if txn:
            p.commit_transaction(30)
        elif p.flush(30):
            raise RuntimeError("warm-up record not delivered")
        interval = self.a.commit_interval_ms / 1000
        payload, produce, poll = self.payload, p.produce, p.poll
        commits, commit_s = 0, []
        self.dr_errors.clear()
        b0, c0 = self.broker.cpu(), self_cpu_s()
        t0 = time.perf_counter()
        if txn:
            p.begin_transaction()
            next_commit = t0 + interval
        for i in range(n):
            while True:
                try:
                    produce(topic, payload, partition=i % partitions)
                    break
                except BufferError:
                    poll(0.001)
            if i & 1023 == 0:
                poll(0)
                if txn and (now := time.perf_counter()) >= next_commit:
                    p.commit_transaction(60)
                    done = time.perf_counter()
                    commit_s.append(done - now)
                    commits += 1
                    p.begin_transaction()
                    next_commit = done + interval
        if txn:
            now = time.perf_counter()
            p.commit_transaction(60)
            commit_s.append(time.perf_counter() - now)
            commits += 1
        else:
            left = p.flush(120)
            if left:
                raise RuntimeError(f"{left} records not delivered")
        elapsed = time.perf_counter() - t0
        broker_cpu, client_cpu = self.broker.cpu() - b0, self_cpu_s() - c0
        if self.dr_errors:
            raise RuntimeError(f"delivery errors: {self.dr_errors[:5]}")
        del p
        # Check what the log holds.
        hw = self.ends(topic, partitions, IsolationLevel.READ_UNCOMMITTED)
        deadline = time.monotonic() + 60
        while (lso := self.ends(topic, partitions, IsolationLevel.READ_COMMITTED)) != hw:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: LSO {lso} != high watermark {hw} 60 s after the last commit")
            time.sleep(0.2)
            hw = self.ends(topic, partitions, IsolationLevel.READ_UNCOMMITTED)
        markers = sum(hw.values()) - n - (2 if txn else 1)  # minus the warm-up record (and marker)
        if not txn and markers != 0:
            raise RuntimeError(f"idempotent run: log holds {sum(hw.values())} records, sent {n}")
        if txn and not 0 < markers <= commits * partitions:
            raise RuntimeError(f"transactional run: {markers} offsets beyond the records for {commits} commits")
        self.admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
        return {
            "msgs_per_s": n / elapsed,
            "mb_per_s": n * self.a.record_size / elapsed / 1e6,
            "elapsed_s": elapsed,
            "commits": commits,
            # Time inside commit_transaction() (flush of the open batches + EndTxn): the producer
            # sends nothing new meanwhile.
            "commit_ms": statistics.median(commit_s) * 1000 if commit_s else 0.0,
            "commit_share": sum(commit_s) / elapsed,
            "broker_cpu_per_m": broker_cpu / (n / 1e6),
            "client_cpu_per_m": client_cpu / (n / 1e6),
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sluice", required=True, help="path of the (release) sluice binary")
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--record-size", type=int, default=100)
    ap.add_argument("--partitions", default="1,3", help="comma-separated partition counts")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--commit-interval-ms", type=int, default=100)
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--work", default="target/bench-txn-work")
    ap.add_argument("--out", default="target/bench-txn-report.md")
    a = ap.parse_args()
    parts_list = [int(x) for x in a.partitions.split(",") if x]
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    broker = Broker(a.sluice, work)
    results: dict[tuple[int, str], list[dict]] = {}
    try:
        bench = Bench(broker, a)
        bench.run("idempotent", 1, min(a.records, 200_000))  # warm-up, not reported
        for parts in parts_list:
            for rep in range(a.repeat):
                order = ("idempotent", "transactional") if rep % 2 == 0 else ("transactional", "idempotent")
                for mode in order:
                    r = bench.run(mode, parts, a.records)
                    results.setdefault((parts, mode), []).append(r)
                    print(f"  p={parts} {mode:<13} run {rep + 1}: {r['msgs_per_s']:>10.0f} msgs/s "
                          f"{r['mb_per_s']:7.1f} MB/s  {r['commits']:4d} commits "
                          f"(median {r['commit_ms']:.1f} ms, {100 * r['commit_share']:.0f}% of the run)  "
                          f"broker {r['broker_cpu_per_m']:.2f} / client {r['client_cpu_per_m']:.2f} CPU s per M",
                          file=sys.stderr, flush=True)
    finally:
        broker.stop()

    lib = confluent_kafka.libversion()[0]
    lines = [
        f"## Transactions: produce throughput, idempotent vs transactional (commit every {a.commit_interval_ms} ms)",
        "",
        f"`bash scripts/bench-txn.sh` (release build; confluent-kafka {confluent_kafka.__version__} / librdkafka {lib} "
        f"in Python, one producer; {a.records} records of {a.record_size} B per run, acks=all, "
        f"linger.ms={a.linger_ms}, no compression; {a.repeat} alternating runs each, medians; broker and client share "
        "the machine).",
        "",
        "| partitions | producer | msgs/s per run | median msgs/s | median MB/s | commits per run | commit_transaction() median ms (share of run) | broker CPU s / M records | client CPU s / M records | txn / idempotent |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = {}
    for parts in parts_list:
        med = {}
        for mode in ("idempotent", "transactional"):
            runs = results[(parts, mode)]
            m = lambda k: statistics.median(r[k] for r in runs)
            med[mode] = m("msgs_per_s")
            ratio = ""
            if mode == "transactional":
                ratios[parts] = med["transactional"] / med["idempotent"]
                ratio = f"**{ratios[parts]:.2f}**"
            commits = f"{statistics.median(r['commits'] for r in runs):.0f}" if mode == "transactional" else "—"
            commit_t = f"{m('commit_ms'):.1f} ({100 * m('commit_share'):.0f}%)" if mode == "transactional" else "—"
            lines.append(
                f"| {parts} | {mode} | {', '.join(format(r['msgs_per_s'], '.0f') for r in runs)} | {m('msgs_per_s'):.0f} | "
                f"{m('mb_per_s'):.1f} | {commits} | {commit_t} | {m('broker_cpu_per_m'):.2f} | {m('client_cpu_per_m'):.2f} | {ratio} |"
            )
    lines.append("")
    verdict = ", ".join(f"{p} partition{'s' if p > 1 else ''}: {r:.2f}" for p, r in ratios.items())
    ok = all(r >= 0.9 for r in ratios.values())
    lines.append(f"Ratio txn / idempotent (target >= 0.9): {verdict} -> {'met' if ok else 'NOT met'}.")
    report = "\n".join(lines) + "\n"
    print(report)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
