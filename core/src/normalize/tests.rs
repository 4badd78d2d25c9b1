//! One test per quirk. Expected instants were computed independently with
//! `date -u -d <UTC time> +%s` (China Standard Time = UTC+8), not with the code under test.

use qilin_shm::{Exchange, Source, TickRecord, quality};

use super::*;
use qilin_market::{Kind, Segment, SessionMap};

use crate::ctp::{RawFields, RawTick};
use zerocopy::{FromBytes, IntoBytes};

const NS: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

fn spec(exchange: Exchange, code: &str, volume_multiple: u32, night: Option<&str>) -> ProductSpec {
    let day_sessions: Vec<Segment> =
        ["09:00-10:15", "10:30-11:30", "13:30-15:00"].map(|s| Segment::parse(s).unwrap()).to_vec();
    let night_session = night.map(|s| Segment::parse(s).unwrap());
    ProductSpec {
        exchange,
        code: code.to_owned(),
        name: String::new(),
        kind: Kind::Future,
        underlying: None,
        price_tick: 1.0,
        volume_multiple,
        session_map: SessionMap::new(&day_sessions, night_session),
        day_sessions,
        night_session,
        instruments: Vec::new(),
        reference_price: 1000.0,
        unknown: false,
    }
}

/// The shipped calendar (2025 and 2026).
fn calendar() -> &'static Calendar {
    static CALENDAR: std::sync::OnceLock<Calendar> = std::sync::OnceLock::new();
    CALENDAR.get_or_init(|| {
        Calendar::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/calendar")).unwrap()
    })
}

fn rb() -> ProductSpec {
    spec(Exchange::Shfe, "rb", 10, Some("21:00-23:00"))
}

fn m() -> ProductSpec {
    spec(Exchange::Dce, "m", 10, Some("21:00-23:00"))
}

fn sr() -> ProductSpec {
    spec(Exchange::Czce, "SR", 10, Some("21:00-23:00"))
}

/// A plausible live tick with every price present.
fn fields(instrument: &str, exchange: &str, trading_day: &str, action_day: &str, time: &str, ms: i32) -> RawFields {
    RawFields {
        trading_day: trading_day.into(),
        instrument_id: instrument.into(),
        exchange_id: exchange.into(),
        exchange_inst_id: instrument.into(),
        last_price: 3101.0,
        pre_settlement_price: 3090.0,
        pre_close_price: 3088.0,
        pre_open_interest: 1_800_000.0,
        open_price: 3095.0,
        highest_price: 3110.0,
        lowest_price: 3080.0,
        volume: 1000,
        turnover: 31_000_000.0,
        open_interest: 1_812_345.0,
        close_price: 3100.0,
        settlement_price: 3099.0,
        upper_limit_price: 3337.0,
        lower_limit_price: 2842.0,
        pre_delta: 0.0,
        curr_delta: 0.0,
        update_time: time.into(),
        update_millisec: ms,
        bid_price: [3100.0, 3099.0, 3098.0, 3097.0, 3096.0],
        bid_volume: [10, 20, 30, 40, 50],
        ask_price: [3101.0, 3102.0, 3103.0, 3104.0, 3105.0],
        ask_volume: [11, 21, 31, 41, 51],
        average_price: 31_000.0,
        action_day: action_day.into(),
        banding_upper_price: 3200.0,
        banding_lower_price: 3000.0,
    }
}

/// Runs `normalize` on the 6.7.x bytes of `f` with the portable price section; where the CPU has
/// AVX2, also with the AVX2 one from the same state, which must give the same result, record and
/// state.
fn run(f: &RawFields, spec: &ProductSpec, state: &mut InstrumentState) -> Result<TickRecord, Reject> {
    let bytes = f.to_v67_bytes();
    let raw = RawTick::parse(&bytes)?;
    let before = *state;
    let mut out = TickRecord::ZERO;
    let result = normalize(Portable, &raw, spec, calendar(), state, 42, Source::Udp, 7, &mut out).map(|()| out);
    if let Some(avx2) = Avx2::detect() {
        let mut avx2_state = before;
        let mut avx2_out = TickRecord::ZERO;
        let avx2_result = normalize(avx2, &raw, spec, calendar(), &mut avx2_state, 42, Source::Udp, 7, &mut avx2_out)
            .map(|()| avx2_out);
        assert_eq!(avx2_result.map(|r| r.as_bytes().to_vec()), result.map(|r| r.as_bytes().to_vec()), "AVX2 section");
        assert_eq!(format!("{avx2_state:?}"), format!("{state:?}"), "AVX2 section's state");
    }
    result
}

fn one(f: &RawFields, spec: &ProductSpec) -> Result<TickRecord, Reject> {
    run(f, spec, &mut InstrumentState::new())
}

