//! bpftrace's `printf` format strings: parsed once at startup into pieces,
//! checked against the argument types at compile time ([`check_format`]),
//! then rendered per event into a reused buffer ([`ParsedFormat::format`])
//! with C `printf` semantics as glibc implements them.
//!
//! # What is accepted
//!
//! Conversions `%s %d %i %u %x %X %o %c %p` and bpftrace's buffer conversions
//! `%r` (printable ASCII kept, other bytes `\xNN`), `%rx` (every byte `\xNN`)
//! and `%rh` (bytes as space-separated hex pairs); length modifiers
//! `hh h l ll j z t` on the integer conversions; a width; a precision; flags
//! `- 0 + #`. bpftrace 0.17 itself recognises only the `-` flag (and `0` as
//! a leading width digit) and not `%i`; we accept the rest as an extension,
//! so every format bpftrace accepts prints identically here. The C space
//! flag is deliberately not accepted: bpftrace prints `100% done` verbatim,
//! and reading `% d` as a conversion would break such programs.
//!
//! Integer arguments travel as 64-bit values, as in bpftrace, and are
//! truncated to the conversion's C type: `%d` and `%x` print the low 32 bits,
//! `%hhu` the low 8, `%ld`/`%lld`/`%lx` all 64.
//!
//! # Escapes and `%%`
//!
//! Backslash escapes (`\n`, `\t`, `\x01`, …) are processed by the parser
//! (nexus-lang) when it reads the string literal; this module sees the bytes
//! they produced and never interprets a backslash.
//!
//! `%%` follows bpftrace 0.17 exactly: bpftrace hands the text up to and
//! including each conversion to `snprintf` and prints the text after the
//! last conversion verbatim, so `%%` becomes `%` only where a conversion
//! follows it later in the string (`printf("100%%\n")` prints `100%%`). A `%`
//! that starts no valid conversion is printed as is.

use crate::text;
use crate::value::Value;

/// What the compiler knows about one printf argument, for [`check_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// Integers and pointers.
    Integer,
    /// Strings and everything bpftrace prints as one: `ksym`, `usym`,
    /// `kstack`, `ustack`, `probe`, `username`, `inet`, `strftime`, `cgroup_path`,
    /// `strerror`, `macaddr`.
    String,
    /// `buf()` buffers (only `%r`, `%rx`, `%rh`).
    Buffer,
    /// Anything else (tuples, records, arrays, maps…), by its type name.
    Other(&'static str),
}

impl ArgKind {
    fn name(self) -> &'static str {
        match self {
            ArgKind::Integer => "integer",
            ArgKind::String => "string",
            ArgKind::Buffer => "buffer",
            ArgKind::Other(name) => name,
        }
    }
}

/// A format string that does not fit its arguments. Messages read like
/// bpftrace's (the compiler prefixes the function name, e.g. `printf: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer arguments than conversions.
    #[error("Not enough arguments for format string ({supplied} supplied, {expected} expected)")]
    NotEnoughArguments {
        /// Arguments given.
        supplied: usize,
        /// Conversions in the format.
        expected: usize,
    },
    /// More arguments than conversions.
    #[error("Too many arguments for format string ({supplied} supplied, {expected} expected)")]
    TooManyArguments {
        /// Arguments given.
        supplied: usize,
        /// Conversions in the format.
        expected: usize,
    },
    /// An argument's type does not suit its conversion.
    #[error("%{conversion} specifier expects a value of type {expected} ({supplied} supplied)")]
    TypeMismatch {
        /// Zero-based argument index.
        index: usize,
        /// The conversion as written, without `%`, flags, width or precision
        /// (e.g. `llx`), as bpftrace reports it.
        conversion: String,
        /// The kind the conversion needs.
        expected: &'static str,
        /// The kind supplied.
        supplied: &'static str,
    },
}

/// C length modifier of an integer conversion: how many bits of the 64-bit
/// argument the conversion reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    /// `hh`: char.
    Char,
    /// `h`: short.
    Short,
    /// none: int.
    Int,
    /// `l`, `ll`, `j`, `z`, `t`: 64 bits on x86_64.
    Long,
}

