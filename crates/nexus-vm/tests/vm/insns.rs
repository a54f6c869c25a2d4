//! Semantics of every instruction class, against RFC 9669.

use crate::{mov_imm64, ret, run, try_run};
use nexus_insn::{AluOp, AtomicOp, Endian, Insn, JmpCond, Reg, Size, Src};

fn alu64(op: AluOp, a: u64, b: u64) -> u64 {
    let mut p = Vec::new();
    p.extend(mov_imm64(Reg::R0, a));
    p.extend(mov_imm64(Reg::R1, b));
    p.push(Insn::alu64(op, Reg::R0, Src::Reg(Reg::R1)));
    ret(p)
}

fn alu32(op: AluOp, a: u64, b: u64) -> u64 {
    let mut p = Vec::new();
    p.extend(mov_imm64(Reg::R0, a));
    p.extend(mov_imm64(Reg::R1, b));
    p.push(Insn::alu32(op, Reg::R0, Src::Reg(Reg::R1)));
    ret(p)
}

fn alu64_imm(op: AluOp, a: u64, imm: i32) -> u64 {
    let mut p = Vec::new();
    p.extend(mov_imm64(Reg::R0, a));
    p.push(Insn::alu64(op, Reg::R0, Src::Imm(imm)));
    ret(p)
}

fn alu32_imm(op: AluOp, a: u64, imm: i32) -> u64 {
    let mut p = Vec::new();
    p.extend(mov_imm64(Reg::R0, a));
    p.push(Insn::alu32(op, Reg::R0, Src::Imm(imm)));
    ret(p)
}

#[test]
fn alu64_arithmetic_and_bits() {
    assert_eq!(alu64(AluOp::Add, u64::MAX, 2), 1);
    assert_eq!(alu64(AluOp::Sub, 1, 2), u64::MAX);
    assert_eq!(alu64(AluOp::Mul, 1 << 40, 1 << 30), 0);
    assert_eq!(alu64(AluOp::Div, 100, 7), 14);
    assert_eq!(alu64(AluOp::Mod, 100, 7), 2);
    assert_eq!(alu64(AluOp::Or, 0xf0, 0x0f), 0xff);
    assert_eq!(alu64(AluOp::And, 0xf0, 0x3c), 0x30);
    assert_eq!(alu64(AluOp::Xor, 0xff, 0x0f), 0xf0);
    assert_eq!(alu64(AluOp::Lsh, 1, 65), 2, "shift amount masked to 6 bits");
    assert_eq!(alu64(AluOp::Rsh, 1 << 63, 63), 1);
    assert_eq!(alu64(AluOp::Arsh, 1 << 63, 63), u64::MAX);
    assert_eq!(alu64(AluOp::Mov, 0, 77), 77);
    // Immediates are sign-extended to 64 bits, also for unsigned division.
    assert_eq!(alu64_imm(AluOp::Add, 0, -1), u64::MAX);
    assert_eq!(alu64_imm(AluOp::Div, u64::MAX, -1), 1);
    assert_eq!(alu64_imm(AluOp::Mov, 5, -2), (-2i64) as u64);
    let mut p = Vec::new();
    p.extend(mov_imm64(Reg::R0, 5));
    p.push(Insn::neg64(Reg::R0));
    assert_eq!(ret(p), (-5i64) as u64);
}

