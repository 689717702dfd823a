#!/usr/bin/env bash
# Sluice: the project's one test command.
#
#   1. peers: kcat (apt, only if missing), Python venv at .venv with
#      integration/requirements.txt, kafkajs in integration/js/node_modules
#   2. cargo build --bin sluice
#   3. cargo test --workspace (with a 60 s fuzz smoke run)
#   4. pytest integration   (real broker + confluent-kafka, kafka-python, kcat, raw sockets)
#   5. node --test integration/js   (real broker + kafkajs, read back with kcat)
#   6. scripts/librdkafka-tests.sh  (librdkafka's own test-runner, allow-listed tests)
#
# Works on a fresh Debian machine with Python 3.11, node 20 and Rust installed.
# Env knobs: CARGO_BUILD_JOBS (default 2), CARGO_TARGET_DIR, SLUICE_BIN
# (default <target>/debug/sluice), SLUICE_ALLOW_MISSING_PEERS=1 (skip kcat
# tests instead of failing when kcat is absent), SLUICE_TEST_TIMEOUT,
# SLUICE_START_TIMEOUT, SLUICE_STOP_TIMEOUT (seconds).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$PWD"

step() { printf '\n==== [%s] %s ====\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot apt-get install"
  SUDO=(sudo)
fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    "${SUDO[@]}" apt-get update
    apt_updated=1
  fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --------------------------------------------------------------------------
step "1/6 install test peers"
# --------------------------------------------------------------------------
need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
# The rdkafka crate peer builds librdkafka with cmake; librdkafka's own suite builds it with
# its configure script. zlib and zstd give them gzip and zstd.
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# librdkafka's cmake project enables C++ and the test-runner has C++ tests; both builds use make.
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
# librdkafka 2.12's cmake build includes <curl/curl.h> even with WITH_CURL=0
# (confluentinc/librdkafka#5135): the headers must exist; nothing links libcurl. They live in
# the multiarch include dir, so probe with the compiler instead of testing a path.
printf '#include <curl/curl.h>\n' | cc -E -x c - >/dev/null 2>&1 || need_apt+=(libcurl4-openssl-dev)
[ -f /usr/include/zstd.h ] || need_apt+=(libzstd-dev)
[ -f /usr/include/zlib.h ] || need_apt+=(zlib1g-dev)
# Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing via apt: ${need_apt[*]}"
  apt_install "${need_apt[@]}"
fi
command -v kcat >/dev/null 2>&1 && kcat -V | sed -n '4p'
command -v node >/dev/null 2>&1 || die "node (>= 20) not found on PATH"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH"
node -e 'const m = +process.versions.node.split(".")[0]; if (m < 20) { console.error(`node ${process.versions.node} < 20`); process.exit(1) }'

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv"
  python3 -m venv .venv
fi
req_hash="$(hash_of integration/requirements.txt)"
if [ "$(cat .venv/.sluice-requirements.sha256 2>/dev/null || true)" != "$req_hash" ]; then
  echo "pip install -r integration/requirements.txt"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r integration/requirements.txt
  echo "$req_hash" > .venv/.sluice-requirements.sha256
else
  echo ".venv up to date with integration/requirements.txt"
fi
.venv/bin/python -c 'import confluent_kafka, kafka, pytest; print("confluent-kafka", __import__("importlib.metadata").metadata.version("confluent-kafka"), "librdkafka", confluent_kafka.libversion()[0], "| kafka-python", kafka.__version__, "| pytest", pytest.__version__)'

(
  cd integration/js
  if [ -f package-lock.json ]; then js_hash="$(hash_of package.json package-lock.json)"; else js_hash="$(hash_of package.json)"; fi
  if [ "$(cat node_modules/.sluice-stamp 2>/dev/null || true)" != "$js_hash" ]; then
    if [ -f package-lock.json ]; then
      npm ci --no-audit --no-fund
    else
      npm install --no-audit --no-fund
    fi
    echo "$js_hash" > node_modules/.sluice-stamp
  else
    echo "integration/js/node_modules up to date"
  fi
  node -e 'console.log("kafkajs", require("kafkajs/package.json").version)'
)

# --------------------------------------------------------------------------
step "2/6 cargo build --bin sluice"
# --------------------------------------------------------------------------
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo build --bin sluice
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO/$TARGET_DIR" ;; esac
export SLUICE_BIN="${SLUICE_BIN:-$TARGET_DIR/debug/sluice}"
[ -x "$SLUICE_BIN" ] || die "built binary not found at $SLUICE_BIN"
echo "SLUICE_BIN=$SLUICE_BIN"

# --------------------------------------------------------------------------
step "3/6 cargo test --workspace"
# --------------------------------------------------------------------------
# The fuzz smoke test (broker/tests/fuzz_decode.rs) runs for a bounded time.
export SLUICE_FUZZ_SECS="${SLUICE_FUZZ_SECS:-60}"
cargo test --workspace

# Steps 4 and 5 both run even if one fails; the script fails if either did.
e2e_failed=()

# --------------------------------------------------------------------------
step "4/6 pytest integration (real broker: confluent-kafka, kafka-python, kcat, raw sockets)"
# --------------------------------------------------------------------------
# No pytest-timeout: every test bounds its own waits, and conftest.py adds a
# per-test watchdog (SLUICE_TEST_TIMEOUT, default 300 s).
if ! .venv/bin/python -m pytest integration -v -rfEs; then
  e2e_failed+=("pytest integration")
fi

# --------------------------------------------------------------------------
step "5/6 node --test integration/js (real broker: kafkajs + kcat)"
# --------------------------------------------------------------------------
if ! node --test integration/js; then
  e2e_failed+=("node --test integration/js")
fi

# --------------------------------------------------------------------------
step "6/6 librdkafka's own test suite (integration/librdkafka/allowlist.txt)"
# --------------------------------------------------------------------------
if ! bash scripts/librdkafka-tests.sh; then
  e2e_failed+=("librdkafka test suite")
fi

if [ "${#e2e_failed[@]}" -gt 0 ]; then
  printf '\nFAILED: %s\n' "${e2e_failed[*]}" >&2
  exit 1
fi
step "all tests passed"
