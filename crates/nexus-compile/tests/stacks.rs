//! `kstack`/`ustack` arguments: the frame limit sizes the stack-trace map
//! (so the kernel truncates stacks and equal top-N stacks share an id), and
//! bad modes and limits are refused with the call's argument underlined.

use nexus_compile::{Artifact, CompileOptions, MapRole, MemoryCatalog, compile_source};

fn compile(src: &str) -> Result<Artifact, Vec<nexus_lang::Diagnostic>> {
    compile_source(src, &MemoryCatalog::sample(), &CompileOptions::default())
}

fn stack_value_sizes(a: &Artifact) -> Vec<u32> {
    a.maps
        .iter()
        .filter(|m| m.role == MapRole::Stacks)
        .map(|m| m.value_size)
        .collect()
}

#[test]
fn the_frame_limit_sizes_the_stack_map() {
    for (src, frames) in [
        ("profile:hz:99 { @[kstack] = count(); }", 127),
        ("profile:hz:99 { @[kstack(2)] = count(); }", 2),
        ("profile:hz:99 { @[kstack(bpftrace, 5)] = count(); }", 5),
        ("profile:hz:99 { @[kstack(bpftrace)] = count(); }", 127),
        ("profile:hz:99 { @[ustack(3)] = count(); }", 3),
        ("profile:hz:99 { @[kstack(4), ustack(4)] = count(); }", 4),
    ] {
        let a = compile(src).unwrap_or_else(|d| panic!("{src}: {d:?}"));
        assert_eq!(stack_value_sizes(&a), [frames * 8], "{src}");
    }
}

#[test]
fn bad_modes_limits_and_mixed_limits_are_refused() {
    for (src, message, covered) in [
        (
            "profile:hz:99 { @[kstack(perf, 3)] = count(); }",
            "kstack(perf) is not supported yet",
            "perf",
        ),
        (
            "profile:hz:99 { @[ustack(raw)] = count(); }",
            "unknown stack mode `raw`: bpftrace or perf",
            "raw",
        ),
        (
            "profile:hz:99 { @[kstack(2000)] = count(); }",
            "kstack() frame limit must be from 1 to 1024, 2000 given",
            "2000",
        ),
        (
            "profile:hz:99 { @[kstack(0)] = count(); }",
            "kstack() frame limit must be from 1 to 1024, 0 given",
            "0",
        ),
        (
            "profile:hz:99 { @[kstack(3, bpftrace)] = count(); }",
            "kstack() takes a mode name and/or a frame limit",
            "3",
        ),
        (
            "profile:hz:99 { @a[kstack(2)] = count(); @b[ustack] = count(); }",
            "this stack has a 127-frame limit, an earlier one 2",
            "ustack",
        ),
    ] {
        let diags = compile(src)
            .err()
            .unwrap_or_else(|| panic!("{src}: compiled"));
        let d = diags
            .iter()
            .find(|d| d.message.contains(message))
            .unwrap_or_else(|| panic!("{src}: no `{message}` in {diags:?}"));
        assert_eq!(d.span.text(src), covered, "{src}");
    }
}
