//! JSON rendering in bpftrace 0.17's `-f json` shapes and spacing
//! (`{"type": "map", "data": {"@c": {"1,a": 2}}}`), plus the typed forms our
//! extension records use.
//!
//! Records are written straight into the sink's reused buffer rather than
//! built as `serde_json::Value`s: bpftrace's separators (`", "`, `": "`) are
//! reproduced exactly, strings that are not UTF-8 are handled, and the
//! printf-per-event path allocates nothing.
//!
//! Differences from bpftrace 0.17, all where its output is not valid JSON or
//! wrong: non-ASCII text is emitted as UTF-8 (bpftrace writes each byte as
//! `\uffffffXX`), bytes that are not UTF-8 become U+FFFD, and hist bucket
//! bounds at or above 2^31 are correct (bpftrace overflows a C `int`).

use crate::text::{self, BufStyle, MapPrintOptions};
use crate::value::{MapDump, MapKind, MapValue, Value};

/// Appends `bytes` as a quoted JSON string, escaping as bpftrace does
/// (`\"`, `\\`, `\n`, `\r`, `\t`, other control characters as `\u00XX`).
pub fn write_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    write_str_body(out, bytes);
    out.push(b'"');
}

/// Bytes that cannot appear raw inside a JSON string.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

fn write_str_body(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in bytes.utf8_chunks() {
        let mut rest = chunk.valid().as_bytes();
        // Copy runs that need no escaping in one go; this is the hot path
        // of every printf record.
        while let Some(at) = rest.iter().position(|&b| NEEDS_ESCAPE[usize::from(b)]) {
            out.extend_from_slice(&rest[..at]);
            let b = rest[at];
            rest = &rest[at + 1..];
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
                _ => out.push(b),
            }
        }
        out.extend_from_slice(rest);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// Appends `value` as bpftrace's JSON output does: integers bare, strings,
/// buffers, symbols, stacks and timestamps as their text in a JSON string,
/// tuples and arrays as arrays (`[1,"a"]`), records as objects.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Signed { value, .. } => text::write_decimal_i64(out, *value),
        Value::Unsigned { value, .. } => text::write_decimal_u64(out, *value),
        Value::Tuple(items) | Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Record(fields) => {
            out.extend_from_slice(b"{ ");
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_str(out, name.as_bytes());
                out.extend_from_slice(b": ");
                write_value(out, item);
            }
            out.extend_from_slice(b" }");
        }
        Value::Str(bytes) => write_str(out, bytes),
        _ => write_as_text_string(out, value, text::VALUE_STACK_INDENT),
    }
}

/// Appends the text form of `value` as a JSON string.
fn write_as_text_string(out: &mut Vec<u8>, value: &Value, stack_indent: usize) {
    let mut scratch = Vec::new();
    text::write_value(&mut scratch, value, stack_indent);
    write_str(out, &scratch);
}

/// Appends `value` in the structured form of our typed printf arguments:
/// like [`write_value`], except stacks are arrays of frame strings and
/// buffers are `\xNN`-escaped strings of every byte.
pub fn write_typed_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Stack(frames) => {
            out.push(b'[');
            let mut scratch = Vec::new();
            for (i, frame) in frames.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                scratch.clear();
                text::write_value(&mut scratch, &Value::Stack(vec![frame.clone()]), 0);
                // The text form is "\n<frame>\n"; keep only the frame.
                let trimmed = scratch.strip_prefix(b"\n").unwrap_or(&scratch);
                let trimmed = trimmed.strip_suffix(b"\n").unwrap_or(trimmed);
                write_str(out, trimmed);
            }
            out.push(b']');
        }
        Value::Buf(bytes) => {
            let mut scratch = Vec::with_capacity(bytes.len() * 4);
            text::write_buf(&mut scratch, bytes, BufStyle::EscapeAll);
            write_str(out, &scratch);
        }
        Value::Tuple(items) | Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_typed_value(out, item);
            }
            out.push(b']');
        }
        _ => write_value(out, value),
    }
}

/// The `"type"` bpftrace gives a map record.
fn record_type(kind: MapKind) -> &'static str {
    match kind {
        MapKind::Hist | MapKind::LHist => "hist",
        MapKind::Avg | MapKind::Stats => "stats",
        _ => "map",
    }
}

/// Appends one map record and its newline; appends nothing for an empty map
/// (bpftrace prints no record for one).
pub fn write_map(out: &mut Vec<u8>, map: &MapDump, opts: &MapPrintOptions) {
    if map.entries.is_empty() {
        return;
    }
    let div = opts.div.max(1);
    let entries = text::entries_in_print_order(map, opts);
    out.extend_from_slice(b"{\"type\": \"");
    out.extend_from_slice(record_type(map.kind).as_bytes());
    out.extend_from_slice(b"\", \"data\": {");
    write_str(out, map.name.as_bytes());
    out.extend_from_slice(b": ");
    let keyed = map.entries.iter().any(|(key, _)| !key.is_empty());
    if keyed {
        out.push(b'{');
    }
    let mut key_text = Vec::new();
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        if keyed {
            // bpftrace joins the key parts' text with "," into one string.
            key_text.clear();
            for (j, part) in key.iter().enumerate() {
                if j > 0 {
                    key_text.push(b',');
                }
                text::write_key_part(&mut key_text, part);
            }
            write_str(out, &key_text);
            out.extend_from_slice(b": ");
        }
        write_map_value(out, value, div);
    }
    if keyed {
        out.push(b'}');
    }
    out.extend_from_slice(b"}}\n");
}

