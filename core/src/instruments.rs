//! Product specifications: exchange, product code, price tick, contract multiplier, trading sessions
//! (China local time) and, for the simulator, the listed instruments and a reference price. Read
//! once at start-up from a TOML file (`config/instruments.toml`); the hot path only reads them.
//!
//! ```toml
//! [[product]]
//! exchange = "SHFE"
//! code = "rb"
//! price_tick = 1.0
//! volume_multiple = 10
//! day_sessions = ["09:00-10:15", "10:30-11:30", "13:30-15:00"]
//! night_session = "21:00-23:00"          # optional; may cross midnight ("21:00-02:30")
//! instruments = ["rb2605", "rb2610"]
//! reference_price = 3300.0
//! ```

use std::path::{Path, PathBuf};

use qilin_shm::Exchange;
use serde::Deserialize;

/// Minutes of call auction counted as "in session" before the first day segment and the night session.
pub const CALL_AUCTION_MS: u32 = 5 * 60_000;
/// Grace after each segment's end: the closing second itself (e.g. a `15:00:00.500` tick) is in session.
pub const CLOSE_GRACE_MS: u32 = 1000;
/// Milliseconds in a day.
pub const DAY_MS: u32 = 86_400_000;
/// Longest instrument id the feed stores (one less than `qilin_shm::layout::INSTRUMENT_ID_LEN`).
pub const MAX_INSTRUMENT_ID: usize = qilin_shm::layout::INSTRUMENT_ID_LEN - 1;

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

/// One product's specification, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductSpec {
    /// Listing exchange.
    pub exchange: Exchange,
    /// Product code, the leading letters of its instrument ids ("rb", "SR", "IF").
    pub code: String,
    /// Minimum price increment.
    pub price_tick: f64,
    /// Contract multiplier (CTP VolumeMultiple): units per lot.
    pub volume_multiple: u32,
    /// Day-session segments, in order.
    pub day_sessions: Vec<Segment>,
    /// Night session, if the product trades at night.
    pub night_session: Option<Segment>,
    /// Listed instrument ids the simulator generates.
    pub instruments: Vec<String>,
    /// Price around which the simulator generates.
    pub reference_price: f64,
}

/// Whether `ms_since_local_midnight` (China local time) lies in one of the product's sessions,
/// counting the [`CALL_AUCTION_MS`] before the first day segment and before the night session, and
/// the closing second of every segment. Does not allocate.
#[inline(always)]
pub fn in_session(spec: &ProductSpec, ms_since_local_midnight: u32) -> bool {
    let ms = ms_since_local_midnight;
    if spec.night_session.is_some_and(|night| night.contains(ms, CALL_AUCTION_MS)) {
        return true;
    }
    let mut lead = CALL_AUCTION_MS;
    for segment in &spec.day_sessions {
        if segment.contains(ms, lead) {
            return true;
        }
        lead = 0;
    }
    false
}

/// The product code of an instrument id: its leading ASCII letters ("rb2510" → "rb",
/// "SR509" → "SR", "m2509-C-3000" → "m").
pub fn product_of(instrument_id: &str) -> &str {
    let end = instrument_id.bytes().position(|b| !b.is_ascii_alphabetic()).unwrap_or(instrument_id.len());
    &instrument_id[..end]
}

/// Why the instruments file could not be used. Every message names the file.
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
    price_tick: f64,
    volume_multiple: u32,
    day_sessions: Vec<String>,
    #[serde(default)]
    night_session: Option<String>,
    #[serde(default)]
    instruments: Vec<String>,
    reference_price: f64,
}

