//! Bars from the recorder's journal, offline: the history of a feed's bars, and the check that a
//! replay equals what was published live (the same [`Builder`], the same ticks in the same order,
//! no timer: every bar closed by the ticks, then the rest at the end of the journal).

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use qilin_journal::{DirReader, Entry, Keyring};

use super::{Bar, Builder};

/// Feeds the journal of `feed` in `dir` (trading days `days`) through `builder` and hands every
/// bar to `emit` in order: those the ticks close, then, at the end, the ones still open (unless
/// `keep_open`). An encrypted journal is read with `keys`. Returns the builder (its counters, and
/// its open bars with `keep_open`).
pub fn journal_bars(
    mut builder: Builder,
    dir: &Path,
    feed: &str,
    days: std::ops::RangeInclusive<u32>,
    keys: Option<Arc<Keyring>>,
    keep_open: bool,
    mut emit: impl FnMut(&Bar),
) -> anyhow::Result<Builder> {
    let mut journal =
        DirReader::open_keyed(dir, feed, days, keys).with_context(|| format!("journal {}", dir.display()))?;
    let mut out = Vec::new();
    while let Some(entry) = journal.next_entry().with_context(|| format!("journal {}", dir.display()))? {
        match entry {
            Entry::Tick(t) => builder.on_tick(&t, &mut out),
            Entry::Gap(_) => builder.gap(),
        }
        out.drain(..).for_each(|b| emit(&b));
    }
    if !keep_open {
        builder.close_all(&mut out);
        out.drain(..).for_each(|b| emit(&b));
    }
    Ok(builder)
}
