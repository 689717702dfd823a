#!/usr/bin/env python3
"""Nexmark-style benchmarks of Sluice's in-broker transforms: q0, q1, q2 and q5 over preloaded bids.

The specs are bench/nexmark/q0.yaml ... q5.yaml (deployable as they are with
`sluice transform deploy`). This script starts the given `sluice` on free loopback ports with a
temporary data directory, preloads one topic of Nexmark bids (not measured), then deploys each
query in turn and measures it from the deploy until every task has committed all of its input
and nothing moves any more. The broker's CPU time over the same span comes from /proc, so each
query is also given as events per broker CPU-second ("events/s/core"). Each query's committed
output is then read back read_committed and compared with an oracle computed here.

    .venv/bin/python bench/nexmark.py --sluice target/release/sluice \
        [--events 1000000] [--partitions 4] [--queries q0,q1,q2,q5] \
        [--guarantee exactly_once|at_least_once] [--json results.json]

Input: bids generated as Nexmark's generator does (3 auctions and 1 person per 46 bids in the
event-id space, so auction and bidder ids follow Nexmark's; half of the bids go to the current
hot auction, 3/4 to a hot bidder, half to one of 4 hot channels; prices 10^U(0,6) dollars in
cents; `extra` padding to Nexmark's 100-byte average; 10,000 events/s of event time by
default), JSON, round robin over the partitions, record timestamp = `date_time`.

Event time only moves with records (idle partitions do not advance it), so windows of the last
real bids close only when later records arrive. After the real bids come two rounds of "flush"
bids on every partition, 60 s and 120 s later (auction ids from 1e9, `channel: "flush"`):
round 1 closes q5's hopping windows, round 2 closes the windows of round 1, whose results move
the watermark of q5's last stage past the real windows. They are counted in the input and in
the outputs (q0, q1, q2); q5 is checked on the windows of real bids, and the flush windows
that come out are reported apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
import random

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

SPEC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nexmark")
INPUT_TOPIC = "nexmark-bids"
ALL_QUERIES = ("q0", "q1", "q2", "q5")
DESCRIPTIONS = {
    "q0": "q0 passthrough (`map: '.'`)",
    "q1": "q1 currency conversion (price * 0.908)",
    "q2": "q2 selection (auction % 123 == 0)",
    "q5": "q5 hot items (hopping 10 s / 2 s count per auction, then max per window)",
}
Q5_SIZE_MS, Q5_ADVANCE_MS = 10_000, 2_000
FLUSH_AUCTION_BASE = 1_000_000_000
FLUSH_PER_PARTITION = 16
FLUSH_GAP_MS = 60_000


# ---------------------------------------------------------------------------------------------
# Broker plumbing (as in transform_bench.py)

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def admin_call(admin: str, method: str, path: str, body: str | None = None):
    req = urllib.request.Request(f"http://{admin}{path}", method=method,
                                 data=body.encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read()
        return json.loads(text) if text else None


def wait_for_broker(bootstrap: str, admin: str, proc: subprocess.Popen, log: str):
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"sluice exited with {proc.returncode}; see {log}")
        try:
            admin_call(admin, "GET", "/v1/transforms")
            a = AdminClient({"bootstrap.servers": bootstrap})
            a.list_topics(timeout=5)
            del a
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "nexmark-offsets",
                  "isolation.level": "read_committed"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in range(partitions)]
    finally:
        c.close()


def read_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 600.0):
    """Every committed record of `topic`, as {partition: [value bytes, ...]} in offset order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "nexmark-verify",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 100,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 8388608})
    out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    done: set[int] = set()
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while len(done) < partitions:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out reading {topic}")
            for m in c.consume(num_messages=10000, timeout=0.3):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        done.add(m.partition())
                    continue
                done.discard(m.partition())
                out[m.partition()].append(m.value())
    finally:
        c.close()
    return out


# ---------------------------------------------------------------------------------------------
# Nexmark bid generator (after Nexmark's BidGenerator / GeneratorConfig defaults)

