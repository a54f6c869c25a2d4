//! SIGINT/SIGTERM as readable events: blocked for the whole process and
//! read from a signalfd in the event loop, so an interrupt ends the session
//! in order (END, maps, detach) instead of killing it.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsFd, BorrowedFd};

/// Why the signals could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// `pthread_sigmask` failed.
    #[error("blocking SIGINT and SIGTERM failed: {0}")]
    Block(#[source] nix::Error),
    /// `signalfd` failed.
    #[error("creating a signalfd for SIGINT and SIGTERM failed: {0}")]
    SignalFd(#[source] nix::Error),
}

/// SIGINT and SIGTERM, blocked and readable through a signalfd.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Block SIGINT and SIGTERM in the calling thread and open a signalfd
    /// for them. Call it first thing in `main`, before any thread is
    /// started, so every thread inherits the mask and a signal is only ever
    /// delivered to the signalfd. (A held `-c` child resets its mask before
    /// `execve`, so the traced command still gets ^C.)
    pub fn block() -> Result<Signals, SignalError> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(SignalError::Block)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(SignalError::SignalFd)?;
        Ok(Signals { fd })
    }

    /// The signal waiting, if any (`SIGINT` = 2, `SIGTERM` = 15).
    pub fn take(&self) -> Option<i32> {
        match self.fd.read_signal() {
            Ok(Some(info)) => i32::try_from(info.ssi_signo).ok(),
            _ => None,
        }
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
