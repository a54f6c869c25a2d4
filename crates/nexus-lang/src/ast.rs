//! The abstract syntax tree of a bpftrace program.
//!
//! Every node carries a [`Span`] (byte range into the source). The parser
//! resolves nothing: an identifier that is not a known builtin stays an
//! [`ExprKind::Ident`]; the compiler's resolver decides what it means.
//!
//! Stability: this module is the contract with `nexus-compile`; changes are
//! additive only.

use crate::span::Span;

/// A whole program: probe blocks in source order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    /// The probe blocks.
    pub probes: Vec<Probe>,
    /// The whole source.
    pub span: Span,
}

/// One probe block: `attach, attach /predicate/ { body }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// One or more attach points (comma separated in the source).
    pub attach_points: Vec<AttachPoint>,
    /// The `/ expr /` filter, if any.
    pub predicate: Option<Expr>,
    /// The action block.
    pub body: Block,
    /// From the first attach point to the closing brace.
    pub span: Span,
}

/// The probe provider, with aliases already folded
/// (`t` → `Tracepoint`, `kfunc` → `Fentry`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `BEGIN`
    Begin,
    /// `END`
    End,
    /// `tracepoint:` / `t:`
    Tracepoint,
    /// `rawtracepoint:` / `rt:`
    RawTracepoint,
    /// `kprobe:` / `k:`
    Kprobe,
    /// `kretprobe:` / `kr:`
    Kretprobe,
    /// `uprobe:` / `u:`
    Uprobe,
    /// `uretprobe:` / `ur:`
    Uretprobe,
    /// `fentry:` / `kfunc:` / `f:`
    Fentry,
    /// `fexit:` / `kretfunc:` / `fr:`
    Fexit,
    /// `profile:` / `p:`
    Profile,
    /// `interval:` / `i:`
    Interval,
    /// `software:` / `s:`
    Software,
    /// `hardware:` / `h:`
    Hardware,
}

impl ProbeKind {
    /// The canonical (long) provider name, as bpftrace prints it.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Begin => "BEGIN",
            ProbeKind::End => "END",
            ProbeKind::Tracepoint => "tracepoint",
            ProbeKind::RawTracepoint => "rawtracepoint",
            ProbeKind::Kprobe => "kprobe",
            ProbeKind::Kretprobe => "kretprobe",
            ProbeKind::Uprobe => "uprobe",
            ProbeKind::Uretprobe => "uretprobe",
            ProbeKind::Fentry => "fentry",
            ProbeKind::Fexit => "fexit",
            ProbeKind::Profile => "profile",
            ProbeKind::Interval => "interval",
            ProbeKind::Software => "software",
            ProbeKind::Hardware => "hardware",
        }
    }

    /// True for the return-side probes (`kretprobe`, `uretprobe`, `fexit`),
    /// where `retval` is meaningful.
    pub fn is_return(self) -> bool {
        matches!(
            self,
            ProbeKind::Kretprobe | ProbeKind::Uretprobe | ProbeKind::Fexit
        )
    }
}

/// One attach point such as `tracepoint:syscalls:sys_enter_read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachPoint {
    /// The provider (aliases folded).
    pub kind: ProbeKind,
    /// The structured target.
    pub target: AttachTarget,
    /// The attach point exactly as written (e.g. `t:syscalls:sys_enter_*`);
    /// the `probe` builtin reports the canonical form, see
    /// [`AttachPoint::canonical`].
    pub text: String,
    /// Span of `text`.
    pub span: Span,
}

impl AttachPoint {
    /// True when a part contains a `*` or `?` wildcard and must be expanded
    /// against the available probes.
    pub fn has_wildcard(&self) -> bool {
        let wild = |s: &str| s.contains(['*', '?']);
        match &self.target {
            AttachTarget::None | AttachTarget::Timer { .. } => false,
            AttachTarget::Tracepoint { category, event } => wild(category) || wild(event),
            AttachTarget::RawTracepoint { event } => wild(event),
            AttachTarget::Kernel {
                module, function, ..
            } => wild(function) || module.as_deref().is_some_and(wild),
            AttachTarget::User { binary, location } => {
                wild(binary) || matches!(location, UserLocation::Symbol { name, .. } if wild(name))
            }
            AttachTarget::PerfEvent { event, .. } => wild(event),
        }
    }

