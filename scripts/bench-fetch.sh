#!/usr/bin/env bash
# Fetch-path benchmark against an older build, same run (bench/fetch_bench.py): broker CPU per
# million records consumed, and the cost of 1,000 idle long-polling consumers.
#   bash scripts/bench-fetch.sh [BASELINE_COMMIT] [fetch_bench.py options...]
# BASELINE_COMMIT defaults to c763b63 (before the partition layer and zero-copy fetches). It is
# built in target/bench-baseline (a git worktree with its own target dir).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
base="${1:-c763b63}"
shift || true
cargo build --release --bin sluice
wt=target/bench-baseline
if [ ! -d "$wt/.git" ] && [ ! -f "$wt/.git" ]; then
  git worktree add --detach "$wt" "$base"
else
  git -C "$wt" checkout --detach "$base"
fi
(cd "$wt" && CARGO_TARGET_DIR="$PWD/target" cargo build --release --bin sluice)
python3 bench/fetch_bench.py --sluice target/release/sluice \
  --baseline "$wt/target/release/sluice" --out target/fetch-bench.md "$@"
