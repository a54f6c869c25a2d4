//! Cost per hit of a static tracepoint: disabled, and enabled with a
//! `count()` program attached. Run with
//! `taskset -c 1 cargo bench -p nexus-vm --bench tracepoint`.

use nexus_insn::MapType;
use nexus_vm::tracepoint::TracePoint;
use nexus_vm::{FieldType, MapSpec, MockPlatform, Vm, progs, trace_point};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let total: u64 = vm
        .map(0)?
        .entries()
        .iter()
        .map(|(_, v)| u64::from_le_bytes(v[..8].try_into().unwrap_or([0; 8])))
        .sum();
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
    Ok(())
}
