//! Malformed programs, each with the exact first diagnostic it must
//! produce: message, `line:col[-col]`, and hint.

use nexus_lang::{Diagnostic, MAX_ERRORS, parse, parse_with_diagnostics};

struct Case {
    src: &'static str,
    location: &'static str,
    message: &'static str,
    hint: Option<&'static str>,
}

const fn case(
    src: &'static str,
    location: &'static str,
    message: &'static str,
    hint: Option<&'static str>,
) -> Case {
    Case {
        src,
        location,
        message,
        hint,
    }
}

const DID_YOU_MEAN_PRINTF: Option<&str> = Some("did you mean `printf`?");
const USE_EQ: Option<&str> = Some("use `==` to compare");

/// One case per error kind of the lexer, the attach-point parser and the
/// statement/expression parser.
const CASES: &[Case] = &[
    // ---- lexer ----
    case(
        "BEGIN { /* open",
        "1:9-11",
        "unterminated comment",
        Some("close the comment with `*/`"),
    ),
    case(
        "BEGIN { $x = 1 # 2 }",
        "1:16-17",
        "invalid character `#`",
        Some("preprocessor lines (`#include`) are only allowed before the first probe"),
    ),
    case("BEGIN { $x = ` }", "1:14-15", "invalid character ```", None),
    case(
        "BEGIN { $ = 1 }",
        "1:9-10",
        "expected a variable name after `$`",
        Some("scratch variables look like `$name`"),
    ),
    case(
        "BEGIN { $x = $0 }",
        "1:14-16",
        "invalid positional parameter `$0`",
        Some("positional parameters are `$1`, `$2`, ... and `$#`"),
    ),
    case(
        "BEGIN { $x = 12ab }",
        "1:14-18",
        "invalid integer literal `12ab`",
        None,
    ),
    case(
        "BEGIN { $x = 18446744073709551616 }",
        "1:14-34",
        "integer literal `18446744073709551616` does not fit in 64 bits",
        None,
    ),
    case(
        "BEGIN { $x = 1e30 }",
        "1:14-18",
        "integer literal `1e30` does not fit in 64 bits",
        None,
    ),
    case(
        "BEGIN { $x = 09 }",
        "1:14-16",
        "invalid digit in octal literal `09`",
        None,
    ),
    case(
        "BEGIN { printf(\"abc",
        "1:16-20",
        "unterminated string",
        Some("close the string with `\"`"),
    ),
    case(
        "BEGIN { printf(\"abc\n\"); }",
        "1:16-20",
        "unterminated string",
        Some("strings cannot span lines; use `\\n` for a newline"),
    ),
    case(
        "BEGIN { printf(\"\\q\"); }",
        "1:17-19",
        "invalid escape `\\q`",
        Some("valid escapes: \\n \\t \\r \\\" \\\\ \\NNN (octal) \\xNN (hex)"),
    ),
    case(
        "BEGIN { printf(\"\\xg\"); }",
        "1:17-19",
        "`\\x` escape needs hex digits",
        Some("write a byte as `\\x41`"),
    ),
    case(
        "BEGIN { printf(\"\\400\"); }",
        "1:17-21",
        "octal escape `\\400` is out of range",
        Some("octal escapes go up to `\\377`"),
    ),
    case(
        "BEGIN { printf(\"\\xff\"); }",
        "1:17-21",
        "byte escape `\\xff` above 0x7f is not supported",
        Some("string literals are UTF-8; write the character itself"),
    ),
    // ---- attach points ----
    case(
        "tracepont:syscalls:sys_enter_read { }",
        "1:1-10",
        "unknown probe type `tracepont`",
        Some("did you mean `tracepoint`?"),
    ),
    case(
        "begin { }",
        "1:1-6",
        "unknown probe type `begin`",
        Some("did you mean `BEGIN`?"),
    ),
    case("zzzzzz:a { }", "1:1-7", "unknown probe type `zzzzzz`", None),
    case(
        "usdt:/bin/x:probe { }",
        "1:1-5",
        "`usdt` probes are not supported",
        Some(
            "supported: tracepoint, rawtracepoint, kprobe, uprobe, fentry, profile, interval, software, hardware, BEGIN, END",
        ),
    ),
    case(
        "struct foo { int x; }; BEGIN { }",
        "1:1-7",
        "`struct` definitions are not supported",
        Some("types come from the kernel's BTF; no C definitions are needed"),
    ),
    case(
        "BEGIN:x { }",
        "1:1-8",
        "BEGIN takes no arguments",
        Some("write `BEGIN` alone"),
    ),
    case(
        "tracepoint:sys_enter_read { }",
        "1:1-26",
        "malformed tracepoint attach point",
        Some("write `tracepoint:CATEGORY:EVENT`"),
    ),
    case(
        "tracepoint::sys_enter_read { }",
        "1:12",
        "missing tracepoint category",
        None,
    ),
    case(
        "tracepoint:syscalls:sys_enter_read! { }",
        "1:35-36",
        "invalid character `!` in tracepoint event",
        None,
    ),
    case(
        "kprobe:f+zz { }",
        "1:10-12",
        "invalid offset `zz`",
        Some("an offset is a decimal or 0x hex byte count"),
    ),
    case(
        "kretprobe:f+8 { }",
        "1:1-14",
        "kretprobe does not take an offset",
        Some("only kprobe and uprobe attach at an offset"),
    ),
    case(
        "uretprobe:/bin/sh:main+8 { }",
        "1:1-25",
        "uretprobe does not take an offset",
        Some("only kprobe and uprobe attach at an offset"),
    ),
    case(
        "uprobe::main { }",
        "1:8",
        "missing binary path",
        Some("give an absolute path or a library name such as `libc`"),
    ),
    case(
        "uprobe:/bin/sh:0xzz { }",
        "1:16-20",
        "invalid address `0xzz`: expected an integer",
        None,
    ),
    case(
        "profile:hx:99 { }",
        "1:9-11",
        "unknown profile unit `hx`",
        Some("did you mean `hz`?"),
    ),
    case(
        "interval:s:0 { }",
        "1:12-13",
        "interval rate must be greater than zero",
        None,
    ),
    case(
        "interval:s:x { }",
        "1:12-13",
        "invalid rate `x`: expected an integer",
        None,
    ),
    case(
        "software:cpu-clock:x { }",
        "1:20-21",
        "invalid period `x`: expected an integer",
        None,
    ),
    case(
        "{ exit(); }",
        "1:1-2",
        "expected an attach point, found `{`",
        Some(
            "a probe starts with an attach point such as `BEGIN` or `tracepoint:syscalls:sys_enter_read`",
        ),
    ),
    case(
        "BEGIN END { }",
        "1:7-10",
        "expected `{` or a predicate `/.../` after the attach point, found identifier `END`",
        Some("separate several attach points with `,`"),
    ),
    case(
        "BEGIN /1 { }",
        "1:10-11",
        "expected `/` to end the predicate, found `{`",
        None,
    ),
    case(
        "BEGIN /1/ ; }",
        "1:11-12",
        "expected `{` after the predicate, found `;`",
        None,
    ),
    // ---- statements ----
    case(
        "BEGIN { exit();",
        "1:16",
        "expected `}`, found end of input",
        None,
    ),
    case(
        "BEGIN { $x = 1 $y = 2 }",
        "1:16-18",
        "expected `;` or `}` after the statement, found variable `$y`",
        Some("separate statements with `;`"),
    ),
    case(
        "BEGIN { else { } }",
        "1:9-13",
        "`else` without a preceding `if`",
        Some("`else` must directly follow the `}` of an `if` block"),
    ),
    case(
        "BEGIN { 1 = 2 }",
        "1:11-12",
        "cannot assign to this expression",
        Some("only `$variables` and `@maps` can be assigned"),
    ),
    case(
        "BEGIN { $t = (1, 2); $t.0 = 5 }",
        "1:22-26",
        "tuples cannot be modified",
        Some("create a new tuple and assign it instead"),
    ),
    case(
        "BEGIN { if 1 { } }",
        "1:12-13",
        "expected `(` after `if`, found integer `1`",
        Some("write `if (...) { ... }`"),
    ),
    case(
        "BEGIN { if ($x = 1) { } }",
        "1:16-17",
        "expected `)`, found `=`",
        USE_EQ,
    ),
    case(
        "BEGIN { while (1) exit() }",
        "1:19-23",
        "expected `{` after `while`, found identifier `exit`",
        Some("the body must be a block in braces"),
    ),
    case(
        "BEGIN { unroll (0) { } }",
        "1:17-18",
        "unroll count must be between 1 and 100",
        None,
    ),
    case(
        "BEGIN { unroll ($x) { } }",
        "1:17-19",
        "unroll count must be an integer literal or a positional parameter",
        Some("use `while` for a loop bounded at run time"),
    ),
    case(
        "BEGIN { for (@m : @n) { } }",
        "1:14-16",
        "expected a `$variable` after `for (`, found map `@m`",
        Some("write `for ($kv : @map) { ... }`"),
    ),
    case(
        "BEGIN { for ($kv : $m) { } }",
        "1:20-22",
        "expected a map after `:`, found variable `$m`",
        Some("write `for ($kv : @map) { ... }`"),
    ),
    case(
        "BEGIN { for ($kv : @m[1]) { } }",
        "1:22-23",
        "a `for` loop iterates a whole map, not an element",
        Some("remove the `[...]`"),
    ),
    case(
        "BEGIN { for $kv : @m { } }",
        "1:13-16",
        "expected `(` after `for`, found variable `$kv`",
        None,
    ),
    case(
        "BEGIN { delete($x) }",
        "1:16-18",
        "`delete` needs a map, found variable `$x`",
        Some("write `delete(@map[key])` or `delete(@map, key)`"),
    ),
    case(
        "BEGIN { delete(@m + 1) }",
        "1:16-22",
        "`delete` needs a map element",
        Some("write `delete(@map[key])` or `delete(@map, key)`"),
    ),
    case(
        "BEGIN { delete(@m[1], 2) }",
        "1:23-24",
        "`delete` got two keys",
        Some("write `delete(@map[key])` or `delete(@map, key)`, not both"),
    ),
    case(
        "BEGIN { delete(@m, 1, 2) }",
        "1:21-22",
        "expected `)` to close `delete(`, found `,`",
        Some("`delete` takes a map element, or a map and one key"),
    ),
    // ---- expressions ----
    case(
        "BEGIN { $x = (1 + 2 }",
        "1:21-22",
        "expected `)`, found `}`",
        None,
    ),
    case(
        "BEGIN { $x = 1 + ; }",
        "1:18-19",
        "expected an expression, found `;`",
        None,
    ),
    case(
        "BEGIN { $x = 1 ? 2 ; }",
        "1:20-21",
        "expected `:` of the `?:` operator, found `;`",
        None,
    ),
    case(
        "BEGIN { $x = 5++ }",
        "1:15-17",
        "`++` needs a variable or a map",
        Some("only `$variables` and `@maps` can be incremented or decremented"),
    ),
    case(
        "BEGIN { --comm }",
        "1:9-11",
        "`--` needs a variable or a map",
        Some("only `$variables` and `@maps` can be incremented or decremented"),
    ),
    case(
        "BEGIN { $x = (struct 5)0 }",
        "1:22-23",
        "expected a struct name, found integer `5`",
        None,
    ),
    case(
        "BEGIN { $x = (struct a[b])0 }",
        "1:24-25",
        "expected an array length, found identifier `b`",
        None,
    ),
    case(
        "BEGIN { $x = (struct a b)0 }",
        "1:24-25",
        "expected `)` to end the cast type, found identifier `b`",
        None,
    ),
    case(
        "BEGIN { $x = args->5 }",
        "1:20-21",
        "expected a field name after `->`, found integer `5`",
        None,
    ),
    case(
        "BEGIN { $x = while }",
        "1:14-19",
        "unexpected keyword `while` in an expression",
        None,
    ),
    case(
        "BEGIN { @m[] = 1 }",
        "1:11-13",
        "empty map key",
        Some("write `@m[key]`, or `@m` for a map without keys"),
    ),
    case(
        "BEGIN { prinft(\"hi\"); }",
        "1:9-15",
        "unknown function `prinft`",
        DID_YOU_MEAN_PRINTF,
    ),
    case(
        "BEGIN { @x = cout(); }",
        "1:14-18",
        "unknown function `cout`",
        Some("did you mean `count`?"),
    ),
    case(
        "BEGIN { @x = frobnicate(); }",
        "1:14-24",
        "unknown function `frobnicate`",
        None,
    ),
    case(
        "BEGIN { @x = pid(); }",
        "1:14-17",
        "`pid` is a builtin variable, not a function",
        Some("write `pid` without parentheses"),
    ),
    case(
        "BEGIN { print(@x, ) }",
        "1:19-20",
        "expected an expression, found `)`",
        None,
    ),
    case(
        "BEGIN { @x[1 = 2 }",
        "1:14-15",
        "expected `,` or `]`, found `=`",
        None,
    ),
];

