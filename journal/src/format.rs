//! The byte format of a journal file: the file header, the block header and the gap payload,
//! their encoding (little-endian, fixed offsets) and the checksum. Nothing here does I/O.
//!
//! ```text
//! File header (128 B)                         Block header (32 B), then `payload_len` bytes
//!   +0   magic "QILINJNL"                       +0   magic "QJBK"
//!   +8   format_version  u32  (1 or 2)          +4   kind  u16  (1 ticks, 2 gap)
//!   +12  header_size     u32  (128)             +6   reserved u16 (0)
//!   +16  layout_version  u32  (qilin_shm)       +8   first_sequence u64
//!   +20  record_size     u32  (376)             +16  count u32  (records; 0 for a gap)
//!   +24  fingerprint     u64  (qilin_shm)       +20  payload_len u32
//!   +32  trading_day     u32  (YYYYMMDD)        +24  key_version u32 (0 in format 1)
//!   +36  key_version     u32  (0 in format 1)   +28  crc u32: CRC-32 of bytes 0..28, then payload
//!   +40  created_ns      i64  (UTC ns)
//!   +48  base_sequence   u64                  Ticks payload: `count` × 376-byte TickRecord, exactly
//!   +56  feed_name       [u8; 32] NUL-padded    as in the segment, sequences first, first+1, …
//!   +88  cipher          u32  (format 2: 1)   Gap payload (32 B): first u64, last u64,
//!   +92  file_id         [u8; 16] (format 2)    reason u32, reserved u32, recorded_ns i64
//!   +108 key_check       [u8; 16] (format 2)
//!   +124 header_crc      u32: CRC-32 of 0..124
//! ```
//!
//! The CRC is CRC-32/ISO-HDLC (the zlib, gzip and PNG one: `zlib.crc32` in Python).
//!
//! **Format 2: encrypted** (optional; [`crate::crypt`]). Bytes 88..124 and +36, reserved (zero) in
//! format 1, say which `journal-encryption` key version created the file (+36), the cipher (+88,
//! 1 = XChaCha20-Poly1305), a random file id (+92) and a key check (+108: the Poly1305 tag of an
//! empty message with bytes 0..108 as associated data, so a wrong key is refused before any block
//! and the header's fields are authenticated). Each block's payload is
//! `nonce (24) ‖ ciphertext ‖ tag (16)` (`payload_len` = plaintext + 40), its `key_version` (+24)
//! names the version that sealed it, and its CRC covers the ciphertext (torn tails are found
//! without a key). The format version is 2 and not 1 with a flag because a reader of format 1
//! ignores those reserved bytes: it would take the ciphertext for records and fail on each block's
//! record sequences as "damage", or worse, misread a gap; with version 2 it refuses the file at once
//! as written by another format. Unencrypted files are format 1, byte for byte as before.

use qilin_shm::{FINGERPRINT, LAYOUT_VERSION, TickRecord, layout::fixed_id};

/// First eight bytes of every journal file.
pub const FILE_MAGIC: [u8; 8] = *b"QILINJNL";
/// Version of this file format (unencrypted files). Bumped on any change a reader of the previous
/// version would misread.
pub const FORMAT_VERSION: u32 = 1;
/// Format version of an encrypted file (format 1's layout, reserved bytes used, sealed payloads).
pub const FORMAT_VERSION_ENCRYPTED: u32 = 2;
/// Size of the file header.
pub const FILE_HEADER_SIZE: usize = 128;
/// First four bytes of every block.
pub const BLOCK_MAGIC: [u8; 4] = *b"QJBK";
/// Size of a block header.
pub const BLOCK_HEADER_SIZE: usize = 32;
/// Size of one tick record in a ticks block (the segment's record, unchanged).
pub const RECORD_SIZE: usize = size_of::<TickRecord>();
/// Size of a gap block's payload.
pub const GAP_PAYLOAD_SIZE: usize = 32;
/// Most records a ticks block may hold. A reader refuses larger blocks as corrupt, so a damaged
/// length can never make it allocate gigabytes.
pub const MAX_BLOCK_RECORDS: u32 = 4096;
/// File name extension.
pub const EXTENSION: &str = "qj";

