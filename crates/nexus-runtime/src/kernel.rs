//! The kernel backend: an Artifact's maps and programs loaded with
//! `nexus-kernel`, attached through BPF links, records read from the ring
//! buffer. Everything kernel-specific in the runtime is in this module.

use crate::backend::{
    AttachedProbe, Backend, BackendError, DetachReport, RawEntry, RecordBatch, RunConfig,
    scope_slot, scope_word_with,
};
use crate::handoff::{self, BackgroundDetach, Report};
use crate::verifier;
use nexus_compile::{Artifact, AttachSpec, MapRole, ProgKind, ProgramSpec, UprobeLocation};
use nexus_insn::MapType;
use nexus_kernel::{
    AttachTarget, BtfTarget, Cpus, KprobeTarget, Link, Map, MapError, PerfEventTarget, Program,
    RingBuf, Sample, UpdateFlags, UprobeTarget, elf, link, perf,
};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::time::Instant;

/// How to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Keep every program's verifier log (`-v`).
    pub verifier_log: bool,
    /// How slow links are released at the end.
    pub detach: DetachMode,
}

/// How [`Backend::detach`] releases links whose close waits for the kernel
/// (classic tracepoints, uprobes, kprobes, perf events: 40–130 ms each
/// here). Raw tracepoint and BTF (tracing) links always close in place:
/// they take well under a millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DetachMode {
    /// Hand them to a short-lived background process
    /// ([`crate::handoff`]) once the probes are inert, and return at once.
    #[default]
    Background,
    /// Same, and the helper reports its time on stderr when done (`-v`).
    BackgroundReported,
    /// Close them here (from parallel threads) and wait (`--sync-detach`).
    Wait,
}

/// One loaded program and the artifact entry it came from.
#[derive(Debug)]
struct Loaded {
    spec: usize,
    program: Program,
}

/// An Artifact loaded into the kernel.
#[derive(Debug)]
pub struct KernelBackend {
    artifact: Artifact,
    maps: Vec<Map>,
    programs: Vec<Loaded>,
    links: Vec<Link>,
    ring: Option<RingBuf>,
    config: Option<usize>,
    scope: Option<usize>,
    drops: Option<usize>,
    stacks: Option<usize>,
    /// Whether each of `links` is slow to close (perf-based).
    slow: Vec<bool>,
    /// The config map's value as written by `configure`.
    config_value: Vec<u8>,
    /// The probes were made inert (`stopping` set in the config map).
    stopped: bool,
    detach_mode: DetachMode,
    /// A detach running in a thread of ours: its thread, start, link count
    /// (artifacts without a `stopping` flag, or a failed handoff).
    detaching: Option<(std::thread::JoinHandle<()>, Instant, usize)>,
    /// The handoff made by `detach`, if any.
    background: Option<BackgroundDetach>,
    /// Fast links closed by `start_detach` (counted in the detach report).
    closed_early: usize,
}

/// True for targets whose link waits for RCU grace periods when closed.
fn slow_to_close(target: &AttachTarget) -> bool {
    !matches!(
        target,
        AttachTarget::RawTracepoint { .. } | AttachTarget::Tracing
    )
}

fn map_err(e: MapError) -> BackendError {
    match e.errno() {
        // EPERM: not allowed to use BPF at all.
        Some(1) => {
            BackendError::Refused(format!("{e}; run as root or with CAP_BPF and CAP_PERFMON"))
        }
        _ => BackendError::Runtime(e.to_string()),
    }
}

