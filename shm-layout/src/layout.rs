//! The shared structs, byte for byte, and the geometry that places them in the segment.
//!
//! Every struct is `#[repr(C)]`, has zerocopy derives, contains only integers, floats and byte
//! arrays (any bit pattern is a valid value), and is declared through `layout_struct!` so its field
//! table feeds the [`FINGERPRINT`]. Sizes and the cache-line placement of hot words are asserted at
//! the bottom of this file at compile time.
//!
//! ```text
//! Header (1152 B, nine 128-byte lines)
//!   line 0     Identity   magic, version, fingerprint, sizes, offsets, feed name   (written once)
//!   line 1     Session    epoch, writer pid, run state, start/stop time, dir len   (per restart)
//!   line 2     Heartbeat  heartbeat_ns                                              (every ~ms)
//!   line 3     Cursor     write_cursor = last published sequence                    (every tick)
//!   line 4     Status     version + link state, active source, trading day, API, front (seqlock)
//!   lines 5-8  Counters   64 × u64, indexed by `Counter`                           (on events)
//!
//! Slot / LvcEntry (384 B = 6 × 64)
//!   +0    stamp / version  u64
//!   +8    TickRecord       376 B = 47 words
//! ```

use crate::{
    codes::COUNTER_SLOTS,
    descriptor::{StructDesc, fingerprint, layout_struct},
};

/// First eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"QILINSHM";
/// Bumped on any change of the shared structs' meaning that the fingerprint would not catch.
pub const LAYOUT_VERSION: u32 = 1;
/// Cache-line pitch used to separate hot words (128 bytes: adjacent-line prefetch pairs 64-byte lines).
pub const CACHE_LINE: usize = 128;
/// Longest InstrumentID the feed stores (CTP allows 80; listed futures and options use ≤ 31).
pub const INSTRUMENT_ID_LEN: usize = 32;
/// Words in a [`TickRecord`].
pub const RECORD_WORDS: usize = size_of::<TickRecord>() / 8;
/// Words in a [`StatusRecord`].
pub const STATUS_WORDS: usize = size_of::<StatusRecord>() / 8;

