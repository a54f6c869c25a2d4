//! Lowering: a checked probe body → IR. Also the resource bookkeeping that
//! lowering fills in as it goes (event schemas, the stack map, scratch
//! space), on top of the maps the checker collected.

use crate::artifact::{
    CONFIG_CPID, CONFIG_SCOPE_ENABLED, CONFIG_SCOPE_LEADER, CONFIG_SIZE, CONFIG_START_NS,
    CONFIG_STOPPING, CONFIG_TRACER_TGID, EventKind, EventSchema, HIST_SLOTS, MapKind, MapRole,
    MapSpec, RECORD_HEADER_SIZE, SCOPE_WORDS, UserMap,
};
use crate::catalog::{KernelMember, KernelType};
use crate::check::{
    Agg, MapDecl, MapVal, Typer, Unit, args_field, const_int, map_name, stack_limit,
};
use crate::ir::{Base, Func, Label, Op, Opnd, R, Slot};
use crate::kernel_types::KernelTypes;
use crate::providers::{ArgRead, CtxRead};
use crate::ty::{COMM_LEN, Space, Ty, layout_fields};
use nexus_insn::{AluOp, AtomicOp, Helper, JmpCond, Size};
use nexus_lang::ast::{
    BinOp, Expr, ExprKind, LValue, MapAccess, ProbeKind, Stmt, StmtKind, UnaryOp,
};
use nexus_lang::{Diagnostic, Span};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Bytes of the 512-byte stack lowering hands out by default; the rest is
/// left for register spills.
pub const STACK_BUDGET: u32 = 384;
/// The budget for a second attempt when spills did not fit: almost
/// everything goes to the per-CPU scratch map.
pub const SMALL_STACK_BUDGET: u32 = 64;
/// `BPF_NOEXIST`.
const BPF_NOEXIST: i32 = 1;
/// `bpf_ringbuf_query` flag: unconsumed bytes.
const BPF_RB_AVAIL_DATA: i32 = 0;
/// `bpf_ringbuf_submit` flag: do not wake the consumer.
const BPF_RB_NO_WAKEUP: i32 = 1;
/// `bpf_ringbuf_submit` flag: wake the consumer even if it is behind.
const BPF_RB_FORCE_WAKEUP: i32 = 2;
/// `BPF_F_USER_STACK` for `bpf_get_stackid`.
const BPF_F_USER_STACK: i32 = 1 << 8;
/// Frames kept per stack.
pub const STACK_DEPTH: u32 = 127;

/// Program-wide resources: maps by index and event schemas.
#[derive(Debug, Clone)]
pub struct Resources {
    /// Maps in Artifact index order.
    pub maps: Vec<MapSpec>,
    /// User map name → (index, declaration).
    pub user: BTreeMap<String, (u32, MapDecl)>,
    /// Event schemas.
    pub events: Vec<EventSchema>,
    /// The ring buffer.
    pub ringbuf: u32,
    /// The config array.
    pub config: u32,
    /// The drop counter.
    pub drops: u32,
    /// The process-tree scope map, when scoping is compiled in.
    pub scope: Option<u32>,
    /// The zero-value array for aggregation inserts.
    pub zeros: Option<u32>,
    /// The stack-trace map, once a stack is collected.
    pub stacks: Option<u32>,
    /// The per-CPU scratch array, once something does not fit the stack.
    pub scratch: Option<u32>,
}

/// `BPF_F_NO_PREALLOC`: hash maps allocate elements on insert.
const BPF_F_NO_PREALLOC: u32 = 1;

fn spec(name: &str, kind: MapKind, key: u32, value: u32, entries: u32, role: MapRole) -> MapSpec {
    // Preallocating every element of a hash map is what makes creating it
    // slow (a 4096-entry per-CPU hash took ~24 ms here, a 65536-entry hash
    // more), and map creation sits between `bpfnexus` starting and the
    // probes being attached. Since Linux 6.1 tracing programs may use
    // run-time allocated hash maps (bpf_mem_alloc), so trade a small cost on
    // each first insert for a fast start.
    let flags = match kind {
        MapKind::Hash | MapKind::PercpuHash => BPF_F_NO_PREALLOC,
        _ => 0,
    };
    MapSpec {
        name: name.to_string(),
        kind,
        key_size: key,
        value_size: value,
        max_entries: entries,
        flags,
        role,
    }
}

/// A kernel-acceptable map name for `@name`.
fn kernel_map_name(user: &str, index: usize) -> String {
    let base: String = user
        .trim_start_matches('@')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(10)
        .collect();
    format!("m{index}_{base}")
}

impl Resources {
    /// Lay out the user maps the checker found, then the fixed maps.
    /// `deleted` names the maps some `delete()` removes an entry from.
    pub fn new(
        decls: &BTreeMap<String, MapDecl>,
        ringbuf_size: u32,
        map_entries: u32,
        scope: bool,
        deleted: &BTreeSet<String>,
    ) -> Resources {
        let mut maps = Vec::new();
        let mut user = BTreeMap::new();
        let mut zeros_size = 0;
        for (i, (name, d)) in decls.iter().enumerate() {
            let keys: Vec<(String, &Ty)> = d
                .keys
                .iter()
                .enumerate()
                .map(|(i, t)| (i.to_string(), t))
                .collect();
            let (fields, key_size) = layout_fields(keys.into_iter()).unwrap_or_default();
            let value = d.value.artifact();
            let vsize = value.size();
            // A keyless aggregation is one per-CPU array slot: its lookup
            // is an index, not a hash, and it never needs inserting. Not
            // when deleted: a program can only zero its own CPU's slot.
            // Not `sum`: a slot that is zero on every CPU must mean "never
            // ran" (see `UserMap::keys`), and `sum(0)` leaves zeros.
            let keyless_array = value.is_aggregation()
                && !matches!(value, crate::artifact::MapValue::Sum { .. })
                && d.keys.is_empty()
                && !deleted.contains(name);
            let (kind, key_size, entries) = if keyless_array {
                (MapKind::PercpuArray, 4, 1)
            } else if value.is_aggregation() {
                zeros_size = zeros_size.max(vsize);
                (MapKind::PercpuHash, key_size.max(8), map_entries)
            } else {
                (MapKind::Hash, key_size.max(8), map_entries)
            };
            maps.push(spec(
                &kernel_map_name(name, i),
                kind,
                key_size,
                vsize.max(8),
                entries,
                MapRole::User(UserMap {
                    name: name.clone(),
                    keys: fields,
                    value,
                }),
            ));
            user.insert(name.clone(), (i as u32, d.clone()));
        }
        let mut push = |m: MapSpec| {
            maps.push(m);
            (maps.len() - 1) as u32
        };
        let ringbuf = push(spec(
            "events",
            MapKind::Ringbuf,
            0,
            0,
            ringbuf_size,
            MapRole::Events,
        ));
        let config = push(spec(
            "config",
            MapKind::Array,
            4,
            CONFIG_SIZE,
            1,
            MapRole::Config,
        ));
        let drops = push(spec("drops", MapKind::PercpuArray, 4, 8, 1, MapRole::Drops));
        let scope = scope.then(|| {
            push(spec(
                "scope",
                MapKind::Array,
                4,
                8,
                SCOPE_WORDS,
                MapRole::Scope,
            ))
        });
        let zeros = (zeros_size > 0).then(|| {
            push(spec(
                "zeros",
                MapKind::Array,
                4,
                zeros_size,
                1,
                MapRole::Zeros,
            ))
        });
        Resources {
            maps,
            user,
            events: Vec::new(),
            ringbuf,
            config,
            drops,
            scope,
            zeros,
            stacks: None,
            scratch: None,
        }
    }

    /// The stack-trace map, holding `limit` frames per stack (one limit
    /// per program: `compile` refuses a second).
    fn stacks(&mut self, limit: u32) -> u32 {
        if let Some(s) = self.stacks {
            return s;
        }
        self.maps.push(spec(
            "stacks",
            MapKind::StackTrace,
            4,
            limit * 8,
            16384,
            MapRole::Stacks,
        ));
        let i = (self.maps.len() - 1) as u32;
        self.stacks = Some(i);
        i
    }

    fn scratch(&mut self, size: u32) -> u32 {
        let i = match self.scratch {
            Some(i) => i,
            None => {
                self.maps.push(spec(
                    "scratch",
                    MapKind::PercpuArray,
                    4,
                    8,
                    1,
                    MapRole::Scratch,
                ));
                let i = (self.maps.len() - 1) as u32;
                self.scratch = Some(i);
                i
            }
        };
        let m = &mut self.maps[i as usize];
        m.value_size = m.value_size.max(size.next_multiple_of(8));
        i
    }

    /// The id of an event schema, reusing an identical one.
    fn event(
        &mut self,
        kind: EventKind,
        fields: Vec<crate::artifact::Field>,
        size: u32,
        span: Span,
    ) -> u32 {
        let span = span.into();
        if let Some(e) = self
            .events
            .iter()
            .find(|e| e.kind == kind && e.fields == fields && e.span == span)
        {
            return e.id;
        }
        let id = self.events.len() as u32;
        self.events.push(EventSchema {
            id,
            kind,
            fields,
            size,
            span,
        });
        id
    }
}

/// Memory: a base and a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mem {
    base: Base,
    off: i32,
}

impl Mem {
    fn at(self, d: u32) -> Mem {
        Mem {
            base: self.base,
            off: self.off + d as i32,
        }
    }
}

/// Where a scratch variable lives.
#[derive(Debug, Clone, Copy)]
enum VarLoc {
    Reg(R),
    Mem(Mem),
}

/// A helper argument.
enum Arg {
    R(R),
    Imm(i32),
    Mem(Mem),
    Map(u32),
    MapValue(u32, u32),
}

/// Lowering state for one program.
#[derive(Debug)]
pub struct Lower<'a> {
    res: &'a mut Resources,
    unit: &'a Unit,
    var_types: &'a HashMap<String, Ty>,
    params: &'a [String],
    decls: BTreeMap<String, MapDecl>,
    f: Func,
    vars: HashMap<String, VarLoc>,
    ctx: R,
    scratch_ptr: Option<R>,
    scratch_used: u32,
    stack_used: u32,
    loops: Vec<(Label, Label)>,
    exit: Label,
    budget: u32,
    diags: Vec<Diagnostic>,
    kernel: &'a KernelTypes<'a>,
}

/// The widest access of at most `left` bytes that keeps every offset in
/// `offs` naturally aligned (bases are 8-byte aligned).
fn access_size(left: u32, offs: &[i32]) -> Size {
    let mut size = size_for(left);
    while offs.iter().any(|o| o.rem_euclid(size.bytes() as i32) != 0) {
        size = size_for(size.bytes() as u32 / 2);
    }
    size
}

fn size_for(bytes: u32) -> Size {
    match bytes {
        8.. => Size::DW,
        4..=7 => Size::W,
        2..=3 => Size::H,
        _ => Size::B,
    }
}