/// Block kinds.
pub(crate) const KIND_TICKS: u16 = 1;
pub(crate) const KIND_GAP: u16 = 2;

const _: () = {
    assert!(RECORD_SIZE == 376 && RECORD_SIZE.is_multiple_of(8));
    assert!(BLOCK_HEADER_SIZE.is_multiple_of(8) && FILE_HEADER_SIZE.is_multiple_of(8));
    assert!(GAP_PAYLOAD_SIZE.is_multiple_of(8));
};

/// CRC-32 of `parts`, in order.
pub fn crc(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What the file header says: which feed, which trading day, which layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Journal format version ([`FORMAT_VERSION`] for files this build writes).
    pub format_version: u32,
    /// `qilin_shm::LAYOUT_VERSION` of the records.
    pub layout_version: u32,
    /// Size of one record (376).
    pub record_size: u32,
    /// `qilin_shm::FINGERPRINT` of the records' layout.
    pub fingerprint: u64,
    /// Trading day of the ticks, YYYYMMDD.
    pub trading_day: u32,
    /// When the file was created, UTC ns.
    pub created_ns: i64,
    /// The sequence before the file's first entry: the file continues from `base_sequence + 1`
    /// (the previous day's last sequence, or where recording started). A file holding only its
    /// header still says where its writer stood.
    pub base_sequence: u64,
    /// Feed name (the segment's), ASCII.
    pub feed: String,
    /// Format 2 only: how the file is encrypted.
    pub encryption: Option<HeaderEncryption>,
}

/// The encryption fields of a format-2 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderEncryption {
    /// The `journal-encryption` key version the file was created with (its key check's key).
    pub key_version: u32,
    /// Random id of the file, bound into every block's associated data.
    pub file_id: [u8; 16],
    /// The key check (a Poly1305 tag over bytes 0..108).
    pub key_check: [u8; 16],
}

impl FileHeader {
    /// A header for a file of this build's format and layout.
    pub fn new(feed: &str, trading_day: u32, base_sequence: u64, created_ns: i64) -> FileHeader {
        FileHeader {
            format_version: FORMAT_VERSION,
            layout_version: LAYOUT_VERSION,
            record_size: RECORD_SIZE as u32,
            fingerprint: FINGERPRINT,
            trading_day,
            created_ns,
            base_sequence,
            feed: feed.to_owned(),
            encryption: None,
        }
    }

    /// Whether blocks are sealed (format 2).
    pub fn is_encrypted(&self) -> bool {
        self.encryption.is_some()
    }