PERSON_PROPORTION, AUCTION_PROPORTION, BID_PROPORTION = 1, 3, 46
TOTAL_PROPORTION = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION
FIRST_AUCTION_ID, FIRST_PERSON_ID = 1000, 1000
HOT_AUCTION_RATIO = HOT_BIDDER_RATIO = 100   # the hot id is the first of each block of 100
HOT_AUCTIONS_PROB, HOT_BIDDERS_PROB, HOT_CHANNELS_PROB = 2, 4, 2   # 1 - 1/x of bids are hot
NUM_IN_FLIGHT_AUCTIONS, NUM_ACTIVE_PEOPLE = 100, 1000
AUCTION_ID_LEAD = PERSON_ID_LEAD = 10
HOT_CHANNELS = ("Google", "Facebook", "Baidu", "Apple")
HOT_URLS = tuple(f"https://www.nexmark.com/{c.lower()}/item.htm?query=1" for c in HOT_CHANNELS)
CHANNELS_NUMBER = 10_000
AVG_BID_BYTES = 100
LOWER = "abcdefghijklmnopqrstuvwxyz"


class BidGenerator:
    """Bids only, over Nexmark's event-id space (ids of person and auction events are skipped,
    so auction and bidder ids grow as in Nexmark's mixed stream). Deterministic given the seed."""

    def __init__(self, seed: int, base_ms: int, events_per_s: int):
        self.rnd = random.Random(seed)
        self.base_ms = base_ms
        self.us_per_event = 1_000_000 / events_per_s
        self.event_id = 0
        self.channels: dict[int, tuple[str, str]] = {}
        pool = random.Random(seed + 1)
        self.pool = "".join(pool.choices(LOWER, k=1 << 16))

    def _channel(self, n: int) -> tuple[str, str]:
        c = self.channels.get(n)
        if c is None:
            r = random.Random(n)
            url = "https://www.nexmark.com/" + "/".join(
                "".join(r.choices(LOWER + "_", k=5)) for _ in range(3)) + "/item.htm?query=1"
            if r.randrange(10) > 0:
                rev = int(f"{n:032b}"[::-1], 2)
                rev = rev - (1 << 32) if rev >= 1 << 31 else rev   # Integer.reverse, signed
                url += f"&channel_id={abs(rev)}"
            c = self.channels[n] = (f"channel-{n}", url)
        return c

    def time_of(self, event_id: int) -> int:
        return self.base_ms + int(event_id * self.us_per_event) // 1000

    def next_bid(self) -> dict:
        n = self.event_id
        if n % TOTAL_PROPORTION < PERSON_PROPORTION + AUCTION_PROPORTION:
            n += PERSON_PROPORTION + AUCTION_PROPORTION - n % TOTAL_PROPORTION
        self.event_id = n + 1
        rnd = self.rnd
        epoch = n // TOTAL_PROPORTION
        last_auction = epoch * AUCTION_PROPORTION + AUCTION_PROPORTION - 1   # lastBase0AuctionId
        last_person = epoch * PERSON_PROPORTION + PERSON_PROPORTION - 1      # lastBase0PersonId
        if rnd.randrange(HOT_AUCTIONS_PROB) > 0:
            auction = last_auction // HOT_AUCTION_RATIO * HOT_AUCTION_RATIO
        else:
            lo = max(last_auction - NUM_IN_FLIGHT_AUCTIONS, 0)
            auction = lo + rnd.randrange(last_auction - lo + 1 + AUCTION_ID_LEAD)
        if rnd.randrange(HOT_BIDDERS_PROB) > 0:
            bidder = last_person // HOT_BIDDER_RATIO * HOT_BIDDER_RATIO + 1
        else:
            people = last_person + 1
            active = min(people, NUM_ACTIVE_PEOPLE)
            bidder = people - active + rnd.randrange(active + PERSON_ID_LEAD)
        price = round(10.0 ** (rnd.random() * 6.0) * 100.0)
        if rnd.randrange(HOT_CHANNELS_PROB) > 0:
            i = rnd.randrange(len(HOT_CHANNELS))
            channel, url = HOT_CHANNELS[i], HOT_URLS[i]
        else:
            channel, url = self._channel(rnd.randrange(CHANNELS_NUMBER))
        # nextExtra(currentSize = 4 longs, avg 100 bytes): 68 +- 20%.
        want = AVG_BID_BYTES - 32
        delta = round(want * 0.2)
        size = want - delta + rnd.randrange(2 * delta + 1)
        at = rnd.randrange(len(self.pool) - size)
        return {"auction": auction + FIRST_AUCTION_ID, "bidder": bidder + FIRST_PERSON_ID,
                "price": price, "channel": channel, "url": url, "date_time": self.time_of(n),
                "extra": self.pool[at:at + size]}


