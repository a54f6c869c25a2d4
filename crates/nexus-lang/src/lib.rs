//! The bpftrace language front end: lexer, recursive-descent parser, AST
//! with spans, diagnostics with "did you mean", and printers.
//!
//! No I/O: everything takes `&str` and returns values.

pub mod ast;
pub mod names;
pub mod span;

pub use names::{BUILTINS, FUNCTIONS, PROBE_PROVIDERS, did_you_mean, is_builtin, is_function};
pub use span::{LineCol, LineIndex, Span};
