//! A simulated hypervisor instrumented with static tracepoints, traced by
//! hand-assembled eBPF programs running in nexus-vm.
//!
//! Run: `cargo run -p nexus-vm --example hypervisor [-- SEED]`
//!
//! The simulation (VM create/boot/shutdown, vCPU run loops with VM exits,
//! hypercalls, page faults, IRQ injection) is driven by a seeded generator
//! and a mock clock, so the same seed prints the same output.

use nexus_insn::{AluOp, AtomicOp, Helper, Insn, JmpCond, MapType, Reg, Size, Src};
use nexus_vm::tracepoint::{TracePoint, TracePointRegistry};
use nexus_vm::{
    FieldType, MapSpec, MockPlatform, TaskInfo, Vm, format_log2_hist, progs, trace_point,
};
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// axebpf's hypervisor helper ids.
const HELPER_GET_CURRENT_VM_ID: i32 = 100;
const HELPER_GET_CURRENT_VCPU_ID: i32 = 101;
const HELPER_GET_EXIT_REASON: i32 = 102;

/// VMX basic exit reasons the simulated guests produce, with weights.
const EXIT_REASONS: &[(u32, &str, u32)] = &[
    (1, "EXTERNAL_INTERRUPT", 20),
    (10, "CPUID", 6),
    (12, "HLT", 14),
    (18, "VMCALL", 8),
    (30, "IO_INSTRUCTION", 25),
    (31, "RDMSR", 4),
    (32, "WRMSR", 5),
    (48, "EPT_VIOLATION", 18),
];

/// xorshift64: small, seedable, good enough to drive a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn exit_reason(&mut self) -> u32 {
        let total: u32 = EXIT_REASONS.iter().map(|r| r.2).sum();
        let mut pick = self.below(u64::from(total)) as u32;
        for &(code, _, w) in EXIT_REASONS {
            if pick < w {
                return code;
            }
            pick -= w;
        }
        EXIT_REASONS[0].0
    }
}

/// What the hypervisor helpers report: the vCPU currently being handled.
#[derive(Default)]
struct Current {
    vm_id: AtomicU64,
    vcpu_id: AtomicU64,
    exit_reason: AtomicU64,
}

struct Tracepoints {
    vm_create: Arc<TracePoint>,
    vm_boot: Arc<TracePoint>,
    vm_shutdown: Arc<TracePoint>,
    vcpu_run_enter: Arc<TracePoint>,
    vcpu_run_exit: Arc<TracePoint>,
    hypercall: Arc<TracePoint>,
    page_fault: Arc<TracePoint>,
    irq_inject: Arc<TracePoint>,
}

fn declare(reg: &TracePointRegistry) -> Result<Tracepoints, Box<dyn Error>> {
    use FieldType::*;
    Ok(Tracepoints {
        vm_create: reg.declare(
            "vmm:vm_create",
            &[("vm_id", U32), ("vcpus", U32), ("mem_mb", U64)],
        )?,
        vm_boot: reg.declare("vmm:vm_boot", &[("vm_id", U32)])?,
        vm_shutdown: reg.declare("vmm:vm_shutdown", &[("vm_id", U32), ("exits", U64)])?,
        vcpu_run_enter: reg.declare("vmm:vcpu_run_enter", &[("vm_id", U32), ("vcpu_id", U32)])?,
        vcpu_run_exit: reg.declare(
            "vmm:vcpu_run_exit",
            &[("vm_id", U32), ("vcpu_id", U32), ("reason", U32)],
        )?,
        hypercall: reg.declare(
            "vmm:hypercall",
            &[("vm_id", U32), ("vcpu_id", U32), ("nr", U64), ("arg0", U64)],
        )?,
        page_fault: reg.declare(
            "vmm:page_fault",
            &[
                ("vm_id", U32),
                ("vcpu_id", U32),
                ("gpa", U64),
                ("write", U8),
            ],
        )?,
        irq_inject: reg.declare(
            "vmm:irq_inject",
            &[("vm_id", U32), ("vcpu_id", U32), ("irq", U32)],
        )?,
    })
}

/// `@exits[get_exit_reason()] = count()` — the key comes from helper 102.
fn exit_counter(map: i32) -> Vec<Insn> {
    progs::count_by_key(
        map,
        &[
            Insn::call(HELPER_GET_EXIT_REASON),
            Insn::mov64(Reg::R6, Reg::R0),
        ],
    )
}

