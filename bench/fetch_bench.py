#!/usr/bin/env python3
"""Fetch-path benchmark: broker CPU per million consumed records, and the cost of idle
long-polling consumers, for two `sluice` builds measured alternately in the same run.

    python3 bench/fetch_bench.py --sluice target/release/sluice \
        --baseline /path/to/older/release/sluice [--repeats 3] [--idle 1000]

Rows (each the median of --repeats, builds alternating so machine noise hits both alike):
  1. consume: 1,000,000 records of 100 B are produced to a 1-partition topic, then read from the
     beginning with `sluice bench consume`, --passes times; the broker's CPU seconds
     (utime+stime from /proc) over the consumes, per million records.
  2. idle: --idle connections each long-poll (Fetch v4, max_wait 500 ms, min_bytes 1) its own
     empty partition while `sluice bench produce` writes --idle-records records of 100 B to
     another topic; the broker's CPU over the produce, divided by the same produce's CPU with no
     idle consumers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import free_port, proc_cpu_s


class Broker:
    """One `sluice serve` on a free loopback port with its own data dir; stopped by PID."""

    def __init__(self, sluice: str, root: Path):
        self.sluice = sluice
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(dir=root))
        self.log = open(self.dir / "broker.log", "w")
        self.proc = subprocess.Popen(
            [sluice, "serve", "--listen", self.bootstrap, "--admin-listen", "off",
             "--data-dir", str(self.dir / "data")],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("broker did not start")

    def cpu(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def client(self, *args: str) -> dict:
        out = subprocess.run([self.sluice, *args, "--bootstrap", self.bootstrap],
                             check=True, capture_output=True, text=True, timeout=600).stdout
        return json.loads(out) if "--json" in args else {}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def consume_cpu_per_m(sluice: str, root: Path, records: int, passes: int) -> float:
    """Broker CPU per million records over `passes` consumes of the whole topic (/proc counts
    CPU in 10 ms ticks: one pass of 1M records is only a few ticks)."""
    b = Broker(sluice, root)
    try:
        b.client("topic", "create", "perf", "--partitions", "1")
        b.client("bench", "produce", "--topic", "perf", "--records", str(records),
                 "--record-size", "100", "--acks", "1", "--json")
        before = b.cpu()
        for _ in range(passes):
            got = b.client("bench", "consume", "--topic", "perf", "--json")
            if got.get("records") != records:
                raise RuntimeError(f"consumed {got} of {records}")
        spent = b.cpu() - before
        return spent / (passes * records / 1e6)
    finally:
        b.stop()


def fetch_v4(correlation: int, topic: str, partition: int) -> bytes:
    """A Fetch v4 request (header v1) for one partition at offset 0, long-polling 500 ms."""
    t = topic.encode()
    client = b"idle"
    body = struct.pack(">hhih", 1, 4, correlation, len(client)) + client
    body += struct.pack(">iiiib", -1, 500, 1, 1 << 20, 0)
    body += struct.pack(">ih", 1, len(t)) + t
    body += struct.pack(">iiqi", 1, partition, 0, 1 << 20)
    return struct.pack(">i", len(body)) + body


async def idle_consumer(port: int, partition: int, stop: asyncio.Event, counts: list[int]):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            w.write(fetch_v4(n, "idle", partition))
            await w.drain()
            size = struct.unpack(">i", await r.readexactly(4))[0]
            await r.readexactly(size)
            counts[0] += 1
    finally:
        w.close()


def run_idle(port: int, idle: int, ready: threading.Event, stop_flag: threading.Event, counts):
    async def main():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(idle_consumer(port, p, stop, counts)) for p in range(idle)]
        await asyncio.sleep(1.5)  # every connection open and long-polling
        ready.set()
        while not stop_flag.is_set():
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())


def produce_cpu(sluice: str, root: Path, records: int, idle: int) -> tuple[float, int]:
    """Broker CPU over one produce run, with `idle` long-polling consumers (0: none)."""
    b = Broker(sluice, root)
    try:
        b.client("topic", "create", "busy", "--partitions", "1")
        b.client("topic", "create", "idle", "--partitions", str(max(idle, 1)))
        ready, stop, counts = threading.Event(), threading.Event(), [0]
        th = None
        if idle:
            th = threading.Thread(target=run_idle, args=(b.port, idle, ready, stop, counts))
            th.start()
            if not ready.wait(60):
                raise RuntimeError("idle consumers did not start")
        before = b.cpu()
        b.client("bench", "produce", "--topic", "busy", "--records", str(records),
                 "--record-size", "100", "--acks", "1", "--json")
        spent = b.cpu() - before
        stop.set()
        if th:
            th.join(30)
        return spent, counts[0]
    finally:
        b.stop()


def idle_cpu(sluice: str, root: Path, idle: int, seconds: float) -> tuple[float, int]:
    """Broker CPU over `seconds` of `idle` long-polling consumers and nothing else."""
    b = Broker(sluice, root)
    try:
        b.client("topic", "create", "idle", "--partitions", str(max(idle, 1)))
        ready, stop, counts = threading.Event(), threading.Event(), [0]
        th = threading.Thread(target=run_idle, args=(b.port, idle, ready, stop, counts))
        th.start()
        if not ready.wait(60):
            raise RuntimeError("idle consumers did not start")
        before, polls = b.cpu(), counts[0]
        time.sleep(seconds)
        spent, polls = b.cpu() - before, counts[0] - polls
        stop.set()
        th.join(30)
        return spent, polls
    finally:
        b.stop()


def idle_only(a, builds) -> int:
    """--idle-only: the builds alternate, each serving the idle consumers alone."""
    root = Path(tempfile.mkdtemp(prefix="sluice-idle-bench-"))
    res: dict[str, list] = {n: [] for n, _ in builds}
    try:
        for i in range(a.repeats):
            for name, binary in (builds if i % 2 == 0 else builds[::-1]):
                spent, polls = idle_cpu(binary, root, a.idle, a.idle_only)
                res[name].append(spent)
                print(f"[{name} run {i + 1}] {spent:.2f} s CPU for {polls} idle polls",
                      file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    lines = [f"| build | broker CPU s over {a.idle_only:g} s of {a.idle} idle long-polls (median; runs) |",
             "|---|---|"]
    for name, _ in builds:
        lines.append(f"| {name} | {med(res[name]):.2f} ({', '.join(f'{x:.2f}' for x in res[name])}) |")
    if a.baseline:
        lines.append(f"\nthis build / baseline: **{med(res['this build']) / med(res['baseline']):.2f}**")
    print("\n".join(lines))
    return 0


def produce_run(sluice: str, root: Path, records: int, acks: str) -> tuple[float, float]:
    """One produce of `records` records of 100 B into a fresh broker: (records/s the client
    saw, broker CPU seconds per million records)."""
    b = Broker(sluice, root)
    try:
        b.client("topic", "create", "busy", "--partitions", "1")
        before = b.cpu()
        out = b.client("bench", "produce", "--topic", "busy", "--records", str(records),
                       "--record-size", "100", "--acks", acks, "--json")
        spent = b.cpu() - before
        rate = out["records_per_sec"]
        return rate, spent / (records / 1e6)
    finally:
        b.stop()


def produce_only(a, builds) -> int:
    """--produce-only: the builds alternate, each taking the same produce runs."""
    root = Path(tempfile.mkdtemp(prefix="sluice-produce-bench-"))
    rows = [(acks, name) for acks in ("1", "all") for name, _ in builds]
    res: dict[tuple, list] = {r: [] for r in rows}
    try:
        for i in range(a.repeats):
            for name, binary in (builds if i % 2 == 0 else builds[::-1]):
                for acks in ("1", "all"):
                    rate, cpu = produce_run(binary, root, a.produce_only, acks)
                    res[(acks, name)].append((rate, cpu))
                    print(f"[{name} run {i + 1} acks={acks}] {rate:,.0f} records/s, "
                          f"{cpu:.3f} broker CPU s/M", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    lines = [f"| acks | build | records/s (median) | broker CPU s per M records (median) |",
             "|---|---|---|---|"]
    for acks, name in rows:
        r = res[(acks, name)]
        lines.append(f"| {acks} | {name} | {med([x[0] for x in r]):,.0f} | {med([x[1] for x in r]):.3f} |")
    print("\n".join(lines))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--baseline", help="an older sluice build to compare with, same run")
    ap.add_argument("--records", type=int, default=1_000_000, help="records consumed per pass")
    ap.add_argument("--passes", type=int, default=10, help="consumes of the topic per measurement")
    ap.add_argument("--idle-records", type=int, default=5_000_000,
                    help="records the producer writes while the idle consumers poll")
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="also write the Markdown table here")
    ap.add_argument("--produce-only", type=int, metavar="RECORDS",
                    help="only compare produce runs of RECORDS records of 100 B (acks 1 and all)")
    ap.add_argument("--idle-only", type=float, metavar="SECONDS",
                    help="only measure the broker's CPU over SECONDS of idle long polls")
    a = ap.parse_args()
    builds = [("this build", a.sluice)] + ([("baseline", a.baseline)] if a.baseline else [])
    if a.idle_only:
        return idle_only(a, builds)
    if a.produce_only:
        return produce_only(a, builds)
    root = Path(tempfile.mkdtemp(prefix="sluice-fetch-bench-"))
    res: dict[str, dict[str, list]] = {n: {"consume": [], "quiet": [], "busy": [], "polls": []} for n, _ in builds}
    try:
        for i in range(a.repeats):
            for name, binary in (builds if i % 2 == 0 else builds[::-1]):
                r = res[name]
                r["consume"].append(consume_cpu_per_m(binary, root, a.records, a.passes))
                r["quiet"].append(produce_cpu(binary, root, a.idle_records, 0)[0])
                spent, polls = produce_cpu(binary, root, a.idle_records, a.idle)
                r["busy"].append(spent)
                r["polls"].append(polls)
                print(f"[{name} run {i + 1}] consume {r['consume'][-1]:.3f} CPU s/M; produce CPU "
                      f"{r['quiet'][-1]:.2f} s alone, {spent:.2f} s with {a.idle} idle consumers "
                      f"({polls} polls)", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    lines = [
        f"| build | broker CPU s per M records consumed | produce CPU alone (s) | with {a.idle} idle long-polls (s) | ratio | idle polls answered |",
        "|---|---|---|---|---|---|",
    ]
    for name, _ in builds:
        r = res[name]
        ratio = med(r["busy"]) / med(r["quiet"]) if med(r["quiet"]) > 0 else float("inf")
        lines.append(f"| {name} | {med(r['consume']):.3f} ({', '.join(f'{x:.3f}' for x in r['consume'])}) "
                     f"| {med(r['quiet']):.2f} | {med(r['busy']):.2f} | {ratio:.2f} | {int(med(r['polls']))} |")
    if a.baseline:
        c = med(res["this build"]["consume"]) / med(res["baseline"]["consume"])
        lines.append(f"\nconsume CPU per record, this build / baseline: **{c:.2f}**")
    report = "\n".join(lines)
    print(report)
    if a.out:
        Path(a.out).write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
