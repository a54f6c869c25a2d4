//! Loading a program: the structural verifier and the pre-decoded form the
//! interpreter runs.
//!
//! This is **not** the kernel verifier. It checks structure only — every
//! opcode is one the ISA defines, jumps land on instructions inside the
//! program (never on the second half of an `LD_IMM64`), `LD_IMM64` pairs are
//! whole, r10 is never written, the last instruction is `exit` or an
//! unconditional jump so control cannot fall off the end, helper ids and
//! map indices exist, bpf-to-bpf call targets are instructions, and the
//! program has at most [`MAX_INSNS`] instructions. It does not track types,
//! bounds or initialisation; the interpreter's own checks (region-tagged,
//! bounds-checked memory, an instruction budget, a call-depth limit) make
//! every run memory-safe and terminating whatever the program does.

use crate::helpers::{HelperRegistry, HelperTarget};
use crate::maps::Map;
use crate::memory::{REGION_MAP, REGION_MAP_HANDLE, make_ptr};
use nexus_insn::op::*;
use nexus_insn::{Insn, MapType, disassemble_insn};

/// Largest program accepted (the kernel's limit for privileged programs).
pub const MAX_INSNS: usize = 1_000_000;

/// Why a program was refused at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("program is empty")]
    Empty,
    #[error("program has {0} instructions; the limit is {MAX_INSNS}")]
    TooLarge(usize),
    #[error("insn {pc} `{insn}`: {reason}")]
    Invalid {
        pc: usize,
        insn: String,
        reason: String,
    },
}

/// Decoded operation. One flat enum so the interpreter dispatches once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Add64,
    Sub64,
    Mul64,
    Div64,
    SDiv64,
    Or64,
    And64,
    Lsh64,
    Rsh64,
    Mod64,
    SMod64,
    Xor64,
    Mov64,
    MovSx64B,
    MovSx64H,
    MovSx64W,
    Arsh64,
    Neg64,
    Add32,
    Sub32,
    Mul32,
    Div32,
    SDiv32,
    Or32,
    And32,
    Lsh32,
    Rsh32,
    Mod32,
    SMod32,
    Xor32,
    Mov32,
    MovSx32B,
    MovSx32H,
    Arsh32,
    Neg32,
    Le16,
    Le32,
    Le64,
    Swap16,
    Swap32,
    Swap64,
    Ja,
    Jeq,
    Jgt,
    Jge,
    Jset,
    Jne,
    Jsgt,
    Jsge,
    Jlt,
    Jle,
    Jslt,
    Jsle,
    Jeq32,
    Jgt32,
    Jge32,
    Jset32,
    Jne32,
    Jsgt32,
    Jsge32,
    Jlt32,
    Jle32,
    Jslt32,
    Jsle32,
    Call,
    CallLocal,
    Exit,
    LdImm64,
    /// Second half of an `LD_IMM64`: never executed.
    LdImm64Hi,
    LdxB,
    LdxH,
    LdxW,
    LdxDW,
    LdxSxB,
    LdxSxH,
    LdxSxW,
    StB,
    StH,
    StW,
    StDW,
    StxB,
    StxH,
    StxW,
    StxDW,
    AtomicW,
    AtomicDW,
}

/// One pre-decoded instruction. `imm` is the second operand for immediate
/// forms (already widened as the ISA says), the 64-bit constant of
/// `LD_IMM64`, or the atomic operation; `target` is the absolute jump or call
/// target, or the helper's index in the registry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DInsn {
    pub op: Op,
    pub dst: u8,
    pub src: u8,
    /// The second operand is `imm`, not register `src`.
    pub k: bool,
    pub off: i16,
    pub target: u32,
    pub imm: i64,
}

/// A verified, pre-decoded program.
#[derive(Debug)]
pub struct Program {
    pub(crate) insns: Vec<Insn>,
    pub(crate) code: Vec<DInsn>,
    /// Calls helpers that touch ring buffers, so runs must tidy reservations.
    pub(crate) uses_ringbuf: bool,
}

