//! Cost of turning one raw 584-byte CTP 6.7.x struct into a `TickRecord` on the hot thread
//! (design target: ≤ 40 ns median for parse + normalize), and of each half alone.
//!
//! `QILIN_LOOP=N` (optionally `QILIN_LOOP_WHAT=parse|normalize`) runs parse + normalize N times
//! and exits without criterion, for instruction counts that do not depend on the machine's load:
//! `valgrind --tool=callgrind` or `perf stat -e instructions` at two N, difference ÷ ΔN.

use std::{hint::black_box, path::Path};

use criterion::{Criterion, criterion_group};
use qilin_core::{
    ctp::{RawFields, RawTick},
    normalize::{InstrumentState, Portable, normalize},
};
use qilin_market::{Calendar, Instruments};
use qilin_shm::{Source, TickRecord};

/// A live SHFE rebar tick in the day session, with a few absent (DBL_MAX) prices as CTP sends them.
fn rebar_tick() -> [u8; 584] {
    RawFields {
        trading_day: "20250512".into(),
        instrument_id: "rb2510".into(),
        exchange_id: "SHFE".into(),
        exchange_inst_id: "rb2510".into(),
        last_price: 3101.0,
        pre_settlement_price: 3090.0,
        pre_close_price: 3088.0,
        pre_open_interest: 1_800_000.0,
        open_price: 3095.0,
        highest_price: 3110.0,
        lowest_price: 3080.0,
        volume: 123_456,
        turnover: 3_822_000_000.0,
        open_interest: 1_812_345.0,
        close_price: f64::MAX,
        settlement_price: f64::MAX,
        upper_limit_price: 3337.0,
        lower_limit_price: 2842.0,
        pre_delta: f64::MAX,
        curr_delta: f64::MAX,
        update_time: "10:00:00".into(),
        update_millisec: 500,
        bid_price: [3100.0, 3099.0, 3098.0, 3097.0, 3096.0],
        bid_volume: [10, 20, 30, 40, 50],
        ask_price: [3101.0, 3102.0, 3103.0, 3104.0, 3105.0],
        ask_volume: [11, 21, 31, 41, 51],
        average_price: 30_958.5,
        action_day: "20250512".into(),
        banding_upper_price: 3200.0,
        banding_lower_price: 3000.0,
    }
    .to_v67_bytes()
}

fn bench_normalize(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
    let instruments = Instruments::load(&path).expect("config/instruments.toml");
    let spec = instruments.spec_for("rb2510").expect("rb in the instruments file");
    let calendar =
        Calendar::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/calendar")).expect("config/calendar");
    let calendar = &calendar;
    let bytes = rebar_tick();
    let mut state = InstrumentState::new();
    let mut out = TickRecord::ZERO;

    let mut group = c.benchmark_group("normalize");
    group.bench_function("parse_and_normalize_v67", |b| {
        b.iter(|| {
            let raw = RawTick::parse(black_box(&bytes[..])).unwrap();
            normalize(Portable, &raw, spec, calendar, &mut state, black_box(1), Source::Udp, 0, &mut out).unwrap();
            black_box(&out);
        })
    });
    group.bench_function("parse_v67", |b| b.iter(|| black_box(RawTick::parse(black_box(&bytes[..])).unwrap())));
    let raw = RawTick::parse(&bytes).unwrap();
    group.bench_function("normalize_only", |b| {
        b.iter(|| {
            normalize(Portable, black_box(&raw), spec, calendar, &mut state, black_box(1), Source::Udp, 0, &mut out)
                .unwrap();
            black_box(&out);
        })
    });
    group.finish();
}

/// The `QILIN_LOOP` mode: a plain loop, no criterion, no timing.
fn count_loop(n: u64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
    let instruments = Instruments::load(&path).expect("config/instruments.toml");
    let spec = instruments.spec_for("rb2510").expect("rb in the instruments file");
    let calendar =
        Calendar::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/calendar")).expect("config/calendar");
    let calendar = &calendar;
    let bytes = rebar_tick();
    let mut state = InstrumentState::new();
    let mut out = TickRecord::ZERO;
    let what = std::env::var("QILIN_LOOP_WHAT").unwrap_or_default();
    let raw = RawTick::parse(&bytes).unwrap();
    match what.as_str() {
        "parse" => {
            for _ in 0..n {
                black_box(RawTick::parse(black_box(&bytes[..])).unwrap());
            }
        }
        "normalize" => {
            for _ in 0..n {
                normalize(
                    Portable,
                    black_box(&raw),
                    spec,
                    calendar,
                    &mut state,
                    black_box(1),
                    Source::Udp,
                    0,
                    &mut out,
                )
                .unwrap();
                black_box(&out);
            }
        }
        _ => {
            for _ in 0..n {
                let raw = RawTick::parse(black_box(&bytes[..])).unwrap();
                normalize(Portable, &raw, spec, calendar, &mut state, black_box(1), Source::Udp, 0, &mut out).unwrap();
                black_box(&out);
            }
        }
    }
}

criterion_group!(benches, bench_normalize);

fn main() {
    if let Some(n) = std::env::var("QILIN_LOOP").ok().and_then(|v| v.parse().ok()) {
        return count_loop(n);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
