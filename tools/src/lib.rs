//! qilinctl's formatting: ticks and segment status as text tables or JSON. The JSON of a tick uses
//! the CTP field names (`LastPrice`, `BidPrice1`, …) so existing CTP tooling reads it; absent
//! prices (NaN) are `null`. qilinctl reads only the segment; it never links the core.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod journal_cli;
pub mod keys;
pub mod parquet_export;
pub mod products_import;
pub mod quality_report;
pub mod replay;
pub mod tick_csv;

/// The audit log (crate `qilin-audit`, shared with the core and the sidecars).
pub use qilin_audit as audit;
/// Secrets: keys, sources, checks (crate `qilin-market`, shared with qilin-secrets).
pub use qilin_market::secrets;

use qilin_shm::{Counter, TickRecord, quality};
use serde_json::{Value, json};

pub use qilin_market::names::{exchange_name, quality_names, source_name, status_json, tick_json, update_time};

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

pub use qilin_market::status::{read_all as sidecar_statuses, sidecars_json, status_dir as sidecar_status_dir};

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
        "fingerprint": qilin_shm::layout::fingerprint_text(qilin_shm::layout::FINGERPRINT),
        "magic": "QILINSHM",
        "structs": structs,
        "counters": Counter::NAMES,
        "quality": quality::NAMES.iter().map(|(bit, name)| json!({"bit": bit, "name": name})).collect::<Vec<_>>(),
        "quality_anomalies": quality::ANOMALIES,
        "quality_notes": quality::NOTES,
    })
}

#[cfg(test)]
mod tests {
    use qilin_shm::{Exchange, quality};

    use super::*;

    #[test]
    fn tick_rows_show_the_id_time_and_flags() {
        let mut t = TickRecord::ZERO;
        t.sequence = 7;
        t.instrument_id = qilin_shm::layout::fixed_id("rb2505").unwrap();
        t.exchange = Exchange::Shfe as u8;
        t.update_time_ms = 21 * 3_600_000 + 30 * 60_000 + 5_500;
        t.quality = quality::STALE_SNAPSHOT;
        let row = tick_row(&t);
        assert!(row.contains("rb2505") && row.contains("SHFE") && row.contains("21:30:05.500"), "{row}");
        assert!(row.ends_with("stale_snapshot"), "{row}");
    }
}
