//! The journaling loop: ring → journal file of the tick's trading day, with resume from the
//! journal, day roll-over, gap records, and pausing while the disk is full. See the module
//! documentation of [`crate::recorder`].

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use qilin_journal::{
    GapReason, JournalError, JournalKey, JournalWriter, OpenReport, WriterOptions, WriterStats, journal_files,
    valid_feed, valid_trading_day,
};
use qilin_shm::{Next, Reader, Start, TickRecord, now_ns};
use serde_json::json;

use super::{Config, Counters, SegmentFile, SharedAnchors, SharedStats, StartAt, Stats, config::ms};
use qilin_market::{Date, status::StatusFile};

use crate::metrics::LatencyHistograms;

mod recreated;

/// The recorder: a reader on the segment and the journal writer of the current trading day.
pub struct Recorder {
    config: Config,
    options: WriterOptions,
    reader: Reader,
    feed: String,
    writer: Option<JournalWriter>,
    /// Trading day of the open file, or of the file to reopen after a failure (0: none yet).
    day: u32,
    /// With no writer and no day: the sequence recording starts after (the first file's base).
    base: u64,
    tick: TickRecord,
    /// Reason given to a gap the reader reports right after a (re)positioning.
    resume_reason: GapReason,
    /// While paused (disk full, write failure): when to try again.
    paused_until: Option<Instant>,
    /// Position when the pause began: a write past it ends the pause's error state.
    stalled_at: u64,
    disk_full: bool,
    /// Totals of the writers already closed.
    retired: WriterStats,
    counters: Counters,
    /// Publish time of the last tick written in a block.
    written_ns: i64,
    last_error: Option<String>,
    status: StatusFile,
    last_status: Instant,
    shared: SharedStats,
    /// Latency histograms fed with every tick read (for the metrics server), if any.
    latency: Option<Arc<LatencyHistograms>>,
    /// The audit-anchor thread's state, shown in the status, if any.
    anchors: Option<SharedAnchors>,
    /// The file the reader mapped, to notice a segment re-created under the same path.
    segment_file: SegmentFile,
    last_segment_check: Instant,
    /// Holding after a re-created segment: why (see `recreated`).
    held: Option<String>,
    stopped: bool,
    /// `[journal] encryption_key_file`: the key new files are sealed with (read again before each
    /// new file; the last good one is kept if the file cannot be read then).
    key: Option<JournalKey>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("feed", &self.feed).field("day", &self.day).finish_non_exhaustive()
    }
}

fn add(a: WriterStats, b: WriterStats) -> WriterStats {
    WriterStats {
        blocks: a.blocks + b.blocks,
        bytes: a.bytes + b.bytes,
        ticks: a.ticks + b.ticks,
        gaps: a.gaps + b.gaps,
        gap_sequences: a.gap_sequences + b.gap_sequences,
        fsyncs: a.fsyncs + b.fsyncs,
        last_fsync_ns: if b.fsyncs > 0 { b.last_fsync_ns } else { a.last_fsync_ns },
        max_fsync_ns: a.max_fsync_ns.max(b.max_fsync_ns),
    }
}

