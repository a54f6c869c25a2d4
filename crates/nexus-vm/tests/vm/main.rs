//! Integration tests of nexus-vm: one binary, one module per area.

mod asm;
mod conformance;
mod faults;
mod helpers;
mod insns;
mod maps;
mod tracepoints;

use nexus_insn::{Insn, Reg};
use nexus_vm::{MapSpec, MockPlatform, Vm, VmError};
use std::sync::Arc;

/// A VM on a mock platform with 2 CPUs.
pub fn vm(maps: &[MapSpec]) -> (Vm, Arc<MockPlatform>) {
    let p = Arc::new(MockPlatform::new(2));
    let vm = Vm::with_platform(maps, p.clone()).expect("maps are valid");
    (vm, p)
}

/// Run `prog` with `mem` as a writable context; returns r0 or the error.
pub fn try_run(prog: &[Insn], mem: &mut [u8]) -> Result<u64, VmError> {
    let (mut vm, _) = vm(&[]);
    let id = vm.load(prog)?;
    vm.run(id, mem)
}

pub fn run(prog: &[Insn]) -> u64 {
    try_run(prog, &mut []).expect("program runs")
}

/// `prog` preceded by nothing and followed by `exit`.
pub fn ret(mut body: Vec<Insn>) -> u64 {
    body.push(Insn::exit());
    run(&body)
}

pub fn mov_imm64(r: Reg, v: u64) -> [Insn; 2] {
    Insn::ld_imm64(r, v)
}

/// `Vm::with_platform` without unwrapping, for tests of spec errors.
pub fn try_vm(maps: &[MapSpec]) -> Result<Vm, VmError> {
    Vm::with_platform(maps, Arc::new(MockPlatform::new(1)))
}
