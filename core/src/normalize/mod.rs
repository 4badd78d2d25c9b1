//! Every CTP data quirk, in one place: a validated raw struct ([`RawTick`]) plus its product's
//! specification and the instrument's running state become one [`TickRecord`], or a counted
//! [`Reject`]. Runs on the hot thread: nothing here allocates, locks, logs or blocks.
//!
//! | quirk | handled in | quality bit / reject |
//! |---|---|---|
//! | DBL_MAX (or any \|x\| ≥ 1e300) means "absent" | [`price`] (applied branch-free in [`normalize`]) | NaN; `ABSENT_PRICE` only where a price should be present (LastPrice after a trade, a level with volume) |
//! | infinite / NaN price | [`price`] (likewise) | `Reject::Price` |
//! | TradingDay/ActionDay meaning per exchange, across weekends and holidays | [`Calendar::tick_days`] | `DERIVED_ACTION_DAY` (DCE night) |
//! | CST → UTC, no DST | [`date::utc_ns`] | — |
//! | CZCE repeated seconds with UpdateMillisec 0 | [`normalize`] | `REPEATED_SECOND` |
//! | cumulative Volume going down | [`normalize`] | `VOLUME_REGRESSION` |
//! | Turnover going down (normal on CZCE) | [`normalize`] | `TURNOVER_REGRESSION` |
//! | AveragePrice per lot except on CZCE | [`normalize`] | — (always per unit) |
//! | a product not in the table (`unknown_products = "admit"`) | [`normalize`] | `UNKNOWN_PRODUCT` |
//! | snapshots outside trading hours, or on a weekend or holiday | [`Calendar::in_session`] (the product's sessions on the calendar's days) | `STALE_SNAPSHOT` |
//! | empty ExchangeID from older fronts | [`normalize`] | taken from the product spec |
//! | bad sizes, ids, exchanges, dates | [`RawTick::parse`], [`normalize`] | [`Reject`] |

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(test)]
mod tests;

use qilin_market::{
    Calendar, ProductSpec, TickDays,
    date::{self, Date},
};
use qilin_shm::{Exchange, Source, TickRecord, quality};

use crate::ctp::RawTick;
pub use crate::reject::Reject;

pub use qilin_market::quality::ABSENT_FROM;

/// What [`normalize`] remembers about one instrument between its ticks. The engine keeps one per
/// directory index in a preallocated `Vec` (`vec![InstrumentState::new(); capacity]`). A state
/// belongs to one instrument, so to one product spec and one calendar: its [`MinuteMemo`] holds
/// their answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstrumentState {
    /// Trading day (`YYYYMMDD`) of the previous accepted tick; 0 before the first.
    pub trading_day: u32,
    /// Cumulative volume of the previous accepted tick.
    pub volume: i64,
    /// Cumulative turnover of the last accepted tick that had one (NaN before).
    pub turnover: f64,
    /// China-local exchange time of the previous accepted tick in whole seconds since 1970-01-01
    /// (calendar day × 86400 + second of day); `i64::MIN` before the first.
    pub local_second: i64,
    /// The millisecond (after any adjustment) of the previous accepted tick.
    pub millis: u32,
    /// The date and session answers of the minute of the last accepted tick.
    pub minute: MinuteMemo,
    /// InstrumentID of the last accepted tick as its key words (zero before the first): a tick with
    /// the same id is of the spec's product, checked then.
    pub id: [u64; 4],
}

/// `UpdateTime` ("HH:MM:SS") as a little-endian word: the mask of its minute, "HH:MM:".
const MINUTE_MASK: u64 = (1 << 48) - 1;

/// What a tick's TradingDay, ActionDay and minute of UpdateTime gave last time, so that the hot
/// path compares three words instead of parsing two dates and a time and asking the calendar on
/// every tick (TradingDay and ActionDay change once a day, the minute every 60 s; an instrument
/// ticks about twice a second). Everything here depends on nothing finer than the minute: the
/// exchange's day rules ([`Calendar::tick_days`]) on night or day (whole hours), the sessions
/// ([`Calendar::in_session`]) on the minute and on whether the second is the minute's first (the
/// closing second, [`qilin_market::products::CLOSE_GRACE_MS`] = 1 000). Remembered only with an
/// accepted tick; an all-zero key (never the words of valid texts) = nothing remembered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinuteMemo {
    /// TradingDay's eight bytes, ActionDay's, UpdateTime's first six ("HH:MM:"), as words.
    key: [u64; 3],
    /// The exchange's day rules applied.
    days: TickDays,
    /// Seconds since local midnight at the start of the minute.
    minute_secs: u32,
    /// [`Calendar::in_session`] in this minute: at its first second, and at any later one.
    in_session: [bool; 2],
}

