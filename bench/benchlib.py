"""Shared helpers of the bench/ scripts (Python 3.11 stdlib only).

Every run goes through GNU time (`/usr/bin/time -f ...`) for peak RSS and CPU
time: ru_maxrss survives exec, so a child forked straight from this Python
process would report Python's own RSS (see bench/attach.py). Wall time is
taken here, from CLOCK_MONOTONIC around spawn and wait; GNU time's fork+exec
adds the same ~1 ms to every subject.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.environ.get("BENCH_OUT", os.path.join(ROOT, "bench", "out"))
GNU_TIME = "/usr/bin/time"
# The pinned CPU (ARCHITECTURE.md §4 6c: tracepoint cost differs per CPU here).
PIN_CPU = os.environ.get("BENCH_CPU", "1")
DD = "/usr/bin/dd if=/dev/zero of=/dev/null bs=1 count=1000000"
PINNED_DD = f"/usr/bin/taskset -c {PIN_CPU} {DD}"
# dd's own CPU time (user + sys) is written here by an inner GNU time. The
# BPF programs run in dd's context at syscall entry, so their cost is dd's
# system time, and, unlike wall time, it doesn't grow when other work on
# this shared machine preempts dd.
# One file per benchmark process: two benchmarks started side by side (other
# helpers on this machine run them too) would otherwise read each other's.
DD_CPU_FILE = os.path.join(tempfile.gettempdir(), f"bench-dd-cpu-{os.getpid()}")
# No spaces or quotes: bpftrace -c splits the command on blanks.
TIMED_DD = f"{GNU_TIME} -f %U,%S -o {DD_CPU_FILE} {PINNED_DD}"


def dd_cpu_seconds():
    """user + sys of the last TIMED_DD run (None when it didn't write them)."""
    try:
        with open(DD_CPU_FILE) as f:
            user, sys_ = f.read().split()[-1].split(",")
        os.unlink(DD_CPU_FILE)
        return float(user) + float(sys_)
    except (OSError, ValueError):
        return None


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


def preflight():
    """Root, GNU time and tracefs are needed by every script."""
    if os.geteuid() != 0:
        die("run as root (BPF programs and tracefs)")
    if not os.access(GNU_TIME, os.X_OK):
        die("GNU time is missing: apt-get install time")
    if not os.path.isdir("/sys/kernel/tracing/events"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=False)
    os.makedirs(OUT_DIR, exist_ok=True)


def bpfnexus_binary():
    """Build bpfnexus and copy it aside.

    Other helpers rebuild target/release while benchmarks run; a private copy
    keeps every run of one benchmark on the same binary. BENCH_NO_BUILD=1
    skips the build; BENCH_BINARY=PATH uses that copy as it is (run_all.sh
    builds and copies once, so every script measures the same binary).
    """
    global BINARY_REVISION
    if os.environ.get("BENCH_BINARY"):
        BINARY_REVISION = os.environ.get("BENCH_BINARY_REVISION") or "unknown (BENCH_BINARY)"
        return os.environ["BENCH_BINARY"]
    if os.environ.get("BENCH_NO_BUILD") != "1":
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "bpfnexus"], cwd=ROOT, check=True)
    src = os.path.join(ROOT, "target", "release", "bpfnexus")
    if not os.access(src, os.X_OK):
        die(f"{src} is missing: cargo build --release -p bpfnexus")
    dst_dir = os.path.join(tempfile.gettempdir(), f"bpfnexus-bench-{os.getpid()}")
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, "bpfnexus")
    shutil.copy2(src, dst)
    BINARY_REVISION = git_revision()
    return dst


# The tree's revision when the binary was copied (the tree may move on while
# the benchmark runs; the binary doesn't).
BINARY_REVISION = None


def tool_version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def git_revision():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+uncommitted changes" if dirty else "")
    except OSError:
        return None


def machine():
    """What the numbers were measured on, for the results file."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "loadavg_start": os.getloadavg(),
        "git_at_binary_copy": BINARY_REVISION,
    }


def processes_running(exe):
    """pids whose executable is exe (our private bpfnexus copy)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/exe") == exe:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def wait_gone(exe, limit_s=30.0):
    """Wait until no process runs exe; returns how long that took.

    bpfnexus hands links that are slow to close (classic perf tracepoints:
    ~40 ms each here, serialised in the kernel under event_mutex) to a
    forked background process and exits. Until that process is done, the
    kernel is still detaching, and a next run's classic-tracepoint attach
    would queue behind it; so every bpfnexus run is followed by this wait,
    outside its measured wall time, and the wait is reported separately.
    """
    t0 = time.monotonic()
    while processes_running(exe) and time.monotonic() - t0 < limit_s:
        time.sleep(0.005)
    return time.monotonic() - t0


def run(cmd, stdout_path=None, timeout=None, settle_exe=None):
    """Run cmd under GNU time; returns a dict with wall_s, rss_mb, user_s,
    sys_s, status and the captured output (stdout+stderr) as text. With
    settle_exe, also waits for background processes of that executable to
    end (see wait_gone) and reports that time as tail_s."""
    fd, rss_file = tempfile.mkstemp(prefix="bench-time-")
    os.close(fd)
    out_file = stdout_path or rss_file + ".out"
    full = [GNU_TIME, "-f", "%M %U %S", "-o", rss_file] + cmd
    with open(out_file, "wb") as out:
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        status = subprocess.run(full, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
        t1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    tail_s = wait_gone(settle_exe) if settle_exe else 0.0
    with open(out_file, errors="replace") as f:
        output = f.read()
    with open(rss_file) as f:
        # GNU time writes "Command exited with non-zero status N" first then.
        fields = f.read().split()[-3:]
    os.unlink(rss_file)
    if not stdout_path:
        os.unlink(out_file)
    return {
        "wall_s": (t1 - t0) / 1e9,
        "rss_mb": int(fields[0]) / 1024,
        "user_s": float(fields[1]),
        "sys_s": float(fields[2]),
        "status": status,
        "tail_s": tail_s,
        "output": output,
    }


def interleaved(subjects, rounds, runs_of=None):
    """Run every subject once per round, rotating the order, so load changes
    on this shared machine fall on all subjects alike.

    subjects: {name: callable(round) -> dict or None}. runs_of: {name: n}
    caps a slow subject at n runs (it takes part in the first n rounds).
    """
    results = {name: [] for name in subjects}
    names = list(subjects)
    for i in range(rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            if runs_of and i >= runs_of.get(name, rounds):
                continue
            r = subjects[name](i)
            if r is not None:
                results[name].append(r)
        print(f"  round {i + 1}/{rounds} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
    return results


def summary(values):
    """min, median, max of a list (None when empty)."""
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def fmt_range(s, scale=1.0, digits=3):
    if not s:
        return "n/a"
    return (f"{s['median'] * scale:.{digits}f} "
            f"[{s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f}] n={s['n']}")


def first_int(pattern, text, default=None):
    m = re.search(pattern, text, re.M)
    return int(m.group(1)) if m else default


def save(name, data):
    path = os.path.join(OUT_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)
    print(f"results: {path}")
