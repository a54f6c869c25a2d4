//! Emission: IR with its register allocation → `nexus-insn` instructions,
//! with jump offsets resolved and a line table (instruction index → source
//! statement).

use crate::ir::{Base, Func, Label, Op, Opnd, R};
use crate::regalloc::{Allocation, Loc};
use nexus_insn::op::{PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE};
use nexus_insn::{AluOp, Insn, Reg, Size, Src};
use nexus_lang::Span;
use std::collections::HashMap;

/// First spill temporary.
const T1: Reg = Reg::R9;
/// Second spill temporary.
const T2: Reg = Reg::R0;

/// Why emission failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// A jump farther than a 16-bit offset reaches.
    #[error("a jump spans {0} instructions, more than a 16-bit offset reaches")]
    JumpTooFar(i64),
    /// An offset outside the 16-bit range.
    #[error("memory offset {0} does not fit an instruction")]
    Offset(i64),
}

/// Emitted code with its line markers `(insn index, span, what)`.
#[derive(Debug, Clone, Default)]
pub struct Emitted {
    /// Instructions.
    pub insns: Vec<Insn>,
    /// Line markers.
    pub lines: Vec<(u32, Span, String)>,
}

struct Emitter<'a> {
    a: &'a Allocation,
    out: Vec<Insn>,
    fixups: Vec<(usize, Label)>,
    labels: HashMap<Label, usize>,
}

fn off16(v: i64) -> Result<i16, EmitError> {
    i16::try_from(v).map_err(|_| EmitError::Offset(v))
}

impl Emitter<'_> {
    fn loc(&self, r: R) -> Loc {
        match r {
            R::P(k) => Loc::Reg(k),
            R::V(n) => self.a.vregs[n as usize],
        }
    }

    /// The machine register holding `r` for reading, loading a spilled
    /// value into `tmp` first.
    fn read(&mut self, r: R, tmp: Reg) -> Reg {
        match self.loc(r) {
            Loc::Reg(k) => Reg(k),
            Loc::Spill(off) => {
                self.out.push(Insn::ldx(Size::DW, tmp, Reg::FP, off));
                tmp
            }
        }
    }

    /// The register to write `r` into (`tmp` when spilled; call
    /// [`Emitter::write_back`] after).
    fn dest(&self, r: R, tmp: Reg) -> Reg {
        match self.loc(r) {
            Loc::Reg(k) => Reg(k),
            Loc::Spill(_) => tmp,
        }
    }

    fn write_back(&mut self, r: R, from: Reg) {
        if let Loc::Spill(off) = self.loc(r) {
            self.out.push(Insn::stx(Size::DW, Reg::FP, off, from));
        }
    }

    fn src(&mut self, o: Opnd, tmp: Reg) -> Src {
        match o {
            Opnd::R(r) => Src::Reg(self.read(r, tmp)),
            Opnd::Imm(i) => Src::Imm(i),
        }
    }

    /// Base register and offset of a memory operand.
    fn base(&mut self, b: Base, off: i32, tmp: Reg) -> Result<(Reg, i16), EmitError> {
        match b {
            Base::R(r) => Ok((self.read(r, tmp), off16(i64::from(off))?)),
            Base::Slot(s) => Ok((
                Reg::FP,
                off16(i64::from(self.a.slots[s.0 as usize]) + i64::from(off))?,
            )),
        }
    }

    fn op(&mut self, op: &Op) -> Result<(), EmitError> {
        match op {
            Op::Mov(d, s) => {
                let src = self.src(*s, T2);
                match (self.loc(*d), src) {
                    (Loc::Spill(off), Src::Reg(r)) => {
                        self.out.push(Insn::stx(Size::DW, Reg::FP, off, r))
                    }
                    (Loc::Spill(off), Src::Imm(i)) => {
                        self.out.push(Insn::st(Size::DW, Reg::FP, off, i))
                    }
                    (Loc::Reg(k), Src::Reg(r)) if r.0 == k => {}
                    (Loc::Reg(k), src) => self.out.push(Insn::alu64(AluOp::Mov, Reg(k), src)),
                }
            }
            Op::Imm64(d, v) => {
                let r = self.dest(*d, T1);
                self.out.extend(Insn::ld_imm64(r, *v));
                self.write_back(*d, r);
            }
            Op::Alu(op, d, s) => {
                let src = self.src(*s, T2);
                let r = self.read(*d, T1);
                self.out.push(Insn::alu64(*op, r, src));
                self.write_back(*d, r);
            }
            Op::Neg(d) => {
                let r = self.read(*d, T1);
                self.out.push(Insn::neg64(r));
                self.write_back(*d, r);
            }
            Op::Movsx(d, s, bits) => {
                let src = self.read(*s, T2);
                let r = self.dest(*d, T1);
                self.out.push(Insn::movsx64(r, src, *bits));
                self.write_back(*d, r);
            }
            Op::Load {
                size,
                signed,
                dst,
                base,
                off,
            } => {
                let (b, o) = self.base(*base, *off, T1)?;
                let r = self.dest(*dst, T2);
                self.out.push(if *signed {
                    Insn::ldxsx(*size, r, b, o)
                } else {
                    Insn::ldx(*size, r, b, o)
                });
                self.write_back(*dst, r);
            }
            Op::Store {
                size,
                base,
                off,
                src,
            } => {
                let (b, o) = self.base(*base, *off, T1)?;
                match self.src(*src, T2) {
                    Src::Reg(r) => self.out.push(Insn::stx(*size, b, o, r)),
                    Src::Imm(i) => self.out.push(Insn::st(*size, b, o, i)),
                }
            }
            Op::Atomic {
                op,
                size,
                base,
                off,
                src,
            } => {
                let (b, o) = self.base(*base, *off, T1)?;
                let r = self.read(*src, T2);
                self.out.push(Insn::atomic(*size, *op, b, o, r));
            }
            Op::Addr { dst, slot, off } => {
                let r = self.dest(*dst, T1);
                let o = i64::from(self.a.slots[slot.0 as usize]) + i64::from(*off);
                let o = i32::try_from(o).map_err(|_| EmitError::Offset(o))?;
                self.out.push(Insn::mov64(r, Reg::FP));
                self.out.push(Insn::alu64(AluOp::Add, r, Src::Imm(o)));
                self.write_back(*dst, r);
            }
            Op::Map { dst, map } => {
                let r = self.dest(*dst, T1);
                self.out
                    .extend(Insn::ld_imm64_pseudo(r, PSEUDO_MAP_IDX, *map as i32, 0));
                self.write_back(*dst, r);
            }
            Op::MapValue { dst, map, off } => {
                let r = self.dest(*dst, T1);
                self.out.extend(Insn::ld_imm64_pseudo(
                    r,
                    PSEUDO_MAP_IDX_VALUE,
                    *map as i32,
                    *off as i32,
                ));
                self.write_back(*dst, r);
            }
            Op::Call(h) => self.out.push(Insn::call_helper(*h)),
            Op::Label(l) => {
                self.labels.insert(*l, self.out.len());
            }
            Op::Jmp(l) => {
                self.fixups.push((self.out.len(), *l));
                self.out.push(Insn::ja(0));
            }
            Op::Br { cond, a, b, target } => {
                let src = self.src(*b, T2);
                let ra = self.read(*a, T1);
                self.fixups.push((self.out.len(), *target));
                self.out.push(Insn::jmp(*cond, ra, src, 0));
            }
            Op::Exit => self.out.push(Insn::exit()),
            Op::Comment(_) | Op::Line { .. } => {}
        }
        Ok(())
    }
}

