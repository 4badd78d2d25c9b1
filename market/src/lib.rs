//! qilin-market: what the feed knows about the market and about itself, in one place shared by the
//! core, the sidecars and the tools.
//!
//! - [`date`]: China-time dates, CTP's date and time texts, UTC stamps (the only civil-date code).
//! - [`products`]: the product table (`config/instruments.toml`): futures and their option series,
//!   sessions, id forms, lookup by instrument id.
//! - [`calendar`]: the exchanges' trading calendar (`config/calendar/`), the night-session
//!   evenings and the TradingDay/ActionDay conventions that depend on them.
//! - [`names`]: exchange, source and quality names, the tick as JSON, the segment status as JSON.
//! - [`status`]: the sidecar status files beside the segment.
//! - [`config`]: TOML config loading and [`config::ConfigError`] (every problem, with file and key).
//! - [`secrets`]: the secret keys, their sources (environment, dotenv, secret files) and checks,
//!   and the one secret-file loader.
//! - [`control`]: the control socket's typed requests and replies (core, qilinctl, qilin-secrets).
//! - [`paths`]: the default state directory (audit log, journal, cursors).
//! - [`quality`]: the absent-price rules shared by the core's and qilinctl's normalizers.
//! - [`sections`]: one trading day's sections of one product as instants (night, day segments,
//!   auctions, closing seconds): which section an instant is in and where it ends (bar building).
//!
//! No threads, no hot-loop state: the core's hot path calls the small `#[inline]` lookups here on
//! data built at start-up. Depends on no crate of ours but `qilin-shm`.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod calendar;
pub mod config;
pub mod control;
pub mod date;
pub mod names;
pub mod paths;
pub mod products;
pub mod quality;
pub mod secrets;
pub mod sections;
pub mod status;

pub use calendar::{Calendar, CalendarError, TickDays};
pub use date::Date;
pub use products::{IdForm, Instruments, InstrumentsError, Kind, ProductSpec, Segment, SessionMap, product_of};

/// The product table and the trading calendar together, as the tools load them.
#[derive(Clone, Debug, PartialEq)]
pub struct Market {
    /// The product table.
    pub instruments: Instruments,
    /// The calendar: the `calendar/` directory beside the product file, or the weekday rule when
    /// there is none.
    pub calendar: Calendar,
}

impl Market {
    /// The product file `explicit`, else [`products::DEFAULT_PATH`] if it exists (`None` if
    /// neither), with the calendar directory beside it. Errors name the file or directory.
    pub fn find(explicit: Option<&std::path::Path>) -> Result<Option<Market>, String> {
        let Some(instruments) = Instruments::find(explicit).map_err(|e| e.to_string())? else { return Ok(None) };
        let dir = instruments.path().parent().unwrap_or(std::path::Path::new(".")).join("calendar");
        let calendar =
            if dir.is_dir() { Calendar::load_dir(&dir).map_err(|e| e.to_string())? } else { Calendar::weekdays_only() };
        Ok(Some(Market { instruments, calendar }))
    }

    /// The product of an instrument id.
    pub fn spec_for(&self, instrument_id: &str) -> Option<&ProductSpec> {
        self.instruments.spec_for(instrument_id)
    }
}
