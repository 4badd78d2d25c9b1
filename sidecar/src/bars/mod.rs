//! `qilin-bars`: bars from ticks, the same live and in replay. This module is the pure part: the
//! [`Builder`] takes ticks (and clock moves) and returns closed [`Bar`]s; the sidecar around it
//! reads the segment and the journal and publishes them. docs/BARS.md has the rules with examples.
//!
//! ## Windows
//!
//! Periods: 1, 5, 15, 30 and 60 minutes, and the trading day. A minute bar is clock-aligned
//! (China local time) *within its section*: `[max(aligned, section open), min(aligned + period,
//! section close))`. Sections are the night session and each day segment
//! ([`qilin_market::sections`]), so every section end (10:15, 11:30, 15:00, 15:15, the night close)
//! ends a bar, and no bar holds ticks of two sections: a 60-minute bar 10:00 is 10:00–10:15, the
//! next one 10:30–11:00; the night close and the morning open never share a bar (vnpy#380, #411).
//! The daily bar runs from the trading day's first section open (the night's, Friday evening's for
//! a Monday, none after a holiday eve) to its last close.
//!
//! ## Edges
//!
//! - **Auction ticks** (20:55–21:00, 08:55–09:00, CFFEX 09:25–09:30) belong to the first bar of the
//!   section they precede: no extra 20:59 or 08:59 bar (vnpy#81, #1188, #3270).
//! - **A tick in a closing second** (`[close, close + 1 s)`: 10:15:00.000, 11:30:00.500, 15:00:00)
//!   belongs to the bar ending there: no one-tick bar at a section end (vnpy#381).
//! - **Bars close on time**: a bar is emitted when a later tick of its instrument opens the next bar,
//!   or when the feed clock ([`clock`]) passes its end plus `close_delay_ms` (at least the closing
//!   second). The clock moves with the ticks and, when the ring is idle, with a timer, so the last
//!   bar of a section closes even if CZCE sends no closing tick (vnpy#645, #957, #888). A bar with
//!   no tick is not emitted.
//!
//! ## Volume, turnover, open interest
//!
//! Deltas of the cumulative fields within the trading day, per period:
//! `volume = Σ max(0, Volume − highest Volume before)` over the bar's ticks, the same for Turnover.
//! A tick whose cumulative value is below the highest seen adds nothing and flags the bar
//! (`volume_decrease`, `turnover_decrease`): never a negative bar (vnpy#760, #571). A new trading
//! day starts from zero: cumulative volume resets at the night open.
//!
//! **The first tick of a trading day** the builder sees for an instrument: if it lies in the
//! day's first section, in its auction or first minute, the baseline is 0 (Volume and Turnover 0,
//! OpenInterest = PreOpenInterest), so the auction's matched volume counts in the first bar.
//! Otherwise (joined late, e.g. started mid-day without a journal) the tick itself is the baseline,
//! adds nothing, and its bars are flagged `partial`. Hence, per period, for any tick sequence of one
//! trading day of one instrument with every bar closed and no late tick:
//! `Σ bar volume = highest cumulative Volume − baseline` (the last Volume when it never goes down).
//!
//! `open_interest` is the last tick's; `open_interest_change` is it minus the open interest before
//! the bar's first tick (signed: positions close).
//!
//! ## Stale and flagged ticks
//!
//! - `stale_snapshot` (outside sessions, on a holiday or an evening without a night session): not
//!   used at all: no price, no volume, no clock. Counted.
//! - A tick the market model places in no section of its trading day: the same (counted apart).
//! - A tick of an earlier trading day than the instrument's current one: not used, counted.
//! - A tick for a bar already closed (it came more than `close_delay_ms` after the bar's end, by
//!   the feed clock): left out of that period's bar, counted as late; its volume is not lost, it
//!   counts in the next bar of that period (the baseline did not move).
//! - `volume_regression` / `turnover_regression`: used for price; the deltas as above.
//! - `absent_price` or no LastPrice: used for volume and open interest, not for price; the bar is
//!   flagged `absent_price`. A bar whose ticks carried no price has NaN (JSON `null`) prices.
//! - `unknown_product`: the exchange's default sessions; the bar is flagged `unknown_product`.
//! - Notes (`repeated_second`, `derived_action_day`): used as any tick.
//! - Lost ticks (a ring gap, a journal gap): open bars and each instrument's next bar are flagged
//!   `gap`. Volume stays exact (cumulative), prices may miss an extreme.
//!
//! ## Determinism
//!
//! Bars are a function of the tick sequence (with each tick's exchange and publish times) and the
//! timer's clock moves, and a timer move is always overtaken by the next tick's own clock move
//! ([`clock`]), so the journal replayed through a [`Builder`] gives the bars emitted live, in the
//! same order, with the same bytes ([`Bar::to_json`]).

mod bar;
mod builder;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod replay;
pub mod run;
pub mod segment;

pub use self::{
    bar::{Bar, Period, flags},
    builder::{Builder, Counters},
    config::Config,
    run::Driver,
};

#[cfg(test)]
mod tests;
