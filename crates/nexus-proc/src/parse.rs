//! Pure parsers of `/proc` text. No I/O here: callers read the file and pass
//! its contents, so every parser is tested on fixtures captured from a real
//! kernel (see `tests/fixtures/`).
//!
//! Field layouts follow `Documentation/filesystems/proc.rst` and `man 5 proc`.
//! Counters are `u64`; a field that older kernels or kernel threads lack is an
//! `Option`.

use thiserror::Error;

/// A `/proc` file whose text does not have the expected shape.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A required field or line is absent.
    #[error("{file}: missing field '{field}'")]
    MissingField {
        /// Which file kind was parsed (e.g. `/proc/PID/stat`).
        file: &'static str,
        /// The field that was looked for.
        field: &'static str,
    },
    /// A field is present but is not a number of the expected kind.
    #[error("{file}: field '{field}' is not a valid number: '{value}'")]
    BadNumber {
        /// Which file kind was parsed.
        file: &'static str,
        /// The field being converted.
        field: &'static str,
        /// The offending text.
        value: String,
    },
    /// The overall structure is wrong (e.g. no `(comm)` in a stat line).
    #[error("{file}: malformed: {reason}")]
    Malformed {
        /// Which file kind was parsed.
        file: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn number<T: std::str::FromStr>(
    file: &'static str,
    field: &'static str,
    text: &str,
) -> Result<T, ParseError> {
    text.parse().map_err(|_| ParseError::BadNumber {
        file,
        field,
        value: text.to_owned(),
    })
}

// ---------------------------------------------------------------------------
// /proc/PID/stat

const STAT: &str = "/proc/PID/stat";

/// The fields of `/proc/PID/stat` (or `/proc/PID/task/TID/stat`) that
/// bpfnexus uses. Times are in clock ticks (`sysconf(_SC_CLK_TCK)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidStat {
    /// Field 1: process (or thread) id.
    pub pid: i32,
    /// Field 2: the command name without the surrounding parentheses; it may
    /// itself contain spaces and parentheses.
    pub comm: String,
    /// Field 3: state letter (`R`, `S`, `D`, `Z`, `T`, …).
    pub state: char,
    /// Field 4: parent pid.
    pub ppid: i32,
    /// Field 5: process group id.
    pub pgrp: i32,
    /// Field 6: session id.
    pub session: i32,
    /// Field 10: minor faults.
    pub minflt: u64,
    /// Field 12: major faults.
    pub majflt: u64,
    /// Field 14: user-mode time, ticks.
    pub utime: u64,
    /// Field 15: kernel-mode time, ticks.
    pub stime: u64,
    /// Field 16: user time of waited-for children, ticks.
    pub cutime: u64,
    /// Field 17: kernel time of waited-for children, ticks.
    pub cstime: u64,
    /// Field 20: number of threads.
    pub num_threads: u64,
    /// Field 22: start time after boot, ticks.
    pub starttime: u64,
    /// Field 23: virtual memory size, bytes.
    pub vsize: u64,
    /// Field 24: resident set size, pages.
    pub rss_pages: u64,
    /// Field 39: CPU last run on (absent on very old kernels).
    pub processor: Option<u32>,
}

