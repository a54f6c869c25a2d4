//! bpftrace 0.17's text rendering of values and maps, byte for byte.
//!
//! Rules reproduced here (all checked against the real bpftrace 0.17 in
//! `tests/golden/`):
//!
//! * a map prints as `@name[k1, k2]: value` lines; keys are unquoted, integer
//!   keys print signed, string keys raw;
//! * count/sum/min/max/integer maps are sorted by value ascending,
//!   hist/lhist maps by the total of their buckets, avg/stats maps by the
//!   average, other maps by key (integer keys compared as unsigned 64-bit
//!   numbers, as bpftrace does, so negative keys sort last). Ties, which
//!   bpftrace leaves in hash-table order, are broken by key here;
//! * every map ends with a newline, so a blank line follows hist/lhist maps
//!   (their rows end with one) and an empty map prints a bare newline;
//!   avg/stats maps print one more newline;
//! * hist rows: the range label left-aligned in 16 columns, the count
//!   right-aligned in 8, then `|` + a bar of `@` scaled to 52 columns (as a
//!   C `float`, truncated) + `|`. Labels use K/M/G/T for powers of 1024;
//!   lhist labels use K/M only for exact multiples of 1024 / 1048576;
//! * `print(@m, top, div)`: the last `top` entries after sorting, values
//!   divided by `div` for count/sum/min/max/integers/avg and hist counts
//!   (not lhist or stats, and `top` does not apply to stats maps — all as in
//!   bpftrace 0.17).
//!
//! Differences from bpftrace 0.17, all where bpftrace misbehaves: `max()` of
//! negative values prints signed (bpftrace prints it as an unsigned 64-bit
//! number), and hist buckets above 2^32 exist (bpftrace files those values
//! under `[2G, 4G)`).

use std::cmp::Ordering;

use crate::strftime;
use crate::value::{HIST_BUCKETS, Hist, LHist, MapDump, MapKind, MapValue, Value};

/// Stack indent (spaces) of a stack printed by printf or as a map value.
pub(crate) const PRINTF_STACK_INDENT: usize = 8;
/// Stack indent of a stack printed as a map value.
pub(crate) const VALUE_STACK_INDENT: usize = 8;
/// Stack indent of a stack printed inside a map key.
pub(crate) const KEY_STACK_INDENT: usize = 4;
/// Width of a histogram bar, in `@` characters.
const BAR_WIDTH: usize = 52;

/// How a byte buffer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufStyle {
    /// Printable ASCII as is, other bytes as `\xNN` (`%r`, map values).
    KeepAscii,
    /// Every byte as `\xNN` (`%rx`).
    EscapeAll,
    /// Every byte as two hex digits, separated by spaces (`%rh`).
    HexPairs,
}

/// Options of `print(@map, top, div)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapPrintOptions {
    /// Print only the last `top` entries after sorting (0: all).
    pub top: usize,
    /// Divide printed values by this (0 or 1: unchanged).
    pub div: u64,
}

impl Default for MapPrintOptions {
    fn default() -> Self {
        MapPrintOptions { top: 0, div: 1 }
    }
}

impl MapPrintOptions {
    fn divisor(&self) -> u64 {
        self.div.max(1)
    }
}

/// Appends a byte buffer in the given style.
pub fn write_buf(out: &mut Vec<u8>, bytes: &[u8], style: BufStyle) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, &b) in bytes.iter().enumerate() {
        match style {
            BufStyle::KeepAscii if (32..=126).contains(&b) => out.push(b),
            BufStyle::KeepAscii | BufStyle::EscapeAll => {
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
            BufStyle::HexPairs => {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
        }
    }
}

/// Appends `value` as bpftrace prints it in text (map values, `print()`,
/// `%s`); stacks are indented by `stack_indent` spaces.
pub fn write_value(out: &mut Vec<u8>, value: &Value, stack_indent: usize) {
    match value {
        Value::Signed { value, .. } => write_decimal_i64(out, *value),
        Value::Unsigned { value, .. } => write_decimal_u64(out, *value),
        Value::Str(bytes) => out.extend_from_slice(bytes),
        Value::Buf(bytes) => write_buf(out, bytes, BufStyle::KeepAscii),
        Value::Tuple(items) => {
            out.push(b'(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_value(out, item, stack_indent);
            }
            out.push(b')');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, stack_indent);
            }
            out.push(b']');
        }
        Value::Record(fields) => {
            out.extend_from_slice(b"{ ");
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                out.push(b'.');
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b" = ");
                write_value(out, item, stack_indent);
            }
            out.extend_from_slice(b" }");
        }
        // An empty stack (a kernel stack sampled in user mode: the kernel
        // stored none) is empty text in bpftrace, so a key prints `@[]: N`.
        Value::Stack(frames) if frames.is_empty() => {}
        Value::Stack(frames) => {
            // bpftrace's stack text starts on a new line and puts every frame
            // on its own indented line.
            out.push(b'\n');
            for frame in frames {
                out.resize(out.len() + stack_indent, b' ');
                match &frame.symbol {
                    Some((name, offset)) => {
                        out.extend_from_slice(name.as_bytes());
                        out.push(b'+');
                        write_decimal_u64(out, *offset);
                    }
                    None => write_hex_addr(out, frame.addr),
                }
                out.push(b'\n');
            }
        }
        Value::Sym(sym) => match &sym.name {
            Some(name) => out.extend_from_slice(name.as_bytes()),
            None => write_hex_addr(out, sym.addr),
        },
        Value::Timestamp { unix_nanos, format } => {
            strftime::format_local(out, format, *unix_nanos);
        }
    }
}

