#!/usr/bin/env python3
"""Count the syscalls of one command (ARCHITECTURE.md §7 row 4).

Workload: `taskset -c CPU dd if=/dev/zero of=/dev/null bs=1 count=1000000`
(~2 M syscalls), pinned, the tool itself unpinned. Program:
`tracepoint:raw_syscalls:sys_enter { @ = count(); }`. Subjects, interleaved:

  * untraced dd;
  * bpfnexus -c (probes scoped to the command's process tree, its default);
  * bpfnexus --no-scope -c (every process, as bpftrace does);
  * bpftrace -c with the same program (system-wide, its only mode);
  * bpftrace -c with `/pid == cpid/` (counts only dd: the count to compare);
  * strace -c -f (fewer runs: it is ~60x slower).

The workload runs under an inner GNU time that records dd's CPU time (user +
sys): the probes run in dd's context, and CPU time, unlike wall time, does
not grow when the other work on this shared machine preempts dd.

Reported: total wall and its ratio to untraced dd (target <= 1.5x); the
per-syscall cost, three ways: (tool wall - untraced wall) / syscalls, from
dd's own "copied, X s" (the copy loop only, without tool start and teardown),
and from dd's CPU time (the steadiest under load); the counts of every tool
(the scoped tools count the inner time and taskset too: a few dozen more).

Run as root:  python3 bench/count.py [ROUNDS] [STRACE_RUNS]   (default 10, 3)
"""
import os
import re
import shutil
import sys

import benchlib as b

PROG = "tracepoint:raw_syscalls:sys_enter { @ = count(); }"
# Only dd: run without the inner GNU time, so that cpid is dd (taskset execs
# it). A `comm == "dd"` filter also caught other helpers' dd processes.
PROG_CPID = 'tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @ = count(); }'


def dd_seconds(output):
    m = re.search(r"copied, ([\d.]+) s", output)
    return float(m.group(1)) if m else None


def map_count(output):
    return b.first_int(r"^@: (\d+)$", output)