impl Length {
    fn bits(self) -> u32 {
        match self {
            Length::Char => 8,
            Length::Short => 16,
            Length::Int => 32,
            Length::Long => 64,
        }
    }
}

/// The conversion character(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conv {
    Signed,
    Unsigned,
    Octal,
    HexLower,
    HexUpper,
    Char,
    Pointer,
    Str,
    /// `%r`, `%rx`, `%rh`.
    Buf(text::BufStyle),
}

/// One parsed conversion specification.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    alt: bool,
    width: usize,
    precision: Option<usize>,
    length: Length,
    conv: Conv,
    /// Length letters + conversion letters as written (`llx`), for messages.
    token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Conversion(Spec),
}

/// A parsed format string, ready to render events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFormat {
    source: String,
    pieces: Vec<Piece>,
    conversions: usize,
}

/// Parses `fmt` and checks it against the kinds of its arguments, as
/// bpftrace's semantic analyser does: the number of conversions must equal
/// the number of arguments, `%s` takes strings (and symbols, stacks…),
/// `%r*` takes buffers, every other conversion takes integers.
pub fn check_format(fmt: &str, args: &[ArgKind]) -> Result<ParsedFormat, FormatError> {
    let parsed = ParsedFormat::parse(fmt);
    let expected = parsed.conversions;
    if args.len() < expected {
        return Err(FormatError::NotEnoughArguments {
            supplied: args.len(),
            expected,
        });
    }
    if args.len() > expected {
        return Err(FormatError::TooManyArguments {
            supplied: args.len(),
            expected,
        });
    }
    for (index, (spec, &arg)) in parsed.specs().zip(args).enumerate() {
        let wanted = match spec.conv {
            Conv::Str => ArgKind::String,
            Conv::Buf(_) => ArgKind::Buffer,
            _ => ArgKind::Integer,
        };
        if arg != wanted {
            return Err(FormatError::TypeMismatch {
                index,
                conversion: spec.token.clone(),
                expected: wanted.name(),
                supplied: arg.name(),
            });
        }
    }
    Ok(parsed)
}