impl InstrumentsFile {
    /// Checks every product and returns the specs, or every problem found (not just the first).
    fn validate(self) -> Result<Vec<ProductSpec>, Vec<String>> {
        let mut problems = Vec::new();
        let mut specs = Vec::new();
        if self.products.is_empty() {
            problems.push("no [[product]] entries".to_owned());
        }
        for (i, p) in self.products.into_iter().enumerate() {
            let name = format!("product[{i}] ({} {})", p.exchange, p.code);
            let mut problem = |what: String| problems.push(format!("{name}: {what}"));
            let exchange = Exchange::from_id(&p.exchange);
            if exchange.is_none() {
                problem(format!("exchange {:?} is not one of SHFE, INE, DCE, CZCE, CFFEX, GFEX", p.exchange));
            }
            if p.code.is_empty() || !p.code.bytes().all(|b| b.is_ascii_alphabetic()) {
                problem(format!("code {:?} must be one or more ASCII letters", p.code));
            }
            if specs.iter().any(|s: &ProductSpec| s.code == p.code) {
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
                    Some(s) if !s.wraps() => day_sessions.push(s),
                    Some(_) => problem(format!("day_sessions entry {text:?} ends before it starts")),
                    None => problem(format!("day_sessions entry {text:?} is not \"HH:MM-HH:MM\"")),
                }
            }
            let night_session = match p.night_session.as_deref().map(|t| (t, Segment::parse(t))) {
                None => None,
                Some((_, Some(s))) => Some(s),
                Some((text, None)) => {
                    problem(format!("night_session {text:?} is not \"HH:MM-HH:MM\""));
                    None
                }
            };
            for id in &p.instruments {
                if product_of(id) != p.code || id.len() > MAX_INSTRUMENT_ID || !id.is_ascii() {
                    problem(format!(
                        "instrument {id:?} must start with the product code {:?}, be ASCII and at most {MAX_INSTRUMENT_ID} characters",
                        p.code
                    ));
                }
            }
            if let Some(exchange) = exchange {
                specs.push(ProductSpec {
                    exchange,
                    code: p.code,
                    price_tick: p.price_tick,
                    volume_multiple: p.volume_multiple,
                    day_sessions,
                    night_session,
                    instruments: p.instruments,
                    reference_price: p.reference_price,
                });
            }
        }
        if problems.is_empty() { Ok(specs) } else { Err(problems) }
    }
}

/// Every product specification from one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruments {
    products: Vec<ProductSpec>,
}