#[test]
fn shfe_day_tick_fills_every_field() {
    let mut f = fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 500);
    f.average_price = 31_015.0;
    let bytes = f.to_v67_bytes();
    let raw = RawTick::parse(&bytes).unwrap();
    let mut out = TickRecord::ZERO;
    out.sequence = 99;
    out.publish_ns = -5;
    normalize(
        Portable,
        &raw,
        &rb(),
        calendar(),
        &mut InstrumentState::new(),
        1_747_013_400_600_000_123,
        Source::Backup,
        3,
        &mut out,
    )
    .unwrap();
    assert_eq!((out.sequence, out.publish_ns), (99, -5), "left to the engine and writer");
    // 2025-05-12 09:30:00.500 CST = 2025-05-12T01:30:00.500Z = 1747013400.5 s.
    assert_eq!(out.exchange_time_ns, 1_747_013_400 * NS + 500 * MS);
    assert_eq!(out.receive_ns, 1_747_013_400_600_000_123);
    assert_eq!((out.instrument_index, out.trading_day, out.action_day), (3, 20250512, 20250512));
    assert_eq!(out.update_time_ms, (9 * 3600 + 30 * 60) * 1000 + 500);
    assert_eq!(out.quality, 0, "a normal live tick carries no flag");
    assert_eq!((out.exchange, out.source), (Exchange::Shfe as u8, Source::Backup as u8));
    assert_eq!(out.instrument_id_str(), Some("rb2510"));
    assert!(out.instrument_id[6..].iter().all(|&b| b == 0));
    let prices = [
        out.last_price,
        out.pre_settlement_price,
        out.pre_close_price,
        out.pre_open_interest,
        out.open_price,
        out.highest_price,
        out.lowest_price,
    ];
    assert_eq!(prices, [3101.0, 3090.0, 3088.0, 1_800_000.0, 3095.0, 3110.0, 3080.0]);
    assert_eq!((out.volume, out.turnover, out.open_interest), (1000, 31_000_000.0, 1_812_345.0));
    assert_eq!((out.close_price, out.settlement_price), (3100.0, 3099.0));
    assert_eq!(
        (out.upper_limit_price, out.lower_limit_price, out.pre_delta, out.curr_delta),
        (3337.0, 2842.0, 0.0, 0.0)
    );
    assert_eq!(out.average_price, 3101.5, "31015 per lot / 10 t per lot");
    assert_eq!((out.banding_upper_price, out.banding_lower_price), (3200.0, 3000.0));
    assert_eq!(out.bid_price, [3100.0, 3099.0, 3098.0, 3097.0, 3096.0]);
    assert_eq!(out.ask_price, [3101.0, 3102.0, 3103.0, 3104.0, 3105.0]);
    assert_eq!(out.bid_volume, [10, 20, 30, 40, 50]);
    assert_eq!(out.ask_volume, [11, 21, 31, 41, 51]);
    assert_eq!((out.reserved0, out.reserved1), ([0; 2], [0; 2]));
}

#[test]
fn dbl_max_prices_become_nan_and_only_missing_ones_are_flagged() {
    // What CTP leaves out by design during the session: ClosePrice, SettlementPrice, CurrDelta, an
    // empty fifth ask level. NaN, and no flag: a flag on nearly every tick would tell nothing.
    let mut f = fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 0);
    f.close_price = f64::MAX;
    f.settlement_price = -f64::MAX;
    f.curr_delta = 1e300;
    f.ask_price[4] = f64::MAX;
    f.ask_volume[4] = 0;
    f.average_price = f64::MAX;
    f.pre_delta = 9.9e299; // large but below the absent threshold: a value
    let out = one(&f, &rb()).unwrap();
    assert!(out.close_price.is_nan() && out.settlement_price.is_nan() && out.curr_delta.is_nan());
    assert!(out.ask_price[4].is_nan() && out.average_price.is_nan());
    assert_eq!(out.ask_price[3], 3104.0);
    assert_eq!(out.pre_delta, 9.9e299);
    assert_eq!(out.quality, 0, "absent by design is not an anomaly");

    // A price that should be there and is not: LastPrice after a trade, a level with volume.
    let mut f = fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 0);
    f.last_price = f64::MAX;
    assert_eq!(one(&f, &rb()).unwrap().quality, quality::ABSENT_PRICE, "LastPrice with Volume 1000");
    f.volume = 0;
    assert_eq!(one(&f, &rb()).unwrap().quality, 0, "no trade yet: no LastPrice is normal");
    for level in [0, 4] {
        let mut f = fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 0);
        f.bid_price[level] = f64::MAX;
        assert_eq!(one(&f, &rb()).unwrap().quality, quality::ABSENT_PRICE, "bid level {level} has volume");
        f.bid_volume[level] = 0;
        assert_eq!(one(&f, &rb()).unwrap().quality, 0, "bid level {level} empty");
        let mut f = fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 0);
        f.ask_price[level] = f64::MAX;
        assert_eq!(one(&f, &rb()).unwrap().quality, quality::ABSENT_PRICE, "ask level {level} has volume");
    }
}

