//! The raw CTP `CThostFtdcDepthMarketDataField`, byte for byte, in the three layouts the feed
//! accepts, told apart by size alone (x86-64, natural alignment, every padding byte an explicit
//! field so the structs derive zerocopy's `IntoBytes`). Numbers are zerocopy's native-endian
//! `F64`/`I32` wrappers (alignment 1, same bytes as `double`/`int`), so a struct is viewed in place
//! in any receive buffer, aligned or not, without a copy; the C offsets are asserted below.
//!
//! ```text
//! 6.3.x  408 B  TradingDay[9] InstrumentID[31] ExchangeID[9] ExchangeInstID[31]  Body  ActionDay[9] pad[7]
//! 6.5.x  568 B  TradingDay[9] reserve1[31]     ExchangeID[9] reserve2[31]        Body  ActionDay[9]
//!               InstrumentID[81] ExchangeInstID[81] pad[5]
//! 6.7.x  584 B  6.5.x + BandingUpperPrice BandingLowerPrice         (also 6.6.7 and later)
//!
//! Body (312 B at offset 80, the same in every version):
//!   +0   LastPrice PreSettlementPrice PreClosePrice PreOpenInterest OpenPrice HighestPrice LowestPrice
//!   +56  Volume i32, pad[4]
//!   +64  Turnover OpenInterest ClosePrice SettlementPrice UpperLimitPrice LowerLimitPrice PreDelta CurrDelta
//!   +128 UpdateTime[9], pad[3], UpdateMillisec i32
//!   +144 5 × (BidPrice f64, BidVolume i32, pad[4], AskPrice f64, AskVolume i32, pad[4])
//!   +304 AveragePrice
//! ```
//!
//! [`RawTick::parse`] validates a struct's text fields and copies its numbers out without allocating;
//! [`RawFields`] builds the bytes of any version from plain values (simulator, UDP tests, benchmarks).

use core::mem::{offset_of, size_of};

use zerocopy::{
    FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned,
    byteorder::native_endian::{F64, I32},
};

use crate::reject::Reject;

/// Size of the 6.6.7+/6.7.x struct.
pub const V67_SIZE: usize = 584;
/// Size of the 6.5.x struct.
pub const V65_SIZE: usize = 568;
/// Size of the 6.3.x struct.
pub const V63_SIZE: usize = 408;
/// Offset of the numeric [`DepthBody`] in every version.
pub const BODY_OFFSET: usize = 80;
/// Levels of the book in a CTP struct.
pub const LEVELS: usize = 5;

/// The CTP API generation a raw struct came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtpVersion {
    /// 6.3.x: 31-character InstrumentID in front, no banding prices (408 B).
    V63,
    /// 6.5.x: 81-character InstrumentID after ActionDay (568 B).
    V65,
    /// 6.6.7 and later, 6.7.x: 6.5.x plus banding prices (584 B).
    V67,
}

impl CtpVersion {
    /// Size of this version's struct in bytes.
    pub const fn size(self) -> usize {
        match self {
            CtpVersion::V63 => V63_SIZE,
            CtpVersion::V65 => V65_SIZE,
            CtpVersion::V67 => V67_SIZE,
        }
    }

    /// The version whose struct has this size.
    pub const fn from_size(len: usize) -> Option<CtpVersion> {
        match len {
            V63_SIZE => Some(CtpVersion::V63),
            V65_SIZE => Some(CtpVersion::V65),
            V67_SIZE => Some(CtpVersion::V67),
            _ => None,
        }
    }
}

/// One level of the book as CTP lays it out: bid then ask, each volume padded to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct BookLevel {
    /// BidPriceN.
    pub bid_price: F64,
    /// BidVolumeN.
    pub bid_volume: I32,
    /// Alignment padding.
    pub pad0: [u8; 4],
    /// AskPriceN.
    pub ask_price: F64,
    /// AskVolumeN.
    pub ask_volume: I32,
    /// Alignment padding.
    pub pad1: [u8; 4],
}

/// The numeric block shared by every version, from LastPrice to AveragePrice (offsets 80..392).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct DepthBody {
    /// LastPrice.
    pub last_price: F64,
    /// PreSettlementPrice.
    pub pre_settlement_price: F64,
    /// PreClosePrice.
    pub pre_close_price: F64,
    /// PreOpenInterest.
    pub pre_open_interest: F64,
    /// OpenPrice.
    pub open_price: F64,
    /// HighestPrice.
    pub highest_price: F64,
    /// LowestPrice.
    pub lowest_price: F64,
    /// Volume, cumulative for the trading day.
    pub volume: I32,
    /// Alignment padding.
    pub pad0: [u8; 4],
    /// Turnover, cumulative for the trading day.
    pub turnover: F64,
    /// OpenInterest.
    pub open_interest: F64,
    /// ClosePrice.
    pub close_price: F64,
    /// SettlementPrice.
    pub settlement_price: F64,
    /// UpperLimitPrice.
    pub upper_limit_price: F64,
    /// LowerLimitPrice.
    pub lower_limit_price: F64,
    /// PreDelta.
    pub pre_delta: F64,
    /// CurrDelta.
    pub curr_delta: F64,
    /// UpdateTime `HH:MM:SS`, NUL-terminated.
    pub update_time: [u8; 9],
    /// Alignment padding.
    pub pad1: [u8; 3],
    /// UpdateMillisec.
    pub update_millisec: I32,
    /// Five levels of bids and asks.
    pub levels: [BookLevel; LEVELS],
    /// AveragePrice (per lot on most exchanges, per unit on CZCE).
    pub average_price: F64,
}

