//! The bpftrace language compiled straight to eBPF bytecode, without LLVM.
//!
//! Pipeline (each stage its own module):
//!
//! 1. **resolve** ([`providers`]): every attach point is expanded through
//!    the [`ProbeCatalog`] by its probe-kind provider; blocks become *units*
//!    (one program each).
//! 2. **typecheck** ([`check`]): builtins, functions, types, one
//!    aggregation kind per map.
//! 3. **resources** ([`lower::Resources`]): maps laid out by index, event
//!    schemas, stack map, scratch space.
//! 4. **IR** ([`lower`], [`ir`]): virtual registers, labels, map pseudo-loads.
//! 5. **allocation** ([`regalloc`]) and **emission** ([`emit`]) to
//!    `nexus-insn`, with a line table.
//!
//! No I/O and no file descriptors: the result is an [`Artifact`].

pub mod artifact;
pub mod catalog;
pub mod check;
pub mod emit;
pub mod format;
pub mod ir;
pub mod kernel_types;
pub mod lower;
mod params;
pub mod providers;
pub mod regalloc;
pub mod ty;
mod walk;

pub use artifact::*;
pub use catalog::{
    BtfArg, CatalogError, KernelMember, KernelType, MemoryCatalog, ProbeCatalog, TracepointField,
    glob_match, tp_field,
};

use check::{Checker, Unit};
use nexus_lang::ast::{ExprKind, Probe, ProbeKind, Program};
use nexus_lang::{Diagnostic, LineIndex, Span};
use std::collections::HashMap;

/// An error for every `kstack`/`ustack` whose frame limit differs from the
/// first one's. The limit is the stack map's value size, and the runtime
/// reads stack ids from a single map, so one program has one limit.
fn mixed_stack_limits(program: &Program) -> Vec<Diagnostic> {
    let mut first: Option<u32> = None;
    let mut out = Vec::new();
    let mut visit = |e: &nexus_lang::ast::Expr| {
        let limit = match &e.kind {
            ExprKind::Builtin(b) if b == "kstack" || b == "ustack" => lower::STACK_DEPTH,
            ExprKind::Call { name, args } if name.name == "kstack" || name.name == "ustack" => {
                // Bad arguments were reported by the checker.
                let Ok(n) = check::stack_limit(&name.name, args) else {
                    return;
                };
                n
            }
            _ => return,
        };
        match first {
            None => first = Some(limit),
            Some(f) if f != limit => out.push(
                Diagnostic::error(
                    e.span,
                    format!("this stack has a {limit}-frame limit, an earlier one {f}"),
                )
                .with_hint("one program can use only one kstack/ustack frame limit for now"),
            ),
            Some(_) => {}
        }
    };
    for p in &program.probes {
        if let Some(pred) = &p.predicate {
            walk::expr(pred, &mut visit);
        }
        walk::exprs(&p.body.stmts, &mut visit);
    }
    out
}

/// Knobs of one compilation.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// Positional parameters `$1`, `$2`, ...
    pub params: Vec<String>,
    /// Compile in process-tree scoping (`-c CMD`): probes that can see
    /// other processes check the scope map when `scope_enabled` is set, and
    /// fork/exit programs keep the map current.
    pub scope: bool,
    /// Ring buffer size in bytes (a power of two, at least a page) for
    /// programs that emit output records; programs that emit only control
    /// records, or none, get a smaller buffer (see
    /// [`artifact::events_ringbuf_size`]).
    pub ringbuf_size: u32,
    /// `max_entries` of user maps.
    pub map_entries: u32,
    /// Lower `tracepoint:syscalls:sys_enter_X`/`sys_exit_X` onto the
    /// `sys_enter`/`sys_exit` raw tracepoints with a syscall-number filter:
    /// raw tracepoints attach and detach in microseconds where classic
    /// tracepoints take ~70 ms each to detach (ARCHITECTURE §4.6b).
    pub raw_syscalls: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            params: Vec::new(),
            scope: false,
            ringbuf_size: 1 << 22,
            map_entries: 4096,
            raw_syscalls: true,
        }
    }
}

