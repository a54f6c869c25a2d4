//! Attaching programs. Every attachment is a [`Link`] owning file
//! descriptors (a BPF link plus, for perf-based probes, the perf event), so
//! dropping the handle — or the process dying — detaches it.

use crate::elf::{self, ElfError};
use crate::perf::{self, PerfError, Sample};
use crate::prog::Program;
use crate::sys::{self, BpfAttr, BpfCmd};
use crate::tracefs::{self, TracefsError};
use nexus_insn::{AttachType, ProgType};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error(transparent)]
    Perf(#[from] PerfError),
    #[error(
        "kprobes are unavailable: this kernel has no kprobe PMU (/sys/bus/event_source/devices/kprobe is missing), so it was built without CONFIG_KPROBES"
    )]
    NoKprobes,
    #[error("program {name:?} is a {actual} program; {target} needs a {expected} program")]
    WrongProgType {
        name: String,
        actual: &'static str,
        expected: &'static str,
        target: String,
    },
    #[error("attaching program {name:?} to {target}: {call} failed: {message} (errno {errno})")]
    Kernel {
        name: String,
        target: String,
        call: &'static str,
        errno: i32,
        message: String,
    },
    #[error("listing online CPUs for {target}: {source}")]
    Cpus {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} {arg:?} contains a NUL byte")]
    Nul { what: &'static str, arg: String },
}

/// Where to attach a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachTarget {
    /// A classic tracepoint (`tracepoint:CAT:NAME`), program type tracepoint.
    Tracepoint {
        category: String,
        name: String,
    },
    /// A raw tracepoint (`rawtracepoint:NAME`), program type raw_tracepoint.
    RawTracepoint {
        name: String,
    },
    /// fentry, fexit or tp_btf: the target was fixed at load time
    /// ([`crate::BtfTarget`]).
    Tracing,
    Uprobe(UprobeTarget),
    Kprobe(KprobeTarget),
    PerfEvent(PerfEventTarget),
}

/// A uprobe or uretprobe at a file offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UprobeTarget {
    pub path: PathBuf,
    pub offset: u64,
    pub retprobe: bool,
    /// Trace only this process; `None` traces every process.
    pub pid: Option<i32>,
}

impl UprobeTarget {
    /// Resolve `binary` (path, `$PATH` name or library name) and `symbol`.
    pub fn symbol(
        binary: &str,
        symbol: &str,
        retprobe: bool,
        pid: Option<i32>,
    ) -> Result<Self, ElfError> {
        let path = elf::resolve_binary(binary)?;
        let offset = elf::symbol_offset(&path, symbol)?;
        Ok(UprobeTarget {
            path,
            offset,
            retprobe,
            pid,
        })
    }
}

/// A kprobe or kretprobe on a kernel function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KprobeTarget {
    pub function: String,
    pub offset: u64,
    pub retprobe: bool,
}

/// Which CPUs a sampling event runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cpus {
    AllOnline,
    One(u32),
}

/// A software perf event driving a perf_event program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerfEventTarget {
    /// `PERF_COUNT_SW_*`.
    pub config: u64,
    pub sample: Sample,
    pub cpus: Cpus,
}

impl PerfEventTarget {
    /// `profile:hz:N`: cpu-clock at `hz` on every online CPU.
    #[must_use]
    pub fn profile_hz(hz: u64) -> Self {
        PerfEventTarget {
            config: perf::PERF_COUNT_SW_CPU_CLOCK,
            sample: Sample::Frequency(hz),
            cpus: Cpus::AllOnline,
        }
    }
    /// `interval:ns:N` (and ms/us/s scaled to ns): a cpu-clock timer on CPU 0.
    #[must_use]
    pub fn interval_ns(period_ns: u64) -> Self {
        PerfEventTarget {
            config: perf::PERF_COUNT_SW_CPU_CLOCK,
            sample: Sample::Period(period_ns),
            cpus: Cpus::One(0),
        }
    }
}

/// One kernel attachment. Field order matters: the BPF link is closed before
/// the perf event it sits on.
#[derive(Debug)]
struct LinkPart {
    _link: OwnedFd,
    _perf: Option<OwnedFd>,
}

/// An attached program (one probe, possibly on several CPUs). Dropping it detaches.
#[derive(Debug)]
pub struct Link {
    target: String,
    parts: Vec<LinkPart>,
}

