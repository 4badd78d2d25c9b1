//! The journal as the metrics server sees it: cumulative totals, whether it can be written,
//! whether its disk is full, and fsync durations. Any [`JournalSource`] can feed it:
//!
//! - the recorder's own shared stats, `qilin_sidecar::recorder::SharedStats` (read at each scrape;
//!   its impl is in the recorder, `recorder/journal_source.rs`): nothing to call from the recorder's loop, fsync latency
//!   as the last and longest values;
//! - a [`JournalMetrics`] mailbox the embedding code fills, which also keeps a histogram of every
//!   fsync it is told about:
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use qilin_sidecar::metrics::{JournalMetrics, JournalTotals};
//!
//! let journal = Arc::new(JournalMetrics::new());
//! assert!(!journal.is_writable(), "not writable until the recorder says so");
//! journal.set_writable(true); // the journal file is open
//! journal.observe_fsync(Duration::from_micros(800)); // after each fdatasync
//! journal.set_totals(JournalTotals { records: 64, bytes: 24_576, blocks: 1, fsyncs: 1, ..Default::default() });
//! journal.set_disk_full(true); // ENOSPC: paused, retrying
//! assert!(!journal.is_writable());
//! ```

use std::{
    fmt,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use super::hist::Hist;

/// `le` bounds of `qilin_journal_fsync_duration_seconds`.
pub const FSYNC_BOUNDS_S: [f64; 17] =
    [5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The journal's cumulative counts since the recorder started (each exported as a counter, so
/// they must never go down within a process; a restart resets them, which Prometheus handles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalTotals {
    /// Bytes written to journal files.
    pub bytes: u64,
    /// Tick records written (in written blocks).
    pub records: u64,
    /// Gap records written.
    pub gap_records: u64,
    /// Sequences covered by gap records.
    pub gap_sequences: u64,
    /// Blocks written.
    pub blocks: u64,
    /// fdatasync calls.
    pub fsyncs: u64,
    /// Journal files created.
    pub files: u64,
    /// Write, sync and open failures (disk full included).
    pub errors: u64,
    /// Times the disk filled up (one per episode).
    pub disk_full_events: u64,
    /// Last sequence in a written block (a gauge).
    pub position: u64,
    /// Last sequence fdatasynced (a gauge).
    pub synced: u64,
}

/// One reading of a journal, handed to the exporter under the source's lock.
#[derive(Debug)]
pub struct JournalReading<'a> {
    /// Cumulative totals.
    pub totals: JournalTotals,
    /// The journal file is open and the last write succeeded.
    pub writable: bool,
    /// The disk is full: recording is paused and retried.
    pub disk_full: bool,
    /// The last failure, if the source knows it (shown by `/readyz`).
    pub last_error: Option<&'a str>,
    /// When the source was last refreshed, UTC ns, if it is refreshed periodically (`/readyz`
    /// fails when that is older than `sidecar_stale_ms`: the recorder's loop is stuck).
    pub updated_ns: Option<i64>,
    /// Duration of the last fdatasync, seconds (0 before the first).
    pub last_fsync_s: f64,
    /// Longest fdatasync, seconds.
    pub max_fsync_s: f64,
    /// Every fdatasync's duration, if the source keeps them.
    pub fsync: Option<&'a Hist>,
}

/// Something that can tell the exporter about a journal. Implemented by [`JournalMetrics`] and by
/// the recorder's `Mutex<Stats>` (so `Recorder::stats()` can be handed over as it is).
pub trait JournalSource: fmt::Debug + Send + Sync + 'static {
    /// Calls `f` with a consistent reading (under the source's lock: keep `f` short).
    fn read(&self, f: &mut dyn FnMut(&JournalReading<'_>));
}

#[derive(Debug, Default)]
struct State {
    totals: JournalTotals,
    writable: bool,
    disk_full: bool,
    last_fsync_ns: u64,
    fsync: Hist,
}

/// The journal's state as the recorder reports it. Create one, give an `Arc` clone to the
/// exporter, and update it from the recorder's loop; every call is a short uncontended lock.
#[derive(Debug, Default)]
pub struct JournalMetrics {
    state: Mutex<State>,
}

/// A copy of the journal's state at one instant.
#[derive(Clone, Debug)]
pub struct JournalSnapshot {
    /// Cumulative totals.
    pub totals: JournalTotals,
    /// The journal file is open and the last write succeeded.
    pub writable: bool,
    /// The disk is full: recording is paused and retried.
    pub disk_full: bool,
    /// fsync durations, ns.
    pub fsync: Hist,
}

impl JournalMetrics {
    /// Nothing reported yet: not writable (so `/readyz` fails until the journal is open).
    pub fn new() -> JournalMetrics {
        JournalMetrics::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the totals (call at every status interval, from the same snapshot as the status file).
    pub fn set_totals(&self, totals: JournalTotals) {
        self.state().totals = totals;
    }

    /// The journal is open and writes succeed (`true`), or it cannot be written (`false`: open or
    /// write failure other than disk full).
    pub fn set_writable(&self, writable: bool) {
        self.state().writable = writable;
    }

    /// The disk is full (`true`) or has room again (`false`).
    pub fn set_disk_full(&self, full: bool) {
        self.state().disk_full = full;
    }

    /// One fdatasync took `took`.
    pub fn observe_fsync(&self, took: Duration) {
        let ns = took.as_nanos().min(u128::from(u64::MAX)) as u64;
        let mut state = self.state();
        state.fsync.record(ns);
        state.last_fsync_ns = ns;
    }

    /// Writable and not out of space: what `/readyz` checks.
    pub fn is_writable(&self) -> bool {
        let s = self.state();
        s.writable && !s.disk_full
    }

    /// A copy of everything.
    pub fn snapshot(&self) -> JournalSnapshot {
        let s = self.state();
        JournalSnapshot { totals: s.totals, writable: s.writable, disk_full: s.disk_full, fsync: s.fsync.clone() }
    }
}

impl JournalSource for JournalMetrics {
    fn read(&self, f: &mut dyn FnMut(&JournalReading<'_>)) {
        let s = self.state();
        f(&JournalReading {
            totals: s.totals,
            writable: s.writable,
            disk_full: s.disk_full,
            last_error: None,
            updated_ns: None,
            last_fsync_s: s.last_fsync_ns as f64 / 1e9,
            max_fsync_s: s.fsync.max_seconds(),
            fsync: Some(&s.fsync),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_needs_both_flags_and_fsyncs_are_kept() {
        let j = JournalMetrics::new();
        assert!(!j.is_writable());
        j.set_writable(true);
        assert!(j.is_writable());
        j.set_disk_full(true);
        assert!(!j.is_writable());
        j.set_disk_full(false);
        j.observe_fsync(Duration::from_micros(300));
        j.observe_fsync(Duration::from_millis(20));
        let s = j.snapshot();
        assert_eq!(s.fsync.count(), 2);
        assert_eq!(s.fsync.buckets(&FSYNC_BOUNDS_S)[3], (5e-4, 1));
        assert_eq!(s.fsync.buckets(&FSYNC_BOUNDS_S)[8], (0.025, 1));
    }
}