impl MinuteMemo {
    /// An empty memo.
    pub const fn new() -> MinuteMemo {
        let none = Date { days: 0, ymd: 0 };
        MinuteMemo {
            key: [0; 3],
            days: TickDays { trading: none, calendar: none, derived_calendar: false },
            minute_secs: 0,
            in_session: [false; 2],
        }
    }

    /// The answers for a minute the memo does not hold: both dates and the time parsed, the
    /// calendar asked (`None`: a date or the time is not valid).
    #[cold]
    #[inline(never)]
    fn read(key: [u64; 3], time_word: u64, spec: &ProductSpec, calendar: &Calendar) -> Option<Self> {
        // The key's first two words are TradingDay's and ActionDay's eight bytes.
        let trading_day = Date::parse_bytes(&key[0].to_le_bytes())?;
        let action_day = Date::parse_bytes(&key[1].to_le_bytes())?;
        let secs = date::parse_hms_word(time_word)?;
        let minute_secs = secs - secs % 60;
        let days = calendar.tick_days(spec.exchange, trading_day, Some(action_day), secs);
        let minute_ms = minute_secs * 1000;
        let in_session = [
            calendar.in_session(spec, days.calendar, minute_ms),
            calendar.in_session(spec, days.calendar, minute_ms + 1000),
        ];
        Some(MinuteMemo { key, days, minute_secs, in_session })
    }
}

impl Default for MinuteMemo {
    fn default() -> Self {
        MinuteMemo::new()
    }
}

/// The second of minute of `UpdateTime` as a word ("HH:MM:SS", little-endian): bytes 6 and 7 as
/// two digits below 60, else `None` (what [`date::parse_hms_word`] accepts for them).
#[inline(always)]
fn second_of_minute(time_word: u64) -> Option<u32> {
    let tens = ((time_word >> 48) as u8).wrapping_sub(b'0');
    let ones = ((time_word >> 56) as u8).wrapping_sub(b'0');
    (tens < 6 && ones < 10).then_some(u32::from(tens) * 10 + u32::from(ones))
}

impl InstrumentState {
    /// The state of an instrument that has had no tick yet.
    pub const fn new() -> InstrumentState {
        InstrumentState {
            trading_day: 0,
            volume: 0,
            turnover: f64::NAN,
            local_second: i64::MIN,
            millis: 0,
            minute: MinuteMemo::new(),
            id: [0; 4],
        }
    }
}

impl Default for InstrumentState {
    fn default() -> Self {
        InstrumentState::new()
    }
}

/// One double from the raw struct: DBL_MAX-like (|x| ≥ [`ABSENT_FROM`]) becomes NaN; infinite or
/// NaN is [`Reject::Price`]; anything else passes unchanged. (Whether an absent price is an
/// anomaly, `ABSENT_PRICE`, depends on the field and the volumes: [`normalize`].)
#[inline(always)]
pub fn price(x: f64) -> Result<f64, Reject> {
    if !x.is_finite() {
        Err(Reject::Price)
    } else if x.abs() >= ABSENT_FROM {
        Ok(f64::NAN)
    } else {
        Ok(x)
    }
}

/// Doubles of one raw struct cleaned together by [`clean_prices`], in the order of the record's
/// price fields (LastPrice…LowestPrice, then Turnover…CurrDelta, AveragePrice, the banding prices,
/// BidPrice1..5, AskPrice1..5).
const PRICES: usize = 28;

