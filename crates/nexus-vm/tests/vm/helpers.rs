//! Helpers with context: clock, CPU, task, probe reads, printk, custom ids.

use crate::vm;
use nexus_insn::{AluOp, Helper, Insn, Reg, Size, Src};
use nexus_vm::{TaskInfo, Vm};

fn call_only(vm: &mut Vm, h: Helper) -> u64 {
    let id = vm
        .load(&[Insn::call_helper(h), Insn::exit()])
        .expect("loads");
    vm.run(id, &mut []).expect("runs")
}

#[test]
fn clock_cpu_and_task_come_from_the_platform() {
    let (mut vm, p) = vm(&[]);
    p.set_time(123_456);
    p.set_cpu(1);
    p.set_task(TaskInfo::new(42, 40, 1000, 100, "worker"));
    assert_eq!(call_only(&mut vm, Helper::KtimeGetNs), 123_456);
    assert_eq!(call_only(&mut vm, Helper::GetSmpProcessorId), 1);
    assert_eq!(
        call_only(&mut vm, Helper::GetCurrentPidTgid),
        (40 << 32) | 42
    );
    assert_eq!(
        call_only(&mut vm, Helper::GetCurrentUidGid),
        (100 << 32) | 1000
    );
}

#[test]
fn prandom_is_deterministic_per_seed() {
    let (mut a, _) = vm(&[]);
    let (mut b, _) = vm(&[]);
    a.seed_prandom(7);
    b.seed_prandom(7);
    let xs: Vec<u64> = (0..4)
        .map(|_| call_only(&mut a, Helper::GetPrandomU32))
        .collect();
    let ys: Vec<u64> = (0..4)
        .map(|_| call_only(&mut b, Helper::GetPrandomU32))
        .collect();
    assert_eq!(xs, ys);
    assert!(xs.iter().all(|x| *x <= u64::from(u32::MAX)));
    assert!(xs.windows(2).any(|w| w[0] != w[1]));
}

fn stack_ptr(p: &mut Vec<Insn>, r: Reg, off: i32) {
    p.push(Insn::mov64(r, Reg::FP));
    p.push(Insn::alu64(AluOp::Add, r, Src::Imm(off)));
}

#[test]
fn get_current_comm_pads_with_nul() {
    let (mut vm, platform) = vm(&[]);
    platform.set_task(TaskInfo::new(1, 1, 0, 0, "a-very-long-task-name"));
    let mut p = Vec::new();
    stack_ptr(&mut p, Reg::R1, -16);
    p.push(Insn::mov64_imm(Reg::R2, 16));
    p.push(Insn::call_helper(Helper::GetCurrentComm));
    // Copy the 16 bytes out to the writable context.
    p.push(Insn::ldx(Size::DW, Reg::R2, Reg::FP, -16));
    p.push(Insn::stx(Size::DW, Reg::R6, 0, Reg::R2));
    p.push(Insn::ldx(Size::DW, Reg::R2, Reg::FP, -8));
    p.push(Insn::stx(Size::DW, Reg::R6, 8, Reg::R2));
    p.push(Insn::exit());
    p.insert(0, Insn::mov64(Reg::R6, Reg::R1));
    let id = vm.load(&p).expect("loads");
    let mut out = [0xffu8; 16];
    assert_eq!(vm.run(id, &mut out).expect("runs"), 0);
    assert_eq!(&out, b"a-very-long-tas\0");
}

/// probe_read(fp-16, 8, src) then return the 8 bytes read and r0 in ctx.
fn probe(vm: &mut Vm, h: Helper, src: u64, size: i32) -> (i64, [u8; 16]) {
    let mut p = Vec::new();
    p.push(Insn::mov64(Reg::R6, Reg::R1));
    p.push(Insn::st(Size::DW, Reg::FP, -16, -1));
    p.push(Insn::st(Size::DW, Reg::FP, -8, -1));
    stack_ptr(&mut p, Reg::R1, -16);
    p.push(Insn::mov64_imm(Reg::R2, size));
    p.extend(Insn::ld_imm64(Reg::R3, src));
    p.push(Insn::call_helper(h));
    p.push(Insn::ldx(Size::DW, Reg::R2, Reg::FP, -16));
    p.push(Insn::stx(Size::DW, Reg::R6, 0, Reg::R2));
    p.push(Insn::ldx(Size::DW, Reg::R2, Reg::FP, -8));
    p.push(Insn::stx(Size::DW, Reg::R6, 8, Reg::R2));
    p.push(Insn::exit());
    let id = vm.load(&p).expect("loads");
    let mut out = [0u8; 16];
    let r = vm.run(id, &mut out).expect("helpers never fault the run");
    (r as i64, out)
}

