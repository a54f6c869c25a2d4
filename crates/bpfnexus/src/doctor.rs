//! `bpfnexus doctor`: the capability report, readable or as one JSON object.

use crate::cli::DoctorArgs;
use crate::exit::Failure;
use nexus_kernel::{Capabilities, Capability};
use std::io::Write;

pub fn run(args: &DoctorArgs) -> Result<(), Failure> {
    let caps = nexus_kernel::probe_capabilities();
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string(&caps)
            .map_err(|e| Failure::runtime(format!("encoding the report: {e}")))?;
        writeln!(out, "{text}")?;
    } else {
        out.write_all(render(&caps).as_bytes())?;
    }
    Ok(())
}

/// The rows of the readable report, in the order a user reads them: who we
/// are, whether BPF works at all, then each way of attaching.
fn rows(c: &Capabilities) -> Vec<(&'static str, &Capability)> {
    vec![
        ("root", &c.root),
        ("CAP_BPF", &c.cap_bpf),
        ("CAP_PERFMON", &c.cap_perfmon),
        ("CAP_SYS_ADMIN", &c.cap_sys_admin),
        ("bpf(2)", &c.bpf_syscall),
        ("BTF", &c.btf),
        ("tracefs", &c.tracefs),
        ("ring buffer", &c.ringbuf),
        ("tracepoint", &c.tracepoint),
        ("raw tracepoint", &c.raw_tracepoint),
        ("tp_btf", &c.tp_btf),
        ("uprobe", &c.uprobe),
        ("uretprobe", &c.uretprobe),
        ("perf event", &c.perf_event),
        ("kprobe", &c.kprobe),
        ("CONFIG_KPROBES", &c.kprobes_config),
        ("fentry", &c.fentry),
        ("fexit", &c.fexit),
        ("bpftrace", &c.bpftrace),
    ]
}

fn render(c: &Capabilities) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "bpfnexus doctor: kernel {}, euid {}",
        c.kernel_release, c.euid
    );
    let _ = writeln!(s);
    let rows = rows(c);
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, cap) in &rows {
        let mark = if cap.available { "yes" } else { "NO " };
        let _ = writeln!(s, "  {mark}  {name:<width$}  {}", cap.detail);
        if let Some(fix) = &cap.fix {
            let _ = writeln!(s, "       {:<width$}  fix: {fix}", "");
        }
    }
    let missing = rows.iter().filter(|(_, c)| !c.available).count();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{} of {} available; probed in {:.1} ms",
        rows.len() - missing,
        rows.len(),
        c.probe_micros as f64 / 1000.0
    );
    s
}
