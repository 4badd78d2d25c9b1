//! One latency distribution: an hdrhistogram (3 significant digits, 1 ns … 1 h) plus the exact sum,
//! exported as a Prometheus histogram with fixed `le` bounds.
//!
//! Why a Prometheus histogram and not a summary: the hdrhistogram accumulates since the process
//! started, so quantiles taken from it would be "since start" figures that hide a bad last five
//! minutes and cannot be added up across feeds or hosts. Cumulative bucket counts can:
//! `histogram_quantile(0.99, rate(qilin_latency_receive_to_publish_seconds_bucket[5m]))` is the
//! p99 of the last five minutes. (prometheus-client has no summary type either.) The hdrhistogram
//! still earns its place: every bucket count is computed at scrape time from full-resolution data,
//! so the bounds can change without touching the recording path.

use hdrhistogram::Histogram;

/// Highest value tracked, ns (larger ones are recorded as this).
const MAX_NS: u64 = 3_600_000_000_000;

/// A distribution of durations in nanoseconds.
#[derive(Debug, Clone)]
pub struct Hist {
    hist: Histogram<u64>,
    sum_ns: f64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    /// An empty distribution (allocates its buckets once, about 250 KiB).
    pub fn new() -> Hist {
        Hist { hist: Histogram::new_with_bounds(1, MAX_NS, 3).expect("static bounds are valid"), sum_ns: 0.0 }
    }

    /// Records one duration (no allocation).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns);
        self.sum_ns += ns as f64;
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Sum of the recorded values in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns / 1e9
    }

    /// The largest recorded value in seconds (0 when empty).
    pub fn max_seconds(&self) -> f64 {
        self.hist.max() as f64 / 1e9
    }

    /// The value at quantile `q` (0…1) in seconds (0 when empty); for tests and tools.
    pub fn quantile_seconds(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1e9
    }

    /// Counts per bucket (not cumulative; the encoder accumulates and adds `+Inf`): for each
    /// upper bound in `bounds_s` (seconds, increasing), how many values fall above the previous
    /// bound and at or below this one. A value is placed by the highest value equivalent to it at
    /// the histogram's precision (0.1 %), so no latency is ever reported as smaller than it was.
    pub fn buckets(&self, bounds_s: &[f64]) -> Vec<(f64, u64)> {
        let mut out: Vec<(f64, u64)> = bounds_s.iter().map(|b| (*b, 0)).collect();
        for v in self.hist.iter_recorded() {
            let value_s = v.value_iterated_to() as f64 / 1e9;
            if let Some(bucket) = out.iter_mut().find(|(bound, _)| value_s <= *bound) {
                bucket.1 += v.count_at_value();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_values_by_upper_bound() {
        let mut h = Hist::new();
        for ns in [500, 900, 1_500, 40_000, 2_000_000_000, 7_200_000_000_000] {
            h.record(ns);
        }
        assert_eq!(h.count(), 6);
        let b = h.buckets(&[1e-6, 1e-5, 1e-3, 1.0]);
        assert_eq!(b, vec![(1e-6, 2), (1e-5, 1), (1e-3, 1), (1.0, 0)]);
        // The two above 1 s land in +Inf (count − sum of buckets); the sum is exact.
        assert!((h.sum_seconds() - (7_202.000_042_9)).abs() < 1e-6, "{}", h.sum_seconds());
        assert!(h.quantile_seconds(1.0) >= 3_600.0);
    }
}
