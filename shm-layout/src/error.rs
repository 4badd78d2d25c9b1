//! Errors of opening, validating and writing a segment. Opening errors name the file and say what
//! was expected and what was found; hot-path errors are small `Copy` enums.

use std::{io, path::PathBuf};

/// Capacities that cannot make a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Ring capacity not a power of two in range.
    #[error("ring_slots = {ring_slots}: must be a power of two between 2 and {max}")]
    RingSlots {
        /// Requested value.
        ring_slots: u64,
        /// Largest accepted.
        max: u64,
    },
    /// Instrument capacity out of range.
    #[error("instrument_capacity = {instrument_capacity}: must be between 1 and {max}")]
    InstrumentCapacity {
        /// Requested value.
        instrument_capacity: u32,
        /// Largest accepted.
        max: u32,
    },
}

/// Why a segment could not be opened, created or validated.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An I/O call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done ("opening", "mapping", …).
        what: &'static str,
        /// The segment file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The filesystem (normally the tmpfs of /dev/shm) cannot back the whole segment.
    #[error(
        "segment {path} needs {needed} bytes ({:.1} MiB) and its filesystem cannot provide them ({error}): \
         free space there (df {}), or make the ring smaller (feed.ring_slots)",
        *needed as f64 / 1048576.0,
        path.parent().map_or_else(|| ".".into(), |p| p.display().to_string())
    )]
    NoSpace {
        /// The segment file.
        path: PathBuf,
        /// The segment's size.
        needed: u64,
        /// What posix_fallocate said (ENOSPC, or EFBIG past a size limit); in the message, so not
        /// a separate `source` (it would be printed twice).
        error: io::Error,
    },
    /// The path is not a file the writer can trust: a symbolic link, another uid's file, or one
    /// open to others.
    #[error("segment {path} is refused: {reason}")]
    Untrusted {
        /// The segment (or its lock file).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process holds the writer lock.
    #[error(
        "segment {path} is already being written by another process (pid {pid} per its header); one writer per segment"
    )]
    Locked {
        /// The segment file.
        path: PathBuf,
        /// Writer pid recorded in the header (0 if unknown).
        pid: u64,
    },
    /// The file is smaller than its header says (or than a header).
    #[error("segment {path} is truncated: {len} bytes, needs {needed}")]
    Truncated {
        /// The segment file.
        path: PathBuf,
        /// Actual size.
        len: u64,
        /// Size required.
        needed: u64,
    },
    /// The writer has not finished creating it (magic still zero).
    #[error("segment {path} is not initialised (no magic yet): its writer is starting or died while creating it")]
    NotInitialised {
        /// The segment file.
        path: PathBuf,
    },
    /// Not a qilin segment.
    #[error(
        "{path} is not a qilin segment: magic {found:02x?}, expected {expected:02x?} ({:?})",
        String::from_utf8_lossy(expected)
    )]
    BadMagic {
        /// The segment file.
        path: PathBuf,
        /// Magic found.
        found: [u8; 8],
        /// Magic expected.
        expected: [u8; 8],
    },
    /// A qilin segment of the other record kind: a bar segment opened by a tick reader, or a tick
    /// segment by a bar reader. The C and Python readers give the same message.
    #[error("segment {path} is a {found} segment, not a {expected} segment: open it with the {found} reader")]
    WrongKind {
        /// The segment file.
        path: PathBuf,
        /// The kind the segment's magic names (`tick`, `bar`).
        found: &'static str,
        /// The kind this reader or writer reads (`tick`, `bar`).
        expected: &'static str,
    },
    /// Written by a build of another layout version.
    #[error(
        "segment {path} has layout version {found}, this build reads version {expected}; rebuild the reader against the writer's qilin-shm"
    )]
    Version {
        /// The segment file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version of this build.
        expected: u32,
    },
    /// Same version, different field layout.
    #[error(
        "segment {path} has layout fingerprint {}, this build has {}; the writer and this reader disagree on field offsets, rebuild against the same qilin-shm",
        crate::layout::fingerprint_text(*.found),
        crate::layout::fingerprint_text(*.expected)
    )]
    Fingerprint {
        /// The segment file.
        path: PathBuf,
        /// Fingerprint found.
        found: u64,
        /// Fingerprint of this build.
        expected: u64,
    },
    /// The header's geometry is not what its capacities imply (corrupt header).
    #[error("segment {path} has a corrupt header: {detail}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// What did not add up.
        detail: String,
    },
    /// The existing segment has other capacities than the writer was configured with.
    #[error(
        "segment {path} exists with {key} = {found}, but the configuration asks for {wanted}; remove the segment or use its capacity"
    )]
    CapacityMismatch {
        /// The segment file.
        path: PathBuf,
        /// Which capacity.
        key: &'static str,
        /// Value in the segment.
        found: u64,
        /// Configured value.
        wanted: u64,
    },
    /// Bad capacities.
    #[error("segment {path}: {source}")]
    Geometry {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        source: GeometryError,
    },
}

/// Why a tick was not published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// `instrument_index` is not below the directory length.
    #[error("instrument index {index} is not in the directory ({len} entries)")]
    UnknownInstrument {
        /// Index in the record.
        index: u32,
        /// Directory length.
        len: u32,
    },
    /// The record's last-value key is out of range: a bar whose `period` is not a code of the
    /// bar-period table (1 to 6).
    #[error("last-value key {key} is not below {per_instrument} (a bar's period code must be 1 to 6)")]
    LastValueKey {
        /// The record's key (a bar's period code − 1).
        key: u32,
        /// Last-value entries per instrument.
        per_instrument: u32,
    },
}

/// Why an instrument could not be added to the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The directory is at capacity.
    #[error("instrument directory is full ({capacity} entries)")]
    Full {
        /// Capacity.
        capacity: u32,
    },
    /// InstrumentID empty, too long, not ASCII or containing NUL.
    #[error("instrument id is empty, longer than 31 bytes, or not ASCII")]
    BadId,
}