#[test]
fn alu32_zero_extends() {
    assert_eq!(alu32(AluOp::Add, 0xffff_ffff_ffff_ffff, 2), 1);
    assert_eq!(alu32(AluOp::Sub, 0x1_0000_0000, 1), 0xffff_ffff);
    assert_eq!(alu32(AluOp::Mul, 0x1_0000_0003, 3), 9);
    assert_eq!(alu32(AluOp::Lsh, 1, 33), 2, "shift amount masked to 5 bits");
    assert_eq!(alu32(AluOp::Arsh, 0x8000_0000, 4), 0xf800_0000);
    assert_eq!(alu32(AluOp::Rsh, 0xffff_ffff_8000_0000, 31), 1);
    assert_eq!(alu32(AluOp::Mov, 0, 0xdead_beef_1234_5678), 0x1234_5678);
    assert_eq!(alu32_imm(AluOp::Mov, 0, -1), 0xffff_ffff);
    assert_eq!(
        alu32_imm(AluOp::Div, 0xffff_fffe, -1),
        0,
        "32-bit imm is unsigned"
    );
    let mut p = Vec::new();
    p.extend(mov_imm64(Reg::R0, 5));
    p.push(Insn::neg32(Reg::R0));
    assert_eq!(ret(p), 0xffff_fffb);
}

#[test]
fn division_and_modulo_by_zero() {
    assert_eq!(alu64(AluOp::Div, 9, 0), 0);
    assert_eq!(alu64(AluOp::Mod, 9, 0), 9, "mod by zero leaves dst");
    assert_eq!(alu64(AluOp::SDiv, 9, 0), 0);
    assert_eq!(alu64(AluOp::SMod, (-9i64) as u64, 0), (-9i64) as u64);
    assert_eq!(alu32(AluOp::Div, 9, 0), 0);
    assert_eq!(
        alu32(AluOp::Mod, 0xffff_ffff_0000_0009, 0),
        9,
        "32-bit mod by zero zeroes the upper half"
    );
    assert_eq!(alu32(AluOp::SMod, 0xffff_ffff_0000_0009, 0), 9);
    assert_eq!(alu64_imm(AluOp::Mod, 9, 0), 9);
}

#[test]
fn signed_division_and_modulo() {
    let n = |v: i64| v as u64;
    assert_eq!(alu64(AluOp::SDiv, n(-7), 2), n(-3), "truncates toward zero");
    assert_eq!(alu64(AluOp::SMod, n(-7), 2), n(-1), "sign of the dividend");
    assert_eq!(alu64(AluOp::SMod, 7, n(-2)), 1);
    assert_eq!(
        alu64(AluOp::SDiv, n(i64::MIN), n(-1)),
        n(i64::MIN),
        "overflow wraps"
    );
    assert_eq!(alu64(AluOp::SMod, n(i64::MIN), n(-1)), 0);
    assert_eq!(alu64_imm(AluOp::SDiv, n(-8), -2), 4);
    assert_eq!(alu32(AluOp::SDiv, 0xffff_fff9, 2), 0xffff_fffd);
    assert_eq!(alu32(AluOp::SMod, 0xffff_fff9, 2), 0xffff_ffff);
    assert_eq!(alu32_imm(AluOp::SDiv, 0x8000_0000, -1), 0x8000_0000);
}

#[test]
fn movsx_sign_extends() {
    let case = |bits: i16, is64: bool, v: u64| {
        let mut p = Vec::new();
        p.extend(mov_imm64(Reg::R1, v));
        p.push(if is64 {
            Insn::movsx64(Reg::R0, Reg::R1, bits)
        } else {
            Insn::movsx32(Reg::R0, Reg::R1, bits)
        });
        ret(p)
    };
    assert_eq!(case(8, true, 0x180), 0xffff_ffff_ffff_ff80);
    assert_eq!(case(16, true, 0x1_8000), 0xffff_ffff_ffff_8000);
    assert_eq!(case(32, true, 0x1_8000_0000), 0xffff_ffff_8000_0000);
    assert_eq!(case(8, true, 0x7f), 0x7f);
    assert_eq!(case(8, false, 0xff), 0xffff_ffff);
    assert_eq!(case(16, false, 0x8000), 0xffff_8000);
}

