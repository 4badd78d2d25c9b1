//! The recorder's shared stats as a metrics [`JournalSource`]:
//! `Exporter::with_journal(recorder.stats())` exports the journal the recorder keeps with nothing to
//! call from its loop. The stats are the snapshot the recorder takes at every status interval (the
//! one its status file is written from). The impl lives here, beside `Stats`, so the recorder
//! depends on `metrics` and `metrics` knows nothing of the recorder.
//!
//! The journal counts as writable while a journal file is open, the disk is not full and the last
//! operation did not fail (`last_error` is cleared once things work again). The recorder keeps the
//! last and the longest fsync, not each one, so this source has no fsync histogram; a recorder
//! that wants one calls
//! [`JournalMetrics::observe_fsync`](crate::metrics::JournalMetrics::observe_fsync) after each
//! sync and hands over a `JournalMetrics` instead.

use std::sync::{Mutex, PoisonError};

use super::Stats;
use crate::metrics::{JournalReading, JournalSource, JournalTotals};

impl JournalSource for Mutex<Stats> {
    fn read(&self, f: &mut dyn FnMut(&JournalReading<'_>)) {
        let s = self.lock().unwrap_or_else(PoisonError::into_inner);
        let c = &s.counters;
        f(&JournalReading {
            totals: JournalTotals {
                bytes: c.bytes,
                records: c.ticks,
                gap_records: c.gaps,
                gap_sequences: c.gap_sequences,
                blocks: c.blocks,
                fsyncs: c.fsyncs,
                files: c.files,
                errors: c.errors,
                disk_full_events: c.disk_full,
                position: s.position,
                synced: s.synced,
            },
            writable: s.file.is_some() && !s.disk_full && s.last_error.is_none(),
            disk_full: s.disk_full,
            last_error: s.last_error.as_deref(),
            updated_ns: (s.updated_ns > 0).then_some(s.updated_ns),
            last_fsync_s: s.last_fsync_latency_us / 1e6,
            max_fsync_s: s.max_fsync_latency_us / 1e6,
            fsync: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use super::*;
    use crate::recorder::{Counters, SharedStats};

    fn reading(stats: &SharedStats) -> (JournalTotals, bool, bool, Option<String>, Option<i64>, f64) {
        let mut out = None;
        stats.read(&mut |r| {
            out = Some((r.totals, r.writable, r.disk_full, r.last_error.map(String::from), r.updated_ns, r.max_fsync_s))
        });
        out.unwrap()
    }

    #[test]
    fn the_recorder_stats_map_onto_the_journal_reading() {
        let stats: SharedStats = Arc::new(Mutex::new(Stats::default()));
        let (_, writable, _, _, updated, _) = reading(&stats);
        assert!(!writable, "no file open yet");
        assert_eq!(updated, None, "never refreshed");
        *stats.lock().unwrap() = Stats {
            updated_ns: 7,
            position: 640,
            synced: 576,
            file: Some(PathBuf::from("journal/f-20260504.qj")),
            max_fsync_latency_us: 1500.0,
            counters: Counters { ticks: 640, bytes: 250_000, blocks: 10, fsyncs: 9, files: 1, ..Default::default() },
            ..Default::default()
        };
        let (totals, writable, disk_full, error, updated, max_fsync) = reading(&stats);
        assert!(writable && !disk_full && error.is_none());
        assert_eq!(updated, Some(7));
        assert_eq!(max_fsync, 0.0015);
        assert_eq!(
            totals,
            JournalTotals {
                records: 640,
                bytes: 250_000,
                blocks: 10,
                fsyncs: 9,
                files: 1,
                position: 640,
                synced: 576,
                ..Default::default()
            }
        );
        {
            let mut s = stats.lock().unwrap();
            s.disk_full = true;
            s.counters.disk_full = 1;
            s.last_error = Some("No space left on device".into());
        }
        let (totals, writable, disk_full, error, _, _) = reading(&stats);
        assert!(!writable && disk_full);
        assert_eq!(totals.disk_full_events, 1);
        assert_eq!(error.as_deref(), Some("No space left on device"));
    }
}
