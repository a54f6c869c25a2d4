//! The Artifact: everything a backend (kernel or VM) needs to run a compiled
//! program, and everything the runtime needs to decode what it produces.
//!
//! Contract with `nexus-kernel`, `nexus-vm` and `nexus-runtime`:
//!
//! * **Maps are referenced by index, never by fd.** In program bytecode a map
//!   reference is `LD_IMM64` with `src = PSEUDO_MAP_IDX` (5), `imm` = index
//!   into [`Artifact::maps`]; a pointer into an array map's value is
//!   `LD_IMM64` with `src = PSEUDO_MAP_IDX_VALUE` (6), `imm` = map index and
//!   the second half's `imm` = byte offset. Backends rewrite exactly these.
//! * **Format strings never travel through the ring buffer.** Every record in
//!   the [`MapRole::Events`] ring buffer starts with a [`RecordHeader`]
//!   (`RECORD_HEADER_SIZE` bytes), followed by the payload laid out as the
//!   [`EventSchema`] with that id says.
//! * **The config map** ([`MapRole::Config`], an array with one entry) is
//!   filled by the runtime before any program is attached; its layout is
//!   [`ConfigLayout`] (offsets are also `CONFIG_*` constants).
//! * BEGIN/END programs are `raw_tracepoint` programs with no attach point:
//!   the runtime runs each once with `BPF_PROG_TEST_RUN`.
//!
//! Everything here is `serde`-serialisable; instructions serialise as a hex
//! string of their kernel byte encoding.

use nexus_insn::{Insn, MapType, ProgType};
use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change of this module's types or of the
/// record/config layouts they document.
///
/// * 2: config field `stopping` at [`CONFIG_STOPPING`] (`CONFIG_SIZE` 40);
///   [`ProgramSpec::probe_count`]. Compatible since: config field
///   `scope_leader` at [`CONFIG_SCOPE_LEADER`] (`CONFIG_SIZE` 48), which
///   readers that do not know it leave zero.
/// * 3: the [`MapRole::Scope`] map is a bitmap in an array of
///   [`SCOPE_WORDS`] `u64` words, no longer a hash keyed by tgid.
pub const ARTIFACT_VERSION: u32 = 3;

/// Size of [`RecordHeader`] in bytes; the payload starts right after it.
pub const RECORD_HEADER_SIZE: u32 = 24;

/// Byte offsets inside the config map's single value (key `0u32`).
/// The tgid of the tracer itself; probes that could see it return early.
pub const CONFIG_TRACER_TGID: u32 = 0;
/// Nonzero when probes are scoped to the process tree in the scope map.
pub const CONFIG_SCOPE_ENABLED: u32 = 8;
/// Root tgid of the traced command (`-c`): the `cpid` builtin.
pub const CONFIG_CPID: u32 = 16;
/// `bpf_ktime_get_ns()` when tracing started: the base of `elapsed`.
pub const CONFIG_START_NS: u32 = 24;
/// Nonzero once the runtime starts tearing down: every attached probe
/// program returns at once (right after the syscall filter, before the self
/// guard's helper call), so probes whose slow detach is handed to the
/// background do nothing meanwhile. BEGIN runs before it is set and END is
/// not guarded by it (END runs after it is set).
pub const CONFIG_STOPPING: u32 = 32;
/// The command's tgid once it has exec'd (0 before, and again after its
/// leader thread exits), written by the generated scope programs, never by
/// the runtime (which writes 0 here, as for any field it does not know):
/// the scope check passes this tgid without the scope-map lookup.
pub const CONFIG_SCOPE_LEADER: u32 = 40;

/// The largest pid the scope bitmap covers: `PID_MAX_LIMIT` on 64-bit
/// kernels, the most `/proc/sys/kernel/pid_max` can be raised to, so the
/// bitmap fits every pid without the compiler reading the running system.
pub const SCOPE_PID_LIMIT: u32 = 4_194_304;

/// Words (`u64`, 64 tgids each) in the [`MapRole::Scope`] bitmap: 65536,
/// 512 KiB.
pub const SCOPE_WORDS: u32 = SCOPE_PID_LIMIT / 64;
/// Size of the config value.
pub const CONFIG_SIZE: u32 = 48;

