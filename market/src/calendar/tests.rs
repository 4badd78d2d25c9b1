use super::*;

pub(crate) fn shipped() -> Calendar {
    Calendar::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/calendar")).unwrap()
}

fn d(ymd: u32) -> Date {
    Date::from_ymd(ymd).unwrap()
}

fn write_year(dir: &Path, year: u32, text: &str) {
    std::fs::write(dir.join(format!("{year}.toml")), text).unwrap();
}

#[test]
fn shipped_calendar_knows_the_holidays_and_the_evenings_before_them() {
    let c = shipped();
    assert_eq!(c.years(), [2025, 2026]);
    assert!(c.covers(d(20250101)) && c.covers(d(20261231)) && !c.covers(d(20270104)) && !c.covers(d(20241231)));
    // Spring Festival 2026: Monday 16 to Monday 23 February closed; Friday 13th holds no night session.
    for ymd in [20260216, 20260217, 20260218, 20260219, 20260220, 20260223] {
        assert!(!c.is_trading_day(d(ymd)), "{ymd}");
    }
    assert!(c.is_trading_day(d(20260213)) && !c.has_night_session(d(20260213)));
    assert!(c.is_trading_day(d(20260224)) && c.has_night_session(d(20260224)));
    assert_eq!(c.next_trading_day(d(20260213)), d(20260224));
    assert_eq!(c.prev_trading_day(d(20260224)), d(20260213));
    // An ordinary Friday holds the night session of the Monday.
    assert!(c.has_night_session(d(20260306)));
    // 2025-12-31 before New Year's Day 2026: no night session; the next trading day is Monday 5 January.
    assert!(!c.has_night_session(d(20251231)));
    assert_eq!(c.next_trading_day(d(20251231)), d(20260105));
    // Weekends are never trading days, make-up working days included (Saturday 2026-02-14).
    assert!(!c.is_trading_day(d(20260214)) && !c.has_night_session(d(20260214)));
    // 243 trading days in 2025, 242 in 2026.
    let count = |year: u32| Date::days_of_year(year).filter(|x| c.is_trading_day(*x)).count();
    assert_eq!((count(2025), count(2026)), (243, 242));
}

#[test]
fn a_missing_year_is_answered_by_the_weekday_rule_and_said_so() {
    let c = shipped();
    let new_year_2027 = d(20270101); // a Friday and a holiday, but no 2027 file
    assert!(!c.covers(new_year_2027));
    assert!(c.is_trading_day(new_year_2027) && c.has_night_session(new_year_2027));
    assert_eq!(c.missing_years(d(20261203)), [2027], "in December the next year is needed too");
    assert_eq!(c.missing_years(d(20261130)), Vec::<u32>::new());
    assert_eq!(c.missing_years(d(20270105)), [2027]);
    let none = Calendar::weekdays_only();
    assert!(none.years().is_empty() && !none.covers(d(20260216)) && none.is_trading_day(d(20260216)));
}

#[test]
fn trades_at_follows_day_evening_and_after_midnight() {
    let c = shipped();
    let h = |hh: u32| hh * 3_600_000;
    assert!(c.trades_at(d(20260212), h(10)) && c.trades_at(d(20260212), h(21)));
    assert!(c.trades_at(d(20260213), h(1)), "after midnight of Thursday's night session");
    assert!(c.trades_at(d(20260213), h(10)) && !c.trades_at(d(20260213), h(21)), "no night before the holiday");
    assert!(!c.trades_at(d(20260214), h(1)), "Saturday 01:00 after a night that was not held");
    assert!(!c.trades_at(d(20260216), h(10)), "a holiday");
    assert!(!c.trades_at(d(20260307), h(10)), "a Saturday");
    assert!(c.trades_at(d(20260307), h(1)), "Saturday 01:00 after a Friday night session");
}

