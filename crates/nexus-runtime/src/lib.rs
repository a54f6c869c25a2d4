//! The bpfnexus runtime. This first part is its output layer: the decoded
//! value model ([`value`]), per-CPU merging, bpftrace's `printf`
//! ([`printf`]), time formatting ([`strftime`]), and the sinks ([`sink`])
//! that print events and maps as bpftrace 0.17 does in text, or as typed
//! JSON Lines.
//!
//! It knows nothing of backends or the compiler: the record decoder turns
//! ring-buffer payloads and map dumps into [`Value`]s and [`MapDump`]s and
//! pushes them into a [`Sink`].

pub mod json;
pub mod printf;
pub mod sink;
pub mod strftime;
pub mod text;
pub mod value;

pub use printf::{ArgKind, FormatError, ParsedFormat, check_format};
pub use sink::{
    EventMeta, JsonOptions, JsonSink, MessageKind, PrintfEvent, PrintfSite, RunStats, Sink,
    SinkError, TextSink,
};
pub use strftime::TimeZone;
pub use text::{BufStyle, MapPrintOptions};
pub use value::{
    Frame, HIST_BUCKETS, Hist, LHist, MapDump, MapKind, MapValue, MergeError, Symbol, Value,
    hist_bucket, lhist_bucket, merge_per_cpu,
};
