//! The decoded value model: what the record decoder produces from ring-buffer
//! payloads and map dumps, and what the sinks print.
//!
//! The model is deliberately independent of the compiler's type system and of
//! any backend: a value carries exactly what printing needs (integer width and
//! signedness for C `printf` truncation, raw bytes for strings that need not be
//! UTF-8, already-symbolised stack frames).
//!
//! Aggregations ([`MapValue`]) follow bpftrace's semantics, including its
//! bucket indexing for `hist` and `lhist`, so that the text printer can label
//! rows the way bpftrace 0.17 does. Per-CPU slots are combined with
//! [`MapValue::merge`] / [`merge_per_cpu`].

use std::sync::Arc;

/// Number of buckets of a `hist()` value: index 0 counts negative values,
/// index 1 counts zero, index `k + 2` counts values in `[2^k, 2^(k+1))` for
/// `k` in `0..=62` (every positive `i64`).
pub const HIST_BUCKETS: usize = 65;

/// One decoded scalar or compound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A signed integer of `bits` width (8, 16, 32 or 64); `value` is already
    /// sign-extended.
    Signed {
        /// The value.
        value: i64,
        /// Width in bits as the program declared it.
        bits: u8,
    },
    /// An unsigned integer of `bits` width (8, 16, 32 or 64).
    Unsigned {
        /// The value.
        value: u64,
        /// Width in bits as the program declared it.
        bits: u8,
    },
    /// A string: the bytes before the first NUL. Not necessarily UTF-8 (paths
    /// and comm names are arbitrary bytes). Decoders that reuse a `Vec<Value>`
    /// per event can refill this vector in place to avoid allocating.
    Str(Vec<u8>),
    /// A `buf()` byte buffer; printed as bpftrace does, printable ASCII kept
    /// and every other byte as `\xNN`.
    Buf(Vec<u8>),
    /// A tuple `(a, b, …)`.
    Tuple(Vec<Value>),
    /// A fixed-size array `[a,b,…]`.
    Array(Vec<Value>),
    /// A record (struct) with named fields, printed `{ .a = 1, .b = 2 }`.
    Record(Vec<(String, Value)>),
    /// A kernel or user stack (`kstack`/`ustack`), innermost frame first.
    Stack(Vec<Frame>),
    /// A single symbolised address (`ksym()`/`usym()`).
    Sym(Symbol),
    /// A wall-clock timestamp from `strftime()`, formatted lazily with its
    /// format string (`%f` = microseconds, bpftrace's extension).
    Timestamp {
        /// Nanoseconds since the Unix epoch (the decoder adds the boot time).
        unix_nanos: i64,
        /// The strftime format given to `strftime()`.
        format: Arc<str>,
    },
}

impl Value {
    /// A signed 64-bit integer.
    pub fn i64(value: i64) -> Self {
        Value::Signed { value, bits: 64 }
    }

    /// An unsigned 64-bit integer.
    pub fn u64(value: u64) -> Self {
        Value::Unsigned { value, bits: 64 }
    }

    /// A string from UTF-8 text.
    pub fn str(text: &str) -> Self {
        Value::Str(text.as_bytes().to_vec())
    }

    /// The integer's bit pattern as C varargs would carry it (sign-extended
    /// to 64 bits), or `None` for non-integers.
    pub fn as_raw_u64(&self) -> Option<u64> {
        match *self {
            Value::Signed { value, .. } => Some(value as u64),
            Value::Unsigned { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A short type name used by the JSON sink's typed arguments
    /// (`i32`, `u64`, `string`, `buffer`, `tuple`, `stack`, …).
    pub fn type_name(&self) -> &'static str {
        match *self {
            Value::Signed { bits, .. } => match bits {
                8 => "i8",
                16 => "i16",
                32 => "i32",
                _ => "i64",
            },
            Value::Unsigned { bits, .. } => match bits {
                8 => "u8",
                16 => "u16",
                32 => "u32",
                _ => "u64",
            },
            Value::Str(_) => "string",
            Value::Buf(_) => "buffer",
            Value::Tuple(_) => "tuple",
            Value::Array(_) => "array",
            Value::Record(_) => "record",
            Value::Stack(_) => "stack",
            Value::Sym(_) => "symbol",
            Value::Timestamp { .. } => "timestamp",
        }
    }
}

/// One frame of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The instruction address.
    pub addr: u64,
    /// The symbol containing `addr` and the offset into it, when resolved.
    pub symbol: Option<(String, u64)>,
}

/// A symbolised address (`ksym`, `usym`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// The address looked up.
    pub addr: u64,
    /// The symbol name, or `None` when it did not resolve (printed as hex).
    pub name: Option<String>,
}

