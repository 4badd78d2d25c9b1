//! qilin-core: takes raw CTP depth-market-data structs from a source (simulator, UDP relay),
//! normalizes them on one pinned busy-polling thread and publishes them into the segment.
//!
//! Module map:
//! - [`ctp`]: the raw `CThostFtdcDepthMarketDataField` layouts (6.7.x, 6.5.x, 6.3.x) as bytes.
//! - [`instruments`]: product specifications (tick size, multiplier, trading sessions).
//! - [`normalize`]: every CTP quirk, in one place: raw struct → `TickRecord` or a counted reject.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod ctp;
pub mod instruments;
pub mod normalize;
