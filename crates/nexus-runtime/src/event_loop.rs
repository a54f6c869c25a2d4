//! The event loop: wait on the backend's record descriptor, the signalfd
//! and the traced command's pidfd; drain records in large batches.
//!
//! Producers submit printf records with `BPF_RB_NO_WAKEUP` and force a
//! wakeup only when the ring buffer is past a fill threshold (and for
//! control records such as `exit()`). A wakeup per record cost the traced
//! workload a self-IPI on every submit (measured with `perf` here: 44% of
//! the CPU of a printf-per-syscall `dd` went to `native_apic_msr_write`
//! under `bpf_ringbuf_submit`). So the loop does not wait for a wakeup per
//! record: it sleeps at most [`RunOptions::drain_interval`] (10 ms by
//! default), then drains the buffer until it is empty. That interval is the
//! delay of a low-rate event and costs an idle session 100 wakeups a
//! second. Under a flood (a drain found [`BUSY_RECORDS`] or more) it sleeps
//! only [`RunOptions::busy_drain_interval`] (1 ms), to keep the buffer
//! below the producers' forced-wakeup threshold: past it every record
//! committed before the consumer runs queues a wakeup, and at ~1 M
//! records/s a 10 ms sleep reaches it (4 MiB / 8 ≈ 11 k records).
//!
//! Under a flood the loop reads at most [`MAX_BATCHES_PER_WAIT`] batches
//! before it polls again (without sleeping), so a signal or the command's
//! exit is noticed promptly. The signalfd is read only when `poll` says it
//! is readable: reading it after every batch was 42 k failed `read(2)`s in
//! a 2 M-event run.
//!
//! Output is flushed whenever the buffer has been drained empty, so what
//! arrived is visible within one drain interval, and a terminal sees whole
//! batches rather than a write per line.
//!
//! Memory stays bounded: records are copied out of the ring buffer at most
//! `batch_bytes` at a time into one reused batch, and the sink writes
//! through a fixed buffer. What the kernel could not record is counted by
//! the programs (the drops map) and reported as it grows.

use crate::backend::Backend;
use crate::child::ProcessWatch;
use crate::dispatch::Dispatcher;
use crate::session::{HeldProcess, RunOptions, SessionError};
use crate::signals::Signals;
use crate::sink::{Sink, SinkError};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::fd::AsFd;
use std::time::Instant;

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
    /// The `-p` process.
    pub process: Option<&'a ProcessWatch>,
}

impl std::fmt::Debug for Waiters<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters")
            .field("child", &self.child.as_ref().map(|c| c.pid()))
            .field("process", &self.process.map(ProcessWatch::pid))
            .finish()
    }
}

/// A drain that found at least this many records means a flood: the next
/// sleep is [`RunOptions::busy_drain_interval`].
pub const BUSY_RECORDS: usize = 1024;

/// Batches read back to back before the loop looks at signals and the
/// traced process again (with `batch_bytes` = 256 KiB: 16 MiB of records).
pub const MAX_BATCHES_PER_WAIT: usize = 64;