/// A `hist()` value: log2 buckets indexed as [`hist_bucket`] computes.
///
/// Equality ignores trailing zero buckets (a shorter vector means zeros).
#[derive(Debug, Clone, Eq, Default)]
pub struct Hist {
    /// Counts per bucket; shorter than [`HIST_BUCKETS`] means trailing zeros.
    pub buckets: Vec<u64>,
}

impl Hist {
    /// Adds one observation of `value`.
    pub fn record(&mut self, value: i64) {
        let idx = hist_bucket(value);
        if self.buckets.len() <= idx {
            self.buckets.resize(idx + 1, 0);
        }
        self.buckets[idx] += 1;
    }
}

/// An `lhist(value, min, max, step)` value.
///
/// Bucket 0 counts values below `min`, bucket `i` in `1..=n` counts values in
/// `[min + (i-1)*step, min + i*step)`, and bucket `n + 1` counts values at or
/// above `max`, where `n = (max - min) / step`.
///
/// Equality ignores trailing zero buckets (a shorter vector means zeros).
#[derive(Debug, Clone, Eq)]
pub struct LHist {
    /// Lower bound of the linear range.
    pub min: i64,
    /// Upper bound of the linear range.
    pub max: i64,
    /// Bucket width (> 0).
    pub step: i64,
    /// Counts per bucket; `n + 2` entries (shorter means trailing zeros).
    pub buckets: Vec<u64>,
}

impl LHist {
    /// An empty lhist. `step` must be > 0 and `max > min` (the compiler
    /// checks the literals; bpftrace also caps the range at 1000 buckets).
    /// Buckets are allocated as values arrive.
    pub fn new(min: i64, max: i64, step: i64) -> Self {
        LHist {
            min,
            max,
            step,
            buckets: Vec::new(),
        }
    }

    /// Number of in-range buckets, `(max - min) / step` (the under- and
    /// overflow buckets excluded); 0 for a degenerate range.
    pub fn range_buckets(min: i64, max: i64, step: i64) -> usize {
        if step <= 0 || max <= min {
            return 0;
        }
        usize::try_from((i128::from(max) - i128::from(min)) / i128::from(step)).unwrap_or(0)
    }

    /// Adds one observation of `value`.
    pub fn record(&mut self, value: i64) {
        let idx = lhist_bucket(value, self.min, self.max, self.step);
        if self.buckets.len() <= idx {
            self.buckets.resize(idx + 1, 0);
        }
        self.buckets[idx] += 1;
    }
}

/// The bucket index of `value` in a `hist()`, as bpftrace defines it:
/// 0 for negative values, 1 for zero, `2 + floor(log2(value))` otherwise.
///
/// bpftrace 0.17's generated code only examines 32 bits, so it files every
/// value ≥ 2^32 under `[2G, 4G)`; we use the full 64 bits (bpftrace ≥ 0.18
/// does the same).
pub fn hist_bucket(value: i64) -> usize {
    if value < 0 {
        0
    } else if value == 0 {
        1
    } else {
        2 + (63 - value.leading_zeros() as usize)
    }
}

