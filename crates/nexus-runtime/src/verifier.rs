//! Explaining a verifier rejection in terms of the user's program: the
//! instruction the verifier stopped at is mapped through the program's line
//! table to the statement it was generated from, and the verifier's reason
//! is turned into advice on what to change.

use crate::backend::BackendError;
use nexus_compile::{Artifact, ProgramSpec};
use nexus_kernel::ProgError;
use nexus_lang::{Diagnostic, Span};

/// EPERM: not allowed to load (privileges, or a locked-down program type).
const EPERM: i32 = 1;

/// Where and why the verifier stopped, read from its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the last instruction the log shows (where it stopped).
    pub insn: Option<u32>,
    /// The verifier's reason (the log line after that instruction).
    pub reason: String,
}

/// Find the instruction and reason in a verifier log.
///
/// A failing log ends with the instructions walked (`12: (79) r1 = ...`),
/// then the reason on a line of its own, then `processed N insns ...`.
pub fn parse_log(log: &str) -> Rejection {
    let mut insn = None;
    let mut reason = None;
    for line in log.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("processed ") || t.starts_with("verification time") {
            continue;
        }
        if let Some(n) = insn_index(t) {
            insn = Some(n);
            reason = None;
        } else if reason.is_none() && insn.is_some() {
            reason = Some(t.to_string());
        }
    }
    let reason = reason
        .or_else(|| {
            log.lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("processed "))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "no reason given in the verifier log".into());
    Rejection { insn, reason }
}

/// `12: (79) ...` → 12. State-only lines (`12: R1=ctx() ...`) also count:
/// they name the instruction being checked.
fn insn_index(line: &str) -> Option<u32> {
    let (num, rest) = line.split_once(':')?;
    let n = num.parse().ok()?;
    rest.starts_with(' ').then_some(n)
}

/// Advice for a verifier reason, phrased for the bpftrace language.
pub fn advice(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("back-edge") || r.contains("infinite loop") || r.contains("loop") {
        "loops must have a bound the verifier can see: loop over a constant range or add a constant limit"
    } else if r.contains("stack") && (r.contains("too large") || r.contains("limit")) {
        "the probe needs more than 512 bytes of stack: use fewer or shorter string variables, or split the work across probes"
    } else if r.contains("unbounded")
        || r.contains("min value is negative")
        || r.contains("outside of the allowed")
        || r.contains("max value")
    {
        "an index or length is not bounded: check it against a constant (`if ($i < 16)`) before using it"
    } else if r.contains("invalid mem access")
        || r.contains("invalid read")
        || r.contains("invalid indirect read")
        || r.contains("invalid access")
    {
        "this reads memory the verifier cannot prove valid: copy kernel or user memory with str(), buf() or a typed argument instead of dereferencing it"
    } else if r.contains("too large") || r.contains("too many") || r.contains("complexity") {
        "the probe is too complex for the verifier: split it into several probes or simplify its conditions"
    } else if r.contains("unknown func") || r.contains("not allowed") || r.contains("not supported")
    {
        "a function used here is not available in this probe type: move it to another probe"
    } else {
        "this is likely a bpfnexus compiler bug: please report it with the program; `-v` shows the verifier log"
    }
}

/// Turn a program load failure into a backend error: verifier rejections
/// become a diagnostic at the offending statement, EPERM a refusal.
pub fn explain_load_error(artifact: &Artifact, spec: &ProgramSpec, e: &ProgError) -> BackendError {
    let log = e.verifier_log().unwrap_or("");
    let errno = e.errno();
    match errno {
        // Any refusal other than EPERM that left a log is the verifier's
        // (EACCES usually; E2BIG and EINVAL also come with a log).
        Some(n) if n != EPERM && !log.trim().is_empty() => {
            let rejection = parse_log(log);
            let entry = rejection.insn.and_then(|pc| spec.line_for(pc));
            let message = format!(
                "the kernel verifier rejected probe `{}`: {}",
                spec.probe_text, rejection.reason
            );
            let diagnostic = entry.map(|entry| {
                let mut span: Span = entry.span.into();
                if span.end > artifact.source.len() {
                    span = Span::new(0, 0);
                }
                Diagnostic::error(span, message.clone())
                    .with_label(format!(
                        "the verifier stopped at instruction {} generated for this {}",
                        rejection.insn.unwrap_or(0),
                        entry.what
                    ))
                    .with_hint(advice(&rejection.reason))
            });
            BackendError::Verifier {
                explanation: match &diagnostic {
                    Some(_) => message,
                    None => format!("{message}; {}", advice(&rejection.reason)),
                },
                diagnostic: diagnostic.map(Box::new),
                log: log.to_string(),
            }
        }
        Some(EPERM) => BackendError::Refused(format!(
            "probe `{}`: {e}; see `bpfnexus doctor`",
            spec.probe_text
        )),
        _ => BackendError::Refused(format!("probe `{}`: {e}", spec.probe_text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "func#0 @0
0: R1=ctx() R10=fp0
0: (bf) r6 = r1                       ; R1=ctx() R6_w=ctx()
1: (79) r1 = *(u64 *)(r6 +16)         ; R1_w=scalar() R6_w=ctx()
2: (71) r2 = *(u8 *)(r1 +0)
R1 invalid mem access 'scalar'
processed 3 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
";

    #[test]
    fn finds_the_last_instruction_and_the_reason() {
        let r = parse_log(LOG);
        assert_eq!(r.insn, Some(2));
        assert_eq!(r.reason, "R1 invalid mem access 'scalar'");
        assert!(advice(&r.reason).contains("str()"));
    }

    #[test]
    fn a_log_without_instructions_still_gives_a_reason() {
        let r = parse_log("unknown opcode 8d\nprocessed 0 insns\n");
        assert_eq!(r.insn, None);
        assert_eq!(r.reason, "unknown opcode 8d");
        assert!(advice("back-edge from insn 5 to 2").contains("bound"));
        assert!(advice("combined stack size of 2 calls is 600. Too large").contains("512"));
    }
}
