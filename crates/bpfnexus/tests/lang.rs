//! Language tests: every `tests/lang/**/*.bt` program runs on the real
//! kernel through the `bpfnexus` binary, and its stdout is checked against
//! the directives in its header (see `docs/testing.md`).
//!
//! Kernel tests print why they skip when BPF cannot be loaded here; with
//! `BPFNEXUS_REQUIRE_KERNEL=1` a skip is a failure.

#[path = "lang/harness.rs"]
mod harness;

/// One `#[test]` per case, so cases run in parallel and fail separately.
macro_rules! lang_tests {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                harness::run_lang($file);
            }
        )*

        /// Every case file is listed above (a new file cannot be forgotten),
        /// and every listed file exists.
        #[test]
        fn every_case_file_is_listed() {
            let listed: Vec<&str> = vec![$($file),*];
            let on_disk = harness::all_case_names();
            for file in &on_disk {
                let case = harness::load(file);
                if case.diff_only.is_none() {
                    assert!(
                        listed.contains(&file.as_str()),
                        "{file} is not listed in tests/lang.rs"
                    );
                }
            }
            for file in &listed {
                assert!(
                    on_disk.iter().any(|f| f == file),
                    "{file} is listed in tests/lang.rs but does not exist"
                );
            }
        }
    };
}

lang_tests! {
    aggregations => "aggregations.bt",
    args_dot => "args_dot.bt",
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
    rawtracepoint => "rawtracepoint.bt",
    scope_exact => "scope_exact.bt",
    scope_exec_event => "scope_exec_event.bt",
    strings => "strings.bt",
    tracepoint_wildcard => "tracepoint_wildcard.bt",
    uprobe_binary => "uprobe_binary.bt",
    uprobe_libc => "uprobe_libc.bt",
    uprobe_positional => "uprobe_positional.bt",
    uretprobe_signed => "uretprobe_signed.bt",
    variables_casts => "variables_casts.bt",
    tutorial_lesson02_hello_world => "tutorial/lesson02_hello_world.bt",
    tutorial_lesson03_file_opens => "tutorial/lesson03_file_opens.bt",
    tutorial_lesson03_file_opens_args_dot => "tutorial/lesson03_file_opens_args_dot.bt",
    tutorial_lesson04_syscalls_by_process => "tutorial/lesson04_syscalls_by_process.bt",
    tutorial_lesson05_read_bytes_hist => "tutorial/lesson05_read_bytes_hist.bt",
    tutorial_lesson06_read_bytes_lhist => "tutorial/lesson06_read_bytes_lhist.bt",
    tutorial_lesson07_read_latency => "tutorial/lesson07_read_latency.bt",
    tutorial_lesson08_sched_events => "tutorial/lesson08_sched_events.bt",
    tutorial_lesson09_profile_kstack => "tutorial/lesson09_profile_kstack.bt",
    tutorial_lesson10_sched_kstack => "tutorial/lesson10_sched_kstack.bt",
    tutorial_lesson12_kernel_struct => "tutorial/lesson12_kernel_struct.bt",
}

#[test]
fn patterns_match_whole_lines() {
    use harness::pattern_matches as m;
    assert!(m("@x: {int}", "@x: 42"));
    assert!(m("@x: {int}", "@x: -42"));
    assert!(!m("@x: {int}", "@x: 42 "));
    assert!(!m("@x: {int}", "@x: "));
    assert!(m("{word} opened {*}", "cat opened /etc/hostname"));
    assert!(m("{*}", ""));
    assert!(m("0x{hex}", "0xdeadBEEF"));
    assert!(!m("0x{hex}", "0xg"));
    assert!(m("[{int}, {int}) {*}", "[4, 8)   1 |@@|"));
}

#[test]
fn shell_words_split_like_a_shell() {
    let w = harness::shell_words(r#"-c "/bin/dd if=/dev/zero" -f json 'a b' c\ d"#).unwrap();
    assert_eq!(
        w,
        ["-c", "/bin/dd if=/dev/zero", "-f", "json", "a b", "c d"]
    );
    assert!(harness::shell_words("\"open").is_err());
}
