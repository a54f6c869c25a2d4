//! The bpfnexus runtime: sessions over a backend, and the output layer.
//!
//! * [`session`]: the lifecycle load → attach → release child → run → END →
//!   final maps → detach, with the event loop ([`event_loop`]) that drains
//!   records, decodes them ([`decode`]) and dispatches them to a [`Sink`].
//! * [`list`]: `-l`, the probes this machine offers.
//! * [`backend`]: the seam to what executes the Artifact; [`kernel`] is the
//!   kernel implementation (the only kernel-specific module here), and
//!   [`verifier`] explains its rejections in terms of the source.
//! * The output layer: the decoded value model ([`value`]), per-CPU merging,
//!   bpftrace's `printf` ([`printf`]), time formatting ([`strftime`]), and
//!   the sinks ([`sink`]) that print events and maps as bpftrace 0.17 does
//!   in text, or as typed JSON Lines.

#![forbid(unsafe_code)]

pub mod backend;
pub mod child;
pub mod decode;
pub mod dispatch;
pub mod event_loop;
pub mod handoff;
pub mod json;
pub mod kernel;
pub mod ksyms;
pub mod list;
pub mod printf;
pub mod session;
pub mod signals;
pub mod sink;
pub mod strftime;
pub mod text;
pub mod value;
pub mod verifier;
pub mod vm;

pub use backend::{
    AttachedProbe, Backend, BackendError, DetachReport, RawEntry, RecordBatch, RunConfig,
};
pub use child::{PidError, ProcessWatch, pid_target};
pub use decode::{DecodeError, Decoder, NoStacks, StackSource};
pub use event_loop::EndReason;
pub use handoff::BackgroundDetach;
pub use kernel::{DetachMode, KernelBackend, LoadOptions};
pub use nexus_kernel::KernelCatalog;
pub use printf::{ArgKind, FormatError, ParsedFormat, check_format};
pub use session::{
    HeldProcess, Observer, Quiet, RunOptions, RunReport, SessionError, Target, monotonic_ns, run,
};
pub use signals::{SignalError, Signals};
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
pub use vm::{HostPlatform, VmBackend, VmCatalog};
