//! Printers: `Display` back to bpftrace source (minimal parentheses,
//! re-parses to the same AST), and the indented tree dump of
//! `--emit ast`.

use std::fmt::{self, Write as _};

use crate::ast::{
    AttachPoint, Block, Expr, ExprKind, LValue, MapAccess, Probe, Program, Stmt, StmtKind,
};

const INDENT: &str = "    ";

/// Binding level of an expression when printed: 0 ternary, 1..=10 binary
/// operators, 11 unary and casts, 12 postfix and primaries.
fn level(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Ternary { .. } => 0,
        ExprKind::Binary { op, .. } => op.precedence(),
        ExprKind::Unary { .. } | ExprKind::Cast { .. } => 11,
        ExprKind::IncDec { prefix: true, .. } => 11,
        _ => 12,
    }
}

/// Write `e`, in parentheses when it binds looser than `min`.
fn write_at(f: &mut impl fmt::Write, e: &Expr, min: u8) -> fmt::Result {
    if level(e) < min {
        f.write_char('(')?;
        write_expr(f, e)?;
        f.write_char(')')
    } else {
        write_expr(f, e)
    }
}

fn write_list(f: &mut impl fmt::Write, items: &[Expr]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_expr(f, item)?;
    }
    Ok(())
}

fn write_map(f: &mut impl fmt::Write, m: &MapAccess) -> fmt::Result {
    write!(f, "@{}", m.name)?;
    if !m.keys.is_empty() {
        f.write_char('[')?;
        write_list(f, &m.keys)?;
        f.write_char(']')?;
    }
    Ok(())
}

fn write_lvalue(f: &mut impl fmt::Write, l: &LValue) -> fmt::Result {
    match l {
        LValue::Var(v) => write!(f, "${}", v.name),
        LValue::Map(m) => write_map(f, m),
    }
}

/// A string literal with the escapes the lexer understands.
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_expr(f: &mut impl fmt::Write, e: &Expr) -> fmt::Result {
    match &e.kind {
        ExprKind::Int(v) => write!(f, "{v}"),
        ExprKind::Str(s) => f.write_str(&quote_str(s)),
        ExprKind::Var(v) => write!(f, "${}", v.name),
        ExprKind::Positional(n) => write!(f, "${n}"),
        ExprKind::PositionalCount => f.write_str("$#"),
        ExprKind::Map(m) => write_map(f, m),
        ExprKind::Builtin(name) | ExprKind::Ident(name) => f.write_str(name),
        ExprKind::Call { name, args } => {
            write!(f, "{}(", name.name)?;
            write_list(f, args)?;
            f.write_char(')')
        }
        ExprKind::Unary { op, expr } => {
            f.write_str(op.symbol())?;
            // Nested prefix operators get parentheses so `- -x` never
            // prints as `--x`.
            write_at(f, expr, 12)
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let p = op.precedence();
            write_at(f, lhs, p)?;
            write!(f, " {} ", op.symbol())?;
            write_at(f, rhs, p + 1)
        }
        ExprKind::Ternary {
            cond,
            then_expr,
            else_expr,
        } => {
            write_at(f, cond, 1)?;
            f.write_str(" ? ")?;
            write_expr(f, then_expr)?;
            f.write_str(" : ")?;
            write_expr(f, else_expr)
        }
        ExprKind::Cast { ty, expr } => {
            write!(f, "({ty})")?;
            write_at(f, expr, 12)
        }
        ExprKind::Field { expr, field, arrow } => {
            write_at(f, expr, 12)?;
            f.write_str(if *arrow { "->" } else { "." })?;
            f.write_str(&field.name)
        }
        ExprKind::Index { expr, index } => {
            write_at(f, expr, 12)?;
            f.write_char('[')?;
            write_expr(f, index)?;
            f.write_char(']')
        }
        ExprKind::IncDec {
            target,
            increment,
            prefix,
        } => {
            let op = if *increment { "++" } else { "--" };
            if *prefix {
                f.write_str(op)?;
                write_lvalue(f, target)
            } else {
                write_lvalue(f, target)?;
                f.write_str(op)
            }
        }
        ExprKind::Tuple(items) => {
            f.write_char('(')?;
            write_list(f, items)?;
            f.write_char(')')
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self)
    }
}

fn write_block(f: &mut impl fmt::Write, b: &Block, depth: usize) -> fmt::Result {
    f.write_str("{\n")?;
    for stmt in &b.stmts {
        write_stmt(f, stmt, depth + 1)?;
    }
    for _ in 0..depth {
        f.write_str(INDENT)?;
    }
    f.write_char('}')
}

