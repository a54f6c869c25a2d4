//! Hand-assembled programs hosts commonly want, built with nexus-insn's
//! builders: the bytecode bpftrace's `@[key] = count()` compiles to.

use nexus_insn::{AluOp, AtomicOp, Helper, Insn, JmpCond, Reg, Size};

/// `@[ctx.u32 at key_off] = count()`: look the key up in hash map
/// `map_index` (8-byte key, 8-byte value); when absent insert 0 with
/// `BPF_NOEXIST` and look it up again; then atomically add 1. Returns 0.
/// This is the race-free pattern the kernel backend emits too.
#[must_use]
pub fn count_by_u32_field(map_index: i32, key_off: i16) -> Vec<Insn> {
    count_by_key(map_index, &[Insn::ldx(Size::W, Reg::R6, Reg::R1, key_off)])
}

/// `@[key] = count()` where `key_insns` (run first, with r1 = context)
/// leave the 64-bit key in r6.
#[must_use]
pub fn count_by_key(map_index: i32, key_insns: &[Insn]) -> Vec<Insn> {
    let mut p = key_insns.to_vec();
    let lookup = |p: &mut Vec<Insn>| {
        p.extend(Insn::ld_map_fd(Reg::R1, map_index));
        p.push(Insn::mov64(Reg::R2, Reg::FP));
        p.push(Insn::alu64(AluOp::Add, Reg::R2, (-8).into()));
        p.push(Insn::call_helper(Helper::MapLookupElem));
    };
    p.push(Insn::stx(Size::DW, Reg::FP, -8, Reg::R6));
    lookup(&mut p);
    // Found: go straight to the add.
    let insert_start = p.len();
    p.push(Insn::jmp(JmpCond::Ne, Reg::R0, 0.into(), 0)); // patched
    p.push(Insn::st(Size::DW, Reg::FP, -16, 0));
    p.extend(Insn::ld_map_fd(Reg::R1, map_index));
    p.push(Insn::mov64(Reg::R2, Reg::FP));
    p.push(Insn::alu64(AluOp::Add, Reg::R2, (-8).into()));
    p.push(Insn::mov64(Reg::R3, Reg::FP));
    p.push(Insn::alu64(AluOp::Add, Reg::R3, (-16).into()));
    p.push(Insn::mov64_imm(Reg::R4, crate::maps::BPF_NOEXIST as i32));
    p.push(Insn::call_helper(Helper::MapUpdateElem));
    lookup(&mut p);
    let out_check = p.len();
    p.push(Insn::jmp(JmpCond::Eq, Reg::R0, 0.into(), 0)); // patched
    let add = p.len();
    p.push(Insn::mov64_imm(Reg::R1, 1));
    p.push(Insn::atomic(
        Size::DW,
        AtomicOp::Add { fetch: false },
        Reg::R0,
        0,
        Reg::R1,
    ));
    let out = p.len();
    p.push(Insn::mov64_imm(Reg::R0, 0));
    p.push(Insn::exit());
    p[insert_start].off = (add - insert_start - 1) as i16;
    p[out_check].off = (out - out_check - 1) as i16;
    p
}
