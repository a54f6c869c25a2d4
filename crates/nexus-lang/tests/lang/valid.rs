//! Programs that must parse, round-trip through the printer, and have the
//! expected structure.

use nexus_lang::ast::{
    AttachTarget, BinOp, ExprKind, LValue, ProbeKind, Program, StmtKind, TimeUnit, UnaryOp,
    UserLocation,
};
use nexus_lang::{Span, dump_tree, parse, render_all};

/// The one-liners of bpftrace's tutorial (0.17 `args->` form and the newer
/// `args.` form), then one program per construct.
pub const PROGRAMS: &[&str] = &[
    // Tutorial one-liners.
    r#"BEGIN { printf("hello world\n"); }"#,
    r#"tracepoint:syscalls:sys_enter_openat { printf("%s %s\n", comm, str(args->filename)); }"#,
    r#"tracepoint:syscalls:sys_enter_openat { printf("%s %s\n", comm, str(args.filename)); }"#,
    "tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }",
    "tracepoint:syscalls:sys_exit_read /pid == 18644/ { @bytes = hist(args->ret); }",
    "tracepoint:syscalls:sys_exit_read /pid == 18644/ { @bytes = hist(args.ret); }",
    "kretprobe:vfs_read { @bytes = lhist(retval, 0, 2000, 200); }",
    "kprobe:vfs_read { @start[tid] = nsecs; } kretprobe:vfs_read /@start[tid]/ { @ns[comm] = hist(nsecs - @start[tid]); delete(@start[tid]); }",
    "kprobe:vfs_read { @start[tid] = nsecs; } kretprobe:vfs_read /@start[tid]/ { @ns[comm] = hist(nsecs - @start[tid]); delete(@start, tid); }",
    "tracepoint:sched:sched* { @[probe] = count(); } interval:s:5 { exit(); }",
    "profile:hz:99 { @[kstack] = count(); }",
    "tracepoint:sched:sched_switch { @[kstack] = count(); }",
    "tracepoint:block:block_rq_issue { @ = hist(args->bytes); }",
    "#include <linux/path.h>\n#include <linux/dcache.h>\n\nkprobe:vfs_open\n{\n\tprintf(\"open path: %s\\n\", str(((struct path *)arg0)->dentry->d_name.name));\n}\n",
    // Probe kinds and aliases.
    "BEGIN, END { exit() }",
    "t:syscalls:sys_enter_read, t:syscalls:sys_enter_wri?e { @[probe] = count() }",
    "rawtracepoint:sched_switch { @ = count() } rt:sys_enter { @x = count() }",
    "uprobe:/bin/bash:readline { @ = count() } u:libc:malloc { @s = sum(arg0) }",
    "uretprobe:/bin/bash:readline { printf(\"%s\\n\", str(retval)) } ur:libc:mall* { @ = count() }",
    "uprobe:/bin/bash:0x4a000 { @ = count() } uprobe:/lib/x.so:func+16 { @ = count() }",
    "kprobe:do_nanosleep+8 { @ = count() } k:vfs_* { @ = count() } kr:vfs_read { @ = count() }",
    "fentry:vfs_read { @ = count() } fexit:vfs_read { @ = retval } kfunc:ext4:ext4_sync_file { @ = count() } kretfunc:f { @ = count() } f:a { @ = count() } fr:a { @ = count() }",
    "profile:s:1 { } profile:ms:10 { } profile:us:100 { } p:hz:49 { }",
    "interval:s:1 { } interval:ms:100 { } i:us:500 { } interval:hz:2 { }",
    "software:cpu-clock:1000000 { @ = count() } s:faults:1 { @ = count() } hardware:cache-misses:1000000 { @ = count() } h:cycles { @ = count() }",
    // Statements.
    "BEGIN { $x = 1; $x += 2; $x -= 1; $x *= 3; $x /= 2; $x %= 5; $x &= 7; $x |= 8; $x ^= 1; $x <<= 2; $x >>= 1; }",
    "BEGIN { @m[1, \"a\"] = 2; @m[1, \"a\"] += 1; @ = 5; @n = 1 }",
    "BEGIN { $i++; $i--; ++$i; --$i; @c++; @c--; ++@c[1]; @c[2]--; }",
    "BEGIN { clear(@m); zero(@m); print(@m); print(@m, 10); print(@m, 10, 2); print(1 + 2); delete(@m[1]); delete(@x); }",
    "BEGIN { printf(\"%d %s %x\\n\", 1, \"a\", 2); time(\"%H:%M:%S\\n\"); system(\"ls\"); cat(\"/proc/loadavg\"); exit(); }",
    "BEGIN { if (1) { $a = 1 } else if ($b) { $a = 2 } else { $a = 3 } if (2) { } }",
    "BEGIN { unroll (5) { @i++ } unroll ($1) { @j++ } }",
    "BEGIN { $i = 0; while ($i < 10) { $i++; if ($i == 5) { break } if ($i == 3) { continue } } return; }",
    "BEGIN { @m[1] = 1; } END { for ($kv : @m) { printf(\"%d %d\\n\", $kv.0, $kv.1); } }",
    "BEGIN { { $x = 1; } ; ; }",
    // Expressions.
    "BEGIN { $x = 1 + 2 * 3 - 4 / 2 % 3; $y = 1 << 2 >> 1; $z = 1 < 2 && 3 <= 4 || 5 > 6 && 7 >= 8; $w = 1 == 1 != 0; $v = 1 | 2 ^ 3 & 4; }",
    "BEGIN { $x = !1; $y = ~1; $z = -1; $p = *$q; $a = &$b; $t = $x ? 1 : $y ? 2 : 3; $u = - -1; }",
    "BEGIN { $a = (uint8)1; $b = (int32)-1; $c = (struct task_struct *)curtask; $d = (uint8[4])$x; $e = (union u **)0; $f = (pid_t)$x; $g = (enum e)1; }",
    "kprobe:f { $t = (struct task_struct *)curtask; $p = $t->parent->pid; $n = $t->comm[0]; $s = args.x.y; $i = arg0[1][2]; }",
    "BEGIN { $n = 0x1F + 017 + 1_000_000 + 1e6 + 5u + 7ULL + 18446744073709551615; }",
    "BEGIN { printf(\"\\t\\\"q\\\"\\\\ \\101\\x42\\0\\n\"); }",
    "BEGIN { $t = (1, \"two\", (3, 4)); $u = $t.2.0; @m[(1, 2)] = 1; }",
    "BEGIN { printf(\"%d %d %s\\n\", $1, $#, str($2)); }",
    "BEGIN { @[pid, tid, uid, gid, comm, nsecs, elapsed, cpu, probe, func, arg0, arg9, sarg0, retval, cpid, curtask, cgroup, rand, kstack, ustack, username, ctx] = count(); }",
    "BEGIN { @a = str(arg0); @b = str(arg0, 8); @c = buf(arg0, 4); @d = ksym(arg0); @e = usym(arg0); @f = kstack(5); @g = ustack(perf, 3); @h = sum(1); @i = avg(1); @j = min(1); @k = max(1); @l = stats(1); @m = ntop(0); @n = kaddr(\"x\"); @o = uaddr(\"y\"); @p = reg(\"ip\"); signal(9); @q = sizeof(struct task_struct); @r = sizeof($x); @s = sizeof(uint32); @t = offsetof(struct x, y); }",
    "BEGIN { $x = enum_value; @v = VALUE_A | VALUE_B; }",
    "// comment\n/* block\ncomment */ BEGIN /* inside */ { // trailing\n $x = 1; /* mid */ }",
    "#!/usr/bin/env bpftrace\nBEGIN { exit() }",
    "kprobe:f/pid/{@=count()}",
    "BEGIN { @x = 1 / 2; } kprobe:f / @x / 2 > 0 / { }",
    "BEGIN { @x = count() }\n\n\n",
    "uprobe:\"/opt/my app/bin\":main { @ = count() }",
];

