//! The golden set: one trading day of each exchange, a Friday night and a holiday eve, from crafted
//! ticks that hit every edge; the expected bars are written out by hand, not produced by the code.
//! And the volume property.

use proptest::prelude::*;
use qilin_market::{Date, Market, date::utc_ns};
use qilin_shm::{Exchange, TickRecord, quality};

use super::*;

fn market() -> Market {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
    Market::find(Some(&path)).unwrap().unwrap()
}

/// Crafts ticks of one instrument, sequences from 1.
struct Ticks {
    id: &'static str,
    exchange: Exchange,
    trading_day: u32,
    sequence: u64,
}

impl Ticks {
    fn new(id: &'static str, exchange: Exchange, trading_day: u32) -> Ticks {
        Ticks { id, exchange, trading_day, sequence: 0 }
    }

    /// A tick at `hh:mm:ss.mmm` of calendar day `day`, published 5 ms later.
    #[allow(clippy::too_many_arguments)] // one tick's fields, written out in the tables below
    fn at(&mut self, day: u32, time: &str, price: f64, volume: i64, turnover: f64, oi: f64) -> TickRecord {
        let (hms, ms) = time.split_once('.').unwrap();
        let secs = qilin_market::date::parse_hms(hms).unwrap();
        let ms: u32 = ms.parse().unwrap();
        self.sequence += 1;
        let mut t = TickRecord::ZERO;
        t.sequence = self.sequence;
        t.exchange = self.exchange as u8;
        t.trading_day = self.trading_day;
        t.action_day = day;
        t.update_time_ms = secs * 1000 + ms;
        t.exchange_time_ns = utc_ns(Date::from_ymd(day).unwrap(), secs, ms);
        t.publish_ns = t.exchange_time_ns + 5_000_000;
        t.receive_ns = t.publish_ns;
        t.instrument_id[..self.id.len()].copy_from_slice(self.id.as_bytes());
        t.last_price = price;
        t.volume = volume;
        t.turnover = turnover;
        t.open_interest = oi;
        t.pre_open_interest = 1000.0;
        t
    }
}

/// An expected bar: `start`/`end` as (`YYYYMMDD`, `"HH:MM"`) China local.
#[allow(clippy::too_many_arguments)]
fn bar(
    id: &str,
    exchange: &'static str,
    trading_day: u32,
    period: Period,
    start: (u32, &str),
    end: (u32, &str),
    ohlc: [f64; 4],
    volume: i64,
    turnover: f64,
    oi: (f64, f64),
    ticks: u32,
    seq: (u64, u64),
    flags: u32,
) -> Bar {
    let local = |(day, hm): (u32, &str)| {
        utc_ns(Date::from_ymd(day).unwrap(), qilin_market::date::parse_hms(&format!("{hm}:00")).unwrap(), 0)
    };
    Bar {
        instrument_id: id.into(),
        exchange,
        period,
        trading_day,
        start_ns: local(start),
        end_ns: local(end),
        open: ohlc[0],
        high: ohlc[1],
        low: ohlc[2],
        close: ohlc[3],
        volume,
        turnover,
        open_interest: oi.0,
        open_interest_change: oi.1,
        ticks,
        first_sequence: seq.0,
        last_sequence: seq.1,
        flags,
    }
}

fn build(periods: &[Period], ticks: &[TickRecord]) -> (Vec<Bar>, Builder) {
    let mut builder = Builder::new(market(), periods, 2_000);
    let mut out = Vec::new();
    for t in ticks {
        builder.on_tick(t, &mut out);
    }
    builder.close_all(&mut out);
    (out, builder)
}

fn of(bars: &[Bar], period: Period) -> Vec<Bar> {
    bars.iter().filter(|b| b.period == period).cloned().collect()
}

/// Compares as JSON text too, so NaN prices (JSON null) compare equal and the bytes are checked.
fn assert_bars(got: &[Bar], want: &[Bar]) {
    let text = |bars: &[Bar]| bars.iter().map(|b| String::from_utf8(b.to_json()).unwrap()).collect::<Vec<_>>();
    assert_eq!(text(got), text(want));
}

