//! qilinctl's formatting: ticks and segment status as text tables or JSON. The JSON of a tick uses
//! the CTP field names (`LastPrice`, `BidPrice1`, …) so existing CTP tooling reads it; absent
//! prices (NaN) are `null`. qilinctl reads only the segment; it never links the core.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod journal_cli;
pub mod keys;
pub mod layout;
pub mod parquet_export;
pub mod products_import;
pub mod quality_report;
pub mod replay;
pub mod tick_csv;

/// The audit log (crate `qilin-audit`, shared with the core and the sidecars).
pub use qilin_audit as audit;
/// Secrets: keys, sources, checks (crate `qilin-market`, shared with qilin-secrets).
pub use qilin_market::secrets;

use qilin_shm::TickRecord;

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

pub use layout::{layout_json, layout_markdown};
pub use qilin_market::status::{read_all as sidecar_statuses, sidecars_json, status_dir as sidecar_status_dir};

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
