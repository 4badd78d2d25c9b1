//! The bar builder: ticks and clock moves in, closed bars out. No I/O; every market rule (sections,
//! auctions, closing seconds, night sessions and trading days) comes from
//! [`qilin_market::sections`]. The rules are in the module docs of [`crate::bars`].

use std::{cmp::Reverse, collections::BinaryHeap};

use qilin_market::{
    Date, Market, ProductSpec,
    date::{CST_OFFSET_SECS, local_ms},
    names::exchange_name,
    sections::{DaySections, Place},
};
use qilin_shm::{Exchange, TickRecord, quality};

use super::{
    bar::{Bar, Period, flags},
    clock::FeedClock,
};

/// What the builder did with the ticks it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Ticks given.
    pub ticks: u64,
    /// Ticks used in at least one bar.
    pub used: u64,
    /// Flagged `stale_snapshot`: not used.
    pub stale: u64,
    /// Outside every section of their trading day (no `stale_snapshot` bit, but the market model
    /// says no session): not used.
    pub outside: u64,
    /// TradingDay unreadable, or of a day before the instrument's current one: not used.
    pub old_day: u64,
    /// For a bar of some period already closed (counted once per tick): left out of that bar.
    pub late: u64,
    /// Bars emitted.
    pub bars: u64,
}

/// One period's bar in progress and its baseline.
#[derive(Clone, Debug)]
struct Track {
    bar: Option<Bar>,
    /// Start (local ms) of the last bar emitted this trading day, or of the open one.
    last_start: i64,
    /// End (local ms) of the open bar.
    end: i64,
    /// Highest cumulative Volume and Turnover seen this trading day, and OpenInterest of the
    /// last tick used (`None`: no tick of this trading day used yet).
    base: Option<(i64, f64, f64)>,
    /// OpenInterest before the open bar's first tick.
    oi_before: f64,
}

impl Track {
    fn new() -> Track {
        Track { bar: None, last_start: i64::MIN, end: i64::MIN, base: None, oi_before: f64::NAN }
    }
}

#[derive(Clone, Debug)]
struct Instrument {
    id: [u8; 32],
    id_text: String,
    exchange: &'static str,
    spec: ProductSpec,
    day: Option<DaySections>,
    tracks: Vec<Track>,
    gap_pending: bool,
}

/// The builder of every instrument's bars for a set of periods.
#[derive(Debug)]
pub struct Builder {
    market: Market,
    periods: Vec<Period>,
    close_delay_ns: i64,
    clock: FeedClock,
    instruments: Vec<Instrument>,
    /// Instrument slot by the tick's `instrument_index` (checked against its id).
    by_index: Vec<Option<usize>>,
    /// Open bars by due time: (due UTC ns, instrument id, period index, bar start, slot); stale entries
    /// (bar already closed) are skipped when popped.
    due: BinaryHeap<Reverse<Due>>,
    counters: Counters,
}

/// A heap entry: (due UTC ns, instrument id, period index, bar start, instrument slot). Ordered by
/// due time, then id and period, so bars due together close in the same order live and in replay.
type Due = (i64, [u8; 32], usize, i64, usize);

const MS_NS: i64 = 1_000_000;
const CST_OFFSET_MS: i64 = CST_OFFSET_SECS * 1000;

fn utc_ns_of_local(local: i64) -> i64 {
    (local - CST_OFFSET_MS) * MS_NS
}

