#!/usr/bin/env bash
# Runs the exactly-once consume-transform-produce test under broker SIGKILLs N times in a row
# (default 20) against the debug build, and prints how many passed. Not part of CI (about a
# minute a run); the CI runs the test once.
#   bash scripts/eos-loop.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
n="${1:-20}"
cargo build --bin sluice >/dev/null 2>&1 || { echo "build failed" >&2; exit 1; }
passed=0
for i in $(seq 1 "$n"); do
  if .venv/bin/python -m pytest -q -x \
      "integration/test_transactions.py::test_consume_transform_produce_exactly_once_across_broker_kills" \
      >"target/eos-loop-$i.log" 2>&1; then
    passed=$((passed + 1)); echo "run $i: passed"
  else
    echo "run $i: FAILED (target/eos-loop-$i.log)"
  fi
done
echo "$passed/$n passed"
[ "$passed" -eq "$n" ]