/// A compiled program with its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// [`ARTIFACT_VERSION`] of the compiler that wrote it.
    pub version: u32,
    /// The program text the spans in line tables and schemas point into.
    pub source: String,
    /// Maps to create, in index order (the index is what bytecode refers to).
    pub maps: Vec<MapSpec>,
    /// Programs to load and attach.
    pub programs: Vec<ProgramSpec>,
    /// Event schemas, `events[i].id == i`.
    pub events: Vec<EventSchema>,
    /// Layout of the config map value.
    pub config: ConfigLayout,
}

/// Why an artifact could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The JSON text is malformed or does not describe an Artifact.
    #[error("artifact JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by a compiler with a different layout.
    #[error("artifact version {found} is not supported (this build reads version {expected})")]
    Version {
        /// Version in the file.
        found: u32,
        /// [`ARTIFACT_VERSION`].
        expected: u32,
    },
}

impl Artifact {
    /// Serialise as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parse JSON written by [`Artifact::to_json`], checking the version.
    pub fn from_json(text: &str) -> Result<Artifact, ArtifactError> {
        let a: Artifact = serde_json::from_str(text)?;
        if a.version != ARTIFACT_VERSION {
            return Err(ArtifactError::Version {
                found: a.version,
                expected: ARTIFACT_VERSION,
            });
        }
        Ok(a)
    }

    /// The index of the first map with `role`, if any.
    pub fn map_with_role(&self, role: &MapRole) -> Option<usize> {
        self.maps.iter().position(|m| &m.role == role)
    }

    /// The number bpftrace prints in `Attaching N probes...`: every attach
    /// point after wildcard expansion, BEGIN and END included, however the
    /// compiler grouped or lowered them into programs.
    pub fn attach_point_count(&self) -> u32 {
        self.programs.iter().map(|p| p.probe_count).sum()
    }

    /// The schema of an event id read from a record header.
    pub fn event(&self, id: u32) -> Option<&EventSchema> {
        self.events.get(id as usize)
    }
}

/// The header every ring-buffer record starts with (little endian):
///
/// | offset | size | field      |
/// |-------:|-----:|------------|
/// | 0      | 4    | `event_id` |
/// | 4      | 4    | `cpu`      |
/// | 8      | 8    | `ts_ns` (`bpf_ktime_get_ns`) |
/// | 16     | 8    | `pid_tgid` (tgid << 32 \| tid) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordHeader {
    /// Index into [`Artifact::events`].
    pub event_id: u32,
    /// CPU the event fired on.
    pub cpu: u32,
    /// Monotonic timestamp.
    pub ts_ns: u64,
    /// `bpf_get_current_pid_tgid()`.
    pub pid_tgid: u64,
}

impl RecordHeader {
    /// Decode the header at the start of `record`; `None` if it is too short.
    pub fn parse(record: &[u8]) -> Option<RecordHeader> {
        let b = record.get(..RECORD_HEADER_SIZE as usize)?;
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        Some(RecordHeader {
            event_id: u32_at(0),
            cpu: u32_at(4),
            ts_ns: u64_at(8),
            pid_tgid: u64_at(16),
        })
    }

    /// The process id (kernel tgid).
    pub fn pid(&self) -> u32 {
        (self.pid_tgid >> 32) as u32
    }

    /// The thread id (kernel pid).
    pub fn tid(&self) -> u32 {
        self.pid_tgid as u32
    }
}

/// Named offsets of the config map value, so consumers need not hard-code
/// the `CONFIG_*` constants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigLayout {
    /// Size of the value in bytes.
    pub size: u32,
    /// Every field: all are little-endian `u64`.
    pub fields: Vec<ConfigField>,
}

/// One `u64` field of the config value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigField {
    /// `tracer_tgid`, `scope_enabled`, `cpid`, `start_ns`, `stopping`.
    pub name: String,
    /// Byte offset.
    pub offset: u32,
}

impl Default for ConfigLayout {
    fn default() -> Self {
        let f = |name: &str, offset| ConfigField {
            name: name.to_string(),
            offset,
        };
        ConfigLayout {
            size: CONFIG_SIZE,
            fields: vec![
                f("tracer_tgid", CONFIG_TRACER_TGID),
                f("scope_enabled", CONFIG_SCOPE_ENABLED),
                f("cpid", CONFIG_CPID),
                f("start_ns", CONFIG_START_NS),
                f("stopping", CONFIG_STOPPING),
                f("scope_leader", CONFIG_SCOPE_LEADER),
            ],
        }
    }
}

