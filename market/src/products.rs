//! Products: exchange, product code, price tick, contract multiplier, trading sessions (China local
//! time), the option series listed on each future and, for the simulator, a few listed contracts
//! and a reference price. Read once at start-up from `config/instruments.toml`; the hot path only
//! reads the result. The file format is described at the top of that file.
//!
//! Instrument ids are looked up by their product code (the leading letters) and their form:
//!
//! | form | exchanges | example |
//! |---|---|---|
//! | future, four-digit month | SHFE, INE, DCE, CFFEX, GFEX | `rb2605`, `IF2606` |
//! | future, three-digit month | CZCE | `SR605` |
//! | option, `compact` | SHFE, INE, CZCE | `cu2606C80000`, `SR605C6000` |
//! | option, `dash` | DCE, CFFEX, GFEX | `m2605-C-3000`, `IO2612-C-4000` |

use std::path::{Path, PathBuf};

use qilin_shm::Exchange;
use serde::Deserialize;

use crate::{
    calendar::Calendar,
    date::{DAY_MS, Date},
};

/// Minutes of call auction counted as "in session" before the first day segment and the night session.
pub const CALL_AUCTION_MS: u32 = 5 * 60_000;
/// Grace after each segment's end: the closing second itself (e.g. a `15:00:00.500` tick) is in session.
pub const CLOSE_GRACE_MS: u32 = 1000;
/// Longest instrument id the feed stores (one less than `qilin_shm::layout::INSTRUMENT_ID_LEN`).
pub const MAX_INSTRUMENT_ID: usize = qilin_shm::layout::INSTRUMENT_ID_LEN - 1;
/// The product file's default location, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/instruments.toml";

/// A trading segment in China local time: `start_ms..end_ms` since local midnight. A segment with
/// `end_ms <= start_ms` crosses midnight (night sessions such as 21:00-02:30).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Open, ms since local midnight.
    pub start_ms: u32,
    /// Close, ms since local midnight.
    pub end_ms: u32,
}

impl Segment {
    /// Parses `"HH:MM-HH:MM"`.
    pub fn parse(text: &str) -> Option<Segment> {
        let (start, end) = text.split_once('-')?;
        Some(Segment { start_ms: hh_mm(start)?, end_ms: hh_mm(end)? })
    }

    /// Whether the segment crosses local midnight.
    pub const fn wraps(self) -> bool {
        self.end_ms <= self.start_ms
    }

    /// Length, ms.
    pub const fn len_ms(self) -> u32 {
        if self.wraps() { self.end_ms + DAY_MS - self.start_ms } else { self.end_ms - self.start_ms }
    }

    /// Whether `ms` lies in `[start − lead_ms, end + CLOSE_GRACE_MS)`, modulo one day.
    #[inline(always)]
    pub const fn contains(self, ms: u32, lead_ms: u32) -> bool {
        // `(start + DAY_MS − lead) % DAY_MS` and `(end + CLOSE_GRACE_MS) % DAY_MS` without a division
        // (both times are below DAY_MS and lead_ms is at most DAY_MS, so one subtraction suffices).
        let from = if self.start_ms >= lead_ms { self.start_ms - lead_ms } else { self.start_ms + DAY_MS - lead_ms };
        let to = self.end_ms + CLOSE_GRACE_MS;
        let to = if to >= DAY_MS { to - DAY_MS } else { to };
        if from <= to { from <= ms && ms < to } else { ms >= from || ms < to }
    }
}

fn hh_mm(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![b[0], b[1], b[3], b[4]].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    let (h, m) = (num(0), num(3));
    (h < 24 && m < 60).then_some((h * 60 + m) * 60_000)
}

/// The instants of a day a product's sessions cover, by minute, so that [`ProductSpec::in_session`]
/// is two bit tests rather than a walk over the segments: bit `m` of `open` is set when every instant
/// of minute `m` is in session (call auctions included), bit `m` of `closing` when only its first
/// second is (the closing second of a segment ending at minute `m`). Built from the segments by
/// [`SessionMap::new`]; debug builds check every lookup against the segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMap {
    open: [u64; 23],
    closing: [u64; 23],
}

