//! Events per second through the printf path of each sink: a typical
//! per-syscall `printf("%-16s %6d %s\n", comm, pid, str(args->filename))`,
//! formatted into the sinks' reused buffers and written to a file (or
//! `/dev/null`-like `io::sink()`), as `-o FILE` and `> FILE` do.
//!
//! Not a timed test: it prints its measurements.

use std::hint::black_box;
use std::io;
use std::time::Instant;

use nexus_runtime::{
    ArgKind, EventMeta, JsonOptions, JsonSink, PrintfEvent, PrintfSite, Sink, TextSink, Value,
    check_format,
};

const EVENTS: u64 = 2_000_000;

fn site() -> PrintfSite {
    PrintfSite {
        format: check_format(
            "%-16s %6d %s\n",
            &[ArgKind::String, ArgKind::Integer, ArgKind::String],
        )
        .expect("benchmark format is valid"),
        arg_names: vec!["comm".into(), "pid".into(), "str(args->filename)".into()],
        probe: "tracepoint:syscalls:sys_enter_openat".into(),
    }
}

fn drive(name: &str, sink: &mut dyn Sink) {
    let site = site();
    let mut meta = EventMeta::default();
    meta.comm[..2].copy_from_slice(b"dd");
    // The decoder refills one argument vector per site in place.
    let mut args = vec![
        Value::str("dd"),
        Value::Signed { value: 0, bits: 32 },
        Value::str("/usr/lib/x86_64-linux-gnu/libc.so.6"),
    ];
    let start = Instant::now();
    for n in 0..EVENTS {
        if let Value::Signed { value, .. } = &mut args[1] {
            *value = (n % 100_000) as i64;
        }
        meta.timestamp_ns = n;
        let event = PrintfEvent {
            site: &site,
            meta: &meta,
            args: &args,
        };
        if let Err(e) = sink.printf(black_box(&event)) {
            eprintln!("{name}: {e}");
            return;
        }
    }
    if let Err(e) = sink.finish() {
        eprintln!("{name}: {e}");
        return;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<28} {:>6.2} M events/s ({:.0} ns/event)",
        EVENTS as f64 / secs / 1e6,
        secs * 1e9 / EVENTS as f64
    );
}

fn main() {
    drive("text -> io::sink", &mut TextSink::new(io::sink()));
    drive(
        "json(typed) -> io::sink",
        &mut JsonSink::new(io::sink(), JsonOptions::default()),
    );
    let path = std::env::temp_dir().join("nexus-runtime-bench.out");
    match std::fs::File::create(&path) {
        Ok(file) => drive("text -> file", &mut TextSink::new(file)),
        Err(e) => eprintln!("cannot create {}: {e}", path.display()),
    }
    match std::fs::File::create(&path) {
        Ok(file) => drive(
            "json(typed) -> file",
            &mut JsonSink::new(file, JsonOptions::default()),
        ),
        Err(e) => eprintln!("cannot create {}: {e}", path.display()),
    }
    let _ = std::fs::remove_file(&path);
}