impl<'a> Lower<'a> {
    /// Start lowering `unit`.
    pub fn new(
        res: &'a mut Resources,
        unit: &'a Unit,
        var_types: &'a HashMap<String, Ty>,
        params: &'a [String],
        kernel: &'a KernelTypes<'a>,
    ) -> Lower<'a> {
        let decls = res
            .user
            .iter()
            .map(|(k, (_, d))| (k.clone(), d.clone()))
            .collect();
        let mut l = Lower {
            res,
            unit,
            var_types,
            params,
            decls,
            f: Func::default(),
            vars: HashMap::new(),
            ctx: R::V(0),
            scratch_ptr: None,
            scratch_used: 0,
            stack_used: 0,
            loops: Vec::new(),
            exit: Label(0),
            budget: STACK_BUDGET,
            diags: Vec::new(),
            kernel,
        };
        l.ctx = l.v();
        l.exit = l.label();
        l
    }

    /// Use at most `bytes` of stack for values (the rest goes to scratch).
    pub fn with_stack_budget(mut self, bytes: u32) -> Self {
        self.budget = bytes;
        self
    }

    fn typer(&self) -> Typer<'_> {
        Typer {
            unit: self.unit,
            maps: &self.decls,
            vars: self.var_types,
            params: self.params,
            kernel: self.kernel,
        }
    }

    fn ty(&mut self, e: &Expr) -> Ty {
        match self.typer().ty(e) {
            Ok(t) => t,
            Err(d) => {
                self.diags.push(d);
                Ty::I64
            }
        }
    }

    fn internal(&mut self, span: Span, what: &str) {
        self.diags.push(Diagnostic::error(
            span,
            format!("cannot compile {what} here"),
        ));
    }

    fn v(&mut self) -> R {
        let r = R::V(self.f.vregs);
        self.f.vregs += 1;
        r
    }

    fn label(&mut self) -> Label {
        let l = Label(self.f.labels);
        self.f.labels += 1;
        l
    }

    fn op(&mut self, op: Op) {
        self.f.ops.push(op);
    }

    fn mov(&mut self, dst: R, src: impl Into<OpndArg>) {
        let src = src.into().0;
        self.op(Op::Mov(dst, src));
    }

    fn alu(&mut self, op: AluOp, dst: R, src: impl Into<OpndArg>) {
        let src = src.into().0;
        self.op(Op::Alu(op, dst, src));
    }

    fn br(&mut self, cond: JmpCond, a: R, b: impl Into<OpndArg>, target: Label) {
        let b = b.into().0;
        self.op(Op::Br { cond, a, b, target });
    }

    fn load(&mut self, size: Size, dst: R, m: Mem) {
        self.op(Op::Load {
            size,
            signed: false,
            dst,
            base: m.base,
            off: m.off,
        });
    }

    fn store(&mut self, size: Size, m: Mem, src: impl Into<OpndArg>) {
        let src = src.into().0;
        self.op(Op::Store {
            size,
            base: m.base,
            off: m.off,
            src,
        });
    }

    fn imm(&mut self, n: i64) -> R {
        let r = self.v();
        match i32::try_from(n) {
            Ok(i) => self.mov(r, i),
            Err(_) => self.op(Op::Imm64(r, n as u64)),
        }
        r
    }

    /// Memory of `size` bytes: stack while the budget lasts, then the
    /// per-CPU scratch map.
    fn alloc(&mut self, size: u32) -> Mem {
        let size = size.max(8).next_multiple_of(8);
        if self.stack_used + size <= self.budget {
            self.stack_used += size;
            let s = Slot(self.f.slots.len() as u32);
            self.f.slots.push(size);
            return Mem {
                base: Base::Slot(s),
                off: 0,
            };
        }
        let ptr = match self.scratch_ptr {
            Some(p) => p,
            None => {
                let p = self.v();
                self.scratch_ptr = Some(p);
                p
            }
        };
        let off = self.scratch_used;
        self.scratch_used += size;
        Mem {
            base: Base::R(ptr),
            off: off as i32,
        }
    }

    fn set_arg(&mut self, reg: u8, a: &Arg) {
        let p = R::P(reg);
        match a {
            Arg::R(r) => self.mov(p, *r),
            Arg::Imm(i) => self.mov(p, *i),
            Arg::Map(m) => self.op(Op::Map { dst: p, map: *m }),
            Arg::MapValue(m, off) => self.op(Op::MapValue {
                dst: p,
                map: *m,
                off: *off,
            }),
            Arg::Mem(m) => match m.base {
                Base::Slot(slot) => self.op(Op::Addr {
                    dst: p,
                    slot,
                    off: m.off,
                }),
                Base::R(b) => {
                    self.mov(p, b);
                    if m.off != 0 {
                        self.alu(AluOp::Add, p, m.off);
                    }
                }
            },
        }
    }

    /// Call `h`; the result is a fresh virtual register.
    fn call(&mut self, h: Helper, args: &[Arg]) -> R {
        for (i, a) in args.iter().enumerate() {
            self.set_arg(i as u8 + 1, a);
        }
        self.op(Op::Call(h));
        if matches!(h, Helper::RingbufSubmit | Helper::RingbufDiscard) {
            // Void helpers leave r0 unreadable to the verifier.
            return R::P(0);
        }
        let r = self.v();
        self.mov(r, R::P(0));
        r
    }

    fn line(&mut self, span: Span, what: impl Into<String>) {
        self.op(Op::Line {
            span,
            what: what.into(),
        });
    }

    /// The whole program: prologue (self guard, scope), predicate, body.
    pub fn program(
        mut self,
        pred: Option<&Expr>,
        body: &[Stmt],
        probe_span: Span,
    ) -> (Func, Vec<Diagnostic>) {
        self.mov(self.ctx, R::P(1));
        if let Some(raw) = &self.unit.raw_syscalls
            && !raw.nrs.is_empty()
        {
            self.line(probe_span, "syscall filter");
            self.syscall_filter(raw.exit, &raw.nrs);
        }
        if self.unit.provider.sees_tracer() {
            self.line(probe_span, "self guard");
            self.guard();
        } else if !matches!(self.unit.kind, ProbeKind::Begin | ProbeKind::End) {
            // BEGIN runs before `stopping` is set and END after: only
            // attached probes are quiesced.
            self.line(probe_span, "quiesce check");
            let cfg = self.config_mem();
            self.quiesce_check(cfg);
        }
        let scratch_at = self.f.ops.len();
        self.init_vars();
        if let Some(p) = pred {
            self.line(p.span, "predicate");
            let c = self.int(p);
            self.br(JmpCond::Eq, c, 0, self.exit);
        }
        self.block(body);
        let exit = self.exit;
        self.op(Op::Label(exit));
        self.mov(R::P(0), 0);
        self.op(Op::Exit);
        if let Some(ptr) = self.scratch_ptr {
            self.splice_scratch(scratch_at, ptr, probe_span);
        }
        (self.f, self.diags)
    }

    /// Look up the scratch buffer once at entry; it exists on every CPU,
    /// but the verifier needs the null check.
    fn splice_scratch(&mut self, at: usize, ptr: R, span: Span) {
        let map = self.res.scratch(self.scratch_used);
        let tail = self.f.ops.split_off(at);
        self.line(span, "scratch buffer");
        let key = self.alloc_stack_only(8);
        self.store(Size::DW, key, 0);
        let r = self.call(Helper::MapLookupElem, &[Arg::Map(map), Arg::Mem(key)]);
        self.mov(ptr, r);
        self.br(JmpCond::Eq, ptr, 0, self.exit);
        self.f.ops.extend(tail);
    }

    fn alloc_stack_only(&mut self, size: u32) -> Mem {
        let s = Slot(self.f.slots.len() as u32);
        self.f.slots.push(size);
        Mem {
            base: Base::Slot(s),
            off: 0,
        }
    }

    /// Read 8 bytes at `off` in the `struct pt_regs` the raw syscall
    /// tracepoints pass as their first argument.
    fn syscall_regs(&mut self, off: i16) -> R {
        let regs = self.ctx_load(CtxRead::u64_at(0), &Ty::U64);
        self.alu(AluOp::Add, regs, i32::from(off));
        let tmp = self.alloc(8);
        self.store(Size::DW, tmp, 0);
        self.call(
            Helper::ProbeReadKernel,
            &[Arg::Mem(tmp), Arg::Imm(8), Arg::R(regs)],
        );
        let r = self.v();
        self.load(Size::DW, r, tmp);
        r
    }

    /// The syscall number of a raw `sys_enter` (second argument) or
    /// `sys_exit` (`regs->orig_ax`) event.
    fn syscall_nr(&mut self, exit: bool) -> R {
        if exit {
            self.syscall_regs(crate::providers::tracepoint::X86_64_ORIG_AX_OFFSET)
        } else {
            self.ctx_load(CtxRead::u64_at(8), &Ty::I64)
        }
    }

    /// Return early unless the syscall number is one of `nrs`: a few
    /// compares, or a 512-bit bitmap test for many.
    fn syscall_filter(&mut self, exit: bool, nrs: &[u32]) {
        let id = self.syscall_nr(exit);
        if nrs.len() <= 4 {
            let pass = self.label();
            for &nr in nrs {
                self.br(JmpCond::Eq, id, nr as i32, pass);
            }
            self.op(Op::Jmp(self.exit));
            self.op(Op::Label(pass));
            return;
        }
        let mut words = [0u64; 8];
        for &nr in nrs.iter().filter(|&&n| n < 512) {
            words[(nr / 64) as usize] |= 1 << (nr % 64);
        }
        // Negative ids (-1: no syscall) are huge unsigned: filtered too.
        self.br(JmpCond::Gt, id, 511, self.exit);
        let word = self.v();
        self.mov(word, id);
        self.alu(AluOp::Rsh, word, 6);
        let bit = self.v();
        self.mov(bit, id);
        self.alu(AluOp::And, bit, 63);
        let mask = self.v();
        let test = self.label();
        for (k, &w) in words.iter().enumerate().filter(|(_, w)| **w != 0) {
            let next = self.label();
            self.br(JmpCond::Ne, word, k as i32, next);
            self.op(Op::Imm64(mask, w));
            self.op(Op::Jmp(test));
            self.op(Op::Label(next));
        }
        self.op(Op::Jmp(self.exit));
        self.op(Op::Label(test));
        self.alu(AluOp::Rsh, mask, bit);
        self.alu(AluOp::And, mask, 1);
        self.br(JmpCond::Eq, mask, 0, self.exit);
    }

    /// The config map's value (a direct map-value pointer: no helper call).
    fn config_mem(&mut self) -> Mem {
        let cfg = self.v();
        self.op(Op::MapValue {
            dst: cfg,
            map: self.res.config,
            off: 0,
        });
        Mem {
            base: Base::R(cfg),
            off: 0,
        }
    }

    /// Return at once while the runtime tears down (`stopping` set).
    fn quiesce_check(&mut self, cfg: Mem) {
        let stopping = self.v();
        self.load(Size::DW, stopping, cfg.at(CONFIG_STOPPING));
        self.br(JmpCond::Ne, stopping, 0, self.exit);
    }

    /// The quiesce check, then the self guard (and the scope check).
    fn guard(&mut self) {
        let cfg_mem = self.config_mem();
        self.quiesce_check(cfg_mem);
        let pt = self.call(Helper::GetCurrentPidTgid, &[]);
        self.alu(AluOp::Rsh, pt, 32);
        let t = self.v();
        self.load(Size::DW, t, cfg_mem.at(CONFIG_TRACER_TGID));
        self.br(JmpCond::Eq, pt, t, self.exit);
        if let Some(scope) = self.res.scope {
            let on = self.v();
            self.load(Size::DW, on, cfg_mem.at(CONFIG_SCOPE_ENABLED));
            let ok = self.label();
            self.br(JmpCond::Eq, on, 0, ok);
            // The command itself (the common case) needs no lookup; 0 until
            // it has exec'd, and the idle task's tgid is 0 too.
            let leader = self.v();
            let lookup = self.label();
            self.load(Size::DW, leader, cfg_mem.at(CONFIG_SCOPE_LEADER));
            self.br(JmpCond::Eq, leader, 0, lookup);
            self.br(JmpCond::Eq, pt, leader, ok);
            self.op(Op::Label(lookup));
            // Bit `tgid & 63` of word `tgid >> 6`. The kernel inlines a
            // lookup in an array map, so no helper runs; it also returns
            // NULL past the last word, which bounds the index.
            let word = self.v();
            self.mov(word, pt);
            self.alu(AluOp::Rsh, word, 6);
            let key = self.alloc_stack_only(8);
            self.store(Size::DW, key, word);
            let found = self.call(Helper::MapLookupElem, &[Arg::Map(scope), Arg::Mem(key)]);
            self.br(JmpCond::Eq, found, 0, self.exit);
            let bits = self.v();
            self.load(
                Size::DW,
                bits,
                Mem {
                    base: Base::R(found),
                    off: 0,
                },
            );
            let bit = self.v();
            self.mov(bit, pt);
            self.alu(AluOp::And, bit, 63);
            self.alu(AluOp::Rsh, bits, bit);
            self.alu(AluOp::And, bits, 1);
            self.br(JmpCond::Eq, bits, 0, self.exit);
            self.op(Op::Label(ok));
        }
    }

    /// Variables start zeroed so every path reads initialised storage.
    fn init_vars(&mut self) {
        let mut names: Vec<&String> = self.var_types.keys().collect();
        names.sort();
        for name in names {
            let ty = self.var_types[name].clone();
            let loc = if ty.is_mem() {
                let m = self.alloc(ty.size());
                self.zero(m, ty.size());
                VarLoc::Mem(m)
            } else {
                let r = self.v();
                self.mov(r, 0);
                VarLoc::Reg(r)
            };
            self.vars.insert(name.clone(), loc);
        }
    }

    fn block(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        let what = match &s.kind {
            StmtKind::Expr(Expr {
                kind: ExprKind::Call { name, .. },
                ..
            }) => format!("{}()", name.name),
            StmtKind::Assign { target, .. } => match target {
                LValue::Var(v) => format!("assignment to ${}", v.name),
                LValue::Map(m) => format!("assignment to {}", map_name(m)),
            },
            StmtKind::Delete { map } => format!("delete({})", map_name(map)),
            StmtKind::If { .. } => "if condition".into(),
            StmtKind::While { .. } => "while loop".into(),
            StmtKind::Unroll { .. } => "unroll".into(),
            _ => "statement".into(),
        };
        if !matches!(s.kind, StmtKind::Block(_) | StmtKind::Unroll { .. }) {
            self.line(s.span, what);
        }
        match &s.kind {
            StmtKind::Expr(e) => self.expr_stmt(e, s.span),
            StmtKind::Assign { target, op, value } => self.assign(target, *op, value),
            StmtKind::Delete { map } => {
                let (idx, decl) = self.user_map(map);
                let key = self.key(&decl, map);
                self.call(Helper::MapDeleteElem, &[Arg::Map(idx), Arg::Mem(key)]);
            }
            StmtKind::If {
                cond,
                then_block,
                else_block,
            } => {
                let c = self.int(cond);
                let (other, end) = (self.label(), self.label());
                self.br(JmpCond::Eq, c, 0, other);
                self.block(&then_block.stmts);
                self.op(Op::Jmp(end));
                self.op(Op::Label(other));
                if let Some(b) = else_block {
                    self.block(&b.stmts);
                }
                self.op(Op::Label(end));
            }
            StmtKind::Unroll { count, body } => {
                for _ in 0..const_int(count).unwrap_or(0) {
                    self.block(&body.stmts);
                }
            }
            StmtKind::While { cond, body } => {
                let (top, end) = (self.label(), self.label());
                self.op(Op::Label(top));
                let c = self.int(cond);
                self.br(JmpCond::Eq, c, 0, end);
                self.loops.push((end, top));
                self.block(&body.stmts);
                self.loops.pop();
                self.op(Op::Jmp(top));
                self.op(Op::Label(end));
            }
            StmtKind::Block(b) => self.block(&b.stmts),
            StmtKind::Break | StmtKind::Continue => {
                if let Some(&(brk, cont)) = self.loops.last() {
                    let to = if matches!(s.kind, StmtKind::Break) {
                        brk
                    } else {
                        cont
                    };
                    self.op(Op::Jmp(to));
                }
            }
            StmtKind::Return(_) => self.op(Op::Jmp(self.exit)),
            StmtKind::For { .. } => self.internal(s.span, "`for`"),
        }
    }

    fn user_map(&self, m: &MapAccess) -> (u32, MapDecl) {
        self.res.user.get(&map_name(m)).cloned().unwrap_or_else(|| {
            (
                0,
                MapDecl {
                    name: map_name(m),
                    keys: Vec::new(),
                    value: MapVal::Scalar(Ty::I64),
                    span: m.span,
                },
            )
        })
    }

    /// Build the key of `m` in fresh memory.
    fn key(&mut self, decl: &MapDecl, m: &MapAccess) -> Mem {
        let keys: Vec<(String, &Ty)> = decl
            .keys
            .iter()
            .enumerate()
            .map(|(i, t)| (i.to_string(), t))
            .collect();
        let (_, size) = layout_fields(keys.into_iter()).unwrap_or_default();
        let mem = self.alloc(size.max(8));
        if decl.keys.is_empty() {
            self.store(Size::DW, mem, 0);
            return mem;
        }
        // Every field is written in full; padding between fields must be
        // zeroed too so equal keys hash equal.
        let mut off = 0u32;
        for (k, t) in m.keys.iter().zip(&decl.keys) {
            let start = off.next_multiple_of(8u32);
            self.zero(mem.at(off), start - off);
            self.write_into(k, t, mem.at(start));
            off = start + t.size();
        }
        self.zero(mem.at(off), size.max(8) - off);
        mem
    }

    /// `p = lookup(map, key)`; on a hash miss insert zeros (`BPF_NOEXIST`,
    /// so a racing insert on another CPU is kept) and look up again. Jumps
    /// to `skip` if the element still cannot be had (map full).
    fn lookup_or_init(&mut self, map: u32, key: Mem, skip: Label) -> R {
        let p = self.v();
        let have = self.label();
        let r = self.call(Helper::MapLookupElem, &[Arg::Map(map), Arg::Mem(key)]);
        self.mov(p, r);
        if self.res.maps[map as usize].kind == MapKind::PercpuArray {
            // Array slots always exist (keyless aggregations: key 0 of
            // one entry); the check is for the verifier.
            self.br(JmpCond::Eq, p, 0, skip);
            return p;
        }
        self.br(JmpCond::Ne, p, 0, have);
        let zeros = self.res.zeros.unwrap_or(0);
        self.call(
            Helper::MapUpdateElem,
            &[
                Arg::Map(map),
                Arg::Mem(key),
                Arg::MapValue(zeros, 0),
                Arg::Imm(BPF_NOEXIST),
            ],
        );
        let r = self.call(Helper::MapLookupElem, &[Arg::Map(map), Arg::Mem(key)]);
        self.mov(p, r);
        self.br(JmpCond::Eq, p, 0, skip);
        self.op(Op::Label(have));
        p
    }

    fn assign(&mut self, target: &LValue, op: Option<BinOp>, value: &Expr) {
        match target {
            LValue::Var(v) => {
                let Some(loc) = self.vars.get(&v.name).copied() else {
                    return self.internal(v.span, "this variable");
                };
                match loc {
                    VarLoc::Reg(r) => {
                        let x = self.int(value);
                        match op {
                            Some(op) => {
                                let signed = self.var_types[&v.name].is_signed();
                                let divisor = crate::check::const_int(value);
                                self.binop_into(op, r, x, signed, divisor)
                            }
                            None => self.mov(r, x),
                        }
                    }
                    VarLoc::Mem(m) => {
                        let t = self.var_types[&v.name].clone();
                        self.write_into(value, &t, m);
                    }
                }
            }
            LValue::Map(m) => {
                let (idx, decl) = self.user_map(m);
                match (&decl.value, &value.kind) {
                    (MapVal::Agg(agg, signed), ExprKind::Call { args, .. }) => {
                        let (agg, signed) = (*agg, *signed);
                        let x = args.first().map(|a| self.int(a));
                        let key = self.key(&decl, m);
                        let skip = self.label();
                        let p = self.lookup_or_init(idx, key, skip);
                        self.aggregate(agg, signed, p, x);
                        self.op(Op::Label(skip));
                    }
                    (MapVal::Scalar(t), _) => {
                        let t = t.clone();
                        let key = self.key(&decl, m);
                        let val = self.alloc(t.size());
                        match op {
                            Some(op) => {
                                let old = self.map_int(idx, key);
                                let x = self.int(value);
                                let divisor = crate::check::const_int(value);
                                self.binop_into(op, old, x, t.is_signed(), divisor);
                                self.store(Size::DW, val, old);
                            }
                            None => self.write_into(value, &t, val),
                        }
                        self.call(
                            Helper::MapUpdateElem,
                            &[Arg::Map(idx), Arg::Mem(key), Arg::Mem(val), Arg::Imm(0)],
                        );
                    }
                    _ => self.internal(value.span, "this aggregation"),
                }
            }
        }
    }

    /// Update an aggregation value at `p` (per-CPU, so no atomics).
    fn aggregate(&mut self, agg: Agg, signed: bool, p: R, x: Option<R>) {
        let at = |off: u32| Mem {
            base: Base::R(p),
            off: off as i32,
        };
        let x = x.unwrap_or_else(|| self.imm(1));
        let add = |l: &mut Self, off: u32, by: Opnd| {
            let t = l.v();
            l.load(Size::DW, t, at(off));
            l.op(Op::Alu(AluOp::Add, t, by));
            l.store(Size::DW, at(off), t);
        };
        match agg {
            Agg::Count => add(self, 0, Opnd::Imm(1)),
            Agg::Sum => add(self, 0, Opnd::R(x)),
            Agg::Avg | Agg::Stats => {
                add(self, 0, Opnd::Imm(1));
                add(self, 8, Opnd::R(x));
            }
            Agg::Min | Agg::Max => {
                let (write, done) = (self.label(), self.label());
                let set = self.v();
                self.load(Size::DW, set, at(8));
                self.br(JmpCond::Eq, set, 0, write);
                let cur = self.v();
                self.load(Size::DW, cur, at(0));
                // Keep `cur` unless `x` beats it.
                let keep = match (agg, signed) {
                    (Agg::Min, true) => JmpCond::SGe,
                    (Agg::Min, false) => JmpCond::Ge,
                    (_, true) => JmpCond::SLe,
                    (_, false) => JmpCond::Le,
                };
                self.br(keep, x, cur, done);
                self.op(Op::Label(write));
                self.store(Size::DW, at(0), x);
                self.store(Size::DW, at(8), 1);
                self.op(Op::Label(done));
            }
            Agg::Hist => {
                let slot = self.log2_slot(x);
                self.bump_slot(p, slot, HIST_SLOTS - 1);
            }
            Agg::Lhist { min, max, step } => {
                let n = ((max - min) / step) as u32;
                let slot = self.v();
                let done = self.label();
                self.mov(slot, 0);
                let lo = self.imm(min);
                self.br(JmpCond::SLt, x, lo, done);
                self.mov(slot, (n + 1) as i32);
                let hi = self.imm(max);
                self.br(JmpCond::SGe, x, hi, done);
                self.mov(slot, x);
                self.alu(AluOp::Sub, slot, lo);
                let st = self.imm(step);
                self.alu(AluOp::Div, slot, st);
                self.alu(AluOp::Add, slot, 1);
                self.op(Op::Label(done));
                self.bump_slot(p, slot, n + 1);
            }
        }
    }

    /// `p[slot] += 1`, with `slot` clamped to `last` so the verifier can
    /// bound the access.
    fn bump_slot(&mut self, p: R, slot: R, last: u32) {
        let ok = self.label();
        self.br(JmpCond::Le, slot, last as i32, ok);
        self.mov(slot, last as i32);
        self.op(Op::Label(ok));
        self.alu(AluOp::Lsh, slot, 3);
        let q = self.v();
        self.mov(q, p);
        self.alu(AluOp::Add, q, slot);
        let t = self.v();
        let m = Mem {
            base: Base::R(q),
            off: 0,
        };
        self.load(Size::DW, t, m);
        self.alu(AluOp::Add, t, 1);
        self.store(Size::DW, m, t);
    }

    /// bpftrace's log2 bucket: 0 for negative, 1 for zero, else
    /// `2 + floor(log2(x))`.
    fn log2_slot(&mut self, x: R) -> R {
        let slot = self.v();
        let done = self.label();
        self.mov(slot, 0);
        self.br(JmpCond::SLt, x, 0, done);
        self.mov(slot, 1);
        self.br(JmpCond::Eq, x, 0, done);
        let v = self.v();
        self.mov(v, x);
        self.mov(slot, 2);
        for shift in [32, 16, 8, 4, 2, 1] {
            let t = self.v();
            let skip = self.label();
            self.mov(t, v);
            self.alu(AluOp::Rsh, t, shift);
            self.br(JmpCond::Eq, t, 0, skip);
            self.mov(v, t);
            self.alu(AluOp::Add, slot, shift);
            self.op(Op::Label(skip));
        }
        self.op(Op::Label(done));
        slot
    }

    /// Read an integer map value, 0 when absent.
    fn map_int(&mut self, map: u32, key: Mem) -> R {
        let out = self.v();
        let done = self.label();
        self.mov(out, 0);
        let p = self.call(Helper::MapLookupElem, &[Arg::Map(map), Arg::Mem(key)]);
        self.br(JmpCond::Eq, p, 0, done);
        self.load(
            Size::DW,
            out,
            Mem {
                base: Base::R(p),
                off: 0,
            },
        );
        self.op(Op::Label(done));
        out
    }

    /// `dst op= x`; `divisor` is `x`'s value when it is a literal.
    fn binop_into(&mut self, op: BinOp, dst: R, x: R, signed: bool, divisor: Option<i64>) {
        if matches!(op, BinOp::Div | BinOp::Mod)
            && let Some(k) = divisor.and_then(pow2_shift)
        {
            return self.div_mod_pow2(op == BinOp::Div, dst, k, signed);
        }
        let alu = match op {
            BinOp::Add => AluOp::Add,
            BinOp::Sub => AluOp::Sub,
            BinOp::Mul => AluOp::Mul,
            BinOp::Div if signed => AluOp::SDiv,
            BinOp::Div => AluOp::Div,
            BinOp::Mod if signed => AluOp::SMod,
            BinOp::Mod => AluOp::Mod,
            BinOp::BitAnd => AluOp::And,
            BinOp::BitOr => AluOp::Or,
            BinOp::BitXor => AluOp::Xor,
            BinOp::Shl => AluOp::Lsh,
            BinOp::Shr if signed => AluOp::Arsh,
            BinOp::Shr => AluOp::Rsh,
            _ => {
                let r = self.compare(op, dst, x, signed);
                self.mov(dst, r);
                return;
            }
        };
        self.alu(alu, dst, x);
    }

    /// `dst /= 2^k` or `dst %= 2^k` with shifts and masks instead of
    /// (s)div/(s)mod.
    ///
    /// The verifier does not track the result of a division or modulo (it
    /// becomes an unknown scalar even for known operands), so a loop that
    /// branches on `$i % 2` forks at every iteration and its paths never
    /// prune: `while` loops with such a test ran out of the 1M-instruction
    /// budget. Shifts, masks and adds keep known values known. Signed
    /// operands round toward zero like `sdiv`/`smod`: a negative dividend
    /// is biased by `2^k - 1` first (`bias = (a s>> 63) >> (64 - k)`),
    /// branch-free so no path is added either.
    fn div_mod_pow2(&mut self, div: bool, dst: R, k: u32, signed: bool) {
        let k = k as i32;
        let mask = (1i32 << k) - 1;
        if !signed {
            return if div {
                self.alu(AluOp::Rsh, dst, k)
            } else {
                self.alu(AluOp::And, dst, mask)
            };
        }
        let bias = self.v();
        self.mov(bias, dst);
        self.alu(AluOp::Arsh, bias, 63);
        self.alu(AluOp::Rsh, bias, 64 - k);
        self.alu(AluOp::Add, dst, bias);
        if div {
            self.alu(AluOp::Arsh, dst, k);
        } else {
            self.alu(AluOp::And, dst, mask);
            self.alu(AluOp::Sub, dst, bias);
        }
    }

    fn compare(&mut self, op: BinOp, a: R, b: R, signed: bool) -> R {
        let cond = match (op, signed) {
            (BinOp::Eq, _) => JmpCond::Eq,
            (BinOp::Ne, _) => JmpCond::Ne,
            (BinOp::Lt, true) => JmpCond::SLt,
            (BinOp::Lt, false) => JmpCond::Lt,
            (BinOp::Le, true) => JmpCond::SLe,
            (BinOp::Le, false) => JmpCond::Le,
            (BinOp::Gt, true) => JmpCond::SGt,
            (BinOp::Gt, false) => JmpCond::Gt,
            (BinOp::Ge, true) => JmpCond::SGe,
            (_, _) => JmpCond::Ge,
        };
        let r = self.v();
        let done = self.label();
        self.mov(r, 1);
        self.br(cond, a, b, done);
        self.mov(r, 0);
        self.op(Op::Label(done));
        r
    }

    fn expr_stmt(&mut self, e: &Expr, span: Span) {
        let ExprKind::Call { name, args } = &e.kind else {
            if self.ty(e).is_mem() {
                self.mem(e);
            } else {
                self.int(e);
            }
            return;
        };
        match name.name.as_str() {
            "printf" => {
                let Some((
                    Expr {
                        kind: ExprKind::Str(format),
                        ..
                    },
                    rest,
                )) = args.split_first()
                else {
                    return self.internal(span, "printf");
                };
                self.emit_event(
                    EventKind::Printf {
                        format: format.clone(),
                    },
                    rest,
                    span,
                );
            }
            "exit" => {
                self.emit_event(EventKind::Exit, &[], span);
                self.op(Op::Jmp(self.exit));
            }
            "time" => {
                let format = match args.first().map(|a| &a.kind) {
                    Some(ExprKind::Str(s)) => s.clone(),
                    _ => "%H:%M:%S\n".to_string(),
                };
                self.emit_event(EventKind::Time { format }, &[], span);
            }
            "clear" | "zero" | "print" => {
                if let Some(Expr {
                    kind: ExprKind::Map(m),
                    ..
                }) = args.first()
                    && m.keys.is_empty()
                {
                    let (map, _) = self.user_map(m);
                    let kind = match name.name.as_str() {
                        "clear" => EventKind::Clear { map },
                        "zero" => EventKind::Zero { map },
                        _ => EventKind::Print {
                            map,
                            top: args.get(1).and_then(const_int).unwrap_or(0) as u64,
                            div: args.get(2).and_then(const_int).unwrap_or(1).max(1) as u64,
                        },
                    };
                    return self.emit_event(kind, &[], span);
                }
                self.emit_event(EventKind::PrintValue, args, span);
            }
            _ => {
                if self.ty(e).is_mem() {
                    self.mem(e);
                } else {
                    self.int(e);
                }
            }
        }
    }

    /// Reserve a ring-buffer record, fill header and fields, submit. When
    /// the buffer is full the per-CPU drop counter goes up instead.
    fn emit_event(&mut self, kind: EventKind, args: &[Expr], span: Span) {
        let tys: Vec<Ty> = args.iter().map(|a| self.ty(a)).collect();
        let named: Vec<(String, &Ty)> = tys
            .iter()
            .enumerate()
            .map(|(i, t)| (i.to_string(), t))
            .collect();
        let (fields, size) = layout_fields(named.into_iter()).unwrap_or_default();
        let output = kind.is_output();
        let id = self.res.event(kind, fields.clone(), size, span);
        let total = RECORD_HEADER_SIZE + size;
        let rec = self.v();
        let (dropped, done) = (self.label(), self.label());
        let r = self.call(
            Helper::RingbufReserve,
            &[
                Arg::Map(self.res.ringbuf),
                Arg::Imm(total as i32),
                Arg::Imm(0),
            ],
        );
        self.mov(rec, r);
        self.br(JmpCond::Eq, rec, 0, dropped);
        let at = |off: u32| Mem {
            base: Base::R(rec),
            off: off as i32,
        };
        self.store(Size::W, at(0), id as i32);
        let cpu = self.call(Helper::GetSmpProcessorId, &[]);
        self.store(Size::W, at(4), cpu);
        let ts = self.call(Helper::KtimeGetNs, &[]);
        self.store(Size::DW, at(8), ts);
        let pt = self.call(Helper::GetCurrentPidTgid, &[]);
        self.store(Size::DW, at(16), pt);
        for ((a, t), f) in args.iter().zip(&tys).zip(&fields) {
            self.write_into(a, t, at(RECORD_HEADER_SIZE + f.offset));
        }
        if output {
            self.submit_output(rec);
        } else {
            self.call(
                Helper::RingbufSubmit,
                &[Arg::R(rec), Arg::Imm(BPF_RB_FORCE_WAKEUP)],
            );
        }
        self.op(Op::Jmp(done));
        self.op(Op::Label(dropped));
        let key = self.alloc(8);
        self.store(Size::DW, key, 0);
        let p = self.call(
            Helper::MapLookupElem,
            &[Arg::Map(self.res.drops), Arg::Mem(key)],
        );
        self.br(JmpCond::Eq, p, 0, done);
        let cnt = Mem {
            base: Base::R(p),
            off: 0,
        };
        let t = self.v();
        self.load(Size::DW, t, cnt);
        self.alu(AluOp::Add, t, 1);
        self.store(Size::DW, cnt, t);
        self.op(Op::Label(done));
    }

    /// Submit an output record (printf, print of a value) without waking
    /// the consumer unless the buffer holds more than
    /// [`crate::artifact::wakeup_threshold`] unread bytes: under a flood a
    /// wakeup per record costs more than the record (see the Events role).
    fn submit_output(&mut self, rec: R) {
        let ring = self.res.ringbuf;
        let size = self.res.maps[ring as usize].max_entries;
        let threshold = i32::try_from(crate::artifact::wakeup_threshold(size)).unwrap_or(i32::MAX);
        let avail = self.call(
            Helper::RingbufQuery,
            &[Arg::Map(ring), Arg::Imm(BPF_RB_AVAIL_DATA)],
        );
        let flags = self.v();
        self.mov(flags, BPF_RB_NO_WAKEUP);
        let quiet = self.label();
        self.br(JmpCond::Le, avail, threshold, quiet);
        self.mov(flags, BPF_RB_FORCE_WAKEUP);
        self.op(Op::Label(quiet));
        self.call(Helper::RingbufSubmit, &[Arg::R(rec), Arg::R(flags)]);
    }

    fn zero(&mut self, m: Mem, len: u32) {
        let mut off = 0;
        while off < len {
            let size = access_size(len - off, &[m.off + off as i32]);
            self.store(size, m.at(off), 0);
            off += size.bytes() as u32;
        }
    }

    fn copy(&mut self, dst: Mem, src: Mem, len: u32) {
        let mut off = 0;
        let t = self.v();
        while off < len {
            // Both sides aligned: the verifier refuses misaligned stack and
            // context accesses.
            let size = access_size(len - off, &[src.off + off as i32, dst.off + off as i32]);
            self.load(size, t, src.at(off));
            self.store(size, dst.at(off), t);
            off += size.bytes() as u32;
        }
    }

    /// Write `e` into `dst` laid out as `target`.
    fn write_into(&mut self, e: &Expr, target: &Ty, dst: Mem) {
        match target {
            Ty::Int { .. } | Ty::Ksym | Ty::Kstack => {
                let r = self.int(e);
                self.store(Size::DW, dst, r);
            }
            Ty::Str(n) => self.write_str(e, *n, dst),
            Ty::Void => {}
            _ => match (&e.kind, target) {
                (ExprKind::Tuple(elems), Ty::Tuple(tys)) => {
                    // Padding is zeroed: tuples may be map keys.
                    let mut off = 0u32;
                    for (x, t) in elems.iter().zip(tys) {
                        let start = off.next_multiple_of(8);
                        self.zero(dst.at(off), start - off);
                        self.write_into(x, t, dst.at(start));
                        off = start + t.size();
                    }
                    self.zero(dst.at(off), target.size() - off);
                }
                (ExprKind::Call { name, args }, Ty::Usym) if name.name == "usym" => {
                    let a = self.int(&args[0]);
                    self.store(Size::DW, dst, a);
                    let pt = self.call(Helper::GetCurrentPidTgid, &[]);
                    self.alu(AluOp::Rsh, pt, 32);
                    self.store(Size::DW, dst.at(8), pt);
                }
                (ExprKind::Builtin(_), Ty::Ustack) => {
                    let id = self.stack_id(true, &[]);
                    self.store(Size::DW, dst, id);
                    let pt = self.call(Helper::GetCurrentPidTgid, &[]);
                    self.alu(AluOp::Rsh, pt, 32);
                    self.store(Size::DW, dst.at(8), pt);
                }
                (ExprKind::Call { args, .. }, Ty::Ustack) => {
                    let id = self.stack_id(true, args);
                    self.store(Size::DW, dst, id);
                    let pt = self.call(Helper::GetCurrentPidTgid, &[]);
                    self.alu(AluOp::Rsh, pt, 32);
                    self.store(Size::DW, dst.at(8), pt);
                }
                (ExprKind::Call { name, args }, Ty::Buf(n)) if name.name == "buf" => {
                    let p = self.int(&args[0]);
                    let len = const_int(&args[1]).unwrap_or(0).clamp(0, *n as i64) as u32;
                    self.store(Size::W, dst, len as i32);
                    let h = self.read_helper(&args[0], false);
                    self.call(h, &[Arg::Mem(dst.at(4)), Arg::Imm(len as i32), Arg::R(p)]);
                }
                _ => {
                    let src = self.mem(e);
                    self.copy(dst, src, target.size());
                }
            },
        }
    }

    /// The kernel member `base->field` / `base.field` when `base` is
    /// BTF-typed (errors were reported by the checker).
    fn kernel_member(
        &mut self,
        base: &Expr,
        field: &str,
        arrow: bool,
        span: Span,
    ) -> Option<KernelMember> {
        self.typer()
            .kernel_member(base, field, arrow, span)
            .ok()
            .flatten()
    }

    /// The kernel address of member `m` of `base`: the pointer `base`
    /// plus the offset for `->`; for `.` on an embedded struct, that
    /// struct's own address plus the offset (nothing is read).
    fn kernel_addr(&mut self, base: &Expr, m: &KernelMember, arrow: bool) -> R {
        let addr = if arrow {
            self.int(base)
        } else if let ExprKind::Field {
            expr,
            field,
            arrow: outer_arrow,
        } = &base.kind
            && let Some(outer) = self.kernel_member(expr, &field.name, *outer_arrow, field.span)
        {
            self.kernel_addr(expr, &outer, *outer_arrow)
        } else {
            return self.zero_reg(base.span, "this struct");
        };
        // Struct offsets are far below i32::MAX.
        self.alu(AluOp::Add, addr, m.offset as i32);
        addr
    }

    /// Read integer or pointer member `m` of `base` with
    /// `probe_read_kernel` (0 when the read faults).
    fn kernel_int(&mut self, base: &Expr, m: &KernelMember, arrow: bool) -> R {
        let (size, signed) = match m.ty {
            KernelType::Int { size, signed } => (size, signed),
            _ => (8, false),
        };
        let addr = self.kernel_addr(base, m, arrow);
        let slot = self.alloc_stack_only(8);
        self.store(Size::DW, slot, 0);
        self.call(
            Helper::ProbeReadKernel,
            &[Arg::Mem(slot), Arg::Imm(size as i32), Arg::R(addr)],
        );
        let (sz, bits) = match size {
            1 => (Size::B, 8),
            2 => (Size::H, 16),
            4 => (Size::W, 32),
            _ => (Size::DW, 64),
        };
        let r = self.v();
        self.load(sz, r, slot);
        if signed && bits < 64 {
            self.op(Op::Movsx(r, r, bits));
        }
        r
    }

    /// `bpf_get_stackid` into the stack map; `args` are the call's
    /// (empty for the bare builtin), which set the frame limit.
    fn stack_id(&mut self, user: bool, args: &[Expr]) -> R {
        let name = if user { "ustack" } else { "kstack" };
        // The checker has refused a bad limit already.
        let limit = stack_limit(name, args).unwrap_or(STACK_DEPTH);
        let map = self.res.stacks(limit);
        let flags = if user { BPF_F_USER_STACK } else { 0 };
        self.call(
            Helper::GetStackid,
            &[Arg::R(self.ctx), Arg::Map(map), Arg::Imm(flags)],
        )
    }

    /// `probe_read_{user,kernel}[_str]` by the pointer's address space.
    fn read_helper(&mut self, ptr: &Expr, string: bool) -> Helper {
        let space = match self.ty(ptr) {
            Ty::Int {
                space: Space::None, ..
            } => self.unit.provider.space(),
            Ty::Int { space, .. } => space,
            _ => Space::Kernel,
        };
        // Unknown address space: the legacy helpers try both (x86_64 has
        // non-overlapping user and kernel address ranges).
        match (space, string) {
            (Space::User, true) => Helper::ProbeReadUserStr,
            (Space::User, false) => Helper::ProbeReadUser,
            (Space::Kernel, true) => Helper::ProbeReadKernelStr,
            (Space::Kernel, false) => Helper::ProbeReadKernel,
            (Space::None, true) => Helper::ProbeReadStr,
            (Space::None, false) => Helper::ProbeRead,
        }
    }

    fn literal(&mut self, s: &[u8], n: u32, dst: Mem) {
        let mut bytes = s.to_vec();
        bytes.truncate(n.saturating_sub(1) as usize);
        bytes.resize(n as usize, 0);
        let mut off = 0usize;
        while off < bytes.len() {
            let size = access_size((bytes.len() - off).min(4) as u32, &[dst.off + off as i32]);
            let mut v = 0i64;
            for i in 0..size.bytes() {
                v |= i64::from(bytes[off + i]) << (8 * i);
            }
            let v = match size {
                Size::W => v as u32 as i32,
                _ => v as i32,
            };
            self.store(size, dst.at(off as u32), v);
            off += size.bytes();
        }
    }

    /// Write a string value into `n` bytes at `dst` (NUL padded).
    fn write_str(&mut self, e: &Expr, n: u32, dst: Mem) {
        if let ExprKind::Field { expr, field, arrow } = &e.kind
            && let Some(m) = self.kernel_member(expr, &field.name, *arrow, field.span)
            && let KernelType::CharArray { len } = m.ty
        {
            // A kernel `char[len]`: the bytes as they are, NUL padded.
            let addr = self.kernel_addr(expr, &m, *arrow);
            self.zero(dst, n);
            self.call(
                Helper::ProbeReadKernel,
                &[Arg::Mem(dst), Arg::Imm(len.min(n) as i32), Arg::R(addr)],
            );
            return;
        }
        match &e.kind {
            ExprKind::Str(s) => self.literal(s.as_bytes(), n, dst),
            ExprKind::Positional(i) => {
                let s = self
                    .params
                    .get((*i as usize).wrapping_sub(1))
                    .cloned()
                    .unwrap_or_default();
                self.literal(s.as_bytes(), n, dst);
            }
            ExprKind::Builtin(b) if b == "comm" => {
                if n > COMM_LEN {
                    self.zero(dst.at(COMM_LEN), n - COMM_LEN);
                }
                self.call(
                    Helper::GetCurrentComm,
                    &[Arg::Mem(dst), Arg::Imm(n.min(COMM_LEN) as i32)],
                );
            }
            ExprKind::Builtin(b)
                if (b == "probe" || b == "func")
                    && self.unit.expanded.len() > 1
                    && self.unit.raw_syscalls.is_some() =>
            {
                let mut names: Vec<(u32, String)> = self
                    .unit
                    .expanded
                    .iter()
                    .filter_map(|e| {
                        let name = if b == "probe" { &e.probe } else { &e.func };
                        e.syscall.map(|s| (s.nr, name.clone()))
                    })
                    .collect();
                names.sort();
                names.dedup_by_key(|(nr, _)| *nr);
                let exit = self.unit.raw_syscalls.as_ref().is_some_and(|r| r.exit);
                let id = self.syscall_nr(exit);
                let end = self.label();
                self.name_by_nr(id, &names, n, dst, end);
                self.op(Op::Label(end));
            }
            ExprKind::Builtin(b) if b == "probe" || b == "func" => {
                let first = self.unit.first();
                let s = if b == "probe" {
                    first.probe.clone()
                } else {
                    first.func.clone()
                };
                self.literal(s.as_bytes(), n, dst);
            }
            ExprKind::Call { name, args } if name.name == "str" => {
                let cap = match self.ty(e) {
                    Ty::Str(c) => c.min(n),
                    _ => n,
                };
                if matches!(self.ty(&args[0]), Ty::Str(_)) {
                    self.write_str(&args[0], cap, dst);
                    if n > cap {
                        self.zero(dst.at(cap), n - cap);
                    }
                    return;
                }
                let p = self.int(&args[0]);
                self.zero(dst, n);
                let h = self.read_helper(&args[0], true);
                self.call(h, &[Arg::Mem(dst), Arg::Imm(cap as i32), Arg::R(p)]);
            }
            ExprKind::Field { field, .. } if args_field(e).is_some() => {
                let read = self
                    .unit
                    .first()
                    .args
                    .as_ref()
                    .and_then(|a| a.iter().find(|f| f.name == field.name))
                    .map(|f| f.read.clone());
                if let Some(ArgRead::DataLocStr { off }) = read {
                    // Low 16 bits: offset of the string in the context.
                    let loc = self.ctx_load(
                        CtxRead {
                            off,
                            size: Size::W,
                            signed: false,
                        },
                        &Ty::U64,
                    );
                    self.alu(AluOp::And, loc, 0xffff);
                    let p = self.v();
                    self.mov(p, self.ctx);
                    self.alu(AluOp::Add, p, loc);
                    self.zero(dst, n);
                    self.call(
                        Helper::ProbeReadKernelStr,
                        &[Arg::Mem(dst), Arg::Imm(n as i32), Arg::R(p)],
                    );
                } else if let Some(ArgRead::InlineStr { off, len }) = read {
                    let src = Mem {
                        base: Base::R(self.ctx),
                        off: i32::from(off),
                    };
                    let m = len.min(n);
                    self.copy(dst, src, m);
                    if n > m {
                        self.zero(dst.at(m), n - m);
                    }
                    if m == n {
                        // Keep the copy NUL-terminated like bpftrace.
                        self.store(Size::B, dst.at(n - 1), 0);
                    }
                } else {
                    self.internal(e.span, "this field as a string");
                }
            }
            ExprKind::Ternary {
                cond,
                then_expr,
                else_expr,
            } => {
                let c = self.int(cond);
                let (other, end) = (self.label(), self.label());
                self.br(JmpCond::Eq, c, 0, other);
                self.write_str(then_expr, n, dst);
                self.op(Op::Jmp(end));
                self.op(Op::Label(other));
                self.write_str(else_expr, n, dst);
                self.op(Op::Label(end));
            }
            ExprKind::Var(v) => {
                let cap = match self.var_types.get(&v.name) {
                    Some(Ty::Str(c)) => *c,
                    _ => n,
                };
                if let Some(VarLoc::Mem(src)) = self.vars.get(&v.name).copied() {
                    let m = cap.min(n);
                    self.copy(dst, src, m);
                    if n > m {
                        self.zero(dst.at(m), n - m);
                    }
                }
            }
            ExprKind::Map(m) => {
                let (idx, decl) = self.user_map(m);
                let cap = match &decl.value {
                    MapVal::Scalar(Ty::Str(c)) => *c,
                    _ => n,
                };
                let key = self.key(&decl, m);
                let (miss, end) = (self.label(), self.label());
                let p = self.call(Helper::MapLookupElem, &[Arg::Map(idx), Arg::Mem(key)]);
                self.br(JmpCond::Eq, p, 0, miss);
                let mm = cap.min(n);
                self.copy(
                    dst,
                    Mem {
                        base: Base::R(p),
                        off: 0,
                    },
                    mm,
                );
                if n > mm {
                    self.zero(dst.at(mm), n - mm);
                }
                self.op(Op::Jmp(end));
                self.op(Op::Label(miss));
                self.zero(dst, n);
                self.op(Op::Label(end));
            }
            _ => self.internal(e.span, "this string"),
        }
    }

    /// Write the name belonging to syscall `id` (binary search over the
    /// sorted `names`), then jump to `end`.
    fn name_by_nr(&mut self, id: R, names: &[(u32, String)], n: u32, dst: Mem, end: Label) {
        if names.len() <= 3 {
            for (nr, name) in names {
                let next = self.label();
                self.br(JmpCond::Ne, id, *nr as i32, next);
                self.literal(name.as_bytes(), n, dst);
                self.op(Op::Jmp(end));
                self.op(Op::Label(next));
            }
            self.zero(dst, n);
            self.op(Op::Jmp(end));
            return;
        }
        let mid = names.len() / 2;
        let upper = self.label();
        self.br(JmpCond::Ge, id, names[mid].0 as i32, upper);
        self.name_by_nr(id, &names[..mid], n, dst, end);
        self.op(Op::Label(upper));
        self.name_by_nr(id, &names[mid..], n, dst, end);
    }

    /// A memory-typed value's location (fresh memory unless it is a
    /// variable, which is only read).
    fn mem(&mut self, e: &Expr) -> Mem {
        if let ExprKind::Var(v) = &e.kind
            && let Some(VarLoc::Mem(m)) = self.vars.get(&v.name).copied()
        {
            return m;
        }
        let t = self.ty(e);
        if let (ExprKind::Map(m), Ty::Tuple(_) | Ty::Usym | Ty::Ustack | Ty::Buf(_)) = (&e.kind, &t)
        {
            let (idx, decl) = self.user_map(m);
            let key = self.key(&decl, m);
            let out = self.alloc(t.size());
            self.zero(out, t.size());
            let end = self.label();
            let p = self.call(Helper::MapLookupElem, &[Arg::Map(idx), Arg::Mem(key)]);
            self.br(JmpCond::Eq, p, 0, end);
            self.copy(
                out,
                Mem {
                    base: Base::R(p),
                    off: 0,
                },
                t.size(),
            );
            self.op(Op::Label(end));
            return out;
        }
        let m = self.alloc(t.size());
        match (&e.kind, &t) {
            (
                ExprKind::Ternary {
                    cond,
                    then_expr,
                    else_expr,
                },
                _,
            ) if !matches!(t, Ty::Str(_)) => {
                let c = self.int(cond);
                let (other, end) = (self.label(), self.label());
                self.br(JmpCond::Eq, c, 0, other);
                self.write_into(then_expr, &t, m);
                self.op(Op::Jmp(end));
                self.op(Op::Label(other));
                self.write_into(else_expr, &t, m);
                self.op(Op::Label(end));
            }
            (ExprKind::Field { expr, field, .. }, _)
                if args_field(e).is_none() && matches!(self.typer().ty(expr), Ok(Ty::Tuple(_))) =>
            {
                // Tuple element: copy out of the tuple.
                let tt = self.ty(expr);
                let src = self.mem(expr);
                if let (Ty::Tuple(elems), Ok(i)) = (&tt, field.name.parse::<usize>()) {
                    let mut off = 0u32;
                    for t in elems.iter().take(i) {
                        off = (off + t.size()).next_multiple_of(8);
                    }
                    self.copy(m, src.at(off), t.size());
                }
            }
            _ => self.write_into(e, &t, m),
        }
        m
    }

    fn ctx_load(&mut self, read: CtxRead, ty: &Ty) -> R {
        let r = self.v();
        self.load(
            read.size,
            r,
            Mem {
                base: Base::R(self.ctx),
                off: i32::from(read.off),
            },
        );
        if read.signed && read.size != Size::DW {
            self.op(Op::Movsx(r, r, (read.size.bytes() * 8) as i16));
        }
        let _ = ty;
        r
    }

    fn config_load(&mut self, off: u32) -> R {
        let cfg = self.v();
        self.op(Op::MapValue {
            dst: cfg,
            map: self.res.config,
            off: 0,
        });
        let r = self.v();
        self.load(
            Size::DW,
            r,
            Mem {
                base: Base::R(cfg),
                off: off as i32,
            },
        );
        r
    }

    fn builtin(&mut self, name: &str, span: Span) -> R {
        let h = |l: &mut Self, h: Helper| l.call(h, &[]);
        match name {
            "pid" => {
                let r = h(self, Helper::GetCurrentPidTgid);
                self.alu(AluOp::Rsh, r, 32);
                r
            }
            "tid" | "uid" => {
                let r = h(
                    self,
                    if name == "tid" {
                        Helper::GetCurrentPidTgid
                    } else {
                        Helper::GetCurrentUidGid
                    },
                );
                self.alu(AluOp::Lsh, r, 32);
                self.alu(AluOp::Rsh, r, 32);
                r
            }
            "gid" => {
                let r = h(self, Helper::GetCurrentUidGid);
                self.alu(AluOp::Rsh, r, 32);
                r
            }
            "nsecs" => h(self, Helper::KtimeGetNs),
            "elapsed" => {
                let now = h(self, Helper::KtimeGetNs);
                let start = self.config_load(CONFIG_START_NS);
                self.alu(AluOp::Sub, now, start);
                now
            }
            "cpu" => h(self, Helper::GetSmpProcessorId),
            "cgroup" => h(self, Helper::GetCurrentCgroupId),
            "rand" => h(self, Helper::GetPrandomU32),
            "jiffies" => h(self, Helper::Jiffies64),
            "curtask" => h(self, Helper::GetCurrentTask),
            "cpid" => self.config_load(CONFIG_CPID),
            "kstack" => self.stack_id(false, &[]),
            "retval" => {
                let read = self.unit.provider.retval(self.unit.kind, self.unit.first());
                match read {
                    Some(r) => self.ctx_load(r, &Ty::I64),
                    None => self.zero_reg(span, name),
                }
            }
            _ => {
                let read = name
                    .strip_prefix("arg")
                    .and_then(|d| d.parse::<u32>().ok())
                    .and_then(|n| self.unit.provider.arg(n));
                match read {
                    Some(r) => self.ctx_load(r, &Ty::U64),
                    None => self.zero_reg(span, name),
                }
            }
        }
    }

    fn zero_reg(&mut self, span: Span, what: &str) -> R {
        self.internal(span, &format!("`{what}`"));
        self.imm(0)
    }

    /// An integer-valued expression into a fresh register the caller owns.
    fn int(&mut self, e: &Expr) -> R {
        match &e.kind {
            ExprKind::Int(n) => self.imm(*n as i64),
            ExprKind::Positional(i) => {
                let v = self
                    .params
                    .get((*i as usize).wrapping_sub(1))
                    .and_then(|p| p.parse::<i64>().ok())
                    .unwrap_or(0);
                self.imm(v)
            }
            ExprKind::PositionalCount => self.imm(self.params.len() as i64),
            ExprKind::Var(v) => {
                let r = self.v();
                match self.vars.get(&v.name).copied() {
                    Some(VarLoc::Reg(src)) => self.mov(r, src),
                    _ => {
                        self.internal(v.span, "this variable as an integer");
                        self.mov(r, 0);
                    }
                }
                r
            }
            ExprKind::Map(m) => {
                let (idx, decl) = self.user_map(m);
                let key = self.key(&decl, m);
                self.map_int(idx, key)
            }
            ExprKind::Builtin(b) => self.builtin(b, e.span),
            ExprKind::Call { name, args } => match name.name.as_str() {
                "ksym" | "usym" => self.int(&args[0]),
                "kstack" => self.stack_id(false, args),
                "strncmp" => {
                    let limit = const_int(&args[2]).unwrap_or(0) as u32;
                    let eq = self.str_eq(&args[0], &args[1], Some(limit));
                    self.alu(AluOp::Xor, eq, 1);
                    eq
                }
                _ => self.zero_reg(e.span, &format!("{}()", name.name)),
            },
            ExprKind::Unary { op, expr } => {
                let r = self.int(expr);
                match op {
                    UnaryOp::Not => {
                        let zero = self.imm(0);
                        self.compare(BinOp::Eq, r, zero, false)
                    }
                    UnaryOp::BitNot => {
                        self.alu(AluOp::Xor, r, -1);
                        r
                    }
                    UnaryOp::Neg => {
                        self.op(Op::Neg(r));
                        r
                    }
                    _ => self.zero_reg(e.span, op.symbol()),
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs),
            ExprKind::Ternary {
                cond,
                then_expr,
                else_expr,
            } => {
                let out = self.v();
                let c = self.int(cond);
                let (other, end) = (self.label(), self.label());
                self.br(JmpCond::Eq, c, 0, other);
                let a = self.int(then_expr);
                self.mov(out, a);
                self.op(Op::Jmp(end));
                self.op(Op::Label(other));
                let b = self.int(else_expr);
                self.mov(out, b);
                self.op(Op::Label(end));
                out
            }
            ExprKind::Cast { expr, .. } => {
                let r = self.int(expr);
                if let Ty::Int { bits, signed, .. } = self.ty(e)
                    && bits < 64
                {
                    if signed {
                        self.op(Op::Movsx(r, r, i16::from(bits)));
                    } else {
                        let shift = i32::from(64 - bits);
                        self.alu(AluOp::Lsh, r, shift);
                        self.alu(AluOp::Rsh, r, shift);
                    }
                }
                r
            }
            ExprKind::Field { expr, field, arrow } => {
                if let Some(m) = self.kernel_member(expr, &field.name, *arrow, field.span) {
                    return self.kernel_int(expr, &m, *arrow);
                }
                if args_field(e).is_some() {
                    let read = self
                        .unit
                        .first()
                        .args
                        .as_ref()
                        .and_then(|a| a.iter().find(|f| f.name == field.name))
                        .map(|f| f.read.clone());
                    match read {
                        Some(ArgRead::Int(read, ty)) => return self.ctx_load(read, &ty),
                        Some(ArgRead::SyscallArg { reg_off, .. }) => {
                            return self.syscall_regs(reg_off);
                        }
                        Some(ArgRead::SyscallNr) => {
                            let exit = self.unit.raw_syscalls.as_ref().is_some_and(|r| r.exit);
                            return self.syscall_nr(exit);
                        }
                        _ => {}
                    }
                    return self.zero_reg(e.span, "this field");
                }
                // An integer tuple element.
                let m = self.mem(e);
                let r = self.v();
                self.load(Size::DW, r, m);
                r
            }
            ExprKind::IncDec {
                target,
                increment,
                prefix,
            } => self.incdec(target, *increment, *prefix),
            _ => self.zero_reg(e.span, "this expression"),
        }
    }

    fn incdec(&mut self, target: &LValue, increment: bool, prefix: bool) -> R {
        let delta = if increment { 1 } else { -1 };
        match target {
            LValue::Var(v) => {
                let Some(VarLoc::Reg(var)) = self.vars.get(&v.name).copied() else {
                    return self.zero_reg(v.span, "this variable");
                };
                let old = self.v();
                self.mov(old, var);
                self.alu(AluOp::Add, var, delta);
                let out = self.v();
                self.mov(out, if prefix { var } else { old });
                out
            }
            LValue::Map(m) => {
                let (idx, decl) = self.user_map(m);
                let key = self.key(&decl, m);
                let old = self.map_int(idx, key);
                let new = self.v();
                self.mov(new, old);
                self.alu(AluOp::Add, new, delta);
                let val = self.alloc(8);
                self.store(Size::DW, val, new);
                self.call(
                    Helper::MapUpdateElem,
                    &[Arg::Map(idx), Arg::Mem(key), Arg::Mem(val), Arg::Imm(0)],
                );
                if prefix { new } else { old }
            }
        }
    }

    fn binary(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr) -> R {
        match op {
            BinOp::LogAnd | BinOp::LogOr => {
                let and = op == BinOp::LogAnd;
                let out = self.v();
                let end = self.label();
                self.mov(out, i32::from(!and));
                let a = self.int(lhs);
                let stop = if and { JmpCond::Eq } else { JmpCond::Ne };
                self.br(stop, a, 0, end);
                let b = self.int(rhs);
                self.br(stop, b, 0, end);
                self.mov(out, i32::from(and));
                self.op(Op::Label(end));
                out
            }
            BinOp::Eq | BinOp::Ne if matches!(self.ty(lhs), Ty::Str(_)) => {
                let eq = self.str_eq(lhs, rhs, None);
                if op == BinOp::Ne {
                    self.alu(AluOp::Xor, eq, 1);
                }
                eq
            }
            _ => {
                let (ta, tb) = (self.ty(lhs), self.ty(rhs));
                let signed = crate::check::arith_signed(lhs, rhs, &ta, &tb);
                let a = self.int(lhs);
                let b = self.int(rhs);
                self.binop_into(op, a, b, signed, crate::check::const_int(rhs));
                a
            }
        }
    }

    /// 1 when the strings are equal (within `limit` bytes), else 0.
    fn str_eq(&mut self, a: &Expr, b: &Expr, limit: Option<u32>) -> R {
        let (a, b) = if matches!(a.kind, ExprKind::Str(_)) {
            (b, a)
        } else {
            (a, b)
        };
        let cap = |t: Ty| if let Ty::Str(n) = t { n } else { 0 };
        let (ca, cb) = (cap(self.ty(a)), cap(self.ty(b)));
        let out = self.v();
        let (ne, done) = (self.label(), self.label());
        let ma = self.mem(a);
        let t = self.v();
        if let ExprKind::Str(lit) = &b.kind {
            // Compare against the literal and its NUL, byte by byte.
            let mut bytes = lit.as_bytes().to_vec();
            bytes.push(0);
            let n = (bytes.len() as u32).min(ca).min(limit.unwrap_or(u32::MAX));
            for (i, &byte) in bytes.iter().take(n as usize).enumerate() {
                self.load(Size::B, t, ma.at(i as u32));
                self.br(JmpCond::Ne, t, i32::from(byte), ne);
            }
        } else {
            let mb = self.mem(b);
            let n = ca.min(cb).min(limit.unwrap_or(u32::MAX));
            let u = self.v();
            let eq = self.label();
            for i in 0..n {
                self.load(Size::B, t, ma.at(i));
                self.load(Size::B, u, mb.at(i));
                self.br(JmpCond::Ne, t, u, ne);
                self.br(JmpCond::Eq, t, 0, eq);
            }
            self.op(Op::Label(eq));
        }
        self.mov(out, 1);
        self.op(Op::Jmp(done));
        self.op(Op::Label(ne));
        self.mov(out, 0);
        self.op(Op::Label(done));
        out
    }
}

