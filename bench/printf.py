#!/usr/bin/env python3
"""printf on every syscall of one command, to a file (ARCHITECTURE.md §7 row 5).

Workload: the pinned `dd bs=1 count=1000000` of bench/count.py. Programs:

  * bpfnexus -o FILE -c DD -e 'tracepoint:raw_syscalls:sys_enter { printf("%d %d\\n", pid, args->id); }'
    (probes are scoped to the command's process tree by default);
  * bpftrace -o FILE -c DD with the same program plus `/pid == cpid/`, so it
    prints dd's events (system-wide it would also print the syscalls of
    its own writes to FILE, a feedback loop).

bpftrace's filtered run has no inner GNU time (cpid must be dd), so no dd
CPU time. GNU time around either tool includes dd's CPU time (bpfnexus
reaps its -c child since 58ba900; before, its figure excluded dd's), so
bpfnexus's own CPU time is reported as that minus dd's, run by run.

Reported per tool: events written (lines `<pid> <id>` in FILE), events the
tool says it lost (`Lost N events` lines, in FILE or on its terminal
output), events/s = written / wall time, and the slowdown of dd. Target:
bpfnexus's rate >= 10x bpftrace's, no loss (or every loss reported:
written + lost must equal the syscalls of dd).

Run as root:  python3 bench/printf.py [ROUNDS] [BPFTRACE_RUNS]   (default 10, 3)
"""
import os
import re
import shutil
import sys

import benchlib as b

FMT = 'printf("%d %d\\n", pid, args->id);'
PROG = f"tracepoint:raw_syscalls:sys_enter {{ {FMT} }}"
# Only dd: run without the inner GNU time, so that cpid is dd (taskset execs
# it). A `comm == "dd"` filter also caught other helpers' dd processes.
PROG_CPID = f'tracepoint:raw_syscalls:sys_enter /pid == cpid/ {{ {FMT} }}'
EVENT_LINE = re.compile(rb"^\d+ \d+$", re.M)
LOST_LINE = re.compile(rb"Lost (\d+) events")


