//! Trading sessions in China time: is an exchange in session at a given instant, and since when.
//! China Standard Time is UTC+8 all year (no daylight saving since 1991), so local time is plain
//! arithmetic on UTC nanoseconds.

use qilin_shm::Exchange;

/// Seconds China time is ahead of UTC.
const CHINA_OFFSET_S: i64 = 8 * 3600;
const DAY_S: i64 = 86_400;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One `HH:MM-HH:MM` segment for some exchanges on some weekdays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Exchanges trading in it.
    pub exchanges: Vec<Exchange>,
    /// Bit `d` set: the segment starts on weekday `d` (0 = Monday).
    pub days: u8,
    /// Start, minutes after China midnight.
    pub start_min: u32,
    /// End, minutes after China midnight (1440 = midnight); at or before the start: the next day.
    pub end_min: u32,
}

/// Every session segment and the holidays on which none starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    segments: Vec<Segment>,
    /// Days since 1970-01-01 (China calendar), sorted.
    holidays: Vec<i64>,
}

impl Schedule {
    /// A schedule of `segments`; no segment starts on a day in `holidays` (days since 1970-01-01).
    pub fn new(segments: Vec<Segment>, mut holidays: Vec<i64>) -> Schedule {
        holidays.sort_unstable();
        Schedule { segments, holidays }
    }

    /// If `exchange` is in session at `now_ns` (UTC ns), for how long it has been (ns).
    pub fn open_since(&self, exchange: Exchange, now_ns: i64) -> Option<i64> {
        self.segments
            .iter()
            .filter(|s| s.exchanges.contains(&exchange))
            .filter_map(|s| self.segment_open(s, now_ns))
            .max()
    }

    fn segment_open(&self, s: &Segment, now_ns: i64) -> Option<i64> {
        let local_ns = now_ns + CHINA_OFFSET_S * 1_000_000_000;
        let day = local_ns.div_euclid(DAY_S * 1_000_000_000);
        let in_day_ns = local_ns.rem_euclid(DAY_S * 1_000_000_000);
        let start_ns = i64::from(s.start_min) * 60_000_000_000;
        let end_ns = i64::from(s.end_min) * 60_000_000_000;
        let starts_on = |d: i64| s.days & (1 << weekday(d)) != 0 && self.holidays.binary_search(&d).is_err();
        if s.end_min > s.start_min {
            (starts_on(day) && (start_ns..end_ns).contains(&in_day_ns)).then(|| in_day_ns - start_ns)
        } else if in_day_ns >= start_ns {
            // The evening part of a segment crossing midnight.
            starts_on(day).then(|| in_day_ns - start_ns)
        } else if in_day_ns < end_ns {
            // The morning part: it started the evening before.
            starts_on(day - 1).then(|| in_day_ns + DAY_S * 1_000_000_000 - start_ns)
        } else {
            None
        }
    }
}

/// Weekday of a day number (days since 1970-01-01, a Thursday): 0 = Monday.
fn weekday(day: i64) -> u32 {
    (day + 3).rem_euclid(7) as u32
}

/// `mon` … `sun` → 0 … 6.
pub fn parse_day(text: &str) -> Option<u32> {
    DAY_NAMES.iter().position(|d| *d == text).map(|d| d as u32)
}

/// `HH:MM` → minutes after midnight; `24:00` is allowed (as an end).
fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

/// `HH:MM-HH:MM` → (start, end) in minutes after midnight.
pub fn parse_segment(text: &str) -> Result<(u32, u32), &'static str> {
    let (start, end) = text.split_once('-').ok_or("not HH:MM-HH:MM")?;
    let (start, end) = (parse_hhmm(start).ok_or("not HH:MM-HH:MM")?, parse_hhmm(end).ok_or("not HH:MM-HH:MM")?);
    if start == 1440 {
        return Err("a segment cannot start at 24:00");
    }
    if start == end {
        return Err("start and end are the same (use 00:00-24:00 for the whole day)");
    }
    Ok((start, end))
}

/// `YYYY-MM-DD` → days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month[m as usize - 1] {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UTC ns of a China local time.
    fn china(date: &str, hh: i64, mm: i64) -> i64 {
        ((parse_date(date).unwrap() * DAY_S + hh * 3600 + mm * 60) - CHINA_OFFSET_S) * 1_000_000_000
    }

    fn schedule(times: &[&str], days: &[u32], holidays: &[&str]) -> Schedule {
        let segments = times
            .iter()
            .map(|t| {
                let (start_min, end_min) = parse_segment(t).unwrap();
                let days = days.iter().fold(0u8, |m, d| m | 1 << d);
                Segment { exchanges: vec![Exchange::Shfe], days, start_min, end_min }
            })
            .collect();
        Schedule::new(segments, holidays.iter().map(|d| parse_date(d).unwrap()).collect())
    }

    #[test]
    fn dates_and_weekdays() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("2024-02-29").map(weekday), Some(3)); // a Thursday
        assert_eq!(parse_date("2026-05-04").map(weekday), Some(0)); // a Monday
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2026-1-01"), None);
        assert_eq!(parse_day("sun"), Some(6));
        assert_eq!(parse_day("Sun"), None);
    }

    #[test]
    fn segments_parse() {
        assert_eq!(parse_segment("09:00-10:15"), Ok((540, 615)));
        assert_eq!(parse_segment("21:00-02:30"), Ok((1260, 150)));
        assert_eq!(parse_segment("00:00-24:00"), Ok((0, 1440)));
        assert!(parse_segment("24:00-01:00").is_err());
        assert!(parse_segment("09:00-09:00").is_err());
        assert!(parse_segment("9:00-10:00").is_err());
        assert!(parse_segment("09:60-10:00").is_err());
    }

    #[test]
    fn day_segments_follow_china_time_and_weekdays() {
        let s = schedule(&["09:00-10:15"], &[0, 1, 2, 3, 4], &[]);
        // Monday 2026-05-04 09:05 China = 01:05 UTC.
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-04", 9, 5)), Some(5 * 60_000_000_000));
        assert_eq!(s.open_since(Exchange::Dce, china("2026-05-04", 9, 5)), None, "other exchange");
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-04", 8, 59)), None);
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-04", 10, 15)), None, "end is exclusive");
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-09", 9, 5)), None, "Saturday");
    }

    #[test]
    fn night_segments_cross_midnight_and_belong_to_their_start_day() {
        let s = schedule(&["21:00-02:30"], &[0, 1, 2, 3, 4], &["2026-05-06"]);
        // Friday night runs into Saturday morning.
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-09", 1, 0)), Some(4 * 3_600_000_000_000));
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-08", 21, 30)), Some(30 * 60_000_000_000));
        // Sunday night does not start; Monday morning has no tail of it.
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-10", 22, 0)), None);
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-11", 1, 0)), None);
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-11", 2, 30)), None);
        // A holiday: its night does not start, the night before it runs into it.
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-06", 21, 30)), None);
        assert!(s.open_since(Exchange::Shfe, china("2026-05-06", 1, 0)).is_some());
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-07", 1, 0)), None);
    }

    #[test]
    fn whole_day() {
        let s = schedule(&["00:00-24:00"], &[0, 1, 2, 3, 4, 5, 6], &[]);
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-10", 0, 0)), Some(0));
        assert!(s.open_since(Exchange::Shfe, china("2026-05-10", 23, 59)).is_some());
    }
}
