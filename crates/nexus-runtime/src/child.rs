//! The `-c` child and `-p` process as session targets, over `nexus-proc`.

use crate::session::{HeldProcess, Target};
use nexus_proc::{HeldChild, PidFd, PidfdError};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

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

    fn reap(&mut self) -> Option<nexus_proc::ExitStatus> {
        // An error means it was never ours to wait for or is gone: no status.
        self.try_wait().ok().flatten()
    }
}

/// A running process the session did not start (`-p`), watched for its
/// exit through a pidfd: the descriptor becomes readable when the process
/// exits, so the event loop learns of it in the same `poll` that waits for
/// records instead of looking at `/proc` on a timer.
#[derive(Debug)]
pub struct ProcessWatch {
    pid: u32,
    /// `None` on kernels without `pidfd_open` (before 5.3): then
    /// [`ProcessWatch::is_alive`] is checked after every drain.
    pidfd: Option<OwnedFd>,
}

impl ProcessWatch {
    /// Start watching `pid`.
    pub fn open(pid: u32) -> Result<ProcessWatch, PidError> {
        let raw = i32::try_from(pid).map_err(|_| PidError::NoProcess(pid))?;
        match PidFd::open(raw) {
            Ok(fd) => Ok(ProcessWatch {
                pid,
                pidfd: Some(fd.into()),
            }),
            Err(PidfdError::NoProcess(_)) => Err(PidError::NoProcess(pid)),
            // No pidfd_open on this kernel: fall back to /proc.
            Err(PidfdError::Unsupported) => Ok(ProcessWatch { pid, pidfd: None }),
            Err(PidfdError::Open { source, .. }) => Err(PidError::Watch { pid, source }),
        }
    }

    /// The watched pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A descriptor that becomes readable when the process exits.
    pub fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// True while `/proc/PID` exists (the fallback without a pidfd).
    pub fn is_alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Why a `-p` target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PidError {
    /// No such process.
    #[error("process {0} does not exist")]
    NoProcess(u32),
    /// `pidfd_open` failed for another reason than a missing process.
    #[error("watching process {pid} for its exit (pidfd_open) failed: {source}")]
    Watch {
        /// The process.
        pid: u32,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// Its descendants could not be listed.
    #[error("listing the descendants of process {pid} failed: {message}")]
    Tree {
        /// The process.
        pid: u32,
        /// What went wrong.
        message: String,
    },
}

/// `-p PID`: the process (watched through a pidfd opened now, so a pid
/// reused later cannot be mistaken for it) and its current descendants.
pub fn pid_target<'a>(pid: u32) -> Result<Target<'a>, PidError> {
    let raw = i32::try_from(pid).map_err(|_| PidError::NoProcess(pid))?;
    let process = ProcessWatch::open(pid)?;
    let descendants = nexus_proc::tree::descendants(raw)
        .map_err(|e| PidError::Tree {
            pid,
            message: e.to_string(),
        })?
        .into_iter()
        .filter_map(|p| u32::try_from(p).ok())
        .collect();
    Ok(Target::Pid {
        process,
        descendants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_watched_process_exit_makes_the_pidfd_readable() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .expect("sleep runs");
        let watch = ProcessWatch::open(child.id()).expect("the child exists");
        assert_eq!(watch.pid(), child.id());
        assert!(watch.is_alive());
        let fd = watch.exit_fd().expect("this kernel has pidfd_open");
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        let ready =
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).expect("poll works");
        assert_eq!(ready, 1, "the pidfd became readable when sleep exited");
        child.wait().expect("reap");
        std::thread::sleep(Duration::from_millis(1));
        assert!(!watch.is_alive());
    }

    #[test]
    fn watching_a_missing_process_names_it() {
        // Larger than any pid_max the kernel allows (2^22).
        let err = ProcessWatch::open(1 << 23).expect_err("no such process");
        assert!(
            matches!(err, PidError::NoProcess(p) if p == 1 << 23),
            "{err}"
        );
    }
}
