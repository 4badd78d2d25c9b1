//! The names the feed uses in status output and JSON (exchange, source, quality flags, link state)
//! and the tick as JSON, with CTP's field names (`LastPrice`, `BidPrice1`, …) so existing CTP
//! tooling reads it; absent prices (NaN) are `null`. qilinctl prints it, qilin-nats publishes it.

use qilin_shm::{Counter, Exchange, LinkState, Liveness, Reader, Source, TickRecord, layout::id_str, quality};
use serde::{Serialize, Serializer};
use serde_json::{
    Map, Value, json,
    ser::{CompactFormatter, Formatter as _},
};

use crate::date::hms_text;

/// Exchange code as its CTP ExchangeID ("?" if unknown).
pub fn exchange_name(code: u8) -> &'static str {
    Exchange::from_code(code).map(Exchange::as_str).unwrap_or("?")
}

/// Source code as a word.
pub fn source_name(code: u8) -> &'static str {
    Source::from_code(code).map(Source::as_str).unwrap_or("?")
}

/// Names of the quality bits set in `flags`.
pub fn quality_names(flags: u32) -> Vec<&'static str> {
    quality::NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| *name).collect()
}

/// `HH:MM:SS` and milliseconds from milliseconds since local midnight.
pub fn update_time(ms: u32) -> (String, u32) {
    hms_text(ms)
}

/// A tick as JSON with CTP field names plus the feed's own fields (a [`Value`], for callers that
/// embed it in other JSON; [`write_tick_json`] writes the same text without building it).
pub fn tick_json(t: &TickRecord) -> Value {
    serde_json::to_value(TickJson::new(t)).expect("a TickJson always serializes")
}