/// `CThostFtdcDepthMarketDataField` of CTP 6.3.x (408 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct DepthMarketDataV63 {
    /// TradingDay `YYYYMMDD`.
    pub trading_day: [u8; 9],
    /// InstrumentID.
    pub instrument_id: [u8; 31],
    /// ExchangeID.
    pub exchange_id: [u8; 9],
    /// ExchangeInstID.
    pub exchange_inst_id: [u8; 31],
    /// LastPrice … AveragePrice.
    pub body: DepthBody,
    /// ActionDay `YYYYMMDD`.
    pub action_day: [u8; 9],
    /// Tail padding.
    pub pad_end: [u8; 7],
}

/// `CThostFtdcDepthMarketDataField` of CTP 6.5.x (568 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct DepthMarketDataV65 {
    /// TradingDay `YYYYMMDD`.
    pub trading_day: [u8; 9],
    /// Former InstrumentID slot, unused.
    pub reserve1: [u8; 31],
    /// ExchangeID.
    pub exchange_id: [u8; 9],
    /// Former ExchangeInstID slot, unused.
    pub reserve2: [u8; 31],
    /// LastPrice … AveragePrice.
    pub body: DepthBody,
    /// ActionDay `YYYYMMDD`.
    pub action_day: [u8; 9],
    /// InstrumentID.
    pub instrument_id: [u8; 81],
    /// ExchangeInstID.
    pub exchange_inst_id: [u8; 81],
    /// Tail padding.
    pub pad_end: [u8; 5],
}

/// `CThostFtdcDepthMarketDataField` of CTP 6.6.7 and later, 6.7.x (584 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct DepthMarketDataV67 {
    /// Everything 6.5.x has.
    pub v65: DepthMarketDataV65,
    /// BandingUpperPrice.
    pub banding_upper_price: F64,
    /// BandingLowerPrice.
    pub banding_lower_price: F64,
}

// --- compile-time layout assertions (x86-64 CTP headers) ----------------------------------------
const _: () = {
    assert!(size_of::<BookLevel>() == 32);
    assert!(size_of::<DepthBody>() == 312);
    assert!(offset_of!(DepthBody, volume) == 56);
    assert!(offset_of!(DepthBody, turnover) == 64);
    assert!(offset_of!(DepthBody, update_time) == 128);
    assert!(offset_of!(DepthBody, update_millisec) == 140);
    assert!(offset_of!(DepthBody, levels) == 144);
    assert!(offset_of!(DepthBody, average_price) == 304);

    assert!(size_of::<DepthMarketDataV63>() == V63_SIZE);
    assert!(offset_of!(DepthMarketDataV63, instrument_id) == 9);
    assert!(offset_of!(DepthMarketDataV63, exchange_id) == 40);
    assert!(offset_of!(DepthMarketDataV63, exchange_inst_id) == 49);
    assert!(offset_of!(DepthMarketDataV63, body) == BODY_OFFSET);
    assert!(offset_of!(DepthMarketDataV63, action_day) == 392);

    assert!(size_of::<DepthMarketDataV65>() == V65_SIZE);
    assert!(offset_of!(DepthMarketDataV65, exchange_id) == 40);
    assert!(offset_of!(DepthMarketDataV65, body) == BODY_OFFSET);
    assert!(offset_of!(DepthMarketDataV65, action_day) == 392);
    assert!(offset_of!(DepthMarketDataV65, instrument_id) == 401);
    assert!(offset_of!(DepthMarketDataV65, exchange_inst_id) == 482);

    assert!(size_of::<DepthMarketDataV67>() == V67_SIZE);
    assert!(offset_of!(DepthMarketDataV67, banding_upper_price) == 568);
    assert!(offset_of!(DepthMarketDataV67, banding_lower_price) == 576);
};

/// Offsets of the text fields of one version (TradingDay, ExchangeID and UpdateTime sit at the same
/// place in every version).
struct TextOffsets {
    instrument_id: usize,
    exchange_inst_id: usize,
    /// Length of the InstrumentID and ExchangeInstID fields (31 or 81).
    id_len: usize,
    action_day: usize,
}

const TRADING_DAY: usize = 0;
const EXCHANGE_ID: usize = 40;
const UPDATE_TIME: usize = BODY_OFFSET + offset_of!(DepthBody, update_time);
const V63_TEXT: TextOffsets = TextOffsets {
    instrument_id: offset_of!(DepthMarketDataV63, instrument_id),
    exchange_inst_id: offset_of!(DepthMarketDataV63, exchange_inst_id),
    id_len: 31,
    action_day: offset_of!(DepthMarketDataV63, action_day),
};
const V65_TEXT: TextOffsets = TextOffsets {
    instrument_id: offset_of!(DepthMarketDataV65, instrument_id),
    exchange_inst_id: offset_of!(DepthMarketDataV65, exchange_inst_id),
    id_len: 81,
    action_day: offset_of!(DepthMarketDataV65, action_day),
};