impl Recorder {
    /// Opens the feed's newest journal file (verifying it and cutting a torn tail) and positions
    /// the reader after its last sequence; with no journal yet, starts per `config.start`.
    /// Errors: a journal that cannot be trusted (damage in the middle, another layout, locked by
    /// another recorder), or a journal ahead of the segment (the segment was recreated).
    pub fn start(config: Config, mut reader: Reader) -> anyhow::Result<Recorder> {
        let feed = reader.feed_name();
        if !valid_feed(&feed) {
            bail!("feed name {feed:?} of segment {} cannot name a journal file", reader.path().display());
        }
        let status = StatusFile::new(reader.path(), &config.name)
            .with_context(|| format!("status directory beside {}", reader.path().display()))?;
        let key = match &config.journal.encryption_key_file {
            Some(path) => Some(JournalKey::from_key_file(path).map_err(|e| {
                anyhow::anyhow!("journal.encryption_key_file: {e} (the journal is not written unencrypted instead)")
            })?),
            None => None,
        };
        if let Some(key) = &key {
            tracing::info!(
                "journal encryption on: new files are sealed with journal-encryption version {}",
                key.version()
            );
        }
        let files = journal_files(&config.journal_dir, &feed)?;
        let base = match (files.is_empty(), config.start) {
            (true, StartAt::Oldest) => 0,
            (true, StartAt::Newest) => reader.write_cursor(),
            (false, _) => 0,
        };
        reader.seek(Start::Sequence(base + 1));
        let now = Instant::now();
        let mut recorder = Recorder {
            segment_file: SegmentFile::after(&reader),
            last_segment_check: now,
            held: None,
            stopped: false,
            key,
            options: config.journal.writer_options(),
            reader,
            shared: Arc::new(Mutex::new(Stats { feed: feed.clone(), ..Stats::default() })),
            latency: None,
            anchors: None,
            feed,
            writer: None,
            day: files.last().map_or(0, |f| f.trading_day),
            base,
            tick: TickRecord::ZERO,
            resume_reason: GapReason::Restart,
            paused_until: None,
            stalled_at: 0,
            disk_full: false,
            retired: WriterStats::default(),
            counters: Counters::default(),
            written_ns: 0,
            last_error: None,
            status,
            last_status: now,
            config,
        };
        if recorder.day != 0 {
            if let Err(e) = recorder.open_writer(recorder.day) {
                recorder.failed(e)?;
            } else {
                recorder.seek_to_position()?;
            }
        } else {
            tracing::info!(
                "no journal of feed {:?} in {} yet; recording from sequence {}",
                recorder.feed,
                recorder.config.journal_dir.display(),
                base + 1
            );
        }
        recorder.resume_reason = GapReason::Restart;
        recorder.publish_status();
        Ok(recorder)
    }

    /// The identity of the segment file the reader was opened on, taken before it was opened
    /// ([`SegmentFile::open`]); without it, the file found at the path when the recorder started.
    pub fn watch_segment(&mut self, file: SegmentFile) {
        self.segment_file = file;
    }

    /// Shows the audit-anchor thread's state in the status (`audit_anchor`, `audit_anchor_*` counters).
    pub fn show_audit_anchors(&mut self, anchors: SharedAnchors) {
        self.anchors = Some(anchors);
        self.publish_status();
    }

    /// Feeds every tick read to `latency` (the metrics server's latency histograms).
    pub fn record_latency(&mut self, latency: Arc<LatencyHistograms>) {
        self.latency = Some(latency);
    }

    /// The stats, refreshed at every status interval: hand a clone to a metrics server.
    pub fn stats(&self) -> SharedStats {
        self.shared.clone()
    }

    /// The feed name.
    pub fn feed(&self) -> &str {
        &self.feed
    }

    /// Last sequence in a written journal block.
    pub fn position(&self) -> u64 {
        self.writer.as_ref().map_or(self.base, JournalWriter::written_sequence)
    }

    fn next_sequence(&self) -> u64 {
        self.writer.as_ref().map_or(self.base + 1, JournalWriter::next_sequence)
    }

    /// Positions the reader at the journal's next sequence.
    fn seek_to_position(&mut self) -> anyhow::Result<()> {
        let next = self.next_sequence();
        let cursor = self.reader.write_cursor();
        if next - 1 > cursor {
            bail!(
                "the journal {} ends at sequence {} but the segment {} has only reached {}: the segment was \
                 recreated and its sequences restarted. Move the feed's journal files away or give the new \
                 segment another feed name",
                self.writer
                    .as_ref()
                    .map_or_else(|| self.config.journal_dir.display().to_string(), |w| w.path().display().to_string()),
                next - 1,
                self.reader.path().display(),
                cursor
            );
        }
        self.reader.seek(Start::Sequence(next));
        Ok(())
    }

    /// The key for a file about to be opened: the key file read again (a rotation since the last
    /// file takes effect now); if it cannot be read, the last good key, with a warning.
    fn refresh_key(&mut self) {
        let Some(path) = &self.config.journal.encryption_key_file else { return };
        match JournalKey::from_key_file(path) {
            Ok(key) => {
                if let Some(old) = &self.key
                    && old.version() != key.version()
                {
                    tracing::info!(
                        "journal.encryption_key_file: journal-encryption version {} replaces {} for new files",
                        key.version(),
                        old.version()
                    );
                }
                self.key = Some(key);
            }
            Err(e) => tracing::warn!(
                "journal.encryption_key_file: {e}; new files keep version {}",
                self.key.as_ref().map_or(0, JournalKey::version)
            ),
        }
    }