/// Conversion helper so `mov`/`alu`/`br` take registers or immediates.
struct OpndArg(Opnd);

impl From<R> for OpndArg {
    fn from(r: R) -> Self {
        OpndArg(Opnd::R(r))
    }
}

impl From<i32> for OpndArg {
    fn from(i: i32) -> Self {
        OpndArg(Opnd::Imm(i))
    }
}

impl From<Opnd> for OpndArg {
    fn from(o: Opnd) -> Self {
        OpndArg(o)
    }
}

/// `k` when `c == 2^k` with `1 <= k <= 30` (the mask `c - 1` fits an
/// immediate).
fn pow2_shift(c: i64) -> Option<u32> {
    (c >= 2 && c.count_ones() == 1 && c <= 1 << 30).then(|| c.trailing_zeros())
}

/// `config.scope_leader = 0` when it equals `who` (the command's leader
/// thread exits): a later process given the same tgid is not the command.
/// Uses the scratch registers `cfg`, `leader` and the label `skip`.
fn clear_scope_leader(res: &Resources, who: R, cfg: R, leader: R, skip: Label) -> [Op; 5] {
    [
        Op::MapValue {
            dst: cfg,
            map: res.config,
            off: 0,
        },
        Op::Load {
            size: Size::DW,
            signed: false,
            dst: leader,
            base: Base::R(cfg),
            off: CONFIG_SCOPE_LEADER as i32,
        },
        Op::Br {
            cond: JmpCond::Ne,
            a: leader,
            b: Opnd::R(who),
            target: skip,
        },
        Op::Store {
            size: Size::DW,
            base: Base::R(cfg),
            off: CONFIG_SCOPE_LEADER as i32,
            src: Opnd::Imm(0),
        },
        Op::Label(skip),
    ]
}

