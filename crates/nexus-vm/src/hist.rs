//! Lock-free log2 histograms, printed the way bpftrace prints `hist()`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets: one for 0, then one per power of two up to 2^63.
pub const LOG2_BUCKETS: usize = 65;

/// The bucket of `v`: 0 for 0, else `k` such that `2^(k-1) <= v < 2^k`.
#[must_use]
pub const fn log2_bucket(v: u64) -> usize {
    (64 - v.leading_zeros()) as usize
}

/// A histogram many threads record into at once.
#[derive(Debug)]
pub struct Log2Histogram {
    buckets: [AtomicU64; LOG2_BUCKETS],
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Log2Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Log2Histogram {
    pub fn record(&self, v: u64) {
        self.buckets[log2_bucket(v)].fetch_add(1, Ordering::Relaxed);
    }
    #[must_use]
    pub fn snapshot(&self) -> [u64; LOG2_BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }
}

fn human(v: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (1 << 60, "E"),
        (1 << 50, "P"),
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (scale, unit) in UNITS {
        if v >= scale && v.is_multiple_of(scale) {
            return format!("{}{unit}", v / scale);
        }
    }
    v.to_string()
}

/// Render buckets as bpftrace does: `[lo, hi)   count |@@@@     |`, from the
/// first to the last non-empty bucket, bars scaled to 52 columns.
#[must_use]
pub fn format_log2_hist(buckets: &[u64]) -> String {
    let mut out = String::new();
    let Some(first) = buckets.iter().position(|c| *c != 0) else {
        return out;
    };
    let last = buckets.iter().rposition(|c| *c != 0).unwrap_or(first);
    let max = buckets.iter().copied().max().unwrap_or(1).max(1);
    for (i, &count) in buckets.iter().enumerate().take(last + 1).skip(first) {
        let label = match i {
            0 => "[0]".to_string(),
            1 => "[1]".to_string(),
            _ => {
                let lo = 1u64 << (i - 1);
                let hi = if i == 64 {
                    "...".to_string()
                } else {
                    human(1u64 << i)
                };
                format!("[{}, {hi})", human(lo))
            }
        };
        let bar = (count as u128 * 52 / max as u128) as usize;
        let _ = writeln!(out, "{label:<13}{count:>8} |{:<52}|", "@".repeat(bar));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_rendering() {
        assert_eq!(log2_bucket(0), 0);
        assert_eq!(log2_bucket(1), 1);
        assert_eq!(log2_bucket(3), 2);
        assert_eq!(log2_bucket(1024), 11);
        assert_eq!(log2_bucket(u64::MAX), 64);
        let h = Log2Histogram::default();
        for v in [1, 5, 6, 7, 1500] {
            h.record(v);
        }
        let text = format_log2_hist(&h.snapshot());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 11, "{text}");
        assert!(lines[0].starts_with("[1]"), "{text}");
        assert!(
            lines[2].starts_with("[4, 8)") && lines[2].contains(" 3 |"),
            "{text}"
        );
        assert!(lines[10].starts_with("[1K, 2K)"), "{text}");
    }
}