    /// Opens (or creates) the file of `day`, continuing from `self.base` if it is new.
    fn open_writer(&mut self, day: u32) -> Result<(), JournalError> {
        self.refresh_key();
        let (writer, report) = JournalWriter::open_keyed(
            &self.config.journal_dir,
            &self.feed,
            day,
            self.base,
            self.options,
            self.key.as_ref(),
        )?;
        self.opened(&writer, &report);
        self.day = day;
        self.writer = Some(writer);
        Ok(())
    }

    fn opened(&mut self, writer: &JournalWriter, report: &OpenReport) {
        if report.created {
            self.counters.files += 1;
            tracing::info!(
                "journal {} created, continuing after sequence {}",
                writer.path().display(),
                report.last_sequence
            );
        } else {
            tracing::info!(
                "journal {} opened: {} whole blocks, last sequence {}",
                writer.path().display(),
                report.blocks,
                report.last_sequence
            );
        }
        match (report.key_version, writer.key_version()) {
            (Some(created), Some(now)) => tracing::info!(
                "journal {}: encrypted (created with journal-encryption version {created}; new blocks sealed with \
                 version {now})",
                writer.path().display()
            ),
            (None, _) if self.key.is_some() => tracing::warn!(
                "journal {} was begun unencrypted and stays so; encryption starts with the next trading day's file",
                writer.path().display()
            ),
            _ => {}
        }
        if let Some((offset, reason)) = &report.truncated_at {
            self.counters.repaired_bytes += report.truncated_bytes;
            tracing::warn!(
                "journal {}: cut a torn tail of {} bytes at byte {offset} ({reason}); resuming after sequence {}",
                writer.path().display(),
                report.truncated_bytes,
                report.last_sequence
            );
        }
    }

    fn retire(&mut self, writer: JournalWriter) {
        self.retired = add(self.retired, writer.stats());
        if let Err(e) = writer.finish() {
            tracing::warn!("closing journal: {e}");
        }
    }

    /// Makes sure a writer is open for a tick of `day` (0: any), rolling to a later day's file.
    fn writer_for(&mut self, day: u32) -> Result<&mut JournalWriter, JournalError> {
        let valid = valid_trading_day(day);
        match &mut self.writer {
            None => {
                let day = if self.day != 0 {
                    self.day
                } else if valid {
                    day
                } else {
                    self.fallback_day()
                };
                self.open_writer(day)?;
            }
            Some(old) if valid && day > old.trading_day() => {
                old.sync()?;
                let base = old.written_sequence();
                self.refresh_key();
                let (new, report) = JournalWriter::open_keyed(
                    &self.config.journal_dir,
                    &self.feed,
                    day,
                    base,
                    self.options,
                    self.key.as_ref(),
                )?;
                if report.last_sequence != base {
                    return Err(JournalError::Invalid {
                        path: new.path().to_owned(),
                        reason: format!(
                            "this file ends at sequence {} but the previous day's ends at {base}: two recorders \
                             on one directory?",
                            report.last_sequence
                        ),
                    });
                }
                self.opened(&new, &report);
                tracing::info!("trading day {day} begins at sequence {}", base + 1);
                let old = self.writer.replace(new).expect("writer open");
                self.retire(old);
                self.day = day;
            }
            Some(_) => {}
        }
        Ok(self.writer.as_mut().expect("writer open"))
    }

    /// The trading day for a gap recorded before any tick said which day it is.
    fn fallback_day(&self) -> u32 {
        match self.reader.status() {
            Ok(s) if valid_trading_day(s.trading_day) => s.trading_day,
            _ => Date::china_of(now_ns()).ymd,
        }
    }

    fn on_tick(&mut self) -> Result<(), JournalError> {
        let tick = self.tick;
        if let Some(latency) = &self.latency {
            latency.record(&tick);
        }
        let writer = self.writer_for(tick.trading_day)?;
        let late = valid_trading_day(tick.trading_day) && tick.trading_day < writer.trading_day();
        writer.append_tick(&tick)?;
        let written = writer.written_sequence() == tick.sequence;
        if late {
            self.counters.late_day_ticks += 1;
        }
        if written {
            self.written_ns = tick.publish_ns;
        }
        Ok(())
    }

