//! A simulated hypervisor instrumented with static tracepoints, traced by
//! hand-assembled eBPF programs running in nexus-vm.
//!
//! Run: `cargo run -p nexus-vm --example hypervisor_asm [-- SEED]`
//!
//! The simulation (VM create/boot/shutdown, vCPU run loops with VM exits,
//! hypercalls, page faults, IRQ injection) is driven by a seeded generator
//! and a mock clock, so the same seed prints the same output.
//!
//! The same simulation traced by a bpftrace program, compiled and attached
//! the way bpfnexus does it, is nexus-runtime's example:
//! `cargo run -p nexus-runtime --example hypervisor -- -e 'tracepoint:vmm:vcpu_run_exit { @[args.reason] = count(); }'`.

#[path = "common/hypervisor_sim.rs"]
mod sim;

use nexus_insn::{AluOp, AtomicOp, Helper, Insn, JmpCond, MapType, Reg, Size, Src};
use nexus_vm::tracepoint::TracePointRegistry;
use nexus_vm::{MapSpec, MockPlatform, TaskInfo, Vm, format_log2_hist, progs};
use sim::{EXIT_REASONS, TRACEPOINT_NAMES};
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// axebpf's hypervisor helper ids.
const HELPER_GET_CURRENT_VM_ID: i32 = 100;
const HELPER_GET_CURRENT_VCPU_ID: i32 = 101;
const HELPER_GET_EXIT_REASON: i32 = 102;

/// What the hypervisor helpers report: the vCPU currently being handled.
#[derive(Default)]
struct Current {
    vm_id: AtomicU64,
    vcpu_id: AtomicU64,
    exit_reason: AtomicU64,
}

/// Keeps the helpers' view and the mock platform in step with the simulation.
struct Host<'a> {
    current: &'a Current,
    platform: &'a MockPlatform,
}

impl sim::Host for Host<'_> {
    fn vcpu_scheduled(&self, vm_id: u32, vcpu: u32) {
        self.platform.set_cpu(vcpu % 4);
        self.current
            .vm_id
            .store(u64::from(vm_id), Ordering::Relaxed);
        self.current
            .vcpu_id
            .store(u64::from(vcpu), Ordering::Relaxed);
    }
    fn time_passed(&self, ns: u64) {
        self.platform.advance_time(ns);
    }
    fn exited(&self, reason: u32) {
        self.current
            .exit_reason
            .store(u64::from(reason), Ordering::Relaxed);
    }
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
    let platform = Arc::new(MockPlatform::new(4));
    platform.set_task(TaskInfo::new(1, 1, 0, 0, "axvisor"));

    // Tracepoints the hypervisor declares; all start disabled.
    let registry = TracePointRegistry::new();
    let tp = sim::declare(&registry)?;

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
    for name in TRACEPOINT_NAMES
        .iter()
        .filter(|n| **n != "vmm:vcpu_run_enter")
    {
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
    let summary = sim::simulate(
        &tp,
        seed,
        &Host {
            current: &current,
            platform: &platform,
        },
    );
    let total_exits = summary.exits.len();
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