impl SessionMap {
    /// The map of `day_sessions` (the first with [`CALL_AUCTION_MS`] before it) and `night`
    /// (with the auction before it), each with its closing second.
    pub fn new(day_sessions: &[Segment], night: Option<Segment>) -> SessionMap {
        let mut map = SessionMap { open: [0; 23], closing: [0; 23] };
        let segments = night
            .map(|n| (n, CALL_AUCTION_MS))
            .into_iter()
            .chain(day_sessions.iter().enumerate().map(|(i, s)| (*s, if i == 0 { CALL_AUCTION_MS } else { 0 })));
        let minutes = DAY_MS / 60_000;
        for (segment, lead) in segments {
            let from = (segment.start_ms + DAY_MS - lead) % DAY_MS / 60_000;
            let to = segment.end_ms / 60_000;
            let mut m = from;
            while m != to {
                map.open[(m / 64) as usize] |= 1 << (m % 64);
                m = (m + 1) % minutes;
            }
            map.closing[(to / 64) as usize] |= 1 << (to % 64);
        }
        map
    }

    /// Whether `ms` (since local midnight, below one day) is covered.
    #[inline(always)]
    pub fn contains(&self, ms: u32) -> bool {
        let minute = ms / 60_000;
        let (word, bit) = ((minute / 64) as usize % 23, minute % 64);
        let closing_second = u64::from(ms % 60_000 < CLOSE_GRACE_MS);
        ((self.open[word] | (self.closing[word] & closing_second.wrapping_neg())) >> bit) & 1 != 0
    }
}

/// How an exchange writes the ids of its options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdForm {
    /// `m2605-C-3000`, `IO2612-C-4000` (DCE, CFFEX, GFEX).
    Dash,
    /// `cu2606C80000`, `SR605C6000` (SHFE, INE, CZCE).
    Compact,
}

/// Whether a product is a future or an option series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A futures product.
    Future,
    /// Options on a future; `id_form` is how their ids are written.
    Option {
        /// The id form.
        id_form: IdForm,
    },
}

/// One product's specification, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductSpec {
    /// Listing exchange.
    pub exchange: Exchange,
    /// Product code, the leading letters of its instrument ids ("rb", "SR", "IF", "IO").
    pub code: String,
    /// English name ("rebar"; "rebar options").
    pub name: String,
    /// Future or option series.
    pub kind: Kind,
    /// For options: the code of the underlying future ("IF" for "IO"); `None` for futures.
    pub underlying: Option<String>,
    /// Minimum price increment.
    pub price_tick: f64,
    /// Contract multiplier (CTP VolumeMultiple): units per lot.
    pub volume_multiple: u32,
    /// Day-session segments, in order.
    pub day_sessions: Vec<Segment>,
    /// Night session, if the product trades at night.
    pub night_session: Option<Segment>,
    /// `day_sessions` and `night_session` by minute ([`SessionMap::new`] of them: keep it in step
    /// when building a spec by hand).
    pub session_map: SessionMap,
    /// Listed instrument ids the simulator generates (none for options).
    pub instruments: Vec<String>,
    /// Price around which the simulator generates.
    pub reference_price: f64,
    /// Not in the product file: admitted with its exchange's default sessions (`unknown_products = "admit"`).
    pub unknown: bool,
}

impl ProductSpec {
    /// Whether `ms_since_local_midnight` (China local time) lies in one of the product's sessions,
    /// counting the [`CALL_AUCTION_MS`] before the first day segment and before the night session,
    /// and the closing second of every segment. Which days trade is the calendar's question. Does
    /// not allocate.
    #[inline(always)]
    pub fn in_session(&self, ms_since_local_midnight: u32) -> bool {
        let covered = self.session_map.contains(ms_since_local_midnight);
        debug_assert_eq!(
            covered,
            self.in_session_by_segments(ms_since_local_midnight),
            "{}: session_map out of step with the segments",
            self.code
        );
        covered
    }

    /// [`ProductSpec::in_session`] by walking the segments (the definition the map is built from).
    pub fn in_session_by_segments(&self, ms_since_local_midnight: u32) -> bool {
        let ms = ms_since_local_midnight;
        if self.night_session.is_some_and(|night| night.contains(ms, CALL_AUCTION_MS)) {
            return true;
        }
        let mut lead = CALL_AUCTION_MS;
        for segment in &self.day_sessions {
            if segment.contains(ms, lead) {
                return true;
            }
            lead = 0;
        }
        false
    }