fn first_error(src: &str) -> Diagnostic {
    match parse(src) {
        Ok(p) => panic!("expected an error for {src:?}, parsed:\n{p}"),
        Err(diags) => diags
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no diagnostic for {src:?}")),
    }
}

#[test]
fn every_error_kind_has_its_diagnostic() {
    let mut failures = Vec::new();
    for c in CASES {
        let d = first_error(c.src);
        let got = (d.location(c.src), d.message.as_str(), d.hint.as_deref());
        let want = (c.location.to_string(), c.message, c.hint);
        if got != want {
            failures.push(format!("{:?}\n   got: {got:?}\n  want: {want:?}", c.src));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn unclosed_block_notes_where_it_opened() {
    let d = first_error("BEGIN {\n  if (1) {\n    exit();\n");
    assert_eq!(d.message, "expected `}`, found end of input");
    assert_eq!(d.label.as_deref(), Some("unclosed block"));
    assert_eq!(
        d.notes,
        vec!["the block opened at 2:10 is not closed".to_string()]
    );
}

#[test]
fn unknown_probe_type_without_suggestion_lists_the_types() {
    let d = first_error("zzzzzz:a { }");
    assert_eq!(d.notes.len(), 1);
    assert!(d.notes[0].starts_with("probe types: BEGIN, END, tracepoint"));
}

#[test]
fn recovery_reports_several_errors_in_one_run() {
    let src = "BEGIN {\n  prinft(\"a\");\n  $x = ;\n  @y = cout();\n  exit()\n}\ntracepont:a:b { @z = 1 }\nEND { $q = 1 $r = 2 }\n";
    let Err(diags) = parse(src) else {
        panic!("must fail")
    };
    let got: Vec<(String, &str)> = diags
        .iter()
        .map(|d| (d.location(src), d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("2:3-9".to_string(), "unknown function `prinft`"),
            ("3:8-9".to_string(), "expected an expression, found `;`"),
            ("4:8-12".to_string(), "unknown function `cout`"),
            ("7:1-10".to_string(), "unknown probe type `tracepont`"),
            (
                "8:14-16".to_string(),
                "expected `;` or `}` after the statement, found variable `$r`"
            ),
        ]
    );
    // The good parts survive in the partial AST.
    let out = parse_with_diagnostics(src);
    assert_eq!(out.program.probes.len(), 2, "BEGIN and END are kept");
}

#[test]
fn errors_are_capped() {
    let src: String = (0..50)
        .map(|i| format!("BEGIN {{ prinft({i}); }}\n"))
        .collect();
    let Err(diags) = parse(&src) else {
        panic!("must fail")
    };
    assert_eq!(diags.len(), MAX_ERRORS);
}

#[test]
fn rendered_error_has_header_source_underline_and_hint() {
    let src = "BEGIN { prinft(\"hi\"); }";
    let d = first_error(src);
    assert_eq!(
        d.render("stdin", src),
        "stdin:1:9-15: error: unknown function `prinft`\n\
         BEGIN { prinft(\"hi\"); }\n        ~~~~~~ not a function\n\
         hint: did you mean `printf`?\n"
    );
}
