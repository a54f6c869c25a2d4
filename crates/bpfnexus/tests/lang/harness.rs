//! Shared by `tests/lang.rs` and `tests/differential.rs`: reading the
//! directive header of a `.bt` test, building the deterministic workload,
//! running bpfnexus (and bpftrace) on a case, and matching output.
//!
//! Each of the two test binaries uses a different part of this module, so
//! dead-code warnings are silenced here rather than duplicating the code.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The bpfnexus binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bpfnexus");

/// Where the `.bt` cases live.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lang")
}

/// One `.bt` test case and its directives.
///
/// Directives are `// KEY: value` comment lines anywhere in the file
/// (conventionally at the top); the whole file is the program.
#[derive(Debug, Default)]
pub struct Case {
    /// Path relative to `tests/lang`, e.g. `aggregations.bt`.
    pub name: String,
    pub path: PathBuf,
    /// `RUN:` command-line arguments placed before the program file,
    /// shell-quoted (`-c "/bin/dd if=/dev/zero ..."`, `-f json`).
    /// `{workload}` expands to the path of the built workload binary.
    pub args: Vec<String>,
    /// `PARAMS:` positional parameters placed after the program file
    /// (`$1`, `$2`, ...), shell-quoted; `{workload}` expands too.
    pub params: Vec<String>,
    /// `EXPECT:` and `EXPECT_PATTERN:` lines, in order.
    pub expect: Vec<LineMatch>,
    /// `EXPECT_NONE:` texts that no stdout line may contain.
    pub expect_none: Vec<String>,
    /// The `NAME.out` file next to the case: the exact whole stdout.
    pub expect_exact: Option<String>,
    /// `TIMEOUT:` seconds (default 10).
    pub timeout: Duration,
    /// `EXIT:` the expected exit status of bpfnexus (default 0).
    pub exit: i32,
    /// `BUG:` a known bpfnexus bug this case exposes; the case fails until
    /// it is fixed and the failure message quotes this text.
    pub bug: Option<String>,
    /// `DIFF:` the case also runs in the differential suite, with these
    /// normalisations (`sort-equal`, `shape`, `json`; empty for none).
    pub diff: Option<Vec<String>>,
    /// `DIFF_ONLY:` the case is not a language test (its output is only
    /// meaningful compared with bpftrace's); the value says why.
    pub diff_only: Option<String>,
    /// `BPFTRACE_BUG:` why bpftrace 0.17's output for this case is wrong;
    /// the differential test then only checks that both ran.
    pub bpftrace_bug: Option<String>,
}

/// One expected stdout line.
#[derive(Debug, Clone)]
pub enum LineMatch {
    /// `EXPECT:` the line, exactly.
    Exact(String),
    /// `EXPECT_PATTERN:` a line matching the pattern (see [`pattern_matches`]).
    Pattern(String),
}

impl LineMatch {
    fn matches(&self, line: &str) -> bool {
        match self {
            LineMatch::Exact(want) => line == want,
            LineMatch::Pattern(pattern) => pattern_matches(pattern, line),
        }
    }
}

impl std::fmt::Display for LineMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineMatch::Exact(s) => write!(f, "EXPECT: {s}"),
            LineMatch::Pattern(s) => write!(f, "EXPECT_PATTERN: {s}"),
        }
    }
}