impl KernelBackend {
    /// Create the Artifact's maps and load its programs (nothing is
    /// attached yet). A verifier rejection comes back explained in terms of
    /// the program's source ([`BackendError::Verifier`]).
    pub fn load(artifact: Artifact, options: &LoadOptions) -> Result<KernelBackend, BackendError> {
        let mut maps = Vec::with_capacity(artifact.maps.len());
        for spec in &artifact.maps {
            let kspec = nexus_kernel::MapSpec {
                name: spec.name.clone(),
                map_type: spec.kind.map_type(),
                key_size: spec.key_size,
                value_size: spec.value_size,
                max_entries: spec.max_entries,
                flags: spec.flags,
            };
            let map = Map::create(&kspec).map_err(|e| match e.errno() {
                Some(1) => BackendError::Refused(format!(
                    "{e}; run as root or with CAP_BPF and CAP_PERFMON (see `bpfnexus doctor`)"
                )),
                _ => BackendError::Refused(e.to_string()),
            })?;
            maps.push(map);
        }
        let mut programs = Vec::with_capacity(artifact.programs.len());
        for (i, spec) in artifact.programs.iter().enumerate() {
            let program = load_program(&artifact, spec, &maps, options)?;
            programs.push(Loaded { spec: i, program });
        }
        let role = |r: &MapRole| artifact.map_with_role(r);
        let ring = match role(&MapRole::Events) {
            Some(i) => {
                Some(RingBuf::new(&maps[i]).map_err(|e| BackendError::Runtime(e.to_string()))?)
            }
            None => None,
        };
        Ok(KernelBackend {
            config: role(&MapRole::Config),
            scope: role(&MapRole::Scope),
            drops: role(&MapRole::Drops),
            stacks: role(&MapRole::Stacks),
            artifact,
            maps,
            programs,
            links: Vec::new(),
            slow: Vec::new(),
            config_value: Vec::new(),
            stopped: false,
            detach_mode: options.detach,
            ring,
            detaching: None,
            background: None,
            closed_early: 0,
        })
    }

    /// The verifier log of each program, when loaded with
    /// [`LoadOptions::verifier_log`]: `(program name, log)`.
    pub fn verifier_logs(&self) -> Vec<(&str, &str)> {
        self.programs
            .iter()
            .filter_map(|l| Some((l.program.name(), l.program.verifier_log()?)))
            .collect()
    }

    /// The Artifact this backend runs.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    fn map(&self, index: usize) -> Result<&Map, BackendError> {
        self.maps.get(index).ok_or_else(|| {
            BackendError::Runtime(format!(
                "the program refers to map {index}, but only {} maps exist",
                self.maps.len()
            ))
        })
    }

    fn run_special(&mut self, which: &AttachSpec) -> Result<(), BackendError> {
        for l in &self.programs {
            let spec = &self.artifact.programs[l.spec];
            if spec.attach.iter().any(|a| a == which) {
                l.program
                    .test_run(&[], None)
                    .map_err(|e| BackendError::Runtime(e.to_string()))?;
            }
        }
        Ok(())
    }
}

fn load_program(
    artifact: &Artifact,
    spec: &ProgramSpec,
    maps: &[Map],
    options: &LoadOptions,
) -> Result<Program, BackendError> {
    let btf_target = match spec.prog_type {
        ProgKind::TracingRawTp | ProgKind::Fentry | ProgKind::Fexit => {
            let target = spec.attach.iter().find_map(|a| match a {
                AttachSpec::TpBtf { event } => Some(BtfTarget::TpBtf(event.clone())),
                AttachSpec::Fentry { function } => Some(BtfTarget::Fentry(function.clone())),
                AttachSpec::Fexit { function } => Some(BtfTarget::Fexit(function.clone())),
                _ => None,
            });
            Some(target.ok_or_else(|| {
                BackendError::Runtime(format!(
                    "program {:?} ({}) is a tracing program without a BTF target",
                    spec.name, spec.probe_text
                ))
            })?)
        }
        _ => None,
    };
    let kspec = match btf_target {
        Some(t) => nexus_kernel::ProgramSpec::tracing(&spec.name, t, &spec.insns),
        None => {
            let mut s =
                nexus_kernel::ProgramSpec::new(&spec.name, spec.prog_type.prog_type(), &spec.insns);
            s.expected_attach_type = spec.prog_type.attach_type();
            s
        }
    }
    .with_log(options.verifier_log);
    Program::load(&kspec, maps).map_err(|e| verifier::explain_load_error(artifact, spec, &e))
}

/// `PERF_COUNT_SW_*` of a software event as bpftrace names it.
fn software_config(event: &str) -> Option<u64> {
    Some(match event {
        "cpu-clock" | "cpu" => 0,
        "task-clock" => 1,
        "page-faults" | "faults" => 2,
        "context-switches" | "cs" => 3,
        "cpu-migrations" | "migrations" => 4,
        "minor-faults" => 5,
        "major-faults" => 6,
        "alignment-faults" => 7,
        "emulation-faults" => 8,
        "dummy" => 9,
        "bpf-output" => 10,
        _ => return None,
    })
}

