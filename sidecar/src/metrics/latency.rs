//! Tick latency distributions, fed per tick by the sidecar that reads every tick (the recorder):
//! exchange time → local receive (the market-data path up to this host) and receive → publish (the
//! core's own path: hand-off, normalization, ring write). Exported as Prometheus histograms
//! (see `hist.rs` for why not summaries).
//!
//! [`LatencyHistograms::record`] takes one uncontended lock and records two values into
//! preallocated hdrhistograms: no allocation, tens of nanoseconds. A scrape holds the lock only
//! while it counts the buckets.

use std::sync::{Mutex, PoisonError};

use qilin_shm::{TickRecord, quality};

use super::hist::Hist;

/// `le` bounds of `qilin_latency_exchange_to_receive_seconds`: exchange timestamps have 500 ms
/// (SHFE) to 1 ms resolution, so this path lives in milliseconds.
pub const EXCHANGE_TO_RECEIVE_BOUNDS_S: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// `le` bounds of `qilin_latency_receive_to_publish_seconds`: the core's path, sub-microsecond to
/// a stalled millisecond.
pub const RECEIVE_TO_PUBLISH_BOUNDS_S: [f64; 16] =
    [1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 0.1, 1.0];

/// Why a tick's latency was not recorded on a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The later timestamp is before the earlier (clocks disagree: exchange time is the exchange's
    /// clock, truncated to its resolution).
    Negative,
    /// A snapshot pushed outside trading hours (flagged stale): its exchange time is old on purpose.
    StaleSnapshot,
    /// A timestamp is missing (0).
    MissingTime,
}

impl Skip {
    /// Every reason, in label order.
    pub const ALL: [Skip; 3] = [Skip::Negative, Skip::StaleSnapshot, Skip::MissingTime];

    /// The `reason` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Skip::Negative => "negative",
            Skip::StaleSnapshot => "stale_snapshot",
            Skip::MissingTime => "missing_time",
        }
    }
}

/// One latency path: its distribution and the ticks left out of it, by [`Skip`] reason.
#[derive(Clone, Debug, Default)]
pub struct Path {
    /// The distribution, ns.
    pub hist: Hist,
    /// Ticks not recorded, indexed like [`Skip::ALL`].
    pub skipped: [u64; 3],
}

impl Path {
    fn record(&mut self, from_ns: i64, to_ns: i64) {
        if from_ns == 0 || to_ns == 0 {
            self.skipped[Skip::MissingTime as usize] += 1;
        } else if to_ns < from_ns {
            self.skipped[Skip::Negative as usize] += 1;
        } else {
            self.hist.record((to_ns - from_ns) as u64);
        }
    }
}

/// Both paths.
#[derive(Clone, Debug, Default)]
pub struct Paths {
    /// `exchange_time_ns` → `receive_ns`.
    pub exchange_to_receive: Path,
    /// `receive_ns` → `publish_ns`.
    pub receive_to_publish: Path,
}

impl Paths {
    #[inline]
    fn record(&mut self, tick: &TickRecord) {
        if tick.quality & quality::STALE_SNAPSHOT != 0 {
            self.exchange_to_receive.skipped[Skip::StaleSnapshot as usize] += 1;
        } else {
            self.exchange_to_receive.record(tick.exchange_time_ns, tick.receive_ns);
        }
        self.receive_to_publish.record(tick.receive_ns, tick.publish_ns);
    }
}

/// The latency distributions of every tick recorded, shared between the sidecar's read loop
/// (which calls [`record`](Self::record)) and the metrics server. Put it in an `Arc`.
#[derive(Debug, Default)]
pub struct LatencyHistograms {
    paths: Mutex<Paths>,
}

impl LatencyHistograms {
    /// Empty distributions (allocated here, never again).
    pub fn new() -> LatencyHistograms {
        LatencyHistograms::default()
    }

    /// Records one tick's two latencies (about 55 ns on this project's machines, lock included).
    /// Stale snapshots are left out of exchange → receive.
    #[inline]
    pub fn record(&self, tick: &TickRecord) {
        self.paths.lock().unwrap_or_else(PoisonError::into_inner).record(tick);
    }

    /// Records a batch of ticks under one lock (for a loop that reads the ring in batches).
    pub fn record_all<'a>(&self, ticks: impl IntoIterator<Item = &'a TickRecord>) {
        let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        for tick in ticks {
            paths.record(tick);
        }
    }

    /// A copy of the distributions (for tests and tools; the exporter reads under the lock).
    pub fn snapshot(&self) -> Paths {
        self.paths.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs `f` on the distributions under the lock.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Paths) -> T) -> T {
        f(&self.paths.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(exchange: i64, receive: i64, publish: i64, flags: u32) -> TickRecord {
        let mut t = TickRecord::ZERO;
        (t.exchange_time_ns, t.receive_ns, t.publish_ns, t.quality) = (exchange, receive, publish, flags);
        t
    }

    #[test]
    fn both_paths_are_recorded_and_odd_ticks_counted() {
        let h = LatencyHistograms::new();
        h.record_all(&[
            tick(1_000_000_000, 1_003_000_000, 1_003_000_400, 0),
            tick(1_000_000_000, 1_250_000_000, 1_250_001_000, 0),
        ]);
        h.record(&tick(2_000_000_000, 1_999_000_000, 1_999_000_300, 0)); // exchange clock ahead
        h.record(&tick(5, 3_000_000_000, 3_000_000_200, quality::STALE_SNAPSHOT));
        h.record(&tick(0, 4_000_000_000, 0, 0));
        let p = h.snapshot();
        assert_eq!(p.exchange_to_receive.hist.count(), 2);
        assert_eq!(p.exchange_to_receive.skipped, [1, 1, 1]);
        assert_eq!(p.receive_to_publish.hist.count(), 4);
        assert_eq!(p.receive_to_publish.skipped, [0, 0, 1]);
        let b = p.exchange_to_receive.hist.buckets(&EXCHANGE_TO_RECEIVE_BOUNDS_S);
        assert_eq!(b[2], (0.005, 1), "3 ms");
        // 250 ms sits on a bound: placed by its highest equivalent value, it counts as above it.
        assert_eq!((b[7], b[8]), ((0.25, 0), (0.5, 1)), "250 ms");
        let b = p.receive_to_publish.hist.buckets(&RECEIVE_TO_PUBLISH_BOUNDS_S);
        assert_eq!(b[1], (2.5e-7, 1), "200 ns");
        assert_eq!(b[2], (5e-7, 2), "300 and 400 ns");
        assert_eq!(b[3], (1e-6, 1), "1 µs");
    }
}