    /// The 128 bytes on disk. The feed name must be valid ([`valid_feed`]).
    pub fn encode(&self) -> [u8; FILE_HEADER_SIZE] {
        let mut b = [0u8; FILE_HEADER_SIZE];
        b[0..8].copy_from_slice(&FILE_MAGIC);
        b[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        b[12..16].copy_from_slice(&(FILE_HEADER_SIZE as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.layout_version.to_le_bytes());
        b[20..24].copy_from_slice(&self.record_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.fingerprint.to_le_bytes());
        b[32..36].copy_from_slice(&self.trading_day.to_le_bytes());
        b[40..48].copy_from_slice(&self.created_ns.to_le_bytes());
        b[48..56].copy_from_slice(&self.base_sequence.to_le_bytes());
        let feed: [u8; 32] = fixed_id(&self.feed).unwrap_or([0; 32]);
        b[56..88].copy_from_slice(&feed);
        if let Some(e) = &self.encryption {
            b[36..40].copy_from_slice(&e.key_version.to_le_bytes());
            b[88..92].copy_from_slice(&crate::crypt::CIPHER_XCHACHA20_POLY1305.to_le_bytes());
            b[92..108].copy_from_slice(&e.file_id);
            b[108..124].copy_from_slice(&e.key_check);
        }
        let crc = crc(&[&b[..124]]);
        b[124..128].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header: magic, checksum, then whether this build can read it (format
    /// version, record size, layout version and fingerprint), in that order.
    pub(crate) fn decode(b: &[u8; FILE_HEADER_SIZE]) -> Result<FileHeader, HeaderProblem> {
        if b[0..8] != FILE_MAGIC {
            return Err(HeaderProblem::NotAJournal);
        }
        if crc(&[&b[..124]]) != u32_at(b, 124) {
            return Err(HeaderProblem::Checksum);
        }
        let feed_bytes = &b[56..88];
        let end = feed_bytes.iter().position(|c| *c == 0).unwrap_or(32);
        let header = FileHeader {
            format_version: u32_at(b, 8),
            layout_version: u32_at(b, 16),
            record_size: u32_at(b, 20),
            fingerprint: u64_at(b, 24),
            trading_day: u32_at(b, 32),
            created_ns: u64_at(b, 40) as i64,
            base_sequence: u64_at(b, 48),
            feed: String::from_utf8_lossy(&feed_bytes[..end]).into_owned(),
            encryption: None,
        };
        let mut header = header;
        if header.format_version == FORMAT_VERSION_ENCRYPTED {
            let cipher = u32_at(b, 88);
            if cipher != crate::crypt::CIPHER_XCHACHA20_POLY1305 {
                return Err(HeaderProblem::Incompatible {
                    what: "journal cipher",
                    found: cipher.into(),
                    expected: crate::crypt::CIPHER_XCHACHA20_POLY1305.into(),
                });
            }
            header.encryption = Some(HeaderEncryption {
                key_version: u32_at(b, 36),
                file_id: b[92..108].try_into().expect("16 bytes"),
                key_check: b[108..124].try_into().expect("16 bytes"),
            });
        }
        let format_expected =
            if header.format_version == FORMAT_VERSION_ENCRYPTED { FORMAT_VERSION_ENCRYPTED } else { FORMAT_VERSION };
        let checks: [(&'static str, u64, u64); 4] = [
            ("journal format version", header.format_version.into(), format_expected.into()),
            ("record size", header.record_size.into(), RECORD_SIZE as u64),
            ("qilin_shm layout version", header.layout_version.into(), LAYOUT_VERSION.into()),
            ("qilin_shm layout fingerprint", header.fingerprint, FINGERPRINT),
        ];
        for (what, found, expected) in checks {
            if found != expected {
                return Err(HeaderProblem::Incompatible { what, found, expected });
            }
        }
        if u32_at(b, 12) as usize != FILE_HEADER_SIZE {
            return Err(HeaderProblem::Incompatible {
                what: "header size",
                found: u32_at(b, 12).into(),
                expected: FILE_HEADER_SIZE as u64,
            });
        }
        Ok(header)
    }
}

/// Why a file header was refused (turned into a [`crate::JournalError`] naming the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    NotAJournal,
    Checksum,
    Incompatible { what: &'static str, found: u64, expected: u64 },
}

/// A decoded block header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockHeader {
    pub kind: u16,
    pub first_sequence: u64,
    pub count: u32,
    pub payload_len: u32,
    /// Format 2: the key version that sealed the payload (0 in format 1).
    pub key_version: u32,
    pub crc: u32,
}

impl BlockHeader {
    /// Bytes 0..28 (everything the CRC covers before the payload).
    pub fn encode_without_crc(&self) -> [u8; BLOCK_HEADER_SIZE - 4] {
        let mut b = [0u8; BLOCK_HEADER_SIZE - 4];
        b[0..4].copy_from_slice(&BLOCK_MAGIC);
        b[4..6].copy_from_slice(&self.kind.to_le_bytes());
        b[8..16].copy_from_slice(&self.first_sequence.to_le_bytes());
        b[16..20].copy_from_slice(&self.count.to_le_bytes());
        b[20..24].copy_from_slice(&self.payload_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.key_version.to_le_bytes());
        b
    }

    /// `None` when the bytes do not start with the block magic.
    pub fn decode(b: &[u8; BLOCK_HEADER_SIZE]) -> Option<BlockHeader> {
        (b[0..4] == BLOCK_MAGIC).then(|| BlockHeader {
            kind: u16_at(b, 4),
            first_sequence: u64_at(b, 8),
            count: u32_at(b, 16),
            payload_len: u32_at(b, 20),
            key_version: u32_at(b, 24),
            crc: u32_at(b, 28),
        })
    }

    /// Whether `payload` (and this header) match the stored checksum.
    pub fn checksum_ok(&self, raw_header: &[u8; BLOCK_HEADER_SIZE], payload: &[u8]) -> bool {
        crc(&[&raw_header[..BLOCK_HEADER_SIZE - 4], payload]) == self.crc
    }
}

/// Fills the first [`BLOCK_HEADER_SIZE`] bytes of `block` (whose payload follows) with the header
/// of a block of `kind`, including the checksum.
pub(crate) fn seal_block(block: &mut [u8], kind: u16, first_sequence: u64, count: u32) {
    let payload_len = (block.len() - BLOCK_HEADER_SIZE) as u32;
    let header = BlockHeader { kind, first_sequence, count, payload_len, key_version: 0, crc: 0 };
    block[..BLOCK_HEADER_SIZE - 4].copy_from_slice(&header.encode_without_crc());
    finish_block(block);
}

/// Fills the CRC of a block whose header's first 28 bytes are in place.
pub(crate) fn finish_block(block: &mut [u8]) {
    let crc = crc(&[&block[..BLOCK_HEADER_SIZE - 4], &block[BLOCK_HEADER_SIZE..]]);
    block[BLOCK_HEADER_SIZE - 4..BLOCK_HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
}

/// Why sequences are missing from the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapReason {
    /// The reader was lapped by the core while recording: the ring overwrote them first.
    Lapped,
    /// The recorder was not running (stopped, killed, starting) and the ring no longer held them
    /// when it resumed.
    Restart,
    /// The disk was full; by the time space returned, the ring no longer held them.
    DiskFull,
    /// A code this build does not know (written by a newer writer).
    Other(u32),
}

impl GapReason {
    /// The code stored in the file.
    pub fn code(self) -> u32 {
        match self {
            GapReason::Lapped => 1,
            GapReason::Restart => 2,
            GapReason::DiskFull => 3,
            GapReason::Other(code) => code,
        }
    }

    /// The reason for a stored code.
    pub fn from_code(code: u32) -> GapReason {
        match code {
            1 => GapReason::Lapped,
            2 => GapReason::Restart,
            3 => GapReason::DiskFull,
            other => GapReason::Other(other),
        }
    }

    /// Lower-case name (`lapped`, `restart`, `disk-full`, `other`).
    pub fn name(self) -> &'static str {
        match self {
            GapReason::Lapped => "lapped",
            GapReason::Restart => "restart",
            GapReason::DiskFull => "disk-full",
            GapReason::Other(_) => "other",
        }
    }
}

/// A gap record: sequences `first..=last` are not in the journal and never will be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// First missing sequence.
    pub first: u64,
    /// Last missing sequence (≥ `first`).
    pub last: u64,
    /// Why they are missing.
    pub reason: GapReason,
    /// When the writer recorded the gap, UTC ns.
    pub recorded_ns: i64,
}

impl Gap {
    /// Number of missing sequences.
    pub fn count(&self) -> u64 {
        self.last - self.first + 1
    }

    pub(crate) fn encode(&self) -> [u8; GAP_PAYLOAD_SIZE] {
        let mut b = [0u8; GAP_PAYLOAD_SIZE];
        b[0..8].copy_from_slice(&self.first.to_le_bytes());
        b[8..16].copy_from_slice(&self.last.to_le_bytes());
        b[16..20].copy_from_slice(&self.reason.code().to_le_bytes());
        b[24..32].copy_from_slice(&self.recorded_ns.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Gap {
        Gap {
            first: u64_at(b, 0),
            last: u64_at(b, 8),
            reason: GapReason::from_code(u32_at(b, 16)),
            recorded_ns: u64_at(b, 24) as i64,
        }
    }
}

/// Whether `feed` can name a journal: 1 to 31 characters of `[A-Za-z0-9_-]` (every valid segment
/// feed name).
pub fn valid_feed(feed: &str) -> bool {
    !feed.is_empty() && feed.len() < 32 && feed.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// Whether `day` is a plausible YYYYMMDD date (month 1–12, day 1–31, year 1900–9999).
pub fn valid_trading_day(day: u32) -> bool {
    let (y, m, d) = (day / 10_000, day / 100 % 100, day % 100);
    (1900..=9999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}