/// [`price`] for many doubles at once, without a branch each: the doubles with absent ones
/// (|x| ≥ [`ABSENT_FROM`]) as NaN, whether a double absent where `expected` is all ones was absent
/// (the `ABSENT_PRICE` rule, `qilin_market::quality::absent_where_expected`, lane by lane), and
/// whether any was infinite or NaN. Written as lane-wise bit operations with OR accumulators so the
/// compiler cleans two doubles per instruction (plain `bool` accumulators made it test each
/// double on its own).
#[inline(always)]
fn clean_prices<const N: usize>(x: [f64; N], expected: [u64; N]) -> ([f64; N], bool, bool) {
    const MAGNITUDE: u64 = !(1 << 63);
    // Adding these sets bit 63 of a magnitude exactly when it is at least ABSENT_FROM (NaN too),
    // respectively infinite or NaN (the bit patterns of non-negative doubles sort like their values).
    const ABSENT_BIAS: u64 = (1 << 63) - ABSENT_FROM.to_bits();
    const BAD_BIAS: u64 = (1 << 63) - f64::INFINITY.to_bits();
    let mut out = [0.0; N];
    let mut missing = [0u64; N];
    let mut bad = [0u64; N];
    for i in 0..N {
        let magnitude = x[i].to_bits() & MAGNITUDE;
        missing[i] = magnitude.wrapping_add(ABSENT_BIAS) & expected[i];
        bad[i] = magnitude.wrapping_add(BAD_BIAS);
        out[i] = if f64::from_bits(magnitude) < ABSENT_FROM { x[i] } else { f64::NAN };
    }
    let any = |bits: [u64; N]| bits.iter().fold(0, |acc, b| acc | b) >> 63 != 0;
    (out, any(missing), any(bad))
}

/// How [`normalize`] cleans a struct's doubles into the record (the price section): every
/// price and AveragePrice as sent, absent ones (|x| ≥ [`ABSENT_FROM`]) as NaN, the banding prices
/// NaN where the struct has none; the ten book volumes as sent. Returns (a price absent where one
/// is expected: LastPrice with `volume` > 0, a book price whose volume is not 0; any double
/// infinite or NaN). AveragePrice is stored as cleaned (per lot or per unit as sent); Volume's field
/// is left to the caller. Every form gives the same bytes.
pub trait PriceSection: Copy {
    /// Cleans `raw`'s doubles into `out` (`volume`: the struct's Volume).
    fn clean(self, raw: &RawTick<'_>, volume: i64, out: &mut TickRecord) -> (bool, bool);
}

/// The price section in portable Rust (any CPU).
#[derive(Clone, Copy, Debug, Default)]
pub struct Portable;

/// The price section in AVX2 (`avx2.rs`), about half the instructions of [`Portable`]: held only
/// where the CPU has AVX2 ([`Avx2::detect`]).
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    /// `Some` when this CPU has AVX2.
    pub fn detect() -> Option<Avx2> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some(Avx2(()));
        }
        None
    }
}

impl PriceSection for Portable {
    #[inline(always)]
    fn clean(self, raw: &RawTick<'_>, volume: i64, out: &mut TickRecord) -> (bool, bool) {
        let b = raw.body;
        let l = &b.levels;
        let bid_volume = l.map(|level| level.bid_volume.get());
        let ask_volume = l.map(|level| level.ask_volume.get());
        // Where a price must be present (all ones): LastPrice once traded, a book level with volume.
        let must = |present: bool| u64::from(present).wrapping_neg();
        let mut expected = [0u64; PRICES];
        expected[0] = must(volume > 0);
        for i in 0..5 {
            expected[18 + i] = must(bid_volume[i] != 0);
            expected[23 + i] = must(ask_volume[i] != 0);
        }
        let (p, missing, any_bad) = clean_prices::<PRICES>(
            [
                b.last_price.get(),
                b.pre_settlement_price.get(),
                b.pre_close_price.get(),
                b.pre_open_interest.get(),
                b.open_price.get(),
                b.highest_price.get(),
                b.lowest_price.get(),
                b.turnover.get(),
                b.open_interest.get(),
                b.close_price.get(),
                b.settlement_price.get(),
                b.upper_limit_price.get(),
                b.lower_limit_price.get(),
                b.pre_delta.get(),
                b.curr_delta.get(),
                b.average_price.get(),
                raw.banding_upper_price.unwrap_or(0.0),
                raw.banding_lower_price.unwrap_or(0.0),
                l[0].bid_price.get(),
                l[1].bid_price.get(),
                l[2].bid_price.get(),
                l[3].bid_price.get(),
                l[4].bid_price.get(),
                l[0].ask_price.get(),
                l[1].ask_price.get(),
                l[2].ask_price.get(),
                l[3].ask_price.get(),
                l[4].ask_price.get(),
            ],
            expected,
        );
        out.last_price = p[0];
        out.pre_settlement_price = p[1];
        out.pre_close_price = p[2];
        out.pre_open_interest = p[3];
        out.open_price = p[4];
        out.highest_price = p[5];
        out.lowest_price = p[6];
        out.turnover = p[7];
        out.open_interest = p[8];
        out.close_price = p[9];
        out.settlement_price = p[10];
        out.upper_limit_price = p[11];
        out.lower_limit_price = p[12];
        out.pre_delta = p[13];
        out.curr_delta = p[14];
        out.average_price = p[15];
        out.banding_upper_price = if raw.banding_upper_price.is_some() { p[16] } else { f64::NAN };
        out.banding_lower_price = if raw.banding_lower_price.is_some() { p[17] } else { f64::NAN };
        out.bid_price = [p[18], p[19], p[20], p[21], p[22]];
        out.ask_price = [p[23], p[24], p[25], p[26], p[27]];
        out.bid_volume = bid_volume;
        out.ask_volume = ask_volume;
        (missing, any_bad)
    }
}

