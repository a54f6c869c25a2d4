//! Differential tests: the `tests/lang` cases marked `// DIFF:` (among
//! them the bpftrace one-liner tutorial lessons this kernel can run) run
//! on bpftrace 0.17 and on bpfnexus with the same workload, and what both
//! print must agree after the normalisations documented in
//! `docs/testing.md`.
//!
//! Without bpftrace installed every test here prints why it skips and
//! passes (even with `BPFNEXUS_REQUIRE_KERNEL=1`: bpftrace is a peer, not
//! part of bpfnexus).

#[path = "lang/harness.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Whether bpftrace runs here; why not otherwise.
fn bpftrace() -> Result<(), String> {
    static FOUND: OnceLock<Result<(), String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let o = Command::new("bpftrace")
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("bpftrace is not installed ({e})"))?;
            if o.status.success() {
                Ok(())
            } else {
                Err("`bpftrace --version` failed".to_string())
            }
        })
        .clone()
}

/// True when both tools can run; prints why not otherwise.
fn need_both(test: &str) -> bool {
    if let Err(why) = bpftrace() {
        eprintln!("skipping {test}: {why}");
        return false;
    }
    harness::need_kernel(test)
}

/// Drops everything up to the `Attaching N probes...` line: bpftrace
/// prints warnings and the line itself, which we do not compare.
fn after_attaching(stdout: &str) -> String {
    let mut out = String::new();
    let mut seen = false;
    for line in stdout.split_inclusive('\n') {
        if seen {
            out.push_str(line);
        } else if line.starts_with("Attaching ") {
            seen = true;
        }
    }
    if seen { out } else { stdout.to_string() }
}

/// The shape of a text output: map names, key kinds (`INT` or `STR` per
/// key part), stack frames as `FRAME`, histogram bars as `BAR` and every
/// number as `#`; one entry per distinct line, sorted. Used for
/// system-wide one-liners whose keys and counts differ between runs.
fn shape(stdout: &str) -> Vec<String> {
    let mut shapes = std::collections::BTreeSet::new();
    for line in stdout.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let mut line = line.to_string();
        if line.starts_with('@') {
            if let (Some(open), Some(close)) = (line.find('['), line.rfind("]:"))
                && open < close
            {
                let kinds: Vec<&str> = line[open + 1..close]
                    .split(", ")
                    .map(|k| {
                        if k.parse::<i64>().is_ok() {
                            "INT"
                        } else {
                            "STR"
                        }
                    })
                    .collect();
                line = format!(
                    "{}[{}]{}",
                    &line[..open],
                    kinds.join(", "),
                    &line[close + 1..]
                );
            }
        } else if line.starts_with("    ") && line.trim().contains('+') {
            line = "    FRAME".to_string();
        }
        if let (Some(bar), Some(end)) = (line.find('|'), line.rfind('|'))
            && bar < end
        {
            line = format!("{}|BAR|", &line[..bar]);
        }
        // Bucket labels and counts: numbers (with K/M/G suffixes) become #,
        // and runs of spaces one space, since column widths follow them.
        let mut out = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                    chars.next();
                }
                if chars
                    .peek()
                    .is_some_and(|c| matches!(c, 'K' | 'M' | 'G' | 'T' | 'P' | 'E'))
                {
                    chars.next();
                }
                out.push('#');
            } else if c == ' ' {
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        shapes.insert(out);
    }
    shapes.into_iter().collect()
}

/// JSON Lines reduced to what bpftrace prints: blank lines dropped (bpftrace
/// 0.17 prints two), bpfnexus's `run_stats` record dropped, and of every
/// record only `type` and `data` kept (bpfnexus adds probe, timestamp,
/// pid, ... to printf records).
fn json_records(stdout: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON: `{line}`: {e}"))?;
        if v["type"] == "run_stats" {
            continue;
        }
        out.push(serde_json::json!({"type": v["type"], "data": v["data"]}));
    }
    Ok(out)
}

