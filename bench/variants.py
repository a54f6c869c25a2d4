#!/usr/bin/env python3
"""Where the per-syscall cost of counting goes: the pinned dd of count.py
under program variants, measured by dd's CPU time (user + sys, from an inner
GNU time: the BPF programs run in dd's context, and CPU time doesn't grow
when other work on this shared machine preempts dd), rounds interleaved.

Variants separate (a) the attachment kind: classic perf tracepoint
`tracepoint:raw_syscalls:sys_enter` vs raw tracepoint `rawtracepoint:sys_enter`;
(b) bpfnexus's -c scoping (a pid-set lookup per event) vs --no-scope; (c) the
count itself vs a predicate that is never true (`/pid == 1/`: the probe fires,
does one helper call and returns). bpftrace's count is the peer (bpftrace 0.17
rejects `rawtracepoint:sys_enter`: "Invalid probe type made it to attachpoint
parser").

Run as root:  python3 bench/variants.py [ROUNDS]   (default 7)
"""
import re
import sys

import benchlib as b

TP = "tracepoint:raw_syscalls:sys_enter"
RAW = "rawtracepoint:sys_enter"


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    b.preflight()
    nexus = b.bpfnexus_binary()
    dd = b.TIMED_DD
    variants = {
        "untraced": dd.split(),
        "nexus tp count, scoped": [nexus, "-c", dd, "-e", f"{TP} {{ @ = count(); }}"],
        "nexus tp count, --no-scope": [nexus, "--no-scope", "-c", dd, "-e", f"{TP} {{ @ = count(); }}"],
        "nexus tp /pid == 1/, --no-scope": [nexus, "--no-scope", "-c", dd, "-e", f"{TP} /pid == 1/ {{ @ = count(); }}"],
        "nexus rawtp count, scoped": [nexus, "-c", dd, "-e", f"{RAW} {{ @ = count(); }}"],
        "nexus rawtp count, --no-scope": [nexus, "--no-scope", "-c", dd, "-e", f"{RAW} {{ @ = count(); }}"],
        "nexus rawtp /pid == 1/, --no-scope": [nexus, "--no-scope", "-c", dd, "-e", f"{RAW} /pid == 1/ {{ @ = count(); }}"],
        "bpftrace tp count": ["bpftrace", "-c", dd, "-e", f"{TP} {{ @ = count(); }}"],
    }

    def subject(cmd):
        def go(_i):
            r = b.run(cmd, settle_exe=nexus)
            m = re.search(r"copied, ([\d.]+) s", r["output"])
            if r["status"] != 0 or not m:
                print(f"failed ({r['status']}): {' '.join(cmd)}\n{r['output'][-400:]}", file=sys.stderr)
                return None
            return {"dd_s": float(m.group(1)), "dd_cpu_s": b.dd_cpu_seconds(), "wall_s": r["wall_s"], "count": b.first_int(r"^@: (\d+)$", r["output"])}
        return go

    print(f"== per-event cost variants ({rounds} rounds)", file=sys.stderr)
    res = b.interleaved({k: subject(v) for k, v in variants.items()}, rounds)
    base = b.summary([r["dd_cpu_s"] for r in res["untraced"] if r["dd_cpu_s"]])
    syscalls = 2_000_000  # dd bs=1 count=1000000: one read and one write per byte
    data = {"machine": b.machine(), "variants": {}}
    print(f"\ndd's CPU time, median [min–max]; ns/syscall = (median - untraced median) / {syscalls}")
    for name, runs in res.items():
        s = {"dd_cpu_s": b.summary([r["dd_cpu_s"] for r in runs if r["dd_cpu_s"]]),
             "dd_s": b.summary([r["dd_s"] for r in runs]), "wall_s": b.summary([r["wall_s"] for r in runs]),
             "count": b.summary([r["count"] for r in runs if r["count"] is not None])}
        if s["dd_cpu_s"] and base:
            s["ns_per_syscall"] = (s["dd_cpu_s"]["median"] - base["median"]) / syscalls * 1e9
        data["variants"][name] = s
        if not s["dd_cpu_s"]:
            print(f"  {name:<36} no successful run")
            continue
        print(f"  {name:<36} dd CPU {b.fmt_range(s['dd_cpu_s'], 1, 3)} s  "
              f"{s.get('ns_per_syscall', 0):6.0f} ns/syscall   wall {s['wall_s']['median']:.3f} s")
    b.save("variants", data)


if __name__ == "__main__":
    main()