    /// Milliseconds of trading time (plain segments, no auction) between two China-local instants
    /// (ms since 1970-01-01 local). Day segments count on trading days; the night segment on the
    /// evenings that hold one (`calendar`), from its open, across midnight.
    pub fn session_ms_between(&self, from_local_ms: i64, to_local_ms: i64, calendar: &Calendar) -> i64 {
        if to_local_ms <= from_local_ms {
            return 0;
        }
        let day = i64::from(DAY_MS);
        let mut total = 0;
        let mut overlap = |start: i64, len: u32| {
            let end = start + i64::from(len);
            total += (end.min(to_local_ms) - start.max(from_local_ms)).max(0);
        };
        for d in from_local_ms.div_euclid(day) - 1..=to_local_ms.div_euclid(day) {
            let date = Date::from_days(d);
            if calendar.is_trading_day(date) {
                for s in &self.day_sessions {
                    overlap(d * day + i64::from(s.start_ms), s.len_ms());
                }
            }
            if let Some(night) = self.night_session
                && calendar.has_night_session(date)
            {
                overlap(d * day + i64::from(night.start_ms), night.len_ms());
            }
        }
        total
    }
}

/// The product code of an instrument id: its leading ASCII letters ("rb2510" → "rb",
/// "SR509" → "SR", "m2509-C-3000" → "m").
pub fn product_of(instrument_id: &str) -> &str {
    let end = instrument_id.bytes().position(|b| !b.is_ascii_alphabetic()).unwrap_or(instrument_id.len());
    &instrument_id[..end]
}

/// The form of what follows the product code in an instrument id: a future's delivery month
/// (three or four digits), an option in one of the [`IdForm`]s, or `None` for anything else
/// (spreads, combinations, garbage).
pub fn contract_form(instrument_id: &str) -> Option<Kind> {
    let code = product_of(instrument_id);
    if code.is_empty() {
        return None;
    }
    let rest = &instrument_id.as_bytes()[code.len()..];
    let month = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(3..=4).contains(&month) {
        return None;
    }
    let digits = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    match &rest[month..] {
        [] => Some(Kind::Future),
        [b'-', b'C' | b'P', b'-', strike @ ..] if digits(strike) => Some(Kind::Option { id_form: IdForm::Dash }),
        [b'C' | b'P', strike @ ..] if digits(strike) => Some(Kind::Option { id_form: IdForm::Compact }),
        _ => None,
    }
}

/// The sessions a product of `exchange` that the file does not list is given (its exchange's usual
/// commodity or financial hours, no night session: a tick at night is then flagged, never lost).
pub fn default_day_sessions(exchange: Exchange) -> Vec<Segment> {
    let texts: &[&str] = match exchange {
        Exchange::Cffex => &["09:30-11:30", "13:00-15:15"],
        _ => &["09:00-10:15", "10:30-11:30", "13:30-15:00"],
    };
    texts.iter().filter_map(|t| Segment::parse(t)).collect()
}