fn reparse(src: &str) -> Program {
    match parse(src) {
        Ok(p) => p,
        Err(d) => panic!("{src}\n{}", render_all(&d, "test", src)),
    }
}

#[test]
fn every_program_parses_and_round_trips() {
    for src in PROGRAMS {
        let mut first = reparse(src);
        let printed = first.to_string();
        let mut second = reparse(&printed);
        assert_eq!(
            printed,
            second.to_string(),
            "printing is not a fixed point for {src}"
        );
        assert_eq!(
            dump_tree(&first),
            dump_tree(&second),
            "tree changed through printing for {src}\nprinted:\n{printed}"
        );
        first.clear_spans();
        second.clear_spans();
        assert_eq!(first, second, "AST changed through printing for {src}");
    }
}

fn body_stmts(src: &str) -> Vec<StmtKind> {
    let p = reparse(src);
    p.probes[0]
        .body
        .stmts
        .iter()
        .map(|s| s.kind.clone())
        .collect()
}

fn assigned(src: &str) -> ExprKind {
    match body_stmts(src).into_iter().next() {
        Some(StmtKind::Assign { value, .. }) => value.kind,
        other => panic!("expected an assignment in {src}, got {other:?}"),
    }
}

#[test]
fn precedence_follows_c() {
    assert_eq!(
        dump_tree(&reparse("BEGIN { $x = 1 + 2 * 3 == 7 && !0 || 1 ? 4 : 5 }")),
        "Program\n BEGIN\n  =\n   variable: $x\n   ?:\n    ||\n     &&\n      ==\n       +\n        int: 1\n        *\n         int: 2\n         int: 3\n       int: 7\n      !\n       int: 0\n     int: 1\n    int: 4\n    int: 5\n"
    );
    // Left associativity.
    let ExprKind::Binary { op, lhs, .. } = assigned("BEGIN { $x = 8 - 4 - 2 }") else {
        panic!("binary expected")
    };
    assert_eq!(op, BinOp::Sub);
    assert!(matches!(lhs.kind, ExprKind::Binary { op: BinOp::Sub, .. }));
    // Bitwise operators: | below ^ below & below ==.
    assert_eq!(
        dump_tree(&reparse("BEGIN { $x = 1 | 2 ^ 3 & 4 == 4 }")),
        "Program\n BEGIN\n  =\n   variable: $x\n   |\n    int: 1\n    ^\n     int: 2\n     &\n      int: 3\n      ==\n       int: 4\n       int: 4\n"
    );
}

