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
        pub sequence: u64,
        /// Exchange time as UTC nanoseconds since the Unix epoch (from ActionDay + UpdateTime + ms,
        /// China Standard Time, per-exchange day rules applied).
        pub exchange_time_ns: i64,
        /// Local receive time (CLOCK_REALTIME, UTC ns) when the raw struct reached the feed.
        pub receive_ns: i64,
        /// Local time (CLOCK_REALTIME, UTC ns) just before the record was written to the ring.
        pub publish_ns: i64,
        /// Index into the instrument directory.
        pub instrument_index: u32,
        /// CTP TradingDay as YYYYMMDD.
        pub trading_day: u32,
        /// Calendar day of the tick as YYYYMMDD (ActionDay, derived where the exchange does not send it).
        pub action_day: u32,
        /// UpdateTime + UpdateMillisec as milliseconds since local (China) midnight.
        pub update_time_ms: u32,
        /// `quality` bits.
        pub quality: u32,
        /// `Exchange` code.
        pub exchange: u8,
        /// `Source` code.
        pub source: u8,
        /// Zero.
        pub reserved0: [u8; 2],
        /// InstrumentID, ASCII, NUL-padded.
        pub instrument_id: [u8; INSTRUMENT_ID_LEN],
        /// LastPrice.
        pub last_price: f64,
        /// PreSettlementPrice.
        pub pre_settlement_price: f64,
        /// PreClosePrice.
        pub pre_close_price: f64,
        /// PreOpenInterest.
        pub pre_open_interest: f64,
        /// OpenPrice.
        pub open_price: f64,
        /// HighestPrice.
        pub highest_price: f64,
        /// LowestPrice.
        pub lowest_price: f64,
        /// Volume: cumulative for the trading day.
        pub volume: i64,
        /// Turnover: cumulative for the trading day.
        pub turnover: f64,
        /// OpenInterest.
        pub open_interest: f64,
        /// ClosePrice.
        pub close_price: f64,
        /// SettlementPrice.
        pub settlement_price: f64,
        /// UpperLimitPrice.
        pub upper_limit_price: f64,
        /// LowerLimitPrice.
        pub lower_limit_price: f64,
        /// PreDelta.
        pub pre_delta: f64,
        /// CurrDelta.
        pub curr_delta: f64,
        /// AveragePrice, per unit on every exchange (CTP sends it per lot except on CZCE).
        pub average_price: f64,
        /// BandingUpperPrice.
        pub banding_upper_price: f64,
        /// BandingLowerPrice.
        pub banding_lower_price: f64,
        /// BidPrice1..5.
        pub bid_price: [f64; 5],
        /// AskPrice1..5.
        pub ask_price: [f64; 5],
        /// BidVolume1..5.
        pub bid_volume: [i32; 5],
        /// AskVolume1..5.
        pub ask_volume: [i32; 5],
        /// Zero; reserved for future fields.
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
        /// Seqlock stamp, see `seqlock`.
        pub stamp: u64,
        /// The tick.
        pub record: TickRecord,
    }
}

layout_struct! {
    /// A last-value-cache entry: a version (odd while being written, even when whole, 0 = empty)
    /// and the latest record of one instrument.
    pub struct LvcEntry {
        /// Seqlock version.
        pub version: u64,
        /// Latest tick of the instrument.
        pub record: TickRecord,
    }
}