/// On `vmm:page_fault`: if `write` is set, `@writes[vcpu]++` in an array
/// map indexed by `get_current_vcpu_id()` (bounded to the array).
fn write_fault_counter(map: i32, write_off: i16, entries: i32) -> Vec<Insn> {
    let mut p = vec![
        Insn::ldx(Size::B, Reg::R6, Reg::R1, write_off),
        Insn::jmp(JmpCond::Eq, Reg::R6, Src::Imm(0), 12),
        Insn::call(HELPER_GET_CURRENT_VCPU_ID),
        Insn::jmp(JmpCond::Ge, Reg::R0, Src::Imm(entries), 10),
        Insn::stx(Size::W, Reg::FP, -4, Reg::R0),
    ];
    p.extend(Insn::ld_map_fd(Reg::R1, map));
    p.extend([
        Insn::mov64(Reg::R2, Reg::FP),
        Insn::alu64(AluOp::Add, Reg::R2, Src::Imm(-4)),
        Insn::call_helper(Helper::MapLookupElem),
        Insn::jmp(JmpCond::Eq, Reg::R0, Src::Imm(0), 2),
        Insn::mov64_imm(Reg::R1, 1),
        Insn::atomic(
            Size::DW,
            AtomicOp::Add { fetch: false },
            Reg::R0,
            0,
            Reg::R1,
        ),
        Insn::mov64_imm(Reg::R0, 0),
        Insn::exit(),
    ]);
    p
}

