//! China-time dates, the one implementation the feed uses: civil-calendar arithmetic (days since
//! 1970-01-01, Howard Hinnant's algorithms, written out rather than pulling in a date crate for
//! three functions), CTP's `YYYYMMDD` and `HH:MM:SS` texts, China Standard Time and RFC 3339 UTC
//! stamps.
//!
//! China Standard Time is UTC+8 all year (no daylight saving since 1991), so a local time converts
//! to UTC by subtracting eight hours.
//!
//! Which days are trading days is not known here: that is the trading calendar's
//! ([`crate::calendar`]).

/// Seconds in a day.
pub const DAY_SECS: i64 = 86_400;
/// Milliseconds in a day.
pub const DAY_MS: u32 = 86_400_000;
/// Nanoseconds in a day.
pub const DAY_NS: i64 = DAY_SECS * 1_000_000_000;
/// China Standard Time offset from UTC, seconds (UTC+8, no DST).
pub const CST_OFFSET_SECS: i64 = 8 * 3600;
/// Local second-of-day at and after which a tick belongs to the evening part of a night session.
pub const EVENING_FROM_SECS: u32 = 18 * 3600;
/// Local second-of-day before which a tick belongs to the after-midnight part of a night session.
pub const AFTER_MIDNIGHT_UNTIL_SECS: u32 = 6 * 3600;
/// Years a CTP date may name (TradingDay, ActionDay): anything else is a malformed field.
pub const CTP_YEARS: std::ops::RangeInclusive<u32> = 1990..=2199;

/// A calendar date: days since 1970-01-01 and the same date as `YYYYMMDD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Days since 1970-01-01 (negative before).
    pub days: i64,
    /// The date as `YYYYMMDD`.
    pub ymd: u32,
}

impl Date {
    /// The date `days` after 1970-01-01.
    #[inline]
    pub const fn from_days(days: i64) -> Date {
        let (y, m, d) = civil_from_days(days);
        Date { days, ymd: y as u32 * 10_000 + m * 100 + d }
    }

    /// A `YYYYMMDD` number naming a real date in 1900..=9999; `None` otherwise.
    pub const fn from_ymd(ymd: u32) -> Option<Date> {
        let (y, m, d) = (ymd / 10_000, ymd / 100 % 100, ymd % 100);
        if y < 1900 || y > 9999 || m < 1 || m > 12 || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(Date { days: days_from_civil(y as i64, m, d), ymd })
    }

    /// Parses CTP's `YYYYMMDD`: exactly eight digits naming a real date in [`CTP_YEARS`].
    pub fn parse(text: &str) -> Option<Date> {
        Date::parse_bytes(text.as_bytes())
    }

    /// [`Date::parse`] on bytes.
    #[inline]
    pub fn parse_bytes(text: &[u8]) -> Option<Date> {
        let ymd = digits::<8>(text)?;
        if !CTP_YEARS.contains(&(ymd / 10_000)) {
            return None;
        }
        Date::from_ymd(ymd)
    }

    /// Parses `YYYY-MM-DD` (the calendar files' and operators' form) naming a real date.
    pub fn parse_iso(text: &str) -> Option<Date> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let (y, m, d) = (digits::<4>(&b[0..4])?, digits::<2>(&b[5..7])?, digits::<2>(&b[8..10])?);
        Date::from_ymd(y * 10_000 + m * 100 + d)
    }

    /// `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year(), self.ymd / 100 % 100, self.ymd % 100)
    }

    /// The year.
    #[inline]
    pub const fn year(self) -> u32 {
        self.ymd / 10_000
    }

    /// The date `n` days later (earlier if negative).
    #[inline]
    pub const fn add_days(self, n: i64) -> Date {
        Date::from_days(self.days + n)
    }

    /// Day of the week, Monday = 0 … Sunday = 6 (1970-01-01 was a Thursday).
    #[inline]
    pub const fn weekday(self) -> u32 {
        (self.days + 3).rem_euclid(7) as u32
    }

    /// Monday to Friday.
    #[inline]
    pub const fn is_weekday(self) -> bool {
        self.weekday() < 5
    }

    /// The closest Monday–Friday strictly before this date.
    #[inline]
    pub const fn prev_weekday(self) -> Date {
        let back = match self.weekday() {
            0 => 3, // Monday → Friday
            6 => 2, // Sunday → Friday
            _ => 1,
        };
        Date::from_days(self.days - back)
    }

    /// The closest Monday–Friday strictly after this date.
    #[inline]
    pub const fn next_weekday(self) -> Date {
        let ahead = match self.weekday() {
            4 => 3, // Friday → Monday
            5 => 2, // Saturday → Monday
            _ => 1,
        };
        Date::from_days(self.days + ahead)
    }

    /// The China-local calendar day of a UTC nanosecond time.
    #[inline]
    pub const fn china_of(utc_ns: i64) -> Date {
        Date::from_days(china_days(utc_ns))
    }

    /// Every date of `year` (1900..=9999), in order.
    pub fn days_of_year(year: u32) -> impl Iterator<Item = Date> {
        let first = Date::from_ymd(year * 10_000 + 101).map_or(0, |d| d.days);
        let end = Date::from_ymd((year + 1) * 10_000 + 101).map_or(first, |d| d.days);
        (first..end).map(Date::from_days)
    }
}

impl std::fmt::Display for Date {
    /// `YYYYMMDD`, as CTP writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08}", self.ymd)
    }
}

/// Days from 1970-01-01 to the proleptic-Gregorian date `y-m-d` (Howard Hinnant's algorithm).
#[inline]
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
#[inline]
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

#[inline]
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
/// lowest), without a loop: the same answer for every word (tested against it). The hot path's form.
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

