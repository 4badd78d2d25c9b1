//! Reading journals: one file ([`JournalReader`]) or a feed's files over a range of trading days
//! ([`DirReader`]), as a stream of [`Entry`] in sequence order. Every block is verified before its
//! entries are handed out; damage ends the stream with an error naming the file and byte offset.
//! Replay, export and the data-quality report are built on these.

use std::{
    fs::{self, File},
    ops::RangeInclusive,
    path::{Path, PathBuf},
    sync::Arc,
};

use qilin_shm::TickRecord;
use zerocopy::FromBytes;

use crate::{
    blocks::{self, Block, BlockStream, Step},
    crypt::{KeyUnavailable, Keyring},
    error::JournalError,
    format::{EXTENSION, FileHeader, Gap, RECORD_SIZE, valid_trading_day},
};

/// One entry of a journal.
// Ticks are nearly every entry: boxing the record would allocate per tick to shrink the rare gap.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry {
    /// A tick, byte for byte as the segment held it.
    Tick(TickRecord),
    /// Sequences that are not in the journal.
    Gap(Gap),
}

impl Entry {
    /// First sequence the entry covers.
    pub fn first_sequence(&self) -> u64 {
        match self {
            Entry::Tick(t) => t.sequence,
            Entry::Gap(g) => g.first,
        }
    }

    /// Last sequence the entry covers.
    pub fn last_sequence(&self) -> u64 {
        match self {
            Entry::Tick(t) => t.sequence,
            Entry::Gap(g) => g.last,
        }
    }
}

/// `<feed>-<YYYYMMDD>.qj`.
pub fn file_name(feed: &str, trading_day: u32) -> String {
    format!("{feed}-{trading_day:08}.{EXTENSION}")
}

/// `<dir>/<feed>-<YYYYMMDD>.qj`.
pub fn file_path(dir: &Path, feed: &str, trading_day: u32) -> PathBuf {
    dir.join(file_name(feed, trading_day))
}

/// A journal file found in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalFile {
    /// Its path.
    pub path: PathBuf,
    /// Its trading day (from the name).
    pub trading_day: u32,
}

/// The journal files of `feed` in `dir`, by trading day. A missing directory has none.
pub fn journal_files(dir: &Path, feed: &str) -> Result<Vec<JournalFile>, JournalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io(dir, "listing the journal directory", e)),
    };
    let prefix = format!("{feed}-");
    let suffix = format!(".{EXTENSION}");
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io(dir, "listing the journal directory", e))?;
        let name = entry.file_name();
        let Some(day) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(&suffix))
            .filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
            .filter(|d| valid_trading_day(*d))
        else {
            continue;
        };
        files.push(JournalFile { path: entry.path(), trading_day: day });
    }
    files.sort_by_key(|f| f.trading_day);
    Ok(files)
}

/// The entries of one journal file, in order.
///
/// ```
/// # use qilin_journal::*;
/// # use qilin_shm::TickRecord;
/// # let dir = tempfile::tempdir()?;
/// let (mut writer, _) = JournalWriter::open(dir.path(), "doc", 20260302, 0, WriterOptions::default())?;
/// let mut tick = TickRecord::ZERO;
/// for sequence in 1..=3 {
///     tick.sequence = sequence;
///     writer.append_tick(&tick)?;
/// }
/// writer.append_gap(4, 9, GapReason::Lapped)?;
/// writer.finish()?;
///
/// let mut reader = JournalReader::open(file_path(dir.path(), "doc", 20260302))?;
/// assert_eq!(reader.header().trading_day, 20260302);
/// let entries: Vec<Entry> = reader.collect::<Result<_, _>>()?;
/// assert!(matches!(entries[2], Entry::Tick(t) if t.sequence == 3));
/// assert!(matches!(entries[3], Entry::Gap(g) if (g.first, g.last) == (4, 9)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JournalReader {
    path: PathBuf,
    header: FileHeader,
    stream: BlockStream,
    /// Records of the current ticks block not yet handed out: `payload[next..]`.
    next: usize,
    pending_gap: Option<Gap>,
    done: bool,
}

impl std::fmt::Debug for JournalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalReader").field("path", &self.path).field("offset", &self.stream.offset).finish()
    }
}

impl JournalReader {
    /// Opens a file and checks its header (magic, checksum, format and layout version, fingerprint).
    /// An encrypted file needs [`open_keyed`](Self::open_keyed).
    pub fn open(path: impl AsRef<Path>) -> Result<JournalReader, JournalError> {
        Self::open_keyed(path, None)
    }