#[test]
fn infinite_or_nan_prices_are_rejected_and_leave_state_alone() {
    let base = fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 0);
    let mut state = InstrumentState::new();
    run(&base, &rb(), &mut state).unwrap();
    let before = state;
    let poisons: [fn(&mut RawFields); 5] = [
        |f| f.last_price = f64::INFINITY,
        |f| f.bid_price[2] = f64::NAN,
        |f| f.turnover = f64::NEG_INFINITY,
        |f| f.average_price = f64::NAN,
        |f| f.banding_lower_price = f64::INFINITY,
    ];
    for poison in poisons {
        let mut f = base.clone();
        f.volume = 1; // would be a regression if the state were touched
        poison(&mut f);
        assert_eq!(run(&f, &rb(), &mut state), Err(Reject::Price));
        assert_eq!(state, before);
    }
}

#[test]
fn dce_friday_night_tick_gets_its_calendar_day_derived() {
    // Both fields carry Monday 20250512; the tick happened Friday 2025-05-09 21:30:00.500 CST
    // = 2025-05-09T13:30:00.500Z = 1746797400.5 s.
    let out = one(&fields("m2509", "DCE", "20250512", "20250512", "21:30:00", 500), &m()).unwrap();
    assert_eq!((out.trading_day, out.action_day), (20250512, 20250509));
    assert_eq!(out.exchange_time_ns, 1_746_797_400 * NS + 500 * MS);
    assert_eq!(out.quality & quality::DERIVED_ACTION_DAY, quality::DERIVED_ACTION_DAY);
    assert_eq!(out.quality & quality::STALE_SNAPSHOT, 0);
}

#[test]
fn dce_night_rules_across_midnight_midweek_and_month_end() {
    // After midnight of a Friday night: Saturday 2025-05-10 00:30 CST = 2025-05-09T16:30:00Z.
    let out = one(&fields("m2509", "DCE", "20250512", "20250512", "00:30:00", 0), &m()).unwrap();
    assert_eq!((out.trading_day, out.action_day), (20250512, 20250510));
    assert_eq!(out.exchange_time_ns, 1_746_808_200 * NS);
    assert_ne!(out.quality & quality::DERIVED_ACTION_DAY, 0);
    // Tuesday night for Wednesday's trading day: 2025-05-13 21:00 CST = 2025-05-13T13:00:00Z.
    let out = one(&fields("m2509", "DCE", "20250514", "20250514", "21:00:00", 0), &m()).unwrap();
    assert_eq!((out.trading_day, out.action_day), (20250514, 20250513));
    assert_eq!(out.exchange_time_ns, 1_747_141_200 * NS);
    // Monday 2025-06-02's night session ran on Friday 2025-05-30: 13:00:00Z that day.
    let out = one(&fields("m2509", "DCE", "20250602", "20250602", "21:00:00", 0), &m()).unwrap();
    assert_eq!(out.action_day, 20250530);
    assert_eq!(out.exchange_time_ns, 1_748_610_000 * NS);
}

#[test]
fn dce_day_ticks_keep_their_day_and_arbitrary_millis() {
    let mut state = InstrumentState::new();
    let f = fields("m2509", "DCE", "20250512", "20250512", "09:30:00", 437);
    let out = run(&f, &m(), &mut state).unwrap();
    assert_eq!(out.action_day, 20250512);
    assert_eq!(out.exchange_time_ns, 1_747_013_400 * NS + 437 * MS);
    assert_eq!(out.quality & quality::DERIVED_ACTION_DAY, 0);
    // The same second again with earlier millis: DCE millis are kept as sent.
    let out = run(&fields("m2509", "DCE", "20250512", "20250512", "09:30:00", 12), &m(), &mut state).unwrap();
    assert_eq!(out.exchange_time_ns, 1_747_013_400 * NS + 12 * MS);
    assert_eq!(out.quality & quality::REPEATED_SECOND, 0);
}

#[test]
fn shfe_after_midnight_tick_uses_action_day_as_sent() {
    let cu = spec(Exchange::Shfe, "cu", 5, Some("21:00-01:00"));
    // Saturday 2025-05-10 01:00:00.500 CST (the closing second) = 2025-05-09T17:00:00.500Z.
    let out = one(&fields("cu2506", "SHFE", "20250512", "20250510", "01:00:00", 500), &cu).unwrap();
    assert_eq!((out.trading_day, out.action_day), (20250512, 20250510));
    assert_eq!(out.exchange_time_ns, 1_746_810_000 * NS + 500 * MS);
    assert_eq!(out.quality & (quality::DERIVED_ACTION_DAY | quality::STALE_SNAPSHOT), 0);
}

#[test]
fn czce_night_tick_gets_its_trading_day_derived() {
    // Friday 2025-05-09 21:05 CST, both fields the calendar day; trading day Monday.
    let out = one(&fields("SR509", "CZCE", "20250509", "20250509", "21:05:00", 0), &sr()).unwrap();
    assert_eq!((out.trading_day, out.action_day), (20250512, 20250509));
    assert_eq!(out.exchange_time_ns, 1_746_795_900 * NS);
    assert_eq!(out.quality & quality::DERIVED_ACTION_DAY, 0);
    let out = one(&fields("SR509", "CZCE", "20250514", "20250514", "22:00:00", 0), &sr()).unwrap();
    assert_eq!((out.trading_day, out.action_day), (20250515, 20250514));
    let day = one(&fields("SR509", "CZCE", "20250514", "20250514", "10:00:00", 0), &sr()).unwrap();
    assert_eq!((day.trading_day, day.action_day), (20250514, 20250514));
}

