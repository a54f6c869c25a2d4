//! Resolution and type checking: which builtin or function a name is, what
//! type every expression has, what every map holds (one aggregation kind per
//! map, consistent across all uses), and whether each call is valid where
//! it stands. Errors are [`Diagnostic`]s with spans, hints and "did you mean".

use crate::artifact::MapValue;
use crate::catalog::{KernelMember, KernelType};
use crate::format;
use crate::kernel_types::{self, KernelTypes};
use crate::providers::{Expanded, Provider};
use crate::ty::{COMM_LEN, DEFAULT_STRLEN, Space, Ty};
use nexus_lang::ast::{
    BinOp, Expr, ExprKind, LValue, MapAccess, ProbeKind, Stmt, StmtKind, UnaryOp,
};
use nexus_lang::{Diagnostic, Span, did_you_mean};
use std::collections::{BTreeMap, HashMap};

/// Largest `buf()` capacity.
pub const MAX_BUF: u32 = 256;
/// Largest `str(p, n)` capacity.
pub const MAX_STR: u32 = 1024;

/// An aggregation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// `count()`
    Count,
    /// `sum(v)`
    Sum,
    /// `min(v)`
    Min,
    /// `max(v)`
    Max,
    /// `avg(v)`
    Avg,
    /// `stats(v)`
    Stats,
    /// `hist(v)`
    Hist,
    /// `lhist(v, min, max, step)`
    Lhist {
        /// Lower bound.
        min: i64,
        /// Upper bound.
        max: i64,
        /// Step.
        step: i64,
    },
}

impl Agg {
    /// The function name.
    pub fn name(self) -> &'static str {
        match self {
            Agg::Count => "count",
            Agg::Sum => "sum",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Avg => "avg",
            Agg::Stats => "stats",
            Agg::Hist => "hist",
            Agg::Lhist { .. } => "lhist",
        }
    }
}

/// What a map's values are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapVal {
    /// Assigned values.
    Scalar(Ty),
    /// An aggregation; `signed` is the signedness of the aggregated values.
    Agg(Agg, bool),
}

impl MapVal {
    /// The Artifact's description.
    pub fn artifact(&self) -> MapValue {
        match self {
            MapVal::Scalar(ty) => MapValue::Scalar {
                ty: ty.layout().unwrap_or(crate::artifact::Type::U64),
            },
            MapVal::Agg(a, signed) => {
                let signed = *signed;
                match *a {
                    Agg::Count => MapValue::Count,
                    Agg::Sum => MapValue::Sum { signed },
                    Agg::Min => MapValue::Min { signed },
                    Agg::Max => MapValue::Max { signed },
                    Agg::Avg => MapValue::Avg { signed },
                    Agg::Stats => MapValue::Stats { signed },
                    Agg::Hist => MapValue::Hist,
                    Agg::Lhist { min, max, step } => MapValue::Lhist { min, max, step },
                }
            }
        }
    }
}

/// Everything known about one user map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDecl {
    /// Name with `@`.
    pub name: String,
    /// Key types (empty: keyless).
    pub keys: Vec<Ty>,
    /// Value kind.
    pub value: MapVal,
    /// First use.
    pub span: Span,
}

/// One program to generate: a probe block with one or more expanded attach
/// points that share code.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Index of the probe block.
    pub probe_index: usize,
    /// The provider kind.
    pub kind: ProbeKind,
    /// The provider.
    pub provider: &'static dyn Provider,
    /// Expanded attach points (one when the body depends on which fired).
    pub expanded: Vec<Expanded>,
    /// The block's attach points as written.
    pub probe_text: String,
    /// Set when syscall tracepoints are lowered onto the `sys_enter` /
    /// `sys_exit` raw tracepoints (filtered by syscall number).
    pub raw_syscalls: Option<RawSyscalls>,
}

/// Syscall tracepoints lowered onto one raw tracepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSyscalls {
    /// `sys_exit` rather than `sys_enter`.
    pub exit: bool,
    /// The syscall numbers the program handles (sorted, unique). Empty
    /// for `raw_syscalls:sys_enter`/`sys_exit`, which take every syscall:
    /// no filter.
    pub nrs: Vec<u32>,
}

impl std::fmt::Debug for dyn Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Provider")
    }
}

impl Unit {
    /// The attach point whose facts (args layout, names) the code uses.
    pub fn first(&self) -> &Expanded {
        &self.expanded[0]
    }

    /// The program type to load as.
    pub fn prog_kind(&self) -> crate::artifact::ProgKind {
        if self.raw_syscalls.is_some() {
            crate::artifact::ProgKind::RawTracepoint
        } else {
            self.provider.prog_kind(self.kind)
        }
    }

    /// Where the program attaches (duplicates removed: many syscall
    /// tracepoints share one raw tracepoint).
    pub fn attach(&self) -> Vec<crate::artifact::AttachSpec> {
        let mut out: Vec<crate::artifact::AttachSpec> = Vec::new();
        for e in &self.expanded {
            if !out.contains(&e.attach) {
                out.push(e.attach.clone());
            }
        }
        out
    }
}

/// The typing environment of one unit.
#[derive(Debug)]
pub struct Typer<'a> {
    /// The unit.
    pub unit: &'a Unit,
    /// Every user map.
    pub maps: &'a BTreeMap<String, MapDecl>,
    /// Scratch variables of the unit.
    pub vars: &'a HashMap<String, Ty>,
    /// Positional parameters `$1...`.
    pub params: &'a [String],
    /// Kernel struct members (BTF).
    pub kernel: &'a KernelTypes<'a>,
}

/// The field name of `args.NAME` or `args->NAME` (bpftrace 0.17 writes
/// the arrow, 0.18+ the dot; both mean the same everywhere `args` exists).
pub fn args_field(e: &Expr) -> Option<&nexus_lang::ast::Ident> {
    match &e.kind {
        ExprKind::Field { expr, field, .. } if is_args(expr) => Some(field),
        _ => None,
    }
}

