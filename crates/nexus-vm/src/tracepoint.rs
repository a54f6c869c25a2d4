//! Static tracepoints for applications.
//!
//! An application declares `category:name` tracepoints with a typed argument
//! layout and fires them with [`trace_point!`](crate::trace_point). While a
//! tracepoint is disabled, firing costs one relaxed atomic load and a branch
//! — the arguments are not even evaluated. When enabled, the arguments are
//! laid out into a context buffer as the layout says, every attached program
//! runs with r1 pointing at it, and per-tracepoint statistics (hits, latency
//! total/min/max, a log2 latency histogram) are updated. The latency is what
//! the application reports with [`TracePoint::fire_with_latency`], or else,
//! when [`TracePoint::set_timing`] is on, the attached programs' run time.

use crate::hist::{LOG2_BUCKETS, Log2Histogram};
use crate::vm::{ProgramId, Vm};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

/// Largest context a tracepoint layout may describe; the buffer lives on
/// the firing thread's stack so firing never allocates.
pub const MAX_CONTEXT_SIZE: usize = 256;

/// A VM shared between the host and the tracepoints its programs attach to.
pub type SharedVm = Arc<Mutex<Vm>>;

/// Errors of the tracepoint registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TracePointError {
    #[error("tracepoint name `{0}` is not of the form category:name")]
    BadName(String),
    #[error("tracepoint `{0}` is already declared")]
    Duplicate(String),
    #[error("no tracepoint `{0}`")]
    NotFound(String),
    #[error("tracepoint `{name}`: field `{field}`: {what}")]
    Layout {
        name: String,
        field: String,
        what: String,
    },
    #[error("tracepoint `{name}` has no attachment {id}")]
    NoSuchAttachment { name: String, id: u64 },
}

/// The type of one argument field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    /// `char[N]`: a NUL-padded string of N bytes (not necessarily
    /// NUL-terminated when it fills them), like the kernel's `comm` fields.
    /// Set with [`TraceArg::Str`]; integer arguments leave it empty.
    Str(u16),
}

impl FieldType {
    #[must_use]
    pub const fn size(self) -> u32 {
        match self {
            FieldType::U8 | FieldType::I8 => 1,
            FieldType::U16 | FieldType::I16 => 2,
            FieldType::U32 | FieldType::I32 => 4,
            FieldType::U64 | FieldType::I64 => 8,
            FieldType::Str(n) => n as u32,
        }
    }
    /// Where [`TracePoint::new`] places it: integers naturally aligned,
    /// strings anywhere.
    #[must_use]
    pub const fn align(self) -> u32 {
        match self {
            FieldType::Str(_) => 1,
            other => other.size(),
        }
    }
    /// The type as C would write it: `u32`, `s64`, `char[16]`.
    #[must_use]
    pub fn name(self) -> String {
        match self {
            FieldType::U8 => "u8".into(),
            FieldType::U16 => "u16".into(),
            FieldType::U32 => "u32".into(),
            FieldType::U64 => "u64".into(),
            FieldType::I8 => "s8".into(),
            FieldType::I16 => "s16".into(),
            FieldType::I32 => "s32".into(),
            FieldType::I64 => "s64".into(),
            FieldType::Str(n) => format!("char[{n}]"),
        }
    }
    /// A signed integer.
    #[must_use]
    pub const fn is_signed(self) -> bool {
        matches!(
            self,
            FieldType::I8 | FieldType::I16 | FieldType::I32 | FieldType::I64
        )
    }
}

/// One argument of [`TracePoint::fire_args`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceArg<'a> {
    /// For an integer field (truncated to its width).
    Int(u64),
    /// For a `char[N]` field: at most N bytes are copied, the rest is NUL.
    Str(&'a [u8]),
}

/// One argument: where it sits in the context and how wide it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub ty: FieldType,
    pub offset: u32,
    pub size: u32,
}

/// Statistics as of one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracePointStats {
    /// Fires while enabled.
    pub hits: u64,
    /// Fires that carried a latency sample.
    pub samples: u64,
    pub total_ns: u64,
    /// 0 when there are no samples.
    pub min_ns: u64,
    pub max_ns: u64,
    /// Program runs that faulted.
    pub errors: u64,
    pub histogram: [u64; LOG2_BUCKETS],
}

