//! What the recorder tells the metrics server about its journal: cumulative totals, whether it can
//! write, whether the disk is full, and every fsync's duration. The recorder owns the writes; this
//! is a mailbox it fills (behind an `Arc`), read by scrapes and by `/readyz`.
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

#[derive(Debug, Default)]
struct State {
    totals: JournalTotals,
    writable: bool,
    disk_full: bool,
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
        self.state().fsync.record(took.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    /// Writable and not out of space: what `/readyz` checks.
    pub fn is_writable(&self) -> bool {
        let s = self.state();
        s.writable && !s.disk_full
    }

    /// `(writable, disk_full)` as last reported.
    pub fn flags(&self) -> (bool, bool) {
        let s = self.state();
        (s.writable, s.disk_full)
    }

    /// A copy of everything.
    pub fn snapshot(&self) -> JournalSnapshot {
        let s = self.state();
        JournalSnapshot { totals: s.totals, writable: s.writable, disk_full: s.disk_full, fsync: s.fsync.clone() }
    }

    /// Runs `f` under the lock (the exporter, without copying the histogram).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&JournalTotals, bool, bool, &Hist) -> T) -> T {
        let s = self.state();
        f(&s.totals, s.writable, s.disk_full, &s.fsync)
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
