//! # qilin-journal: the tick journal of qilin-feed
//!
//! Every tick of a feed, on disk, one append-only file per feed and trading day:
//! `<dir>/<feed>-<YYYYMMDD>.qj`. The recorder sidecar writes it from the segment; replay, export,
//! backfill and the data-quality report read it. The records are the segment's 376-byte
//! [`TickRecord`](qilin_shm::TickRecord)s byte for byte, so a journal replays the very values the
//! core published.
//!
//! ## Format (version [`FORMAT_VERSION`])
//!
//! ```text
//! ┌────────────────────────┐  file header, 128 B: magic "QILINJNL", format version, qilin_shm
//! │ FileHeader             │  layout version + fingerprint + record size, trading day, creation
//! ├────────────────────────┤  time, base sequence, feed name, CRC-32 of the header
//! │ block: 32 B header     │  magic "QJBK", kind, first sequence, record count, payload length,
//! │        + payload       │  CRC-32 of header and payload
//! ├────────────────────────┤    kind 1 ticks: count × 376-byte records, sequences consecutive
//! │ block …                │    kind 2 gap:   first, last, reason, recorded_ns (32 B)
//! └────────────────────────┘
//! ```
//!
//! Byte offsets are in [`mod@format`]; all integers are little-endian, the records are x86-64
//! `#[repr(C)]` as in the segment. Invariants a reader checks: blocks follow each other without a
//! hole, each block starts at the sequence after the previous block's last (the first at the
//! header's `base_sequence + 1`), so **every sequence appears exactly once, in order, as a tick or
//! inside a gap record**. A file written for another layout (version or fingerprint) is refused
//! with [`JournalError::Incompatible`] before any record is read.
//!
//! ## Encryption at rest (format [`FORMAT_VERSION_ENCRYPTED`], optional)
//!
//! With a `journal-encryption` key ([`JournalWriter::open_keyed`]) a new file is format 2: the
//! header records the key version, a random file id and a key check; every block's payload is
//! sealed with XChaCha20-Poly1305 (`nonce ‖ ciphertext ‖ tag`, the block header and its position as
//! associated data), each block naming its key version. Readers take a [`Keyring`]
//! ([`JournalReader::open_keyed`], [`DirReader::open_keyed`], [`verify_keyed`]); a missing, retired
//! or wrong key, and a block that does not authenticate, are errors naming the version and the
//! file. Without a key a format-1 reader refuses the file as another format; [`verify`] checks an
//! encrypted file's structure and CRCs. Details and the reasoning: [`crypt`], [`mod@format`].
//!
//! ## Crash safety
//!
//! Blocks are written whole, one positional write each. A file is created complete under a
//! temporary name and linked into place. Opening a file for writing ([`JournalWriter::open`])
//! verifies every block's checksum and cuts a torn or damaged tail at the last whole block,
//! reporting the bytes cut ([`OpenReport`]); damage with whole blocks after it (not a tail) is
//! refused ([`JournalError::Corrupt`]) and left for an operator. When to `fdatasync` is the
//! [`FsyncPolicy`]. A failed write (a full disk: [`JournalError::DiskFull`]) leaves the file at
//! its last block boundary and the writer ready to continue from [`JournalWriter::next_sequence`].
//!
//! ## Reading
//!
//! [`JournalReader`] (one file) and [`DirReader`] (a feed's files over a range of days) yield
//! [`Entry::Tick`] and [`Entry::Gap`] in order; [`verify`] checks a whole file. Damage ends the
//! stream with an error naming the file and the byte offset.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod blocks;
pub mod crypt;
mod error;
pub mod format;
mod reader;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_crypt;

pub use crate::{
    crypt::{JournalKey, KeyUnavailable, Keyring},
    error::JournalError,
    format::{
        FORMAT_VERSION, FORMAT_VERSION_ENCRYPTED, FileHeader, Gap, GapReason, HeaderEncryption, valid_feed,
        valid_trading_day,
    },
    reader::{
        DirReader, Entry, JournalFile, JournalReader, Summary, file_name, file_path, journal_files, verify,
        verify_keyed,
    },
    writer::{FsyncPolicy, JournalWriter, OpenReport, WriterOptions, WriterStats},
};
