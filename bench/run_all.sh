#!/bin/sh
# Run every bpfnexus-vs-peers benchmark and print a summary table.
# As root, from anywhere:  sh bench/run_all.sh [ROUNDS]   (default 10)
# Slow peer runs are capped: strace -c -f and bpftrace printf at
# PEER_RUNS (default 3). Results: bench/out/*.json (or $BENCH_OUT).
# Don't edit this file while it runs: sh reads it as it goes.
set -eu
cd "$(dirname "$0")/.."
ROUNDS="${1:-10}"
PEER_RUNS="${PEER_RUNS:-3}"
cargo build --release -q -p bpfnexus
# One private copy for every script: other builds may replace
# target/release/bpfnexus while the benchmarks run.
BENCH_BINARY="$(mktemp -d /tmp/bpfnexus-bench-XXXXXX)/bpfnexus"
cp target/release/bpfnexus "$BENCH_BINARY"
BENCH_BINARY_REVISION="$(git rev-parse --short HEAD)$(git status --porcelain --untracked-files=no | grep -q . && echo '+uncommitted changes' || true)"
export BENCH_BINARY BENCH_BINARY_REVISION
python3 bench/oneshot.py "$ROUNDS"
python3 bench/count.py "$ROUNDS" "$PEER_RUNS"
python3 bench/printf.py "$ROUNDS" "$PEER_RUNS"
python3 bench/variants.py "$ROUNDS"
echo
echo "Summary (medians; details above and in ${BENCH_OUT:-bench/out}/*.json)"
python3 bench/summary.py
