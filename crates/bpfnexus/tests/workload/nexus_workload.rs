//! The deterministic workload of the language and differential tests.
//!
//! Built by the tests with `rustc` (no dependencies), then run with `-c`.
//! Every mode makes an exactly known number of calls and syscalls, so a
//! test can state the exact counts and values a program must print. Setup
//! work of the Rust runtime (mmap, sigaltstack, ...) happens before the
//! counted part and uses none of the syscalls the modes count.
//!
//! Modes:
//! - `add N`: calls `nexus_workload_add(i, 10 * i)` for i in 1..=N
//!   (a uprobe target with known arguments and return values).
//! - `neg N`: calls `nexus_workload_neg(i)` for i in 1..=N; returns -i.
//! - `open PATH N`: opens (and closes) PATH N times with `openat`.
//! - `write SIZE N`: writes SIZE bytes to /dev/null N times.
//! - `getppid N`: calls getppid(2) N times.

use std::io::Write;

/// Adds its arguments; never inlined so a uprobe sees every call.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn nexus_workload_add(a: u64, b: u64) -> u64 {
    std::hint::black_box(a.wrapping_add(b))
}

/// Negates its argument; a signed return value for uretprobe tests.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn nexus_workload_neg(a: i64) -> i64 {
    std::hint::black_box(a.wrapping_neg())
}

fn number(arg: Option<&String>, what: &str) -> u64 {
    match arg.and_then(|s| s.parse().ok()) {
        Some(n) => n,
        None => fail(&format!("{what}: expected a number")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("nexus_workload: {message}");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("add") => {
            let mut total = 0u64;
            for i in 1..=number(args.get(1), "add N") {
                total = total.wrapping_add(nexus_workload_add(i, 10 * i));
            }
            std::hint::black_box(total);
        }
        Some("neg") => {
            for i in 1..=number(args.get(1), "neg N") {
                let i = i64::try_from(i).unwrap_or(i64::MAX);
                std::hint::black_box(nexus_workload_neg(i));
            }
        }
        Some("open") => {
            let path = args.get(1).unwrap_or_else(|| fail("open PATH N: no PATH"));
            for _ in 0..number(args.get(2), "open PATH N") {
                if let Err(e) = std::fs::File::open(path) {
                    fail(&format!("opening {path}: {e}"));
                }
            }
        }
        Some("write") => {
            let size = number(args.get(1), "write SIZE N");
            let count = number(args.get(2), "write SIZE N");
            let buf = vec![b'x'; usize::try_from(size).unwrap_or(0)];
            let mut null = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .unwrap_or_else(|e| fail(&format!("opening /dev/null: {e}")));
            for _ in 0..count {
                if let Err(e) = null.write(&buf) {
                    fail(&format!("writing /dev/null: {e}"));
                }
            }
        }
        Some("getppid") => {
            for _ in 0..number(args.get(1), "getppid N") {
                std::hint::black_box(std::os::unix::process::parent_id());
            }
        }
        _ => fail("usage: nexus_workload add N | neg N | open PATH N | write SIZE N | getppid N"),
    }
}
