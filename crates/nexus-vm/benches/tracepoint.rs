//! Cost per hit of a static tracepoint — disabled, and enabled with a
//! `count()` program attached — and, in the same run, of a kernel uprobe
//! running the same `count()` bytecode on an equivalent function. Run with
//! `taskset -c 1 cargo bench -p nexus-vm --bench tracepoint`.
//!
//! Every figure is the best (lowest) of several timed batches, each after a
//! warm-up of a tenth of its length. The uprobe part needs root and BPF; when
//! it cannot create a map it says why and is skipped (a failure with
//! `BPFNEXUS_REQUIRE_KERNEL=1`). Once a map exists, anything else going wrong
//! — the verifier, attaching, or the uprobe's count not matching the calls
//! made — is an error: a comparison that silently measured nothing is worse
//! than none.

use nexus_insn::op::{LD_IMM64, PSEUDO_MAP_FD, PSEUDO_MAP_IDX};
use nexus_insn::{Insn, MapType, ProgType};
use nexus_kernel::{AttachTarget, Program, ProgramSpec, UprobeTarget, attach};
use nexus_vm::tracepoint::TracePoint;
use nexus_vm::{FieldType, MapSpec, MockPlatform, Vm, progs, trace_point};
use std::error::Error;
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

type BenchResult<T> = Result<T, Box<dyn Error>>;

fn per_hit(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    // Warm up caches and the branch predictor first.
    for i in 0..iters / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

fn best_of(runs: usize, iters: u64, mut f: impl FnMut(u64)) -> f64 {
    (0..runs)
        .map(|_| per_hit(iters, &mut f))
        .fold(f64::INFINITY, f64::min)
}

/// How many times `best_of(runs, iters, f)` calls `f`, warm-ups included.
fn calls_made(runs: usize, iters: u64) -> u64 {
    runs as u64 * (iters + iters / 10)
}

fn main() -> BenchResult<()> {
    let vm_enabled = vm_tracepoint()?;
    let uprobes = kernel_uprobe().map_err(|e| format!("kernel uprobe comparison failed: {e}"))?;
    for up in uprobes {
        let overhead = up.probed - up.unprobed;
        println!(
            "uprobe, {}: overhead (b - a) {overhead:.1} ns/hit = {:.1}x the VM's enabled hit",
            up.entry,
            overhead / vm_enabled
        );
    }
    Ok(())
}

/// The userspace VM's static tracepoint; returns the enabled cost per hit.
fn vm_tracepoint() -> BenchResult<f64> {
    let tp = TracePoint::new(
        "bench:hit",
        &[
            ("vm_id", FieldType::U32),
            ("reason", FieldType::U32),
            ("arg", FieldType::U64),
        ],
    )?;

    let disabled = best_of(5, 50_000_000, |i| trace_point!(tp, black_box(i), 3, i));
    println!("disabled tracepoint:                {disabled:>8.2} ns/hit (target <= 2)");

    let maps = [MapSpec::new("counts", MapType::Hash, 8, 8, 1024)];
    let mut vm = Vm::with_platform(&maps, Arc::new(MockPlatform::new(1)))?;
    let prog = vm.load(&progs::count_by_u32_field(0, 4))?;
    let vm = Arc::new(Mutex::new(vm));
    tp.attach(Arc::clone(&vm), prog);
    tp.enable();
    let enabled = best_of(5, 2_000_000, |i| trace_point!(tp, 1, black_box(i & 15), i));
    println!("enabled tracepoint, count():        {enabled:>8.2} ns/hit (target <= 150)");

    tp.set_timing(true);
    let timed = best_of(3, 2_000_000, |i| trace_point!(tp, 1, black_box(i & 15), i));
    println!("enabled, count(), run time timed:   {timed:>8.2} ns/hit");

    let mut vm = vm.lock().map_err(|_| "vm lock poisoned")?;
    let total: u64 = vm.map(0)?.entries().iter().map(|(_, v)| u64_le(v)).sum();
    println!(
        "count() total over 16 keys: {total} (hits recorded: {})",
        tp.stats().hits
    );
    // Run the program directly too, without the tracepoint around it.
    let mut ctx = [0u8; 16];
    let direct = best_of(5, 2_000_000, |i| {
        ctx[4] = (i & 15) as u8;
        black_box(vm.run_readonly(prog, &ctx).ok());
    });
    println!("count() program run directly:       {direct:>8.2} ns/run");
    Ok(enabled)
}

fn u64_le(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The function the uprobe is placed on: the same three arguments the VM
/// tracepoint carries, and next to no work, so (b − a) is the probe's cost.
/// As compiled here its first instruction is an ALU op (`xor`), which the
/// kernel cannot emulate: the uprobe single-steps it out of line.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn nexus_vm_bench_uprobe_target(vm_id: u32, reason: u32, arg: u64) -> u64 {
    black_box(u64::from(vm_id) ^ u64::from(reason) ^ arg)
}

/// The same function with the entry a C compiler emits with frame pointers
/// (`push rbp; mov rbp, rsp`). x86 uprobes emulate a `push` in the kernel
/// instead of single-stepping it, so this is the cheaper, common case;
/// written out in assembly because rustc decides the first instruction.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn nexus_vm_bench_uprobe_target_fp(vm_id: u32, reason: u32, arg: u64) -> u64 {
    // Returns vm_id ^ reason ^ arg like the function above; touches only
    // caller-saved registers and restores rbp before returning.
    std::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "mov eax, edi",
        "mov esi, esi",
        "xor rax, rsi",
        "xor rax, rdx",
        "pop rbp",
        "ret",
    )
}