#[test]
fn shfe_auction_night_close_section_ends_and_the_day_bar() {
    let mut k = Ticks::new("rb2605", Exchange::Shfe, 20260311);
    let (n, d) = (20260310, 20260311);
    let ticks = [
        k.at(n, "20:59:00.000", 3500.0, 100, 1000.0, 1000.0), // 1 night auction
        k.at(n, "21:00:00.500", 3502.0, 110, 1100.0, 1002.0), // 2
        k.at(n, "21:00:59.500", 3498.0, 130, 1300.0, 1005.0), // 3
        k.at(n, "21:01:00.000", 3499.0, 131, 1310.0, 1004.0), // 4 next minute
        k.at(n, "22:59:59.500", 3510.0, 200, 2000.0, 1010.0), // 5
        k.at(n, "23:00:00.000", 3511.0, 205, 2050.0, 1011.0), // 6 night close: bar before
        k.at(d, "08:59:00.000", 3520.0, 220, 2200.0, 1012.0), // 7 day auction: 09:00 bar, not the night's
        k.at(d, "09:00:00.500", 3521.0, 230, 2300.0, 1013.0), // 8
        k.at(d, "10:14:59.500", 3530.0, 260, 2600.0, 1015.0), // 9
        k.at(d, "10:15:00.000", 3531.0, 262, 2620.0, 1016.0), // 10 section end: bar before
        k.at(d, "10:30:00.500", 3532.0, 270, 2700.0, 1017.0), // 11
        k.at(d, "14:59:59.500", 3540.0, 300, 3000.0, 1020.0), // 12
        k.at(d, "15:00:00.000", 3541.0, 301, 3010.0, 1021.0), // 13 day close: bar before
    ];
    let (bars, builder) = build(&[Period::M1, Period::M60, Period::Day], &ticks);
    let b = |p, s, e, ohlc, v, to, oi, n, seq| bar("rb2605", "SHFE", 20260311, p, s, e, ohlc, v, to, oi, n, seq, 0);
    use Period::*;
    assert_bars(
        &of(&bars, M1),
        &[
            b(M1, (n, "21:00"), (n, "21:01"), [3500.0, 3502.0, 3498.0, 3498.0], 130, 1300.0, (1005.0, 5.0), 3, (1, 3)),
            b(M1, (n, "21:01"), (n, "21:02"), [3499.0; 4], 1, 10.0, (1004.0, -1.0), 1, (4, 4)),
            b(M1, (n, "22:59"), (n, "23:00"), [3510.0, 3511.0, 3510.0, 3511.0], 74, 740.0, (1011.0, 7.0), 2, (5, 6)),
            b(M1, (d, "09:00"), (d, "09:01"), [3520.0, 3521.0, 3520.0, 3521.0], 25, 250.0, (1013.0, 2.0), 2, (7, 8)),
            b(M1, (d, "10:14"), (d, "10:15"), [3530.0, 3531.0, 3530.0, 3531.0], 32, 320.0, (1016.0, 3.0), 2, (9, 10)),
            b(M1, (d, "10:30"), (d, "10:31"), [3532.0; 4], 8, 80.0, (1017.0, 1.0), 1, (11, 11)),
            b(M1, (d, "14:59"), (d, "15:00"), [3540.0, 3541.0, 3540.0, 3541.0], 31, 310.0, (1021.0, 4.0), 2, (12, 13)),
        ],
    );
    assert_bars(
        &of(&bars, M60),
        &[
            b(M60, (n, "21:00"), (n, "22:00"), [3500.0, 3502.0, 3498.0, 3499.0], 131, 1310.0, (1004.0, 4.0), 4, (1, 4)),
            b(M60, (n, "22:00"), (n, "23:00"), [3510.0, 3511.0, 3510.0, 3511.0], 74, 740.0, (1011.0, 7.0), 2, (5, 6)),
            b(M60, (d, "09:00"), (d, "10:00"), [3520.0, 3521.0, 3520.0, 3521.0], 25, 250.0, (1013.0, 2.0), 2, (7, 8)),
            b(M60, (d, "10:00"), (d, "10:15"), [3530.0, 3531.0, 3530.0, 3531.0], 32, 320.0, (1016.0, 3.0), 2, (9, 10)),
            b(M60, (d, "10:30"), (d, "11:00"), [3532.0; 4], 8, 80.0, (1017.0, 1.0), 1, (11, 11)),
            b(M60, (d, "14:00"), (d, "15:00"), [3540.0, 3541.0, 3540.0, 3541.0], 31, 310.0, (1021.0, 4.0), 2, (12, 13)),
        ],
    );
    assert_bars(
        &of(&bars, Day),
        &[b(
            Day,
            (n, "21:00"),
            (d, "15:00"),
            [3500.0, 3541.0, 3498.0, 3541.0],
            301,
            3010.0,
            (1021.0, 21.0),
            13,
            (1, 13),
        )],
    );
    let c = builder.counters();
    assert_eq!((c.ticks, c.used, c.late, c.stale, c.outside), (13, 13, 0, 0, 0));
}