impl PriceSection for Avx2 {
    #[inline(always)]
    fn clean(self, raw: &RawTick<'_>, volume: i64, out: &mut TickRecord) -> (bool, bool) {
        // The banding prices come together (6.7.x) or not at all.
        let banding = [raw.banding_upper_price.unwrap_or(0.0), raw.banding_lower_price.unwrap_or(0.0)];
        #[cfg(target_arch = "x86_64")]
        return avx2::clean_prices(self, raw.body, banding, raw.banding_upper_price.is_some(), volume, out);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no Avx2 without x86-64: {banding:?} {volume} {out:?}")
    }
}

/// Equality of two short byte strings without a call to `memcmp` (ids are a few bytes long).
#[inline(always)]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Each exchange's ExchangeID as a NUL-padded little-endian word, indexed by its code.
const EXCHANGE_WORDS: [u64; 8] = {
    let mut words = [0u64; 8];
    let mut e = 0;
    while e < Exchange::ALL.len() {
        let text = Exchange::ALL[e].as_str().as_bytes();
        let mut word = 0u64;
        let mut i = 0;
        while i < text.len() {
            word |= (text[i] as u64) << (8 * i);
            i += 1;
        }
        words[Exchange::ALL[e] as usize] = word;
        e += 1;
    }
    words
};

/// The exchange whose ExchangeID is `word` (as `RawTick::exchange_word` gives it; `None` when
/// empty or unknown). Not on the hot path: the engine asks when it admits an instrument whose
/// product the table lacks.
pub fn exchange_from_word(word: u64) -> Option<Exchange> {
    Exchange::ALL.into_iter().find(|e| word != 0 && EXCHANGE_WORDS[*e as usize] == word)
}

/// `exchange`'s ExchangeID as `RawTick::exchange_word` gives it.
pub fn exchange_word(exchange: Exchange) -> u64 {
    EXCHANGE_WORDS[exchange as usize]
}

/// Whether `code` is the product of `id` (the answer of `product_of(id) == code`, see
/// [`qilin_market::product_of`], without scanning the whole id): `id` starts with `code`, `code` is letters and the
/// byte after it (if any) is not a letter.
#[inline(always)]
fn is_product_of(id: &[u8], code: &[u8]) -> bool {
    let n = code.len();
    let Some(prefix) = id.get(..n) else { return false };
    let letters = prefix.iter().fold(true, |all, b| all & b.is_ascii_alphabetic());
    letters && short_eq(prefix, code) && id.get(n).is_none_or(|b| !b.is_ascii_alphabetic())
}