/// The scope-bitmap word of `tgid`: `ptr = &scope[tgid >> 6]`, or a jump
/// to `exit` when the lookup fails (a tgid past [`crate::artifact::SCOPE_PID_LIMIT`]).
/// Uses `key` (8 bytes) and the argument registers.
fn scope_word(scope: u32, tgid: R, ptr: R, key: Slot, exit: Label) -> [Op; 8] {
    [
        Op::Mov(ptr, Opnd::R(tgid)),
        Op::Alu(AluOp::Rsh, ptr, Opnd::Imm(6)),
        Op::Store {
            size: Size::DW,
            base: Base::Slot(key),
            off: 0,
            src: Opnd::R(ptr),
        },
        Op::Map {
            dst: R::P(1),
            map: scope,
        },
        Op::Addr {
            dst: R::P(2),
            slot: key,
            off: 0,
        },
        Op::Call(Helper::MapLookupElem),
        Op::Br {
            cond: JmpCond::Eq,
            a: R::P(0),
            b: Opnd::Imm(0),
            target: exit,
        },
        Op::Mov(ptr, Opnd::R(R::P(0))),
    ]
}

/// `bit = 1 << (tgid & 63)`, `tgid`'s bit in its scope-bitmap word.
fn scope_bit(tgid: R, bit: R, tmp: R) -> [Op; 4] {
    [
        Op::Mov(tmp, Opnd::R(tgid)),
        Op::Alu(AluOp::And, tmp, Opnd::Imm(63)),
        Op::Mov(bit, Opnd::Imm(1)),
        Op::Alu(AluOp::Lsh, bit, Opnd::R(tmp)),
    ]
}