/// The bucket index of `value` in an `lhist(min, max, step)`, as bpftrace
/// defines it: 0 below `min`, the overflow bucket above `max`, else
/// `1 + (value - min) / step`. Values equal to `max` fall in the overflow
/// bucket whenever `max - min` is a multiple of `step`.
pub fn lhist_bucket(value: i64, min: i64, max: i64, step: i64) -> usize {
    let n = LHist::range_buckets(min, max, step);
    if value < min {
        0
    } else if value > max {
        n + 1
    } else {
        // value - min is in 0..=(max - min) here, and the result in 1..=n+1.
        let offset = (value as i128 - min as i128) / step.max(1) as i128;
        (1 + offset as usize).min(n + 1)
    }
}

/// The value stored under one key of a map, after per-CPU merging.
#[derive(Debug, Clone, PartialEq)]
pub enum MapValue {
    /// `count()`.
    Count(u64),
    /// `sum()`.
    Sum(i64),
    /// `min()`.
    Min(i64),
    /// `max()`.
    Max(i64),
    /// `avg()`: bpftrace keeps the count and the total and prints
    /// `total / count` (integer division, truncated toward zero).
    Avg {
        /// Number of observations.
        count: u64,
        /// Sum of the observations.
        total: i64,
    },
    /// `stats()`: printed `count N, average A, total T`.
    Stats {
        /// Number of observations.
        count: u64,
        /// Sum of the observations.
        total: i64,
    },
    /// `hist()`.
    Hist(Hist),
    /// `lhist()`.
    LHist(LHist),
    /// A plain assignment `@m[k] = v` (integer, string, tuple, stack, …).
    Value(Value),
}

/// Which kind of values a map holds. An empty map still prints (a blank line
/// in text), and how depends on its kind, so a dump carries it explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// `count()`.
    Count,
    /// `sum()`.
    Sum,
    /// `min()`.
    Min,
    /// `max()`.
    Max,
    /// `avg()`.
    Avg,
    /// `stats()`.
    Stats,
    /// `hist()`.
    Hist,
    /// `lhist()`.
    LHist,
    /// Plain values.
    Value,
}

impl MapValue {
    /// The kind of this value.
    pub fn kind(&self) -> MapKind {
        match self {
            MapValue::Count(_) => MapKind::Count,
            MapValue::Sum(_) => MapKind::Sum,
            MapValue::Min(_) => MapKind::Min,
            MapValue::Max(_) => MapKind::Max,
            MapValue::Avg { .. } => MapKind::Avg,
            MapValue::Stats { .. } => MapKind::Stats,
            MapValue::Hist(_) => MapKind::Hist,
            MapValue::LHist(_) => MapKind::LHist,
            MapValue::Value(_) => MapKind::Value,
        }
    }

    /// Folds another CPU's slot for the same key into this one: counts,
    /// sums, averages and stats add; min and max keep the extreme; histograms
    /// add bucket by bucket. Plain values cannot be merged (a per-CPU map of
    /// plain values is a compiler bug).
    ///
    /// The caller passes only slots that were written: a per-CPU hash zeroes
    /// the slots of CPUs that never touched a key, and a zero would be a
    /// wrong minimum or maximum.
    pub fn merge(&mut self, other: &MapValue) -> Result<(), MergeError> {
        match (self, other) {
            (MapValue::Count(a), MapValue::Count(b)) => *a = a.wrapping_add(*b),
            (MapValue::Sum(a), MapValue::Sum(b)) => *a = a.wrapping_add(*b),
            (MapValue::Min(a), MapValue::Min(b)) => *a = (*a).min(*b),
            (MapValue::Max(a), MapValue::Max(b)) => *a = (*a).max(*b),
            (MapValue::Avg { count, total }, MapValue::Avg { count: c, total: t })
            | (MapValue::Stats { count, total }, MapValue::Stats { count: c, total: t }) => {
                *count = count.wrapping_add(*c);
                *total = total.wrapping_add(*t);
            }
            (MapValue::Hist(a), MapValue::Hist(b)) => add_buckets(&mut a.buckets, &b.buckets),
            (MapValue::LHist(a), MapValue::LHist(b)) => {
                if (a.min, a.max, a.step) != (b.min, b.max, b.step) {
                    return Err(MergeError::LHistShape {
                        left: (a.min, a.max, a.step),
                        right: (b.min, b.max, b.step),
                    });
                }
                add_buckets(&mut a.buckets, &b.buckets);
            }
            (this, other) => {
                return Err(MergeError::Kinds {
                    left: this.kind(),
                    right: other.kind(),
                });
            }
        }
        Ok(())
    }
}