/// A map to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSpec {
    /// Kernel object name (at most 15 bytes, `[A-Za-z0-9_.]`).
    pub name: String,
    /// The map type.
    pub kind: MapKind,
    /// Key size in bytes (0 for ring buffers).
    pub key_size: u32,
    /// Value size in bytes, per CPU for per-CPU maps (0 for ring buffers).
    pub value_size: u32,
    /// Entries; for a ring buffer its size in bytes (a power of two).
    pub max_entries: u32,
    /// `BPF_F_*` flags.
    pub flags: u32,
    /// What the map is for.
    pub role: MapRole,
}

/// The map types the compiler emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapKind {
    /// `BPF_MAP_TYPE_HASH`.
    Hash,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array,
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    PercpuHash,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PercpuArray,
    /// `BPF_MAP_TYPE_LRU_HASH`.
    LruHash,
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
    LruPercpuHash,
    /// `BPF_MAP_TYPE_RINGBUF`.
    Ringbuf,
    /// `BPF_MAP_TYPE_STACK_TRACE`.
    StackTrace,
}

impl MapKind {
    /// The kernel map type.
    pub fn map_type(self) -> MapType {
        match self {
            MapKind::Hash => MapType::Hash,
            MapKind::Array => MapType::Array,
            MapKind::PercpuHash => MapType::PercpuHash,
            MapKind::PercpuArray => MapType::PercpuArray,
            MapKind::LruHash => MapType::LruHash,
            MapKind::LruPercpuHash => MapType::LruPercpuHash,
            MapKind::Ringbuf => MapType::Ringbuf,
            MapKind::StackTrace => MapType::StackTrace,
        }
    }

    /// True when every CPU has its own value (the runtime merges them).
    pub fn is_percpu(self) -> bool {
        self.map_type().is_percpu()
    }
}

/// What a map is for, so the runtime knows how to fill, read and print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum MapRole {
    /// A user map `@name`.
    User(UserMap),
    /// The ring buffer every event record goes to.
    ///
    /// **Wakeup contract.** Output records ([`EventKind::is_output`]:
    /// `printf`, `print(value)`) are submitted with `BPF_RB_NO_WAKEUP`
    /// while the buffer holds at most [`wakeup_threshold`] unread bytes
    /// (an eighth of it), and with `BPF_RB_FORCE_WAKEUP` above that; every
    /// other record (`exit`, `print(@map)`, `clear`, `zero`, `time`) is
    /// submitted with `BPF_RB_FORCE_WAKEUP`. A consumer must therefore not
    /// sleep on the ring buffer's fd alone: it polls with a short timeout
    /// (10–50 ms) and drains whatever is there when the timeout expires,
    /// which bounds the delay of a low-rate printf, while a flood wakes it
    /// once per eighth of a buffer instead of once per record.
    Events,
    /// Array, one entry (key `0u32`), value laid out as [`ConfigLayout`].
    Config,
    /// Array of [`SCOPE_WORDS`] `u64` words, key `u32`: a bitmap of the
    /// tgids probes are scoped to when `scope_enabled` is set; tgid `t` is
    /// bit `t & 63` of word `t >> 6`. The runtime seeds it (`-p`) by
    /// setting bits before attaching; the generated fork/exec/exit programs
    /// keep it current with atomic OR/AND, since CPUs forking at once may
    /// share a word. An array lookup with a constant map is inlined by the
    /// verifier, so the per-event check costs no helper call, where a hash
    /// lookup cost ~35 ns per event.
    Scope,
    /// Stack-trace map shared by `kstack`/`ustack` (values are `u64` frames).
    Stacks,
    /// Per-CPU array, one entry (key `0u32`): scratch space for values that
    /// do not fit the 512-byte stack. Nothing to read.
    Scratch,
    /// Per-CPU array, one entry (key `0u32`), value `u64`: events lost
    /// because the ring buffer was full. The runtime sums the CPUs.
    Drops,
    /// Array, one entry, all zeros and never written: the initial value
    /// inserted (`BPF_NOEXIST`) before an aggregation entry is first
    /// updated. Nothing to read.
    Zeros,
}

/// A user map `@name` as the runtime must decode and print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMap {
    /// As written, with the `@` (`@` alone for the anonymous map).
    pub name: String,
    /// Key fields in order, with offsets into the key. Empty for a keyless
    /// map. A keyless `count`, `min`, `max`, `avg`, `stats`, `hist` or
    /// `lhist` that no `delete()` names is a `PercpuArray` of one entry,
    /// key `0u32` (`key_size` 4): that entry always exists, and its value
    /// is all zero bytes on every CPU exactly when the aggregation never
    /// ran (or was cleared/zeroed): every update leaves a nonzero count,
    /// bucket or `min`/`max` `set` flag on the CPU that ran it. Readers
    /// treat such an all-zero entry as the absent key of a hash. Every
    /// other keyless map (plain values, `sum`, deleted aggregations) is a
    /// hash whose one key is a zero `u64` (`key_size` 8), absent until
    /// first written.
    pub keys: Vec<Field>,
    /// What the value is.
    pub value: MapValue,
}

