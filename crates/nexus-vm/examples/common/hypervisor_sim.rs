//! The simulated hypervisor shared by the examples (and the VM backend's
//! tests): 3 VMs × 2 vCPUs going through create, boot, run/exit rounds
//! (hypercalls, EPT page faults, IRQ injection) and shutdown, instrumented
//! with static tracepoints named after axebpf's. A seeded generator drives
//! it, so the same seed fires the same tracepoints with the same arguments.
//!
//! Included with `#[path]` by `examples/hypervisor_asm.rs` of nexus-vm and of
//! nexus-runtime; it is not an example of its own (no `main`).

// Each includer uses a different part of this module.
#![allow(dead_code)]

use nexus_vm::tracepoint::{TracePoint, TracePointError, TracePointRegistry};
use nexus_vm::{FieldType, TraceArg, trace_point};
use std::sync::Arc;

/// VMX basic exit reasons the simulated guests produce, with weights.
pub const EXIT_REASONS: &[(u32, &str, u32)] = &[
    (1, "EXTERNAL_INTERRUPT", 20),
    (10, "CPUID", 6),
    (12, "HLT", 14),
    (18, "VMCALL", 8),
    (30, "IO_INSTRUCTION", 25),
    (31, "RDMSR", 4),
    (32, "WRMSR", 5),
    (48, "EPT_VIOLATION", 18),
];

/// VMs simulated, vCPUs each, and run/exit rounds per vCPU.
pub const VMS: u32 = 3;
pub const VCPUS: u32 = 2;
pub const ROUNDS: u64 = 400;

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

/// The tracepoints the hypervisor declares.
pub struct Tracepoints {
    pub vm_create: Arc<TracePoint>,
    pub vm_boot: Arc<TracePoint>,
    pub vm_shutdown: Arc<TracePoint>,
    pub vcpu_run_enter: Arc<TracePoint>,
    pub vcpu_run_exit: Arc<TracePoint>,
    pub hypercall: Arc<TracePoint>,
    pub page_fault: Arc<TracePoint>,
    pub irq_inject: Arc<TracePoint>,
}

/// Every tracepoint name, for enabling them all.
pub const TRACEPOINT_NAMES: &[&str] = &[
    "vmm:vm_create",
    "vmm:vm_boot",
    "vmm:vm_shutdown",
    "vmm:vcpu_run_enter",
    "vmm:vcpu_run_exit",
    "vmm:hypercall",
    "vmm:page_fault",
    "vmm:irq_inject",
];

/// Declare the hypervisor's tracepoints in `reg` (all start disabled).
pub fn declare(reg: &TracePointRegistry) -> Result<Tracepoints, TracePointError> {
    use FieldType::*;
    Ok(Tracepoints {
        vm_create: reg.declare(
            "vmm:vm_create",
            &[
                ("vm_id", U32),
                ("vcpus", U32),
                ("mem_mb", U64),
                ("name", Str(16)),
            ],
        )?,
        vm_boot: reg.declare("vmm:vm_boot", &[("vm_id", U32)])?,
        vm_shutdown: reg.declare("vmm:vm_shutdown", &[("vm_id", U32), ("exits", U64)])?,
        vcpu_run_enter: reg.declare("vmm:vcpu_run_enter", &[("vm_id", U32), ("vcpu_id", U32)])?,
        vcpu_run_exit: reg.declare(
            "vmm:vcpu_run_exit",
            &[
                ("vm_id", U32),
                ("vcpu_id", U32),
                ("reason", U32),
                ("run_ns", U64),
            ],
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

/// What the embedding host learns as the simulation goes, so it can keep
/// its platform (CPU, clock) and its custom helpers current.
pub trait Host {
    /// `vcpu` of `vm_id` is about to run.
    fn vcpu_scheduled(&self, vm_id: u32, vcpu: u32) {
        let _ = (vm_id, vcpu);
    }
    /// Simulated time passed.
    fn time_passed(&self, ns: u64) {
        let _ = ns;
    }
    /// The running vCPU exited with `reason` (fired right before
    /// `vmm:vcpu_run_exit`).
    fn exited(&self, reason: u32) {
        let _ = reason;
    }
}

/// A host that needs to know nothing.
pub struct NoHost;

impl Host for NoHost {}

/// One VM exit as fired on `vmm:vcpu_run_exit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub vm_id: u32,
    pub vcpu_id: u32,
    pub reason: u32,
    pub run_ns: u64,
}

/// Everything the simulation fired, to check tracing results against.
#[derive(Debug, Default)]
pub struct Summary {
    /// Every `vmm:vcpu_run_exit`, in order.
    pub exits: Vec<Exit>,
    /// `(vm_id, nr)` of every `vmm:hypercall`.
    pub hypercalls: Vec<(u32, u64)>,
    /// `(vcpu_id, write)` of every `vmm:page_fault`.
    pub page_faults: Vec<(u32, bool)>,
}

/// Run the simulation with `seed`, firing `tp` (whichever are enabled).
pub fn simulate(tp: &Tracepoints, seed: u64, host: &dyn Host) -> Summary {
    let mut rng = Rng(seed | 1);
    let mut summary = Summary::default();
    for vm_id in 1..=VMS {
        let name = format!("guest-{vm_id}");
        tp.vm_create.fire_args(
            &[
                TraceArg::Int(u64::from(vm_id)),
                TraceArg::Int(u64::from(VCPUS)),
                TraceArg::Int(512 * u64::from(vm_id)),
                TraceArg::Str(name.as_bytes()),
            ],
            None,
        );
        trace_point!(tp.vm_boot, vm_id);
        let mut vm_exits = 0u64;
        for round in 0..ROUNDS {
            for vcpu in 0..VCPUS {
                host.vcpu_scheduled(vm_id, vcpu);
                trace_point!(tp.vcpu_run_enter, vm_id, vcpu);
                // Guest runs for a while (log-uniform 200 ns .. ~200 us).
                let run_ns = 200u64 << rng.below(10);
                let run_ns = run_ns + rng.below(run_ns);
                host.time_passed(run_ns);
                let reason = rng.exit_reason();
                host.exited(reason);
                tp.vcpu_run_exit.fire_with_latency(
                    &[u64::from(vm_id), u64::from(vcpu), u64::from(reason), run_ns],
                    run_ns,
                );
                summary.exits.push(Exit {
                    vm_id,
                    vcpu_id: vcpu,
                    reason,
                    run_ns,
                });
                vm_exits += 1;
                match reason {
                    18 => {
                        let nr = rng.below(4);
                        trace_point!(tp.hypercall, vm_id, vcpu, nr, round);
                        summary.hypercalls.push((vm_id, nr));
                    }
                    48 => {
                        let gpa = rng.below(1 << 30) & !0xfff;
                        let write = rng.below(3) == 0;
                        let handle_ns = 500 + rng.below(4000);
                        host.time_passed(handle_ns);
                        tp.page_fault.fire_with_latency(
                            &[u64::from(vm_id), u64::from(vcpu), gpa, u64::from(write)],
                            handle_ns,
                        );
                        summary.page_faults.push((vcpu, write));
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
    }
    summary
}
