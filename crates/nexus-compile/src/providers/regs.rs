//! kprobe/kretprobe and uprobe/uretprobe: the context is `struct pt_regs`;
//! arguments follow the x86_64 SysV calling convention.

use super::{CtxRead, Expanded, Provider, catalog_error, not_found};
use crate::artifact::{AttachSpec, ProgKind, UprobeLocation};
use crate::catalog::ProbeCatalog;
use crate::ty::Space;
use nexus_lang::Diagnostic;
use nexus_lang::ast::{AttachPoint, AttachTarget, ProbeKind, UserLocation};

/// `struct pt_regs` offsets of the argument registers (di, si, dx, cx, r8,
/// r9) on x86_64.
pub const X86_64_ARG_OFFSETS: [i16; 6] = [112, 104, 96, 88, 72, 64];
/// `struct pt_regs` offset of ax (the return value) on x86_64.
pub const X86_64_RET_OFFSET: i16 = 80;

fn reg_arg(n: u32) -> Option<CtxRead> {
    X86_64_ARG_OFFSETS
        .get(n as usize)
        .map(|&off| CtxRead::u64_at(off))
}

fn reg_ret(kind: ProbeKind) -> Option<CtxRead> {
    kind.is_return()
        .then_some(CtxRead::u64_at(X86_64_RET_OFFSET))
}

pub(super) struct Kprobe;

impl Provider for Kprobe {
    fn expand(
        &self,
        ap: &AttachPoint,
        catalog: &dyn ProbeCatalog,
    ) -> Result<Vec<Expanded>, Diagnostic> {
        let AttachTarget::Kernel {
            function, offset, ..
        } = &ap.target
        else {
            return Err(Diagnostic::error(ap.span, "kprobe needs a FUNCTION"));
        };
        if !catalog.has_kprobes() {
            return Err(Diagnostic::error(
                ap.span,
                "kprobes are not available on this kernel (CONFIG_KPROBES is not set)",
            )
            // fentry is no general way out: kernels without kprobes tend to
            // refuse fentry attachment as well, so point at what always
            // works and at the command that reports the rest.
            .with_hint(
                "use a tracepoint or rawtracepoint probe instead; \
                 `bpfnexus doctor` shows which probe types this kernel supports",
            ));
        }
        let retprobe = ap.kind == ProbeKind::Kretprobe;
        let funcs = if ap.has_wildcard() {
            catalog
                .kernel_functions(function)
                .map_err(|e| catalog_error(ap, e))?
        } else {
            vec![function.clone()]
        };
        if funcs.is_empty() {
            return Err(not_found(ap, "kernel function", function, []));
        }
        Ok(funcs
            .into_iter()
            .map(|f| Expanded {
                probe: format!("{}:{f}", ap.kind.name()),
                attach: AttachSpec::Kprobe {
                    function: f.clone(),
                    offset: offset.unwrap_or(0),
                    retprobe,
                },
                func: f,
                args: None,
                syscall: None,
            })
            .collect())
    }
    fn prog_kind(&self, _: ProbeKind) -> ProgKind {
        ProgKind::Kprobe
    }
    fn arg(&self, n: u32) -> Option<CtxRead> {
        reg_arg(n)
    }
    fn retval(&self, kind: ProbeKind, _: &Expanded) -> Option<CtxRead> {
        reg_ret(kind)
    }
}

pub(super) struct Uprobe;

impl Provider for Uprobe {
    fn expand(
        &self,
        ap: &AttachPoint,
        catalog: &dyn ProbeCatalog,
    ) -> Result<Vec<Expanded>, Diagnostic> {
        let AttachTarget::User { binary, location } = &ap.target else {
            return Err(Diagnostic::error(ap.span, "uprobe needs BINARY:FUNCTION"));
        };
        let retprobe = ap.kind == ProbeKind::Uretprobe;
        let Some(path) = catalog
            .resolve_binary(binary)
            .map_err(|e| catalog_error(ap, e))?
        else {
            return Err(Diagnostic::error(
                ap.span,
                format!("binary or library `{binary}` not found"),
            )
            .with_hint("give an absolute path, or a library name such as `libc`"));
        };
        let kind = ap.kind.name();
        match location {
            UserLocation::Address(addr) => Ok(vec![Expanded {
                probe: format!("{kind}:{path}:{addr:#x}"),
                func: format!("{addr:#x}"),
                attach: AttachSpec::Uprobe {
                    binary: path,
                    location: UprobeLocation::Address(*addr),
                    retprobe,
                },
                args: None,
                syscall: None,
            }]),
            UserLocation::Symbol { name, offset } => {
                let syms = catalog
                    .user_functions(&path, name)
                    .map_err(|e| catalog_error(ap, e))?;
                if syms.is_empty() {
                    let all = catalog
                        .user_functions(&path, "*")
                        .map_err(|e| catalog_error(ap, e))?;
                    return Err(not_found(
                        ap,
                        &format!("function in {path}:"),
                        name,
                        all.iter().map(String::as_str),
                    ));
                }
                Ok(syms
                    .into_iter()
                    .map(|s| Expanded {
                        probe: format!("{kind}:{path}:{s}"),
                        attach: AttachSpec::Uprobe {
                            binary: path.clone(),
                            location: UprobeLocation::Symbol {
                                name: s.clone(),
                                offset: offset.unwrap_or(0),
                            },
                            retprobe,
                        },
                        func: s,
                        args: None,
                        syscall: None,
                    })
                    .collect())
            }
        }
    }
    fn prog_kind(&self, _: ProbeKind) -> ProgKind {
        ProgKind::Kprobe
    }
    fn arg(&self, n: u32) -> Option<CtxRead> {
        reg_arg(n)
    }
    fn retval(&self, kind: ProbeKind, _: &Expanded) -> Option<CtxRead> {
        reg_ret(kind)
    }
    fn space(&self) -> Space {
        Space::User
    }
}
