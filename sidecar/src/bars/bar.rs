//! A bar and its periods: what the builder emits, with its flags and its JSON (the NATS body).

use serde::Serialize;

/// A bar's length: minutes aligned to the clock within a section, or the whole trading day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// One minute.
    M1,
    /// Five minutes.
    M5,
    /// Fifteen minutes.
    M15,
    /// Thirty minutes.
    M30,
    /// Sixty minutes.
    M60,
    /// The trading day: from the first section's open (its auction included) to the last close.
    Day,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 6] = [Period::M1, Period::M5, Period::M15, Period::M30, Period::M60, Period::Day];

    /// The period's name in subjects, message ids and config: `1m`, `5m`, `15m`, `30m`, `60m`, `1d`.
    pub const fn name(self) -> &'static str {
        match self {
            Period::M1 => "1m",
            Period::M5 => "5m",
            Period::M15 => "15m",
            Period::M30 => "30m",
            Period::M60 => "60m",
            Period::Day => "1d",
        }
    }

    /// The period named `name` ([`Period::name`]).
    pub fn from_name(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Length in ms for the minute periods; `None` for the trading day.
    pub const fn minutes_ms(self) -> Option<i64> {
        match self {
            Period::M1 => Some(60_000),
            Period::M5 => Some(300_000),
            Period::M15 => Some(900_000),
            Period::M30 => Some(1_800_000),
            Period::M60 => Some(3_600_000),
            Period::Day => None,
        }
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Bits of [`Bar::flags`]: the bar segment's flag table (LAYOUT.md, "Bar flags"), one home in qilin-shm.
pub use qilin_shm::bar_flags as flags;

/// One bar of one instrument. Times are UTC nanoseconds; prices NaN (JSON `null`) when no tick of
/// the bar carried one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bar {
    /// InstrumentID.
    pub instrument_id: String,
    /// ExchangeID.
    pub exchange: &'static str,
    /// The period.
    pub period: Period,
    /// The trading day, `YYYYMMDD`.
    pub trading_day: u32,
    /// The window's start (inclusive): the clock-aligned start, or the section's open if later.
    pub start_ns: i64,
    /// The window's end (exclusive): the next aligned boundary, or the section's close if earlier.
    /// Ticks in the closing second after a section's close belong to the bar ending there.
    pub end_ns: i64,
    /// First LastPrice.
    pub open: f64,
    /// Highest LastPrice.
    pub high: f64,
    /// Lowest LastPrice.
    pub low: f64,
    /// Last LastPrice.
    pub close: f64,
    /// Contracts traded in the bar: the rise of cumulative Volume over the bar, never negative.
    pub volume: i64,
    /// Value traded in the bar: the rise of cumulative Turnover, never negative.
    pub turnover: f64,
    /// OpenInterest at the bar's last tick.
    pub open_interest: f64,
    /// OpenInterest at the last tick minus OpenInterest before the bar (signed: positions close).
    pub open_interest_change: f64,
    /// Ticks in the bar.
    pub ticks: u32,
    /// Feed sequence of the bar's first tick.
    pub first_sequence: u64,
    /// Feed sequence of the bar's last tick.
    pub last_sequence: u64,
    /// [`flags`] bits.
    pub flags: u32,
}

impl Bar {
    /// The message id: `<feed>-bar-<period>-<instrument>-<start>`, the start as China-local
    /// `YYYYMMDDHHMM` (the trading day `YYYYMMDD` for daily bars). The same bar always gets the
    /// same id, live or rebuilt, so JetStream drops a republished one.
    pub fn msg_id(&self, feed: &str) -> String {
        let start = if self.period == Period::Day {
            self.trading_day.to_string()
        } else {
            let local_ms = qilin_market::date::local_ms(self.start_ns);
            let date = qilin_market::Date::from_days(local_ms.div_euclid(86_400_000));
            let minute = local_ms.rem_euclid(86_400_000) / 60_000;
            format!("{}{:02}{:02}", date, minute / 60, minute % 60)
        };
        format!("{feed}-bar-{}-{}-{start}", self.period.name(), self.instrument_id)
    }

    /// The bar as JSON (field names as in this struct, NaN prices as `null`).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Bar always serializes")
    }
}