#[test]
fn ine_friday_night_across_midnight_belongs_to_monday_and_the_timer_closes_the_last_bar() {
    // sc trades 21:00-02:30. Friday 2026-03-06's night is Monday 2026-03-09's trading day.
    let mut k = Ticks::new("sc2605", Exchange::Ine, 20260309);
    let (fri, sat, mon) = (20260306, 20260307, 20260309);
    let ticks = [
        k.at(fri, "20:59:00.000", 600.0, 10, 100.0, 1000.0), // 1
        k.at(fri, "23:59:59.500", 601.0, 20, 200.0, 1001.0), // 2
        k.at(sat, "00:00:00.000", 602.0, 25, 250.0, 1002.0), // 3 midnight: a new minute, same section
        k.at(sat, "02:29:00.000", 603.0, 30, 300.0, 1003.0), // 4
        k.at(sat, "02:30:00.500", 604.0, 31, 310.0, 1004.0), // 5 night close's second
        k.at(mon, "08:59:00.000", 605.0, 40, 400.0, 1005.0), // 6
        k.at(mon, "14:59:30.000", 606.0, 50, 500.0, 1006.0), // 7 the last tick: no closing tick follows
    ];
    let mut builder = Builder::new(market(), &[Period::M60, Period::Day], 2_000);
    let mut out = Vec::new();
    for t in &ticks {
        builder.on_tick(t, &mut out);
    }
    let b = |p, s, e, ohlc, v, to, oi, n, seq| bar("sc2605", "INE", 20260309, p, s, e, ohlc, v, to, oi, n, seq, 0);
    use Period::*;
    let closed_by_ticks = [
        b(M60, (fri, "21:00"), (fri, "22:00"), [600.0; 4], 10, 100.0, (1000.0, 0.0), 1, (1, 1)),
        b(M60, (fri, "23:00"), (sat, "00:00"), [601.0; 4], 20 - 10, 100.0, (1001.0, 1.0), 1, (2, 2)),
        b(M60, (sat, "00:00"), (sat, "01:00"), [602.0; 4], 5, 50.0, (1002.0, 1.0), 1, (3, 3)),
        b(M60, (sat, "02:00"), (sat, "02:30"), [603.0, 604.0, 603.0, 604.0], 6, 60.0, (1004.0, 2.0), 2, (4, 5)),
        b(M60, (mon, "09:00"), (mon, "10:00"), [605.0; 4], 9, 90.0, (1005.0, 1.0), 1, (6, 6)),
    ];
    assert_bars(&out, &closed_by_ticks);
    // The timer: wall time 15:00:01.9 (+ 5 ms latency, no margin) is before the close delay.
    let wall = |hms: &str, ms| {
        utc_ns(Date::from_ymd(mon).unwrap(), qilin_market::date::parse_hms(hms).unwrap(), ms) + 5_000_000
    };
    builder.idle(wall("15:00:01", 900), 0, &mut out);
    assert_eq!(out.len(), closed_by_ticks.len(), "not yet due");
    builder.idle(wall("15:00:02", 0), 0, &mut out);
    assert_bars(
        &out[closed_by_ticks.len()..],
        &[
            b(M60, (mon, "14:00"), (mon, "15:00"), [606.0; 4], 10, 100.0, (1006.0, 1.0), 1, (7, 7)),
            b(Day, (fri, "21:00"), (mon, "15:00"), [600.0, 606.0, 600.0, 606.0], 50, 500.0, (1006.0, 6.0), 7, (1, 7)),
        ],
    );
    assert_eq!(builder.open_bars().count(), 0);
}