/// True for the `args` builtin itself.
pub fn is_args(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Builtin(b) if b == "args")
}

/// The most frames `kstack(N)`/`ustack(N)` may ask for, as in bpftrace.
pub const MAX_STACK_LIMIT: u32 = 1024;

/// The frame limit of a `kstack`/`ustack` call with arguments `args`
/// (`kstack`, `kstack(N)`, `kstack(MODE)`, `kstack(MODE, N)`): the stack-trace
/// map's value holds this many frames, so the kernel truncates the stack
/// and equal top-N stacks share one id. Modes other than the default
/// `bpftrace` are refused: the runtime prints every stack in that format.
pub fn stack_limit(name: &str, args: &[Expr]) -> Result<u32, Diagnostic> {
    let mut limit = crate::lower::STACK_DEPTH;
    for (i, a) in args.iter().enumerate() {
        match (&a.kind, const_int(a)) {
            (ExprKind::Ident(mode), _) if i == 0 => match mode.as_str() {
                "bpftrace" => {}
                "perf" => {
                    return Err(Diagnostic::error(
                        a.span,
                        format!("{name}(perf) is not supported yet"),
                    )
                    .with_hint(format!(
                        "{name}() and {name}(bpftrace) print the default format"
                    )));
                }
                _ => {
                    return Err(Diagnostic::error(
                        a.span,
                        format!("unknown stack mode `{mode}`: bpftrace or perf"),
                    ));
                }
            },
            (_, Some(n)) if i + 1 == args.len() => {
                limit = u32::try_from(n)
                    .ok()
                    .filter(|n| (1..=MAX_STACK_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Diagnostic::error(
                            a.span,
                            format!(
                                "{name}() frame limit must be from 1 to {MAX_STACK_LIMIT}, {n} given"
                            ),
                        )
                    })?;
            }
            _ => {
                return Err(Diagnostic::error(
                    a.span,
                    format!("{name}() takes a mode name and/or a frame limit: {name}(MODE, N)"),
                ));
            }
        }
    }
    Ok(limit)
}

/// An integer literal's value, if `e` is one (also `-N`).
pub fn const_int(e: &Expr) -> Option<i64> {
    match &e.kind {
        ExprKind::Int(n) => i64::try_from(*n).ok(),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => const_int(expr).map(|n| -n),
        _ => None,
    }
}

/// The integer type a cast names, if it is one.
pub fn cast_int(base: &str) -> Option<Ty> {
    let (signed, bits) = match base {
        "int8" | "i8" | "char" => (true, 8),
        "int16" | "i16" | "short" => (true, 16),
        "int32" | "i32" | "int" => (true, 32),
        "int64" | "i64" | "long" => (true, 64),
        "uint8" | "u8" | "unsigned char" => (false, 8),
        "uint16" | "u16" | "unsigned short" => (false, 16),
        "uint32" | "u32" | "unsigned int" => (false, 32),
        "uint64" | "u64" | "unsigned long" => (false, 64),
        _ => return None,
    };
    Some(Ty::Int {
        bits,
        signed,
        space: Space::None,
    })
}

/// The aggregation a call makes, or `None` if `name` is not one.
pub fn agg_of(name: &str, args: &[Expr], span: Span) -> Option<Result<Agg, Diagnostic>> {
    let want = |n: usize| -> Result<(), Diagnostic> {
        if args.len() == n {
            Ok(())
        } else {
            Err(Diagnostic::error(
                span,
                format!(
                    "`{name}()` takes {n} argument{}, got {}",
                    if n == 1 { "" } else { "s" },
                    args.len()
                ),
            ))
        }
    };
    Some((|| {
        Ok(match name {
            "count" => {
                want(0)?;
                Agg::Count
            }
            "sum" | "min" | "max" | "avg" | "stats" | "hist" => {
                want(1)?;
                match name {
                    "sum" => Agg::Sum,
                    "min" => Agg::Min,
                    "max" => Agg::Max,
                    "avg" => Agg::Avg,
                    "stats" => Agg::Stats,
                    _ => Agg::Hist,
                }
            }
            "lhist" => {
                want(4)?;
                let c = |i: usize, what: &str| {
                    const_int(&args[i]).ok_or_else(|| {
                        Diagnostic::error(
                            args[i].span,
                            format!("lhist() {what} must be an integer literal"),
                        )
                    })
                };
                let (min, max, step) = (c(1, "min")?, c(2, "max")?, c(3, "step")?);
                if step <= 0 || max <= min {
                    return Err(
                        Diagnostic::error(span, "lhist() needs min < max and step > 0")
                            .with_hint("e.g. lhist($x, 0, 100, 10)"),
                    );
                }
                if (max - min) / step > 1000 {
                    return Err(Diagnostic::error(
                        span,
                        "lhist() would have more than 1000 buckets",
                    )
                    .with_hint("use a larger step"));
                }
                Agg::Lhist { min, max, step }
            }
            _ => return Err(Diagnostic::error(span, "not an aggregation")),
        })
    })())
    .filter(|r| !matches!(r, Err(d) if d.message == "not an aggregation"))
}

/// Functions that are statements, not values.
const STATEMENT_FUNCTIONS: &[&str] =
    &["printf", "print", "exit", "clear", "zero", "time", "delete"];

