//! Hand-written, pull-based lexer.
//!
//! The parser drives it: inside probe bodies it asks for ordinary tokens,
//! at the top level it asks for a raw attach point
//! ([`Lexer::attach_point`]), because attach points contain paths and
//! wildcards that are not expression tokens. The lexer never fails: bad
//! input produces a diagnostic and lexing goes on.

use crate::ast::BinOp;
use crate::diag::Diagnostic;
use crate::span::Span;

/// A token kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// Identifier or keyword (`if`, `while`, ... are identifiers here).
    Ident(String),
    /// Integer literal value.
    Int(u64),
    /// String literal, escapes decoded.
    Str(String),
    /// `$name` (name without `$`).
    Var(String),
    /// `$N`.
    Param(u32),
    /// `$#`.
    ParamCount,
    /// `@name` or `@` (name without `@`).
    Map(String),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `;`
    Semi,
    /// `:`
    Colon,
    /// `?`
    Question,
    /// `.`
    Dot,
    /// `->`
    Arrow,
    /// A binary operator that is not also a unary one or `=`-related.
    Op(BinOp),
    /// `!`
    Bang,
    /// `~`
    Tilde,
    /// `=`
    Assign,
    /// `OP=`
    CompoundAssign(BinOp),
    /// `++`
    PlusPlus,
    /// `--`
    MinusMinus,
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token is described in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier `{s}`"),
            Tok::Int(v) => format!("integer `{v}`"),
            Tok::Str(_) => "string literal".to_string(),
            Tok::Var(s) => format!("variable `${s}`"),
            Tok::Param(n) => format!("positional parameter `${n}`"),
            Tok::ParamCount => "`$#`".to_string(),
            Tok::Map(s) => format!("map `@{s}`"),
            Tok::Eof => "end of input".to_string(),
            other => format!("`{}`", other.symbol()),
        }
    }

    /// The punctuation text of the token (empty for value tokens).
    pub fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Semi => ";",
            Tok::Colon => ":",
            Tok::Question => "?",
            Tok::Dot => ".",
            Tok::Arrow => "->",
            Tok::Op(op) => op.symbol(),
            Tok::Bang => "!",
            Tok::Tilde => "~",
            Tok::Assign => "=",
            Tok::CompoundAssign(op) => match op {
                BinOp::Add => "+=",
                BinOp::Sub => "-=",
                BinOp::Mul => "*=",
                BinOp::Div => "/=",
                BinOp::Mod => "%=",
                BinOp::BitAnd => "&=",
                BinOp::BitOr => "|=",
                BinOp::BitXor => "^=",
                BinOp::Shl => "<<=",
                BinOp::Shr => ">>=",
                _ => "?=",
            },
            Tok::PlusPlus => "++",
            Tok::MinusMinus => "--",
            _ => "",
        }
    }
}

/// A token with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Kind and value.
    pub tok: Tok,
    /// Source range.
    pub span: Span,
}

