//! `tracepoint:CAT:NAME` (fields from the `format` file) and
//! `rawtracepoint:NAME` (arguments are `u64` slots of the context).

use super::{ArgField, ArgRead, CtxRead, Expanded, Provider, Syscall, catalog_error, not_found};
use crate::artifact::{AttachSpec, ProgKind};
use crate::catalog::{ProbeCatalog, TracepointField};
use crate::ty::{Space, Ty};
use nexus_insn::Size;
use nexus_lang::Diagnostic;
use nexus_lang::ast::{AttachPoint, AttachTarget, ProbeKind};

pub(super) struct Tracepoint;

/// How a `format` field is read. Syscall tracepoints carry user pointers,
/// as bpftrace assumes.
fn arg_field(category: &str, f: &TracepointField) -> Option<ArgField> {
    let off = i16::try_from(f.offset).ok()?;
    let read = match (f.array_len(), f.is_char()) {
        _ if f.is_data_loc() => {
            if !f.is_char() {
                return None;
            }
            ArgRead::DataLocStr { off }
        }
        (Some(len), true) => ArgRead::InlineStr { off, len },
        (Some(_), false) => return None,
        (None, _) => {
            let size = Size::from_bytes(f.size as usize)?;
            let space = if !f.is_pointer() {
                Space::None
            } else if category == "syscalls" {
                Space::User
            } else {
                Space::Kernel
            };
            let ty = Ty::Int {
                bits: u8::try_from(f.size * 8).ok()?,
                signed: f.signed,
                space,
            };
            ArgRead::Int(
                CtxRead {
                    off,
                    size,
                    signed: f.signed,
                },
                ty,
            )
        }
    };
    Some(ArgField {
        name: f.name.clone(),
        read,
    })
}

impl Provider for Tracepoint {
    fn expand(
        &self,
        ap: &AttachPoint,
        catalog: &dyn ProbeCatalog,
    ) -> Result<Vec<Expanded>, Diagnostic> {
        let AttachTarget::Tracepoint { category, event } = &ap.target else {
            return Err(Diagnostic::error(
                ap.span,
                "tracepoint needs CATEGORY:EVENT",
            ));
        };
        let found = catalog
            .tracepoints(category, event)
            .map_err(|e| catalog_error(ap, e))?;
        if found.is_empty() {
            let known = catalog
                .tracepoints(category, "*")
                .map_err(|e| catalog_error(ap, e))?;
            return Err(not_found(
                ap,
                "tracepoint",
                &format!("{category}:{event}"),
                known.iter().map(|(_, e)| e.as_str()),
            )
            .with_hint_opt(
                nexus_lang::did_you_mean(event, known.iter().map(|(_, e)| e.as_str()))
                    .map(|s| format!("did you mean `{category}:{s}`?")),
            ));
        }
        let mut out = Vec::new();
        for (cat, ev) in found {
            let fields = catalog
                .tracepoint_fields(&cat, &ev)
                .map_err(|e| catalog_error(ap, e))?
                .unwrap_or_default();
            let args = fields
                .iter()
                .filter(|f| !f.is_common())
                .filter_map(|f| arg_field(&cat, f))
                .collect();
            let syscall = syscall_of(&cat, &ev, catalog);
            out.push(Expanded {
                probe: format!("tracepoint:{cat}:{ev}"),
                func: ev.clone(),
                attach: AttachSpec::Tracepoint {
                    category: cat,
                    event: ev,
                },
                args: Some(args),
                syscall,
            });
        }
        Ok(out)
    }
    fn prog_kind(&self, _: ProbeKind) -> ProgKind {
        ProgKind::Tracepoint
    }
}

/// Tracepoint categories whose events have no raw tracepoint of their own:
/// `syscalls:*` are ftrace's syscall events (built on the `sys_enter` /
/// `sys_exit` raw tracepoints) and `ftrace:*` are ftrace's internal events.
const NOT_RAW_CATEGORIES: &[&str] = &["syscalls", "ftrace"];

