//! Exchange time: parsing CTP's TradingDay/ActionDay/UpdateTime text, the civil-calendar arithmetic
//! (days from 1970-01-01, written out here rather than pulling in a date crate), and the per-exchange
//! rules that turn the two day fields into a calendar day and a trading day.
//!
//! China Standard Time is UTC+8 all year (no daylight saving), so a local time converts to UTC by
//! subtracting eight hours.
//!
//! **Exchange holidays are ignored**: "previous/next trading day" below means previous/next weekday
//! (Monday–Friday). In practice this is right because the exchanges hold no night session on the
//! evening before a holiday, so a night tick always sits between two adjacent trading days; a
//! holiday calendar would only matter if that ever changed.

use qilin_shm::Exchange;

/// Seconds in a day.
pub const DAY_SECS: i64 = 86_400;
/// China Standard Time offset from UTC, seconds (UTC+8, no DST).
pub const CST_OFFSET_SECS: i64 = 8 * 3600;
/// Local second-of-day at and after which a tick belongs to the evening part of a night session.
pub const EVENING_FROM_SECS: u32 = 18 * 3600;
/// Local second-of-day before which a tick belongs to the after-midnight part of a night session.
pub const AFTER_MIDNIGHT_UNTIL_SECS: u32 = 6 * 3600;

/// A calendar date: days since 1970-01-01 and the same date as `YYYYMMDD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    /// Days since 1970-01-01 (negative before).
    pub days: i64,
    /// The date as `YYYYMMDD`.
    pub ymd: u32,
}

impl Date {
    /// The date `days` after 1970-01-01.
    pub const fn from_days(days: i64) -> Date {
        let (y, m, d) = civil_from_days(days);
        Date { days, ymd: y as u32 * 10_000 + m * 100 + d }
    }

    /// Day of the week, Monday = 0 … Sunday = 6 (1970-01-01 was a Thursday).
    pub const fn weekday(self) -> u32 {
        (self.days + 3).rem_euclid(7) as u32
    }

    /// The closest Monday–Friday strictly before this date.
    pub const fn prev_weekday(self) -> Date {
        let back = match self.weekday() {
            0 => 3, // Monday → Friday
            6 => 2, // Sunday → Friday
            _ => 1,
        };
        Date::from_days(self.days - back)
    }

    /// The closest Monday–Friday strictly after this date.
    pub const fn next_weekday(self) -> Date {
        let ahead = match self.weekday() {
            4 => 3, // Friday → Monday
            5 => 2, // Saturday → Monday
            _ => 1,
        };
        Date::from_days(self.days + ahead)
    }
}

/// Days from 1970-01-01 to the proleptic-Gregorian date `y-m-d` (Howard Hinnant's algorithm).
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400; // [0, 399]
    let mp = ((m + 9) % 12) as i64; // March = 0
    let doy = (153 * mp + 2) / 5 + d as i64 - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: `(year, month, day)`.
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

const fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

const fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits<const N: usize>(text: &[u8]) -> Option<u32> {
    if text.len() != N {
        return None;
    }
    let mut value = 0u32;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    Some(value)
}

/// Parses CTP's `YYYYMMDD` (exactly eight digits, a real date in 1990..=2199); `None` otherwise.
pub fn parse_date(text: &str) -> Option<Date> {
    parse_date_bytes(text.as_bytes())
}

/// [`parse_date`] on bytes.
pub fn parse_date_bytes(text: &[u8]) -> Option<Date> {
    let ymd = digits::<8>(text)?;
    let (y, m, d) = (ymd / 10_000, ymd / 100 % 100, ymd % 100);
    if !(1990..=2199).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(Date { days: days_from_civil(i64::from(y), m, d), ymd })
}

/// Parses CTP's `HH:MM:SS` (exactly that shape, 00:00:00..=23:59:59) into seconds since local midnight.
pub fn parse_hms(text: &str) -> Option<u32> {
    parse_hms_bytes(text.as_bytes())
}

/// [`parse_hms`] on bytes.
pub fn parse_hms_bytes(b: &[u8]) -> Option<u32> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits::<2>(&b[0..2])?, digits::<2>(&b[3..5])?, digits::<2>(&b[6..8])?);
    (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
}