def scan(path, terminal_output):
    """Event lines and reported losses of one run; the file is deleted."""
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    lost = sum(int(n) for n in LOST_LINE.findall(data))
    lost += sum(int(n) for n in LOST_LINE.findall(terminal_output.encode()))
    return len(EVENT_LINE.findall(data)), lost, len(data)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    peer_runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    b.preflight()
    if not shutil.which("bpftrace"):
        b.die("bpftrace is not installed")
    nexus = b.bpfnexus_binary()
    out_file = f"{b.OUT_DIR}/printf-events.txt"

    def subject(cmd):
        def go(_i):
            r = b.run(cmd, settle_exe=nexus)
            if r["status"] != 0 or not os.path.exists(out_file):
                print(f"failed ({r['status']}): {' '.join(cmd)}\n{r['output'][-600:]}", file=sys.stderr)
                return None
            m = re.search(r"copied, ([\d.]+) s", r["output"])
            r["dd_s"] = float(m.group(1)) if m else None
            r["dd_cpu_s"] = b.dd_cpu_seconds()
            r["own_cpu_s"] = (r["user_s"] + r["sys_s"] - r["dd_cpu_s"]) if r["dd_cpu_s"] is not None else None
            r["written"], r["lost"], r["bytes"] = scan(out_file, r["output"])
            r["events_per_s"] = r["written"] / r["wall_s"]
            del r["output"]
            return r
        return go

    subjects = {
        "untraced dd": lambda _i: dict(b.run(b.TIMED_DD.split()), dd_cpu_s=b.dd_cpu_seconds(), tail_s=0.0),
        "bpfnexus": subject([nexus, "-o", out_file, "-c", b.TIMED_DD, "-e", PROG]),
        "bpftrace /pid == cpid/": subject(["bpftrace", "-o", out_file, "-c", b.PINNED_DD, "-e", PROG_CPID]),
    }
    print(f"== printf on every syscall of dd ({rounds} rounds, bpftrace {peer_runs})", file=sys.stderr)
    res = b.interleaved(subjects, rounds, runs_of={"bpftrace /pid == cpid/": peer_runs})
    base = b.summary([r["wall_s"] for r in res["untraced dd"]])
    data = {"machine": b.machine(), "bpftrace": b.tool_version(["bpftrace", "--version"]),
            "workload": b.TIMED_DD, "programs": {"bpfnexus": PROG, "bpftrace": PROG_CPID},
            "untraced_wall_s": base,
            "untraced_dd_cpu_s": b.summary([r["dd_cpu_s"] for r in res["untraced dd"] if r["dd_cpu_s"]]),
            "subjects": {}}
    for name in ("bpfnexus", "bpftrace /pid == cpid/"):
        runs = res[name]
        s = {"wall_s": b.summary([r["wall_s"] for r in runs]),
             "background_detach_tail_s": b.summary([r["tail_s"] for r in runs]),
             "dd_s": b.summary([r["dd_s"] for r in runs if r["dd_s"]]),
             "dd_cpu_s": b.summary([r["dd_cpu_s"] for r in runs if r["dd_cpu_s"]]),
             "cpu_s": b.summary([r["user_s"] + r["sys_s"] for r in runs]),
             "own_cpu_s": b.summary([r["own_cpu_s"] for r in runs if r["own_cpu_s"] is not None]),
             "sys_s": b.summary([r["sys_s"] for r in runs]),
             "rss_mb": b.summary([r["rss_mb"] for r in runs]),
             "written": b.summary([r["written"] for r in runs]),
             "lost": b.summary([r["lost"] for r in runs]),
             "written_plus_lost": b.summary([r["written"] + r["lost"] for r in runs]),
             "events_per_s": b.summary([r["events_per_s"] for r in runs]),
             "lossless_runs": sum(1 for r in runs if r["lost"] == 0)}
        if base and s["wall_s"]:
            s["slowdown"] = s["wall_s"]["median"] / base["median"]
        data["subjects"][name] = s
    ours, peer = data["subjects"]["bpfnexus"], data["subjects"]["bpftrace /pid == cpid/"]
    if ours["events_per_s"] and peer["events_per_s"]:
        data["rate_ratio"] = ours["events_per_s"]["median"] / peer["events_per_s"]["median"]
    data["machine"]["loadavg_end"] = os.getloadavg()
    b.save("printf", data)
    report(data)


def report(data):
    print(f"\nprintf on every syscall of `{data['workload']}` to a file; median [min–max]")
    print(f"  untraced dd wall {b.fmt_range(data['untraced_wall_s'], 1, 3)} s")
    for name, s in data["subjects"].items():
        if not s["wall_s"]:
            print(f"  {name}: no successful run")
            continue
        print(f"  {name:<24} wall {b.fmt_range(s['wall_s'], 1, 3)} s ({s.get('slowdown', 0):.1f}x untraced), "
              f"sys {s['sys_s']['median']:.2f} s")
        print(f"  {'':<24} written {b.fmt_range(s['written'], 1, 0)}  lost {b.fmt_range(s['lost'], 1, 0)}  "
              f"written+lost {s['written_plus_lost']['median']:.0f}  lossless runs {s['lossless_runs']}/{s['wall_s']['n']}")
        dd_cpu = (f"dd CPU {b.fmt_range(s['dd_cpu_s'], 1, 2)} s "
                  f"(untraced {data['untraced_dd_cpu_s']['median']:.2f})   " if s["dd_cpu_s"] else "")
        print(f"  {'':<24} events/s {b.fmt_range(s['events_per_s'], 1e-3, 0)} k   {dd_cpu}"
              f"tool CPU {s['cpu_s']['median']:.2f} s"
              + (f" (without dd's: {s['own_cpu_s']['median']:.2f} s)" if s.get("own_cpu_s") else ""))
    if "rate_ratio" in data:
        r = data["rate_ratio"]
        print(f"rate bpfnexus/bpftrace: {r:.1f}x (target >= 10x: {'met' if r >= 10 else 'MISSED'}; "
              f"the target also asks for no loss)")


if __name__ == "__main__":
    main()
