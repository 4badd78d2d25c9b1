//! qilin-core: takes raw CTP depth-market-data structs from a source (simulator, UDP relay),
//! normalizes them on one pinned busy-polling thread and publishes them into the segment.
//!
//! Module map:
//! - [`ctp`]: the raw `CThostFtdcDepthMarketDataField` layouts (6.7.x, 6.5.x, 6.3.x) as bytes.
//! - products, the calendar and dates come from `qilin_market`.
//! - [`normalize`]: every CTP quirk, in one place: raw struct → `TickRecord` or a counted reject.
//! - [`handoff`]: the bounded SPSC queue from a callback thread to the hot thread.
//! - [`sim`], [`udp`]: the sources.
//! - [`engine`]: the hot loop. [`control`]: the control socket. [`config`]: the TOML file.
//! - [`demo`]: `--demo` output. [`clock`]: the hot thread's `publish_ns` stamps (TSC).
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod clock;
pub mod config;
pub mod control;
pub mod ctp;
pub mod dedup;
pub mod demo;
pub mod engine;
pub mod handoff;
pub mod normalize;
pub mod reject;
pub mod replay;
pub mod session;
pub mod sim;
pub mod udp;

/// Whether a Linux cpulist such as `"1-3,6"` (as in `/sys/devices/system/cpu/isolated`) names `cpu`.
pub fn cpulist_contains(list: &str, cpu: usize) -> bool {
    list.split(',').filter(|p| !p.is_empty()).any(|part| match part.split_once('-') {
        Some((a, b)) => {
            matches!((a.trim().parse::<usize>(), b.trim().parse::<usize>()), (Ok(a), Ok(b)) if (a..=b).contains(&cpu))
        }
        None => part.trim().parse() == Ok(cpu),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpulists() {
        assert!(super::cpulist_contains("1-3,6", 2));
        assert!(super::cpulist_contains("1-3,6", 6));
        assert!(!super::cpulist_contains("1-3,6", 4));
        assert!(!super::cpulist_contains("", 0));
    }
}
