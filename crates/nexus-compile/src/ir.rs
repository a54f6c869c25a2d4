//! The intermediate representation: eBPF-shaped operations over virtual
//! registers, with labels, stack slots, map pseudo-loads and source
//! markers. Physical registers r0–r5 appear only around helper calls
//! (arguments, return value) and the final `exit`.

use nexus_insn::{AluOp, AtomicOp, Helper, JmpCond, Size};
use nexus_lang::Span;
use std::fmt::{self, Write as _};

/// A register: virtual (allocated later) or physical r0–r5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum R {
    /// Virtual register `vN`.
    V(u32),
    /// Physical register `rN` (0–5).
    P(u8),
}

/// A register or a 32-bit immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opnd {
    /// Register.
    R(R),
    /// Immediate (sign-extended to 64 bits).
    Imm(i32),
}

/// A stack slot, laid out after register allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot(pub u32);

/// A jump target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label(pub u32);

/// The base of a memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// A pointer in a register.
    R(R),
    /// A stack slot (frame-pointer relative).
    Slot(Slot),
}

/// One IR operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `dst = src`.
    Mov(R, Opnd),
    /// `dst = imm64`.
    Imm64(R, u64),
    /// `dst = dst OP src` (64-bit).
    Alu(AluOp, R, Opnd),
    /// `dst = -dst`.
    Neg(R),
    /// `dst = sign-extend(src, bits)`.
    Movsx(R, R, i16),
    /// `dst = *(size *)(base + off)`, sign-extending when `signed`.
    Load {
        /// Width.
        size: Size,
        /// Sign-extend.
        signed: bool,
        /// Destination.
        dst: R,
        /// Base.
        base: Base,
        /// Offset.
        off: i32,
    },
    /// `*(size *)(base + off) = src`.
    Store {
        /// Width.
        size: Size,
        /// Base.
        base: Base,
        /// Offset.
        off: i32,
        /// Value.
        src: Opnd,
    },
    /// `lock *(size *)(base + off) OP= src` (no fetch): a read-modify-write
    /// that concurrent CPUs cannot interleave, e.g. setting one bit of a
    /// word other CPUs set bits of too.
    Atomic {
        /// The operation (`Add`/`Or`/`And`/`Xor` without fetch).
        op: AtomicOp,
        /// Width (`W` or `DW`).
        size: Size,
        /// Base.
        base: Base,
        /// Offset.
        off: i32,
        /// Operand.
        src: R,
    },
    /// `dst = fp + slot + off` (address of stack memory).
    Addr {
        /// Destination.
        dst: R,
        /// Slot.
        slot: Slot,
        /// Offset in the slot.
        off: i32,
    },
    /// `dst = &maps[map]` (`LD_IMM64` with `PSEUDO_MAP_IDX`).
    Map {
        /// Destination.
        dst: R,
        /// Artifact map index.
        map: u32,
    },
    /// `dst = &maps[map].value[0] + off` (`PSEUDO_MAP_IDX_VALUE`).
    MapValue {
        /// Destination.
        dst: R,
        /// Artifact map index.
        map: u32,
        /// Byte offset.
        off: u32,
    },
    /// Call a helper: arguments in r1..r5, result in r0, r1–r5 clobbered.
    Call(Helper),
    /// A jump target.
    Label(Label),
    /// `goto label`.
    Jmp(Label),
    /// `if a COND b goto target`.
    Br {
        /// Condition.
        cond: JmpCond,
        /// Left operand.
        a: R,
        /// Right operand.
        b: Opnd,
        /// Target.
        target: Label,
    },
    /// Return r0.
    Exit,
    /// A comment for `--emit ir`.
    Comment(String),
    /// Code from here on belongs to this source statement.
    Line {
        /// Source span.
        span: Span,
        /// What it does.
        what: String,
    },
}

