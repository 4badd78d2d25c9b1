//! A segment re-created under the same path while the recorder runs (a new file, a new inode:
//! the core restarted on a removed segment). The recorder notices it when its reader is idle,
//! that is once the old file has been read to its end; syncs the journal; reopens the path and
//! logs the new epoch. The new file is a new session whose sequences start again at 1, while the
//! journal is keyed by feed and sequence: if the journal already holds sequences of the old
//! session, the recorder holds (state `segment-recreated`, the reason in `last_error`) rather
//! than append a second sequence 1 to the feed's journal, and an operator decides. With nothing
//! journaled yet it records the new session from its sequence 1. See docs/SIDECARS.md,
//! "A re-created segment".

use std::time::Instant;

use qilin_shm::Start;

use super::{super::config::ms, Recorder};

impl Recorder {
    /// Checks (at most every status interval) whether the segment's path names a new file, and
    /// switches to it. Called when the reader has nothing new to read.
    pub(super) fn check_segment(&mut self) -> anyhow::Result<()> {
        if self.held.is_some()
            || self.paused_until.is_some()
            || self.last_segment_check.elapsed() < ms(self.config.status_interval_ms)
        {
            return Ok(());
        }
        self.last_segment_check = Instant::now();
        // Not replaced, or the new file is still being created: next time.
        let Some((reader, file)) = self.segment_file.reopen_if_replaced()? else {
            return Ok(());
        };
        // Everything read from the old file is journaled and synced before the switch.
        if let Some(writer) = &mut self.writer
            && let Err(e) = writer.sync()
        {
            return self.failed(e);
        }
        let position = self.position();
        let (old_epoch, old_inode) = (self.reader.epoch(), self.segment_file.inode());
        let feed = reader.feed_name();
        tracing::warn!(
            "segment {} was re-created (inode {old_inode} → {}): new epoch {} (was {old_epoch}), a new session \
             created at {} whose newest sequence is {}; the old file was read to its end (journal at sequence {position})",
            file.path().display(),
            file.inode(),
            reader.epoch(),
            qilin_market::date::rfc3339_ns(reader.identity().created_ns),
            reader.write_cursor()
        );
        self.counters.epochs += 1;
        self.counters.recreated += 1;
        self.reader = reader;
        self.segment_file = file;
        if feed != self.feed || self.day != 0 {
            let held = format!(
                "segment {} was re-created: feed {feed:?} started a new session (epoch {}) whose sequences begin \
                 again at 1, but the journal of feed {:?} in {} already holds sequences up to {position} of the \
                 old one. Not recording the new session into it (its sequence numbers would repeat). Move the \
                 feed's journal files away, or give the new segment another feed name, then restart the recorder",
                self.segment_file.path().display(),
                self.reader.epoch(),
                self.feed,
                self.config.journal_dir.display()
            );
            tracing::error!("{held}");
            self.last_error = Some(held.clone());
            self.held = Some(held);
        } else {
            tracing::info!("nothing journaled yet: recording the new session from sequence 1");
            self.base = 0;
            self.reader.seek(Start::Sequence(1));
        }
        self.publish_status();
        Ok(())
    }
}