layout_struct! {
    /// One normalized depth-market-data tick: the CTP `CThostFtdcDepthMarketDataField` 6.7.x numeric
    /// content plus the feed's own fields. Absent prices (CTP's DBL_MAX) are NaN.
    pub struct TickRecord {
        /// Feed sequence number, from 1, gap-free and continuing across core restarts.
        #[enc(Sequence)]
        pub sequence: u64,
        /// Exchange time: the instant `action_day` + `update_time_ms` China Standard Time (UTC+8), as
        /// UTC nanoseconds since the Unix epoch; a whole number of milliseconds.
        #[enc(UtcNs)]
        pub exchange_time_ns: i64,
        /// Local receive time (CLOCK_REALTIME, UTC ns) when the raw struct reached the feed.
        #[enc(UtcNs)]
        pub receive_ns: i64,
        /// Local time (CLOCK_REALTIME, UTC ns) just before the record was written to the ring.
        #[enc(UtcNs)]
        pub publish_ns: i64,
        /// Index of the instrument's DirectoryEntry (and LvcEntry).
        #[enc(DirectoryIndex)]
        pub instrument_index: u32,
        /// CTP TradingDay: the trading day the tick belongs to (a night session belongs to the next
        /// trading day; CZCE night ticks get it from the trading calendar).
        #[enc(Yyyymmdd)]
        pub trading_day: u32,
        /// Calendar day of the tick in China (CTP ActionDay; derived from the trading calendar where the
        /// exchange sends the trading day instead, quality bit `derived_action_day`).
        #[enc(Yyyymmdd)]
        pub action_day: u32,
        /// CTP UpdateTime (HH:MM:SS) and UpdateMillisec as milliseconds since midnight of `action_day`,
        /// China Standard Time; on a CZCE repeated second the feed's own milliseconds
        /// (`repeated_second`).
        #[enc(MsOfDayCst)]
        pub update_time_ms: u32,
        /// Quality flags: bits of the quality table.
        #[enc(QualityBits)]
        pub quality: u32,
        /// Exchange code (the exchange table). Its name is the table's name for the code, the same
        /// text as `exchange_id` in the DirectoryEntry at `instrument_index`.
        #[enc(ExchangeCode)]
        pub exchange: u8,
        /// Where the tick came from: a code of the source table.
        #[enc(SourceCode)]
        pub source: u8,
        /// Zero.
        #[enc(Reserved)]
        pub reserved0: [u8; 2],
        /// CTP InstrumentID (at most 31 characters).
        #[enc(Ascii)]
        pub instrument_id: [u8; INSTRUMENT_ID_LEN],
        /// LastPrice.
        #[enc(Price)]
        pub last_price: f64,
        /// PreSettlementPrice.
        #[enc(Price)]
        pub pre_settlement_price: f64,
        /// PreClosePrice.
        #[enc(Price)]
        pub pre_close_price: f64,
        /// PreOpenInterest: open interest at the previous close.
        #[enc(LotsF64)]
        pub pre_open_interest: f64,
        /// OpenPrice.
        #[enc(Price)]
        pub open_price: f64,
        /// HighestPrice.
        #[enc(Price)]
        pub highest_price: f64,
        /// LowestPrice.
        #[enc(Price)]
        pub lowest_price: f64,
        /// Volume: contracts traded, cumulative for the trading day (an integer; CTP sends an int).
        #[enc(Lots)]
        pub volume: i64,
        /// Turnover: value traded, cumulative for the trading day (a double, as CTP sends it).
        #[enc(Money)]
        pub turnover: f64,
        /// OpenInterest: contracts open (a double, as CTP sends it).
        #[enc(LotsF64)]
        pub open_interest: f64,
        /// ClosePrice.
        #[enc(Price)]
        pub close_price: f64,
        /// SettlementPrice.
        #[enc(Price)]
        pub settlement_price: f64,
        /// UpperLimitPrice.
        #[enc(Price)]
        pub upper_limit_price: f64,
        /// LowerLimitPrice.
        #[enc(Price)]
        pub lower_limit_price: f64,
        /// PreDelta.
        #[enc(Real)]
        pub pre_delta: f64,
        /// CurrDelta.
        #[enc(Real)]
        pub curr_delta: f64,
        /// AveragePrice, per unit on every exchange (CTP sends it per lot except on CZCE).
        #[enc(Price)]
        pub average_price: f64,
        /// BandingUpperPrice.
        #[enc(Price)]
        pub banding_upper_price: f64,
        /// BandingLowerPrice.
        #[enc(Price)]
        pub banding_lower_price: f64,
        /// BidPrice1..5, best first.
        #[enc(Price)]
        pub bid_price: [f64; 5],
        /// AskPrice1..5, best first.
        #[enc(Price)]
        pub ask_price: [f64; 5],
        /// BidVolume1..5, best first; 0 for an empty level.
        #[enc(Lots)]
        pub bid_volume: [i32; 5],
        /// AskVolume1..5, best first; 0 for an empty level.
        #[enc(Lots)]
        pub ask_volume: [i32; 5],
        /// Zero; reserved for future fields.
        #[enc(Reserved)]
        pub reserved1: [u64; 2],
    }
}

impl TickRecord {
    /// An all-zero record (every price 0.0, not NaN): the starting point for building one.
    pub const ZERO: TickRecord = zerocopy::transmute!([0u64; RECORD_WORDS]);

    /// The InstrumentID as text (up to the first NUL); `None` if not ASCII.
    pub fn instrument_id_str(&self) -> Option<&str> {
        id_str(&self.instrument_id)
    }
}

layout_struct! {
    /// A ring slot: a stamp (`2·seq − 1` while being written, `2·seq` when whole) and the record.
    pub struct Slot {
        /// Seqlock stamp of the slot.
        #[enc(RingStamp)]
        pub stamp: u64,
        /// The tick.
        #[enc(Struct)]
        pub record: TickRecord,
    }
}

