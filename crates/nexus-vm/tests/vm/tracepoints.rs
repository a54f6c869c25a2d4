//! Static tracepoints: declaration, listing, enable/disable, attach/detach,
//! context layout and statistics.

use crate::vm;
use nexus_insn::{Insn, MapType, Reg, Size};
use nexus_vm::tracepoint::{FieldSpec, TracePointError, TracePointRegistry};
use nexus_vm::{FieldType, MapSpec, progs, trace_point};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn declare_list_and_layout() {
    let reg = TracePointRegistry::new();
    let tp = reg
        .declare(
            "vmm:vcpu_run_exit",
            &[
                ("vm_id", FieldType::U16),
                ("reason", FieldType::U32),
                ("gpa", FieldType::U64),
            ],
        )
        .expect("declare");
    let offs: Vec<(u32, u32)> = tp.fields().iter().map(|f| (f.offset, f.size)).collect();
    assert_eq!(offs, vec![(0, 2), (4, 4), (8, 8)]);
    assert_eq!(tp.context_size(), 16);
    assert_eq!((tp.category(), tp.name()), ("vmm", "vcpu_run_exit"));
    reg.declare("vmm:hypercall", &[]).expect("declare");
    assert!(matches!(
        reg.declare("vmm:hypercall", &[]),
        Err(TracePointError::Duplicate(_))
    ));
    assert!(matches!(
        reg.declare("nocategory", &[]),
        Err(TracePointError::BadName(_))
    ));
    let names: Vec<String> = reg.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, vec!["vmm:hypercall", "vmm:vcpu_run_exit"]);
    let overlap = vec![
        FieldSpec {
            name: "a".into(),
            ty: FieldType::U64,
            offset: 0,
            size: 8,
        },
        FieldSpec {
            name: "b".into(),
            ty: FieldType::U32,
            offset: 4,
            size: 4,
        },
    ];
    let e = reg
        .declare_with_layout("x:y", overlap)
        .expect_err("overlap");
    assert!(e.to_string().contains("overlaps field `a`"), "{e}");
}

#[test]
fn disabled_tracepoints_do_not_evaluate_arguments() {
    let reg = TracePointRegistry::new();
    let tp = reg
        .declare("app:op", &[("x", FieldType::U64)])
        .expect("declare");
    let evaluated = AtomicU32::new(0);
    let arg = || {
        evaluated.fetch_add(1, Ordering::Relaxed);
        5u64
    };
    trace_point!(tp, arg());
    assert_eq!(evaluated.load(Ordering::Relaxed), 0);
    assert_eq!(tp.stats().hits, 0);
    reg.enable("app:op").expect("enable");
    trace_point!(tp, arg());
    assert_eq!(evaluated.load(Ordering::Relaxed), 1);
    assert_eq!(tp.stats().hits, 1);
    reg.disable("app:op").expect("disable");
    trace_point!(tp, arg());
    assert_eq!(tp.stats().hits, 1);
    assert!(reg.enable("app:nope").is_err());
}

#[test]
fn attached_programs_see_the_laid_out_context() {
    let reg = TracePointRegistry::new();
    let tp = reg
        .declare(
            "vmm:vcpu_run_exit",
            &[("vcpu", FieldType::U8), ("reason", FieldType::U32)],
        )
        .expect("declare");
    let (mut vm, _) = vm(&[MapSpec::new("exits", MapType::Hash, 8, 8, 64)]);
    let prog = vm.load(&progs::count_by_u32_field(0, 4)).expect("loads");
    let vm = Arc::new(Mutex::new(vm));
    let id = reg
        .attach("vmm:vcpu_run_exit", Arc::clone(&vm), prog)
        .expect("attach");
    tp.enable();
    for reason in [12u32, 12, 30, 12] {
        trace_point!(tp, 0x1ff, reason);
    }
    tp.detach(id).expect("detach");
    trace_point!(tp, 0, 12);
    assert!(tp.detach(id).is_err());
    let vm = vm.lock().expect("lock");
    let m = vm.map(0).expect("map");
    assert_eq!(
        m.lookup(&12u64.to_le_bytes()).expect("ok"),
        Some(&3u64.to_le_bytes()[..])
    );
    assert_eq!(
        m.lookup(&30u64.to_le_bytes()).expect("ok"),
        Some(&1u64.to_le_bytes()[..])
    );
    assert_eq!(tp.stats().hits, 5);
}

#[test]
fn statistics_and_histogram() {
    let reg = TracePointRegistry::new();
    let tp = reg
        .declare("app:io", &[("bytes", FieldType::U32)])
        .expect("declare");
    tp.enable();
    for ns in [100u64, 300, 5000] {
        tp.fire_with_latency(&[1], ns);
    }
    tp.fire(&[1]);
    let s = tp.stats();
    assert_eq!(
        (s.hits, s.samples, s.total_ns, s.min_ns, s.max_ns),
        (4, 3, 5400, 100, 5000)
    );
    assert_eq!(s.mean_ns(), 1800);
    assert_eq!(s.histogram[7], 1, "100 is in [64, 128)");
    assert_eq!(s.histogram[9], 1, "300 is in [256, 512)");
    assert_eq!(s.histogram[13], 1, "5000 is in [4K, 8K)");
    let text = nexus_vm::format_log2_hist(&s.histogram);
    assert!(text.contains("[4K, 8K)"), "{text}");
    tp.reset_stats();
    assert_eq!(tp.stats().hits, 0);
    assert_eq!(tp.stats().min_ns, 0);
}

