//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// bpfnexus: an eBPF tracing engine. The bpftrace language compiled straight
/// to eBPF, with its own loader.
#[derive(Debug, Parser)]
#[command(name = "bpfnexus", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
#[command(after_help = "\
Examples:
  bpfnexus -e 'tracepoint:syscalls:sys_enter_openat { printf(\"%s\\n\", str(args->filename)); }'
  bpfnexus -c 'ls /' -e 'tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }'
  bpfnexus -l 'tracepoint:syscalls:sys_enter_open*'

With -c, probes see only the command's process tree (kept current across
fork and exit); --no-scope traces every process as bpftrace does. With -p,
probes see only that process tree and the trace ends when it exits.

Exit codes: 0 ok, 1 runtime failure, 2 usage or compile error,
3 kernel or permission error (including verifier rejections).")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// bpftrace's text output.
    Text,
    /// JSON Lines.
    Json,
}

/// A compiler stage to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stage {
    /// The parsed program.
    Ast,
    /// The intermediate representation.
    Ir,
    /// The eBPF bytecode, disassembled.
    Asm,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The program text.
    #[arg(short = 'e', value_name = "PROGRAM")]
    pub program: Option<String>,
    /// Run CMD (held until every probe is attached) and trace its process tree.
    #[arg(short = 'c', value_name = "CMD")]
    pub command: Option<String>,
    /// Trace the process tree of PID; stop when it exits.
    #[arg(short = 'p', value_name = "PID", conflicts_with = "command")]
    pub pid: Option<u32>,
    /// Output format.
    #[arg(short = 'f', value_enum, default_value = "text", value_name = "FORMAT")]
    pub format: Format,
    /// Write output to FILE instead of stdout.
    #[arg(short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// List probes matching the pattern given as the first argument (all
    /// when omitted), e.g. `-l 'tracepoint:sched:*'` or
    /// `-l 'uprobe:/bin/bash:read*'`.
    #[arg(short = 'l')]
    pub list: bool,
    /// Compile and load into the kernel (the verifier runs), then exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Verbose: verifier logs, attach details and timing on stderr;
    /// tracepoint fields with -l.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// With -c, trace every process instead of only the command's tree.
    #[arg(long)]
    pub no_scope: bool,
    /// Wait for every probe to detach before exiting. By default probes
    /// that are slow to detach (classic tracepoints, uprobes, perf events:
    /// 40-130 ms each) are made inert and handed to a short-lived background
    /// process that detaches them after bpfnexus exits.
    #[arg(long)]
    pub sync_detach: bool,
    /// Print a compiler stage and exit.
    #[arg(long, value_enum, value_name = "STAGE")]
    pub emit: Option<Stage>,
    /// The program file (unless -e is given), then positional parameters
    /// ($1, $2, ...); with -l, the probe pattern.
    #[arg(value_name = "FILE")]
    pub args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this machine's kernel lets bpfnexus do, and how to fix what it doesn't.
    Doctor(DoctorArgs),
    /// The userspace eBPF VM.
    Vm(VmArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of the readable report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VmArgs {
    #[command(subcommand)]
    pub command: VmCommand,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Run hex bytecode read from stdin; r1 points at MEMHEX's bytes. Prints r0.
    Exec {
        /// Memory given to the program, as hex.
        #[arg(value_name = "MEMHEX", default_value = "")]
        mem: String,
    },
}
