//! # qilin-shm: the shared-memory segment of qilin-feed
//!
//! One process (the core) writes normalized CTP ticks into a file in `/dev/shm`; any number of
//! processes (strategies, sidecars, tools) map it read-only and read them with plain loads — no
//! syscall, no serialization, one record copy. This crate is the whole contract: the byte layout,
//! the single [`Writer`] and the [`Reader`]. It depends on nothing else of the feed.
//!
//! ## Layout
//!
//! ```text
//! offset 0            ┌──────────────────────────────────────────────────────────────┐
//!                     │ Header, 9 lines × 128 B                                       │
//!                     │  0 Identity  magic "QILINSHM", layout version, fingerprint,  │
//!                     │              capacities, region offsets, feed name   (once)  │
//!                     │  1 Session   epoch, writer pid, run state, dir len  (restart)│
//!                     │  2 Heartbeat heartbeat_ns                            (~1 ms) │
//!                     │  3 Cursor    write_cursor = last published seq    (per tick) │
//!                     │  4 Status    seqlock'd link state, source, API, front         │
//!                     │  5-8 Counters 64 × u64 indexed by `Counter`       (events)  │
//! directory_offset    ├──────────────────────────────────────────────────────────────┤
//!                     │ DirectoryEntry × instrument_capacity (64 B: id, exchange, …) │
//! lvc_offset          ├──────────────────────────────────────────────────────────────┤
//!                     │ LvcEntry × instrument_capacity (384 B: version + TickRecord)  │
//! ring_offset (page)  ├──────────────────────────────────────────────────────────────┤
//!                     │ Slot × ring_slots (power of two; 384 B: stamp + TickRecord)   │
//! total_size (page)   └──────────────────────────────────────────────────────────────┘
//!
//! Slot (384 B = 6 × 64 B)          TickRecord (376 B = 47 words, all numbers, NaN = absent)
//!   +0   stamp  u64                  +0 sequence  +8 exchange_time_ns  +16 receive_ns
//!   +8   record TickRecord           +24 publish_ns  +32 instrument_index  +36 trading_day
//!                                    +40 action_day  +44 update_time_ms  +48 quality
//!                                    +52 exchange  +53 source  +56 instrument_id[32]
//!                                    +88 prices, volume, turnover, OI, limits, deltas …
//!                                    +240 bid_price[5] +280 ask_price[5]
//!                                    +320 bid_volume[5] +340 ask_volume[5] +360 reserved
//! ```
//!
//! The exact offsets of every field are in [`layout::STRUCTS`] (`qilinctl layout` prints them), are
//! asserted at compile time, and are hashed into [`layout::FINGERPRINT`], which every reader compares
//! with the header before reading anything else.
//!
//! ## Protocol, step by step
//!
//! **Creating.** [`Writer::open`] takes an exclusive `flock` on `<segment>.lock` (mode 0600, which
//! readers cannot open, so none can hold a restart off; a second writer fails with
//! [`OpenError::Locked`]), creates the file (mode 0640; never through a symbolic link, and an
//! existing one must be this uid's and within 0640: [`OpenError::Untrusted`]), backs, sizes and maps it, writes the identity line and
//! publishes the magic last with a Release store. A reader that sees no magic refuses
//! ([`OpenError::NotInitialised`]).
//!
//! **Reopening.** A writer that finds a valid segment of the same layout and capacities keeps it:
//! it adopts a slot the previous writer finished but did not count, clears last-value entries it
//! left half-written, bumps the **epoch**, and continues the sequence from the write cursor. Readers'
//! saved sequences stay meaningful across core restarts.
//!
//! **Publishing sequence `s`** (slot `s & (ring_slots − 1)`):
//! 1. slot stamp ← `2s − 1` ("busy"), then a Release fence;
//! 2. the 47 record words, each a Relaxed atomic store;
//! 3. slot stamp ← `2s` with Release ("whole");
//! 4. the same three steps on the instrument's last-value entry (version goes odd, then even);
//! 5. write cursor ← `s` with Release.
//!
//! The writer never reads anything a reader writes (readers write nothing), so it never waits.
//!
//! **Reading sequence `s`** ([`Reader::try_next`]):
//! 1. load the slot stamp with Acquire; `< 2s` → not written yet ([`Next::Empty`]);
//!    `> 2s` → overwritten ([`Next::Gap`]); `== 2s` → go on;
//! 2. copy the 47 words with Relaxed atomic loads, then an Acquire fence;
//! 3. load the stamp again: still `2s` → the copy is whole ([`Next::Tick`]); otherwise the writer
//!    lapped us mid-copy → [`Next::Gap`].
//!
//! On a gap the reader resumes [`Reader::lap_headroom`] slots (default `ring_slots / 8`) past the
//! oldest sequence still in the ring (computed from the write cursor), never past the next sequence
//! to be published, and reports exactly the sequences it skipped. Why the fences make a torn copy
//! detectable is argued in `src/seqlock.rs`, and checked by loom (`RUSTFLAGS="--cfg loom" cargo test
//! -p qilin-shm --release --lib loom`: the integration tests need the real reader), by Miri, and by
//! a cross-process stress test.
//!
//! **Liveness.** The writer stores a heartbeat about every millisecond; [`Reader::liveness`] tells a
//! live writer from a stale (dead or stalled) one and from one that stopped cleanly. A change of
//! epoch is reported once by `try_next` as [`Next::NewEpoch`].
//!
//! **Last values.** Each instrument's latest record sits under its own version word (a classic
//! seqlock); [`Reader::latest`] returns a consistent copy. The instrument directory is append-only:
//! entries are written before `directory_len` is raised past them with Release.
//!
//! **Bar segments.** The same writer, reader and protocol carry `qilin-bars`' closed bars:
//! [`BarWriter`] and [`BarReader`] are [`Writer`] and [`Reader`] over [`BarRecord`] (a sealed
//! [`Record`] trait gives each record kind its magic, version, fingerprint and sizes as constants,
//! so the tick path compiles as before). A bar segment has the magic `QILINBAR` and one last-value
//! entry per instrument and period ([`BarReader::latest_bar`]); a reader or writer of one kind
//! refuses the other with [`OpenError::WrongKind`] (LAYOUT.md, "Bar segments").
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod sync;