/// Jump to `exit` unless `tgid` is in the scope bitmap. Scratch: `ptr`,
/// `bit`, `tmp`, `key`.
fn scope_require(scope: u32, tgid: R, [ptr, bit, tmp]: [R; 3], key: Slot, exit: Label) -> Vec<Op> {
    let mut ops = scope_word(scope, tgid, ptr, key, exit).to_vec();
    ops.extend(scope_bit(tgid, bit, tmp));
    ops.extend([
        Op::Load {
            size: Size::DW,
            signed: false,
            dst: tmp,
            base: Base::R(ptr),
            off: 0,
        },
        Op::Alu(AluOp::And, tmp, Opnd::R(bit)),
        Op::Br {
            cond: JmpCond::Eq,
            a: tmp,
            b: Opnd::Imm(0),
            target: exit,
        },
    ]);
    ops
}

/// Put `tgid` into the scope bitmap (`join`) or take it out. The update is
/// an atomic OR/AND: CPUs forking or exiting at once may share a word.
/// Scratch: `ptr`, `bit`, `tmp`, `key`; jumps to `exit` for a tgid out of
/// the bitmap's range.
fn scope_mark(
    scope: u32,
    tgid: R,
    join: bool,
    [ptr, bit, tmp]: [R; 3],
    key: Slot,
    exit: Label,
) -> Vec<Op> {
    let mut ops = scope_word(scope, tgid, ptr, key, exit).to_vec();
    ops.extend(scope_bit(tgid, bit, tmp));
    if !join {
        ops.push(Op::Alu(AluOp::Xor, bit, Opnd::Imm(-1)));
    }
    ops.push(Op::Atomic {
        op: if join {
            AtomicOp::Or { fetch: false }
        } else {
            AtomicOp::And { fetch: false }
        },
        size: Size::DW,
        base: Base::R(ptr),
        off: 0,
        src: bit,
    });
    ops
}