#[test]
fn dce_stale_snapshot_and_volume_regression_never_make_a_negative_bar() {
    let mut k = Ticks::new("m2605", Exchange::Dce, 20260311);
    let (n, d) = (20260310, 20260311);
    let mut ticks = [
        k.at(n, "20:50:00.000", 2900.0, 99_999, 9e9, 5000.0), // 1 yesterday's snapshot
        k.at(n, "21:00:00.123", 2901.0, 20, 200.0, 1002.0),   // 2 (arbitrary milliseconds on DCE)
        k.at(n, "21:00:30.777", 2903.0, 15, 150.0, 1003.0),   // 3 volume went down
        k.at(n, "21:00:45.001", 2902.0, 25, 250.0, 1004.0),   // 4 up again: +5 over the highest (20)
        k.at(d, "09:00:10.999", 2904.0, 40, 400.0, 1005.0),   // 5
    ];
    ticks[0].quality |= quality::STALE_SNAPSHOT;
    ticks[2].quality |= quality::VOLUME_REGRESSION;
    let (bars, builder) = build(&[Period::M1], &ticks);
    let b =
        |s, e, ohlc, v, to, oi, n, seq, f| bar("m2605", "DCE", 20260311, Period::M1, s, e, ohlc, v, to, oi, n, seq, f);
    assert_bars(
        &bars,
        &[
            b(
                (n, "21:00"),
                (n, "21:01"),
                [2901.0, 2903.0, 2901.0, 2902.0],
                25,
                250.0,
                (1004.0, 4.0),
                3,
                (2, 4),
                flags::VOLUME_DECREASE | flags::TURNOVER_DECREASE,
            ),
            b((d, "09:00"), (d, "09:01"), [2904.0; 4], 15, 150.0, (1005.0, 1.0), 1, (5, 5), 0),
        ],
    );
    assert_eq!((builder.counters().stale, builder.counters().used), (1, 4));
}

#[test]
fn czce_turnover_going_down_and_no_closing_tick_keep_the_night_and_the_morning_apart() {
    let mut k = Ticks::new("SR605", Exchange::Czce, 20260311);
    let (n, d) = (20260310, 20260311);
    let mut ticks = [
        k.at(n, "20:59:00.000", 5399.0, 2, 100.0, 795.0), // 1 auction: baseline 0
        k.at(n, "22:59:30.000", 5400.0, 10, 600.0, 800.0), // 2
        k.at(n, "22:59:58.000", 5401.0, 12, 590.0, 800.0), // 3 CZCE turnover went down
        k.at(n, "22:59:58.000", 5402.0, 14, 700.0, 801.0), // 4 repeated second (+1 ms)
        // No 23:00 tick. The next is the morning auction: the night bar is closed by the clock
        // before it, and the auction tick opens the 09:00 bar.
        k.at(d, "08:59:00.000", 5410.0, 20, 1000.0, 805.0), // 5
        k.at(d, "09:04:59.000", 5411.0, 21, 1050.0, 806.0), // 6
    ];
    ticks[2].quality |= quality::TURNOVER_REGRESSION;
    ticks[3].update_time_ms += 1;
    ticks[3].exchange_time_ns += 1_000_000;
    ticks[3].quality |= quality::REPEATED_SECOND;
    let (bars, _) = build(&[Period::M5], &ticks);
    let b =
        |s, e, ohlc, v, to, oi, n, seq, f| bar("SR605", "CZCE", 20260311, Period::M5, s, e, ohlc, v, to, oi, n, seq, f);
    assert_bars(
        &bars,
        &[
            b((n, "21:00"), (n, "21:05"), [5399.0; 4], 2, 100.0, (795.0, -205.0), 1, (1, 1), 0),
            b(
                (n, "22:55"),
                (n, "23:00"),
                [5400.0, 5402.0, 5400.0, 5402.0],
                12,
                600.0,
                (801.0, 6.0),
                3,
                (2, 4),
                flags::TURNOVER_DECREASE,
            ),
            b((d, "09:00"), (d, "09:05"), [5410.0, 5411.0, 5410.0, 5411.0], 7, 350.0, (806.0, 5.0), 2, (5, 6), 0),
        ],
    );
}