def strace_count(path):
    with open(path) as f:
        text = f.read()
    # strace -c summary: "100.00    0.123456           0   2000042        12 total"
    m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+total\s*$", text, re.M)
    return int(m.group(1)) if m else None


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    strace_runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    b.preflight()
    for tool in ("bpftrace", "strace", "taskset"):
        if not shutil.which(tool):
            b.die(f"{tool} is not installed")
    nexus = b.bpfnexus_binary()
    strace_out = f"{b.OUT_DIR}/count-strace.txt"

    def subject(cmd, counter):
        def go(_i):
            r = b.run(cmd, settle_exe=nexus)
            if r["status"] != 0:
                print(f"failed ({r['status']}): {' '.join(cmd)}\n{r['output'][-600:]}", file=sys.stderr)
                return None
            r["dd_s"] = dd_seconds(r["output"])
            r["dd_cpu_s"] = b.dd_cpu_seconds()
            r["count"] = counter(r)
            del r["output"]
            return r
        return go

    subjects = {
        "untraced dd": subject(b.TIMED_DD.split(), lambda r: None),
        "bpfnexus": subject([nexus, "-c", b.TIMED_DD, "-e", PROG], lambda r: map_count(r["output"])),
        "bpfnexus --no-scope": subject([nexus, "--no-scope", "-c", b.TIMED_DD, "-e", PROG],
                                       lambda r: map_count(r["output"])),
        "bpftrace": subject(["bpftrace", "-c", b.TIMED_DD, "-e", PROG], lambda r: map_count(r["output"])),
        "bpftrace /pid == cpid/": subject(["bpftrace", "-c", b.PINNED_DD, "-e", PROG_CPID],
                                          lambda r: map_count(r["output"])),
        "strace -c -f": subject(["strace", "-c", "-f", "-o", strace_out] + b.TIMED_DD.split(),
                                lambda r: strace_count(strace_out)),
    }
    print(f"== count the syscalls of dd ({rounds} rounds, strace {strace_runs})", file=sys.stderr)
    res = b.interleaved(subjects, rounds, runs_of={"strace -c -f": strace_runs})

    data = {"machine": b.machine(), "bpftrace": b.tool_version(["bpftrace", "--version"]),
            "strace": b.tool_version(["strace", "-V"]), "workload": b.TIMED_DD, "program": PROG,
            "subjects": {}}
    base = b.summary([r["wall_s"] for r in res["untraced dd"]])
    base_dd = b.summary([r["dd_s"] for r in res["untraced dd"] if r["dd_s"]])
    base_cpu = b.summary([r["dd_cpu_s"] for r in res["untraced dd"] if r["dd_cpu_s"]])
    # The syscalls dd itself makes: what the scoped tools count.
    exact = b.summary([r["count"] for r in res["bpfnexus"] + res["bpftrace /pid == cpid/"]
                       + res["strace -c -f"] if r["count"]])
    data["syscalls_of_dd"] = exact
    for name, runs in res.items():
        s = {"wall_s": b.summary([r["wall_s"] for r in runs]),
             "background_detach_tail_s": b.summary([r["tail_s"] for r in runs]),
             "dd_s": b.summary([r["dd_s"] for r in runs if r["dd_s"]]),
             "dd_cpu_s": b.summary([r["dd_cpu_s"] for r in runs if r["dd_cpu_s"]]),
             "cpu_s": b.summary([r["user_s"] + r["sys_s"] for r in runs]),
             "rss_mb": b.summary([r["rss_mb"] for r in runs]),
             "count": b.summary([r["count"] for r in runs if r["count"] is not None])}
        if base and s["wall_s"] and name != "untraced dd":
            s["wall_ratio"] = s["wall_s"]["median"] / base["median"]
            if exact:
                s["ns_per_syscall_wall"] = (s["wall_s"]["median"] - base["median"]) / exact["median"] * 1e9
                if s["dd_s"] and base_dd:
                    s["ns_per_syscall_dd"] = (s["dd_s"]["median"] - base_dd["median"]) / exact["median"] * 1e9
                if s["dd_cpu_s"] and base_cpu:
                    s["ns_per_syscall_cpu"] = (s["dd_cpu_s"]["median"] - base_cpu["median"]) / exact["median"] * 1e9
        data["subjects"][name] = s
    data["machine"]["loadavg_end"] = os.getloadavg()
    b.save("count", data)
    report(data)


def report(data):
    print(f"\nCounting the syscalls of `{data['workload']}`; median [min–max]")
    ex = data["syscalls_of_dd"]
    print(f"syscalls of dd (scoped counts): {b.fmt_range(ex, 1, 0)}")
    for name, s in data["subjects"].items():
        line = f"  {name:<24} wall {b.fmt_range(s['wall_s'], 1, 3)} s"
        if s["dd_s"]:
            line += f"  dd's own {s['dd_s']['median']:.3f} s"
        if s["dd_cpu_s"]:
            line += f"  dd CPU {b.fmt_range(s['dd_cpu_s'], 1, 2)} s"
        if "wall_ratio" in s:
            line += f"  {s['wall_ratio']:.2f}x untraced"
        if "ns_per_syscall_wall" in s:
            line += f"  {s['ns_per_syscall_wall']:.0f} ns/syscall (wall)"
        if "ns_per_syscall_dd" in s:
            line += f", {s['ns_per_syscall_dd']:.0f} (dd's time)"
        if "ns_per_syscall_cpu" in s:
            line += f", {s['ns_per_syscall_cpu']:.0f} (dd CPU)"
        if s["count"]:
            line += f"  count {b.fmt_range(s['count'], 1, 0)}"
        print(line)
    r = data["subjects"]["bpfnexus"].get("wall_ratio")
    if r:
        print(f"target bpfnexus <= 1.5x untraced: {r:.2f}x, {'met' if r <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
