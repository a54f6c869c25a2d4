//! The parser never panics and never overflows its stack, whatever the
//! input.

use nexus_lang::{MAX_DEPTH, parse, parse_with_diagnostics, render_all};

use crate::valid::PROGRAMS;

fn parse_and_render(src: &str) {
    let out = parse_with_diagnostics(src);
    // Rendering and printing must not panic either.
    let _ = render_all(&out.diagnostics, "fuzz", src);
    let _ = out.program.to_string();
    let _ = nexus_lang::dump_tree(&out.program);
}

#[test]
fn every_truncation_of_valid_programs_is_handled() {
    for src in PROGRAMS {
        for (end, _) in src.char_indices() {
            parse_and_render(&src[..end]);
            parse_and_render(&src[end..]);
        }
    }
}

/// A small deterministic generator so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn arbitrary_bytes_and_token_soup_are_handled() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let alphabet: &[&str] = &[
        "BEGIN",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "/",
        "*",
        "-",
        "+",
        "++",
        "--",
        ";",
        ",",
        ":",
        "?",
        "$x",
        "@m",
        "@",
        "1",
        "0x",
        "\"",
        "\\",
        "if",
        "else",
        "while",
        "unroll",
        "for",
        "delete",
        "printf",
        "(struct a *)",
        "->",
        ".",
        "=",
        "==",
        "t:a:b",
        "uprobe:/x:y",
        "&&",
        "!",
        "$1",
        "#",
        "/*",
        "//",
        "\n",
        " ",
        "é",
        "\t",
        "struct",
        "return",
    ];
    for _ in 0..3000 {
        let len = (rng.next() % 40) as usize;
        let soup: String = (0..len)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(if rng.next().is_multiple_of(2) {
                " "
            } else {
                ""
            });
        parse_and_render(&soup);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() % 256) as u8).collect();
        parse_and_render(&String::from_utf8_lossy(&bytes));
    }
}

fn assert_depth_error(src: &str) {
    let Err(diags) = parse(src) else {
        panic!("deep nesting must be rejected")
    };
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains(&format!("{MAX_DEPTH}"))),
        "no depth diagnostic: {:?}",
        diags.first()
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // The default test-thread size (2 MiB): enough for MAX_DEPTH in
    // unoptimised builds; optimised builds need about half.
    let worker = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(deep_nesting_cases)
        .map(std::thread::JoinHandle::join);
    match worker {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => panic!("cannot spawn the test thread: {e}"),
    }
}

fn deep_nesting_cases() {
    let n = 10_000;
    let parens = format!("BEGIN {{ $x = {}1{} }}", "(".repeat(n), ")".repeat(n));
    assert_depth_error(&parens);
    let unclosed = format!("BEGIN {{ $x = {}", "(".repeat(n));
    assert_depth_error(&unclosed);
    let blocks = format!("BEGIN {}{}", "{".repeat(n), "}".repeat(n));
    assert_depth_error(&blocks);
    let unary = format!("BEGIN {{ $x = {}1 }}", "- ".repeat(n));
    assert_depth_error(&unary);
    let nots = format!("BEGIN {{ $x = {}1 }}", "!".repeat(n));
    assert_depth_error(&nots);
    let ternary = format!("BEGIN {{ $x = {}1 }}", "1 ? 1 : ".repeat(n));
    assert_depth_error(&ternary);
    let sum = format!("BEGIN {{ $x = 1{} }}", " + 1".repeat(n));
    assert_depth_error(&sum);
    let fields = format!("BEGIN {{ $x = $y{} }}", ".a".repeat(n));
    assert_depth_error(&fields);
    let ifs = format!("BEGIN {{ {}{} }}", "if (1) { ".repeat(n), "}".repeat(n));
    assert_depth_error(&ifs);
    let casts = format!("BEGIN {{ $x = {}1 }}", "(uint8)".repeat(n));
    assert_depth_error(&casts);
    let calls = format!("BEGIN {{ $x = {}1{} }}", "str(".repeat(n), ")".repeat(n));
    assert_depth_error(&calls);
    let keys = format!("BEGIN {{ $x = {}1{} }}", "@m[".repeat(n), "]".repeat(n));
    assert_depth_error(&keys);
}

#[test]
fn nesting_within_the_limit_parses() {
    let depth = MAX_DEPTH / 4;
    let src = format!(
        "BEGIN {{ $x = {}1{} }}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    assert!(parse(&src).is_ok());
    let sum = format!("BEGIN {{ $x = 1{} }}", " + 1".repeat(depth));
    assert!(parse(&sum).is_ok());
}
