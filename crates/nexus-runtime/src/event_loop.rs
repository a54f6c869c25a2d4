//! The event loop: wait on the backend's record descriptor, the signalfd
//! and the traced command's pidfd; drain records in batches as they come.
//!
//! The loop drains until the buffer is empty and then waits on it again,
//! so the kernel wakes it when the next record lands. Under a flood that is
//! a wakeup every few records, which slows the traced workload (a printf on
//! each of 2 M syscalls: 4.2–5.3 s against 0.7 s untraced) but loses
//! nothing. Sleeping ~200 µs between drains instead halved the slowdown but
//! lost 5–50% of the records on this loaded 2-core machine, because a
//! sleeping consumer is not scheduled back in time; the lossless behaviour
//! is kept. The fix belongs to the producer side: submit with
//! `BPF_RB_NO_WAKEUP` and force a wakeup only past a fill threshold.
//!
//! Memory stays bounded: records are copied out of the ring buffer at most
//! `batch_bytes` at a time into one reused batch, and the sink writes
//! through a fixed buffer. What the kernel could not record is counted by
//! the programs (the drops map) and reported as it grows.

use crate::backend::Backend;
use crate::dispatch::Dispatcher;
use crate::session::{HeldProcess, RunOptions, SessionError};
use crate::signals::Signals;
use crate::sink::{Sink, SinkError};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A probe called `exit()`.
    Exit,
    /// SIGINT or SIGTERM (the signal number).
    Signal(i32),
    /// The `-c` command exited.
    CommandExited,
    /// The `-p` process exited.
    ProcessExited,
    /// The reader of our output went away.
    OutputClosed,
}

/// Waiting failed.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// `poll(2)` failed.
    #[error("waiting for events (poll) failed: {0}")]
    Poll(#[source] nix::Error),
}

/// What else, besides records and signals, ends the loop.
#[derive(Default)]
pub struct Waiters<'a> {
    /// The `-c` child.
    pub child: Option<&'a mut dyn HeldProcess>,
    /// The `-p` process (checked through /proc, no pidfd needed).
    pub pid: Option<u32>,
}

impl std::fmt::Debug for Waiters<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters")
            .field("child", &self.child.as_ref().map(|c| c.pid()))
            .field("pid", &self.pid)
            .finish()
    }
}

/// Longest sleep when nothing has a descriptor to wake us (the `-p`
/// process, a backend without a ready descriptor) and between lost-event
/// checks.
const IDLE_WAIT: Duration = Duration::from_millis(100);

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn sunk(result: Result<(), SessionError>) -> Result<bool, SessionError> {
    match result {
        Ok(()) => Ok(true),
        Err(SessionError::Sink(SinkError::BrokenPipe)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Run until something ends the session; returns why.
pub fn run<B: Backend>(
    backend: &mut B,
    dispatcher: &mut Dispatcher<'_>,
    sink: &mut dyn Sink,
    signals: &Signals,
    mut waiters: Waiters<'_>,
    options: &RunOptions,
) -> Result<EndReason, SessionError> {
    let mut last_lost_check = Instant::now();
    loop {
        // Drain what is there, checking for signals between batches so a
        // flood of records cannot starve ^C.
        loop {
            let n = match dispatcher.drain_once(backend, sink, options.batch_bytes) {
                Ok(n) => n,
                Err(SessionError::Sink(SinkError::BrokenPipe)) => {
                    return Ok(EndReason::OutputClosed);
                }
                Err(e) => return Err(e),
            };
            if dispatcher.exit_requested() {
                return Ok(EndReason::Exit);
            }
            if let Some(sig) = signals.take() {
                return Ok(EndReason::Signal(sig));
            }
            if n == 0 {
                break;
            }
        }
        if last_lost_check.elapsed() >= options.lost_check {
            last_lost_check = Instant::now();
            if !sunk(dispatcher.report_lost(backend, sink))? {
                return Ok(EndReason::OutputClosed);
            }
        }
        if let Some(child) = waiters.child.as_deref_mut()
            && child.exit_fd().is_none()
            && child.has_exited()
        {
            return Ok(EndReason::CommandExited);
        }
        if let Some(pid) = waiters.pid
            && !pid_alive(pid)
        {
            return Ok(EndReason::ProcessExited);
        }

        let ring = backend.ready_fd();
        let child_fd = waiters.child.as_deref().and_then(|c| c.exit_fd());
        let mut fds = Vec::with_capacity(3);
        fds.push(PollFd::new(signals.as_fd(), PollFlags::POLLIN));
        if let Some(fd) = child_fd {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        if let Some(fd) = ring {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let timeout =
            PollTimeout::try_from(IDLE_WAIT.min(options.lost_check)).unwrap_or(PollTimeout::NONE);
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(LoopError::Poll(e).into()),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let child_exited = child_fd.is_some() && ready(1);
        drop(fds);
        if let Some(sig) = signals.take() {
            return Ok(EndReason::Signal(sig));
        }
        if child_exited {
            // The final drain after the loop picks up its last records.
            return Ok(EndReason::CommandExited);
        }
    }
}
