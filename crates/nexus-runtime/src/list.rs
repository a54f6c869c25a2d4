//! `-l [PATTERN]`: the probes this machine offers, as bpftrace lists them
//! (`tracepoint:syscalls:sys_enter_openat`), with tracepoint fields under
//! `-v`.

use nexus_compile::providers::tracepoint::raw_tracepoints;
use nexus_compile::{CatalogError, ProbeCatalog, TracepointField, glob_match};

/// Software perf events, as bpftrace names them.
const SOFTWARE_EVENTS: &[&str] = &[
    "alignment-faults",
    "bpf-output",
    "context-switches",
    "cpu-clock",
    "cpu-migrations",
    "dummy",
    "emulation-faults",
    "major-faults",
    "minor-faults",
    "page-faults",
    "task-clock",
];

/// Why listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The pattern names a provider we cannot list.
    #[error(
        "cannot list probes of provider {0:?}: try tracepoint, rawtracepoint, uprobe, kfunc/fentry, kprobe or software"
    )]
    Provider(String),
    /// A uprobe listing without a binary.
    #[error("listing uprobes needs a binary: `uprobe:/path/to/binary:PATTERN`")]
    NoBinary,
    /// The binary does not exist.
    #[error("cannot find binary {0:?}")]
    NoSuchBinary(String),
    /// The system could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The C declaration of a tracepoint field as bpftrace prints it under
/// `-l -v` (`const char * filename`, `char comm[16]`,
/// `__data_loc char[] filename`).
pub fn field_declaration(f: &TracepointField) -> String {
    // A dynamic (`__data_loc`/`__rel_loc`) array keeps its `[]` on the
    // type, as the kernel's `format` file writes it; only fixed-size
    // arrays put their length after the name.
    let dynamic = f.c_type.starts_with("__data_loc") || f.c_type.starts_with("__rel_loc");
    match f.c_type.find('[').filter(|_| !dynamic) {
        Some(open) => format!(
            "{} {}{}",
            f.c_type[..open].trim_end(),
            f.name,
            &f.c_type[open..]
        ),
        None => format!("{} {}", f.c_type, f.name),
    }
}

/// One listed probe: its name and, with `verbose`, the lines under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedProbe {
    /// `tracepoint:syscalls:sys_enter_read`.
    pub name: String,
    /// Details (tracepoint fields), each printed indented on its own line.
    pub details: Vec<String>,
}

fn canonical_provider(p: &str) -> Option<&'static str> {
    Some(match p {
        "tracepoint" | "t" => "tracepoint",
        "rawtracepoint" | "rt" => "rawtracepoint",
        "uprobe" | "u" => "uprobe",
        "kprobe" | "k" => "kprobe",
        "kfunc" | "f" | "fentry" => "kfunc",
        "software" | "s" => "software",
        _ => return None,
    })
}

