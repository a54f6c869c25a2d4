//! Running a program: read it, compile it, load it, run the session, and
//! map every failure to its documented exit code.

use crate::cli::{Format, Stage, TraceArgs};
use crate::exit::Failure;
use nexus_compile::{CompileOptions, ProbeCatalog};
use nexus_runtime::{
    AttachedProbe, BackendError, BackgroundDetach, DetachMode, DetachReport, EndReason,
    JsonOptions, JsonSink, KernelBackend, KernelCatalog, LoadOptions, Observer, RunOptions,
    SessionError, Signals, Sink, Target, TextSink,
};
use std::io::Write;
use std::time::{Duration, Instant};

/// The program text and the name diagnostics call it by.
struct Source {
    text: String,
    name: String,
    params: Vec<String>,
}

fn read_source(args: &TraceArgs) -> Result<Source, Failure> {
    if let Some(text) = &args.program {
        return Ok(Source {
            text: text.clone(),
            name: "stdin".into(),
            params: args.args.clone(),
        });
    }
    let Some((file, params)) = args.args.split_first() else {
        return Err(Failure::usage(
            "no program: give a program with -e 'PROGRAM' or a file, list probes with -l, or see --help",
        ));
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("reading program file {file}: {e}")))?;
    Ok(Source {
        text,
        name: file.clone(),
        params: params.to_vec(),
    })
}

fn backend_failure(e: &BackendError, source: &Source, verbose: bool) -> Failure {
    match e {
        BackendError::Verifier {
            explanation,
            diagnostic,
            log,
        } => {
            let mut message = match diagnostic {
                Some(d) => d.render(&source.name, &source.text),
                None => format!("{explanation}\n"),
            };
            if verbose {
                message.push_str("\nverifier log:\n");
                message.push_str(log);
            } else {
                message.push_str("(run with -v for the verifier log)");
            }
            Failure::kernel_rendered(message)
        }
        BackendError::Refused(m) => Failure::kernel(m.clone()),
        BackendError::Runtime(m) => Failure::runtime(m.clone()),
    }
}

fn session_failure(e: SessionError, source: &Source, verbose: bool) -> Failure {
    match e {
        SessionError::Backend(b) => backend_failure(&b, source, verbose),
        other => Failure::runtime(other.to_string()),
    }
}

/// Prints `-v` attach details and timing on stderr.
struct Verbose {
    on: bool,
    process_start: Instant,
}

impl Observer for Verbose {
    fn attached(&mut self, probes: &[AttachedProbe], elapsed: Duration, monotonic_ns: u64) {
        if !self.on {
            return;
        }
        let mut err = std::io::stderr().lock();
        for p in probes {
            let _ = writeln!(
                err,
                "attached {} -> {} ({} link{})",
                p.probe,
                p.target,
                p.links,
                if p.links == 1 { "" } else { "s" }
            );
        }
        let links: usize = probes.iter().map(|p| p.links).sum();
        let _ = writeln!(
            err,
            "attached {} attachments through {links} kernel links in {:.3} ms (process start → attached {:.3} ms); CLOCK_MONOTONIC at attach: {monotonic_ns} ns",
            probes.len(),
            elapsed.as_secs_f64() * 1e3,
            self.process_start.elapsed().as_secs_f64() * 1e3,
        );
    }

    fn detached(&mut self, report: &DetachReport, background: Option<&BackgroundDetach>) {
        if !self.on {
            return;
        }
        match background {
            None => eprintln!(
                "detached {} links in {:.3} ms",
                report.links,
                report.elapsed.as_secs_f64() * 1e3
            ),
            Some(b) => eprintln!(
                "handed {} of {} links (those slow to detach) to a background process \
                 (forked pid {}, {:.3} ms; detach step {:.3} ms in all); \
                 they stay attached but inert until it reports",
                b.descriptors,
                report.links,
                b.forked_pid,
                b.elapsed.as_secs_f64() * 1e3,
                report.elapsed.as_secs_f64() * 1e3
            ),
        }
    }
}