    /// Opens a file that may be encrypted, with the `journal-encryption` keys in `keys`: the
    /// header's key version must be there and pass the key check, else the error names the
    /// version; each block is opened with the version it names. An unencrypted file reads as with
    /// [`open`](Self::open), whatever `keys` holds.
    pub fn open_keyed(path: impl AsRef<Path>, keys: Option<Arc<Keyring>>) -> Result<JournalReader, JournalError> {
        let path = path.as_ref().to_owned();
        let file = File::open(&path).map_err(|e| JournalError::io(&path, "opening the file", e))?;
        let (header, raw) = blocks::read_header_raw(&file, &path)?;
        if let (Some(e), None) = (&header.encryption, &keys) {
            return Err(JournalError::KeyUnavailable {
                path,
                version: e.key_version,
                what: "the file".into(),
                why: KeyUnavailable::NoKeys,
            });
        }
        let sealed = blocks::sealing(&header, &raw, &path, keys.as_ref())?;
        let stream =
            BlockStream::new(file, header.base_sequence, sealed).map_err(|e| JournalError::io(&path, "reading", e))?;
        Ok(JournalReader { path, header, stream, next: 0, pending_gap: None, done: false })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file header (feed, trading day, base sequence, layout).
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// The sequence the next entry starts with.
    pub fn next_sequence(&self) -> u64 {
        let unread = (self.stream.payload.len().saturating_sub(self.next) / RECORD_SIZE) as u64;
        match self.pending_gap {
            Some(gap) => gap.first,
            None => self.stream.next_sequence - unread,
        }
    }

    /// The next entry; `Ok(None)` at the clean end of the file. After an error it returns `Ok(None)`.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, JournalError> {
        let mut tick = TickRecord::ZERO;
        Ok(match self.next_into(&mut tick)? {
            None => None,
            Some(None) => Some(Entry::Tick(tick)),
            Some(Some(gap)) => Some(Entry::Gap(gap)),
        })
    }

    /// The next entry without building an [`Entry`]: a tick is copied into `tick` and
    /// `Some(None)` returned; a gap is returned as `Some(Some(gap))`; `None` at the end.
    pub fn next_into(&mut self, tick: &mut TickRecord) -> Result<Option<Option<Gap>>, JournalError> {
        loop {
            if let Some(gap) = self.pending_gap.take() {
                return Ok(Some(Some(gap)));
            }
            if self.next < self.stream.payload.len() {
                let record = &self.stream.payload[self.next..self.next + RECORD_SIZE];
                *tick = TickRecord::read_from_bytes(record).expect("a record is 376 bytes");
                self.next += RECORD_SIZE;
                return Ok(Some(None));
            }
            if self.done {
                return Ok(None);
            }
            self.stream.payload.clear();
            self.next = 0;
            let step = self.stream.next().map_err(|e| {
                self.done = true;
                JournalError::io(&self.path, "reading", e)
            })?;
            match step {
                Step::Block(Block::Ticks { .. }) => {}
                Step::Block(Block::Gap(gap)) => {
                    self.stream.payload.clear();
                    self.pending_gap = Some(gap);
                }
                Step::End => self.done = true,
                Step::Problem(problem) => {
                    self.done = true;
                    self.stream.payload.clear();
                    return Err(blocks::classify(self.stream.file(), &self.path, problem));
                }
                Step::Refused(refusal) => {
                    self.done = true;
                    return Err(refusal.into_error(&self.path));
                }
            }
        }
    }
}

impl Iterator for JournalReader {
    type Item = Result<Entry, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

/// What a whole file holds, from [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The file header.
    pub header: FileHeader,
    /// Blocks.
    pub blocks: u64,
    /// Tick records.
    pub ticks: u64,
    /// Gap records.
    pub gaps: u64,
    /// Sequences covered by gap records.
    pub gap_sequences: u64,
    /// Last sequence in the file (the header's base sequence if it holds no entry).
    pub last_sequence: u64,
    /// File length in bytes.
    pub bytes: u64,
    /// Encrypted files: whether every block was opened with its key (`false`: structure and CRCs
    /// checked, the sealed records not). Always `true` for an unencrypted file.
    pub authenticated: bool,
}