/// The statement without indentation or terminator.
fn write_stmt_body(f: &mut impl fmt::Write, s: &Stmt, depth: usize) -> fmt::Result {
    match &s.kind {
        StmtKind::Expr(e) => write_expr(f, e),
        StmtKind::Assign { target, op, value } => {
            write_lvalue(f, target)?;
            match op {
                Some(op) => write!(f, " {}= ", op.symbol())?,
                None => f.write_str(" = ")?,
            }
            write_expr(f, value)
        }
        StmtKind::Delete { map } => {
            f.write_str("delete(")?;
            write_map(f, map)?;
            f.write_char(')')
        }
        StmtKind::If {
            cond,
            then_block,
            else_block,
        } => {
            f.write_str("if (")?;
            write_expr(f, cond)?;
            f.write_str(") ")?;
            write_block(f, then_block, depth)?;
            if let Some(else_block) = else_block {
                f.write_str(" else ")?;
                match else_block.stmts.as_slice() {
                    [
                        only @ Stmt {
                            kind: StmtKind::If { .. },
                            ..
                        },
                    ] => write_stmt_body(f, only, depth)?,
                    _ => write_block(f, else_block, depth)?,
                }
            }
            Ok(())
        }
        StmtKind::Unroll { count, body } => {
            write!(f, "unroll ({count}) ")?;
            write_block(f, body, depth)
        }
        StmtKind::While { cond, body } => {
            write!(f, "while ({cond}) ")?;
            write_block(f, body, depth)
        }
        StmtKind::For { var, map, body } => {
            write!(f, "for (${} : ", var.name)?;
            write_map(f, map)?;
            f.write_str(") ")?;
            write_block(f, body, depth)
        }
        StmtKind::Break => f.write_str("break"),
        StmtKind::Continue => f.write_str("continue"),
        StmtKind::Return(None) => f.write_str("return"),
        StmtKind::Return(Some(e)) => write!(f, "return {e}"),
        StmtKind::Block(b) => write_block(f, b, depth),
    }
}

fn write_stmt(f: &mut impl fmt::Write, s: &Stmt, depth: usize) -> fmt::Result {
    for _ in 0..depth {
        f.write_str(INDENT)?;
    }
    write_stmt_body(f, s, depth)?;
    let block_like = matches!(
        s.kind,
        StmtKind::If { .. }
            | StmtKind::While { .. }
            | StmtKind::Unroll { .. }
            | StmtKind::For { .. }
            | StmtKind::Block(_)
    );
    f.write_str(if block_like { "\n" } else { ";\n" })
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_stmt_body(f, self, 0)
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ap) in self.attach_points.iter().enumerate() {
            if i > 0 {
                f.write_str(",\n")?;
            }
            f.write_str(&ap.text)?;
        }
        if let Some(pred) = &self.predicate {
            write!(f, " /{pred}/")?;
        }
        f.write_char(' ')?;
        write_block(f, &self.body, 0)
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, probe) in self.probes.iter().enumerate() {
            if i > 0 {
                f.write_char('\n')?;
            }
            writeln!(f, "{probe}")?;
        }
        Ok(())
    }
}

impl fmt::Display for AttachPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The indented tree dump for `--emit ast`: one node per line, one space
/// of indentation per level, like `bpftrace -d ast`.
pub fn dump_tree(program: &Program) -> String {
    let mut d = TreeDump { out: String::new() };
    d.line(0, "Program");
    for probe in &program.probes {
        for ap in &probe.attach_points {
            d.line(1, &ap.text);
        }
        if let Some(pred) = &probe.predicate {
            d.line(2, "predicate");
            d.expr(3, pred);
        }
        for stmt in &probe.body.stmts {
            d.stmt(2, stmt);
        }
    }
    d.out
}

struct TreeDump {
    out: String,
}

impl TreeDump {
    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.out.push(' ');
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn block(&mut self, depth: usize, label: &str, b: &Block) {
        self.line(depth, label);
        for stmt in &b.stmts {
            self.stmt(depth + 1, stmt);
        }
    }

    fn lvalue(&mut self, depth: usize, l: &LValue) {
        match l {
            LValue::Var(v) => self.line(depth, &format!("variable: ${}", v.name)),
            LValue::Map(m) => self.map(depth, m),
        }
    }

