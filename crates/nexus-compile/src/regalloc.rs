//! Register allocation (linear scan over live intervals) and stack layout.
//!
//! Virtual registers get r1–r5 when no helper call or argument set-up
//! happens inside their interval, otherwise callee-saved r6–r8; the rest
//! are spilled to 8-byte stack slots. r9 and r0 are kept free as the two
//! temporaries spilled operands are loaded into.

use crate::ir::{Base, Func, Op, Opnd, R};
use std::collections::HashMap;

/// Where a virtual register lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// A machine register.
    Reg(u8),
    /// A stack slot at `fp + off`.
    Spill(i16),
}

/// The result of allocation.
#[derive(Debug, Clone)]
pub struct Allocation {
    /// Location per virtual register (unused ones get `Reg(9)`, never read).
    pub vregs: Vec<Loc>,
    /// Frame-pointer offset of each IR stack slot.
    pub slots: Vec<i16>,
    /// Total stack bytes used.
    pub stack: u32,
}

/// Why a program does not fit the machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// More than 512 bytes of stack.
    #[error("the program needs {0} bytes of stack, more than the 512 the kernel allows")]
    Stack(u32),
}

/// Registers read (`uses`) and written (`defs`) by an operation.
pub fn regs(op: &Op) -> (Vec<R>, Vec<R>) {
    let opnd = |o: &Opnd| match o {
        Opnd::R(r) => vec![*r],
        Opnd::Imm(_) => vec![],
    };
    let base = |b: &Base| match b {
        Base::R(r) => vec![*r],
        Base::Slot(_) => vec![],
    };
    match op {
        Op::Mov(d, s) => (opnd(s), vec![*d]),
        Op::Imm64(d, _) => (vec![], vec![*d]),
        Op::Alu(_, d, s) => {
            let mut u = opnd(s);
            u.push(*d);
            (u, vec![*d])
        }
        Op::Neg(d) => (vec![*d], vec![*d]),
        Op::Movsx(d, s, _) => (vec![*s], vec![*d]),
        Op::Load { dst, base: b, .. } => (base(b), vec![*dst]),
        Op::Store { base: b, src, .. } => {
            let mut u = base(b);
            u.extend(opnd(src));
            (u, vec![])
        }
        Op::Atomic { base: b, src, .. } => {
            let mut u = base(b);
            u.push(*src);
            (u, vec![])
        }
        Op::Addr { dst, .. } | Op::Map { dst, .. } | Op::MapValue { dst, .. } => {
            (vec![], vec![*dst])
        }
        Op::Call(h) => (
            (1..=h.arg_count()).map(R::P).collect(),
            (0..=5).map(R::P).collect(),
        ),
        Op::Br { a, b, .. } => {
            let mut u = vec![*a];
            u.extend(opnd(b));
            (u, vec![])
        }
        Op::Exit => (vec![R::P(0)], vec![]),
        Op::Label(_) | Op::Jmp(_) | Op::Comment(_) | Op::Line { .. } => (vec![], vec![]),
    }
}

/// Live interval `[start, end]` (op positions) of every virtual register,
/// stretched over loops: a register live into a backward jump's target
/// stays live until the jump.
fn intervals(f: &Func) -> Vec<Option<(usize, usize)>> {
    let mut iv: Vec<Option<(usize, usize)>> = vec![None; f.vregs as usize];
    let mut labels = HashMap::new();
    for (p, op) in f.ops.iter().enumerate() {
        if let Op::Label(l) = op {
            labels.insert(*l, p);
        }
        let (u, d) = regs(op);
        for r in u.into_iter().chain(d) {
            if let R::V(n) = r {
                let e = &mut iv[n as usize];
                *e = Some(e.map_or((p, p), |(s, _)| (s, p)));
            }
        }
    }
    let back: Vec<(usize, usize)> = f
        .ops
        .iter()
        .enumerate()
        .filter_map(|(p, op)| match op {
            Op::Jmp(l) | Op::Br { target: l, .. } => {
                labels.get(l).filter(|&&h| h < p).map(|&h| (h, p))
            }
            _ => None,
        })
        .collect();
    let mut changed = true;
    while changed {
        changed = false;
        for &(h, j) in &back {
            for (s, e) in iv.iter_mut().flatten() {
                if *s < h && *e >= h && *e < j {
                    *e = j;
                    changed = true;
                }
            }
        }
    }
    iv
}

