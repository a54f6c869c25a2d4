//! Capability probing for `bpfnexus doctor`: what this kernel and process
//! can actually do, each answer with the reason and a fix when it can't.
//!
//! Probes load and attach tiny programs for real, because "the config says
//! so" and "it works here" differ (e.g. fentry loads are refused after the
//! verifier on locked-down kernels).

use crate::btf;
use crate::link::{self, AttachTarget, KprobeTarget, PerfEventTarget, UprobeTarget};
use crate::map::{Map, MapSpec};
use crate::prog::BtfTarget;
use crate::prog::{Program, ProgramSpec};
use crate::ringbuf::RingBuf;
use crate::{elf, perf, tracefs};
use nexus_insn::{Insn, MapType, ProgType, Reg};
use serde::Serialize;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One probed capability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capability {
    pub available: bool,
    /// What was found, or why it is unavailable (with the errno).
    pub detail: String,
    /// What would make it available.
    pub fix: Option<String>,
}

impl Capability {
    fn yes(detail: impl Into<String>) -> Self {
        Capability {
            available: true,
            detail: detail.into(),
            fix: None,
        }
    }
    fn no(detail: impl Into<String>, fix: Option<&str>) -> Self {
        Capability {
            available: false,
            detail: detail.into(),
            fix: fix.map(str::to_string),
        }
    }
}

/// Everything `doctor` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub kernel_release: String,
    pub euid: u32,
    pub root: Capability,
    pub cap_bpf: Capability,
    pub cap_perfmon: Capability,
    pub cap_sys_admin: Capability,
    pub bpf_syscall: Capability,
    pub tracepoint: Capability,
    pub raw_tracepoint: Capability,
    pub tp_btf: Capability,
    pub uprobe: Capability,
    pub uretprobe: Capability,
    pub kprobe: Capability,
    pub fentry: Capability,
    pub fexit: Capability,
    pub perf_event: Capability,
    pub ringbuf: Capability,
    pub btf: Capability,
    pub tracefs: Capability,
    /// Whether the kernel was built with `CONFIG_KPROBES`.
    pub kprobes_config: Capability,
    pub bpftrace: Capability,
    /// How long probing took, in microseconds.
    pub probe_micros: u64,
}

const FIX_PRIV: &str =
    "run as root, or grant CAP_BPF and CAP_PERFMON (e.g. `setcap cap_bpf,cap_perfmon+ep`)";

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// The effective capability mask from `/proc/self/status`.
fn cap_eff() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

/// True when this process holds the capabilities BPF tracing needs
/// (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN), so an `EPERM` from the
/// kernel is a policy refusal rather than missing privilege.
pub(crate) fn has_bpf_privileges() -> bool {
    cap_eff().is_some_and(|m| m & (1 << 21) != 0 || (m & (1 << 39) != 0 && m & (1 << 38) != 0))
}

fn cap_bit(eff: Option<u64>, bit: u32, name: &str, fix: &str) -> Capability {
    match eff {
        Some(m) if m & (1 << bit) != 0 => {
            Capability::yes(format!("{name} is in the effective set"))
        }
        Some(_) => Capability::no(format!("{name} is not in the effective set"), Some(fix)),
        None => Capability::no("could not read CapEff from /proc/self/status", None),
    }
}

/// `r0 = 0; exit`.
fn trivial() -> Vec<Insn> {
    vec![Insn::mov64_imm(Reg::R0, 0), Insn::exit()]
}

const NO_MAPS: [Map; 0] = [];

fn load_and_attach(
    name: &str,
    spec: &ProgramSpec<'_>,
    target: &AttachTarget,
    keep: &mut Vec<link::Link>,
) -> Capability {
    let prog = match Program::load(spec, &NO_MAPS) {
        Ok(p) => p,
        Err(e) => {
            let fix = match e.errno() {
                Some(libc::EPERM) if spec.prog_type == ProgType::Tracing => Some(
                    "none from user space: the kernel locks down function tracing (lockdown/IMA policy or a hardened build)",
                ),
                Some(libc::EPERM) => Some(FIX_PRIV),
                _ => None,
            };
            return Capability::no(format!("{name}: {e}"), fix);
        }
    };
    match link::attach(&prog, target) {
        Ok(l) => {
            keep.push(l);
            Capability::yes(format!("{name} program loaded and attached"))
        }
        Err(e) => {
            let fix = match &e {
                link::AttachError::NoKprobes => Some(
                    "use a kernel built with CONFIG_KPROBES=y, or use tracepoints/raw tracepoints instead",
                ),
                link::AttachError::Tracefs(_) => {
                    Some("mount tracefs: `mount -t tracefs nodev /sys/kernel/tracing` (as root)")
                }
                _ => None,
            };
            Capability::no(format!("{name}: {e}"), fix)
        }
    }
}