/// An unresolved address as bpftrace prints one (a C++ `void*` on an
/// ostream): `0x…` in hex, but a bare `0` for null.
fn write_hex_addr(out: &mut Vec<u8>, addr: u64) {
    use std::io::Write;
    if addr == 0 {
        out.push(b'0');
        return;
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{addr:#x}");
}

pub(crate) fn write_decimal_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_decimal_u64(out, v.unsigned_abs());
}

pub(crate) fn write_decimal_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut n = buf.len();
    loop {
        n -= 1;
        buf[n] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[n..]);
}

/// A key part as bpftrace prints it inside `[...]`: integers signed at
/// their width, everything else as its value text.
pub(crate) fn write_key_part(out: &mut Vec<u8>, part: &Value) {
    match *part {
        Value::Unsigned { value, bits } => write_decimal_i64(out, sign_extend(value, bits)),
        _ => write_value(out, part, KEY_STACK_INDENT),
    }
}

fn sign_extend(value: u64, bits: u8) -> i64 {
    let bits = u32::from(bits.clamp(1, 64));
    let shift = 64 - bits;
    ((value << shift) as i64) >> shift
}

/// Compares two keys the way bpftrace's `sort_by_key` does: part by part,
/// integers as unsigned 64-bit numbers, strings bytewise; other parts do not
/// order.
fn compare_keys(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (x, y) {
            (Value::Str(x), Value::Str(y)) => x.cmp(y),
            _ => match (x.as_raw_u64(), y.as_raw_u64()) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => Ordering::Equal,
            },
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// The number a map entry sorts by, when the map sorts by value.
#[derive(PartialEq, PartialOrd)]
enum SortValue {
    Signed(i64),
    Unsigned(u64),
    Wide(i128),
}

fn sort_value(value: &MapValue) -> Option<SortValue> {
    Some(match value {
        MapValue::Count(n) => SortValue::Unsigned(*n),
        MapValue::Sum(n) | MapValue::Min(n) | MapValue::Max(n) => SortValue::Signed(*n),
        MapValue::Avg { count, total } | MapValue::Stats { count, total } => {
            SortValue::Signed(average(*count, *total))
        }
        MapValue::Hist(Hist { buckets }) | MapValue::LHist(LHist { buckets, .. }) => {
            SortValue::Wide(buckets.iter().map(|&b| i128::from(b)).sum())
        }
        MapValue::Value(Value::Signed { value, .. }) => SortValue::Signed(*value),
        MapValue::Value(Value::Unsigned { value, .. }) => SortValue::Unsigned(*value),
        MapValue::Value(_) => return None,
    })
}

/// bpftrace's integer average: `total / count`, 0 for no observations.
pub(crate) fn average(count: u64, total: i64) -> i64 {
    if count == 0 {
        0
    } else {
        (i128::from(total) / i128::from(count)) as i64
    }
}

/// The entries of `map` in bpftrace's printing order with `top` applied.
pub(crate) fn entries_in_print_order<'m>(
    map: &'m MapDump,
    opts: &MapPrintOptions,
) -> Vec<&'m (Vec<Value>, MapValue)> {
    let mut entries: Vec<_> = map.entries.iter().collect();
    entries.sort_by(|a, b| compare_keys(&a.0, &b.0));
    let by_value = entries.iter().all(|e| sort_value(&e.1).is_some());
    if by_value {
        entries.sort_by(|a, b| {
            sort_value(&a.1)
                .partial_cmp(&sort_value(&b.1))
                .unwrap_or(Ordering::Equal)
        });
    }
    // bpftrace 0.17 ignores `top` for stats() maps.
    if opts.top > 0 && map.kind != MapKind::Stats && entries.len() > opts.top {
        entries.drain(..entries.len() - opts.top);
    }
    entries
}