impl Program {
    /// The instructions as loaded.
    #[must_use]
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }
    /// The disassembly of instruction `pc`, for error messages.
    #[must_use]
    pub fn describe(&self, pc: usize) -> String {
        match self.insns.get(pc) {
            Some(i) => disassemble_insn(i, self.insns.get(pc + 1)),
            None => format!("<pc {pc} out of range>"),
        }
    }
}

fn alu_op(code: u8, off: i16, is64: bool) -> Result<Op, String> {
    let bad_off = || format!("offset {off} is not valid for this ALU operation");
    let need_zero = |op: Op| if off == 0 { Ok(op) } else { Err(bad_off()) };
    let signed = |u: Op, s: Op| match off {
        0 => Ok(u),
        1 => Ok(s),
        _ => Err(bad_off()),
    };
    match (code & 0xf0, is64) {
        (ALU_ADD, true) => need_zero(Op::Add64),
        (ALU_SUB, true) => need_zero(Op::Sub64),
        (ALU_MUL, true) => need_zero(Op::Mul64),
        (ALU_DIV, true) => signed(Op::Div64, Op::SDiv64),
        (ALU_OR, true) => need_zero(Op::Or64),
        (ALU_AND, true) => need_zero(Op::And64),
        (ALU_LSH, true) => need_zero(Op::Lsh64),
        (ALU_RSH, true) => need_zero(Op::Rsh64),
        (ALU_MOD, true) => signed(Op::Mod64, Op::SMod64),
        (ALU_XOR, true) => need_zero(Op::Xor64),
        (ALU_ARSH, true) => need_zero(Op::Arsh64),
        (ALU_NEG, true) => need_zero(Op::Neg64),
        (ALU_MOV, true) => match off {
            0 => Ok(Op::Mov64),
            8 => Ok(Op::MovSx64B),
            16 => Ok(Op::MovSx64H),
            32 => Ok(Op::MovSx64W),
            _ => Err(bad_off()),
        },
        (ALU_ADD, false) => need_zero(Op::Add32),
        (ALU_SUB, false) => need_zero(Op::Sub32),
        (ALU_MUL, false) => need_zero(Op::Mul32),
        (ALU_DIV, false) => signed(Op::Div32, Op::SDiv32),
        (ALU_OR, false) => need_zero(Op::Or32),
        (ALU_AND, false) => need_zero(Op::And32),
        (ALU_LSH, false) => need_zero(Op::Lsh32),
        (ALU_RSH, false) => need_zero(Op::Rsh32),
        (ALU_MOD, false) => signed(Op::Mod32, Op::SMod32),
        (ALU_XOR, false) => need_zero(Op::Xor32),
        (ALU_ARSH, false) => need_zero(Op::Arsh32),
        (ALU_NEG, false) => need_zero(Op::Neg32),
        (ALU_MOV, false) => match off {
            0 => Ok(Op::Mov32),
            8 => Ok(Op::MovSx32B),
            16 => Ok(Op::MovSx32H),
            _ => Err(bad_off()),
        },
        _ => Err(format!("unknown ALU opcode {code:#04x}")),
    }
}

fn jmp_op(code: u8, is64: bool) -> Option<Op> {
    Some(match (code & 0xf0, is64) {
        (JMP_JEQ, true) => Op::Jeq,
        (JMP_JGT, true) => Op::Jgt,
        (JMP_JGE, true) => Op::Jge,
        (JMP_JSET, true) => Op::Jset,
        (JMP_JNE, true) => Op::Jne,
        (JMP_JSGT, true) => Op::Jsgt,
        (JMP_JSGE, true) => Op::Jsge,
        (JMP_JLT, true) => Op::Jlt,
        (JMP_JLE, true) => Op::Jle,
        (JMP_JSLT, true) => Op::Jslt,
        (JMP_JSLE, true) => Op::Jsle,
        (JMP_JEQ, false) => Op::Jeq32,
        (JMP_JGT, false) => Op::Jgt32,
        (JMP_JGE, false) => Op::Jge32,
        (JMP_JSET, false) => Op::Jset32,
        (JMP_JNE, false) => Op::Jne32,
        (JMP_JSGT, false) => Op::Jsgt32,
        (JMP_JSGE, false) => Op::Jsge32,
        (JMP_JLT, false) => Op::Jlt32,
        (JMP_JLE, false) => Op::Jle32,
        (JMP_JSLT, false) => Op::Jslt32,
        (JMP_JSLE, false) => Op::Jsle32,
        _ => return None,
    })
}

