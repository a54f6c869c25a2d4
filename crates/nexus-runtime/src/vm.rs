//! The VM backend: an Artifact's maps and programs loaded into `nexus-vm`,
//! tracepoint programs attached to an application's static tracepoints
//! ([`TracePointRegistry`]), records read from the VM's ring buffer.
//!
//! The bytecode runs unchanged: the VM resolves the compiler's map-index
//! pseudo loads (`LD_IMM64` src 5 and 6) against maps created here in
//! Artifact order, and its ring buffer uses the kernel's record format, so
//! the session, the decoder and the sinks cannot tell the backends apart.
//!
//! [`VmCatalog`] is the matching [`ProbeCatalog`]: it lists the static
//! tracepoints an application declared, so `tracepoint:vmm:vcpu_run_exit`
//! compiles against the application's own argument layout.

use crate::backend::{
    AttachedProbe, Backend, BackendError, DetachReport, RawEntry, RecordBatch, RunConfig,
    scope_slot, scope_word_with,
};
use nexus_compile::{
    Artifact, AttachSpec, BtfArg, CatalogError, MapKind, MapRole, ProbeCatalog, TracepointField,
    glob_match,
};
use nexus_vm::{
    MapSpec, Platform, ProgramId, RealPlatform, SharedVm, TaskInfo, TracePoint, TracePointRegistry,
    Vm,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The platform VM programs see when a session drives them: the clock is
/// `CLOCK_MONOTONIC` (the clock of the kernel's `bpf_ktime_get_ns` and of
/// the session's `start_ns`, so `elapsed` and record timestamps mean the
/// same on both backends), the task is this process, and the CPU is the
/// one the application last set (`nexus-vm` cannot ask the kernel without
/// `unsafe`), 0 by default.
#[derive(Debug)]
pub struct HostPlatform {
    task: TaskInfo,
    cpu: AtomicU32,
    num_cpus: u32,
}

impl HostPlatform {
    /// This process, on CPU 0.
    pub fn new() -> HostPlatform {
        let real = RealPlatform::new();
        HostPlatform {
            task: real.current_task(),
            cpu: AtomicU32::new(0),
            num_cpus: real.num_cpus(),
        }
    }

    /// The CPU the following runs are on (clamped below the CPU count), so
    /// an application can spread per-CPU map values as the kernel would.
    pub fn set_cpu(&self, cpu: u32) {
        self.cpu
            .store(cpu.min(self.num_cpus.saturating_sub(1)), Ordering::Relaxed);
    }
}

impl Default for HostPlatform {
    fn default() -> Self {
        HostPlatform::new()
    }
}

impl Platform for HostPlatform {
    fn ktime_ns(&self) -> u64 {
        // CLOCK_MONOTONIC cannot fail on Linux; 0 would only make `elapsed`
        // and timestamps wrong, never a run unsafe.
        crate::session::monotonic_ns().unwrap_or(0)
    }
    fn current_cpu(&self) -> u32 {
        self.cpu.load(Ordering::Relaxed)
    }
    fn num_cpus(&self) -> u32 {
        self.num_cpus
    }
    fn current_task(&self) -> TaskInfo {
        self.task
    }
}

/// One program attached to one static tracepoint.
#[derive(Debug)]
struct Attachment {
    tracepoint: Arc<TracePoint>,
    id: u64,
    /// We turned the tracepoint on (it was off), so we turn it off again
    /// when nothing else is attached.
    enabled_by_us: bool,
}

/// An Artifact loaded into a `nexus-vm` [`Vm`], attaching to the static
/// tracepoints of `registry`.
#[derive(Debug)]
pub struct VmBackend<'r> {
    artifact: Artifact,
    registry: &'r TracePointRegistry,
    vm: SharedVm,
    /// `programs[i]` is the VM program of `artifact.programs[i]`.
    programs: Vec<ProgramId>,
    attachments: Vec<Attachment>,
    events: Option<usize>,
    config: Option<usize>,
    scope: Option<usize>,
    drops: Option<usize>,
    /// What `start_detach` released, reported by `detach`.
    detached: Option<DetachReport>,
}

