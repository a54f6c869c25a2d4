//! A userspace eBPF runtime for bpfnexus: runs the same bytecode and map
//! specs the kernel backend loads, without root.
//!
//! * [`Vm`] holds maps (referenced by index, as the compiler's Artifact
//!   references them), loads programs through a **structural** verifier
//!   (see [`program`] — it is not the kernel verifier), and runs them in an
//!   interpreter whose region-tagged, bounds-checked memory and instruction
//!   budget make every run memory-safe and terminating.
//! * [`maps`] and [`ringbuf`] follow the kernel's semantics and record format.
//! * [`helpers`] receive a context (memory, maps, clock, CPU, task); hosts add
//!   their own helpers by id.
//! * [`tracepoint`] gives applications static tracepoints that cost one
//!   relaxed atomic load when disabled.
//! * [`exec_hex`] is the `bpfnexus vm exec` entry point.
//!
//! ```
//! use nexus_insn::MapType;
//! use nexus_vm::tracepoint::TracePointRegistry;
//! use nexus_vm::{FieldType, MapSpec, Vm, progs, trace_point};
//! use std::sync::{Arc, Mutex};
//!
//! let mut vm = Vm::new(&[MapSpec::new("by_status", MapType::Hash, 8, 8, 64)])?;
//! let prog = vm.load(&progs::count_by_u32_field(0, 0))?;
//! let vm = Arc::new(Mutex::new(vm));
//!
//! let reg = TracePointRegistry::new();
//! let tp = reg.declare("app:request", &[("status", FieldType::U32)])?;
//! reg.attach("app:request", Arc::clone(&vm), prog)?;
//! trace_point!(tp, 200); // disabled: not counted
//! reg.enable("app:request")?;
//! trace_point!(tp, 200);
//! trace_point!(tp, 404);
//! trace_point!(tp, 200);
//!
//! let vm = vm.lock().map_err(|_| "poisoned")?;
//! let hits = vm.map(0)?.lookup(&200u64.to_le_bytes())?;
//! assert_eq!(hits, Some(&2u64.to_le_bytes()[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod exec;
pub mod helpers;
pub mod hist;
pub mod interp;
pub mod maps;
pub mod memory;
pub mod platform;
pub mod program;
pub mod progs;
pub mod ringbuf;
pub mod tracepoint;
pub mod vm;

pub use exec::{exec_hex, parse_hex};
pub use helpers::{HelperContext, HelperError, HelperRegistry};
pub use hist::{Log2Histogram, format_log2_hist};
pub use interp::{Fault, RunError};
pub use maps::{BPF_ANY, BPF_EXIST, BPF_NOEXIST, Map, MapError, MapSpec};
pub use memory::MemFault;
pub use platform::{MockPlatform, Platform, RealPlatform, TaskInfo};
pub use program::{Program, VerifyError};
pub use ringbuf::RingBuf;
pub use tracepoint::{
    FieldSpec, FieldType, SharedVm, TraceArg, TracePoint, TracePointError, TracePointInfo,
    TracePointRegistry, TracePointStats,
};
pub use vm::{ProgramId, Vm, VmError};