/// The value of a user map. Layouts (per CPU for per-CPU maps), all
/// little-endian:
///
/// * `Scalar`: the value as its [`Type`] says (ints take 8 bytes).
/// * `Count`, `Sum`: one `u64`/`i64`. Merge: add.
/// * `Min`, `Max`: `[value: i64|u64, set: u64]`; merge over CPUs whose
///   `set != 0`.
/// * `Avg`, `Stats`: `[count: u64, sum: i64|u64]`; avg = sum / count.
/// * `Hist`: [`HIST_SLOTS`] `u64` counters: slot 0 counts negative values,
///   slot 1 zero, slot `k + 2` values in `[2^k, 2^(k+1))`.
/// * `Lhist`: `(max - min) / step + 2` `u64` counters: slot 0 counts values
///   below `min`, slot `i + 1` values in `[min + i*step, min + (i+1)*step)`,
///   the last slot values `>= max`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum MapValue {
    /// Plain assignment `@m[k] = v`.
    Scalar {
        /// The value's type.
        ty: Type,
    },
    /// `count()`.
    Count,
    /// `sum(v)`.
    Sum {
        /// Whether to print as signed.
        signed: bool,
    },
    /// `min(v)`.
    Min {
        /// Signed comparison.
        signed: bool,
    },
    /// `max(v)`.
    Max {
        /// Signed comparison.
        signed: bool,
    },
    /// `avg(v)`.
    Avg {
        /// Signed sum.
        signed: bool,
    },
    /// `stats(v)`.
    Stats {
        /// Signed sum.
        signed: bool,
    },
    /// `hist(v)`.
    Hist,
    /// `lhist(v, min, max, step)`.
    Lhist {
        /// Lower bound.
        min: i64,
        /// Upper bound (exclusive).
        max: i64,
        /// Bucket width.
        step: i64,
    },
}

/// Number of `u64` slots of a `hist()` value.
pub const HIST_SLOTS: u32 = 66;

impl MapValue {
    /// Bytes of one value (per CPU).
    pub fn size(&self) -> u32 {
        match self {
            MapValue::Scalar { ty } => ty.size().next_multiple_of(8),
            MapValue::Count | MapValue::Sum { .. } => 8,
            MapValue::Min { .. }
            | MapValue::Max { .. }
            | MapValue::Avg { .. }
            | MapValue::Stats { .. } => 16,
            MapValue::Hist => HIST_SLOTS * 8,
            MapValue::Lhist { .. } => self.lhist_slots() * 8,
        }
    }

    /// Slot count of an `Lhist` value (0 for others).
    pub fn lhist_slots(&self) -> u32 {
        match self {
            MapValue::Lhist { min, max, step } if *step > 0 && max > min => {
                u32::try_from((max - min) / step).unwrap_or(0) + 2
            }
            _ => 0,
        }
    }

    /// True for the aggregation kinds (kept in per-CPU maps).
    pub fn is_aggregation(&self) -> bool {
        !matches!(self, MapValue::Scalar { .. })
    }

    /// The function name (`count`, `hist`, ...) or `None` for scalars.
    pub fn function(&self) -> Option<&'static str> {
        Some(match self {
            MapValue::Scalar { .. } => return None,
            MapValue::Count => "count",
            MapValue::Sum { .. } => "sum",
            MapValue::Min { .. } => "min",
            MapValue::Max { .. } => "max",
            MapValue::Avg { .. } => "avg",
            MapValue::Stats { .. } => "stats",
            MapValue::Hist => "hist",
            MapValue::Lhist { .. } => "lhist",
        })
    }
}

/// A typed field at a byte offset (of a key, payload or tuple).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Field {
    /// Name (`arg0`, `$x`, `comm`, or a position like `1` for keys and
    /// printf arguments).
    pub name: String,
    /// Type.
    pub ty: Type,
    /// Byte offset from the start of the key/payload/tuple.
    pub offset: u32,
}

