#!/bin/sh
# Regenerates the golden files from real bpftrace (Debian's bpftrace 0.17.0):
# for each NAME.bt, stdout of `bpftrace NAME.bt` goes to NAME.txt and stdout of
# `bpftrace -f json NAME.bt` to NAME.json. Run as root from this directory.
set -e
cd "$(dirname "$0")"
for bt in *.bt; do
  name=${bt%.bt}
  bpftrace "$bt" > "$name.txt" 2>/dev/null
  bpftrace -f json "$bt" > "$name.json" 2>/dev/null
done
