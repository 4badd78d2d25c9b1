//! `qilin-recorder`: every tick of the segment to the journal (`qilin_journal`), one file per feed
//! and trading day, `<journal_dir>/<feed>-<YYYYMMDD>.qj`.
//!
//! **The journal is the cursor.** At start the recorder opens the feed's newest journal file,
//! which verifies every block and cuts a torn tail (a SIGKILL or power cut mid-write), and
//! continues from the sequence after its last entry, re-reading the ring. Sequences the ring no
//! longer holds become one gap record (reason `restart`). There is no other state file.
//!
//! **Days.** A tick whose trading day is later than the open file's starts the next day's file
//! (the old one is synced first; the new one's header carries the old one's last sequence, so the
//! files continue each other). A tick of an earlier day (a late snapshot) stays in the open file,
//! keeping each file in sequence order, and is counted (`late_day_ticks`).
//!
//! **Gaps.** The reader's `Next::Gap` (lapped by the core) becomes a gap record (`lapped`).
//!
//! **Disk full.** A write that fails with ENOSPC leaves the file at its last whole block (the
//! journal drops the unwritten block). The recorder logs it once, loudly, with the path; sets
//! `disk_full` in its status and stats; counts it; keeps its position; and every
//! `journal.retry_interval_ms` re-reads the ring from that position and tries again. When a write
//! succeeds it logs the recovery. What the ring overwrote meanwhile is one gap record (`disk-full`).
//! Other write failures are handled the same way (the file is reopened, which verifies it).
//!
//! **A re-created segment** (a new file under the same path): noticed when the reader is idle,
//! after the old file was read to its end; see `journal/recreated.rs`.
//!
//! **Metrics.** [`Recorder::stats`] hands out a [`SharedStats`] that the recorder refreshes at
//! every status interval: a metrics server in the same process reads it without touching the
//! recorder's loop (the status file is written from the same snapshot).
//!
//! **Audit anchors** (`[[audit_anchor]]`, `audit_anchor.rs`): a thread of their own, started before
//! the segment is waited for; their state joins the status at every status interval.
//!
//! Status file keys (besides those every sidecar has, see docs/SIDECARS.md): `position` is the
//! last sequence in a written journal block, `synced` the last one fdatasynced, `file`,
//! `trading_day`, `bytes` (of the open file), `fsync` (policy), `fsync_interval_ms`, `fsyncs`,
//! `last_fsync_latency_us`, `max_fsync_latency_us`, `disk_full`.

mod audit_anchor;
pub mod config;
mod journal;
mod journal_source;
mod segment_file;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use serde::Serialize;

pub use self::{
    audit_anchor::{AnchorStats, AnchoredLog, AuditAnchors, SharedAnchors},
    config::{AuditAnchor, Config, ConfigError, Fsync, JournalConfig, StartAt},
    journal::Recorder,
    segment_file::SegmentFile,
};

/// The recorder's counters (`counters` in the status file).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Ticks written to the journal (in written blocks).
    pub ticks: u64,
    /// Gap records written.
    pub gaps: u64,
    /// Sequences covered by gap records written.
    pub gap_sequences: u64,
    /// Blocks written.
    pub blocks: u64,
    /// Bytes written to journal files.
    pub bytes: u64,
    /// fdatasync calls.
    pub fsyncs: u64,
    /// Journal files created.
    pub files: u64,
    /// Bytes cut off torn tails when opening journal files.
    pub repaired_bytes: u64,
    /// Core restarts seen (new segment epochs), re-created segments included.
    pub epochs: u64,
    /// Segments re-created under the same path (a new file) seen while running.
    pub recreated: u64,
    /// Ticks of an earlier trading day than the open file's, kept in it.
    pub late_day_ticks: u64,
    /// Times the disk filled up (one per episode, not per retry).
    pub disk_full: u64,
    /// Write attempts that failed again while the disk was full.
    pub disk_full_retries: u64,
    /// Write, sync and open failures (disk full included).
    pub errors: u64,
    /// Anchor lines written for the `[[audit_anchor]]` logs.
    pub audit_anchors: u64,
    /// Rounds in which an anchored audit log could not be read.
    pub audit_anchor_read_errors: u64,
    /// Rounds in which an anchor file could not be read or written.
    pub audit_anchor_write_errors: u64,
    /// Times an anchored audit log was seen going back (cut off or rewritten).
    pub audit_anchor_regressions: u64,
    /// Rounds in which an `[[audit_anchor]] key_file` could not be read (the last good key is used).
    pub audit_anchor_key_errors: u64,
}

/// A snapshot of the recorder, refreshed at every status interval and on every disk-full change.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Feed name of the segment.
    pub feed: String,
    /// `recording`, `paused` (disk full or a write failure, retried), `segment-recreated` (held:
    /// see docs/SIDECARS.md, "A re-created segment") or `stopped`.
    pub state: &'static str,
    /// When the snapshot was taken, UTC ns.
    pub updated_ns: i64,
    /// Last sequence in a written journal block (kept if the recorder dies).
    pub position: u64,
    /// Last sequence fdatasynced (kept through a power cut).
    pub synced: u64,
    /// Last sequence read from the ring.
    pub read: u64,
    /// The core's newest sequence.
    pub write_cursor: u64,
    /// `write_cursor − position`.
    pub lag_sequences: u64,
    /// Age of the tick at `position` (its publish time) while `lag_sequences > 0`, else 0.
    pub lag_ns: i64,
    /// The open journal file.
    pub file: Option<PathBuf>,
    /// Its trading day (0 if none is open).
    pub trading_day: u32,
    /// Its length in bytes.
    pub bytes: u64,
    /// fsync policy: `never`, `interval` or `every-block`.
    pub fsync: &'static str,
    /// With `interval`: the interval.
    pub fsync_interval_ms: u64,
    /// Duration of the last fdatasync, µs.
    pub last_fsync_latency_us: f64,
    /// Longest fdatasync, µs.
    pub max_fsync_latency_us: f64,
    /// The disk is full: recording is paused and retried.
    pub disk_full: bool,
    /// Counters.
    pub counters: Counters,
    /// The last failure, `None` once things work again.
    pub last_error: Option<String>,
    /// The `[[audit_anchor]]` logs: last anchored `seq` and time, last error (left out when none
    /// is configured).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audit_anchor: Vec<AnchoredLog>,
}

/// The recorder's stats, shared with whatever else runs in the process (a metrics server).
pub type SharedStats = Arc<Mutex<Stats>>;
