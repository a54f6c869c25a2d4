//! A disassembler whose text follows the kernel verifier's log
//! (`kernel/bpf/disasm.c`), so a verifier log can be read side by side with a
//! program we generated: `(07) r1 += -8`, `(15) if r0 == 0x0 goto pc+3`,
//! `(85) call bpf_map_lookup_elem#1`.

use crate::helpers::Helper;
use crate::insn::{AtomicOp, Insn, Size};
use crate::op::*;
use std::fmt::Write;

fn size_name(size: Size, signed: bool) -> &'static str {
    match (size, signed) {
        (Size::B, false) => "u8",
        (Size::H, false) => "u16",
        (Size::W, false) => "u32",
        (Size::DW, false) => "u64",
        (Size::B, true) => "s8",
        (Size::H, true) => "s16",
        (Size::W, true) => "s32",
        (Size::DW, true) => "s64",
    }
}

fn alu_sym(op: u8, off: i16) -> &'static str {
    match op {
        ALU_ADD => "+=",
        ALU_SUB => "-=",
        ALU_MUL => "*=",
        ALU_DIV if off == 1 => "s/=",
        ALU_DIV => "/=",
        ALU_OR => "|=",
        ALU_AND => "&=",
        ALU_LSH => "<<=",
        ALU_RSH => ">>=",
        ALU_MOD if off == 1 => "s%=",
        ALU_MOD => "%=",
        ALU_XOR => "^=",
        ALU_MOV => "=",
        ALU_ARSH => "s>>=",
        _ => "?=",
    }
}

fn jmp_sym(op: u8) -> Option<&'static str> {
    Some(match op {
        JMP_JEQ => "==",
        JMP_JGT => ">",
        JMP_JGE => ">=",
        JMP_JSET => "&",
        JMP_JNE => "!=",
        JMP_JSGT => "s>",
        JMP_JSGE => "s>=",
        JMP_JLT => "<",
        JMP_JLE => "<=",
        JMP_JSLT => "s<",
        JMP_JSLE => "s<=",
        _ => return None,
    })
}