/// The lexer state: a cursor into the source plus collected diagnostics.
#[derive(Debug)]
pub struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    diags: Vec<Diagnostic>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl<'s> Lexer<'s> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'s str) -> Self {
        Lexer {
            src,
            pos: 0,
            diags: Vec::new(),
        }
    }

    /// Take the diagnostics produced so far.
    pub fn take_diagnostics(&mut self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.diags)
    }

    /// Move the cursor back to `pos` (a token start already lexed), so the
    /// parser can re-read it in attach-point mode.
    pub fn rewind(&mut self, pos: usize) {
        self.pos = pos.min(self.src.len());
    }

    /// Current byte offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    fn peek_byte(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn byte_at(&self, i: usize) -> Option<u8> {
        self.src.as_bytes().get(i).copied()
    }

    /// Skip whitespace and comments (and, when `top_level`, `#include`-style
    /// preprocessor lines and a `#!` line).
    pub fn skip_trivia(&mut self, top_level: bool) {
        let bytes = self.src.as_bytes();
        loop {
            match self.peek_byte() {
                Some(b) if b.is_ascii_whitespace() => self.pos += 1,
                Some(b'/') if self.byte_at(self.pos + 1) == Some(b'/') => {
                    self.skip_line();
                }
                Some(b'/') if self.byte_at(self.pos + 1) == Some(b'*') => {
                    let start = self.pos;
                    match self.src[self.pos + 2..].find("*/") {
                        Some(i) => self.pos += 2 + i + 2,
                        None => {
                            self.pos = bytes.len();
                            self.diags.push(
                                Diagnostic::error(
                                    Span::new(start, start + 2),
                                    "unterminated comment",
                                )
                                .with_hint("close the comment with `*/`"),
                            );
                        }
                    }
                }
                Some(b'#') if top_level => self.skip_line(),
                _ => break,
            }
        }
    }

    fn skip_line(&mut self) {
        match self.src[self.pos..].find('\n') {
            Some(i) => self.pos += i + 1,
            None => self.pos = self.src.len(),
        }
    }

    /// Read a raw attach point (e.g. `uprobe:/bin/bash:readline`) starting
    /// at the cursor, after trivia. Returns `None` at end of input or when
    /// the next char cannot start an attach point.
    ///
    /// An attach point ends at whitespace, `,`, `{`, `}`, `;`, or a `/`
    /// that is not part of a path: only uprobe/uretprobe targets hold paths,
    /// so only there does `/` (after the first `:`) continue the text.
    /// `"..."` quotes a part verbatim (for paths with spaces).
    pub fn attach_point(&mut self) -> Option<(String, Span)> {
        self.skip_trivia(true);
        let start = self.pos;
        let mut path_allowed = false;
        while let Some(b) = self.peek_byte() {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b'{' | b'}' | b';' => break,
                b'/' if !path_allowed => break,
                b'/' if self.byte_at(self.pos + 1) == Some(b'/')
                    || self.byte_at(self.pos + 1) == Some(b'*') =>
                {
                    break;
                }
                b':' => {
                    if !path_allowed {
                        let provider = &self.src[start..self.pos];
                        // Unknown providers (usdt, iter, ...) keep their
                        // whole text so the error names all of it once.
                        path_allowed = matches!(provider, "uprobe" | "uretprobe" | "u" | "ur")
                            || crate::names::probe_kind(provider).is_none();
                    }
                    self.pos += 1;
                }
                b'"' => {
                    // Quoted part: take it whole, quotes included.
                    match self.src[self.pos + 1..].find(['"', '\n']) {
                        Some(i) if self.byte_at(self.pos + 1 + i) == Some(b'"') => {
                            self.pos += i + 2;
                        }
                        _ => {
                            let end = self.src[self.pos..]
                                .find('\n')
                                .map_or(self.src.len(), |i| self.pos + i);
                            self.diags.push(Diagnostic::error(
                                Span::new(self.pos, end),
                                "unterminated string",
                            ));
                            self.pos = end;
                        }
                    }
                }
                _ => {
                    // Advance by whole chars so spans stay on char boundaries.
                    let len = self.src[self.pos..]
                        .chars()
                        .next()
                        .map_or(1, char::len_utf8);
                    self.pos += len;
                }
            }
        }
        if self.pos == start {
            None
        } else {
            Some((
                self.src[start..self.pos].to_string(),
                Span::new(start, self.pos),
            ))
        }
    }

    /// The next ordinary token.
    pub fn next_token(&mut self) -> Token {
        loop {
            self.skip_trivia(false);
            let start = self.pos;
            let Some(b) = self.peek_byte() else {
                return Token {
                    tok: Tok::Eof,
                    span: Span::new(start, start),
                };
            };
            if let Some(tok) = self.lex_at(b) {
                return Token {
                    tok,
                    span: Span::new(start, self.pos),
                };
            }
            // lex_at reported an invalid character and skipped it; go on.
        }
    }

    fn two(&self, second: u8) -> bool {
        self.byte_at(self.pos + 1) == Some(second)
    }

    fn lex_at(&mut self, b: u8) -> Option<Tok> {
        let start = self.pos;
        let op3 = |lx: &mut Self, tok: Tok, n: usize| {
            lx.pos += n;
            Some(tok)
        };
        match b {
            b'(' => op3(self, Tok::LParen, 1),
            b')' => op3(self, Tok::RParen, 1),
            b'{' => op3(self, Tok::LBrace, 1),
            b'}' => op3(self, Tok::RBrace, 1),
            b'[' => op3(self, Tok::LBracket, 1),
            b']' => op3(self, Tok::RBracket, 1),
            b',' => op3(self, Tok::Comma, 1),
            b';' => op3(self, Tok::Semi, 1),
            b':' => op3(self, Tok::Colon, 1),
            b'?' => op3(self, Tok::Question, 1),
            b'.' => op3(self, Tok::Dot, 1),
            b'~' => op3(self, Tok::Tilde, 1),
            b'-' if self.two(b'>') => op3(self, Tok::Arrow, 2),
            b'-' if self.two(b'-') => op3(self, Tok::MinusMinus, 2),
            b'-' if self.two(b'=') => op3(self, Tok::CompoundAssign(BinOp::Sub), 2),
            b'-' => op3(self, Tok::Op(BinOp::Sub), 1),
            b'+' if self.two(b'+') => op3(self, Tok::PlusPlus, 2),
            b'+' if self.two(b'=') => op3(self, Tok::CompoundAssign(BinOp::Add), 2),
            b'+' => op3(self, Tok::Op(BinOp::Add), 1),
            b'*' if self.two(b'=') => op3(self, Tok::CompoundAssign(BinOp::Mul), 2),
            b'*' => op3(self, Tok::Op(BinOp::Mul), 1),
            b'/' if self.two(b'=') => op3(self, Tok::CompoundAssign(BinOp::Div), 2),
            b'/' => op3(self, Tok::Op(BinOp::Div), 1),
            b'%' if self.two(b'=') => op3(self, Tok::CompoundAssign(BinOp::Mod), 2),
            b'%' => op3(self, Tok::Op(BinOp::Mod), 1),
            b'^' if self.two(b'=') => op3(self, Tok::CompoundAssign(BinOp::BitXor), 2),
            b'^' => op3(self, Tok::Op(BinOp::BitXor), 1),
            b'&' if self.two(b'&') => op3(self, Tok::Op(BinOp::LogAnd), 2),
            b'&' if self.two(b'=') => op3(self, Tok::CompoundAssign(BinOp::BitAnd), 2),
            b'&' => op3(self, Tok::Op(BinOp::BitAnd), 1),
            b'|' if self.two(b'|') => op3(self, Tok::Op(BinOp::LogOr), 2),
            b'|' if self.two(b'=') => op3(self, Tok::CompoundAssign(BinOp::BitOr), 2),
            b'|' => op3(self, Tok::Op(BinOp::BitOr), 1),
            b'=' if self.two(b'=') => op3(self, Tok::Op(BinOp::Eq), 2),
            b'=' => op3(self, Tok::Assign, 1),
            b'!' if self.two(b'=') => op3(self, Tok::Op(BinOp::Ne), 2),
            b'!' => op3(self, Tok::Bang, 1),
            b'<' if self.two(b'<') && self.byte_at(self.pos + 2) == Some(b'=') => {
                op3(self, Tok::CompoundAssign(BinOp::Shl), 3)
            }
            b'<' if self.two(b'<') => op3(self, Tok::Op(BinOp::Shl), 2),
            b'<' if self.two(b'=') => op3(self, Tok::Op(BinOp::Le), 2),
            b'<' => op3(self, Tok::Op(BinOp::Lt), 1),
            b'>' if self.two(b'>') && self.byte_at(self.pos + 2) == Some(b'=') => {
                op3(self, Tok::CompoundAssign(BinOp::Shr), 3)
            }
            b'>' if self.two(b'>') => op3(self, Tok::Op(BinOp::Shr), 2),
            b'>' if self.two(b'=') => op3(self, Tok::Op(BinOp::Ge), 2),
            b'>' => op3(self, Tok::Op(BinOp::Gt), 1),
            b'"' => Some(self.string()),
            b'0'..=b'9' => Some(self.number()),
            b'$' => Some(self.dollar()),
            b'@' => {
                self.pos += 1;
                Some(Tok::Map(self.ident_tail().to_string()))
            }
            b if is_ident_start(b) => Some(Tok::Ident(self.ident_tail().to_string())),
            _ => {
                let c = self.src[start..].chars().next().unwrap_or('\u{fffd}');
                self.pos += c.len_utf8();
                let diag = Diagnostic::error(
                    Span::new(start, self.pos),
                    format!("invalid character `{}`", c.escape_default()),
                );
                let diag = if c == '#' {
                    diag.with_hint(
                        "preprocessor lines (`#include`) are only allowed before the first probe",
                    )
                } else {
                    diag
                };
                self.diags.push(diag);
                None
            }
        }
    }

    /// Consume `[A-Za-z0-9_]*` and return it.
    fn ident_tail(&mut self) -> &'s str {
        let start = self.pos;
        while self.peek_byte().is_some_and(is_ident_char) {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    fn dollar(&mut self) -> Tok {
        let start = self.pos;
        self.pos += 1;
        match self.peek_byte() {
            Some(b'#') => {
                self.pos += 1;
                Tok::ParamCount
            }
            Some(b) if b.is_ascii_digit() => {
                let digits = self.ident_tail();
                match digits.parse::<u32>() {
                    Ok(n) if n > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Tok::Param(n),
                    _ => {
                        self.diags.push(
                            Diagnostic::error(
                                Span::new(start, self.pos),
                                format!("invalid positional parameter `${digits}`"),
                            )
                            .with_hint("positional parameters are `$1`, `$2`, ... and `$#`"),
                        );
                        Tok::Param(1)
                    }
                }
            }
            Some(b) if is_ident_start(b) => Tok::Var(self.ident_tail().to_string()),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        Span::new(start, self.pos),
                        "expected a variable name after `$`",
                    )
                    .with_hint("scratch variables look like `$name`"),
                );
                Tok::Var(String::new())
            }
        }
    }

    /// Integer literal: decimal with `_` separators, `0x` hex, `0` octal,
    /// `NeM` exponent (`1e6`), optional `u`/`l`/`ul`/`ll`/`ull` suffix.
    fn number(&mut self) -> Tok {
        let start = self.pos;
        // Take the whole alphanumeric run so `12ab` is one bad literal.
        while self
            .peek_byte()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        match parse_int(text) {
            Ok(v) => Tok::Int(v),
            Err(msg) => {
                self.diags
                    .push(Diagnostic::error(Span::new(start, self.pos), msg));
                Tok::Int(0)
            }
        }
    }

    fn string(&mut self) -> Tok {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.src[self.pos..].chars().next() else {
                self.diags.push(
                    Diagnostic::error(Span::new(start, self.pos), "unterminated string")
                        .with_hint("close the string with `\"`"),
                );
                return Tok::Str(out);
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Tok::Str(out);
                }
                '\n' => {
                    self.diags.push(
                        Diagnostic::error(Span::new(start, self.pos), "unterminated string")
                            .with_hint("strings cannot span lines; use `\\n` for a newline"),
                    );
                    return Tok::Str(out);
                }
                '\\' => {
                    let esc_start = self.pos;
                    self.pos += 1;
                    match self.escape(esc_start) {
                        Ok(Some(ch)) => out.push(ch),
                        Ok(None) => {}
                        Err(d) => self.diags.push(d),
                    }
                }
                c => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    /// Decode an escape after its `\` (cursor on the char after `\`).
    fn escape(&mut self, esc_start: usize) -> Result<Option<char>, Diagnostic> {
        let Some(c) = self.src[self.pos..].chars().next() else {
            return Ok(None);
        };
        let simple = match c {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            _ => None,
        };
        if let Some(ch) = simple {
            self.pos += 1;
            return Ok(Some(ch));
        }
        let (radix, max_digits, skip) = match c {
            'x' | 'X' => (16, 2, 1),
            '0'..='7' => (8, 3, 0),
            '\n' => {
                // Leave the newline for the caller to report.
                return Err(Diagnostic::error(
                    Span::new(esc_start, self.pos),
                    "invalid escape at end of line",
                ));
            }
            other => {
                self.pos += other.len_utf8();
                return Err(Diagnostic::error(
                    Span::new(esc_start, self.pos),
                    format!("invalid escape `\\{}`", other.escape_default()),
                )
                .with_hint("valid escapes: \\n \\t \\r \\\" \\\\ \\NNN (octal) \\xNN (hex)"));
            }
        };
        self.pos += skip;
        let digits_start = self.pos;
        while self.pos - digits_start < max_digits
            && self
                .peek_byte()
                .is_some_and(|b| (b as char).is_digit(radix))
        {
            self.pos += 1;
        }
        let digits = &self.src[digits_start..self.pos];
        let span = Span::new(esc_start, self.pos);
        if digits.is_empty() {
            return Err(Diagnostic::error(span, "`\\x` escape needs hex digits")
                .with_hint("write a byte as `\\x41`"));
        }
        let value = u32::from_str_radix(digits, radix).unwrap_or(u32::MAX);
        if value > 0xff {
            return Err(Diagnostic::error(
                span,
                format!("octal escape `{}` is out of range", span.text(self.src)),
            )
            .with_hint("octal escapes go up to `\\377`"));
        }
        if value > 0x7f {
            return Err(Diagnostic::error(
                span,
                format!(
                    "byte escape `{}` above 0x7f is not supported",
                    span.text(self.src)
                ),
            )
            .with_hint("string literals are UTF-8; write the character itself"));
        }
        Ok(char::from_u32(value))
    }
}