layout_struct! {
    /// One instrument in the directory. Entries are append-only: written before
    /// `Session::directory_len` is raised past them and never changed afterwards.
    pub struct DirectoryEntry {
        /// InstrumentID, ASCII, NUL-padded.
        pub instrument_id: [u8; INSTRUMENT_ID_LEN],
        /// ExchangeID, ASCII, NUL-padded.
        pub exchange_id: [u8; 8],
        /// `Exchange` code.
        pub exchange: u8,
        /// Zero.
        pub reserved0: [u8; 3],
        /// Contract multiplier (VolumeMultiple), 0 if unknown.
        pub volume_multiple: u32,
        /// Price tick, NaN if unknown.
        pub price_tick: f64,
        /// Zero.
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
        /// [`MAGIC`]; written last at creation (a zero magic means "not initialised yet").
        pub magic: [u8; 8],
        /// [`LAYOUT_VERSION`].
        pub layout_version: u32,
        /// `size_of::<Header>()`.
        pub header_size: u32,
        /// [`FINGERPRINT`].
        pub fingerprint: u64,
        /// Total bytes of the segment.
        pub total_size: u64,
        /// Creation time, UTC ns.
        pub created_ns: i64,
        /// Ring capacity in slots (a power of two).
        pub ring_slots: u64,
        /// `size_of::<Slot>()`.
        pub slot_size: u32,
        /// `size_of::<TickRecord>()`.
        pub record_size: u32,
        /// Capacity of the instrument directory and of the last-value cache.
        pub instrument_capacity: u32,
        /// `size_of::<DirectoryEntry>()`.
        pub directory_entry_size: u32,
        /// `size_of::<LvcEntry>()`.
        pub lvc_entry_size: u32,
        /// Zero.
        pub reserved0: u32,
        /// Byte offset of the instrument directory.
        pub directory_offset: u64,
        /// Byte offset of the last-value cache.
        pub lvc_offset: u64,
        /// Byte offset of the ring.
        pub ring_offset: u64,
        /// Feed name, ASCII, NUL-padded.
        pub feed_name: [u8; 32],
    }
}

layout_struct! {
    /// Header line 1: the writer session; changes on each writer start, stop, or directory growth.
    pub struct Session {
        /// Incremented by every writer start, so readers notice a restart.
        pub epoch: u64,
        /// Process id of the current (or last) writer.
        pub writer_pid: u64,
        /// `RunState` code.
        pub run_state: u64,
        /// When the current writer opened the segment, UTC ns.
        pub started_ns: i64,
        /// When the writer last stopped cleanly, UTC ns (0 if it has not).
        pub stopped_ns: i64,
        /// Number of published directory entries.
        pub directory_len: u64,
        /// Zero.
        pub reserved: [u64; 10],
    }
}

layout_struct! {
    /// Header line 2: the writer's heartbeat, refreshed about every millisecond while running.
    pub struct Heartbeat {
        /// Last heartbeat, UTC ns.
        pub heartbeat_ns: i64,
        /// Zero.
        pub reserved: [u64; 15],
    }
}

layout_struct! {
    /// Header line 3: the write cursor, stored after every published tick.
    pub struct Cursor {
        /// Last published sequence (0: none yet).
        pub write_cursor: u64,
        /// Zero.
        pub reserved: [u64; 15],
    }
}

layout_struct! {
    /// The core's market-data link status (the data words of header line 4).
    pub struct StatusRecord {
        /// `LinkState` code.
        pub link_state: u32,
        /// `Source` code of the active session (0 if none).
        pub active_source: u32,
        /// Trading day the front reports, YYYYMMDD (0 if unknown).
        pub trading_day: u32,
        /// Failovers since start.
        pub failovers: u32,
        /// Vendor API version string, ASCII, NUL-padded.
        pub api_version: [u8; 40],
        /// Front address in use, ASCII, NUL-padded (never credentials).
        pub front: [u8; 64],
    }
}

layout_struct! {
    /// Header line 4: the status record under its own seqlock version.
    pub struct Status {
        /// Seqlock version (odd while being written).
        pub version: u64,
        /// The status.
        pub record: StatusRecord,
    }
}

layout_struct! {
    /// Header lines 5–8: counters, indexed by `Counter`.
    pub struct Counters {
        /// Counter values.
        pub values: [u64; COUNTER_SLOTS],
    }
}

layout_struct! {
    /// The segment header.
    pub struct Header {
        /// Line 0.
        pub identity: Identity,
        /// Line 1.
        pub session: Session,
        /// Line 2.
        pub heartbeat: Heartbeat,
        /// Line 3.
        pub cursor: Cursor,
        /// Line 4.
        pub status: Status,
        /// Lines 5–8.
        pub counters: Counters,
    }
}

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
