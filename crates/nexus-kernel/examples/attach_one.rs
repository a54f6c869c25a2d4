//! Benchmark subject for `bench/attach.py`: attach one tracepoint program,
//! report the CLOCK_MONOTONIC time at which it was attached, then exit.
//!
//! The outside script records its own CLOCK_MONOTONIC time just before it
//! spawns this process, so the difference is "process start → one tracepoint
//! attached", exec and dynamic loading included.

use nexus_insn::{Insn, ProgType, Reg};
use nexus_kernel::{AttachTarget, Map, Program, ProgramSpec, attach};

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let insns = [Insn::mov64_imm(Reg::R0, 0), Insn::exit()];
    let spec = ProgramSpec::new("nx_attach_one", ProgType::Tracepoint, &insns);
    let prog = Program::load(&spec, &[] as &[Map])?;
    let link = attach(
        &prog,
        &AttachTarget::Tracepoint {
            category: "syscalls".into(),
            name: "sys_enter_getppid".into(),
        },
    )?;
    eprintln!("attached_monotonic_ns={}", monotonic_ns());
    drop(link);
    Ok(())
}
