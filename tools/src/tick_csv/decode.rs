//! Reading the CSV tick format: columns by header name (any order), every cell checked, every
//! error naming the file, the line and the column. See the module documentation of `tick_csv` and
//! docs/CSV.md for what is derived when columns are missing.

use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
};

use qilin_shm::{Exchange, Source, TickRecord, layout::fixed_id, quality};

use super::{COLUMNS, F64_FIELDS, Field, IGNORED_COLUMNS};
use qilin_market::{
    Calendar, Date, Market,
    date::{parse_hms, utc_ns},
    quality::absent_where_expected,
};

pub use qilin_market::quality::ABSENT_FROM;

/// A CSV file that cannot be read as ticks, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}: {message}", path.display(), line.map(|l| format!(": line {l}")).unwrap_or_default(),
    column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct CsvError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (the header is line 1), when the problem is in one.
    pub line: Option<u64>,
    /// `<n> (<name>)`, 1-based, when the problem is in one cell.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// What a file lacked and what was derived instead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Derived {
    /// No `quality` column: a vendor file; the core's normalization rules were applied.
    pub vendor: bool,
    /// Columns of the format the file does not have.
    pub missing: Vec<&'static str>,
    /// Header names ignored (CTP fields the record does not store).
    pub ignored: Vec<String>,
    /// Vendor rows whose product was not in the product file (no AveragePrice scaling, no stale flag).
    pub rows_without_product: u64,
}

#[derive(Clone, Copy, Debug)]
struct InstrumentState {
    index: u32,
    trading_day: u32,
    volume: i64,
    turnover: f64,
}

/// Reads ticks from CSV.
pub struct TickCsvReader<R: Read> {
    path: PathBuf,
    inner: ::csv::Reader<R>,
    /// Per file column: the field it fills, or `None` (ignored).
    fields: Vec<Option<Field>>,
    names: Vec<String>,
    has: HashMap<&'static str, usize>,
    market: Option<Market>,
    calendar: Calendar,
    derived: Derived,
    instruments: HashMap<[u8; 32], InstrumentState>,
    row: ::csv::ByteRecord,
    line: u64,
}

impl<R: Read> std::fmt::Debug for TickCsvReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickCsvReader").field("path", &self.path).finish()
    }
}

impl TickCsvReader<std::fs::File> {
    /// Opens a file.
    pub fn open(path: &Path, market: Option<Market>) -> Result<Self, CsvError> {
        let file = std::fs::File::open(path).map_err(|e| CsvError {
            path: path.to_owned(),
            line: None,
            column: None,
            message: format!("opening: {e}"),
        })?;
        TickCsvReader::new(file, path, market)
    }
}

