//! The same Artifact on the kernel and on the userspace VM.
//!
//! * Differential: every `.bt` program under `tests/vm/` is compiled once
//!   and run through the session with a [`TextSink`] on both backends; the
//!   text output must be identical after masking the values that differ by
//!   nature (see [`mask`]). The kernel side needs root and BPF: without
//!   them it prints why it skips, and `BPFNEXUS_REQUIRE_KERNEL=1` turns the
//!   skip into a failure.
//! * VM only: programs on a simulated hypervisor's static tracepoints
//!   (nexus-vm's `examples/common/hypervisor_sim.rs`), checked against what
//!   the simulation reports it fired.

#[path = "../../nexus-vm/examples/common/hypervisor_sim.rs"]
mod sim;

use nexus_compile::{Artifact, CompileOptions, MapRole, MemoryCatalog};
use nexus_runtime::{
    Backend, BackendError, EndReason, HeldProcess, HostPlatform, KernelBackend, LoadOptions, Quiet,
    RunOptions, Signals, Target, TextSink, VmBackend, VmCatalog,
};
use nexus_vm::TracePointRegistry;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bt"))
        .collect();
    v.sort();
    v
}

fn compile(source: &str, name: &str) -> Artifact {
    // BEGIN/END programs need no probe facts: an empty catalog.
    nexus_compile::compile_source(
        source,
        &MemoryCatalog::default(),
        &CompileOptions::default(),
    )
    .unwrap_or_else(|d| panic!("{name}: {}", nexus_lang::render_all(&d, name, source)))
}

/// Drive `backend` through a whole session (`Target::System`) and return
/// the text output and why it ended.
fn session<B: Backend>(backend: &mut B, artifact: &Artifact) -> (String, EndReason) {
    let signals = Signals::block().expect("signalfd");
    let mut sink = TextSink::new(Vec::new());
    let report = nexus_runtime::run(
        backend,
        artifact,
        Target::System,
        &signals,
        &mut sink,
        &mut Quiet,
        &RunOptions::default(),
    )
    .expect("session runs");
    let out = sink.into_inner().expect("flush");
    (String::from_utf8(out).expect("utf-8 output"), report.reason)
}

fn run_vm(artifact: &Artifact) -> String {
    let registry = TracePointRegistry::new();
    let mut backend = VmBackend::load(artifact.clone(), &registry, Arc::new(HostPlatform::new()))
        .expect("loads in the VM");
    let (out, reason) = session(&mut backend, artifact);
    assert_eq!(reason, EndReason::Exit);
    out
}

fn require_kernel() -> bool {
    std::env::var("BPFNEXUS_REQUIRE_KERNEL").is_ok_and(|v| v == "1")
}

/// The effective uid (second `Uid:` field of /proc/self/status) is 0.
fn effective_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1))
            == Some("0")
    })
}

/// `None` (with the reason printed) when this machine cannot run BPF.
fn run_kernel(artifact: &Artifact, name: &str) -> Option<String> {
    let skip = |why: String| {
        assert!(
            !require_kernel(),
            "{name}: BPFNEXUS_REQUIRE_KERNEL=1 but {why}"
        );
        eprintln!("{name}: kernel side skipped: {why}");
        None
    };
    if !effective_root() {
        return skip("not root".into());
    }
    let mut backend = match KernelBackend::load(artifact.clone(), &LoadOptions::default()) {
        Ok(b) => b,
        Err(BackendError::Refused(why)) => return skip(format!("the kernel refused: {why}")),
        Err(e) => panic!("{name}: kernel load failed: {e}"),
    };
    let (out, reason) = session(&mut backend, artifact);
    assert_eq!(reason, EndReason::Exit);
    Some(out)
}