/// Value types as they are laid out in keys, values and event payloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Type {
    /// An integer of `bits` (8, 16, 32, 64); in keys, values and payloads
    /// it always occupies 8 bytes, sign- or zero-extended.
    Int {
        /// Width the program computed it in.
        bits: u8,
        /// Signedness.
        signed: bool,
    },
    /// A NUL-padded string of `len` bytes (not necessarily NUL-terminated
    /// when it fills all of them).
    Str {
        /// Capacity.
        len: u32,
    },
    /// `buf(p, n)`: a `u32` length, then `len` bytes of capacity.
    Buf {
        /// Capacity.
        len: u32,
    },
    /// A kernel address to print as a symbol (`u64`).
    Ksym,
    /// A user address to print as a symbol: `[addr: u64, tgid: u64]`.
    Usym,
    /// A kernel stack: `i64` stack id in the [`MapRole::Stacks`] map
    /// (negative: the kernel could not collect it).
    Kstack,
    /// A user stack: `[stack id: i64, tgid: u64]`.
    Ustack,
    /// A tuple: fields at their offsets.
    Tuple {
        /// Elements named `0`, `1`, ...
        fields: Vec<Field>,
        /// Total size (multiple of 8).
        size: u32,
    },
}

impl Type {
    /// A 64-bit unsigned int.
    pub const U64: Type = Type::Int {
        bits: 64,
        signed: false,
    };
    /// A 64-bit signed int.
    pub const I64: Type = Type::Int {
        bits: 64,
        signed: true,
    };

    /// Bytes the type occupies in keys, values and payloads.
    pub fn size(&self) -> u32 {
        match self {
            Type::Int { .. } | Type::Ksym | Type::Kstack => 8,
            Type::Usym | Type::Ustack => 16,
            Type::Str { len } => *len,
            Type::Buf { len } => 4 + *len,
            Type::Tuple { size, .. } => *size,
        }
    }

    /// Offsets are rounded up to this: every field starts 8-byte aligned,
    /// because the verifier refuses misaligned stack accesses.
    pub fn align(&self) -> u32 {
        8
    }
}

/// A program to load, with where to attach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSpec {
    /// Kernel object name (at most 15 bytes).
    pub name: String,
    /// Index of the probe block in the source program.
    pub probe_index: u32,
    /// The block's attach points, canonical and comma separated, as written
    /// (before wildcard expansion).
    pub probe_text: String,
    /// Where to attach, wildcards already expanded (empty only for the
    /// generated helper programs that attach through `attach` too — never
    /// empty in practice; BEGIN/END carry [`AttachSpec::Begin`]/`End`).
    pub attach: Vec<AttachSpec>,
    /// Program type and, for tracing programs, the attach type.
    pub prog_type: ProgKind,
    /// How many attach points of the source (after wildcard expansion,
    /// before lowering) this program stands for, as bpftrace counts them
    /// in `Attaching N probes...`: a program on the `sys_enter` raw
    /// tracepoint that serves 20 `syscalls:sys_enter_*` tracepoints counts
    /// 20; BEGIN and END count 1; the generated scope-tracking programs 0.
    #[serde(default)]
    pub probe_count: u32,
    /// The bytecode; serialised as hex of the kernel encoding.
    #[serde(with = "insn_hex")]
    pub insns: Vec<Insn>,
    /// Instruction index → statement, sorted by `insn`.
    pub line_table: Vec<LineEntry>,
}

impl ProgramSpec {
    /// The source statement instruction `pc` was generated from (the entry
    /// with the greatest `insn <= pc`).
    pub fn line_for(&self, pc: u32) -> Option<&LineEntry> {
        let i = self.line_table.partition_point(|e| e.insn <= pc);
        i.checked_sub(1).map(|i| &self.line_table[i])
    }
}

/// One line-table row: instructions from `insn` up to the next row's `insn`
/// come from the statement at `span`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineEntry {
    /// First instruction index (counting `LD_IMM64` as two).
    pub insn: u32,
    /// Byte range in [`Artifact::source`].
    pub span: SrcSpan,
    /// 1-based line of `span.start`.
    pub line: u32,
    /// What that code does (`predicate`, `printf`, `self guard`, ...).
    pub what: String,
}

impl LineEntry {
    /// The statement's text in `source` (empty if out of range).
    pub fn span_text<'s>(&self, source: &'s str) -> &'s str {
        source
            .get(self.span.start as usize..self.span.end as usize)
            .unwrap_or("")
    }
}