/// Why the product file could not be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum InstrumentsError {
    /// The file could not be read.
    #[error("reading instruments file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape (the message names the key and line).
    #[error("parsing instruments file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// The file parsed but its values are wrong; every problem is listed, each naming the product.
    #[error("instruments file {} has {} problem(s):\n  {}", path.display(), problems.len(), problems.join("\n  "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One line per problem.
        problems: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstrumentsFile {
    #[serde(rename = "product", default)]
    products: Vec<ProductEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductEntry {
    exchange: String,
    code: String,
    #[serde(default)]
    name: String,
    price_tick: f64,
    volume_multiple: u32,
    day_sessions: Vec<String>,
    #[serde(default)]
    night_session: Option<String>,
    #[serde(default)]
    instruments: Vec<String>,
    reference_price: f64,
    #[serde(default)]
    options: Option<OptionsEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsEntry {
    code: String,
    id_form: IdForm,
    price_tick: f64,
    volume_multiple: u32,
}

fn is_code(code: &str) -> bool {
    !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphabetic())
}

impl InstrumentsFile {
    /// Checks every product and returns the specs (futures, then each one's options right after
    /// it), or every problem found (not just the first).
    fn validate(self) -> Result<Vec<ProductSpec>, Vec<String>> {
        let mut problems = Vec::new();
        let mut specs: Vec<ProductSpec> = Vec::new();
        if self.products.is_empty() {
            problems.push("no [[product]] entries".to_owned());
        }
        for (i, p) in self.products.into_iter().enumerate() {
            let label = format!("product[{i}] ({} {})", p.exchange, p.code);
            let mut problem = |what: String| problems.push(format!("{label}: {what}"));
            let exchange = Exchange::from_id(&p.exchange);
            if exchange.is_none() {
                problem(format!("exchange {:?} is not one of SHFE, INE, DCE, CZCE, CFFEX, GFEX", p.exchange));
            }
            if !is_code(&p.code) {
                problem(format!("code {:?} must be one or more ASCII letters", p.code));
            }
            if specs.iter().any(|s| s.kind == Kind::Future && s.code == p.code) {
                problem(format!("code {:?} is listed twice", p.code));
            }
            if !(p.price_tick.is_finite() && p.price_tick > 0.0) {
                problem(format!("price_tick {} must be a positive number", p.price_tick));
            }
            if p.volume_multiple == 0 {
                problem("volume_multiple must be at least 1".to_owned());
            }
            if !(p.reference_price.is_finite() && p.reference_price > 0.0) {
                problem(format!("reference_price {} must be a positive number", p.reference_price));
            } else if p.price_tick > 0.0 {
                let ticks = (p.reference_price / p.price_tick).round();
                if (ticks * p.price_tick - p.reference_price).abs() > 1e-9 * p.reference_price {
                    problem(format!(
                        "reference_price {} is not a multiple of price_tick {}",
                        p.reference_price, p.price_tick
                    ));
                }
            }
            let mut day_sessions = Vec::new();
            if p.day_sessions.is_empty() {
                problem("day_sessions must list at least one \"HH:MM-HH:MM\" segment".to_owned());
            }
            for text in &p.day_sessions {
                match Segment::parse(text) {
                    Some(s) if s.wraps() => problem(format!("day_sessions entry {text:?} ends before it starts")),
                    Some(s) if day_sessions.last().is_some_and(|last: &Segment| last.end_ms > s.start_ms) => {
                        problem(format!("day_sessions entry {text:?} starts before the previous one ends"))
                    }
                    Some(s) => day_sessions.push(s),
                    None => problem(format!("day_sessions entry {text:?} is not \"HH:MM-HH:MM\"")),
                }
            }
            let night_session = match p.night_session.as_deref().map(|t| (t, Segment::parse(t))) {
                None => None,
                Some((_, Some(s))) if matches!(exchange, Some(Exchange::Cffex | Exchange::Gfex)) => {
                    problem(format!("night_session: {} holds no night session", p.exchange));
                    Some(s)
                }
                Some((text, Some(s))) if s.start_ms < 18 * 3_600_000 => {
                    problem(format!("night_session {text:?} must open in the evening (18:00 or later)"));
                    Some(s)
                }
                Some((_, Some(s))) => Some(s),
                Some((text, None)) => {
                    problem(format!("night_session {text:?} is not \"HH:MM-HH:MM\""));
                    None
                }
            };
            for id in &p.instruments {
                if product_of(id) != p.code || id.len() > MAX_INSTRUMENT_ID || contract_form(id) != Some(Kind::Future) {
                    problem(format!(
                        "instrument {id:?} must be the product code {:?} and a delivery month, at most {MAX_INSTRUMENT_ID} characters",
                        p.code
                    ));
                }
            }
            let options = p.options.inspect(|o| {
                if !is_code(&o.code) {
                    problem(format!("options.code {:?} must be one or more ASCII letters", o.code));
                }
                if specs.iter().any(|s| matches!(s.kind, Kind::Option { .. }) && s.code == o.code) {
                    problem(format!("options.code {:?} is listed twice", o.code));
                }
                if !(o.price_tick.is_finite() && o.price_tick > 0.0) {
                    problem(format!("options.price_tick {} must be a positive number", o.price_tick));
                }
                if o.volume_multiple == 0 {
                    problem("options.volume_multiple must be at least 1".to_owned());
                }
            });
            let Some(exchange) = exchange else { continue };
            let future = ProductSpec {
                exchange,
                code: p.code,
                name: p.name,
                kind: Kind::Future,
                underlying: None,
                price_tick: p.price_tick,
                volume_multiple: p.volume_multiple,
                session_map: SessionMap::new(&day_sessions, night_session),
                day_sessions,
                night_session,
                instruments: p.instruments,
                reference_price: p.reference_price,
                unknown: false,
            };
            let option = options.map(|o| ProductSpec {
                code: o.code,
                name: format!("{} options", future.name),
                kind: Kind::Option { id_form: o.id_form },
                underlying: Some(future.code.clone()),
                price_tick: o.price_tick,
                volume_multiple: o.volume_multiple,
                instruments: Vec::new(),
                reference_price: o.price_tick,
                ..future.clone()
            });
            specs.push(future);
            specs.extend(option);
        }
        if problems.is_empty() { Ok(specs) } else { Err(problems) }
    }
}

/// Every product specification from one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruments {
    path: PathBuf,
    products: Vec<ProductSpec>,
}