/// Length of the record's NUL-padded InstrumentID (`qilin_shm::layout::INSTRUMENT_ID_LEN`).
pub const ID_KEY_LEN: usize = qilin_shm::layout::INSTRUMENT_ID_LEN;
const _: () = assert!(ID_KEY_LEN == 32 && V63_TEXT.instrument_id + ID_KEY_LEN <= V63_SIZE);

/// ASCII text of a C char field without its NUL, as checked by [`RawTick::parse`]: kept as bytes
/// (the hot path never needs a `str`); [`Text::as_str`] gives the text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Text<'a>(&'a [u8]);

impl<'a> Text<'a> {
    /// The bytes, without the NUL.
    #[inline(always)]
    pub const fn as_bytes(self) -> &'a [u8] {
        self.0
    }

    /// The text (always ASCII, so this never fails; an empty string if it somehow were not).
    pub fn as_str(self) -> &'a str {
        core::str::from_utf8(self.0).unwrap_or_default()
    }

    /// Length in bytes.
    #[inline(always)]
    pub const fn len(self) -> usize {
        self.0.len()
    }

    /// Whether the field was empty (NUL first).
    #[inline(always)]
    pub const fn is_empty(self) -> bool {
        self.0.is_empty()
    }
}

/// A text field of at most eight characters (TradingDay, ActionDay, UpdateTime), checked as
/// [`Text`] is, held as its bytes in one little-endian word, NUL-padded: what the hot path compares
/// and parses whole, with no slice to carry and no length to check.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShortText(u64);

impl ShortText {
    /// `text` (at most eight bytes) as a word.
    fn of(text: &[u8]) -> ShortText {
        let mut word = [0u8; 8];
        word[..text.len()].copy_from_slice(text);
        ShortText(u64::from_le_bytes(word))
    }

    /// The word: the text's bytes, little-endian, NUL-padded (distinct texts, distinct words).
    #[inline(always)]
    pub const fn word(self) -> u64 {
        self.0
    }

    /// The word when the text has exactly eight characters (a date `YYYYMMDD`, a time
    /// `HH:MM:SS`), else `None`.
    #[inline(always)]
    pub const fn eight(self) -> Option<u64> {
        if self.0 >> 56 != 0 { Some(self.0) } else { None }
    }

    /// The text's bytes, without the padding.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.to_le_bytes().into_iter().take_while(|b| *b != 0).collect()
    }

    /// The text (always ASCII).
    pub fn to_text(self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

impl core::fmt::Debug for ShortText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&self.to_text(), f)
    }
}

impl core::fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<String> for Text<'_> {
    fn eq(&self, other: &String) -> bool {
        self.0 == other.as_bytes()
    }
}

/// A validated view of one raw struct of any version, borrowing the input bytes: text fields
/// checked to be NUL-terminated inside their field and ASCII, the numeric block viewed in place.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawTick<'a> {
    /// Which layout the bytes had.
    pub version: CtpVersion,
    /// TradingDay text, ASCII, without its NUL (checked to be a date by `normalize`). Dates and the
    /// time are words: the hot path compares and parses them whole.
    pub trading_day: ShortText,
    /// InstrumentID, never empty.
    pub instrument_id: Text<'a>,
    /// ExchangeID (may be empty: older fronts leave it blank).
    pub exchange_id: Text<'a>,
    /// ExchangeInstID.
    pub exchange_inst_id: Text<'a>,
    /// UpdateTime text, ASCII, without its NUL (checked to be `HH:MM:SS` by `normalize`).
    pub update_time: ShortText,
    /// ActionDay text, ASCII, without its NUL (checked to be a date by `normalize`).
    pub action_day: ShortText,
    /// Every number from LastPrice to AveragePrice, as sent (read with `.get()`).
    pub body: &'a DepthBody,
    /// BandingUpperPrice (6.7.x only).
    pub banding_upper_price: Option<f64>,
    /// BandingLowerPrice (6.7.x only).
    pub banding_lower_price: Option<f64>,
    /// Words the scan produced, so nothing downstream reads the text again.
    words: Words,
}

/// What the text scan of [`RawTick::parse`] already holds in registers, kept for the engine and
/// `normalize`: the InstrumentID NUL-padded to the record's 32 bytes, and ExchangeID's bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Words {
    /// InstrumentID as the record stores it (little-endian words); all zero if it is longer than
    /// 31 characters (a valid id is never empty, so a real key is never zero).
    id: [u64; 4],
    /// ExchangeID's first eight bytes (all of it), zero from its NUL on; 0 when empty.
    exchange: u64,
}

const LOW: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// The lowest set bit marks the first NUL byte of `word` exactly (borrows only disturb higher bytes).
#[inline(always)]
const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(LOW) & !word & HIGH
}

