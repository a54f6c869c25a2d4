//! The bpftrace language front end: lexer, recursive-descent parser, AST
//! with spans, diagnostics with "did you mean", and printers.
//!
//! No I/O: everything takes `&str` and returns values.
//!
//! ```
//! let program = nexus_lang::parse("BEGIN { printf(\"hello\\n\"); exit(); }")
//!     .map_err(|d| nexus_lang::render_all(&d, "stdin", ""))
//!     .unwrap_or_default();
//! assert_eq!(program.probes.len(), 1);
//! ```

pub mod ast;
pub mod diag;
pub mod lexer;
pub mod names;
pub mod parser;
pub mod print;
pub mod probe;
pub mod span;

pub use diag::{Diagnostic, Severity, render_all};
pub use names::{
    BUILTINS, FUNCTIONS, PROBE_PROVIDERS, UNSUPPORTED_PROVIDERS, describe, did_you_mean,
    is_builtin, is_function, probe_kind, unknown_function, unknown_identifier,
};
pub use parser::{MAX_DEPTH, MAX_ERRORS, ParseOutput, parse, parse_with_diagnostics};
pub use print::dump_tree;
pub use probe::parse_attach_point;
pub use span::{LineCol, LineIndex, Span};
