//! A tracing session: the lifecycle load → attach → release child → run →
//! END → final maps → detach, over any [`Backend`], printing through a
//! [`Sink`].
//!
//! The Artifact is already loaded into the backend when a session starts
//! (loading is where kernel refusals happen, and `--dry-run` stops there).
//! [`run`] then:
//!
//! 1. fills the config map (our tgid, scoping, `cpid`, the start time) and
//!    seeds the scope map with the `-p` process tree (the `-c` command
//!    joins it at its exec, through the compiler's `scope_exec` program);
//! 2. prints `Attaching N probes...` and attaches every probe;
//! 3. runs BEGIN, then releases the held `-c` child;
//! 4. runs the event loop ([`crate::event_loop`]) until `exit()`, SIGINT or
//!    SIGTERM, or the traced command / `-p` process exits;
//! 5. makes every probe inert (the config map's `stopping` flag; fast raw
//!    tracepoint links close now), runs END, drains the last records,
//!    prints every user map and the totals, flushes the output, and
//!    detaches: links that are slow to close (classic tracepoints, uprobes,
//!    perf events: 40–130 ms each) are handed to a short-lived background
//!    process by default ([`crate::handoff`], ADR 0001), so the session
//!    returns without waiting for them.

use crate::backend::{AttachedProbe, Backend, BackendError, DetachReport, RunConfig};
use crate::dispatch::Dispatcher;
use crate::event_loop::{self, EndReason, LoopError, Waiters};
use crate::handoff::BackgroundDetach;
use crate::signals::Signals;
use crate::sink::{RunStats, Sink, SinkError};
use nexus_compile::Artifact;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// A command started by the session's caller and held before `execve`
/// until the probes are attached (`-c`). Implemented for
/// `nexus_proc::HeldChild`.
pub trait HeldProcess {
    /// Its pid (= tgid).
    fn pid(&self) -> u32;
    /// A descriptor that becomes readable when it exits (a pidfd).
    fn exit_fd(&self) -> Option<BorrowedFd<'_>>;
    /// True once it has exited (checked when there is no exit descriptor).
    fn has_exited(&mut self) -> bool;
    /// Let it run.
    fn release(&mut self) -> Result<(), String>;
    /// Reap it if it has exited, without blocking: how it ended, or `None`
    /// while it runs (or where the implementation has no exit status).
    fn reap(&mut self) -> Option<nexus_proc::ExitStatus> {
        None
    }
}

/// What the session traces.
pub enum Target<'a> {
    /// Every process except the tracer.
    System,
    /// `-c CMD`: the held command; with `scoped`, only its process tree.
    Command {
        /// The held child.
        child: &'a mut dyn HeldProcess,
        /// Limit probes to the child's process tree (the default; `--no-scope`
        /// turns it off).
        scoped: bool,
    },
    /// `-p PID`: the process tree of a running process; the session ends
    /// when the process exits.
    Pid {
        /// The process, watched for its exit.
        process: crate::child::ProcessWatch,
        /// Its descendants when the session starts (fork tracking adds
        /// later ones).
        descendants: Vec<u32>,
    },
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::System => f.write_str("System"),
            Target::Command { child, scoped } => f
                .debug_struct("Command")
                .field("pid", &child.pid())
                .field("scoped", scoped)
                .finish(),
            Target::Pid {
                process,
                descendants,
            } => f
                .debug_struct("Pid")
                .field("pid", &process.pid())
                .field("descendants", descendants)
                .finish(),
        }
    }
}

/// Told about milestones as they happen (the CLI prints `-v` timing).
pub trait Observer {
    /// Every probe is attached; `monotonic_ns` is `CLOCK_MONOTONIC` now.
    fn attached(&mut self, probes: &[AttachedProbe], elapsed: Duration, monotonic_ns: u64) {
        let _ = (probes, elapsed, monotonic_ns);
    }
    /// Everything is detached, or (with `background`) the slow links were
    /// handed to a background process that releases them after the session
    /// returns, the probes attached but inert meanwhile.
    fn detached(&mut self, report: &DetachReport, background: Option<&BackgroundDetach>) {
        let _ = (report, background);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {}

/// Tuning of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// The tgid probes must never report (ours).
    pub tracer_tgid: u32,
    /// Most bytes of records copied out of the ring buffer per batch.
    pub batch_bytes: usize,
    /// How often lost events are checked while running.
    pub lost_check: Duration,
    /// Longest sleep between drains of an empty buffer: producers do not
    /// wake the loop for every record (see [`crate::event_loop`]), so this
    /// is how late a lone event can be printed.
    pub drain_interval: Duration,
    /// The sleep between drains while records flood in (the last drain
    /// found [`crate::event_loop::BUSY_RECORDS`] or more): short enough to
    /// stay below the producers' forced-wakeup threshold.
    pub busy_drain_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            tracer_tgid: std::process::id(),
            batch_bytes: 256 * 1024,
            lost_check: Duration::from_millis(500),
            drain_interval: Duration::from_millis(10),
            busy_drain_interval: Duration::from_millis(1),
        }
    }
}

