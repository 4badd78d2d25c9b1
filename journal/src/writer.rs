//! The journal writer: appends ticks and gap records to one file, in whole checksummed blocks.
//!
//! **Buffering.** Ticks collect in a block of up to `block_records` records; a block is written
//! with one positional write when it is full, when it is older than `max_block_age` (checked by
//! [`JournalWriter::maintain`], which the owner calls when idle), before a gap record, and on
//! [`flush`](JournalWriter::flush)/[`sync`](JournalWriter::sync). A gap record is held the same
//! way until the next tick (or the same triggers), so gaps that follow each other directly (a
//! reader lapped again while catching up, retries while the disk is full) become one record, with
//! the first one's reason. A block is never split across
//! writes by the writer, so the file always ends at a block boundary unless the process or the
//! machine dies mid-write (a torn tail, cut off by the next open).
//!
//! **Durability** ([`FsyncPolicy`]). A written block survives a crash of the process at once (it
//! is in the kernel's page cache); it survives a power cut once `fdatasync` has returned:
//! `Never` leaves that to the kernel's writeback (typically within 30 s), `Interval` syncs at most
//! that long after a block was written, `EveryBlock` syncs after each block. Opening the file
//! again repairs whatever a power cut left: the tail after the last whole block is cut off.
//!
//! **Failure.** A write that fails (ENOSPC above all) leaves the file cut back to the end of its
//! last whole block and drops the entries not yet written: [`JournalWriter::next_sequence`] then
//! says where to resume, and the caller re-reads those sequences (from the segment's ring) once
//! space is back. A failed `fdatasync` or a failed cut-back poisons the writer (the kernel may
//! have dropped written pages, so only a fresh open, which verifies every block, can vouch for
//! the file).

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use qilin_shm::TickRecord;
use zerocopy::IntoBytes;

use crate::{
    blocks::{self, BlockStream, Sealed, Step},
    crypt::{self, JournalKey, KeyUnavailable, NONCE_LEN, Sealer},
    error::{JournalError, is_no_space},
    format::{
        BLOCK_HEADER_SIZE, BlockHeader, FILE_HEADER_SIZE, FORMAT_VERSION_ENCRYPTED, FileHeader, GAP_PAYLOAD_SIZE, Gap,
        GapReason, HeaderEncryption, KIND_GAP, KIND_TICKS, MAX_BLOCK_RECORDS, RECORD_SIZE, finish_block, seal_block,
        valid_feed, valid_trading_day,
    },
    reader::file_path,
};

/// When written blocks are forced to stable storage (`fdatasync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Never by the writer (except [`JournalWriter::sync`]): the kernel writes back on its own
    /// schedule. Fastest; a power cut loses what the kernel had not written yet (a process crash
    /// loses nothing written).
    Never,
    /// At most this long after a block was written (checked on every write and by
    /// [`JournalWriter::maintain`]). A power cut loses at most about this much.
    Interval(Duration),
    /// After every block. A power cut loses at most the block being written; throughput is bound
    /// by the device's flush latency.
    EveryBlock,
}

impl FsyncPolicy {
    /// `never`, `interval` or `every-block`.
    pub fn name(&self) -> &'static str {
        match self {
            FsyncPolicy::Never => "never",
            FsyncPolicy::Interval(_) => "interval",
            FsyncPolicy::EveryBlock => "every-block",
        }
    }
}

/// How a writer buffers and syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// Records per ticks block (1 to [`MAX_BLOCK_RECORDS`]).
    pub block_records: u32,
    /// A partial block is written once its first record is this old ([`JournalWriter::maintain`]).
    pub max_block_age: Duration,
    /// When to `fdatasync`.
    pub fsync: FsyncPolicy,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            block_records: 64,
            max_block_age: Duration::from_millis(20),
            fsync: FsyncPolicy::Interval(Duration::from_millis(200)),
        }
    }
}

/// What opening a file found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The file did not exist (or was empty) and was created.
    pub created: bool,
    /// Whole blocks found.
    pub blocks: u64,
    /// Bytes cut off the end (a torn or damaged tail), 0 if the file ended cleanly.
    pub truncated_bytes: u64,
    /// Where the tail was cut and why.
    pub truncated_at: Option<(u64, String)>,
    /// Last sequence in the file (ticks or gaps), or the header's base sequence if it has none.
    pub last_sequence: u64,
    /// The key version the file was created with, if it is encrypted (an existing file keeps its
    /// format: a file begun unencrypted stays so, whatever key the writer was given).
    pub key_version: Option<u32>,
}

