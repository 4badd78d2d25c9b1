//! The part of the core's product file (`config/instruments.toml`) the journal tools use: each
//! product's exchange, contract multiplier and trading sessions. Read with serde directly (the
//! tools never link the core); keys the tools do not need are ignored.
//!
//! Sessions give the quality report its notion of "silence during trading" ([`Product::session_ms_between`])
//! and the CSV import its stale-snapshot flag ([`Product::in_session`], the core's rule: the five
//! minutes of call auction before the night session and the first day segment, and the closing
//! second of each segment, count as in session). Weekends have no session; exchange holidays are
//! not known.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::calendar::{DAY_MS, Date};

/// Default location, relative to the working directory (the repository's, as the core's default).
pub const DEFAULT_PATH: &str = "config/instruments.toml";
/// Call auction counted as in session before the night session and the first day segment.
pub const CALL_AUCTION_MS: u32 = 5 * 60_000;
/// The closing second of a segment counts as in session.
pub const CLOSE_GRACE_MS: u32 = 1000;

/// A session segment, ms since local midnight; `end_ms <= start_ms` crosses midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Open.
    pub start_ms: u32,
    /// Close.
    pub end_ms: u32,
}

impl Segment {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Option<Segment> {
        let (a, b) = text.split_once('-')?;
        Some(Segment { start_ms: hh_mm(a)?, end_ms: hh_mm(b)? })
    }

    fn contains(self, ms: u32, lead_ms: u32) -> bool {
        let from = (self.start_ms + DAY_MS - lead_ms) % DAY_MS;
        let to = (self.end_ms + CLOSE_GRACE_MS) % DAY_MS;
        if from <= to { from <= ms && ms < to } else { ms >= from || ms < to }
    }

    /// Length, ms.
    fn len_ms(self) -> u32 {
        if self.end_ms > self.start_ms { self.end_ms - self.start_ms } else { self.end_ms + DAY_MS - self.start_ms }
    }
}

fn hh_mm(text: &str) -> Option<u32> {
    let b = text.trim().as_bytes();
    if b.len() != 5 || b[2] != b':' || ![b[0], b[1], b[3], b[4]].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    let (h, m) = (num(0), num(3));
    (h < 24 && m < 60).then_some((h * 60 + m) * 60_000)
}

/// One product.
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    /// CTP ExchangeID ("SHFE", …).
    pub exchange: String,
    /// Product code (leading letters of its instrument ids).
    pub code: String,
    /// Contract multiplier (CTP VolumeMultiple).
    pub volume_multiple: u32,
    /// Day segments, in order.
    pub day_sessions: Vec<Segment>,
    /// Night segment, if the product trades at night.
    pub night_session: Option<Segment>,
}

impl Product {
    /// The core's "in session" test for a local time of day (call auction and closing second included).
    pub fn in_session(&self, ms: u32) -> bool {
        if self.night_session.is_some_and(|n| n.contains(ms, CALL_AUCTION_MS)) {
            return true;
        }
        self.day_sessions.iter().enumerate().any(|(i, s)| s.contains(ms, if i == 0 { CALL_AUCTION_MS } else { 0 }))
    }

    /// Milliseconds of trading time (plain segments, weekdays only: a segment belongs to the
    /// weekday on which it opens) between two China-local instants, ms since 1970-01-01 local.
    pub fn session_ms_between(&self, from_local_ms: i64, to_local_ms: i64) -> i64 {
        if to_local_ms <= from_local_ms {
            return 0;
        }
        let day = i64::from(DAY_MS);
        let mut total = 0;
        for d in from_local_ms.div_euclid(day) - 1..=to_local_ms.div_euclid(day) {
            if !Date::from_days(d).is_weekday() {
                continue;
            }
            for s in self.day_sessions.iter().chain(self.night_session.iter()) {
                let start = d * day + i64::from(s.start_ms);
                let end = start + i64::from(s.len_ms());
                total += (end.min(to_local_ms) - start.max(from_local_ms)).max(0);
            }
        }
        total
    }
}

/// The leading ASCII letters of an instrument id ("rb2605" → "rb", "m2509-C-3000" → "m").
pub fn product_of(instrument_id: &str) -> &str {
    let end = instrument_id.bytes().position(|b| !b.is_ascii_alphabetic()).unwrap_or(instrument_id.len());
    &instrument_id[..end]
}

/// Products by code, from one file.
#[derive(Clone, Debug, Default)]
pub struct Products {
    /// The file they came from.
    pub path: PathBuf,
    by_code: HashMap<String, Product>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    product: Vec<RawProduct>,
}

