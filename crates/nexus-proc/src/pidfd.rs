//! Process descriptors (`pidfd_open`): a descriptor that names one process
//! for as long as it is held, so a pid reused later cannot be mistaken for
//! it, and that becomes readable (`POLLIN`) when the process exits.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Why a pidfd could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PidfdError {
    /// No process has this pid (or it is not a valid pid).
    #[error("process {0} does not exist")]
    NoProcess(i32),
    /// The kernel has no `pidfd_open` (before 5.3).
    #[error("this kernel has no pidfd_open (Linux 5.3 or later is needed)")]
    Unsupported,
    /// `pidfd_open` failed for another reason.
    #[error("pidfd_open for process {pid} failed: {source}")]
    Open {
        /// The process.
        pid: i32,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
}

/// A descriptor referring to one process.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// `pidfd_open(pid, 0)`.
    pub fn open(pid: i32) -> Result<PidFd, PidfdError> {
        if pid <= 0 {
            // 0 and negative numbers name process groups elsewhere, never
            // one process.
            return Err(PidfdError::NoProcess(pid));
        }
        // SAFETY: pidfd_open takes a pid and a flags word and returns a new
        // descriptor or -1; no memory is passed.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw >= 0 {
            let fd = RawFd::try_from(raw).map_err(|_| PidfdError::Open {
                pid,
                source: std::io::Error::from_raw_os_error(libc::EBADF),
            })?;
            // SAFETY: the kernel just returned this descriptor to us and
            // nothing else owns it.
            return Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let source = std::io::Error::last_os_error();
        Err(match source.raw_os_error() {
            Some(libc::ESRCH) => PidfdError::NoProcess(pid),
            Some(libc::ENOSYS) => PidfdError::Unsupported,
            _ => PidfdError::Open { pid, source },
        })
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl From<PidFd> for OwnedFd {
    fn from(fd: PidFd) -> OwnedFd {
        fd.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_becomes_readable_when_its_process_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .expect("sleep runs");
        let pid = i32::try_from(child.id()).expect("pids fit in i32");
        let fd = PidFd::open(pid).expect("this kernel has pidfd_open");
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready =
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).expect("poll works");
        assert_eq!(ready, 1, "the pidfd became readable when sleep exited");
        child.wait().expect("reap");
    }

    #[test]
    fn a_missing_process_is_named() {
        assert!(matches!(PidFd::open(0), Err(PidfdError::NoProcess(0))));
        assert!(matches!(PidFd::open(-5), Err(PidfdError::NoProcess(-5))));
        // Above the kernel's PID_MAX_LIMIT (4 Mi): never a live process.
        let absent = 1 << 23;
        assert!(matches!(
            PidFd::open(absent),
            Err(PidfdError::NoProcess(p)) if p == absent
        ));
    }
}
