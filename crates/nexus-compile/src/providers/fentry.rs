//! fentry/fexit (kfunc/kretfunc): BTF-typed programs whose context is an
//! array of `u64` arguments; for fexit the return value follows them.

use super::{ArgField, ArgRead, CtxRead, Expanded, Provider, catalog_error, not_found};
use crate::artifact::{AttachSpec, ProgKind};
use crate::catalog::ProbeCatalog;
use crate::ty::{Space, Ty};
use nexus_insn::Size;
use nexus_lang::Diagnostic;
use nexus_lang::ast::{AttachPoint, AttachTarget, ProbeKind};

pub(super) struct Fentry;

impl Provider for Fentry {
    fn expand(
        &self,
        ap: &AttachPoint,
        catalog: &dyn ProbeCatalog,
    ) -> Result<Vec<Expanded>, Diagnostic> {
        let AttachTarget::Kernel { function, .. } = &ap.target else {
            return Err(Diagnostic::error(ap.span, "fentry needs a FUNCTION"));
        };
        let funcs = catalog
            .kernel_functions(function)
            .map_err(|e| catalog_error(ap, e))?;
        if funcs.is_empty() {
            return Err(not_found(ap, "kernel function", function, []));
        }
        let exit = ap.kind == ProbeKind::Fexit;
        let mut out = Vec::new();
        for f in funcs {
            let params = catalog
                .kernel_function_args(&f)
                .map_err(|e| catalog_error(ap, e))?
                .unwrap_or_default();
            let args = params
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let size = Size::from_bytes(p.size as usize)?;
                    let ty = Ty::Int {
                        bits: u8::try_from(p.size * 8).ok()?,
                        signed: p.signed,
                        // BTF does not say whether a pointer is __user.
                        space: Space::None,
                    };
                    let read = CtxRead {
                        off: i16::try_from(i * 8).ok()?,
                        size,
                        signed: p.signed,
                    };
                    Some(ArgField {
                        name: p.name.clone(),
                        read: ArgRead::Int(read, ty),
                    })
                })
                .collect();
            let attach = if exit {
                AttachSpec::Fexit {
                    function: f.clone(),
                }
            } else {
                AttachSpec::Fentry {
                    function: f.clone(),
                }
            };
            out.push(Expanded {
                probe: format!("{}:{f}", ap.kind.name()),
                func: f,
                attach,
                args: Some(args),
                syscall: None,
            });
        }
        Ok(out)
    }
    fn prog_kind(&self, kind: ProbeKind) -> ProgKind {
        if kind == ProbeKind::Fexit {
            ProgKind::Fexit
        } else {
            ProgKind::Fentry
        }
    }
    fn retval(&self, kind: ProbeKind, e: &Expanded) -> Option<CtxRead> {
        let n = e.args.as_ref().map_or(0, Vec::len);
        (kind == ProbeKind::Fexit).then(|| CtxRead::u64_at((n * 8) as i16))
    }
    fn space(&self) -> Space {
        Space::None
    }
}
