//! A small assembler for the ubpf-style text the bpf_conformance suite's
//! `.data` files use (`mov32 %r0, 1`, `ldxh %r0, [%r1+2]`, `jne %r1, 0, L1`,
//! `lock fetch add32 [%r10-8], %r1`, `call local f`), written for the tests.

use nexus_insn::op::*;
use nexus_insn::{AluOp, AtomicOp, Endian, Insn, JmpCond, Reg, Size, Src};
use std::collections::HashMap;

fn reg(s: &str) -> Result<Reg, String> {
    let n = s
        .trim()
        .strip_prefix("%r")
        .ok_or_else(|| format!("`{s}` is not a register"))?;
    n.parse::<u8>()
        .ok()
        .filter(|n| *n <= 10)
        .map(Reg)
        .ok_or_else(|| format!("bad register `{s}`"))
}

fn int(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => body.parse::<u64>(),
    }
    .map_err(|_| format!("`{s}` is not a number"))?;
    Ok(if neg {
        (v as i64).wrapping_neg()
    } else {
        v as i64
    })
}

/// An immediate as the 32 bits an instruction holds.
fn imm32(s: &str) -> Result<i32, String> {
    Ok(int(s)? as i32)
}

fn operand(s: &str) -> Result<Src, String> {
    if s.trim().starts_with('%') {
        Ok(Src::Reg(reg(s)?))
    } else {
        Ok(Src::Imm(imm32(s)?))
    }
}

/// `[%rN+off]` → (N, off).
fn mem(s: &str) -> Result<(Reg, i16), String> {
    let inner = s
        .trim()
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .ok_or_else(|| format!("`{s}` is not a memory operand"))?;
    match inner.find(['+', '-']) {
        Some(p) => Ok((reg(&inner[..p])?, int(&inner[p..])? as i16)),
        None => Ok((reg(inner)?, 0)),
    }
}

fn size(c: &str) -> Option<Size> {
    Some(match c {
        "b" => Size::B,
        "h" => Size::H,
        "w" => Size::W,
        "dw" => Size::DW,
        _ => return None,
    })
}

fn alu(name: &str) -> Option<AluOp> {
    Some(match name {
        "add" => AluOp::Add,
        "sub" => AluOp::Sub,
        "mul" => AluOp::Mul,
        "div" => AluOp::Div,
        "sdiv" => AluOp::SDiv,
        "or" => AluOp::Or,
        "and" => AluOp::And,
        "lsh" => AluOp::Lsh,
        "rsh" => AluOp::Rsh,
        "mod" => AluOp::Mod,
        "smod" => AluOp::SMod,
        "xor" => AluOp::Xor,
        "mov" => AluOp::Mov,
        "arsh" => AluOp::Arsh,
        _ => return None,
    })
}

fn cond(name: &str) -> Option<JmpCond> {
    Some(match name {
        "jeq" => JmpCond::Eq,
        "jne" => JmpCond::Ne,
        "jgt" => JmpCond::Gt,
        "jge" => JmpCond::Ge,
        "jlt" => JmpCond::Lt,
        "jle" => JmpCond::Le,
        "jsgt" => JmpCond::SGt,
        "jsge" => JmpCond::SGe,
        "jslt" => JmpCond::SLt,
        "jsle" => JmpCond::SLe,
        "jset" => JmpCond::Set,
        _ => return None,
    })
}

fn width(line: &str) -> usize {
    if line.split_whitespace().next() == Some("lddw") {
        2
    } else {
        1
    }
}