/// Disassemble one instruction. `next` is the following instruction, needed
/// for the second half of `LD_IMM64`.
#[must_use]
pub fn disassemble_insn(insn: &Insn, next: Option<&Insn>) -> String {
    let code = insn.code;
    let (d, s) = (insn.dst, insn.src);
    let mut out = format!("({code:02x}) ");
    let class = insn.class();
    let op = code & 0xf0;
    let is_x = code & SRC_X != 0;
    match class {
        CLASS_ALU | CLASS_ALU64 => {
            let r = if class == CLASS_ALU64 { 'r' } else { 'w' };
            if op == ALU_END {
                let kind = match (class, is_x) {
                    (CLASS_ALU64, _) => "bswap",
                    (_, true) => "be",
                    (_, false) => "le",
                };
                let _ = write!(out, "r{d} = {kind}{} r{d}", insn.imm);
            } else if op == ALU_NEG {
                let _ = write!(out, "{r}{d} = -{r}{d}");
            } else if op == ALU_MOV && is_x && insn.off != 0 {
                let _ = write!(out, "{r}{d} = (s{}){r}{s}", insn.off);
            } else if is_x {
                let _ = write!(out, "{r}{d} {} {r}{s}", alu_sym(op, insn.off));
            } else {
                let _ = write!(out, "{r}{d} {} {}", alu_sym(op, insn.off), insn.imm);
            }
        }
        CLASS_STX => {
            let size = Size::from_code(code);
            let ty = size_name(size, false);
            let off = insn.off;
            if code & 0xe0 == MODE_ATOMIC {
                let w = if size == Size::DW { "64" } else { "" };
                let rr = if size == Size::DW { 'r' } else { 'w' };
                let _ = match AtomicOp::from_imm(insn.imm) {
                    Some(AtomicOp::Add { fetch: false }) => {
                        write!(out, "lock *({ty} *)(r{d} {off:+}) += {rr}{s}")
                    }
                    Some(AtomicOp::Or { fetch: false }) => {
                        write!(out, "lock *({ty} *)(r{d} {off:+}) |= {rr}{s}")
                    }
                    Some(AtomicOp::And { fetch: false }) => {
                        write!(out, "lock *({ty} *)(r{d} {off:+}) &= {rr}{s}")
                    }
                    Some(AtomicOp::Xor { fetch: false }) => {
                        write!(out, "lock *({ty} *)(r{d} {off:+}) ^= {rr}{s}")
                    }
                    Some(AtomicOp::Add { fetch: true }) => write!(
                        out,
                        "{rr}{s} = atomic{w}_fetch_add(({ty} *)(r{d} {off:+}), {rr}{s})"
                    ),
                    Some(AtomicOp::Or { fetch: true }) => write!(
                        out,
                        "{rr}{s} = atomic{w}_fetch_or(({ty} *)(r{d} {off:+}), {rr}{s})"
                    ),
                    Some(AtomicOp::And { fetch: true }) => write!(
                        out,
                        "{rr}{s} = atomic{w}_fetch_and(({ty} *)(r{d} {off:+}), {rr}{s})"
                    ),
                    Some(AtomicOp::Xor { fetch: true }) => write!(
                        out,
                        "{rr}{s} = atomic{w}_fetch_xor(({ty} *)(r{d} {off:+}), {rr}{s})"
                    ),
                    Some(AtomicOp::Xchg) => write!(
                        out,
                        "{rr}{s} = atomic{w}_xchg(({ty} *)(r{d} {off:+}), {rr}{s})"
                    ),
                    Some(AtomicOp::CmpXchg) => write!(
                        out,
                        "r0 = atomic{w}_cmpxchg(({ty} *)(r{d} {off:+}), r0, {rr}{s})"
                    ),
                    None => write!(out, "BUG_STX_ATOMIC imm={:#x}", insn.imm),
                };
            } else {
                let _ = write!(out, "*({ty} *)(r{d} {off:+}) = r{s}");
            }
        }
        CLASS_ST => {
            let ty = size_name(Size::from_code(code), false);
            let _ = write!(out, "*({ty} *)(r{d} {:+}) = {}", insn.off, insn.imm);
        }
        CLASS_LDX => {
            let signed = code & 0xe0 == MODE_MEMSX;
            let ty = size_name(Size::from_code(code), signed);
            let _ = write!(out, "r{d} = *({ty} *)(r{s} {:+})", insn.off);
        }
        CLASS_LD if code == LD_IMM64 => {
            let hi = next.map_or(0, |n| n.imm);
            let _ = match s {
                PSEUDO_MAP_FD => write!(out, "r{d} = map_fd[{}]", insn.imm),
                PSEUDO_MAP_IDX => write!(out, "r{d} = map_idx[{}]", insn.imm),
                PSEUDO_MAP_VALUE => write!(out, "r{d} = map_fd[{}]+{hi}", insn.imm),
                PSEUDO_MAP_IDX_VALUE => write!(out, "r{d} = map_idx[{}]+{hi}", insn.imm),
                _ => {
                    let v = (u64::from(hi as u32) << 32) | u64::from(insn.imm as u32);
                    write!(out, "r{d} = {v:#x}")
                }
            };
        }
        CLASS_JMP | CLASS_JMP32 => {
            let r = if class == CLASS_JMP { 'r' } else { 'w' };
            match op {
                JMP_JA if class == CLASS_JMP32 => {
                    let _ = write!(out, "gotol pc{:+}", insn.imm);
                }
                JMP_JA => {
                    let _ = write!(out, "goto pc{:+}", insn.off);
                }
                JMP_EXIT => out.push_str("exit"),
                JMP_CALL if s == PSEUDO_CALL => {
                    let _ = write!(out, "call pc{:+}", insn.imm);
                }
                JMP_CALL if s == PSEUDO_KFUNC_CALL => {
                    let _ = write!(out, "call kernel-function#{}", insn.imm);
                }
                JMP_CALL => {
                    let _ = match Helper::from_id(insn.imm) {
                        Some(h) => write!(out, "call bpf_{}#{}", h.name(), insn.imm),
                        None => write!(out, "call unknown#{}", insn.imm),
                    };
                }
                _ => {
                    let sym = jmp_sym(op).unwrap_or("?");
                    let _ = if is_x {
                        write!(out, "if {r}{d} {sym} {r}{s} goto pc{:+}", insn.off)
                    } else {
                        write!(
                            out,
                            "if {r}{d} {sym} {:#x} goto pc{:+}",
                            insn.imm as u32, insn.off
                        )
                    };
                }
            }
        }
        _ => {
            let _ = write!(out, "unknown opcode {code:#04x}");
        }
    }
    out
}

