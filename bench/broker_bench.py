#!/usr/bin/env python3
"""End-to-end broker benchmark: the release `sluice` against librdkafka's rdkafka_performance
and Sluice's own load generator (`sluice bench`), with the machine's baselines measured in the
same run. Prints a Markdown report (and writes it to --out).

    python3 bench/broker_bench.py --sluice target/release/sluice \
        --rdkafka-performance <librdkafka>/examples/rdkafka_performance --lib-dir <librdkafka>/src

Run by scripts/bench-broker.sh, which builds everything first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import free_port, proc_cpu_s


def proc_mem_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def run_child(cmd: list[str], env: dict | None = None, timeout: float = 600) -> tuple[str, float]:
    """Runs a client, returning (stdout+stderr, the client's CPU seconds)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    # wait4 was done by communicate; use resource usage of children delta instead.
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}:\n{out[-3000:]}")
    return out, 0.0


class ChildCpu:
    """CPU seconds of reaped children between enter and exit."""

    def __enter__(self):
        r = os.times()
        self.start = r.children_user + r.children_system
        return self

    def __exit__(self, *a):
        r = os.times()
        self.seconds = r.children_user + r.children_system - self.start


class Broker:
    def __init__(self, sluice: str, data_dir: Path):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        self.log = open(data_dir.parent / "bench-broker.log", "w")
        self.proc = subprocess.Popen(
            [sluice, "serve", "--listen", self.bootstrap, "--admin-listen", "off", "--data-dir", str(data_dir)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("broker did not start")

    def cpu(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


def rdkafka_produce(rp, env, bootstrap, topic, size, count, acks, extra=()) -> dict:
    out, _ = run_child(
        [rp, "-P", "-t", topic, "-s", str(size), "-c", str(count), "-a", str(acks), "-b", bootstrap, "-u", *extra], env=env
    )
    rows = [l for l in out.splitlines() if l.startswith("|") and re.match(r"\|\s+\d", l)]
    cols = [c.strip() for c in rows[-1].strip("|").split("|")]
    # elapsed | msgs | bytes | rtt | dr | dr_m/s | dr_MB/s | dr_err | tx_err | outq | offset
    if int(cols[7]) != 0 or int(cols[4]) != count:
        raise RuntimeError(f"delivery errors: {rows[-1]}")
    return {"elapsed_ms": int(cols[0]), "msgs_per_s": int(cols[5]), "mb_per_s": float(cols[6])}


def rdkafka_consume(rp, env, bootstrap, topic, count) -> dict:
    out, _ = run_child([rp, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-c", str(count), "-b", bootstrap, "-u"], env=env)
    rows = [l for l in out.splitlines() if l.startswith("|") and re.match(r"\|\s+\d", l)]
    cols = [c.strip() for c in rows[-1].strip("|").split("|")]
    # elapsed | msgs | bytes | rtt | m/s | MB/s | rx_err | offset
    if int(cols[1]) < count:
        raise RuntimeError(f"consumed {cols[1]} of {count}")
    return {"elapsed_ms": int(cols[0]), "msgs_per_s": int(cols[4]), "mb_per_s": float(cols[5])}


def sluice_json(sluice, *args) -> dict:
    out, _ = run_child([sluice, *args, "--json"])
    return json.loads(out.strip().splitlines()[-1])


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--rdkafka-performance", required=True)
    ap.add_argument("--lib-dir", required=True)
    ap.add_argument("--work", default="target/bench-work")
    ap.add_argument("--out", default="target/bench-report.md")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LD_LIBRARY_PATH=a.lib_dir)
    rp, sl = a.rdkafka_performance, a.sluice
    report = []
    say = lambda s="": (print(s, flush=True), report.append(s))

    # Baselines on the same disk, in the same run.
    base = [sluice_json(sl, "bench", "baseline", "--dir", str(work), "--mib", "1024") for _ in range(a.repeat)]
    say("## Baselines (same run)")
    say()
    say("| what | median |")
    say("|---|---|")
    say(f"| loopback TCP, 1 MiB writes | {median_of(base, 'loopback_tcp_mb_per_sec'):.0f} MB/s |")
    say(f"| sequential write() to the data disk | {median_of(base, 'disk_write_mb_per_sec'):.0f} MB/s |")
    say(f"| write() + one fdatasync | {median_of(base, 'disk_write_fdatasync_mb_per_sec'):.0f} MB/s |")
    say()

    broker = Broker(sl, work / "data")
    try:
        time.sleep(0.5)
        idle_rss = proc_mem_kib(broker.proc.pid, "VmRSS")

        # The anchor: rdkafka_performance -P -s 100 -c 1000000 -a 1, one partition, defaults.
        run_child([sl, "topic", "create", "anchor", "-p", "1", "-b", broker.bootstrap])
        prods, cons, ratios = [], [], []
        for _ in range(a.repeat):
            b0 = broker.cpu()
            with ChildCpu() as c:
                prods.append(rdkafka_produce(rp, env, broker.bootstrap, "anchor", 100, 1_000_000, 1))
            ratios.append((broker.cpu() - b0) / max(c.seconds, 1e-9))
        for _ in range(a.repeat):
            cons.append(rdkafka_consume(rp, env, broker.bootstrap, "anchor", 1_000_000))
        say("## Anchor: `rdkafka_performance -P -s 100 -c 1000000 -a 1`, one partition")
        say()
        say("| metric | runs | median |")
        say("|---|---|---|")
        say(f"| produce msgs/s | {', '.join(str(p['msgs_per_s']) for p in prods)} | {median_of(prods, 'msgs_per_s'):.0f} |")
        say(f"| consume msgs/s (`-C -o beginning`) | {', '.join(str(p['msgs_per_s']) for p in cons)} | {median_of(cons, 'msgs_per_s'):.0f} |")
        say(f"| broker CPU / client CPU (produce) | {', '.join(f'{r:.3f}' for r in ratios)} | {statistics.median(ratios):.3f} |")
        say()

        # The matrix.
        say(f"## Matrix ({a.records} records per produce run; rdkafka_performance with `-X linger.ms=5`)")
        say()
        say("| partitions | record | acks | produce msgs/s | produce MB/s | broker CPU s / M records | client CPU s / M records | consume msgs/s | consume MB/s | consume tool | p50 / p99 ms at half peak |")
        say("|---|---|---|---|---|---|---|---|---|---|---|")
        for parts in (1, 16):
            for size in (100, 1024):
                for acks in (1, -1):
                    n = a.records if size == 100 else a.records // 2
                    topic = f"m-p{parts}-s{size}-a{'all' if acks == -1 else acks}"
                    run_child([sl, "topic", "create", topic, "-p", str(parts), "-b", broker.bootstrap])
                    b0 = broker.cpu()
                    with ChildCpu() as c:
                        p = rdkafka_produce(rp, env, broker.bootstrap, topic, size, n, acks, ("-X", "linger.ms=5"))
                    bcpu = (broker.cpu() - b0) / (n / 1e6)
                    ccpu = c.seconds / (n / 1e6)
                    if parts == 1:
                        cr = rdkafka_consume(rp, env, broker.bootstrap, topic, n)
                        cons_rate, cons_mb, tool = cr["msgs_per_s"], cr["mb_per_s"], "rdkafka_performance"
                    else:
                        cr = sluice_json(sl, "bench", "consume", "-t", topic, "-n", str(n), "-b", broker.bootstrap)
                        cons_rate, cons_mb, tool = cr["records_per_sec"], cr["mb_per_sec"], "sluice bench"
                    half = max(1000, p["msgs_per_s"] // 2)
                    lat_n = min(half * 3, 2_000_000)
                    lt = sluice_json(
                        sl, "bench", "produce", "-t", topic + "-lat", "-p", str(parts), "-n", str(lat_n), "-s", str(size),
                        "--acks", "all" if acks == -1 else "1", "--rate", str(half), "--batch-size", "100", "--concurrency", "8",
                        "-b", broker.bootstrap,
                    )
                    lat = lt["latency_ms"]
                    say(
                        f"| {parts} | {size} B | {'all' if acks == -1 else acks} | {p['msgs_per_s']} | {p['mb_per_s']:.1f} | "
                        f"{bcpu:.3f} | {ccpu:.3f} | {cons_rate:.0f} | {cons_mb:.1f} | {tool} | {lat['p50']:.2f} / {lat['p99']:.2f} (at {half}/s) |"
                    )
        peak_rss = proc_mem_kib(broker.proc.pid, "VmHWM")

        # 1,000 partitions.
        t0 = time.monotonic()
        run_child([sl, "topic", "create", "thousand", "-p", "1000", "-b", broker.bootstrap])
        create_s = time.monotonic() - t0
        rss_1000 = proc_mem_kib(broker.proc.pid, "VmRSS")
        say()
        say("## Memory and partitions")
        say()
        say(f"- idle RSS after start: {idle_rss / 1024:.1f} MiB")
        say(f"- peak RSS (VmHWM) over the whole matrix: {peak_rss / 1024:.1f} MiB")
        say(f"- creating a 1,000-partition topic: {create_s:.1f} s; RSS afterwards {rss_1000 / 1024:.1f} MiB")
    finally:
        broker.stop()
    t0 = time.monotonic()
    # Restart on the same data dir: how long 1,000+ partitions take to open after a clean stop.
    port = free_port()
    log = open(work / "bench-broker-restart.log", "w")
    proc = subprocess.Popen([sl, "serve", "--listen", f"127.0.0.1:{port}", "--admin-listen", "off", "--data-dir", str(work / "data")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    # The listener is bound before the logs are opened; "sluice ready" is logged after.
    while time.monotonic() < deadline and "sluice ready" not in (work / "bench-broker-restart.log").read_text():
        time.sleep(0.02)
    open_s = time.monotonic() - t0
    rss = proc_mem_kib(proc.pid, "VmRSS")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    say(f"- restart with those 1,000+ partitions (clean shutdown): ready in {open_s:.1f} s, RSS {rss / 1024:.1f} MiB")
    Path(a.out).write_text("\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
