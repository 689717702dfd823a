#!/usr/bin/env bash
# Broker benchmarks: builds the release `sluice` and librdkafka's rdkafka_performance (from the
# sources the rdkafka-sys crate vendors, via scripts/librdkafka-tests.sh's build), then runs
# bench/broker_bench.py: baselines (loopback TCP, write() to the same disk), the anchor
# (`rdkafka_performance -P -s 100 -c 1000000 -a 1`), the partitions x record size x acks matrix,
# latency at half of peak, CPU per million records, RSS, 1,000 partitions.
# Output: target/bench-report.md (copy the figures into BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo build --release --bin sluice
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
LIBRD="$(ls -d "$TARGET_DIR"/librdkafka-tests/librdkafka-* 2>/dev/null | tail -1 || true)"
if [ -z "$LIBRD" ] || [ ! -f "$LIBRD/src/librdkafka.so" ]; then
  # librdkafka-tests.sh builds librdkafka from rdkafka-sys's vendored sources on its first
  # run (and runs its allow-listed tests against a debug broker).
  echo "building librdkafka via scripts/librdkafka-tests.sh"
  cargo build --bin sluice
  bash scripts/librdkafka-tests.sh
  LIBRD="$(ls -d "$TARGET_DIR"/librdkafka-tests/librdkafka-* | tail -1)"
fi
make -C "$LIBRD/examples" rdkafka_performance >/dev/null
python3 bench/broker_bench.py --sluice "$TARGET_DIR/release/sluice" \
  --rdkafka-performance "$LIBRD/examples/rdkafka_performance" --lib-dir "$LIBRD/src" "$@"
