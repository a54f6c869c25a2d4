//! The interpreter. It runs the pre-decoded form of a verified program over
//! region-tagged memory: every load and store is resolved and bounds-checked
//! by [`Memory`], an instruction budget ends every run, and bpf-to-bpf calls
//! get their own 512-byte stack frame, up to [`MAX_CALL_DEPTH`] deep.

use crate::helpers::{HelperContext, HelperRegistry, HelperTarget, call_builtin};
use crate::memory::{MemFault, Memory, REGION_STACK, make_ptr};
use crate::platform::Platform;
use crate::program::{DInsn, Op, Program};
use nexus_insn::op::{
    ATOMIC_ADD, ATOMIC_AND, ATOMIC_CMPXCHG, ATOMIC_FETCH, ATOMIC_OR, ATOMIC_XCHG, ATOMIC_XOR,
};

/// Bytes of stack per call frame.
pub const STACK_SIZE: usize = 512;
/// Frames: the entry function plus 7 nested bpf-to-bpf calls.
pub const MAX_CALL_DEPTH: usize = 8;

/// Why a run stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error(transparent)]
    Memory(#[from] MemFault),
    #[error("instruction budget of {0} exhausted")]
    BudgetExhausted(u64),
    #[error("bpf-to-bpf calls nested deeper than {MAX_CALL_DEPTH} frames")]
    CallDepth,
    #[error("helper call could not be resolved")]
    UnknownHelper,
}

/// A fault with the instruction it happened at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("insn {pc} `{insn}`: {fault}")]
pub struct RunError {
    pub pc: usize,
    /// The instruction, disassembled.
    pub insn: String,
    pub fault: Fault,
}

#[derive(Clone, Copy, Default)]
struct Frame {
    ret_pc: usize,
    saved: [u64; 4],
}

pub(crate) struct Env<'a> {
    pub helpers: &'a HelperRegistry,
    pub platform: &'a dyn Platform,
    pub log: &'a mut Vec<String>,
    pub rng: &'a mut u64,
    pub budget: u64,
}

/// Frame 0 sits at the top of the stack area and callees below it, so a
/// callee can read its callers' frames through pointers they pass, while
/// `r10 + 0` and above of frame 0 is outside the area.
#[inline(always)]
fn frame_top(depth: usize) -> usize {
    (MAX_CALL_DEPTH - depth) * STACK_SIZE
}

#[inline(always)]
fn stack_top(depth: usize) -> u64 {
    make_ptr(REGION_STACK, 0, frame_top(depth) as u32)
}

#[inline(always)]
fn addr(base: u64, off: i16) -> u64 {
    base.wrapping_add(off as i64 as u64)
}

fn atomic(
    mem: &mut Memory<'_>,
    regs: &mut [u64; 11],
    d: &DInsn,
    size: usize,
) -> Result<(), MemFault> {
    let a = addr(regs[d.dst as usize], d.off);
    let old = mem.load(a, size)?;
    let mask = if size == 4 {
        u64::from(u32::MAX)
    } else {
        u64::MAX
    };
    let src = regs[d.src as usize] & mask;
    let op = d.imm as i32;
    let new = match op {
        ATOMIC_XCHG => src,
        ATOMIC_CMPXCHG => {
            let expected = regs[0] & mask;
            regs[0] = old;
            if old == expected {
                mem.store(a, size, src)?;
            }
            return Ok(());
        }
        _ => match op & !ATOMIC_FETCH {
            ATOMIC_ADD => old.wrapping_add(src),
            ATOMIC_OR => old | src,
            ATOMIC_AND => old & src,
            ATOMIC_XOR => old ^ src,
            _ => old,
        },
    };
    mem.store(a, size, new & mask)?;
    if op & ATOMIC_FETCH != 0 {
        regs[d.src as usize] = old;
    }
    Ok(())
}