/// Ranges during which physical registers r0–r5 hold a value of their own
/// (helper arguments being set up, a result not yet moved) or are
/// clobbered by a call.
fn phys_ranges(f: &Func) -> Vec<Vec<(usize, usize)>> {
    let mut ranges = vec![Vec::new(); 6];
    let mut open: [Option<usize>; 6] = [None; 6];
    for (p, op) in f.ops.iter().enumerate() {
        let (uses, defs) = regs(op);
        for r in uses {
            if let R::P(k) = r
                && let Some(a) = open[k as usize].take()
            {
                ranges[k as usize].push((a, p));
            }
        }
        if let Op::Call(_) = op {
            for k in 0..6 {
                if let Some(a) = open[k].take() {
                    ranges[k].push((a, p));
                }
                ranges[k].push((p, p));
            }
            open[0] = Some(p);
            continue;
        }
        for r in defs {
            if let R::P(k) = r {
                open[k as usize] = Some(p);
            }
        }
    }
    for (k, o) in open.iter().enumerate() {
        if let Some(a) = o {
            ranges[k].push((*a, f.ops.len()));
        }
    }
    ranges
}

/// Allocate registers and lay out the stack.
pub fn allocate(f: &Func) -> Result<Allocation, AllocError> {
    let iv = intervals(f);
    let phys = phys_ranges(f);
    let mut order: Vec<(usize, usize, u32)> = iv
        .iter()
        .enumerate()
        .filter_map(|(v, i)| i.map(|(s, e)| (s, e, v as u32)))
        .collect();
    order.sort();
    let mut vregs = vec![Loc::Reg(9); f.vregs as usize];
    // (end, register) of intervals currently holding a register.
    let mut active: Vec<(usize, u8)> = Vec::new();
    let mut spills = 0u32;
    let slot_bytes: u32 = f.slots.iter().sum();
    for (s, e, v) in order {
        active.retain(|&(end, _)| end > s);
        let free = |r: u8| !active.iter().any(|&(_, a)| a == r);
        let phys_ok = |r: u8| phys[r as usize].iter().all(|&(a, b)| !(s < b && a < e));
        let pick = (1..=5u8)
            .find(|&r| free(r) && phys_ok(r))
            .or_else(|| (6..=8u8).find(|&r| free(r)));
        match pick {
            Some(r) => {
                vregs[v as usize] = Loc::Reg(r);
                active.push((e, r));
            }
            None => {
                spills += 1;
                let off = slot_bytes + spills * 8;
                vregs[v as usize] = Loc::Spill(-(off as i32) as i16);
            }
        }
    }
    let stack = slot_bytes + spills * 8;
    if stack > 512 {
        return Err(AllocError::Stack(stack));
    }
    let mut slots = Vec::with_capacity(f.slots.len());
    let mut off = 0u32;
    for size in &f.slots {
        off += size;
        slots.push(-(off as i32) as i16);
    }
    Ok(Allocation {
        vregs,
        slots,
        stack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Label;
    use nexus_insn::{Helper, JmpCond};

    #[test]
    fn values_live_across_calls_get_callee_saved_registers() {
        let f = Func {
            vregs: 3,
            ops: vec![
                Op::Mov(R::V(0), Opnd::Imm(1)),
                Op::Mov(R::V(1), Opnd::Imm(2)),
                Op::Mov(R::P(1), Opnd::R(R::V(1))),
                Op::Call(Helper::KtimeGetNs),
                Op::Mov(R::V(2), Opnd::R(R::P(0))),
                Op::Alu(nexus_insn::AluOp::Add, R::V(2), Opnd::R(R::V(0))),
            ],
            ..Func::default()
        };
        let a = allocate(&f).unwrap();
        assert!(matches!(a.vregs[0], Loc::Reg(6..=8)), "{:?}", a.vregs);
        // v1 dies where r1 is written, so r1 itself is fine but others too.
        assert!(matches!(a.vregs[1], Loc::Reg(_)));
        assert!(matches!(a.vregs[2], Loc::Reg(1..=5)), "{:?}", a.vregs);
    }

    #[test]
    fn loops_stretch_intervals_and_spills_happen() {
        let mut ops = Vec::new();
        for v in 0..10 {
            ops.push(Op::Mov(R::V(v), Opnd::Imm(v as i32)));
        }
        ops.push(Op::Label(Label(0)));
        ops.push(Op::Call(Helper::KtimeGetNs));
        for v in 0..10 {
            ops.push(Op::Alu(nexus_insn::AluOp::Add, R::V(v), Opnd::Imm(1)));
        }
        ops.push(Op::Br {
            cond: JmpCond::Ne,
            a: R::V(0),
            b: Opnd::Imm(5),
            target: Label(0),
        });
        let f = Func {
            vregs: 10,
            labels: 1,
            ops,
            ..Func::default()
        };
        let a = allocate(&f).unwrap();
        let spilled = a
            .vregs
            .iter()
            .filter(|l| matches!(l, Loc::Spill(_)))
            .count();
        assert_eq!(spilled, 7, "{:?}", a.vregs);
        assert!(a.vregs.iter().all(|l| !matches!(l, Loc::Reg(1..=5))));
    }
}
