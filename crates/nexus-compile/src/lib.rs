//! The bpftrace language compiled straight to eBPF bytecode, without LLVM.
//!
//! Pipeline: resolve (providers, builtins) → typecheck → resources (maps,
//! event schemas) → IR (virtual registers) → register/stack allocation →
//! emit (`nexus-insn`) → [`Artifact`]. No I/O: probe facts come through a
//! [`ProbeCatalog`].

pub mod artifact;
pub mod catalog;

pub use artifact::*;
pub use catalog::{BtfArg, CatalogError, MemoryCatalog, ProbeCatalog, TracepointField, glob_match};