impl ParsedFormat {
    /// Parses a format string without checking arguments. Never fails: a `%`
    /// that starts no valid conversion is literal text.
    pub fn parse(fmt: &str) -> Self {
        let bytes = fmt.as_bytes();
        // Pieces with `%%` kept apart, so their rendering can be decided once
        // the position of the last conversion is known.
        enum Raw {
            Text(usize, usize),
            Percent,
            Conv(Spec),
        }
        let mut raw = Vec::new();
        let mut i = 0;
        let mut text_start = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' {
                i += 1;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'%') {
                raw.push(Raw::Text(text_start, i));
                raw.push(Raw::Percent);
                i += 2;
                text_start = i;
                continue;
            }
            match parse_spec(&bytes[i + 1..]) {
                Some((spec, used)) => {
                    raw.push(Raw::Text(text_start, i));
                    raw.push(Raw::Conv(spec));
                    i += 1 + used;
                    text_start = i;
                }
                None => i += 1,
            }
        }
        raw.push(Raw::Text(text_start, bytes.len()));

        let last_conv = raw.iter().rposition(|r| matches!(r, Raw::Conv(_)));
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut conversions = 0;
        for (idx, r) in raw.into_iter().enumerate() {
            match r {
                Raw::Text(a, b) => literal.extend_from_slice(&bytes[a..b]),
                Raw::Percent => {
                    // snprintf collapses `%%` only in text it formats, i.e.
                    // text before the last conversion.
                    if last_conv.is_some_and(|last| idx < last) {
                        literal.push(b'%');
                    } else {
                        literal.extend_from_slice(b"%%");
                    }
                }
                Raw::Conv(spec) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Conversion(spec));
                    conversions += 1;
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        ParsedFormat {
            source: fmt.to_owned(),
            pieces,
            conversions,
        }
    }

    /// The format string as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of conversions, i.e. of arguments expected.
    pub fn conversions(&self) -> usize {
        self.conversions
    }

    fn specs(&self) -> impl Iterator<Item = &Spec> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Conversion(spec) => Some(spec),
            Piece::Literal(_) => None,
        })
    }

    /// Appends the formatted text to `out` (which the caller reuses across
    /// events, so rendering does not allocate once it has grown).
    ///
    /// Arguments whose kind does not suit their conversion (which
    /// [`check_format`] rejects at compile time) are rendered as text rather
    /// than failing; only a wrong argument count is an error.
    pub fn format(&self, args: &[Value], out: &mut Vec<u8>) -> Result<(), FormatError> {
        if args.len() != self.conversions {
            return Err(if args.len() < self.conversions {
                FormatError::NotEnoughArguments {
                    supplied: args.len(),
                    expected: self.conversions,
                }
            } else {
                FormatError::TooManyArguments {
                    supplied: args.len(),
                    expected: self.conversions,
                }
            });
        }
        let mut args = args.iter();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.extend_from_slice(bytes),
                Piece::Conversion(spec) => {
                    // The count was checked above, so this always yields.
                    if let Some(arg) = args.next() {
                        format_one(spec, arg, out);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Parses the text after a `%`; returns the spec and the bytes consumed.
fn parse_spec(s: &[u8]) -> Option<(Spec, usize)> {
    let mut i = 0;
    let (mut left, mut zero, mut plus, mut alt) = (false, false, false, false);
    while let Some(&c) = s.get(i) {
        match c {
            b'-' => left = true,
            b'0' => zero = true,
            b'+' => plus = true,
            b'#' => alt = true,
            _ => break,
        }
        i += 1;
    }
    let mut width = 0usize;
    while let Some(d) = s.get(i).filter(|c| c.is_ascii_digit()) {
        width = width
            .saturating_mul(10)
            .saturating_add(usize::from(d - b'0'));
        i += 1;
    }
    let mut precision = None;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let mut p = 0usize;
        while let Some(d) = s.get(i).filter(|c| c.is_ascii_digit()) {
            p = p.saturating_mul(10).saturating_add(usize::from(d - b'0'));
            i += 1;
        }
        precision = Some(p);
    }
    let token_start = i;
    let rest = &s[i..];
    let (length, len_bytes) = if rest.starts_with(b"hh") {
        (Some(Length::Char), 2)
    } else if rest.starts_with(b"ll") {
        (Some(Length::Long), 2)
    } else {
        match rest.first() {
            Some(b'h') => (Some(Length::Short), 1),
            Some(b'l' | b'j' | b'z' | b't') => (Some(Length::Long), 1),
            _ => (None, 0),
        }
    };
    i += len_bytes;
    let conv_char = *s.get(i)?;
    i += 1;
    let conv = match conv_char {
        b'd' | b'i' => Conv::Signed,
        b'u' => Conv::Unsigned,
        b'o' => Conv::Octal,
        b'x' => Conv::HexLower,
        b'X' => Conv::HexUpper,
        b'p' => Conv::Pointer,
        b'c' if length.is_none() => Conv::Char,
        b's' if length.is_none() => Conv::Str,
        b'r' if length.is_none() => match s.get(i) {
            Some(b'x') => {
                i += 1;
                Conv::Buf(text::BufStyle::EscapeAll)
            }
            Some(b'h') => {
                i += 1;
                Conv::Buf(text::BufStyle::HexPairs)
            }
            _ => Conv::Buf(text::BufStyle::KeepAscii),
        },
        _ => return None,
    };
    let token = String::from_utf8_lossy(&s[token_start..i]).into_owned();
    let spec = Spec {
        left,
        zero,
        plus,
        alt,
        width,
        precision,
        length: length.unwrap_or(Length::Int),
        conv,
        token,
    };
    Some((spec, i))
}

fn format_one(spec: &Spec, arg: &Value, out: &mut Vec<u8>) {
    match spec.conv {
        Conv::Str | Conv::Buf(_) => {
            let start = out.len();
            match (spec.conv, arg) {
                (Conv::Buf(style), Value::Buf(bytes)) => text::write_buf(out, bytes, style),
                _ => text::write_value(out, arg, text::PRINTF_STACK_INDENT),
            }
            // The argument text was appended at `start`; apply precision and
            // width to it in place.
            let mut len = out.len() - start;
            if let Some(p) = spec.precision
                && p < len
            {
                out.truncate(start + p);
                len = p;
            }
            pad_in_place(out, start, len, spec.width, spec.left);
        }
        Conv::Char => {
            let byte = arg.as_raw_u64().unwrap_or(0) as u8;
            let pad = spec.width.saturating_sub(1);
            if !spec.left {
                out.resize(out.len() + pad, b' ');
            }
            // bpftrace prints snprintf's buffer as a C string, so a NUL
            // character ends this conversion's output.
            if byte == 0 {
                return;
            }
            out.push(byte);
            if spec.left {
                out.resize(out.len() + pad, b' ');
            }
        }
        _ => match arg.as_raw_u64() {
            Some(raw) => format_integer(spec, raw, out),
            None => {
                let start = out.len();
                text::write_value(out, arg, text::PRINTF_STACK_INDENT);
                let len = out.len() - start;
                pad_in_place(out, start, len, spec.width, spec.left);
            }
        },
    }
}

/// Pads the `len` bytes at `out[start..]` with spaces to `width`.
fn pad_in_place(out: &mut Vec<u8>, start: usize, len: usize, width: usize, left: bool) {
    if width <= len {
        return;
    }
    let pad = width - len;
    if left {
        out.resize(out.len() + pad, b' ');
    } else {
        out.splice(start..start, std::iter::repeat_n(b' ', pad));
    }
}

fn format_integer(spec: &Spec, raw: u64, out: &mut Vec<u8>) {
    let bits = if spec.conv == Conv::Pointer {
        64
    } else {
        spec.length.bits()
    };
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let unsigned = raw & mask;

    if spec.conv == Conv::Pointer && unsigned == 0 {
        // glibc prints a null pointer as "(nil)", padded like a string.
        let start = out.len();
        out.extend_from_slice(b"(nil)");
        pad_in_place(out, start, 5, spec.width, spec.left);
        return;
    }

    let mut sign: &[u8] = b"";
    let magnitude = match spec.conv {
        Conv::Signed => {
            // Sign-extend the truncated value to get the C int's value.
            let shift = 64 - bits;
            let signed = ((unsigned << shift) as i64) >> shift;
            if signed < 0 {
                sign = b"-";
            } else if spec.plus {
                sign = b"+";
            }
            signed.unsigned_abs()
        }
        _ => unsigned,
    };

    let mut digits_buf = [0u8; 24];
    let (base, upper) = match spec.conv {
        Conv::Octal => (8, false),
        Conv::HexLower | Conv::Pointer => (16, false),
        Conv::HexUpper => (16, true),
        _ => (10, false),
    };
    let mut n = digits_buf.len();
    let mut v = magnitude;
    // C prints no digits for a zero value with an explicit zero precision.
    if !(v == 0 && spec.precision == Some(0)) {
        loop {
            n -= 1;
            let d = (v % base) as u8;
            digits_buf[n] = match d {
                0..=9 => b'0' + d,
                _ if upper => b'A' + d - 10,
                _ => b'a' + d - 10,
            };
            v /= base;
            if v == 0 {
                break;
            }
        }
    }
    let digits = &digits_buf[n..];

    let mut zeros = spec.precision.map_or(0, |p| p.saturating_sub(digits.len()));
    let prefix: &[u8] = match spec.conv {
        Conv::Pointer => b"0x",
        Conv::HexLower if spec.alt && magnitude != 0 => b"0x",
        Conv::HexUpper if spec.alt && magnitude != 0 => b"0X",
        Conv::Octal if spec.alt && zeros == 0 && digits.first() != Some(&b'0') => b"0",
        _ => sign,
    };

    let body = prefix.len() + zeros + digits.len();
    let pad = spec.width.saturating_sub(body);
    if spec.left {
        out.extend_from_slice(prefix);
        out.resize(out.len() + zeros, b'0');
        out.extend_from_slice(digits);
        out.resize(out.len() + pad, b' ');
    } else if spec.zero && spec.precision.is_none() {
        zeros += pad;
        out.extend_from_slice(prefix);
        out.resize(out.len() + zeros, b'0');
        out.extend_from_slice(digits);
    } else {
        out.resize(out.len() + pad, b' ');
        out.extend_from_slice(prefix);
        out.resize(out.len() + zeros, b'0');
        out.extend_from_slice(digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(fmt: &str, args: &[Value]) -> String {
        let mut out = Vec::new();
        ParsedFormat::parse(fmt).format(args, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn flags_bpftrace_does_not_parse_follow_glibc() {
        // Expected strings from glibc's printf on this machine.
        let cases: &[(&str, Value, &str)] = &[
            ("[%05s]", Value::str("ab"), "[   ab]"),
            ("[%05c]", Value::i64(99), "[    c]"),
            ("[%-05d]", Value::i64(42), "[42   ]"),
            ("[%.0d]", Value::i64(0), "[]"),
            ("[%#o]", Value::i64(8), "[010]"),
            ("[%#x]", Value::i64(255), "[0xff]"),
            ("[%#.0o]", Value::i64(0), "[0]"),
            ("[%+5d]", Value::i64(3), "[   +3]"),
            ("[%.3x]", Value::i64(10), "[00a]"),
            ("[%08.3d]", Value::i64(7), "[     007]"),
            ("[%20p]", Value::u64(0), "[               (nil)]"),
            ("[%-8p]", Value::u64(16), "[0x10    ]"),
            ("[%020p]", Value::u64(0xbeef), "[0x00000000000000beef]"),
            ("[%.0x]", Value::i64(0), "[]"),
            ("[%i]", Value::i64(-3), "[-3]"),
        ];
        for (fmt, arg, want) in cases {
            assert_eq!(
                render(fmt, std::slice::from_ref(arg)),
                *want,
                "format {fmt}"
            );
        }
    }

    #[test]
    fn percent_percent_follows_bpftrace() {
        assert_eq!(render("100%%\n", &[]), "100%%\n");
        assert_eq!(render("100%% [%d%%]\n", &[Value::i64(5)]), "100% [5%%]\n");
        assert_eq!(render("%d%%%d", &[Value::i64(1), Value::i64(2)]), "1%2");
        // A `%` that starts no conversion is literal, and so is `% d`.
        assert_eq!(render("50% off %q", &[]), "50% off %q");
        assert_eq!(render("100% done %d", &[Value::i64(1)]), "100% done 1");
    }

    #[test]
    fn nul_char_ends_the_conversion() {
        assert_eq!(render("a%cb", &[Value::i64(0)]), "ab");
        assert_eq!(render("[%3c]", &[Value::i64(0)]), "[  ]");
    }

    #[test]
    fn check_format_reports_like_bpftrace() {
        let err = check_format("%d %s", &[ArgKind::Integer]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Not enough arguments for format string (1 supplied, 2 expected)"
        );
        let err = check_format("%d", &[ArgKind::Integer, ArgKind::Integer]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Too many arguments for format string (2 supplied, 1 expected)"
        );
        let err = check_format("%-5llx", &[ArgKind::String]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "%llx specifier expects a value of type integer (string supplied)"
        );
        let err = check_format("%s", &[ArgKind::Other("tuple")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "%s specifier expects a value of type string (tuple supplied)"
        );
        let err = check_format("%r", &[ArgKind::String]).unwrap_err();
        assert!(matches!(err, FormatError::TypeMismatch { index: 0, .. }));
        let ok = check_format(
            "%s %rx %lu %c %p",
            &[
                ArgKind::String,
                ArgKind::Buffer,
                ArgKind::Integer,
                ArgKind::Integer,
                ArgKind::Integer,
            ],
        )
        .unwrap();
        assert_eq!(ok.conversions(), 5);
        assert_eq!(ok.source(), "%s %rx %lu %c %p");
    }

    #[test]
    fn runtime_argument_count_mismatch_is_an_error() {
        let mut out = Vec::new();
        let err = ParsedFormat::parse("%d %d").format(&[Value::i64(1)], &mut out);
        assert!(matches!(err, Err(FormatError::NotEnoughArguments { .. })));
    }
}