#[test]
fn cffex_auction_lunch_close_and_thirty_minute_bars() {
    let mut k = Ticks::new("IF2606", Exchange::Cffex, 20260311);
    let d = 20260311;
    let ticks = [
        k.at(d, "09:25:00.000", 4000.0, 50, 1.0e7, 100.0), // 1 auction: the 09:30 bar
        k.at(d, "09:30:00.200", 4001.0, 60, 1.2e7, 101.0), // 2
        k.at(d, "11:29:59.800", 4002.0, 70, 1.4e7, 102.0), // 3
        k.at(d, "11:30:00.000", 4003.0, 71, 1.42e7, 103.0), // 4 the lunch close: bar before
        k.at(d, "13:00:00.400", 4004.0, 80, 1.6e7, 104.0), // 5 the afternoon: a new bar
    ];
    let (bars, _) = build(&[Period::M30], &ticks);
    let b =
        |s, e, ohlc, v, to, oi, n, seq| bar("IF2606", "CFFEX", 20260311, Period::M30, s, e, ohlc, v, to, oi, n, seq, 0);
    assert_bars(
        &bars,
        &[
            b((d, "09:30"), (d, "10:00"), [4000.0, 4001.0, 4000.0, 4001.0], 60, 1.2e7, (101.0, -899.0), 2, (1, 2)),
            b((d, "11:00"), (d, "11:30"), [4002.0, 4003.0, 4002.0, 4003.0], 11, 0.22e7, (103.0, 2.0), 2, (3, 4)),
            b((d, "13:00"), (d, "13:30"), [4004.0; 4], 9, 0.18e7, (104.0, 1.0), 1, (5, 5)),
        ],
    );
}

#[test]
fn gfex_joined_mid_day_and_a_tick_without_a_price() {
    let mut k = Ticks::new("si2607", Exchange::Gfex, 20260311);
    let d = 20260311;
    let mut ticks = [
        k.at(d, "10:00:10.500", 9000.0, 500, 5000.0, 300.0), // 1 first tick seen: the baseline
        k.at(d, "10:00:20.000", f64::NAN, 505, 5050.0, 301.0), // 2 no price
        k.at(d, "10:01:00.000", 9001.0, 507, 5070.0, 302.0), // 3
    ];
    ticks[1].quality |= quality::ABSENT_PRICE;
    let (bars, _) = build(&[Period::M1], &ticks);
    let b = |s, e, ohlc, v, to, oi, n, seq, f| {
        bar("si2607", "GFEX", 20260311, Period::M1, s, e, ohlc, v, to, oi, n, seq, f)
    };
    assert_bars(
        &bars,
        &[
            b(
                (d, "10:00"),
                (d, "10:01"),
                [9000.0; 4],
                5,
                50.0,
                (301.0, 1.0),
                2,
                (1, 2),
                flags::PARTIAL | flags::ABSENT_PRICE,
            ),
            b((d, "10:01"), (d, "10:02"), [9001.0; 4], 2, 20.0, (302.0, 1.0), 1, (3, 3), 0),
        ],
    );
}

#[test]
fn holiday_eve_holds_no_night_so_the_day_starts_at_the_morning_auction() {
    // Wednesday 2026-09-30 is the eve of the National Day holiday: no night session; the next
    // trading day is Thursday 2026-10-08.
    let mut k = Ticks::new("au2612", Exchange::Shfe, 20261008);
    let mut stale = k.at(20260930, "21:00:05.000", 800.0, 5, 50.0, 100.0); // 1 flagged by the core
    stale.quality |= quality::STALE_SNAPSHOT;
    let ticks = [
        stale,
        k.at(20260930, "21:00:06.000", 800.0, 5, 50.0, 100.0), // 2 unflagged, but in no section
        k.at(20261008, "08:59:00.000", 801.0, 7, 70.0, 1001.0), // 3 auction: baseline 0
        k.at(20261008, "09:00:00.500", 802.0, 9, 90.0, 1002.0), // 4
    ];
    let (bars, builder) = build(&[Period::M1, Period::Day], &ticks);
    let d = 20261008;
    let b = |p, s, e, ohlc, v, to, oi, n, seq| bar("au2612", "SHFE", d, p, s, e, ohlc, v, to, oi, n, seq, 0);
    use Period::*;
    let want = [
        b(M1, (d, "09:00"), (d, "09:01"), [801.0, 802.0, 801.0, 802.0], 9, 90.0, (1002.0, 2.0), 2, (3, 4)),
        b(Day, (d, "09:00"), (d, "15:00"), [801.0, 802.0, 801.0, 802.0], 9, 90.0, (1002.0, 2.0), 2, (3, 4)),
    ];
    assert_bars(&bars, &want);
    let c = builder.counters();
    assert_eq!((c.stale, c.outside, c.used), (1, 1, 2));
}

