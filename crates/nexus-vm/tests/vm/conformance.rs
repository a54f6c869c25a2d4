//! Conformance in the bpf_conformance format: `-- asm` (or `-- raw`),
//! optional `-- mem`, and `-- result` (or `-- error`) sections, each program
//! encoded to bytecode and run through `exec_hex`, as `bpfnexus vm exec`
//! runs it. A built-in set of cases always runs; set
//! `BPF_CONFORMANCE_DIR` to a checkout's `tests/` directory to run the
//! whole suite (its files are not vendored here).

use crate::asm::assemble;
use nexus_vm::exec_hex;

#[derive(Debug, PartialEq)]
enum Outcome {
    Pass,
    /// Uses something the VM deliberately does not support (e.g. callx).
    Unsupported(String),
    Fail(String),
}

fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- ") {
            out.push((name.trim().to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x} ")).collect()
}

/// Run one test file's text.
fn run_case(text: &str) -> Outcome {
    let secs = sections(text);
    let get = |n: &str| secs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let program_hex = if let Some(asm) = get("asm") {
        if asm.lines().any(|l| l.trim_start().starts_with("call %")) {
            return Outcome::Unsupported(
                "callx (call by register) is not part of the VM's ISA".into(),
            );
        }
        match assemble(asm) {
            Ok(p) => hex_of(&nexus_insn::encode(&p)),
            Err(e) => return Outcome::Unsupported(format!("assembler: {e}")),
        }
    } else if let Some(raw) = get("raw") {
        // Raw sections list 64-bit words, one instruction per line.
        let mut bytes = Vec::new();
        for w in raw.split_whitespace() {
            let Ok(v) = u64::from_str_radix(w.trim_start_matches("0x"), 16) else {
                return Outcome::Fail(format!("bad raw word {w}"));
            };
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        hex_of(&bytes)
    } else {
        return Outcome::Unsupported("no asm or raw section".into());
    };
    let mem = get("mem").unwrap_or("");
    let got = exec_hex(&program_hex, mem);
    match (get("result"), got) {
        (Some(want), Ok(r)) => {
            let w = want.trim();
            let want = match w.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => w.parse::<i64>().ok().map(|v| v as u64),
            };
            match want {
                Some(v) if v == r => Outcome::Pass,
                Some(v) => Outcome::Fail(format!("r0 = {r:#x}, expected {v:#x}")),
                None => Outcome::Fail(format!("unreadable result `{w}`")),
            }
        }
        (Some(_), Err(e)) => Outcome::Fail(format!("error: {e}")),
        (None, Err(_)) if get("error").is_some() => Outcome::Pass,
        (None, Ok(r)) if get("error").is_some() => {
            Outcome::Fail(format!("expected an error, got r0 = {r:#x}"))
        }
        (None, _) => Outcome::Unsupported("no result section".into()),
    }
}

/// Cases written for this crate in the suite's format.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "mod32 by zero",
        "-- asm\nlddw %r0, 0x100000007\nmov %r1, 0\nmod32 %r0, %r1\nexit\n-- result\n0x7\n",
    ),
    (
        "sdiv overflow",
        "-- asm\nlddw %r0, 0x8000000000000000\nsdiv %r0, -1\nexit\n-- result\n0x8000000000000000\n",
    ),
    (
        "smod negative",
        "-- asm\nmov %r0, -7\nsmod %r0, 3\nexit\n-- result\n0xffffffffffffffff\n",
    ),
    (
        "be16 from mem",
        "-- asm\nldxh %r0, [%r1]\nbe16 %r0\nexit\n-- mem\n11 22\n-- result\n0x1122\n",
    ),
    (
        "le32 truncates",
        "-- asm\nlddw %r0, 0x1122334455667788\nle32 %r0\nexit\n-- result\n0x55667788\n",
    ),
    (
        "jslt32 uses bit 31",
        "-- asm\nmov %r0, 1\nmov32 %r1, 0x80000000\njslt32 %r1, 0, L1\nmov %r0, 0\nL1:\nexit\n-- result\n0x1\n",
    ),
    (
        "ldxsh from stack",
        "-- asm\nsth [%r10-2], 0x8001\nldxsh %r0, [%r10-2]\nexit\n-- result\n0xffffffffffff8001\n",
    ),
    (
        "fetch or32",
        "-- asm\nstdw [%r10-8], 0\nmov %r1, 5\nlock fetch or32 [%r10-8], %r1\nldxdw %r0, [%r10-8]\nlsh %r0, 8\nor %r0, %r1\nexit\n-- result\n0x500\n",
    ),
    (
        "local call",
        "-- asm\nmov %r1, 4\ncall local sq\nadd %r0, 1\nexit\nsq:\nmov %r0, %r1\nmul %r0, %r1\nexit\n-- result\n0x11\n",
    ),
    (
        "gotol",
        "-- asm\nmov %r0, 3\nja32 L1\nmov %r0, 4\nL1:\nexit\n-- result\n0x3\n",
    ),
    (
        "mem write through r1",
        "-- asm\nstb [%r1+1], 0x7f\nldxh %r0, [%r1]\nexit\n-- mem\n01 00\n-- result\n0x7f01\n",
    ),
    (
        "r2 is the mem length",
        "-- asm\nmov %r0, %r2\nexit\n-- mem\n00 00 00\n-- result\n0x3\n",
    ),
    (
        "out of bounds is an error",
        "-- asm\nldxdw %r0, [%r1]\nexit\n-- mem\n00\n-- error\nout of bounds\n",
    ),
    (
        "r10 write is an error",
        "-- asm\nmov %r10, 0\nexit\n-- error\nr10\n",
    ),
];

#[test]
fn built_in_cases() {
    for (name, text) in BUILT_IN {
        assert_eq!(run_case(text), Outcome::Pass, "{name}");
    }
}

#[test]
fn bpf_conformance_suite_when_available() {
    let Ok(dir) = std::env::var("BPF_CONFORMANCE_DIR") else {
        eprintln!("BPF_CONFORMANCE_DIR not set: only the built-in conformance cases ran");
        return;
    };
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    entries.sort();
    let (mut pass, mut unsupported, mut failures) = (0, Vec::new(), Vec::new());
    for path in &entries {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match run_case(&text) {
            Outcome::Pass => pass += 1,
            Outcome::Unsupported(why) => unsupported.push(format!("{name}: {why}")),
            Outcome::Fail(why) => failures.push(format!("{name}: {why}")),
        }
    }
    eprintln!(
        "bpf_conformance: {pass} passed, {} unsupported, {} failed",
        unsupported.len(),
        failures.len()
    );
    for u in &unsupported {
        eprintln!("  unsupported {u}");
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
    assert!(pass > 0, "no test files found in {dir}");
}