#[test]
fn czce_repeated_seconds_get_increasing_millis() {
    let mut state = InstrumentState::new();
    let at = |time: &str| fields("SR509", "CZCE", "20250514", "20250514", time, 0);
    // 2025-05-14 10:00:00 CST = 2025-05-14T02:00:00Z = 1747188000 s.
    let base = 1_747_188_000 * NS;
    let first = run(&at("10:00:00"), &sr(), &mut state).unwrap();
    let second = run(&at("10:00:00"), &sr(), &mut state).unwrap();
    let third = run(&at("10:00:00"), &sr(), &mut state).unwrap();
    let next = run(&at("10:00:01"), &sr(), &mut state).unwrap();
    assert_eq!(
        [first.exchange_time_ns, second.exchange_time_ns, third.exchange_time_ns, next.exchange_time_ns],
        [base, base + MS, base + 2 * MS, base + NS]
    );
    assert_eq!([first.update_time_ms, third.update_time_ms], [36_000_000, 36_000_002]);
    let repeated = |t: &TickRecord| t.quality & quality::REPEATED_SECOND != 0;
    assert_eq!([repeated(&first), repeated(&second), repeated(&third), repeated(&next)], [false, true, true, false]);

    // Capped at 999: exchange time stops increasing but never goes back.
    state.millis = 999;
    let capped = run(&at("10:00:01"), &sr(), &mut state).unwrap();
    assert_eq!(capped.exchange_time_ns, base + NS + 999 * MS);
    assert!(repeated(&capped));
    // A later millisecond in the same second is kept as sent.
    let mut state = InstrumentState::new();
    run(&at("10:00:02"), &sr(), &mut state).unwrap();
    let mut later = at("10:00:02");
    later.update_millisec = 500;
    let out = run(&later, &sr(), &mut state).unwrap();
    assert_eq!((out.exchange_time_ns, repeated(&out)), (base + 2 * NS + 500 * MS, false));
}

#[test]
fn volume_regression_is_flagged_kept_and_reset_by_a_new_trading_day() {
    let mut state = InstrumentState::new();
    let with = |volume: i32, trading_day: &str| {
        let mut f = fields("rb2510", "SHFE", trading_day, trading_day, "10:00:00", 0);
        f.volume = volume;
        f
    };
    let flagged = |t: &TickRecord| t.quality & quality::VOLUME_REGRESSION != 0;
    let a = run(&with(100, "20250512"), &rb(), &mut state).unwrap();
    let b = run(&with(90, "20250512"), &rb(), &mut state).unwrap();
    let c = run(&with(95, "20250512"), &rb(), &mut state).unwrap();
    let d = run(&with(10, "20250513"), &rb(), &mut state).unwrap();
    assert_eq!([a.volume, b.volume, c.volume, d.volume], [100, 90, 95, 10], "kept as sent, never a delta");
    assert_eq!([flagged(&a), flagged(&b), flagged(&c), flagged(&d)], [false, true, false, false]);
}

#[test]
fn czce_night_volume_starts_a_new_trading_day() {
    // Friday's day session ends at a high volume; Friday night belongs to Monday's trading day.
    let mut state = InstrumentState::new();
    let mut day = fields("SR509", "CZCE", "20250509", "20250509", "14:59:00", 0);
    day.volume = 500_000;
    run(&day, &sr(), &mut state).unwrap();
    let mut night = fields("SR509", "CZCE", "20250509", "20250509", "21:00:00", 0);
    night.volume = 300;
    night.turnover = 1000.0;
    let out = run(&night, &sr(), &mut state).unwrap();
    assert_eq!(out.quality & (quality::VOLUME_REGRESSION | quality::TURNOVER_REGRESSION), 0);
}

#[test]
fn turnover_regression_is_flagged() {
    let mut state = InstrumentState::new();
    let with = |turnover: f64| {
        let mut f = fields("SR509", "CZCE", "20250514", "20250514", "10:00:00", 0);
        f.turnover = turnover;
        f
    };
    let flagged = |t: &TickRecord| t.quality & quality::TURNOVER_REGRESSION != 0;
    let a = run(&with(5_000_000.0), &sr(), &mut state).unwrap();
    let b = run(&with(4_999_000.0), &sr(), &mut state).unwrap();
    let c = run(&with(f64::MAX), &sr(), &mut state).unwrap(); // absent: no comparison
    let d = run(&with(4_998_000.0), &sr(), &mut state).unwrap(); // still below 4_999_000
    assert_eq!(b.turnover, 4_999_000.0);
    assert!(c.turnover.is_nan());
    assert_eq!([flagged(&a), flagged(&b), flagged(&c), flagged(&d)], [false, true, false, true]);
}

