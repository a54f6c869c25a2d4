//! Output sinks: the event loop pushes records into a [`Sink`]
//! (ripgrep-style push model) and the sink writes them in its format.
//!
//! * [`TextSink`] writes what bpftrace 0.17 writes to stdout, byte for byte.
//! * [`JsonSink`] writes JSON Lines: one object per line with a `"type"` and
//!   a `"data"` field, bpftrace's `-f json` records unchanged plus our
//!   extensions (see the crate README).
//!
//! Both format each record into a reused buffer and write it through a
//! `BufWriter`, so the per-event path does not allocate. A closed pipe on the
//! other end (`EPIPE`) turns into [`SinkError::BrokenPipe`], after which the
//! sink writes nothing more; the CLI maps it to a quiet exit 0.

use std::io::{self, BufWriter, Write};

use crate::json;
use crate::printf::{FormatError, ParsedFormat};
use crate::text::{self, MapPrintOptions};
use crate::value::{MapDump, Value};

/// Buffer size of the sinks' `BufWriter`.
const OUTPUT_BUFFER: usize = 64 * 1024;

/// Where an event came from, as the ring-buffer record header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventMeta {
    /// `bpf_ktime_get_ns()` at the event (nanoseconds since boot).
    pub timestamp_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU the event fired on.
    pub cpu: u32,
    /// `comm` of the current task, NUL-padded; all zero when the backend's
    /// records do not carry it (the kernel backend's do not), and then the
    /// JSON printf record has no `comm` field.
    pub comm: [u8; 16],
}

impl EventMeta {
    /// `comm` without its NUL padding.
    pub fn comm(&self) -> &[u8] {
        let end = self
            .comm
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.comm.len());
        &self.comm[..end]
    }
}

/// One printf call site of the program, prepared once at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintfSite {
    /// The parsed format string.
    pub format: ParsedFormat,
    /// A name per argument for typed JSON output (the compiler's event schema
    /// field names, e.g. the source text `args->filename`).
    pub arg_names: Vec<String>,
    /// The probe the call is in (`tracepoint:syscalls:sys_enter_openat`).
    pub probe: String,
}

/// One printf event: its site, header and decoded arguments.
#[derive(Debug, Clone, Copy)]
pub struct PrintfEvent<'a> {
    /// The call site.
    pub site: &'a PrintfSite,
    /// The record header.
    pub meta: &'a EventMeta,
    /// Decoded arguments, in format order.
    pub args: &'a [Value],
}

/// Messages that are text produced by an action other than printf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `time()`.
    Time,
    /// `cat()`.
    Cat,
    /// `system()`.
    Syscall,
}

impl MessageKind {
    fn json_type(self) -> &'static str {
        match self {
            MessageKind::Time => "time",
            MessageKind::Cat => "cat",
            MessageKind::Syscall => "syscall",
        }
    }
}

/// Totals of a run, reported once at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunStats {
    /// Records received from the backend.
    pub events: u64,
    /// Records the kernel (or a queue) dropped.
    pub lost_events: u64,
    /// Records that could not be decoded or formatted.
    pub decode_errors: u64,
    /// Wall-clock duration of the run.
    pub duration_ns: u64,
}