/// Verifies every block of a file (read-only) and says what it holds. Any damage, including a torn
/// tail, is an error naming the byte offset. An encrypted file is checked without its key (lengths,
/// CRCs, block sequences, gap records; not the sealed records): [`verify_keyed`] opens every block.
pub fn verify(path: impl AsRef<Path>) -> Result<Summary, JournalError> {
    verify_keyed(path, None)
}

/// [`verify`], opening every block of an encrypted file with `keys` (a missing or wrong key, or a
/// block that does not authenticate, is an error naming the version).
pub fn verify_keyed(path: impl AsRef<Path>, keys: Option<Arc<Keyring>>) -> Result<Summary, JournalError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| JournalError::io(path, "opening the file", e))?;
    let (header, raw) = blocks::read_header_raw(&file, path)?;
    let sealed = blocks::sealing(&header, &raw, path, keys.as_ref())?;
    let authenticated = sealed.as_ref().is_none_or(|s| s.keys.is_some());
    let mut stream =
        BlockStream::new(file, header.base_sequence, sealed).map_err(|e| JournalError::io(path, "reading", e))?;
    let mut summary = Summary {
        blocks: 0,
        ticks: 0,
        gaps: 0,
        gap_sequences: 0,
        last_sequence: header.base_sequence,
        bytes: 0,
        authenticated,
        header,
    };
    loop {
        match stream.next().map_err(|e| JournalError::io(path, "reading", e))? {
            Step::Block(block) => {
                summary.blocks += 1;
                summary.last_sequence = block.last_sequence();
                match block {
                    Block::Ticks { count, .. } => summary.ticks += u64::from(count),
                    Block::Gap(gap) => {
                        summary.gaps += 1;
                        summary.gap_sequences += gap.count();
                    }
                }
            }
            Step::End => break,
            Step::Problem(problem) => return Err(blocks::classify(stream.file(), path, problem)),
            Step::Refused(refusal) => return Err(refusal.into_error(path)),
        }
    }
    summary.bytes = stream.offset;
    Ok(summary)
}

/// The entries of a feed's journal files over a range of trading days, file after file in day
/// order. Each file is read as [`JournalReader`] reads it; [`current`](Self::current) says which
/// file the last entry came from. Files continue each other's sequences when one recorder wrote
/// them (each header's `base_sequence` is the previous file's last sequence).
#[derive(Debug)]
pub struct DirReader {
    feed: String,
    keys: Option<Arc<Keyring>>,
    files: std::vec::IntoIter<JournalFile>,
    current: Option<JournalReader>,
    failed: bool,
}

impl DirReader {
    /// The files of `feed` in `dir` whose trading day is in `days`.
    pub fn open(dir: &Path, feed: &str, days: RangeInclusive<u32>) -> Result<DirReader, JournalError> {
        Self::open_keyed(dir, feed, days, None)
    }

    /// [`open`](Self::open), reading encrypted files with `keys` ([`JournalReader::open_keyed`]).
    pub fn open_keyed(
        dir: &Path,
        feed: &str,
        days: RangeInclusive<u32>,
        keys: Option<Arc<Keyring>>,
    ) -> Result<DirReader, JournalError> {
        let files: Vec<JournalFile> =
            journal_files(dir, feed)?.into_iter().filter(|f| days.contains(&f.trading_day)).collect();
        Ok(DirReader { feed: feed.to_owned(), keys, files: files.into_iter(), current: None, failed: false })
    }

    /// The file being read.
    pub fn current(&self) -> Option<&JournalReader> {
        self.current.as_ref()
    }

    /// The next entry, opening the next file when one ends; `Ok(None)` after the last file.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, JournalError> {
        if self.failed {
            return Ok(None);
        }
        loop {
            if let Some(reader) = &mut self.current {
                match reader.next_entry() {
                    Ok(Some(entry)) => return Ok(Some(entry)),
                    Ok(None) => self.current = None,
                    Err(e) => {
                        self.failed = true;
                        return Err(e);
                    }
                }
            }
            let Some(file) = self.files.next() else { return Ok(None) };
            match JournalReader::open_keyed(&file.path, self.keys.clone()) {
                Ok(reader) if reader.header.feed != self.feed || reader.header.trading_day != file.trading_day => {
                    self.failed = true;
                    return Err(JournalError::WrongFile {
                        path: file.path,
                        found_feed: reader.header.feed.clone(),
                        found_day: reader.header.trading_day,
                        feed: self.feed.clone(),
                        day: file.trading_day,
                    });
                }
                Ok(reader) => self.current = Some(reader),
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
    }
}

impl Iterator for DirReader {
    type Item = Result<Entry, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}
