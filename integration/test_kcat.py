"""End-to-end tests with the `kcat` CLI (Debian package `kcat`).

If kcat is missing the tests fail, unless SLUICE_ALLOW_MISSING_PEERS=1 in
which case they are skipped (see the `kcat` fixture in conftest.py).

kcat cannot create topics, so these tests rely on auto-creation; the broker is
started with `--set num.partitions=3` to get 3 partitions.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 3
PER_BATCH = 20
CMD_TIMEOUT = 45  # seconds per kcat invocation
CONSUME_FMT = "%k %s %h %p %o\\n"


def run(cmd: list[str], stdin: str | None = None, timeout: float = CMD_TIMEOUT) -> str:
    try:
        cp = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\nstderr: {e.stderr!r}") from None
    assert cp.returncode == 0, f"exit {cp.returncode}: {' '.join(cmd)}\nstdout: {cp.stdout}\nstderr: {cp.stderr}"
    return cp.stdout


def kcat_base(kcat: str, broker) -> list[str]:
    return [
        kcat,
        "-b", broker.bootstrap,
        "-X", "broker.address.family=v4",
        "-X", "socket.timeout.ms=10000",
        "-m", "15",  # metadata timeout (s)
    ]


def produce(kcat, broker, topic, partition, codec, lines, headers):
    cmd = kcat_base(kcat, broker) + [
        "-P", "-t", topic, "-p", str(partition), "-K:", "-z", codec,
        "-X", "acks=all", "-X", "linger.ms=20", "-X", "message.timeout.ms=30000",
    ]
    for h in headers:
        cmd += ["-H", h]
    run(cmd, stdin="".join(line + "\n" for line in lines))


def consume(kcat, broker, topic, partition=None, offset="beginning", count=None, fmt=CONSUME_FMT) -> list[str]:
    cmd = kcat_base(kcat, broker) + ["-C", "-t", topic, "-o", str(offset), "-e", "-q", "-f", fmt]
    if partition is not None:
        cmd += ["-p", str(partition)]
    if count is not None:
        cmd += ["-c", str(count)]
    out = run(cmd)
    assert out == "" or out.endswith("\n"), f"unterminated output: {out[-200:]!r}"
    return out.splitlines()


def metadata(kcat, broker, topic=None) -> dict:
    cmd = kcat_base(kcat, broker) + ["-L", "-J"]
    if topic:
        cmd += ["-t", topic]
    return json.loads(run(cmd))


def wait_for_topic(kcat, broker, topic, partitions, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = metadata(kcat, broker)
        for t in md["topics"]:
            if t["topic"] == topic and "error" not in t and len(t["partitions"]) == partitions:
                return md
        last = md
        time.sleep(0.3)
    raise AssertionError(f"topic {topic} with {partitions} partitions not in metadata: {last}")


def record_line(codec, p, i) -> tuple[str, str]:
    key = f"k-{codec}-p{p}-{i:03d}"
    # Varying sizes, compressible; no spaces (the output format is space-separated).
    value = f"v-{codec}-p{p}-{i:03d}-" + "x" * ((i * 37) % 700) + "=end"
    return key, value


@pytest.fixture
def broker3(broker_factory):
    return broker_factory(sets={"num.partitions": str(PARTITIONS)})


def test_kcat_produce_consume_every_codec(kcat, broker3, unique_topic):
    topic = unique_topic()
    expected: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for codec in CODECS:
        for p in range(PARTITIONS):
            hdrs = [f"codec={codec}", f"part={p}", "dup=a", "dup=b", "empty="]
            lines = []
            for i in range(PER_BATCH):
                k, v = record_line(codec, p, i)
                lines.append(f"{k}:{v}")
                off = len(expected[p])
                expected[p].append(f"{k} {v} {','.join(hdrs)} {p} {off}")
            produce(kcat, broker3, topic, p, codec, lines, hdrs)

    md = wait_for_topic(kcat, broker3, topic, PARTITIONS)
    # Exact, in order, per partition.
    for p in range(PARTITIONS):
        assert consume(kcat, broker3, topic, partition=p) == expected[p], f"partition {p}"

    # All partitions at once: per-partition order must still hold exactly.
    got: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for line in consume(kcat, broker3, topic):
        got[int(line.split(" ")[-2])].append(line)
    assert got == expected

    # Starting in the middle of a compressed batch (gzip section): exact suffix.
    start = PER_BATCH + 7
    for p in range(PARTITIONS):
        assert consume(kcat, broker3, topic, partition=p, offset=start, count=5) == expected[p][start:start + 5]
    # Negative offset = relative to the end.
    assert consume(kcat, broker3, topic, partition=0, offset=-3) == expected[0][-3:]

    node = md["brokers"][0]["id"]
    (t,) = [t for t in md["topics"] if t["topic"] == topic]
    assert [q["partition"] for q in sorted(t["partitions"], key=lambda q: q["partition"])] == list(range(PARTITIONS))
    for q in t["partitions"]:
        assert q["leader"] == node


def test_kcat_metadata_listing(kcat, broker3, unique_topic):
    topic = unique_topic()
    produce(kcat, broker3, topic, 1, "none", ["a:1"], ["h=v"])
    md = wait_for_topic(kcat, broker3, topic, PARTITIONS)
    assert len(md["brokers"]) == 1, md["brokers"]
    (b,) = md["brokers"]
    assert b["name"] == broker3.bootstrap, "advertised address must equal the listen address"
    assert md["controllerid"] == b["id"]
    assert md["originating_broker"]["id"] == b["id"]
    (t,) = [t for t in md["topics"] if t["topic"] == topic]
    assert "error" not in t
    parts = sorted(t["partitions"], key=lambda q: q["partition"])
    assert [q["partition"] for q in parts] == list(range(PARTITIONS))
    for q in parts:
        assert "error" not in q, q
        assert q["leader"] == b["id"]
        assert q["replicas"] == [{"id": b["id"]}]
        assert q["isrs"] == [{"id": b["id"]}]

    # Single-topic listing.
    md1 = metadata(kcat, broker3, topic)
    assert [t["topic"] for t in md1["topics"]] == [topic]

    # Plain-text listing works as well and mentions the topic and broker.
    text = run(kcat_base(kcat, broker3) + ["-L"])
    assert f'topic "{topic}" with {PARTITIONS} partitions:' in text, text
    assert f"at {broker3.bootstrap}" in text, text


_Q_LINE = re.compile(r"^(?P<topic>\S+) \[(?P<p>\d+)\] offset (?P<off>-?\d+)$")


def query(kcat, broker, topic, partition, *timestamps) -> list[int]:
    cmd = kcat_base(kcat, broker) + ["-Q"]
    for ts in timestamps:
        cmd += ["-t", f"{topic}:{partition}:{ts}"]
    out = run(cmd).splitlines()
    # kcat sorts by topic+partition, so query one timestamp per call when order matters.
    offs = []
    for line in out:
        m = _Q_LINE.match(line)
        assert m, f"unexpected -Q output line: {line!r} (full: {out})"
        assert m["topic"] == topic and int(m["p"]) == partition
        offs.append(int(m["off"]))
    return offs


def test_kcat_query_offsets_by_timestamp(kcat, broker3, unique_topic):
    topic = unique_topic()
    n1, n2 = 7, 5
    produce(kcat, broker3, topic, 0, "lz4", [f"a{i}:first-{i}" for i in range(n1)], ["batch=1"])
    time.sleep(0.05)
    t1 = int(time.time() * 1000)  # every batch-1 timestamp is < t1 ...
    time.sleep(0.05)
    produce(kcat, broker3, topic, 0, "zstd", [f"b{i}:second-{i}" for i in range(n2)], ["batch=2"])
    t2 = int(time.time() * 1000) + 60_000  # ... and every batch-2 timestamp is >= t1
    wait_for_topic(kcat, broker3, topic, PARTITIONS)

    assert query(kcat, broker3, topic, 0, t1) == [n1]
    assert query(kcat, broker3, topic, 0, 0) == [0]
    assert query(kcat, broker3, topic, 0, -2) == [0]  # earliest
    assert query(kcat, broker3, topic, 0, -1) == [n1 + n2]  # latest
    assert query(kcat, broker3, topic, 0, t2) == [-1]  # nothing at/after t2
    # Empty partition: earliest = latest = 0, by-timestamp = -1.
    assert query(kcat, broker3, topic, 1, -2) == [0]
    assert query(kcat, broker3, topic, 1, -1) == [0]
    assert query(kcat, broker3, topic, 1, t1) == [-1]

    # Timestamps as consumed agree with the split point.
    lines = consume(kcat, broker3, topic, partition=0, fmt="%T %o %s\\n")
    assert len(lines) == n1 + n2
    parsed = [(int(ts), int(off), val) for ts, off, val in (line.split(" ") for line in lines)]
    assert [off for _, off, _ in parsed] == list(range(n1 + n2))
    assert all(ts < t1 for ts, _, _ in parsed[:n1])
    assert all(t1 <= ts < t2 for ts, _, _ in parsed[n1:])
    assert [v for _, _, v in parsed] == [f"first-{i}" for i in range(n1)] + [f"second-{i}" for i in range(n2)]


def test_kcat_data_survives_restarts(kcat, broker3, unique_topic):
    topic = unique_topic()
    expected = []
    for round_, (codec, clean) in enumerate([("gzip", True), ("snappy", False)]):
        lines = [f"r{round_}k{i}:r{round_}v{i}" for i in range(30)]
        produce(kcat, broker3, topic, 2, codec, lines, [f"round={round_}"])
        expected += [f"r{round_}k{i} r{round_}v{i} round={round_} 2 {len(expected) + i}" for i in range(30)]
        broker3.restart(clean=clean)
        assert consume(kcat, broker3, topic, partition=2) == expected