impl TracePointStats {
    #[must_use]
    pub fn mean_ns(&self) -> u64 {
        self.total_ns.checked_div(self.samples).unwrap_or(0)
    }
}

#[derive(Debug)]
struct Stats {
    hits: AtomicU64,
    samples: AtomicU64,
    total_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
    errors: AtomicU64,
    hist: Log2Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hits: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            hist: Log2Histogram::default(),
        }
    }
}

impl Stats {
    fn sample(&self, ns: u64) {
        self.samples.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.min_ns.fetch_min(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
        self.hist.record(ns);
    }
}

#[derive(Debug)]
struct Attachment {
    id: u64,
    vm: SharedVm,
    prog: ProgramId,
}

/// One static tracepoint.
#[derive(Debug)]
pub struct TracePoint {
    category: String,
    name: String,
    full_name: String,
    fields: Vec<FieldSpec>,
    ctx_size: usize,
    enabled: AtomicBool,
    timing: AtomicBool,
    attached: RwLock<Vec<Attachment>>,
    next_id: AtomicU64,
    stats: Stats,
    last_error: Mutex<Option<String>>,
}

impl TracePoint {
    /// A tracepoint with fields at explicit offsets (checked: inside
    /// [`MAX_CONTEXT_SIZE`], no overlaps, size matching the type).
    pub fn with_layout(
        full_name: &str,
        fields: Vec<FieldSpec>,
    ) -> Result<TracePoint, TracePointError> {
        let (category, name) = full_name
            .split_once(':')
            .filter(|(c, n)| !c.is_empty() && !n.is_empty() && !n.contains(':'))
            .ok_or_else(|| TracePointError::BadName(full_name.to_string()))?;
        let layout = |f: &FieldSpec, what: String| TracePointError::Layout {
            name: full_name.to_string(),
            field: f.name.clone(),
            what,
        };
        let mut end = 0usize;
        for (i, f) in fields.iter().enumerate() {
            if f.size != f.ty.size() || f.size == 0 {
                return Err(layout(
                    f,
                    format!("size {} does not match type {}", f.size, f.ty.name()),
                ));
            }
            let fend = f.offset as usize + f.size as usize;
            if fend > MAX_CONTEXT_SIZE {
                return Err(layout(
                    f,
                    format!("ends at byte {fend}, past the {MAX_CONTEXT_SIZE}-byte context"),
                ));
            }
            for g in &fields[..i] {
                if g.name == f.name {
                    return Err(layout(f, "declared twice".into()));
                }
                if f.offset < g.offset + g.size && g.offset < f.offset + f.size {
                    return Err(layout(f, format!("overlaps field `{}`", g.name)));
                }
            }
            end = end.max(fend);
        }
        Ok(TracePoint {
            category: category.to_string(),
            name: name.to_string(),
            full_name: full_name.to_string(),
            fields,
            ctx_size: end.div_ceil(8) * 8,
            enabled: AtomicBool::new(false),
            timing: AtomicBool::new(false),
            attached: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(1),
            stats: Stats::default(),
            last_error: Mutex::new(None),
        })
    }

    /// A tracepoint whose fields are laid out in order, each naturally aligned.
    pub fn new(
        full_name: &str,
        fields: &[(&str, FieldType)],
    ) -> Result<TracePoint, TracePointError> {
        let mut off = 0u32;
        let specs = fields
            .iter()
            .map(|(name, ty)| {
                let size = ty.size();
                let align = ty.align().max(1);
                off = off.div_ceil(align) * align;
                let f = FieldSpec {
                    name: (*name).to_string(),
                    ty: *ty,
                    offset: off,
                    size,
                };
                off += size;
                f
            })
            .collect();
        TracePoint::with_layout(full_name, specs)
    }

    #[must_use]
    pub fn category(&self) -> &str {
        &self.category
    }
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// `category:name`.
    #[must_use]
    pub fn full_name(&self) -> &str {
        &self.full_name
    }
    #[must_use]
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }
    /// Bytes of the context programs see (the layout's end rounded up to 8).
    #[must_use]
    pub fn context_size(&self) -> usize {
        self.ctx_size
    }

