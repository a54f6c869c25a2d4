//! Compile a table of programs: every Artifact must round-trip through its
//! encodings, and every program must pass the real kernel verifier (when
//! this machine can load BPF; `BPFNEXUS_REQUIRE_KERNEL=1` makes a skip a
//! failure). A second table holds every semantic error with its message
//! and span.

use nexus_compile::{
    Artifact, CompileOptions, MapRole, MemoryCatalog, ProbeCatalog, compile_source, dump_asm,
    verifier_pc,
};
use nexus_kernel::{KernelCatalog, Map, MapSpec, Program, ProgramSpec};

/// Programs that must compile anywhere and load on this kernel.
const PROGRAMS: &[(&str, &str)] = &[
    ("hello", r#"BEGIN { printf("hello %d\n", 42); exit(); }"#),
    (
        "openat comm filter",
        r#"tracepoint:syscalls:sys_enter_openat /comm == "cat"/ { printf("%s %s\n", comm, str(args.filename)); }"#,
    ),
    (
        "wildcard with probe",
        r#"tracepoint:syscalls:sys_enter_open* { @[probe] = count(); }"#,
    ),
    (
        "raw_syscalls id",
        r#"tracepoint:raw_syscalls:sys_enter { @[args.id] = count(); }"#,
    ),
    (
        "raw tracepoint args",
        r#"rawtracepoint:sys_enter { @c[arg1] = count(); }"#,
    ),
    (
        "every aggregation",
        r#"tracepoint:syscalls:sys_exit_read /args.ret > 0/ {
            @bytes = hist(args.ret); @l = lhist(args.ret, 0, 1000, 100);
            @s = stats(args.ret); @a = avg(args.ret); @mn = min(args.ret);
            @mx = max(args.ret); @sum[comm, pid] = sum(args.ret); }"#,
    ),
    (
        "uprobe libc",
        r#"uprobe:libc:malloc { @sizes = hist(arg0); }"#,
    ),
    (
        "uretprobe retval",
        r#"uretprobe:libc:malloc { @ret[tid] = retval; }"#,
    ),
    (
        "interval elapsed",
        r#"interval:ms:100 { printf("%d\n", elapsed); }"#,
    ),
    (
        "profile kstack",
        r#"profile:hz:99 { @[cpu] = count(); @k[kstack] = count(); }"#,
    ),
    (
        "software event",
        r#"software:cpu-clock:100000 { @x = count(); }"#,
    ),
    (
        "control flow",
        r#"BEGIN { $x = 1; $y = $x * 3 + 2;
            if ($y > 4 && $x != 0) { printf("big %d\n", $y); } else { printf("small\n"); }
            $z = $x > 0 ? 10 : 20; @v = $z; @v++; @v += 5;
            $i = 0; while ($i < 10) { $i++; } unroll(3) { $i = $i + 1; }
            if (!($i == 13) || $x) { @w = 1; } }"#,
    ),
    (
        "string variable compare",
        r#"tracepoint:syscalls:sys_enter_openat { $f = str(args.filename);
            if ($f == "/etc/passwd") { printf("passwd by %s\n", comm); }
            @files[$f] = count(); }"#,
    ),
    (
        "print clear zero",
        r#"tracepoint:syscalls:sys_enter_read { @c[pid] = count(); @d = sum(args.count); }
           END { print(@c, 10); print(@d); clear(@c); zero(@d); }"#,
    ),
    (
        "delete",
        r#"tracepoint:syscalls:sys_enter_read { @start[tid] = nsecs; }
           tracepoint:syscalls:sys_exit_read { $s = @start[tid]; if ($s) { @lat = hist(nsecs - $s); } delete(@start[tid]); }"#,
    ),
    (
        "casts and operators",
        r#"BEGIN { $a = (uint8)300; $b = (int8)200; $c = -5 / 2; $d = 7 % 3;
            $e = 1 << 4 >> 2; $f = ~0 ^ 5 | 2 & 3; $g = 0x1122334455667788;
            printf("%d %d %d %d %d %d %x\n", $a, $b, $c, $d, $e, $f, $g); }"#,
    ),
    (
        "builtins",
        r#"tracepoint:sched:sched_switch {
            printf("%d %d %d %d %d %d %d %s %s\n", pid, tid, uid, gid, cpu, nsecs, cgroup,
                   args.prev_comm, args.next_comm);
            @r = rand; @t = curtask; @p = cpid; }"#,
    ),
    (
        "tuples",
        r#"BEGIN { @t[1, "a"] = (1, "xyz"); $t = (2, comm); printf("%d\n", $t.0); }"#,
    ),
    (
        "symbols and stacks",
        r#"uprobe:libc:malloc { printf("%s %s %s\n", usym(arg0), ustack, kstack); @u[ustack] = count(); }"#,
    ),
    (
        "several attach points",
        r#"tracepoint:syscalls:sys_enter_read, tracepoint:syscalls:sys_enter_write { @[comm] = count(); }"#,
    ),
    (
        "strncmp and ternary strings",
        r#"tracepoint:syscalls:sys_enter_openat { $s = pid > 1 ? comm : "none";
            if (strncmp($s, "bash", 4) == 0) { printf("%s\n", $s); } }"#,
    ),
    (
        "big strings go to scratch",
        r#"tracepoint:syscalls:sys_enter_openat { $a = str(args.filename, 200); $b = str(args.filename, 200);
            $c = str(args.filename, 200); printf("%s %s %s\n", $a, $b, $c); }"#,
    ),
    (
        "buf and positional",
        r#"tracepoint:syscalls:sys_enter_write /pid != $1/ { printf("%r\n", buf(args.buf, 16)); }"#,
    ),
];