/// Why a sink could not write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The reader went away (EPIPE); stop quietly.
    #[error("output closed by the reader (broken pipe)")]
    BrokenPipe,
    /// Another write error.
    #[error("writing output failed: {0}")]
    Io(#[source] io::Error),
    /// A printf event did not fit its format.
    #[error("formatting a printf event failed: {0}")]
    Format(#[from] FormatError),
}

/// Receives everything a session prints.
pub trait Sink {
    /// `Attaching N probes...` (bpftrace prints it before any event).
    fn attached_probes(&mut self, count: u64) -> Result<(), SinkError>;
    /// A printf event.
    fn printf(&mut self, event: &PrintfEvent<'_>) -> Result<(), SinkError>;
    /// Text from `time()`, `cat()` or `system()`, printed as is.
    fn message(&mut self, kind: MessageKind, text: &[u8]) -> Result<(), SinkError>;
    /// `print(expr)` of a non-map value.
    fn value(&mut self, value: &Value) -> Result<(), SinkError>;
    /// `print(@map, top, div)`.
    fn map(&mut self, map: &MapDump, opts: &MapPrintOptions) -> Result<(), SinkError>;
    /// The maps printed when the run ends, in any order (printed sorted by
    /// name, as bpftrace does).
    fn exit_maps(&mut self, maps: &[MapDump]) -> Result<(), SinkError>;
    /// The backend reported `count` lost events.
    fn lost(&mut self, count: u64) -> Result<(), SinkError>;
    /// The run's totals, once, at the end.
    fn run_stats(&mut self, stats: &RunStats) -> Result<(), SinkError>;
    /// Hands everything written so far to the writer (the event loop calls
    /// it whenever the event buffer is drained empty).
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Flushes everything written so far, at the end of the run.
    fn finish(&mut self) -> Result<(), SinkError>;
}

/// A buffered writer that remembers a broken pipe.
#[derive(Debug)]
struct Output<W: Write> {
    writer: BufWriter<W>,
    closed: bool,
    flush_each_record: bool,
}

impl<W: Write> Output<W> {
    fn new(writer: W) -> Self {
        Output {
            writer: BufWriter::with_capacity(OUTPUT_BUFFER, writer),
            closed: false,
            flush_each_record: false,
        }
    }

    fn check(&mut self, result: io::Result<()>) -> Result<(), SinkError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Err(SinkError::BrokenPipe)
            }
            Err(e) => Err(SinkError::Io(e)),
        }
    }

    fn write_record(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        if self.closed {
            return Err(SinkError::BrokenPipe);
        }
        let mut result = self.writer.write_all(bytes);
        if result.is_ok() && self.flush_each_record {
            result = self.writer.flush();
        }
        self.check(result)
    }

    fn into_inner(self) -> Result<W, SinkError> {
        self.writer.into_inner().map_err(|e| {
            let e = e.into_error();
            if e.kind() == io::ErrorKind::BrokenPipe {
                SinkError::BrokenPipe
            } else {
                SinkError::Io(e)
            }
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if self.closed {
            return Err(SinkError::BrokenPipe);
        }
        let result = self.writer.flush();
        self.check(result)
    }
}

/// Maps sorted by name, as bpftrace prints them at exit.
fn by_name(maps: &[MapDump]) -> Vec<&MapDump> {
    let mut sorted: Vec<&MapDump> = maps.iter().collect();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    sorted
}

/// Writes bpftrace 0.17's text output.
#[derive(Debug)]
pub struct TextSink<W: Write> {
    out: Output<W>,
    buf: Vec<u8>,
    lost_total: u64,
}

impl<W: Write> TextSink<W> {
    /// A text sink writing to `writer` (buffered).
    pub fn new(writer: W) -> Self {
        TextSink {
            out: Output::new(writer),
            buf: Vec::with_capacity(4096),
            lost_total: 0,
        }
    }

    /// Flush after every record (for a terminal, as bpftrace's line
    /// buffering does); off by default.
    pub fn set_flush_each_record(&mut self, on: bool) {
        self.out.flush_each_record = on;
    }

    /// Lost events reported so far.
    pub fn lost_total(&self) -> u64 {
        self.lost_total
    }

    /// Unwraps the writer, flushing it.
    pub fn into_inner(self) -> Result<W, SinkError> {
        self.out.into_inner()
    }

    fn emit(&mut self) -> Result<(), SinkError> {
        let result = self.out.write_record(&self.buf);
        self.buf.clear();
        result
    }
}

impl<W: Write> Sink for TextSink<W> {
    fn attached_probes(&mut self, count: u64) -> Result<(), SinkError> {
        self.buf.clear();
        let plural = if count == 1 { "probe" } else { "probes" };
        self.buf
            .extend_from_slice(format!("Attaching {count} {plural}...\n").as_bytes());
        self.emit()
    }

    fn printf(&mut self, event: &PrintfEvent<'_>) -> Result<(), SinkError> {
        self.buf.clear();
        event.site.format.format(event.args, &mut self.buf)?;
        self.emit()
    }

    fn message(&mut self, _kind: MessageKind, text: &[u8]) -> Result<(), SinkError> {
        self.buf.clear();
        self.buf.extend_from_slice(text);
        self.emit()
    }

    fn value(&mut self, value: &Value) -> Result<(), SinkError> {
        self.buf.clear();
        text::write_value(&mut self.buf, value, text::VALUE_STACK_INDENT);
        self.buf.push(b'\n');
        self.emit()
    }

    fn map(&mut self, map: &MapDump, opts: &MapPrintOptions) -> Result<(), SinkError> {
        self.buf.clear();
        text::write_map(&mut self.buf, map, opts);
        self.emit()
    }

    fn exit_maps(&mut self, maps: &[MapDump]) -> Result<(), SinkError> {
        // bpftrace separates the end-of-run maps from the events above them
        // with two newlines, whether or not there are maps.
        self.buf.clear();
        self.buf.extend_from_slice(b"\n\n");
        self.emit()?;
        for map in by_name(maps) {
            self.map(map, &MapPrintOptions::default())?;
        }
        Ok(())
    }

    fn lost(&mut self, count: u64) -> Result<(), SinkError> {
        // bpftrace prints this line to its output stream, not to stderr.
        self.lost_total += count;
        self.buf.clear();
        self.buf
            .extend_from_slice(format!("Lost {count} events\n").as_bytes());
        self.emit()
    }

    fn run_stats(&mut self, _stats: &RunStats) -> Result<(), SinkError> {
        // bpftrace prints no totals in text mode; losses were reported as
        // they happened (`Lost N events`), and the CLI reports decode errors
        // on stderr.
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush()
    }
}

/// Options of the JSON sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonOptions {
    /// Add the typed arguments and event header to printf records (our
    /// extension); off gives bpftrace's exact `{"type": "printf", "data": …}`.
    pub typed_printf: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions { typed_printf: true }
    }
}