/// Non-zero iff `word` has a NUL or a non-ASCII byte (`zero_bytes(word) | word & HIGH`, folded).
#[inline(always)]
const fn irregular(word: u64) -> u64 {
    (word.wrapping_sub(LOW) | word) & HIGH
}

/// Mask of the bytes before the first NUL that `zero` (from [`zero_bytes`]) marks; all ones if none.
#[inline(always)]
const fn before_nul(zero: u64) -> u64 {
    ((zero & zero.wrapping_neg()) >> 7).wrapping_sub(1)
}

#[inline(always)]
fn word_at<const N: usize>(bytes: &[u8; N], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The bytes of a C char field up to the first NUL, which must exist; ASCII only. Bytes after the
/// NUL are ignored (CTP does not always clear them). Scans eight bytes at a time. The exact general
/// path, taken when a field is not in the shape [`RawTick::parse`]'s fast path expects.
fn c_bytes(bytes: &[u8], (offset, len): (usize, usize)) -> Option<&[u8]> {
    let field = &bytes[offset..offset + len];
    let mut start = 0;
    while let Some(chunk) = field[start..].first_chunk::<8>() {
        let word = u64::from_le_bytes(*chunk);
        let zero = zero_bytes(word);
        let high = word & HIGH;
        if zero != 0 {
            return (high & before_nul(zero) == 0).then_some(&field[..start + zero.trailing_zeros() as usize / 8]);
        }
        if high != 0 {
            return None;
        }
        start += 8;
    }
    let tail = &field[start..];
    let end = tail.iter().position(|&b| b == 0 || !b.is_ascii())?;
    (tail[end] == 0).then_some(&field[..start + end])
}

/// Fast path for an id field of `len` (31 or 81) bytes at `at`: its text and the record's
/// NUL-padded 32-byte key, if the NUL is among its first 32 bytes (every real id) and inside the
/// field, and every byte before it is ASCII; `None` otherwise (the caller then takes the exact path).
#[inline(always)]
fn short_id<const N: usize>(bytes: &[u8; N], at: usize, len: usize) -> Option<(&[u8], [u64; 4])> {
    let mut key = [0u64; 4];
    for i in 0..4 {
        let word = word_at(bytes, at + 8 * i);
        let zero = zero_bytes(word);
        if zero != 0 {
            let keep = before_nul(zero);
            let end = 8 * i + zero.trailing_zeros() as usize / 8;
            key[i] = word & keep;
            return (word & keep & HIGH == 0 && end < len).then(|| (&bytes[at..at + end], key));
        }
        if word & HIGH != 0 {
            return None;
        }
        key[i] = word;
    }
    None
}

impl<'a> RawTick<'a> {
    /// Validates one raw struct; the version is told by `bytes.len()`. Does not allocate.
    ///
    /// Errors: [`Reject::Size`] for any other length; [`Reject::Id`] if InstrumentID (also when
    /// empty), ExchangeID or ExchangeInstID is not NUL-terminated or not ASCII; [`Reject::Time`] if
    /// TradingDay, ActionDay or UpdateTime is. Dates, times and prices are checked by `normalize`.
    ///
    /// A fast path reads every text field as whole words and checks the usual shapes at once (dates
    /// and time of eight characters, ids ending within 32 bytes); anything else, valid or not, goes
    /// through the exact field-by-field path, which also decides which reject a bad struct gets.
    #[inline(always)]
    pub fn parse(bytes: &'a [u8]) -> Result<RawTick<'a>, Reject> {
        match bytes.len() {
            V67_SIZE => {
                let bytes: &[u8; V67_SIZE] = bytes.try_into().map_err(|_| Reject::Size)?;
                Self::parse_usual_v67(bytes).map_or_else(|| Self::exact(bytes, CtpVersion::V67, &V65_TEXT), Ok)
            }
            V65_SIZE => {
                let bytes: &[u8; V65_SIZE] = bytes.try_into().map_err(|_| Reject::Size)?;
                let usual = Self::usual(bytes, CtpVersion::V65, &V65_TEXT, None, None);
                usual.map_or_else(|| Self::exact(bytes, CtpVersion::V65, &V65_TEXT), Ok)
            }
            V63_SIZE => {
                let bytes: &[u8; V63_SIZE] = bytes.try_into().map_err(|_| Reject::Size)?;
                let usual = Self::usual(bytes, CtpVersion::V63, &V63_TEXT, None, None);
                usual.map_or_else(|| Self::exact(bytes, CtpVersion::V63, &V63_TEXT), Ok)
            }
            _ => Err(Reject::Size),
        }
    }

    /// [`RawTick::parse`]'s fast path alone, for a 6.7.x struct (the engine's hot path): `Some` when
    /// every text field has the usual shape (dates and time of eight characters, ids ending within
    /// 32 bytes, ExchangeID within eight), which is then the same view `parse` gives; `None`
    /// otherwise, valid or not (then `parse` decides, through its exact path).
    #[inline(always)]
    pub fn parse_usual_v67(bytes: &'a [u8; V67_SIZE]) -> Option<RawTick<'a>> {
        let upper = F64::read_from_bytes(&bytes[568..576]).ok()?;
        let lower = F64::read_from_bytes(&bytes[576..584]).ok()?;
        Self::usual(bytes, CtpVersion::V67, &V65_TEXT, Some(upper.get()), Some(lower.get()))
    }

    /// The exact path of a struct of `version` (its banding prices read again, off the hot path).
    #[cold]
    #[inline(never)]
    fn exact(bytes: &'a [u8], version: CtpVersion, text: &TextOffsets) -> Result<RawTick<'a>, Reject> {
        let body_bytes = &bytes[BODY_OFFSET..BODY_OFFSET + size_of::<DepthBody>()];
        let body = DepthBody::ref_from_bytes(body_bytes).map_err(|_| Reject::Size)?;
        let banding = |at: usize| {
            (version == CtpVersion::V67)
                .then(|| F64::read_from_bytes(&bytes[at..at + 8]).map(F64::get).map_err(|_| Reject::Size))
                .transpose()
        };
        Self::parse_exact(bytes, version, text, body, banding(568)?, banding(576)?)
    }

    #[inline(always)]
    fn usual<const N: usize>(
        bytes: &'a [u8; N],
        version: CtpVersion,
        text: &TextOffsets,
        banding_upper_price: Option<f64>,
        banding_lower_price: Option<f64>,
    ) -> Option<RawTick<'a>> {
        let body_bytes = &bytes[BODY_OFFSET..BODY_OFFSET + size_of::<DepthBody>()];
        let body = DepthBody::ref_from_bytes(body_bytes).ok()?;
        // Dates and time: eight ASCII characters, then the NUL.
        let (day, time, action) =
            (word_at(bytes, TRADING_DAY), word_at(bytes, UPDATE_TIME), word_at(bytes, text.action_day));
        let ninth = bytes[TRADING_DAY + 8] | bytes[UPDATE_TIME + 8] | bytes[text.action_day + 8];
        if (irregular(day) | irregular(time) | irregular(action)) != 0 || ninth != 0 {
            return None;
        }
        // ExchangeID: its NUL among the first eight bytes, ASCII before it.
        let exchange = word_at(bytes, EXCHANGE_ID);
        let zero = zero_bytes(exchange);
        let keep = before_nul(zero);
        if zero == 0 || exchange & keep & HIGH != 0 {
            return None;
        }
        let exchange_len = zero.trailing_zeros() as usize / 8;
        let (Some((instrument_id, id)), Some((exchange_inst_id, _))) =
            (short_id(bytes, text.instrument_id, text.id_len), short_id(bytes, text.exchange_inst_id, text.id_len))
        else {
            return None;
        };
        // An empty id: the exact path rejects it.
        if instrument_id.is_empty() {
            return None;
        }
        Some(RawTick {
            version,
            trading_day: ShortText(day),
            instrument_id: Text(instrument_id),
            exchange_id: Text(&bytes[EXCHANGE_ID..EXCHANGE_ID + exchange_len]),
            exchange_inst_id: Text(exchange_inst_id),
            update_time: ShortText(time),
            action_day: ShortText(action),
            body,
            banding_upper_price,
            banding_lower_price,
            words: Words { id, exchange: exchange & keep },
        })
    }

    /// The exact path: every field on its own, in the order that decides the reject of a struct with
    /// several bad fields (InstrumentID, TradingDay, ExchangeID, ExchangeInstID, UpdateTime, ActionDay).
    #[cold]
    #[inline(never)]
    fn parse_exact(
        bytes: &'a [u8],
        version: CtpVersion,
        text: &TextOffsets,
        body: &'a DepthBody,
        banding_upper_price: Option<f64>,
        banding_lower_price: Option<f64>,
    ) -> Result<RawTick<'a>, Reject> {
        let id = |at| c_bytes(bytes, (at, text.id_len)).ok_or(Reject::Id);
        let time = |at| c_bytes(bytes, (at, 9)).ok_or(Reject::Time);
        let instrument_id = id(text.instrument_id)?;
        if instrument_id.is_empty() {
            return Err(Reject::Id);
        }
        let trading_day = time(TRADING_DAY)?;
        let exchange_id = c_bytes(bytes, (EXCHANGE_ID, 9)).ok_or(Reject::Id)?;
        let exchange_inst_id = id(text.exchange_inst_id)?;
        let update_time = time(UPDATE_TIME)?;
        let action_day = time(text.action_day)?;
        let mut key = [0u8; ID_KEY_LEN];
        if instrument_id.len() < ID_KEY_LEN {
            key[..instrument_id.len()].copy_from_slice(instrument_id);
        }
        let mut exchange = [0u8; 8];
        exchange[..exchange_id.len()].copy_from_slice(exchange_id); // at most 8: the field has 9 bytes
        Ok(RawTick {
            version,
            trading_day: ShortText::of(trading_day),
            instrument_id: Text(instrument_id),
            exchange_id: Text(exchange_id),
            exchange_inst_id: Text(exchange_inst_id),
            update_time: ShortText::of(update_time),
            action_day: ShortText::of(action_day),
            body,
            banding_upper_price,
            banding_lower_price,
            words: Words { id: zerocopy::transmute!(key), exchange: u64::from_le_bytes(exchange) },
        })
    }

    /// The InstrumentID NUL-padded to the record's 32 bytes, as the engine keys its registry and the
    /// record stores it; `None` if it is longer than 31 characters. Built by the text scan, free here.
    #[inline(always)]
    pub fn id_key(&self) -> Option<[u8; ID_KEY_LEN]> {
        (self.words.id[0] != 0).then(|| zerocopy::transmute!(self.words.id))
    }

    /// [`RawTick::id_key`] as the four little-endian words it was built from (zero if too long).
    #[inline(always)]
    pub fn id_words(&self) -> [u64; 4] {
        self.words.id
    }

    /// ExchangeID's first eight bytes, zero from its NUL on (0 when empty).
    #[inline(always)]
    pub(crate) fn exchange_word(&self) -> u64 {
        self.words.exchange
    }

    /// The same content as owned [`RawFields`] (banding prices DBL_MAX where the version has none).
    /// Allocates; for tools and tests, not the hot path.
    pub fn to_fields(&self) -> RawFields {
        let b = self.body;
        RawFields {
            trading_day: self.trading_day.to_text(),
            instrument_id: self.instrument_id.as_str().to_owned(),
            exchange_id: self.exchange_id.as_str().to_owned(),
            exchange_inst_id: self.exchange_inst_id.as_str().to_owned(),
            last_price: b.last_price.get(),
            pre_settlement_price: b.pre_settlement_price.get(),
            pre_close_price: b.pre_close_price.get(),
            pre_open_interest: b.pre_open_interest.get(),
            open_price: b.open_price.get(),
            highest_price: b.highest_price.get(),
            lowest_price: b.lowest_price.get(),
            volume: b.volume.get(),
            turnover: b.turnover.get(),
            open_interest: b.open_interest.get(),
            close_price: b.close_price.get(),
            settlement_price: b.settlement_price.get(),
            upper_limit_price: b.upper_limit_price.get(),
            lower_limit_price: b.lower_limit_price.get(),
            pre_delta: b.pre_delta.get(),
            curr_delta: b.curr_delta.get(),
            update_time: self.update_time.to_text(),
            update_millisec: b.update_millisec.get(),
            bid_price: b.levels.map(|l| l.bid_price.get()),
            bid_volume: b.levels.map(|l| l.bid_volume.get()),
            ask_price: b.levels.map(|l| l.ask_price.get()),
            ask_volume: b.levels.map(|l| l.ask_volume.get()),
            average_price: b.average_price.get(),
            action_day: self.action_day.to_text(),
            banding_upper_price: self.banding_upper_price.unwrap_or(f64::MAX),
            banding_lower_price: self.banding_lower_price.unwrap_or(f64::MAX),
        }
    }
}

/// Every field of `CThostFtdcDepthMarketDataField` as plain values, to build raw structs of any
/// version. Text longer than its C field (less the NUL) is cut to fit; use DBL_MAX (`f64::MAX`) for
/// an absent price, as CTP does. `Default` is all zeros and empty text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawFields {
    /// TradingDay `YYYYMMDD`.
    pub trading_day: String,
    /// InstrumentID.
    pub instrument_id: String,
    /// ExchangeID.
    pub exchange_id: String,
    /// ExchangeInstID.
    pub exchange_inst_id: String,
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
    /// Volume.
    pub volume: i32,
    /// Turnover.
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
    /// UpdateTime `HH:MM:SS`.
    pub update_time: String,
    /// UpdateMillisec.
    pub update_millisec: i32,
    /// BidPrice1..5.
    pub bid_price: [f64; LEVELS],
    /// BidVolume1..5.
    pub bid_volume: [i32; LEVELS],
    /// AskPrice1..5.
    pub ask_price: [f64; LEVELS],
    /// AskVolume1..5.
    pub ask_volume: [i32; LEVELS],
    /// AveragePrice.
    pub average_price: f64,
    /// ActionDay `YYYYMMDD`.
    pub action_day: String,
    /// BandingUpperPrice (6.7.x only).
    pub banding_upper_price: f64,
    /// BandingLowerPrice (6.7.x only).
    pub banding_lower_price: f64,
}

/// `text` as a NUL-padded C char field, cut to leave at least one NUL.
fn c_field<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let len = text.len().min(N - 1);
    out[..len].copy_from_slice(&text.as_bytes()[..len]);
    out
}