/// The buckets without their trailing zeros.
fn significant(buckets: &[u64]) -> &[u64] {
    let len = buckets.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &buckets[..len]
}

impl PartialEq for Hist {
    fn eq(&self, other: &Self) -> bool {
        significant(&self.buckets) == significant(&other.buckets)
    }
}

impl PartialEq for LHist {
    fn eq(&self, other: &Self) -> bool {
        (self.min, self.max, self.step) == (other.min, other.max, other.step)
            && significant(&self.buckets) == significant(&other.buckets)
    }
}

fn add_buckets(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.wrapping_add(*b);
    }
}

/// Combines the written per-CPU slots of one key into a single value
/// (see [`MapValue::merge`]). `None` when no slot was written.
pub fn merge_per_cpu<I>(slots: I) -> Result<Option<MapValue>, MergeError>
where
    I: IntoIterator<Item = MapValue>,
{
    let mut slots = slots.into_iter();
    let Some(mut acc) = slots.next() else {
        return Ok(None);
    };
    for slot in slots {
        acc.merge(&slot)?;
    }
    Ok(Some(acc))
}

/// Why two map values could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The slots hold different aggregation kinds.
    #[error("cannot merge per-CPU map values of different kinds ({left:?} and {right:?})")]
    Kinds {
        /// Kind of the accumulated value.
        left: MapKind,
        /// Kind of the slot being merged in.
        right: MapKind,
    },
    /// Two lhist slots have different (min, max, step).
    #[error(
        "cannot merge lhist slots with different ranges (min, max, step) {left:?} and {right:?}"
    )]
    LHistShape {
        /// Range of the accumulated value.
        left: (i64, i64, i64),
        /// Range of the slot being merged in.
        right: (i64, i64, i64),
    },
}

/// A whole map read at one moment, ready to print.
///
/// Entries may be in any order: printing sorts them the way bpftrace does.
#[derive(Debug, Clone, PartialEq)]
pub struct MapDump {
    /// The map's name including `@` (`@` alone for the anonymous map).
    pub name: String,
    /// What the map aggregates; needed to print an empty map.
    pub kind: MapKind,
    /// Key parts (empty for a key-less map) and the merged value.
    pub entries: Vec<(Vec<Value>, MapValue)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_bucket_matches_bpftrace_indexing() {
        assert_eq!(hist_bucket(-5), 0);
        assert_eq!(hist_bucket(0), 1);
        assert_eq!(hist_bucket(1), 2);
        assert_eq!(hist_bucket(2), 3);
        assert_eq!(hist_bucket(3), 3);
        assert_eq!(hist_bucket(5), 4);
        assert_eq!(hist_bucket(1023), 11);
        assert_eq!(hist_bucket(1024), 12);
        assert_eq!(hist_bucket(1 << 40), 42);
        assert_eq!(hist_bucket(i64::MAX), HIST_BUCKETS - 1);
    }

    #[test]
    fn lhist_bucket_matches_bpftrace_indexing() {
        // lhist(x, 0, 10, 2): 5 range buckets, overflow index 6.
        assert_eq!(lhist_bucket(-3, 0, 10, 2), 0);
        assert_eq!(lhist_bucket(0, 0, 10, 2), 1);
        assert_eq!(lhist_bucket(5, 0, 10, 2), 3);
        assert_eq!(lhist_bucket(9, 0, 10, 2), 5);
        assert_eq!(lhist_bucket(10, 0, 10, 2), 6);
        assert_eq!(lhist_bucket(500, 0, 10, 2), 6);
        // max - min not a multiple of step: 3 range buckets, 9 overflows.
        assert_eq!(lhist_bucket(9, 0, 10, 3), 4);
        assert_eq!(lhist_bucket(8, 0, 10, 3), 3);
    }

