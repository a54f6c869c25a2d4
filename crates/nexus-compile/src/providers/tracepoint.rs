//! `tracepoint:CAT:NAME` (fields from the `format` file) and
//! `rawtracepoint:NAME` (arguments are `u64` slots of the context).

use super::{ArgField, ArgRead, CtxRead, Expanded, Provider, catalog_error, not_found};
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
            out.push(Expanded {
                probe: format!("tracepoint:{cat}:{ev}"),
                func: ev.clone(),
                attach: AttachSpec::Tracepoint {
                    category: cat,
                    event: ev,
                },
                args: Some(args),
            });
        }
        Ok(out)
    }
    fn prog_kind(&self, _: ProbeKind) -> ProgKind {
        ProgKind::Tracepoint
    }
    fn has_regs(&self) -> bool {
        false
    }
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
            let mut v: Vec<String> = catalog
                .tracepoints("*", event)
                .map_err(|e| catalog_error(ap, e))?
                .into_iter()
                .map(|(_, e)| e)
                .collect();
            v.sort();
            v.dedup();
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
    fn has_regs(&self) -> bool {
        false
    }
}