/// Parse an integer literal's text (see [`Lexer`] for the accepted forms).
pub fn parse_int(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid integer literal `{text}`");
    let too_big = || format!("integer literal `{text}` does not fit in 64 bits");
    let lower = text.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        let hex = strip_int_suffix(hex);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        return u64::from_str_radix(hex, 16).map_err(|_| too_big());
    }
    let body = strip_int_suffix(&lower);
    let (mantissa, exponent) = match body.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let digits_ok = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit() || b == b'_')
            && !s.ends_with('_')
            && !s.starts_with('_')
    };
    if !digits_ok(mantissa) || exponent.is_some_and(|e| !digits_ok(e)) {
        return Err(invalid());
    }
    let mantissa: String = mantissa.chars().filter(|&c| c != '_').collect();
    let mut value = if mantissa.len() > 1 && mantissa.starts_with('0') && exponent.is_none() {
        u64::from_str_radix(&mantissa[1..], 8).map_err(|e| {
            if mantissa.bytes().any(|b| b == b'8' || b == b'9') {
                format!("invalid digit in octal literal `{text}`")
            } else {
                let _ = e;
                too_big()
            }
        })?
    } else {
        mantissa.parse::<u64>().map_err(|_| too_big())?
    };
    if let Some(e) = exponent {
        let e: String = e.chars().filter(|&c| c != '_').collect();
        let e: u32 = e.parse().map_err(|_| too_big())?;
        let scale = 10u64.checked_pow(e).ok_or_else(too_big)?;
        value = value.checked_mul(scale).ok_or_else(too_big)?;
    }
    Ok(value)
}