#[test]
fn casts_and_parenthesised_expressions() {
    let ExprKind::Cast { ty, expr } = assigned("BEGIN { $c = (struct task_struct *)curtask }")
    else {
        panic!("cast expected")
    };
    assert_eq!(ty.base, "struct task_struct");
    assert_eq!(ty.pointer_depth, 1);
    assert_eq!(ty.to_string(), "struct task_struct *");
    assert_eq!(expr.kind, ExprKind::Builtin("curtask".into()));
    // A builtin in parentheses is an expression, not a cast.
    assert!(matches!(
        assigned("BEGIN { $x = (pid) - 1 }"),
        ExprKind::Binary { op: BinOp::Sub, .. }
    ));
    // A known type in parentheses before `-` is a cast.
    assert!(matches!(
        assigned("BEGIN { $x = (uint8) -1 }"),
        ExprKind::Cast { .. }
    ));
    let ExprKind::Cast { ty, .. } = assigned("BEGIN { $x = (uint8[4])$y }") else {
        panic!("array cast expected")
    };
    assert_eq!(ty.array_len, Some(4));
}

#[test]
fn field_access_arrow_index_and_builtins() {
    let ExprKind::Field { expr, field, arrow } = assigned("BEGIN { $x = args->filename }") else {
        panic!("field expected")
    };
    assert!(arrow);
    assert_eq!(field.name, "filename");
    assert_eq!(expr.kind, ExprKind::Builtin("args".into()));
    assert!(matches!(
        assigned("BEGIN { $x = arg0[3] }"),
        ExprKind::Index { .. }
    ));
    assert_eq!(
        assigned("BEGIN { $x = arg12 }"),
        ExprKind::Builtin("arg12".into())
    );
    assert_eq!(
        assigned("BEGIN { $x = foo }"),
        ExprKind::Ident("foo".into())
    );
    assert_eq!(assigned("BEGIN { $x = $3 }"), ExprKind::Positional(3));
    assert_eq!(assigned("BEGIN { $x = $# }"), ExprKind::PositionalCount);
    assert_eq!(
        assigned("BEGIN { $x = -5 }"),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr: Box::new(nexus_lang::ast::Expr {
                kind: ExprKind::Int(5),
                span: Span::new(14, 15)
            })
        }
    );
}

