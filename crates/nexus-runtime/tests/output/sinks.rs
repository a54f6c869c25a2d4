//! Shapes of our JSON extension records, lost-event reporting, and broken
//! pipes.

use std::io::{self, Write};
use std::sync::Arc;

use nexus_runtime::{
    ArgKind, EventMeta, Frame, JsonOptions, JsonSink, MessageKind, PrintfEvent, PrintfSite,
    RunStats, Sink, SinkError, Symbol, TextSink, Value, check_format,
};
use serde_json::json;

fn site(fmt: &str, kinds: &[ArgKind], names: &[&str]) -> PrintfSite {
    PrintfSite {
        format: check_format(fmt, kinds).unwrap(),
        arg_names: names.iter().map(|n| n.to_string()).collect(),
        probe: "tracepoint:syscalls:sys_enter_openat".into(),
    }
}

fn meta() -> EventMeta {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"bash");
    EventMeta {
        timestamp_ns: 123_456_789,
        pid: 42,
        tid: 43,
        cpu: 1,
        comm,
    }
}

fn json_lines(bytes: Vec<u8>) -> Vec<serde_json::Value> {
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn typed_printf_record_carries_header_and_arguments() {
    let site = site(
        "%s opened %s (fd %d)\n",
        &[ArgKind::String, ArgKind::String, ArgKind::Integer],
        &["comm", "str(args->filename)", "retval"],
    );
    let meta = meta();
    let args = [
        Value::str("bash"),
        Value::Str(b"/etc/\"passwd\"".to_vec()),
        Value::Signed {
            value: -2,
            bits: 32,
        },
    ];
    let mut sink = JsonSink::new(Vec::new(), JsonOptions::default());
    sink.printf(&PrintfEvent {
        site: &site,
        meta: &meta,
        args: &args,
    })
    .unwrap();
    let lines = json_lines(sink.into_inner().unwrap());
    assert_eq!(
        lines,
        vec![json!({
            "type": "printf",
            "data": "bash opened /etc/\"passwd\" (fd -2)\n",
            "probe": "tracepoint:syscalls:sys_enter_openat",
            "timestamp_ns": 123_456_789,
            "pid": 42,
            "tid": 43,
            "cpu": 1,
            "comm": "bash",
            "args": [
                {"name": "comm", "type": "string", "value": "bash"},
                {"name": "str(args->filename)", "type": "string", "value": "/etc/\"passwd\""},
                {"name": "retval", "type": "i32", "value": -2},
            ],
        })]
    );
}

#[test]
fn typed_arguments_keep_structure() {
    let site = site(
        "%s %s %r %s\n",
        &[
            ArgKind::String,
            ArgKind::String,
            ArgKind::Buffer,
            ArgKind::String,
        ],
        &["kstack", "ksym(reg(\"ip\"))", "buf", "strftime"],
    );
    let meta = meta();
    let args = [
        Value::Stack(vec![
            Frame {
                addr: 0xffff_ffff_8100_0010,
                symbol: Some(("do_sys_openat2".into(), 16)),
            },
            Frame {
                addr: 0xffff_ffff_8100_0400,
                symbol: None,
            },
        ]),
        Value::Sym(Symbol {
            addr: 0x1000,
            name: Some("vfs_read".into()),
        }),
        Value::Buf(b"a\x00".to_vec()),
        Value::Timestamp {
            unix_nanos: 0,
            format: Arc::from("%Y"),
        },
    ];
    let mut sink = JsonSink::new(Vec::new(), JsonOptions::default());
    sink.printf(&PrintfEvent {
        site: &site,
        meta: &meta,
        args: &args,
    })
    .unwrap();
    let lines = json_lines(sink.into_inner().unwrap());
    let record = &lines[0];
    assert_eq!(
        record["data"],
        json!("\n        do_sys_openat2+16\n        0xffffffff81000400\n vfs_read a\\x00 1970\n")
    );
    assert_eq!(
        record["args"][0],
        json!({"name": "kstack", "type": "stack", "value": ["do_sys_openat2+16", "0xffffffff81000400"]})
    );
    assert_eq!(record["args"][1]["value"], json!("vfs_read"));
    assert_eq!(
        record["args"][2],
        json!({"name": "buf", "type": "buffer", "value": "\\x61\\x00"})
    );
    assert_eq!(record["args"][3]["type"], json!("timestamp"));
}

#[test]
fn lost_events_and_run_stats_records() {
    let mut sink = JsonSink::new(Vec::new(), JsonOptions::default());
    sink.lost(7).unwrap();
    sink.lost(3).unwrap();
    assert_eq!(sink.lost_total(), 10);
    sink.message(MessageKind::Time, b"08:22:36\n").unwrap();
    sink.run_stats(&RunStats {
        events: 1000,
        lost_events: 10,
        decode_errors: 1,
        duration_ns: 5_000_000,
    })
    .unwrap();
    let lines = json_lines(sink.into_inner().unwrap());
    assert_eq!(
        lines,
        vec![
            json!({"type": "lost_events", "data": {"events": 7}}),
            json!({"type": "lost_events", "data": {"events": 3}}),
            json!({"type": "time", "data": "08:22:36\n"}),
            json!({"type": "run_stats", "data": {
                "events": 1000, "lost_events": 10, "decode_errors": 1, "duration_ns": 5_000_000
            }}),
        ]
    );
}

#[test]
fn text_sink_reports_lost_events_like_bpftrace() {
    let mut sink = TextSink::new(Vec::new());
    sink.lost(5).unwrap();
    sink.attached_probes(3).unwrap();
    assert_eq!(sink.lost_total(), 5);
    let out = sink.into_inner().unwrap();
    assert_eq!(out, b"Lost 5 events\nAttaching 3 probes...\n");
}

/// A writer whose reader has gone away.
struct ClosedPipe {
    writes: usize,
}

impl Write for ClosedPipe {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        self.writes += 1;
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

#[test]
fn broken_pipe_stops_the_sink() {
    let mut sink = TextSink::new(ClosedPipe { writes: 0 });
    sink.set_flush_each_record(true);
    let first = sink.attached_probes(1);
    assert!(matches!(first, Err(SinkError::BrokenPipe)), "{first:?}");
    // Later records are refused too.
    assert!(matches!(sink.lost(1), Err(SinkError::BrokenPipe)));
    assert!(matches!(sink.finish(), Err(SinkError::BrokenPipe)));
}

#[test]
fn printf_argument_count_mismatch_is_reported() {
    let site = PrintfSite {
        format: nexus_runtime::ParsedFormat::parse("%d %d\n"),
        arg_names: vec![],
        probe: "BEGIN".into(),
    };
    let meta = EventMeta::default();
    let mut sink = TextSink::new(Vec::new());
    let err = sink
        .printf(&PrintfEvent {
            site: &site,
            meta: &meta,
            args: &[Value::i64(1)],
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "formatting a printf event failed: Not enough arguments for format string (1 supplied, 2 expected)"
    );
    assert!(sink.into_inner().unwrap().is_empty());
}