fn run_differential(name: &str) {
    let case = harness::load(name);
    let Some(normalisations) = case.diff.clone() else {
        panic!("{name} has no DIFF directive");
    };
    if !need_both(name) {
        return;
    }
    let prepared = harness::prepare(&case);
    let (theirs, ours) = std::thread::scope(|s| {
        let theirs = s.spawn(|| harness::run("bpftrace", &prepared, case.timeout));
        let ours = s.spawn(|| harness::run(harness::BIN, &prepared, case.timeout));
        (
            theirs.join().expect("bpftrace runner"),
            ours.join().expect("bpfnexus runner"),
        )
    });
    let bug = case
        .bug
        .as_ref()
        .map(|b| format!("\nknown bpfnexus bug (this case fails until it is fixed): {b}"))
        .unwrap_or_default();
    let context = format!(
        "{name}: {:?} {} {:?}{bug}\n--- bpftrace (exit {:?}) stdout:\n{}--- stderr:\n{}\n--- bpfnexus (exit {:?}) stdout:\n{}--- stderr:\n{}",
        prepared.args,
        prepared.file.display(),
        prepared.params,
        theirs.status,
        theirs.stdout,
        theirs.stderr,
        ours.status,
        ours.stdout,
        ours.stderr,
    );
    assert!(
        theirs.status == Some(0) && !theirs.timed_out,
        "bpftrace failed on a differential case\n{context}"
    );
    assert!(
        ours.status == Some(0) && !ours.timed_out,
        "bpfnexus failed where bpftrace ran\n{context}"
    );
    if let Some(why) = &case.bpftrace_bug {
        eprintln!(
            "{name}: both ran; output not compared because bpftrace 0.17 is wrong here: {why}"
        );
        return;
    }
    let (theirs, ours) = (
        after_attaching(&theirs.stdout),
        after_attaching(&ours.stdout),
    );
    let mut normalised = (theirs.clone(), ours.clone());
    for n in &normalisations {
        match n.as_str() {
            "sort-equal" => {
                normalised = (
                    harness::sort_equal_values(&normalised.0),
                    harness::sort_equal_values(&normalised.1),
                );
            }
            "shape" | "shape-optional" => {
                let (a, b) = (shape(&normalised.0), shape(&normalised.1));
                if n == "shape-optional" && (a.is_empty() || b.is_empty()) {
                    eprintln!("{name}: one side saw no events; shapes not compared");
                    return;
                }
                assert_eq!(
                    a, b,
                    "output shapes differ (left bpftrace, right bpfnexus)\n{context}"
                );
                return;
            }
            "json" => {
                let a = json_records(&normalised.0)
                    .unwrap_or_else(|e| panic!("bpftrace: {e}\n{context}"));
                let b = json_records(&normalised.1)
                    .unwrap_or_else(|e| panic!("bpfnexus: {e}\n{context}"));
                assert_eq!(
                    a, b,
                    "JSON records differ (left bpftrace, right bpfnexus)\n{context}"
                );
                return;
            }
            other => panic!("{name}: unknown DIFF normalisation `{other}`"),
        }
    }
    assert_eq!(
        normalised.0, normalised.1,
        "outputs differ (left bpftrace, right bpfnexus)\n{context}"
    );
}

/// One `#[test]` per differential case.
macro_rules! differential_tests {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                run_differential($file);
            }
        )*

        /// Every case with a DIFF directive is listed above, and only those.
        #[test]
        fn every_diff_case_is_listed() {
            let listed: Vec<&str> = vec![$($file),*];
            for file in harness::all_case_names() {
                let case = harness::load(&file);
                assert_eq!(
                    case.diff.is_some(),
                    listed.contains(&file.as_str()),
                    "{file}: a DIFF directive and a listing in tests/differential.rs go together"
                );
            }
        }
    };
}

