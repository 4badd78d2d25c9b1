//! The `replay` source: ticks from the journal files the recorder wrote (or a CSV import of them),
//! fed to the hot thread as already-normalized records, as fast as possible or paced at the
//! original speed times a factor.
//!
//! A replayed tick keeps every market field, its exchange and receive timestamps and its quality
//! flags: replaying a journal reproduces the same records in the same order. The feed assigns its
//! own `sequence`, `instrument_index` (from this segment's directory) and `publish_ns`, and marks
//! the `source` as `replay`. Gap records of the journal are counted and logged, not replayed.
//!
//! The reader thread waits when the queue to the hot thread is full (a replay loses nothing);
//! pacing follows the original receive times (`receive_ns`), so bursts replay as bursts.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use qilin_journal::{DirReader, Entry, JournalError, JournalReader, Keyring};
use qilin_shm::TickRecord;

use crate::config::ReplayConfig;

/// Where replayed entries come from.
pub enum Entries {
    /// One journal file.
    File(JournalReader),
    /// A feed's journal files in a directory, by trading day.
    Dir(DirReader),
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entries::File(_) => "Entries::File",
            Entries::Dir(_) => "Entries::Dir",
        })
    }
}

impl Entries {
    /// Opens `config.path`: a journal file, or a directory holding the journal files of
    /// `config.feed` (or of its only feed when `feed` is empty).
    pub fn open(config: &ReplayConfig) -> Result<Entries, String> {
        let path = &config.path;
        if path.as_os_str().is_empty() {
            return Err("source.replay.path is empty: give a journal file or directory".into());
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("source.replay.path {}: {e}", path.display()))?;
        let keys = if config.key_files.is_empty() {
            None
        } else {
            let ring =
                Keyring::from_key_files(&config.key_files).map_err(|e| format!("source.replay.key_files: {e}"))?;
            Some(Arc::new(ring))
        };
        if meta.is_file() {
            return JournalReader::open_keyed(path, keys).map(Entries::File).map_err(|e| e.to_string());
        }
        let feed = if config.feed.is_empty() { only_feed(path)? } else { config.feed.clone() };
        let reader = DirReader::open_keyed(path, &feed, 0..=u32::MAX, keys).map_err(|e| e.to_string())?;
        Ok(Entries::Dir(reader))
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, JournalError> {
        match self {
            Entries::File(r) => r.next_entry(),
            Entries::Dir(r) => r.next_entry(),
        }
    }
}

/// The feed of the journal files in `dir`, if there is exactly one.
fn only_feed(dir: &Path) -> Result<String, String> {
    let mut feeds: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("source.replay.path {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".qj")?;
            let (feed, day) = stem.rsplit_once('-')?;
            (day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit())).then(|| feed.to_owned())
        })
        .collect();
    feeds.sort();
    feeds.dedup();
    match feeds.len() {
        1 => Ok(feeds.remove(0)),
        0 => Err(format!("source.replay.path {}: no journal files (<feed>-<YYYYMMDD>.qj)", dir.display())),
        _ => Err(format!(
            "source.replay.path {}: journal files of several feeds ({}); set source.replay.feed",
            dir.display(),
            feeds.join(", ")
        )),
    }
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Ticks handed to the hot thread.
    pub ticks: u64,
    /// Gap records met (not replayed).
    pub gaps: u64,
    /// Sequences those gaps cover.
    pub gap_sequences: u64,
    /// The error that ended the replay early, if any.
    pub error: Option<String>,
}

/// Reads `entries` and pushes their ticks into `queue`, paced at `speed` × the original rate
/// (`speed <= 0`: as fast as the hot thread takes them). Returns at the end of the journal, on a
/// damaged journal (the error is in the report) or when `stop` is set.
pub fn run(mut entries: Entries, speed: f64, mut queue: rtrb::Producer<TickRecord>, stop: &AtomicBool) -> ReplayReport {
    let mut report = ReplayReport::default();
    let mut origin: Option<(i64, Instant)> = None;
    loop {
        let entry = match entries.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(e) => {
                report.error = Some(e.to_string());
                break;
            }
        };
        let tick = match entry {
            Entry::Gap(gap) => {
                report.gaps += 1;
                report.gap_sequences += gap.count();
                tracing::warn!(first = gap.first, last = gap.last, "the journal has a gap here; replaying on");
                continue;
            }
            Entry::Tick(tick) => tick,
        };
        if speed > 0.0 {
            let (t0, wall0) = *origin.get_or_insert((tick.receive_ns, Instant::now()));
            let due = wall0 + Duration::from_nanos(((tick.receive_ns - t0).max(0) as f64 / speed) as u64);
            wait_until(due);
        }
        let mut tick = tick;
        loop {
            match queue.push(tick) {
                Ok(()) => break,
                Err(rtrb::PushError::Full(back)) => {
                    if stop.load(Ordering::Relaxed) {
                        return report;
                    }
                    tick = back;
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        report.ticks += 1;
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    report
}

/// Sleeps most of the way, then spins the last stretch (sleep overshoots by ~50-100 µs).
fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Spawns the replay thread; it logs its report when it ends.
pub fn spawn(
    config: &ReplayConfig,
    queue: rtrb::Producer<TickRecord>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<ReplayReport>> {
    let entries = Entries::open(config).map_err(anyhow::Error::msg)?;
    let speed = config.speed;
    let path: PathBuf = config.path.clone();
    let handle = std::thread::Builder::new().name("qilin-replay".into()).spawn(move || {
        let started = Instant::now();
        let report = run(entries, speed, queue, &stop);
        let secs = started.elapsed().as_secs_f64();
        match &report.error {
            None => tracing::info!(
                path = %path.display(), ticks = report.ticks, gaps = report.gaps, seconds = secs,
                "replay finished; the feed stays up"
            ),
            Some(e) => tracing::error!(ticks = report.ticks, "replay stopped early: {e}"),
        }
        report
    })?;
    Ok(handle)
}