impl Builder {
    /// A builder for `periods` (sorted, each once: shortest first within a tick's emissions), closing a bar when the
    /// feed clock passes its end by `close_delay_ms` (at least the closing second,
    /// [`qilin_market::products::CLOSE_GRACE_MS`], so a closing-second tick is never late).
    pub fn new(market: Market, periods: &[Period], close_delay_ms: u32) -> Builder {
        let mut periods = periods.to_vec();
        periods.sort();
        periods.dedup();
        let delay = close_delay_ms.max(qilin_market::products::CLOSE_GRACE_MS);
        Builder {
            market,
            periods,
            close_delay_ns: i64::from(delay) * MS_NS,
            clock: FeedClock::default(),
            instruments: Vec::new(),
            by_index: Vec::new(),
            due: BinaryHeap::new(),
            counters: Counters::default(),
        }
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The feed clock (UTC ns).
    pub fn clock(&self) -> i64 {
        self.clock.now()
    }

    /// The periods built.
    pub fn periods(&self) -> &[Period] {
        &self.periods
    }

    /// The bars in progress, by instrument then period (for status and tests).
    pub fn open_bars(&self) -> impl Iterator<Item = &Bar> {
        self.instruments.iter().flat_map(|i| i.tracks.iter().filter_map(|t| t.bar.as_ref()))
    }

    /// The oldest trading day (`YYYYMMDD`) of a bar still open, if any: where a restart must
    /// start reading the journal to rebuild every open bar.
    pub fn oldest_open_day(&self) -> Option<u32> {
        self.instruments
            .iter()
            .filter(|i| i.tracks.iter().any(|t| t.bar.is_some()))
            .filter_map(|i| i.day.as_ref().map(|d| d.trading_day.ymd))
            .min()
    }

    /// The timer: the ring is idle at wall time `wall_ns`; bars whose end (plus the close delay)
    /// the predicted feed clock has passed are closed into `out`.
    pub fn idle(&mut self, wall_ns: i64, margin_ns: i64, out: &mut Vec<Bar>) {
        self.clock.idle(wall_ns, margin_ns);
        self.close_due(out);
    }

    /// Moves the clock to `clock_ns` exactly (a restart restoring the clock it had saved) and
    /// closes what is due.
    pub fn advance_clock(&mut self, clock_ns: i64, out: &mut Vec<Bar>) {
        self.clock.advance_to(clock_ns);
        self.close_due(out);
    }

    /// Ticks were lost: every open bar, and each instrument's next bar, is flagged [`flags::GAP`].
    pub fn gap(&mut self) {
        for instrument in &mut self.instruments {
            instrument.gap_pending = true;
            for bar in instrument.tracks.iter_mut().filter_map(|t| t.bar.as_mut()) {
                bar.flags |= flags::GAP;
            }
        }
    }

    /// Closes every open bar (end of input when the trading day is over; tests).
    pub fn close_all(&mut self, out: &mut Vec<Bar>) {
        self.advance_clock(i64::MAX, out);
    }

    /// One tick, in feed order: bars it closes (its instrument's earlier bars, and any bar the
    /// clock has now passed) are appended to `out`.
    pub fn on_tick(&mut self, tick: &TickRecord, out: &mut Vec<Bar>) {
        self.counters.ticks += 1;
        self.clock.before_tick(tick.publish_ns);
        self.close_due(out);
        if tick.quality & quality::STALE_SNAPSHOT != 0 {
            self.counters.stale += 1;
            return;
        }
        let Some(trading_day) = Date::from_ymd(tick.trading_day) else {
            self.counters.old_day += 1;
            return;
        };
        let slot = self.slot(tick);
        let current = self.instruments[slot].day.as_ref().map(|d| d.trading_day);
        if current.is_some_and(|c| trading_day < c) {
            self.counters.old_day += 1;
            return;
        }
        if current != Some(trading_day) {
            self.new_day(slot, trading_day, out);
        }
        let instant = local_ms(tick.exchange_time_ns);
        let Some(day) = self.instruments[slot].day.as_ref() else { return };
        let Some((index, place)) = day.locate(instant) else {
            self.counters.outside += 1;
            return;
        };
        let section = day.sections[index];
        let day_span = (day.sections[0].open, day.last_close().unwrap_or(section.close));
        self.clock.in_session_tick(tick.exchange_time_ns, tick.publish_ns);
        self.close_due(out);
        // The day's start: the first section's auction and first minute.
        let at_day_start = index == 0 && instant < section.open + 60_000;
        let mut windows = [(0i64, 0i64); Period::ALL.len()];
        for (window, period) in windows.iter_mut().zip(&self.periods) {
            *window = match period.minutes_ms() {
                Some(len) => {
                    let t = match place {
                        Place::Auction => section.open,
                        Place::Trading => instant,
                        Place::Closing => section.close - 1,
                    };
                    let aligned = t - t.rem_euclid(len);
                    (aligned.max(section.open), (aligned + len).min(section.close))
                }
                None => day_span,
            };
        }
        let mut used = false;
        let mut late = false;
        for (p, &(start, end)) in windows[..self.periods.len()].iter().enumerate() {
            let track = &self.instruments[slot].tracks[p];
            if start < track.last_start || (track.bar.is_none() && start == track.last_start) {
                late = true;
                continue;
            }
            if track.bar.is_some() && start > track.last_start {
                self.emit(slot, p, out);
            }
            self.add(slot, p, start, end, at_day_start, tick);
            used = true;
        }
        self.counters.used += u64::from(used);
        self.counters.late += u64::from(late);
        // A bar this tick opened can be due already (a tick published after its bar's end plus
        // the close delay, the first of its bar): closed now, not at the next tick or timer, so a
        // run that ends here (a replay up to a saved clock) and one that goes on close it at the
        // same point. Its own tick is in it; a later tick of that bar is late either way.
        self.close_due(out);
    }

    fn slot(&mut self, tick: &TickRecord) -> usize {
        let index = tick.instrument_index as usize;
        if let Some(Some(slot)) = self.by_index.get(index)
            && self.instruments[*slot].id == tick.instrument_id
        {
            return *slot;
        }
        let slot = match self.instruments.iter().position(|i| i.id == tick.instrument_id) {
            Some(slot) => slot,
            None => {
                let id_text = tick.instrument_id_str().unwrap_or("").to_owned();
                let exchange = Exchange::from_code(tick.exchange);
                let spec = self
                    .market
                    .spec_for(&id_text)
                    .filter(|s| Some(s.exchange) == exchange)
                    .cloned()
                    .unwrap_or_else(|| ProductSpec::stand_in(exchange.unwrap_or(Exchange::Shfe)));
                self.instruments.push(Instrument {
                    id: tick.instrument_id,
                    id_text,
                    exchange: exchange_name(tick.exchange),
                    spec,
                    day: None,
                    tracks: self.periods.iter().map(|_| Track::new()).collect(),
                    gap_pending: false,
                });
                self.instruments.len() - 1
            }
        };
        if index < 1 << 20 {
            if self.by_index.len() <= index {
                self.by_index.resize(index + 1, None);
            }
            self.by_index[index] = Some(slot);
        }
        slot
    }

    fn new_day(&mut self, slot: usize, trading_day: Date, out: &mut Vec<Bar>) {
        for p in 0..self.periods.len() {
            if self.instruments[slot].tracks[p].bar.is_some() {
                self.emit(slot, p, out);
            }
        }
        let instrument = &mut self.instruments[slot];
        instrument.day = Some(DaySections::of(&instrument.spec, &self.market.calendar, trading_day));
        for track in &mut instrument.tracks {
            *track = Track::new();
        }
    }

    fn add(&mut self, slot: usize, p: usize, start: i64, end: i64, at_day_start: bool, tick: &TickRecord) {
        let period = self.periods[p];
        let close_delay = self.close_delay_ns;
        let instrument = &mut self.instruments[slot];
        let unknown = instrument.spec.unknown;
        let gap = instrument.gap_pending;
        let track = &mut instrument.tracks[p];
        let mut bar_flags = 0;
        let (v_max, t_max, oi_last) = match track.base {
            Some(base) => base,
            None if at_day_start => (0, 0.0, tick.pre_open_interest),
            None => {
                bar_flags |= flags::PARTIAL;
                (tick.volume, tick.turnover, tick.open_interest)
            }
        };
        if track.bar.is_none() {
            track.oi_before = oi_last;
            track.last_start = start;
            track.end = end;
            track.bar = Some(Bar {
                instrument_id: instrument.id_text.clone(),
                exchange: instrument.exchange,
                period,
                trading_day: instrument.day.as_ref().map_or(0, |d| d.trading_day.ymd),
                start_ns: utc_ns_of_local(start),
                end_ns: utc_ns_of_local(end),
                open: f64::NAN,
                high: f64::NAN,
                low: f64::NAN,
                close: f64::NAN,
                volume: 0,
                turnover: 0.0,
                open_interest: f64::NAN,
                open_interest_change: f64::NAN,
                ticks: 0,
                first_sequence: tick.sequence,
                last_sequence: tick.sequence,
                flags: if unknown { flags::UNKNOWN_PRODUCT } else { 0 } | if gap { flags::GAP } else { 0 },
            });
            self.due.push(Reverse((utc_ns_of_local(end) + close_delay, instrument.id, p, start, slot)));
        }
        let bar = track.bar.as_mut().expect("opened above");
        bar.flags |= bar_flags;
        if tick.volume < v_max {
            bar.flags |= flags::VOLUME_DECREASE;
        } else {
            bar.volume += tick.volume - v_max;
        }
        if tick.turnover < t_max {
            bar.flags |= flags::TURNOVER_DECREASE;
        } else if tick.turnover > t_max {
            bar.turnover += tick.turnover - t_max;
        }
        if tick.last_price.is_finite() {
            let price = tick.last_price;
            if bar.open.is_nan() {
                (bar.open, bar.high, bar.low) = (price, price, price);
            }
            bar.high = bar.high.max(price);
            bar.low = bar.low.min(price);
            bar.close = price;
        }
        if tick.quality & quality::ABSENT_PRICE != 0 {
            bar.flags |= flags::ABSENT_PRICE;
        }
        if tick.quality & quality::UNKNOWN_PRODUCT != 0 {
            bar.flags |= flags::UNKNOWN_PRODUCT;
        }
        if tick.open_interest.is_finite() {
            bar.open_interest = tick.open_interest;
            bar.open_interest_change = tick.open_interest - track.oi_before;
        }
        bar.ticks += 1;
        bar.last_sequence = tick.sequence;
        let oi = if tick.open_interest.is_finite() { tick.open_interest } else { oi_last };
        track.base = Some((v_max.max(tick.volume), if tick.turnover > t_max { tick.turnover } else { t_max }, oi));
        if p + 1 == self.periods.len() {
            instrument.gap_pending = false;
        }
    }

    fn emit(&mut self, slot: usize, p: usize, out: &mut Vec<Bar>) {
        if let Some(bar) = self.instruments[slot].tracks[p].bar.take() {
            self.counters.bars += 1;
            out.push(bar);
        }
    }

    fn close_due(&mut self, out: &mut Vec<Bar>) {
        let now = self.clock.now();
        while let Some(Reverse((due, _, p, start, slot))) = self.due.peek().copied() {
            if due > now {
                break;
            }
            self.due.pop();
            let track = &self.instruments[slot].tracks[p];
            if track.bar.is_some() && track.last_start == start {
                self.emit(slot, p, out);
            }
        }
    }
}
