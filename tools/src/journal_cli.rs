//! `qilinctl export --csv` and `qilinctl import --csv`: journals to CSV and back (format in
//! docs/CSV.md, codec in [`crate::tick_csv`]), and the choice of journal files shared with
//! `replay` and `quality` ([`JournalSel`]).
//!
//! Import is all or nothing: the file is read twice (once to check every row and decide the
//! sequence numbers, once to write), the journals are written under a temporary directory beside
//! the target and renamed into place only when every one of them is complete.

use std::{
    fs,
    io::Write,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use qilin_market::{Date, Market};

use crate::tick_csv::{CsvError, Derived, EncodeError, TickCsvReader, TickCsvWriter};
use qilin_journal::{
    Entry, FsyncPolicy, JournalError, JournalReader, JournalWriter, Keyring, WriterOptions, file_path, journal_files,
    valid_feed,
};

/// The `journal-encryption` keys this command was given (`--key-file`, `--keys`), for every journal
/// it opens ([`JournalSel::open`], [`keys`]). Set once, before any journal is read.
static KEYS: OnceLock<Arc<Keyring>> = OnceLock::new();

/// Gives the command's journal readers `ring` (the first call wins).
pub fn use_keys(ring: Keyring) {
    let _ = KEYS.set(Arc::new(ring));
}

/// The keys given with [`use_keys`], if any: encrypted journals are read with them.
pub fn keys() -> Option<Arc<Keyring>> {
    KEYS.get().cloned()
}

/// An error of a journal command, ready to print.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl From<JournalError> for CliError {
    fn from(e: JournalError) -> Self {
        CliError(e.to_string())
    }
}

impl From<CsvError> for CliError {
    fn from(e: CsvError) -> Self {
        CliError(e.to_string())
    }
}

impl From<EncodeError> for CliError {
    fn from(e: EncodeError) -> Self {
        CliError(e.to_string())
    }
}

type Result<T> = std::result::Result<T, CliError>;

/// `YYYYMMDD`, `YYYYMMDD..YYYYMMDD` or `all`.
pub fn parse_days(text: &str) -> std::result::Result<RangeInclusive<u32>, String> {
    let day = |t: &str| Date::parse(t).map(|d| d.ymd).ok_or_else(|| format!("{t:?} is not a YYYYMMDD date"));
    match text {
        "all" => Ok(0..=u32::MAX),
        _ => match text.split_once("..") {
            Some((a, b)) => Ok(day(a)?..=day(b)?),
            None => day(text).map(|d| d..=d),
        },
    }
}

/// Which journal files a command reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalSel {
    /// One file.
    File(PathBuf),
    /// The files of `feed` in `dir` whose trading day is in `days`.
    Dir {
        /// Journal directory.
        dir: PathBuf,
        /// Feed name.
        feed: String,
        /// Trading days.
        days: RangeInclusive<u32>,
    },
}

impl JournalSel {
    /// The files, by trading day. No file at all is an error naming what was looked for.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        match self {
            JournalSel::File(path) => Ok(vec![path.clone()]),
            JournalSel::Dir { dir, feed, days } => {
                let files: Vec<PathBuf> = journal_files(dir, feed)?
                    .into_iter()
                    .filter(|f| days.contains(&f.trading_day))
                    .map(|f| f.path)
                    .collect();
                if files.is_empty() {
                    let which = if *days == (0..=u32::MAX) {
                        String::new()
                    } else {
                        format!(" for trading days {}..={}", days.start(), days.end())
                    };
                    return Err(CliError(format!(
                        "no journal of feed {feed:?} in {}{which} (files {feed}-YYYYMMDD.qj)",
                        dir.display()
                    )));
                }
                Ok(files)
            }
        }
    }

    /// Opens one of [`files`](Self::files), checking that a directory's file is the feed's and day's
    /// its name says.
    pub fn open(&self, path: &Path) -> Result<JournalReader> {
        let reader = JournalReader::open_keyed(path, keys())?;
        if let JournalSel::Dir { feed, .. } = self {
            let h = reader.header();
            let expected = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if h.feed != *feed || qilin_journal::file_name(&h.feed, h.trading_day) != expected {
                return Err(CliError(format!(
                    "journal {} holds feed {:?} day {}, not what its name says",
                    path.display(),
                    h.feed,
                    h.trading_day
                )));
            }
        }
        Ok(reader)
    }
}