    /// The attach point with the provider's long name, e.g.
    /// `t:syscalls:sys_enter_read` → `tracepoint:syscalls:sys_enter_read`.
    pub fn canonical(&self) -> String {
        let kind = self.kind.name();
        match &self.target {
            AttachTarget::None => kind.to_string(),
            AttachTarget::Tracepoint { category, event } => {
                format!("{kind}:{category}:{event}")
            }
            AttachTarget::RawTracepoint { event } => format!("{kind}:{event}"),
            AttachTarget::Kernel {
                module,
                function,
                offset,
            } => {
                let mut s = match module {
                    Some(m) => format!("{kind}:{m}:{function}"),
                    None => format!("{kind}:{function}"),
                };
                if let Some(off) = offset {
                    s.push_str(&format!("+{off}"));
                }
                s
            }
            AttachTarget::User { binary, location } => match location {
                UserLocation::Symbol { name, offset: None } => format!("{kind}:{binary}:{name}"),
                UserLocation::Symbol {
                    name,
                    offset: Some(off),
                } => format!("{kind}:{binary}:{name}+{off}"),
                UserLocation::Address(addr) => format!("{kind}:{binary}:{addr:#x}"),
            },
            AttachTarget::Timer { unit, value } => format!("{kind}:{}:{value}", unit.name()),
            AttachTarget::PerfEvent { event, period } => match period {
                Some(p) => format!("{kind}:{event}:{p}"),
                None => format!("{kind}:{event}"),
            },
        }
    }
}

/// What an attach point names, per provider family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachTarget {
    /// `BEGIN` / `END`: no target.
    None,
    /// `tracepoint:CATEGORY:EVENT` (either part may hold wildcards).
    Tracepoint {
        /// Subsystem, e.g. `syscalls`.
        category: String,
        /// Event, e.g. `sys_enter_read`.
        event: String,
    },
    /// `rawtracepoint:EVENT`.
    RawTracepoint {
        /// Raw tracepoint name, e.g. `sched_switch`.
        event: String,
    },
    /// kprobe/kretprobe/fentry/fexit: `[MODULE:]FUNCTION[+OFFSET]`.
    Kernel {
        /// Kernel module, for `fentry:MODULE:FUNC`.
        module: Option<String>,
        /// Function name (may hold wildcards).
        function: String,
        /// `kprobe:FUNC+OFFSET`.
        offset: Option<u64>,
    },
    /// uprobe/uretprobe: `BINARY:LOCATION`.
    User {
        /// Absolute path or library name (`libc`), as written.
        binary: String,
        /// Symbol (+offset) or absolute address.
        location: UserLocation,
    },
    /// profile/interval: `UNIT:VALUE`.
    Timer {
        /// Unit of `value`.
        unit: TimeUnit,
        /// Count of `unit`s (or frequency for `hz`).
        value: u64,
    },
    /// software/hardware: `EVENT[:PERIOD]`.
    PerfEvent {
        /// Event name, e.g. `cpu-clock`, `cache-misses`.
        event: String,
        /// Sample period (events between samples).
        period: Option<u64>,
    },
}

/// Where in a user binary a uprobe attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserLocation {
    /// A symbol (may hold wildcards), with an optional byte offset into it.
    Symbol {
        /// Symbol name.
        name: String,
        /// `FUNC+OFFSET`.
        offset: Option<u64>,
    },
    /// `BINARY:0xADDR`: an address in the binary.
    Address(u64),
}

/// The unit of a `profile:`/`interval:` attach point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// Frequency in hertz.
    Hz,
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
}

impl TimeUnit {
    /// The unit as written in an attach point.
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Hz => "hz",
            TimeUnit::S => "s",
            TimeUnit::Ms => "ms",
            TimeUnit::Us => "us",
        }
    }
}

/// A `{ ... }` statement list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Block {
    /// The statements in order.
    pub stmts: Vec<Stmt>,
    /// From `{` to `}`.
    pub span: Span,
}

/// A statement with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// What the statement is.
    pub kind: StmtKind,
    /// Source range (without the trailing `;`).
    pub span: Span,
}

/// The statement forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StmtKind {
    /// An expression evaluated for its effect: calls (`printf(...)`,
    /// `exit()`, `clear(@m)`), `$x++`, ...
    Expr(Expr),
    /// `target = value` or `target OP= value`.
    Assign {
        /// `$var` or `@map[keys]`.
        target: LValue,
        /// `None` for `=`, `Some(Add)` for `+=`, etc.
        op: Option<BinOp>,
        /// Right-hand side.
        value: Expr,
    },
    /// `delete(@m[k])` or `delete(@m, k)`; both normalise to a map access
    /// with its keys.
    Delete {
        /// The element to delete.
        map: MapAccess,
    },
    /// `if (cond) {...} else {...}`. `else if` is an `else` block holding a
    /// single `If` statement.
    If {
        /// Condition.
        cond: Expr,
        /// Taken branch.
        then_block: Block,
        /// `else` branch.
        else_block: Option<Block>,
    },
    /// `unroll (N) {...}`.
    Unroll {
        /// The repeat count (an integer literal or a positional parameter).
        count: Expr,
        /// Repeated body.
        body: Block,
    },
    /// `while (cond) {...}`.
    While {
        /// Loop condition.
        cond: Expr,
        /// Loop body.
        body: Block,
    },
    /// `for ($kv : @map) {...}`.
    For {
        /// The loop variable (bound to a `(key, value)` tuple).
        var: Variable,
        /// The map iterated (no keys).
        map: MapAccess,
        /// Loop body.
        body: Block,
    },
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// `return` (with an optional value).
    Return(Option<Expr>),
    /// A nested `{ ... }`.
    Block(Block),
}