/// Emit `f` with allocation `a`.
pub fn emit(f: &Func, a: &Allocation) -> Result<Emitted, EmitError> {
    let mut e = Emitter {
        a,
        out: Vec::new(),
        fixups: Vec::new(),
        labels: HashMap::new(),
    };
    let mut lines = Vec::new();
    for op in &f.ops {
        if let Op::Line { span, what } = op {
            lines.push((e.out.len() as u32, *span, what.clone()));
        }
        e.op(op)?;
    }
    for (at, l) in &e.fixups {
        let target = e.labels.get(l).copied().unwrap_or(e.out.len());
        let rel = target as i64 - (*at as i64 + 1);
        e.out[*at].off = i16::try_from(rel).map_err(|_| EmitError::JumpTooFar(rel))?;
    }
    Ok(Emitted {
        insns: e.out,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Slot;

    #[test]
    fn jumps_resolve_and_spills_go_through_temporaries() {
        let f = Func {
            vregs: 2,
            labels: 1,
            slots: vec![8],
            ops: vec![
                Op::Line {
                    span: Span::new(1, 2),
                    what: "x".into(),
                },
                Op::Mov(R::V(0), Opnd::Imm(5)),
                Op::Br {
                    cond: nexus_insn::JmpCond::Eq,
                    a: R::V(0),
                    b: Opnd::R(R::V(1)),
                    target: Label(0),
                },
                Op::Store {
                    size: Size::DW,
                    base: Base::Slot(Slot(0)),
                    off: 0,
                    src: Opnd::R(R::V(0)),
                },
                Op::Label(Label(0)),
                Op::Mov(R::P(0), Opnd::Imm(0)),
                Op::Exit,
            ],
        };
        let a = Allocation {
            vregs: vec![Loc::Reg(6), Loc::Spill(-16)],
            slots: vec![-8],
            stack: 16,
        };
        let e = emit(&f, &a).unwrap();
        assert_eq!(e.lines, vec![(0, Span::new(1, 2), "x".to_string())]);
        assert_eq!(
            e.insns,
            vec![
                Insn::mov64_imm(Reg::R6, 5),
                Insn::ldx(Size::DW, Reg::R0, Reg::FP, -16),
                Insn::jmp(nexus_insn::JmpCond::Eq, Reg::R6, Src::Reg(Reg::R0), 1),
                Insn::stx(Size::DW, Reg::FP, -8, Reg::R6),
                Insn::mov64_imm(Reg::R0, 0),
                Insn::exit(),
            ]
        );
    }
}
