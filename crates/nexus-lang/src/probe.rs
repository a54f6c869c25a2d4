//! Parsing one attach point's text (`tracepoint:syscalls:sys_enter_read`,
//! `uprobe:/bin/bash:readline+4`, `interval:s:1`, ...) into an
//! [`AttachPoint`].

use crate::ast::{AttachPoint, AttachTarget, ProbeKind, TimeUnit, UserLocation};
use crate::diag::Diagnostic;
use crate::lexer::parse_int;
use crate::names::{PROBE_PROVIDERS, did_you_mean, probe_kind};
use crate::span::Span;

/// One `:`-separated part with its span in the source.
#[derive(Debug, Clone)]
struct Part<'a> {
    text: &'a str,
    span: Span,
}

/// Split on `:` outside double quotes.
fn split_parts(text: &str, base: usize) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ':' if !in_quotes => {
                parts.push(Part {
                    text: &text[start..i],
                    span: Span::new(base + start, base + i),
                });
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(Part {
        text: &text[start..],
        span: Span::new(base + start, base + text.len()),
    });
    parts
}

/// The expected shape of each provider, for messages.
fn usage(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Begin => "BEGIN",
        ProbeKind::End => "END",
        ProbeKind::Tracepoint => "tracepoint:CATEGORY:EVENT",
        ProbeKind::RawTracepoint => "rawtracepoint:EVENT",
        ProbeKind::Kprobe => "kprobe:[MODULE:]FUNCTION[+OFFSET]",
        ProbeKind::Kretprobe => "kretprobe:[MODULE:]FUNCTION",
        ProbeKind::Uprobe => "uprobe:BINARY:FUNCTION[+OFFSET] or uprobe:BINARY:ADDRESS",
        ProbeKind::Uretprobe => "uretprobe:BINARY:FUNCTION or uretprobe:BINARY:ADDRESS",
        ProbeKind::Fentry => "fentry:[MODULE:]FUNCTION",
        ProbeKind::Fexit => "fexit:[MODULE:]FUNCTION",
        ProbeKind::Profile => "profile:UNIT:N with UNIT one of hz, s, ms, us",
        ProbeKind::Interval => "interval:UNIT:N with UNIT one of hz, s, ms, us",
        ProbeKind::Software => "software:EVENT[:PERIOD]",
        ProbeKind::Hardware => "hardware:EVENT[:PERIOD]",
    }
}

fn shape_error(kind: ProbeKind, span: Span) -> Diagnostic {
    Diagnostic::error(span, format!("malformed {} attach point", kind.name()))
        .with_hint(format!("write `{}`", usage(kind)))
}

/// Characters allowed in kernel names (functions, tracepoints, events);
/// `*` and `?` are wildcards, `.` occurs in compiler-made names
/// (`foo.isra.0`), `-` in perf event names (`cpu-clock`).
fn check_name(part: &Part<'_>, what: &str) -> Result<String, Diagnostic> {
    if part.text.is_empty() {
        return Err(Diagnostic::error(part.span, format!("missing {what}")));
    }
    if let Some((i, c)) = part
        .text
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "_*?.-".contains(c)))
    {
        let at = part.span.start + i;
        return Err(Diagnostic::error(
            Span::new(at, at + c.len_utf8()),
            format!("invalid character `{}` in {what}", c.escape_default()),
        ));
    }
    Ok(part.text.to_string())
}

/// `NAME+OFFSET` → (name, offset).
fn split_offset<'a>(part: &Part<'a>) -> Result<(Part<'a>, Option<u64>), Diagnostic> {
    let Some(plus) = part.text.find('+') else {
        return Ok((part.clone(), None));
    };
    let off_text = &part.text[plus + 1..];
    let off_span = Span::new(part.span.start + plus + 1, part.span.end);
    let offset = parse_int(off_text).map_err(|_| {
        Diagnostic::error(off_span, format!("invalid offset `{off_text}`"))
            .with_hint("an offset is a decimal or 0x hex byte count")
    })?;
    let name = Part {
        text: &part.text[..plus],
        span: Span::new(part.span.start, part.span.start + plus),
    };
    Ok((name, Some(offset)))
}

