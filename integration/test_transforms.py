"""In-broker transforms end to end: `sluice transform deploy` of the issue's word count, fed by
confluent-kafka, read back with read_committed consumers, while the broker is SIGKILLed and
restarted. The windowed counts must equal an oracle computed here, exactly: no gap, no
duplicate. Reading the same topics read_uncommitted is the negative control: it sees the
output of transactions the crashes aborted.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import conftest
from conftest import sluice_bin, wait_until

WORD_COUNT = """\
name: {name}
input: {{ topic: {input}, format: text }}        # text | json | bytes; event time = record timestamp,
                                              # or `time: <expression>` on a json field
steps:
  - flat_map: 'ascii_downcase | [scan("[a-z]+")] | .[]'
  - key_by: '.'
  - window: {{ tumbling: 10s, grace: 2s }}      # tumbling | hopping {{size, advance}} | session {{gap}}
  - aggregate: count                          # count | sum | min | max | avg: '<expr>'
output: {{ topic: {output}, format: json, emit: final }}   # final (on window close) | changes
"""

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango").split()
# Recent event times (an hour ago, on a minute): time-based retention (7 days) keeps the input.
BASE_TS = int(time.time() * 1000) // 60_000 * 60_000 - 3_600_000
WINDOW_MS = 10_000


def cli(broker, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(sluice_bin()), *args], capture_output=True, text=True, timeout=60,
                          check=check)


def admin_url(broker) -> str:
    return f"http://{broker.admin}"


def create_topic(broker, name: str, partitions: int, config: dict | None = None):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(name, partitions, config=config or {})])[name].result(30)


def corpus(lines_per_partition: int, partitions: int, seed: int):
    """(partition, timestamp, line) in produce order: per partition, timestamps grow by a
    random 0-900 ms step, so windows fill from every partition."""
    rng = random.Random(seed)
    out = []
    for p in range(partitions):
        ts = BASE_TS
        for _ in range(lines_per_partition):
            ts += rng.randrange(0, 900)
            words = [rng.choice(WORDS).upper() if rng.random() < 0.2 else rng.choice(WORDS)
                     for _ in range(rng.randrange(1, 8))]
            out.append((p, ts, " ".join(words) + rng.choice(["", ".", "!", " 42"])))
    return out


def oracle(rows) -> Counter:
    """(word, window_start) -> count, for every line of the corpus."""
    counts: Counter = Counter()
    for _p, ts, line in rows:
        for w in re.findall("[a-z]+", line.lower()):
            counts[(w, ts - ts % WINDOW_MS)] += 1
    return counts


def produce(broker, topic: str, rows, partitions: int, end_ts: int, spread_s: float = 0.0):
    """Produces the corpus (idempotent: broker restarts leave no duplicate), spread over
    `spread_s` seconds so that a transform is busy for that long."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                  "message.timeout.ms": 300000})
    chunks = 50
    step = max(1, len(rows) // chunks)
    for i, (part, ts, line) in enumerate(rows):
        p.produce(topic, value=line.encode(), partition=part, timestamp=ts)
        if spread_s and i % step == step - 1:
            p.poll(0)
            time.sleep(spread_s / chunks)
    # One line without words far in the future per partition: every real window closes.
    for part in range(partitions):
        p.produce(topic, value=b"-- 0 --", partition=part, timestamp=end_ts)
    assert p.flush(60) == 0


def read_all(broker, topic: str, partitions: int, isolation: str, timeout: float = 60.0):
    """Every record from the beginning to the end of each partition, as seen with `isolation`."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "isolation.level": isolation, "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 100})
    out, done = [], set()
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while len(done) < partitions:
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for m in c.consume(num_messages=1000, timeout=0.3):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        done.add(m.partition())
                    continue
                done.discard(m.partition())
                out.append((m.key(), m.value()))
    finally:
        c.close()
    return out


def windowed_counts(records) -> Counter:
    """(word, window_start) -> how many times each emitted count was seen, keyed with value."""
    got: Counter = Counter()
    for key, value in records:
        v = json.loads(value)
        assert key.decode() == v["key"], (key, v)
        assert v["window_end"] - v["window_start"] == WINDOW_MS, v
        got[(v["key"], v["window_start"], v["value"])] += 1
    return got


def describe(broker, name: str) -> dict:
    r = cli(broker, "transform", "describe", name, "--json", "--admin", admin_url(broker))
    return json.loads(r.stdout)


def run_word_count_under_kills(broker, unique_topic, guarantee: str, kills_wanted: int = 5):
    """Deploys the word count, feeds the corpus over ~12 s while SIGKILLing the broker
    `kills_wanted` times at random moments, waits for the transform to catch up, and returns
    (what read_committed shows, what the oracle wants)."""
    partitions, name = 3, f"wc-{uuid.uuid4().hex[:6]}"
    src, dst = unique_topic("lines"), unique_topic("word-counts")
    create_topic(broker, src, partitions)
    rows = corpus(lines_per_partition=1500, partitions=partitions, seed=7)
    end_ts = max(ts for _p, ts, _l in rows) + 10 * WINDOW_MS
    want = oracle(rows)
    spec = broker.workdir / f"{name}.yaml"
    text = WORD_COUNT.format(name=name, input=src, output=dst)
    if guarantee != "exactly_once":
        text += f"processing.guarantee: {guarantee}\ncommit.interval.ms: 1000\n"
    spec.write_text(text)
    r = cli(broker, "transform", "deploy", str(spec), "--admin", admin_url(broker))
    assert f"deployed {name}" in r.stdout, r
    # Rows interleaved across partitions, so every partition's input keeps arriving.
    feed = sorted(rows, key=lambda r: (r[1], r[0]))
    feeder = threading.Thread(target=produce, args=(broker, src, feed, partitions, end_ts, 12.0))
    feeder.start()
    rng = random.Random(11)
    kills = 0
    while kills < kills_wanted:
        time.sleep(rng.uniform(0.5, 2.0))
        broker.restart(clean=False)
        kills += 1
    feeder.join(timeout=300)
    assert not feeder.is_alive(), "the producer did not finish"

    def caught_up():
        d = describe(broker, name)
        return d["lag"] == 0 and all(t["lag"] == 0 and t["started"] for t in d["tasks"])
    wait_until(caught_up, timeout=240, what="the word count to catch up")
    # Windows close as the watermark passes; give the last commit a moment.
    expected = len(want)
    wait_until(lambda: len(read_all(broker, dst, partitions, "read_committed")) >= expected,
               timeout=60, what=f"{expected} windows")
    d = describe(broker, name)
    assert d["state"] == "running" and d["lag"] == 0, d
    committed = windowed_counts(read_all(broker, dst, partitions, "read_committed"))
    want_emitted = Counter({(w, start, n): 1 for (w, start), n in want.items()})
    return committed, want_emitted, kills


def test_word_count_survives_sigkills_exactly_once(broker, unique_topic):
    committed, want, kills = run_word_count_under_kills(broker, unique_topic, "exactly_once")
    missing, extra = want - committed, committed - want
    assert not missing and not extra, (
        f"{kills} kills: {len(missing)} missing, {len(extra)} unexpected/duplicated; "
        f"e.g. missing {list(missing.items())[:5]}, extra {list(extra.items())[:5]}")


def test_at_least_once_word_count_is_not_exact_under_kills(broker, unique_topic):
    """The negative control: the same run with `processing.guarantee: at_least_once` (outputs
    written as produced, offsets committed each second) repeats work after each kill, and the
    test sees it. Without this, the exactly-once test could pass by never being stressed."""
    committed, want, kills = run_word_count_under_kills(broker, unique_topic, "at_least_once")
    assert committed != want, f"{kills} kills and at-least-once output was still exact"
    # What differs is repeated work: counts too high or windows emitted again, never less.
    emitted = Counter()
    for (w, start, n), times in committed.items():
        emitted[(w, start)] += times
    assert all(emitted[(w, s)] >= 1 for (w, s, _n) in want), "at-least-once lost a window"


def test_bad_specs_are_refused_with_the_line(broker, unique_topic):
    src = unique_topic("lines")
    create_topic(broker, src, 1)
    bad = broker.workdir / "bad.yaml"
    bad.write_text(f"name: bad\ninput: {{ topic: {src}, format: text }}\nsteps:\n"
                   "  - map: '.foo |||'\noutput: { topic: out, format: json }\n")
    r = cli(broker, "transform", "deploy", str(bad), "--admin", admin_url(broker), check=False)
    assert r.returncode != 0
    assert "line 4" in r.stderr, r.stderr
    bad.write_text(f"name: bad\ninput: {{ topic: {src}, format: text }}\nsteps:\n"
                   "  - explode: '.'\noutput: { topic: out, format: json }\n")
    r = cli(broker, "transform", "deploy", str(bad), "--admin", admin_url(broker), check=False)
    assert r.returncode != 0 and "line 4" in r.stderr, r.stderr
    bad.write_text("name: bad\ninput: { topic: no-such-topic, format: text }\nsteps:\n"
                   "  - map: '.'\noutput: { topic: out, format: json }\n")
    r = cli(broker, "transform", "deploy", str(bad), "--admin", admin_url(broker), check=False)
    assert r.returncode != 0 and "no-such-topic" in r.stderr, r.stderr
    r = cli(broker, "transform", "list", "--json", "--admin", admin_url(broker))
    assert json.loads(r.stdout) == [], "nothing was deployed"


def test_map_filter_pause_resume_delete_and_restart(broker, unique_topic):
    src, dst, name = unique_topic("in"), unique_topic("out"), f"mf-{uuid.uuid4().hex[:6]}"
    create_topic(broker, src, 2)
    spec = broker.workdir / "mf.yaml"
    spec.write_text(f"name: {name}\ninput: {{ topic: {src}, format: json }}\nsteps:\n"
                    "  - filter: '.n % 2 == 0'\n  - map: '{n: .n, double: (.n * 2)}'\n"
                    f"output: {{ topic: {dst}, format: json }}\n")
    cli(broker, "transform", "deploy", str(spec), "--admin", admin_url(broker))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for n in range(100):
        p.produce(src, value=json.dumps({"n": n}).encode(), partition=n % 2)
    assert p.flush(30) == 0
    wait_until(lambda: len(read_all(broker, dst, 2, "read_committed")) == 50, timeout=60,
               what="50 outputs")
    got = sorted(json.loads(v)["n"] for _k, v in read_all(broker, dst, 2, "read_committed"))
    assert got == list(range(0, 100, 2))
    assert all(json.loads(v)["double"] == 2 * json.loads(v)["n"]
               for _k, v in read_all(broker, dst, 2, "read_committed"))
    cli(broker, "transform", "pause", name, "--admin", admin_url(broker))
    assert describe(broker, name)["state"] == "paused"
    for n in range(100, 110):
        p.produce(src, value=json.dumps({"n": n}).encode(), partition=n % 2)
    assert p.flush(30) == 0
    time.sleep(1.0)
    assert len(read_all(broker, dst, 2, "read_committed")) == 50, "paused transforms do not run"
    # The definition (and its paused state) survives a crash.
    broker.restart(clean=False)
    assert describe(broker, name)["state"] == "paused"
    cli(broker, "transform", "resume", name, "--admin", admin_url(broker))
    wait_until(lambda: len(read_all(broker, dst, 2, "read_committed")) == 55, timeout=60,
               what="55 outputs after resume")
    out = cli(broker, "transform", "list", "--admin", admin_url(broker)).stdout
    assert name in out and "running" in out
    cli(broker, "transform", "delete", name, "--admin", admin_url(broker))
    r = cli(broker, "transform", "describe", name, "--admin", admin_url(broker), check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr
    broker.restart(clean=False)
    assert json.loads(cli(broker, "transform", "list", "--json", "--admin", admin_url(broker)).stdout) == []


def test_restart_restores_state_from_the_local_store_and_replays_only_the_tail(broker, unique_topic):
    """A running word count (no window) keeps one state entry per word, while its changelog
    holds one record per update. After a SIGKILL the tasks load their local stores and replay
    only the changelog written after the stores' checkpoints, not its whole history, and the
    counts carry on from the committed state (no wiped state)."""
    partitions, name = 2, f"rc-{uuid.uuid4().hex[:6]}"
    src, dst = unique_topic("lines"), unique_topic("running-counts")
    create_topic(broker, src, partitions)
    spec = broker.workdir / f"{name}.yaml"
    spec.write_text(f"name: {name}\ninput: {{ topic: {src}, format: text }}\nsteps:\n"
                    "  - flat_map: '[scan(\"[a-z]+\")] | .[]'\n  - key_by: '.'\n"
                    "  - aggregate: count\n"
                    f"output: {{ topic: {dst}, format: json, emit: changes }}\n")
    cli(broker, "transform", "deploy", str(spec), "--admin", admin_url(broker))
    rows = corpus(lines_per_partition=800, partitions=partitions, seed=3)
    want = Counter()
    for _p, _ts, line in rows:
        want.update(re.findall("[a-z]+", line.lower()))

    def feed(rows):
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        for part, ts, line in rows:
            p.produce(src, value=line.lower().encode(), partition=part, timestamp=ts)
        assert p.flush(60) == 0

    def final_counts():
        latest = {}
        for _k, v in read_all(broker, dst, partitions, "read_committed"):
            v = json.loads(v)
            latest[v["key"]] = v["value"]
        return latest

    half = len(rows) // 2
    feed(rows[:half])
    wait_caught_up(broker, name, "the first half")
    first = Counter()
    for _p, _ts, line in rows[:half]:
        first.update(re.findall("[a-z]+", line.lower()))
    wait_until(lambda: final_counts() == dict(first), timeout=60, what="counts of the first half")
    stateful = [t for t in describe(broker, name)["tasks"] if t["stage"] == 1]
    updates = sum(t["records_in"] for t in stateful)
    assert updates > 5 * len(first), (updates, len(first))
    # Idle tasks make their stores durable within 5 s; then the crash.
    time.sleep(7)
    broker.restart(clean=False)
    wait_caught_up(broker, name, "the restart")
    stateful = [t for t in describe(broker, name)["tasks"] if t["stage"] == 1]
    restored = sum(t["restored_entries"] for t in stateful)
    replayed = sum(t["replayed_records"] for t in stateful)
    assert restored >= len(first), (restored, stateful)
    assert replayed < updates / 10, f"replayed {replayed} of {updates} changelog records"
    # The state was kept, not wiped: counting continues from it.
    feed(rows[half:])
    wait_caught_up(broker, name, "the second half")
    wait_until(lambda: final_counts() == dict(want), timeout=60, what="counts of the whole corpus")


# --- Stream-table joins under SIGKILLs ------------------------------------------------------


def produce_json(broker, topic: str, rows, spread_s: float = 0.0):
    """`produce` for json inputs: rows are (partition, timestamp, key or None, value), produced
    in order (idempotent) over `spread_s` seconds; no trailer, the caller adds its own."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                  "message.timeout.ms": 300000})
    chunks = 50
    step = max(1, len(rows) // chunks)
    for i, (part, ts, key, value) in enumerate(rows):
        p.produce(topic, key=None if key is None else key.encode(),
                  value=json.dumps(value).encode(), partition=part, timestamp=ts)
        if spread_s and i % step == step - 1:
            p.poll(0)
            time.sleep(spread_s / chunks)
    assert p.flush(60) == 0


def kill_repeatedly(broker, feeder: threading.Thread, kills_wanted: int, seed: int) -> int:
    """Starts `feeder`, SIGKILLs the broker `kills_wanted` times at random moments while it runs,
    and waits for it to finish; returns the number of kills."""
    feeder.start()
    rng = random.Random(seed)
    kills = 0
    while kills < kills_wanted:
        time.sleep(rng.uniform(0.5, 2.0))
        broker.restart(clean=False)
        kills += 1
    feeder.join(timeout=300)
    assert not feeder.is_alive(), "the producer did not finish"
    return kills


def wait_caught_up(broker, name: str, what: str):
    def caught_up():
        d = describe(broker, name)
        return d["lag"] == 0 and all(t["lag"] == 0 and t["started"] for t in d["tasks"])
    wait_until(caught_up, timeout=240, what=what)


def test_stream_table_join_survives_sigkills_exactly_once(broker, unique_topic):
    partitions = 3
    users_t, orders_t = unique_topic("users"), unique_topic("orders")
    create_topic(broker, users_t, 2, {"cleanup.policy": "compact"})
    create_topic(broker, orders_t, partitions)
    # The table, loaded before the transforms start and never changed afterwards: u0-u29, where
    # a few were renamed (the latest value wins) and u7 was deleted (a tombstone).
    names = {f"u{k}": f"name-{k}" for k in range(30)}
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for user in names:
        p.produce(users_t, key=user.encode(), value=json.dumps({"name": "old-" + user}).encode())
    for user in ("u3", "u11", "u29"):
        names[user] = f"renamed-{user}"
    for user, n in names.items():
        p.produce(users_t, key=user.encode(), value=json.dumps({"name": n}).encode())
    p.produce(users_t, key=b"u7", value=None)
    del names["u7"]
    assert p.flush(30) == 0
    # Orders: u0-u34, so some name users the table does not have (u7, u30-u34).
    rng = random.Random(31)
    orders = [(n % partitions, BASE_TS + n, str(n), {"order": n, "user": f"u{rng.randrange(35)}"})
              for n in range(3000)]
    inner, left = f"join-in-{uuid.uuid4().hex[:6]}", f"join-left-{uuid.uuid4().hex[:6]}"
    outs = {inner: unique_topic("inner"), left: unique_topic("left")}
    for name, kind in ((inner, "inner"), (left, "left")):
        spec = broker.workdir / f"{name}.yaml"
        spec.write_text(f"name: {name}\n"
                        f"input: {{ topic: {orders_t}, format: json }}\n"
                        "steps:\n"
                        f"  - join: {{ table: {users_t}, on: '.user', type: {kind} }}\n"
                        f"output: {{ topic: {outs[name]}, format: json }}\n")
        r = cli(broker, "transform", "deploy", str(spec), "--admin", admin_url(broker))
        assert f"deployed {name}" in r.stdout, r
    feeder = threading.Thread(target=produce_json, args=(broker, orders_t, orders, 10.0))
    kills = kill_repeatedly(broker, feeder, kills_wanted=5, seed=37)

    def expect(kind: str) -> Counter:
        want: Counter = Counter()
        for _p, _ts, key, o in orders:
            name_ = names.get(o["user"])
            if name_ is None and kind == "inner":
                continue
            right = None if name_ is None else {"name": name_}
            want[(key, json.dumps({"left": o, "right": right}, sort_keys=True))] += 1
        return want

    for name, kind in ((inner, "inner"), (left, "left")):
        wait_caught_up(broker, name, f"the {kind} join to catch up")
        want = expect(kind)
        expected = sum(want.values())
        wait_until(lambda: len(read_all(broker, outs[name], partitions, "read_committed"))
                   >= expected, timeout=60, what=f"{expected} {kind} join results")
        d = describe(broker, name)
        assert d["state"] == "running" and d["lag"] == 0, d
        got = Counter((k.decode(), json.dumps(json.loads(v), sort_keys=True))
                      for k, v in read_all(broker, outs[name], partitions, "read_committed"))
        missing, extra = want - got, got - want
        assert not missing and not extra, (
            f"{kind} join, {kills} kills: {len(missing)} missing, {len(extra)} "
            f"unexpected/duplicated; e.g. missing {list(missing.items())[:5]}, "
            f"extra {list(extra.items())[:5]}")
    assert len(expect("inner")) < len(orders) == sum(expect("left").values())
SESSION_GAP_MS = 5_000


def click_corpus(users: int, partitions: int, seed: int):
    """(partition, ts, user) clicks: per user, bursts of clicks at most the session gap apart,
    separated by gaps just above it, exactly at it (5000 ms: still one session), a little under
    it (sessions that merge) or well above it. Each click goes to a random partition, so one
    user's sessions are fed from several partitions; each partition's timestamps grow."""
    rng = random.Random(seed)
    clicks = []
    for u in range(users):
        ts = BASE_TS + rng.randrange(0, 3000)
        while ts < BASE_TS + 300_000:
            for i in range(rng.randrange(1, 12)):
                ts += rng.randrange(0, 2500) if i else 0
                clicks.append((rng.randrange(partitions), ts, f"u{u}"))
            ts += rng.choice([SESSION_GAP_MS + 1, SESSION_GAP_MS, rng.randrange(3000, 5000),
                              rng.randrange(5001, 20000), rng.randrange(5001, 20000)])
    # Interleaved by time across partitions (so per partition, timestamps never go back).
    return sorted(clicks, key=lambda c: (c[1], c[0], c[2]))


def session_oracle(clicks) -> Counter:
    """(user, window_start, window_end, count) -> 1: a session is a maximal run of a user's
    clicks at most the gap apart; window_end is its last click + 1 ms (operators' aggregate)."""
    by_user: dict[str, list[int]] = {}
    for _p, ts, user in clicks:
        by_user.setdefault(user, []).append(ts)
    want: Counter = Counter()
    for user, times in by_user.items():
        times.sort()
        start = prev = times[0]
        n = 0
        for t in times:
            if t - prev > SESSION_GAP_MS:
                want[(user, start, prev + 1, n)] += 1
                start, n = t, 0
            prev = t
            n += 1
        want[(user, start, prev + 1, n)] += 1
    return want


def test_session_windows_survive_sigkills_exactly_once(broker, unique_topic):
    partitions, name = 3, f"sess-{uuid.uuid4().hex[:6]}"
    src, dst = unique_topic("clicks"), unique_topic("sessions")
    create_topic(broker, src, partitions)
    clicks = click_corpus(users=20, partitions=partitions, seed=23)
    want = session_oracle(clicks)
    # Far in the future, one per partition: the combined watermark passes every real session's
    # close (end + gap + grace). The sentinel's own session stays open and is never emitted.
    end_ts = max(ts for _p, ts, _u in clicks) + 60_000
    rows = [(p, ts, None, {"user": u, "ts": ts}) for p, ts, u in clicks]
    rows += [(p, end_ts, None, {"user": "zz-end", "ts": end_ts}) for p in range(partitions)]
    spec = broker.workdir / f"{name}.yaml"
    spec.write_text(f"name: {name}\n"
                    f"input: {{ topic: {src}, format: json, time: '.ts' }}\n"
                    "steps:\n"
                    "  - key_by: '.user'\n"
                    "  - window: { session: { gap: 5s }, grace: 1s }\n"
                    "  - aggregate: count\n"
                    f"output: {{ topic: {dst}, format: json, emit: final }}\n")
    r = cli(broker, "transform", "deploy", str(spec), "--admin", admin_url(broker))
    assert f"deployed {name}" in r.stdout, r
    feeder = threading.Thread(target=produce_json, args=(broker, src, rows, 10.0))
    kills = kill_repeatedly(broker, feeder, kills_wanted=5, seed=29)
    wait_caught_up(broker, name, "the sessions to catch up")
    expected = len(want)
    wait_until(lambda: len(read_all(broker, dst, partitions, "read_committed")) >= expected,
               timeout=60, what=f"{expected} sessions")
    d = describe(broker, name)
    assert d["state"] == "running" and d["lag"] == 0, d
    got: Counter = Counter()
    for key, value in read_all(broker, dst, partitions, "read_committed"):
        v = json.loads(value)
        assert key.decode() == v["key"], (key, v)
        got[(v["key"], v["window_start"], v["window_end"], v["value"])] += 1
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"{kills} kills, {len(clicks)} clicks, {expected} sessions: {len(missing)} missing, "
        f"{len(extra)} unexpected/duplicated; e.g. missing {list(missing.items())[:5]}, "
        f"extra {list(extra.items())[:5]}")




@pytest.mark.parametrize("failpoint", [
    "transform.commit.after_outputs",   # outputs appended, offsets not committed: aborted
    "transform.commit.after_offsets",   # offsets pending, no EndTxn: aborted
    "txn.end.before_prepare",           # EndTxn received, nothing logged: aborted
    "txn.end.after_prepare",            # PrepareCommit durable: completed after restart
    "txn.end.after_first_marker",
    "txn.end.after_markers",
])
def test_transform_crash_at_each_commit_step(broker_factory, unique_topic, monkeypatch, failpoint):
    """The broker aborts (SIGABRT, no shutdown) at each step of a transform's first commit;
    after a restart the transform's committed output is exactly its input's, once."""
    monkeypatch.setenv("SLUICE_FAILPOINTS", failpoint)
    broker = broker_factory()
    monkeypatch.delenv("SLUICE_FAILPOINTS")
    src, dst, name = unique_topic("in"), unique_topic("out"), f"fp-{uuid.uuid4().hex[:6]}"
    create_topic(broker, src, 2)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for n in range(200):
        p.produce(src, value=json.dumps({"n": n}).encode(), partition=n % 2)
    assert p.flush(30) == 0
    spec = broker.workdir / f"{name}.yaml"
    spec.write_text(f"name: {name}\ninput: {{ topic: {src}, format: json }}\nsteps:\n"
                    "  - filter: '.n % 2 == 0'\n  - map: '{n: .n}'\n"
                    f"output: {{ topic: {dst}, format: json }}\n")
    cli(broker, "transform", "deploy", str(spec), "--admin", admin_url(broker))
    deadline = time.monotonic() + 60
    while broker.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.proc.poll() is not None, f"the broker did not reach {failpoint}"
    rc = broker.proc.wait(timeout=30)
    conftest._LIVE_PROCS.pop(broker.proc.pid, None)
    assert rc == -signal.SIGABRT, f"exit status {rc}"
    assert f"failpoint {failpoint} hit" in broker.stderr_text()
    broker.start(new_ports_on_conflict=False)
    wait_until(lambda: len(read_all(broker, dst, 2, "read_committed")) >= 100, timeout=60,
               what="the transform's output after the restart")
    time.sleep(0.5)
    got = sorted(json.loads(v)["n"] for _k, v in read_all(broker, dst, 2, "read_committed"))
    assert got == list(range(0, 200, 2)), f"{failpoint}: {len(got)} records, duplicates or gaps"
