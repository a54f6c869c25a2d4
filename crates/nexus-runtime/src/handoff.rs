//! Handing slow detaches to a short-lived background process: the policy.
//!
//! Closing the last reference to a perf-based BPF link (classic
//! tracepoint, uprobe, kprobe, perf event) waits for kernel RCU grace
//! periods — 40–80 ms per classic tracepoint and ~130 ms per uprobe here —
//! and the kernel serialises much of it. A one-shot run with 20 classic
//! tracepoints spent ~1 s of its ~1.05 s closing links. The probes are
//! already inert by then (the session sets the config map's `stopping`
//! flag, which every probe program checks first), so nobody needs to wait.
//!
//! The mechanics (the double fork, the helper that keeps only the link
//! descriptors, the parallel closers, the gate that orders the closes) are
//! [`nexus_proc::handoff`]; this module says what is handed off and what
//! `-v` prints. The kernel backend decides which links are slow and when
//! to hand them off (ADR 0001).

use std::os::fd::RawFd;
use std::time::Duration;

pub use nexus_proc::handoff::{HandoffError, MAX_CLOSERS};

/// A background detach that was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundDetach {
    /// Descriptors the helper closes.
    pub descriptors: usize,
    /// The intermediate child's pid (the helper is its child, reparented to
    /// init; the kernel does not tell us the grandchild's pid here).
    pub forked_pid: u32,
    /// What the handoff cost the caller (forks and the wait for the
    /// intermediate child).
    pub elapsed: Duration,
}

/// What the helper does with stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Close it at once with everything else.
    Silent,
    /// Keep stderr open and write one line when every link is closed
    /// (`-v`): `bpfnexus: background detach closed N link descriptors in
    /// X ms from K processes`.
    Stderr,
}

/// Held by the caller until it has closed its own copies of the links;
/// dropping it (or exiting) lets the helper close them.
#[derive(Debug)]
pub struct HelperGate {
    _gate: nexus_proc::HandoffGate,
}

/// The `-v` line's words around the numbers.
const REPORT: nexus_proc::StderrReport<'static> = nexus_proc::StderrReport {
    lead: "bpfnexus: background detach closed",
    noun: "link descriptor",
};

/// Fork a helper that keeps the link descriptors `keep` open and closes
/// everything else now; once the returned gate is dropped it closes `keep`
/// and exits. The caller still owns `keep`: close those copies, then drop
/// the gate.
pub fn hand_off(
    keep: &[RawFd],
    report: Report,
) -> Result<(BackgroundDetach, HelperGate), HandoffError> {
    let options = nexus_proc::HandoffOptions {
        report: (report == Report::Stderr).then_some(REPORT),
    };
    let (done, gate) = nexus_proc::hand_off(keep, &options)?;
    Ok((
        BackgroundDetach {
            descriptors: done.descriptors,
            forked_pid: done.forked_pid,
            elapsed: done.elapsed,
        },
        HelperGate { _gate: gate },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsRawFd, OwnedFd};

    #[test]
    fn links_handed_off_stay_open_until_the_gate_is_dropped_then_close() {
        // A pipe's write end stands in for a link: the reader sees EOF only
        // when the helper's copy is gone too.
        let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
        let (done, gate) = hand_off(&[write.as_raw_fd(), -1], Report::Silent).expect("handoff");
        assert_eq!(done.descriptors, 1, "negative numbers are not descriptors");
        drop(write);
        drop(gate);
        let mut buf = Vec::new();
        std::fs::File::from(read)
            .read_to_end(&mut buf)
            .expect("EOF once the helper closed its copy");
        assert!(buf.is_empty());
    }
}