fn spawn_bpftrace() -> Option<Child> {
    Command::new("bpftrace")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn finish_bpftrace(child: Option<Child>) -> Capability {
    let fix = Some("optional: install bpftrace (`apt install bpftrace`) for differential checks");
    let Some(mut child) = child else {
        return Capability::no("bpftrace is not installed (not found on $PATH)", fix);
    };
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            _ => {
                // Best effort: the child is ours and is being abandoned.
                let _ = child.kill();
                let _ = child.wait();
                return Capability::no("`bpftrace --version` did not answer within 500 ms", None);
            }
        }
    }
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        // A failed read leaves `out` empty, reported below.
        let _ = s.read_to_string(&mut out);
    }
    let v = out.trim();
    if v.is_empty() {
        Capability::no("`bpftrace --version` printed nothing", None)
    } else {
        Capability::yes(v.to_string())
    }
}

fn kprobes_config() -> Capability {
    let fix = Some("use a kernel built with CONFIG_KPROBES=y");
    if perf::pmu_exists("kprobe") {
        return Capability::yes("kprobe PMU present (/sys/bus/event_source/devices/kprobe)");
    }
    let release = kernel_release();
    let config = read_kernel_config(&release);
    match config.as_deref().map(|c| {
        c.lines().find(|l| {
            l.starts_with("CONFIG_KPROBES=") || l.starts_with("# CONFIG_KPROBES is not set")
        })
    }) {
        Some(Some(l)) if l.ends_with("=y") => Capability::no(
            "CONFIG_KPROBES=y in the kernel config, but the kprobe PMU is missing",
            None,
        ),
        Some(_) => Capability::no(
            "kernel built without CONFIG_KPROBES (kernel config; no kprobe PMU)",
            fix,
        ),
        None => Capability::no(
            "no kprobe PMU in /sys/bus/event_source/devices (kernel config not readable)",
            fix,
        ),
    }
}

fn read_kernel_config(release: &str) -> Option<String> {
    if let Ok(gz) = std::fs::read("/proc/config.gz") {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some(text);
        }
    }
    std::fs::read_to_string(format!("/boot/config-{release}")).ok()
}

/// A uprobe target only this process maps: the entry point of our own
/// executable (present even when stripped), traced for this process only.
/// A shared library such as libc would work too, but registering a uprobe
/// walks every process mapping the file, which costs tens of milliseconds.
fn uprobe_target(retprobe: bool) -> Result<UprobeTarget, String> {
    let path = std::env::current_exe().map_err(|e| format!("finding our own executable: {e}"))?;
    let offset = elf::entry_offset(&path).map_err(|e| e.to_string())?;
    Ok(UprobeTarget {
        path,
        offset,
        retprobe,
        pid: Some(std::process::id() as i32),
    })
}

