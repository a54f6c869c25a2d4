//! The shared name tables (builtins, functions, probe providers) and the
//! "did you mean" matcher used by the parser and the compiler alike.

use crate::diag::Diagnostic;
use crate::span::Span;

/// Builtin variables: name → one-line description. `argN`/`sargN` are
/// listed as `arg0`..`arg9` and `sarg0`..`sarg9`; [`is_builtin`] accepts
/// any index.
pub const BUILTINS: &[(&str, &str)] = &[
    ("pid", "process id (kernel tgid)"),
    ("tid", "thread id (kernel pid)"),
    ("uid", "user id"),
    ("gid", "group id"),
    ("comm", "process name (16 bytes)"),
    ("nsecs", "nanosecond timestamp (monotonic)"),
    ("elapsed", "nanoseconds since the program started"),
    ("cpu", "processor id"),
    ("probe", "name of the probe that fired"),
    ("func", "name of the traced function"),
    ("arg0", "1st argument of the traced function"),
    ("arg1", "2nd argument of the traced function"),
    ("arg2", "3rd argument of the traced function"),
    ("arg3", "4th argument of the traced function"),
    ("arg4", "5th argument of the traced function"),
    ("arg5", "6th argument of the traced function"),
    ("arg6", "7th argument of the traced function"),
    ("arg7", "8th argument of the traced function"),
    ("arg8", "9th argument of the traced function"),
    ("arg9", "10th argument of the traced function"),
    ("sarg0", "1st stack argument of the traced function"),
    ("sarg1", "2nd stack argument of the traced function"),
    ("sarg2", "3rd stack argument of the traced function"),
    ("sarg3", "4th stack argument of the traced function"),
    ("sarg4", "5th stack argument of the traced function"),
    ("sarg5", "6th stack argument of the traced function"),
    ("sarg6", "7th stack argument of the traced function"),
    ("sarg7", "8th stack argument of the traced function"),
    ("sarg8", "9th stack argument of the traced function"),
    ("sarg9", "10th stack argument of the traced function"),
    ("retval", "return value of the traced function"),
    ("args", "tracepoint / fentry arguments (struct)"),
    ("cpid", "pid of the child command (-c)"),
    ("curtask", "pointer to the current task_struct"),
    ("cgroup", "cgroup id of the current process"),
    ("rand", "32-bit random number"),
    ("kstack", "kernel stack trace"),
    ("ustack", "user stack trace"),
    ("username", "user name of the current uid"),
    ("ctx", "pointer to the probe context"),
    ("jiffies", "kernel jiffies"),
    ("numaid", "NUMA node id"),
];

