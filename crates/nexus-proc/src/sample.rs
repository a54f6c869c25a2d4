//! Samples of a process, a process tree and the whole system, and the rates
//! and percentages between two samples.
//!
//! Reading is a thin layer of plain `/proc` reads (a few small files; no
//! waits), so a sampler can run on an event-loop tick. Everything computed
//! from samples is a pure function of two samples and the elapsed time, and
//! is tested without a live system.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::parse::{self, CpuTimes, DiskStat, IoCounters, LoadAvg, MemInfo, ParseError};
use crate::tree::{self, TreeError};

/// Failures while sampling.
#[derive(Debug, Error)]
pub enum SampleError {
    /// Reading a process failed (including "no such process" for the pid
    /// asked about).
    #[error("sampling process: {0}")]
    Process(#[from] TreeError),
    /// A system-wide `/proc` file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A system-wide `/proc` file did not parse.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: ParseError,
    },
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the tick counters (100 on Linux).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // Linux has reported USER_HZ = 100 to user space for decades.
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// Resource usage of one process or the sum over a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// User CPU time, clock ticks.
    pub user_ticks: u64,
    /// Kernel CPU time, clock ticks.
    pub system_ticks: u64,
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// Threads.
    pub threads: u64,
    /// I/O counters; `None` when `/proc/PID/io` was not readable (it needs
    /// ptrace access) for any process counted.
    pub io: Option<IoCounters>,
}

impl Usage {
    /// User + system ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.user_ticks.saturating_add(self.system_ticks)
    }

    /// Field-wise sum; `io` sums whatever is known.
    pub fn saturating_add(self, other: Usage) -> Usage {
        Usage {
            user_ticks: self.user_ticks.saturating_add(other.user_ticks),
            system_ticks: self.system_ticks.saturating_add(other.system_ticks),
            rss_kib: self.rss_kib.saturating_add(other.rss_kib),
            threads: self.threads.saturating_add(other.threads),
            io: match (self.io, other.io) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// One process at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSample {
    /// Its pid.
    pub pid: i32,
    /// Its parent.
    pub ppid: i32,
    /// Its command name.
    pub comm: String,
    /// Peak resident set (`VmHWM`), KiB; 0 for kernel threads.
    pub peak_rss_kib: u64,
    /// Usage counters.
    pub usage: Usage,
}

/// Pure: a sample from the parsed files of one process.
pub fn process_sample_from(
    stat: &parse::PidStat,
    status: &parse::PidStatus,
    io: Option<IoCounters>,
) -> ProcessSample {
    ProcessSample {
        pid: stat.pid,
        ppid: stat.ppid,
        comm: stat.comm.clone(),
        peak_rss_kib: status.vm_hwm_kib.unwrap_or(0),
        usage: Usage {
            user_ticks: stat.utime,
            system_ticks: stat.stime,
            rss_kib: status.vm_rss_kib.unwrap_or(0),
            threads: status.threads,
            io,
        },
    }
}

/// Reads one process: `stat`, `status` and, if permitted, `io`.
pub fn sample_process(pid: i32) -> Result<ProcessSample, SampleError> {
    let stat = tree::read_pid_stat(pid)?;
    let status = tree::read_pid_status(pid)?;
    let io_path = Path::new("/proc").join(pid.to_string()).join("io");
    // Unreadable io (EACCES without ptrace rights) is not fatal: the other
    // counters are still worth having.
    let io = match tree::read_proc_file(pid, &io_path) {
        Ok(text) => parse::parse_pid_io(&text).ok(),
        Err(TreeError::NoSuchProcess { pid }) => {
            return Err(TreeError::NoSuchProcess { pid }.into());
        }
        Err(_) => None,
    };
    Ok(process_sample_from(&stat, &status, io))
}

/// A process and its descendants at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSample {
    /// The root pid.
    pub root: i32,
    /// The root first, then descendants breadth first (those that exited
    /// while sampling are left out).
    pub processes: Vec<ProcessSample>,
    /// Sum over `processes`.
    pub total: Usage,
}

impl TreeSample {
    /// Pure: builds the sample and its total from process samples.
    pub fn from_processes(root: i32, processes: Vec<ProcessSample>) -> TreeSample {
        let total = processes
            .iter()
            .fold(Usage::default(), |sum, p| sum.saturating_add(p.usage));
        TreeSample {
            root,
            processes,
            total,
        }
    }
}