    /// The fast-path check: one relaxed load.
    #[inline(always)]
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }
    /// Time the attached programs and record it as the latency when the
    /// application reports none (costs two clock reads per fire).
    pub fn set_timing(&self, on: bool) {
        self.timing.store(on, Ordering::Relaxed);
    }

    /// Fire with `args` in field order (missing ones are 0, extra ones
    /// ignored; each is truncated to its field's width).
    #[inline(always)]
    pub fn fire(&self, args: &[u64]) {
        if self.is_enabled() {
            self.fire_enabled(args, None);
        }
    }

    /// Fire and record `latency_ns` in the statistics.
    #[inline(always)]
    pub fn fire_with_latency(&self, args: &[u64], latency_ns: u64) {
        if self.is_enabled() {
            self.fire_enabled(args, Some(latency_ns));
        }
    }

    /// The slow path, taken only while enabled.
    #[cold]
    #[inline(never)]
    pub fn fire_enabled(&self, args: &[u64], latency_ns: Option<u64>) {
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        let fill = |buf: &mut [u8]| {
            for (f, v) in self.fields.iter().zip(args) {
                if let FieldType::Str(_) = f.ty {
                    continue;
                }
                let o = f.offset as usize;
                buf[o..o + f.size as usize].copy_from_slice(&v.to_le_bytes()[..f.size as usize]);
            }
        };
        // Most layouts are small: don't clear 256 bytes for a 16-byte context.
        if self.ctx_size <= 32 {
            self.run_attached::<32>(fill, latency_ns);
        } else {
            self.run_attached::<MAX_CONTEXT_SIZE>(fill, latency_ns);
        }
    }

    /// Fire with arguments of any field type (strings included), in field
    /// order; missing ones are zero, and an argument of the wrong kind
    /// leaves its field zero. Costs one relaxed load when disabled.
    pub fn fire_args(&self, args: &[TraceArg<'_>], latency_ns: Option<u64>) {
        if !self.is_enabled() {
            return;
        }
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        let fill = |buf: &mut [u8]| {
            for (f, a) in self.fields.iter().zip(args) {
                let o = f.offset as usize;
                let dst = &mut buf[o..o + f.size as usize];
                match (f.ty, a) {
                    (FieldType::Str(_), TraceArg::Str(s)) => {
                        let n = s.len().min(dst.len());
                        dst[..n].copy_from_slice(&s[..n]);
                    }
                    (FieldType::Str(_), TraceArg::Int(_)) | (_, TraceArg::Str(_)) => {}
                    (_, TraceArg::Int(v)) => dst.copy_from_slice(&v.to_le_bytes()[..dst.len()]),
                }
            }
        };
        if self.ctx_size <= 32 {
            self.run_attached::<32>(fill, latency_ns);
        } else {
            self.run_attached::<MAX_CONTEXT_SIZE>(fill, latency_ns);
        }
    }

    #[inline(always)]
    fn run_attached<const N: usize>(&self, fill: impl Fn(&mut [u8]), latency_ns: Option<u64>) {
        let mut buf = [0u8; N];
        fill(&mut buf);
        let ctx = &buf[..self.ctx_size];
        let timing = latency_ns.is_none() && self.timing.load(Ordering::Relaxed);
        let start = timing.then(Instant::now);
        {
            let attached = self.attached.read().unwrap_or_else(|e| e.into_inner());
            for a in attached.iter() {
                let mut vm = a.vm.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = vm.run_readonly(a.prog, ctx) {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(e.to_string());
                }
            }
        }
        if let Some(ns) = latency_ns {
            self.stats.sample(ns);
        } else if let Some(t) = start {
            self.stats.sample(t.elapsed().as_nanos() as u64);
        }
    }

    /// Run `prog` of `vm` on every fire. Returns the attachment's id.
    pub fn attach(&self, vm: SharedVm, prog: ProgramId) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.attached
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Attachment { id, vm, prog });
        id
    }

    pub fn detach(&self, id: u64) -> Result<(), TracePointError> {
        let mut att = self.attached.write().unwrap_or_else(|e| e.into_inner());
        let before = att.len();
        att.retain(|a| a.id != id);
        if att.len() == before {
            return Err(TracePointError::NoSuchAttachment {
                name: self.full_name.clone(),
                id,
            });
        }
        Ok(())
    }

    #[must_use]
    pub fn attached_count(&self) -> usize {
        self.attached
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    #[must_use]
    pub fn stats(&self) -> TracePointStats {
        let s = &self.stats;
        let samples = s.samples.load(Ordering::Relaxed);
        TracePointStats {
            hits: s.hits.load(Ordering::Relaxed),
            samples,
            total_ns: s.total_ns.load(Ordering::Relaxed),
            min_ns: if samples == 0 {
                0
            } else {
                s.min_ns.load(Ordering::Relaxed)
            },
            max_ns: s.max_ns.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            histogram: s.hist.snapshot(),
        }
    }

    pub fn reset_stats(&self) {
        let s = &self.stats;
        for a in [&s.hits, &s.samples, &s.total_ns, &s.max_ns, &s.errors] {
            a.store(0, Ordering::Relaxed);
        }
        s.min_ns.store(u64::MAX, Ordering::Relaxed);
        s.hist.reset();
    }

    /// The message of the most recent faulting run, if any.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Fire a tracepoint: `trace_point!(TP, a, b, c)`. The arguments (integers,
/// cast with `as u64`) are evaluated only when the tracepoint is enabled.
#[macro_export]
macro_rules! trace_point {
    ($tp:expr $(, $arg:expr)* $(,)?) => {{
        let tp: &$crate::tracepoint::TracePoint = &$tp;
        if tp.is_enabled() {
            tp.fire_enabled(&[$(($arg) as u64),*], None);
        }
    }};
}

/// A summary line for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracePointInfo {
    pub name: String,
    pub enabled: bool,
    pub attached: usize,
    pub hits: u64,
    pub fields: Vec<FieldSpec>,
}

