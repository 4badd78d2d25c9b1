//! Walking a journal file block by block: the file header, then each block checked (magic, kind,
//! lengths, checksum, sequence continuity) before anything in it is believed. Shared by the
//! writer's open (scan and repair) and by the readers.
//!
//! Damage at a block is classified by what follows it: if no whole block follows, the file ends in
//! a **torn tail** (a write cut short by a crash, or a tail of unwritten zeros after a power cut),
//! which a writer may cut off; if a whole block follows, the damage is in the **middle**, and
//! nothing is cut.

use std::{
    fs::File,
    io::{self, BufReader, Read, Seek, SeekFrom},
    os::unix::fs::FileExt,
    path::Path,
    sync::Arc,
};

use crate::{
    crypt::{self, KeyUnavailable, Keyring, SEAL_OVERHEAD},
    error::JournalError,
    format::{
        BLOCK_HEADER_SIZE, BlockHeader, FILE_HEADER_SIZE, FileHeader, GAP_PAYLOAD_SIZE, Gap, HeaderProblem, KIND_GAP,
        KIND_TICKS, MAX_BLOCK_RECORDS, RECORD_SIZE,
    },
};

/// A whole, verified block (its payload is in [`BlockStream::payload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Block {
    /// `count` records with sequences `first..first + count`.
    Ticks { first: u64, count: u32 },
    /// A gap record.
    Gap(Gap),
}

impl Block {
    /// Last sequence the block covers.
    pub fn last_sequence(&self) -> u64 {
        match *self {
            Block::Ticks { first, count } => first + u64::from(count) - 1,
            Block::Gap(gap) => gap.last,
        }
    }
}

/// Something wrong at `offset` (not yet classified as torn tail or middle damage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub offset: u64,
    pub reason: String,
    /// Bytes sealing adds to each payload (0 for an unencrypted file): what a whole block looks like.
    pub overhead: usize,
}

/// A block that is whole (its CRC matches) but cannot be opened: never a torn tail, never cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub offset: u64,
    pub key_version: u32,
    /// `None`: the key was there but the block did not authenticate (tampered, moved, or the key
    /// given for that version is not the one that sealed it).
    pub unavailable: Option<KeyUnavailable>,
}

impl Refusal {
    pub fn into_error(self, path: &Path) -> JournalError {
        match self.unavailable {
            Some(why) => JournalError::KeyUnavailable {
                path: path.to_owned(),
                version: self.key_version,
                what: format!("the block at byte {}", self.offset),
                why,
            },
            None => {
                JournalError::Unauthenticated { path: path.to_owned(), offset: self.offset, version: self.key_version }
            }
        }
    }
}

/// How a stream treats sealed payloads.
pub(crate) struct Sealed {
    pub file_id: [u8; 16],
    /// `None`: check structure only (lengths, CRC, sequences of the block headers), do not open.
    pub keys: Option<Arc<Keyring>>,
}

/// What [`BlockStream::next`] found.
#[derive(Debug)]
pub(crate) enum Step {
    Block(Block),
    /// Clean end of file at a block boundary.
    End,
    Problem(Problem),
    /// A whole block that cannot be opened (no key, or it does not authenticate).
    Refused(Refusal),
}

/// Reads `buf.len()` bytes unless the file ends first; returns how many were read.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// How to stream the blocks of a file with `header`: `None` for an unencrypted file; for an
/// encrypted one, opened with `keys` (after the header's key check: a wrong or unavailable key is
/// refused here, naming the version) or, when `keys` is `None`, structure only.
pub(crate) fn sealing(
    header: &FileHeader,
    raw: &[u8; FILE_HEADER_SIZE],
    path: &Path,
    keys: Option<&Arc<Keyring>>,
) -> Result<Option<Sealed>, JournalError> {
    let Some(e) = &header.encryption else { return Ok(None) };
    let Some(keys) = keys else { return Ok(Some(Sealed { file_id: e.file_id, keys: None })) };
    let key = keys.get(e.key_version).map_err(|why| JournalError::KeyUnavailable {
        path: path.to_owned(),
        version: e.key_version,
        what: "the file".into(),
        why,
    })?;
    if !crypt::header_tag_ok(key, &e.file_id, &raw[..108], &e.key_check) {
        return Err(JournalError::WrongKey { path: path.to_owned(), version: e.key_version });
    }
    Ok(Some(Sealed { file_id: e.file_id, keys: Some(keys.clone()) }))
}