impl Instruments {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Instruments, InstrumentsError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| InstrumentsError::Read { path: path.to_owned(), source })?;
        Instruments::from_toml_str(&text, path)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Instruments, InstrumentsError> {
        let file: InstrumentsFile = toml::from_str(text)
            .map_err(|e| InstrumentsError::Parse { path: origin.to_owned(), message: e.to_string() })?;
        let products =
            file.validate().map_err(|problems| InstrumentsError::Invalid { path: origin.to_owned(), problems })?;
        Ok(Instruments { products })
    }

    /// Every product, in file order.
    pub fn products(&self) -> &[ProductSpec] {
        &self.products
    }

    /// The product with this code (case-sensitive: "SR" on CZCE, "rb" on SHFE).
    pub fn product(&self, code: &str) -> Option<&ProductSpec> {
        self.products.iter().find(|p| p.code == code)
    }

    /// The specification of the product an instrument id belongs to. Does not allocate.
    pub fn spec_for(&self, instrument_id: &str) -> Option<&ProductSpec> {
        self.product(product_of(instrument_id))
    }

    /// Index in [`Instruments::products`] of the product an instrument id belongs to.
    pub fn index_of(&self, instrument_id: &str) -> Option<usize> {
        let code = product_of(instrument_id);
        self.products.iter().position(|p| p.code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS_PER_MIN: u32 = 60_000;
    const fn at(h: u32, m: u32) -> u32 {
        (h * 60 + m) * MS_PER_MIN
    }

    fn shipped() -> Instruments {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
        Instruments::load(&path).unwrap()
    }

    #[test]
    fn shipped_file_covers_every_exchange_with_real_specs() {
        let all = shipped();
        for exchange in Exchange::ALL {
            let n = all.products().iter().filter(|p| p.exchange == exchange).count();
            assert!(n >= 3, "{exchange:?} has {n} products");
        }
        let rb = all.spec_for("rb2510").unwrap();
        assert_eq!((rb.exchange, rb.price_tick, rb.volume_multiple), (Exchange::Shfe, 1.0, 10));
        assert_eq!(rb.night_session, Some(Segment { start_ms: at(21, 0), end_ms: at(23, 0) }));
        let au = all.product("au").unwrap();
        assert_eq!((au.price_tick, au.volume_multiple), (0.02, 1000));
        assert_eq!(au.night_session, Some(Segment { start_ms: at(21, 0), end_ms: at(2, 30) }));
        let cu = all.product("cu").unwrap();
        assert_eq!(cu.night_session.map(|s| s.end_ms), Some(at(1, 0)));
        let sc = all.spec_for("sc2607").unwrap();
        assert_eq!((sc.exchange, sc.price_tick, sc.volume_multiple), (Exchange::Ine, 0.1, 1000));
        let sr = all.spec_for("SR609").unwrap();
        assert_eq!((sr.exchange, sr.volume_multiple), (Exchange::Czce, 10));
        let i_ore = all.spec_for("i2609").unwrap();
        assert_eq!((i_ore.exchange, i_ore.price_tick, i_ore.volume_multiple), (Exchange::Dce, 0.5, 100));
        let index = all.spec_for("IF2606").unwrap();
        assert_eq!((index.exchange, index.price_tick, index.volume_multiple), (Exchange::Cffex, 0.2, 300));
        let lc = all.spec_for("lc2609").unwrap();
        assert_eq!((lc.exchange, lc.price_tick, lc.volume_multiple), (Exchange::Gfex, 20.0, 1));
        for p in all.products().iter().filter(|p| matches!(p.exchange, Exchange::Cffex | Exchange::Gfex)) {
            assert_eq!(p.night_session, None, "{} trades no night session", p.code);
        }
        for p in all.products() {
            assert!(!p.instruments.is_empty(), "{} lists no instruments", p.code);
            for id in &p.instruments {
                assert_eq!(all.spec_for(id).map(|s| &s.code), Some(&p.code));
            }
        }
        assert!(all.spec_for("zz2501").is_none());
        assert!(all.spec_for("sr609").is_none(), "codes are case-sensitive");
    }

    #[test]
    fn product_of_takes_leading_letters() {
        assert_eq!(product_of("rb2510"), "rb");
        assert_eq!(product_of("SR509"), "SR");
        assert_eq!(product_of("IF2506"), "IF");
        assert_eq!(product_of("m2509-C-3000"), "m");
        assert_eq!(product_of("T2509"), "T");
        assert_eq!(product_of("2509"), "");
        assert_eq!(product_of(""), "");
    }

    #[test]
    fn sessions_include_call_auction_and_the_closing_second() {
        let all = shipped();
        let rb = all.product("rb").unwrap();
        assert!(!in_session(rb, at(20, 54)));
        assert!(in_session(rb, at(20, 55)), "night call auction");
        assert!(in_session(rb, at(22, 59) + 59_500));
        assert!(in_session(rb, at(23, 0) + 500), "closing tick 23:00:00.500");
        assert!(!in_session(rb, at(23, 0) + 1000));
        assert!(!in_session(rb, at(3, 0)));
        assert!(in_session(rb, at(8, 55)), "day call auction");
        assert!(!in_session(rb, at(8, 54)));
        assert!(!in_session(rb, at(10, 20)), "morning break");
        assert!(!in_session(rb, at(10, 29)), "no auction before the second segment");
        assert!(in_session(rb, at(10, 30)));
        assert!(!in_session(rb, at(12, 0)), "lunch");
        assert!(in_session(rb, at(14, 59)));
        assert!(!in_session(rb, at(15, 0) + 1000));
        let au = all.product("au").unwrap();
        assert!(in_session(au, at(0, 0)) && in_session(au, at(2, 29)) && in_session(au, at(2, 30) + 999));
        assert!(!in_session(au, at(2, 31)));
        assert!(in_session(au, at(23, 30)));
        let index = all.product("IF").unwrap();
        assert!(!in_session(index, at(21, 0)), "CFFEX has no night session");
        assert!(!in_session(index, at(9, 24)));
        assert!(in_session(index, at(9, 25)), "CFFEX call auction 09:25-09:30");
        assert!(in_session(index, at(11, 29)) && !in_session(index, at(12, 0)) && in_session(index, at(13, 0)));
        let bond = all.product("T").unwrap();
        assert!(in_session(bond, at(15, 14)) && !in_session(bond, at(15, 16)));
    }

    #[test]
    fn segments_parse_strictly() {
        assert_eq!(Segment::parse("21:00-02:30"), Some(Segment { start_ms: at(21, 0), end_ms: at(2, 30) }));
        assert!(Segment::parse("21:00-02:30").unwrap().wraps());
        for bad in ["21:00", "21:00-24:00", "9:00-10:15", "09:00-10:60", "09:00–10:15", "aa:bb-cc:dd"] {
            assert_eq!(Segment::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_file_reports_every_problem_with_file_and_product() {
        let text = r#"
            [[product]]
            exchange = "SHFE"
            code = "rb"
            price_tick = 0.0
            volume_multiple = 10
            day_sessions = ["09:00-10:15"]
            instruments = ["rb2510"]
            reference_price = 3300.0

            [[product]]
            exchange = "NYMEX"
            code = "cl"
            price_tick = 0.01
            volume_multiple = 1000
            day_sessions = ["09:00-15:00"]
            reference_price = 70.0
        "#;
        let err = Instruments::from_toml_str(text, Path::new("/etc/qilin/instruments.toml")).unwrap_err();
        let InstrumentsError::Invalid { problems, .. } = &err else { panic!("{err}") };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("product[0] (SHFE rb): price_tick 0"), "{}", problems[0]);
        assert!(problems[1].starts_with("product[1] (NYMEX cl): exchange \"NYMEX\""), "{}", problems[1]);
        let message = err.to_string();
        assert!(message.contains("/etc/qilin/instruments.toml has 2 problem(s)"), "{message}");
    }

    #[test]
    fn more_problems_are_all_listed() {
        let text = r#"
            [[product]]
            exchange = "DCE"
            code = "m"
            price_tick = 1.0
            volume_multiple = 0
            day_sessions = ["15:00-09:00", "bad"]
            night_session = "21:00"
            instruments = ["rb2510"]
            reference_price = 2900.5
        "#;
        let Err(InstrumentsError::Invalid { problems, .. }) = Instruments::from_toml_str(text, Path::new("x.toml"))
        else {
            panic!("expected invalid")
        };
        let wanted = ["volume_multiple", "not a multiple", "ends before", "\"bad\"", "night_session", "\"rb2510\""];
        assert_eq!(problems.len(), wanted.len(), "{problems:?}");
        for (problem, word) in problems.iter().zip(wanted) {
            assert!(problem.starts_with("product[0] (DCE m): ") && problem.contains(word), "{problem}");
        }
    }

    #[test]
    fn unknown_keys_and_missing_files_name_the_file() {
        let text = "[[product]]\nexchange = \"SHFE\"\ncode = \"rb\"\ntick = 1.0\n";
        let err = Instruments::from_toml_str(text, Path::new("conf/i.toml")).unwrap_err().to_string();
        assert!(err.contains("conf/i.toml") && err.contains("tick"), "{err}");
        let err = Instruments::load(Path::new("/nonexistent/instruments.toml")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/instruments.toml"), "{err}");
    }
}