impl<R: Read> TickCsvReader<R> {
    /// Reads and checks the header line. `path` names the input in errors; `products` (the core's
    /// product file) lets a vendor file get the exchange, AveragePrice scaling and stale flags.
    pub fn new(input: R, path: &Path, market: Option<Market>) -> Result<Self, CsvError> {
        let mut inner = ::csv::ReaderBuilder::new().trim(::csv::Trim::All).from_reader(input);
        let error = |message: String| CsvError { path: path.to_owned(), line: Some(1), column: None, message };
        let header = inner.byte_headers().map_err(|e| error(format!("reading the header: {e}")))?.clone();
        let mut fields = Vec::new();
        let mut names = Vec::new();
        let mut has = HashMap::new();
        let mut derived = Derived::default();
        for (i, raw) in header.iter().enumerate() {
            let name = std::str::from_utf8(raw).map_err(|_| error(format!("column {}: name is not UTF-8", i + 1)))?;
            names.push(name.to_owned());
            if let Some((known, field)) = COLUMNS.iter().find(|(n, _)| *n == name) {
                if has.insert(*known, i).is_some() {
                    return Err(error(format!("column {name:?} appears twice")));
                }
                fields.push(Some(*field));
            } else if IGNORED_COLUMNS.contains(&name) {
                derived.ignored.push(name.to_owned());
                fields.push(None);
            } else {
                return Err(error(format!(
                    "column {} {name:?} is not a column of the format (names are CTP's, case-sensitive; see \
                     docs/CSV.md): {}",
                    i + 1,
                    COLUMNS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",")
                )));
            }
        }
        for required in ["TradingDay", "InstrumentID", "UpdateTime"] {
            if !has.contains_key(required) {
                return Err(error(format!("the required column {required} is missing")));
            }
        }
        derived.missing = COLUMNS.iter().map(|(n, _)| *n).filter(|n| !has.contains_key(n)).collect();
        derived.vendor = !has.contains_key("quality");
        Ok(TickCsvReader {
            path: path.to_owned(),
            inner,
            fields,
            names,
            has,
            calendar: market.as_ref().map_or_else(Calendar::weekdays_only, |m| m.calendar.clone()),
            market,
            derived,
            instruments: HashMap::new(),
            row: ::csv::ByteRecord::new(),
            line: 1,
        })
    }

    /// Whether the file has the column.
    pub fn has_column(&self, name: &str) -> bool {
        self.has.contains_key(name)
    }

    /// What the file lacked (complete once every row is read).
    pub fn derived(&self) -> &Derived {
        &self.derived
    }

    /// The line the last row read started on.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next tick; `Ok(None)` at the end. A file without a `sequence` column gives sequence 0.
    pub fn next_tick(&mut self) -> Result<Option<TickRecord>, CsvError> {
        match self.inner.read_byte_record(&mut self.row) {
            Ok(false) => return Ok(None),
            Ok(true) => self.line = self.row.position().map_or(self.line + 1, |p| p.line()),
            Err(e) => {
                return Err(CsvError {
                    path: self.path.clone(),
                    line: e.position().map(|p| p.line()),
                    column: None,
                    message: e.to_string(),
                });
            }
        }
        self.decode_row().map(Some)
    }

    fn cell_error(&self, i: usize, message: String) -> CsvError {
        CsvError {
            path: self.path.clone(),
            line: Some(self.line()),
            column: Some(format!("{} ({})", i + 1, self.names[i])),
            message,
        }
    }

    fn decode_row(&mut self) -> Result<TickRecord, CsvError> {
        let vendor = self.derived.vendor;
        let mut t = TickRecord::ZERO;
        for (_, access) in F64_FIELDS {
            *access(&mut t) = f64::NAN;
        }
        let mut flags = 0u32;
        let (mut trading, mut action, mut secs, mut millis) = (None, None, 0u32, 0u32);
        let (mut exchange_time, mut receive, mut index) = (None, None, None);
        let mut row = std::mem::take(&mut self.row);
        let result = (|| {
            for (i, field) in self.fields.iter().enumerate() {
                let Some(field) = *field else { continue };
                let raw = row.get(i).unwrap_or_default();
                let text = std::str::from_utf8(raw).map_err(|_| self.cell_error(i, "not UTF-8 text".into()))?;
                let bad = |what: &str| self.cell_error(i, format!("{text:?} is not {what}"));
                match field {
                    Field::TradingDay => trading = Some(Date::parse(text).ok_or_else(|| bad("a YYYYMMDD date"))?),
                    Field::ActionDay if text.is_empty() => {}
                    Field::ActionDay => action = Some(Date::parse(text).ok_or_else(|| bad("a YYYYMMDD date"))?),
                    Field::InstrumentId => {
                        t.instrument_id = fixed_id(text)
                            .filter(|_| !text.is_empty())
                            .ok_or_else(|| bad("an InstrumentID (1 to 31 ASCII characters)"))?;
                    }
                    Field::ExchangeId => t.exchange = parse_exchange(text).ok_or_else(|| bad("an ExchangeID"))?,
                    Field::F64(k) => *F64_FIELDS[k].1(&mut t) = self.parse_f64(i, text, vendor)?,
                    Field::Volume => t.volume = number(text).ok_or_else(|| bad("an integer"))?,
                    Field::UpdateTime => secs = parse_hms(text).ok_or_else(|| bad("a time HH:MM:SS"))?,
                    Field::UpdateMillisec => {
                        millis = number(text).filter(|m| *m < 1000).ok_or_else(|| bad("milliseconds 0 to 999"))?
                    }
                    Field::BidVolume(k) => t.bid_volume[k] = number(text).ok_or_else(|| bad("a 32-bit integer"))?,
                    Field::AskVolume(k) => t.ask_volume[k] = number(text).ok_or_else(|| bad("a 32-bit integer"))?,
                    Field::Sequence => t.sequence = number(text).ok_or_else(|| bad("a sequence number"))?,
                    Field::InstrumentIndex => index = Some(number(text).ok_or_else(|| bad("an index"))?),
                    Field::ExchangeTimeNs => exchange_time = Some(number(text).ok_or_else(|| bad("nanoseconds"))?),
                    Field::ReceiveNs => receive = Some(number(text).ok_or_else(|| bad("nanoseconds"))?),
                    Field::PublishNs => t.publish_ns = number(text).ok_or_else(|| bad("nanoseconds"))?,
                    Field::Source => t.source = parse_source(text).ok_or_else(|| bad("a source"))?,
                    Field::Quality => t.quality = parse_quality(text).ok_or_else(|| bad("quality flag names"))?,
                }
            }
            Ok::<(), CsvError>(())
        })();
        std::mem::swap(&mut self.row, &mut row);
        result?;
        let trading = trading.expect("TradingDay is a required column");
        let product = self.market.as_ref().and_then(|m| m.spec_for(t.instrument_id_str().unwrap_or_default()));
        if vendor && t.exchange == 0 {
            t.exchange = product.map_or(0, |p| p.exchange as u8);
        }
        // An unknown exchange takes its days as sent, as SHFE, INE, CFFEX and GFEX do.
        let exchange = Exchange::from_code(t.exchange).unwrap_or(Exchange::Shfe);
        t.update_time_ms = secs * 1000 + millis;
        let days = self.calendar.tick_days(exchange, trading, action, secs);
        if vendor {
            t.trading_day = days.trading.ymd;
            t.action_day = days.calendar.ymd;
            if days.derived_calendar {
                flags |= quality::DERIVED_ACTION_DAY;
            }
        } else {
            t.trading_day = trading.ymd;
            t.action_day = action.unwrap_or(days.calendar).ymd;
        }
        let calendar = Date::from_ymd(t.action_day).expect("a checked date");
        t.exchange_time_ns = exchange_time.unwrap_or_else(|| utc_ns(calendar, secs, millis));
        t.receive_ns = receive.unwrap_or(t.exchange_time_ns);
        let next_index = self.instruments.len() as u32;
        let state = self.instruments.entry(t.instrument_id).or_insert(InstrumentState {
            index: next_index,
            trading_day: 0,
            volume: 0,
            turnover: f64::NAN,
        });
        t.instrument_index = index.unwrap_or(state.index);
        if vendor {
            match product {
                Some(p) => {
                    // Per unit everywhere, as the core does (a normalization, not flagged).
                    if exchange != Exchange::Czce && p.volume_multiple > 0 && !t.average_price.is_nan() {
                        t.average_price /= f64::from(p.volume_multiple);
                    }
                    if !self.calendar.in_session(p, days.calendar, t.update_time_ms) {
                        flags |= quality::STALE_SNAPSHOT;
                    }
                }
                None => self.derived.rows_without_product += 1,
            }
            if state.trading_day == t.trading_day {
                if t.volume < state.volume {
                    flags |= quality::VOLUME_REGRESSION;
                }
                if t.turnover < state.turnover {
                    flags |= quality::TURNOVER_REGRESSION;
                }
            } else {
                state.turnover = f64::NAN;
            }
            state.trading_day = t.trading_day;
            state.volume = t.volume;
            if !t.turnover.is_nan() {
                state.turnover = t.turnover;
            }
            if absent_where_expected(&t) {
                flags |= quality::ABSENT_PRICE;
            }
            t.quality = flags;
        }
        Ok(t)
    }

    fn parse_f64(&self, i: usize, text: &str, vendor: bool) -> Result<f64, CsvError> {
        if text.is_empty() {
            return Ok(f64::NAN);
        }
        let x: f64 = text.parse().map_err(|_| self.cell_error(i, format!("{text:?} is not a number")))?;
        if !vendor {
            return Ok(x);
        }
        if !x.is_finite() {
            return Err(self.cell_error(i, format!("{text:?}: infinite or NaN (the core rejects such a tick)")));
        }
        if x.abs() >= ABSENT_FROM {
            return Ok(f64::NAN);
        }
        Ok(x)
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.parse().ok()
}

