//! Every CTP data quirk, in one place: a validated raw struct ([`RawTick`]) plus its product's
//! specification and the instrument's running state become one [`TickRecord`], or a counted
//! [`Reject`]. Runs on the hot thread: nothing here allocates, locks, logs or blocks.
//!
//! | quirk | handled in | quality bit / reject |
//! |---|---|---|
//! | DBL_MAX (or any \|x\| ≥ 1e300) means "absent" | [`price`] (applied branch-free in [`normalize`]) | NaN + `ABSENT_PRICE` |
//! | infinite / NaN price | [`price`] (likewise) | `Reject::Price` |
//! | TradingDay/ActionDay meaning per exchange | [`time::tick_days`] | `DERIVED_ACTION_DAY` (DCE night) |
//! | CST → UTC, no DST | [`time::utc_ns`] | — |
//! | CZCE repeated seconds with UpdateMillisec 0 | [`normalize`] | `REPEATED_SECOND` |
//! | cumulative Volume going down | [`normalize`] | `VOLUME_REGRESSION` |
//! | Turnover going down (normal on CZCE) | [`normalize`] | `TURNOVER_REGRESSION` |
//! | AveragePrice per lot except on CZCE | [`normalize`] | `AVERAGE_PRICE_SCALED` |
//! | snapshots outside trading hours | [`crate::instruments::in_session`] | `STALE_SNAPSHOT` |
//! | empty ExchangeID from older fronts | [`normalize`] | taken from the product spec |
//! | bad sizes, ids, exchanges, dates | [`RawTick::parse`], [`normalize`] | [`Reject`] |

mod reject;
pub mod time;

#[cfg(test)]
mod tests;

use qilin_shm::{
    Exchange, Source, TickRecord,
    layout::{INSTRUMENT_ID_LEN, fixed_id},
    quality,
};

pub use self::reject::Reject;
use crate::{
    ctp::RawTick,
    instruments::{ProductSpec, in_session, product_of},
};

/// Magnitude from which a double is CTP's "no value" (it sends DBL_MAX; anything this large is no price).
pub const ABSENT_FROM: f64 = 1e300;

/// What [`normalize`] remembers about one instrument between its ticks. The engine keeps one per
/// directory index in a preallocated `Vec` (`vec![InstrumentState::new(); capacity]`).
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
    /// The InstrumentID of the previous accepted tick, NUL-padded as in the record: copied into
    /// each record from here (a fresh byte-wise copy would stall the record's wide stores).
    pub instrument_id: [u8; INSTRUMENT_ID_LEN],
    /// Memo of the last TradingDay/ActionDay text parsed for this instrument (both change once a
    /// day, so the hot path compares eight bytes instead of parsing a date on every tick).
    pub dates: DateMemo,
}

/// The last two date texts seen (as their eight bytes) and what they parsed to; zero text = none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DateMemo {
    texts: [u64; 2],
    dates: [time::Date; 2],
}

impl DateMemo {
    /// An empty memo.
    pub const fn new() -> DateMemo {
        DateMemo { texts: [0; 2], dates: [time::Date { days: 0, ymd: 0 }; 2] }
    }

    /// Parses a `YYYYMMDD` date, answering from the memo when the text was seen last time;
    /// the memo itself is refreshed by [`DateMemo::remember`].
    #[inline]
    fn parse(&self, text: &[u8]) -> Option<(time::Date, u64)> {
        let key = u64::from_le_bytes(text.try_into().ok()?);
        match self.texts.iter().position(|t| *t == key) {
            Some(i) => Some((self.dates[i], key)),
            None => time::parse_date_bytes(text).map(|d| (d, key)),
        }
    }

    #[inline]
    fn remember(&mut self, trading: (time::Date, u64), action: (time::Date, u64)) {
        *self = DateMemo { texts: [trading.1, action.1], dates: [trading.0, action.0] };
    }
}

impl Default for DateMemo {
    fn default() -> Self {
        DateMemo::new()
    }
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
            instrument_id: [0; INSTRUMENT_ID_LEN],
            dates: DateMemo::new(),
        }
    }
}

impl Default for InstrumentState {
    fn default() -> Self {
        InstrumentState::new()
    }
}