/// The IR of one program.
#[derive(Debug, Clone, Default)]
pub struct Func {
    /// Operations in order.
    pub ops: Vec<Op>,
    /// Stack slot sizes (bytes, multiples of 8).
    pub slots: Vec<u32>,
    /// Number of virtual registers.
    pub vregs: u32,
    /// Number of labels.
    pub labels: u32,
}

impl fmt::Display for R {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            R::V(n) => write!(f, "v{n}"),
            R::P(n) => write!(f, "r{n}"),
        }
    }
}

impl fmt::Display for Opnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Opnd::R(r) => write!(f, "{r}"),
            Opnd::Imm(i) => write!(f, "{i}"),
        }
    }
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base::R(r) => write!(f, "{r}"),
            Base::Slot(s) => write!(f, "slot{}", s.0),
        }
    }
}

fn size_name(s: Size) -> &'static str {
    match s {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Mov(d, s) => write!(f, "  {d} = {s}"),
            Op::Imm64(d, v) => write!(f, "  {d} = {v:#x} ll"),
            Op::Alu(op, d, s) => write!(f, "  {d} {:?}= {s}", op),
            Op::Neg(d) => write!(f, "  {d} = -{d}"),
            Op::Movsx(d, s, b) => write!(f, "  {d} = (s{b}){s}"),
            Op::Load {
                size,
                signed,
                dst,
                base,
                off,
            } => write!(
                f,
                "  {dst} = *({}{} *)({base} {off:+})",
                if *signed { "s" } else { "" },
                size_name(*size)
            ),
            Op::Store {
                size,
                base,
                off,
                src,
            } => write!(f, "  *({} *)({base} {off:+}) = {src}", size_name(*size)),
            Op::Atomic {
                op,
                size,
                base,
                off,
                src,
            } => write!(
                f,
                "  lock *({} *)({base} {off:+}) {op:?}= {src}",
                size_name(*size)
            ),
            Op::Addr { dst, slot, off } => write!(f, "  {dst} = &slot{} {off:+}", slot.0),
            Op::Map { dst, map } => write!(f, "  {dst} = map[{map}]"),
            Op::MapValue { dst, map, off } => write!(f, "  {dst} = &map[{map}].value {off:+}"),
            Op::Call(h) => write!(f, "  call {}", h.name()),
            Op::Label(l) => write!(f, "L{}:", l.0),
            Op::Jmp(l) => write!(f, "  goto L{}", l.0),
            Op::Br { cond, a, b, target } => {
                write!(f, "  if {a} {cond:?} {b} goto L{}", target.0)
            }
            Op::Exit => write!(f, "  exit"),
            Op::Comment(c) => write!(f, "  ; {c}"),
            Op::Line { span, what } => write!(f, "  ; --- {what} @{span}"),
        }
    }
}

impl Func {
    /// Drop side-effect-free operations whose result is never read (for
    /// instance the copy of a helper's return value nobody uses).
    pub fn remove_dead(&mut self) {
        self.remove_unreachable();
        loop {
            let mut used = vec![false; self.vregs as usize];
            for op in &self.ops {
                for r in crate::regalloc::regs(op).0 {
                    if let R::V(n) = r {
                        used[n as usize] = true;
                    }
                }
            }
            let dead = |r: &R| matches!(r, R::V(n) if !used[*n as usize]);
            let mut uses = vec![0u32; self.vregs as usize];
            for op in &self.ops {
                for r in crate::regalloc::regs(op).0 {
                    if let R::V(n) = r {
                        uses[n as usize] += 1;
                    }
                }
            }
            // `a = X; b = a` with `a` read only there becomes `b = X`.
            for i in 1..self.ops.len() {
                let fold = match (&self.ops[i - 1], &self.ops[i]) {
                    (Op::Mov(R::V(a), x), Op::Mov(b, Opnd::R(R::V(a2))))
                        if a == a2 && uses[*a as usize] == 1 =>
                    {
                        Some((*a, *x, *b))
                    }
                    _ => None,
                };
                if let Some((a, x, b)) = fold {
                    self.ops[i] = Op::Mov(b, x);
                    self.ops[i - 1] = Op::Comment(String::new());
                    uses[a as usize] = 0;
                }
            }
            self.ops
                .retain(|op| !matches!(op, Op::Comment(c) if c.is_empty()));
            let before = self.ops.len();
            self.ops.retain(|op| match op {
                Op::Mov(d, _)
                | Op::Imm64(d, _)
                | Op::Movsx(d, _, _)
                | Op::Load { dst: d, .. }
                | Op::Addr { dst: d, .. }
                | Op::Map { dst: d, .. }
                | Op::MapValue { dst: d, .. } => !dead(d),
                _ => true,
            });
            if self.ops.len() == before {
                return;
            }
        }
    }