/// Reads `tests/lang/NAME` and its directives.
pub fn load(name: &str) -> Case {
    let path = cases_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading test case {}: {e}", path.display()));
    let mut case = Case {
        name: name.to_string(),
        path: path.clone(),
        timeout: Duration::from_secs(10),
        ..Case::default()
    };
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("// ") else {
            continue;
        };
        let Some((key, value)) = rest.split_once(':') else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        // One space after the colon separates; the rest is kept verbatim so
        // expected lines may start or end with spaces.
        let value = value.strip_prefix(' ').unwrap_or(value);
        let at = || format!("{}:{}", path.display(), n + 1);
        match key {
            "RUN" => case
                .args
                .extend(shell_words(value).unwrap_or_else(|e| panic!("{}: RUN: {e}", at()))),
            "PARAMS" => case
                .params
                .extend(shell_words(value).unwrap_or_else(|e| panic!("{}: PARAMS: {e}", at()))),
            "EXPECT" => case.expect.push(LineMatch::Exact(value.to_string())),
            "EXPECT_PATTERN" => case.expect.push(LineMatch::Pattern(value.to_string())),
            "EXPECT_NONE" => case.expect_none.push(value.to_string()),
            "TIMEOUT" => {
                let secs: u64 = value
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: TIMEOUT wants seconds", at()));
                case.timeout = Duration::from_secs(secs);
            }
            "EXIT" => {
                case.exit = value
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: EXIT wants a number", at()));
            }
            "BUG" => case.bug = Some(value.trim().to_string()),
            "DIFF" => {
                case.diff = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                );
            }
            "DIFF_ONLY" => case.diff_only = Some(value.trim().to_string()),
            "BPFTRACE_BUG" => case.bpftrace_bug = Some(value.trim().to_string()),
            other => panic!("{}: unknown directive `{other}`", at()),
        }
    }
    let out = path.with_extension("out");
    if out.exists() {
        case.expect_exact = Some(
            std::fs::read_to_string(&out)
                .unwrap_or_else(|e| panic!("reading {}: {e}", out.display())),
        );
    }
    if case.expect.is_empty()
        && case.expect_none.is_empty()
        && case.expect_exact.is_none()
        && case.diff_only.is_none()
    {
        panic!(
            "{}: a case needs EXPECT lines or a .out file",
            path.display()
        );
    }
    case
}

/// Every `.bt` file under `tests/lang`, as paths relative to it.
pub fn all_case_names() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "bt") {
                let rel = path.strip_prefix(base).expect("under the base dir");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let base = cases_dir();
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

/// Splits a command line like a POSIX shell does for words: whitespace
/// separates, `'...'` is literal, `"..."` keeps spaces and honours `\"`
/// and `\\`, a backslash outside quotes escapes the next character.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated ' in `{s}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated \" in `{s}`")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated \" in `{s}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(format!("trailing \\ in `{s}`")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Whether `line` matches `pattern`, where `{int}` matches an optionally
/// negative decimal integer, `{hex}` one or more hex digits, `{word}` one
/// or more characters other than whitespace, and `{*}` any text (also
/// none); everything else matches itself. The whole line must match.
pub fn pattern_matches(pattern: &str, line: &str) -> bool {
    #[derive(Debug)]
    enum Tok<'a> {
        Lit(&'a str),
        Int,
        Hex,
        Word,
        Any,
    }
    let mut toks = Vec::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        let next = ["{int}", "{hex}", "{word}", "{*}"]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, *p)))
            .min_by_key(|(i, _)| *i);
        match next {
            Some((i, p)) => {
                if i > 0 {
                    toks.push(Tok::Lit(&rest[..i]));
                }
                toks.push(match p {
                    "{int}" => Tok::Int,
                    "{hex}" => Tok::Hex,
                    "{word}" => Tok::Word,
                    _ => Tok::Any,
                });
                rest = &rest[i + p.len()..];
            }
            None => {
                toks.push(Tok::Lit(rest));
                rest = "";
            }
        }
    }
    fn go(toks: &[Tok<'_>], s: &str) -> bool {
        let Some((tok, more)) = toks.split_first() else {
            return s.is_empty();
        };
        let run = |s: &str, ok: &dyn Fn(char) -> bool, min: usize| -> Vec<usize> {
            // Every prefix length of chars satisfying `ok`, longest first.
            let n = s
                .char_indices()
                .find(|(_, c)| !ok(*c))
                .map_or(s.len(), |(i, _)| i);
            (min..=n).rev().filter(|i| s.is_char_boundary(*i)).collect()
        };
        match tok {
            Tok::Lit(l) => s.strip_prefix(l).is_some_and(|r| go(more, r)),
            Tok::Int => {
                let (sign, body) = match s.strip_prefix('-') {
                    Some(b) => (1, b),
                    None => (0, s),
                };
                run(body, &|c| c.is_ascii_digit(), 1)
                    .into_iter()
                    .any(|n| go(more, &s[sign + n..]))
            }
            Tok::Hex => run(s, &|c| c.is_ascii_hexdigit(), 1)
                .into_iter()
                .any(|n| go(more, &s[n..])),
            Tok::Word => run(s, &|c| !c.is_whitespace(), 1)
                .into_iter()
                .any(|n| go(more, &s[n..])),
            Tok::Any => (0..=s.len())
                .rev()
                .filter(|i| s.is_char_boundary(*i))
                .any(|n| go(more, &s[n..])),
        }
    }
    go(&toks, line)
}