/// Running totals of a writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Blocks written.
    pub blocks: u64,
    /// Bytes written (block headers included).
    pub bytes: u64,
    /// Tick records written.
    pub ticks: u64,
    /// Gap records written.
    pub gaps: u64,
    /// Sequences covered by gap records written.
    pub gap_sequences: u64,
    /// `fdatasync` calls.
    pub fsyncs: u64,
    /// Duration of the last `fdatasync`, ns.
    pub last_fsync_ns: u64,
    /// Longest `fdatasync`, ns.
    pub max_fsync_ns: u64,
}

/// Appends to one journal file. See the module documentation.
#[derive(Debug)]
pub struct JournalWriter {
    path: PathBuf,
    file: File,
    header: FileHeader,
    options: WriterOptions,
    /// Block under construction: header room, then the buffered records.
    block: Vec<u8>,
    buffered: u32,
    /// A gap record not yet written (extended by directly following gaps).
    pending_gap: Option<Gap>,
    block_first: u64,
    block_started: Instant,
    next_sequence: u64,
    written_sequence: u64,
    synced_sequence: u64,
    /// File length: the end of the last whole block.
    len: u64,
    synced_len: u64,
    last_sync: Instant,
    stats: WriterStats,
    poisoned: bool,
    /// Encrypted files: seals each block (its key version, the file's id, the nonce counter).
    sealer: Option<Sealer>,
}

fn check_args(path: &Path, feed: &str, trading_day: u32, options: &WriterOptions) -> Result<(), JournalError> {
    let invalid = |reason: String| Err(JournalError::Invalid { path: path.to_owned(), reason });
    if !valid_feed(feed) {
        return invalid(format!("feed name {feed:?}: 1 to 31 characters of [A-Za-z0-9_-]"));
    }
    if !valid_trading_day(trading_day) {
        return invalid(format!("trading day {trading_day} is not a YYYYMMDD date"));
    }
    if !(1..=MAX_BLOCK_RECORDS).contains(&options.block_records) {
        return invalid(format!("block_records {}: must be 1 to {MAX_BLOCK_RECORDS}", options.block_records));
    }
    Ok(())
}

