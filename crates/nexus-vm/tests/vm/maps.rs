//! Maps as programs see them through helpers and the host through the API.

use crate::vm;
use nexus_insn::{AluOp, Helper, Insn, JmpCond, MapType, Reg, Size, Src};
use nexus_vm::{BPF_ANY, MapSpec, progs};

fn key_at_fp8(p: &mut Vec<Insn>, key: i32) {
    p.push(Insn::st(Size::DW, Reg::FP, -8, key));
    p.push(Insn::mov64(Reg::R2, Reg::FP));
    p.push(Insn::alu64(AluOp::Add, Reg::R2, Src::Imm(-8)));
}

#[test]
fn count_program_counts_per_key() {
    let (mut vm, _) = vm(&[MapSpec::new("counts", MapType::Hash, 8, 8, 16)]);
    let id = vm.load(&progs::count_by_u32_field(0, 0)).expect("loads");
    for k in [3u32, 3, 5, 3] {
        let mut ctx = k.to_le_bytes();
        assert_eq!(vm.run(id, &mut ctx).expect("runs"), 0);
    }
    let m = vm.map(0).expect("map 0");
    assert_eq!(
        m.lookup(&3u64.to_le_bytes()).expect("ok"),
        Some(&3u64.to_le_bytes()[..])
    );
    assert_eq!(
        m.lookup(&5u64.to_le_bytes()).expect("ok"),
        Some(&1u64.to_le_bytes()[..])
    );
    assert_eq!(m.len(), 2);
}

#[test]
fn lookup_miss_is_null_and_values_are_writable_in_place() {
    let (mut vm, _) = vm(&[MapSpec::new("h", MapType::Hash, 8, 16, 4)]);
    vm.map_mut(0)
        .expect("map")
        .update(&1u64.to_le_bytes(), &[0; 16], BPF_ANY)
        .expect("update");
    // r0 = lookup(1); r0[8] = 77; return lookup(2) == NULL
    let mut p = Vec::new();
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    key_at_fp8(&mut p, 1);
    p.push(Insn::call_helper(Helper::MapLookupElem));
    p.push(Insn::jmp(JmpCond::Eq, Reg::R0, Src::Imm(0), 8));
    p.push(Insn::st(Size::DW, Reg::R0, 8, 77));
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    key_at_fp8(&mut p, 2);
    p.push(Insn::call_helper(Helper::MapLookupElem));
    p.push(Insn::exit());
    p.push(Insn::mov64_imm(Reg::R0, -1));
    p.push(Insn::exit());
    let id = vm.load(&p).expect("loads");
    assert_eq!(vm.run(id, &mut []).expect("runs"), 0, "miss returns NULL");
    let v = vm
        .map(0)
        .expect("map")
        .lookup(&1u64.to_le_bytes())
        .expect("ok")
        .expect("present");
    assert_eq!(&v[8..], &77u64.to_le_bytes());
}

#[test]
fn access_past_a_map_value_faults() {
    let (mut vm, _) = vm(&[MapSpec::new("a", MapType::Array, 4, 4, 4)]);
    let mut p = Vec::new();
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    key_at_fp8(&mut p, 0);
    p.push(Insn::call_helper(Helper::MapLookupElem));
    p.push(Insn::ldx(Size::DW, Reg::R0, Reg::R0, 0));
    p.push(Insn::exit());
    let id = vm.load(&p).expect("loads");
    let e = vm.run(id, &mut []).expect_err("8 bytes of a 4-byte value");
    assert!(
        e.to_string()
            .contains("crosses the end of a 4-byte map value"),
        "{e}"
    );
}

#[test]
fn direct_array_value_access() {
    let (mut vm, _) = vm(&[MapSpec::new("g", MapType::Array, 4, 16, 1)]);
    let mut p = Vec::new();
    p.extend(Insn::ld_imm64_pseudo(
        Reg::R1,
        nexus_insn::op::PSEUDO_MAP_IDX_VALUE,
        0,
        8,
    ));
    p.push(Insn::st(Size::DW, Reg::R1, 0, 5));
    p.push(Insn::mov64_imm(Reg::R0, 0));
    p.push(Insn::exit());
    let id = vm.load(&p).expect("loads");
    vm.run(id, &mut []).expect("runs");
    let v = vm
        .map(0)
        .expect("map")
        .lookup(&0u32.to_le_bytes())
        .expect("ok")
        .expect("present");
    assert_eq!(&v[8..], &5u64.to_le_bytes());
    // Past the value: refused at load.
    let (mut vm2, _) = crate::vm(&[MapSpec::new("g", MapType::Array, 4, 16, 1)]);
    let bad = Insn::ld_imm64_pseudo(Reg::R1, nexus_insn::op::PSEUDO_MAP_IDX_VALUE, 0, 16);
    assert!(vm2.load(&[bad[0], bad[1], Insn::exit()]).is_err());
}