def flush_bids(partitions: int, round_no: int, ts: int) -> list[tuple[int, dict]]:
    out = []
    for p in range(partitions):
        for j in range(FLUSH_PER_PARTITION):
            a = FLUSH_AUCTION_BASE + round_no * 1_000_000 + p * FLUSH_PER_PARTITION + j
            out.append((p, {"auction": a, "bidder": 0, "price": 0, "channel": "flush", "url": "",
                            "date_time": ts, "extra": ""}))
    return out


# ---------------------------------------------------------------------------------------------
# Oracle

def normalize(v):
    """Numbers as Python compares them: integral floats become ints (jq may print 12 or 12.0)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    return v


def canon(v) -> bytes:
    return json.dumps(normalize(v), sort_keys=True, separators=(",", ":")).encode()


def q1_of(bid: dict) -> dict:
    return {**bid, "price": bid["price"] * 908 / 1000}


def q2_of(bid: dict) -> dict | None:
    return {"auction": bid["auction"], "price": bid["price"]} if bid["auction"] % 123 == 0 else None


def hopping_starts(ts: int):
    start = ts - ts % Q5_ADVANCE_MS
    while start + Q5_SIZE_MS > ts:
        yield start
        start -= Q5_ADVANCE_MS


class Oracle:
    """What each query must output: per partition, a running hash and a count of the records
    (stateless queries keep the input's partition and order); for q5, bids per (window, auction)."""

    def __init__(self, partitions: int, queries):
        self.queries = queries
        self.hashes = {q: [hashlib.blake2b(digest_size=16) for _ in range(partitions)]
                       for q in ("q0", "q1", "q2")}
        self.counts = {q: 0 for q in ("q0", "q1", "q2")}
        self.windows: dict[tuple[int, int], int] = defaultdict(int)
        self.real_windows: set[int] = set()

    def add(self, p: int, bid: dict, real: bool):
        if "q0" in self.queries:
            self.hashes["q0"][p].update(canon(bid) + b"\n")
        if "q1" in self.queries:
            self.hashes["q1"][p].update(canon(q1_of(bid)) + b"\n")
        self.counts["q0"] += 1
        self.counts["q1"] += 1
        q2 = q2_of(bid)
        if q2 is not None:
            self.counts["q2"] += 1
            if "q2" in self.queries:
                self.hashes["q2"][p].update(canon(q2) + b"\n")
        if "q5" in self.queries:
            auction, ts = bid["auction"], bid["date_time"]
            for s in hopping_starts(ts):
                self.windows[(s, auction)] += 1
                if real:
                    self.real_windows.add(s)

    def q5_expected(self) -> tuple[dict[int, dict], int, int]:
        """{window_start: expected record} for the windows of real bids, the number of such
        windows whose maximum is shared by several auctions, and the (window, auction) counts
        of those windows (q5's intermediate records, flush windows left out)."""
        best: dict[int, tuple[int, int]] = {}
        top_count: dict[int, int] = defaultdict(int)
        for (s, auction), n in self.windows.items():
            if s not in self.real_windows:
                continue
            if (n, auction) > best.get(s, (-1, -1)):
                best[s] = (n, auction)
        for (s, auction), n in self.windows.items():
            if s in best and n == best[s][0]:
                top_count[s] += 1
        expected = {s: {"window_start": s, "window_end": s + Q5_SIZE_MS, "auction": a, "bids": n}
                    for s, (n, a) in best.items()}
        ties = sum(1 for s in best if top_count[s] > 1)
        pairs = sum(1 for (s, _a) in self.windows if s in self.real_windows)
        return expected, ties, pairs


# ---------------------------------------------------------------------------------------------
# Load

def put(p: Producer, topic: str, value: bytes, partition: int, timestamp: int):
    while True:
        try:
            p.produce(topic, value=value, partition=partition, timestamp=timestamp)
            return
        except BufferError:
            p.poll(0.01)


def load(bootstrap: str, pid: int, args, oracle: Oracle) -> dict:
    """Generates and produces the bids; only producing is timed (generation is Python work)."""
    parts = args.partitions
    span_s = args.events * TOTAL_PROPORTION / BID_PROPORTION / args.event_rate + 3 * FLUSH_GAP_MS / 1000
    # Recent event times, on a 10 s boundary: time-based retention (7 days) keeps the input.
    base = (int(time.time() * 1000) - int(span_s * 1000) - 3_600_000) // 10_000 * 10_000
    gen = BidGenerator(args.seed, base, args.event_rate)
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1 << 20,
                     "queue.buffering.max.messages": 1_000_000,
                     "queue.buffering.max.kbytes": 1 << 20, "compression.type": "none",
                     "enable.idempotence": True})
    produce_s, gen_s, nbytes, count = 0.0, 0.0, 0, 0
    cpu0 = cpu_seconds(pid)
    chunk = 50_000
    last_ts = base
    done = 0
    while done < args.events:
        t0 = time.monotonic()
        rows = []
        for i in range(done, min(done + chunk, args.events)):
            bid = gen.next_bid()
            p = i % parts
            oracle.add(p, bid, True)
            rows.append((p, json.dumps(bid, separators=(",", ":")).encode(), bid["date_time"]))
            last_ts = bid["date_time"]
        done += len(rows)
        t1 = time.monotonic()
        for p, v, ts in rows:
            put(prod, INPUT_TOPIC, v, p, ts)
            nbytes += len(v)
        prod.poll(0)
        produce_s += time.monotonic() - t1
        gen_s += t1 - t0
        count += len(rows)
    flush_times = [last_ts + FLUSH_GAP_MS, last_ts + 2 * FLUSH_GAP_MS]
    t1 = time.monotonic()
    for r, ts in enumerate(flush_times, start=1):
        for p, bid in flush_bids(parts, r, ts):
            oracle.add(p, bid, False)
            v = json.dumps(bid, separators=(",", ":")).encode()
            put(prod, INPUT_TOPIC, v, p, ts)
            nbytes += len(v)
            count += 1
    left = prod.flush(300)
    produce_s += time.monotonic() - t1
    del prod
    if left:
        raise SystemExit(f"{left} bids not delivered")
    return {"records": count, "real_bids": args.events, "flush_bids": count - args.events,
            "bytes": nbytes, "produce_seconds": produce_s, "generate_seconds": gen_s,
            "broker_cpu_seconds": cpu_seconds(pid) - cpu0,
            "event_time_span_s": (last_ts - base) / 1000, "base_ms": base}