/// Parses one `/proc/PID/stat` line.
///
/// The command name is delimited by the first `(` and the **last** `)`: the
/// kernel does not escape `comm`, so a name like `(a) b (c)` is legal and a
/// plain whitespace split would misnumber every later field.
pub fn parse_pid_stat(text: &str) -> Result<PidStat, ParseError> {
    let open = text.find('(').ok_or(ParseError::Malformed {
        file: STAT,
        reason: "no '(' before the command name",
    })?;
    let close = text.rfind(')').ok_or(ParseError::Malformed {
        file: STAT,
        reason: "no ')' after the command name",
    })?;
    if close < open {
        return Err(ParseError::Malformed {
            file: STAT,
            reason: "')' before '('",
        });
    }
    let pid = number(STAT, "pid", text[..open].trim())?;
    let comm = text[open + 1..close].to_owned();
    // rest[0] is field 3 (state), so field N is rest[N - 3].
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize, name: &'static str| -> Result<&str, ParseError> {
        rest.get(n - 3).copied().ok_or(ParseError::MissingField {
            file: STAT,
            field: name,
        })
    };
    let state_text = field(3, "state")?;
    let mut chars = state_text.chars();
    let state = match (chars.next(), chars.next()) {
        (Some(c), None) => c,
        _ => {
            return Err(ParseError::Malformed {
                file: STAT,
                reason: "state is not a single letter",
            });
        }
    };
    let processor = match rest.get(39 - 3) {
        Some(text) => Some(number(STAT, "processor", text)?),
        None => None,
    };
    Ok(PidStat {
        pid,
        comm,
        state,
        ppid: number(STAT, "ppid", field(4, "ppid")?)?,
        pgrp: number(STAT, "pgrp", field(5, "pgrp")?)?,
        session: number(STAT, "session", field(6, "session")?)?,
        minflt: number(STAT, "minflt", field(10, "minflt")?)?,
        majflt: number(STAT, "majflt", field(12, "majflt")?)?,
        utime: number(STAT, "utime", field(14, "utime")?)?,
        stime: number(STAT, "stime", field(15, "stime")?)?,
        cutime: number(STAT, "cutime", field(16, "cutime")?)?,
        cstime: number(STAT, "cstime", field(17, "cstime")?)?,
        num_threads: number(STAT, "num_threads", field(20, "num_threads")?)?,
        starttime: number(STAT, "starttime", field(22, "starttime")?)?,
        vsize: number(STAT, "vsize", field(23, "vsize")?)?,
        rss_pages: number(STAT, "rss", field(24, "rss")?)?,
        processor,
    })
}

// ---------------------------------------------------------------------------
// /proc/PID/status

const STATUS: &str = "/proc/PID/status";

/// The fields of `/proc/PID/status` that bpfnexus uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidStatus {
    /// `Name:` (the comm, with `\n` and `\\` escaped by the kernel).
    pub name: String,
    /// `Tgid:` thread-group id, i.e. the process id of a thread.
    pub tgid: i32,
    /// `Pid:` the thread id this file describes.
    pub pid: i32,
    /// `PPid:` parent process id.
    pub ppid: i32,
    /// `Uid:` real, effective, saved set, filesystem.
    pub uid: [u32; 4],
    /// `Threads:` number of threads in the group.
    pub threads: u64,
    /// `VmRSS:` resident set, KiB; absent for kernel threads.
    pub vm_rss_kib: Option<u64>,
    /// `VmHWM:` peak resident set, KiB; absent for kernel threads.
    pub vm_hwm_kib: Option<u64>,
}

