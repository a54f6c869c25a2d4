//! nexus-runtime's integration tests (one binary): golden comparisons with
//! real bpftrace 0.17 output, the sinks' own record shapes and error
//! handling, and the kernel backend's verifier explanations.

mod golden;
mod kernel;
mod sinks;