/// Turns one validated raw struct into a [`TickRecord`].
///
/// **Inputs.** `prices` the [`PriceSection`] to run ([`Portable`] anywhere; the engine passes
/// [`Avx2`] where the CPU has it: the same results); `raw` from [`RawTick::parse`]; `spec` the
/// product of `raw.instrument_id` (the engine looks it up once per directory entry, e.g. with
/// [`qilin_market::Instruments::spec_for`]); `state` this instrument's running state; `receive_ns`
/// the local UTC-ns time the raw struct arrived; `source` which session or source it came from;
/// `instrument_index` its directory index.
///
/// **On `Ok`**, every field of `out` is written except `sequence` and `publish_ns`, which are left
/// as they were (the engine and the writer set them):
/// - `instrument_id` NUL-padded, `exchange` (from ExchangeID, or from `spec` if ExchangeID is empty),
///   `source`, `instrument_index`, `receive_ns`, reserved fields zero;
/// - `trading_day` / `action_day` as `YYYYMMDD` after the exchange's day rules ([`Calendar::tick_days`]):
///   DCE night ticks get their calendar day derived (`DERIVED_ACTION_DAY`), CZCE night ticks their
///   trading day; `update_time_ms` = UpdateTime + milliseconds since local midnight and
///   `exchange_time_ns` the same instant in UTC ns, both using the adjusted milliseconds on CZCE
///   repeated seconds (`REPEATED_SECOND`: previous ms + 1, at most 999);
/// - every price as sent, except absent ones (DBL_MAX) as NaN (`ABSENT_PRICE` when LastPrice is
///   absent with Volume > 0 or a book level's price with its volume not 0); the banding
///   prices are NaN without that flag on 6.3/6.5 structs, which have none; `average_price` divided
///   by `spec.volume_multiple` except on CZCE (per unit everywhere, no flag); volumes as sent;
/// - `UNKNOWN_PRODUCT` when `spec` is a stand-in for a product the table lacks;
/// - `quality`: the bits above plus `VOLUME_REGRESSION` / `TURNOVER_REGRESSION` when the cumulative
///   value is below the previous tick's of the same trading day (values are kept as sent) and
///   `STALE_SNAPSHOT` when UpdateTime is outside the product's sessions or the calendar holds no
///   session then (a weekend, a holiday, an evening before one: [`Calendar::trades_at`]);
/// - `state` is advanced to this tick.
///
/// **On `Err`** `state` is unchanged and `out` may be partly written (do not publish it):
/// [`Reject::Exchange`] for an unknown ExchangeID or one that is not `spec.exchange`;
/// [`Reject::UnknownInstrument`] if the instrument is not of `spec`'s product; [`Reject::Id`] if
/// InstrumentID is longer than 31 characters; [`Reject::Time`] for a TradingDay/ActionDay that is
/// not a date, an UpdateTime that is not `HH:MM:SS` or an UpdateMillisec outside 0..=999;
/// [`Reject::Price`] for an infinite or NaN double.
///
/// Does not allocate, lock, log or block.
#[allow(clippy::too_many_arguments)] // the hot path's inputs, each distinct; a struct would only be packed and unpacked
#[inline(always)] // into the engine's `process`, next to `RawTick::parse`: the raw view stays in registers
pub fn normalize(
    prices: impl PriceSection,
    raw: &RawTick<'_>,
    spec: &ProductSpec,
    calendar: &Calendar,
    state: &mut InstrumentState,
    receive_ns: i64,
    source: Source,
    instrument_index: u32,
    out: &mut TickRecord,
) -> Result<(), Reject> {
    // Identity: ExchangeID empty or the spec's (any other, known or not, is a reject); the product
    // of InstrumentID the spec's; the id itself short enough for the record.
    let exchange_word = raw.exchange_word();
    let exchange = spec.exchange;
    if exchange_word != 0 && exchange_word != EXCHANGE_WORDS[exchange as usize] {
        return Err(Reject::Exchange);
    }
    let id = raw.id_words();
    // The id of the last accepted tick (a valid one: never zero) had its product checked then.
    let known_id = id[0] != 0
        && ((id[0] ^ state.id[0]) | (id[1] ^ state.id[1]) | (id[2] ^ state.id[2]) | (id[3] ^ state.id[3])) == 0;
    if !known_id && !is_product_of(raw.instrument_id.as_bytes(), spec.code.as_bytes()) && !spec.unknown {
        return Err(Reject::UnknownInstrument);
    }
    if id[0] == 0 {
        return Err(Reject::Id);
    }
    // Word by word, as the scan built them (one wide load of narrower stores would stall).
    for (chunk, word) in out.instrument_id.chunks_exact_mut(8).zip(id) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }

    // Time: the dates and the minute through the memo, the second of minute on every tick.
    let word = |text: crate::ctp::ShortText| text.eight().ok_or(Reject::Time);
    let time_word = word(raw.update_time)?;
    let key = [word(raw.trading_day)?, word(raw.action_day)?, time_word & MINUTE_MASK];
    let second = second_of_minute(time_word).ok_or(Reject::Time)?;
    let memo = &state.minute.key;
    // (Not `key == *memo`: that builds the key in memory to compare it as a block.)
    let remembered = ((key[0] ^ memo[0]) | (key[1] ^ memo[1]) | (key[2] ^ memo[2])) == 0;
    let sent_ms = raw.body.update_millisec.get();
    if !(0..=999).contains(&sent_ms) {
        return Err(Reject::Time);
    }
    let mut millis = sent_ms as u32;
    // A new minute goes into the state now, so that every tick reads the memo from one place; the
    // memo it replaced comes back if the tick is rejected after all (`replaced`, the one later
    // reject: an infinite or NaN price), as a rejected tick leaves the state as it was.
    let replaced = if remembered {
        None
    } else {
        let fresh = MinuteMemo::read(key, time_word, spec, calendar).ok_or(Reject::Time)?;
        Some(core::mem::replace(&mut state.minute, fresh))
    };
    let minute = &state.minute;
    let (days, in_session) = (minute.days, minute.in_session[usize::from(second != 0)]);
    let secs = minute.minute_secs + second;
    debug_assert_eq!(
        Some(days),
        Date::parse_bytes(&key[0].to_le_bytes())
            .zip(Date::parse_bytes(&key[1].to_le_bytes()))
            .map(|(t, a)| calendar.tick_days(exchange, t, Some(a), secs)),
        "the memo's days"
    );
    let mut flags = if days.derived_calendar { quality::DERIVED_ACTION_DAY } else { 0 };
    if spec.unknown {
        flags |= quality::UNKNOWN_PRODUCT;
    }
    let local_second = days.calendar.days * date::DAY_SECS + i64::from(secs);
    if exchange == Exchange::Czce && local_second == state.local_second && millis <= state.millis {
        millis = (state.millis + 1).min(999);
        flags |= quality::REPEATED_SECOND;
    }
    let update_time_ms = secs * 1000 + millis;
    debug_assert_eq!(in_session, calendar.in_session(spec, days.calendar, update_time_ms), "the memo's session answer");
    debug_assert_eq!(date::parse_hms_word(time_word), Some(secs), "the memo's minute and the second");
    if !in_session {
        flags |= quality::STALE_SNAPSHOT;
    }

    // Prices: every double through the same branch-free cleaning, one verdict at the end. Banding
    // prices a 6.3/6.5 struct does not have are cleaned as 0 and stored as NaN without ABSENT_PRICE.
    let volume = i64::from(raw.body.volume.get());
    let (missing, any_bad) = prices.clean(raw, volume, out);
    if any_bad {
        if let Some(replaced) = replaced {
            state.minute = replaced;
        }
        return Err(Reject::Price);
    }
    // Absent where CTP leaves a price out by design (ClosePrice, SettlementPrice, the deltas before
    // the close, an empty book level) is no anomaly; absent where there is trading or volume is.
    if missing {
        flags |= quality::ABSENT_PRICE;
    }
    out.volume = volume;
    debug_assert_eq!(missing, qilin_market::quality::absent_where_expected(out), "the two forms of the rule");
    // Per unit everywhere (CZCE sends it so, the others per lot): a normalization, not flagged.
    if exchange != Exchange::Czce {
        out.average_price /= f64::from(spec.volume_multiple);
    }

    // Cumulative values: compared within one trading day, kept as sent.
    if state.trading_day == days.trading.ymd {
        if volume < state.volume {
            flags |= quality::VOLUME_REGRESSION;
        }
        if out.turnover < state.turnover {
            flags |= quality::TURNOVER_REGRESSION;
        }
    } else {
        state.turnover = f64::NAN;
    }

    // Accepted: advance the state, fill the rest.
    state.trading_day = days.trading.ymd;
    state.volume = volume;
    if !out.turnover.is_nan() {
        state.turnover = out.turnover;
    }
    state.local_second = local_second;
    state.millis = millis;
    state.id = id;

    out.exchange_time_ns = date::utc_ns(days.calendar, secs, millis);
    out.receive_ns = receive_ns;
    out.instrument_index = instrument_index;
    out.trading_day = days.trading.ymd;
    out.action_day = days.calendar.ymd;
    out.update_time_ms = update_time_ms;
    out.quality = flags;
    out.exchange = exchange as u8;
    out.source = source as u8;
    out.reserved0 = [0; 2];
    out.reserved1 = [0; 2];
    Ok(())
}
