//! The documented exit codes and how failures reach the user.

use std::process::ExitCode;

/// Exit code: a runtime failure (the trace started but something broke).
pub const RUNTIME: u8 = 1;
/// Exit code: bad usage, or a program/spec/config that does not compile.
pub const USAGE: u8 = 2;
/// Exit code: the kernel refused (permissions, missing features, verifier).
pub const KERNEL: u8 = 3;

/// A failure with the exit code it maps to. The message is already written
/// for the user; `report` prints it on stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// The message is complete (rendered diagnostics): print it as is,
    /// without the `bpfnexus: ` prefix.
    pub rendered: bool,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: USAGE,
            message: message.into(),
            rendered: false,
        }
    }

    /// Rendered compile diagnostics (exit 2).
    pub fn usage_rendered(message: impl Into<String>) -> Self {
        Failure {
            rendered: true,
            ..Failure::usage(message)
        }
    }

    /// A rendered kernel refusal, e.g. a verifier diagnostic (exit 3).
    pub fn kernel_rendered(message: impl Into<String>) -> Self {
        Failure {
            rendered: true,
            ..Failure::kernel(message)
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Failure {
            code: RUNTIME,
            message: message.into(),
            rendered: false,
        }
    }

    pub fn kernel(message: impl Into<String>) -> Self {
        Failure {
            code: KERNEL,
            message: message.into(),
            rendered: false,
        }
    }

    pub fn report(self) -> ExitCode {
        if self.rendered {
            eprint!("{}", self.message);
            if !self.message.ends_with('\n') {
                eprintln!();
            }
        } else if !self.message.is_empty() {
            eprintln!("bpfnexus: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        // A closed pipe (`bpfnexus … | head`) is not a failure.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Failure {
                code: 0,
                message: String::new(),
                rendered: false,
            };
        }
        Failure::runtime(format!("writing output: {e}"))
    }
}