impl RawFields {
    fn body(&self) -> DepthBody {
        let mut levels = [BookLevel::new_zeroed(); LEVELS];
        for (i, level) in levels.iter_mut().enumerate() {
            level.bid_price = F64::new(self.bid_price[i]);
            level.bid_volume = I32::new(self.bid_volume[i]);
            level.ask_price = F64::new(self.ask_price[i]);
            level.ask_volume = I32::new(self.ask_volume[i]);
        }
        DepthBody {
            last_price: F64::new(self.last_price),
            pre_settlement_price: F64::new(self.pre_settlement_price),
            pre_close_price: F64::new(self.pre_close_price),
            pre_open_interest: F64::new(self.pre_open_interest),
            open_price: F64::new(self.open_price),
            highest_price: F64::new(self.highest_price),
            lowest_price: F64::new(self.lowest_price),
            volume: I32::new(self.volume),
            pad0: [0; 4],
            turnover: F64::new(self.turnover),
            open_interest: F64::new(self.open_interest),
            close_price: F64::new(self.close_price),
            settlement_price: F64::new(self.settlement_price),
            upper_limit_price: F64::new(self.upper_limit_price),
            lower_limit_price: F64::new(self.lower_limit_price),
            pre_delta: F64::new(self.pre_delta),
            curr_delta: F64::new(self.curr_delta),
            update_time: c_field(&self.update_time),
            pad1: [0; 3],
            update_millisec: I32::new(self.update_millisec),
            levels,
            average_price: F64::new(self.average_price),
        }
    }