/// [`parse_hms_bytes`] on the eight bytes of an eight-character text as a little-endian word (byte 0
/// lowest), without a loop: the same answer for every word (tested against it).
#[inline(always)]
pub const fn parse_hms_word(word: u64) -> Option<u32> {
    // Bytes 2 and 5 are ':'; the other six are digits.
    const COLON_MASK: u64 = 0x0000_FF00_00FF_0000;
    const COLONS: u64 = 0x0000_3A00_003A_0000;
    const DIGITS: u64 = !COLON_MASK;
    const HIGH_NIBBLES: u64 = 0xF0F0_00F0_F000_F0F0;
    const ZEROS: u64 = 0x3030_0030_3000_3030;
    const SIXES: u64 = 0x0606_0006_0600_0606;
    let digits = word & DIGITS;
    // A digit byte is 0x30..=0x39: high nibble 3, and still 3 after adding 6 to the low nibble.
    if word & COLON_MASK != COLONS || digits & HIGH_NIBBLES != ZEROS || (digits + SIXES) & HIGH_NIBBLES != ZEROS {
        return None;
    }
    let v = digits - ZEROS; // each digit byte 0..=9, no borrows
    // Byte i becomes 10 × digit i + digit i+1 (at most 99: no carries between bytes).
    let pairs = v * 10 + (v >> 8);
    let (h, m, s) = ((pairs & 0xFF) as u32, ((pairs >> 24) & 0xFF) as u32, ((pairs >> 48) & 0xFF) as u32);
    if h < 24 && m < 60 && s < 60 { Some(h * 3600 + m * 60 + s) } else { None }
}

/// The calendar day and trading day of one tick after the exchange's rules are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickDays {
    /// The trading day the tick belongs to.
    pub trading: Date,
    /// The calendar (China local) day on which the tick happened.
    pub calendar: Date,
    /// The calendar day was derived (DCE night), not taken from ActionDay.
    pub derived_calendar: bool,
}

/// Applies the exchange's TradingDay/ActionDay convention to a tick at `secs` past local midnight.
///
/// - SHFE, INE: ActionDay is the calendar day, TradingDay the trading day: both taken as sent.
/// - DCE: both fields carry the trading day, also at night. An evening tick (≥ 18:00) happened on
///   the weekday before the trading day (Friday for a Monday trading day); an after-midnight tick
///   (< 06:00) on the calendar day after that evening. `derived_calendar` is set for both.
/// - CZCE: both fields carry the calendar day. An evening tick belongs to the next weekday after
///   ActionDay; an after-midnight tick to the next weekday after the previous calendar day.
/// - CFFEX, GFEX: day session only; both fields are taken as sent.
#[inline(always)]
pub fn tick_days(exchange: Exchange, trading_day: Date, action_day: Date, secs: u32) -> TickDays {
    let night = !(AFTER_MIDNIGHT_UNTIL_SECS..EVENING_FROM_SECS).contains(&secs);
    if night && matches!(exchange, Exchange::Dce | Exchange::Czce) {
        night_days(exchange, trading_day, action_day, secs)
    } else {
        TickDays { trading: trading_day, calendar: action_day, derived_calendar: false }
    }
}

/// [`tick_days`] with the calendar arithmetic, kept out of line (DCE and CZCE night ticks only).
#[inline(never)]
fn night_days(exchange: Exchange, trading_day: Date, action_day: Date, secs: u32) -> TickDays {
    let night_evening = secs >= EVENING_FROM_SECS;
    let night_morning = secs < AFTER_MIDNIGHT_UNTIL_SECS;
    let as_sent = TickDays { trading: trading_day, calendar: action_day, derived_calendar: false };
    match exchange {
        Exchange::Dce if night_evening => {
            TickDays { trading: trading_day, calendar: trading_day.prev_weekday(), derived_calendar: true }
        }
        Exchange::Dce if night_morning => TickDays {
            trading: trading_day,
            calendar: Date::from_days(trading_day.prev_weekday().days + 1),
            derived_calendar: true,
        },
        Exchange::Czce if night_evening => TickDays { trading: action_day.next_weekday(), ..as_sent },
        Exchange::Czce if night_morning => {
            TickDays { trading: Date::from_days(action_day.days - 1).next_weekday(), ..as_sent }
        }
        _ => as_sent,
    }
}

