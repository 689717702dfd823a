#!/usr/bin/env bash
# librdkafka's own regression suite (tests/test-runner) against a real sluice broker.
#
#   scripts/librdkafka-tests.sh                  run integration/librdkafka/allowlist.txt;
#                                                exit 1 if any allow-listed test fails
#   scripts/librdkafka-tests.sh 0012 0017 ...    run these tests instead (trying new ones)
#   scripts/librdkafka-tests.sh --each [N ...]   one test-runner process per test, each with
#                                                its own timeout; prints a PASS/FAIL table
#   --scenario noautocreate                      scenario for tests given as arguments
#                                                (allow-list lines carry their own)
#   SUBTESTS=<substring> ...                     (env) only sub-tests whose name contains it
#
# The librdkafka sources are the ones the rdkafka-sys crate vendors (the version in
# Cargo.lock, so the rdkafka crate peer and this suite test the same librdkafka). They
# are copied to <target>/librdkafka-tests/librdkafka-<version> (the registry copy is never
# modified), configured without SSL/SASL/curl, and built once; later runs reuse the build.
# The test-runner runs with LD_LIBRARY_PATH on that build, not on Debian's librdkafka.
#
# Each scenario gets a fresh broker on free loopback ports with a fresh data dir, stopped
# by PID (SIGTERM, must exit 0) when its tests are done, and on any exit (trap):
#   default        auto.create.topics.enable=true,  num.partitions=4 (librdkafka's default
#                  test cluster, tests/scenarios/default.json)
#   noautocreate   auto.create.topics.enable=false, num.partitions=4
#
# test-runner flags: -L skip local (broker-less) tests, -E skip sockem (socket emulation)
# tests, -Q quick mode (fewer messages, shorter waits; sub-tests not marked quick are
# skipped), -P idempotent producer everywhere, -p<N> N tests in parallel, -s <scenario>.
# Build needs: cc, c++, make, pkg-config, perl, python3; zlib1g-dev and libzstd-dev for
# gzip/zstd (snappy and lz4 are built in).
#
# Env knobs: SLUICE_BIN (default <target>/debug/sluice), CARGO_TARGET_DIR,
# LIBRDKAFKA_JOBS (make -j, default 2), LIBRDKAFKA_PARALLEL (-p, default 2),
# LIBRDKAFKA_RUN_TIMEOUT (seconds for one test-runner run, default 900),
# LIBRDKAFKA_EACH_TIMEOUT (seconds per test with --each, default 300),
# TEST_KAFKA_VERSION (the broker version tests assume, default 3.7.0),
# LIBRDKAFKA_TIMEOUT_MULTIPLIER (test.timeout.multiplier, default 2),
# LIBRDKAFKA_QUICK (1: pass -Q, the default; 0: full-size tests),
# LIBRDKAFKA_IDEMPOTENT (1: pass -P, every producer with enable.idempotence=true),
# SLUICE_START_TIMEOUT, SLUICE_STOP_TIMEOUT (seconds, default 30 and 20).
#
# Runs of this script are serialized with flock on <target>/librdkafka-tests/.lock (they
# share the build and the run directory). The broker runs from a hard link to SLUICE_BIN
# taken at the start, so a concurrent `cargo build` cannot swap it in the middle of a run.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$PWD"

die() { printf 'librdkafka-tests: error: %s\n' "$*" >&2; exit 2; }
say() { printf '==== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

EACH=0
GIVEN=()
GIVEN_SCENARIO=default
while [ $# -gt 0 ]; do
  case "$1" in
    --each) EACH=1 ;;
    --scenario) [ $# -ge 2 ] || die "--scenario needs a name"; GIVEN_SCENARIO="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    [0-9][0-9][0-9][0-9]) GIVEN+=("$1") ;;
    *) die "unknown argument: $1 (expected 4-digit test numbers, --each, --scenario NAME)" ;;
  esac
  shift
done

