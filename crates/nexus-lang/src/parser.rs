//! Recursive-descent parser with error recovery.
//!
//! After a syntax error inside a block the parser skips to the next `;` or
//! `}` of that block and goes on, so one run reports several errors (at
//! most [`MAX_ERRORS`]). Nesting deeper than [`MAX_DEPTH`] is an error, not
//! a stack overflow.

use std::collections::VecDeque;

use crate::ast::{
    BinOp, Block, Expr, ExprKind, Ident, LValue, MapAccess, Probe, Program, Stmt, StmtKind,
    TypeName, UnaryOp, Variable,
};
use crate::diag::Diagnostic;
use crate::lexer::{Lexer, Tok, Token};
use crate::names::{is_builtin, is_function, unknown_function};
use crate::probe::parse_attach_point;
use crate::span::{LineIndex, Span};

/// At most this many errors are reported; parsing stops after that.
pub const MAX_ERRORS: usize = 20;

/// Deepest nesting of blocks and expressions accepted (a parenthesised
/// expression counts two levels). At this depth the parser needs under
/// 2 MiB of stack unoptimised and about 1 MiB optimised.
pub const MAX_DEPTH: usize = 128;

/// Words that start statements and cannot be used as identifiers.
const KEYWORDS: &[&str] = &[
    "if", "else", "while", "unroll", "for", "return", "break", "continue",
];

/// Type names accepted in a cast without `struct`/`*` (besides any
/// identifier followed by an operand, which is taken as a typedef).
pub const CAST_TYPES: &[&str] = &[
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "char",
    "short", "int", "long", "unsigned", "signed", "void", "size_t", "ssize_t", "pid_t", "u8",
    "u16", "u32", "u64", "s8", "s16", "s32", "s64",
];

/// The result of parsing: the program (possibly partial) and every
/// diagnostic, sorted by position.
#[derive(Debug, Clone)]
pub struct ParseOutput {
    /// What could be parsed. Erroneous statements and attach points are
    /// left out.
    pub program: Program,
    /// Errors and warnings in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl ParseOutput {
    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parse a program. `Err` holds every diagnostic when there is an error.
pub fn parse(src: &str) -> Result<Program, Vec<Diagnostic>> {
    let out = parse_with_diagnostics(src);
    if out.has_errors() {
        Err(out.diagnostics)
    } else {
        Ok(out.program)
    }
}

/// Parse a program, returning the partial AST together with diagnostics.
pub fn parse_with_diagnostics(src: &str) -> ParseOutput {
    let mut p = Parser::new(src);
    let program = p.program();
    let mut diagnostics = p.diags;
    diagnostics.extend(p.lexer.take_diagnostics());
    diagnostics.sort_by_key(|d| d.span.start);
    // Tokens given back to the lexer at the top level are lexed twice.
    diagnostics.dedup();
    // Lexer errors and parser errors may pile up past the cap together.
    let mut errors = 0;
    diagnostics.retain(|d| {
        if d.is_error() {
            errors += 1;
        }
        !d.is_error() || errors <= MAX_ERRORS
    });
    ParseOutput {
        program,
        diagnostics,
    }
}

/// True when `tok` can begin an operand (so a `/` before it divides).
fn starts_operand(tok: &Tok) -> bool {
    matches!(
        tok,
        Tok::Ident(_)
            | Tok::Int(_)
            | Tok::Str(_)
            | Tok::Var(_)
            | Tok::Map(_)
            | Tok::Param(_)
            | Tok::ParamCount
            | Tok::LParen
            | Tok::Bang
            | Tok::Tilde
            | Tok::PlusPlus
            | Tok::MinusMinus
            | Tok::Op(BinOp::Sub | BinOp::Mul | BinOp::BitAnd)
    )
}

/// Marker: an error was reported; unwind to a recovery point.
#[derive(Debug)]
struct Reported;

type PResult<T> = Result<T, Reported>;

struct Parser<'s> {
    src: &'s str,
    lexer: Lexer<'s>,
    peeked: VecDeque<Token>,
    diags: Vec<Diagnostic>,
    errors: usize,
    depth: usize,
    /// End of the last consumed token, for spans.
    prev_end: usize,
    /// Inside `/ ... /`: a `/` followed by `{` ends the predicate.
    in_predicate: bool,
}

impl<'s> Parser<'s> {
    fn new(src: &'s str) -> Self {
        Parser {
            src,
            lexer: Lexer::new(src),
            peeked: VecDeque::new(),
            diags: Vec::new(),
            errors: 0,
            depth: 0,
            prev_end: 0,
            in_predicate: false,
        }
    }