/// Run `prog` from instruction 0 with `r1`, `r2` set; returns r0.
pub(crate) fn run(
    prog: &Program,
    mem: &mut Memory<'_>,
    env: &mut Env<'_>,
    r1: u64,
    r2: u64,
) -> Result<u64, RunError> {
    let code = &prog.code[..];
    let mut regs = [0u64; 11];
    regs[1] = r1;
    regs[2] = r2;
    regs[10] = stack_top(0);
    let mut frames = [Frame::default(); MAX_CALL_DEPTH];
    let mut depth = 0usize;
    let mut budget = env.budget;
    let mut pc = 0usize;
    let fail = |pc: usize, fault: Fault| RunError {
        pc,
        insn: prog.describe(pc),
        fault,
    };
    loop {
        // The verifier guarantees every jump target is in range and the last
        // instruction does not fall through, so `pc` is always valid here.
        let d = &code[pc];
        if budget == 0 {
            return Err(fail(pc, Fault::BudgetExhausted(env.budget)));
        }
        budget -= 1;
        let dst = d.dst as usize;
        let s = if d.k {
            d.imm as u64
        } else {
            regs[d.src as usize]
        };
        pc += 1;
        match d.op {
            Op::Add64 => regs[dst] = regs[dst].wrapping_add(s),
            Op::Sub64 => regs[dst] = regs[dst].wrapping_sub(s),
            Op::Mul64 => regs[dst] = regs[dst].wrapping_mul(s),
            Op::Div64 => regs[dst] = regs[dst].checked_div(s).unwrap_or(0),
            Op::SDiv64 => {
                regs[dst] = if s == 0 {
                    0
                } else {
                    (regs[dst] as i64).wrapping_div(s as i64) as u64
                }
            }
            Op::Or64 => regs[dst] |= s,
            Op::And64 => regs[dst] &= s,
            Op::Lsh64 => regs[dst] <<= s & 63,
            Op::Rsh64 => regs[dst] >>= s & 63,
            Op::Mod64 => {
                if s != 0 {
                    regs[dst] %= s;
                }
            }
            Op::SMod64 => {
                if s != 0 {
                    regs[dst] = (regs[dst] as i64).wrapping_rem(s as i64) as u64;
                }
            }
            Op::Xor64 => regs[dst] ^= s,
            Op::Mov64 => regs[dst] = s,
            Op::MovSx64B => regs[dst] = s as i8 as i64 as u64,
            Op::MovSx64H => regs[dst] = s as i16 as i64 as u64,
            Op::MovSx64W => regs[dst] = s as i32 as i64 as u64,
            Op::Arsh64 => regs[dst] = ((regs[dst] as i64) >> (s & 63)) as u64,
            Op::Neg64 => regs[dst] = regs[dst].wrapping_neg(),
            Op::Add32 => regs[dst] = u64::from((regs[dst] as u32).wrapping_add(s as u32)),
            Op::Sub32 => regs[dst] = u64::from((regs[dst] as u32).wrapping_sub(s as u32)),
            Op::Mul32 => regs[dst] = u64::from((regs[dst] as u32).wrapping_mul(s as u32)),
            Op::Div32 => {
                regs[dst] = u64::from((regs[dst] as u32).checked_div(s as u32).unwrap_or(0))
            }
            Op::SDiv32 => {
                regs[dst] = if s as u32 == 0 {
                    0
                } else {
                    u64::from((regs[dst] as i32).wrapping_div(s as i32) as u32)
                }
            }
            Op::Or32 => regs[dst] = u64::from(regs[dst] as u32 | s as u32),
            Op::And32 => regs[dst] = u64::from(regs[dst] as u32 & s as u32),
            Op::Lsh32 => regs[dst] = u64::from((regs[dst] as u32) << (s & 31)),
            Op::Rsh32 => regs[dst] = u64::from((regs[dst] as u32) >> (s & 31)),
            Op::Mod32 => {
                // Modulo by zero leaves dst unchanged, but as a 32-bit result.
                let a = regs[dst] as u32;
                regs[dst] = u64::from(if s as u32 == 0 { a } else { a % s as u32 });
            }
            Op::SMod32 => {
                let a = regs[dst] as i32;
                regs[dst] = u64::from(if s as u32 == 0 {
                    a
                } else {
                    a.wrapping_rem(s as i32)
                } as u32);
            }
            Op::Xor32 => regs[dst] = u64::from(regs[dst] as u32 ^ s as u32),
            Op::Mov32 => regs[dst] = u64::from(s as u32),
            Op::MovSx32B => regs[dst] = u64::from(s as i8 as i32 as u32),
            Op::MovSx32H => regs[dst] = u64::from(s as i16 as i32 as u32),
            Op::Arsh32 => regs[dst] = u64::from(((regs[dst] as i32) >> (s & 31)) as u32),
            Op::Neg32 => regs[dst] = u64::from((regs[dst] as u32).wrapping_neg()),
            Op::Le16 => regs[dst] = u64::from(regs[dst] as u16),
            Op::Le32 => regs[dst] = u64::from(regs[dst] as u32),
            Op::Le64 => {}
            Op::Swap16 => regs[dst] = u64::from((regs[dst] as u16).swap_bytes()),
            Op::Swap32 => regs[dst] = u64::from((regs[dst] as u32).swap_bytes()),
            Op::Swap64 => regs[dst] = regs[dst].swap_bytes(),
            Op::Ja => pc = d.target as usize,
            Op::Jeq => jump_if(&mut pc, d, regs[dst] == s),
            Op::Jgt => jump_if(&mut pc, d, regs[dst] > s),
            Op::Jge => jump_if(&mut pc, d, regs[dst] >= s),
            Op::Jset => jump_if(&mut pc, d, regs[dst] & s != 0),
            Op::Jne => jump_if(&mut pc, d, regs[dst] != s),
            Op::Jsgt => jump_if(&mut pc, d, (regs[dst] as i64) > s as i64),
            Op::Jsge => jump_if(&mut pc, d, (regs[dst] as i64) >= s as i64),
            Op::Jlt => jump_if(&mut pc, d, regs[dst] < s),
            Op::Jle => jump_if(&mut pc, d, regs[dst] <= s),
            Op::Jslt => jump_if(&mut pc, d, (regs[dst] as i64) < s as i64),
            Op::Jsle => jump_if(&mut pc, d, (regs[dst] as i64) <= s as i64),
            Op::Jeq32 => jump_if(&mut pc, d, regs[dst] as u32 == s as u32),
            Op::Jgt32 => jump_if(&mut pc, d, regs[dst] as u32 > s as u32),
            Op::Jge32 => jump_if(&mut pc, d, regs[dst] as u32 >= s as u32),
            Op::Jset32 => jump_if(&mut pc, d, regs[dst] as u32 & s as u32 != 0),
            Op::Jne32 => jump_if(&mut pc, d, regs[dst] as u32 != s as u32),
            Op::Jsgt32 => jump_if(&mut pc, d, regs[dst] as i32 > s as i32),
            Op::Jsge32 => jump_if(&mut pc, d, regs[dst] as i32 >= s as i32),
            Op::Jlt32 => jump_if(&mut pc, d, (regs[dst] as u32) < s as u32),
            Op::Jle32 => jump_if(&mut pc, d, regs[dst] as u32 <= s as u32),
            Op::Jslt32 => jump_if(&mut pc, d, (regs[dst] as i32) < s as i32),
            Op::Jsle32 => jump_if(&mut pc, d, regs[dst] as i32 <= s as i32),
            Op::Call => {
                let args = [regs[1], regs[2], regs[3], regs[4], regs[5]];
                let mut cx = HelperContext {
                    mem,
                    platform: env.platform,
                    log: env.log,
                    rng: env.rng,
                };
                regs[0] = match HelperTarget::decode(d.target) {
                    Some(HelperTarget::Builtin(h)) => call_builtin(h, &mut cx, args),
                    Some(HelperTarget::Custom(i)) => match env.helpers.custom(i) {
                        Some(f) => f(&mut cx, args),
                        None => return Err(fail(pc - 1, Fault::UnknownHelper)),
                    },
                    None => return Err(fail(pc - 1, Fault::UnknownHelper)),
                };
                // Helpers clobber the caller-saved argument registers.
                regs[1..6].fill(0);
            }
            Op::CallLocal => {
                if depth + 1 >= MAX_CALL_DEPTH {
                    return Err(fail(pc - 1, Fault::CallDepth));
                }
                frames[depth] = Frame {
                    ret_pc: pc,
                    saved: [regs[6], regs[7], regs[8], regs[9]],
                };
                depth += 1;
                regs[10] = stack_top(depth);
                // A fresh frame starts zeroed, like frame 0 of every run.
                let lo = frame_top(depth) - STACK_SIZE;
                mem.stack[lo..lo + STACK_SIZE].fill(0);
                mem.stack_lo = lo;
                pc = d.target as usize;
            }
            Op::Exit => {
                if depth == 0 {
                    return Ok(regs[0]);
                }
                depth -= 1;
                let f = frames[depth];
                regs[6..10].copy_from_slice(&f.saved);
                regs[10] = stack_top(depth);
                mem.stack_lo = frame_top(depth) - STACK_SIZE;
                pc = f.ret_pc;
            }
            Op::LdImm64 => {
                regs[dst] = d.imm as u64;
                pc += 1;
            }
            Op::LdImm64Hi => {}
            Op::LdxB | Op::LdxH | Op::LdxW | Op::LdxDW => {
                let size = match d.op {
                    Op::LdxB => 1,
                    Op::LdxH => 2,
                    Op::LdxW => 4,
                    _ => 8,
                };
                regs[dst] = mem
                    .load(addr(regs[d.src as usize], d.off), size)
                    .map_err(|e| fail(pc - 1, e.into()))?;
            }
            Op::LdxSxB => {
                regs[dst] = mem
                    .load(addr(regs[d.src as usize], d.off), 1)
                    .map_err(|e| fail(pc - 1, e.into()))? as i8 as i64
                    as u64;
            }
            Op::LdxSxH => {
                regs[dst] = mem
                    .load(addr(regs[d.src as usize], d.off), 2)
                    .map_err(|e| fail(pc - 1, e.into()))? as i16 as i64
                    as u64;
            }
            Op::LdxSxW => {
                regs[dst] = mem
                    .load(addr(regs[d.src as usize], d.off), 4)
                    .map_err(|e| fail(pc - 1, e.into()))? as i32 as i64
                    as u64;
            }
            Op::StB | Op::StH | Op::StW | Op::StDW | Op::StxB | Op::StxH | Op::StxW | Op::StxDW => {
                let (size, value) = match d.op {
                    Op::StB => (1, d.imm as u64),
                    Op::StH => (2, d.imm as u64),
                    Op::StW => (4, d.imm as u64),
                    Op::StDW => (8, d.imm as u64),
                    Op::StxB => (1, regs[d.src as usize]),
                    Op::StxH => (2, regs[d.src as usize]),
                    Op::StxW => (4, regs[d.src as usize]),
                    _ => (8, regs[d.src as usize]),
                };
                mem.store(addr(regs[dst], d.off), size, value)
                    .map_err(|e| fail(pc - 1, e.into()))?;
            }
            Op::AtomicW => atomic(mem, &mut regs, d, 4).map_err(|e| fail(pc - 1, e.into()))?,
            Op::AtomicDW => atomic(mem, &mut regs, d, 8).map_err(|e| fail(pc - 1, e.into()))?,
        }
    }
}

#[inline(always)]
fn jump_if(pc: &mut usize, d: &DInsn, cond: bool) {
    if cond {
        *pc = d.target as usize;
    }
}
