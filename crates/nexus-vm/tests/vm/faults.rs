//! Programs the verifier refuses and runs the interpreter stops, each with
//! a message naming the instruction and the reason.

use crate::{try_run, vm};
use nexus_insn::{AluOp, Insn, Reg, Size, Src};
use nexus_vm::{VerifyError, VmError};

fn rejected(prog: &[Insn]) -> String {
    let (mut vm, _) = vm(&[]);
    match vm.load(prog) {
        Err(e @ VmError::Verify(_)) => e.to_string(),
        other => panic!("expected a verifier error, got {other:?}"),
    }
}

#[test]
fn verifier_rejects_structural_errors() {
    assert!(matches!(
        vm(&[]).0.load(&[]),
        Err(VmError::Verify(VerifyError::Empty))
    ));
    let e = rejected(&[Insn::mov64_imm(Reg::FP, 1), Insn::exit()]);
    assert!(e.contains("insn 0") && e.contains("r10"), "{e}");
    let e = rejected(&[Insn::new(0xff, 0, 0, 0, 0), Insn::exit()]);
    assert!(e.contains("insn 0"), "{e}");
    let e = rejected(&[Insn::ja(5), Insn::exit()]);
    assert!(e.contains("outside the program"), "{e}");
    let e = rejected(&[Insn::mov64_imm(Reg::R0, 0)]);
    assert!(e.contains("last instruction"), "{e}");
    let lddw = Insn::ld_imm64(Reg::R0, 1);
    let e = rejected(&[Insn::ja(1), lddw[0], lddw[1], Insn::exit()]);
    assert!(e.contains("middle of an LD_IMM64"), "{e}");
    let e = rejected(&[lddw[0]]);
    assert!(e.contains("second half"), "{e}");
    let e = rejected(&[Insn::call(9999), Insn::exit()]);
    assert!(e.contains("unknown helper id 9999"), "{e}");
    // A real kernel helper the VM lacks is named.
    let e = rejected(&[
        Insn::call_helper(nexus_insn::Helper::GetStackid),
        Insn::exit(),
    ]);
    assert!(e.contains("is not available in the VM"), "{e}");
    assert!(e.contains("get_stackid"), "{e}");
    let e = rejected(&[Insn::call_local(5), Insn::exit()]);
    assert!(e.contains("outside"), "{e}");
    let e = rejected(&[
        Insn::ld_map_fd(Reg::R1, 3)[0],
        Insn::ld_map_fd(Reg::R1, 3)[1],
        Insn::exit(),
    ]);
    assert!(e.contains("map index 3 does not exist"), "{e}");
    let e = rejected(&[Insn::new(0x20, 0, 0, 0, 0), Insn::exit()]);
    assert!(e.contains("BPF_ABS"), "{e}");
    let e = rejected(&[Insn::new(0x37, 0, 0, 7, 1), Insn::exit()]);
    assert!(e.contains("offset 7"), "{e}");
}

#[test]
fn verifier_refuses_oversized_programs() {
    let mut p = vec![Insn::mov64_imm(Reg::R0, 0); nexus_vm::program::MAX_INSNS];
    p.push(Insn::exit());
    assert!(matches!(
        vm(&[]).0.load(&p),
        Err(VmError::Verify(VerifyError::TooLarge(_)))
    ));
}

#[test]
fn out_of_bounds_accesses_fault_with_pc_and_insn() {
    let mut mem = [0u8; 4];
    let e = try_run(
        &[Insn::ldx(Size::DW, Reg::R0, Reg::R1, 0), Insn::exit()],
        &mut mem,
    )
    .expect_err("8 bytes of a 4-byte context");
    let msg = e.to_string();
    assert!(
        msg.contains("insn 0")
            && msg.contains("r0 = *(u64 *)(r1 +0)")
            && msg.contains("outside the context"),
        "{msg}"
    );
    let e = try_run(
        &[Insn::ldx(Size::B, Reg::R0, Reg::FP, 0), Insn::exit()],
        &mut [],
    )
    .expect_err("above the stack top");
    assert!(e.to_string().contains("outside the stack"), "{e}");
    let e = try_run(
        &[Insn::st(Size::B, Reg::FP, -4097, 0), Insn::exit()],
        &mut [],
    )
    .expect_err("below the stacks");
    assert!(e.to_string().contains("insn 0"), "{e}");
    let e = try_run(
        &[
            Insn::mov64_imm(Reg::R1, 0),
            Insn::ldx(Size::B, Reg::R0, Reg::R1, 0),
            Insn::exit(),
        ],
        &mut [],
    )
    .expect_err("NULL");
    assert!(
        e.to_string().contains("insn 1") && e.to_string().contains("NULL"),
        "{e}"
    );
    // Pointer arithmetic cannot forge a way into another region.
    let e = try_run(
        &[
            Insn::alu64(AluOp::Add, Reg::R1, Src::Imm(1 << 30)),
            Insn::ldx(Size::B, Reg::R0, Reg::R1, 0),
            Insn::exit(),
        ],
        &mut [0; 8],
    )
    .expect_err("far past the context");
    assert!(e.to_string().contains("outside the context"), "{e}");
}

#[test]
fn readonly_context_refuses_writes() {
    let (mut vm, _) = vm(&[]);
    let id = vm
        .load(&[Insn::st(Size::B, Reg::R1, 0, 1), Insn::exit()])
        .expect("loads");
    let e = vm.run_readonly(id, &[0; 8]).expect_err("read-only");
    assert!(e.to_string().contains("read-only context"), "{e}");
}

#[test]
fn infinite_loops_exhaust_the_budget() {
    let (mut vm, _) = vm(&[]);
    vm.set_budget(1000);
    let id = vm
        .load(&[Insn::ja(-1), Insn::exit()])
        .expect("loads: loops are allowed");
    let e = vm.run(id, &mut []).expect_err("never ends");
    let msg = e.to_string();
    assert!(
        msg.contains("budget of 1000 exhausted") && msg.contains("insn 0"),
        "{msg}"
    );
}
