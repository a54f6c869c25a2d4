//! `bpfnexus vm exec [MEMHEX]`: run hex bytecode from stdin in the VM.

use crate::exit::Failure;
use std::io::Read;

pub fn exec(mem_hex: &str) -> Result<(), Failure> {
    let mut program = String::new();
    std::io::stdin()
        .read_to_string(&mut program)
        .map_err(|e| Failure::runtime(format!("reading bytecode from stdin: {e}")))?;
    let r0 = nexus_vm::exec_hex(&program, mem_hex)
        .map_err(|e| Failure::runtime(format!("vm exec: {e}")))?;
    println!("{r0:#x}");
    Ok(())
}
