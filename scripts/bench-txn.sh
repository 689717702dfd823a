#!/usr/bin/env bash
# Transactions benchmark: builds the release `sluice`, then runs bench/txn_bench.py with
# confluent-kafka from .venv (created from integration/requirements.txt if missing): idempotent
# vs transactional (commit every 100 ms) produce of 2M x 100 B records, 1 and 3 partitions,
# 3 alternating runs each, one broker on a free loopback port with a scratch data dir
# (target/bench-txn-work), stopped by PID. Extra arguments go to the script, e.g.
#   bash scripts/bench-txn.sh --records 500000 --partitions 1
# Output: a Markdown table on stdout and in target/bench-txn-report.md (for BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
cargo build --release --bin sluice
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import confluent_kafka' >/dev/null 2>&1; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r integration/requirements.txt
fi
exec .venv/bin/python bench/txn_bench.py --sluice "$TARGET_DIR/release/sluice" \
  --work "$TARGET_DIR/bench-txn-work" --out "$TARGET_DIR/bench-txn-report.md" "$@"