layout_struct! {
    /// A last-value-cache entry: a version (odd while being written, even when whole, 0 = empty)
    /// and the latest record of one instrument.
    pub struct LvcEntry {
        /// Seqlock version of the entry.
        #[enc(SeqlockVersion)]
        pub version: u64,
        /// Latest tick of the instrument.
        #[enc(Struct)]
        pub record: TickRecord,
    }
}

layout_struct! {
    /// One instrument in the directory. Entries are append-only: written before
    /// `Session::directory_len` is raised past them and never changed afterwards.
    pub struct DirectoryEntry {
        /// CTP InstrumentID (at most 31 characters).
        #[enc(Ascii)]
        pub instrument_id: [u8; INSTRUMENT_ID_LEN],
        /// CTP ExchangeID of the instrument: the exchange table's name of `exchange` ("SHFE", ...).
        #[enc(Ascii)]
        pub exchange_id: [u8; 8],
        /// Exchange code (the exchange table).
        #[enc(ExchangeCode)]
        pub exchange: u8,
        /// Zero.
        #[enc(Reserved)]
        pub reserved0: [u8; 3],
        /// Contract multiplier (VolumeMultiple).
        #[enc(UnitsPerLot)]
        pub volume_multiple: u32,
        /// Price tick (the smallest price step), NaN if unknown.
        #[enc(Price)]
        pub price_tick: f64,
        /// Zero.
        #[enc(Reserved)]
        pub reserved1: [u64; 1],
    }
}

impl DirectoryEntry {
    /// The InstrumentID as text (up to the first NUL); `None` if not ASCII.
    pub fn instrument_id_str(&self) -> Option<&str> {
        id_str(&self.instrument_id)
    }
}

layout_struct! {
    /// Header line 0: identity and geometry, written once when the segment is created.
    pub struct Identity {
        /// "QILINSHM"; stored last when the segment is created (all zero: not initialised yet).
        #[enc(Magic)]
        pub magic: [u8; 8],
        /// Layout version (1): bumped when the meaning of existing bytes changes.
        #[enc(Count)]
        pub layout_version: u32,
        /// Size of the header (1152).
        #[enc(Bytes)]
        pub header_size: u32,
        /// Layout fingerprint of the writer's build.
        #[enc(Fingerprint)]
        pub fingerprint: u64,
        /// Size of the whole segment.
        #[enc(Bytes)]
        pub total_size: u64,
        /// When the segment was created.
        #[enc(UtcNs)]
        pub created_ns: i64,
        /// Ring capacity in slots (a power of two).
        #[enc(Count)]
        pub ring_slots: u64,
        /// Size of a Slot (384).
        #[enc(Bytes)]
        pub slot_size: u32,
        /// Size of a TickRecord (376).
        #[enc(Bytes)]
        pub record_size: u32,
        /// Capacity of the instrument directory and of the last-value cache, in entries.
        #[enc(Count)]
        pub instrument_capacity: u32,
        /// Size of a DirectoryEntry (64).
        #[enc(Bytes)]
        pub directory_entry_size: u32,
        /// Size of an LvcEntry (384).
        #[enc(Bytes)]
        pub lvc_entry_size: u32,
        /// Zero.
        #[enc(Reserved)]
        pub reserved0: u32,
        /// Byte offset of the instrument directory.
        #[enc(Bytes)]
        pub directory_offset: u64,
        /// Byte offset of the last-value cache.
        #[enc(Bytes)]
        pub lvc_offset: u64,
        /// Byte offset of the ring.
        #[enc(Bytes)]
        pub ring_offset: u64,
        /// Feed name (at most 31 characters).
        #[enc(Ascii)]
        pub feed_name: [u8; 32],
    }
}

