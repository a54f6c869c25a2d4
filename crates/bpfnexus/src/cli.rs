//! Command-line arguments.

use clap::{Args, Parser, Subcommand};

/// bpfnexus: an eBPF tracing engine. The bpftrace language compiled straight
/// to eBPF, with its own loader.
#[derive(Debug, Parser)]
#[command(name = "bpfnexus", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok, 1 runtime failure, 2 usage or compile error, \
                        3 kernel or permission error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this machine's kernel lets bpfnexus do, and how to fix what it doesn't.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of the readable report.
    #[arg(long)]
    pub json: bool,
}