/// A stage `--emit` can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The parsed tree.
    Ast,
    /// The IR of every program, before register allocation.
    Ir,
    /// The final instructions, disassembled.
    Asm,
}

/// Everything up to and including lowering.
struct Lowered {
    units: Vec<Unit>,
    funcs: Vec<ir::Func>,
    res: lower::Resources,
}

/// How a block's code depends on which attach point fired.
#[derive(Debug, Clone, Default)]
struct Depends {
    /// Uses `args` (layouts differ between attach points).
    args: bool,
    /// The `args.NAME` fields used.
    fields: Vec<String>,
    /// Uses `probe` or `func` (names differ).
    names: bool,
}

fn depends(probe: &Probe) -> Depends {
    let mut d = Depends::default();
    let mut visit = |e: &nexus_lang::ast::Expr| match &e.kind {
        ExprKind::Builtin(b) => match b.as_str() {
            "args" => d.args = true,
            "probe" | "func" => d.names = true,
            _ => {}
        },
        _ => {
            if let Some(field) = check::args_field(e) {
                d.fields.push(field.name.clone());
            }
        }
    };
    if let Some(p) = &probe.predicate {
        walk::expr(p, &mut visit);
    }
    walk::exprs(&probe.body.stmts, &mut visit);
    d
}

/// True when every expansion reads each of `fields` the same way.
fn fields_agree(expanded: &[providers::Expanded], fields: &[String]) -> bool {
    fields.iter().all(|name| {
        let read = |e: &providers::Expanded| {
            e.args
                .as_ref()
                .and_then(|a| a.iter().find(|f| &f.name == name))
                .map(|f| f.read.clone())
        };
        let first = expanded.first().and_then(read);
        first.is_some() && expanded.iter().all(|e| read(e) == first)
    })
}

/// Expand every attach point and group them into units.
fn units(
    program: &Program,
    catalog: &dyn ProbeCatalog,
    opts: &CompileOptions,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::new();
    for (i, probe) in program.probes.iter().enumerate() {
        let deps = depends(probe);
        // Positional parameters are substituted before resolution, so
        // `probe` reports the attach point as resolved.
        let mut aps = Vec::new();
        for ap in &probe.attach_points {
            match params::substitute_attach_point(ap, &opts.params) {
                Ok(ap) => aps.push(ap),
                Err(d) => diags.push(d),
            }
        }
        let text = aps
            .iter()
            .map(|a| a.canonical())
            .collect::<Vec<_>>()
            .join(",");
        for ap in &aps {
            let provider = providers::provider(ap.kind);
            let expanded = match provider.expand(ap, catalog) {
                Ok(e) => e,
                Err(d) => {
                    diags.push(d);
                    continue;
                }
            };
            // Syscall tracepoints that only differ in name share one raw
            // program that derives `probe`/`func` from the syscall number.
            // The same holds for `args.NAME` fields that every syscall
            // passes in the same register (`__syscall_nr`, often `fd`).
            let raw: Option<Vec<_>> = expanded
                .iter()
                .map(providers::tracepoint::to_raw_syscall)
                .collect();
            let shared = opts.raw_syscalls
                && raw
                    .as_ref()
                    .is_some_and(|raw| fields_agree(raw, &deps.fields));
            let own = (deps.args || deps.names) && !shared;
            let mergeable = !own && !matches!(ap.kind, ProbeKind::Begin | ProbeKind::End);
            if own {
                for e in expanded {
                    out.push(Unit {
                        probe_index: i,
                        kind: ap.kind,
                        provider,
                        expanded: vec![e],
                        probe_text: text.clone(),
                        raw_syscalls: None,
                    });
                }
                continue;
            }
            if mergeable
                && let Some(u) = out
                    .iter_mut()
                    .find(|u| u.probe_index == i && u.kind == ap.kind)
            {
                u.expanded.extend(expanded);
                continue;
            }
            out.push(Unit {
                probe_index: i,
                kind: ap.kind,
                provider,
                expanded,
                probe_text: text.clone(),
                raw_syscalls: None,
            });
        }
    }
    out
}