/// Takes the file's exclusive lock (released when the file is closed): one writer per file.
fn lock(file: &File) -> io::Result<()> {
    file.try_lock().map_err(|e| match e {
        fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
        fs::TryLockError::Error(e) => e,
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl JournalWriter {
    /// Opens the journal of `feed` for `trading_day` in `dir` (`<dir>/<feed>-<YYYYMMDD>.qj`),
    /// creating it (and `dir`) if needed. A new file continues from `base_sequence`; an existing
    /// one is verified block by block, its torn tail cut off, and continues from its own last
    /// sequence (`base_sequence` is then ignored). Damage in the middle of an existing file, a file
    /// of another layout, feed or day are errors and the file is left as it is.
    pub fn open(
        dir: &Path,
        feed: &str,
        trading_day: u32,
        base_sequence: u64,
        options: WriterOptions,
    ) -> Result<(JournalWriter, OpenReport), JournalError> {
        Self::open_keyed(dir, feed, trading_day, base_sequence, options, None)
    }

    /// [`open`](Self::open) with encryption: a new file is created encrypted (format 2) under
    /// `key`, its version recorded in the header. An existing file keeps its format: an encrypted
    /// one is appended to with `key` (each block names its key version; when `key` is the version
    /// the file was created with, the header's key check must pass), an unencrypted one stays
    /// unencrypted ([`OpenReport::key_version`] says which). An encrypted file cannot be appended
    /// to without a key (the error names its version). Opening never needs the key of blocks
    /// already written: torn tails are found by their CRC.
    pub fn open_keyed(
        dir: &Path,
        feed: &str,
        trading_day: u32,
        base_sequence: u64,
        options: WriterOptions,
        key: Option<&JournalKey>,
    ) -> Result<(JournalWriter, OpenReport), JournalError> {
        let path = file_path(dir, feed, trading_day);
        check_args(&path, feed, trading_day, &options)?;
        match fs::metadata(&path) {
            Ok(m) if m.len() > 0 => Self::open_existing(path, feed, trading_day, options, key),
            Ok(_) => {
                // Empty: no header, so nothing to keep (not a file a writer of this crate leaves,
                // since it creates files complete under a temporary name).
                fs::remove_file(&path).map_err(|e| JournalError::io(&path, "removing an empty file", e))?;
                Self::create(dir, path, feed, trading_day, base_sequence, options, key)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Self::create(dir, path, feed, trading_day, base_sequence, options, key)
            }
            Err(e) => Err(JournalError::io(&path, "looking up the file", e)),
        }
    }

    /// Creates the file whole under a temporary name (header written and synced), then links it
    /// into place and syncs the directory, so the journal's name never points at a headerless file.
    fn create(
        dir: &Path,
        path: PathBuf,
        feed: &str,
        trading_day: u32,
        base_sequence: u64,
        options: WriterOptions,
        key: Option<&JournalKey>,
    ) -> Result<(JournalWriter, OpenReport), JournalError> {
        fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, "creating the journal directory", e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut header = FileHeader::new(feed, trading_day, base_sequence, qilin_shm::now_ns());
        let mut sealer = None;
        if let Some(key) = key {
            let random = crypt::random::<16>().and_then(|file_id| Ok((file_id, Sealer::new(key, file_id)?)));
            let (file_id, new_sealer) = random.map_err(|e| JournalError::io(&path, "drawing the file id", e))?;
            header.format_version = FORMAT_VERSION_ENCRYPTED;
            header.encryption = Some(HeaderEncryption { key_version: key.version(), file_id, key_check: [0; 16] });
            let key_check = crypt::header_tag(key, &file_id, &header.encode()[..108]);
            header.encryption.as_mut().expect("just set").key_check = key_check;
            sealer = Some(new_sealer);
        }
        let written = (|| {
            let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o640).open(&tmp)?;
            lock(&file)?;
            file.write_all_at(&header.encode(), 0)?;
            file.sync_all()?;
            // A link, not a rename: it fails if the name exists (another writer created the file
            // meanwhile) instead of replacing a journal.
            let linked = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            linked?;
            sync_dir(dir)?;
            Ok::<File, io::Error>(file)
        })();
        let file = match written {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(JournalError::Locked { path }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Self::open_existing(path, feed, trading_day, options, key);
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(if is_no_space(&e) {
                    JournalError::DiskFull { path, offset: 0, resume_from: base_sequence + 1, source: e }
                } else {
                    JournalError::io(&path, "creating the file", e)
                });
            }
        };
        let report = OpenReport {
            created: true,
            last_sequence: base_sequence,
            key_version: key.map(JournalKey::version),
            ..OpenReport::default()
        };
        Ok((Self::from_parts(path, file, header, options, FILE_HEADER_SIZE as u64, base_sequence, sealer), report))
    }

    fn open_existing(
        path: PathBuf,
        feed: &str,
        trading_day: u32,
        options: WriterOptions,
        key: Option<&JournalKey>,
    ) -> Result<(JournalWriter, OpenReport), JournalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| JournalError::io(&path, "opening the file", e))?;
        lock(&file).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => JournalError::Locked { path: path.clone() },
            _ => JournalError::io(&path, "locking the file", e),
        })?;
        let (header, raw) = blocks::read_header_raw(&file, &path)?;
        if header.feed != feed || header.trading_day != trading_day {
            return Err(JournalError::WrongFile {
                path,
                found_feed: header.feed,
                found_day: header.trading_day,
                feed: feed.to_owned(),
                day: trading_day,
            });
        }
        let mut sealer = None;
        let mut scan = None;
        if let Some(e) = &header.encryption {
            let Some(key) = key else {
                return Err(JournalError::KeyUnavailable {
                    path,
                    version: e.key_version,
                    what: "the file".into(),
                    why: KeyUnavailable::NoKeys,
                });
            };
            if key.version() == e.key_version && !crypt::header_tag_ok(key, &e.file_id, &raw[..108], &e.key_check) {
                return Err(JournalError::WrongKey { path, version: e.key_version });
            }
            sealer = Some(
                Sealer::new(key, e.file_id).map_err(|err| JournalError::io(&path, "drawing a nonce prefix", err))?,
            );
            scan = Some(Sealed { file_id: e.file_id, keys: None });
        }
        let reading = file.try_clone().map_err(|e| JournalError::io(&path, "opening the file", e))?;
        let mut stream =
            BlockStream::new(reading, header.base_sequence, scan).map_err(|e| JournalError::io(&path, "reading", e))?;
        let mut report =
            OpenReport { key_version: header.encryption.as_ref().map(|e| e.key_version), ..OpenReport::default() };
        loop {
            match stream.next().map_err(|e| JournalError::io(&path, "reading", e))? {
                Step::Block(_) => report.blocks += 1,
                Step::End => break,
                Step::Problem(problem) => match blocks::classify(&file, &path, problem) {
                    JournalError::TornTail { offset, bytes, reason, .. } => {
                        file.set_len(offset).map_err(|e| JournalError::io(&path, "cutting off the torn tail", e))?;
                        file.sync_all().map_err(|e| JournalError::io(&path, "syncing after the cut", e))?;
                        report.truncated_bytes = bytes;
                        report.truncated_at = Some((offset, reason));
                        break;
                    }
                    other => return Err(other),
                },
                Step::Refused(refusal) => return Err(refusal.into_error(&path)),
            }
        }
        report.last_sequence = stream.next_sequence - 1;
        let len = stream.offset;
        Ok((Self::from_parts(path, file, header, options, len, report.last_sequence, sealer), report))
    }

    fn from_parts(
        path: PathBuf,
        file: File,
        header: FileHeader,
        options: WriterOptions,
        len: u64,
        last_sequence: u64,
        sealer: Option<Sealer>,
    ) -> JournalWriter {
        let prefix = if sealer.is_some() { BLOCK_HEADER_SIZE + NONCE_LEN } else { BLOCK_HEADER_SIZE };
        let capacity = prefix + options.block_records as usize * RECORD_SIZE + crypt::SEAL_OVERHEAD;
        let mut block = Vec::with_capacity(capacity);
        block.resize(prefix, 0);
        let now = Instant::now();
        JournalWriter {
            path,
            file,
            header,
            options,
            block,
            buffered: 0,
            pending_gap: None,
            block_first: 0,
            block_started: now,
            next_sequence: last_sequence + 1,
            written_sequence: last_sequence,
            synced_sequence: last_sequence,
            len,
            synced_len: len,
            last_sync: now,
            stats: WriterStats::default(),
            poisoned: false,
            sealer,
        }
    }

    /// Bytes in front of the records in the block under construction: the block header, and the
    /// nonce of a sealed block.
    fn body_start(&self) -> usize {
        if self.sealer.is_some() { BLOCK_HEADER_SIZE + NONCE_LEN } else { BLOCK_HEADER_SIZE }
    }

    /// The key version new blocks are sealed with, if the file is encrypted.
    pub fn key_version(&self) -> Option<u32> {
        self.sealer.as_ref().map(|s| s.key_version)
    }

    /// Seals a block built as `[header room | (nonce room) | body]`: the header (with the key
    /// version), the encryption of the body when the file is encrypted, the CRC.
    fn seal(&mut self, block: &mut Vec<u8>, kind: u16, first_sequence: u64, count: u32) {
        let Some(sealer) = &mut self.sealer else {
            seal_block(block, kind, first_sequence, count);
            return;
        };
        let payload_len = (block.len() - BLOCK_HEADER_SIZE + crypt::TAG_LEN) as u32;
        let header = BlockHeader { kind, first_sequence, count, payload_len, key_version: sealer.key_version, crc: 0 };
        block[..BLOCK_HEADER_SIZE - 4].copy_from_slice(&header.encode_without_crc());
        sealer.seal(self.len, block, kind == KIND_TICKS);
        finish_block(block);
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// Trading day of the file.
    pub fn trading_day(&self) -> u32 {
        self.header.trading_day
    }

    /// The options in force.
    pub fn options(&self) -> &WriterOptions {
        &self.options
    }

    /// Changes when to `fdatasync` from now on.
    pub fn set_fsync_policy(&mut self, fsync: FsyncPolicy) {
        self.options.fsync = fsync;
    }

    /// The sequence the next entry must start with.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Last sequence in a written block: in the file for any process that reads it, and kept if this
    /// process dies.
    pub fn written_sequence(&self) -> u64 {
        self.written_sequence
    }

    /// Last sequence known to be on stable storage (kept through a power cut).
    pub fn synced_sequence(&self) -> u64 {
        self.synced_sequence
    }

    /// Records buffered in the block under construction.
    pub fn buffered(&self) -> u32 {
        self.buffered
    }

    /// Whether nothing is held back: every entry appended is in a written block.
    pub fn is_flushed(&self) -> bool {
        self.buffered == 0 && self.pending_gap.is_none()
    }

    /// File length in bytes (the end of the last whole block).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds only its header.
    pub fn is_empty(&self) -> bool {
        self.len == FILE_HEADER_SIZE as u64
    }

    /// Whether an earlier failure stopped the writer (drop it and open the file again).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Running totals.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    fn check_usable(&self) -> Result<(), JournalError> {
        if self.poisoned { Err(JournalError::Poisoned { path: self.path.clone() }) } else { Ok(()) }
    }

    /// Appends a tick; its `sequence` must be [`next_sequence`](Self::next_sequence). Writes the
    /// block when it is full.
    #[inline]
    pub fn append_tick(&mut self, tick: &TickRecord) -> Result<(), JournalError> {
        self.check_usable()?;
        if tick.sequence != self.next_sequence {
            return Err(JournalError::OutOfOrder {
                path: self.path.clone(),
                expected: self.next_sequence,
                found: tick.sequence,
            });
        }
        if self.pending_gap.is_some() {
            self.write_pending_gap()?;
        }
        if self.buffered == 0 {
            self.block_first = tick.sequence;
            self.block_started = Instant::now();
        }
        self.block.extend_from_slice(tick.as_bytes());
        self.buffered += 1;
        self.next_sequence += 1;
        if self.buffered >= self.options.block_records {
            self.write_ticks_block()?;
        }
        Ok(())
    }

    /// Appends a gap record for `first..=last` (`first` must be [`next_sequence`](Self::next_sequence)),
    /// writing the buffered ticks first. The record is written with the next tick (or flush,
    /// `maintain`, `sync`); a gap that directly follows it extends it instead of adding a record.
    pub fn append_gap(&mut self, first: u64, last: u64, reason: GapReason) -> Result<(), JournalError> {
        self.check_usable()?;
        if first != self.next_sequence {
            return Err(JournalError::OutOfOrder {
                path: self.path.clone(),
                expected: self.next_sequence,
                found: first,
            });
        }
        if last < first {
            return Err(JournalError::Invalid { path: self.path.clone(), reason: format!("gap {first}..={last}") });
        }
        self.write_ticks_block()?;
        match &mut self.pending_gap {
            Some(pending) => pending.last = last,
            None => {
                self.pending_gap = Some(Gap { first, last, reason, recorded_ns: qilin_shm::now_ns() });
                self.block_started = Instant::now();
            }
        }
        self.next_sequence = last + 1;
        Ok(())
    }

    fn write_pending_gap(&mut self) -> Result<(), JournalError> {
        let Some(gap) = self.pending_gap.take() else { return Ok(()) };
        let start = self.body_start();
        let mut block = vec![0u8; start + GAP_PAYLOAD_SIZE];
        block[start..].copy_from_slice(&gap.encode());
        self.seal(&mut block, KIND_GAP, gap.first, 0);
        self.write_block(&block, gap.last)?;
        self.stats.gaps += 1;
        self.stats.gap_sequences += gap.count();
        Ok(())
    }

    /// Writes the partial block or the held gap record, if any (no `fdatasync` unless the policy
    /// is `EveryBlock`).
    pub fn flush(&mut self) -> Result<(), JournalError> {
        self.check_usable()?;
        self.write_pending_gap()?;
        self.write_ticks_block()
    }

    /// Writes the partial block and `fdatasync`s the file: everything appended so far survives a
    /// power cut once this returns.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.flush()?;
        if self.synced_len != self.len { self.fdatasync() } else { Ok(()) }
    }

    /// Time-driven work, for the owner to call regularly (when idle, and between batches): writes
    /// a partial block older than `max_block_age`, and syncs when the `Interval` policy says so.
    pub fn maintain(&mut self) -> Result<(), JournalError> {
        self.check_usable()?;
        if (self.buffered > 0 || self.pending_gap.is_some())
            && self.block_started.elapsed() >= self.options.max_block_age
        {
            self.write_pending_gap()?;
            self.write_ticks_block()?;
        }
        self.sync_if_due()
    }

    fn sync_if_due(&mut self) -> Result<(), JournalError> {
        if let FsyncPolicy::Interval(interval) = self.options.fsync
            && self.synced_len != self.len
            && self.last_sync.elapsed() >= interval
        {
            self.fdatasync()?;
        }
        Ok(())
    }

    fn write_ticks_block(&mut self) -> Result<(), JournalError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let mut block = std::mem::take(&mut self.block);
        self.seal(&mut block, KIND_TICKS, self.block_first, self.buffered);
        let last = self.block_first + u64::from(self.buffered) - 1;
        let ticks = u64::from(self.buffered);
        let result = self.write_block(&block, last);
        block.truncate(self.body_start());
        self.block = block;
        self.buffered = 0;
        result?;
        self.stats.ticks += ticks;
        Ok(())
    }

    /// Writes one sealed block at the end of the file; on failure cuts the file back and drops
    /// everything not yet written.
    fn write_block(&mut self, block: &[u8], last_sequence: u64) -> Result<(), JournalError> {
        if let Err(e) = self.file.write_all_at(block, self.len) {
            return Err(self.failed_write(e));
        }
        self.len += block.len() as u64;
        self.written_sequence = last_sequence;
        self.stats.blocks += 1;
        self.stats.bytes += block.len() as u64;
        match self.options.fsync {
            FsyncPolicy::EveryBlock => self.fdatasync(),
            FsyncPolicy::Interval(_) => self.sync_if_due(),
            FsyncPolicy::Never => Ok(()),
        }
    }

    fn failed_write(&mut self, e: io::Error) -> JournalError {
        let offset = self.len;
        // Drop what was not written (the caller re-reads it): the buffered block and anything
        // after the last whole block.
        let start = self.body_start();
        self.block.truncate(start);
        self.buffered = 0;
        self.pending_gap = None;
        self.next_sequence = self.written_sequence + 1;
        if let Err(cut) = self.file.set_len(self.len) {
            self.poisoned = true;
            return JournalError::io(&self.path, "cutting back a failed write", cut);
        }
        if is_no_space(&e) {
            JournalError::DiskFull { path: self.path.clone(), offset, resume_from: self.next_sequence, source: e }
        } else {
            JournalError::io(&self.path, "writing a block", e)
        }
    }

    fn fdatasync(&mut self) -> Result<(), JournalError> {
        let started = Instant::now();
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped dirty pages and marked them clean:
            // only a fresh open (which verifies every block) can tell what the file holds.
            self.poisoned = true;
            return Err(if is_no_space(&e) {
                JournalError::DiskFull {
                    path: self.path.clone(),
                    offset: self.len,
                    resume_from: self.synced_sequence + 1,
                    source: e,
                }
            } else {
                JournalError::io(&self.path, "fdatasync", e)
            });
        }
        let took = started.elapsed().as_nanos() as u64;
        self.stats.fsyncs += 1;
        self.stats.last_fsync_ns = took;
        self.stats.max_fsync_ns = self.stats.max_fsync_ns.max(took);
        self.synced_len = self.len;
        self.synced_sequence = self.written_sequence;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Writes what is buffered and syncs, then closes the file.
    pub fn finish(mut self) -> Result<WriterStats, JournalError> {
        self.sync()?;
        Ok(self.stats)
    }
}

impl Drop for JournalWriter {
    /// Writes the partial block or held gap (no sync; errors are ignored: what was not written is
    /// re-read by whoever resumes from the file).
    fn drop(&mut self) {
        if !self.poisoned {
            let _ = self.write_pending_gap();
            let _ = self.write_ticks_block();
        }
    }
}