/// Splits `Key:\tvalue` lines; values keep their inner spacing.
fn key_values(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// Parses a `kB` quantity such as `4108 kB`.
fn kib(file: &'static str, field: &'static str, value: &str) -> Result<u64, ParseError> {
    let digits = value.strip_suffix("kB").unwrap_or(value).trim();
    number(file, field, digits)
}

/// Parses `/proc/PID/status`.
pub fn parse_pid_status(text: &str) -> Result<PidStatus, ParseError> {
    let mut name = None;
    let mut tgid = None;
    let mut pid = None;
    let mut ppid = None;
    let mut uid = None;
    let mut threads = None;
    let mut vm_rss_kib = None;
    let mut vm_hwm_kib = None;
    for (key, value) in key_values(text) {
        match key {
            "Name" => name = Some(value.to_owned()),
            "Tgid" => tgid = Some(number(STATUS, "Tgid", value)?),
            "Pid" => pid = Some(number(STATUS, "Pid", value)?),
            "PPid" => ppid = Some(number(STATUS, "PPid", value)?),
            "Threads" => threads = Some(number(STATUS, "Threads", value)?),
            "VmRSS" => vm_rss_kib = Some(kib(STATUS, "VmRSS", value)?),
            "VmHWM" => vm_hwm_kib = Some(kib(STATUS, "VmHWM", value)?),
            "Uid" => {
                let mut ids = [0u32; 4];
                let mut parts = value.split_ascii_whitespace();
                for id in &mut ids {
                    let part = parts.next().ok_or(ParseError::Malformed {
                        file: STATUS,
                        reason: "Uid has fewer than four ids",
                    })?;
                    *id = number(STATUS, "Uid", part)?;
                }
                uid = Some(ids);
            }
            _ => {}
        }
    }
    let missing = |field| ParseError::MissingField {
        file: STATUS,
        field,
    };
    Ok(PidStatus {
        name: name.ok_or(missing("Name"))?,
        tgid: tgid.ok_or(missing("Tgid"))?,
        pid: pid.ok_or(missing("Pid"))?,
        ppid: ppid.ok_or(missing("PPid"))?,
        uid: uid.ok_or(missing("Uid"))?,
        threads: threads.ok_or(missing("Threads"))?,
        vm_rss_kib,
        vm_hwm_kib,
    })
}

// ---------------------------------------------------------------------------
// /proc/PID/io

const IO: &str = "/proc/PID/io";

/// `/proc/PID/io` counters (cumulative since the process started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Bytes passed to read-like syscalls (includes page-cache hits).
    pub rchar: u64,
    /// Bytes passed to write-like syscalls.
    pub wchar: u64,
    /// Number of read-like syscalls.
    pub syscr: u64,
    /// Number of write-like syscalls.
    pub syscw: u64,
    /// Bytes actually fetched from the storage layer.
    pub read_bytes: u64,
    /// Bytes caused to be sent to the storage layer.
    pub write_bytes: u64,
    /// Bytes of `write_bytes` later truncated away.
    pub cancelled_write_bytes: u64,
}

impl IoCounters {
    /// Field-wise saturating difference `self - earlier` (counters only grow
    /// for one process; a tree total can shrink when a member exits).
    pub fn saturating_sub(self, earlier: IoCounters) -> IoCounters {
        IoCounters {
            rchar: self.rchar.saturating_sub(earlier.rchar),
            wchar: self.wchar.saturating_sub(earlier.wchar),
            syscr: self.syscr.saturating_sub(earlier.syscr),
            syscw: self.syscw.saturating_sub(earlier.syscw),
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            cancelled_write_bytes: self
                .cancelled_write_bytes
                .saturating_sub(earlier.cancelled_write_bytes),
        }
    }

    /// Field-wise saturating sum (for totals over a process tree).
    pub fn saturating_add(self, other: IoCounters) -> IoCounters {
        IoCounters {
            rchar: self.rchar.saturating_add(other.rchar),
            wchar: self.wchar.saturating_add(other.wchar),
            syscr: self.syscr.saturating_add(other.syscr),
            syscw: self.syscw.saturating_add(other.syscw),
            read_bytes: self.read_bytes.saturating_add(other.read_bytes),
            write_bytes: self.write_bytes.saturating_add(other.write_bytes),
            cancelled_write_bytes: self
                .cancelled_write_bytes
                .saturating_add(other.cancelled_write_bytes),
        }
    }
}

/// Parses `/proc/PID/io`.
pub fn parse_pid_io(text: &str) -> Result<IoCounters, ParseError> {
    let mut found = [None; 7];
    const KEYS: [&str; 7] = [
        "rchar",
        "wchar",
        "syscr",
        "syscw",
        "read_bytes",
        "write_bytes",
        "cancelled_write_bytes",
    ];
    for (key, value) in key_values(text) {
        if let Some(i) = KEYS.iter().position(|k| *k == key) {
            found[i] = Some(number(IO, KEYS[i], value)?);
        }
    }
    let get = |i: usize| {
        found[i].ok_or(ParseError::MissingField {
            file: IO,
            field: KEYS[i],
        })
    };
    Ok(IoCounters {
        rchar: get(0)?,
        wchar: get(1)?,
        syscr: get(2)?,
        syscw: get(3)?,
        read_bytes: get(4)?,
        write_bytes: get(5)?,
        cancelled_write_bytes: get(6)?,
    })
}