#[test]
fn byte_swaps() {
    let case = |kind: Endian, bits: i32| {
        let mut p = Vec::new();
        p.extend(mov_imm64(Reg::R0, 0x0102_0304_0506_0708));
        p.push(Insn::endian(kind, Reg::R0, bits));
        ret(p)
    };
    assert_eq!(case(Endian::ToBe, 16), 0x0807);
    assert_eq!(case(Endian::ToBe, 32), 0x0807_0605);
    assert_eq!(case(Endian::ToBe, 64), 0x0807_0605_0403_0201);
    assert_eq!(case(Endian::ToLe, 16), 0x0708);
    assert_eq!(case(Endian::ToLe, 32), 0x0506_0708);
    assert_eq!(case(Endian::ToLe, 64), 0x0102_0304_0506_0708);
    assert_eq!(case(Endian::Swap, 16), 0x0807);
    assert_eq!(case(Endian::Swap, 32), 0x0807_0605);
    assert_eq!(case(Endian::Swap, 64), 0x0807_0605_0403_0201);
}

/// 1 when `cond` holds for (a, b), else 0, for jmp or jmp32.
fn jumps(cond: JmpCond, a: u64, b: u64, wide: bool, imm: bool) -> u64 {
    let mut p = Vec::new();
    p.extend(mov_imm64(Reg::R1, a));
    p.extend(mov_imm64(Reg::R2, b));
    p.push(Insn::mov64_imm(Reg::R0, 1));
    let src = if imm {
        Src::Imm(b as i32)
    } else {
        Src::Reg(Reg::R2)
    };
    p.push(if wide {
        Insn::jmp(cond, Reg::R1, src, 1)
    } else {
        Insn::jmp32(cond, Reg::R1, src, 1)
    });
    p.push(Insn::mov64_imm(Reg::R0, 0));
    p.push(Insn::exit());
    run(&p)
}

#[test]
fn conditional_jumps_signed_and_unsigned() {
    use JmpCond::*;
    let m1 = u64::MAX;
    for (cond, a, b, want) in [
        (Eq, 5, 5, 1),
        (Eq, 5, 6, 0),
        (Ne, 5, 6, 1),
        (Gt, m1, 1, 1),
        (SGt, m1, 1, 0),
        (Ge, 3, 3, 1),
        (SGe, m1, 0, 0),
        (Lt, 1, m1, 1),
        (SLt, m1, 1, 1),
        (Le, 4, 3, 0),
        (SLe, m1, m1, 1),
        (Set, 0b1010, 0b0100, 0),
        (Set, 0b1010, 0b0010, 1),
    ] {
        assert_eq!(
            jumps(cond, a, b, true, false),
            want,
            "{cond:?} {a:#x} {b:#x}"
        );
    }
    // Immediates compare sign-extended in 64-bit jumps.
    assert_eq!(jumps(Eq, m1, m1, true, true), 1);
    assert_eq!(jumps(SLt, m1, 0, true, true), 1);
}

#[test]
fn jmp32_compares_low_halves() {
    use JmpCond::*;
    let hi = 0xffff_ffff_0000_0000;
    assert_eq!(jumps(Eq, hi | 7, 7, false, false), 1);
    assert_eq!(jumps(Eq, hi | 7, 7, true, false), 0);
    assert_eq!(
        jumps(SLt, 0x8000_0000, 0, false, false),
        1,
        "bit 31 is the sign"
    );
    assert_eq!(jumps(Lt, 0x8000_0000, 1, false, false), 0);
    assert_eq!(jumps(SGt, 1, 0xffff_ffff, false, true), 1);
    assert_eq!(jumps(Gt, hi, 0, false, true), 0);
}

#[test]
fn ja_and_gotol() {
    let p = [
        Insn::mov64_imm(Reg::R0, 1),
        Insn::ja32(1),
        Insn::mov64_imm(Reg::R0, 2),
        Insn::ja(1),
        Insn::mov64_imm(Reg::R0, 3),
        Insn::exit(),
    ];
    assert_eq!(run(&p), 1);
}

