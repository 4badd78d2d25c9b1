//! qilinctl's formatting: ticks and segment status as text tables or JSON. The JSON of a tick uses
//! the CTP field names (`LastPrice`, `BidPrice1`, …) so existing CTP tooling reads it; absent
//! prices (NaN) are `null`. qilinctl reads only the segment; it never links the core.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod calendar;
pub mod cheader;
pub mod journal_cli;
pub mod keys;
pub mod products;
pub mod quality_report;
pub mod replay;
pub mod secrets;
pub mod tick_csv;

/// The audit log (crate `qilin-audit`, shared with the core and the sidecars).
pub use qilin_audit as audit;

use std::path::{Path, PathBuf};

use qilin_shm::{Counter, Exchange, LinkState, Liveness, Reader, Source, TickRecord, layout::id_str, quality};
use serde_json::{Map, Value, json};

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
    let s = ms / 1000;
    (format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60), ms % 1000)
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

/// A tick as one table row.
pub fn tick_row(t: &TickRecord) -> String {
    let (time, millis) = update_time(t.update_time_ms);
    format!(
        "{:>10} {:<10} {:<5} {} {}.{:03} {:>12.3} {:>12.3} x{:<5} {:>12.3} x{:<5} {:>10} {}",
        t.sequence,
        t.instrument_id_str().unwrap_or("?"),
        exchange_name(t.exchange),
        t.action_day,
        time,
        millis,
        t.last_price,
        t.bid_price[0],
        t.bid_volume[0],
        t.ask_price[0],
        t.ask_volume[0],
        t.volume,
        quality_names(t.quality).join(","),
    )
}

/// Column headings matching [`tick_row`].
pub const TICK_HEADER: &str = "  sequence instrument exch  day      time            last          bid              ask              volume quality";

/// The segment's status as JSON.
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

/// Directory of the sidecar status files of the segment at `segment`: `<segment>.sidecars/`.
/// Each sidecar instance rewrites `<name>.json` there a few times a second (see docs/SIDECARS.md).
pub fn sidecar_status_dir(segment: &Path) -> PathBuf {
    let mut name = segment.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".sidecars");
    segment.with_file_name(name)
}

/// Every sidecar status file beside `segment`, sorted by instance name. An unreadable file is
/// returned as an object with an `error` key, so a half-broken sidecar is still listed.
pub fn sidecar_statuses(segment: &Path) -> Vec<(String, Value)> {
    let Ok(entries) = std::fs::read_dir(sidecar_status_dir(segment)) else { return Vec::new() };
    let mut out: Vec<(String, Value)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".json")?.to_owned();
            (!name.starts_with('.')).then_some((name, e.path()))
        })
        .map(|(name, path)| {
            let value = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                .unwrap_or_else(|e| json!({ "error": format!("{}: {e}", path.display()) }));
            (name, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The sidecars' statuses with `alive` (status rewritten within `stale_after_ns`) and `age_ms`.
pub fn sidecars_json(segment: &Path, now_ns: i64, stale_after_ns: i64) -> Value {
    let list: Vec<Value> = sidecar_statuses(segment)
        .into_iter()
        .map(|(name, mut v)| {
            let updated = v["updated_ns"].as_i64();
            v["instance"] = json!(name);
            v["age_ms"] = json!(updated.map(|u| (now_ns - u) as f64 / 1e6));
            v["alive"] = json!(updated.is_some_and(|u| now_ns - u <= stale_after_ns));
            v
        })
        .collect();
    Value::Array(list)
}

/// The layout as JSON: version, fingerprint, every struct with its fields' offsets and sizes, and
/// the counter names in index order. Foreign-language readers test themselves against this.
pub fn layout_json() -> Value {
    let structs: Vec<Value> = qilin_shm::layout::STRUCTS
        .iter()
        .map(|s| {
            let fields: Vec<Value> =
                s.fields.iter().map(|f| json!({"name": f.name, "offset": f.offset, "size": f.size})).collect();
            json!({"name": s.name, "size": s.size, "fields": fields})
        })
        .collect();
    json!({
        "layout_version": qilin_shm::layout::LAYOUT_VERSION,
        "fingerprint": format!("{:#018x}", qilin_shm::layout::FINGERPRINT),
        "magic": "QILINSHM",
        "structs": structs,
        "counters": Counter::NAMES,
        "quality": quality::NAMES.iter().map(|(bit, name)| json!({"bit": bit, "name": name})).collect::<Vec<_>>(),
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
        assert!(tick_row(&t).contains("rb2505"));
    }
}