#[test]
fn average_price_is_per_unit_everywhere() {
    let mut f = fields("SR509", "CZCE", "20250514", "20250514", "10:00:00", 0);
    f.average_price = 5812.5;
    let out = one(&f, &sr()).unwrap();
    assert_eq!(out.average_price, 5812.5, "CZCE already per unit");
    assert_eq!(out.quality, 0);
    let day_sessions = vec![Segment::parse("09:30-11:30").unwrap()];
    let index = ProductSpec {
        session_map: SessionMap::new(&day_sessions, None),
        day_sessions,
        ..spec(Exchange::Cffex, "IF", 300, None)
    };
    let mut f = fields("IF2506", "CFFEX", "20250514", "20250514", "10:00:00", 0);
    f.average_price = 1_167_360.0; // 3891.2 points × 300
    let out = one(&f, &index).unwrap();
    assert_eq!(out.average_price, 3891.2);
    assert_eq!(out.quality & quality::AVERAGE_PRICE_SCALED, 0, "a normalization step, not flagged");
}

#[test]
fn snapshots_outside_sessions_are_stale() {
    let stale = |time: &str| {
        let out = one(&fields("rb2510", "SHFE", "20250512", "20250512", time, 0), &rb()).unwrap();
        out.quality & quality::STALE_SNAPSHOT != 0
    };
    assert!(stale("08:30:00"), "before the day auction");
    assert!(!stale("08:55:00"), "day call auction");
    assert!(!stale("20:55:00"), "night call auction");
    assert!(stale("16:00:00"));
    assert!(stale("12:00:00"), "lunch break");
    assert!(!stale("15:00:00"), "closing tick");
    assert!(stale("23:30:00"), "rb's night ends at 23:00");
}

#[test]
fn snapshots_on_weekends_holidays_and_evenings_before_them_are_stale() {
    let stale = |trading: &str, action: &str, time: &str| {
        let out = one(&fields("rb2610", "SHFE", trading, action, time, 0), &rb()).unwrap();
        out.quality & quality::STALE_SNAPSHOT != 0
    };
    assert!(!stale("20260212", "20260212", "10:00:00"), "an ordinary Thursday");
    assert!(stale("20260216", "20260216", "10:00:00"), "Monday 2026-02-16, Spring Festival");
    assert!(stale("20260214", "20260214", "10:00:00"), "Saturday 2026-02-14, a make-up working day: no trading");
    assert!(stale("20260307", "20260307", "10:00:00"), "a Saturday morning");
    assert!(stale("20260224", "20260213", "21:30:00"), "Friday 13th evening before the holiday: no night session");
    assert!(!stale("20260309", "20260306", "21:30:00"), "an ordinary Friday night");
    // A day with no calendar file is answered by the weekday rule (and the core warns at start).
    assert!(!stale("20270101", "20270101", "10:00:00"), "2027 has no file yet: a weekday trades");
}

#[test]
fn dce_night_calendar_day_is_the_previous_trading_days_evening_across_a_holiday() {
    // Trading day Tuesday 2025-05-06, after Labour Day (Thursday 1 to Monday 5 May). Its night
    // session ran on the evening of the previous trading day, Wednesday 30 April, 21:05 CST =
    // 2025-04-30T13:05:00Z = 1746018300 s — not "the weekday before", Monday 5 May (a holiday).
    let out = one(&fields("m2509", "DCE", "20250506", "20250506", "21:05:00", 0), &m()).unwrap();
    assert_eq!((out.trading_day, out.action_day), (20250506, 20250430));
    assert_eq!(out.exchange_time_ns, 1_746_018_300 * NS);
    assert_ne!(out.quality & quality::DERIVED_ACTION_DAY, 0);
    // …and after midnight: Thursday 2025-05-01 00:30 CST.
    let out = one(&fields("m2509", "DCE", "20250506", "20250506", "00:30:00", 0), &m()).unwrap();
    assert_eq!(out.action_day, 20250501);
}

#[test]
fn exchange_id_is_checked_or_taken_from_the_spec() {
    let out = one(&fields("rb2510", "", "20250512", "20250512", "10:00:00", 0), &rb()).unwrap();
    assert_eq!(out.exchange, Exchange::Shfe as u8, "older fronts leave ExchangeID empty");
    assert_eq!(one(&fields("rb2510", "NYMEX", "20250512", "20250512", "10:00:00", 0), &rb()), Err(Reject::Exchange));
    assert_eq!(one(&fields("rb2510", "shfe", "20250512", "20250512", "10:00:00", 0), &rb()), Err(Reject::Exchange));
    assert_eq!(one(&fields("rb2510", "DCE", "20250512", "20250512", "10:00:00", 0), &rb()), Err(Reject::Exchange));
    assert_eq!(
        one(&fields("hc2510", "SHFE", "20250512", "20250512", "10:00:00", 0), &rb()),
        Err(Reject::UnknownInstrument)
    );
}

