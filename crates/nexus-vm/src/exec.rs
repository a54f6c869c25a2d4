//! `bpfnexus vm exec`: run raw bytecode given as hex on memory given as hex,
//! the interface eBPF VMs are conformance-tested with (bpf_conformance's
//! plugins take the same two inputs and print r0).

use crate::vm::{Vm, VmError};
use std::sync::Arc;

/// Parse hex text: whitespace anywhere is ignored, an optional `0x` may
/// prefix each whitespace-separated group, and digits pair up into bytes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, VmError> {
    let mut digits = Vec::with_capacity(text.len());
    for group in text.split_whitespace() {
        let g = group
            .strip_prefix("0x")
            .or_else(|| group.strip_prefix("0X"))
            .unwrap_or(group);
        for c in g.chars() {
            let v = c
                .to_digit(16)
                .ok_or_else(|| VmError::Hex(format!("`{c}` in `{group}` is not a hex digit")))?;
            digits.push(v as u8);
        }
    }
    if digits.len() % 2 != 0 {
        return Err(VmError::Hex(format!(
            "{} hex digits do not make whole bytes",
            digits.len()
        )));
    }
    Ok(digits.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Run `program_hex` (kernel bytecode, 8 bytes per instruction) with r1
/// pointing at the bytes of `mem_hex` (writable) and r2 holding their
/// length; returns r0. Uses a deterministic mock platform (CPU 0, time 0).
pub fn exec_hex(program_hex: &str, mem_hex: &str) -> Result<u64, VmError> {
    let code = parse_hex(program_hex)?;
    let mut mem = parse_hex(mem_hex)?;
    let mut vm = Vm::with_platform(&[], Arc::new(crate::platform::MockPlatform::new(1)))?;
    let prog = vm.load_bytes(&code)?;
    vm.run(prog, &mut mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(
            parse_hex("0xaa bb\n cc0d").expect("hex"),
            vec![0xaa, 0xbb, 0xcc, 0x0d]
        );
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert_eq!(parse_hex("  ").expect("empty"), Vec::<u8>::new());
    }

    #[test]
    fn exec_returns_r0() {
        // mov r0, 42; exit
        let r = exec_hex("b7 00 00 00 2a 00 00 00 95 00 00 00 00 00 00 00", "").expect("runs");
        assert_eq!(r, 42);
        // ldxb r0, [r1+2]; exit
        let r = exec_hex(
            "71 10 02 00 00 00 00 00 95 00 00 00 00 00 00 00",
            "aa bb 11 cc dd",
        )
        .expect("runs");
        assert_eq!(r, 0x11);
    }
}