fn options() -> CompileOptions {
    CompileOptions {
        params: vec!["1".into()],
        ..CompileOptions::default()
    }
}

fn check_artifact(name: &str, a: &Artifact) {
    assert!(!a.programs.is_empty(), "{name}: no programs");
    let json = a.to_json();
    assert_eq!(
        &Artifact::from_json(&json).unwrap(),
        a,
        "{name}: JSON round trip"
    );
    for p in &a.programs {
        let bytes = nexus_insn::encode(&p.insns);
        assert_eq!(nexus_insn::decode(&bytes).unwrap(), p.insns, "{name}");
        assert!(!p.line_table.is_empty(), "{name}: empty line table");
        assert!(
            p.line_table.windows(2).all(|w| w[0].insn <= w[1].insn),
            "{name}: line table unsorted"
        );
        assert!(p.name.len() <= 15, "{name}: program name {}", p.name);
        // Every map reference names an existing map.
        for i in &p.insns {
            if i.is_wide() && (i.src == 5 || i.src == 6) {
                assert!(
                    (i.imm as usize) < a.maps.len(),
                    "{name}: map index {}",
                    i.imm
                );
            }
        }
    }
    for (i, e) in a.events.iter().enumerate() {
        assert_eq!(e.id as usize, i);
    }
    assert!(a.map_with_role(&MapRole::Events).is_some());
}

#[test]
fn programs_compile_and_round_trip() {
    let catalog = MemoryCatalog::sample();
    for (name, src) in PROGRAMS {
        let a = compile_source(src, &catalog, &options()).unwrap_or_else(|d| {
            panic!("{name}: {}", nexus_lang::render_all(&d, "test", src));
        });
        check_artifact(name, &a);
    }
}

#[test]
fn printf_schema_layout() {
    let src = r#"tracepoint:syscalls:sys_enter_openat { printf("%s %d %s\n", comm, pid, str(args.filename)); }"#;
    let a = compile_source(src, &MemoryCatalog::sample(), &options()).unwrap();
    let e = &a.events[0];
    let offs: Vec<u32> = e.fields.iter().map(|f| f.offset).collect();
    assert_eq!(offs, vec![0, 16, 24]);
    assert_eq!(e.size, 88);
    assert!(
        matches!(&e.kind, nexus_compile::EventKind::Printf { format } if format == "%s %d %s\n")
    );
}

#[test]
fn scope_programs_are_generated() {
    let src = "tracepoint:syscalls:sys_enter_read { @ = count(); }";
    let opts = CompileOptions {
        scope: true,
        ..CompileOptions::default()
    };
    let a = compile_source(src, &MemoryCatalog::sample(), &opts).unwrap();
    let names: Vec<&str> = a.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["tp_0", "scope_fork", "scope_exit"]);
    assert!(a.map_with_role(&MapRole::Scope).is_some());
}

#[test]
fn asm_dump_names_helpers() {
    let a = compile_source(
        r#"BEGIN { printf("x\n"); }"#,
        &MemoryCatalog::sample(),
        &options(),
    )
    .unwrap();
    let asm = dump_asm(&a);
    assert!(asm.contains("ringbuf_reserve"), "{asm}");
    assert!(asm.contains("program begin_0"), "{asm}");
}

