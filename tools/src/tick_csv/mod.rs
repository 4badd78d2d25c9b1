//! The CSV tick format (docs/CSV.md): one header line, then one line per tick. The columns are
//! CTP's `CThostFtdcDepthMarketDataField` fields in the order CTP users export them, then the
//! feed's own ([`COLUMNS`]). Writing ([`TickCsvWriter`]) and reading ([`TickCsvReader`]) are
//! exact inverses: a record written and read back is the same 376 bytes, and a file read and
//! written again is the same bytes.
//!
//! - Doubles: NaN (an absent price) is an empty cell; every other value is Rust's shortest
//!   representation that reads back to the same double (`{}`, or `{:e}` below 1e-5 and from 1e16
//!   on, so no cell runs to hundreds of digits). `-0` stays negative zero.
//! - Integers in decimal; days `YYYYMMDD`; `UpdateTime` `HH:MM:SS` with `UpdateMillisec` 0–999.
//! - `ExchangeID`, `source`: the names ("SHFE", "sim"); a code without a name in decimal; code 0 empty.
//! - `quality`: the flag names joined by `|` (`absent_price|stale_snapshot`), bits without a name
//!   as one `0x…` term; no flag: empty.
//!
//! A file without the `quality` column is a vendor export of raw CTP data: [`TickCsvReader`] then applies
//! the core's normalization rules that a file can carry (DBL_MAX → NaN, night-session days,
//! AveragePrice per unit, the flags) and derives the feed's columns. This module owns the format
//! only; it does no file-level policy (sequences, journals): see `journal_cli`.

mod decode;
#[cfg(test)]
mod tests;

use std::{fmt::Write as _, io::Write};

use qilin_shm::{Exchange, Source, TickRecord, quality};

pub use self::decode::{CsvError, Derived, TickCsvReader};

/// A field of the record a column carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `trading_day`.
    TradingDay,
    /// `instrument_id`.
    InstrumentId,
    /// `exchange`.
    ExchangeId,
    /// A double: index into [`F64_FIELDS`].
    F64(usize),
    /// `volume`.
    Volume,
    /// `update_time_ms / 1000`.
    UpdateTime,
    /// `update_time_ms % 1000`.
    UpdateMillisec,
    /// `bid_volume[i]`.
    BidVolume(usize),
    /// `ask_volume[i]`.
    AskVolume(usize),
    /// `action_day`.
    ActionDay,
    /// `sequence`.
    Sequence,
    /// `instrument_index`.
    InstrumentIndex,
    /// `exchange_time_ns`.
    ExchangeTimeNs,
    /// `receive_ns`.
    ReceiveNs,
    /// `publish_ns`.
    PublishNs,
    /// `source`.
    Source,
    /// `quality`.
    Quality,
}

/// Mutable access to one double of a record.
pub type F64Access = fn(&mut TickRecord) -> &mut f64;

/// Every double of the record, by CTP name.
pub const F64_FIELDS: [(&str, F64Access); 28] = [
    ("LastPrice", |t| &mut t.last_price),
    ("PreSettlementPrice", |t| &mut t.pre_settlement_price),
    ("PreClosePrice", |t| &mut t.pre_close_price),
    ("PreOpenInterest", |t| &mut t.pre_open_interest),
    ("OpenPrice", |t| &mut t.open_price),
    ("HighestPrice", |t| &mut t.highest_price),
    ("LowestPrice", |t| &mut t.lowest_price),
    ("Turnover", |t| &mut t.turnover),
    ("OpenInterest", |t| &mut t.open_interest),
    ("ClosePrice", |t| &mut t.close_price),
    ("SettlementPrice", |t| &mut t.settlement_price),
    ("UpperLimitPrice", |t| &mut t.upper_limit_price),
    ("LowerLimitPrice", |t| &mut t.lower_limit_price),
    ("PreDelta", |t| &mut t.pre_delta),
    ("CurrDelta", |t| &mut t.curr_delta),
    ("BidPrice1", |t| &mut t.bid_price[0]),
    ("AskPrice1", |t| &mut t.ask_price[0]),
    ("BidPrice2", |t| &mut t.bid_price[1]),
    ("AskPrice2", |t| &mut t.ask_price[1]),
    ("BidPrice3", |t| &mut t.bid_price[2]),
    ("AskPrice3", |t| &mut t.ask_price[2]),
    ("BidPrice4", |t| &mut t.bid_price[3]),
    ("AskPrice4", |t| &mut t.ask_price[3]),
    ("BidPrice5", |t| &mut t.bid_price[4]),
    ("AskPrice5", |t| &mut t.ask_price[4]),
    ("AveragePrice", |t| &mut t.average_price),
    ("BandingUpperPrice", |t| &mut t.banding_upper_price),
    ("BandingLowerPrice", |t| &mut t.banding_lower_price),
];

