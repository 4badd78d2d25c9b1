//! Dates and China exchange time for the journal tools: `YYYYMMDD` days, China Standard Time
//! (UTC+8, no daylight saving) and the exchanges' TradingDay/ActionDay conventions at night.
//!
//! The same rules as the core's normalization (`core/src/normalize/time.rs`), written again here
//! because qilinctl never links the core. **Exchange holidays are not known**: "previous/next
//! trading day" is the previous/next weekday, which is right because the exchanges hold no night
//! session on the evening before a holiday.

/// Seconds in a day.
pub const DAY_SECS: i64 = 86_400;
/// Milliseconds in a day.
pub const DAY_MS: u32 = 86_400_000;
/// China Standard Time offset from UTC, seconds.
pub const CST_OFFSET_SECS: i64 = 8 * 3600;
/// Local second-of-day from which a tick belongs to the evening part of a night session.
pub const EVENING_FROM_SECS: u32 = 18 * 3600;
/// Local second-of-day before which a tick belongs to the after-midnight part of a night session.
pub const AFTER_MIDNIGHT_UNTIL_SECS: u32 = 6 * 3600;

/// A calendar date: days since 1970-01-01 and the same date as `YYYYMMDD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Days since 1970-01-01.
    pub days: i64,
    /// `YYYYMMDD`.
    pub ymd: u32,
}

impl Date {
    /// The date `days` after 1970-01-01.
    pub fn from_days(days: i64) -> Date {
        let (y, m, d) = civil_from_days(days);
        Date { days, ymd: y as u32 * 10_000 + m * 100 + d }
    }

    /// A `YYYYMMDD` number that is a real date in 1900..=9999; `None` otherwise.
    pub fn from_ymd(ymd: u32) -> Option<Date> {
        let (y, m, d) = (ymd / 10_000, ymd / 100 % 100, ymd % 100);
        if !(1900..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(Date { days: days_from_civil(i64::from(y), m, d), ymd })
    }

    /// Parses exactly eight digits `YYYYMMDD` naming a real date.
    pub fn parse(text: &str) -> Option<Date> {
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Date::from_ymd(text.parse().ok()?)
    }

    /// Day of the week, Monday = 0 … Sunday = 6.
    pub fn weekday(self) -> u32 {
        (self.days + 3).rem_euclid(7) as u32
    }

    /// Whether Monday to Friday.
    pub fn is_weekday(self) -> bool {
        self.weekday() < 5
    }

    /// The closest weekday strictly before.
    pub fn prev_weekday(self) -> Date {
        let back = match self.weekday() {
            0 => 3,
            6 => 2,
            _ => 1,
        };
        Date::from_days(self.days - back)
    }

    /// The closest weekday strictly after.
    pub fn next_weekday(self) -> Date {
        let ahead = match self.weekday() {
            4 => 3,
            5 => 2,
            _ => 1,
        };
        Date::from_days(self.days + ahead)
    }
}

/// Days from 1970-01-01 to `y-m-d` (proleptic Gregorian; Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses `HH:MM:SS` (00:00:00 to 23:59:59) into seconds since local midnight.
pub fn parse_hms(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let two = |i: usize| {
        (b[i].is_ascii_digit() && b[i + 1].is_ascii_digit())
            .then(|| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0'))
    };
    let (h, m, s) = (two(0)?, two(3)?, two(6)?);
    (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
}

/// UTC nanoseconds of a China-local calendar day plus milliseconds since local midnight.
pub fn utc_ns(calendar: Date, local_ms: u32) -> i64 {
    ((calendar.days * DAY_SECS - CST_OFFSET_SECS) * 1000 + i64::from(local_ms)) * 1_000_000
}

/// China-local milliseconds since 1970-01-01 00:00 local of a UTC nanosecond time.
pub fn local_ms(utc_ns: i64) -> i64 {
    utc_ns.div_euclid(1_000_000) + CST_OFFSET_SECS * 1000
}

/// The trading day and calendar day of a tick after an exchange's night conventions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickDays {
    /// Trading day.
    pub trading: Date,
    /// China-local calendar day of the tick.
    pub calendar: Date,
    /// The calendar day was derived, not taken from ActionDay.
    pub derived_calendar: bool,
}

/// The days of a tick at `secs` past local midnight on `exchange` (a CTP ExchangeID), given its
/// TradingDay and its ActionDay (`None` when the file has none: derived as on DCE).
///
/// - DCE: both fields carry the trading day, at night too: an evening tick (≥ 18:00) happened on
///   the weekday before the trading day, an after-midnight one (< 06:00) the calendar day after
///   that evening (derived).
/// - CZCE: both fields carry the calendar day: a night tick belongs to the next weekday's trading day.
/// - Others (SHFE, INE, CFFEX, GFEX): both as sent.
pub fn tick_days(exchange: &str, trading_day: Date, action_day: Option<Date>, secs: u32) -> TickDays {
    let evening = secs >= EVENING_FROM_SECS;
    let after_midnight = secs < AFTER_MIDNIGHT_UNTIL_SECS;
    let derived = |trading: Date| {
        let calendar = if evening {
            trading.prev_weekday()
        } else if after_midnight {
            Date::from_days(trading.prev_weekday().days + 1)
        } else {
            trading
        };
        TickDays { trading, calendar, derived_calendar: true }
    };
    // CZCE's TradingDay carries the calendar day too: without an ActionDay it is one.
    let action_day = if exchange == "CZCE" { action_day.or(Some(trading_day)) } else { action_day };
    match (exchange, action_day) {
        ("DCE", _) if evening || after_midnight => derived(trading_day),
        ("CZCE", Some(action)) if evening => {
            TickDays { trading: action.next_weekday(), calendar: action, derived_calendar: false }
        }
        ("CZCE", Some(action)) if after_midnight => TickDays {
            trading: Date::from_days(action.days - 1).next_weekday(),
            calendar: action,
            derived_calendar: false,
        },
        (_, Some(action)) => TickDays { trading: trading_day, calendar: action, derived_calendar: false },
        (_, None) => derived(trading_day),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ymd: u32) -> Date {
        Date::from_ymd(ymd).unwrap()
    }

    #[test]
    fn dates_round_trip_and_know_their_weekdays() {
        for days in -30_000..60_000 {
            let (y, m, dd) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, dd), days);
        }
        assert_eq!(d(20250509).weekday(), 4, "a Friday");
        assert_eq!(d(20250512).prev_weekday().ymd, 20250509);
        assert_eq!(d(20250509).next_weekday().ymd, 20250512);
        assert_eq!(Date::from_ymd(20250230), None);
        assert_eq!(Date::parse("2025051"), None);
        assert_eq!(parse_hms("21:00:05"), Some(75_605));
        assert_eq!(parse_hms("24:00:00"), None);
        assert_eq!(parse_hms("9:00:00"), None);
    }