/// Verify `insns` against `maps` and `helpers` and pre-decode them.
pub(crate) fn load(
    insns: &[Insn],
    maps: &[Map],
    helpers: &HelperRegistry,
) -> Result<Program, VerifyError> {
    if insns.is_empty() {
        return Err(VerifyError::Empty);
    }
    if insns.len() > MAX_INSNS {
        return Err(VerifyError::TooLarge(insns.len()));
    }
    let n = insns.len();
    let fail = |pc: usize, reason: String| VerifyError::Invalid {
        pc,
        insn: disassemble_insn(&insns[pc], insns.get(pc + 1)),
        reason,
    };
    let mut code = Vec::with_capacity(n);
    let mut uses_ringbuf = false;
    let mut pc = 0;
    while pc < n {
        let i = insns[pc];
        if i.dst > 10
            || i.src > 10 && i.code != LD_IMM64 && !matches!(i.code & 0x07, CLASS_JMP | CLASS_JMP32)
        {
            return Err(fail(
                pc,
                format!("register r{} does not exist", i.dst.max(i.src)),
            ));
        }
        let k = i.code & SRC_X == 0;
        let mut d = DInsn {
            op: Op::Exit,
            dst: i.dst,
            src: i.src,
            k,
            off: i.off,
            target: 0,
            imm: i64::from(i.imm),
        };
        let writes_dst = |d: &DInsn| -> Result<(), VerifyError> {
            if d.dst == 10 {
                Err(fail(pc, "r10 is the read-only frame pointer".into()))
            } else {
                Ok(())
            }
        };
        let jump_to = |rel: i64| -> Result<u32, VerifyError> {
            let t = pc as i64 + 1 + rel;
            if t < 0 || t >= n as i64 {
                return Err(fail(
                    pc,
                    format!("jump target {t} is outside the program (0..{n})"),
                ));
            }
            Ok(t as u32)
        };
        match i.code & 0x07 {
            class @ (CLASS_ALU | CLASS_ALU64) => {
                let is64 = class == CLASS_ALU64;
                if i.code & 0xf0 == ALU_END {
                    d.op = match (is64, k, i.imm) {
                        (false, true, 16) => Op::Le16,
                        (false, true, 32) => Op::Le32,
                        (false, true, 64) => Op::Le64,
                        // To big endian: a swap, since the VM is little-endian.
                        (_, false, 16) | (true, true, 16) => Op::Swap16,
                        (_, false, 32) | (true, true, 32) => Op::Swap32,
                        (_, false, 64) | (true, true, 64) => Op::Swap64,
                        _ => {
                            return Err(fail(
                                pc,
                                format!("byte swap width {} is not 16, 32 or 64", i.imm),
                            ));
                        }
                    };
                    if is64 && !k {
                        return Err(fail(pc, "BPF_ALU64 | BPF_END must use BPF_K".into()));
                    }
                } else {
                    d.op = alu_op(i.code, i.off, is64).map_err(|r| fail(pc, r))?;
                    if matches!(d.op, Op::Neg64 | Op::Neg32) && !k {
                        return Err(fail(pc, "BPF_NEG must use BPF_K".into()));
                    }
                    if matches!(
                        d.op,
                        Op::MovSx64B | Op::MovSx64H | Op::MovSx64W | Op::MovSx32B | Op::MovSx32H
                    ) && k
                    {
                        return Err(fail(pc, "MOVSX takes a register source".into()));
                    }
                    if k && i.src != 0 {
                        return Err(fail(
                            pc,
                            "immediate form with a nonzero source register".into(),
                        ));
                    }
                    if !is64 && k {
                        // 32-bit operations see imm as its 32 bits.
                        d.imm = i64::from(i.imm as u32);
                    }
                }
                writes_dst(&d)?;
            }
            class @ (CLASS_JMP | CLASS_JMP32) => {
                let is64 = class == CLASS_JMP;
                match i.code & 0xf0 {
                    JMP_JA => {
                        if i.code & SRC_X != 0 {
                            return Err(fail(pc, "BPF_JA must use BPF_K".into()));
                        }
                        d.op = Op::Ja;
                        // JMP32 | JA (`gotol`) takes its offset from imm.
                        d.target = jump_to(if is64 {
                            i64::from(i.off)
                        } else {
                            i64::from(i.imm)
                        })?;
                    }
                    JMP_CALL if is64 => match i.src {
                        0 => {
                            d.op = Op::Call;
                            let Some(t) = helpers.resolve(i.imm) else {
                                let reason = match nexus_insn::Helper::from_id(i.imm) {
                                    // A kernel helper the VM has no
                                    // equivalent of (stacks, tasks, cgroups).
                                    Some(h) => format!(
                                        "helper {} (id {}) is not available in the VM",
                                        h.name(),
                                        i.imm
                                    ),
                                    None => format!("unknown helper id {}", i.imm),
                                };
                                return Err(fail(pc, reason));
                            };
                            if let HelperTarget::Builtin(h) = t {
                                uses_ringbuf |= matches!(h as i32, 130..=133);
                            }
                            d.target = t.encode();
                        }
                        PSEUDO_CALL => {
                            d.op = Op::CallLocal;
                            d.target = jump_to(i64::from(i.imm))?;
                        }
                        _ => {
                            return Err(fail(pc, "kfunc calls are not supported by the VM".into()));
                        }
                    },
                    JMP_EXIT if is64 => d.op = Op::Exit,
                    _ => {
                        d.op = jmp_op(i.code, is64).ok_or_else(|| {
                            fail(pc, format!("unknown jump opcode {:#04x}", i.code))
                        })?;
                        if i.src > 10 {
                            return Err(fail(pc, format!("register r{} does not exist", i.src)));
                        }
                        d.target = jump_to(i64::from(i.off))?;
                        if !is64 && k {
                            d.imm = i64::from(i.imm as u32);
                        }
                    }
                }
            }
            CLASS_LD => {
                if i.code != LD_IMM64 {
                    return Err(fail(
                        pc,
                        "legacy packet loads (BPF_ABS/BPF_IND) are not supported".into(),
                    ));
                }
                writes_dst(&d)?;
                let Some(hi) = insns.get(pc + 1) else {
                    return Err(fail(pc, "LD_IMM64 is missing its second half".into()));
                };
                if hi.code != 0 || hi.dst != 0 || hi.src != 0 || hi.off != 0 {
                    return Err(fail(
                        pc,
                        "the second half of LD_IMM64 must be all zero but imm".into(),
                    ));
                }
                d.op = Op::LdImm64;
                let lo = u64::from(i.imm as u32);
                let hi_imm = u64::from(hi.imm as u32);
                d.imm = match i.src {
                    0 => (lo | (hi_imm << 32)) as i64,
                    // A map "fd" in the VM is the map's index, so programs
                    // built with `ld_map_fd` run unchanged.
                    PSEUDO_MAP_IDX | PSEUDO_MAP_FD => {
                        let idx = i.imm as u32 as usize;
                        if idx >= maps.len() {
                            return Err(fail(
                                pc,
                                format!("map index {idx} does not exist ({} maps)", maps.len()),
                            ));
                        }
                        make_ptr(REGION_MAP_HANDLE, idx as u32, 0) as i64
                    }
                    PSEUDO_MAP_IDX_VALUE | PSEUDO_MAP_VALUE => {
                        let idx = i.imm as u32 as usize;
                        let Some(m) = maps.get(idx) else {
                            return Err(fail(
                                pc,
                                format!("map index {idx} does not exist ({} maps)", maps.len()),
                            ));
                        };
                        if !matches!(m.map_type(), MapType::Array) {
                            return Err(fail(
                                pc,
                                format!(
                                    "map {idx} ({}) is not an array; direct value access needs one",
                                    m.name()
                                ),
                            ));
                        }
                        if hi_imm >= u64::from(m.spec().value_size) {
                            return Err(fail(
                                pc,
                                format!(
                                    "offset {hi_imm} is past the {}-byte value",
                                    m.spec().value_size
                                ),
                            ));
                        }
                        make_ptr(REGION_MAP, idx as u32, hi_imm as u32) as i64
                    }
                    other => {
                        return Err(fail(
                            pc,
                            format!("LD_IMM64 pseudo source {other} is not supported"),
                        ));
                    }
                };
                code.push(d);
                let mut half = d;
                half.op = Op::LdImm64Hi;
                code.push(half);
                pc += 2;
                continue;
            }
            CLASS_LDX => {
                d.op = match (i.code & 0xe0, i.code & 0x18) {
                    (MODE_MEM, SIZE_B) => Op::LdxB,
                    (MODE_MEM, SIZE_H) => Op::LdxH,
                    (MODE_MEM, SIZE_W) => Op::LdxW,
                    (MODE_MEM, SIZE_DW) => Op::LdxDW,
                    (MODE_MEMSX, SIZE_B) => Op::LdxSxB,
                    (MODE_MEMSX, SIZE_H) => Op::LdxSxH,
                    (MODE_MEMSX, SIZE_W) => Op::LdxSxW,
                    _ => return Err(fail(pc, format!("unknown load opcode {:#04x}", i.code))),
                };
                writes_dst(&d)?;
            }
            CLASS_ST => {
                d.op = match (i.code & 0xe0, i.code & 0x18) {
                    (MODE_MEM, SIZE_B) => Op::StB,
                    (MODE_MEM, SIZE_H) => Op::StH,
                    (MODE_MEM, SIZE_W) => Op::StW,
                    (MODE_MEM, SIZE_DW) => Op::StDW,
                    _ => return Err(fail(pc, format!("unknown store opcode {:#04x}", i.code))),
                };
            }
            _ => {
                // CLASS_STX
                d.op = match (i.code & 0xe0, i.code & 0x18) {
                    (MODE_MEM, SIZE_B) => Op::StxB,
                    (MODE_MEM, SIZE_H) => Op::StxH,
                    (MODE_MEM, SIZE_W) => Op::StxW,
                    (MODE_MEM, SIZE_DW) => Op::StxDW,
                    (MODE_ATOMIC, SIZE_W) => Op::AtomicW,
                    (MODE_ATOMIC, SIZE_DW) => Op::AtomicDW,
                    _ => return Err(fail(pc, format!("unknown store opcode {:#04x}", i.code))),
                };
                if matches!(d.op, Op::AtomicW | Op::AtomicDW) {
                    let Some(op) = nexus_insn::AtomicOp::from_imm(i.imm) else {
                        return Err(fail(pc, format!("unknown atomic operation {:#x}", i.imm)));
                    };
                    let fetches = i.imm & ATOMIC_FETCH != 0;
                    if fetches && !matches!(op, nexus_insn::AtomicOp::CmpXchg) && i.src == 10 {
                        return Err(fail(pc, "a fetching atomic would write r10".into()));
                    }
                }
            }
        }
        code.push(d);
        pc += 1;
    }
    // Jumps and calls must not land on the second half of an LD_IMM64.
    for (pc, d) in code.iter().enumerate() {
        let jumps = matches!(d.op, Op::Ja | Op::CallLocal)
            || (d.op as u8 >= Op::Jeq as u8 && d.op as u8 <= Op::Jsle32 as u8);
        if jumps && code[d.target as usize].op == Op::LdImm64Hi {
            return Err(fail(
                pc,
                format!("jump target {} is the middle of an LD_IMM64", d.target),
            ));
        }
    }
    let last = n - 1;
    if !matches!(code[last].op, Op::Exit | Op::Ja) {
        return Err(fail(
            last,
            "the last instruction must be exit or an unconditional jump".into(),
        ));
    }
    Ok(Program {
        insns: insns.to_vec(),
        code,
        uses_ringbuf,
    })
}
