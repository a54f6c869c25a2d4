#!/usr/bin/env python3
"""One-shot runs (`probes... BEGIN { exit(); }`): whole-process wall time and
peak RSS, bpfnexus vs bpftrace, side by side (ARCHITECTURE.md §7 rows 1-3).

Scenarios: 1 syscall tracepoint; 20 syscall tracepoints (bpfnexus can lower
these onto the raw sys_enter tracepoint); 20 sched/irq/block tracepoints
(classic perf tracepoints for both tools). Both tools run pinned to
BENCH_CPU (default 1), rounds interleaved. After the timed rounds, a few
`bpfnexus -v` runs give its own attach/detach split.

Run as root from anywhere:  python3 bench/oneshot.py [ROUNDS]   (default 10)
Targets: wall <= 1/10 of bpftrace's, peak RSS <= 1/8 of bpftrace's.
"""
import os
import re
import shutil
import sys

import benchlib as b

SYSCALLS = ["getppid", "getpid", "getuid", "geteuid", "getgid", "getegid", "gettid", "read",
            "write", "openat", "close", "newfstat", "mmap", "munmap", "brk", "ioctl", "pread64",
            "pwrite64", "lseek", "nanosleep"]
NON_SYSCALL = ["sched:sched_process_exec", "sched:sched_process_exit", "sched:sched_process_fork",
               "sched:sched_process_free", "sched:sched_wakeup", "sched:sched_wakeup_new",
               "sched:sched_waking", "sched:sched_switch", "sched:sched_migrate_task",
               "sched:sched_process_wait", "irq:irq_handler_entry", "irq:irq_handler_exit",
               "irq:softirq_entry", "irq:softirq_exit", "irq:softirq_raise", "block:block_rq_issue",
               "block:block_rq_complete", "block:block_rq_insert", "block:block_bio_queue",
               "block:block_bio_complete"]


def program(tracepoints):
    probes = " ".join(f"tracepoint:{tp} {{ @ = count(); }}" for tp in tracepoints)
    return probes + " BEGIN { exit(); }"


SCENARIOS = {
    "1 syscall tracepoint": program(["syscalls:sys_enter_getppid"]),
    "20 syscall tracepoints": program(f"syscalls:sys_enter_{s}" for s in SYSCALLS),
    "20 sched/irq/block tracepoints": program(NON_SYSCALL),
}


def check_tracepoints_exist():
    for tp in [f"syscalls/sys_enter_{s}" for s in SYSCALLS] + [t.replace(":", "/") for t in NON_SYSCALL]:
        if not os.path.isdir(f"/sys/kernel/tracing/events/{tp}"):
            b.die(f"tracepoint {tp} does not exist on this kernel")


def verbose_split(nexus, prog):
    """Attach and detach times as `bpfnexus -v` reports them."""
    r = b.run(["taskset", "-c", b.PIN_CPU, nexus, "-v", "-e", prog], settle_exe=nexus)
    out = r["output"]
    att = re.search(r"attached .* in ([\d.]+) ms \(process start → attached ([\d.]+) ms\)", out)
    det = re.search(r"(?:detached|handed \d+ of) (\d+) links (?:in|.*?detach step) ([\d.]+) ms", out)
    bg = re.search(r"background detach closed (\d+) link descriptors in ([\d.]+) ms", out)
    links = re.findall(r"^attached (\S+) -> (\S+)", out, re.M)
    return {
        "wall_s": r["wall_s"],
        "attach_ms": float(att.group(1)) if att else None,
        "start_to_attached_ms": float(att.group(2)) if att else None,
        "background_detach_ms": float(bg.group(2)) if bg else None,
        "tail_s": r["tail_s"],
        "detach_ms": float(det.group(2)) if det else None,
        "links": int(det.group(1)) if det else None,
        "raw_tracepoint_links": sum(1 for _, k in links if k.startswith("rawtracepoint:")),
    }


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    b.preflight()
    check_tracepoints_exist()
    if not shutil.which("bpftrace"):
        b.die("bpftrace is not installed (apt-get install bpftrace)")
    nexus = b.bpfnexus_binary()
    data = {"machine": b.machine(), "bpftrace": b.tool_version(["bpftrace", "--version"]),
            "pinned_cpu": b.PIN_CPU, "scenarios": {}}
    for name, prog in SCENARIOS.items():
        print(f"== one-shot, {name} ({rounds} rounds)", file=sys.stderr)

        def ours(_i, prog=prog):
            r = b.run(["taskset", "-c", b.PIN_CPU, nexus, "-e", prog], settle_exe=nexus)
            return r if r["status"] == 0 else print(f"bpfnexus failed: {r['output'][-400:]}")

        def peer(_i, prog=prog):
            r = b.run(["taskset", "-c", b.PIN_CPU, "bpftrace", "-e", prog])
            return r if r["status"] == 0 else print(f"bpftrace failed: {r['output'][-400:]}")

        res = b.interleaved({"bpfnexus": ours, "bpftrace": peer}, rounds)
        sc = {}
        for tool, runs in res.items():
            sc[tool] = {"wall_s": b.summary([r["wall_s"] for r in runs]),
                        "rss_mb": b.summary([r["rss_mb"] for r in runs]),
                        "cpu_s": b.summary([r["user_s"] + r["sys_s"] for r in runs]),
                        "wall_plus_background_s": b.summary([r["wall_s"] + r["tail_s"] for r in runs])}
        sc["bpfnexus -v split"] = [verbose_split(nexus, prog) for _ in range(3)]
        if sc["bpfnexus"]["wall_s"] and sc["bpftrace"]["wall_s"]:
            sc["wall_ratio"] = sc["bpfnexus"]["wall_s"]["median"] / sc["bpftrace"]["wall_s"]["median"]
            sc["rss_ratio"] = sc["bpfnexus"]["rss_mb"]["median"] / sc["bpftrace"]["rss_mb"]["median"]
        data["scenarios"][name] = sc
    data["machine"]["loadavg_end"] = os.getloadavg()
    b.save("oneshot", data)
    report(data)


def report(data):
    print(f"\nOne-shot runs, pinned to CPU {data['pinned_cpu']}; median [min–max]")
    for name, sc in data["scenarios"].items():
        print(f"-- {name}")
        for tool in ("bpfnexus", "bpftrace"):
            t = sc[tool]
            print(f"   {tool:<9} wall {b.fmt_range(t['wall_s'], 1e3, 1)} ms   "
                  f"peak RSS {b.fmt_range(t['rss_mb'], 1, 1)} MB")
            if tool == "bpfnexus":
                print(f"   {'':<9} until its background detach ended: "
                      f"{b.fmt_range(t['wall_plus_background_s'], 1e3, 1)} ms")
        if "wall_ratio" in sc:
            w, r = sc["wall_ratio"], sc["rss_ratio"]
            print(f"   ratio bpfnexus/bpftrace: wall {w:.3f} (target <= 0.100: {'met' if w <= 0.1 else 'MISSED'})"
                  f"   RSS {r:.3f} (target <= 0.125: {'met' if r <= 0.125 else 'MISSED'})")
        for v in sc["bpfnexus -v split"]:
            print(f"   bpfnexus -v: start->attached {v['start_to_attached_ms']} ms, attach {v['attach_ms']} ms, "
                  f"detach {v['links']} links ({v['raw_tracepoint_links']} raw tracepoints) "
                  f"{v['detach_ms']} ms, background detach {v['background_detach_ms']} ms, "
                  f"wall {v['wall_s'] * 1e3:.1f} ms (+{v['tail_s'] * 1e3:.0f} ms until the background process ended)")


if __name__ == "__main__":
    main()
