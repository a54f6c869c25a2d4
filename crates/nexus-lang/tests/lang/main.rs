//! Integration tests for the bpftrace front end: valid programs, the
//! diagnostic of every error kind, and robustness on arbitrary input.

mod errors;
mod robustness;
mod valid;