/// Assemble `text`; labels are `name:` on their own line.
pub fn assemble(text: &str) -> Result<Vec<Insn>, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    let mut labels = HashMap::new();
    let mut pc = 0usize;
    for l in &lines {
        match l.strip_suffix(':') {
            Some(name) => {
                labels.insert(name.trim().to_string(), pc);
            }
            None => pc += width(l),
        }
    }
    let mut out = Vec::new();
    let body: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.ends_with(':'))
        .collect();
    // The suite jumps to `exit` without defining it: the next exit instruction.
    let mut exits = Vec::new();
    let mut at = 0;
    for l in &body {
        if *l == "exit" {
            exits.push(at);
        }
        at += width(l);
    }
    for l in &body {
        let here = out.len();
        let target = |s: &str| -> Result<i64, String> {
            let s = s.trim();
            let t = match labels.get(s) {
                Some(t) => *t,
                None if s == "exit" => *exits
                    .iter()
                    .find(|e| **e >= here)
                    .ok_or("no exit after the jump")?,
                None => return int(s),
            };
            Ok(t as i64 - here as i64 - 1)
        };
        let (mn, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
        let ops: Vec<&str> = if rest.trim().is_empty() {
            Vec::new()
        } else {
            rest.split(',').map(str::trim).collect()
        };
        let need = |n: usize| -> Result<(), String> {
            if ops.len() == n {
                Ok(())
            } else {
                Err(format!("`{l}`: expected {n} operands"))
            }
        };
        let (base, is32) = match mn.strip_suffix("32") {
            Some(b) if !b.is_empty() && !mn.starts_with("movsx") && !mn.ends_with("1632") => {
                (b, true)
            }
            _ => (mn, false),
        };
        if mn == "exit" {
            out.push(Insn::exit());
        } else if mn == "lddw" {
            need(2)?;
            out.extend(Insn::ld_imm64(reg(ops[0])?, int(ops[1])? as u64));
        } else if let Some(bits) = mn.strip_prefix("movsx") {
            need(2)?;
            let (from, to64) = match bits {
                "864" => (8, true),
                "1664" => (16, true),
                "3264" => (32, true),
                "832" => (8, false),
                "1632" => (16, false),
                _ => return Err(format!("`{l}`: unknown movsx form")),
            };
            let (d, s) = (reg(ops[0])?, reg(ops[1])?);
            out.push(if to64 {
                Insn::movsx64(d, s, from)
            } else {
                Insn::movsx32(d, s, from)
            });
        } else if base == "neg" {
            need(1)?;
            out.push(if is32 {
                Insn::neg32(reg(ops[0])?)
            } else {
                Insn::neg64(reg(ops[0])?)
            });
        } else if let Some(op) = alu(base) {
            need(2)?;
            let (d, s) = (reg(ops[0])?, operand(ops[1])?);
            out.push(if is32 {
                Insn::alu32(op, d, s)
            } else {
                Insn::alu64(op, d, s)
            });
        } else if let Some((kind, bits)) = ["le", "be", "bswap", "swap"].iter().find_map(|k| {
            mn.strip_prefix(k)
                .and_then(|b| b.parse::<i32>().ok())
                .map(|b| (*k, b))
        }) {
            need(1)?;
            let kind = match kind {
                "le" => Endian::ToLe,
                "be" => Endian::ToBe,
                _ => Endian::Swap,
            };
            out.push(Insn::endian(kind, reg(ops[0])?, bits));
        } else if mn == "ja" {
            need(1)?;
            out.push(Insn::ja(target(ops[0])? as i16));
        } else if mn == "ja32" {
            need(1)?;
            out.push(Insn::ja32(target(ops[0])? as i32));
        } else if let Some(c) = cond(base) {
            need(3)?;
            let (d, s, off) = (reg(ops[0])?, operand(ops[1])?, target(ops[2])? as i16);
            out.push(if is32 {
                Insn::jmp32(c, d, s, off)
            } else {
                Insn::jmp(c, d, s, off)
            });
        } else if mn == "call" {
            let arg = rest.trim();
            if let Some(label) = arg.strip_prefix("local") {
                out.push(Insn::call_local(target(label)? as i32));
            } else if arg.starts_with('%') {
                // callx: encoded for completeness; the VM refuses it.
                out.push(Insn::new(
                    CLASS_JMP | JMP_CALL | SRC_X,
                    reg(arg)?.0,
                    0,
                    0,
                    0,
                ));
            } else {
                out.push(Insn::call(imm32(arg)?));
            }
        } else if mn == "lock" {
            let mut words = rest.split_whitespace();
            let mut op = words.next().unwrap_or("");
            let fetch = op == "fetch";
            if fetch {
                op = words.next().unwrap_or("");
            }
            let operands: Vec<&str> = rest
                .split_once('[')
                .map(|(_, r)| r.split(',').collect())
                .unwrap_or_default();
            if operands.len() != 2 {
                return Err(format!("`{l}`: expected [mem], %reg"));
            }
            let (dst, off) = mem(&format!("[{}", operands[0]))?;
            let src = reg(operands[1])?;
            let (op, sz) = match op.strip_suffix("32") {
                Some(o) => (o, Size::W),
                None => (op, Size::DW),
            };
            let aop = match op {
                "add" => AtomicOp::Add { fetch },
                "or" => AtomicOp::Or { fetch },
                "and" => AtomicOp::And { fetch },
                "xor" => AtomicOp::Xor { fetch },
                "xchg" => AtomicOp::Xchg,
                "cmpxchg" => AtomicOp::CmpXchg,
                _ => return Err(format!("`{l}`: unknown atomic op")),
            };
            out.push(Insn::atomic(sz, aop, dst, off, src));
        } else if let Some(sfx) = mn.strip_prefix("ldxs").filter(|s| size(s).is_some()) {
            need(2)?;
            let (s, off) = mem(ops[1])?;
            out.push(Insn::ldxsx(size(sfx).ok_or("size")?, reg(ops[0])?, s, off));
        } else if let Some(sfx) = mn.strip_prefix("ldx").filter(|s| size(s).is_some()) {
            need(2)?;
            let (s, off) = mem(ops[1])?;
            out.push(Insn::ldx(size(sfx).ok_or("size")?, reg(ops[0])?, s, off));
        } else if let Some(sfx) = mn.strip_prefix("stx").filter(|s| size(s).is_some()) {
            need(2)?;
            let (d, off) = mem(ops[0])?;
            out.push(Insn::stx(size(sfx).ok_or("size")?, d, off, reg(ops[1])?));
        } else if let Some(sfx) = mn.strip_prefix("st").filter(|s| size(s).is_some()) {
            need(2)?;
            let (d, off) = mem(ops[0])?;
            out.push(Insn::st(size(sfx).ok_or("size")?, d, off, imm32(ops[1])?));
        } else {
            return Err(format!("`{l}`: unknown mnemonic `{mn}`"));
        }
    }
    Ok(out)
}

#[test]
fn assembles_labels_and_operands() {
    let p = assemble("mov32 %r0, -1\nL1:\nlddw %r1, 0x10\njne %r1, %r0, L1\nldxh %r2, [%r1-4]\nlock fetch add32 [%r10-8], %r3\nexit").expect("assembles");
    assert_eq!(p.len(), 7);
    assert_eq!(p[3], Insn::jmp(JmpCond::Ne, Reg::R1, Src::Reg(Reg::R0), -3));
    assert_eq!(p[4], Insn::ldx(Size::H, Reg::R2, Reg::R1, -4));
    assert_eq!(
        p[5],
        Insn::atomic(Size::W, AtomicOp::Add { fetch: true }, Reg::FP, -8, Reg::R3)
    );
    assert_eq!(p[6], Insn::exit());
}