/// Functions: name → one-line description (with the call shape).
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("printf", "printf(fmt, ...): print formatted"),
    (
        "print",
        "print(@map [, top [, div]]) or print(value): print",
    ),
    ("time", "time([fmt]): print the current time"),
    (
        "join",
        "join(char *arr[] [, sep]): print an argv-style array",
    ),
    ("str", "str(ptr [, len]): read a NUL-terminated string"),
    (
        "buf",
        "buf(ptr, len): read a byte buffer (printed hex-escaped)",
    ),
    ("ksym", "ksym(addr): kernel symbol of an address"),
    ("usym", "usym(addr): user symbol of an address"),
    ("kaddr", "kaddr(name): kernel address of a symbol"),
    ("uaddr", "uaddr(name): user address of a symbol"),
    ("kstack", "kstack([mode,] [limit]): kernel stack"),
    ("ustack", "ustack([mode,] [limit]): user stack"),
    ("reg", "reg(name): value of a CPU register"),
    ("ntop", "ntop([af,] addr): IP address to text"),
    ("pton", "pton(text): text IP address to bytes"),
    ("system", "system(fmt, ...): run a shell command (unsafe)"),
    ("exit", "exit(): stop tracing"),
    ("cgroupid", "cgroupid(path): cgroup id of a path"),
    (
        "signal",
        "signal(sig): send a signal to the current task (unsafe)",
    ),
    (
        "override",
        "override(rc): override a kprobed function's return (unsafe)",
    ),
    ("sizeof", "sizeof(type or expr): size in bytes"),
    ("offsetof", "offsetof(struct, field): field offset"),
    ("strncmp", "strncmp(a, b, n): compare at most n bytes"),
    (
        "strcontains",
        "strcontains(haystack, needle): substring test",
    ),
    ("cat", "cat(filename): print a file's content"),
    ("macaddr", "macaddr(ptr): MAC address to text"),
    ("path", "path(struct path *): full path"),
    ("strftime", "strftime(fmt, nsecs): format a timestamp"),
    ("bswap", "bswap(int): swap byte order"),
    ("skboutput", "skboutput(path, skb, len, off): write packets"),
    ("count", "count(): count events (aggregation)"),
    ("sum", "sum(int): sum (aggregation)"),
    ("avg", "avg(int): average (aggregation)"),
    ("min", "min(int): minimum (aggregation)"),
    ("max", "max(int): maximum (aggregation)"),
    (
        "stats",
        "stats(int): count, average and total (aggregation)",
    ),
    ("hist", "hist(int): log2 histogram (aggregation)"),
    (
        "lhist",
        "lhist(int, min, max, step): linear histogram (aggregation)",
    ),
    (
        "delete",
        "delete(@map[key]) or delete(@map, key): remove an element",
    ),
    ("clear", "clear(@map): remove every element"),
    ("zero", "zero(@map): zero every value"),
    ("len", "len(@map) or len(ustack): number of elements"),
    ("has_key", "has_key(@map, key): element exists"),
    ("kptr", "kptr(ptr): mark a pointer as kernel memory"),
    ("uptr", "uptr(ptr): mark a pointer as user memory"),
    (
        "cgroup_path",
        "cgroup_path(id [, filter]): cgroup path of an id",
    ),
    ("strerror", "strerror(errno): error name of an errno value"),
    ("debugf", "debugf(fmt, ...): print to the kernel trace pipe"),
];

/// Probe providers: every spelling the parser accepts, with its kind.
pub const PROBE_PROVIDERS: &[(&str, crate::ast::ProbeKind)] = {
    use crate::ast::ProbeKind as K;
    &[
        ("BEGIN", K::Begin),
        ("END", K::End),
        ("tracepoint", K::Tracepoint),
        ("t", K::Tracepoint),
        ("rawtracepoint", K::RawTracepoint),
        ("rt", K::RawTracepoint),
        ("kprobe", K::Kprobe),
        ("k", K::Kprobe),
        ("kretprobe", K::Kretprobe),
        ("kr", K::Kretprobe),
        ("uprobe", K::Uprobe),
        ("u", K::Uprobe),
        ("uretprobe", K::Uretprobe),
        ("ur", K::Uretprobe),
        ("fentry", K::Fentry),
        ("kfunc", K::Fentry),
        ("f", K::Fentry),
        ("fexit", K::Fexit),
        ("kretfunc", K::Fexit),
        ("fr", K::Fexit),
        ("profile", K::Profile),
        ("p", K::Profile),
        ("interval", K::Interval),
        ("i", K::Interval),
        ("software", K::Software),
        ("s", K::Software),
        ("hardware", K::Hardware),
        ("h", K::Hardware),
    ]
};

/// bpftrace probe providers that bpfnexus does not support (so the error
/// says "not supported" rather than "unknown").
pub const UNSUPPORTED_PROVIDERS: &[&str] = &[
    "usdt",
    "U",
    "watchpoint",
    "w",
    "asyncwatchpoint",
    "aw",
    "iter",
    "it",
    "kfunc_module",
    "self",
];

/// The provider for a spelling such as `t` or `kretfunc`.
pub fn probe_kind(name: &str) -> Option<crate::ast::ProbeKind> {
    PROBE_PROVIDERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, k)| k)
}

