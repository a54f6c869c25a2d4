//! Turning records into output: each ring-buffer record's header names its
//! event schema, whose kind says what to do — print a formatted line, print
//! a map or a value, clear or zero a map, print the time, or stop.
//!
//! Decoding reuses one argument vector per printf site, so a steady stream
//! of printf events does not allocate.

use crate::backend::{Backend, RecordBatch};
use crate::decode::{Decoder, StackSource};
use crate::printf::ParsedFormat;
use crate::session::SessionError;
use crate::sink::{EventMeta, MessageKind, PrintfEvent, PrintfSite, RunStats, Sink, SinkError};
use crate::strftime;
use crate::text::MapPrintOptions;
use crate::value::{MapDump, MapKind, MapValue, Value};
use nexus_compile::{
    self as compile, Artifact, EventKind, MapKind as ArtifactMapKind, MapRole, RECORD_HEADER_SIZE,
    RecordHeader,
};
use std::time::{SystemTime, UNIX_EPOCH};

/// Stack lookups through the backend's stack map.
struct BackendStacks<'b, B: Backend>(&'b mut B);

impl<B: Backend> StackSource for BackendStacks<'_, B> {
    fn stack_frames(&mut self, id: u32, frames: &mut Vec<u64>) -> bool {
        self.0.stack_frames(id, frames)
    }
}

/// Most batches [`Dispatcher::drain_all`] reads: probes may still fire
/// while links close, and the final drain must end.
const FINAL_DRAIN_BATCHES: usize = 256;

/// Decodes records of one Artifact and pushes them into a sink.
#[derive(Debug)]
pub struct Dispatcher<'a> {
    artifact: &'a Artifact,
    decoder: Decoder,
    /// `sites[event id]` for printf events.
    sites: Vec<Option<PrintfSite>>,
    /// Reused decoded arguments, per event id.
    args: Vec<Vec<Value>>,
    batch: RecordBatch,
    text: Vec<u8>,
    events: u64,
    lost: u64,
    decode_errors: u64,
    exit: bool,
}

/// The probe text of the program whose statements contain `span`.
fn probe_of(artifact: &Artifact, span: compile::SrcSpan) -> String {
    artifact
        .programs
        .iter()
        .find(|p| {
            p.line_table
                .iter()
                .any(|e| e.span.start <= span.start && span.end <= e.span.end)
        })
        .map(|p| p.probe_text.clone())
        .unwrap_or_default()
}

/// The printed kind of a user map's values.
pub fn map_kind(value: &compile::MapValue) -> MapKind {
    use compile::MapValue as C;
    match value {
        C::Scalar { .. } => MapKind::Value,
        C::Count => MapKind::Count,
        C::Sum { .. } => MapKind::Sum,
        C::Min { .. } => MapKind::Min,
        C::Max { .. } => MapKind::Max,
        C::Avg { .. } => MapKind::Avg,
        C::Stats { .. } => MapKind::Stats,
        C::Hist => MapKind::Hist,
        C::Lhist { .. } => MapKind::LHist,
    }
}

impl<'a> Dispatcher<'a> {
    /// Prepare the printf sites of `artifact`.
    pub fn new(artifact: &'a Artifact) -> Self {
        let sites = artifact
            .events
            .iter()
            .map(|e| match &e.kind {
                EventKind::Printf { format } => Some(PrintfSite {
                    format: ParsedFormat::parse(format),
                    arg_names: e.fields.iter().map(|f| f.name.clone()).collect(),
                    probe: probe_of(artifact, e.span),
                }),
                _ => None,
            })
            .collect();
        Dispatcher {
            artifact,
            decoder: Decoder::new(),
            sites,
            args: vec![Vec::new(); artifact.events.len()],
            batch: RecordBatch::new(),
            text: Vec::with_capacity(64),
            events: 0,
            lost: 0,
            decode_errors: 0,
            exit: false,
        }
    }

    /// True once an `exit()` record was dispatched.
    pub fn exit_requested(&self) -> bool {
        self.exit
    }

    /// Totals so far (`duration_ns` left zero).
    pub fn stats(&self) -> RunStats {
        RunStats {
            events: self.events,
            lost_events: self.lost,
            decode_errors: self.decode_errors,
            duration_ns: 0,
        }
    }

    /// Read one batch and dispatch it; returns the number of records.
    pub fn drain_once<B: Backend>(
        &mut self,
        backend: &mut B,
        sink: &mut dyn Sink,
        max_bytes: usize,
    ) -> Result<usize, SessionError> {
        let mut batch = std::mem::take(&mut self.batch);
        let n = backend.read_batch(&mut batch, max_bytes);
        let mut result = Ok(n);
        for record in batch.iter() {
            if let Err(e) = self.dispatch(backend, sink, record) {
                result = Err(e);
                break;
            }
        }
        self.batch = batch;
        result
    }