# ---------------------------------------------------------------------------------------------
# Queries

def spec_for(query: str, guarantee: str) -> tuple[str, str, str]:
    """(yaml, transform name, output topic) of bench/nexmark/<query>.yaml, with the guarantee."""
    with open(os.path.join(SPEC_DIR, f"{query}.yaml")) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^processing\.guarantee:.*$", f"processing.guarantee: {guarantee}", text)
    if n == 0:
        text += f"processing.guarantee: {guarantee}\n"
    name = re.search(r"(?m)^name:\s*(\S+)", text).group(1)
    output = re.search(r"(?m)^output:.*\btopic:\s*([\w.-]+)", text).group(1)
    return text, name, output


def stage_stats(d: dict) -> list[dict]:
    stats = []
    for s in range(d["stages"]):
        ts = [t for t in d["tasks"] if t["stage"] == s]
        stats.append({"stage": s, "tasks": len(ts), "input_topic": ts[0]["input_topic"] if ts else None,
                      "records_in": sum(t["records_in"] for t in ts),
                      "records_out": sum(t["records_out"] for t in ts)})
    return stats


def run_query(sluice: str, admin: str, pid: int, query: str, guarantee: str,
              input_ends: list[int], min_out: int, timeout: float) -> dict:
    yaml, name, output = spec_for(query, guarantee)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    r = subprocess.run([sluice, "transform", "deploy", "-", "--admin", f"http://{admin}"],
                       input=yaml, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"{query}: deploy refused:\n{r.stderr}{r.stdout}")
    # Done: every stage-0 task has committed its partition's end, every task's lag is 0, the
    # last stage has written at least `min_out` records, and nothing changes for 0.5 s. The
    # time and CPU are those of the first poll of that quiet span.
    candidate = None
    while True:
        time.sleep(0.02)
        now, cpu = time.monotonic(), cpu_seconds(pid)
        d = admin_call(admin, "GET", f"/v1/transforms/{name}")
        errors = [t["error"] for t in d["tasks"] if t.get("error")]
        if d["state"] == "failed" or any(e.startswith("stopped") for e in errors):
            raise SystemExit(f"{query} failed: {json.dumps(d, indent=1)}")
        last = d["stages"] - 1
        ok = (len(d["tasks"]) > 0
              and all(t["lag"] == 0 for t in d["tasks"])
              and all(t["committed_offset"] == input_ends[t["partition"]]
                      for t in d["tasks"] if t["stage"] == 0)
              and sum(t["records_out"] for t in d["tasks"] if t["stage"] == last) >= min_out)
        sig = (d["records_in"], d["records_out"], sum(t["records_in"] for t in d["tasks"]),
               sum(t["committed_offset"] for t in d["tasks"]))
        if ok and candidate is not None and candidate[2] == sig:
            if now - candidate[0] >= 0.5:
                break
        elif ok:
            candidate = (now, cpu, sig)
        else:
            candidate = None
        if now - t0 > timeout:
            raise SystemExit(f"{query} did not finish in {timeout:.0f} s: {json.dumps(d, indent=1)}")
    wall, cpu = candidate[0] - t0, candidate[1] - cpu0
    stages = stage_stats(d)
    res = {"query": query, "name": name, "output_topic": output, "stages": d["stages"],
           "wall_seconds": wall, "broker_cpu_seconds": cpu,
           "output_records": stages[-1]["records_out"], "commits": d["commits"],
           "restarts": sum(t["restarts"] for t in d["tasks"]), "stage_stats": stages,
           "errors": sorted({e for e in errors})}
    admin_call(admin, "DELETE", f"/v1/transforms/{name}")
    return res


