//! The kernel backend with a hand-built Artifact (no compiler): a verifier
//! rejection explained at the source statement. Whole sessions are tested
//! through the CLI (crates/bpfnexus/tests/cli.rs).
//!
//! Skips (saying why) without BPF privileges; with
//! `BPFNEXUS_REQUIRE_KERNEL=1` a skip is a failure.

use nexus_compile::{
    ARTIFACT_VERSION, Artifact, AttachSpec, ConfigLayout, LineEntry, MapKind, MapRole, MapSpec,
    ProgKind, ProgramSpec, SrcSpan,
};
use nexus_insn::{Insn, Reg, Size};
use nexus_runtime::{BackendError, KernelBackend, LoadOptions};

fn artifact(source: &str, insns: Vec<Insn>, line_table: Vec<LineEntry>) -> Artifact {
    Artifact {
        version: ARTIFACT_VERSION,
        source: source.into(),
        maps: vec![MapSpec {
            name: "events".into(),
            kind: MapKind::Ringbuf,
            key_size: 0,
            value_size: 0,
            max_entries: 1 << 16,
            flags: 0,
            role: MapRole::Events,
        }],
        programs: vec![ProgramSpec {
            name: "begin_0".into(),
            probe_index: 0,
            probe_text: "BEGIN".into(),
            attach: vec![AttachSpec::Begin],
            prog_type: ProgKind::RawTracepoint,
            probe_count: 1,
            insns,
            line_table,
        }],
        events: Vec::new(),
        config: ConfigLayout::default(),
    }
}

/// Skip unless maps can be created here.
fn kernel_or_skip(test: &str, err: &BackendError) -> bool {
    let required = std::env::var_os("BPFNEXUS_REQUIRE_KERNEL").is_some_and(|v| v == "1");
    if let BackendError::Refused(why) = err {
        if required {
            panic!("{test}: BPFNEXUS_REQUIRE_KERNEL=1 but {why}");
        }
        eprintln!("skipping {test}: {why}");
        return false;
    }
    true
}

#[test]
fn verifier_rejection_points_at_the_statement() {
    // `BEGIN { $x = 1; @y = *$x; }`: the second statement reads through a
    // scalar, which the verifier refuses.
    let source = "BEGIN { $x = 1; @y = *$x; }";
    let insns = vec![
        Insn::mov64_imm(Reg::R1, 1),
        Insn::ldx(Size::DW, Reg::R0, Reg::R1, 0),
        Insn::exit(),
    ];
    let line_table = vec![
        LineEntry {
            insn: 0,
            span: SrcSpan { start: 8, end: 15 },
            line: 1,
            what: "assignment".into(),
        },
        LineEntry {
            insn: 1,
            span: SrcSpan { start: 16, end: 24 },
            line: 1,
            what: "map assignment".into(),
        },
    ];
    let err =
        match KernelBackend::load(artifact(source, insns, line_table), &LoadOptions::default()) {
            Ok(_) => panic!("the verifier accepted a read through a scalar"),
            Err(e) => e,
        };
    if !kernel_or_skip("verifier_rejection_points_at_the_statement", &err) {
        return;
    }
    let BackendError::Verifier {
        explanation,
        diagnostic,
        log,
    } = err
    else {
        panic!("expected a verifier error, got {err}");
    };
    assert!(explanation.contains("probe `BEGIN`"), "{explanation}");
    assert!(log.contains("invalid mem access"), "{log}");
    let rendered = diagnostic
        .expect("instruction 1 is in the line table")
        .render("stdin", source);
    assert!(rendered.starts_with("stdin:1:17"), "{rendered}");
    assert!(rendered.contains(source), "{rendered}");
    assert!(rendered.contains("instruction 1"), "{rendered}");
    assert!(rendered.contains("str()"), "{rendered}");
}
