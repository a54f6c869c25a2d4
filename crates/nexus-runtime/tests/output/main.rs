//! nexus-runtime's integration tests (one binary): golden comparisons with
//! real bpftrace 0.17 output, and the sinks' own record shapes and error
//! handling.

mod golden;
mod sinks;
