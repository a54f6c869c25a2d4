#!/bin/sh
# Run every bpfnexus-vs-peers benchmark and print a summary table.
# As root, from anywhere:  sh bench/run_all.sh [ROUNDS]   (default 10)
# Slow peer runs are capped: strace -c -f and bpftrace printf at
# PEER_RUNS (default 3). Results: bench/out/*.json (or $BENCH_OUT).
set -eu
cd "$(dirname "$0")/.."
ROUNDS="${1:-10}"
PEER_RUNS="${PEER_RUNS:-3}"
cargo build --release -q -p bpfnexus
export BENCH_NO_BUILD=1
python3 bench/oneshot.py "$ROUNDS"
python3 bench/count.py "$ROUNDS" "$PEER_RUNS"
python3 bench/printf.py "$ROUNDS" "$PEER_RUNS"
echo
echo "Summary (medians; details above and in ${BENCH_OUT:-bench/out}/*.json)"
python3 bench/summary.py
