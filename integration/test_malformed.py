"""Raw-socket robustness tests: malformed / hostile input must never hang or
crash the broker, and ApiVersions must be answered byte-exactly.

The Kafka wire encoding is written by hand with ``struct`` on purpose (no
client library), so these tests pin the framing itself:

  frame            := int32 size, payload[size]
  request header v1:= int16 api_key, int16 api_version, int32 correlation_id,
                      nullable string client_id (int16 length, -1 = null)
  request header v2:= header v1 + tagged fields (uvarint count)
  response header v0 := int32 correlation_id
  (ApiVersions responses always use response header v0, even when flexible.)

Every socket operation is bounded by a deadline.
"""

from __future__ import annotations

import random
import socket
import struct
import time

import pytest
from confluent_kafka.admin import AdminClient

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19
API_DELETE_TOPICS = 20
API_DESCRIBE_CONFIGS = 32
API_ALTER_CONFIGS = 33
API_INCREMENTAL_ALTER_CONFIGS = 44

UNSUPPORTED_VERSION = 35

IO_TIMEOUT = 5.0  # seconds: bound for every "wait for the broker to react"
MAX_FRAME = 64 * 1024 * 1024  # sanity bound for response frames we accept


# --------------------------------------------------------------------------
# hand-written wire encoding
# --------------------------------------------------------------------------


def nullable_string(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode("utf-8")
    return struct.pack(">h", len(b)) + b


def request_header_v1(api_key: int, api_version: int, correlation_id: int, client_id: str | None) -> bytes:
    return struct.pack(">hhi", api_key, api_version, correlation_id) + nullable_string(client_id)


def uvarint(n: int) -> bytes:
    assert n >= 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def compact_string(s: str) -> bytes:
    b = s.encode("utf-8")
    return uvarint(len(b) + 1) + b


def request_header_v2(api_key: int, api_version: int, correlation_id: int, client_id: str | None) -> bytes:
    return request_header_v1(api_key, api_version, correlation_id, client_id) + uvarint(0)  # no tagged fields


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def api_versions_v0_request(correlation_id: int, client_id: str | None = "sluice-it") -> bytes:
    # ApiVersionsRequest v0 has an empty body.
    return frame(request_header_v1(API_API_VERSIONS, 0, correlation_id, client_id))


def api_versions_v3_request(correlation_id: int) -> bytes:
    body = compact_string("sluice-it") + compact_string("0.0.1") + uvarint(0)
    return frame(request_header_v2(API_API_VERSIONS, 3, correlation_id, "sluice-it") + body)


class Reader:
    """Cursor over a response payload with exact-length checking."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise AssertionError(f"response truncated: need {n} bytes at {self.pos}, have {len(self.data)}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self) -> int:
        shift = 0
        result = 0
        for _ in range(5):
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
        raise AssertionError("uvarint longer than 5 bytes")

    def skip_tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())

    def assert_consumed(self, what: str):
        assert self.pos == len(self.data), (
            f"{what}: {len(self.data) - self.pos} unexpected trailing bytes: {self.data[self.pos:]!r}"
        )


def parse_api_versions_v0(payload: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """-> (correlation_id, error_code, {api_key: (min, max)}); asserts exact length."""
    r = Reader(payload)
    corr = r.i32()
    err = r.i16()
    n = r.i32()
    assert 0 <= n <= 1000, f"implausible api_keys count {n}"
    apis: dict[int, tuple[int, int]] = {}
    for _ in range(n):
        key, vmin, vmax = struct.unpack(">hhh", r.take(6))
        assert key not in apis, f"api key {key} listed twice"
        apis[key] = (vmin, vmax)
    r.assert_consumed("ApiVersionsResponse v0")
    return corr, err, apis


def parse_api_versions_v3(payload: bytes) -> tuple[int, int, dict[int, tuple[int, int]], int]:
    """-> (correlation_id, error_code, apis, throttle_time_ms); asserts exact length."""
    r = Reader(payload)
    corr = r.i32()  # response header v0 (no tagged fields) for ApiVersions
    err = r.i16()
    n = r.uvarint() - 1
    assert 0 <= n <= 1000, f"implausible api_keys count {n}"
    apis: dict[int, tuple[int, int]] = {}
    for _ in range(n):
        key, vmin, vmax = struct.unpack(">hhh", r.take(6))
        r.skip_tagged_fields()
        assert key not in apis, f"api key {key} listed twice"
        apis[key] = (vmin, vmax)
    throttle = r.i32()
    r.skip_tagged_fields()
    r.assert_consumed("ApiVersionsResponse v3")
    return corr, err, apis, throttle


# --------------------------------------------------------------------------
# bounded socket helpers
# --------------------------------------------------------------------------

CLOSED = "closed"


def connect(broker) -> socket.socket:
    s = socket.create_connection((broker.host, broker.port), timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)
    return s


def send_or_closed(sock: socket.socket, data: bytes) -> bool:
    """sendall; returns False if the peer already closed the connection."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes | str:
    """Read exactly n bytes before ``deadline``; CLOSED on EOF/reset.
    Raises AssertionError if the deadline passes (i.e. the broker hangs)."""
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"broker neither answered nor closed within the bound (got {len(buf)}/{n} bytes)")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(min(65536, n - len(buf)))
        except socket.timeout:
            continue  # loop re-checks the deadline
        except ConnectionResetError:
            return CLOSED
        if not chunk:
            return CLOSED
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket, timeout: float = IO_TIMEOUT) -> bytes | str:
    """One response frame payload, or CLOSED. Raises on timeout."""
    deadline = time.monotonic() + timeout
    head = recv_exact(sock, 4, deadline)
    if head is CLOSED:
        return CLOSED
    (size,) = struct.unpack(">i", head)
    assert 4 <= size <= MAX_FRAME, f"implausible response frame size {size}"
    body = recv_exact(sock, size, deadline)
    assert body is not CLOSED, "connection closed in the middle of a response frame"
    return body


