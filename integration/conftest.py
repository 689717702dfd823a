"""Shared fixtures for the Sluice end-to-end suite.

Every test here drives the *real* ``sluice`` binary (``$SLUICE_BIN``, default
``<repo>/target/debug/sluice``) over TCP on 127.0.0.1 with third-party Kafka
clients. Nothing is mocked.

Contract assumed from the broker:

* ``sluice serve --listen 127.0.0.1:<port> --data-dir <dir>
  --admin-listen 127.0.0.1:<port2> [--set key=value ...]``
* prints a line containing ``ready`` on stderr once it is listening;
* exits with status 0 on SIGTERM.

Every wait in this file is bounded; every broker a test starts is stopped by a
finalizer (and, as a last resort, killed by the kernel via PR_SET_PDEATHSIG if
the pytest process itself dies).
"""

from __future__ import annotations

import atexit
import ctypes
import faulthandler
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SLUICE_BIN = REPO_ROOT / "target" / "debug" / "sluice"

# Bounds (seconds). Override via env for slow machines.
START_TIMEOUT = float(os.environ.get("SLUICE_START_TIMEOUT", "30"))
STOP_TIMEOUT = float(os.environ.get("SLUICE_STOP_TIMEOUT", "20"))
# Per-test watchdog: a soft timeout that raises in the test, then a hard one
# that dumps all thread stacks and exits the interpreter.
TEST_TIMEOUT = float(os.environ.get("SLUICE_TEST_TIMEOUT", "300"))
HARD_TIMEOUT_GRACE = 60.0

STDERR_TAIL_BYTES = 64 * 1024
# "ready" as a word ("Address already in use" must not count).
_READY_RE = re.compile(r"\bready\b", re.IGNORECASE)

# Don't descend into node_modules etc. when collecting.
collect_ignore = ["js"]


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------


