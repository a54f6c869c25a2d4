//! Print what `probe_capabilities` finds on this machine and how long each
//! part takes: `cargo run -p nexus-kernel --example probe_capabilities`.

use nexus_insn::{Insn, Reg};
use nexus_kernel::{BtfTarget, Map, Program, ProgramSpec};
use std::time::Instant;

fn main() {
    let caps = nexus_kernel::probe_capabilities();
    println!("{caps:#?}");
    println!("probe_capabilities: {} us", caps.probe_micros);
    // The fentry verdict in full: the verifier log shows whether the kernel
    // refused before or after verification.
    let insns = [Insn::mov64_imm(Reg::R0, 0), Insn::exit()];
    let t = Instant::now();
    let spec = ProgramSpec::tracing(
        "fentry_check",
        BtfTarget::Fentry("do_sys_openat2".into()),
        &insns,
    );
    match Program::load(&spec, &[] as &[Map]) {
        Ok(_) => println!("fentry loads here"),
        Err(e) => println!("fentry: {e}\nlog:\n{}", e.verifier_log().unwrap_or("")),
    }
    println!("fentry attempt: {} us", t.elapsed().as_micros());
}