/// The instruction index a verifier log ends at: the last line shaped like
/// `42: (85) call bpf_map_lookup_elem#1`. Look it up with
/// [`ProgramSpec::line_for`] to name the user's statement.
pub fn verifier_pc(log: &str) -> Option<u32> {
    log.lines().rev().find_map(|l| {
        let (n, rest) = l.split_once(':')?;
        if rest.starts_with(" (") {
            n.trim().parse().ok()
        } else {
            None
        }
    })
}

/// A byte range in the source (`start..end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SrcSpan {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl From<nexus_lang::Span> for SrcSpan {
    fn from(s: nexus_lang::Span) -> Self {
        SrcSpan {
            start: u32::try_from(s.start).unwrap_or(u32::MAX),
            end: u32::try_from(s.end).unwrap_or(u32::MAX),
        }
    }
}

impl From<SrcSpan> for nexus_lang::Span {
    fn from(s: SrcSpan) -> Self {
        nexus_lang::Span::new(s.start as usize, s.end as usize)
    }
}

/// Program type (and expected attach type) to load as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgKind {
    /// kprobe/kretprobe/uprobe/uretprobe (`BPF_PROG_TYPE_KPROBE`).
    Kprobe,
    /// Classic tracepoint (`BPF_PROG_TYPE_TRACEPOINT`).
    Tracepoint,
    /// profile/interval/software/hardware (`BPF_PROG_TYPE_PERF_EVENT`).
    PerfEvent,
    /// Raw tracepoints, and BEGIN/END (`BPF_PROG_TYPE_RAW_TRACEPOINT`).
    RawTracepoint,
    /// `tp_btf` (`BPF_PROG_TYPE_TRACING`, attach type `BPF_TRACE_RAW_TP`).
    TracingRawTp,
    /// fentry (`BPF_PROG_TYPE_TRACING`, `BPF_TRACE_FENTRY`).
    Fentry,
    /// fexit (`BPF_PROG_TYPE_TRACING`, `BPF_TRACE_FEXIT`).
    Fexit,
}

impl ProgKind {
    /// The kernel program type.
    pub fn prog_type(self) -> ProgType {
        match self {
            ProgKind::Kprobe => ProgType::Kprobe,
            ProgKind::Tracepoint => ProgType::Tracepoint,
            ProgKind::PerfEvent => ProgType::PerfEvent,
            ProgKind::RawTracepoint => ProgType::RawTracepoint,
            ProgKind::TracingRawTp | ProgKind::Fentry | ProgKind::Fexit => ProgType::Tracing,
        }
    }

    /// The expected attach type for tracing programs.
    pub fn attach_type(self) -> Option<nexus_insn::AttachType> {
        use nexus_insn::AttachType as A;
        match self {
            ProgKind::TracingRawTp => Some(A::TraceRawTp),
            ProgKind::Fentry => Some(A::TraceFentry),
            ProgKind::Fexit => Some(A::TraceFexit),
            _ => None,
        }
    }
}

/// Where a program attaches (one program may attach at several).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AttachSpec {
    /// Run once before tracing starts (`BPF_PROG_TEST_RUN`).
    Begin,
    /// Run once when tracing ends, before maps are printed.
    End,
    /// `/sys/kernel/tracing/events/CATEGORY/EVENT`.
    Tracepoint {
        /// Subsystem.
        category: String,
        /// Event.
        event: String,
    },
    /// A raw tracepoint by name (`sys_enter`, `sched_switch`).
    RawTracepoint {
        /// Name.
        event: String,
    },
    /// A BTF raw tracepoint (the BTF id is found at load time).
    TpBtf {
        /// Name.
        event: String,
    },
    /// uprobe/uretprobe.
    Uprobe {
        /// Absolute path of the binary (library names already resolved).
        binary: String,
        /// Symbol or address.
        location: UprobeLocation,
        /// True for uretprobe.
        retprobe: bool,
    },
    /// kprobe/kretprobe.
    Kprobe {
        /// Kernel function.
        function: String,
        /// Byte offset into it.
        offset: u64,
        /// True for kretprobe.
        retprobe: bool,
    },
    /// fentry (the program's BTF target).
    Fentry {
        /// Kernel function.
        function: String,
    },
    /// fexit.
    Fexit {
        /// Kernel function.
        function: String,
    },
    /// A sampling perf event on every CPU.
    Profile {
        /// Samples per second, or `None` when `period_ns` is used.
        hz: Option<u64>,
        /// Sample every `period_ns` of CPU clock.
        period_ns: Option<u64>,
    },
    /// A timer on one CPU.
    Interval {
        /// Period.
        period_ns: u64,
    },
    /// A software perf event (`cpu-clock`, `page-faults`, ...).
    Software {
        /// Event name as bpftrace spells it.
        event: String,
        /// Sample period (events per sample).
        period: u64,
    },
    /// A hardware perf event (`cpu-cycles`, `cache-misses`, ...).
    Hardware {
        /// Event name.
        event: String,
        /// Sample period.
        period: u64,
    },
}