def free_port() -> int:
    """Ask the kernel for a currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; bounded by ``timeout``.

    Returns the truthy value. Raises AssertionError on timeout, including the
    last falsy value / exception seen.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - reported below
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
        time.sleep(interval)


def _libc():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()
_PR_SET_PDEATHSIG = 1


def _child_preexec():
    # Make sure a broker never outlives the test process, even on a hard
    # watchdog exit or if pytest is SIGKILLed.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# Safety net for brokers still running at interpreter exit (normal path is the
# fixture finalizer).
_LIVE_PROCS: dict[int, subprocess.Popen] = {}


@atexit.register
def _kill_leftovers():
    for pid, proc in list(_LIVE_PROCS.items()):
        if proc.poll() is None:
            try:
                os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                pass
        _LIVE_PROCS.pop(pid, None)


class BrokerError(AssertionError):
    pass


# --------------------------------------------------------------------------
# Broker process wrapper
# --------------------------------------------------------------------------


class Broker:
    """One ``sluice serve`` process bound to fixed ports and a data dir.

    Attributes used by tests:
      bootstrap  "127.0.0.1:<port>"  (Kafka listener)
      admin      "127.0.0.1:<port2>" (admin HTTP listener)
      data_dir   pathlib.Path
      port, admin_port, host
    """

    host = "127.0.0.1"

    def __init__(self, binary: Path, workdir: Path, sets: dict[str, str] | None = None, name: str = "sluice"):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.name = name
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.workdir / "sluice-stderr.log"
        self.stdout_path = self.workdir / "sluice-stdout.log"
        self.sets = dict(sets or {})
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.exit_codes: list[int] = []

    # -- addresses --------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin(self) -> str:
        return f"{self.host}:{self.admin_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- logs -------------------------------------------------------------
    def stderr_text(self, tail: int | None = STDERR_TAIL_BYTES) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except FileNotFoundError:
            return "<no stderr captured>"
        if tail is not None and len(data) > tail:
            data = b"...[truncated]...\n" + data[-tail:]
        return data.decode("utf-8", "replace")

    def _marker(self, text: str):
        with open(self.stderr_path, "ab") as f:
            f.write(f"\n===== [sluice-it] {text} =====\n".encode())

    # -- lifecycle --------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "serve",
            "--listen",
            self.bootstrap,
            "--data-dir",
            str(self.data_dir),
            "--admin-listen",
            self.admin,
        ]
        for k, v in self.sets.items():
            cmd += ["--set", f"{k}={v}"]
        return cmd

    def start(self, timeout: float = START_TIMEOUT, new_ports_on_conflict: bool = True):
        """Start the broker; block until the Kafka port accepts connections and
        a line containing ``ready`` was printed to stderr (bounded)."""
        if self.is_running():
            raise BrokerError(f"{self.name}: start() while already running (pid {self.pid})")
        if not self.binary.exists():
            raise BrokerError(
                f"sluice binary not found at {self.binary} "
                f"(set SLUICE_BIN or run `cargo build --bin sluice`)"
            )
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            outcome = self._start_once(deadline)
            if outcome == "ok":
                return self
            # outcome == "addr-in-use": the broker exited early because a port
            # we picked was grabbed by someone else in the meantime (or, after
            # a crash, is still held). Retry a bounded number of times.
            if attempts >= 5 or time.monotonic() >= deadline:
                raise BrokerError(
                    f"{self.name}: could not bind after {attempts} attempts; stderr:\n{self.stderr_text()}"
                )
            if new_ports_on_conflict:
                self.port, self.admin_port = free_port(), free_port()
            time.sleep(0.5)

    def _start_once(self, deadline: float) -> str:
        self.starts += 1
        self._marker(f"start #{self.starts}: {' '.join(self.command())}")
        stderr_offset = self.stderr_path.stat().st_size
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        with open(self.stderr_path, "ab") as err, open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=str(self.workdir),
                env=env,
                preexec_fn=_child_preexec,
                close_fds=True,
            )
        _LIVE_PROCS[self.proc.pid] = self.proc

        port_ok = False
        while True:
            rc = self.proc.poll()
            if rc is not None:
                _LIVE_PROCS.pop(self.proc.pid, None)
                new_err = self._stderr_since(stderr_offset)
                if "address already in use" in new_err.lower() or "addrinuse" in new_err.lower():
                    return "addr-in-use"
                raise BrokerError(
                    f"{self.name}: exited early with code {rc} during startup; stderr:\n{self.stderr_text()}"
                )
            if not port_ok:
                port_ok = port_accepts(self.port, timeout=0.5)
            if port_ok and _READY_RE.search(self._stderr_since(stderr_offset)):
                return "ok"
            if time.monotonic() >= deadline:
                state = "port accepts but no 'ready' line on stderr" if port_ok else "port never accepted"
                self._kill_hard()
                raise BrokerError(
                    f"{self.name}: not ready within the startup bound ({state}); stderr:\n{self.stderr_text()}"
                )
            time.sleep(0.05)

    def _stderr_since(self, offset: int) -> str:
        with open(self.stderr_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def _kill_hard(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            _LIVE_PROCS.pop(self.proc.pid, None)

    def stop(self, timeout: float = STOP_TIMEOUT, expect_code: int | None = 0) -> int | None:
        """SIGTERM by PID, wait (bounded), assert the exit code. Idempotent."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self._marker("SIGTERM")
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_hard()
            raise BrokerError(
                f"{self.name}: did not exit within {timeout}s of SIGTERM (SIGKILLed it); "
                f"stderr:\n{self.stderr_text()}"
            )
        finally:
            _LIVE_PROCS.pop(self.proc.pid, None)
        self.exit_codes.append(rc)
        self._marker(f"exited with {rc}")
        if expect_code is not None and rc != expect_code:
            raise BrokerError(
                f"{self.name}: exit code after SIGTERM was {rc}, expected {expect_code}; "
                f"stderr:\n{self.stderr_text()}"
            )
        return rc

    def kill(self) -> int:
        """SIGKILL by PID (crash simulation) and reap it (bounded)."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name}: kill() but not running"
        self._marker("SIGKILL")
        os.kill(self.proc.pid, signal.SIGKILL)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BrokerError(f"{self.name}: still alive {STOP_TIMEOUT}s after SIGKILL")
        finally:
            _LIVE_PROCS.pop(self.proc.pid, None)
        self.exit_codes.append(rc)
        assert rc == -signal.SIGKILL, f"unexpected status after SIGKILL: {rc}"
        return rc

    def restart(self, clean: bool = True):
        """clean=True: SIGTERM (expect exit 0); clean=False: SIGKILL.
        Then start again on the same data dir and the same ports."""
        if clean:
            self.stop()
        else:
            self.kill()
        self.start(new_ports_on_conflict=False)
        return self

    def assert_alive(self):
        if not self.is_running():
            rc = self.proc.returncode if self.proc else None
            raise BrokerError(f"{self.name}: broker is not running (exit code {rc}); stderr:\n{self.stderr_text()}")

    def __repr__(self):
        return f"<Broker {self.name} {self.bootstrap} pid={self.pid}>"


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

_BROKERS_KEY = pytest.StashKey[list]()


def sluice_bin() -> Path:
    return Path(os.environ.get("SLUICE_BIN", str(DEFAULT_SLUICE_BIN)))


@pytest.fixture
def broker_factory(request, tmp_path):
    """Factory: ``broker_factory(sets={"num.partitions": "3"})`` starts a new
    broker in its own directory under tmp_path and stops it at teardown
    (SIGTERM, exit code must be 0)."""
    brokers: list[Broker] = []
    request.node.stash[_BROKERS_KEY] = brokers

    def make(sets: dict[str, str] | None = None, start: bool = True) -> Broker:
        b = Broker(sluice_bin(), tmp_path / f"broker{len(brokers)}", sets=sets, name=f"sluice#{len(brokers)}")
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make

    errors = []
    for b in reversed(brokers):
        try:
            b.stop()
        except Exception as e:  # noqa: BLE001 - collect, then fail once
            errors.append(str(e))
    if errors:
        pytest.fail("broker teardown failed:\n" + "\n\n".join(errors), pytrace=False)


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A fresh broker with default settings (function scope)."""
    return broker_factory()