/// UTC nanoseconds of a China-local calendar day, second of day and millisecond.
pub const fn utc_ns(calendar: Date, secs: u32, millis: u32) -> i64 {
    let utc_secs = calendar.days * DAY_SECS + secs as i64 - CST_OFFSET_SECS;
    (utc_secs * 1000 + millis as i64) * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        parse_date(text).unwrap()
    }

    #[test]
    fn civil_days_match_known_epoch_offsets() {
        // Expected values from `date -u -d <day> +%s` / 86400.
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(2025, 5, 9), 20_217);
        assert_eq!(days_from_civil(2025, 6, 2), 20_241);
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "round trip of {days}");
        }
    }

    #[test]
    fn weekdays_and_neighbours() {
        assert_eq!(date("20250509").weekday(), 4, "2025-05-09 is a Friday");
        assert_eq!(date("20250512").weekday(), 0, "2025-05-12 is a Monday");
        assert_eq!(date("20250512").prev_weekday().ymd, 20250509);
        assert_eq!(date("20250511").prev_weekday().ymd, 20250509, "Sunday → Friday");
        assert_eq!(date("20250514").prev_weekday().ymd, 20250513);
        assert_eq!(date("20250509").next_weekday().ymd, 20250512, "Friday → Monday");
        assert_eq!(date("20250510").next_weekday().ymd, 20250512, "Saturday → Monday");
        assert_eq!(date("20250602").prev_weekday().ymd, 20250530, "across a month end");
        assert_eq!(date("20251231").next_weekday().ymd, 20260101, "across a year end");
    }

    #[test]
    fn dates_are_validated() {
        assert_eq!(date("20240229").ymd, 20240229);
        for bad in ["20250229", "20250231", "20251301", "20250100", "2025051", "202505120", "2025-5-1", "", "19000101"]
        {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn times_are_validated() {
        assert_eq!(parse_hms("00:00:00"), Some(0));
        assert_eq!(parse_hms("21:30:05"), Some(21 * 3600 + 30 * 60 + 5));
        assert_eq!(parse_hms("23:59:59"), Some(86_399));
        for bad in ["25:61:00", "24:00:00", "12:60:00", "12:00:60", "9:00:00", "09:00", "09-00-00", "09:00:0a", ""] {
            assert_eq!(parse_hms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn word_parse_of_times_agrees_with_the_byte_parse() {
        let word = |b: &[u8; 8]| u64::from_le_bytes(*b);
        for h in 0..30u32 {
            for m in (0..70u32).step_by(7) {
                for s in [0u32, 9, 10, 59, 60, 99] {
                    let text = format!("{h:02}:{m:02}:{s:02}");
                    let b: [u8; 8] = text.as_bytes().try_into().unwrap();
                    assert_eq!(parse_hms_word(word(&b)), parse_hms_bytes(&b), "{text}");
                }
            }
        }
        // Every single-byte corruption of a valid time, at every position.
        let good = *b"21:30:05";
        for i in 0..8 {
            for x in 0..=255u8 {
                let mut b = good;
                b[i] = x;
                assert_eq!(parse_hms_word(word(&b)), parse_hms_bytes(&b), "{b:?}");
            }
        }
    }

    #[test]
    fn exchange_day_rules() {
        let h = |hh: u32, mm: u32| hh * 3600 + mm * 60;
        // DCE Friday night: both fields carry Monday 20250512.
        let d = tick_days(Exchange::Dce, date("20250512"), date("20250512"), h(21, 30));
        assert_eq!((d.trading.ymd, d.calendar.ymd, d.derived_calendar), (20250512, 20250509, true));
        let d = tick_days(Exchange::Dce, date("20250512"), date("20250512"), h(0, 30));
        assert_eq!((d.trading.ymd, d.calendar.ymd, d.derived_calendar), (20250512, 20250510, true));
        let d = tick_days(Exchange::Dce, date("20250512"), date("20250512"), h(9, 30));
        assert_eq!((d.trading.ymd, d.calendar.ymd, d.derived_calendar), (20250512, 20250512, false));
        // CZCE: both fields carry the calendar day.
        let d = tick_days(Exchange::Czce, date("20250509"), date("20250509"), h(21, 5));
        assert_eq!((d.trading.ymd, d.calendar.ymd, d.derived_calendar), (20250512, 20250509, false));
        let d = tick_days(Exchange::Czce, date("20250514"), date("20250514"), h(22, 0));
        assert_eq!((d.trading.ymd, d.calendar.ymd), (20250515, 20250514));
        let d = tick_days(Exchange::Czce, date("20250510"), date("20250510"), h(0, 30));
        assert_eq!((d.trading.ymd, d.calendar.ymd), (20250512, 20250510));
        // SHFE after midnight on Saturday: as sent.
        let d = tick_days(Exchange::Shfe, date("20250512"), date("20250510"), h(1, 0));
        assert_eq!((d.trading.ymd, d.calendar.ymd, d.derived_calendar), (20250512, 20250510, false));
    }

    #[test]
    fn utc_conversion_subtracts_eight_hours() {
        // 2025-05-09 21:30:00.500 CST = 2025-05-09T13:30:00.500Z = 1746797400.5 s (`date -u -d`).
        assert_eq!(utc_ns(date("20250509"), 21 * 3600 + 30 * 60, 500), 1_746_797_400_500_000_000);
        // Local 00:00 is the previous UTC day's 16:00.
        assert_eq!(utc_ns(Date::from_days(1), 0, 0), 16 * 3600 * 1_000_000_000);
    }
}