/// The generated fork/exit programs that keep the scope map current: on
/// fork, a child whose parent is in scope joins it; on exit it leaves.
pub fn scope_program(res: &Resources, fork: bool, pid_off: i16, child_off: i16) -> Func {
    let mut f = Func::default();
    let scope = res.scope.unwrap_or(0);
    let (ctx, pid, child) = (R::V(0), R::V(1), R::V(4));
    let scratch = [R::V(5), R::V(6), R::V(7)];
    let exit = Label(0);
    f.vregs = 8;
    f.labels = 2;
    f.slots = vec![8];
    let key = Slot(0);
    let what = if fork {
        "scope: a child of a scoped process joins the scope"
    } else {
        "scope: an exiting process leaves the scope"
    };
    let mut ops = vec![
        Op::Line {
            span: Span::default(),
            what: what.to_string(),
        },
        Op::Mov(ctx, Opnd::R(R::P(1))),
        Op::Load {
            size: Size::W,
            signed: false,
            dst: pid,
            base: Base::R(ctx),
            off: i32::from(pid_off),
        },
    ];
    if fork {
        ops.extend(scope_require(scope, pid, scratch, key, exit));
        ops.push(Op::Load {
            size: Size::W,
            signed: false,
            dst: child,
            base: Base::R(ctx),
            off: i32::from(child_off),
        });
        ops.extend(scope_mark(scope, child, true, scratch, key, exit));
    } else {
        // `pid` is the exiting thread's: the leader's equals the tgid.
        ops.extend(clear_scope_leader(res, pid, R::V(2), R::V(3), Label(1)));
        ops.extend(scope_mark(scope, pid, false, scratch, key, exit));
    }
    ops.extend([Op::Label(exit), Op::Mov(R::P(0), Opnd::Imm(0)), Op::Exit]);
    f.ops = ops;
    f
}

