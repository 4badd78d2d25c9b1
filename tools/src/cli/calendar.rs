//! `calendar check`: loads the trading calendar (`config/calendar/YYYY.toml`, docs/CALENDAR.md)
//! with every check the core applies, prints what it holds, and says which years the feed will
//! need soon but has no file for.
//!
//! Exit codes: 0 the calendar is valid and covers this year (and, in December, the next);
//! 1 valid but a needed year is missing; 2 the directory or a file is wrong (every problem named).

use std::{path::Path, process::ExitCode};

use qilin_market::{Calendar, Date};
use serde_json::json;

/// Checks the calendar in `dir` (default `config/calendar`) as of `today` (China time).
pub fn check(dir: Option<&Path>, json_out: bool) -> ExitCode {
    let dir = dir.unwrap_or(Path::new(qilin_market::calendar::DEFAULT_DIR));
    let calendar = match Calendar::load_dir(dir) {
        Ok(calendar) => calendar,
        Err(e) => {
            eprintln!("qilinctl: {e}");
            return ExitCode::from(2);
        }
    };
    let missing = calendar.missing_years(Date::china_of(qilin_shm::now_ns()));
    let years: Vec<_> = calendar
        .years()
        .iter()
        .map(|&year| {
            let days: Vec<Date> = Date::days_of_year(year).collect();
            let trading = days.iter().filter(|d| calendar.is_trading_day(**d)).count();
            let holidays: Vec<String> =
                days.iter().filter(|d| d.is_weekday() && !calendar.is_trading_day(**d)).map(|d| d.iso()).collect();
            let no_night: Vec<String> = days
                .iter()
                .filter(|d| calendar.is_trading_day(**d) && !calendar.has_night_session(**d))
                .map(|d| d.iso())
                .collect();
            json!({"year": year, "trading_days": trading, "holidays": holidays, "no_night_session": no_night})
        })
        .collect();
    if json_out {
        println!("{}", json!({"dir": dir.display().to_string(), "years": years, "missing": missing}));
    } else {
        println!("calendar {}: valid", dir.display());
        for y in &years {
            println!(
                "  {}: {} trading days, {} weekday holidays, {} evenings without a night session",
                y["year"],
                y["trading_days"],
                y["holidays"].as_array().map_or(0, Vec::len),
                y["no_night_session"].as_array().map_or(0, Vec::len)
            );
        }
        for year in &missing {
            println!(
                "  {year}: MISSING — add {}/{year}.toml when the exchanges publish it (until then every weekday counts as trading)",
                dir.display()
            );
        }
    }
    if missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