/// Appends `map` as bpftrace's `print(@map, top, div)` and its end-of-run
/// printing do.
pub fn write_map(out: &mut Vec<u8>, map: &MapDump, opts: &MapPrintOptions) {
    let div = opts.divisor();
    let entries = entries_in_print_order(map, opts);
    for (i, (key, value)) in entries.iter().enumerate() {
        // Stacks end with a newline of their own, so bpftrace puts no
        // separator between them (nor, by the same rule, between symbols).
        let separated = !matches!(value, MapValue::Value(Value::Stack(_) | Value::Sym(_)));
        if i > 0 && separated {
            out.push(b'\n');
        }
        out.extend_from_slice(map.name.as_bytes());
        if !key.is_empty() {
            out.push(b'[');
            for (j, part) in key.iter().enumerate() {
                if j > 0 {
                    out.extend_from_slice(b", ");
                }
                write_key_part(out, part);
            }
            out.push(b']');
        }
        out.extend_from_slice(b": ");
        write_map_value(out, value, div);
    }
    out.push(b'\n');
    if matches!(map.kind, MapKind::Avg | MapKind::Stats) {
        out.push(b'\n');
    }
}

fn write_map_value(out: &mut Vec<u8>, value: &MapValue, div: u64) {
    // bpftrace divides signed values by the divisor as a signed number.
    let sdiv = i64::try_from(div).unwrap_or(i64::MAX);
    match value {
        MapValue::Count(n) => write_decimal_u64(out, n / div),
        MapValue::Sum(n) | MapValue::Min(n) | MapValue::Max(n) => write_decimal_i64(out, n / sdiv),
        MapValue::Avg { count, total } => write_decimal_i64(out, average(*count, *total) / sdiv),
        MapValue::Stats { count, total } => {
            out.extend_from_slice(b"count ");
            write_decimal_u64(out, *count);
            out.extend_from_slice(b", average ");
            write_decimal_i64(out, average(*count, *total));
            out.extend_from_slice(b", total ");
            write_decimal_i64(out, *total);
        }
        MapValue::Hist(h) => {
            out.push(b'\n');
            write_hist_rows(out, &h.buckets, div);
        }
        MapValue::LHist(l) => {
            out.push(b'\n');
            write_lhist_rows(out, l);
        }
        MapValue::Value(Value::Signed { value, .. }) => write_decimal_i64(out, value / sdiv),
        MapValue::Value(Value::Unsigned { value, .. }) => write_decimal_u64(out, value / div),
        MapValue::Value(v) => write_value(out, v, VALUE_STACK_INDENT),
    }
}

/// First and last non-zero bucket, and the largest count.
fn nonzero_span(buckets: &[u64]) -> Option<(usize, usize, u64)> {
    let first = buckets.iter().position(|&b| b > 0)?;
    let last = buckets.iter().rposition(|&b| b > 0)?;
    let max = buckets.iter().copied().max().unwrap_or(0);
    Some((first, last, max))
}

/// `2^power` as bpftrace labels it: `1`, `512`, `1K`, `4M`, `2G`, `8T`.
fn write_hist_label(out: &mut Vec<u8>, power: usize) {
    let (power, suffix) = match power {
        40.. => (power - 40, Some(b'T')),
        30.. => (power - 30, Some(b'G')),
        20.. => (power - 20, Some(b'M')),
        10.. => (power - 10, Some(b'K')),
        _ => (power, None),
    };
    write_decimal_u64(out, 1u64 << power.min(63));
    if let Some(s) = suffix {
        out.push(s);
    }
}

fn write_lhist_label(out: &mut Vec<u8>, n: i64) {
    const KILO: i64 = 1024;
    const MEGA: i64 = 1024 * 1024;
    if n != 0 && n % MEGA == 0 {
        write_decimal_i64(out, n / MEGA);
        out.push(b'M');
    } else if n != 0 && n % KILO == 0 {
        write_decimal_i64(out, n / KILO);
        out.push(b'K');
    } else {
        write_decimal_i64(out, n);
    }
}

/// One histogram row: label, count, bar.
fn write_row(out: &mut Vec<u8>, label: &[u8], count: u64, bar_count: u64, max: u64) {
    out.extend_from_slice(label);
    if label.len() < 16 {
        out.resize(out.len() + 16 - label.len(), b' ');
    }
    let start = out.len();
    write_decimal_u64(out, count);
    let digits = out.len() - start;
    if digits < 8 {
        out.splice(start..start, std::iter::repeat_n(b' ', 8 - digits));
    }
    out.extend_from_slice(b" |");
    // bpftrace scales the bar in single-precision float and truncates.
    let bar = (bar_count as f32 / max as f32 * BAR_WIDTH as f32) as usize;
    let bar = bar.min(BAR_WIDTH);
    out.resize(out.len() + bar, b'@');
    out.resize(out.len() + BAR_WIDTH - bar, b' ');
    out.extend_from_slice(b"|\n");
}

