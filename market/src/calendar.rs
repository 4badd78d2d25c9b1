//! The exchanges' trading calendar: which days trade, which evenings hold a night session, and the
//! TradingDay/ActionDay conventions that depend on them. Read from `config/calendar/YYYY.toml`
//! (format and upkeep: docs/CALENDAR.md); one calendar serves all six exchanges.
//!
//! A day of a year with no file is answered by the weekday rule (Monday–Friday trade, every
//! weekday evening holds a night session) and [`Calendar::covers`] says so, so the caller can warn
//! and raise its status flag: never a silent guess.
//!
//! Lookups are a bounds check and one byte load (the hot path asks on every tick).

use std::path::{Path, PathBuf};

use qilin_shm::Exchange;
use serde::Deserialize;

use crate::{
    date::{AFTER_MIDNIGHT_UNTIL_SECS, Date, EVENING_FROM_SECS},
    products::ProductSpec,
};

/// The calendar directory's default location, relative to the working directory.
pub const DEFAULT_DIR: &str = "config/calendar";

const COVERED: u8 = 1;
/// The day session is held.
const TRADING: u8 = 2;
/// The evening holds the night session.
const NIGHT: u8 = 4;
/// The previous evening held the night session (its after-midnight part falls on this day).
const NIGHT_BEFORE: u8 = 8;

/// Trading days and night sessions, for the years whose files were loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    /// Days since 1970-01-01 of `flags[0]`.
    first: i64,
    /// Per day from `first`: `COVERED | TRADING | NIGHT | NIGHT_BEFORE` bits.
    flags: Vec<u8>,
    /// The years loaded, ascending.
    years: Vec<u32>,
    /// Where they came from (`None`: the weekday rule only).
    dir: Option<PathBuf>,
}