#[test]
fn ids_too_long_for_the_record_are_rejected() {
    let id = format!("rb{}", "9".repeat(30)); // 32 characters: fits CTP's 81, not the record's 31
    assert_eq!(one(&fields(&id, "SHFE", "20250512", "20250512", "10:00:00", 0), &rb()), Err(Reject::Id));
    let id = format!("rb{}", "9".repeat(29));
    assert!(one(&fields(&id, "SHFE", "20250512", "20250512", "10:00:00", 0), &rb()).is_ok());
}

#[test]
fn unparseable_times_are_rejected() {
    let cases = [
        ("20250512", "20250512", "25:61:00", 0),
        ("20250512", "20250512", "10:00", 0),
        ("20250512", "20250512", "", 0),
        ("20250512", "20250512", "10:00:00", 1000),
        ("20250512", "20250512", "10:00:00", -1),
        ("20250231", "20250512", "10:00:00", 0),
        ("20250512", "20250231", "10:00:00", 0),
        ("20250512", "", "10:00:00", 0),
        ("2025051", "20250512", "10:00:00", 0),
    ];
    for (trading_day, action_day, time, ms) in cases {
        let f = fields("rb2510", "SHFE", trading_day, action_day, time, ms);
        assert_eq!(one(&f, &rb()), Err(Reject::Time), "{trading_day:?} {action_day:?} {time:?} {ms}");
    }
}

#[test]
fn older_structs_have_no_banding_prices() {
    let f = fields("rb2510", "SHFE", "20250512", "20250512", "10:00:00", 0);
    for bytes in [f.to_v63_bytes().to_vec(), f.to_v65_bytes().to_vec()] {
        let raw = RawTick::parse(&bytes).unwrap();
        let mut out = TickRecord::ZERO;
        normalize(Portable, &raw, &rb(), calendar(), &mut InstrumentState::new(), 0, Source::Sim, 0, &mut out).unwrap();
        assert!(out.banding_upper_price.is_nan() && out.banding_lower_price.is_nan());
        assert_eq!(out.quality & quality::ABSENT_PRICE, 0);
        assert_eq!(out.last_price, 3101.0);
    }
}

#[test]
fn remembered_dates_still_reject_bad_ones_and_follow_day_changes() {
    let mut state = InstrumentState::new();
    run(&fields("rb2510", "SHFE", "20250512", "20250512", "10:00:00", 0), &rb(), &mut state).unwrap();
    let bad = fields("rb2510", "SHFE", "20250231", "20250512", "10:00:00", 0);
    assert_eq!(run(&bad, &rb(), &mut state), Err(Reject::Time));
    let next = run(&fields("rb2510", "SHFE", "20250513", "20250512", "21:00:00", 0), &rb(), &mut state).unwrap();
    assert_eq!((next.trading_day, next.action_day), (20250513, 20250512));
    // 2025-05-12 21:00 CST = 2025-05-12T13:00:00Z = 1747054800 s.
    assert_eq!(next.exchange_time_ns, 1_747_054_800 * NS);
}

#[test]
fn record_id_follows_the_raw_id_even_if_the_state_is_reused() {
    let mut state = InstrumentState::new();
    let a = run(&fields("rb2510", "SHFE", "20250512", "20250512", "10:00:00", 0), &rb(), &mut state).unwrap();
    let b = run(&fields("rb2510", "SHFE", "20250512", "20250512", "10:00:01", 0), &rb(), &mut state).unwrap();
    let c = run(&fields("rb25101", "SHFE", "20250512", "20250512", "10:00:02", 0), &rb(), &mut state).unwrap();
    let d = run(&fields("rb251", "SHFE", "20250512", "20250512", "10:00:03", 0), &rb(), &mut state).unwrap();
    let ids = [&a, &b, &c, &d].map(|t| t.instrument_id_str().unwrap().to_owned());
    assert_eq!(ids, ["rb2510", "rb2510", "rb25101", "rb251"]);
    assert!(d.instrument_id[5..].iter().all(|&b| b == 0));
}