/// Reads every entry of a file; a torn tail (a file the recorder may be writing right now) ends
/// the file early and is reported through the returned note instead of failing.
pub fn for_each_entry(reader: &mut JournalReader, mut f: impl FnMut(Entry) -> Result<()>) -> Result<Option<String>> {
    loop {
        match reader.next_entry() {
            Ok(Some(entry)) => f(entry)?,
            Ok(None) => return Ok(None),
            Err(e @ JournalError::TornTail { .. }) => {
                return Ok(Some(format!("{e}; read up to there (is the recorder writing this file?)")));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Journal files read.
    pub files: usize,
    /// Ticks written.
    pub ticks: u64,
    /// Ticks of other instruments left out.
    pub filtered: u64,
    /// Gap records met (a CSV has no place for them: the sequence column shows the holes).
    pub gaps: u64,
    /// Sequences those gap records cover.
    pub gap_sequences: u64,
    /// Torn tails met, one note each.
    pub notes: Vec<String>,
}

/// Writes the ticks of `sel` (only `instruments`, if any) as CSV to `out`.
pub fn export(sel: &JournalSel, instruments: &[String], out: impl Write) -> Result<ExportReport> {
    let files = sel.files()?;
    let mut writer = TickCsvWriter::new(out)?;
    let mut report = ExportReport::default();
    for path in &files {
        let mut reader = sel.open(path)?;
        report.files += 1;
        let note = for_each_entry(&mut reader, |entry| {
            match entry {
                Entry::Tick(t) => {
                    let wanted = instruments.is_empty()
                        || t.instrument_id_str().is_some_and(|id| instruments.iter().any(|i| i == id));
                    if wanted {
                        writer.write(&t)?;
                        report.ticks += 1;
                    } else {
                        report.filtered += 1;
                    }
                }
                Entry::Gap(g) => {
                    report.gaps += 1;
                    report.gap_sequences += g.count();
                }
            }
            Ok(())
        })?;
        report.notes.extend(note);
    }
    writer.finish()?.flush().map_err(|e| CliError(format!("writing the CSV: {e}")))?;
    Ok(report)
}

/// [`export`] into a file, written under a temporary name and renamed when complete.
pub fn export_to_file(sel: &JournalSel, instruments: &[String], out: &Path) -> Result<ExportReport> {
    let tmp = tmp_name(out);
    let result = (|| {
        let file = fs::File::create(&tmp).map_err(|e| CliError(format!("creating {}: {e}", tmp.display())))?;
        let report = export(sel, instruments, std::io::BufWriter::with_capacity(1 << 20, &file))?;
        file.sync_all().map_err(|e| CliError(format!("syncing {}: {e}", tmp.display())))?;
        fs::rename(&tmp, out).map_err(|e| CliError(format!("renaming {} to {}: {e}", tmp.display(), out.display())))?;
        Ok(report)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// One journal file an import wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedDay {
    /// Trading day.
    pub trading_day: u32,
    /// The journal file.
    pub path: PathBuf,
    /// First and last sequence.
    pub sequences: (u64, u64),
    /// Ticks.
    pub ticks: u64,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows read.
    pub rows: u64,
    /// Journals written, by trading day.
    pub days: Vec<ImportedDay>,
    /// The file's `sequence` column was used (present and contiguous).
    pub kept_sequences: bool,
    /// Why the sequence column was not used, if the file has one.
    pub renumbered_because: Option<String>,
    /// Journals replaced (`--force`).
    pub replaced: Vec<PathBuf>,
    /// What the file lacked and what was derived.
    pub derived: Derived,
}

/// What to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The CSV file.
    pub input: PathBuf,
    /// Journal directory.
    pub dir: PathBuf,
    /// Feed name of the journals.
    pub feed: String,
    /// Replace existing journals of the same days.
    pub force: bool,
    /// The core's product file, for vendor files.
    pub products: Option<Market>,
}

/// Imports a CSV file into one journal per trading day. Nothing is written unless every row is
/// good and no journal would be overwritten (without `force`).
pub fn import(options: &ImportOptions) -> Result<ImportReport> {
    if !valid_feed(&options.feed) {
        return Err(CliError(format!("feed name {:?}: 1 to 31 characters of [A-Za-z0-9_-]", options.feed)));
    }
    let open = || TickCsvReader::open(&options.input, options.products.clone());

    // Pass 1: every row parsed and checked; trading days in order; sequence column contiguous?
    let mut reader = open()?;
    let has_sequence = reader.has_column("sequence");
    let mut report = ImportReport::default();
    let (mut prev_day, mut prev_seq, mut days) = (0u32, 0u64, Vec::<u32>::new());
    let mut contiguous = has_sequence;
    while let Some(t) = reader.next_tick()? {
        report.rows += 1;
        if t.trading_day < prev_day {
            return Err(CliError(format!(
                "{}: line {}: trading day {} after {}: the rows must be in trading-day order (one journal per day)",
                options.input.display(),
                reader.line(),
                t.trading_day,
                prev_day
            )));
        }
        if t.trading_day != prev_day {
            days.push(t.trading_day);
            prev_day = t.trading_day;
        }
        let follows = if report.rows == 1 { t.sequence != 0 } else { prev_seq.checked_add(1) == Some(t.sequence) };
        if contiguous && !follows {
            contiguous = false;
            report.renumbered_because = Some(format!(
                "line {}: sequence {} does not follow {prev_seq}; ticks numbered from 1 in file order",
                reader.line(),
                t.sequence
            ));
        }
        prev_seq = t.sequence;
    }
    if report.rows == 0 {
        return Err(CliError(format!("{}: no tick rows: nothing imported", options.input.display())));
    }
    report.kept_sequences = contiguous;
    report.derived = reader.derived().clone();

    // Targets: refuse to overwrite (or a file a writer holds, even with --force).
    for day in &days {
        let target = file_path(&options.dir, &options.feed, *day);
        if target.exists() {
            if !options.force {
                return Err(CliError(format!(
                    "{} exists: not overwritten (give --force to replace it)",
                    target.display()
                )));
            }
            let file = fs::File::open(&target).map_err(|e| CliError(format!("opening {}: {e}", target.display())))?;
            if file.try_lock().is_err() {
                return Err(CliError(format!(
                    "{} is being written (a recorder holds its lock): not replaced",
                    target.display()
                )));
            }
            report.replaced.push(target);
        }
    }

    // Pass 2: write under a temporary directory, then rename into place.
    fs::create_dir_all(&options.dir)
        .map_err(|e| CliError(format!("creating the journal directory {}: {e}", options.dir.display())))?;
    let tmp_dir = options.dir.join(format!(".import-{}-{}.tmp", options.feed, std::process::id()));
    let written = write_journals(options, &tmp_dir, contiguous, &mut report);
    let renamed = written.and_then(|()| {
        for day in &report.days {
            let from = file_path(&tmp_dir, &options.feed, day.trading_day);
            fs::rename(&from, &day.path)
                .map_err(|e| CliError(format!("renaming {} to {}: {e}", from.display(), day.path.display())))?;
        }
        fs::File::open(&options.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CliError(format!("syncing {}: {e}", options.dir.display())))
    });
    let _ = fs::remove_dir_all(&tmp_dir);
    renamed.map(|()| report)
}

fn write_journals(options: &ImportOptions, tmp_dir: &Path, keep: bool, report: &mut ImportReport) -> Result<()> {
    let writer_options =
        WriterOptions { block_records: 4096, max_block_age: std::time::Duration::MAX, fsync: FsyncPolicy::Never };
    let mut reader = TickCsvReader::open(&options.input, options.products.clone())?;
    let mut current: Option<(JournalWriter, ImportedDay)> = None;
    let mut next_sequence = 1u64;
    let finish = |(writer, day): (JournalWriter, ImportedDay), report: &mut ImportReport| -> Result<()> {
        writer.finish()?;
        report.days.push(day);
        Ok(())
    };
    while let Some(mut tick) = reader.next_tick()? {
        if !keep {
            tick.sequence = next_sequence;
        }
        next_sequence = tick.sequence.wrapping_add(1);
        if current.as_ref().is_none_or(|(_, day)| day.trading_day != tick.trading_day) {
            if let Some(done) = current.take() {
                finish(done, report)?;
            }
            let (writer, _) =
                JournalWriter::open(tmp_dir, &options.feed, tick.trading_day, tick.sequence - 1, writer_options)?;
            let day = ImportedDay {
                trading_day: tick.trading_day,
                path: file_path(&options.dir, &options.feed, tick.trading_day),
                sequences: (tick.sequence, tick.sequence),
                ticks: 0,
            };
            current = Some((writer, day));
        }
        let (writer, day) = current.as_mut().expect("opened above");
        writer.append_tick(&tick)?;
        day.sequences.1 = tick.sequence;
        day.ticks += 1;
    }
    if let Some(done) = current.take() {
        finish(done, report)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_selections() {
        assert_eq!(parse_days("20250512"), Ok(20250512..=20250512));
        assert_eq!(parse_days("20250501..20250512"), Ok(20250501..=20250512));
        assert_eq!(parse_days("all"), Ok(0..=u32::MAX));
        assert!(parse_days("2025-05-12").unwrap_err().contains("YYYYMMDD"));
    }
}