fn map_spec(spec: &nexus_compile::MapSpec) -> Result<MapSpec, BackendError> {
    if spec.kind == MapKind::StackTrace {
        return Err(BackendError::Refused(format!(
            "map {}: kstack/ustack need a stack-trace map, which the VM does not have (there is no kernel or user stack to walk)",
            spec.name
        )));
    }
    Ok(MapSpec::new(
        &spec.name,
        spec.kind.map_type(),
        spec.key_size,
        spec.value_size,
        spec.max_entries,
    ))
}

fn runtime(e: impl std::fmt::Display) -> BackendError {
    BackendError::Runtime(e.to_string())
}

/// `category:name` of a tracepoint attach spec, or why the VM cannot
/// attach it; `None` for BEGIN/END.
fn tracepoint_name(spec: &AttachSpec, probe: &str) -> Result<Option<String>, BackendError> {
    match spec {
        AttachSpec::Begin | AttachSpec::End => Ok(None),
        AttachSpec::Tracepoint { category, event } => Ok(Some(format!("{category}:{event}"))),
        other => Err(BackendError::Refused(format!(
            "probe `{probe}`: {} probes are not available in the VM; only BEGIN, END and the application's static tracepoints are",
            attach_kind(other)
        ))),
    }
}

fn attach_kind(spec: &AttachSpec) -> &'static str {
    match spec {
        AttachSpec::Begin => "BEGIN",
        AttachSpec::End => "END",
        AttachSpec::Tracepoint { .. } => "tracepoint",
        AttachSpec::RawTracepoint { .. } => "rawtracepoint",
        AttachSpec::TpBtf { .. } => "BTF tracepoint",
        AttachSpec::Uprobe { .. } => "uprobe",
        AttachSpec::Kprobe { .. } => "kprobe",
        AttachSpec::Fentry { .. } => "fentry",
        AttachSpec::Fexit { .. } => "fexit",
        AttachSpec::Profile { .. } => "profile",
        AttachSpec::Interval { .. } => "interval",
        AttachSpec::Software { .. } => "software",
        AttachSpec::Hardware { .. } => "hardware",
    }
}