/// Drop a C integer suffix (`u`, `l`, `ul`, `ll`, `ull`, any case) —
/// already lower-cased by the caller.
fn strip_int_suffix(s: &str) -> &str {
    for suffix in ["ull", "ll", "ul", "u", "l"] {
        if let Some(rest) = s.strip_suffix(suffix) {
            return rest;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token();
            if t.tok == Tok::Eof {
                break;
            }
            out.push(t.tok);
        }
        assert!(
            lx.take_diagnostics().is_empty(),
            "unexpected diagnostics for {src:?}"
        );
        out
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_int("0x1F"), Ok(31));
        assert_eq!(parse_int("017"), Ok(15));
        assert_eq!(parse_int("1e6"), Ok(1_000_000));
        assert_eq!(parse_int("5ULL"), Ok(5));
        assert_eq!(parse_int("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_int("18446744073709551616").is_err());
        assert!(parse_int("1e20").is_err());
        assert!(parse_int("0x").is_err());
        assert!(parse_int("12ab").is_err());
        assert!(parse_int("1__").is_err());
        assert_eq!(
            parse_int("09"),
            Err("invalid digit in octal literal `09`".to_string())
        );
    }

    #[test]
    fn operators_longest_match() {
        assert_eq!(
            toks("a <<= b >> c->d ++ -- != == && || &= |="),
            vec![
                Tok::Ident("a".into()),
                Tok::CompoundAssign(BinOp::Shl),
                Tok::Ident("b".into()),
                Tok::Op(BinOp::Shr),
                Tok::Ident("c".into()),
                Tok::Arrow,
                Tok::Ident("d".into()),
                Tok::PlusPlus,
                Tok::MinusMinus,
                Tok::Op(BinOp::Ne),
                Tok::Op(BinOp::Eq),
                Tok::Op(BinOp::LogAnd),
                Tok::Op(BinOp::LogOr),
                Tok::CompoundAssign(BinOp::BitAnd),
                Tok::CompoundAssign(BinOp::BitOr),
            ]
        );
    }

    #[test]
    fn strings_vars_maps_params() {
        assert_eq!(
            toks(r#""a\n\t\"\\\101\x42\0" $x @ @m $1 $# /* c */ // d"#),
            vec![
                Tok::Str("a\n\t\"\\AB\0".into()),
                Tok::Var("x".into()),
                Tok::Map(String::new()),
                Tok::Map("m".into()),
                Tok::Param(1),
                Tok::ParamCount,
            ]
        );
    }

    #[test]
    fn attach_points_stop_at_separators() {
        let mut lx = Lexer::new("  uprobe:/bin/bash:readline /pid/ {");
        let (text, span) = lx.attach_point().unwrap_or_default();
        assert_eq!(text, "uprobe:/bin/bash:readline");
        assert_eq!(span, Span::new(2, 27));
        let mut lx = Lexer::new("#include <x.h>\nBEGIN,END{");
        assert_eq!(lx.attach_point().map(|a| a.0).as_deref(), Some("BEGIN"));
        let mut lx = Lexer::new("kprobe:f/pid/{");
        assert_eq!(lx.attach_point().map(|a| a.0).as_deref(), Some("kprobe:f"));
        let mut lx = Lexer::new("u:\"/a b/c\":f {");
        assert_eq!(
            lx.attach_point().map(|a| a.0).as_deref(),
            Some("u:\"/a b/c\":f")
        );
    }
}