/// Values that differ between the backends by nature, masked as
/// `NAME=*` wherever a fixture prints `NAME=value`:
///
/// * `tid`: the kernel runs BEGIN in the calling thread (a test thread);
///   the VM reports the process, whose tid is its pid.
/// * `comm`: the kernel reports the thread's name (the test's name); the
///   VM reports the process's name.
/// * `nsecs`: two runs never read the clock at the same instant.
/// * `cpu`: the kernel reports the CPU the test thread happened to run
///   on; the VM reports the CPU the host set (0).
fn mask(text: &str) -> String {
    const MASKED: [&str; 4] = ["tid=", "comm=", "nsecs=", "cpu="];
    text.lines()
        .map(|line| {
            line.split(' ')
                .map(|word| match MASKED.iter().find(|m| word.starts_with(*m)) {
                    Some(m) => format!("{m}*"),
                    None => word.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn fixtures_run_the_same_on_the_kernel_and_the_vm() {
    let files = fixtures();
    assert!(files.len() >= 8, "fixtures missing: {files:?}");
    let mut compared = 0;
    for path in &files {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let source = std::fs::read_to_string(path).expect("fixture");
        let artifact = compile(&source, &name);
        let vm = run_vm(&artifact);
        assert!(
            vm.starts_with("Attaching "),
            "{name}: VM output lacks the attach line:\n{vm}"
        );
        if let Some(kernel) = run_kernel(&artifact, &name) {
            assert_eq!(
                mask(&kernel),
                mask(&vm),
                "{name}: kernel (left) and VM (right) differ\n--- kernel\n{kernel}\n--- vm\n{vm}"
            );
            compared += 1;
        }
    }
    eprintln!(
        "{compared} of {} fixtures compared with the kernel",
        files.len()
    );
}

/// The VM side alone has exact expectations too, so it is checked even
/// where the kernel is not available.
#[test]
fn vm_output_of_fixtures_is_exact() {
    let cases: &[(&str, &str)] = &[
        (
            "begin_end.bt",
            "Attaching 2 probes...\nbegin\nend 2\n\n\n@ended: 2\n@started: 1\n",
        ),
        (
            "control.bt",
            "Attaching 1 probe...\ni=10 sum=45\nunroll=243\nmedium\nt=10 yes\nten\n\n\n",
        ),
    ];
    for (file, expected) in cases {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vm")
            .join(file);
        let source = std::fs::read_to_string(&path).expect("fixture");
        let out = run_vm(&compile(&source, file));
        assert_eq!(&out, expected, "{file}");
    }
    let out = run_vm(&compile(
        "BEGIN { printf(\"pid=%d\\n\", pid); exit(); }",
        "pid",
    ));
    assert_eq!(
        out,
        format!("Attaching 1 probe...\npid={}\n\n\n", std::process::id())
    );
}

#[test]
fn mask_hides_only_the_named_values() {
    assert_eq!(
        mask("pid=5 tid=6 comm=x nsecs=9 cpu=1 other=2"),
        "pid=5 tid=* comm=* nsecs=* cpu=* other=2"
    );
}

// ---- static tracepoints (VM only) ----

/// The simulation as the session's traced command (see the runtime's
/// `examples/hypervisor.rs`).
struct Simulation {
    tracepoints: Option<sim::Tracepoints>,
    platform: Arc<HostPlatform>,
    thread: Option<JoinHandle<sim::Summary>>,
}

struct Host(Arc<HostPlatform>);

impl sim::Host for Host {
    fn vcpu_scheduled(&self, _vm_id: u32, vcpu: u32) {
        self.0.set_cpu(vcpu);
    }
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
        let tp = self.tracepoints.take().ok_or("released twice")?;
        let host = Host(Arc::clone(&self.platform));
        self.thread = Some(std::thread::spawn(move || sim::simulate(&tp, 2026, &host)));
        Ok(())
    }
}

struct Traced {
    output: String,
    reason: EndReason,
    summary: sim::Summary,
    /// Merged (summed over CPUs) u64 slots of each entry of the first user
    /// map: key bytes → slots.
    first_map: Vec<(Vec<u8>, Vec<u64>)>,
}

fn trace(program: &str) -> Traced {
    let registry = TracePointRegistry::new();
    let tracepoints = sim::declare(&registry).expect("declare");
    let artifact = nexus_compile::compile_source(
        program,
        &VmCatalog::new(&registry),
        &CompileOptions::default(),
    )
    .unwrap_or_else(|d| panic!("{}", nexus_lang::render_all(&d, "test", program)));
    let platform = Arc::new(HostPlatform::new());
    let mut backend =
        VmBackend::load(artifact.clone(), &registry, platform.clone()).expect("loads");
    let mut simulation = Simulation {
        tracepoints: Some(tracepoints),
        platform,
        thread: None,
    };
    let signals = Signals::block().expect("signalfd");
    let mut sink = TextSink::new(Vec::new());
    let report = nexus_runtime::run(
        &mut backend,
        &artifact,
        Target::Command {
            child: &mut simulation,
            scoped: false,
        },
        &signals,
        &mut sink,
        &mut Quiet,
        &RunOptions::default(),
    )
    .expect("session runs");
    let summary = simulation
        .thread
        .take()
        .expect("released")
        .join()
        .expect("simulation finished");
    assert_eq!(backend.faults(), vec![], "no program faulted");
    let first = artifact
        .maps
        .iter()
        .position(|m| matches!(m.role, MapRole::User(_)));
    let first_map = first
        .map(|i| backend.map_entries(i).expect("entries"))
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let mut sum = vec![0u64; e.slots[0].len() / 8];
            for slot in &e.slots {
                for (acc, c) in sum.iter_mut().zip(slot.chunks_exact(8)) {
                    *acc += u64::from_le_bytes(c.try_into().expect("8 bytes"));
                }
            }
            (e.key, sum)
        })
        .collect();
    Traced {
        output: String::from_utf8(sink.into_inner().expect("flush")).expect("utf-8"),
        reason: report.reason,
        summary,
        first_map,
    }
}

#[test]
fn count_by_exit_reason_counts_exactly_what_the_simulation_fired() {
    let t = trace("tracepoint:vmm:vcpu_run_exit { @[args.reason] = count(); }");
    assert_eq!(t.reason, EndReason::CommandExited);
    let mut expected: Vec<(u32, u64)> = Vec::new();
    for e in &t.summary.exits {
        match expected.iter_mut().find(|(r, _)| *r == e.reason) {
            Some((_, n)) => *n += 1,
            None => expected.push((e.reason, 1)),
        }
    }
    assert_eq!(
        t.summary.exits.len() as u64,
        u64::from(sim::VMS * sim::VCPUS) * sim::ROUNDS
    );
    // bpftrace prints count maps sorted by value, then by key.
    expected.sort_by_key(|&(r, n)| (n, r));
    let mut text = String::from("Attaching 1 probe...\n\n\n");
    for (r, n) in &expected {
        text.push_str(&format!("@[{r}]: {n}\n"));
    }
    assert_eq!(t.output, text);
}

/// Slot of `v` in a `hist()` value: 0 negative, 1 zero, k + 2 for
/// `[2^k, 2^(k+1))` (the Artifact's documented layout).
fn log2_slot(v: u64) -> usize {
    if v == 0 {
        1
    } else {
        63 - v.leading_zeros() as usize + 2
    }
}

#[test]
fn hist_and_lhist_over_a_latency_argument() {
    let t = trace("tracepoint:vmm:vcpu_run_exit { @h = hist(args.run_ns); }");
    let mut expected = vec![0u64; 66];
    for e in &t.summary.exits {
        expected[log2_slot(e.run_ns)] += 1;
    }
    assert_eq!(t.first_map.len(), 1);
    assert_eq!(t.first_map[0].1, expected);
    assert!(t.output.contains("\n@h: \n["), "{}", t.output);

    let t = trace("tracepoint:vmm:vcpu_run_exit { @us = lhist(args.run_ns / 1000, 0, 200, 20); }");
    // Slot 0 below 0, slot i + 1 for [20i, 20(i+1)), the last for >= 200.
    let mut expected = vec![0u64; 12];
    for e in &t.summary.exits {
        let us = e.run_ns / 1000;
        let slot = if us >= 200 {
            11
        } else {
            (us / 20) as usize + 1
        };
        expected[slot] += 1;
    }
    assert_eq!(t.first_map[0].1, expected);
    assert!(t.output.contains("@us: \n["), "{}", t.output);
}

#[test]
fn predicates_on_args_filter_events() {
    let t = trace(
        "tracepoint:vmm:vcpu_run_exit /args.vm_id == 2 && args.reason == 48/ { @faults = count(); }",
    );
    let n = t
        .summary
        .exits
        .iter()
        .filter(|e| e.vm_id == 2 && e.reason == 48)
        .count() as u64;
    assert!(n > 0);
    assert_eq!(
        t.output,
        format!("Attaching 1 probe...\n\n\n@faults: {n}\n")
    );

    // printf records from a tracepoint, through the ring buffer, in order.
    let t = trace(
        "tracepoint:vmm:hypercall /args.nr == 3 && args.vm_id != 1/ { printf(\"vm %d nr %d\\n\", args.vm_id, args.nr); }",
    );
    let mut expected = String::from("Attaching 1 probe...\n");
    for (vm, nr) in &t.summary.hypercalls {
        if *nr == 3 && *vm != 1 {
            expected.push_str(&format!("vm {vm} nr {nr}\n"));
        }
    }
    expected.push_str("\n\n");
    assert_eq!(t.output, expected);
}

#[test]
fn per_cpu_values_merge_and_keys_combine_args() {
    // The host moves the VM's CPU with the vCPU, so count() (a per-CPU
    // map) keeps one value per CPU; the printed totals must still match.
    let t =
        trace("tracepoint:vmm:page_fault /args.write/ { @w[args.vm_id, args.vcpu_id] = count(); }");
    let writes = t.summary.page_faults.iter().filter(|(_, w)| *w).count() as u64;
    let total: u64 = t.first_map.iter().map(|(_, v)| v[0]).sum();
    assert_eq!(total, writes);
    assert!(t.first_map.len() > 1, "several (vm, vcpu) keys");
}

#[test]
fn programs_the_vm_cannot_attach_are_refused_with_the_reason() {
    let registry = TracePointRegistry::new();
    sim::declare(&registry).expect("declare");
    let catalog = VmCatalog::new(&registry);
    let err = nexus_compile::compile_source(
        "uprobe:/bin/sh:main { @ = count(); }",
        &catalog,
        &CompileOptions::default(),
    )
    .expect_err("no uprobes in the VM");
    let text = nexus_lang::render_all(&err, "t", "uprobe:/bin/sh:main { @ = count(); }");
    assert!(text.contains("not available in the VM"), "{text}");
    let err = nexus_compile::compile_source(
        "tracepoint:vmm:vcpu_run_exitt { @ = count(); }",
        &catalog,
        &CompileOptions::default(),
    )
    .expect_err("typo");
    let text = nexus_lang::render_all(&err, "t", "tracepoint:vmm:vcpu_run_exitt { @ = count(); }");
    assert!(
        text.contains("did you mean `vmm:vcpu_run_exit`?"),
        "did-you-mean hint: {text}"
    );
    // Probe kinds the compiler accepts without a catalog are refused when
    // the backend loads, before anything runs.
    for (src, kind) in [
        ("interval:s:1 { exit(); }", "interval"),
        ("kprobe:vfs_read { @ = count(); }", "kprobe"),
    ] {
        let artifact = nexus_compile::compile_source(src, &catalog, &CompileOptions::default())
            .expect("compiles");
        let err = VmBackend::load(artifact, &registry, Arc::new(HostPlatform::new()))
            .expect_err("refused");
        assert!(
            err.to_string()
                .contains(&format!("{kind} probes are not available in the VM")),
            "{err}"
        );
    }
}

#[test]
fn string_arguments_print_and_key_maps() {
    let t = trace(
        "tracepoint:vmm:vm_create { printf(\"%s vcpus=%d\\n\", args.name, args.vcpus); @mem[args.name] = sum(args.mem_mb); }",
    );
    let mut expected = String::from("Attaching 1 probe...\n");
    for vm in 1..=sim::VMS {
        expected.push_str(&format!("guest-{vm} vcpus={}\n", sim::VCPUS));
    }
    expected.push_str("\n\n");
    for vm in 1..=sim::VMS {
        expected.push_str(&format!("@mem[guest-{vm}]: {}\n", 512 * vm));
    }
    assert_eq!(t.output, expected);
}
