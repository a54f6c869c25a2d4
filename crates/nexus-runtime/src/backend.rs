//! The seam between a session and what executes the Artifact.
//!
//! A [`Backend`] holds the loaded programs and maps of one Artifact and
//! answers the session's few questions: fill the config, attach, run
//! BEGIN/END, hand over records, read and reset maps, count losses. The
//! session ([`crate::session`]) drives the lifecycle and never sees a file
//! descriptor of a map or a program; the kernel implementation lives in
//! [`crate::kernel`], and a userspace VM backend can implement the same
//! trait over `nexus-vm`.

use std::os::fd::BorrowedFd;
use std::time::Duration;

/// The config map's values, filled before any probe is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunConfig {
    /// Our own tgid: probes that could observe the tracer skip it.
    pub tracer_tgid: u32,
    /// Probes see only the tgids in the scope map.
    pub scope_enabled: bool,
    /// The traced command's tgid (`cpid`), 0 without `-c`.
    pub cpid: u32,
    /// `CLOCK_MONOTONIC` (= `bpf_ktime_get_ns`) when tracing started.
    pub start_ns: u64,
}

/// One probe as attached, for `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProbe {
    /// The program's probe text as written (`tracepoint:syscalls:sys_enter_read`).
    pub probe: String,
    /// What the backend attached (`tracepoint:syscalls:sys_enter_read`,
    /// `rawtracepoint:sys_enter`, `perf event on 2 CPUs`).
    pub target: String,
    /// Kernel links it took (one per CPU for sampling events).
    pub links: usize,
}

/// What [`Backend::detach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DetachReport {
    /// Attachments released.
    pub links: usize,
    /// Time it took.
    pub elapsed: Duration,
}

/// A map's raw content: key bytes and the value of each CPU slot (one slot
/// for maps that are not per-CPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Key bytes.
    pub key: Vec<u8>,
    /// Value bytes of every CPU slot, `value_size` each.
    pub slots: Vec<Vec<u8>>,
}

/// Records copied out of the backend's event buffer in one go, so the
/// buffer space is handed back before they are dispatched (dispatching may
/// read maps, which the backend must stay free for). Reused across batches:
/// once grown, reading a batch does not allocate.
#[derive(Debug, Default)]
pub struct RecordBatch {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl RecordBatch {
    /// An empty batch.
    pub fn new() -> Self {
        RecordBatch::default()
    }

    /// Forget the records, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Append one record.
    pub fn push(&mut self, record: &[u8]) {
        self.data.extend_from_slice(record);
        self.ends.push(self.data.len());
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The records in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let r = &self.data[start..end];
            start = end;
            r
        })
    }
}

/// A backend failure, with the exit-code class the CLI maps it to.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The kernel (or VM) refused: permissions, missing features, a target
    /// that does not exist on this machine.
    #[error("{0}")]
    Refused(String),
    /// The verifier rejected a program; `explanation` is already phrased in
    /// terms of the user's program, `log` is the raw verifier log.
    #[error("{explanation}")]
    Verifier {
        /// One line: which probe, and the verifier's reason.
        explanation: String,
        /// The same at the offending statement, with advice, when the line
        /// table maps the instruction (render it with the source file name).
        diagnostic: Option<Box<nexus_lang::Diagnostic>>,
        /// The verifier's log.
        log: String,
    },
    /// Anything else going wrong while the trace runs.
    #[error("{0}")]
    Runtime(String),
}

/// Executes one Artifact.
pub trait Backend {
    /// Fill the config map and seed the scope map with `scope_tgids`.
    fn configure(&mut self, config: &RunConfig, scope_tgids: &[u32]) -> Result<(), BackendError>;
    /// Add one tgid to the scope map (descendants found after start).
    fn add_to_scope(&mut self, tgid: u32) -> Result<(), BackendError>;
    /// Attach every probe except BEGIN/END; returns what was attached.
    fn attach(&mut self) -> Result<Vec<AttachedProbe>, BackendError>;
    /// Number of probes bpftrace would count in `Attaching N probes...`
    /// (BEGIN and END included).
    fn probe_count(&self) -> usize;
    /// Run the BEGIN probes once.
    fn run_begin(&mut self) -> Result<(), BackendError>;
    /// Run the END probes once.
    fn run_end(&mut self) -> Result<(), BackendError>;
    /// A descriptor that becomes readable when records are waiting, if the
    /// backend has one (a VM backend may have none and be polled).
    fn ready_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Move up to `max_bytes` of waiting records into `batch` (cleared
    /// first); returns how many were moved.
    fn read_batch(&mut self, batch: &mut RecordBatch, max_bytes: usize) -> usize;
    /// Every entry of map `index`.
    fn map_entries(&mut self, index: usize) -> Result<Vec<RawEntry>, BackendError>;
    /// Delete every entry of map `index` (`clear()`).
    fn clear_map(&mut self, index: usize) -> Result<(), BackendError>;
    /// Set every value of map `index` to zero, keeping its keys (`zero()`).
    fn zero_map(&mut self, index: usize) -> Result<(), BackendError>;
    /// Frames of stack `id` in the stack map.
    fn stack_frames(&mut self, id: u32, frames: &mut Vec<u64>) -> bool;
    /// Events the programs could not record so far (ring buffer full).
    fn lost_events(&mut self) -> Result<u64, BackendError>;
    /// Make every probe inert (or begin releasing it) without waiting:
    /// closing perf links waits for RCU grace periods, and END and the
    /// final maps need not. END still runs after this.
    fn start_detach(&mut self) {}
    /// Release every attachment (finishing a started detach); returns when
    /// they are gone.
    fn detach(&mut self) -> DetachReport;
    /// The background process [`Backend::detach`] handed slow links to, if
    /// it did (see [`crate::handoff`]): they are released after `detach`
    /// returns, while the probes stay attached but inert.
    fn background_detach(&self) -> Option<crate::handoff::BackgroundDetach> {
        None
    }
}

/// Where `tgid` lives in the scope bitmap (`MapRole::Scope`): the key of
/// its `u64` word (`tgid >> 6`) and its bit (`tgid & 63`).
#[must_use]
pub fn scope_slot(tgid: u32) -> ([u8; 4], u64) {
    ((tgid >> 6).to_le_bytes(), 1u64 << (tgid & 63))
}

/// The scope word `current` (as a map lookup returned it) with `bit` set,
/// ready to write back; an error when the lookup found no word, i.e. the
/// tgid lies past the bitmap's `words` entries. Both backends seed the scope
/// through this, before anything is attached (a read-modify-write: after
/// attach, a bit a concurrent fork sets in the same word could be lost).
pub fn scope_word_with(
    current: Option<&[u8]>,
    bit: u64,
    tgid: u32,
    words: u32,
) -> Result<[u8; 8], BackendError> {
    current
        .and_then(|v| v.get(..8))
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(|b| (u64::from_le_bytes(b) | bit).to_le_bytes())
        .ok_or_else(|| {
            BackendError::Runtime(format!(
                "cannot scope to tgid {tgid}: past the scope bitmap's {words} words"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_record_boundaries_and_reuse_space() {
        let mut b = RecordBatch::new();
        b.push(b"abc");
        b.push(b"");
        b.push(b"de");
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![&b"abc"[..], b"", b"de"]);
        assert_eq!((b.len(), b.bytes()), (3, 5));
        let cap = b.data.capacity();
        b.clear();
        assert!(b.is_empty());
        b.push(b"xy");
        assert_eq!(b.data.capacity(), cap);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![&b"xy"[..]]);
    }
}
