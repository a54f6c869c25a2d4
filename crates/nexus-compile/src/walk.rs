//! A read-only walk over every expression of a statement list.

use nexus_lang::ast::{Expr, ExprKind, LValue, MapAccess, Stmt, StmtKind};

/// Call `f` on every expression in `stmts`, outer before inner.
pub fn exprs(stmts: &[Stmt], f: &mut dyn FnMut(&Expr)) {
    for s in stmts {
        stmt(s, f);
    }
}

fn map(m: &MapAccess, f: &mut dyn FnMut(&Expr)) {
    for k in &m.keys {
        expr(k, f);
    }
}

fn lvalue(l: &LValue, f: &mut dyn FnMut(&Expr)) {
    if let LValue::Map(m) = l {
        map(m, f);
    }
}

fn stmt(s: &Stmt, f: &mut dyn FnMut(&Expr)) {
    match &s.kind {
        StmtKind::Expr(e) => expr(e, f),
        StmtKind::Assign { target, value, .. } => {
            lvalue(target, f);
            expr(value, f);
        }
        StmtKind::Delete { map: m } => map(m, f),
        StmtKind::If {
            cond,
            then_block,
            else_block,
        } => {
            expr(cond, f);
            exprs(&then_block.stmts, f);
            if let Some(b) = else_block {
                exprs(&b.stmts, f);
            }
        }
        StmtKind::Unroll { count, body } => {
            expr(count, f);
            exprs(&body.stmts, f);
        }
        StmtKind::While { cond, body } => {
            expr(cond, f);
            exprs(&body.stmts, f);
        }
        StmtKind::For { map: m, body, .. } => {
            map(m, f);
            exprs(&body.stmts, f);
        }
        StmtKind::Return(Some(e)) => expr(e, f),
        StmtKind::Block(b) => exprs(&b.stmts, f),
        StmtKind::Break | StmtKind::Continue | StmtKind::Return(None) => {}
    }
}

/// Call `f` on `e` and every expression inside it.
pub fn expr(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match &e.kind {
        ExprKind::Map(m) => map(m, f),
        ExprKind::Call { args, .. } | ExprKind::Tuple(args) => {
            for a in args {
                expr(a, f);
            }
        }
        ExprKind::Unary { expr: x, .. } | ExprKind::Cast { expr: x, .. } => expr(x, f),
        ExprKind::Field { expr: x, .. } => expr(x, f),
        ExprKind::Binary { lhs, rhs, .. } => {
            expr(lhs, f);
            expr(rhs, f);
        }
        ExprKind::Index { expr: x, index } => {
            expr(x, f);
            expr(index, f);
        }
        ExprKind::Ternary {
            cond,
            then_expr,
            else_expr,
        } => {
            expr(cond, f);
            expr(then_expr, f);
            expr(else_expr, f);
        }
        ExprKind::IncDec { target, .. } => lvalue(target, f),
        ExprKind::Int(_)
        | ExprKind::Str(_)
        | ExprKind::Var(_)
        | ExprKind::Positional(_)
        | ExprKind::PositionalCount
        | ExprKind::Builtin(_)
        | ExprKind::Ident(_) => {}
    }
}

/// Call `f` on the map of every `delete()` in `stmts`, nested blocks
/// included.
pub fn deletes(stmts: &[Stmt], f: &mut dyn FnMut(&MapAccess)) {
    for s in stmts {
        match &s.kind {
            StmtKind::Delete { map } => f(map),
            StmtKind::If {
                then_block,
                else_block,
                ..
            } => {
                deletes(&then_block.stmts, f);
                if let Some(b) = else_block {
                    deletes(&b.stmts, f);
                }
            }
            StmtKind::Unroll { body, .. }
            | StmtKind::While { body, .. }
            | StmtKind::For { body, .. } => deletes(&body.stmts, f),
            StmtKind::Block(b) => deletes(&b.stmts, f),
            StmtKind::Expr(_)
            | StmtKind::Assign { .. }
            | StmtKind::Return(_)
            | StmtKind::Break
            | StmtKind::Continue => {}
        }
    }
}