#[derive(Deserialize)]
struct RawProduct {
    exchange: String,
    code: String,
    volume_multiple: u32,
    #[serde(default)]
    day_sessions: Vec<String>,
    #[serde(default)]
    night_session: Option<String>,
}

impl Products {
    /// Reads a product file; every problem names the file (and the product).
    pub fn load(path: &Path) -> Result<Products, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let raw: RawFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut by_code = HashMap::new();
        for p in raw.product {
            let segment = |text: &str| {
                Segment::parse(text).ok_or_else(|| {
                    format!("{}: product {}: session {text:?} is not HH:MM-HH:MM", path.display(), p.code)
                })
            };
            let day_sessions = p.day_sessions.iter().map(|s| segment(s)).collect::<Result<Vec<_>, _>>()?;
            let night_session = p.night_session.as_deref().map(segment).transpose()?;
            let product = Product {
                exchange: p.exchange,
                code: p.code.clone(),
                volume_multiple: p.volume_multiple,
                day_sessions,
                night_session,
            };
            by_code.insert(p.code, product);
        }
        Ok(Products { path: path.to_owned(), by_code })
    }

    /// `explicit` if given (it must load); else [`DEFAULT_PATH`] if it exists; else `None`.
    pub fn find(explicit: Option<&Path>) -> Result<Option<Products>, String> {
        match explicit {
            Some(path) => Products::load(path).map(Some),
            None if Path::new(DEFAULT_PATH).is_file() => Products::load(Path::new(DEFAULT_PATH)).map(Some),
            None => Ok(None),
        }
    }

    /// The product of an instrument id.
    pub fn of(&self, instrument_id: &str) -> Option<&Product> {
        self.by_code.get(product_of(instrument_id))
    }

    /// Number of products.
    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb() -> Product {
        Product {
            exchange: "SHFE".into(),
            code: "rb".into(),
            volume_multiple: 10,
            day_sessions: ["09:00-10:15", "10:30-11:30", "13:30-15:00"].map(|s| Segment::parse(s).unwrap()).into(),
            night_session: Segment::parse("21:00-23:00"),
        }
    }

    fn at(ymd: u32, h: i64, m: i64) -> i64 {
        Date::from_ymd(ymd).unwrap().days * i64::from(DAY_MS) + (h * 60 + m) * 60_000
    }

    #[test]
    fn trading_time_between_two_instants_skips_breaks_nights_and_weekends() {
        let p = rb();
        // Tuesday 10:10 → 10:40: 5 min before the break, 10 after.
        assert_eq!(p.session_ms_between(at(20250513, 10, 10), at(20250513, 10, 40)), 15 * 60_000);
        // Tuesday 15:00 → 21:00: none.
        assert_eq!(p.session_ms_between(at(20250513, 15, 0), at(20250513, 21, 0)), 0);
        // Friday 23:00 → Monday 09:00: none (no Saturday or Sunday session).
        assert_eq!(p.session_ms_between(at(20250509, 23, 0), at(20250512, 9, 0)), 0);
        // Friday 22:00 → Monday 09:30: an hour of Friday night, half an hour of Monday.
        assert_eq!(p.session_ms_between(at(20250509, 22, 0), at(20250512, 9, 30)), 90 * 60_000);
        // A night session across midnight (cu 21:00-01:00) counts on both sides.
        let mut cu = rb();
        cu.night_session = Segment::parse("21:00-01:00");
        assert_eq!(cu.session_ms_between(at(20250513, 23, 30), at(20250514, 0, 30)), 60 * 60_000);
    }

    #[test]
    fn in_session_follows_the_core_rule() {
        let p = rb();
        assert!(p.in_session(8 * 3_600_000 + 56 * 60_000), "call auction");
        assert!(p.in_session(15 * 3_600_000 + 500), "closing second");
        assert!(!p.in_session(15 * 3_600_000 + 1000));
        assert!(!p.in_session(10 * 3_600_000 + 20 * 60_000), "morning break");
        assert!(p.in_session(20 * 3_600_000 + 57 * 60_000));
    }

    #[test]
    fn the_repository_product_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
        let products = Products::load(&path).unwrap();
        let rb = products.of("rb2605").expect("rb is in the file");
        assert_eq!((rb.exchange.as_str(), rb.volume_multiple), ("SHFE", 10));
        assert!(products.of("zz9999").is_none());
    }
}