fn write_hist_rows(out: &mut Vec<u8>, buckets: &[u64], div: u64) {
    let buckets = &buckets[..buckets.len().min(HIST_BUCKETS)];
    let Some((first, last, max)) = nonzero_span(buckets) else {
        return;
    };
    let mut label = Vec::with_capacity(24);
    for (i, &count) in buckets.iter().enumerate().take(last + 1).skip(first) {
        label.clear();
        match i {
            0 => label.extend_from_slice(b"(..., 0)"),
            1 => label.extend_from_slice(b"[0]"),
            2 => label.extend_from_slice(b"[1]"),
            _ => {
                label.push(b'[');
                write_hist_label(&mut label, i - 2);
                label.extend_from_slice(b", ");
                write_hist_label(&mut label, i - 1);
                label.push(b')');
            }
        }
        write_row(out, &label, count / div, count, max);
    }
}

fn write_lhist_rows(out: &mut Vec<u8>, l: &LHist) {
    let n = LHist::range_buckets(l.min, l.max, l.step);
    let buckets = &l.buckets[..l.buckets.len().min(n + 2)];
    let Some((first, last, max)) = nonzero_span(buckets) else {
        return;
    };
    let mut label = Vec::with_capacity(32);
    for (i, &count) in buckets.iter().enumerate().take(last + 1).skip(first) {
        label.clear();
        if i == 0 {
            label.extend_from_slice(b"(..., ");
            write_lhist_label(&mut label, l.min);
            label.push(b')');
        } else if i == n + 1 {
            label.push(b'[');
            write_lhist_label(&mut label, l.max);
            label.extend_from_slice(b", ...)");
        } else {
            // In i128: a range wider than i64 must not overflow here.
            let low = (i as i128 - 1) * i128::from(l.step) + i128::from(l.min);
            let clamp =
                |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
            label.push(b'[');
            write_lhist_label(&mut label, clamp(low));
            label.extend_from_slice(b", ");
            write_lhist_label(&mut label, clamp(low + i128::from(l.step)));
            label.push(b')');
        }
        write_row(out, &label, count, count, max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_text(buckets: Vec<u64>) -> String {
        let mut out = Vec::new();
        write_hist_rows(&mut out, &buckets, 1);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hist_labels_reach_tera() {
        let mut buckets = vec![0; 65];
        buckets[42] = 1; // [1T, 2T)
        buckets[64] = 2; // [4096T, 8192T)
        let text = hist_text(buckets);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 23);
        assert!(lines[0].starts_with("[1T, 2T)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@ "));
        assert_eq!(
            lines[22],
            "[4194304T, 8388608T)       2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"
        );
    }

    #[test]
    fn lhist_labels_use_exact_multiples() {
        let mut out = Vec::new();
        for n in [0, 5, 1024, 1536, 2048, 1 << 20, 3 << 20, -1024] {
            write_lhist_label(&mut out, n);
            out.push(b' ');
        }
        assert_eq!(String::from_utf8(out).unwrap(), "0 5 1K 1536 2K 1M 3M -1K ");
    }

    #[test]
    fn buffers_print_in_three_styles() {
        let mut out = Vec::new();
        write_buf(&mut out, b"ab\x01\xff", BufStyle::KeepAscii);
        out.push(b'|');
        write_buf(&mut out, b"ab", BufStyle::EscapeAll);
        out.push(b'|');
        write_buf(&mut out, b"ab\n", BufStyle::HexPairs);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r"ab\x01\xff|\x61\x62|61 62 0a"
        );
    }

    #[test]
    fn an_empty_kernel_stack_key_prints_as_empty_brackets() {
        use crate::value::{MapDump, MapKind, MapValue};
        let mut out = Vec::new();
        for (name, key) in [
            ("@", vec![Value::Stack(Vec::new())]),
            ("@b", vec![Value::Stack(Vec::new()), Value::u64(1)]),
        ] {
            let map = MapDump {
                name: name.into(),
                kind: MapKind::Count,
                entries: vec![(key, MapValue::Count(57))],
            };
            write_map(&mut out, &map, &MapPrintOptions::default());
        }
        // bpftrace 0.17 (a profile:hz:99 kstack sample taken in user mode).
        assert_eq!(String::from_utf8(out).unwrap(), "@[]: 57\n@b[, 1]: 57\n");
    }

    #[test]
    fn stacks_print_one_frame_per_line() {
        use crate::value::Frame;
        let stack = Value::Stack(vec![
            Frame {
                addr: 0xffff_0010,
                symbol: Some(("do_sys_open".into(), 16)),
            },
            Frame {
                addr: 0xdead,
                symbol: None,
            },
        ]);
        let mut out = Vec::new();
        write_value(&mut out, &stack, 8);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\n        do_sys_open+16\n        0xdead\n"
        );
    }
}