const fn f64_index(name: &str) -> usize {
    let mut i = 0;
    while i < F64_FIELDS.len() {
        if const_eq(F64_FIELDS[i].0, name) {
            return i;
        }
        i += 1;
    }
    panic!("not a double field")
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn p(name: &'static str) -> (&'static str, Field) {
    (name, Field::F64(f64_index(name)))
}

/// Every column, in file order: 45 CTP columns, then 7 of the feed.
pub const COLUMNS: [(&str, Field); 52] = [
    ("TradingDay", Field::TradingDay),
    ("InstrumentID", Field::InstrumentId),
    ("ExchangeID", Field::ExchangeId),
    p("LastPrice"),
    p("PreSettlementPrice"),
    p("PreClosePrice"),
    p("PreOpenInterest"),
    p("OpenPrice"),
    p("HighestPrice"),
    p("LowestPrice"),
    ("Volume", Field::Volume),
    p("Turnover"),
    p("OpenInterest"),
    p("ClosePrice"),
    p("SettlementPrice"),
    p("UpperLimitPrice"),
    p("LowerLimitPrice"),
    p("PreDelta"),
    p("CurrDelta"),
    ("UpdateTime", Field::UpdateTime),
    ("UpdateMillisec", Field::UpdateMillisec),
    p("BidPrice1"),
    ("BidVolume1", Field::BidVolume(0)),
    p("AskPrice1"),
    ("AskVolume1", Field::AskVolume(0)),
    p("BidPrice2"),
    ("BidVolume2", Field::BidVolume(1)),
    p("AskPrice2"),
    ("AskVolume2", Field::AskVolume(1)),
    p("BidPrice3"),
    ("BidVolume3", Field::BidVolume(2)),
    p("AskPrice3"),
    ("AskVolume3", Field::AskVolume(2)),
    p("BidPrice4"),
    ("BidVolume4", Field::BidVolume(3)),
    p("AskPrice4"),
    ("AskVolume4", Field::AskVolume(3)),
    p("BidPrice5"),
    ("BidVolume5", Field::BidVolume(4)),
    p("AskPrice5"),
    ("AskVolume5", Field::AskVolume(4)),
    p("AveragePrice"),
    ("ActionDay", Field::ActionDay),
    p("BandingUpperPrice"),
    p("BandingLowerPrice"),
    ("sequence", Field::Sequence),
    ("instrument_index", Field::InstrumentIndex),
    ("exchange_time_ns", Field::ExchangeTimeNs),
    ("receive_ns", Field::ReceiveNs),
    ("publish_ns", Field::PublishNs),
    ("source", Field::Source),
    ("quality", Field::Quality),
];

/// Number of CTP columns at the front of [`COLUMNS`].
pub const CTP_COLUMNS: usize = 45;

/// CTP fields a vendor file may carry that the record does not: accepted and ignored on import.
pub const IGNORED_COLUMNS: [&str; 3] = ["ExchangeInstID", "reserve1", "reserve2"];

/// A double as written: empty for NaN, else the shortest text that reads back to the same bits.
pub fn format_f64(x: f64, out: &mut String) {
    if x.is_nan() {
        return;
    }
    let magnitude = x.abs();
    if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
        let _ = write!(out, "{x}");
    } else {
        let _ = write!(out, "{x:e}");
    }
}