pub(crate) mod seqlock;

#[cfg(not(loom))]
pub mod cheader;
#[cfg(not(loom))]
pub mod codes;
#[cfg(not(loom))]
pub mod descriptor;
#[cfg(not(loom))]
pub mod encoding;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
pub mod layout;
#[cfg(not(loom))]
mod mapping;
#[cfg(not(loom))]
mod mirror;
#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod record;
#[cfg(not(loom))]
mod region;
#[cfg(not(loom))]
mod strategy;
#[cfg(not(loom))]
mod writer;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub use crate::{
    codes::{BarPeriod, Counter, Exchange, LinkState, RunState, Source, bar_flags, quality},
    error::{DirectoryError, GeometryError, OpenError, PublishError},
    layout::{
        BAR_FINGERPRINT, BAR_LAYOUT_VERSION, BarRecord, DirectoryEntry, FINGERPRINT, Identity, LAYOUT_VERSION,
        StatusRecord, TickRecord,
    },
    mapping::lock_path,
    mirror::{MirrorError, MirrorStart},
    reader::{LAP_HEADROOM_DIVISOR, LatestError, Liveness, Next, Reader, Start, default_lap_headroom},
    record::{Record, Words},
    region::{Geometry, MAX_INSTRUMENTS, MAX_RING_SLOTS},
    strategy::{Event, Events, Snapshot, UnknownInstrument},
    writer::{OpenReport, SegmentOptions, Writer, now_ns},
};

/// The writer of a bar segment (`qilin-bars`).
#[cfg(not(loom))]
pub type BarWriter = Writer<BarRecord>;
/// A reader of a bar segment.
#[cfg(not(loom))]
pub type BarReader = Reader<BarRecord>;