/// Probe everything `doctor` reports. Attachments made while probing are
/// detached on a background thread, because tearing down perf-based links
/// can take tens of milliseconds each.
#[must_use]
pub fn probe_capabilities() -> Capabilities {
    let start = Instant::now();
    let bpftrace_child = spawn_bpftrace();
    // Parsing vmlinux BTF (several MB) is the slowest local step: start it
    // now on another thread; the tp_btf/fentry probes below reuse the
    // cached result.
    let btf_parse = std::thread::spawn(|| btf::vmlinux().is_ok());
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let eff = cap_eff();
    let root = if euid == 0 {
        Capability::yes("running as root (euid 0)")
    } else {
        Capability::no(format!("running as euid {euid}"), Some(FIX_PRIV))
    };
    let cap_bpf = cap_bit(eff, 39, "CAP_BPF", FIX_PRIV);
    let cap_perfmon = cap_bit(eff, 38, "CAP_PERFMON", FIX_PRIV);
    let cap_sys_admin = cap_bit(eff, 21, "CAP_SYS_ADMIN", "run as root");

    let bpf_syscall = match Map::create(&MapSpec::new("nx_probe", MapType::Array, 4, 8, 1)) {
        Ok(_) => Capability::yes("created a BPF array map"),
        Err(e) => {
            let fix = match e.errno() {
                Some(libc::EPERM) => Some(FIX_PRIV),
                Some(libc::ENOSYS) => Some("use a kernel built with CONFIG_BPF_SYSCALL=y"),
                _ => None,
            };
            Capability::no(e.to_string(), fix)
        }
    };

    let already_mounted = tracefs::mounted_root().is_some();
    let tracefs_cap = match tracefs::root() {
        Ok(p) if already_mounted => Capability::yes(format!("mounted at {}", p.display())),
        Ok(p) => Capability::yes(format!("was not mounted; mounted it at {}", p.display())),
        Err(e) => Capability::no(
            e.to_string(),
            Some("as root: `mount -t tracefs nodev /sys/kernel/tracing`"),
        ),
    };

    let mut links = Vec::new();
    let insns = trivial();
    let tracepoint = load_and_attach(
        "tracepoint",
        &ProgramSpec::new("nx_probe_tp", ProgType::Tracepoint, &insns),
        &AttachTarget::Tracepoint {
            category: "syscalls".into(),
            name: "sys_enter_getppid".into(),
        },
        &mut links,
    );
    let raw_tracepoint = load_and_attach(
        "raw tracepoint",
        &ProgramSpec::new("nx_probe_raw", ProgType::RawTracepoint, &insns),
        &AttachTarget::RawTracepoint {
            name: "sys_enter".into(),
        },
        &mut links,
    );
    let uprobe = match uprobe_target(false) {
        Ok(t) => load_and_attach(
            "uprobe",
            &ProgramSpec::new("nx_probe_up", ProgType::Kprobe, &insns),
            &AttachTarget::Uprobe(t),
            &mut links,
        ),
        Err(e) => Capability::no(format!("uprobe: {e}"), None),
    };
    let uretprobe = match uprobe_target(true) {
        Ok(t) => load_and_attach(
            "uretprobe",
            &ProgramSpec::new("nx_probe_uret", ProgType::Kprobe, &insns),
            &AttachTarget::Uprobe(t),
            &mut links,
        ),
        Err(e) => Capability::no(format!("uretprobe: {e}"), None),
    };
    let kprobe = load_and_attach(
        "kprobe",
        &ProgramSpec::new("nx_probe_kp", ProgType::Kprobe, &insns),
        &AttachTarget::Kprobe(KprobeTarget {
            function: "do_sys_openat2".into(),
            offset: 0,
            retprobe: false,
        }),
        &mut links,
    );
    let perf_event = load_and_attach(
        "perf event (cpu-clock)",
        &ProgramSpec::new("nx_probe_perf", ProgType::PerfEvent, &insns),
        &AttachTarget::PerfEvent(PerfEventTarget::interval_ns(1_000_000_000)),
        &mut links,
    );
    // The thread only warms the cache; `vmlinux()` below gives the verdict.
    let _ = btf_parse.join();
    let btf_cap = match btf::vmlinux() {
        Ok(b) => Capability::yes(format!(
            "{} parsed: {} types",
            btf::VMLINUX_BTF,
            b.type_count()
        )),
        Err(e) => Capability::no(
            e.to_string(),
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
        ),
    };

    let tp_btf = load_and_attach(
        "tp_btf",
        &ProgramSpec::tracing(
            "nx_probe_tpbtf",
            BtfTarget::TpBtf("sys_enter".into()),
            &insns,
        ),
        &AttachTarget::Tracing,
        &mut links,
    );
    let fentry = load_and_attach(
        "fentry",
        &ProgramSpec::tracing(
            "nx_probe_fent",
            BtfTarget::Fentry("do_sys_openat2".into()),
            &insns,
        ),
        &AttachTarget::Tracing,
        &mut links,
    );
    let fexit = load_and_attach(
        "fexit",
        &ProgramSpec::tracing(
            "nx_probe_fexit",
            BtfTarget::Fexit("do_sys_openat2".into()),
            &insns,
        ),
        &AttachTarget::Tracing,
        &mut links,
    );
    let ringbuf = match Map::create(&MapSpec::ringbuf("nx_probe_rb", 4096))
        .map_err(|e| e.to_string())
        .and_then(|m| RingBuf::new(&m).map_err(|e| e.to_string()))
    {
        Ok(_) => Capability::yes("ring buffer created and mapped"),
        Err(e) => Capability::no(e, Some("use Linux 5.8 or newer")),
    };
    // Detaching perf-based links waits for RCU grace periods (~100 ms); do it
    // in the background, concurrently, so the caller isn't held up.
    if !links.is_empty() {
        std::thread::spawn(move || link::detach_all(links));
    }
    let kprobes_config = kprobes_config();
    let bpftrace = finish_bpftrace(bpftrace_child);
    Capabilities {
        kernel_release: kernel_release(),
        euid,
        root,
        cap_bpf,
        cap_perfmon,
        cap_sys_admin,
        bpf_syscall,
        tracepoint,
        raw_tracepoint,
        tp_btf,
        uprobe,
        uretprobe,
        kprobe,
        fentry,
        fexit,
        perf_event,
        ringbuf,
        btf: btf_cap,
        tracefs: tracefs_cap,
        kprobes_config,
        bpftrace,
        probe_micros: start.elapsed().as_micros() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_parsing() {
        let status = "Name:\tx\nCapEff:\t000001fffeffffff\n";
        let m = parse_cap_eff(status);
        assert_eq!(m, Some(0x1fffeffffff));
        assert!(cap_bit(m, 39, "CAP_BPF", "f").available);
        assert!(!cap_bit(Some(0), 39, "CAP_BPF", "f").available);
        assert_eq!(parse_cap_eff("nothing"), None);
    }
}
