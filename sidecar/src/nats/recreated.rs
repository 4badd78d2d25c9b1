//! A segment re-created under the same path while the sidecar runs (a new file, a new inode: the
//! core restarted on a removed segment). The sidecar notices it when its reader is idle, that is
//! once the old file has been read to its end; waits until the server confirmed everything
//! published; saves the cursor; reopens the path and logs the new epoch. The new file is a new
//! session whose sequences start again at 1, while the stream, the message ids
//! (`<feed>-<sequence>`), the consumers' `Qilin-Seq` and the cursor file all name a tick by feed
//! and sequence: if the downstream already holds sequences of the old session, the sidecar holds
//! (state `segment-recreated`, the reason in `last_error`) instead of publishing a second
//! sequence 1, which the stream's duplicate window would drop and a consumer would take for a
//! repeat; an operator decides. With nothing published yet it publishes the new session from its
//! sequence 1. See docs/SIDECARS.md, "A re-created segment".

use std::time::Instant;

use qilin_shm::Start;

use super::{Sidecar, State, config};

impl Sidecar {
    /// Checks (at most every status interval) whether the segment's path names a new file, and
    /// switches to it. Called when the reader has nothing new to read.
    pub(super) async fn check_segment(&mut self) -> anyhow::Result<()> {
        if self.held.is_some() || self.last_segment_check.elapsed() < config::ms(self.config.status_interval_ms) {
            return Ok(());
        }
        self.last_segment_check = Instant::now();
        // Not replaced, or the new file is still being created: next time.
        let Some((reader, file)) = self.segment_file.reopen_if_replaced()? else {
            return Ok(());
        };
        // Everything read from the old file is confirmed and the cursor saved before the switch;
        // a failure here takes the usual path (resync on the old file) and the check runs again.
        self.settle(true).await?;
        self.save_cursor_now().await;
        let (old_epoch, old_inode) = (self.reader.epoch(), self.segment_file.inode());
        let feed = reader.feed_name();
        tracing::warn!(
            "segment {} was re-created (inode {old_inode} → {}): new epoch {} (was {old_epoch}), a new session \
             created at {} whose newest sequence is {}; the old file was read to its end (confirmed up to sequence {})",
            file.path().display(),
            file.inode(),
            reader.epoch(),
            qilin_market::date::rfc3339_ns(reader.identity().created_ns),
            reader.write_cursor(),
            self.confirmed
        );
        self.counters.epochs += 1;
        self.counters.recreated += 1;
        self.reader = reader;
        self.segment_file = file;
        if feed != self.feed || self.confirmed > 0 {
            let downstream = match &self.js {
                Some(_) => {
                    format!("stream {} (and the cursor file {})", self.stream_name, self.cursor_file.path().display())
                }
                None => format!("the cursor file {}", self.cursor_file.path().display()),
            };
            let held = format!(
                "segment {} was re-created: feed {feed:?} started a new session (epoch {}) whose sequences begin \
                 again at 1, but {downstream} already holds sequences up to {} of feed {:?}'s old session. Not \
                 publishing the new session under the same sequences and message ids (the stream would drop \
                 them as duplicates, consumers would take them for repeats). Purge the stream and remove the \
                 cursor file, or give the new segment another feed name, then restart qilin-nats",
                self.segment_file.path().display(),
                self.reader.epoch(),
                self.confirmed,
                self.feed
            );
            tracing::error!("{held}");
            self.last_error = Some(held.clone());
            self.held = Some(held);
            self.state = State::SegmentRecreated;
        } else {
            tracing::info!("nothing published yet: publishing the new session from sequence 1");
            self.published_seq = 0;
            self.reader.seek(Start::Sequence(1));
        }
        self.write_status();
        Ok(())
    }
}