/// The scope-tracking programs on the `sched_process_fork` /
/// `sched_process_exit` raw tracepoints, which detach in microseconds where
/// the classic tracepoints take tens of milliseconds each.
///
/// * fork, `(struct task_struct *parent, struct task_struct *child)`, runs
///   in the parent: when the current tgid is in scope, the child's tgid
///   (read at `tgid_off` in `task_struct` with `probe_read_kernel`) joins.
///   A new thread has its parent's tgid, so threads add nothing new.
/// * exit, `(struct task_struct *p, ...)`, runs in the exiting task: the
///   tgid leaves the scope when its leader thread (pid == tgid) exits.
pub fn scope_program_raw(res: &Resources, fork: bool, tgid_off: i16) -> Func {
    let mut f = Func::default();
    let scope = res.scope.unwrap_or(0);
    let (ctx, pt, tgid, child) = (R::V(0), R::V(1), R::V(2), R::V(3));
    let scratch = [R::V(6), R::V(7), R::V(8)];
    let exit = Label(0);
    f.vregs = 9;
    f.labels = 2;
    f.slots = vec![8];
    let key = Slot(0);
    let what = if fork {
        "scope: a child of a scoped process joins the scope"
    } else {
        "scope: an exiting process leaves the scope"
    };
    let mut ops = vec![
        Op::Line {
            span: Span::default(),
            what: what.to_string(),
        },
        Op::Mov(ctx, Opnd::R(R::P(1))),
        Op::Call(Helper::GetCurrentPidTgid),
        Op::Mov(pt, Opnd::R(R::P(0))),
        Op::Mov(tgid, Opnd::R(pt)),
        Op::Alu(AluOp::Rsh, tgid, Opnd::Imm(32)),
    ];
    if fork {
        ops.extend(scope_require(scope, tgid, scratch, key, exit));
        ops.extend([
            // child->tgid, through probe_read_kernel: a raw tracepoint's
            // arguments are untyped to the verifier.
            Op::Load {
                size: Size::DW,
                signed: false,
                dst: child,
                base: Base::R(ctx),
                off: 8,
            },
            Op::Alu(AluOp::Add, child, Opnd::Imm(i32::from(tgid_off))),
            Op::Store {
                size: Size::DW,
                base: Base::Slot(key),
                off: 0,
                src: Opnd::Imm(0),
            },
            Op::Addr {
                dst: R::P(1),
                slot: key,
                off: 0,
            },
            Op::Mov(R::P(2), Opnd::Imm(4)),
            Op::Mov(R::P(3), Opnd::R(child)),
            Op::Call(Helper::ProbeReadKernel),
            Op::Br {
                cond: JmpCond::SLt,
                a: R::P(0),
                b: Opnd::Imm(0),
                target: exit,
            },
            Op::Load {
                size: Size::W,
                signed: false,
                dst: child,
                base: Base::Slot(key),
                off: 0,
            },
        ]);
        ops.extend(scope_mark(scope, child, true, scratch, key, exit));
    } else {
        ops.extend([
            // Only the leader's exit ends the process.
            Op::Alu(AluOp::Lsh, pt, Opnd::Imm(32)),
            Op::Alu(AluOp::Rsh, pt, Opnd::Imm(32)),
            Op::Br {
                cond: JmpCond::Ne,
                a: pt,
                b: Opnd::R(tgid),
                target: exit,
            },
        ]);
        ops.extend(clear_scope_leader(res, tgid, R::V(4), R::V(5), Label(1)));
        ops.extend(scope_mark(scope, tgid, false, scratch, key, exit));
    }
    ops.extend([Op::Label(exit), Op::Mov(R::P(0), Opnd::Imm(0)), Op::Exit]);
    f.ops = ops;
    f
}