/// Most programs a block may put on one raw syscall tracepoint: each runs
/// (and filters) on every syscall, so beyond this classic tracepoints are
/// cheaper per event.
const MAX_RAW_SYSCALL_PROGRAMS: usize = 8;

/// Lower syscall tracepoint units onto `sys_enter`/`sys_exit` raw
/// tracepoints where every attach point of the unit is a known syscall.
fn lower_syscalls(units: Vec<Unit>) -> Vec<Unit> {
    let lowerable = |u: &Unit| {
        u.kind == ProbeKind::Tracepoint && u.expanded.iter().all(|e| e.syscall.is_some())
    };
    let mut per_probe: HashMap<usize, usize> = HashMap::new();
    for u in units.iter().filter(|u| lowerable(u)) {
        *per_probe.entry(u.probe_index).or_default() += 1;
    }
    let mut out = Vec::new();
    for u in units {
        if let Some(raw) = raw_syscalls_units(&u) {
            out.extend(raw);
            continue;
        }
        if !lowerable(&u) || per_probe[&u.probe_index] > MAX_RAW_SYSCALL_PROGRAMS {
            out.push(u);
            continue;
        }
        let raw: Option<Vec<_>> = u
            .expanded
            .iter()
            .map(providers::tracepoint::to_raw_syscall)
            .collect();
        let Some(raw) = raw else {
            out.push(u);
            continue;
        };
        for exit in [false, true] {
            let part: Vec<_> = raw
                .iter()
                .filter(|e| e.syscall.is_some_and(|s| s.exit == exit))
                .cloned()
                .collect();
            if part.is_empty() {
                continue;
            }
            let mut nrs: Vec<u32> = part
                .iter()
                .filter_map(|e| e.syscall.map(|s| s.nr))
                .collect();
            nrs.sort_unstable();
            nrs.dedup();
            out.push(Unit {
                expanded: part,
                raw_syscalls: Some(check::RawSyscalls { exit, nrs }),
                ..u.clone()
            });
        }
    }
    out
}

/// A `raw_syscalls:sys_enter`/`sys_exit` unit put on the raw tracepoints
/// of the same name: one unfiltered program per side (a classic perf
/// tracepoint costs ~50 ns more per event than a raw one). `None` unless
/// every attach point of the unit is one of the two events.
fn raw_syscalls_units(u: &Unit) -> Option<Vec<Unit>> {
    if u.kind != ProbeKind::Tracepoint {
        return None;
    }
    let raw: Vec<(bool, providers::Expanded)> = u
        .expanded
        .iter()
        .map(providers::tracepoint::raw_syscalls_to_raw)
        .collect::<Option<_>>()?;
    let mut out = Vec::new();
    for exit in [false, true] {
        // The same event named twice attaches once.
        let mut part: Vec<providers::Expanded> = Vec::new();
        for (_, e) in raw.iter().filter(|(x, _)| *x == exit) {
            if !part.iter().any(|p| p.attach == e.attach) {
                part.push(e.clone());
            }
        }
        if part.is_empty() {
            continue;
        }
        out.push(Unit {
            expanded: part,
            raw_syscalls: Some(check::RawSyscalls {
                exit,
                nrs: Vec::new(),
            }),
            ..u.clone()
        });
    }
    Some(out)
}