fn sunk(result: Result<(), SessionError>) -> Result<bool, SessionError> {
    match result {
        Ok(()) => Ok(true),
        Err(SessionError::Sink(SinkError::BrokenPipe)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What one round of draining found.
enum Drained {
    /// The buffer is empty (`records` were dispatched on the way).
    Empty { records: usize },
    /// [`MAX_BATCHES_PER_WAIT`] batches were read and more may be waiting.
    More,
    /// The session must end.
    End(EndReason),
}

fn drain<B: Backend>(
    backend: &mut B,
    dispatcher: &mut Dispatcher<'_>,
    sink: &mut dyn Sink,
    options: &RunOptions,
) -> Result<Drained, SessionError> {
    let mut records = 0;
    for _ in 0..MAX_BATCHES_PER_WAIT {
        let n = match dispatcher.drain_once(backend, sink, options.batch_bytes) {
            Ok(n) => n,
            Err(SessionError::Sink(SinkError::BrokenPipe)) => {
                return Ok(Drained::End(EndReason::OutputClosed));
            }
            Err(e) => return Err(e),
        };
        if dispatcher.exit_requested() {
            return Ok(Drained::End(EndReason::Exit));
        }
        if n == 0 {
            return Ok(Drained::Empty { records });
        }
        records += n;
    }
    Ok(Drained::More)
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
    let mut unflushed = false;
    loop {
        let mut busy = false;
        let more = match drain(backend, dispatcher, sink, options)? {
            Drained::End(reason) => return Ok(reason),
            Drained::More => {
                unflushed = true;
                true
            }
            Drained::Empty { records } => {
                busy = records >= BUSY_RECORDS;
                if records > 0 || unflushed {
                    // Idle for now: make what arrived visible.
                    if !sunk(sink.flush().map_err(SessionError::Sink))? {
                        return Ok(EndReason::OutputClosed);
                    }
                    unflushed = false;
                }
                false
            }
        };
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
        if let Some(process) = waiters.process
            && process.exit_fd().is_none()
            && !process.is_alive()
        {
            return Ok(EndReason::ProcessExited);
        }

        let child_fd = waiters.child.as_deref().and_then(|c| c.exit_fd());
        let process_fd = waiters.process.as_ref().and_then(|p| p.exit_fd());
        let mut fds = Vec::with_capacity(4);
        fds.push(PollFd::new(signals.as_fd(), PollFlags::POLLIN));
        let child_at = child_fd.map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        let process_at = process_fd.map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        if let Some(fd) = backend.ready_fd() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let interval = if busy {
            options.busy_drain_interval
        } else {
            options.drain_interval
        };
        let timeout = if more {
            PollTimeout::ZERO
        } else {
            PollTimeout::try_from(interval.min(options.lost_check)).unwrap_or(PollTimeout::NONE)
        };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(LoopError::Poll(e).into()),
        }
        let ready = |at: Option<usize>| {
            at.and_then(|i| fds.get(i))
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let signalled = ready(Some(0));
        let child_exited = ready(child_at);
        let process_exited = ready(process_at);
        drop(fds);
        if signalled && let Some(sig) = signals.take() {
            return Ok(EndReason::Signal(sig));
        }
        // The final drain after the loop picks up the last records.
        if child_exited {
            return Ok(EndReason::CommandExited);
        }
        if process_exited {
            return Ok(EndReason::ProcessExited);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::{AttachedProbe, BackendError, DetachReport, RawEntry, RecordBatch};
    use crate::sink::{MessageKind, PrintfEvent, RunStats};
    use crate::text::MapPrintOptions;
    use crate::value::{MapDump, Value};
    use nexus_compile::{Artifact, CompileOptions, EventKind, RECORD_HEADER_SIZE};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::os::fd::BorrowedFd;
    use std::rc::Rc;

    /// A test backend, shared with the session tests, that journals the
    /// lifecycle calls (configure, add_to_scope, attach) and hands out
    /// records in rounds, as a ring buffer filled by producers that never
    /// wake the consumer would: each `read_batch` takes the next round; an
    /// empty round, or none left, is an empty buffer.
    #[derive(Default)]
    pub(crate) struct ScriptedBackend {
        pub(crate) journal: Rc<RefCell<Vec<String>>>,
        pub(crate) rounds: VecDeque<Vec<Vec<u8>>>,
    }

    impl ScriptedBackend {
        fn note(&self, what: impl Into<String>) {
            self.journal.borrow_mut().push(what.into());
        }
    }

    impl Backend for ScriptedBackend {
        fn configure(
            &mut self,
            config: &crate::RunConfig,
            scope: &[u32],
        ) -> Result<(), BackendError> {
            self.note(format!("configure cpid={} scope={scope:?}", config.cpid));
            Ok(())
        }
        fn add_to_scope(&mut self, tgid: u32) -> Result<(), BackendError> {
            self.note(format!("add_to_scope {tgid}"));
            Ok(())
        }
        fn attach(&mut self) -> Result<Vec<AttachedProbe>, BackendError> {
            self.note("attach");
            Ok(Vec::new())
        }
        fn probe_count(&self) -> usize {
            1
        }
        fn run_begin(&mut self) -> Result<(), BackendError> {
            Ok(())
        }
        fn run_end(&mut self) -> Result<(), BackendError> {
            Ok(())
        }
        fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
            // Never readable: only the drain interval brings records in.
            None
        }
        fn read_batch(&mut self, batch: &mut RecordBatch, _max_bytes: usize) -> usize {
            batch.clear();
            for record in self.rounds.pop_front().unwrap_or_default() {
                batch.push(&record);
            }
            batch.len()
        }
        fn map_entries(&mut self, _: usize) -> Result<Vec<RawEntry>, BackendError> {
            Ok(Vec::new())
        }
        fn clear_map(&mut self, _: usize) -> Result<(), BackendError> {
            Ok(())
        }
        fn zero_map(&mut self, _: usize) -> Result<(), BackendError> {
            Ok(())
        }
        fn stack_frames(&mut self, _: u32, _: &mut Vec<u64>) -> bool {
            false
        }
        fn lost_events(&mut self) -> Result<u64, BackendError> {
            Ok(0)
        }
        fn detach(&mut self) -> DetachReport {
            DetachReport::default()
        }
    }

    /// A test sink, shared with the session tests, that journals printf
    /// text, the attach line and flushes, in order, and accepts everything
    /// else silently.
    #[derive(Default)]
    pub(crate) struct JournalSink(pub(crate) Rc<RefCell<Vec<String>>>);

    impl Sink for JournalSink {
        fn attached_probes(&mut self, count: u64) -> Result<(), SinkError> {
            self.0.borrow_mut().push(format!("Attaching {count}"));
            Ok(())
        }
        fn printf(&mut self, event: &PrintfEvent<'_>) -> Result<(), SinkError> {
            let mut text = Vec::new();
            event.site.format.format(event.args, &mut text)?;
            self.0
                .borrow_mut()
                .push(String::from_utf8_lossy(&text).into_owned());
            Ok(())
        }
        fn message(&mut self, _: MessageKind, _: &[u8]) -> Result<(), SinkError> {
            Ok(())
        }
        fn value(&mut self, _: &Value) -> Result<(), SinkError> {
            Ok(())
        }
        fn map(&mut self, _: &MapDump, _: &MapPrintOptions) -> Result<(), SinkError> {
            Ok(())
        }
        fn exit_maps(&mut self, _: &[MapDump]) -> Result<(), SinkError> {
            Ok(())
        }
        fn lost(&mut self, _: u64) -> Result<(), SinkError> {
            Ok(())
        }
        fn run_stats(&mut self, _: &RunStats) -> Result<(), SinkError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            self.0.borrow_mut().push("flush".into());
            Ok(())
        }
        fn finish(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    fn record(event_id: usize) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_HEADER_SIZE as usize];
        r[..4].copy_from_slice(&u32::try_from(event_id).unwrap().to_le_bytes());
        r
    }

    fn event_of(artifact: &Artifact, matches: impl Fn(&EventKind) -> bool) -> usize {
        artifact
            .events
            .iter()
            .position(|e| matches(&e.kind))
            .unwrap()
    }

    #[test]
    fn records_that_arrive_without_a_wakeup_are_drained_flushed_and_exit_ends_the_loop() {
        let artifact = nexus_compile::compile_source(
            r#"BEGIN { printf("a\n"); exit(); }"#,
            &nexus_kernel::KernelCatalog,
            &CompileOptions::default(),
        )
        .expect("compiles");
        let a = event_of(&artifact, |k| matches!(k, EventKind::Printf { .. }));
        let exit = event_of(&artifact, |k| matches!(k, EventKind::Exit));
        let mut backend = ScriptedBackend {
            rounds: VecDeque::from([
                vec![record(a), record(a)],
                vec![],
                // Arrives while the loop sleeps; no descriptor says so.
                vec![record(a)],
                vec![],
                vec![record(exit), record(a)],
            ]),
            ..ScriptedBackend::default()
        };
        let mut dispatcher = Dispatcher::new(&artifact);
        let mut sink = JournalSink::default();
        let signals = Signals::block().expect("signalfd");
        let reason = run(
            &mut backend,
            &mut dispatcher,
            &mut sink,
            &signals,
            Waiters::default(),
            &RunOptions::default(),
        )
        .expect("runs");
        assert_eq!(reason, EndReason::Exit);
        // Each time the buffer ran empty what arrived was flushed. A batch
        // is dispatched whole, so the record behind exit() is printed too
        // (the session's final drain would print it anyway).
        assert_eq!(
            *sink.0.borrow(),
            ["a\n", "a\n", "flush", "a\n", "flush", "a\n"]
        );
        assert_eq!(dispatcher.stats().events, 5);
    }
}
