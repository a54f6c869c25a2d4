#!/usr/bin/env python3
"""Print the summary table of bench/run_all.sh from the results files that
oneshot.py, count.py and printf.py wrote (bench/out/*.json, or BENCH_OUT)."""
import json
import os

import benchlib as b


def load(name):
    path = os.path.join(b.OUT_DIR, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def verdict(ok):
    return "met" if ok else "MISSED"


def main():
    rows = []
    one = load("oneshot")
    if one:
        for name, sc in one["scenarios"].items():
            if "wall_ratio" not in sc:
                continue
            ours, peer = sc["bpfnexus"], sc["bpftrace"]
            rows.append((f"one-shot, {name}: wall",
                         f"{ours['wall_s']['median'] * 1e3:.1f} ms", f"{peer['wall_s']['median'] * 1e3:.1f} ms",
                         f"{sc['wall_ratio']:.3f}", "<= 0.100", verdict(sc["wall_ratio"] <= 0.1)))
            rows.append((f"one-shot, {name}: peak RSS",
                         f"{ours['rss_mb']['median']:.1f} MB", f"{peer['rss_mb']['median']:.1f} MB",
                         f"{sc['rss_ratio']:.3f}", "<= 0.125", verdict(sc["rss_ratio"] <= 0.125)))
    cnt = load("count")
    if cnt:
        s = cnt["subjects"]
        base = s["untraced dd"]["wall_s"]["median"]
        for name in ("bpfnexus", "bpfnexus --no-scope", "bpftrace", "bpftrace /pid == cpid/", "strace -c -f"):
            t = s.get(name)
            if not t or "wall_ratio" not in t:
                continue
            target = "<= 1.5x untraced" if name.startswith("bpfnexus") else "(peer)"
            ok = verdict(t["wall_ratio"] <= 1.5) if name.startswith("bpfnexus") else ""
            rows.append((f"count dd syscalls, {name}",
                         f"{t['wall_s']['median']:.3f} s ({t.get('ns_per_syscall_wall', 0):.0f} ns/syscall wall"
                         + (f", {t['ns_per_syscall_cpu']:.0f} dd CPU)" if "ns_per_syscall_cpu" in t else ")"),
                         f"untraced {base:.3f} s", f"{t['wall_ratio']:.2f}x", target, ok))
    pf = load("printf")
    if pf and "rate_ratio" in pf:
        ours, peer = pf["subjects"]["bpfnexus"], pf["subjects"]["bpftrace /pid == cpid/"]
        lossless = ours["lost"]["max"] == 0
        rows.append(("printf per dd syscall to a file: events/s",
                     f"{ours['events_per_s']['median'] / 1e3:.0f} k/s (lost {ours['lost']['median']:.0f})",
                     f"{peer['events_per_s']['median'] / 1e3:.0f} k/s (lost {peer['lost']['median']:.0f})",
                     f"{pf['rate_ratio']:.1f}x", ">= 10x, lossless",
                     verdict(pf["rate_ratio"] >= 10 and lossless)))
    var = load("variants")
    if var:
        for name, v in var["variants"].items():
            if name != "untraced" and "ns_per_syscall" in v:
                rows.append((f"per-syscall cost (dd CPU), {name}", f"{v['ns_per_syscall']:.0f} ns", "", "", "", ""))
    if not rows:
        print("no results yet")
        return
    head = ("what", "bpfnexus", "peer", "ratio", "target", "")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    main()