layout_struct! {
    /// Header line 1: the writer session; changes on each writer start, stop, or directory growth.
    pub struct Session {
        /// Incremented by every writer start, so readers notice a restart.
        #[enc(Count)]
        pub epoch: u64,
        /// Process id of the current (or last) writer.
        #[enc(Count)]
        pub writer_pid: u64,
        /// The writer's run state: a code of the run-state table.
        #[enc(RunStateCode)]
        pub run_state: u64,
        /// When the current writer opened the segment.
        #[enc(UtcNs)]
        pub started_ns: i64,
        /// When the writer last stopped cleanly (0 if it has not).
        #[enc(UtcNs)]
        pub stopped_ns: i64,
        /// Number of published directory entries (load with acquire; entries below it are immutable).
        #[enc(Count)]
        pub directory_len: u64,
        /// Zero.
        #[enc(Reserved)]
        pub reserved: [u64; 10],
    }
}

layout_struct! {
    /// Header line 2: the writer's heartbeat, refreshed about every millisecond while running.
    pub struct Heartbeat {
        /// Last heartbeat, refreshed about every millisecond while the core runs.
        #[enc(UtcNs)]
        pub heartbeat_ns: i64,
        /// Zero.
        #[enc(Reserved)]
        pub reserved: [u64; 15],
    }
}

layout_struct! {
    /// Header line 3: the write cursor, stored after every published tick.
    pub struct Cursor {
        /// Sequence of the last published tick (0: none yet), stored with release after the tick's
        /// slot stamp went to done and its last value was written.
        #[enc(Sequence)]
        pub write_cursor: u64,
        /// Zero.
        #[enc(Reserved)]
        pub reserved: [u64; 15],
    }
}

layout_struct! {
    /// The core's market-data link status (the data words of header line 4).
    pub struct StatusRecord {
        /// Market-data link state: a code of the link-state table.
        #[enc(LinkStateCode)]
        pub link_state: u32,
        /// Source code of the active session (0 if none).
        #[enc(SourceCode)]
        pub active_source: u32,
        /// Trading day the front reports, YYYYMMDD (0 if unknown).
        #[enc(Yyyymmdd)]
        pub trading_day: u32,
        /// Failovers since the core started.
        #[enc(Count)]
        pub failovers: u32,
        /// Vendor API version (at most 39 characters; other bytes than ASCII written as '?').
        #[enc(Ascii)]
        pub api_version: [u8; 40],
        /// Front address in use, never credentials (at most 63 characters; other bytes than ASCII
        /// written as '?').
        #[enc(Ascii)]
        pub front: [u8; 64],
    }
}

layout_struct! {
    /// Header line 4: the status record under its own seqlock version.
    pub struct Status {
        /// Seqlock version of the status record.
        #[enc(SeqlockVersion)]
        pub version: u64,
        /// The status.
        #[enc(Struct)]
        pub record: StatusRecord,
    }
}

layout_struct! {
    /// Header lines 5–8: counters, indexed by `Counter`.
    pub struct Counters {
        /// Counter values, indexed by the counter table.
        #[enc(Counters)]
        pub values: [u64; COUNTER_SLOTS],
    }
}

layout_struct! {
    /// The segment header.
    pub struct Header {
        /// Line 0.
        #[enc(Struct)]
        pub identity: Identity,
        /// Line 1.
        #[enc(Struct)]
        pub session: Session,
        /// Line 2.
        #[enc(Struct)]
        pub heartbeat: Heartbeat,
        /// Line 3.
        #[enc(Struct)]
        pub cursor: Cursor,
        /// Line 4.
        #[enc(Struct)]
        pub status: Status,
        /// Lines 5–8.
        #[enc(Struct)]
        pub counters: Counters,
    }
}

