//! `tracepoint:raw_syscalls:sys_enter`/`sys_exit` are put on the raw
//! tracepoints of the same name (a classic perf tracepoint costs ~50 ns
//! more per event): the program type and attach point change, `probe` and
//! the fields `args.id`/`args.ret` do not. The kernel test counts real
//! `getppid` calls (`BPFNEXUS_REQUIRE_KERNEL=1` makes a skip a failure).

mod common;

use common::{compile_with, create_maps, kernel_available, load, skip_or_fail};
use nexus_compile::{
    Artifact, AttachSpec, CompileOptions, MapRole, MemoryCatalog, ProgKind, tp_field,
};
use nexus_kernel::{KernelCatalog, Map};

/// The sample catalog plus `raw_syscalls:sys_exit` (`long id; long ret`).
fn catalog() -> MemoryCatalog {
    let mut c = MemoryCatalog::sample();
    c.add_tracepoint(
        "raw_syscalls",
        "sys_exit",
        vec![
            tp_field("id", "long", 8, 8, true),
            tp_field("ret", "long", 16, 8, true),
        ],
    );
    c
}

fn compile(src: &str, raw_syscalls: bool) -> Artifact {
    let opts = CompileOptions {
        raw_syscalls,
        ..CompileOptions::default()
    };
    compile_with(src, &catalog(), &opts)
}

fn raw(event: &str) -> AttachSpec {
    AttachSpec::RawTracepoint {
        event: event.into(),
    }
}

#[test]
fn raw_syscalls_events_go_on_raw_tracepoints() {
    let src = r#"tracepoint:raw_syscalls:sys_enter { @e[args.id] = count(); }
                 tracepoint:raw_syscalls:sys_exit { @x[args.id] = sum(args.ret); }
                 tracepoint:raw_syscalls:* { @n = count(); }"#;
    let a = compile(src, true);
    let progs: Vec<(ProgKind, Vec<AttachSpec>, &str)> = a
        .programs
        .iter()
        .map(|p| (p.prog_type, p.attach.clone(), p.probe_text.as_str()))
        .collect();
    assert_eq!(
        progs,
        [
            (
                ProgKind::RawTracepoint,
                vec![raw("sys_enter")],
                "tracepoint:raw_syscalls:sys_enter"
            ),
            (
                ProgKind::RawTracepoint,
                vec![raw("sys_exit")],
                "tracepoint:raw_syscalls:sys_exit"
            ),
            // The wildcard block: one program per side.
            (
                ProgKind::RawTracepoint,
                vec![raw("sys_enter")],
                "tracepoint:raw_syscalls:*"
            ),
            (
                ProgKind::RawTracepoint,
                vec![raw("sys_exit")],
                "tracepoint:raw_syscalls:*"
            ),
        ]
    );
    // bpftrace's count: attach points, not programs.
    assert_eq!(a.attach_point_count(), 4);
}

#[test]
fn raw_syscalls_stay_classic_when_lowering_is_off_or_mixed() {
    let a = compile("tracepoint:raw_syscalls:sys_enter { @ = count(); }", false);
    assert_eq!(a.programs[0].prog_type, ProgKind::Tracepoint);
    // A block that also names a classic event shares its one program.
    let a = compile(
        "tracepoint:raw_syscalls:sys_enter, tracepoint:sched:sched_switch { @ = count(); }",
        true,
    );
    assert_eq!(a.programs.len(), 1);
    assert_eq!(a.programs[0].prog_type, ProgKind::Tracepoint);
}

#[test]
fn probe_names_the_classic_event() {
    let a = compile(
        r#"tracepoint:raw_syscalls:sys_enter { printf("%s\n", probe); }"#,
        true,
    );
    assert_eq!(a.programs[0].prog_type, ProgKind::RawTracepoint);
    let code = nexus_insn::disassemble(&a.programs[0].insns);
    // The name is stored as immediates: look for its first 4 bytes.
    let word = i32::from_le_bytes(*b"trac");
    assert!(
        a.programs[0].insns.iter().any(|i| i.imm == word),
        "no `probe` literal in\n{code}"
    );
}

/// The first `u64` of a keyless user map, summed over the CPUs.
fn keyless_total(a: &Artifact, maps: &[Map], name: &str) -> u64 {
    let i = a
        .maps
        .iter()
        .position(|m| matches!(&m.role, MapRole::User(u) if u.name == name))
        .unwrap_or_else(|| panic!("no map {name}"));
    let key = vec![0u8; a.maps[i].key_size as usize];
    maps[i]
        .lookup_percpu(&key)
        .unwrap()
        .unwrap_or_else(|| panic!("{name} has no entry"))
        .iter()
        .map(|v| u64::from_le_bytes(v[..8].try_into().unwrap()))
        .fold(0, u64::wrapping_add)
}

#[test]
fn kernel_counts_getppid_on_raw_syscalls() {
    if let Err(why) = kernel_available() {
        return skip_or_fail(&why);
    }
    // `pid` is the tgid: other test threads of this process are seen too,
    // but none of them calls getppid.
    let src = r#"
        tracepoint:raw_syscalls:sys_enter /pid == $1 && args.id == 110/ { @enter = count(); }
        tracepoint:raw_syscalls:sys_exit /pid == $1 && args->id == 110/ { @exit = count(); @ret = sum(args.ret); }"#;
    let opts = CompileOptions {
        params: vec![std::process::id().to_string()],
        ..CompileOptions::default()
    };
    let a = compile_with(src, &KernelCatalog, &opts);
    let maps = create_maps(&a);
    let mut links = Vec::new();
    for p in &a.programs {
        assert_eq!(p.prog_type, ProgKind::RawTracepoint, "{}", p.probe_text);
        let prog = load(p, &maps);
        let [AttachSpec::RawTracepoint { event }] = &p.attach[..] else {
            panic!("{:?}", p.attach);
        };
        let target = nexus_kernel::AttachTarget::RawTracepoint {
            name: event.clone(),
        };
        links.push(nexus_kernel::attach(&prog, &target).unwrap());
    }
    const CALLS: u64 = 1000;
    let mut ppid = 0;
    for _ in 0..CALLS {
        // SAFETY: getppid has no preconditions and cannot fail.
        ppid = unsafe { libc::getppid() };
    }
    drop(links);
    assert_eq!(keyless_total(&a, &maps, "@enter"), CALLS);
    assert_eq!(keyless_total(&a, &maps, "@exit"), CALLS);
    assert_eq!(
        keyless_total(&a, &maps, "@ret"),
        CALLS * u64::try_from(ppid).unwrap()
    );
}
