//! The `bpfnexus` command line. A thin layer: argument parsing, choosing what
//! to run, and mapping failures to the documented exit codes. The work is
//! done by the library crates.

mod cli;
mod doctor;
mod exit;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        Some(cli::Command::Doctor(args)) => doctor::run(&args),
        None => Err(exit::Failure::usage(
            "nothing to do: give a subcommand (try `bpfnexus doctor`) or see `bpfnexus --help`",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}