/// Every probe matching `pattern` (`*` when absent). `PROVIDER:REST`
/// patterns list one provider; a pattern without `:` matches tracepoint
/// event names and software events.
pub fn list_probes(
    catalog: &dyn ProbeCatalog,
    pattern: Option<&str>,
    verbose: bool,
) -> Result<Vec<ListedProbe>, ListError> {
    let pattern = pattern.unwrap_or("*");
    let (provider_glob, rest) = match pattern.split_once(':') {
        Some((p, rest)) => (p, rest),
        None => ("*", pattern),
    };
    let providers: Vec<&str> = if provider_glob.contains(['*', '?']) {
        // Raw tracepoints only when named: they repeat the tracepoint
        // event names, and `-l` alone stays as bpftrace 0.17 prints it.
        ["tracepoint", "software", "kprobe", "kfunc"]
            .into_iter()
            .filter(|p| glob_match(provider_glob, p))
            .collect()
    } else {
        vec![
            canonical_provider(provider_glob)
                .ok_or_else(|| ListError::Provider(provider_glob.to_string()))?,
        ]
    };
    let mut out = Vec::new();
    for provider in providers {
        match provider {
            "tracepoint" => {
                let (cat, event) = match rest.split_once(':') {
                    Some((c, e)) => (c, e),
                    None => ("*", rest),
                };
                let cat = if cat.is_empty() { "*" } else { cat };
                let event = if event.is_empty() { "*" } else { event };
                let mut events = catalog.tracepoints(cat, event)?;
                // ftrace's internal events (`ftrace:function`, ...) cannot be
                // attached to, and bpftrace (reading `available_events`)
                // does not list them.
                events.retain(|(c, _)| c != "ftrace");
                // bpftrace orders by the whole `CAT:EVENT` text, so
                // `fib6:...` comes before `fib:...`.
                events.sort_by_cached_key(|(c, e)| format!("{c}:{e}"));
                for (c, e) in events {
                    // An event whose format cannot be read (ftrace's
                    // internal events) is still listed, without fields.
                    let details = if verbose {
                        catalog
                            .tracepoint_fields(&c, &e)
                            .ok()
                            .flatten()
                            .unwrap_or_default()
                            .iter()
                            .filter(|f| !f.is_common())
                            .map(field_declaration)
                            .collect()
                    } else {
                        Vec::new()
                    };
                    out.push(ListedProbe {
                        name: format!("tracepoint:{c}:{e}"),
                        details,
                    });
                }
            }
            "rawtracepoint" => {
                // `rawtracepoint:NAME`, as bpftrace 0.19+ lists them (0.17
                // cannot list raw tracepoints at all).
                let event = if rest.is_empty() { "*" } else { rest };
                for e in raw_tracepoints(catalog, event)? {
                    out.push(ListedProbe {
                        name: format!("rawtracepoint:{e}"),
                        details: Vec::new(),
                    });
                }
            }
            "uprobe" => {
                let (binary, func) = rest.rsplit_once(':').ok_or(ListError::NoBinary)?;
                if binary.is_empty() {
                    return Err(ListError::NoBinary);
                }
                let path = catalog
                    .resolve_binary(binary)?
                    .ok_or_else(|| ListError::NoSuchBinary(binary.to_string()))?;
                let func = if func.is_empty() { "*" } else { func };
                for f in catalog.user_functions(&path, func)? {
                    out.push(ListedProbe {
                        name: format!("uprobe:{path}:{f}"),
                        details: Vec::new(),
                    });
                }
            }
            "kprobe" | "kfunc" => {
                // Without kprobes there is nothing to list under kprobe:.
                if provider == "kprobe" && !catalog.has_kprobes() {
                    continue;
                }
                let func = if rest.is_empty() { "*" } else { rest };
                for f in catalog.kernel_functions(func)? {
                    out.push(ListedProbe {
                        name: format!("{provider}:{f}"),
                        details: Vec::new(),
                    });
                }
            }
            _ => {
                let event = rest.split(':').next().unwrap_or("*");
                let event = if event.is_empty() { "*" } else { event };
                for e in SOFTWARE_EVENTS.iter().filter(|e| glob_match(event, e)) {
                    out.push(ListedProbe {
                        name: format!("software:{e}:"),
                        details: Vec::new(),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_compile::MemoryCatalog;

    #[test]
    fn lists_tracepoints_with_fields() {
        let c = MemoryCatalog::sample();
        let got = list_probes(&c, Some("tracepoint:syscalls:sys_enter_open*"), true).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "tracepoint:syscalls:sys_enter_openat");
        assert_eq!(
            got[0].details,
            vec![
                "int __syscall_nr",
                "int dfd",
                "const char * filename",
                "int flags",
                "umode_t mode"
            ]
        );
        let got = list_probes(&c, Some("t:sched:*"), false).unwrap();
        assert!(got.iter().all(|p| p.name.starts_with("tracepoint:sched:")));
        assert!(got.iter().all(|p| p.details.is_empty()));
    }

    #[test]
    fn array_fields_print_as_c_declarations() {
        let f = nexus_compile::tp_field("comm", "char[16]", 8, 16, false);
        assert_eq!(field_declaration(&f), "char comm[16]");
        let f = nexus_compile::tp_field("filename", "__data_loc char[]", 8, 4, false);
        assert_eq!(field_declaration(&f), "__data_loc char[] filename");
    }

    #[test]
    fn lists_raw_tracepoints_by_event_name() {
        let c = MemoryCatalog::sample();
        let names = |pattern| {
            list_probes(&c, Some(pattern), false)
                .unwrap()
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("rawtracepoint:sched_switch"),
            ["rawtracepoint:sched_switch"]
        );
        let all = names("rt:*");
        assert!(all.contains(&"rawtracepoint:sys_enter".to_string()));
        // syscalls:sys_enter_X are ftrace events without a raw tracepoint.
        assert!(!all.iter().any(|n| n.contains("sys_enter_")), "{all:?}");
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }

    #[test]
    fn bare_patterns_and_bad_providers() {
        let c = MemoryCatalog::sample();
        let got = list_probes(&c, Some("sys_exit_read"), false).unwrap();
        assert_eq!(got[0].name, "tracepoint:syscalls:sys_exit_read");
        let got = list_probes(&c, Some("software:cpu*"), false).unwrap();
        assert_eq!(
            got.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            vec!["software:cpu-clock:", "software:cpu-migrations:"]
        );
        assert!(matches!(
            list_probes(&c, Some("nope:x"), false),
            Err(ListError::Provider(_))
        ));
        assert!(matches!(
            list_probes(&c, Some("uprobe:*"), false),
            Err(ListError::NoBinary)
        ));
    }
}
