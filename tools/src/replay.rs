//! `qilinctl replay`: checks the journal (every block of every file, [`qilin_journal::verify`]) and
//! says how to run the `qilin-core` binary installed next to qilinctl with its `replay` source.
//! qilinctl never links the core: it executes it.
//!
//! The core's `--replay` takes one journal file or a directory, whose files of one feed it reads in
//! day order (a directory holding several feeds' journals needs the core's `source.replay.feed`
//! config key). So a directory is handed over as it is when it holds only the chosen feed's files
//! and every day is asked for; one chosen day is handed over as its file; anything else is refused
//! with what to do instead.

use std::path::{Path, PathBuf};

use qilin_journal::{Summary, journal_files, verify_keyed};
use serde_json::{Value, json};

use crate::journal_cli::{CliError, JournalSel};

/// What replay will do.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayPlan {
    /// The path given to `qilin-core --replay`.
    pub replay_path: PathBuf,
    /// Every file checked, with what it holds.
    pub verified: Vec<(PathBuf, Summary)>,
}

impl ReplayPlan {
    /// Ticks in all files.
    pub fn ticks(&self) -> u64 {
        self.verified.iter().map(|(_, s)| s.ticks).sum()
    }

    /// The audit action describing the checked files.
    pub fn verified_json(&self) -> Value {
        let files: Vec<Value> = self
            .verified
            .iter()
            .map(|(path, s)| {
                json!({
                    "file": path.display().to_string(), "feed": s.header.feed, "trading_day": s.header.trading_day,
                    "ticks": s.ticks, "gaps": s.gaps, "gap_sequences": s.gap_sequences,
                    "first_sequence": s.header.base_sequence + 1, "last_sequence": s.last_sequence,
                })
            })
            .collect();
        json!({ "verified": files })
    }
}

/// Verifies the journal and decides what to hand to the core.
pub fn plan(sel: &JournalSel) -> Result<ReplayPlan, CliError> {
    let files = sel.files()?;
    let mut verified = Vec::new();
    for path in &files {
        sel.open(path)?;
        verified.push((path.clone(), verify_keyed(path, crate::journal_cli::keys())?));
    }
    let replay_path = match sel {
        JournalSel::File(path) => path.clone(),
        JournalSel::Dir { .. } if files.len() == 1 => files[0].clone(),
        JournalSel::Dir { dir, feed, days } => {
            let others = other_feeds(dir, feed);
            if *days != (0..=u32::MAX) {
                return Err(CliError(format!(
                    "qilin-core replays one journal file or a whole directory: choose one trading day \
                     (--day YYYYMMDD) or all of them (--day all), not {}..={}",
                    days.start(),
                    days.end()
                )));
            }
            if !others.is_empty() {
                return Err(CliError(format!(
                    "{} also holds journals of feed(s) {}: qilin-core picks a directory's feed only from its \
                     config (source.replay.feed); replay one day with --day, or move {feed:?}'s files to \
                     their own directory",
                    dir.display(),
                    others.join(", ")
                )));
            }
            dir.clone()
        }
    };
    Ok(ReplayPlan { replay_path, verified })
}

/// Feeds other than `feed` with journal files in `dir`.
fn other_feeds(dir: &Path, feed: &str) -> Vec<String> {
    let mut feeds: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (f, day) = name.strip_suffix(".qj")?.rsplit_once('-')?;
            (day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit()) && f != feed).then(|| f.to_owned())
        })
        .filter(|f| journal_files(dir, f).is_ok_and(|v| !v.is_empty()))
        .collect();
    feeds.sort();
    feeds.dedup();
    feeds
}

/// The `qilin-core` binary next to the running executable.
pub fn core_beside_self() -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError(format!("finding qilinctl's own path: {e}")))?;
    Ok(exe.with_file_name("qilin-core"))
}

#[cfg(test)]
mod tests {
    use qilin_journal::{JournalWriter, WriterOptions, file_path};
    use qilin_shm::TickRecord;

    use super::*;

    fn journal(dir: &Path, feed: &str, day: u32) {
        let (mut w, _) = JournalWriter::open(dir, feed, day, 0, WriterOptions::default()).unwrap();
        let mut t = TickRecord::ZERO;
        t.sequence = 1;
        w.append_tick(&t).unwrap();
        w.finish().unwrap();
    }

    fn sel(dir: &Path, feed: &str, days: std::ops::RangeInclusive<u32>) -> JournalSel {
        JournalSel::Dir { dir: dir.to_owned(), feed: feed.into(), days }
    }

    #[test]
    fn what_the_core_is_given() {
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path(), "a", 20250512);
        journal(dir.path(), "a", 20250513);
        // One feed, every day: the directory.
        let all = plan(&sel(dir.path(), "a", 0..=u32::MAX)).unwrap();
        assert_eq!(all.replay_path, dir.path());
        assert_eq!((all.verified.len(), all.ticks()), (2, 2));
        // One day: its file.
        let one = plan(&sel(dir.path(), "a", 20250513..=20250513)).unwrap();
        assert_eq!(one.replay_path, file_path(dir.path(), "a", 20250513));
        // Some days of several: the core cannot be told.
        let e = plan_err(&sel(dir.path(), "a", 20250501..=20250513));
        assert!(e.contains("choose one trading day"), "{e}");
        // Another feed beside: the core could not pick the feed from the directory.
        journal(dir.path(), "b", 20250512);
        let e = plan_err(&sel(dir.path(), "a", 0..=u32::MAX));
        assert!(e.contains("feed(s) b") && e.contains("source.replay.feed"), "{e}");
        // No journal of the feed at all.
        let e = plan_err(&sel(dir.path(), "zz", 0..=u32::MAX));
        assert!(e.contains("no journal of feed \"zz\""), "{e}");
    }

    fn plan_err(sel: &JournalSel) -> String {
        plan(sel).unwrap_err().to_string()
    }
}