#[test]
fn loads_and_stores_every_size() {
    let mut mem = [0u8; 32];
    let p = [
        Insn::st(Size::B, Reg::R1, 0, 0x1ff),
        Insn::st(Size::H, Reg::R1, 2, 0x12345),
        Insn::st(Size::W, Reg::R1, 4, -2),
        Insn::st(Size::DW, Reg::R1, 8, -3),
        Insn::mov64_imm(Reg::R2, 0x55),
        Insn::stx(Size::B, Reg::R1, 16, Reg::R2),
        Insn::stx(Size::H, Reg::R1, 18, Reg::R2),
        Insn::stx(Size::W, Reg::R1, 20, Reg::R2),
        Insn::stx(Size::DW, Reg::R1, 24, Reg::R2),
        Insn::ldx(Size::W, Reg::R0, Reg::R1, 4),
        Insn::exit(),
    ];
    assert_eq!(try_run(&p, &mut mem).expect("runs"), 0xffff_fffe);
    assert_eq!(mem[0], 0xff);
    assert_eq!(&mem[2..4], &[0x45, 0x23]);
    assert_eq!(&mem[8..16], &(-3i64).to_le_bytes());
    assert_eq!(mem[16], 0x55);
    assert_eq!(&mem[24..32], &0x55u64.to_le_bytes());
    for (size, want) in [
        (Size::B, 0xf8u64),
        (Size::H, 0xf9f8),
        (Size::W, 0xfbfa_f9f8),
        (Size::DW, 0xfffe_fdfc_fbfa_f9f8),
    ] {
        let mut mem: Vec<u8> = (0xf8..=0xff).collect();
        let p = [Insn::ldx(size, Reg::R0, Reg::R1, 0), Insn::exit()];
        assert_eq!(try_run(&p, &mut mem).expect("runs"), want, "{size:?}");
    }
}

#[test]
fn sign_extending_loads() {
    let mut mem = vec![0x80, 0xff, 0xff, 0xff, 0x7f];
    let case = |size: Size, off: i16, mem: &mut [u8]| {
        try_run(
            &[Insn::ldxsx(size, Reg::R0, Reg::R1, off), Insn::exit()],
            mem,
        )
        .expect("runs")
    };
    assert_eq!(case(Size::B, 0, &mut mem), (-128i64) as u64);
    assert_eq!(case(Size::B, 4, &mut mem), 0x7f);
    assert_eq!(case(Size::H, 0, &mut mem), (-128i64) as u64);
    assert_eq!(case(Size::W, 0, &mut mem), (-128i64) as u64);
}

#[test]
fn stack_is_usable_and_r10_relative() {
    let p = [
        Insn::st(Size::DW, Reg::FP, -8, 41),
        Insn::ldx(Size::DW, Reg::R0, Reg::FP, -8),
        Insn::alu64(AluOp::Add, Reg::R0, Src::Imm(1)),
        Insn::exit(),
    ];
    assert_eq!(run(&p), 42);
}