// ---------------------------------------------------------------------------
// /proc/stat

const PROC_STAT: &str = "/proc/stat";

/// One `cpu` / `cpuN` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Normal user time (includes `guest`).
    pub user: u64,
    /// Niced user time (includes `guest_nice`).
    pub nice: u64,
    /// Kernel time.
    pub system: u64,
    /// Idle time.
    pub idle: u64,
    /// Idle while I/O was outstanding.
    pub iowait: u64,
    /// Hard-interrupt time.
    pub irq: u64,
    /// Soft-interrupt time.
    pub softirq: u64,
    /// Time stolen by the hypervisor.
    pub steal: u64,
    /// Time running guests (already counted in `user`).
    pub guest: u64,
    /// Time running niced guests (already counted in `nice`).
    pub guest_nice: u64,
}

impl CpuTimes {
    /// Ticks not idle. `guest`/`guest_nice` are left out because the kernel
    /// already adds them to `user`/`nice`.
    pub fn busy(&self) -> u64 {
        self.user
            .saturating_add(self.nice)
            .saturating_add(self.system)
            .saturating_add(self.irq)
            .saturating_add(self.softirq)
            .saturating_add(self.steal)
    }

    /// Idle ticks, counting `iowait` as idle (the CPU was free to run work).
    pub fn idle_total(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }

    /// All ticks.
    pub fn total(&self) -> u64 {
        self.busy().saturating_add(self.idle_total())
    }
}

/// The CPU lines of `/proc/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The aggregate `cpu` line.
    pub total: CpuTimes,
    /// `cpu0`, `cpu1`, … in file order (offline CPUs have no line).
    pub per_cpu: Vec<(u32, CpuTimes)>,
}

fn parse_cpu_fields(fields: &[&str]) -> Result<CpuTimes, ParseError> {
    const NAMES: [&str; 10] = [
        "user",
        "nice",
        "system",
        "idle",
        "iowait",
        "irq",
        "softirq",
        "steal",
        "guest",
        "guest_nice",
    ];
    // The first four columns exist on every kernel; the rest appeared over
    // time (2.5.41 … 2.6.33) and default to zero when missing.
    if fields.len() < 4 {
        return Err(ParseError::MissingField {
            file: PROC_STAT,
            field: NAMES[fields.len()],
        });
    }
    let mut v = [0u64; 10];
    for (i, text) in fields.iter().take(10).enumerate() {
        v[i] = number(PROC_STAT, NAMES[i], text)?;
    }
    Ok(CpuTimes {
        user: v[0],
        nice: v[1],
        system: v[2],
        idle: v[3],
        iowait: v[4],
        irq: v[5],
        softirq: v[6],
        steal: v[7],
        guest: v[8],
        guest_nice: v[9],
    })
}

/// Parses the `cpu` lines of `/proc/stat`; other lines are ignored.
pub fn parse_proc_stat(text: &str) -> Result<ProcStat, ParseError> {
    let mut total = None;
    let mut per_cpu = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(label) = fields.next() else { continue };
        let Some(suffix) = label.strip_prefix("cpu") else {
            continue;
        };
        let values: Vec<&str> = fields.collect();
        let times = parse_cpu_fields(&values)?;
        if suffix.is_empty() {
            total = Some(times);
        } else {
            per_cpu.push((number(PROC_STAT, "cpu number", suffix)?, times));
        }
    }
    Ok(ProcStat {
        total: total.ok_or(ParseError::MissingField {
            file: PROC_STAT,
            field: "cpu",
        })?,
        per_cpu,
    })
}

// ---------------------------------------------------------------------------
// /proc/loadavg

const LOADAVG: &str = "/proc/loadavg";