/// Print a hash map of u64 → u64 the way bpftrace prints `@name[key]: value`,
/// sorted by value ascending.
fn print_map(vm: &Vm, index: usize, name: &str) -> Result<(), Box<dyn Error>> {
    let mut rows: Vec<(u64, u64)> = Vec::new();
    for (k, v) in vm.map(index)?.entries() {
        let k = u64::from_le_bytes(k.get(..8).ok_or("short key")?.try_into()?);
        let v = u64::from_le_bytes(v.get(..8).ok_or("short value")?.try_into()?);
        rows.push((k, v));
    }
    rows.sort_by_key(|&(k, v)| (v, k));
    for (k, v) in rows {
        println!("@{name}[{k}]: {v}");
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let seed: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2026);
    let mut rng = Rng(seed | 1);
    let platform = Arc::new(MockPlatform::new(4));
    platform.set_task(TaskInfo::new(1, 1, 0, 0, "axvisor"));

    // Tracepoints the hypervisor declares; all start disabled.
    let registry = TracePointRegistry::new();
    let tp = declare(&registry)?;

    // The tracing side: one VM with the maps, the hypervisor helpers, programs.
    const EXITS: usize = 0;
    const HCALLS: usize = 1;
    const WRITE_FAULTS: usize = 2;
    let maps = [
        MapSpec::new("exits", MapType::Hash, 8, 8, 64),
        MapSpec::new("hypercalls", MapType::Hash, 8, 8, 64),
        MapSpec::new("write_faults", MapType::Array, 4, 8, 8),
    ];
    let mut vm = Vm::with_platform(&maps, platform.clone())?;
    let current = Arc::new(Current::default());
    for (id, name, field) in [
        (HELPER_GET_CURRENT_VM_ID, "get_current_vm_id", 0),
        (HELPER_GET_CURRENT_VCPU_ID, "get_current_vcpu_id", 1),
        (HELPER_GET_EXIT_REASON, "get_exit_reason", 2),
    ] {
        let cur = Arc::clone(&current);
        vm.register_helper(id, name, move |_, _| {
            let c: &AtomicU64 = match field {
                0 => &cur.vm_id,
                1 => &cur.vcpu_id,
                _ => &cur.exit_reason,
            };
            c.load(Ordering::Relaxed)
        })?;
    }
    let exit_prog = vm.load(&exit_counter(EXITS as i32))?;
    let hcall_prog = vm.load(&progs::count_by_key(
        HCALLS as i32,
        &[
            Insn::call(HELPER_GET_CURRENT_VM_ID),
            Insn::mov64(Reg::R6, Reg::R0),
        ],
    ))?;
    let write_off = tp
        .page_fault
        .fields()
        .iter()
        .find(|f| f.name == "write")
        .map_or(16, |f| f.offset) as i16;
    let pf_prog = vm.load(&write_fault_counter(WRITE_FAULTS as i32, write_off, 8))?;
    let vm = Arc::new(Mutex::new(vm));

    registry.attach("vmm:vcpu_run_exit", Arc::clone(&vm), exit_prog)?;
    registry.attach("vmm:hypercall", Arc::clone(&vm), hcall_prog)?;
    registry.attach("vmm:page_fault", Arc::clone(&vm), pf_prog)?;
    for name in [
        "vmm:vm_create",
        "vmm:vm_boot",
        "vmm:vm_shutdown",
        "vmm:vcpu_run_exit",
        "vmm:hypercall",
        "vmm:page_fault",
        "vmm:irq_inject",
    ] {
        registry.enable(name)?;
    }
    // vmm:vcpu_run_enter stays disabled: it costs one relaxed load per entry.

    println!("Tracepoints:");
    for info in registry.list() {
        let fields: Vec<String> = info
            .fields
            .iter()
            .map(|f| format!("{} {}@{}", f.ty.name(), f.name, f.offset))
            .collect();
        println!(
            "  {:<20} {:<8} attached={} ({})",
            info.name,
            if info.enabled { "enabled" } else { "disabled" },
            info.attached,
            fields.join(", ")
        );
    }

    // The simulation: 3 VMs with 2 vCPUs each, 400 run/exit rounds per vCPU.
    let mut total_exits = 0u64;
    for vm_id in 1..=3u32 {
        let vcpus = 2u32;
        trace_point!(tp.vm_create, vm_id, vcpus, 512 * u64::from(vm_id));
        trace_point!(tp.vm_boot, vm_id);
        let mut vm_exits = 0u64;
        for round in 0..400 {
            for vcpu in 0..vcpus {
                platform.set_cpu(vcpu % 4);
                current.vm_id.store(u64::from(vm_id), Ordering::Relaxed);
                current.vcpu_id.store(u64::from(vcpu), Ordering::Relaxed);
                trace_point!(tp.vcpu_run_enter, vm_id, vcpu);
                // Guest runs for a while (log-uniform 200 ns .. ~200 us).
                let run_ns = 200u64 << rng.below(10);
                let run_ns = run_ns + rng.below(run_ns);
                platform.advance_time(run_ns);
                let reason = rng.exit_reason();
                current
                    .exit_reason
                    .store(u64::from(reason), Ordering::Relaxed);
                tp.vcpu_run_exit.fire_with_latency(
                    &[u64::from(vm_id), u64::from(vcpu), u64::from(reason)],
                    run_ns,
                );
                vm_exits += 1;
                match reason {
                    18 => {
                        let nr = rng.below(4);
                        trace_point!(tp.hypercall, vm_id, vcpu, nr, round);
                    }
                    48 => {
                        let gpa = rng.below(1 << 30) & !0xfff;
                        let write = rng.below(3) == 0;
                        let handle_ns = 500 + rng.below(4000);
                        platform.advance_time(handle_ns);
                        tp.page_fault.fire_with_latency(
                            &[u64::from(vm_id), u64::from(vcpu), gpa, u64::from(write)],
                            handle_ns,
                        );
                    }
                    1 => {
                        let irq = 32 + rng.below(8) as u32;
                        trace_point!(tp.irq_inject, vm_id, vcpu, irq);
                    }
                    _ => {}
                }
            }
        }
        trace_point!(tp.vm_shutdown, vm_id, vm_exits);
        total_exits += vm_exits;
    }
    println!("\nSimulated 3 VMs, {total_exits} VM exits (seed {seed})\n");

    let vm = vm.lock().map_err(|_| "VM lock poisoned")?;
    print_map(&vm, EXITS, "exits")?;
    let legend: Vec<String> = EXIT_REASONS
        .iter()
        .map(|(c, n, _)| format!("{c}={n}"))
        .collect();
    println!("  (reasons: {})\n", legend.join(" "));
    print_map(&vm, HCALLS, "hypercalls")?;
    println!();
    let writes = vm.map(WRITE_FAULTS)?;
    for vcpu in 0u32..2 {
        let v = writes.lookup(&vcpu.to_le_bytes())?.ok_or("array slot")?;
        println!(
            "@write_faults[{vcpu}]: {}",
            u64::from_le_bytes(v[..8].try_into()?)
        );
    }

    println!("\nTracepoint statistics:");
    println!(
        "  {:<20} {:>7} {:>8} {:>9} {:>9} {:>9} {:>6}",
        "tracepoint", "hits", "samples", "min ns", "avg ns", "max ns", "errors"
    );
    for info in registry.list() {
        let s = registry.get(&info.name)?.stats();
        println!(
            "  {:<20} {:>7} {:>8} {:>9} {:>9} {:>9} {:>6}",
            info.name,
            s.hits,
            s.samples,
            s.min_ns,
            s.mean_ns(),
            s.max_ns,
            s.errors
        );
    }
    println!("\n@guest_run_ns (vmm:vcpu_run_exit):");
    print!("{}", format_log2_hist(&tp.vcpu_run_exit.stats().histogram));
    println!("\n@page_fault_ns (vmm:page_fault):");
    print!("{}", format_log2_hist(&tp.page_fault.stats().histogram));
    Ok(())
}