    fn on_gap(&mut self, first: u64, last: u64) -> Result<(), JournalError> {
        let reason = self.resume_reason;
        let writer = self.writer_for(0)?;
        writer.append_gap(first, last, reason)?;
        tracing::warn!(
            "sequences {first}..={last} ({}) are gone from the ring; gap record ({}) in {}",
            last - first + 1,
            reason.name(),
            writer.path().display()
        );
        Ok(())
    }

    /// Handles a journal failure: a full disk or an I/O failure pauses recording (retried every
    /// `retry_interval_ms`); anything else (damage, another layout, a lock) is returned.
    fn failed(&mut self, e: JournalError) -> anyhow::Result<()> {
        self.counters.errors += 1;
        match &e {
            JournalError::DiskFull { .. } => {
                if self.disk_full {
                    self.counters.disk_full_retries += 1;
                } else {
                    self.disk_full = true;
                    self.counters.disk_full += 1;
                    tracing::error!(
                        "DISK FULL: {e}. Recording is paused at sequence {}; retrying every {} ms. The ring holds \
                         the ticks meanwhile; what it overwrites before space returns becomes a gap record.",
                        self.position(),
                        self.config.journal.retry_interval_ms
                    );
                }
            }
            JournalError::Io { .. } | JournalError::Poisoned { .. } => {
                if self.last_error.as_deref() != Some(e.to_string().as_str()) {
                    tracing::error!(
                        "{e}; recording paused at sequence {}, retrying every {} ms",
                        self.position(),
                        self.config.journal.retry_interval_ms
                    );
                }
            }
            _ => return Err(anyhow::Error::new(e)),
        }
        if self.writer.as_ref().is_some_and(JournalWriter::is_poisoned) {
            let writer = self.writer.take().expect("writer open");
            self.retired = add(self.retired, writer.stats());
            drop(writer);
        }
        self.last_error = Some(e.to_string());
        self.stalled_at = self.position();
        self.paused_until = Some(Instant::now() + ms(self.config.journal.retry_interval_ms));
        self.publish_status();
        Ok(())
    }

    /// After a pause: reopen the file if it was closed, and re-read the ring from the position.
    fn resume(&mut self) -> anyhow::Result<()> {
        self.paused_until = None;
        if self.writer.is_none()
            && self.day != 0
            && let Err(e) = self.open_writer(self.day)
        {
            return self.failed(e);
        }
        self.seek_to_position()?;
        self.resume_reason = if self.disk_full { GapReason::DiskFull } else { GapReason::Lapped };
        Ok(())
    }

    /// Ends the error state once a write went through after a pause.
    fn check_recovered(&mut self) {
        if (self.disk_full || self.last_error.is_some())
            && self.paused_until.is_none()
            && self.position() > self.stalled_at
        {
            if self.disk_full {
                tracing::info!(
                    "disk space is back: journal {} written again from sequence {}",
                    self.writer.as_ref().map_or_else(String::new, |w| w.path().display().to_string()),
                    self.stalled_at + 1
                );
            }
            self.disk_full = false;
            self.last_error = None;
            self.publish_status();
        }
    }