    /// Dispatch everything waiting (bounded: see [`FINAL_DRAIN_BATCHES`]).
    pub fn drain_all<B: Backend>(
        &mut self,
        backend: &mut B,
        sink: &mut dyn Sink,
        max_bytes: usize,
    ) -> Result<(), SessionError> {
        for _ in 0..FINAL_DRAIN_BATCHES {
            if self.drain_once(backend, sink, max_bytes)? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Ask the backend for lost events and report any new ones.
    pub fn report_lost<B: Backend>(
        &mut self,
        backend: &mut B,
        sink: &mut dyn Sink,
    ) -> Result<(), SessionError> {
        let total = backend.lost_events()?;
        if total > self.lost {
            let new = total - self.lost;
            self.lost = total;
            sink.lost(new).map_err(SessionError::Sink)?;
        }
        Ok(())
    }

    fn dispatch<B: Backend>(
        &mut self,
        backend: &mut B,
        sink: &mut dyn Sink,
        record: &[u8],
    ) -> Result<(), SessionError> {
        self.events += 1;
        let Some(header) = RecordHeader::parse(record) else {
            self.decode_errors += 1;
            return Ok(());
        };
        let id = header.event_id as usize;
        let Some(schema) = self.artifact.events.get(id) else {
            self.decode_errors += 1;
            return Ok(());
        };
        let payload = &record[RECORD_HEADER_SIZE as usize..];
        let sunk = match &schema.kind {
            EventKind::Printf { .. } => {
                let (Some(Some(site)), Some(args)) = (self.sites.get(id), self.args.get_mut(id))
                else {
                    self.decode_errors += 1;
                    return Ok(());
                };
                if self
                    .decoder
                    .fields_into(&schema.fields, payload, args, &mut BackendStacks(backend))
                    .is_err()
                {
                    self.decode_errors += 1;
                    return Ok(());
                }
                let meta = EventMeta {
                    timestamp_ns: header.ts_ns,
                    pid: header.pid(),
                    tid: header.tid(),
                    cpu: header.cpu,
                    // The record header carries no comm; see `EventMeta::comm`.
                    comm: [0; 16],
                };
                sink.printf(&PrintfEvent {
                    site,
                    meta: &meta,
                    args,
                })
            }
            EventKind::Print { map, top, div } => {
                let dump = self.read_map(backend, *map as usize)?;
                let opts = MapPrintOptions {
                    top: usize::try_from(*top).unwrap_or(usize::MAX),
                    div: *div,
                };
                match dump {
                    Some(dump) => sink.map(&dump, &opts),
                    None => Ok(()),
                }
            }
            EventKind::PrintValue => {
                let Some(field) = schema.fields.first() else {
                    self.decode_errors += 1;
                    return Ok(());
                };
                let at = (field.offset as usize).min(payload.len());
                match self
                    .decoder
                    .value(&field.ty, &payload[at..], &mut BackendStacks(backend))
                {
                    Ok(v) => sink.value(&v),
                    Err(_) => {
                        self.decode_errors += 1;
                        return Ok(());
                    }
                }
            }
            EventKind::Clear { map } => {
                backend.clear_map(*map as usize)?;
                Ok(())
            }
            EventKind::Zero { map } => {
                backend.zero_map(*map as usize)?;
                Ok(())
            }
            EventKind::Exit => {
                self.exit = true;
                Ok(())
            }
            EventKind::Time { format } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                self.text.clear();
                strftime::format_local(&mut self.text, format, now);
                sink.message(MessageKind::Time, &self.text)
            }
        };
        match sunk {
            Ok(()) => Ok(()),
            // A printf whose arguments do not fit its format is one bad
            // record, not a reason to stop.
            Err(SinkError::Format(_)) => {
                self.decode_errors += 1;
                Ok(())
            }
            Err(e) => Err(SessionError::Sink(e)),
        }
    }

    /// Read and decode user map `index`; `None` when it is not a user map.
    fn read_map<B: Backend>(
        &mut self,
        backend: &mut B,
        index: usize,
    ) -> Result<Option<MapDump>, SessionError> {
        let Some(spec) = self.artifact.maps.get(index) else {
            return Ok(None);
        };
        let MapRole::User(user) = &spec.role else {
            return Ok(None);
        };
        let raw = backend.map_entries(index)?;
        // A key-less aggregation lives in a one-entry array whose entry
        // always exists; all zeros on every CPU means it never ran (or was
        // cleared), which must print like a hash map's missing key
        // (artifact.rs, `UserMap::keys`).
        let always_present = matches!(
            spec.kind,
            ArtifactMapKind::Array | ArtifactMapKind::PercpuArray
        );
        let mut entries = Vec::with_capacity(raw.len());
        for e in raw {
            if always_present && e.slots.iter().all(|s| s.iter().all(|&b| b == 0)) {
                continue;
            }
            let slots: Vec<&[u8]> = e.slots.iter().map(Vec::as_slice).collect();
            let key = self
                .decoder
                .key(&user.keys, &e.key, &mut BackendStacks(backend));
            let value = self
                .decoder
                .map_value(&user.value, &slots, &mut BackendStacks(backend));
            match (key, value) {
                (Ok(key), Ok(Some(value))) => entries.push((key, value)),
                (Ok(_), Ok(None)) => {}
                _ => self.decode_errors += 1,
            }
        }
        let kind = map_kind(&user.value);
        if entries.is_empty() && user.keys.is_empty() && kind == MapKind::Count {
            // bpftrace 0.17 keeps a key-less count() in a per-CPU array,
            // whose one slot always exists: never fired (or cleared) it
            // prints `@c: 0`, where every other empty map is a blank line.
            entries.push((Vec::new(), MapValue::Count(0)));
        }
        Ok(Some(MapDump {
            name: user.name.clone(),
            kind,
            entries,
        }))
    }

    /// Every user map, read now (for the end of the run).
    pub fn user_maps<B: Backend>(&mut self, backend: &mut B) -> Result<Vec<MapDump>, SessionError> {
        let mut out = Vec::new();
        for i in 0..self.artifact.maps.len() {
            if let Some(dump) = self.read_map(backend, i)? {
                out.push(dump);
            }
        }
        Ok(out)
    }
}