#[test]
fn exchange_day_rules_across_weekends_and_holidays() {
    let c = shipped();
    let h = |hh: u32, mm: u32| hh * 3600 + mm * 60;
    // DCE Friday night: both fields carry Monday 20250512.
    let t = c.tick_days(Exchange::Dce, d(20250512), Some(d(20250512)), h(21, 30));
    assert_eq!((t.trading.ymd, t.calendar.ymd, t.derived_calendar), (20250512, 20250509, true));
    let t = c.tick_days(Exchange::Dce, d(20250512), Some(d(20250512)), h(0, 30));
    assert_eq!((t.trading.ymd, t.calendar.ymd, t.derived_calendar), (20250512, 20250510, true));
    let t = c.tick_days(Exchange::Dce, d(20250512), Some(d(20250512)), h(9, 30));
    assert_eq!((t.trading.ymd, t.calendar.ymd, t.derived_calendar), (20250512, 20250512, false));
    // DCE after Labour Day 2025 (Thursday 1 to Monday 5 May): the night of trading day Tuesday 6
    // May was the evening of Wednesday 30 April, the previous trading day — not Monday 5 May.
    let t = c.tick_days(Exchange::Dce, d(20250506), Some(d(20250506)), h(21, 5));
    assert_eq!((t.trading.ymd, t.calendar.ymd), (20250506, 20250430));
    // CZCE: both fields carry the calendar day.
    let t = c.tick_days(Exchange::Czce, d(20250509), Some(d(20250509)), h(21, 5));
    assert_eq!((t.trading.ymd, t.calendar.ymd, t.derived_calendar), (20250512, 20250509, false));
    let t = c.tick_days(Exchange::Czce, d(20250514), Some(d(20250514)), h(22, 0));
    assert_eq!((t.trading.ymd, t.calendar.ymd), (20250515, 20250514));
    let t = c.tick_days(Exchange::Czce, d(20250510), Some(d(20250510)), h(0, 30));
    assert_eq!((t.trading.ymd, t.calendar.ymd), (20250512, 20250510));
    // CZCE evening before a Monday holiday (Friday 2026-04-03; Monday 6 April Qingming): Tuesday.
    let t = c.tick_days(Exchange::Czce, d(20260403), Some(d(20260403)), h(21, 0));
    assert_eq!(t.trading.ymd, 20260407);
    // SHFE after midnight on Saturday: as sent. No ActionDay (a CSV): derived.
    let t = c.tick_days(Exchange::Shfe, d(20250512), Some(d(20250510)), h(1, 0));
    assert_eq!((t.trading.ymd, t.calendar.ymd, t.derived_calendar), (20250512, 20250510, false));
    let t = c.tick_days(Exchange::Shfe, d(20250512), None, h(10, 0));
    assert_eq!((t.calendar.ymd, t.derived_calendar), (20250512, true));
    let t = c.tick_days(Exchange::Czce, d(20250509), None, h(21, 0));
    assert_eq!((t.trading.ymd, t.calendar.ymd, t.derived_calendar), (20250512, 20250509, false));
}

#[test]
fn bad_files_name_the_file_and_the_date() {
    let dir = tempfile::tempdir().unwrap();
    write_year(
        dir.path(),
        2026,
        r#"year = 2026
no_night_session = ["2026-02-14", "2026-13-01", "2026-03-05"]
[[holiday]]
date = "2026-02-16"
name = "Spring Festival"
[[holiday]]
date = "2026-02-15"
name = "Spring Festival (a Sunday)"
[[holiday]]
date = "2025-12-31"
name = "wrong year"
"#,
    );
    let err = Calendar::load_dir(dir.path()).unwrap_err();
    let CalendarError::Invalid { problems, .. } = &err else { panic!("{err}") };
    let wanted = [
        "2026-02-15 (Spring Festival (a Sunday)) is a weekend",
        "\"2025-12-31\" is not in 2026",
        "2026-02-14 is not a trading day",
        "\"2026-13-01\" is not a date",
    ];
    assert_eq!(problems.len(), wanted.len(), "{problems:?}");
    for (p, w) in problems.iter().zip(wanted) {
        assert!(p.contains("2026.toml") && p.contains(w), "{p} lacks {w}");
    }
    let dir = tempfile::tempdir().unwrap();
    write_year(dir.path(), 2027, "year = 2026\n");
    let err = Calendar::load_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("2027.toml: year = 2026 but the file is named 2027.toml"), "{err}");
}

#[test]
fn the_night_list_is_checked_against_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    // Qingming 2026 is Monday 6 April: Friday 3 April must be listed; Wednesday 4 March must not.
    write_year(
        dir.path(),
        2026,
        "year = 2026\nno_night_session = [\"2026-03-04\"]\n[[holiday]]\ndate = \"2026-04-06\"\nname = \"Qingming\"\n",
    );
    let err = Calendar::load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("no_night_session is listing 2026-03-04, but its next trading day 2026-03-05 is the next weekday"),
        "{err}"
    );
    assert!(
        err.contains("no_night_session is not listing 2026-04-03, but its next trading day is 2026-04-07"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[test]
fn unreadable_and_unparseable_files_are_reported() {
    let err = Calendar::load_dir(Path::new("/nonexistent/calendar")).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/calendar"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    write_year(dir.path(), 2026, "year = 2026\nholidays = []\n");
    let err = Calendar::load_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("2026.toml") && err.contains("holidays"), "{err}");
}