/// `/proc/loadavg`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAvg {
    /// 1-minute load average.
    pub one: f64,
    /// 5-minute load average.
    pub five: f64,
    /// 15-minute load average.
    pub fifteen: f64,
    /// Currently runnable scheduling entities.
    pub runnable: u64,
    /// Scheduling entities (threads) that exist.
    pub total: u64,
    /// Most recently created pid.
    pub last_pid: i32,
}

/// Parses `/proc/loadavg` (`0.50 0.40 0.30 1/123 4567`).
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, ParseError> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let get = |i: usize, name: &'static str| {
        fields.get(i).copied().ok_or(ParseError::MissingField {
            file: LOADAVG,
            field: name,
        })
    };
    let (runnable, total) =
        get(3, "runnable/total")?
            .split_once('/')
            .ok_or(ParseError::Malformed {
                file: LOADAVG,
                reason: "fourth field is not runnable/total",
            })?;
    Ok(LoadAvg {
        one: number(LOADAVG, "1min", get(0, "1min")?)?,
        five: number(LOADAVG, "5min", get(1, "5min")?)?,
        fifteen: number(LOADAVG, "15min", get(2, "15min")?)?,
        runnable: number(LOADAVG, "runnable", runnable)?,
        total: number(LOADAVG, "total", total)?,
        last_pid: number(LOADAVG, "last_pid", get(4, "last_pid")?)?,
    })
}

// ---------------------------------------------------------------------------
// /proc/meminfo

const MEMINFO: &str = "/proc/meminfo";

/// The basic lines of `/proc/meminfo`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total_kib: u64,
    /// `MemFree`.
    pub free_kib: u64,
    /// `MemAvailable`: the kernel's estimate of memory usable without
    /// swapping (since Linux 3.14).
    pub available_kib: u64,
    /// `Buffers`.
    pub buffers_kib: u64,
    /// `Cached`.
    pub cached_kib: u64,
    /// `SwapTotal`.
    pub swap_total_kib: u64,
    /// `SwapFree`.
    pub swap_free_kib: u64,
}

/// Parses `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, ParseError> {
    const KEYS: [&str; 7] = [
        "MemTotal",
        "MemFree",
        "MemAvailable",
        "Buffers",
        "Cached",
        "SwapTotal",
        "SwapFree",
    ];
    let mut found = [None; 7];
    for (key, value) in key_values(text) {
        if let Some(i) = KEYS.iter().position(|k| *k == key) {
            found[i] = Some(kib(MEMINFO, KEYS[i], value)?);
        }
    }
    let get = |i: usize| {
        found[i].ok_or(ParseError::MissingField {
            file: MEMINFO,
            field: KEYS[i],
        })
    };
    Ok(MemInfo {
        total_kib: get(0)?,
        free_kib: get(1)?,
        available_kib: get(2)?,
        buffers_kib: get(3)?,
        cached_kib: get(4)?,
        swap_total_kib: get(5)?,
        swap_free_kib: get(6)?,
    })
}

// ---------------------------------------------------------------------------
// /proc/diskstats

const DISKSTATS: &str = "/proc/diskstats";

/// One line of `/proc/diskstats` (the first 14 columns; discard and flush
/// columns of newer kernels are not used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStat {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Device name (`vda`, `nvme0n1p1`, `loop0`, …).
    pub name: String,
    /// Reads completed.
    pub reads_completed: u64,
    /// Adjacent reads merged.
    pub reads_merged: u64,
    /// 512-byte sectors read.
    pub sectors_read: u64,
    /// Milliseconds spent reading.
    pub read_ms: u64,
    /// Writes completed.
    pub writes_completed: u64,
    /// Adjacent writes merged.
    pub writes_merged: u64,
    /// 512-byte sectors written.
    pub sectors_written: u64,
    /// Milliseconds spent writing.
    pub write_ms: u64,
    /// I/Os currently in flight.
    pub ios_in_progress: u64,
    /// Milliseconds the device had I/O in flight (the "busy" time).
    pub io_ticks_ms: u64,
    /// Weighted milliseconds doing I/O.
    pub weighted_io_ms: u64,
}