    /// The 6.3.x struct.
    pub fn to_v63(&self) -> DepthMarketDataV63 {
        DepthMarketDataV63 {
            trading_day: c_field(&self.trading_day),
            instrument_id: c_field(&self.instrument_id),
            exchange_id: c_field(&self.exchange_id),
            exchange_inst_id: c_field(&self.exchange_inst_id),
            body: self.body(),
            action_day: c_field(&self.action_day),
            pad_end: [0; 7],
        }
    }

    /// The 6.5.x struct (reserve fields zero).
    pub fn to_v65(&self) -> DepthMarketDataV65 {
        DepthMarketDataV65 {
            trading_day: c_field(&self.trading_day),
            reserve1: [0; 31],
            exchange_id: c_field(&self.exchange_id),
            reserve2: [0; 31],
            body: self.body(),
            action_day: c_field(&self.action_day),
            instrument_id: c_field(&self.instrument_id),
            exchange_inst_id: c_field(&self.exchange_inst_id),
            pad_end: [0; 5],
        }
    }

    /// The 6.7.x struct.
    pub fn to_v67(&self) -> DepthMarketDataV67 {
        DepthMarketDataV67 {
            v65: self.to_v65(),
            banding_upper_price: F64::new(self.banding_upper_price),
            banding_lower_price: F64::new(self.banding_lower_price),
        }
    }