type TargetFn = extern "C" fn(u32, u32, u64) -> u64;

/// The uprobe targets measured: (symbol, function, what its entry is).
#[cfg(target_arch = "x86_64")]
const UPROBE_TARGETS: &[(&str, TargetFn, &str)] = &[
    (
        "nexus_vm_bench_uprobe_target_fp",
        nexus_vm_bench_uprobe_target_fp,
        "entry `push rbp` (emulated)",
    ),
    (
        "nexus_vm_bench_uprobe_target",
        nexus_vm_bench_uprobe_target,
        "entry as rustc compiled it (single-stepped)",
    ),
];
#[cfg(not(target_arch = "x86_64"))]
const UPROBE_TARGETS: &[(&str, TargetFn, &str)] = &[(
    "nexus_vm_bench_uprobe_target",
    nexus_vm_bench_uprobe_target,
    "entry as rustc compiled it",
)];

/// Where the second argument (`reason`, the count() key) sits in the
/// `pt_regs` a kprobe-type program receives.
#[cfg(target_arch = "x86_64")]
const REASON_REG_OFFSET: Option<i16> = Some(104); // struct pt_regs .si
#[cfg(target_arch = "aarch64")]
const REASON_REG_OFFSET: Option<i16> = Some(8); // struct user_pt_regs .regs[1]
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const REASON_REG_OFFSET: Option<i16> = None;

struct UprobeCost {
    /// What the probed instruction is.
    entry: &'static str,
    /// (a) ns per call with no probe.
    unprobed: f64,
    /// (b) ns per call with the uprobe and its count() program attached.
    probed: f64,
}

/// Why the kernel part cannot run here, or `Err` if `BPFNEXUS_REQUIRE_KERNEL=1`.
fn skip(reason: String) -> BenchResult<Vec<UprobeCost>> {
    if std::env::var_os("BPFNEXUS_REQUIRE_KERNEL").is_some_and(|v| v == "1") {
        return Err(format!("BPFNEXUS_REQUIRE_KERNEL=1 but {reason}").into());
    }
    println!("kernel uprobe comparison skipped: {reason}");
    Ok(Vec::new())
}

/// The same count() the VM runs, for the kernel: the VM reads a map "fd"
/// in `LD_IMM64` as the map's index, while nexus-kernel relocates the
/// `PSEUDO_MAP_IDX` form to real fds, so only the pseudo source changes.
fn kernel_count_program(key_off: i16) -> Vec<Insn> {
    let mut insns = progs::count_by_u32_field(0, key_off);
    for insn in &mut insns {
        if insn.code == LD_IMM64 && insn.src == PSEUDO_MAP_FD {
            insn.src = PSEUDO_MAP_IDX;
        }
    }
    insns
}