/// The tracepoints an application declared.
#[derive(Debug, Default)]
pub struct TracePointRegistry {
    tps: RwLock<Vec<Arc<TracePoint>>>,
}

impl TracePointRegistry {
    #[must_use]
    pub fn new() -> TracePointRegistry {
        TracePointRegistry::default()
    }

    /// A process-wide registry.
    pub fn global() -> &'static TracePointRegistry {
        static GLOBAL: OnceLock<TracePointRegistry> = OnceLock::new();
        GLOBAL.get_or_init(TracePointRegistry::new)
    }

    /// Declare `category:name` with naturally aligned fields in order.
    pub fn declare(
        &self,
        full_name: &str,
        fields: &[(&str, FieldType)],
    ) -> Result<Arc<TracePoint>, TracePointError> {
        self.add(TracePoint::new(full_name, fields)?)
    }

    /// Declare with explicit offsets.
    pub fn declare_with_layout(
        &self,
        full_name: &str,
        fields: Vec<FieldSpec>,
    ) -> Result<Arc<TracePoint>, TracePointError> {
        self.add(TracePoint::with_layout(full_name, fields)?)
    }

    fn add(&self, tp: TracePoint) -> Result<Arc<TracePoint>, TracePointError> {
        let mut tps = self.tps.write().unwrap_or_else(|e| e.into_inner());
        if tps.iter().any(|t| t.full_name == tp.full_name) {
            return Err(TracePointError::Duplicate(tp.full_name));
        }
        let tp = Arc::new(tp);
        tps.push(Arc::clone(&tp));
        Ok(tp)
    }

    pub fn get(&self, full_name: &str) -> Result<Arc<TracePoint>, TracePointError> {
        self.tps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|t| t.full_name == full_name)
            .cloned()
            .ok_or_else(|| TracePointError::NotFound(full_name.to_string()))
    }

    /// Every tracepoint, sorted by name.
    #[must_use]
    pub fn list(&self) -> Vec<TracePointInfo> {
        let mut v: Vec<TracePointInfo> = self
            .tps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|t| TracePointInfo {
                name: t.full_name.clone(),
                enabled: t.is_enabled(),
                attached: t.attached_count(),
                hits: t.stats.hits.load(Ordering::Relaxed),
                fields: t.fields.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn enable(&self, full_name: &str) -> Result<(), TracePointError> {
        self.get(full_name)?.enable();
        Ok(())
    }
    pub fn disable(&self, full_name: &str) -> Result<(), TracePointError> {
        self.get(full_name)?.disable();
        Ok(())
    }
    pub fn attach(
        &self,
        full_name: &str,
        vm: SharedVm,
        prog: ProgramId,
    ) -> Result<u64, TracePointError> {
        Ok(self.get(full_name)?.attach(vm, prog))
    }
    pub fn detach(&self, full_name: &str, id: u64) -> Result<(), TracePointError> {
        self.get(full_name)?.detach(id)
    }
}