    /// The 6.3.x struct's bytes.
    pub fn to_v63_bytes(&self) -> [u8; V63_SIZE] {
        zerocopy::transmute!(self.to_v63())
    }

    /// The 6.5.x struct's bytes.
    pub fn to_v65_bytes(&self) -> [u8; V65_SIZE] {
        zerocopy::transmute!(self.to_v65())
    }

    /// The 6.7.x struct's bytes.
    pub fn to_v67_bytes(&self) -> [u8; V67_SIZE] {
        zerocopy::transmute!(self.to_v67())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RawFields {
        RawFields {
            trading_day: "20250512".into(),
            instrument_id: "rb2510".into(),
            exchange_id: "SHFE".into(),
            exchange_inst_id: "rb2510".into(),
            last_price: 3101.0,
            pre_settlement_price: 3090.0,
            pre_close_price: 3088.0,
            pre_open_interest: 1_800_000.0,
            open_price: 3095.0,
            highest_price: 3110.0,
            lowest_price: 3080.0,
            volume: 123_456,
            turnover: 3_822_000_000.0,
            open_interest: 1_812_345.0,
            close_price: f64::MAX,
            settlement_price: f64::MAX,
            upper_limit_price: 3337.0,
            lower_limit_price: 2842.0,
            pre_delta: 0.0,
            curr_delta: f64::MAX,
            update_time: "21:30:00".into(),
            update_millisec: 500,
            bid_price: [3100.0, 3099.0, 3098.0, 3097.0, 3096.0],
            bid_volume: [10, 20, 30, 40, 50],
            ask_price: [3101.0, 3102.0, 3103.0, 3104.0, f64::MAX],
            ask_volume: [11, 21, 31, 41, 0],
            average_price: 30_958.5,
            action_day: "20250509".into(),
            banding_upper_price: 3200.0,
            banding_lower_price: 3000.0,
        }
    }

    #[test]
    fn v67_round_trips() {
        let fields = sample();
        let bytes = fields.to_v67_bytes();
        let raw = RawTick::parse(&bytes).unwrap();
        assert_eq!(raw.version, CtpVersion::V67);
        assert_eq!(raw.instrument_id, "rb2510");
        assert_eq!(raw.exchange_id, "SHFE");
        assert_eq!(raw.update_time.bytes(), b"21:30:00");
        assert_eq!(raw.body.levels[4].ask_price.get(), f64::MAX);
        assert_eq!(raw.banding_upper_price, Some(3200.0));
        assert_eq!(raw.to_fields(), fields);
    }

    #[test]
    fn v65_and_v63_round_trip_without_banding() {
        let fields = RawFields { banding_upper_price: f64::MAX, banding_lower_price: f64::MAX, ..sample() };
        let v65 = fields.to_v65_bytes();
        let raw = RawTick::parse(&v65).unwrap();
        assert_eq!((raw.version, raw.banding_upper_price), (CtpVersion::V65, None));
        assert_eq!(raw.to_fields(), fields);
        let v63 = fields.to_v63_bytes();
        let raw = RawTick::parse(&v63).unwrap();
        assert_eq!((raw.version, raw.banding_lower_price), (CtpVersion::V63, None));
        assert_eq!(raw.to_fields(), fields);
    }

    #[test]
    fn bytes_sit_at_the_documented_offsets() {
        let bytes = sample().to_v67_bytes();
        assert_eq!(&bytes[0..9], b"20250512\0");
        assert_eq!(&bytes[40..45], b"SHFE\0");
        assert_eq!(&bytes[80..88], &3101.0f64.to_ne_bytes());
        assert_eq!(&bytes[136..140], &123_456i32.to_ne_bytes());
        assert_eq!(&bytes[208..217], b"21:30:00\0");
        assert_eq!(&bytes[220..224], &500i32.to_ne_bytes());
        assert_eq!(&bytes[224..232], &3100.0f64.to_ne_bytes(), "BidPrice1");
        assert_eq!(&bytes[232..236], &10i32.to_ne_bytes(), "BidVolume1");
        assert_eq!(&bytes[240..248], &3101.0f64.to_ne_bytes(), "AskPrice1");
        assert_eq!(&bytes[384..392], &30_958.5f64.to_ne_bytes(), "AveragePrice");
        assert_eq!(&bytes[392..401], b"20250509\0");
        assert_eq!(&bytes[401..408], b"rb2510\0");
        assert_eq!(&bytes[568..576], &3200.0f64.to_ne_bytes());
        assert!(bytes[9..40].iter().all(|&b| b == 0), "reserve1 is zero in 6.5+");
        let v63 = sample().to_v63_bytes();
        assert_eq!(&v63[9..16], b"rb2510\0");
        assert_eq!(&v63[49..56], b"rb2510\0");
    }

    #[test]
    fn wrong_sizes_are_rejected() {
        let bytes = sample().to_v67_bytes();
        for len in [0, 1, 407, 409, 567, 569, 583] {
            assert_eq!(RawTick::parse(&bytes[..len]), Err(Reject::Size), "{len} bytes");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(RawTick::parse(&long), Err(Reject::Size));
    }

    #[test]
    fn ids_must_be_nul_terminated() {
        let mut bytes = sample().to_v67_bytes();
        bytes[401..482].fill(b'a'); // InstrumentID with no NUL in its 81 bytes
        assert_eq!(RawTick::parse(&bytes), Err(Reject::Id));
        let mut bytes = sample().to_v63_bytes();
        bytes[40..49].fill(b'X'); // ExchangeID
        assert_eq!(RawTick::parse(&bytes), Err(Reject::Id));
        let mut bytes = sample().to_v65_bytes();
        bytes[208..217].fill(b'1'); // UpdateTime is a time field
        assert_eq!(RawTick::parse(&bytes), Err(Reject::Time));
        let empty = RawFields { instrument_id: String::new(), ..sample() };
        assert_eq!(RawTick::parse(&empty.to_v67_bytes()), Err(Reject::Id));
    }

    #[test]
    fn ids_must_be_ascii() {
        let mut bytes = sample().to_v67_bytes();
        bytes[402] = 0xC3; // "r\xC3" …
        assert_eq!(RawTick::parse(&bytes), Err(Reject::Id));
        let mut bytes = sample().to_v63_bytes();
        bytes[49] = 0x80; // ExchangeInstID
        assert_eq!(RawTick::parse(&bytes), Err(Reject::Id));
        let mut bytes = sample().to_v67_bytes();
        bytes[0] = 0xFF; // TradingDay
        assert_eq!(RawTick::parse(&bytes), Err(Reject::Time));
    }

    #[test]
    fn text_is_scanned_exactly_around_word_boundaries() {
        // NUL at every position of an 81-byte InstrumentID, non-ASCII right before it or after it.
        for len in 1..81 {
            let mut bytes = sample().to_v67_bytes();
            bytes[401..482].fill(0xFF); // garbage everywhere after the NUL
            bytes[401..401 + len].fill(b'r');
            bytes[401 + len] = 0;
            assert_eq!(RawTick::parse(&bytes).map(|r| r.instrument_id.len()), Ok(len), "len {len}");
            bytes[401 + len - 1] = 0x80;
            assert_eq!(RawTick::parse(&bytes), Err(Reject::Id), "non-ASCII before the NUL at {len}");
        }
        let mut bytes = sample().to_v67_bytes();
        bytes[401] = 0;
        assert_eq!(RawTick::parse(&bytes), Err(Reject::Id), "empty InstrumentID");
    }

    #[test]
    fn unaligned_input_parses() {
        let mut buffer = vec![0u8; V67_SIZE + 1];
        buffer[1..].copy_from_slice(&sample().to_v67_bytes());
        assert_eq!(RawTick::parse(&buffer[1..]).unwrap().body.last_price.get(), 3101.0);
    }

    #[test]
    fn long_text_is_cut_to_fit_its_field() {
        let fields = RawFields { instrument_id: "x".repeat(40), ..sample() };
        let bytes = fields.to_v63_bytes();
        assert_eq!(RawTick::parse(&bytes).unwrap().instrument_id, "x".repeat(30));
    }
}