#[test]
fn faulting_programs_are_counted_not_fatal() {
    let reg = TracePointRegistry::new();
    let tp = reg
        .declare("app:bad", &[("x", FieldType::U32)])
        .expect("declare");
    let (mut vm, _) = vm(&[]);
    // Reads past the 8-byte context.
    let prog = vm
        .load(&[Insn::ldx(Size::DW, Reg::R0, Reg::R1, 8), Insn::exit()])
        .expect("loads");
    tp.attach(Arc::new(Mutex::new(vm)), prog);
    tp.set_timing(true);
    tp.enable();
    tp.fire(&[1]);
    let s = tp.stats();
    assert_eq!((s.hits, s.errors, s.samples), (1, 1, 1));
    assert!(
        tp.last_error()
            .expect("recorded")
            .contains("outside the context")
    );
}

#[test]
fn concurrent_fires_are_all_counted() {
    let reg = TracePointRegistry::new();
    let tp = reg
        .declare("app:tick", &[("cpu", FieldType::U32)])
        .expect("declare");
    let (mut vm, _) = vm(&[MapSpec::new("ticks", MapType::Hash, 8, 8, 8)]);
    let prog = vm.load(&progs::count_by_u32_field(0, 0)).expect("loads");
    let vm = Arc::new(Mutex::new(vm));
    tp.attach(Arc::clone(&vm), prog);
    tp.enable();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let tp = &tp;
            s.spawn(move || {
                for _ in 0..1000 {
                    trace_point!(tp, t % 2);
                }
            });
        }
    });
    let vm = vm.lock().expect("lock");
    let m = vm.map(0).expect("map");
    for key in 0u64..2 {
        assert_eq!(
            m.lookup(&key.to_le_bytes()).expect("ok"),
            Some(&2000u64.to_le_bytes()[..])
        );
    }
    assert_eq!(tp.stats().hits, 4000);
}

#[test]
fn string_fields_are_copied_nul_padded() {
    use nexus_vm::TraceArg;
    let reg = TracePointRegistry::new();
    let tp = reg
        .declare(
            "app:open",
            &[
                ("flags", FieldType::U8),
                ("path", FieldType::Str(8)),
                ("mode", FieldType::U32),
            ],
        )
        .expect("declare");
    // Strings are byte-aligned; the u32 after them is naturally aligned.
    let layout: Vec<(String, u32, u32)> = tp
        .fields()
        .iter()
        .map(|f| (f.ty.name(), f.offset, f.size))
        .collect();
    assert_eq!(
        layout,
        vec![
            ("u8".to_string(), 0, 1),
            ("char[8]".to_string(), 1, 8),
            ("u32".to_string(), 12, 4)
        ]
    );
    // The program copies the 16-byte context into an 16-byte array map value.
    let mut vm = nexus_vm::Vm::new(&[MapSpec::new("ctx", MapType::Array, 4, 16, 1)]).expect("vm");
    let mut p = vec![
        Insn::mov64(Reg::R6, Reg::R1),
        Insn::st(Size::W, Reg::FP, -4, 0),
    ];
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    p.extend([
        Insn::mov64(Reg::R2, Reg::FP),
        Insn::alu64(nexus_insn::AluOp::Add, Reg::R2, (-4).into()),
        Insn::call_helper(nexus_insn::Helper::MapLookupElem),
        Insn::jmp(nexus_insn::JmpCond::Eq, Reg::R0, 0.into(), 4),
        Insn::ldx(Size::DW, Reg::R1, Reg::R6, 0),
        Insn::stx(Size::DW, Reg::R0, 0, Reg::R1),
        Insn::ldx(Size::DW, Reg::R1, Reg::R6, 8),
        Insn::stx(Size::DW, Reg::R0, 8, Reg::R1),
        Insn::mov64_imm(Reg::R0, 0),
        Insn::exit(),
    ]);
    let prog = vm.load(&p).expect("loads");
    let vm = Arc::new(Mutex::new(vm));
    reg.attach("app:open", Arc::clone(&vm), prog)
        .expect("attach");
    tp.fire_args(
        &[
            TraceArg::Int(3),
            TraceArg::Str(b"/etc/passwd"),
            TraceArg::Int(0o644),
        ],
        None,
    );
    assert_eq!(tp.stats().hits, 0, "disabled: nothing runs");
    tp.enable();
    tp.fire_args(
        &[
            TraceArg::Int(3),
            TraceArg::Str(b"/etc/passwd"),
            TraceArg::Int(0o644),
        ],
        None,
    );
    let read = |vm: &Arc<Mutex<nexus_vm::Vm>>| {
        let vm = vm.lock().expect("lock");
        vm.map(0)
            .expect("map")
            .lookup(&0u32.to_le_bytes())
            .expect("lookup")
            .expect("array slot")
            .to_vec()
    };
    let v = read(&vm);
    assert_eq!(v[0], 3);
    assert_eq!(
        &v[1..9],
        b"/etc/pas",
        "cut to the field, not NUL-terminated"
    );
    assert_eq!(u32::from_le_bytes(v[12..16].try_into().expect("4")), 0o644);
    // A short string is NUL-padded; integer-only firing leaves it empty.
    tp.fire_args(&[TraceArg::Int(1), TraceArg::Str(b"/tmp")], None);
    assert_eq!(&read(&vm)[1..9], b"/tmp\0\0\0\0");
    tp.fire(&[2, 99, 7]);
    let v = read(&vm);
    assert_eq!((v[0], &v[1..9], v[12]), (2, &[0u8; 8][..], 7));
}
