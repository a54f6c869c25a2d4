//! `BEGIN` and `END`: raw-tracepoint programs the runtime runs once with
//! `BPF_PROG_TEST_RUN`; they have no arguments and never see the tracer.

use super::{Expanded, Provider};
use crate::artifact::{AttachSpec, ProgKind};
use crate::catalog::ProbeCatalog;
use nexus_lang::Diagnostic;
use nexus_lang::ast::{AttachPoint, ProbeKind};

pub(super) struct Special;

impl Provider for Special {
    fn expand(&self, ap: &AttachPoint, _: &dyn ProbeCatalog) -> Result<Vec<Expanded>, Diagnostic> {
        let attach = if ap.kind == ProbeKind::Begin {
            AttachSpec::Begin
        } else {
            AttachSpec::End
        };
        Ok(vec![Expanded {
            attach,
            probe: ap.kind.name().to_string(),
            func: String::new(),
            args: None,
            syscall: None,
        }])
    }
    fn prog_kind(&self, _: ProbeKind) -> ProgKind {
        ProgKind::RawTracepoint
    }
    fn sees_tracer(&self) -> bool {
        false
    }
    fn has_stack(&self) -> bool {
        false
    }
}
