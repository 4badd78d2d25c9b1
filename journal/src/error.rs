//! Errors of the journal, each naming the file (and, for damage, the byte offset).

use std::{io, path::PathBuf};

/// Everything that can go wrong reading or writing a journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// An I/O failure other than a full disk.
    #[error("journal {path}: {op}: {source}")]
    Io {
        /// The file (or directory).
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The disk is full (ENOSPC) or the quota is exhausted (EDQUOT). The file was cut back to the
    /// end of its last whole block and the unwritten entries were dropped: the writer's
    /// `next_sequence()` says where to resume. Retry once space is freed.
    #[error(
        "journal {path}: disk full (ENOSPC) while writing at byte {offset}; the file is kept whole up to \
         there and the writer resumes from sequence {resume_from}: {source}"
    )]
    DiskFull {
        /// The file.
        path: PathBuf,
        /// Where the failed write began (the file's length now).
        offset: u64,
        /// The next sequence the writer expects (the unwritten entries were dropped).
        resume_from: u64,
        /// The error the system returned.
        source: io::Error,
    },
    /// Not a journal file (no magic), or empty.
    #[error("{path} is not a qilin journal: {reason}")]
    NotAJournal {
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The header's checksum does not match: the header is damaged.
    #[error("journal {path}: the file header (bytes 0..128) is damaged (checksum mismatch)")]
    HeaderChecksum {
        /// The file.
        path: PathBuf,
    },
    /// The file was written for another format or record layout: reading it would misread it.
    #[error(
        "journal {path} was written with {what} {found:#x} but this build reads {expected:#x}: read it with \
         the qilin build that wrote it (or convert it); it is not read nor changed"
    )]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// Which identity field differs.
        what: &'static str,
        /// Value in the file.
        found: u64,
        /// Value of this build.
        expected: u64,
    },
    /// A block fails its checksum or is malformed, with whole blocks after it: damage in the middle
    /// of the file, not a torn tail. Nothing is truncated; an operator decides.
    #[error("journal {path}: damaged block at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damaged block.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file ends in an incomplete or damaged last block (a write cut short by a crash).
    /// Opening the file for writing truncates it there; a reader stops with this error.
    #[error("journal {path}: torn tail at byte {offset} ({bytes} bytes after the last whole block): {reason}")]
    TornTail {
        /// The file.
        path: PathBuf,
        /// End of the last whole block.
        offset: u64,
        /// Bytes after it.
        bytes: u64,
        /// What was found there.
        reason: String,
    },
    /// An existing file belongs to another feed or trading day than the one asked for.
    #[error("journal {path} holds feed {found_feed:?} day {found_day}, not feed {feed:?} day {day}")]
    WrongFile {
        /// The file.
        path: PathBuf,
        /// Feed in the header.
        found_feed: String,
        /// Trading day in the header.
        found_day: u32,
        /// Feed asked for.
        feed: String,
        /// Day asked for.
        day: u32,
    },
    /// An entry does not continue the journal's sequence (each sequence once, in order).
    #[error("journal {path}: entry for sequence {found} out of order: the journal expects sequence {expected}")]
    OutOfOrder {
        /// The file.
        path: PathBuf,
        /// The next sequence the journal expects.
        expected: u64,
        /// The sequence offered.
        found: u64,
    },
    /// Another writer (another recorder on the same directory) holds the file's lock.
    #[error("journal {path} is locked by another writer (is another recorder writing this directory?)")]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// A bad argument (feed name, trading day, gap range).
    #[error("journal {path}: {reason}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file (or one of its blocks) is encrypted with a `journal-encryption` key version that
    /// was not given, or that is retired. Nothing of it is read.
    #[error(
        "journal {path}: {what} is encrypted with journal-encryption key version {version}, which cannot be used: {why}"
    )]
    KeyUnavailable {
        /// The file.
        path: PathBuf,
        /// The key version the file or block needs.
        version: u32,
        /// "the file" or "the block at byte N".
        what: String,
        /// Why.
        why: crate::crypt::KeyUnavailable,
    },
    /// The key given for the file's version does not pass the header's key check: not the key the
    /// file was written with (or the header was altered).
    #[error(
        "journal {path}: the journal-encryption key given as version {version} is not the key this file was          written with (its header's key check fails): wrong key, or a header altered"
    )]
    WrongKey {
        /// The file.
        path: PathBuf,
        /// The key version in the header.
        version: u32,
    },
    /// A whole block (its CRC matches) does not authenticate under its key version: it was altered,
    /// moved within the file or from another file, or the key given for that version is wrong.
    /// Nothing is cut; an operator decides.
    #[error(
        "journal {path}: the block at byte {offset} does not authenticate under journal-encryption key          version {version}: altered, moved from elsewhere, or the wrong key for that version"
    )]
    Unauthenticated {
        /// The file.
        path: PathBuf,
        /// Byte offset of the block.
        offset: u64,
        /// Key version the block names.
        version: u32,
    },
    /// An earlier failure left the writer unable to vouch for the file (a failed truncate or
    /// fsync). Drop it and open the file again: opening verifies and repairs it.
    #[error("journal {path}: the writer stopped after an earlier failure; reopen the file")]
    Poisoned {
        /// The file.
        path: PathBuf,
    },
}

impl JournalError {
    /// Whether this is a full disk (retry later).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, JournalError::DiskFull { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> JournalError {
        JournalError::Io { path: path.into(), op, source }
    }
}

/// Whether an I/O error means "no space" (ENOSPC) or "quota exhausted" (EDQUOT).
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}