/// Checks `stdout` against the case's expectations; `Err` describes the
/// first mismatch.
pub fn check_stdout(case: &Case, stdout: &str) -> Result<(), String> {
    if let Some(want) = &case.expect_exact {
        // Equal-valued map entries print in hash order; `DIFF: sort-equal`
        // cases compare them sorted (see `sort_equal_values`).
        let sorted = case
            .diff
            .as_ref()
            .is_some_and(|d| d.iter().any(|n| n == "sort-equal"));
        let (want, stdout) = if sorted {
            (sort_equal_values(want), sort_equal_values(stdout))
        } else {
            (want.clone(), stdout.to_string())
        };
        if stdout != want {
            return Err(format!(
                "stdout differs from {}:\n--- expected\n{want}--- actual\n{stdout}---",
                case.path.with_extension("out").display()
            ));
        }
    }
    let lines: Vec<&str> = stdout.lines().collect();
    let mut from = 0;
    for want in &case.expect {
        match lines[from..].iter().position(|l| want.matches(l)) {
            Some(i) => from += i + 1,
            None => {
                return Err(format!(
                    "no stdout line (after line {from}) matches `{want}`; stdout:\n{stdout}"
                ));
            }
        }
    }
    for bad in &case.expect_none {
        if let Some(l) = lines.iter().find(|l| l.contains(bad.as_str())) {
            return Err(format!(
                "stdout line `{l}` contains `{bad}` (EXPECT_NONE); stdout:\n{stdout}"
            ));
        }
    }
    Ok(())
}

/// Sorts each run of consecutive `@map[key]: value` lines that belong to
/// the same map and have the same value. bpftrace and bpfnexus both print
/// a map sorted by value, but entries with equal values come in hash
/// order, which neither promises.
pub fn sort_equal_values(text: &str) -> String {
    fn group(line: &str) -> Option<(&str, &str)> {
        if !line.starts_with('@') {
            return None;
        }
        let (head, value) = line.rsplit_once("]: ")?;
        let name = head.split_once('[')?.0;
        Some((name, value))
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        let Some(key) = group(lines[i].trim_end_matches('\n')) else {
            out.push_str(lines[i]);
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < lines.len() && group(lines[j].trim_end_matches('\n')) == Some(key) {
            j += 1;
        }
        let mut run: Vec<&str> = lines[i..j]
            .iter()
            .map(|l| l.trim_end_matches('\n'))
            .collect();
        let ends_with_newline = lines[j - 1].ends_with('\n');
        run.sort_unstable();
        out.push_str(&run.join("\n"));
        if ends_with_newline {
            out.push('\n');
        }
        i = j;
    }
    out
}

/// The workload binary built from `tests/workload/nexus_workload.rs`.
pub fn workload() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let src =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/nexus_workload.rs");
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lang-workload");
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let out = dir.join("nexus_workload");
            // Both test binaries may build at once, and rustc's intermediate
            // files are named after the crate: build in a private directory,
            // then rename, which replaces the binary atomically.
            let private = dir.join(format!("build-{}", std::process::id()));
            std::fs::create_dir_all(&private)
                .map_err(|e| format!("creating {}: {e}", private.display()))?;
            let tmp = private.join("nexus_workload");
            let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
            let o = Command::new(rustc)
                .args(["--edition", "2021", "-O", "-C", "strip=none", "-o"])
                .arg(&tmp)
                .arg(&src)
                .output()
                .map_err(|e| format!("running rustc: {e}"))?;
            if !o.status.success() {
                return Err(format!(
                    "rustc {} failed: {}",
                    src.display(),
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            std::fs::rename(&tmp, &out).map_err(|e| format!("renaming the workload: {e}"))?;
            let _ = std::fs::remove_dir_all(&private);
            Ok(out)
        })
        .clone()
}

/// A case ready to run: `{workload}` expanded in its arguments, its
/// parameters and its program text (an expanded program is written to a
/// file of its own).
pub struct Prepared {
    pub args: Vec<String>,
    pub file: PathBuf,
    pub params: Vec<String>,
}

/// Expands `{workload}` (building the workload on first use).
pub fn prepare(case: &Case) -> Prepared {
    let text = std::fs::read_to_string(&case.path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", case.path.display()));
    let needs = text.contains("{workload}")
        || case
            .args
            .iter()
            .chain(&case.params)
            .any(|a| a.contains("{workload}"));
    let workload = if needs {
        match workload() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => panic!("{}: building the workload: {e}", case.name),
        }
    } else {
        String::new()
    };
    let expand = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|a| a.replace("{workload}", &workload))
            .collect()
    };
    let file = if text.contains("{workload}") {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lang-programs");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let file = dir.join(case.name.replace('/', "_"));
        std::fs::write(&file, text.replace("{workload}", &workload))
            .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        file
    } else {
        case.path.clone()
    };
    Prepared {
        args: expand(&case.args),
        file,
        params: expand(&case.params),
    }
}