def verify(bootstrap: str, query: str, topic: str, partitions: int, oracle: Oracle,
           q5: tuple | None) -> dict:
    got = read_topic(bootstrap, topic, partitions)
    n = sum(len(v) for v in got.values())
    sample = next((json.loads(v[0]) for v in got.values() if v), None)
    if query in ("q0", "q1", "q2"):
        bad = []
        for p, values in got.items():
            h = hashlib.blake2b(digest_size=16)
            for v in values:
                h.update(canon(json.loads(v)) + b"\n")
            if h.digest() != oracle.hashes[query][p].digest():
                bad.append(p)
        want = oracle.counts[query]
        ok = n == want and not bad
        return {"ok": ok, "records": n, "expected": want, "partitions_differing": bad,
                "sample": sample}
    expected, ties, _ = q5
    seen: dict[int, list[dict]] = defaultdict(list)
    flush_windows, unexpected = 0, []
    for values in got.values():
        for v in values:
            rec = json.loads(v)
            if rec["window_start"] in expected:
                seen[rec["window_start"]].append(rec)
            elif rec.get("auction", 0) >= FLUSH_AUCTION_BASE:
                flush_windows += 1   # a window holding only flush bids
            else:
                unexpected.append(rec)
    missing = [s for s in expected if s not in seen]
    dup = [s for s, rs in seen.items() if len(rs) > 1]
    wrong = [(expected[s], rs[0]) for s, rs in seen.items() if normalize(rs[0]) != expected[s]]
    ok = not missing and not dup and not wrong and not unexpected
    return {"ok": ok, "records": n, "expected": len(expected), "windows_with_ties": ties,
            "flush_windows": flush_windows, "unexpected": unexpected[:5],
            "missing": missing[:5], "duplicated": dup[:5],
            "wrong": wrong[:5], "sample": min((r[0] for r in seen.values()),
                                              key=lambda r: r["window_start"], default=None)}


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sluice", required=True, help="the sluice binary to run")
    ap.add_argument("--events", type=int, default=1_000_000, help="bids to preload (default 1M)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--queries", default=",".join(ALL_QUERIES))
    ap.add_argument("--guarantee", default="exactly_once", choices=("exactly_once", "at_least_once"))
    ap.add_argument("--event-rate", type=int, default=10_000,
                    help="Nexmark events (bids, auctions, people) per second of event time")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-verify", action="store_true", help="skip reading the outputs back")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per query")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    for q in queries:
        if q not in ALL_QUERIES:
            raise SystemExit(f"unknown query {q}; known: {', '.join(ALL_QUERIES)}")
    sluice = os.path.abspath(args.sluice)

    work = tempfile.mkdtemp(prefix="sluice-nexmark-")
    port, aport = free_port(), free_port()
    bootstrap, admin = f"127.0.0.1:{port}", f"127.0.0.1:{aport}"
    log = f"{work}/stderr.log"
    proc = subprocess.Popen([sluice, "serve", "--listen", bootstrap, "--admin-listen", admin,
                             "--data-dir", f"{work}/data"], stderr=open(log, "w"))
    failed = False
    try:
        wait_for_broker(bootstrap, admin, proc, log)
        a = AdminClient({"bootstrap.servers": bootstrap})
        for f in a.create_topics([NewTopic(INPUT_TOPIC, args.partitions)]).values():
            f.result(30)
        del a   # librdkafka handles left open log reconnect errors once the broker stops
        oracle = Oracle(args.partitions, queries)
        print(f"loading {args.events:,} bids into {args.partitions} partitions ...", file=sys.stderr)
        loaded = load(bootstrap, proc.pid, args, oracle)
        input_ends = end_offsets(bootstrap, INPUT_TOPIC, args.partitions)
        assert sum(input_ends) == loaded["records"], (input_ends, loaded["records"])
        n = loaded["records"]
        print(f"loaded {n:,} records ({loaded['bytes'] / n:.0f} B avg) in "
              f"{loaded['produce_seconds']:.2f} s of producing: {n / loaded['produce_seconds']:,.0f} "
              f"records/s; event time spans {loaded['event_time_span_s']:.0f} s", file=sys.stderr)
        q5 = oracle.q5_expected() if "q5" in queries else None
        results = []
        for q in queries:
            min_out = {"q0": oracle.counts["q0"], "q1": oracle.counts["q1"],
                       "q2": oracle.counts["q2"], "q5": len(q5[0]) if q5 else 0}[q]
            print(f"running {q} ...", file=sys.stderr)
            r = run_query(sluice, admin, proc.pid, q, args.guarantee, input_ends, min_out,
                          args.timeout)
            r["input_records"] = n
            r["events_per_s"] = n / r["wall_seconds"]
            r["events_per_cpu_s"] = n / max(r["broker_cpu_seconds"], 1e-9)
            if q == "q5":
                r["intermediate_records"] = q5[2]
            if not args.no_verify:
                r["verify"] = verify(bootstrap, q, r["output_topic"], args.partitions, oracle, q5)
                if not r["verify"]["ok"]:
                    failed = True
                    print(f"{q}: OUTPUT DIFFERS FROM THE ORACLE: {r['verify']}", file=sys.stderr)
            print(f"  {q}: {r['wall_seconds']:.2f} s, {r['broker_cpu_seconds']:.2f} broker CPU s, "
                  f"{r['output_records']:,} out"
                  + (f", verified: {r['verify']['ok']}" if "verify" in r else ""), file=sys.stderr)
            results.append(r)

        print(f"\nNexmark-style queries: {n:,} input records ({args.events:,} bids + "
              f"{loaded['flush_bids']} flush bids), {args.partitions} partitions, "
              f"{args.guarantee}, `{os.path.relpath(args.sluice)}`\n")
        print("| query | stages | input records | seconds | events/s | broker CPU s "
              "| events/s/core (per broker CPU s) | output records | output checked |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            check = "—"
            if "verify" in r:
                v = r["verify"]
                check = ("exact" if v["ok"] else "**DIFFERS**")
                if r["query"] == "q5":
                    check += f" ({v['expected']} windows, {v['windows_with_ties']} with ties)"
            out = f"{r['output_records']:,}"
            if r["query"] == "q5" and "verify" in r:
                v = r["verify"]
                out += (f" ({v['records'] - v['flush_windows']:,} windows of bids, "
                        f"{v['flush_windows']} of flush bids; from {r['intermediate_records']:,} "
                        f"per-auction window counts)")
            elif r["query"] == "q5":
                out += f" (from {r['intermediate_records']:,} per-auction window counts)"
            print(f"| {DESCRIPTIONS[r['query']]} | {r['stages']} | {r['input_records']:,} "
                  f"| {r['wall_seconds']:.2f} | {r['events_per_s']:,.0f} | {r['broker_cpu_seconds']:.2f} "
                  f"| {r['events_per_cpu_s']:,.0f} | {out} | {check} |")
        print(f"\nLoad (not part of the figures above): {n:,} records, {loaded['bytes'] / 1e6:.1f} MB, "
              f"produced at {n / loaded['produce_seconds']:,.0f} records/s by one confluent-kafka "
              f"producer (linger.ms 50, batch.size 1 MiB; Python-bound), broker CPU "
              f"{loaded['broker_cpu_seconds']:.2f} s for the load and generation span.")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"events": args.events, "partitions": args.partitions,
                           "guarantee": args.guarantee, "event_rate": args.event_rate,
                           "seed": args.seed, "sluice": args.sluice, "load": loaded,
                           "queries": results}, f, indent=1)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if args.keep:
            print(f"data kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