    #[test]
    fn per_cpu_counts_and_sums_add() {
        let merged = merge_per_cpu([MapValue::Count(3), MapValue::Count(4), MapValue::Count(0)]);
        assert_eq!(merged, Ok(Some(MapValue::Count(7))));
        let merged = merge_per_cpu([MapValue::Sum(-3), MapValue::Sum(10)]);
        assert_eq!(merged, Ok(Some(MapValue::Sum(7))));
        assert_eq!(merge_per_cpu(Vec::new()), Ok(None));
    }

    #[test]
    fn per_cpu_min_max_keep_extremes() {
        let merged = merge_per_cpu([MapValue::Min(5), MapValue::Min(-2), MapValue::Min(9)]);
        assert_eq!(merged, Ok(Some(MapValue::Min(-2))));
        let merged = merge_per_cpu([MapValue::Max(-5), MapValue::Max(-2), MapValue::Max(-9)]);
        assert_eq!(merged, Ok(Some(MapValue::Max(-2))));
    }

    #[test]
    fn per_cpu_avg_and_stats_add_both_fields() {
        let merged = merge_per_cpu([
            MapValue::Avg {
                count: 2,
                total: 10,
            },
            MapValue::Avg {
                count: 3,
                total: -4,
            },
        ]);
        assert_eq!(merged, Ok(Some(MapValue::Avg { count: 5, total: 6 })));
        let merged = merge_per_cpu([
            MapValue::Stats { count: 1, total: 1 },
            MapValue::Stats { count: 1, total: 2 },
        ]);
        assert_eq!(merged, Ok(Some(MapValue::Stats { count: 2, total: 3 })));
    }

    #[test]
    fn per_cpu_histograms_add_bucketwise() {
        let a = MapValue::Hist(Hist {
            buckets: vec![1, 0, 2],
        });
        let b = MapValue::Hist(Hist {
            buckets: vec![0, 1, 1, 0, 5],
        });
        let merged = merge_per_cpu([a, b]);
        assert_eq!(
            merged,
            Ok(Some(MapValue::Hist(Hist {
                buckets: vec![1, 1, 3, 0, 5]
            })))
        );

        let mut a = LHist::new(0, 10, 2);
        a.record(3);
        let mut b = LHist::new(0, 10, 2);
        b.record(3);
        b.record(-1);
        let merged = merge_per_cpu([MapValue::LHist(a), MapValue::LHist(b)]);
        assert_eq!(
            merged,
            Ok(Some(MapValue::LHist(LHist {
                min: 0,
                max: 10,
                step: 2,
                buckets: vec![1, 0, 2],
            })))
        );
    }

    #[test]
    fn histogram_equality_ignores_trailing_zeros() {
        assert_eq!(
            Hist {
                buckets: vec![0, 2, 0, 0]
            },
            Hist {
                buckets: vec![0, 2]
            }
        );
        assert_ne!(
            Hist {
                buckets: vec![0, 2]
            },
            Hist { buckets: vec![2] }
        );
        let mut a = LHist::new(0, 10, 2);
        a.record(1);
        let mut b = LHist::new(0, 10, 2);
        b.buckets = vec![0, 1, 0, 0, 0, 0, 0];
        assert_eq!(a, b);
        b.max = 20;
        assert_ne!(a, b);
    }

    #[test]
    fn merging_mismatched_slots_is_an_error() {
        let err = merge_per_cpu([MapValue::Count(1), MapValue::Sum(1)]);
        assert_eq!(
            err,
            Err(MergeError::Kinds {
                left: MapKind::Count,
                right: MapKind::Sum
            })
        );
        let err = merge_per_cpu([
            MapValue::LHist(LHist::new(0, 10, 2)),
            MapValue::LHist(LHist::new(0, 20, 2)),
        ]);
        assert!(matches!(err, Err(MergeError::LHistShape { .. })));
        let err = MapValue::Value(Value::i64(1)).merge(&MapValue::Value(Value::i64(2)));
        assert!(err.is_err());
    }
}