/// An assignable place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LValue {
    /// `$name`.
    Var(Variable),
    /// `@name`, `@name[keys]`, `@`.
    Map(MapAccess),
}

impl LValue {
    /// Source range of the place.
    pub fn span(&self) -> Span {
        match self {
            LValue::Var(v) => v.span,
            LValue::Map(m) => m.span,
        }
    }
}

/// A name with its span (call names, field names, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it is written.
    pub span: Span,
}

/// A scratch variable `$name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Name without the `$`.
    pub name: String,
    /// Span including the `$`.
    pub span: Span,
}

/// A map reference `@name`, `@name[k1, k2]`, or the anonymous map `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapAccess {
    /// Name without the `@`; empty for the anonymous map `@`.
    pub name: String,
    /// Span of `@name` alone.
    pub name_span: Span,
    /// Keys; empty when the map is used without `[...]`. Several keys form
    /// a tuple key.
    pub keys: Vec<Expr>,
    /// Span including the keys.
    pub span: Span,
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Source range.
    pub span: Span,
}

/// The expression forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    /// Integer literal (negative numbers are `Unary(Neg, Int)`).
    Int(u64),
    /// String literal, escapes already decoded.
    Str(String),
    /// `$name`.
    Var(Variable),
    /// `$1` ... positional parameter.
    Positional(u32),
    /// `$#`: number of positional parameters.
    PositionalCount,
    /// `@name[...]`.
    Map(MapAccess),
    /// A name listed in [`crate::BUILTINS`] (`pid`, `comm`, `arg0`,
    /// `args`, ...), used without a call.
    Builtin(String),
    /// Any other bare identifier (an enum value, a typo, ...). The resolver
    /// decides.
    Ident(String),
    /// `name(args)`.
    Call {
        /// Function name.
        name: Ident,
        /// Arguments in order.
        args: Vec<Expr>,
    },
    /// `op expr`.
    Unary {
        /// Operator.
        op: UnaryOp,
        /// Operand.
        expr: Box<Expr>,
    },
    /// `lhs op rhs`.
    Binary {
        /// Operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `cond ? then_expr : else_expr`.
    Ternary {
        /// Condition.
        cond: Box<Expr>,
        /// Value when true.
        then_expr: Box<Expr>,
        /// Value when false.
        else_expr: Box<Expr>,
    },
    /// `(type) expr`.
    Cast {
        /// Target type.
        ty: TypeName,
        /// Operand.
        expr: Box<Expr>,
    },
    /// `expr.field` or `expr->field` (also `tuple.0`).
    Field {
        /// The struct/pointer/tuple.
        expr: Box<Expr>,
        /// Field name (digits for tuple elements).
        field: Ident,
        /// True for `->`.
        arrow: bool,
    },
    /// `expr[index]` (array or pointer indexing; map keys are in
    /// [`MapAccess`]).
    Index {
        /// Indexed value.
        expr: Box<Expr>,
        /// Index.
        index: Box<Expr>,
    },
    /// `++x`, `x++`, `--x`, `x--` on a variable or map element.
    IncDec {
        /// The place changed.
        target: LValue,
        /// True for `++`.
        increment: bool,
        /// True for the prefix form (value after the change).
        prefix: bool,
    },
    /// `(a, b, ...)` with at least two elements.
    Tuple(Vec<Expr>),
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `!`
    Not,
    /// `~`
    BitNot,
    /// `-`
    Neg,
    /// `*` (dereference)
    Deref,
    /// `&` (address of)
    AddrOf,
}

impl UnaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Not => "!",
            UnaryOp::BitNot => "~",
            UnaryOp::Neg => "-",
            UnaryOp::Deref => "*",
            UnaryOp::AddrOf => "&",
        }
    }
}

/// Binary operators (also the operator of compound assignments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `||` (short-circuit)
    LogOr,
    /// `&&` (short-circuit)
    LogAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `&`
    BitAnd,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::LogOr => "||",
            BinOp::LogAnd => "&&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::BitAnd => "&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
        }
    }

    /// Binding strength: higher binds tighter (`||` is 1, `*` is 10).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::LogOr => 1,
            BinOp::LogAnd => 2,
            BinOp::BitOr => 3,
            BinOp::BitXor => 4,
            BinOp::BitAnd => 5,
            BinOp::Eq | BinOp::Ne => 6,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 7,
            BinOp::Shl | BinOp::Shr => 8,
            BinOp::Add | BinOp::Sub => 9,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 10,
        }
    }
}