impl Link {
    /// A description of what is attached, e.g. `tracepoint:syscalls:sys_enter_write`.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }
    /// How many kernel links make up this attachment (one per CPU for sampling).
    #[must_use]
    pub fn len(&self) -> usize {
        self.parts.len()
    }
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
    /// The BPF link descriptors, one per kernel link. Not the perf event
    /// descriptors beneath them: a link holds its perf event, so whoever
    /// closes the last copy of a link descriptor (e.g. a process that
    /// inherited it) releases both.
    pub fn as_fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> + '_ {
        self.parts.iter().map(|p| p._link.as_fd())
    }
}

/// Most threads [`detach_all`] uses.
const MAX_DETACH_THREADS: usize = 64;

/// Detach many links at once and return when all are gone.
///
/// Closing a perf-based link waits for kernel RCU grace periods (measured
/// here: ~80 ms per classic tracepoint, ~130 ms per uprobe; raw tracepoint,
/// tp_btf and cpu-clock links close in well under 1 ms). Closing from
/// parallel threads lets the waits that happen outside the kernel's trace
/// event mutex overlap: one tracepoint + two uprobes + three cheap links
/// took 260 ms this way against 340 ms one after another. Callers that must
/// not wait at all can run this on a background thread.
pub fn detach_all(links: Vec<Link>) {
    let parts: Vec<LinkPart> = links.into_iter().flat_map(|l| l.parts).collect();
    let threads = parts.len().min(MAX_DETACH_THREADS);
    if threads <= 1 {
        return drop(parts);
    }
    let mut buckets: Vec<Vec<LinkPart>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, part) in parts.into_iter().enumerate() {
        buckets[i % threads].push(part);
    }
    std::thread::scope(|scope| {
        for bucket in buckets {
            // If no thread can be spawned, `bucket` is dropped here instead:
            // detaching still happens, only serially.
            let _ = std::thread::Builder::new()
                .name("nexus-detach".into())
                .spawn_scoped(scope, move || drop(bucket));
        }
    });
}

fn explain(errno: i32, prog: &Program) -> String {
    match errno {
        libc::EPERM if prog.prog_type() == ProgType::Tracing => {
            "the kernel refused (EPERM): attaching to kernel functions is locked down on this kernel".into()
        }
        libc::EPERM => "the kernel refused (EPERM): missing privileges or locked down".into(),
        libc::EINVAL => "the kernel rejected the program/target combination as invalid".into(),
        libc::ENOENT => "the attach target does not exist".into(),
        libc::EEXIST => "a program is already attached there".into(),
        _ => io::Error::from_raw_os_error(errno).to_string(),
    }
}

impl AttachTarget {
    fn describe(&self) -> String {
        match self {
            AttachTarget::Tracepoint { category, name } => format!("tracepoint:{category}:{name}"),
            AttachTarget::RawTracepoint { name } => format!("rawtracepoint:{name}"),
            AttachTarget::Tracing => "its BTF target".into(),
            AttachTarget::Uprobe(u) => format!(
                "{}:{}+{:#x}",
                if u.retprobe { "uretprobe" } else { "uprobe" },
                u.path.display(),
                u.offset
            ),
            AttachTarget::Kprobe(k) => format!(
                "{}:{}+{:#x}",
                if k.retprobe { "kretprobe" } else { "kprobe" },
                k.function,
                k.offset
            ),
            AttachTarget::PerfEvent(p) => format!("perf event {p:?}"),
        }
    }

    fn expected_type(&self) -> ProgType {
        match self {
            AttachTarget::Tracepoint { .. } => ProgType::Tracepoint,
            AttachTarget::RawTracepoint { .. } => ProgType::RawTracepoint,
            AttachTarget::Tracing => ProgType::Tracing,
            AttachTarget::Uprobe(_) | AttachTarget::Kprobe(_) => ProgType::Kprobe,
            AttachTarget::PerfEvent(_) => ProgType::PerfEvent,
        }
    }
}