differential_tests! {
    aggregations => "aggregations.bt",
    begin_end => "begin_end.bt",
    builtins => "builtins.bt",
    control_flow => "control_flow.bt",
    dd_syscalls => "dd_syscalls.bt",
    exit_read_aggregations => "exit_read_aggregations.bt",
    exit_then_statement => "exit_then_statement.bt",
    hist_lhist => "hist_lhist.bt",
    interval_exit => "interval_exit.bt",
    interval_once => "interval_once.bt",
    json_output => "json_output.bt",
    kstack_limit => "kstack_limit.bt",
    maps => "maps.bt",
    never_fired => "never_fired.bt",
    openat_str => "openat_str.bt",
    predicates => "predicates.bt",
    printf_conversions => "printf_conversions.bt",
    profile => "profile.bt",
    scope_exact => "scope_exact.bt",
    strings => "strings.bt",
    tracepoint_wildcard => "tracepoint_wildcard.bt",
    uprobe_binary => "uprobe_binary.bt",
    uprobe_libc => "uprobe_libc.bt",
    uprobe_positional => "uprobe_positional.bt",
    uretprobe_signed => "uretprobe_signed.bt",
    variables_casts => "variables_casts.bt",
    tutorial_lesson02_hello_world => "tutorial/lesson02_hello_world.bt",
    tutorial_lesson03_file_opens => "tutorial/lesson03_file_opens.bt",
    tutorial_lesson04_syscalls_by_process => "tutorial/lesson04_syscalls_by_process.bt",
    tutorial_lesson05_read_bytes_hist => "tutorial/lesson05_read_bytes_hist.bt",
    tutorial_lesson06_read_bytes_lhist => "tutorial/lesson06_read_bytes_lhist.bt",
    tutorial_lesson07_read_latency => "tutorial/lesson07_read_latency.bt",
    tutorial_lesson08_sched_events => "tutorial/lesson08_sched_events.bt",
    tutorial_lesson09_profile_kstack => "tutorial/lesson09_profile_kstack.bt",
    tutorial_lesson10_sched_kstack => "tutorial/lesson10_sched_kstack.bt",
    tutorial_lesson11_block_io => "tutorial/lesson11_block_io.bt",
    tutorial_lesson12_kernel_struct => "tutorial/lesson12_kernel_struct.bt",
}

/// Tutorial lesson 1 (Listing Probes): both list the same syscall
/// tracepoints.
#[test]
fn tutorial_lesson01_listing_probes() {
    if !need_both("tutorial_lesson01_listing_probes") {
        return;
    }
    let list = |program: &str| -> Vec<String> {
        let o = Command::new(program)
            .args(["-l", "tracepoint:syscalls:sys_enter_*"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            o.status.success(),
            "{program} -l failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let (theirs, ours) = (list("bpftrace"), list(harness::BIN));
    assert!(
        theirs.len() > 100,
        "bpftrace listed only {} probes",
        theirs.len()
    );
    assert_eq!(
        theirs, ours,
        "probe lists differ (left bpftrace, right bpfnexus)"
    );
}

#[test]
fn shape_keeps_names_and_key_kinds() {
    let a = shape("@[bash]: 12\n@[sshd]: 3\n\n@h: \n[4, 8)   1 |@@@ |\n[1K, 2K)   10 |@@@@@@@@|\n");
    let b = shape("@[cargo]: 7\n@h: \n[16, 32)  22 |@@@@@@@|\n");
    assert_eq!(a, b);
    assert_ne!(shape("@[12]: 1\n"), shape("@[bash]: 1\n"));
    assert_eq!(
        shape("@[\n    schedule+35\n]: 2\n"),
        vec![" FRAME", "@[", "]: #"]
    );
}

#[test]
fn sort_equal_only_reorders_equal_values_of_one_map() {
    let s = harness::sort_equal_values("@a[b]: 1\n@a[a]: 1\n@a[c]: 2\n@b[z]: 2\n");
    assert_eq!(s, "@a[a]: 1\n@a[b]: 1\n@a[c]: 2\n@b[z]: 2\n");
}
