//! The names the feed uses in status output and JSON (exchange, source, quality flags, link state)
//! and the tick as JSON, with CTP's field names (`LastPrice`, `BidPrice1`, …) so existing CTP
//! tooling reads it; absent prices (NaN) are `null`. qilinctl prints it, qilin-nats publishes it.

use qilin_shm::{Counter, Exchange, LinkState, Liveness, Reader, Source, TickRecord, layout::id_str, quality};
use serde_json::{Map, Value, json};

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

/// A tick as JSON with CTP field names plus the feed's own fields.
pub fn tick_json(t: &TickRecord) -> Value {
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
        "fingerprint": format!("{:#018x}", identity.fingerprint),
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
}