/// The kernel attach target of one AttachSpec; `None` for BEGIN/END.
fn target_of(spec: &AttachSpec, probe: &str) -> Result<Option<AttachTarget>, BackendError> {
    let refused = |m: String| BackendError::Refused(format!("probe `{probe}`: {m}"));
    Ok(Some(match spec {
        AttachSpec::Begin | AttachSpec::End => return Ok(None),
        AttachSpec::Tracepoint { category, event } => AttachTarget::Tracepoint {
            category: category.clone(),
            name: event.clone(),
        },
        AttachSpec::RawTracepoint { event } => AttachTarget::RawTracepoint {
            name: event.clone(),
        },
        AttachSpec::TpBtf { .. } | AttachSpec::Fentry { .. } | AttachSpec::Fexit { .. } => {
            AttachTarget::Tracing
        }
        AttachSpec::Uprobe {
            binary,
            location,
            retprobe,
        } => {
            let path = PathBuf::from(binary);
            let offset = match location {
                UprobeLocation::Symbol { name, offset } => {
                    elf::symbol_offset(&path, name).map_err(|e| refused(e.to_string()))? + offset
                }
                UprobeLocation::Address(addr) => {
                    return Err(refused(format!(
                        "attaching a uprobe at a bare address ({addr:#x}) is not supported yet; name a function"
                    )));
                }
            };
            AttachTarget::Uprobe(UprobeTarget {
                path,
                offset,
                retprobe: *retprobe,
                pid: None,
            })
        }
        AttachSpec::Kprobe {
            function,
            offset,
            retprobe,
        } => AttachTarget::Kprobe(KprobeTarget {
            function: function.clone(),
            offset: *offset,
            retprobe: *retprobe,
        }),
        AttachSpec::Profile { hz, period_ns } => {
            let sample = match (hz, period_ns) {
                (Some(hz), _) => Sample::Frequency(*hz),
                (None, Some(p)) => Sample::Period(*p),
                (None, None) => return Err(refused("profile probe without a rate".into())),
            };
            AttachTarget::PerfEvent(PerfEventTarget {
                config: perf::PERF_COUNT_SW_CPU_CLOCK,
                sample,
                cpus: Cpus::AllOnline,
            })
        }
        AttachSpec::Interval { period_ns } => {
            AttachTarget::PerfEvent(PerfEventTarget::interval_ns(*period_ns))
        }
        AttachSpec::Software { event, period } => {
            let config = software_config(event)
                .ok_or_else(|| refused(format!("unknown software event {event:?}")))?;
            AttachTarget::PerfEvent(PerfEventTarget {
                config,
                sample: Sample::Period((*period).max(1)),
                cpus: Cpus::AllOnline,
            })
        }
        AttachSpec::Hardware { event, .. } => {
            return Err(refused(format!(
                "hardware event {event:?}: hardware perf events are not supported by the kernel backend yet"
            )));
        }
    }))
}

impl Backend for KernelBackend {
    fn configure(&mut self, config: &RunConfig, scope_tgids: &[u32]) -> Result<(), BackendError> {
        if let Some(i) = self.config {
            let layout = &self.artifact.config;
            let mut value = vec![0u8; self.maps[i].value_size() as usize];
            for field in &layout.fields {
                let v = match field.name.as_str() {
                    "tracer_tgid" => u64::from(config.tracer_tgid),
                    "scope_enabled" => u64::from(config.scope_enabled),
                    "cpid" => u64::from(config.cpid),
                    "start_ns" => config.start_ns,
                    _ => continue,
                };
                let at = field.offset as usize;
                if let Some(slot) = value.get_mut(at..at + 8) {
                    slot.copy_from_slice(&v.to_le_bytes());
                }
            }
            self.maps[i]
                .update(&0u32.to_le_bytes(), &value, UpdateFlags::Any)
                .map_err(map_err)?;
            self.config_value = value;
        }
        for &tgid in scope_tgids {
            self.add_to_scope(tgid)?;
        }
        Ok(())
    }

    fn add_to_scope(&mut self, tgid: u32) -> Result<(), BackendError> {
        let Some(i) = self.scope else {
            return Ok(());
        };
        let map = &self.maps[i];
        let (key, bit) = scope_slot(tgid);
        let current = map.lookup(&key).map_err(map_err)?;
        let word = scope_word_with(current.as_deref(), bit, tgid, map.max_entries())?;
        map.update(&key, &word, UpdateFlags::Any).map_err(map_err)
    }

