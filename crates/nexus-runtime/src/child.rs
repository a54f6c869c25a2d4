//! The `-c` child and `-p` process as session targets, over `nexus-proc`.

use crate::session::{HeldProcess, Target};
use nexus_proc::HeldChild;
use std::os::fd::BorrowedFd;

impl HeldProcess for HeldChild {
    fn pid(&self) -> u32 {
        u32::try_from(HeldChild::pid(self)).unwrap_or(0)
    }

    fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd()
    }

    fn has_exited(&mut self) -> bool {
        // An error means there is no child to wait for any more.
        !matches!(self.try_wait(), Ok(None))
    }

    fn release(&mut self) -> Result<(), String> {
        HeldChild::release(self).map_err(|e| e.to_string())
    }
}

/// Why a `-p` target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PidError {
    /// No such process.
    #[error("process {0} does not exist")]
    NoProcess(u32),
    /// Its descendants could not be listed.
    #[error("listing the descendants of process {pid} failed: {message}")]
    Tree {
        /// The process.
        pid: u32,
        /// What went wrong.
        message: String,
    },
}

/// `-p PID`: the process and its current descendants.
pub fn pid_target<'a>(pid: u32) -> Result<Target<'a>, PidError> {
    let raw = i32::try_from(pid).map_err(|_| PidError::NoProcess(pid))?;
    if !nexus_proc::tree::pid_exists(raw) {
        return Err(PidError::NoProcess(pid));
    }
    let descendants = nexus_proc::tree::descendants(raw)
        .map_err(|e| PidError::Tree {
            pid,
            message: e.to_string(),
        })?
        .into_iter()
        .filter_map(|p| u32::try_from(p).ok())
        .collect();
    Ok(Target::Pid { pid, descendants })
}
