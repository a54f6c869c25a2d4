//! The `bpfnexus` command line. A thin layer: argument parsing, choosing what
//! to run, and mapping failures to the documented exit codes. The work is
//! done by the library crates.

mod cli;
mod doctor;
mod exit;
mod trace;
mod vm;

use clap::Parser;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    // First thing: the `-v` timing measures from here.
    let process_start = Instant::now();
    let cli = cli::Cli::parse();
    let result = match &cli.command {
        Some(cli::Command::Doctor(args)) => doctor::run(args),
        Some(cli::Command::Vm(args)) => match &args.command {
            cli::VmCommand::Exec { mem } => vm::exec(mem),
        },
        None => trace::run(&cli.trace, process_start),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}
