//! One measured distribution (a series), its percentiles, and how children hand theirs back: a
//! JSON line of `[value, count]` pairs, so the parent merges exact histograms, not summaries.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// The percentiles every series reports, with the JSON key of each (`max` last).
pub const PERCENTILES: [(&str, f64); 6] =
    [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999), ("max", 1.0)];

/// A measured series.
#[derive(Debug)]
pub struct Series {
    /// Stable name (`segment/1_reader`, `e2e/python`, `e2e/python_batch` …): the JSON key, the plot's legend.
    pub name: String,
    /// One line: what was timed, from where to where.
    pub what: String,
    /// Latencies in ns (warm-up already excluded).
    pub hist: Histogram<u64>,
    /// Loss, pinning, anything a reader of the figure must know.
    pub notes: Vec<String>,
    /// Whether it goes on the latency plot (the clock-read and per-publish costs do too: they are
    /// in ns and share the axis).
    pub plot: bool,
}

impl Series {
    /// A series with no notes, plotted.
    pub fn new(name: impl Into<String>, what: impl Into<String>, hist: Histogram<u64>) -> Series {
        Series { name: name.into(), what: what.into(), hist, notes: Vec::new(), plot: true }
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Series {
        self.notes.push(note.into());
        self
    }

    /// The value at each of [`PERCENTILES`], ns.
    pub fn percentiles(&self) -> [u64; 6] {
        percentiles(&self.hist)
    }
}

/// The value at each of [`PERCENTILES`] (0 for an empty histogram).
pub fn percentiles(h: &Histogram<u64>) -> [u64; 6] {
    PERCENTILES.map(|(_, q)| {
        if h.is_empty() {
            0
        } else if q >= 1.0 {
            h.max()
        } else {
            h.value_at_quantile(q)
        }
    })
}

/// A histogram as `[[value, count], …]` (each recorded bucket once).
pub fn histogram_to_json(h: &Histogram<u64>) -> Value {
    let pairs: Vec<Value> = h.iter_recorded().map(|v| json!([v.value_iterated_to(), v.count_at_value()])).collect();
    Value::Array(pairs)
}

/// Adds `[[value, count], …]` (as written by [`histogram_to_json`]) into `h`; `false` if malformed.
pub fn merge_json(h: &mut Histogram<u64>, pairs: &Value) -> bool {
    let Some(pairs) = pairs.as_array() else { return false };
    for pair in pairs {
        let (Some(v), Some(c)) = (pair.get(0).and_then(Value::as_u64), pair.get(1).and_then(Value::as_u64)) else {
            return false;
        };
        if h.record_n(v.max(1), c).is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::new_histogram;

    #[test]
    fn a_histogram_survives_the_json_round_trip() {
        let mut h = new_histogram();
        for v in [1u64, 70, 71, 180, 180, 2_000, 9_999_999] {
            h.record(v).unwrap();
        }
        let mut back = new_histogram();
        assert!(merge_json(&mut back, &histogram_to_json(&h)));
        assert_eq!(back.len(), h.len());
        assert_eq!(percentiles(&back), percentiles(&h));
        let p = percentiles(&h);
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
    }

    #[test]
    fn malformed_pairs_are_refused() {
        let mut h = new_histogram();
        assert!(!merge_json(&mut h, &json!([[1]])));
        assert!(!merge_json(&mut h, &json!({"a": 1})));
    }
}