def expect_closed(sock: socket.socket, timeout: float = IO_TIMEOUT, allow_frames: bool = False):
    """Assert the broker closes the connection within ``timeout``.
    With allow_frames, complete response frames before the close are tolerated
    (and returned)."""
    deadline = time.monotonic() + timeout
    frames = []
    for _ in range(100):  # bounded number of frames
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        got = read_frame(sock, timeout=remaining)
        if got is CLOSED:
            return frames
        assert allow_frames, f"expected the connection to be closed, got a response frame {got[:64]!r}"
        frames.append(got)
    raise AssertionError(f"connection not closed within {timeout}s (frames seen: {len(frames)})")


def api_versions_roundtrip(broker, correlation_id: int = 4242) -> dict[int, tuple[int, int]]:
    with connect(broker) as s:
        assert send_or_closed(s, api_versions_v0_request(correlation_id)), "broker closed a fresh connection"
        payload = read_frame(s)
        assert payload is not CLOSED, "broker closed the connection instead of answering ApiVersions v0"
        corr, err, apis = parse_api_versions_v0(payload)
        assert corr == correlation_id
        assert err == 0
        return apis


def assert_healthy(broker):
    """The process is alive, answers raw ApiVersions, and serves a real client."""
    broker.assert_alive()
    apis = api_versions_roundtrip(broker)
    assert API_METADATA in apis
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10000})
    md = admin.list_topics(timeout=10)
    assert len(md.brokers) == 1, md.brokers
    (b,) = md.brokers.values()
    assert (b.host, b.port) == (broker.host, broker.port)
    broker.assert_alive()


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size_prefix",
    [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF],
    ids=["2GiB-1", "int32-min", "minus-1"],
)
def test_oversized_or_negative_length_prefix_closes_promptly(broker, size_prefix):
    with connect(broker) as s:
        started = time.monotonic()
        sent = send_or_closed(s, struct.pack(">I", size_prefix))
        if sent:
            # A few bytes of "payload" so a broker that waits for more data
            # would still be waiting; it must not.
            send_or_closed(s, b"\x00\x12\x00\x00\x00\x00\x00\x01")
        expect_closed(s, timeout=IO_TIMEOUT)
        assert time.monotonic() - started < IO_TIMEOUT
    assert_healthy(broker)


def test_unknown_api_key_closes_or_errors(broker):
    corr = 777
    with connect(broker) as s:
        req = frame(request_header_v1(9999, 0, corr, "sluice-it") + b"\x00" * 8)
        if send_or_closed(s, req):
            got = read_frame(s)
            if got is not CLOSED:
                # Tolerated alternative to closing: an error response for our
                # correlation id. We assume the body starts with an int16
                # error code (as for ApiVersions-style error responses).
                r = Reader(got)
                assert r.i32() == corr, "response correlation id mismatch"
                err = r.i16()
                assert err != 0, f"unknown API key 9999 answered with error_code 0: {got!r}"
    assert_healthy(broker)


def test_truncated_request_then_close(broker):
    with connect(broker) as s:
        # Length says 100, only 10 bytes follow, then we close.
        send_or_closed(s, struct.pack(">i", 100) + request_header_v1(API_API_VERSIONS, 0, 1, None)[:10])
    assert_healthy(broker)


def test_truncated_request_left_open_does_not_block_other_clients(broker):
    with connect(broker) as stalled:
        send_or_closed(stalled, struct.pack(">i", 100) + request_header_v1(API_METADATA, 0, 1, "x")[:10])
        # While that connection is stuck mid-frame, others must be served.
        assert_healthy(broker)
        # Half-close: the broker sees EOF mid-frame and must close its side.
        stalled.shutdown(socket.SHUT_WR)
        expect_closed(stalled, timeout=IO_TIMEOUT)
    assert_healthy(broker)