/// What a run printed.
#[derive(Debug)]
pub struct RunOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// Runs `program ARGS... FILE PARAMS...` with stdin closed, interrupting
/// it after `timeout`.
pub fn run(program: &str, p: &Prepared, timeout: Duration) -> RunOutput {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(&p.args)
        .arg(&p.file)
        .args(&p.params)
        // cargo points LD_LIBRARY_PATH into the target dir; the dynamic
        // loader of every -c workload would then probe those paths too.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    // Drain the pipes on threads so a chatty child cannot block on them.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut s);
        s
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("waiting for the child") {
            Some(status) => break status,
            None if start.elapsed() > timeout => {
                timed_out = true;
                // SIGINT first, like a user's Ctrl-C, so END runs; then kill.
                let _ = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status();
                std::thread::sleep(Duration::from_secs(2));
                if child.try_wait().expect("waiting for the child").is_none() {
                    let _ = child.kill();
                }
                break child.wait().expect("waiting for the child");
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let stdout = String::from_utf8_lossy(&out_t.join().expect("stdout reader")).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().expect("stderr reader")).into_owned();
    RunOutput {
        status: status.code(),
        stdout,
        stderr,
        timed_out,
        elapsed: start.elapsed(),
    }
}

/// Whether BPF programs can be loaded here; the reason when not.
pub fn kernel() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let o = Command::new(BIN)
                .args(["--dry-run", "-e", "BEGIN { exit(); }"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running {BIN}: {e}"))?;
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "loading a BEGIN program failed (exit {:?}): {}",
                    o.status.code(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        })
        .clone()
}

/// True when a kernel test may run; prints why not otherwise, or panics
/// when `BPFNEXUS_REQUIRE_KERNEL=1`.
pub fn need_kernel(test: &str) -> bool {
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

/// Runs a case on bpfnexus and checks its exit status and stdout.
pub fn run_lang(name: &str) {
    let case = load(name);
    if !need_kernel(name) {
        return;
    }
    let prepared = prepare(&case);
    let o = run(BIN, &prepared, case.timeout);
    let bug = case
        .bug
        .as_ref()
        .map(|b| format!("\nknown bpfnexus bug (this case fails until it is fixed): {b}"))
        .unwrap_or_default();
    let context = format!(
        "{name}: bpfnexus {:?} {} {:?}{bug}\nstderr:\n{}",
        prepared.args,
        prepared.file.display(),
        prepared.params,
        o.stderr
    );
    assert!(
        !o.timed_out,
        "{context}\ntimed out after {:?}; stdout:\n{}",
        case.timeout, o.stdout
    );
    assert_eq!(
        o.status,
        Some(case.exit),
        "{context}\nexit status; stdout:\n{}",
        o.stdout
    );
    if let Err(e) = check_stdout(&case, &o.stdout) {
        panic!("{context}\n{e}");
    }
}