/// Parses `/proc/diskstats`.
pub fn parse_diskstats(text: &str) -> Result<Vec<DiskStat>, ParseError> {
    const NAMES: [&str; 14] = [
        "major",
        "minor",
        "name",
        "reads_completed",
        "reads_merged",
        "sectors_read",
        "read_ms",
        "writes_completed",
        "writes_merged",
        "sectors_written",
        "write_ms",
        "ios_in_progress",
        "io_ticks_ms",
        "weighted_io_ms",
    ];
    let mut disks = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() < NAMES.len() {
            return Err(ParseError::MissingField {
                file: DISKSTATS,
                field: NAMES[fields.len()],
            });
        }
        let n = |i: usize| number::<u64>(DISKSTATS, NAMES[i], fields[i]);
        disks.push(DiskStat {
            major: number(DISKSTATS, "major", fields[0])?,
            minor: number(DISKSTATS, "minor", fields[1])?,
            name: fields[2].to_owned(),
            reads_completed: n(3)?,
            reads_merged: n(4)?,
            sectors_read: n(5)?,
            read_ms: n(6)?,
            writes_completed: n(7)?,
            writes_merged: n(8)?,
            sectors_written: n(9)?,
            write_ms: n(10)?,
            ios_in_progress: n(11)?,
            io_ticks_ms: n(12)?,
            weighted_io_ms: n(13)?,
        });
    }
    Ok(disks)
}

// ---------------------------------------------------------------------------
// /proc/PID/task/TID/children

