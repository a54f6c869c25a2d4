//! What the VM asks of the machine it runs on: a clock, the current CPU and
//! the current task. A trait so tests can pin every value ([`MockPlatform`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// The task a helper such as `get_current_pid_tgid` reports. `Copy`, with a
/// fixed-size name, so helpers read it without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// Thread id (the kernel's `pid`).
    pub pid: u32,
    /// Process id (the kernel's `tgid`).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// NUL-padded name, at most 15 bytes (`TASK_COMM_LEN` is 16).
    pub comm: [u8; 16],
}

impl TaskInfo {
    /// `comm` is cut to 15 bytes so the name stays NUL-terminated.
    #[must_use]
    pub fn new(pid: u32, tgid: u32, uid: u32, gid: u32, comm: &str) -> TaskInfo {
        let mut c = [0u8; 16];
        let n = comm.len().min(15);
        c[..n].copy_from_slice(&comm.as_bytes()[..n]);
        TaskInfo {
            pid,
            tgid,
            uid,
            gid,
            comm: c,
        }
    }
    /// The name as text (up to the first NUL).
    #[must_use]
    pub fn comm_str(&self) -> String {
        let end = self.comm.iter().position(|b| *b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

/// Clock, CPU and task as the helpers see them.
pub trait Platform: Send + Sync + std::fmt::Debug {
    /// Monotonic nanoseconds (`bpf_ktime_get_ns`).
    fn ktime_ns(&self) -> u64;
    /// The CPU the program runs on; selects the per-CPU map slot.
    fn current_cpu(&self) -> u32;
    /// How many CPUs per-CPU maps keep values for; `current_cpu()` is below it.
    fn num_cpus(&self) -> u32;
    /// The task the program runs on behalf of.
    fn current_task(&self) -> TaskInfo;
}

/// The host machine. The clock is `std::time::Instant` measured from the
/// platform's creation, so it is monotonic but starts near zero rather than
/// at boot as `CLOCK_MONOTONIC` does. Finding the CPU a thread runs on needs
/// `sched_getcpu` (libc, unsafe), which this crate forbids, so the CPU is
/// the one the host last set with [`RealPlatform::set_cpu`] (0 by default).
#[derive(Debug)]
pub struct RealPlatform {
    epoch: Instant,
    cpu: AtomicU32,
    num_cpus: u32,
    task: TaskInfo,
}

impl RealPlatform {
    /// Reads the process identity once from `/proc/self` (falling back to
    /// `std::process::id()` and uid/gid 0 where `/proc` is missing).
    #[must_use]
    pub fn new() -> RealPlatform {
        let pid = std::process::id();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| -> u32 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let comm = std::fs::read_to_string("/proc/self/comm")
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let num_cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        RealPlatform {
            epoch: Instant::now(),
            cpu: AtomicU32::new(0),
            num_cpus,
            task: TaskInfo::new(pid, pid, field("Uid:"), field("Gid:"), &comm),
        }
    }

    /// Tell the VM which CPU the following runs are on (clamped below `num_cpus`).
    pub fn set_cpu(&self, cpu: u32) {
        self.cpu
            .store(cpu.min(self.num_cpus.saturating_sub(1)), Ordering::Relaxed);
    }
}

impl Default for RealPlatform {
    fn default() -> Self {
        RealPlatform::new()
    }
}

impl Platform for RealPlatform {
    fn ktime_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    fn current_cpu(&self) -> u32 {
        self.cpu.load(Ordering::Relaxed)
    }
    fn num_cpus(&self) -> u32 {
        self.num_cpus
    }
    fn current_task(&self) -> TaskInfo {
        self.task
    }
}

/// A platform whose clock, CPU and task the test sets.
#[derive(Debug)]
pub struct MockPlatform {
    time: AtomicU64,
    cpu: AtomicU32,
    num_cpus: u32,
    task: Mutex<TaskInfo>,
}

impl MockPlatform {
    /// Time 0, CPU 0 of `num_cpus` (at least 1), task pid/tgid 1000, uid/gid 0, comm "mock".
    #[must_use]
    pub fn new(num_cpus: u32) -> MockPlatform {
        MockPlatform {
            time: AtomicU64::new(0),
            cpu: AtomicU32::new(0),
            num_cpus: num_cpus.max(1),
            task: Mutex::new(TaskInfo::new(1000, 1000, 0, 0, "mock")),
        }
    }
    pub fn set_time(&self, ns: u64) {
        self.time.store(ns, Ordering::Relaxed);
    }
    pub fn advance_time(&self, ns: u64) {
        self.time.fetch_add(ns, Ordering::Relaxed);
    }
    /// Clamped below `num_cpus` so per-CPU maps always have the slot.
    pub fn set_cpu(&self, cpu: u32) {
        self.cpu
            .store(cpu.min(self.num_cpus - 1), Ordering::Relaxed);
    }
    pub fn set_task(&self, task: TaskInfo) {
        // A poisoned lock only means another test thread panicked mid-store;
        // the TaskInfo inside is still a whole value.
        let mut guard = self.task.lock().unwrap_or_else(|e| e.into_inner());
        *guard = task;
    }
}

impl Platform for MockPlatform {
    fn ktime_ns(&self) -> u64 {
        self.time.load(Ordering::Relaxed)
    }
    fn current_cpu(&self) -> u32 {
        self.cpu.load(Ordering::Relaxed)
    }
    fn num_cpus(&self) -> u32 {
        self.num_cpus
    }
    fn current_task(&self) -> TaskInfo {
        *self.task.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_values_are_settable() {
        let p = MockPlatform::new(4);
        p.set_time(5);
        p.advance_time(10);
        p.set_cpu(9);
        assert_eq!(p.ktime_ns(), 15);
        assert_eq!(p.current_cpu(), 3);
        assert_eq!(p.num_cpus(), 4);
    }

    #[test]
    fn real_clock_is_monotonic() {
        let p = RealPlatform::new();
        let a = p.ktime_ns();
        let b = p.ktime_ns();
        assert!(b >= a);
        assert_eq!(p.current_cpu(), 0);
        assert_eq!(p.current_task().tgid, std::process::id());
    }
}