/// Disassemble a whole program, one `N: (code) text` line per instruction,
/// numbered as the verifier numbers them (the second half of `LD_IMM64` takes
/// an index but prints no line).
#[must_use]
pub fn disassemble(prog: &[Insn]) -> String {
    let mut out = String::new();
    let mut pc = 0;
    while pc < prog.len() {
        let insn = &prog[pc];
        let _ = writeln!(out, "{pc}: {}", disassemble_insn(insn, prog.get(pc + 1)));
        pc += if insn.is_wide() { 2 } else { 1 };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{AluOp, Endian, JmpCond, Reg, Src};

    fn d(i: Insn) -> String {
        disassemble_insn(&i, None)
    }

    #[test]
    fn reads_like_the_verifier() {
        let cases: Vec<(Insn, &str)> = vec![
            (Insn::mov64(Reg::R1, Reg::FP), "(bf) r1 = r10"),
            (
                Insn::alu64(AluOp::Add, Reg::R1, Src::Imm(-8)),
                "(07) r1 += -8",
            ),
            (
                Insn::alu32(AluOp::Add, Reg::R1, Src::Imm(5)),
                "(04) w1 += 5",
            ),
            (
                Insn::alu64(AluOp::SDiv, Reg::R1, Src::Reg(Reg::R2)),
                "(3f) r1 s/= r2",
            ),
            (
                Insn::alu64(AluOp::Arsh, Reg::R1, Src::Imm(3)),
                "(c7) r1 s>>= 3",
            ),
            (Insn::neg64(Reg::R3), "(87) r3 = -r3"),
            (Insn::movsx64(Reg::R1, Reg::R2, 8), "(bf) r1 = (s8)r2"),
            (Insn::endian(Endian::ToBe, Reg::R1, 16), "(dc) r1 = be16 r1"),
            (Insn::endian(Endian::ToLe, Reg::R1, 64), "(d4) r1 = le64 r1"),
            (
                Insn::endian(Endian::Swap, Reg::R1, 32),
                "(d7) r1 = bswap32 r1",
            ),
            (
                Insn::stx(Size::DW, Reg::FP, -8, Reg::R1),
                "(7b) *(u64 *)(r10 -8) = r1",
            ),
            (
                Insn::st(Size::W, Reg::FP, -4, 0),
                "(62) *(u32 *)(r10 -4) = 0",
            ),
            (
                Insn::ldx(Size::W, Reg::R2, Reg::R1, 16),
                "(61) r2 = *(u32 *)(r1 +16)",
            ),
            (
                Insn::ldxsx(Size::B, Reg::R2, Reg::R1, 0),
                "(91) r2 = *(s8 *)(r1 +0)",
            ),
            (
                Insn::jmp(JmpCond::Eq, Reg::R0, Src::Imm(0), 3),
                "(15) if r0 == 0x0 goto pc+3",
            ),
            (
                Insn::jmp32(JmpCond::SLt, Reg::R1, Src::Reg(Reg::R2), -2),
                "(ce) if w1 s< w2 goto pc-2",
            ),
            (Insn::ja(4), "(05) goto pc+4"),
            (Insn::ja32(70000), "(06) gotol pc+70000"),
            (
                Insn::call_helper(Helper::MapLookupElem),
                "(85) call bpf_map_lookup_elem#1",
            ),
            (Insn::call_local(5), "(85) call pc+5"),
            (Insn::exit(), "(95) exit"),
            (
                Insn::atomic(
                    Size::DW,
                    AtomicOp::Add { fetch: false },
                    Reg::R1,
                    0,
                    Reg::R2,
                ),
                "(db) lock *(u64 *)(r1 +0) += r2",
            ),
            (
                Insn::atomic(Size::W, AtomicOp::Add { fetch: true }, Reg::R1, 4, Reg::R2),
                "(c3) w2 = atomic_fetch_add((u32 *)(r1 +4), w2)",
            ),
            (
                Insn::atomic(Size::DW, AtomicOp::CmpXchg, Reg::R1, 0, Reg::R2),
                "(db) r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)",
            ),
        ];
        for (insn, want) in cases {
            assert_eq!(d(insn), want);
        }
    }

    #[test]
    fn wide_loads_take_two_slots() {
        let mut prog = Vec::new();
        prog.extend(Insn::ld_map_fd(Reg::R1, 7));
        prog.extend(Insn::ld_imm64(Reg::R2, 0xdead_beef_0000_0001));
        prog.push(Insn::exit());
        let text = disassemble(&prog);
        assert_eq!(
            text,
            "0: (18) r1 = map_fd[7]\n2: (18) r2 = 0xdeadbeef00000001\n4: (95) exit\n"
        );
    }
}