    /// Drop code no path reaches (after a `goto` or `exit`, until a label
    /// something jumps to): the verifier rejects unreachable instructions,
    /// and `exit()`/`return` inside blocks leave such code behind.
    pub fn remove_unreachable(&mut self) {
        loop {
            let targets: std::collections::HashSet<Label> = self
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::Jmp(l) | Op::Br { target: l, .. } => Some(*l),
                    _ => None,
                })
                .collect();
            let mut reachable = true;
            let before = self.ops.len();
            self.ops.retain(|op| {
                match op {
                    Op::Label(l) if targets.contains(l) => reachable = true,
                    // Markers emit nothing; keep them for the line table.
                    Op::Line { .. } | Op::Comment(_) | Op::Label(_) => return true,
                    _ => {}
                }
                let keep = reachable;
                if matches!(op, Op::Jmp(_) | Op::Exit) {
                    reachable = false;
                }
                keep
            });
            if self.ops.len() == before {
                return;
            }
        }
    }

    /// The IR as text, one operation per line.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.slots.iter().enumerate() {
            let _ = writeln!(out, "  ; slot{i}: {s} bytes");
        }
        for op in &self.ops {
            let _ = writeln!(out, "{op}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_code_is_removed() {
        let mut f = Func {
            vregs: 1,
            labels: 3,
            ops: vec![
                Op::Jmp(Label(0)),
                Op::Mov(R::V(0), Opnd::Imm(1)),
                Op::Jmp(Label(1)),
                Op::Label(Label(1)),
                Op::Mov(R::V(0), Opnd::Imm(2)),
                Op::Label(Label(0)),
                Op::Mov(R::P(0), Opnd::Imm(0)),
                Op::Exit,
                Op::Label(Label(2)),
                Op::Exit,
            ],
            ..Func::default()
        };
        f.remove_unreachable();
        // Label 1 is only targeted from dead code, so what follows it dies too.
        assert_eq!(
            f.ops,
            vec![
                Op::Jmp(Label(0)),
                Op::Label(Label(1)),
                Op::Label(Label(0)),
                Op::Mov(R::P(0), Opnd::Imm(0)),
                Op::Exit,
                Op::Label(Label(2)),
            ]
        );
    }

    #[test]
    fn dead_results_and_copies_are_removed() {
        let mut f = Func {
            vregs: 4,
            ops: vec![
                Op::Call(Helper::KtimeGetNs),
                Op::Mov(R::V(0), Opnd::R(R::P(0))),
                Op::Call(Helper::GetPrandomU32),
                Op::Mov(R::V(1), Opnd::R(R::P(0))),
                Op::Mov(R::V(2), Opnd::R(R::V(1))),
                Op::Mov(R::V(3), Opnd::Imm(7)),
                Op::Mov(R::P(0), Opnd::R(R::V(2))),
                Op::Exit,
            ],
            ..Func::default()
        };
        f.remove_dead();
        assert_eq!(
            f.ops,
            vec![
                Op::Call(Helper::KtimeGetNs),
                Op::Call(Helper::GetPrandomU32),
                // r0 = v2 = v1 = r0 folds all the way.
                Op::Mov(R::P(0), Opnd::R(R::P(0))),
                Op::Exit,
            ]
        );
        assert!(f.dump().contains("call get_prandom_u32"));
    }
}
