//! A bar segment with sample bars, and the canonical text line of a bar, shared by the C and
//! Python reader tests (c_bars.rs, python_bars.rs): every field, doubles as their bits.

use std::path::Path;

use qilin_shm::{BarPeriod, BarReader, BarRecord, BarWriter, Exchange, Next, Start, bar_flags, layout::fixed_id};

use super::common::options;

pub fn line(what: &str, b: &BarRecord) -> String {
    let id = qilin_shm::layout::id_str(&b.instrument_id).unwrap();
    format!(
        "{what} {} {} {} {} {} {} {} {} {} {id} {:016x} {:016x} {:016x} {:016x} {} {:016x} {:016x} {:016x} {} {}",
        b.sequence,
        b.start_ns,
        b.end_ns,
        b.instrument_index,
        b.trading_day,
        b.flags,
        b.ticks,
        b.exchange,
        b.period,
        b.open.to_bits(),
        b.high.to_bits(),
        b.low.to_bits(),
        b.close.to_bits(),
        b.volume,
        b.turnover.to_bits(),
        b.open_interest.to_bits(),
        b.open_interest_change.to_bits(),
        b.first_sequence,
        b.last_sequence
    )
}

/// A bar segment with bars of two instruments and three periods, one without prices (NaN).
pub fn write_bars(path: &Path) {
    let mut writer = BarWriter::open_segment(path, &options(16, 4)).unwrap();
    for (k, (id, exchange)) in [("rb2605", Exchange::Shfe), ("SR605", Exchange::Czce)].into_iter().enumerate() {
        let index = writer.add_instrument(id, exchange, 10, 1.0).unwrap();
        for (j, period) in [BarPeriod::M1, BarPeriod::M5, BarPeriod::M1, BarPeriod::Day].into_iter().enumerate() {
            let mut b = BarRecord::ZERO;
            b.instrument_index = index;
            b.instrument_id = fixed_id(id).unwrap();
            b.exchange = exchange as u8;
            b.period = period as u8;
            b.trading_day = 20260311;
            b.start_ns = 1_773_190_800_000_000_000 + 60_000_000_000 * j as i64;
            b.end_ns = b.start_ns + 60_000_000_000;
            let price = if k == 1 && j == 2 { f64::NAN } else { 3100.5 + j as f64 };
            (b.open, b.high, b.low, b.close) = (price, price + 2.0, price - 1.5, price + 0.5);
            b.volume = 10 * j as i64 + k as i64;
            b.turnover = 1.25e6 * j as f64;
            b.open_interest = 5000.0 - j as f64;
            b.open_interest_change = -(j as f64);
            b.ticks = 3 + j as u32;
            b.first_sequence = 100 * j as u64 + 1;
            b.last_sequence = 100 * j as u64 + 3;
            b.flags = if j == 3 { bar_flags::PARTIAL | bar_flags::ABSENT_PRICE } else { 0 };
            writer.publish(&mut b).unwrap();
        }
    }
}

pub fn rust_lines(path: &Path) -> Vec<String> {
    let mut reader = BarReader::open_segment(path).unwrap();
    reader.seek(Start::Oldest);
    let mut bar = BarRecord::ZERO;
    let mut out = Vec::new();
    while reader.try_next(&mut bar) == Next::Tick {
        out.push(line("bar", &bar));
    }
    for index in 0..reader.directory_len() {
        for period in BarPeriod::ALL {
            if reader.latest_bar(index, period, &mut bar) == Ok(true) {
                out.push(line("last", &bar));
            }
        }
    }
    out
}
