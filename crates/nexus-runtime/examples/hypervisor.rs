//! A bpftrace program attached to a simulated hypervisor's static
//! tracepoints, run by the same session bpfnexus uses, on the userspace VM.
//!
//! ```sh
//! cargo run -p nexus-runtime --example hypervisor -- \
//!     -e 'tracepoint:vmm:vcpu_run_exit { @[args.reason] = count(); }'
//! cargo run -p nexus-runtime --example hypervisor -- -f json -e '...'
//! cargo run -p nexus-runtime --example hypervisor -- -l        # the tracepoints
//! ```
//!
//! The program is compiled against the application's tracepoints
//! ([`VmCatalog`]), loaded into a [`VmBackend`], attached, and the
//! simulation (nexus-vm's `examples/common/hypervisor_sim.rs`) plays the
//! part of bpftrace's `-c` command: it is released after BEGIN, and the
//! session ends when it finishes (or on `exit()` or ^C), printing END's
//! output and the maps exactly as bpfnexus prints them.
//!
//! It lives in nexus-runtime because nexus-runtime depends on nexus-vm;
//! the plain nexus-vm example (`cargo run -p nexus-vm --example
//! hypervisor`) runs the same simulation with hand-assembled programs.

#[path = "../../nexus-vm/examples/common/hypervisor_sim.rs"]
mod sim;

use nexus_compile::CompileOptions;
use nexus_runtime::{
    HeldProcess, HostPlatform, JsonOptions, JsonSink, Quiet, RunOptions, Signals, Sink, Target,
    TextSink, VmBackend, VmCatalog,
};
use nexus_vm::TracePointRegistry;
use std::io::Write;
use std::os::fd::BorrowedFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;

const USAGE: &str = "\
usage: hypervisor [-f text|json] [--seed N] (-e PROGRAM | FILE)
       hypervisor -l

Attaches a bpftrace program to a simulated hypervisor's static tracepoints
(vmm:*) and prints what bpfnexus would print.";

enum Format {
    Text,
    Json,
}

struct Args {
    program: Option<(String, String)>,
    format: Format,
    seed: u64,
    list: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        program: None,
        format: Format::Text,
        seed: 2026,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-e" => {
                let text = it.next().ok_or("-e needs a program")?;
                args.program = Some(("stdin".into(), text));
            }
            "-f" => {
                args.format = match it.next().as_deref() {
                    Some("text") => Format::Text,
                    Some("json") => Format::Json,
                    other => return Err(format!("-f takes text or json, not {other:?}")),
                }
            }
            "--seed" => {
                let v = it.next().ok_or("--seed needs a number")?;
                args.seed = v.parse().map_err(|e| format!("--seed {v:?}: {e}"))?;
            }
            "-l" => args.list = true,
            "-h" | "--help" => return Err(USAGE.into()),
            path if !path.starts_with('-') && args.program.is_none() => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
                args.program = Some((path.to_string(), text));
            }
            other => return Err(format!("unexpected argument {other:?}\n\n{USAGE}")),
        }
    }
    if args.program.is_none() && !args.list {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// Keeps the VM's CPU in step with the vCPU being run, so per-CPU maps
/// get one value per simulated CPU as they would in the kernel.
struct Host(Arc<HostPlatform>);

impl sim::Host for Host {
    fn vcpu_scheduled(&self, _vm_id: u32, vcpu: u32) {
        self.0.set_cpu(vcpu);
    }
}

/// The simulation as the session's traced command: held until the probes
/// are attached and BEGIN has run, then run on its own thread.
struct Simulation {
    tracepoints: Option<sim::Tracepoints>,
    platform: Arc<HostPlatform>,
    seed: u64,
    thread: Option<JoinHandle<sim::Summary>>,
}

impl HeldProcess for Simulation {
    fn pid(&self) -> u32 {
        std::process::id()
    }
    fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    fn has_exited(&mut self) -> bool {
        self.thread.as_ref().is_some_and(JoinHandle::is_finished)
    }
    fn release(&mut self) -> Result<(), String> {
        let tp = self
            .tracepoints
            .take()
            .ok_or("the simulation was already started")?;
        let host = Host(Arc::clone(&self.platform));
        let seed = self.seed;
        let thread = std::thread::Builder::new()
            .name("hypervisor".into())
            .spawn(move || sim::simulate(&tp, seed, &host))
            .map_err(|e| format!("starting the simulation thread: {e}"))?;
        self.thread = Some(thread);
        Ok(())
    }
}

fn list(registry: &TracePointRegistry) {
    for info in registry.list() {
        println!("tracepoint:{}", info.name);
        for f in &info.fields {
            println!("    {} {};", f.ty.name(), f.name);
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    // Before any thread starts, so ^C reaches the session's signalfd.
    let signals = Signals::block().map_err(|e| e.to_string())?;
    let registry = TracePointRegistry::new();
    let tracepoints = sim::declare(&registry).map_err(|e| e.to_string())?;
    if args.list {
        list(&registry);
        return Ok(());
    }
    let Some((file, source)) = &args.program else {
        return Err(USAGE.into());
    };
    let artifact = nexus_compile::compile_source(
        source,
        &VmCatalog::new(&registry),
        &CompileOptions::default(),
    )
    .map_err(|d| {
        nexus_lang::render_all(&d, file, source)
            .trim_end()
            .to_string()
    })?;
    let platform = Arc::new(HostPlatform::new());
    let mut backend = VmBackend::load(artifact.clone(), &registry, platform.clone())
        .map_err(|e| e.to_string())?;
    let mut simulation = Simulation {
        tracepoints: Some(tracepoints),
        platform,
        seed: args.seed,
        thread: None,
    };
    let stdout = std::io::stdout();
    let mut sink: Box<dyn Sink> = match args.format {
        Format::Text => Box::new(TextSink::new(stdout.lock())),
        Format::Json => Box::new(JsonSink::new(stdout.lock(), JsonOptions::default())),
    };
    let result = nexus_runtime::run(
        &mut backend,
        &artifact,
        Target::Command {
            child: &mut simulation,
            scoped: false,
        },
        &signals,
        sink.as_mut(),
        &mut Quiet,
        &RunOptions::default(),
    );
    drop(sink);
    if let Some(t) = simulation.thread.take() {
        // The tracepoints are detached, so the simulation runs on untraced.
        let _ = t.join();
    }
    for (tp, n, msg) in backend.faults() {
        eprintln!("warning: the program on {tp} faulted {n} times; last: {msg}");
    }
    result.map(drop).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            let _ = std::io::stdout().flush();
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