/// Semantic errors: (program, message fragment, the text the span covers).
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "BEGIN { prinft(\"x\"); }",
        "unknown function `prinft`",
        "prinft",
    ),
    ("BEGIN { @x = pdi; }", "unknown identifier `pdi`", "pdi"),
    (
        "BEGIN { printf(\"%d\\n\", $y); }",
        "variable `$y` is used before it is assigned",
        "$y",
    ),
    (
        "BEGIN { @a = 1; print(@b); }",
        "map `@b` is never assigned",
        "@b",
    ),
    (
        "tracepoint:syscalls:sys_enter_openat { @[args.filenme] = count(); }",
        "has no field `filenme`",
        "filenme",
    ),
    (
        "tracepoint:syscalls:sys_enter_opnat { }",
        "tracepoint `syscalls:sys_enter_opnat` not found",
        "tracepoint:syscalls:sys_enter_opnat",
    ),
    (
        "BEGIN { printf(\"%d %d\\n\", 1); }",
        "format has 2 conversions but 1 argument follow",
        "printf(\"%d %d\\n\", 1)",
    ),
    (
        "BEGIN { printf(\"%s\\n\", 1); }",
        "`%s` expects a string",
        "1",
    ),
    (
        "BEGIN { printf(\"%d\\n\", comm); }",
        "`%d` expects an integer",
        "comm",
    ),
    (
        "BEGIN { printf(\"%k\\n\", 1); }",
        "unknown conversion `%k`",
        "\"%k\\n\"",
    ),
    (
        "BEGIN { @x = count(); @x = 1; }",
        "`@x` is assigned int64 here but count() elsewhere",
        "@x",
    ),
    (
        "BEGIN { @x = count(); @y = @x + 1; }",
        "holds a count() aggregation, which cannot be read",
        "@x",
    ),
    (
        "BEGIN { @x[1] = 1; @x[1, 2] = 2; }",
        "is used with 2 keys here but 1 elsewhere",
        "@x[1, 2]",
    ),
    (
        "BEGIN { $x = 1; $x = \"a\"; }",
        "`$x` holds int64, cannot assign string[2]",
        "\"a\"",
    ),
    (
        "BEGIN { $x = comm + 1; }",
        "`+` cannot combine string[16] and int64",
        "comm + 1",
    ),
    (
        "BEGIN { $x = comm < \"a\"; }",
        "cannot combine",
        "comm < \"a\"",
    ),
    (
        "BEGIN { $x = arg0; }",
        "`arg0` is not available in BEGIN probes",
        "arg0",
    ),
    (
        "tracepoint:syscalls:sys_enter_read { $x = retval; }",
        "`retval` is not available in tracepoint probes",
        "retval",
    ),
    (
        "uprobe:libc:malloc { $x = args.size; }",
        "`args` is not available in uprobe probes",
        "args",
    ),
    (
        "BEGIN { $x = count(); }",
        "count() can only be assigned to a map",
        "count()",
    ),
    (
        "BEGIN { @x = lhist(1, 10, 0, 1); }",
        "lhist() needs min < max and step > 0",
        "lhist(1, 10, 0, 1)",
    ),
    (
        "BEGIN { @x = hist(comm); }",
        "hist() needs an integer, not string[16]",
        "comm",
    ),
    (
        "BEGIN { $x = str(1, 0); }",
        "str() length must be an integer literal",
        "0",
    ),
    (
        "BEGIN { $x = (struct task *)1; }",
        "cannot cast to `struct task *`",
        "struct task *",
    ),
    (
        "kprobe:do_sys_openat2 { }",
        "kprobes are not available on this kernel",
        "kprobe:do_sys_openat2",
    ),
    (
        "uprobe:libnope:malloc { }",
        "binary or library `libnope` not found",
        "uprobe:libnope:malloc",
    ),
    (
        "uprobe:libc:mallco { }",
        "function in /usr/lib/x86_64-linux-gnu/libc.so.6: `mallco` not found",
        "uprobe:libc:mallco",
    ),
    (
        "software:cpu-clocks:1 { }",
        "unknown software event `cpu-clocks`",
        "software:cpu-clocks:1",
    ),
    (
        "BEGIN { clear(@x[1]); }",
        "clear() takes a map without keys",
        "clear(@x[1])",
    ),
    (
        "BEGIN { printf(\"%d\\n\", $2); }",
        "positional parameter $2 was not given",
        "$2",
    ),
    (
        "BEGIN { break; }",
        "`break`/`continue` outside a loop",
        "break",
    ),
    (
        "BEGIN { $x = *1; }",
        "the `*` operator is not supported yet",
        "*1",
    ),
    (
        "BEGIN { @x = 1; @x = comm; }",
        "`@x` holds string[16] here but int64 elsewhere",
        "@x",
    ),
    (
        "BEGIN { $x = ksym(comm); }",
        "ksym() needs an address",
        "comm",
    ),
    (
        "BEGIN { $x = kaddr(\"x\"); }",
        "function `kaddr` is not supported by bpfnexus yet",
        "kaddr",
    ),
    (
        "BEGIN { printf(\"%d\\n\", printf(\"x\")); }",
        "printf() has no value",
        "printf(\"x\")",
    ),
];