    fn attach(&mut self) -> Result<Vec<AttachedProbe>, BackendError> {
        let mut attached = Vec::new();
        for l in &self.programs {
            let spec = &self.artifact.programs[l.spec];
            for a in &spec.attach {
                let Some(target) = target_of(a, &spec.probe_text)? else {
                    continue;
                };
                let link = link::attach(&l.program, &target).map_err(|e| {
                    BackendError::Refused(format!("probe `{}`: {e}", spec.probe_text))
                })?;
                attached.push(AttachedProbe {
                    probe: spec.probe_text.clone(),
                    target: link.target().to_string(),
                    links: link.len(),
                });
                self.slow.push(slow_to_close(&target));
                self.links.push(link);
            }
        }
        Ok(attached)
    }

    fn probe_count(&self) -> usize {
        // bpftrace's number: attach points after wildcard expansion, however
        // the compiler lowered them (20 `syscalls:sys_enter_*` served by one
        // raw tracepoint program count 20; scope tracking counts 0).
        self.artifact.attach_point_count() as usize
    }

    fn run_begin(&mut self) -> Result<(), BackendError> {
        self.run_special(&AttachSpec::Begin)
    }

    fn run_end(&mut self) -> Result<(), BackendError> {
        self.run_special(&AttachSpec::End)
    }

    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ring.as_ref().map(AsFd::as_fd)
    }

    fn read_batch(&mut self, batch: &mut RecordBatch, max_bytes: usize) -> usize {
        batch.clear();
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        while batch.bytes() < max_bytes {
            let Some(rec) = ring.next() else { break };
            batch.push(&rec);
        }
        batch.len()
    }

    fn map_entries(&mut self, index: usize) -> Result<Vec<RawEntry>, BackendError> {
        let map = self.map(index)?;
        let entries = map.entries().map_err(map_err)?;
        Ok(entries
            .into_iter()
            .map(|e| RawEntry {
                slots: map
                    .percpu_slots(&e.value)
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
                key: e.key,
            })
            .collect())
    }

    fn clear_map(&mut self, index: usize) -> Result<(), BackendError> {
        let map = self.map(index)?;
        if matches!(map.map_type(), MapType::Array | MapType::PercpuArray) {
            return self.zero_map(index);
        }
        map.drain_entries().map_err(map_err).map(drop)
    }

    fn zero_map(&mut self, index: usize) -> Result<(), BackendError> {
        let map = self.map(index)?;
        let zero = vec![0u8; map.value_size() as usize];
        let keys = map.keys().collect::<Result<Vec<_>, _>>().map_err(map_err)?;
        for key in keys {
            // An entry deleted since the key walk is fine to skip.
            match map.update(&key, &zero, UpdateFlags::Exist) {
                Ok(()) => {}
                // ENOENT: the entry went away after the key walk.
                Err(e) if e.errno() == Some(2) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(())
    }

    fn stack_frames(&mut self, id: u32, frames: &mut Vec<u64>) -> bool {
        frames.clear();
        let Some(i) = self.stacks else { return false };
        let Ok(Some(raw)) = self.maps[i].lookup(&id.to_le_bytes()) else {
            return false;
        };
        frames.extend(raw.chunks_exact(8).map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        }));
        true
    }

    fn lost_events(&mut self) -> Result<u64, BackendError> {
        let Some(i) = self.drops else { return Ok(0) };
        let map = &self.maps[i];
        let raw = map.lookup(&0u32.to_le_bytes()).map_err(map_err)?;
        Ok(raw.map_or(0, |raw| {
            map.percpu_slots(&raw)
                .iter()
                .filter_map(|s| s.get(..8))
                .map(|s| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(s);
                    u64::from_le_bytes(a)
                })
                .fold(0u64, u64::wrapping_add)
        }))
    }

    fn start_detach(&mut self) {
        if self.detaching.is_some() || self.links.is_empty() {
            return;
        }
        if self.set_stopping() {
            // Every probe is inert now: close the fast links here (under a
            // millisecond each) and leave the slow ones to `detach`.
            let links = std::mem::take(&mut self.links);
            let slow = std::mem::take(&mut self.slow);
            for (link, slow) in links.into_iter().zip(slow) {
                if slow {
                    self.links.push(link);
                    self.slow.push(true);
                } else {
                    self.closed_early += link.len();
                }
            }
            return;
        }
        // No `stopping` flag (or it could not be set): detach for real, in
        // a thread so END and the final maps need not wait. Perf-based
        // links wait for RCU grace periods when closed; `detach_all`
        // closes them from parallel threads so the waits overlap.
        let links = std::mem::take(&mut self.links);
        self.slow.clear();
        let n = links.iter().map(Link::len).sum();
        let start = Instant::now();
        // Without a thread the closure, and the links in it, are dropped
        // by the failed spawn: they are detached right here instead.
        if let Ok(handle) = std::thread::Builder::new()
            .name("nexus-detach".into())
            .spawn(move || link::detach_all(links))
        {
            self.detaching = Some((handle, start, n));
        }
    }

    fn detach(&mut self) -> DetachReport {
        let start = Instant::now();
        let links = std::mem::take(&mut self.links);
        self.slow.clear();
        let mut n: usize = links.iter().map(Link::len).sum();
        let gate = match self.detach_mode {
            DetachMode::Wait => None,
            _ if !self.stopped || links.is_empty() => None,
            DetachMode::Background | DetachMode::BackgroundReported => self.hand_off(&links),
        };
        if let Some(gate) = gate {
            // The helper holds the links; our copies close in microseconds.
            // Only then may it close its own (the last references).
            drop(links);
            drop(gate);
        } else {
            link::detach_all(links);
        }
        let mut started = start;
        if let Some((handle, at, count)) = self.detaching.take() {
            // A panicking detach thread still dropped (closed) its links.
            let _ = handle.join();
            started = at;
            n += count;
        }
        DetachReport {
            links: n + std::mem::take(&mut self.closed_early),
            elapsed: started.elapsed(),
        }
    }

    fn background_detach(&self) -> Option<BackgroundDetach> {
        self.background
    }
}

