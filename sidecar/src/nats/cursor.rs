//! The durable cursor: where a restart resumes (loaded at start) and the confirmed position saved
//! to the cursor file, off the publishing path.

use std::time::Instant;

use anyhow::bail;
use futures::FutureExt;
use qilin_shm::{Start, now_ns};

use super::{Sidecar, StartAt};
use crate::cursor::{Cursor, CursorError};

impl Sidecar {
    /// Positions the reader after the saved cursor, or where `start` says without a cursor file.
    /// Returns the segment's write cursor as seen then. Refuses a cursor ahead of the segment: the
    /// segment was recreated and its sequences restarted.
    pub(super) fn resume_from_cursor(&mut self) -> anyhow::Result<u64> {
        let saved = self.cursor_file.load(&self.feed)?;
        let write_cursor = self.reader.write_cursor();
        match &saved {
            Some(c) if c.sequence > write_cursor => bail!(
                "cursor file {} is at sequence {} but the segment {} has only reached {}: the segment was \
                 recreated and its sequences restarted. Remove the cursor file (and purge stream {} if it \
                 holds the old sequences) or give the new segment another feed name",
                self.cursor_file.path().display(),
                c.sequence,
                self.reader.path().display(),
                write_cursor,
                self.stream_name
            ),
            Some(c) => {
                self.confirmed = c.sequence;
                self.saved = c.sequence;
                self.reader.seek(Start::Sequence(c.sequence + 1));
                tracing::info!(
                    "resuming after sequence {} (cursor file {})",
                    c.sequence,
                    self.cursor_file.path().display()
                );
            }
            None => {
                self.reader.seek(match self.config.start {
                    StartAt::Oldest => Start::Oldest,
                    StartAt::Newest => Start::Newest,
                });
                self.confirmed = self.reader.next_sequence() - 1;
                tracing::info!("no cursor file yet; starting at sequence {}", self.confirmed + 1);
            }
        }
        Ok(write_cursor)
    }

    /// Saves the cursor on tokio's blocking pool: its two fsyncs (tens of ms on a busy disk) must
    /// not stall publishing. One save at a time; a save still running is left to finish and the
    /// next interval writes the newer position.
    pub(super) fn save_cursor(&mut self) {
        if let Some(running) = &mut self.saving {
            match running.now_or_never() {
                None => return,
                Some(result) => {
                    self.saving = None;
                    self.saved_result(result);
                }
            }
        }
        let (file, cursor) = (self.cursor_file.clone(), self.cursor());
        self.saving = Some(tokio::task::spawn_blocking(move || file.save(&cursor).map(|()| cursor.sequence)));
        self.last_save = Instant::now();
    }

    /// Saves the cursor and waits for it (at a stop).
    pub(super) async fn save_cursor_now(&mut self) {
        if let Some(running) = self.saving.take() {
            let result = running.await;
            self.saved_result(result);
        }
        let (file, cursor) = (self.cursor_file.clone(), self.cursor());
        let result = tokio::task::spawn_blocking(move || file.save(&cursor).map(|()| cursor.sequence)).await;
        self.saved_result(result);
    }

    fn cursor(&self) -> Cursor {
        Cursor { feed: self.feed.clone(), sequence: self.confirmed, epoch: self.reader.epoch(), saved_ns: now_ns() }
    }

    fn saved_result(&mut self, result: Result<Result<u64, CursorError>, tokio::task::JoinError>) {
        match result {
            Ok(Ok(sequence)) => self.saved = self.saved.max(sequence),
            Ok(Err(e)) => {
                self.counters.errors += 1;
                tracing::error!("{e}");
            }
            Err(e) => {
                self.counters.errors += 1;
                tracing::error!("saving the cursor: {e}");
            }
        }
    }
}
