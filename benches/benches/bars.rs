//! qilin-bars' builder throughput: ticks per second through `Builder::on_tick` with every period
//! (1, 5, 15, 30, 60 min and the trading day) built, closed bars collected. The target is ≥ 1 M
//! ticks/s (issue 22): the builder must keep up with a burst far above CTP's full market
//! (≈ 20 k ticks/s).
//!
//! Run: `cargo bench -p qilin-benches --bench bars`. Two tick sets, built once, each a batch per
//! iteration (a fresh builder every time, so day set-up is counted):
//!
//! - **dense**: 200 instruments of the product table, one tick each per 500 ms round from 09:31
//!   (every product in session), 100 000 ticks: CTP's cadence, a 1-minute bar every 120 ticks.
//! - **day**: the same instruments over a whole trading day (night 21:00 to 15:00, every product
//!   at its own sessions, ticks outside them counted and skipped), a round every 130 s: a bar closed
//!   every tick or two, the emission-heavy case.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qilin_market::{Date, Kind, Market, date::utc_ns};
use qilin_shm::{Exchange, TickRecord};
use qilin_sidecar::bars::{Builder, Period};

const TICKS: usize = 100_000;
const INSTRUMENTS: usize = 200;

fn market() -> Market {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
    Market::find(Some(&path)).unwrap().unwrap()
}

/// `TICKS` ticks, rounds of every instrument, round `r` at `start_ms + r * step_ms` local ms of
/// 2026-03-10 (the evening before trading day 2026-03-11).
fn ticks(market: &Market, start_ms: i64, step_ms: i64) -> Vec<TickRecord> {
    let ids: Vec<(String, Exchange)> = market
        .instruments
        .products()
        .iter()
        .filter(|p| p.kind == Kind::Future)
        .flat_map(|p| p.instruments.iter().map(move |i| (i.clone(), p.exchange)))
        .cycle()
        .take(INSTRUMENTS)
        .collect();
    let evening = Date::from_ymd(20260310).unwrap();
    let mut out = Vec::with_capacity(TICKS);
    for i in 0..TICKS {
        let (round, k) = (i / INSTRUMENTS, i % INSTRUMENTS);
        let local = start_ms + round as i64 * step_ms;
        let day = evening.add_days(local.div_euclid(86_400_000));
        let ms = local.rem_euclid(86_400_000) as u32;
        let mut t = TickRecord::ZERO;
        t.sequence = i as u64 + 1;
        t.instrument_index = k as u32;
        let (id, exchange) = &ids[k];
        t.instrument_id[..id.len()].copy_from_slice(id.as_bytes());
        t.exchange = *exchange as u8;
        t.trading_day = 20260311;
        t.action_day = day.ymd;
        t.update_time_ms = ms;
        t.exchange_time_ns = utc_ns(day, ms / 1000, ms % 1000);
        t.publish_ns = t.exchange_time_ns + 1_000_000;
        t.last_price = 3000.0 + (i % 17) as f64;
        t.volume = round as i64 * 3;
        t.turnover = t.volume as f64 * 30_000.0;
        t.open_interest = 10_000.0 + (round % 50) as f64;
        out.push(t);
    }
    out
}

fn bench(c: &mut Criterion) {
    let market = market();
    let dense = ticks(&market, 86_400_000 + (9 * 60 + 31) * 60_000, 500);
    let day = ticks(&market, 20 * 3_600_000 + 55 * 60_000, 130_000);
    let mut group = c.benchmark_group("bars");
    group.throughput(Throughput::Elements(TICKS as u64));
    for (name, set) in [("dense", &dense), ("day", &day)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut builder = Builder::new(market.clone(), &Period::ALL, 2000);
                let mut out = Vec::with_capacity(4096);
                for t in set.iter() {
                    builder.on_tick(t, &mut out);
                    if out.len() >= 4096 {
                        out.clear();
                    }
                }
                builder.close_all(&mut out);
                builder.counters()
            })
        });
        let mut builder = Builder::new(market.clone(), &Period::ALL, 2000);
        let mut out = Vec::new();
        for t in set.iter() {
            builder.on_tick(t, &mut out);
        }
        builder.close_all(&mut out);
        let c = builder.counters();
        println!("bars/{name}: {} ticks, {} used, {} outside, {} bars", c.ticks, c.used, c.outside, out.len());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