/// The type of a cast, e.g. `uint8`, `struct task_struct *`, `uint8[4]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeName {
    /// Base name including any `struct `/`union `/`enum ` prefix, single
    /// spaced: `uint32`, `struct task_struct`.
    pub base: String,
    /// Number of `*`.
    pub pointer_depth: u8,
    /// `[N]` array length, for `(uint8[4])x`.
    pub array_len: Option<u64>,
    /// Span of the type text (inside the parentheses).
    pub span: Span,
}

impl std::fmt::Display for TypeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)?;
        if self.pointer_depth > 0 {
            f.write_str(" ")?;
            for _ in 0..self.pointer_depth {
                f.write_str("*")?;
            }
        }
        if let Some(n) = self.array_len {
            write!(f, "[{n}]")?;
        }
        Ok(())
    }
}

impl Program {
    /// Set every span to `0..0`, so two trees can be compared for
    /// structure alone (e.g. a program and its printed-then-reparsed self,
    /// or a desugared front-end program and a parsed one).
    pub fn clear_spans(&mut self) {
        self.span = Span::default();
        for probe in &mut self.probes {
            probe.span = Span::default();
            for ap in &mut probe.attach_points {
                ap.span = Span::default();
            }
            if let Some(pred) = &mut probe.predicate {
                pred.clear_spans();
            }
            probe.body.clear_spans();
        }
    }
}

impl Block {
    /// See [`Program::clear_spans`].
    pub fn clear_spans(&mut self) {
        self.span = Span::default();
        for stmt in &mut self.stmts {
            stmt.clear_spans();
        }
    }
}

impl Stmt {
    /// See [`Program::clear_spans`].
    pub fn clear_spans(&mut self) {
        self.span = Span::default();
        match &mut self.kind {
            StmtKind::Expr(e) | StmtKind::Return(Some(e)) => e.clear_spans(),
            StmtKind::Assign { target, value, .. } => {
                target.clear_spans();
                value.clear_spans();
            }
            StmtKind::Delete { map } => map.clear_spans(),
            StmtKind::If {
                cond,
                then_block,
                else_block,
            } => {
                cond.clear_spans();
                then_block.clear_spans();
                if let Some(b) = else_block {
                    b.clear_spans();
                }
            }
            StmtKind::Unroll { count: cond, body } | StmtKind::While { cond, body } => {
                cond.clear_spans();
                body.clear_spans();
            }
            StmtKind::For { var, map, body } => {
                var.span = Span::default();
                map.clear_spans();
                body.clear_spans();
            }
            StmtKind::Block(b) => b.clear_spans(),
            StmtKind::Break | StmtKind::Continue | StmtKind::Return(None) => {}
        }
    }
}

impl LValue {
    /// See [`Program::clear_spans`].
    pub fn clear_spans(&mut self) {
        match self {
            LValue::Var(v) => v.span = Span::default(),
            LValue::Map(m) => m.clear_spans(),
        }
    }
}

impl MapAccess {
    /// See [`Program::clear_spans`].
    pub fn clear_spans(&mut self) {
        self.span = Span::default();
        self.name_span = Span::default();
        for key in &mut self.keys {
            key.clear_spans();
        }
    }
}

impl Expr {
    /// See [`Program::clear_spans`].
    pub fn clear_spans(&mut self) {
        self.span = Span::default();
        match &mut self.kind {
            ExprKind::Int(_)
            | ExprKind::Str(_)
            | ExprKind::Positional(_)
            | ExprKind::PositionalCount
            | ExprKind::Builtin(_)
            | ExprKind::Ident(_) => {}
            ExprKind::Var(v) => v.span = Span::default(),
            ExprKind::Map(m) => m.clear_spans(),
            ExprKind::Call { name, args } => {
                name.span = Span::default();
                args.iter_mut().for_each(Expr::clear_spans);
            }
            ExprKind::Unary { expr, .. } => expr.clear_spans(),
            ExprKind::Binary { lhs, rhs, .. } => {
                lhs.clear_spans();
                rhs.clear_spans();
            }
            ExprKind::Ternary {
                cond,
                then_expr,
                else_expr,
            } => {
                cond.clear_spans();
                then_expr.clear_spans();
                else_expr.clear_spans();
            }
            ExprKind::Cast { ty, expr } => {
                ty.span = Span::default();
                expr.clear_spans();
            }
            ExprKind::Field { expr, field, .. } => {
                field.span = Span::default();
                expr.clear_spans();
            }
            ExprKind::Index { expr, index } => {
                expr.clear_spans();
                index.clear_spans();
            }
            ExprKind::IncDec { target, .. } => target.clear_spans(),
            ExprKind::Tuple(items) => items.iter_mut().for_each(Expr::clear_spans),
        }
    }
}