/// The uprobe target for one of our own functions. The bench profile
/// inherits `strip = true` from the release profile, so the symbol table is
/// usually gone; then the file offset comes from where the function is mapped.
fn uprobe_target(exe: &Path, pid: i32, symbol: &str, f: TargetFn) -> BenchResult<UprobeTarget> {
    let exe_str = exe.to_str().ok_or("executable path is not UTF-8")?;
    match UprobeTarget::symbol(exe_str, symbol, false, Some(pid)) {
        Ok(t) => {
            println!(
                "uprobe on {symbol}: offset {:#x} from the symbol table",
                t.offset
            );
            Ok(t)
        }
        Err(e) => {
            let addr = f as *const () as usize as u64;
            let offset = file_offset_in_maps(addr, exe)?;
            println!("uprobe on {symbol}: offset {offset:#x} from /proc/self/maps ({e})");
            Ok(UprobeTarget {
                path: exe.to_path_buf(),
                offset,
                retprobe: false,
                pid: Some(pid),
            })
        }
    }
}

/// The file offset of `addr` in `exe`, from this process's mappings
/// (`start-end perms offset dev inode path`).
fn file_offset_in_maps(addr: u64, exe: &Path) -> BenchResult<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(_perms), Some(off), Some(_dev), Some(_inode), Some(path)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if Path::new(path) != exe {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let start = u64::from_str_radix(start, 16)?;
        let end = u64::from_str_radix(end, 16)?;
        if (start..end).contains(&addr) {
            return Ok(addr - start + u64::from_str_radix(off, 16)?);
        }
    }
    Err(format!(
        "{addr:#x} is in no mapping of {} in /proc/self/maps",
        exe.display()
    )
    .into())
}

/// For each target: (a) the function called with no probe, (b) with a
/// uprobe running count(); then its map is read back and must hold exactly
/// the calls made in (b).
fn kernel_uprobe() -> BenchResult<Vec<UprobeCost>> {
    let Some(key_off) = REASON_REG_OFFSET else {
        return skip(format!(
            "no pt_regs argument offset for {}",
            std::env::consts::ARCH
        ));
    };
    let spec = nexus_kernel::MapSpec::new("nx_bench_count", MapType::Hash, 8, 8, 1024);
    if let Err(e) = nexus_kernel::Map::create(&spec) {
        return skip(format!("cannot create a BPF map ({e}); needs root and BPF"));
    }
    let insns = kernel_count_program(key_off);
    let exe = std::env::current_exe()?;
    let pid = i32::try_from(std::process::id())?;
    let mut costs = Vec::new();
    for &(symbol, f, entry) in UPROBE_TARGETS {
        // A fresh map per target, so each count is checked on its own.
        let map = nexus_kernel::Map::create(&spec)?;
        let prog = Program::load(
            &ProgramSpec::new("nx_bench_count", ProgType::Kprobe, &insns),
            &[&map],
        )?;
        let target = AttachTarget::Uprobe(uprobe_target(&exe, pid, symbol, f)?);

        // Called through an opaque pointer, so every iteration is a real
        // call to the function's entry, where the uprobe sits.
        let f: TargetFn = black_box(f);
        let call = |i: u64| {
            black_box(f(1, black_box((i & 15) as u32), i));
        };
        let unprobed = best_of(5, 50_000_000, call);
        println!("(a) function, no probe:             {unprobed:>8.2} ns/call");

        let (runs, iters) = (5, 100_000);
        let link = attach(&prog, &target)?;
        let probed = best_of(runs, iters, call);
        drop(link);
        println!("(b) function + uprobe count():      {probed:>8.2} ns/call");

        let mut counts: Vec<(u64, u64)> = map
            .entries()?
            .iter()
            .map(|e| (u64_le(&e.key), u64_le(&e.value)))
            .collect();
        counts.sort_unstable();
        let total: u64 = counts.iter().map(|(_, v)| v).sum();
        let expected = calls_made(runs, iters);
        let shown: Vec<String> = counts.iter().map(|(k, v)| format!("@[{k}]: {v}")).collect();
        println!("    map: {}", shown.join(", "));
        println!(
            "    total over {} keys: {total} (calls made under the probe: {expected})",
            counts.len()
        );
        if total != expected {
            return Err(format!(
                "the uprobe on {symbol} counted {total} hits for {expected} calls; (b) did not measure what it claims"
            )
            .into());
        }
        costs.push(UprobeCost {
            entry,
            unprobed,
            probed,
        });
    }
    Ok(costs)
}