#[test]
fn probe_read_only_within_registered_memory() {
    let (mut vm, _) = vm(&[]);
    let addr = vm.register_memory(b"hello, world\0tail".to_vec(), false);
    let (r, out) = probe(&mut vm, Helper::ProbeReadUser, addr, 8);
    assert_eq!(r, 0);
    assert_eq!(&out[..8], b"hello, w");
    let (r, out) = probe(&mut vm, Helper::ProbeReadKernel, addr + 10, 8);
    assert_eq!(r, -14, "runs past the region: -EFAULT");
    assert_eq!(&out[..8], &[0; 8], "destination zeroed on failure");
    let (r, out) = probe(&mut vm, Helper::ProbeRead, 0xdead_beef, 8);
    assert_eq!((r, &out[..8]), (-14, &[0u8; 8][..]));
    let (r, out) = probe(&mut vm, Helper::ProbeReadStr, addr, 16);
    assert_eq!(r, 13, "length including the NUL");
    assert_eq!(&out[..13], b"hello, world\0");
    let (r, out) = probe(&mut vm, Helper::ProbeReadUserStr, addr, 6);
    assert_eq!((r, &out[..6]), (6, &b"hello\0"[..]));
    let (r, out) = probe(&mut vm, Helper::ProbeReadKernelStr, 8, 16);
    assert_eq!((r, out), (-14, [0u8; 16]));
    assert_eq!(
        vm.unregister_memory(addr).as_deref(),
        Some(&b"hello, world\0tail"[..])
    );
    let (r, _) = probe(&mut vm, Helper::ProbeRead, addr, 8);
    assert_eq!(r, -14, "unregistered memory is gone");
}

#[test]
fn trace_printk_goes_to_the_log() {
    let (mut vm, _) = vm(&[]);
    let fmt = b"vcpu %d exit %u\0";
    let mut p = Vec::new();
    for (i, chunk) in fmt.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        p.extend(Insn::ld_imm64(Reg::R1, u64::from_le_bytes(w)));
        p.push(Insn::stx(Size::DW, Reg::FP, -16 + 8 * i as i16, Reg::R1));
    }
    stack_ptr(&mut p, Reg::R1, -16);
    p.push(Insn::mov64_imm(Reg::R2, fmt.len() as i32));
    p.push(Insn::mov64_imm(Reg::R3, -2));
    p.push(Insn::mov64_imm(Reg::R4, 30));
    p.push(Insn::call_helper(Helper::TracePrintk));
    p.push(Insn::exit());
    let id = vm.load(&p).expect("loads");
    assert_eq!(vm.run(id, &mut []).expect("runs"), 15);
    assert_eq!(vm.take_trace_log(), vec!["vcpu -2 exit 30".to_string()]);
    assert!(vm.take_trace_log().is_empty());
}

#[test]
fn custom_helpers_by_id() {
    let (mut vm, _) = vm(&[]);
    vm.register_helper(100, "get_current_vm_id", |_, _| 7)
        .expect("free id");
    vm.register_helper(103, "sum_and_log", |cx, a| {
        cx.log(format!("args {} {}", a[0], a[1]));
        a[0] + a[1]
    })
    .expect("free id");
    assert!(vm.register_helper(5, "clash", |_, _| 0).is_err());
    let p = [
        Insn::call(100),
        Insn::mov64(Reg::R1, Reg::R0),
        Insn::mov64_imm(Reg::R2, 5),
        Insn::call(103),
        Insn::exit(),
    ];
    let id = vm.load(&p).expect("loads");
    assert_eq!(vm.run(id, &mut []).expect("runs"), 12);
    assert_eq!(vm.take_trace_log(), vec!["args 7 5".to_string()]);
    assert!(
        vm.load(&[Insn::call(104), Insn::exit()]).is_err(),
        "unregistered id"
    );
}
