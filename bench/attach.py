#!/usr/bin/env python3
"""Process start -> one tracepoint attached, and peak RSS, side by side.

Each subject is started N times. The time from just before spawning it to the
moment its "attached" marker line is read from its output is recorded, as is
its whole wall time and its peak RSS (GNU time's %M). Subjects:

  * nexus-kernel's `attach_one` example: our loader alone (issue: Foundation).
  * `bpfnexus -e` with the same tracepoint and a BEGIN that prints a marker
    (BEGIN runs after every probe is attached), when the CLI can run it.
  * `bpftrace -e` with the same program, when bpftrace is installed.

Run as root from the repository root:  python3 bench/attach.py [N]
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 15
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = 'tracepoint:syscalls:sys_enter_getppid { @ = count(); } BEGIN { printf("attached\\n"); exit(); }'


RSS_FILE = "/tmp/bpfnexus-bench-rss"


def run_once(cmd, marker):
    # Peak RSS comes from GNU time: ru_maxrss survives exec, so a child forked
    # straight from this Python process would report Python's own ~14 MB.
    cmd = ["/usr/bin/time", "-f", "%M", "-o", RSS_FILE] + cmd
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    attached = None
    for line in p.stdout:
        if attached is None and marker in line.decode(errors="replace"):
            attached = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    status = p.wait()
    end = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    if status != 0 or attached is None:
        return None
    with open(RSS_FILE) as f:
        rss_kb = int(f.read().split()[-1])
    return (attached - t0) / 1e6, (end - t0) / 1e6, rss_kb / 1024


def measure(name, cmd, marker):
    runs = [r for r in (run_once(cmd, marker) for _ in range(N)) if r]
    if len(runs) < N:
        print(f"{name}: {N - len(runs)} of {N} runs failed; command: {' '.join(cmd)}")
    if not runs:
        return None
    att = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    rss = max(r[2] for r in runs)
    print(f"{name:<22} start->attached {att:8.2f} ms   wall {wall:8.2f} ms   peak RSS {rss:6.1f} MB   (median of {len(runs)})")
    return att, wall, rss


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "nexus-kernel", "--example", "attach_one",
                    "-p", "bpfnexus"], cwd=ROOT, check=True)
    results = {}
    results["loader"] = measure("nexus-kernel loader", [f"{ROOT}/target/release/examples/attach_one"],
                                "attached_monotonic_ns=")
    results["bpfnexus"] = measure("bpfnexus -e", [f"{ROOT}/target/release/bpfnexus", "-e", PROG], "attached")
    if shutil.which("bpftrace"):
        results["bpftrace"] = measure("bpftrace -e", ["bpftrace", "-e", PROG], "attached")
    else:
        print("bpftrace is not installed: no peer numbers (apt-get install bpftrace)")
    ours, peer = results.get("bpfnexus"), results.get("bpftrace")
    if ours and peer:
        print(f"ratios bpfnexus/bpftrace: start->attached {ours[0] / peer[0]:.3f}  "
              f"wall {ours[1] / peer[1]:.3f}  peak RSS {ours[2] / peer[2]:.3f}")


if __name__ == "__main__":
    main()