/// Where in a user binary a uprobe attaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UprobeLocation {
    /// A symbol plus a byte offset into it.
    Symbol {
        /// Symbol name (no wildcards).
        name: String,
        /// Offset into the function.
        offset: u64,
    },
    /// A virtual address in the binary.
    Address(u64),
}

/// What one ring-buffer record means, and how its payload is laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSchema {
    /// The `event_id` in the record header (= index in [`Artifact::events`]).
    pub id: u32,
    /// What to do with it.
    pub kind: EventKind,
    /// Payload fields (offsets from the end of the header).
    pub fields: Vec<Field>,
    /// Payload size in bytes.
    pub size: u32,
    /// The statement that emits it.
    pub span: SrcSpan,
}

/// Unread bytes in an events ring buffer of `size` bytes above which an
/// output record wakes the consumer (see [`MapRole::Events`]).
pub const fn wakeup_threshold(size: u32) -> u32 {
    size / 8
}

/// Ring buffer for programs without output records: room for thousands
/// of control records (`exit`, `print(@map)`, `clear`, `zero`).
pub const CONTROL_RINGBUF_SIZE: u32 = 64 * 1024;
/// Ring buffer for programs that emit no records at all: the kernel's
/// minimum (one page).
pub const EMPTY_RINGBUF_SIZE: u32 = 4096;

/// The events ring buffer size for a program with `events`, given the
/// `requested` size (a power of two):
///
/// * any record that carries output at event rate (`printf`,
///   `print(value)`, `time`) → `requested` (4 MiB by default), so floods
///   are buffered while the consumer catches up;
/// * only control records → [`CONTROL_RINGBUF_SIZE`] (64 KiB);
/// * no records → [`EMPTY_RINGBUF_SIZE`] (a page).
///
/// Never more than `requested`. The kernel maps a ring buffer's data twice,
/// so the 4 MiB default costs 8 MiB of address space (and resident memory
/// as it fills); a count-only program has no use for it.
pub fn events_ringbuf_size(events: &[EventSchema], requested: u32) -> u32 {
    let rule = if events
        .iter()
        .any(|e| e.kind.is_output() || matches!(e.kind, EventKind::Time { .. }))
    {
        requested
    } else if events.is_empty() {
        EMPTY_RINGBUF_SIZE
    } else {
        CONTROL_RINGBUF_SIZE
    };
    rule.min(requested)
}

impl EventKind {
    /// True for records that only produce output (`printf`,
    /// `print(value)`): they may be submitted without a wakeup. Control
    /// records always wake the consumer at once.
    pub fn is_output(&self) -> bool {
        matches!(self, EventKind::Printf { .. } | EventKind::PrintValue)
    }
}

/// The action a record stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    /// `printf(format, args...)`: `fields` are the arguments in order.
    Printf {
        /// The format string as written (escapes decoded), validated
        /// against the argument types.
        format: String,
    },
    /// `print(@map[, top[, div]])`: print a map now.
    Print {
        /// Map index.
        map: u32,
        /// Only the `top` largest entries (0: all).
        top: u64,
        /// Divide values by this (1: as is).
        div: u64,
    },
    /// `print(value)`: print one value (the single field).
    PrintValue,
    /// `clear(@map)`: delete every element (done by the runtime).
    Clear {
        /// Map index.
        map: u32,
    },
    /// `zero(@map)`: zero every value (done by the runtime).
    Zero {
        /// Map index.
        map: u32,
    },
    /// `exit()`: stop tracing.
    Exit,
    /// `time([format])`: print the wall-clock time (strftime format).
    Time {
        /// strftime format; bpftrace's default is `"%H:%M:%S\n"`.
        format: String,
    },
}