    #[test]
    fn utc_of_china_time() {
        // 2025-05-12 09:00:00.500 CST = 2025-05-12 01:00:00.500 UTC = 1747011600.5 s.
        assert_eq!(utc_ns(d(20250512), 9 * 3_600_000 + 500), 1_747_011_600_500_000_000);
        assert_eq!(local_ms(1_747_011_600_500_000_000).rem_euclid(i64::from(DAY_MS)), 9 * 3_600_000 + 500);
    }

    #[test]
    fn night_conventions() {
        // DCE Monday trading day, Friday evening tick; Saturday after midnight.
        let t = tick_days("DCE", d(20250512), Some(d(20250512)), 21 * 3600);
        assert_eq!((t.trading.ymd, t.calendar.ymd, t.derived_calendar), (20250512, 20250509, true));
        let t = tick_days("DCE", d(20250512), Some(d(20250512)), 3600);
        assert_eq!(t.calendar.ymd, 20250510);
        // CZCE Friday evening → Monday trading day.
        let t = tick_days("CZCE", d(20250509), Some(d(20250509)), 21 * 3600);
        assert_eq!((t.trading.ymd, t.calendar.ymd), (20250512, 20250509));
        let t = tick_days("CZCE", d(20250509), None, 21 * 3600);
        assert_eq!((t.trading.ymd, t.calendar.ymd, t.derived_calendar), (20250512, 20250509, false));
        // SHFE as sent; no ActionDay: derived.
        let t = tick_days("SHFE", d(20250512), Some(d(20250509)), 21 * 3600);
        assert_eq!((t.trading.ymd, t.calendar.ymd, t.derived_calendar), (20250512, 20250509, false));
        let t = tick_days("SHFE", d(20250512), None, 10 * 3600);
        assert_eq!((t.calendar.ymd, t.derived_calendar), (20250512, true));
    }
}