/// `quality` as written: names joined by `|`, unnamed bits as one `0x…` term.
pub fn format_quality(flags: u32, out: &mut String) {
    let mut rest = flags;
    for (bit, name) in quality::NAMES {
        if flags & bit != 0 {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        if !out.is_empty() {
            out.push('|');
        }
        let _ = write!(out, "{rest:#x}");
    }
}

/// Why a record cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The InstrumentID is not ASCII text.
    #[error("sequence {sequence}: InstrumentID is not ASCII text")]
    InstrumentId {
        /// The record's sequence.
        sequence: u64,
    },
    /// `update_time_ms` is not a time of day.
    #[error("sequence {sequence}: update_time_ms {ms} is not a time of day")]
    UpdateTime {
        /// The record's sequence.
        sequence: u64,
        /// The value.
        ms: u32,
    },
    /// The output failed.
    #[error("writing CSV: {0}")]
    Csv(#[from] ::csv::Error),
}

/// Writes ticks as CSV, header first.
pub struct TickCsvWriter<W: Write> {
    inner: ::csv::Writer<W>,
    row: ::csv::ByteRecord,
    cell: String,
}

impl<W: Write> std::fmt::Debug for TickCsvWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TickCsvWriter")
    }
}

impl<W: Write> TickCsvWriter<W> {
    /// A writer that has written the header line (lines end in `\n`).
    pub fn new(out: W) -> Result<TickCsvWriter<W>, EncodeError> {
        let mut inner = ::csv::WriterBuilder::new().terminator(::csv::Terminator::Any(b'\n')).from_writer(out);
        inner.write_record(COLUMNS.iter().map(|(name, _)| *name))?;
        Ok(TickCsvWriter { inner, row: ::csv::ByteRecord::new(), cell: String::new() })
    }

    /// Writes one tick.
    pub fn write(&mut self, tick: &TickRecord) -> Result<(), EncodeError> {
        let sequence = tick.sequence;
        let id = tick.instrument_id_str().ok_or(EncodeError::InstrumentId { sequence })?;
        if tick.update_time_ms >= qilin_market::date::DAY_MS {
            return Err(EncodeError::UpdateTime { sequence, ms: tick.update_time_ms });
        }
        let mut t = *tick;
        self.row.clear();
        for (_, field) in COLUMNS {
            let cell = &mut self.cell;
            cell.clear();
            let _ = match field {
                Field::TradingDay => write!(cell, "{}", t.trading_day),
                Field::InstrumentId => write!(cell, "{id}"),
                Field::ExchangeId => match (t.exchange, Exchange::from_code(t.exchange)) {
                    (0, _) => Ok(()),
                    (_, Some(e)) => write!(cell, "{}", e.as_str()),
                    (code, None) => write!(cell, "{code}"),
                },
                Field::F64(i) => {
                    format_f64(*(F64_FIELDS[i].1)(&mut t), cell);
                    Ok(())
                }
                Field::Volume => write!(cell, "{}", t.volume),
                Field::UpdateTime => {
                    let s = t.update_time_ms / 1000;
                    write!(cell, "{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                }
                Field::UpdateMillisec => write!(cell, "{}", t.update_time_ms % 1000),
                Field::BidVolume(i) => write!(cell, "{}", t.bid_volume[i]),
                Field::AskVolume(i) => write!(cell, "{}", t.ask_volume[i]),
                Field::ActionDay => write!(cell, "{}", t.action_day),
                Field::Sequence => write!(cell, "{}", t.sequence),
                Field::InstrumentIndex => write!(cell, "{}", t.instrument_index),
                Field::ExchangeTimeNs => write!(cell, "{}", t.exchange_time_ns),
                Field::ReceiveNs => write!(cell, "{}", t.receive_ns),
                Field::PublishNs => write!(cell, "{}", t.publish_ns),
                Field::Source => match (t.source, Source::from_code(t.source)) {
                    (0, _) => Ok(()),
                    (_, Some(s)) => write!(cell, "{}", s.as_str()),
                    (code, None) => write!(cell, "{code}"),
                },
                Field::Quality => {
                    format_quality(t.quality, cell);
                    Ok(())
                }
            };
            self.row.push_field(cell.as_bytes());
        }
        self.inner.write_byte_record(&self.row)?;
        Ok(())
    }

    /// Flushes and returns the output.
    pub fn finish(self) -> Result<W, EncodeError> {
        self.inner.into_inner().map_err(|e| EncodeError::Csv(::csv::Error::from(e.into_error())))
    }
}