impl KernelBackend {
    /// Set the config map's `stopping` flag, which every probe program
    /// except END checks first; false when the Artifact has no such flag
    /// or the update failed (then the probes stay live until detached).
    fn set_stopping(&mut self) -> bool {
        if self.stopped {
            return true;
        }
        let (Some(i), Some(field)) = (
            self.config,
            self.artifact
                .config
                .fields
                .iter()
                .find(|f| f.name == "stopping"),
        ) else {
            return false;
        };
        let at = field.offset as usize;
        let Some(slot) = self.config_value.get_mut(at..at + 8) else {
            return false;
        };
        slot.copy_from_slice(&1u64.to_le_bytes());
        self.stopped = self.maps[i]
            .update(&0u32.to_le_bytes(), &self.config_value, UpdateFlags::Any)
            .is_ok();
        self.stopped
    }

    /// Give the remaining (slow) links to a background process; `None`
    /// when that is not possible and they must be closed here.
    fn hand_off(&mut self, links: &[Link]) -> Option<handoff::HelperGate> {
        let fds: Vec<RawFd> = links
            .iter()
            .flat_map(Link::as_fds)
            .map(|fd| fd.as_raw_fd())
            .collect();
        let report = if self.detach_mode == DetachMode::BackgroundReported {
            Report::Stderr
        } else {
            Report::Silent
        };
        let (background, gate) = handoff::hand_off(&fds, report).ok()?;
        self.background = Some(background);
        Some(gate)
    }
}

impl Drop for KernelBackend {
    fn drop(&mut self) {
        if !self.links.is_empty() || self.detaching.is_some() {
            self.detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_compile::CompileOptions;

    /// Loads `src`, or says why the kernel could not be used (a failure
    /// under `BPFNEXUS_REQUIRE_KERNEL=1`).
    fn load_or_skip(src: &str) -> Option<KernelBackend> {
        let required = std::env::var_os("BPFNEXUS_REQUIRE_KERNEL").is_some_and(|v| v == "1");
        let artifact = match nexus_compile::compile_source(
            src,
            &nexus_kernel::KernelCatalog,
            &CompileOptions::default(),
        ) {
            Ok(a) => a,
            Err(d) if !required => {
                eprintln!("skipped: the probes are not available here: {d:?}");
                return None;
            }
            Err(d) => panic!("compiling {src:?} failed: {d:?}"),
        };
        match KernelBackend::load(artifact, &LoadOptions::default()) {
            Ok(b) => Some(b),
            Err(e) if !required => {
                eprintln!("skipped: loading into the kernel failed: {e}");
                None
            }
            Err(e) => panic!("loading {src:?} failed: {e}"),
        }
    }

    /// The total of the `count()` map `@`, summed over CPUs.
    fn count_of(backend: &mut KernelBackend) -> u64 {
        let index = backend
            .artifact()
            .maps
            .iter()
            .position(|m| matches!(&m.role, MapRole::User(u) if u.name == "@"))
            .expect("the program has @");
        backend
            .map_entries(index)
            .expect("reading @")
            .iter()
            .flat_map(|e| e.slots.iter())
            .filter_map(|s| s.get(..8))
            .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
            .sum()
    }

    /// The descriptors of this process that are BPF links of the programs
    /// with the given kernel ids (from `/proc/self/fdinfo`, whose `prog_id`
    /// line names a link's program): what the process really still holds.
    fn link_fds_of(prog_ids: &[u32]) -> std::io::Result<Vec<RawFd>> {
        let mut fds = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let entry = entry?;
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            // The directory's own descriptor and descriptors closed meanwhile
            // fail to resolve; neither is a link.
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if target.as_os_str() != "anon_inode:bpf_link" {
                continue;
            }
            let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
                continue;
            };
            let prog_id = info.lines().find_map(|l| {
                l.strip_prefix("prog_id:")
                    .and_then(|v| v.trim().parse::<u32>().ok())
            });
            if prog_id.is_some_and(|id| prog_ids.contains(&id)) {
                fds.push(fd);
            }
        }
        fds.sort_unstable();
        Ok(fds)
    }