fn lower_all(
    program: &Program,
    catalog: &dyn ProbeCatalog,
    opts: &CompileOptions,
) -> Result<Lowered, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut units = units(program, catalog, opts, &mut diags);
    if opts.raw_syscalls {
        units = lower_syscalls(units);
    }
    // Two silent passes let a map be read (e.g. in END) before the block
    // that assigns it; the third reports.
    let kernel = kernel_types::KernelTypes::new(catalog);
    let mut checker = Checker::new(&opts.params, &kernel);
    checker.report = false;
    for _ in 0..2 {
        for u in &units {
            let p = &program.probes[u.probe_index];
            checker.unit(u, p.predicate.as_ref(), &p.body.stmts);
        }
    }
    checker.report = true;
    let mut vars = Vec::new();
    for u in &units {
        let p = &program.probes[u.probe_index];
        vars.push(checker.unit(u, p.predicate.as_ref(), &p.body.stmts));
    }
    diags.extend(checker.diags);
    if !diags.iter().any(Diagnostic::is_error) {
        diags.extend(mixed_stack_limits(program));
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    let mut deleted = std::collections::BTreeSet::new();
    for p in &program.probes {
        walk::deletes(&p.body.stmts, &mut |m| {
            deleted.insert(check::map_name(m));
        });
    }
    let mut res = lower::Resources::new(
        &checker.maps,
        opts.ringbuf_size,
        opts.map_entries,
        opts.scope,
        &deleted,
    );
    let mut funcs = Vec::new();
    for (u, v) in units.iter().zip(&vars) {
        let p = &program.probes[u.probe_index];
        let mut attempt = |budget| {
            let (mut f, d) = lower::Lower::new(&mut res, u, v, &opts.params, &kernel)
                .with_stack_budget(budget)
                .program(p.predicate.as_ref(), &p.body.stmts, p.span);
            f.remove_dead();
            (f, d)
        };
        let (mut f, mut d) = attempt(lower::STACK_BUDGET);
        if matches!(regalloc::allocate(&f), Err(regalloc::AllocError::Stack(_))) {
            // Spills did not fit next to the values: move values to the
            // scratch map and try again.
            (f, d) = attempt(lower::SMALL_STACK_BUDGET);
        }
        diags.extend(d);
        funcs.push(f);
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    // Only now are the event schemas known. Output records were lowered
    // against the requested size (their wakeup threshold depends on it),
    // and they keep it.
    let ring = &mut res.maps[res.ringbuf as usize];
    ring.max_entries = events_ringbuf_size(&res.events, opts.ringbuf_size);
    Ok(Lowered { units, funcs, res })
}

/// A short kernel program name for unit `i`.
fn prog_name(kind: ProbeKind, i: usize) -> String {
    let short = match kind {
        ProbeKind::Begin => "begin",
        ProbeKind::End => "end",
        ProbeKind::Tracepoint => "tp",
        ProbeKind::RawTracepoint => "rawtp",
        ProbeKind::Kprobe => "kprobe",
        ProbeKind::Kretprobe => "kretprobe",
        ProbeKind::Uprobe => "uprobe",
        ProbeKind::Uretprobe => "uretprobe",
        ProbeKind::Fentry => "fentry",
        ProbeKind::Fexit => "fexit",
        ProbeKind::Profile => "profile",
        ProbeKind::Interval => "interval",
        ProbeKind::Software => "software",
        ProbeKind::Hardware => "hardware",
    };
    format!("{short}_{i}")
}

/// What a program is, apart from its code.
struct Head {
    name: String,
    probe_index: u32,
    probe_text: String,
    attach: Vec<AttachSpec>,
    prog_type: ProgKind,
    probe_count: u32,
}

fn finish(
    head: Head,
    f: &ir::Func,
    index: &LineIndex,
    src: &str,
) -> Result<ProgramSpec, Diagnostic> {
    let Head {
        name,
        probe_index,
        probe_text,
        attach,
        prog_type,
        probe_count,
    } = head;
    let alloc = regalloc::allocate(f).map_err(|e| {
        Diagnostic::error(Span::default(), format!("program `{probe_text}`: {e}"))
            .with_hint("use fewer or shorter strings and map keys in this probe")
    })?;
    let out = emit::emit(f, &alloc).map_err(|e| {
        Diagnostic::error(Span::default(), format!("program `{probe_text}`: {e}"))
            .with_hint("split the probe into smaller probes")
    })?;
    let line_table = out
        .lines
        .into_iter()
        .map(|(insn, span, what)| LineEntry {
            insn,
            span: span.into(),
            line: index.line_col(src, span.start).line as u32,
            what,
        })
        .collect();
    Ok(ProgramSpec {
        name,
        probe_index,
        probe_text,
        attach,
        prog_type,
        probe_count,
        insns: out.insns,
        line_table,
    })
}

/// Compile a parsed program into an [`Artifact`].
///
/// `src` is the program text the AST's spans point into; it is kept in the
/// Artifact so the runtime can explain verifier errors at the user's
/// statement.
pub fn compile(
    program: &Program,
    src: &str,
    catalog: &dyn ProbeCatalog,
    opts: &CompileOptions,
) -> Result<Artifact, Vec<Diagnostic>> {
    let Lowered {
        units,
        funcs,
        mut res,
    } = lower_all(program, catalog, opts)?;
    let index = LineIndex::new(src);
    let mut programs = Vec::new();
    let mut diags = Vec::new();
    for (i, (u, f)) in units.iter().zip(&funcs).enumerate() {
        let attach = u.attach();
        let head = Head {
            name: prog_name(u.kind, i),
            probe_index: u.probe_index as u32,
            probe_text: u.probe_text.clone(),
            attach,
            prog_type: u.prog_kind(),
            probe_count: u32::try_from(u.expanded.len()).unwrap_or(u32::MAX),
        };
        match finish(head, f, &index, src) {
            Ok(p) => programs.push(p),
            Err(d) => diags.push(d),
        }
    }
    if opts.scope {
        // First in the list, so the runtime attaches them first: a
        // tracepoint runs its programs in attach order, and the command's
        // own `sched_process_exec` must join the scope before a user probe
        // on the same event asks whether it is in scope.
        match scope_programs(&res, catalog, &index, src) {
            Ok(p) => {
                programs.splice(0..0, p);
            }
            Err(d) => diags.push(d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    // Maps created during lowering (stacks, scratch) are already in `res`.
    let maps = std::mem::take(&mut res.maps);
    Ok(Artifact {
        version: ARTIFACT_VERSION,
        source: src.to_string(),
        maps,
        programs,
        events: res.events,
        config: ConfigLayout::default(),
    })
}

/// The exec/fork/exit programs that keep the scope map current (the
/// command joins at its exec, see [`lower::scope_exec_program`]): on the raw
/// tracepoints when BTF gives `task_struct.tgid` (raw tracepoints detach in
/// microseconds, classic ones in 40–80 ms each), else on the classic
/// tracepoints, whose `format` has the pids.
fn scope_programs(
    res: &lower::Resources,
    catalog: &dyn ProbeCatalog,
    index: &LineIndex,
    src: &str,
) -> Result<Vec<ProgramSpec>, Diagnostic> {
    let tgid = catalog
        .struct_member("task_struct", "tgid")
        .ok()
        .flatten()
        .filter(|&(_, size)| size == 4)
        .and_then(|(off, _)| i16::try_from(off).ok());
    let Some(tgid_off) = tgid else {
        return scope_programs_classic(res, catalog, index, src);
    };
    let mut out = Vec::new();
    for (name, event, fork) in [
        ("scope_fork", "sched_process_fork", true),
        ("scope_exit", "sched_process_exit", false),
    ] {
        let f = lower::scope_program_raw(res, fork, tgid_off);
        let head = Head {
            name: name.to_string(),
            probe_index: u32::MAX,
            probe_text: format!("rawtracepoint:{event}"),
            attach: vec![AttachSpec::RawTracepoint {
                event: event.into(),
            }],
            prog_type: ProgKind::RawTracepoint,
            probe_count: 0,
        };
        out.push(finish(head, &f, index, src)?);
    }
    // The exec event needs no BTF: the program reads only helpers.
    let head = Head {
        name: "scope_exec".to_string(),
        probe_index: u32::MAX,
        probe_text: "rawtracepoint:sched_process_exec".to_string(),
        attach: vec![AttachSpec::RawTracepoint {
            event: "sched_process_exec".into(),
        }],
        prog_type: ProgKind::RawTracepoint,
        probe_count: 0,
    };
    out.push(finish(head, &lower::scope_exec_program(res), index, src)?);
    Ok(out)
}

/// The scope programs on the classic `sched:sched_process_fork`/`exit`
/// tracepoints.
fn scope_programs_classic(
    res: &lower::Resources,
    catalog: &dyn ProbeCatalog,
    index: &LineIndex,
    src: &str,
) -> Result<Vec<ProgramSpec>, Diagnostic> {
    let field = |event: &str, name: &str| -> Result<i16, Diagnostic> {
        let fields = catalog
            .tracepoint_fields("sched", event)
            .map_err(|e| {
                Diagnostic::error(Span::default(), format!("cannot scope to the command: {e}"))
            })?
            .unwrap_or_default();
        fields
            .iter()
            .find(|f| f.name == name && f.size == 4)
            .and_then(|f| i16::try_from(f.offset).ok())
            .ok_or_else(|| {
                Diagnostic::error(
                    Span::default(),
                    format!("cannot scope to the command: tracepoint sched:{event} has no 4-byte field `{name}`"),
                )
            })
    };
    let fork = lower::scope_program(
        res,
        true,
        field("sched_process_fork", "parent_pid")?,
        field("sched_process_fork", "child_pid")?,
    );
    let exit = lower::scope_program(res, false, field("sched_process_exit", "pid")?, 0);
    let exec = lower::scope_exec_program(res);
    let mut out = Vec::new();
    for (name, event, f) in [
        ("scope_fork", "sched_process_fork", fork),
        ("scope_exit", "sched_process_exit", exit),
        ("scope_exec", "sched_process_exec", exec),
    ] {
        let head = Head {
            name: name.to_string(),
            probe_index: u32::MAX,
            probe_text: format!("tracepoint:sched:{event}"),
            attach: vec![AttachSpec::Tracepoint {
                category: "sched".into(),
                event: event.into(),
            }],
            prog_type: ProgKind::Tracepoint,
            probe_count: 0,
        };
        out.push(finish(head, &f, index, src)?);
    }
    Ok(out)
}

/// The IR of every program, as `--emit ir` prints it.
pub fn dump_ir(
    program: &Program,
    catalog: &dyn ProbeCatalog,
    opts: &CompileOptions,
) -> Result<String, Vec<Diagnostic>> {
    let Lowered { units, funcs, .. } = lower_all(program, catalog, opts)?;
    let mut out = String::new();
    for (i, (u, f)) in units.iter().zip(&funcs).enumerate() {
        out.push_str(&format!(
            "; program {} ({}): {}\n",
            prog_name(u.kind, i),
            u.prog_kind().prog_type().name(),
            u.expanded
                .iter()
                .map(|e| e.probe.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push_str(&f.dump());
        out.push('\n');
    }
    Ok(out)
}

/// Every program of an Artifact disassembled, as `--emit asm` prints it.
pub fn dump_asm(artifact: &Artifact) -> String {
    let mut out = String::new();
    for p in &artifact.programs {
        out.push_str(&format!(
            "; program {} ({}) {}\n",
            p.name,
            p.prog_type.prog_type().name(),
            p.probe_text
        ));
        out.push_str(&nexus_insn::disassemble(&p.insns));
        out.push('\n');
    }
    out
}

/// Parse, compile and print one stage (`--emit ast|ir|asm`).
pub fn emit_stage(
    src: &str,
    catalog: &dyn ProbeCatalog,
    opts: &CompileOptions,
    stage: Stage,
) -> Result<String, Vec<Diagnostic>> {
    let program = nexus_lang::parse(src)?;
    match stage {
        Stage::Ast => Ok(nexus_lang::dump_tree(&program)),
        Stage::Ir => dump_ir(&program, catalog, opts),
        Stage::Asm => compile(&program, src, catalog, opts).map(|a| dump_asm(&a)),
    }
}

/// Parse and compile in one call.
pub fn compile_source(
    src: &str,
    catalog: &dyn ProbeCatalog,
    opts: &CompileOptions,
) -> Result<Artifact, Vec<Diagnostic>> {
    let program = nexus_lang::parse(src)?;
    compile(&program, src, catalog, opts)
}