    /// Records until `stop` is set; then writes and syncs what is buffered. Journal failures that
    /// waiting can fix are retried forever; the errors returned are ones it cannot.
    pub fn run(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        const BATCH: usize = 1024;
        let poll = Duration::from_micros(self.config.poll_interval_us);
        loop {
            if stop.load(Ordering::Relaxed) {
                self.finish();
                return Ok(());
            }
            if self.held.is_some() {
                self.maintain_status();
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            if let Some(until) = self.paused_until {
                let now = Instant::now();
                if now < until {
                    self.maintain_status();
                    std::thread::sleep((until - now).min(Duration::from_millis(20)));
                    continue;
                }
                self.resume()?;
                continue;
            }
            let mut moved = 0;
            while moved < BATCH && self.paused_until.is_none() {
                let result = match self.reader.try_next(&mut self.tick) {
                    Next::Tick => self.on_tick(),
                    Next::Gap { first, last } => self.on_gap(first, last),
                    Next::NewEpoch { previous, current } => {
                        self.counters.epochs += 1;
                        tracing::info!("the core restarted (epoch {previous} → {current}); sequences continue");
                        moved += 1;
                        continue;
                    }
                    Next::Empty => break,
                };
                self.resume_reason = GapReason::Lapped;
                moved += 1;
                if let Err(e) = result {
                    self.failed(e)?;
                }
            }
            if self.paused_until.is_none()
                && let Some(writer) = &mut self.writer
            {
                let maintained = writer.maintain();
                if writer.is_flushed() {
                    self.written_ns = self.tick.publish_ns.max(self.written_ns);
                }
                if let Err(e) = maintained {
                    self.failed(e)?;
                }
            }
            self.check_recovered();
            if moved == 0 {
                self.check_segment()?;
            }
            self.maintain_status();
            if moved == 0 {
                std::thread::sleep(poll);
            }
        }
    }

    /// Writes and syncs what is buffered, and the status.
    fn finish(&mut self) {
        if let Some(writer) = &mut self.writer {
            match writer.sync() {
                Ok(()) => tracing::info!(
                    "stopped: journal {} synced up to sequence {}",
                    writer.path().display(),
                    writer.synced_sequence()
                ),
                Err(e) => tracing::warn!("stopping with sequences after {} not journaled: {e}", self.position()),
            }
        }
        self.stopped = true;
        self.publish_status();
    }

    fn maintain_status(&mut self) {
        if self.last_status.elapsed() >= ms(self.config.status_interval_ms) {
            self.publish_status();
        }
    }

    /// A fresh snapshot of the recorder.
    pub fn snapshot(&self) -> Stats {
        let totals = add(self.retired, self.writer.as_ref().map(JournalWriter::stats).unwrap_or_default());
        let position = self.position();
        let write_cursor = self.reader.write_cursor();
        // Held on a re-created segment, none of the new session is journaled.
        let lag = if self.held.is_some() { write_cursor } else { write_cursor.saturating_sub(position) };
        let policy = self.options.fsync;
        let anchors =
            self.anchors.as_ref().map(|a| a.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone());
        let anchors = anchors.unwrap_or_default();
        Stats {
            feed: self.feed.clone(),
            state: if self.stopped {
                "stopped"
            } else if self.held.is_some() {
                "segment-recreated"
            } else if self.paused_until.is_some() {
                "paused"
            } else {
                "recording"
            },
            updated_ns: now_ns(),
            position,
            synced: self.writer.as_ref().map_or(self.base, JournalWriter::synced_sequence),
            read: self.reader.next_sequence() - 1,
            write_cursor,
            lag_sequences: lag,
            lag_ns: if lag > 0 && self.written_ns > 0 { (now_ns() - self.written_ns).max(0) } else { 0 },
            file: self.writer.as_ref().map(|w| w.path().to_owned()),
            trading_day: self.writer.as_ref().map_or(0, JournalWriter::trading_day),
            bytes: self.writer.as_ref().map_or(0, JournalWriter::len),
            fsync: policy.name(),
            fsync_interval_ms: match policy {
                qilin_journal::FsyncPolicy::Interval(d) => d.as_millis() as u64,
                _ => 0,
            },
            last_fsync_latency_us: totals.last_fsync_ns as f64 / 1e3,
            max_fsync_latency_us: totals.max_fsync_ns as f64 / 1e3,
            disk_full: self.disk_full,
            counters: Counters {
                ticks: totals.ticks,
                gaps: totals.gaps,
                gap_sequences: totals.gap_sequences,
                blocks: totals.blocks,
                bytes: totals.bytes,
                fsyncs: totals.fsyncs,
                audit_anchors: anchors.anchors,
                audit_anchor_read_errors: anchors.read_errors,
                audit_anchor_write_errors: anchors.write_errors,
                audit_anchor_regressions: anchors.regressions,
                audit_anchor_key_errors: anchors.key_errors,
                ..self.counters.clone()
            },
            last_error: self.last_error.clone(),
            audit_anchor: anchors.logs,
        }
    }

    /// The status object (also written to the status file).
    pub fn status_json(&self, stats: &Stats) -> serde_json::Value {
        let mut value = json!({
            "sidecar": "qilin-recorder",
            "name": self.config.name,
            "pid": std::process::id(),
            "journal_dir": self.config.journal_dir,
            // Encryption at rest: the journal-encryption version sealing the open file's new
            // blocks, and the one the next new file gets (null: off / file unencrypted).
            "journal_key_version": self.writer.as_ref().and_then(JournalWriter::key_version),
            "encryption_key_version": self.key.as_ref().map(JournalKey::version),
        });
        if let (Some(out), Ok(serde_json::Value::Object(fields))) = (value.as_object_mut(), serde_json::to_value(stats))
        {
            out.extend(fields);
        }
        value
    }

    /// Refreshes the shared stats and rewrites the status file.
    fn publish_status(&mut self) {
        let stats = self.snapshot();
        let value = self.status_json(&stats);
        if let Ok(mut shared) = self.shared.lock() {
            *shared = stats;
        }
        if let Err(e) = self.status.write(&value) {
            tracing::error!("status file {}: {e}", self.status.path().display());
        }
        self.last_status = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use qilin_journal::{DirReader, Entry, JournalWriter, WriterOptions, file_path};
    use qilin_shm::{Exchange, SegmentOptions, Writer};

    use super::*;

    #[test]
    fn writer_totals_add_up_across_files() {
        let a =
            WriterStats { blocks: 2, ticks: 100, fsyncs: 1, last_fsync_ns: 5, max_fsync_ns: 9, ..Default::default() };
        let b =
            WriterStats { blocks: 1, ticks: 10, fsyncs: 0, last_fsync_ns: 0, max_fsync_ns: 3, ..Default::default() };
        let t = add(a, b);
        assert_eq!((t.blocks, t.ticks, t.fsyncs, t.last_fsync_ns, t.max_fsync_ns), (3, 110, 1, 5, 9));
    }

    /// A segment in /dev/shm written by this test (no core), removed with its status directory.
    struct Segment {
        path: PathBuf,
        writer: Writer,
    }

    impl Segment {
        fn new(tag: &str) -> Segment {
            let feed = format!("rec-{tag}-{}", std::process::id());
            let path = PathBuf::from(format!("/dev/shm/qilin-unit-{feed}"));
            let _ = std::fs::remove_file(&path);
            let options = SegmentOptions { feed_name: feed, ring_slots: 1024, instrument_capacity: 4 };
            let mut writer = Writer::open(&path, &options).unwrap();
            writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
            Segment { path, writer }
        }

        fn publish(&mut self, trading_day: u32) -> u64 {
            let mut t = TickRecord::ZERO;
            t.trading_day = trading_day;
            t.last_price = 3100.0;
            t.publish_ns = now_ns();
            self.writer.publish(&mut t).unwrap()
        }
    }

    impl Drop for Segment {
        fn drop(&mut self) {
            qilin_testkit::remove_segment(&self.path);
            let _ = std::fs::remove_dir_all(qilin_market::status::status_dir(&self.path));
        }
    }

    fn config(segment: &Path, journal: &Path) -> Config {
        Config {
            segment: segment.to_owned(),
            journal_dir: journal.to_owned(),
            status_interval_ms: 10,
            ..Config::default()
        }
    }

    /// Runs the recorder in a thread until `position` reaches `last`.
    fn record_until(config: Config, last: u64) -> Stats {
        let reader = Reader::open(&config.segment).unwrap();
        let mut recorder = Recorder::start(config, reader).unwrap();
        let stats = recorder.stats();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || recorder.run(&flag));
        let deadline = Instant::now() + Duration::from_secs(60);
        while stats.lock().unwrap().position < last {
            assert!(Instant::now() < deadline, "the recorder never reached {last}");
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap().unwrap();
        stats.lock().unwrap().clone()
    }

    #[test]
    fn a_later_trading_day_starts_the_next_file_and_a_late_tick_stays_in_order() {
        let mut segment = Segment::new("days");
        let journal = tempfile::tempdir().unwrap();
        for day in [20260302, 20260302, 20260302, 20260303, 20260302, 20260303, 0, 20260304] {
            segment.publish(day);
        }
        let stats = record_until(config(&segment.path, journal.path()), 8);
        let feed = segment.writer_feed();
        let files = journal_files(journal.path(), &feed).unwrap();
        assert_eq!(files.iter().map(|f| f.trading_day).collect::<Vec<_>>(), [20260302, 20260303, 20260304]);
        let per_file: Vec<Vec<u64>> = files
            .iter()
            .map(|f| {
                qilin_journal::JournalReader::open(&f.path).unwrap().map(|e| e.unwrap().first_sequence()).collect()
            })
            .collect();
        assert_eq!(per_file, [vec![1, 2, 3], vec![4, 5, 6, 7], vec![8]], "a late tick (5) and a dayless one (7) stay");
        let bases: Vec<u64> =
            files.iter().map(|f| qilin_journal::JournalReader::open(&f.path).unwrap().header().base_sequence).collect();
        assert_eq!(bases, [0, 3, 7], "each file continues the previous one");
        assert_eq!((stats.counters.files, stats.counters.late_day_ticks, stats.trading_day), (3, 1, 20260304));
        let all: Vec<u64> =
            DirReader::open(journal.path(), &feed, 0..=u32::MAX).unwrap().map(|e| e.unwrap().last_sequence()).collect();
        assert_eq!(all, (1..=8).collect::<Vec<_>>());
        assert!(matches!(
            DirReader::open(journal.path(), &feed, 0..=u32::MAX).unwrap().next(),
            Some(Ok(Entry::Tick(t))) if t.trading_day == 20260302
        ));
    }

    #[test]
    fn a_journal_ahead_of_the_segment_is_refused() {
        let mut segment = Segment::new("ahead");
        segment.publish(20260302);
        let journal = tempfile::tempdir().unwrap();
        let feed = segment.writer_feed();
        let (w, _) = JournalWriter::open(journal.path(), &feed, 20260302, 500, WriterOptions::default()).unwrap();
        drop(w);
        let reader = Reader::open(&segment.path).unwrap();
        let err = Recorder::start(config(&segment.path, journal.path()), reader).unwrap_err().to_string();
        assert!(err.contains("ends at sequence 500") && err.contains("recreated"), "{err}");
        assert!(err.contains(&file_path(journal.path(), &feed, 20260302).display().to_string()), "{err}");
    }

    /// Writes a `keys render-key` file of `version` (0600).
    fn key_file(path: &Path, version: u32, fill: u8) {
        use std::os::unix::fs::PermissionsExt;
        let hex: String = std::iter::repeat_n(format!("{fill:02x}"), 32).collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("# qilin-key/1\nversion={version}\nkey={hex}\n")).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_rotation_takes_effect_with_the_next_trading_day_and_the_open_file_keeps_its_version() {
        let mut segment = Segment::new("keyroll");
        let journal = tempfile::tempdir().unwrap();
        let key = journal.path().join("journal.key");
        key_file(&key, 1, 0x11);
        let mut config = config(&segment.path, &journal.path().join("j"));
        config.journal.encryption_key_file = Some(key.clone());
        config.journal.max_block_age_ms = 0;
        for _ in 0..3 {
            segment.publish(20260302);
        }
        let reader = Reader::open(&config.segment).unwrap();
        let mut recorder = Recorder::start(config, reader).unwrap();
        let stats = recorder.stats();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || recorder.run(&flag));
        let wait = |last: u64| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while stats.lock().unwrap().position < last {
                assert!(Instant::now() < deadline, "the recorder never reached {last}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait(3);
        // Rotated and rendered again mid-day: the day's open file keeps version 1.
        key_file(&key, 2, 0x22);
        segment.publish(20260302);
        wait(4);
        segment.publish(20260303);
        wait(5);
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap().unwrap();

        let feed = segment.writer_feed();
        let dir = journal.path().join("j");
        let ring = |version: u32, fill: u8| {
            let mut ring = qilin_journal::Keyring::new("test");
            ring.insert(qilin_journal::JournalKey::new(version, &[fill; 32]).unwrap());
            Some(Arc::new(ring))
        };
        let read = |day: u32, keys| -> Result<Vec<u64>, JournalError> {
            qilin_journal::JournalReader::open_keyed(file_path(&dir, &feed, day), keys)?
                .map(|e| e.map(|e| e.first_sequence()))
                .collect()
        };
        assert_eq!(read(20260302, ring(1, 0x11)).unwrap(), [1, 2, 3, 4], "day 1: version 1 only");
        assert_eq!(read(20260303, ring(2, 0x22)).unwrap(), [5], "day 2: version 2 only");
        let e = read(20260302, ring(2, 0x22)).unwrap_err();
        assert!(matches!(e, JournalError::KeyUnavailable { version: 1, .. }), "{e}");
    }

    impl Segment {
        fn writer_feed(&self) -> String {
            Reader::open(&self.path).unwrap().feed_name()
        }
    }
}