/// Attach `prog` to `target`.
pub fn attach(prog: &Program, target: &AttachTarget) -> Result<Link, AttachError> {
    let desc = target.describe();
    let expected = target.expected_type();
    if prog.prog_type() != expected {
        return Err(AttachError::WrongProgType {
            name: prog.name().to_string(),
            actual: prog.prog_type().name(),
            expected: expected.name(),
            target: desc,
        });
    }
    let kernel_err = |call: &'static str| {
        let desc = desc.clone();
        move |e: io::Error| {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            AttachError::Kernel {
                name: prog.name().to_string(),
                target: desc,
                call,
                errno,
                message: explain(errno, prog),
            }
        }
    };
    let parts = match target {
        AttachTarget::Tracepoint { category, name } => {
            let tp = tracefs::tracepoint(category, name)?;
            let pfd = perf::open_tracepoint(tp.id, &desc)?;
            vec![perf_link(prog, pfd).map_err(kernel_err("BPF_LINK_CREATE"))?]
        }
        AttachTarget::RawTracepoint { name } => {
            let c = CString::new(name.as_str()).map_err(|_| AttachError::Nul {
                what: "raw tracepoint name",
                arg: name.clone(),
            })?;
            let mut attr = BpfAttr::new();
            attr.set_ptr(0, c.as_ptr())
                .set_u32(8, prog.as_raw_fd() as u32);
            let fd = sys::bpf_fd(BpfCmd::RawTracepointOpen, &mut attr)
                .map_err(kernel_err("BPF_RAW_TRACEPOINT_OPEN"))?;
            drop(c);
            vec![LinkPart {
                _link: fd,
                _perf: None,
            }]
        }
        AttachTarget::Tracing => vec![LinkPart {
            _link: tracing_link(prog).map_err(kernel_err("BPF_LINK_CREATE"))?,
            _perf: None,
        }],
        AttachTarget::Uprobe(u) => {
            let path = u.path.to_str().ok_or_else(|| AttachError::Nul {
                what: "non-UTF-8 path",
                arg: u.path.display().to_string(),
            })?;
            let pfd = perf::open_probe("uprobe", path, u.offset, u.retprobe, u.pid)?;
            vec![perf_link(prog, pfd).map_err(kernel_err("BPF_LINK_CREATE"))?]
        }
        AttachTarget::Kprobe(k) => {
            if !perf::pmu_exists("kprobe") {
                return Err(AttachError::NoKprobes);
            }
            let pfd = perf::open_probe("kprobe", &k.function, k.offset, k.retprobe, None)?;
            vec![perf_link(prog, pfd).map_err(kernel_err("BPF_LINK_CREATE"))?]
        }
        AttachTarget::PerfEvent(p) => {
            let cpus = match p.cpus {
                Cpus::One(c) => vec![c],
                Cpus::AllOnline => {
                    crate::cpu::online_cpus().map_err(|source| AttachError::Cpus {
                        target: desc.clone(),
                        source,
                    })?
                }
            };
            let mut parts = Vec::with_capacity(cpus.len());
            for cpu in cpus {
                let pfd = perf::open_software(p.config, p.sample, cpu)?;
                parts.push(perf_link(prog, pfd).map_err(kernel_err("BPF_LINK_CREATE"))?);
            }
            parts
        }
    };
    Ok(Link {
        target: desc,
        parts,
    })
}

/// `BPF_LINK_CREATE` with attach type `BPF_PERF_EVENT` on a (disabled)
/// perf event, then enable the event.
fn perf_link(prog: &Program, pfd: OwnedFd) -> io::Result<LinkPart> {
    let mut attr = BpfAttr::new();
    attr.set_u32(0, prog.as_raw_fd() as u32)
        .set_u32(4, pfd.as_raw_fd() as u32)
        .set_u32(8, AttachType::PerfEvent as u32);
    let link = sys::bpf_fd(BpfCmd::LinkCreate, &mut attr)?;
    sys::ioctl(pfd.as_fd(), sys::PERF_EVENT_IOC_ENABLE, 0)?;
    Ok(LinkPart {
        _link: link,
        _perf: Some(pfd),
    })
}

/// fentry/fexit/tp_btf: `BPF_LINK_CREATE` with the program's attach type,
/// falling back to `BPF_RAW_TRACEPOINT_OPEN` (name NULL) on older kernels.
fn tracing_link(prog: &Program) -> io::Result<OwnedFd> {
    let attach_type = prog
        .expected_attach_type()
        .unwrap_or(AttachType::TraceRawTp);
    let mut attr = BpfAttr::new();
    attr.set_u32(0, prog.as_raw_fd() as u32)
        .set_u32(8, attach_type as u32);
    match sys::bpf_fd(BpfCmd::LinkCreate, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut attr = BpfAttr::new();
            attr.set_u32(8, prog.as_raw_fd() as u32);
            sys::bpf_fd(BpfCmd::RawTracepointOpen, &mut attr)
        }
        r => r,
    }
}