/// Writes JSON Lines.
#[derive(Debug)]
pub struct JsonSink<W: Write> {
    out: Output<W>,
    buf: Vec<u8>,
    text: Vec<u8>,
    options: JsonOptions,
    lost_total: u64,
}

impl<W: Write> JsonSink<W> {
    /// A JSON Lines sink writing to `writer` (buffered).
    pub fn new(writer: W, options: JsonOptions) -> Self {
        JsonSink {
            out: Output::new(writer),
            buf: Vec::with_capacity(4096),
            text: Vec::with_capacity(1024),
            options,
            lost_total: 0,
        }
    }

    /// Flush after every record; off by default.
    pub fn set_flush_each_record(&mut self, on: bool) {
        self.out.flush_each_record = on;
    }

    /// Lost events reported so far.
    pub fn lost_total(&self) -> u64 {
        self.lost_total
    }

    /// Unwraps the writer, flushing it.
    pub fn into_inner(self) -> Result<W, SinkError> {
        self.out.into_inner()
    }

    fn emit(&mut self) -> Result<(), SinkError> {
        let result = self.out.write_record(&self.buf);
        self.buf.clear();
        result
    }

    fn begin(&mut self, record_type: &str) {
        self.buf.clear();
        self.buf.extend_from_slice(b"{\"type\": \"");
        self.buf.extend_from_slice(record_type.as_bytes());
        self.buf.extend_from_slice(b"\", \"data\": ");
    }

    fn write_u64_field(&mut self, name: &str, value: u64) {
        self.buf.extend_from_slice(b", \"");
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\": ");
        text::write_decimal_u64(&mut self.buf, value);
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn attached_probes(&mut self, count: u64) -> Result<(), SinkError> {
        self.begin("attached_probes");
        self.buf.extend_from_slice(b"{\"probes\": ");
        text::write_decimal_u64(&mut self.buf, count);
        self.buf.extend_from_slice(b"}}\n");
        self.emit()
    }