#[test]
fn atomics_64_and_32() {
    let atomic = |size: Size, op: AtomicOp, init: u64, src: u64| -> (u64, u64, u64) {
        // Returns (memory after, src register after, r0 after).
        let mut mem = init.to_le_bytes();
        let mut p = Vec::new();
        p.extend(mov_imm64(Reg::R2, src));
        p.extend(mov_imm64(Reg::R0, 0x1111));
        p.push(Insn::atomic(size, op, Reg::R1, 0, Reg::R2));
        p.push(Insn::stx(Size::DW, Reg::FP, -8, Reg::R0));
        p.push(Insn::mov64(Reg::R0, Reg::R2));
        p.push(Insn::exit());
        let (mut vm, _) = crate::vm(&[]);
        let id = vm.load(&p).expect("loads");
        let r = vm.run(id, &mut mem).expect("runs");
        (u64::from_le_bytes(mem), r, 0)
    };
    use AtomicOp::*;
    assert_eq!(atomic(Size::DW, Add { fetch: false }, 5, 3).0, 8);
    assert_eq!(atomic(Size::DW, Add { fetch: true }, 5, 3), (8, 5, 0));
    assert_eq!(
        atomic(Size::DW, Or { fetch: true }, 0b01, 0b10),
        (0b11, 0b01, 0)
    );
    assert_eq!(
        atomic(Size::DW, And { fetch: true }, 0b11, 0b10),
        (0b10, 0b11, 0)
    );
    assert_eq!(atomic(Size::DW, Xor { fetch: false }, 0b11, 0b10).0, 0b01);
    assert_eq!(atomic(Size::DW, Xchg, 9, 4), (4, 9, 0));
    // 32-bit: only the low word changes; fetched values are zero-extended.
    assert_eq!(
        atomic(Size::W, Add { fetch: true }, 0xaaaa_aaaa_ffff_ffff, 2),
        (0xaaaa_aaaa_0000_0001, 0xffff_ffff, 0)
    );
    assert_eq!(
        atomic(Size::W, Xchg, 0x1_0000_0007, 0xffff_ffff_0000_0003),
        (0x1_0000_0003, 7, 0)
    );
}

#[test]
fn cmpxchg_compares_r0() {
    let cmpxchg = |size: Size, init: u64, expected: u64| -> (u64, u64) {
        let mut mem = init.to_le_bytes();
        let mut p = Vec::new();
        p.extend(mov_imm64(Reg::R0, expected));
        p.push(Insn::mov64_imm(Reg::R2, 99));
        p.push(Insn::atomic(size, AtomicOp::CmpXchg, Reg::R1, 0, Reg::R2));
        p.push(Insn::exit());
        let r = try_run(&p, &mut mem).expect("runs");
        (u64::from_le_bytes(mem), r)
    };
    assert_eq!(cmpxchg(Size::DW, 5, 5), (99, 5));
    assert_eq!(cmpxchg(Size::DW, 5, 6), (5, 5));
    assert_eq!(
        cmpxchg(Size::W, 0x7_0000_0005, 0xffff_ffff_0000_0005),
        (0x7_0000_0063, 5)
    );
}

#[test]
fn ld_imm64_plain() {
    assert_eq!(
        ret(mov_imm64(Reg::R0, 0x1234_5678_9abc_def0).to_vec()),
        0x1234_5678_9abc_def0
    );
}

#[test]
fn bpf_to_bpf_calls_preserve_r6_to_r9_and_have_own_stack() {
    let p = [
        Insn::mov64_imm(Reg::R6, 6),
        Insn::mov64_imm(Reg::R9, 9),
        Insn::st(Size::DW, Reg::FP, -8, 100),
        Insn::mov64_imm(Reg::R1, 20),
        Insn::call_local(5),
        Insn::alu64(AluOp::Add, Reg::R0, Src::Reg(Reg::R6)),
        Insn::alu64(AluOp::Add, Reg::R0, Src::Reg(Reg::R9)),
        Insn::ldx(Size::DW, Reg::R1, Reg::FP, -8),
        Insn::alu64(AluOp::Add, Reg::R0, Src::Reg(Reg::R1)),
        Insn::exit(),
        // The callee clobbers r6, r9 and the -8 slot of its own frame.
        Insn::mov64_imm(Reg::R6, 1000),
        Insn::mov64_imm(Reg::R9, 1000),
        Insn::stx(Size::DW, Reg::FP, -8, Reg::R1),
        Insn::ldx(Size::DW, Reg::R0, Reg::FP, -8),
        Insn::exit(),
    ];
    assert_eq!(run(&p), 20 + 6 + 9 + 100);
}

#[test]
fn recursion_deeper_than_eight_frames_faults() {
    let p = [Insn::call_local(-1), Insn::exit()];
    let err = try_run(&p, &mut []).expect_err("unbounded recursion");
    assert!(err.to_string().contains("deeper than 8"), "{err}");
}