impl Instruments {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Instruments, InstrumentsError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| InstrumentsError::Read { path: path.to_owned(), source })?;
        Instruments::from_toml_str(&text, path)
    }

    /// `explicit` if given (it must load); else [`DEFAULT_PATH`] if it exists; else `None`.
    pub fn find(explicit: Option<&Path>) -> Result<Option<Instruments>, InstrumentsError> {
        match explicit {
            Some(path) => Instruments::load(path).map(Some),
            None if Path::new(DEFAULT_PATH).is_file() => Instruments::load(Path::new(DEFAULT_PATH)).map(Some),
            None => Ok(None),
        }
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Instruments, InstrumentsError> {
        let file: InstrumentsFile = toml::from_str(text)
            .map_err(|e| InstrumentsError::Parse { path: origin.to_owned(), message: e.to_string() })?;
        let products =
            file.validate().map_err(|problems| InstrumentsError::Invalid { path: origin.to_owned(), problems })?;
        Ok(Instruments { path: origin.to_owned(), products })
    }

    /// The file they came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every product: each future followed by its option series, in file order.
    pub fn products(&self) -> &[ProductSpec] {
        &self.products
    }

    /// The future with this code (case-sensitive: "SR" on CZCE, "rb" on SHFE).
    pub fn product(&self, code: &str) -> Option<&ProductSpec> {
        self.products.iter().find(|p| p.kind == Kind::Future && p.code == code)
    }

    /// The specification of the product an instrument id belongs to: the future for a future's id,
    /// the option series for an option's id in its exchange's form. Does not allocate.
    pub fn spec_for(&self, instrument_id: &str) -> Option<&ProductSpec> {
        self.index_of(instrument_id).map(|i| &self.products[i])
    }

    /// Index in [`Instruments::products`] of the product an instrument id belongs to.
    pub fn index_of(&self, instrument_id: &str) -> Option<usize> {
        let code = product_of(instrument_id);
        let kind = contract_form(instrument_id)?;
        self.products.iter().position(|p| p.code == code && p.kind == kind)
    }
}

impl ProductSpec {
    /// The stand-in for products of `exchange` the table does not list (`unknown_products =
    /// "admit"`): its exchange's default sessions, no night session, price tick 0.0001 and
    /// multiplier 1 (AveragePrice is left as sent), [`ProductSpec::unknown`] set, no code (any
    /// instrument of the exchange).
    pub fn stand_in(exchange: Exchange) -> ProductSpec {
        ProductSpec {
            exchange,
            code: String::new(),
            name: String::new(),
            kind: Kind::Future,
            underlying: None,
            price_tick: 0.0001,
            volume_multiple: 1,
            session_map: SessionMap::new(&default_day_sessions(exchange), None),
            day_sessions: default_day_sessions(exchange),
            night_session: None,
            instruments: Vec::new(),
            reference_price: 1.0,
            unknown: true,
        }
    }
}

pub mod render;
#[cfg(test)]
mod tests;