#[test]
fn a_tick_for_a_closed_bar_is_late_and_its_volume_goes_to_the_next_bar() {
    let mut k = Ticks::new("rb2605", Exchange::Shfe, 20260311);
    let d = 20260311;
    let mut other = Ticks::new("hc2605", Exchange::Shfe, 20260311);
    other.sequence = 100;
    let ticks = [
        k.at(d, "09:00:10.000", 3500.0, 10, 100.0, 1000.0),   // 1
        other.at(d, "09:01:05.000", 3600.0, 1, 10.0, 1000.0), // 101: the clock passes 09:01 + 2 s
        k.at(d, "09:00:59.500", 3499.0, 12, 120.0, 1000.0),   // 2 late for 09:00
        k.at(d, "09:01:10.000", 3501.0, 13, 130.0, 1000.0),   // 3
    ];
    let (bars, builder) = build(&[Period::M1], &ticks);
    let rb: Vec<Bar> = bars.into_iter().filter(|b| b.instrument_id == "rb2605").collect();
    let b = |s, e, ohlc, v, to, n, seq, f| {
        bar("rb2605", "SHFE", d, Period::M1, s, e, ohlc, v, to, (1000.0, 0.0), n, seq, f)
    };
    // rb's trading day began with the night: the first tick seen at 09:00 is the baseline.
    assert_bars(
        &rb,
        &[
            b((d, "09:00"), (d, "09:01"), [3500.0; 4], 0, 0.0, 1, (1, 1), flags::PARTIAL),
            b((d, "09:01"), (d, "09:02"), [3501.0; 4], 13 - 10, 30.0, 1, (3, 3), 0),
        ],
    );
    assert_eq!(builder.counters().late, 1);
}

