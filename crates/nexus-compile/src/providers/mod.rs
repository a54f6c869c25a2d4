//! Probe providers: one module per probe-kind family. A provider expands an
//! attach point into concrete attach specs (through the catalog), names the
//! program type, and says how `argN`, `retval` and `args.NAME` are read
//! from the program's context.

mod fentry;
mod perf;
mod regs;
mod special;
pub mod tracepoint;

use crate::artifact::{AttachSpec, ProgKind};
use crate::catalog::{CatalogError, ProbeCatalog};
use crate::ty::{Space, Ty};
use nexus_insn::Size;
use nexus_lang::Diagnostic;
use nexus_lang::ast::{AttachPoint, ProbeKind};

/// A load from the program context (`r1` at entry) at a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtxRead {
    /// Byte offset.
    pub off: i16,
    /// Access width.
    pub size: Size,
    /// Sign-extend.
    pub signed: bool,
}

impl CtxRead {
    /// An 8-byte slot.
    pub const fn u64_at(off: i16) -> CtxRead {
        CtxRead {
            off,
            size: Size::DW,
            signed: false,
        }
    }
}

/// How one `args.NAME` field is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgRead {
    /// An integer (or pointer) loaded from the context.
    Int(CtxRead, Ty),
    /// An inline `char[N]` array in the context (tracepoints).
    InlineStr {
        /// Offset of the array.
        off: i16,
        /// Length.
        len: u32,
    },
    /// A syscall argument read from the `struct pt_regs *` that is the
    /// first argument of the `sys_enter` raw tracepoint.
    SyscallArg {
        /// Offset of the register in `struct pt_regs`.
        reg_off: i16,
        /// The field's type.
        ty: Ty,
    },
    /// The syscall number (`args.__syscall_nr`) under raw lowering.
    SyscallNr,
    /// A `__data_loc char[]` string: a `u32` at `off` locates it in the
    /// context.
    DataLocStr {
        /// Offset of the locator.
        off: i16,
    },
}

/// One `args.NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgField {
    /// Field name.
    pub name: String,
    /// How to read it.
    pub read: ArgRead,
}

impl ArgField {
    /// The field's value type.
    pub fn ty(&self) -> Ty {
        match &self.read {
            ArgRead::Int(_, ty) => ty.clone(),
            ArgRead::InlineStr { len, .. } => Ty::Str(*len),
            ArgRead::SyscallArg { ty, .. } => ty.clone(),
            ArgRead::SyscallNr => Ty::I64,
            ArgRead::DataLocStr { .. } => Ty::Str(crate::ty::DEFAULT_STRLEN),
        }
    }
}

/// One concrete place a program attaches (wildcards expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The attach spec for the backend.
    pub attach: AttachSpec,
    /// Canonical probe name (the `probe` builtin).
    pub probe: String,
    /// Function name (the `func` builtin), empty when not meaningful.
    pub func: String,
    /// `args` fields, when the provider has them.
    pub args: Option<Vec<ArgField>>,
    /// For `syscalls:sys_enter_X`/`sys_exit_X`: the syscall, so the probe
    /// can be lowered onto the `sys_enter`/`sys_exit` raw tracepoints.
    pub syscall: Option<Syscall>,
}

/// A syscall tracepoint's number and side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    /// x86_64 syscall number.
    pub nr: u32,
    /// True for `sys_exit_X`.
    pub exit: bool,
}

/// A probe-kind family.
pub trait Provider: Sync {
    /// Expand `ap` into concrete attach points.
    fn expand(
        &self,
        ap: &AttachPoint,
        catalog: &dyn ProbeCatalog,
    ) -> Result<Vec<Expanded>, Diagnostic>;
    /// The program type to load as.
    fn prog_kind(&self, kind: ProbeKind) -> ProgKind;
    /// How `argN` is read, `None` if the provider has no `argN`.
    fn arg(&self, _n: u32) -> Option<CtxRead> {
        None
    }
    /// How `retval` is read (`kind` tells entry from return probes).
    fn retval(&self, _kind: ProbeKind, _e: &Expanded) -> Option<CtxRead> {
        None
    }
    /// Address space of pointers read from arguments.
    fn space(&self) -> Space {
        Space::Kernel
    }
    /// True when the probe can fire in the tracer's own process, so it
    /// needs the self guard (and honours the process-tree scope).
    fn sees_tracer(&self) -> bool {
        true
    }
    /// True when `kstack`/`ustack` work: `bpf_get_stackid` is available to
    /// the program type (kprobe, uprobe, tracepoint, raw tracepoint,
    /// perf event, tracing) and the probe fires in a task's context. Not
    /// BEGIN/END, which run from the tracer through `BPF_PROG_TEST_RUN`.
    fn has_stack(&self) -> bool {
        true
    }
}

/// The provider of a probe kind.
pub fn provider(kind: ProbeKind) -> &'static dyn Provider {
    match kind {
        ProbeKind::Begin | ProbeKind::End => &special::Special,
        ProbeKind::Tracepoint => &tracepoint::Tracepoint,
        ProbeKind::RawTracepoint => &tracepoint::RawTracepoint,
        ProbeKind::Kprobe | ProbeKind::Kretprobe => &regs::Kprobe,
        ProbeKind::Uprobe | ProbeKind::Uretprobe => &regs::Uprobe,
        ProbeKind::Fentry | ProbeKind::Fexit => &fentry::Fentry,
        ProbeKind::Profile => &perf::Profile,
        ProbeKind::Interval => &perf::Interval,
        ProbeKind::Software | ProbeKind::Hardware => &perf::PerfCounter,
    }
}

/// A diagnostic for a catalog failure at an attach point.
pub(crate) fn catalog_error(ap: &AttachPoint, e: CatalogError) -> Diagnostic {
    Diagnostic::error(ap.span, format!("cannot look up `{}`: {e}", ap.text))
}

/// The "no match" diagnostic, with a did-you-mean over `candidates`.
pub(crate) fn not_found<'a>(
    ap: &AttachPoint,
    what: &str,
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Diagnostic {
    let hint = nexus_lang::did_you_mean(name, candidates).map(|s| format!("did you mean `{s}`?"));
    Diagnostic::error(ap.span, format!("{what} `{name}` not found"))
        .with_label("no such probe")
        .with_hint_opt(hint)
}