layout_struct! {
    /// One closed bar of one instrument and period (bar segments, written by `qilin-bars`): the
    /// fields of the bar's NATS body (docs/BARS.md). Absent prices are NaN.
    pub struct BarRecord {
        /// Sequence of the bar in its bar segment, from 1, gap-free and continuing across restarts
        /// of the bar writer (not a feed sequence: those are `first_sequence` and `last_sequence`).
        #[enc(Sequence)]
        pub sequence: u64,
        /// The bar's window start (inclusive): the clock-aligned start, or its section's open if later.
        #[enc(UtcNs)]
        pub start_ns: i64,
        /// The bar's window end (exclusive): the next aligned boundary, or its section's close if
        /// earlier (ticks in the closing second after a close belong to the bar ending there).
        #[enc(UtcNs)]
        pub end_ns: i64,
        /// Local time (CLOCK_REALTIME, UTC ns) just before the bar was written to the ring.
        #[enc(UtcNs)]
        pub publish_ns: i64,
        /// Index of the instrument's DirectoryEntry in this bar segment; its last bars are the
        /// BarLvcEntry entries 6 × instrument_index + period − 1.
        #[enc(DirectoryIndex)]
        pub instrument_index: u32,
        /// The trading day the bar belongs to.
        #[enc(Yyyymmdd)]
        pub trading_day: u32,
        /// Bar flags: bits of the bar-flags table.
        #[enc(BarFlags)]
        pub flags: u32,
        /// Ticks in the bar.
        #[enc(Count)]
        pub ticks: u32,
        /// Exchange code (the exchange table).
        #[enc(ExchangeCode)]
        pub exchange: u8,
        /// The bar's period: a code of the bar-period table.
        #[enc(BarPeriodCode)]
        pub period: u8,
        /// Zero.
        #[enc(Reserved)]
        pub reserved0: [u8; 6],
        /// CTP InstrumentID (at most 31 characters).
        #[enc(Ascii)]
        pub instrument_id: [u8; INSTRUMENT_ID_LEN],
        /// First LastPrice of the bar.
        #[enc(Price)]
        pub open: f64,
        /// Highest LastPrice of the bar.
        #[enc(Price)]
        pub high: f64,
        /// Lowest LastPrice of the bar.
        #[enc(Price)]
        pub low: f64,
        /// Last LastPrice of the bar.
        #[enc(Price)]
        pub close: f64,
        /// Contracts traded in the bar: the rise of cumulative Volume over the bar, never negative.
        #[enc(Lots)]
        pub volume: i64,
        /// Value traded in the bar: the rise of cumulative Turnover over the bar, never negative.
        #[enc(Money)]
        pub turnover: f64,
        /// OpenInterest at the bar's last tick.
        #[enc(LotsF64)]
        pub open_interest: f64,
        /// OpenInterest at the bar's last tick minus OpenInterest before its first tick (signed).
        #[enc(LotsF64)]
        pub open_interest_change: f64,
        /// Feed sequence of the bar's first tick.
        #[enc(Sequence)]
        pub first_sequence: u64,
        /// Feed sequence of the bar's last tick.
        #[enc(Sequence)]
        pub last_sequence: u64,
        /// Zero; reserved for future fields.
        #[enc(Reserved)]
        pub reserved1: [u64; 2],
    }
}

impl BarRecord {
    /// An all-zero record (every price 0.0, not NaN): the starting point for building one.
    pub const ZERO: BarRecord = zerocopy::transmute!([0u64; BAR_RECORD_WORDS]);

    /// The InstrumentID as text (up to the first NUL); `None` if not ASCII.
    pub fn instrument_id_str(&self) -> Option<&str> {
        id_str(&self.instrument_id)
    }
}

layout_struct! {
    /// A bar segment's ring slot: a stamp (`2·seq − 1` while being written, `2·seq` when whole)
    /// and the bar.
    pub struct BarSlot {
        /// Seqlock stamp of the slot.
        #[enc(RingStamp)]
        pub stamp: u64,
        /// The bar.
        #[enc(Struct)]
        pub record: BarRecord,
    }
}

layout_struct! {
    /// A bar segment's last-value entry: the last closed bar of one instrument and period, under a
    /// version (odd while being written, even when whole, 0 = none yet).
    pub struct BarLvcEntry {
        /// Seqlock version of the entry.
        #[enc(SeqlockVersion)]
        pub version: u64,
        /// The last closed bar of the instrument and period.
        #[enc(Struct)]
        pub record: BarRecord,
    }
}