impl Typer<'_> {
    fn err(span: Span, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::error(span, msg)
    }

    /// The type of `e`.
    pub fn ty(&self, e: &Expr) -> Result<Ty, Diagnostic> {
        match &e.kind {
            ExprKind::Int(n) => Ok(if i64::try_from(*n).is_ok() {
                Ty::I64
            } else {
                Ty::U64
            }),
            ExprKind::Str(s) => Ok(Ty::Str(s.len() as u32 + 1)),
            ExprKind::Var(v) => self.vars.get(&v.name).cloned().ok_or_else(|| {
                let hint = did_you_mean(&v.name, self.vars.keys().map(String::as_str))
                    .map(|s| format!("did you mean `${s}`?"));
                Self::err(
                    v.span,
                    format!("variable `${}` is used before it is assigned", v.name),
                )
                .with_hint_opt(hint)
            }),
            ExprKind::Positional(n) => {
                let Some(p) = self.params.get((*n as usize).wrapping_sub(1)) else {
                    return Err(Self::err(
                        e.span,
                        format!("positional parameter ${n} was not given"),
                    )
                    .with_hint("pass it after the program, or use $# to count them"));
                };
                Ok(if p.parse::<i64>().is_ok() {
                    Ty::I64
                } else {
                    Ty::Str(p.len() as u32 + 1)
                })
            }
            ExprKind::PositionalCount => Ok(Ty::I64),
            ExprKind::Map(m) => self.map_read(m),
            ExprKind::Builtin(name) => self.builtin(name, e.span),
            ExprKind::Ident(name) => Err(nexus_lang::unknown_identifier(name, e.span)),
            ExprKind::Call { name, args } => self.call(&name.name, args, name.span, e.span),
            ExprKind::Unary { op, expr } => {
                let t = self.ty(expr)?;
                match op {
                    UnaryOp::Not | UnaryOp::BitNot | UnaryOp::Neg => {
                        if !t.is_int() {
                            return Err(Self::err(
                                e.span,
                                format!("`{}` needs an integer, not {}", op.symbol(), t.describe()),
                            ));
                        }
                        Ok(if *op == UnaryOp::Not {
                            Ty::I64
                        } else {
                            int64(&t)
                        })
                    }
                    UnaryOp::Deref | UnaryOp::AddrOf => Err(Self::err(
                        e.span,
                        format!("the `{}` operator is not supported yet", op.symbol()),
                    )
                    .with_hint("read memory with str(ptr) or buf(ptr, len)")),
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let (a, b) = (self.ty(lhs)?, self.ty(rhs)?);
                self.binary(*op, &a, &b, arith_signed(lhs, rhs, &a, &b), e.span)
            }
            ExprKind::Ternary {
                cond,
                then_expr,
                else_expr,
            } => {
                let c = self.ty(cond)?;
                if !c.is_int() {
                    return Err(Self::err(cond.span, "a condition must be an integer"));
                }
                let (a, b) = (self.ty(then_expr)?, self.ty(else_expr)?);
                a.unify(&b).ok_or_else(|| {
                    Self::err(
                        e.span,
                        format!(
                            "the branches of `?:` have different types: {} and {}",
                            a.describe(),
                            b.describe()
                        ),
                    )
                })
            }
            ExprKind::Cast { ty, expr } => {
                let t = self.ty(expr)?;
                if kernel_types::cast_pointee(&ty.base, ty.pointer_depth).is_some() {
                    if !t.is_int() {
                        return Err(Self::err(
                            e.span,
                            format!("cannot cast {} to a pointer", t.describe()),
                        ));
                    }
                    return Ok(Ty::Int {
                        bits: 64,
                        signed: false,
                        space: Space::Kernel,
                    });
                }
                let target = (ty.pointer_depth == 0 && ty.array_len.is_none())
                    .then(|| cast_int(&ty.base))
                    .flatten()
                    .ok_or_else(|| {
                        Self::err(ty.span, format!("cannot cast to `{ty}`"))
                            .with_hint("integer casts such as (uint32) or (int8) are supported")
                    })?;
                if !t.is_int() {
                    return Err(Self::err(
                        e.span,
                        format!("cannot cast {} to an integer", t.describe()),
                    ));
                }
                Ok(target)
            }
            ExprKind::Field { expr, field, arrow } => {
                if let Some(m) = self.kernel_member(expr, &field.name, *arrow, field.span)? {
                    return kernel_types::value_ty(&m.ty).ok_or_else(|| {
                        Self::err(
                            field.span,
                            format!(
                                "field `{}` is {}, which is not a value",
                                field.name,
                                kernel_types::describe(&m.ty)
                            ),
                        )
                        .with_hint("read one of its members")
                    });
                }
                self.field(expr, &field.name, field.span)
            }
            ExprKind::Index { .. } => Err(Self::err(e.span, "indexing is not supported yet")),
            ExprKind::IncDec { target, .. } => {
                self.lvalue_int(target)?;
                Ok(Ty::I64)
            }
            ExprKind::Tuple(elems) => Ok(Ty::Tuple(
                elems.iter().map(|x| self.ty(x)).collect::<Result<_, _>>()?,
            )),
        }
    }

    /// Check `target` can hold an integer for `++`/`+=`.
    pub fn lvalue_int(&self, target: &LValue) -> Result<(), Diagnostic> {
        match target {
            LValue::Var(v) => match self.vars.get(&v.name) {
                Some(t) if t.is_int() => Ok(()),
                Some(t) => Err(Self::err(
                    v.span,
                    format!("`${}` holds {}, not an integer", v.name, t.describe()),
                )),
                None => Err(Self::err(
                    v.span,
                    format!("variable `${}` is used before it is assigned", v.name),
                )),
            },
            LValue::Map(m) => {
                if let Some(d) = self.maps.get(&map_name(m)) {
                    if let MapVal::Agg(a, _) = d.value {
                        return Err(Self::err(
                            m.span,
                            format!(
                                "`{}` holds a {}() aggregation and cannot be changed arithmetically",
                                d.name,
                                a.name()
                            ),
                        ));
                    }
                    if let MapVal::Scalar(t) = &d.value
                        && !t.is_int()
                    {
                        return Err(Self::err(
                            m.span,
                            format!("`{}` holds {}, not an integer", d.name, t.describe()),
                        ));
                    }
                }
                for k in &m.keys {
                    self.ty(k)?;
                }
                Ok(())
            }
        }
    }

    fn map_read(&self, m: &MapAccess) -> Result<Ty, Diagnostic> {
        let name = map_name(m);
        let Some(d) = self.maps.get(&name) else {
            let hint = did_you_mean(&name, self.maps.keys().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"));
            return Err(
                Self::err(m.name_span, format!("map `{name}` is never assigned"))
                    .with_label("unknown map")
                    .with_hint_opt(hint),
            );
        };
        for k in &m.keys {
            self.ty(k)?;
        }
        if m.keys.len() != d.keys.len() {
            return Err(key_count(m, d));
        }
        match &d.value {
            MapVal::Scalar(t) => Ok(t.clone()),
            MapVal::Agg(a, _) => Err(Self::err(
                m.span,
                format!(
                    "`{name}` holds a {}() aggregation, which cannot be read in an expression",
                    a.name()
                ),
            )
            .with_hint(format!("print it with print({name})"))),
        }
    }

    fn builtin(&self, name: &str, span: Span) -> Result<Ty, Diagnostic> {
        let p = self.unit.provider;
        let kind = self.unit.kind.name();
        Ok(match name {
            "pid" | "tid" | "uid" | "gid" | "cpu" | "numaid" => Ty::uint(32),
            "nsecs" | "elapsed" | "cgroup" | "jiffies" => Ty::U64,
            "rand" => Ty::uint(32),
            "cpid" => Ty::uint(32),
            "comm" => Ty::Str(COMM_LEN),
            "curtask" => Ty::Int {
                bits: 64,
                signed: false,
                space: Space::Kernel,
            },
            "probe" => Ty::Str(longest(self.unit.expanded.iter().map(|e| e.probe.len()))),
            "func" => {
                if self.unit.first().func.is_empty() {
                    return Err(Self::err(
                        span,
                        format!("`func` is not available in {kind} probes"),
                    ));
                }
                Ty::Str(longest(self.unit.expanded.iter().map(|e| e.func.len())))
            }
            "retval" => {
                if p.retval(self.unit.kind, self.unit.first()).is_none() {
                    return Err(Self::err(
                        span,
                        format!("`retval` is not available in {kind} probes"),
                    )
                    .with_hint("retval exists in kretprobe, uretprobe and fexit probes"));
                }
                Ty::I64
            }
            "args" => {
                return Err(Self::err(span, "`args` needs a field, e.g. args.filename"));
            }
            "kstack" | "ustack" => {
                if !p.has_stack() {
                    return Err(Self::err(
                        span,
                        format!("`{name}` is not available in {kind} probes"),
                    ));
                }
                if name == "kstack" {
                    Ty::Kstack
                } else {
                    Ty::Ustack
                }
            }
            _ => {
                if let Some(n) = name.strip_prefix("arg").and_then(|d| d.parse::<u32>().ok()) {
                    if p.arg(n).is_none() {
                        let hint = if self.unit.first().args.is_some() {
                            "use args.NAME in this probe".to_string()
                        } else {
                            "argN exists in kprobe, uprobe and rawtracepoint probes (arg0..arg5)"
                                .to_string()
                        };
                        return Err(Self::err(
                            span,
                            format!("`{name}` is not available in {kind} probes"),
                        )
                        .with_hint(hint));
                    }
                    return Ok(Ty::Int {
                        bits: 64,
                        signed: false,
                        space: p.space(),
                    });
                }
                if nexus_lang::is_builtin(name) {
                    return Err(Self::err(
                        span,
                        format!("builtin `{name}` is not supported yet"),
                    ));
                }
                return Err(nexus_lang::unknown_identifier(name, span));
            }
        })
    }

    fn field(&self, base: &Expr, field: &str, span: Span) -> Result<Ty, Diagnostic> {
        if is_args(base) {
            let Some(args) = &self.unit.first().args else {
                return Err(Self::err(
                    base.span,
                    format!(
                        "`args` is not available in {} probes",
                        self.unit.kind.name()
                    ),
                ));
            };
            return match args.iter().find(|a| a.name == field) {
                Some(a) => Ok(a.ty()),
                None => {
                    let hint = did_you_mean(field, args.iter().map(|a| a.name.as_str()))
                        .map(|s| format!("did you mean `args.{s}`?"));
                    Err(Self::err(
                        span,
                        format!("`{}` has no field `{field}`", self.unit.first().probe),
                    )
                    .with_label("unknown field")
                    .with_hint_opt(hint)
                    .with_note(format!(
                        "fields: {}",
                        args.iter()
                            .map(|a| a.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            };
        }
        let t = self.ty(base)?;
        if let Ty::Tuple(elems) = &t {
            if let Some(x) = field.parse::<usize>().ok().and_then(|i| elems.get(i)) {
                return Ok(x.clone());
            }
            return Err(Self::err(span, format!("tuple has no element `{field}`")));
        }
        Err(Self::err(span, format!("{} has no fields", t.describe())).with_hint(
            "kernel struct fields are read through curtask or a cast: ((struct task_struct *)$p)->pid",
        ))
    }

    /// The BTF type of `e` when it is a kernel struct value: `curtask`, a
    /// cast to a struct pointer, or a member of one.
    pub fn kernel_type(&self, e: &Expr) -> Result<Option<KernelType>, Diagnostic> {
        Ok(match &e.kind {
            ExprKind::Builtin(b) if b == "curtask" => Some(KernelType::Pointer {
                pointee: Some("task_struct".into()),
            }),
            ExprKind::Cast { ty, .. } => kernel_types::cast_pointee(&ty.base, ty.pointer_depth)
                .map(|s| KernelType::Pointer {
                    pointee: Some(s.to_string()),
                }),
            ExprKind::Field { expr, field, arrow } => self
                .kernel_member(expr, &field.name, *arrow, field.span)?
                .map(|m| m.ty),
            _ => None,
        })
    }

    /// Member `field` of `base` (`base->field` when `arrow`) when `base` is
    /// BTF-typed; `Ok(None)` when it is not (tuples, `args`).
    pub fn kernel_member(
        &self,
        base: &Expr,
        field: &str,
        arrow: bool,
        span: Span,
    ) -> Result<Option<KernelMember>, Diagnostic> {
        if is_args(base) {
            return Ok(None);
        }
        let Some(bt) = self.kernel_type(base)? else {
            return Ok(None);
        };
        let strukt = match (&bt, arrow) {
            (KernelType::Pointer { pointee: Some(s) }, true)
            | (KernelType::Composite { name: Some(s) }, false) => s.clone(),
            (KernelType::Pointer { pointee: Some(s) }, false) => {
                return Err(Self::err(
                    span,
                    format!("this is a pointer (struct {s} *): use `->{field}`"),
                ));
            }
            (KernelType::Composite { name: Some(s) }, true) => {
                return Err(Self::err(
                    span,
                    format!("struct {s} is not a pointer: use `.{field}`"),
                ));
            }
            _ => {
                return Err(Self::err(
                    span,
                    format!("{} has no fields", kernel_types::describe(&bt)),
                ));
            }
        };
        match self.kernel.member(&strukt, field) {
            Ok(Some(m)) => Ok(Some(m)),
            Ok(None) => Err(Self::err(span, format!("struct {strukt} has no field `{field}`"))
                .with_hint(
                    "kernel struct fields come from BTF (/sys/kernel/btf/vmlinux); bitfields cannot be read",
                )),
            Err(e) => Err(Self::err(span, format!("cannot look up struct {strukt}: {e}"))),
        }
    }

    fn binary(
        &self,
        op: BinOp,
        a: &Ty,
        b: &Ty,
        signed: bool,
        span: Span,
    ) -> Result<Ty, Diagnostic> {
        let strings = matches!((a, b), (Ty::Str(_), Ty::Str(_)));
        match op {
            BinOp::Eq | BinOp::Ne if strings => Ok(Ty::I64),
            _ if a.is_int() && b.is_int() => Ok(match op {
                BinOp::Eq
                | BinOp::Ne
                | BinOp::Lt
                | BinOp::Le
                | BinOp::Gt
                | BinOp::Ge
                | BinOp::LogAnd
                | BinOp::LogOr => Ty::I64,
                _ => {
                    if signed {
                        Ty::I64
                    } else {
                        Ty::U64
                    }
                }
            }),
            _ => Err(Self::err(
                span,
                format!(
                    "`{}` cannot combine {} and {}",
                    op.symbol(),
                    a.describe(),
                    b.describe()
                ),
            )
            .with_hint_opt(strings.then(|| "strings support only == and !=".to_string()))),
        }
    }

    fn call(
        &self,
        name: &str,
        args: &[Expr],
        name_span: Span,
        span: Span,
    ) -> Result<Ty, Diagnostic> {
        let argc = |n: std::ops::RangeInclusive<usize>| -> Result<(), Diagnostic> {
            if n.contains(&args.len()) {
                Ok(())
            } else {
                Err(Self::err(
                    span,
                    format!(
                        "`{name}()` takes {} arguments, got {}",
                        fmt_range(&n),
                        args.len()
                    ),
                ))
            }
        };
        match name {
            "str" => {
                argc(1..=2)?;
                let t = self.ty(&args[0])?;
                let len = match args.get(1) {
                    Some(n) => {
                        let n = const_int(n)
                            .filter(|&n| n > 0 && n <= MAX_STR as i64)
                            .ok_or_else(|| Self::err(n.span, format!("str() length must be an integer literal from 1 to {MAX_STR}")))?;
                        n as u32 + 1
                    }
                    None => DEFAULT_STRLEN,
                };
                match t {
                    Ty::Int { .. } => Ok(Ty::Str(len)),
                    Ty::Str(n) => Ok(Ty::Str(n.min(len))),
                    t => Err(Self::err(
                        args[0].span,
                        format!("str() needs a pointer, not {}", t.describe()),
                    )),
                }
            }
            "buf" => {
                argc(2..=2)?;
                if !self.ty(&args[0])?.is_int() {
                    return Err(Self::err(args[0].span, "buf() needs a pointer"));
                }
                let n = const_int(&args[1])
                    .filter(|&n| n > 0 && n <= MAX_BUF as i64)
                    .ok_or_else(|| {
                        Self::err(
                            args[1].span,
                            format!("buf() length must be an integer literal from 1 to {MAX_BUF}"),
                        )
                    })?;
                Ok(Ty::Buf(n as u32))
            }
            "ksym" | "usym" => {
                argc(1..=1)?;
                if !self.ty(&args[0])?.is_int() {
                    return Err(Self::err(
                        args[0].span,
                        format!("{name}() needs an address"),
                    ));
                }
                Ok(if name == "ksym" { Ty::Ksym } else { Ty::Usym })
            }
            "kstack" | "ustack" => {
                argc(0..=2)?;
                stack_limit(name, args)?;
                self.builtin(name, name_span)
            }
            "strncmp" => {
                argc(3..=3)?;
                let (a, b) = (self.ty(&args[0])?, self.ty(&args[1])?);
                if !matches!(a, Ty::Str(_)) || !matches!(b, Ty::Str(_)) {
                    return Err(Self::err(span, "strncmp() compares two strings"));
                }
                if const_int(&args[2]).is_none_or(|n| n < 0) {
                    return Err(Self::err(
                        args[2].span,
                        "strncmp() length must be an integer literal",
                    ));
                }
                Ok(Ty::I64)
            }
            _ if agg_of(name, args, span).is_some() => Err(Self::err(
                span,
                format!("{name}() can only be assigned to a map"),
            )
            .with_hint(format!("e.g. @x = {name}(...)"))),
            _ if STATEMENT_FUNCTIONS.contains(&name) => Err(Self::err(
                span,
                format!("{name}() has no value; use it as a statement"),
            )),
            _ if nexus_lang::is_function(name) => Err(Self::err(
                name_span,
                format!("function `{name}` is not supported by bpfnexus yet"),
            )),
            _ => Err(nexus_lang::unknown_function(name, name_span)),
        }
    }
}

fn fmt_range(r: &std::ops::RangeInclusive<usize>) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{} to {}", r.start(), r.end())
    }
}

fn longest(lens: impl Iterator<Item = usize>) -> u32 {
    lens.max().unwrap_or(0) as u32 + 1
}

/// Whether integer arithmetic or comparison of `lhs` and `rhs` is signed.
/// A non-negative literal adopts the other side's signedness (so
/// `(uint64)x - 1` stays unsigned); otherwise signed wins.
pub fn arith_signed(lhs: &Expr, rhs: &Expr, a: &Ty, b: &Ty) -> bool {
    match (&lhs.kind, &rhs.kind) {
        (ExprKind::Int(_), _) => b.is_signed(),
        (_, ExprKind::Int(_)) => a.is_signed(),
        _ => a.is_signed() || b.is_signed(),
    }
}

/// Integers widened to 64 bits, keeping signedness.
fn int64(t: &Ty) -> Ty {
    if t.is_signed() { Ty::I64 } else { Ty::U64 }
}

/// `@name` (or `@` for the anonymous map).
pub fn map_name(m: &MapAccess) -> String {
    format!("@{}", m.name)
}

fn key_count(m: &MapAccess, d: &MapDecl) -> Diagnostic {
    Diagnostic::error(
        m.span,
        format!(
            "`{}` is used with {} key{} here but {} elsewhere",
            d.name,
            m.keys.len(),
            if m.keys.len() == 1 { "" } else { "s" },
            d.keys.len()
        ),
    )
    .with_hint("every use of a map needs the same number of keys")
}

/// The statement-walking half of checking: registers maps and variables,
/// validates statement-only calls, collects diagnostics.
#[derive(Debug)]
pub struct Checker<'a> {
    /// Every user map, by name.
    pub maps: BTreeMap<String, MapDecl>,
    /// Diagnostics so far.
    pub diags: Vec<Diagnostic>,
    /// Positional parameters.
    pub params: &'a [String],
    /// When false, only maps/vars are collected (a pre-pass) and errors are
    /// dropped.
    pub report: bool,
    /// Kernel struct members (BTF).
    pub kernel: &'a KernelTypes<'a>,
}

impl<'a> Checker<'a> {
    /// A checker with no maps yet.
    pub fn new(params: &'a [String], kernel: &'a KernelTypes<'a>) -> Self {
        Checker {
            maps: BTreeMap::new(),
            diags: Vec::new(),
            params,
            report: true,
            kernel,
        }
    }

    fn emit(&mut self, d: Diagnostic) {
        if self.report && !self.diags.contains(&d) {
            self.diags.push(d);
        }
    }

    /// Check a unit's predicate and body; returns its variables' types.
    pub fn unit(&mut self, unit: &Unit, pred: Option<&Expr>, body: &[Stmt]) -> HashMap<String, Ty> {
        let mut vars = HashMap::new();
        if let Some(p) = pred {
            match self.typer(unit, &vars).ty(p) {
                Ok(t) if !t.is_int() => self.emit(Diagnostic::error(
                    p.span,
                    format!("a predicate must be an integer, not {}", t.describe()),
                )),
                Ok(_) => {}
                Err(d) => self.emit(d),
            }
        }
        self.block(unit, &mut vars, body, 0);
        vars
    }

    fn typer<'b>(&'b self, unit: &'b Unit, vars: &'b HashMap<String, Ty>) -> Typer<'b> {
        Typer {
            unit,
            maps: &self.maps,
            vars,
            params: self.params,
            kernel: self.kernel,
        }
    }

    fn expr(&mut self, unit: &Unit, vars: &HashMap<String, Ty>, e: &Expr) -> Option<Ty> {
        match self.typer(unit, vars).ty(e) {
            Ok(t) => Some(t),
            Err(d) => {
                self.emit(d);
                None
            }
        }
    }

    fn block(&mut self, unit: &Unit, vars: &mut HashMap<String, Ty>, stmts: &[Stmt], depth: u32) {
        for s in stmts {
            self.stmt(unit, vars, s, depth);
        }
    }

    fn stmt(&mut self, unit: &Unit, vars: &mut HashMap<String, Ty>, s: &Stmt, depth: u32) {
        match &s.kind {
            StmtKind::Expr(e) => self.expr_stmt(unit, vars, e, s.span),
            StmtKind::Assign { target, op, value } => self.assign(unit, vars, target, *op, value),
            StmtKind::Delete { map } => {
                let name = map_name(map);
                match self.maps.get(&name) {
                    Some(d) if d.keys.len() != map.keys.len() => {
                        let d = key_count(map, d);
                        self.emit(d);
                    }
                    Some(_) => {
                        for k in &map.keys {
                            self.expr(unit, vars, k);
                        }
                    }
                    None => self.unknown_map(map),
                }
            }
            StmtKind::If {
                cond,
                then_block,
                else_block,
            } => {
                if let Some(t) = self.expr(unit, vars, cond)
                    && !t.is_int()
                {
                    self.emit(Diagnostic::error(
                        cond.span,
                        format!("an if condition must be an integer, not {}", t.describe()),
                    ));
                }
                self.block(unit, vars, &then_block.stmts, depth);
                if let Some(b) = else_block {
                    self.block(unit, vars, &b.stmts, depth);
                }
            }
            StmtKind::Unroll { count, body } => {
                match const_int(count) {
                    Some(n) if (1..=100).contains(&n) => {}
                    _ => self.emit(Diagnostic::error(
                        count.span,
                        "unroll count must be an integer literal from 1 to 100",
                    )),
                }
                self.block(unit, vars, &body.stmts, depth);
            }
            StmtKind::While { cond, body } => {
                if let Some(t) = self.expr(unit, vars, cond)
                    && !t.is_int()
                {
                    self.emit(Diagnostic::error(
                        cond.span,
                        "a while condition must be an integer",
                    ));
                }
                self.block(unit, vars, &body.stmts, depth + 1);
            }
            StmtKind::Block(b) => self.block(unit, vars, &b.stmts, depth),
            StmtKind::Break | StmtKind::Continue => {
                if depth == 0 {
                    self.emit(Diagnostic::error(
                        s.span,
                        "`break`/`continue` outside a loop",
                    ));
                }
            }
            StmtKind::Return(v) => {
                if let Some(v) = v {
                    self.emit(
                        Diagnostic::error(v.span, "probes cannot return a value")
                            .with_hint("write `return;`"),
                    );
                }
            }
            StmtKind::For { .. } => self.emit(Diagnostic::error(
                s.span,
                "`for` loops over maps are not supported yet",
            )),
        }
    }

    fn unknown_map(&mut self, m: &MapAccess) {
        let name = map_name(m);
        let hint = did_you_mean(&name, self.maps.keys().map(String::as_str))
            .map(|s| format!("did you mean `{s}`?"));
        self.emit(
            Diagnostic::error(m.name_span, format!("map `{name}` is never assigned"))
                .with_label("unknown map")
                .with_hint_opt(hint),
        );
    }

    /// Record keys/value of a map use, checking consistency.
    fn declare(&mut self, m: &MapAccess, keys: Vec<Ty>, value: MapVal) {
        let name = map_name(m);
        let Some(d) = self.maps.get_mut(&name) else {
            self.maps.insert(
                name.clone(),
                MapDecl {
                    name,
                    keys,
                    value,
                    span: m.span,
                },
            );
            return;
        };
        let mut problem = None;
        if d.keys.len() != keys.len() {
            problem = Some(key_count(m, d));
        } else {
            for (i, (old, new)) in d.keys.iter_mut().zip(&keys).enumerate() {
                match old.unify(new) {
                    Some(t) => *old = t,
                    None => {
                        problem = Some(Diagnostic::error(
                            m.keys.get(i).map_or(m.span, |k| k.span),
                            format!(
                                "key {} of `{}` is {} here but {} elsewhere",
                                i + 1,
                                d.name,
                                new.describe(),
                                old.describe()
                            ),
                        ));
                        break;
                    }
                }
            }
        }
        if problem.is_none() {
            match (&mut d.value, &value) {
                (MapVal::Scalar(old), MapVal::Scalar(new)) => match old.unify(new) {
                    Some(t) => *old = t,
                    None => {
                        problem = Some(Diagnostic::error(
                            m.span,
                            format!(
                                "`{}` holds {} here but {} elsewhere",
                                d.name,
                                new.describe(),
                                old.describe()
                            ),
                        ))
                    }
                },
                (MapVal::Agg(a, sa), MapVal::Agg(b, sb)) if a == b => *sa |= *sb,
                (old, new) => {
                    let what = |v: &MapVal| match v {
                        MapVal::Scalar(t) => format!("assigned {}", t.describe()),
                        MapVal::Agg(a, _) => format!("{}()", a.name()),
                    };
                    problem = Some(
                        Diagnostic::error(
                            m.span,
                            format!(
                                "`{}` is {} here but {} elsewhere",
                                d.name,
                                what(new),
                                what(old)
                            ),
                        )
                        .with_hint("each map holds one kind of value; use another map name"),
                    );
                }
            }
        }
        if let Some(p) = problem {
            self.emit(p);
        }
    }

    fn keys(&mut self, unit: &Unit, vars: &HashMap<String, Ty>, m: &MapAccess) -> Option<Vec<Ty>> {
        let mut out = Vec::new();
        for k in &m.keys {
            let t = self.expr(unit, vars, k)?;
            if matches!(t, Ty::Void) {
                return None;
            }
            out.push(match t {
                Ty::Int { signed, .. } => {
                    if signed {
                        Ty::I64
                    } else {
                        Ty::U64
                    }
                }
                t => t,
            });
        }
        Some(out)
    }

    fn assign(
        &mut self,
        unit: &Unit,
        vars: &mut HashMap<String, Ty>,
        target: &LValue,
        op: Option<BinOp>,
        value: &Expr,
    ) {
        // Aggregations: `@m[k] = count()`.
        if let (LValue::Map(m), None, ExprKind::Call { name, args }) = (target, op, &value.kind)
            && let Some(agg) = agg_of(&name.name, args, value.span)
        {
            let agg = match agg {
                Ok(a) => a,
                Err(d) => return self.emit(d),
            };
            let mut signed = false;
            if let Some(a) = args.first() {
                match self.expr(unit, vars, a) {
                    Some(t) if t.is_int() => signed = t.is_signed(),
                    Some(t) => {
                        return self.emit(Diagnostic::error(
                            a.span,
                            format!("{}() needs an integer, not {}", agg.name(), t.describe()),
                        ));
                    }
                    None => return,
                }
            }
            if let Some(keys) = self.keys(unit, vars, m) {
                self.declare(m, keys, MapVal::Agg(agg, signed));
            }
            return;
        }
        let Some(t) = self.expr(unit, vars, value) else {
            return;
        };
        if matches!(t, Ty::Void) {
            return self.emit(Diagnostic::error(value.span, "this has no value to assign"));
        }
        if op.is_some() {
            if !t.is_int() {
                return self.emit(Diagnostic::error(
                    value.span,
                    format!("compound assignment needs an integer, not {}", t.describe()),
                ));
            }
            if let LValue::Var(v) = target
                && !vars.contains_key(&v.name)
            {
                return self.emit(Diagnostic::error(
                    v.span,
                    format!("variable `${}` is used before it is assigned", v.name),
                ));
            }
            if let Err(d) = self.typer(unit, vars).lvalue_int(target) {
                return self.emit(d);
            }
        }
        let t = match t {
            Ty::Int { signed, space, .. } => Ty::Int {
                bits: 64,
                signed,
                space,
            },
            t => t,
        };
        match target {
            LValue::Var(v) => match vars.get(&v.name) {
                Some(old) => match old.unify(&t) {
                    Some(u) => {
                        vars.insert(v.name.clone(), u);
                    }
                    None => self.emit(Diagnostic::error(
                        value.span,
                        format!(
                            "`${}` holds {}, cannot assign {}",
                            v.name,
                            old.describe(),
                            t.describe()
                        ),
                    )),
                },
                None => {
                    vars.insert(v.name.clone(), t);
                }
            },
            LValue::Map(m) => {
                if let Some(keys) = self.keys(unit, vars, m) {
                    self.declare(m, keys, MapVal::Scalar(t));
                }
            }
        }
    }

    fn expr_stmt(&mut self, unit: &Unit, vars: &mut HashMap<String, Ty>, e: &Expr, span: Span) {
        match &e.kind {
            ExprKind::Call { name, args } => match name.name.as_str() {
                "printf" => self.printf(unit, vars, args, span),
                "exit" => {
                    if !args.is_empty() {
                        self.emit(Diagnostic::error(span, "exit() takes no arguments"));
                    }
                }
                "time" => {
                    if args.len() > 1
                        || args
                            .first()
                            .is_some_and(|a| !matches!(a.kind, ExprKind::Str(_)))
                    {
                        self.emit(Diagnostic::error(
                            span,
                            "time() takes an optional format string literal",
                        ));
                    }
                }
                "clear" | "zero" => match args.as_slice() {
                    [
                        Expr {
                            kind: ExprKind::Map(m),
                            ..
                        },
                    ] if m.keys.is_empty() => {
                        if !self.maps.contains_key(&map_name(m)) {
                            self.unknown_map(m);
                        }
                    }
                    _ => self.emit(Diagnostic::error(
                        span,
                        format!(
                            "{}() takes a map without keys, e.g. {}(@m)",
                            name.name, name.name
                        ),
                    )),
                },
                "print" => self.print(unit, vars, args, span),
                "delete" => self.emit(Diagnostic::error(
                    span,
                    "delete() takes a map element, e.g. delete(@m[k])",
                )),
                _ => {
                    self.expr(unit, vars, e);
                }
            },
            ExprKind::IncDec { target, .. } => {
                if let LValue::Map(m) = target
                    && let Some(keys) = self.keys(unit, vars, m)
                {
                    self.declare(m, keys, MapVal::Scalar(Ty::I64));
                }
                self.expr(unit, vars, e);
            }
            _ => {
                self.expr(unit, vars, e);
            }
        }
    }

    fn print(&mut self, unit: &Unit, vars: &HashMap<String, Ty>, args: &[Expr], span: Span) {
        match args {
            [
                Expr {
                    kind: ExprKind::Map(m),
                    ..
                },
                rest @ ..,
            ] if m.keys.is_empty() => {
                if !self.maps.contains_key(&map_name(m)) {
                    return self.unknown_map(m);
                }
                if rest.len() > 2 {
                    return self.emit(Diagnostic::error(
                        span,
                        "print() takes a map, an optional top count and an optional divisor",
                    ));
                }
                for r in rest {
                    if const_int(r).is_none_or(|n| n < 0) {
                        self.emit(Diagnostic::error(
                            r.span,
                            "print() top and divisor must be integer literals",
                        ));
                    }
                }
            }
            [value] => {
                if let Some(Ty::Void) = self.expr(unit, vars, value) {
                    self.emit(Diagnostic::error(value.span, "this has no value to print"));
                }
            }
            _ => self.emit(Diagnostic::error(span, "print() takes a map or one value")),
        }
    }

    fn printf(&mut self, unit: &Unit, vars: &HashMap<String, Ty>, args: &[Expr], span: Span) {
        let Some((
            Expr {
                kind: ExprKind::Str(fmt),
                span: fspan,
            },
            rest,
        )) = args.split_first()
        else {
            return self.emit(
                Diagnostic::error(span, "printf() needs a format string literal first")
                    .with_hint("e.g. printf(\"%d\\n\", pid)"),
            );
        };
        let convs = match format::conversions(fmt) {
            Ok(c) => c,
            Err(e) => return self.emit(Diagnostic::error(*fspan, e.to_string())),
        };
        if convs.len() != rest.len() {
            return self.emit(Diagnostic::error(
                span,
                format!(
                    "printf() format has {} conversion{} but {} argument{} follow",
                    convs.len(),
                    if convs.len() == 1 { "" } else { "s" },
                    rest.len(),
                    if rest.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        for (c, a) in convs.iter().zip(rest) {
            if let Some(t) = self.expr(unit, vars, a)
                && let Some(why) = format::mismatch(c, &t)
            {
                self.emit(Diagnostic::error(a.span, why));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_lang::ast::Ident;

    fn int(n: u64) -> Expr {
        Expr {
            kind: ExprKind::Int(n),
            span: Span::default(),
        }
    }

    fn var(name: &str) -> Expr {
        Expr {
            kind: ExprKind::Var(nexus_lang::ast::Variable {
                name: name.into(),
                span: Span::default(),
            }),
            span: Span::default(),
        }
    }

    #[test]
    fn aggregations_are_recognised_with_their_arity() {
        let span = Span::default();
        assert_eq!(agg_of("count", &[], span).unwrap().unwrap(), Agg::Count);
        assert!(agg_of("count", &[int(1)], span).unwrap().is_err());
        assert_eq!(
            agg_of("lhist", &[int(1), int(0), int(10), int(2)], span)
                .unwrap()
                .unwrap(),
            Agg::Lhist {
                min: 0,
                max: 10,
                step: 2
            }
        );
        assert!(
            agg_of("lhist", &[int(1), var("x"), int(10), int(2)], span)
                .unwrap()
                .is_err()
        );
        assert!(agg_of("printf", &[], span).is_none());
        let _ = Ident {
            name: String::new(),
            span,
        };
    }

    #[test]
    fn literals_adopt_the_other_side() {
        let (u, i) = (Ty::U64, Ty::I64);
        assert!(!arith_signed(&var("x"), &int(1), &u, &i));
        assert!(!arith_signed(&int(1), &var("x"), &i, &u));
        assert!(arith_signed(&var("x"), &var("y"), &u, &i));
    }

    #[test]
    fn casts_name_integer_types() {
        assert_eq!(cast_int("uint8"), Some(Ty::uint(8)));
        assert!(cast_int("int32").unwrap().is_signed());
        assert_eq!(cast_int("struct task_struct"), None);
    }
}
