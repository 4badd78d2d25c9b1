//! Trading sessions in China time: is an exchange in session at a given instant, and since when.
//! China Standard Time is UTC+8 all year (no daylight saving since 1991), so local time is plain
//! arithmetic on UTC nanoseconds.

use qilin_market::{Calendar, Date, date::DAY_NS};
use qilin_shm::Exchange;

/// Seconds China time is ahead of UTC.
const CHINA_OFFSET_NS: i64 = qilin_market::date::CST_OFFSET_SECS * 1_000_000_000;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// Segments opening at or after this minute of the day are night segments (the evening's).
const EVENING_FROM_MIN: u32 = 18 * 60;

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

/// Every session segment, and the trading calendar that says which weekdays are holidays and which
/// evenings hold no night session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    segments: Vec<Segment>,
    calendar: Calendar,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule::new(Vec::new(), Calendar::weekdays_only())
    }
}

impl Schedule {
    /// A schedule of `segments`: a segment starts on the weekdays of its mask, except on an
    /// exchange holiday of `calendar` (a day segment) or an evening without a night session (a
    /// segment opening at 18:00 or later).
    pub fn new(segments: Vec<Segment>, calendar: Calendar) -> Schedule {
        Schedule { segments, calendar }
    }

    /// If `exchange` is in session at `now_ns` (UTC ns), for how long it has been (ns).
    pub fn open_since(&self, exchange: Exchange, now_ns: i64) -> Option<i64> {
        self.segments
            .iter()
            .filter(|s| s.exchanges.contains(&exchange))
            .filter_map(|s| self.segment_open(s, now_ns))
            .max()
    }

    /// Whether segment `s` starts on China calendar day `day`.
    fn starts_on(&self, s: &Segment, day: i64) -> bool {
        let date = Date::from_days(day);
        if s.days & (1 << date.weekday()) == 0 {
            return false;
        }
        // Weekends are the mask's business; on weekdays the calendar knows holidays and the
        // evenings before them.
        if !date.is_weekday() {
            return true;
        }
        if s.start_min >= EVENING_FROM_MIN {
            self.calendar.has_night_session(date)
        } else {
            self.calendar.is_trading_day(date)
        }
    }

    fn segment_open(&self, s: &Segment, now_ns: i64) -> Option<i64> {
        let local_ns = now_ns + CHINA_OFFSET_NS;
        let day = local_ns.div_euclid(DAY_NS);
        let in_day_ns = local_ns.rem_euclid(DAY_NS);
        let start_ns = i64::from(s.start_min) * 60_000_000_000;
        let end_ns = i64::from(s.end_min) * 60_000_000_000;
        if s.end_min > s.start_min {
            (self.starts_on(s, day) && (start_ns..end_ns).contains(&in_day_ns)).then(|| in_day_ns - start_ns)
        } else if in_day_ns >= start_ns {
            // The evening part of a segment crossing midnight.
            self.starts_on(s, day).then(|| in_day_ns - start_ns)
        } else if in_day_ns < end_ns {
            // The morning part: it started the evening before.
            self.starts_on(s, day - 1).then(|| in_day_ns + DAY_NS - start_ns)
        } else {
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// UTC ns of a China local time.
    fn china(date: &str, hh: i64, mm: i64) -> i64 {
        qilin_market::date::utc_ns(Date::parse_iso(date).unwrap(), (hh * 3600 + mm * 60) as u32, 0)
    }

    fn shipped_calendar() -> Calendar {
        Calendar::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/calendar")).unwrap()
    }

    fn schedule(times: &[&str], days: &[u32], calendar: Calendar) -> Schedule {
        let segments = times
            .iter()
            .map(|t| {
                let (start_min, end_min) = parse_segment(t).unwrap();
                let days = days.iter().fold(0u8, |m, d| m | 1 << d);
                Segment { exchanges: vec![Exchange::Shfe], days, start_min, end_min }
            })
            .collect();
        Schedule::new(segments, calendar)
    }

    #[test]
    fn day_names() {
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
        let s = schedule(&["09:00-10:15"], &[0, 1, 2, 3, 4], Calendar::weekdays_only());
        // Monday 2026-05-11 09:05 China = 01:05 UTC.
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-11", 9, 5)), Some(5 * 60_000_000_000));
        assert_eq!(s.open_since(Exchange::Dce, china("2026-05-11", 9, 5)), None, "other exchange");
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-11", 8, 59)), None);
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-11", 10, 15)), None, "end is exclusive");
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-09", 9, 5)), None, "Saturday");
    }

    #[test]
    fn night_segments_cross_midnight_and_belong_to_their_start_day() {
        let s = schedule(&["21:00-02:30"], &[0, 1, 2, 3, 4], Calendar::weekdays_only());
        // Friday night runs into Saturday morning.
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-09", 1, 0)), Some(4 * 3_600_000_000_000));
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-08", 21, 30)), Some(30 * 60_000_000_000));
        // Sunday night does not start; Monday morning has no tail of it.
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-10", 22, 0)), None);
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-11", 1, 0)), None);
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-11", 2, 30)), None);
    }

    #[test]
    fn the_trading_calendar_closes_holidays_and_the_evenings_before_them() {
        let s = schedule(&["09:00-10:15", "21:00-02:30"], &[0, 1, 2, 3, 4], shipped_calendar());
        // Labour Day 2026: Friday 1 May to Tuesday 5 May. Thursday 30 April holds no night session.
        assert!(s.open_since(Exchange::Shfe, china("2026-04-30", 9, 30)).is_some(), "the last trading day");
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-04-30", 21, 30)), None, "no night before the holiday");
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-01", 1, 0)), None, "so no tail after midnight");
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-04", 9, 30)), None, "Monday 4 May, a holiday");
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-05", 21, 30)), None, "the holiday's evening");
        assert!(s.open_since(Exchange::Shfe, china("2026-05-06", 9, 30)).is_some(), "Wednesday trades again");
        assert!(s.open_since(Exchange::Shfe, china("2026-05-06", 21, 30)).is_some());
    }

    #[test]
    fn whole_day() {
        let s = schedule(&["00:00-24:00"], &[0, 1, 2, 3, 4, 5, 6], shipped_calendar());
        assert_eq!(s.open_since(Exchange::Shfe, china("2026-05-10", 0, 0)), Some(0), "a Sunday, in the mask");
        assert!(s.open_since(Exchange::Shfe, china("2026-05-10", 23, 59)).is_some());
    }
}