/// The program that starts the scope at the command's `execve`: on
/// `sched_process_exec`, which fires in the new program's context once an
/// exec has succeeded, a process whose tgid is `config.cpid` joins the
/// scope.
///
/// The runtime therefore does not seed the scope with the `-c` child: the
/// held child's own work between its release and its exec (the release
/// acknowledgement, prctl, signal setup) is not the command's and stays
/// out of scope. Only helpers are used, so the same code serves the raw
/// and the classic tracepoint.
pub fn scope_exec_program(res: &Resources) -> Func {
    let mut f = Func::default();
    let scope = res.scope.unwrap_or(0);
    let (tgid, cfg, cpid) = (R::V(0), R::V(1), R::V(2));
    let scratch = [R::V(3), R::V(4), R::V(5)];
    let exit = Label(0);
    f.vregs = 6;
    f.labels = 1;
    f.slots = vec![8];
    let key = Slot(0);
    let mut ops = vec![
        Op::Line {
            span: Span::default(),
            what: "scope: the command joins the scope at its exec".to_string(),
        },
        Op::Call(Helper::GetCurrentPidTgid),
        Op::Mov(tgid, Opnd::R(R::P(0))),
        Op::Alu(AluOp::Rsh, tgid, Opnd::Imm(32)),
        Op::MapValue {
            dst: cfg,
            map: res.config,
            off: 0,
        },
        Op::Load {
            size: Size::DW,
            signed: false,
            dst: cpid,
            base: Base::R(cfg),
            off: CONFIG_CPID as i32,
        },
        Op::Br {
            cond: JmpCond::Ne,
            a: tgid,
            b: Opnd::R(cpid),
            target: exit,
        },
        Op::Store {
            size: Size::DW,
            base: Base::R(cfg),
            off: CONFIG_SCOPE_LEADER as i32,
            src: Opnd::R(tgid),
        },
    ];
    ops.extend(scope_mark(scope, tgid, true, scratch, key, exit));
    ops.extend([Op::Label(exit), Op::Mov(R::P(0), Opnd::Imm(0)), Op::Exit]);
    f.ops = ops;
    f
}