fn number(part: &Part<'_>, what: &str) -> Result<u64, Diagnostic> {
    parse_int(part.text).map_err(|_| {
        Diagnostic::error(
            part.span,
            format!("invalid {what} `{}`: expected an integer", part.text),
        )
    })
}

/// Parse the attach point `text`, found at `span` in the source.
pub fn parse_attach_point(text: &str, span: Span) -> Result<AttachPoint, Diagnostic> {
    let parts = split_parts(text, span.start);
    let provider = &parts[0];
    let Some(kind) = probe_kind(provider.text) else {
        let candidates = PROBE_PROVIDERS.iter().map(|(n, _)| *n);
        let hint = did_you_mean(provider.text, candidates).map(|s| format!("did you mean `{s}`?"));
        let mut diag = Diagnostic::error(
            provider.span,
            format!("unknown probe type `{}`", provider.text),
        )
        .with_hint_opt(hint);
        if crate::names::UNSUPPORTED_PROVIDERS.contains(&provider.text) {
            diag = Diagnostic::error(
                provider.span,
                format!("`{}` probes are not supported", provider.text),
            )
            .with_hint("supported: tracepoint, rawtracepoint, kprobe, uprobe, fentry, profile, interval, software, hardware, BEGIN, END");
        } else if matches!(provider.text, "struct" | "union" | "enum") {
            diag = Diagnostic::error(
                provider.span,
                format!("`{}` definitions are not supported", provider.text),
            )
            .with_hint("types come from the kernel's BTF; no C definitions are needed");
        } else if diag.hint.is_none() {
            diag = diag.with_note(
                "probe types: BEGIN, END, tracepoint, rawtracepoint, kprobe, kretprobe, \
                 uprobe, uretprobe, fentry, fexit, profile, interval, software, hardware",
            );
        }
        return Err(diag);
    };
    let args = &parts[1..];
    let target = match kind {
        ProbeKind::Begin | ProbeKind::End => {
            if !args.is_empty() {
                return Err(
                    Diagnostic::error(span, format!("{} takes no arguments", kind.name()))
                        .with_hint(format!("write `{}` alone", kind.name())),
                );
            }
            AttachTarget::None
        }
        ProbeKind::Tracepoint => {
            let [category, event] = args else {
                return Err(shape_error(kind, span));
            };
            AttachTarget::Tracepoint {
                category: check_name(category, "tracepoint category")?,
                event: check_name(event, "tracepoint event")?,
            }
        }
        ProbeKind::RawTracepoint => {
            let [event] = args else {
                return Err(shape_error(kind, span));
            };
            AttachTarget::RawTracepoint {
                event: check_name(event, "raw tracepoint name")?,
            }
        }
        ProbeKind::Kprobe | ProbeKind::Kretprobe | ProbeKind::Fentry | ProbeKind::Fexit => {
            let (module, func) = match args {
                [func] => (None, func),
                [module, func] => (Some(check_name(module, "module name")?), func),
                _ => return Err(shape_error(kind, span)),
            };
            let (func, offset) = split_offset(func)?;
            if offset.is_some() && kind != ProbeKind::Kprobe {
                return Err(Diagnostic::error(
                    span,
                    format!("{} does not take an offset", kind.name()),
                )
                .with_hint("only kprobe and uprobe attach at an offset"));
            }
            AttachTarget::Kernel {
                module,
                function: check_name(&func, "function name")?,
                offset,
            }
        }
        ProbeKind::Uprobe | ProbeKind::Uretprobe => {
            let [binary, location] = args else {
                return Err(shape_error(kind, span));
            };
            let binary_text = binary.text.trim_matches('"');
            if binary_text.is_empty() {
                return Err(Diagnostic::error(binary.span, "missing binary path")
                    .with_hint("give an absolute path or a library name such as `libc`"));
            }
            let location = if location.text.starts_with("0x")
                || (!location.text.is_empty() && location.text.bytes().all(|b| b.is_ascii_digit()))
            {
                UserLocation::Address(number(location, "address")?)
            } else {
                let (name, offset) = split_offset(location)?;
                if offset.is_some() && kind == ProbeKind::Uretprobe {
                    return Err(Diagnostic::error(span, "uretprobe does not take an offset")
                        .with_hint("only kprobe and uprobe attach at an offset"));
                }
                UserLocation::Symbol {
                    name: check_name(&name, "function name")?,
                    offset,
                }
            };
            AttachTarget::User {
                binary: binary_text.to_string(),
                location,
            }
        }
        ProbeKind::Profile | ProbeKind::Interval => {
            let [unit, value] = args else {
                return Err(shape_error(kind, span));
            };
            let unit_kind = match unit.text {
                "hz" => TimeUnit::Hz,
                "s" => TimeUnit::S,
                "ms" => TimeUnit::Ms,
                "us" => TimeUnit::Us,
                other => {
                    let hint = did_you_mean(other, ["hz", "s", "ms", "us"])
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "units are hz, s, ms and us".to_string());
                    return Err(Diagnostic::error(
                        unit.span,
                        format!("unknown {} unit `{other}`", kind.name()),
                    )
                    .with_hint(hint));
                }
            };
            let value_n = number(value, "rate")?;
            if value_n == 0 {
                return Err(Diagnostic::error(
                    value.span,
                    format!("{} rate must be greater than zero", kind.name()),
                ));
            }
            AttachTarget::Timer {
                unit: unit_kind,
                value: value_n,
            }
        }
        ProbeKind::Software | ProbeKind::Hardware => {
            let (event, period) = match args {
                [event] => (event, None),
                [event, period] => (event, Some(number(period, "period")?)),
                _ => return Err(shape_error(kind, span)),
            };
            AttachTarget::PerfEvent {
                event: check_name(event, "event name")?,
                period,
            }
        }
    };
    Ok(AttachPoint {
        kind,
        target,
        text: text.to_string(),
        span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(text: &str) -> Result<AttachPoint, Diagnostic> {
        parse_attach_point(text, Span::new(0, text.len()))
    }

    #[test]
    fn providers_and_targets() {
        let Ok(a) = ap("t:syscalls:sys_enter_*") else {
            panic!("tracepoint must parse")
        };
        assert_eq!(a.kind, ProbeKind::Tracepoint);
        assert!(a.has_wildcard());
        assert_eq!(a.canonical(), "tracepoint:syscalls:sys_enter_*");
        let Ok(a) = ap("uprobe:/bin/bash:readline+8") else {
            panic!("uprobe must parse")
        };
        assert_eq!(
            a.target,
            AttachTarget::User {
                binary: "/bin/bash".into(),
                location: UserLocation::Symbol {
                    name: "readline".into(),
                    offset: Some(8)
                }
            }
        );
        let Ok(a) = ap("ur:libc:0x1000") else {
            panic!("uretprobe must parse")
        };
        assert_eq!(a.canonical(), "uretprobe:libc:0x1000");
        let Ok(a) = ap("kfunc:mod:do_thing") else {
            panic!("fentry must parse")
        };
        assert_eq!(a.kind, ProbeKind::Fentry);
        let Ok(a) = ap("i:ms:100") else {
            panic!("interval must parse")
        };
        assert_eq!(
            a.target,
            AttachTarget::Timer {
                unit: TimeUnit::Ms,
                value: 100
            }
        );
        let Ok(a) = ap("s:cpu-clock:1000000") else {
            panic!("software must parse")
        };
        assert_eq!(a.canonical(), "software:cpu-clock:1000000");
    }

    #[test]
    fn quoted_paths_keep_colons() {
        let Ok(a) = ap("u:\"/opt/a:b/bin\":main") else {
            panic!("quoted path must parse")
        };
        assert_eq!(
            a.target,
            AttachTarget::User {
                binary: "/opt/a:b/bin".into(),
                location: UserLocation::Symbol {
                    name: "main".into(),
                    offset: None
                }
            }
        );
    }
}