@pytest.fixture
def unique_topic(request):
    """Factory for topic names unique per test invocation."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60].strip("-")
    counter = iter(range(1000))

    def make(suffix: str = "") -> str:
        n = next(counter)
        return f"it-{base}-{n}{('-' + suffix) if suffix else ''}-{uuid.uuid4().hex[:6]}"

    return make


def peer_binary(name: str) -> str:
    """Locate an external peer tool; fail (or skip if SLUICE_ALLOW_MISSING_PEERS=1)."""
    path = shutil.which(name)
    if path:
        return path
    msg = f"`{name}` not found on PATH (install it, e.g. `apt-get install -y {name}`)"
    if os.environ.get("SLUICE_ALLOW_MISSING_PEERS") == "1":
        pytest.skip(msg + "; skipped because SLUICE_ALLOW_MISSING_PEERS=1")
    pytest.fail(msg + "; set SLUICE_ALLOW_MISSING_PEERS=1 to skip instead", pytrace=False)


@pytest.fixture
def kcat() -> str:
    return peer_binary("kcat")


# --------------------------------------------------------------------------
# watchdog + failure reporting
# --------------------------------------------------------------------------


class SluiceTestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _watchdog(request):
    """Bound every test (setup + call + teardown of function fixtures)."""
    use_alarm = hasattr(signal, "SIGALRM")
    if use_alarm:

        def on_alarm(signum, frame):
            raise SluiceTestTimeout(f"{request.node.nodeid} exceeded SLUICE_TEST_TIMEOUT={TEST_TIMEOUT}s")

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    faulthandler.dump_traceback_later(TEST_TIMEOUT + HARD_TIMEOUT_GRACE, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    brokers = item.stash.get(_BROKERS_KEY, None)
    if not brokers:
        return
    for b in brokers:
        report.sections.append(
            (
                f"sluice stderr ({b.name}, {b.bootstrap}, {report.when}) [{b.stderr_path}]",
                b.stderr_text(),
            )
        )