/// `ExchangeID`: a name ("SHFE", any case), a code in decimal, or empty (0).
pub fn parse_exchange(text: &str) -> Option<u8> {
    if text.is_empty() {
        return Some(0);
    }
    if let Some(e) = Exchange::from_id(&text.to_ascii_uppercase()) {
        return Some(e as u8);
    }
    text.bytes().all(|b| b.is_ascii_digit()).then(|| text.parse().ok()).flatten()
}

/// `source`: a name ("primary", "sim", …), a code in decimal, or empty (0).
pub fn parse_source(text: &str) -> Option<u8> {
    if text.is_empty() {
        return Some(0);
    }
    if let Some(code) = (1..=u8::MAX).find(|c| Source::from_code(*c).is_some_and(|s| s.as_str() == text)) {
        return Some(code);
    }
    text.bytes().all(|b| b.is_ascii_digit()).then(|| text.parse().ok()).flatten()
}

/// `quality`: flag names and `0x…` terms joined by `|`, or empty (0).
pub fn parse_quality(text: &str) -> Option<u32> {
    if text.is_empty() {
        return Some(0);
    }
    let mut flags = 0;
    for term in text.split('|') {
        let term = term.trim();
        flags |= match quality::NAMES.iter().find(|(_, name)| *name == term) {
            Some((bit, _)) => *bit,
            None => u32::from_str_radix(term.strip_prefix("0x")?, 16).ok()?,
        };
    }
    Some(flags)
}