/// Samples `root` and every live descendant. Fails only if `root` itself
/// is gone or unreadable.
///
/// CPU time of a descendant that exits between two samples leaves the sum
/// (until its parent reaps it into `cutime`), so tree deltas use saturating
/// arithmetic and can under-count short-lived children; counting those
/// exactly is the job of the fork/exit tracepoints.
pub fn sample_tree(root: i32) -> Result<TreeSample, SampleError> {
    let mut processes = vec![sample_process(root)?];
    let descendants = match tree::descendants(root) {
        Ok(pids) => pids,
        Err(TreeError::NoSuchProcess { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    for pid in descendants {
        match sample_process(pid) {
            Ok(sample) => processes.push(sample),
            Err(SampleError::Process(TreeError::NoSuchProcess { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(TreeSample::from_processes(root, processes))
}

/// Rates between two [`Usage`] samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageRates {
    /// CPU use in percent of one CPU (200 = two CPUs busy).
    pub cpu_percent: f64,
    /// Storage bytes read per second (`read_bytes`); 0 when io is unknown.
    pub read_bytes_per_sec: f64,
    /// Storage bytes written per second (`write_bytes`).
    pub write_bytes_per_sec: f64,
    /// Bytes through read-like syscalls per second (`rchar`).
    pub rchar_per_sec: f64,
    /// Bytes through write-like syscalls per second (`wchar`).
    pub wchar_per_sec: f64,
}

impl UsageRates {
    /// Pure: rates from `prev` to `cur` over `elapsed`. A zero `elapsed`
    /// gives all zeros rather than infinities.
    pub fn between(
        prev: &Usage,
        cur: &Usage,
        elapsed: Duration,
        ticks_per_second: u64,
    ) -> UsageRates {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 || ticks_per_second == 0 {
            return UsageRates::default();
        }
        let ticks = cur.cpu_ticks().saturating_sub(prev.cpu_ticks()) as f64;
        let io = match (prev.io, cur.io) {
            (Some(p), Some(c)) => c.saturating_sub(p),
            _ => IoCounters::default(),
        };
        UsageRates {
            cpu_percent: ticks / ticks_per_second as f64 / secs * 100.0,
            read_bytes_per_sec: io.read_bytes as f64 / secs,
            write_bytes_per_sec: io.write_bytes as f64 / secs,
            rchar_per_sec: io.rchar as f64 / secs,
            wchar_per_sec: io.wchar as f64 / secs,
        }
    }
}

// ---------------------------------------------------------------------------
// System health

/// The system-wide counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemSnapshot {
    /// Aggregate CPU times.
    pub cpu: CpuTimes,
    /// Per-CPU times.
    pub per_cpu: Vec<(u32, CpuTimes)>,
    /// Physical whole disks only (see [`read_system_snapshot`]).
    pub disks: Vec<DiskStat>,
    /// Memory.
    pub memory: MemInfo,
    /// Load averages.
    pub load: LoadAvg,
}

/// Busy share of one disk between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskBusy {
    /// Device name.
    pub name: String,
    /// Percent of wall time with I/O in flight (`io_ticks`), 0–100.
    pub busy_percent: f64,
    /// Bytes read per second (512-byte sectors).
    pub read_bytes_per_sec: f64,
    /// Bytes written per second.
    pub write_bytes_per_sec: f64,
}

/// System health between two snapshots — what the seed's cpu/disk health
/// triggers compare against thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemHealth {
    /// Percent of all CPU time not idle (iowait counts as idle), 0–100.
    pub cpu_busy_percent: f64,
    /// The same per CPU present in both snapshots.
    pub per_cpu_busy_percent: Vec<(u32, f64)>,
    /// The busiest disk's busy percent (0 with no disks).
    pub disk_busy_percent: f64,
    /// Every disk present in both snapshots.
    pub disks: Vec<DiskBusy>,
    /// `MemAvailable` of the later snapshot, KiB.
    pub mem_available_kib: u64,
    /// `MemTotal`, KiB.
    pub mem_total_kib: u64,
    /// `MemAvailable / MemTotal`, percent.
    pub mem_available_percent: f64,
    /// 1-minute load average of the later snapshot.
    pub load1: f64,
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        (part / whole * 100.0).clamp(0.0, 100.0)
    }
}

fn cpu_busy(prev: &CpuTimes, cur: &CpuTimes) -> f64 {
    let busy = cur.busy().saturating_sub(prev.busy()) as f64;
    let total = cur.total().saturating_sub(prev.total()) as f64;
    percent(busy, total)
}

impl SystemHealth {
    /// Pure: health from `prev` to `cur`, `elapsed` apart (used for the disk
    /// figures, which are in milliseconds of wall time).
    pub fn between(prev: &SystemSnapshot, cur: &SystemSnapshot, elapsed: Duration) -> SystemHealth {
        let per_cpu_busy_percent = cur
            .per_cpu
            .iter()
            .filter_map(|(cpu, now)| {
                prev.per_cpu
                    .iter()
                    .find(|(p, _)| p == cpu)
                    .map(|(_, before)| (*cpu, cpu_busy(before, now)))
            })
            .collect();
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let secs = elapsed.as_secs_f64();
        let per_sec = |v: u64| if secs > 0.0 { v as f64 / secs } else { 0.0 };
        let disks: Vec<DiskBusy> = cur
            .disks
            .iter()
            .filter_map(|now| {
                let before = prev.disks.iter().find(|d| d.name == now.name)?;
                Some(DiskBusy {
                    name: now.name.clone(),
                    busy_percent: percent(
                        now.io_ticks_ms.saturating_sub(before.io_ticks_ms) as f64,
                        elapsed_ms,
                    ),
                    read_bytes_per_sec: per_sec(
                        now.sectors_read.saturating_sub(before.sectors_read) * 512,
                    ),
                    write_bytes_per_sec: per_sec(
                        now.sectors_written.saturating_sub(before.sectors_written) * 512,
                    ),
                })
            })
            .collect();
        let disk_busy_percent = disks.iter().map(|d| d.busy_percent).fold(0.0, f64::max);
        SystemHealth {
            cpu_busy_percent: cpu_busy(&prev.cpu, &cur.cpu),
            per_cpu_busy_percent,
            disk_busy_percent,
            disks,
            mem_available_kib: cur.memory.available_kib,
            mem_total_kib: cur.memory.total_kib,
            mem_available_percent: percent(
                cur.memory.available_kib as f64,
                cur.memory.total_kib as f64,
            ),
            load1: cur.load.one,
        }
    }
}

fn read_system_file(path: &str) -> Result<String, SampleError> {
    std::fs::read_to_string(path).map_err(|source| SampleError::Read {
        path: PathBuf::from(path),
        source,
    })
}

fn parsed<T>(path: &str, result: Result<T, ParseError>) -> Result<T, SampleError> {
    result.map_err(|source| SampleError::Parse {
        path: PathBuf::from(path),
        source,
    })
}

/// Reads `/proc/stat`, `/proc/diskstats`, `/proc/meminfo`, `/proc/loadavg`.
///
/// Only whole devices backed by hardware (`/sys/block/NAME/device` exists)
/// are kept: partitions' I/O is already in their disk's counters, and loop,
/// ram, zram, dm and md devices pass their I/O on to a physical disk.
pub fn read_system_snapshot() -> Result<SystemSnapshot, SampleError> {
    let stat = parsed(
        "/proc/stat",
        parse::parse_proc_stat(&read_system_file("/proc/stat")?),
    )?;
    let disks = parsed(
        "/proc/diskstats",
        parse::parse_diskstats(&read_system_file("/proc/diskstats")?),
    )?
    .into_iter()
    .filter(|d| {
        Path::new("/sys/block")
            .join(&d.name)
            .join("device")
            .exists()
    })
    .collect();
    let memory = parsed(
        "/proc/meminfo",
        parse::parse_meminfo(&read_system_file("/proc/meminfo")?),
    )?;
    let load = parsed(
        "/proc/loadavg",
        parse::parse_loadavg(&read_system_file("/proc/loadavg")?),
    )?;
    Ok(SystemSnapshot {
        cpu: stat.total,
        per_cpu: stat.per_cpu,
        disks,
        memory,
        load,
    })
}

/// Keeps the previous snapshot so each call yields health since the last.
#[derive(Debug, Default)]
pub struct SystemSampler {
    previous: Option<(SystemSnapshot, Instant)>,
}

impl SystemSampler {
    /// A sampler with no history.
    pub fn new() -> SystemSampler {
        SystemSampler::default()
    }

    /// Takes a snapshot; returns health since the previous call (`None` on
    /// the first call, which only establishes the baseline).
    pub fn sample(&mut self) -> Result<Option<SystemHealth>, SampleError> {
        let now = Instant::now();
        let snapshot = read_system_snapshot()?;
        let health = self
            .previous
            .as_ref()
            .map(|(prev, at)| SystemHealth::between(prev, &snapshot, now.duration_since(*at)));
        self.previous = Some((snapshot, now));
        Ok(health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(user: u64, system: u64, idle: u64, iowait: u64) -> CpuTimes {
        CpuTimes {
            user,
            system,
            idle,
            iowait,
            ..CpuTimes::default()
        }
    }

    fn disk(name: &str, io_ticks_ms: u64, sectors_read: u64, sectors_written: u64) -> DiskStat {
        let mut d = parse::parse_diskstats(&format!("254 0 {name} 0 0 0 0 0 0 0 0 0 0 0"))
            .unwrap()
            .remove(0);
        d.io_ticks_ms = io_ticks_ms;
        d.sectors_read = sectors_read;
        d.sectors_written = sectors_written;
        d
    }

    fn snapshot(cpus: [CpuTimes; 2], disks: Vec<DiskStat>, available: u64) -> SystemSnapshot {
        let mut total = CpuTimes::default();
        for c in &cpus {
            total.user += c.user;
            total.system += c.system;
            total.idle += c.idle;
            total.iowait += c.iowait;
        }
        SystemSnapshot {
            cpu: total,
            per_cpu: vec![(0, cpus[0]), (1, cpus[1])],
            disks,
            memory: MemInfo {
                total_kib: 1000,
                free_kib: 100,
                available_kib: available,
                buffers_kib: 0,
                cached_kib: 0,
                swap_total_kib: 0,
                swap_free_kib: 0,
            },
            load: parse::parse_loadavg("0.50 0.25 0.10 1/100 42").unwrap(),
        }
    }

    #[test]
    fn system_health_between_two_snapshots() {
        let prev = snapshot(
            [cpu(100, 50, 800, 50), cpu(0, 0, 1000, 0)],
            vec![disk("vda", 1_000, 0, 0), disk("vdb", 500, 0, 0)],
            600,
        );
        // Over 1 s: cpu0 busy 75 of 100 ticks, cpu1 busy 25 of 100 (its
        // iowait 25 counts as idle); vda busy 250 ms, vdb 1000 ms.
        let cur = snapshot(
            [cpu(150, 75, 825, 50), cpu(20, 5, 1050, 25)],
            vec![disk("vda", 1_250, 8, 4), disk("vdb", 1_500, 0, 0)],
            250,
        );
        let h = SystemHealth::between(&prev, &cur, Duration::from_secs(1));
        assert_eq!(h.per_cpu_busy_percent, vec![(0, 75.0), (1, 25.0)]);
        assert_eq!(h.cpu_busy_percent, 50.0);
        assert_eq!(h.disks.len(), 2);
        assert_eq!(h.disks[0].name, "vda");
        assert_eq!(h.disks[0].busy_percent, 25.0);
        assert_eq!(h.disks[0].read_bytes_per_sec, 4096.0);
        assert_eq!(h.disks[0].write_bytes_per_sec, 2048.0);
        assert_eq!(h.disks[1].busy_percent, 100.0);
        assert_eq!(h.disk_busy_percent, 100.0);
        assert_eq!(h.mem_available_kib, 250);
        assert_eq!(h.mem_total_kib, 1000);
        assert_eq!(h.mem_available_percent, 25.0);
        assert_eq!(h.load1, 0.5);
    }

    #[test]
    fn system_health_degenerate_inputs() {
        let s = snapshot(
            [cpu(1, 1, 1, 0), cpu(1, 1, 1, 0)],
            vec![disk("vda", 7, 0, 0)],
            10,
        );
        // Same snapshot, zero elapsed: zeros, not NaN.
        let h = SystemHealth::between(&s, &s, Duration::ZERO);
        assert_eq!(h.cpu_busy_percent, 0.0);
        assert_eq!(h.disk_busy_percent, 0.0);
        assert_eq!(h.disks[0].read_bytes_per_sec, 0.0);
        // A disk that appeared since the last snapshot is not reported, and
        // a counter that went backwards (device re-added) is clamped.
        let mut later = s.clone();
        later.disks = vec![disk("vda", 0, 0, 0), disk("sdz", 100, 0, 0)];
        let h = SystemHealth::between(&s, &later, Duration::from_millis(100));
        assert_eq!(h.disks.len(), 1);
        assert_eq!(h.disks[0].busy_percent, 0.0);
    }

    #[test]
    fn usage_rates_and_sums() {
        let io = |r, w| IoCounters {
            rchar: r,
            wchar: w,
            read_bytes: r / 2,
            write_bytes: w / 2,
            ..IoCounters::default()
        };
        let a = Usage {
            user_ticks: 100,
            system_ticks: 20,
            rss_kib: 1000,
            threads: 2,
            io: Some(io(1000, 400)),
        };
        let b = Usage {
            user_ticks: 250,
            system_ticks: 70,
            rss_kib: 1500,
            threads: 3,
            io: Some(io(5000, 2400)),
        };
        // 200 ticks at 100 Hz over 2 s = 1 CPU-second per second.
        let r = UsageRates::between(&a, &b, Duration::from_secs(2), 100);
        assert_eq!(r.cpu_percent, 100.0);
        assert_eq!(r.rchar_per_sec, 2000.0);
        assert_eq!(r.wchar_per_sec, 1000.0);
        assert_eq!(r.read_bytes_per_sec, 1000.0);
        assert_eq!(r.write_bytes_per_sec, 500.0);
        assert_eq!(
            UsageRates::between(&a, &b, Duration::ZERO, 100),
            UsageRates::default()
        );
        // A shrinking tree total does not produce negative rates.
        assert_eq!(
            UsageRates::between(&b, &a, Duration::from_secs(1), 100).cpu_percent,
            0.0
        );

        let no_io = Usage { io: None, ..a };
        let sum = a.saturating_add(no_io);
        assert_eq!(sum.cpu_ticks(), 240);
        assert_eq!(sum.threads, 4);
        assert_eq!(sum.io, Some(io(1000, 400)));
        assert_eq!(no_io.saturating_add(no_io).io, None);
    }

    #[test]
    fn tree_sample_totals_from_fixtures() {
        let stat = parse::parse_pid_stat(include_str!("../tests/fixtures/stat_bash.txt")).unwrap();
        let status =
            parse::parse_pid_status(include_str!("../tests/fixtures/status_bash.txt")).unwrap();
        let io = parse::parse_pid_io(include_str!("../tests/fixtures/io.txt")).unwrap();
        let p = process_sample_from(&stat, &status, Some(io));
        assert_eq!(p.pid, 26954);
        assert_eq!(p.comm, "bash");
        assert_eq!(p.peak_rss_kib, 4120);
        assert_eq!(p.usage.user_ticks, 0);
        assert_eq!(p.usage.system_ticks, 1);
        assert_eq!(p.usage.rss_kib, 4120);
        let tree = TreeSample::from_processes(26954, vec![p.clone(), p]);
        assert_eq!(tree.total.rss_kib, 8240);
        assert_eq!(tree.total.cpu_ticks(), 2);
        assert_eq!(tree.total.threads, 2);
        assert_eq!(tree.total.io.map(|io| io.syscw), Some(664));
    }

    #[test]
    fn live_samples_of_self_and_system() {
        let me = std::process::id() as i32;
        let p = sample_process(me).unwrap();
        assert_eq!(p.pid, me);
        assert!(p.usage.rss_kib > 0);
        assert!(p.usage.threads >= 1);
        let tree = sample_tree(me).unwrap();
        assert_eq!(tree.processes[0].pid, me);
        let mut sampler = SystemSampler::new();
        assert!(sampler.sample().unwrap().is_none());
        let h = sampler.sample().unwrap().unwrap();
        assert!(h.mem_total_kib > 0);
        assert!((0.0..=100.0).contains(&h.cpu_busy_percent));
        assert!(clock_ticks_per_second() > 0);
    }
}