#[test]
fn statements_have_the_documented_shapes() {
    let stmts =
        body_stmts("BEGIN { @m[1, 2] += 3; delete(@m, (1, 2)); $i++; if (1) {} else if (2) {} }");
    let StmtKind::Assign {
        target: LValue::Map(m),
        op,
        ..
    } = &stmts[0]
    else {
        panic!("map assignment expected")
    };
    assert_eq!(
        (m.name.as_str(), m.keys.len(), *op),
        ("m", 2, Some(BinOp::Add))
    );
    let StmtKind::Delete { map } = &stmts[1] else {
        panic!("delete expected")
    };
    assert_eq!(map.keys.len(), 2, "a tuple key is unfolded into keys");
    let StmtKind::Expr(e) = &stmts[2] else {
        panic!("expression statement expected")
    };
    assert!(matches!(
        e.kind,
        ExprKind::IncDec {
            increment: true,
            prefix: false,
            ..
        }
    ));
    let StmtKind::If {
        else_block: Some(b),
        ..
    } = &stmts[3]
    else {
        panic!("if/else expected")
    };
    assert!(matches!(b.stmts[0].kind, StmtKind::If { .. }));
}

#[test]
fn attach_points_are_structured_and_verbatim() {
    let p =
        reparse("t:syscalls:sys_enter_read, uprobe:/bin/bash:readline+4, interval:ms:100 /1/ { }");
    let aps = &p.probes[0].attach_points;
    assert_eq!(aps.len(), 3);
    assert_eq!(aps[0].kind, ProbeKind::Tracepoint);
    assert_eq!(aps[0].text, "t:syscalls:sys_enter_read");
    assert_eq!(aps[0].span, Span::new(0, 25));
    assert_eq!(aps[0].canonical(), "tracepoint:syscalls:sys_enter_read");
    assert_eq!(
        aps[1].target,
        AttachTarget::User {
            binary: "/bin/bash".into(),
            location: UserLocation::Symbol {
                name: "readline".into(),
                offset: Some(4)
            }
        }
    );
    assert_eq!(
        aps[2].target,
        AttachTarget::Timer {
            unit: TimeUnit::Ms,
            value: 100
        }
    );
    assert_eq!(p.probes[0].span.start, 0);
    assert!(p.probes[0].predicate.is_some());
}

#[test]
fn spans_point_at_the_source() {
    let src = "BEGIN { @x[pid] = count(); }";
    let p = reparse(src);
    let stmt = &p.probes[0].body.stmts[0];
    assert_eq!(stmt.span.text(src), "@x[pid] = count()");
    let StmtKind::Assign { target, value, .. } = &stmt.kind else {
        panic!("assignment expected")
    };
    assert_eq!(target.span().text(src), "@x[pid]");
    assert_eq!(value.span.text(src), "count()");
    assert_eq!(p.probes[0].body.span.text(src), "{ @x[pid] = count(); }");
}

#[test]
fn tree_dump_matches_bpftrace_style() {
    let p = reparse("kprobe:f /pid == 1/ { @[comm] = count(); $x = (uint8)arg0; }");
    assert_eq!(
        dump_tree(&p),
        "Program\n kprobe:f\n  predicate\n   ==\n    builtin: pid\n    int: 1\n  =\n   map: @\n    builtin: comm\n   call: count\n  =\n   variable: $x\n   (uint8)\n    builtin: arg0\n"
    );
}

#[test]
fn display_prints_readable_source() {
    let p = reparse("kprobe:f,kprobe:g/pid==1/{@[comm]=count();if($x){$y=-(1+2)*3}else{exit()}}");
    assert_eq!(
        p.to_string(),
        "kprobe:f,\nkprobe:g /pid == 1/ {\n    @[comm] = count();\n    if ($x) {\n        $y = -(1 + 2) * 3;\n    } else {\n        exit();\n    }\n}\n"
    );
}