fn list(args: &TraceArgs, pattern: &str) -> Result<(), Failure> {
    let catalog = KernelCatalog;
    let probes = nexus_runtime::list::list_probes(&catalog, Some(pattern), args.verbose)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for p in probes {
        writeln!(out, "{}", p.name)?;
        for d in &p.details {
            writeln!(out, "    {d}")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn compile_options(args: &TraceArgs, source: &Source) -> CompileOptions {
    CompileOptions {
        params: source.params.clone(),
        scope: (args.command.is_some() && !args.no_scope) || args.pid.is_some(),
        ..CompileOptions::default()
    }
}

fn emit(stage: Stage, source: &Source, opts: &CompileOptions) -> Result<(), Failure> {
    let catalog: &dyn ProbeCatalog = &KernelCatalog;
    let stage = match stage {
        Stage::Ast => nexus_compile::Stage::Ast,
        Stage::Ir => nexus_compile::Stage::Ir,
        Stage::Asm => nexus_compile::Stage::Asm,
    };
    let text = nexus_compile::emit_stage(&source.text, catalog, opts, stage)
        .map_err(|d| compile_failure(&d, source))?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn compile_failure(diags: &[nexus_lang::Diagnostic], source: &Source) -> Failure {
    Failure::usage_rendered(nexus_lang::render_all(diags, &source.name, &source.text))
}

/// `bpfnexus [OPTIONS] [FILE] [-e PROGRAM]`.
pub fn run(args: &TraceArgs, process_start: Instant) -> Result<(), Failure> {
    if args.list {
        return list(args, args.args.first().map_or("*", String::as_str));
    }
    // Block SIGINT/SIGTERM before anything else can start a thread, so a
    // ^C always reaches the event loop's signalfd.
    let signals = Signals::block().map_err(|e| Failure::runtime(e.to_string()))?;
    let source = read_source(args)?;
    let opts = compile_options(args, &source);
    if let Some(stage) = args.emit {
        return emit(stage, &source, &opts);
    }
    let artifact = nexus_compile::compile_source(&source.text, &KernelCatalog, &opts)
        .map_err(|d| compile_failure(&d, &source))?;

    // The child is forked before loading so that it is already waiting at
    // its gate (not still running our code) when the probes attach.
    let mut child = match &args.command {
        Some(_) if args.dry_run => None,
        Some(cmd) => {
            let argv = nexus_proc::split_command(cmd)
                .map_err(|e| Failure::usage(format!("-c {cmd:?}: {e}")))?;
            Some(
                nexus_proc::HeldChild::spawn(&argv, &nexus_proc::SpawnOptions::default())
                    .map_err(|e| Failure::runtime(format!("starting {cmd:?}: {e}")))?,
            )
        }
        None => None,
    };
    let load = LoadOptions {
        verifier_log: args.verbose,
        detach: match (args.sync_detach, args.verbose) {
            (true, _) => DetachMode::Wait,
            (false, true) => DetachMode::BackgroundReported,
            (false, false) => DetachMode::Background,
        },
    };
    let mut backend = KernelBackend::load(artifact.clone(), &load)
        .map_err(|e| backend_failure(&e, &source, args.verbose))?;
    if args.verbose {
        for (name, log) in backend.verifier_logs() {
            eprintln!("verifier log of {name}:\n{log}");
        }
    }
    if args.dry_run {
        eprintln!(
            "dry run: {} programs loaded and verified, {} maps created",
            artifact.programs.len(),
            artifact.maps.len()
        );
        return Ok(());
    }

    let target: Target<'_> = match (&mut child, args.pid) {
        (Some(child), _) => Target::Command {
            child,
            scoped: !args.no_scope,
        },
        (None, Some(pid)) => {
            nexus_runtime::pid_target(pid).map_err(|e| Failure::usage(format!("-p: {e}")))?
        }
        (None, None) => Target::System,
    };

    let writer: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::fs::File::create(path).map_err(|e| {
            Failure::usage(format!("creating output file {}: {e}", path.display()))
        })?),
        None => Box::new(std::io::stdout()),
    };
    // The event loop flushes the sink whenever it has drained the event
    // buffer, so a terminal sees each batch at once without a write per line.
    let mut sink: Box<dyn Sink> = match args.format {
        Format::Text => Box::new(TextSink::new(writer)),
        Format::Json => Box::new(JsonSink::new(writer, JsonOptions::default())),
    };
    let mut observer = Verbose {
        on: args.verbose,
        process_start,
    };
    let report = nexus_runtime::run(
        &mut backend,
        &artifact,
        target,
        &signals,
        sink.as_mut(),
        &mut observer,
        &RunOptions::default(),
    )
    .map_err(|e| session_failure(e, &source, args.verbose))?;
    // A command still running when the trace ends (exit(), a signal) is
    // sent SIGTERM, as bpftrace 0.17 does with its -c command; the session
    // has already reaped one that ended. A thread reaps the terminated one
    // while we still live, so it is never a zombie of ours.
    let command_pid = child.as_ref().map(nexus_proc::HeldChild::pid);
    let reaper = match child.take() {
        Some(mut c) if report.command_status.is_none() => {
            if let Err(e) = c.kill(libc::SIGTERM) {
                eprintln!("bpfnexus: warning: stopping the command: {e}");
            }
            Some(c)
        }
        _ => None,
    };
    if report.stats.decode_errors > 0 && args.format == Format::Text {
        eprintln!(
            "bpfnexus: warning: {} records could not be decoded",
            report.stats.decode_errors
        );
    }
    if args.verbose {
        let reason = match report.reason {
            EndReason::Exit => "exit()".to_string(),
            EndReason::Signal(s) => format!("signal {s}"),
            EndReason::CommandExited => "the command exited".into(),
            EndReason::ProcessExited => "the traced process exited".into(),
            EndReason::OutputClosed => "the output was closed".into(),
        };
        eprintln!(
            "ended by {reason}: {} events, {} lost, {} decode errors, {:.3} ms",
            report.stats.events,
            report.stats.lost_events,
            report.stats.decode_errors,
            report.stats.duration_ns as f64 / 1e6
        );
        if let Some(pid) = command_pid {
            match report.command_status {
                Some(status) => eprintln!("the command (pid {pid}) ended: {status}"),
                None => eprintln!("the command (pid {pid}) was still running: sent SIGTERM"),
            }
        }
        if let Some(memory) = memory_summary() {
            eprintln!("memory: {memory}");
        }
    }
    if let Some(c) = reaper
        && let Err(e) = c.reap_in_background()
    {
        eprintln!("bpfnexus: warning: {e}");
    }
    Ok(())
}

/// Peak and current resident memory, and how much of it is BPF maps
/// mapped into us (the ring buffer: its data area is mapped twice), from
/// /proc/self/status and /proc/self/smaps; `None` if /proc is unreadable.
fn memory_summary() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let peak = field("VmHWM:")?;
    let now = field("VmRSS:")?;
    let mut map_kb = 0u64;
    if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
        let mut in_map = false;
        for line in smaps.lines() {
            if line
                .split_whitespace()
                .nth(1)
                .is_some_and(|f| f.contains('-'))
            {
                in_map = line.ends_with("anon_inode:bpf-map");
            } else if in_map && let Some(v) = line.strip_prefix("Rss:") {
                map_kb += v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0);
            }
        }
    }
    Some(format!(
        "peak RSS {peak}, RSS now {now}, of which {map_kb} kB BPF map mappings"
    ))
}