/// Serialise instructions as a hex string of their kernel encoding.
mod insn_hex {
    use nexus_insn::Insn;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(insns: &[Insn], s: S) -> Result<S::Ok, S::Error> {
        let bytes = nexus_insn::encode(insns);
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            text.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            text.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Insn>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("instruction hex has an odd length"));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(D::Error::custom(format!(
                "instruction hex has a non-hex byte {c:#x}"
            ))),
        };
        let bytes = text
            .as_bytes()
            .chunks_exact(2)
            .map(|p| Ok((nibble(p[0])? << 4) | nibble(p[1])?))
            .collect::<Result<Vec<u8>, D::Error>>()?;
        nexus_insn::decode(&bytes).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_insn::Reg;

    fn sample() -> Artifact {
        let mut insns = Vec::new();
        insns.extend(Insn::ld_imm64_pseudo(Reg::R1, 5, 0, 0));
        insns.push(Insn::mov64_imm(Reg::R0, 0));
        insns.push(Insn::exit());
        Artifact {
            version: ARTIFACT_VERSION,
            source: "BEGIN { @c = count(); }".into(),
            maps: vec![MapSpec {
                name: "m_c".into(),
                kind: MapKind::PercpuHash,
                key_size: 8,
                value_size: 8,
                max_entries: 4096,
                flags: 0,
                role: MapRole::User(UserMap {
                    name: "@c".into(),
                    keys: vec![],
                    value: MapValue::Count,
                }),
            }],
            programs: vec![ProgramSpec {
                name: "BEGIN_0".into(),
                probe_index: 0,
                probe_text: "BEGIN".into(),
                attach: vec![AttachSpec::Begin],
                prog_type: ProgKind::RawTracepoint,
                probe_count: 1,
                insns,
                line_table: vec![LineEntry {
                    insn: 0,
                    span: SrcSpan { start: 8, end: 20 },
                    line: 1,
                    what: "@c = count()".into(),
                }],
            }],
            events: vec![EventSchema {
                id: 0,
                kind: EventKind::Printf {
                    format: "%d %s\n".into(),
                },
                fields: vec![
                    Field {
                        name: "0".into(),
                        ty: Type::I64,
                        offset: 0,
                    },
                    Field {
                        name: "1".into(),
                        ty: Type::Str { len: 16 },
                        offset: 8,
                    },
                ],
                size: 24,
                span: SrcSpan::default(),
            }],
            config: ConfigLayout::default(),
        }
    }

    #[test]
    fn json_round_trip() {
        let a = sample();
        let text = a.to_json();
        assert!(text.contains("\"insns\": \"18510000"), "{text}");
        assert_eq!(Artifact::from_json(&text).unwrap(), a);
    }

    #[test]
    fn version_mismatch_is_rejected() {
        let mut a = sample();
        a.version = ARTIFACT_VERSION + 1;
        let err = Artifact::from_json(&a.to_json()).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn header_parses_little_endian() {
        let mut rec = vec![0u8; 30];
        rec[0] = 3;
        rec[4] = 1;
        rec[8] = 0x10;
        rec[16..24].copy_from_slice(&((42u64 << 32) | 43).to_le_bytes());
        let h = RecordHeader::parse(&rec).unwrap();
        assert_eq!((h.event_id, h.cpu, h.ts_ns), (3, 1, 0x10));
        assert_eq!((h.pid(), h.tid()), (42, 43));
        assert_eq!(RecordHeader::parse(&rec[..10]), None);
    }

    #[test]
    fn verifier_pc_takes_last_instruction_line() {
        let log = "0: (bf) r6 = r1\n1: (85) call bpf_ktime_get_ns#5\nR0 invalid mem access 'scalar'\nprocessed 2 insns";
        assert_eq!(verifier_pc(log), Some(1));
        assert_eq!(verifier_pc("nothing"), None);
    }

    #[test]
    fn value_sizes() {
        assert_eq!(MapValue::Hist.size(), 528);
        let l = MapValue::Lhist {
            min: 0,
            max: 100,
            step: 10,
        };
        assert_eq!(l.lhist_slots(), 12);
        assert_eq!(l.size(), 96);
        assert_eq!(MapValue::Avg { signed: true }.size(), 16);
    }

    #[test]
    fn line_lookup_takes_preceding_entry() {
        let mut p = sample().programs.remove(0);
        p.line_table.push(LineEntry {
            insn: 2,
            span: SrcSpan { start: 1, end: 2 },
            line: 1,
            what: "x".into(),
        });
        assert_eq!(p.line_for(0).unwrap().insn, 0);
        assert_eq!(p.line_for(1).unwrap().insn, 0);
        assert_eq!(p.line_for(3).unwrap().what, "x");
    }
}