    fn map(&mut self, depth: usize, m: &MapAccess) {
        self.line(depth, &format!("map: @{}", m.name));
        for key in &m.keys {
            self.expr(depth + 1, key);
        }
    }

    fn stmt(&mut self, depth: usize, s: &Stmt) {
        match &s.kind {
            StmtKind::Expr(e) => self.expr(depth, e),
            StmtKind::Assign { target, op, value } => {
                let label = match op {
                    Some(op) => format!("{}=", op.symbol()),
                    None => "=".to_string(),
                };
                self.line(depth, &label);
                self.lvalue(depth + 1, target);
                self.expr(depth + 1, value);
            }
            StmtKind::Delete { map } => {
                self.line(depth, "delete");
                self.map(depth + 1, map);
            }
            StmtKind::If {
                cond,
                then_block,
                else_block,
            } => {
                self.line(depth, "if");
                self.expr(depth + 1, cond);
                self.block(depth + 1, "then", then_block);
                if let Some(b) = else_block {
                    self.block(depth + 1, "else", b);
                }
            }
            StmtKind::Unroll { count, body } => {
                self.line(depth, "unroll");
                self.expr(depth + 1, count);
                self.block(depth + 1, "body", body);
            }
            StmtKind::While { cond, body } => {
                self.line(depth, "while");
                self.expr(depth + 1, cond);
                self.block(depth + 1, "body", body);
            }
            StmtKind::For { var, map, body } => {
                self.line(depth, "for");
                self.line(depth + 1, &format!("variable: ${}", var.name));
                self.map(depth + 1, map);
                self.block(depth + 1, "body", body);
            }
            StmtKind::Break => self.line(depth, "break"),
            StmtKind::Continue => self.line(depth, "continue"),
            StmtKind::Return(value) => {
                self.line(depth, "return");
                if let Some(e) = value {
                    self.expr(depth + 1, e);
                }
            }
            StmtKind::Block(b) => self.block(depth, "block", b),
        }
    }

    fn expr(&mut self, depth: usize, e: &Expr) {
        match &e.kind {
            ExprKind::Int(v) => self.line(depth, &format!("int: {v}")),
            ExprKind::Str(s) => self.line(depth, &format!("string: {}", quote_str(s))),
            ExprKind::Var(v) => self.line(depth, &format!("variable: ${}", v.name)),
            ExprKind::Positional(n) => self.line(depth, &format!("param: ${n}")),
            ExprKind::PositionalCount => self.line(depth, "param: $#"),
            ExprKind::Map(m) => self.map(depth, m),
            ExprKind::Builtin(name) => self.line(depth, &format!("builtin: {name}")),
            ExprKind::Ident(name) => self.line(depth, &format!("identifier: {name}")),
            ExprKind::Call { name, args } => {
                self.line(depth, &format!("call: {}", name.name));
                for a in args {
                    self.expr(depth + 1, a);
                }
            }
            ExprKind::Unary { op, expr } => {
                self.line(depth, op.symbol());
                self.expr(depth + 1, expr);
            }
            ExprKind::Binary { op, lhs, rhs } => {
                self.line(depth, op.symbol());
                self.expr(depth + 1, lhs);
                self.expr(depth + 1, rhs);
            }
            ExprKind::Ternary {
                cond,
                then_expr,
                else_expr,
            } => {
                self.line(depth, "?:");
                self.expr(depth + 1, cond);
                self.expr(depth + 1, then_expr);
                self.expr(depth + 1, else_expr);
            }
            ExprKind::Cast { ty, expr } => {
                self.line(depth, &format!("({ty})"));
                self.expr(depth + 1, expr);
            }
            ExprKind::Field { expr, field, arrow } => {
                let sep = if *arrow { "->" } else { "." };
                self.line(depth, &format!("{sep} {}", field.name));
                self.expr(depth + 1, expr);
            }
            ExprKind::Index { expr, index } => {
                self.line(depth, "[]");
                self.expr(depth + 1, expr);
                self.expr(depth + 1, index);
            }
            ExprKind::IncDec {
                target,
                increment,
                prefix,
            } => {
                let op = if *increment { "++" } else { "--" };
                let form = if *prefix { "pre" } else { "post" };
                self.line(depth, &format!("{op} ({form})"));
                self.lvalue(depth + 1, target);
            }
            ExprKind::Tuple(items) => {
                self.line(depth, "tuple");
                for item in items {
                    self.expr(depth + 1, item);
                }
            }
        }
    }
}
