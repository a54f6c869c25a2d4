//! Timer and counter probes backed by perf events: `profile:` (sampling on
//! every CPU), `interval:` (one CPU), `software:` and `hardware:`.

use super::{Expanded, Provider};
use crate::artifact::{AttachSpec, ProgKind};
use crate::catalog::ProbeCatalog;
use nexus_lang::Diagnostic;
use nexus_lang::ast::{AttachPoint, AttachTarget, ProbeKind, TimeUnit};

fn period_ns(unit: TimeUnit, value: u64) -> Option<u64> {
    match unit {
        TimeUnit::Hz => (value > 0).then(|| 1_000_000_000 / value),
        TimeUnit::S => value.checked_mul(1_000_000_000),
        TimeUnit::Ms => value.checked_mul(1_000_000),
        TimeUnit::Us => value.checked_mul(1_000),
    }
}

fn timer(ap: &AttachPoint) -> Result<(TimeUnit, u64), Diagnostic> {
    match &ap.target {
        AttachTarget::Timer { unit, value } if *value > 0 => Ok((*unit, *value)),
        _ => Err(Diagnostic::error(
            ap.span,
            format!("`{}` needs a positive rate such as hz:99 or ms:10", ap.text),
        )),
    }
}

fn one(ap: &AttachPoint, attach: AttachSpec) -> Vec<Expanded> {
    vec![Expanded {
        attach,
        probe: ap.canonical(),
        func: String::new(),
        args: None,
        syscall: None,
    }]
}

pub(super) struct Profile;

impl Provider for Profile {
    fn expand(&self, ap: &AttachPoint, _: &dyn ProbeCatalog) -> Result<Vec<Expanded>, Diagnostic> {
        let (unit, value) = timer(ap)?;
        let attach = if unit == TimeUnit::Hz {
            AttachSpec::Profile {
                hz: Some(value),
                period_ns: None,
            }
        } else {
            let period = period_ns(unit, value)
                .ok_or_else(|| Diagnostic::error(ap.span, "profile period is too long"))?;
            AttachSpec::Profile {
                hz: None,
                period_ns: Some(period),
            }
        };
        Ok(one(ap, attach))
    }
    fn prog_kind(&self, _: ProbeKind) -> ProgKind {
        ProgKind::PerfEvent
    }
}

pub(super) struct Interval;

impl Provider for Interval {
    fn expand(&self, ap: &AttachPoint, _: &dyn ProbeCatalog) -> Result<Vec<Expanded>, Diagnostic> {
        let (unit, value) = timer(ap)?;
        let period_ns = period_ns(unit, value)
            .ok_or_else(|| Diagnostic::error(ap.span, "interval period is too long"))?;
        Ok(one(ap, AttachSpec::Interval { period_ns }))
    }
    fn prog_kind(&self, _: ProbeKind) -> ProgKind {
        ProgKind::PerfEvent
    }
    fn sees_tracer(&self) -> bool {
        false
    }
}

/// Software events: (names, default sample period), as bpftrace spells them.
const SOFTWARE: &[(&[&str], u64)] = &[
    (&["cpu-clock", "cpu"], 1_000_000),
    (&["task-clock"], 1_000_000),
    (&["page-faults", "faults"], 100),
    (&["context-switches", "cs"], 1_000),
    (&["cpu-migrations"], 1),
    (&["minor-faults"], 100),
    (&["major-faults"], 1),
    (&["alignment-faults"], 1),
    (&["emulation-faults"], 1),
    (&["dummy"], 1),
    (&["bpf-output"], 1),
];

/// Hardware events: (names, default sample period).
const HARDWARE: &[(&[&str], u64)] = &[
    (&["cpu-cycles", "cycles"], 1_000_000),
    (&["instructions"], 1_000_000),
    (&["cache-references"], 1_000_000),
    (&["cache-misses"], 1_000_000),
    (&["branch-instructions", "branches"], 100_000),
    (&["branch-misses"], 100_000),
    (&["bus-cycles"], 100_000),
    (&["frontend-stalls"], 1_000_000),
    (&["backend-stalls"], 1_000_000),
    (&["ref-cycles"], 1_000_000),
];

pub(super) struct PerfCounter;

impl Provider for PerfCounter {
    fn expand(&self, ap: &AttachPoint, _: &dyn ProbeCatalog) -> Result<Vec<Expanded>, Diagnostic> {
        let AttachTarget::PerfEvent { event, period } = &ap.target else {
            return Err(Diagnostic::error(
                ap.span,
                "perf event probe needs an EVENT",
            ));
        };
        let hardware = ap.kind == ProbeKind::Hardware;
        let table = if hardware { HARDWARE } else { SOFTWARE };
        let Some((names, default)) = table.iter().find(|(n, _)| n.contains(&event.as_str())) else {
            let all = table.iter().flat_map(|(n, _)| n.iter().copied());
            let hint = nexus_lang::did_you_mean(event, all).map(|s| format!("did you mean `{s}`?"));
            return Err(Diagnostic::error(
                ap.span,
                format!("unknown {} event `{event}`", ap.kind.name()),
            )
            .with_hint_opt(hint));
        };
        let event = names[0].to_string();
        let period = period.unwrap_or(*default);
        let attach = if hardware {
            AttachSpec::Hardware { event, period }
        } else {
            AttachSpec::Software { event, period }
        };
        Ok(one(ap, attach))
    }
    fn prog_kind(&self, _: ProbeKind) -> ProgKind {
        ProgKind::PerfEvent
    }
}