impl<'r> VmBackend<'r> {
    /// Create the Artifact's maps in a VM on `platform`, load every
    /// program (nothing is attached yet) and check that every attach point
    /// exists in `registry`, so a typo fails before anything runs.
    pub fn load(
        artifact: Artifact,
        registry: &'r TracePointRegistry,
        platform: Arc<dyn Platform>,
    ) -> Result<VmBackend<'r>, BackendError> {
        let specs = artifact
            .maps
            .iter()
            .map(map_spec)
            .collect::<Result<Vec<_>, _>>()?;
        let mut vm = Vm::with_platform(&specs, platform)
            .map_err(|e| BackendError::Refused(format!("creating the VM's maps failed: {e}")))?;
        let mut programs = Vec::with_capacity(artifact.programs.len());
        for spec in &artifact.programs {
            for a in &spec.attach {
                if let Some(name) = tracepoint_name(a, &spec.probe_text)? {
                    registry.get(&name).map_err(|e| {
                        BackendError::Refused(format!("probe `{}`: {e}", spec.probe_text))
                    })?;
                }
            }
            let id = vm.load(&spec.insns).map_err(|e| {
                BackendError::Refused(format!(
                    "probe `{}` cannot run in the VM: {e}",
                    spec.probe_text
                ))
            })?;
            programs.push(id);
        }
        let role = |r: &MapRole| artifact.map_with_role(r);
        Ok(VmBackend {
            events: role(&MapRole::Events),
            config: role(&MapRole::Config),
            scope: role(&MapRole::Scope),
            drops: role(&MapRole::Drops),
            artifact,
            registry,
            vm: Arc::new(Mutex::new(vm)),
            programs,
            attachments: Vec::new(),
            detached: None,
        })
    }

    /// The Artifact this backend runs.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    /// The VM the programs run in (shared with the tracepoints they are
    /// attached to).
    pub fn shared_vm(&self) -> &SharedVm {
        &self.vm
    }

    /// A tracepoint program that faulted leaves its message in the
    /// tracepoint's statistics; this collects them as `(tracepoint, faults,
    /// last message)` for the tracepoints this backend attached to.
    pub fn faults(&self) -> Vec<(String, u64, String)> {
        let mut out: Vec<(String, u64, String)> = Vec::new();
        for a in &self.attachments {
            let tp = &a.tracepoint;
            let errors = tp.stats().errors;
            if errors > 0 && !out.iter().any(|(n, _, _)| n == tp.full_name()) {
                out.push((
                    tp.full_name().to_string(),
                    errors,
                    tp.last_error().unwrap_or_default(),
                ));
            }
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, Vm> {
        // A poisoned lock means a firing thread panicked while it held the
        // VM; the maps are still whole values, so keep reading them.
        self.vm.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run_special(&mut self, which: &AttachSpec) -> Result<(), BackendError> {
        let mut vm = self.lock();
        for (spec, &id) in self.artifact.programs.iter().zip(&self.programs) {
            if spec.attach.iter().any(|a| a == which) {
                vm.run(id, &mut []).map_err(|e| {
                    BackendError::Runtime(format!("probe `{}`: {e}", spec.probe_text))
                })?;
            }
        }
        Ok(())
    }

    fn check_map(&self, index: usize) -> Result<(), BackendError> {
        if index < self.artifact.maps.len() {
            Ok(())
        } else {
            Err(BackendError::Runtime(format!(
                "the program refers to map {index}, but only {} maps exist",
                self.artifact.maps.len()
            )))
        }
    }
}

impl Backend for VmBackend<'_> {
    fn configure(&mut self, config: &RunConfig, scope_tgids: &[u32]) -> Result<(), BackendError> {
        if let Some(i) = self.config {
            let layout = &self.artifact.config;
            let mut value = vec![0u8; self.artifact.maps[i].value_size as usize];
            for field in &layout.fields {
                let v = match field.name.as_str() {
                    // VM programs run inside the application that fires
                    // the tracepoints, which is also the tracer's process:
                    // the kernel's "skip the tracer" guard would skip every
                    // event. Nothing the tracer does fires a static
                    // tracepoint by itself, so there is nothing to skip.
                    "tracer_tgid" => 0,
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
            let mut vm = self.lock();
            vm.map_mut(i)
                .and_then(|m| Ok(m.update(&0u32.to_le_bytes(), &value, nexus_vm::BPF_ANY)?))
                .map_err(runtime)?;
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
        // Under the VM lock.
        let (key, bit) = scope_slot(tgid);
        let mut vm = self.lock();
        let map = vm.map_mut(i).map_err(runtime)?;
        let current = map.lookup(&key).map_err(runtime)?;
        let word = scope_word_with(current, bit, tgid, map.spec().max_entries)?;
        map.update(&key, &word, nexus_vm::BPF_ANY).map_err(runtime)
    }

    fn attach(&mut self) -> Result<Vec<AttachedProbe>, BackendError> {
        let mut attached = Vec::new();
        for (spec, &id) in self.artifact.programs.iter().zip(&self.programs) {
            for a in &spec.attach {
                let Some(name) = tracepoint_name(a, &spec.probe_text)? else {
                    continue;
                };
                let tp = self.registry.get(&name).map_err(|e| {
                    BackendError::Refused(format!("probe `{}`: {e}", spec.probe_text))
                })?;
                let enabled_by_us = !tp.is_enabled();
                let att = tp.attach(Arc::clone(&self.vm), id);
                tp.enable();
                self.attachments.push(Attachment {
                    tracepoint: tp,
                    id: att,
                    enabled_by_us,
                });
                attached.push(AttachedProbe {
                    probe: spec.probe_text.clone(),
                    target: format!("static tracepoint {name} (VM)"),
                    links: 1,
                });
            }
        }
        Ok(attached)
    }

    fn probe_count(&self) -> usize {
        self.artifact.attach_point_count() as usize
    }

    fn run_begin(&mut self) -> Result<(), BackendError> {
        self.run_special(&AttachSpec::Begin)
    }

    fn run_end(&mut self) -> Result<(), BackendError> {
        self.run_special(&AttachSpec::End)
    }

    fn ready_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        // The VM has no descriptor; the event loop polls it (every 100 ms
        // at most when idle).
        None
    }

    fn read_batch(&mut self, batch: &mut RecordBatch, _max_bytes: usize) -> usize {
        batch.clear();
        let Some(i) = self.events else { return 0 };
        // The VM's ring buffer is drained whole: it is a bounded buffer in
        // our own memory, so copying it out at once frees all of it for the
        // programs before the records are dispatched.
        let mut vm = self.vm.lock().unwrap_or_else(|e| e.into_inner());
        // `events` is the Artifact's ring buffer, created as one in `load`.
        vm.drain_ringbuf(i, |r| batch.push(r)).unwrap_or_default()
    }

    fn map_entries(&mut self, index: usize) -> Result<Vec<RawEntry>, BackendError> {
        self.check_map(index)?;
        let value_size = self.artifact.maps[index].value_size as usize;
        let vm = self.lock();
        let map = vm.map(index).map_err(runtime)?;
        let (copies, stride) = (map.copies(), map.value_stride());
        Ok(map
            .entries()
            .into_iter()
            .map(|(key, value)| RawEntry {
                key,
                slots: if copies == 1 {
                    vec![value]
                } else {
                    value
                        .chunks(stride)
                        .map(|c| c[..c.len().min(value_size)].to_vec())
                        .collect()
                },
            })
            .collect())
    }

    fn clear_map(&mut self, index: usize) -> Result<(), BackendError> {
        self.check_map(index)?;
        if matches!(
            self.artifact.maps[index].kind,
            MapKind::Array | MapKind::PercpuArray
        ) {
            return self.zero_map(index);
        }
        let mut vm = self.lock();
        let map = vm.map_mut(index).map_err(runtime)?;
        for (key, _) in map.entries() {
            map.delete(&key).map_err(runtime)?;
        }
        Ok(())
    }

    fn zero_map(&mut self, index: usize) -> Result<(), BackendError> {
        self.check_map(index)?;
        let zero = vec![0u8; self.artifact.maps[index].value_size as usize];
        let mut vm = self.lock();
        let map = vm.map_mut(index).map_err(runtime)?;
        for (key, _) in map.entries() {
            map.update(&key, &zero, nexus_vm::BPF_EXIST)
                .map_err(runtime)?;
        }
        Ok(())
    }

    fn stack_frames(&mut self, _id: u32, frames: &mut Vec<u64>) -> bool {
        // Loading refuses stack-trace maps, so no record names a stack.
        frames.clear();
        false
    }

    fn lost_events(&mut self) -> Result<u64, BackendError> {
        let Some(i) = self.drops else { return Ok(0) };
        let vm = self.lock();
        let map = vm.map(i).map_err(runtime)?;
        let stride = map.value_stride();
        let raw = map.lookup(&0u32.to_le_bytes()).map_err(runtime)?;
        Ok(raw.map_or(0, |raw| {
            raw.chunks(stride.max(8))
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
        // Detaching a static tracepoint takes microseconds (it waits only
        // for a run in progress), so there is nothing to overlap: detach
        // now, and END and the final maps see no further events.
        let report = self.detach_now();
        let earlier = self.detached.take().unwrap_or_default();
        self.detached = Some(DetachReport {
            links: earlier.links + report.links,
            elapsed: earlier.elapsed + report.elapsed,
        });
    }

    fn detach(&mut self) -> DetachReport {
        let report = self.detach_now();
        let earlier = self.detached.take().unwrap_or_default();
        DetachReport {
            links: earlier.links + report.links,
            elapsed: earlier.elapsed + report.elapsed,
        }
    }
}

impl VmBackend<'_> {
    fn detach_now(&mut self) -> DetachReport {
        let start = Instant::now();
        let n = self.attachments.len();
        for a in self.attachments.drain(..) {
            // The id came from this tracepoint's own `attach`, so it is there.
            let _ = a.tracepoint.detach(a.id);
            if a.enabled_by_us && a.tracepoint.attached_count() == 0 {
                a.tracepoint.disable();
            }
        }
        DetachReport {
            links: n,
            elapsed: start.elapsed(),
        }
    }
}

impl Drop for VmBackend<'_> {
    fn drop(&mut self) {
        self.detach_now();
    }
}

/// The [`ProbeCatalog`] of an application's static tracepoints: the only
/// probes (besides BEGIN and END) a VM session can attach. Field layouts
/// come from the tracepoints' declarations; there are no common fields,
/// since the VM's context is exactly the declared arguments.
#[derive(Debug, Clone, Copy)]
pub struct VmCatalog<'r> {
    registry: &'r TracePointRegistry,
}

impl<'r> VmCatalog<'r> {
    /// The tracepoints declared in `registry`.
    pub fn new(registry: &'r TracePointRegistry) -> VmCatalog<'r> {
        VmCatalog { registry }
    }
}

fn not_in_vm(what: &str) -> CatalogError {
    CatalogError(format!(
        "{what} are not available in the VM; it offers BEGIN, END and the application's static tracepoints (tracepoint:CATEGORY:NAME)"
    ))
}

impl ProbeCatalog for VmCatalog<'_> {
    fn tracepoints(
        &self,
        category: &str,
        event: &str,
    ) -> Result<Vec<(String, String)>, CatalogError> {
        Ok(self
            .registry
            .list()
            .into_iter()
            .filter_map(|info| {
                let (c, e) = info.name.split_once(':')?;
                (glob_match(category, c) && glob_match(event, e))
                    .then(|| (c.to_string(), e.to_string()))
            })
            .collect())
    }

    fn tracepoint_fields(
        &self,
        category: &str,
        event: &str,
    ) -> Result<Option<Vec<TracepointField>>, CatalogError> {
        let Ok(tp) = self.registry.get(&format!("{category}:{event}")) else {
            return Ok(None);
        };
        Ok(Some(
            tp.fields()
                .iter()
                .map(|f| TracepointField {
                    name: f.name.clone(),
                    c_type: f.ty.name(),
                    offset: f.offset,
                    size: f.size,
                    signed: f.ty.is_signed(),
                })
                .collect(),
        ))
    }

    fn resolve_binary(&self, _binary: &str) -> Result<Option<String>, CatalogError> {
        Err(not_in_vm("uprobes"))
    }

    fn user_functions(&self, _path: &str, _pattern: &str) -> Result<Vec<String>, CatalogError> {
        Err(not_in_vm("uprobes"))
    }

    fn kernel_functions(&self, _pattern: &str) -> Result<Vec<String>, CatalogError> {
        Err(not_in_vm("kernel functions (kprobe, fentry, fexit)"))
    }

    fn has_kprobes(&self) -> bool {
        // Answering "no" would make the compiler blame the kernel's
        // configuration; "yes" leads it to ask for the kernel functions,
        // which this catalog refuses with the reason that applies: the VM
        // has no kernel functions at all.
        true
    }

    fn kernel_function_args(&self, _function: &str) -> Result<Option<Vec<BtfArg>>, CatalogError> {
        Err(not_in_vm("kernel functions (kprobe, fentry, fexit)"))
    }

    fn syscall_number(&self, _name: &str) -> Option<u32> {
        // No syscall tracepoints in the VM, so nothing to lower onto raw ones.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_vm::FieldType;

    fn registry() -> TracePointRegistry {
        let reg = TracePointRegistry::new();
        reg.declare(
            "vmm:vcpu_run_exit",
            &[
                ("vm_id", FieldType::U32),
                ("reason", FieldType::U32),
                ("delta", FieldType::I64),
                ("guest", FieldType::Str(16)),
            ],
        )
        .expect("declare");
        reg.declare("vmm:vm_boot", &[("vm_id", FieldType::U32)])
            .expect("declare");
        reg.declare("app:request", &[("status", FieldType::U16)])
            .expect("declare");
        reg
    }

    #[test]
    fn catalog_lists_and_describes_static_tracepoints() {
        let reg = registry();
        let cat = VmCatalog::new(&reg);
        let vmm = cat.tracepoints("vmm", "*").expect("list");
        assert_eq!(
            vmm,
            vec![
                ("vmm".to_string(), "vcpu_run_exit".to_string()),
                ("vmm".to_string(), "vm_boot".to_string())
            ]
        );
        assert_eq!(cat.tracepoints("*", "req*").expect("list").len(), 1);
        let fields = cat
            .tracepoint_fields("vmm", "vcpu_run_exit")
            .expect("fields")
            .expect("exists");
        let shape: Vec<_> = fields
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.c_type.as_str(),
                    f.offset,
                    f.size,
                    f.signed,
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("vm_id", "u32", 0, 4, false),
                ("reason", "u32", 4, 4, false),
                ("delta", "s64", 8, 8, true),
                ("guest", "char[16]", 16, 16, false),
            ]
        );
        assert_eq!(cat.tracepoint_fields("vmm", "nope").expect("ok"), None);
    }

    #[test]
    fn catalog_refuses_what_the_vm_lacks() {
        let reg = registry();
        let cat = VmCatalog::new(&reg);
        let e = cat.resolve_binary("libc").expect_err("no uprobes");
        assert!(e.0.contains("uprobes are not available in the VM"), "{e}");
        assert!(cat.kernel_functions("vfs_*").is_err());
        assert!(cat.kernel_function_args("vfs_read").is_err());
        assert_eq!(cat.syscall_number("read"), None);
    }

    #[test]
    fn attach_enables_and_detach_restores_the_tracepoint() {
        let reg = registry();
        let src = "tracepoint:vmm:vcpu_run_exit { @[args.reason] = count(); }";
        let artifact = nexus_compile::compile_source(
            src,
            &VmCatalog::new(&reg),
            &nexus_compile::CompileOptions::default(),
        )
        .expect("compiles");
        let user = artifact
            .maps
            .iter()
            .position(|m| matches!(m.role, MapRole::User(_)))
            .expect("user map");
        let mock = Arc::new(nexus_vm::MockPlatform::new(2));
        let mut b = VmBackend::load(artifact, &reg, mock.clone()).expect("loads");
        b.configure(&RunConfig::default(), &[]).expect("config");
        assert_eq!(b.probe_count(), 1);
        let tp = reg.get("vmm:vcpu_run_exit").expect("declared");
        assert!(!tp.is_enabled());
        let probes = b.attach().expect("attaches");
        assert_eq!(probes.len(), 1);
        assert!(tp.is_enabled());
        tp.fire(&[1, 48]);
        mock.set_cpu(1);
        tp.fire(&[1, 48]);
        let entries = b.map_entries(user).expect("entries");
        assert_eq!(entries.len(), 1);
        // One count on each CPU, each slot the value size (8 bytes).
        let slots: Vec<&[u8]> = entries[0].slots.iter().map(Vec::as_slice).collect();
        assert_eq!(
            slots,
            vec![&1u64.to_le_bytes()[..], &1u64.to_le_bytes()[..]]
        );
        b.start_detach();
        assert!(!tp.is_enabled(), "we enabled it, so we disable it");
        tp.enable();
        tp.fire(&[1, 48]);
        assert_eq!(
            b.map_entries(user).expect("entries")[0].slots[1],
            1u64.to_le_bytes()
        );
        assert_eq!(b.detach().links, 1);
        b.clear_map(user).expect("clear");
        assert!(b.map_entries(user).expect("entries").is_empty());
    }

    #[test]
    fn host_platform_uses_the_sessions_clock() {
        let p = HostPlatform::new();
        let before = crate::session::monotonic_ns().expect("clock");
        let t = p.ktime_ns();
        assert!(t >= before, "{t} < {before}");
        p.set_cpu(u32::MAX);
        assert_eq!(p.current_cpu(), p.num_cpus() - 1);
        assert_eq!(p.current_task().tgid, std::process::id());
    }
}