@pytest.mark.parametrize("client_id", ["sluice-it", None], ids=["client-id", "null-client-id"])
def test_api_versions_v0_exact(broker, client_id):
    corr = 0x1234ABCD
    with connect(broker) as s:
        assert send_or_closed(s, api_versions_v0_request(corr, client_id))
        payload = read_frame(s)
        assert payload is not CLOSED, "broker closed the connection instead of answering ApiVersions v0"
    got_corr, err, apis = parse_api_versions_v0(payload)
    assert got_corr == corr
    assert err == 0
    assert API_PRODUCE in apis and API_FETCH in apis, sorted(apis)
    # Everything the broker contract promises must be advertised.
    for key in (API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA, API_API_VERSIONS,
                API_CREATE_TOPICS, API_DELETE_TOPICS, API_DESCRIBE_CONFIGS):
        assert key in apis, f"api key {key} missing from ApiVersions: {sorted(apis)}"
    assert API_ALTER_CONFIGS in apis or API_INCREMENTAL_ALTER_CONFIGS in apis, sorted(apis)
    for key, (vmin, vmax) in apis.items():
        assert 0 <= vmin <= vmax, f"api {key}: bad range {vmin}..{vmax}"
    assert apis[API_API_VERSIONS][0] == 0, "ApiVersions v0 must be supported (we just used it)"


def test_api_versions_v3_flexible_matches_v0(broker):
    v0 = api_versions_roundtrip(broker, correlation_id=1)
    corr = 99
    with connect(broker) as s:
        assert send_or_closed(s, api_versions_v3_request(corr))
        payload = read_frame(s)
        assert payload is not CLOSED, "broker closed the connection instead of answering ApiVersions v3"
    got_corr, err, apis, throttle = parse_api_versions_v3(payload)
    assert got_corr == corr
    assert err == 0
    assert throttle >= 0
    assert apis == v0, "ApiVersions v3 and v0 must list the same APIs and ranges"


def test_api_versions_unsupported_version_answers_v0_error(broker):
    v0 = api_versions_roundtrip(broker, correlation_id=2)
    corr = 31337
    # Header v1 fields + one 0x00 byte: a broker that parses a future-version
    # header as v2 reads it as "no tagged fields"; one that parses v1 sees a
    # one-byte body it cannot interpret anyway. Either way the answer must be
    # a v0-format ApiVersions response carrying UNSUPPORTED_VERSION.
    req = frame(request_header_v1(API_API_VERSIONS, 99, corr, "sluice-it") + b"\x00")
    with connect(broker) as s:
        assert send_or_closed(s, req)
        payload = read_frame(s)
        assert payload is not CLOSED, "broker closed the connection instead of answering ApiVersions v99"
    got_corr, err, apis = parse_api_versions_v0(payload)
    assert got_corr == corr
    assert err == UNSUPPORTED_VERSION
    assert apis == v0, "the UNSUPPORTED_VERSION response must carry the full api list"
    assert_healthy(broker)


def test_pipelined_requests_answered_in_order(broker):
    corrs = [11, 12, 13, 14, 15]
    with connect(broker) as s:
        assert send_or_closed(s, b"".join(api_versions_v0_request(c) for c in corrs))
        seen = []
        for _ in corrs:
            payload = read_frame(s)
            assert payload is not CLOSED, f"closed after {len(seen)} pipelined responses"
            corr, err, _apis = parse_api_versions_v0(payload)
            assert err == 0
            seen.append(corr)
    assert seen == corrs


def test_zero_length_frame(broker):
    with connect(broker) as s:
        send_or_closed(s, struct.pack(">i", 0))
        s.shutdown(socket.SHUT_WR)
        expect_closed(s, allow_frames=False)
    assert_healthy(broker)


GARBAGE_SEED = 0x51C3


def test_random_garbage(broker):
    rng = random.Random(GARBAGE_SEED)
    rounds = 24
    for i in range(rounds):
        kind = i % 3
        if kind == 0:
            # Fully random bytes of random length.
            data = rng.randbytes(rng.randint(1, 4096))
        elif kind == 1:
            # Plausible small length prefix + random payload: gets past the
            # size check into header/body parsing.
            payload = rng.randbytes(rng.randint(0, 512))
            data = struct.pack(">i", len(payload)) + payload
        else:
            # Valid header for a real API at a random version + random body.
            key = rng.choice([API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA, API_CREATE_TOPICS,
                              API_DELETE_TOPICS, API_DESCRIBE_CONFIGS, API_ALTER_CONFIGS,
                              API_INCREMENTAL_ALTER_CONFIGS])
            hdr = request_header_v1(key, rng.randint(0, 12), 1000 + i, "fuzz")
            payload = hdr + rng.randbytes(rng.randint(0, 256))
            data = struct.pack(">i", len(payload)) + payload
        with connect(broker) as s:
            if send_or_closed(s, data):
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                # Whatever the broker makes of it (error response or not), on
                # EOF from us it must close its side within the bound.
                try:
                    expect_closed(s, timeout=IO_TIMEOUT, allow_frames=True)
                except AssertionError as e:
                    raise AssertionError(f"garbage round {i} (seed {GARBAGE_SEED:#x}, kind {kind}): {e}") from None
        broker.assert_alive()
    assert_healthy(broker)
