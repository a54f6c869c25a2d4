//! Positional parameters (`$1`, `$2`, ...) in attach points.
//!
//! The parser keeps `uprobe:$1:main` as text; bpftrace substitutes the
//! command-line parameters before it resolves the probe, and so do we,
//! before a provider expands the attach point.

use nexus_lang::Diagnostic;
use nexus_lang::ast::{AttachPoint, AttachTarget, UserLocation};

/// Replace every `$N` in `text` by parameter N (1-based). `Err(N)` names a
/// parameter that was not given (or `$0`).
fn substitute(text: &str, params: &[String]) -> Result<String, usize> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        let n: usize = after[..digits].parse().map_err(|_| usize::MAX)?;
        let value = n.checked_sub(1).and_then(|i| params.get(i)).ok_or(n)?;
        out.push_str(value);
        rest = &after[digits..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `ap` with its positional parameters substituted (unchanged when it has
/// none).
pub fn substitute_attach_point(
    ap: &AttachPoint,
    params: &[String],
) -> Result<AttachPoint, Diagnostic> {
    if !ap.text.contains('$') {
        return Ok(ap.clone());
    }
    let missing = |n: usize| {
        let what = if n == 0 {
            "`$0` is not a positional parameter (they start at `$1`)".to_string()
        } else {
            format!(
                "positional parameter `${n}` in attach point `{}` was not given ({} given)",
                ap.text,
                params.len()
            )
        };
        Diagnostic::error(ap.span, what)
            .with_hint("pass the parameters after the program: `bpfnexus PROGRAM ARG1 ARG2 ...`")
    };
    let sub = |s: &str| substitute(s, params).map_err(missing);
    let target = match &ap.target {
        AttachTarget::None | AttachTarget::Timer { .. } => ap.target.clone(),
        AttachTarget::Tracepoint { category, event } => AttachTarget::Tracepoint {
            category: sub(category)?,
            event: sub(event)?,
        },
        AttachTarget::RawTracepoint { event } => AttachTarget::RawTracepoint { event: sub(event)? },
        AttachTarget::Kernel {
            module,
            function,
            offset,
        } => AttachTarget::Kernel {
            module: module.as_deref().map(sub).transpose()?,
            function: sub(function)?,
            offset: *offset,
        },
        AttachTarget::User { binary, location } => AttachTarget::User {
            binary: sub(binary)?,
            location: match location {
                UserLocation::Symbol { name, offset } => UserLocation::Symbol {
                    name: sub(name)?,
                    offset: *offset,
                },
                UserLocation::Address(a) => UserLocation::Address(*a),
            },
        },
        AttachTarget::PerfEvent { event, period } => AttachTarget::PerfEvent {
            event: sub(event)?,
            period: *period,
        },
    };
    Ok(AttachPoint {
        kind: ap.kind,
        target,
        text: sub(&ap.text)?,
        span: ap.span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<String> {
        vec!["/usr/bin/app".into(), "main".into()]
    }

    #[test]
    fn substitutes_every_parameter() {
        assert_eq!(
            substitute("uprobe:$1:$2", &params()),
            Ok("uprobe:/usr/bin/app:main".into())
        );
        assert_eq!(substitute("no_params", &params()), Ok("no_params".into()));
        assert_eq!(substitute("a$b$", &params()), Ok("a$b$".into()));
    }

    #[test]
    fn names_a_missing_parameter() {
        assert_eq!(substitute("uprobe:$3:f", &params()), Err(3));
        assert_eq!(substitute("uprobe:$0:f", &params()), Err(0));
    }

    #[test]
    fn attach_point_parts_are_substituted() {
        let p = nexus_lang::parse("uprobe:$1:main { }").unwrap();
        let ap = substitute_attach_point(&p.probes[0].attach_points[0], &params()).unwrap();
        assert_eq!(ap.canonical(), "uprobe:/usr/bin/app:main");
        assert_eq!(ap.text, "uprobe:/usr/bin/app:main");
        let missing = substitute_attach_point(&p.probes[0].attach_points[0], &[]).unwrap_err();
        assert!(missing.message.contains("`$1`"), "{}", missing.message);
    }
}
