//! Program, map and attach type numbers from `include/uapi/linux/bpf.h`.

/// `enum bpf_prog_type` (the subset bpfnexus loads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ProgType {
    SocketFilter = 1,
    /// Also used for uprobes and uretprobes.
    Kprobe = 2,
    Tracepoint = 5,
    PerfEvent = 7,
    RawTracepoint = 17,
    /// fentry/fexit and BTF tracepoints (`tp_btf`).
    Tracing = 26,
}

impl ProgType {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ProgType::SocketFilter => "socket_filter",
            ProgType::Kprobe => "kprobe",
            ProgType::Tracepoint => "tracepoint",
            ProgType::PerfEvent => "perf_event",
            ProgType::RawTracepoint => "raw_tracepoint",
            ProgType::Tracing => "tracing",
        }
    }
}

/// `enum bpf_map_type` (the subset bpfnexus creates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MapType {
    Hash = 1,
    Array = 2,
    PerfEventArray = 4,
    PercpuHash = 5,
    PercpuArray = 6,
    StackTrace = 7,
    LruHash = 9,
    LruPercpuHash = 10,
    Queue = 22,
    Stack = 23,
    Ringbuf = 27,
}

impl MapType {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            MapType::Hash => "hash",
            MapType::Array => "array",
            MapType::PerfEventArray => "perf_event_array",
            MapType::PercpuHash => "percpu_hash",
            MapType::PercpuArray => "percpu_array",
            MapType::StackTrace => "stack_trace",
            MapType::LruHash => "lru_hash",
            MapType::LruPercpuHash => "lru_percpu_hash",
            MapType::Queue => "queue",
            MapType::Stack => "stack",
            MapType::Ringbuf => "ringbuf",
        }
    }

    /// True when each CPU has its own copy of every value.
    #[must_use]
    pub const fn is_percpu(self) -> bool {
        matches!(
            self,
            MapType::PercpuHash | MapType::PercpuArray | MapType::LruPercpuHash
        )
    }
}

/// `enum bpf_attach_type` (the subset bpfnexus uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum AttachType {
    TraceRawTp = 23,
    TraceFentry = 24,
    TraceFexit = 25,
    PerfEvent = 41,
    TraceKprobeMulti = 42,
    TraceUprobeMulti = 48,
}