JOBS="${LIBRDKAFKA_JOBS:-2}"
PARALLEL="${LIBRDKAFKA_PARALLEL:-2}"
RUN_TIMEOUT="${LIBRDKAFKA_RUN_TIMEOUT:-900}"
EACH_TIMEOUT="${LIBRDKAFKA_EACH_TIMEOUT:-300}"
KAFKA_VERSION="${TEST_KAFKA_VERSION:-3.7.0}"
MULTIPLIER="${LIBRDKAFKA_TIMEOUT_MULTIPLIER:-2}"
RUNNER_FLAGS=(-E -L)
[ "${LIBRDKAFKA_QUICK:-1}" = 0 ] || RUNNER_FLAGS=(-Q "${RUNNER_FLAGS[@]}")
[ "${LIBRDKAFKA_IDEMPOTENT:-0}" = 0 ] || RUNNER_FLAGS+=(-P)
START_TIMEOUT="${SLUICE_START_TIMEOUT:-30}"
STOP_TIMEOUT="${SLUICE_STOP_TIMEOUT:-20}"
ALLOWLIST="$REPO/integration/librdkafka/allowlist.txt"

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO/$TARGET_DIR" ;; esac
SLUICE_BIN="${SLUICE_BIN:-$TARGET_DIR/debug/sluice}"
[ -x "$SLUICE_BIN" ] || die "sluice binary not found at $SLUICE_BIN (cargo build --bin sluice, or set SLUICE_BIN)"
command -v python3 >/dev/null || die "python3 not found"

scenario_sets() {
  case "$1" in
    default) echo "--set auto.create.topics.enable=true --set num.partitions=4" ;;
    noautocreate) echo "--set auto.create.topics.enable=false --set num.partitions=4" ;;
    *) die "unknown scenario $1 (default, noautocreate)" ;;
  esac
}

# ---------------------------------------------------------------------------
# Tests to run, per scenario: the allow-list ("NNNN [scenario]  # comment") or the
# arguments.
# ---------------------------------------------------------------------------
declare -A TESTS_BY_SCENARIO=()
SCENARIOS=()
add_test() { # $1 test, $2 scenario
  scenario_sets "$2" > /dev/null
  if [ -z "${TESTS_BY_SCENARIO[$2]+set}" ]; then
    SCENARIOS+=("$2")
    TESTS_BY_SCENARIO[$2]=""
  fi
  TESTS_BY_SCENARIO[$2]+="$1 "
}
if [ "${#GIVEN[@]}" -gt 0 ]; then
  MODE="given"
  for t in "${GIVEN[@]}"; do add_test "$t" "$GIVEN_SCENARIO"; done
else
  MODE="allow-list"
  [ -f "$ALLOWLIST" ] || die "no allow-list at $ALLOWLIST"
  while read -r t scenario _; do
    [[ "$t" =~ ^[0-9]{4}$ ]] || die "allow-list: bad line starting with ${t@Q}"
    add_test "$t" "${scenario:-default}"
  done < <(sed 's/#.*//' "$ALLOWLIST" | grep -E '[^[:space:]]')
fi
[ "${#SCENARIOS[@]}" -gt 0 ] || die "no tests to run"

# ---------------------------------------------------------------------------
# Locate rdkafka-sys's vendored librdkafka (the version in Cargo.lock).
# ---------------------------------------------------------------------------
RDSYS_DIR="$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
for p in meta["packages"]:
    if p["name"] == "rdkafka-sys":
        print(os.path.dirname(p["manifest_path"]))
        break
')" || true
[ -n "$RDSYS_DIR" ] || die "rdkafka-sys not found via cargo metadata (is integration/rdkafka-peer a workspace member and Cargo.lock up to date?)"
LIBRDKAFKA_SRC="$RDSYS_DIR/librdkafka"
[ -f "$LIBRDKAFKA_SRC/tests/test.c" ] || die "$LIBRDKAFKA_SRC has no tests/test.c"
RDSYS_VERSION="$(basename "$RDSYS_DIR")"
LIBRDKAFKA_VERSION="${RDSYS_VERSION##*+}"

