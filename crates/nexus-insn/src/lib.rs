//! The eBPF instruction set (ISA v4, RFC 9669) as the Linux kernel accepts it on
//! x86_64: opcode constants, a typed instruction with builders, encoding to and
//! decoding from bytes, helper ids with their names, program/map/attach type
//! numbers, and a disassembler whose text reads like the kernel verifier's log.
//!
//! This crate depends on nothing and does no I/O.

pub mod disasm;
pub mod helpers;
pub mod insn;
pub mod op;
pub mod types;

pub use disasm::{disassemble, disassemble_insn};
pub use helpers::Helper;
pub use insn::{
    AluOp, AtomicOp, DecodeError, Endian, Insn, JmpCond, Reg, Size, Src, decode, encode,
};
pub use types::{AttachType, MapType, ProgType};