/// First eight bytes of every bar segment.
pub const BAR_MAGIC: [u8; 8] = *b"QILINBAR";
/// Version of the bar segment's layout: bumped on any change of meaning the fingerprint would not catch.
pub const BAR_LAYOUT_VERSION: u32 = 1;
/// Words in a [`BarRecord`].
pub const BAR_RECORD_WORDS: usize = size_of::<BarRecord>() / 8;
/// Last-value entries per instrument in a bar segment: one per period (entry
/// `6 × instrument_index + period − 1`).
pub const BAR_LVC_PER_INSTRUMENT: u32 = 6;

/// Every struct of a bar segment, in the order they are hashed into [`BAR_FINGERPRINT`]: the header
/// and directory of a tick segment, the bar's own slot, last-value entry and record.
pub const BAR_STRUCTS: &[StructDesc] = &[
    Header::DESC,
    Identity::DESC,
    Session::DESC,
    Heartbeat::DESC,
    Cursor::DESC,
    Status::DESC,
    StatusRecord::DESC,
    Counters::DESC,
    DirectoryEntry::DESC,
    BarLvcEntry::DESC,
    BarSlot::DESC,
    BarRecord::DESC,
];

/// The bar segment's layout fingerprint: its structs, the bar-period names and the bar-flag names.
pub const BAR_FINGERPRINT: u64 = fingerprint(BAR_STRUCTS, &BAR_FINGERPRINT_NAMES);

const BAR_FINGERPRINT_NAMES: [&str; 12] = {
    let mut out = [""; 12];
    let mut i = 0;
    while i < 6 {
        out[i] = crate::codes::BarPeriod::ALL[i].as_str();
        out[6 + i] = crate::codes::bar_flags::NAMES[i].1;
        i += 1;
    }
    out
};

/// Every shared struct, in the order they are hashed into the fingerprint and printed by tools.
pub const STRUCTS: &[StructDesc] = &[
    Header::DESC,
    Identity::DESC,
    Session::DESC,
    Heartbeat::DESC,
    Cursor::DESC,
    Status::DESC,
    StatusRecord::DESC,
    Counters::DESC,
    DirectoryEntry::DESC,
    LvcEntry::DESC,
    Slot::DESC,
    TickRecord::DESC,
];

/// Layout fingerprint: hash of every struct's fields and of the counter names.
pub const FINGERPRINT: u64 = fingerprint(STRUCTS, crate::codes::Counter::NAMES);

/// A layout fingerprint as text, the one way it is written everywhere (`qilinctl layout --json`,
/// `qilinctl status`, the `Qilin-Layout` NATS header, error messages): `0x` and 16 lowercase hex
/// digits, e.g. `0x10266eeff883a132`.
pub fn fingerprint_text(fingerprint: u64) -> String {
    format!("{fingerprint:#018x}")
}

/// Text of a NUL-padded fixed field (up to the first NUL); `None` if not ASCII.
pub fn id_str(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let text = &bytes[..end];
    text.is_ascii().then(|| core::str::from_utf8(text).ok()).flatten()
}

/// Copies `text` into a NUL-padded fixed field; `None` if it does not fit (with one NUL) or is not ASCII.
pub fn fixed_id<const N: usize>(text: &str) -> Option<[u8; N]> {
    if !text.is_ascii() || text.len() >= N || text.bytes().any(|b| b == 0) {
        return None;
    }
    let mut out = [0u8; N];
    out[..text.len()].copy_from_slice(text.as_bytes());
    Some(out)
}