WORK="$TARGET_DIR/librdkafka-tests"
SRC="$WORK/librdkafka-$LIBRDKAFKA_VERSION"
STAMP="$SRC/.sluice-build-ok"
mkdir -p "$WORK"
exec 9> "$WORK/.lock"
if ! flock -n 9; then
  say "another librdkafka-tests run holds $WORK/.lock; waiting (at most 30 min)"
  flock -w 1800 9 || die "gave up waiting for $WORK/.lock"
fi

# ---------------------------------------------------------------------------
# Build (once): copy, configure, make libs and tests/test-runner.
# ---------------------------------------------------------------------------
CONFIGURE_FLAGS=(--disable-ssl --disable-gssapi --disable-curl --enable-zlib --enable-zstd --disable-lz4-ext)
build_fingerprint="$LIBRDKAFKA_VERSION ${CONFIGURE_FLAGS[*]}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$build_fingerprint" ] && [ -x "$SRC/tests/test-runner" ]; then
  say "librdkafka $LIBRDKAFKA_VERSION already built at $SRC"
else
  say "building librdkafka $LIBRDKAFKA_VERSION from $LIBRDKAFKA_SRC (make -j$JOBS)"
  build_start=$SECONDS
  rm -rf "$SRC"
  cp -a "$LIBRDKAFKA_SRC" "$SRC"
  chmod -R u+w "$SRC"
  (
    cd "$SRC"
    ./configure "${CONFIGURE_FLAGS[@]}" > "$WORK/configure.log" 2>&1 \
      || { tail -40 "$WORK/configure.log"; exit 1; }
    grep -E 'define WITH_(ZLIB|ZSTD|SNAPPY|SSL|SASL|CURL)\b' config.h || true
    make -j"$JOBS" libs > "$WORK/make-libs.log" 2>&1 \
      || { tail -40 "$WORK/make-libs.log"; exit 1; }
    make -j"$JOBS" -C tests test-runner > "$WORK/make-tests.log" 2>&1 \
      || { tail -40 "$WORK/make-tests.log"; exit 1; }
  ) || die "librdkafka build failed (logs in $WORK)"
  echo "$build_fingerprint" > "$STAMP"
  say "librdkafka built in $((SECONDS - build_start)) s"
fi

export LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
linked="$(ldd "$SRC/tests/test-runner" | grep -E 'librdkafka(\+\+)?\.so' || true)"
echo "$linked"
case "$linked" in
  *"$SRC/src/librdkafka.so"*) ;;
  *) die "test-runner does not resolve librdkafka.so to $SRC/src (ldd: $linked)" ;;
esac