/// One double from the raw struct: DBL_MAX-like (|x| ≥ [`ABSENT_FROM`]) becomes NaN and sets
/// `ABSENT_PRICE` in `flags`; infinite or NaN is [`Reject::Price`]; anything else passes unchanged.
#[inline(always)]
pub fn price(x: f64, flags: &mut u32) -> Result<f64, Reject> {
    if !x.is_finite() {
        Err(Reject::Price)
    } else if x.abs() >= ABSENT_FROM {
        *flags |= quality::ABSENT_PRICE;
        Ok(f64::NAN)
    } else {
        Ok(x)
    }
}

/// [`price`] for many doubles without a branch each: remembers whether any was absent or bad.
#[derive(Default)]
struct Cleaner {
    absent: bool,
    bad: bool,
}

impl Cleaner {
    #[inline(always)]
    fn clean(&mut self, x: f64) -> f64 {
        let magnitude = x.abs();
        self.bad |= !x.is_finite(); // NaN and ±inf
        let absent = magnitude >= ABSENT_FROM;
        self.absent |= absent;
        if absent { f64::NAN } else { x }
    }
}

/// Equality of two short byte strings without a call to `memcmp` (ids are a few bytes long).
#[inline(always)]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Turns one validated raw struct into a [`TickRecord`].
///
/// **Inputs.** `raw` from [`RawTick::parse`]; `spec` the product of `raw.instrument_id` (the engine
/// looks it up once per directory entry, e.g. with [`crate::instruments::Instruments::spec_for`]);
/// `state` this instrument's running state; `receive_ns` the local UTC-ns time the raw struct
/// arrived; `source` which session or source it came from; `instrument_index` its directory index.
///
/// **On `Ok`**, every field of `out` is written except `sequence` and `publish_ns`, which are left
/// as they were (the engine and the writer set them):
/// - `instrument_id` NUL-padded, `exchange` (from ExchangeID, or from `spec` if ExchangeID is empty),
///   `source`, `instrument_index`, `receive_ns`, reserved fields zero;
/// - `trading_day` / `action_day` as `YYYYMMDD` after the exchange's day rules ([`time::tick_days`]):
///   DCE night ticks get their calendar day derived (`DERIVED_ACTION_DAY`), CZCE night ticks their
///   trading day; `update_time_ms` = UpdateTime + milliseconds since local midnight and
///   `exchange_time_ns` the same instant in UTC ns, both using the adjusted milliseconds on CZCE
///   repeated seconds (`REPEATED_SECOND`: previous ms + 1, at most 999);
/// - every price as sent, except absent ones (DBL_MAX) as NaN (`ABSENT_PRICE`); the banding
///   prices are NaN without that flag on 6.3/6.5 structs, which have none; `average_price` divided
///   by `spec.volume_multiple` except on CZCE (`AVERAGE_PRICE_SCALED`); volumes as sent;
/// - `quality`: the bits above plus `VOLUME_REGRESSION` / `TURNOVER_REGRESSION` when the cumulative
///   value is below the previous tick's of the same trading day (values are kept as sent) and
///   `STALE_SNAPSHOT` when UpdateTime is outside the product's sessions;
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
pub fn normalize(
    raw: &RawTick<'_>,
    spec: &ProductSpec,
    state: &mut InstrumentState,
    receive_ns: i64,
    source: Source,
    instrument_index: u32,
    out: &mut TickRecord,
) -> Result<(), Reject> {
    // Identity.
    let exchange =
        if raw.exchange_id.is_empty() || short_eq(raw.exchange_id.as_bytes(), spec.exchange.as_str().as_bytes()) {
            spec.exchange
        } else {
            Exchange::from_id(raw.exchange_id).ok_or(Reject::Exchange)?
        };
    if exchange != spec.exchange {
        return Err(Reject::Exchange);
    }
    if !short_eq(product_of(raw.instrument_id).as_bytes(), spec.code.as_bytes()) {
        return Err(Reject::UnknownInstrument);
    }
    let id = raw.instrument_id.as_bytes();
    let same_id = state.instrument_id.get(id.len()) == Some(&0) && short_eq(&state.instrument_id[..id.len()], id);
    if same_id {
        out.instrument_id = state.instrument_id;
    } else {
        out.instrument_id = fixed_id(raw.instrument_id).ok_or(Reject::Id)?;
    }

    // Time.
    let trading_memo = state.dates.parse(raw.trading_day).ok_or(Reject::Time)?;
    let action_memo = state.dates.parse(raw.action_day).ok_or(Reject::Time)?;
    let (trading_day, action_day) = (trading_memo.0, action_memo.0);
    let secs = time::parse_hms_bytes(raw.update_time).ok_or(Reject::Time)?;
    let sent_ms = raw.body.update_millisec.get();
    if !(0..=999).contains(&sent_ms) {
        return Err(Reject::Time);
    }
    let mut millis = sent_ms as u32;
    let days = time::tick_days(exchange, trading_day, action_day, secs);
    let mut flags = if days.derived_calendar { quality::DERIVED_ACTION_DAY } else { 0 };
    let local_second = days.calendar.days * time::DAY_SECS + i64::from(secs);
    if exchange == Exchange::Czce && local_second == state.local_second && millis <= state.millis {
        millis = (state.millis + 1).min(999);
        flags |= quality::REPEATED_SECOND;
    }
    let update_time_ms = secs * 1000 + millis;
    if !in_session(spec, update_time_ms) {
        flags |= quality::STALE_SNAPSHOT;
    }

    // Prices: every double through the same branch-free cleaning, one verdict at the end.
    let b = raw.body;
    let mut c = Cleaner::default();
    out.last_price = c.clean(b.last_price.get());
    out.pre_settlement_price = c.clean(b.pre_settlement_price.get());
    out.pre_close_price = c.clean(b.pre_close_price.get());
    out.pre_open_interest = c.clean(b.pre_open_interest.get());
    out.open_price = c.clean(b.open_price.get());
    out.highest_price = c.clean(b.highest_price.get());
    out.lowest_price = c.clean(b.lowest_price.get());
    out.turnover = c.clean(b.turnover.get());
    out.open_interest = c.clean(b.open_interest.get());
    out.close_price = c.clean(b.close_price.get());
    out.settlement_price = c.clean(b.settlement_price.get());
    out.upper_limit_price = c.clean(b.upper_limit_price.get());
    out.lower_limit_price = c.clean(b.lower_limit_price.get());
    out.pre_delta = c.clean(b.pre_delta.get());
    out.curr_delta = c.clean(b.curr_delta.get());
    out.banding_upper_price = raw.banding_upper_price.map_or(f64::NAN, |x| c.clean(x));
    out.banding_lower_price = raw.banding_lower_price.map_or(f64::NAN, |x| c.clean(x));
    for (i, level) in b.levels.iter().enumerate() {
        out.bid_price[i] = c.clean(level.bid_price.get());
        out.ask_price[i] = c.clean(level.ask_price.get());
        out.bid_volume[i] = level.bid_volume.get();
        out.ask_volume[i] = level.ask_volume.get();
    }
    let average = c.clean(b.average_price.get());
    if c.bad {
        return Err(Reject::Price);
    }
    if c.absent {
        flags |= quality::ABSENT_PRICE;
    }
    out.average_price = if exchange == Exchange::Czce || average.is_nan() {
        average
    } else {
        flags |= quality::AVERAGE_PRICE_SCALED;
        average / f64::from(spec.volume_multiple)
    };

    // Cumulative values: compared within one trading day, kept as sent.
    let volume = i64::from(b.volume.get());
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
    if !same_id {
        state.instrument_id = out.instrument_id;
    }
    state.dates.remember(trading_memo, action_memo);

    out.exchange_time_ns = time::utc_ns(days.calendar, secs, millis);
    out.receive_ns = receive_ns;
    out.instrument_index = instrument_index;
    out.trading_day = days.trading.ymd;
    out.action_day = days.calendar.ymd;
    out.update_time_ms = update_time_ms;
    out.quality = flags;
    out.exchange = exchange as u8;
    out.source = source as u8;
    out.reserved0 = [0; 2];
    out.volume = volume;
    out.reserved1 = [0; 2];
    Ok(())
}