/// True when `name` is a builtin variable (including any `argN`/`sargN`).
pub fn is_builtin(name: &str) -> bool {
    if BUILTINS.iter().any(|(n, _)| *n == name) {
        return true;
    }
    let digits = name
        .strip_prefix("sarg")
        .or_else(|| name.strip_prefix("arg"));
    digits.is_some_and(|d| !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// True when `name` is a known function.
pub fn is_function(name: &str) -> bool {
    FUNCTIONS.iter().any(|(n, _)| *n == name)
}

/// The one-line description of a builtin or function, if known.
pub fn describe(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .chain(FUNCTIONS)
        .find(|(n, _)| *n == name)
        .map(|&(_, d)| d)
}

/// The error for a bare identifier that is not a builtin, variable, enum
/// value or type, with a "did you mean" over [`BUILTINS`]. The parser
/// accepts any identifier; the compiler's resolver reports this.
pub fn unknown_identifier(name: &str, span: Span) -> Diagnostic {
    let hint = did_you_mean(name, BUILTINS.iter().map(|(n, _)| *n))
        .map(|s| format!("did you mean `{s}`?"));
    Diagnostic::error(span, format!("unknown identifier `{name}`"))
        .with_label("not a builtin")
        .with_hint_opt(hint)
}

/// The error for a call of an unknown function (or of a builtin
/// variable), with a "did you mean" over [`FUNCTIONS`].
pub fn unknown_function(name: &str, span: Span) -> Diagnostic {
    if is_builtin(name) {
        return Diagnostic::error(
            span,
            format!("`{name}` is a builtin variable, not a function"),
        )
        .with_hint(format!("write `{name}` without parentheses"));
    }
    let hint = did_you_mean(name, FUNCTIONS.iter().map(|(n, _)| *n))
        .map(|s| format!("did you mean `{s}`?"));
    Diagnostic::error(span, format!("unknown function `{name}`"))
        .with_label("not a function")
        .with_hint_opt(hint)
}

/// Optimal string alignment distance (Damerau–Levenshtein with adjacent
/// transpositions), on lowercased chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let (n, m) = (a.len(), b.len());
    // Rows i-2, i-1 and i of the DP table.
    let mut prev2 = vec![0usize; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur = vec![0usize; m + 1];
    for i in 1..=n {
        cur[0] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[m]
}

/// The closest candidate to `name` within edit distance 2 (case-insensitive,
/// transpositions count 1), or `None`. Ties go to the earliest candidate.
/// When `name` itself is a candidate there is nothing to suggest. Very short names only
/// match at distance 1 so that `x` does not suggest `pid`.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = if name.chars().count() <= 3 { 1 } else { 2 };
    let mut best: Option<(usize, &'a str)> = None;
    for cand in candidates {
        if cand == name {
            return None;
        }
        let d = edit_distance(name, cand);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, cand));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_transposition_once() {
        assert_eq!(edit_distance("prinft", "printf"), 1);
        assert_eq!(edit_distance("cout", "count"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("PID", "pid"), 0);
    }

    #[test]
    fn suggestions() {
        let funcs = || FUNCTIONS.iter().map(|(n, _)| *n);
        assert_eq!(did_you_mean("prinft", funcs()), Some("printf"));
        assert_eq!(did_you_mean("cout", funcs()), Some("count"));
        assert_eq!(did_you_mean("printf", funcs()), None);
        assert_eq!(did_you_mean("zzzzzzzz", funcs()), None);
        let kinds = PROBE_PROVIDERS.iter().map(|(n, _)| *n);
        assert_eq!(did_you_mean("tracepont", kinds), Some("tracepoint"));
        assert_eq!(
            did_you_mean("Comm", BUILTINS.iter().map(|(n, _)| *n)),
            Some("comm")
        );
    }

    #[test]
    fn unknown_names_suggest_close_matches() {
        let d = unknown_identifier("comn", Span::new(0, 4));
        assert_eq!(d.message, "unknown identifier `comn`");
        assert_eq!(d.hint.as_deref(), Some("did you mean `comm`?"));
        assert_eq!(
            unknown_identifier("retvla", Span::new(0, 6))
                .hint
                .as_deref(),
            Some("did you mean `retval`?")
        );
        assert_eq!(unknown_identifier("zzzzzzzz", Span::new(0, 8)).hint, None);
        assert_eq!(
            unknown_function("nsecs", Span::new(0, 5)).message,
            "`nsecs` is a builtin variable, not a function"
        );
    }

    #[test]
    fn builtin_arg_indexes() {
        assert!(is_builtin("arg0"));
        assert!(is_builtin("arg12"));
        assert!(is_builtin("sarg3"));
        assert!(!is_builtin("arg"));
        assert!(!is_builtin("argx"));
        assert!(!is_builtin("printf"));
    }
}