fn write_map_value(out: &mut Vec<u8>, value: &MapValue, div: u64) {
    let sdiv = i64::try_from(div).unwrap_or(i64::MAX);
    match value {
        MapValue::Count(n) => text::write_decimal_u64(out, n / div),
        MapValue::Sum(n) | MapValue::Min(n) | MapValue::Max(n) => {
            text::write_decimal_i64(out, n / sdiv)
        }
        MapValue::Avg { count, total } => {
            text::write_decimal_i64(out, text::average(*count, *total) / sdiv)
        }
        MapValue::Stats { count, total } => {
            out.extend_from_slice(b"{\"count\": ");
            text::write_decimal_u64(out, *count);
            out.extend_from_slice(b", \"average\": ");
            text::write_decimal_i64(out, text::average(*count, *total));
            out.extend_from_slice(b", \"total\": ");
            text::write_decimal_i64(out, *total);
            out.push(b'}');
        }
        MapValue::Hist(h) => write_hist(out, &h.buckets, div),
        MapValue::LHist(l) => write_lhist(out, l),
        MapValue::Value(Value::Signed { value, .. }) => text::write_decimal_i64(out, value / sdiv),
        MapValue::Value(Value::Unsigned { value, .. }) => text::write_decimal_u64(out, value / div),
        MapValue::Value(v) => write_value(out, v),
    }
}

fn bucket_object(out: &mut Vec<u8>, min: Option<i128>, max: Option<i128>, count: u64) {
    use std::io::Write;
    out.push(b'{');
    // Writing into a Vec cannot fail.
    if let Some(min) = min {
        let _ = write!(out, "\"min\": {min}, ");
    }
    if let Some(max) = max {
        let _ = write!(out, "\"max\": {max}, ");
    }
    let _ = write!(out, "\"count\": {count}}}");
}

fn write_hist(out: &mut Vec<u8>, buckets: &[u64], div: u64) {
    // Buckets past the last valid index would be malformed input.
    let buckets = &buckets[..buckets.len().min(crate::value::HIST_BUCKETS)];
    let first = buckets.iter().position(|&b| b > 0);
    let last = buckets.iter().rposition(|&b| b > 0);
    out.push(b'[');
    if let (Some(first), Some(last)) = (first, last) {
        for (i, &count) in buckets.iter().enumerate().take(last + 1).skip(first) {
            if i > first {
                out.extend_from_slice(b", ");
            }
            let (min, max) = match i {
                0 => (None, Some(-1)),
                1 => (Some(0), Some(0)),
                _ => {
                    let low = 1i128 << (i - 2);
                    (Some(low), Some(2 * low - 1))
                }
            };
            bucket_object(out, min, max, count / div);
        }
    }
    out.push(b']');
}

fn write_lhist(out: &mut Vec<u8>, l: &crate::value::LHist) {
    let n = crate::value::LHist::range_buckets(l.min, l.max, l.step);
    let buckets = &l.buckets[..l.buckets.len().min(n + 2)];
    let first = buckets.iter().position(|&b| b > 0);
    let last = buckets.iter().rposition(|&b| b > 0);
    out.push(b'[');
    if let (Some(first), Some(last)) = (first, last) {
        let (min, max, step) = (i128::from(l.min), i128::from(l.max), i128::from(l.step));
        for (i, &count) in buckets.iter().enumerate().take(last + 1).skip(first) {
            if i > first {
                out.extend_from_slice(b", ");
            }
            let (lo, hi) = if i == 0 {
                (None, Some(min - 1))
            } else if i == n + 1 {
                (Some(max), None)
            } else {
                let low = (i as i128 - 1) * step + min;
                (Some(low), Some(low + step - 1))
            };
            bucket_object(out, lo, hi, count);
        }
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_str(&mut out, bytes);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_bpftrace_and_stay_valid() {
        assert_eq!(s(b"a\"b\\c\n\r\t\x01"), r#""a\"b\\c\n\r\t\u0001""#);
        assert_eq!(s("é".as_bytes()), "\"é\"");
        assert_eq!(s(b"x\xffy"), "\"x\u{fffd}y\"");
        let parsed: serde_json::Value = serde_json::from_str(&s(b"\x1f\x7f\"")).unwrap();
        assert_eq!(parsed, serde_json::Value::String("\x1f\x7f\"".into()));
    }

    #[test]
    fn large_hist_buckets_have_exact_bounds() {
        let mut buckets = vec![0; 65];
        buckets[64] = 3;
        let mut out = Vec::new();
        write_hist(&mut out, &buckets, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[{"min": 4611686018427387904, "max": 9223372036854775807, "count": 3}]"#
        );
    }
}