# ---------------------------------------------------------------------------
# Broker: free loopback ports, a fresh data dir, stopped by PID.
# ---------------------------------------------------------------------------
BROKER_PID=""
PORT=""
RUN=""        # this scenario's directory: data, logs
BROKER_LOG=""

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# $1: scenario. Sets BROKER_PID and PORT.
start_broker() {
  local scenario="$1" attempt offset deadline admin_port
  local -a sets
  read -r -a sets <<< "$(scenario_sets "$scenario")"
  for attempt in 1 2 3 4 5; do
    PORT="$(free_port)"
    admin_port="$(free_port)"
    [ "$PORT" != "$admin_port" ] || continue
    rm -rf "$RUN/data"
    mkdir -p "$RUN/data"
    printf '\n===== [librdkafka-tests] start (%s) on 127.0.0.1:%s =====\n' "$scenario" "$PORT" >> "$BROKER_LOG"
    offset=$(stat -c %s "$BROKER_LOG")
    NO_COLOR=1 RUST_BACKTRACE=1 "$SLUICE_BIN" serve \
      --listen "127.0.0.1:$PORT" --data-dir "$RUN/data" --admin-listen "127.0.0.1:$admin_port" \
      "${sets[@]}" < /dev/null >> "$RUN/sluice-stdout.log" 2>> "$BROKER_LOG" &
    BROKER_PID=$!
    deadline=$((SECONDS + START_TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
      if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        wait "$BROKER_PID" || true
        BROKER_PID=""
        if tail -c +"$((offset + 1))" "$BROKER_LOG" | grep -qi 'address already in use'; then
          break # lost a port race: pick new ports
        fi
        tail -40 "$BROKER_LOG" >&2
        die "sluice exited during startup"
      fi
      if tail -c +"$((offset + 1))" "$BROKER_LOG" | grep -q 'sluice ready'; then
        echo "sluice pid $BROKER_PID on 127.0.0.1:$PORT ($scenario: ${sets[*]}; data $RUN/data)"
        return 0
      fi
      sleep 0.1
    done
    if [ -n "$BROKER_PID" ]; then
      kill -KILL "$BROKER_PID" 2>/dev/null || true
      wait "$BROKER_PID" 2>/dev/null || true
      BROKER_PID=""
      tail -40 "$BROKER_LOG" >&2
      die "sluice not ready within ${START_TIMEOUT} s"
    fi
  done
  die "sluice could not bind a free port after 5 attempts"
}

# SIGTERM by PID, bounded wait, then SIGKILL. Returns the exit status (0 after a clean
# SIGTERM exit).
stop_broker() {
  [ -n "$BROKER_PID" ] || return 0
  local pid=$BROKER_PID rc=0 deadline
  BROKER_PID=""
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || rc=$?
    echo "sluice (pid $pid) had already exited with status $rc" >&2
    return $((rc == 0 ? 1 : rc))
  fi
  kill -TERM "$pid"
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "sluice (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT} s; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
  fi
  wait "$pid" || rc=$?
  return "$rc"
}

trap 'stop_broker || true' EXIT
trap 'exit 130' INT TERM

write_test_conf() {
  cat > "$RUN/test.conf" <<EOF
# Written by scripts/librdkafka-tests.sh for this run.
metadata.broker.list=127.0.0.1:$PORT
test.timeout.multiplier=$MULTIPLIER
EOF
}

strip_ansi() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }

# "name=STATUS ..." for each test in a test-runner log's summary table.
summary_of() {
  strip_ansi "$1" | grep -E '^\| [0-9]{4}_' \
    | awk -F'|' '{ gsub(/ /, "", $2); gsub(/ /, "", $3); printf "%s=%s ", $2, $3 }' || true
}

# Runs test-runner once. $1: TESTS value, $2: scenario, $3: timeout (s), $4: log file.
# Returns its status (124 or 137 on timeout).
run_runner() {
  local tests="$1" scenario="$2" tmout="$3" log="$4" rc=0
  (
    cd "$SRC/tests"
    TESTS="$tests" TEST_KAFKA_VERSION="$KAFKA_VERSION" RDKAFKA_GITVER="$RDSYS_VERSION" \
      RDKAFKA_TEST_CONF="$RUN/test.conf" \
      timeout -k 10 "$tmout" ./test-runner "${RUNNER_FLAGS[@]}" -p"$PARALLEL" -s "$scenario"
  ) > "$log" 2>&1 || rc=$?
  return "$rc"
}

# $1: scenario; the tests are in TESTS_BY_SCENARIO. Sets failed=1 on any failure.
run_scenario() {
  local scenario="$1" t t0 rc result statuses broker_rc=0
  local -a tests
  read -r -a tests <<< "${TESTS_BY_SCENARIO[$scenario]}"
  RUN="$WORK/run/$scenario"
  BROKER_LOG="$RUN/sluice-stderr.log"
  mkdir -p "$RUN"
  start_broker "$scenario"
  write_test_conf
  local start=$SECONDS
  if [ "$EACH" -eq 0 ]; then
    local tests_csv
    tests_csv="$(IFS=,; echo "${tests[*]}")"
    say "[$scenario] ${#tests[@]} tests ($MODE): $tests_csv"
    say "[$scenario] test-runner ${RUNNER_FLAGS[*]} -p$PARALLEL -s $scenario, TEST_KAFKA_VERSION=$KAFKA_VERSION, timeout ${RUN_TIMEOUT}s"
    rc=0
    run_runner "$tests_csv" "$scenario" "$RUN_TIMEOUT" "$RUN/test-runner.log" || rc=$?
    # The summary table and the failure reasons; the whole log stays in $RUN.
    strip_ansi "$RUN/test-runner.log" | grep -E '^(TEST .*SUMMARY|#=+#|\| )' || true
    strip_ansi "$RUN/test-runner.log" | grep -E -A3 '^### Test .* failed' | head -60 || true
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      echo "[$scenario] test-runner timed out (${RUN_TIMEOUT}s or a test's own timeout)" >&2
      failed=1
    elif [ "$rc" -ne 0 ]; then
      echo "[$scenario] test-runner exited with status $rc" >&2
      failed=1
    elif ! summary_of "$RUN/test-runner.log" | grep -q '=PASSED'; then
      echo "[$scenario] test-runner passed nothing (all skipped?)" >&2
      failed=1
    fi
  else
    say "[$scenario] ${#tests[@]} tests one by one ($MODE), ${EACH_TIMEOUT}s each"
    printf '%-6s %-8s %6s  %s\n' TEST RESULT SECONDS "VARIANTS (logs: $RUN/test-NNNN.log)" > "$RUN/each-summary.txt"
    for t in "${tests[@]}"; do
      if [ -z "$BROKER_PID" ] || ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "[$scenario] sluice is not running before test $t; starting a new one" >&2
        stop_broker || true
        start_broker "$scenario"
        write_test_conf
      fi
      t0=$SECONDS
      rc=0
      run_runner "$t" "$scenario" "$EACH_TIMEOUT" "$RUN/test-$t.log" || rc=$?
      statuses="$(summary_of "$RUN/test-$t.log")"
      if [ "$rc" -eq 0 ]; then
        case "$statuses" in
          *=PASSED*) result=PASS ;;
          *) result=SKIPPED ;;
        esac
      elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        result=TIMEOUT
        failed=1
      else
        result=FAIL
        failed=1
      fi
      if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        result="$result+BROKER-DIED"
        failed=1
      fi
      printf '%-6s %-8s %6d  %s\n' "$t" "$result" "$((SECONDS - t0))" "$statuses" | tee -a "$RUN/each-summary.txt"
    done
    echo
    cat "$RUN/each-summary.txt"
  fi
  say "[$scenario] tests took $((SECONDS - start)) s"

  stop_broker || broker_rc=$?
  if [ "$broker_rc" -ne 0 ]; then
    echo "[$scenario] sluice did not exit cleanly on SIGTERM (status $broker_rc); tail of its stderr:" >&2
    tail -40 "$BROKER_LOG" >&2
    failed=1
  fi
  if grep -q 'panicked at' "$BROKER_LOG"; then
    echo "[$scenario] sluice panicked during the run:" >&2
    grep -E -A5 'panicked at' "$BROKER_LOG" | head -40 >&2
    failed=1
  fi
}

rm -rf "$WORK/run"
mkdir -p "$WORK/run"
# The broker binary for this run: a hard link keeps this inode even if cargo replaces
# SLUICE_BIN meanwhile (copy if the link is impossible, e.g. another filesystem).
ln -f "$SLUICE_BIN" "$WORK/run/sluice" 2>/dev/null || cp "$SLUICE_BIN" "$WORK/run/sluice"
echo "sluice binary: $SLUICE_BIN ($(date -r "$SLUICE_BIN" '+%F %T'), $(stat -c %s "$SLUICE_BIN") bytes)"
SLUICE_BIN="$WORK/run/sluice"
failed=0
for scenario in "${SCENARIOS[@]}"; do
  run_scenario "$scenario"
done

if [ "$failed" -ne 0 ]; then
  say "FAILED (logs: $WORK/run)"
  exit 1
fi
say "all tests passed ($MODE: ${SCENARIOS[*]})"