#[test]
fn semantic_errors_have_messages_and_spans() {
    let catalog = MemoryCatalog::sample();
    for (src, message, covered) in ERRORS {
        let diags = match compile_source(src, &catalog, &options()) {
            Ok(_) => panic!("{src}: compiled, expected `{message}`"),
            Err(d) => d,
        };
        let d = diags
            .iter()
            .find(|d| d.message.contains(message))
            .unwrap_or_else(|| {
                panic!(
                    "{src}: no diagnostic containing `{message}`:\n{}",
                    nexus_lang::render_all(&diags, "test", src)
                )
            });
        assert_eq!(d.span.text(src), *covered, "{src}: span of `{message}`");
    }
}

#[test]
fn did_you_mean_hints() {
    let catalog = MemoryCatalog::sample();
    for (src, hint) in [
        ("BEGIN { prinft(\"x\"); }", "did you mean `printf`?"),
        (
            "tracepoint:syscalls:sys_enter_openat { @[args.filenme] = count(); }",
            "did you mean `args.filename`?",
        ),
        ("BEGIN { @abc = 1; print(@abd); }", "did you mean `@abc`?"),
        (
            "tracepoint:syscalls:sys_enter_opnat { }",
            "did you mean `syscalls:sys_enter_openat`?",
        ),
        (
            "BEGIN { $x = 1; printf(\"%d\\n\", $z + $xx); }",
            "did you mean `$x`?",
        ),
    ] {
        let diags = compile_source(src, &catalog, &options()).unwrap_err();
        assert!(
            diags.iter().any(|d| d.hint.as_deref() == Some(hint)),
            "{src}: no hint `{hint}`:\n{}",
            nexus_lang::render_all(&diags, "test", src)
        );
    }
}

/// Whether BPF programs can be loaded here; `Err` says why not.
fn kernel_available() -> Result<(), String> {
    let spec = MapSpec::new("probe", nexus_insn::MapType::Array, 4, 8, 1);
    Map::create(&spec).map(|_| ()).map_err(|e| e.to_string())
}

fn skip_or_fail(why: &str) {
    if std::env::var("BPFNEXUS_REQUIRE_KERNEL").as_deref() == Ok("1") {
        panic!("kernel test required but skipped: {why}");
    }
    eprintln!("skipping kernel verifier test: {why}");
}

fn create_maps(a: &Artifact) -> Vec<Map> {
    a.maps
        .iter()
        .map(|m| {
            let spec = MapSpec {
                name: m.name.clone(),
                map_type: m.kind.map_type(),
                key_size: m.key_size,
                value_size: m.value_size,
                max_entries: m.max_entries,
                flags: m.flags,
            };
            Map::create(&spec).unwrap_or_else(|e| panic!("map {}: {e}", m.name))
        })
        .collect()
}

#[test]
fn programs_pass_the_kernel_verifier() {
    if let Err(why) = kernel_available() {
        return skip_or_fail(&why);
    }
    let catalog = KernelCatalog;
    if catalog
        .tracepoint_fields("syscalls", "sys_enter_openat")
        .ok()
        .flatten()
        .is_none()
    {
        return skip_or_fail("tracefs has no syscalls:sys_enter_openat format");
    }
    let opts = CompileOptions {
        scope: true,
        ..options()
    };
    let mut failures = Vec::new();
    let mut loaded = 0;
    for (name, src) in PROGRAMS {
        let a = compile_source(src, &catalog, &opts).unwrap_or_else(|d| {
            panic!("{name}: {}", nexus_lang::render_all(&d, "test", src));
        });
        check_artifact(name, &a);
        let maps = create_maps(&a);
        for p in &a.programs {
            let mut spec = ProgramSpec::new(&p.name, p.prog_type.prog_type(), &p.insns);
            spec.expected_attach_type = p.prog_type.attach_type();
            match Program::load(&spec, &maps) {
                Ok(_) => loaded += 1,
                Err(e) => {
                    let log = e.verifier_log().unwrap_or("");
                    let at = verifier_pc(log)
                        .and_then(|pc| p.line_for(pc))
                        .map(|l| {
                            format!(
                                "at line {} ({}): `{}`",
                                l.line,
                                l.what,
                                l.span_text(&a.source)
                            )
                        })
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(12).collect();
                    failures.push(format!(
                        "{name} / {} {at}: {e}\n{}\n{}",
                        p.name,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                        nexus_insn::disassemble(&p.insns)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("{loaded} programs passed the verifier");
    assert!(loaded > PROGRAMS.len(), "only {loaded} programs loaded");
}