/// Parses a `children` file: space-separated pids.
pub fn parse_children(text: &str) -> Result<Vec<i32>, ParseError> {
    text.split_ascii_whitespace()
        .map(|p| number("/proc/PID/task/TID/children", "pid", p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_BASH: &str = include_str!("../tests/fixtures/stat_bash.txt");
    const STAT_PARENS: &str = include_str!("../tests/fixtures/stat_parens.txt");
    const STAT_KTHREADD: &str = include_str!("../tests/fixtures/stat_kthreadd.txt");
    const STATUS_BASH: &str = include_str!("../tests/fixtures/status_bash.txt");
    const STATUS_KTHREADD: &str = include_str!("../tests/fixtures/status_kthreadd.txt");
    const IO: &str = include_str!("../tests/fixtures/io.txt");
    const SYSTEM_STAT: &str = include_str!("../tests/fixtures/stat_system.txt");
    const LOADAVG: &str = include_str!("../tests/fixtures/loadavg.txt");
    const MEMINFO: &str = include_str!("../tests/fixtures/meminfo.txt");
    const DISKSTATS: &str = include_str!("../tests/fixtures/diskstats.txt");

    #[test]
    fn pid_stat_of_a_shell() {
        let s = parse_pid_stat(STAT_BASH).unwrap();
        assert_eq!(s.pid, 26954);
        assert_eq!(s.comm, "bash");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 26952);
        assert_eq!(s.pgrp, 26954);
        assert_eq!(s.session, 26954);
        assert_eq!(s.minflt, 1847);
        assert_eq!(s.majflt, 0);
        assert_eq!((s.utime, s.stime, s.cutime, s.cstime), (0, 1, 22, 3));
        assert_eq!(s.num_threads, 1);
        assert_eq!(s.starttime, 107598);
        assert_eq!(s.vsize, 5124096);
        assert_eq!(s.rss_pages, 1000);
        assert_eq!(s.processor, Some(0));
    }

    #[test]
    fn pid_stat_comm_with_spaces_and_parentheses() {
        let s = parse_pid_stat(STAT_PARENS).unwrap();
        assert_eq!(s.pid, 30103);
        assert_eq!(s.comm, "(a) b (c)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 30100);
        assert_eq!(s.num_threads, 1);
        assert_eq!(s.rss_pages, 415);
        assert_eq!(s.processor, Some(0));
    }

    #[test]
    fn pid_stat_comm_ending_in_paren_and_digits() {
        // A comm like ") 1 2" must not shift fields either.
        let line = "42 () 1 2) R 7 42 42 0 -1 0 0 0 0 0 5 6 0 0 20 0 3 0 99 4096 10";
        let s = parse_pid_stat(line).unwrap();
        assert_eq!(s.comm, ") 1 2");
        assert_eq!(s.state, 'R');
        assert_eq!(s.ppid, 7);
        assert_eq!((s.utime, s.stime), (5, 6));
        assert_eq!(s.num_threads, 3);
        assert_eq!(s.rss_pages, 10);
        assert_eq!(s.processor, None);
    }

    #[test]
    fn pid_stat_of_a_kernel_thread() {
        let s = parse_pid_stat(STAT_KTHREADD).unwrap();
        assert_eq!(s.pid, 2);
        assert_eq!(s.comm, "kthreadd");
        assert_eq!(s.ppid, 0);
        assert_eq!(s.rss_pages, 0);
    }

    #[test]
    fn pid_stat_errors_name_the_problem() {
        assert_eq!(
            parse_pid_stat("12 bash S 1").unwrap_err(),
            ParseError::Malformed {
                file: STAT,
                reason: "no '(' before the command name"
            }
        );
        assert_eq!(
            parse_pid_stat("12 (bash) S 1 2 3").unwrap_err(),
            ParseError::MissingField {
                file: STAT,
                field: "minflt"
            }
        );
        let err = parse_pid_stat("x (bash) S 1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/proc/PID/stat: field 'pid' is not a valid number: 'x'"
        );
    }

    #[test]
    fn pid_status_of_a_shell() {
        let s = parse_pid_status(STATUS_BASH).unwrap();
        assert_eq!(s.name, "bash");
        assert_eq!((s.tgid, s.pid, s.ppid), (26954, 26954, 26952));
        assert_eq!(s.uid, [0, 0, 0, 0]);
        assert_eq!(s.threads, 1);
        assert_eq!(s.vm_rss_kib, Some(4120));
        assert_eq!(s.vm_hwm_kib, Some(4120));
    }

    #[test]
    fn pid_status_of_a_kernel_thread_has_no_memory() {
        let s = parse_pid_status(STATUS_KTHREADD).unwrap();
        assert_eq!(s.name, "kthreadd");
        assert_eq!((s.tgid, s.ppid), (2, 0));
        assert_eq!(s.vm_rss_kib, None);
        assert_eq!(s.vm_hwm_kib, None);
    }

    #[test]
    fn pid_status_of_a_thread_and_missing_fields() {
        let text = "Name:\tworker\nTgid:\t100\nPid:\t105\nPPid:\t1\n\
                    Uid:\t1000\t1001\t1002\t1003\nThreads:\t4\nVmRSS:\t  2048 kB\n";
        let s = parse_pid_status(text).unwrap();
        assert_eq!((s.tgid, s.pid), (100, 105));
        assert_eq!(s.uid, [1000, 1001, 1002, 1003]);
        assert_eq!(s.threads, 4);
        assert_eq!(s.vm_rss_kib, Some(2048));
        assert_eq!(
            parse_pid_status("Name:\tx\nPid:\t1\n").unwrap_err(),
            ParseError::MissingField {
                file: STATUS,
                field: "Tgid"
            }
        );
    }

    #[test]
    fn pid_io() {
        let io = parse_pid_io(IO).unwrap();
        assert_eq!(
            io,
            IoCounters {
                rchar: 1537641,
                wchar: 64087,
                syscr: 9436,
                syscw: 332,
                read_bytes: 81920,
                write_bytes: 225280,
                cancelled_write_bytes: 102400,
            }
        );
        let twice = io.saturating_add(io);
        assert_eq!(twice.rchar, 2 * 1537641);
        assert_eq!(twice.syscw, 664);
        assert_eq!(twice.saturating_sub(io), io);
        assert_eq!(io.saturating_sub(twice), IoCounters::default());
        assert!(matches!(
            parse_pid_io("rchar: 1\n"),
            Err(ParseError::MissingField { field: "wchar", .. })
        ));
    }

    #[test]
    fn proc_stat_cpu_lines() {
        let s = parse_proc_stat(SYSTEM_STAT).unwrap();
        assert_eq!(
            s.total,
            CpuTimes {
                user: 48639,
                nice: 0,
                system: 10224,
                idle: 167916,
                iowait: 623,
                irq: 0,
                softirq: 58,
                steal: 50,
                guest: 0,
                guest_nice: 0,
            }
        );
        assert_eq!(s.per_cpu.len(), 2);
        assert_eq!(s.per_cpu[0].0, 0);
        assert_eq!(s.per_cpu[1].0, 1);
        assert_eq!(s.per_cpu[1].1.user, 25823);
        assert_eq!(s.total.busy(), 48639 + 10224 + 58 + 50);
        assert_eq!(s.total.idle_total(), 167916 + 623);
        assert_eq!(s.total.total(), s.total.busy() + s.total.idle_total());
    }

    #[test]
    fn proc_stat_old_kernel_short_lines_and_errors() {
        let s = parse_proc_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\nintr 5\n").unwrap();
        assert_eq!(s.total.idle, 4);
        assert_eq!(s.total.steal, 0);
        assert!(matches!(
            parse_proc_stat("intr 5\n"),
            Err(ParseError::MissingField { field: "cpu", .. })
        ));
        assert!(matches!(
            parse_proc_stat("cpu 1 2\n"),
            Err(ParseError::MissingField {
                field: "system",
                ..
            })
        ));
    }

    #[test]
    fn loadavg() {
        let l = parse_loadavg(LOADAVG).unwrap();
        assert_eq!(l.one, 1.34);
        assert_eq!(l.five, 1.59);
        assert_eq!(l.fifteen, 0.90);
        assert_eq!((l.runnable, l.total, l.last_pid), (3, 128, 30067));
        assert!(matches!(
            parse_loadavg("0.1 0.2 0.3 5 77"),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn meminfo() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert!(m.total_kib > 0);
        assert!(m.available_kib <= m.total_kib);
        assert!(m.free_kib <= m.total_kib);
        let text = "MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 60 kB\nBuffers: 1 kB\n\
                    Cached: 20 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n";
        assert_eq!(
            parse_meminfo(text).unwrap(),
            MemInfo {
                total_kib: 100,
                free_kib: 10,
                available_kib: 60,
                buffers_kib: 1,
                cached_kib: 20,
                swap_total_kib: 0,
                swap_free_kib: 0,
            }
        );
        assert!(matches!(
            parse_meminfo("MemTotal: 100 kB\n"),
            Err(ParseError::MissingField {
                field: "MemFree",
                ..
            })
        ));
    }

    #[test]
    fn diskstats() {
        let d = parse_diskstats(DISKSTATS).unwrap();
        assert_eq!(d.len(), 10);
        let vda = d.iter().find(|d| d.name == "vda").unwrap();
        assert_eq!((vda.major, vda.minor), (254, 0));
        assert_eq!(vda.reads_completed, 41804);
        assert_eq!(vda.sectors_read, 6573810);
        assert_eq!(vda.writes_completed, 10429);
        assert_eq!(vda.sectors_written, 13337768);
        assert_eq!(vda.ios_in_progress, 0);
        assert_eq!(vda.io_ticks_ms, 20384);
        assert_eq!(vda.weighted_io_ms, 112467);
        assert!(matches!(
            parse_diskstats("8 0 sda 1 2 3\n"),
            Err(ParseError::MissingField { .. })
        ));
    }

    #[test]
    fn children() {
        assert_eq!(
            parse_children("30038 30040 \n").unwrap(),
            vec![30038, 30040]
        );
        assert_eq!(parse_children("").unwrap(), Vec::<i32>::new());
        assert!(parse_children("12 x").is_err());
    }
}