/// Parses `YYYY-MM-DD HH:MM:SS` (China local time) into the date and milliseconds since midnight.
pub fn parse_local_datetime(text: &str) -> Option<(Date, u32)> {
    let (date, clock) = text.trim().split_once(' ')?;
    Some((Date::parse_iso(date)?, parse_hms(clock)? * 1000))
}

/// `HH:MM:SS` and milliseconds from milliseconds since local midnight.
pub fn hms_text(ms: u32) -> (String, u32) {
    let s = ms / 1000;
    (format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60), ms % 1000)
}

/// UTC nanoseconds of a China-local calendar day, second of day and millisecond.
#[inline]
pub const fn utc_ns(calendar: Date, secs: u32, millis: u32) -> i64 {
    let utc_secs = calendar.days * DAY_SECS + secs as i64 - CST_OFFSET_SECS;
    (utc_secs * 1000 + millis as i64) * 1_000_000
}

/// Days since 1970-01-01 of the China-local calendar day of a UTC nanosecond time (without the
/// civil date: what a once-a-day check compares).
#[inline]
pub const fn china_days(utc_ns: i64) -> i64 {
    local_ms(utc_ns).div_euclid(DAY_MS as i64)
}

/// China-local milliseconds since 1970-01-01 00:00 local of a UTC nanosecond time.
#[inline]
pub const fn local_ms(utc_ns: i64) -> i64 {
    utc_ns.div_euclid(1_000_000) + CST_OFFSET_SECS * 1000
}

/// RFC 3339 UTC with nanoseconds: `2026-03-02T15:59:59.000000001Z`.
pub fn rfc3339_ns(ns: i64) -> String {
    let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    format!("{}.{nanos:09}Z", rfc3339_stem(secs))
}

/// RFC 3339 UTC to the second: `2026-03-02T15:59:59Z`.
pub fn rfc3339_secs(secs: i64) -> String {
    format!("{}Z", rfc3339_stem(secs))
}

fn rfc3339_stem(secs: i64) -> String {
    let (days, sod) = (secs.div_euclid(DAY_SECS), secs.rem_euclid(DAY_SECS));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap()
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
        assert!(date("20251231").is_weekday() && !date("20260103").is_weekday());
    }

    #[test]
    fn dates_are_validated() {
        assert_eq!(date("20240229").ymd, 20240229);
        for bad in ["20250229", "20250231", "20251301", "20250100", "2025051", "202505120", "2025-5-1", "", "19000101"]
        {
            assert_eq!(Date::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Date::from_ymd(19000101).map(|d| d.ymd), Some(19000101), "the general form takes 1900");
        assert_eq!(Date::parse_iso("2026-02-16"), Some(date("20260216")));
        assert_eq!(date("20260216").iso(), "2026-02-16");
        assert_eq!(date("20260216").to_string(), "20260216");
        for bad in ["2026-2-16", "2026-02-30", "20260216", "2026/02/16", "2026-02-16 "] {
            assert_eq!(Date::parse_iso(bad), None, "{bad:?}");
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
        assert_eq!(hms_text(21 * 3_600_000 + 30 * 60_000 + 5_500), ("21:30:05".to_owned(), 500));
        let local = |t: &str| parse_local_datetime(t).map(|(d, ms)| (d.ymd, ms));
        assert_eq!(local("2025-05-12 09:00:00"), Some((20250512, 32_400_000)));
        assert_eq!(local("2025-05-09 21:30:05"), Some((20250509, 77_405_000)));
        for bad in ["2025-02-30 09:00:00", "2025-05-12 24:00:00", "2025-05-12T09:00:00", "2025-05-12 9:00:00"] {
            assert_eq!(parse_local_datetime(bad), None, "{bad:?}");
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
    fn utc_conversion_subtracts_eight_hours() {
        // 2025-05-09 21:30:00.500 CST = 2025-05-09T13:30:00.500Z = 1746797400.5 s (`date -u -d`).
        assert_eq!(utc_ns(date("20250509"), 21 * 3600 + 30 * 60, 500), 1_746_797_400_500_000_000);
        // Local 00:00 is the previous UTC day's 16:00.
        assert_eq!(utc_ns(Date::from_days(1), 0, 0), 16 * 3600 * 1_000_000_000);
        assert_eq!(local_ms(1_747_011_600_500_000_000).rem_euclid(i64::from(DAY_MS)), 9 * 3_600_000 + 500);
    }

    #[test]
    fn china_dates_and_utc_stamps() {
        // 2026-03-02 15:59:59 UTC is 23:59:59 in Shanghai; a second later it is 2026-03-03 there.
        let ns = 1_772_467_199_000_000_000;
        assert_eq!(Date::china_of(ns).ymd, 20260302);
        assert_eq!(Date::china_of(ns + 1_000_000_000).ymd, 20260303);
        assert_eq!(Date::china_of(0).ymd, 19700101);
        assert_eq!(Date::china_of(951_753_600_000_000_000).ymd, 20000229, "2000-02-29 00:00 in Shanghai");
        assert_eq!(rfc3339_ns(ns + 1), "2026-03-02T15:59:59.000000001Z");
        assert_eq!(rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_ns(1_772_199_000_500_000_000), "2026-02-27T13:30:00.500000000Z");
        assert_eq!(rfc3339_ns(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(rfc3339_ns(4_102_444_799_999_999_999), "2099-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(china_days(ns + 1_000_000_000), date("20260303").days);
        let y2024: Vec<Date> = Date::days_of_year(2024).collect();
        assert_eq!((y2024.len(), y2024[0].ymd, y2024[365].ymd), (366, 20240101, 20241231));
        assert_eq!(Date::days_of_year(2026).count(), 365);
    }
}
