//! The only part of bpfnexus that talks to the kernel's BPF machinery.
//!
//! * [`map`]: create and access maps; [`ringbuf`]: consume ring buffers.
//! * [`prog`]: load programs (map relocation, verifier log).
//! * [`link`]: attach programs (tracepoints, raw tracepoints, tp_btf,
//!   fentry/fexit, uprobes, kprobes, perf events); links detach on drop.
//! * [`tracefs`], [`elf`], [`btf`], [`perf`], [`cpu`]: the facts attaching needs.
//! * [`caps`]: what works on this machine, for `bpfnexus doctor`.
//! * [`catalog`]: the compiler's `ProbeCatalog` answered from this machine.
//! * [`sys`]: the single choke point for `bpf(2)`, `perf_event_open(2)`,
//!   `ioctl(2)` and `mmap(2)`, replaceable in tests.
//!
//! Every kernel object is held through an owned file descriptor, so a
//! process that dies — even by `SIGKILL` — leaves nothing attached.

pub mod btf;
pub mod caps;
pub mod catalog;
pub mod cpu;
pub mod elf;
pub mod link;
pub mod map;
pub mod perf;
pub mod prog;
pub mod ringbuf;
pub mod sys;
pub mod syscalls;
pub mod tracefs;

pub use btf::{Btf, BtfError, BtfKind, BtfParam, MemberType};
pub use caps::{Capabilities, Capability, probe_capabilities};
pub use catalog::KernelCatalog;
pub use elf::ElfError;
pub use link::{
    AttachError, AttachTarget, Cpus, KprobeTarget, Link, PerfEventTarget, UprobeTarget, attach,
    detach_all,
};
pub use map::{Map, MapEntry, MapError, MapSpec, UpdateFlags};
pub use perf::{PerfError, Sample};
pub use prog::{BtfTarget, ProgError, Program, ProgramSpec, loaded_program_ids};
pub use ringbuf::{RingBuf, RingBufError, RingBufRecord};
pub use tracefs::{TracefsError, TracepointField, TracepointFormat};