/// The raw tracepoints matching `pattern` (a glob on the event name), sorted
/// and without duplicates: every tracepoint event name except those of the
/// categories that are not backed by a raw tracepoint.
pub fn raw_tracepoints(
    catalog: &dyn ProbeCatalog,
    pattern: &str,
) -> Result<Vec<String>, crate::catalog::CatalogError> {
    let mut names: Vec<String> = catalog
        .tracepoints("*", pattern)?
        .into_iter()
        .filter(|(c, _)| !NOT_RAW_CATEGORIES.contains(&c.as_str()))
        .map(|(_, e)| e)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

pub(super) struct RawTracepoint;

impl Provider for RawTracepoint {
    fn expand(
        &self,
        ap: &AttachPoint,
        catalog: &dyn ProbeCatalog,
    ) -> Result<Vec<Expanded>, Diagnostic> {
        let AttachTarget::RawTracepoint { event } = &ap.target else {
            return Err(Diagnostic::error(ap.span, "rawtracepoint needs an EVENT"));
        };
        let names: Vec<String> = if ap.has_wildcard() {
            let v = raw_tracepoints(catalog, event).map_err(|e| catalog_error(ap, e))?;
            if v.is_empty() {
                return Err(not_found(ap, "raw tracepoint", event, []));
            }
            v
        } else {
            vec![event.clone()]
        };
        Ok(names
            .into_iter()
            .map(|ev| Expanded {
                probe: format!("rawtracepoint:{ev}"),
                func: ev.clone(),
                attach: AttachSpec::RawTracepoint { event: ev },
                args: None,
                syscall: None,
            })
            .collect())
    }
    fn prog_kind(&self, _: ProbeKind) -> ProgKind {
        ProgKind::RawTracepoint
    }
    fn arg(&self, n: u32) -> Option<CtxRead> {
        // struct bpf_raw_tracepoint_args { __u64 args[0]; }
        (n < 12).then(|| CtxRead::u64_at((n * 8) as i16))
    }
}

/// The syscall behind `syscalls:sys_enter_X` / `sys_exit_X`, if known.
fn syscall_of(category: &str, event: &str, catalog: &dyn ProbeCatalog) -> Option<Syscall> {
    if category != "syscalls" {
        return None;
    }
    let (name, exit) = match (
        event.strip_prefix("sys_enter_"),
        event.strip_prefix("sys_exit_"),
    ) {
        (Some(n), _) => (n, false),
        (_, Some(n)) => (n, true),
        _ => return None,
    };
    catalog.syscall_number(name).map(|nr| Syscall { nr, exit })
}

/// `struct pt_regs` offsets of the x86_64 syscall argument registers
/// (di, si, dx, r10, r8, r9).
pub const X86_64_SYSCALL_ARG_OFFSETS: [i16; 6] = [112, 104, 96, 56, 72, 64];
/// `struct pt_regs` offset of orig_ax (the syscall number at exit).
pub const X86_64_ORIG_AX_OFFSET: i16 = 120;

/// Rewrite a syscall tracepoint expansion for the `sys_enter`/`sys_exit`
/// raw tracepoints: the context becomes `(struct pt_regs *regs, long
/// id_or_ret)`, so `args.NAME` is read from the saved registers (enter) or
/// the second slot (`ret` at exit). Returns `None` when a field does not
/// map onto a register.
pub fn to_raw_syscall(e: &Expanded) -> Option<Expanded> {
    let sc = e.syscall?;
    let mut args = Vec::new();
    for a in e.args.as_deref().unwrap_or_default() {
        let ty = a.ty();
        let read = match (a.name.as_str(), &a.read) {
            ("__syscall_nr", _) => ArgRead::SyscallNr,
            (_, ArgRead::Int(r, _)) if sc.exit => {
                // The only exit field is `ret`, the raw tracepoint's second
                // argument.
                ArgRead::Int(CtxRead { off: 8, ..*r }, ty)
            }
            (_, ArgRead::Int(r, _)) => {
                // Enter fields follow `__syscall_nr` in 8-byte slots from 16.
                let index = usize::try_from((r.off - 16) / 8).ok()?;
                ArgRead::SyscallArg {
                    reg_off: *X86_64_SYSCALL_ARG_OFFSETS.get(index)?,
                    ty,
                }
            }
            _ => return None,
        };
        args.push(ArgField {
            name: a.name.clone(),
            read,
        });
    }
    let event = if sc.exit { "sys_exit" } else { "sys_enter" };
    Some(Expanded {
        attach: AttachSpec::RawTracepoint {
            event: event.to_string(),
        },
        args: Some(args),
        ..e.clone()
    })
}

/// Rewrite `raw_syscalls:sys_enter` / `sys_exit` for the raw tracepoints of
/// the same name, which fire at the same points with the context
/// `(struct pt_regs *regs, long id)` at enter and `(struct pt_regs *regs,
/// long ret)` at exit: `args.id` becomes the syscall number (the second
/// slot at enter, `regs->orig_ax` at exit, as the classic event records
/// it) and `args.ret` the second slot. Fields with no raw counterpart
/// (`args.args`, an array the compiler does not index) are left out.
/// Returns the side (true for exit) and the rewritten expansion, or `None`
/// for any other event.
pub fn raw_syscalls_to_raw(e: &Expanded) -> Option<(bool, Expanded)> {
    let AttachSpec::Tracepoint { category, event } = &e.attach else {
        return None;
    };
    let exit = match (category.as_str(), event.as_str()) {
        ("raw_syscalls", "sys_enter") => false,
        ("raw_syscalls", "sys_exit") => true,
        _ => return None,
    };
    let args = e
        .args
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| {
            let read = match (a.name.as_str(), &a.read) {
                ("id", _) => ArgRead::SyscallNr,
                ("ret", ArgRead::Int(r, ty)) if exit => {
                    ArgRead::Int(CtxRead { off: 8, ..*r }, ty.clone())
                }
                _ => return None,
            };
            Some(ArgField {
                name: a.name.clone(),
                read,
            })
        })
        .collect();
    Some((
        exit,
        Expanded {
            attach: AttachSpec::RawTracepoint {
                event: event.clone(),
            },
            args: Some(args),
            ..e.clone()
        },
    ))
}