/// One instrument's trading day of rb (night 21:00-23:00 and three day segments) as offsets.
fn rb_instants() -> Vec<(u32, u32)> {
    let (n, d) = (20260310, 20260311);
    let mut spans = vec![(n, 20 * 3600 + 55 * 60, 23 * 3600 + 1)];
    for (from, to) in [
        (8 * 3600 + 55 * 60, 10 * 3600 + 15 * 60 + 1),
        (10 * 3600 + 30 * 60, 11 * 3600 + 30 * 60 + 1),
        (13 * 3600 + 30 * 60, 15 * 3600 + 1),
    ] {
        spans.push((d, from, to));
    }
    spans.into_iter().flat_map(|(day, from, to)| (from..to).step_by(7).map(move |s| (day, s))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 128 }, ..ProptestConfig::default() })]

    /// For any tick sequence within a trading day (times in session, increasing; cumulative
    /// Volume moving up and sometimes down; a timer firing now and then), every period's bar
    /// volumes sum to the highest cumulative Volume minus the baseline: 0 when the first tick is
    /// in the first section's auction or first minute, else the first tick's Volume.
    #[test]
    fn bar_volumes_sum_to_the_days_volume(
        picks in proptest::collection::vec((0usize..3000, 0i64..50, any::<bool>(), any::<bool>()), 1..200),
        start in 0usize..2,
    ) {
        let instants = rb_instants();
        let mut at: Vec<usize> = picks.iter().map(|p| p.0 * instants.len() / 3000).collect();
        at.sort_unstable();
        if start == 0 {
            at[0] = 0; // the night auction
        }
        let mut k = Ticks::new("rb2605", Exchange::Shfe, 20260311);
        let mut builder = Builder::new(market(), &Period::ALL, 2_000);
        let mut out = Vec::new();
        let (mut volume, mut highest, mut first) = (0i64, 0i64, None);
        for (&i, &(_, step, down, timer)) in at.iter().zip(&picks) {
            volume = if down { (volume - step).max(0) } else { volume + step };
            let (day, secs) = instants[i];
            let hms = format!("{:02}:{:02}:{:02}.000", secs / 3600, secs / 60 % 60, secs % 60);
            let t = k.at(day, &hms, 3500.0, volume, volume as f64 * 10.0, 1000.0);
            if timer {
                builder.idle(t.publish_ns, 0, &mut out);
            }
            builder.on_tick(&t, &mut out);
            first.get_or_insert(volume);
            highest = highest.max(volume);
        }
        builder.close_all(&mut out);
        // The day's start: the night auction (20:55) up to the end of its first minute (21:01).
        let (day0, secs0) = instants[at[0]];
        let baseline = if day0 == 20260310 && secs0 < 21 * 3600 + 60 { 0 } else { first.unwrap() };
        prop_assert_eq!(builder.counters().late, 0);
        for period in Period::ALL {
            let sum: i64 = out.iter().filter(|b| b.period == period).map(|b| b.volume).sum();
            prop_assert_eq!(sum, highest - baseline, "{:?}", period);
            prop_assert!(out.iter().all(|b| b.volume >= 0));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 64 }, ..ProptestConfig::default() })]

    /// Live (ticks with the idle timer firing between them, its wall time less the margin never past
    /// the next tick's publish time) and replay (the same ticks, no timer, then the clock live ended
    /// at) emit the same bars in the same order, byte for byte: the timer only closes earlier what the
    /// next tick would close.
    #[test]
    fn the_timer_changes_when_bars_close_never_which_or_in_what_order(
        steps in proptest::collection::vec((0usize..3, 1i64..90_000, 0i64..3_000, proptest::option::of(0i64..120_000)), 1..150),
    ) {
        let d = 20260311;
        let mut sources = [
            Ticks::new("rb2605", Exchange::Shfe, d),
            Ticks::new("SR605", Exchange::Czce, d),
            Ticks::new("IF2606", Exchange::Cffex, d),
        ];
        for (i, s) in sources.iter_mut().enumerate() {
            s.sequence = i as u64 * 1_000_000;
        }
        // Market time from 09:30 (every product in session), each tick later than the last.
        let mut local_ms = (9 * 3600 + 30 * 60) * 1000i64;
        let mut volumes = [0i64; 3];
        let mut ticks = Vec::new();
        for &(which, advance, latency, _) in &steps {
            local_ms = (local_ms + advance).min((14 * 3600 + 59 * 60) * 1000);
            volumes[which] += 1;
            let secs = (local_ms / 1000) as u32;
            let hms = format!("{:02}:{:02}:{:02}.{:03}", secs / 3600, secs / 60 % 60, secs % 60, local_ms % 1000);
            let mut t = sources[which].at(d, &hms, 100.0 + volumes[which] as f64, volumes[which], 0.0, 1.0);
            t.publish_ns = t.exchange_time_ns + latency * 1_000_000;
            ticks.push(t);
        }
        // Publish times in feed order (the ring's order) never go back.
        for i in 1..ticks.len() {
            ticks[i].publish_ns = ticks[i].publish_ns.max(ticks[i - 1].publish_ns);
        }
        let margin = 1_000_000_000;
        let mut live = Builder::new(market(), &Period::ALL, 2_000);
        let mut live_out = Vec::new();
        for (i, t) in ticks.iter().enumerate() {
            live.on_tick(t, &mut live_out);
            if let (Some(next), Some(wait)) = (ticks.get(i + 1), steps[i].3) {
                // The timer fires at a wall time whose margin-less value is at most the next publish.
                let wall = (t.publish_ns + wait * 1_000_000).min(next.publish_ns + margin);
                live.idle(wall, margin, &mut live_out);
            }
        }
        let mut replay = Builder::new(market(), &Period::ALL, 2_000);
        let mut replay_out = Vec::new();
        for t in &ticks {
            replay.on_tick(t, &mut replay_out);
        }
        replay.advance_clock(live.clock(), &mut replay_out);
        let json = |bars: &[Bar]| bars.iter().map(Bar::to_json).collect::<Vec<_>>();
        prop_assert_eq!(json(&live_out), json(&replay_out));
        prop_assert_eq!(live.open_bars().count(), replay.open_bars().count());
    }
}