// --- compile-time layout assertions -------------------------------------------------------------
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<TickRecord>() == 376);
    assert!(size_of::<TickRecord>().is_multiple_of(8) && align_of::<TickRecord>() == 8);
    assert!(size_of::<Slot>() == 384 && size_of::<Slot>().is_multiple_of(64));
    assert!(size_of::<LvcEntry>() == size_of::<Slot>());
    assert!(offset_of!(Slot, record) == 8 && offset_of!(LvcEntry, record) == 8);
    assert!(size_of::<DirectoryEntry>() == 64);
    assert!(size_of::<Identity>() == CACHE_LINE);
    assert!(size_of::<Session>() == CACHE_LINE);
    assert!(size_of::<Heartbeat>() == CACHE_LINE);
    assert!(size_of::<Cursor>() == CACHE_LINE);
    assert!(size_of::<Status>() == CACHE_LINE);
    assert!(size_of::<StatusRecord>().is_multiple_of(8));
    assert!(size_of::<Counters>() == 4 * CACHE_LINE);
    assert!(size_of::<Header>() == 9 * CACHE_LINE);
    // Hot words start their own line; identity (never written after creation) shares none.
    assert!(offset_of!(Header, identity) == 0);
    assert!(offset_of!(Header, session) % CACHE_LINE == 0);
    assert!(offset_of!(Header, heartbeat) % CACHE_LINE == 0);
    assert!(offset_of!(Header, cursor) % CACHE_LINE == 0);
    assert!(offset_of!(Header, status) % CACHE_LINE == 0);
    assert!(offset_of!(Header, counters) % CACHE_LINE == 0);
    // Fields read or written as atomic words sit on 8-byte boundaries.
    assert!(offset_of!(Identity, magic) == 0);
    assert!(offset_of!(Session, epoch) % 8 == 0 && offset_of!(Session, directory_len) % 8 == 0);
    assert!(offset_of!(TickRecord, sequence) == 0);
    assert!(size_of::<BarRecord>() == 184 && align_of::<BarRecord>() == 8);
    assert!(size_of::<BarSlot>() == 192 && size_of::<BarSlot>().is_multiple_of(64));
    assert!(size_of::<BarLvcEntry>() == size_of::<BarSlot>());
    assert!(offset_of!(BarSlot, record) == 8 && offset_of!(BarLvcEntry, record) == 8);
    assert!(offset_of!(BarRecord, sequence) == 0);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_written_0x_and_16_lowercase_hex_digits() {
        assert_eq!(fingerprint_text(0xAB), "0x00000000000000ab");
        assert_eq!(fingerprint_text(u64::MAX), "0xffffffffffffffff");
    }

    #[test]
    fn fingerprint_covers_every_struct_and_is_stable_within_a_build() {
        assert_eq!(FINGERPRINT, fingerprint(STRUCTS, crate::codes::Counter::NAMES));
        assert_ne!(FINGERPRINT, fingerprint(&STRUCTS[1..], crate::codes::Counter::NAMES));
        let names: Vec<_> = TickRecord::DESC.fields.iter().map(|f| f.name).collect();
        for wanted in ["last_price", "banding_lower_price", "bid_price", "ask_volume", "exchange_time_ns"] {
            assert!(names.contains(&wanted), "{wanted} missing from TickRecord::DESC");
        }
    }

    /// Every field of every shared struct is described once: a machine type that accounts for its
    /// size, an encoding that fits the type, and a description in words (no Rust-only links).
    #[test]
    fn every_field_of_every_struct_has_a_type_an_encoding_and_a_description() {
        use crate::encoding::FieldType;
        let mut seen = std::collections::HashSet::new();
        for s in STRUCTS {
            for f in s.fields {
                let key = format!("{}.{}", s.name, f.name);
                assert!(seen.insert(key.clone()), "{key} described twice");
                let size = match f.ty {
                    FieldType::Scalar(x) => x.size(),
                    FieldType::Array(x, n) => x.size() * n,
                    FieldType::Struct(name) => STRUCTS.iter().find(|d| d.name == name).expect("a shared struct").size,
                };
                assert_eq!(size, f.size, "{key}: type {} does not account for the size", f.ty.name());
                assert!(f.encoding.fits(f.ty), "{key}");
                let text = f.description();
                assert!(!text.is_empty() && !text.contains("[`"), "{key}: {text:?}");
            }
        }
        assert_eq!(seen.len(), STRUCTS.iter().map(|s| s.fields.len()).sum::<usize>());
    }

    /// The facts outside readers had to guess (issue 19 item 6), pinned.
    #[test]
    fn tick_fields_have_the_types_and_encodings_the_contract_states() {
        use crate::encoding::Encoding::*;
        let field = |s: &StructDesc, name: &str| *s.fields.iter().find(|f| f.name == name).unwrap();
        let tick = &TickRecord::DESC;
        for (name, ty, encoding) in [
            ("volume", "i64", Lots),
            ("turnover", "f64", Money),
            ("open_interest", "f64", LotsF64),
            ("pre_open_interest", "f64", LotsF64),
            ("exchange_time_ns", "i64", UtcNs),
            ("trading_day", "u32", Yyyymmdd),
            ("action_day", "u32", Yyyymmdd),
            ("update_time_ms", "u32", MsOfDayCst),
            ("quality", "u32", QualityBits),
            ("exchange", "u8", ExchangeCode),
            ("source", "u8", SourceCode),
            ("instrument_id", "u8[32]", Ascii),
            ("bid_price", "f64[5]", Price),
            ("ask_volume", "i32[5]", Lots),
        ] {
            let f = field(tick, name);
            assert_eq!((f.ty.name().as_str(), f.encoding), (ty, encoding), "TickRecord.{name}");
        }
        assert_eq!(field(&Identity::DESC, "magic").encoding, Magic);
        assert_eq!(field(&Cursor::DESC, "write_cursor").encoding, Sequence);
        assert_eq!(field(&DirectoryEntry::DESC, "exchange_id").encoding, Ascii);
        assert_eq!(u64::from_le_bytes(MAGIC), 0x4d48_534e_494c_4951, "the magic's bytes in file order");
    }

    /// The bar record is described like the tick record, and its fingerprint is its own.
    #[test]
    fn bar_structs_are_described_and_fingerprinted_apart_from_ticks() {
        use crate::encoding::{Encoding::*, FieldType};
        for s in BAR_STRUCTS {
            for f in s.fields {
                let size = match f.ty {
                    FieldType::Scalar(x) => x.size(),
                    FieldType::Array(x, n) => x.size() * n,
                    FieldType::Struct(name) => BAR_STRUCTS.iter().find(|d| d.name == name).expect("a bar struct").size,
                };
                assert_eq!(size, f.size, "{}.{}", s.name, f.name);
                assert!(!f.description().is_empty());
            }
        }
        let field = |name: &str| *BarRecord::DESC.fields.iter().find(|f| f.name == name).unwrap();
        for (name, ty, encoding) in [
            ("start_ns", "i64", UtcNs),
            ("period", "u8", BarPeriodCode),
            ("flags", "u32", BarFlags),
            ("volume", "i64", Lots),
            ("turnover", "f64", Money),
            ("open_interest_change", "f64", LotsF64),
            ("first_sequence", "u64", Sequence),
        ] {
            let f = field(name);
            assert_eq!((f.ty.name().as_str(), f.encoding), (ty, encoding), "BarRecord.{name}");
        }
        assert_ne!(BAR_FINGERPRINT, FINGERPRINT);
        assert_eq!(u64::from_le_bytes(BAR_MAGIC), 0x5241_424e_494c_4951, "the bar magic's bytes in file order");
        use zerocopy::IntoBytes;
        assert!(BarRecord::ZERO.as_bytes().iter().all(|b| *b == 0));
    }

    #[test]
    fn fixed_id_round_trips_and_refuses_what_does_not_fit() {
        let id: [u8; 32] = fixed_id("rb2505").unwrap();
        assert_eq!(id_str(&id), Some("rb2505"));
        assert!(fixed_id::<8>("12345678").is_none(), "needs room for the NUL");
        assert!(fixed_id::<8>("1234567").is_some());
        assert!(fixed_id::<8>("é").is_none());
        assert!(fixed_id::<8>("a\0b").is_none());
        assert_eq!(id_str(&[0xff, 0]), None);
    }

    #[test]
    fn zero_record_is_all_zero_bytes() {
        use zerocopy::IntoBytes;
        assert!(TickRecord::ZERO.as_bytes().iter().all(|b| *b == 0));
    }
}