/// Why the calendar could not be loaded. Every problem names its file and, where it has one, its date.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// The directory could not be read.
    #[error("reading calendar directory {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more files are wrong; every problem is listed.
    #[error("calendar {} has {} problem(s):\n  {}", dir.display(), problems.len(), problems.join("\n  "))]
    Invalid {
        /// The directory.
        dir: PathBuf,
        /// One line per problem, each starting with the file.
        problems: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: u32,
    #[serde(default)]
    no_night_session: Vec<String>,
    #[serde(rename = "holiday", default)]
    holidays: Vec<Holiday>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Holiday {
    date: String,
    name: String,
}

struct Year {
    file: PathBuf,
    year: u32,
    holidays: Vec<Date>,
    no_night: Vec<Date>,
}

impl Calendar {
    /// No files: every weekday trades and every weekday evening holds a night session.
    pub fn weekdays_only() -> Calendar {
        Calendar { first: 0, flags: Vec::new(), years: Vec::new(), dir: None }
    }

    /// Loads every `YYYY.toml` in `dir`, checking each (year matches the name, dates in the year,
    /// holidays on weekdays, in order and once, evenings without a night session on trading days
    /// and exactly those whose next trading day is not the next weekday, where the next trading day
    /// is known). Other files are ignored; an empty directory is a calendar of no years.
    pub fn load_dir(dir: &Path) -> Result<Calendar, CalendarError> {
        let dir_error = |source| CalendarError::Dir { dir: dir.to_owned(), source };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(dir_error)? {
            let path = entry.map_err(dir_error)?.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if path.extension().is_some_and(|e| e == "toml")
                && stem.len() == 4
                && stem.bytes().all(|b| b.is_ascii_digit())
            {
                files.push((stem.parse::<u32>().unwrap_or(0), path));
            }
        }
        files.sort();
        let mut problems = Vec::new();
        let mut years = Vec::new();
        for (named, path) in files {
            match read_year(&path, named) {
                Ok(year) => years.push(year),
                Err(mut more) => problems.append(&mut more),
            }
        }
        let calendar = Calendar::build(&years, Some(dir.to_owned()));
        for year in &years {
            calendar.check_nights(year, &mut problems);
        }
        if problems.is_empty() { Ok(calendar) } else { Err(CalendarError::Invalid { dir: dir.to_owned(), problems }) }
    }

    /// `explicit` if given (it must load); else [`DEFAULT_DIR`] if it exists; else the weekday rule.
    pub fn find(explicit: Option<&Path>) -> Result<Calendar, CalendarError> {
        match explicit {
            Some(dir) => Calendar::load_dir(dir),
            None if Path::new(DEFAULT_DIR).is_dir() => Calendar::load_dir(Path::new(DEFAULT_DIR)),
            None => Ok(Calendar::weekdays_only()),
        }
    }

    fn build(years: &[Year], dir: Option<PathBuf>) -> Calendar {
        let (Some(low), Some(high)) = (years.first(), years.last()) else {
            return Calendar { dir, ..Calendar::weekdays_only() };
        };
        let first = Date::from_ymd(low.year * 10_000 + 101).map_or(0, |d| d.days);
        let end = Date::from_ymd((high.year + 1) * 10_000 + 101).map_or(first, |d| d.days);
        let mut flags = vec![0u8; (end - first) as usize];
        for year in years {
            for date in Date::days_of_year(year.year) {
                let trading = date.is_weekday() && year.holidays.binary_search(&date).is_err();
                let night = trading && !year.no_night.contains(&date);
                flags[(date.days - first) as usize] =
                    COVERED | if trading { TRADING } else { 0 } | if night { NIGHT } else { 0 };
            }
        }
        // The after-midnight part of a night session falls on the next calendar day: keep its
        // answer beside that day's, so `trades_at` reads one byte. The day before the first file
        // follows the weekday rule.
        for i in 0..flags.len() {
            let before = if i == 0 { Date::from_days(first - 1).is_weekday() } else { flags[i - 1] & NIGHT != 0 };
            if before {
                flags[i] |= NIGHT_BEFORE;
            }
        }
        Calendar { first, flags, years: years.iter().map(|y| y.year).collect(), dir }
    }

    /// Checks a year's `no_night_session` list against the rule wherever the next trading day is known.
    fn check_nights(&self, year: &Year, problems: &mut Vec<String>) {
        for date in Date::days_of_year(year.year) {
            if !self.is_trading_day(date) {
                continue;
            }
            let next = self.next_trading_day(date);
            if !(self.covers(date.next_weekday()) && self.covers(next)) {
                continue; // the next trading day lies in a year with no file: the list is taken as written
            }
            let rule = next == date.next_weekday();
            let listed = !year.no_night.contains(&date);
            if rule != listed {
                let why = if rule {
                    format!("its next trading day {} is the next weekday, so the night session is held", next.iso())
                } else {
                    format!("its next trading day is {}, so no night session is held (add it)", next.iso())
                };
                let verb = if listed { "is not" } else { "is" };
                problems.push(format!(
                    "{}: no_night_session {verb} listing {}, but {why}",
                    year.file.display(),
                    date.iso()
                ));
            }
        }
    }

    /// The years loaded, ascending.
    pub fn years(&self) -> &[u32] {
        &self.years
    }

    /// The years the feed needs on `today` (its year, and in December the next) that have no file.
    pub fn missing_years(&self, today: Date) -> Vec<u32> {
        let mut needed = vec![today.year()];
        if today.ymd / 100 % 100 == 12 {
            needed.push(today.year() + 1);
        }
        needed.retain(|year| !self.years.contains(year));
        needed
    }

    /// The directory loaded (`None` for the weekday rule).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    #[inline(always)]
    fn flags(&self, date: Date) -> u8 {
        let i = date.days.wrapping_sub(self.first) as u64;
        if i < self.flags.len() as u64 { self.flags[i as usize] } else { 0 }
    }

    /// Whether a file covers `date`'s year (otherwise the answers are the weekday rule's).
    #[inline(always)]
    pub fn covers(&self, date: Date) -> bool {
        self.flags(date) & COVERED != 0
    }

    /// Whether the exchanges trade on `date` (its day session).
    #[inline(always)]
    pub fn is_trading_day(&self, date: Date) -> bool {
        let f = self.flags(date);
        if f & COVERED != 0 { f & TRADING != 0 } else { date.is_weekday() }
    }

    /// Whether the evening of `date` holds the night session (of the next trading day).
    #[inline(always)]
    pub fn has_night_session(&self, date: Date) -> bool {
        let f = self.flags(date);
        if f & COVERED != 0 { f & NIGHT != 0 } else { date.is_weekday() }
    }

    /// Whether a tick at local millisecond `ms` of calendar day `date` can be in a session: a day
    /// session on a trading day, the evening part of a night session on an evening that holds one,
    /// or its after-midnight part following such an evening. Time of day within the day is the
    /// product's question; [`Calendar::in_session`] asks both.
    #[inline(always)]
    pub fn trades_at(&self, date: Date, ms: u32) -> bool {
        let bit = if ms >= EVENING_FROM_SECS * 1000 {
            NIGHT
        } else if ms < AFTER_MIDNIGHT_UNTIL_SECS * 1000 {
            NIGHT_BEFORE
        } else {
            TRADING
        };
        let i = date.days.wrapping_sub(self.first) as u64;
        if i < self.flags.len() as u64 { self.flags[i as usize] & bit != 0 } else { self.trades_at_uncovered(date, ms) }
    }

    /// Whether a tick of `spec`'s product at local millisecond `ms` of calendar day `date` is in
    /// session: inside one of the product's sessions ([`ProductSpec::in_session`]) on a day or
    /// evening that holds it ([`Calendar::trades_at`]). Outside, a tick is a stale snapshot.
    #[inline(always)]
    pub fn in_session(&self, spec: &ProductSpec, date: Date, ms: u32) -> bool {
        spec.in_session(ms) && self.trades_at(date, ms)
    }

    /// [`Calendar::trades_at`] for a day no file covers: the weekday rule.
    #[cold]
    fn trades_at_uncovered(&self, date: Date, ms: u32) -> bool {
        if ms >= EVENING_FROM_SECS * 1000 {
            self.has_night_session(date)
        } else if ms < AFTER_MIDNIGHT_UNTIL_SECS * 1000 {
            self.has_night_session(date.add_days(-1))
        } else {
            self.is_trading_day(date)
        }
    }

    /// The first trading day strictly after `date`.
    pub fn next_trading_day(&self, date: Date) -> Date {
        let mut d = date.add_days(1);
        for _ in 0..60 {
            if self.is_trading_day(d) {
                return d;
            }
            d = d.add_days(1);
        }
        date.next_weekday() // a year of holidays: not a real calendar, but no endless loop
    }

    /// The last trading day strictly before `date`.
    pub fn prev_trading_day(&self, date: Date) -> Date {
        let mut d = date.add_days(-1);
        for _ in 0..60 {
            if self.is_trading_day(d) {
                return d;
            }
            d = d.add_days(-1);
        }
        date.prev_weekday()
    }

    /// The exchange's TradingDay/ActionDay convention applied to a tick at `secs` past local
    /// midnight, with its TradingDay and ActionDay (`None` when the source has none: derived as on DCE).
    ///
    /// - SHFE, INE: ActionDay is the calendar day, TradingDay the trading day: both taken as sent.
    /// - DCE: both fields carry the trading day, also at night. An evening tick (≥ 18:00) happened
    ///   on the evening of the previous trading day (Friday for a Monday, the last day before a
    ///   holiday after it); an after-midnight tick (< 06:00) on the calendar day after that
    ///   evening. `derived_calendar` is set for both.
    /// - CZCE: both fields carry the calendar day. An evening tick belongs to the next trading day
    ///   after ActionDay; an after-midnight tick to the next trading day after the previous
    ///   calendar day.
    /// - CFFEX, GFEX: day session only; both fields are taken as sent.
    #[inline(always)]
    pub fn tick_days(&self, exchange: Exchange, trading_day: Date, action_day: Option<Date>, secs: u32) -> TickDays {
        let night = !(AFTER_MIDNIGHT_UNTIL_SECS..EVENING_FROM_SECS).contains(&secs);
        match action_day {
            Some(action) if !(night && matches!(exchange, Exchange::Dce | Exchange::Czce)) => {
                TickDays { trading: trading_day, calendar: action, derived_calendar: false }
            }
            _ => self.night_days(exchange, trading_day, action_day, secs),
        }
    }

    /// [`Calendar::tick_days`] with the calendar arithmetic, kept out of line (DCE and CZCE night
    /// ticks, and sources without an ActionDay).
    #[inline(never)]
    fn night_days(&self, exchange: Exchange, trading_day: Date, action_day: Option<Date>, secs: u32) -> TickDays {
        let evening = secs >= EVENING_FROM_SECS;
        let after_midnight = secs < AFTER_MIDNIGHT_UNTIL_SECS;
        // CZCE's TradingDay carries the calendar day too: without an ActionDay it is one.
        let action_day = if exchange == Exchange::Czce { action_day.or(Some(trading_day)) } else { action_day };
        let derived = |trading: Date| {
            let calendar = if evening {
                self.prev_trading_day(trading)
            } else if after_midnight {
                self.prev_trading_day(trading).add_days(1)
            } else {
                trading
            };
            TickDays { trading, calendar, derived_calendar: true }
        };
        match (exchange, action_day) {
            (Exchange::Dce, _) if evening || after_midnight => derived(trading_day),
            (Exchange::Czce, Some(action)) if evening => {
                TickDays { trading: self.next_trading_day(action), calendar: action, derived_calendar: false }
            }
            (Exchange::Czce, Some(action)) if after_midnight => TickDays {
                trading: self.next_trading_day(action.add_days(-1)),
                calendar: action,
                derived_calendar: false,
            },
            (_, Some(action)) => TickDays { trading: trading_day, calendar: action, derived_calendar: false },
            (_, None) => derived(trading_day),
        }
    }
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

fn read_year(path: &Path, named: u32) -> Result<Year, Vec<String>> {
    let at = |what: String| format!("{}: {what}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| vec![at(format!("reading: {e}"))])?;
    let file: YearFile = toml::from_str(&text).map_err(|e| vec![at(e.to_string())])?;
    let mut problems = Vec::new();
    if file.year != named {
        problems.push(at(format!("year = {} but the file is named {named}.toml", file.year)));
    }
    let in_year = |key: &str, text: &str, problems: &mut Vec<String>| match Date::parse_iso(text) {
        Some(d) if d.year() == file.year => Some(d),
        Some(_) => {
            problems.push(at(format!("{key} {text:?} is not in {}", file.year)));
            None
        }
        None => {
            problems.push(at(format!("{key} {text:?} is not a date YYYY-MM-DD")));
            None
        }
    };
    let mut holidays: Vec<Date> = Vec::new();
    for h in &file.holidays {
        let Some(date) = in_year("holiday", &h.date, &mut problems) else { continue };
        if !date.is_weekday() {
            problems.push(at(format!("holiday {} ({}) is a weekend day: list only weekdays", h.date, h.name)));
        } else if holidays.last().is_some_and(|last| *last >= date) {
            problems.push(at(format!("holiday {} ({}) is out of date order or listed twice", h.date, h.name)));
        } else {
            holidays.push(date);
        }
    }
    let mut no_night = Vec::new();
    for text in &file.no_night_session {
        let Some(date) = in_year("no_night_session", text, &mut problems) else { continue };
        if !date.is_weekday() || holidays.binary_search(&date).is_ok() {
            problems.push(at(format!("no_night_session {text} is not a trading day")));
        } else {
            no_night.push(date);
        }
    }
    if problems.is_empty() {
        Ok(Year { file: path.to_owned(), year: file.year, holidays, no_night })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
pub(crate) mod tests;