    fn printf(&mut self, event: &PrintfEvent<'_>) -> Result<(), SinkError> {
        self.text.clear();
        event.site.format.format(event.args, &mut self.text)?;
        self.begin("printf");
        json::write_str(&mut self.buf, &self.text);
        if self.options.typed_printf {
            let meta = event.meta;
            self.buf.extend_from_slice(b", \"probe\": ");
            json::write_str(&mut self.buf, event.site.probe.as_bytes());
            self.write_u64_field("timestamp_ns", meta.timestamp_ns);
            self.write_u64_field("pid", u64::from(meta.pid));
            self.write_u64_field("tid", u64::from(meta.tid));
            self.write_u64_field("cpu", u64::from(meta.cpu));
            // Only a header that recorded `comm` has one: the kernel's
            // records do not carry it (a per-event copy would cost every
            // probe 16 bytes and a helper call), and a name looked up later
            // in /proc could belong to another process or an older exec.
            if !meta.comm().is_empty() {
                self.buf.extend_from_slice(b", \"comm\": ");
                json::write_str(&mut self.buf, meta.comm());
            }
            self.buf.extend_from_slice(b", \"args\": [");
            for (i, arg) in event.args.iter().enumerate() {
                if i > 0 {
                    self.buf.extend_from_slice(b", ");
                }
                self.buf.extend_from_slice(b"{\"name\": ");
                let name = event.site.arg_names.get(i).map_or("", String::as_str);
                json::write_str(&mut self.buf, name.as_bytes());
                self.buf.extend_from_slice(b", \"type\": \"");
                self.buf.extend_from_slice(arg.type_name().as_bytes());
                self.buf.extend_from_slice(b"\", \"value\": ");
                json::write_typed_value(&mut self.buf, arg);
                self.buf.push(b'}');
            }
            self.buf.push(b']');
        }
        self.buf.extend_from_slice(b"}\n");
        self.emit()
    }

    fn message(&mut self, kind: MessageKind, text: &[u8]) -> Result<(), SinkError> {
        self.begin(kind.json_type());
        json::write_str(&mut self.buf, text);
        self.buf.extend_from_slice(b"}\n");
        self.emit()
    }

    fn value(&mut self, value: &Value) -> Result<(), SinkError> {
        self.begin("value");
        json::write_value(&mut self.buf, value);
        self.buf.extend_from_slice(b"}\n");
        self.emit()
    }

    fn map(&mut self, map: &MapDump, opts: &MapPrintOptions) -> Result<(), SinkError> {
        self.buf.clear();
        json::write_map(&mut self.buf, map, opts);
        self.emit()
    }

    fn exit_maps(&mut self, maps: &[MapDump]) -> Result<(), SinkError> {
        // bpftrace also writes two bare newlines here in JSON mode; JSON
        // Lines has no blank lines, so we do not.
        for map in by_name(maps) {
            self.map(map, &MapPrintOptions::default())?;
        }
        Ok(())
    }

    fn lost(&mut self, count: u64) -> Result<(), SinkError> {
        self.lost_total += count;
        self.begin("lost_events");
        self.buf.extend_from_slice(b"{\"events\": ");
        text::write_decimal_u64(&mut self.buf, count);
        self.buf.extend_from_slice(b"}}\n");
        self.emit()
    }

    fn run_stats(&mut self, stats: &RunStats) -> Result<(), SinkError> {
        self.begin("run_stats");
        self.buf.extend_from_slice(b"{\"events\": ");
        text::write_decimal_u64(&mut self.buf, stats.events);
        self.write_u64_field("lost_events", stats.lost_events);
        self.write_u64_field("decode_errors", stats.decode_errors);
        self.write_u64_field("duration_ns", stats.duration_ns);
        self.buf.extend_from_slice(b"}}\n");
        self.emit()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printf::{ArgKind, check_format};

    #[test]
    fn json_printf_has_comm_only_when_the_header_recorded_it() {
        let site = PrintfSite {
            format: check_format("%d\n", &[ArgKind::Integer]).unwrap(),
            arg_names: vec!["pid".into()],
            probe: "BEGIN".into(),
        };
        let args = [Value::Signed { value: 7, bits: 32 }];
        let unnamed = EventMeta::default();
        let mut named = EventMeta::default();
        named.comm[..4].copy_from_slice(b"bash");
        let mut sink = JsonSink::new(Vec::new(), JsonOptions::default());
        for meta in [&unnamed, &named] {
            sink.printf(&PrintfEvent {
                site: &site,
                meta,
                args: &args,
            })
            .unwrap();
        }
        let out = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(!lines[0].contains("\"comm\""), "{}", lines[0]);
        assert!(lines[1].contains(", \"comm\": \"bash\", "), "{}", lines[1]);
    }
}