#[test]
fn percpu_maps_write_the_current_cpus_slot() {
    let (mut vm, platform) = vm(&[MapSpec::new("pc", MapType::PercpuHash, 8, 8, 4)]);
    let id = vm.load(&progs::count_by_u32_field(0, 0)).expect("loads");
    let mut ctx = [7u8, 0, 0, 0];
    vm.run(id, &mut ctx).expect("cpu 0");
    platform.set_cpu(1);
    vm.run(id, &mut ctx).expect("cpu 1");
    vm.run(id, &mut ctx).expect("cpu 1");
    let m = vm.map(0).expect("map");
    let v = m.lookup(&7u64.to_le_bytes()).expect("ok").expect("present");
    let per_cpu: Vec<u64> = v
        .chunks(m.value_stride())
        .map(|c| u64::from_le_bytes(c[..8].try_into().expect("8 bytes")))
        .collect();
    assert_eq!(per_cpu, vec![1, 2]);
}

#[test]
fn update_delete_and_errno_from_programs() {
    let (mut vm, _) = vm(&[MapSpec::new("h", MapType::Hash, 8, 8, 1)]);
    // update(k=1, v=fp-16, NOEXIST) twice: 0 then -EEXIST; delete(2): -ENOENT
    let mut p = Vec::new();
    p.push(Insn::st(Size::DW, Reg::FP, -16, 9));
    for _ in 0..2 {
        p.extend(Insn::ld_map_fd(Reg::R1, 0));
        key_at_fp8(&mut p, 1);
        p.push(Insn::mov64(Reg::R3, Reg::FP));
        p.push(Insn::alu64(AluOp::Add, Reg::R3, Src::Imm(-16)));
        p.push(Insn::mov64_imm(Reg::R4, 1));
        p.push(Insn::call_helper(Helper::MapUpdateElem));
        p.push(Insn::stx(Size::DW, Reg::FP, -24, Reg::R0));
    }
    p.push(Insn::ldx(Size::DW, Reg::R6, Reg::FP, -24));
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    key_at_fp8(&mut p, 2);
    p.push(Insn::call_helper(Helper::MapDeleteElem));
    // r0 = (delete result << 32) | (second update result & 0xffffffff)
    p.push(Insn::alu64(AluOp::Lsh, Reg::R0, Src::Imm(32)));
    p.push(Insn::alu32(AluOp::Mov, Reg::R6, Src::Reg(Reg::R6)));
    p.push(Insn::alu64(AluOp::Or, Reg::R0, Src::Reg(Reg::R6)));
    p.push(Insn::exit());
    let id = vm.load(&p).expect("loads");
    let r = vm.run(id, &mut []).expect("runs");
    assert_eq!((r >> 32) as i32, -2, "delete of a missing key: -ENOENT");
    assert_eq!(r as u32 as i32, -17, "second NOEXIST insert: -EEXIST");
    assert_eq!(
        vm.map(0)
            .expect("map")
            .lookup(&1u64.to_le_bytes())
            .expect("ok"),
        Some(&9u64.to_le_bytes()[..])
    );
}

#[test]
fn queue_push_pop_from_programs() {
    let (mut vm, _) = vm(&[MapSpec::new("q", MapType::Queue, 0, 4, 2)]);
    vm.map_mut(0)
        .expect("map")
        .push(&11u32.to_le_bytes(), BPF_ANY)
        .expect("push");
    // push 22; pop into fp-8; peek into fp-16; return fp-8 * 100 + fp-16
    let mut p = Vec::new();
    p.push(Insn::st(Size::W, Reg::FP, -4, 22));
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    p.push(Insn::mov64(Reg::R2, Reg::FP));
    p.push(Insn::alu64(AluOp::Add, Reg::R2, Src::Imm(-4)));
    p.push(Insn::mov64_imm(Reg::R3, 0));
    p.push(Insn::call_helper(Helper::MapPushElem));
    for (off, h) in [(-8, Helper::MapPopElem), (-16, Helper::MapPeekElem)] {
        p.extend(Insn::ld_map_fd(Reg::R1, 0));
        p.push(Insn::mov64(Reg::R2, Reg::FP));
        p.push(Insn::alu64(AluOp::Add, Reg::R2, Src::Imm(off)));
        p.push(Insn::call_helper(h));
    }
    p.push(Insn::ldx(Size::W, Reg::R0, Reg::FP, -8));
    p.push(Insn::alu64(AluOp::Mul, Reg::R0, Src::Imm(100)));
    p.push(Insn::ldx(Size::W, Reg::R1, Reg::FP, -16));
    p.push(Insn::alu64(AluOp::Add, Reg::R0, Src::Reg(Reg::R1)));
    p.push(Insn::exit());
    let id = vm.load(&p).expect("loads");
    assert_eq!(vm.run(id, &mut []).expect("runs"), 11 * 100 + 22);
    assert_eq!(vm.map(0).expect("map").len(), 1);
}