/// How a run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Why the event loop stopped.
    pub reason: EndReason,
    /// What was attached.
    pub probes: Vec<AttachedProbe>,
    /// Totals (also given to the sink).
    pub stats: RunStats,
    /// How the detach went.
    pub detach: DetachReport,
    /// The background process the slow links were handed to, if any.
    pub background_detach: Option<BackgroundDetach>,
    /// How the `-c` command ended, when it had ended (and was reaped) by
    /// the time the session finished; `None` while it still runs (the
    /// session leaves it running; its owner reaps it) or without `-c`.
    pub command_status: Option<nexus_proc::ExitStatus>,
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The backend refused or failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Writing output failed (not a closed pipe: that ends the run quietly).
    #[error(transparent)]
    Sink(SinkError),
    /// The held command could not be started.
    #[error("starting the traced command failed: {0}")]
    Release(String),
    /// Waiting for events failed.
    #[error(transparent)]
    Loop(#[from] LoopError),
    /// Reading the clock failed.
    #[error("reading CLOCK_MONOTONIC failed: {0}")]
    Clock(#[source] nix::Error),
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> Result<u64, nix::Error> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    Ok((ts.tv_sec() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec() as u64))
}

/// Run a loaded Artifact to the end. See the module documentation.
///
/// A closed output (`SinkError::BrokenPipe`) ends the run early but is not
/// an error: the report's reason is [`EndReason::OutputClosed`].
pub fn run<B: Backend>(
    backend: &mut B,
    artifact: &Artifact,
    mut target: Target<'_>,
    signals: &Signals,
    sink: &mut dyn Sink,
    observer: &mut dyn Observer,
    options: &RunOptions,
) -> Result<RunReport, SessionError> {
    let started = Instant::now();
    let (scope_enabled, cpid, scope) = match &target {
        Target::System => (false, 0, Vec::new()),
        // The command joins the scope at its exec (the compiler's
        // `scope_exec` program matches `cpid`): seeding it here would count
        // what the held child does before then, such as acknowledging its
        // release, as the command's own activity.
        Target::Command { child, scoped } => (*scoped, child.pid(), Vec::new()),
        Target::Pid {
            process,
            descendants,
        } => {
            let mut tree = vec![process.pid()];
            tree.extend(descendants.iter().copied());
            (true, 0, tree)
        }
    };
    let config = RunConfig {
        tracer_tgid: options.tracer_tgid,
        scope_enabled,
        cpid,
        start_ns: monotonic_ns().map_err(SessionError::Clock)?,
    };
    backend.configure(&config, if scope_enabled { &scope } else { &[] })?;

    let mut dispatcher = Dispatcher::new(artifact);
    let mut closed = false;
    // Flushed at once, so the line comes before anything the released
    // command prints to the same pipe or file (as bpftrace's does).
    match sink
        .attached_probes(backend.probe_count() as u64)
        .and_then(|()| sink.flush())
    {
        Ok(()) => {}
        Err(SinkError::BrokenPipe) => closed = true,
        Err(e) => return Err(SessionError::Sink(e)),
    }
    let probes = backend.attach()?;
    observer.attached(
        &probes,
        started.elapsed(),
        monotonic_ns().map_err(SessionError::Clock)?,
    );
    backend.run_begin()?;
    if let Target::Command { child, .. } = &mut target {
        child.release().map_err(SessionError::Release)?;
    }

    let mut reason = if closed {
        EndReason::OutputClosed
    } else {
        let waiters = match &mut target {
            Target::System => Waiters::default(),
            Target::Command { child, .. } => Waiters {
                child: Some(&mut **child),
                process: None,
            },
            Target::Pid { process, .. } => Waiters {
                child: None,
                process: Some(process),
            },
        };
        event_loop::run(backend, &mut dispatcher, sink, signals, waiters, options)?
    };

    // Probes go inert (or start detaching) before END runs and the maps
    // print, so the printed maps do not change under us.
    backend.start_detach();
    let mut finish = || -> Result<(), SessionError> {
        backend.run_end()?;
        dispatcher.drain_all(backend, sink, options.batch_bytes)?;
        dispatcher.report_lost(backend, sink)?;
        let maps = dispatcher.user_maps(backend)?;
        sink.exit_maps(&maps).map_err(SessionError::Sink)?;
        let mut stats = dispatcher.stats();
        stats.duration_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        sink.run_stats(&stats).map_err(SessionError::Sink)?;
        sink.finish().map_err(SessionError::Sink)
    };
    if reason != EndReason::OutputClosed {
        match finish() {
            Ok(()) => {}
            Err(SessionError::Sink(SinkError::BrokenPipe)) => reason = EndReason::OutputClosed,
            Err(e) => {
                backend.detach();
                return Err(e);
            }
        }
    }
    // An exited command is reaped here, so it does not stay a zombie.
    let command_status = match &mut target {
        Target::Command { child, .. } => child.reap(),
        _ => None,
    };
    let detach = backend.detach();
    let background_detach = backend.background_detach();
    observer.detached(&detach, background_detach.as_ref());
    let mut stats = dispatcher.stats();
    stats.duration_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    Ok(RunReport {
        reason,
        probes,
        stats,
        detach,
        background_detach,
        command_status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::tests::{JournalSink, ScriptedBackend};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// What happened, in order, across the backend, the sink and the child.
    type Journal = Rc<RefCell<Vec<String>>>;

    fn note(journal: &Journal, what: impl Into<String>) {
        journal.borrow_mut().push(what.into());
    }

    /// A `-c` command that exits as soon as it is released.
    struct Command(Journal);

    impl HeldProcess for Command {
        fn pid(&self) -> u32 {
            4242
        }
        fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
            None
        }
        fn has_exited(&mut self) -> bool {
            true
        }
        fn release(&mut self) -> Result<(), String> {
            note(&self.0, "release");
            Ok(())
        }
        fn reap(&mut self) -> Option<nexus_proc::ExitStatus> {
            note(&self.0, "reap");
            Some(nexus_proc::ExitStatus::Exited(3))
        }
    }

    #[test]
    fn a_command_is_scoped_from_its_exec_and_the_attach_line_is_flushed_before_release() {
        let artifact = nexus_compile::compile_source(
            "BEGIN { @ = count(); }",
            &nexus_kernel::KernelCatalog,
            &nexus_compile::CompileOptions::default(),
        )
        .expect("compiles");
        let journal = Journal::default();
        let mut command = Command(journal.clone());
        let signals = Signals::block().expect("signalfd");
        let report = run(
            &mut ScriptedBackend {
                journal: journal.clone(),
                ..ScriptedBackend::default()
            },
            &artifact,
            Target::Command {
                child: &mut command,
                scoped: true,
            },
            &signals,
            &mut JournalSink(journal.clone()),
            &mut Quiet,
            &RunOptions::default(),
        )
        .expect("runs");
        assert_eq!(report.reason, EndReason::CommandExited);
        assert_eq!(
            report.command_status,
            Some(nexus_proc::ExitStatus::Exited(3))
        );
        let journal = journal.borrow();
        // cpid is known before release, but the held child is not in the
        // scope map: the compiler's exec program adds it when it execs.
        assert_eq!(
            journal[..5],
            [
                "configure cpid=4242 scope=[]",
                "Attaching 1",
                "flush",
                "attach",
                "release"
            ]
        );
        assert!(!journal.iter().any(|n| n.starts_with("add_to_scope")));
        assert_eq!(journal.last().map(String::as_str), Some("reap"));
    }

    #[test]
    fn a_keyless_count_that_never_fired_prints_zero_as_bpftrace_does() {
        // bpftrace 0.17 prints `@c: 0` for a key-less count() whose probe
        // never fired, and a blank line for every other empty map (keyed
        // count, sum, hist, avg/stats with their extra line, plain values).
        let artifact = nexus_compile::compile_source(
            "tracepoint:syscalls:sys_enter_getppid { @c = count(); @h = hist(1); \
             @z = count(); @s = sum(1); @k[1] = count(); @a = avg(1); @v = 5; }",
            &nexus_kernel::KernelCatalog,
            &nexus_compile::CompileOptions::default(),
        )
        .expect("compiles");
        let mut dispatcher = Dispatcher::new(&artifact);
        let maps = dispatcher
            .user_maps(&mut ScriptedBackend::default())
            .expect("reads the (empty) maps");
        let mut sink = crate::sink::TextSink::new(Vec::new());
        sink.exit_maps(&maps).expect("prints");
        let text = sink.into_inner().expect("flushes");
        assert_eq!(
            String::from_utf8_lossy(&text),
            "\n\n\n\n@c: 0\n\n\n\n\n@z: 0\n"
        );
    }
}