/// Reads and checks the file header; also returns its bytes.
pub(crate) fn read_header_raw(file: &File, path: &Path) -> Result<(FileHeader, [u8; FILE_HEADER_SIZE]), JournalError> {
    let mut raw = [0u8; FILE_HEADER_SIZE];
    let mut filled = 0;
    while filled < FILE_HEADER_SIZE {
        match file.read_at(&mut raw[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(JournalError::io(path, "reading the file header", e)),
        }
    }
    if filled < FILE_HEADER_SIZE {
        let reason = if filled == 0 {
            "the file is empty (no header)".to_owned()
        } else {
            format!("{filled} bytes, shorter than the {FILE_HEADER_SIZE}-byte header")
        };
        return Err(JournalError::NotAJournal { path: path.to_owned(), reason });
    }
    let header = FileHeader::decode(&raw).map_err(|problem| match problem {
        HeaderProblem::NotAJournal => JournalError::NotAJournal {
            path: path.to_owned(),
            reason: format!("its first bytes are {:02x?}, not the journal magic \"QILINJNL\"", &raw[..8]),
        },
        HeaderProblem::Checksum => JournalError::HeaderChecksum { path: path.to_owned() },
        HeaderProblem::Incompatible { what, found, expected } => {
            JournalError::Incompatible { path: path.to_owned(), what, found, expected }
        }
    })?;
    Ok((header, raw))
}

/// Blocks of one file, in order, from just after the header.
pub(crate) struct BlockStream {
    src: BufReader<File>,
    /// Offset of the next block (after the last whole one).
    pub offset: u64,
    /// Sequence the next block must start with.
    pub next_sequence: u64,
    raw: [u8; BLOCK_HEADER_SIZE],
    /// Payload of the block last returned (plaintext once opened).
    pub payload: Vec<u8>,
    sealed: Option<Sealed>,
}

impl BlockStream {
    /// Blocks of `file` (whose header says the journal continues from `base_sequence + 1`).
    /// `sealed` for an encrypted file.
    pub fn new(file: File, base_sequence: u64, sealed: Option<Sealed>) -> io::Result<BlockStream> {
        let mut src = BufReader::with_capacity(1 << 18, file);
        src.seek(SeekFrom::Start(FILE_HEADER_SIZE as u64))?;
        Ok(BlockStream {
            src,
            offset: FILE_HEADER_SIZE as u64,
            next_sequence: base_sequence + 1,
            raw: [0; BLOCK_HEADER_SIZE],
            payload: Vec::with_capacity(256 * RECORD_SIZE),
            sealed,
        })
    }

    fn overhead(&self) -> usize {
        if self.sealed.is_some() { SEAL_OVERHEAD } else { 0 }
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        self.src.get_ref()
    }

    /// The next block, checked. After a [`Step::Problem`] the stream stays at the damaged block.
    pub fn next(&mut self) -> io::Result<Step> {
        let overhead = self.overhead();
        let problem = |offset, reason: String| Ok(Step::Problem(Problem { offset, reason, overhead }));
        let at = self.offset;
        let got = read_full(&mut self.src, &mut self.raw)?;
        if got == 0 {
            return Ok(Step::End);
        }
        if got < BLOCK_HEADER_SIZE {
            return problem(at, format!("{got} bytes, less than a block header"));
        }
        let Some(header) = BlockHeader::decode(&self.raw) else {
            return problem(at, format!("no block magic (found {:02x?})", &self.raw[..4]));
        };
        let expected_len = match header.kind {
            KIND_TICKS if (1..=MAX_BLOCK_RECORDS).contains(&header.count) => header.count as usize * RECORD_SIZE,
            KIND_TICKS => return problem(at, format!("ticks block with {} records", header.count)),
            KIND_GAP => GAP_PAYLOAD_SIZE,
            kind => return problem(at, format!("unknown block kind {kind}")),
        };
        let plain_len = expected_len;
        let expected_len = expected_len + overhead;
        if overhead > 0 && header.key_version == 0 {
            return problem(at, "sealed block with key version 0".into());
        }
        if header.payload_len as usize != expected_len {
            return problem(at, format!("payload length {} where {expected_len} was expected", header.payload_len));
        }
        self.payload.resize(expected_len, 0);
        let got = read_full(&mut self.src, &mut self.payload)?;
        if got < expected_len {
            return problem(at, format!("payload cut short: {got} of {expected_len} bytes"));
        }
        if !header.checksum_ok(&self.raw, &self.payload) {
            return problem(at, "checksum mismatch".into());
        }
        let mut check_records = true;
        match &self.sealed {
            None => {}
            Some(Sealed { file_id, keys: Some(keys) }) => {
                let key = match keys.get(header.key_version) {
                    Ok(key) => key,
                    Err(why) => {
                        self.payload.clear();
                        return Ok(Step::Refused(Refusal {
                            offset: at,
                            key_version: header.key_version,
                            unavailable: Some(why),
                        }));
                    }
                };
                if !crypt::open_block(key, file_id, at, &self.raw, &mut self.payload, header.kind == KIND_TICKS) {
                    self.payload.clear();
                    return Ok(Step::Refused(Refusal {
                        offset: at,
                        key_version: header.key_version,
                        unavailable: None,
                    }));
                }
            }
            Some(Sealed { keys: None, .. }) => {
                // Structure only: a ticks payload stays sealed (nothing inside it is checked or
                // handed out); a gap's body is readable.
                crypt::strip(&mut self.payload);
                check_records = false;
            }
        }
        debug_assert_eq!(self.payload.len(), plain_len);
        // After opening: a sealed block moved elsewhere is refused as unauthenticated, not
        // mistaken for damage.
        if header.first_sequence != self.next_sequence {
            return problem(
                at,
                format!(
                    "block starts at sequence {} but the journal continues at {}",
                    header.first_sequence, self.next_sequence
                ),
            );
        }
        let block = if header.kind == KIND_GAP {
            let gap = Gap::decode(&self.payload);
            if gap.first != header.first_sequence || gap.last < gap.first {
                return problem(at, format!("gap {}..={} disagrees with its header", gap.first, gap.last));
            }
            Block::Gap(gap)
        } else {
            for (i, record) in self.payload.chunks_exact(RECORD_SIZE).enumerate().filter(|_| check_records) {
                let sequence = u64::from_le_bytes(record[..8].try_into().expect("8 bytes"));
                if sequence != header.first_sequence + i as u64 {
                    return problem(
                        at,
                        format!("record {i} has sequence {sequence}, not {}", header.first_sequence + i as u64),
                    );
                }
            }
            Block::Ticks { first: header.first_sequence, count: header.count }
        };
        self.offset = at + (BLOCK_HEADER_SIZE + expected_len) as u64;
        self.next_sequence = block.last_sequence() + 1;
        Ok(Step::Block(block))
    }
}

/// Offset of the first whole block (magic, plausible lengths, checksum) that starts after `from`,
/// if any. Blocks start on 8-byte boundaries.
pub(crate) fn find_whole_block(file: &File, from: u64, overhead: usize) -> io::Result<Option<u64>> {
    const CHUNK: usize = 1 << 20;
    let len = file.metadata()?.len();
    let mut chunk = vec![0u8; CHUNK + 8];
    let mut base = (from + 8) & !7;
    while base + BLOCK_HEADER_SIZE as u64 <= len {
        let want = ((len - base) as usize).min(chunk.len());
        let got = read_at_full(file, &mut chunk[..want], base)?;
        let mut i = 0;
        while i + 4 <= got && i < CHUNK {
            if chunk[i..i + 4] == crate::format::BLOCK_MAGIC && whole_block_at(file, base + i as u64, len, overhead)? {
                return Ok(Some(base + i as u64));
            }
            i += 8;
        }
        base += CHUNK as u64;
    }
    Ok(None)
}

fn read_at_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn whole_block_at(file: &File, offset: u64, len: u64, overhead: usize) -> io::Result<bool> {
    let mut raw = [0u8; BLOCK_HEADER_SIZE];
    if read_at_full(file, &mut raw, offset)? < BLOCK_HEADER_SIZE {
        return Ok(false);
    }
    let Some(header) = BlockHeader::decode(&raw) else { return Ok(false) };
    let plausible = match header.kind {
        KIND_TICKS => {
            (1..=MAX_BLOCK_RECORDS).contains(&header.count)
                && header.payload_len as usize == header.count as usize * RECORD_SIZE + overhead
        }
        KIND_GAP => header.payload_len as usize == GAP_PAYLOAD_SIZE + overhead,
        _ => false,
    };
    let end = offset + (BLOCK_HEADER_SIZE as u64) + u64::from(header.payload_len);
    if !plausible || end > len {
        return Ok(false);
    }
    let mut payload = vec![0u8; header.payload_len as usize];
    if read_at_full(file, &mut payload, offset + BLOCK_HEADER_SIZE as u64)? < payload.len() {
        return Ok(false);
    }
    Ok(header.checksum_ok(&raw, &payload))
}

/// Turns a problem into the error a reader reports: [`JournalError::TornTail`] when no whole block
/// follows it, [`JournalError::Corrupt`] when one does.
pub(crate) fn classify(file: &File, path: &Path, problem: Problem) -> JournalError {
    let len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return JournalError::io(path, "reading the file size", e),
    };
    match find_whole_block(file, problem.offset, problem.overhead) {
        Ok(None) => JournalError::TornTail {
            path: path.to_owned(),
            offset: problem.offset,
            bytes: len.saturating_sub(problem.offset),
            reason: problem.reason,
        },
        Ok(Some(next)) => JournalError::Corrupt {
            path: path.to_owned(),
            offset: problem.offset,
            reason: format!(
                "{} (a whole block follows at byte {next}: damage in the middle, not a torn tail)",
                problem.reason
            ),
        },
        Err(e) => JournalError::io(path, "searching past a damaged block", e),
    }
}