/// Every product of the shipped table, at every kind of session boundary, on real 2026 dates:
/// the exchange time, trading day, calendar day and the stale flag come out as the exchange's
/// conventions and the calendar say. Expected values are written from the dates' day numbers
/// (`date -u -d 2026-03-04 +%s` / 86400 = 20516 …), not computed by the code under test.
#[test]
fn every_product_at_every_session_boundary() {
    // (YYYYMMDD, days since 1970-01-01)
    const WED: (u32, i64) = (20260304, 20516);
    const FRI: (u32, i64) = (20260306, 20518);
    const SAT: (u32, i64) = (20260307, 20519);
    const MON: (u32, i64) = (20260309, 20521);
    const EVE_OF_HOLIDAY: (u32, i64) = (20260430, 20573); // Thursday; Labour Day 1–5 May
    const FIRST_AFTER: (u32, i64) = (20260506, 20579); // Wednesday, first trading day after it
    let table = qilin_market::Instruments::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml"),
    )
    .unwrap();
    let hms = |ms: u32| format!("{:02}:{:02}:{:02}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    let mut checked = 0;
    for spec in table.products().iter().filter(|p| p.kind == Kind::Future) {
        let id = &spec.instruments[0];
        let exchange = spec.exchange;
        // The two day fields as the exchange fills them for a tick of `trading` happening on `calendar`.
        let raw_days = |trading: u32, calendar: u32| match exchange {
            Exchange::Dce => (trading, trading),
            Exchange::Czce => (calendar, calendar),
            _ => (trading, calendar),
        };
        // One tick at local `ms` of day `calendar` belonging to `trading`; checks every derived value.
        let check = |what: &str, trading: (u32, i64), calendar: (u32, i64), ms: u32, stale: bool| {
            let (td, ad) = raw_days(trading.0, calendar.0);
            let f = fields(id, exchange.as_str(), &td.to_string(), &ad.to_string(), &hms(ms), (ms % 1000) as i32);
            let out = one(&f, spec).unwrap_or_else(|e| panic!("{id} {what}: rejected {e:?}"));
            let expected_ns = (calendar.1 * 86_400_000 + i64::from(ms) - 8 * 3_600_000) * 1_000_000;
            assert_eq!(out.exchange_time_ns, expected_ns, "{id} {what}: exchange time");
            assert_eq!((out.trading_day, out.action_day), (trading.0, calendar.0), "{id} {what}: days");
            assert_eq!(out.quality & quality::STALE_SNAPSHOT != 0, stale, "{id} {what}: stale flag");
        };
        let first = spec.day_sessions[0];
        let auction = first.start_ms - 5 * 60_000;
        check("call auction opens", WED, WED, auction, false);
        check("before the call auction", WED, WED, auction - 1000, true);
        check("first tick", WED, WED, first.start_ms, false);
        for s in &spec.day_sessions {
            check("closing second of a section", WED, WED, s.end_ms + 500, false);
            check("after a section's closing second", WED, WED, s.end_ms + 1000, true);
        }
        check("first day after a holiday", FIRST_AFTER, FIRST_AFTER, first.start_ms, false);
        match spec.night_session {
            Some(night) => {
                let evening = night.start_ms + 30 * 60_000;
                check("Friday night", MON, FRI, evening, false);
                check("the evening before a holiday", FIRST_AFTER, EVE_OF_HOLIDAY, evening, true);
                if night.wraps() {
                    check("night across midnight", MON, SAT, 30 * 60_000, false);
                    check("after the night's end", MON, SAT, night.end_ms + 1000, true);
                } else {
                    check("after the night's end", MON, FRI, night.end_ms + 1000, true);
                }
            }
            None => check("no night session", MON, FRI, 21 * 3_600_000 + 30 * 60_000, true),
        }
        checked += 1;
    }
    assert!(checked >= 80, "{checked} products");
}

/// A tick of a new minute and day that is rejected for a price leaves the state as it was, the
/// minute memo included (normalize takes the new minute into the state before the prices are
/// checked and puts the old one back); the next good tick of that minute is normalized in full.
#[test]
fn a_rejected_tick_of_a_new_minute_leaves_the_memo_alone() {
    let mut state = InstrumentState::new();
    run(&fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 0), &rb(), &mut state).unwrap();
    let before = state;
    let mut poisoned = fields("rb2510", "SHFE", "20250513", "20250513", "10:31:07", 500);
    poisoned.ask_price[4] = f64::NAN;
    assert_eq!(run(&poisoned, &rb(), &mut state), Err(Reject::Price));
    assert_eq!(state, before);
    let good = run(&fields("rb2510", "SHFE", "20250513", "20250513", "10:31:07", 500), &rb(), &mut state).unwrap();
    assert_eq!((good.trading_day, good.action_day, good.update_time_ms), (20250513, 20250513, 37_867_500));
    assert_ne!(state, before);
}

/// The product check is skipped only for the id of the last accepted tick: another id on the same
/// state is checked again (and a wrong product rejected, the state left alone).
#[test]
fn the_product_check_is_remembered_per_id_only() {
    let mut state = InstrumentState::new();
    run(&fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 0), &rb(), &mut state).unwrap();
    run(&fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 500), &rb(), &mut state).unwrap();
    let before = state;
    for other in ["ru2510", "rbx2510", "r2510"] {
        let f = fields(other, "SHFE", "20250512", "20250512", "09:30:01", 0);
        assert_eq!(run(&f, &rb(), &mut state), Err(Reject::UnknownInstrument), "{other}");
        assert_eq!(state, before, "{other}");
    }
    run(&fields("rb2510", "SHFE", "20250512", "20250512", "09:30:01", 0), &rb(), &mut state).unwrap();
}