/// Appends the JSON text of a tick to `out`: the bytes `serde_json::to_vec(&tick_json(t))` gives
/// (the keys in [`TickJson`]'s order, numbers formatted by serde_json's own formatter), written
/// straight from the record: the keys are constant text, nothing is allocated but `out`'s growth.
/// qilin-nats' JSON bodies. The tests hold it to `TickJson` and to the map of before, byte for byte.
pub fn write_tick_json(t: &TickRecord, out: &mut Vec<u8>) {
    out.reserve(1280);
    out.extend_from_slice(br#"{"ActionDay":"#);
    decimal_str(out, t.action_day);
    out.extend_from_slice(br#","AskPrice1":"#);
    price(out, t.ask_price[0]);
    out.extend_from_slice(br#","AskPrice2":"#);
    price(out, t.ask_price[1]);
    out.extend_from_slice(br#","AskPrice3":"#);
    price(out, t.ask_price[2]);
    out.extend_from_slice(br#","AskPrice4":"#);
    price(out, t.ask_price[3]);
    out.extend_from_slice(br#","AskPrice5":"#);
    price(out, t.ask_price[4]);
    out.extend_from_slice(br#","AskVolume1":"#);
    integer(out, t.ask_volume[0]);
    out.extend_from_slice(br#","AskVolume2":"#);
    integer(out, t.ask_volume[1]);
    out.extend_from_slice(br#","AskVolume3":"#);
    integer(out, t.ask_volume[2]);
    out.extend_from_slice(br#","AskVolume4":"#);
    integer(out, t.ask_volume[3]);
    out.extend_from_slice(br#","AskVolume5":"#);
    integer(out, t.ask_volume[4]);
    out.extend_from_slice(br#","AveragePrice":"#);
    price(out, t.average_price);
    out.extend_from_slice(br#","BandingLowerPrice":"#);
    price(out, t.banding_lower_price);
    out.extend_from_slice(br#","BandingUpperPrice":"#);
    price(out, t.banding_upper_price);
    out.extend_from_slice(br#","BidPrice1":"#);
    price(out, t.bid_price[0]);
    out.extend_from_slice(br#","BidPrice2":"#);
    price(out, t.bid_price[1]);
    out.extend_from_slice(br#","BidPrice3":"#);
    price(out, t.bid_price[2]);
    out.extend_from_slice(br#","BidPrice4":"#);
    price(out, t.bid_price[3]);
    out.extend_from_slice(br#","BidPrice5":"#);
    price(out, t.bid_price[4]);
    out.extend_from_slice(br#","BidVolume1":"#);
    integer(out, t.bid_volume[0]);
    out.extend_from_slice(br#","BidVolume2":"#);
    integer(out, t.bid_volume[1]);
    out.extend_from_slice(br#","BidVolume3":"#);
    integer(out, t.bid_volume[2]);
    out.extend_from_slice(br#","BidVolume4":"#);
    integer(out, t.bid_volume[3]);
    out.extend_from_slice(br#","BidVolume5":"#);
    integer(out, t.bid_volume[4]);
    out.extend_from_slice(br#","ClosePrice":"#);
    price(out, t.close_price);
    out.extend_from_slice(br#","CurrDelta":"#);
    price(out, t.curr_delta);
    out.extend_from_slice(br#","ExchangeID":"#);
    ascii_str(out, exchange_name(t.exchange));
    out.extend_from_slice(br#","HighestPrice":"#);
    price(out, t.highest_price);
    out.extend_from_slice(br#","InstrumentID":"#);
    json_str(out, t.instrument_id_str().unwrap_or("?"));
    out.extend_from_slice(br#","LastPrice":"#);
    price(out, t.last_price);
    out.extend_from_slice(br#","LowerLimitPrice":"#);
    price(out, t.lower_limit_price);
    out.extend_from_slice(br#","LowestPrice":"#);
    price(out, t.lowest_price);
    out.extend_from_slice(br#","OpenInterest":"#);
    price(out, t.open_interest);
    out.extend_from_slice(br#","OpenPrice":"#);
    price(out, t.open_price);
    out.extend_from_slice(br#","PreClosePrice":"#);
    price(out, t.pre_close_price);
    out.extend_from_slice(br#","PreDelta":"#);
    price(out, t.pre_delta);
    out.extend_from_slice(br#","PreOpenInterest":"#);
    price(out, t.pre_open_interest);
    out.extend_from_slice(br#","PreSettlementPrice":"#);
    price(out, t.pre_settlement_price);
    out.extend_from_slice(br#","SettlementPrice":"#);
    price(out, t.settlement_price);
    out.extend_from_slice(br#","TradingDay":"#);
    decimal_str(out, t.trading_day);
    out.extend_from_slice(br#","Turnover":"#);
    price(out, t.turnover);
    out.extend_from_slice(br#","UpdateMillisec":"#);
    integer(out, t.update_time_ms % 1000);
    out.extend_from_slice(br#","UpdateTime":"#);
    hms_str(out, t.update_time_ms);
    out.extend_from_slice(br#","UpperLimitPrice":"#);
    price(out, t.upper_limit_price);
    out.extend_from_slice(br#","Volume":"#);
    integer(out, t.volume);
    out.extend_from_slice(br#","exchange_time_ns":"#);
    integer(out, t.exchange_time_ns);
    out.extend_from_slice(br#","instrument_index":"#);
    integer(out, t.instrument_index);
    out.extend_from_slice(br#","publish_ns":"#);
    integer(out, t.publish_ns);
    out.extend_from_slice(br#","quality":"#);
    quality_list(out, t.quality);
    out.extend_from_slice(br#","receive_ns":"#);
    integer(out, t.receive_ns);
    out.extend_from_slice(br#","sequence":"#);
    integer(out, t.sequence);
    out.extend_from_slice(br#","source":"#);
    ascii_str(out, source_name(t.source));
    out.push(b'}');
}

/// A price: serde_json's text of a finite `f64`, `null` for NaN (absent) and infinities, as
/// `serde_json` writes any non-finite float.
/// A whole price of magnitude below 1e15 (most prices of a futures book, and most turnovers) is
/// the integer followed by `.0`, which is serde_json's text for it, without its shortest-digits
/// search (`-0.0` and `0.0` go through serde_json).
#[inline]
fn price(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        if v.fract() == 0.0 && v.abs() < WHOLE_BELOW && v != 0.0 {
            integer(out, v as i64);
            out.extend_from_slice(b".0");
        } else {
            CompactFormatter.write_f64(out, v).expect("writing into a Vec cannot fail");
        }
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Whole floats below this magnitude are written as integers with `.0` (serde_json does the same
/// up to 1e16; the tests check the boundary).
const WHOLE_BELOW: f64 = 1e15;

/// An integer as serde_json writes it.
#[inline]
fn integer(out: &mut Vec<u8>, v: impl Into<i128>) {
    let v: i128 = v.into();
    let f = &mut CompactFormatter;
    let written = if v < 0 { f.write_i64(out, v as i64) } else { f.write_u64(out, v as u64) };
    written.expect("writing into a Vec cannot fail");
}

/// A quoted string of characters that need no escaping (the names of codes).
#[inline]
fn ascii_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// A quoted string of any text, escaped as serde_json escapes it (an instrument id).
#[inline]
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f) {
        ascii_str(out, s);
    } else {
        serde_json::to_writer(out, s).expect("writing into a Vec cannot fail");
    }
}

/// `u32` decimal digits as a JSON string.
#[inline]
fn decimal_str(out: &mut Vec<u8>, v: u32) {
    let mut buf = [0u8; 10];
    let at = decimal_into(&mut buf, v, 1);
    out.push(b'"');
    out.extend_from_slice(&buf[at..]);
    out.push(b'"');
}

/// [`Hms`]'s text, quoted.
#[inline]
fn hms_str(out: &mut Vec<u8>, ms: u32) {
    let mut buf = [0u8; 16];
    let at = hms_into(&mut buf, ms);
    out.push(b'"');
    out.extend_from_slice(&buf[at..]);
    out.push(b'"');
}

/// [`QualityNames`]' list.
#[inline]
fn quality_list(out: &mut Vec<u8>, flags: u32) {
    out.push(b'[');
    let mut first = true;
    for (_, name) in quality::NAMES.iter().filter(|(bit, _)| flags & bit != 0) {
        if !first {
            out.push(b',');
        }
        first = false;
        ascii_str(out, name);
    }
    out.push(b']');
}

/// The tick as JSON (what [`tick_json`] serializes; [`write_tick_json`] writes the same text by
/// hand, faster): one field per key, borrowed from the record. Keys are declared in
/// byte-wise sorted order, the order `serde_json::Map` (a `BTreeMap` without `preserve_order`)
/// has always printed them in, so the text is what the earlier map-building `tick_json` produced
/// byte for byte, whatever serde_json's features. Prices are `f64`: NaN (absent) and infinities
/// are written `null` by serde_json. Days are decimal strings (`"20260105"`), `UpdateTime` is
/// `HH:MM:SS` with `UpdateMillisec` beside it, `InstrumentID` is `"?"` when not ASCII,
/// `ExchangeID` and `source` are `"?"` for unknown codes, `quality` lists the names of the set
/// bits lowest first.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TickJson<'a> {
    #[serde(rename = "ActionDay")]
    action_day: Decimal,
    #[serde(rename = "AskPrice1")]
    ask_price1: f64,
    #[serde(rename = "AskPrice2")]
    ask_price2: f64,
    #[serde(rename = "AskPrice3")]
    ask_price3: f64,
    #[serde(rename = "AskPrice4")]
    ask_price4: f64,
    #[serde(rename = "AskPrice5")]
    ask_price5: f64,
    #[serde(rename = "AskVolume1")]
    ask_volume1: i32,
    #[serde(rename = "AskVolume2")]
    ask_volume2: i32,
    #[serde(rename = "AskVolume3")]
    ask_volume3: i32,
    #[serde(rename = "AskVolume4")]
    ask_volume4: i32,
    #[serde(rename = "AskVolume5")]
    ask_volume5: i32,
    #[serde(rename = "AveragePrice")]
    average_price: f64,
    #[serde(rename = "BandingLowerPrice")]
    banding_lower_price: f64,
    #[serde(rename = "BandingUpperPrice")]
    banding_upper_price: f64,
    #[serde(rename = "BidPrice1")]
    bid_price1: f64,
    #[serde(rename = "BidPrice2")]
    bid_price2: f64,
    #[serde(rename = "BidPrice3")]
    bid_price3: f64,
    #[serde(rename = "BidPrice4")]
    bid_price4: f64,
    #[serde(rename = "BidPrice5")]
    bid_price5: f64,
    #[serde(rename = "BidVolume1")]
    bid_volume1: i32,
    #[serde(rename = "BidVolume2")]
    bid_volume2: i32,
    #[serde(rename = "BidVolume3")]
    bid_volume3: i32,
    #[serde(rename = "BidVolume4")]
    bid_volume4: i32,
    #[serde(rename = "BidVolume5")]
    bid_volume5: i32,
    #[serde(rename = "ClosePrice")]
    close_price: f64,
    #[serde(rename = "CurrDelta")]
    curr_delta: f64,
    #[serde(rename = "ExchangeID")]
    exchange_id: &'static str,
    #[serde(rename = "HighestPrice")]
    highest_price: f64,
    #[serde(rename = "InstrumentID")]
    instrument_id: &'a str,
    #[serde(rename = "LastPrice")]
    last_price: f64,
    #[serde(rename = "LowerLimitPrice")]
    lower_limit_price: f64,
    #[serde(rename = "LowestPrice")]
    lowest_price: f64,
    #[serde(rename = "OpenInterest")]
    open_interest: f64,
    #[serde(rename = "OpenPrice")]
    open_price: f64,
    #[serde(rename = "PreClosePrice")]
    pre_close_price: f64,
    #[serde(rename = "PreDelta")]
    pre_delta: f64,
    #[serde(rename = "PreOpenInterest")]
    pre_open_interest: f64,
    #[serde(rename = "PreSettlementPrice")]
    pre_settlement_price: f64,
    #[serde(rename = "SettlementPrice")]
    settlement_price: f64,
    #[serde(rename = "TradingDay")]
    trading_day: Decimal,
    #[serde(rename = "Turnover")]
    turnover: f64,
    #[serde(rename = "UpdateMillisec")]
    update_millisec: u32,
    #[serde(rename = "UpdateTime")]
    update_time: Hms,
    #[serde(rename = "UpperLimitPrice")]
    upper_limit_price: f64,
    #[serde(rename = "Volume")]
    volume: i64,
    exchange_time_ns: i64,
    instrument_index: u32,
    publish_ns: i64,
    quality: QualityNames,
    receive_ns: i64,
    sequence: u64,
    source: &'static str,
}

impl<'a> TickJson<'a> {
    /// The JSON view of `t` (copies the numbers, borrows the instrument id).
    pub fn new(t: &'a TickRecord) -> TickJson<'a> {
        let [bid_price1, bid_price2, bid_price3, bid_price4, bid_price5] = t.bid_price;
        let [ask_price1, ask_price2, ask_price3, ask_price4, ask_price5] = t.ask_price;
        let [bid_volume1, bid_volume2, bid_volume3, bid_volume4, bid_volume5] = t.bid_volume;
        let [ask_volume1, ask_volume2, ask_volume3, ask_volume4, ask_volume5] = t.ask_volume;
        TickJson {
            action_day: Decimal(t.action_day),
            ask_price1,
            ask_price2,
            ask_price3,
            ask_price4,
            ask_price5,
            ask_volume1,
            ask_volume2,
            ask_volume3,
            ask_volume4,
            ask_volume5,
            average_price: t.average_price,
            banding_lower_price: t.banding_lower_price,
            banding_upper_price: t.banding_upper_price,
            bid_price1,
            bid_price2,
            bid_price3,
            bid_price4,
            bid_price5,
            bid_volume1,
            bid_volume2,
            bid_volume3,
            bid_volume4,
            bid_volume5,
            close_price: t.close_price,
            curr_delta: t.curr_delta,
            exchange_id: exchange_name(t.exchange),
            highest_price: t.highest_price,
            instrument_id: t.instrument_id_str().unwrap_or("?"),
            last_price: t.last_price,
            lower_limit_price: t.lower_limit_price,
            lowest_price: t.lowest_price,
            open_interest: t.open_interest,
            open_price: t.open_price,
            pre_close_price: t.pre_close_price,
            pre_delta: t.pre_delta,
            pre_open_interest: t.pre_open_interest,
            pre_settlement_price: t.pre_settlement_price,
            settlement_price: t.settlement_price,
            trading_day: Decimal(t.trading_day),
            turnover: t.turnover,
            update_millisec: t.update_time_ms % 1000,
            update_time: Hms(t.update_time_ms),
            upper_limit_price: t.upper_limit_price,
            volume: t.volume,
            exchange_time_ns: t.exchange_time_ns,
            instrument_index: t.instrument_index,
            publish_ns: t.publish_ns,
            quality: QualityNames(t.quality),
            receive_ns: t.receive_ns,
            sequence: t.sequence,
            source: source_name(t.source),
        }
    }
}

/// Writes the decimal digits of `n` into the end of `buf`, zero-padded to `width`; returns where
/// they start.
fn decimal_into(buf: &mut [u8], mut n: u32, width: usize) -> usize {
    let mut at = buf.len();
    while n > 0 || buf.len() - at < width.max(1) {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    at
}

/// A `u32` as a JSON string of its decimal digits (`to_string()` without the allocation).
#[derive(Clone, Copy, Debug)]
struct Decimal(u32);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 10];
        let at = decimal_into(&mut buf, self.0, 1);
        s.serialize_str(std::str::from_utf8(&buf[at..]).expect("ASCII digits"))
    }
}

/// Milliseconds since local midnight as `HH:MM:SS` ([`hms_text`]'s text: hours are not wrapped,
/// at least two digits each).
#[derive(Clone, Copy, Debug)]
struct Hms(u32);

impl Serialize for Hms {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 16];
        let at = hms_into(&mut buf, self.0);
        s.serialize_str(std::str::from_utf8(&buf[at..]).expect("ASCII digits"))
    }
}

/// Writes `HH:MM:SS` of `ms` into the end of `buf` (at most "1193:02:47", u32::MAX ms); returns
/// where it starts.
fn hms_into(buf: &mut [u8; 16], ms: u32) -> usize {
    let secs = ms / 1000;
    let mut at = decimal_into(buf, secs % 60, 2);
    at -= 1;
    buf[at] = b':';
    at = decimal_into(&mut buf[..at], secs / 60 % 60, 2);
    at -= 1;
    buf[at] = b':';
    decimal_into(&mut buf[..at], secs / 3600, 2)
}

/// Quality bits as the list of their names, lowest bit first ([`quality_names`] without the `Vec`).
#[derive(Clone, Copy, Debug)]
struct QualityNames(u32);

impl Serialize for QualityNames {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let flags = self.0;
        s.collect_seq(quality::NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| *name))
    }
}

/// A segment's status as JSON: identity, liveness, heartbeat age, cursor, link and counters (the
/// core's `status` reply with `"ok": true` added, and `qilinctl status --json`).
pub fn status_json(reader: &Reader, now_ns: i64, stale_after_ns: i64) -> Value {
    let counters: Map<String, Value> =
        Counter::ALL.iter().map(|c| (c.name().to_string(), json!(reader.counter(*c)))).collect();
    let identity = reader.identity();
    let liveness = match reader.liveness(now_ns, stale_after_ns) {
        Liveness::Live { .. } => "live",
        Liveness::Stale { .. } => "stale",
        Liveness::Stopped { .. } => "stopped",
    };
    let status = reader.status().ok();
    json!({
        "segment": reader.path().display().to_string(),
        "feed": reader.feed_name(),
        "layout_version": identity.layout_version,
        "fingerprint": qilin_shm::layout::fingerprint_text(identity.fingerprint),
        "ring_slots": identity.ring_slots,
        "instrument_capacity": identity.instrument_capacity,
        "epoch": reader.current_epoch(),
        "writer_pid": reader.writer_pid(),
        "run_state": reader.run_state().map(|s| format!("{s:?}")),
        "liveness": liveness,
        "heartbeat_age_ms": (now_ns - reader.heartbeat_ns()) as f64 / 1e6,
        "write_cursor": reader.write_cursor(),
        "instruments": reader.directory_len(),
        "link": status.map(|s| json!({
            "state": LinkState::from_code(s.link_state).map_or("?", LinkState::as_str),
            "active_source": (s.active_source != 0).then(|| source_name(s.active_source as u8)),
            "failovers": s.failovers,
            "trading_day": s.trading_day,
            "api_version": id_str(&s.api_version).unwrap_or(""),
            "front": id_str(&s.front).unwrap_or(""),
        })),
        "counters": counters,
    })
}

/// `tick_json` as it was before [`TickJson`]: a `serde_json` map built key by key. Not for use: the
/// reference [`write_tick_json`]'s bytes are held to (this crate's tests) and the baseline the
/// `nats_throughput` bench measures the encoding against.
#[doc(hidden)]
pub fn tick_json_map(t: &TickRecord) -> Value {
    let (time, millis) = update_time(t.update_time_ms);
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("sequence", json!(t.sequence));
    put("TradingDay", json!(t.trading_day.to_string()));
    put("ActionDay", json!(t.action_day.to_string()));
    put("InstrumentID", json!(t.instrument_id_str().unwrap_or("?")));
    put("ExchangeID", json!(exchange_name(t.exchange)));
    put("UpdateTime", json!(time));
    put("UpdateMillisec", json!(millis));
    for (k, v) in [
        ("LastPrice", t.last_price),
        ("PreSettlementPrice", t.pre_settlement_price),
        ("PreClosePrice", t.pre_close_price),
        ("PreOpenInterest", t.pre_open_interest),
        ("OpenPrice", t.open_price),
        ("HighestPrice", t.highest_price),
        ("LowestPrice", t.lowest_price),
        ("Turnover", t.turnover),
        ("OpenInterest", t.open_interest),
        ("ClosePrice", t.close_price),
        ("SettlementPrice", t.settlement_price),
        ("UpperLimitPrice", t.upper_limit_price),
        ("LowerLimitPrice", t.lower_limit_price),
        ("PreDelta", t.pre_delta),
        ("CurrDelta", t.curr_delta),
        ("AveragePrice", t.average_price),
        ("BandingUpperPrice", t.banding_upper_price),
        ("BandingLowerPrice", t.banding_lower_price),
    ] {
        put(k, json!(v));
    }
    put("Volume", json!(t.volume));
    for level in 0..5 {
        put(&format!("BidPrice{}", level + 1), json!(t.bid_price[level]));
        put(&format!("BidVolume{}", level + 1), json!(t.bid_volume[level]));
        put(&format!("AskPrice{}", level + 1), json!(t.ask_price[level]));
        put(&format!("AskVolume{}", level + 1), json!(t.ask_volume[level]));
    }
    put("instrument_index", json!(t.instrument_index));
    put("exchange_time_ns", json!(t.exchange_time_ns));
    put("receive_ns", json!(t.receive_ns));
    put("publish_ns", json!(t.publish_ns));
    put("source", json!(source_name(t.source)));
    put("quality", json!(quality_names(t.quality)));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_json_uses_ctp_names_and_null_for_absent_prices() {
        let mut t = TickRecord::ZERO;
        t.sequence = 7;
        t.instrument_id = qilin_shm::layout::fixed_id("rb2505").unwrap();
        t.exchange = Exchange::Shfe as u8;
        t.update_time_ms = 21 * 3_600_000 + 30 * 60_000 + 5_500;
        t.last_price = 3612.0;
        t.settlement_price = f64::NAN;
        t.bid_price[2] = 3610.0;
        t.quality = quality::ABSENT_PRICE | quality::STALE_SNAPSHOT;
        let v = tick_json(&t);
        assert_eq!(v["InstrumentID"], "rb2505");
        assert_eq!(v["ExchangeID"], "SHFE");
        assert_eq!(v["UpdateTime"], "21:30:05");
        assert_eq!(v["UpdateMillisec"], 500);
        assert_eq!(v["LastPrice"], 3612.0);
        assert_eq!(v["SettlementPrice"], Value::Null);
        assert_eq!(v["BidPrice3"], 3610.0);
        assert_eq!(v["quality"], json!(["stale_snapshot", "absent_price"]));
        assert_eq!((exchange_name(0xEE), source_name(0xEE)), ("?", "?"));
    }

    /// The struct's text, `tick_json`'s `Value` printed, and the old map printed: all the same bytes.
    fn assert_same_json(t: &TickRecord) {
        let mut fast = Vec::new();
        write_tick_json(t, &mut fast);
        let old = serde_json::to_vec(&tick_json_map(t)).unwrap();
        assert_eq!(String::from_utf8(fast.clone()).unwrap(), String::from_utf8(old).unwrap());
        assert_eq!(serde_json::to_vec(&TickJson::new(t)).unwrap(), fast, "the struct serialized prints the same text");
        assert_eq!(serde_json::to_vec(&tick_json(t)).unwrap(), fast, "tick_json's Value prints the same text");
        let mut appended = b"[".to_vec();
        write_tick_json(t, &mut appended);
        assert_eq!(appended[1..], fast[..], "write_tick_json appends");
        assert_eq!(tick_json(t), tick_json_map(t));
        assert_eq!(tick_json(t).as_object().unwrap().len(), 52);
    }

    #[test]
    fn the_struct_writes_the_old_maps_bytes_for_edge_ticks() {
        let zero = TickRecord::ZERO;
        assert_same_json(&zero);
        let mut max = TickRecord::ZERO;
        max.sequence = u64::MAX;
        max.exchange_time_ns = i64::MAX;
        max.receive_ns = i64::MIN;
        max.publish_ns = -1;
        max.instrument_index = u32::MAX;
        max.trading_day = u32::MAX;
        max.action_day = 20260105;
        max.update_time_ms = u32::MAX;
        max.quality = u32::MAX;
        max.exchange = u8::MAX;
        max.source = u8::MAX;
        max.instrument_id = [b'z'; 32]; // no NUL at all: the whole field is the id
        max.volume = i64::MAX;
        max.last_price = f64::MAX;
        max.open_price = f64::MIN;
        max.turnover = f64::MIN_POSITIVE;
        max.close_price = -0.0;
        max.pre_delta = f64::INFINITY;
        max.curr_delta = f64::NEG_INFINITY;
        max.settlement_price = f64::NAN;
        max.bid_price = [f64::NAN, 1e-300, 3612.5, 0.1 + 0.2, 1e21];
        max.ask_price = [5e-324, f64::NAN, -1.5, 123456789.0, 2.0f64.powi(53)];
        max.bid_volume = [i32::MAX, i32::MIN, 0, -1, 1];
        max.ask_volume = [i32::MIN, i32::MAX, 7, 0, -7];
        assert_same_json(&max);
        let text = String::from_utf8({
            let mut v = Vec::new();
            write_tick_json(&max, &mut v);
            v
        })
        .unwrap();
        assert!(text.contains(r#""UpdateTime":"1193:02:47""#), "{text}");
        assert!(text.contains(r#""SettlementPrice":null"#) && text.contains(r#""PreDelta":null"#), "{text}");
        let mut odd = TickRecord::ZERO;
        odd.instrument_id[0] = 0xE8; // not ASCII: "?"
        odd.update_time_ms = 9 * 3_600_000 + 5;
        odd.quality = quality::ABSENT_PRICE;
        odd.exchange = Exchange::Dce as u8;
        odd.source = Source::Sim as u8;
        assert_same_json(&odd);
        let mut quoted = TickRecord::ZERO;
        quoted.instrument_id[..5].copy_from_slice(b"a\"b\n\x01");
        assert_same_json(&quoted);
    }

    #[test]
    fn whole_prices_are_written_as_serde_json_writes_them() {
        let mut values = vec![1.0, -1.0, 9.0, 10.0, 3612.0, -3612.0, 2f64.powi(40), 999_999_999_999_999.0];
        for exp in 0..=17 {
            let p = 10f64.powi(exp);
            values.extend([p, -p, p - 1.0, p + 1.0, 2.0 * p, 9.0 * p]);
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let magnitude = 10f64.powi((seed >> 60) as i32); // 1 … 1e15
            values.push(
                ((seed >> 11) as f64 / (1u64 << 53) as f64 * magnitude).trunc()
                    * if seed & 1 == 0 { 1.0 } else { -1.0 },
            );
        }
        for v in values {
            let mut ours = Vec::new();
            super::price(&mut ours, v);
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&v).unwrap(), "{v:e}");
        }
        assert!(serde_json::to_string(&WHOLE_BELOW).unwrap().ends_with(".0"), "serde_json still writes 1e15 whole");
    }

    fn price() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(0.0),
            Just(-0.0),
            (-100_000i64..100_000).prop_map(|cents| cents as f64 / 100.0),
            (-100_000i64..100_000).prop_map(|whole| whole as f64),
            (any::<i64>(), 0u32..64).prop_map(|(i, shift)| (i >> shift) as f64),
            any::<f64>(),
            any::<u64>().prop_map(f64::from_bits),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn the_struct_writes_the_old_maps_bytes_for_any_tick(
            prices in proptest::collection::vec(price(), 28),
            volumes in proptest::collection::vec(proptest::prelude::any::<i32>(), 10),
            ints in proptest::collection::vec(proptest::prelude::any::<u64>(), 6),
            small in proptest::collection::vec(proptest::prelude::any::<u32>(), 5),
            codes in (0u8..9, 0u8..8, proptest::prelude::any::<u8>()),
            id in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32),
            ascii_id in "[ -~]{0,31}",
        ) {
            let mut t = TickRecord::ZERO;
            t.sequence = ints[0];
            t.exchange_time_ns = ints[1] as i64;
            t.receive_ns = ints[2] as i64;
            t.publish_ns = ints[3] as i64;
            t.volume = ints[4] as i64;
            t.instrument_index = small[0];
            t.trading_day = small[1];
            t.action_day = if ints[5] % 2 == 0 { small[2] } else { 20_000_101 + small[2] % 100_000 };
            t.update_time_ms = if ints[5] % 3 == 0 { small[3] } else { small[3] % 86_400_000 };
            t.quality = small[4];
            (t.exchange, t.source) = (codes.0, codes.1);
            // Half the ids are printable ASCII (quotes and backslashes escaped), the rest any bytes.
            let bytes = if codes.2 % 2 == 0 { ascii_id.as_bytes() } else { &id[..] };
            t.instrument_id[..bytes.len()].copy_from_slice(bytes);
            let p = &prices;
            [t.last_price, t.pre_settlement_price, t.pre_close_price, t.pre_open_interest, t.open_price,
             t.highest_price, t.lowest_price, t.turnover, t.open_interest, t.close_price, t.settlement_price,
             t.upper_limit_price, t.lower_limit_price, t.pre_delta, t.curr_delta, t.average_price,
             t.banding_upper_price, t.banding_lower_price] =
                [p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13],
                 p[14], p[15], p[16], p[17]];
            t.bid_price.copy_from_slice(&p[18..23]);
            t.ask_price.copy_from_slice(&p[23..28]);
            t.bid_volume.copy_from_slice(&volumes[..5]);
            t.ask_volume.copy_from_slice(&volumes[5..]);
            assert_same_json(&t);
        }
    }
}
