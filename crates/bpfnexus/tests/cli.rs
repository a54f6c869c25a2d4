//! The `bpfnexus` binary, run as a user runs it.
//!
//! Tests that need the kernel (root or CAP_BPF, tracefs) print why they
//! skip; with `BPFNEXUS_REQUIRE_KERNEL=1` a skip is a failure.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bpfnexus");

fn bpfnexus(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running the bpfnexus binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run `bpfnexus vm exec` with `bytecode` (hex text) on stdin.
fn vm_exec(bytecode: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(["vm", "exec"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running bpfnexus vm exec");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(bytecode)
        .expect("writing bytecode");
    child.wait_with_output().expect("waiting for vm exec")
}

/// Run the binary and require exit status 0 (showing stderr when not).
fn bpfnexus_ok(args: &[&str]) -> Output {
    let o = bpfnexus(args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    o
}

/// Whether BPF programs can be loaded here; the reason when not.
fn kernel() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let o = bpfnexus(&["--dry-run", "-e", "BEGIN { exit(); }"]);
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "loading a BEGIN program failed (exit {:?}): {}",
                    o.status.code(),
                    stderr(&o).trim()
                ))
            }
        })
        .clone()
}

/// True when the kernel test may run; prints why not otherwise.
fn need_kernel(test: &str) -> bool {
    match kernel() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var_os("BPFNEXUS_REQUIRE_KERNEL").is_some_and(|v| v == "1") {
                panic!("{test}: BPFNEXUS_REQUIRE_KERNEL=1 but {why}");
            }
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

#[test]
fn no_program_is_a_usage_error() {
    let o = bpfnexus(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no program"), "{}", stderr(&o));
}

#[test]
fn unknown_option_is_a_usage_error() {
    let o = bpfnexus(&["--no-such-option"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--no-such-option"), "{}", stderr(&o));
}

#[test]
fn missing_program_file_is_a_usage_error() {
    let o = bpfnexus(&["/nonexistent/prog.bt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/prog.bt"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn compile_error_shows_line_caret_and_hint() {
    let o = bpfnexus(&["-e", "BEGIN { prinft(\"x\"); }"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.starts_with("stdin:1:9"), "{err}");
    assert!(err.contains("BEGIN { prinft(\"x\"); }"), "{err}");
    assert!(err.contains("        ~~~~~~"), "{err}");
    assert!(err.contains("did you mean `printf`"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn compile_error_in_a_file_names_the_file() {
    let dir = std::env::temp_dir().join(format!("bpfnexus-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.bt");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(b"BEGIN {\n  @x = cuont();\n}\n"))
        .expect("writing the program");
    let path = path.to_string_lossy().into_owned();
    let o = bpfnexus(&[&path]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!("{path}:2:")),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vm_exec_prints_r0() {
    let o = vm_exec(b"b7 00 00 00 2a 00 00 00 95 00 00 00 00 00 00 00");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0x2a\n");
}

#[test]
fn vm_exec_reports_bad_bytecode() {
    let o = vm_exec(b"zz");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("vm exec"), "{}", stderr(&o));
}

#[test]
fn emit_ast_prints_the_tree() {
    let o = bpfnexus_ok(&["--emit", "ast", "-e", "BEGIN { exit(); }"]);
    assert!(stdout(&o).contains("BEGIN"), "{}", stdout(&o));
}

#[test]
fn lists_tracepoints_and_their_fields() {
    if !need_kernel("lists_tracepoints_and_their_fields") {
        return;
    }
    let o = bpfnexus_ok(&["-l", "tracepoint:syscalls:sys_enter_open*"]);
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l == "tracepoint:syscalls:sys_enter_openat"),
        "{out}"
    );
    assert!(
        out.lines()
            .all(|l| l.starts_with("tracepoint:syscalls:sys_enter_open"))
    );
    let o = bpfnexus(&["-lv", "tracepoint:syscalls:sys_enter_openat"]);
    assert!(
        stdout(&o).contains("\n    const char * filename\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn dry_run_of_a_valid_program_exits_zero() {
    if !need_kernel("dry_run_of_a_valid_program_exits_zero") {
        return;
    }
    let o = bpfnexus_ok(&[
        "--dry-run",
        "-e",
        "tracepoint:syscalls:sys_enter_read { @[comm] = count(); }",
    ]);
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
}

#[test]
fn begin_printf_and_exit() {
    if !need_kernel("begin_printf_and_exit") {
        return;
    }
    let o = bpfnexus_ok(&["-e", "BEGIN { printf(\"hello\\n\"); exit(); }"]);
    assert!(
        stdout(&o).starts_with("Attaching 1 probe...\nhello\n"),
        "{}",
        stdout(&o)
    );
}

/// Parse `@[KEY]: N` lines.
fn counts(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("@[")?;
            let (key, n) = rest.split_once("]: ")?;
            Some((key.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn command_is_traced_alone() {
    if !need_kernel("command_is_traced_alone") {
        return;
    }
    // Another process reading at the same time must not be counted.
    let mut noise = Command::new("/usr/bin/head")
        .args(["-c", "100000000000", "/dev/zero"])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting a background reader");
    let o = bpfnexus(&[
        "-c",
        "/bin/dd if=/dev/zero of=/dev/null bs=1 count=1000",
        "-e",
        "tracepoint:syscalls:sys_enter_read { @[comm] = count(); }",
    ]);
    let _ = noise.kill();
    let _ = noise.wait();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c = counts(&stdout(&o));
    let dd = c.iter().find(|(k, _)| k == "dd").map_or(0, |(_, n)| *n);
    assert!(dd >= 1000, "{}", stdout(&o));
    // Only the command (and its held, pre-exec self) may appear.
    assert!(
        c.iter().all(|(k, _)| k == "dd" || k == "bpfnexus"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn interval_probe_ends_the_run() {
    if !need_kernel("interval_probe_ends_the_run") {
        return;
    }
    let start = Instant::now();
    let o = bpfnexus_ok(&["-e", "interval:ms:100 { exit(); }"]);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(stdout(&o).starts_with("Attaching 1 probe...\n"));
}

#[test]
fn sigint_prints_maps_and_exits_zero() {
    if !need_kernel("sigint_prints_maps_and_exits_zero") {
        return;
    }
    let child = Command::new(BIN)
        .args([
            "-e",
            "tracepoint:raw_syscalls:sys_enter { @calls = count(); } END { printf(\"end\\n\"); }",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting bpfnexus");
    std::thread::sleep(Duration::from_millis(700));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let o = child.wait_with_output().expect("waiting for bpfnexus");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("end\n"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("@calls: ")), "{out}");
}

#[test]
fn json_output_is_json_lines() {
    if !need_kernel("json_output_is_json_lines") {
        return;
    }
    let o = bpfnexus_ok(&[
        "-f",
        "json",
        "-e",
        "BEGIN { printf(\"n=%d\\n\", 7); @m[\"k\"] = count(); exit(); }",
    ]);
    let records: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let types: Vec<&str> = records.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(
        types,
        vec!["attached_probes", "printf", "map", "run_stats"],
        "{}",
        stdout(&o)
    );
    assert_eq!(records[1]["data"], "n=7\n");
    assert_eq!(records[2]["data"]["@m"]["k"], 1);
    assert_eq!(records[3]["data"]["lost_events"], 0);
}

#[test]
fn output_file_receives_the_output() {
    if !need_kernel("output_file_receives_the_output") {
        return;
    }
    let path = std::env::temp_dir().join(format!("bpfnexus-out-{}.txt", std::process::id()));
    let p = path.to_string_lossy().into_owned();
    let o = bpfnexus_ok(&["-o", &p, "-e", "BEGIN { printf(\"to file\\n\"); exit(); }"]);
    assert!(o.stdout.is_empty());
    let text = std::fs::read_to_string(&path).expect("reading the output file");
    assert!(
        text.starts_with("Attaching 1 probe...\nto file\n"),
        "{text}"
    );
    let _ = std::fs::remove_file(&path);
}