#[test]
fn ringbuf_reserve_submit_discard_and_drain() {
    let (mut vm, _) = vm(&[MapSpec::new("events", MapType::Ringbuf, 0, 0, 4096)]);
    // Reserve 8 bytes, write ctx[0] into it, submit; reserve again and discard;
    // also ringbuf_output 4 bytes from the stack.
    let mut p = Vec::new();
    p.push(Insn::ldx(Size::DW, Reg::R6, Reg::R1, 0));
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    p.push(Insn::mov64_imm(Reg::R2, 8));
    p.push(Insn::mov64_imm(Reg::R3, 0));
    p.push(Insn::call_helper(Helper::RingbufReserve));
    p.push(Insn::jmp(JmpCond::Eq, Reg::R0, Src::Imm(0), 20));
    p.push(Insn::stx(Size::DW, Reg::R0, 0, Reg::R6));
    p.push(Insn::mov64(Reg::R1, Reg::R0));
    p.push(Insn::mov64_imm(Reg::R2, 0));
    p.push(Insn::call_helper(Helper::RingbufSubmit));
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    p.push(Insn::mov64_imm(Reg::R2, 16));
    p.push(Insn::mov64_imm(Reg::R3, 0));
    p.push(Insn::call_helper(Helper::RingbufReserve));
    p.push(Insn::mov64(Reg::R1, Reg::R0));
    p.push(Insn::mov64_imm(Reg::R2, 0));
    p.push(Insn::call_helper(Helper::RingbufDiscard));
    p.push(Insn::st(Size::W, Reg::FP, -4, 0x0a0b0c0d));
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    p.push(Insn::mov64(Reg::R2, Reg::FP));
    p.push(Insn::alu64(AluOp::Add, Reg::R2, Src::Imm(-4)));
    p.push(Insn::mov64_imm(Reg::R3, 4));
    p.push(Insn::mov64_imm(Reg::R4, 0));
    p.push(Insn::call_helper(Helper::RingbufOutput));
    p.push(Insn::exit());
    let id = vm.load(&p).expect("loads");
    let mut ctx = 0x1122_3344_5566_7788u64.to_le_bytes();
    assert_eq!(vm.run(id, &mut ctx).expect("runs"), 0);
    let mut records = Vec::new();
    vm.drain_ringbuf(0, |r| records.push(r.to_vec()))
        .expect("ringbuf");
    assert_eq!(
        records,
        vec![ctx.to_vec(), 0x0a0b0c0du32.to_le_bytes().to_vec()]
    );
}

#[test]
fn forgotten_reservations_are_discarded_at_exit() {
    let (mut vm, _) = vm(&[MapSpec::new("events", MapType::Ringbuf, 0, 0, 64)]);
    let mut p = Vec::new();
    p.extend(Insn::ld_map_fd(Reg::R1, 0));
    p.push(Insn::mov64_imm(Reg::R2, 8));
    p.push(Insn::mov64_imm(Reg::R3, 0));
    p.push(Insn::call_helper(Helper::RingbufReserve));
    p.push(Insn::mov64_imm(Reg::R0, 0));
    p.push(Insn::exit());
    let id = vm.load(&p).expect("loads");
    for _ in 0..10 {
        vm.run(id, &mut []).expect("runs");
        assert_eq!(vm.drain_ringbuf(0, |_| {}).expect("drain"), 0);
    }
    let rb = vm.map_mut(0).expect("map").ringbuf().expect("ringbuf");
    assert_eq!(rb.dropped(), 0, "discarded space is reclaimed");
}

#[test]
fn host_api_iterates_and_rejects_bad_sizes() {
    let (mut vm, _) = vm(&[MapSpec::new("h", MapType::Hash, 4, 4, 8)]);
    let m = vm.map_mut(0).expect("map");
    for k in 0u32..3 {
        m.update(&k.to_le_bytes(), &(k * 10).to_le_bytes(), BPF_ANY)
            .expect("update");
    }
    let mut e = m.entries();
    e.sort();
    assert_eq!(e.len(), 3);
    assert_eq!(
        e[2],
        (2u32.to_le_bytes().to_vec(), 20u32.to_le_bytes().to_vec())
    );
    let err = m.update(&[1, 2], &[0; 4], BPF_ANY).expect_err("short key");
    assert!(
        err.to_string()
            .contains("key is 2 bytes, the map's key size is 4"),
        "{err}"
    );
    assert!(vm.map(3).is_err());
    assert!(
        crate::try_vm(&[MapSpec::new("r", MapType::Ringbuf, 0, 0, 100)]).is_err(),
        "not a power of two"
    );
}