    // ---- token plumbing ----

    fn fill(&mut self, n: usize) {
        while self.peeked.len() <= n {
            let t = self.lexer.next_token();
            let lexed = self.lexer.take_diagnostics();
            self.errors += lexed.iter().filter(|d| d.is_error()).count();
            self.diags.extend(lexed);
            self.peeked.push_back(t);
        }
    }

    fn peek(&mut self) -> &Token {
        self.peek_nth(0)
    }

    fn peek_nth(&mut self, n: usize) -> &Token {
        self.fill(n);
        &self.peeked[n]
    }

    fn peek_tok(&mut self) -> Tok {
        self.peek().tok.clone()
    }

    fn at(&mut self, tok: &Tok) -> bool {
        &self.peek().tok == tok
    }

    fn at_ident(&mut self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(w) if w == word)
    }

    fn bump(&mut self) -> Token {
        self.fill(0);
        let t = self.peeked.pop_front().unwrap_or_else(|| Token {
            tok: Tok::Eof,
            span: Span::new(self.src.len(), self.src.len()),
        });
        self.prev_end = t.span.end;
        t
    }

    fn too_many_errors(&self) -> bool {
        self.errors >= MAX_ERRORS
    }

    fn report(&mut self, diag: Diagnostic) -> Reported {
        if diag.is_error() {
            self.errors += 1;
        }
        self.diags.push(diag);
        Reported
    }

    fn expected(&mut self, what: &str) -> Reported {
        let t = self.peek().clone();
        let mut diag = Diagnostic::error(
            t.span,
            format!("expected {what}, found {}", t.tok.describe()),
        );
        if t.tok == Tok::Assign && what.contains(')') {
            diag = diag.with_hint("use `==` to compare");
        }
        self.report(diag)
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> PResult<Token> {
        if self.at(tok) {
            Ok(self.bump())
        } else {
            Err(self.expected(what))
        }
    }

    fn line_col(&self, offset: usize) -> String {
        let lc = LineIndex::new(self.src).line_col(self.src, offset);
        format!("{}:{}", lc.line, lc.col)
    }

    /// Run `f` one nesting level deeper, failing past [`MAX_DEPTH`].
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_DEPTH {
            let span = self.peek().span;
            return Err(self.report(
                Diagnostic::error(
                    span,
                    format!("nesting too deep (more than {MAX_DEPTH} levels)"),
                )
                .with_hint("split the expression or block into smaller parts"),
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    // ---- program and probes ----

    fn program(&mut self) -> Program {
        let mut probes = Vec::new();
        loop {
            if self.too_many_errors() {
                break;
            }
            if let Some(t) = self.peeked.front().cloned() {
                // A token was looked at beyond a probe (error paths only):
                // give it back so the next attach point is lexed raw.
                if t.tok == Tok::Eof {
                    break;
                }
                self.peeked.clear();
                self.lexer.rewind(t.span.start);
            }
            self.lexer.skip_trivia(true);
            if self.lexer.pos() >= self.src.len() {
                break;
            }
            if let Some(probe) = self.probe() {
                probes.push(probe);
            }
        }
        Program {
            probes,
            span: Span::new(0, self.src.len()),
        }
    }

    /// One probe block. Errors in attach points are reported and the body
    /// is still parsed, so its errors are reported too.
    fn probe(&mut self) -> Option<Probe> {
        let mut attach_points = Vec::new();
        let mut ok = true;
        let start = self.lexer.pos();
        loop {
            let Some((text, span)) = self.lexer.attach_point() else {
                let t = self.peek().clone();
                let diag = Diagnostic::error(
                    t.span,
                    format!("expected an attach point, found {}", t.tok.describe()),
                )
                .with_hint("a probe starts with an attach point such as `BEGIN` or `tracepoint:syscalls:sys_enter_read`");
                self.report(diag);
                if t.tok == Tok::LBrace {
                    // Parse the stray block to report errors inside it.
                    let _ = self.block();
                } else {
                    self.bump();
                }
                return None;
            };
            if matches!(text.as_str(), "struct" | "union" | "enum") {
                self.report(
                    Diagnostic::error(span, format!("`{text}` definitions are not supported"))
                        .with_hint("types come from the kernel's BTF; no C definitions are needed"),
                );
                self.skip_definition();
                return None;
            }
            match parse_attach_point(&text, span) {
                Ok(ap) => attach_points.push(ap),
                Err(diag) => {
                    self.report(diag);
                    ok = false;
                }
            }
            if self.at(&Tok::Comma) {
                self.bump();
                continue;
            }
            break;
        }
        let predicate = if self.at(&Tok::Op(BinOp::Div)) {
            self.bump();
            let was = std::mem::replace(&mut self.in_predicate, true);
            let pred = self.expr();
            self.in_predicate = was;
            match pred {
                Ok(e) => {
                    if self.at(&Tok::Op(BinOp::Div)) {
                        self.bump();
                        Some(e)
                    } else {
                        self.expected("`/` to end the predicate");
                        ok = false;
                        self.skip_to_brace();
                        None
                    }
                }
                Err(Reported) => {
                    ok = false;
                    self.skip_to_brace();
                    None
                }
            }
        } else {
            None
        };
        if !self.at(&Tok::LBrace) {
            let t = self.peek().clone();
            let what = if predicate.is_some() {
                "`{` after the predicate"
            } else {
                "`{` or a predicate `/.../` after the attach point"
            };
            let mut diag = Diagnostic::error(
                t.span,
                format!("expected {what}, found {}", t.tok.describe()),
            );
            if predicate.is_none() && matches!(t.tok, Tok::Ident(_)) {
                diag = diag.with_hint("separate several attach points with `,`");
            }
            self.report(diag);
            self.skip_to_brace();
            if !self.at(&Tok::LBrace) {
                return None;
            }
        }
        let body = self.block().ok()?;
        if !ok || attach_points.is_empty() {
            return None;
        }
        Some(Probe {
            attach_points,
            predicate,
            span: Span::new(start, body.span.end),
            body,
        })
    }

    /// Skip tokens up to (not including) the next `{` or end of input.
    fn skip_to_brace(&mut self) {
        while !matches!(self.peek().tok, Tok::LBrace | Tok::Eof) {
            self.bump();
        }
    }

    /// Skip `NAME { ... };` of an unsupported C definition.
    fn skip_definition(&mut self) {
        self.skip_to_brace();
        let mut depth = 0usize;
        loop {
            match self.bump().tok {
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                Tok::Eof => return,
                _ => {}
            }
        }
        if self.at(&Tok::Semi) {
            self.bump();
        }
    }

    // ---- statements ----

    /// `{ stmt; stmt; ... }` (cursor on `{`).
    fn block(&mut self) -> PResult<Block> {
        self.nested(|p| p.block_inner())
    }

    fn block_inner(&mut self) -> PResult<Block> {
        let open = self.expect(&Tok::LBrace, "`{`")?;
        let mut stmts = Vec::new();
        loop {
            if self.too_many_errors() {
                return Err(Reported);
            }
            match self.peek_tok() {
                Tok::RBrace => {
                    let close = self.bump();
                    return Ok(Block {
                        stmts,
                        span: open.span.to(close.span),
                    });
                }
                Tok::Eof => {
                    let t = self.peek().clone();
                    let at = self.line_col(open.span.start);
                    return Err(self.report(
                        Diagnostic::error(t.span, "expected `}`, found end of input")
                            .with_label("unclosed block")
                            .with_note(format!("the block opened at {at} is not closed")),
                    ));
                }
                Tok::Semi => {
                    // Empty statement.
                    self.bump();
                    continue;
                }
                _ => {}
            }
            match self.statement() {
                Ok(stmt) => {
                    let needs_semi = !matches!(
                        stmt.kind,
                        StmtKind::If { .. }
                            | StmtKind::While { .. }
                            | StmtKind::Unroll { .. }
                            | StmtKind::For { .. }
                            | StmtKind::Block(_)
                    );
                    stmts.push(stmt);
                    if needs_semi {
                        match self.peek_tok() {
                            Tok::Semi => {
                                self.bump();
                            }
                            Tok::RBrace | Tok::Eof => {}
                            _ => {
                                let t = self.peek().clone();
                                self.report(
                                    Diagnostic::error(
                                        t.span,
                                        format!(
                                            "expected `;` or `}}` after the statement, found {}",
                                            t.tok.describe()
                                        ),
                                    )
                                    .with_hint("separate statements with `;`"),
                                );
                                self.recover_statement();
                            }
                        }
                    }
                }
                Err(Reported) => {
                    if self.too_many_errors() {
                        return Err(Reported);
                    }
                    self.recover_statement();
                }
            }
        }
    }

    /// Skip to just after the next `;`, or to the `}` closing the current
    /// block, skipping balanced nested brackets.
    fn recover_statement(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek_tok() {
                Tok::Eof => return,
                Tok::Semi if depth == 0 => {
                    self.bump();
                    return;
                }
                Tok::RBrace if depth == 0 => return,
                Tok::LBrace | Tok::LParen | Tok::LBracket => depth += 1,
                Tok::RBrace | Tok::RParen | Tok::RBracket => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.bump();
        }
    }

    fn statement(&mut self) -> PResult<Stmt> {
        let start = self.peek().span.start;
        let kind = match self.peek_tok() {
            Tok::LBrace => StmtKind::Block(self.block()?),
            Tok::Ident(word) => match word.as_str() {
                "if" => return self.if_stmt(),
                "while" => {
                    self.bump();
                    let cond = self.paren_expr("while")?;
                    let body = self.block_after("while")?;
                    StmtKind::While { cond, body }
                }
                "unroll" => {
                    self.bump();
                    let count = self.paren_expr("unroll")?;
                    self.check_unroll_count(&count)?;
                    let body = self.block_after("unroll")?;
                    StmtKind::Unroll { count, body }
                }
                "for" => self.for_stmt()?,
                "break" => {
                    self.bump();
                    StmtKind::Break
                }
                "continue" => {
                    self.bump();
                    StmtKind::Continue
                }
                "return" => {
                    self.bump();
                    if matches!(self.peek_tok(), Tok::Semi | Tok::RBrace) {
                        StmtKind::Return(None)
                    } else {
                        StmtKind::Return(Some(self.expr()?))
                    }
                }
                "else" => {
                    let span = self.bump().span;
                    return Err(self.report(
                        Diagnostic::error(span, "`else` without a preceding `if`")
                            .with_hint("`else` must directly follow the `}` of an `if` block"),
                    ));
                }
                "delete" if self.peek_nth(1).tok == Tok::LParen => self.delete_stmt()?,
                _ => return self.expr_or_assign(start),
            },
            _ => return self.expr_or_assign(start),
        };
        Ok(Stmt {
            kind,
            span: Span::new(start, self.prev_end),
        })
    }

    fn expr_or_assign(&mut self, start: usize) -> PResult<Stmt> {
        let expr = self.expr()?;
        let op = match self.peek_tok() {
            Tok::Assign => None,
            Tok::CompoundAssign(op) => Some(op),
            _ => {
                return Ok(Stmt {
                    span: expr.span,
                    kind: StmtKind::Expr(expr),
                });
            }
        };
        let op_span = self.peek().span;
        let target = match expr.kind {
            ExprKind::Var(v) => LValue::Var(v),
            ExprKind::Map(m) => LValue::Map(m),
            ExprKind::Field { ref field, .. } if field.name.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(self.report(
                    Diagnostic::error(expr.span, "tuples cannot be modified")
                        .with_hint("create a new tuple and assign it instead"),
                ));
            }
            _ => {
                return Err(self.report(
                    Diagnostic::error(op_span, "cannot assign to this expression")
                        .with_label("assignment here")
                        .with_hint("only `$variables` and `@maps` can be assigned"),
                ));
            }
        };
        self.bump();
        let value = self.expr()?;
        Ok(Stmt {
            span: Span::new(start, value.span.end),
            kind: StmtKind::Assign { target, op, value },
        })
    }

    fn if_stmt(&mut self) -> PResult<Stmt> {
        let start = self.bump().span.start;
        let cond = self.paren_expr("if")?;
        let then_block = self.block_after("if")?;
        let else_block = if self.at_ident("else") {
            self.bump();
            if self.at_ident("if") {
                let nested = self.nested(|p| p.if_stmt())?;
                Some(Block {
                    span: nested.span,
                    stmts: vec![nested],
                })
            } else {
                Some(self.block_after("else")?)
            }
        } else {
            None
        };
        Ok(Stmt {
            kind: StmtKind::If {
                cond,
                then_block,
                else_block,
            },
            span: Span::new(start, self.prev_end),
        })
    }

    /// `( expr )` after a keyword.
    fn paren_expr(&mut self, keyword: &str) -> PResult<Expr> {
        if !self.at(&Tok::LParen) {
            let t = self.peek().clone();
            return Err(self.report(
                Diagnostic::error(
                    t.span,
                    format!("expected `(` after `{keyword}`, found {}", t.tok.describe()),
                )
                .with_hint(format!("write `{keyword} (...) {{ ... }}`")),
            ));
        }
        self.bump();
        let e = self.expr()?;
        self.expect(&Tok::RParen, "`)`")?;
        Ok(e)
    }

    fn block_after(&mut self, keyword: &str) -> PResult<Block> {
        if self.at(&Tok::LBrace) {
            return self.block();
        }
        let t = self.peek().clone();
        Err(self.report(
            Diagnostic::error(
                t.span,
                format!(
                    "expected `{{` after `{keyword}`, found {}",
                    t.tok.describe()
                ),
            )
            .with_hint("the body must be a block in braces"),
        ))
    }

    fn check_unroll_count(&mut self, count: &Expr) -> PResult<()> {
        match count.kind {
            ExprKind::Int(n) if (1..=100).contains(&n) => Ok(()),
            ExprKind::Int(_) => Err(self.report(Diagnostic::error(
                count.span,
                "unroll count must be between 1 and 100",
            ))),
            ExprKind::Positional(_) => Ok(()),
            _ => Err(self.report(
                Diagnostic::error(
                    count.span,
                    "unroll count must be an integer literal or a positional parameter",
                )
                .with_hint("use `while` for a loop bounded at run time"),
            )),
        }
    }

    fn for_stmt(&mut self) -> PResult<StmtKind> {
        self.bump();
        self.expect(&Tok::LParen, "`(` after `for`")?;
        let t = self.peek().clone();
        let Tok::Var(name) = t.tok else {
            return Err(self.report(
                Diagnostic::error(
                    t.span,
                    format!(
                        "expected a `$variable` after `for (`, found {}",
                        t.tok.describe()
                    ),
                )
                .with_hint("write `for ($kv : @map) { ... }`"),
            ));
        };
        self.bump();
        let var = Variable { name, span: t.span };
        self.expect(&Tok::Colon, "`:`")?;
        let t = self.peek().clone();
        let Tok::Map(name) = t.tok else {
            return Err(self.report(
                Diagnostic::error(
                    t.span,
                    format!("expected a map after `:`, found {}", t.tok.describe()),
                )
                .with_hint("write `for ($kv : @map) { ... }`"),
            ));
        };
        self.bump();
        if self.at(&Tok::LBracket) {
            let span = self.peek().span;
            return Err(self.report(
                Diagnostic::error(span, "a `for` loop iterates a whole map, not an element")
                    .with_hint("remove the `[...]`"),
            ));
        }
        let map = MapAccess {
            name,
            name_span: t.span,
            keys: Vec::new(),
            span: t.span,
        };
        self.expect(&Tok::RParen, "`)`")?;
        let body = self.block_after("for")?;
        Ok(StmtKind::For { var, map, body })
    }

    /// `delete(@m[k])`, `delete(@m, k)`, `delete(@m)`.
    fn delete_stmt(&mut self) -> PResult<StmtKind> {
        self.bump(); // `delete`
        self.bump(); // `(`
        let t = self.peek().clone();
        if !matches!(t.tok, Tok::Map(_)) {
            return Err(self.report(
                Diagnostic::error(
                    t.span,
                    format!("`delete` needs a map, found {}", t.tok.describe()),
                )
                .with_hint("write `delete(@map[key])` or `delete(@map, key)`"),
            ));
        }
        let first = self.expr()?;
        let ExprKind::Map(mut map) = first.kind else {
            return Err(self.report(
                Diagnostic::error(first.span, "`delete` needs a map element")
                    .with_hint("write `delete(@map[key])` or `delete(@map, key)`"),
            ));
        };
        if self.at(&Tok::Comma) {
            self.bump();
            let key = self.expr()?;
            if !map.keys.is_empty() {
                return Err(self.report(
                    Diagnostic::error(key.span, "`delete` got two keys")
                        .with_hint("write `delete(@map[key])` or `delete(@map, key)`, not both"),
                ));
            }
            map.span = map.span.to(key.span);
            map.keys = match key.kind {
                ExprKind::Tuple(items) => items,
                _ => vec![key],
            };
        }
        if !self.at(&Tok::RParen) {
            let t = self.peek().clone();
            return Err(self.report(
                Diagnostic::error(
                    t.span,
                    format!(
                        "expected `)` to close `delete(`, found {}",
                        t.tok.describe()
                    ),
                )
                .with_hint("`delete` takes a map element, or a map and one key"),
            ));
        }
        self.bump();
        Ok(StmtKind::Delete { map })
    }

    // ---- expressions ----

    fn expr(&mut self) -> PResult<Expr> {
        self.nested(|p| p.ternary())
    }

    fn ternary(&mut self) -> PResult<Expr> {
        let cond = self.binary(1)?;
        if !self.at(&Tok::Question) {
            return Ok(cond);
        }
        self.bump();
        let then_expr = self.expr()?;
        self.expect(&Tok::Colon, "`:` of the `?:` operator")?;
        let else_expr = self.expr()?;
        Ok(Expr {
            span: cond.span.to(else_expr.span),
            kind: ExprKind::Ternary {
                cond: Box::new(cond),
                then_expr: Box::new(then_expr),
                else_expr: Box::new(else_expr),
            },
        })
    }

    /// Precedence climbing over left-associative binary operators.
    fn binary(&mut self, min_prec: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        // Each operator adds a tree level; count them against the limit.
        let mut chain = 0usize;
        loop {
            let Tok::Op(op) = self.peek_tok() else {
                return Ok(lhs);
            };
            if op.precedence() < min_prec {
                return Ok(lhs);
            }
            if op == BinOp::Div && self.in_predicate && !starts_operand(&self.peek_nth(1).tok) {
                // The closing `/` of the predicate: no divisor follows.
                return Ok(lhs);
            }
            chain += 1;
            if self.depth + chain > MAX_DEPTH {
                let span = self.peek().span;
                return Err(self.report(
                    Diagnostic::error(
                        span,
                        format!("expression too long (more than {MAX_DEPTH} nested operators)"),
                    )
                    .with_hint("split the expression using `$variables`"),
                ));
            }
            self.bump();
            let rhs = self.binary(op.precedence() + 1)?;
            lhs = Expr {
                span: lhs.span.to(rhs.span),
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            };
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.nested(|p| p.unary_inner())
    }

    fn unary_inner(&mut self) -> PResult<Expr> {
        let t = self.peek().clone();
        let op = match t.tok {
            Tok::Bang => Some(UnaryOp::Not),
            Tok::Tilde => Some(UnaryOp::BitNot),
            Tok::Op(BinOp::Sub) => Some(UnaryOp::Neg),
            Tok::Op(BinOp::Mul) => Some(UnaryOp::Deref),
            Tok::Op(BinOp::BitAnd) => Some(UnaryOp::AddrOf),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let operand = self.unary()?;
            return Ok(Expr {
                span: t.span.to(operand.span),
                kind: ExprKind::Unary {
                    op,
                    expr: Box::new(operand),
                },
            });
        }
        if matches!(t.tok, Tok::PlusPlus | Tok::MinusMinus) {
            self.bump();
            let operand = self.postfix()?;
            let increment = t.tok == Tok::PlusPlus;
            let target = self.incdec_target(operand, &t)?;
            return Ok(Expr {
                span: t.span.to(target.span()),
                kind: ExprKind::IncDec {
                    target,
                    increment,
                    prefix: true,
                },
            });
        }
        if t.tok == Tok::LParen && self.is_cast() {
            return self.cast();
        }
        self.postfix()
    }

    fn incdec_target(&mut self, operand: Expr, op: &Token) -> PResult<LValue> {
        match operand.kind {
            ExprKind::Var(v) => Ok(LValue::Var(v)),
            ExprKind::Map(m) => Ok(LValue::Map(m)),
            _ => Err(self.report(
                Diagnostic::error(
                    op.span,
                    format!("`{}` needs a variable or a map", op.tok.symbol()),
                )
                .with_hint("only `$variables` and `@maps` can be incremented or decremented"),
            )),
        }
    }

    /// At `(`: does a type follow, making this a cast?
    fn is_cast(&mut self) -> bool {
        let Tok::Ident(name) = self.peek_nth(1).tok.clone() else {
            return false;
        };
        if matches!(name.as_str(), "struct" | "union" | "enum") {
            return true;
        }
        let mut i = 2;
        while self.peek_nth(i).tok == Tok::Op(BinOp::Mul) {
            i += 1;
        }
        if i > 2 {
            // `(name *)`: only a type can be followed by `*` and `)`.
            return self.peek_nth(i).tok == Tok::RParen;
        }
        match self.peek_nth(2).tok {
            Tok::LBracket => {
                matches!(self.peek_nth(3).tok, Tok::Int(_))
                    && self.peek_nth(4).tok == Tok::RBracket
                    && self.peek_nth(5).tok == Tok::RParen
            }
            Tok::RParen => {
                if CAST_TYPES.contains(&name.as_str()) {
                    return true;
                }
                if is_builtin(&name) || KEYWORDS.contains(&name.as_str()) {
                    return false;
                }
                // `(name) operand`: a typedef name followed by something that
                // can only start an operand (not a binary operator).
                matches!(
                    self.peek_nth(3).tok,
                    Tok::Ident(_)
                        | Tok::Int(_)
                        | Tok::Str(_)
                        | Tok::Var(_)
                        | Tok::Map(_)
                        | Tok::Param(_)
                        | Tok::ParamCount
                        | Tok::LParen
                        | Tok::Bang
                        | Tok::Tilde
                )
            }
            _ => false,
        }
    }

    fn cast(&mut self) -> PResult<Expr> {
        let open = self.bump();
        let ty = self.type_name()?;
        self.expect(&Tok::RParen, "`)` to end the cast type")?;
        let operand = self.unary()?;
        Ok(Expr {
            span: open.span.to(operand.span),
            kind: ExprKind::Cast {
                ty,
                expr: Box::new(operand),
            },
        })
    }

    /// `[struct|union|enum] NAME *... [N]`.
    fn type_name(&mut self) -> PResult<TypeName> {
        let ty_start = self.peek().span.start;
        let Tok::Ident(first) = self.bump().tok else {
            return Err(self.expected("a type name"));
        };
        let base = if matches!(first.as_str(), "struct" | "union" | "enum") {
            let t = self.peek().clone();
            let Tok::Ident(name) = t.tok else {
                return Err(self.report(Diagnostic::error(
                    t.span,
                    format!("expected a {first} name, found {}", t.tok.describe()),
                )));
            };
            self.bump();
            format!("{first} {name}")
        } else {
            first
        };
        let mut pointer_depth = 0u8;
        while self.at(&Tok::Op(BinOp::Mul)) {
            self.bump();
            pointer_depth = pointer_depth.saturating_add(1);
        }
        let mut array_len = None;
        if self.at(&Tok::LBracket) {
            self.bump();
            let t = self.peek().clone();
            let Tok::Int(n) = t.tok else {
                return Err(self.expected("an array length"));
            };
            self.bump();
            array_len = Some(n);
            self.expect(&Tok::RBracket, "`]`")?;
        }
        Ok(TypeName {
            base,
            pointer_depth,
            array_len,
            span: Span::new(ty_start, self.prev_end),
        })
    }

    /// For `sizeof(TYPE)` / `offsetof(TYPE, field)`: is the argument at the
    /// cursor a type rather than an expression?
    fn at_type_arg(&mut self) -> bool {
        let Tok::Ident(name) = self.peek().tok.clone() else {
            return false;
        };
        matches!(name.as_str(), "struct" | "union" | "enum")
            || (CAST_TYPES.contains(&name.as_str())
                && matches!(
                    self.peek_nth(1).tok,
                    Tok::RParen | Tok::Comma | Tok::Op(BinOp::Mul) | Tok::LBracket
                ))
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut e = self.primary()?;
        let mut chain = 0usize;
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::Dot | Tok::Arrow => {}
                Tok::LBracket => {}
                Tok::PlusPlus | Tok::MinusMinus => {
                    self.bump();
                    let increment = t.tok == Tok::PlusPlus;
                    let span = e.span.to(t.span);
                    let target = self.incdec_target(e, &t)?;
                    return Ok(Expr {
                        span,
                        kind: ExprKind::IncDec {
                            target,
                            increment,
                            prefix: false,
                        },
                    });
                }
                _ => return Ok(e),
            }
            chain += 1;
            if self.depth + chain > MAX_DEPTH {
                return Err(self.report(Diagnostic::error(
                    t.span,
                    format!("expression too long (more than {MAX_DEPTH} nested accesses)"),
                )));
            }
            self.bump();
            if t.tok == Tok::LBracket {
                let index = self.expr()?;
                let close = self.expect(&Tok::RBracket, "`]`")?;
                e = Expr {
                    span: e.span.to(close.span),
                    kind: ExprKind::Index {
                        expr: Box::new(e),
                        index: Box::new(index),
                    },
                };
                continue;
            }
            let arrow = t.tok == Tok::Arrow;
            let f = self.peek().clone();
            let name = match f.tok {
                Tok::Ident(name) => name,
                Tok::Int(n) if !arrow => n.to_string(),
                other => {
                    return Err(self.report(Diagnostic::error(
                        f.span,
                        format!(
                            "expected a field name after `{}`, found {}",
                            t.tok.symbol(),
                            other.describe()
                        ),
                    )));
                }
            };
            self.bump();
            e = Expr {
                span: e.span.to(f.span),
                kind: ExprKind::Field {
                    expr: Box::new(e),
                    field: Ident { name, span: f.span },
                    arrow,
                },
            };
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.peek().clone();
        let kind = match t.tok {
            Tok::Int(v) => ExprKind::Int(v),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::Var(name) => ExprKind::Var(Variable { name, span: t.span }),
            Tok::Param(n) => ExprKind::Positional(n),
            Tok::ParamCount => ExprKind::PositionalCount,
            Tok::Map(name) => {
                self.bump();
                return self.map_access(name, t.span);
            }
            Tok::Ident(name) => {
                if self.peek_nth(1).tok == Tok::LParen {
                    return self.call(name, t.span);
                }
                if KEYWORDS.contains(&name.as_str()) {
                    return Err(self.report(Diagnostic::error(
                        t.span,
                        format!("unexpected keyword `{name}` in an expression"),
                    )));
                }
                if is_builtin(&name) {
                    ExprKind::Builtin(name)
                } else {
                    ExprKind::Ident(name)
                }
            }
            Tok::LParen => {
                self.bump();
                let first = self.expr()?;
                if !self.at(&Tok::Comma) {
                    self.expect(&Tok::RParen, "`)`")?;
                    // Parentheses only group; the span grows to include them.
                    return Ok(Expr {
                        span: t.span.to(Span::new(self.prev_end, self.prev_end)),
                        kind: first.kind,
                    });
                }
                let mut items = vec![first];
                while self.at(&Tok::Comma) {
                    self.bump();
                    items.push(self.expr()?);
                }
                let close = self.expect(&Tok::RParen, "`,` or `)` in the tuple")?;
                return Ok(Expr {
                    span: t.span.to(close.span),
                    kind: ExprKind::Tuple(items),
                });
            }
            _ => return Err(self.expected("an expression")),
        };
        self.bump();
        Ok(Expr { kind, span: t.span })
    }

    fn map_access(&mut self, name: String, name_span: Span) -> PResult<Expr> {
        let mut keys = Vec::new();
        let mut span = name_span;
        if self.at(&Tok::LBracket) {
            let open = self.bump();
            if self.at(&Tok::RBracket) {
                let close = self.bump();
                return Err(self.report(
                    Diagnostic::error(open.span.to(close.span), "empty map key").with_hint(
                        format!("write `@{name}[key]`, or `@{name}` for a map without keys"),
                    ),
                ));
            }
            keys = self.expr_list(&Tok::RBracket, "`,` or `]`")?;
            span = span.to(Span::new(self.prev_end - 1, self.prev_end));
        }
        Ok(Expr {
            span,
            kind: ExprKind::Map(MapAccess {
                name,
                name_span,
                keys,
                span,
            }),
        })
    }

    /// `expr, expr, ... CLOSE` (at least one expression; consumes CLOSE).
    fn expr_list(&mut self, close: &Tok, what: &str) -> PResult<Vec<Expr>> {
        let mut items = vec![self.expr()?];
        while self.at(&Tok::Comma) {
            self.bump();
            items.push(self.expr()?);
        }
        self.expect(close, what)?;
        Ok(items)
    }

    fn call(&mut self, name: String, name_span: Span) -> PResult<Expr> {
        self.bump(); // name
        self.bump(); // `(`
        let args = if self.at(&Tok::RParen) {
            self.bump();
            Vec::new()
        } else if matches!(name.as_str(), "sizeof" | "offsetof") && self.at_type_arg() {
            // A type argument travels as an identifier holding the type
            // text (`struct task_struct`); the compiler resolves it.
            let ty = self.type_name()?;
            let mut args = vec![Expr {
                span: ty.span,
                kind: ExprKind::Ident(ty.to_string()),
            }];
            if self.at(&Tok::Comma) {
                self.bump();
                args.extend(self.expr_list(&Tok::RParen, "`,` or `)` in the argument list")?);
            } else {
                self.expect(&Tok::RParen, "`)`")?;
            }
            args
        } else {
            self.expr_list(&Tok::RParen, "`,` or `)` in the argument list")?
        };
        let span = name_span.to(Span::new(self.prev_end - 1, self.prev_end));
        if !is_function(&name) {
            let diag = unknown_function(&name, name_span);
            return Err(self.report(diag));
        }
        Ok(Expr {
            span,
            kind: ExprKind::Call {
                name: Ident {
                    name,
                    span: name_span,
                },
                args,
            },
        })
    }
}