    /// Links of this backend's programs still open in this process.
    fn our_links(backend: &KernelBackend) -> usize {
        let ids: Vec<u32> = backend
            .programs
            .iter()
            .map(|l| l.program.id().expect("program id"))
            .collect();
        link_fds_of(&ids).expect("reading /proc/self/fd").len()
    }

    #[test]
    fn stopped_probes_are_inert_and_slow_links_are_handed_off() {
        let Some(mut backend) = load_or_skip("tracepoint:sched:sched_switch { @ = count(); }")
        else {
            return;
        };
        let config = RunConfig {
            tracer_tgid: std::process::id(),
            ..RunConfig::default()
        };
        backend.configure(&config, &[]).expect("configure");
        backend.attach().expect("attach");
        // Context switches happen all the time; sleeping makes some.
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(count_of(&mut backend) > 0, "the probe fired while live");
        backend.start_detach();
        assert!(backend.stopped, "the artifact has a stopping flag");
        let stopped_at = count_of(&mut backend);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(count_of(&mut backend), stopped_at, "inert after stopping");
        assert_eq!(our_links(&backend), 1);

        let report = backend.detach();
        assert_eq!(report.links, 1);
        let background = backend.background_detach().expect("handed off");
        assert_eq!(background.descriptors, 1);
        // Our copy is closed; the helper holds the link until it closes it.
        assert_eq!(our_links(&backend), 0);
    }

    #[test]
    fn wait_mode_detaches_in_place() {
        let required = std::env::var_os("BPFNEXUS_REQUIRE_KERNEL").is_some_and(|v| v == "1");
        let src = "tracepoint:sched:sched_switch { @ = count(); }";
        let artifact = match nexus_compile::compile_source(
            src,
            &nexus_kernel::KernelCatalog,
            &CompileOptions::default(),
        ) {
            Ok(a) => a,
            Err(d) if !required => return eprintln!("skipped: {d:?}"),
            Err(d) => panic!("{d:?}"),
        };
        let options = LoadOptions {
            detach: DetachMode::Wait,
            ..LoadOptions::default()
        };
        let mut backend = match KernelBackend::load(artifact, &options) {
            Ok(b) => b,
            Err(e) if !required => return eprintln!("skipped: {e}"),
            Err(e) => panic!("{e}"),
        };
        backend
            .configure(&RunConfig::default(), &[])
            .expect("configure");
        backend.attach().expect("attach");
        backend.start_detach();
        let report = backend.detach();
        assert_eq!(report.links, 1);
        assert_eq!(backend.background_detach(), None);
        assert_eq!(our_links(&backend), 0);
    }

    #[test]
    fn probe_count_is_bpftraces_attach_point_count() {
        // Two syscall tracepoints share one raw tracepoint program, and -c
        // style scoping adds none here; bpftrace counts 2 + BEGIN.
        let src = "tracepoint:syscalls:sys_enter_read, tracepoint:syscalls:sys_enter_write \
                   { @ = count(); } BEGIN { exit(); }";
        let Some(backend) = load_or_skip(src) else {
            return;
        };
        assert_eq!(backend.probe_count(), 3);
    }
}