/// A double of every kind the price section tells apart: ordinary prices, zeros, the absent marker
/// and its neighbours, infinities, NaNs with any payload and sign, subnormals, any bits at all.
fn any_double() -> impl proptest::strategy::Strategy<Value = f64> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (-1e7f64..1e7).boxed(),
        1 => Just(0.0).boxed(),
        1 => Just(-0.0).boxed(),
        2 => prop_oneof![Just(f64::MAX), Just(f64::MIN)].boxed(),
        1 => prop_oneof![Just(ABSENT_FROM), Just(-ABSENT_FROM)].boxed(),
        1 => Just(f64::from_bits(ABSENT_FROM.to_bits() - 1)).boxed(),
        1 => prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY)].boxed(),
        1 => (0u64..1 << 52).prop_map(|payload| f64::from_bits(0x7FF0_0000_0000_0001 | payload)).boxed(),
        1 => (0u64..1 << 52).prop_map(|payload| f64::from_bits(0xFFF0_0000_0000_0001 | payload)).boxed(),
        1 => (1u64..1 << 52).prop_map(f64::from_bits).boxed(),
        2 => any::<u64>().prop_map(f64::from_bits).boxed(),
    ]
}

/// A book or Volume word: the 32-bit volume (often 0) and whatever the padding after it holds.
fn any_volume_word() -> impl proptest::strategy::Strategy<Value = [u8; 8]> {
    use proptest::prelude::*;
    // Padding that makes the word, read as a double, infinite or NaN (its exponent all ones) or
    // at least ABSENT_FROM, as well as any.
    let pad = prop_oneof![
        Just([0, 0, 0xF0, 0x7F]),
        Just([0xFF; 4]),
        Just([0, 0, 0xF8, 0x7F]),
        Just([0, 0, 0xE0, 0x7F]),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
    ];
    (prop_oneof![Just(0i32), 1i32..1000, any::<i32>()], pad).prop_map(|(volume, pad)| {
        let mut word = [0u8; 8];
        word[..4].copy_from_slice(&volume.to_ne_bytes());
        word[4..].copy_from_slice(&pad);
        word
    })
}

#[cfg(target_arch = "x86_64")]
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The AVX2 price section writes the same bytes and gives the same verdicts as the portable
    /// one, on bodies of any doubles and volume words, with and without banding prices. (The engine
    /// runs it wherever the CPU has AVX2; this test needs such a CPU.)
    #[test]
    fn the_avx2_price_section_is_the_portable_one(
        doubles in proptest::collection::vec(any_double(), 29),
        volumes in proptest::collection::vec(any_volume_word(), 11),
        version in 0usize..3,
        record in proptest::collection::vec(proptest::prelude::any::<u8>(), size_of::<TickRecord>()),
    ) {
        use core::mem::offset_of;
        use crate::ctp::{BODY_OFFSET, BookLevel, DepthBody};
        let avx2 = Avx2::detect().expect("this test needs a CPU with AVX2 (the engine's section there)");
        let f = fields("rb2510", "SHFE", "20250512", "20250512", "09:30:00", 500);
        let mut bytes = match version {
            0 => f.to_v67_bytes().to_vec(),
            1 => f.to_v65_bytes().to_vec(),
            _ => f.to_v63_bytes().to_vec(),
        };
        // The body's 26 doubles and 11 volume words (Volume's and the book's) at their offsets.
        let mut put = |at: usize, word: [u8; 8]| bytes[BODY_OFFSET + at..BODY_OFFSET + at + 8].copy_from_slice(&word);
        let mut next = doubles.iter().map(|d| d.to_ne_bytes());
        for at in (0..7).chain(8..16).map(|i| 8 * i).chain([offset_of!(DepthBody, average_price)]) {
            put(at, next.next().unwrap());
        }
        put(offset_of!(DepthBody, volume), volumes[10]);
        for level in 0..5 {
            let at = offset_of!(DepthBody, levels) + level * size_of::<BookLevel>();
            put(at + offset_of!(BookLevel, bid_price), next.next().unwrap());
            put(at + offset_of!(BookLevel, ask_price), next.next().unwrap());
            put(at + offset_of!(BookLevel, bid_volume), volumes[2 * level]);
            put(at + offset_of!(BookLevel, ask_volume), volumes[2 * level + 1]);
        }
        if version == 0 {
            bytes[568..576].copy_from_slice(&doubles[27].to_ne_bytes());
            bytes[576..584].copy_from_slice(&doubles[28].to_ne_bytes());
        }
        let raw = RawTick::parse(&bytes).unwrap();
        let volume = i64::from(raw.body.volume.get());
        let start = TickRecord::read_from_bytes(&record).unwrap();
        let (mut portable, mut vector) = (start, start);
        let expected = Portable.clean(&raw, volume, &mut portable);
        let got = avx2.clean(&raw, volume, &mut vector);
        // Volume's field is the caller's (the AVX2 form leaves a lane of the run there).
        vector.volume = portable.volume;
        proptest::prop_assert_eq!(got, expected);
        proptest::prop_assert_eq!(vector.as_bytes(), portable.as_bytes());
        if !expected.1 {
            // Its verdict against the rule's other form, read from the record.
            portable.volume = volume;
            proptest::prop_assert_eq!(expected.0, qilin_market::quality::absent_where_expected(&portable));
        }
    }
}
