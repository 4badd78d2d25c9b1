//! Ranges the ring no longer holds (the core lapped the sidecar): published from the recorder's
//! journal where it has them, the rest as gap events.

use std::time::{Duration, Instant};

use super::{Sidecar, config};

impl Sidecar {
    /// Publishes `first..=last`, which the ring no longer holds: from the recorder's journal where
    /// it has them (waiting up to `backfill_wait_ms` for the recorder to write them), the rest as
    /// gap events.
    pub(super) async fn recover(&mut self, first: u64, last: u64) -> anyhow::Result<()> {
        if self.config.journal_dir.as_os_str().is_empty() {
            return self.send_gap(first, last).await;
        }
        let deadline = Instant::now() + config::ms(self.config.backfill_wait_ms);
        let before = self.counters.backfilled;
        let mut next = first;
        // The journal is read again every 20 ms while waiting: each problem is logged once a range.
        let mut warned = Vec::new();
        loop {
            next = self.backfill(next, last, &mut warned).await?;
            if next > last || Instant::now() >= deadline {
                break;
            }
            self.maintain();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let backfilled = self.counters.backfilled - before;
        if backfilled > 0 {
            tracing::info!("published {backfilled} ticks of {first}..={last} from the journal");
        }
        if next <= last { self.send_gap(next, last).await } else { Ok(()) }
    }

    /// Publishes from the journal what it holds of `next..=last`, in order; returns the first
    /// sequence it could not cover. A problem reading the journal is logged unless in `warned`.
    async fn backfill(&mut self, mut next: u64, last: u64, warned: &mut Vec<String>) -> anyhow::Result<u64> {
        let mut warn = |problem: String| {
            if !warned.contains(&problem) {
                tracing::warn!("backfill of {next}..={last}: {problem}");
                warned.push(problem);
            }
        };
        let dir = self.config.journal_dir.clone();
        let files = match qilin_journal::journal_files(&dir, &self.feed) {
            Ok(files) => files,
            Err(e) => {
                warn(e.to_string());
                return Ok(next);
            }
        };
        // Read again every time: a rotation's new version is taken when the operator renders it.
        let keys = match crate::journal_keys(&self.config.journal_key_files) {
            Ok(keys) => keys,
            Err(e) => {
                warn(format!("{e:#}"));
                return Ok(next);
            }
        };
        // Open from the newest day back to the file that holds `next` (its header's base is
        // below it), not every day of the directory: this runs again every 20 ms while waiting.
        let mut readers = Vec::new();
        for file in files.iter().rev() {
            match qilin_journal::JournalReader::open_keyed(&file.path, keys.clone()) {
                Ok(r) => {
                    let holds_next = r.header().base_sequence < next;
                    readers.push(r);
                    if holds_next {
                        break;
                    }
                }
                Err(e) => warn(e.to_string()),
            }
        }
        readers.reverse();
        for reader in &mut readers {
            loop {
                match reader.next_entry() {
                    Ok(Some(qilin_journal::Entry::Tick(tick))) => {
                        if tick.sequence < next {
                            continue;
                        }
                        if tick.sequence != next || tick.sequence > last {
                            return Ok(next);
                        }
                        self.tick = tick;
                        self.send_tick().await?;
                        self.bound_window().await?;
                        self.counters.backfilled += 1;
                        next += 1;
                    }
                    Ok(Some(qilin_journal::Entry::Gap(gap))) => {
                        if gap.last < next {
                            continue;
                        }
                        if gap.first > next {
                            return Ok(next);
                        }
                        let end = gap.last.min(last);
                        self.send_gap(next, end).await?;
                        next = end + 1;
                    }
                    // The end, or the block the recorder is writing right now: try again later.
                    Ok(None) | Err(_) => break,
                }
                if next > last {
                    return Ok(next);
                }
            }
        }
        Ok(next)
    }
}
